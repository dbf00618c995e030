//! The latest audit records and today's spend, in memory, for the operator views
//! (`/api/records`, `/api/status`, `tollgate status`, `tollgate top`, `/ui`).
//!
//! `proxy::record` hands over each record it has just written to the audit log: one `Arc`
//! made before the lock, then one short lock to push it into the ring and add it to today's
//! tallies (a hash lookup through a reused key buffer, no allocation once a key is known).
//! Nothing is rendered on the request path: the admin thread reads and renders.
//!
//! Bounded whatever workloads do: at most [`RING_CAPACITY`] records, and at most
//! [`MAX_KEYS`] workloads and as many models a day; later ones are counted under
//! [`OTHER`]. Today is the UTC day: the tallies start again at UTC midnight (checked on every
//! push and every read, so an idle gateway shows zero the morning after). The tallies only
//! see requests since this process started (or since audit was enabled): the audit log, read
//! by `tollgate usage`, is the record that survives restarts.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, PoisonError},
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use super::{audit::AuditRecord, report::workload_key, usd};

/// Records kept (the newest).
pub const RING_CAPACITY: usize = 1_000;
/// Distinct workloads (and, apart, models) tallied a day; more are counted under [`OTHER`].
pub const MAX_KEYS: usize = 1_000;
/// The row of everything not shown (or not tallied by name).
pub const OTHER: &str = "other";
/// Longest name a tally keeps (bytes): model names come from clients.
const MAX_KEY_LEN: usize = 200;

const SECS_PER_DAY: u64 = 86_400;

/// What a set of requests used and cost.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spend {
    pub requests: u64,
    /// Requests answered with a status of 400 or more, or that failed (as `tollgate usage`
    /// counts them).
    pub errors: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Exact cost of the priced requests, in nano-dollars.
    pub cost_nano_usd: u64,
    /// Requests with usage but no price (not in the cost).
    pub unpriced: u64,
}

impl Spend {
    fn add(&mut self, a: &AuditRecord) {
        self.requests += 1;
        if a.status >= 400 || a.error.is_some() {
            self.errors += 1;
        }
        if let Some(t) = &a.tokens {
            self.input_tokens = self.input_tokens.saturating_add(t.input);
            self.output_tokens = self.output_tokens.saturating_add(t.output);
            match a.cost_nano_usd {
                Some(n) => self.cost_nano_usd = self.cost_nano_usd.saturating_add(n),
                None => self.unpriced += 1,
            }
        }
    }

    fn merge(&mut self, o: &Spend) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.input_tokens = self.input_tokens.saturating_add(o.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(o.output_tokens);
        self.cost_nano_usd = self.cost_nano_usd.saturating_add(o.cost_nano_usd);
        self.unpriced += o.unpriced;
    }
}

/// One row of a spend table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendRow {
    /// The workload (as `tollgate usage --by workload` names it), the model, or [`OTHER`].
    pub key: String,
    #[serde(flatten)]
    pub spend: Spend,
    /// `cost_nano_usd` as an exact decimal string of USD.
    pub cost_usd: String,
}

impl SpendRow {
    fn new(key: String, spend: Spend) -> SpendRow {
        let cost_usd = usd(spend.cost_nano_usd);
        SpendRow { key, spend, cost_usd }
    }
}

/// What rows are ordered by (the largest first).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SortBy {
    #[default]
    Spend,
    Requests,
    Errors,
}

impl SortBy {
    pub fn parse(text: &str) -> Option<SortBy> {
        match text {
            "spend" | "cost" => Some(SortBy::Spend),
            "requests" => Some(SortBy::Requests),
            "errors" => Some(SortBy::Errors),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SortBy::Spend => "spend",
            SortBy::Requests => "requests",
            SortBy::Errors => "errors",
        }
    }

    fn key(self, s: &Spend) -> (u64, u64, u64) {
        match self {
            SortBy::Spend => (s.cost_nano_usd, s.requests, s.errors),
            SortBy::Requests => (s.requests, s.cost_nano_usd, s.errors),
            SortBy::Errors => (s.errors, s.requests, s.cost_nano_usd),
        }
    }
}

/// Today's spend, as the views show it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Today {
    /// The UTC day, `YYYY-MM-DD`.
    pub day: String,
    pub total: SpendRow,
    /// The first rows by `sort`, then one [`OTHER`] row for the rest (when there is any).
    pub by_workload: Vec<SpendRow>,
    pub by_model: Vec<SpendRow>,
    /// Distinct workloads seen today (at most [`MAX_KEYS`], beyond which they are `other`).
    pub workloads: usize,
    pub sort: SortBy,
}

