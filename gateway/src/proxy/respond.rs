//! `response_filter` and `logging`: the response body passes frame by frame through a wrapper
//! that meters usage as it goes (JSON or SSE, see `llm::usage`), removes the stream usage chunk
//! Tollgate asked for on the client's behalf, notes the time to first token, and writes the
//! audit record exactly once: when the body ends, fails, or is dropped (client gone).

use std::{
    future::Future as _,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{header, Response};
use http_body_util::BodyExt as _;
use hyper::body::{Body, Frame, SizeHint};

use super::{BoxError, RequestCtx, RespBody, L7};
use crate::{
    accounting::{self, audit::Tokens},
    config::ApiSchema,
    llm::usage::{Meter, Metered},
    llm::{
        translate::{self, Translation},
        Operation,
    },
    telemetry::{jsonl, otlp, Metrics},
};

/// Wraps the response so that it is metered and recorded.
pub(super) fn wrap(resp: Response<RespBody>, ctx: RequestCtx, l7: &L7) -> Response<RespBody> {
    let (mut parts, body) = resp.into_parts();
    let mut ctx = ctx;
    ctx.audit.status = parts.status.as_u16();
    // Errors pass through unmetered; so does everything when accounting is off.
    let accounting = ctx.snapshot.config.audit_enabled;
    let ok = parts.status.is_success();
    let translation = ctx.translation;
    // Usage is read from what the backend sent, in the backend's own schema.
    let meter = (accounting && ok).then(|| match translation {
        Some((Translation::OpenAiChatToAnthropic, _)) => {
            Meter::new(ApiSchema::Anthropic, Operation::Messages, ctx.audit.stream, false)
        }
        Some((Translation::AnthropicToOpenAiChat, _)) => {
            Meter::new(ApiSchema::Openai, Operation::ChatCompletions, ctx.audit.stream, false)
        }
        Some((Translation::OpenAiChatToGemini | Translation::AnthropicToGemini, _)) => {
            Meter::new(ApiSchema::Gemini, Operation::ChatCompletions, ctx.audit.stream, false)
        }
        Some((Translation::OpenAiEmbeddingsToGemini { .. } | Translation::OpenAiEmbeddingsToVertex { .. }, _)) => {
            Meter::new(ApiSchema::Gemini, Operation::Embeddings, false, false)
        }
        Some((Translation::OpenAiChatToBedrock | Translation::AnthropicToBedrock, _)) => {
            Meter::new(ApiSchema::Bedrock, Operation::ChatCompletions, ctx.audit.stream, false)
        }
        Some((Translation::OpenAiEmbeddingsToBedrockTitan { .. }, _)) => {
            Meter::new(ApiSchema::Bedrock, Operation::Embeddings, false, false)
        }
        _ => Meter::new(ctx.schema, ctx.operation, ctx.audit.stream, ctx.strip_usage),
    });
    let translator = match translation {
        Some((
            to @ (Translation::OpenAiChatToAnthropic
            | Translation::AnthropicToOpenAiChat
            | Translation::OpenAiChatToGemini
            | Translation::OpenAiChatToBedrock
            | Translation::AnthropicToGemini
            | Translation::AnthropicToBedrock
            | Translation::OpenAiEmbeddingsToGemini { .. }
            | Translation::OpenAiEmbeddingsToVertex { .. }
            | Translation::OpenAiEmbeddingsToBedrockTitan { .. }),
            include_usage,
        )) => {
            parts.headers.remove(header::CONTENT_LENGTH);
            if ok && ctx.audit.stream {
                parts.headers.insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("text/event-stream"),
                );
                Some(match to {
                    Translation::OpenAiChatToAnthropic => {
                        Translator::ToOpenAiStream(translate::AnthropicStreamToOpenAi::new(include_usage))
                    }
                    Translation::OpenAiChatToBedrock => {
                        Translator::FromBedrockStream(translate::BedrockStreamToOpenAi::new(
                            ctx.audit.served_model.as_deref().unwrap_or("bedrock"),
                            include_usage,
                        ))
                    }
                    Translation::AnthropicToGemini => Translator::GeminiToAnthropicStream(
                        translate::GeminiStreamToOpenAi::new(
                            ctx.audit.served_model.as_deref().unwrap_or("gemini"),
                            true,
                        ),
                        translate::OpenAiStreamToAnthropic::default(),
                    ),
                    Translation::AnthropicToBedrock => Translator::BedrockToAnthropicStream(
                        translate::BedrockStreamToOpenAi::new(
                            ctx.audit.served_model.as_deref().unwrap_or("bedrock"),
                            true,
                        ),
                        translate::OpenAiStreamToAnthropic::default(),
                    ),
                    Translation::OpenAiChatToGemini => {
                        Translator::FromGeminiStream(translate::GeminiStreamToOpenAi::new(
                            ctx.audit.served_model.as_deref().unwrap_or("gemini"),
                            include_usage,
                        ))
                    }
                    _ => Translator::ToAnthropicStream(translate::OpenAiStreamToAnthropic::default()),
                })
            } else {
                parts.headers.insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("application/json"),
                );
                Some(Translator::Json {
                    buf: Vec::new(),
                    status: parts.status.as_u16(),
                    overflow: false,
                    to,
                })
            }
        }
        _ => None,
    };
    if meter.as_ref().is_some_and(Meter::rewrites) {
        parts.headers.remove(header::CONTENT_LENGTH);
    }
    let idle = ctx.idle_timeout.map(|d| (d, Box::pin(tokio::time::sleep(d))));
    let total = ctx
        .total_deadline
        .map(|at| Box::pin(tokio::time::sleep_until(at.into())));
    let recorded = Recorded {
        model_hint: ctx.audit.served_model.clone().unwrap_or_default(),
        translator,
        idle,
        total,
        limits: l7.limits.clone(),
        inner: body,
        meter,
        metered: None,
        held: None,
        inner_done: false,
        first_byte: None,
        first_token: None,
        ctx: Some(ctx),
        metrics: l7.metrics.clone(),
        audit: l7.audit.clone(),
        spans: l7.spans.clone(),
    };
    Response::from_parts(parts, recorded.boxed())
}

