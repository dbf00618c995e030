//! `cargo xtask bench --dns`: what DNS learning adds to a workload's DNS query.
//!
//! A real `dnsmasq` answers on `127.10.103.53:53`. The client (`bench-client dns`, this binary,
//! release) asks it the way musl does (sendto/recvfrom on one unconnected UDP socket), one
//! query at a time, from outside the captured cgroup (direct) and from inside it (through the
//! forwarder), interleaved round by round while `tollgate run` is up, so both see the same
//! machine. Three kinds of query:
//! - `plain`: a name no provider governs (forwarded, read, answered);
//! - `governed`: `api.openai.com` again and again (learned once; then the endpoint sync task
//!   acknowledges without touching the maps);
//! - `new_address`: a new name under `*.openai.azure.com` at a new address each time (each
//!   answer waits for its endpoint-map insert).
//!
//! Results: `bench/results/dns-<unix time>.json`, and a table on stdout.

use std::{
    net::UdpSocket,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use super::common::{median, percentiles, write_results};
use crate::{
    setup,
    util::{self, start_tollgate, Cgroup},
};

const SERVER: &str = "127.10.103.53";

pub(crate) struct DnsRun {
    pub(crate) queries: usize,
    pub(crate) rounds: usize,
}

pub(crate) fn dns(run: &DnsRun) -> anyhow::Result<()> {
    let env = setup::setup()?;
    util::cargo(&env, &["build", "--release", "-p", "gateway", "--bin", "tollgate"])?;
    util::cargo(&env, &["build", "--release", "-p", "xtask"])?;
    let ws = util::workspace();
    let client_bin = ws.join("target/release/xtask");
    let dir = std::env::temp_dir().join(format!("tollgate-bench-dns-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    // Every run takes fresh numbers, so `new_address` names are never asked twice.
    let new_names = run.queries * run.rounds * 6;
    let mut dnsmasq = start_dnsmasq(new_names)?;
    let cgroup = Cgroup::create(&format!("tollgate-bench-dns-{}", std::process::id()))?;
    std::fs::write(dir.join("hosts"), "127.10.103.50 api.openai.com\n")?;
    let config = dir.join("tollgate.yaml");
    std::fs::write(
        &config,
        format!(
            "listener:\n  addresses: [\"127.0.0.1:0\"]\nadmin:\n  address: \"127.0.0.1:0\"\ncapture:\n  cgroupPath: {cg}\n  pinPath: /sys/fs/bpf/tollgate-bench-dns\n  handoverPath: {dir}/handover.sock\n\
             connectionLog: {dir}/connections.jsonl\naudit:\n  path: {dir}/audit.jsonl\ntls:\n  caCert: {dir}/ca.crt\n  caKey: {dir}/ca.key\n\
             dns:\n  hostsFile: {dir}/hosts\n  forwarderPort: 0\n  maxLearnedNames: {max}\n\
             providers:\n  - name: openai\n    hostnames: [api.openai.com]\n  - name: azure\n    hostnames: [\"*.openai.azure.com\"]\n",
            cg = cgroup.0.display(),
            dir = dir.display(),
            max = new_names + 100,
        ),
    )?;
    let (mut daemon, ready) = start_tollgate(
        &ws.join("target/release/tollgate"),
        &config,
        &dir.join("ready.json"),
        &dir.join("tollgate.log"),
    )?;
    let pid = ready["pid"].as_u64().context("pid")? as u32;
    let query = |captured: bool, template: &str, first: usize| -> anyhow::Result<Value> {
        let args = [
            "bench-client",
            "dns",
            SERVER,
            template,
            &run.queries.to_string(),
            &first.to_string(),
        ];
        let mut cmd = match captured {
            true => cgroup.command(&client_bin),
            false => Command::new(&client_bin),
        };
        let out = cmd.args(args).stdout(Stdio::piped()).output().context("bench client")?;
        if !out.status.success() {
            bail!("dns client failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    };
    let mut rows: Vec<(&str, Vec<Value>, Vec<Value>)> = vec![
        ("plain", vec![], vec![]),
        ("governed", vec![], vec![]),
        ("new_address", vec![], vec![]),
    ];
    let mut cpu_per_query = Vec::new();
    let mut next_name = 0;
    for round in 0..run.rounds {
        println!("== round {}/{}", round + 1, run.rounds);
        for (kind, direct, through) in rows.iter_mut() {
            let template = match *kind {
                "plain" => "plain.bench",
                "governed" => "api.openai.com",
                _ => "n{i}.openai.azure.com",
            };
            direct.push(query(false, template, next_name)?);
            next_name += run.queries;
            let before = super::cpu_time(pid)?;
            through.push(query(true, template, next_name)?);
            next_name += run.queries;
            if *kind == "plain" {
                cpu_per_query.push((super::cpu_time(pid)? - before).as_secs_f64() * 1e6 / run.queries as f64);
            }
        }
    }
    daemon.stop();
    let _ = dnsmasq.kill();
    let _ = dnsmasq.wait();
    drop(cgroup);
    let med = |runs: &[Value], k: &str| median(runs.iter().map(|v| v[k].as_f64().unwrap_or(f64::NAN)).collect());
    let mut results = serde_json::Map::new();
    println!("\n| query | direct p50 µs | through p50 µs | added p50 | direct p99 µs | through p99 µs | added p99 |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (kind, direct, through) in &rows {
        let (d50, t50, d99, t99) = (
            med(direct, "p50"),
            med(through, "p50"),
            med(direct, "p99"),
            med(through, "p99"),
        );
        println!(
            "| {kind} | {d50:.1} | {t50:.1} | {:.1} | {d99:.1} | {t99:.1} | {:.1} |",
            t50 - d50,
            t99 - d99
        );
        results.insert(
            kind.to_string(),
            json!({"direct": direct, "through": through, "added_p50": t50 - d50, "added_p99": t99 - d99}),
        );
    }
    let cpu = median(cpu_per_query);
    println!("forwarder CPU per plain query: {cpu:.1} µs");
    let file = write_results(
        "dns",
        &json!({
            "time": super::humantime_now(),
            "machine": super::machine(),
            "queries_per_run": run.queries,
            "rounds": run.rounds,
            "queries": results,
            "cpu_us_per_plain_query": cpu,
        }),
    )?;
    println!("written to {}", file.display());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// dnsmasq with `api.openai.com`, `plain.bench` and `n<i>.openai.azure.com` (each at its own
/// address) for `i < names`.
fn start_dnsmasq(names: usize) -> anyhow::Result<std::process::Child> {
    let mut cmd = Command::new("dnsmasq");
    cmd.args([
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--port=53",
        "--user=root",
        "--pid-file=",
        "--host-record=api.openai.com,127.10.103.60,300",
        "--host-record=plain.bench,127.10.103.80,300",
    ])
    .arg(format!("--listen-address={SERVER}"));
    let hosts = std::env::temp_dir().join(format!("tollgate-bench-dns-hosts-{}", std::process::id()));
    let mut text = String::new();
    for i in 0..names {
        text += &format!("127.11.{}.{} n{i}.openai.azure.com\n", i / 250, i % 250 + 1);
    }
    std::fs::write(&hosts, text)?;
    cmd.arg(format!("--addn-hosts={}", hosts.display()));
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("dnsmasq (cargo xtask setup installs dnsmasq-base)")?;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if ask(&UdpSocket::bind("127.0.0.1:0")?, "api.openai.com", 1).is_ok() {
            return Ok(child);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("dnsmasq did not answer on {SERVER}")
}

/// One A query for `name` with id `id`, answered within 2 s.
fn ask(socket: &UdpSocket, name: &str, id: u16) -> anyhow::Result<()> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    socket.set_read_timeout(Some(Duration::from_secs(2)))?;
    socket.send_to(&q, (SERVER, 53))?;
    let mut buf = [0u8; 1500];
    loop {
        let (n, _) = socket.recv_from(&mut buf)?;
        if n >= 12 && buf[..2] == id.to_be_bytes() {
            if buf[7] == 0 {
                bail!("no answer for {name}");
            }
            return Ok(());
        }
    }
}

/// `bench-client dns SERVER TEMPLATE N FIRST`: N sequential queries (`{i}` in the template
/// counts from FIRST) on one unconnected socket; latency percentiles.
pub(crate) fn client(args: &[String]) -> anyhow::Result<()> {
    let [_server, template, n, first] = args else {
        bail!("usage: bench-client dns SERVER TEMPLATE N FIRST")
    };
    let (n, first): (usize, usize) = (n.parse()?, first.parse()?);
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let name = template.replace("{i}", &(first + i).to_string());
        let start = Instant::now();
        ask(&socket, &name, (i % 65_536) as u16)?;
        samples.push(start.elapsed());
    }
    println!("{}", percentiles(samples));
    Ok(())
}
