//! The Model Context Protocol as Tollgate reads it (<https://modelcontextprotocol.io/specification/2025-06-18/basic/transports>):
//! JSON-RPC 2.0 messages POSTed by a client, answered with `application/json` or an SSE
//! stream; a GET opens the server's own SSE stream; DELETE ends a session (`Mcp-Session-Id`).
//! The older HTTP+SSE transport (2024-11-05) is the same messages: POSTs to the endpoint its
//! GET stream named, answers on that stream.
//!
//! - [`read`]: what a POSTed message is (method, id, the tool a `tools/call` names, the URI a
//!   `resources/read` reads, the prompt a `prompts/get` gets, the size and SHA-256 of the
//!   arguments), or the JSON-RPC error that refuses it;
//! - [`Observer`]: reads the answer as it passes, JSON or event by event (bounded), for the
//!   result or error of the request, and rewrites a `tools/list` result to the tools the
//!   route allows.
//!
//! - [`streams`]: the older transport's open streams, where a refusal of a message POSTed
//!   for one of them is put.
//!
//! A leaf: it imports nothing of the crate but the SSE splitter.

use std::{borrow::Cow, sync::Arc};

use bytes::Bytes;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::llm::sse;

pub mod streams;

pub use streams::{StreamKey, Streams};

/// Largest answer read whole to find its result (16 MiB); beyond, it passes unread.
pub const MAX_ANSWER: usize = 16 * 1024 * 1024;
/// Largest stream event parsed (1 MiB); beyond, the stream passes unread.
pub const MAX_EVENT: usize = 1024 * 1024;

/// JSON-RPC's own codes, and Tollgate's (in the server-error range -32000..-32099).
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    /// A route's `mcp.tools` denies the tool.
    pub const DENIED: i64 = -32001;
    /// A limit refused the call.
    pub const RATE_LIMITED: i64 = -32002;
    /// Tollgate could not get an answer from the server.
    pub const GATEWAY: i64 = -32003;
}

/// What a client's message is (recorded as it is: the record's `mcp` member embeds it).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Message {
    /// `request`, `notification` or `response` (a client answering a server's request); the
    /// proxy also says `stream` (the GET stream), `end_session` (DELETE) and `invalid`
    /// (refused before it was read).
    pub kind: Cow<'static, str>,
    pub method: Option<String>,
    /// The id as JSON text (`7`, `"abc"`).
    pub id: Option<String>,
    pub tool: Option<String>,
    pub uri: Option<String>,
    pub prompt: Option<String>,
    /// Size and SHA-256 (hex) of a `tools/call`'s or `prompts/get`'s `arguments`, as JSON.
    pub arguments_bytes: Option<u64>,
    pub arguments_sha256: Option<String>,
}

/// A message Tollgate refuses, as the JSON-RPC error it answers with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    pub code: i64,
    pub message: String,
}

/// The members of a message Tollgate acts on, read in one pass. Each may appear once (serde
/// refuses a repeated field of a struct): parsers disagree on which of two equal members wins,
/// and the server must not act on another `name` than the one Tollgate checked. `params` must
/// be an object, as MCP's always are. Other members pass unread.
#[derive(serde::Deserialize)]
struct Wire {
    jsonrpc: Option<Value>,
    method: Option<Value>,
    id: Option<Value>,
    params: Option<Params>,
}

#[derive(serde::Deserialize)]
struct Params {
    name: Option<Value>,
    uri: Option<Value>,
    arguments: Option<Value>,
}

/// Reads a POSTed body: one JSON-RPC message.
pub fn read(body: &[u8]) -> Result<Message, Refused> {
    let refused = |code, message: String| Refused { code, message };
    let wire: Wire = serde_json::from_slice(body).map_err(|e| {
        let json = e.classify() == serde_json::error::Category::Data
            || serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok();
        if !json {
            return refused(code::PARSE_ERROR, format!("Parse error: the body is not JSON ({e})"));
        }
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        match first {
            Some(b'[') => refused(
                code::INVALID_REQUEST,
                "JSON-RPC batches are not accepted (MCP 2025-06-18 removed them): send one message per request".into(),
            ),
            Some(b'{') => refused(code::INVALID_REQUEST, format!("Invalid Request: {e}")),
            _ => refused(code::INVALID_REQUEST, "Invalid Request: not a JSON-RPC message".into()),
        }
    })?;
    if wire.jsonrpc.as_ref().and_then(Value::as_str) != Some("2.0") {
        return Err(refused(
            code::INVALID_REQUEST,
            "Invalid Request: `jsonrpc` must be \"2.0\"".into(),
        ));
    }
    let method = match wire.method {
        None => None,
        Some(Value::String(m)) => Some(m),
        Some(_) => {
            return Err(refused(
                code::INVALID_REQUEST,
                "Invalid Request: `method` must be a string".into(),
            ))
        }
    };
    let id = wire.id.map(|i| i.to_string());
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    let mut m = Message {
        kind: match (&method, &id) {
            (Some(_), Some(_)) => "request",
            (Some(_), None) => "notification",
            (None, _) => "response",
        }
        .into(),
        id,
        ..Message::default()
    };
    if let Some(p) = &wire.params {
        match method.as_deref() {
            Some("tools/call") => m.tool = text(p.name.as_ref()),
            Some("prompts/get") => m.prompt = text(p.name.as_ref()),
            Some("resources/read" | "resources/subscribe" | "resources/unsubscribe") => m.uri = text(p.uri.as_ref()),
            _ => {}
        }
        if let Some(args) = &p.arguments {
            let bytes = args.to_string();
            m.arguments_bytes = Some(bytes.len() as u64);
            m.arguments_sha256 = Some(hex(&Sha256::digest(bytes.as_bytes())));
        }
    }
    if method.as_deref() == Some("tools/call") && m.tool.is_none() {
        return Err(refused(
            code::INVALID_REQUEST,
            "Invalid params: tools/call needs a `name`".into(),
        ));
    }
    m.method = method;
    Ok(m)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A JSON-RPC error answer to the message with `id` (JSON text; `null` when unknown).
pub fn error_body(id: Option<&str>, code: i64, message: &str) -> Bytes {
    let id: Value = id.and_then(|i| serde_json::from_str(i).ok()).unwrap_or(Value::Null);
    Bytes::from(json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}).to_string())
}

