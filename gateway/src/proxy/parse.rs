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

/// Most bytes of an oversize body read and thrown away before answering 413, so that an h2
/// client still uploading sees a clean response rather than a reset stream (16 MiB).
const MAX_DRAIN: usize = 16 * 1024 * 1024;
/// Longest time spent draining an oversize body (2 seconds).
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
