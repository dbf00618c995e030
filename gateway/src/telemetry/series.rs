//! The metrics a request's record counts, found with one lookup per request.
//!
//! A record touches up to ten series of four label sets (the request counter; duration, time
//! to first token, time per output token and cost; token counts by type; unpriced requests).
//! Finding each in its `Family` hashes its label strings with SipHash after allocating them.
//! Instead the handles of all of them for one combination of the record's raw label inputs are
//! kept together, found with one hash of those inputs, and each handle is taken from its
//! `Family` the first time it is used (so a series that never counted anything is never
//! exported). The cache holds at most `MAX_CACHED` combinations: past that, requests find their
//! series the slow way, so a flood of distinct names costs time, never memory.

use std::{
    cell::RefCell,
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
};

use prometheus_client::metrics::{counter::Counter, histogram::Histogram};

use super::{GenAiLabels, Metrics, ProviderLabels, RequestLabels, TokenLabels};
use crate::accounting::{audit::AuditRecord, PriceTable};

/// Label combinations kept. Each is a few hundred bytes; the label bounds (`Bounded`) keep
/// the number of distinct series far below this in any real fleet.
const MAX_CACHED: usize = 4096;

/// Token types, in the order `Series::tokens` holds them.
const TOKEN_TYPES: [&str; 5] = ["input", "output", "cached_input", "cache_write", "reasoning"];

/// Status classes, in the order `Series::requests` holds them.
const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

/// The status class of `status` (`2xx`, …) and its index in `STATUS_CLASSES`.
pub(super) fn status_class(status: u16) -> (usize, &'static str) {
    let i = match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        500..=599 => 4,
        _ => 5,
    };
    (i, STATUS_CLASSES[i])
}

/// The handles of one label combination.
pub(super) struct Series {
    labels: GenAiLabels,
    duration: OnceLock<Histogram>,
    ttft: OnceLock<Histogram>,
    per_token: OnceLock<Histogram>,
    cost: OnceLock<Counter>,
    cost_unknown: OnceLock<Counter>,
    tokens: [OnceLock<Histogram>; 5],
    requests: [OnceLock<Counter>; 6],
}

/// Combinations seen, by their raw inputs (see `key`).
#[derive(Default)]
pub(super) struct SeriesCache(Mutex<HashMap<Box<[u8]>, Arc<Series>, foldhash::fast::RandomState>>);