/// How the request's answer came out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// `ok`, `error` (a JSON-RPC error), `tool_error` (a tool result with `isError`), or
    /// `none` (no answer to the request was seen: a notification, a stream, a cut answer).
    pub status: &'static str,
    pub error_code: Option<i64>,
    pub error_message: Option<String>,
    /// Tools left out of a `tools/list` answer by the route's policy.
    pub tools_filtered: u64,
    /// JSON-RPC messages the server sent on an event stream.
    pub messages: u64,
    /// The session a stream's `endpoint` event named (the HTTP+SSE transport).
    pub session: Option<String>,
}

/// Which tools a route allows.
pub type Allows = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Reads an answer as it passes.
pub struct Observer {
    /// The request's id (JSON text): its answer is looked for.
    id: Option<String>,
    /// A `tools/list` answer is filtered with this.
    filter: Option<Allows>,
    mode: Mode,
    pub outcome: Outcome,
    /// The data of the stream's `endpoint` event (the HTTP+SSE transport names there where
    /// the client is to POST; see [`streams`]).
    pub endpoint: Option<String>,
}

enum Mode {
    /// `application/json`: gathered (up to `MAX_ANSWER`), read at the end; forwarded as it
    /// comes unless it must be rewritten.
    Json { buf: Vec<u8>, hold: bool, overflow: bool },
    /// An event stream: forwarded event by event.
    Events(sse::Splitter),
    /// Anything else, or too large: passed through.
    Pass,
    /// Too large to filter: the rest is not passed (a tool list is never let through
    /// unfiltered).
    Drop,
}

impl Observer {
    /// For an answer of `content_type` to the request with `id`; `filter` for `tools/list`.
    pub fn new(content_type: &str, id: Option<String>, filter: Option<Allows>) -> Observer {
        let mode = if content_type.starts_with("text/event-stream") {
            Mode::Events(sse::Splitter::new(MAX_EVENT))
        } else if content_type.starts_with("application/json") {
            Mode::Json {
                buf: Vec::new(),
                hold: filter.is_some(),
                overflow: false,
            }
        } else {
            Mode::Pass
        };
        Observer {
            id,
            filter,
            mode,
            outcome: Outcome {
                status: "none",
                ..Outcome::default()
            },
            endpoint: None,
        }
    }

    /// Whether a whole event may go out now: everything forwarded so far ended an event (an
    /// event stream still read event by event).
    pub fn between_events(&self) -> bool {
        matches!(self.mode, Mode::Events(_))
    }

    /// Whether the bytes may change (then the length the server sent no longer holds).
    pub fn rewrites(&self) -> bool {
        self.filter.is_some() && !matches!(self.mode, Mode::Pass)
    }

    /// Sees a chunk; returns what to forward now (`None`: the chunk itself).
    pub fn feed(&mut self, chunk: &[u8]) -> Option<Bytes> {
        match &mut self.mode {
            Mode::Pass => None,
            Mode::Drop => Some(Bytes::new()),
            Mode::Json { buf, hold, overflow } => {
                if *overflow {
                    return None;
                }
                if buf.len() + chunk.len() > MAX_ANSWER {
                    if *hold {
                        return Some(self.too_large_to_filter(false));
                    }
                    // Too large to read: what was held goes out with this chunk, unread.
                    *overflow = true;
                    let mut out = std::mem::take(buf);
                    out.extend_from_slice(chunk);
                    return hold.then(|| Bytes::from(out));
                }
                buf.extend_from_slice(chunk);
                hold.then(Bytes::new)
            }
            Mode::Events(splitter) => {
                let events = splitter.feed(chunk);
                if splitter.overflowed() && self.filter.is_some() {
                    return Some(self.too_large_to_filter(true));
                }
                if splitter.overflowed() {
                    let mut out: Vec<u8> = events.iter().flat_map(|e| e.raw.to_vec()).collect();
                    out.extend_from_slice(&splitter.take_pending());
                    self.mode = Mode::Pass;
                    return Some(out.into());
                }
                let mut out = Vec::new();
                for e in events {
                    match self.event(&e) {
                        Some(rewritten) => out.extend_from_slice(&rewritten),
                        None => out.extend_from_slice(&e.raw),
                    }
                }
                Some(out.into())
            }
        }
    }

