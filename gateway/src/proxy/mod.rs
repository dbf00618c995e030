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

mod respond;

use crate::{
    accounting::audit::{self, Attempt, AuditRecord, AuditWorkload, CredentialRef, Destination},
    auth,
    config::ApiSchema,
    identity::Workload,
    llm::{self, ErrorKind, Operation},
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

pub(crate) type RespBody = BoxBody<Bytes, hyper::Error>;

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
            ProxyError::Internal(_) => "internal",
        }
    }

    pub fn side(&self) -> Side {
        match self {
            ProxyError::BodyTooLarge { .. } | ProxyError::BadBody(_) | ProxyError::ClientBody(_) => Side::Client,
            ProxyError::Upstream { .. } | ProxyError::UpstreamTimeout { .. } => Side::Upstream,
            ProxyError::NoRoute(_) | ProxyError::CredentialMissing(_) | ProxyError::Internal(_) => Side::Proxy,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::BadBody(_) | ProxyError::ClientBody(_) => StatusCode::BAD_REQUEST,
            ProxyError::NoRoute(_) => StatusCode::NOT_FOUND,
            ProxyError::CredentialMissing(_) | ProxyError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::Upstream { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    fn kind(&self) -> ErrorKind {
        match self {
            ProxyError::BodyTooLarge { .. } => ErrorKind::TooLarge,
            ProxyError::BadBody(_) | ProxyError::ClientBody(_) => ErrorKind::InvalidRequest,
            ProxyError::NoRoute(_) => ErrorKind::NotFound,
            ProxyError::CredentialMissing(_) | ProxyError::Internal(_) => ErrorKind::Internal,
            ProxyError::Upstream { .. } => ErrorKind::Upstream,
            ProxyError::UpstreamTimeout { .. } => ErrorKind::Timeout,
        }
    }

    fn to_response(&self, schema: ApiSchema) -> Response<RespBody> {
        let body = llm::error_body(schema, self.kind(), &format!("tollgate: {self}"));
        let mut resp = Response::new(full(body));
        *resp.status_mut() = self.status();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
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
    let body: crate::route::UpstreamBody = if ctx.operation.has_json_body() && parts.method == http::Method::POST {
        let bytes = read_body(body, ctx.snapshot.config.max_request_body).await?;
        let parsed = llm::parse(&bytes).map_err(ProxyError::BadBody)?;
        ctx.audit.model = parsed.model.clone();
        ctx.audit.stream = parsed.stream;
        read = Some((bytes, parsed));
        full(Bytes::new()) // replaced below once the backend is known
    } else {
        body.boxed()
    };

    // upstream_peer: route, backend, credential.
    let snapshot = ctx.snapshot.clone();
    let config = &snapshot.config;
    let input = RouteInput {
        provider: ctx.audit.provider.as_deref(),
        model: ctx.audit.model.as_deref(),
        headers: &parts.headers,
        workload: &conn.workload,
    };
    let (backend_ref, timeout) = match route::select_route(config, &input) {
        Some(r) => {
            ctx.audit.route = Some(r.name.clone());
            ctx.audit.rule = "route".into();
            (Some(route::pick_backend(r)), r.timeout)
        }
        None => (None, crate::config::l7::DEFAULT_ROUTE_TIMEOUT),
    };
    let backend_index = match backend_ref {
        Some(b) => b.backend,
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
            default
        }
    };
    let backend = &config.backends[backend_index];
    ctx.audit.backend = Some(backend.name.clone());
    ctx.audit.timeout_ms = Some(timeout.as_millis() as u64);
    let credential = match &backend.credential {
        Some(name) => {
            let c = l7
                .credentials
                .get(name)
                .ok_or_else(|| ProxyError::CredentialMissing(name.clone()))?;
            ctx.audit.credential = Some(CredentialRef {
                name: c.name.clone(),
                fingerprint: c.fingerprint.clone(),
            });
            Some(c)
        }
        None => None,
    };

    // call_upstream: body (rewritten only when something changes), headers, credential, trace.
    let model_override = backend_ref.and_then(|b| b.model.as_deref());
    ctx.audit.served_model = model_override.map(String::from).or_else(|| ctx.audit.model.clone());
    let body = match read {
        Some((bytes, parsed)) => {
            let model = model_override.filter(|m| parsed.model.as_deref() != Some(*m));
            // Stream usage is only reported when asked for: ask on the client's behalf, and
            // take the extra chunk out of what it sees.
            let add_usage = ctx.schema == ApiSchema::Openai
                && matches!(ctx.operation, Operation::ChatCompletions | Operation::Completions)
                && parsed.stream
                && parsed.include_usage != Some(true);
            ctx.strip_usage = add_usage;
            ctx.audit.usage_requested_by_gateway = add_usage;
            if model.is_some() || add_usage {
                full(llm::rewrite(&bytes, model, add_usage).map_err(ProxyError::BadBody)?)
            } else {
                full(bytes)
            }
        }
        None => body,
    };
    let path_and_query = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let uri: http::Uri = format!(
        "{}://{}{}{}",
        backend.url.scheme_str().unwrap_or("https"),
        backend.url.authority().map(|a| a.as_str()).unwrap_or_default(),
        backend.prefix,
        path_and_query
    )
    .parse()
    .map_err(|e| ProxyError::Internal(format!("upstream uri: {e}")))?;
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers);
    headers.remove(header::HOST);
    headers.remove(header::CONTENT_LENGTH);
    auth::strip_client_credentials(&mut headers);
    if let Some(c) = &credential {
        c.inject(&mut headers);
    }
    if let Ok(v) = HeaderValue::from_str(&ctx.trace.traceparent()) {
        headers.insert("traceparent", v);
    }
    let mut upstream_req = Request::builder()
        .method(parts.method)
        .uri(uri)
        .body(body)
        .map_err(|e| ProxyError::Internal(e.to_string()))?;
    *upstream_req.headers_mut() = headers;

    let client = &snapshot.clients[backend_index];
    let attempt_started = Instant::now();
    let sent = tokio::time::timeout(timeout, client.request(upstream_req)).await;
    let attempt = |status: Option<u16>, error: Option<String>| Attempt {
        backend: backend.name.clone(),
        status,
        error,
        duration_ms: attempt_started.elapsed().as_secs_f64() * 1000.0,
    };
    let resp = match sent {
        Err(_) => {
            let e = ProxyError::UpstreamTimeout {
                backend: backend.name.clone(),
                timeout,
            };
            ctx.audit.attempts.push(attempt(None, Some(e.to_string())));
            l7.metrics.attempt(&backend.name, "timeout");
            return Err(e);
        }
        Ok(Err(e)) => {
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                message = format!("{message}: {s}");
                source = s.source();
            }
            let e = ProxyError::Upstream {
                backend: backend.name.clone(),
                message,
            };
            ctx.audit.attempts.push(attempt(None, Some(e.to_string())));
            l7.metrics.attempt(&backend.name, "error");
            return Err(e);
        }
        Ok(Ok(resp)) => resp,
    };
    ctx.audit.attempts.push(attempt(Some(resp.status().as_u16()), None));
    l7.metrics.attempt(
        &backend.name,
        if resp.status().is_success() {
            "ok"
        } else {
            "error_status"
        },
    );

    // response_filter: stream back as it comes; hop-by-hop headers are per connection.
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(parts, body.boxed()))
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
