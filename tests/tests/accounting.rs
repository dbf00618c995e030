//! Accounting end to end: token counts and costs in the audit record, streams (with and
//! without the client asking for usage, cut short), metrics, label cardinality, workload
//! identity, `tollgate usage`. Every audit record any test writes is also validated against
//! `docs/audit.schema.json` when its gateway stops.

use std::time::Duration;

use serde_json::Value;
use tests::{
    fake_llm::{FakeLlm, Script, TestCa},
    fake_media::sha256_hex,
    l7::{chat_curl, curl, openai_sdk, openai_setup},
    privileged, run, tollgate_bin, Cgroup, GatewayBuilder, TempDir,
};

/// The fake answers 9 prompt + 4 completion tokens; gpt-4o-mini costs $0.15 / $0.60 per 1M:
/// 9 * 150 + 4 * 600 nano-dollars.
const MINI_COST_NANO: u64 = 9 * 150 + 4 * 600;

#[test]
fn stream_tokens_match_the_sdk_and_the_stream_is_untouched_when_usage_was_not_asked() {
    if !privileged("stream_tokens_match_the_sdk_and_the_stream_is_untouched_when_usage_was_not_asked") {
        return;
    }
    let (s, builder) = openai_setup(11, "acct-stream", "");
    let gw = builder.start();

    // 1. The client asks for usage: the SDK's own numbers equal the record's.
    let v = openai_sdk(&s, &gw, &["stream_usage", "gpt-4o-mini"]);
    let sdk_usage = &v["usage"];
    assert_eq!(sdk_usage["prompt_tokens"], 9, "{v}");
    let records = gw.wait_audit(1);
    let r = &records[0];
    assert_eq!(r["tokens"]["input"], sdk_usage["prompt_tokens"]);
    assert_eq!(r["tokens"]["output"], sdk_usage["completion_tokens"]);
    assert_eq!(r["usage_status"], "complete");
    assert_eq!(r["usage_requested_by_gateway"], false);
    assert_eq!(r["cost_nano_usd"], MINI_COST_NANO);
    assert_eq!(r["cost_usd"], "0.00000375");
    assert!(r["ttft_ms"].as_f64().unwrap() > 0.0);

    // 2. It does not: Tollgate asks upstream, counts, and the client never sees the extra.
    let v = openai_sdk(
        &s,
        &gw,
        &["stream", "gpt-4o-mini", s.dir.path("gate-unused").to_str().unwrap()],
    );
    assert_eq!(v["content"], "hello from primary");
    let records = gw.wait_audit(2);
    let r = &records[1];
    assert_eq!(r["usage_requested_by_gateway"], true);
    assert_eq!(
        (r["tokens"]["input"].as_u64(), r["tokens"]["output"].as_u64()),
        (Some(9), Some(4))
    );
    let upstream = s.primary.received();
    assert_eq!(
        upstream[1].body["stream_options"]["include_usage"], true,
        "asked upstream on the client's behalf"
    );

    // 3. Byte for byte: the stream through Tollgate equals the fake's own stream without usage.
    let body = r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let mut direct = std::process::Command::new("curl");
    direct
        .args(["-sS", "-N", "--cacert"])
        .arg(s.dir.0.join("fake-ca.pem"))
        .args(["-H", "content-type: application/json", "-d", body])
        .arg(format!("{}/v1/chat/completions", s.primary.url(true)));
    let direct = run(direct, Duration::from_secs(20)).stdout;
    let (_, through) = curl(
        &s.cg,
        &s.dir,
        "api.openai.com",
        &s.captured_ip,
        &gw.ca_cert(),
        &[
            "-N",
            "-H",
            "content-type: application/json",
            "-d",
            body,
            "https://api.openai.com/v1/chat/completions",
        ],
    );
    let through = match through {
        Value::String(s) => s,
        other => other.to_string(),
    };
    assert!(!direct.is_empty());
    assert_eq!(
        through,
        String::from_utf8_lossy(&direct),
        "the client sees exactly the provider's stream"
    );
    assert!(!through.contains("usage"));
}