    /// At the end of the answer: what is still held.
    pub fn finish(&mut self) -> Bytes {
        match &mut self.mode {
            Mode::Pass | Mode::Drop => Bytes::new(),
            Mode::Events(splitter) => splitter.take_pending(),
            Mode::Json { buf, hold, overflow } => {
                let buf = std::mem::take(buf);
                if *overflow {
                    return Bytes::new();
                }
                let hold = *hold;
                match serde_json::from_slice::<Value>(&buf) {
                    Ok(mut v) => {
                        let changed = self.message(&mut v);
                        if hold && changed {
                            return Bytes::from(v.to_string());
                        }
                        if hold {
                            Bytes::from(buf)
                        } else {
                            Bytes::new()
                        }
                    }
                    Err(_) if hold => Bytes::from(buf),
                    Err(_) => Bytes::new(),
                }
            }
        }
    }

    /// An answer that must be filtered but is larger than Tollgate reads: a JSON-RPC error
    /// in its place (as an event on a stream), and nothing more of it.
    fn too_large_to_filter(&mut self, event: bool) -> Bytes {
        self.mode = Mode::Drop;
        let message = "tollgate: the server's answer is larger than Tollgate reads to filter its tools";
        self.outcome.status = "error";
        self.outcome.error_code = Some(code::GATEWAY);
        self.outcome.error_message = Some(message.into());
        let body = error_body(self.id.as_deref(), code::GATEWAY, message);
        match event {
            true => Bytes::from(format!("event: message\ndata: {}\n\n", String::from_utf8_lossy(&body))),
            false => body,
        }
    }

    /// One event: its message read; the event rewritten when the message was.
    fn event(&mut self, e: &sse::Event) -> Option<Vec<u8>> {
        if e.name.as_deref() == Some("endpoint") && self.endpoint.is_none() {
            self.endpoint = Some(e.data.clone());
            self.outcome.session = streams::session_of(e.data.trim());
            return None;
        }
        let mut v: Value = serde_json::from_str(&e.data).ok()?;
        self.outcome.messages += 1;
        if !self.message(&mut v) {
            return None;
        }
        let mut out = Vec::new();
        if let Some(name) = &e.name {
            out.extend_from_slice(format!("event: {name}\n").as_bytes());
        }
        // The event's id (for `Last-Event-ID` resumption) is kept.
        for line in String::from_utf8_lossy(&e.raw).lines() {
            if line.starts_with("id:") || line.starts_with("retry:") {
                out.extend_from_slice(line.as_bytes());
                out.push(b'\n');
            }
        }
        out.extend_from_slice(format!("data: {v}\n\n").as_bytes());
        Some(out)
    }

    /// A message from the server: when it answers the request, its outcome is noted (and a
    /// `tools/list` result filtered: returns whether it changed).
    fn message(&mut self, v: &mut Value) -> bool {
        let is_answer = v.get("method").is_none() && v.get("id").is_some();
        let Some(id) = &self.id else {
            // The server's own stream (GET; the HTTP+SSE transport answers there): a tool
            // list on it is filtered too, whichever request it answers.
            return is_answer && self.filter_tools(v);
        };
        if !(is_answer && v.get("id").is_some_and(|i| &i.to_string() == id)) {
            return false;
        }
        if let Some(err) = v.get("error") {
            self.outcome.status = "error";
            self.outcome.error_code = err.get("code").and_then(Value::as_i64);
            self.outcome.error_message = err.get("message").and_then(Value::as_str).map(str::to_string);
            return false;
        }
        self.outcome.status = if v["result"].get("isError").and_then(Value::as_bool) == Some(true) {
            "tool_error"
        } else {
            "ok"
        };
        self.filter_tools(v)
    }

    /// Leaves out of a `tools/list` result the tools the route does not allow; returns
    /// whether any was.
    fn filter_tools(&mut self, v: &mut Value) -> bool {
        let tools = v
            .get_mut("result")
            .and_then(|r| r.get_mut("tools"))
            .and_then(Value::as_array_mut);
        match (&self.filter, tools) {
            (Some(allows), Some(tools)) => {
                let before = tools.len();
                tools.retain(|t| t.get("name").and_then(Value::as_str).is_some_and(|n| allows(n)));
                self.outcome.tools_filtered += (before - tools.len()) as u64;
                before != tools.len()
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests;
