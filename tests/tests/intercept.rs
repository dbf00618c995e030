//! L7 interception end to end: real eBPF capture, TLS terminated with the node CA, requests
//! routed and signed with the real credential, answered by fake providers that speak the
//! providers' wire formats. Clients are unmodified: curl and the official OpenAI Python SDK
//! with its default base URL; `api.openai.com` resolves to a loopback address through a
//! private mount namespace's `/etc/hosts`.

use std::time::Duration;

use serde_json::Value;
use tests::{
    fake_llm::{FakeLlm, Script, TestCa},
    l7::{curl, openai_setup, wait_records, SECRET_1, SECRET_2},
    privileged, run, sdk_python, Cgroup, GatewayBuilder, TempDir,
};

const ANTHROPIC_SECRET: &str = "sk-ant-real-SECRET-0003";

#[test]
fn curl_over_http1_and_h2_is_intercepted_and_signed_with_the_real_key() {
    if !privileged("curl_over_http1_and_h2_is_intercepted_and_signed_with_the_real_key") {
        return;
    }
    let (s, builder) = openai_setup(1, "curl-l7", "");
    let gw = builder
        .yaml("routes:\n  - name: mini\n    match: { models: [\"gpt-4o*\"] }\n    backends: [{ backend: primary, model: gpt-4o-mini }]\n")
        .start();
    let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
    let url = "https://api.openai.com/v1/chat/completions";
    let auth = "authorization: Bearer sk-client-dummy";
    let ct = "content-type: application/json";
    let (status, v) = curl(
        &s.cg,
        &s.dir,
        "api.openai.com",
        &s.captured_ip,
        &gw.ca_cert(),
        &["--http1.1", "-H", auth, "-H", ct, "-d", body, url],
    );
    assert_eq!(status, "200 1.1", "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], "hello from primary");
    let (status, v) = curl(
        &s.cg,
        &s.dir,
        "api.openai.com",
        &s.captured_ip,
        &gw.ca_cert(),
        &["--http2", "-H", auth, "-H", ct, "-d", body, url],
    );
    assert_eq!(status, "200 2", "{v}");

    let received = s.primary.received();
    assert_eq!(received.len(), 2);
    for r in &received {
        assert_eq!(
            r.headers["authorization"],
            format!("Bearer {SECRET_1}"),
            "the backend's key is injected"
        );
        assert_eq!(r.body["model"], "gpt-4o-mini", "the route's model override is applied");
        assert_eq!(r.body["messages"][0]["content"], "hi", "the rest of the body is intact");
        assert_eq!(r.path, "/v1/chat/completions");
    }
    assert!(s.secondary.received().is_empty());

    // The connection log shows interception with the SNI; the request log the route,
    // backend and credential fingerprint.
    let conn = gw.wait_record("intercepted", |r| r["l7"] == true);
    assert_eq!(conn["sni"], "api.openai.com");
    assert_eq!(conn["workload"]["comm"], "curl");
    let records = wait_records(&gw, 2);
    assert_eq!(records.len(), 2, "{records:?}");
    let r = &records[0];
    assert_eq!(
        (r["route"].as_str(), r["backend"].as_str()),
        (Some("mini"), Some("primary"))
    );
    assert_eq!(
        (r["model"].as_str(), r["served_model"].as_str()),
        (Some("gpt-4o"), Some("gpt-4o-mini"))
    );
    assert_eq!(r["credential"]["name"], "openai-key");
    assert!(r["credential"]["fingerprint"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(r["rule"], "route");
    assert_eq!(r["destination"]["sni"], "api.openai.com");
    assert_eq!(r["workload"]["comm"], "curl");
    assert_eq!(r["attempts"][0]["backend"], "primary");
    assert_eq!(r["attempts"][0]["status"], 200);
    assert_eq!(r["status"], 200);
    assert_eq!(r["complete"], true);

    // No secret anywhere: logs, connection records, metrics, effective config.
    let (_, metrics) = gw.admin_get("/metrics");
    let (_, config) = gw.admin_get("/config");
    let records = format!("{:?}", gw.records());
    for (what, text) in [
        ("log", gw.log()),
        ("metrics", metrics),
        ("config", config),
        ("records", records),
    ] {
        assert!(
            !text.contains(SECRET_1) && !text.contains("sk-real"),
            "secret found in {what}"
        );
    }
    // The node CA is served for distribution.
    let (status, pem) = gw.admin_get("/ca.crt");
    assert_eq!(status, 200);
    assert_eq!(pem, std::fs::read_to_string(gw.ca_cert()).unwrap());
}

#[test]
fn the_openai_python_sdk_works_unmodified_streaming_and_not() {
    if !privileged("the_openai_python_sdk_works_unmodified_streaming_and_not") {
        return;
    }
    let (s, builder) = openai_setup(2, "sdk", "");
    let gw = builder.start();
    let sdk = |args: &[&str]| -> Value {
        let mut cmd =
            s.cg.command_with_hosts(&s.dir, &[("api.openai.com", &s.captured_ip)], sdk_python());
        cmd.env("SSL_CERT_FILE", gw.ca_cert())
            .arg(tests::workspace().join("tests/clients/openai_client.py"))
            .args(args);
        let out = run(cmd, Duration::from_secs(60));
        let stdout = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}\n{}", String::from_utf8_lossy(&out.stderr), gw.log()))
    };
    let v = sdk(&["chat", "gpt-4o-mini"]);
    assert_eq!(v["content"], "hello from primary", "{v}");
    assert_eq!(v["usage"]["total_tokens"], 13);

    let gate = s.dir.path("gate");
    s.primary.set_script(Script {
        gate: Some(gate.clone()),
        ..Default::default()
    });
    let v = sdk(&["stream", "gpt-4o-mini", gate.to_str().unwrap()]);
    assert_eq!(v["content"], "hello from primary", "{v}");
    let received = s.primary.received();
    let stream_req = received.last().unwrap();
    assert_eq!(stream_req.body["stream"], true);
    assert_eq!(
        stream_req.gate_opened(),
        Some(true),
        "the SDK saw the first chunk while the fake still held the last one back: not buffered"
    );
    for r in &received {
        assert_eq!(r.headers["authorization"], format!("Bearer {SECRET_1}"));
        assert!(
            r.headers["user-agent"].contains("OpenAI/Python"),
            "the real SDK: {:?}",
            r.headers["user-agent"]
        );
    }
    let records = wait_records(&gw, 2);
    assert!(
        records.iter().any(|r| r["stream"] == true && r["complete"] == true),
        "{records:?}"
    );
}

#[test]
fn anthropic_messages_get_the_x_api_key_and_anthropic_error_shapes() {
    if !privileged("anthropic_messages_get_the_x_api_key_and_anthropic_error_shapes") {
        return;
    }
    let dir = TempDir::new("anthropic");
    let ca = TestCa::new(&dir.0, "fake");
    let claude = FakeLlm::start("claude", "127.20.3.2", Some(ca.server_config(&["127.20.3.2"])));
    let key = dir.path("anthropic-key");
    std::fs::write(&key, ANTHROPIC_SECRET).unwrap();
    let cg = Cgroup::new("anthropic");
    let gw = GatewayBuilder::new(&cg)
        .llm_provider("anthropic", &["api.anthropic.com"], &["127.20.3.1"], &[443], &["schema: anthropic"])
        .yaml(&format!(
            "backends:\n  - name: claude\n    url: {}\n    schema: anthropic\n    credential: ant\n    caFile: {}\n\
             credentials:\n  - name: ant\n    kind: xApiKey\n    file: {}\n\
             routes:\n  - name: claude-models\n    match: {{ models: [\"claude-*\"] }}\n    backends: [{{ backend: claude }}]\n",
            claude.url(true),
            ca.pem_path.display(),
            key.display()
        ))
        .start();
    let headers = [
        "-H",
        "x-api-key: sk-ant-client-dummy",
        "-H",
        "anthropic-version: 2023-06-01",
        "-H",
        "content-type: application/json",
    ];
    let url = "https://api.anthropic.com/v1/messages";
    let mut args = headers.to_vec();
    args.extend([
        "-d",
        r#"{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}"#,
        url,
    ]);
    let (status, v) = curl(&cg, &dir, "api.anthropic.com", "127.20.3.1", &gw.ca_cert(), &args);
    assert!(status.starts_with("200"), "{status} {v}");
    assert_eq!(v["content"][0]["text"], "hello from claude");
    let r = &claude.received()[0];
    assert_eq!(r.headers["x-api-key"], ANTHROPIC_SECRET);
    assert!(!r.headers.contains_key("authorization"));
    assert_eq!(
        r.headers["anthropic-version"], "2023-06-01",
        "other headers pass through"
    );

    // A model no route serves, and no default backend: 404 in Anthropic's error shape.
    let mut args = headers.to_vec();
    args.extend(["-d", r#"{"model":"gpt-4o","max_tokens":64,"messages":[]}"#, url]);
    let (status, v) = curl(&cg, &dir, "api.anthropic.com", "127.20.3.1", &gw.ca_cert(), &args);
    assert!(status.starts_with("404"), "{status} {v}");
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "not_found_error");
    assert!(v["error"]["message"].as_str().unwrap().contains("no route"), "{v}");
    assert_eq!(claude.received().len(), 1);
}

#[test]
fn bad_input_gets_clear_errors_in_the_clients_shape_and_is_recorded() {
    if !privileged("bad_input_gets_clear_errors_in_the_clients_shape_and_is_recorded") {
        return;
    }
    let closed = std::net::TcpListener::bind("127.20.4.9:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let nowhere = format!("  - name: nowhere\n    url: https://127.20.4.9:{closed_port}\n");
    let (s, builder) = openai_setup(4, "badinput", &nowhere);
    let gw = builder
        .yaml(
            "proxy:\n  maxRequestBody: 1024\nroutes:\n  - name: slow\n    match: { models: [slow] }\n    backends: [{ backend: secondary }]\n    timeout: 300ms\n\
             \x20 - name: down\n    match: { models: [down] }\n    backends: [{ backend: nowhere }]\n",
        )
        .start();
    s.secondary.set_script(Script {
        delay: Some(Duration::from_secs(3)),
        ..Default::default()
    });
    let url = "https://api.openai.com/v1/chat/completions";
    let ct = "content-type: application/json";
    let post = |data: &str| {
        curl(
            &s.cg,
            &s.dir,
            "api.openai.com",
            &s.captured_ip,
            &gw.ca_cert(),
            &["-H", ct, "-d", data, url],
        )
    };

    let (status, v) = post(r#"{"model": "gpt-4o", "messages": [}"#);
    assert!(status.starts_with("400"), "{status}");
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("not valid JSON"),
        "{v}"
    );

    let big = format!(
        r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(4096)
    );
    let (status, v) = post(&big);
    assert!(status.starts_with("413"), "{status} {v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("1024"), "{v}");

    let (status, v) = post(r#"{"model":"down","messages":[]}"#);
    assert!(status.starts_with("502"), "{status} {v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("nowhere"), "{v}");

    let (status, v) = post(r#"{"model":"slow","messages":[]}"#);
    assert!(status.starts_with("504"), "{status} {v}");

    // Garbage after the TLS handshake: the connection is closed, the gateway carries on.
    let script = format!(
        "import socket, ssl\nctx = ssl.create_default_context(cafile='{}')\ns = ctx.wrap_socket(socket.create_connection(('api.openai.com', 443)), server_hostname='api.openai.com')\n\
         s.sendall(b'\\x00\\x01\\x02 not http at all\\r\\n\\r\\n')\ndata = s.recv(4096)\nwhile data:\n    data = s.recv(4096)\nprint('closed')\n",
        gw.ca_cert().display()
    );
    let mut cmd =
        s.cg.command_with_hosts(&s.dir, &[("api.openai.com", &s.captured_ip)], "python3");
    cmd.args(["-c", &script]);
    let out = run(cmd, Duration::from_secs(30));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "closed",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (status, _) = post(r#"{"model":"gpt-4o","messages":[]}"#);
    assert!(status.starts_with("200"), "still serving after bad input: {status}");
    let records = wait_records(&gw, 5);
    let statuses: Vec<u64> = records.iter().filter_map(|r| r["status"].as_u64()).collect();
    for code in [400, 413, 502, 504, 200] {
        assert!(statuses.contains(&code), "a record for {code}: {statuses:?}");
    }
    assert!(!gw.log().contains("panicked"));
}

#[test]
fn a_non_governed_sni_on_a_captured_address_is_relayed_untouched() {
    if !privileged("a_non_governed_sni_on_a_captured_address_is_relayed_untouched") {
        return;
    }
    let dir = TempDir::new("othersni");
    let ca = TestCa::new(&dir.0, "other");
    // A real TLS server for another name on the same captured address and port.
    let other = FakeLlm::start_on("other", "127.20.5.1:443", Some(ca.server_config(&["other.example"])));
    let cg = Cgroup::new("othersni");
    let gw = GatewayBuilder::new(&cg)
        .llm_provider("openai", &["api.openai.com"], &["127.20.5.1"], &[443], &[])
        .start();
    let (status, v) = curl(
        &cg,
        &dir,
        "other.example",
        "127.20.5.1",
        &ca.pem_path,
        &["https://other.example/v1/models"],
    );
    assert!(status.starts_with("200"), "{status} {v}");
    assert_eq!(
        v["data"][0]["owned_by"], "other",
        "answered by the real server, verified with its own CA"
    );
    let r = gw.wait_record("relayed", |r| r["sni"] == "other.example");
    assert_eq!(r["l7"], false);
    assert_eq!(r["outcome"], "completed");
    assert_eq!(other.received().len(), 1);
}

#[test]
fn weights_split_traffic_and_credentials_and_config_reload_live() {
    if !privileged("weights_split_traffic_and_credentials_and_config_reload_live") {
        return;
    }
    let (s, builder) = openai_setup(6, "weights", "");
    let routes = "routes:\n  - name: split\n    backends: [{ backend: primary, weight: 3 }, { backend: secondary, weight: 1 }]\n";
    let gw = builder.yaml(routes).start();
    // 300 requests on one kept-alive TLS connection from Python's standard library.
    let many = |n: usize| -> (usize, usize) {
        let script = format!(
            "import http.client, json, ssl\nctx = ssl.create_default_context(cafile='{}')\nc = http.client.HTTPSConnection('api.openai.com', context=ctx)\n\
             counts = {{}}\nfor i in range({n}):\n    c.request('POST', '/v1/chat/completions', body=json.dumps({{'model':'gpt-4o','messages':[]}}), headers={{'content-type':'application/json'}})\n\
             \x20   r = json.loads(c.getresponse().read())\n    k = r['choices'][0]['message']['content']\n    counts[k] = counts.get(k, 0) + 1\nprint(json.dumps(counts))\n",
            gw.ca_cert().display()
        );
        let mut cmd =
            s.cg.command_with_hosts(&s.dir, &[("api.openai.com", &s.captured_ip)], "python3");
        cmd.args(["-c", &script]);
        let out = run(cmd, Duration::from_secs(120));
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        (
            v["hello from primary"].as_u64().unwrap_or(0) as usize,
            v["hello from secondary"].as_u64().unwrap_or(0) as usize,
        )
    };
    let (a, b) = many(300);
    assert_eq!(a + b, 300);
    let share = a as f64 / 300.0;
    assert!((0.64..=0.86).contains(&share), "weight 3:1 gave {a}:{b}");

    // Credential rotation: the file changes, the next requests carry the new key.
    std::fs::write(&s.secret_file, SECRET_2).unwrap();
    let start = std::time::Instant::now();
    loop {
        many(1);
        let last = s
            .primary
            .received()
            .into_iter()
            .chain(s.secondary.received())
            .last()
            .unwrap();
        if last.headers["authorization"] == format!("Bearer {SECRET_2}") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "rotated key not used after 10s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // An invalid config is rejected and the old one keeps serving; a valid one applies.
    let good = gw.config_yaml().to_string();
    gw.write_config(&good.replace(
        "routes:",
        "routes:\n  - name: broken\n    backends: [{ backend: missing }]",
    ));
    let start = std::time::Instant::now();
    loop {
        let (_, body) = gw.admin_get("/readyz");
        let v: Value = serde_json::from_str(&body).unwrap();
        if let Some(e) = v["configError"].as_str() {
            assert!(e.contains("no backend named \"missing\""), "{e}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "reload error not reported: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (a, b) = many(20);
    assert_eq!(a + b, 20, "still served by the last good config");
    assert!(gw.log().contains("config reload rejected"));
    assert_eq!(gw.metric("tollgate_config_synchronized"), 0);

    gw.write_config(&good.replace("{ backend: primary, weight: 3 }, ", ""));
    let start = std::time::Instant::now();
    loop {
        let (a, b) = many(10);
        if a == 0 && b == 10 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "new routes not applied: {a}:{b}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(gw.metric("tollgate_config_synchronized"), 1);
    for r in s.primary.received().iter().chain(s.secondary.received().iter()) {
        assert!(!r.headers["authorization"].contains("dummy"));
    }
    let log = gw.log();
    assert!(!log.contains(SECRET_1) && !log.contains(SECRET_2));
}
