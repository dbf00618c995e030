//! The data plane cannot be talked around, and every request leaves its record: each test here
//! is a hole an adversarial workload could use, tried the way it would (real eBPF capture, an
//! unmodified curl or Python client), and the check that it is closed.

use std::time::Duration;

use serde_json::Value;
use tests::{
    fake_llm::{FakeLlm, Script},
    l7::{curl, openai_setup, OpenAiSetup},
    privileged, run, Gateway,
};

/// `openai` captured at `127.20.N.1:443`; `local` (an in-cluster vLLM: plaintext, no
/// credential) at `127.20.N.4` on ports 8000 and 443, served by a plaintext fake; `blocked`
/// (deny mode) at `127.20.N.6`.
fn two_providers(n: u8, name: &str, extra: &str) -> (OpenAiSetup, FakeLlm, Gateway) {
    let local_ip = format!("127.20.{n}.5");
    let local = FakeLlm::start("local", &local_ip, None);
    let backend = format!("  - name: local\n    url: {}\n", local.url(false));
    let (s, builder) = openai_setup(n, name, &backend);
    let gw = builder
        .llm_provider(
            "local",
            &["llm.local"],
            &[&format!("127.20.{n}.4")],
            &[8000, 443],
            &["backend: local"],
        )
        .named_provider(
            "blocked",
            "deny",
            &["api.blocked.example"],
            &[&format!("127.20.{n}.6")],
            &[443],
        )
        .yaml(extra)
        .start();
    (s, local, gw)
}

fn chat_body() -> &'static str {
    r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#
}

#[test]
fn a_host_or_sni_of_a_provider_that_does_not_claim_the_destination_gets_421() {
    if !privileged("a_host_or_sni_of_a_provider_that_does_not_claim_the_destination_gets_421") {
        return;
    }
    let (s, local, gw) = two_providers(60, "trust-421", "");
    let n = 60;
    let ct = "content-type: application/json";
    // Plaintext to the local model's address, naming OpenAI (and the deny-mode provider).
    for host in ["api.openai.com", "api.blocked.example"] {
        let (status, v) = curl(
            &s.cg,
            &s.dir,
            "llm.local",
            &format!("127.20.{n}.4"),
            &gw.ca_cert(),
            &[
                "-H",
                &format!("host: {host}"),
                "-H",
                ct,
                "-d",
                chat_body(),
                "http://llm.local:8000/v1/chat/completions",
            ],
        );
        assert_eq!(status, "421 1.1", "{host}: {v}");
        assert_eq!(v["error"]["code"], "misdirected_request", "OpenAI's error shape: {v}");
    }
    // The local model by its own name works (and gets no credential).
    let (status, v) = curl(
        &s.cg,
        &s.dir,
        "llm.local",
        &format!("127.20.{n}.4"),
        &gw.ca_cert(),
        &["-H", ct, "-d", chat_body(), "http://llm.local:8000/v1/chat/completions"],
    );
    assert_eq!(status, "200 1.1", "{v}");
    assert_eq!(local.received().len(), 1);
    assert!(!local.received()[0].headers.contains_key("authorization"));
    // TLS with OpenAI's SNI at the local model's address: terminated (a governed name) only
    // to be refused.
    let (status, v) = curl(
        &s.cg,
        &s.dir,
        "api.openai.com",
        &format!("127.20.{n}.4"),
        &gw.ca_cert(),
        &[
            "-H",
            ct,
            "-d",
            chat_body(),
            "https://api.openai.com/v1/chat/completions",
        ],
    );
    assert_eq!(status, "421 2", "{v}");
    // Domain fronting: OpenAI's SNI at OpenAI's address, another provider's Host.
    let (status, _) = curl(
        &s.cg,
        &s.dir,
        "api.openai.com",
        &s.captured_ip,
        &gw.ca_cert(),
        &[
            "--http1.1",
            "-H",
            "host: llm.local",
            "-H",
            ct,
            "-d",
            chat_body(),
            "https://api.openai.com/v1/chat/completions",
        ],
    );
    assert_eq!(status, "421 1.1");
    assert!(s.primary.received().is_empty(), "OpenAI's backend never saw a request");
    assert!(s.secondary.received().is_empty());

    let records = gw.wait_audit(5);
    let refused: Vec<&Value> = records.iter().filter(|r| r["status"] == 421).collect();
    assert_eq!(refused.len(), 4, "{records:#?}");
    let first = refused[0];
    assert_eq!(first["error_reason"], "misdirected");
    assert_eq!(first["error_side"], "client");
    assert_eq!(first["destination"]["host"], "api.openai.com");
    assert_eq!(first["destination"]["claimed_by"], serde_json::json!(["local"]));
    assert!(first["credential"].is_null() && first["backend"].is_null());
    let e = first["error"].as_str().unwrap();
    assert!(e.contains("api.openai.com") && e.contains("local"), "both names: {e}");
    let tls = refused
        .iter()
        .find(|r| r["destination"]["tls"] == true && r["destination"]["claimed_by"] == serde_json::json!(["local"]))
        .unwrap();
    assert_eq!(tls["destination"]["sni"], "api.openai.com");
}

