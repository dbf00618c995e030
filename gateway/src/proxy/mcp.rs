//! The pipeline of a request to a remote MCP server (a provider of `kind: mcp`), after
//! identify: the JSON-RPC message read (`mcp::read`), routed like any request (route,
//! workload), a `tools/call` checked against the route's `mcp.tools` and the limits (a refusal
//! is a JSON-RPC error that never reaches the server), the call made by `attempt` (the
//! backend's credential replacing the client's), and the answer observed as it passes
//! (`mcp::Observer`: JSON or event by event; a `tools/list` filtered). A server's own stream
//! that names an endpoint (the older HTTP+SSE transport) is registered in `mcp::Streams`, and
//! refusals of messages POSTed there go on it (`answer`). One record per HTTP request, with its
//! `mcp` member.

use std::{
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::{Body, Frame, Incoming};

use super::{admit, attempt, ctx::RequestCtx, parse, routing, BoxError, ProxyError, RespBody, Side};
use crate::{
    accounting::audit::McpRecord,
    llm::Parsed,
    mcp::{self, code, streams::Registration, Message, Observer, Outcome, StreamKey, Streams},
};

/// What the request context keeps of an MCP request.
pub(crate) struct McpCtx {
    pub(crate) message: Message,
    session: Option<String>,
    protocol_version: Option<String>,
    /// The request's path and query (a POST of the HTTP+SSE transport names its stream so).
    target: String,
    /// Refused by Tollgate before the server was asked: `denied` or `rate_limited`.
    refused: Option<&'static str>,
    /// Filled as the answer passes.
    outcome: Arc<Mutex<Outcome>>,
}

/// The record's `mcp` member.
pub(crate) fn record(m: &McpCtx) -> McpRecord {
    let outcome = m.outcome.lock().map(|o| o.clone()).unwrap_or_default();
    McpRecord {
        session: m.session.clone().or_else(|| outcome.session.clone()),
        protocol_version: m.protocol_version.clone(),
        message: m.message.clone(),
        outcome: m
            .refused
            .unwrap_or(if outcome.status.is_empty() {
                "none"
            } else {
                outcome.status
            })
            .into(),
        error_code: outcome.error_code,
        error_message: outcome.error_message,
        tools_filtered: outcome.tools_filtered,
        messages: outcome.messages,
    }
}

pub(super) async fn serve(ctx: &mut RequestCtx, req: Request<Incoming>) -> Result<Response<RespBody>, ProxyError> {
    let (parts, body) = req.into_parts();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let mut m = McpCtx {
        message: Message {
            kind: match parts.method {
                Method::GET => "stream",
                Method::DELETE => "end_session",
                _ => "invalid",
            }
            .into(),
            ..Message::default()
        },
        session: header("mcp-session-id"),
        protocol_version: header("mcp-protocol-version"),
        target: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_string(), |p| p.as_str().to_string()),
        refused: None,
        outcome: Default::default(),
    };
    let bytes = if parts.method == Method::POST {
        let read = match parse::read_body(body, ctx.snapshot.config.max_request_body).await {
            Ok(bytes) => mcp::read(&bytes)
                .map(|message| (bytes, message))
                .map_err(|r| (StatusCode::BAD_REQUEST, r.code, r.message)),
            Err(e) => Err((e.status(), code::INVALID_REQUEST, e.to_string())),
        };
        match read {
            Ok((bytes, message)) => {
                m.message = message;
                bytes
            }
            Err(refused) => {
                ctx.mcp = Some(m);
                return Ok(invalid(ctx, refused));
            }
        }
    } else {
        Bytes::new()
    };
    ctx.mcp = Some(m);
    let body = parse::ClientBody::Read {
        bytes,
        parsed: Parsed::default(),
    };
    let mut plan = routing::route(ctx, &parts.headers, false)?;
    super::prepare(ctx, &mut plan, &body);
    legacy_session(ctx);
    if let Some(refusal) = policy(ctx) {
        return Ok(refusal);
    }
    if let Err(e) = admit::admit(ctx, &body, plan.first()).await {
        return match e {
            ProxyError::LimitExceeded { .. } => Ok(refuse(ctx, &e, "rate_limited", code::RATE_LIMITED)),
            e => Err(e),
        };
    }
    let resp = attempt::run(ctx, parts, body, plan).await?;
    Ok(observe(ctx, resp))
}

