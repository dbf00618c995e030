//! `tollgate validate` and `tollgate run` on bad configs: rejected with a message that names the
//! field and the value. Needs no privileges.

use std::{process::Command, time::Duration};

use tests::{run, tollgate_bin, workspace};

fn validate(yaml: &str) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("tollgate-validate-{}-{}", std::process::id(), yaml.len()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("config.yaml");
    std::fs::write(&file, yaml).unwrap();
    let mut cmd = Command::new(tollgate_bin());
    cmd.arg("validate").arg(&file);
    let out = run(cmd, Duration::from_secs(10));
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn shipped_example_validates() {
    let mut cmd = Command::new(tollgate_bin());
    cmd.arg("validate").arg(workspace().join("examples/tollgate.yaml"));
    let out = run(cmd, Duration::from_secs(10));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(": ok"));
}

#[test]
fn invalid_configs_are_rejected_naming_the_field() {
    let cases = [
        (
            "providers:\n  - name: a\n    addresses: [127.0.0.1]\n    tiemout: 5\n",
            "unknown field `tiemout`",
        ),
        (
            "providers:\n  - name: a\n    addresses: [\"300.1.2.3/8\"]\n",
            "providers[0].addresses[0]",
        ),
        (
            "providers:\n  - name: a\n    addresses: [127.0.0.1]\n    ports: [0]\n",
            "providers[0].ports[0]: port 0",
        ),
        ("capture:\n  failMode: sometimes\n", "unknown variant `sometimes`"),
        ("listener:\n  addresses: [\"0.0.0.0:15001\"]\n", "listener.addresses[0]"),
        ("capture:\n  cgroupPath: relative/path\n", "capture.cgroupPath"),
        (
            "audit:\n  checkpoint: { records: 0 }\n",
            "audit.checkpoint.records: 0 is not allowed",
        ),
        (
            "audit:\n  checkpoint: { interval: 100ms }\n",
            "audit.checkpoint.interval: 100ms is below the minimum of 1s",
        ),
        ("audit:\n  signingKey: keys/audit.key\n", "audit.signingKey"),
        ("audit:\n  checkpoint: { every: 5 }\n", "unknown field `every`"),
        (
            "audit:\n  export: { otlpEndpoint: \"collector:4318\" }\n",
            "audit.export.otlpEndpoint",
        ),
        (
            "audit:\n  export: { otlpEndpoint: \"http://127.0.0.1:4318/v1/logs\", queue: 0 }\n",
            "audit.export.queue: 0 is not between 1 and 1,000,000",
        ),
        (
            "routes:\n  - name: r\n    backends: [{backend: b}]\n    capture: { redact: { patterns: [\"(\"] } }\nbackends:\n  - name: b\n    url: http://127.0.0.1:1\n",
            "routes[0].capture.redact.patterns[0]",
        ),
        ("admin: [1, 2]\n", "admin"),
        (
            "backends:\n  - name: b\n    url: https://bedrock.example\n    schema: bedrock\n",
            "backends[0].region: a bedrock backend needs a region",
        ),
        (
            "backends:\n  - name: b\n    url: https://api.openai.com\n    region: us-east-1\n",
            "backends[0].region: only bedrock and vertex backends take a region",
        ),
        (
            "backends:\n  - name: v\n    url: https://europe-west4-aiplatform.googleapis.com\n    schema: vertex\n",
            "backends[0].project: a vertex backend needs a project",
        ),
        (
            "credentials:\n  - name: sa\n    kind: gcpServiceAccount\n    env: SA\nbackends:\n  - name: g\n    url: https://generativelanguage.googleapis.com\n    schema: gemini\n    credential: sa\n",
            "backends[0].credential: \"sa\": gcpServiceAccount and gcpMetadata credentials are for vertex backends",
        ),
        (
            "credentials:\n  - name: e\n    kind: azureEntra\n    env: E\nbackends:\n  - name: o\n    url: https://api.openai.com\n    credential: e\n",
            "backends[0].credential: \"e\": azureEntra and azureManagedIdentity credentials are for azureOpenai backends",
        ),
        (
            "credentials:\n  - name: m\n    kind: gcpMetadata\n    file: /etc/key\n",
            "credential \"m\" gets its tokens from the node's metadata service: no `file` or `env`",
        ),
        (
            "credentials:\n  - name: k\n    kind: bearer\n    env: K\n    tokenUrl: http://127.0.0.1:1/token\n",
            "credentials[0].tokenUrl: only gcpMetadata, azureManagedIdentity and awsMetadata credentials take a tokenUrl",
        ),
        (
            "credentials:\n  - name: m\n    kind: azureManagedIdentity\nbackends:\n  - name: o\n    url: https://api.openai.com\n    credential: m\n",
            "azureEntra and azureManagedIdentity credentials are for azureOpenai backends",
        ),
        (
            "credentials:\n  - name: k\n    kind: bearer\n    env: K\nbackends:\n  - name: b\n    url: https://bedrock-runtime.eu-west-1.amazonaws.com\n    schema: bedrock\n    credential: k\n",
            "backends[0].credential: \"k\": bedrock backends, and only they, use a credential of kind awsSigV4 or awsMetadata",
        ),
    ];
    for (yaml, expected) in cases {
        let (ok, output) = validate(yaml);
        assert!(!ok, "accepted:\n{yaml}");
        assert!(
            output.contains(expected),
            "for\n{yaml}\nexpected {expected:?} in:\n{output}"
        );
    }
}

