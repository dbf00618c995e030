//! The JSON the operator views read: `/api/status` (one screen's worth: attachment, rates,
//! errors by side, backends, limit store, today's spend) and `/api/records` (the latest audit
//! records, filtered). [`Status`] is also what `tollgate status` and `tollgate top` parse, so
//! both ends share one type.
//!
//! Rates are per second over the last second: a task on the admin runtime samples
//! `telemetry::Totals` once a second ([`Rates::sample`]); a status read never waits for it.

use std::{
    sync::{atomic::Ordering, Mutex, PoisonError},
    time::Instant,
};

use serde::{Deserialize, Serialize};

use super::State;
use crate::{
    accounting::recent::{self, Filter, SortBy, StatusFilter, Today, RING_CAPACITY},
    telemetry::Totals,
};

/// Rows of spend shown by default (the rest are one `other` row).
pub const DEFAULT_TOP: usize = 10;
/// Rows of spend one status may ask for.
pub const MAX_TOP: usize = 100;
/// Records `/api/records` returns by default.
pub const DEFAULT_RECORDS: usize = 100;

/// A count and its rate over the last second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    pub total: u64,
    pub per_s: f64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Connections {
    /// Open now.
    pub active: i64,
    /// Accepted since start, and per second.
    pub total: u64,
    pub per_s: f64,
}

/// Failed requests by the side that failed (the audit record's `error_side`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Errors {
    pub client: Rate,
    pub upstream: Rate,
    pub proxy: Rate,
}

/// A backend's ejection state (as `/backends` shows it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backend {
    pub backend: String,
    /// `healthy`, `ejected`, `half_open`, `probing`, `cooling_down`.
    pub state: String,
    pub consecutive_failures: u32,
    pub ejections: u32,
    /// Milliseconds until it is tried again, while it is out.
    pub available_in_ms: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitStore {
    /// `memory` (this process) or `redis`.
    pub kind: String,
    /// False while Redis is unreachable (fail-open then counts locally).
    pub healthy: bool,
    /// Counts taken while Redis was away that the bounded backlog dropped.
    pub dropped_counts: u64,
}

/// How many audit records the ring holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub held: usize,
    pub seen: u64,
    pub capacity: usize,
}

/// `/api/status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub pid: u32,
    pub version: String,
    pub uptime_s: u64,
    pub ready: bool,
    /// The kernel programs are attached.
    pub attached: bool,
    /// `open` or `closed` (`capture.failMode`); null when not known (in-process tests).
    pub fail_mode: Option<String>,
    /// Entries in the endpoint maps.
    pub endpoints: i64,
    pub connections: Connections,
    pub requests: Rate,
    pub errors: Errors,
    pub backends: Vec<Backend>,
    /// Null when this instance has no limit store.
    pub limit_store: Option<LimitStore>,
    pub spend_today: Today,
    pub records: Held,
}

// === impl Rates ===

/// Indexes into a sample of `Totals`.
const CONNECTIONS: usize = 0;
const REQUESTS: usize = 1;
const CLIENT_ERRORS: usize = 2;
const UPSTREAM_ERRORS: usize = 3;
const PROXY_ERRORS: usize = 4;

fn read(t: &Totals) -> [u64; 5] {
    [
        t.connections.load(Ordering::Relaxed),
        t.requests.load(Ordering::Relaxed),
        t.client_errors.load(Ordering::Relaxed),
        t.upstream_errors.load(Ordering::Relaxed),
        t.proxy_errors.load(Ordering::Relaxed),
    ]
}

#[derive(Default)]
struct Sampled {
    last: Option<(Instant, [u64; 5])>,
    per_s: [f64; 5],
}

/// Per-second rates of the totals, from samples taken once a second.
#[derive(Default)]
pub struct Rates {
    sampled: Mutex<Sampled>,
}

impl Rates {
    /// Takes a sample of `totals` at `now`: the rates become the change since the last one.
    pub fn sample(&self, totals: &Totals, now: Instant) {
        let values = read(totals);
        let mut s = self.sampled.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((then, before)) = s.last {
            let secs = now.saturating_duration_since(then).as_secs_f64();
            if secs > 0.0 {
                for i in 0..values.len() {
                    s.per_s[i] = values[i].saturating_sub(before[i]) as f64 / secs;
                }
            }
        }
        s.last = Some((now, values));
    }

    fn per_s(&self) -> [f64; 5] {
        self.sampled.lock().unwrap_or_else(PoisonError::into_inner).per_s
    }
}

// === /api/status ===

/// Parsed `?key=value&…`, values percent-decoded (`+` is a space). Unknown keys are refused
/// so that a typo does not silently show everything.
fn query<'a>(q: Option<&'a str>, known: &[&str]) -> Result<Vec<(&'a str, String)>, String> {
    let mut out = Vec::new();
    for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if !known.contains(&k) {
            return Err(format!("unknown parameter {k:?}: expected one of {}", known.join(", ")));
        }
        let v = v.replace('+', " ");
        let v = percent_encoding::percent_decode_str(&v)
            .decode_utf8_lossy()
            .into_owned();
        out.push((k, v));
    }
    Ok(out)
}

fn number(key: &str, v: &str, max: usize) -> Result<usize, String> {
    v.parse::<usize>()
        .ok()
        .filter(|n| *n <= max)
        .ok_or_else(|| format!("{key}: {v:?} is not a number from 0 to {max}"))
}

