//! Translation end to end: the unmodified OpenAI Python SDK, default base URL, served by a fake
//! Anthropic Messages backend (JSON and stream), including a fallback from a failing OpenAI
//! backend to the Anthropic one inside one request.

use std::time::Duration;

use tests::{
    fake_llm::{FakeLlm, Script, TestCa},
    l7::{curl, openai_sdk, openai_setup, sdk_json, OpenAiSetup},
    privileged, run, Gateway,
};

const ANT_KEY: &str = "sk-ant-real-translate-0042";

/// One scenario: `openai_setup(n)` plus fake backends at `127.20.<n>.4` onwards (over TLS with
/// the scenario's CA, or plain HTTP for metadata services), their backend and credential
/// entries, routes and environment — built the same way for every test.
struct Scenario {
    n: u8,
    name: &'static str,
    dir: tests::TempDir,
    ca: TestCa,
    next: u8,
    backends: String,
    credentials: String,
    yaml: String,
    envs: Vec<(String, String)>,
    anthropic: bool,
}

impl Scenario {
    fn new(n: u8, name: &'static str) -> Scenario {
        let dir = tests::TempDir::new(name);
        let ca = TestCa::new(&dir.0, name);
        Scenario {
            n,
            name,
            dir,
            ca,
            next: 4,
            backends: String::new(),
            credentials: String::new(),
            yaml: String::new(),
            envs: Vec::new(),
            anthropic: false,
        }
    }

    /// The next free address of the scenario.
    fn ip(&mut self) -> String {
        self.next += 1;
        format!("127.20.{}.{}", self.n, self.next - 1)
    }

    /// A fake provider over TLS (its certificate from the scenario's CA).
    fn tls(&mut self, name: &str) -> FakeLlm {
        let ip = self.ip();
        FakeLlm::start(name, &ip, Some(self.ca.server_config(&[&ip])))
    }

    /// A fake over plain HTTP (metadata services and STS answer so on a node).
    fn plain(&mut self, name: &str) -> FakeLlm {
        let ip = self.ip();
        FakeLlm::start(name, &ip, None)
    }

