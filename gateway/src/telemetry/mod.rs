//! Metrics (prometheus-client) and log setup; `series` finds the metrics a request's record
//! counts with one lookup; [`jsonl`] writes the audit and connection logs, [`chain`] makes the
//! audit log tamper-evident (hash chain, signed checkpoints, `tollgate audit verify`), [`otlp`]
//! and [`trace`] the spans.
//!
//! Every label value comes from a closed set (an outcome, a direction, a provider name from the
//! config, a kernel counter name) or is bounded (`Bounded`: models, workloads, pods), so the
//! series count is bounded.

pub mod chain;
pub mod jsonl;
pub mod otlp;
pub mod otlp_logs;
mod series;
pub mod trace;

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Mutex,
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

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

/// OpenTelemetry GenAI attributes, as Prometheus labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GenAiLabels {
    pub gen_ai_operation_name: String,
    pub gen_ai_provider_name: String,
    /// Bounded: see `Bounded`.
    pub gen_ai_request_model: String,
    pub route: String,
    pub backend: String,
    /// The process name (`comm`), bounded.
    pub workload: String,
    /// The pod's namespace (`none` outside a known pod), bounded.
    pub namespace: String,
    /// The pod (`none` outside a known pod), bounded: pods come and go by the thousand.
    pub pod: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub gen_ai_operation_name: String,
    pub gen_ai_provider_name: String,
    pub gen_ai_request_model: String,
    /// `input`, `output`, `cached_input`, `cache_write`, `reasoning`.
    pub gen_ai_token_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    pub limit: String,
    /// `allowed` or `denied`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BudgetLabels {
    pub limit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    pub backend: String,
    /// `ok`, `error_status`, `error`, `timeout`.
    pub result: &'static str,
}

/// Caps the distinct values a label takes: the first `max` values seen are kept, any other
/// becomes `other`, so client input can never grow the series count without bound.
pub struct Bounded {
    seen: Mutex<std::collections::HashSet<String>>,
    max: usize,
}

impl Bounded {
    pub fn new(max: usize) -> Bounded {
        Bounded {
            seen: Mutex::new(Default::default()),
            max,
        }
    }

    /// `value` if it is one of the values kept, else `other`. A value's answer never changes.
    pub fn label<'a>(&self, value: &'a str) -> &'a str {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains(value) {
            return value;
        }
        if seen.len() < self.max {
            seen.insert(value.to_string());
            return value;
        }
        "other"
    }
}

