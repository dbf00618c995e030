//! One attempt's upstream call: the backend's credential (header, OAuth token or AWS keys),
//! the translation direction's path and body, the request signed last (SigV4 covers the exact
//! bytes sent), and the send within the attempt's timeout. Every failure becomes an
//! [`Outcome`] the attempt loop judges: a credential, token or translation failure means
//! nothing was sent, and the next backend is tried.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, request::Parts, HeaderMap, HeaderValue, Method, Request, Response};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;

use super::{
    ctx::RequestCtx,
    fanout,
    parse::{ClientBody, Prefixed},
    plan::{Outcome, Step},
    BoxError, ProxyError, RespBody,
};
use crate::{
    accounting::audit::CredentialRef,
    auth::{self, sigv4::AwsKeys, Loaded},
    client::{UpstreamBody as SentBody, UpstreamClient},
    config::{l7::RetryOn, Backend},
    llm::{
        multipart::Field,
        translate::{self, BackendSpec, ClientRequest, FormHead, Upstream, UpstreamBody},
        Parsed,
    },
};

/// What every attempt of a request starts from.
pub(super) struct Call {
    method: Method,
    /// The client's headers minus hop-by-hop ones, `host` and every client credential.
    headers: HeaderMap,
    path_and_query: String,
    read: Option<(Bytes, Parsed)>,
    /// A form's head as read, what it says, and where its `model` lies.
    form: Option<(Bytes, Parsed, Option<Field>)>,
    /// A body streamed through unread, or a form's rest (sent by the first attempt only).
    stream: Option<Incoming>,
}

/// The keys a Bedrock request is signed with.
enum Signing {
    None,
    /// From the credential's own value (`awsSigV4`).
    Static(Arc<Loaded>),
    /// Handed out by the node's role (`awsMetadata`).
    Role(Arc<AwsKeys>),
}

impl Signing {
    fn keys(&self) -> Option<&AwsKeys> {
        match self {
            Signing::None => None,
            Signing::Static(c) => c.aws(),
            Signing::Role(k) => Some(k),
        }
    }
}

impl Call {
    pub(super) fn new(ctx: &RequestCtx, parts: Parts, body: ClientBody) -> Call {
        let mut headers = parts.headers;
        strip_hop_by_hop(&mut headers);
        headers.remove(header::HOST);
        headers.remove(header::CONTENT_LENGTH);
        auth::strip_client_credentials(&mut headers);
        // Answers are metered (and may be translated) as they pass: ask for them uncompressed.
        // The client's own `accept-encoding` only decides what it may receive, and identity is
        // always acceptable (RFC 9110 §12.5.3).
        headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        if let Ok(v) = HeaderValue::from_str(&ctx.trace.traceparent()) {
            headers.insert("traceparent", v);
        }
        let (read, form, stream) = match body {
            ClientBody::Read { bytes, parsed } => (Some((bytes, parsed)), None, None),
            ClientBody::Form(f) => (None, Some((f.head, f.parsed, f.model_field)), Some(f.rest)),
            ClientBody::Stream(b) => (None, None, Some(b)),
        };
        Call {
            method: parts.method,
            headers,
            path_and_query: parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
            read,
            form,
            stream,
        }
    }

