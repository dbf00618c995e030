//! The Redis limit store (`gateway::limits::Store`) against real servers started here, on
//! loopback, without root: one `redis-server`, a three-master Redis Cluster, admissions cancelled
//! mid-call, a server killed and restarted (fail-open and fail-closed), and AUTH.
//!
//! Charges are made once per test and reused, with windows long enough to outlast it, so that a
//! minute boundary during a test changes no key.

use std::{future::Future, task::Poll, time::Duration};

use gateway::limits::{charges, limits_from_raw, store_from_raw, Charge, Limit, RawLimit, RawStore, Store, Subject};
use serde_json::{json, Value};
use tests::{redis::RedisCluster, RedisServer, TempDir};

fn limits(v: Value) -> Vec<Limit> {
    limits_from_raw(serde_json::from_value::<Vec<RawLimit>>(v).unwrap()).unwrap()
}

fn store(v: Value) -> Store {
    let raw: RawStore = serde_json::from_value(v).unwrap();
    Store::new(&store_from_raw(Some(raw)).unwrap())
}

/// One request's charges, as admission makes them, for workload `comm` (uid 1000).
fn request(limits: &[Limit], comm: &str, tokens: u64) -> Vec<Charge> {
    let subject = Subject {
        workload: gateway::matching::WorkloadFacts {
            comm,
            uid: 1000,
            ..Default::default()
        },
        route: Some("r"),
        provider: Some("openai"),
        model: Some("gpt-4o"),
        model_known: true,
        backend: Some("b"),
        tool: None,
    };
    let mut c = charges(limits, &subject, tokens, None);
    for c in &mut c {
        c.window_left = 600;
    }
    c
}

/// A counter's value (0 when absent).
fn count(get: impl Fn(&[&str]) -> String, key: &str) -> i64 {
    let v = get(&["GET", key]);
    if v.is_empty() {
        0
    } else {
        v.parse().unwrap_or_else(|_| panic!("GET {key}: {v:?}"))
    }
}

