//! `cargo xtask bench --peers`: Tollgate beside the proxies people would otherwise run, every
//! figure measured in the same run, systems interleaved round by round (direct, relay, nginx,
//! Tollgate, direct, …) so that the machine's noise falls on all of them alike.
//!
//! Systems, all on loopback against the same fake provider (`l7`), one worker each:
//! - `direct`: the client talks to the fake;
//! - `relay`: a bare tokio relay in between (one extra loopback hop: the floor for any proxy);
//! - `nginx`: Debian's nginx as an L7 reverse proxy (upstream keep-alive, access log on, the
//!   credential header set), plaintext to plaintext;
//! - `tollgate`: an unmodified client captured by eBPF, plaintext L7 (parse, route, credential,
//!   usage, audit record) to the plaintext fake;
//! - and with TLS: `direct-tls`, `nginx-tls` (terminating TLS, TLS upstream), `tollgate-tls`
//!   (interception with the node CA, TLS upstream).
//!
//! For each: p50/p99 at concurrency 1, requests/s at concurrency 16, the proxy's CPU µs per
//! request at concurrency 16 (from /proc, every process of the proxy), RSS idle and peak, and
//! the ratios to nginx; and for streams (64 deltas), the time to first token at concurrency 1 and
//! the proxy's CPU µs per delta at concurrency 16. Results in `bench/results/peers-<time>.json`, a table on stdout, and a
//! chart (`bench/results/peers-<time>.png`, matplotlib in the project's virtualenv).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use super::{
    common::{cpu_us, cpu_us_split, median, process_tree, rss_kib, write_results},
    l7,
};
use crate::util::{self, start_tollgate, Cgroup, Daemon};

/// What `cargo xtask bench --peers` was asked for.
pub(crate) struct PeersRun {
    /// Requests per concurrency-16 run (a quarter of them at concurrency 1).
    pub(crate) requests: usize,
    /// `NAME=PATH`: other Tollgate binaries measured beside this tree's.
    pub(crate) variants: Vec<String>,
    /// Only these systems (and the direct runs); empty: all.
    pub(crate) only: Vec<String>,
    /// Rounds of the interleaved measurements; each figure is the median over rounds.
    pub(crate) rounds: usize,
}

struct System {
    name: String,
    /// Where the client connects.
    addr: SocketAddr,
    /// The CA the client trusts (`-`: plaintext).
    ca: String,
    /// SNI and Host.
    host: &'static str,
    /// The proxy's processes (none for `direct`).
    pids: Vec<u32>,
}

/// One system's measurements in one round.
struct Round {
    /// Chat completions at c=1 and c=16, the proxy's CPU µs per request over the latter.
    c1: Value,
    c16: Value,
    cpu: f64,
    /// The user-space part of `cpu` (the rest is the kernel's: sockets, wake-ups).
    cpu_user: f64,
    /// Streams: time to first token at c=1; streams at c=16, the proxy's CPU µs per delta.
    ttft: Value,
    streams: Value,
    cpu_delta: f64,
}

