//! Phase 5, attempt: one attempt per planned backend, within the route's attempt budget. The
//! policy is `plan::Plan` (fallback, retry classification, ejection, cool-down; tested with no
//! network); `upstream::Call` makes each call. Nothing of an answer reaches the client before
//! its attempt is judged, so retries are always safe.

use http::{request::Parts, Response};

use super::{
    ctx::RequestCtx,
    parse::ClientBody,
    plan::{Outcome, Plan, Verdict},
    upstream, ProxyError, RespBody,
};
use crate::accounting::audit::Attempt;

/// Runs the attempts until one delivers.
pub(super) async fn run(
    ctx: &mut RequestCtx,
    parts: Parts,
    body: ClientBody,
    mut plan: Plan,
) -> Result<Response<RespBody>, ProxyError> {
    let health = ctx.l7.health.clone();
    let snapshot = ctx.snapshot.clone();
    let name = |b: usize| snapshot.config.backends[b].name.clone();
    let mut call = upstream::Call::new(ctx, parts, body);
    // The last answer a retry passed over: the client gets it (and its translation) when no
    // later attempt delivers, rather than a gateway error that hides what the backend said.
    let mut passed_over = None;
    while let Some(mut step) = plan.next(&health, name) {
        ctx.probe = step.probe.take();
        let started = std::time::Instant::now();
        let result = call.send(ctx, &step).await;
        let backend = name(step.backend);
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let (outcome, resp) = match result {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let retry_after = crate::route::health::retry_after(resp.headers());
                (Outcome::Answered { status, retry_after }, Some(resp))
            }
            Err(outcome) => (outcome, None),
        };
        ctx.attempts.push(attempt_record(&backend, &outcome, ms));
        let (verdict, label) = plan.judge(outcome, &health, &backend);
        if let Some(label) = label {
            ctx.l7.metrics.attempt(&backend, label);
        }
        // The probe was answered (or failed): health knows; the slot is no longer ours.
        ctx.probe = None;
        match (verdict, resp) {
            (Verdict::Deliver, Some(resp)) => return Ok(resp),
            (Verdict::Next, Some(resp)) => passed_over = Some((resp, ctx.answer.take())),
            (verdict, _) => {
                // An answer that is not delivered must not translate what comes instead.
                ctx.answer = None;
                if let Verdict::Stop(e) = verdict {
                    return deliver_passed_over(ctx, passed_over, e);
                }
            }
        }
    }
    let e = plan.give_up();
    deliver_passed_over(ctx, passed_over, e)
}

/// The answer a retry passed over, with its translation, or the error.
fn deliver_passed_over(
    ctx: &mut RequestCtx,
    passed_over: Option<(Response<RespBody>, Option<crate::llm::translate::Answer>)>,
    e: ProxyError,
) -> Result<Response<RespBody>, ProxyError> {
    match passed_over {
        Some((resp, answer)) => {
            ctx.answer = answer;
            ctx.seen.status = resp.status().as_u16();
            Ok(resp)
        }
        None => Err(e),
    }
}

fn attempt_record(backend: &str, outcome: &Outcome, ms: f64) -> Attempt {
    let (status, error, duration_ms) = match outcome {
        Outcome::Answered { status, .. } => (Some(*status), None, ms),
        Outcome::NotSent(e) => (None, Some(e.to_string()), 0.0),
        Outcome::Unreachable(_, e) | Outcome::TimedOut(e) | Outcome::TotalTimeout(e) => (None, Some(e.to_string()), ms),
    };
    Attempt {
        backend: backend.to_string(),
        status,
        error,
        duration_ms,
    }
}
