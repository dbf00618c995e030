//! The L7 request pipeline: explicit phases over one per-request context (pingora's model,
//! see docs/phases.md):
//!
//! `request_filter` (identify provider and operation, read and parse the body within the
//! limit) → `upstream_peer` (route, pick the backend, its credential) → `call_upstream`
//! (strip client credentials, inject the backend's, rewrite `model`, send) →
//! `response_filter` (stream the answer back) → `logging` (always, when the response body
//! ends or is dropped).

use std::{
    convert::Infallible,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};

mod fanout;
mod respond;

use crate::{
    accounting::audit::{self, Attempt, AuditRecord, AuditWorkload, CredentialRef, Destination},
    auth,
    config::{l7::RetryOn, ApiSchema},
    identity::Workload,
    limits,
    llm::{
        self,
        translate::{self, Translation},
        ErrorKind, Operation,
    },
    route::{self, RouteInput, Snapshot},
    socket::{ClientAddr, OrigDstAddr},
    telemetry::{jsonl, trace::TraceContext, Metrics},
};

/// What the proxy shares across connections.
pub struct L7 {
    /// Routes, backends and clients: swapped whole on a valid config reload.
    pub snapshot: ArcSwap<Snapshot>,
    pub credentials: Arc<auth::Store>,
    pub metrics: Arc<Metrics>,
    /// Where audit records go.
    pub audit: jsonl::Sink,
    /// Where spans go, when trace export is on.
    pub spans: Option<crate::telemetry::otlp::SpanSink>,
    /// Backend ejection and cool-down state (kept across reloads).
    pub health: Arc<route::health::Health>,
    /// Limit counters.
    pub limits: Arc<limits::Store>,
}

/// What is known about the connection a request arrived on.
#[derive(Debug)]
pub struct ConnCtx {
    pub id: u64,
    pub client: ClientAddr,
    pub orig: OrigDstAddr,
    pub sni: Option<String>,
    pub tls: bool,
    pub workload: Workload,
    /// Provider the kernel matched by destination address.
    pub kernel_provider: Option<usize>,
    /// Requests served on this connection so far.
    pub requests: std::sync::atomic::AtomicU64,
}

/// Errors of response bodies: upstream errors, or Tollgate's own stream timeouts.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub(crate) type RespBody = BoxBody<Bytes, BoxError>;

/// Serves HTTP/1.1 and h2 (by ALPN or preface) on one intercepted connection.
pub async fn serve<IO>(io: IO, conn: Arc<ConnCtx>, l7: Arc<L7>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let (conn, l7) = (conn.clone(), l7.clone());
        async move { Ok::<_, Infallible>(handle(&l7, conn, req).await) }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    if let Err(e) = builder.serve_connection(TokioIo::new(io), service).await {
        tracing::debug!(component = "proxy", error = %e, "connection ended with an error");
    }
}

/// Where a failure came from (pingora's ErrorSource).
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Client,
    Upstream,
    Proxy,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Upstream => "upstream",
            Side::Proxy => "proxy",
        }
    }
}

