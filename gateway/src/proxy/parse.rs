//! Phase 2, parse: the body of operations Tollgate routes on (JSON, POST) is read whole, up to
//! `proxy.maxRequestBody`, and `model`/`stream` are taken from it; any other body streams
//! through unread.

use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;

use super::{ctx::RequestCtx, ProxyError};
use crate::llm::{self, Parsed};

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
    /// Streamed through unread: one attempt only.
    Stream(Incoming),
}

impl ClientBody {
    pub(super) fn read(&self) -> Option<(&Bytes, &Parsed)> {
        match self {
            ClientBody::Read { bytes, parsed } => Some((bytes, parsed)),
            ClientBody::Stream(_) => None,
        }
    }
}

pub(super) async fn parse(ctx: &mut RequestCtx, parts: &Parts, body: Incoming) -> Result<ClientBody, ProxyError> {
    if !(ctx.operation.has_json_body() && parts.method == http::Method::POST) {
        return Ok(ClientBody::Stream(body));
    }
    let bytes = read_body(body, ctx.snapshot.config.max_request_body).await?;
    let parsed = llm::parse(&bytes).map_err(ProxyError::BadBody)?;
    ctx.model = parsed.model.clone();
    ctx.stream = parsed.stream;
    Ok(ClientBody::Read { bytes, parsed })
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
