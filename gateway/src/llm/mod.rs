//! Provider API knowledge: which operation a request is (from its path), what it asks for
//! (`model`, `stream`, from its JSON body), and how errors look in each client's own shape.
//!
//! - OpenAI: <https://platform.openai.com/docs/api-reference> — errors are
//!   `{"error":{"message","type","param","code"}}`.
//! - Anthropic: <https://docs.anthropic.com/en/api/errors> — errors are
//!   `{"type":"error","error":{"type","message"}}`.
//!
//! Beside it: [`sse`] and [`eventstream`] cut streams into events (SSE; Bedrock's AWS
//! event-stream frames), [`usage`] meters tokens from each backend's own bytes, and
//! [`translate`] converts requests, answers, errors and streams between provider APIs
//! (Anthropic, Gemini/Vertex, Bedrock Converse, Gemini embeddings).

pub mod eventstream;
pub mod sse;
pub mod translate;
pub mod usage;

use bytes::Bytes;
use serde_json::Value;

use crate::config::ApiSchema;

/// The operation a request performs.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Operation {
    ChatCompletions,
    Completions,
    Embeddings,
    Responses,
    Models,
    Messages,
    CountTokens,
    /// Any other path on a governed host: forwarded with credential injection, not parsed.
    Other,
}

impl Operation {
    /// From the request path (query excluded), for a client of `schema`.
    pub fn detect(schema: ApiSchema, path: &str) -> Operation {
        let path = path.trim_end_matches('/');
        match (schema, path) {
            (ApiSchema::Openai, "/v1/chat/completions") => Operation::ChatCompletions,
            (ApiSchema::Openai, "/v1/completions") => Operation::Completions,
            (ApiSchema::Openai, "/v1/embeddings") => Operation::Embeddings,
            (ApiSchema::Openai, "/v1/responses") => Operation::Responses,
            (ApiSchema::Openai, p) if p == "/v1/models" || p.starts_with("/v1/models/") => Operation::Models,
            (ApiSchema::Anthropic, "/v1/messages") => Operation::Messages,
            (ApiSchema::Anthropic, "/v1/messages/count_tokens") => Operation::CountTokens,
            (ApiSchema::Anthropic, p) if p == "/v1/models" || p.starts_with("/v1/models/") => Operation::Models,
            // Azure OpenAI is a backend API here; clients speak OpenAI or Anthropic.
            _ => Operation::Other,
        }
    }

    /// Whether the body is a JSON object Tollgate reads (`model`, `stream`).
    pub fn has_json_body(self) -> bool {
        !matches!(self, Operation::Models | Operation::Other)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::ChatCompletions => "chat_completions",
            Operation::Completions => "completions",
            Operation::Embeddings => "embeddings",
            Operation::Responses => "responses",
            Operation::Models => "models",
            Operation::Messages => "messages",
            Operation::CountTokens => "count_tokens",
            Operation::Other => "other",
        }
    }
}

/// What Tollgate reads from a request body.
#[derive(Debug, Default, Eq, PartialEq)]
pub struct Parsed {
    pub model: Option<String>,
    pub stream: bool,
    /// `stream_options.include_usage`, when the client set it.
    pub include_usage: Option<bool>,
    /// The output the request allows: `max_tokens`, `max_completion_tokens` (OpenAI) or
    /// `max_output_tokens` (responses); used to reserve against token limits.
    pub max_tokens: Option<u64>,
}

/// Why a body could not be read.
#[derive(Debug, thiserror::Error, Eq, PartialEq)]
pub enum ParseError {
    #[error("request body is not valid JSON: {0}")]
    Json(String),
    #[error("request body must be a JSON object")]
    NotObject,
    #[error("`model` must be a string")]
    ModelType,
    #[error("`stream` must be a boolean")]
    StreamType,
}

/// Only the members routing and metering need; every other member is skipped by the parser
/// without being built (the body itself is forwarded as received).
#[derive(serde::Deserialize)]
struct Peek {
    #[serde(default)]
    model: Option<Value>,
    #[serde(default)]
    stream: Option<Value>,
    #[serde(default)]
    stream_options: Option<Value>,
    #[serde(default)]
    max_tokens: Option<Value>,
    #[serde(default)]
    max_completion_tokens: Option<Value>,
    #[serde(default)]
    max_output_tokens: Option<Value>,
}

/// Reads `model`, `stream` and `stream_options.include_usage` from a JSON request body.
pub fn parse(body: &[u8]) -> Result<Parsed, ParseError> {
    // serde would also build a struct from a JSON array: only objects are requests.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
            Ok(_) => ParseError::NotObject,
            Err(e) => ParseError::Json(e.to_string()),
        });
    }
    let peek: Peek = serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    let model = match peek.model {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(ParseError::ModelType),
    };
    let stream = match peek.stream {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => b,
        Some(_) => return Err(ParseError::StreamType),
    };
    let include_usage = peek
        .stream_options
        .as_ref()
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool);
    let max_tokens = [peek.max_completion_tokens, peek.max_tokens, peek.max_output_tokens]
        .into_iter()
        .flatten()
        .find_map(|v| v.as_u64());
    Ok(Parsed {
        model,
        stream,
        include_usage,
        max_tokens,
    })
}

/// Rewrites a body: `model` (when overridden) and/or `stream_options.include_usage: true`
/// (when Tollgate needs stream usage the client did not ask for). Only called when something
/// changes; otherwise the original bytes are forwarded.
pub fn rewrite(body: &[u8], model: Option<&str>, add_include_usage: bool) -> Result<Bytes, ParseError> {
    let mut value: Value = serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    let obj = value.as_object_mut().ok_or(ParseError::NotObject)?;
    if let Some(m) = model {
        obj.insert("model".into(), Value::String(m.to_string()));
    }
    if add_include_usage {
        let opts = obj
            .entry("stream_options")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(o) = opts.as_object_mut() {
            o.insert("include_usage".into(), Value::Bool(true));
        }
    }
    Ok(Bytes::from(
        serde_json::to_vec(&value).expect("a JSON value serializes"),
    ))
}

