//! Responses API translation tests: a Responses request with every translated feature
//! (instructions, developer and user messages with an image, an assistant turn, parallel
//! function calls and their outputs, a reasoning item, function tools) becomes a chat request
//! and then each backend's; answers and streams of each backend (the fixtures the chat
//! directions use) become `response` objects and Responses events, compared with reviewed
//! golden files (`TOLLGATE_BLESS=1` rewrites them); refusals name what they refuse.

use super::*;
use bytes::Bytes;

fn path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/llm/testdata/translate")
        .join(name)
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Zeroes what changes per answer: `created_at` times, `created` times of the chat
/// step, and the random hex of Bedrock ids.
fn normalise(s: &str) -> String {
    super::tests::zero_after(
        s,
        &[
            ("\"created_at\":", u8::is_ascii_digit),
            ("\"created\":", u8::is_ascii_digit),
            ("bedrock-", u8::is_ascii_hexdigit),
        ],
    )
}

fn check(name: &str, got: &str) {
    let got = normalise(got);
    if std::env::var_os("TOLLGATE_BLESS").is_some() {
        std::fs::write(path(name), &got).unwrap();
    }
    let want = String::from_utf8(fixture(name)).unwrap();
    assert_eq!(got, want, "{name}: got\n{got}");
}

fn check_json(name: &str, got: &Value) {
    let mut got = got.clone();
    if got.get("created_at").is_some() {
        got["created_at"] = json!(0);
    }
    check(name, &(serde_json::to_string_pretty(&got).unwrap() + "\n"));
}

