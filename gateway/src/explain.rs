//! `tollgate explain`: what the configuration would do with a request — provider, operation,
//! route, backends in fallback order, credentials, timeouts, limits and prices — without
//! sending anything.
//!
//! Every decision is the pipeline's own, asked through the pure functions its phases use:
//! [`proxy::operation`] (identify), [`proxy::choose`] and [`route::tiers`] (routing),
//! [`proxy::subject`], [`proxy::estimate`] and [`limits::charges`] (admit),
//! [`llm::translate::find`] (attempt), [`auth::Store`] (credentials, loaded as `run` loads
//! them) and [`accounting::PriceTable::lookup`]. What only a running node knows is left out
//! and said so: which backends are ejected (`GET /backends`), the counters' current values.

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    time::Duration,
};

use serde::Serialize;

use crate::{
    accounting::{self, Price, PriceSource},
    auth,
    config::Config,
    limits::{self, LimitKind},
    llm::{self, Operation},
    matching::WorkloadFacts,
    proxy::{self, ProxyError},
    route,
};

/// The request to explain, as flags give it.
#[derive(Clone, Debug, Default)]
pub struct Query {
    /// Provider by name.
    pub provider: Option<String>,
    /// Provider by one of its hostnames (SNI or `Host`), when `provider` is absent.
    pub host: Option<String>,
    pub model: Option<String>,
    pub path: String,
    /// Default: the operation's usual method (POST for most, GET for `models`).
    pub method: Option<String>,
    /// Request headers routes may match on.
    pub headers: Vec<(String, String)>,
    /// The workload: process name, uid, cgroup path, pod namespace, name and labels.
    pub comm: String,
    pub uid: u32,
    pub cgroup: Option<String>,
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// Input tokens the body holds (the pipeline estimates one per 4 bytes). Default 0.
    pub input_tokens: u64,
    /// The request's `max_tokens`; absent: the limits' `outputEstimate`.
    pub max_tokens: Option<u64>,
}

/// Where the host agent package puts the configuration.
const DEFAULT_CONFIG: &str = "/etc/tollgate/tollgate.yaml";

/// `tollgate explain`'s flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration file (YAML).
    #[arg(long, short, default_value = DEFAULT_CONFIG)]
    pub config: std::path::PathBuf,
    /// Provider by name (default: the only one).
    #[arg(long)]
    pub provider: Option<String>,
    /// Provider by hostname, as the client's SNI or Host names it.
    #[arg(long, conflicts_with = "provider")]
    pub host: Option<String>,
    /// The request's `model`.
    #[arg(long)]
    pub model: Option<String>,
    /// The request's path.
    #[arg(long, default_value = "/v1/chat/completions")]
    pub path: String,
    /// The request's method. Default: the operation's usual one.
    #[arg(long)]
    pub method: Option<String>,
    /// A request header, `name=value` (repeatable).
    #[arg(long = "header", value_parser = key_value)]
    pub headers: Vec<(String, String)>,
    /// Workload: process name (comm).
    #[arg(long, default_value = "")]
    pub comm: String,
    /// Workload: uid.
    #[arg(long, default_value_t = 0)]
    pub uid: u32,
    /// Workload: cgroup path relative to the cgroup2 root (e.g. `/kubepods.slice/…`).
    #[arg(long)]
    pub cgroup: Option<String>,
    /// Workload: pod namespace.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Workload: pod name.
    #[arg(long)]
    pub pod: Option<String>,
    /// Workload: pod label, `name=value` (repeatable).
    #[arg(long = "label", value_parser = key_value)]
    pub labels: Vec<(String, String)>,
    /// Input tokens of the body (limits reserve them; the proxy counts one per 4 bytes).
    #[arg(long, default_value_t = 0)]
    pub input_tokens: u64,
    /// The request's `max_tokens`. Default: the limits' `outputEstimate`.
    #[arg(long)]
    pub max_tokens: Option<u64>,
    /// JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?}: expected name=value"))
}

impl Args {
    /// The request the flags describe.
    pub fn query(&self) -> Query {
        Query {
            provider: self.provider.clone(),
            host: self.host.clone(),
            model: self.model.clone(),
            path: self.path.clone(),
            method: self.method.clone(),
            headers: self.headers.clone(),
            comm: self.comm.clone(),
            uid: self.uid,
            cgroup: self.cgroup.clone(),
            namespace: self.namespace.clone(),
            pod: self.pod.clone(),
            labels: self.labels.iter().cloned().collect(),
            input_tokens: self.input_tokens,
            max_tokens: self.max_tokens,
        }
    }
}