/// Turns the backend's answer into the client's schema.
enum Translator {
    /// Anthropic events → OpenAI chunks.
    ToOpenAiStream(translate::AnthropicStreamToOpenAi),
    /// OpenAI chunks → Anthropic events.
    ToAnthropicStream(translate::OpenAiStreamToAnthropic),
    /// Gemini stream → OpenAI chunks.
    FromGeminiStream(translate::GeminiStreamToOpenAi),
    /// Bedrock ConverseStream → OpenAI chunks.
    FromBedrockStream(translate::BedrockStreamToOpenAi),
    /// Gemini stream → OpenAI chunks → Anthropic events.
    GeminiToAnthropicStream(translate::GeminiStreamToOpenAi, translate::OpenAiStreamToAnthropic),
    /// Bedrock ConverseStream → OpenAI chunks → Anthropic events.
    BedrockToAnthropicStream(translate::BedrockStreamToOpenAi, translate::OpenAiStreamToAnthropic),
    /// Whole JSON bodies (answers and errors) are translated once complete.
    /// `status`: the upstream's, for error shapes that do not name their type.
    /// `overflow`: the answer outgrew what is kept for translation.
    Json {
        buf: Vec<u8>,
        status: u16,
        to: Translation,
        overflow: bool,
    },
}

/// What a translator made of a chunk of the backend's body.
enum Fed {
    /// Bytes for the client (possibly none yet: an event is incomplete).
    Out(Bytes),
    /// Kept until the body ends (whole JSON answers).
    Kept,
}

impl Translator {
    fn feed(&mut self, data: &Bytes) -> Fed {
        match self {
            Translator::ToOpenAiStream(t) => Fed::Out(t.feed(data)),
            Translator::ToAnthropicStream(t) => Fed::Out(t.feed(data)),
            Translator::FromGeminiStream(t) => Fed::Out(t.feed(data)),
            Translator::FromBedrockStream(t) => Fed::Out(t.feed(data)),
            Translator::GeminiToAnthropicStream(a, b) => Fed::Out(b.feed(&a.feed(data))),
            Translator::BedrockToAnthropicStream(a, b) => Fed::Out(b.feed(&a.feed(data))),
            Translator::Json { buf, overflow, .. } => {
                if buf.len() + data.len() <= crate::llm::usage::MAX_METERED_JSON {
                    buf.extend_from_slice(data);
                } else {
                    *overflow = true;
                }
                Fed::Kept
            }
        }
    }
}

