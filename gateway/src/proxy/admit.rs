//! Phase 4, admit: reserve the request's share of every limit that counts it (once, whatever
//! its attempts), or refuse it with 429 in the client's shape. The reservation is reconciled
//! with real usage by `record`, and refunded if no backend answered.

use super::{ctx::RequestCtx, parse::ClientBody, ProxyError};
use crate::{
    accounting::audit::{LimitDecision as Decision, LimitOutcome as Outcome, LimitState},
    config::Config,
    limits, llm,
    matching::WorkloadFacts,
};

/// What a request reserves before it is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Estimate {
    /// Input tokens: about one per 4 bytes of body.
    pub input: u64,
    /// Output tokens: the request's `max_tokens`, else the largest `outputEstimate` of the
    /// limits.
    pub output: u64,
    /// Their sum (saturating: `max_tokens` is the client's to write).
    pub tokens: u64,
    /// Their price in nano-dollars; `None` for a model without a price.
    pub cost: Option<u64>,
}

/// The reservation of a request for `model` with `input` tokens of body and the `max_tokens`
/// it asks for. Pure: `tollgate explain` asks it too.
pub fn estimate(config: &Config, model: Option<&str>, input: u64, max_tokens: Option<u64>) -> Estimate {
    let output = max_tokens.unwrap_or_else(|| {
        config
            .limits
            .iter()
            .map(|l| l.output_estimate)
            .max()
            .unwrap_or(limits::DEFAULT_OUTPUT_ESTIMATE)
    });
    let cost = model.and_then(|m| config.prices.get(m)).map(|price| {
        let u = llm::usage::Usage {
            input,
            output,
            ..Default::default()
        };
        crate::accounting::cost(price, &u)
    });
    Estimate {
        input,
        output,
        tokens: input.saturating_add(output),
        cost,
    }
}

/// What limits look at, from what identify, parse and routing decided (`route`, `provider`
/// and `backend` index the config's lists; `backend` is the plan's first). Pure: `tollgate
/// explain` asks it too.
pub fn subject<'a>(
    config: &'a Config,
    workload: WorkloadFacts<'a>,
    route: Option<usize>,
    provider: Option<usize>,
    model: Option<&'a str>,
    backend: Option<usize>,
) -> limits::Subject<'a> {
    limits::Subject {
        workload,
        route: route.map(|r| config.routes[r].name.as_str()),
        provider: provider.map(|p| config.providers[p].name.as_str()),
        model,
        model_known: model.is_some_and(|m| config.prices.knows(m)),
        backend: backend.map(|b| config.backends[b].name.as_str()),
    }
}

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
    let subject = subject(
        config,
        ctx.conn.workload.facts(),
        ctx.route,
        ctx.provider,
        ctx.model.as_deref(),
        first_backend,
    );
    let input = body.read().map(|(b, _)| (b.len() as u64).div_ceil(4)).unwrap_or(0);
    let Estimate { tokens, cost, .. } = estimate(
        config,
        ctx.model.as_deref(),
        input,
        body.parsed().and_then(|p| p.max_tokens),
    );
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
