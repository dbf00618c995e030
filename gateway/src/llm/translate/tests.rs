//! Translation tests. Inputs in testdata/translate are written from the providers' API
//! references (system and developer prompts, multi-turn, images by URL and base64, parallel
//! tool calls and their results, stop sequences, streams with tool calls, errors); the `golden`
//! module compares every direction's request, answer, stream and error with reviewed expected
//! files; the property test validates random requests against testdata/schemas.

use super::*;
use bytes::Bytes;

/// Which bytes make up a run [`zero_after`] zeroes.
pub(super) type DigitTest = fn(&u8) -> bool;

/// `s` with the run of `digit`s after each `key` made one `0` (what changes per answer:
/// times Tollgate stamps, the random part of ids it makes up). The golden tests of both
/// APIs normalise with it.
pub(super) fn zero_after(s: &str, keys: &[(&str, DigitTest)]) -> String {
    let mut s = s.to_string();
    for (key, digit) in keys {
        let mut out = String::with_capacity(s.len());
        let mut rest = s.as_str();
        while let Some(i) = rest.find(key) {
            let (head, tail) = rest.split_at(i + key.len());
            out.push_str(head);
            let n = tail.bytes().take_while(digit).count();
            out.push_str(if n > 0 { "0" } else { "" });
            rest = &tail[n..];
        }
        s = out + rest;
    }
    s
}

fn fixture(name: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/llm/testdata/translate")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn a_request_with_tools_images_and_turns_translates_exactly() {
    let got = openai_chat_to_anthropic(&fixture("openai-chat-tools.request.json"), "claude-sonnet-4-5").unwrap();
    let want: Value = serde_json::from_slice(&fixture("openai-chat-tools.anthropic-request.json")).unwrap();
    assert_eq!(got, want, "\ngot:  {got}\nwant: {want}");
}

#[test]
fn features_anthropic_cannot_express_are_refused_by_name() {
    let cases = [
        (r#"{"model":"x","messages":[],"n":2}"#, "`n`"),
        (r#"{"model":"x","messages":[],"logit_bias":{"1":2}}"#, "`logit_bias`"),
        (
            r#"{"model":"x","messages":[],"response_format":{"type":"json_schema"}}"#,
            "response_format",
        ),
        (
            r#"{"model":"x","messages":[],"frequency_penalty":0.5}"#,
            "`frequency_penalty`",
        ),
        (
            r#"{"model":"x","messages":[{"role":"user","content":[{"type":"input_audio"}]}]}"#,
            "input_audio",
        ),
        (
            r#"{"model":"x","messages":[],"tools":[{"type":"web_search"}]}"#,
            "tools[0]",
        ),
        (
            r#"{"model":"x","messages":[{"role":"user","content":"hi"}],"temperature":1.5}"#,
            "`temperature` 1.5",
        ),
        (
            r#"{"model":"x","messages":[{"role":"user","content":"  "},{"role":"assistant","content":""}]}"#,
            "non-blank",
        ),
    ];
    for (body, named) in cases {
        let e = openai_chat_to_anthropic(body.as_bytes(), "claude").unwrap_err();
        assert!(e.0.contains(named), "{body}: {e}");
    }
    // Blank texts carry nothing and Anthropic refuses them: they are left out, and the turns
    // around them still alternate.
    let v = openai_chat_to_anthropic(
        br#"{"model":"x","messages":[{"role":"system","content":" "},{"role":"user","content":"a"},{"role":"assistant","content":" "},{"role":"user","content":[{"type":"text","text":""},{"type":"text","text":"b"}]}]}"#,
        "c",
    )
    .unwrap();
    assert!(v.get("system").is_none());
    assert_eq!(
        v["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}])
    );
    // Defaults that mean "nothing" pass.
    assert!(openai_chat_to_anthropic(
        br#"{"model":"x","messages":[{"role":"user","content":"hi"}],"frequency_penalty":0}"#,
        "c"
    )
    .is_ok());
}

#[test]
fn max_tokens_defaults_reasoning_and_tool_choice() {
    let v = openai_chat_to_anthropic(br#"{"model":"x","messages":[{"role":"user","content":"hi"}]}"#, "c").unwrap();
    assert_eq!(v["max_tokens"], DEFAULT_MAX_TOKENS);
    let v = openai_chat_to_anthropic(
        br#"{"model":"x","max_tokens":100,"reasoning_effort":"medium","temperature":1,"messages":[{"role":"user","content":"hi"}],"tool_choice":"auto","parallel_tool_calls":false}"#,
        "c",
    )
    .unwrap();
    assert_eq!(v["thinking"], json!({"type": "enabled", "budget_tokens": 4096}));
    assert_eq!(v["max_tokens"], 4196, "room for the answer beyond the thinking budget");
    assert_eq!(v["temperature"], 1);
    assert_eq!(
        v["tool_choice"],
        json!({"type": "auto", "disable_parallel_tool_use": true})
    );
    // What thinking cannot go with is refused by name, never dropped.
    for (extra, named) in [
        (r#""temperature":0.3"#, "`temperature` 0.3"),
        (r#""top_p":0.5"#, "`top_p` 0.5"),
        (r#""tool_choice":"required""#, "`tool_choice`"),
        (
            r#""tool_choice":{"type":"function","function":{"name":"f"}}"#,
            "`tool_choice`",
        ),
    ] {
        let body = format!(
            r#"{{"model":"x","reasoning_effort":"low",{extra},"messages":[{{"role":"user","content":"hi"}}]}}"#
        );
        let e = openai_chat_to_anthropic(body.as_bytes(), "c").unwrap_err();
        assert!(e.0.contains(named), "{body}: {e}");
    }
    // A turn continuing a tool call goes without thinking (Anthropic would want the thinking
    // block of the calling turn back, which OpenAI clients never saw).
    let v = openai_chat_to_anthropic(
        br#"{"model":"x","reasoning_effort":"high","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c1","content":"ok"}]}"#,
        "c",
    )
    .unwrap();
    assert!(v.get("thinking").is_none(), "{v}");
    let v = openai_chat_to_anthropic(
        br#"{"model":"x","messages":[{"role":"user","content":"hi"}],"tool_choice":"required"}"#,
        "c",
    )
    .unwrap();
    assert_eq!(v["tool_choice"], json!({"type": "any"}));
}

#[test]
fn a_response_with_a_tool_call_and_cached_usage() {
    let msg: Value = serde_json::from_slice(&fixture("anthropic-tool-use.response.json")).unwrap();
    let v = anthropic_message_to_openai(&msg);
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["id"], "chatcmpl-msg_01A");
    assert_eq!(v["model"], "claude-sonnet-4-5-20250929");
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], "Checking.");
    assert_eq!(choice["message"]["tool_calls"][0]["function"]["name"], "get_weather");
    assert_eq!(
        choice["message"]["tool_calls"][0]["function"]["arguments"],
        r#"{"city":"Paris"}"#
    );
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 150, "completion_tokens": 20, "total_tokens": 170, "prompt_tokens_details": {"cached_tokens": 100}})
    );
}

/// The JSON of every `data:` event of an OpenAI stream but `[DONE]`.
fn openai_chunks(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

#[test]
fn a_stream_with_text_and_a_tool_call_becomes_chunks_at_any_cut() {
    let body = fixture("anthropic-tool-use.sse");
    for step in [1, 7, 64, 100_000] {
        let mut t = AnthropicStreamToOpenAi::new(true);
        let mut out = Vec::new();
        for c in body.chunks(step) {
            out.extend_from_slice(&t.feed(c));
        }
        let text = String::from_utf8(out).unwrap();
        let chunks = openai_chunks(&text);
        assert!(text.trim_end().ends_with("data: [DONE]"), "step {step}");
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "Let me check");
        assert_eq!(chunks[2]["choices"][0]["delta"]["tool_calls"][0]["id"], "toolu_9");
        let args: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
            .collect();
        assert_eq!(args, r#"{"city": "Paris"}"#);
        let finish = chunks
            .iter()
            .find_map(|c| c["choices"][0]["finish_reason"].as_str())
            .unwrap();
        assert_eq!(finish, "tool_calls");
        let usage = chunks.last().unwrap();
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"]["completion_tokens"], 30);
        assert!(chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk" && c["id"] == "chatcmpl-msg_1"));
    }
    // Without include_usage, no usage chunk.
    let mut t = AnthropicStreamToOpenAi::new(false);
    let text = String::from_utf8(t.feed(&body).to_vec()).unwrap();
    assert!(!text.contains("\"usage\""));
}

#[test]
fn text_and_argument_deltas_are_written_exactly_as_the_general_path_writes_them() {
    let mut t = AnthropicStreamToOpenAi::new(false);
    t.feed(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_\\\"q\",\"model\":\"claude-x\",\"usage\":{\"input_tokens\":1}}}\n\n");
    t.tool_index.insert(3, 1);
    for text in [
        "plain",
        "quote \" and \\ backslash",
        "line\nbreak\ttab",
        "ünïcødé ✓ 😀",
        "\u{1}",
        "",
    ] {
        let data = json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}});
        let mut fast = String::new();
        assert!(t.fast_delta(&data.to_string(), &mut fast));
        assert_eq!(fast, t.chunk(json!({"content": text}), Value::Null), "{text:?}");
        let data = json!({"type": "content_block_delta", "index": 3, "delta": {"type": "input_json_delta", "partial_json": text}});
        let mut fast = String::new();
        assert!(t.fast_delta(&data.to_string(), &mut fast));
        let general = t.chunk(
            json!({"tool_calls": [{"index": 1, "function": {"arguments": text}}]}),
            Value::Null,
        );
        assert_eq!(fast, general, "{text:?}");
    }
    // Other events and odd shapes take the general path.
    for data in [
        r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":5}}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hm"}}"#,
        r#"{"type":"content_block_delta","index":0}"#,
        "not json",
    ] {
        assert!(!t.fast_delta(data, &mut String::new()), "{data}");
    }
}