thread_local! {
    /// The key being built, reused across requests.
    static KEY: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The raw inputs of a record's labels, each length-prefixed so that no value can pose as
/// two (a process name may hold any byte).
fn key(buf: &mut Vec<u8>, a: &AuditRecord, model_priced: bool) {
    buf.clear();
    let w = &a.workload;
    for part in [
        Some(&*a.operation),
        a.provider.as_deref(),
        a.model.as_deref(),
        a.route.as_deref(),
        a.backend.as_deref(),
        Some(w.comm.as_str()),
        w.namespace.as_deref(),
        w.pod.as_deref(),
    ] {
        match part {
            Some(s) => {
                buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
                buf.extend_from_slice(s.as_bytes());
            }
            None => buf.extend_from_slice(&u32::MAX.to_le_bytes()),
        }
    }
    buf.push(u8::from(model_priced));
}

impl Metrics {
    /// The series of record `a`.
    pub(super) fn series(&self, a: &AuditRecord, prices: &PriceTable) -> Arc<Series> {
        let priced = a.model.as_deref().is_some_and(|m| prices.knows(m));
        KEY.with_borrow_mut(|buf| {
            key(buf, a, priced);
            let mut cache = self.series.0.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(s) = cache.get(buf.as_slice()) {
                return s.clone();
            }
            let s = Arc::new(Series::new(self.labels(a, priced)));
            if cache.len() < MAX_CACHED {
                cache.insert(buf.as_slice().into(), s.clone());
            }
            s
        })
    }

    /// The bounded label values of record `a` (the slow way, once per combination).
    fn labels(&self, a: &AuditRecord, priced: bool) -> GenAiLabels {
        // Only priced models (the shipped table and config) get their own label value.
        let model = match a.model.as_deref() {
            Some(m) if priced => self.models.label(m),
            Some(_) => "other",
            None => "none",
        };
        GenAiLabels {
            gen_ai_operation_name: a.operation.to_string(),
            gen_ai_provider_name: a.provider.clone().unwrap_or_else(|| "unknown".into()),
            gen_ai_request_model: model.to_string(),
            route: a.route.clone().unwrap_or_else(|| "none".into()),
            backend: a.backend.clone().unwrap_or_else(|| "none".into()),
            workload: self.workloads.label(&a.workload.comm).to_string(),
            namespace: a
                .workload
                .namespace
                .as_deref()
                .map_or("none", |ns| self.namespaces.label(ns))
                .to_string(),
            pod: a
                .workload
                .pod
                .as_deref()
                .map_or("none", |pod| self.pods.label(pod))
                .to_string(),
        }
    }
}

impl Series {
    fn new(labels: GenAiLabels) -> Series {
        Series {
            labels,
            duration: OnceLock::new(),
            ttft: OnceLock::new(),
            per_token: OnceLock::new(),
            cost: OnceLock::new(),
            cost_unknown: OnceLock::new(),
            tokens: Default::default(),
            requests: Default::default(),
        }
    }

    pub(super) fn request(&self, m: &Metrics, status: u16) -> &Counter {
        let (i, status) = status_class(status);
        self.requests[i].get_or_init(|| {
            let l = RequestLabels {
                provider: self.labels.gen_ai_provider_name.clone(),
                backend: self.labels.backend.clone(),
                status,
            };
            m.requests.get_or_create(&l).clone()
        })
    }

    pub(super) fn duration(&self, m: &Metrics) -> &Histogram {
        self.duration
            .get_or_init(|| m.request_duration.get_or_create(&self.labels).clone())
    }

    pub(super) fn ttft(&self, m: &Metrics) -> &Histogram {
        self.ttft
            .get_or_init(|| m.time_to_first_token.get_or_create(&self.labels).clone())
    }

    pub(super) fn per_token(&self, m: &Metrics) -> &Histogram {
        self.per_token
            .get_or_init(|| m.time_per_output_token.get_or_create(&self.labels).clone())
    }

    pub(super) fn cost(&self, m: &Metrics) -> &Counter {
        self.cost.get_or_init(|| m.cost.get_or_create(&self.labels).clone())
    }

    pub(super) fn cost_unknown(&self, m: &Metrics) -> &Counter {
        self.cost_unknown.get_or_init(|| {
            let l = ProviderLabels {
                provider: self.labels.gen_ai_provider_name.clone(),
            };
            m.cost_unknown.get_or_create(&l).clone()
        })
    }

    /// Token counts of type `TOKEN_TYPES[i]`.
    pub(super) fn tokens(&self, m: &Metrics, i: usize) -> &Histogram {
        self.tokens[i].get_or_init(|| {
            let l = TokenLabels {
                gen_ai_operation_name: self.labels.gen_ai_operation_name.clone(),
                gen_ai_provider_name: self.labels.gen_ai_provider_name.clone(),
                gen_ai_request_model: self.labels.gen_ai_request_model.clone(),
                gen_ai_token_type: TOKEN_TYPES[i],
            };
            m.token_usage.get_or_create(&l).clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::accounting::audit::Tokens;

    fn record(comm: &str, pod: Option<&str>) -> AuditRecord {
        let mut a = AuditRecord {
            operation: "chat".into(),
            provider: Some("openai".into()),
            model: Some("gpt-4o-mini".into()),
            route: Some("r".into()),
            backend: Some("b".into()),
            status: 200,
            tokens: Some(Tokens {
                input: 10,
                output: 5,
                total: 15,
                ..Default::default()
            }),
            cost_nano_usd: Some(7),
            ..Default::default()
        };
        a.workload.comm = comm.into();
        a.workload.pod = pod.map(str::to_string);
        a
    }

    fn count(m: &Metrics, a: &AuditRecord) {
        let prices = PriceTable::new(&Default::default()).unwrap();
        m.request_audit(
            a,
            true,
            Duration::from_millis(3),
            Some(Duration::from_millis(1)),
            &prices,
        );
    }

    #[test]
    fn each_label_set_is_counted_in_its_own_series() {
        let m = Metrics::new();
        count(&m, &record("python3", None));
        count(&m, &record("python3", None));
        count(&m, &record("curl", None));
        let out = m.render(None);
        let line = |prefix: &str| {
            out.lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix} in\n{out}"))
                .to_string()
        };
        assert!(line("tollgate_requests_total{").ends_with(" 3"), "{out}");
        let durations = |w: &str| {
            out.lines()
                .find(|l| l.starts_with("gen_ai_server_request_duration_count{") && l.contains(w))
                .map(|l| l.rsplit(' ').next().unwrap_or_default().to_string())
        };
        assert_eq!(durations("workload=\"python3\"").as_deref(), Some("2"), "{out}");
        assert_eq!(durations("workload=\"curl\"").as_deref(), Some("1"), "{out}");
        assert!(out.contains("workload=\"python3\",namespace=\"none\",pod=\"none\"} 14"));
        assert!(out.contains("workload=\"curl\",namespace=\"none\",pod=\"none\"} 7"));
        assert!(
            out.contains("gen_ai_request_model=\"gpt-4o-mini\",gen_ai_token_type=\"input\"} 3"),
            "{out}"
        );
        // Only the token types reported appear.
        assert!(!out.contains("gen_ai_token_type=\"reasoning\""), "{out}");
    }

    #[test]
    fn values_cannot_pose_as_other_values() {
        // Without length prefixes these two would make the same key.
        let m = Metrics::new();
        count(&m, &record("a", Some("b")));
        count(&m, &record("a\0\0\0\u{1}b", None));
        let out = m.render(None);
        assert_eq!(out.matches("gen_ai_server_request_duration_count{").count(), 2, "{out}");
    }

    #[test]
    fn a_flood_of_names_is_bounded() {
        let m = Metrics::new();
        for i in 0..MAX_CACHED + 500 {
            count(&m, &record(&format!("w{i}"), None));
        }
        assert_eq!(m.series.0.lock().unwrap().len(), MAX_CACHED);
        let out = m.render(None);
        let series = out.matches("gen_ai_server_request_duration_count{").count();
        assert_eq!(series, super::super::MAX_WORKLOAD_LABELS + 1, "kept names and `other`");
        assert!(out.contains("workload=\"other\""));
    }
}
