//! `cargo xtask bench --mcp`: what Tollgate adds to an MCP `tools/call`.
//!
//! The official MCP Python SDK's server (`tests/clients/mcp_server.py`, Streamable HTTP) listens
//! on `127.10.104.2`; its own client (`tests/clients/mcp_bench.py`) opens one session and times
//! sequential `tools/call add(1, 2)` round trips, from outside the captured cgroup straight to
//! the server (direct), and from inside it to `127.10.104.1:80`, which Tollgate captures as an
//! MCP provider and forwards to the server (through: every message read, the route's tool
//! policy checked, the answer observed). Plaintext both ways, so the difference is Tollgate's
//! capture and MCP handling, not TLS. Runs are interleaved round by round while `tollgate run`
//! is up.
//!
//! Results: `bench/results/mcp-<unix time>.json`, and a table on stdout.

use std::{
    io::BufRead as _,
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use super::common::{median, write_results};
use crate::{
    setup,
    util::{self, start_tollgate, Cgroup},
};

const CAPTURED: &str = "127.10.104.1";
const SERVER: &str = "127.10.104.2";

pub(crate) struct McpRun {
    pub(crate) calls: usize,
    pub(crate) rounds: usize,
}

pub(crate) fn mcp(run: &McpRun) -> anyhow::Result<()> {
    let env = setup::setup()?;
    util::cargo(&env, &["build", "--release", "-p", "gateway", "--bin", "tollgate"])?;
    let ws = util::workspace();
    let py = util::venv_python();
    let dir = std::env::temp_dir().join(format!("tollgate-bench-mcp-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (mut server, port) = start_server(&py, &dir)?;
    let cgroup = Cgroup::create(&format!("tollgate-bench-mcp-{}", std::process::id()))?;
    let config = dir.join("tollgate.yaml");
    std::fs::write(
        &config,
        format!(
            "listener:\n  addresses: [\"127.0.0.1:0\"]\nadmin:\n  address: \"127.0.0.1:0\"\ncapture:\n  cgroupPath: {cg}\n  pinPath: /sys/fs/bpf/tollgate-bench-mcp\n  handoverPath: {dir}/handover.sock\n\
             connectionLog: {dir}/connections.jsonl\naudit:\n  path: {dir}/audit.jsonl\ntls:\n  caCert: {dir}/ca.crt\n  caKey: {dir}/ca.key\n\
             dns:\n  forwarderPort: 0\n\
             providers:\n  - name: tools\n    kind: mcp\n    addresses: [\"{CAPTURED}\"]\n    ports: [80]\n    backend: server\n\
             backends:\n  - name: server\n    url: http://{SERVER}:{port}\n\
             routes:\n  - name: agents\n    match: {{ providers: [tools] }}\n    backends: [{{ backend: server }}]\n    mcp: {{ tools: {{ deny: [\"delete_*\"] }} }}\n",
            cg = cgroup.0.display(),
            dir = dir.display(),
        ),
    )?;
    let (mut daemon, ready) = start_tollgate(
        &ws.join("target/release/tollgate"),
        &config,
        &dir.join("ready.json"),
        &dir.join("tollgate.log"),
    )?;
    let pid = ready["pid"].as_u64().context("pid")? as u32;
    let script = ws.join("tests/clients/mcp_bench.py");
    let calls = |captured: bool| -> anyhow::Result<Value> {
        let url = match captured {
            true => format!("http://{CAPTURED}:80/mcp"),
            false => format!("http://{SERVER}:{port}/mcp"),
        };
        let mut cmd = match captured {
            true => cgroup.command(&py),
            false => Command::new(&py),
        };
        let out = cmd
            .arg(&script)
            .args([&url, &run.calls.to_string()])
            .stdout(Stdio::piped())
            .output()
            .context("mcp_bench.py")?;
        if !out.status.success() {
            bail!("mcp_bench.py failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    };
    let (mut direct, mut through, mut cpu) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..run.rounds {
        println!("== round {}/{}", round + 1, run.rounds);
        direct.push(calls(false)?);
        let before = super::cpu_time(pid)?;
        through.push(calls(true)?);
        // Per call: the session's set-up and warm-up calls are in it too (a few percent).
        cpu.push((super::cpu_time(pid)? - before).as_secs_f64() * 1e6 / run.calls as f64);
    }
    daemon.stop();
    let _ = server.kill();
    let _ = server.wait();
    drop(cgroup);
    let med = |runs: &[Value], k: &str| median(runs.iter().map(|v| v[k].as_f64().unwrap_or(f64::NAN)).collect());
    println!("\n| tools/call | p50 µs | p90 µs | p99 µs |");
    println!("| --- | ---: | ---: | ---: |");
    for (name, runs) in [("direct", &direct), ("through Tollgate", &through)] {
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} |",
            med(runs, "p50_us"),
            med(runs, "p90_us"),
            med(runs, "p99_us")
        );
    }
    let added = |k: &str| med(&through, k) - med(&direct, k);
    println!(
        "| added | {:.0} | {:.0} | {:.0} |",
        added("p50_us"),
        added("p90_us"),
        added("p99_us")
    );
    let cpu = median(cpu);
    println!("Tollgate CPU per tools/call: {cpu:.1} µs");
    let file = write_results(
        "mcp",
        &json!({
            "time": super::humantime_now(),
            "machine": super::machine(),
            "calls_per_run": run.calls,
            "rounds": run.rounds,
            "direct": direct,
            "through": through,
            "added_p50_us": added("p50_us"),
            "added_p99_us": added("p99_us"),
            "cpu_us_per_call": cpu,
        }),
    )?;
    println!("written to {}", file.display());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The SDK's server on `SERVER` and a free port; returns once it says `ready`.
fn start_server(py: &str, dir: &std::path::Path) -> anyhow::Result<(std::process::Child, u16)> {
    let port = std::net::TcpListener::bind((SERVER, 0))?.local_addr()?.port();
    let mut child = Command::new(py)
        .arg(util::workspace().join("tests/clients/mcp_server.py"))
        .args([SERVER, &port.to_string()])
        .arg(dir.join("mcp-server.jsonl"))
        .stdout(Stdio::piped())
        .spawn()
        .context("python3 mcp_server.py")?;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
    if line.trim() != "ready" {
        let _ = child.kill();
        bail!("mcp_server.py did not start");
    }
    Ok((child, port))
}
