//! OpenAI Responses API clients (`POST /v1/responses`,
//! <https://platform.openai.com/docs/api-reference/responses>) served by Anthropic Messages,
//! Bedrock Converse, the Gemini API and Vertex AI, through OpenAI chat: the request becomes an
//! OpenAI chat request (asking for stream usage), which the chat → backend translators carry
//! on; answers come back to chat first, then become a `response` object, and chat chunks
//! become the Responses streaming events (`response.created` … `response.completed`).
//!
//! Translated backends keep no state: `previous_response_id`, `conversation` and
//! `background` are refused by name, and nothing is stored whatever `store` says (the
//! answer's `store` is `false`). Built-in tools (web search, file search, computer use…) are
//! refused by name; so is any member a chat request cannot carry. Reasoning items in `input`
//! (OpenAI's own thinking, opaque to other providers) are left out of the conversation.
//! The backend's reasoning comes back as a `reasoning` item (`reasoning_text` content):
//! Anthropic's thinking blocks, Gemini's thought summaries (asked for with
//! `includeThoughts` when the client set `reasoning.effort`) and Bedrock's `reasoningContent`
//! text. The chat step has no field for it, so it travels as `reasoning_content` (the name
//! OpenAI-compatible servers use) between the two steps of this direction only.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::{openai_to_bedrock::converse_path, openai_to_gemini::gemini_path, *};
use crate::llm::{sse, usage};

/// Request members with a chat meaning, or none needed (`store`, `metadata`: echoed, not
/// sent); [`check_members`] also takes `include`, `truncation`, `background`,
/// `stream_options` and `service_tier` when they ask for nothing a translation would lose.
const KNOWN_RESPONSES: [&str; 16] = [
    "model",
    "input",
    "instructions",
    "stream",
    "max_output_tokens",
    "temperature",
    "top_p",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "text",
    "reasoning",
    "metadata",
    "user",
    "store",
    "truncation",
];