    /// Makes one attempt at `step`'s backend. `Ok`: the backend answered (any status).
    pub(super) async fn send(&mut self, ctx: &mut RequestCtx, step: &Step) -> Result<Response<RespBody>, Outcome> {
        let snapshot = ctx.snapshot.clone();
        let backend = &snapshot.config.backends[step.backend];
        let client = &snapshot.clients[step.backend];
        ctx.backend = Some(step.backend);
        ctx.served_model = step.model.clone().or_else(|| ctx.model.clone());
        let credential = credential(ctx, backend)?;
        let upstream = self.translate(ctx, backend, step.model.as_deref())?;
        let uri = upstream_uri(&backend.url, &backend.prefix, upstream.path)
            .map_err(|e| Outcome::NotSent(ProxyError::Internal(format!("upstream uri: {e}"))))?;
        let mut headers = self.headers.clone();
        if upstream.json_content_type {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        for (name, value) in upstream.default_headers {
            if !headers.contains_key(*name) {
                headers.insert(*name, HeaderValue::from_static(value));
            }
        }
        // A token or key fetch counts against the attempt's wait (and the request's budget).
        let fetch_wait = ctx.attempt_wait();
        let signing = match tokio::time::timeout(fetch_wait, inject(&mut headers, credential, backend, client)).await {
            Ok(signing) => signing?,
            Err(_) => {
                return Err(Outcome::NotSent(ProxyError::Upstream {
                    backend: backend.name.clone(),
                    message: format!("credential token or keys not fetched within {fetch_wait:?}"),
                }))
            }
        };
        let aws = signing.keys().zip(backend.region.as_deref());
        let wait = ctx.attempt_wait();
        let Upstream { body, answer, .. } = upstream;
        // A fan-out's requests are built (and signed) as each call starts, so a signature is
        // never older than the wait for its turn.
        let single = |body| {
            build(&self.method, &uri, headers.clone(), body, aws).map_err(|e| Outcome::NotSent(ProxyError::Internal(e)))
        };
        let call = match body {
            UpstreamBody::FanOut { bodies, combine } => Err((bodies, combine)),
            UpstreamBody::Bytes(b) => Ok(single((b.clone(), full_req(b)))?),
            UpstreamBody::Client | UpstreamBody::ClientHead(_) => {
                let head = match body {
                    UpstreamBody::ClientHead(head) => Some(head),
                    _ => self.form.as_ref().map(|(head, ..)| head.clone()),
                };
                let body = self
                    .stream
                    .take()
                    .map_or_else(|| full_req(Bytes::new()), |rest| Prefixed { head, rest }.boxed());
                Ok(single((Bytes::new(), body))?)
            }
        };
        let method = &self.method;
        let send = async {
            match call {
                Ok(req) => client
                    .request(req)
                    .await
                    .map(|r| r.map(|b| b.map_err(BoxError::from).boxed())),
                Err((bodies, combine)) => {
                    let build = |b: Bytes| build(method, &uri, headers.clone(), (b.clone(), full_req(b)), aws);
                    fanout::send_all(client, bodies, &build, combine).await
                }
            }
        };
        // From here the backend may serve (and bill) the request, even if this future is
        // dropped before an answer: only a connect failure or an error status says it did not.
        let billable_before = ctx.billable;
        ctx.billable = true;
        let sent = tokio::time::timeout(wait, send).await;
        let resp = classify(ctx, backend, wait, sent).inspect_err(|outcome| {
            if matches!(outcome, Outcome::Unreachable(..)) {
                ctx.billable = billable_before;
            }
        });
        let resp = resp?;
        if !resp.status().is_success() {
            ctx.billable = billable_before;
        }
        ctx.answer = Some(answer);
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(parts, body))
    }

    /// The translation direction of this attempt and the call it makes.
    fn translate(&self, ctx: &mut RequestCtx, backend: &Backend, model: Option<&str>) -> Result<Upstream, Outcome> {
        let untranslatable = |message: String| Outcome::NotSent(ProxyError::Untranslatable(message));
        let direction = translate::find(ctx.schema, ctx.operation, backend.schema).ok_or_else(|| {
            untranslatable(format!(
                "backend {} speaks {}; {} {} requests cannot be translated to it",
                backend.name,
                backend.schema.as_str(),
                ctx.schema.as_str(),
                ctx.operation.as_str()
            ))
        })?;
        ctx.translation = direction.name();
        let req = ClientRequest {
            schema: ctx.schema,
            operation: ctx.operation,
            path_and_query: &self.path_and_query,
            body: self.read.as_ref().map(|(b, p)| (b, p)),
            form: self.form.as_ref().map(|(head, parsed, model_field)| FormHead {
                head,
                parsed,
                model_field: model_field.as_ref(),
            }),
            model_override: model,
        };
        let spec = BackendSpec {
            name: &backend.name,
            schema: backend.schema,
            project: backend.project.as_deref(),
            region: backend.region.as_deref(),
            deployment: backend.deployment.as_deref(),
            api_version: &backend.api_version,
        };
        let upstream = direction.request(&req, &spec).map_err(|e| untranslatable(e.0))?;
        ctx.usage_requested_by_gateway = upstream.usage_requested_by_gateway;
        Ok(upstream)
    }
}

/// The backend's credential, held for the request (a rotation never changes it midway).
fn credential(ctx: &mut RequestCtx, backend: &Backend) -> Result<Option<Arc<Loaded>>, Outcome> {
    // The record names the credential of the attempt that served, not of an earlier one.
    ctx.credential = None;
    let Some(name) = &backend.credential else {
        return Ok(None);
    };
    let c = ctx
        .l7
        .credentials
        .get(name)
        .ok_or_else(|| Outcome::NotSent(ProxyError::CredentialMissing(name.clone())))?;
    ctx.credential = Some(CredentialRef {
        name: c.name.clone(),
        fingerprint: c.fingerprint.clone(),
    });
    Ok(Some(c))
}

