//! Phase 3, route: the first route whose conditions all hold — operation included: inference
//! operations are allowed unless a route narrows them, every other operation (`/v1/files`,
//! `/v1/organization/…`) only where a route lists it — then its backends in the order the
//! attempts will try them. No route: the provider's default backend for inference, 403 for
//! anything else.

use std::time::Instant;

use http::HeaderMap;

use super::{
    ctx::{RequestCtx, Rule},
    plan::Plan,
    ProxyError,
};
use crate::{
    accounting::audit::{Retry, Timeouts},
    config::l7::{RetryOn, DEFAULT_RETRY_ON, DEFAULT_ROUTE_TIMEOUT},
    route::{self, RouteInput},
};

pub(super) fn route(ctx: &mut RequestCtx, headers: &HeaderMap, streamed: bool) -> Result<Plan, ProxyError> {
    let snapshot = ctx.snapshot.clone();
    let config = &snapshot.config;
    let input = RouteInput {
        provider: ctx.provider.map(|p| config.providers[p].name.as_str()),
        model: ctx.model.as_deref(),
        headers,
        workload: &ctx.conn.workload,
        operation: ctx.operation,
        method: &ctx.method,
        path: &ctx.path,
    };
    let Some(index) = route::select_route(&config.routes, &input) else {
        if !route::is_default_allowed(&input) {
            return Err(ProxyError::OperationNotAllowed {
                method: ctx.method.clone(),
                path: ctx.path.clone(),
                operation: ctx.operation.as_str(),
            });
        }
        let default = ctx.provider.and_then(|p| config.providers[p].backend).ok_or_else(|| {
            ProxyError::NoRoute(format!(
                "provider {}, model {}",
                input.provider.unwrap_or("unknown"),
                input.model.unwrap_or("none")
            ))
        })?;
        ctx.rule = Rule::ProviderDefault;
        ctx.timeout = Some(DEFAULT_ROUTE_TIMEOUT);
        held_to(ctx, 1, &DEFAULT_RETRY_ON, &[]);
        return Ok(Plan::new(vec![(default, None)], 1, DEFAULT_RETRY_ON.to_vec(), vec![]));
    };
    let r = &config.routes[index];
    ctx.route = Some(index);
    ctx.rule = Rule::Route;
    ctx.timeout = Some(r.timeout);
    ctx.total_deadline = r.total_timeout.map(|t| Instant::now() + t);
    ctx.idle_timeout = r.idle_timeout;
    let backends = route::plan(r)
        .into_iter()
        .map(|b| (b.backend, b.model.clone()))
        .collect();
    // A body streamed through unread cannot be sent twice.
    let attempts = if streamed { 1 } else { r.retry_attempts };
    held_to(ctx, attempts, &r.retry_on, &r.retry_statuses);
    Ok(Plan::new(
        backends,
        attempts,
        r.retry_on.clone(),
        r.retry_statuses.clone(),
    ))
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