#[test]
fn cut_streams_still_leave_one_record_with_partial_usage() {
    if !privileged("cut_streams_still_leave_one_record_with_partial_usage") {
        return;
    }
    let dir = TempDir::new("acct-cut");
    let ca = TestCa::new(&dir.0, "fake");
    let claude = FakeLlm::start("claude", "127.20.12.2", Some(ca.server_config(&["127.20.12.2"])));
    let cg = Cgroup::new("acct-cut");
    let gw = GatewayBuilder::new(&cg)
        .llm_provider(
            "anthropic",
            &["api.anthropic.com"],
            &["127.20.12.1"],
            &[443],
            &["schema: anthropic", "backend: claude"],
        )
        .yaml(&format!(
            "backends:\n  - name: claude\n    url: {}\n    schema: anthropic\n    caFile: {}\n",
            claude.url(true),
            ca.pem_path.display()
        ))
        .start();
    let body =
        r#"{"model":"claude-sonnet-4-5","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let stream_curl = |extra: &[&str]| {
        let mut cmd = cg.command_with_hosts(&dir, &[("api.anthropic.com", "127.20.12.1")], "curl");
        cmd.args(["-sS", "-N", "--cacert"]).arg(gw.ca_cert()).args(extra).args([
            "-H",
            "content-type: application/json",
            "-d",
            body,
            "https://api.anthropic.com/v1/messages",
        ]);
        run(cmd, Duration::from_secs(30))
    };

    // The client goes away mid-stream (the fake holds the rest back behind a gate nobody opens).
    claude.set_script(Script {
        gate: Some(dir.path("never")),
        ..Default::default()
    });
    let out = stream_curl(&["--max-time", "1"]);
    assert!(!out.status.success(), "curl gave up mid-stream");
    assert!(String::from_utf8_lossy(&out.stdout).contains("message_start"));
    let records = gw.wait_audit(1);
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r["complete"], false);
    assert_eq!(r["usage_status"], "partial");
    assert_eq!(r["tokens"]["input"], 10, "input is known from message_start");
    assert!(r["error"].as_str().unwrap().contains("not completed"), "{r}");

    // The upstream breaks mid-stream: the client sees the error, the record says so.
    claude.set_script(Script {
        reset_after_first: true,
        ..Default::default()
    });
    let out = stream_curl(&[]);
    assert!(!out.status.success(), "the client must see the broken stream");
    let records = gw.wait_audit(2);
    assert_eq!(records.len(), 2);
    let r = &records[1];
    assert_eq!(r["complete"], false);
    assert_eq!(r["usage_status"], "partial");
    assert!(r["error"].as_str().unwrap().contains("upstream body"), "{r}");
}