struct Recorded {
    translator: Option<Translator>,
    /// Model named in translated answers when the backend does not say.
    model_hint: String,
    /// `timeouts.idle` and its timer, re-armed at every chunk.
    idle: Option<(Duration, Pin<Box<tokio::time::Sleep>>)>,
    /// `timeouts.total` deadline.
    total: Option<Pin<Box<tokio::time::Sleep>>>,
    limits: Arc<crate::limits::Store>,
    inner: RespBody,
    meter: Option<Meter>,
    /// What the meter said once the upstream body ended.
    metered: Option<Metered>,
    /// Bytes the meter held back until the end (rewriting only).
    held: Option<Bytes>,
    inner_done: bool,
    first_byte: Option<Duration>,
    first_token: Option<Duration>,
    ctx: Option<RequestCtx>,
    metrics: Arc<Metrics>,
    audit: jsonl::Sink,
    spans: Option<otlp::SpanSink>,
}

impl Recorded {
    fn rewrites(&self) -> bool {
        self.translator.is_some() || self.meter.as_ref().is_some_and(Meter::rewrites)
    }

    fn elapsed(&self) -> Duration {
        self.ctx.as_ref().map(|c| c.started.elapsed()).unwrap_or_default()
    }

    /// The upstream body ended normally.
    fn upstream_ended(&mut self) {
        self.inner_done = true;
        if let Some(Translator::Json {
            buf,
            status,
            to,
            overflow,
        }) = self.translator.as_mut()
        {
            if *overflow {
                // The status has left already: say plainly, in the client's error shape.
                let message = format!(
                    "the backend's answer is larger than {} MiB and was not translated",
                    crate::llm::usage::MAX_METERED_JSON >> 20
                );
                let body = match to {
                    Translation::AnthropicToOpenAiChat
                    | Translation::AnthropicToGemini
                    | Translation::AnthropicToBedrock => {
                        serde_json::json!({"type": "error", "error": {"type": "api_error", "message": message}})
                    }
                    _ => {
                        serde_json::json!({"error": {"message": message, "type": "api_error", "param": null, "code": null}})
                    }
                };
                self.held = Some(Bytes::from(body.to_string()));
                if let Some(m) = self.meter.as_mut() {
                    self.metered = Some(m.finish(true).1);
                }
                return;
            }
            let parsed = serde_json::from_slice::<serde_json::Value>(buf);
            let ok = (200..300).contains(status);
            let translated = match (*to, ok, parsed) {
                (Translation::AnthropicToOpenAiChat, true, Ok(v)) => translate::openai_chat_to_anthropic_message(&v),
                (Translation::AnthropicToOpenAiChat, _, _) => translate::openai_error_to_anthropic(buf, *status),
                (Translation::OpenAiChatToGemini, true, Ok(v)) => translate::gemini_to_openai(&v, &self.model_hint),
                (Translation::OpenAiEmbeddingsToGemini { base64 }, true, Ok(v)) => {
                    translate::gemini_embeddings_to_openai(&v, &self.model_hint, base64)
                }
                (Translation::OpenAiEmbeddingsToVertex { base64 }, true, Ok(v)) => {
                    translate::vertex_embeddings_to_openai(&v, &self.model_hint, base64)
                }
                (
                    Translation::OpenAiChatToGemini
                    | Translation::OpenAiEmbeddingsToGemini { .. }
                    | Translation::OpenAiEmbeddingsToVertex { .. },
                    _,
                    _,
                ) => translate::gemini_error_to_openai(buf),
                (Translation::OpenAiChatToBedrock, true, Ok(v)) => translate::bedrock_to_openai(&v, &self.model_hint),
                (Translation::OpenAiEmbeddingsToBedrockTitan { base64 }, true, Ok(v)) => {
                    translate::titan_embeddings_to_openai(&v, &self.model_hint, base64)
                }
                (Translation::OpenAiChatToBedrock | Translation::OpenAiEmbeddingsToBedrockTitan { .. }, _, _) => {
                    translate::bedrock_error_to_openai(buf, *status)
                }
                (Translation::AnthropicToGemini, true, Ok(v)) => {
                    translate::openai_chat_to_anthropic_message(&translate::gemini_to_openai(&v, &self.model_hint))
                }
                (Translation::AnthropicToGemini, _, _) => translate::openai_error_to_anthropic(
                    translate::gemini_error_to_openai(buf).to_string().as_bytes(),
                    *status,
                ),
                (Translation::AnthropicToBedrock, true, Ok(v)) => {
                    translate::openai_chat_to_anthropic_message(&translate::bedrock_to_openai(&v, &self.model_hint))
                }
                (Translation::AnthropicToBedrock, _, _) => translate::openai_error_to_anthropic(
                    translate::bedrock_error_to_openai(buf, *status).to_string().as_bytes(),
                    *status,
                ),
                (_, true, Ok(v)) => translate::anthropic_message_to_openai(&v),
                (_, _, _) => translate::anthropic_error_to_openai(buf),
            };
            self.held = Some(Bytes::from(translated.to_string()));
        }
        if let Some(m) = self.meter.as_mut() {
            let (rest, metered) = m.finish(true);
            self.metered = Some(metered);
            if !rest.is_empty() {
                self.held = Some(Bytes::from(rest));
            }
        }
    }