/// Why a query cannot be explained (not: why the request would be refused; that is part of
/// the explanation).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no provider named {0:?} (configured: {1})")]
    UnknownProvider(String, String),
    #[error("no provider has hostname {0:?} (configured: {1})")]
    UnknownHost(String, String),
    #[error("which provider? pass --provider or --host (configured: {0})")]
    NoProvider(String),
    #[error("--header {0:?}: {1}")]
    Header(String, String),
}

/// What the configuration does with the request.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    pub provider: String,
    pub method: String,
    pub path: String,
    /// `none` when the request is refused before its operation is known.
    pub operation: &'static str,
    pub model: Option<String>,
    /// `route` (a route matched), `provider_default` (the provider's `backend`) or `none`.
    pub rule: &'static str,
    pub route: Option<String>,
    /// Set when the request would be refused (before any backend is tried).
    pub refused: Option<Refusal>,
    /// Backends in attempt order: tier by tier; within a tier the order is drawn by weight
    /// for each request.
    pub backends: Vec<BackendStep>,
    pub attempts: u32,
    pub retry_on: Vec<crate::config::l7::RetryOn>,
    pub retry_statuses: Vec<u16>,
    pub timeouts: Timeouts,
    /// The limits that count the request, with what it would reserve.
    pub limits: Vec<Counted>,
    /// Limits whose conditions hold but that count nothing of this request (a budget for a
    /// model without a price).
    pub limits_not_charged: Vec<String>,
    /// What the request reserves.
    pub estimate: EstimateView,
    /// The requested model's price.
    pub price: Option<PriceView>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Refusal {
    pub status: u16,
    pub reason: &'static str,
    pub message: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendStep {
    pub backend: String,
    pub url: String,
    pub schema: &'static str,
    /// Lower goes first.
    pub priority: u32,
    pub weight: u32,
    /// Chance of being first within its tier, in percent.
    pub share_percent: f64,
    /// The model sent to this backend (the route's rewrite, else the request's).
    pub model: Option<String>,
    /// The translation direction, `None` when the backend cannot serve this client's API.
    pub translation: Option<&'static str>,
    pub credential: Option<CredentialView>,
    /// The price of the model sent here, when it differs from the requested one.
    pub price: Option<PriceView>,
}

/// A credential by name and fingerprint; never its value.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialView {
    pub name: String,
    pub kind: crate::config::l7::CredentialKind,
    /// `sha256:` + 8 hex digits of the value, as audit records show it.
    pub fingerprint: Option<String>,
    /// Why the value could not be read here (explain runs as you, `run` as root).
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Timeouts {
    #[serde(with = "humantime_serde")]
    pub first_byte: Duration,
    #[serde(with = "humantime_serde")]
    pub idle: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub total: Option<Duration>,
}

/// One counter a limit moves for the request.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counted {
    pub limit: String,
    /// `requests`, `tokens` or `budget`.
    pub kind: &'static str,
    /// The bucket (the limit's `key` parts joined by `|`).
    pub bucket: String,
    /// What the request reserves: 1 request, tokens, or nano-dollars.
    pub reserves: u64,
    /// The limit per window: requests or tokens per minute, nano-dollars per period.
    pub max: u64,
    /// `minute`, `hour`, `day` or `month` (UTC).
    pub window: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EstimateView {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// `None`: the model has no price (budgets do not count it).
    pub cost_usd: Option<String>,
}

/// A price in USD per 1M tokens, and where it comes from.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PriceView {
    pub model: String,
    /// The table entry it was found under (the model, or its normalised name).
    pub entry: Option<String>,
    /// `shipped` or `config`; `None`: no price (cost null in records, no budget counted).
    pub source: Option<PriceSource>,
    pub input: Option<String>,
    pub output: Option<String>,
    pub cached_input: Option<String>,
    pub cache_write: Option<String>,
    pub reasoning: Option<String>,
}

// === impl ===

