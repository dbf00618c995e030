//! Translation between provider APIs, chosen per attempt: a client speaking OpenAI chat
//! completions served by an Anthropic Messages backend (request, response, stream, errors).
//!
//! References: OpenAI <https://platform.openai.com/docs/api-reference/chat>, Anthropic
//! <https://docs.anthropic.com/en/api/messages> and
//! <https://docs.anthropic.com/en/docs/build-with-claude/streaming>. A request feature the
//! target cannot express is refused with a 400 that names it; nothing is dropped silently.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::{sse, usage};

/// Max tokens sent to Anthropic when the client gave none (Anthropic requires the field).
pub const DEFAULT_MAX_TOKENS: u64 = 4096;
/// `anthropic-version` sent upstream when the client's request has none.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// The translation an attempt applies, as named in the audit record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Translation {
    None,
    OpenAiChatToAnthropic,
    AnthropicToOpenAiChat,
    /// Same body, Azure's deployment path and `api-version`.
    OpenAiToAzure,
    OpenAiChatToGemini,
    OpenAiChatToBedrock,
    /// `base64`: the client asked for base64 vectors (the OpenAI SDK's default).
    OpenAiEmbeddingsToGemini {
        base64: bool,
    },
    /// One Titan `InvokeModel` call per input text, answered as one list.
    OpenAiEmbeddingsToBedrockTitan {
        base64: bool,
    },
}

impl Translation {
    pub fn as_str(self) -> &'static str {
        match self {
            Translation::None => "none",
            Translation::OpenAiChatToAnthropic => "openai_chat->anthropic_messages",
            Translation::AnthropicToOpenAiChat => "anthropic_messages->openai_chat",
            Translation::OpenAiToAzure => "openai->azure_openai",
            Translation::OpenAiChatToGemini => "openai_chat->gemini",
            Translation::OpenAiChatToBedrock => "openai_chat->bedrock_converse",
            Translation::OpenAiEmbeddingsToGemini { .. } => "openai_embeddings->gemini",
            Translation::OpenAiEmbeddingsToBedrockTitan { .. } => "openai_embeddings->bedrock_titan",
        }
    }
}

/// Why a request cannot be translated: always a client error naming the feature.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct Unsupported(pub String);

fn unsupported(what: impl Into<String>) -> Unsupported {
    Unsupported(what.into())
}

/// Members of an OpenAI chat request that have an Anthropic meaning (or none needed).
const KNOWN: [&str; 16] = [
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "stream",
    "stream_options",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "user",
    "reasoning_effort",
    "response_format",
    "n",
];

/// OpenAI chat request → Anthropic Messages request. `model` is the model the backend serves.
pub fn openai_chat_to_anthropic(body: &[u8], model: &str) -> Result<Value, Unsupported> {
    let req: Value = serde_json::from_slice(body).map_err(|e| unsupported(format!("request body: {e}")))?;
    let obj = req
        .as_object()
        .ok_or_else(|| unsupported("request body must be a JSON object"))?;
    for (k, v) in obj {
        let harmless_default = match k.as_str() {
            "frequency_penalty" | "presence_penalty" => v.as_f64() == Some(0.0),
            "logprobs" => v == &Value::Bool(false),
            "store" | "metadata" | "service_tier" | "seed" => false,
            _ => false,
        };
        if !KNOWN.contains(&k.as_str()) && !harmless_default && !v.is_null() {
            return Err(unsupported(format!(
                "`{k}` is not supported when this route is served by an Anthropic backend"
            )));
        }
    }
    if obj.get("n").and_then(Value::as_u64).is_some_and(|n| n != 1) {
        return Err(unsupported("`n` other than 1 is not supported by Anthropic backends"));
    }
    match obj
        .get("response_format")
        .and_then(|f| f.get("type"))
        .and_then(Value::as_str)
    {
        None | Some("text") => {}
        Some(other) => {
            return Err(unsupported(format!(
                "`response_format` {other:?} is not supported by Anthropic backends"
            )))
        }
    }

    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    let max_tokens = obj
        .get("max_completion_tokens")
        .or(obj.get("max_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    out.insert("max_tokens".into(), json!(max_tokens));

    let messages = obj
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| unsupported("`messages` is required"))?;
    let mut system: Vec<String> = Vec::new();
    let mut converted: Vec<Value> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let (role, blocks) = match role {
            "system" | "developer" => {
                let text = text_of(&m["content"])
                    .ok_or_else(|| unsupported(format!("messages[{i}].content: text expected")))?;
                if !is_blank(&text) {
                    system.push(text);
                }
                continue;
            }
            "user" => ("user", content_blocks(&m["content"], i)?),
            "assistant" => {
                let mut blocks = match &m["content"] {
                    Value::Null => Vec::new(),
                    c => content_blocks(c, i)?,
                };
                for call in m.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                    let f = &call["function"];
                    let args = f["arguments"].as_str().unwrap_or("{}");
                    let input: Value = serde_json::from_str(args)
                        .map_err(|_| unsupported(format!("messages[{i}].tool_calls: arguments are not JSON")))?;
                    blocks.push(json!({"type": "tool_use", "id": call["id"], "name": f["name"], "input": input}));
                }
                ("assistant", blocks)
            }
            "tool" => {
                let id = m.get("tool_call_id").and_then(Value::as_str).unwrap_or("");
                let content = text_of(&m["content"]).unwrap_or_default();
                (
                    "user",
                    vec![json!({"type": "tool_result", "tool_use_id": id, "content": content})],
                )
            }
            other => return Err(unsupported(format!("messages[{i}]: role {other:?} is not supported"))),
        };
        if blocks.is_empty() {
            continue;
        }
        // Anthropic wants alternating turns: merge consecutive messages of one role.
        match converted.last_mut() {
            Some(last) if last["role"] == role => {
                if let Some(arr) = last["content"].as_array_mut() {
                    arr.extend(blocks);
                }
            }
            _ => converted.push(json!({"role": role, "content": blocks})),
        }
    }
    if !system.is_empty() {
        out.insert("system".into(), json!(system.join("\n\n")));
    }
    let no_turns = converted.is_empty();
    out.insert("messages".into(), Value::Array(converted));

    if let Some(t) = obj.get("temperature").and_then(Value::as_f64).filter(|t| *t > 1.0) {
        return Err(unsupported(format!(
            "`temperature` {t} is not supported by Anthropic backends (their range is 0 to 1)"
        )));
    }
    for k in ["temperature", "top_p", "stream"] {
        if let Some(v) = obj.get(k).filter(|v| !v.is_null()) {
            out.insert(k.into(), v.clone());
        }
    }
    match obj.get("stop") {
        Some(Value::String(s)) => {
            out.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(a)) => {
            out.insert("stop_sequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    if let Some(user) = obj.get("user").and_then(Value::as_str) {
        out.insert("metadata".into(), json!({"user_id": user}));
    }
    if let Some(tools) = obj.get("tools").and_then(Value::as_array) {
        let mut list = Vec::new();
        for (i, t) in tools.iter().enumerate() {
            if t["type"] != "function" {
                return Err(unsupported(format!(
                    "tools[{i}]: only function tools are supported by Anthropic backends"
                )));
            }
            let f = &t["function"];
            let mut tool = json!({"name": f["name"], "input_schema": f.get("parameters").cloned().unwrap_or(json!({"type": "object"}))});
            if let Some(d) = f.get("description") {
                tool["description"] = d.clone();
            }
            list.push(tool);
        }
        out.insert("tools".into(), Value::Array(list));
    }
    let disable_parallel = obj.get("parallel_tool_calls") == Some(&Value::Bool(false));
    let choice = match obj.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(match s.as_str() {
            "auto" => json!({"type": "auto"}),
            "none" => json!({"type": "none"}),
            "required" => json!({"type": "any"}),
            other => return Err(unsupported(format!("`tool_choice` {other:?} is not supported"))),
        }),
        Some(v) => Some(json!({"type": "tool", "name": v["function"]["name"]})),
    };
    match (choice, disable_parallel) {
        // `none` calls no tool, so there is nothing to keep from running in parallel (and
        // Anthropic's `none` choice takes no other member).
        (Some(mut c), true) => {
            if c["type"] != "none" {
                c["disable_parallel_tool_use"] = json!(true);
            }
            out.insert("tool_choice".into(), c);
        }
        (Some(c), false) => {
            out.insert("tool_choice".into(), c);
        }
        (None, true) => {
            out.insert(
                "tool_choice".into(),
                json!({"type": "auto", "disable_parallel_tool_use": true}),
            );
        }
        (None, false) => {}
    }
    if let Some(effort) = obj.get("reasoning_effort").and_then(Value::as_str) {
        let budget = match effort {
            "minimal" | "low" => 1024,
            "medium" => 4096,
            "high" => 16384,
            other => return Err(unsupported(format!("`reasoning_effort` {other:?} is not supported"))),
        };
        out.insert("thinking".into(), json!({"type": "enabled", "budget_tokens": budget}));
        if max_tokens <= budget {
            out.insert("max_tokens".into(), json!(budget + max_tokens));
        }
        // Anthropic refuses temperature/top_p changes while thinking.
        out.remove("temperature");
        out.remove("top_p");
    }
    if no_turns {
        return Err(unsupported(
            "`messages` must hold at least one non-blank user or assistant message for Anthropic backends",
        ));
    }
    Ok(Value::Object(out))
}