#[test]
fn operations_other_than_inference_get_no_credential_unless_a_route_allows_them() {
    if !privileged("operations_other_than_inference_get_no_credential_unless_a_route_allows_them") {
        return;
    }
    let (s, builder) = openai_setup(61, "trust-ops", "");
    let gw = builder
        .yaml("routes:\n  - name: files\n    match: { operations: [files] }\n    backends: [{ backend: secondary }]\n")
        .start();
    let url = |p: &str| format!("https://api.openai.com{p}");
    let call = |args: &[&str]| curl(&s.cg, &s.dir, "api.openai.com", &s.captured_ip, &gw.ca_cert(), args);
    for (method, path) in [
        ("GET", "/v1/organization/admin_api_keys"),
        ("POST", "/v1/fine_tuning/jobs"),
        ("POST", "/v1/batches"),
        ("DELETE", "/v1/models/ft:gpt-4o-mini:acme"),
        ("GET", "/v1/chat/completions"),
        ("POST", "/v1/assistants"),
    ] {
        let (status, v) = call(&["-X", method, "-H", "authorization: Bearer sk-dummy", &url(path)]);
        assert_eq!(status, "403 2", "{method} {path}: {v}");
        assert_eq!(v["error"]["type"], "permission_error", "{v}");
    }
    // Paths that could read as another path never get that far.
    let (status, _) = call(&["--path-as-is", &url("/v1/models/../files")]);
    assert_eq!(status, "400 2");
    assert!(s.primary.received().is_empty() && s.secondary.received().is_empty());
    // The route that lists `files` lets uploads through, with the real key.
    let (status, _) = call(&["-X", "POST", "-H", "authorization: Bearer sk-dummy", &url("/v1/files")]);
    assert_ne!(
        status, "403 2",
        "the fake answers what it answers; Tollgate let it through"
    );
    let got = s.secondary.received();
    assert_eq!((got.len(), got[0].path.as_str()), (1, "/v1/files"));
    assert_eq!(
        got[0].headers["authorization"],
        format!("Bearer {}", tests::l7::SECRET_1)
    );

    let records = gw.wait_audit(8);
    let denied: Vec<&Value> = records.iter().filter(|r| r["status"] == 403).collect();
    assert_eq!(denied.len(), 6, "{records:#?}");
    assert!(denied
        .iter()
        .all(|r| r["error_reason"] == "operation_not_allowed" && r["credential"].is_null()));
    let ops: Vec<&str> = denied.iter().map(|r| r["operation"].as_str().unwrap()).collect();
    assert_eq!(
        ops,
        ["admin", "fine_tuning", "batches", "models", "chat_completions", "other"]
    );
    let files = records.iter().find(|r| r["operation"] == "files").unwrap();
    assert_eq!(
        (files["route"].as_str(), files["backend"].as_str()),
        (Some("files"), Some("secondary"))
    );
    // `/config` names credentials, never where their secrets live.
    let (_, config) = gw.admin_get("/config");
    assert!(!config.contains(&s.secret_file.display().to_string()), "{config}");
    assert!(config.contains("\"source\": \"file\""), "{config}");
}

