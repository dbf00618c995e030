//! Harness for the end-to-end tests: the built `tollgate` binary, real child cgroups, fake
//! provider servers on loopback, and real clients (curl, Python) run inside the cgroup.
//!
//! Privileged tests call [`privileged`] first: without root it prints a loud skip, unless `CI`
//! (or `TOLLGATE_REQUIRE_PRIVILEGED`) is set, in which case it panics, since a skipped test
//! only appears to pass.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, Mutex, OnceLock,
    },
    time::{Duration, Instant},
};

use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

pub mod cri;
pub mod deploy;
pub mod dns;
pub mod fake_llm;
pub mod fake_media;
pub mod l7;
pub mod mcp;
pub mod pipeline;
pub mod redis;
pub mod term;

pub use redis::RedisServer;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Workspace root (parent of this crate).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

/// The `tollgate` binary: `TOLLGATE_BIN`, else `target/debug/tollgate` (built by
/// `cargo xtask test`, or by `cargo build -p gateway`).
pub fn tollgate_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TOLLGATE_BIN") {
        return p.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    let bin = target.join("debug/tollgate");
    assert!(
        bin.exists(),
        "{} not found: run `cargo build -p gateway` (or `cargo xtask test`)",
        bin.display()
    );
    bin
}

/// The Python client script.
pub fn tcp_client() -> PathBuf {
    workspace().join("tests/clients/tcp_client.py")
}

/// The Python with the official SDKs installed (`target/pyvenv`, made by `cargo xtask setup`).
pub fn sdk_python() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    let py = target.join("pyvenv/bin/python");
    assert!(
        py.exists(),
        "{} not found: run `cargo xtask setup` (installs the openai SDK from PyPI)",
        py.display()
    );
    py
}

/// A scratch directory removed on drop (kept when the test panics).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("tollgate-test-{}", unique(name)));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Whether privileged tests can run here. Panics instead of skipping when `CI` or
/// `TOLLGATE_REQUIRE_PRIVILEGED` is set.
pub fn privileged(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    #[expect(unsafe_code, reason = "geteuid has no safe wrapper in std")]
    let root = unsafe { libc::geteuid() } == 0;
    let cgroup2 = cgroup2_root().is_some();
    if root && cgroup2 {
        return true;
    }
    let why = if root {
        "no cgroup2 mount"
    } else {
        "needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN)"
    };
    let required = std::env::var_os("CI").is_some() || std::env::var_os("TOLLGATE_REQUIRE_PRIVILEGED").is_some();
    if required {
        panic!("{test}: cannot run: {why}, and CI/TOLLGATE_REQUIRE_PRIVILEGED requires privileged tests to run");
    }
    eprintln!("SKIPPING {test}: {why} (set TOLLGATE_REQUIRE_PRIVILEGED=1 to fail instead)");
    note_skip(test, why);
    false
}

/// Where skipped tests are listed (one `test<TAB>reason` line each) for `cargo xtask test` to
/// count and report: a skipped test passes in cargo's eyes, never in ours.
pub const ENV_SKIP_LOG: &str = "TOLLGATE_SKIP_LOG";

/// Records a skip in the file `TOLLGATE_SKIP_LOG` names, if any.
pub fn note_skip(test: &str, why: &str) {
    if let Some(path) = std::env::var_os(ENV_SKIP_LOG) {
        let line = format!("{test}\t{why}\n");
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
    }
}

/// The cgroup2 mount point: the daemon's own helper (`/proc/self/mountinfo`).
pub fn cgroup2_root() -> Option<PathBuf> {
    gateway::sysfs::cgroup2_root()
}

