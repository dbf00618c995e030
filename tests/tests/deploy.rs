//! What users install: the Helm chart (rendered by the real helm across a matrix of values,
//! linted, validated strictly against the Kubernetes 1.37 schemas, its config accepted by
//! `tollgate validate`) and the host-agent package (installed with dpkg, its unit verified by
//! systemd, its CA put into the system store, purged without a trace).

use std::{path::Path, process::Command, time::Duration};

use serde_json::Value;
use tests::{
    deploy::{chart_dir, helm, kubernetes_validate, object, render},
    privileged, run, tollgate_bin, TempDir,
};

/// The values the matrix renders: defaults, and each switch the chart has, in combinations.
const MATRIX: [(&str, &str); 5] = [
    ("defaults", ""),
    (
        "closed, no pods, no ipv6, custom paths",
        "capture: {failMode: closed, cgroupPath: /sys/fs/cgroup/kubepods.slice}\n\
         listener: {port: 16001, ipv6: false, capturePods: false}\n\
         admin: {port: 16000}\n\
         hostPaths: {cgroup: /sys/fs/cgroup, bpf: /run/bpf, state: /srv/tollgate, logs: /srv/tollgate-logs}\n\
         criSocket: \"\"\n",
    ),
    (
        "existing CA, credentials, monitors",
        "ca: {existingSecret: cluster-ca, publishConfigMap: llm-ca}\n\
         credentials:\n\
         - {name: openai-key, kind: bearer, secretName: llm-keys, key: openai}\n\
         - {name: anthropic-key, kind: xApiKey, secretName: llm-keys, key: anthropic}\n\
         metrics:\n\
         \x20 podMonitor: {enabled: true, labels: {release: prom}}\n\
         \x20 serviceMonitor: {enabled: true}\n\
         config:\n\
         \x20 providers:\n\
         \x20 - {name: openai, hostnames: [api.openai.com], backend: openai}\n\
         \x20 - {name: anthropic, hostnames: [api.anthropic.com], schema: anthropic, backend: anthropic}\n\
         \x20 backends:\n\
         \x20 - {name: openai, url: \"https://api.openai.com\", credential: openai-key}\n\
         \x20 - {name: anthropic, url: \"https://api.anthropic.com\", schema: anthropic, credential: anthropic-key}\n",
    ),
    (
        "privileged fallback, full config",
        "privileged: true\n\
         image: {repository: registry.example/tollgate, tag: \"9.9.9\", pullPolicy: Always}\n\
         imagePullSecrets: [{name: regcred}]\n\
         podLabels: {team: platform}\n\
         resources: {requests: {cpu: 50m, memory: 64Mi}, limits: {memory: 1Gi}}\n\
         config:\n\
         \x20 tls: {leafTtl: 12h}\n\
         \x20 audit: {maxFiles: 9}\n\
         \x20 providers:\n\
         \x20 - {name: vllm, mode: observe, addresses: [10.96.0.0/12], ports: [8000]}\n\
         \x20 backends:\n\
         \x20 - {name: vllm, url: \"http://10.96.0.20:8000\"}\n\
         \x20 routes:\n\
         \x20 - {name: local, match: {models: [\"llama-*\"]}, backends: [{backend: vllm}]}\n\
         \x20 limits:\n\
         \x20 - {name: tokens, key: [workload], tokensPerMinute: 1000}\n",
    ),
    (
        "OnDelete updates, names overridden",
        "fullnameOverride: gw\n\
         updateStrategy: {type: OnDelete}\n\
         tolerations: []\n\
         nodeSelector: {pool: gpu}\n",
    ),
];

fn helm_lint(helm: &Path, values: &str) -> Result<(), String> {
    let dir = TempDir::new("helm-lint");
    let file = dir.path("values.yaml");
    std::fs::write(&file, values).unwrap();
    let out = Command::new(helm)
        .args(["lint", "--strict", "-f"])
        .arg(&file)
        .arg(chart_dir())
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    }
}

