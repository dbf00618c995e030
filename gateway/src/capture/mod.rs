//! The redirect listeners: accept what the kernel redirected, find out where the client meant
//! to go and who it is, relay it there, and write one connection record.
//!
//! A connection with no redirect record was not sent here by our programs (someone connected
//! to the listener directly): it is closed at once, so the listener is never an open proxy.

pub mod classify;
pub mod connlog;
pub mod io;
pub mod relay;
pub mod tls;

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime},
};

use bytes::BytesMut;
use gateway_common::{ACTION_DENY, ACTION_INTERCEPT, ACTION_OBSERVE};
use tokio::{
    io::AsyncReadExt as _,
    net::{TcpListener, TcpStream},
    sync::{mpsc, watch},
};
use tracing::Instrument as _;

use crate::{
    config::Config,
    ebpf::ConnTable,
    identity,
    proxy::{self, ConnCtx, L7},
    socket::{peer_key, words_to_ip, ClientAddr, OrigDstAddr},
    telemetry::Metrics,
};
use classify::Verdict;

/// How long a client may take to send its first bytes before the connection is relayed as is
/// (a server-speaks-first protocol would wait forever otherwise).
const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a ClientHello split over segments may take to complete.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the TLS handshake with an intercepted client may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
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
    /// Which providers claim which destinations (kept by the endpoint sync task).
    pub claims: Arc<crate::ebpf::endpoints::SharedClaims>,
    pub identity: identity::Resolver,
    /// Pod identity from the container runtime (`identity.criSocket`).
    pub pods: Option<identity::cri::Pods>,
    pub host_netns_cookie: u64,
    pub metrics: Arc<Metrics>,
    pub log: ConnLogSink,
    pub l7: Arc<L7>,
    pub tls: tokio_rustls::TlsAcceptor,
    /// Connection ids, process-unique.
    pub next_id: AtomicU64,
    /// One permit per open captured connection (`proxy.maxConnections`).
    pub slots: Arc<tokio::sync::Semaphore>,
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
        Drain { tracker, done, force }
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
        let Ok(slot) = shared.slots.clone().try_acquire_owned() else {
            // Bounded: past the limit a connection costs its record's removal and nothing more.
            shared.conns.take(&peer_key(ClientAddr(peer), shared.host_netns_cookie));
            shared.metrics.refused_connection("max_connections");
            tracing::debug!(component = "capture", %peer, "proxy.maxConnections reached: connection closed");
            continue;
        };
        let shared = shared.clone();
        let watcher = watcher.clone();
        tokio::spawn(async move {
            handle(stream, ClientAddr(peer), via, shared, watcher).await;
            drop(slot);
        });
    }
}

