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
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt as _, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::{
    auth,
    config::ApiSchema,
    identity::Workload,
    llm::{self, ErrorKind, Operation},
    route::{self, RouteInput, Snapshot},
    socket::{ClientAddr, OrigDstAddr},
    telemetry::Metrics,
};

/// What the proxy shares across connections.
pub struct L7 {
    /// Routes, backends and clients: swapped whole on a valid config reload.
    pub snapshot: ArcSwap<Snapshot>,
    pub credentials: Arc<auth::Store>,
    pub metrics: Arc<Metrics>,
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
}

type RespBody = BoxBody<Bytes, hyper::Error>;

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

fn full(b: Bytes) -> RespBody {
    Full::new(b).map_err(|never| match never {}).boxed()
}

/// The per-request record, written once by `logging`.
#[derive(Debug, Serialize)]
pub struct RequestRecord {
    pub conn_id: u64,
    pub client: String,
    pub original_dst: String,
    pub sni: Option<String>,
    pub tls: bool,
    pub comm: String,
    pub pid: u32,
    pub uid: u32,
    pub cgroup: Option<String>,
    pub method: String,
    pub path: String,
    pub schema: &'static str,
    pub operation: &'static str,
    pub provider: Option<String>,
    pub route: Option<String>,
    pub backend: Option<String>,
    pub credential: Option<String>,
    pub credential_fingerprint: Option<String>,
    pub model: Option<String>,
    pub served_model: Option<String>,
    pub stream: bool,
    pub status: u16,
    pub error: Option<String>,
    pub error_side: Option<Side>,
    pub response_bytes: u64,
    pub duration_ms: f64,
    pub complete: bool,
}

struct RequestCtx {
    started: Instant,
    snapshot: Arc<Snapshot>,
    schema: ApiSchema,
    record: RequestRecord,
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
    let mut ctx = RequestCtx {
        started: Instant::now(),
        schema,
        record: RequestRecord {
            conn_id: conn.id,
            client: conn.client.to_string(),
            original_dst: conn.orig.to_string(),
            sni: conn.sni.clone(),
            tls: conn.tls,
            comm: conn.workload.comm.clone(),
            pid: conn.workload.tgid,
            uid: conn.workload.uid,
            cgroup: conn.workload.cgroup.clone(),
            method: req.method().to_string(),
            path: req.uri().path().to_string(),
            schema: schema.as_str(),
            operation: operation.as_str(),
            provider: provider.map(|p| snapshot.config.providers[p].name.clone()),
            route: None,
            backend: None,
            credential: None,
            credential_fingerprint: None,
            model: None,
            served_model: None,
            stream: false,
            status: 0,
            error: None,
            error_side: None,
            response_bytes: 0,
            duration_ms: 0.0,
            complete: false,
        },
        snapshot,
    };
    let resp = match proxy(l7, &conn, &mut ctx, req, operation).await {
        Ok(resp) => resp,
        Err(e) => {
            ctx.record.error = Some(e.to_string());
            ctx.record.error_side = Some(e.side());
            l7.metrics.request_error(e.reason());
            e.to_response(ctx.schema)
        }
    };
    ctx.record.status = resp.status().as_u16();
    let (parts, body) = resp.into_parts();
    Response::from_parts(parts, Recorded::new(body, ctx, l7.metrics.clone()).boxed())
}

