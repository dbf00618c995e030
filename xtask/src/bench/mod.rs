//! `cargo xtask bench`: what capture costs, measured against a direct connection on the same
//! machine in the same run (never in a timed test).
//!
//! Servers run in this process on loopback addresses; the client is this binary again
//! (`bench-client`, release build) run inside a child cgroup, first with no programs attached
//! (direct), then with `tollgate run` (release) capturing the servers' addresses.
//! Measured:
//! - `connect()` latency: no programs; programs attached but destination not captured;
//!   destination captured (the connect completes against the proxy);
//! - request/response latency (64-byte ping-pong on one kept-alive connection), direct vs
//!   through the relay, with the proxy's CPU time per round trip;
//! - bulk throughput, direct vs through the relay.
//!
//! Results: `bench/results/capture-<unix time>.json`, and a table on stdout.

mod common;
mod dns;
mod l7;
mod mcp;
mod peers;
mod scale;

pub(crate) use dns::{dns, DnsRun};
pub(crate) use mcp::{mcp, McpRun};
pub(crate) use peers::{peers, PeersRun};
pub(crate) use scale::{scale, ScaleRun};

use common::percentiles;
use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::Path,
    process::Stdio,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use crate::{
    setup,
    util::{self, start_tollgate, Cgroup},
};

const RR_SIZE: usize = 64;
const TPUT_BYTES: u64 = 1 << 30;

