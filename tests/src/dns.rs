//! DNS for the DNS-learning suites: a real `dnsmasq` on a loopback (or veth) address, answering
//! only the records a test gives it; a stand-in server that answers with bytes a test chooses
//! (garbage, cut short); and clients resolving through a given nameserver.

use std::{
    net::UdpSocket,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{Cgroup, TempDir};

/// A `dnsmasq` serving `records` on `ip:53` (UDP and TCP), nothing else: no upstream, no
/// `/etc/hosts`. Stopped (by its pid) on drop.
pub struct Dnsmasq {
    child: Child,
    pub ip: String,
    pub log: PathBuf,
}

/// One record `dnsmasq` answers.
pub enum Record<'a> {
    /// `name` → `ip`, with a TTL.
    A(&'a str, &'a str, u32),
    /// `alias` → `target` (which must have an `A`), with a TTL.
    Cname(&'a str, &'a str, u32),
}

impl Dnsmasq {
    pub fn start(dir: &TempDir, ip: &str, records: &[Record<'_>]) -> Dnsmasq {
        let log = dir.path(&format!("dnsmasq-{ip}.log"));
        let mut cmd = Command::new("dnsmasq");
        cmd.args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
            "--bind-interfaces",
            "--port=53",
            "--user=root",
            "--pid-file=",
            "--log-queries",
        ])
        .arg(format!("--listen-address={ip}"))
        .arg(format!("--log-facility={}", log.display()));
        for r in records {
            match r {
                Record::A(name, addr, ttl) => cmd.arg(format!("--host-record={name},{addr},{ttl}")),
                Record::Cname(alias, target, ttl) => cmd.arg(format!("--cname={alias},{target},{ttl}")),
            };
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq (cargo xtask setup installs dnsmasq-base)");
        let server = Dnsmasq {
            child,
            ip: ip.into(),
            log,
        };
        // Ready when it answers.
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if query_udp(ip, "ready.invalid", Duration::from_millis(200)).is_some() {
                return server;
            }
        }
        panic!("dnsmasq on {ip} did not answer within 10s");
    }

    /// The names dnsmasq was asked, from its log.
    pub fn asked(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An A query for `name`, id 0x4242.
pub fn a_query(name: &str) -> Vec<u8> {
    let mut q = vec![0x42, 0x42, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// Sends an A query for `name` to `ip:53` from the test process (not captured) and returns the
/// answer's bytes.
pub fn query_udp(ip: &str, name: &str, timeout: Duration) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind(if ip.contains(':') { "[::1]:0" } else { "127.0.0.1:0" }).ok()?;
    socket.set_read_timeout(Some(timeout)).ok()?;
    let addr: std::net::IpAddr = ip.parse().ok()?;
    socket.send_to(&a_query(name), (addr, 53)).ok()?;
    let mut buf = [0u8; 1500];
    let (n, _) = socket.recv_from(&mut buf).ok()?;
    Some(buf[..n].to_vec())
}

/// A stand-in DNS server on `ip:53` (UDP) that answers every query with `answer(query)`.
pub struct ScriptedDns {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ScriptedDns {
    pub fn start(ip: &str, answer: impl Fn(&[u8]) -> Vec<u8> + Send + 'static) -> ScriptedDns {
        let socket = UdpSocket::bind((ip, 53)).expect("bind :53");
        socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok((n, peer)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(&answer(&buf[..n]), peer);
                }
            }
        });
        ScriptedDns {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for ScriptedDns {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `program` in `cgroup`, in a private mount namespace whose `/etc/resolv.conf` names only
/// `nameserver` and whose `/etc/hosts` knows only localhost: every other name is asked over DNS.
pub fn command_resolving_through(cgroup: &Cgroup, dir: &TempDir, nameserver: &str, program: &str) -> Command {
    let resolv = dir.path(&format!("resolv-{nameserver}.conf"));
    std::fs::write(
        &resolv,
        format!("nameserver {nameserver}\noptions timeout:2 attempts:2\n"),
    )
    .unwrap();
    let hosts = dir.path("hosts-dns");
    std::fs::write(&hosts, "127.0.0.1 localhost\n::1 localhost\n").unwrap();
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(
            "mount --bind \"$1\" /etc/resolv.conf && mount --bind \"$2\" /etc/hosts && shift 2 \
             && echo $$ > \"$0\"/cgroup.procs && exec \"$@\"",
        )
        .arg(&cgroup.path)
        .arg(&resolv)
        .arg(&hosts)
        .arg(program);
    cmd
}
