//! Phase 2, parse: the body of operations Tollgate routes on (JSON, POST) is read whole, up to
//! `proxy.maxRequestBody`, and `model`/`stream` are taken from it; a multipart form (audio to
//! transcribe, images to edit) is read up to its first file once `model` is known, and the
//! file streams through; any other body streams through unread. On an Azure OpenAI
//! deployment path the model is the deployment when the body names none.

use std::{
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::request::Parts;
use http_body_util::BodyExt as _;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use super::{ctx::RequestCtx, ProxyError};
use crate::llm::{
    self,
    multipart::{self, Field},
    ParseError, Parsed,
};

/// Most bytes of a body read and thrown away before answering without it (413 for an oversize
/// body, a refusal before the body was read), so that an h2 client still uploading sees a clean
/// response rather than a reset stream (16 MiB).
const MAX_DRAIN: usize = 16 * 1024 * 1024;
/// Longest time spent draining a body (2 seconds).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// The client's body, as the attempts will send it.
pub(super) enum ClientBody {
    /// Read whole and parsed: it can be translated, rewritten and sent more than once.
    Read { bytes: Bytes, parsed: Parsed },
    /// A form whose head (its text fields) was read and parsed; the rest (its files) streams
    /// through: one attempt only.
    Form(Form),
    /// Streamed through unread: one attempt only.
    Stream(Incoming),
}

/// A multipart form: the head as read, what its fields say, and the body still to come.
pub(super) struct Form {
    pub(super) head: Bytes,
    pub(super) parsed: Parsed,
    /// Where the `model` field's value lies in `head` (a route may rewrite it).
    pub(super) model_field: Option<Field>,
    pub(super) rest: Incoming,
}

impl ClientBody {
    pub(super) fn read(&self) -> Option<(&Bytes, &Parsed)> {
        match self {
            ClientBody::Read { bytes, parsed } => Some((bytes, parsed)),
            ClientBody::Form(_) | ClientBody::Stream(_) => None,
        }
    }

    /// What was parsed from the body, read whole or as a form head.
    pub(super) fn parsed(&self) -> Option<&Parsed> {
        match self {
            ClientBody::Read { parsed, .. } => Some(parsed),
            ClientBody::Form(form) => Some(&form.parsed),
            ClientBody::Stream(_) => None,
        }
    }

    /// The part of the body still unread by Tollgate, when some is.
    pub(super) fn unread(self) -> Option<Incoming> {
        match self {
            ClientBody::Read { .. } => None,
            ClientBody::Form(form) => Some(form.rest),
            ClientBody::Stream(body) => Some(body),
        }
    }
}

pub(super) async fn parse(ctx: &mut RequestCtx, parts: &Parts, body: Incoming) -> Result<ClientBody, ProxyError> {
    if parts.method != http::Method::POST {
        return Ok(ClientBody::Stream(body));
    }
    let mut body = if ctx.operation.has_form_body() {
        ClientBody::Form(read_form(ctx, parts, body).await?)
    } else if ctx.operation.has_json_body() {
        let bytes = read_body(body, ctx.snapshot.config.max_request_body).await?;
        let parsed = llm::parse_for(ctx.operation, &bytes).map_err(ProxyError::BadBody)?;
        ClientBody::Read { bytes, parsed }
    } else {
        return Ok(ClientBody::Stream(body));
    };
    let parsed = match &mut body {
        ClientBody::Read { parsed, .. } => parsed,
        ClientBody::Form(form) => &mut form.parsed,
        ClientBody::Stream(_) => unreachable!("returned above"),
    };
    if parsed.model.is_none() {
        if let Some((deployment, _)) = llm::azure_deployment(parts.uri.path()) {
            parsed.model = Some(deployment.to_string());
            parsed.model_from_path = true;
        }
    }
    ctx.model = parsed.model.clone();
    ctx.stream = parsed.stream;
    ctx.units = llm::media::RequestUnits {
        characters: parsed.characters,
        image_tier: parsed.image_tier.clone(),
    };
    Ok(body)
}

/// Reads a form's head: its text fields up to the first file once `model` is known (else on,
/// within `proxy.maxRequestBody`), or the whole form when it ends first.
async fn read_form(ctx: &RequestCtx, parts: &Parts, mut body: Incoming) -> Result<Form, ProxyError> {
    let limit = ctx.snapshot.config.max_request_body;
    let content_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let form_error = |e| ProxyError::BadBody(ParseError::Form(e));
    let boundary = match multipart::boundary(content_type) {
        Ok(b) => b,
        Err(e) => {
            drain(body, 0).await;
            return Err(form_error(e));
        }
    };
    let mut scanner = multipart::Scanner::new(&boundary);
    let mut buf = bytes::BytesMut::new();
    let known = |s: &multipart::Scanner, buf: &[u8]| s.ended() || (s.file_seen && s.field(buf, "model").is_some());
    while !known(&scanner, &buf) {
        let Some(frame) = body.frame().await else { break };
        let frame = frame.map_err(|e| ProxyError::ClientBody(e.to_string()))?;
        let Some(data) = frame.data_ref() else { continue };
        if buf.len() + data.len() > limit {
            drain(body, buf.len() + data.len()).await;
            return Err(ProxyError::BodyTooLarge { limit });
        }
        buf.extend_from_slice(data);
        if let Err(e) = scanner.feed(&buf) {
            drain(body, buf.len()).await;
            return Err(form_error(e));
        }
    }
    let head = buf.freeze();
    let parsed = llm::parse_form(&scanner, &head, ctx.operation).map_err(ProxyError::BadBody)?;
    let model_field = scanner.fields.iter().find(|f| f.name == "model").cloned();
    Ok(Form {
        head,
        parsed,
        model_field,
        rest: body,
    })
}

/// A body sent upstream as the client sent it: the head Tollgate read (possibly rewritten),
/// then the rest as it comes.
pub(super) struct Prefixed {
    pub(super) head: Option<Bytes>,
    pub(super) rest: Incoming,
}

impl Body for Prefixed {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.head.take().filter(|h| !h.is_empty()) {
            Some(head) => Poll::Ready(Some(Ok(Frame::data(head)))),
            None => Pin::new(&mut self.rest).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.head.as_ref().is_none_or(Bytes::is_empty) && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let rest = self.rest.size_hint();
        let head = self.head.as_ref().map_or(0, |h| h.len() as u64);
        let mut hint = SizeHint::new();
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + head);
        }
        hint.set_lower(rest.lower() + head);
        hint
    }
}

/// Reads a request body of at most `limit` bytes. Beyond it the rest is drained and the
/// request fails with 413.
async fn read_body(mut body: Incoming, limit: usize) -> Result<Bytes, ProxyError> {
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ProxyError::ClientBody(e.to_string()))?;
        if let Some(data) = frame.data_ref() {
            if buf.len() + data.len() > limit {
                drain(body, buf.len() + data.len()).await;
                return Err(ProxyError::BodyTooLarge { limit });
            }
            buf.extend_from_slice(data);
        }
    }
    Ok(buf.freeze())
}

/// Reads and throws away what is left of a body the answer does not need (`read` bytes of it
/// already taken), within `MAX_DRAIN` bytes and `DRAIN_TIMEOUT`.
pub(super) async fn drain(mut body: Incoming, mut read: usize) {
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    while read <= MAX_DRAIN {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => read += frame.data_ref().map_or(0, |d| d.len()),
            _ => return,
        }
    }
}
