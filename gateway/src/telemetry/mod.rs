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
pub struct RequestLabels {
    pub provider: String,
    pub backend: String,
    /// `2xx`, `4xx`, `5xx`, …
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
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
    requests: Family<RequestLabels, Counter>,
    request_errors: Family<ReasonLabels, Counter>,
    config_reloads: Family<ResultLabels, Counter>,
    config_synchronized: Gauge,
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
        registry.register("relayed_bytes", "Bytes relayed for captured connections", bytes.clone());
        let unknown_connections = Counter::default();
        registry.register(
            "unknown_connections",
            "Connections to the redirect listener with no redirect record (closed at once)",
            unknown_connections.clone(),
        );
        let active = Gauge::default();
        registry.register("active_connections", "Captured connections open now", active.clone());
        let ebpf_events = Family::<EventLabels, Counter>::default();
        registry.register(
            "ebpf_connect_events",
            "Decisions of the kernel programs (redirected, skipped_own, skipped_no_listener, denied, failed_closed, record_failed, peername_restored)",
            ebpf_events.clone(),
        );
        let endpoints = Gauge::default();
        registry.register("endpoint_entries", "Entries in the endpoint maps", endpoints.clone());
        let dns_failures = Family::<ProviderLabels, Counter>::default();
        registry.register(
            "dns_resolution_failures",
            "Failed resolutions of provider hostnames (last addresses kept)",
            dns_failures.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "L7 requests by provider, backend and status class",
            requests.clone(),
        );
        let request_errors = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "request_errors",
            "L7 requests that failed before a response, by reason",
            request_errors.clone(),
        );
        let config_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Configuration reloads by result (applied, rejected)",
            config_reloads.clone(),
        );
        let config_synchronized = Gauge::default();
        registry.register(
            "config_synchronized",
            "1 when the running configuration is the file's current content, 0 after a rejected reload",
            config_synchronized.clone(),
        );
        config_synchronized.set(1);
        Metrics {
            registry,
            requests,
            request_errors,
            config_reloads,
            config_synchronized,
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

    pub fn connection_done(&self, provider: &str, mode: &'static str, outcome: &'static str, sent: u64, received: u64) {
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

    pub fn request_done(&self, provider: &str, backend: &str, status: u16) {
        let status = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            500..=599 => "5xx",
            _ => "other",
        };
        self.requests
            .get_or_create(&RequestLabels {
                provider: provider.to_owned(),
                backend: backend.to_owned(),
                status,
            })
            .inc();
    }

    pub fn request_error(&self, reason: &'static str) {
        self.request_errors.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn config_reload(&self, applied: bool) {
        let result = if applied { "applied" } else { "rejected" };
        self.config_reloads.get_or_create(&ResultLabels { result }).inc();
        self.config_synchronized.set(i64::from(applied));
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
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String");
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