pub(crate) fn peers(run: &PeersRun) -> anyhow::Result<()> {
    let (requests, variants, rounds_n) = (run.requests, &run.variants, run.rounds.max(1));
    prepare()?;
    let ws = util::workspace();
    let xtask_bin = ws.join("target/release/xtask");
    let dir = std::env::temp_dir().join(format!("tollgate-peers-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;

    let (plain, tls, backends) = start_fakes(&dir)?;
    let fake_ca = backends.fake_ca.clone();

    // The relay and nginx, each in its own process.
    let relay_addr: SocketAddr = "127.10.102.6:18080".parse()?;
    let relay = Daemon(
        Command::new(&xtask_bin)
            .args([
                "bench-client",
                "relay",
                &relay_addr.to_string(),
                &plain.addr.to_string(),
            ])
            .spawn()
            .context("relay")?,
    );
    let (nginx, nginx_plain, nginx_tls, nginx_ca) = start_nginx(&dir, plain.addr, tls.addr, &fake_ca, 4096)?;

    // Tollgate capturing the client's cgroup: the build of this tree, and each `--variant`
    // binary beside it (its own provider addresses, pins and files), all in the same run.
    let cgroup = Cgroup::create(&format!("tollgate-peers-{}", std::process::id()))?;
    let mut instances = vec![start_instance(
        0,
        "tollgate",
        &ws.join("target/release/tollgate"),
        &cgroup,
        &dir,
        &backends,
        &Extra::default(),
    )?];
    for (k, variant) in variants.iter().enumerate() {
        let (name, binary) = variant
            .split_once('=')
            .with_context(|| format!("--variant {variant}: expected NAME=PATH"))?;
        let name: &'static str = Box::leak(format!("tollgate-{name}").into_boxed_str());
        instances.push(start_instance(
            k + 1,
            name,
            Path::new(binary),
            &cgroup,
            &dir,
            &backends,
            &Extra::default(),
        )?);
    }

    let fake_ca_s = fake_ca.display().to_string();
    let nginx_pids = process_tree(nginx.0.id());
    let systems = [
        System {
            name: "direct".into(),
            addr: plain.addr,
            ca: "-".into(),
            host: "vllm.local",
            pids: vec![],
        },
        System {
            name: "relay".into(),
            addr: relay_addr,
            ca: "-".into(),
            host: "vllm.local",
            pids: vec![relay.0.id()],
        },
        System {
            name: "nginx".into(),
            addr: nginx_plain,
            ca: "-".into(),
            host: "vllm.local",
            pids: nginx_pids.clone(),
        },
        System {
            name: "direct-tls".into(),
            addr: tls.addr,
            ca: fake_ca_s.clone(),
            host: "api.openai.com",
            pids: vec![],
        },
        System {
            name: "nginx-tls".into(),
            addr: nginx_tls,
            ca: nginx_ca.display().to_string(),
            host: "api.openai.com",
            pids: nginx_pids.clone(),
        },
    ];
    let mut systems: Vec<System> = systems.into_iter().collect();
    for i in &instances {
        let at = systems
            .iter()
            .position(|s| s.name == "direct-tls")
            .unwrap_or(systems.len());
        systems.insert(
            at,
            System {
                name: i.name.clone(),
                addr: i.plain,
                ca: "-".into(),
                host: "vllm.local",
                pids: vec![i.pid],
            },
        );
        systems.push(System {
            name: format!("{}-tls", i.name),
            addr: i.tls,
            ca: i.node_ca.clone(),
            host: "api.openai.com",
            pids: vec![i.pid],
        });
    }
    if !run.only.is_empty() {
        systems.retain(|s| s.name.starts_with("direct") || run.only.contains(&s.name));
    }
    let idle: Vec<u64> = systems.iter().map(|s| rss_kib(&s.pids, "VmRSS")).collect();

    let client = |s: &System, n: usize, c: usize, stream: Option<&str>| -> anyhow::Result<Value> {
        let mut cmd = cgroup.command(&xtask_bin);
        cmd.args([
            "bench-client",
            "l7",
            &s.addr.to_string(),
            &s.ca,
            &n.to_string(),
            &c.to_string(),
        ])
        .arg(format!("host={}", s.host));
        if let Some(header) = stream {
            cmd.args(["stream", &format!("header={header}")]);
        }
        let out = cmd.stdout(Stdio::piped()).output()?;
        if !out.status.success() {
            bail!("{}: {}", s.name, String::from_utf8_lossy(&out.stderr));
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    };
    // Streams: time to first token at c=1 over an eighth of the requests, the rest of each
    // stream 1 ms after its first event (as tokens come: the rest does not compete with the
    // first for the two cores); CPU per delta at c=16 over a quarter of them (64 deltas each,
    // every delta in its own write, back to back).
    let ttft_pace = format!("{}:1", l7::HOLD_HEADER);
    let delta_pace = format!("{}:delta", l7::PACE_HEADER);
    let (ttft_n, streams_n) = ((requests / 8).max(1), (requests / 4).max(1));
    let mut rounds: Vec<Vec<Round>> = (0..systems.len()).map(|_| Vec::new()).collect();
    for round in 0..rounds_n {
        println!("== round {} of {rounds_n}", round + 1);
        for (i, s) in systems.iter().enumerate() {
            let c1 = client(s, requests / 4, 1, None)?;
            let (before, before_user) = cpu_us_split(&s.pids);
            let c16 = client(s, requests, 16, None)?;
            let (after, after_user) = cpu_us_split(&s.pids);
            let (cpu, cpu_user) = (
                (after - before) / requests as f64,
                (after_user - before_user) / requests as f64,
            );
            let ttft = client(s, ttft_n, 1, Some(&ttft_pace))?;
            let before = cpu_us(&s.pids);
            let streams = client(s, streams_n, 16, Some(&delta_pace))?;
            let cpu_delta = (cpu_us(&s.pids) - before) / (streams_n * l7::STREAM_CHUNKS) as f64;
            let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
            println!(
                "  {:<13} c=1 p50 {:>7.1} µs   c=16 {:>7.0} rps   proxy CPU {:>6.1} µs/request (user {:>5.1})   TTFT p50 {:>7.1} µs   CPU {:>5.2} µs/delta",
                s.name,
                f(&c1, "p50"),
                f(&c16, "rps"),
                cpu,
                cpu_user,
                f(&ttft, "p50"),
                cpu_delta,
            );
            rounds[i].push(Round {
                c1,
                c16,
                cpu,
                cpu_user,
                ttft,
                streams,
                cpu_delta,
            });
        }
    }
    let peak: Vec<u64> = systems.iter().map(|s| rss_kib(&s.pids, "VmHWM")).collect();
    drop(instances);
    drop(nginx);
    drop(relay);
    drop(cgroup);

    let mut rows = serde_json::Map::new();
    for (i, s) in systems.iter().enumerate() {
        let r = &rounds[i];
        let of = |pick: &dyn Fn(&Round) -> f64| median(r.iter().map(pick).collect());
        let at = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        let proxy = |x: f64| if s.pids.is_empty() { Value::Null } else { json!(x) };
        rows.insert(
            s.name.to_string(),
            json!({
                "c1_p50_us": of(&|x| at(&x.c1, "p50")),
                "c1_p99_us": of(&|x| at(&x.c1, "p99")),
                "c16_rps": of(&|x| at(&x.c16, "rps")),
                "c16_p50_us": of(&|x| at(&x.c16, "p50")),
                "cpu_us_per_request": proxy(of(&|x| x.cpu)),
                "cpu_user_us_per_request": proxy(of(&|x| x.cpu_user)),
                "ttft_p50_us": of(&|x| at(&x.ttft, "p50")),
                "ttft_p99_us": of(&|x| at(&x.ttft, "p99")),
                "streams_c16_per_s": of(&|x| at(&x.streams, "rps")),
                "cpu_us_per_delta": proxy(of(&|x| x.cpu_delta)),
                "rss_idle_kib": idle[i],
                "rss_peak_kib": peak[i],
                "rounds": r.iter().map(|x| json!({
                    "c1": x.c1, "c16": x.c16, "cpu_us_per_request": x.cpu, "cpu_user_us_per_request": x.cpu_user,
                    "ttft_c1": x.ttft, "streams_c16": x.streams, "cpu_us_per_delta": x.cpu_delta,
                })).collect::<Vec<_>>(),
            }),
        );
    }
    // Added latency against the direct run of the same transport, and ratios to nginx.
    let get = |name: &str, key: &str| rows.get(name).and_then(|r| r[key].as_f64()).unwrap_or(f64::NAN);
    let mut table = Vec::new();
    let mut compared: Vec<(&str, &str, &str)> = vec![("relay", "direct", "nginx"), ("nginx", "direct", "nginx")];
    compared.extend(
        systems
            .iter()
            .filter(|s| s.name.starts_with("tollgate") && !s.name.ends_with("-tls"))
            .map(|s| (s.name.as_str(), "direct", "nginx")),
    );
    compared.push(("nginx-tls", "direct-tls", "nginx-tls"));
    compared.extend(
        systems
            .iter()
            .filter(|s| s.name.starts_with("tollgate") && s.name.ends_with("-tls"))
            .map(|s| (s.name.as_str(), "direct-tls", "nginx-tls")),
    );
    for (name, base, peer) in compared.into_iter().filter(|c| rows.contains_key(c.0)) {
        let added = get(name, "c1_p50_us") - get(base, "c1_p50_us");
        let added_peer = get(peer, "c1_p50_us") - get(base, "c1_p50_us");
        let row = json!({
            "system": name,
            "added_p50_us": added,
            "added_p99_us": get(name, "c1_p99_us") - get(base, "c1_p99_us"),
            "rps_c16": get(name, "c16_rps"),
            "cpu_us_per_request": get(name, "cpu_us_per_request"),
            "cpu_user_us_per_request": get(name, "cpu_user_us_per_request"),
            "rss_idle_mib": get(name, "rss_idle_kib") / 1024.0,
            "rss_peak_mib": get(name, "rss_peak_kib") / 1024.0,
            "cpu_vs_nginx": get(name, "cpu_us_per_request") / get(peer, "cpu_us_per_request"),
            "rps_vs_nginx": get(name, "c16_rps") / get(peer, "c16_rps"),
            "added_p50_vs_nginx": added / added_peer,
            "ttft_added_p50_us": get(name, "ttft_p50_us") - get(base, "ttft_p50_us"),
            "ttft_added_p99_us": get(name, "ttft_p99_us") - get(base, "ttft_p99_us"),
            "streams_c16_per_s": get(name, "streams_c16_per_s"),
            "cpu_us_per_delta": get(name, "cpu_us_per_delta"),
            "cpu_per_delta_vs_nginx": get(name, "cpu_us_per_delta") / get(peer, "cpu_us_per_delta"),
        });
        table.push(row);
    }
    for row in &table {
        let name = row["system"].as_str().unwrap_or_default().to_string();
        if let Some(r) = rows.get_mut(&name) {
            r["vs"] = row.clone();
        }
    }
    let results = json!({
        "time": super::humantime_now(),
        "machine": super::machine(),
        "requests_c16": requests,
        "requests_c1": requests / 4,
        "rounds": rounds_n,
        "streams_c1": ttft_n,
        "streams_c16": streams_n,
        "deltas_per_stream": l7::STREAM_CHUNKS,
        "systems": rows,
        "table": table,
    });
    let file = write_results("peers", &results)?;
    println!("\n| system | added p50 µs (c=1) | added p99 µs | rps (c=16) | CPU µs/request | of it user | RSS idle MiB | RSS peak MiB | CPU ÷ nginx | rps ÷ nginx |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in &table {
        let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} |",
            r["system"].as_str().unwrap_or(""),
            f("added_p50_us"),
            f("added_p99_us"),
            f("rps_c16"),
            f("cpu_us_per_request"),
            f("cpu_user_us_per_request"),
            f("rss_idle_mib"),
            f("rss_peak_mib"),
            f("cpu_vs_nginx"),
            f("rps_vs_nginx"),
        );
    }
    println!("\n| system | TTFT added p50 µs (c=1) | TTFT added p99 µs | streams/s (c=16) | CPU µs/delta | CPU/delta ÷ nginx |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for r in &table {
        let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
        println!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} |",
            r["system"].as_str().unwrap_or(""),
            f("ttft_added_p50_us"),
            f("ttft_added_p99_us"),
            f("streams_c16_per_s"),
            f("cpu_us_per_delta"),
            f("cpu_per_delta_vs_nginx"),
        );
    }
    println!("\nresults: {}", file.display());
    match super::common::chart("chart.py", &file) {
        Ok(png) => println!("chart: {}", png.display()),
        Err(e) => println!("chart: not drawn ({e:#})"),
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Installs nginx when missing and builds the release binaries the comparisons run.
pub(super) fn prepare() -> anyhow::Result<()> {
    let env = crate::setup::setup()?;
    if util::output("sh", &["-c", "command -v nginx"]).is_none() {
        util::run(
            "apt-get",
            &["install", "-y", "-q", "--no-install-recommends", "nginx-light"],
        )?;
    }
    util::cargo(&env, &["build", "--release", "-p", "gateway", "--bin", "tollgate"])?;
    util::cargo(&env, &["build", "--release", "-p", "xtask"])
}

/// Where the instances send requests.
pub(super) struct Backends {
    pub(super) plain: SocketAddr,
    pub(super) tls: SocketAddr,
    pub(super) fake_ca: PathBuf,
    pub(super) key: PathBuf,
}

/// Starts the fake provider both benches call (plaintext and TLS, on 127.10.102.2) and writes
/// its CA and the credential the instances inject into `dir`.
pub(super) fn start_fakes(dir: &Path) -> anyhow::Result<(l7::Fake, l7::Fake, Backends)> {
    let plain = l7::start_plain_fake("127.10.102.2")?;
    let tls = l7::start_fake("127.10.102.2")?;
    let fake_ca = dir.join("fake-ca.pem");
    std::fs::write(&fake_ca, &tls.ca_pem)?;
    let key = dir.join("key");
    std::fs::write(&key, "sk-bench-real-key")?;
    let backends = Backends {
        plain: plain.addr,
        tls: tls.addr,
        fake_ca,
        key,
    };
    Ok((plain, tls, backends))
}

/// A running Tollgate of the comparison.
pub(super) struct Instance {
    pub(super) name: String,
    pub(super) pid: u32,
    /// The captured addresses its clients call (plaintext provider, TLS provider).
    pub(super) plain: SocketAddr,
    pub(super) tls: SocketAddr,
    pub(super) node_ca: String,
    /// Its admin address (`/metrics`).
    pub(super) admin: Option<String>,
    pub(super) _daemon: Daemon,
}

/// Configuration added to an instance's (the scale runs' generated parts).
#[derive(Default)]
pub(super) struct Extra {
    /// More `providers` items, after the instance's own two (YAML list items).
    pub(super) providers: String,
    /// `routes` items, before any the instance has (YAML list items).
    pub(super) routes: String,
    /// More top-level keys (e.g. `limits:`).
    pub(super) tail: String,
}

/// Starts instance `k` (`binary`) capturing `cgroup`: provider addresses 127.10.102.(3+10k)
/// (plaintext, port 8000) and .(4+10k) (TLS, `api.openai.com`), its own pins and files.
pub(super) fn start_instance(
    k: usize,
    name: &str,
    binary: &Path,
    cgroup: &Cgroup,
    dir: &Path,
    b: &Backends,
    extra: &Extra,
) -> anyhow::Result<Instance> {
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir)?;
    let (plain_ip, tls_ip) = (
        format!("127.10.102.{}", 3 + 10 * k),
        format!("127.10.102.{}", 4 + 10 * k),
    );
    let config = dir.join("tollgate.yaml");
    std::fs::write(
        &config,
        format!(
            "listener:\n  addresses: [\"127.0.0.1:0\"]\nadmin:\n  address: \"127.0.0.1:0\"\n\
             capture:\n  cgroupPath: {cg}\n  pinPath: /sys/fs/bpf/tollgate-peers-{run}-{k}\n  handoverPath: {d}/handover.sock\n\
             connectionLog: {d}/connections.jsonl\ntls:\n  caCert: {d}/ca.crt\n  caKey: {d}/ca.key\n\
             dns:\n  hostsFile: {d}/hosts\naudit:\n  path: {d}/audit.jsonl\n\
             providers:\n  - name: vllm\n    addresses: [\"{plain_ip}\"]\n    ports: [8000]\n    backend: plain\n\
             \x20 - name: openai\n    hostnames: [api.openai.com]\n    addresses: [\"{tls_ip}\"]\n    backend: tls\n{more_providers}\
             backends:\n  - name: plain\n    url: http://{plain}\n    credential: key\n\
             \x20 - name: tls\n    url: https://{tls}\n    credential: key\n    caFile: {ca}\n\
             credentials:\n  - name: key\n    kind: bearer\n    file: {key}\n{routes}{tail}",
            cg = cgroup.0.display(),
            // Pins of this run only: another run on the machine keeps its own.
            run = std::process::id(),
            d = dir.display(),
            plain = b.plain,
            tls = b.tls,
            ca = b.fake_ca.display(),
            key = b.key.display(),
            more_providers = extra.providers,
            routes = if extra.routes.is_empty() { String::new() } else { format!("routes:\n{}", extra.routes) },
            tail = extra.tail,
        ),
    )?;
    std::fs::write(dir.join("hosts"), format!("{tls_ip} api.openai.com\n"))?;
    let (daemon, ready) = start_tollgate(binary, &config, &dir.join("ready.json"), &dir.join("tollgate.log"))?;
    Ok(Instance {
        name: name.to_string(),
        pid: ready["pid"].as_u64().context("pid")? as u32,
        plain: format!("{plain_ip}:8000").parse()?,
        tls: format!("{tls_ip}:443").parse()?,
        node_ca: dir.join("ca.crt").display().to_string(),
        admin: ready["admin"].as_str().map(str::to_string),
        _daemon: daemon,
    })
}

