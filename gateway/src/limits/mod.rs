//! Limits: requests per minute, tokens per minute, and money per hour/day/month, each counted
//! per bucket (a key made of any of workload, route, provider, model, backend).
//!
//! Admission reserves before the call: one request, the tokens it may use (`max_tokens` or the
//! limit's estimate, plus the input size), and their price. All reservations of a request are
//! taken atomically or not at all, so concurrent requests overshoot a limit by at most one
//! request's own reservation. After the response, the reservation is reconciled with the real
//! usage (a retried request is reserved once, whatever its attempts).
//!
//! Counters live in memory (per node) or in Redis (shared by every node), with fixed windows
//! aligned to UTC. When Redis is unreachable, `failMode: open` counts locally and replays those
//! counts into Redis when it returns; `closed` refuses requests.

pub mod redis;

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, SystemTime},
};

use serde::{Deserialize, Serialize};

pub use crate::accounting::audit::LimitKind;
use crate::{
    config::invalid,
    route::{any_glob, workload_matches},
};

/// Output tokens assumed for a request that does not say (`max_tokens` absent).
pub const DEFAULT_OUTPUT_ESTIMATE: u64 = 1024;
/// Time a Redis call may take before it counts as unreachable (250 ms).
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(250);

// === config ===

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum KeyPart {
    /// The process name (`comm`) and uid.
    Workload,
    /// The cgroup path.
    Cgroup,
    Route,
    Provider,
    Model,
    Backend,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Period {
    Hour,
    Day,
    Month,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawBudget {
    /// USD per period, e.g. `"5.00"`.
    pub usd: String,
    pub period: Period,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawLimitMatch {
    #[serde(default)]
    pub providers: Vec<String>,
    #[serde(default)]
    pub routes: Vec<String>,
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub comm: Vec<String>,
    #[serde(default)]
    pub uids: Vec<u32>,
    pub cgroup: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawLimit {
    pub name: String,
    /// Which requests count (all by default).
    #[serde(rename = "match", default)]
    pub matches: RawLimitMatch,
    /// What makes a bucket. Default `[workload]`.
    pub key: Option<Vec<KeyPart>>,
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    pub budget: Option<RawBudget>,
    /// Output tokens reserved when a request gives no `max_tokens`. Default 1024.
    pub output_estimate: Option<u64>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum StoreFailMode {
    /// Count locally while Redis is away; replay into Redis when it returns.
    #[default]
    Open,
    /// Refuse requests while Redis is away.
    Closed,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawStore {
    /// `host:port` of a Redis server; absent: counters are local to this node.
    pub redis: Option<String>,
    pub fail_mode: Option<StoreFailMode>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Limit {
    pub name: String,
    pub providers: Vec<String>,
    pub routes: Vec<String>,
    pub models: Vec<String>,
    pub comm: Vec<String>,
    pub uids: Vec<u32>,
    pub cgroup: Option<String>,
    pub key: Vec<KeyPart>,
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    /// Nano-dollars per period.
    pub budget: Option<(u64, Period)>,
    pub output_estimate: u64,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreConfig {
    pub redis: Option<String>,
    pub fail_mode: StoreFailMode,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

pub fn limits_from_raw(raw: Vec<RawLimit>) -> Result<Vec<Limit>, crate::config::Error> {
    let mut names = std::collections::HashSet::new();
    raw.into_iter()
        .enumerate()
        .map(|(i, l)| {
            let f = |k: &str| format!("limits[{i}].{k}");
            if !names.insert(l.name.clone()) {
                return Err(invalid(f("name"), format!("duplicate limit name {:?}", l.name)));
            }
            if l.requests_per_minute.is_none() && l.tokens_per_minute.is_none() && l.budget.is_none() {
                return Err(invalid(
                    f("name"),
                    format!(
                        "limit {:?} sets none of requestsPerMinute, tokensPerMinute, budget",
                        l.name
                    ),
                ));
            }
            let budget = match l.budget {
                Some(b) => {
                    let usd = crate::accounting::parse_usd(&b.usd).map_err(|e| invalid(f("budget.usd"), e))?;
                    Some((usd, b.period))
                }
                None => None,
            };
            Ok(Limit {
                name: l.name,
                providers: l.matches.providers,
                routes: l.matches.routes,
                models: l.matches.models,
                comm: l.matches.comm,
                uids: l.matches.uids,
                cgroup: l.matches.cgroup,
                key: l.key.unwrap_or_else(|| vec![KeyPart::Workload]),
                requests_per_minute: l.requests_per_minute,
                tokens_per_minute: l.tokens_per_minute,
                budget,
                output_estimate: l.output_estimate.unwrap_or(DEFAULT_OUTPUT_ESTIMATE),
            })
        })
        .collect()
}

pub fn store_from_raw(raw: Option<RawStore>) -> Result<StoreConfig, crate::config::Error> {
    let raw = raw.unwrap_or_default();
    if let Some(addr) = &raw.redis {
        if !addr.contains(':') || addr.contains('/') {
            return Err(invalid("limitStore.redis", format!("{addr:?}: expected host:port")));
        }
    }
    Ok(StoreConfig {
        redis: raw.redis,
        fail_mode: raw.fail_mode.unwrap_or_default(),
        timeout: raw.timeout.unwrap_or(DEFAULT_REDIS_TIMEOUT),
    })
}

// === requests ===

/// What a limit looks at in a request.
pub struct Subject<'a> {
    pub comm: &'a str,
    pub uid: u32,
    pub cgroup: Option<&'a str>,
    pub route: Option<&'a str>,
    pub provider: Option<&'a str>,
    pub model: Option<&'a str>,
    pub backend: Option<&'a str>,
}

impl Limit {
    fn applies(&self, s: &Subject<'_>) -> bool {
        any_glob(&self.providers, s.provider)
            && any_glob(&self.routes, s.route)
            && any_glob(&self.models, s.model)
            && workload_matches(
                (&self.comm, &self.uids, self.cgroup.as_deref()),
                (s.comm, s.uid, s.cgroup),
            )
    }

    fn bucket(&self, s: &Subject<'_>) -> String {
        self.key
            .iter()
            .map(|k| match k {
                KeyPart::Workload => format!("{}:{}", s.comm, s.uid),
                KeyPart::Cgroup => s.cgroup.unwrap_or("-").to_string(),
                KeyPart::Route => s.route.unwrap_or("-").to_string(),
                KeyPart::Provider => s.provider.unwrap_or("-").to_string(),
                KeyPart::Model => s.model.unwrap_or("-").to_string(),
                KeyPart::Backend => s.backend.unwrap_or("-").to_string(),
            })
            .collect::<Vec<_>>()
            .join("|")
    }
}

/// One counter to move.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Charge {
    pub key: String,
    pub limit: String,
    pub kind: LimitKind,
    pub amount: u64,
    pub max: u64,
    /// Seconds until the window ends (and the counter expires).
    pub window_left: u64,
}

/// A request's reservations, to reconcile after the response.
#[derive(Clone, Debug, Default)]
pub struct Reservation {
    pub charges: Vec<Charge>,
    /// Tokens and nano-dollars reserved per charge index (for reconciliation).
    pub reserved_tokens: u64,
    pub reserved_cost: u64,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Window id and seconds left for a minute window or a budget period (UTC).
fn window(now: u64, span: Option<Period>) -> (String, u64) {
    match span {
        None => (format!("m{}", now / 60), 60 - now % 60),
        Some(Period::Hour) => (format!("h{}", now / 3600), 3600 - now % 3600),
        Some(Period::Day) => (format!("d{}", now / 86_400), 86_400 - now % 86_400),
        Some(Period::Month) => {
            // Civil month from days since the epoch (Howard Hinnant's algorithm).
            let days = (now / 86_400) as i64;
            let z = days + 719_468;
            let era = z.div_euclid(146_097);
            let doe = z - era * 146_097;
            let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
            let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
            let mp = (5 * doy + 2) / 153;
            let month = if mp < 10 { mp + 3 } else { mp - 9 };
            let year = yoe + era * 400 + i64::from(month <= 2);
            // Seconds to the first of next month: days left in this month, approximately
            // bounded by 31 days; the key changes exactly at the month boundary.
            let day_of_month = doy - (153 * mp + 2) / 5 + 1;
            let left_days = 32 - day_of_month;
            (format!("M{year}{month:02}"), (left_days as u64) * 86_400)
        }
    }
}

/// Works out the charges a request makes, given its estimate.
pub fn charges(limits: &[Limit], s: &Subject<'_>, tokens: u64, cost: Option<u64>) -> Vec<Charge> {
    let now = unix_now();
    let mut out = Vec::new();
    for l in limits.iter().filter(|l| l.applies(s)) {
        let bucket = l.bucket(s);
        if let Some(max) = l.requests_per_minute {
            let (w, left) = window(now, None);
            out.push(Charge {
                key: format!("tg:{}:r:{bucket}:{w}", l.name),
                limit: l.name.clone(),
                kind: LimitKind::Requests,
                amount: 1,
                max,
                window_left: left,
            });
        }
        if let Some(max) = l.tokens_per_minute {
            let (w, left) = window(now, None);
            out.push(Charge {
                key: format!("tg:{}:t:{bucket}:{w}", l.name),
                limit: l.name.clone(),
                kind: LimitKind::Tokens,
                amount: tokens,
                max,
                window_left: left,
            });
        }
        if let (Some((max, period)), Some(cost)) = (l.budget, cost) {
            let (w, left) = window(now, Some(period));
            out.push(Charge {
                key: format!("tg:{}:b:{bucket}:{w}", l.name),
                limit: l.name.clone(),
                kind: LimitKind::Budget,
                amount: cost,
                max,
                window_left: left,
            });
        }
    }
    out
}

// === stores ===

/// Reserve all or nothing: returns the index of the first charge that would exceed.
const RESERVE_LUA: &str = r#"
local n = #KEYS
for i = 1, n do
  local cur = tonumber(redis.call('GET', KEYS[i]) or '0')
  if cur + tonumber(ARGV[(i - 1) * 3 + 1]) > tonumber(ARGV[(i - 1) * 3 + 2]) then return i end
end
for i = 1, n do
  redis.call('INCRBY', KEYS[i], ARGV[(i - 1) * 3 + 1])
  redis.call('EXPIRE', KEYS[i], ARGV[(i - 1) * 3 + 3])
end
return 0
"#;

/// Moves counters by signed deltas (reconciliation, replays).
const ADJUST_LUA: &str = r#"
for i = 1, #KEYS do
  redis.call('INCRBY', KEYS[i], ARGV[(i - 1) * 2 + 1])
  redis.call('EXPIRE', KEYS[i], ARGV[(i - 1) * 2 + 2])
end
return 0
"#;

#[derive(Default)]
struct Local {
    counters: HashMap<String, (i64, SystemTime)>,
}

impl Local {
    fn reserve(&mut self, charges: &[Charge]) -> Option<usize> {
        let now = SystemTime::now();
        self.counters.retain(|_, (_, exp)| *exp > now);
        for (i, c) in charges.iter().enumerate() {
            let cur = self.counters.get(&c.key).map(|(v, _)| *v).unwrap_or(0).max(0) as u64;
            if cur + c.amount > c.max {
                return Some(i);
            }
        }
        for c in charges {
            let e = self
                .counters
                .entry(c.key.clone())
                .or_insert((0, now + Duration::from_secs(c.window_left)));
            e.0 += c.amount as i64;
        }
        None
    }

    fn adjust(&mut self, deltas: &[(String, i64, u64)]) {
        let now = SystemTime::now();
        for (k, d, ttl) in deltas {
            let e = self
                .counters
                .entry(k.clone())
                .or_insert((0, now + Duration::from_secs(*ttl)));
            e.0 += d;
        }
    }
}

/// Where counters live.
pub struct Store {
    local: Mutex<Local>,
    redis: Option<redis::Client>,
    fail_mode: StoreFailMode,
    /// Counts taken locally while Redis was away, replayed when it returns.
    pending: Mutex<Vec<(String, i64, u64)>>,
    degraded: std::sync::atomic::AtomicBool,
}

/// Why admission could not decide.
#[derive(Debug, thiserror::Error)]
#[error("limit store unavailable: {0}")]
pub struct StoreUnavailable(pub String);

impl Store {
    pub fn new(cfg: &StoreConfig) -> Store {
        Store {
            local: Mutex::new(Local::default()),
            redis: cfg.redis.clone().map(|a| redis::Client::new(a, cfg.timeout)),
            fail_mode: cfg.fail_mode,
            pending: Mutex::new(Vec::new()),
            degraded: Default::default(),
        }
    }

    pub fn is_degraded(&self) -> bool {
        self.degraded.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn set_degraded(&self, on: bool, why: &str) {
        let was = self.degraded.swap(on, std::sync::atomic::Ordering::Relaxed);
        if on && !was {
            tracing::error!(error = why, fail_mode = ?self.fail_mode, "limit store (redis) unreachable");
        } else if !on && was {
            tracing::warn!("limit store (redis) reachable again; replaying local counts");
        }
    }

    /// Reserves all `charges` or none. `Ok(None)`: reserved; `Ok(Some(i))`: charge `i` would
    /// exceed its limit; the flag says the local fallback answered.
    pub async fn reserve(&self, charges: &[Charge]) -> Result<(Option<usize>, bool), StoreUnavailable> {
        if charges.is_empty() {
            return Ok((None, false));
        }
        let Some(redis) = &self.redis else {
            return Ok((
                self.local.lock().unwrap_or_else(|e| e.into_inner()).reserve(charges),
                false,
            ));
        };
        self.replay(redis).await;
        let keys: Vec<String> = charges.iter().map(|c| c.key.clone()).collect();
        let args: Vec<String> = charges
            .iter()
            .flat_map(|c| [c.amount.to_string(), c.max.to_string(), c.window_left.to_string()])
            .collect();
        match redis.eval(RESERVE_LUA, &keys, &args).await {
            Ok(redis::Resp::Int(0)) => {
                self.set_degraded(false, "");
                Ok((None, false))
            }
            Ok(redis::Resp::Int(i)) => {
                self.set_degraded(false, "");
                Ok((Some(i as usize - 1), false))
            }
            Ok(other) => Err(StoreUnavailable(format!("unexpected reply {other:?}"))),
            Err(e) => {
                self.set_degraded(true, &e.to_string());
                match self.fail_mode {
                    StoreFailMode::Closed => Err(StoreUnavailable(e.to_string())),
                    StoreFailMode::Open => {
                        let denied = self.local.lock().unwrap_or_else(|e| e.into_inner()).reserve(charges);
                        if denied.is_none() {
                            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                            p.extend(charges.iter().map(|c| (c.key.clone(), c.amount as i64, c.window_left)));
                        }
                        Ok((denied, true))
                    }
                }
            }
        }
    }

    /// Applies deltas at once when counters are local, without a task or a wake-up; returns
    /// them when they must go to Redis (`adjust`).
    pub fn adjust_local(&self, deltas: Vec<(String, i64, u64)>) -> Option<Vec<(String, i64, u64)>> {
        if self.redis.is_some() {
            return Some(deltas);
        }
        self.local.lock().unwrap_or_else(|e| e.into_inner()).adjust(&deltas);
        None
    }

    /// Moves counters by signed deltas (reconciliation with real usage).
    pub async fn adjust(&self, deltas: Vec<(String, i64, u64)>) {
        if deltas.is_empty() {
            return;
        }
        let Some(redis) = &self.redis else {
            self.local.lock().unwrap_or_else(|e| e.into_inner()).adjust(&deltas);
            return;
        };
        if self.send_adjust(redis, &deltas).await.is_err() {
            self.local.lock().unwrap_or_else(|e| e.into_inner()).adjust(&deltas);
            self.pending.lock().unwrap_or_else(|e| e.into_inner()).extend(deltas);
        }
    }

    async fn send_adjust(&self, redis: &redis::Client, deltas: &[(String, i64, u64)]) -> std::io::Result<()> {
        let keys: Vec<String> = deltas.iter().map(|d| d.0.clone()).collect();
        let args: Vec<String> = deltas.iter().flat_map(|d| [d.1.to_string(), d.2.to_string()]).collect();
        redis.eval(ADJUST_LUA, &keys, &args).await.map(|_| ())
    }

    /// Pushes counts taken while Redis was away.
    async fn replay(&self, redis: &redis::Client) {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if pending.is_empty() {
            return;
        }
        if self.send_adjust(redis, &pending).await.is_err() {
            self.pending.lock().unwrap_or_else(|e| e.into_inner()).extend(pending);
        } else {
            tracing::info!(entries = pending.len(), "replayed local limit counts into redis");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(yaml: &str) -> Vec<Limit> {
        let raw: Vec<RawLimit> = serde_yaml::from_str(yaml).unwrap();
        limits_from_raw(raw).unwrap()
    }

    fn subject<'a>(comm: &'a str, model: &'a str) -> Subject<'a> {
        Subject {
            comm,
            uid: 1000,
            cgroup: Some("/a"),
            route: Some("r"),
            provider: Some("openai"),
            model: Some(model),
            backend: Some("b"),
        }
    }

    #[test]
    fn charges_follow_match_and_key() {
        let limits = limit(
            "- { name: tpm, tokensPerMinute: 100, match: { models: [\"gpt-*\"] } }\n- { name: rpm, requestsPerMinute: 2, key: [route] }\n",
        );
        let c = charges(&limits, &subject("python3", "gpt-4o"), 30, None);
        assert_eq!(c.len(), 2);
        assert!(c[0].key.starts_with("tg:tpm:t:python3:1000:m"));
        assert!(c[1].key.starts_with("tg:rpm:r:r:m"));
        assert_eq!(charges(&limits, &subject("python3", "claude-x"), 30, None).len(), 1);
    }

    #[test]
    fn local_reservations_are_all_or_nothing() {
        let limits = limit("- { name: rpm, requestsPerMinute: 2, tokensPerMinute: 100 }\n");
        let store = Store::new(&StoreConfig {
            redis: None,
            fail_mode: StoreFailMode::Open,
            timeout: DEFAULT_REDIS_TIMEOUT,
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let s = subject("a", "m");
            assert_eq!(store.reserve(&charges(&limits, &s, 60, None)).await.unwrap().0, None);
            // tokens would exceed: nothing is taken, not even the request
            assert_eq!(store.reserve(&charges(&limits, &s, 60, None)).await.unwrap().0, Some(1));
            assert_eq!(store.reserve(&charges(&limits, &s, 40, None)).await.unwrap().0, None);
            assert_eq!(
                store.reserve(&charges(&limits, &s, 0, None)).await.unwrap().0,
                Some(0),
                "rpm now"
            );
            // another workload has its own bucket
            assert_eq!(
                store
                    .reserve(&charges(&limits, &subject("b", "m"), 60, None))
                    .await
                    .unwrap()
                    .0,
                None
            );
        });
    }

    #[test]
    fn windows_align_to_utc() {
        let (w, left) = window(120, None);
        assert_eq!((w.as_str(), left), ("m2", 60));
        assert_eq!(window(86_400 * 3 + 10, Some(Period::Day)).0, "d3");
        // 2026-11-26T04:00:00Z
        assert_eq!(window(1_795_665_600, Some(Period::Month)).0, "M202611");
        assert_eq!(window(0, Some(Period::Month)).0, "M197001");
    }
}
