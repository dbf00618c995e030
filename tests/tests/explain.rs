//! `tollgate explain` as a user runs it: text and JSON for a fallback chain, the credential
//! shown by fingerprint and never by value. The decisions themselves are unit-tested in
//! `gateway::explain`. Needs no privileges.

use std::{process::Command, time::Duration};

use serde_json::Value;
use tests::{run, tollgate_bin, TempDir};

const SECRET: &str = "sk-explain-cli-SECRET";

fn explain(args: &[&str]) -> (String, String) {
    let dir = TempDir::new("explain-cli");
    let key = dir.path("key");
    std::fs::write(&key, format!("{SECRET}\n")).unwrap();
    let config = dir.path("tollgate.yaml");
    std::fs::write(
        &config,
        format!(
            "providers:\n  - {{ name: openai, hostnames: [api.openai.com], backend: east }}\n\
             backends:\n  - {{ name: east, url: \"https://east.example\", credential: key }}\n  - {{ name: claude, url: \"https://api.anthropic.com\", schema: anthropic, credential: key }}\n\
             credentials:\n  - {{ name: key, kind: bearer, file: {} }}\n\
             routes:\n  - name: ha\n    match: {{ models: [\"gpt-4o*\"] }}\n    backends: [{{ backend: east }}, {{ backend: claude, priority: 1, model: claude-sonnet-4-5 }}]\n\
             limits:\n  - {{ name: team-a, match: {{ namespaces: [team-a] }}, key: [namespace], budget: {{ usd: \"5\", period: month }} }}\n",
            key.display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(tollgate_bin());
    cmd.arg("explain").arg("--config").arg(&config).args(args);
    let out = run(cmd, Duration::from_secs(10));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn explain_shows_the_fallback_chain_limits_and_prices_without_the_secret() {
    let (text, stderr) = explain(&[
        "--host",
        "api.openai.com",
        "--model",
        "gpt-4o",
        "--namespace",
        "team-a",
        "--pod",
        "p",
    ]);
    assert!(text.contains("route       ha"), "{text}");
    assert!(text.contains("tier 1") && text.contains("claude-sonnet-4-5"), "{text}");
    assert!(text.contains("team-a: budget"), "{text}");
    assert!(text.contains("from the shipped table"), "{text}");
    assert!(text.contains("credential key (bearer, sha256:"), "{text}");
    assert!(!text.contains(SECRET) && !stderr.contains(SECRET), "{text}{stderr}");
    assert!(stderr.is_empty(), "nothing logged: {stderr}");

    let (json, _) = explain(&["--model", "made-up", "--json"]);
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["rule"], "provider_default");
    assert_eq!(v["backends"][0]["backend"], "east");
    assert_eq!(v["price"]["source"], Value::Null, "no price for an unknown model");
    assert_eq!(
        v["limits"],
        serde_json::json!([]),
        "the namespace limit does not count a host process"
    );
    assert!(!json.contains(SECRET));
}
