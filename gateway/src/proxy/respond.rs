//! Phase 6, respond: the response body passes frame by frame through a wrapper that meters
//! usage as it goes (JSON or SSE, see `llm::usage`), turns it into the client's schema when the
//! attempt translated (`ctx.answer`), removes the stream usage chunk Tollgate asked for on the
//! client's behalf, notes the time to first token, enforces the stream timeouts, and ends the
//! request (its record) exactly once: when the body ends, fails, or is dropped (client gone).

use std::{
    future::Future as _,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{header, Response};
use http_body_util::BodyExt as _;
use hyper::body::{Body, Frame, SizeHint};

use super::{
    ctx::{Ending, RequestCtx},
    BoxError, RespBody, Side,
};
use crate::llm::{
    self,
    translate::{JsonTranslator, StreamTranslator},
    usage::{Meter, Metered, MAX_METERED_JSON},
    ErrorKind,
};

/// The response header that carries the request's audit record id.
pub(super) const REQUEST_ID_HEADER: http::HeaderName = http::HeaderName::from_static("x-tollgate-request-id");

/// Phase 6: the response, metered, translated and recorded. A whole answer (not an event
/// stream) is read whole, up to `GATHER_MAX`, before its head leaves: the client then gets
/// head, body and end in one write with a `content-length`, where hyper would otherwise write
/// the head, the body and the end of a chunked body one by one (each write a wake-up of the
/// client, the costliest part of a proxied request on loopback).
pub(super) async fn respond(mut resp: Response<RespBody>, ctx: RequestCtx) -> Response<RespBody> {
    // The record's id, for the application's own logs (whatever a backend sent in its name).
    if let Ok(id) = http::HeaderValue::from_str(&ctx.request_id) {
        resp.headers_mut().insert(REQUEST_ID_HEADER, id);
    }
    let (resp, whole) = wrap(resp, ctx);
    if whole {
        gather(resp).await
    } else {
        resp
    }
}

/// Reads the first frame of a whole answer: `Recorded` gathers up to `GATHER_MAX` into it.
/// The whole answer: the response gets a full body (hyper writes its length); more: that
/// frame goes first, the rest follows as it comes.
async fn gather(resp: Response<RespBody>) -> Response<RespBody> {
    let (mut parts, mut body) = resp.into_parts();
    let first = body.frame().await;
    if body.is_end_stream() {
        let data = match &first {
            None => Some(Bytes::new()),
            Some(Ok(frame)) => frame.data_ref().cloned(), // trailers: None
            Some(Err(_)) => None,
        };
        if let Some(data) = data {
            if !parts.headers.contains_key(header::CONTENT_LENGTH) {
                // hyper writes the length of the full body (none where the status or the
                // method allow no body).
                parts.headers.remove(header::TRANSFER_ENCODING);
            }
            return Response::from_parts(parts, super::full(data));
        }
    }
    Response::from_parts(parts, Resumed { first, rest: body }.boxed())
}

/// A body whose first frame was read already.
struct Resumed {
    first: Option<Result<Frame<Bytes>, BoxError>>,
    rest: RespBody,
}

impl Body for Resumed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.first.take() {
            Some(frame) => Poll::Ready(Some(frame)),
            None => Pin::new(&mut self.rest).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_end_stream()
    }
}