/// A body that is not one JSON-RPC message (or could not be read): 400 with the JSON-RPC
/// error (413 for an oversize body), recorded.
fn invalid(ctx: &mut RequestCtx, (status, code, message): (StatusCode, i64, String)) -> Response<RespBody> {
    ctx.fail(format!("mcp: {message}"), Side::Client, "mcp_invalid");
    json_rpc(status, None, code, &format!("tollgate: {message}"))
}

/// A `tools/call` the route's `mcp.tools` does not allow: a JSON-RPC error naming the route,
/// and the server never hears of it.
fn policy(ctx: &mut RequestCtx) -> Option<Response<RespBody>> {
    let tool = ctx.mcp.as_ref()?.message.tool.clone()?;
    let route = &ctx.snapshot.config.routes[ctx.route?];
    if route.tools.as_ref().is_none_or(|p| p.allows(&tool)) {
        return None;
    }
    let e = format!("tool {tool:?} is denied by route {} (mcp.tools)", route.name);
    ctx.fail(e.clone(), Side::Client, "mcp_tool_denied");
    if let Some(m) = ctx.mcp.as_mut() {
        m.refused = Some("denied");
    }
    Some(answer(ctx, code::DENIED, &format!("tollgate: {e}")))
}

/// A refusal after the message was read (a limit): a JSON-RPC error answering it.
fn refuse(ctx: &mut RequestCtx, e: &ProxyError, outcome: &'static str, code: i64) -> Response<RespBody> {
    ctx.fail(e.to_string(), e.side(), e.reason());
    if let Some(m) = ctx.mcp.as_mut() {
        m.refused = Some(outcome);
    }
    let mut resp = answer(ctx, code, &format!("tollgate: {e}"));
    if let ProxyError::LimitExceeded { retry_after, .. } = e {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
    }
    resp
}