pub fn unique(name: &str) -> String {
    format!(
        "{name}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

// === cgroups ===

/// A child cgroup, removed (after killing what is left in it) on drop.
pub struct Cgroup {
    pub path: PathBuf,
}

impl Cgroup {
    pub fn new(name: &str) -> Cgroup {
        let root = cgroup2_root().expect("cgroup2 mount");
        let path = root.join(format!("tollgate-test-{}", unique(name)));
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        Cgroup { path }
    }

    /// Like [`Cgroup::command`], in a private mount namespace whose `/etc/hosts` maps each
    /// `(name, ip)`: the client resolves `api.openai.com` to a fake provider without touching
    /// the machine's own file.
    pub fn command_with_hosts(
        &self,
        dir: &TempDir,
        hosts: &[(&str, &str)],
        program: impl AsRef<std::ffi::OsStr>,
    ) -> Command {
        let file = dir.path("hosts");
        let mut text = String::from("127.0.0.1 localhost\n::1 localhost\n");
        for (name, ip) in hosts {
            text += &format!("{ip} {name}\n");
        }
        std::fs::write(&file, text).unwrap();
        let mut cmd = Command::new("unshare");
        cmd.args(["-m", "--propagation", "private", "sh", "-c"])
            .arg("mount --bind \"$1\" /etc/hosts && shift && echo $$ > \"$0\"/cgroup.procs && exec \"$@\"")
            .arg(&self.path)
            .arg(&file)
            .arg(program);
        cmd
    }

    /// A command that joins this cgroup before exec'ing `program`, so that its sockets belong
    /// to the cgroup (a socket's cgroup is fixed at `socket()`).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("echo $$ > \"$0\"/cgroup.procs && exec \"$@\"")
            .arg(&self.path)
            .arg(program);
        cmd
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::write(self.path.join("cgroup.kill"), "1");
        for _ in 0..50 {
            if std::fs::remove_dir(&self.path).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("warning: could not remove {}", self.path.display());
    }
}

/// Runs a command to completion with a timeout, returning its output.
pub fn run(mut cmd: Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    loop {
        if let Some(_status) = child.try_wait().expect("wait") {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "command timed out after {timeout:?}: {cmd:?}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs the Python client (in `cgroup` when given) and parses its JSON line.
pub fn python_client(cgroup: Option<&Cgroup>, args: &[&str]) -> Value {
    let mut cmd = match cgroup {
        Some(cg) => cg.command("python3"),
        None => Command::new("python3"),
    };
    cmd.arg(tcp_client()).args(args);
    let out = run(cmd, Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "client output is not JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

// === the gateway ===

/// One provider entry of the test config.
pub struct ProviderSpec {
    pub name: String,
    /// Extra YAML lines for this provider (`schema`, `backend`), indented by the builder.
    pub extra: Vec<String>,
    pub mode: &'static str,
    pub addresses: Vec<String>,
    pub hostnames: Vec<String>,
    pub ports: Vec<u16>,
}

/// Builds a config, starts `tollgate run`, waits for its ready file.
pub struct GatewayBuilder {
    cgroup: PathBuf,
    providers: Vec<ProviderSpec>,
    /// YAML appended at the end of the generated config (backends, credentials, routes…).
    extra: String,
    fail_closed: bool,
    node_address4: Option<String>,
    run_in: Option<PathBuf>,
    /// Environment variables of the tollgate process.
    envs: Vec<(String, String)>,
    /// A running instance to take over from (its pins and handover socket).
    predecessor: Option<(PathBuf, PathBuf)>,
    /// `audit.path` instead of the test directory's `audit.jsonl`.
    audit_path: Option<PathBuf>,
    /// More lines of the `audit` section (`maxBytes: 4000`).
    audit_extra: Vec<String>,
    /// More lines of the `dns` section (`learnedMinTtl: 1s`).
    dns_extra: Vec<String>,
}

impl GatewayBuilder {
    pub fn new(cgroup: &Cgroup) -> GatewayBuilder {
        GatewayBuilder {
            cgroup: cgroup.path.clone(),
            providers: vec![],
            extra: String::new(),
            fail_closed: false,
            node_address4: None,
            run_in: None,
            envs: Vec::new(),
            predecessor: None,
            audit_path: None,
            audit_extra: Vec::new(),
            dns_extra: Vec::new(),
        }
    }

    /// Adds a line to the `dns` section, e.g. `learnedMinTtl: 1s` or `learn: false`.
    pub fn dns_setting(mut self, line: &str) -> Self {
        self.dns_extra.push(line.into());
        self
    }

    /// Adds a line to the `audit` section, e.g. `maxBytes: 4000` or
    /// `checkpoint: { records: 5 }`.
    pub fn audit_setting(mut self, line: &str) -> Self {
        self.audit_extra.push(line.into());
        self
    }

    /// Sets `audit.path` (a directory there makes the start fail after the eBPF maps are
    /// loaded and before the programs are attached).
    pub fn audit_path(mut self, path: &Path) -> Self {
        self.audit_path = Some(path.to_path_buf());
        self
    }

    /// Sets an environment variable of the tollgate process.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Captures `addresses` (IPs or CIDRs) on `ports` in mode `mode`.
    pub fn provider(mut self, name: &str, mode: &'static str, addresses: &[&str], ports: &[u16]) -> Self {
        self.providers.push(ProviderSpec {
            name: name.into(),
            mode,
            addresses: addresses.iter().map(|s| s.to_string()).collect(),
            hostnames: vec![],
            ports: ports.to_vec(),
            extra: vec![],
        });
        self
    }

    /// A provider governed by hostname and address, with extra keys (e.g. `backend: x`).
    pub fn llm_provider(
        mut self,
        name: &str,
        hostnames: &[&str],
        addresses: &[&str],
        ports: &[u16],
        extra: &[&str],
    ) -> Self {
        self.providers.push(ProviderSpec {
            name: name.into(),
            mode: "intercept",
            addresses: addresses.iter().map(|s| s.to_string()).collect(),
            hostnames: hostnames.iter().map(|s| s.to_string()).collect(),
            ports: ports.to_vec(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        });
        self
    }

    /// One more line (`key: value`) for the provider named `name`, added before.
    pub fn provider_line(mut self, name: &str, line: &str) -> Self {
        if let Some(p) = self.providers.iter_mut().find(|p| p.name == name) {
            p.extra.push(line.to_string());
        }
        self
    }

    /// A provider with hostnames in any mode (`intercept`, `observe`, `deny`).
    pub fn named_provider(
        mut self,
        name: &str,
        mode: &'static str,
        hostnames: &[&str],
        addresses: &[&str],
        ports: &[u16],
    ) -> Self {
        self.providers.push(ProviderSpec {
            name: name.into(),
            mode,
            addresses: addresses.iter().map(|s| s.to_string()).collect(),
            hostnames: hostnames.iter().map(|s| s.to_string()).collect(),
            ports: ports.to_vec(),
            extra: vec![],
        });
        self
    }

    /// Appends raw YAML (top-level sections) to the generated config.
    pub fn yaml(mut self, text: &str) -> Self {
        self.extra.push_str(text);
        if !text.ends_with('\n') {
            self.extra.push('\n');
        }
        self
    }

    pub fn hostname_provider(mut self, name: &str, hostnames: &[&str], ports: &[u16]) -> Self {
        self.providers.push(ProviderSpec {
            name: name.into(),
            mode: "intercept",
            addresses: vec![],
            hostnames: hostnames.iter().map(|s| s.to_string()).collect(),
            ports: ports.to_vec(),
            extra: vec![],
        });
        self
    }

    /// Starts as the successor of `running`: same pins and handover socket, so that it takes
    /// the listeners, maps and links over (an upgrade).
    pub fn take_over_from(mut self, running: &Gateway) -> Self {
        self.predecessor = Some((running.pin_path.clone(), running.handover_path()));
        self
    }

    pub fn fail_closed(mut self) -> Self {
        self.fail_closed = true;
        self
    }

    pub fn node_address4(mut self, addr: &str) -> Self {
        self.node_address4 = Some(addr.into());
        self
    }

    /// Runs the gateway itself inside this cgroup (to prove its own sockets are skipped).
    pub fn run_inside(mut self, cgroup: &Cgroup) -> Self {
        self.run_in = Some(cgroup.path.clone());
        self
    }

    pub fn start(self) -> Gateway {
        let mut gw = self.spawn();
        let start = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(gw.dir.join("ready.json")) {
                if let Ok(v) = serde_json::from_str(&text) {
                    gw.ready = v;
                    return gw;
                }
            }
            if let Some(status) = gw.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!(
                    "tollgate exited early ({status}):\n{}\nconfig:\n{}",
                    gw.log(),
                    gw.config_yaml
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "tollgate not ready after 30s:\n{}",
                gw.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs a start that must fail: waits (up to 30 s) for `tollgate run` to exit, asserts it
    /// failed, and returns its log and its `capture.pinPath`. The pins are left as the failed
    /// start left them, for the test to look at and remove.
    pub fn start_to_fail(self) -> (String, PathBuf) {
        let mut gw = self.spawn();
        gw.owns_pins = false;
        let start = Instant::now();
        let child = gw.child.as_mut().expect("spawned");
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "tollgate still runs after 30s"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        gw.child = None;
        assert!(!status.success(), "tollgate started:\n{}", gw.log());
        (gw.log(), gw.pin_path.clone())
    }

    /// Writes the config and starts `tollgate run` (without waiting for it).
    fn spawn(self) -> Gateway {
        let dir = std::env::temp_dir().join(format!("tollgate-test-{}", unique("gw")));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let conn_log = dir.join("connections.jsonl");
        let (pin_path, handover) = self.predecessor.clone().unwrap_or_else(|| {
            (
                PathBuf::from("/sys/fs/bpf").join(format!("tollgate-test-{}", unique("pins"))),
                dir.join("handover.sock"),
            )
        });
        let mut yaml = String::new();
        yaml += "listener:\n  addresses: [\"127.0.0.1:0\", \"[::1]:0\"]\n";
        if let Some(node) = &self.node_address4 {
            yaml += &format!("  nodeAddress4: \"{node}\"\n");
        }
        yaml += "admin:\n  address: \"127.0.0.1:0\"\n";
        yaml += &format!("capture:\n  cgroupPath: {}\n", self.cgroup.display());
        yaml += &format!("  failMode: {}\n", if self.fail_closed { "closed" } else { "open" });
        yaml += &format!("  pinPath: {}\n", pin_path.display());
        yaml += &format!("  handoverPath: {}\n", handover.display());
        yaml += &format!("connectionLog: {}\n", conn_log.display());
        // Without providers of its own, the appended YAML brings them (an imported config).
        if !self.providers.is_empty() {
            yaml += "providers:\n";
        }
        for p in &self.providers {
            yaml += &format!("  - name: {}\n    mode: {}\n", p.name, p.mode);
            if !p.addresses.is_empty() {
                yaml += &format!("    addresses: {}\n", serde_json::to_string(&p.addresses).unwrap());
            }
            if !p.hostnames.is_empty() {
                yaml += &format!("    hostnames: {}\n", serde_json::to_string(&p.hostnames).unwrap());
            }
            yaml += &format!("    ports: {:?}\n", p.ports);
            for line in &p.extra {
                yaml += &format!("    {line}\n");
            }
        }
        yaml += &format!(
            "tls:\n  caCert: {}\n  caKey: {}\n",
            dir.join("ca.crt").display(),
            dir.join("ca.key").display()
        );
        // Provider hostnames resolve from a file of the test's own: no DNS query leaves the
        // machine. Each hostname maps to its provider's first address.
        let mut hosts = String::from("127.0.0.1 localhost\n");
        for p in &self.providers {
            if let Some(addr) = p.addresses.first() {
                for h in &p.hostnames {
                    hosts += &format!("{addr} {h}\n");
                }
            }
        }
        std::fs::write(dir.join("gateway-hosts"), hosts).expect("hosts file");
        // The DNS forwarder on a free port: tests run side by side.
        yaml += &format!(
            "dns:\n  hostsFile: {}\n  forwarderPort: 0\n",
            dir.join("gateway-hosts").display()
        );
        for line in &self.dns_extra {
            yaml += &format!("  {line}\n");
        }
        yaml += &format!(
            "audit:\n  path: {}\n  fsync: always\n",
            self.audit_path
                .clone()
                .unwrap_or_else(|| dir.join("audit.jsonl"))
                .display()
        );
        for line in &self.audit_extra {
            yaml += &format!("  {line}\n");
        }
        yaml += &self.extra;
        let config = dir.join("tollgate.yaml");
        std::fs::write(&config, &yaml).expect("write config");
        let ready_file = dir.join("ready.json");
        let log = std::fs::File::create(dir.join("tollgate.log")).expect("log file");
        let mut cmd = match &self.run_in {
            Some(cg) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg("echo $$ > \"$0\"/cgroup.procs && exec \"$@\"")
                    .arg(cg)
                    .arg(tollgate_bin());
                c
            }
            None => Command::new(tollgate_bin()),
        };
        cmd.arg("run")
            .arg("--config")
            .arg(&config)
            .arg("--ready-file")
            .arg(&ready_file)
            .env("TOLLGATE_LOG", "info,gateway=debug")
            .env("RUST_BACKTRACE", "0")
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        let child = cmd.spawn().expect("spawn tollgate");
        Gateway {
            child: Some(child),
            dir,
            ready: Value::Null,
            conn_log,
            pin_path,
            handover,
            owns_pins: true,
            config_yaml: yaml,
            config,
        }
    }
}

/// A running `tollgate`. Dropping it stops it (SIGTERM) and removes its files.
pub struct Gateway {
    child: Option<Child>,
    dir: PathBuf,
    ready: Value,
    conn_log: PathBuf,
    pin_path: PathBuf,
    handover: PathBuf,
    /// Whether dropping this gateway removes the pins (not once a successor took them).
    owns_pins: bool,
    config_yaml: String,
    config: PathBuf,
}

impl Gateway {
    /// The socket a successor takes the listeners over from.
    pub fn handover_path(&self) -> PathBuf {
        self.handover.clone()
    }

    /// Where the programs and maps are pinned (`capture.pinPath`).
    pub fn pin_path(&self) -> &Path {
        &self.pin_path
    }

    /// The pins now belong to a successor: dropping this gateway leaves them.
    pub fn handed_over(&mut self) {
        self.owns_pins = false;
    }

    /// The node CA certificate clients must trust.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// The config file the gateway watches.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The config as first written.
    pub fn config_yaml(&self) -> &str {
        &self.config_yaml
    }

    /// Replaces the config file atomically (write + rename, as a ConfigMap update does).
    pub fn write_config(&self, yaml: &str) {
        let tmp = self.config.with_extension("new");
        std::fs::write(&tmp, yaml).unwrap();
        std::fs::rename(&tmp, &self.config).unwrap();
    }

    /// Replaces the config file and waits until the gateway has read it (its reload counter,
    /// applied or rejected, goes up): no guessing how long a reload takes.
    pub fn reload(&self, yaml: &str) {
        let before = self.metric("tollgate_config_reloads_total");
        self.write_config(yaml);
        let start = Instant::now();
        while self.metric("tollgate_config_reloads_total") == before {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "config not reloaded after 10s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `pred` holds, polling every 20 ms, for at most `within`.
    pub fn wait_until(&self, what: &str, within: Duration, pred: impl Fn() -> bool) {
        let start = Instant::now();
        while !pred() {
            assert!(start.elapsed() < within, "{what}: not after {within:?}\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn ready(&self) -> &Value {
        &self.ready
    }

    pub fn addr(&self, key: &str) -> SocketAddr {
        self.ready[key]
            .as_str()
            .unwrap_or_else(|| panic!("no {key} in ready file"))
            .parse()
            .expect("address")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).expect("running")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("tollgate.log")).unwrap_or_default()
    }

    /// Audit records (one per L7 request) written so far: the audit log's request lines
    /// (without `config` records and the chain's checkpoints).
    pub fn audit_records(&self) -> Vec<Value> {
        requests(self.audit_lines())
    }

    /// Every line of the audit log: request records, `config` records and checkpoints.
    pub fn audit_lines(&self) -> Vec<Value> {
        complete_lines(&std::fs::read_to_string(self.dir.join("audit.jsonl")).unwrap_or_default())
    }

    /// The directory of the gateway's files (config, CA, logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The audit log file.
    pub fn audit_path(&self) -> PathBuf {
        self.dir.join("audit.jsonl")
    }

    /// Waits until at least `n` audit records exist.
    pub fn wait_audit(&self, n: usize) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let r = self.audit_records();
            if r.len() >= n || start.elapsed() > Duration::from_secs(10) {
                return r;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Connection records written so far.
    pub fn records(&self) -> Vec<Value> {
        complete_lines(&std::fs::read_to_string(&self.conn_log).unwrap_or_default())
    }

    /// Waits until `pred` holds for some record.
    pub fn wait_record(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            if let Some(r) = self.records().into_iter().find(&pred) {
                return r;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no connection record {what}; records: {:#?}\nlog:\n{}",
                self.records(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// GET on the admin port; returns (status, body).
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        http_get(self.addr("admin"), path)
    }

    /// The value of one metric sample line (`name{labels}`), summed if it appears with
    /// more labels than given.
    pub fn metric(&self, name_and_labels: &str) -> u64 {
        let (_, body) = self.admin_get("/metrics");
        body.lines()
            .filter(|l| !l.starts_with('#') && l.starts_with(name_and_labels))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|v| v as u64)
            .sum()
    }

    /// Kills the process the hard way (a crash).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on a pid we spawned and still own.
            #[expect(unsafe_code, reason = "sending SIGKILL to our own child")]
            unsafe {
                libc::kill(c.id() as i32, libc::SIGKILL)
            };
            let _ = c.wait();
        }
    }

    /// Stops the process gracefully and waits.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on a pid we spawned and still own.
            #[expect(unsafe_code, reason = "sending SIGTERM to our own child")]
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM)
            };
            let start = Instant::now();
            while c.try_wait().ok().flatten().is_none() {
                if start.elapsed() > Duration::from_secs(15) {
                    let _ = c.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.wait();
        }
    }

    /// Removes the links a fail-closed instance left pinned.
    pub fn detach_pins(&self) {
        let out = run(
            {
                let mut c = Command::new(tollgate_bin());
                c.arg("detach").arg("--pin-path").arg(&self.pin_path);
                c
            },
            Duration::from_secs(10),
        );
        assert!(
            out.status.success(),
            "tollgate detach failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Gateway {
    /// Checks every audit record written so far against `docs/audit.schema.json`.
    pub fn validate_audit(&self) {
        let path = self.audit_path();
        if !path.exists() {
            return;
        }
        let mut cmd = Command::new(sdk_python());
        cmd.arg(workspace().join("tests/clients/validate_audit.py"))
            .arg(workspace().join("docs/audit.schema.json"))
            .arg(&path);
        let out = run(cmd, Duration::from_secs(60));
        assert!(
            out.status.success(),
            "audit records do not match docs/audit.schema.json:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop();
        // Every record any test produces is validated against the published schema.
        if !std::thread::panicking() {
            self.validate_audit();
        }
        if self.owns_pins && self.pin_path.exists() {
            self.detach_pins();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("tollgate files kept in {}", self.dir.display());
        }
    }
}

/// A minimal HTTP/1.0 GET.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect admin");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: tollgate\r\n\r\n").unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).expect("read response");
    let status = buf.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Limits count in windows aligned to UTC minutes, so a burst that straddles a minute boundary
/// is counted in two windows and a test expecting its second request refused would flake. Call
/// this before such a burst: when less than 20 seconds of the current minute are left, it waits
/// for the next minute to begin.
pub fn fresh_minute_window() {
    let into = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        % 60.0;
    if into > 40.0 {
        std::thread::sleep(Duration::from_secs_f64(60.0 - into + 0.2));
    }
}

// === fake provider servers ===

/// The runtime the fake servers run on.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    })
}

/// What a fake server does with each connection.
#[derive(Clone, Copy, Debug)]
pub enum Behaviour {
    /// Reads until EOF and writes everything back.
    Echo,
    /// Reads until EOF, then writes `peer=<address it saw>`.
    Peer,
    /// Reads one HTTP request and answers 200 with a small OpenAI-shaped JSON body.
    Http,
}

/// A fake provider endpoint on a loopback address, recording the peers it saw.
pub struct FakeServer {
    pub addr: SocketAddr,
    pub peers: Arc<Mutex<Vec<SocketAddr>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeServer {
    /// Binds `ip:0` (any address in 127.0.0.0/8 or `::1`).
    pub fn start(ip: &str, behaviour: Behaviour) -> FakeServer {
        let ip: std::net::IpAddr = ip.parse().expect("ip");
        let listener = runtime()
            .block_on(async {
                let socket = if ip.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()?
                } else {
                    tokio::net::TcpSocket::new_v6()?
                };
                socket.bind(SocketAddr::new(ip, 0))?;
                socket.listen(4096)
            })
            .unwrap_or_else(|e| panic!("bind {ip}: {e}"));
        let addr = listener.local_addr().unwrap();
        let peers = Arc::new(Mutex::new(Vec::new()));
        let seen = peers.clone();
        let task = runtime().spawn(async move {
            loop {
                let Ok((mut s, peer)) = listener.accept().await else { continue };
                seen.lock().unwrap().push(peer);
                tokio::spawn(async move {
                    match behaviour {
                        Behaviour::Echo => {
                            let (mut r, mut w) = s.split();
                            let _ = tokio::io::copy(&mut r, &mut w).await;
                            let _ = w.shutdown().await;
                        }
                        Behaviour::Peer => {
                            let mut sink = Vec::new();
                            let _ = s.read_to_end(&mut sink).await;
                            let _ = s.write_all(format!("peer={peer}").as_bytes()).await;
                        }
                        Behaviour::Http => {
                            let mut buf = Vec::new();
                            let mut chunk = [0u8; 4096];
                            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                                match s.read(&mut chunk).await {
                                    Ok(0) | Err(_) => return,
                                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                                }
                            }
                            let body = r#"{"id":"chatcmpl-fake","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"hello from the fake provider"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":6,"total_tokens":11}}"#;
                            let resp = format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                                body.len()
                            );
                            let _ = s.write_all(resp.as_bytes()).await;
                            let _ = s.shutdown().await;
                        }
                    }
                });
            }
        });
        FakeServer { addr, peers, task }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn peers(&self) -> Vec<SocketAddr> {
        self.peers.lock().unwrap().clone()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// === network namespaces (simulated pods) ===

/// A network namespace joined to the host by a veth pair, removed on drop.
pub struct Pod {
    pub netns: String,
    pub host_if: String,
    pub host_ip: String,
    pub pod_ip: String,
}

impl Pod {
    /// Addresses come from 198.18.0.0/15 (RFC 2544, benchmarking), on a /30 that exists only
    /// on this veth pair: nothing is routed off the machine.
    pub fn new(index: u8) -> Pod {
        let id = COUNTER.fetch_add(1, Ordering::Relaxed) % 200;
        let netns = format!("tg{}-{}", std::process::id() % 100_000, id);
        let host_if = format!("tgh{}x{}", std::process::id() % 10_000, id);
        let pod_if = format!("tgp{}x{}", std::process::id() % 10_000, id);
        let third = (std::process::id() % 250) as u8;
        let base = 4 * (index as u32 % 60);
        let host_ip = format!("198.18.{third}.{}", base + 1);
        let pod_ip = format!("198.18.{third}.{}", base + 2);
        let sh = |cmd: String| {
            let out = run(
                {
                    let mut c = Command::new("sh");
                    c.arg("-c").arg(&cmd);
                    c
                },
                Duration::from_secs(10),
            );
            assert!(out.status.success(), "{cmd}: {}", String::from_utf8_lossy(&out.stderr));
        };
        sh(format!("ip netns add {netns}"));
        let pod = Pod {
            netns: netns.clone(),
            host_if: host_if.clone(),
            host_ip: host_ip.clone(),
            pod_ip: pod_ip.clone(),
        };
        sh(format!("ip link add {host_if} type veth peer name {pod_if}"));
        sh(format!("ip link set {pod_if} netns {netns}"));
        sh(format!(
            "ip addr add {host_ip}/30 dev {host_if} && ip link set {host_if} up"
        ));
        sh(format!(
            "ip -n {netns} addr add {pod_ip}/30 dev {pod_if} && ip -n {netns} link set {pod_if} up && ip -n {netns} link set lo up"
        ));
        pod
    }

    /// A command run inside the pod's netns and in `cgroup` (joined before exec).
    pub fn command(&self, cgroup: &Cgroup, program: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("echo $$ > \"$0\"/cgroup.procs && exec ip netns exec \"$@\"")
            .arg(&cgroup.path)
            .arg(&self.netns)
            .arg(program);
        cmd
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.host_if]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).status();
    }
}

/// The request records among audit log lines (leaving out `config` and other records).
pub fn requests(lines: Vec<Value>) -> Vec<Value> {
    lines.into_iter().filter(|r| r["record"] == "request").collect()
}

/// The JSON lines of a log being written: the whole lines, each parsed (a line the writer is
/// still appending, after the last newline, is left for the next read).
pub fn complete_lines(text: &str) -> Vec<Value> {
    let whole = text.rfind('\n').map_or("", |end| &text[..end]);
    whole
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l}")))
        .collect()
}