pub(crate) fn bench(iterations: usize) -> anyhow::Result<()> {
    let env = setup::setup()?;
    util::cargo(&env, &["build", "--release", "-p", "gateway", "--bin", "tollgate"])?;
    util::cargo(&env, &["build", "--release", "-p", "xtask"])?;
    let ws = util::workspace();
    // `TOLLGATE_BENCH_WRAPPER=/path/script`: start tollgate through a wrapper (e.g. one that
    // runs it under `perf record`); the script receives tollgate's arguments.
    let tollgate = std::env::var_os("TOLLGATE_BENCH_WRAPPER")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| ws.join("target/release/tollgate"));
    let client_bin = ws.join("target/release/xtask");
    let dir = std::env::temp_dir().join(format!("tollgate-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;

    let fake = l7::start_fake("127.10.101.2")?;
    let fake_ca = dir.join("fake-ca.pem");
    std::fs::write(&fake_ca, &fake.ca_pem)?;
    let key_file = dir.join("openai-key");
    std::fs::write(&key_file, "sk-bench-real-key")?;
    // Provider hostnames resolve from this file: no DNS query leaves the machine.
    std::fs::write(
        dir.join("hosts"),
        "127.10.101.1 api.openai.com\n127.10.101.3 api.anthropic.com\n",
    )?;
    let aws_file = dir.join("aws-keys");
    std::fs::write(&aws_file, "AKIDBENCH:bench-secret-access-key")?;
    let echo = serve("127.10.100.1:0", Mode::Echo)?;
    let sink = serve("127.10.100.2:0", Mode::Sink)?;
    let other = serve("127.10.100.3:0", Mode::Echo)?;
    let cgroup = Cgroup::create(&format!("tollgate-bench-{}", std::process::id()))?;
    let connects = (iterations / 4).max(1000);

    let client = |args: &[String]| -> anyhow::Result<Value> {
        let out = cgroup
            .command(&client_bin)
            .arg("bench-client")
            .args(args)
            .stdout(Stdio::piped())
            .output()
            .context("bench client")?;
        if !out.status.success() {
            bail!("bench client {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    };
    let s = |x: &dyn ToString| x.to_string();
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);

    println!("== direct (no programs attached)");
    let connect_direct = client(&[s(&"connect"), s(&echo), s(&connects)])?;
    let rr_direct = client(&[s(&"rr"), s(&echo), s(&iterations)])?;
    let tput_direct = client(&[s(&"tput"), s(&sink), s(&TPUT_BYTES)])?;
    let l7_args = |addr: &dyn ToString, ca: &Path, n: usize, c: usize, stream: bool| {
        let mut a = vec![s(&"l7"), addr.to_string(), ca.display().to_string(), s(&n), s(&c)];
        if stream {
            a.push(s(&"stream"));
        }
        a
    };
    let l7_n = iterations / 2;
    let l7_direct_c1 = client(&l7_args(&fake.addr, &fake_ca, l7_n, 1, false))?;
    let l7_direct_c16 = client(&l7_args(&fake.addr, &fake_ca, l7_n, 16, false))?;
    let ttft_direct = client(&l7_args(&fake.addr, &fake_ca, l7_n / 4, 1, true))?;

    println!("== through tollgate");
    let config = dir.join("tollgate.yaml");
    std::fs::write(
        &config,
        format!(
            "{workers}listener:\n  addresses: [\"127.0.0.1:0\"]\nadmin:\n  address: \"127.0.0.1:0\"\ncapture:\n  cgroupPath: {}\n  pinPath: /sys/fs/bpf/tollgate-bench\n  handoverPath: {dir}/handover.sock\n\
             connectionLog: {}\ntls:\n  caCert: {dir}/ca.crt\n  caKey: {dir}/ca.key\ndns:\n  hostsFile: {dir}/hosts\n\
             providers:\n  - name: bench\n    addresses: [\"{}\", \"{}\"]\n    ports: [{}, {}]\n\
             \x20 - name: openai\n    hostnames: [api.openai.com]\n    addresses: [\"127.10.101.1\"]\n    backend: fake\n\
             \x20 - name: anthropic\n    hostnames: [api.anthropic.com]\n    addresses: [\"127.10.101.3\"]\n    schema: anthropic\n    backend: fake-anthropic\n\
             backends:\n  - name: fake\n    url: https://{fake}\n    credential: key\n    caFile: {fake_ca}\n\
             \x20 - name: fake-anthropic\n    url: https://{fake}\n    schema: anthropic\n    credential: key\n    caFile: {fake_ca}\n\
             \x20 - name: fake-gemini\n    url: https://{fake}\n    schema: gemini\n    credential: gemini-key\n    caFile: {fake_ca}\n\
             \x20 - name: fake-bedrock\n    url: https://{fake}\n    schema: bedrock\n    region: us-east-1\n    credential: aws\n    caFile: {fake_ca}\n\
             credentials:\n  - name: key\n    kind: bearer\n    file: {key}\n\
             \x20 - name: gemini-key\n    kind: xGoogApiKey\n    file: {key}\n\
             \x20 - name: aws\n    kind: awsSigV4\n    file: {aws}\n",
            cgroup.0.display(),
            dir.join("connections.jsonl").display(),
            echo.ip(),
            sink.ip(),
            echo.port(),
            sink.port(),
            fake = fake.addr,
            fake_ca = fake_ca.display(),
            key = key_file.display(),
            aws = aws_file.display(),
            dir = dir.display(),
            // `TOLLGATE_BENCH_WORKERS=N`: the proxy's worker threads (default: one per CPU).
            workers = std::env::var("TOLLGATE_BENCH_WORKERS").map(|n| format!("workerThreads: {n}\n")).unwrap_or_default(),
        ),
    )?;
    let (mut daemon, ready) = start_tollgate(&tollgate, &config, &dir.join("ready.json"), &dir.join("tollgate.log"))?;
    let pid = ready["pid"].as_u64().context("pid")? as u32;
    let connect_nomatch = client(&[s(&"connect"), s(&other), s(&connects)])?;
    let connect_captured = client(&[s(&"connect"), s(&echo), s(&connects)])?;
    let cpu_before = cpu_time(pid)?;
    let rr_captured = client(&[s(&"rr"), s(&echo), s(&iterations)])?;
    let cpu_rr = cpu_time(pid)? - cpu_before;
    let tput_captured = client(&[s(&"tput"), s(&sink), s(&TPUT_BYTES)])?;
    let node_ca = dir.join("ca.crt");
    let captured = "127.10.101.1:443";
    let cpu_before = cpu_time(pid)?;
    let l7_c1 = client(&l7_args(&captured, &node_ca, l7_n, 1, false))?;
    let cpu_l7 = cpu_time(pid)? - cpu_before;
    let l7_c16 = client(&l7_args(&captured, &node_ca, l7_n, 16, false))?;
    // `TOLLGATE_BENCH_L7_ONLY=1`: stop after the L7 chat completion runs (for profiling loops).
    if std::env::var_os("TOLLGATE_BENCH_L7_ONLY").is_some() {
        daemon.stop();
        println!(
            "L7 c=1: direct p50 {:.1} µs, through tollgate {:.1} µs (added {:.1}); proxy CPU {:.1} µs per request; c=16: {:.0} rps direct, {:.0} rps through tollgate",
            f(&l7_direct_c1, "p50"),
            f(&l7_c1, "p50"),
            f(&l7_c1, "p50") - f(&l7_direct_c1, "p50"),
            cpu_l7.as_secs_f64() * 1e6 / l7_n as f64,
            f(&l7_direct_c16, "rps"),
            f(&l7_c16, "rps"),
        );
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(());
    }
    let ttft_captured = client(&l7_args(&captured, &node_ca, l7_n / 4, 1, true))?;
    // Limits: the same requests with a (never reached) tokens-per-minute limit, counted in
    // memory, then in Redis on loopback. The config is swapped by hot reload.
    let base_config = std::fs::read_to_string(&config)?;
    let limit = "limits:\n  - name: bench\n    tokensPerMinute: 1000000000\n    requestsPerMinute: 1000000000\n";
    let reload = |extra: &str| -> anyhow::Result<()> {
        let tmp = dir.join("tollgate.yaml.new");
        std::fs::write(&tmp, format!("{base_config}{extra}"))?;
        std::fs::rename(&tmp, &config)?;
        std::thread::sleep(Duration::from_millis(2500));
        Ok(())
    };
    reload(limit)?;
    let l7_local_limit = client(&l7_args(&captured, &node_ca, l7_n / 2, 1, false))?;
    let redis = start_redis()?;
    let l7_redis_limit = match &redis {
        Some((_, port)) => {
            reload(&format!("{limit}limitStore:\n  redis: \"127.0.0.1:{port}\"\n"))?;
            Some(client(&l7_args(&captured, &node_ca, l7_n / 2, 1, false))?)
        }
        None => None,
    };
    if let Some((mut child, _)) = redis {
        let _ = child.kill();
        let _ = child.wait();
    }
    // Translation: the same client requests, answered by the same fake in the backend's API,
    // against the passthrough of the same client to a backend of its own API (OpenAI clients:
    // the runs above; Anthropic clients: the next two). Routes are swapped in by hot reload.
    reload("")?;
    let anthropic_args = |stream: bool| {
        let mut a = l7_args(
            &"127.10.101.3:443",
            &node_ca,
            if stream { l7_n / 4 } else { l7_n / 2 },
            1,
            stream,
        );
        a.push(s(&"anthropic"));
        a
    };
    let anthropic_passthrough = (client(&anthropic_args(false))?, client(&anthropic_args(true))?);
    let openai_passthrough = (l7_c1.clone(), ttft_captured.clone());
    let mut translations = serde_json::Map::new();
    let mut translation_rows = Vec::new();
    for (name, backend, anthropic_client) in [
        ("openai_to_anthropic", "fake-anthropic, model: claude-sonnet-4-5", false),
        ("openai_to_gemini", "fake-gemini, model: gemini-2.5-flash", false),
        (
            "openai_to_bedrock",
            "fake-bedrock, model: \"anthropic.claude-3-5-haiku-20241022-v1:0\"",
            false,
        ),
        ("anthropic_to_openai", "fake, model: gpt-4o-mini", true),
    ] {
        reload(&format!(
            "routes:\n  - name: translate\n    backends: [{{ backend: {backend} }}]\n"
        ))?;
        let (json_run, ttft_run) = if anthropic_client {
            (client(&anthropic_args(false))?, client(&anthropic_args(true))?)
        } else {
            (
                client(&l7_args(&captured, &node_ca, l7_n / 2, 1, false))?,
                client(&l7_args(&captured, &node_ca, l7_n / 4, 1, true))?,
            )
        };
        let (base, base_ttft) = if anthropic_client {
            &anthropic_passthrough
        } else {
            &openai_passthrough
        };
        translations.insert(
            name.to_string(),
            json!({
                "passthrough": base,
                "translated": json_run,
                "added_p50": f(&json_run, "p50") - f(base, "p50"),
                "added_p99": f(&json_run, "p99") - f(base, "p99"),
                "ttft_passthrough": base_ttft,
                "ttft_translated": ttft_run,
                "ttft_added_p50": f(&ttft_run, "p50") - f(base_ttft, "p50"),
                "ttft_added_p99": f(&ttft_run, "p99") - f(base_ttft, "p99"),
            }),
        );
        translation_rows.push(name);
    }
    daemon.stop();
    drop(cgroup);

    let results = json!({
        "time": humantime_now(),
        "machine": machine(),
        "iterations": iterations,
        "connect_us": {
            "no_programs": connect_direct,
            "attached_not_captured": connect_nomatch,
            "captured": connect_captured,
        },
        "request_response_64B_us": {
            "direct": rr_direct,
            "relay": rr_captured,
            "added_p50": f(&rr_captured, "p50") - f(&rr_direct, "p50"),
            "added_p99": f(&rr_captured, "p99") - f(&rr_direct, "p99"),
            "proxy_cpu_us_per_round_trip": cpu_rr.as_secs_f64() * 1e6 / iterations as f64,
        },
        "throughput_MiB_s": {
            "direct": f(&tput_direct, "mib_s"),
            "relay": f(&tput_captured, "mib_s"),
        },
        "l7_chat_completion_https_keepalive_us": {
            "c1": {
                "direct": l7_direct_c1,
                "tollgate": l7_c1,
                "added_p50": f(&l7_c1, "p50") - f(&l7_direct_c1, "p50"),
                "added_p99": f(&l7_c1, "p99") - f(&l7_direct_c1, "p99"),
                "proxy_cpu_us_per_request": cpu_l7.as_secs_f64() * 1e6 / l7_n as f64,
            },
            "c16": {
                "direct": l7_direct_c16,
                "tollgate": l7_c16,
                "added_p50": f(&l7_c16, "p50") - f(&l7_direct_c16, "p50"),
                "added_p99": f(&l7_c16, "p99") - f(&l7_direct_c16, "p99"),
            },
            "limit_check": {
                "none": l7_c1,
                "local": l7_local_limit,
                "redis": l7_redis_limit,
                "added_p50_local": f(&l7_local_limit, "p50") - f(&l7_c1, "p50"),
                "added_p99_local": f(&l7_local_limit, "p99") - f(&l7_c1, "p99"),
                "added_p50_redis": l7_redis_limit.as_ref().map(|r| f(r, "p50") - f(&l7_c1, "p50")),
                "added_p99_redis": l7_redis_limit.as_ref().map(|r| f(r, "p99") - f(&l7_c1, "p99")),
            },
            "translations": translations,
            "time_to_first_token_64_chunk_stream": {
                "direct": ttft_direct,
                "tollgate": ttft_captured,
                "added_p50": f(&ttft_captured, "p50") - f(&ttft_direct, "p50"),
                "added_p99": f(&ttft_captured, "p99") - f(&ttft_direct, "p99"),
            },
        },
    });
    let results_dir = ws.join("bench/results");
    std::fs::create_dir_all(&results_dir)?;
    let secs = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH)?.as_secs();
    let file = results_dir.join(format!("capture-{secs}.json"));
    std::fs::write(&file, serde_json::to_string_pretty(&results)?)?;
    let _ = std::fs::remove_dir_all(&dir);

    println!("\n| measurement | p50 µs | p99 µs |");
    println!("| --- | ---: | ---: |");
    for (name, v) in [
        ("connect(), no programs", &results["connect_us"]["no_programs"]),
        (
            "connect(), attached, not captured",
            &results["connect_us"]["attached_not_captured"],
        ),
        ("connect(), captured (to the proxy)", &results["connect_us"]["captured"]),
        ("64 B round trip, direct", &rr_direct),
        ("64 B round trip, through the relay", &rr_captured),
        ("chat completion HTTPS, c=1, direct to the fake", &l7_direct_c1),
        ("chat completion HTTPS, c=1, through tollgate", &l7_c1),
        ("chat completion HTTPS, c=16, direct", &l7_direct_c16),
        ("chat completion HTTPS, c=16, through tollgate", &l7_c16),
        ("stream time to first chunk, direct", &ttft_direct),
        ("stream time to first chunk, through tollgate", &ttft_captured),
        ("chat completion c=1, with a local limit", &l7_local_limit),
        (
            "chat completion c=1, with a Redis limit",
            l7_redis_limit.as_ref().unwrap_or(&Value::Null),
        ),
    ] {
        println!("| {name} | {:.1} | {:.1} |", f(v, "p50"), f(v, "p99"));
    }
    println!("\n| translation (c=1, through tollgate) | added p50 µs | added p99 µs | TTFT added p50 µs | TTFT added p99 µs |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for name in &translation_rows {
        let t = &results["l7_chat_completion_https_keepalive_us"]["translations"][name];
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.1} |",
            f(t, "added_p50"),
            f(t, "added_p99"),
            f(t, "ttft_added_p50"),
            f(t, "ttft_added_p99")
        );
    }
    println!(
        "\nadded by the relay: p50 {:.1} µs, p99 {:.1} µs; proxy CPU {:.1} µs per round trip",
        f(&results["request_response_64B_us"], "added_p50"),
        f(&results["request_response_64B_us"], "added_p99"),
        f(&results["request_response_64B_us"], "proxy_cpu_us_per_round_trip"),
    );
    let l7 = &results["l7_chat_completion_https_keepalive_us"];
    println!(
        "L7 added at c=1: p50 {:.1} µs, p99 {:.1} µs; proxy CPU {:.1} µs per request; c=16: {:.0} rps direct, {:.0} rps through tollgate (added p50 {:.1} µs); TTFT added p50 {:.1} µs",
        f(&l7["c1"], "added_p50"),
        f(&l7["c1"], "added_p99"),
        f(&l7["c1"], "proxy_cpu_us_per_request"),
        f(&l7_direct_c16, "rps"),
        f(&l7_c16, "rps"),
        f(&l7["c16"], "added_p50"),
        f(&l7["time_to_first_token_64_chunk_stream"], "added_p50"),
    );
    let lc = &l7["limit_check"];
    println!(
        "limit check added: local p50 {:.1} µs / p99 {:.1} µs; redis p50 {:.1} µs / p99 {:.1} µs",
        f(lc, "added_p50_local"),
        f(lc, "added_p99_local"),
        f(lc, "added_p50_redis"),
        f(lc, "added_p99_redis"),
    );
    println!(
        "throughput: direct {:.0} MiB/s, relay {:.0} MiB/s\nwritten to {}",
        f(&tput_direct, "mib_s"),
        f(&tput_captured, "mib_s"),
        file.display()
    );
    Ok(())
}

