//! Phase 4, admit: reserve the request's share of every limit that counts it (once, whatever
//! its attempts), or refuse it with 429 in the client's shape. The reservation is reconciled
//! with real usage by `record`, and refunded if no backend answered.

use super::{ctx::RequestCtx, parse::ClientBody, ProxyError};
use crate::{
    accounting::audit::{LimitDecision as Decision, LimitOutcome as Outcome, LimitState},
    limits, llm,
};

pub(super) async fn admit(
    ctx: &mut RequestCtx,
    body: &ClientBody,
    first_backend: Option<usize>,
) -> Result<(), ProxyError> {
    let snapshot = ctx.snapshot.clone();
    let config = &snapshot.config;
    if config.limits.is_empty() {
        return Ok(());
    }
    let w = &ctx.conn.workload;
    let subject = limits::Subject {
        workload: w.facts(),
        route: ctx.route.map(|r| config.routes[r].name.as_str()),
        provider: ctx.provider.map(|p| config.providers[p].name.as_str()),
        model: ctx.model.as_deref(),
        model_known: ctx.model.as_deref().is_some_and(|m| config.prices.knows(m)),
        backend: first_backend.map(|b| config.backends[b].name.as_str()),
    };
    // Tokens: the output the request allows (or the limits' estimate) plus ~4 bytes per input
    // token.
    let read = body.read();
    let estimate_out = read.and_then(|(_, p)| p.max_tokens).unwrap_or_else(|| {
        config
            .limits
            .iter()
            .map(|l| l.output_estimate)
            .max()
            .unwrap_or(limits::DEFAULT_OUTPUT_ESTIMATE)
    });
    let estimate_in = read.map(|(b, _)| (b.len() as u64).div_ceil(4)).unwrap_or(0);
    // `max_tokens` is the client's to write: saturate rather than overflow.
    let tokens = estimate_in.saturating_add(estimate_out);
    let cost = ctx.model.as_deref().and_then(|m| config.prices.get(m)).map(|price| {
        let u = llm::usage::Usage {
            input: estimate_in,
            output: estimate_out,
            ..Default::default()
        };
        crate::accounting::cost(price, &u)
    });
    let charges = limits::charges(&config.limits, &subject, tokens, cost);
    let mut counted: Vec<String> = charges.iter().map(|c| c.limit.clone()).collect();
    counted.dedup();
    let metrics = &ctx.l7.metrics;
    match ctx.l7.limits.admit(&charges).await {
        Ok(limits::Admission {
            used: Ok(used),
            degraded,
        }) => {
            ctx.policy.limits = charges
                .iter()
                .zip(used)
                .map(|(c, used)| LimitState {
                    name: c.limit.clone(),
                    kind: c.kind,
                    window: c.window.into(),
                    window_left_s: c.window_left,
                    max: c.max,
                    used,
                    remaining: c.max.saturating_sub(used),
                })
                .collect();
            for name in &counted {
                metrics.limit_decision(name, "allowed");
            }
            ctx.limit = Some(Decision {
                outcome: Outcome::Allowed,
                counted,
                degraded,
                ..Default::default()
            });
            ctx.reservation = Some(limits::Reservation {
                charges,
                reserved_tokens: tokens,
                reserved_cost: cost.unwrap_or(0),
            });
            Ok(())
        }
        Ok(limits::Admission { used: Err(i), degraded }) => {
            let c = &charges[i];
            metrics.limit_decision(&c.limit, "denied");
            ctx.limit = Some(Decision {
                outcome: Outcome::Denied,
                limit: Some(c.limit.clone()),
                kind: Some(c.kind),
                retry_after_s: Some(c.window_left),
                counted,
                degraded,
            });
            Err(ProxyError::LimitExceeded {
                limit: c.limit.clone(),
                kind: c.kind.as_str(),
                retry_after: c.window_left,
            })
        }
        Err(e) => {
            ctx.limit = Some(Decision {
                outcome: Outcome::StoreUnavailable,
                counted,
                degraded: true,
                ..Default::default()
            });
            Err(ProxyError::LimitStore(e.to_string()))
        }
    }
}