fn text_of(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter(|p| p["type"] == "text")
                .map(|p| p["text"].as_str().unwrap_or(""))
                .collect::<Vec<_>>()
                .join(""),
        ),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

/// Anthropic, Bedrock and Vertex refuse text that is empty or only whitespace ("text content
/// blocks must contain non-whitespace text"); such a part carries nothing for the model, so
/// it is left out rather than failing the request upstream.
fn is_blank(s: &str) -> bool {
    s.trim().is_empty()
}

fn content_blocks(content: &Value, i: usize) -> Result<Vec<Value>, Unsupported> {
    match content {
        Value::String(s) if is_blank(s) => Ok(Vec::new()),
        Value::String(s) => Ok(vec![json!({"type": "text", "text": s})]),
        Value::Array(parts) => parts
            .iter()
            .filter(|p| !(p["type"] == "text" && is_blank(p["text"].as_str().unwrap_or(""))))
            .enumerate()
            .map(|(j, p)| match p["type"].as_str() {
                Some("text") => Ok(json!({"type": "text", "text": p["text"]})),
                Some("image_url") => {
                    let url = p["image_url"]["url"].as_str().unwrap_or("");
                    match url.strip_prefix("data:").and_then(|rest| rest.split_once(";base64,")) {
                        Some((media_type, data)) => {
                            Ok(json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}))
                        }
                        None => Ok(json!({"type": "image", "source": {"type": "url", "url": url}})),
                    }
                }
                other => Err(unsupported(format!("messages[{i}].content[{j}]: part type {other:?} is not supported by Anthropic backends"))),
            })
            .collect(),
        Value::Null => Ok(Vec::new()),
        _ => Err(unsupported(format!("messages[{i}].content must be a string or parts"))),
    }
}

fn finish_reason(stop: Option<&str>) -> Value {
    match stop {
        Some("end_turn") | Some("stop_sequence") | Some("pause_turn") => json!("stop"),
        Some("max_tokens") => json!("length"),
        Some("tool_use") => json!("tool_calls"),
        Some("refusal") => json!("content_filter"),
        Some(_) | None => Value::Null,
    }
}

/// An OpenAI `usage` object from what a meter in [`usage`] read in the backend's own schema
/// (normalised there: `input` includes cached and cache-written tokens, `output` reasoning).
fn openai_usage(u: Option<usage::Usage>) -> Value {
    let u = u.unwrap_or_default();
    let mut v = json!({"prompt_tokens": u.input, "completion_tokens": u.output, "total_tokens": u.total(),
                       "prompt_tokens_details": {"cached_tokens": u.cached_input}});
    if u.reasoning > 0 {
        v["completion_tokens_details"] = json!({"reasoning_tokens": u.reasoning});
    }
    v
}

/// The last chunk of an OpenAI stream that asked for `stream_options.include_usage`.
fn openai_usage_chunk(id: &str, created: u64, model: &Value, usage: Value) -> String {
    let c = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [], "usage": usage});
    format!("data: {c}\n\n")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An OpenAI chat.completion around one choice.
fn openai_completion(id: String, model: Value, message: Value, finish: Value, usage: Value) -> Value {
    json!({
        "id": id,
        "object": "chat.completion",
        "created": now(),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
        "usage": usage,
    })
}

/// One `data:` event of an OpenAI chat stream with a single choice.
fn openai_chunk(id: &str, created: u64, model: &Value, delta: Value, finish: Value) -> String {
    let c = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
    format!("data: {c}\n\n")
}

/// An OpenAI error body.
fn openai_error(v: &Value, typ: &str, code: &Value) -> Value {
    let message = v["error"]["message"].as_str().unwrap_or("upstream error");
    json!({"error": {"message": message, "type": typ, "param": null, "code": code}})
}

/// An assistant message from collected text and tool calls.
fn assistant_message(text: String, calls: Vec<Value>) -> Value {
    let content = if text.is_empty() && !calls.is_empty() {
        Value::Null
    } else {
        json!(text)
    };
    let mut message = json!({"role": "assistant", "content": content, "refusal": null});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    message
}

/// Anthropic message → OpenAI chat.completion.
pub fn anthropic_message_to_openai(msg: &Value) -> Value {
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in msg["content"].as_array().into_iter().flatten() {
        match block["type"].as_str() {
            Some("text") => text.push_str(block["text"].as_str().unwrap_or("")),
            Some("tool_use") => calls.push(json!({
                "id": block["id"], "type": "function",
                "function": {"name": block["name"], "arguments": block["input"].to_string()}
            })),
            _ => {}
        }
    }
    openai_completion(
        format!("chatcmpl-{}", msg["id"].as_str().unwrap_or("")),
        msg["model"].clone(),
        assistant_message(text, calls),
        finish_reason(msg["stop_reason"].as_str()),
        openai_usage(usage::anthropic_usage(&msg["usage"])),
    )
}

/// Anthropic error body → OpenAI error body (the upstream status is kept by the caller).
pub fn anthropic_error_to_openai(body: &[u8]) -> Value {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let typ = match v["error"]["type"].as_str() {
        Some("invalid_request_error") | Some("not_found_error") | Some("request_too_large") => "invalid_request_error",
        Some("authentication_error") => "authentication_error",
        Some("permission_error") => "permission_error",
        Some("rate_limit_error") => "rate_limit_error",
        _ => "api_error",
    };
    openai_error(&v, typ, &v["error"]["type"])
}

/// Turns an Anthropic SSE stream into OpenAI `chat.completion.chunk`s as events arrive.
pub struct AnthropicStreamToOpenAi {
    splitter: sse::Splitter,
    id: String,
    model: Value,
    created: u64,
    include_usage: bool,
    usage: Value,
    /// Anthropic content block index → OpenAI tool call index.
    tool_index: std::collections::HashMap<u64, usize>,
    done: bool,
    /// The end of every chunk after `choices` (`,"created":…,"object":…}`), rebuilt when
    /// `message_start` names the id and model, so text deltas are written without a `Value`.
    tail: String,
}

/// The members of a `content_block_delta` event, borrowed from the event's data. Other events
/// parse too (unknown members are skipped) and take the general path.
#[derive(serde::Deserialize)]
struct BlockDelta<'a> {
    #[serde(rename = "type", borrow)]
    ty: std::borrow::Cow<'a, str>,
    #[serde(default)]
    index: u64,
    #[serde(borrow, default)]
    delta: Option<BlockDeltaBody<'a>>,
}

