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