    /// A file of the scenario's.
    fn file(&self, name: &str, contents: &str) -> std::path::PathBuf {
        let path = self.dir.path(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// A backend reaching `fake` over TLS; `keys` are its other lines.
    fn backend(&mut self, name: &str, fake: &FakeLlm, keys: &[&str]) {
        self.backends += &format!("  - name: {name}\n    url: {}\n", fake.url(true));
        for k in keys {
            self.backends += &format!("    {k}\n");
        }
        self.backends += &format!("    caFile: {}\n", self.ca.pem_path.display());
    }

    /// A credential whose value is in a file.
    fn credential(&mut self, name: &str, kind: &str, value: &str) {
        let file = self.file(&format!("{name}.secret"), value);
        self.credentials += &format!("  - name: {name}\n    kind: {kind}\n    file: {}\n", file.display());
    }

    /// A credential with no file (metadata kinds); `keys` are its other lines.
    fn node_credential(&mut self, name: &str, kind: &str, keys: &[&str]) {
        self.credentials += &format!("  - name: {name}\n    kind: {kind}\n");
        for k in keys {
            self.credentials += &format!("    {k}\n");
        }
    }

    /// Top-level YAML (routes).
    fn yaml(&mut self, yaml: &str) {
        self.yaml += yaml;
    }

    /// An `anthropic` provider (`api.anthropic.com`, Anthropic clients) at the next address.
    fn anthropic_provider(&mut self) -> String {
        self.anthropic = true;
        self.ip()
    }

    fn env(&mut self, key: &str, value: &str) {
        self.envs.push((key.into(), value.into()));
    }

    /// Starts the gateway. The scenario's directory (CA, secrets) lives as long as the
    /// returned value.
    fn start(mut self) -> (tests::TempDir, OpenAiSetup, Gateway) {
        let (s, mut builder) = openai_setup(self.n, self.name, &self.backends);
        // Continues the `credentials:` list that openai_setup ends with.
        builder = builder.yaml(&self.credentials);
        if self.anthropic {
            let ip = format!("127.20.{}.{}", self.n, self.next - 1);
            builder = builder.llm_provider(
                "anthropic",
                &["api.anthropic.com"],
                &[&ip],
                &[443],
                &["schema: anthropic"],
            );
        }
        for (k, v) in std::mem::take(&mut self.envs) {
            builder = builder.env(&k, &v);
        }
        let gw = builder.yaml(&self.yaml).start();
        (self.dir, s, gw)
    }
}

/// The SDK's tool loop through a translation, streamed and not: the backend calls
/// `get_weather({"city": "Paris"})`, the SDK sends the result back, the backend answers with
/// it.
fn tool_loop(s: &OpenAiSetup, gw: &Gateway) {
    for mode in ["tools", "tools_stream"] {
        let v = openai_sdk(s, gw, &[mode, "gpt-4o"]);
        assert_eq!(v["finish1"], "tool_calls", "{mode}: {v}");
        assert_eq!(v["calls"], 1, "{mode}: {v}");
        assert_eq!(v["name"], "get_weather", "{mode}: {v}");
        assert_eq!(v["args"], serde_json::json!({"city": "Paris"}), "{mode}: {v}");
        assert!(v["id"].as_str().is_some_and(|id| !id.is_empty()), "{mode}: {v}");
        assert_eq!(v["finish2"], "stop", "{mode}: {v}");
        assert_eq!(v["answer"], "the weather in Paris is sunny, 21 C", "{mode}: {v}");
    }
}

/// `openai_setup` plus a fake Anthropic backend `claude` with its own key, and `routes`.
fn with_claude(n: u8, name: &'static str, routes: &str) -> (tests::TempDir, OpenAiSetup, FakeLlm, Gateway) {
    let mut sc = Scenario::new(n, name);
    let claude = sc.tls("claude");
    sc.backend("claude", &claude, &["schema: anthropic", "credential: ant"]);
    sc.credential("ant", "xApiKey", ANT_KEY);
    sc.yaml(routes);
    let (dir, s, gw) = sc.start();
    (dir, s, claude, gw)
}

#[test]
fn the_openai_sdk_is_served_by_an_anthropic_backend_streaming_and_not() {
    if !privileged("the_openai_sdk_is_served_by_an_anthropic_backend_streaming_and_not") {
        return;
    }
    let routes = "routes:\n  - name: to-claude\n    match: { models: [\"gpt-4o*\"] }\n    backends: [{ backend: claude, model: claude-sonnet-4-5 }]\n";
    let (_dir, s, claude, gw) = with_claude(31, "tr-sdk", routes);
    let v = openai_sdk(&s, &gw, &["chat", "gpt-4o"]);
    assert_eq!(v["content"], "hello from claude", "{v}");
    assert_eq!(v["usage"]["prompt_tokens"], 10);
    assert_eq!(v["usage"]["completion_tokens"], 4);
    let r = &claude.received()[0];
    assert_eq!(r.path, "/v1/messages");
    assert_eq!(r.headers["x-api-key"], ANT_KEY);
    assert!(!r.headers.contains_key("authorization"));
    assert_eq!(r.headers["anthropic-version"], "2023-06-01");
    assert_eq!(r.body["model"], "claude-sonnet-4-5");
    assert_eq!(r.body["messages"][0]["content"][0]["text"], "say hello");
    assert!(r.body["max_tokens"].as_u64().unwrap() > 0);

    let v = openai_sdk(&s, &gw, &["stream_usage", "gpt-4o"]);
    assert_eq!(v["content"], "hello from claude", "{v}");
    assert_eq!(
        v["usage"]["completion_tokens"], 4,
        "usage chunk translated from message_delta"
    );
    let v = openai_sdk(&s, &gw, &["stream", "gpt-4o", s.dir.path("gate").to_str().unwrap()]);
    assert_eq!(v["content"], "hello from claude", "{v}");

    let records = gw.wait_audit(3);
    for r in &records {
        assert_eq!(r["translation"], "openai_chat->anthropic_messages");
        assert_eq!(r["schema"], "openai");
        assert_eq!(r["backend"], "claude");
        assert_eq!(
            (r["tokens"]["input"].as_u64(), r["tokens"]["output"].as_u64()),
            (Some(10), Some(4)),
            "{r}"
        );
        // claude-sonnet-4-5: $3 / $15 per 1M tokens
        assert_eq!(r["cost_nano_usd"], 10 * 3000 + 4 * 15000);
        assert_eq!(r["credential"]["name"], "ant");
    }
    assert!(s.primary.received().is_empty());

    tool_loop(&s, &gw);
    let r = claude.received();
    // The tool's definition, the call and its result, in Anthropic's shape.
    assert_eq!(r[3].body["tools"][0]["name"], "get_weather");
    assert_eq!(r[3].body["tools"][0]["input_schema"]["required"][0], "city");
    let turns = &r[4].body["messages"];
    assert_eq!(turns[1]["content"][0]["type"], "tool_use");
    assert_eq!(turns[1]["content"][0]["input"], serde_json::json!({"city": "Paris"}));
    assert_eq!(turns[2]["content"][0]["type"], "tool_result");
    assert_eq!(turns[2]["content"][0]["tool_use_id"], turns[1]["content"][0]["id"]);
    let records = gw.wait_audit(7);
    assert_eq!(
        (
            records[3]["tokens"]["input"].as_u64(),
            records[3]["tokens"]["output"].as_u64()
        ),
        (Some(20), Some(9))
    );
}

#[test]
fn a_failing_openai_backend_falls_back_to_anthropic_within_one_request() {
    if !privileged("a_failing_openai_backend_falls_back_to_anthropic_within_one_request") {
        return;
    }
    let routes = "routes:\n  - name: cross\n    backends: [{ backend: primary, priority: 0 }, { backend: claude, priority: 1, model: claude-haiku-4-5 }]\n";
    let (_dir, s, claude, gw) = with_claude(32, "tr-fallback", routes);
    s.primary.set_script(Script {
        status: Some(503),
        ..Default::default()
    });
    let v = openai_sdk(&s, &gw, &["chat", "gpt-4o-mini"]);
    assert_eq!(v["content"], "hello from claude", "{v}");
    let r = &gw.wait_audit(1)[0];
    let attempts = r["attempts"].as_array().unwrap();
    assert_eq!(
        (attempts[0]["backend"].as_str(), attempts[0]["status"].as_u64()),
        (Some("primary"), Some(503))
    );
    assert_eq!(
        (attempts[1]["backend"].as_str(), attempts[1]["status"].as_u64()),
        (Some("claude"), Some(200))
    );
    assert_eq!(r["translation"], "openai_chat->anthropic_messages");
    assert_eq!(claude.received()[0].body["model"], "claude-haiku-4-5");
    // Each attempt used its own backend's credential.
    assert!(s.primary.received()[0].headers["authorization"].starts_with("Bearer sk-real-openai"));
    assert_eq!(claude.received()[0].headers["x-api-key"], ANT_KEY);

    // A feature Anthropic cannot express: a clear 400 naming it, in OpenAI's shape.
    s.primary.set_script(Script::default());
    let routes_only_claude =
        "routes:\n  - name: only-claude\n    backends: [{ backend: claude, model: claude-haiku-4-5 }]\n";
    let cfg = gw.config_yaml().replace(routes, routes_only_claude);
    gw.reload(&cfg);
    let (status, v) = curl(
        &s.cg,
        &s.dir,
        "api.openai.com",
        &s.captured_ip,
        &gw.ca_cert(),
        &[
            "-H",
            "content-type: application/json",
            "-d",
            r#"{"model":"gpt-4o","n":3,"messages":[{"role":"user","content":"hi"}]}"#,
            "https://api.openai.com/v1/chat/completions",
        ],
    );
    assert!(status.starts_with("400"), "{status} {v}");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(v["error"]["message"].as_str().unwrap().contains("`n`"), "{v}");

    // JSON mode: answered through a forced tool, returned as the message text.
    let (status, v) = curl(
        &s.cg,
        &s.dir,
        "api.openai.com",
        &s.captured_ip,
        &gw.ca_cert(),
        &[
            "-H",
            "content-type: application/json",
            "-d",
            r#"{"model":"gpt-4o","response_format":{"type":"json_object"},"messages":[{"role":"user","content":"weather in Paris as JSON"}]}"#,
            "https://api.openai.com/v1/chat/completions",
        ],
    );
    assert!(status.starts_with("200"), "{status} {v}");
    assert_eq!(v["choices"][0]["message"]["content"], r#"{"city":"Paris"}"#, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let last = claude.received().pop().unwrap();
    assert_eq!(last.body["tool_choice"]["type"], "tool");
}

#[test]
fn the_anthropic_sdk_is_served_by_an_openai_compatible_backend() {
    if !privileged("the_anthropic_sdk_is_served_by_an_openai_compatible_backend") {
        return;
    }
    let (s, builder) = openai_setup(33, "tr-anthropic-sdk", "");
    let gw = builder
        .llm_provider("anthropic", &["api.anthropic.com"], &["127.20.33.5"], &[443], &["schema: anthropic"])
        .yaml("routes:\n  - name: claude-to-openai\n    match: { providers: [anthropic] }\n    backends: [{ backend: primary, model: gpt-4o-mini }]\n")
        .start();
    let sdk = |mode: &str| {
        sdk_json(
            &s,
            &gw,
            "api.anthropic.com",
            "127.20.33.5",
            "anthropic_client.py",
            &[mode, "claude-sonnet-4-5"],
        )
    };
    let v = sdk("message");
    assert_eq!(v["text"], "hello from primary", "{v}");
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(
        (
            v["usage"]["input_tokens"].as_u64(),
            v["usage"]["output_tokens"].as_u64()
        ),
        (Some(9), Some(4))
    );
    let v = sdk("stream");
    assert_eq!(v["text"], "hello from primary", "{v}");
    assert_eq!(v["usage"]["output_tokens"], 4);
    let upstream = s.primary.received();
    assert_eq!(upstream[0].path, "/v1/chat/completions");
    assert_eq!(upstream[0].body["model"], "gpt-4o-mini");
    assert_eq!(
        upstream[0].body["messages"][0],
        serde_json::json!({"role": "system", "content": "Be brief."})
    );
    assert!(
        upstream[0].headers["authorization"].starts_with("Bearer sk-real-openai"),
        "the backend's key"
    );
    assert!(
        !upstream[0].headers.contains_key("x-api-key"),
        "the client's key is gone"
    );
    assert_eq!(upstream[1].body["stream_options"]["include_usage"], true);
    // The Anthropic SDK's tool loop: the OpenAI backend's tool call (streamed, arguments in
    // pieces) becomes a tool_use block; the tool_result goes back as a `tool` message.
    let v = sdk("tools");
    assert_eq!(v["stop1"], "tool_use", "{v}");
    assert_eq!(v["name"], "get_weather");
    assert_eq!(v["input"], serde_json::json!({"city": "Paris"}));
    assert_eq!(v["stop2"], "end_turn");
    assert_eq!(v["answer"], "the weather in Paris is sunny, 21 C");
    let upstream = s.primary.received();
    assert_eq!(upstream[2].body["tools"][0]["function"]["name"], "get_weather");
    let turns = &upstream[3].body["messages"];
    assert_eq!(
        turns[1]["tool_calls"][0]["function"]["arguments"],
        r#"{"city":"Paris"}"#
    );
    assert_eq!(
        turns[2],
        serde_json::json!({"role": "tool", "tool_call_id": v["id"], "content": "sunny, 21 C"})
    );
    let records = gw.wait_audit(2);
    for r in &records[..2] {
        assert_eq!(r["translation"], "anthropic_messages->openai_chat");
        assert_eq!(r["schema"], "anthropic");
        assert_eq!(
            (r["tokens"]["input"].as_u64(), r["tokens"]["output"].as_u64()),
            (Some(9), Some(4)),
            "{r}"
        );
    }
}

/// The Anthropic SDK served by Bedrock Converse (SigV4-checked) and by Gemini: its request goes
/// through OpenAI chat to the backend's API, and answers, streams and tool calls come back the
/// same way.
#[test]
fn the_anthropic_sdk_is_served_by_bedrock_and_gemini_backends() {
    if !privileged("the_anthropic_sdk_is_served_by_bedrock_and_gemini_backends") {
        return;
    }
    let mut sc = Scenario::new(39, "tr-anthropic-cross");
    let bedrock = sc.tls("bedrock");
    let gemini = sc.tls("gemini");
    let anthropic_ip = sc.anthropic_provider();
    sc.backend(
        "bedrock",
        &bedrock,
        &["schema: bedrock", "region: us-east-1", "credential: aws"],
    );
    sc.backend("gemini", &gemini, &["schema: gemini", "credential: gemini-key"]);
    sc.credential("aws", "awsSigV4", tests::fake_llm::BEDROCK_KEYS);
    sc.credential("gemini-key", "xGoogApiKey", "AIza-real-gemini-key");
    sc.yaml(
        "routes:\n  - name: claude-on-bedrock\n    match: { models: [\"claude-*\"] }\n    backends: [{ backend: bedrock, model: \"us.anthropic.claude-3-5-haiku-20241022-v1:0\" }]\n\
         \x20 - name: gemini\n    match: { models: [\"gemini-*\"] }\n    backends: [{ backend: gemini }]\n",
    );
    let (_dir, s, gw) = sc.start();
    let sdk = |mode: &str, model: &str| {
        sdk_json(
            &s,
            &gw,
            "api.anthropic.com",
            &anthropic_ip,
            "anthropic_client.py",
            &[mode, model],
        )
    };
    for (model, name, usage) in [
        ("claude-sonnet-4-5", "bedrock", (11, 6)),
        ("gemini-2.5-flash", "gemini", (8, 5)),
    ] {
        let v = sdk("message", model);
        assert_eq!(v["text"], format!("hello from {name}"), "{v}");
        assert_eq!(v["stop_reason"], "end_turn");
        assert_eq!(
            (
                v["usage"]["input_tokens"].as_u64(),
                v["usage"]["output_tokens"].as_u64()
            ),
            (Some(usage.0), Some(usage.1)),
            "{v}"
        );
        let v = sdk("stream", model);
        assert_eq!(v["text"], format!("hello from {name}"), "{v}");
        assert_eq!(v["usage"]["output_tokens"], usage.1, "{v}");
        let v = sdk("tools", model);
        assert_eq!(v["stop1"], "tool_use", "{v}");
        assert_eq!(v["input"], serde_json::json!({"city": "Paris"}), "{v}");
        assert_eq!(v["answer"], "the weather in Paris is sunny, 21 C", "{v}");
    }
    // Bedrock saw Converse bodies on Converse paths, signed (the fake checks), with the
    // system prompt and the tool result in its own shapes.
    let r = bedrock.received();
    assert_eq!(
        r[0].path,
        "/model/us.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"
    );
    assert_eq!(r[0].body["system"][0]["text"], "Be brief.");
    assert_eq!(
        r[1].path,
        "/model/us.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse-stream"
    );
    assert_eq!(
        r[3].body["messages"][2]["content"][0]["toolResult"]["content"][0]["text"],
        "sunny, 21 C"
    );
    let g = gemini.received();
    assert_eq!(g[0].path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(
        g[3].body["contents"][2]["parts"][0]["functionResponse"]["name"],
        "get_weather"
    );
    let records = gw.wait_audit(8);
    for (i, r) in records.iter().enumerate() {
        let want = if i < 4 {
            "anthropic_messages->bedrock_converse"
        } else {
            "anthropic_messages->gemini"
        };
        assert_eq!(
            (r["translation"].as_str(), r["schema"].as_str()),
            (Some(want), Some("anthropic")),
            "{r}"
        );
        assert_eq!(r["status"], 200);
    }
}

#[test]
fn an_azure_openai_backend_gets_its_deployment_path_api_version_and_api_key() {
    if !privileged("an_azure_openai_backend_gets_its_deployment_path_api_version_and_api_key") {
        return;
    }
    let mut sc = Scenario::new(34, "tr-azure");
    let azure = sc.tls("azure");
    sc.backend(
        "azure",
        &azure,
        &[
            "schema: azureOpenai",
            "deployment: gpt4o-prod",
            "apiVersion: 2024-10-21",
            "credential: azure-key",
        ],
    );
    sc.credential("azure-key", "apiKey", "azure-real-key-77");
    sc.yaml("routes:\n  - name: to-azure\n    backends: [{ backend: azure }]\n");
    let (_dir, s, gw) = sc.start();
    let v = openai_sdk(&s, &gw, &["chat", "gpt-4o"]);
    assert_eq!(v["content"], "hello from azure", "{v}");
    let r = &azure.received()[0];
    assert_eq!(r.path, "/openai/deployments/gpt4o-prod/chat/completions");
    assert_eq!(r.query, "api-version=2024-10-21");
    assert_eq!(r.headers["api-key"], "azure-real-key-77");
    assert!(!r.headers.contains_key("authorization"));
    let rec = &gw.wait_audit(1)[0];
    assert_eq!(rec["translation"], "openai->azure_openai");
    assert_eq!(rec["tokens"]["input"], 9);
    // The Responses API: Azure's v1 path (no api-version), the deployment as the model.
    let v = responses_sdk(&s, &gw, &["create", "gpt-4o"]);
    assert_eq!(v["text"], "hello from azure", "{v}");
    let r = &azure.received()[1];
    assert_eq!((r.path.as_str(), r.query.as_str()), ("/openai/v1/responses", ""));
    assert_eq!(r.body["model"], "gpt4o-prod");
    assert_eq!(r.headers["api-key"], "azure-real-key-77");
    let rec = &gw.wait_audit(2)[1];
    assert_eq!(rec["translation"], "openai_responses->azure_openai");
    assert_eq!(
        (rec["tokens"]["input"].as_u64(), rec["tokens"]["output"].as_u64()),
        (Some(9), Some(4))
    );
}

#[test]
fn the_openai_sdk_is_served_by_a_gemini_backend_streaming_and_not() {
    if !privileged("the_openai_sdk_is_served_by_a_gemini_backend_streaming_and_not") {
        return;
    }
    let mut sc = Scenario::new(35, "tr-gemini");
    let gemini = sc.tls("gemini");
    sc.backend("gemini", &gemini, &["schema: gemini", "credential: gemini-key"]);
    sc.credential("gemini-key", "xGoogApiKey", "AIza-real-gemini-key");
    sc.yaml("routes:\n  - name: to-gemini\n    backends: [{ backend: gemini, model: gemini-2.5-flash }]\n");
    let (_dir, s, gw) = sc.start();
    let v = openai_sdk(&s, &gw, &["chat", "gpt-4o"]);
    assert_eq!(v["content"], "hello from gemini", "{v}");
    assert_eq!(v["usage"]["total_tokens"], 13);
    let v = openai_sdk(&s, &gw, &["stream_usage", "gpt-4o"]);
    assert_eq!(v["content"], "hello from gemini", "{v}");
    assert_eq!(v["usage"]["completion_tokens"], 5);
    // Embeddings: the SDK asks for base64 vectors by default; both encodings come back right.
    let e = openai_sdk(&s, &gw, &["embed", "text-embedding-3-small"]);
    assert_eq!(
        e["vectors"],
        serde_json::json!([[0.0, 0.125, 0.25], [1.25, 1.375, 1.5]]),
        "{e}"
    );
    let e = openai_sdk(&s, &gw, &["embed_float", "text-embedding-3-small"]);
    assert_eq!(e["vectors"], serde_json::json!([[0.0, 0.125, 0.25, 0.375]]), "{e}");
    let r = gemini.received();
    assert_eq!(r[2].path, "/v1beta/models/gemini-2.5-flash:batchEmbedContents");
    assert_eq!(r[2].body["requests"][1]["content"]["parts"][0]["text"], "second text");
    assert_eq!(r[2].body["requests"][0]["outputDimensionality"], 3);
    assert_eq!(r[0].path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(r[1].path, "/v1beta/models/gemini-2.5-flash:streamGenerateContent");
    assert_eq!(r[1].query, "alt=sse");
    assert_eq!(r[0].headers["x-goog-api-key"], "AIza-real-gemini-key");
    assert_eq!(r[0].body["contents"][0]["parts"][0]["text"], "say hello");
    let records = gw.wait_audit(4);
    assert_eq!(records[2]["translation"], "openai_embeddings->gemini");
    for rec in &records[..2] {
        assert_eq!(rec["translation"], "openai_chat->gemini");
        assert_eq!(
            (rec["tokens"]["input"].as_u64(), rec["tokens"]["output"].as_u64()),
            (Some(8), Some(5)),
            "{rec}"
        );
        // gemini-2.5-flash: $0.30 / $2.50 per 1M tokens
        assert_eq!(rec["cost_nano_usd"], 8 * 300 + 5 * 2500);
    }

    tool_loop(&s, &gw);
    let r = gemini.received();
    assert_eq!(r[4].body["tools"][0]["functionDeclarations"][0]["name"], "get_weather");
    // Gemini answers a call by the function's name, which the translation looked up by id.
    let turns = &r[5].body["contents"];
    assert_eq!(
        turns[1]["parts"][0]["functionCall"]["args"],
        serde_json::json!({"city": "Paris"})
    );
    assert_eq!(turns[2]["parts"][0]["functionResponse"]["name"], "get_weather");
    assert_eq!(
        turns[2]["parts"][0]["functionResponse"]["response"]["result"],
        "sunny, 21 C"
    );
    let records = gw.wait_audit(8);
    assert_eq!(
        (
            records[4]["tokens"]["input"].as_u64(),
            records[4]["tokens"]["output"].as_u64()
        ),
        (Some(20), Some(9))
    );
}

#[test]
fn the_openai_sdk_is_served_by_a_sigv4_signed_bedrock_backend_streaming_and_not() {
    if !privileged("the_openai_sdk_is_served_by_a_sigv4_signed_bedrock_backend_streaming_and_not") {
        return;
    }
    let mut sc = Scenario::new(36, "tr-bedrock");
    let bedrock = sc.tls("bedrock");
    sc.backend(
        "bedrock",
        &bedrock,
        &["schema: bedrock", "region: us-east-1", "credential: aws"],
    );
    sc.credential("aws", "awsSigV4", tests::fake_llm::BEDROCK_KEYS);
    sc.yaml(
        "routes:\n  - name: titan\n    match: { models: [\"amazon.titan-embed*\"] }\n    backends: [{ backend: bedrock }]\n\
         \x20 - name: to-bedrock\n    backends: [{ backend: bedrock, model: \"us.anthropic.claude-3-5-haiku-20241022-v1:0\" }]\n",
    );
    let (_dir, s, gw) = sc.start();
    // The fake answers 403 unless the signature covers what arrived, as Bedrock does.
    let v = openai_sdk(&s, &gw, &["chat", "gpt-4o"]);
    assert_eq!(v["content"], "hello from bedrock", "{v}");
    assert_eq!(v["usage"]["prompt_tokens"], 11);
    assert_eq!(v["usage"]["total_tokens"], 17);
    let r = &bedrock.received()[0];
    assert_eq!(r.path, "/model/us.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse");
    let auth = &r.headers["authorization"];
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDTOLLGATETEST/"),
        "{auth}"
    );
    assert!(auth.contains("/us-east-1/bedrock/aws4_request"), "{auth}");
    assert_eq!(r.body["messages"][0]["content"][0]["text"], "say hello");
    // No max_tokens asked: Converse uses the model's own maximum.
    assert!(r.body["inferenceConfig"].get("maxTokens").is_none(), "{}", r.body);
    assert!(r.body.get("model").is_none());
    // ConverseStream: AWS event-stream frames become OpenAI chunks, usage included.
    let v = openai_sdk(&s, &gw, &["stream_usage", "gpt-4o"]);
    assert_eq!(v["content"], "hello from bedrock", "{v}");
    assert_eq!(v["usage"]["completion_tokens"], 6);
    let r = &bedrock.received()[1];
    assert_eq!(
        r.path,
        "/model/us.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse-stream"
    );

    let records = gw.wait_audit(2);
    for rec in &records {
        assert_eq!(rec["status"], 200);
        assert_eq!(rec["translation"], "openai_chat->bedrock_converse");
        assert_eq!(
            (rec["tokens"]["input"].as_u64(), rec["tokens"]["output"].as_u64()),
            (Some(11), Some(6)),
            "{rec}"
        );
        // claude-3-5-haiku: $0.80 / $4.00 per 1M tokens
        assert_eq!(rec["cost_nano_usd"], 11 * 800 + 6 * 4000);
    }
    let secret = tests::fake_llm::BEDROCK_KEYS.split_once(':').unwrap().1;
    for rec in &records {
        assert!(!rec.to_string().contains(secret));
    }

    // Every request of the tool loop is signed too (the fake answers 403 otherwise).
    tool_loop(&s, &gw);
    let r = bedrock.received();
    assert_eq!(r[2].body["toolConfig"]["tools"][0]["toolSpec"]["name"], "get_weather");
    let turns = &r[3].body["messages"];
    assert_eq!(
        turns[1]["content"][0]["toolUse"]["input"],
        serde_json::json!({"city": "Paris"})
    );
    assert_eq!(turns[2]["content"][0]["toolResult"]["toolUseId"], "tooluse_fake01");
    assert_eq!(
        turns[2]["content"][0]["toolResult"]["content"][0]["text"],
        "sunny, 21 C"
    );
    let records = gw.wait_audit(6);
    assert_eq!(
        (
            records[2]["tokens"]["input"].as_u64(),
            records[2]["tokens"]["output"].as_u64()
        ),
        (Some(20), Some(9))
    );

    // Embeddings → Titan: one signed InvokeModel call per text, answered as one list in the
    // SDK's default base64 encoding, with every call's tokens counted.
    let e = openai_sdk(&s, &gw, &["embed", "amazon.titan-embed-text-v2:0"]);
    assert_eq!(
        e["vectors"],
        serde_json::json!([[1.25, 1.375, 1.5], [1.375, 1.5, 1.625]]),
        "{e}"
    );
    let calls: Vec<_> = bedrock.received().into_iter().skip(6).collect();
    assert_eq!(calls.len(), 2, "one call per input text");
    let mut texts: Vec<&str> = calls.iter().map(|c| c.body["inputText"].as_str().unwrap()).collect();
    texts.sort();
    assert_eq!(texts, ["first text", "second text"]);
    for c in &calls {
        assert_eq!(c.path, "/model/amazon.titan-embed-text-v2%3A0/invoke");
        assert_eq!(c.body["dimensions"], 3);
    }
    let rec = &gw.wait_audit(7)[6];
    assert_eq!(rec["translation"], "openai_embeddings->bedrock_titan");
    assert_eq!(rec["status"], 200);
    assert_eq!(rec["tokens"]["input"], 4, "{rec}");
    // Titan Text Embeddings V2: $0.02 per 1M tokens.
    assert_eq!(rec["cost_nano_usd"], 4 * 20);

    // A failing call fails the request with the upstream status, in the client's error shape,
    // and the record is still written.
    bedrock.set_script(Script {
        status: Some(400),
        ..Default::default()
    });
    let (status, v) = curl(
        &s.cg,
        &s.dir,
        "api.openai.com",
        &s.captured_ip,
        &gw.ca_cert(),
        &[
            "-H",
            "content-type: application/json",
            "-d",
            r#"{"model":"amazon.titan-embed-text-v2:0","input":["a","b","c"]}"#,
            "https://api.openai.com/v1/embeddings",
        ],
    );
    assert!(status.starts_with("400"), "{status} {v}");
    assert_eq!(v["error"]["message"], "bedrock failed on purpose", "{v}");
    let rec = &gw.wait_audit(8)[7];
    assert_eq!(
        (rec["status"].as_u64(), rec["translation"].as_str()),
        (Some(400), Some("openai_embeddings->bedrock_titan"))
    );
}

#[test]
fn the_openai_sdk_is_served_by_vertex_with_oauth_tokens_from_a_service_account() {
    if !privileged("the_openai_sdk_is_served_by_vertex_with_oauth_tokens_from_a_service_account") {
        return;
    }
    let mut sc = Scenario::new(37, "tr-vertex");
    let vertex = sc.tls("vertex");
    // A throwaway service-account key, as GCP hands them out; the fake token endpoint trusts
    // its public half only.
    let pem = sc.dir.path("sa.pem");
    let der = sc.dir.path("sa.der");
    for args in [
        vec![
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            pem.to_str().unwrap(),
        ],
        vec![
            "rsa",
            "-in",
            pem.to_str().unwrap(),
            "-RSAPublicKey_out",
            "-outform",
            "DER",
            "-out",
            der.to_str().unwrap(),
        ],
    ] {
        let mut cmd = std::process::Command::new("openssl");
        cmd.args(&args);
        let out = run(cmd, Duration::from_secs(60));
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    vertex.set_script(Script {
        jwt_public_key: Some(std::fs::read(&der).unwrap()),
        ..Script::default()
    });
    let private_key = std::fs::read_to_string(&pem).unwrap();
    let sa = serde_json::json!({
        "type": "service_account", "project_id": "acme-ml", "private_key_id": "k1",
        "private_key": private_key, "client_email": "tollgate@acme-ml.iam.gserviceaccount.com",
        "token_uri": format!("{}/token", vertex.url(true)),
    });
    sc.backend(
        "vertex",
        &vertex,
        &[
            "schema: vertex",
            "project: acme-ml",
            "region: europe-west4",
            "credential: gcp",
        ],
    );
    sc.credential("gcp", "gcpServiceAccount", &sa.to_string());
    sc.yaml(
        "routes:\n  - name: embeddings\n    match: { models: [\"*embedding*\"] }\n    backends: [{ backend: vertex }]\n\
         \x20 - name: to-vertex\n    backends: [{ backend: vertex, model: gemini-2.5-flash }]\n",
    );
    let (_dir, s, gw) = sc.start();
    let v = openai_sdk(&s, &gw, &["chat", "gpt-4o"]);
    assert_eq!(v["content"], "hello from vertex", "{v}");
    let v = openai_sdk(&s, &gw, &["stream_usage", "gpt-4o"]);
    assert_eq!(v["content"], "hello from vertex", "{v}");
    assert_eq!(v["usage"]["completion_tokens"], 5);
    let r = vertex.received();
    // One token request, then the token is reused.
    let paths: Vec<&str> = r.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/token",
            "/v1/projects/acme-ml/locations/europe-west4/publishers/google/models/gemini-2.5-flash:generateContent",
            "/v1/projects/acme-ml/locations/europe-west4/publishers/google/models/gemini-2.5-flash:streamGenerateContent",
        ]
    );
    assert_eq!(
        r[1].headers["authorization"],
        "Bearer ya29.fake-tollgate@acme-ml.iam.gserviceaccount.com"
    );
    let records = gw.wait_audit(2);
    for rec in &records {
        assert_eq!(rec["status"], 200);
        assert_eq!(rec["cost_nano_usd"], 8 * 300 + 5 * 2500);
        assert!(!rec.to_string().contains("ya29."), "{rec}");
    }
    assert!(!gw.log().contains("PRIVATE KEY") && !gw.log().contains("ya29."));

    // Embeddings through `:predict`: the text-embedding family in one call, gemini-embedding
    // one call per text; both answered as one OpenAI list with every call's tokens.
    for (model, calls) in [("text-embedding-005", 1), ("gemini-embedding-001", 2)] {
        let before = vertex.received().len();
        let e = openai_sdk(&s, &gw, &["embed", model]);
        assert_eq!(
            e["vectors"],
            serde_json::json!([[1.25, 1.375, 1.5], [1.375, 1.5, 1.625]]),
            "{model}: {e}"
        );
        let r = vertex.received();
        assert_eq!(r.len() - before, calls, "{model}");
        assert_eq!(
            r[before].path,
            format!("/v1/projects/acme-ml/locations/europe-west4/publishers/google/models/{model}:predict")
        );
        assert_eq!(r[before].body["parameters"]["outputDimensionality"], 3);
    }
    let records = gw.wait_audit(4);
    for rec in &records[2..] {
        assert_eq!(
            (rec["status"].as_u64(), rec["translation"].as_str()),
            (Some(200), Some("openai_embeddings->vertex_predict"))
        );
        assert_eq!(rec["tokens"]["input"], 4, "{rec}");
    }
    // gemini-embedding-001: $0.15 per 1M tokens.
    assert_eq!(records[3]["cost_nano_usd"], 4 * 150);
}

#[test]
fn an_azure_openai_backend_gets_entra_tokens_for_its_application() {
    if !privileged("an_azure_openai_backend_gets_entra_tokens_for_its_application") {
        return;
    }
    let mut sc = Scenario::new(38, "tr-entra");
    let azure = sc.tls("azure");
    let app = format!(
        "{{{}, \"authorityHost\": \"{}\"}}",
        tests::fake_llm::ENTRA_APP,
        azure.url(true)
    );
    sc.backend(
        "azure",
        &azure,
        &["schema: azureOpenai", "deployment: gpt4o-prod", "credential: entra"],
    );
    sc.credential("entra", "azureEntra", &app);
    sc.yaml("routes:\n  - name: to-azure\n    backends: [{ backend: azure }]\n");
    let (_dir, s, gw) = sc.start();
    for _ in 0..2 {
        let v = openai_sdk(&s, &gw, &["chat", "gpt-4o"]);
        assert_eq!(v["content"], "hello from azure", "{v}");
    }
    let r = azure.received();
    let paths: Vec<&str> = r.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/contoso/oauth2/v2.0/token",
            "/openai/deployments/gpt4o-prod/chat/completions",
            "/openai/deployments/gpt4o-prod/chat/completions"
        ],
        "one token for both calls"
    );
    assert_eq!(
        r[1].headers["authorization"],
        "Bearer eyJ0eXAi.fake-entra/contoso-tollgate-app"
    );
    assert!(!r[1].headers.contains_key("api-key"));
    for rec in gw.wait_audit(2) {
        assert_eq!(rec["status"], 200);
        assert!(!rec.to_string().contains("eyJ0eXAi") && !rec.to_string().contains("entra~Secret"));
    }
    assert!(!gw.log().contains("eyJ0eXAi") && !gw.log().contains("entra~Secret"));
}

/// No secret on the node at all: Vertex tokens from the GCP metadata server (GKE Workload
/// Identity, GCE) and Azure OpenAI tokens from the instance metadata service (managed
/// identity), each asked once with the header that service requires, then reused.
#[test]
fn node_identities_from_metadata_services_serve_vertex_and_azure() {
    if !privileged("node_identities_from_metadata_services_serve_vertex_and_azure") {
        return;
    }
    let mut sc = Scenario::new(40, "tr-metadata");
    let vertex = sc.tls("vertex");
    let azure = sc.tls("azure");
    let gce = sc.plain("gce");
    let imds = sc.plain("imds");
    let ec2 = sc.plain("ec2");
    let bedrock = sc.tls("bedrock");
    sc.backend(
        "vertex",
        &vertex,
        &[
            "schema: vertex",
            "project: acme-ml",
            "region: us-central1",
            "credential: node-gcp",
        ],
    );
    sc.backend(
        "azure",
        &azure,
        &[
            "schema: azureOpenai",
            "deployment: gpt4o-prod",
            "credential: node-azure",
        ],
    );
    sc.backend(
        "bedrock",
        &bedrock,
        &["schema: bedrock", "region: us-east-1", "credential: node-aws"],
    );
    let gce_url = format!(
        "tokenUrl: {}/computeMetadata/v1/instance/service-accounts/default/token",
        gce.url(false)
    );
    sc.node_credential("node-gcp", "gcpMetadata", &[&gce_url]);
    let imds_url = format!(
        "tokenUrl: \"{}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fcognitiveservices.azure.com\"",
        imds.url(false)
    );
    sc.node_credential("node-azure", "azureManagedIdentity", &[&imds_url]);
    sc.node_credential("node-aws", "awsMetadata", &[&format!("tokenUrl: {}", ec2.url(false))]);
    sc.yaml(
        "routes:\n  - name: gemini\n    match: { models: [\"gemini-*\"] }\n    backends: [{ backend: vertex }]\n\
         \x20 - name: claude\n    match: { models: [\"claude-*\"] }\n    backends: [{ backend: bedrock, model: \"anthropic.claude-3-5-haiku-20241022-v1:0\" }]\n\
         \x20 - name: azure\n    backends: [{ backend: azure }]\n",
    );
    let (_dir, s, gw) = sc.start();
    for _ in 0..2 {
        assert_eq!(
            openai_sdk(&s, &gw, &["chat", "gemini-2.5-flash"])["content"],
            "hello from vertex"
        );
        assert_eq!(openai_sdk(&s, &gw, &["chat", "gpt-4o"])["content"], "hello from azure");
        // The fake Bedrock answers 403 unless the signature verifies with the role's keys.
        assert_eq!(
            openai_sdk(&s, &gw, &["chat", "claude-haiku"])["content"],
            "hello from bedrock"
        );
    }
    // IMDSv2: session token, role name, keys — once; the keys' session token is signed.
    let paths: Vec<String> = ec2
        .received()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        paths,
        [
            "PUT /latest/api/token",
            "GET /latest/meta-data/iam/security-credentials/",
            "GET /latest/meta-data/iam/security-credentials/tollgate-node-role"
        ]
    );
    let b = &bedrock.received()[1];
    assert_eq!(b.headers["x-amz-security-token"], "imds-session-credentials-token");
    assert!(
        b.headers["authorization"].contains("x-amz-security-token"),
        "{}",
        b.headers["authorization"]
    );
    let (g, i) = (gce.received(), imds.received());
    assert_eq!(g.len(), 1, "one token, reused");
    assert_eq!(
        (g[0].method.as_str(), g[0].headers["metadata-flavor"].as_str()),
        ("GET", "Google")
    );
    assert_eq!(i.len(), 1, "one token, reused (IMDS says expires_in as a string)");
    assert_eq!(i[0].headers["metadata"], "true");
    assert_eq!(
        vertex.received()[0].headers["authorization"],
        "Bearer ya29.fake-metadata-default"
    );
    assert_eq!(
        azure.received()[1].headers["authorization"],
        "Bearer eyJ0eXAi.fake-entra-msi"
    );
    for rec in gw.wait_audit(6) {
        assert_eq!(rec["status"], 200);
        let r = rec.to_string();
        assert!(
            !r.contains("ya29.") && !r.contains("eyJ0eXAi") && !r.contains("imds-session"),
            "{rec}"
        );
    }
    let secret = tests::fake_llm::BEDROCK_KEYS.split_once(':').unwrap().1;
    let log = gw.log();
    assert!(
        !log.contains("ya29.") && !log.contains("eyJ0eXAi") && !log.contains(secret) && !log.contains("imds-session")
    );
}