#[derive(serde::Deserialize)]
struct BlockDeltaBody<'a> {
    #[serde(rename = "type", borrow, default)]
    ty: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    text: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    partial_json: Option<std::borrow::Cow<'a, str>>,
}

impl AnthropicStreamToOpenAi {
    pub fn new(include_usage: bool) -> Self {
        AnthropicStreamToOpenAi {
            splitter: sse::Splitter::new(super::usage::MAX_SSE_EVENT),
            id: String::new(),
            model: Value::Null,
            created: now(),
            include_usage,
            usage: json!({}),
            tool_index: Default::default(),
            done: false,
            tail: String::new(),
        }
        .with_tail()
    }

    fn with_tail(mut self) -> Self {
        self.set_tail();
        self
    }

    fn set_tail(&mut self) {
        // Members after `choices` in the order `json!` writes them (sorted), so both paths agree.
        self.tail = format!(
            r#","created":{},"id":{},"model":{},"object":"chat.completion.chunk"}}"#,
            self.created,
            Value::String(self.id.clone()),
            self.model
        );
    }

    /// A chunk whose delta is already JSON text, with no finish reason.
    fn push_delta(&self, out: &mut String, delta: &str) {
        out.push_str(r#"data: {"choices":[{"delta":"#);
        out.push_str(delta);
        out.push_str(r#","finish_reason":null,"index":0,"logprobs":null}]"#);
        out.push_str(&self.tail);
        out.push_str("\n\n");
    }

    /// The hot path of a stream: text and tool-argument deltas. Returns false when the event
    /// is something else (or an unexpected shape) and must take the general path.
    fn fast_delta(&self, data: &str, out: &mut String) -> bool {
        let Ok(e) = serde_json::from_str::<BlockDelta<'_>>(data) else {
            return false;
        };
        let Some(d) = e.delta.filter(|_| e.ty == "content_block_delta") else {
            return false;
        };
        match (d.ty.as_deref(), d.text, d.partial_json) {
            (Some("text_delta"), Some(text), _) => {
                let mut delta = String::with_capacity(text.len() + 16);
                delta.push_str(r#"{"content":"#);
                delta.push_str(&Value::String(text.into_owned()).to_string());
                delta.push('}');
                self.push_delta(out, &delta);
                true
            }
            (Some("input_json_delta"), _, Some(args)) => {
                let n = self.tool_index.get(&e.index).copied().unwrap_or(0);
                let delta = format!(
                    r#"{{"tool_calls":[{{"function":{{"arguments":{}}},"index":{n}}}]}}"#,
                    Value::String(args.into_owned())
                );
                self.push_delta(out, &delta);
                true
            }
            _ => false,
        }
    }

    fn chunk(&self, delta: Value, finish: Value) -> String {
        openai_chunk(&self.id, self.created, &self.model, delta, finish)
    }

    /// Feeds upstream bytes; returns the client's bytes.
    pub fn feed(&mut self, bytes: &[u8]) -> Bytes {
        let mut out = String::new();
        for event in self.splitter.feed(bytes) {
            if self.fast_delta(&event.data, &mut out) {
                continue;
            }
            let Ok(v) = serde_json::from_str::<Value>(&event.data) else {
                continue;
            };
            match v["type"].as_str() {
                Some("message_start") => {
                    let m = &v["message"];
                    self.id = format!("chatcmpl-{}", m["id"].as_str().unwrap_or(""));
                    self.model = m["model"].clone();
                    self.usage = m["usage"].clone();
                    self.set_tail();
                    out += &self.chunk(json!({"role": "assistant", "content": ""}), Value::Null);
                }
                Some("content_block_start") if v["content_block"]["type"] == "tool_use" => {
                    let n = self.tool_index.len();
                    self.tool_index.insert(v["index"].as_u64().unwrap_or(0), n);
                    let b = &v["content_block"];
                    out += &self.chunk(
                        json!({"tool_calls": [{"index": n, "id": b["id"], "type": "function", "function": {"name": b["name"], "arguments": ""}}]}),
                        Value::Null,
                    );
                }
                Some("content_block_delta") => match v["delta"]["type"].as_str() {
                    Some("text_delta") => out += &self.chunk(json!({"content": v["delta"]["text"]}), Value::Null),
                    Some("input_json_delta") => {
                        let n = self
                            .tool_index
                            .get(&v["index"].as_u64().unwrap_or(0))
                            .copied()
                            .unwrap_or(0);
                        out += &self.chunk(
                            json!({"tool_calls": [{"index": n, "function": {"arguments": v["delta"]["partial_json"]}}]}),
                            Value::Null,
                        );
                    }
                    _ => {}
                },
                Some("message_delta") => {
                    if let Some(o) = v["usage"]["output_tokens"].as_u64() {
                        self.usage["output_tokens"] = json!(o);
                    }
                    out += &self.chunk(json!({}), finish_reason(v["delta"]["stop_reason"].as_str()));
                }
                Some("message_stop") => {
                    if self.include_usage {
                        let u = openai_usage(usage::anthropic_usage(&self.usage));
                        out += &openai_usage_chunk(&self.id, self.created, &self.model, u);
                    }
                    out += "data: [DONE]\n\n";
                    self.done = true;
                }
                Some("error") => {
                    let e = anthropic_error_to_openai(event.data.as_bytes());
                    out += &format!("data: {e}\n\n");
                }
                _ => {}
            }
        }
        Bytes::from(out)
    }
}

// === Anthropic Messages client, OpenAI-compatible backend ===

/// Members of an Anthropic Messages request with an OpenAI chat meaning.
const KNOWN_ANTHROPIC: [&str; 12] = [
    "model",
    "thinking",
    "messages",
    "system",
    "max_tokens",
    "temperature",
    "top_p",
    "stop_sequences",
    "stream",
    "tools",
    "tool_choice",
    "metadata",
];

/// Anthropic Messages request → OpenAI chat request (for any OpenAI-compatible backend:
/// OpenAI, vLLM, Ollama…). Streams ask for usage, which becomes `message_delta.usage`.
pub fn anthropic_to_openai_chat(body: &[u8], model: &str) -> Result<Value, Unsupported> {
    let req: Value = serde_json::from_slice(body).map_err(|e| unsupported(format!("request body: {e}")))?;
    let obj = req
        .as_object()
        .ok_or_else(|| unsupported("request body must be a JSON object"))?;
    for (k, v) in obj {
        if !KNOWN_ANTHROPIC.contains(&k.as_str()) && !v.is_null() {
            return Err(unsupported(format!(
                "`{k}` is not supported when this route is served by an OpenAI-compatible backend"
            )));
        }
    }
    let mut messages = Vec::new();
    match obj.get("system") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => messages.push(json!({"role": "system", "content": s})),
        Some(Value::Array(blocks)) => {
            let text: Vec<&str> = blocks.iter().filter_map(|b| b["text"].as_str()).collect();
            messages.push(json!({"role": "system", "content": text.join("\n\n")}));
        }
        Some(_) => return Err(unsupported("`system` must be a string or text blocks")),
    }
    for (i, m) in obj
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let role = m["role"].as_str().unwrap_or("");
        let blocks = match &m["content"] {
            Value::String(s) => vec![json!({"type": "text", "text": s})],
            Value::Array(b) => b.clone(),
            _ => return Err(unsupported(format!("messages[{i}].content must be a string or blocks"))),
        };
        let mut parts = Vec::new();
        let mut calls = Vec::new();
        for (j, b) in blocks.iter().enumerate() {
            match b["type"].as_str() {
                Some("text") => parts.push(json!({"type": "text", "text": b["text"]})),
                Some("image") => {
                    let src = &b["source"];
                    let url = match src["type"].as_str() {
                        Some("base64") => format!(
                            "data:{};base64,{}",
                            src["media_type"].as_str().unwrap_or("image/png"),
                            src["data"].as_str().unwrap_or("")
                        ),
                        Some("url") => src["url"].as_str().unwrap_or("").to_string(),
                        _ => {
                            return Err(unsupported(format!(
                                "messages[{i}].content[{j}]: image source not supported"
                            )))
                        }
                    };
                    parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
                }
                Some("tool_use") => calls.push(json!({
                    "id": b["id"], "type": "function",
                    "function": {"name": b["name"], "arguments": b["input"].to_string()}
                })),
                Some("tool_result") => {
                    let content = match &b["content"] {
                        Value::String(s) => s.clone(),
                        Value::Array(a) => a.iter().filter_map(|c| c["text"].as_str()).collect::<Vec<_>>().join(""),
                        _ => String::new(),
                    };
                    messages.push(json!({"role": "tool", "tool_call_id": b["tool_use_id"], "content": content}));
                }
                other => {
                    return Err(unsupported(format!(
                    "messages[{i}].content[{j}]: block type {other:?} is not supported by OpenAI-compatible backends"
                )))
                }
            }
        }
        match role {
            "user" if !parts.is_empty() => messages.push(json!({"role": "user", "content": parts})),
            "user" => {}
            "assistant" => {
                let text: String = parts.iter().filter_map(|p| p["text"].as_str()).collect();
                let mut msg =
                    json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { json!(text) }});
                if !calls.is_empty() {
                    msg["tool_calls"] = Value::Array(calls);
                }
                messages.push(msg);
            }
            other => return Err(unsupported(format!("messages[{i}]: role {other:?} is not supported"))),
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    out.insert("messages".into(), Value::Array(messages));
    // Reasoning models take `max_completion_tokens` (and refuse `max_tokens`); other
    // OpenAI-compatible servers (vLLM, Ollama) know `max_tokens` best.
    if let Some(m) = obj.get("max_tokens") {
        let key = if obj.get("thinking").is_some_and(|t| t["type"] == "enabled") {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        out.insert(key.into(), m.clone());
    }
    for k in ["temperature", "top_p"] {
        if let Some(v) = obj.get(k).filter(|v| !v.is_null()) {
            out.insert(k.into(), v.clone());
        }
    }
    if let Some(stop) = obj.get("stop_sequences").filter(|v| !v.is_null()) {
        out.insert("stop".into(), stop.clone());
    }
    if obj.get("stream") == Some(&Value::Bool(true)) {
        out.insert("stream".into(), json!(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if let Some(user) = obj
        .get("metadata")
        .and_then(|m| m.get("user_id"))
        .and_then(Value::as_str)
    {
        out.insert("user".into(), json!(user));
    }
    if let Some(tools) = obj.get("tools").and_then(Value::as_array) {
        let mut list = Vec::new();
        for (i, t) in tools.iter().enumerate() {
            if t.get("input_schema").is_none() {
                return Err(unsupported(format!(
                    "tools[{i}]: only custom tools with an input_schema are supported"
                )));
            }
            let mut f = json!({"name": t["name"], "parameters": t["input_schema"]});
            if let Some(d) = t.get("description") {
                f["description"] = d.clone();
            }
            list.push(json!({"type": "function", "function": f}));
        }
        out.insert("tools".into(), Value::Array(list));
    }
    // Thinking budget → reasoning effort: the inverse of the budgets the other direction sends.
    match obj.get("thinking") {
        None | Some(Value::Null) => {}
        Some(t) => match t["type"].as_str() {
            Some("disabled") => {}
            Some("enabled") => {
                let effort = match t["budget_tokens"].as_u64().unwrap_or(0) {
                    0..=2048 => "low",
                    2049..=8192 => "medium",
                    _ => "high",
                };
                out.insert("reasoning_effort".into(), json!(effort));
            }
            other => return Err(unsupported(format!("`thinking` type {other:?} is not supported"))),
        },
    }
    if let Some(choice) = obj.get("tool_choice").filter(|v| !v.is_null()) {
        let mapped = match choice["type"].as_str() {
            Some("auto") => json!("auto"),
            Some("any") => json!("required"),
            Some("none") => json!("none"),
            Some("tool") => json!({"type": "function", "function": {"name": choice["name"]}}),
            other => return Err(unsupported(format!("`tool_choice` {other:?} is not supported"))),
        };
        out.insert("tool_choice".into(), mapped);
        if choice.get("disable_parallel_tool_use") == Some(&Value::Bool(true)) {
            out.insert("parallel_tool_calls".into(), json!(false));
        }
    }
    Ok(Value::Object(out))
}

fn stop_reason(finish: Option<&str>) -> Value {
    match finish {
        Some("stop") => json!("end_turn"),
        Some("length") => json!("max_tokens"),
        Some("tool_calls") | Some("function_call") => json!("tool_use"),
        Some("content_filter") => json!("refusal"),
        _ => Value::Null,
    }
}

fn anthropic_usage_of(u: &Value) -> Value {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let cached = u["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap_or(0);
    json!({"input_tokens": n("prompt_tokens").saturating_sub(cached), "cache_read_input_tokens": cached,
           "cache_creation_input_tokens": 0, "output_tokens": n("completion_tokens")})
}

/// OpenAI chat.completion → Anthropic message.
pub fn openai_chat_to_anthropic_message(resp: &Value) -> Value {
    let choice = &resp["choices"][0];
    let msg = &choice["message"];
    let mut content = Vec::new();
    if let Some(text) = msg["content"].as_str().filter(|t| !t.is_empty()) {
        content.push(json!({"type": "text", "text": text}));
    }
    for call in msg["tool_calls"].as_array().into_iter().flatten() {
        let input: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().unwrap_or("{}")).unwrap_or(json!({}));
        content.push(json!({"type": "tool_use", "id": call["id"], "name": call["function"]["name"], "input": input}));
    }
    json!({
        "id": format!("msg_{}", resp["id"].as_str().unwrap_or("")),
        "type": "message",
        "role": "assistant",
        "model": resp["model"],
        "content": content,
        "stop_reason": stop_reason(choice["finish_reason"].as_str()),
        "stop_sequence": null,
        "usage": anthropic_usage_of(&resp["usage"]),
    })
}

/// OpenAI error body → Anthropic error body.
///
/// OpenAI-compatible servers name error types loosely (`requests`, `tokens`, `server_error`…),
/// so a type Anthropic does not know is taken from the HTTP `status` instead
/// (<https://docs.anthropic.com/en/api/errors>). Stream errors pass status 0 (none known).
pub fn openai_error_to_anthropic(body: &[u8], status: u16) -> Value {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let message = v["error"]["message"].as_str().unwrap_or("upstream error").to_string();
    let typ = match v["error"]["type"].as_str() {
        Some("invalid_request_error") => "invalid_request_error",
        Some("authentication_error") => "authentication_error",
        Some("permission_error") => "permission_error",
        Some("rate_limit_error") | Some("insufficient_quota") => "rate_limit_error",
        _ => match status {
            400 | 422 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            503 | 529 => "overloaded_error",
            _ => "api_error",
        },
    };
    json!({"type": "error", "error": {"type": typ, "message": message}})
}

/// An OpenAI error `type` for an HTTP status, when the provider's body does not name one.
fn openai_error_type(status: u16) -> &'static str {
    match status {
        400 | 404 | 413 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        _ => "api_error",
    }
}

/// Turns OpenAI `chat.completion.chunk`s into Anthropic stream events as they arrive.
pub struct OpenAiStreamToAnthropic {
    splitter: sse::Splitter,
    started: bool,
    /// Index of the open content block, and whether it is text.
    open: Option<(usize, bool)>,
    next_index: usize,
    /// OpenAI tool call index → Anthropic block index.
    tools: std::collections::HashMap<u64, usize>,
    stop: Value,
    finished: bool,
}

impl Default for OpenAiStreamToAnthropic {
    fn default() -> Self {
        OpenAiStreamToAnthropic {
            splitter: sse::Splitter::new(super::usage::MAX_SSE_EVENT),
            started: false,
            open: None,
            next_index: 0,
            tools: Default::default(),
            stop: Value::Null,
            finished: false,
        }
    }
}

fn event(name: &str, data: Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

impl OpenAiStreamToAnthropic {
    fn close_block(&mut self, out: &mut String) {
        if let Some((index, _)) = self.open.take() {
            *out += &event(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": index}),
            );
        }
    }

    fn finish(&mut self, usage: &Value, out: &mut String) {
        if self.finished {
            return;
        }
        self.close_block(out);
        let mut u = json!({"output_tokens": usage["completion_tokens"].as_u64().unwrap_or(0)});
        if usage.is_object() {
            let full = anthropic_usage_of(usage);
            u["input_tokens"] = full["input_tokens"].clone();
            u["cache_read_input_tokens"] = full["cache_read_input_tokens"].clone();
        }
        *out += &event(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": self.stop, "stop_sequence": null}, "usage": u}),
        );
        *out += &event("message_stop", json!({"type": "message_stop"}));
        self.finished = true;
    }

    /// Feeds upstream bytes; returns the client's bytes.
    pub fn feed(&mut self, bytes: &[u8]) -> Bytes {
        let mut out = String::new();
        for ev in self.splitter.feed(bytes) {
            if ev.data == "[DONE]" {
                self.finish(&Value::Null, &mut out);
                continue;
            }
            let Ok(v) = serde_json::from_str::<Value>(&ev.data) else {
                continue;
            };
            if v.get("error").is_some() {
                let e = openai_error_to_anthropic(ev.data.as_bytes(), 0);
                out += &event("error", e);
                continue;
            }
            if !self.started {
                self.started = true;
                out += &event(
                    "message_start",
                    json!({"type": "message_start", "message": {
                        "id": format!("msg_{}", v["id"].as_str().unwrap_or("")), "type": "message", "role": "assistant",
                        "model": v["model"], "content": [], "stop_reason": null, "stop_sequence": null,
                        "usage": {"input_tokens": 0, "output_tokens": 0}}}),
                );
            }
            let choice = &v["choices"][0];
            let delta = &choice["delta"];
            if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
                if !matches!(self.open, Some((_, true))) {
                    self.close_block(&mut out);
                    let index = self.next_index;
                    self.next_index += 1;
                    self.open = Some((index, true));
                    out += &event(
                        "content_block_start",
                        json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}),
                    );
                }
                let index = self.open.map(|o| o.0).unwrap_or(0);
                out += &event(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}),
                );
            }
            for call in delta["tool_calls"].as_array().into_iter().flatten() {
                let k = call["index"].as_u64().unwrap_or(0);
                let index = match self.tools.get(&k) {
                    Some(i) => *i,
                    None => {
                        self.close_block(&mut out);
                        let index = self.next_index;
                        self.next_index += 1;
                        self.tools.insert(k, index);
                        self.open = Some((index, false));
                        out += &event(
                            "content_block_start",
                            json!({"type": "content_block_start", "index": index,
                                   "content_block": {"type": "tool_use", "id": call["id"], "name": call["function"]["name"], "input": {}}}),
                        );
                        index
                    }
                };
                if let Some(args) = call["function"]["arguments"].as_str().filter(|a| !a.is_empty()) {
                    out += &event(
                        "content_block_delta",
                        json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": args}}),
                    );
                }
            }
            if let Some(f) = choice["finish_reason"].as_str() {
                self.stop = stop_reason(Some(f));
                self.close_block(&mut out);
            }
            if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
                self.finish(u, &mut out);
            }
        }
        Bytes::from(out)
    }
}

