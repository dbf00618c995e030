//! Limits: requests per minute, tokens per minute, and money per hour/day/month, each counted
//! per bucket (a key made of any of workload, cgroup, namespace, pod, route, provider, model,
//! backend).
//!
//! Admission reserves before the call: one request, the tokens it may use (`max_tokens` or the
//! limit's estimate, plus the input size), and their price. All reservations of a request are
//! taken atomically or not at all, so concurrent requests overshoot a limit by at most one
//! request's own reservation. After the response, the reservation is reconciled with the real
//! usage (a retried request is reserved once, whatever its attempts).
//!
//! Counters live in memory (per node) or in Redis (shared by every node: one server, or a Redis
//! Cluster), with fixed windows aligned to UTC.
//!
//! In Redis a reservation is one Lua script call, atomic. Every key has a hash tag around its
//! limit and bucket (`tg:{<limit>:<bucket>}:r:<window>`), so the counters of one limit and bucket
//! share a cluster slot. A request under several limits may touch several slots: in a cluster
//! the script runs once per slot, in slot order, and when a later slot refuses, what the earlier
//! slots took is given back (the adjust script, with negative amounts). So reservations are
//! all-or-nothing per request, with compensation across slots: between the take and the give
//! back, a concurrent request may see the earlier slots' counters briefly high. The charge
//! reported as exceeding is the first one over its limit in the first slot that refuses.
//!
//! An admission runs in a task of its own: a caller that goes away (client gone, timeout around
//! the admission) does not cut a Redis call short, and a reservation taken for a caller that is
//! gone is given back at once.
//!
//! Redis is unreachable when it cannot be connected to, or a call does not finish within
//! `timeout`. Then `failMode: open` counts locally and replays those counts into Redis when it
//! returns (before the next reservation); `closed` refuses requests. Counts waiting for replay
//! (and give-backs that could not be sent) are merged per key and bounded to 100,000 keys: when
//! full, the oldest are dropped, and counted ([`Store::dropped_pending`]).

mod redis;

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::{atomic::AtomicBool, Arc, Mutex, PoisonError},
    time::{Duration, SystemTime},
};

use serde::{Deserialize, Serialize};

use self::redis::Unreachable;
pub use crate::accounting::audit::LimitKind;
use crate::{
    matching::{any, globs, Glob, WorkloadMatch},
    validation::{invalid, Invalid},
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
    /// The pod's namespace (`-` outside a known pod).
    Namespace,
    /// The pod, as `namespace/name` (`-` outside a known pod).
    Pod,
    Route,
    Provider,
    Model,
    Backend,
    /// The MCP tool a `tools/call` names (`-` for other requests).
    Tool,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Period {
    Hour,
    Day,
    Month,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Hour => "hour",
            Period::Day => "day",
            Period::Month => "month",
        }
    }
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
    /// MCP tool name globs: the limit counts `tools/call` requests of those tools only.
    #[serde(default)]
    pub tools: Vec<String>,
    #[serde(default)]
    pub comm: Vec<String>,
    #[serde(default)]
    pub uids: Vec<u32>,
    pub cgroup: Option<String>,
    /// Kubernetes namespace globs (pod identity from `identity.criSocket`).
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Pod name globs.
    #[serde(default)]
    pub pods: Vec<String>,
    /// Pod label → value glob; all must match.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
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
    /// `host:port` of the Redis server (with `cluster: true`: of one seed node of the cluster).
    /// Default: absent, and with `nodes` absent too, counters are local to this node.
    pub redis: Option<String>,
    /// Seed nodes (`host:port`) of a Redis Cluster, instead of `redis`; needs `cluster: true`.
    /// Default: absent.
    pub nodes: Option<Vec<String>>,
    /// `redis` or `nodes` is a Redis Cluster. Default `false`.
    #[serde(default)]
    pub cluster: bool,
    /// ACL user to authenticate as (needs a password). Default: absent (the `default` user).
    pub username: Option<String>,
    /// File holding the password to authenticate with (a trailing newline is ignored), read
    /// when the config is loaded. Default: absent (no AUTH, unless `passwordEnv`).
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password to authenticate with. Default: absent.
    pub password_env: Option<String>,
    /// TLS (`rediss`) to every node, certificates checked against the system's trust store.
    /// Default `false`.
    #[serde(default)]
    pub tls: bool,
    /// What admission does while Redis is unreachable. Default `open`.
    pub fail_mode: Option<StoreFailMode>,
    /// Time one Redis call may take (connecting included) before Redis counts as unreachable.
    /// Default `250ms`.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Limit {
    pub name: String,
    pub providers: Vec<Glob>,
    pub routes: Vec<Glob>,
    pub models: Vec<Glob>,
    pub tools: Vec<Glob>,
    #[serde(flatten)]
    pub workload: WorkloadMatch,
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
    /// The Redis server, or the one seed node of a cluster.
    pub redis: Option<String>,
    /// Seed nodes of a cluster (when `redis` is absent).
    pub nodes: Vec<String>,
    pub cluster: bool,
    pub username: Option<String>,
    /// Where the password comes from (shown); the password itself is never shown.
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    #[serde(skip)]
    pub(crate) password: Option<Password>,
    pub tls: bool,
    pub fail_mode: StoreFailMode,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

/// A secret: never printed, never serialized.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Password(String);

impl Password {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

pub fn limits_from_raw(raw: Vec<RawLimit>) -> Result<Vec<Limit>, Invalid> {
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
                providers: globs(&l.matches.providers),
                routes: globs(&l.matches.routes),
                models: globs(&l.matches.models),
                tools: globs(&l.matches.tools),
                workload: crate::matching::RawWorkloadMatch {
                    comm: l.matches.comm,
                    uids: l.matches.uids,
                    cgroup: l.matches.cgroup,
                    namespaces: l.matches.namespaces,
                    pods: l.matches.pods,
                    labels: l.matches.labels,
                }
                .compile(),
                key: l.key.unwrap_or_else(|| vec![KeyPart::Workload]),
                requests_per_minute: l.requests_per_minute,
                tokens_per_minute: l.tokens_per_minute,
                budget,
                output_estimate: l.output_estimate.unwrap_or(DEFAULT_OUTPUT_ESTIMATE),
            })
        })
        .collect()
}