/// Works out what `config` does with `q`; `env` reads credentials given as env variables.
///
/// The phases run in the pipeline's order: identify the operation, route, then, for the
/// backends routing chose, attempt (translation, credential, price) and admit (limits). A
/// refusal by identify or routing ends the explanation there, as it ends the request.
pub fn explain(config: &Config, q: &Query, env: &dyn Fn(&str) -> Option<String>) -> Result<Explanation, Error> {
    let provider = find_provider(config, q)?;
    let p = &config.providers[provider];
    let workload = workload_facts(q);
    let headers = request_headers(q)?;
    let mut out = Explanation::before_identify(config, p, q);
    // identify
    let operation = match proxy::operation(config, provider, &q.path) {
        Ok(op) => op,
        Err(e) => return Ok(refuse(out, &e)),
    };
    out.operation = operation.as_str();
    let method = q
        .method
        .clone()
        .unwrap_or_else(|| default_method(operation).to_string())
        .to_ascii_uppercase();
    out.method = method.clone();
    // route
    let input = route::RouteInput {
        provider: Some(&p.name),
        model: q.model.as_deref(),
        headers: &headers,
        workload,
        operation,
        method: &method,
        path: &q.path,
    };
    let choice = match proxy::choose(config, Some(provider), &input) {
        Ok(c) => c,
        Err(e) => return Ok(refuse(out, &e)),
    };
    out.set_route(config, &choice);
    // attempt
    let credentials = load_credentials(config, env);
    out.backends = attempt_order(config, &choice)
        .into_iter()
        .map(|slot| backend_step(config, q, p.schema, operation, &credentials, slot))
        .collect();
    // admit
    admit(config, q, workload, provider, &choice, &mut out);
    Ok(out)
}

/// The workload as routes and limits match it. Labels are set only when the query describes a
/// pod (a namespace, name or label), as the pipeline sets them only for a known pod.
fn workload_facts(q: &Query) -> WorkloadFacts<'_> {
    let labels = (!q.labels.is_empty() || q.namespace.is_some() || q.pod.is_some()).then_some(&q.labels);
    WorkloadFacts {
        comm: &q.comm,
        uid: q.uid,
        cgroup: q.cgroup.as_deref(),
        namespace: q.namespace.as_deref(),
        pod: q.pod.as_deref(),
        labels,
    }
}

/// The query's `--header`s as an HTTP header map, or the first that is not a valid header.
fn request_headers(q: &Query) -> Result<http::HeaderMap, Error> {
    let mut headers = http::HeaderMap::new();
    for (name, value) in &q.headers {
        let bad = |e: &dyn std::fmt::Display| Error::Header(name.clone(), e.to_string());
        headers.insert(
            http::HeaderName::from_bytes(name.as_bytes()).map_err(|e| bad(&e))?,
            http::HeaderValue::from_str(value).map_err(|e| bad(&e))?,
        );
    }
    Ok(headers)
}

impl Explanation {
    /// What is known before the operation is identified: the request as given and the
    /// requested model's price; everything else empty or at its default.
    fn before_identify(config: &Config, p: &crate::config::Provider, q: &Query) -> Explanation {
        Explanation {
            provider: p.name.clone(),
            method: q.method.clone().unwrap_or_default(),
            path: q.path.clone(),
            operation: "none",
            model: q.model.clone(),
            rule: "none",
            route: None,
            refused: None,
            backends: vec![],
            attempts: 0,
            retry_on: vec![],
            retry_statuses: vec![],
            timeouts: Timeouts {
                first_byte: crate::config::l7::DEFAULT_ROUTE_TIMEOUT,
                idle: None,
                total: None,
            },
            limits: vec![],
            limits_not_charged: vec![],
            estimate: EstimateView {
                input_tokens: 0,
                output_tokens: 0,
                cost_usd: None,
            },
            price: q.model.as_deref().map(|m| price_view(config, m)),
        }
    }

    /// Records routing's choice: the rule and route, retries and timeouts.
    fn set_route(&mut self, config: &Config, choice: &proxy::Choice) {
        self.rule = if choice.route.is_some() {
            "route"
        } else {
            "provider_default"
        };
        self.route = choice.route.map(|r| config.routes[r].name.clone());
        self.attempts = choice.attempts;
        self.retry_on = choice.retry_on.clone();
        self.retry_statuses = choice.retry_statuses.clone();
        self.timeouts = Timeouts {
            first_byte: choice.first_byte_timeout,
            idle: choice.idle_timeout,
            total: choice.total_timeout,
        };
    }
}

/// The credentials as `run` loads them, and why those that could not be loaded failed.
struct Credentials {
    store: auth::Store,
    /// By credential name.
    errors: HashMap<String, String>,
}

/// Loads the credentials as `run` does, with `env` for those given as env variables.
fn load_credentials(config: &Config, env: &dyn Fn(&str) -> Option<String>) -> Credentials {
    let store = auth::Store::default();
    // What could not be loaded is part of the answer, not a log line.
    tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
        store.refresh(&config.credentials, env)
    });
    let errors = store.errors();
    Credentials { store, errors }
}

/// One place in the attempt order.
struct Slot {
    /// The backend's tier; lower goes first.
    priority: u32,
    weight: u32,
    /// Chance of being first within its tier, in percent (one decimal).
    share_percent: f64,
    /// Index into `config.backends`.
    backend: usize,
    /// The route's model rewrite for this backend.
    rewrite: Option<String>,
}