// === OpenAI chat client, Google Gemini backend (generateContent) ===

/// OpenAI chat request → Gemini `generateContent` request
/// (<https://ai.google.dev/api/generate-content>).
pub fn openai_chat_to_gemini(body: &[u8]) -> Result<Value, Unsupported> {
    let req: Value = serde_json::from_slice(body).map_err(|e| unsupported(format!("request body: {e}")))?;
    let obj = req
        .as_object()
        .ok_or_else(|| unsupported("request body must be a JSON object"))?;
    for (k, v) in obj {
        // `user` has no Gemini field and does not change the answer: it is not forwarded
        // (docs/config.md says so). Gemini cannot be told not to call tools in parallel.
        let known = KNOWN.contains(&k.as_str())
            && k != "reasoning_effort"
            && !(k == "parallel_tool_calls" && v == &Value::Bool(false));
        if !known && !v.is_null() {
            return Err(unsupported(format!(
                "`{k}` is not supported when this route is served by a Gemini backend"
            )));
        }
    }
    if obj.get("n").and_then(Value::as_u64).is_some_and(|n| n != 1) {
        return Err(unsupported("`n` other than 1 is not supported by Gemini backends"));
    }
    let mut out = Map::new();
    let mut system = Vec::new();
    let mut contents: Vec<Value> = Vec::new();
    // Gemini answers a function call by name; OpenAI by call id.
    let mut call_names: std::collections::HashMap<String, Value> = Default::default();
    for (i, m) in obj
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let (role, parts) = match m["role"].as_str().unwrap_or("") {
            "system" | "developer" => {
                let text = text_of(&m["content"]).unwrap_or_default();
                if !is_blank(&text) {
                    system.push(json!({"text": text}));
                }
                continue;
            }
            "user" => ("user", gemini_parts(&m["content"], i)?),
            "assistant" => {
                let mut parts = match &m["content"] {
                    Value::Null => Vec::new(),
                    c => gemini_parts(c, i)?,
                };
                for call in m["tool_calls"].as_array().into_iter().flatten() {
                    let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap_or("{}"))
                        .map_err(|_| unsupported(format!("messages[{i}].tool_calls: arguments are not JSON")))?;
                    call_names.insert(
                        call["id"].as_str().unwrap_or("").to_string(),
                        call["function"]["name"].clone(),
                    );
                    parts.push(json!({"functionCall": {"name": call["function"]["name"], "args": args}}));
                }
                ("model", parts)
            }
            "tool" => {
                let id = m["tool_call_id"].as_str().unwrap_or("");
                let name = call_names.get(id).cloned().unwrap_or(json!(id));
                let content = text_of(&m["content"]).unwrap_or_default();
                let response = serde_json::from_str::<Value>(&content)
                    .ok()
                    .filter(Value::is_object)
                    .unwrap_or(json!({"result": content}));
                (
                    "user",
                    vec![json!({"functionResponse": {"name": name, "response": response}})],
                )
            }
            other => return Err(unsupported(format!("messages[{i}]: role {other:?} is not supported"))),
        };
        if parts.is_empty() {
            continue;
        }
        match contents.last_mut() {
            Some(last) if last["role"] == role => {
                if let Some(arr) = last["parts"].as_array_mut() {
                    arr.extend(parts);
                }
            }
            _ => contents.push(json!({"role": role, "parts": parts})),
        }
    }
    let no_turns = contents.is_empty();
    out.insert("contents".into(), Value::Array(contents));
    if !system.is_empty() {
        out.insert("systemInstruction".into(), json!({"parts": system}));
    }
    let mut config = Map::new();
    if let Some(t) = obj.get("temperature").filter(|v| !v.is_null()) {
        config.insert("temperature".into(), t.clone());
    }
    if let Some(t) = obj.get("top_p").filter(|v| !v.is_null()) {
        config.insert("topP".into(), t.clone());
    }
    if let Some(m) = obj
        .get("max_completion_tokens")
        .or(obj.get("max_tokens"))
        .filter(|v| !v.is_null())
    {
        config.insert("maxOutputTokens".into(), m.clone());
    }
    match obj.get("stop") {
        Some(Value::String(s)) => {
            config.insert("stopSequences".into(), json!([s]));
        }
        Some(Value::Array(a)) => {
            config.insert("stopSequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    match obj
        .get("response_format")
        .and_then(|f| f.get("type"))
        .and_then(Value::as_str)
    {
        None | Some("text") => {}
        Some("json_object") => {
            config.insert("responseMimeType".into(), json!("application/json"));
        }
        Some("json_schema") => {
            config.insert("responseMimeType".into(), json!("application/json"));
            if let Some(schema) = obj["response_format"]["json_schema"].get("schema") {
                config.insert("responseJsonSchema".into(), schema.clone());
            }
        }
        Some(other) => {
            return Err(unsupported(format!(
                "`response_format` {other:?} is not supported by Gemini backends"
            )))
        }
    }
    if !config.is_empty() {
        out.insert("generationConfig".into(), Value::Object(config));
    }
    if let Some(tools) = obj.get("tools").and_then(Value::as_array) {
        let mut decls = Vec::new();
        for (i, t) in tools.iter().enumerate() {
            if t["type"] != "function" {
                return Err(unsupported(format!(
                    "tools[{i}]: only function tools are supported by Gemini backends"
                )));
            }
            let f = &t["function"];
            let mut d = json!({"name": f["name"]});
            if let Some(desc) = f.get("description") {
                d["description"] = desc.clone();
            }
            if let Some(p) = f.get("parameters") {
                d["parametersJsonSchema"] = p.clone();
            }
            decls.push(d);
        }
        out.insert("tools".into(), json!([{"functionDeclarations": decls}]));
    }
    match obj.get("tool_choice") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            let mode = match s.as_str() {
                "auto" => "AUTO",
                "none" => "NONE",
                "required" => "ANY",
                other => return Err(unsupported(format!("`tool_choice` {other:?} is not supported"))),
            };
            out.insert("toolConfig".into(), json!({"functionCallingConfig": {"mode": mode}}));
        }
        Some(v) => {
            out.insert(
                "toolConfig".into(),
                json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [v["function"]["name"]]}}),
            );
        }
    }
    if no_turns {
        return Err(unsupported(
            "`messages` must hold at least one non-blank user or assistant message for Gemini backends",
        ));
    }
    Ok(Value::Object(out))
}

