//! The chart's DaemonSet, run for real: the pod template `helm template` renders is handed to a
//! private containerd through its CRI API (tests::cri, a small kubelet), with the chart's
//! capabilities, mounts, ConfigMap and Secret. Tollgate starts in that container, attaches its
//! programs, and captures an unmodified curl on the host and busybox wget in a pod of its own
//! network namespace; the pod's records name its namespace, pod, container and labels, taken
//! from the same runtime, and a route chosen by namespace and label shapes its request.

use std::{path::PathBuf, process::Command, time::Duration};

use serde_json::Value;
use tests::{
    cri::{probe, ContainerSpec, Containerd, Kubelet, PodSpec, BUSYBOX_IMAGE},
    deploy::{artifact, helm, render},
    fake_llm::FakeLlm,
    privileged, unique,
};

/// Pods get addresses here (CNI ptp); the node's address is added to the host for the test.
const POD_SUBNET: &str = "10.213.0.0/24";
const NODE_IP: &str = "10.213.255.1";
/// A provider address nothing listens on: connects to it are caught by the programs.
const PROVIDER_IP: &str = "10.96.213.20";
/// Where `api.openai.com` resolves for Tollgate (its hosts file) and for curl (`--resolve`).
const TLS_PROVIDER_IP: &str = "10.96.213.21";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn pod_uid() -> String {
    let n = unique("uid");
    let digits: String = n.chars().filter(char::is_ascii_digit).collect();
    format!(
        "{:0>8}-0000-4000-8000-{:0>12}",
        &digits[..digits.len().min(8)],
        digits.len()
    )
}

/// The node's address, on the loopback device (no dummy module here), removed on drop.
struct NodeAddress(String);

impl NodeAddress {
    fn add(ip: &str) -> NodeAddress {
        let cidr = format!("{ip}/32");
        let _ = Command::new("ip").args(["addr", "del", &cidr, "dev", "lo"]).output();
        let out = Command::new("ip")
            .args(["addr", "add", &cidr, "dev", "lo"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ip addr add {cidr}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        NodeAddress(cidr)
    }
}

impl Drop for NodeAddress {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["addr", "del", &self.0, "dev", "lo"]).output();
    }
}

/// A directory of the bpffs (the pods' pins), removed on drop.
struct BpfDir(PathBuf);

impl Drop for BpfDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A cgroup directory under the cgroup2 root (the subtree Tollgate captures here).
struct CgroupDir(PathBuf);

impl Drop for CgroupDir {
    fn drop(&mut self) {
        if let Some(name) = self.0.file_name() {
            tests::cri::remove_cgroups(&name.to_string_lossy());
        }
    }
}

