//! `cargo xtask bench --scale`: what Tollgate costs as what it holds grows.
//!
//! - `memory`: the proxy's RSS idle, with N (10,000) idle kept-alive client connections each
//!   holding an open stream (the fake sends the first event, then nothing until the client
//!   goes), and after they close; Tollgate (plaintext L7) beside nginx (plaintext L7 proxy).
//!   Bytes per connection = (RSS open − RSS idle) / N.
//! - cost growth, Tollgate plaintext at sizes 10 … 10,000 of: `routes` (N − 1 that do not
//!   match, then the one that does), `endpoints` (entries in the eBPF endpoint map, and
//!   100,000 too), `cgroups` (N child cgroups of the captured one, a connection made from each so
//!   the identity cache holds them), `limits` (a limit keyed by model with N buckets filled by
//!   requests). At each size a fresh Tollgate with the generated config: added p50/p99 at c=1
//!   over a direct run made beside it, and the proxy's CPU µs per request at c=16; each figure
//!   the median over `--rounds`.
//!
//! Results in `bench/results/scale-<time>.json`, tables on stdout, and a chart
//! (`bench/scale_chart.py`).

use std::{
    io::{BufRead as _, Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use super::{
    common::{cpu_us, median, process_tree, rss_kib, write_results},
    l7,
    peers::{self, Backends, Extra, Instance},
};
use crate::util::{self, Cgroup};

/// What `cargo xtask bench --scale` was asked for.
pub(crate) struct ScaleRun {
    /// Requests per concurrency-16 run (a quarter of them at concurrency 1).
    pub(crate) requests: usize,
    /// Open streams in the memory measurement.
    pub(crate) connections: usize,
    /// `NAME=PATH`: other Tollgate binaries whose memory is measured beside this tree's.
    pub(crate) variants: Vec<String>,
    /// Only these parts (`memory`, `routes`, `endpoints`, `cgroups`, `limits`); empty: all.
    pub(crate) only: Vec<String>,
    /// Measurements per point; each figure is the median.
    pub(crate) rounds: usize,
}

/// Sizes of the growth curves.
const SIZES: [usize; 4] = [10, 100, 1_000, 10_000];
/// Entries the eBPF map of exact IPv4 endpoints holds (`ENDPOINTS_MAX_ENTRIES`).
const ENDPOINT_CAPACITY: usize = 131_072;
/// The endpoint curve's last size (the target), beyond `SIZES`.
const ENDPOINT_TARGET: usize = 100_000;
/// cgroup paths Tollgate's identity cache keeps (`identity::MAX_CACHED_CGROUPS`).
const IDENTITY_CACHE: usize = 8_192;
/// File descriptors for this process and its children (the client, nginx, Tollgate): two
/// per proxied connection on each side, and the fake's.
const NOFILE: u64 = 1 << 20;

/// The growth dimensions, in the order they run.
const DIMENSIONS: [&str; 4] = ["routes", "endpoints", "cgroups", "limits"];

/// What every part shares: the fakes, the client's cgroup, the binaries.
struct Bench {
    dir: PathBuf,
    xtask: PathBuf,
    tollgate: PathBuf,
    plain: l7::Fake,
    tls: l7::Fake,
    backends: Backends,
    cgroup: Cgroup,
}

pub(crate) fn scale(run: &ScaleRun) -> anyhow::Result<()> {
    peers::prepare()?;
    let nofile = raise_nofile(NOFILE)?;
    // A proxy holds two descriptors per stream (client and upstream): more streams than fit
    // under the limit cannot be opened, so the memory run is capped there (and says so).
    let fits = (nofile.saturating_sub(256) / 2 / 100 * 100) as usize;
    let connections = run.connections.min(fits);
    if connections < run.connections {
        println!(
            "RLIMIT_NOFILE is {nofile} here (the hard limit cannot be raised): {connections} open streams instead of {}",
            run.connections
        );
    }
    let ws = util::workspace();
    let dir = std::env::temp_dir().join(format!("tollgate-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (plain, tls, backends) = peers::start_fakes(&dir)?;
    let bench = Bench {
        cgroup: Cgroup::create(&format!("tollgate-scale-{}", std::process::id()))?,
        dir: dir.clone(),
        xtask: ws.join("target/release/xtask"),
        tollgate: ws.join("target/release/tollgate"),
        plain,
        tls,
        backends,
    };
    let wanted = |part: &str| run.only.is_empty() || run.only.iter().any(|o| o == part);

    let memory = if wanted("memory") {
        Some(memory(&bench, connections, &run.variants)?)
    } else {
        None
    };
    let mut growth = serde_json::Map::new();
    for dim in DIMENSIONS.into_iter().filter(|d| wanted(d)) {
        let mut sizes = SIZES.to_vec();
        if dim == "endpoints" {
            sizes.push(ENDPOINT_TARGET.min(ENDPOINT_CAPACITY));
        }
        let mut points = Vec::new();
        for size in sizes {
            let point = growth_point(&bench, dim, size, run)?;
            println!(
                "  {dim:<9} {size:>6}: added p50 {:>6.1} µs  p99 {:>6.1} µs  CPU {:>6.1} µs/request  {:>6.0} rps  (start {:.1} s, fill {:.1} s)",
                point["added_p50_us"].as_f64().unwrap_or(f64::NAN),
                point["added_p99_us"].as_f64().unwrap_or(f64::NAN),
                point["cpu_us_per_request"].as_f64().unwrap_or(f64::NAN),
                point["rps_c16"].as_f64().unwrap_or(f64::NAN),
                point["start_secs"].as_f64().unwrap_or(f64::NAN),
                point["fill_secs"].as_f64().unwrap_or(f64::NAN),
            );
            points.push(point);
        }
        growth.insert(dim.to_string(), Value::Array(points));
    }
    drop(bench);

    let results = json!({
        "time": super::humantime_now(),
        "machine": super::machine(),
        "requests_c16": run.requests,
        "requests_c1": run.requests / 4,
        "rounds": run.rounds.max(1),
        "endpoint_map_capacity": ENDPOINT_CAPACITY,
        "identity_cache_capacity": IDENTITY_CACHE,
        "rlimit_nofile": nofile,
        "connections_requested": run.connections,
        "memory": memory,
        "growth": growth,
    });
    let file = write_results("scale", &results)?;
    print_tables(&results);
    println!("\nresults: {}", file.display());
    match super::common::chart("scale_chart.py", &file) {
        Ok(png) => println!("chart: {}", png.display()),
        Err(e) => println!("chart: not drawn ({e:#})"),
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Raises this process's RLIMIT_NOFILE (soft and hard; children inherit it) to `n`, or, where
/// the hard limit cannot be raised (no CAP_SYS_RESOURCE, as in some containers), the soft one
/// to the hard one. Returns the limit now in force.
fn raise_nofile(n: u64) -> anyhow::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    #[expect(unsafe_code, reason = "getrlimit/setrlimit have no safe wrapper in std")]
    // SAFETY: pointers to a valid rlimit that outlives each call.
    unsafe {
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
            return Ok(n);
        }
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            bail!("getrlimit(RLIMIT_NOFILE): {}", std::io::Error::last_os_error());
        }
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            bail!("setrlimit(RLIMIT_NOFILE): {}", std::io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_max)
}

// === memory ===

/// RSS of Tollgate and of nginx idle, with `n` open streams, and after they closed.
fn memory(b: &Bench, n: usize, variants: &[String]) -> anyhow::Result<Value> {
    let mut systems = serde_json::Map::new();
    println!("== memory: {n} idle kept-alive connections with open streams");
    let mut binaries = vec![("tollgate".to_string(), b.tollgate.clone())];
    for v in variants {
        let (name, path) = v
            .split_once('=')
            .with_context(|| format!("--variant {v}: expected NAME=PATH"))?;
        binaries.push((format!("tollgate-{name}"), PathBuf::from(path)));
    }
    for (name, binary) in &binaries {
        let inst = peers::start_instance(0, name, binary, &b.cgroup, &b.dir, &b.backends, &Extra::default())?;
        systems.insert(name.clone(), hold_streams(b, name, &[inst.pid], inst.plain, n)?);
    }
    {
        let (nginx, addr, _, _) =
            peers::start_nginx(&b.dir, b.plain.addr, b.tls.addr, &b.backends.fake_ca, 4 * n + 1024)?;
        let pids = process_tree(nginx.0.id());
        systems.insert("nginx".into(), hold_streams(b, "nginx", &pids, addr, n)?);
    }
    Ok(json!({ "connections": n, "systems": systems }))
}

/// Opens `n` held streams through the proxy `pids` listening on (or captured at) `addr`.
fn hold_streams(b: &Bench, name: &str, pids: &[u32], addr: SocketAddr, n: usize) -> anyhow::Result<Value> {
    std::thread::sleep(Duration::from_millis(500));
    let idle = rss_kib(pids, "VmRSS");
    let mut child = b
        .cgroup
        .command(&b.xtask)
        .args(["bench-client", "hold", &addr.to_string(), &n.to_string(), "vllm.local"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("hold client")?;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
    let opened: Value = serde_json::from_str(&line).with_context(|| format!("hold client said {line:?}"))?;
    std::thread::sleep(Duration::from_secs(1));
    let open = rss_kib(pids, "VmRSS");
    let held = l7::HELD_STREAMS.load(std::sync::atomic::Ordering::Relaxed);
    drop(child.stdin.take());
    child.wait()?;
    std::thread::sleep(Duration::from_secs(2));
    let after = rss_kib(pids, "VmRSS");
    let held_after = l7::HELD_STREAMS.load(std::sync::atomic::Ordering::Relaxed);
    let peak = rss_kib(pids, "VmHWM");
    let per_conn = (open as f64 - idle as f64) * 1024.0 / n as f64;
    println!(
        "  {name:<9} idle {:>6.1} MiB   {} open streams {:>6.1} MiB ({per_conn:.0} B/connection, {held} held at the fake)   closed {:>6.1} MiB ({held_after} still held)   peak {:>6.1} MiB",
        idle as f64 / 1024.0,
        opened["opened"],
        open as f64 / 1024.0,
        after as f64 / 1024.0,
        peak as f64 / 1024.0,
    );
    Ok(json!({
        "rss_idle_kib": idle,
        "rss_open_kib": open,
        "rss_closed_kib": after,
        "rss_peak_kib": peak,
        "bytes_per_connection": per_conn,
        "held_at_fake": held,
        "held_at_fake_after_close": held_after,
        "client": opened,
    }))
}

/// `bench-client hold ADDR N HOST`: opens N plaintext connections to ADDR, sends a stream
/// request on each that the fake holds open after its first event, reads up to that event,
/// prints `{"opened":…,"failed":…,"secs":…}` and keeps them all until stdin closes.
pub(crate) fn hold_client(args: &[String]) -> anyhow::Result<()> {
    let [addr, n, host] = args else {
        bail!("usage: bench-client hold ADDR N HOST");
    };
    let addr: SocketAddr = addr.parse()?;
    let n: usize = n.parse()?;
    let body = l7::request_body("gpt-4o-mini", true);
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n\
         authorization: Bearer sk-bench-dummy\r\n{}: 3600000\r\ncontent-length: {}\r\n\r\n{body}",
        l7::HOLD_HEADER,
        body.len()
    );
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let started = Instant::now();
    let (streams, failed) = rt.block_on(async move {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        // A few connections in flight at a time: no listener's backlog overflows.
        let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
        let request = std::sync::Arc::new(request);
        let mut tasks = Vec::with_capacity(n);
        for _ in 0..n {
            let (gate, request) = (gate.clone(), request.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = gate.acquire().await?;
                let open = async {
                    let mut s = tokio::net::TcpStream::connect(addr).await?;
                    s.set_nodelay(true)?;
                    s.write_all(request.as_bytes()).await?;
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !seen.windows(3).any(|w| w == b"t0 ") {
                        let k = s.read(&mut buf).await?;
                        if k == 0 {
                            bail!("closed before the first event: {}", String::from_utf8_lossy(&seen));
                        }
                        seen.extend_from_slice(&buf[..k]);
                    }
                    anyhow::Ok(s)
                };
                tokio::time::timeout(Duration::from_secs(30), open).await?
            }));
        }
        let (mut streams, mut failed) = (Vec::with_capacity(n), 0usize);
        for t in tasks {
            match t.await? {
                Ok(s) => streams.push(s),
                Err(e) => {
                    if failed == 0 {
                        eprintln!("hold: {e:#}");
                    }
                    failed += 1;
                }
            }
        }
        anyhow::Ok((streams, failed))
    })?;
    println!(
        "{}",
        json!({ "opened": streams.len(), "failed": failed, "secs": started.elapsed().as_secs_f64() })
    );
    std::io::stdout().flush()?;
    // Held until the bench has measured, then closed together.
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(streams);
    drop(rt);
    Ok(())
}

// === growth ===

impl Bench {
    fn instance(&self, extra: &Extra) -> anyhow::Result<Instance> {
        peers::start_instance(
            0,
            "tollgate",
            &self.tollgate,
            &self.cgroup,
            &self.dir,
            &self.backends,
            extra,
        )
    }

    /// `bench-client l7` to `addr` (plaintext, `vllm.local`) from the captured cgroup.
    fn l7(&self, addr: SocketAddr, n: usize, c: usize, more: &[String]) -> anyhow::Result<Value> {
        let out = self
            .cgroup
            .command(&self.xtask)
            .args([
                "bench-client",
                "l7",
                &addr.to_string(),
                "-",
                &n.to_string(),
                &c.to_string(),
            ])
            .arg("host=vllm.local")
            .args(more)
            .stdout(Stdio::piped())
            .output()?;
        if !out.status.success() {
            bail!("l7 client: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }
}

/// The configuration that puts `size` of `dim` into Tollgate (the instance's own provider,
/// route or bucket counted in).
fn generated(dim: &str, size: usize) -> Extra {
    let mut extra = Extra::default();
    match dim {
        "routes" => {
            // Routes for other versions of the model, none matching, then the one that does.
            for i in 1..size {
                extra.routes += &format!(
                    "  - name: decoy-{i}\n    match: {{ models: [\"gpt-4o-mini-v{i}*\"] }}\n    backends: [{{ backend: plain }}]\n"
                );
            }
            extra.routes += "  - name: match\n    backends: [{ backend: plain }]\n";
        }
        "endpoints" => {
            // The instance's two entries (its plaintext and TLS providers), then addresses of
            // a provider nobody calls, one map entry each.
            let first = u32::from(std::net::Ipv4Addr::new(127, 20, 0, 1));
            let addrs: Vec<String> = (0..size.saturating_sub(2))
                .map(|i| format!("\"{}\"", std::net::Ipv4Addr::from(first + i as u32)))
                .collect();
            if !addrs.is_empty() {
                extra.providers = format!(
                    "  - name: decoys\n    addresses: [{}]\n    ports: [8000]\n",
                    addrs.join(", ")
                );
            }
        }
        "limits" => {
            extra.tail = "limits:\n  - name: per-model\n    match: { models: [\"bench-*\", \"gpt-4o*\"] }\n    key: [model]\n    requestsPerMinute: 1000000000\n    tokensPerMinute: 1000000000000\n".into();
        }
        _ => {}
    }
    extra
}

/// One point of a growth curve: a Tollgate holding `size` of `dim`, filled, then measured
/// `rounds` times beside a direct run.
fn growth_point(b: &Bench, dim: &str, size: usize, run: &ScaleRun) -> anyhow::Result<Value> {
    let (c1_n, c16_n) = ((run.requests / 4).max(1), run.requests.max(1));
    let started = Instant::now();
    let inst = b.instance(&generated(dim, size))?;
    let start_secs = started.elapsed().as_secs_f64();
    let pids = [inst.pid];
    let started = Instant::now();
    // Kept until the point is measured (then removed before the parent).
    let mut children: Vec<Cgroup> = Vec::new();
    match dim {
        "cgroups" => {
            let parent = b
                .cgroup
                .0
                .file_name()
                .context("cgroup name")?
                .to_string_lossy()
                .into_owned();
            for i in 0..size {
                children.push(Cgroup::create(&format!("{parent}/w{i}"))?);
            }
            let out = b
                .cgroup
                .command(&b.xtask)
                .args(["bench-client", "cgroups", &inst.plain.to_string(), "vllm.local"])
                .arg(&b.cgroup.0)
                .arg(size.to_string())
                .output()?;
            if !out.status.success() {
                bail!("cgroups client: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        "limits" => {
            // Buckets live for their minute: fill and measure within one.
            let needed = 10 + 4 * run.rounds.max(1) as u64;
            let into_minute = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH)?.as_secs() % 60;
            if 60 - into_minute < needed {
                std::thread::sleep(Duration::from_secs(61 - into_minute));
            }
            let n = size.saturating_sub(1).max(1);
            b.l7(inst.plain, n, 16.min(n), &[format!("models={n}")])?;
        }
        _ => {}
    }
    let fill_secs = started.elapsed().as_secs_f64();
    let mut rounds = Vec::new();
    for _ in 0..run.rounds.max(1) {
        let direct = b.l7(b.plain.addr, c1_n, 1, &[])?;
        let c1 = b.l7(inst.plain, c1_n, 1, &[])?;
        let before = cpu_us(&pids);
        let c16 = b.l7(inst.plain, c16_n, 16, &[])?;
        let cpu = (cpu_us(&pids) - before) / c16_n as f64;
        rounds.push((direct, c1, c16, cpu));
    }
    let rss = rss_kib(&pids, "VmRSS");
    let metrics = admin_metrics(&inst);
    drop(inst);
    drop(children);
    let at = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let of = |pick: &dyn Fn(&Measured) -> f64| median(rounds.iter().map(pick).collect());
    Ok(json!({
        "size": size,
        "direct_c1_p50_us": of(&|r| at(&r.0, "p50")),
        "c1_p50_us": of(&|r| at(&r.1, "p50")),
        "added_p50_us": of(&|r| at(&r.1, "p50")) - of(&|r| at(&r.0, "p50")),
        "added_p99_us": of(&|r| at(&r.1, "p99")) - of(&|r| at(&r.0, "p99")),
        "rps_c16": of(&|r| at(&r.2, "rps")),
        "cpu_us_per_request": of(&|r| r.3),
        "rss_kib": rss,
        "start_secs": start_secs,
        "fill_secs": fill_secs,
        "metrics": metrics,
        "rounds": rounds.iter().map(|r| json!({"direct_c1": r.0, "c1": r.1, "c16": r.2, "cpu_us_per_request": r.3})).collect::<Vec<_>>(),
    }))
}

/// One measurement of a point: direct at c=1, Tollgate at c=1 and at c=16, its CPU µs/request.
type Measured = (Value, Value, Value, f64);

/// A few of the instance's gauges (endpoint entries, open connections), from its admin port.
fn admin_metrics(inst: &Instance) -> Value {
    let Some(admin) = &inst.admin else { return Value::Null };
    let Ok(mut s) = TcpStream::connect(admin) else {
        return Value::Null;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(s, "GET /metrics HTTP/1.1\r\nhost: {admin}\r\nconnection: close\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let wanted = ["tollgate_endpoint_entries", "tollgate_active_connections"];
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && wanted.iter().any(|w| l.starts_with(w)))
        .collect();
    json!(lines)
}

/// `bench-client cgroups ADDR HOST BASE N`: for each child cgroup `BASE/w<i>`, moves this
/// process into it and makes one plaintext request to ADDR on a new connection (so the proxy
/// resolves and caches that cgroup), then moves back to BASE.
pub(crate) fn cgroup_client(args: &[String]) -> anyhow::Result<()> {
    let [addr, host, base, n] = args else {
        bail!("usage: bench-client cgroups ADDR HOST BASE N");
    };
    let addr: SocketAddr = addr.parse()?;
    let base = Path::new(base);
    let n: usize = n.parse()?;
    let body = l7::request_body("gpt-4o-mini", false);
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n\
         authorization: Bearer sk-bench-dummy\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let me = std::process::id().to_string();
    for i in 0..n {
        std::fs::write(base.join(format!("w{i}/cgroup.procs")), &me)?;
        let mut s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        s.write_all(request.as_bytes())?;
        read_response(&mut s).with_context(|| format!("request from w{i}"))?;
        // RST on close: no TIME_WAIT pile-up over thousands of connections.
        let _ = super::socket_linger_zero(&s);
    }
    std::fs::write(base.join("cgroup.procs"), &me)?;
    Ok(())
}

/// Reads one HTTP/1.1 response with a `content-length` body; fails on a status other than 200.
fn read_response(s: &mut TcpStream) -> anyhow::Result<()> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
            if !head.starts_with("http/1.1 200") {
                bail!("{}", head.lines().next().unwrap_or(""));
            }
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .context("no content-length")?
                .trim()
                .parse()?;
            if seen.len() >= end + 4 + len {
                return Ok(());
            }
        }
        let k = s.read(&mut buf)?;
        if k == 0 {
            bail!("closed mid-response");
        }
        seen.extend_from_slice(&buf[..k]);
    }
}

fn print_tables(results: &Value) {
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    if let Some(systems) = results["memory"]["systems"].as_object() {
        println!(
            "\n| system | RSS idle MiB | RSS with {} open streams MiB | bytes/connection | RSS after close MiB |",
            results["memory"]["connections"]
        );
        println!("| --- | ---: | ---: | ---: | ---: |");
        for (name, m) in systems {
            println!(
                "| {name} | {:.1} | {:.1} | {:.0} | {:.1} |",
                f(m, "rss_idle_kib") / 1024.0,
                f(m, "rss_open_kib") / 1024.0,
                f(m, "bytes_per_connection"),
                f(m, "rss_closed_kib") / 1024.0,
            );
        }
    }
    if let Some(growth) = results["growth"].as_object() {
        println!(
            "\n| dimension | size | added p50 µs (c=1) | added p99 µs | CPU µs/request (c=16) | rps (c=16) | RSS MiB |"
        );
        println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
        for (dim, points) in growth {
            for p in points.as_array().into_iter().flatten() {
                println!(
                    "| {dim} | {} | {:.0} | {:.0} | {:.1} | {:.0} | {:.1} |",
                    p["size"],
                    f(p, "added_p50_us"),
                    f(p, "added_p99_us"),
                    f(p, "cpu_us_per_request"),
                    f(p, "rps_c16"),
                    f(p, "rss_kib") / 1024.0,
                );
            }
        }
    }
}