fn gemini_parts(content: &Value, i: usize) -> Result<Vec<Value>, Unsupported> {
    match content {
        Value::String(s) if is_blank(s) => Ok(Vec::new()),
        Value::String(s) => Ok(vec![json!({"text": s})]),
        Value::Array(parts) => parts
            .iter()
            .filter(|p| !(p["type"] == "text" && is_blank(p["text"].as_str().unwrap_or(""))))
            .enumerate()
            .map(|(j, p)| match p["type"].as_str() {
                Some("text") => Ok(json!({"text": p["text"]})),
                Some("image_url") => {
                    let url = p["image_url"]["url"].as_str().unwrap_or("");
                    match url.strip_prefix("data:").and_then(|rest| rest.split_once(";base64,")) {
                        Some((mime, data)) => Ok(json!({"inlineData": {"mimeType": mime, "data": data}})),
                        None => Ok(json!({"fileData": {"fileUri": url}})),
                    }
                }
                other => Err(unsupported(format!(
                    "messages[{i}].content[{j}]: part type {other:?} is not supported by Gemini backends"
                ))),
            })
            .collect(),
        Value::Null => Ok(Vec::new()),
        _ => Err(unsupported(format!("messages[{i}].content must be a string or parts"))),
    }
}

fn gemini_finish(reason: Option<&str>, has_calls: bool) -> Value {
    match reason {
        _ if has_calls => json!("tool_calls"),
        Some("STOP") => json!("stop"),
        Some("MAX_TOKENS") => json!("length"),
        Some("SAFETY") | Some("RECITATION") | Some("BLOCKLIST") | Some("PROHIBITED_CONTENT") | Some("SPII") => {
            json!("content_filter")
        }
        Some(_) => json!("stop"),
        None => Value::Null,
    }
}