#[test]
fn anthropic_errors_become_openai_errors() {
    let e = anthropic_error_to_openai(br#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#);
    assert_eq!(e["error"]["type"], "rate_limit_error");
    assert_eq!(e["error"]["message"], "slow down");
    let e = anthropic_error_to_openai(b"not json");
    assert_eq!(e["error"]["type"], "api_error");
}

fn openai_fixture(name: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/llm/testdata/openai")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn an_anthropic_request_becomes_an_openai_chat_request() {
    let body = br#"{"model":"claude-sonnet-4-5","max_tokens":256,"system":[{"type":"text","text":"Be brief."}],
        "messages":[{"role":"user","content":[{"type":"text","text":"Weather?"},{"type":"image","source":{"type":"base64","media_type":"image/jpeg","data":"AAAA"}}]},
                    {"role":"assistant","content":[{"type":"text","text":"Checking."},{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris"}}]},
                    {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"18C"}]}],
        "tools":[{"name":"get_weather","description":"Weather","input_schema":{"type":"object"}}],
        "tool_choice":{"type":"any","disable_parallel_tool_use":true},"stop_sequences":["END"],"stream":true,"metadata":{"user_id":"u1"}}"#;
    let v = anthropic_to_openai_chat(body, "gpt-4o-mini").unwrap();
    assert_eq!(v["model"], "gpt-4o-mini");
    assert_eq!(v["messages"][0], json!({"role": "system", "content": "Be brief."}));
    assert_eq!(
        v["messages"][1]["content"][1]["image_url"]["url"],
        "data:image/jpeg;base64,AAAA"
    );
    assert_eq!(v["messages"][2]["content"], "Checking.");
    assert_eq!(
        v["messages"][2]["tool_calls"][0]["function"]["arguments"],
        r#"{"city":"Paris"}"#
    );
    assert_eq!(
        v["messages"][3],
        json!({"role": "tool", "tool_call_id": "toolu_1", "content": "18C"})
    );
    assert_eq!(v["tools"][0]["function"]["parameters"], json!({"type": "object"}));
    assert_eq!(v["tool_choice"], "required");
    assert_eq!(v["parallel_tool_calls"], false);
    assert_eq!(v["stop"], json!(["END"]));
    assert_eq!(v["stream_options"], json!({"include_usage": true}));
    assert_eq!(v["user"], "u1");
    assert_eq!(v["max_tokens"], 256);
    // Thinking budgets come back as the efforts whose budgets the other direction sends.
    for (budget, effort) in [(1024, "low"), (4096, "medium"), (16384, "high")] {
        let body = json!({"model": "c", "max_tokens": 1, "messages": [], "thinking": {"type": "enabled", "budget_tokens": budget}});
        let v = anthropic_to_openai_chat(body.to_string().as_bytes(), "m").unwrap();
        assert_eq!(v["reasoning_effort"], effort);
    }
    // A failed tool run says so in the tool message's text (OpenAI has no error flag); images
    // in a tool result have no OpenAI place and are refused by name.
    let v = anthropic_to_openai_chat(
        br#"{"model":"c","max_tokens":9,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","is_error":true,"content":"no such city"}]}]}"#,
        "m",
    )
    .unwrap();
    assert_eq!(
        v["messages"][0],
        json!({"role": "tool", "tool_call_id": "t1", "content": "Error: no such city"})
    );
    let e = anthropic_to_openai_chat(
        br#"{"model":"c","max_tokens":9,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AA=="}}]}]}]}"#,
        "m",
    )
    .unwrap_err();
    assert!(e.0.contains("tool_result holding images"), "{e}");
    let e = anthropic_to_openai_chat(br#"{"model":"c","max_tokens":1,"top_k":5,"messages":[]}"#, "m").unwrap_err();
    assert!(e.0.contains("`top_k`"), "{e}");
}

#[test]
fn an_openai_response_becomes_an_anthropic_message() {
    let resp: Value = serde_json::from_slice(&openai_fixture("chat-cached-reasoning.response.json")).unwrap();
    let m = openai_chat_to_anthropic_message(&resp);
    assert_eq!(m["type"], "message");
    assert_eq!(m["content"], json!([{"type": "text", "text": "42"}]));
    assert_eq!(m["stop_reason"], "end_turn");
    assert_eq!(
        m["usage"],
        json!({"input_tokens": 512, "cache_read_input_tokens": 1536, "cache_creation_input_tokens": 0, "output_tokens": 900})
    );
    let e = openai_error_to_anthropic(br#"{"error":{"message":"nope","type":"invalid_request_error"}}"#, 400);
    assert_eq!(
        e,
        json!({"type": "error", "error": {"type": "invalid_request_error", "message": "nope"}})
    );
}

#[test]
fn an_openai_stream_becomes_anthropic_events_at_any_cut() {
    let body = openai_fixture("chat-stream-usage.sse");
    for step in [1, 9, 100_000] {
        let mut t = OpenAiStreamToAnthropic::default();
        let mut out = Vec::new();
        for c in body.chunks(step) {
            out.extend_from_slice(&t.feed(c));
        }
        let text = String::from_utf8(out).unwrap();
        let names: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ],
            "step {step}"
        );
        let deltas: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter_map(|v| v["delta"]["text"].as_str().map(String::from))
            .collect();
        assert_eq!(deltas, "Hello there");
        assert!(text.contains(r#""stop_reason":"end_turn""#));
        assert!(text.contains(r#""output_tokens":2"#) && text.contains(r#""input_tokens":12"#));
    }
}

#[test]
fn an_openai_request_becomes_a_gemini_request() {
    let v = openai_chat_to_gemini(&fixture("openai-chat-tools.request.json")).unwrap();
    assert_eq!(v["systemInstruction"]["parts"][0]["text"], "You are terse.");
    assert_eq!(v["systemInstruction"]["parts"][1]["text"], "Use tools when needed.");
    let contents = v["contents"].as_array().unwrap();
    assert_eq!(contents[0]["role"], "user");
    assert_eq!(
        contents[0]["parts"][1],
        json!({"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}})
    );
    assert_eq!(
        contents[0]["parts"][2],
        json!({"fileData": {"fileUri": "https://example.com/cat.jpg"}})
    );
    assert_eq!(contents[1]["role"], "model");
    assert_eq!(
        contents[1]["parts"][0],
        json!({"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}})
    );
    // Tool results are answered by function name, merged into one user turn with the next text.
    assert_eq!(
        contents[2]["parts"][0],
        json!({"functionResponse": {"name": "get_weather", "response": {"result": "18C, cloudy"}}})
    );
    assert_eq!(contents[2]["parts"][1]["functionResponse"]["name"], "get_time");
    assert_eq!(contents[2]["parts"][2], json!({"text": "Summarize."}));
    assert_eq!(
        v["generationConfig"],
        json!({"temperature": 0.2, "maxOutputTokens": 300, "stopSequences": ["END"]})
    );
    assert_eq!(v["tools"][0]["functionDeclarations"][0]["name"], "get_weather");
    assert_eq!(v["toolConfig"], json!({"functionCallingConfig": {"mode": "AUTO"}}));
    let e = openai_chat_to_gemini(br#"{"model":"x","messages":[],"logit_bias":{}}"#).unwrap_err();
    assert!(e.0.contains("`logit_bias`"), "{e}");
    let v = openai_chat_to_gemini(br#"{"model":"x","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_schema","json_schema":{"schema":{"type":"object"}}}}"#).unwrap();
    assert_eq!(v["generationConfig"]["responseMimeType"], "application/json");
}

#[test]
fn a_gemini_response_and_stream_become_openai() {
    let resp = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Sure."}, {"functionCall": {"name": "f", "args": {"a": 1}}}]},
                       "finishReason": "STOP"}],
                      "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 3, "thoughtsTokenCount": 7, "cachedContentTokenCount": 4},
                      "modelVersion": "gemini-2.5-pro", "responseId": "r1"});
    let v = gemini_to_openai(&resp, "x");
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
        r#"{"a":1}"#
    );
    assert_eq!(v["usage"]["completion_tokens"], 10, "thinking counts as output");
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
    let stream = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hel\"}]}}]}\r\n\r\n\
                  data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"lo\"}]},\"finishReason\":\"STOP\"}],\"usageMetadata\":{\"promptTokenCount\":2,\"candidatesTokenCount\":1}}\r\n\r\n";
    for step in [1, 13, 10_000] {
        let mut t = GeminiStreamToOpenAi::new("gemini-2.5-flash", true);
        let mut out = Vec::new();
        for c in stream.as_bytes().chunks(step) {
            out.extend_from_slice(&t.feed(c));
        }
        let text = String::from_utf8(out).unwrap();
        let chunks = openai_chunks(&text);
        let content: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(content, "Hello", "step {step}");
        assert_eq!(chunks.last().unwrap()["usage"]["total_tokens"], 3);
        assert!(text.ends_with("data: [DONE]\n\n"));
    }
    let e = gemini_error_to_openai(br#"{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED"}}"#);
    assert_eq!(e["error"]["type"], "rate_limit_error");
}

/// A random but valid OpenAI chat request (seeded: failures are reproducible). It covers what
/// clients send: blank and empty texts, images by URL and data URL, parallel tool calls and
/// their results, a conversation that opens with the assistant, and every sampling, tool and
/// format member some target refuses.
fn random_request(rng: &mut fastrand::Rng) -> Value {
    let text = |rng: &mut fastrand::Rng| -> String {
        (0..rng.usize(0..12))
            .map(|_| ["a", "é", "\"", "\\n", "{", "日本", " "][rng.usize(0..7)])
            .collect()
    };
    let mut messages = Vec::new();
    if rng.bool() {
        let role = ["system", "developer"][rng.usize(0..2)];
        messages.push(json!({"role": role, "content": text(rng)}));
    }
    let mut pending_calls: Vec<String> = Vec::new();
    for i in 0..rng.usize(1..6) {
        match rng.usize(0..4) {
            0 => {
                let content = if rng.bool() {
                    json!(text(rng))
                } else {
                    let mut parts = vec![json!({"type": "text", "text": text(rng)})];
                    if rng.bool() {
                        let url = [
                            "data:image/png;base64,AAAA",
                            "data:image/jpeg;base64,/9j/",
                            "https://example.com/i.png",
                        ][rng.usize(0..3)];
                        parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
                    }
                    json!(parts)
                };
                messages.push(json!({"role": "user", "content": content}));
            }
            1 => {
                let calls: Vec<Value> = (0..rng.usize(0..3))
                    .map(|k| {
                        let id = format!("call_{i}_{k}");
                        pending_calls.push(id.clone());
                        json!({"id": id, "type": "function", "function": {"name": "get_weather", "arguments": json!({"x": text(rng)}).to_string()}})
                    })
                    .collect();
                let content = if rng.bool() { json!(text(rng)) } else { Value::Null };
                let mut m = json!({"role": "assistant", "content": content});
                if !calls.is_empty() {
                    m["tool_calls"] = json!(calls);
                }
                messages.push(m);
            }
            2 => {
                if let Some(id) = pending_calls.pop() {
                    let content = if rng.bool() {
                        json!({"t": text(rng)}).to_string()
                    } else {
                        text(rng)
                    };
                    messages.push(json!({"role": "tool", "tool_call_id": id, "content": content}));
                }
            }
            _ => messages.push(json!({"role": "user", "content": text(rng)})),
        }
    }
    if messages.iter().all(|m| m["role"] != "user") {
        messages.push(json!({"role": "user", "content": text(rng)}));
    }
    let mut req = json!({"model": "gpt-4o", "messages": messages});
    if rng.bool() {
        let key = ["max_tokens", "max_completion_tokens"][rng.usize(0..2)];
        req[key] = json!(rng.u32(1..4000));
    }
    if rng.bool() {
        req["temperature"] = json!(f64::from(rng.u8(0..21)) / 10.0);
    }
    if rng.u8(0..4) == 0 {
        req["top_p"] = json!(f64::from(rng.u8(0..11)) / 10.0);
    }
    if rng.bool() {
        req["stream"] = json!(rng.bool());
        if rng.bool() {
            req["stream_options"] = json!({"include_usage": true});
        }
    }
    if rng.bool() {
        req["stop"] = if rng.bool() { json!("END") } else { json!(["a", "b"]) };
    }
    if rng.u8(0..4) == 0 {
        req["user"] = json!("user-1");
    }
    if rng.bool() {
        req["tools"] = json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather.", "parameters": {"type": "object", "properties": {"x": {"type": "string"}}}}}]);
        req["tool_choice"] = match rng.usize(0..4) {
            0 => json!("auto"),
            1 => json!("none"),
            2 => json!("required"),
            _ => json!({"type": "function", "function": {"name": "get_weather"}}),
        };
        if rng.u8(0..4) == 0 {
            req["parallel_tool_calls"] = json!(false);
        }
    }
    if rng.u8(0..6) == 0 {
        req["reasoning_effort"] = json!(["low", "medium", "high"][rng.usize(0..3)]);
    }
    if rng.u8(0..6) == 0 {
        req["response_format"] = [
            json!({"type": "text"}),
            json!({"type": "json_object"}),
            json!({"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object"}}}),
        ][rng.usize(0..3)]
        .clone();
    }
    req
}

/// A target's request schema (testdata/schemas, written from its API reference).
pub(super) fn schema(name: &str) -> jsonschema::Validator {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/llm/testdata/schemas")
        .join(name);
    let s: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&s)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub(super) fn assert_valid(v: &jsonschema::Validator, target: &str, n: usize, req: &Value, out: &Value) {
    let errors: Vec<String> = v
        .iter_errors(out)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "#{n} → {target}: {errors:?}\nrequest: {req}\ntranslated: {out}"
    );
}

/// What a request holds that a target refuses by name; a refusal must name one of these.
pub(super) fn refused_features(req: &Value, target: &str) -> Vec<&'static str> {
    let mut f = Vec::new();
    let t = |k: &str| req[k].as_f64().unwrap_or(0.0);
    let anthropic_like = target != "gemini";
    let thinking = req.get("reasoning_effort").is_some();
    if anthropic_like
        && (t("temperature") > 1.0 || (thinking && req.get("temperature").is_some() && t("temperature") != 1.0))
    {
        f.push("`temperature`");
    }
    if anthropic_like && thinking && req.get("top_p").is_some() && t("top_p") < 0.95 {
        f.push("`top_p`");
    }
    if anthropic_like && thinking && (req["tool_choice"] == "required" || req["tool_choice"].is_object()) {
        f.push("`tool_choice`");
    }
    if anthropic_like && req.get("response_format").is_some_and(|r| r["type"] != "text") {
        f.push("`response_format`");
    }
    if target != "anthropic" && req.get("parallel_tool_calls").is_some() {
        f.push("`parallel_tool_calls");
    }
    if target == "bedrock" {
        if req["messages"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["role"] == "assistant"))
        {
            f.push("start with a user message");
        }
        let s = req.to_string();
        if s.contains("https://example.com") {
            f.push("image URLs");
        }
        if req.get("reasoning_effort").is_some() {
            f.push("`reasoning_effort`");
        }
        if req["tool_choice"] == "none" {
            f.push("`tool_choice`");
        }
    }
    f
}

/// Every request a client could send either translates into a body the target's published
/// schema accepts, or is refused with a message naming the feature the target lacks — and
/// nothing panics, on valid requests or on junk.
#[test]
fn random_valid_openai_requests_translate_into_valid_targets_and_never_panic() {
    let anthropic = schema("anthropic-messages.request.schema.json");
    let gemini = schema("gemini-generate-content.request.schema.json");
    let bedrock = schema("bedrock-converse.request.schema.json");
    let openai = schema("openai-chat.request.schema.json");
    let mut rng = fastrand::Rng::with_seed(0x7011_6a7e);
    let mut translated = [0usize; 3];
    for n in 0..2000 {
        let req = random_request(&mut rng);
        let body = req.to_string();
        let results = [
            (
                "anthropic",
                openai_chat_to_anthropic(body.as_bytes(), "claude-x"),
                &anthropic,
            ),
            ("gemini", openai_chat_to_gemini(body.as_bytes()), &gemini),
            ("bedrock", openai_chat_to_bedrock(body.as_bytes(), "m"), &bedrock),
        ];
        for (k, (target, result, validator)) in results.into_iter().enumerate() {
            match result {
                Ok(out) => {
                    translated[k] += 1;
                    assert_valid(validator, target, n, &req, &out);
                    if target == "anthropic" {
                        let turns = out["messages"].as_array().unwrap();
                        for w in turns.windows(2) {
                            assert_ne!(w[0]["role"], w[1]["role"], "#{n}: turns must alternate: {out}");
                        }
                        // And back: the Anthropic request, read as a client's, becomes a valid
                        // OpenAI request.
                        let back = anthropic_to_openai_chat(out.to_string().as_bytes(), "gpt-4o")
                            .unwrap_or_else(|e| panic!("#{n} {out}: {e}"));
                        assert_valid(&openai, "openai", n, &out, &back);
                        // Anthropic clients reach Gemini and Bedrock through that request.
                        let back = back.to_string();
                        let back_v: Value = serde_json::from_str(&back).unwrap();
                        for (target, result, validator) in [
                            ("gemini", openai_chat_to_gemini(back.as_bytes()), &gemini),
                            ("bedrock", openai_chat_to_bedrock(back.as_bytes(), "m"), &bedrock),
                        ] {
                            match result {
                                Ok(v) => assert_valid(validator, &format!("anthropic→{target}"), n, &out, &v),
                                Err(Unsupported(why)) => {
                                    let named = refused_features(&back_v, target);
                                    assert!(
                                        named.iter().any(|f| why.contains(f)),
                                        "#{n} anthropic→{target}: refused with {why:?}, expected one of {named:?}\n{back}"
                                    );
                                }
                            }
                        }
                    }
                }
                Err(Unsupported(why)) => {
                    let named = refused_features(&req, target);
                    let blank = why.contains("non-blank");
                    assert!(
                        blank || named.iter().any(|f| why.contains(f)),
                        "#{n} → {target}: refused with {why:?}, expected one of {named:?}\n{req}"
                    );
                }
            }
        }
    }
    // The generator must not make every request a refusal.
    assert!(
        translated.iter().all(|&t| t > 500),
        "translated per target: {translated:?}"
    );
    // Arbitrary bytes never panic either.
    for _ in 0..2000 {
        let junk: Vec<u8> = (0..rng.usize(0..64)).map(|_| rng.u8(..)).collect();
        let _ = openai_chat_to_anthropic(&junk, "m");
        let _ = openai_chat_to_gemini(&junk);
        let _ = openai_chat_to_bedrock(&junk, "m");
        let _ = anthropic_to_openai_chat(&junk, "m");
        let mut t = AnthropicStreamToOpenAi::new(true);
        let _ = t.feed(&junk);
        let mut t = OpenAiStreamToAnthropic::default();
        let _ = t.feed(&junk);
        let _ = GeminiStreamToOpenAi::new("m", true).feed(&junk);
        let _ = BedrockStreamToOpenAi::new("m", true).feed(&junk);
        // Junk inside well-formed framing reaches the JSON handling too.
        let text = String::from_utf8_lossy(&junk);
        let framed = format!("data: {{\"candidates\":[{text}]}}\r\n\r\ndata: {text}\n\n");
        let _ = GeminiStreamToOpenAi::new("m", true).feed(framed.as_bytes());
        let _ = OpenAiStreamToAnthropic::default().feed(framed.as_bytes());
        let _ = AnthropicStreamToOpenAi::new(true)
            .feed(format!("event: message_delta\ndata: {{\"usage\":{text}}}\n\n").as_bytes());
        let _ = BedrockStreamToOpenAi::new("m", true).feed(&crate::llm::eventstream::encode(
            &[(":event-type", "contentBlockDelta"), (":message-type", "event")],
            &junk,
        ));
    }
}

#[test]
fn an_openai_request_becomes_a_bedrock_converse_request_and_the_answer_comes_back() {
    let req = json!({
        "model": "gpt-4o", "max_tokens": 300, "temperature": 0.2, "stop": ["END"], "user": "u-1",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "what is in this image?"},
                                          {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "description": "w",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": "required"
    });
    let b = openai_chat_to_bedrock(req.to_string().as_bytes(), "anthropic.claude-3-haiku-20240307-v1:0").unwrap();
    assert_eq!(b["system"], json!([{"text": "be brief"}]));
    assert_eq!(
        b["inferenceConfig"],
        json!({"maxTokens": 300, "temperature": 0.2, "stopSequences": ["END"]})
    );
    assert_eq!(
        b["messages"][0]["content"][1],
        json!({"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}})
    );
    assert_eq!(
        b["messages"][1]["content"][0],
        json!({"toolUse": {"toolUseId": "call_1", "name": "weather", "input": {"city": "Paris"}}})
    );
    assert_eq!(
        b["messages"][2]["content"][0],
        json!({"toolResult": {"toolUseId": "call_1", "content": [{"text": "sunny"}]}})
    );
    assert_eq!(
        b["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]["type"],
        "object"
    );
    assert_eq!(b["toolConfig"]["toolChoice"], json!({"any": {}}));
    assert_eq!(b["requestMetadata"], json!({"user": "u-1"}));
    assert!(b.get("model").is_none());

    // Claude on Bedrock thinks through `additionalModelRequestFields` (Anthropic's rules:
    // max tokens raised above the budget); other models refuse `reasoning_effort` by name.
    let think =
        br#"{"model":"m","max_tokens":100,"reasoning_effort":"medium","messages":[{"role":"user","content":"hi"}]}"#;
    for model in [
        "anthropic.claude-sonnet-4-20250514-v1:0",
        "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
    ] {
        let b = openai_chat_to_bedrock(think, model).unwrap();
        assert_eq!(
            b["additionalModelRequestFields"],
            json!({"thinking": {"type": "enabled", "budget_tokens": 4096}})
        );
        assert_eq!(b["inferenceConfig"]["maxTokens"], 4196);
        let errors: Vec<String> = schema("bedrock-converse.request.schema.json")
            .iter_errors(&b)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{errors:?}");
    }
    let e = openai_chat_to_bedrock(think, "amazon.nova-pro-v1:0").unwrap_err();
    assert!(e.0.contains("only for Anthropic Claude models"), "{e:?}");
    let with_temperature =
        br#"{"model":"m","temperature":0.2,"reasoning_effort":"low","messages":[{"role":"user","content":"hi"}]}"#;
    let e = openai_chat_to_bedrock(with_temperature, "anthropic.claude-sonnet-4-20250514-v1:0").unwrap_err();
    assert!(
        e.0.contains("`temperature`") && e.0.contains("Bedrock backends"),
        "{e:?}"
    );

    // Refused by name, in Bedrock's words.
    for (extra, what) in [
        (json!({"reasoning_effort": "low"}), "reasoning_effort"),
        (json!({"tool_choice": "none", "tools": req["tools"]}), "tool_choice"),
        (json!({"logit_bias": {"1": 2}}), "Bedrock"),
    ] {
        let mut r = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in extra.as_object().unwrap() {
            r[k] = v.clone();
        }
        let e = openai_chat_to_bedrock(r.to_string().as_bytes(), "m").unwrap_err();
        assert!(e.0.contains(what), "{e:?}");
    }
    let url_image = json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]});
    assert!(openai_chat_to_bedrock(url_image.to_string().as_bytes(), "m").is_err());

    let resp = json!({"output": {"message": {"role": "assistant", "content": [
        {"text": "checking"}, {"toolUse": {"toolUseId": "t1", "name": "weather", "input": {"city": "Oslo"}}}]}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": 20, "outputTokens": 7, "totalTokens": 27, "cacheReadInputTokens": 100}});
    let o = bedrock_to_openai(&resp, "claude-3-haiku");
    let m = &o["choices"][0]["message"];
    assert_eq!(m["content"], "checking");
    assert_eq!(m["tool_calls"][0]["function"]["arguments"], "{\"city\":\"Oslo\"}");
    assert_eq!(o["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(o["usage"]["prompt_tokens"], 120);
    assert_eq!(o["usage"]["prompt_tokens_details"]["cached_tokens"], 100);
    let u = crate::llm::usage::bedrock_usage(&resp["usage"]).unwrap();
    assert_eq!((u.input, u.output, u.cached_input), (120, 7, 100));
    let e = bedrock_error_to_openai(
        br#"{"__type":"ThrottlingException","message":"Too many requests"}"#,
        429,
    );
    assert_eq!(e["error"]["type"], "rate_limit_error");
    assert_eq!(e["error"]["message"], "Too many requests");
    // The REST shape: the exception's name in a header, the type from the status.
    let e = bedrock_error_to_openai(br#"{"message":"Too many tokens"}"#, 429);
    assert_eq!(e["error"]["type"], "rate_limit_error");
}

#[test]
fn a_bedrock_event_stream_becomes_openai_chunks_at_any_cut() {
    use crate::llm::eventstream::encode;
    let ev = |t: &str, v: Value| {
        encode(
            &[
                (":event-type", t),
                (":content-type", "application/json"),
                (":message-type", "event"),
            ],
            v.to_string().as_bytes(),
        )
    };
    let mut body = Vec::new();
    for (t, v) in [
        ("messageStart", json!({"role": "assistant"})),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": "Let me check"}}),
        ),
        ("contentBlockStop", json!({"contentBlockIndex": 0})),
        (
            "contentBlockStart",
            json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tu_1", "name": "weather"}}}),
        ),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"city\": "}}}),
        ),
        (
            "contentBlockDelta",
            json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "\"Paris\"}"}}}),
        ),
        ("contentBlockStop", json!({"contentBlockIndex": 1})),
        ("messageStop", json!({"stopReason": "tool_use"})),
        (
            "metadata",
            json!({"usage": {"inputTokens": 30, "outputTokens": 12, "totalTokens": 42}}),
        ),
    ] {
        body.extend(ev(t, v));
    }
    for step in [1, 7, 64, 100_000] {
        let mut t = BedrockStreamToOpenAi::new("claude-x", true);
        let mut out = Vec::new();
        for c in body.chunks(step) {
            out.extend_from_slice(&t.feed(c));
        }
        let text = String::from_utf8(out).unwrap();
        assert!(text.trim_end().ends_with("data: [DONE]"), "step {step}");
        let chunks: Vec<Value> = text
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "Let me check");
        assert_eq!(chunks[2]["choices"][0]["delta"]["tool_calls"][0]["id"], "tu_1");
        let args: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
            .collect();
        assert_eq!(args, r#"{"city": "Paris"}"#);
        assert!(chunks.iter().any(|c| c["choices"][0]["finish_reason"] == "tool_calls"));
        let usage = chunks.last().unwrap();
        assert_eq!(usage["usage"]["prompt_tokens"], 30);
        assert_eq!(usage["usage"]["completion_tokens"], 12);
    }
    // The meter reads the same frames.
    let mut m = crate::llm::usage::Meter::new(
        crate::llm::ApiSchema::Bedrock,
        crate::llm::Operation::ChatCompletions,
        true,
        false,
    );
    for c in body.chunks(5) {
        assert!(m.observe(c).is_none());
    }
    let (_, metered) = m.finish(true);
    let u = metered.usage.unwrap();
    assert_eq!((u.input, u.output, metered.complete), (30, 12, true));
    // An exception frame and a corrupted frame reach the client as OpenAI errors.
    let mut t = BedrockStreamToOpenAi::new("claude-x", false);
    let exc = encode(
        &[
            (":exception-type", "throttlingException"),
            (":message-type", "exception"),
        ],
        br#"{"message":"slow down"}"#,
    );
    let out = String::from_utf8(t.feed(&exc).to_vec()).unwrap();
    assert!(out.contains("rate_limit_error") && out.contains("slow down"), "{out}");
    let mut bad = ev("messageStart", json!({}));
    let n = bad.len();
    bad[n - 1] ^= 1;
    let out = String::from_utf8(BedrockStreamToOpenAi::new("m", false).feed(&bad).to_vec()).unwrap();
    assert!(out.contains("broken Bedrock stream"), "{out}");
}

