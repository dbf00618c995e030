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
pub mod media;
pub mod multipart;
pub mod sse;
pub mod translate;
pub mod usage;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The API a client speaks (and a backend understands).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, Eq, PartialEq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum ApiSchema {
    /// OpenAI: chat completions, completions, embeddings, responses, models.
    #[default]
    Openai,
    /// Anthropic: messages, count_tokens.
    Anthropic,
    /// Azure OpenAI (backends only): OpenAI bodies on deployment paths with `api-version`.
    AzureOpenai,
    /// Google Gemini API (backends only): `generateContent`, `streamGenerateContent?alt=sse`.
    Gemini,
    /// AWS Bedrock Converse API (backends only): `POST /model/{modelId}/converse`, signed
    /// with SigV4 (credential kind `awsSigV4`).
    Bedrock,
    /// Google Vertex AI (backends only): Gemini bodies on
    /// `/v1/projects/{project}/locations/{region}/publishers/google/models/{model}:…`, with
    /// OAuth tokens from a service account (credential kind `gcpServiceAccount`).
    Vertex,
}

impl ApiSchema {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiSchema::Openai => "openai",
            ApiSchema::Anthropic => "anthropic",
            ApiSchema::AzureOpenai => "azureOpenai",
            ApiSchema::Gemini => "gemini",
            ApiSchema::Bedrock => "bedrock",
            ApiSchema::Vertex => "vertex",
        }
    }
}

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
    /// `/v1/files`, `/v1/uploads` (not inference: a route must allow it).
    Files,
    /// `/v1/batches`, Anthropic's `/v1/messages/batches`.
    Batches,
    /// `/v1/fine_tuning/…`.
    FineTuning,
    /// `/v1/moderations`.
    Moderations,
    /// `/v1/audio/transcriptions` (multipart: the audio file streams through unbuffered).
    AudioTranscriptions,
    /// `/v1/audio/translations` (multipart, like transcriptions).
    AudioTranslations,
    /// `/v1/audio/speech` (JSON in, audio bytes or an SSE stream out).
    AudioSpeech,
    /// `/v1/images/generations` (JSON).
    ImagesGenerations,
    /// `/v1/images/edits` (multipart: the images stream through unbuffered).
    ImagesEdits,
    /// `/v1/images/variations` (multipart like edits; `dall-e-2` only, its model when the form
    /// names none).
    ImagesVariations,
    /// Organization administration: `/v1/organization/…` (OpenAI), `/v1/organizations/…`
    /// (Anthropic): admin keys, users, projects.
    Admin,
    /// A request to a remote MCP server (a provider of `kind: mcp`): JSON-RPC messages,
    /// their streams, the session's end.
    Mcp,
    /// Any other path on a governed host (not inference: a route must allow it).
    Other,
}

/// The operations asked on one exact path, with the path a client of `schema` uses under
/// `/v1`: the one table [`Operation::detect`], the model list's route check and Azure
/// deployment paths read.
const EXACT_PATHS: [(ApiSchema, &str, Operation); 13] = [
    (ApiSchema::Openai, "/v1/chat/completions", Operation::ChatCompletions),
    (ApiSchema::Openai, "/v1/completions", Operation::Completions),
    (ApiSchema::Openai, "/v1/embeddings", Operation::Embeddings),
    (ApiSchema::Openai, "/v1/responses", Operation::Responses),
    (ApiSchema::Openai, "/v1/moderations", Operation::Moderations),
    (
        ApiSchema::Openai,
        "/v1/audio/transcriptions",
        Operation::AudioTranscriptions,
    ),
    (
        ApiSchema::Openai,
        "/v1/audio/translations",
        Operation::AudioTranslations,
    ),
    (ApiSchema::Openai, "/v1/audio/speech", Operation::AudioSpeech),
    (
        ApiSchema::Openai,
        "/v1/images/generations",
        Operation::ImagesGenerations,
    ),
    (ApiSchema::Openai, "/v1/images/edits", Operation::ImagesEdits),
    (ApiSchema::Openai, "/v1/images/variations", Operation::ImagesVariations),
    (ApiSchema::Anthropic, "/v1/messages", Operation::Messages),
    (
        ApiSchema::Anthropic,
        "/v1/messages/count_tokens",
        Operation::CountTokens,
    ),
];