/// A `redis-server` on a free loopback port, when one is installed.
fn start_redis() -> anyhow::Result<Option<(std::process::Child, u16)>> {
    if util::output("sh", &["-c", "command -v redis-server"]).is_none() {
        return Ok(None);
    }
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    for _ in 0..200 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(Some((child, port)));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("redis-server did not start")
}

pub(super) fn humantime_now() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

pub(super) fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let kernel = util::output("uname", &["-r"]).unwrap_or_default();
    json!({ "cpu": cpu, "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0), "kernel": kernel })
}

/// User + system CPU time of a process.
pub(super) fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let (user, system) = cpu_times(pid)?;
    Ok(user + system)
}

/// User and system CPU time of a process, apart.
pub(super) fn cpu_times(pid: u32) -> anyhow::Result<(Duration, Duration)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("stat format")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // fields[11] = utime, fields[12] = stime (after the comm field), in clock ticks
    let (user, system): (u64, u64) = (fields[11].parse()?, fields[12].parse()?);
    let hz = util::output("getconf", &["CLK_TCK"])
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(100);
    let us = |ticks: u64| Duration::from_micros(ticks * 1_000_000 / hz);
    Ok((us(user), us(system)))
}

#[derive(Clone, Copy)]
enum Mode {
    /// Writes back whatever it reads.
    Echo,
    /// Reads until EOF, then writes the byte count (8 bytes, big-endian).
    Sink,
}