    fn finish(&mut self, ended: bool, error: Option<String>) {
        let Some(mut ctx) = self.ctx.take() else { return };
        let metered = match (self.metered.take(), self.meter.as_mut()) {
            (Some(m), _) => m,
            (None, Some(meter)) => meter.finish(ended).1,
            (None, None) => Metered::default(),
        };
        if let Some(reservation) = ctx.reservation.take() {
            self.reconcile(reservation, &ctx, metered.usage.as_ref());
        }
        let a = &mut ctx.audit;
        a.complete = ended;
        if let Some(e) = error {
            a.error.get_or_insert(e);
        }
        if let Some(m) = metered.model {
            a.served_model = Some(m);
        }
        a.usage_status = match (&metered.usage, metered.complete && ended) {
            (Some(_), true) => "complete",
            (Some(_), false) => "partial",
            (None, _) => "missing",
        }
        .into();
        a.tokens = metered.usage.as_ref().map(Tokens::from);
        let priced_model = a.served_model.clone().or_else(|| a.model.clone());
        let price = priced_model.as_deref().and_then(|m| ctx.snapshot.config.prices.get(m));
        if let (Some(price), Some(usage)) = (price, &metered.usage) {
            let nano = accounting::cost(price, usage);
            a.cost_nano_usd = Some(nano);
            a.cost_usd = Some(accounting::usd(nano));
        }
        let latency = ctx.started.elapsed();
        a.latency_ms = latency.as_secs_f64() * 1000.0;
        let ttft = if a.stream {
            self.first_token.or(self.first_byte)
        } else {
            self.first_byte
        };
        a.ttft_ms = ttft.map(|d| d.as_secs_f64() * 1000.0);
        tracing::debug!(target: "tollgate::request", trace_id = %a.trace_id, status = a.status, "request");
        if !ctx.snapshot.config.audit_enabled {
            let backend = a.backend.as_deref().unwrap_or("none");
            self.metrics
                .request_done(a.provider.as_deref().unwrap_or("unknown"), backend, a.status);
            return;
        }
        self.metrics
            .request_audit(a, price.is_some(), latency, ttft, &ctx.snapshot.config.prices);
        if let Some(spans) = &self.spans {
            spans.record(a, ctx.trace.parent_span_id, ctx.started_at);
        }
        self.audit.write_json(a);
    }