impl Operation {
    /// Every operation, for config validation and docs.
    pub const ALL: [Operation; 20] = [
        Operation::ChatCompletions,
        Operation::Completions,
        Operation::Embeddings,
        Operation::Responses,
        Operation::Models,
        Operation::Messages,
        Operation::CountTokens,
        Operation::AudioTranscriptions,
        Operation::AudioTranslations,
        Operation::AudioSpeech,
        Operation::ImagesGenerations,
        Operation::ImagesEdits,
        Operation::ImagesVariations,
        Operation::Files,
        Operation::Batches,
        Operation::FineTuning,
        Operation::Moderations,
        Operation::Admin,
        Operation::Mcp,
        Operation::Other,
    ];

    /// From the request path (query excluded), for a client of `schema`. Paths are matched
    /// exactly (one trailing `/` allowed); anything else is an operation a route must allow.
    pub fn detect(schema: ApiSchema, path: &str) -> Operation {
        Operation::detect_under(schema, None, path)
    }

    /// Like [`Operation::detect`], for a provider whose clients may also put the API under
    /// `base` instead of `/v1` (a provider's `basePath`: Groq's `/openai/v1`, OpenRouter's
    /// `/api/v1`, Perplexity's `/`; a `*` segment matches any one segment). `/v1` is tried
    /// first, so a provider's requests are never understood less than without a base.
    pub fn detect_under(schema: ApiSchema, base: Option<&str>, path: &str) -> Operation {
        let path = path.strip_suffix('/').unwrap_or(path);
        let op = match (path.strip_prefix("/v1"), azure_deployment(path)) {
            (Some(rest), _) if rest.starts_with('/') => Operation::in_api(schema, rest),
            (_, Some((_, rest))) if schema == ApiSchema::Openai => Operation::in_deployment(rest),
            _ => Operation::Other,
        };
        match (op, base.and_then(|b| strip_base(b, path))) {
            (Operation::Other, Some(rest)) => Operation::in_api(schema, rest),
            (op, _) => op,
        }
    }

    /// The operation of `rest`, the path after an Azure OpenAI deployment
    /// (`/openai/deployments/{d}/chat/completions`): the inference operations Azure serves
    /// there. Anything else under a deployment is an operation a route must allow.
    fn in_deployment(rest: &str) -> Operation {
        match Operation::in_api(ApiSchema::Openai, rest) {
            op if op.on_azure_deployment() => op,
            _ => Operation::Other,
        }
    }

    /// Whether Azure OpenAI serves this operation under a deployment
    /// (`/openai/deployments/{d}/…`; images variations it does not).
    pub fn on_azure_deployment(self) -> bool {
        matches!(
            self,
            Operation::ChatCompletions
                | Operation::Completions
                | Operation::Embeddings
                | Operation::AudioTranscriptions
                | Operation::AudioTranslations
                | Operation::AudioSpeech
                | Operation::ImagesGenerations
                | Operation::ImagesEdits
        )
    }