/// The backends routing chose, in attempt order: the route's tiers with each backend's share
/// of its tier's weight, or the provider's default backend alone.
fn attempt_order(config: &Config, choice: &proxy::Choice) -> Vec<Slot> {
    match choice.route {
        Some(r) => route::tiers(&config.routes[r])
            .into_iter()
            .flat_map(|(priority, refs)| {
                let total: u32 = refs.iter().map(|b| b.weight).sum();
                refs.into_iter().map(move |b| {
                    let share = if total == 0 {
                        0.0
                    } else {
                        (f64::from(b.weight) * 1000.0 / f64::from(total)).round() / 10.0
                    };
                    Slot {
                        priority,
                        weight: b.weight,
                        share_percent: share,
                        backend: b.backend,
                        rewrite: b.model.clone(),
                    }
                })
            })
            .collect(),
        None => choice
            .default_backend
            .map(|b| Slot {
                priority: 0,
                weight: 1,
                share_percent: 100.0,
                backend: b,
                rewrite: None,
            })
            .into_iter()
            .collect(),
    }
}

/// What an attempt on `slot`'s backend would send: model, translation from the client's
/// `schema`, credential and, for a rewritten model, its price.
fn backend_step(
    config: &Config,
    q: &Query,
    schema: llm::ApiSchema,
    operation: Operation,
    credentials: &Credentials,
    slot: Slot,
) -> BackendStep {
    let backend = &config.backends[slot.backend];
    let model = slot.rewrite.clone().or_else(|| q.model.clone());
    let credential = backend
        .credential
        .as_ref()
        .map(|name| credential_view(config, credentials, name));
    BackendStep {
        backend: backend.name.clone(),
        url: backend.url.to_string(),
        schema: backend.schema.as_str(),
        priority: slot.priority,
        weight: slot.weight,
        share_percent: slot.share_percent,
        translation: llm::translate::find(schema, operation, backend.schema).map(|d| d.name()),
        price: slot.rewrite.as_deref().map(|m| price_view(config, m)),
        model,
        credential,
    }
}

/// The credential `name` by kind and fingerprint, with why it could not be loaded, if so.
fn credential_view(config: &Config, credentials: &Credentials, name: &str) -> CredentialView {
    let loaded = credentials.store.get(name);
    CredentialView {
        name: name.to_string(),
        kind: config
            .credentials
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.kind)
            .unwrap_or(crate::config::l7::CredentialKind::Bearer),
        fingerprint: loaded.as_ref().map(|l| l.fingerprint.clone()),
        error: credentials.errors.get(name).cloned(),
    }
}

/// Admission: what the request reserves and the limits that count it. The first backend a
/// request is likely to try keys `backend` buckets, so this runs after `out.backends` is set.
fn admit(
    config: &Config,
    q: &Query,
    workload: WorkloadFacts<'_>,
    provider: usize,
    choice: &proxy::Choice,
    out: &mut Explanation,
) {
    let first = likely_first(&out.backends).and_then(|name| config.backends.iter().position(|b| b.name == name));
    let subject = proxy::subject(
        config,
        workload,
        choice.route,
        Some(provider),
        q.model.as_deref(),
        first,
    );
    let estimate = proxy::estimate(config, q.model.as_deref(), q.input_tokens, q.max_tokens);
    out.estimate = EstimateView {
        input_tokens: estimate.input,
        output_tokens: estimate.output,
        cost_usd: estimate.cost.map(accounting::usd),
    };
    let charges = limits::charges(&config.limits, &subject, estimate.tokens, estimate.cost);
    out.limits = charges.iter().map(|c| counted(config, c)).collect();
    out.limits_not_charged = config
        .limits
        .iter()
        .filter(|l| l.applies(&subject) && !charges.iter().any(|c| c.limit == l.name))
        .map(|l| l.name.clone())
        .collect();
}

/// One charge as shown: its bucket, amount and the limit's window.
fn counted(config: &Config, c: &limits::Charge) -> Counted {
    let limit = config.limits.iter().find(|l| l.name == c.limit);
    Counted {
        limit: c.limit.clone(),
        kind: c.kind.as_str(),
        bucket: bucket(&c.key, &c.limit),
        reserves: c.amount,
        max: c.max,
        window: match (c.kind, limit.and_then(|l| l.budget)) {
            (LimitKind::Budget, Some((_, period))) => period_name(period),
            _ => "minute",
        },
    }
}