/// OpenAI Responses request → OpenAI chat request (with stream usage asked for, which the
/// final `response.completed` event reports).
pub fn responses_to_openai_chat(body: &[u8], model: &str) -> Result<Value, Unsupported> {
    let obj = parse_request(body)?;
    check_members(&obj)?;
    let mut messages = Vec::new();
    if let Some(i) = obj.get("instructions").filter(|v| !v.is_null()) {
        let text = i
            .as_str()
            .ok_or_else(|| unsupported("`instructions` must be a string"))?;
        messages.push(json!({"role": "system", "content": text}));
    }
    input_messages(obj.get("input").unwrap_or(&Value::Null), &mut messages)?;
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    out.insert("messages".into(), Value::Array(messages));
    for (from, to) in [
        ("max_output_tokens", "max_completion_tokens"),
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("parallel_tool_calls", "parallel_tool_calls"),
        ("user", "user"),
    ] {
        if let Some(v) = obj.get(from).filter(|v| !v.is_null()) {
            out.insert(to.into(), v.clone());
        }
    }
    if obj.get("stream") == Some(&Value::Bool(true)) {
        out.insert("stream".into(), json!(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if let Some(tools) = chat_tools(&obj)? {
        out.insert("tools".into(), tools);
    }
    if let Some(choice) = chat_tool_choice(&obj)? {
        out.insert("tool_choice".into(), choice);
    }
    if let Some(format) = chat_response_format(&obj)? {
        out.insert("response_format".into(), format);
    }
    if let Some(effort) = reasoning_effort(&obj)? {
        out.insert("reasoning_effort".into(), json!(effort));
    }
    Ok(Value::Object(out))
}

/// Refuses members a stateless, translated backend cannot honour, naming each.
fn check_members(obj: &Map<String, Value>) -> Result<(), Unsupported> {
    for (k, v) in obj {
        if v.is_null() {
            continue;
        }
        match k.as_str() {
            "previous_response_id" | "conversation" => {
                return Err(unsupported(format!(
                    "`{k}` is not supported when this route is served by a translated backend: it keeps no \
                     conversation state (send the whole conversation in `input`)"
                )))
            }
            "background" if v == &Value::Bool(false) => {}
            "truncation" if v != "disabled" => {
                return Err(unsupported(format!(
                    "`truncation` {v} is not supported by translated backends"
                )))
            }
            "include" if v.as_array().is_some_and(|a| !a.is_empty()) => {
                return Err(unsupported(format!(
                    "`include` {v} is not supported by translated backends"
                )))
            }
            "include" => {}
            // Obfuscation pads OpenAI's own stream events; translated streams have none to pad.
            "stream_options"
                if v.as_object()
                    .is_some_and(|o| o.keys().all(|k| k == "include_obfuscation")) => {}
            "service_tier" if v == "auto" || v == "default" => {}
            k if KNOWN_RESPONSES.contains(&k) => {}
            _ => {
                return Err(unsupported(format!(
                    "`{k}` is not supported when this route is served by a translated backend"
                )))
            }
        }
    }
    Ok(())
}

/// `input` (a string, or a list of items) → chat messages, appended to `out`.
fn input_messages(input: &Value, out: &mut Vec<Value>) -> Result<(), Unsupported> {
    let items = match input {
        Value::String(s) => {
            out.push(json!({"role": "user", "content": s}));
            return Ok(());
        }
        Value::Array(items) => items,
        _ => return Err(unsupported("`input` must be a string or a list of input items")),
    };
    for (i, item) in items.iter().enumerate() {
        match item["type"].as_str().unwrap_or("message") {
            "message" => out.push(message_item(item, i)?),
            "function_call" => push_call(item, i, out)?,
            "function_call_output" => out.push(call_output(item, i)?),
            // OpenAI's own (often encrypted) thinking: no other provider can take it back.
            "reasoning" => {}
            other => {
                return Err(unsupported(format!(
                    "input[{i}]: items of type {other:?} are not supported by translated backends"
                )))
            }
        }
    }
    Ok(())
}

/// A `message` item (easy or full form) → a chat message.
fn message_item(item: &Value, i: usize) -> Result<Value, Unsupported> {
    let role = match item["role"].as_str() {
        Some(r @ ("user" | "assistant" | "system")) => r,
        Some("developer") => "system",
        other => return Err(unsupported(format!("input[{i}]: role {other:?} is not supported"))),
    };
    let content = match &item["content"] {
        Value::String(s) => json!(s),
        Value::Array(parts) => {
            let parts = parts
                .iter()
                .enumerate()
                .map(|(j, p)| content_part(p, i, j))
                .collect::<Result<Vec<_>, _>>()?;
            if role == "user" {
                Value::Array(parts)
            } else {
                // System and assistant turns are text.
                json!(text_of(&Value::Array(parts)).unwrap_or_default())
            }
        }
        _ => {
            return Err(unsupported(format!(
                "input[{i}].content must be a string or a list of parts"
            )))
        }
    };
    Ok(json!({"role": role, "content": content}))
}

/// A content part of a message item → a chat content part.
fn content_part(p: &Value, i: usize, j: usize) -> Result<Value, Unsupported> {
    match p["type"].as_str() {
        Some("input_text" | "output_text") => Ok(json!({"type": "text", "text": p["text"]})),
        Some("refusal") => Ok(json!({"type": "text", "text": p["refusal"]})),
        Some("input_image") => match p["image_url"].as_str() {
            Some(url) => {
                let mut image = json!({"url": url});
                if let Some(d) = p["detail"].as_str().filter(|d| *d != "auto") {
                    image["detail"] = json!(d);
                }
                Ok(json!({"type": "image_url", "image_url": image}))
            }
            None => Err(unsupported(format!(
                "input[{i}].content[{j}]: images by `file_id` are not supported by translated backends (send `image_url`)"
            ))),
        },
        other => Err(unsupported(format!(
            "input[{i}].content[{j}]: parts of type {other:?} are not supported by translated backends"
        ))),
    }
}

/// A `function_call` item → a tool call of the assistant turn before it (one turn holds the
/// calls made together).
fn push_call(item: &Value, i: usize, out: &mut Vec<Value>) -> Result<(), Unsupported> {
    let (Some(id), Some(name)) = (item["call_id"].as_str(), item["name"].as_str()) else {
        return Err(unsupported(format!(
            "input[{i}]: a function_call needs `call_id` and `name`"
        )));
    };
    let call = json!({"id": id, "type": "function",
                      "function": {"name": name, "arguments": item["arguments"].as_str().unwrap_or("{}")}});
    match out.last_mut() {
        Some(last) if last["role"] == "assistant" => match last["tool_calls"].as_array_mut() {
            Some(calls) => calls.push(call),
            None => last["tool_calls"] = json!([call]),
        },
        _ => out.push(json!({"role": "assistant", "content": null, "tool_calls": [call]})),
    }
    Ok(())
}

/// A `function_call_output` item → a chat tool message.
fn call_output(item: &Value, i: usize) -> Result<Value, Unsupported> {
    let id = item["call_id"]
        .as_str()
        .ok_or_else(|| unsupported(format!("input[{i}]: a function_call_output needs `call_id`")))?;
    let content = match &item["output"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) if parts.iter().all(|p| p["type"] == "input_text") => {
            parts.iter().map(|p| p["text"].as_str().unwrap_or("")).collect()
        }
        _ => {
            return Err(unsupported(format!(
                "input[{i}].output: only text function outputs are supported by translated backends"
            )))
        }
    };
    Ok(json!({"role": "tool", "tool_call_id": id, "content": content}))
}

/// Function tools (the flat Responses shape) → chat tools; built-in tools are refused.
fn chat_tools(obj: &Map<String, Value>) -> Result<Option<Value>, Unsupported> {
    let Some(tools) = obj.get("tools").and_then(Value::as_array) else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for (i, t) in tools.iter().enumerate() {
        if t["type"] != "function" {
            return Err(unsupported(format!(
                "tools[{i}]: built-in tool {} is not supported by translated backends (function tools only)",
                t["type"]
            )));
        }
        let mut f =
            json!({"name": t["name"], "parameters": t.get("parameters").cloned().unwrap_or(json!({"type": "object"}))});
        for k in ["description", "strict"] {
            if let Some(v) = t.get(k).filter(|v| !v.is_null()) {
                f[k] = v.clone();
            }
        }
        out.push(json!({"type": "function", "function": f}));
    }
    Ok((!out.is_empty()).then_some(Value::Array(out)))
}

/// `tool_choice` → its chat form.
fn chat_tool_choice(obj: &Map<String, Value>) -> Result<Option<Value>, Unsupported> {
    match obj.get("tool_choice") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if ["auto", "none", "required"].contains(&s.as_str()) => Ok(Some(json!(s))),
        Some(c) if c["type"] == "function" && c["name"].is_string() => {
            Ok(Some(json!({"type": "function", "function": {"name": c["name"]}})))
        }
        Some(c) => Err(unsupported(format!(
            "`tool_choice` {c} is not supported by translated backends"
        ))),
    }
}

/// `text.format` → chat `response_format` (None for plain text); `text.verbosity` is refused.
fn chat_response_format(obj: &Map<String, Value>) -> Result<Option<Value>, Unsupported> {
    let Some(text) = obj.get("text").filter(|t| !t.is_null()) else {
        return Ok(None);
    };
    if text.get("verbosity").is_some_and(|v| !v.is_null()) {
        return Err(unsupported("`text.verbosity` is not supported by translated backends"));
    }
    let f = &text["format"];
    match f["type"].as_str() {
        None | Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let mut schema = json!({"schema": f["schema"]});
            for k in ["name", "description", "strict"] {
                if let Some(v) = f.get(k).filter(|v| !v.is_null()) {
                    schema[k] = v.clone();
                }
            }
            Ok(Some(json!({"type": "json_schema", "json_schema": schema})))
        }
        Some(other) => Err(unsupported(format!("`text.format` type {other:?} is not supported"))),
    }
}