/// Tollgate's JSON-RPC error answering the message: on the client's stream when the message
/// was POSTed to an endpoint of the HTTP+SSE transport (the POST then gets `202 Accepted`, as
/// from the server), else as the POST's answer.
fn answer(ctx: &RequestCtx, code: i64, message: &str) -> Response<RespBody> {
    let id = ctx.mcp.as_ref().and_then(|m| m.message.id.as_deref());
    let body = mcp::error_body(id, code, message);
    let on_stream = ctx
        .mcp
        .as_ref()
        .and_then(|m| stream_key(ctx, m.target.clone()))
        .is_some_and(|key| ctx.l7.mcp_streams.send(&key, mcp::streams::message_event(&body)));
    if on_stream {
        let mut resp = Response::new(super::full(Bytes::new()));
        *resp.status_mut() = StatusCode::ACCEPTED;
        return resp;
    }
    let mut resp = Response::new(super::full(body));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// A POST of the HTTP+SSE transport carries its session in the endpoint's query, not in
/// `Mcp-Session-Id`: recorded from there when the endpoint is an open stream's.
fn legacy_session(ctx: &mut RequestCtx) {
    let Some(m) = ctx.mcp.as_ref().filter(|m| m.session.is_none()) else {
        return;
    };
    let open = stream_key(ctx, m.target.clone()).is_some_and(|key| ctx.l7.mcp_streams.contains(&key));
    if let (true, Some(m)) = (open, ctx.mcp.as_mut()) {
        m.session = mcp::streams::session_of(&m.target);
    }
}

/// The stream of this provider and workload that named `endpoint`.
fn stream_key(ctx: &RequestCtx, endpoint: String) -> Option<StreamKey> {
    let provider = ctx.snapshot.config.providers.get(ctx.provider?)?;
    let w = &ctx.conn.workload;
    Some(StreamKey {
        provider: provider.name.clone(),
        workload: format!("{}|{}|{}", ctx.conn.client.0.ip(), w.cgroup_id, w.netns_cookie),
        endpoint,
    })
}

/// Tollgate's own failure (no route, the server unreachable…) in JSON-RPC's shape, with the
/// HTTP status that says what happened.
pub(super) fn error_response(m: &McpCtx, e: &ProxyError) -> Response<RespBody> {
    let code = match e {
        ProxyError::LimitExceeded { .. } => code::RATE_LIMITED,
        ProxyError::OperationNotAllowed { .. } => code::DENIED,
        _ => code::GATEWAY,
    };
    json_rpc(e.status(), m.message.id.as_deref(), code, &format!("tollgate: {e}"))
}

fn json_rpc(status: StatusCode, id: Option<&str>, code: i64, message: &str) -> Response<RespBody> {
    let mut resp = Response::new(super::full(mcp::error_body(id, code, message)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// The server's answer, observed as it passes (and a `tools/list` filtered by the route).
fn observe(ctx: &mut RequestCtx, resp: Response<RespBody>) -> Response<RespBody> {
    let (mut parts, body) = resp.into_parts();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    ctx.stream = content_type.starts_with("text/event-stream");
    // The server's own stream may name an endpoint of the HTTP+SSE transport.
    let own_stream = ctx.stream && ctx.mcp.as_ref().is_some_and(|m| m.message.kind == "stream");
    let stream = own_stream
        .then(|| stream_key(ctx, String::new()))
        .flatten()
        .map(|key| StreamSlot::Unnamed {
            streams: ctx.l7.mcp_streams.clone(),
            key,
            path: ctx.path.clone(),
        });
    let Some(m) = ctx.mcp.as_mut() else {
        return Response::from_parts(parts, body);
    };
    if m.session.is_none() {
        m.session = session(&parts.headers);
    }
    // A tools/list answer, or the server's own stream (where the older transport answers).
    let lists = m.message.method.as_deref() == Some("tools/list") || m.message.kind == "stream";
    let filter = match (lists, ctx.route) {
        (true, Some(r)) => ctx.snapshot.config.routes[r].tools.clone().map(|policy| {
            let allows: mcp::Allows = Arc::new(move |tool: &str| policy.allows(tool));
            allows
        }),
        _ => None,
    };
    let mut observer = Observer::new(&content_type, m.message.id.clone(), filter);
    if observer.rewrites() {
        parts.headers.remove(header::CONTENT_LENGTH);
    }
    if parts.status == StatusCode::ACCEPTED && m.message.kind == "request" {
        // The HTTP+SSE transport: the answer comes on the client's stream.
        observer.outcome.status = "accepted";
    }
    let observed = Observed {
        inner: body,
        observer,
        shared: m.outcome.clone(),
        done: false,
        stream,
    };
    Response::from_parts(parts, observed.boxed())
}

fn session(headers: &HeaderMap) -> Option<String> {
    headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The answer's body with an [`Observer`] reading it; the outcome is shared with the record.
struct Observed {
    inner: RespBody,
    observer: Observer,
    shared: Arc<Mutex<Outcome>>,
    done: bool,
    /// A server's own stream: registered once its `endpoint` event names it.
    stream: Option<StreamSlot>,
}

enum StreamSlot {
    /// Not named yet (or never: the Streamable HTTP transport's GET stream).
    Unnamed {
        streams: Arc<Streams>,
        key: StreamKey,
        path: String,
    },
    Registered(Registration),
}

impl Observed {
    fn publish(&mut self) {
        if let Ok(mut o) = self.shared.lock() {
            o.clone_from(&self.observer.outcome);
        }
        if let (Some(StreamSlot::Unnamed { streams, key, path }), Some(data)) = (&self.stream, &self.observer.endpoint)
        {
            let registered = mcp::streams::endpoint(data, path).and_then(|endpoint| {
                streams.register(StreamKey {
                    endpoint,
                    ..key.clone()
                })
            });
            self.stream = registered.map(StreamSlot::Registered);
        }
    }

    /// A message Tollgate put on this stream, when one waits and an event may go out.
    fn poll_injected(&mut self, cx: &mut Context<'_>) -> Option<Bytes> {
        match &mut self.stream {
            Some(StreamSlot::Registered(r)) if self.observer.between_events() => match r.poll_recv(cx) {
                Poll::Ready(b) => b,
                Poll::Pending => None,
            },
            _ => None,
        }
    }
}

impl Body for Observed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if let Some(injected) = this.poll_injected(cx) {
                return Poll::Ready(Some(Ok(Frame::data(injected))));
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Some(data) = frame.data_ref() else {
                        return Poll::Ready(Some(Ok(frame)));
                    };
                    let out = this.observer.feed(data);
                    this.publish();
                    match out {
                        None => return Poll::Ready(Some(Ok(frame))),
                        Some(b) if b.is_empty() => continue,
                        Some(b) => return Poll::Ready(Some(Ok(Frame::data(b)))),
                    }
                }
                Poll::Ready(None) => {
                    this.done = true;
                    let rest = this.observer.finish();
                    this.publish();
                    if rest.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(rest))));
                }
                other => return other,
            }
        }
    }
}