/// Wraps the response so that it is metered, translated and recorded; says whether it is a
/// whole answer rather than an event stream.
fn wrap(resp: Response<RespBody>, mut ctx: RequestCtx) -> (Response<RespBody>, bool) {
    let (mut parts, body) = resp.into_parts();
    ctx.seen.status = parts.status.as_u16();
    let ok = parts.status.is_success();
    let answer = ctx.answer.take();
    // A form's `stream` may come after its file, unread: the answer's type tells.
    if llm::media::is_media(ctx.operation) && is_event_stream(&parts.headers) {
        ctx.stream = true;
    }
    // Usage is read from what the backend sent, in the backend's own schema. Errors pass
    // through unmetered; so does everything when accounting is off.
    let meter = answer
        .as_ref()
        .filter(|_| ok && ctx.snapshot.config.audit_enabled)
        .map(|a| Meter::new(a.meter.0, a.meter.1, ctx.stream, a.strip_usage).priced_by(ctx.units.clone()));
    let translator = answer.and_then(|a| a.translate).map(|t| {
        parts.headers.remove(header::CONTENT_LENGTH);
        match t.stream {
            Some(stream) if ok && ctx.stream => {
                let sse = header::HeaderValue::from_static("text/event-stream");
                parts.headers.insert(header::CONTENT_TYPE, sse);
                Translator::Stream(stream)
            }
            _ => {
                let json = header::HeaderValue::from_static("application/json");
                parts.headers.insert(header::CONTENT_TYPE, json);
                Translator::Json {
                    buf: Vec::new(),
                    status: parts.status.as_u16(),
                    overflow: false,
                    translate: t.json,
                }
            }
        }
    });
    if meter.as_ref().is_some_and(Meter::rewrites) {
        parts.headers.remove(header::CONTENT_LENGTH);
    }
    // Audio (speech) is played as it comes: never held back to be sent whole.
    let audio = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"audio/"));
    let whole = !ctx.stream && !audio && !is_event_stream(&parts.headers);
    let recorded = Recorded {
        translator,
        idle: ctx.idle_timeout.map(|d| (d, Box::pin(tokio::time::sleep(d)))),
        total: ctx
            .total_deadline
            .map(|at| Box::pin(tokio::time::sleep_until(at.into()))),
        inner: body,
        meter,
        metered: None,
        held: None,
        inner_done: false,
        stashed: None,
        gathered: Gathered::Nothing,
        whole,
        ctx: Some(ctx),
    };
    (Response::from_parts(parts, recorded.boxed()), whole)
}

/// Whether an answer is an event stream (SSE, or Bedrock's AWS event stream).
fn is_event_stream(headers: &http::HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_some_and(|t| {
        let t = t.as_bytes();
        t.starts_with(b"text/event-stream") || t.starts_with(b"application/vnd.amazon.eventstream")
    })
}

/// Turns the backend's answer into the client's schema.
enum Translator {
    Stream(Box<dyn StreamTranslator>),
    /// Whole JSON bodies (answers and errors) are translated once complete. `status`: the
    /// upstream's, for error shapes that do not name their type. `overflow`: the answer
    /// outgrew what is kept for translation.
    Json {
        buf: Vec<u8>,
        status: u16,
        overflow: bool,
        translate: JsonTranslator,
    },
}

struct Recorded {
    translator: Option<Translator>,
    /// `timeouts.idle` and its timer, re-armed at every chunk.
    idle: Option<(Duration, Pin<Box<tokio::time::Sleep>>)>,
    /// `timeouts.total` deadline.
    total: Option<Pin<Box<tokio::time::Sleep>>>,
    inner: RespBody,
    meter: Option<Meter>,
    /// What the meter said once the upstream body ended.
    metered: Option<Metered>,
    /// Bytes held back until the end (translated JSON, or the meter's rewritten rest).
    held: Option<Bytes>,
    inner_done: bool,
    /// A frame read while joining ready data, handed out next.
    stashed: Option<Result<Frame<Bytes>, BoxError>>,
    /// Data read from the backend, not yet handed to hyper.
    gathered: Gathered,
    /// A whole answer (not an event stream): gathered until it ends or fills `GATHER_MAX`.
    whole: bool,
    /// `None` once the request has ended.
    ctx: Option<RequestCtx>,
}

impl Recorded {
    fn rewrites(&self) -> bool {
        self.translator.is_some() || self.meter.as_ref().is_some_and(Meter::rewrites)
    }

    /// The upstream body ended normally.
    fn upstream_ended(&mut self) {
        self.inner_done = true;
        if let Some(Translator::Json {
            buf,
            status,
            overflow,
            translate,
        }) = self.translator.as_mut()
        {
            let out = if *overflow {
                // The status has left already: say plainly, in the client's error shape.
                let message = format!(
                    "the backend's answer is larger than {} MiB and was not translated",
                    MAX_METERED_JSON >> 20
                );
                let schema = self.ctx.as_ref().map(|c| c.schema).unwrap_or_default();
                llm::error_body(schema, ErrorKind::Upstream, &message)
            } else {
                Bytes::from(translate(buf, *status).to_string())
            };
            self.held = Some(out);
        }
        if let Some(m) = self.meter.as_mut() {
            let (rest, metered) = m.finish(true);
            self.metered = Some(metered);
            if !rest.is_empty() && self.held.is_none() {
                self.held = Some(Bytes::from(rest));
            }
        }
    }

