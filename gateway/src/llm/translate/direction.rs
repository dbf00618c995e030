//! The one interface every translation direction implements, and what it hands the proxy.
//!
//! A [`Direction`] owns everything that differs between a client's API and a backend's: whether
//! it applies (client schema × operation × backend schema), the upstream path and query, the
//! request body (or bodies, for a fan-out), which schema the usage meter reads, and the
//! translators of JSON answers, errors and streams. The proxy asks [`super::find`] for the
//! direction of each attempt and never looks inside it.

use bytes::Bytes;
use serde_json::Value;

use super::Unsupported;
use crate::llm::{ApiSchema, Operation, Parsed};

/// The client's request, as the proxy read it.
pub struct ClientRequest<'a> {
    pub schema: ApiSchema,
    pub operation: Operation,
    /// Path and query as the client sent them.
    pub path_and_query: &'a str,
    /// The body and what was parsed from it, when the operation's body is read (JSON).
    pub body: Option<(&'a Bytes, &'a Parsed)>,
    /// A multipart form's head, when the operation's body is a form (its files stream).
    pub form: Option<FormHead<'a>>,
    /// The route's model for this backend, when it overrides the client's.
    pub model_override: Option<&'a str>,
}

/// What was read of a multipart form: its head (the text fields) and what they say.
#[derive(Clone, Copy)]
pub struct FormHead<'a> {
    pub head: &'a Bytes,
    pub parsed: &'a Parsed,
    /// Where the `model` field's value lies in `head`.
    pub model_field: Option<&'a crate::llm::multipart::Field>,
}

impl ClientRequest<'_> {
    /// What was parsed from the client's body (read whole, or a form's head).
    pub fn parsed(&self) -> Option<&Parsed> {
        self.body.map(|(_, p)| p).or(self.form.map(|f| f.parsed))
    }

    /// The model the backend is asked for: the route's override, else the client's.
    pub fn model(&self) -> &str {
        self.model_override
            .or(self.parsed().and_then(|p| p.model.as_deref()))
            .unwrap_or_default()
    }

    /// Whether the client asked for a stream.
    pub fn stream(&self) -> bool {
        self.parsed().is_some_and(|p| p.stream)
    }

    /// Whether the client asked for stream usage (`stream_options.include_usage`).
    pub fn include_usage(&self) -> bool {
        self.parsed().is_some_and(|p| p.include_usage == Some(true))
    }

    /// The body, which every translating direction needs read.
    pub fn json_body(&self) -> Result<(&Bytes, &Parsed), Unsupported> {
        self.body
            .ok_or_else(|| Unsupported("this request's body cannot be translated (it is not read)".into()))
    }
}

/// What a direction needs to know about the backend.
pub struct BackendSpec<'a> {
    pub name: &'a str,
    pub schema: ApiSchema,
    /// Vertex: the Google Cloud project.
    pub project: Option<&'a str>,
    /// Bedrock and Vertex: the region.
    pub region: Option<&'a str>,
    /// Azure OpenAI: the deployment (default: the model).
    pub deployment: Option<&'a str>,
    /// Azure OpenAI: `api-version`.
    pub api_version: &'a str,
}

/// The body (or bodies) an attempt sends.
pub enum UpstreamBody {
    /// The client's own body, streamed through unread (a form: its head as read, then the
    /// rest).
    Client,
    /// A form's head rewritten (the route's model for this backend), then the rest of the
    /// client's body as it comes.
    ClientHead(Bytes),
    /// One body, known in full.
    Bytes(Bytes),
    /// One upstream call per body (backends that take few inputs per call), answered as one:
    /// `combine` joins the answers in order.
    FanOut {
        bodies: Vec<Bytes>,
        combine: fn(&[Value]) -> Value,
    },
}

/// Whole JSON answers and errors → the client's schema: `(body, upstream status)`.
pub type JsonTranslator = Box<dyn Fn(&[u8], u16) -> Value + Send + Sync>;