/// EKS Pod Identity: with `AWS_CONTAINER_CREDENTIALS_FULL_URI` and its token file in the
/// daemon's environment, an `awsMetadata` credential takes the pod role's keys from the agent,
/// presenting the token, and Bedrock requests are signed with them.
#[test]
fn eks_pod_identity_keys_sign_bedrock_requests() {
    if !privileged("eks_pod_identity_keys_sign_bedrock_requests") {
        return;
    }
    let mut sc = Scenario::new(41, "tr-pod-identity");
    let bedrock = sc.tls("bedrock");
    let agent = sc.plain("agent");
    let token_file = sc.file(
        "eks-pod-identity-token",
        &format!("{}\n", tests::fake_llm::EKS_POD_IDENTITY_TOKEN),
    );
    sc.backend(
        "bedrock",
        &bedrock,
        &["schema: bedrock", "region: us-west-2", "credential: pod-role"],
    );
    sc.node_credential("pod-role", "awsMetadata", &[]);
    sc.yaml("routes:\n  - name: claude\n    backends: [{ backend: bedrock, model: \"anthropic.claude-3-5-haiku-20241022-v1:0\" }]\n");
    sc.env(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        &format!("{}/v1/credentials", agent.url(false)),
    );
    sc.env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", token_file.to_str().unwrap());
    let (_dir, s, gw) = sc.start();
    for _ in 0..2 {
        let v = openai_sdk(&s, &gw, &["chat", "gpt-4o"]);
        assert_eq!(v["content"], "hello from bedrock", "the fake checks the signature: {v}");
    }
    let a = agent.received();
    assert_eq!(a.len(), 1, "keys reused");
    assert_eq!(a[0].headers["authorization"], tests::fake_llm::EKS_POD_IDENTITY_TOKEN);
    let b = &bedrock.received()[0];
    assert_eq!(b.headers["x-amz-security-token"], "pod-identity-session-token");
    assert!(b.headers["authorization"].contains("/us-west-2/bedrock/aws4_request"));
    let log = gw.log();
    assert!(!log.contains("fake-eks-pod-identity-token") && !log.contains("pod-identity-session-token"));
    for rec in gw.wait_audit(2) {
        let r = rec.to_string();
        assert!(
            !r.contains("pod-identity-session-token") && !r.contains("fake-eks-pod-identity-token"),
            "{rec}"
        );
    }
}

