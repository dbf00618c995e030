//! The request pipeline in-process, with no root and no eBPF (see `tests::pipeline`): most of
//! the proxy's behaviour checked on any developer machine. The privileged suites check the
//! same behaviours through real capture.

use std::time::Duration;

use serde_json::json;
use tests::{
    fake_llm::{FakeLlm, Script},
    pipeline::{Conn, Pipeline},
};

const KEY: &str = "sk-real-pipeline-SECRET";

/// `openai` (and `local`) providers, backends `primary` and `secondary` (plaintext fakes),
/// the real key in a file; `extra` is appended (routes, limits).
fn setup(extra: &str, claimants: &[&str]) -> (Pipeline, FakeLlm, FakeLlm) {
    let primary = FakeLlm::start("primary", "127.0.0.1", None);
    let secondary = FakeLlm::start("secondary", "127.0.0.1", None);
    let key_dir = tests::TempDir::new("pipeline-key");
    let key = key_dir.path("key");
    std::fs::write(&key, KEY).unwrap();
    let yaml = format!(
        "providers:\n  - name: openai\n    hostnames: [api.openai.com]\n    backend: primary\n  - name: local\n    hostnames: [llm.local]\n    ports: [8000]\n    backend: secondary\n\
         backends:\n  - name: primary\n    url: {}\n    credential: key\n  - name: secondary\n    url: {}\n    credential: key\n\
         credentials:\n  - name: key\n    kind: bearer\n    file: {}\n{extra}",
        primary.url(false),
        secondary.url(false),
        key.display()
    );
    let conn = Conn {
        orig: "127.0.0.9:443".parse().unwrap(),
        claimants: claimants.iter().map(|s| s.to_string()).collect(),
        comm: "python3".into(),
    };
    let p = Pipeline::start(&yaml, conn);
    std::mem::forget(key_dir); // the credential file must outlive the pipeline's reads
    (p, primary, secondary)
}

/// A connection to `openai`'s (only) captured address from a `python3` workload.
fn openai_conn() -> Conn {
    Conn {
        orig: "127.0.0.9:443".parse().unwrap(),
        claimants: vec!["openai".into()],
        comm: "python3".into(),
    }
}

const CHAT: &str = r#"{"model":"gpt-4o-mini","max_tokens":50,"messages":[{"role":"user","content":"hi"}]}"#;

fn auth() -> (&'static str, &'static str) {
    ("authorization", "Bearer sk-dummy")
}

#[test]
fn a_chat_completion_gets_the_backends_key_and_one_record() {
    let (p, primary, _) = setup("", &["openai"]);
    let (status, v) = p.request("POST", "/v1/chat/completions", &[auth()], CHAT);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], "hello from primary");
    let got = primary.received();
    assert_eq!(got[0].headers["authorization"], format!("Bearer {KEY}"));
    let r = p.wait_records(1);
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0]["provider"].as_str(), r[0]["backend"].as_str()),
        (Some("openai"), Some("primary"))
    );
    assert_eq!(r[0]["rule"], "provider_default");
    assert_eq!(r[0]["destination"]["claimed_by"], json!(["openai"]));
    assert!(r[0]["tokens"]["total"].as_u64().unwrap() > 0);
    assert_eq!(r[0]["complete"], true);
}

#[test]
fn a_host_of_a_provider_that_does_not_claim_the_destination_is_misdirected() {
    let (p, primary, secondary) = setup("", &["local"]);
    let (status, v) = p.request("POST", "/v1/chat/completions", &[auth()], CHAT);
    assert_eq!(status, 421, "{v}");
    assert_eq!(v["error"]["code"], "misdirected_request");
    let (status, _) = p.request(
        "POST",
        "/v1/chat/completions",
        &[auth(), ("host", "llm.local:8000")],
        CHAT,
    );
    assert_eq!(status, 200);
    assert!(primary.received().is_empty());
    assert_eq!(secondary.received().len(), 1);
    let r = p.wait_records(2);
    assert_eq!(r[0]["error_reason"], "misdirected");
    assert!(r[0]["credential"].is_null());
}