#[test]
fn metrics_count_known_requests_and_model_labels_stay_bounded() {
    if !privileged("metrics_count_known_requests_and_model_labels_stay_bounded") {
        return;
    }
    let (s, builder) = openai_setup(13, "acct-metrics", "");
    let gw = builder.start();
    // 3 priced requests, then a flood of 150 distinct made-up model names.
    let script = format!(
        "import http.client, json, ssl\nctx = ssl.create_default_context(cafile='{}')\nc = http.client.HTTPSConnection('api.openai.com', context=ctx)\n\
         models = ['gpt-4o-mini'] * 3 + ['flood-model-%d' % i for i in range(150)]\nfor m in models:\n\
         \x20   c.request('POST', '/v1/chat/completions', body=json.dumps({{'model': m, 'messages': []}}), headers={{'content-type': 'application/json'}})\n\
         \x20   assert c.getresponse().read()\nprint('done')\n",
        gw.ca_cert().display()
    );
    let mut cmd =
        s.cg.command_with_hosts(&s.dir, &[("api.openai.com", &s.captured_ip)], "python3");
    cmd.args(["-c", &script]);
    let out = run(cmd, Duration::from_secs(120));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "done",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records = gw.wait_audit(153);
    assert_eq!(records.len(), 153);
    let flood: Vec<&Value> = records
        .iter()
        .filter(|r| r["model"].as_str().unwrap_or("").starts_with("flood"))
        .collect();
    assert!(
        flood
            .iter()
            .all(|r| r["cost_usd"].is_null() && r["tokens"]["input"] == 9),
        "unpriced: cost null, tokens kept"
    );

    let (_, metrics) = gw.admin_get("/metrics");
    let line = |prefix: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no metric line {prefix}\n{metrics}"))
    };
    let mini = "gen_ai_request_model=\"gpt-4o-mini\"";
    let input_sum = format!("gen_ai_client_token_usage_sum{{gen_ai_operation_name=\"chat_completions\",gen_ai_provider_name=\"openai\",{mini},gen_ai_token_type=\"input\"}}");
    assert_eq!(line(&input_sum), 27.0);
    let input_count = input_sum.replace("_sum{", "_count{");
    assert_eq!(line(&input_count), 3.0);
    let cost = format!(
        "tollgate_cost_nanodollars_total{{gen_ai_operation_name=\"chat_completions\",gen_ai_provider_name=\"openai\",{mini},route=\"none\",backend=\"primary\",workload=\"python3\",namespace=\"none\",pod=\"none\"}}"
    );
    assert_eq!(line(&cost), (3 * MINI_COST_NANO) as f64);
    assert_eq!(line("tollgate_cost_unknown_model_total{provider=\"openai\"}"), 150.0);
    assert!(
        !metrics.contains("flood-model"),
        "client-chosen model names never become label values"
    );
    let models: std::collections::BTreeSet<&str> = metrics
        .lines()
        .filter_map(|l| l.split("gen_ai_request_model=\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(models.into_iter().collect::<Vec<_>>(), vec!["gpt-4o-mini", "other"]);

    // `tollgate usage` reads the same log.
    let out = run(
        {
            let mut c = std::process::Command::new(tollgate_bin());
            c.args(["usage", "--since", "1h", "--by", "model", "--json", "--audit-log"])
                .arg(gw.audit_path());
            c
        },
        Duration::from_secs(20),
    );
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mini_row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "gpt-4o-mini")
        .unwrap();
    assert_eq!(
        (mini_row["requests"].as_u64(), mini_row["input_tokens"].as_u64()),
        (Some(3), Some(27))
    );
    assert_eq!(mini_row["cost_usd"], "0.00001125");
    let out = run(
        {
            let mut c = std::process::Command::new(tollgate_bin());
            c.args(["usage", "--since", "1h", "--audit-log"]).arg(gw.audit_path());
            c
        },
        Duration::from_secs(20),
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("workload") && table.contains("python3"), "{table}");
}

#[test]
fn a_kubepods_shaped_cgroup_yields_pod_uid_and_container_id() {
    if !privileged("a_kubepods_shaped_cgroup_yields_pod_uid_and_container_id") {
        return;
    }
    let (s, builder) = openai_setup(14, "acct-pod", "");
    let gw = builder.start();
    let pod_uid = "0f8a4e6c-1b2d-4c3e-9f5a-6b7c8d9e0f1a";
    let container = "3f1c2bd0e7a9a5b1c4d8e6f7a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9";
    let leaf = s.cg.path.join(format!(
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{container}.scope",
        pod_uid.replace('-', "_")
    ));
    std::fs::create_dir_all(&leaf).unwrap();
    let leaf_cg = Cgroup { path: leaf.clone() };
    let (status, _) = curl(
        &leaf_cg,
        &s.dir,
        "api.openai.com",
        &s.captured_ip,
        &gw.ca_cert(),
        &[
            "-H",
            "content-type: application/json",
            "-d",
            r#"{"model":"gpt-4o-mini","messages":[]}"#,
            "https://api.openai.com/v1/chat/completions",
        ],
    );
    assert!(status.starts_with("200"), "{status}");
    let r = &gw.wait_audit(1)[0];
    assert_eq!(r["workload"]["pod_uid"], pod_uid);
    assert_eq!(r["workload"]["container_id"], container);
    assert_eq!(r["workload"]["container_runtime"], "containerd");
    assert!(r["workload"]["cgroup"].as_str().unwrap().ends_with(".scope"));
    drop(leaf_cg);
    let mut p = leaf.as_path();
    while let Some(parent) = p.parent() {
        if parent == s.cg.path {
            break;
        }
        let _ = std::fs::remove_dir(parent);
        p = parent;
    }
}