#[test]
fn openai_embeddings_become_a_gemini_batch_and_come_back_as_floats_or_base64() {
    let (g, base64) = openai_embeddings_to_gemini(
        br#"{"model":"text-embedding-3-small","input":["a","b"],"dimensions":2,"encoding_format":"base64"}"#,
        "gemini-embedding-001",
    )
    .unwrap();
    assert!(base64);
    assert_eq!(
        g,
        json!({"requests": [
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "a"}]}, "outputDimensionality": 2},
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "b"}]}, "outputDimensionality": 2}]})
    );
    for bad in [
        r#"{"model":"m","input":[1,2,3]}"#,
        r#"{"model":"m","input":[]}"#,
        r#"{"model":"m","input":"x","encoding_format":"int8"}"#,
        r#"{"model":"m","input":"x","truncate":"END"}"#,
    ] {
        assert!(openai_embeddings_to_gemini(bad.as_bytes(), "m").is_err(), "{bad}");
    }
    let resp = json!({"embeddings": [{"values": [0.5, -1.0]}, {"values": [2.0, 0.25]}]});
    let o = gemini_embeddings_to_openai(&resp, "gemini-embedding-001", false);
    assert_eq!(o["data"][1]["embedding"], json!([2.0, 0.25]));
    assert_eq!(o["data"][1]["index"], 1);
    let o = gemini_embeddings_to_openai(&resp, "gemini-embedding-001", true);
    // 0.5f32 = 00 00 00 3f, -1.0f32 = 00 00 80 bf (little-endian)
    assert_eq!(o["data"][0]["embedding"], "AAAAPwAAgL8=");
}