/// nginx (Debian's) with one worker: a plaintext L7 proxy and a TLS-terminating one with a TLS
/// upstream, configured as an operator would for SSE (`proxy_buffering off`: events go out as
/// they come), `worker_connections` per worker. Returns the daemon, both listen addresses and
/// the CA its certificate chains to.
pub(super) fn start_nginx(
    dir: &Path,
    plain: SocketAddr,
    tls: SocketAddr,
    fake_ca: &Path,
    worker_connections: usize,
) -> anyhow::Result<(Daemon, SocketAddr, SocketAddr, PathBuf)> {
    let super::common::Throwaway { ca: ca_cert, leaf, key } =
        super::common::throwaway_ca("bench nginx CA", vec!["api.openai.com".to_string()])?;
    let nginx_dir = dir.join("nginx");
    std::fs::create_dir_all(nginx_dir.join("logs"))?;
    std::fs::write(nginx_dir.join("cert.pem"), leaf.pem() + &ca_cert.pem())?;
    std::fs::write(nginx_dir.join("key.pem"), key.serialize_pem())?;
    let ca = nginx_dir.join("ca.pem");
    std::fs::write(&ca, ca_cert.pem())?;
    let (plain_addr, tls_addr): (SocketAddr, SocketAddr) =
        ("127.10.102.7:18081".parse()?, "127.10.102.7:18443".parse()?);
    let d = nginx_dir.display();
    let conf = format!(
        r#"worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/logs/error.log warn;
events {{ worker_connections {worker_connections}; }}
http {{
    access_log {d}/logs/access.log combined buffer=64k flush=1s;
    # The clients keep their connections for the whole run (nginx closes after 1000 by default).
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    # Streams (SSE): pass every event on as it comes, as an LLM gateway must.
    proxy_buffering off;
    proxy_read_timeout 600s;
    upstream plain {{ server {plain}; keepalive 64; keepalive_requests 10000000; }}
    upstream tls {{ server {tls}; keepalive 64; keepalive_requests 10000000; }}
    server {{
        listen {plain_addr};
        location / {{
            proxy_pass http://plain;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "Bearer sk-bench-real-key";
        }}
    }}
    server {{
        listen {tls_addr} ssl;
        ssl_certificate {d}/cert.pem;
        ssl_certificate_key {d}/key.pem;
        location / {{
            proxy_pass https://tls;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "Bearer sk-bench-real-key";
            proxy_ssl_server_name on;
            proxy_ssl_name api.openai.com;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate {ca};
            proxy_ssl_session_reuse on;
        }}
    }}
}}
"#,
        ca = fake_ca.display(),
    );
    let conf_file = nginx_dir.join("nginx.conf");
    std::fs::write(&conf_file, conf)?;
    let child: Child = Command::new("nginx")
        .arg("-p")
        .arg(&nginx_dir)
        .arg("-c")
        .arg(&conf_file)
        .args(["-g", "daemon off;"])
        .stderr(Stdio::null())
        .spawn()
        .context("nginx")?;
    let daemon = Daemon(child);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(tls_addr).is_err() {
        if std::time::Instant::now() > deadline {
            bail!(
                "nginx did not start: {}",
                std::fs::read_to_string(nginx_dir.join("logs/error.log")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((daemon, plain_addr, tls_addr, ca))
}

/// `bench-client relay LISTEN TARGET`: a bare relay (the floor any proxy is compared with):
/// one current-thread runtime, `copy_bidirectional` per connection.
pub(crate) fn relay(args: &[String]) -> anyhow::Result<()> {
    let [listen, target] = args else {
        bail!("usage: bench-client relay LISTEN TARGET");
    };
    let target: SocketAddr = target.parse()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        loop {
            let (mut client, _) = listener.accept().await?;
            tokio::spawn(async move {
                let _ = client.set_nodelay(true);
                let Ok(mut upstream) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                let _ = upstream.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    })
}