    /// Ends the request (once).
    fn finish(&mut self, complete: bool, error: Option<(String, Side, &'static str)>) {
        let Some(mut ctx) = self.ctx.take() else { return };
        let metered = match (self.metered.take(), self.meter.as_mut()) {
            (Some(m), _) => m,
            (None, Some(meter)) => meter.finish(complete).1,
            (None, None) => Metered::default(),
        };
        ctx.end(Ending {
            complete,
            metered,
            error,
        });
    }

    /// A Tollgate stream timeout fired: end the record and break the response.
    fn timed_out(&mut self, reason: &'static str, what: &str) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.finish(false, Some((what.to_string(), Side::Upstream, reason)));
        self.inner_done = true;
        Poll::Ready(Some(Err(what.to_string().into())))
    }

    fn note_data(&mut self, len: usize) {
        let first_token = self.meter.as_ref().is_some_and(|m| m.first_token_seen);
        if let Some(ctx) = self.ctx.as_mut() {
            let elapsed = ctx.started.elapsed();
            ctx.seen.bytes += len as u64;
            if len > 0 && ctx.seen.first_byte.is_none() {
                ctx.seen.first_byte = Some(elapsed);
            }
            if first_token && ctx.seen.first_token.is_none() {
                ctx.seen.first_token = Some(elapsed);
            }
        }
    }

    /// Checks the stream timeouts while the backend is quiet.
    fn poll_timers(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.total.as_mut().is_some_and(|t| t.as_mut().poll(cx).is_ready()) {
            return self.timed_out(
                "total_timeout",
                "total request timeout (timeouts.total) while streaming",
            );
        }
        if self.idle.as_mut().is_some_and(|(_, t)| t.as_mut().poll(cx).is_ready()) {
            return self.timed_out(
                "stream_idle_timeout",
                "stream idle timeout (timeouts.idle): upstream went quiet",
            );
        }
        Poll::Pending
    }

    /// What goes to the client for one data frame of the backend (`None`: nothing yet).
    fn pass(&mut self, frame: Frame<Bytes>) -> Option<Frame<Bytes>> {
        let Some(data) = frame.data_ref() else {
            return Some(frame); // trailers
        };
        let observed = self.meter.as_mut().and_then(|m| m.observe(data));
        self.note_data(data.len());
        if let Some(content) = self.ctx.as_mut().and_then(|c| c.content.as_mut()) {
            content.response(data);
        }
        match self.translator.as_mut() {
            Some(Translator::Stream(t)) => {
                let out = t.feed(data);
                return (!out.is_empty()).then(|| Frame::data(out));
            }
            Some(Translator::Json { buf, overflow, .. }) => {
                if buf.len() + data.len() <= MAX_METERED_JSON {
                    buf.extend_from_slice(data);
                } else {
                    *overflow = true;
                }
                return None;
            }
            None => {}
        }
        match observed {
            Some(bytes) if bytes.is_empty() => None, // held until its event completes
            Some(bytes) => Some(Frame::data(Bytes::from(bytes))),
            None => Some(frame),
        }
    }
}

impl Recorded {
    /// The next frame for the client: one data frame of the backend after metering and
    /// translation, trailers, the held rest, or the end.
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(stashed) = self.stashed.take() {
            return Poll::Ready(Some(stashed));
        }
        loop {
            if self.inner_done {
                if let Some(rest) = self.held.take() {
                    return Poll::Ready(Some(Ok(Frame::data(rest))));
                }
                self.finish(true, None);
                return Poll::Ready(None);
            }
            let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => return self.poll_timers(cx),
                Poll::Ready(None) => {
                    self.upstream_ended();
                    continue;
                }
                Poll::Ready(Some(Err(e))) => {
                    self.finish(
                        false,
                        Some((format!("upstream body: {e}"), Side::Upstream, "upstream_body")),
                    );
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(frame))) => frame,
            };
            if let Some((period, timer)) = self.idle.as_mut() {
                let at = tokio::time::Instant::now() + *period;
                timer.as_mut().reset(at);
            }
            let Some(out) = self.pass(frame) else { continue };
            // hyper stops polling once a body with a known end says it has ended, so the end
            // is noticed here rather than by a final `None`.
            if !self.rewrites() && self.inner.is_end_stream() {
                self.upstream_ended();
                self.finish(true, None);
            }
            return Poll::Ready(Some(Ok(out)));
        }
    }

    /// The request has ended and nothing is left to send.
    fn ended(&self) -> bool {
        self.ctx.is_none()
            && self.inner_done
            && self.held.is_none()
            && self.stashed.is_none()
            && matches!(self.gathered, Gathered::Nothing)
    }
}