fn serve(addr: &str, mode: Mode) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).with_context(|| format!("bind {addr}"))?;
    let local = listener.local_addr()?;
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let _ = s.set_nodelay(true);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                let mut total = 0u64;
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            total += n as u64;
                            if let Mode::Echo = mode {
                                if s.write_all(&buf[..n]).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                }
                if let Mode::Sink = mode {
                    let _ = s.write_all(&total.to_be_bytes());
                }
            });
        }
    });
    Ok(local)
}

/// The client side, run inside the cgroup. Prints one JSON object.
pub(crate) fn client(args: &[String]) -> anyhow::Result<()> {
    if args.first().is_some_and(|m| m == "l7") {
        return l7::client(&args[1..]);
    }
    match args.first().map(String::as_str) {
        Some("relay") => return peers::relay(&args[1..]),
        Some("hold") => return scale::hold_client(&args[1..]),
        Some("cgroups") => return scale::cgroup_client(&args[1..]),
        Some("dns") => return dns::client(&args[1..]),
        _ => {}
    }
    let [mode, addr, n] = args else {
        bail!("usage: bench-client connect|rr|tput ADDR N | l7 ADDR CAFILE N CONCURRENCY [stream]")
    };
    let addr: SocketAddr = addr.parse()?;
    let n: u64 = n.parse()?;
    let result = match mode.as_str() {
        "connect" => {
            let mut samples = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let start = Instant::now();
                let s = TcpStream::connect(addr)?;
                samples.push(start.elapsed());
                // RST on close: no TIME_WAIT pile-up over thousands of iterations.
                let _ = socket_linger_zero(&s);
            }
            percentiles(samples)
        }
        "rr" => {
            let mut s = TcpStream::connect(addr)?;
            s.set_nodelay(true)?;
            let out = [0x5au8; RR_SIZE];
            let mut back = [0u8; RR_SIZE];
            // warm-up
            for _ in 0..100 {
                s.write_all(&out)?;
                s.read_exact(&mut back)?;
            }
            let mut samples = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let start = Instant::now();
                s.write_all(&out)?;
                s.read_exact(&mut back)?;
                samples.push(start.elapsed());
            }
            percentiles(samples)
        }
        "tput" => {
            let mut s = TcpStream::connect(addr)?;
            let chunk = vec![0u8; 64 * 1024];
            let start = Instant::now();
            let mut sent = 0u64;
            while sent < n {
                s.write_all(&chunk)?;
                sent += chunk.len() as u64;
            }
            s.shutdown(std::net::Shutdown::Write)?;
            let mut count = [0u8; 8];
            s.read_exact(&mut count)?;
            let elapsed = start.elapsed().as_secs_f64();
            if u64::from_be_bytes(count) != sent {
                bail!("sink counted {} bytes, sent {sent}", u64::from_be_bytes(count));
            }
            json!({ "bytes": sent, "secs": elapsed, "mib_s": sent as f64 / elapsed / (1024.0 * 1024.0) })
        }
        other => bail!("unknown bench-client mode {other}"),
    };
    println!("{result}");
    Ok(())
}

pub(crate) fn socket_linger_zero(s: &TcpStream) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    #[expect(unsafe_code, reason = "setsockopt(SO_LINGER) has no safe wrapper in std")]
    // SAFETY: a valid fd and a pointer to a correctly sized struct that outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