/// Streams, chunk by chunk: bytes of the backend's stream in, bytes of the client's out
/// (possibly none while an event is incomplete).
pub trait StreamTranslator: Send + Sync {
    fn feed(&mut self, bytes: &[u8]) -> Bytes;
}

/// Two translators in a row (Anthropic clients served by Gemini or Bedrock go through OpenAI
/// chat).
pub struct Chained<A, B>(pub A, pub B);

impl<A: StreamTranslator, B: StreamTranslator> StreamTranslator for Chained<A, B> {
    fn feed(&mut self, bytes: &[u8]) -> Bytes {
        let mid = self.0.feed(bytes);
        self.1.feed(&mid)
    }
}

/// How the answer comes back to the client.
pub struct Answer {
    /// The schema and operation the usage meter reads the backend's bytes as.
    pub meter: (ApiSchema, Operation),
    /// The meter removes the stream usage chunk Tollgate asked for on the client's behalf.
    pub strip_usage: bool,
    /// Answers are rewritten into the client's schema (None: passed through as received).
    pub translate: Option<Translate>,
}

/// The answer translators of a translating direction.
pub struct Translate {
    /// Successful streams (None: the operation does not stream).
    pub stream: Option<Box<dyn StreamTranslator>>,
    /// JSON answers and every error.
    pub json: JsonTranslator,
}

/// What one attempt sends upstream and how its answer comes back.
pub struct Upstream {
    /// Path and query, appended to the backend's URL prefix.
    pub path: String,
    pub body: UpstreamBody,
    /// Translated bodies are JSON whatever the client labelled its own (`curl -d` says
    /// form-urlencoded; Bedrock InvokeModel reads the body type from this header).
    pub json_content_type: bool,
    /// Headers added when the client's request lacks them (e.g. `anthropic-version`).
    pub default_headers: &'static [(&'static str, &'static str)],
    /// Tollgate asked upstream for stream usage the client did not ask for.
    pub usage_requested_by_gateway: bool,
    pub answer: Answer,
}

impl Upstream {
    /// A translated call: a JSON body sent to `path`, the backend's bytes metered as `meter`
    /// and turned into the client's schema by `stream` (successful streams) and `json`
    /// (answers and errors).
    pub fn translated(
        path: String,
        body: UpstreamBody,
        meter: (ApiSchema, Operation),
        stream: Option<Box<dyn StreamTranslator>>,
        json: JsonTranslator,
    ) -> Upstream {
        Upstream {
            path,
            body,
            json_content_type: true,
            default_headers: &[],
            usage_requested_by_gateway: false,
            answer: Answer {
                meter,
                strip_usage: false,
                translate: Some(Translate { stream, json }),
            },
        }
    }
}

/// One way of serving a client's API from a backend's.
pub trait Direction: Sync {
    /// As named in the audit record (`translation`).
    fn name(&self) -> &'static str;
    /// Whether this direction serves `operation` requests of `client` from `backend`.
    fn applies(&self, client: ApiSchema, operation: Operation, backend: ApiSchema) -> bool;
    /// The upstream call for this request. A feature the backend cannot express is refused
    /// with [`Unsupported`], naming it; nothing is dropped silently.
    fn request(&self, req: &ClientRequest<'_>, backend: &BackendSpec<'_>) -> Result<Upstream, Unsupported>;
}

/// A JSON translator: `ok` for successful answers that parse, `err` for everything else.
pub fn json_translator(
    ok: impl Fn(&Value) -> Value + Send + Sync + 'static,
    err: impl Fn(&[u8], u16) -> Value + Send + Sync + 'static,
) -> JsonTranslator {
    Box::new(
        move |body, status| match ((200..300).contains(&status), serde_json::from_slice::<Value>(body)) {
            (true, Ok(v)) => ok(&v),
            _ => err(body, status),
        },
    )
}

/// A path segment, percent-encoded (RFC 3986 unreserved characters kept): model and
/// deployment names become one segment whatever they hold.
pub fn path_segment(s: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, KEEP).to_string()
}

/// A translated single body.
pub fn json_body(v: &Value) -> UpstreamBody {
    UpstreamBody::Bytes(Bytes::from(v.to_string()))
}
