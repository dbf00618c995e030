//! A real container runtime for the deployment tests: a private containerd (its own root,
//! state, sockets, runc root and CNI configuration) driven through its CRI API the way a
//! kubelet drives it, and a small kubelet that turns a rendered pod template (the chart's
//! DaemonSet) into CRI calls: sandbox, volumes (ConfigMap and Secret files laid out as the
//! kubelet lays them out, host paths), environment (the downward API's `status.hostIP`),
//! security context, probes.
//!
//! Everything it creates is removed on drop: sandboxes stopped and removed through CRI, the
//! daemon stopped by its pid, the cgroups it left under the test's parent removed in every
//! hierarchy, its mounts undone, its directory deleted.

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command},
    sync::Mutex,
    time::{Duration, Instant},
};

use k8s_cri::v1::{
    runtime_service_client::RuntimeServiceClient, Capability, ContainerConfig, ContainerMetadata,
    CreateContainerRequest, ImageSpec, KeyValue, LinuxContainerConfig, LinuxContainerSecurityContext,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, Mount, MountPropagation, NamespaceMode, NamespaceOption,
    PodSandboxConfig, PodSandboxMetadata, RemovePodSandboxRequest, RunPodSandboxRequest, SecurityProfile,
    StartContainerRequest, StopPodSandboxRequest, VersionRequest,
};
use serde_json::Value;
use tonic::transport::Channel;

use crate::{runtime, unique};

/// The images every pod here can use: a pause image for sandboxes, busybox for workloads.
pub const PAUSE_IMAGE: &str = "tollgate.test/pause:1";
pub const BUSYBOX_IMAGE: &str = "tollgate.test/busybox:1";

/// A pod as CRI sees it.
#[derive(Clone, Debug, Default)]
pub struct PodSpec {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub host_network: bool,
    pub host_pid: bool,
    /// The kubelet's layout, e.g. `/kubepods/besteffort/pod<uid>`.
    pub cgroup_parent: String,
    pub containers: Vec<ContainerSpec>,
}

#[derive(Clone, Debug, Default)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// (host path, container path, read-only)
    pub mounts: Vec<(PathBuf, String, bool)>,
    pub privileged: bool,
    pub add_capabilities: Vec<String>,
    pub drop_capabilities: Vec<String>,
    pub run_as_user: Option<i64>,
    pub readonly_rootfs: bool,
    pub no_new_privs: bool,
    pub seccomp_runtime_default: bool,
}

/// A private containerd.
pub struct Containerd {
    pub dir: PathBuf,
    pub socket: PathBuf,
    child: Child,
    client: RuntimeServiceClient<Channel>,
    sandboxes: Mutex<Vec<String>>,
    /// Parents of the cgroups pods were given: removed (depth-first) in every hierarchy.
    cgroup_roots: Mutex<Vec<String>>,
}

fn block<F: std::future::Future>(f: F) -> F::Output {
    runtime().block_on(f)
}

fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Containerd {
    /// Starts one with pods on `pod_subnet` (CNI ptp, host-local addresses).
    pub fn start(name: &str, pod_subnet: &str) -> Containerd {
        let dir = std::env::temp_dir().join(format!("tollgate-cri-{}", unique(name)));
        std::fs::create_dir_all(dir.join("cni")).unwrap();
        let d = dir.display();
        let socket = dir.join("containerd.sock");
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{d}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/cni"
"#
        );
        std::fs::write(dir.join("config.toml"), config).unwrap();
        let cni = format!(
            r#"{{"cniVersion":"1.0.0","name":"tollgate-test","plugins":[{{"type":"ptp","ipMasq":false,"ipam":{{"type":"host-local","ranges":[[{{"subnet":"{pod_subnet}"}}]],"routes":[{{"dst":"0.0.0.0/0"}}],"dataDir":"{d}/ipam"}}}}]}}"#
        );
        std::fs::write(dir.join("cni/10-tollgate-test.conflist"), cni).unwrap();
        // The same lazily connected channel Tollgate uses for pod identity.
        let channel = {
            let _runtime = runtime().enter();
            gateway::identity::cri::channel(&socket)
        };
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("containerd (cargo xtask setup installs it)");
        let containerd = Containerd {
            dir,
            socket,
            child,
            client: RuntimeServiceClient::new(channel),
            sandboxes: Mutex::new(Vec::new()),
            cgroup_roots: Mutex::new(Vec::new()),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut c = containerd.client.clone();
            match block(c.version(VersionRequest::default())) {
                Ok(v) if v.get_ref().runtime_name == "containerd" => break,
                other => {
                    assert!(
                        Instant::now() < deadline,
                        "containerd did not answer CRI Version: {other:?}\n{}",
                        containerd.log()
                    );
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        containerd
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    /// Imports an OCI archive as `base_name:<its tag>`.
    pub fn import(&self, archive: &Path, base_name: &str) {
        ok(Command::new("ctr")
            .arg("-a")
            .arg(&self.socket)
            .args(["-n", "k8s.io", "images", "import", "--base-name", base_name])
            .arg(archive));
    }

    /// Builds (umoci, from Debian's static busybox) and imports the pause and busybox images.
    pub fn import_busybox_images(&self) {
        for (name, config) in [
            (
                "pause",
                &["--config.entrypoint=/bin/sleep", "--config.cmd=2147483647"][..],
            ),
            ("busybox", &["--config.entrypoint=/bin/sh"][..]),
        ] {
            let layout = self.dir.join(format!("image-{name}"));
            let bundle = self.dir.join(format!("bundle-{name}"));
            let image = format!("{}:1", layout.display());
            ok(Command::new("umoci").arg("init").arg("--layout").arg(&layout));
            ok(Command::new("umoci").args(["new", "--image", &image]));
            ok(Command::new("umoci").args(["unpack", "--image", &image]).arg(&bundle));
            let bin = bundle.join("rootfs/bin");
            std::fs::create_dir_all(&bin).unwrap();
            std::fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
            for applet in ["sh", "sleep", "wget", "cat", "echo", "ls"] {
                std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
            }
            ok(Command::new("umoci").args(["repack", "--image", &image]).arg(&bundle));
            ok(Command::new("umoci").args(["config", "--image", &image]).args(config));
            let archive = self.dir.join(format!("{name}.tar"));
            ok(Command::new("tar")
                .arg("-C")
                .arg(&layout)
                .arg("-cf")
                .arg(&archive)
                .arg("."));
            std::fs::remove_dir_all(&bundle).unwrap();
            self.import(&archive, &format!("tollgate.test/{name}"));
        }
    }

    /// Runs a pod: its sandbox, then each container created and started. Returns the sandbox
    /// id and the container ids.
    pub fn run_pod(&self, pod: &PodSpec) -> (String, Vec<String>) {
        let logs = self.dir.join("logs").join(&pod.uid);
        std::fs::create_dir_all(&logs).unwrap();
        let namespaces = || NamespaceOption {
            network: if pod.host_network {
                NamespaceMode::Node
            } else {
                NamespaceMode::Pod
            } as i32,
            pid: if pod.host_pid {
                NamespaceMode::Node
            } else {
                NamespaceMode::Container
            } as i32,
            ipc: NamespaceMode::Pod as i32,
            ..Default::default()
        };
        // The kubelet's own labels beside the pod's.
        let mut labels: std::collections::HashMap<String, String> =
            pod.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        labels.insert("io.kubernetes.pod.name".into(), pod.name.clone());
        labels.insert("io.kubernetes.pod.namespace".into(), pod.namespace.clone());
        labels.insert("io.kubernetes.pod.uid".into(), pod.uid.clone());
        let config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: pod.name.clone(),
                uid: pod.uid.clone(),
                namespace: pod.namespace.clone(),
                attempt: 0,
            }),
            log_directory: logs.to_string_lossy().into_owned(),
            labels: labels.clone(),
            annotations: pod.annotations.clone().into_iter().collect(),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: pod.cgroup_parent.clone(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(namespaces()),
                    privileged: pod.containers.iter().any(|c| c.privileged),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.remember_cgroup_root(&pod.cgroup_parent);
        let mut client = self.client.clone();
        let sandbox = block(client.run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        }))
        .unwrap_or_else(|e| panic!("RunPodSandbox {}: {e:?}\n{}", pod.name, self.log()))
        .into_inner()
        .pod_sandbox_id;
        self.sandboxes.lock().unwrap().push(sandbox.clone());
        let mut ids = Vec::new();
        for c in &pod.containers {
            let container = ContainerConfig {
                metadata: Some(ContainerMetadata {
                    name: c.name.clone(),
                    attempt: 0,
                }),
                image: Some(ImageSpec {
                    image: c.image.clone(),
                    ..Default::default()
                }),
                command: c.command.clone(),
                args: c.args.clone(),
                envs: c
                    .env
                    .iter()
                    .map(|(k, v)| KeyValue {
                        key: k.clone(),
                        value: v.clone(),
                    })
                    .collect(),
                mounts: c
                    .mounts
                    .iter()
                    .map(|(host, path, readonly)| Mount {
                        container_path: path.clone(),
                        host_path: host.to_string_lossy().into_owned(),
                        readonly: *readonly,
                        propagation: MountPropagation::PropagationPrivate as i32,
                        ..Default::default()
                    })
                    .collect(),
                labels: [
                    ("io.kubernetes.container.name".to_string(), c.name.clone()),
                    ("io.kubernetes.pod.name".to_string(), pod.name.clone()),
                    ("io.kubernetes.pod.namespace".to_string(), pod.namespace.clone()),
                    ("io.kubernetes.pod.uid".to_string(), pod.uid.clone()),
                ]
                .into(),
                log_path: format!("{}.log", c.name),
                linux: Some(LinuxContainerConfig {
                    security_context: Some(LinuxContainerSecurityContext {
                        capabilities: Some(Capability {
                            add_capabilities: c.add_capabilities.clone(),
                            drop_capabilities: c.drop_capabilities.clone(),
                            ..Default::default()
                        }),
                        privileged: c.privileged,
                        namespace_options: Some(namespaces()),
                        run_as_user: c.run_as_user.map(|value| k8s_cri::v1::Int64Value { value }),
                        readonly_rootfs: c.readonly_rootfs,
                        no_new_privs: c.no_new_privs,
                        seccomp: Some(SecurityProfile {
                            profile_type: if c.seccomp_runtime_default { 0 } else { 1 },
                            localhost_ref: String::new(),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let id = block(client.create_container(CreateContainerRequest {
                pod_sandbox_id: sandbox.clone(),
                config: Some(container),
                sandbox_config: Some(config.clone()),
            }))
            .unwrap_or_else(|e| panic!("CreateContainer {}: {e:?}\n{}", c.name, self.log()))
            .into_inner()
            .container_id;
            block(client.start_container(StartContainerRequest {
                container_id: id.clone(),
            }))
            .unwrap_or_else(|e| panic!("StartContainer {}: {e:?}\n{}", c.name, self.log()));
            ids.push(id);
        }
        (sandbox, ids)
    }

    /// What a container wrote (CRI log format, one line per write).
    pub fn container_log(&self, pod: &PodSpec, container: &str) -> String {
        std::fs::read_to_string(self.dir.join("logs").join(&pod.uid).join(format!("{container}.log")))
            .unwrap_or_default()
    }

    /// Stops and removes a pod's sandbox (its containers with it).
    pub fn remove_pod(&self, sandbox: &str) {
        let mut client = self.client.clone();
        let _ = block(client.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: sandbox.to_string(),
        }));
        let _ = block(client.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: sandbox.to_string(),
        }));
        self.sandboxes.lock().unwrap().retain(|s| s != sandbox);
    }

    fn remember_cgroup_root(&self, parent: &str) {
        let root = parent
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let mut roots = self.cgroup_roots.lock().unwrap();
        if !root.is_empty() && !roots.contains(&root) {
            roots.push(root);
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let sandboxes = self.sandboxes.lock().unwrap().clone();
        for s in sandboxes {
            self.remove_pod(&s);
        }
        #[expect(unsafe_code, reason = "kill(2) by the pid we started")]
        // SAFETY: signalling our own child by pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for root in self.cgroup_roots.lock().unwrap().iter() {
            remove_cgroups(root);
        }
        // Mounts containerd may have left (sandbox shm, rootfs overlays) under our directory.
        let prefix = self.dir.to_string_lossy().into_owned();
        if let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") {
            let mut points: Vec<&str> = mounts
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .filter(|p| p.starts_with(&prefix))
                .collect();
            points.sort_by_key(|p| std::cmp::Reverse(p.len()));
            for p in points {
                let _ = Command::new("umount").arg("-l").arg(p).output();
            }
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("containerd files kept in {}", self.dir.display());
        }
    }
}

/// Removes `/<root>` and everything below it in every cgroup hierarchy (v1 controllers and
/// cgroup2), deepest first; what still has processes stays (and is reported).
pub fn remove_cgroups(root: &str) {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    for line in mounts.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        if !right.starts_with("cgroup") {
            continue;
        }
        let Some(point) = left.split(' ').nth(4) else { continue };
        let top = Path::new(point).join(root);
        let mut dirs = Vec::new();
        let mut stack = vec![top.clone()];
        while let Some(d) = stack.pop() {
            if let Ok(entries) = std::fs::read_dir(&d) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        stack.push(e.path());
                    }
                }
                dirs.push(d);
            }
        }
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in dirs {
            if let Err(e) = std::fs::remove_dir(&d) {
                eprintln!("warning: rmdir {}: {e}", d.display());
            }
        }
    }
}

