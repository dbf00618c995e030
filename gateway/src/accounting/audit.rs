//! The governance record: one JSON line per request in the audit log, answering who asked,
//! what shaped the answer (route, backend, credential, timeout, attempts, translation), what it
//! used and what it cost. Its JSON Schema is `docs/audit.schema.json` (described in
//! `docs/audit.md`); tests validate every record they produce against it.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::llm::usage::Usage;

/// Version of the record layout, bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 2;

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
    /// `<instance>-<connection id>-<request number on it>`, also returned to the client in
    /// the `x-tollgate-request-id` response header.
    pub request_id: String,
    /// The instance and the configuration in force (absent from version 1 records).
    #[serde(default)]
    pub gateway: std::sync::Arc<GatewayInfo>,
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
    /// What audio and image answers are metered by besides tokens; null when none.
    #[serde(default)]
    pub units: Option<Units>,
    /// An MCP server's request: the JSON-RPC message and how it was answered; null for model
    /// APIs.
    #[serde(default)]
    pub mcp: Option<McpRecord>,
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
    /// What the request was held to.
    #[serde(default)]
    pub policy: Policy,
    /// The bodies, redacted, when the route captures content and the request was sampled.
    #[serde(default)]
    pub content: Option<Content>,
}

/// Captured bodies (`routes[].capture`), redacted before they were written.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Content {
    /// The request body as text (null when it streamed through unread).
    pub request: Option<String>,
    pub request_truncated: bool,
    /// The response body as the backend sent it (null when none came).
    pub response: Option<String>,
    pub response_truncated: bool,
    /// Values replaced by redaction rules in both.
    pub redactions: u32,
}

/// The Tollgate instance and the configuration a record was written under.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct GatewayInfo {
    /// Tollgate's version.
    pub version: Cow<'static, str>,
    /// The build: source revision (and `-dirty` for a tree with changes) and profile.
    pub build: Cow<'static, str>,
    /// The node's name (`TOLLGATE_NODE_NAME`, else the host name).
    pub node: String,
    /// Counts configurations applied since the start: 1 at start, +1 per applied reload.
    pub config_generation: u64,
    /// sha256 of the normalised configuration (the `config` record of that generation).
    pub config_sha256: String,
}

/// The policy a request was held to: its route's timeouts and retries, the backends it could
/// use, the limits that counted it and the price it was billed at.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Policy {
    /// Per attempt: time to the response head; then between body chunks; whole request.
    pub timeouts: Timeouts,
    /// Attempts the request may make and what is retried.
    pub retry: Retry,
    /// Backends in the order attempts would use them, by name (ejected and cooling-down ones
    /// left out, unless all are).
    pub plan: Vec<String>,
    /// Every limit that counted the request, with what is left of it after the request.
    pub limits: Vec<LimitState>,
    /// The price the request was billed at; null when its model has none.
    pub price: Option<PriceRef>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Timeouts {
    pub first_byte_ms: Option<u64>,
    pub idle_ms: Option<u64>,
    pub total_ms: Option<u64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Retry {
    /// Most attempts (1: no retry, e.g. a body streamed through unread).
    pub attempts: u32,
    /// Conditions retried: `connect`, `tls`, `timeout`, `429`, `5xx`.
    pub on: Vec<Cow<'static, str>>,
    /// Further statuses retried.
    pub statuses: Vec<u16>,
}

/// One limit that counted a request, after the request.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LimitState {
    pub name: String,
    pub kind: LimitKind,
    /// `minute`, `hour`, `day`, `month` (UTC).
    pub window: Cow<'static, str>,
    /// Seconds left in the window when the request was admitted.
    pub window_left_s: u64,
    /// The limit: requests, tokens or nano-dollars per window.
    pub max: u64,
    /// Used in the window with this request (as the store counted at admission, corrected by
    /// what the request really used).
    pub used: u64,
    /// `max - used` (0 when over).
    pub remaining: u64,
}

/// The price a request was billed at.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PriceRef {
    /// The price table's entry (model name) that matched.
    pub entry: String,
    /// Nano-dollars per token.
    pub nano_usd_per_token: TokenPrices,
    /// Nano-dollars per character, minute of audio and image, for models priced so; null
    /// for models priced by tokens only.
    #[serde(default)]
    pub nano_usd_per_unit: Option<UnitPrices>,
    /// `table` (the shipped table) or `config` (the config's `pricing`).
    pub source: Cow<'static, str>,
    /// Date of the shipped table's prices; null for a config price.
    pub as_of: Option<Cow<'static, str>>,
}

