//! `cargo xtask demo`: an unmodified `curl` calling `https://api.openai.com`, captured by eBPF,
//! end to end, on one machine with no network.
//!
//! 1. a fake OpenAI backend listens on 127.10.0.2:8080 (what the real api.openai.com is in
//!    production: the backend Tollgate forwards to, with the real key);
//! 2. `tollgate run` attaches its eBPF programs to a fresh child cgroup `tollgate-demo`;
//!    api.openai.com is governed, captured at 127.10.0.1:443;
//! 3. `curl` runs in that cgroup, in a private mount namespace whose /etc/hosts maps
//!    api.openai.com to 127.10.0.1, with a dummy key, trusting the node CA;
//! 4. we print what curl got, what the backend received (the injected key, not curl's), and
//!    what Tollgate recorded (who, where to, route, credential fingerprint), then clean up every
//!    cgroup and process we made.

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

/// Where api.openai.com "resolves" for the client.
const CAPTURED: &str = "127.10.0.1";
/// The fake backend.
const BACKEND: &str = "127.10.0.2:8080";
const DEMO_KEY: &str = "sk-demo-real-key-from-a-secret-file";

pub(crate) fn demo() -> anyhow::Result<()> {
    let env = setup::setup()?;
    util::cargo(&env, &["build", "-p", "gateway", "--bin", "tollgate"])?;
    let ws = util::workspace();
    let bin = ws.join("target/debug/tollgate");
    let dir = std::env::temp_dir().join(format!("tollgate-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;

    println!("\n== 1. fake OpenAI backend on http://{BACKEND}");
    let stop = Arc::new(AtomicBool::new(false));
    let seen_auth = Arc::new(std::sync::Mutex::new(String::new()));
    let provider = fake_provider(stop.clone(), seen_auth.clone())?;

    println!("== 2. tollgate attached to a fresh child cgroup");
    let cgroup = Cgroup::create("tollgate-demo")?;
    let config = dir.join("tollgate.yaml");
    let conn_log = dir.join("connections.jsonl");
    let audit_log = dir.join("audit.jsonl");
    let key_file = dir.join("openai-key");
    std::fs::write(&key_file, DEMO_KEY)?;
    // The same hosts file serves tollgate (no DNS query leaves the machine) and curl.
    let hosts = dir.join("hosts");
    std::fs::write(&hosts, format!("127.0.0.1 localhost\n{CAPTURED} api.openai.com\n"))?;
    std::fs::write(
        &config,
        format!(
            "listener:\n  addresses: [\"127.0.0.1:0\", \"[::1]:0\"]\nadmin:\n  address: \"127.0.0.1:0\"\n\
             capture:\n  cgroupPath: {cg}\n  pinPath: /sys/fs/bpf/tollgate-demo\n  handoverPath: {dir}/handover.sock\nconnectionLog: {log}\naudit:\n  path: {dir}/audit.jsonl\ntls:\n  caCert: {dir}/ca.crt\n  caKey: {dir}/ca.key\n\
             dns:\n  hostsFile: {dir}/hosts\n\
             providers:\n  - name: openai\n    hostnames: [api.openai.com]\n    addresses: [\"{CAPTURED}\"]\n    backend: fake-openai\n\
             backends:\n  - name: fake-openai\n    url: http://{BACKEND}\n    credential: openai-key\n\
             credentials:\n  - name: openai-key\n    kind: bearer\n    file: {key}\n",
            cg = cgroup.0.display(),
            log = conn_log.display(),
            dir = dir.display(),
            key = key_file.display(),
        ),
    )?;
    println!(
        "   config {}:\n{}",
        config.display(),
        indent(&std::fs::read_to_string(&config)?)
    );
    let tollgate_log = dir.join("tollgate.log");
    let (mut daemon, ready) = start_tollgate(&bin, &config, &dir.join("ready.json"), &tollgate_log)?;
    println!(
        "   tollgate pid {} listening on {} (admin {})",
        ready["pid"], ready["listener4"], ready["admin"]
    );

    println!(
        "== 3. unmodified curl in {} (api.openai.com -> {CAPTURED})",
        cgroup.0.display()
    );
    let mut curl = std::process::Command::new("unshare");
    curl.args(["-m", "--propagation", "private", "sh", "-c"])
        .arg("mount --bind \"$1\" /etc/hosts && shift && echo $$ > \"$0\"/cgroup.procs && exec \"$@\"")
        .arg(&cgroup.0)
        .arg(&hosts)
        .arg("curl")
        .args(["-sS", "-m", "10", "--cacert"])
        .arg(dir.join("ca.crt"))
        .args([
            "-w",
            "\n[curl: peer %{remote_ip}:%{remote_port}, HTTP %{http_code}, HTTP/%{http_version}, \
             x-tollgate-request-id: %header{x-tollgate-request-id}]\n",
        ])
        .args([
            "-H",
            "content-type: application/json",
            "-H",
            "authorization: Bearer sk-dummy-key-in-the-app",
        ])
        .args([
            "-d",
            r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#,
        ])
        .arg("https://api.openai.com/v1/chat/completions")
        .stdout(Stdio::piped());
    println!("   $ curl --cacert node-ca.crt https://api.openai.com/v1/chat/completions -H 'authorization: Bearer sk-dummy-key-in-the-app' -d '{{...}}'");
    let out = curl.output().context("running curl")?;
    println!("{}", indent(&String::from_utf8_lossy(&out.stdout)));
    if !out.status.success() {
        bail!(
            "curl failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&tollgate_log).unwrap_or_default()
        );
    }
    let auth = seen_auth.lock().map(|a| a.clone()).unwrap_or_default();
    println!(
        "   the backend received: authorization: {}",
        auth.replace(DEMO_KEY, "<the key from the secret file>")
    );

    println!("== 4. what tollgate saw");
    let mut record = String::new();
    for _ in 0..100 {
        record = std::fs::read_to_string(&conn_log).unwrap_or_default();
        if !record.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut request = serde_json::Value::Null;
    for _ in 0..100 {
        let audit = std::fs::read_to_string(&audit_log).unwrap_or_default();
        if let Some(r) = audit
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|r| r["record"] == "request")
        {
            request = r;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "   audit record ({}):\n{}",
        audit_log.display(),
        indent(&serde_json::to_string_pretty(&request)?)
    );
    let line: serde_json::Value = serde_json::from_str(record.lines().next().context("no connection record")?)?;
    println!(
        "   connection record:\n{}",
        indent(&serde_json::to_string_pretty(&line)?)
    );
    let metrics = admin_get(ready["admin"].as_str().unwrap_or_default(), "/metrics")?;
    println!("   metrics:");
    // Counters and gauges (histograms' buckets left out: `/metrics` has them).
    for l in metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.ends_with(" 0") && !l.contains("_bucket{"))
    {
        println!("     {l}");
    }

    println!("   $ tollgate usage --audit-log {} --since 1h", audit_log.display());
    let usage = std::process::Command::new(&bin)
        .args(["usage", "--since", "1h", "--audit-log"])
        .arg(&audit_log)
        .output()
        .context("tollgate usage")?;
    println!("{}", indent(&String::from_utf8_lossy(&usage.stdout)));

    println!("== 5. cleaning up");
    daemon.stop();
    drop(cgroup);
    stop.store(true, Ordering::Relaxed);
    let _ = std::net::TcpStream::connect(BACKEND);
    let _ = provider.join();
    let _ = std::fs::remove_dir_all(&dir);
    let ok = line["workload"]["comm"] == "curl"
        && line["sni"] == "api.openai.com"
        && auth == format!("Bearer {DEMO_KEY}")
        && request["workload"]["comm"] == "curl"
        && request["credential"]["name"] == "openai-key"
        && request["tokens"]["total"] == 16
        && usage.status.success();
    if !ok {
        bail!("the records do not show curl's request to api.openai.com signed with the real key, metered");
    }
    println!(
        "\ncurl (pid {}) called https://api.openai.com with a dummy key; eBPF sent it to tollgate, which \
         terminated TLS with the node CA, routed it and replaced the key with the real one.",
        line["workload"]["tgid"]
    );
    Ok(())
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("   {l}")).collect::<Vec<_>>().join("\n")
}

/// A one-thread HTTP server answering every request with an OpenAI chat completion, keeping
/// the `authorization` header it received.
fn fake_provider(
    stop: Arc<AtomicBool>,
    seen_auth: Arc<std::sync::Mutex<String>>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let listener = TcpListener::bind(BACKEND).with_context(|| format!("binding {BACKEND} (in use?)"))?;
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
                        if let Some(a) = String::from_utf8_lossy(&buf[..end]).lines().find_map(|l| {
                            l.strip_prefix("authorization: ")
                                .or_else(|| l.strip_prefix("Authorization: "))
                        }) {
                            *seen_auth.lock().unwrap_or_else(|e| e.into_inner()) = a.trim().to_string();
                        }
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