/// Which records `/api/records` returns.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Part of the workload's name (case-insensitive).
    pub workload: Option<String>,
    /// Part of the model asked for or served (case-insensitive).
    pub model: Option<String>,
    pub status: Option<StatusFilter>,
    /// At most this many, the newest first.
    pub limit: usize,
}

/// A status filter: `200`, `4xx`, or `error` (any error: status of 400 or more, or failed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusFilter {
    Exact(u16),
    Class(u16),
    Error,
}

impl StatusFilter {
    pub fn parse(text: &str) -> Option<StatusFilter> {
        let t = text.trim().to_ascii_lowercase();
        if t == "error" || t == "errors" {
            return Some(StatusFilter::Error);
        }
        if let Some(class) = t.strip_suffix("xx") {
            return class
                .parse::<u16>()
                .ok()
                .filter(|c| (1..=5).contains(c))
                .map(StatusFilter::Class);
        }
        t.parse::<u16>()
            .ok()
            .filter(|s| (100..=599).contains(s))
            .map(StatusFilter::Exact)
    }

    fn matches(self, a: &AuditRecord) -> bool {
        match self {
            StatusFilter::Exact(s) => a.status == s,
            StatusFilter::Class(c) => a.status / 100 == c,
            StatusFilter::Error => a.status >= 400 || a.error.is_some(),
        }
    }
}

/// Records matching `f` as the views list them.
#[derive(Debug, Serialize)]
pub struct Records {
    /// Records held now (at most [`RING_CAPACITY`]).
    pub held: usize,
    /// Records ever pushed since start.
    pub seen: u64,
    pub records: Vec<Arc<AuditRecord>>,
}

#[derive(Default)]
struct Tally {
    rows: HashMap<String, Spend, foldhash::fast::RandomState>,
    other: Spend,
}

/// `key` cut to at most [`MAX_KEY_LEN`] bytes, on a character boundary.
fn bounded(key: &str) -> &str {
    if key.len() <= MAX_KEY_LEN {
        return key;
    }
    let mut end = MAX_KEY_LEN;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    &key[..end]
}

impl Tally {
    fn add(&mut self, key: &str, a: &AuditRecord, max_keys: usize) {
        let key = bounded(key);
        if let Some(s) = self.rows.get_mut(key) {
            return s.add(a);
        }
        if self.rows.len() < max_keys {
            self.rows.entry(key.to_string()).or_default().add(a);
        } else {
            self.other.add(a);
        }
    }

    /// The `top` first rows by `sort`, and one [`OTHER`] row for the rest.
    fn rows(&self, sort: SortBy, top: usize) -> Vec<SpendRow> {
        let mut rows: Vec<(&String, &Spend)> = self.rows.iter().collect();
        rows.sort_by(|a, b| sort.key(b.1).cmp(&sort.key(a.1)).then_with(|| a.0.cmp(b.0)));
        let mut other = self.other.clone();
        for (_, s) in rows.iter().skip(top) {
            other.merge(s);
        }
        let mut out: Vec<SpendRow> = rows
            .into_iter()
            .take(top)
            .map(|(k, s)| SpendRow::new(k.clone(), s.clone()))
            .collect();
        if other.requests > 0 {
            out.push(SpendRow::new(OTHER.to_string(), other));
        }
        out
    }
}

struct Inner {
    ring: VecDeque<Arc<AuditRecord>>,
    seen: u64,
    /// Days since the Unix epoch (UTC) the tallies are for.
    day: u64,
    total: Spend,
    workloads: Tally,
    models: Tally,
    /// The workload key of the record being added (kept to reuse its allocation).
    key: String,
}

impl Inner {
    /// Starts the tallies again when `day` is a later day than theirs.
    fn roll(&mut self, day: u64) {
        if day > self.day {
            self.day = day;
            self.total = Spend::default();
            self.workloads = Tally::default();
            self.models = Tally::default();
        }
    }
}

/// The ring of recent records and today's tallies (see the module doc).
pub struct Recent {
    inner: Mutex<Inner>,
    capacity: usize,
    max_keys: usize,
}

impl Default for Recent {
    fn default() -> Self {
        Recent::new(RING_CAPACITY, MAX_KEYS)
    }
}

fn day_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() / SECS_PER_DAY)
}