/// EKS IRSA: with `AWS_ROLE_ARN` and `AWS_WEB_IDENTITY_TOKEN_FILE` (and the STS endpoint the
/// AWS SDKs read from `AWS_ENDPOINT_URL_STS`), an `awsMetadata` credential trades the projected
/// token at STS for the role's keys and signs Bedrock requests with them.
#[test]
fn irsa_web_identity_keys_sign_bedrock_requests() {
    if !privileged("irsa_web_identity_keys_sign_bedrock_requests") {
        return;
    }
    let mut sc = Scenario::new(42, "tr-irsa");
    let bedrock = sc.tls("bedrock");
    let sts = sc.plain("sts");
    let token_file = sc.file("web-identity-token", tests::fake_llm::EKS_POD_IDENTITY_TOKEN);
    sc.backend(
        "bedrock",
        &bedrock,
        &["schema: bedrock", "region: eu-west-1", "credential: sa-role"],
    );
    sc.node_credential("sa-role", "awsMetadata", &[]);
    sc.yaml("routes:\n  - name: claude\n    backends: [{ backend: bedrock, model: \"anthropic.claude-3-5-haiku-20241022-v1:0\" }]\n");
    sc.env("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/tollgate");
    sc.env("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.to_str().unwrap());
    sc.env("AWS_ENDPOINT_URL_STS", &sts.url(false));
    let (_dir, s, gw) = sc.start();
    for _ in 0..2 {
        let v = openai_sdk(&s, &gw, &["chat", "gpt-4o"]);
        assert_eq!(v["content"], "hello from bedrock", "the fake checks the signature: {v}");
    }
    let calls = sts.received();
    assert_eq!(calls.len(), 1, "keys reused");
    assert_eq!(calls[0].method, "POST");
    assert_eq!(
        bedrock.received()[1].headers["x-amz-security-token"],
        "irsa-session-token"
    );
    assert!(!gw.log().contains("fake-eks-pod-identity-token") && !gw.log().contains("irsa-session-token"));
}

/// The OpenAI SDK's Responses API client (`tests/clients/openai_responses_client.py`).
fn responses_sdk(s: &OpenAiSetup, gw: &Gateway, args: &[&str]) -> serde_json::Value {
    sdk_json(
        s,
        gw,
        "api.openai.com",
        &s.captured_ip,
        "openai_responses_client.py",
        args,
    )
}

/// The Responses API through a translation, as the SDK sees it and as the records count it:
/// `create` and the strict `responses.stream()` helper answer "hello from NAME" with the
/// backend's usage `(input, output)`; the tool loop (JSON and streamed) calls get_weather and
/// answers with its result; `previous_response_id` is refused with a 400 naming it. Records:
/// the translation's name, the backend's own usage, a first token seen for streams.
fn responses_round(s: &OpenAiSetup, gw: &Gateway, name: &str, translation: &str, usage: (u64, u64)) {
    let v = responses_sdk(s, gw, &["create", "gpt-4o"]);
    assert_eq!(v["text"], format!("hello from {name}"), "{v}");
    assert_eq!(v["status"], "completed", "{v}");
    assert_eq!(v["store"], false, "translated answers are stored nowhere: {v}");
    assert!(v["id"].as_str().unwrap().starts_with("resp_"), "{v}");
    assert_eq!(
        (
            v["usage"]["input_tokens"].as_u64(),
            v["usage"]["output_tokens"].as_u64()
        ),
        (Some(usage.0), Some(usage.1))
    );
    assert_eq!(v["usage"]["total_tokens"], usage.0 + usage.1);
    let v = responses_sdk(s, gw, &["stream", "gpt-4o"]);
    assert_eq!(v["text"], format!("hello from {name}"), "{v}");
    assert_eq!(v["usage"]["output_tokens"], usage.1, "{v}");
    let events: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.as_str())
        .collect();
    assert_eq!(
        &events[..4],
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added"
        ],
        "{v}"
    );
    assert_eq!(events.last(), Some(&"response.completed"), "{v}");

    for mode in ["tools", "tools_stream"] {
        let v = responses_sdk(s, gw, &[mode, "gpt-4o"]);
        assert_eq!(v["calls"], 1, "{mode}: {v}");
        assert_eq!(v["name"], "get_weather", "{mode}: {v}");
        assert_eq!(v["args"], serde_json::json!({"city": "Paris"}), "{mode}: {v}");
        assert_eq!(v["answer"], "the weather in Paris is sunny, 21 C", "{mode}: {v}");
        // The fakes count (20, 9) for the call and their plain usage for the answer.
        assert_eq!(v["usage1"]["input_tokens"], 20, "{mode}: {v}");
        assert_eq!(v["usage1"]["output_tokens"], 9, "{mode}: {v}");
        assert_eq!(v["usage2"]["output_tokens"], usage.1, "{mode}: {v}");
        if mode == "tools_stream" {
            assert!(
                v["events1"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e == "response.function_call_arguments.delta"),
                "{v}"
            );
        }
    }

    let v = responses_sdk(s, gw, &["previous", "gpt-4o"]);
    assert_eq!(v["status"], 400, "{v}");
    assert_eq!(v["body"]["type"], "invalid_request_error", "{v}");
    assert!(
        v["body"]["message"]
            .as_str()
            .unwrap()
            .contains("`previous_response_id`"),
        "{v}"
    );

    let records = gw.wait_audit(7);
    for r in &records[..6] {
        assert_eq!(r["operation"], "responses", "{r}");
        assert_eq!(r["translation"], translation, "{r}");
        assert_eq!(r["status"], 200, "{r}");
    }
    // Each record counts what the backend reported for that request.
    for (r, want) in records.iter().zip([usage, usage, (20, 9), usage, (20, 9), usage]) {
        assert_eq!(
            (r["tokens"]["input"].as_u64(), r["tokens"]["output"].as_u64()),
            (Some(want.0), Some(want.1)),
            "{r}"
        );
    }
    assert!(
        records[1]["ttft_ms"].as_f64().is_some_and(|t| t > 0.0),
        "{}",
        records[1]
    );
    assert_eq!(records[6]["status"], 400, "{}", records[6]);
    assert!(
        records[6]["error"].as_str().unwrap().contains("previous_response_id"),
        "{}",
        records[6]
    );
}

