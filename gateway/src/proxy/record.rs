//! Phase 7, record: runs exactly once per request, however it ended (see `ctx`). Writes the
//! audit record from what the phases decided, counts the metrics and the span, and reconciles
//! the limit reservation with what the request really used, and hands the record to the
//! operator views (`accounting::recent`).

use super::ctx::{Ending, RequestCtx};
use crate::{
    accounting::{
        self,
        audit::{self, AuditRecord, AuditWorkload, Destination, Tokens},
    },
    limits::{LimitKind, Reservation},
    llm::usage::Usage,
};

/// Status recorded for a request whose client went away before any response was sent
/// (nginx's "client closed request").
pub(crate) const CLIENT_CLOSED: u16 = 499;

impl RequestCtx {
    /// Ends the request: writes its record, once, however many paths try.
    pub(crate) fn end(&mut self, ending: Ending) {
        if !self.take_ending() {
            return;
        }
        if let Some((message, side, reason)) = ending.error.clone() {
            self.fail(message, side, reason);
        }
        write(self, ending);
        // A probe still held was never answered: free the slot for the next request.
        self.probe.take();
    }
}

fn write(ctx: &mut RequestCtx, ending: Ending) {
    let Ending { complete, metered, .. } = ending;
    if let Some(m) = metered.model.clone() {
        ctx.served_model = Some(m);
    }
    if let Some(reservation) = ctx.reservation.take() {
        reconcile(ctx, reservation, metered.usage.as_ref());
    }
    let snapshot = ctx.snapshot.clone();
    let config = &snapshot.config;
    let priced_model = ctx.served_model.as_deref().or(ctx.model.as_deref());
    let priced = priced_model.and_then(|m| config.prices.lookup(m));
    let price = priced.map(|p| p.price);
    let cost = price
        .zip(metered.usage.as_ref())
        .and_then(|(p, u)| accounting::priced_cost(p, u));
    ctx.policy.price = priced.map(|p| config.prices.reference(p));
    let latency = ctx.started.elapsed();
    let ttft = if ctx.stream {
        ctx.seen.first_token.or(ctx.seen.first_byte)
    } else {
        ctx.seen.first_byte
    };
    let a = record(ctx, complete, &metered, cost, latency, ttft);
    tracing::debug!(target: "tollgate::request", trace_id = %a.trace_id, status = a.status, "request");
    let l7 = &ctx.l7;
    if !config.audit_enabled {
        let backend = a.backend.as_deref().unwrap_or("none");
        l7.metrics
            .request_done(a.provider.as_deref().unwrap_or("unknown"), backend, a.status);
        return;
    }
    l7.metrics
        .request_audit(&a, price.is_some(), latency, ttft, &config.prices);
    if let Some(spans) = &l7.spans {
        spans.record(&a, ctx.trace.parent_span_id, ctx.started_at);
    }
    l7.audit.write_with(|line| a.write_line(line));
    // Last: the record moves into the ring (no copy), read and rendered by the admin thread.
    // Captured bodies stay on disk only: the admin port is not the place for them.
    let mut a = a;
    a.content = None;
    l7.recent.push(a);
}

