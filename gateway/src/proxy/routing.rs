//! Phase 3, route: the first route whose conditions all hold — operation included: inference
//! operations are allowed unless a route narrows them, every other operation (`/v1/files`,
//! `/v1/organization/…`) only where a route lists it — then its backends in the order the
//! attempts will try them. No route: the provider's default backend for inference, 403 for
//! anything else.
//!
//! The decision itself ([`choose`]) needs no request: `tollgate explain` asks it too.

use std::time::{Duration, Instant};

use http::HeaderMap;

use super::{
    ctx::{RequestCtx, Rule},
    plan::Plan,
    ProxyError,
};
use crate::{
    accounting::audit::{Retry, Timeouts},
    config::{
        l7::{RetryOn, DEFAULT_RETRY_ON, DEFAULT_ROUTE_TIMEOUT},
        Config,
    },
    route::{self, RouteInput},
};

/// What routing decides before any backend is tried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    /// The route that matched (index into `config.routes`); `None`: the provider's default
    /// backend serves.
    pub route: Option<usize>,
    /// The provider's default backend (index into `config.backends`) when no route matched.
    pub default_backend: Option<usize>,
    /// Per attempt, to the response headers (`timeouts.firstByte`).
    pub first_byte_timeout: Duration,
    /// The whole request (`timeouts.total`).
    pub total_timeout: Option<Duration>,
    /// Longest gap between two chunks of the response (`timeouts.idle`).
    pub idle_timeout: Option<Duration>,
    /// Attempts across all tiers, for a body Tollgate read (one for a body streamed through).
    pub attempts: u32,
    pub retry_on: Vec<RetryOn>,
    pub retry_statuses: Vec<u16>,
}

/// Routing's decision for a request of `input` identified as `provider` (index into
/// `config.providers`): a matching route, else the provider's default backend for an
/// inference operation, else an error (403 for an operation no route allows, 404-like
/// `NoRoute` when the provider has no default backend).
pub fn choose(config: &Config, provider: Option<usize>, input: &RouteInput<'_>) -> Result<Choice, ProxyError> {
    let Some(index) = route::select_route(&config.routes, input) else {
        if !route::is_default_allowed(input) {
            return Err(ProxyError::OperationNotAllowed {
                method: input.method.to_string(),
                path: input.path.to_string(),
                operation: input.operation.as_str(),
            });
        }
        let default = provider.and_then(|p| config.providers[p].backend).ok_or_else(|| {
            ProxyError::NoRoute(format!(
                "provider {}, model {}",
                input.provider.unwrap_or("unknown"),
                input.model.unwrap_or("none")
            ))
        })?;
        return Ok(Choice {
            route: None,
            default_backend: Some(default),
            first_byte_timeout: DEFAULT_ROUTE_TIMEOUT,
            total_timeout: None,
            idle_timeout: None,
            attempts: 1,
            retry_on: DEFAULT_RETRY_ON.to_vec(),
            retry_statuses: vec![],
        });
    };
    let r = &config.routes[index];
    Ok(Choice {
        route: Some(index),
        default_backend: None,
        first_byte_timeout: r.timeout,
        total_timeout: r.total_timeout,
        idle_timeout: r.idle_timeout,
        attempts: r.retry_attempts,
        retry_on: r.retry_on.clone(),
        retry_statuses: r.retry_statuses.clone(),
    })
}

pub(super) fn route(ctx: &mut RequestCtx, headers: &HeaderMap, streamed: bool) -> Result<Plan, ProxyError> {
    let snapshot = ctx.snapshot.clone();
    let config = &snapshot.config;
    let input = RouteInput {
        provider: ctx.provider.map(|p| config.providers[p].name.as_str()),
        model: ctx.model.as_deref(),
        headers,
        workload: ctx.conn.workload.facts(),
        operation: ctx.operation,
        method: &ctx.method,
        path: &ctx.path,
    };
    let choice = choose(config, ctx.provider, &input)?;
    ctx.route = choice.route;
    ctx.rule = if choice.route.is_some() {
        Rule::Route
    } else {
        Rule::ProviderDefault
    };
    ctx.timeout = Some(choice.first_byte_timeout);
    ctx.total_deadline = choice.total_timeout.map(|t| Instant::now() + t);
    ctx.idle_timeout = choice.idle_timeout;
    let backends = match (choice.route, choice.default_backend) {
        (Some(index), _) => route::plan(&config.routes[index])
            .into_iter()
            .map(|b| (b.backend, b.model.clone()))
            .collect(),
        (None, default) => default.map(|b| (b, None)).into_iter().collect(),
    };
    // A body streamed through unread cannot be sent twice.
    let attempts = if streamed { 1 } else { choice.attempts };
    held_to(ctx, attempts, &choice.retry_on, &choice.retry_statuses);
    Ok(Plan::new(backends, attempts, choice.retry_on, choice.retry_statuses))
}

/// The record's `policy`: the timeouts routing set and the retries the plan allows.
fn held_to(ctx: &mut RequestCtx, attempts: u32, on: &[RetryOn], statuses: &[u16]) {
    let ms = |d: Option<std::time::Duration>| d.map(|d| d.as_millis() as u64);
    ctx.policy.timeouts = Timeouts {
        first_byte_ms: ms(ctx.timeout),
        idle_ms: ms(ctx.idle_timeout),
        total_ms: ms(ctx.route.and_then(|r| ctx.snapshot.config.routes[r].total_timeout)),
    };
    ctx.policy.retry = Retry {
        attempts,
        on: on.iter().map(|o| o.as_str().into()).collect(),
        statuses: statuses.to_vec(),
    };
}