impl Recent {
    pub fn new(capacity: usize, max_keys: usize) -> Recent {
        Recent {
            inner: Mutex::new(Inner {
                ring: VecDeque::with_capacity(capacity),
                seen: 0,
                day: 0,
                total: Spend::default(),
                workloads: Tally::default(),
                models: Tally::default(),
                key: String::new(),
            }),
            capacity,
            max_keys,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps `a` (the oldest record goes when full) and adds it to today's tallies.
    pub fn push(&self, a: AuditRecord) {
        self.push_at(a, SystemTime::now());
    }

    fn push_at(&self, a: AuditRecord, now: SystemTime) {
        let day = day_of(now);
        let a = Arc::new(a);
        let model = a.served_model.as_deref().or(a.model.as_deref()).unwrap_or("-");
        let mut g = self.lock();
        let inner = &mut *g;
        inner.roll(day);
        inner.total.add(&a);
        workload_key(&a.workload, &mut inner.key);
        inner.workloads.add(&inner.key, &a, self.max_keys);
        inner.models.add(model, &a, self.max_keys);
        inner.seen += 1;
        let evicted = if inner.ring.len() >= self.capacity {
            inner.ring.pop_front()
        } else {
            None
        };
        if self.capacity > 0 {
            inner.ring.push_back(a);
        }
        drop(g);
        // The oldest record is freed after the lock is let go.
        drop(evicted);
    }

    /// Today's tallies: the first `top` workloads and models by `sort`, the rest as `other`.
    pub fn today(&self, sort: SortBy, top: usize) -> Today {
        self.today_at(SystemTime::now(), sort, top)
    }

    fn today_at(&self, now: SystemTime, sort: SortBy, top: usize) -> Today {
        let mut g = self.lock();
        g.roll(day_of(now));
        let date = humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_secs(g.day * SECS_PER_DAY))
            .to_string();
        Today {
            day: date.get(..10).unwrap_or(&date).to_string(),
            total: SpendRow::new("total".into(), g.total.clone()),
            by_workload: g.workloads.rows(sort, top),
            by_model: g.models.rows(sort, top),
            workloads: g.workloads.rows.len(),
            sort,
        }
    }

    /// Records held now, and pushed since start.
    pub fn held(&self) -> (usize, u64) {
        let g = self.lock();
        (g.ring.len(), g.seen)
    }

    /// The newest records matching `f`, newest first.
    pub fn records(&self, f: &Filter) -> Records {
        // Copy the pointers under the lock, filter outside it: a request's push never waits
        // for a scan.
        let (all, seen): (Vec<Arc<AuditRecord>>, u64) = {
            let g = self.lock();
            (g.ring.iter().rev().cloned().collect(), g.seen)
        };
        let held = all.len();
        let lower = |s: &Option<String>| s.as_ref().map(|s| s.to_lowercase()).filter(|s| !s.is_empty());
        let (workload, model) = (lower(&f.workload), lower(&f.model));
        let mut key = String::new();
        let records = all
            .into_iter()
            .filter(|a| f.status.is_none_or(|s| s.matches(a)))
            .filter(|a| {
                model.as_ref().is_none_or(|m| {
                    [a.model.as_deref(), a.served_model.as_deref()]
                        .into_iter()
                        .flatten()
                        .any(|x| x.to_lowercase().contains(m.as_str()))
                })
            })
            .filter(|a| {
                workload.as_ref().is_none_or(|w| {
                    workload_key(&a.workload, &mut key);
                    key.to_lowercase().contains(w.as_str())
                        || [a.workload.pod.as_deref(), a.workload.namespace.as_deref()]
                            .into_iter()
                            .flatten()
                            .any(|x| x.to_lowercase().contains(w.as_str()))
                })
            })
            .take(f.limit)
            .collect();
        Records { held, seen, records }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::accounting::audit::Tokens;

    fn rec(comm: &str, model: &str, status: u16, cost: Option<u64>) -> AuditRecord {
        let mut a = AuditRecord {
            status,
            model: Some(model.into()),
            tokens: Some(Tokens {
                input: 9,
                output: 4,
                total: 13,
                ..Default::default()
            }),
            cost_nano_usd: cost,
            ..Default::default()
        };
        a.workload.comm = comm.into();
        a
    }

    #[test]
    fn ring_keeps_the_newest_records() {
        let r = Recent::new(3, 10);
        for i in 0..5u16 {
            r.push(rec("w", "m", 200 + i, Some(1)));
        }
        let got = r.records(&Filter {
            limit: 10,
            ..Default::default()
        });
        assert_eq!((got.held, got.seen), (3, 5));
        let statuses: Vec<u16> = got.records.iter().map(|a| a.status).collect();
        assert_eq!(statuses, [204, 203, 202], "newest first");
    }

    #[test]
    fn records_filter_by_workload_model_and_status() {
        let r = Recent::default();
        r.push(rec("python3", "gpt-4o-mini", 200, Some(10)));
        r.push(rec("curl", "gpt-4o", 429, None));
        r.push(rec("python3", "gpt-4o", 502, None));
        let q = |workload: Option<&str>, model: Option<&str>, status: Option<&str>| -> Vec<u16> {
            r.records(&Filter {
                workload: workload.map(Into::into),
                model: model.map(Into::into),
                status: status.map(|s| StatusFilter::parse(s).expect("status filter")),
                limit: 100,
            })
            .records
            .iter()
            .map(|a| a.status)
            .collect()
        };
        assert_eq!(q(Some("PYTHON"), None, None), [502, 200]);
        assert_eq!(q(None, Some("4o-mini"), None), [200]);
        assert_eq!(q(None, None, Some("4xx")), [429]);
        assert_eq!(q(None, None, Some("error")), [502, 429]);
        assert_eq!(q(Some("python3"), Some("gpt-4o"), Some("502")), [502]);
        assert_eq!(StatusFilter::parse("6xx"), None);
        assert_eq!(StatusFilter::parse("abc"), None);
    }

    #[test]
    fn spend_today_is_bounded_sorted_and_folds_the_rest_into_other() {
        let r = Recent::new(10, 3);
        for (comm, n, cost) in [("a", 1, 100), ("b", 5, 10), ("c", 2, 50), ("d", 1, 1000), ("e", 1, 7)] {
            for _ in 0..n {
                r.push(rec(comm, "gpt-4o-mini", 200, Some(cost)));
            }
        }
        // `d` and `e` came after three keys were known: counted under `other`.
        let t = r.today(SortBy::Spend, 2);
        let keys: Vec<(&str, u64)> = t
            .by_workload
            .iter()
            .map(|row| (row.key.as_str(), row.spend.cost_nano_usd))
            .collect();
        assert_eq!(keys, [("c", 100), ("a", 100), ("other", 50 + 1000 + 7)]);
        assert_eq!(t.total.spend.requests, 10);
        assert_eq!(t.total.spend.cost_nano_usd, 100 + 50 + 100 + 1000 + 7);
        assert_eq!(t.workloads, 3);
        let t = r.today(SortBy::Requests, 1);
        assert_eq!(t.by_workload[0].key, "b");
        assert_eq!(t.by_workload[1].spend.requests, 5);
        assert_eq!(t.by_model.len(), 1);
        assert_eq!(t.by_model[0].cost_usd, "0.000001257");
    }

    #[test]
    fn long_model_names_are_cut_in_the_tallies() {
        let r = Recent::default();
        let long = "é".repeat(300);
        r.push(rec("w", &long, 200, Some(1)));
        let t = r.today(SortBy::Spend, 10);
        assert_eq!(t.by_model[0].key, "é".repeat(MAX_KEY_LEN / 2));
        // The record itself is kept whole.
        let got = r.records(&Filter {
            limit: 1,
            ..Default::default()
        });
        assert_eq!(got.records[0].model.as_deref(), Some(long.as_str()));
    }

    #[test]
    fn spend_starts_again_at_utc_midnight() {
        let r = Recent::default();
        let day = |d: u64, s: u64| UNIX_EPOCH + Duration::from_secs(d * SECS_PER_DAY + s);
        r.push_at(rec("a", "m", 200, Some(5)), day(20_000, 86_399));
        assert_eq!(
            r.today_at(day(20_000, 86_399), SortBy::Spend, 10).total.spend.requests,
            1
        );
        let next = r.today_at(day(20_001, 0), SortBy::Spend, 10);
        assert_eq!(next.total.spend.requests, 0);
        assert!(next.by_workload.is_empty());
        assert_eq!(next.day, "2024-10-05");
        // A clock that steps back does not bring yesterday back.
        r.push_at(rec("a", "m", 200, Some(5)), day(20_000, 10));
        assert_eq!(r.today_at(day(20_001, 1), SortBy::Spend, 10).total.spend.requests, 1);
        // The ring keeps records across days.
        assert_eq!(
            r.records(&Filter {
                limit: 10,
                ..Default::default()
            })
            .held,
            2
        );
    }
}