/// `reasoning.effort` → chat `reasoning_effort`; reasoning summaries cannot be produced.
fn reasoning_effort(obj: &Map<String, Value>) -> Result<Option<String>, Unsupported> {
    let Some(r) = obj.get("reasoning").filter(|r| !r.is_null()) else {
        return Ok(None);
    };
    for k in ["summary", "generate_summary"] {
        if r.get(k).is_some_and(|v| !v.is_null()) {
            return Err(unsupported(format!(
                "`reasoning.{k}` is not supported by translated backends"
            )));
        }
    }
    Ok(r["effort"].as_str().map(str::to_string))
}

/// The members of a `response` object that repeat the request (what OpenAI echoes back), with
/// the defaults OpenAI reports when the client set none.
pub fn response_echo(body: &[u8]) -> Value {
    let req: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let or = |k: &str, default: Value| req.get(k).filter(|v| !v.is_null()).cloned().unwrap_or(default);
    let text_format = req["text"]
        .get("format")
        .filter(|f| !f.is_null())
        .cloned()
        .unwrap_or(json!({"type": "text"}));
    json!({
        "instructions": or("instructions", Value::Null),
        "max_output_tokens": or("max_output_tokens", Value::Null),
        "metadata": or("metadata", json!({})),
        "parallel_tool_calls": or("parallel_tool_calls", json!(true)),
        "previous_response_id": null,
        "reasoning": {"effort": req["reasoning"].get("effort").cloned().unwrap_or(Value::Null), "summary": null},
        "store": false,
        "temperature": or("temperature", json!(1.0)),
        "text": {"format": text_format},
        "tool_choice": or("tool_choice", json!("auto")),
        "tools": or("tools", json!([])),
        "top_p": or("top_p", json!(1.0)),
        "truncation": "disabled",
        "user": or("user", Value::Null),
    })
}