/// At most this many bytes are gathered into one frame for the client.
const GATHER_MAX: usize = 64 * 1024;

/// Data gathered for one write to the client.
#[derive(Default)]
enum Gathered {
    #[default]
    Nothing,
    One(Bytes),
    Many(bytes::BytesMut),
}

impl Gathered {
    fn len(&self) -> usize {
        match self {
            Gathered::Nothing => 0,
            Gathered::One(b) => b.len(),
            Gathered::Many(b) => b.len(),
        }
    }

    fn push(&mut self, data: Bytes) {
        *self = match std::mem::take(self) {
            Gathered::Nothing => Gathered::One(data),
            Gathered::One(first) => {
                let mut many = bytes::BytesMut::with_capacity(first.len() + data.len());
                many.extend_from_slice(&first);
                many.extend_from_slice(&data);
                Gathered::Many(many)
            }
            Gathered::Many(mut many) => {
                many.extend_from_slice(&data);
                Gathered::Many(many)
            }
        }
    }

    /// The gathered data as one frame, if any.
    fn take(&mut self) -> Option<Frame<Bytes>> {
        match std::mem::take(self) {
            Gathered::Nothing => None,
            Gathered::One(b) => Some(Frame::data(b)),
            Gathered::Many(b) => Some(Frame::data(b.freeze())),
        }
    }
}

impl Body for Recorded {
    type Data = Bytes;
    type Error = BoxError;

    /// Frames that are ready together leave together, and a whole answer leaves whole (up to
    /// `GATHER_MAX`): hyper then makes one write, and wakes the client once, where it would
    /// make one per frame and one more for the end of a chunked body.
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if this.gathered.len() >= GATHER_MAX {
                return Poll::Ready(this.gathered.take().map(Ok));
            }
            let next = match this.poll_next(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        this.gathered.push(data);
                        continue;
                    }
                    Err(trailers) => Some(Ok(trailers)),
                },
                Poll::Ready(Some(Err(e))) => Some(Err(e)),
                Poll::Ready(None) => None,
                // A whole answer waits for the rest (timers armed: `poll_next` polled them).
                Poll::Pending if this.whole => return Poll::Pending,
                Poll::Pending => match this.gathered.take() {
                    Some(data) => return Poll::Ready(Some(Ok(data))),
                    None => return Poll::Pending,
                },
            };
            // The end, trailers or an error: gathered data goes first.
            return match this.gathered.take() {
                Some(data) => {
                    if let Some(next) = next {
                        this.stashed = Some(next);
                    }
                    Poll::Ready(Some(Ok(data)))
                }
                None => Poll::Ready(next),
            };
        }
    }

    fn is_end_stream(&self) -> bool {
        if self.ended() {
            true
        } else if self.rewrites() {
            false
        } else {
            self.stashed.is_none() && self.inner.is_end_stream()
        }
    }

    fn size_hint(&self) -> SizeHint {
        if self.rewrites() {
            SizeHint::default()
        } else {
            self.inner.size_hint()
        }
    }
}

impl Drop for Recorded {
    fn drop(&mut self) {
        if !self.rewrites() && self.inner.is_end_stream() && !self.inner_done {
            // An empty body that hyper never needed to poll.
            self.upstream_ended();
            self.finish(true, None);
        } else {
            let ended = self.inner_done;
            let error = (!ended).then(|| {
                (
                    "response not completed (client gone or upstream cut)".to_string(),
                    Side::Client,
                    "response_incomplete",
                )
            });
            self.finish(ended, error);
        }
    }
}