#[test]
fn the_openai_responses_sdk_is_served_by_an_anthropic_backend() {
    if !privileged("the_openai_responses_sdk_is_served_by_an_anthropic_backend") {
        return;
    }
    let routes = "routes:\n  - name: to-claude\n    backends: [{ backend: claude, model: claude-sonnet-4-5 }]\n";
    let (_dir, s, claude, gw) = with_claude(77, "tr-resp-claude", routes);
    responses_round(&s, &gw, "claude", "openai_responses->anthropic_messages", (10, 4));
    // claude-sonnet-4-5: $3 / $15 per 1M tokens, from the backend's own counts.
    assert_eq!(gw.wait_audit(7)[0]["cost_nano_usd"], 10 * 3000 + 4 * 15000);
    let r = claude.received();
    assert_eq!(r.len(), 6, "the refused request never left");
    assert_eq!(r[0].path, "/v1/messages");
    assert_eq!(r[0].headers["x-api-key"], ANT_KEY);
    assert_eq!(r[0].body["max_tokens"], 50, "max_output_tokens");
    assert_eq!(r[1].body["system"], "Be brief.", "instructions");
    // The second turn of the tool loop: the call and its result in Anthropic's shape.
    let turns = &r[3].body["messages"];
    assert_eq!(turns[1]["content"][1]["type"], "tool_use", "{turns}");
    assert_eq!(turns[2]["content"][0]["type"], "tool_result", "{turns}");
    assert_eq!(turns[2]["content"][0]["content"], "sunny, 21 C");
    assert!(s.primary.received().is_empty());
}

