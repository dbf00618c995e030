//! The L7 request pipeline: one function per phase over one [`ctx::RequestCtx`] (pingora's
//! model; docs/phases.md draws it), each in the file named after it:
//!
//! [`identify`] (provider from the kernel's match, operation) → [`parse`] (bounded body,
//! `model`, `stream`) → [`routing`] (route, operation allowed, backends in order: a [`plan`])
//! → [`admit`] (limits) → [`attempt`] (fallback over backends; [`upstream`] makes each call)
//! → [`respond`] (stream back, metered and translated) → [`record`] (always, exactly once).

use std::{convert::Infallible, sync::Arc};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{combinators::BoxBody, BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

mod admit;
mod attempt;
mod ctx;
mod error;
mod fanout;
mod identify;
mod mcp;
mod models;
mod parse;
mod plan;
mod record;
mod respond;
mod routing;
mod snapshot;
mod upstream;

pub use admit::{estimate, subject, Estimate};
pub use error::{ProxyError, Side};
pub use identify::{normalize as normalize_host, operation};
pub use models::allowed as models_allowed;
pub use routing::{choose, Choice};
pub use snapshot::Snapshot;

use crate::{
    auth,
    identity::Workload,
    limits,
    socket::{ClientAddr, OrigDstAddr},
    telemetry::{jsonl, Metrics},
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
    pub health: Arc<crate::route::health::Health>,
    /// Limit counters.
    pub limits: Arc<limits::Store>,
    /// This instance's part of request ids ([`instance_id`]).
    pub instance: Box<str>,
    /// The latest audit records and today's spend, for the operator views.
    pub recent: Arc<crate::accounting::recent::Recent>,
    /// The MCP HTTP+SSE transport's open streams (where refusals of its POSTs go).
    pub mcp_streams: Arc<crate::mcp::Streams>,
}

/// Eight random hex digits naming this instance in request ids (`<instance>-<connection>-<n>`),
/// so that ids stay unique in an audit log across restarts.
pub fn instance_id() -> Box<str> {
    format!("{:08x}", fastrand::u32(..)).into()
}

/// What is known about the connection a request arrived on.
#[derive(Debug)]
pub struct ConnCtx {
    pub id: u64,
    pub client: ClientAddr,
    pub orig: OrigDstAddr,
    /// The original destination's address as the records write it (formatted once).
    pub orig_ip: String,
    pub sni: Option<String>,
    pub tls: bool,
    pub workload: Workload,
    /// Providers that claim the original destination (the kernel's match, by address):
    /// requests on this connection may only be for one of them.
    pub claimants: Vec<String>,
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
    // A client that trickles its headers is cut off rather than holding a connection.
    let header_timeout = l7.snapshot.load().config.header_read_timeout;
    let service = hyper::service::service_fn(move |req| {
        let (conn, l7) = (conn.clone(), l7.clone());
        async move { Ok::<_, Infallible>(handle(l7, conn, req).await) }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder.http2().timer(TokioTimer::new());
    if let Err(e) = builder.serve_connection(TokioIo::new(io), service).await {
        tracing::debug!(component = "proxy", error = %e, "connection ended with an error");
    }
}

/// One request through the phases. The context ends itself however the request ends.
async fn handle(l7: Arc<L7>, conn: Arc<ConnCtx>, req: Request<Incoming>) -> Response<RespBody> {
    let mut ctx = ctx::RequestCtx::new(l7, conn, &req);
    let resp = match pipeline(&mut ctx, req).await {
        Ok(resp) => resp,
        Err(e) => {
            ctx.fail(e.to_string(), e.side(), e.reason());
            match &ctx.mcp {
                Some(m) => mcp::error_response(m, &e),
                None => e.to_response(ctx.schema),
            }
        }
    };
    respond::respond(resp, ctx).await
}

async fn pipeline(ctx: &mut ctx::RequestCtx, req: Request<Incoming>) -> Result<Response<RespBody>, ProxyError> {
    // A refusal before the body is read drains it first over h2 (as an oversize body is): a
    // client still sending would otherwise see its stream reset instead of the answer. (Over
    // HTTP/1.1 hyper ends the exchange cleanly itself.)
    let h2 = req.version() == http::Version::HTTP_2;
    if let Err(e) = identify::identify(ctx, &req) {
        if h2 {
            parse::drain(req.into_body(), 0).await;
        }
        return Err(e);
    }
    if ctx.operation == crate::llm::Operation::Mcp {
        return mcp::serve(ctx, req).await;
    }
    let (parts, body) = req.into_parts();
    if let Some(answer) = models::answer(ctx, &parts.headers) {
        return answer;
    }
    let body = parse::parse(ctx, &parts, body).await?;
    let mut plan = match routing::route(ctx, &parts.headers, body.read().is_none()) {
        Ok(plan) => plan,
        Err(e) => {
            if let (true, Some(unread)) = (h2, body.unread()) {
                parse::drain(unread, 0).await;
            }
            return Err(e);
        }
    };
    prepare(ctx, &mut plan, &body);
    admit::admit(ctx, &body, plan.first()).await?;
    attempt::run(ctx, parts, body, plan).await
}

/// Once routing made a plan: ejected backends go last, the record names the plan, and the
/// request body is captured when the route captures content and the request is sampled.
fn prepare(ctx: &mut ctx::RequestCtx, plan: &mut plan::Plan, body: &parse::ClientBody) {
    let snapshot = ctx.snapshot.clone();
    plan.prune(&ctx.l7.health, |b| snapshot.config.backends[b].name.clone());
    ctx.plan = plan.order();
    if let Some(capture) = ctx.route.and_then(|r| snapshot.config.routes[r].capture.as_ref()) {
        if capture.sampled() {
            let request = body.read().map(|(bytes, _)| bytes.clone());
            ctx.content = Some(crate::accounting::content::Captured::new(capture.clone(), request));
        }
    }
}

pub(crate) fn full(b: Bytes) -> RespBody {
    Full::new(b).map_err(|never| match never {}).boxed()
}
