//! OpenAI chat completions client, Anthropic Messages backend: the request
//! (<https://docs.anthropic.com/en/api/messages>), the answer, the SSE stream
//! (<https://docs.anthropic.com/en/docs/build-with-claude/streaming>) and errors.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::*;
use crate::llm::{sse, usage};

/// The tool a JSON-mode request is answered through (named so no client tool can clash).
pub const JSON_TOOL: &str = "tollgate_json_response";

/// OpenAI chat request → Anthropic Messages request. `model` is the model the backend serves.
pub fn openai_chat_to_anthropic(body: &[u8], model: &str) -> Result<Value, Unsupported> {
    openai_request_to_anthropic(&parse_request(body)?, model)
}

/// [`openai_chat_to_anthropic`] on a parsed request (Bedrock starts from it too).
pub(super) fn openai_request_to_anthropic(obj: &Map<String, Value>, model: &str) -> Result<Value, Unsupported> {
    refuse_unsupported_members(obj)?;
    let json_schema = json_mode_schema(obj)?;

    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    let max_tokens = obj
        .get("max_completion_tokens")
        .or(obj.get("max_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    out.insert("max_tokens".into(), json!(max_tokens));

    let (system, converted) = anthropic_turns(obj)?;
    if !system.is_empty() {
        out.insert("system".into(), json!(system.join("\n\n")));
    }
    let no_turns = converted.is_empty();
    out.insert("messages".into(), Value::Array(converted));

    insert_sampling_options(obj, &mut out)?;
    if let Some(tools) = anthropic_tools(obj)? {
        out.insert("tools".into(), tools);
    }
    if let Some(choice) = anthropic_tool_choice(obj)? {
        out.insert("tool_choice".into(), choice);
    }
    let continues_tool_call = last_assistant_turn_calls_tool(&out["messages"]);
    if let Some(schema) = json_schema {
        out.insert(
            "tools".into(),
            json!([{"name": JSON_TOOL, "description": "Give the final answer as JSON that matches this input schema.", "input_schema": schema}]),
        );
        out.insert("tool_choice".into(), json!({"type": "tool", "name": JSON_TOOL}));
    }
    if let Some(effort) = obj.get("reasoning_effort").and_then(Value::as_str) {
        insert_thinking(obj, &mut out, effort, max_tokens, continues_tool_call)?;
    }
    if no_turns {
        return Err(unsupported(
            "`messages` must hold at least one non-blank user or assistant message for Anthropic backends",
        ));
    }
    Ok(Value::Object(out))
}

/// Refuses request members Anthropic has no meaning for (unless they hold a harmless
/// default), and `n` other than 1, before anything is translated.
fn refuse_unsupported_members(obj: &Map<String, Value>) -> Result<(), Unsupported> {
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
    Ok(())
}

/// The schema of the forced JSON tool when `response_format` asks for JSON (None for text),
/// refusing what cannot go with it.
fn json_mode_schema(obj: &Map<String, Value>) -> Result<Option<Value>, Unsupported> {
    // JSON mode and structured outputs go through a tool Claude is made to call with the
    // answer as its input (Anthropic's documented way to get JSON); the answer comes back as the
    // message's text. That leaves no room for the client's own tools or thinking.
    match obj
        .get("response_format")
        .and_then(|f| f.get("type"))
        .and_then(Value::as_str)
    {
        None | Some("text") => Ok(None),
        Some(kind @ ("json_object" | "json_schema")) => {
            for (k, why) in [
                ("tools", "tools"),
                ("tool_choice", "`tool_choice`"),
                ("reasoning_effort", "`reasoning_effort`"),
            ] {
                if obj.get(k).is_some_and(|v| !v.is_null()) {
                    return Err(unsupported(format!(
                        "`response_format` {kind:?} cannot be combined with {why} on Anthropic backends (it is answered through a forced tool)"
                    )));
                }
            }
            let schema = match kind {
                "json_schema" => obj["response_format"]["json_schema"]["schema"].clone(),
                _ => json!({"type": "object"}),
            };
            if schema["type"] != "object" {
                return Err(unsupported(
                    "`response_format` schemas must describe an object for Anthropic backends",
                ));
            }
            Ok(Some(schema))
        }
        Some(other) => Err(unsupported(format!(
            "`response_format` {other:?} is not supported by Anthropic backends"
        ))),
    }
}

/// OpenAI `messages` → the Anthropic system texts and alternating turns (Anthropic keeps the
/// system prompt out of the turns).
fn anthropic_turns(obj: &Map<String, Value>) -> Result<(Vec<String>, Vec<Value>), Unsupported> {
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
            "assistant" => ("assistant", assistant_blocks(m, i)?),
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
    Ok((system, converted))
}

/// An assistant message's content and tool calls as Anthropic blocks (calls become `tool_use`).
fn assistant_blocks(m: &Value, i: usize) -> Result<Vec<Value>, Unsupported> {
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
    Ok(blocks)
}

/// Copies temperature, top_p, stream, stop and user into their Anthropic members, refusing a
/// temperature outside Anthropic's range.
fn insert_sampling_options(obj: &Map<String, Value>, out: &mut Map<String, Value>) -> Result<(), Unsupported> {
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
    Ok(())
}

/// OpenAI function tools → Anthropic tools (None when the request has no `tools` list);
/// other tool types are refused.
fn anthropic_tools(obj: &Map<String, Value>) -> Result<Option<Value>, Unsupported> {
    let Some(tools) = obj.get("tools").and_then(Value::as_array) else {
        return Ok(None);
    };
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
    Ok(Some(Value::Array(list)))
}

/// OpenAI `tool_choice` and `parallel_tool_calls` → Anthropic `tool_choice`, which carries
/// both (None when neither asks for anything).
fn anthropic_tool_choice(obj: &Map<String, Value>) -> Result<Option<Value>, Unsupported> {
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
    Ok(match (choice, disable_parallel) {
        // `none` calls no tool, so there is nothing to keep from running in parallel (and
        // Anthropic's `none` choice takes no other member).
        (Some(mut c), true) => {
            if c["type"] != "none" {
                c["disable_parallel_tool_use"] = json!(true);
            }
            Some(c)
        }
        (Some(c), false) => Some(c),
        (None, true) => Some(json!({"type": "auto", "disable_parallel_tool_use": true})),
        (None, false) => None,
    })
}

/// Whether the last assistant turn called a tool, so the next turn continues that call.
fn last_assistant_turn_calls_tool(messages: &Value) -> bool {
    messages
        .as_array()
        .and_then(|m| m.iter().rev().find(|t| t["role"] == "assistant"))
        .is_some_and(|t| {
            t["content"]
                .as_array()
                .is_some_and(|b| b.iter().any(|b| b["type"] == "tool_use"))
        })
}

/// `reasoning_effort` → Anthropic thinking with its budget (raising `max_tokens` above it),
/// refusing the sampling options and tool choices thinking cannot take.
fn insert_thinking(
    obj: &Map<String, Value>,
    out: &mut Map<String, Value>,
    effort: &str,
    max_tokens: u64,
    continues_tool_call: bool,
) -> Result<(), Unsupported> {
    let budget = thinking_budget(effort)?;
    // While thinking, Anthropic takes only temperature 1 and top_p from 0.95.
    if let Some(t) = obj.get("temperature").and_then(Value::as_f64).filter(|t| *t != 1.0) {
        return Err(unsupported(format!(
            "`temperature` {t} cannot be combined with `reasoning_effort` on Anthropic backends (thinking takes only 1)"
        )));
    }
    if let Some(p) = obj.get("top_p").and_then(Value::as_f64).filter(|p| *p < 0.95) {
        return Err(unsupported(format!(
            "`top_p` {p} cannot be combined with `reasoning_effort` on Anthropic backends (thinking takes 0.95 to 1)"
        )));
    }
    if out
        .get("tool_choice")
        .is_some_and(|c| c["type"] == "any" || c["type"] == "tool")
    {
        return Err(unsupported(
            "a `tool_choice` that forces a tool cannot be combined with `reasoning_effort` on Anthropic backends",
        ));
    }
    // Thinking continues a tool call only with the thinking block of the turn that made the
    // call, which an OpenAI client cannot send back (it never saw it): such a turn goes
    // without thinking, as Anthropic requires, rather than failing.
    if !continues_tool_call {
        out.insert("thinking".into(), json!({"type": "enabled", "budget_tokens": budget}));
        if max_tokens <= budget {
            out.insert("max_tokens".into(), json!(budget + max_tokens));
        }
    }
    Ok(())
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

/// Anthropic message → OpenAI chat.completion.
pub fn anthropic_message_to_openai(msg: &Value) -> Value {
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in msg["content"].as_array().into_iter().flatten() {
        match block["type"].as_str() {
            Some("text") => text.push_str(block["text"].as_str().unwrap_or("")),
            // The structured answer (JSON mode): its input is the message.
            Some("tool_use") if block["name"] == JSON_TOOL => text = block["input"].to_string(),
            Some("tool_use") => calls.push(json!({
                "id": block["id"], "type": "function",
                "function": {"name": block["name"], "arguments": block["input"].to_string()}
            })),
            _ => {}
        }
    }
    let finish = match msg["stop_reason"].as_str() {
        Some("tool_use") if calls.is_empty() => json!("stop"),
        other => finish_reason(other),
    };
    openai_completion(
        format!("chatcmpl-{}", msg["id"].as_str().unwrap_or("")),
        msg["model"].clone(),
        assistant_message(text, calls),
        finish,
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
    pub(super) tool_index: std::collections::HashMap<u64, usize>,
    /// The content block of the structured answer (JSON mode), streamed as text.
    json_block: Option<u64>,
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
            splitter: sse::Splitter::new(usage::MAX_SSE_EVENT),
            id: String::new(),
            model: Value::Null,
            created: now(),
            include_usage,
            usage: json!({}),
            tool_index: Default::default(),
            json_block: None,
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
    pub(super) fn fast_delta(&self, data: &str, out: &mut String) -> bool {
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
            (Some("input_json_delta"), _, Some(args)) if self.json_block == Some(e.index) => {
                let delta = format!(r#"{{"content":{}}}"#, Value::String(args.into_owned()));
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

    pub(super) fn chunk(&self, delta: Value, finish: Value) -> String {
        openai_chunk(&self.id, self.created, &self.model, delta, finish)
    }

    /// The chunk that ends the choice on `message_delta`, keeping its output token count for
    /// the usage chunk sent at `message_stop`.
    fn message_delta(&mut self, v: &Value) -> String {
        if let Some(o) = v["usage"]["output_tokens"].as_u64() {
            // (The usage kept from message_start may be anything the upstream sent.)
            if let Some(u) = self.usage.as_object_mut() {
                u.insert("output_tokens".into(), json!(o));
            } else {
                self.usage = json!({"output_tokens": o});
            }
        }
        let finish = match v["delta"]["stop_reason"].as_str() {
            Some("tool_use") if self.tool_index.is_empty() => json!("stop"),
            other => finish_reason(other),
        };
        self.chunk(json!({}), finish)
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
                Some("content_block_start")
                    if v["content_block"]["type"] == "tool_use" && v["content_block"]["name"] == JSON_TOOL =>
                {
                    self.json_block = v["index"].as_u64();
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
                    Some("input_json_delta") if self.json_block == v["index"].as_u64() => {
                        out += &self.chunk(json!({"content": v["delta"]["partial_json"]}), Value::Null)
                    }
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
                Some("message_delta") => out += &self.message_delta(&v),
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

/// OpenAI chat completions served by Anthropic Messages.
pub struct OpenAiChatToAnthropic;

impl Direction for OpenAiChatToAnthropic {
    fn name(&self) -> &'static str {
        "openai_chat->anthropic_messages"
    }

    fn applies(&self, client: ApiSchema, op: Operation, backend: ApiSchema) -> bool {
        (client, op, backend) == (ApiSchema::Openai, Operation::ChatCompletions, ApiSchema::Anthropic)
    }

    fn request(&self, req: &ClientRequest<'_>, _: &BackendSpec<'_>) -> Result<Upstream, Unsupported> {
        let (bytes, _) = req.json_body()?;
        let translated = openai_chat_to_anthropic(bytes, req.model())?;
        Ok(Upstream {
            default_headers: &[("anthropic-version", ANTHROPIC_VERSION)],
            ..Upstream::translated(
                "/v1/messages".into(),
                json_body(&translated),
                (ApiSchema::Anthropic, Operation::Messages),
                Some(Box::new(AnthropicStreamToOpenAi::new(req.include_usage()))),
                json_translator(anthropic_message_to_openai, |b, _| anthropic_error_to_openai(b)),
            )
        })
    }
}

impl StreamTranslator for AnthropicStreamToOpenAi {
    fn feed(&mut self, bytes: &[u8]) -> Bytes {
        AnthropicStreamToOpenAi::feed(self, bytes)
    }
}
