//! The redirect listeners: accept what the kernel redirected, find out where the client meant
//! to go and who it is, relay it there, and write one connection record.
//!
//! A connection with no redirect record was not sent here by our programs (someone connected
//! to the listener directly): it is closed at once, so the listener is never an open proxy.

pub mod connlog;
pub mod relay;

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime},
};

use gateway_common::{ACTION_DENY, ACTION_INTERCEPT, ACTION_OBSERVE};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{mpsc, watch},
};
use tracing::Instrument as _;

use crate::{
    config::Config,
    ebpf::ConnTable,
    identity,
    socket::{peer_key, words_to_ip, ClientAddr, OrigDstAddr},
    telemetry::Metrics,
};
use connlog::{ConnLogSink, ConnRecordLine};

/// Which listener a connection came through.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Via {
    /// A loopback listener: the client is in the host network namespace.
    Host,
    /// The node address: the client is in another namespace (a pod).
    Node,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Host => "host",
            Via::Node => "node",
        }
    }
}

/// What every connection task shares.
pub struct Shared {
    pub config: Arc<Config>,
    pub conns: Arc<ConnTable>,
    pub identity: identity::Resolver,
    pub host_netns_cookie: u64,
    pub metrics: Arc<Metrics>,
    pub log: ConnLogSink,
    next_id: AtomicU64,
}

impl Shared {
    pub fn new(
        config: Arc<Config>,
        conns: Arc<ConnTable>,
        identity: identity::Resolver,
        host_netns_cookie: u64,
        metrics: Arc<Metrics>,
        log: ConnLogSink,
    ) -> Shared {
        Shared {
            config,
            conns,
            identity,
            host_netns_cookie,
            metrics,
            log,
            next_id: AtomicU64::new(1),
        }
    }
}

/// Lets in-flight connections finish after the listeners stop, up to a deadline.
pub struct Drain {
    tracker: mpsc::Sender<()>,
    done: mpsc::Receiver<()>,
    force: watch::Sender<bool>,
}

/// Held by each connection task; the drain completes when every one is dropped.
#[derive(Clone)]
pub struct DrainWatcher {
    _tracker: mpsc::Sender<()>,
    force: watch::Receiver<bool>,
}

impl Default for Drain {
    fn default() -> Self {
        Drain::new()
    }
}

impl Drain {
    pub fn new() -> Drain {
        let (tracker, done) = mpsc::channel(1);
        let (force, _) = watch::channel(false);
        Drain {
            tracker,
            done,
            force,
        }
    }

    pub fn watcher(&self) -> DrainWatcher {
        DrainWatcher {
            _tracker: self.tracker.clone(),
            force: self.force.subscribe(),
        }
    }

    /// Waits for every watcher to go, forcing them to stop after `deadline`.
    pub async fn drain(self, deadline: Duration) {
        let Drain {
            tracker,
            mut done,
            force,
        } = self;
        drop(tracker);
        if tokio::time::timeout(deadline, done.recv()).await.is_err() {
            tracing::warn!(
                component = "capture",
                "drain deadline passed; closing remaining connections"
            );
            let _ = force.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(1), done.recv()).await;
        }
    }
}

/// Accepts until `shutdown` flips, spawning one task per connection.
pub async fn serve(
    listener: TcpListener,
    via: Via,
    shared: Arc<Shared>,
    watcher: DrainWatcher,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(component = "capture", error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = shared.clone();
        let watcher = watcher.clone();
        tokio::spawn(async move { handle(stream, ClientAddr(peer), via, shared, watcher).await });
    }
}

async fn handle(
    stream: TcpStream,
    client: ClientAddr,
    via: Via,
    shared: Arc<Shared>,
    mut watcher: DrainWatcher,
) {
    let started = Instant::now();
    let started_at = SystemTime::now();
    let Some(record) = shared
        .conns
        .take(&peer_key(client, shared.host_netns_cookie))
    else {
        tracing::debug!(component = "capture", %client, "no redirect record: closing");
        shared.metrics.unknown_connection();
        return;
    };
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let orig = OrigDstAddr(SocketAddr::new(
        words_to_ip(record.orig_ip),
        u16::from_be(record.orig_port),
    ));
    let span = tracing::info_span!("conn", id, %client, orig_dst = %orig);
    async move {
        let workload = shared.identity.resolve(&record);
        let provider = shared
            .config
            .providers
            .get(record.provider as usize)
            .map(|p| p.name.as_str());
        let mode = match record.action {
            ACTION_INTERCEPT => "intercept",
            ACTION_OBSERVE => "observe",
            ACTION_DENY => "deny",
            _ => "unknown",
        };
        shared.metrics.active().inc();
        let capture = &shared.config.capture;
        let relayed = tokio::select! {
            r = relay::relay(stream, orig, capture.mark, capture.connect_timeout) => r,
            _ = watcher.force.wait_for(|f| *f) => relay::Relayed {
                outcome: relay::Outcome::Shutdown, sent: 0, received: 0, error: None,
            },
        };
        shared.metrics.active().dec();
        shared.metrics.connection_done(
            provider.unwrap_or("unknown"),
            mode,
            relayed.outcome.as_str(),
            relayed.sent,
            relayed.received,
        );
        tracing::debug!(
            component = "capture",
            comm = %workload.comm,
            pid = workload.tgid,
            outcome = relayed.outcome.as_str(),
            dur = ?started.elapsed(),
            "connection completed"
        );
        shared.log.write(&ConnRecordLine {
            time: humantime::format_rfc3339_micros(started_at).to_string(),
            id,
            via: via.as_str(),
            client: client.to_string(),
            original_dst: orig.to_string(),
            provider,
            mode,
            workload: &workload,
            bytes_sent: relayed.sent,
            bytes_received: relayed.received,
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
            outcome: relayed.outcome.as_str(),
            error: relayed.error,
        });
    }
    .instrument(span)
    .await
}