/// Gemini `usageMetadata` → OpenAI `usage` (thinking tokens count as output, as OpenAI's
/// reasoning tokens do).
fn gemini_message(candidate: &Value) -> (String, Vec<Value>) {
    let mut text = String::new();
    let mut calls = Vec::new();
    for part in candidate["content"]["parts"].as_array().into_iter().flatten() {
        if part.get("thought") == Some(&Value::Bool(true)) {
            continue;
        }
        if let Some(t) = part["text"].as_str() {
            text.push_str(t);
        }
        if let Some(call) = part.get("functionCall") {
            let id = call
                .get("id")
                .and_then(Value::as_str)
                .map(String::from)
                .unwrap_or_else(|| format!("call_{}", calls.len()));
            calls.push(json!({"id": id, "type": "function",
                              "function": {"name": call["name"], "arguments": call["args"].to_string()}}));
        }
    }
    (text, calls)
}

/// Gemini `GenerateContentResponse` → OpenAI chat.completion.
pub fn gemini_to_openai(resp: &Value, model: &str) -> Value {
    let cand = &resp["candidates"][0];
    let (text, calls) = gemini_message(cand);
    let has_calls = !calls.is_empty();
    openai_completion(
        format!("chatcmpl-{}", resp["responseId"].as_str().unwrap_or("gemini")),
        resp.get("modelVersion").cloned().unwrap_or(json!(model)),
        assistant_message(text, calls),
        gemini_finish(cand["finishReason"].as_str(), has_calls),
        openai_usage(usage::gemini_usage(&resp["usageMetadata"])),
    )
}

/// Google error body (`{"error":{"code","message","status"}}`) → OpenAI error body.
pub fn gemini_error_to_openai(body: &[u8]) -> Value {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let typ = match v["error"]["status"].as_str() {
        Some("INVALID_ARGUMENT") | Some("FAILED_PRECONDITION") | Some("NOT_FOUND") => "invalid_request_error",
        Some("UNAUTHENTICATED") => "authentication_error",
        Some("PERMISSION_DENIED") => "permission_error",
        Some("RESOURCE_EXHAUSTED") => "rate_limit_error",
        _ => "api_error",
    };
    openai_error(&v, typ, &v["error"]["status"])
}

/// Gemini `streamGenerateContent?alt=sse` → OpenAI chunks.
pub struct GeminiStreamToOpenAi {
    splitter: sse::Splitter,
    /// `chatcmpl-` + Gemini's `responseId` (as in JSON answers) once the first event names it.
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    started: bool,
    calls: usize,
    usage: Value,
}

impl GeminiStreamToOpenAi {
    pub fn new(model: &str, include_usage: bool) -> Self {
        GeminiStreamToOpenAi {
            splitter: sse::Splitter::new(super::usage::MAX_SSE_EVENT),
            id: "chatcmpl-gemini".into(),
            model: model.to_string(),
            created: now(),
            include_usage,
            started: false,
            calls: 0,
            usage: Value::Null,
        }
    }

    fn chunk(&self, delta: Value, finish: Value) -> String {
        let c = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        format!("data: {c}\n\n")
    }

    /// Feeds upstream bytes; returns the client's bytes. `end` closes the stream.
    pub fn feed(&mut self, bytes: &[u8]) -> Bytes {
        let mut out = String::new();
        for ev in self.splitter.feed(bytes) {
            let Ok(v) = serde_json::from_str::<Value>(&ev.data) else {
                continue;
            };
            if v.get("error").is_some() {
                out += &format!("data: {}\n\n", gemini_error_to_openai(ev.data.as_bytes()));
                continue;
            }
            if !self.started {
                self.started = true;
                if let Some(id) = v["responseId"].as_str() {
                    self.id = format!("chatcmpl-{id}");
                }
                out += &self.chunk(json!({"role": "assistant", "content": ""}), Value::Null);
            }
            let cand = &v["candidates"][0];
            let (text, calls) = gemini_message(cand);
            if !text.is_empty() {
                out += &self.chunk(json!({"content": text}), Value::Null);
            }
            let has_calls = !calls.is_empty() || self.calls > 0;
            for mut call in calls {
                call["index"] = json!(self.calls);
                self.calls += 1;
                out += &self.chunk(json!({"tool_calls": [call]}), Value::Null);
            }
            if let Some(u) = v.get("usageMetadata") {
                self.usage = u.clone();
            }
            if let Some(reason) = cand["finishReason"].as_str() {
                out += &self.chunk(json!({}), gemini_finish(Some(reason), has_calls));
                if self.include_usage {
                    let u = openai_usage(usage::gemini_usage(&self.usage));
                    out += &openai_usage_chunk(&self.id, self.created, &json!(self.model), u);
                }
                out += "data: [DONE]\n\n";
            }
        }
        Bytes::from(out)
    }
}