#[test]
fn a_config_over_the_endpoint_map_capacity_is_refused_naming_the_limit_and_the_count() {
    let cap = gateway::config::capacity::MapKind::Exact4.capacity() as u32;
    // Two providers, one port each, one address more than the exact IPv4 map holds.
    let ip = |i: u32| format!("\"{}\"", std::net::Ipv4Addr::from(0x0a00_0000 + i));
    let yaml = format!(
        "providers:\n  - name: a\n    addresses: [{}]\n  - name: b\n    addresses: [{}]\n",
        (0..cap / 2).map(ip).collect::<Vec<_>>().join(", "),
        (cap / 2..=cap).map(ip).collect::<Vec<_>>().join(", "),
    );
    let (ok, output) = validate(&yaml);
    assert!(!ok, "accepted {} addresses", cap + 1);
    let expected = format!(
        "providers: {} exact IPv4 endpoints (address and port) over all providers' addresses and ports: more than the {cap} the eBPF map ENDPOINTS4 holds",
        cap + 1
    );
    assert!(output.contains(&expected), "expected {expected:?} in:\n{output}");
}

#[test]
fn a_missing_config_file_is_named() {
    for sub in ["validate", "run"] {
        let mut cmd = Command::new(tollgate_bin());
        cmd.arg(sub);
        if sub == "run" {
            cmd.arg("--config");
        }
        cmd.arg("/nonexistent/tollgate.yaml");
        let out = run(cmd, Duration::from_secs(10));
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("/nonexistent/tollgate.yaml"), "{sub}: {err}");
    }
}