/// `tollgate validate` on the config the chart renders (the node address as the downward API
/// would give it).
fn tollgate_validates(config: &str) -> Result<(), String> {
    let dir = TempDir::new("chart-config");
    let file = dir.path("config.yaml");
    std::fs::write(&file, config).unwrap();
    let mut cmd = Command::new(tollgate_bin());
    cmd.arg("validate").arg(&file).env("TOLLGATE_NODE_IP", "10.0.0.7");
    let out = run(cmd, Duration::from_secs(20));
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn the_chart_lints_and_renders_valid_objects_and_config_across_values() {
    let Some(helm) = helm("the_chart_lints_and_renders_valid_objects_and_config_across_values") else {
        return;
    };
    for (case, values) in MATRIX {
        helm_lint(&helm, values).unwrap_or_else(|e| panic!("{case}: helm lint: {e}"));
        let objects = render(&helm, values).unwrap_or_else(|e| panic!("{case}: helm template: {e}"));
        // Kubernetes' own objects strictly; the monitoring CRDs are checked by hand below.
        let core: Vec<Value> = objects
            .iter()
            .filter(|o| o["apiVersion"] != "monitoring.coreos.com/v1")
            .cloned()
            .collect();
        kubernetes_validate(&core).unwrap_or_else(|e| panic!("{case}: kubernetes-validate: {e}"));

        let ds = object(&objects, "DaemonSet", None).unwrap_or_else(|| panic!("{case}: no DaemonSet"));
        let pod = &ds["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        assert_eq!(pod["hostNetwork"], true, "{case}");
        assert_eq!(pod["hostPID"], true, "{case}");
        assert_eq!(pod["priorityClassName"], "system-node-critical", "{case}");
        assert!(
            container.get("ports").is_none(),
            "{case}: ports on a hostNetwork pod are hostPorts and block the surge pod"
        );
        let sc = &container["securityContext"];
        if values.contains("privileged: true") {
            assert_eq!(sc["privileged"], true, "{case}");
        } else {
            assert_eq!(sc["privileged"], false, "{case}");
            assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"], "{case}");
            assert_eq!(
                strings(&sc["capabilities"]["add"]),
                ["BPF", "PERFMON", "NET_ADMIN", "SYS_PTRACE"],
                "{case}"
            );
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{case}");
        }
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{case}");
        for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
            assert_eq!(container[probe]["httpGet"]["host"], "127.0.0.1", "{case}: {probe}");
        }
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz", "{case}");
        let node_ip = &container["env"][0];
        assert_eq!(node_ip["name"], "TOLLGATE_NODE_IP", "{case}");
        assert_eq!(node_ip["valueFrom"]["fieldRef"]["fieldPath"], "status.hostIP", "{case}");
        let node_name = &container["env"][1];
        assert_eq!(node_name["name"], "TOLLGATE_NODE_NAME", "{case}");
        assert_eq!(
            node_name["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName",
            "{case}"
        );
        if !values.contains("OnDelete") {
            assert_eq!(ds["spec"]["updateStrategy"]["rollingUpdate"]["maxSurge"], 1, "{case}");
            assert_eq!(
                ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"], 0,
                "{case}"
            );
        }
        let volumes = pod["volumes"].as_array().unwrap();
        let ca = volumes.iter().find(|v| v["name"] == "ca").unwrap();
        assert_eq!(ca["secret"]["defaultMode"], 0o400, "{case}: the CA key must be private");
        for v in volumes
            .iter()
            .filter(|v| v["name"].as_str().unwrap().starts_with("credential-"))
        {
            assert_eq!(v["secret"]["defaultMode"], 0o400, "{case}: {v}");
        }

        // The configuration the pods run: accepted by tollgate itself.
        let cm = object(&objects, "ConfigMap", Some(ds["metadata"]["name"].as_str().unwrap())).unwrap();
        let config = cm["data"]["config.yaml"].as_str().unwrap();
        tollgate_validates(config).unwrap_or_else(|e| panic!("{case}: tollgate validate: {e}\n{config}"));
        if values.contains("capturePods: false") {
            assert!(!config.contains("nodeAddress4"), "{case}");
        } else {
            assert!(
                config.contains("nodeAddress4: ${TOLLGATE_NODE_IP}:15001"),
                "{case}:\n{config}"
            );
        }
        for o in objects.iter().filter(|o| o["kind"] == "ConfigMap") {
            assert!(
                !serde_json::to_string(o).unwrap().contains("PRIVATE KEY"),
                "{case}: a key in a ConfigMap"
            );
        }

        let monitors = values.contains("podMonitor: {enabled: true");
        assert_eq!(object(&objects, "PodMonitor", None).is_some(), monitors, "{case}");
        assert_eq!(object(&objects, "ServiceMonitor", None).is_some(), monitors, "{case}");
        if let Some(pm) = object(&objects, "PodMonitor", None) {
            assert_eq!(pm["metadata"]["labels"]["release"], "prom", "{case}");
            assert_eq!(pm["spec"]["podMetricsEndpoints"][0]["targetPort"], 15000, "{case}");
            assert_eq!(pm["spec"]["podMetricsEndpoints"][0]["path"], "/metrics", "{case}");
            // Scraped from the network: the admin port moves to the node address.
            assert!(config.contains("address: ${TOLLGATE_NODE_IP}:15000") && config.contains("allowRemote: true"));
        }
    }
}

#[test]
fn the_validator_catches_what_the_chart_must_not_render() {
    // A strict validator that cannot fail would prove nothing: a misspelt field must fail.
    let Some(helm) = helm("the_validator_catches_what_the_chart_must_not_render") else {
        return;
    };
    let mut objects = render(&helm, "").unwrap();
    let ds = objects.iter_mut().find(|o| o["kind"] == "DaemonSet").unwrap();
    ds["spec"]["template"]["spec"]["hostNetwrk"] = Value::Bool(true);
    let e = kubernetes_validate(&objects).unwrap_err();
    assert!(e.contains("hostNetwrk"), "{e}");
}

#[test]
fn values_outside_the_schema_are_refused_with_their_path() {
    let Some(helm) = helm("values_outside_the_schema_are_refused_with_their_path") else {
        return;
    };
    for (values, expected) in [
        ("capture: {failMode: maybe}\n", "/capture/failMode"),
        ("listener: {port: 0}\n", "/listener/port"),
        ("capabilities: [BPF, ALL]\n", "/capabilities/1"),
        (
            "credentials: [{name: k, kind: bearer, secretName: s}]\n",
            "/credentials/0",
        ),
        (
            "credentials: [{name: k, kind: plaintext, secretName: s, key: k}]\n",
            "/credentials/0/kind",
        ),
        ("config: {listener: {addresses: [\"0.0.0.0:1\"]}}\n", "/config"),
        (
            "hostPaths: {cgroup: relative, bpf: /sys/fs/bpf, state: /s, logs: /l}\n",
            "/hostPaths/cgroup",
        ),
        ("imageTag: latest\n", "imageTag"),
    ] {
        let e = render(&helm, values).expect_err(values);
        assert!(e.contains(expected), "{values}: {e}");
    }
}

#[test]
fn one_cluster_ca_is_generated_or_taken_from_a_secret_and_only_its_certificate_is_published() {
    let Some(helm) = helm("one_cluster_ca_is_generated_or_taken_from_a_secret_and_only_its_certificate_is_published")
    else {
        return;
    };
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let objects = render(&helm, "").unwrap();
    let secret = object(&objects, "Secret", Some("tg-tollgate-ca")).expect("a generated CA Secret");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    assert_eq!(
        secret["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
        "uninstalling must not take the CA every workload trusts"
    );
    let cert = String::from_utf8(b64.decode(secret["data"]["tls.crt"].as_str().unwrap()).unwrap()).unwrap();
    let key = String::from_utf8(b64.decode(secret["data"]["tls.key"].as_str().unwrap()).unwrap()).unwrap();
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(key.starts_with("-----BEGIN EC PRIVATE KEY-----"), "{}", &key[..30]);
    let published = object(&objects, "ConfigMap", Some("tg-tollgate-ca")).expect("the published CA");
    assert_eq!(published["data"]["ca.crt"].as_str().unwrap().trim(), cert.trim());

    // The generated CA is one tollgate loads (key form, CA constraints) and mints leaves with.
    let dir = TempDir::new("chart-ca");
    std::fs::write(dir.path("tls.crt"), &cert).unwrap();
    std::fs::write(dir.path("tls.key"), &key).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir.path("tls.key"), std::fs::Permissions::from_mode(0o400)).unwrap();
    let ca = gateway::capture::tls::NodeCa::load_or_create(&dir.path("tls.crt"), &dir.path("tls.key")).unwrap();
    ca.mint("api.openai.com", Duration::from_secs(60)).unwrap();

    // A supplied CA (cert-manager's Secret): nothing generated, the pods mount that Secret.
    let objects = render(&helm, "ca: {existingSecret: cluster-ca}\n").unwrap();
    assert!(object(&objects, "Secret", None).is_none(), "no CA is generated");
    let ds = object(&objects, "DaemonSet", None).unwrap();
    let volumes = ds["spec"]["template"]["spec"]["volumes"].as_array().unwrap();
    let ca = volumes.iter().find(|v| v["name"] == "ca").unwrap();
    assert_eq!(ca["secret"]["secretName"], "cluster-ca");
}

/// Purges the package even when the test fails half-way.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "tollgate"]).output();
    }
}

