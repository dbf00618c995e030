//! Provider API knowledge: which operation a request is (from its path), what it asks for
//! (`model`, `stream`, from its JSON body), and how errors look in each client's own shape.
//!
//! - OpenAI: <https://platform.openai.com/docs/api-reference> — errors are
//!   `{"error":{"message","type","param","code"}}`.
//! - Anthropic: <https://docs.anthropic.com/en/api/errors> — errors are
//!   `{"type":"error","error":{"type","message"}}`.

pub mod sse;
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

/// Reads `model` and `stream` from a JSON request body.
pub fn parse(body: &[u8]) -> Result<(Parsed, Value), ParseError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    let obj = value.as_object().ok_or(ParseError::NotObject)?;
    let model = match obj.get("model") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ParseError::ModelType),
    };
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ParseError::StreamType),
    };
    Ok((Parsed { model, stream }, value))
}

/// Rewrites `model` in an already parsed body; the caller forwards the original bytes when
/// nothing changed.
pub fn with_model(mut value: Value, model: &str) -> Bytes {
    if let Some(obj) = value.as_object_mut() {
        obj.insert("model".into(), Value::String(model.to_string()));
    }
    Bytes::from(serde_json::to_vec(&value).expect("a JSON value serializes"))
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
        ApiSchema::Openai => {
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
        let (p, _) = parse(br#"{"model":"gpt-4o","stream":true,"messages":[]}"#).unwrap();
        assert_eq!(
            p,
            Parsed {
                model: Some("gpt-4o".into()),
                stream: true
            }
        );
        let (p, _) = parse(br#"{"input":"x"}"#).unwrap();
        assert_eq!(p, Parsed::default());
        assert!(matches!(parse(b"{\"model\":"), Err(ParseError::Json(_))));
        assert_eq!(parse(b"[1]").unwrap_err(), ParseError::NotObject);
        assert_eq!(parse(br#"{"model":5}"#).unwrap_err(), ParseError::ModelType);
        assert_eq!(parse(br#"{"stream":"yes"}"#).unwrap_err(), ParseError::StreamType);
    }

    #[test]
    fn model_rewrite_keeps_other_fields() {
        let (_, v) = parse(br#"{"model":"a","temperature":0.5,"messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        let out: Value = serde_json::from_slice(&with_model(v, "b")).unwrap();
        assert_eq!(out["model"], "b");
        assert_eq!(out["temperature"], 0.5);
        assert_eq!(out["messages"][0]["content"], "hi");
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