#[test]
fn traces_join_the_clients_trace_propagate_upstream_and_export_over_otlp() {
    if !privileged("traces_join_the_clients_trace_propagate_upstream_and_export_over_otlp") {
        return;
    }
    let collector = FakeLlm::start("collector", "127.20.15.9", None);
    let (s, builder) = openai_setup(15, "acct-trace", "");
    let gw = builder
        .yaml(&format!(
            "traces:\n  otlpEndpoint: http://{}/v1/traces\n",
            collector.addr
        ))
        .start();
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let (status, _) = curl(
        &s.cg,
        &s.dir,
        "api.openai.com",
        &s.captured_ip,
        &gw.ca_cert(),
        &[
            "-H",
            &format!("traceparent: 00-{trace}-00f067aa0ba902b7-01"),
            "-H",
            "content-type: application/json",
            "-d",
            r#"{"model":"gpt-4o-mini","messages":[]}"#,
            "https://api.openai.com/v1/chat/completions",
        ],
    );
    assert!(status.starts_with("200"), "{status}");
    let r = gw.wait_audit(1)[0].clone();
    assert_eq!(r["trace_id"], trace, "the client's trace is joined");
    let upstream = &s.primary.received()[0];
    let span = r["span_id"].as_str().unwrap();
    assert_eq!(
        upstream.headers["traceparent"],
        format!("00-{trace}-{span}-01"),
        "propagated with our span as parent"
    );

    let start = std::time::Instant::now();
    let exported = loop {
        if let Some(req) = collector.received().into_iter().find(|r| r.path == "/v1/traces") {
            break req;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no span exported");
        std::thread::sleep(Duration::from_millis(100));
    };
    let spans = &exported.body["resourceSpans"][0]["scopeSpans"][0]["spans"];
    let sp = &spans[0];
    assert_eq!(sp["traceId"], trace);
    assert_eq!(sp["spanId"], span);
    assert_eq!(sp["parentSpanId"], "00f067aa0ba902b7");
    let attr = |k: &str| {
        sp["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == k)
            .map(|a| a["value"].clone())
    };
    assert_eq!(attr("gen_ai.operation.name").unwrap()["stringValue"], "chat");
    assert_eq!(attr("gen_ai.request.model").unwrap()["stringValue"], "gpt-4o-mini");
    assert_eq!(attr("gen_ai.usage.input_tokens").unwrap()["intValue"], "9");
    assert_eq!(attr("gen_ai.provider.name").unwrap()["stringValue"], "openai");
}

/// Schema 2: the record names the configuration in force (generation and hash, with its own
/// `config` record, secret-free), the policy it was held to (timeouts, retries, the ordered
/// plan, every limit with what is left after the request, the price and where it came from),
/// and its id is the one the client got in `x-tollgate-request-id`.
#[test]
fn the_record_names_the_config_and_policy_in_force_and_the_client_sees_its_id() {
    if !privileged("the_record_names_the_config_and_policy_in_force_and_the_client_sees_its_id") {
        return;
    }
    let policy = "routes:\n  - name: mini\n    match: { models: [\"gpt-4o-mini\"] }\n    backends:\n      - { backend: primary }\n      - { backend: secondary, priority: 1 }\n    retry: { attempts: 2, statuses: [409] }\n    timeouts: { firstByte: 20s, idle: 15s, total: 1m }\n\
limits:\n  - name: team\n    key: [workload]\n    requestsPerMinute: 50\n    tokensPerMinute: 100000\n    outputEstimate: 500\n";
    let (s, builder) = openai_setup(16, "acct-policy", "");
    let gw = builder.yaml(policy).start();
    let headers = s.dir.path("headers");
    let send = |model: &str| {
        let body = format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#);
        let (status, _) = chat_curl(&s, &gw, &body, &["-D", headers.to_str().unwrap()]);
        let id = std::fs::read_to_string(&headers)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("x-tollgate-request-id: ").map(|v| v.trim().to_string()))
            .expect("x-tollgate-request-id in the response");
        (status, id)
    };

    let (status, id) = send("gpt-4o-mini");
    assert!(status.starts_with("200"), "{status}");
    let r = gw.wait_audit(1).remove(0);
    assert_eq!(r["request_id"], id.as_str(), "the header names the record");
    assert_eq!(r["schema_version"], 2);
    let g = &r["gateway"];
    assert_eq!(g["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(g["config_generation"], 1);
    assert!(g["node"].as_str().is_some_and(|n| !n.is_empty()), "{g}");
    // The config record of generation 1 came first, with the hash the request names.
    let lines = gw.audit_lines();
    let configs: Vec<&Value> = lines.iter().filter(|l| l["record"] == "config").collect();
    assert_eq!(configs.len(), 1, "{lines:?}");
    let first = lines.iter().find(|l| l["record"] != "checkpoint").unwrap();
    assert_eq!(first["record"], "config", "before any request");
    assert_eq!(configs[0]["gateway"], *g);
    let normalised = configs[0]["config"].to_string();
    assert_eq!(
        g["config_sha256"],
        sha256_hex(normalised.as_bytes()),
        "the hash is the record's config"
    );
    assert_eq!(configs[0]["config"]["routes"][0]["name"], "mini");
    let secret = std::fs::read_to_string(&s.secret_file).unwrap();
    assert!(
        !lines.iter().any(|l| l.to_string().contains(secret.trim())),
        "no credential value"
    );

    let p = &r["policy"];
    assert_eq!(p["timeouts"]["first_byte_ms"], 20_000, "{p}");
    assert_eq!(p["timeouts"]["idle_ms"], 15_000);
    assert_eq!(p["timeouts"]["total_ms"], 60_000);
    assert_eq!(p["retry"]["attempts"], 2);
    assert_eq!(p["retry"]["statuses"], serde_json::json!([409]));
    assert_eq!(p["plan"], serde_json::json!(["primary", "secondary"]), "tier by tier");
    let limit = |kind: &str| {
        p["limits"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} limit in {p}"))
            .clone()
    };
    let requests = limit("requests");
    assert_eq!(
        (
            &requests["name"],
            &requests["window"],
            &requests["used"],
            &requests["remaining"]
        ),
        (
            &Value::from("team"),
            &Value::from("minute"),
            &Value::from(1),
            &Value::from(49)
        )
    );
    // Tokens: reserved as an estimate at admission, then corrected to the 13 really used.
    let tokens = limit("tokens");
    assert_eq!(tokens["used"], 13, "{tokens}");
    assert_eq!(tokens["remaining"], 100_000 - 13);
    assert!(tokens["window_left_s"].as_u64().unwrap() <= 60);
    let price = &p["price"];
    assert_eq!(price["entry"], "gpt-4o-mini");
    assert_eq!(price["source"], "table");
    assert_eq!(price["nano_usd_per_token"]["input"], 150);
    assert!(price["as_of"].is_string());

    // A second request counts on: the limits' state is what the store says after it.
    let (_, id2) = send("gpt-4o-mini");
    assert_ne!(id2, id);
    let r2 = gw.wait_audit(2).remove(1);
    assert_eq!(r2["request_id"], id2.as_str());
    let used = |r: &Value, kind: &str| {
        r["policy"]["limits"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["kind"] == kind)
            .unwrap()["used"]
            .clone()
    };
    assert_eq!(
        (used(&r2, "requests"), used(&r2, "tokens")),
        (Value::from(2), Value::from(26))
    );

    // A reload is a new generation with its own config record; a config price is named so.
    let reloaded = format!(
        "{}pricing:\n  gpt-4o-mini: {{input: \"1.00\", output: \"2.00\"}}\n",
        gw.config_yaml()
    );
    gw.reload(&reloaded);
    send("gpt-4o-mini");
    let r3 = gw.wait_audit(3).remove(2);
    assert_eq!(r3["gateway"]["config_generation"], 2);
    assert_ne!(r3["gateway"]["config_sha256"], g["config_sha256"]);
    let configs: Vec<Value> = gw
        .audit_lines()
        .into_iter()
        .filter(|l| l["record"] == "config")
        .collect();
    assert_eq!(configs.len(), 2);
    assert_eq!(configs[1]["gateway"], r3["gateway"]);
    assert_eq!(r3["policy"]["price"]["source"], "config");
    assert_eq!(r3["policy"]["price"]["as_of"], Value::Null);
    assert_eq!(r3["policy"]["price"]["nano_usd_per_token"]["input"], 1000);
    assert_eq!(r3["cost_nano_usd"], 9 * 1000 + 4 * 2000);
}

/// Content capture: a route that captures bodies has them in its records, redacted before they
/// are written: a key and an e-mail address in the prompt, a JSON pointer's value and a
/// pattern's match never reach the disk; a route that does not capture writes no content.
#[test]
fn captured_content_is_redacted_before_it_reaches_the_disk() {
    if !privileged("captured_content_is_redacted_before_it_reaches_the_disk") {
        return;
    }
    let routes = "routes:\n  - name: captured\n    match: { models: [\"gpt-4o-mini\"] }\n    backends: [{ backend: primary }]\n    capture:\n      maxBytes: 4096\n      redact: { patterns: [\"EMP-[0-9]{6}\"], jsonPointers: [\"/user\"] }\n  - name: plain\n    match: { models: [\"gpt-4o\"] }\n    backends: [{ backend: primary }]\n";
    let (s, builder) = openai_setup(17, "acct-content", "");
    let gw = builder.yaml(routes).start();
    let key = "sk-proj-Zq8mW2xR7tY4uI1oP6aS3dF9gH0jK5lL";
    let send = |model: &str| {
        let body = format!(
            r#"{{"model":"{model}","user":"ada-lovelace-7","messages":[{{"role":"user","content":"use {key} for employee EMP-424242, write to ada@example.org"}}]}}"#
        );
        let (status, _) = chat_curl(&s, &gw, &body, &[]);
        assert!(status.starts_with("200"), "{status}");
    };
    send("gpt-4o-mini");
    send("gpt-4o");
    let records = gw.wait_audit(2);
    let on_disk = std::fs::read_to_string(gw.audit_path()).unwrap();
    for secret in [key, "EMP-424242", "ada@example.org", "ada-lovelace-7"] {
        assert!(!on_disk.contains(secret), "{secret} reached the audit log");
        assert!(!gw.log().contains(secret), "{secret} reached Tollgate's log");
    }
    // The backend got the prompt as sent: redaction is for the record only.
    assert!(s.primary.received()[0].body.to_string().contains(key));
    let captured = &records[0]["content"];
    assert_eq!(records[0]["route"], "captured");
    let request = captured["request"].as_str().expect("the request body");
    for marker in [
        "[REDACTED:openai_key]",
        "[REDACTED:pattern0]",
        "[REDACTED:email]",
        "[REDACTED:json_pointer]",
    ] {
        assert!(request.contains(marker), "{marker} in {request}");
    }
    assert!(request.contains("for employee"), "the rest is kept: {request}");
    assert_eq!(captured["redactions"], 4, "{captured}");
    assert!(
        captured["response"].as_str().unwrap().contains("hello from primary"),
        "{captured}"
    );
    assert_eq!(captured["request_truncated"], false);
    assert_eq!(records[1]["route"], "plain");
    assert_eq!(records[1]["content"], Value::Null, "no capture on this route");
    // Bodies stay on disk: the admin port's recent records do not serve them.
    let (code, recent) = gw.admin_get("/api/records");
    assert_eq!(code, 200, "{recent}");
    assert!(
        !recent.contains("for employee") && !recent.contains("REDACTED"),
        "{recent}"
    );
}