/// `/api/status?sort=spend|requests|errors&top=N`.
pub(super) fn status(state: &State, q: Option<&str>) -> Result<Status, String> {
    let (mut sort, mut top) = (SortBy::Spend, DEFAULT_TOP);
    for (k, v) in query(q, &["sort", "top"])? {
        match k {
            "sort" => {
                sort = SortBy::parse(&v).ok_or_else(|| format!("sort: {v:?} is not spend, requests or errors"))?;
            }
            _ => top = number("top", &v, MAX_TOP)?,
        }
    }
    let ready = state.readiness.body();
    let totals = read(&state.metrics.totals);
    let per_s = state.rates.per_s();
    let rate = |i: usize| Rate {
        total: totals[i],
        per_s: per_s[i],
    };
    let (spend_today, records) = match &state.recent {
        Some(r) => {
            let (held, seen) = r.held();
            (
                r.today(sort, top),
                Held {
                    held,
                    seen,
                    capacity: RING_CAPACITY,
                },
            )
        }
        None => (Today::default(), Held::default()),
    };
    Ok(Status {
        pid: ready.pid,
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_s: state.started.elapsed().as_secs(),
        ready: ready.ready,
        attached: ready.programs_attached,
        fail_mode: state.fail_mode.map(|m| {
            match m {
                crate::config::FailMode::Open => "open",
                crate::config::FailMode::Closed => "closed",
            }
            .to_string()
        }),
        endpoints: state.metrics.endpoints(),
        connections: Connections {
            active: state.metrics.active().get(),
            total: totals[CONNECTIONS],
            per_s: per_s[CONNECTIONS],
        },
        requests: rate(REQUESTS),
        errors: Errors {
            client: rate(CLIENT_ERRORS),
            upstream: rate(UPSTREAM_ERRORS),
            proxy: rate(PROXY_ERRORS),
        },
        backends: state
            .health
            .as_ref()
            .map(|h| h.statuses())
            .unwrap_or_default()
            .into_iter()
            .map(|s| Backend {
                backend: s.backend,
                state: s.state.to_string(),
                consecutive_failures: s.consecutive_failures,
                ejections: s.ejections,
                available_in_ms: s.available_in_ms,
            })
            .collect(),
        limit_store: state.limits.as_ref().map(|l| LimitStore {
            kind: if l.is_shared() { "redis" } else { "memory" }.to_string(),
            healthy: !l.is_degraded(),
            dropped_counts: l.dropped_pending(),
        }),
        spend_today,
        records,
    })
}

// === /api/records ===

/// `/api/records?workload=..&model=..&status=..&limit=N`, as JSON: `held`, `seen` and
/// `records` (each exactly as its audit log line), newest first.
pub(super) fn records(recent: Option<&recent::Recent>, q: Option<&str>) -> Result<Vec<u8>, String> {
    let mut f = Filter {
        limit: DEFAULT_RECORDS,
        ..Default::default()
    };
    for (k, v) in query(q, &["workload", "model", "status", "limit"])? {
        match k {
            "workload" => f.workload = Some(v),
            "model" => f.model = Some(v),
            "status" if v.is_empty() => {}
            "status" => {
                f.status = Some(
                    StatusFilter::parse(&v)
                        .ok_or_else(|| format!("status: {v:?} is not a status (200), a class (4xx) or error"))?,
                );
            }
            _ => f.limit = number("limit", &v, RING_CAPACITY)?,
        }
    }
    let got = recent.map(|r| r.records(&f));
    let (held, seen) = got.as_ref().map_or((0, 0), |g| (g.held, g.seen));
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(
        format!("{{\"held\":{held},\"seen\":{seen},\"capacity\":{RING_CAPACITY},\"records\":[").as_bytes(),
    );
    for (i, a) in got.iter().flat_map(|g| g.records.iter()).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        a.write_line(&mut out);
    }
    out.extend_from_slice(b"]}");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn rates_are_the_change_over_the_last_sample() {
        let totals = Totals::default();
        let rates = Rates::default();
        let t0 = Instant::now();
        rates.sample(&totals, t0);
        assert_eq!(rates.per_s(), [0.0; 5]);
        for _ in 0..6 {
            Totals::inc(&totals.requests);
        }
        Totals::inc(&totals.upstream_errors);
        rates.sample(&totals, t0 + Duration::from_secs(2));
        assert_eq!(rates.per_s()[REQUESTS], 3.0);
        assert_eq!(rates.per_s()[UPSTREAM_ERRORS], 0.5);
        rates.sample(&totals, t0 + Duration::from_secs(3));
        assert_eq!(rates.per_s()[REQUESTS], 0.0);
    }

    #[test]
    fn queries_decode_and_refuse_unknown_keys() {
        let q = query(Some("workload=python3+%28x%29&limit=5"), &["workload", "limit"]).unwrap();
        assert_eq!(q, [("workload", "python3 (x)".to_string()), ("limit", "5".to_string())]);
        assert!(query(Some("wrokload=x"), &["workload"])
            .unwrap_err()
            .contains("wrokload"));
        assert!(records(None, Some("limit=100000")).unwrap_err().contains("limit"));
        assert!(records(None, Some("status=teapot")).unwrap_err().contains("status"));
        let empty = records(None, Some("status=&limit=3")).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&empty).unwrap();
        assert_eq!(v["records"], serde_json::json!([]));
    }

    #[test]
    fn records_are_their_audit_lines() {
        let r = recent::Recent::default();
        let mut a = crate::accounting::audit::AuditRecord {
            status: 200,
            model: Some("gpt-4o".into()),
            ..Default::default()
        };
        a.workload.comm = "curl".into();
        r.push(a.clone());
        let body = records(Some(&r), Some("workload=curl")).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["held"], 1);
        assert_eq!(v["records"][0], serde_json::to_value(&a).unwrap());
    }
}
