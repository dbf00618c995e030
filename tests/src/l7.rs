//! Shared set-up of the L7 suites: an `api.openai.com` provider captured at a loopback
//! address, two fake backends over TLS, a credential file; curl run as a captured client.

use std::time::Duration;

use serde_json::Value;

use crate::{
    fake_llm::{FakeLlm, TestCa},
    run, Cgroup, Gateway, GatewayBuilder, TempDir,
};

pub const SECRET_1: &str = "sk-real-openai-SECRET-0001";
pub const SECRET_2: &str = "sk-real-openai-SECRET-0002";

/// curl inside the cgroup, with `host` resolving to `ip`, trusting `ca`.
pub fn curl(cg: &Cgroup, dir: &TempDir, host: &str, ip: &str, ca: &std::path::Path, args: &[&str]) -> (String, Value) {
    let mut cmd = cg.command_with_hosts(dir, &[(host, ip)], "curl");
    cmd.args(["-sS", "-m", "20", "--cacert"])
        .arg(ca)
        .args(["-w", "\n%{http_code} %{http_version}"])
        .args(args);
    let out = run(cmd, Duration::from_secs(30));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "curl failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (body, status) = stdout.rsplit_once('\n').unwrap();
    (
        status.to_string(),
        serde_json::from_str(body).unwrap_or(Value::String(body.to_string())),
    )
}

/// curl POSTs the JSON `body` to `https://api.openai.com/v1/chat/completions` from the setup's
/// cgroup (the name resolving to its captured address), with `extra` curl arguments first;
/// returns the status line and the answer as `curl` does.
pub fn chat_curl(s: &OpenAiSetup, gw: &Gateway, body: &str, extra: &[&str]) -> (String, Value) {
    post_json(s, gw, "chat/completions", body, extra)
}

/// curl POSTs the JSON `body` to `https://api.openai.com/v1/<path>`, as [`chat_curl`] does.
pub fn post_json(s: &OpenAiSetup, gw: &Gateway, path: &str, body: &str, extra: &[&str]) -> (String, Value) {
    let url = format!("https://api.openai.com/v1/{path}");
    let mut args: Vec<&str> = extra.to_vec();
    args.extend(["-H", "content-type: application/json", "-d", body, &url]);
    curl(&s.cg, &s.dir, "api.openai.com", &s.captured_ip, &gw.ca_cert(), &args)
}

pub fn wait_records(gw: &Gateway, n: usize) -> Vec<Value> {
    gw.wait_audit(n)
}

pub struct OpenAiSetup {
    pub dir: TempDir,
    pub cg: Cgroup,
    pub primary: FakeLlm,
    pub secondary: FakeLlm,
    pub captured_ip: String,
    pub secret_file: std::path::PathBuf,
}

/// `api.openai.com` → `127.20.<n>.1:443` (captured); backends `primary` and `secondary` on
/// `127.20.<n>.2` and `.3` over TLS with their own CA.
pub fn openai_setup(n: u8, name: &str, extra_backends: &str) -> (OpenAiSetup, GatewayBuilder) {
    let dir = TempDir::new(name);
    let ca = TestCa::new(&dir.0, "fake");
    let primary_ip = format!("127.20.{n}.2");
    let secondary_ip = format!("127.20.{n}.3");
    let primary = FakeLlm::start("primary", &primary_ip, Some(ca.server_config(&[&primary_ip])));
    let secondary = FakeLlm::start("secondary", &secondary_ip, Some(ca.server_config(&[&secondary_ip])));
    let secret_file = dir.path("openai-key");
    std::fs::write(&secret_file, format!("{SECRET_1}\n")).unwrap();
    let cg = Cgroup::new(name);
    let captured_ip = format!("127.20.{n}.1");
    let builder = GatewayBuilder::new(&cg)
        .llm_provider("openai", &["api.openai.com"], &[&captured_ip], &[443], &["backend: primary"])
        .yaml(&format!(
            "backends:\n  - name: primary\n    url: {}\n    credential: openai-key\n    caFile: {}\n  - name: secondary\n    url: {}\n    credential: openai-key\n    caFile: {}\n{extra_backends}\
             credentials:\n  - name: openai-key\n    kind: bearer\n    file: {}\n",
            primary.url(true),
            ca.pem_path.display(),
            secondary.url(true),
            ca.pem_path.display(),
            secret_file.display()
        ));
    (
        OpenAiSetup {
            dir,
            cg,
            primary,
            secondary,
            captured_ip,
            secret_file,
        },
        builder,
    )
}

/// Runs one of the Python SDK clients (`tests/clients/<script>`) inside the cgroup, with `host`
/// resolving to `ip` and the node CA in `SSL_CERT_FILE`; parses its JSON line.
pub fn sdk_json(s: &OpenAiSetup, gw: &Gateway, host: &str, ip: &str, script: &str, args: &[&str]) -> Value {
    let mut cmd = s.cg.command_with_hosts(&s.dir, &[(host, ip)], crate::sdk_python());
    cmd.env("SSL_CERT_FILE", gw.ca_cert())
        .arg(crate::workspace().join("tests/clients").join(script))
        .args(args);
    let out = run(cmd, Duration::from_secs(60));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            gw.log()
        )
    })
}

/// The OpenAI SDK client against `api.openai.com` (the setup's captured address).
pub fn openai_sdk(s: &OpenAiSetup, gw: &Gateway, args: &[&str]) -> Value {
    sdk_json(s, gw, "api.openai.com", &s.captured_ip, "openai_client.py", args)
}
