//! Real Redis for tests: one `redis-server`, or a Redis Cluster of several, on free loopback
//! ports, with their files in a scratch directory. Servers are stopped by their pid on drop (or
//! `stop`), and the directory removed.

use std::{
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::TempDir;

/// A loopback port free right now; with `bus`, port + 10000 (a cluster node's bus) is free too.
/// Ports handed out in this process (and their bus ports) are never handed out again: the
/// tests of one binary run in parallel, and a port free when chosen could otherwise become a
/// cluster node's bus before its own server binds it (the server then fails to start, and the
/// readiness probe reaches the bus instead).
fn free_port(bus: bool) -> u16 {
    static TAKEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let clashes = |p: u16| {
            taken.contains(&p)
                || taken.contains(&p.wrapping_add(10_000))
                || (p > 10_000 && taken.contains(&(p - 10_000)))
        };
        if clashes(port) || (bus && clashes(port.wrapping_add(10_000))) {
            continue;
        }
        if !bus || (port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok()) {
            taken.push(port);
            if bus {
                taken.push(port + 10_000);
            }
            return port;
        }
    }
    panic!("no free port (with its cluster bus port)");
}

/// Runs `redis-cli -p port args…`; stdout, trimmed.
fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A real `redis-server` on a free loopback port, stopped on drop.
pub struct RedisServer {
    pub port: u16,
    /// Arguments after the port, bind, persistence and directory ones.
    extra: Vec<String>,
    dir: PathBuf,
    /// Its own scratch directory (a cluster's nodes share the cluster's).
    _scratch: Option<TempDir>,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// With more arguments, e.g. `["--requirepass", "secret"]`.
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let scratch = TempDir::new("redis");
        let dir = scratch.0.clone();
        RedisServer::start_in(dir, Some(scratch), free_port(false), extra)
    }

    fn start_in(dir: PathBuf, scratch: Option<TempDir>, port: u16, extra: &[&str]) -> RedisServer {
        let mut r = RedisServer {
            port,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            dir,
            _scratch: scratch,
            child: None,
        };
        r.restart();
        r
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the server (a crash, as far as clients can tell).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port, empty (no persistence; a cluster node keeps its
    /// config file, so its identity and slots).
    pub fn restart(&mut self) {
        self.stop();
        let port = self.port.to_string();
        let mut child = Command::new("redis-server")
            .args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (cargo xtask setup installs it)");
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("redis-server on port {port} exited: {status}");
            }
            assert!(start.elapsed() < Duration::from_secs(10), "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    /// Runs `redis-cli` against this server.
    pub fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Redis Cluster of masters without replicas, slots split evenly (`redis-cli --cluster
/// create`), every node on loopback; stopped on drop.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    _dir: TempDir,
}

impl RedisCluster {
    pub fn start(masters: usize) -> RedisCluster {
        let dir = TempDir::new("redis-cluster");
        let nodes: Vec<RedisServer> = (0..masters)
            .map(|i| {
                let conf = format!("nodes-{i}.conf");
                let args = ["--cluster-enabled", "yes", "--cluster-config-file", &conf];
                RedisServer::start_in(dir.0.clone(), None, free_port(true), &args)
            })
            .collect();
        let cluster = RedisCluster { nodes, _dir: dir };
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        create.args(cluster.addrs());
        create.args(["--cluster-replicas", "0", "--cluster-yes"]);
        let out = create.output().expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let start = Instant::now();
        for n in &cluster.nodes {
            while !n.cli(&["cluster", "info"]).contains("cluster_state:ok") {
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "cluster not ok on {}: {}",
                    n.addr(),
                    n.cli(&["cluster", "info"])
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        cluster
    }

    /// `127.0.0.1:port` of every node.
    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::addr).collect()
    }

    /// Runs `redis-cli -c` (following redirections) against the first node.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut all = vec!["-c"];
        all.extend_from_slice(args);
        cli(self.nodes[0].port, &all)
    }

    /// The port of the node serving `key`.
    pub fn owner(&self, key: &str) -> u16 {
        let first = self.nodes[0].port;
        let reply = cli(first, &["GET", key]);
        match reply.strip_prefix("MOVED ") {
            // "MOVED <slot> <host>:<port>"
            Some(moved) => moved
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("redirection {reply:?}")),
            None => first,
        }
    }
}