fn find_provider(config: &Config, q: &Query) -> Result<usize, Error> {
    let names = || {
        config
            .providers
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (&q.provider, &q.host) {
        (Some(name), _) => config
            .providers
            .iter()
            .position(|p| &p.name == name)
            .ok_or_else(|| Error::UnknownProvider(name.clone(), names())),
        (None, Some(host)) => config
            .provider_by_hostname(&proxy::normalize_host(host))
            .ok_or_else(|| Error::UnknownHost(host.clone(), names())),
        (None, None) if config.providers.len() == 1 => Ok(0),
        (None, None) => Err(Error::NoProvider(names())),
    }
}

fn default_method(op: Operation) -> http::Method {
    if op.is_inference() {
        op.inference_method()
    } else {
        http::Method::POST
    }
}

fn refuse(mut out: Explanation, e: &ProxyError) -> Explanation {
    out.refused = Some(Refusal {
        status: e.status().as_u16(),
        reason: e.reason(),
        message: e.to_string(),
    });
    out
}

/// The highest-weight backend of the first tier: the likeliest first attempt.
fn likely_first(steps: &[BackendStep]) -> Option<&str> {
    let first_tier = steps.first()?.priority;
    steps
        .iter()
        .filter(|s| s.priority == first_tier)
        .max_by_key(|s| s.weight)
        .map(|s| s.backend.as_str())
}

/// The bucket of a counter key `tg:{<limit>:<bucket>}:<kind>:<window>`.
fn bucket(key: &str, limit: &str) -> String {
    let inner = key
        .strip_prefix("tg:{")
        .and_then(|k| k.strip_prefix(limit))
        .and_then(|k| k.strip_prefix(':'))
        .unwrap_or(key);
    let mut parts = inner.rsplitn(3, ':');
    let (_window, _kind) = (parts.next(), parts.next());
    let rest = parts.next().unwrap_or(inner);
    rest.strip_suffix('}').unwrap_or(rest).to_string()
}

fn period_name(p: limits::Period) -> &'static str {
    match p {
        limits::Period::Hour => "hour",
        limits::Period::Day => "day",
        limits::Period::Month => "month",
    }
}

fn price_view(config: &Config, model: &str) -> PriceView {
    let found = config.prices.lookup(model);
    let per_million = |nano: u64| accounting::usd(nano.saturating_mul(1_000_000));
    let price: Option<&Price> = found.map(|f| f.price);
    PriceView {
        model: model.to_string(),
        entry: found.map(|f| f.entry.to_string()),
        source: found.map(|f| f.source),
        input: price.map(|p| per_million(p.input)),
        output: price.map(|p| per_million(p.output)),
        cached_input: price.and_then(|p| p.cached_input).map(per_million),
        cache_write: price.and_then(|p| p.cache_write).map(per_million),
        reasoning: price.and_then(|p| p.reasoning).map(per_million),
    }
}

// === human output ===