// === OpenAI chat client, AWS Bedrock backend (Converse) ===

/// OpenAI chat request → Bedrock Converse request (the body of `POST /model/{id}/converse`).
/// Converse is close to Anthropic Messages (alternating turns, tool use and results as
/// content blocks), so the request goes through that translation and is then reshaped; what
/// Converse cannot say is refused by name. The same body serves ConverseStream (the caller
/// picks the path; [`BedrockStreamToOpenAi`] reads the answer).
pub fn openai_chat_to_bedrock(body: &[u8], model: &str) -> Result<Value, Unsupported> {
    let renamed = |e: Unsupported| {
        Unsupported(
            e.0.replace("an Anthropic backend", "a Bedrock backend")
                .replace("Anthropic backends", "Bedrock backends"),
        )
    };
    let a = openai_chat_to_anthropic(body, model).map_err(renamed)?;
    if a.get("thinking").is_some() {
        return Err(unsupported("`reasoning_effort` is not supported by Bedrock backends"));
    }
    let mut out = Map::new();
    let mut messages = Vec::new();
    for (i, m) in a["messages"].as_array().into_iter().flatten().enumerate() {
        let mut content = Vec::new();
        for b in m["content"].as_array().into_iter().flatten() {
            content.push(match b["type"].as_str() {
                Some("text") => json!({"text": b["text"]}),
                Some("image") if b["source"]["type"] == "base64" => {
                    let media = b["source"]["media_type"].as_str().unwrap_or("");
                    let format = media.strip_prefix("image/").unwrap_or("");
                    if !["png", "jpeg", "gif", "webp"].contains(&format) {
                        return Err(unsupported(format!(
                            "messages[{i}]: image type {media:?} is not supported by Bedrock backends"
                        )));
                    }
                    json!({"image": {"format": format, "source": {"bytes": b["source"]["data"]}}})
                }
                Some("image") => {
                    return Err(unsupported(format!(
                        "messages[{i}]: image URLs are not supported by Bedrock backends (send data: URLs)"
                    )))
                }
                Some("tool_use") => {
                    json!({"toolUse": {"toolUseId": b["id"], "name": b["name"], "input": b["input"]}})
                }
                Some("tool_result") => json!({"toolResult": {"toolUseId": b["tool_use_id"],
                                                              "content": [{"text": b["content"]}]}}),
                _ => return Err(unsupported(format!("messages[{i}]: unsupported content for Bedrock"))),
            });
        }
        messages.push(json!({"role": m["role"], "content": content}));
    }
    out.insert("messages".into(), Value::Array(messages));
    if let Some(system) = a.get("system") {
        out.insert("system".into(), json!([{"text": system}]));
    }
    let mut inference = Map::new();
    inference.insert("maxTokens".into(), a["max_tokens"].clone());
    for (from, to) in [
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("stop_sequences", "stopSequences"),
    ] {
        if let Some(v) = a.get(from) {
            inference.insert(to.into(), v.clone());
        }
    }
    out.insert("inferenceConfig".into(), Value::Object(inference));
    if let Some(tools) = a.get("tools").and_then(Value::as_array) {
        let specs: Vec<Value> = tools
            .iter()
            .map(|t| {
                let mut spec = json!({"name": t["name"], "inputSchema": {"json": t["input_schema"]}});
                if let Some(d) = t.get("description") {
                    spec["description"] = d.clone();
                }
                json!({"toolSpec": spec})
            })
            .collect();
        let mut config = json!({"tools": specs});
        match &a.get("tool_choice") {
            None => {}
            Some(c) if c.get("disable_parallel_tool_use").is_some() => {
                return Err(unsupported(
                    "`parallel_tool_calls: false` is not supported by Bedrock backends",
                ))
            }
            Some(c) => match c["type"].as_str() {
                Some("auto") => config["toolChoice"] = json!({"auto": {}}),
                Some("any") => config["toolChoice"] = json!({"any": {}}),
                Some("tool") => config["toolChoice"] = json!({"tool": {"name": c["name"]}}),
                _ => {
                    return Err(unsupported(
                        "`tool_choice` \"none\" is not supported by Bedrock backends",
                    ))
                }
            },
        }
        out.insert("toolConfig".into(), config);
    }
    if let Some(user) = a["metadata"]["user_id"].as_str() {
        out.insert("requestMetadata".into(), json!({"user": user}));
    }
    Ok(Value::Object(out))
}

/// Bedrock Converse response → OpenAI chat.completion. Converse names no model and no id.
pub fn bedrock_to_openai(resp: &Value, model: &str) -> Value {
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in resp["output"]["message"]["content"].as_array().into_iter().flatten() {
        if let Some(t) = block.get("text").and_then(Value::as_str) {
            text.push_str(t);
        } else if let Some(u) = block.get("toolUse") {
            calls.push(json!({
                "id": u["toolUseId"], "type": "function",
                "function": {"name": u["name"], "arguments": u["input"].to_string()}
            }));
        }
    }
    let id = format!("chatcmpl-bedrock-{:016x}", fastrand::u64(..));
    openai_completion(
        id,
        json!(model),
        assistant_message(text, calls),
        bedrock_finish(resp["stopReason"].as_str()),
        openai_usage(usage::bedrock_usage(&resp["usage"])),
    )
}

fn bedrock_finish(stop: Option<&str>) -> Value {
    match stop {
        Some("end_turn") | Some("stop_sequence") => json!("stop"),
        Some("max_tokens") | Some("model_context_window_exceeded") => json!("length"),
        Some("tool_use") => json!("tool_calls"),
        Some("guardrail_intervened") | Some("content_filtered") => json!("content_filter"),
        _ => Value::Null,
    }
}

/// Bedrock error body (`{"message": …}`, the exception name in `x-amzn-ErrorType` or
/// `__type`) → OpenAI error body.
///
/// Bedrock's REST answers name the exception in the `x-amzn-ErrorType` header, not the body
/// (which holds `{"message"}`), so without a `__type` the type follows the HTTP `status`.
pub fn bedrock_error_to_openai(body: &[u8], status: u16) -> Value {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    match v["__type"].as_str() {
        Some(name) => bedrock_error(name, &v),
        None => {
            let mut e = bedrock_error("", &v);
            e["error"]["type"] = json!(openai_error_type(status));
            e
        }
    }
}

/// An exception (by name) with its `{"message": …}` payload → OpenAI error body.
fn bedrock_error(name: &str, v: &Value) -> Value {
    let name = name.to_ascii_lowercase();
    let typ = if name.contains("validation") || name.contains("resourcenotfound") {
        "invalid_request_error"
    } else if name.contains("throttling") || name.contains("servicequota") {
        "rate_limit_error"
    } else if name.contains("accessdenied") {
        "permission_error"
    } else {
        "api_error"
    };
    let message = v["message"]
        .as_str()
        .or(v["Message"].as_str())
        .unwrap_or("upstream error");
    json!({"error": {"message": message, "type": typ, "param": null, "code": null}})
}

// === OpenAI embeddings client, Google Gemini backend (batchEmbedContents) ===

/// OpenAI embeddings request → Gemini `batchEmbedContents` request. Returns it and whether the
/// client asked for base64 vectors (the OpenAI SDK does by default).
pub fn openai_embeddings_to_gemini(body: &[u8], model: &str) -> Result<(Value, bool), Unsupported> {
    let (texts, dimensions, base64) = embedding_inputs(body, "Gemini embeddings")?;
    let requests: Vec<Value> = texts
        .iter()
        .map(|t| {
            let mut r = json!({"model": format!("models/{model}"), "content": {"parts": [{"text": t}]}});
            if let Some(d) = &dimensions {
                r["outputDimensionality"] = d.clone();
            }
            r
        })
        .collect();
    Ok((json!({"requests": requests}), base64))
}

