//! Anthropic Messages client, OpenAI-compatible backend (OpenAI, vLLM, Ollama…): the request
//! (<https://platform.openai.com/docs/api-reference/chat>), the answer, the stream and errors.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::*;
use crate::llm::sse;

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
    if let Some(system) = system_message(obj)? {
        messages.push(system);
    }
    for (i, m) in obj
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        push_openai_messages(m, i, &mut messages)?;
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    out.insert("messages".into(), Value::Array(messages));
    insert_sampling_options(obj, &mut out);
    if let Some(tools) = openai_tools(obj)? {
        out.insert("tools".into(), tools);
    }
    if let Some(effort) = reasoning_effort(obj)? {
        out.insert("reasoning_effort".into(), json!(effort));
    }
    insert_tool_choice(obj, &mut out)?;
    Ok(Value::Object(out))
}

/// Anthropic `system` (a string or text blocks) → the leading OpenAI system message.
fn system_message(obj: &Map<String, Value>) -> Result<Option<Value>, Unsupported> {
    match obj.get("system") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(json!({"role": "system", "content": s}))),
        Some(Value::Array(blocks)) => {
            let text: Vec<&str> = blocks.iter().filter_map(|b| b["text"].as_str()).collect();
            Ok(Some(json!({"role": "system", "content": text.join("\n\n")})))
        }
        Some(_) => Err(unsupported("`system` must be a string or text blocks")),
    }
}

/// One Anthropic message → OpenAI messages: its tool results first, as `tool` messages, then
/// the user or assistant message with the rest of its blocks.
fn push_openai_messages(m: &Value, i: usize, messages: &mut Vec<Value>) -> Result<(), Unsupported> {
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
            Some("image") => parts.push(image_part(b, i, j)?),
            Some("tool_use") => calls.push(json!({
                "id": b["id"], "type": "function",
                "function": {"name": b["name"], "arguments": b["input"].to_string()}
            })),
            Some("tool_result") => messages.push(tool_message(b, i, j)?),
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
    Ok(())
}

/// An Anthropic image block → an OpenAI `image_url` part (base64 sources become data URLs).
fn image_part(b: &Value, i: usize, j: usize) -> Result<Value, Unsupported> {
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
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

/// An Anthropic `tool_result` block → an OpenAI `tool` message (text only).
fn tool_message(b: &Value, i: usize, j: usize) -> Result<Value, Unsupported> {
    let content = match &b["content"] {
        Value::String(s) => s.clone(),
        Value::Array(a) if a.iter().all(|c| c["type"] == "text") => {
            a.iter().filter_map(|c| c["text"].as_str()).collect::<Vec<_>>().join("")
        }
        Value::Array(_) => {
            return Err(unsupported(format!(
            "messages[{i}].content[{j}]: a tool_result holding images is not supported by OpenAI-compatible backends"
        )))
        }
        _ => String::new(),
    };
    // OpenAI tool messages have no error flag: `is_error` is said in the text.
    let content = if b["is_error"] == Value::Bool(true) {
        format!("Error: {content}")
    } else {
        content
    };
    Ok(json!({"role": "tool", "tool_call_id": b["tool_use_id"], "content": content}))
}

/// Copies the length, sampling, stop, stream and user options into their OpenAI members.
fn insert_sampling_options(obj: &Map<String, Value>, out: &mut Map<String, Value>) {
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
}

/// Anthropic custom tools → OpenAI function tools (None when the request has no `tools`
/// list); tools without an input schema (server tools) are refused.
fn openai_tools(obj: &Map<String, Value>) -> Result<Option<Value>, Unsupported> {
    let Some(tools) = obj.get("tools").and_then(Value::as_array) else {
        return Ok(None);
    };
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
    Ok(Some(Value::Array(list)))
}

/// Anthropic `thinking` → OpenAI `reasoning_effort` (None when thinking is off or absent).
fn reasoning_effort(obj: &Map<String, Value>) -> Result<Option<&'static str>, Unsupported> {
    // Thinking budget → reasoning effort: the inverse of the budgets the other direction sends.
    match obj.get("thinking") {
        None | Some(Value::Null) => Ok(None),
        Some(t) => match t["type"].as_str() {
            Some("disabled") => Ok(None),
            Some("enabled") => Ok(Some(match t["budget_tokens"].as_u64().unwrap_or(0) {
                0..=2048 => "low",
                2049..=8192 => "medium",
                _ => "high",
            })),
            other => Err(unsupported(format!("`thinking` type {other:?} is not supported"))),
        },
    }
}