#[test]
fn operations_beyond_inference_need_a_route_and_ambiguous_paths_are_refused() {
    let (p, primary, secondary) = setup(
        "routes:\n  - name: files\n    match: { paths: [\"/v1/files*\"] }\n    backends: [{ backend: secondary }]\n",
        &["openai"],
    );
    for (method, path) in [
        ("POST", "/v1/fine_tuning/jobs"),
        ("GET", "/v1/organization/admin_api_keys"),
        ("DELETE", "/v1/models/ft:x"),
    ] {
        let (status, v) = p.request(method, path, &[auth()], "");
        assert_eq!(status, 403, "{method} {path}: {v}");
    }
    let (status, _) = p.request("GET", "/v1/models/../files", &[auth()], "");
    assert_eq!(status, 400);
    let (status, _) = p.request("GET", "/v1/files", &[auth()], "");
    assert_ne!(status, 403);
    assert!(primary.received().is_empty());
    assert_eq!(secondary.received().len(), 1);
    let r = p.wait_records(5);
    let reasons: Vec<&str> = r.iter().map(|r| r["error_reason"].as_str().unwrap_or("-")).collect();
    assert_eq!(
        reasons,
        [
            "operation_not_allowed",
            "operation_not_allowed",
            "operation_not_allowed",
            "bad_path",
            "-"
        ]
    );
}

#[test]
fn a_backend_whose_credential_is_missing_is_skipped_for_the_next() {
    let fallback = FakeLlm::start("fallback", "127.0.0.1", None);
    let broken = FakeLlm::start("broken", "127.0.0.1", None);
    let key_dir = tests::TempDir::new("pipeline-key2");
    std::fs::write(key_dir.path("key"), KEY).unwrap();
    let yaml = format!(
        "providers:\n  - name: openai\n    hostnames: [api.openai.com]\n\
         backends:\n  - name: broken\n    url: {}\n    credential: gone\n  - name: fallback\n    url: {}\n    credential: key\n\
         credentials:\n  - name: gone\n    kind: bearer\n    file: /nonexistent/tollgate-key\n  - name: key\n    kind: bearer\n    file: {}\n\
         routes:\n  - name: ha\n    backends: [{{ backend: broken }}, {{ backend: fallback, priority: 1 }}]\n",
        broken.url(false),
        fallback.url(false),
        key_dir.path("key").display()
    );
    let p = Pipeline::start(&yaml, openai_conn());
    let (status, v) = p.request("POST", "/v1/chat/completions", &[auth()], CHAT);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], "hello from fallback");
    assert!(broken.received().is_empty(), "nothing went out without its credential");
    let r = p.wait_records(1);
    let attempts = r[0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{:#?}", r[0]);
    assert!(attempts[0]["error"].as_str().unwrap().contains("credential gone"));
    assert_eq!(attempts[1]["status"], 200);
}

#[test]
fn openai_chat_is_translated_for_an_anthropic_backend() {
    let anthropic = FakeLlm::start("claude", "127.0.0.1", None);
    let key_dir = tests::TempDir::new("pipeline-ant");
    std::fs::write(key_dir.path("key"), "sk-ant-real").unwrap();
    let yaml = format!(
        "providers:\n  - name: openai\n    hostnames: [api.openai.com]\n    backend: claude\n\
         backends:\n  - name: claude\n    url: {}\n    schema: anthropic\n    credential: key\n\
         credentials:\n  - name: key\n    kind: xApiKey\n    file: {}\n",
        anthropic.url(false),
        key_dir.path("key").display()
    );
    let p = Pipeline::start(&yaml, openai_conn());
    let (status, v) = p.request("POST", "/v1/chat/completions", &[auth()], CHAT);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "chat.completion", "an OpenAI answer: {v}");
    let got = anthropic.received();
    assert_eq!(got[0].path, "/v1/messages");
    assert_eq!(got[0].headers["x-api-key"], "sk-ant-real");
    assert!(
        !got[0].headers.contains_key("authorization"),
        "the client's key never leaves"
    );
    let r = p.wait_records(1);
    assert_eq!(r[0]["translation"], "openai_chat->anthropic_messages");
}