/// Every way a request can fail before its response starts.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("request body exceeds the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("{0}")]
    BadBody(llm::ParseError),
    #[error("could not read the request body: {0}")]
    ClientBody(String),
    #[error("no route for this request ({0}) and the provider has no default backend")]
    NoRoute(String),
    #[error("credential {0} for the backend is not available")]
    CredentialMissing(String),
    #[error("backend {backend} unreachable: {message}")]
    Upstream { backend: String, message: String },
    #[error("backend {backend} sent no response headers within {timeout:?}")]
    UpstreamTimeout { backend: String, timeout: Duration },
    #[error("the whole request exceeded its {timeout:?} budget")]
    TotalTimeout { timeout: Duration },
    #[error("{0}")]
    NoBackend(String),
    #[error("limit {limit} exceeded ({kind}); retry in {retry_after}s")]
    LimitExceeded {
        limit: String,
        kind: &'static str,
        retry_after: u64,
    },
    #[error("{0}: refusing requests (limitStore.failMode: closed)")]
    LimitStore(String),
    #[error("{0}")]
    Untranslatable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ProxyError {
    /// Metric and record label. Exhaustive on purpose: a new variant must be classified here.
    pub fn reason(&self) -> &'static str {
        match self {
            ProxyError::BodyTooLarge { .. } => "body_too_large",
            ProxyError::BadBody(_) => "bad_body",
            ProxyError::ClientBody(_) => "client_body",
            ProxyError::NoRoute(_) => "no_route",
            ProxyError::CredentialMissing(_) => "credential_missing",
            ProxyError::Upstream { .. } => "upstream_unreachable",
            ProxyError::UpstreamTimeout { .. } => "upstream_timeout",
            ProxyError::TotalTimeout { .. } => "total_timeout",
            ProxyError::NoBackend(_) => "no_backend_available",
            ProxyError::LimitExceeded { .. } => "limit_exceeded",
            ProxyError::LimitStore(_) => "limit_store_unavailable",
            ProxyError::Untranslatable(_) => "untranslatable",
            ProxyError::Internal(_) => "internal",
        }
    }

    pub fn side(&self) -> Side {
        match self {
            ProxyError::BodyTooLarge { .. } | ProxyError::BadBody(_) | ProxyError::ClientBody(_) => Side::Client,
            ProxyError::LimitExceeded { .. } | ProxyError::Untranslatable(_) => Side::Client,
            ProxyError::Upstream { .. } | ProxyError::UpstreamTimeout { .. } | ProxyError::TotalTimeout { .. } => {
                Side::Upstream
            }
            ProxyError::NoBackend(_) => Side::Upstream,
            ProxyError::NoRoute(_)
            | ProxyError::CredentialMissing(_)
            | ProxyError::LimitStore(_)
            | ProxyError::Internal(_) => Side::Proxy,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::BadBody(_) | ProxyError::ClientBody(_) => StatusCode::BAD_REQUEST,
            ProxyError::NoRoute(_) => StatusCode::NOT_FOUND,
            ProxyError::CredentialMissing(_) | ProxyError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::Upstream { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout { .. } | ProxyError::TotalTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::NoBackend(_) | ProxyError::LimitStore(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::LimitExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::Untranslatable(_) => StatusCode::BAD_REQUEST,
        }
    }

    fn kind(&self) -> ErrorKind {
        match self {
            ProxyError::BodyTooLarge { .. } => ErrorKind::TooLarge,
            ProxyError::BadBody(_) | ProxyError::ClientBody(_) => ErrorKind::InvalidRequest,
            ProxyError::NoRoute(_) => ErrorKind::NotFound,
            ProxyError::CredentialMissing(_) | ProxyError::Internal(_) => ErrorKind::Internal,
            ProxyError::Upstream { .. } | ProxyError::NoBackend(_) | ProxyError::LimitStore(_) => ErrorKind::Upstream,
            ProxyError::UpstreamTimeout { .. } | ProxyError::TotalTimeout { .. } => ErrorKind::Timeout,
            ProxyError::LimitExceeded { .. } => ErrorKind::RateLimited,
            ProxyError::Untranslatable(_) => ErrorKind::InvalidRequest,
        }
    }

    fn to_response(&self, schema: ApiSchema) -> Response<RespBody> {
        let body = llm::error_body(schema, self.kind(), &format!("tollgate: {self}"));
        let mut resp = Response::new(full(body));
        *resp.status_mut() = self.status();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let ProxyError::LimitExceeded { retry_after, .. } = self {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
        }
        resp
    }
}

pub(crate) fn full(b: Bytes) -> RespBody {
    Full::new(b).map_err(|never| match never {}).boxed()
}

/// Per-request state shared by all phases (pingora's `CTX`). The audit record is filled in as
/// the phases learn things and written once by `logging`.
pub(crate) struct RequestCtx {
    pub(crate) started: Instant,
    pub(crate) started_at: SystemTime,
    pub(crate) snapshot: Arc<Snapshot>,
    pub(crate) schema: ApiSchema,
    pub(crate) operation: Operation,
    pub(crate) trace: TraceContext,
    pub(crate) audit: AuditRecord,
    /// Tollgate asked upstream for stream usage the client did not ask for.
    pub(crate) strip_usage: bool,
    /// Limits reserved at admission, reconciled when the response ends.
    pub(crate) reservation: Option<limits::Reservation>,
    /// Deadline of the whole request (`timeouts.total`).
    pub(crate) total_deadline: Option<Instant>,
    /// Longest gap between two response chunks (`timeouts.idle`).
    pub(crate) idle_timeout: Option<Duration>,
    /// The translation of the attempt that answered, and whether the client asked for
    /// stream usage.
    pub(crate) translation: Option<(Translation, bool)>,
}

async fn handle(l7: &L7, conn: Arc<ConnCtx>, req: Request<Incoming>) -> Response<RespBody> {
    let snapshot = l7.snapshot.load_full();
    let host = conn.sni.clone().or_else(|| {
        req.headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(String::from)
            .or_else(|| req.uri().host().map(String::from))
    });
    let provider = snapshot.provider_for(host.as_deref(), conn.kernel_provider);
    let schema = provider
        .map(|p| snapshot.config.providers[p].schema)
        .unwrap_or_default();
    let operation = Operation::detect(schema, req.uri().path());
    let trace = TraceContext::from_headers(req.headers());
    let n = conn.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let audit = AuditRecord {
        record: "request".into(),
        schema_version: audit::SCHEMA_VERSION,
        time: humantime::format_rfc3339_micros(SystemTime::now()).to_string(),
        trace_id: trace.trace_id_hex(),
        span_id: trace.span_id_hex(),
        request_id: format!("{}-{}", conn.id, n),
        workload: AuditWorkload::from_workload(&conn.workload),
        destination: Destination {
            ip: conn.orig.0.ip().to_string(),
            port: conn.orig.0.port(),
            sni: conn.sni.clone(),
            tls: conn.tls,
        },
        provider: provider.map(|p| snapshot.config.providers[p].name.clone()),
        schema: schema.as_str().into(),
        operation: operation.as_str().into(),
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        rule: "none".into(),
        translation: "none".into(),
        usage_status: "missing".into(),
        ..Default::default()
    };
    let mut ctx = RequestCtx {
        started: Instant::now(),
        started_at: SystemTime::now(),
        snapshot,
        schema,
        operation,
        trace,
        audit,
        strip_usage: false,
        reservation: None,
        total_deadline: None,
        idle_timeout: None,
        translation: None,
    };
    let resp = match proxy(l7, &conn, &mut ctx, req).await {
        Ok(resp) => resp,
        Err(e) => {
            ctx.audit.error = Some(e.to_string());
            ctx.audit.error_side = Some(e.side().as_str().into());
            l7.metrics.request_error(e.reason());
            e.to_response(ctx.schema)
        }
    };
    respond::wrap(resp, ctx, l7)
}

async fn proxy(
    l7: &L7,
    conn: &ConnCtx,
    ctx: &mut RequestCtx,
    req: Request<Incoming>,
) -> Result<Response<RespBody>, ProxyError> {
    // request_filter: the body is read (bounded) only for operations whose JSON we route on.
    let (parts, body) = req.into_parts();
    let mut read = None;
    let mut streamed_body = None;
    if ctx.operation.has_json_body() && parts.method == http::Method::POST {
        let bytes = read_body(body, ctx.snapshot.config.max_request_body).await?;
        let parsed = llm::parse(&bytes).map_err(ProxyError::BadBody)?;
        ctx.audit.model = parsed.model.clone();
        ctx.audit.stream = parsed.stream;
        read = Some((bytes, parsed));
    } else {
        streamed_body = Some(body.boxed());
    }

    // upstream_peer: route, then the backends in the order they will be tried.
    let snapshot = ctx.snapshot.clone();
    let config = &snapshot.config;
    let input = RouteInput {
        provider: ctx.audit.provider.as_deref(),
        model: ctx.audit.model.as_deref(),
        headers: &parts.headers,
        workload: &conn.workload,
    };
    let route = route::select_route(config, &input);
    let mut plan: Vec<(usize, Option<&str>)> = match route {
        Some(r) => {
            ctx.audit.route = Some(r.name.clone());
            ctx.audit.rule = "route".into();
            route::plan(r)
                .into_iter()
                .map(|b| (b.backend, b.model.as_deref()))
                .collect()
        }
        None => {
            let default = config
                .providers
                .iter()
                .find(|p| Some(&p.name) == ctx.audit.provider.as_ref())
                .and_then(|p| p.backend)
                .ok_or_else(|| {
                    ProxyError::NoRoute(format!(
                        "provider {}, model {}",
                        ctx.audit.provider.as_deref().unwrap_or("unknown"),
                        ctx.audit.model.as_deref().unwrap_or("none")
                    ))
                })?;
            ctx.audit.rule = "provider_default".into();
            vec![(default, None)]
        }
    };
    let timeout = route
        .map(|r| r.timeout)
        .unwrap_or(crate::config::l7::DEFAULT_ROUTE_TIMEOUT);
    let mut attempts_left = match (route, &read) {
        // A body streamed through unread cannot be sent twice.
        (_, None) => 1,
        (Some(r), Some(_)) => r.retry_attempts,
        (None, Some(_)) => 1,
    };
    let retry_on = route
        .map(|r| r.retry_on.as_slice())
        .unwrap_or(&crate::config::l7::DEFAULT_RETRY_ON);
    let retry_statuses: &[u16] = route.map(|r| r.retry_statuses.as_slice()).unwrap_or(&[]);
    ctx.total_deadline = route.and_then(|r| r.total_timeout).map(|t| Instant::now() + t);
    ctx.idle_timeout = route.and_then(|r| r.idle_timeout);
    ctx.audit.timeout_ms = Some(timeout.as_millis() as u64);
    // Ejected and cooling-down backends go last: they are tried only when nothing else is left.
    let all_out = plan.iter().all(|(b, _)| l7.health.is_out(&config.backends[*b].name));
    if !all_out {
        plan.retain(|(b, _)| !l7.health.is_out(&config.backends[*b].name));
    }

    // admit: reserve against every limit that counts this request (once, whatever the attempts).
    if !config.limits.is_empty() {
        admit(
            l7,
            conn,
            ctx,
            read.as_ref().map(|(b, p)| (b.len(), p)),
            config.backends[plan[0].0].name.as_str(),
        )
        .await?;
    }

    // call_upstream: one attempt per planned backend, within the attempt budget.
    let mut base_headers = parts.headers;
    strip_hop_by_hop(&mut base_headers);
    base_headers.remove(header::HOST);
    base_headers.remove(header::CONTENT_LENGTH);
    auth::strip_client_credentials(&mut base_headers);
    // Answers are metered (and may be translated) as they pass: ask for them uncompressed.
    // The client's own `accept-encoding` only decides what it may receive, and identity is
    // always acceptable (RFC 9110 §12.5.3).
    base_headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    if let Ok(v) = HeaderValue::from_str(&ctx.trace.traceparent()) {
        base_headers.insert("traceparent", v);
    }
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let mut last_error: Option<ProxyError> = None;
    for (index, model_override) in plan {
        if attempts_left == 0 {
            break;
        }
        let backend = &config.backends[index];
        if !all_out {
            if let route::health::Availability::Unavailable(_) = l7.health.check(&backend.name) {
                continue;
            }
        }
        attempts_left -= 1;
        ctx.audit.backend = Some(backend.name.clone());
        ctx.audit.served_model = model_override.map(String::from).or_else(|| ctx.audit.model.clone());
        let credential = match &backend.credential {
            Some(name) => match l7.credentials.get(name) {
                Some(c) => {
                    ctx.audit.credential = Some(CredentialRef {
                        name: c.name.clone(),
                        fingerprint: c.fingerprint.clone(),
                    });
                    Some(c)
                }
                None => {
                    let e = ProxyError::CredentialMissing(name.clone());
                    ctx.audit.attempts.push(Attempt {
                        backend: backend.name.clone(),
                        status: None,
                        error: Some(e.to_string()),
                        duration_ms: 0.0,
                    });
                    last_error = Some(e);
                    continue;
                }
            },
            None => None,
        };
        // The translation is chosen per attempt: a fallback may cross schemas.
        let translation = match (ctx.schema, ctx.operation, backend.schema) {
            (client, _, server) if client == server => Translation::None,
            (ApiSchema::Openai, Operation::ChatCompletions, ApiSchema::Anthropic) => Translation::OpenAiChatToAnthropic,
            (ApiSchema::Anthropic, Operation::Messages, ApiSchema::Openai) => Translation::AnthropicToOpenAiChat,
            (
                ApiSchema::Openai,
                Operation::ChatCompletions | Operation::Completions | Operation::Embeddings,
                ApiSchema::AzureOpenai,
            ) => Translation::OpenAiToAzure,
            (ApiSchema::Openai, Operation::ChatCompletions, ApiSchema::Gemini | ApiSchema::Vertex) => {
                Translation::OpenAiChatToGemini
            }
            (ApiSchema::Openai, Operation::ChatCompletions, ApiSchema::Bedrock) => Translation::OpenAiChatToBedrock,
            (ApiSchema::Anthropic, Operation::Messages, ApiSchema::Gemini | ApiSchema::Vertex) => {
                Translation::AnthropicToGemini
            }
            (ApiSchema::Anthropic, Operation::Messages, ApiSchema::Bedrock) => Translation::AnthropicToBedrock,
            (ApiSchema::Openai, Operation::Embeddings, ApiSchema::Gemini) => {
                Translation::OpenAiEmbeddingsToGemini { base64: false }
            }
            (ApiSchema::Openai, Operation::Embeddings, ApiSchema::Vertex) => {
                Translation::OpenAiEmbeddingsToVertex { base64: false }
            }
            (ApiSchema::Openai, Operation::Embeddings, ApiSchema::Bedrock) => {
                Translation::OpenAiEmbeddingsToBedrockTitan { base64: false }
            }
            (client, op, server) => {
                let e = ProxyError::Untranslatable(format!(
                    "backend {} speaks {}; {} {} requests cannot be translated to it",
                    backend.name,
                    server.as_str(),
                    client.as_str(),
                    op.as_str()
                ));
                ctx.audit.attempts.push(Attempt {
                    backend: backend.name.clone(),
                    status: None,
                    error: Some(e.to_string()),
                    duration_ms: 0.0,
                });
                last_error = Some(e);
                continue;
            }
        };
        ctx.translation = None;
        ctx.audit.translation = translation.as_str().into();
        // Translated bodies are rebuilt whole; the passthrough arm below decides these itself.
        ctx.strip_usage = false;
        ctx.audit.usage_requested_by_gateway = false;
        // The model a translated request names: the route's override, else the client's.
        let model = model_override
            .or(read.as_ref().and_then(|(_, parsed)| parsed.model.as_deref()))
            .unwrap_or_default();
        let mut upstream_path = path_and_query.clone();
        // The body a signing backend signs (the translated one is known here in full).
        let mut to_sign: Option<Bytes> = None;
        // Bodies of a fan-out attempt (one upstream call each), instead of `body`.
        let mut fan_out: Option<Vec<Bytes>> = None;
        // Anthropic clients reach Gemini and Bedrock through OpenAI chat: their request is
        // translated to it first (asking for stream usage, which becomes `message_delta.usage`).
        let via_openai = match (&read, translation) {
            (Some((bytes, _)), Translation::AnthropicToGemini | Translation::AnthropicToBedrock) => Some(Bytes::from(
                translate::anthropic_to_openai_chat(bytes, model)
                    .map_err(|e| ProxyError::Untranslatable(e.0))?
                    .to_string(),
            )),
            _ => None,
        };
        let body = match (&read, translation) {
            (Some((bytes, _)), Translation::OpenAiEmbeddingsToVertex { .. }) => {
                let (bodies, base64) = translate::openai_embeddings_to_vertex(bytes, model)
                    .map_err(|e| ProxyError::Untranslatable(e.0))?;
                ctx.translation = Some((Translation::OpenAiEmbeddingsToVertex { base64 }, false));
                upstream_path = format!(
                    "/v1/projects/{}/locations/{}/publishers/google/models/{}:predict",
                    backend.project.as_deref().unwrap_or_default(),
                    backend.region.as_deref().unwrap_or_default(),
                    auth::sigv4::path_segment(model)
                );
                fan_out = Some(bodies.iter().map(|b| Bytes::from(b.to_string())).collect());
                full_req(Bytes::new())
            }
            (Some((bytes, _)), Translation::OpenAiEmbeddingsToBedrockTitan { .. }) => {
                let (bodies, base64) =
                    translate::openai_embeddings_to_titan(bytes, model).map_err(|e| ProxyError::Untranslatable(e.0))?;
                ctx.translation = Some((Translation::OpenAiEmbeddingsToBedrockTitan { base64 }, false));
                upstream_path = format!("/model/{}/invoke", auth::sigv4::path_segment(model));
                fan_out = Some(bodies.iter().map(|b| Bytes::from(b.to_string())).collect());
                full_req(Bytes::new())
            }
            (Some((bytes, parsed)), Translation::OpenAiChatToBedrock | Translation::AnthropicToBedrock) => {
                let bytes = via_openai.as_ref().unwrap_or(bytes);
                let translated =
                    translate::openai_chat_to_bedrock(bytes, model).map_err(|e| ProxyError::Untranslatable(e.0))?;
                ctx.translation = Some((translation, parsed.include_usage == Some(true) || via_openai.is_some()));
                let op = if parsed.stream { "converse-stream" } else { "converse" };
                upstream_path = format!("/model/{}/{op}", auth::sigv4::path_segment(model));
                let bytes = Bytes::from(translated.to_string());
                to_sign = Some(bytes.clone());
                full_req(bytes)
            }
            (Some((bytes, parsed)), Translation::OpenAiChatToAnthropic) => {
                let translated =
                    translate::openai_chat_to_anthropic(bytes, model).map_err(|e| ProxyError::Untranslatable(e.0))?;
                ctx.translation = Some((translation, parsed.include_usage == Some(true)));
                upstream_path = "/v1/messages".into();
                full_req(Bytes::from(translated.to_string()))
            }
            (Some((bytes, _)), Translation::OpenAiEmbeddingsToGemini { .. }) => {
                let (translated, base64) = translate::openai_embeddings_to_gemini(bytes, model)
                    .map_err(|e| ProxyError::Untranslatable(e.0))?;
                ctx.translation = Some((Translation::OpenAiEmbeddingsToGemini { base64 }, false));
                upstream_path = format!("/v1beta/models/{}:batchEmbedContents", auth::sigv4::path_segment(model));
                full_req(Bytes::from(translated.to_string()))
            }
            (Some((bytes, parsed)), Translation::OpenAiChatToGemini | Translation::AnthropicToGemini) => {
                let bytes = via_openai.as_ref().unwrap_or(bytes);
                let translated =
                    translate::openai_chat_to_gemini(bytes).map_err(|e| ProxyError::Untranslatable(e.0))?;
                ctx.translation = Some((translation, parsed.include_usage == Some(true) || via_openai.is_some()));
                let method = if parsed.stream {
                    "streamGenerateContent?alt=sse"
                } else {
                    "generateContent"
                };
                let model = auth::sigv4::path_segment(model);
                upstream_path = match (backend.project.as_deref(), backend.region.as_deref()) {
                    (Some(project), Some(region)) => {
                        format!("/v1/projects/{project}/locations/{region}/publishers/google/models/{model}:{method}")
                    }
                    _ => format!("/v1beta/models/{model}:{method}"),
                };
                full_req(Bytes::from(translated.to_string()))
            }
            (Some((bytes, parsed)), Translation::AnthropicToOpenAiChat) => {
                let translated =
                    translate::anthropic_to_openai_chat(bytes, model).map_err(|e| ProxyError::Untranslatable(e.0))?;
                ctx.audit.usage_requested_by_gateway = parsed.stream;
                ctx.translation = Some((translation, false));
                upstream_path = "/v1/chat/completions".into();
                full_req(Bytes::from(translated.to_string()))
            }
            (Some((bytes, parsed)), _) => {
                if translation == Translation::OpenAiToAzure {
                    let deployment = backend
                        .deployment
                        .as_deref()
                        .or(model_override)
                        .or(parsed.model.as_deref())
                        .unwrap_or_default();
                    let op = match ctx.operation {
                        Operation::Completions => "completions",
                        Operation::Embeddings => "embeddings",
                        _ => "chat/completions",
                    };
                    upstream_path = format!(
                        "/openai/deployments/{}/{op}?api-version={}",
                        auth::sigv4::path_segment(deployment),
                        backend.api_version
                    );
                }
                let model = model_override.filter(|m| parsed.model.as_deref() != Some(*m));
                // Stream usage is only reported when asked for: ask on the client's behalf,
                // and take the extra chunk out of what it sees.
                let add_usage = ctx.schema == ApiSchema::Openai
                    && matches!(ctx.operation, Operation::ChatCompletions | Operation::Completions)
                    && parsed.stream
                    && parsed.include_usage != Some(true);
                ctx.strip_usage = add_usage;
                ctx.audit.usage_requested_by_gateway = add_usage;
                if model.is_some() || add_usage {
                    full_req(llm::rewrite(bytes, model, add_usage).map_err(ProxyError::BadBody)?)
                } else {
                    full_req(bytes.clone())
                }
            }
            (None, _) => streamed_body.take().unwrap_or_else(|| full_req(Bytes::new())),
        };
        let uri: http::Uri = format!(
            "{}://{}{}{}",
            backend.url.scheme_str().unwrap_or("https"),
            backend.url.authority().map(|a| a.as_str()).unwrap_or_default(),
            backend.prefix,
            upstream_path
        )
        .parse()
        .map_err(|e| ProxyError::Internal(format!("upstream uri: {e}")))?;
        let mut headers = base_headers.clone();
        if translation != Translation::None && translation != Translation::OpenAiToAzure {
            // Translated bodies are JSON whatever the client labelled its own (`curl -d` says
            // form-urlencoded; Bedrock InvokeModel reads the body type from this header).
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        if let Some(c) = &credential {
            c.inject(&mut headers);
            if let Some(source) = c.oauth() {
                let token = auth::fetch::oauth_token(source, &snapshot.clients[index])
                    .await
                    .map_err(|e| ProxyError::Upstream {
                        backend: backend.name.clone(),
                        message: format!("credential {}: {e}", c.name),
                    })?;
                let mut v = HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| ProxyError::Internal("token endpoint sent an unusable token".into()))?;
                v.set_sensitive(true);
                headers.insert(header::AUTHORIZATION, v);
            }
        }
        // SigV4 covers the exact bytes sent, so each body of a fan-out is signed on its own.
        let node_keys = match credential.as_ref().and_then(|c| c.imds()) {
            Some(imds) => Some(
                auth::fetch::aws_role_keys(imds, &snapshot.clients[index])
                    .await
                    .map_err(|e| ProxyError::Upstream {
                        backend: backend.name.clone(),
                        message: format!(
                            "credential {}: {e}",
                            credential.as_ref().map(|c| c.name.as_str()).unwrap_or("")
                        ),
                    })?,
            ),
            None => None,
        };
        let aws = credential
            .as_ref()
            .and_then(|c| c.aws())
            .or(node_keys.as_deref())
            .zip(backend.region.as_deref());
        let sign = |headers: &mut HeaderMap, body: &[u8]| match aws {
            Some((keys, region)) => {
                headers.remove(header::CONTENT_LENGTH);
                let now = std::time::SystemTime::now();
                auth::sigv4::sign(keys, region, "bedrock", &parts.method, &uri, headers, body, now)
                    .map_err(|e| ProxyError::Internal(format!("signing: {e}")))
            }
            None => Ok(()),
        };
        // A fan-out's requests are built (and signed) as each call starts, so a signature is
        // never older than the wait for its turn.
        if fan_out.is_none() {
            sign(&mut headers, to_sign.as_deref().unwrap_or_default())?;
        }
        // What a fan-out's calls are built from (only then is anything cloned).
        let fan_out = fan_out.map(|bodies| (bodies, headers.clone(), uri.clone(), parts.method.clone()));
        if translation == Translation::OpenAiChatToAnthropic && !headers.contains_key("anthropic-version") {
            headers.insert(
                "anthropic-version",
                HeaderValue::from_static(translate::ANTHROPIC_VERSION),
            );
        }
        let mut upstream_req = Request::builder()
            .method(parts.method.clone())
            .uri(uri)
            .body(body)
            .map_err(|e| ProxyError::Internal(e.to_string()))?;
        *upstream_req.headers_mut() = headers;

        let started = Instant::now();
        let wait = match ctx.total_deadline {
            Some(deadline) => timeout.min(deadline.saturating_duration_since(started)),
            None => timeout,
        };
        let client = &snapshot.clients[index];
        let send = async {
            match fan_out {
                Some((bodies, fan_headers, fan_uri, method)) => {
                    let combine = match translation {
                        Translation::OpenAiEmbeddingsToVertex { .. } => translate::vertex_combined,
                        _ => translate::titan_combined,
                    };
                    let build = |b: Bytes| -> Result<Request<route::UpstreamBody>, String> {
                        let mut h = fan_headers.clone();
                        if let Some((keys, region)) = aws {
                            h.remove(header::CONTENT_LENGTH);
                            let now = std::time::SystemTime::now();
                            auth::sigv4::sign(keys, region, "bedrock", &method, &fan_uri, &mut h, &b, now)
                                .map_err(|e| e.to_string())?;
                        }
                        let mut req = Request::builder()
                            .method(method.clone())
                            .uri(fan_uri.clone())
                            .body(full_req(b))
                            .map_err(|e| e.to_string())?;
                        *req.headers_mut() = h;
                        Ok(req)
                    };
                    fanout::send_all(client, bodies, &build, combine).await
                }
                None => client
                    .request(upstream_req)
                    .await
                    .map(|r| r.map(|b| b.map_err(BoxError::from).boxed())),
            }
        };
        let sent = tokio::time::timeout(wait, send).await;
        let ms = || started.elapsed().as_secs_f64() * 1000.0;
        let (condition, error) = match sent {
            Err(_) => {
                let total = ctx.total_deadline.is_some_and(|d| Instant::now() >= d);
                let e = if total {
                    ProxyError::TotalTimeout {
                        timeout: route.and_then(|r| r.total_timeout).unwrap_or(wait),
                    }
                } else {
                    ProxyError::UpstreamTimeout {
                        backend: backend.name.clone(),
                        timeout: wait,
                    }
                };
                l7.metrics.attempt(&backend.name, "timeout");
                l7.health.failure(&backend.name);
                if total {
                    ctx.audit.attempts.push(Attempt {
                        backend: backend.name.clone(),
                        status: None,
                        error: Some(e.to_string()),
                        duration_ms: ms(),
                    });
                    return Err(e);
                }
                (RetryOn::Timeout, e)
            }
            Ok(Err(e)) => {
                let mut message = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    message = format!("{message}: {s}");
                    source = s.source();
                }
                let lower = message.to_ascii_lowercase();
                let condition = if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake")
                {
                    RetryOn::Tls
                } else {
                    RetryOn::Connect
                };
                l7.metrics.attempt(&backend.name, "error");
                l7.health.failure(&backend.name);
                (
                    condition,
                    ProxyError::Upstream {
                        backend: backend.name.clone(),
                        message,
                    },
                )
            }
            Ok(Ok(resp)) => {
                let status = resp.status();
                ctx.audit.attempts.push(Attempt {
                    backend: backend.name.clone(),
                    status: Some(status.as_u16()),
                    error: None,
                    duration_ms: ms(),
                });
                let condition = match status.as_u16() {
                    429 => {
                        if let Some(delay) = route::health::retry_after(resp.headers()) {
                            l7.health.cool_down(&backend.name, delay);
                        }
                        Some(RetryOn::TooManyRequests)
                    }
                    500..=599 => {
                        l7.health.failure(&backend.name);
                        Some(RetryOn::ServerError)
                    }
                    _ => {
                        l7.health.success(&backend.name);
                        None
                    }
                };
                let retryable =
                    condition.is_some_and(|c| retry_on.contains(&c)) || retry_statuses.contains(&status.as_u16());
                l7.metrics
                    .attempt(&backend.name, if status.is_success() { "ok" } else { "error_status" });
                if retryable && attempts_left > 0 {
                    // Nothing of this answer has reached the client: try the next backend.
                    continue;
                }
                // response_filter: stream back as it comes; hop-by-hop headers are per connection.
                let (mut parts, body) = resp.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                return Ok(Response::from_parts(parts, body));
            }
        };
        ctx.audit.attempts.push(Attempt {
            backend: backend.name.clone(),
            status: None,
            error: Some(error.to_string()),
            duration_ms: ms(),
        });
        let retryable = retry_on.contains(&condition);
        last_error = Some(error);
        if !retryable {
            break;
        }
    }
    Err(last_error
        .unwrap_or_else(|| ProxyError::NoBackend("every backend of the route is ejected or cooling down".into())))
}