fn records(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_chart_daemonset_runs_in_containerd_and_captures_host_and_pod_workloads() {
    const TEST: &str = "the_chart_daemonset_runs_in_containerd_and_captures_host_and_pod_workloads";
    if !privileged(TEST) {
        return;
    }
    let (Some(helm), Some(image)) = (
        helm(TEST),
        artifact(TEST, "image/tollgate-oci.tar", "cargo xtask image"),
    ) else {
        return;
    };
    let cgroup2 = tests::cgroup2_root().unwrap();
    let name = format!("tollgate-test-{}", unique("k8s"));
    let captured = CgroupDir(cgroup2.join(&name));
    std::fs::create_dir(&captured.0).unwrap();
    let _node = NodeAddress::add(NODE_IP);
    let _pins = BpfDir(PathBuf::from(format!("/sys/fs/bpf/{name}")));
    let backend = FakeLlm::start("vllm", "127.0.0.1", None);
    let (port, admin) = (free_port(), free_port());

    let containerd = Containerd::start("k8s", POD_SUBNET);
    containerd.import_busybox_images();
    containerd.import(&image, "tollgate.test/tollgate");
    let dir = containerd.dir.clone();
    let values = format!(
        r#"image: {{repository: tollgate.test/tollgate, pullPolicy: Never}}
listener: {{port: {port}, ipv6: false}}
admin: {{port: {admin}}}
capture: {{cgroupPath: {cgroup}}}
criSocket: {socket}
recordLabels: [app, "team*"]
hostPaths: {{cgroup: /sys/fs/cgroup, bpf: /sys/fs/bpf/{name}, state: {dir}/state, logs: {dir}/records}}
configFiles:
  hosts: "{TLS_PROVIDER_IP} api.openai.com\n"
config:
  dns: {{hostsFile: /etc/tollgate/config/hosts}}
  providers:
    - {{name: vllm, addresses: ["{PROVIDER_IP}/32"], ports: [8000], backend: vllm}}
    - {{name: openai, hostnames: [api.openai.com], ports: [443], backend: vllm}}
  backends:
    - {{name: vllm, url: "{url}"}}
  routes:
    - name: team-a-notebooks
      match: {{workload: {{namespaces: [team-a], labels: {{app: notebook}}}}}}
      backends: [{{backend: vllm, model: team-a-model}}]
"#,
        cgroup = captured.0.display(),
        socket = containerd.socket.display(),
        dir = dir.display(),
        url = backend.url(false),
    );
    let objects = render(&helm, &values).unwrap_or_else(|e| panic!("helm template: {e}"));
    let daemonset = objects.iter().find(|o| o["kind"] == "DaemonSet").unwrap();
    let kubelet = Kubelet {
        objects: &objects,
        node_ip: NODE_IP.into(),
        node_name: "worker-7".into(),
        volumes: dir.join("volumes"),
    };
    // A pod of the DaemonSet on this node, as the kubelet would make it.
    let daemonset_pod = |pod_name: &str| {
        let uid = pod_uid();
        kubelet.pod(
            &daemonset["spec"]["template"],
            pod_name,
            "tollgate",
            &uid,
            &format!("/{name}-system/kubepods/pod{uid}"),
        )
    };
    let gateway = daemonset_pod("tg-tollgate-node1");
    assert_eq!(
        gateway.containers[0].add_capabilities,
        ["BPF", "PERFMON", "NET_ADMIN", "SYS_PTRACE"]
    );
    assert!(!gateway.containers[0].privileged);
    let (gateway_sandbox, _) = containerd.run_pod(&gateway);

    // Ready as the kubelet's readiness probe sees it.
    let ready = &daemonset["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"];
    let probe_addr = format!("{}:{}", ready["host"].as_str().unwrap(), ready["port"])
        .parse()
        .unwrap();
    let path = ready["path"].as_str().unwrap().to_string();
    let started = std::time::Instant::now();
    while probe(probe_addr, &path) != Some(200) {
        let exited = containerd
            .container_log(&gateway, "tollgate")
            .contains("stderr F Error:");
        assert!(
            started.elapsed() < Duration::from_secs(60) && !exited,
            "tollgate never became ready\ncontainer log:\n{}\ncontainerd:\n{}",
            containerd.container_log(&gateway, "tollgate"),
            containerd.log().lines().rev().take(30).collect::<Vec<_>>().join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let body = r#"{"model":"llama-3","messages":[{"role":"user","content":"hi"}]}"#;
    let endpoint = format!("http://{PROVIDER_IP}:8000/v1/chat/completions");

    // (1) An unmodified curl on the host, in the captured subtree.
    let job = captured.0.join("host-job");
    std::fs::create_dir(&job).unwrap();
    // An unmodified curl in the captured subtree, with `args` before the URL; the answer
    // must be a chat completion.
    let curl = |args: &[&std::ffi::OsStr], url: &str| {
        let out = Command::new("sh")
            .arg("-c")
            .arg("echo $$ > \"$0\"/cgroup.procs && exec \"$@\"")
            .arg(&job)
            .args([
                "curl",
                "-sS",
                "--max-time",
                "20",
                "-H",
                "content-type: application/json",
                "-d",
                body,
            ])
            .args(args)
            .arg(url)
            .output()
            .unwrap();
        let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{url}: {e}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert!(answer["choices"][0]["message"]["content"].is_string(), "{answer}");
    };
    let host_curl = || curl(&[], &endpoint);
    host_curl();

    // (1b) Intercepted TLS: the workload trusts the cluster CA the chart published.
    let ca_map = objects
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == "tg-tollgate-ca")
        .expect("the published CA");
    let ca_file = dir.join("cluster-ca.crt");
    std::fs::write(&ca_file, ca_map["data"]["ca.crt"].as_str().unwrap()).unwrap();
    let resolve = format!("api.openai.com:443:{TLS_PROVIDER_IP}");
    curl(
        &[
            "--resolve".as_ref(),
            resolve.as_ref(),
            "--cacert".as_ref(),
            ca_file.as_os_str(),
        ],
        "https://api.openai.com/v1/chat/completions",
    );

    // (2) busybox wget in a pod of its own network namespace, created through CRI.
    let out_dir = dir.join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let workload_uid = pod_uid();
    let script = format!(
        "wget -q -O /out/answer.json --header 'Content-Type: application/json' --post-data '{body}' {endpoint}; echo $? > /out/rc; sleep 3600"
    );
    let notebook = PodSpec {
        name: "notebook-0".into(),
        namespace: "team-a".into(),
        uid: workload_uid.clone(),
        // Labels as a StatefulSet's controller sets them (the record names it as the owner),
        // and one `recordLabels` leaves out of the record.
        labels: [
            ("app", "notebook"),
            ("team-cost-center", "4711"),
            ("internal-ticket", "SEC-1"),
            ("statefulset.kubernetes.io/pod-name", "notebook-0"),
            ("controller-revision-hash", "notebook-5d8c7f"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into(),
        cgroup_parent: format!("/{name}/kubepods/besteffort/pod{workload_uid}"),
        containers: vec![ContainerSpec {
            name: "client".into(),
            image: BUSYBOX_IMAGE.into(),
            command: vec!["sh".into(), "-c".into(), script],
            mounts: vec![(out_dir.clone(), "/out".into(), false)],
            ..Default::default()
        }],
        ..Default::default()
    };
    let (_, containers) = containerd.run_pod(&notebook);
    let rc = wait_for("the pod's wget", Duration::from_secs(30), || {
        std::fs::read_to_string(out_dir.join("rc")).ok()
    });
    let answer = std::fs::read_to_string(out_dir.join("answer.json")).unwrap_or_default();
    assert_eq!(rc.trim(), "0", "wget in the pod failed: {answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert!(answer["choices"][0]["message"]["content"].is_string(), "{answer}");

    // Both left their records, the pod's with its identity from the runtime.
    let audit = dir.join("records/audit.jsonl");
    let (host, pod) = wait_for("both records", Duration::from_secs(20), || {
        let all = records(&audit);
        let host = all.iter().find(|r| r["workload"]["comm"] == "curl")?.clone();
        let pod = all.iter().find(|r| r["workload"]["comm"] == "wget")?.clone();
        Some((host, pod))
    });
    assert_eq!(host["status"], 200, "{host}");
    assert_eq!(host["workload"]["host_netns"], true);
    assert_eq!(host["workload"]["namespace"], Value::Null, "{host}");
    assert_eq!(host["route"], Value::Null, "the host process is in no pod: {host}");
    assert_eq!(host["model"], "llama-3");
    let tls = records(&audit)
        .into_iter()
        .find(|r| r["destination"]["sni"] == "api.openai.com")
        .expect("a record of the TLS request");
    assert_eq!(tls["destination"]["tls"], true, "{tls}");
    assert_eq!(tls["status"], 200, "{tls}");

    let w = &pod["workload"];
    assert_eq!(pod["status"], 200, "{pod}");
    assert_eq!(w["host_netns"], false, "{pod}");
    assert_eq!(w["namespace"], "team-a", "{pod}");
    assert_eq!(w["pod"], "notebook-0", "{pod}");
    assert_eq!(w["container"], "client", "{pod}");
    assert_eq!(
        w["pod_labels"],
        serde_json::json!({"app": "notebook", "team-cost-center": "4711"}),
        "the labels `recordLabels` chose: {pod}"
    );
    assert_eq!(
        w["owner"],
        serde_json::json!({"kind": "StatefulSet", "name": "notebook"}),
        "{pod}"
    );
    assert_eq!(w["pod_uid"], workload_uid.as_str(), "from the cgroup path: {pod}");
    assert_eq!(w["container_id"], containers[0].as_str(), "{pod}");
    assert_eq!(w["pod_error"], Value::Null, "{pod}");
    assert_eq!(pod["route"], "team-a-notebooks", "routed by namespace and label: {pod}");
    assert_eq!(
        pod["gateway"]["node"], "worker-7",
        "the node's name from spec.nodeName: {pod}"
    );
    let models: Vec<String> = backend
        .received()
        .iter()
        .map(|r| r.body["model"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(models.contains(&"team-a-model".to_string()), "{models:?}");
    assert!(models.contains(&"llama-3".to_string()), "{models:?}");

    // A rolling update with maxSurge: the new pod starts beside the old one on the node and
    // takes its listeners, maps and programs over; then the old pod is deleted.
    let surge = daemonset_pod("tg-tollgate-node1-surge");
    containerd.run_pod(&surge);
    wait_for("the old pod to hand over", Duration::from_secs(60), || {
        containerd
            .container_log(&gateway, "tollgate")
            .contains("handed over")
            .then_some(())
    });
    let surge_log = containerd.container_log(&surge, "tollgate");
    assert!(surge_log.contains("took over"), "{surge_log}");
    containerd.remove_pod(&gateway_sandbox);
    assert_eq!(probe(probe_addr, &path), Some(200), "the new pod answers the probes");
    let curls = || {
        records(&audit)
            .iter()
            .filter(|r| r["workload"]["comm"] == "curl")
            .count()
    };
    let before = curls();
    host_curl();
    wait_for(
        "the record of the request after the update",
        Duration::from_secs(20),
        || (curls() == before + 1).then_some(()),
    );
}