    /// Replaces the admission estimate with what the request really used. A request that got
    /// no answer from any backend gives its tokens and money back; one whose usage is unknown
    /// keeps its reservation.
    fn reconcile(&self, r: crate::limits::Reservation, ctx: &RequestCtx, usage: Option<&crate::llm::usage::Usage>) {
        let answered = ctx.audit.attempts.iter().any(|a| a.status.is_some());
        let (tokens, cost) = match usage {
            Some(u) => {
                let model = ctx.audit.served_model.as_deref().or(ctx.audit.model.as_deref());
                let price = model.and_then(|m| ctx.snapshot.config.prices.get(m));
                (
                    Some(u.total()),
                    Some(price.map(|p| accounting::cost(p, u)).unwrap_or(r.reserved_cost)),
                )
            }
            None if !answered => (Some(0), Some(0)),
            None => (None, None),
        };
        let deltas: Vec<(String, i64, u64)> = r
            .charges
            .iter()
            .filter_map(|c| {
                let delta = match c.kind {
                    "tokens" => tokens? as i64 - r.reserved_tokens as i64,
                    "budget" => cost? as i64 - r.reserved_cost as i64,
                    _ => return None,
                };
                (delta != 0).then(|| (c.key.clone(), delta, c.window_left))
            })
            .collect();
        if deltas.is_empty() {
            return;
        }
        // Local counters are adjusted right here; only Redis needs a task.
        let Some(deltas) = self.limits.adjust_local(deltas) else {
            return;
        };
        let store = self.limits.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move { store.adjust(deltas).await });
        }
    }

    /// A Tollgate stream timeout fired: end the record and break the response.
    fn timed_out(&mut self, reason: &'static str, what: &str) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.metrics.request_error(reason);
        if let Some(ctx) = self.ctx.as_mut() {
            ctx.audit.error_side = Some("upstream".into());
        }
        self.finish(false, Some(what.to_string()));
        self.inner_done = true;
        Poll::Ready(Some(Err(what.to_string().into())))
    }

    fn note_data(&mut self, len: usize) {
        if len > 0 && self.first_byte.is_none() {
            self.first_byte = Some(self.elapsed());
        }
        if let Some(ctx) = self.ctx.as_mut() {
            ctx.audit.response_bytes += len as u64;
        }
        if self.first_token.is_none() && self.meter.as_ref().is_some_and(|m| m.first_token_seen) {
            self.first_token = Some(self.elapsed());
        }
    }
}

impl Body for Recorded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if self.inner_done {
                if let Some(rest) = self.held.take() {
                    return Poll::Ready(Some(Ok(Frame::data(rest))));
                }
                self.finish(true, None);
                return Poll::Ready(None);
            }
            let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => {
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
                    return Poll::Pending;
                }
                Poll::Ready(None) => {
                    self.upstream_ended();
                    continue;
                }
                Poll::Ready(Some(Err(e))) => {
                    self.finish(false, Some(format!("upstream body: {e}")));
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(frame))) => frame,
            };
            if let Some((period, timer)) = self.idle.as_mut() {
                let at = tokio::time::Instant::now() + *period;
                timer.as_mut().reset(at);
            }
            let Some(data) = frame.data_ref() else {
                return Poll::Ready(Some(Ok(frame))); // trailers
            };
            let observed = self.meter.as_mut().and_then(|m| m.observe(data));
            self.note_data(data.len());
            match self.translator.as_mut().map(|t| t.feed(data)) {
                Some(Fed::Out(out)) if out.is_empty() => continue,
                Some(Fed::Out(out)) => return Poll::Ready(Some(Ok(Frame::data(out)))),
                Some(Fed::Kept) => continue,
                None => {}
            }
            let out = match observed {
                Some(bytes) if bytes.is_empty() => continue, // held until its event completes
                Some(bytes) => Frame::data(Bytes::from(bytes)),
                None => frame,
            };
            // hyper stops polling once a body with a known end says it has ended, so the end
            // is noticed here rather than by a final `None`.
            if !self.rewrites() && self.inner.is_end_stream() {
                self.upstream_ended();
                self.finish(true, None);
            }
            return Poll::Ready(Some(Ok(out)));
        }
    }

    fn is_end_stream(&self) -> bool {
        if self.rewrites() {
            self.inner_done && self.held.is_none() && self.ctx.is_none()
        } else {
            self.inner.is_end_stream()
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
            self.finish(
                ended,
                (!ended).then(|| "response not completed (client gone or upstream cut)".into()),
            );
        }
    }
}
