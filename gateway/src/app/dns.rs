//! Wiring of DNS learning (`crate::dns`): the forwarder's sockets beside each redirect
//! listener, their place in the kernel's config and `LISTENERS`, and where the forwarder finds
//! which server a query was going to.

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context as _;
use gateway_common::{ConnRecord, RedirectConfig, FLAG_DNS, LISTENER_DNS_TCP, LISTENER_DNS_UDP};
use tokio::sync::watch;

use crate::{
    config::{Config, Provider},
    dns::{
        forwarder::{Flows, Forwarder, Pair},
        Learner,
    },
    ebpf::{self, ConnTable},
    socket::{peer_key, words_to_ip, ClientAddr},
    telemetry::Metrics,
};

/// The forwarder's socket pairs, by `LISTENER_*` slot of the listener they sit beside.
pub(super) struct DnsSockets(Vec<(u32, Pair)>);

impl DnsSockets {
    /// Binds a pair on the address of each listener in `listeners` (`(slot, address)`), on
    /// `dns.forwarderPort`. `None` when `dns.learn` is off.
    pub(super) fn bind(config: &Config, listeners: &[(u32, SocketAddr)]) -> anyhow::Result<Option<DnsSockets>> {
        if !config.dns.learn {
            return Ok(None);
        }
        let mut pairs = Vec::new();
        for (slot, listener) in listeners {
            let addr = SocketAddr::new(listener.ip(), config.dns.forwarder_port);
            let pair = Pair::bind(addr)
                .with_context(|| format!("cannot bind the DNS forwarder on {addr} (dns.forwarderPort)"))?;
            pairs.push((*slot, pair));
        }
        Ok(Some(DnsSockets(pairs)))
    }

    /// Tells the programs where the forwarder listens.
    pub(super) fn configure(&self, rc: &mut RedirectConfig) -> anyhow::Result<()> {
        for (slot, pair) in &self.0 {
            let port = pair.local_addr()?.port().to_be();
            match *slot {
                gateway_common::LISTENER_HOST4 => rc.dns_port4 = port,
                gateway_common::LISTENER_HOST6 => rc.dns_port6 = port,
                gateway_common::LISTENER_NODE4 => rc.dns_node_port4 = port,
                _ => rc.dns_node_port6 = port,
            }
        }
        rc.flags |= FLAG_DNS;
        Ok(())
    }

    /// Puts the sockets in `LISTENERS`: the programs redirect only to a forwarder there.
    pub(super) fn register(&self, loaded: &mut ebpf::Loaded) -> anyhow::Result<()> {
        for (slot, pair) in &self.0 {
            loaded.register_listener(LISTENER_DNS_UDP + slot, &pair.udp)?;
            loaded.register_listener(LISTENER_DNS_TCP + slot, &pair.tcp)?;
        }
        Ok(())
    }

    /// The forwarder's addresses, for the ready file.
    pub(super) fn addrs(&self) -> Vec<SocketAddr> {
        self.0.iter().filter_map(|(_, p)| p.local_addr().ok()).collect()
    }

    /// One UDP and one TCP task per pair.
    pub(super) fn serve(
        self,
        forwarder: &Arc<Forwarder>,
        shutdown: &watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        for (_, pair) in self.0 {
            if let Ok(addr) = pair.local_addr() {
                tracing::info!(%addr, "DNS forwarder listening (UDP and TCP)");
            }
            tasks.push(tokio::spawn(forwarder.clone().serve_udp(pair.udp, shutdown.clone())));
            tasks.push(tokio::spawn(forwarder.clone().serve_tcp(pair.tcp, shutdown.clone())));
        }
        tasks
    }
}

/// The kernel's records of redirected queries: `DNS_FLOWS` for datagrams (left in place: a
/// client may send again from the same port), `CONNS` for TCP (taken once, as the proxy does).
pub(super) struct KernelFlows {
    pub(super) udp: ConnTable,
    pub(super) tcp: Arc<ConnTable>,
    pub(super) host_netns_cookie: u64,
}

impl KernelFlows {
    /// The forwarder, finding servers through these records.
    pub(super) fn forwarder(
        self,
        config: &Config,
        learner: Learner,
        providers: watch::Receiver<Arc<Vec<Provider>>>,
        metrics: &Arc<Metrics>,
    ) -> Arc<Forwarder> {
        Forwarder::new(
            Arc::new(self),
            learner,
            providers,
            config.capture.mark,
            config.dns.query_timeout,
            metrics.clone(),
        )
    }
}

fn server(record: ConnRecord) -> SocketAddr {
    SocketAddr::new(words_to_ip(record.orig_ip), u16::from_be(record.orig_port))
}

impl Flows for KernelFlows {
    fn udp(&self, peer: SocketAddr) -> Option<SocketAddr> {
        self.udp
            .get(&peer_key(ClientAddr(peer), self.host_netns_cookie))
            .map(server)
    }

    fn tcp(&self, peer: SocketAddr) -> Option<SocketAddr> {
        self.tcp
            .take(&peer_key(ClientAddr(peer), self.host_netns_cookie))
            .filter(|r| r.action == gateway_common::ACTION_DNS)
            .map(server)
    }
}