/// The audit record, from the phases' decisions.
fn record(
    ctx: &mut RequestCtx,
    complete: bool,
    metered: &crate::llm::usage::Metered,
    cost: Option<u64>,
    latency: std::time::Duration,
    ttft: Option<std::time::Duration>,
) -> AuditRecord {
    let mut policy = std::mem::take(&mut ctx.policy);
    let config = &ctx.snapshot.config;
    let conn = &ctx.conn;
    let (error, error_side, error_reason) = match &ctx.error {
        Some((m, side, reason)) => (Some(m.clone()), Some(side.as_str().into()), Some((*reason).into())),
        None => (None, None, None),
    };
    policy.plan = ctx.plan.iter().map(|&b| config.backends[b].name.clone()).collect();
    AuditRecord {
        record: "request".into(),
        schema_version: audit::SCHEMA_VERSION,
        time: humantime::format_rfc3339_micros(ctx.started_at).to_string(),
        trace_id: ctx.trace.trace_id_hex(),
        span_id: ctx.trace.span_id_hex(),
        request_id: ctx.request_id.clone(),
        gateway: ctx.snapshot.gateway.clone(),
        workload: AuditWorkload::from_workload(&conn.workload),
        destination: Destination {
            ip: conn.orig_ip.clone(),
            port: conn.orig.0.port(),
            sni: conn.sni.clone(),
            tls: conn.tls,
            host: ctx.host.clone(),
            claimed_by: conn.claimants.to_vec(),
        },
        provider: ctx.provider.map(|p| config.providers[p].name.clone()),
        schema: ctx.schema.as_str().into(),
        operation: ctx.operation.as_str().into(),
        method: ctx.method.clone(),
        path: ctx.path.clone(),
        route: ctx.route.map(|r| config.routes[r].name.clone()),
        rule: ctx.rule.as_str().into(),
        backend: ctx.backend.map(|b| config.backends[b].name.clone()),
        credential: ctx.credential.clone(),
        model: ctx.model.clone(),
        served_model: ctx.served_model.clone(),
        timeout_ms: ctx.timeout.map(|t| t.as_millis() as u64),
        attempts: ctx.attempts.clone(),
        translation: ctx.translation.into(),
        stream: ctx.stream,
        usage_requested_by_gateway: ctx.usage_requested_by_gateway,
        tokens: metered.usage.as_ref().map(Tokens::from),
        units: metered.usage.as_ref().and_then(audit::Units::of),
        usage_status: match (&metered.usage, metered.complete && complete) {
            (Some(_), true) => "complete",
            (Some(_), false) => "partial",
            (None, _) => "missing",
        }
        .into(),
        cost_usd: cost.map(accounting::usd),
        cost_nano_usd: cost,
        latency_ms: latency.as_secs_f64() * 1000.0,
        ttft_ms: ttft.map(|d| d.as_secs_f64() * 1000.0),
        status: if ctx.seen.status == 0 {
            CLIENT_CLOSED
        } else {
            ctx.seen.status
        },
        error,
        error_side,
        error_reason,
        response_bytes: ctx.seen.bytes,
        complete,
        limit: ctx.limit.clone(),
        policy,
        content: ctx.content.take().map(crate::accounting::content::Captured::finish),
    }
}

/// A count as a signed delta's operand (counts beyond `i64::MAX` are capped there).
fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Replaces the admission estimate with what the request really used. A request no backend
/// can have served (never sent, connect failures, error statuses: not billed) gives its tokens
/// and money back; one that may have been served without a usage report — answered, timed
/// out, or abandoned by its client while a backend worked on it — keeps its reservation, so a
/// client that hangs up early cannot spend past a budget.
fn reconcile(ctx: &mut RequestCtx, r: Reservation, usage: Option<&Usage>) {
    let answered = ctx.billable;
    let (tokens, cost) = match usage {
        Some(u) => {
            let model = ctx.served_model.as_deref().or(ctx.model.as_deref());
            let price = model.and_then(|m| ctx.snapshot.config.prices.get(m));
            (
                Some(u.total()),
                Some(
                    price
                        .and_then(|p| accounting::priced_cost(p, u))
                        .unwrap_or(r.reserved_cost),
                ),
            )
        }
        None if !answered => (Some(0), Some(0)),
        None => (None, None),
    };
    let deltas: Vec<(String, i64, u64)> = r
        .charges
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let delta = match c.kind {
                LimitKind::Tokens => signed(tokens?).saturating_sub(signed(r.reserved_tokens)),
                LimitKind::Budget => signed(cost?).saturating_sub(signed(r.reserved_cost)),
                LimitKind::Requests => return None,
            };
            // The record's state of the limit: what the request really used.
            if let Some(state) = ctx.policy.limits.get_mut(i) {
                state.used = state.used.saturating_add_signed(delta);
                state.remaining = state.max.saturating_sub(state.used);
            }
            (delta != 0).then(|| (c.key.clone(), delta, c.window_left))
        })
        .collect();
    if deltas.is_empty() {
        return;
    }
    // Local counters are adjusted right here; only Redis needs a task.
    let Some(deltas) = ctx.l7.limits.adjust_local(deltas) else {
        return;
    };
    let store = ctx.l7.limits.clone();
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(async move { store.adjust(deltas).await });
    }
}