/// `tollgate validate [--show]` on `yaml`: (success, stdout + stderr).
fn validate_with(yaml: &str, args: &[&str]) -> (bool, String) {
    let dir = tests::TempDir::new("validate-catalog");
    let file = dir.path("config.yaml");
    std::fs::write(&file, yaml).unwrap();
    let mut cmd = Command::new(tollgate_bin());
    cmd.arg("validate").args(args).arg(&file);
    let out = run(cmd, Duration::from_secs(10));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The 18 catalog entries, the three that need user input listed under `providers` with it,
/// the others by the `catalog:` shorthand; `exact` replaces the wildcard hostnames of those
/// three with one of their names (`every_catalog_entry_validates_with_its_wildcard_hostnames`
/// keeps them).
fn all_of_the_catalog(exact: bool) -> String {
    let host = |h: &str| match exact {
        true => format!(", hostnames: [{h}]"),
        false => String::new(),
    };
    format!(
        "providers:\n\
         \x20 - {{ catalog: azure-openai, resource: contoso{} }}\n\
         \x20 - {{ catalog: vertex, region: us-central1, project: p-1{} }}\n\
         \x20 - {{ catalog: bedrock, region: us-east-1{} }}\n\
         catalog: [openai, anthropic, gemini, mistral, cohere, groq, together, deepinfra, deepseek, xai,\n\
         \x20         sambanova, fireworks, openrouter, perplexity, cerebras]\n",
        host("contoso.openai.azure.com"),
        host("us-central1-aiplatform.googleapis.com"),
        host("bedrock-runtime.us-east-1.amazonaws.com"),
    )
}

#[test]
fn the_catalog_is_listed_with_its_sources() {
    let mut cmd = Command::new(tollgate_bin());
    cmd.arg("catalog");
    let out = run(cmd, Duration::from_secs(10));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&out.stdout);
    let groq = table.lines().find(|l| l.starts_with("groq ")).expect("a groq line");
    for part in [
        "api.groq.com",
        "openai /openai/v1 and /v1",
        "openai https://api.groq.com",
        "bearer",
        "https://console.groq.com/docs/api-reference",
    ] {
        assert!(groq.contains(part), "{part:?} in {groq}");
    }
    assert!(table.contains("*.openai.azure.com") && table.contains("bedrock-runtime.*.amazonaws.com"));
    assert!(table.contains("/var/run/secrets/tollgate/<provider>/api-key"));

    let mut cmd = Command::new(tollgate_bin());
    cmd.args(["catalog", "--json"]);
    let out = run(cmd, Duration::from_secs(10));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let entries = json.as_array().unwrap();
    assert_eq!(entries.len(), 18);
    for e in entries {
        assert!(e["source"].as_str().unwrap().starts_with("https://"), "{e}");
        assert!(
            e["asOf"].is_string() && e["auth"].is_string() && e["backend"]["url"].is_string(),
            "{e}"
        );
    }
}

#[test]
fn every_catalog_entry_validates_and_shows_expanded() {
    let (ok, out) = validate_with(&all_of_the_catalog(true), &["--show"]);
    assert!(ok, "{out}");
    assert!(out.contains(": ok (18 providers"), "{out}");
    let json: serde_json::Value = serde_json::from_str(&out[out.find('{').unwrap()..]).expect("--show prints JSON");
    let providers = json["providers"].as_array().unwrap();
    assert_eq!(providers.len(), 18);
    assert_eq!(providers[3]["catalog"], "openai");
    assert_eq!(providers[8]["basePath"], "/openai/v1", "groq");
    let backends = json["backends"].as_array().unwrap();
    assert_eq!(backends[0]["url"], "https://contoso.openai.azure.com/");
    assert_eq!(backends[2]["schema"], "bedrock");
    let credentials = json["credentials"].as_array().unwrap();
    assert_eq!(credentials.len(), 18);
    assert_eq!(credentials[1]["kind"], "gcpServiceAccount");
    assert_eq!(credentials[1]["source"], "file");
    assert!(!out.contains("/var/run/secrets"), "credential files are never shown");

    let (ok, out) = validate_with("catalog: [openai, bedrock]\n", &[]);
    assert!(!ok);
    assert!(
        out.contains("catalog[1]: catalog entry \"bedrock\" needs the AWS region"),
        "{out}"
    );
}

#[test]
fn every_catalog_entry_validates_with_its_wildcard_hostnames() {
    let (ok, out) = validate_with(&all_of_the_catalog(false), &[]);
    assert!(ok && out.contains(": ok (18 providers"), "{out}");
}
