//! A real MCP server for the MCP suite: the official Python SDK's server
//! (`tests/clients/mcp_server.py`, Streamable HTTP at `/mcp` and the older HTTP+SSE transport at
//! `/sse`, plaintext), which logs every HTTP
//! request it receives (method, `Authorization`, session, JSON-RPC method, tool) so tests see
//! what reached it; and its SDK client run as a captured workload (`tests/clients/mcp_client.py`).

use std::{
    io::BufRead as _,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::Value;

use crate::{run, sdk_python, workspace, Cgroup, TempDir};

/// The SDK's MCP server on `ip` (a free port), until dropped.
pub struct McpServer {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl McpServer {
    pub fn start(ip: &str, dir: &TempDir) -> McpServer {
        let port = std::net::TcpListener::bind((ip, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = dir.path("mcp-server.jsonl");
        let mut child = Command::new(sdk_python())
            .arg(workspace().join("tests/clients/mcp_server.py"))
            .args([ip, &port.to_string()])
            .arg(&log)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs mcp_server.py");
        let mut line = String::new();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "mcp_server.py did not start");
        McpServer { child, port, log }
    }

    pub fn url(&self, ip: &str) -> String {
        format!("http://{ip}:{}", self.port)
    }

    /// Every request the server received, in order (its log also has a line per response
    /// started, marked `"response": true`, left out here).
    pub fn log(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v.get("response").is_none())
            .collect()
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `mcp_client.py https://HOST/mcp ARGS…` as a workload in `cg`, `host` resolving to `ip`, the
/// node CA trusted through `SSL_CERT_FILE`; its JSON line.
pub fn client(cg: &Cgroup, dir: &TempDir, host: &str, ip: &str, ca: &std::path::Path, args: &[&str]) -> Value {
    client_at(cg, dir, &format!("https://{host}/mcp"), (host, ip), ca, args)
}

/// [`client`] toward `url` (a path ending in `/sse`: the older HTTP+SSE transport).
pub fn client_at(
    cg: &Cgroup,
    dir: &TempDir,
    url: &str,
    (host, ip): (&str, &str),
    ca: &std::path::Path,
    args: &[&str],
) -> Value {
    let mut cmd = cg.command_with_hosts(dir, &[(host, ip)], sdk_python());
    cmd.env("SSL_CERT_FILE", ca)
        .arg(workspace().join("tests/clients/mcp_client.py"))
        .arg(url)
        .args(args);
    let out = run(cmd, Duration::from_secs(60));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}