/// Titan Text Embeddings take one `inputText` per InvokeModel call
/// (<https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-titan-embed-text.html>):
/// a list becomes one body per text, and the answers, combined in order, one OpenAI list
/// whose `prompt_tokens` add up every `inputTextTokenCount`.
#[test]
fn openai_embeddings_become_titan_calls_and_come_back_as_one_list() {
    let (bodies, base64) = openai_embeddings_to_titan(
        br#"{"model":"text-embedding-3-small","input":["first text","second"],"dimensions":256}"#,
        "amazon.titan-embed-text-v2:0",
    )
    .unwrap();
    assert!(!base64);
    assert_eq!(
        bodies,
        [
            json!({"inputText": "first text", "dimensions": 256}),
            json!({"inputText": "second", "dimensions": 256})
        ]
    );
    let (bodies, base64) = openai_embeddings_to_titan(
        br#"{"model":"m","input":"one","encoding_format":"base64"}"#,
        "amazon.titan-embed-text-v2:0",
    )
    .unwrap();
    assert!(base64);
    assert_eq!(bodies, [json!({"inputText": "one"})]);
    let e =
        openai_embeddings_to_titan(br#"{"model":"m","input":[[1,2]]}"#, "amazon.titan-embed-text-v2:0").unwrap_err();
    assert!(e.0.contains("token-array `input`") && e.0.contains("Titan"), "{e}");
    let e = openai_embeddings_to_titan(br#"{"model":"m","input":"x"}"#, "cohere.embed-english-v3").unwrap_err();
    assert!(e.0.contains("cohere.embed-english-v3"), "{e}");
    let many = json!({"model": "m", "input": vec!["x"; MAX_EMBEDDING_INPUTS + 1]}).to_string();
    let e = openai_embeddings_to_titan(many.as_bytes(), "amazon.titan-embed-text-v2:0").unwrap_err();
    assert!(e.0.contains("at most 2048"), "{e}");

    let answers = [
        json!({"embedding": [0.5, -1.0], "inputTextTokenCount": 3, "embeddingsByType": {"float": [0.5, -1.0]}}),
        json!({"embedding": [2.0, 0.25], "inputTextTokenCount": 2}),
    ];
    let combined = titan_combined(&answers);
    assert_eq!(combined["usage"]["inputTokens"], 5);
    let mut meter = usage::Meter::new(
        crate::llm::ApiSchema::Bedrock,
        crate::llm::Operation::Embeddings,
        false,
        false,
    );
    meter.observe(combined.to_string().as_bytes());
    assert_eq!(
        meter.finish(true).1.usage.map(|u| u.input),
        Some(5),
        "the meter reads the combined usage"
    );
    let o = titan_embeddings_to_openai(&combined, "amazon.titan-embed-text-v2:0", false);
    assert_eq!(o["data"][1]["embedding"], json!([2.0, 0.25]));
    assert_eq!(o["data"][1]["index"], 1);
    assert_eq!(o["usage"], json!({"prompt_tokens": 5, "total_tokens": 5}));
    let o = titan_embeddings_to_openai(&combined, "amazon.titan-embed-text-v2:0", true);
    assert_eq!(o["data"][0]["embedding"], "AAAAPwAAgL8=");
}

/// Vertex text embedding models take `instances` per `:predict` call: all of them for the
/// `text-embedding-*` family, one per call for `gemini-embedding-*`; answers combine in order.
#[test]
fn openai_embeddings_become_vertex_predict_calls() {
    let req = br#"{"model":"m","input":["a b","c"],"dimensions":8}"#;
    let (bodies, base64) = openai_embeddings_to_vertex(req, "text-embedding-005").unwrap();
    assert!(!base64);
    assert_eq!(
        bodies,
        [
            json!({"instances": [{"content": "a b"}, {"content": "c"}], "parameters": {"autoTruncate": false, "outputDimensionality": 8}})
        ]
    );
    let (bodies, _) = openai_embeddings_to_vertex(req, "gemini-embedding-001").unwrap();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[1]["instances"], json!([{"content": "c"}]));
    // Long texts split batches before the per-request token limit.
    let long = "x".repeat(24_000);
    let big = json!({"model": "m", "input": [long, long, long, "y"]}).to_string();
    let (bodies, _) = openai_embeddings_to_vertex(big.as_bytes(), "text-embedding-005").unwrap();
    let sizes: Vec<usize> = bodies
        .iter()
        .map(|b| b["instances"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [2, 2], "8,000 estimated tokens each: two per call");
    let answer = |values: Value, tokens: u64| {
        json!({"predictions": [{"embeddings": {"values": values, "statistics": {"token_count": tokens, "truncated": false}}}],
               "metadata": {"billableCharacterCount": 3}})
    };
    let combined = vertex_combined(&[answer(json!([0.5, -1.0]), 2), answer(json!([2.0, 0.25]), 1)]);
    let mut meter = usage::Meter::new(
        crate::llm::ApiSchema::Vertex,
        crate::llm::Operation::Embeddings,
        false,
        false,
    );
    meter.observe(combined.to_string().as_bytes());
    assert_eq!(meter.finish(true).1.usage.map(|u| u.input), Some(3));
    let o = vertex_embeddings_to_openai(&combined, "gemini-embedding-001", true);
    assert_eq!(o["data"][0]["embedding"], "AAAAPwAAgL8=");
    assert_eq!(o["data"][1]["index"], 1);
    assert_eq!(o["usage"], json!({"prompt_tokens": 3, "total_tokens": 3}));
}

/// Golden translations, one per direction and kind (request, response, stream, error), from
/// inputs written after the providers' API references. `TOLLGATE_BLESS=1 cargo test` rewrites
/// the expected files; review the diff before committing it. Timestamps Tollgate stamps
/// (`created`) are zeroed before comparing.
mod golden {
    use super::*;

    /// Zeroes what Tollgate stamps per answer: `created` times and the random part of ids it
    /// makes up (Bedrock answers carry no id).
    fn zero_created(s: &str) -> String {
        zero_after(
            s,
            &[
                ("\"created\":", u8::is_ascii_digit),
                ("chatcmpl-bedrock-", u8::is_ascii_hexdigit),
            ],
        )
    }

    fn check(name: &str, got: &str) {
        let got = zero_created(got);
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/llm/testdata/translate")
            .join(name);
        if std::env::var_os("TOLLGATE_BLESS").is_some() {
            std::fs::write(&p, &got).unwrap();
        }
        let want = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!(got, want, "{name}: got\n{got}");
    }

    fn check_json(name: &str, got: &Value) {
        let mut got = got.clone();
        if got.get("created").is_some() {
            got["created"] = json!(0);
        }
        check(name, &(serde_json::to_string_pretty(&got).unwrap() + "\n"));
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

    /// A stream fed in small pieces must come out exactly as fed whole.
    fn feed_all(feed: &mut dyn FnMut(&[u8]) -> Bytes, input: &[u8], step: usize) -> String {
        let mut out = Vec::new();
        for c in input.chunks(step) {
            out.extend_from_slice(&feed(c));
        }
        zero_created(&String::from_utf8(out).unwrap())
    }

    #[test]
    fn openai_chat_to_gemini() {
        let req = fixture("openai-chat-tools.request.json");
        check_json(
            "openai-chat-tools.gemini-request.json",
            &super::openai_chat_to_gemini(&req).unwrap(),
        );
        let resp: Value = serde_json::from_slice(&fixture("gemini-function-call.response.json")).unwrap();
        check_json(
            "gemini-function-call.openai-response.json",
            &gemini_to_openai(&resp, "gemini-2.5-flash"),
        );
        let sse = fixture("gemini-function-call.sse");
        let whole = feed_all(
            &mut {
                let mut t = GeminiStreamToOpenAi::new("gemini-2.5-flash", true);
                move |b: &[u8]| t.feed(b)
            },
            &sse,
            sse.len(),
        );
        for step in [1, 17] {
            let mut t = GeminiStreamToOpenAi::new("gemini-2.5-flash", true);
            assert_eq!(feed_all(&mut |b: &[u8]| t.feed(b), &sse, step), whole, "step {step}");
        }
        check("gemini-function-call.openai.sse", &whole);
        check_json(
            "gemini-error.openai.json",
            &gemini_error_to_openai(&fixture("gemini-error.json")),
        );
    }

    #[test]
    fn openai_chat_to_bedrock() {
        let req = fixture("openai-chat-tools-inline-images.request.json");
        check_json(
            "openai-chat-tools-inline-images.bedrock-request.json",
            &super::openai_chat_to_bedrock(&req, "anthropic.claude-3-5-haiku-20241022-v1:0").unwrap(),
        );
        let resp: Value = serde_json::from_slice(&fixture("bedrock-tool-use.response.json")).unwrap();
        check_json(
            "bedrock-tool-use.openai-response.json",
            &bedrock_to_openai(&resp, "claude-3-5-haiku"),
        );
        let frames = bedrock_frames(&fixture("bedrock-tool-use.events.json"));
        let whole = feed_all(
            &mut {
                let mut t = BedrockStreamToOpenAi::new("claude-3-5-haiku", true);
                move |b: &[u8]| t.feed(b)
            },
            &frames,
            frames.len(),
        );
        for step in [1, 23] {
            let mut t = BedrockStreamToOpenAi::new("claude-3-5-haiku", true);
            assert_eq!(feed_all(&mut |b: &[u8]| t.feed(b), &frames, step), whole, "step {step}");
        }
        check("bedrock-tool-use.openai.sse", &whole);
        check_json(
            "bedrock-error.openai.json",
            &bedrock_error_to_openai(&fixture("bedrock-error.json"), 400),
        );
    }

    #[test]
    fn openai_chat_to_anthropic_answers() {
        let msg: Value = serde_json::from_slice(&fixture("anthropic-tool-use.response.json")).unwrap();
        check_json(
            "anthropic-tool-use.openai-response.json",
            &anthropic_message_to_openai(&msg),
        );
        let sse = fixture("anthropic-tool-use.sse");
        let whole = feed_all(
            &mut {
                let mut t = AnthropicStreamToOpenAi::new(true);
                move |b: &[u8]| t.feed(b)
            },
            &sse,
            sse.len(),
        );
        check("anthropic-tool-use.openai.sse", &whole);
    }

    /// Anthropic clients served by Gemini and Bedrock: through OpenAI chat both ways.
    #[test]
    fn anthropic_through_openai_to_gemini_and_bedrock() {
        let mut req: Value = serde_json::from_slice(&fixture("anthropic-tools.request.json")).unwrap();
        let via = super::anthropic_to_openai_chat(req.to_string().as_bytes(), "m")
            .unwrap()
            .to_string();
        // What the targets cannot say is refused by name: Gemini cannot keep tools from running
        // in parallel; Bedrock Converse has no thinking budget.
        let e = super::openai_chat_to_gemini(via.as_bytes()).unwrap_err();
        assert!(e.0.contains("`parallel_tool_calls`"), "{e}");
        let e = super::openai_chat_to_bedrock(via.as_bytes(), "m").unwrap_err();
        assert!(e.0.contains("Bedrock"), "{e}");
        req["tool_choice"] = json!({"type": "auto"});
        let via = super::anthropic_to_openai_chat(req.to_string().as_bytes(), "m")
            .unwrap()
            .to_string();
        check_json(
            "anthropic-tools.gemini-request.json",
            &super::openai_chat_to_gemini(via.as_bytes()).unwrap(),
        );
        req.as_object_mut().unwrap().remove("thinking");
        req["messages"][0]["content"].as_array_mut().unwrap().pop(); // the image URL
        let via = super::anthropic_to_openai_chat(req.to_string().as_bytes(), "m")
            .unwrap()
            .to_string();
        check_json(
            "anthropic-tools.bedrock-request.json",
            &super::openai_chat_to_bedrock(via.as_bytes(), "anthropic.claude-3-5-haiku-20241022-v1:0").unwrap(),
        );
        let resp: Value = serde_json::from_slice(&fixture("gemini-function-call.response.json")).unwrap();
        check_json(
            "gemini-function-call.anthropic-response.json",
            &openai_chat_to_anthropic_message(&gemini_to_openai(&resp, "gemini-2.5-flash")),
        );
        let sse = fixture("gemini-function-call.sse");
        let mut a = GeminiStreamToOpenAi::new("gemini-2.5-flash", true);
        let mut b = OpenAiStreamToAnthropic::default();
        check(
            "gemini-function-call.anthropic.sse",
            &feed_all(&mut |d: &[u8]| b.feed(&a.feed(d)), &sse, 7),
        );
        let resp: Value = serde_json::from_slice(&fixture("bedrock-tool-use.response.json")).unwrap();
        check_json(
            "bedrock-tool-use.anthropic-response.json",
            &openai_chat_to_anthropic_message(&bedrock_to_openai(&resp, "claude-3-5-haiku")),
        );
        let frames = bedrock_frames(&fixture("bedrock-tool-use.events.json"));
        let mut a = BedrockStreamToOpenAi::new("claude-3-5-haiku", true);
        let mut b = OpenAiStreamToAnthropic::default();
        check(
            "bedrock-tool-use.anthropic.sse",
            &feed_all(&mut |d: &[u8]| b.feed(&a.feed(d)), &frames, 11),
        );
    }

    #[test]
    fn anthropic_to_openai_chat() {
        let req = fixture("anthropic-tools.request.json");
        check_json(
            "anthropic-tools.openai-request.json",
            &super::anthropic_to_openai_chat(&req, "gpt-4o").unwrap(),
        );
        let resp: Value = serde_json::from_slice(&fixture("openai-chat-tool-calls.response.json")).unwrap();
        check_json(
            "openai-chat-tool-calls.anthropic-response.json",
            &openai_chat_to_anthropic_message(&resp),
        );
        let sse = fixture("openai-chat-tool-calls.sse");
        let whole = feed_all(
            &mut {
                let mut t = OpenAiStreamToAnthropic::default();
                move |b: &[u8]| t.feed(b)
            },
            &sse,
            sse.len(),
        );
        for step in [1, 29] {
            let mut t = OpenAiStreamToAnthropic::default();
            assert_eq!(feed_all(&mut |b: &[u8]| t.feed(b), &sse, step), whole, "step {step}");
        }
        check("openai-chat-tool-calls.anthropic.sse", &whole);
        check_json(
            "openai-error.anthropic.json",
            &openai_error_to_anthropic(&fixture("openai-error.json"), 429),
        );
    }
}

/// Gemini details a client depends on: call ids unique across a stream's events, a call's
/// thought signature back on the replayed call, blocked prompts finishing as content filters,
/// and calls with no `args` reading as `{}`.
#[test]
fn gemini_call_ids_signatures_and_blocked_prompts() {
    let ev = |v: Value| format!("data: {v}\r\n\r\n");
    let call = |name: &str, sig: Option<&str>| {
        let mut p = json!({"functionCall": {"name": name}});
        if let Some(s) = sig {
            p["thoughtSignature"] = json!(s);
        }
        json!({"candidates": [{"content": {"role": "model", "parts": [p]}, "index": 0}]})
    };
    let mut stream = ev(call("a", Some("c2lnLWE=")));
    stream += &ev(call("b", None));
    stream +=
        &ev(json!({"candidates": [{"content": {"role": "model", "parts": [{"text": ""}]}, "finishReason": "STOP"}]}));
    let out = String::from_utf8(GeminiStreamToOpenAi::new("g", false).feed(stream.as_bytes()).to_vec()).unwrap();
    let calls: Vec<Value> = openai_chunks(&out)
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0).cloned())
        .collect();
    assert_eq!(calls.len(), 2, "{out}");
    assert_eq!(calls[0]["id"], "call_0__thought__c2lnLWE=");
    assert_eq!(calls[1]["id"], "call_1");
    assert_eq!(calls[1]["function"]["arguments"], "{}");
    // The signature goes back on the replayed call; the tool result finds its name by id.
    let next = json!({"model": "g", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": calls[0]["id"], "type": "function", "function": {"name": "a", "arguments": "{}"}},
            {"id": calls[1]["id"], "type": "function", "function": {"name": "b", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": calls[1]["id"], "content": "done"}]});
    let g = openai_chat_to_gemini(next.to_string().as_bytes()).unwrap();
    assert_eq!(g["contents"][1]["parts"][0]["thoughtSignature"], "c2lnLWE=");
    assert!(g["contents"][1]["parts"][1].get("thoughtSignature").is_none());
    assert_eq!(g["contents"][2]["parts"][0]["functionResponse"]["name"], "b");
    // Blocked prompts: no candidate, only promptFeedback.
    let blocked = json!({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5}});
    assert_eq!(
        gemini_to_openai(&blocked, "g")["choices"][0]["finish_reason"],
        "content_filter"
    );
    let out = GeminiStreamToOpenAi::new("g", true).feed(ev(blocked).as_bytes());
    let out = String::from_utf8(out.to_vec()).unwrap();
    assert!(
        out.contains(r#""finish_reason":"content_filter""#) && out.ends_with("data: [DONE]\n\n"),
        "{out}"
    );
}

/// Usage sent in every chunk (vLLM's continuous usage stats) does not end an Anthropic
/// client's message early; a malformed usage does not panic.
#[test]
fn continuous_usage_and_odd_usage_shapes() {
    let chunk = |delta: Value, finish: Value, tokens: u64| {
        format!(
            "data: {}\n\n",
            json!({"id": "c", "object": "chat.completion.chunk", "model": "m",
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                   "usage": {"prompt_tokens": 3, "completion_tokens": tokens, "total_tokens": 3 + tokens}})
        )
    };
    let mut s = chunk(json!({"role": "assistant", "content": "Hel"}), Value::Null, 1);
    s += &chunk(json!({"content": "lo"}), Value::Null, 2);
    s += &chunk(json!({}), json!("stop"), 2);
    s += "data: [DONE]\n\n";
    let out = String::from_utf8(OpenAiStreamToAnthropic::default().feed(s.as_bytes()).to_vec()).unwrap();
    assert!(out.contains(r#""text":"lo""#), "{out}");
    assert_eq!(out.matches("event: message_stop").count(), 1, "{out}");
    assert!(out.trim_end().ends_with(r#"data: {"type":"message_stop"}"#), "{out}");
    assert!(out.contains(r#""output_tokens":2"#), "{out}");
    let odd = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":5}}\n\n\
               event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":3}}\n\n";
    let _ = AnthropicStreamToOpenAi::new(true).feed(odd.as_bytes());
}

/// JSON mode and structured outputs toward Anthropic: a forced tool whose input schema is the
/// requested one; its input comes back as the message text, streamed as text deltas, with
/// finish reason `stop`.
#[test]
fn json_mode_goes_through_a_forced_tool_and_comes_back_as_text() {
    let req = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Weather as JSON"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema":
            {"type": "object", "properties": {"temp": {"type": "number"}}, "required": ["temp"]}}}});
    let a = openai_chat_to_anthropic(req.to_string().as_bytes(), "claude-x").unwrap();
    assert_eq!(a["tool_choice"], json!({"type": "tool", "name": JSON_TOOL}));
    assert_eq!(a["tools"][0]["input_schema"]["required"], json!(["temp"]));
    let a = openai_chat_to_anthropic(
        br#"{"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"}}"#,
        "c",
    )
    .unwrap();
    assert_eq!(a["tools"][0]["input_schema"], json!({"type": "object"}));
    for extra in [
        r#""tools":[{"type":"function","function":{"name":"f"}}]"#,
        r#""reasoning_effort":"low""#,
    ] {
        let body = format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":"x"}}],"response_format":{{"type":"json_object"}},{extra}}}"#
        );
        let e = openai_chat_to_anthropic(body.as_bytes(), "c").unwrap_err();
        assert!(e.0.contains("`response_format`"), "{body}: {e}");
    }
    let e = openai_chat_to_bedrock(
        br#"{"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"}}"#,
        "m",
    )
    .unwrap_err();
    assert!(e.0.contains("Bedrock"), "{e}");
    // The answer.
    let msg = json!({"id": "msg_1", "model": "claude-x", "stop_reason": "tool_use",
        "content": [{"type": "tool_use", "id": "toolu_1", "name": JSON_TOOL, "input": {"temp": 21}}],
        "usage": {"input_tokens": 5, "output_tokens": 3}});
    let o = anthropic_message_to_openai(&msg);
    assert_eq!(o["choices"][0]["message"]["content"], r#"{"temp":21}"#);
    assert!(o["choices"][0]["message"].get("tool_calls").is_none());
    assert_eq!(o["choices"][0]["finish_reason"], "stop");
    // The stream.
    let ev = |name: &str, v: Value| format!("event: {name}\ndata: {v}\n\n");
    let mut sse = ev(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_1", "model": "claude-x", "usage": {"input_tokens": 5}}}),
    );
    sse += &ev(
        "content_block_start",
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_1", "name": JSON_TOOL, "input": {}}}),
    );
    sse += &ev(
        "content_block_delta",
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"temp\":"}}),
    );
    sse += &ev(
        "content_block_delta",
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": " 21}"}}),
    );
    sse += &ev("content_block_stop", json!({"type": "content_block_stop", "index": 0}));
    sse += &ev(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 3}}),
    );
    sse += &ev("message_stop", json!({"type": "message_stop"}));
    let out = String::from_utf8(AnthropicStreamToOpenAi::new(false).feed(sse.as_bytes()).to_vec()).unwrap();
    let chunks = openai_chunks(&out);
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, r#"{"temp": 21}"#);
    assert!(
        chunks
            .iter()
            .all(|c| c["choices"][0]["delta"].get("tool_calls").is_none()),
        "{out}"
    );
    assert!(
        chunks.iter().any(|c| c["choices"][0]["finish_reason"] == "stop"),
        "{out}"
    );
}
