//! `tollgate import envoy-ai-gateway`: the fixtures (written from Envoy AI Gateway's published
//! API reference, v1beta1 and v1alpha1) imported by the real binary, the exit status (0
//! complete, 1 incomplete, 2 error) and what it lists; then an imported config run for real:
//! captured workloads' requests routed with priority fallback, a model override, the key from
//! the secret mount, and the token limit enforced.

use std::{path::Path, process::Command, time::Duration};

use serde_json::Value;
use tests::{
    fake_llm::{FakeLlm, Script},
    privileged, run, tollgate_bin, workspace, Cgroup, GatewayBuilder, TempDir,
};

fn fixture(name: &str) -> std::path::PathBuf {
    workspace().join("tests/fixtures/envoy-ai-gateway").join(name)
}

/// Runs the import; returns (exit code, stdout, stderr).
fn import(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let mut cmd = Command::new(tollgate_bin());
    cmd.args(["import", "envoy-ai-gateway"]).args(args);
    let out = run(cmd, Duration::from_secs(20));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn validates(path: &Path) {
    let mut cmd = Command::new(tollgate_bin());
    cmd.arg("validate").arg(path);
    let out = run(cmd, Duration::from_secs(10));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_complete_import_exits_0_and_validates() {
    let dir = TempDir::new("import-complete");
    let out = dir.path("tollgate.yaml");
    let (code, stdout, stderr) = import(&[fixture("pipeline.yaml").as_os_str(), "-o".as_ref(), out.as_os_str()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.is_empty());
    assert!(stderr.contains("import complete"), "{stderr}");
    let yaml = std::fs::read_to_string(&out).unwrap();
    for comment in [
        "# from AIGatewayRoute/chat spec.rules[0]",
        "# from AIServiceBackend/primary, Backend/primary (credential openai-key)",
        "# from BackendSecurityPolicy/anthropic-key",
        "# from BackendTrafficPolicy/gpt-tokens spec.rateLimit.global.rules[0]",
    ] {
        assert!(yaml.contains(comment), "{comment} in\n{yaml}");
    }
    validates(&out);
}

#[test]
fn an_incomplete_import_exits_1_listing_kind_name_and_field() {
    for (file, listed) in [
        (
            "v1beta1.yaml",
            vec![
                "not converted (1):",
                "BackendTrafficPolicy/token-limit: spec.rateLimit.global.rules[2].cost.response: metadata key \"cel_token\" costs CEL",
                "skipped (kinds not imported) (2):",
                "Gateway/ai-gateway",
            ],
        ),
        (
            "v1alpha1.yaml",
            vec![
                "BackendSecurityPolicy/aws-oidc: spec.awsCredentials.oidcExchangeToken:",
                "needs action (1):",
                "BackendSecurityPolicy/azure-entra: spec.azureCredentials.clientSecretRef: Tollgate's azureEntra credential reads one JSON value",
            ],
        ),
    ] {
        let dir = TempDir::new("import-incomplete");
        let out = dir.path("tollgate.yaml");
        let (code, _, stderr) = import(&[fixture(file).as_os_str(), "-o".as_ref(), out.as_os_str()]);
        assert_eq!(code, 1, "{file}: {stderr}");
        for line in listed {
            assert!(stderr.contains(line), "{file}: {line:?} in\n{stderr}");
        }
        assert!(stderr.contains("import incomplete"), "{stderr}");
        // Written all the same, and valid once the mounts exist (caFile is checked then).
        let yaml = std::fs::read_to_string(&out).unwrap();
        if !yaml.contains("caFile:") {
            validates(&out);
        }
    }
}

#[test]
fn both_fixtures_together_and_bad_input_exits_2_naming_file_and_document() {
    let (code, stdout, stderr) = import(&[
        fixture("v1beta1.yaml").as_os_str(),
        fixture("pipeline.yaml").as_os_str(),
    ]);
    // The two define `chat` in the same namespace: names clash, which the result's validation refuses.
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("not valid"), "{stderr}");
    let dir = TempDir::new("import-bad");
    let bad = dir.path("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: { name: x }\n---\nkind: [\n",
    )
    .unwrap();
    let (code, _, stderr) = import(&[bad.as_os_str()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("bad.yaml, document 2:"), "{stderr}");
    let (code, _, stderr) = import(&[dir.path("missing.yaml").as_os_str()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("cannot read"), "{stderr}");
}

const OPENAI_KEY: &str = "sk-imported-openai-SECRET";
const ANTHROPIC_KEY: &str = "sk-ant-imported-SECRET";

/// curl from the captured cgroup; returns (status, body).
fn curl(cg: &Cgroup, url: &str, headers: &[&str], body: &str) -> (u16, Value) {
    let mut cmd = cg.command("curl");
    cmd.args([
        "-sS",
        "-m",
        "20",
        "-w",
        "\n%{http_code}",
        "-H",
        "content-type: application/json",
    ]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    cmd.args(["-d", body, url]);
    let out = run(cmd, Duration::from_secs(30));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        status.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::String(body.into())),
    )
}

/// The first audit record that `pred` accepts (waiting up to 10 s for it).
fn audit_record(gw: &tests::Gateway, pred: impl Fn(&Value) -> bool) -> Value {
    let started = std::time::Instant::now();
    loop {
        if let Some(r) = gw.audit_records().into_iter().find(&pred) {
            return r;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{:#?}", gw.audit_records());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_imported_config_serves_captured_requests() {
    if !privileged("an_imported_config_serves_captured_requests") {
        return;
    }
    let dir = TempDir::new("import-pipeline");
    let secrets = dir.path("secrets");
    // As the chart mounts them: <dir>/<credential (the policy's name)>/<key>.
    for (secret, key) in [("openai-key", OPENAI_KEY), ("anthropic-key", ANTHROPIC_KEY)] {
        std::fs::create_dir_all(secrets.join(secret)).unwrap();
        std::fs::write(secrets.join(secret).join("apiKey"), format!("{key}\n")).unwrap();
    }
    // The fixture's Backends: plaintext fakes on this test's own loopback addresses.
    let primary = FakeLlm::start_on("primary", "127.30.1.2:8000", None);
    let backup = FakeLlm::start_on("backup", "127.30.1.3:8000", None);
    let anthropic = FakeLlm::start_on("anthropic", "127.30.1.4:8000", None);
    primary.set_script(Script {
        status: Some(503),
        ..Script::default()
    });
    let config = dir.path("imported.yaml");
    let (code, _, stderr) = import(&[
        fixture("pipeline.yaml").as_os_str(),
        "--secrets-dir".as_ref(),
        secrets.as_os_str(),
        "-o".as_ref(),
        config.as_os_str(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let cg = Cgroup::new("import-pipeline");
    // The test's listener, capture and audit settings; everything else is the import.
    let gw = GatewayBuilder::new(&cg)
        .yaml(&std::fs::read_to_string(&config).unwrap())
        .start();

    // Priority fallback with the backup's model override, the key from the secret mount.
    let chat = r#"{"model":"gpt-4o","max_tokens":60,"messages":[{"role":"user","content":"hi"}]}"#;
    let url = "http://127.30.1.2:8000/v1/chat/completions";
    let (status, v) = curl(&cg, url, &["authorization: Bearer sk-client"], chat);
    assert_eq!(status, 200, "{v}\n{}", gw.log());
    assert_eq!(v["choices"][0]["message"]["content"], "hello from backup");
    let (p, b) = (primary.received(), backup.received());
    assert_eq!(p[0].headers["authorization"], format!("Bearer {OPENAI_KEY}"));
    assert_eq!(b[0].headers["authorization"], format!("Bearer {OPENAI_KEY}"));
    assert_eq!(b[0].body["model"], "gpt-4o-mini", "modelNameOverride");
    let r = audit_record(&gw, |r| r["backend"] == "backup");
    assert_eq!(
        (r["route"].as_str(), r["served_model"].as_str()),
        (Some("chat-gpt"), Some("gpt-4o-mini"))
    );
    assert_eq!(r["attempts"][0]["backend"], "primary");
    assert_eq!(r["credential"]["name"], "openai-key");

    // An Anthropic client, its own API key from its policy's secret.
    let msg = r#"{"model":"claude-sonnet-4","max_tokens":30,"messages":[{"role":"user","content":"hi"}]}"#;
    let (status, v) = curl(
        &cg,
        "http://127.30.1.4:8000/v1/messages",
        &["x-api-key: sk-client", "anthropic-version: 2023-06-01"],
        msg,
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(anthropic.received()[0].headers["x-api-key"], ANTHROPIC_KEY);

    // The token limit (150 total tokens a minute for gpt-4o on the route): each request
    // reserves its max_tokens and more, and keeps the 13 it used; within a few, one is refused.
    tests::fresh_minute_window();
    let mut statuses = vec![];
    for _ in 0..8 {
        let (status, _) = curl(&cg, url, &[], chat);
        statuses.push(status);
        if status == 429 {
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    let denied = audit_record(&gw, |r| r["limit"]["outcome"] == "denied");
    assert_eq!(denied["limit"]["limit"], "gpt-tokens-0");
}