#[test]
fn the_openai_responses_sdk_is_served_by_a_gemini_backend() {
    if !privileged("the_openai_responses_sdk_is_served_by_a_gemini_backend") {
        return;
    }
    let mut sc = Scenario::new(78, "tr-resp-gemini");
    let gemini = sc.tls("gemini");
    sc.backend("gemini", &gemini, &["schema: gemini", "credential: gemini-key"]);
    sc.credential("gemini-key", "xGoogApiKey", "AIza-real-gemini-key");
    sc.yaml("routes:\n  - name: to-gemini\n    backends: [{ backend: gemini, model: gemini-2.5-flash }]\n");
    let (_dir, s, gw) = sc.start();
    responses_round(&s, &gw, "gemini", "openai_responses->gemini", (8, 5));
    let r = gemini.received();
    assert_eq!(r[0].path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(r[1].path, "/v1beta/models/gemini-2.5-flash:streamGenerateContent");
    assert_eq!(r[0].body["generationConfig"]["maxOutputTokens"], 50);
    let turns = &r[3].body["contents"];
    assert_eq!(
        turns[2]["parts"][0]["functionResponse"]["name"], "get_weather",
        "{turns}"
    );
}

#[test]
fn the_openai_responses_sdk_is_served_by_a_sigv4_signed_bedrock_backend() {
    if !privileged("the_openai_responses_sdk_is_served_by_a_sigv4_signed_bedrock_backend") {
        return;
    }
    let mut sc = Scenario::new(79, "tr-resp-bedrock");
    let bedrock = sc.tls("bedrock");
    sc.backend(
        "bedrock",
        &bedrock,
        &["schema: bedrock", "region: us-east-1", "credential: aws"],
    );
    sc.credential("aws", "awsSigV4", tests::fake_llm::BEDROCK_KEYS);
    sc.yaml("routes:\n  - name: to-bedrock\n    backends: [{ backend: bedrock, model: \"us.anthropic.claude-3-5-haiku-20241022-v1:0\" }]\n");
    let (_dir, s, gw) = sc.start();
    // The fake answers 403 unless the signature covers the translated body, as Bedrock does.
    responses_round(&s, &gw, "bedrock", "openai_responses->bedrock_converse", (11, 6));
    let r = bedrock.received();
    assert_eq!(
        r[0].path,
        "/model/us.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"
    );
    assert_eq!(
        r[1].path,
        "/model/us.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse-stream"
    );
    assert_eq!(r[0].body["inferenceConfig"]["maxTokens"], 50, "max_output_tokens");
    assert_eq!(r[1].body["system"][0]["text"], "Be brief.", "instructions");
    let turns = &r[3].body["messages"];
    assert!(turns[2]["content"][0].get("toolResult").is_some(), "{turns}");
}

/// Responses passed through to an OpenAI backend: the SDK's JSON and streamed answers as the
/// provider sent them, the record's usage read from the answer's `usage` and from the stream's
/// final `response.completed` event, a first token seen in the stream.
#[test]
fn the_openai_responses_sdk_is_passed_through_to_openai_and_metered_from_the_final_event() {
    if !privileged("the_openai_responses_sdk_is_passed_through_to_openai_and_metered_from_the_final_event") {
        return;
    }
    let (_dir, s, gw) = Scenario::new(80, "tr-resp-openai").start();
    let v = responses_sdk(&s, &gw, &["create", "gpt-4o"]);
    assert_eq!(v["text"], "hello from primary", "{v}");
    let v = responses_sdk(&s, &gw, &["stream", "gpt-4o"]);
    assert_eq!(v["text"], "hello from primary", "{v}");
    assert_eq!(v["usage"]["total_tokens"], 13, "{v}");
    let r = s.primary.received();
    assert_eq!(r[1].path, "/v1/responses");
    assert_eq!(r[1].body["instructions"], "Be brief.", "the body as sent");
    let records = gw.wait_audit(2);
    for rec in &records {
        assert_eq!(rec["translation"], "none", "{rec}");
        assert_eq!(rec["operation"], "responses", "{rec}");
        assert_eq!(
            (rec["tokens"]["input"].as_u64(), rec["tokens"]["output"].as_u64()),
            (Some(9), Some(4)),
            "{rec}"
        );
        // gpt-4o: $2.50 / $10 per 1M tokens
        assert_eq!(rec["cost_nano_usd"], 9 * 2500 + 4 * 10000, "{rec}");
    }
    assert!(
        records[1]["ttft_ms"].as_f64().is_some_and(|t| t > 0.0),
        "{}",
        records[1]
    );
}
