//! Metrics (prometheus-client) and log setup.
//!
//! Every label value comes from a closed set (an outcome, a direction, a provider name from the
//! config, a kernel counter name), never from client input, so the series count is bounded.

use std::sync::Mutex;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::ebpf::Stats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnLabels {
    pub provider: String,
    pub mode: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BytesLabels {
    pub provider: String,
    /// `sent` (client → upstream) or `received` (upstream → client).
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    pub provider: String,
}

/// All of Tollgate's metrics.
pub struct Metrics {
    registry: Registry,
    connections: Family<ConnLabels, Counter>,
    bytes: Family<BytesLabels, Counter>,
    unknown_connections: Counter,
    active: Gauge,
    ebpf_events: Family<EventLabels, Counter>,
    endpoints: Gauge,
    dns_failures: Family<ProviderLabels, Counter>,
    /// Last kernel counter values seen, to turn the map's totals into counter increments.
    last_ebpf: Mutex<[u64; gateway_common::STATS_LEN as usize]>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("tollgate");
        let connections = Family::<ConnLabels, Counter>::default();
        registry.register(
            "captured_connections",
            "Captured connections handled by the proxy, by provider, mode and outcome",
            connections.clone(),
        );
        let bytes = Family::<BytesLabels, Counter>::default();
        registry.register(
            "relayed_bytes",
            "Bytes relayed for captured connections",
            bytes.clone(),
        );
        let unknown_connections = Counter::default();
        registry.register(
            "unknown_connections",
            "Connections to the redirect listener with no redirect record (closed at once)",
            unknown_connections.clone(),
        );
        let active = Gauge::default();
        registry.register(
            "active_connections",
            "Captured connections open now",
            active.clone(),
        );
        let ebpf_events = Family::<EventLabels, Counter>::default();
        registry.register(
            "ebpf_connect_events",
            "Decisions of the kernel programs (redirected, skipped_own, skipped_no_listener, denied, failed_closed, record_failed, peername_restored)",
            ebpf_events.clone(),
        );
        let endpoints = Gauge::default();
        registry.register(
            "endpoint_entries",
            "Entries in the endpoint maps",
            endpoints.clone(),
        );
        let dns_failures = Family::<ProviderLabels, Counter>::default();
        registry.register(
            "dns_resolution_failures",
            "Failed resolutions of provider hostnames (last addresses kept)",
            dns_failures.clone(),
        );
        Metrics {
            registry,
            connections,
            bytes,
            unknown_connections,
            active,
            ebpf_events,
            endpoints,
            dns_failures,
            last_ebpf: Mutex::new([0; gateway_common::STATS_LEN as usize]),
        }
    }

    pub fn connection_done(
        &self,
        provider: &str,
        mode: &'static str,
        outcome: &'static str,
        sent: u64,
        received: u64,
    ) {
        self.connections
            .get_or_create(&ConnLabels {
                provider: provider.to_owned(),
                mode,
                outcome,
            })
            .inc();
        self.bytes
            .get_or_create(&BytesLabels {
                provider: provider.to_owned(),
                direction: "sent",
            })
            .inc_by(sent);
        self.bytes
            .get_or_create(&BytesLabels {
                provider: provider.to_owned(),
                direction: "received",
            })
            .inc_by(received);
    }

    pub fn unknown_connection(&self) {
        self.unknown_connections.inc();
    }

    pub fn active(&self) -> &Gauge {
        &self.active
    }

    pub fn set_endpoints(&self, n: usize) {
        self.endpoints.set(n as i64);
    }

    pub fn dns_failure(&self, provider: &str) {
        self.dns_failures
            .get_or_create(&ProviderLabels {
                provider: provider.to_owned(),
            })
            .inc();
    }

    /// Renders the text exposition, first folding in the kernel counters.
    pub fn render(&self, stats: Option<&Stats>) -> String {
        if let Some(stats) = stats {
            let now = stats.read();
            let mut last = self.last_ebpf.lock().unwrap_or_else(|e| e.into_inner());
            for (i, name) in gateway_common::STAT_NAMES.iter().enumerate() {
                if name.is_empty() {
                    continue;
                }
                let counter = self.ebpf_events.get_or_create(&EventLabels { event: name });
                counter.inc_by(now[i].saturating_sub(last[i]));
            }
            *last = now;
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }
}

/// Logs go to stderr; `TOLLGATE_LOG` takes an env-filter directive (default `info`).
pub fn init_logging(filter: Option<String>) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter.as_deref().unwrap_or("info"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}