async fn eventually(what: &str, pred: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !pred() {
        assert!(start.elapsed() < Duration::from_secs(5), "{what}: not after 5s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_reserves_all_or_nothing_and_adjusts() {
    let redis = RedisServer::start();
    let store = store(json!({ "redis": redis.addr(), "failMode": "closed", "timeout": "2s" }));
    let limits = limits(json!([
        { "name": "team", "requestsPerMinute": 10, "tokensPerMinute": 100 },
        { "name": "pair", "requestsPerMinute": 2 },
    ]));
    let c = request(&limits, "python3", 30);
    let keys: Vec<&str> = c.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(c.len(), 3);
    assert!(keys[0].starts_with("tg:{team:python3:1000}:r:m"), "{keys:?}");
    let get = |k: usize| count(|a| redis.cli(a), keys[k]);
    let counters = || (get(0), get(1), get(2));

    assert_eq!(store.reserve(&c).await.unwrap(), (None, false));
    assert_eq!(counters(), (1, 30, 1));
    // Too many tokens: refused by the tokens charge, and nothing taken, not even the requests.
    let mut greedy = c.clone();
    greedy[1].amount = 80;
    assert_eq!(store.reserve(&greedy).await.unwrap(), (Some(1), false));
    assert_eq!(counters(), (1, 30, 1));
    // Admission says how much of each limit is used with this request (the audit record's
    // `policy.limits`), as Redis counted it.
    let admitted = store.admit(&c).await.unwrap();
    assert_eq!(admitted.used, Ok(vec![2, 60, 2]));
    assert!(!admitted.degraded);
    assert_eq!(counters(), (2, 60, 2));
    // The second limit is full: the first one's counters do not move.
    assert_eq!(store.reserve(&c).await.unwrap(), (Some(2), false));
    assert_eq!(counters(), (2, 60, 2));
    let ttl: i64 = redis.cli(&["TTL", keys[1]]).parse().unwrap();
    assert!((1..=600).contains(&ttl), "TTL {ttl}");

    // Reconciliation goes to Redis (not to local counters).
    let deltas = vec![(keys[1].to_string(), -20, 600)];
    let deltas = store.adjust_local(deltas).expect("deltas for redis");
    store.adjust(deltas).await;
    assert_eq!(counters(), (2, 40, 2));
    assert!(!store.is_degraded());
    assert_eq!(store.dropped_pending(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_reserves_per_slot_and_gives_back_what_earlier_slots_took() {
    let cluster = RedisCluster::start(3);
    let store = store(json!({
        "cluster": true, "nodes": cluster.addrs(), "failMode": "closed", "timeout": "2s",
    }));
    // Two limits whose counters live on different nodes; `late` has the higher slot, so its
    // group runs second, yet it comes first in the request's charges.
    let slot_and_owner = |name: &str| {
        let c = request(&limits(json!([{ "name": name, "requestsPerMinute": 1 }])), "py", 1);
        let slot: u16 = cluster.cli(&["CLUSTER", "KEYSLOT", &c[0].key]).parse().unwrap();
        (slot, cluster.owner(&c[0].key))
    };
    let (first, first_at) = slot_and_owner("l0");
    let (late, _) = (1..50)
        .map(|i| format!("l{i}"))
        .map(|n| {
            let at = slot_and_owner(&n);
            (n, at)
        })
        .find(|(_, (slot, owner))| *slot > first && *owner != first_at)
        .map(|(n, (_, owner))| (n, owner))
        .unwrap_or_else(|| ("l0".into(), 0));
    assert_ne!(late, "l0", "no limit name lands on another node with a higher slot");
    let limits = limits(json!([
        { "name": late, "requestsPerMinute": 1, "tokensPerMinute": 1000 },
        { "name": "l0", "requestsPerMinute": 100, "tokensPerMinute": 1000 },
    ]));
    let c = request(&limits, "py", 30);
    let keys: Vec<&str> = c.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(c.len(), 4);
    let get = |k: usize| count(|a| cluster.cli(a), keys[k]);
    let counters = || [get(0), get(1), get(2), get(3)];
    let slot = |k: usize| cluster.cli(&["CLUSTER", "KEYSLOT", keys[k]]);
    assert_eq!((slot(0), slot(2)), (slot(1), slot(3)), "one slot per limit and bucket");
    assert_ne!(slot(0), slot(2));

    assert_eq!(store.reserve(&c).await.unwrap(), (None, false));
    assert_eq!(counters(), [1, 30, 1, 30]);
    // `late` is full: refused in the second slot group; what the first group took is given back,
    // and the refusal names the charge in the request's own numbering.
    assert_eq!(store.reserve(&c).await.unwrap(), (Some(0), false));
    assert_eq!(counters(), [1, 30, 1, 30]);
    // Refused in the first group: the second one is not even asked.
    let mut greedy = c.clone();
    greedy[3].amount = 5000;
    assert_eq!(store.reserve(&greedy).await.unwrap(), (Some(3), false));
    assert_eq!(counters(), [1, 30, 1, 30]);
    // Adjustments across slots.
    let deltas = vec![(keys[1].to_string(), -10, 600), (keys[3].to_string(), 5, 600)];
    store.adjust(deltas).await;
    assert_eq!(counters(), [1, 20, 1, 35]);
    assert!(!store.is_degraded());
}

/// Polls `fut` (yielding in between) until it is ready or `after` has passed, then drops it: a
/// caller that goes away in the middle of a call (`tokio::time::timeout` cannot cut that fine).
async fn abandon_after<F: Future>(fut: F, after: Duration) -> Option<F::Output> {
    let start = std::time::Instant::now();
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(v) = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await {
            return Some(v);
        }
        if start.elapsed() >= after {
            return None;
        }
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_admissions_leave_later_answers_exact() {
    let redis = RedisServer::start();
    let store = store(json!({ "redis": redis.addr(), "failMode": "closed", "timeout": "2s" }));
    let many = request(
        &limits(json!([{ "name": "many", "requestsPerMinute": 1_000_000 }])),
        "cancel",
        1,
    );
    let key = many[0].key.clone();
    let get = || count(|a| redis.cli(a), &key);

    // Admissions dropped after 0 to 299 µs: at any point of the call.
    let (mut admitted, mut cancelled) = (0i64, 0);
    for i in 0..300 {
        match abandon_after(store.reserve(&many), Duration::from_micros(i % 300)).await {
            Some(r) => {
                assert_eq!(r.unwrap(), (None, false));
                admitted += 1;
            }
            None => cancelled += 1,
        }
        // Adjustments dropped in flight, on the same connection.
        let adjust = store.adjust(vec![("tg:{other}:r:x".into(), 1, 600)]);
        abandon_after(adjust, Duration::from_micros(i % 150)).await;
    }
    eprintln!("{admitted} admitted, {cancelled} cancelled");
    assert!(cancelled > 0);
    // A reservation taken for a caller that was gone is given back: the counter ends at exactly
    // what was admitted (the next admission replays any give-back still waiting).
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(store.reserve(&many).await.unwrap(), (None, false));
    admitted += 1;
    eventually("counter equals the admitted requests", || get() == admitted).await;

    // A reply that arrives after its caller left (the server paused meanwhile).
    redis.cli(&["CLIENT", "PAUSE", "400", "ALL"]);
    let late = tokio::time::timeout(Duration::from_millis(50), store.reserve(&many)).await;
    assert!(late.is_err(), "answered during the pause: {late:?}");
    assert_eq!(store.reserve(&many).await.unwrap(), (None, false));
    admitted += 1;
    eventually("counter equals the admitted requests after the pause", || {
        get() == admitted
    })
    .await;

    // Later answers are right to the unit.
    let five = request(
        &limits(json!([{ "name": "five", "requestsPerMinute": 5, "tokensPerMinute": 50 }])),
        "cancel",
        10,
    );
    for _ in 0..5 {
        assert_eq!(store.reserve(&five).await.unwrap(), (None, false));
    }
    assert_eq!(store.reserve(&five).await.unwrap(), (Some(0), false));
    assert_eq!(count(|a| redis.cli(a), &five[0].key), 5);
    assert_eq!(count(|a| redis.cli(a), &five[1].key), 50);
    assert_eq!(get(), admitted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_server_fail_open_counts_locally_and_replays_fail_closed_refuses() {
    let mut redis = RedisServer::start();
    let open = store(json!({ "redis": redis.addr(), "failMode": "open", "timeout": "300ms" }));
    let closed = store(json!({ "redis": redis.addr(), "failMode": "closed", "timeout": "300ms" }));
    let c = request(
        &limits(json!([{ "name": "five", "requestsPerMinute": 5, "tokensPerMinute": 1000 }])),
        "outage",
        10,
    );
    let c_closed = request(
        &limits(json!([{ "name": "shut", "requestsPerMinute": 5 }])),
        "outage",
        1,
    );
    let get = |redis: &RedisServer, key: &str| count(|a| redis.cli(a), key);

    assert_eq!(open.reserve(&c).await.unwrap(), (None, false));
    assert_eq!(open.reserve(&c).await.unwrap(), (None, false));
    assert_eq!(closed.reserve(&c_closed).await.unwrap(), (None, false));
    assert_eq!(get(&redis, &c[0].key), 2);

    redis.stop();
    // Fail-open: local counters (from zero) decide, and say so.
    for _ in 0..5 {
        assert_eq!(open.reserve(&c).await.unwrap(), (None, true));
    }
    assert_eq!(open.reserve(&c).await.unwrap(), (Some(0), true));
    assert!(open.is_degraded());
    open.adjust(vec![(c[1].key.clone(), -5, 600)]).await;
    // Fail-closed: refused.
    let refused = closed.reserve(&c_closed).await.unwrap_err();
    assert!(refused.to_string().contains("limit store unavailable"), "{refused}");
    assert!(closed.is_degraded());

    redis.restart(); // empty: what was counted before the outage is gone
                     // The five admitted while Redis was down are replayed first: Redis (not the local
                     // counters) now refuses the sixth.
    assert_eq!(open.reserve(&c).await.unwrap(), (Some(0), false));
    assert!(!open.is_degraded());
    assert_eq!(get(&redis, &c[0].key), 5);
    assert_eq!(get(&redis, &c[1].key), 5 * 10 - 5);
    assert_eq!(closed.reserve(&c_closed).await.unwrap(), (None, false));
    assert!(!closed.is_degraded());
    assert_eq!(get(&redis, &c_closed[0].key), 1);
    assert_eq!((open.dropped_pending(), closed.dropped_pending()), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticates_with_a_password_file() {
    let redis = RedisServer::start_with(&["--requirepass", "hunter2-s3cret"]);
    let dir = TempDir::new("redis-auth");
    std::fs::write(dir.path("password"), "hunter2-s3cret\n").unwrap();
    let cfg = json!({
        "redis": redis.addr(), "failMode": "closed", "timeout": "2s",
        "username": "default", "passwordFile": dir.path("password"),
    });
    let validated = store_from_raw(Some(serde_json::from_value(cfg.clone()).unwrap())).unwrap();
    let shown = format!("{validated:?} {}", serde_json::to_string(&validated).unwrap());
    assert!(!shown.contains("hunter2"), "{shown}");
    let c = request(&limits(json!([{ "name": "auth", "requestsPerMinute": 1 }])), "auth", 1);
    assert_eq!(store(cfg).reserve(&c).await.unwrap(), (None, false));
    let got = redis.cli(&["-a", "hunter2-s3cret", "--no-auth-warning", "GET", &c[0].key]);
    assert_eq!(got, "1");
    // Without the password: refused by Redis, so the store is unavailable (fail-closed).
    let anonymous = store(json!({ "redis": redis.addr(), "failMode": "closed", "timeout": "2s" }));
    let refused = anonymous.reserve(&c).await.unwrap_err().to_string();
    assert!(
        refused.contains("NOAUTH") || refused.contains("uthentication"),
        "{refused}"
    );
    // TLS to a server that speaks none: a handshake error, not a panic (rustls finds its
    // crypto provider).
    let tls = store(json!({ "redis": redis.addr(), "failMode": "closed", "timeout": "300ms", "tls": true }));
    let refused = tls.reserve(&c).await.unwrap_err().to_string();
    assert!(!refused.contains("without answer"), "{refused}");
    eprintln!("tls to a plain server: {refused}");
}