pub fn store_from_raw(raw: Option<RawStore>) -> Result<StoreConfig, Invalid> {
    let raw = raw.unwrap_or_default();
    let address = |field: String, addr: &str| match split_host_port(addr) {
        Some(_) => Ok(()),
        None => Err(invalid(field, format!("{addr:?}: expected host:port"))),
    };
    if let Some(addr) = &raw.redis {
        address("limitStore.redis".into(), addr)?;
    }
    match (raw.cluster, &raw.redis, &raw.nodes) {
        (_, Some(_), Some(_)) => {
            return Err(invalid("limitStore.nodes", "give redis or nodes, not both"));
        }
        (false, _, Some(_)) => {
            return Err(invalid(
                "limitStore.nodes",
                "seed nodes are for a Redis Cluster: set cluster: true (or give one server as redis)",
            ));
        }
        (true, None, None) => {
            return Err(invalid(
                "limitStore.cluster",
                "needs the cluster's seed nodes: nodes (or one as redis)",
            ));
        }
        (true, None, Some(nodes)) if nodes.is_empty() => {
            return Err(invalid(
                "limitStore.nodes",
                "empty: list one or more seed nodes (host:port)",
            ));
        }
        _ => {}
    }
    let nodes = raw.nodes.unwrap_or_default();
    for (i, node) in nodes.iter().enumerate() {
        address(format!("limitStore.nodes[{i}]"), node)?;
    }
    if raw.redis.is_none() && nodes.is_empty() {
        let set = [
            ("username", raw.username.is_some()),
            ("passwordFile", raw.password_file.is_some()),
            ("passwordEnv", raw.password_env.is_some()),
            ("tls", raw.tls),
        ];
        if let Some((field, _)) = set.iter().find(|(_, on)| *on) {
            return Err(invalid(
                format!("limitStore.{field}"),
                "is for Redis: set redis (or nodes), or remove it",
            ));
        }
    }
    let nonempty = |field: &str, p: String| {
        if p.is_empty() {
            Err(invalid(format!("limitStore.{field}"), "the password is empty"))
        } else {
            Ok(Password(p))
        }
    };
    let password = match (&raw.password_file, &raw.password_env) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "limitStore.passwordEnv",
                "give passwordFile or passwordEnv, not both",
            ));
        }
        (Some(path), None) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| invalid("limitStore.passwordFile", format!("{}: {e}", path.display())))?;
            Some(nonempty(
                "passwordFile",
                text.trim_end_matches(['\r', '\n']).to_string(),
            )?)
        }
        (None, Some(var)) => {
            let value = std::env::var(var)
                .map_err(|_| invalid("limitStore.passwordEnv", format!("{var:?} is not set (or not UTF-8)")))?;
            Some(nonempty("passwordEnv", value)?)
        }
        (None, None) => None,
    };
    match &raw.username {
        Some(u) if u.is_empty() => return Err(invalid("limitStore.username", "empty")),
        Some(_) if password.is_none() => {
            return Err(invalid(
                "limitStore.username",
                "needs a password: passwordFile or passwordEnv",
            ));
        }
        _ => {}
    }
    Ok(StoreConfig {
        redis: raw.redis,
        nodes,
        cluster: raw.cluster,
        username: raw.username,
        password_file: raw.password_file,
        password_env: raw.password_env,
        password,
        tls: raw.tls,
        fail_mode: raw.fail_mode.unwrap_or_default(),
        timeout: raw.timeout.unwrap_or(DEFAULT_REDIS_TIMEOUT),
    })
}

/// `host:port` (an IPv6 host in brackets) split in two.
fn split_host_port(addr: &str) -> Option<(&str, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    let port = port.parse::<u16>().ok().filter(|p| *p != 0)?;
    let bracketed = host.len() > 2 && host.starts_with('[') && host.ends_with(']');
    let bad = host.is_empty()
        || host.contains(['/', '@', '{', '}'])
        || host.contains(char::is_whitespace)
        || (host.contains(':') && !bracketed);
    (!bad).then_some((host, port))
}

// === requests ===

/// What a limit looks at in a request.
pub struct Subject<'a> {
    pub workload: crate::matching::WorkloadFacts<'a>,
    pub route: Option<&'a str>,
    pub provider: Option<&'a str>,
    pub model: Option<&'a str>,
    /// The model has a price (shipped or configured): it may key a bucket of its own.
    pub model_known: bool,
    pub backend: Option<&'a str>,
    /// The MCP tool a `tools/call` names.
    pub tool: Option<&'a str>,
}

impl Limit {
    pub fn applies(&self, s: &Subject<'_>) -> bool {
        any(&self.providers, s.provider)
            && any(&self.routes, s.route)
            && any(&self.models, s.model)
            && any(&self.tools, s.tool)
            && self.workload.matches(&s.workload)
    }

