//! The per-request context (pingora's `CTX`): what each phase decided, read by the next ones
//! and, at the end, by `record`. It owns its own ending: however a request ends — its response
//! body finished, failed or dropped, or the whole request future dropped because the client
//! went away — exactly one audit record is written, the limit reservation is reconciled or
//! refunded, a half-open probe slot is released and the metrics are counted.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use http::Request;

use super::{ConnCtx, Side, Snapshot, L7};
use crate::{
    accounting::audit::{Attempt, CredentialRef, Policy},
    limits,
    llm::{translate::Answer, usage::Metered, ApiSchema, Operation},
    route::health::ProbeGuard,
    telemetry::trace::TraceContext,
};

/// Why routing chose what it chose.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub(crate) enum Rule {
    /// Nothing was chosen (the request failed before routing).
    #[default]
    None,
    /// A route matched.
    Route,
    /// No route matched: the provider's default backend.
    ProviderDefault,
    /// Tollgate answered itself (`listModels: routes`).
    Gateway,
}

impl Rule {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Rule::None => "none",
            Rule::Route => "route",
            Rule::ProviderDefault => "provider_default",
            Rule::Gateway => "gateway",
        }
    }
}

/// What the response phase saw of the answer.
#[derive(Default)]
pub(crate) struct Seen {
    pub(crate) status: u16,
    pub(crate) bytes: u64,
    pub(crate) first_byte: Option<Duration>,
    pub(crate) first_token: Option<Duration>,
}

/// How a request ended.
pub(crate) struct Ending {
    /// The response ran to its end.
    pub(crate) complete: bool,
    pub(crate) metered: Metered,
    pub(crate) error: Option<(String, Side, &'static str)>,
}

pub(crate) struct RequestCtx {
    pub(crate) l7: Arc<L7>,
    pub(crate) conn: Arc<ConnCtx>,
    /// The configuration, read once for the whole request.
    pub(crate) snapshot: Arc<Snapshot>,
    pub(crate) started: Instant,
    pub(crate) started_at: SystemTime,
    pub(crate) trace: TraceContext,
    pub(crate) request_id: String,
    pub(crate) method: String,
    pub(crate) path: String,
    // identify
    pub(crate) host: Option<String>,
    pub(crate) provider: Option<usize>,
    pub(crate) schema: ApiSchema,
    pub(crate) operation: Operation,
    // parse
    pub(crate) model: Option<String>,
    pub(crate) stream: bool,
    /// What the request says that prices its answer beyond tokens.
    pub(crate) units: crate::llm::media::RequestUnits,
    // route
    pub(crate) route: Option<usize>,
    pub(crate) rule: Rule,
    pub(crate) timeout: Option<Duration>,
    /// Deadline of the whole request (`timeouts.total`).
    pub(crate) total_deadline: Option<Instant>,
    /// Longest gap between two response chunks (`timeouts.idle`).
    pub(crate) idle_timeout: Option<Duration>,
    /// The route's timeouts and retries, the plan's backends and the limits' state, for the
    /// record (its price is added there).
    pub(crate) policy: Policy,
    /// The backends the plan holds, in order (the record names them).
    pub(crate) plan: Vec<usize>,
    /// The bodies, when the route captures content and this request is in the sample.
    pub(crate) content: Option<crate::accounting::content::Captured>,
    // admit
    pub(crate) limit: Option<crate::accounting::audit::LimitDecision>,
    pub(crate) reservation: Option<limits::Reservation>,
    // attempt
    pub(crate) attempts: Vec<Attempt>,
    pub(crate) backend: Option<usize>,
    pub(crate) credential: Option<CredentialRef>,
    pub(crate) served_model: Option<String>,
    pub(crate) translation: &'static str,
    pub(crate) usage_requested_by_gateway: bool,
    /// How the answer of the attempt that answered comes back.
    pub(crate) answer: Option<Answer>,
    /// Some attempt may have been served (and billed) by its backend: it was sent and neither
    /// failed to connect nor got an error status. A request that was not keeps no reservation.
    pub(crate) billable: bool,
    /// The half-open probe slot this request holds, released however it ends.
    pub(crate) probe: Option<ProbeGuard>,
    // respond
    pub(crate) seen: Seen,
    /// The first error the request met (message, side, reason).
    pub(crate) error: Option<(String, Side, &'static str)>,
    recorded: bool,
}

impl RequestCtx {
    pub(crate) fn new<B>(l7: Arc<L7>, conn: Arc<ConnCtx>, req: &Request<B>) -> RequestCtx {
        let n = conn.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        RequestCtx {
            snapshot: l7.snapshot.load_full(),
            started: Instant::now(),
            started_at: SystemTime::now(),
            trace: TraceContext::from_headers(req.headers()),
            request_id: format!("{}-{}-{}", l7.instance, conn.id, n),
            method: req.method().to_string(),
            path: req.uri().path().to_string(),
            host: None,
            provider: None,
            schema: ApiSchema::default(),
            operation: Operation::Other,
            model: None,
            stream: false,
            units: Default::default(),
            route: None,
            rule: Rule::None,
            timeout: None,
            total_deadline: None,
            idle_timeout: None,
            policy: Policy::default(),
            plan: Vec::new(),
            content: None,
            limit: None,
            reservation: None,
            attempts: Vec::new(),
            backend: None,
            credential: None,
            served_model: None,
            translation: "none",
            usage_requested_by_gateway: false,
            answer: None,
            billable: false,
            probe: None,
            seen: Seen::default(),
            error: None,
            recorded: false,
            l7,
            conn,
        }
    }

    /// Notes the first error of the request (later ones do not replace it).
    pub(crate) fn fail(&mut self, message: String, side: Side, reason: &'static str) {
        if self.error.is_none() {
            self.l7.metrics.request_error(reason);
            let totals = &self.l7.metrics.totals;
            crate::telemetry::Totals::inc(match side {
                Side::Client => &totals.client_errors,
                Side::Upstream => &totals.upstream_errors,
                Side::Proxy => &totals.proxy_errors,
            });
            self.error = Some((message, side, reason));
        }
    }

    /// How long one attempt may wait for response headers: the route's timeout, cut to what
    /// is left of the whole request's budget.
    pub(crate) fn attempt_wait(&self) -> Duration {
        let timeout = self.timeout.unwrap_or(crate::config::l7::DEFAULT_ROUTE_TIMEOUT);
        match self.total_deadline {
            Some(deadline) => timeout.min(deadline.saturating_duration_since(Instant::now())),
            None => timeout,
        }
    }

    /// Marks the request ended; `false` when it had ended already (`record` writes once).
    pub(crate) fn take_ending(&mut self) -> bool {
        !std::mem::replace(&mut self.recorded, true)
    }
}

impl Drop for RequestCtx {
    fn drop(&mut self) {
        if !self.recorded {
            // The request future was dropped before a response existed: hyper does this when
            // the client goes away (during the upload, or while waiting for the backend).
            self.end(Ending {
                complete: false,
                metered: Metered::default(),
                error: Some((
                    "client went away before the response started".into(),
                    Side::Client,
                    "client_gone",
                )),
            });
        }
    }
}