/// Nano-dollars per token of each kind (defaults applied: cached input and cache writes at the
/// input price, reasoning at the output price, unless the entry says otherwise).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenPrices {
    pub input: u64,
    pub output: u64,
    pub cached_input: u64,
    pub cache_write: u64,
    pub reasoning: u64,
    /// Audio input tokens (default: `input`).
    #[serde(default)]
    pub audio_input: u64,
    /// Image input tokens (default: `input`).
    #[serde(default)]
    pub image_input: u64,
}

/// Nano-dollars per unit of what audio and image models are priced by besides tokens.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct UnitPrices {
    pub character: u64,
    pub minute: u64,
    /// Per image, by `quality/size`, `size` or `*`.
    pub image: std::collections::BTreeMap<String, u64>,
}

/// The `config` record: one per applied configuration, before any request made under it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConfigRecord {
    /// Always `config`.
    pub record: Cow<'static, str>,
    pub schema_version: u32,
    pub time: String,
    pub gateway: std::sync::Arc<GatewayInfo>,
    /// The normalised configuration (credential values are never in it: only their
    /// sources), whose sha256 is `gateway.config_sha256`.
    pub config: serde_json::Value,
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
    /// The pod's labels (those `identity.recordLabels` chooses).
    #[serde(default)]
    pub pod_labels: Option<std::sync::Arc<std::collections::BTreeMap<String, String>>>,
    /// The pod's controller as its labels tell (`Deployment`, `StatefulSet`, `DaemonSet`,
    /// `Job`).
    #[serde(default)]
    pub owner: Option<crate::identity::cri::Owner>,
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
    /// The audio part of `input`.
    #[serde(default)]
    pub audio_input: u64,
    /// The image part of `input`.
    #[serde(default)]
    pub image_input: u64,
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
            audio_input: u.audio_input,
            image_input: u.image_input,
        }
    }
}

/// An MCP request as recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct McpRecord {
    /// `Mcp-Session-Id` (the client's, else the one the server handed out).
    pub session: Option<String>,
    /// `MCP-Protocol-Version`.
    pub protocol_version: Option<String>,
    /// The message as read: `kind` (`request`, `notification`, `response`, `stream`,
    /// `end_session`, `invalid`), `method`, `id`, `tool`, `uri`, `prompt`, `arguments_bytes`,
    /// `arguments_sha256`.
    #[serde(flatten)]
    pub message: crate::mcp::Message,
    /// `ok`, `error`, `tool_error`, `denied`, `rate_limited`, `accepted` (answered on the
    /// HTTP+SSE transport's stream), `none`.
    pub outcome: Cow<'static, str>,
    pub error_code: Option<i64>,
    pub error_message: Option<String>,
    pub tools_filtered: u64,
    /// JSON-RPC messages the server sent on an event stream.
    pub messages: u64,
}

/// What an answer is metered by besides tokens.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Units {
    /// Audio billed by its length (`whisper-1`), in seconds.
    pub audio_seconds: Option<f64>,
    /// Characters of speech input.
    pub characters: u64,
    /// Images generated.
    pub images: u64,
    /// `quality/size` of those images, as per-image prices are keyed.
    pub image_tier: Option<String>,
}

impl Units {
    /// The units of `u`, when it has any.
    pub fn of(u: &Usage) -> Option<Units> {
        (u.audio_ms > 0 || u.characters > 0 || u.images > 0).then(|| Units {
            audio_seconds: (u.audio_ms > 0).then(|| u.audio_ms as f64 / 1000.0),
            characters: u.characters,
            images: u.images,
            image_tier: u.image_tier.clone(),
        })
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
            pod_labels: w.pod.as_ref().map(|p| p.record_labels.clone()),
            owner: w.pod.as_ref().and_then(|p| p.owner.clone()),
            pod_error: w.pod_error.as_deref().map(str::to_string),
            systemd_unit: w.container.systemd_unit.clone(),
            host_netns: w.host_netns,
        }
    }
}