/// What an OpenAI embeddings request asks: its texts, `dimensions`, and whether vectors go
/// back as base64. `target` names the backend in refusals.
fn embedding_inputs(body: &[u8], target: &str) -> Result<(Vec<String>, Option<Value>, bool), Unsupported> {
    let req: Value = serde_json::from_slice(body).map_err(|e| unsupported(format!("request body: {e}")))?;
    for k in req
        .as_object()
        .ok_or_else(|| unsupported("request body must be a JSON object"))?
        .keys()
    {
        if !["model", "input", "encoding_format", "dimensions", "user"].contains(&k.as_str()) {
            return Err(unsupported(format!("`{k}` is not supported by {target}")));
        }
    }
    let texts: Vec<String> = match &req["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) if !a.is_empty() && a.iter().all(Value::is_string) => {
            a.iter().filter_map(Value::as_str).map(str::to_string).collect()
        }
        Value::Array(a) if !a.is_empty() => {
            return Err(unsupported(format!(
                "token-array `input` is not supported by {target} (send text)"
            )))
        }
        _ => return Err(unsupported("`input` must be a string or a non-empty array of strings")),
    };
    let base64 = match req["encoding_format"].as_str() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => return Err(unsupported(format!("`encoding_format` {other:?} is not supported"))),
    };
    let dimensions = req.get("dimensions").filter(|d| !d.is_null()).cloned();
    Ok((texts, dimensions, base64))
}

/// One OpenAI embedding object: float32 values as a JSON list, or their little-endian bytes in
/// base64 (what the OpenAI API sends for `encoding_format: base64`).
fn openai_embedding(index: usize, values: &[Value], base64: bool) -> Value {
    let values: Vec<f32> = values.iter().filter_map(Value::as_f64).map(|f| f as f32).collect();
    let embedding = if base64 {
        use base64::Engine as _;
        let bytes: Vec<u8> = values.iter().flat_map(|f| f.to_le_bytes()).collect();
        json!(base64::engine::general_purpose::STANDARD.encode(bytes))
    } else {
        json!(values)
    };
    json!({"object": "embedding", "index": index, "embedding": embedding})
}

/// Gemini `batchEmbedContents` answer → OpenAI embeddings list. Gemini reports no token counts
/// for embeddings, so the usage is zero (and the record's usage stays unknown).
pub fn gemini_embeddings_to_openai(resp: &Value, model: &str, base64: bool) -> Value {
    let data: Vec<Value> = resp["embeddings"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, e)| openai_embedding(i, e["values"].as_array().map_or(&[], Vec::as_slice), base64))
        .collect();
    json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": 0, "total_tokens": 0}})
}

// === OpenAI embeddings client, Amazon Titan Text Embeddings on Bedrock (InvokeModel) ===

/// OpenAI embeddings request → one Titan `InvokeModel` body per input text (Titan embeds one
/// text per call: `{"inputText", "dimensions"}`). The caller sends them and combines the
/// answers with [`titan_combined`].
pub fn openai_embeddings_to_titan(body: &[u8]) -> Result<(Vec<Value>, bool), Unsupported> {
    let (texts, dimensions, base64) = embedding_inputs(body, "Bedrock Titan embeddings")?;
    let bodies = texts
        .into_iter()
        .map(|t| {
            let mut b = json!({"inputText": t});
            if let Some(d) = &dimensions {
                b["dimensions"] = d.clone();
            }
            b
        })
        .collect();
    Ok((bodies, base64))
}

/// Titan answers, in input order, as one body: `embeddings` plus a Converse-shaped `usage`
/// (the sum of `inputTextTokenCount`), which the usage meter reads like any Bedrock answer.
pub fn titan_combined(answers: &[Value]) -> Value {
    let tokens: u64 = answers.iter().filter_map(|a| a["inputTextTokenCount"].as_u64()).sum();
    json!({"embeddings": answers, "usage": {"inputTokens": tokens, "outputTokens": 0, "totalTokens": tokens}})
}

/// [`titan_combined`] → OpenAI embeddings list with `prompt_tokens`.
pub fn titan_embeddings_to_openai(combined: &Value, model: &str, base64: bool) -> Value {
    let data: Vec<Value> = combined["embeddings"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, e)| openai_embedding(i, e["embedding"].as_array().map_or(&[], Vec::as_slice), base64))
        .collect();
    let tokens = combined["usage"]["inputTokens"].as_u64().unwrap_or(0);
    json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
}

/// Bedrock `ConverseStream` (AWS event-stream messages) → OpenAI `chat.completion.chunk`s.
/// The finish reason arrives in `messageStop`, the usage in the `metadata` message after it.
pub struct BedrockStreamToOpenAi {
    decoder: super::eventstream::Decoder,
    id: String,
    model: Value,
    created: u64,
    include_usage: bool,
    /// Bedrock content block index → OpenAI tool call index.
    tool_index: std::collections::HashMap<u64, usize>,
}

impl BedrockStreamToOpenAi {
    pub fn new(model: &str, include_usage: bool) -> Self {
        BedrockStreamToOpenAi {
            decoder: Default::default(),
            id: format!("chatcmpl-bedrock-{:016x}", fastrand::u64(..)),
            model: json!(model),
            created: now(),
            include_usage,
            tool_index: Default::default(),
        }
    }

    fn chunk(&self, delta: Value, finish: Value) -> String {
        openai_chunk(&self.id, self.created, &self.model, delta, finish)
    }

    /// Feeds upstream bytes; returns the client's bytes.
    pub fn feed(&mut self, bytes: &[u8]) -> Bytes {
        let mut out = String::new();
        let messages = match self.decoder.feed(bytes) {
            Ok(m) => m,
            Err(e) => {
                let v = json!({"message": format!("broken Bedrock stream: {e}")});
                return Bytes::from(format!("data: {}\n\n", bedrock_error("internal", &v)));
            }
        };
        for m in messages {
            let v: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
            if m.message_type == "exception" {
                out += &format!("data: {}\n\n", bedrock_error(&m.event_type, &v));
                continue;
            }
            match m.event_type.as_str() {
                "messageStart" => out += &self.chunk(json!({"role": "assistant", "content": ""}), Value::Null),
                "contentBlockStart" => {
                    let Some(tool) = v["start"].get("toolUse") else {
                        continue;
                    };
                    let n = self.tool_index.len();
                    self.tool_index.insert(v["contentBlockIndex"].as_u64().unwrap_or(0), n);
                    out += &self.chunk(
                        json!({"tool_calls": [{"index": n, "id": tool["toolUseId"], "type": "function",
                                               "function": {"name": tool["name"], "arguments": ""}}]}),
                        Value::Null,
                    );
                }
                "contentBlockDelta" => {
                    let d = &v["delta"];
                    if let Some(text) = d.get("text") {
                        out += &self.chunk(json!({"content": text}), Value::Null);
                    } else if let Some(args) = d["toolUse"].get("input") {
                        let block = v["contentBlockIndex"].as_u64().unwrap_or(0);
                        let n = self.tool_index.get(&block).copied().unwrap_or(0);
                        out += &self.chunk(
                            json!({"tool_calls": [{"index": n, "function": {"arguments": args}}]}),
                            Value::Null,
                        );
                    }
                }
                "messageStop" => out += &self.chunk(json!({}), bedrock_finish(v["stopReason"].as_str())),
                "metadata" => {
                    if self.include_usage {
                        let u = openai_usage(usage::bedrock_usage(&v["usage"]));
                        out += &openai_usage_chunk(&self.id, self.created, &self.model, u);
                    }
                    out += "data: [DONE]\n\n";
                }
                _ => {}
            }
        }
        Bytes::from(out)
    }
}

#[cfg(test)]
#[path = "translate_tests.rs"]
mod tests;