/// Anthropic `tool_choice` → OpenAI `tool_choice`, and `parallel_tool_calls` false when the
/// choice disables parallel tool use.
fn insert_tool_choice(obj: &Map<String, Value>, out: &mut Map<String, Value>) -> Result<(), Unsupported> {
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
    Ok(())
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
    /// The latest usage seen (servers with continuous usage send it in every chunk).
    usage: Value,
    finished: bool,
}

impl Default for OpenAiStreamToAnthropic {
    fn default() -> Self {
        OpenAiStreamToAnthropic {
            splitter: sse::Splitter::new(usage::MAX_SSE_EVENT),
            started: false,
            open: None,
            next_index: 0,
            tools: Default::default(),
            stop: Value::Null,
            usage: Value::Null,
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

    /// A text delta as a `text_delta` event, opening a text block first unless one is open.
    fn text_delta(&mut self, text: &str, out: &mut String) {
        if !matches!(self.open, Some((_, true))) {
            self.close_block(out);
            let index = self.next_index;
            self.next_index += 1;
            self.open = Some((index, true));
            *out += &event(
                "content_block_start",
                json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}),
            );
        }
        let index = self.open.map(|o| o.0).unwrap_or(0);
        *out += &event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}),
        );
    }

    /// A tool call delta as an `input_json_delta` event, opening the call's `tool_use` block
    /// the first time its index is seen.
    fn tool_call_delta(&mut self, call: &Value, out: &mut String) {
        let k = call["index"].as_u64().unwrap_or(0);
        let index = match self.tools.get(&k) {
            Some(i) => *i,
            None => {
                self.close_block(out);
                let index = self.next_index;
                self.next_index += 1;
                self.tools.insert(k, index);
                self.open = Some((index, false));
                *out += &event(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": index,
                           "content_block": {"type": "tool_use", "id": call["id"], "name": call["function"]["name"], "input": {}}}),
                );
                index
            }
        };
        if let Some(args) = call["function"]["arguments"].as_str().filter(|a| !a.is_empty()) {
            *out += &event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": args}}),
            );
        }
    }

    /// Feeds upstream bytes; returns the client's bytes.
    pub fn feed(&mut self, bytes: &[u8]) -> Bytes {
        let mut out = String::new();
        for ev in self.splitter.feed(bytes) {
            if self.finished {
                // After message_stop nothing more may reach an Anthropic client (a server that
                // sends usage in every chunk ends the message at the first one with a finish).
                continue;
            }
            if ev.data == "[DONE]" {
                let usage = std::mem::take(&mut self.usage);
                self.finish(&usage, &mut out);
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
                self.text_delta(text, &mut out);
            }
            for call in delta["tool_calls"].as_array().into_iter().flatten() {
                self.tool_call_delta(call, &mut out);
            }
            if let Some(f) = choice["finish_reason"].as_str() {
                self.stop = stop_reason(Some(f));
                self.close_block(&mut out);
            }
            if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
                // OpenAI sends usage once, in a last chunk without choices; vLLM's continuous
                // usage puts it in every chunk, so the message ends only at that last chunk or
                // at [DONE].
                if v["choices"].as_array().is_some_and(Vec::is_empty) {
                    self.finish(u, &mut out);
                } else {
                    self.usage = u.clone();
                }
            }
        }
        Bytes::from(out)
    }
}

/// Anthropic Messages served by any OpenAI-compatible backend.
pub struct AnthropicToOpenAiChat;

impl Direction for AnthropicToOpenAiChat {
    fn name(&self) -> &'static str {
        "anthropic_messages->openai_chat"
    }

    fn applies(&self, client: ApiSchema, op: Operation, backend: ApiSchema) -> bool {
        (client, op, backend) == (ApiSchema::Anthropic, Operation::Messages, ApiSchema::Openai)
    }

    fn request(&self, req: &ClientRequest<'_>, _: &BackendSpec<'_>) -> Result<Upstream, Unsupported> {
        let (bytes, parsed) = req.json_body()?;
        let translated = anthropic_to_openai_chat(bytes, req.model())?;
        Ok(Upstream {
            // The translated stream asks for usage (it becomes `message_delta.usage`).
            usage_requested_by_gateway: parsed.stream,
            ..Upstream::translated(
                "/v1/chat/completions".into(),
                json_body(&translated),
                (ApiSchema::Openai, Operation::ChatCompletions),
                Some(Box::new(OpenAiStreamToAnthropic::default())),
                json_translator(openai_chat_to_anthropic_message, openai_error_to_anthropic),
            )
        })
    }
}

impl StreamTranslator for OpenAiStreamToAnthropic {
    fn feed(&mut self, bytes: &[u8]) -> Bytes {
        OpenAiStreamToAnthropic::feed(self, bytes)
    }
}