impl Explanation {
    /// The explanation as aligned text: labelled sections for the request, route, backends,
    /// attempts, timeouts, limits, reserves and price. A refused request shows only the
    /// request, the refusal and the price.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let model = self.model.as_deref().unwrap_or("(none)");
        let _ = writeln!(
            s,
            "request     {} {} ({}), model {model}, provider {}",
            self.method, self.path, self.operation, self.provider
        );
        if let Some(r) = &self.refused {
            let _ = writeln!(s, "refused     {} {}: {}", r.status, r.reason, r.message);
            s.push_str(&self.price_text());
            return s;
        }
        self.write_route(&mut s);
        self.write_backends(&mut s);
        self.write_retries_and_timeouts(&mut s);
        self.write_limits(&mut s);
        self.write_reserves(&mut s);
        s.push_str(&self.price_text());
        s
    }

    fn write_route(&self, s: &mut String) {
        match (&self.route, self.rule) {
            (Some(route), _) => {
                let _ = writeln!(s, "route       {route}");
            }
            (None, rule) => {
                let _ = writeln!(s, "route       none matched: {rule} (the provider's `backend`)");
            }
        }
    }

    /// The backends in attempt order, the tier named on the first line of each tier.
    fn write_backends(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "backends    in attempt order (at run time ejected backends go last; see GET /backends):"
        );
        let mut tier = None;
        for b in &self.backends {
            let label = if tier == Some(b.priority) {
                String::new()
            } else {
                tier = Some(b.priority);
                format!("tier {}", b.priority)
            };
            write_backend(s, &label, b);
        }
    }

    fn write_retries_and_timeouts(&self, s: &mut String) {
        let on: Vec<String> = self
            .retry_on
            .iter()
            .filter_map(|r| serde_json::to_value(r).ok()?.as_str().map(str::to_string))
            .chain(self.retry_statuses.iter().map(u16::to_string))
            .collect();
        let _ = writeln!(
            s,
            "attempts    at most {}, next backend on {}",
            self.attempts,
            on.join(", ")
        );
        let opt = |d: Option<Duration>| d.map_or("none".to_string(), |d| humantime::format_duration(d).to_string());
        let _ = writeln!(
            s,
            "timeouts    first byte {}, idle {}, total {}",
            humantime::format_duration(self.timeouts.first_byte),
            opt(self.timeouts.idle),
            opt(self.timeouts.total)
        );
    }

    /// The limits that count the request (budgets in dollars), then those that match but
    /// count nothing.
    fn write_limits(&self, s: &mut String) {
        if self.limits.is_empty() {
            let _ = writeln!(s, "limits      none count it");
        }
        for (i, c) in self.limits.iter().enumerate() {
            let head = if i == 0 { "limits" } else { "" };
            let (reserves, max) = match c.kind {
                "budget" => (
                    format!("${}", accounting::usd(c.reserves)),
                    format!("${}", accounting::usd(c.max)),
                ),
                _ => (c.reserves.to_string(), c.max.to_string()),
            };
            let _ = writeln!(
                s,
                "{head:<11} {}: {} {reserves} of {max} per {}, bucket {}",
                c.limit, c.kind, c.window, c.bucket
            );
        }
        for name in &self.limits_not_charged {
            let _ = writeln!(
                s,
                "            {name}: matches, but counts nothing (a budget, and the model has no price)"
            );
        }
    }

    fn write_reserves(&self, s: &mut String) {
        let cost = self
            .estimate
            .cost_usd
            .as_ref()
            .map_or("no price".to_string(), |c| format!("${c}"));
        let _ = writeln!(
            s,
            "reserves    {} input + {} output tokens, {cost}",
            self.estimate.input_tokens, self.estimate.output_tokens
        );
    }

    fn price_text(&self) -> String {
        match &self.price {
            Some(p) => format!("price       {}\n", price_line(p)),
            None => String::new(),
        }
    }
}

/// One backend: its line under `label` (its tier, or blank), then its credential and, for a
/// rewritten model, that model's price.
fn write_backend(s: &mut String, label: &str, b: &BackendStep) {
    let translation = b
        .translation
        .unwrap_or("none: this backend cannot serve the client's API (400)");
    let _ = writeln!(
        s,
        "  {label:<9} {}  weight {} ({}% first in tier)  {}  schema {}  model {}  translation {translation}",
        b.backend,
        b.weight,
        b.share_percent,
        b.url,
        b.schema,
        b.model.as_deref().unwrap_or("(as requested)")
    );
    match &b.credential {
        Some(c) => {
            let _ = writeln!(s, "              credential {}", credential_text(c));
        }
        None => {
            let _ = writeln!(s, "              credential none (the client's own is removed)");
        }
    }
    if let Some(p) = &b.price {
        let _ = writeln!(s, "              price       {}", price_line(p));
    }
}