fn ok(mut cmd: Command) -> String {
    cmd.env("TOLLGATE_LOG", "warn");
    let what = format!("{cmd:?}");
    let out = run(cmd, Duration::from_secs(120));
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what}: {text}");
    text
}

fn command(program: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args);
    cmd
}

#[test]
fn the_host_agent_package_installs_verifies_trusts_and_purges_cleanly() {
    const TEST: &str = "the_host_agent_package_installs_verifies_trusts_and_purges_cleanly";
    if !privileged(TEST) {
        return;
    }
    let Some(dir) = tests::deploy::artifact(TEST, "debian", "cargo xtask deb") else {
        return;
    };
    let deb = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("a .deb in target/debian");
    assert!(
        !Path::new("/usr/bin/tollgate").exists(),
        "a tollgate is already installed on this machine: the test would replace it"
    );
    let _installed = Installed;
    ok(command("dpkg", &["-i", deb.to_str().unwrap()]));
    for path in [
        "/usr/bin/tollgate",
        "/usr/lib/systemd/system/tollgate.service",
        "/etc/tollgate/tollgate.yaml",
        "/etc/logrotate.d/tollgate",
    ] {
        assert!(Path::new(path).exists(), "{path} not installed");
    }
    assert!(
        !Path::new("/etc/systemd/system/multi-user.target.wants/tollgate.service").exists(),
        "the unit must not be enabled before the CA is trusted"
    );
    ok(command(
        "/usr/bin/tollgate",
        &["validate", "/etc/tollgate/tollgate.yaml"],
    ));
    // systemd checks the unit against the installed binary and this systemd's directives.
    let verify = ok(command(
        "systemd-analyze",
        &["verify", "/usr/lib/systemd/system/tollgate.service"],
    ));
    assert!(!verify.contains("Unknown key"), "{verify}");
    let unit = std::fs::read_to_string("/usr/lib/systemd/system/tollgate.service").unwrap();
    assert!(unit.contains("CapabilityBoundingSet=CAP_BPF CAP_PERFMON CAP_NET_ADMIN CAP_SYS_PTRACE\n"));
    assert!(unit.contains("NoNewPrivileges=yes") && unit.contains("ProtectSystem=strict"));
    ok(command("logrotate", &["--debug", "/etc/logrotate.d/tollgate"]));

    // The CA is created and lands in the system bundle that curl and OpenSSL read.
    let bundle = "/etc/ssl/certs/ca-certificates.crt";
    ok(command("/usr/bin/tollgate", &["trust", "install"]));
    let ca = std::fs::read_to_string("/var/lib/tollgate/ca.crt").unwrap();
    let body: String = ca.lines().filter(|l| !l.starts_with("-----")).collect();
    let in_bundle = || {
        std::fs::read_to_string(bundle)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<String>()
            .contains(&body)
    };
    assert!(in_bundle(), "the CA is not in {bundle}");
    ok(command(
        "openssl",
        &["verify", "-CAfile", bundle, "/var/lib/tollgate/ca.crt"],
    ));

    ok(command("dpkg", &["--purge", "tollgate"]));
    for path in [
        "/usr/bin/tollgate",
        "/usr/lib/systemd/system/tollgate.service",
        "/etc/tollgate",
        "/etc/logrotate.d/tollgate",
        "/var/lib/tollgate",
        "/var/log/tollgate",
        "/usr/local/share/ca-certificates/tollgate-ca.crt",
    ] {
        assert!(!Path::new(path).exists(), "{path} left after purge");
    }
    assert!(!in_bundle(), "the CA is still trusted after purge");
    let status = Command::new("dpkg").args(["-s", "tollgate"]).output().unwrap();
    assert!(!status.status.success(), "dpkg still knows tollgate");
}
