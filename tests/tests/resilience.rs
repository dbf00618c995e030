//! Fallback, timeouts, outlier ejection and limits, end to end through capture, with
//! fault-injecting fake providers and a real Redis for cluster-wide limits.

use std::time::Duration;

use serde_json::Value;
use tests::{
    fake_llm::Script,
    fresh_minute_window,
    l7::{curl, openai_setup, OpenAiSetup},
    privileged, run, sdk_python, workspace, Gateway, RedisServer,
};

/// Primary in tier 0, secondary in tier 1: the primary is always tried first.
const TIERS: &str =
    "routes:\n  - name: ha\n    backends: [{ backend: primary, priority: 0 }, { backend: secondary, priority: 1 }]\n";

fn chat(s: &OpenAiSetup, gw: &Gateway, extra: &[&str]) -> (String, Value) {
    let mut args = vec!["-H", "content-type: application/json"];
    args.extend_from_slice(extra);
    args.extend([
        "-d",
        r#"{"model":"gpt-4o-mini","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}"#,
    ]);
    args.push("https://api.openai.com/v1/chat/completions");
    curl(&s.cg, &s.dir, "api.openai.com", &s.captured_ip, &gw.ca_cert(), &args)
}

#[test]
fn a_failing_primary_falls_back_and_retry_after_is_honoured() {
    if !privileged("a_failing_primary_falls_back_and_retry_after_is_honoured") {
        return;
    }
    let (s, builder) = openai_setup(21, "res-503", "");
    let gw = builder.yaml(TIERS).start();
    s.primary.set_script(Script {
        status: Some(503),
        ..Default::default()
    });
    // The unmodified SDK gets the secondary's answer.
    let mut cmd =
        s.cg.command_with_hosts(&s.dir, &[("api.openai.com", &s.captured_ip)], sdk_python());
    cmd.env("SSL_CERT_FILE", gw.ca_cert())
        .arg(workspace().join("tests/clients/openai_client.py"))
        .args(["chat", "gpt-4o-mini"]);
    let out = run(cmd, Duration::from_secs(60));
    let v: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(v["content"], "hello from secondary");
    let r = &gw.wait_audit(1)[0];
    let attempts = r["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{r}");
    assert_eq!(
        (attempts[0]["backend"].as_str(), attempts[0]["status"].as_u64()),
        (Some("primary"), Some(503))
    );
    assert_eq!(
        (attempts[1]["backend"].as_str(), attempts[1]["status"].as_u64()),
        (Some("secondary"), Some(200))
    );
    assert_eq!(r["backend"], "secondary");
    assert_eq!(r["status"], 200);

    // A 429 with Retry-After: the primary is skipped for that long, without a retry storm.
    s.primary.set_script(Script {
        status: Some(429),
        retry_after: Some(30),
        ..Default::default()
    });
    let (status, v) = chat(&s, &gw, &[]);
    assert!(status.starts_with("200"), "{status} {v}");
    let before = s.primary.received().len();
    for _ in 0..3 {
        let (status, _) = chat(&s, &gw, &[]);
        assert!(status.starts_with("200"));
    }
    assert_eq!(s.primary.received().len(), before, "cooling down: not tried");
    let (_, backends) = gw.admin_get("/backends");
    assert!(backends.contains("cooling_down"), "{backends}");
}

