//! MCP through capture: the official MCP Python SDK's client (`tests/clients/mcp_client.py`),
//! unmodified apart from trusting the node CA, calls the SDK's own server
//! (`tests/clients/mcp_server.py`) at `https://mcp.example.test/mcp`; Tollgate terminates the
//! captured connection, reads each JSON-RPC message, applies the route's tool policy and the
//! per-tool limits, puts its own OAuth token (or a static bearer key) in place of the
//! client's, and writes one record per HTTP request.

use serde_json::{json, Value};
use tests::{
    fake_llm::{FakeLlm, OAUTH_CLIENT_SECRET},
    fake_media::sha256_hex,
    l7::curl,
    mcp::{client, client_at, McpServer},
    privileged, Cgroup, Gateway, GatewayBuilder, TempDir,
};

const HOST: &str = "mcp.example.test";
const CAPTURED: &str = "127.20.80.1";
const SERVER_IP: &str = "127.20.80.2";

struct Setup {
    dir: TempDir,
    cg: Cgroup,
    server: McpServer,
    oauth: FakeLlm,
    gw: Gateway,
}

impl Setup {
    fn client(&self, args: &[&str]) -> Value {
        client(&self.cg, &self.dir, HOST, CAPTURED, &self.gw.ca_cert(), args)
    }

    /// The client over the older HTTP+SSE transport.
    fn sse_client(&self, args: &[&str]) -> Value {
        let url = format!("https://{HOST}/sse");
        client_at(&self.cg, &self.dir, &url, (HOST, CAPTURED), &self.gw.ca_cert(), args)
    }

    /// The records of MCP requests with JSON-RPC `method`.
    fn records(&self, method: &str) -> Vec<Value> {
        self.gw
            .audit_records()
            .into_iter()
            .filter(|r| r["mcp"]["method"] == method)
            .collect()
    }
}

/// The server's static key when the backend's credential is `kind: bearer`.
const BEARER_KEY: &str = "mcp-static-key-4f1c9a";

/// A gateway in front of the SDK's server, its credential an OAuth client (`bearer: false`)
/// or a static bearer key.
fn setup(name: &str, bearer: bool) -> Setup {
    let dir = TempDir::new(name);
    let cg = Cgroup::new(name);
    let server = McpServer::start(SERVER_IP, &dir);
    let oauth = FakeLlm::start("oauth", "127.20.80.3", None);
    let secret = dir.path("mcp-secret");
    let (name, kind, secret_text) = if bearer {
        ("mcp-bearer", "bearer", BEARER_KEY.to_string())
    } else {
        let app = json!({"tokenUrl": format!("{}/oauth/token", oauth.url(false)), "clientId": "tollgate-agent",
                         "clientSecret": OAUTH_CLIENT_SECRET, "scope": "tools"});
        ("mcp-oauth", "oauthClientCredentials", app.to_string())
    };
    std::fs::write(&secret, secret_text).unwrap();
    let gw = GatewayBuilder::new(&cg)
        .llm_provider("tools", &[HOST], &[CAPTURED], &[443], &["kind: mcp", "backend: mcp-server"])
        .yaml(&format!(
            "backends:\n  - name: mcp-server\n    url: {}\n    credential: {name}\n\
             credentials:\n  - name: {name}\n    kind: {kind}\n    file: {}\n\
             routes:\n  - name: agents\n    match: {{ providers: [tools] }}\n    backends: [{{ backend: mcp-server }}]\n    mcp: {{ tools: {{ deny: [\"delete_*\"] }} }}\n\
             limits:\n  - name: echo-once\n    match: {{ tools: [echo] }}\n    key: [workload, tool]\n    requestsPerMinute: 1\n",
            server.url(SERVER_IP),
            secret.display()
        ))
        .start();
    Setup {
        dir,
        cg,
        server,
        oauth,
        gw,
    }
}