/// `name (kind, fingerprint)`, the fingerprint replaced or qualified by why the value could not
/// be read.
fn credential_text(c: &CredentialView) -> String {
    let fp = match (&c.fingerprint, &c.error) {
        (Some(fp), None) => fp.clone(),
        (Some(fp), Some(e)) => format!("{fp} (last good; now: {e})"),
        (None, Some(e)) => format!("unreadable here: {e}"),
        (None, None) => "not loaded".into(),
    };
    let kind = serde_json::to_value(c.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    format!("{} ({kind}, {fp})", c.name)
}

fn price_line(p: &PriceView) -> String {
    let (Some(input), Some(output), Some(source), Some(entry)) = (&p.input, &p.output, p.source, &p.entry) else {
        return format!(
            "{}: no price (not in the shipped table or `pricing`): cost null in records, budgets do not count it",
            p.model
        );
    };
    let mut extra = String::new();
    for (name, v) in [
        ("cached input", &p.cached_input),
        ("cache write", &p.cache_write),
        ("reasoning", &p.reasoning),
    ] {
        if let Some(v) = v {
            let _ = write!(extra, ", {name} ${v}");
        }
    }
    let from = match source {
        PriceSource::Shipped => "shipped table",
        PriceSource::Config => "config `pricing`",
    };
    format!(
        "{}: input ${input}, output ${output}{extra} per 1M tokens (from the {from}, entry {entry})",
        p.model
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
providers:
  - name: openai
    hostnames: [api.openai.com]
    backend: openai-east
  - name: anthropic
    hostnames: [api.anthropic.com]
    schema: anthropic
backends:
  - { name: openai-east, url: "https://east.example", credential: key }
  - { name: openai-west, url: "https://west.example", credential: key }
  - { name: claude, url: "https://api.anthropic.com", schema: anthropic, credential: env-key }
credentials:
  - { name: key, kind: bearer, env: EXPLAIN_TEST_KEY }
  - { name: env-key, kind: xApiKey, env: EXPLAIN_TEST_MISSING }
routes:
  - name: ha
    match: { models: ["gpt-4o*"] }
    backends:
      - { backend: openai-east, weight: 3 }
      - { backend: openai-west, weight: 1 }
      - { backend: claude, priority: 1, model: claude-sonnet-4-5 }
    retry: { attempts: 3, statuses: [409] }
    timeouts: { firstByte: 30s, idle: 20s, total: 5m }
  - name: ml-team
    match: { models: ["llama-*"], workload: { namespaces: ["ml"] } }
    backends: [{ backend: openai-west }]
limits:
  - name: team-a-budget
    match: { namespaces: ["team-a"] }
    key: [namespace]
    budget: { usd: "50", period: day }
  - name: everyone-rpm
    requestsPerMinute: 600
    tokensPerMinute: 100000
pricing:
  llama-3-70b: { input: "0.50", output: "0.70" }
"#;

    fn env(var: &str) -> Option<String> {
        (var == "EXPLAIN_TEST_KEY").then(|| "sk-the-secret-value".to_string())
    }

    fn query(model: &str) -> Query {
        Query {
            provider: Some("openai".into()),
            model: Some(model.into()),
            path: "/v1/chat/completions".into(),
            comm: "python3".into(),
            uid: 1000,
            ..Default::default()
        }
    }

    fn explain_q(q: &Query) -> Explanation {
        let config = Config::parse(CONFIG).unwrap();
        explain(&config, q, &env).unwrap()
    }

    #[test]
    fn a_fallback_chain_is_shown_tier_by_tier_with_credentials_by_fingerprint() {
        let e = explain_q(&Query {
            max_tokens: Some(100),
            ..query("gpt-4o")
        });
        assert!(e.refused.is_none(), "{e:?}");
        assert_eq!((e.rule, e.route.as_deref()), ("route", Some("ha")));
        let order: Vec<(&str, u32, f64)> = e
            .backends
            .iter()
            .map(|b| (b.backend.as_str(), b.priority, b.share_percent))
            .collect();
        assert_eq!(
            order,
            [("openai-east", 0, 75.0), ("openai-west", 0, 25.0), ("claude", 1, 100.0)]
        );
        let claude = &e.backends[2];
        assert_eq!(
            claude.model.as_deref(),
            Some("claude-sonnet-4-5"),
            "the route's rewrite"
        );
        assert_eq!(
            claude.translation,
            Some(
                crate::llm::translate::find(
                    crate::llm::ApiSchema::Openai,
                    Operation::ChatCompletions,
                    crate::llm::ApiSchema::Anthropic
                )
                .unwrap()
                .name()
            )
        );
        assert_eq!(claude.price.as_ref().unwrap().source, Some(PriceSource::Shipped));
        let east = e.backends[0].credential.as_ref().unwrap();
        assert_eq!(east.name, "key");
        assert!(east.fingerprint.as_ref().unwrap().starts_with("sha256:"));
        let missing = claude.credential.as_ref().unwrap();
        assert!(missing.fingerprint.is_none() && missing.error.is_some(), "{missing:?}");
        assert_eq!(e.attempts, 3);
        assert_eq!(e.retry_statuses, [409]);
        assert_eq!(e.timeouts.idle, Some(Duration::from_secs(20)));
        assert_eq!(e.timeouts.total, Some(Duration::from_secs(300)));
        // Never the value, in either form.
        let json = serde_json::to_string(&e).unwrap();
        let text = e.to_text();
        for out in [&json, &text] {
            assert!(!out.contains("sk-the-secret-value"), "{out}");
            assert!(out.contains(east.fingerprint.as_deref().unwrap()), "{out}");
        }
        assert!(text.contains("tier 1") && text.contains("claude"), "{text}");
    }

    #[test]
    fn a_model_no_route_matches_goes_to_the_providers_default_or_is_refused() {
        let e = explain_q(&query("o3"));
        assert_eq!((e.rule, e.route.as_deref()), ("provider_default", None));
        assert_eq!(e.backends.len(), 1);
        assert_eq!(e.backends[0].backend, "openai-east");
        assert_eq!(e.attempts, 1);
        // anthropic has no default backend: refused as the proxy would.
        let e = explain_q(&Query {
            provider: None,
            host: Some("API.Anthropic.com:443".into()),
            path: "/v1/messages".into(),
            ..query("claude-opus-4")
        });
        assert_eq!(e.provider, "anthropic");
        let refused = e.refused.as_ref().expect("refused");
        assert_eq!(refused.reason, "no_route");
        assert!(e.to_text().contains("refused"), "{}", e.to_text());
        // A route's workload condition: the namespace decides.
        assert_eq!(explain_q(&query("llama-3-70b")).rule, "provider_default");
        let ml = explain_q(&Query {
            namespace: Some("ml".into()),
            pod: Some("nb-1".into()),
            ..query("llama-3-70b")
        });
        assert_eq!(ml.route.as_deref(), Some("ml-team"));
    }

    #[test]
    fn a_limit_for_one_namespace_counts_only_its_pods() {
        let in_team = explain_q(&Query {
            namespace: Some("team-a".into()),
            pod: Some("job-1".into()),
            max_tokens: Some(1000),
            ..query("gpt-4o")
        });
        let counted: Vec<(&str, &str, &str)> = in_team
            .limits
            .iter()
            .map(|c| (c.limit.as_str(), c.kind, c.bucket.as_str()))
            .collect();
        assert_eq!(
            counted,
            [
                ("team-a-budget", "budget", "team-a"),
                ("everyone-rpm", "requests", "python3:1000"),
                ("everyone-rpm", "tokens", "python3:1000"),
            ]
        );
        let budget = &in_team.limits[0];
        // gpt-4o: $10 per 1M output tokens → 1000 tokens = $0.01.
        assert_eq!(
            (budget.reserves, budget.max, budget.window),
            (10_000_000, 50_000_000_000, "day")
        );
        assert_eq!(in_team.estimate.cost_usd.as_deref(), Some("0.01"));
        let host = explain_q(&query("gpt-4o"));
        assert!(
            host.limits.iter().all(|c| c.limit == "everyone-rpm"),
            "{:?}",
            host.limits
        );
        let other_ns = explain_q(&Query {
            namespace: Some("team-b".into()),
            ..query("gpt-4o")
        });
        assert!(other_ns.limits.iter().all(|c| c.limit == "everyone-rpm"));
    }

    #[test]
    fn an_unknown_models_price_is_none_and_budgets_do_not_count_it() {
        let e = explain_q(&Query {
            namespace: Some("team-a".into()),
            ..query("gpt-4o-made-up-fork")
        });
        // Routed by the glob, but no price: the budget matches and counts nothing.
        assert_eq!(e.route.as_deref(), Some("ha"));
        let price = e.price.as_ref().unwrap();
        assert_eq!((price.source, price.input.as_deref()), (None, None));
        assert_eq!(e.estimate.cost_usd, None);
        assert_eq!(e.limits_not_charged, ["team-a-budget"]);
        assert!(e.to_text().contains("no price"), "{}", e.to_text());
        // A configured price says so.
        let llama = explain_q(&query("llama-3-70b"));
        let p = llama.price.as_ref().unwrap();
        assert_eq!(
            (p.source, p.input.as_deref(), p.output.as_deref()),
            (Some(PriceSource::Config), Some("0.5"), Some("0.7"))
        );
        let mini = explain_q(&query("gpt-4o-mini-2024-07-18"));
        let p = mini.price.as_ref().unwrap();
        assert_eq!(
            (p.entry.as_deref(), p.source),
            (Some("gpt-4o-mini"), Some(PriceSource::Shipped))
        );
    }

    #[test]
    fn operations_no_route_allows_and_unknown_providers_are_said_so() {
        let e = explain_q(&Query {
            path: "/v1/files".into(),
            ..query("gpt-4o")
        });
        assert_eq!(e.refused.as_ref().unwrap().status, 403);
        assert_eq!(e.method, "POST");
        let config = Config::parse(CONFIG).unwrap();
        let err = explain(
            &config,
            &Query {
                provider: Some("nope".into()),
                ..query("x")
            },
            &env,
        )
        .unwrap_err();
        assert!(err.to_string().contains("openai, anthropic"), "{err}");
        let err = explain(
            &config,
            &Query {
                provider: None,
                ..query("x")
            },
            &env,
        )
        .unwrap_err();
        assert!(matches!(err, Error::NoProvider(_)), "{err}");
    }

    #[test]
    fn buckets_are_read_back_from_counter_keys() {
        assert_eq!(bucket("tg:{tpm:python3:1000}:t:m123", "tpm"), "python3:1000");
        assert_eq!(bucket("tg:{all:py}{thon:1000|m{x}}:r:m1", "all"), "py}{thon:1000|m{x}");
        assert_eq!(bucket("tg:{ns:team-a}:b:d20553", "ns"), "team-a");
    }
}