/// Reserves the request's share of every applicable limit, or refuses it.
async fn admit(
    l7: &L7,
    conn: &ConnCtx,
    ctx: &mut RequestCtx,
    body: Option<(usize, &llm::Parsed)>,
    first_backend: &str,
) -> Result<(), ProxyError> {
    let config = &ctx.snapshot.config;
    let subject = limits::Subject {
        comm: &conn.workload.comm,
        uid: conn.workload.uid,
        cgroup: conn.workload.cgroup.as_deref(),
        route: ctx.audit.route.as_deref(),
        provider: ctx.audit.provider.as_deref(),
        model: ctx.audit.model.as_deref(),
        backend: Some(first_backend),
    };
    // Tokens: the output the request allows (or the limits' estimate) plus ~4 bytes per input
    // token.
    let estimate_out = body.and_then(|(_, p)| p.max_tokens).unwrap_or_else(|| {
        config
            .limits
            .iter()
            .map(|l| l.output_estimate)
            .max()
            .unwrap_or(limits::DEFAULT_OUTPUT_ESTIMATE)
    });
    let estimate_in = body.map(|(len, _)| (len as u64).div_ceil(4)).unwrap_or(0);
    let tokens = estimate_in + estimate_out;
    let cost = ctx
        .audit
        .model
        .as_deref()
        .and_then(|m| config.prices.get(m))
        .map(|price| {
            let u = llm::usage::Usage {
                input: estimate_in,
                output: estimate_out,
                ..Default::default()
            };
            crate::accounting::cost(price, &u)
        });
    let charges = limits::charges(&config.limits, &subject, tokens, cost);
    let counted: Vec<String> = {
        let mut names: Vec<String> = charges.iter().map(|c| c.limit.clone()).collect();
        names.dedup();
        names
    };
    match l7.limits.reserve(&charges).await {
        Ok((None, degraded)) => {
            for name in &counted {
                l7.metrics.limit_decision(name, "allowed");
            }
            ctx.audit.limit = Some(limits::Decision {
                outcome: "allowed".into(),
                counted,
                degraded,
                ..Default::default()
            });
            ctx.reservation = Some(limits::Reservation {
                charges,
                reserved_tokens: tokens,
                reserved_cost: cost.unwrap_or(0),
            });
            Ok(())
        }
        Ok((Some(i), degraded)) => {
            let c = &charges[i];
            l7.metrics.limit_decision(&c.limit, "denied");
            ctx.audit.limit = Some(limits::Decision {
                outcome: "denied".into(),
                limit: Some(c.limit.clone()),
                kind: Some(c.kind.into()),
                retry_after_s: Some(c.window_left),
                counted,
                degraded,
            });
            Err(ProxyError::LimitExceeded {
                limit: c.limit.clone(),
                kind: c.kind,
                retry_after: c.window_left,
            })
        }
        Err(e) => {
            ctx.audit.limit = Some(limits::Decision {
                outcome: "store_unavailable".into(),
                counted,
                degraded: true,
                ..Default::default()
            });
            Err(ProxyError::LimitStore(e.to_string()))
        }
    }
}