async fn handle(stream: TcpStream, client: ClientAddr, via: Via, shared: Arc<Shared>, mut watcher: DrainWatcher) {
    let started = Instant::now();
    let started_at = SystemTime::now();
    let Some(record) = shared.conns.take(&peer_key(client, shared.host_netns_cookie)) else {
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
        // /proc reads and, for a process already gone, a bounded walk of the cgroup tree: off
        // the data-plane runtime.
        let mut workload = {
            let shared = shared.clone();
            match tokio::task::spawn_blocking(move || shared.identity.resolve(&record)).await {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(component = "capture", error = %e, "identity resolution failed");
                    return;
                }
            }
        };
        // The pod around a container: cached per container, bounded in time when the
        // runtime does not answer.
        if let (Some(pods), Some(id)) = (&shared.pods, &workload.container.container_id) {
            match pods.lookup(id).await {
                Ok(pod) => workload.pod = Some(pod),
                Err(why) => workload.pod_error = Some(why),
            }
        }
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
        shared.metrics.connection_opened();
        let relayed = tokio::select! {
            r = dispatch(stream, &record, client, orig, id, &workload, &shared) => r,
            _ = watcher.force.wait_for(|f| *f) => Dispatched {
                relayed: relay::Relayed { outcome: relay::Outcome::Shutdown, sent: 0, received: 0, error: None },
                sni: None,
                l7: false,
            },
        };
        let Dispatched { relayed, sni, l7 } = relayed;
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
        shared.log.write_json(&ConnRecordLine {
            record: "connection",
            time: humantime::format_rfc3339_micros(started_at).to_string(),
            id,
            via: via.as_str(),
            client: client.to_string(),
            original_dst: orig.to_string(),
            provider,
            mode,
            sni,
            l7,
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

struct Dispatched {
    relayed: relay::Relayed,
    sni: Option<String>,
    l7: bool,
}

/// Reads (and keeps) the first bytes until they say what the connection speaks.
async fn sniff(stream: &mut TcpStream) -> (BytesMut, Verdict) {
    let mut buf = BytesMut::with_capacity(2048);
    let started = std::time::Instant::now();
    loop {
        match classify::classify(&buf) {
            Verdict::NeedMore => {}
            verdict => return (buf, verdict),
        }
        let limit = if buf.is_empty() {
            FIRST_BYTES_TIMEOUT
        } else {
            HELLO_TIMEOUT
        };
        let left = limit.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 && buf.len() < classify::MAX_HELLO => {}
            _ => return (buf, Verdict::Other),
        }
    }
}

/// Intercept (TLS with a governed SNI, or plaintext HTTP) or relay as bytes.
async fn dispatch(
    mut stream: TcpStream,
    record: &gateway_common::ConnRecord,
    client: ClientAddr,
    orig: OrigDstAddr,
    id: u64,
    workload: &identity::Workload,
    shared: &Arc<Shared>,
) -> Dispatched {
    let (first, verdict) = sniff(&mut stream).await;
    let sni = match &verdict {
        Verdict::Tls(hello) => hello.sni.clone(),
        _ => None,
    };
    // TLS is terminated only for an SNI that names an intercepted provider (a leaf is minted
    // for nothing else); whether that provider may be reached at this destination is the
    // proxy's first check (421 otherwise). Any other SNI is relayed untouched.
    let intercept = record.action == ACTION_INTERCEPT
        && match &verdict {
            Verdict::Tls(hello) => hello
                .sni
                .as_deref()
                .is_some_and(|s| shared.l7.snapshot.load().config.intercepts(&s.to_ascii_lowercase())),
            Verdict::Http => true,
            Verdict::NeedMore | Verdict::Other => false,
        };
    if !intercept {
        let capture = &shared.config.capture;
        let relayed = relay::relay(stream, &first, orig, capture.mark, capture.connect_timeout).await;
        return Dispatched {
            relayed,
            sni,
            l7: false,
        };
    }
    let counters = Arc::new(io::Counters::default());
    let _ = stream.set_nodelay(true);
    let rewind = io::Rewind::new(first.freeze(), stream, counters.clone());
    let conn = Arc::new(ConnCtx {
        id,
        client,
        orig,
        orig_ip: orig.0.ip().to_string(),
        sni: sni.clone(),
        tls: matches!(verdict, Verdict::Tls(_)),
        workload: workload.clone(),
        claimants: shared.claims.claimants(orig.0),
        requests: Default::default(),
    });
    let mut outcome = relay::Outcome::Intercepted;
    let mut error = None;
    if conn.tls {
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, shared.tls.accept(rewind)).await {
            Ok(Ok(tls)) => proxy::serve(tls, conn, shared.l7.clone()).await,
            Ok(Err(e)) => {
                outcome = relay::Outcome::TlsHandshakeFailed;
                error = Some(e.to_string());
            }
            Err(_) => {
                outcome = relay::Outcome::TlsHandshakeFailed;
                error = Some("handshake timed out".into());
            }
        }
    } else {
        proxy::serve(rewind, conn, shared.l7.clone()).await;
    }
    let relayed = relay::Relayed {
        outcome,
        sent: counters.read.load(Ordering::Relaxed),
        received: counters.written.load(Ordering::Relaxed),
        error,
    };
    Dispatched { relayed, sni, l7: true }
}