    /// The exact path a client asks this operation on (`/v1/chat/completions`), for the
    /// operations that have one.
    pub fn v1_path(self) -> Option<&'static str> {
        EXACT_PATHS
            .iter()
            .find(|(_, _, op)| *op == self)
            .map(|(_, path, _)| *path)
    }

    /// The operations a client of `schema` asks on an exact path, with that path.
    pub fn exact(schema: ApiSchema) -> impl Iterator<Item = (Operation, &'static str)> {
        EXACT_PATHS
            .iter()
            .filter(move |(s, _, _)| *s == schema)
            .map(|&(_, path, op)| (op, path))
    }

    /// The operation of `rest`, the path after the API's base (`/chat/completions`).
    fn in_api(schema: ApiSchema, rest: &str) -> Operation {
        let under = |prefix: &str| rest == prefix || rest.strip_prefix(prefix).is_some_and(|r| r.starts_with('/'));
        let model_path = rest == "/models"
            || rest
                .strip_prefix("/models/")
                .is_some_and(|id| !id.is_empty() && !id.contains('/'));
        let exact = EXACT_PATHS
            .iter()
            .find(|(s, path, _)| *s == schema && path.strip_prefix("/v1") == Some(rest));
        if let Some(&(_, _, op)) = exact {
            return op;
        }
        match (schema, rest) {
            (ApiSchema::Openai | ApiSchema::Anthropic, _) if model_path => Operation::Models,
            (ApiSchema::Anthropic, _) if under("/messages/batches") => Operation::Batches,
            _ if under("/files") || under("/uploads") => Operation::Files,
            _ if under("/batches") => Operation::Batches,
            _ if under("/fine_tuning") || under("/fine-tunes") => Operation::FineTuning,
            _ if under("/organization") || under("/organizations") => Operation::Admin,
            // Azure OpenAI is a backend API here; clients speak OpenAI or Anthropic.
            _ => Operation::Other,
        }
    }

    /// Inference operations get a credential by default; every other one only when a route
    /// allows it (`match.operations` / `match.paths`).
    pub fn is_inference(self) -> bool {
        matches!(
            self,
            Operation::ChatCompletions
                | Operation::Completions
                | Operation::Embeddings
                | Operation::Responses
                | Operation::Models
                | Operation::Messages
                | Operation::CountTokens
                | Operation::AudioTranscriptions
                | Operation::AudioTranslations
                | Operation::AudioSpeech
                | Operation::ImagesGenerations
                | Operation::ImagesEdits
                | Operation::ImagesVariations
        )
    }

    /// The method an inference operation uses (models are listed and read with GET; the rest
    /// are POSTs). Any other method (`DELETE /v1/models/{id}`, `GET /v1/chat/completions`)
    /// is an operation a route must allow.
    pub fn inference_method(self) -> http::Method {
        match self {
            Operation::Models => http::Method::GET,
            _ => http::Method::POST,
        }
    }

    /// Whether the body is a JSON object Tollgate reads (`model`, `stream`).
    pub fn has_json_body(self) -> bool {
        self.is_inference() && self != Operation::Models && !self.has_form_body()
    }

    /// Whether the body is `multipart/form-data` with files: its fields before the first file
    /// are read (`model`, `stream`, …) and the files stream through unbuffered.
    pub fn has_form_body(self) -> bool {
        matches!(
            self,
            Operation::AudioTranscriptions
                | Operation::AudioTranslations
                | Operation::ImagesEdits
                | Operation::ImagesVariations
        )
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
            Operation::Files => "files",
            Operation::Batches => "batches",
            Operation::FineTuning => "fine_tuning",
            Operation::Moderations => "moderations",
            Operation::AudioTranscriptions => "audio_transcriptions",
            Operation::AudioTranslations => "audio_translations",
            Operation::AudioSpeech => "audio_speech",
            Operation::ImagesGenerations => "images_generations",
            Operation::ImagesEdits => "images_edits",
            Operation::ImagesVariations => "images_variations",
            Operation::Admin => "admin",
            Operation::Mcp => "mcp",
            Operation::Other => "other",
        }
    }

    /// The operation named `name` (as in [`Operation::as_str`]).
    pub fn from_name(name: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|o| o.as_str() == name)
    }
}

/// `path` without the API base `base` (`/openai/v1/chat/completions` under `/openai/v1` →
/// `/chat/completions`), or `None` when it is not under it. A `*` segment of `base` matches
/// any one segment; `/` is the root (the API's paths start there).
pub fn strip_base<'a>(base: &str, path: &'a str) -> Option<&'a str> {
    let mut rest = path;
    for segment in base.split('/').filter(|s| !s.is_empty()) {
        let tail = rest.strip_prefix('/')?;
        let end = tail.find('/').unwrap_or(tail.len());
        if end == 0 || (segment != "*" && segment != &tail[..end]) {
            return None;
        }
        rest = &tail[end..];
    }
    rest.starts_with('/').then_some(rest)
}

/// The deployment and the rest of an Azure OpenAI deployment path
/// (`/openai/deployments/{deployment}/chat/completions` → `("gpt-4o-prod", "/chat/completions")`),
/// where the model is the deployment and the body may have none
/// (<https://learn.microsoft.com/azure/ai-foundry/openai/reference>).
pub fn azure_deployment(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/openai/deployments/")?;
    let end = rest.find('/')?;
    let (deployment, rest) = rest.split_at(end);
    (!deployment.is_empty() && rest.len() > 1).then_some((deployment, rest))
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
    /// The model is the Azure deployment of the path; the body names none.
    pub model_from_path: bool,
    /// Speech: the characters of `input` (what `tts-1` is priced by).
    pub characters: Option<u64>,
    /// Images: what a per-image price depends on, `quality/size` (`hd/1024x1792`; `size`
    /// alone when no quality is asked).
    pub image_tier: Option<String>,
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
    #[error("{0}")]
    Form(#[from] multipart::FormError),
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
        ..Parsed::default()
    })
}