/// A kubelet's HTTP probe: the status of `GET path` at `addr`, `None` when it cannot connect.
pub fn probe(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: probe\r\n\r\n").ok()?;
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.split_whitespace().nth(1)?.parse().ok()
}

/// What a kubelet makes of a rendered pod template.
pub struct Kubelet<'a> {
    /// Every object the chart rendered (ConfigMaps and Secrets are looked up here).
    pub objects: &'a [Value],
    /// `status.hostIP`.
    pub node_ip: String,
    /// `spec.nodeName`.
    pub node_name: String,
    /// Where volumes are laid out.
    pub volumes: PathBuf,
}

impl Kubelet<'_> {
    /// The CRI pod for `template` (a pod template: `metadata` and `spec`).
    pub fn pod(&self, template: &Value, name: &str, namespace: &str, uid: &str, cgroup_parent: &str) -> PodSpec {
        let spec = &template["spec"];
        let strings = |v: &Value| -> BTreeMap<String, String> {
            v.as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default()
        };
        let volumes: BTreeMap<String, PathBuf> = spec["volumes"]
            .as_array()
            .map(|vs| {
                vs.iter()
                    .map(|v| (v["name"].as_str().unwrap().to_string(), self.volume(v)))
                    .collect()
            })
            .unwrap_or_default();
        let containers = spec["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| self.container(c, &volumes))
            .collect();
        PodSpec {
            name: name.into(),
            namespace: namespace.into(),
            uid: uid.into(),
            labels: strings(&template["metadata"]["labels"]),
            annotations: strings(&template["metadata"]["annotations"]),
            host_network: spec["hostNetwork"] == true,
            host_pid: spec["hostPID"] == true,
            cgroup_parent: cgroup_parent.into(),
            containers,
        }
    }

    fn container(&self, c: &Value, volumes: &BTreeMap<String, PathBuf>) -> ContainerSpec {
        let list = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
                .unwrap_or_default()
        };
        let env = c["env"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        let value = if let Some(v) = e["value"].as_str() {
                            v.to_string()
                        } else {
                            match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                                Some("status.hostIP") => self.node_ip.clone(),
                                Some("spec.nodeName") => self.node_name.clone(),
                                other => panic!("this kubelet does not provide {other:?}"),
                            }
                        };
                        (e["name"].as_str().unwrap().to_string(), value)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mounts = c["volumeMounts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|m| {
                        let name = m["name"].as_str().unwrap();
                        let host = volumes.get(name).unwrap_or_else(|| panic!("no volume {name}"));
                        (
                            host.clone(),
                            m["mountPath"].as_str().unwrap().to_string(),
                            m["readOnly"] == true,
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let sc = &c["securityContext"];
        ContainerSpec {
            name: c["name"].as_str().unwrap().into(),
            image: c["image"].as_str().unwrap().into(),
            command: list(&c["command"]),
            args: list(&c["args"]),
            env,
            mounts,
            privileged: sc["privileged"] == true,
            add_capabilities: list(&sc["capabilities"]["add"]),
            drop_capabilities: list(&sc["capabilities"]["drop"]),
            run_as_user: sc["runAsUser"].as_i64(),
            readonly_rootfs: sc["readOnlyRootFilesystem"] == true,
            no_new_privs: sc["allowPrivilegeEscalation"] == false,
            seccomp_runtime_default: sc["seccompProfile"]["type"] == "RuntimeDefault",
        }
    }

    /// Lays a volume out on the host and returns what to mount.
    fn volume(&self, v: &Value) -> PathBuf {
        let name = v["name"].as_str().unwrap();
        if let Some(path) = v["hostPath"]["path"].as_str() {
            if v["hostPath"]["type"] == "DirectoryOrCreate" {
                std::fs::create_dir_all(path).unwrap();
            }
            return PathBuf::from(path);
        }
        let dir = self.volumes.join(name);
        if let Some(cm) = v["configMap"]["name"].as_str() {
            let object = self.find("ConfigMap", cm);
            let files = object["data"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().as_bytes().to_vec()))
                .collect();
            atomic_write(&dir, files, 0o644);
        } else if let Some(secret) = v["secret"]["secretName"].as_str() {
            use base64::Engine as _;
            let object = self.find("Secret", secret);
            let data = object["data"].as_object().unwrap();
            let keys: Vec<String> = match v["secret"]["items"].as_array() {
                Some(items) => items.iter().map(|i| i["key"].as_str().unwrap().to_string()).collect(),
                None => data.keys().cloned().collect(),
            };
            let files = keys
                .into_iter()
                .map(|k| {
                    let b = base64::engine::general_purpose::STANDARD
                        .decode(data[&k].as_str().unwrap())
                        .unwrap();
                    (k, b)
                })
                .collect();
            let mode = v["secret"]["defaultMode"].as_u64().unwrap_or(0o644) as u32;
            atomic_write(&dir, files, mode);
        } else {
            panic!("this kubelet does not lay out volume {v}");
        }
        dir
    }

    fn find(&self, kind: &str, name: &str) -> &Value {
        self.objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} among the rendered objects"))
    }
}

/// The kubelet's atomic writer layout: files in a timestamped directory, `..data` pointing at
/// it, and each key a link through `..data` (what lets a ConfigMap update swap every file at
/// once).
pub fn atomic_write(dir: &Path, files: Vec<(String, Vec<u8>)>, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(dir).unwrap();
    let stamp = format!("..{}", unique("data"));
    let data = dir.join(&stamp);
    std::fs::create_dir(&data).unwrap();
    for (key, bytes) in &files {
        let file = data.join(key);
        std::fs::write(&file, bytes).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&stamp, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for (key, _) in &files {
        let link = dir.join(key);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{key}"), &link).unwrap();
        }
    }
}