/// Distinct model label values kept.
pub const MAX_MODEL_LABELS: usize = 100;
/// Distinct workload label values kept.
pub const MAX_WORKLOAD_LABELS: usize = 100;
/// Distinct namespace label values kept.
pub const MAX_NAMESPACE_LABELS: usize = 100;
/// Distinct pod label values kept.
pub const MAX_POD_LABELS: usize = 200;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LogLabels {
    pub log: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    pub provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DnsLabels {
    pub transport: &'static str,
    pub outcome: &'static str,
}

/// Registers a metric of its default value under `name`.
fn reg<
    M: prometheus_client::metrics::TypedMetric
        + prometheus_client::encoding::EncodeMetric
        + Clone
        + Default
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
>(
    r: &mut Registry,
    name: &str,
    help: &str,
) -> M {
    reg_with(r, name, help, M::default())
}

/// Registers `metric` under `name`.
fn reg_with<
    M: prometheus_client::metrics::TypedMetric
        + prometheus_client::encoding::EncodeMetric
        + Clone
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
>(
    r: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    r.register(name, help, metric.clone());
    metric
}

/// Running totals that the operator views (`/api/status`) sample each second to show rates:
/// plain atomics, one relaxed add next to the metric that counts the same thing.
#[derive(Debug, Default)]
pub struct Totals {
    /// Captured connections accepted (counted as they open).
    pub connections: AtomicU64,
    /// L7 requests finished, however they ended.
    pub requests: AtomicU64,
    /// Failed requests whose client failed (the audit record's `error_side: client`).
    pub client_errors: AtomicU64,
    /// Failed requests whose upstream failed.
    pub upstream_errors: AtomicU64,
    /// Failed requests that Tollgate itself failed.
    pub proxy_errors: AtomicU64,
}

impl Totals {
    /// Adds one to `counter`.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// All of Tollgate's metrics.
pub struct Metrics {
    registry: Registry,
    /// What the operator views sample.
    pub totals: Totals,
    connections: Family<ConnLabels, Counter>,
    bytes: Family<BytesLabels, Counter>,
    unknown_connections: Counter,
    refused_connections: Family<ReasonLabels, Counter>,
    active: Gauge,
    ebpf_events: Family<EventLabels, Counter>,
    endpoints: Gauge,
    dns_failures: Family<ProviderLabels, Counter>,
    dns_queries: Family<DnsLabels, Counter>,
    /// Names whose addresses DNS learning holds in the endpoint maps now.
    pub dns_learned_names: Gauge,
    requests: Family<RequestLabels, Counter>,
    request_errors: Family<ReasonLabels, Counter>,
    config_reloads: Family<ResultLabels, Counter>,
    config_synchronized: Gauge,
    token_usage: Family<TokenLabels, Histogram>,
    request_duration: Family<GenAiLabels, Histogram>,
    time_to_first_token: Family<GenAiLabels, Histogram>,
    time_per_output_token: Family<GenAiLabels, Histogram>,
    cost: Family<GenAiLabels, Counter>,
    cost_unknown: Family<ProviderLabels, Counter>,
    attempts: Family<AttemptLabels, Counter>,
    /// Spans dropped because the export queue was full.
    pub spans_dropped: Counter,
    /// Audit lines sent to, dropped before, and given up on by the OTLP logs exporter.
    pub audit_export: crate::telemetry::otlp_logs::Counters,
    /// Lines that found a log's queue full, by log (`audit`: waited; `connlog`: dropped).
    log_queue_full: Family<LogLabels, Counter>,
    limit_decisions: Family<LimitLabels, Counter>,
    /// 1 while the Redis limit store is unreachable.
    pub limit_store_degraded: Gauge,
    /// Counts taken while Redis was away that the bounded backlog had to drop (never replayed).
    pub limit_store_dropped: Gauge,
    backend_ejected: Family<BackendLabels, Gauge>,
    /// Backends given to `set_backends`.
    backends_known: Mutex<std::collections::HashSet<String>>,
    budget_used: Family<BudgetLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Programs attached through their pinned links (of `ebpf::PROGRAM_COUNT`), read at scrape
    /// time.
    pub programs_attached: Gauge,
    /// The per-request series of each label combination seen.
    series: series::SeriesCache,
    models: Bounded,
    workloads: Bounded,
    namespaces: Bounded,
    pods: Bounded,
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
        let mut registry = Registry::default();
        let r = &mut registry;
        let config_synchronized: Gauge = reg(
            r,
            "tollgate_config_synchronized",
            "1 when the running configuration is the file's current content, 0 after a rejected reload",
        );
        config_synchronized.set(1);
        // Both results from the start: a rate over them reads 0, not nothing, before a reload.
        let config_reloads: Family<ResultLabels, Counter> = reg(
            r,
            "tollgate_config_reloads",
            "Configuration reloads by result (applied, rejected)",
        );
        for result in ["applied", "rejected"] {
            let _created = config_reloads.get_or_create(&ResultLabels { result });
        }
        // Histogram buckets follow the OpenTelemetry GenAI metric conventions.
        Metrics {
            connections: reg(r, "tollgate_captured_connections", "Captured connections handled by the proxy, by provider, mode and outcome"),
            bytes: reg(r, "tollgate_relayed_bytes", "Bytes relayed for captured connections"),
            unknown_connections: reg(r, "tollgate_unknown_connections", "Connections to the redirect listener with no redirect record (closed at once)"),
            refused_connections: reg(r, "tollgate_refused_connections", "Captured connections closed at once, by reason (max_connections: proxy.maxConnections reached)"),
            active: reg(r, "tollgate_active_connections", "Captured connections open now"),
            ebpf_events: reg(r, "tollgate_ebpf_connect_events", "Decisions of the kernel programs (redirected, skipped_own, skipped_no_listener, denied, failed_closed, record_failed, peername_restored, dns_redirected, dns_skipped_no_forwarder, dns_answer_restored, dns_flow_failed)"),
            endpoints: reg(r, "tollgate_endpoint_entries", "Entries in the endpoint maps"),
            dns_failures: reg(r, "tollgate_dns_resolution_failures", "Failed resolutions of provider hostnames (last addresses kept), and resolved addresses left out of full endpoint maps"),
            dns_queries: reg(r, "tollgate_dns_queries", "Workloads' DNS queries through the forwarder, by transport (udp, tcp) and outcome (answered, learned, learn_late, unparsed, upstream_failed, no_flow, busy)"),
            dns_learned_names: reg(r, "tollgate_dns_learned_names", "Governed names whose addresses DNS learning keeps in the endpoint maps now"),
            requests: reg(r, "tollgate_requests", "L7 requests by provider, backend and status class"),
            request_errors: reg(r, "tollgate_request_errors", "L7 requests that failed before a response, by reason"),
            config_reloads,
            token_usage: reg_with(r, "gen_ai_client_token_usage", "Tokens used per request, by token type", Family::new_with_constructor(|| {
                Histogram::new([1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0].into_iter())
            })),
            request_duration: reg_with(r, "gen_ai_server_request_duration", "Request duration in seconds", Family::new_with_constructor(|| {
                Histogram::new([0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92].into_iter())
            })),
            time_to_first_token: reg_with(r, "gen_ai_server_time_to_first_token", "Seconds to the first content token (streams) or first response byte", Family::new_with_constructor(|| {
                Histogram::new([0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0].into_iter())
            })),
            time_per_output_token: reg_with(r, "gen_ai_server_time_per_output_token", "Seconds per output token after the first", Family::new_with_constructor(|| {
                Histogram::new([0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5].into_iter())
            })),
            cost: reg(r, "tollgate_cost_nanodollars", "Cost of requests in nano-dollars (exact)"),
            cost_unknown: reg(r, "tollgate_cost_unknown_model", "Requests with usage whose model has no price (cost null in the audit record)"),
            attempts: reg(r, "tollgate_upstream_attempts", "Upstream attempts by backend and result"),
            limit_decisions: reg(r, "tollgate_limit_decisions", "Admission decisions per limit"),
            limit_store_degraded: reg(r, "tollgate_limit_store_degraded", "1 while the Redis limit store is unreachable (fail-open counts locally)"),
            backend_ejected: reg(r, "tollgate_backend_ejected", "1 while a backend is ejected or cooling down"),
            budget_used: reg(r, "tollgate_limit_budget_used_ratio", "Share of a limit's budget used by its fullest bucket in the current period, as this node's admissions saw it (1 after a refusal for it)"),
            programs_attached: reg(r, "tollgate_programs_attached", "eBPF programs attached through their pinned links (6 when capture works; fewer: connections escape or break)"),
            spans_dropped: reg(r, "tollgate_spans_dropped", "Trace spans dropped (export queue full)"),
            audit_export: crate::telemetry::otlp_logs::Counters {
                exported: reg(r, "tollgate_audit_exported", "Audit log lines the OTLP logs collector took"),
                dropped: reg(r, "tollgate_audit_export_dropped", "Audit log lines not exported: the export queue was full (the local file has them)"),
                failed: reg(r, "tollgate_audit_export_failed", "Audit log lines not exported: the collector did not take them after retries (the local file has them)"),
            },
            limit_store_dropped: reg(
                r,
                "tollgate_limit_store_dropped_counts",
                "Counts taken while Redis was unreachable that the bounded replay backlog dropped",
            ),
            log_queue_full: reg(
                r,
                "tollgate_log_queue_full",
                "Lines that found a log's queue full (audit: the request waited; connlog: the line was dropped)",
            ),
            config_synchronized,
            backends_known: Default::default(),
            totals: Totals::default(),
            series: Default::default(),
            models: Bounded::new(MAX_MODEL_LABELS),
            workloads: Bounded::new(MAX_WORKLOAD_LABELS),
            namespaces: Bounded::new(MAX_NAMESPACE_LABELS),
            pods: Bounded::new(MAX_POD_LABELS),
            last_ebpf: Mutex::new([0; gateway_common::STATS_LEN as usize]),
            registry,
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

    /// The counter of lines that found log `log`'s queue full.
    pub fn log_queue_full(&self, log: &'static str) -> Counter {
        self.log_queue_full.get_or_create(&LogLabels { log }).clone()
    }

    pub fn refused_connection(&self, reason: &'static str) {
        self.refused_connections.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn active(&self) -> &Gauge {
        &self.active
    }

    /// A captured connection was accepted: one more open, one more in the total.
    pub fn connection_opened(&self) {
        self.active.inc();
        Totals::inc(&self.totals.connections);
    }

    /// Entries in the endpoint maps, as last set.
    pub fn endpoints(&self) -> i64 {
        self.endpoints.get()
    }

    pub fn set_endpoints(&self, n: usize) {
        self.endpoints.set(n as i64);
    }

    pub fn dns_query(&self, transport: &'static str, outcome: &'static str) {
        self.dns_queries.get_or_create(&DnsLabels { transport, outcome }).inc();
    }

    pub fn dns_failure(&self, provider: &str) {
        self.dns_failures
            .get_or_create(&ProviderLabels {
                provider: provider.to_owned(),
            })
            .inc();
    }

    pub fn request_done(&self, provider: &str, backend: &str, status: u16) {
        Totals::inc(&self.totals.requests);
        self.requests
            .get_or_create(&RequestLabels {
                provider: provider.to_owned(),
                backend: backend.to_owned(),
                status: series::status_class(status).1,
            })
            .inc();
    }

    pub fn limit_decision(&self, limit: &str, outcome: &'static str) {
        self.limit_decisions
            .get_or_create(&LimitLabels {
                limit: limit.to_owned(),
                outcome,
            })
            .inc();
    }

    /// The configured backends: each has a `tollgate_backend_ejected` series (0 until health
    /// says otherwise), so a healthy backend reads 0 rather than nothing; those no longer
    /// configured are dropped.
    pub fn set_backends<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let names: std::collections::HashSet<&str> = names.into_iter().collect();
        let gone: Vec<BackendLabels> = {
            let mut gone = Vec::new();
            // Family has no iterator: the names seen are kept beside it.
            let mut known = self.backends_known.lock().unwrap_or_else(|e| e.into_inner());
            known.retain(|n| {
                let keep = names.contains(n.as_str());
                if !keep {
                    gone.push(BackendLabels { backend: n.clone() });
                }
                keep
            });
            for n in &names {
                if known.insert((*n).to_string()) {
                    let _created = self.backend_ejected.get_or_create(&BackendLabels {
                        backend: (*n).to_string(),
                    });
                }
            }
            gone
        };
        for labels in gone {
            self.backend_ejected.remove(&labels);
        }
    }

    /// Backend states, refreshed at scrape time.
    pub fn set_backend_states<'a>(&self, states: impl IntoIterator<Item = (&'a str, bool)>) {
        for (backend, out) in states {
            self.backend_ejected
                .get_or_create(&BackendLabels {
                    backend: backend.to_string(),
                })
                .set(i64::from(out));
        }
    }

    /// Budget shares (`limits::Store::budget_used`), refreshed at scrape time.
    pub fn set_budget_used(&self, levels: impl IntoIterator<Item = (String, f64)>) {
        for (limit, ratio) in levels {
            self.budget_used.get_or_create(&BudgetLabels { limit }).set(ratio);
        }
    }

    pub fn attempt(&self, backend: &str, result: &'static str) {
        self.attempts
            .get_or_create(&AttemptLabels {
                backend: backend.to_owned(),
                result,
            })
            .inc();
    }

    /// Everything an audit record says that metrics count.
    pub fn request_audit(
        &self,
        a: &crate::accounting::audit::AuditRecord,
        priced: bool,
        latency: std::time::Duration,
        ttft: Option<std::time::Duration>,
        prices: &crate::accounting::PriceTable,
    ) {
        Totals::inc(&self.totals.requests);
        let series = self.series(a, prices);
        series.request(self, a.status).inc();
        series.duration(self).observe(latency.as_secs_f64());
        if let Some(t) = ttft {
            series.ttft(self).observe(t.as_secs_f64());
        }
        let Some(tokens) = &a.tokens else {
            return;
        };
        let counts = [
            tokens.input,
            tokens.output,
            tokens.cached_input,
            tokens.cache_write,
            tokens.reasoning,
        ];
        for (i, n) in counts.into_iter().enumerate() {
            // Input and output always; the others when the provider reported some.
            if n > 0 || i < 2 {
                series.tokens(self, i).observe(n as f64);
            }
        }
        if let (Some(t), true) = (ttft, tokens.output > 1) {
            let per = (latency.saturating_sub(t)).as_secs_f64() / (tokens.output - 1) as f64;
            series.per_token(self).observe(per);
        }
        match a.cost_nano_usd {
            Some(nano) => series.cost(self).inc_by(nano),
            None if !priced => series.cost_unknown(self).inc(),
            None => 0,
        };
    }

    pub fn request_error(&self, reason: &'static str) {
        self.request_errors.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn config_reload(&self, applied: bool) {
        let result = if applied { "applied" } else { "rejected" };
        self.config_reloads.get_or_create(&ResultLabels { result }).inc();
        self.config_synchronized.set(i64::from(applied));
    }

    /// Renders the text exposition, first folding in the kernel counters (their totals, as
    /// `ebpf::Stats::read` gives them).
    pub fn render(&self, kernel: Option<[u64; gateway_common::STATS_LEN as usize]>) -> String {
        if let Some(now) = kernel {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_inputs_are_rendered_before_anything_happens() {
        let m = Metrics::new();
        m.set_budget_used([("daily".to_string(), 0.925)]);
        m.programs_attached.set(6);
        m.set_backends(["a", "b"]);
        m.set_backend_states([("b", true)]);
        m.set_backends(["b", "c"]);
        let text = m.render(None);
        assert!(text.contains("tollgate_backend_ejected{backend=\"b\"} 1"), "{text}");
        assert!(
            text.contains("tollgate_backend_ejected{backend=\"c\"} 0"),
            "a healthy backend reads 0\n{text}"
        );
        assert!(
            !text.contains("backend=\"a\""),
            "a backend no longer configured goes\n{text}"
        );
        assert!(
            text.contains("tollgate_config_reloads_total{result=\"rejected\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("tollgate_limit_budget_used_ratio{limit=\"daily\"} 0.925"),
            "{text}"
        );
        assert!(text.contains("tollgate_programs_attached 6"), "{text}");
        // The alert rules and dashboard name these (deploy/prometheus, deploy/grafana).
        for name in [
            "# TYPE tollgate_limit_budget_used_ratio gauge",
            "# TYPE tollgate_programs_attached gauge",
            "# TYPE tollgate_config_synchronized gauge",
            "# TYPE tollgate_limit_store_degraded gauge",
            "# TYPE tollgate_backend_ejected gauge",
        ] {
            assert!(text.contains(name), "{name}\n{text}");
        }
    }
}