/// Feeds `input` in pieces of `step` bytes through `t`.
fn feed_all(t: &mut dyn StreamTranslator, input: &[u8], step: usize) -> String {
    let mut out = Vec::new();
    for c in input.chunks(step) {
        out.extend_from_slice(&t.feed(c));
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn a_responses_request_becomes_chat_then_each_backends_request() {
    let req = fixture("responses-tools.request.json");
    let chat = responses_to_openai_chat(&req, "gpt-4.1").unwrap();
    check_json("responses-tools.openai-request.json", &chat);
    let chat = Bytes::from(chat.to_string());
    check_json(
        "responses-tools.anthropic-request.json",
        &openai_chat_to_anthropic(&chat, "claude-sonnet-4-5").unwrap(),
    );
    check_json(
        "responses-tools.gemini-request.json",
        &openai_chat_to_gemini(&chat).unwrap(),
    );
    check_json(
        "responses-tools.bedrock-request.json",
        &openai_chat_to_bedrock(&chat, "anthropic.claude-3-haiku").unwrap(),
    );
}

#[test]
fn a_plain_string_input_json_schema_and_effort_translate() {
    let req = json!({"model": "m", "input": "Hi", "text": {"format": {"type": "json_schema", "name": "out",
        "schema": {"type": "object", "properties": {"a": {"type": "string"}}}, "strict": true}},
        "reasoning": {"effort": "low"}, "tool_choice": {"type": "function", "name": "f"},
        "truncation": "disabled", "include": [], "background": false, "parallel_tool_calls": false,
        "stream_options": {"include_obfuscation": false}, "service_tier": "auto"});
    let chat = responses_to_openai_chat(req.to_string().as_bytes(), "m").unwrap();
    assert_eq!(chat["messages"], json!([{"role": "user", "content": "Hi"}]));
    assert_eq!(
        chat["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "out", "strict": true,
               "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}})
    );
    assert_eq!(chat["reasoning_effort"], "low");
    assert_eq!(
        chat["tool_choice"],
        json!({"type": "function", "function": {"name": "f"}})
    );
    assert_eq!(chat["parallel_tool_calls"], false);
    assert!(chat.get("stream").is_none() && chat.get("stream_options").is_none());
    let obj = json!({"model": "m", "input": "Hi", "text": {"format": {"type": "json_object"}}, "stream": true});
    let chat = responses_to_openai_chat(obj.to_string().as_bytes(), "m").unwrap();
    assert_eq!(chat["response_format"], json!({"type": "json_object"}));
    assert_eq!(chat["stream_options"], json!({"include_usage": true}));
}

#[test]
fn stateful_and_built_in_features_are_refused_by_name() {
    for (member, value, named) in [
        ("previous_response_id", json!("resp_1"), "`previous_response_id`"),
        ("conversation", json!("conv_1"), "`conversation`"),
        ("background", json!(true), "`background`"),
        ("tools", json!([{"type": "web_search"}]), "\"web_search\""),
        (
            "tools",
            json!([{"type": "file_search", "vector_store_ids": ["v"]}]),
            "\"file_search\"",
        ),
        (
            "tools",
            json!([{"type": "computer_use_preview"}]),
            "\"computer_use_preview\"",
        ),
        ("include", json!(["reasoning.encrypted_content"]), "`include`"),
        ("truncation", json!("auto"), "`truncation`"),
        (
            "reasoning",
            json!({"effort": "low", "summary": "auto"}),
            "`reasoning.summary`",
        ),
        ("text", json!({"verbosity": "low"}), "`text.verbosity`"),
        ("prompt", json!({"id": "pmpt_1"}), "`prompt`"),
        ("service_tier", json!("flex"), "`service_tier`"),
        (
            "input",
            json!([{"type": "item_reference", "id": "msg_1"}]),
            "\"item_reference\"",
        ),
        (
            "input",
            json!([{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]),
            "\"input_file\"",
        ),
        (
            "input",
            json!([{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]),
            "`file_id`",
        ),
        ("tool_choice", json!({"type": "web_search_preview"}), "`tool_choice`"),
    ] {
        let mut req = json!({"model": "m", "input": "Hi"});
        req[member] = value;
        let err = responses_to_openai_chat(req.to_string().as_bytes(), "m").unwrap_err();
        assert!(err.0.contains(named), "{member}: {}", err.0);
    }
}

/// `body` (a Responses request) as `direction` sends it to a backend of `schema`.
fn request_to(direction: &dyn Direction, schema: ApiSchema, body: &[u8]) -> Result<Upstream, Unsupported> {
    let body = Bytes::copy_from_slice(body);
    direction.request(
        &ClientRequest {
            schema: ApiSchema::Openai,
            operation: Operation::Responses,
            path_and_query: "/v1/responses",
            body: Some((&body, &Default::default())),
            form: None,
            model_override: None,
        },
        &BackendSpec {
            name: "b",
            schema,
            project: None,
            region: Some("us-east-1"),
            deployment: None,
            api_version: "",
        },
    )
}

/// What the chat → backend step refuses is said in the Responses request's words.
#[test]
fn backend_refusals_name_the_responses_members() {
    let cases: [(&dyn Direction, ApiSchema, Value, &str, &str); 4] = [
        (
            &ResponsesToAnthropic,
            ApiSchema::Anthropic,
            json!({"model": "m", "input": "Hi", "temperature": 0.2, "reasoning": {"effort": "low"}}),
            "`reasoning.effort`",
            "reasoning_effort",
        ),
        (
            &ResponsesToBedrock,
            ApiSchema::Bedrock,
            json!({"model": "m", "input": "Hi", "text": {"format": {"type": "json_object"}}}),
            "`text.format`",
            "response_format",
        ),
        (
            &ResponsesToBedrock,
            ApiSchema::Bedrock,
            json!({"model": "m", "instructions": "Be brief.", "input": [{"role": "user", "content": [
                {"type": "input_image", "image_url": "https://example.com/cat.png"}]}]}),
            "input: image URLs",
            "messages[",
        ),
        (
            &ResponsesToBedrock,
            ApiSchema::Bedrock,
            json!({"model": "m", "input": "Hi", "reasoning": {"effort": "high"}}),
            "`reasoning.effort` is supported by Bedrock backends only for Anthropic Claude models",
            "reasoning_effort",
        ),
    ];
    for (direction, schema, body, said, not_said) in cases {
        let Err(e) = request_to(direction, schema, body.to_string().as_bytes()) else {
            panic!("{body} was translated");
        };
        assert!(e.0.contains(said) && !e.0.contains(not_said), "{body}: {}", e.0);
    }
    let e = in_responses_words(Unsupported(
        "messages[12].content[1]: part type \"x\"; messages[3]: y".into(),
    ));
    assert_eq!(e.0, "input: content[1]: part type \"x\"; input: y");
}

#[test]
fn the_echo_reports_the_request_and_openai_defaults() {
    let echo = response_echo(&fixture("responses-tools.request.json"));
    assert_eq!(echo["store"], false, "translated answers are stored nowhere");
    assert_eq!(echo["metadata"], json!({"team": "weather"}));
    assert_eq!(echo["max_output_tokens"], 300);
    assert_eq!(echo["text"], json!({"format": {"type": "text"}}));
    assert_eq!(echo["previous_response_id"], Value::Null);
}

/// Makes a fresh backend → chat stream translator.
type NewTranslator = fn() -> Box<dyn StreamTranslator>;

/// Every backend's tool-use answer and stream, through chat, as Responses.
#[test]
fn backend_answers_and_streams_become_responses() {
    let echo = response_echo(&fixture("responses-tools.request.json"));
    let msg: Value = serde_json::from_slice(&fixture("anthropic-tool-use.response.json")).unwrap();
    check_json(
        "anthropic-tool-use.responses-response.json",
        &openai_chat_to_response(&anthropic_message_to_openai(&msg), &echo),
    );
    let g: Value = serde_json::from_slice(&fixture("gemini-function-call.response.json")).unwrap();
    check_json(
        "gemini-function-call.responses-response.json",
        &openai_chat_to_response(&gemini_to_openai(&g, "gemini-2.5-flash"), &echo),
    );
    let b: Value = serde_json::from_slice(&fixture("bedrock-tool-use.response.json")).unwrap();
    check_json(
        "bedrock-tool-use.responses-response.json",
        &openai_chat_to_response(&bedrock_to_openai(&b, "anthropic.claude-3-haiku"), &echo),
    );
    let streams: [(&str, Vec<u8>, NewTranslator); 3] = [
        ("anthropic-tool-use", fixture("anthropic-tool-use.sse"), || {
            Box::new(AnthropicStreamToOpenAi::new(true))
        }),
        ("gemini-function-call", fixture("gemini-function-call.sse"), || {
            Box::new(GeminiStreamToOpenAi::new("gemini-2.5-flash", true))
        }),
        (
            "bedrock-tool-use",
            bedrock_frames(&fixture("bedrock-tool-use.events.json")),
            || Box::new(BedrockStreamToOpenAi::new("anthropic.claude-3-haiku", true)),
        ),
    ];
    for (name, input, backend) in streams {
        check_stream(name, backend, &input, &echo, [1, 7, 64]);
    }
}

/// `input` (a backend's stream) through `backend` and the chat → Responses step: the golden
/// `<name>.responses.sse`, the same whatever pieces the bytes come in, events in OpenAI's
/// order. Returns the events.
fn check_stream(name: &str, backend: NewTranslator, input: &[u8], echo: &Value, steps: [usize; 3]) -> String {
    let mut whole = Chained(backend(), ChatStreamToResponses::new(echo.clone()));
    let want = normalise(&feed_all(&mut whole, input, input.len()));
    check(&format!("{name}.responses.sse"), &want);
    for step in steps {
        let mut t = Chained(backend(), ChatStreamToResponses::new(echo.clone()));
        assert_eq!(
            normalise(&feed_all(&mut t, input, step)),
            want,
            "{name} in {step}-byte pieces"
        );
    }
    check_event_order(&want);
    want
}

impl StreamTranslator for Box<dyn StreamTranslator> {
    fn feed(&mut self, bytes: &[u8]) -> Bytes {
        (**self).feed(bytes)
    }
}

fn bedrock_frames(events: &[u8]) -> Vec<u8> {
    let events: Vec<(String, Value)> = serde_json::from_slice(events).unwrap();
    events
        .iter()
        .flat_map(|(t, v)| {
            crate::llm::eventstream::encode(
                &[
                    (":event-type", t),
                    (":content-type", "application/json"),
                    (":message-type", "event"),
                ],
                v.to_string().as_bytes(),
            )
        })
        .collect()
}

/// The rules OpenAI's stream follows: sequence numbers count from 0; created, then
/// in_progress first; every item added before its deltas and done after them; completed last
/// with every item done, in output order.
fn check_event_order(sse: &str) {
    let events: Vec<Value> = sse
        .split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["sequence_number"], i, "{e}");
    }
    assert_eq!(events[0]["type"], "response.created");
    assert_eq!(events[1]["type"], "response.in_progress");
    let last = events.last().unwrap();
    assert_eq!(last["type"], "response.completed");
    let (mut open, mut done) = (std::collections::HashSet::new(), Vec::new());
    for e in &events[2..events.len() - 1] {
        let n = e["output_index"].as_u64().unwrap();
        match e["type"].as_str().unwrap() {
            "response.output_item.added" => assert!(open.insert(n)),
            "response.output_item.done" => {
                assert!(open.remove(&n), "{e}");
                done.push(e["item"].clone());
            }
            _ => assert!(open.contains(&n), "{e} outside its item"),
        }
    }
    assert!(open.is_empty());
    assert_eq!(last["response"]["output"], Value::Array(done));
}

/// Each backend's reasoning comes back as a `reasoning` item before the message, in JSON and
/// streamed (`response.reasoning_text.delta`/`.done`): Anthropic's thinking (asked for with
/// `reasoning.effort`), Gemini's thought summaries (the effort asks for them with
/// `includeThoughts`), Bedrock's `reasoningContent` (models that reason unasked, e.g. DeepSeek-R1).
#[test]
fn each_backends_reasoning_becomes_a_reasoning_item() {
    const EFFORT: &[u8] = br#"{"model":"m","input":"Weather?","reasoning":{"effort":"low"}}"#;
    const UNASKED: &[u8] = br#"{"model":"m","input":"Weather?"}"#;
    type Case = (
        &'static str,
        &'static dyn Direction,
        ApiSchema,
        &'static [u8],
        Vec<u8>,
        NewTranslator,
    );
    let cases: [Case; 3] = [
        (
            "anthropic-thinking",
            &ResponsesToAnthropic,
            ApiSchema::Anthropic,
            EFFORT,
            fixture("anthropic-thinking.sse"),
            || Box::new(AnthropicThinkingToChat::new()),
        ),
        (
            "gemini-thinking",
            &ResponsesToGemini,
            ApiSchema::Gemini,
            EFFORT,
            fixture("gemini-thinking.sse"),
            || Box::new(GeminiStreamToOpenAi::new("gemini-2.5-flash", true).with_thoughts()),
        ),
        (
            "bedrock-reasoning",
            &ResponsesToBedrock,
            ApiSchema::Bedrock,
            UNASKED,
            bedrock_frames(&fixture("bedrock-reasoning.events.json")),
            || Box::new(BedrockStreamToOpenAi::new("deepseek.r1-v1:0", true).with_reasoning()),
        ),
    ];
    for (name, direction, schema, body, sse, backend) in cases {
        let up = request_to(direction, schema, body).unwrap();
        let UpstreamBody::Bytes(sent) = &up.body else { panic!() };
        let sent: Value = serde_json::from_slice(sent).unwrap();
        match schema {
            ApiSchema::Anthropic => assert_eq!(sent["thinking"]["budget_tokens"], 1024),
            ApiSchema::Gemini => assert_eq!(
                sent["generationConfig"]["thinkingConfig"],
                json!({"thinkingBudget": 1024, "includeThoughts": true})
            ),
            _ => {}
        }
        let answer = fixture(&format!("{name}.response.json"));
        let json = (up.answer.translate.unwrap().json)(&answer, 200);
        check_json(&format!("{name}.responses-response.json"), &json);
        assert_eq!(json["output"][0]["type"], "reasoning", "{name}");
        assert_eq!(json["output"][1]["type"], "message", "{name}");

        let want = check_stream(name, backend, &sse, &response_echo(body), [1, 5, 33]);
        assert!(want.contains("\"type\":\"response.reasoning_text.delta\""), "{name}");
    }
    // Without the flag (a chat client's stream), the reasoning is left out.
    let mut plain = GeminiStreamToOpenAi::new("gemini-2.5-flash", true);
    assert!(!feed_all(&mut plain, &fixture("gemini-thinking.sse"), 64).contains("reasoning_content"));
    let frames = bedrock_frames(&fixture("bedrock-reasoning.events.json"));
    let mut plain = BedrockStreamToOpenAi::new("deepseek.r1-v1:0", true);
    assert!(!feed_all(&mut plain, &frames, 64).contains("reasoning_content"));
}

#[test]
fn length_and_errors_mid_stream() {
    let echo = response_echo(br#"{"model":"m","input":"Hi"}"#);
    let chat = "data: {\"id\":\"chatcmpl-1\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n\
                data: {\"id\":\"chatcmpl-1\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}\n\n\
                data: {\"id\":\"chatcmpl-1\",\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\n\n\
                data: [DONE]\n\n";
    let out = String::from_utf8(ChatStreamToResponses::new(echo.clone()).feed(chat.as_bytes()).to_vec()).unwrap();
    let last: Value = serde_json::from_str(out.trim_end().rsplit("data: ").next().unwrap()).unwrap();
    assert_eq!(last["type"], "response.incomplete");
    assert_eq!(
        last["response"]["incomplete_details"],
        json!({"reason": "max_output_tokens"})
    );
    assert_eq!(last["response"]["output"][0]["status"], "incomplete");
    assert_eq!(last["response"]["usage"]["total_tokens"], 4);

    let err = format!("data: {}\n\n", String::from_utf8(fixture("openai-error.json")).unwrap());
    let out = String::from_utf8(ChatStreamToResponses::new(echo).feed(err.as_bytes()).to_vec()).unwrap();
    let types: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    assert_eq!(
        types,
        ["response.created", "response.in_progress", "error", "response.failed"]
    );
    assert!(out.contains("\"code\":\"rate_limit_exceeded\""));
}

#[test]
fn a_json_answer_cut_by_length_is_incomplete() {
    let chat = json!({"id": "chatcmpl-9", "model": "m", "choices": [{"index": 0, "finish_reason": "length",
        "message": {"role": "assistant", "content": "Hel"}}], "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4,
        "prompt_tokens_details": {"cached_tokens": 2}, "completion_tokens_details": {"reasoning_tokens": 1}}});
    let r = openai_chat_to_response(&chat, &response_echo(b"{}"));
    assert_eq!(r["id"], "resp_9");
    assert_eq!(r["status"], "incomplete");
    assert_eq!(
        r["usage"],
        json!({"input_tokens": 3, "input_tokens_details": {"cached_tokens": 2}, "output_tokens": 1,
               "output_tokens_details": {"reasoning_tokens": 1}, "total_tokens": 4})
    );
}

#[test]
fn directions_are_found_for_every_translated_backend_and_azure() {
    for (backend, name) in [
        (ApiSchema::Anthropic, "openai_responses->anthropic_messages"),
        (ApiSchema::Gemini, "openai_responses->gemini"),
        (ApiSchema::Vertex, "openai_responses->gemini"),
        (ApiSchema::Bedrock, "openai_responses->bedrock_converse"),
        (ApiSchema::AzureOpenai, "openai_responses->azure_openai"),
        (ApiSchema::Openai, "none"),
    ] {
        assert_eq!(
            find(ApiSchema::Openai, Operation::Responses, backend).unwrap().name(),
            name
        );
    }
}

/// A random Responses request from what clients send: text or item input (messages with
/// images, parallel calls with their outputs, reasoning items), function tools, choices,
/// formats, efforts, sampling; now and then a member no translated backend can take.
fn random_responses_request(rng: &mut fastrand::Rng) -> (Value, Option<&'static str>) {
    let mut req = json!({"model": "gpt-4.1"});
    let pick = |rng: &mut fastrand::Rng, p: u8| rng.u8(0..100) < p;
    if pick(rng, 30) {
        req["input"] = json!("What is the weather?");
    } else {
        let mut items =
            vec![json!({"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris and Rome?"}]})];
        if pick(rng, 30) {
            items[0]["content"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="}));
        }
        if pick(rng, 20) {
            items.insert(0, json!({"role": "developer", "content": "Be brief."}));
        }
        if pick(rng, 50) {
            if pick(rng, 30) {
                items.push(json!({"type": "reasoning", "id": "rs_1", "summary": []}));
            }
            for n in 0..rng.usize(1..3) {
                items.push(json!({"type": "function_call", "call_id": format!("call_{n}"), "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}));
            }
            let calls = items.iter().filter(|i| i["type"] == "function_call").count();
            for n in 0..calls {
                items.push(json!({"type": "function_call_output", "call_id": format!("call_{n}"), "output": "sunny"}));
            }
        }
        req["input"] = Value::Array(items);
    }
    if pick(rng, 50) || req["input"].to_string().contains("function_call") {
        req["tools"] = json!([{"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]);
        if pick(rng, 40) {
            req["tool_choice"] = [
                json!("auto"),
                json!("none"),
                json!("required"),
                json!({"type": "function", "name": "get_weather"}),
            ][rng.usize(0..4)]
            .clone();
        }
    }
    let effort = ["low", "medium", "high"][rng.usize(0..3)];
    for (k, p, v) in [
        ("instructions", 40, json!("You are helpful.")),
        ("max_output_tokens", 50, json!(rng.u64(1..4000))),
        ("temperature", 40, json!(rng.u8(0..=20) as f64 / 10.0)),
        ("top_p", 30, json!(rng.u8(1..=10) as f64 / 10.0)),
        ("stream", 50, json!(true)),
        ("store", 30, json!(rng.bool())),
        ("metadata", 20, json!({"k": "v"})),
        ("user", 20, json!("u-1")),
        ("reasoning", 20, json!({"effort": effort})),
        (
            "text",
            20,
            [
                json!({"format": {"type": "json_object"}}),
                json!({"format": {"type": "text"}}),
            ][rng.usize(0..2)]
            .clone(),
        ),
    ] {
        if pick(rng, p) {
            req[k] = v;
        }
    }
    let refused = if pick(rng, 10) {
        let (k, v, named) = [
            ("previous_response_id", json!("resp_1"), "`previous_response_id`"),
            ("conversation", json!({"id": "conv_1"}), "`conversation`"),
            ("prompt_cache_key", json!("k"), "`prompt_cache_key`"),
        ][rng.usize(0..3)]
        .clone();
        req[k] = v;
        Some(named)
    } else {
        None
    };
    (req, refused)
}

/// Random Responses requests become valid chat requests (or are refused naming what they
/// hold), and then valid target requests or refusals naming a feature, as chat requests do.
#[test]
fn random_responses_requests_translate_into_valid_targets_and_never_panic() {
    let openai = super::tests::schema("openai-chat.request.schema.json");
    let targets = [
        (
            "anthropic",
            super::tests::schema("anthropic-messages.request.schema.json"),
        ),
        (
            "gemini",
            super::tests::schema("gemini-generate-content.request.schema.json"),
        ),
        ("bedrock", super::tests::schema("bedrock-converse.request.schema.json")),
    ];
    let mut rng = fastrand::Rng::with_seed(0x5e5_0e5);
    let mut translated = [0usize; 3];
    for n in 0..1500 {
        let (req, refused) = random_responses_request(&mut rng);
        let chat = match (responses_to_openai_chat(req.to_string().as_bytes(), "m"), refused) {
            (Ok(chat), None) => chat,
            (Err(Unsupported(why)), Some(named)) => {
                assert!(why.contains(named), "#{n}: {why}");
                continue;
            }
            (other, _) => panic!("#{n}: {other:?}\n{req}"),
        };
        super::tests::assert_valid(&openai, "openai", n, &req, &chat);
        let body = chat.to_string();
        for (k, (target, validator)) in targets.iter().enumerate() {
            let result = match *target {
                "anthropic" => openai_chat_to_anthropic(body.as_bytes(), "claude-x"),
                "gemini" => openai_chat_to_gemini(body.as_bytes()),
                _ => openai_chat_to_bedrock(body.as_bytes(), "m"),
            };
            match result {
                Ok(out) => {
                    translated[k] += 1;
                    super::tests::assert_valid(validator, target, n, &chat, &out);
                }
                Err(Unsupported(why)) => {
                    let named = super::tests::refused_features(&chat, target);
                    assert!(
                        named.iter().any(|f| why.contains(f)),
                        "#{n} → {target}: {why:?}, expected one of {named:?}\n{chat}"
                    );
                }
            }
        }
    }
    assert!(
        translated.iter().all(|&t| t > 300),
        "translated per target: {translated:?}"
    );
    for _ in 0..2000 {
        let junk: Vec<u8> = (0..rng.usize(0..64)).map(|_| rng.u8(..)).collect();
        let _ = responses_to_openai_chat(&junk, "m");
        let text = String::from_utf8_lossy(&junk);
        let framed = format!("data: {{\"choices\":[{text}]}}\n\ndata: {text}\n\ndata: [DONE]\n\n");
        let _ = ChatStreamToResponses::new(json!({})).feed(framed.as_bytes());
        let _ = openai_chat_to_response(&serde_json::from_slice(&junk).unwrap_or(Value::Null), &json!({}));
    }
}

/// Each direction's upstream call: path, meter (the backend's own schema, so usage is what
/// the backend reported), and errors in OpenAI's shape with the upstream status kept.
#[test]
fn each_direction_sends_its_path_meters_the_backend_and_answers_errors_in_openai_shape() {
    let body = Bytes::from_static(br#"{"model":"gpt-4o","input":"Hi","max_output_tokens":64,"stream":true}"#);
    let parsed = crate::llm::parse(&body).unwrap();
    assert_eq!(parsed.max_tokens, Some(64), "token limits reserve max_output_tokens");
    let req = ClientRequest {
        schema: ApiSchema::Openai,
        operation: Operation::Responses,
        path_and_query: "/v1/responses",
        body: Some((&body, &parsed)),
        form: None,
        model_override: Some("target-model"),
    };
    let spec = |schema| BackendSpec {
        name: "b",
        schema,
        project: None,
        region: None,
        deployment: Some("dep"),
        api_version: "2024-10-21",
    };
    let anthropic_err = br#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#;
    let gemini_err = br#"{"error":{"code":429,"message":"slow down","status":"RESOURCE_EXHAUSTED"}}"#;
    let bedrock_err = br#"{"message":"slow down"}"#;
    for (schema, path, meter, err) in [
        (
            ApiSchema::Anthropic,
            "/v1/messages",
            ApiSchema::Anthropic,
            &anthropic_err[..],
        ),
        (
            ApiSchema::Gemini,
            "/v1beta/models/target-model:streamGenerateContent?alt=sse",
            ApiSchema::Gemini,
            &gemini_err[..],
        ),
        (
            ApiSchema::Bedrock,
            "/model/target-model/converse-stream",
            ApiSchema::Bedrock,
            &bedrock_err[..],
        ),
    ] {
        let up = find(ApiSchema::Openai, Operation::Responses, schema)
            .unwrap()
            .request(&req, &spec(schema))
            .unwrap();
        assert_eq!(up.path, path);
        assert_eq!(up.answer.meter.0, meter);
        let e = (up.answer.translate.unwrap().json)(err, 429);
        assert_eq!(e["error"]["type"], "rate_limit_error", "{schema:?}: {e}");
        assert_eq!(e["error"]["message"], "slow down", "{schema:?}: {e}");
    }
    let up = find(ApiSchema::Openai, Operation::Responses, ApiSchema::AzureOpenai)
        .unwrap()
        .request(&req, &spec(ApiSchema::AzureOpenai))
        .unwrap();
    assert_eq!(up.path, "/openai/v1/responses");
    assert!(up.answer.translate.is_none() && up.answer.meter == (ApiSchema::Openai, Operation::Responses));
    let UpstreamBody::Bytes(sent) = up.body else {
        panic!("a rewritten body")
    };
    assert_eq!(serde_json::from_slice::<Value>(&sent).unwrap()["model"], "dep");
}