    fn bucket(&self, s: &Subject<'_>) -> String {
        self.key
            .iter()
            .map(|k| match k {
                KeyPart::Workload => format!("{}:{}", s.workload.comm, s.workload.uid),
                KeyPart::Cgroup => s.workload.cgroup.unwrap_or("-").to_string(),
                KeyPart::Namespace => s.workload.namespace.unwrap_or("-").to_string(),
                KeyPart::Pod => match (s.workload.namespace, s.workload.pod) {
                    (Some(ns), Some(pod)) => format!("{ns}/{pod}"),
                    _ => "-".to_string(),
                },
                KeyPart::Route => s.route.unwrap_or("-").to_string(),
                KeyPart::Provider => s.provider.unwrap_or("-").to_string(),
                // The model is the client's to write: only names the node knows (priced, or
                // matched by this limit's own `models`) get a bucket of their own, so a flood of
                // invented names shares one (`other`) instead of growing the counters.
                KeyPart::Model => match s.model {
                    Some(m) if s.model_known || !self.models.is_empty() => m.to_string(),
                    Some(_) => "other".to_string(),
                    None => "-".to_string(),
                },
                KeyPart::Backend => s.backend.unwrap_or("-").to_string(),
                // Tool names are the client's to write too: a bucket of their own only when
                // this limit lists tools.
                KeyPart::Tool => match s.tool {
                    Some(t) if !self.tools.is_empty() => t.to_string(),
                    Some(_) => "other".to_string(),
                    None => "-".to_string(),
                },
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
    /// The window: `minute`, `hour`, `day` or `month` (UTC).
    pub window: &'static str,
}

/// What admission decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admission {
    /// `Ok`: every charge was taken, with each counter's count after it (index-aligned with
    /// the charges); `Err(i)`: charge `i` would pass its limit and nothing was taken.
    pub used: Result<Vec<u64>, usize>,
    /// The local fallback answered (Redis unreachable, fail-open).
    pub degraded: bool,
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
                key: format!("tg:{{{}:{bucket}}}:r:{w}", l.name),
                limit: l.name.clone(),
                kind: LimitKind::Requests,
                amount: 1,
                max,
                window_left: left,
                window: "minute",
            });
        }
        if let Some(max) = l.tokens_per_minute {
            let (w, left) = window(now, None);
            out.push(Charge {
                key: format!("tg:{{{}:{bucket}}}:t:{w}", l.name),
                limit: l.name.clone(),
                kind: LimitKind::Tokens,
                amount: tokens,
                max,
                window_left: left,
                window: "minute",
            });
        }
        if let (Some((max, period)), Some(cost)) = (l.budget, cost) {
            let (w, left) = window(now, Some(period));
            out.push(Charge {
                key: format!("tg:{{{}:{bucket}}}:b:{w}", l.name),
                limit: l.name.clone(),
                kind: LimitKind::Budget,
                amount: cost,
                max,
                window_left: left,
                window: period.as_str(),
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
  if cur + tonumber(ARGV[(i - 1) * 3 + 1]) > tonumber(ARGV[(i - 1) * 3 + 2]) then return {i} end
end
local used = {0}
for i = 1, n do
  used[i + 1] = redis.call('INCRBY', KEYS[i], ARGV[(i - 1) * 3 + 1])
  redis.call('EXPIRE', KEYS[i], ARGV[(i - 1) * 3 + 3])
end
return used
"#;

/// Moves counters by signed deltas (reconciliation, replays).
const ADJUST_LUA: &str = r#"
for i = 1, #KEYS do
  redis.call('INCRBY', KEYS[i], ARGV[(i - 1) * 2 + 1])
  redis.call('EXPIRE', KEYS[i], ARGV[(i - 1) * 2 + 2])
end
return 0
"#;

/// Expired counters are dropped at most this often (a pass over all of them), so a request's
/// cost does not grow with the number of buckets; until then an expired counter reads as zero
/// and starts afresh when charged.
const LOCAL_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Counters kept in this process (no `limitStore`, or Redis unreachable and failing open).
#[derive(Default)]
struct Local {
    counters: HashMap<String, (i64, SystemTime)>,
    /// When expired counters are next dropped.
    next_sweep: Option<SystemTime>,
    /// Counters looked at by sweeps (for tests: a request must not visit every bucket).
    #[cfg(test)]
    swept: usize,
}

impl Local {
    fn reserve(&mut self, charges: &[Charge]) -> Result<Vec<u64>, usize> {
        self.reserve_at(charges, SystemTime::now())
    }

    /// Takes every charge (`Ok`: each counter's count after it) or none (`Err(i)`: charge `i`
    /// would pass its limit).
    fn reserve_at(&mut self, charges: &[Charge], now: SystemTime) -> Result<Vec<u64>, usize> {
        self.sweep(now);
        let mut used = Vec::with_capacity(charges.len());
        for (i, c) in charges.iter().enumerate() {
            let after = (self.live(&c.key, now).max(0) as u64).saturating_add(c.amount);
            if after > c.max {
                return Err(i);
            }
            used.push(after);
        }
        for c in charges {
            let amount = i64::try_from(c.amount).unwrap_or(i64::MAX);
            self.charge(&c.key, amount, c.window_left, now);
        }
        Ok(used)
    }

    fn adjust(&mut self, deltas: &[(String, i64, u64)]) {
        let now = SystemTime::now();
        for (k, d, ttl) in deltas {
            self.charge(k, *d, *ttl, now);
        }
    }

    /// The count of `key`'s window, zero once it expired.
    fn live(&self, key: &str, now: SystemTime) -> i64 {
        self.counters
            .get(key)
            .filter(|(_, exp)| *exp > now)
            .map_or(0, |(v, _)| *v)
    }

    /// Adds `amount` to `key`'s window (a new one, `ttl` seconds long, if it had expired).
    fn charge(&mut self, key: &str, amount: i64, ttl: u64, now: SystemTime) {
        let expires = now + Duration::from_secs(ttl);
        match self.counters.get_mut(key) {
            Some(e) if e.1 > now => e.0 = e.0.saturating_add(amount),
            Some(e) => *e = (amount, expires),
            None => {
                self.counters.insert(key.to_string(), (amount, expires));
            }
        }
    }

    /// Drops expired counters, at most once per `LOCAL_SWEEP_INTERVAL` (and at once when the
    /// clock stepped back, which would otherwise put the next sweep far off).
    fn sweep(&mut self, now: SystemTime) {
        if self
            .next_sweep
            .is_some_and(|at| now < at && at <= now + LOCAL_SWEEP_INTERVAL)
        {
            return;
        }
        #[cfg(test)]
        {
            self.swept += self.counters.len();
        }
        self.counters.retain(|_, (_, exp)| *exp > now);
        self.next_sweep = Some(now + LOCAL_SWEEP_INTERVAL);
    }
}

/// A signed move of one counter: key, delta, seconds to live.
type Delta = (String, i64, u64);

/// Keys sent in one adjust script call (replays can hold many).
const ADJUST_BATCH: usize = 500;

/// Most keys waiting for replay; past that the oldest are dropped.
const MAX_PENDING: usize = 100_000;

/// Indices of `keys` in groups, one script call each: one group on a single server; one per
/// slot in a cluster, in slot order. Groups of more than `max` keys are split.
fn groups<'a>(cluster: bool, keys: impl Iterator<Item = &'a str>, max: usize) -> Vec<Vec<usize>> {
    let mut by_slot: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
    for (i, key) in keys.enumerate() {
        let slot = if cluster { self::redis::slot(key) } else { 0 };
        by_slot.entry(slot).or_default().push(i);
    }
    by_slot
        .into_values()
        .flat_map(|g| g.chunks(max.max(1)).map(<[usize]>::to_vec).collect::<Vec<_>>())
        .collect()
}

/// Counts not in Redis yet: taken locally while Redis was away, or given back while it could
/// not be told. Merged per key, oldest first, at most `cap` keys (then the oldest are dropped).
struct Pending {
    /// key → (delta, ttl, position in `order`)
    by_key: HashMap<String, (i64, u64, i64)>,
    /// position → key, oldest first
    order: BTreeMap<i64, String>,
    /// Last positions used at the back (new keys) and at the front (keys put back).
    back: i64,
    front: i64,
    cap: usize,
    dropped: u64,
}

impl Pending {
    fn new(cap: usize) -> Pending {
        Pending {
            by_key: HashMap::new(),
            order: BTreeMap::new(),
            back: 0,
            front: 0,
            cap: cap.max(1),
            dropped: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    fn add(&mut self, (key, delta, ttl): Delta) {
        self.insert(key, delta, ttl, false);
    }

    fn insert(&mut self, key: String, delta: i64, ttl: u64, at_front: bool) {
        if let Some(e) = self.by_key.get_mut(&key) {
            e.0 = e.0.saturating_add(delta);
            e.1 = e.1.max(ttl);
            if e.0 == 0 {
                let position = e.2;
                self.by_key.remove(&key);
                self.order.remove(&position);
            }
            return;
        }
        if delta == 0 {
            return;
        }
        if self.by_key.len() >= self.cap {
            if at_front {
                // Older than everything kept: it is the one to drop.
                self.count_dropped();
                return;
            }
            if let Some((_, oldest)) = self.order.pop_first() {
                self.by_key.remove(&oldest);
                self.count_dropped();
            }
        }
        let position = if at_front {
            self.front -= 1;
            self.front
        } else {
            self.back += 1;
            self.back
        };
        self.order.insert(position, key.clone());
        self.by_key.insert(key, (delta, ttl, position));
    }

    fn count_dropped(&mut self) {
        self.dropped += 1;
        if self.dropped == 1 || self.dropped.is_multiple_of(10_000) {
            tracing::warn!(
                dropped = self.dropped,
                kept = self.cap,
                "limit store: too many counts waiting for redis; dropping the oldest"
            );
        }
    }

    /// Everything, oldest first.
    fn take(&mut self) -> Vec<Delta> {
        let mut by_key = std::mem::take(&mut self.by_key);
        std::mem::take(&mut self.order)
            .into_values()
            .filter_map(|k| by_key.remove(&k).map(|(d, ttl, _)| (k, d, ttl)))
            .collect()
    }

    /// Puts back (in front, order kept) what `take` gave and could not be sent.
    fn restore(&mut self, deltas: Vec<Delta>) {
        for (key, delta, ttl) in deltas.into_iter().rev() {
            self.insert(key, delta, ttl, true);
        }
    }
}

/// The Redis side of a store, shared with admission tasks.
struct Shared {
    remote: self::redis::Remote,
    pending: Mutex<Pending>,
    /// One replay at a time; admissions that find one running go on without waiting (while
    /// Redis is away a failed replay puts its counts back, so waiting in turn would queue
    /// every admission behind one timeout after another).
    replaying: tokio::sync::Mutex<()>,
}

/// What an admission task answers.
enum Answer {
    /// Taken, with each counter's count after it.
    Reserved(Taken, Vec<u64>),
    Denied(usize),
    Failed(Unreachable),
}

/// A reservation taken in Redis. Dropped without being received (the caller went away), it is
/// given back through the replay backlog.
struct Taken {
    shared: Arc<Shared>,
    charges: Vec<Charge>,
    received: bool,
}

impl Taken {
    fn give_back(&self) -> Vec<Delta> {
        give_back(&self.charges, 0..self.charges.len())
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        if !self.received {
            self.shared.keep(self.give_back());
        }
    }
}

fn give_back(charges: &[Charge], which: impl IntoIterator<Item = usize>) -> Vec<Delta> {
    which
        .into_iter()
        .map(|i| {
            let c = &charges[i];
            (
                c.key.clone(),
                -i64::try_from(c.amount).unwrap_or(i64::MAX),
                c.window_left,
            )
        })
        .collect()
}

impl Shared {
    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn keep(&self, deltas: Vec<Delta>) {
        let mut pending = self.lock_pending();
        for d in deltas {
            pending.add(d);
        }
    }

    /// Reserves in a task of its own, so that the caller going away cuts no call short; what
    /// was taken for a caller that is gone is given back.
    async fn admit(self: &Arc<Self>, charges: Vec<Charge>) -> Result<Result<Vec<u64>, usize>, Unreachable> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let shared = Arc::clone(self);
        tokio::spawn(async move {
            let answer = match shared.reserve(&charges).await {
                Ok(Ok(used)) => Answer::Reserved(
                    Taken {
                        shared: Arc::clone(&shared),
                        charges,
                        received: false,
                    },
                    used,
                ),
                Ok(Err(i)) => Answer::Denied(i),
                Err(e) => Answer::Failed(e),
            };
            if let Err(Answer::Reserved(mut taken, _)) = tx.send(answer) {
                taken.received = true;
                tracing::debug!("limit store: admission cancelled; giving its reservation back");
                shared.adjust_or_keep(taken.give_back()).await;
            }
        });
        match rx.await {
            Ok(Answer::Reserved(mut taken, used)) => {
                taken.received = true;
                Ok(Ok(used))
            }
            Ok(Answer::Denied(i)) => Ok(Err(i)),
            Ok(Answer::Failed(e)) => Err(e),
            Err(_) => Err(Unreachable(
                "limit store: the admission task ended without answer".into(),
            )),
        }
    }

    /// Replays, then reserves all `charges` or none (per slot in a cluster, giving back what
    /// earlier slots took when a later one refuses).
    async fn reserve(&self, charges: &[Charge]) -> Result<Result<Vec<u64>, usize>, Unreachable> {
        self.replay().await?;
        let keys = charges.iter().map(|c| c.key.as_str());
        let mut taken: Vec<usize> = Vec::new();
        let mut used = vec![0; charges.len()];
        for group in groups(self.remote.is_cluster(), keys, usize::MAX) {
            let part: Vec<&Charge> = group.iter().map(|&i| &charges[i]).collect();
            match self.remote.reserve(&part).await {
                Ok(Ok(counts)) => {
                    for (&i, n) in group.iter().zip(counts) {
                        used[i] = n;
                    }
                    taken.extend_from_slice(&group);
                }
                Ok(Err(j)) => {
                    if !taken.is_empty() {
                        self.adjust_or_keep(give_back(charges, taken)).await;
                    }
                    return Ok(Err(group[j]));
                }
                Err(e) => {
                    // Redis is away: no waiting for it again; the give-back goes with the replay.
                    self.keep(give_back(charges, taken));
                    return Err(e);
                }
            }
        }
        Ok(Ok(used))
    }

    /// Applies deltas (per slot in a cluster, in batches); on failure, returns those not sent.
    async fn adjust(&self, deltas: Vec<Delta>) -> Result<(), (Unreachable, Vec<Delta>)> {
        let groups = groups(
            self.remote.is_cluster(),
            deltas.iter().map(|d| d.0.as_str()),
            ADJUST_BATCH,
        );
        for (n, group) in groups.iter().enumerate() {
            let part: Vec<&Delta> = group.iter().map(|&i| &deltas[i]).collect();
            if let Err(e) = self.remote.adjust(&part).await {
                let left = groups[n..].iter().flatten().map(|&i| deltas[i].clone()).collect();
                return Err((e, left));
            }
        }
        Ok(())
    }

    async fn adjust_or_keep(&self, deltas: Vec<Delta>) {
        if let Err((_, left)) = self.adjust(deltas).await {
            self.keep(left);
        }
    }

    /// Pushes the counts waiting for Redis.
    async fn replay(&self) -> Result<(), Unreachable> {
        if self.lock_pending().is_empty() {
            return Ok(());
        }
        let Ok(_one) = self.replaying.try_lock() else {
            return Ok(());
        };
        let batch = self.lock_pending().take();
        if batch.is_empty() {
            return Ok(());
        }
        let entries = batch.len();
        match self.adjust(batch).await {
            Ok(()) => {
                tracing::info!(entries, "replayed local limit counts into redis");
                Ok(())
            }
            Err((e, left)) => {
                self.lock_pending().restore(left);
                Err(e)
            }
        }
    }
}

/// Where counters live.
pub struct Store {
    local: Mutex<Local>,
    shared: Option<Arc<Shared>>,
    fail_mode: StoreFailMode,
    degraded: AtomicBool,
    /// Per limit with a budget: its fullest bucket as admissions on this node last saw it.
    budgets: Mutex<HashMap<String, BudgetLevel>>,
}

/// How full a limit's budget is: the highest share of it used by one of its buckets in the
/// current period, as this node's admissions saw it (reservations included).
#[derive(Clone, Debug, PartialEq)]
struct BudgetLevel {
    /// The period the share belongs to (its key's window id, e.g. `d20553`).
    window: String,
    ratio: f64,
    /// When the period ends: the share reads as zero from then on.
    until: SystemTime,
}

/// Why admission could not decide.
#[derive(Debug, thiserror::Error)]
#[error("limit store unavailable: {0}")]
pub struct StoreUnavailable(pub String);

impl Store {
    pub fn new(cfg: &StoreConfig) -> Store {
        Store {
            local: Mutex::new(Local::default()),
            shared: self::redis::Remote::new(cfg, RESERVE_LUA, ADJUST_LUA).map(|remote| {
                Arc::new(Shared {
                    remote,
                    pending: Mutex::new(Pending::new(MAX_PENDING)),
                    replaying: tokio::sync::Mutex::new(()),
                })
            }),
            fail_mode: cfg.fail_mode,
            degraded: Default::default(),
            budgets: Default::default(),
        }
    }

    /// Per limit with a budget that admissions on this node have charged: the highest share
    /// of the budget (0 to 1, or more when a reconciliation overshot) that one of its buckets
    /// used in the current period, as last seen; 1 when a request was refused for it; 0 once
    /// the period ended. Exported as `tollgate_limit_budget_used_ratio`.
    pub fn budget_used(&self) -> Vec<(String, f64)> {
        let now = SystemTime::now();
        let budgets = self.budgets.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<(String, f64)> = budgets
            .iter()
            .map(|(limit, b)| (limit.clone(), if b.until > now { b.ratio } else { 0.0 }))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Notes the budget charges of an admission: the counters it left (`levels`, one per
    /// charge) when reserved, or the charge that was refused.
    fn note_budgets(&self, charges: &[Charge], outcome: Result<&[u64], usize>) {
        let now = SystemTime::now();
        let mut budgets = self.budgets.lock().unwrap_or_else(PoisonError::into_inner);
        for (i, c) in charges.iter().enumerate() {
            if c.kind != LimitKind::Budget || c.max == 0 {
                continue;
            }
            let ratio = match outcome {
                Ok(levels) => levels.get(i).copied().unwrap_or(0) as f64 / c.max as f64,
                Err(denied) if denied == i => 1.0,
                Err(_) => continue,
            };
            // The window id is the key's last part (`…:b:d20553`): a new period starts afresh.
            let window = c.key.rsplit(':').next().unwrap_or_default();
            let level = BudgetLevel {
                window: window.to_string(),
                ratio,
                until: now + Duration::from_secs(c.window_left),
            };
            match budgets.get_mut(&c.limit) {
                Some(b) if b.window == window && b.until > now => {
                    // Another bucket of the same period: keep the fullest (a refund or a new
                    // bucket never hides a full one).
                    if ratio >= b.ratio {
                        *b = level;
                    }
                }
                _ => {
                    budgets.insert(c.limit.clone(), level);
                }
            }
        }
    }

    /// Whether the counters live in Redis (else in this process's memory).
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    pub fn is_degraded(&self) -> bool {
        self.degraded.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Counts (one per counter key) dropped unreplayed because too many were waiting for Redis.
    pub fn dropped_pending(&self) -> u64 {
        self.shared.as_ref().map_or(0, |s| s.lock_pending().dropped)
    }

    fn lock_local(&self) -> std::sync::MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(PoisonError::into_inner)
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
        self.admit(charges).await.map(|a| (a.used.err(), a.degraded))
    }

    /// Reserves all `charges` or none, and says how much of each limit is used.
    pub async fn admit(&self, charges: &[Charge]) -> Result<Admission, StoreUnavailable> {
        if charges.is_empty() {
            return Ok(Admission {
                used: Ok(Vec::new()),
                degraded: false,
            });
        }
        let Some(shared) = &self.shared else {
            let used = self.lock_local().reserve(charges);
            self.note_budgets(charges, used.as_deref().map_err(|i| *i));
            return Ok(Admission { used, degraded: false });
        };
        match shared.admit(charges.to_vec()).await {
            Ok(used) => {
                self.set_degraded(false, "");
                self.note_budgets(charges, used.as_deref().map_err(|i| *i));
                Ok(Admission { used, degraded: false })
            }
            Err(e) => {
                self.set_degraded(true, &e.0);
                match self.fail_mode {
                    StoreFailMode::Closed => Err(StoreUnavailable(e.0)),
                    StoreFailMode::Open => {
                        let used = self.lock_local().reserve(charges);
                        self.note_budgets(charges, used.as_deref().map_err(|i| *i));
                        if used.is_ok() {
                            shared.keep(
                                charges
                                    .iter()
                                    .map(|c| {
                                        (
                                            c.key.clone(),
                                            i64::try_from(c.amount).unwrap_or(i64::MAX),
                                            c.window_left,
                                        )
                                    })
                                    .collect(),
                            );
                        }
                        Ok(Admission { used, degraded: true })
                    }
                }
            }
        }
    }

    /// Applies deltas at once when counters are local, without a task or a wake-up; returns
    /// them when they must go to Redis (`adjust`).
    pub fn adjust_local(&self, deltas: Vec<(String, i64, u64)>) -> Option<Vec<(String, i64, u64)>> {
        if self.shared.is_some() {
            return Some(deltas);
        }
        self.lock_local().adjust(&deltas);
        None
    }

    /// Moves counters by signed deltas (reconciliation with real usage).
    pub async fn adjust(&self, deltas: Vec<(String, i64, u64)>) {
        if deltas.is_empty() {
            return;
        }
        let Some(shared) = &self.shared else {
            self.lock_local().adjust(&deltas);
            return;
        };
        if let Err((e, left)) = shared.adjust(deltas).await {
            tracing::debug!(error = %e, entries = left.len(), "limit store: adjustment kept for replay");
            self.lock_local().adjust(&left);
            shared.keep(left);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charge(key: &str, amount: u64, max: u64, window_left: u64) -> Charge {
        Charge {
            key: key.into(),
            limit: "l".into(),
            kind: LimitKind::Requests,
            amount,
            max,
            window_left,
            window: "minute",
        }
    }

    #[test]
    fn local_counters_expire_without_visiting_every_bucket_per_request() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut local = Local::default();
        // 10,000 buckets, each with a 60 s window.
        for i in 0..10_000 {
            assert_eq!(local.reserve_at(&[charge(&format!("k{i}"), 1, 5, 60)], t0), Ok(vec![1]));
        }
        assert_eq!(local.swept, 0, "the first sweep ran on an empty map");
        // A burst of requests within a second visits the buckets at most once.
        for n in 0..1_000 {
            let now = t0 + Duration::from_millis(n);
            let _ = local.reserve_at(&[charge("k1", 1, 1_000_000, 60)], now);
        }
        assert!(
            local.swept <= 10_000,
            "visited {} counters for 1,000 requests",
            local.swept
        );
        // Limits still hold and windows still end.
        let late = t0 + Duration::from_secs(2);
        assert_eq!(
            local.reserve_at(&[charge("k7", 4, 5, 60), charge("k8", 2, 5, 60)], late),
            Ok(vec![5, 3]),
            "each counter's count after the request"
        );
        assert_eq!(local.reserve_at(&[charge("k7", 1, 5, 60)], late), Err(0), "5 of 5 used");
        let next_window = t0 + Duration::from_secs(61);
        assert_eq!(
            local.reserve_at(&[charge("k7", 5, 5, 60)], next_window),
            Ok(vec![5]),
            "an expired window reads as zero before any sweep"
        );
        // Expired buckets are dropped by the next sweep: memory stays bounded.
        let much_later = t0 + Duration::from_secs(200);
        let _ = local.reserve_at(&[charge("x", 1, 5, 60)], much_later);
        assert_eq!(local.counters.len(), 1, "only the new bucket is left");
    }

    #[test]
    fn a_flood_of_distinct_keys_keeps_only_the_live_windows() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut local = Local::default();
        let mut most = 0;
        // 300,000 keys never seen again, one a millisecond for five minutes, 60 s windows.
        for n in 0..300_000u64 {
            let now = t0 + Duration::from_millis(n);
            assert_eq!(
                local.reserve_at(&[charge(&format!("k{n}"), 1, 5, 60)], now),
                Ok(vec![1])
            );
            most = most.max(local.counters.len());
        }
        // What lives at once: the last window's keys plus at most a second of expired ones.
        assert!(most <= 61_001, "{most} counters at once");
        assert!(most >= 60_000, "{most}: windows still last 60 s");
        // Visits: one sweep a second, each over at most what lives.
        assert!(local.swept <= 300 * 61_001, "visited {}", local.swept);

        // A clock that steps back an hour does not put off sweeping by an hour: the keys
        // charged after the step still go when their windows end (those from before the step
        // end an hour later by the new clock, and stay until then).
        let before = local.counters.len();
        let back = t0 + Duration::from_secs(300) - Duration::from_secs(3_600);
        for n in 0..120_000u64 {
            let now = back + Duration::from_millis(n);
            let _ = local.reserve_at(&[charge(&format!("b{n}"), 1, 5, 60)], now);
        }
        assert!(
            local.counters.len() <= before + 61_001,
            "{} counters, {before} from before the step",
            local.counters.len()
        );
    }

    fn limit(yaml: &str) -> Vec<Limit> {
        let raw: Vec<RawLimit> = serde_yaml_ng::from_str(yaml).unwrap();
        limits_from_raw(raw).unwrap()
    }

    fn subject<'a>(comm: &'a str, model: &'a str) -> Subject<'a> {
        Subject {
            workload: crate::matching::WorkloadFacts {
                comm,
                uid: 1000,
                cgroup: Some("/a"),
                ..Default::default()
            },
            route: Some("r"),
            provider: Some("openai"),
            model: Some(model),
            model_known: true,
            backend: Some("b"),
            tool: None,
        }
    }

    #[test]
    fn invented_model_names_share_one_bucket() {
        let limits = limit("- { name: per-model, requestsPerMinute: 5, key: [model] }\n");
        let mut keys = std::collections::HashSet::new();
        for i in 0..2000 {
            let name = format!("made-up-{i}");
            let s = Subject {
                model_known: false,
                ..subject("python3", &name)
            };
            keys.extend(charges(&limits, &s, 1, None).into_iter().map(|c| c.key));
        }
        assert_eq!(keys.len(), 1, "{keys:?}");
        assert!(keys.iter().next().unwrap().contains("other"));
        let known = charges(&limits, &subject("python3", "gpt-4o"), 1, None);
        assert!(known[0].key.contains("gpt-4o"), "a priced model keeps its own bucket");
    }

    #[test]
    fn charges_follow_match_and_key() {
        let limits = limit(
            "- { name: tpm, tokensPerMinute: 100, match: { models: [\"gpt-*\"] } }\n- { name: rpm, requestsPerMinute: 2, key: [route] }\n",
        );
        let c = charges(&limits, &subject("python3", "gpt-4o"), 30, None);
        assert_eq!(c.len(), 2);
        assert!(c[0].key.starts_with("tg:{tpm:python3:1000}:t:m"), "{}", c[0].key);
        assert!(c[1].key.starts_with("tg:{rpm:r}:r:m"), "{}", c[1].key);
        assert_eq!(charges(&limits, &subject("python3", "claude-x"), 30, None).len(), 1);
    }

    #[test]
    fn pods_are_matched_and_keyed_by_namespace_and_name() {
        let limits = limit(
            "- { name: ns, tokensPerMinute: 100, match: { namespaces: [\"team-*\"], labels: { tier: gold } }, key: [namespace] }\n- { name: pod, requestsPerMinute: 2, key: [pod] }\n",
        );
        let labels: std::collections::BTreeMap<String, String> = [("tier".to_string(), "gold".to_string())].into();
        let in_pod = Subject {
            workload: crate::matching::WorkloadFacts {
                comm: "python3",
                namespace: Some("team-a"),
                pod: Some("nb-1"),
                labels: Some(&labels),
                ..Default::default()
            },
            ..subject("python3", "gpt-4o")
        };
        let c = charges(&limits, &in_pod, 30, None);
        assert_eq!(c.len(), 2);
        assert!(c[0].key.starts_with("tg:{ns:team-a}:t:m"), "{}", c[0].key);
        assert!(c[1].key.starts_with("tg:{pod:team-a/nb-1}:r:m"), "{}", c[1].key);
        // A host process: no namespace limit, and one shared `-` pod bucket.
        let host = charges(&limits, &subject("python3", "gpt-4o"), 30, None);
        assert_eq!(host.len(), 1);
        assert!(host[0].key.starts_with("tg:{pod:-}:r:m"), "{}", host[0].key);
    }

    #[test]
    fn local_reservations_are_all_or_nothing() {
        let limits = limit("- { name: rpm, requestsPerMinute: 2, tokensPerMinute: 100 }\n");
        let store = Store::new(&store_from_raw(None).unwrap());
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
    fn budget_levels_follow_the_fullest_bucket_and_a_refusal_reads_as_full() {
        // $1 a day per workload: 1e9 nano-dollars.
        let limits =
            limit("- { name: daily, budget: { usd: \"1\", period: day } }\n- { name: rpm, requestsPerMinute: 100 }\n");
        let store = Store::new(&store_from_raw(None).unwrap());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            assert!(store.budget_used().is_empty(), "nothing charged yet");
            let a = subject("a", "m");
            let b = subject("b", "m");
            let c = |s, cost| charges(&limits, s, 10, Some(cost));
            assert_eq!(store.reserve(&c(&a, 600_000_000)).await.unwrap().0, None);
            assert_eq!(store.budget_used(), vec![("daily".to_string(), 0.6)]);
            // Another bucket, less full: the fullest one still shows.
            assert_eq!(store.reserve(&c(&b, 100_000_000)).await.unwrap().0, None);
            assert_eq!(store.budget_used(), vec![("daily".to_string(), 0.6)]);
            assert_eq!(store.reserve(&c(&a, 300_000_000)).await.unwrap().0, None);
            let used = store.budget_used()[0].1;
            assert!((used - 0.9).abs() < 1e-9, "{used}");
            // Refused for its budget: full.
            assert_eq!(store.reserve(&c(&a, 200_000_000)).await.unwrap().0, Some(0));
            assert_eq!(store.budget_used(), vec![("daily".to_string(), 1.0)]);
            // Limits without a budget never show; an unpriced request charges no budget.
            assert_eq!(store.reserve(&charges(&limits, &b, 10, None)).await.unwrap().0, None);
            assert_eq!(store.budget_used().len(), 1);
        });
        // A period that ended reads as zero.
        store.budgets.lock().unwrap().get_mut("daily").unwrap().until = SystemTime::now() - Duration::from_secs(1);
        assert_eq!(store.budget_used(), vec![("daily".to_string(), 0.0)]);
    }

    #[test]
    fn keys_of_one_limit_and_bucket_share_a_slot() {
        let limits = limit(
            "- { name: all, requestsPerMinute: 5, tokensPerMinute: 100, budget: { usd: \"1\", period: day }, key: [workload, model] }\n- { name: other, requestsPerMinute: 5 }\n",
        );
        let c = charges(&limits, &subject("py}{thon", "m{x}"), 30, Some(5));
        assert_eq!(c.len(), 4);
        assert!(c[0].key.starts_with("tg:{all:py}{thon:1000|m{x}}:r:m"), "{}", c[0].key);
        let slot = |i: usize| self::redis::slot(&c[i].key);
        assert_eq!((slot(0), slot(0)), (slot(1), slot(2)));
        let cluster = groups(true, c.iter().map(|c| c.key.as_str()), usize::MAX);
        assert!(cluster.iter().any(|g| g == &[0, 1, 2]), "{cluster:?}");
        assert!(cluster.iter().any(|g| g == &[3]), "{cluster:?}");
        assert_eq!(
            groups(false, c.iter().map(|c| c.key.as_str()), 3),
            vec![vec![0, 1, 2], vec![3]]
        );
    }

    fn raw_store(yaml: &str) -> Result<StoreConfig, String> {
        store_from_raw(Some(serde_yaml_ng::from_str(yaml).map_err(|e| e.to_string())?)).map_err(|e| e.to_string())
    }

    #[test]
    fn store_config_is_checked() {
        let c = raw_store("redis: \"10.0.0.1:6379\"").unwrap();
        assert_eq!(
            (c.redis.as_deref(), c.cluster, c.timeout),
            (Some("10.0.0.1:6379"), false, DEFAULT_REDIS_TIMEOUT)
        );
        let c = raw_store("cluster: true\nnodes: [\"a:7000\", \"[::1]:7001\"]\ntls: true\ntimeout: 1s").unwrap();
        assert_eq!(c.nodes, ["a:7000", "[::1]:7001"]);
        assert!(c.cluster && c.tls);
        raw_store("cluster: true\nredis: \"a:7000\"").unwrap();
        for (yaml, error) in [
            ("redis: x", "limitStore.redis: \"x\": expected host:port"),
            (
                "redis: \"redis://a:1\"",
                "limitStore.redis: \"redis://a:1\": expected host:port",
            ),
            (
                "cluster: true\nnodes: [\"a:1\", x]",
                "limitStore.nodes[1]: \"x\": expected host:port",
            ),
            (
                "cluster: true\nnodes: [\"a:1\", \"b:0\"]",
                "limitStore.nodes[1]: \"b:0\": expected host:port",
            ),
            (
                "nodes: [\"a:1\"]",
                "limitStore.nodes: seed nodes are for a Redis Cluster",
            ),
            (
                "cluster: true\nnodes: [\"a:1\"]\nredis: \"a:1\"",
                "limitStore.nodes: give redis or nodes, not both",
            ),
            ("cluster: true", "limitStore.cluster: needs"),
            ("cluster: true\nnodes: []", "limitStore.nodes: empty"),
            ("tls: true", "limitStore.tls: is for Redis"),
            ("redis: \"a:1\"\nusername: u", "limitStore.username: needs a password"),
            (
                "redis: \"a:1\"\npasswordEnv: TOLLGATE_TEST_SURELY_UNSET",
                "limitStore.passwordEnv: \"TOLLGATE_TEST_SURELY_UNSET\" is not set",
            ),
            (
                "redis: \"a:1\"\npasswordFile: /nonexistent/tollgate",
                "limitStore.passwordFile: /nonexistent/tollgate:",
            ),
            (
                "redis: \"a:1\"\npasswordFile: /x\npasswordEnv: Y",
                "limitStore.passwordEnv: give passwordFile or passwordEnv",
            ),
            ("redis: \"a:1\"\ncluser: true", "unknown field `cluser`"),
        ] {
            let e = raw_store(yaml).unwrap_err();
            assert!(e.contains(error), "{yaml:?}: {e}");
        }
    }

    #[test]
    fn the_password_is_never_shown() {
        let dir = std::env::temp_dir().join(format!("tollgate-limits-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("password");
        std::fs::write(&file, "s3cr3t-value\n").unwrap();
        let c = raw_store(&format!(
            "redis: \"a:1\"\nusername: u\npasswordFile: {}",
            file.display()
        ))
        .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(c.password.as_ref().map(Password::expose), Some("s3cr3t-value"));
        let shown = format!("{c:?} {}", serde_json::to_string(&c).unwrap());
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(
            shown.contains("passwordFile") && shown.contains("<redacted>"),
            "{shown}"
        );
    }

    #[test]
    fn pending_merges_and_drops_the_oldest() {
        let d = |k: &str, n: i64, ttl: u64| (k.to_string(), n, ttl);
        let mut p = Pending::new(3);
        p.add(d("a", 1, 60));
        p.add(d("b", 1, 60));
        p.add(d("a", 2, 50));
        p.add(d("c", 5, 60));
        p.add(d("c", -5, 60)); // back to nothing: gone
        p.add(d("d", 1, 60));
        assert_eq!(p.dropped, 0);
        p.add(d("e", 1, 60)); // full: "a" (the oldest) goes
        assert_eq!(p.dropped, 1);
        assert_eq!(p.take(), vec![d("b", 1, 60), d("d", 1, 60), d("e", 1, 60)]);
        assert!(p.is_empty());
        // Put back in front, order kept, merged with what came meanwhile.
        p.add(d("x", 1, 60));
        p.add(d("d", 1, 60));
        p.restore(vec![d("b", 1, 60), d("d", 1, 60)]);
        assert_eq!(p.take(), vec![d("b", 1, 60), d("x", 1, 60), d("d", 2, 60)]);
        // Full when putting back: what is put back is the oldest, so it is what is dropped.
        p.add(d("x", 1, 60));
        p.add(d("y", 1, 60));
        p.add(d("z", 1, 60));
        p.restore(vec![d("a", 1, 60)]);
        assert_eq!(p.dropped, 2);
        assert_eq!(p.take().len(), 3);
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