#[test]
fn a_hanging_primary_times_out_and_a_reset_stream_is_not_retried() {
    if !privileged("a_hanging_primary_times_out_and_a_reset_stream_is_not_retried") {
        return;
    }
    let (s, builder) = openai_setup(22, "res-hang", "");
    let routes = "routes:\n  - name: ha\n    backends: [{ backend: primary, priority: 0 }, { backend: secondary, priority: 1 }]\n    timeouts: { firstByte: 400ms }\n";
    let gw = builder.yaml(routes).start();
    s.primary.set_script(Script {
        delay: Some(Duration::from_secs(5)),
        ..Default::default()
    });
    let (status, v) = chat(&s, &gw, &[]);
    assert!(status.starts_with("200"), "{status} {v}");
    assert_eq!(v["choices"][0]["message"]["content"], "hello from secondary");
    let r = &gw.wait_audit(1)[0];
    assert!(
        r["attempts"][0]["error"]
            .as_str()
            .unwrap()
            .contains("no response headers within"),
        "{r}"
    );
    assert!(r["attempts"][0]["duration_ms"].as_f64().unwrap() < 2000.0);

    // Reset before headers: retried on the secondary too.
    s.primary.set_script(Script {
        reset_before_headers: true,
        ..Default::default()
    });
    let (status, _) = chat(&s, &gw, &[]);
    assert!(status.starts_with("200"));

    // Reset mid-stream: the client has bytes already; no retry, the client sees the error.
    s.primary.set_script(Script {
        reset_after_first: true,
        ..Default::default()
    });
    let secondary_before = s.secondary.received().len();
    let mut cmd =
        s.cg.command_with_hosts(&s.dir, &[("api.openai.com", &s.captured_ip)], "curl");
    cmd.args(["-sS", "-N", "--cacert"]).arg(gw.ca_cert()).args([
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"model":"gpt-4o-mini","stream":true,"messages":[]}"#,
        "https://api.openai.com/v1/chat/completions",
    ]);
    let out = run(cmd, Duration::from_secs(20));
    assert!(!out.status.success(), "the client must see the broken stream");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("hello"),
        "it had the first chunks"
    );
    assert_eq!(
        s.secondary.received().len(),
        secondary_before,
        "never retried after the first byte"
    );
    let records = gw.wait_audit(3);
    let last = records.last().unwrap();
    assert_eq!(last["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(last["complete"], false);
}

#[test]
fn an_ejected_backend_is_not_tried_until_its_probe_succeeds() {
    if !privileged("an_ejected_backend_is_not_tried_until_its_probe_succeeds") {
        return;
    }
    let (s, builder) = openai_setup(23, "res-eject", "");
    let gw = builder
        .yaml(TIERS)
        .yaml("outlierDetection:\n  consecutiveFailures: 2\n  baseEjection: 1s\n  maxEjection: 10s\n")
        .start();
    s.primary.set_script(Script {
        status: Some(500),
        ..Default::default()
    });
    for _ in 0..2 {
        let (status, _) = chat(&s, &gw, &[]);
        assert!(status.starts_with("200"), "served by the secondary");
    }
    assert_eq!(s.primary.received().len(), 2);
    for _ in 0..3 {
        chat(&s, &gw, &[]);
    }
    assert_eq!(s.primary.received().len(), 2, "ejected: not tried");
    let (_, b) = gw.admin_get("/backends");
    assert!(b.contains("\"ejected\""), "{b}");
    assert_eq!(gw.metric("tollgate_backend_ejected{backend=\"primary\"}"), 1);
    // After the ejection period, one request probes the (now healthy) primary.
    s.primary.set_script(Script::default());
    // The ejection period ends: the admin port says the backend is half-open.
    gw.wait_until("primary half-open", Duration::from_secs(10), || {
        gw.admin_get("/backends").1.contains("\"half_open\"")
    });
    let (_, v) = chat(&s, &gw, &[]);
    assert_eq!(v["choices"][0]["message"]["content"], "hello from primary", "the probe");
    let (_, v) = chat(&s, &gw, &[]);
    assert_eq!(
        v["choices"][0]["message"]["content"], "hello from primary",
        "closed again"
    );
    let (_, b) = gw.admin_get("/backends");
    assert!(b.contains("\"healthy\""), "{b}");
}

fn burst(s: &OpenAiSetup, gw: &Gateway, n: usize, body: &str) -> Value {
    let mut cmd =
        s.cg.command_with_hosts(&s.dir, &[("api.openai.com", &s.captured_ip)], "python3");
    cmd.arg(workspace().join("tests/clients/burst.py"))
        .arg(gw.ca_cert())
        .arg("api.openai.com")
        .arg(n.to_string())
        .arg(body);
    let out = run(cmd, Duration::from_secs(120));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn token_and_money_limits_hold_under_a_burst_and_spare_other_workloads() {
    if !privileged("token_and_money_limits_hold_under_a_burst_and_spare_other_workloads") {
        return;
    }
    let (s, builder) = openai_setup(24, "res-limits", "");
    let limits = "limits:\n  - name: team-tpm\n    match: { comm: [python3] }\n    tokensPerMinute: 200\n  - name: team-money\n    match: { comm: [curl] }\n    budget: { usd: \"0.00001\", period: day }\n";
    let gw = builder.yaml(limits).start();
    fresh_minute_window();
    // Each request reserves max_tokens (10) + its input estimate (body bytes / 4).
    let body = r#"{"model":"gpt-4o-mini","max_tokens":10,"messages":[{"role":"user","content":"hello there"}]}"#;
    let reservation = 10 + (body.len() as u64).div_ceil(4);
    let v = burst(&s, &gw, 100, body);
    let statuses: Vec<u64> = v["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap())
        .collect();
    let allowed = statuses.iter().filter(|s| **s == 200).count() as u64;
    let denied = statuses.iter().filter(|s| **s == 429).count() as u64;
    assert_eq!(allowed + denied, 100, "{v}");
    assert!(allowed >= 1 && denied >= 1, "{v}");
    // What was used: 13 tokens per allowed request; the limit may be passed by at most one
    // request's reservation.
    let records = gw.wait_audit(100);
    let used: u64 = records
        .iter()
        .filter(|r| r["status"] == 200)
        .map(|r| r["tokens"]["total"].as_u64().unwrap())
        .sum();
    assert!(used <= 200 + reservation, "used {used} tokens against a limit of 200");
    let denied_body: Value = serde_json::from_str(v["denied_body"].as_str().unwrap()).unwrap();
    assert_eq!(denied_body["error"]["type"], "rate_limit_error");
    assert!(denied_body["error"]["message"].as_str().unwrap().contains("team-tpm"));
    assert!(v["retry_after"][0].as_str().unwrap().parse::<u64>().unwrap() <= 60);
    let denied_record = records.iter().find(|r| r["status"] == 429).unwrap();
    assert_eq!(denied_record["limit"]["outcome"], "denied");
    assert_eq!(denied_record["limit"]["limit"], "team-tpm");
    assert_eq!(denied_record["limit"]["kind"], "tokens");
    assert!(
        denied_record["attempts"].as_array().unwrap().is_empty(),
        "never sent upstream"
    );

    // Another workload (curl) has its own limit: money per day. The first request fits, its
    // reservation is reconciled to the real cost, and the budget soon runs out.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let (status, _) = chat(&s, &gw, &[]);
        statuses.push(status[..3].to_string());
    }
    assert_eq!(statuses[0], "200", "{statuses:?}");
    assert!(statuses.contains(&"429".to_string()), "budget exhausted: {statuses:?}");
    let records = gw.wait_audit(104);
    let spent: u64 = records
        .iter()
        .filter(|r| r["workload"]["comm"] == "curl" && r["status"] == 200)
        .map(|r| r["cost_nano_usd"].as_u64().unwrap())
        .sum();
    assert!(spent <= 10_000 + 10_000, "spent {spent} n$ against a budget of 10000");
    let denied = records
        .iter()
        .find(|r| r["workload"]["comm"] == "curl" && r["status"] == 429)
        .unwrap();
    assert_eq!(denied["limit"]["kind"], "budget");
}

#[test]
fn two_nodes_share_one_budget_through_redis_and_survive_its_outage() {
    if !privileged("two_nodes_share_one_budget_through_redis_and_survive_its_outage") {
        return;
    }
    let mut redis = RedisServer::start();
    let shared = format!(
        // A generous store timeout: this test is about one shared budget, and a loaded 2-core
        // CI machine can stall a loopback Redis round trip past the 250 ms default.
        "limitStore:\n  redis: \"{}\"\n  failMode: open\n  timeout: 2s\nlimits:\n  - name: cluster-rpm\n    key: [provider]\n    requestsPerMinute: 10\n",
        redis.addr()
    );
    let (a, builder_a) = openai_setup(25, "res-node-a", "");
    let gw_a = builder_a.yaml(&shared).start();
    let (b, builder_b) = openai_setup(26, "res-node-b", "");
    let gw_b = builder_b.yaml(&shared).start();
    fresh_minute_window();
    let mut ok = 0;
    for i in 0..16 {
        let (s, gw) = if i % 2 == 0 { (&a, &gw_a) } else { (&b, &gw_b) };
        let (status, _) = chat(s, gw, &[]);
        if status.starts_with("200") {
            ok += 1;
        }
    }
    if ok != 10 {
        let limits: Vec<String> = [&gw_a, &gw_b]
            .iter()
            .flat_map(|g| g.audit_records())
            .map(|r| format!("{} {}", r["status"], r["limit"]))
            .collect();
        panic!(
            "one budget for both nodes: {ok} of 16 served\n{limits:#?}\nnode a:\n{}\nnode b:\n{}",
            gw_a.log(),
            gw_b.log()
        );
    }

    // Redis goes away: fail-open counts locally; the gap is visible; nothing panics.
    redis.stop();
    let (status, _) = chat(&a, &gw_a, &[]);
    assert!(status.starts_with("429") || status.starts_with("200"), "{status}");
    let before = gw_a.audit_records().len();
    chat(&a, &gw_a, &["-H", "x-probe: 1"]);
    let records = gw_a.wait_audit(before + 1);
    assert_eq!(
        records.last().unwrap()["limit"]["degraded"],
        true,
        "answered from local counts"
    );
    assert_eq!(gw_a.metric("tollgate_limit_store_degraded"), 1);
    assert!(gw_a.log().contains("limit store (redis) unreachable"));
    // It returns (empty): the counts taken meanwhile are replayed into it.
    redis.restart();
    chat(&a, &gw_a, &[]);
    let replayed = || -> i64 {
        let keys = redis.cli(&["--scan", "--pattern", "tg:*cluster-rpm*"]);
        keys.lines()
            .map(|k| redis.cli(&["GET", k]).parse::<i64>().unwrap_or(0))
            .sum()
    };
    gw_a.wait_until("local counts replayed into redis", Duration::from_secs(10), || {
        replayed() >= 1
    });
    assert_eq!(gw_a.metric("tollgate_limit_store_degraded"), 0);
    assert!(!gw_a.log().contains("panicked"));

    // A fail-closed node refuses while Redis is away, in the client's error shape.
    redis.stop();
    let closed = shared.replace("failMode: open", "failMode: closed");
    let (c, builder_c) = openai_setup(27, "res-node-c", "");
    let gw_c = builder_c.yaml(&closed).start();
    let (status, v) = chat(&c, &gw_c, &[]);
    assert!(status.starts_with("503"), "{status} {v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("limit store"), "{v}");
}

#[test]
fn a_quiet_stream_hits_the_idle_timeout_with_its_own_error_kind() {
    if !privileged("a_quiet_stream_hits_the_idle_timeout_with_its_own_error_kind") {
        return;
    }
    let (s, builder) = openai_setup(28, "res-idle", "");
    let routes =
        "routes:\n  - name: idle\n    backends: [{ backend: primary }]\n    timeouts: { idle: 500ms, total: 20s }\n";
    let gw = builder.yaml(routes).start();
    // The fake sends the first chunks, then holds the rest behind a gate nobody opens.
    s.primary.set_script(Script {
        gate: Some(s.dir.path("never")),
        ..Default::default()
    });
    let mut cmd =
        s.cg.command_with_hosts(&s.dir, &[("api.openai.com", &s.captured_ip)], "curl");
    cmd.args(["-sS", "-N", "--cacert"]).arg(gw.ca_cert()).args([
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"model":"gpt-4o-mini","stream":true,"messages":[]}"#,
        "https://api.openai.com/v1/chat/completions",
    ]);
    let started = std::time::Instant::now();
    let out = run(cmd, Duration::from_secs(20));
    assert!(!out.status.success(), "the stream is broken off");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "by the idle timeout, not the fake's 10s"
    );
    let r = &gw.wait_audit(1)[0];
    assert!(r["error"].as_str().unwrap().contains("stream idle timeout"), "{r}");
    assert_eq!(r["complete"], false);
    assert_eq!(
        gw.metric("tollgate_request_errors_total{reason=\"stream_idle_timeout\"}"),
        1
    );
}