/// A `response` object: the echo, then what the answer says.
fn response_object(echo: &Value, id: &str, model: &Value, status: &str) -> Value {
    let mut r = echo.clone();
    for (k, v) in [
        ("id", json!(id)),
        ("object", json!("response")),
        ("created_at", json!(now())),
        ("model", model.clone()),
        ("status", json!(status)),
        ("error", Value::Null),
        ("incomplete_details", Value::Null),
        ("output", json!([])),
        ("usage", Value::Null),
    ] {
        r[k] = v;
    }
    r
}

/// `resp_` + the chat id without its `chatcmpl-` and without Anthropic's `msg_` (so that the
/// items named after it read `msg_01…`, not `msg_msg_01…`).
fn response_id(chat_id: &str) -> String {
    let id = chat_id.strip_prefix("chatcmpl-").unwrap_or(chat_id);
    format!("resp_{}", id.strip_prefix("msg_").unwrap_or(id))
}

/// A chat `usage` → a Responses `usage`.
fn responses_usage(u: &Value) -> Value {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    json!({
        "input_tokens": n(&u["prompt_tokens"]),
        "input_tokens_details": {"cached_tokens": n(&u["prompt_tokens_details"]["cached_tokens"])},
        "output_tokens": n(&u["completion_tokens"]),
        "output_tokens_details": {"reasoning_tokens": n(&u["completion_tokens_details"]["reasoning_tokens"])},
        "total_tokens": n(&u["total_tokens"]),
    })
}

