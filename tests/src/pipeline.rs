//! The L7 pipeline in-process, without eBPF or root: a loopback listener hands every accepted
//! connection to `gateway::proxy::serve` with a connection context of the test's choosing
//! (which providers claim the destination, the SNI, the workload), exactly as the capture
//! listener does after the kernel's lookup. Fake providers speak the real wire formats.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{atomic::AtomicU64, Arc},
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use gateway::{
    auth,
    config::Config,
    identity::Workload,
    limits,
    proxy::{self, ConnCtx, Snapshot, L7},
    route::health::Health,
    socket::{ClientAddr, OrigDstAddr},
    telemetry::{jsonl, Metrics},
};
use serde_json::Value;

use crate::{runtime, TempDir};

/// A running in-process pipeline.
pub struct Pipeline {
    /// Where clients connect (plaintext HTTP).
    pub addr: SocketAddr,
    pub l7: Arc<L7>,
    pub dir: TempDir,
    audit: PathBuf,
    writer: Option<jsonl::Writer>,
    task: tokio::task::JoinHandle<()>,
}

/// What the connection context says about each accepted connection.
#[derive(Clone)]
pub struct Conn {
    /// The original destination the kernel would have recorded.
    pub orig: SocketAddr,
    /// Providers that claim it.
    pub claimants: Vec<String>,
    pub comm: String,
}

impl Pipeline {
    /// Starts the pipeline with `yaml` (a whole config; the audit path is set here) and `conn`
    /// for every connection. Credential files are read from the config.
    pub fn start(yaml: &str, conn: Conn) -> Pipeline {
        let dir = TempDir::new("pipeline");
        let audit = dir.path("audit.jsonl");
        let yaml = format!(
            "{yaml}\naudit:\n  path: {}\n  fsync: always\n  signingKey: {}\n",
            audit.display(),
            dir.path("audit-signing.key").display()
        );
        let config = Arc::new(Config::parse(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}")));
        let metrics = Arc::new(Metrics::new());
        let credentials = Arc::new(auth::Store::default());
        credentials.refresh(&config.credentials, &|_| None);
        let (sink, writer) = jsonl::Writer::start(
            "audit",
            config.audit.clone(),
            jsonl::WhenFull::Wait,
            metrics.log_queue_full("audit"),
        )
        .expect("audit log");
        let _guard = runtime().enter();
        let l7 = Arc::new(L7 {
            snapshot: ArcSwap::from_pointee(Snapshot::applied(config.clone(), 1, "test-node", &sink).expect("clients")),
            instance: gateway::proxy::instance_id(),
            credentials,
            metrics,
            audit: sink,
            spans: None,
            health: Arc::new(Health::new(config.outlier)),
            limits: Arc::new(limits::Store::new(&config.limit_store)),
            recent: Default::default(),
            mcp_streams: Default::default(),
        });
        let listener = runtime()
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().unwrap();
        let shared = l7.clone();
        let ids = Arc::new(AtomicU64::new(1));
        let task = runtime().spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    continue;
                };
                let ctx = Arc::new(ConnCtx {
                    id: ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                    client: ClientAddr(peer),
                    orig: OrigDstAddr(conn.orig),
                    orig_ip: conn.orig.ip().to_string(),
                    sni: None,
                    tls: false,
                    workload: workload(&conn.comm),
                    claimants: conn.claimants.clone(),
                    requests: Default::default(),
                });
                tokio::spawn(proxy::serve(stream, ctx, shared.clone()));
            }
        });
        Pipeline {
            addr,
            l7,
            dir,
            audit,
            writer: Some(writer),
            task,
        }
    }

    /// Audit request records written so far (`config` records and checkpoints left out).
    pub fn records(&self) -> Vec<Value> {
        crate::requests(self.lines())
    }

    /// Every line of the audit log: request records, `config` records and checkpoints.
    pub fn lines(&self) -> Vec<Value> {
        crate::complete_lines(&std::fs::read_to_string(&self.audit).unwrap_or_default())
    }

    /// Waits for `n` records (the writer flushes every 20 ms).
    pub fn wait_records(&self, n: usize) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let r = self.records();
            if r.len() >= n || started.elapsed() > Duration::from_secs(10) {
                return r;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends one HTTP/1.1 request and returns (status, body as JSON or a string).
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
        let addr = self.addr;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nconnection: close\r\ncontent-length: {}\r\n",
            body.len()
        );
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            req += "host: api.openai.com\r\n";
        }
        for (k, v) in headers {
            req += &format!("{k}: {v}\r\n");
        }
        req += "\r\n";
        req += body;
        let raw = runtime().block_on(async move {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
            s.write_all(req.as_bytes()).await.unwrap();
            let mut out = Vec::new();
            tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out))
                .await
                .expect("answer within 20 s")
                .unwrap();
            out
        });
        let text = String::from_utf8_lossy(&raw).to_string();
        let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        let body = dechunk(body);
        (status, serde_json::from_str(&body).unwrap_or(Value::String(body)))
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(w) = self.writer.take() {
            drop(w);
        }
    }
}

/// A chunked HTTP/1.1 body, joined (a body that is not chunked comes back as it is).
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else {
            return body.to_string();
        };
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            return body.to_string();
        };
        if n == 0 {
            return out;
        }
        if after.len() < n {
            return body.to_string();
        }
        out += &after[..n];
        rest = after[n..].strip_prefix("\r\n").unwrap_or(&after[n..]);
    }
}

fn workload(comm: &str) -> Workload {
    Workload {
        pid: std::process::id(),
        tgid: std::process::id(),
        uid: 1000,
        gid: 1000,
        comm: comm.to_string(),
        exe: None,
        cgroup_id: 1,
        cgroup: Some("/test".into()),
        netns_cookie: 1,
        host_netns: true,
        container: Default::default(),
        pod: None,
        pod_error: None,
    }
}
