//! `cargo xtask demo`: transparent capture of an unmodified `curl`, end to end, on one machine.
//!
//! 1. a fake OpenAI endpoint listens on 127.10.0.1:443 (plain HTTP for now: TLS interception
//!    arrives with the L7 work);
//! 2. `tollgate run` attaches its eBPF programs to a fresh child cgroup `tollgate-demo`;
//! 3. `curl` runs in that cgroup against 127.10.0.1:443, knowing nothing of Tollgate;
//! 4. we print what curl got and what Tollgate recorded (who, where to, bytes), then clean up
//!    every cgroup and process we made.

use std::{
    io::{Read as _, Write as _},
    net::TcpListener,
    process::Stdio,
    sync::atomic::{AtomicBool, Ordering},
    sync::Arc,
    time::Duration,
};

use anyhow::{bail, Context as _};

use crate::{
    setup,
    util::{self, start_tollgate, Cgroup},
};

const PROVIDER: &str = "127.10.0.1:443";

pub(crate) fn demo() -> anyhow::Result<()> {
    let env = setup::setup()?;
    util::cargo(&env, &["build", "-p", "gateway", "--bin", "tollgate"])?;
    let ws = util::workspace();
    let bin = ws.join("target/debug/tollgate");
    let dir = std::env::temp_dir().join(format!("tollgate-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;

    println!("\n== 1. fake OpenAI endpoint on {PROVIDER}");
    let stop = Arc::new(AtomicBool::new(false));
    let provider = fake_provider(stop.clone())?;

    println!("== 2. tollgate attached to a fresh child cgroup");
    let cgroup = Cgroup::create("tollgate-demo")?;
    let config = dir.join("tollgate.yaml");
    let conn_log = dir.join("connections.jsonl");
    std::fs::write(
        &config,
        format!(
            "listener:\n  addresses: [\"127.0.0.1:0\", \"[::1]:0\"]\nadmin:\n  address: \"127.0.0.1:0\"\n\
             capture:\n  cgroupPath: {}\nconnectionLog: {}\nproviders:\n  - name: openai\n    addresses: [\"127.10.0.1\"]\n    ports: [443]\n",
            cgroup.0.display(),
            conn_log.display()
        ),
    )?;
    println!(
        "   config {}:\n{}",
        config.display(),
        indent(&std::fs::read_to_string(&config)?)
    );
    let (mut daemon, ready) = start_tollgate(
        &bin,
        &config,
        &dir.join("ready.json"),
        &dir.join("tollgate.log"),
    )?;
    println!(
        "   tollgate pid {} listening on {} (admin {})",
        ready["pid"], ready["listener4"], ready["admin"]
    );

    println!("== 3. unmodified curl in {}", cgroup.0.display());
    let mut curl = cgroup.command("curl");
    curl.args([
        "-sS",
        "-m",
        "10",
        "-w",
        "\n[curl: peer %{remote_ip}:%{remote_port}, HTTP %{http_code}]\n",
    ])
    .args([
        "-H",
        "content-type: application/json",
        "-H",
        "authorization: Bearer sk-demo-not-a-real-key",
    ])
    .args([
        "-d",
        r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#,
    ])
    .arg(format!("http://{PROVIDER}/v1/chat/completions"))
    .stdout(Stdio::piped());
    println!(
        "   $ curl http://{PROVIDER}/v1/chat/completions -d '{{\"model\":\"gpt-4o-mini\",...}}'"
    );
    let out = curl.output().context("running curl")?;
    println!("{}", indent(&String::from_utf8_lossy(&out.stdout)));
    if !out.status.success() {
        bail!("curl failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    println!("== 4. what tollgate saw");
    let mut record = String::new();
    for _ in 0..100 {
        record = std::fs::read_to_string(&conn_log).unwrap_or_default();
        if !record.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let line: serde_json::Value =
        serde_json::from_str(record.lines().next().context("no connection record")?)?;
    println!("{}", indent(&serde_json::to_string_pretty(&line)?));
    let metrics = admin_get(ready["admin"].as_str().unwrap_or_default(), "/metrics")?;
    println!("   metrics:");
    for l in metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.ends_with(" 0"))
    {
        println!("     {l}");
    }

    println!("== 5. cleaning up");
    daemon.stop();
    drop(cgroup);
    stop.store(true, Ordering::Relaxed);
    let _ = std::net::TcpStream::connect(PROVIDER);
    let _ = provider.join();
    let _ = std::fs::remove_dir_all(&dir);
    let ok = line["workload"]["comm"] == "curl" && line["original_dst"] == PROVIDER;
    if !ok {
        bail!("the record does not show curl connecting to {PROVIDER}");
    }
    println!(
        "\ncurl (pid {}) asked for {PROVIDER}; eBPF sent it to tollgate, which knew where it meant to go and relayed it.",
        line["workload"]["tgid"]
    );
    Ok(())
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("   {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A one-thread HTTP server answering every request with an OpenAI chat completion.
fn fake_provider(stop: Arc<AtomicBool>) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let listener =
        TcpListener::bind(PROVIDER).with_context(|| format!("binding {PROVIDER} (in use?)"))?;
    Ok(std::thread::spawn(move || {
        for stream in listener.incoming() {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let Ok(mut s) = stream else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // headers, then content-length bytes of body
            loop {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break;
                    }
                }
            }
            let body = r#"{"id":"chatcmpl-demo","object":"chat.completion","created":1764100000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the fake provider."},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":7,"total_tokens":16}}"#;
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    }))
}

fn admin_get(addr: &str, path: &str) -> anyhow::Result<String> {
    let mut s = std::net::TcpStream::connect(addr)?;
    write!(s, "GET {path} HTTP/1.0\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default())
}