/// Like [`parse`], plus what `operation` is priced by beyond tokens: the characters of a
/// speech request's `input`, the quality and size of an image request.
pub fn parse_for(operation: Operation, body: &[u8]) -> Result<Parsed, ParseError> {
    let mut parsed = parse(body)?;
    #[derive(serde::Deserialize)]
    struct Extra<'a> {
        #[serde(default, borrow)]
        input: Option<std::borrow::Cow<'a, str>>,
        #[serde(default, borrow)]
        size: Option<std::borrow::Cow<'a, str>>,
        #[serde(default, borrow)]
        quality: Option<std::borrow::Cow<'a, str>>,
    }
    match operation {
        Operation::AudioSpeech | Operation::ImagesGenerations => {
            // A member of another type is the provider's to refuse: nothing is read from it.
            let extra: Option<Extra<'_>> = serde_json::from_slice(body).ok();
            if let Some(e) = extra {
                if operation == Operation::AudioSpeech {
                    parsed.characters = e.input.map(|i| i.chars().count() as u64);
                } else {
                    parsed.image_tier = Some(image_tier(e.quality.as_deref(), e.size.as_deref()));
                }
            }
        }
        _ => {}
    }
    Ok(parsed)
}

/// What a form's text fields say (`model`, `stream`; an image edit's or variation's quality
/// and size). A variation without `model` is `dall-e-2`'s, the one model the endpoint serves.
pub fn parse_form(scanner: &multipart::Scanner, head: &[u8], operation: Operation) -> Result<Parsed, ParseError> {
    let field = |name| scanner.field(head, name);
    let stream = match field("stream").map(str::trim) {
        None | Some("false") | Some("False") | Some("0") => false,
        Some("true") | Some("True") | Some("1") => true,
        Some(_) => return Err(ParseError::StreamType),
    };
    let model = field("model").map(|m| m.trim().to_string());
    let images = matches!(operation, Operation::ImagesEdits | Operation::ImagesVariations);
    Ok(Parsed {
        model: model.or_else(|| (operation == Operation::ImagesVariations).then(|| "dall-e-2".to_string())),
        stream,
        image_tier: images.then(|| image_tier(field("quality"), field("size"))),
        ..Parsed::default()
    })
}