/// The kind of an error, mapped to each schema's `type`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum ErrorKind {
    InvalidRequest,
    TooLarge,
    NotFound,
    PermissionDenied,
    Upstream,
    Timeout,
    Internal,
    RateLimited,
}

/// An error body in the client's own API shape.
pub fn error_body(schema: ApiSchema, kind: ErrorKind, message: &str) -> Bytes {
    let value = match schema {
        ApiSchema::Openai | ApiSchema::AzureOpenai | ApiSchema::Gemini | ApiSchema::Bedrock | ApiSchema::Vertex => {
            let (typ, code) = match kind {
                ErrorKind::InvalidRequest => ("invalid_request_error", "invalid_request"),
                ErrorKind::TooLarge => ("invalid_request_error", "request_too_large"),
                ErrorKind::NotFound => ("invalid_request_error", "not_found"),
                ErrorKind::PermissionDenied => ("permission_error", "forbidden"),
                ErrorKind::Upstream => ("api_error", "bad_gateway"),
                ErrorKind::Timeout => ("api_error", "timeout"),
                ErrorKind::Internal => ("api_error", "internal_error"),
                ErrorKind::RateLimited => ("rate_limit_error", "rate_limit_exceeded"),
            };
            serde_json::json!({"error": {"message": message, "type": typ, "param": null, "code": code}})
        }
        ApiSchema::Anthropic => {
            let typ = match kind {
                ErrorKind::InvalidRequest => "invalid_request_error",
                ErrorKind::TooLarge => "request_too_large",
                ErrorKind::NotFound => "not_found_error",
                ErrorKind::PermissionDenied => "permission_error",
                ErrorKind::Upstream | ErrorKind::Internal => "api_error",
                ErrorKind::Timeout => "timeout_error",
                ErrorKind::RateLimited => "rate_limit_error",
            };
            serde_json::json!({"type": "error", "error": {"type": typ, "message": message}})
        }
    };
    Bytes::from(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_detected_per_schema() {
        use Operation::*;
        let o = |p| Operation::detect(ApiSchema::Openai, p);
        let a = |p| Operation::detect(ApiSchema::Anthropic, p);
        assert_eq!(o("/v1/chat/completions"), ChatCompletions);
        assert_eq!(o("/v1/chat/completions/"), ChatCompletions);
        assert_eq!(o("/v1/embeddings"), Embeddings);
        assert_eq!(o("/v1/responses"), Responses);
        assert_eq!(o("/v1/models/gpt-4o"), Models);
        assert_eq!(o("/v1/files"), Other);
        assert_eq!(a("/v1/messages"), Messages);
        assert_eq!(a("/v1/messages/count_tokens"), CountTokens);
        assert_eq!(a("/v1/chat/completions"), Other);
    }

    #[test]
    fn model_and_stream_are_read_strictly() {
        let p = parse(br#"{"model":"gpt-4o","stream":true,"messages":[],"stream_options":{"include_usage":true}}"#)
            .unwrap();
        assert_eq!(
            p,
            Parsed {
                model: Some("gpt-4o".into()),
                stream: true,
                include_usage: Some(true),
                max_tokens: None
            }
        );
        assert_eq!(parse(br#"{"max_completion_tokens":77}"#).unwrap().max_tokens, Some(77));
        assert_eq!(parse(br#"{"input":"x"}"#).unwrap(), Parsed::default());
        assert!(matches!(parse(b"{\"model\":"), Err(ParseError::Json(_))));
        assert_eq!(parse(b"[1]").unwrap_err(), ParseError::NotObject);
        assert_eq!(parse(br#"{"model":5}"#).unwrap_err(), ParseError::ModelType);
        assert_eq!(parse(br#"{"stream":"yes"}"#).unwrap_err(), ParseError::StreamType);
    }

    #[test]
    fn rewrite_changes_only_what_is_asked() {
        let body = br#"{"model":"a","temperature":0.5,"messages":[{"role":"user","content":"hi"}]}"#;
        let out: Value = serde_json::from_slice(&rewrite(body, Some("b"), false).unwrap()).unwrap();
        assert_eq!(out["model"], "b");
        assert_eq!(out["temperature"], 0.5);
        assert_eq!(out["messages"][0]["content"], "hi");
        assert!(out.get("stream_options").is_none());
        let out: Value =
            serde_json::from_slice(&rewrite(br#"{"stream_options":{"x":1}}"#, None, true).unwrap()).unwrap();
        assert_eq!(
            out["stream_options"],
            serde_json::json!({"x": 1, "include_usage": true})
        );
    }

    #[test]
    fn error_bodies_have_each_clients_shape() {
        let o: Value = serde_json::from_slice(&error_body(ApiSchema::Openai, ErrorKind::TooLarge, "too big")).unwrap();
        assert_eq!(o["error"]["message"], "too big");
        assert_eq!(o["error"]["type"], "invalid_request_error");
        assert!(o["error"]["param"].is_null());
        let a: Value = serde_json::from_slice(&error_body(ApiSchema::Anthropic, ErrorKind::Upstream, "down")).unwrap();
        assert_eq!(a["type"], "error");
        assert_eq!(a["error"]["type"], "api_error");
        assert_eq!(a["error"]["message"], "down");
    }
}