#[test]
fn a_client_gone_while_the_backend_thinks_leaves_one_record_and_keeps_its_reservation() {
    let (p, primary, _) = setup("limits:\n  - name: tpm\n    tokensPerMinute: 1000\n", &["openai"]);
    // Both requests must fall in one UTC minute window.
    tests::fresh_minute_window();
    primary.set_script(Script {
        delay: Some(Duration::from_secs(2)),
        ..Default::default()
    });
    let body = r#"{"model":"gpt-4o-mini","max_tokens":900,"messages":[{"role":"user","content":"hi"}]}"#;
    let addr = p.addr;
    tests::runtime().block_on(async move {
        use tokio::io::AsyncWriteExt as _;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: api.openai.com\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Hang up while the backend is still thinking.
    });
    let r = p.wait_records(1);
    assert_eq!(r.len(), 1, "one record for the abandoned request");
    assert_eq!(
        (r[0]["status"].as_u64(), r[0]["error_reason"].as_str()),
        (Some(499), Some("client_gone"))
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(p.records().len(), 1, "exactly one");
    // The backend may still serve (and bill) it: the reservation (900 + input) is kept, so a
    // client that hangs up early cannot spend past the limit. Another such request is refused.
    primary.set_script(Script::default());
    let (status, v) = p.request("POST", "/v1/chat/completions", &[auth()], body);
    assert_eq!(status, 429, "{v}");
}

#[test]
fn a_request_no_backend_could_serve_gives_its_reservation_back() {
    let key_dir = tests::TempDir::new("pipeline-refund");
    std::fs::write(key_dir.path("key"), KEY).unwrap();
    // Nothing listens on port 9: every attempt fails to connect, nothing is billed.
    let yaml = format!(
        "providers:\n  - name: openai\n    hostnames: [api.openai.com]\n    backend: gone\n\
         backends:\n  - name: gone\n    url: http://127.0.0.1:9\n    credential: key\n\
         credentials:\n  - name: key\n    kind: bearer\n    file: {}\n\
         limits:\n  - name: tpm\n    tokensPerMinute: 1000\n",
        key_dir.path("key").display()
    );
    let p = Pipeline::start(&yaml, openai_conn());
    let body = r#"{"model":"gpt-4o-mini","max_tokens":900,"messages":[{"role":"user","content":"hi"}]}"#;
    for _ in 0..3 {
        let (status, v) = p.request("POST", "/v1/chat/completions", &[auth()], body);
        assert_eq!(
            status, 502,
            "admitted each time (the last one's reservation came back): {v}"
        );
    }
    let r = p.wait_records(3);
    assert!(r.iter().all(|r| r["limit"]["outcome"] == "allowed"), "{r:#?}");
}

#[test]
fn a_backend_whose_token_cannot_be_fetched_is_skipped_for_the_next() {
    let vertex = FakeLlm::start("vertex", "127.0.0.1", None);
    let fallback = FakeLlm::start("fallback", "127.0.0.1", None);
    // Nothing listens on port 9 (discard): the metadata token fetch is refused.
    let yaml = format!(
        "providers:\n  - name: openai\n    hostnames: [api.openai.com]\n\
         backends:\n  - name: vertex\n    url: {}\n    schema: vertex\n    project: p\n    region: r\n    credential: node\n  - name: fallback\n    url: {}\n\
         credentials:\n  - name: node\n    kind: gcpMetadata\n    tokenUrl: http://127.0.0.1:9/token\n\
         routes:\n  - name: ha\n    backends: [{{ backend: vertex }}, {{ backend: fallback, priority: 1 }}]\n",
        vertex.url(false),
        fallback.url(false)
    );
    let p = Pipeline::start(&yaml, openai_conn());
    let (status, v) = p.request("POST", "/v1/chat/completions", &[auth()], CHAT);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], "hello from fallback");
    assert!(vertex.received().is_empty(), "nothing went out without a token");
    let r = p.wait_records(1);
    let attempts = r[0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{:#?}", r[0]);
    assert!(
        attempts[0]["error"].as_str().unwrap().contains("credential node"),
        "{:#?}",
        attempts[0]
    );
}
