//! Translation between provider APIs, chosen per attempt (client schema × backend schema):
//! requests, JSON answers, streams and errors. One file per direction, named client → backend:
//!
//! - [`openai_to_anthropic`]: OpenAI chat completions served by Anthropic Messages;
//! - [`anthropic_to_openai`]: Anthropic Messages served by any OpenAI-compatible backend;
//! - [`openai_to_gemini`]: OpenAI chat and embeddings served by the Gemini API or Vertex AI;
//! - [`openai_to_bedrock`]: OpenAI chat served by Bedrock Converse, embeddings by Titan;
//! - [`anthropic_via_openai`]: Anthropic Messages served by Gemini and Bedrock, through OpenAI
//!   chat;
//! - [`responses_via_chat`]: OpenAI Responses served by Anthropic, Gemini/Vertex and Bedrock,
//!   through OpenAI chat;
//! - [`passthrough`]: the same API on both sides, OpenAI bodies on Azure deployments, and
//!   Responses on Azure's v1 path.
//!
//! Each direction implements [`Direction`] (in its file) and is listed in [`DIRECTIONS`];
//! the proxy picks one per attempt with [`find`]. This file holds what they share: the
//! refusal type, and the builders of OpenAI answers, chunks, usage and errors. A request
//! feature the target cannot express is refused with a 400 that names it; nothing is
//! dropped silently. Request shapes are checked against each target's schema
//! (testdata/schemas) by the property test in `tests.rs`.

use serde_json::{json, Value};

use super::usage;
use crate::llm::{ApiSchema, Operation};

mod anthropic_to_openai;
mod anthropic_via_openai;
pub mod direction;
mod openai_to_anthropic;
mod openai_to_bedrock;
mod openai_to_gemini;
mod passthrough;
mod responses_via_chat;

pub use anthropic_to_openai::*;
pub use anthropic_via_openai::*;
pub use direction::*;
pub use openai_to_anthropic::*;
pub use openai_to_bedrock::*;
pub use openai_to_gemini::*;
pub use passthrough::*;
pub use responses_via_chat::*;

/// Max tokens sent to Anthropic when the client gave none (Anthropic requires the field).
pub const DEFAULT_MAX_TOKENS: u64 = 4096;
/// `anthropic-version` sent upstream when the client's request has none.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Every direction, tried in order: the first that applies serves the attempt. A new
/// direction is a new file with an `impl Direction` and one line here.
pub static DIRECTIONS: &[&dyn Direction] = &[
    &Passthrough,
    &OpenAiToAzure,
    &ResponsesToAzure,
    &OpenAiChatToAnthropic,
    &AnthropicToOpenAiChat,
    &OpenAiChatToGemini,
    &OpenAiChatToBedrock,
    &AnthropicToGemini,
    &AnthropicToBedrock,
    &ResponsesToAnthropic,
    &ResponsesToGemini,
    &ResponsesToBedrock,
    &OpenAiEmbeddingsToGemini,
    &OpenAiEmbeddingsToVertex,
    &OpenAiEmbeddingsToTitan,
];

/// The direction that serves `operation` requests of a `client` API from a `backend` API.
pub fn find(client: ApiSchema, operation: Operation, backend: ApiSchema) -> Option<&'static dyn Direction> {
    DIRECTIONS
        .iter()
        .copied()
        .find(|d| d.applies(client, operation, backend))
}

/// Why a request cannot be translated: always a client error naming the feature.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct Unsupported(pub String);

/// A client's request body as a JSON object.
fn parse_request(body: &[u8]) -> Result<serde_json::Map<String, Value>, Unsupported> {
    match serde_json::from_slice(body).map_err(|e| unsupported(format!("request body: {e}")))? {
        Value::Object(obj) => Ok(obj),
        _ => Err(unsupported("request body must be a JSON object")),
    }
}

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

/// The thinking budget (tokens) a `reasoning_effort` stands for, toward Anthropic and Gemini;
/// `anthropic_to_openai` maps budgets back to efforts with the same steps.
fn thinking_budget(effort: &str) -> Result<u64, Unsupported> {
    match effort {
        "minimal" | "low" => Ok(1024),
        "medium" => Ok(4096),
        "high" => Ok(16384),
        other => Err(unsupported(format!("`reasoning_effort` {other:?} is not supported"))),
    }
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
    if texts.len() > MAX_EMBEDDING_INPUTS {
        return Err(unsupported(format!(
            "`input` holds {} texts; at most {MAX_EMBEDDING_INPUTS} per request",
            texts.len()
        )));
    }
    let base64 = match req["encoding_format"].as_str() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => return Err(unsupported(format!("`encoding_format` {other:?} is not supported"))),
    };
    let dimensions = req.get("dimensions").filter(|d| !d.is_null()).cloned();
    Ok((texts, dimensions, base64))
}

/// Texts one embeddings request may hold (OpenAI's own limit).
pub const MAX_EMBEDDING_INPUTS: usize = 2048;

/// An OpenAI embeddings list from the backend's vectors in input order (JSON number arrays):
/// float32 values as JSON lists, or their little-endian bytes in base64 (what the OpenAI API
/// sends for `encoding_format: base64`), with `tokens` as the usage.
fn openai_embedding_list<'a>(
    vectors: impl Iterator<Item = &'a Value>,
    model: &str,
    base64: bool,
    tokens: u64,
) -> Value {
    let data: Vec<Value> = vectors
        .enumerate()
        .map(|(index, v)| {
            let values: Vec<f32> = v
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_f64)
                .map(|f| f as f32)
                .collect();
            let embedding = if base64 {
                use base64::Engine as _;
                let bytes: Vec<u8> = values.iter().flat_map(|f| f.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(values)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
}

#[cfg(test)]
mod responses_tests;
#[cfg(test)]
mod tests;