#[test]
fn the_sdk_through_capture_is_recorded_governed_and_given_tollgates_token() {
    if !privileged("the_sdk_through_capture_is_recorded_governed_and_given_tollgates_token") {
        return;
    }
    let s = setup("mcp-governed", false);

    // 1. One session: list (filtered), a call, a resource, a prompt.
    let v = s.client(&["all"]);
    let tools: Vec<&str> = v["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(tools.contains(&"add") && tools.contains(&"slow_count"), "{v}");
    assert!(
        !tools.contains(&"delete_everything"),
        "tools/list filtered by the route: {v}"
    );
    assert_eq!(v["add"], json!(["3"]), "{v}");
    assert!(v["resource"].as_str().is_some(), "{v}");

    // The server saw Tollgate's OAuth token, never the client's own.
    let log = s.server.log();
    assert!(!log.is_empty());
    for line in &log {
        assert_eq!(line["authorization"], "Bearer oauth-tollgate-agent-tools", "{line}");
    }
    let token_requests = s.oauth.received().iter().filter(|r| r.path == "/oauth/token").count();
    assert_eq!(token_requests, 1, "the token is cached");

    // Records: one per HTTP request, each message understood.
    let list = &s.records("tools/list")[0];
    assert_eq!(list["operation"], "mcp");
    assert_eq!(list["provider"], "tools");
    assert_eq!(list["route"], "agents");
    assert_eq!(list["mcp"]["tools_filtered"], 1);
    assert_eq!(list["mcp"]["outcome"], "ok");
    let session = list["mcp"]["session"].as_str().expect("the session id").to_string();
    let call = &s.records("tools/call")[0];
    assert_eq!(call["mcp"]["tool"], "add");
    assert_eq!(call["mcp"]["kind"], "request");
    assert_eq!(call["mcp"]["session"], session.as_str());
    let args = serde_json::to_string(&json!({"a": 1, "b": 2})).unwrap();
    assert_eq!(call["mcp"]["arguments_bytes"], args.len());
    assert_eq!(call["mcp"]["arguments_sha256"], sha256_hex(args.as_bytes()));
    assert_eq!(call["credential"]["name"], "mcp-oauth");
    assert_eq!(s.records("resources/read")[0]["mcp"]["uri"], "notes://today");
    assert_eq!(s.records("prompts/get")[0]["mcp"]["prompt"], "greet");
    assert_eq!(s.records("initialize")[0]["mcp"]["outcome"], "ok");
    assert_eq!(s.records("notifications/initialized")[0]["mcp"]["kind"], "notification");

    // 2. A denied tool: a JSON-RPC error naming the route; the server never hears of it.
    let v = s.client(&["call", "delete_everything", "{}"]);
    assert_eq!(v["error"]["code"], -32001, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("route agents"), "{v}");
    assert!(!s.server.log().iter().any(|l| l["tool"] == "delete_everything"));
    let denied = s
        .records("tools/call")
        .into_iter()
        .find(|r| r["mcp"]["tool"] == "delete_everything")
        .unwrap();
    assert_eq!(denied["mcp"]["outcome"], "denied");
    assert_eq!(denied["error_reason"], "mcp_tool_denied");

    // 3. A tool result with isError, and a streamed one (progress, then the result).
    let v = s.client(&["call", "fail", "{}"]);
    assert_eq!(v["is_error"], true, "{v}");
    let v = s.client(&["stream", "3"]);
    assert_eq!(v["progress"].as_array().map(Vec::len), Some(3), "{v}");
    let calls = s.records("tools/call");
    let failed = calls.iter().find(|r| r["mcp"]["tool"] == "fail").unwrap();
    assert_eq!(failed["mcp"]["outcome"], "tool_error");
    let streamed = calls.iter().find(|r| r["mcp"]["tool"] == "slow_count").unwrap();
    assert_eq!(streamed["stream"], true);
    assert_eq!(streamed["mcp"]["outcome"], "ok");
    assert!(streamed["mcp"]["messages"].as_u64().unwrap() >= 4, "{streamed}");

    // 4. A per-tool limit: the second echo is refused before the server.
    tests::fresh_minute_window();
    let v = s.client(&["call", "echo", r#"{"text":"one"}"#]);
    assert_eq!(v["content"], json!(["one"]), "{v}");
    let v = s.client(&["call", "echo", r#"{"text":"two"}"#]);
    assert_eq!(v["error"]["code"], -32002, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("echo-once"), "{v}");
    assert_eq!(s.server.log().iter().filter(|l| l["tool"] == "echo").count(), 1);
    let limited = s
        .records("tools/call")
        .into_iter()
        .rfind(|r| r["mcp"]["tool"] == "echo")
        .unwrap();
    assert_eq!(limited["mcp"]["outcome"], "rate_limited");
    assert_eq!(limited["limit"]["limit"], "echo-once");
}

#[test]
fn sessions_resume_and_garbage_gets_json_rpc_errors() {
    if !privileged("sessions_resume_and_garbage_gets_json_rpc_errors") {
        return;
    }
    let s = setup("mcp-sessions", true);

    // A second client resumes the first one's session; the server sees the static key
    // (a bearer credential) in place of the client's, and no record holds it.
    let v = s.client(&["resume"]);
    let session = v["session"].as_str().expect("a session").to_string();
    assert!(v["second"].to_string().contains('5'), "{v}");
    let log = s.server.log();
    assert!(!log.is_empty());
    for line in &log {
        assert_eq!(line["authorization"], format!("Bearer {BEARER_KEY}"), "{line}");
    }
    assert!(s.oauth.received().is_empty(), "no token fetched for a bearer key");
    assert_eq!(s.records("tools/call")[0]["credential"]["name"], "mcp-bearer");
    let audit = std::fs::read_to_string(s.gw.audit_path()).unwrap();
    assert!(!audit.contains(BEARER_KEY) && !s.gw.log().contains(BEARER_KEY));
    let resumed: Vec<Value> = s
        .records("tools/call")
        .into_iter()
        .filter(|r| r["mcp"]["session"] == session.as_str())
        .collect();
    assert_eq!(resumed.len(), 2, "both calls in one session");
    assert!(resumed.iter().all(|r| r["mcp"]["outcome"] == "ok"));

    // Not JSON, and a batch: 400 with JSON-RPC's codes, each recorded, nothing sent.
    let before = s.server.log().len();
    let post = |body: &str| {
        curl(
            &s.cg,
            &s.dir,
            HOST,
            CAPTURED,
            &s.gw.ca_cert(),
            &[
                "-H",
                "content-type: application/json",
                "-H",
                "accept: application/json, text/event-stream",
                "-d",
                body,
                &format!("https://{HOST}/mcp"),
            ],
        )
    };
    let (status, v) = post("{not json");
    assert!(status.starts_with("400"), "{status} {v}");
    assert_eq!(v["error"]["code"], -32700);
    assert!(v["id"].is_null());
    let (status, v) = post(r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"}]"#);
    assert!(status.starts_with("400"), "{status} {v}");
    assert_eq!(v["error"]["code"], -32600);
    assert_eq!(s.server.log().len(), before, "refused messages never reach the server");
    // Records are written as each answer ends: the last may still be on its way.
    s.gw.wait_until("both refusals recorded", std::time::Duration::from_secs(10), || {
        s.gw.audit_records()
            .iter()
            .filter(|r| r["mcp"]["kind"] == "invalid")
            .count()
            == 2
    });
    let invalid: Vec<Value> =
        s.gw.audit_records()
            .into_iter()
            .filter(|r| r["mcp"]["kind"] == "invalid")
            .collect();
    assert!(invalid
        .iter()
        .all(|r| r["status"] == 400 && r["error_reason"] == "mcp_invalid"));
}

#[test]
fn the_older_sse_transport_is_governed_and_gets_refusals_on_its_stream() {
    if !privileged("the_older_sse_transport_is_governed_and_gets_refusals_on_its_stream") {
        return;
    }
    let s = setup("mcp-sse", false);

    // The tool list comes on the GET stream, filtered there; answers to POSTs too.
    let v = s.sse_client(&["list"]);
    let session = v["session"].as_str().expect("the endpoint's session").to_string();
    assert!(v["tools"].to_string().contains("add"), "{v}");
    assert!(!v["tools"].to_string().contains("delete_everything"), "{v}");
    let v = s.sse_client(&["call", "add", r#"{"a":1,"b":2}"#]);
    assert_eq!(v["content"], json!(["3"]), "{v}");

    // A denied call: the client reads nothing from its POST, so the JSON-RPC error comes on
    // its stream (without it the client would wait for minutes); the server never hears of it.
    let started = std::time::Instant::now();
    let v = s.sse_client(&["call", "delete_everything", "{}"]);
    assert_eq!(v["error"]["code"], -32001, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("route agents"), "{v}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert!(!s.server.log().iter().any(|l| l["tool"] == "delete_everything"));
    // A limit's refusal goes the same way.
    tests::fresh_minute_window();
    let v = s.sse_client(&["call", "echo", r#"{"text":"one"}"#]);
    assert_eq!(v["content"], json!(["one"]), "{v}");
    let v = s.sse_client(&["call", "echo", r#"{"text":"two"}"#]);
    assert_eq!(v["error"]["code"], -32002, "{v}");
    assert_eq!(s.server.log().iter().filter(|l| l["tool"] == "echo").count(), 1);

    // Records: the POSTs were accepted (their answers went on the stream), with the session
    // from the endpoint; the streams saw the answers and filtered the list.
    // (A stream's record is written when it ends, as its client leaves.)
    s.gw.wait_until("five stream records", std::time::Duration::from_secs(10), || {
        s.gw.audit_records()
            .iter()
            .filter(|r| r["mcp"]["kind"] == "stream")
            .count()
            == 5
    });
    let list = &s.records("tools/list")[0];
    assert_eq!(list["mcp"]["outcome"], "accepted", "{list}");
    assert_eq!(list["mcp"]["session"], session.as_str());
    assert_eq!(list["status"], 202);
    let calls = s.records("tools/call");
    let denied = calls.iter().find(|r| r["mcp"]["tool"] == "delete_everything").unwrap();
    assert_eq!(denied["mcp"]["outcome"], "denied");
    assert_eq!(denied["status"], 202, "{denied}");
    assert!(denied["mcp"]["session"].is_string(), "{denied}");
    let limited = calls.iter().rfind(|r| r["mcp"]["tool"] == "echo").unwrap();
    assert_eq!(limited["mcp"]["outcome"], "rate_limited");
    let streams: Vec<Value> =
        s.gw.audit_records()
            .into_iter()
            .filter(|r| r["mcp"]["kind"] == "stream")
            .collect();
    assert_eq!(streams.len(), 5, "one GET stream per client");
    let first = streams
        .iter()
        .find(|r| r["mcp"]["session"] == session.as_str())
        .expect("the stream's record has the session");
    assert_eq!(first["mcp"]["tools_filtered"], 1, "{first}");
    assert!(first["mcp"]["messages"].as_u64().unwrap() >= 2, "{first}");
}