/// Puts the credential on the request: a header, an OAuth token (fetched or cached), or the
/// AWS keys the request will be signed with.
async fn inject(
    headers: &mut HeaderMap,
    credential: Option<Arc<Loaded>>,
    backend: &Backend,
    client: &UpstreamClient,
) -> Result<Signing, Outcome> {
    let Some(c) = credential else {
        return Ok(Signing::None);
    };
    let failed = |e: String| {
        Outcome::NotSent(ProxyError::Upstream {
            backend: backend.name.clone(),
            message: format!("credential {}: {e}", c.name),
        })
    };
    c.inject(headers);
    if let Some(source) = c.oauth() {
        let token = auth::fetch::oauth_token(source, client).await.map_err(failed)?;
        let mut v = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| failed("the token endpoint sent an unusable token".into()))?;
        v.set_sensitive(true);
        headers.insert(header::AUTHORIZATION, v);
    }
    if let Some(imds) = c.imds() {
        return Ok(Signing::Role(
            auth::fetch::aws_role_keys(imds, client).await.map_err(failed)?,
        ));
    }
    Ok(if c.aws().is_some() {
        Signing::Static(c)
    } else {
        Signing::None
    })
}

/// A request, signed when the backend takes SigV4 (over the exact body bytes).
fn build(
    method: &Method,
    uri: &http::Uri,
    mut headers: HeaderMap,
    (signed, body): (Bytes, SentBody),
    aws: Option<(&AwsKeys, &str)>,
) -> Result<Request<SentBody>, String> {
    if let Some((keys, region)) = aws {
        headers.remove(header::CONTENT_LENGTH);
        let now = std::time::SystemTime::now();
        auth::sigv4::sign(keys, region, "bedrock", method, uri, &mut headers, &signed, now)
            .map_err(|e| format!("signing: {e}"))?;
    }
    let mut req = Request::builder()
        .method(method.clone())
        .uri(uri.clone())
        .body(body)
        .map_err(|e| e.to_string())?;
    *req.headers_mut() = headers;
    Ok(req)
}

/// What the send came to, as an outcome for the attempt loop.
fn classify(
    ctx: &RequestCtx,
    backend: &Backend,
    wait: std::time::Duration,
    sent: Result<Result<Response<RespBody>, hyper_util::client::legacy::Error>, tokio::time::error::Elapsed>,
) -> Result<Response<RespBody>, Outcome> {
    match sent {
        Ok(Ok(resp)) => Ok(resp),
        Err(_) if ctx.total_deadline.is_some_and(|d| std::time::Instant::now() >= d) => {
            let timeout = ctx
                .route
                .and_then(|r| ctx.snapshot.config.routes[r].total_timeout)
                .unwrap_or(wait);
            Err(Outcome::TotalTimeout(ProxyError::TotalTimeout { timeout }))
        }
        Err(_) => Err(Outcome::TimedOut(ProxyError::UpstreamTimeout {
            backend: backend.name.clone(),
            timeout: wait,
        })),
        Ok(Err(e)) => {
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                message = format!("{message}: {s}");
                source = s.source();
            }
            let lower = message.to_ascii_lowercase();
            let condition = if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") {
                RetryOn::Tls
            } else {
                RetryOn::Connect
            };
            Err(Outcome::Unreachable(
                condition,
                ProxyError::Upstream {
                    backend: backend.name.clone(),
                    message,
                },
            ))
        }
    }
}

fn full_req(b: Bytes) -> SentBody {
    Full::new(b).map_err(|never| match never {}).boxed()
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1) and the names listed in `Connection`.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        let listed: Vec<String> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
            .collect();
        for name in listed {
            headers.remove(name.as_str());
        }
    }
    // Header names, not strings: `remove(&str)` parses the name on every call.
    static KEEP_ALIVE: header::HeaderName = header::HeaderName::from_static("keep-alive");
    static PROXY_CONNECTION: header::HeaderName = header::HeaderName::from_static("proxy-connection");
    for name in [
        &header::CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::TRANSFER_ENCODING,
        &header::TE,
        &header::TRAILER,
        &header::UPGRADE,
    ] {
        headers.remove(name);
    }
}

/// The backend's scheme and authority with `prefix` + `path` (the scheme and authority are
/// parsed once, at config load; only the path is parsed here).
fn upstream_uri(url: &http::Uri, prefix: &str, path: String) -> Result<http::Uri, http::Error> {
    let path = if prefix.is_empty() {
        path
    } else {
        format!("{prefix}{path}")
    };
    let mut parts = url.clone().into_parts();
    parts.path_and_query = Some(http::uri::PathAndQuery::try_from(path)?);
    Ok(http::Uri::from_parts(parts)?)
}
