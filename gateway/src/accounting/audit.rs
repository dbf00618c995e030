//! The governance record: one JSON line per request in the audit log, answering who asked,
//! what shaped the answer (route, backend, credential, timeout, attempts, translation), what it
//! used and what it cost. Its JSON Schema is `docs/audit.schema.json` (described in
//! `docs/audit.md`); tests validate every record they produce against it.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::llm::usage::Usage;

/// Version of the record layout, bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Always `request`.
    pub record: Cow<'static, str>,
    pub schema_version: u32,
    /// Start of the request, RFC 3339 UTC.
    pub time: String,
    /// W3C trace id (32 hex), from the client's `traceparent` or new.
    pub trace_id: String,
    /// Span id of Tollgate's span for this request (16 hex).
    pub span_id: String,
    /// `<connection id>-<request number on it>`.
    pub request_id: String,
    pub workload: AuditWorkload,
    pub destination: Destination,
    pub provider: Option<String>,
    /// API schema the client spoke.
    pub schema: Cow<'static, str>,
    pub operation: Cow<'static, str>,
    pub method: String,
    pub path: String,
    pub route: Option<String>,
    /// Why this route: `route` (matched a route), `provider_default` (the provider's
    /// backend), or `none`.
    pub rule: Cow<'static, str>,
    pub backend: Option<String>,
    pub credential: Option<CredentialRef>,
    /// Model the client asked for.
    pub model: Option<String>,
    /// Model the backend says it served (else the one sent to it).
    pub served_model: Option<String>,
    /// Time the route gives a backend to answer, in milliseconds.
    pub timeout_ms: Option<u64>,
    pub attempts: Vec<Attempt>,
    /// Schema translation applied (`none` until translation exists).
    pub translation: Cow<'static, str>,
    pub stream: bool,
    /// Whether Tollgate asked upstream for stream usage the client had not asked for (and
    /// removed it from what the client saw).
    pub usage_requested_by_gateway: bool,
    pub tokens: Option<Tokens>,
    /// `complete`, `partial` (stream cut short: counts seen so far), `missing`.
    pub usage_status: Cow<'static, str>,
    /// Exact cost as a decimal string of USD; null when the model has no price.
    pub cost_usd: Option<String>,
    /// The same in nano-dollars.
    pub cost_nano_usd: Option<u64>,
    pub latency_ms: f64,
    /// Time to the first content token (streams) or the first response byte.
    pub ttft_ms: Option<f64>,
    pub status: u16,
    pub error: Option<String>,
    /// `client`, `upstream` or `proxy`.
    pub error_side: Option<Cow<'static, str>>,
    /// The error's label (as in `tollgate_request_errors_total{reason}`), e.g. `misdirected`,
    /// `operation_not_allowed`, `client_gone`.
    #[serde(default)]
    pub error_reason: Option<Cow<'static, str>>,
    pub response_bytes: u64,
    /// Whether the response reached its end (false: client gone or upstream cut).
    pub complete: bool,
    /// What the limits decided, when any limit counts this request.
    #[serde(default)]
    pub limit: Option<LimitDecision>,
}

/// What admission decided.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LimitOutcome {
    #[default]
    Allowed,
    Denied,
    /// The shared store could not be asked (and `limitStore.failMode` is `closed`).
    StoreUnavailable,
}

/// What a limit counts.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum LimitKind {
    Requests,
    Tokens,
    Budget,
}

impl LimitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Requests => "requests",
            LimitKind::Tokens => "tokens",
            LimitKind::Budget => "budget",
        }
    }
}

/// What admission decided, for the audit record.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LimitDecision {
    pub outcome: LimitOutcome,
    /// The limit that denied, when one did.
    pub limit: Option<String>,
    pub kind: Option<LimitKind>,
    pub retry_after_s: Option<u64>,
    /// Limits that counted this request.
    pub counted: Vec<String>,
    /// The store answered from local counts (Redis unreachable, fail-open).
    pub degraded: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AuditWorkload {
    pub pid: u32,
    pub tgid: u32,
    pub uid: u32,
    pub gid: u32,
    pub comm: String,
    pub exe: Option<String>,
    pub cgroup_id: u64,
    pub cgroup: Option<String>,
    pub container_id: Option<String>,
    pub container_runtime: Option<String>,
    pub pod_uid: Option<String>,
    /// Pod name, namespace, container name and labels, from the node's container runtime
    /// (`identity.criSocket`); null outside a pod or when the runtime did not answer.
    pub pod: Option<String>,
    pub namespace: Option<String>,
    #[serde(default)]
    pub container: Option<String>,
    #[serde(default)]
    pub pod_labels: Option<std::sync::Arc<std::collections::BTreeMap<String, String>>>,
    /// Why a container's pod is not named: the runtime's error.
    #[serde(default)]
    pub pod_error: Option<String>,
    pub systemd_unit: Option<String>,
    pub host_netns: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Destination {
    pub ip: String,
    pub port: u16,
    pub sni: Option<String>,
    pub tls: bool,
    /// The `Host` the client sent (no port, lowercase).
    #[serde(default)]
    pub host: Option<String>,
    /// The providers that claim this destination (the kernel's match).
    #[serde(default)]
    pub claimed_by: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CredentialRef {
    pub name: String,
    pub fingerprint: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Attempt {
    pub backend: String,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
    pub cached_input: u64,
    pub cache_write: u64,
    pub reasoning: u64,
    pub total: u64,
}

impl From<&Usage> for Tokens {
    fn from(u: &Usage) -> Tokens {
        Tokens {
            input: u.input,
            output: u.output,
            cached_input: u.cached_input,
            cache_write: u.cache_write,
            reasoning: u.reasoning,
            total: u.total(),
        }
    }
}

impl AuditWorkload {
    pub fn from_workload(w: &crate::identity::Workload) -> AuditWorkload {
        AuditWorkload {
            pid: w.pid,
            tgid: w.tgid,
            uid: w.uid,
            gid: w.gid,
            comm: w.comm.clone(),
            exe: w.exe.clone(),
            cgroup_id: w.cgroup_id,
            cgroup: w.cgroup.clone(),
            container_id: w.container.container_id.clone(),
            container_runtime: w.container.container_runtime.clone(),
            pod_uid: w.container.pod_uid.clone(),
            pod: w.pod.as_ref().map(|p| p.name.clone()),
            namespace: w.pod.as_ref().map(|p| p.namespace.clone()),
            container: w.pod.as_ref().and_then(|p| p.container.clone()),
            pod_labels: w.pod.as_ref().map(|p| p.labels.clone()),
            pod_error: w.pod_error.as_deref().map(str::to_string),
            systemd_unit: w.container.systemd_unit.clone(),
            host_netns: w.host_netns,
        }
    }
}