/// An OAuth access token (Vertex, Azure Entra): cached, or fetched from the credential's
/// token endpoint through the backend's client (marked sockets, the backend's trust), at most
/// 64 KiB of answer.
fn full_req(b: Bytes) -> route::UpstreamBody {
    Full::new(b).map_err(|never| match never {}).boxed()
}

/// Most bytes of an oversize body read and thrown away before answering 413, so that an h2
/// client still uploading sees a clean response rather than a reset stream (16 MiB).
const MAX_DRAIN: usize = 16 * 1024 * 1024;
/// Longest time spent draining an oversize body (2 seconds).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Reads a request body of at most `limit` bytes. Beyond it the rest is drained (bounded by
/// `MAX_DRAIN` and `DRAIN_TIMEOUT`) and the request fails with 413.
async fn read_body(mut body: Incoming, limit: usize) -> Result<Bytes, ProxyError> {
    let mut buf = bytes::BytesMut::new();
    let mut total = 0usize;
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    loop {
        let next = if total > limit {
            match tokio::time::timeout_at(deadline, body.frame()).await {
                Ok(frame) => frame,
                Err(_) => break,
            }
        } else {
            body.frame().await
        };
        let Some(frame) = next else { break };
        let frame = frame.map_err(|e| ProxyError::ClientBody(e.to_string()))?;
        if let Some(data) = frame.data_ref() {
            total += data.len();
            if total <= limit {
                buf.extend_from_slice(data);
            } else if total > MAX_DRAIN {
                break;
            }
        }
    }
    if total > limit {
        return Err(ProxyError::BodyTooLarge { limit });
    }
    Ok(buf.freeze())
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // RFC 9110 §7.6.1, plus the names listed in `Connection`.
    let listed: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .collect();
    for name in listed {
        headers.remove(name.as_str());
    }
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
    ] {
        headers.remove(name);
    }
}