/// Runs `hangup.py PHASE` in the setup's cgroup against api.openai.com.
fn hang_up(s: &OpenAiSetup, gw: &Gateway, phase: &str) -> Value {
    let mut cmd =
        s.cg.command_with_hosts(&s.dir, &[("api.openai.com", &s.captured_ip)], "python3");
    cmd.env("SSL_CERT_FILE", gw.ca_cert())
        .arg(tests::workspace().join("tests/clients/hangup.py"))
        .args([phase, "api.openai.com", "443"]);
    let out = run(cmd, Duration::from_secs(40));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn a_client_that_goes_away_at_any_phase_leaves_exactly_one_record() {
    if !privileged("a_client_that_goes_away_at_any_phase_leaves_exactly_one_record") {
        return;
    }
    let (s, builder) = openai_setup(62, "trust-hangup", "");
    let gw = builder
        .yaml("routes:\n  - name: ha\n    backends: [{ backend: primary }, { backend: secondary, priority: 1 }]\nlimits:\n  - name: tpm\n    tokensPerMinute: 100000\n")
        .start();
    // While waiting for the backend's headers (the backend is slow).
    s.primary.set_script(Script {
        delay: Some(Duration::from_secs(3)),
        ..Default::default()
    });
    let v = hang_up(&s, &gw, "headers");
    assert_eq!(v["got"], "", "nothing answered within a second");
    let r = wait_for(&gw, 1);
    assert_eq!(r[0]["error_reason"], "client_gone", "{:#?}", r[0]);
    assert_eq!(
        (r[0]["error_side"].as_str(), r[0]["status"].as_u64()),
        (Some("client"), Some(499))
    );
    assert_eq!(r[0]["limit"]["outcome"], "allowed");

    // During the body upload.
    s.primary.set_script(Script::default());
    hang_up(&s, &gw, "upload");
    let r = wait_for(&gw, 2);
    assert_eq!(r[1]["error_side"], "client", "{:#?}", r[1]);
    assert!(
        r[1]["attempts"].as_array().unwrap().is_empty(),
        "nothing was sent upstream"
    );

    // During a fallback: the primary fails, the secondary is slow, the client leaves.
    s.primary.set_script(Script {
        status: Some(503),
        ..Default::default()
    });
    s.secondary.set_script(Script {
        delay: Some(Duration::from_secs(3)),
        ..Default::default()
    });
    hang_up(&s, &gw, "headers");
    let r = wait_for(&gw, 3);
    assert_eq!(r[2]["error_reason"], "client_gone", "{:#?}", r[2]);
    assert_eq!(r[2]["attempts"][0]["status"], 503, "the first attempt is in the record");

    // Mid-stream.
    s.primary.set_script(Script::default());
    s.secondary.set_script(Script::default());
    let v = hang_up(&s, &gw, "stream");
    assert!(v["got"].as_str().unwrap().contains("200"), "{v}");
    let r = wait_for(&gw, 4);
    assert_eq!(
        (r[3]["complete"].as_bool(), r[3]["status"].as_u64()),
        (Some(false), Some(200)),
        "{:#?}",
        r[3]
    );

    // Exactly one record each (what happens to their reservations is checked in-process:
    // tests/tests/pipeline.rs).
    assert_eq!(gw.audit_records().len(), 4);
}

/// Waits for `n` audit records, then a moment more to catch any duplicate.
fn wait_for(gw: &Gateway, n: usize) -> Vec<Value> {
    let r = gw.wait_audit(n);
    assert!(r.len() >= n, "expected {n} records, got {}:\n{}", r.len(), gw.log());
    std::thread::sleep(Duration::from_millis(300));
    let r = gw.audit_records();
    assert_eq!(r.len(), n, "exactly one record per request: {r:#?}");
    r
}

#[test]
fn a_client_trickling_its_headers_is_cut_off() {
    if !privileged("a_client_trickling_its_headers_is_cut_off") {
        return;
    }
    let (s, builder) = openai_setup(63, "trust-slow", "");
    let gw = builder.yaml("proxy:\n  headerReadTimeout: 2s\n").start();
    let v = hang_up(&s, &gw, "trickle");
    let after = v["closed_after_s"].as_f64().unwrap();
    assert!((1.5..8.0).contains(&after), "closed after {after}s: {v}");
    assert!(s.primary.received().is_empty());
}

#[test]
fn connections_beyond_max_connections_are_closed_at_once_and_counted() {
    if !privileged("connections_beyond_max_connections_are_closed_at_once_and_counted") {
        return;
    }
    let (s, builder) = openai_setup(64, "trust-maxconn", "");
    let gw = builder.yaml("proxy:\n  maxConnections: 2\n").start();
    // Two connections held open (the proxy waits for their first bytes), then a third.
    let script = format!(
        "import socket, time, json\n\
         held = [socket.create_connection(('{ip}', 443), timeout=10) for _ in range(2)]\n\
         time.sleep(0.5)\n\
         third = socket.create_connection(('{ip}', 443), timeout=10)\n\
         t = time.monotonic()\n\
         data = third.recv(1)\n\
         print(json.dumps({{'closed_after': time.monotonic() - t, 'data': data.decode('latin-1')}}))\n",
        ip = s.captured_ip
    );
    let mut cmd = s.cg.command("python3");
    cmd.args(["-c", &script]);
    let out = run(cmd, Duration::from_secs(30));
    let v: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(v["data"], "", "closed, nothing sent: {v}");
    assert!(
        v["closed_after"].as_f64().unwrap() < 2.0,
        "at once, not after the first-bytes wait: {v}"
    );
    assert_eq!(
        gw.metric("tollgate_refused_connections_total{reason=\"max_connections\"}"),
        1
    );
    // The slots free up with their connections: a request later is served.
    gw.wait_until("held connections gone", Duration::from_secs(15), || {
        gw.metric("tollgate_active_connections") == 0
    });
    let (status, _) = curl(
        &s.cg,
        &s.dir,
        "api.openai.com",
        &s.captured_ip,
        &gw.ca_cert(),
        &[
            "-H",
            "content-type: application/json",
            "-d",
            chat_body(),
            "https://api.openai.com/v1/chat/completions",
        ],
    );
    assert_eq!(status, "200 2");
}