/// The status and `incomplete_details` a chat finish reason stands for.
fn status_of(finish: &Value) -> (&'static str, Value) {
    match finish.as_str() {
        Some("length") => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some("content_filter") => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

fn message_output(id: &str, text: &str, status: &str) -> Value {
    json!({"id": id, "type": "message", "status": status, "role": "assistant",
           "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]})
}

/// A `reasoning` item holding the backend's thinking as `reasoning_text` (no summary: none
/// was made).
fn reasoning_output(id: &str, text: &str, status: &str) -> Value {
    json!({"id": id, "type": "reasoning", "status": status, "summary": [],
           "content": [{"type": "reasoning_text", "text": text}]})
}

fn call_output_item(call_id: &str, name: &Value, arguments: &str, status: &str) -> Value {
    json!({"id": format!("fc_{call_id}"), "type": "function_call", "status": status,
           "call_id": call_id, "name": name, "arguments": arguments})
}

/// An OpenAI chat.completion → a Responses `response` object around the request's `echo`.
pub fn openai_chat_to_response(chat: &Value, echo: &Value) -> Value {
    let id = response_id(chat["id"].as_str().unwrap_or(""));
    let choice = &chat["choices"][0];
    let (status, incomplete) = status_of(&choice["finish_reason"]);
    let item_status = if status == "completed" {
        "completed"
    } else {
        "incomplete"
    };
    let mut output = Vec::new();
    let m = &choice["message"];
    if let Some(thinking) = m["reasoning_content"].as_str().filter(|t| !t.is_empty()) {
        output.push(reasoning_output(&format!("rs_{}", &id[5..]), thinking, "completed"));
    }
    if let Some(text) = m["content"].as_str().filter(|t| !t.is_empty()) {
        output.push(message_output(&format!("msg_{}", &id[5..]), text, item_status));
    }
    for c in m["tool_calls"].as_array().into_iter().flatten() {
        let args = c["function"]["arguments"].as_str().unwrap_or("");
        output.push(call_output_item(
            c["id"].as_str().unwrap_or(""),
            &c["function"]["name"],
            args,
            "completed",
        ));
    }
    let mut r = response_object(echo, &id, &chat["model"], status);
    r["incomplete_details"] = incomplete;
    r["output"] = Value::Array(output);
    r["usage"] = responses_usage(&chat["usage"]);
    r
}

/// One output item as it streams.
enum Item {
    Reasoning { id: String, text: String },
    Message { id: String, text: String },
    Call { call_id: String, name: Value, args: String },
}

/// OpenAI chat chunks → the Responses streaming events, each with its `sequence_number`:
/// `response.created`, `response.in_progress`, per item `response.output_item.added` (and
/// `response.content_part.added` for text), deltas, the `.done` events when the item ends,
/// then `response.completed` (or `response.incomplete`) with the usage from the last chunk.
/// A chat error becomes an `error` event and `response.failed`.
pub struct ChatStreamToResponses {
    splitter: sse::Splitter,
    echo: Value,
    seq: u64,
    id: String,
    model: Value,
    started: bool,
    items: Vec<Item>,
    /// The item still receiving deltas (earlier ones are done).
    open: Option<usize>,
    /// Chat tool call index → output index.
    calls: std::collections::HashMap<u64, usize>,
    finish: Value,
    usage: Value,
}

impl ChatStreamToResponses {
    pub fn new(echo: Value) -> Self {
        ChatStreamToResponses {
            splitter: sse::Splitter::new(usage::MAX_SSE_EVENT),
            echo,
            seq: 0,
            id: String::new(),
            model: Value::Null,
            started: false,
            items: Vec::new(),
            open: None,
            calls: Default::default(),
            finish: Value::Null,
            usage: Value::Null,
        }
    }

    /// One SSE event (`event:` names its type, as OpenAI's stream does).
    fn emit(&mut self, out: &mut String, mut v: Value) {
        v["sequence_number"] = json!(self.seq);
        self.seq += 1;
        let typ = v["type"].as_str().unwrap_or("").to_string();
        out.push_str(&format!("event: {typ}\ndata: {v}\n\n"));
    }

    fn snapshot(&self, status: &str) -> Value {
        response_object(&self.echo, &self.id, &self.model, status)
    }

    fn start(&mut self, chunk: &Value, out: &mut String) {
        self.started = true;
        self.id = response_id(chunk["id"].as_str().unwrap_or("chatcmpl-translated"));
        self.model = chunk["model"].clone();
        let r = self.snapshot("in_progress");
        self.emit(out, json!({"type": "response.created", "response": r}));
        self.emit(out, json!({"type": "response.in_progress", "response": r}));
    }

    /// Feeds chat stream bytes; returns Responses event bytes.
    pub fn feed(&mut self, bytes: &[u8]) -> Bytes {
        let mut out = String::new();
        for event in self.splitter.feed(bytes) {
            if event.data.trim() == "[DONE]" {
                self.finish_stream(&mut out);
                continue;
            }
            let Ok(v) = serde_json::from_str::<Value>(&event.data) else {
                continue;
            };
            if !self.started {
                self.start(&v, &mut out);
            }
            if v.get("error").is_some_and(|e| !e.is_null()) {
                self.fail(&v["error"], &mut out);
                continue;
            }
            self.chunk(&v, &mut out);
        }
        Bytes::from(out)
    }

    fn chunk(&mut self, v: &Value, out: &mut String) {
        if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
            self.usage = u.clone();
        }
        let choice = &v["choices"][0];
        let delta = &choice["delta"];
        if let Some(thinking) = delta["reasoning_content"].as_str().filter(|t| !t.is_empty()) {
            self.reasoning_delta(thinking, out);
        }
        if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
            self.text_delta(text, out);
        }
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            self.call_delta(call, out);
        }
        if !choice["finish_reason"].is_null() && choice.get("finish_reason").is_some() {
            self.finish = choice["finish_reason"].clone();
            self.close_open(out);
        }
    }

    fn text_delta(&mut self, text: &str, out: &mut String) {
        let n = match (self.open, self.open.map(|n| &self.items[n])) {
            (Some(n), Some(Item::Message { .. })) => n,
            _ => self.open_message(out),
        };
        if let Item::Message { id, text: all } = &mut self.items[n] {
            all.push_str(text);
            let e = json!({"type": "response.output_text.delta", "item_id": id, "output_index": n,
                           "content_index": 0, "delta": text, "logprobs": []});
            self.emit(out, e);
        }
    }

    fn reasoning_delta(&mut self, thinking: &str, out: &mut String) {
        let n = match (self.open, self.open.map(|n| &self.items[n])) {
            (Some(n), Some(Item::Reasoning { .. })) => n,
            _ => {
                self.close_open(out);
                let n = self.items.len();
                let id = format!("rs_{}_{n}", &self.id[5..]);
                let item =
                    json!({"id": id, "type": "reasoning", "status": "in_progress", "summary": [], "content": []});
                self.emit(
                    out,
                    json!({"type": "response.output_item.added", "output_index": n, "item": item}),
                );
                self.items.push(Item::Reasoning {
                    id,
                    text: String::new(),
                });
                self.open = Some(n);
                n
            }
        };
        if let Item::Reasoning { id, text } = &mut self.items[n] {
            text.push_str(thinking);
            let e = json!({"type": "response.reasoning_text.delta", "item_id": id, "output_index": n,
                           "content_index": 0, "delta": thinking});
            self.emit(out, e);
        }
    }

    fn open_message(&mut self, out: &mut String) -> usize {
        self.close_open(out);
        let n = self.items.len();
        let id = format!("msg_{}_{n}", &self.id[5..]);
        let item = json!({"id": id, "type": "message", "status": "in_progress", "role": "assistant", "content": []});
        self.emit(
            out,
            json!({"type": "response.output_item.added", "output_index": n, "item": item}),
        );
        let part = json!({"type": "output_text", "text": "", "annotations": [], "logprobs": []});
        self.emit(
            out,
            json!({"type": "response.content_part.added", "item_id": id, "output_index": n,
                              "content_index": 0, "part": part}),
        );
        self.items.push(Item::Message {
            id,
            text: String::new(),
        });
        self.open = Some(n);
        n
    }

    fn call_delta(&mut self, call: &Value, out: &mut String) {
        let index = call["index"].as_u64().unwrap_or(0);
        if let Some(call_id) = call["id"].as_str() {
            self.close_open(out);
            let n = self.items.len();
            let name = call["function"]["name"].clone();
            let item = call_output_item(call_id, &name, "", "in_progress");
            self.emit(
                out,
                json!({"type": "response.output_item.added", "output_index": n, "item": item}),
            );
            self.items.push(Item::Call {
                call_id: call_id.to_string(),
                name,
                args: String::new(),
            });
            self.calls.insert(index, n);
            self.open = Some(n);
        }
        let Some(args) = call["function"]["arguments"].as_str().filter(|a| !a.is_empty()) else {
            return;
        };
        let Some(&n) = self.calls.get(&index) else {
            return;
        };
        if let Item::Call { call_id, args: all, .. } = &mut self.items[n] {
            all.push_str(args);
            let e = json!({"type": "response.function_call_arguments.delta", "item_id": format!("fc_{call_id}"),
                           "output_index": n, "delta": args});
            self.emit(out, e);
        }
    }

    /// The final form of item `n`.
    fn item_done(&self, n: usize) -> Value {
        let status = if status_of(&self.finish).0 == "completed" {
            "completed"
        } else {
            "incomplete"
        };
        match &self.items[n] {
            Item::Reasoning { id, text } => reasoning_output(id, text, "completed"),
            Item::Message { id, text } => message_output(id, text, status),
            Item::Call { call_id, name, args } => call_output_item(call_id, name, args, "completed"),
        }
    }

    /// Ends the open item with its `.done` events.
    fn close_open(&mut self, out: &mut String) {
        let Some(n) = self.open.take() else {
            return;
        };
        let item = self.item_done(n);
        let id = item["id"].clone();
        if item["type"] == "reasoning" {
            let text = item["content"][0]["text"].clone();
            self.emit(
                out,
                json!({"type": "response.reasoning_text.done", "item_id": id, "output_index": n,
                                  "content_index": 0, "text": text}),
            );
        } else if item["type"] == "message" {
            let part = item["content"][0].clone();
            let text = part["text"].clone();
            self.emit(
                out,
                json!({"type": "response.output_text.done", "item_id": id, "output_index": n,
                                  "content_index": 0, "text": text, "logprobs": []}),
            );
            self.emit(
                out,
                json!({"type": "response.content_part.done", "item_id": id, "output_index": n,
                                  "content_index": 0, "part": part}),
            );
        } else {
            self.emit(
                out,
                json!({"type": "response.function_call_arguments.done", "item_id": id,
                                  "output_index": n, "name": item["name"], "arguments": item["arguments"]}),
            );
        }
        self.emit(
            out,
            json!({"type": "response.output_item.done", "output_index": n, "item": item}),
        );
    }

    /// `[DONE]`: the final event with every item and the usage.
    fn finish_stream(&mut self, out: &mut String) {
        if !self.started {
            self.start(&Value::Null, out);
        }
        self.close_open(out);
        let (status, incomplete) = status_of(&self.finish);
        let mut r = self.snapshot(status);
        r["incomplete_details"] = incomplete;
        r["output"] = Value::Array((0..self.items.len()).map(|n| self.item_done(n)).collect());
        r["usage"] = responses_usage(&self.usage);
        let typ = if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        self.emit(out, json!({"type": typ, "response": r}));
    }

    /// A chat error mid-stream: an `error` event, then `response.failed`.
    fn fail(&mut self, e: &Value, out: &mut String) {
        let code = e.get("code").filter(|c| !c.is_null()).unwrap_or(&e["type"]).clone();
        self.emit(
            out,
            json!({"type": "error", "code": code, "message": e["message"], "param": e["param"]}),
        );
        let mut r = self.snapshot("failed");
        r["error"] = json!({"code": "server_error", "message": e["message"]});
        self.emit(out, json!({"type": "response.failed", "response": r}));
    }
}

impl StreamTranslator for ChatStreamToResponses {
    fn feed(&mut self, bytes: &[u8]) -> Bytes {
        ChatStreamToResponses::feed(self, bytes)
    }
}

/// The upstream call of a Responses request translated through chat: `backend_stream` turns
/// the backend's stream into chat chunks, `to_chat` its JSON answers into a chat.completion,
/// `error` its errors into OpenAI's error shape.
fn via_chat(
    bytes: &Bytes,
    path: String,
    translated: &Value,
    meter: (ApiSchema, Operation),
    backend_stream: impl StreamTranslator + 'static,
    to_chat: impl Fn(&Value) -> Value + Send + Sync + 'static,
    error: impl Fn(&[u8], u16) -> Value + Send + Sync + 'static,
) -> Upstream {
    let echo = response_echo(bytes);
    let stream = Chained(backend_stream, ChatStreamToResponses::new(echo.clone()));
    Upstream::translated(
        path,
        json_body(translated),
        meter,
        Some(Box::new(stream)),
        json_translator(move |v| openai_chat_to_response(&to_chat(v), &echo), error),
    )
}

/// A refusal of the chat → backend step in the words of the Responses request: chat members
/// become the Responses members they came from, and `messages[i]` (an index into the chat
/// request, which `instructions` and grouped calls shift) becomes `input`.
pub(super) fn in_responses_words(e: Unsupported) -> Unsupported {
    let mut s = e.0;
    for (chat, responses) in [
        ("`reasoning_effort`", "`reasoning.effort`"),
        ("`response_format`", "`text.format`"),
        ("`max_completion_tokens`", "`max_output_tokens`"),
        ("`max_tokens`", "`max_output_tokens`"),
    ] {
        s = s.replace(chat, responses);
    }
    while let Some(at) = s.find("messages[") {
        let digits = s[at + 9..].bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || s.as_bytes().get(at + 9 + digits) != Some(&b']') {
            break;
        }
        let mut end = at + 10 + digits;
        let word = if s[end..].starts_with('.') {
            end += 1;
            "input: "
        } else {
            "input"
        };
        s.replace_range(at..end, word);
    }
    Unsupported(s)
}

/// The chat request a Responses request stands for, as bytes for the next translator.
fn chat_bytes(req: &ClientRequest<'_>) -> Result<(Bytes, String), Unsupported> {
    let (bytes, _) = req.json_body()?;
    let model = req.model().to_string();
    Ok((Bytes::from(responses_to_openai_chat(bytes, &model)?.to_string()), model))
}

/// A chat answer with the backend's reasoning (Anthropic's thinking blocks, Gemini's thoughts,
/// Bedrock's reasoning content) as the message's `reasoning_content` (the chat step has no
/// field for it), which becomes a `reasoning` item.
fn with_reasoning(mut chat: Value, reasoning: String) -> Value {
    if !reasoning.is_empty() {
        chat["choices"][0]["message"]["reasoning_content"] = json!(reasoning);
    }
    chat
}

/// An Anthropic message as OpenAI chat, with its thinking blocks' text as `reasoning_content`.
fn anthropic_to_chat_with_thinking(msg: &Value) -> Value {
    let thinking: String = msg["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["type"] == "thinking")
        .filter_map(|b| b["thinking"].as_str())
        .collect();
    with_reasoning(anthropic_message_to_openai(msg), thinking)
}

/// Anthropic's stream → chat chunks, with `thinking_delta`s as `reasoning_content` deltas (in
/// their place in the stream); every other event goes to [`AnthropicStreamToOpenAi`] as
/// received.
pub struct AnthropicThinkingToChat {
    splitter: sse::Splitter,
    chat: AnthropicStreamToOpenAi,
}

impl AnthropicThinkingToChat {
    pub fn new() -> Self {
        AnthropicThinkingToChat {
            splitter: sse::Splitter::new(usage::MAX_SSE_EVENT),
            chat: AnthropicStreamToOpenAi::new(true),
        }
    }
}

impl Default for AnthropicThinkingToChat {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamTranslator for AnthropicThinkingToChat {
    fn feed(&mut self, bytes: &[u8]) -> Bytes {
        let mut out = Vec::new();
        for event in self.splitter.feed(bytes) {
            let thinking = serde_json::from_str::<Value>(&event.data)
                .ok()
                .filter(|v| v["type"] == "content_block_delta" && v["delta"]["type"] == "thinking_delta")
                .map(|v| v["delta"]["thinking"].clone());
            match thinking {
                Some(t) => {
                    let c =
                        json!({"choices": [{"index": 0, "delta": {"reasoning_content": t}, "finish_reason": null}]});
                    out.extend_from_slice(format!("data: {c}\n\n").as_bytes());
                }
                None => out.extend_from_slice(&self.chat.feed(&event.raw)),
            }
        }
        Bytes::from(out)
    }
}

/// OpenAI Responses → OpenAI chat → Anthropic Messages.
pub struct ResponsesToAnthropic;

impl Direction for ResponsesToAnthropic {
    fn name(&self) -> &'static str {
        "openai_responses->anthropic_messages"
    }

    fn applies(&self, client: ApiSchema, op: Operation, backend: ApiSchema) -> bool {
        (client, op, backend) == (ApiSchema::Openai, Operation::Responses, ApiSchema::Anthropic)
    }

    fn request(&self, req: &ClientRequest<'_>, _: &BackendSpec<'_>) -> Result<Upstream, Unsupported> {
        let (via, model) = chat_bytes(req)?;
        let translated = openai_chat_to_anthropic(&via, &model).map_err(in_responses_words)?;
        Ok(Upstream {
            default_headers: &[("anthropic-version", ANTHROPIC_VERSION)],
            ..via_chat(
                req.json_body()?.0,
                "/v1/messages".into(),
                &translated,
                (ApiSchema::Anthropic, Operation::Messages),
                AnthropicThinkingToChat::new(),
                anthropic_to_chat_with_thinking,
                |b, _| anthropic_error_to_openai(b),
            )
        })
    }
}

/// OpenAI Responses → OpenAI chat → Gemini API or Vertex AI.
pub struct ResponsesToGemini;

impl Direction for ResponsesToGemini {
    fn name(&self) -> &'static str {
        "openai_responses->gemini"
    }

    fn applies(&self, client: ApiSchema, op: Operation, backend: ApiSchema) -> bool {
        client == ApiSchema::Openai
            && op == Operation::Responses
            && matches!(backend, ApiSchema::Gemini | ApiSchema::Vertex)
    }

    fn request(&self, req: &ClientRequest<'_>, backend: &BackendSpec<'_>) -> Result<Upstream, Unsupported> {
        let (via, model) = chat_bytes(req)?;
        let mut translated = openai_chat_to_gemini(&via).map_err(in_responses_words)?;
        // A client that asked for reasoning gets Gemini's thought summaries as a `reasoning`
        // item, as Anthropic's thinking comes back.
        if let Some(thinking) = translated["generationConfig"].get_mut("thinkingConfig") {
            thinking["includeThoughts"] = json!(true);
        }
        let name = if model.is_empty() { "gemini" } else { &model };
        Ok(via_chat(
            req.json_body()?.0,
            gemini_path(backend, &model, req.stream()),
            &translated,
            (ApiSchema::Gemini, Operation::ChatCompletions),
            GeminiStreamToOpenAi::new(name, true).with_thoughts(),
            move |v| with_reasoning(gemini_to_openai(v, &model), gemini_thoughts(&v["candidates"][0])),
            |b, _| gemini_error_to_openai(b),
        ))
    }
}

/// OpenAI Responses → OpenAI chat → Bedrock Converse (and ConverseStream).
pub struct ResponsesToBedrock;

impl Direction for ResponsesToBedrock {
    fn name(&self) -> &'static str {
        "openai_responses->bedrock_converse"
    }

    fn applies(&self, client: ApiSchema, op: Operation, backend: ApiSchema) -> bool {
        (client, op, backend) == (ApiSchema::Openai, Operation::Responses, ApiSchema::Bedrock)
    }

    fn request(&self, req: &ClientRequest<'_>, _: &BackendSpec<'_>) -> Result<Upstream, Unsupported> {
        let (via, model) = chat_bytes(req)?;
        let translated = openai_chat_to_bedrock(&via, &model).map_err(in_responses_words)?;
        let name = if model.is_empty() { "bedrock" } else { &model };
        Ok(via_chat(
            req.json_body()?.0,
            converse_path(&model, req.stream()),
            &translated,
            (ApiSchema::Bedrock, Operation::ChatCompletions),
            BedrockStreamToOpenAi::new(name, true).with_reasoning(),
            move |v| with_reasoning(bedrock_to_openai(v, &model), bedrock_reasoning(v)),
            bedrock_error_to_openai,
        ))
    }
}