async fn proxy(
    l7: &L7,
    conn: &ConnCtx,
    ctx: &mut RequestCtx,
    req: Request<Incoming>,
    operation: Operation,
) -> Result<Response<RespBody>, ProxyError> {
    // request_filter: the body is read (bounded) only for operations whose JSON we route on.
    let (parts, body) = req.into_parts();
    let mut parsed_body = None;
    let body: crate::route::UpstreamBody = if operation.has_json_body() && parts.method == http::Method::POST {
        let limit = ctx.snapshot.config.max_request_body;
        let bytes = read_body(body, limit).await?;
        let (parsed, value) = llm::parse(&bytes).map_err(ProxyError::BadBody)?;
        ctx.record.model = parsed.model.clone();
        ctx.record.stream = parsed.stream;
        parsed_body = Some((bytes, value));
        full(Bytes::new()) // replaced below once the backend is known
    } else {
        body.boxed()
    };

    // upstream_peer: route, backend, credential.
    let snapshot = ctx.snapshot.clone();
    let config = &snapshot.config;
    let input = RouteInput {
        provider: ctx.record.provider.as_deref(),
        model: ctx.record.model.as_deref(),
        headers: &parts.headers,
        workload: &conn.workload,
    };
    let (backend_ref, timeout) = match route::select_route(config, &input) {
        Some(r) => {
            ctx.record.route = Some(r.name.clone());
            let b = route::pick_backend(r);
            (Some(b), r.timeout)
        }
        None => (None, crate::config::l7::DEFAULT_ROUTE_TIMEOUT),
    };
    let backend_index = match backend_ref {
        Some(b) => b.backend,
        None => config
            .providers
            .iter()
            .find(|p| Some(&p.name) == ctx.record.provider.as_ref())
            .and_then(|p| p.backend)
            .ok_or_else(|| {
                ProxyError::NoRoute(format!(
                    "provider {}, model {}",
                    ctx.record.provider.as_deref().unwrap_or("unknown"),
                    ctx.record.model.as_deref().unwrap_or("none")
                ))
            })?,
    };
    let backend = &config.backends[backend_index];
    ctx.record.backend = Some(backend.name.clone());
    let credential = match &backend.credential {
        Some(name) => {
            let c = l7
                .credentials
                .get(name)
                .ok_or_else(|| ProxyError::CredentialMissing(name.clone()))?;
            ctx.record.credential = Some(c.name.clone());
            ctx.record.credential_fingerprint = Some(c.fingerprint.clone());
            Some(c)
        }
        None => None,
    };

    // call_upstream: headers, credential, model, body.
    let model_override = backend_ref.and_then(|b| b.model.as_deref());
    ctx.record.served_model = model_override.map(String::from).or_else(|| ctx.record.model.clone());
    let body = match parsed_body {
        Some((bytes, value)) => match model_override {
            Some(m) if ctx.record.model.as_deref() != Some(m) => full(llm::with_model(value, m)),
            _ => full(bytes),
        },
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
    let mut upstream_req = Request::builder()
        .method(parts.method)
        .uri(uri)
        .body(body)
        .map_err(|e| ProxyError::Internal(e.to_string()))?;
    *upstream_req.headers_mut() = headers;

    let client = &snapshot.clients[backend_index];
    let resp = match tokio::time::timeout(timeout, client.request(upstream_req)).await {
        Err(_) => {
            return Err(ProxyError::UpstreamTimeout {
                backend: backend.name.clone(),
                timeout,
            })
        }
        Ok(Err(e)) => {
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                message = format!("{message}: {s}");
                source = s.source();
            }
            return Err(ProxyError::Upstream {
                backend: backend.name.clone(),
                message,
            });
        }
        Ok(Ok(resp)) => resp,
    };

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

/// The response body, passed through frame by frame; `logging` runs when it ends, fails, or is
/// dropped (client gone), so every request leaves exactly one record.
struct Recorded {
    inner: RespBody,
    ctx: Option<RequestCtx>,
    metrics: Arc<Metrics>,
}

impl Recorded {
    fn new(inner: RespBody, ctx: RequestCtx, metrics: Arc<Metrics>) -> Recorded {
        Recorded {
            inner,
            ctx: Some(ctx),
            metrics,
        }
    }

    fn finish(&mut self, complete: bool, error: Option<String>) {
        if let Some(mut ctx) = self.ctx.take() {
            ctx.record.complete = complete;
            if let Some(e) = error {
                ctx.record.error.get_or_insert(e);
            }
            ctx.record.duration_ms = ctx.started.elapsed().as_secs_f64() * 1000.0;
            logging(&ctx.record, &self.metrics);
        }
    }
}

impl Body for Recorded {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(ctx)) = (frame.data_ref(), self.ctx.as_mut()) {
                    ctx.record.response_bytes += data.len() as u64;
                }
                // hyper stops polling once the body says it has ended (known length), so
                // the end is noticed here rather than by a final `None`.
                if self.inner.is_end_stream() {
                    self.finish(true, None);
                }
            }
            Poll::Ready(Some(Err(e))) => {
                let e = format!("upstream body: {e}");
                self.finish(false, Some(e));
            }
            Poll::Ready(None) => self.finish(true, None),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Recorded {
    fn drop(&mut self) {
        if self.inner.is_end_stream() {
            // An empty body that hyper never needed to poll.
            self.finish(true, None);
        } else {
            self.finish(false, Some("response not completed (client gone)".into()));
        }
    }
}

/// The per-request log line (the accounting work turns it into the audit record).
fn logging(record: &RequestRecord, metrics: &Metrics) {
    metrics.request_done(
        record.provider.as_deref().unwrap_or("unknown"),
        record.backend.as_deref().unwrap_or("none"),
        record.status,
    );
    tracing::info!(
        target: "tollgate::request",
        record = %serde_json::to_string(record).unwrap_or_default(),
        "request"
    );
}