/// `quality/size` of an image request, as per-image prices are keyed (sizes default to
/// `1024x1024`, the APIs' default; `auto` stays `auto`).
fn image_tier(quality: Option<&str>, size: Option<&str>) -> String {
    let size = size.map(str::trim).filter(|s| !s.is_empty()).unwrap_or("1024x1024");
    match quality.map(str::trim).filter(|q| !q.is_empty()) {
        Some(q) => format!("{q}/{size}"),
        None => size.to_string(),
    }
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
    /// 421: the name the client used is not served at the address it connected to.
    Misdirected,
    Upstream,
    /// 503: nothing can serve the request now.
    Unavailable,
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
                ErrorKind::Misdirected => ("invalid_request_error", "misdirected_request"),
                ErrorKind::Upstream => ("api_error", "bad_gateway"),
                ErrorKind::Unavailable => ("api_error", "service_unavailable"),
                ErrorKind::Timeout => ("api_error", "timeout"),
                ErrorKind::Internal => ("api_error", "internal_error"),
                ErrorKind::RateLimited => ("rate_limit_error", "rate_limit_exceeded"),
            };
            serde_json::json!({"error": {"message": message, "type": typ, "param": null, "code": code}})
        }
        ApiSchema::Anthropic => {
            let typ = match kind {
                ErrorKind::InvalidRequest | ErrorKind::Misdirected => "invalid_request_error",
                ErrorKind::TooLarge => "request_too_large",
                ErrorKind::NotFound => "not_found_error",
                ErrorKind::PermissionDenied => "permission_error",
                ErrorKind::Upstream | ErrorKind::Internal => "api_error",
                ErrorKind::Unavailable => "overloaded_error",
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
        assert_eq!(o("/v1/files"), Files);
        assert_eq!(o("/v1/files/file-1/content"), Files);
        assert_eq!(o("/v1/fine_tuning/jobs"), FineTuning);
        assert_eq!(o("/v1/organization/admin_api_keys"), Admin);
        assert_eq!(o("/v1/batches"), Batches);
        assert_eq!(a("/v1/messages/batches/x"), Batches);
        assert_eq!(o("/v1/models/a/b"), Other, "a model id is one segment");
        assert_eq!(o("/v1/chat/completions/x"), Other);
        assert_eq!(o("/v1/filesystem"), Other);
        assert!(ChatCompletions.is_inference() && !Files.is_inference() && !Other.is_inference());
        for op in Operation::ALL {
            assert_eq!(Operation::from_name(op.as_str()), Some(op));
        }
        assert_eq!(a("/v1/messages"), Messages);
        assert_eq!(a("/v1/messages/count_tokens"), CountTokens);
        assert_eq!(a("/v1/chat/completions"), Other);
        assert_eq!(o("/v1/audio/transcriptions"), AudioTranscriptions);
        assert_eq!(o("/v1/audio/translations"), AudioTranslations);
        assert_eq!(o("/v1/audio/speech"), AudioSpeech);
        assert_eq!(o("/v1/images/generations"), ImagesGenerations);
        assert_eq!(o("/v1/images/edits"), ImagesEdits);
        assert_eq!(o("/v1/images/variations"), ImagesVariations);
        assert!(ImagesVariations.has_form_body() && ImagesVariations.is_inference());
        assert!(AudioTranscriptions.has_form_body() && !AudioTranscriptions.has_json_body());
        assert!(AudioSpeech.has_json_body() && ImagesEdits.is_inference());
        assert_eq!(a("/v1/audio/speech"), Other);
    }

    /// Every exact path is detected as its operation, and under an Azure deployment as well
    /// when Azure serves it there: the one table both read.
    #[test]
    fn exact_paths_round_trip() {
        for schema in [ApiSchema::Openai, ApiSchema::Anthropic] {
            for (op, path) in Operation::exact(schema) {
                assert_eq!(Operation::detect(schema, path), op, "{path}");
                assert_eq!(op.v1_path(), Some(path));
                let azure = format!("/openai/deployments/d/{}", &path[4..]);
                let expected = if op.on_azure_deployment() { op } else { Operation::Other };
                assert_eq!(Operation::detect(ApiSchema::Openai, &azure), expected, "{azure}");
            }
        }
        assert_eq!(Operation::exact(ApiSchema::Openai).count(), 11);
        assert_eq!(Operation::Models.v1_path(), None);
    }

    #[test]
    fn azure_deployment_paths_are_their_operations() {
        use Operation::*;
        let o = |p| Operation::detect(ApiSchema::Openai, p);
        assert_eq!(o("/openai/deployments/gpt-4o-prod/chat/completions"), ChatCompletions);
        assert_eq!(o("/openai/deployments/emb/embeddings"), Embeddings);
        assert_eq!(o("/openai/deployments/w/audio/transcriptions"), AudioTranscriptions);
        assert_eq!(o("/openai/deployments/t/audio/speech"), AudioSpeech);
        assert_eq!(o("/openai/deployments/d/images/generations"), ImagesGenerations);
        assert_eq!(
            o("/openai/deployments/d/files"),
            Other,
            "only inference under a deployment"
        );
        assert_eq!(
            o("/openai/deployments/d/images/variations"),
            Other,
            "Azure serves no variations"
        );
        assert_eq!(o("/openai/deployments//chat/completions"), Other);
        assert_eq!(o("/openai/deployments/d"), Other);
        let anthropic = Operation::detect(ApiSchema::Anthropic, "/openai/deployments/d/chat/completions");
        assert_eq!(anthropic, Other);
        assert_eq!(
            azure_deployment("/openai/deployments/gpt-4o-prod/chat/completions"),
            Some(("gpt-4o-prod", "/chat/completions"))
        );
    }

    #[test]
    fn image_forms_say_their_tier_and_a_variation_is_dall_e_2s() {
        let form = |fields: &str| {
            let body = format!(
                "{fields}--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\r\nPNG\r\n--b--\r\n"
            );
            let mut s = multipart::Scanner::new("b");
            s.feed(body.as_bytes()).unwrap();
            (s, body)
        };
        let size = "--b\r\nContent-Disposition: form-data; name=\"size\"\r\n\r\n512x512\r\n";
        let (s, body) = form(size);
        let p = parse_form(&s, body.as_bytes(), Operation::ImagesVariations).unwrap();
        assert_eq!(
            (p.model.as_deref(), p.image_tier.as_deref()),
            (Some("dall-e-2"), Some("512x512"))
        );
        let p = parse_form(&s, body.as_bytes(), Operation::ImagesEdits).unwrap();
        assert_eq!(
            (p.model, p.image_tier.as_deref()),
            (None, Some("512x512")),
            "edits name no default"
        );
        let named = format!("--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\ndall-e-2-x\r\n{size}");
        let (s, body) = form(&named);
        let p = parse_form(&s, body.as_bytes(), Operation::ImagesVariations).unwrap();
        assert_eq!(p.model.as_deref(), Some("dall-e-2-x"), "a named model is kept");
        let p = parse_form(&s, body.as_bytes(), Operation::AudioTranscriptions).unwrap();
        assert_eq!(p.image_tier, None);
    }

    #[test]
    fn speech_and_image_requests_say_what_prices_them() {
        let p = parse_for(
            Operation::AudioSpeech,
            r#"{"model":"tts-1","input":"héllo","voice":"alloy"}"#.as_bytes(),
        )
        .unwrap();
        assert_eq!(p.characters, Some(5));
        let p = parse_for(
            Operation::ImagesGenerations,
            br#"{"model":"dall-e-3","prompt":"x","quality":"hd"}"#,
        )
        .unwrap();
        assert_eq!(p.image_tier.as_deref(), Some("hd/1024x1024"));
        let p = parse_for(
            Operation::ImagesGenerations,
            br#"{"model":"dall-e-2","prompt":"x","size":"512x512"}"#,
        )
        .unwrap();
        assert_eq!(p.image_tier.as_deref(), Some("512x512"));
        assert_eq!(
            parse_for(Operation::AudioSpeech, br#"{"model":5}"#),
            Err(ParseError::ModelType)
        );
    }

    #[test]
    fn operations_are_detected_under_a_providers_base_path() {
        use Operation::*;
        let o = |base, p| Operation::detect_under(ApiSchema::Openai, Some(base), p);
        assert_eq!(o("/openai/v1", "/openai/v1/chat/completions"), ChatCompletions);
        assert_eq!(o("/v1/openai", "/v1/openai/embeddings"), Embeddings);
        assert_eq!(o("/inference/v1", "/inference/v1/completions"), Completions);
        assert_eq!(o("/api/v1", "/api/v1/models"), Models);
        assert_eq!(o("/v1beta/openai", "/v1beta/openai/chat/completions/"), ChatCompletions);
        assert_eq!(
            o("/compatibility/v1", "/compatibility/v1/chat/completions"),
            ChatCompletions
        );
        assert_eq!(o("/", "/chat/completions"), ChatCompletions);
        let vertex = "/v1/projects/*/locations/*/endpoints/openapi";
        assert_eq!(
            o(
                vertex,
                "/v1/projects/p-1/locations/us-central1/endpoints/openapi/chat/completions"
            ),
            ChatCompletions
        );
        assert_eq!(
            o(vertex, "/v1/projects//locations/x/endpoints/openapi/chat/completions"),
            Other
        );
        // `/v1` still works, and what is not inference under the base is still gated.
        assert_eq!(o("/openai/v1", "/v1/chat/completions"), ChatCompletions);
        assert_eq!(o("/openai/v1", "/openai/v1/files/f-1"), Files);
        assert_eq!(o("/openai/v1", "/openai/v1/organization/users"), Admin);
        assert_eq!(o("/openai/v1", "/openai/chat/completions"), Other);
        assert_eq!(o("/openai/v1", "/openai/v1x/chat/completions"), Other);
        assert_eq!(
            Operation::detect(ApiSchema::Openai, "/chat/completions"),
            Other,
            "no base: /v1 only"
        );
        let a = Operation::detect_under(ApiSchema::Anthropic, Some("/anthropic/v1"), "/anthropic/v1/messages");
        assert_eq!(a, Messages);
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
                ..Parsed::default()
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
