//! The configuration file: `RawConfig` is what the user wrote (serde, strict: unknown keys are
//! rejected), `Config` is what the daemon runs with (typed, defaulted, validated). Every key is
//! documented in `docs/config.md`.
//!
//! Static settings (listeners, admin address, cgroup, fail mode, mark) need a restart; the
//! provider table is read once at start for now.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::hostname::HostPattern;

pub mod capacity;
pub mod catalog;
pub mod generation;
pub mod l7;
pub use l7::{ApiSchema, Backend, BackendRef, Credential, CredentialKind, Route, RouteMatch, Tls};

/// Host IPv4 redirect listener.
pub const DEFAULT_LISTENER4: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 15001);
/// Host IPv6 redirect listener.
pub const DEFAULT_LISTENER6: SocketAddr = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 15001);
/// Admin listener (`/healthz`, `/readyz`, `/metrics`).
pub const DEFAULT_ADMIN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 15000);
/// `SO_MARK` on the proxy's own upstream sockets ("tg" in ASCII).
pub const DEFAULT_MARK: u32 = 0x7467;
/// Where fail-closed pins its links on bpffs.
pub const DEFAULT_PIN_PATH: &str = "/sys/fs/bpf/tollgate";
/// Where a new instance finds the running one (docs/upgrades.md).
pub const DEFAULT_HANDOVER_PATH: &str = "/var/lib/tollgate/handover.sock";
/// Provider ports when none are listed.
pub const DEFAULT_PORTS: [u16; 1] = [443];
/// Lower bound on how often a hostname is re-resolved, whatever its TTL says (5 seconds).
pub const DEFAULT_DNS_MIN_TTL: Duration = Duration::from_secs(5);
/// Upper bound on how long a resolved address is trusted (5 minutes).
pub const DEFAULT_DNS_MAX_TTL: Duration = Duration::from_secs(300);
/// The DNS forwarder's port on each listener address.
pub const DEFAULT_DNS_FORWARDER_PORT: u16 = 15053;
/// Learned addresses stay at least this long (clients cache answers beyond their TTL).
pub const DEFAULT_DNS_LEARNED_MIN_TTL: Duration = Duration::from_secs(60);
pub const DEFAULT_DNS_MAX_LEARNED_NAMES: usize = 10_000;
pub const DEFAULT_DNS_QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// The audit log.
pub const DEFAULT_AUDIT_PATH: &str = "/var/log/tollgate/audit.jsonl";
/// Audit log size that triggers rotation (100 MiB).
pub const DEFAULT_AUDIT_MAX_BYTES: u64 = 100 * 1024 * 1024;
/// Rotated audit files kept.
pub const DEFAULT_AUDIT_MAX_FILES: u32 = 5;
/// Shortest `audit.checkpoint.interval` (1 second): each checkpoint is a signature and a line.
pub const MIN_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// Connect timeout towards the original destination (10 seconds).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A configuration problem, naming the field and the value.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error(transparent)]
    Invalid(#[from] crate::validation::Invalid),
}

pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Error {
    Error::Invalid(crate::validation::invalid(field, message))
}

// === raw (user-facing) ===

/// The file as written. Every field is optional; defaults are applied in [`Config::from_raw`].
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawConfig {
    /// Redirect listeners.
    pub listener: Option<RawListener>,
    /// Admin HTTP listener.
    pub admin: Option<RawAdmin>,
    /// What is captured and how.
    pub capture: Option<RawCapture>,
    /// Connection log: a file path, or `-` for stdout (the default).
    pub connection_log: Option<String>,
    /// Hostname resolution for provider endpoints.
    pub dns: Option<RawDns>,
    /// Known LLM endpoints.
    #[serde(default)]
    pub providers: Vec<RawProvider>,
    /// Built-in catalog entries, each as `providers: [{catalog: NAME}]` after `providers`.
    #[serde(default)]
    pub catalog: Vec<String>,
    /// TLS interception: the node CA.
    pub tls: Option<l7::RawTls>,
    /// Request handling limits.
    pub proxy: Option<l7::RawProxy>,
    /// Where requests can go.
    #[serde(default)]
    pub backends: Vec<l7::RawBackend>,
    /// Secrets injected into backend requests.
    #[serde(default)]
    pub credentials: Vec<l7::RawCredential>,
    /// Ordered routing rules; the first match wins.
    #[serde(default)]
    pub routes: Vec<l7::RawRoute>,
    /// The audit log (one record per request).
    pub audit: Option<RawAudit>,
    /// Trace export.
    pub traces: Option<RawTraces>,
    /// Requests, tokens and money limits.
    #[serde(default)]
    pub limits: Vec<crate::limits::RawLimit>,
    /// Where limit counters live (local by default, or Redis).
    pub limit_store: Option<crate::limits::RawStore>,
    /// Ejection of failing backends.
    pub outlier_detection: Option<RawOutlier>,
    /// Proxy worker threads. Default: half the CPUs, at least one (docs/config.md).
    pub worker_threads: Option<usize>,
    /// Where workload identity comes from beyond the kernel and /proc.
    pub identity: Option<RawIdentity>,
    /// Prices per model (USD per 1M tokens), on top of the shipped table.
    #[serde(default)]
    pub pricing: std::collections::HashMap<String, crate::accounting::RawPrice>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawIdentity {
    /// The container runtime's CRI socket (containerd: `/run/containerd/containerd.sock`,
    /// CRI-O: `/var/run/crio/crio.sock`): captured containers get their pod's namespace, name,
    /// uid, labels and container name. Default: none (the cgroup path's facts only).
    pub cri_socket: Option<PathBuf>,
    /// Pod labels the audit record carries (names or `prefix*` globs). Default: all of them
    /// (at most 64). Routes and limits match on every label whatever this says.
    #[serde(default)]
    pub record_labels: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawOutlier {
    /// Failures in a row that eject a backend. Default 5.
    pub consecutive_failures: Option<u32>,
    /// First ejection; doubled on every repeat. Default `30s`.
    #[serde(default, with = "humantime_serde")]
    pub base_ejection: Option<Duration>,
    /// Longest ejection. Default `5m`.
    #[serde(default, with = "humantime_serde")]
    pub max_ejection: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawTraces {
    /// OTLP/HTTP JSON endpoint, e.g. `http://127.0.0.1:4318/v1/traces`. Default: no export.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the spans. Default `tollgate`.
    pub service_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawAudit {
    /// Meter usage and cost and write audit records. Default `true`; `false` turns accounting
    /// off (requests are still proxied and counted).
    pub enabled: Option<bool>,
    /// File path, or `-` for stdout. Default `/var/log/tollgate/audit.jsonl`.
    pub path: Option<String>,
    /// Rotate beyond this size in bytes. Default 100 MiB; 0 disables rotation.
    pub max_bytes: Option<u64>,
    /// Rotated files kept. Default 5.
    pub max_files: Option<u32>,
    /// `never`, `second` (default) or `always`.
    pub fsync: Option<crate::telemetry::jsonl::Fsync>,
    /// The ed25519 key that signs the log's checkpoints (PKCS#8 PEM, mode 0600), created on
    /// first start. Default: `audit-signing.key` next to `tls.caKey`.
    pub signing_key: Option<PathBuf>,
    /// When checkpoints seal the hash chain (besides start, rotation and stop).
    pub checkpoint: Option<RawCheckpoint>,
    /// Send every audit line to an OpenTelemetry collector too (OTLP logs over HTTP).
    pub export: Option<RawAuditExport>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawAuditExport {
    /// The collector's OTLP/HTTP logs URL, e.g. `http://127.0.0.1:4318/v1/logs`.
    pub otlp_endpoint: String,
    /// Lines queued at most while the collector is slow or away. Default 10,000.
    pub queue: Option<usize>,
    /// One export request, connecting included. Default `5s`.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawCheckpoint {
    /// A checkpoint after this many lines. Default 1000.
    pub records: Option<u64>,
    /// A checkpoint once a line has waited this long for one. Default `60s`.
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawListener {
    /// Host listeners, at most one IPv4 and one IPv6 loopback address. Port 0 picks a free
    /// port. Default: `127.0.0.1:15001` and `[::1]:15001`.
    pub addresses: Option<Vec<SocketAddr>>,
    /// IPv4 node address that sockets of other network namespaces (pods) are redirected to.
    /// `${VAR}` is replaced by that environment variable (a DaemonSet passes the node's
    /// `status.hostIP`). Default: none (pods are not captured).
    pub node_address4: Option<String>,
    /// IPv6 node address for pods (`${VAR}` expanded). Default: none.
    pub node_address6: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawAdmin {
    /// Default `127.0.0.1:15000`. Port 0 picks a free port. `${VAR}` is replaced by that
    /// environment variable.
    pub address: Option<String>,
    /// Allow a non-loopback `address` (the admin port has no authentication: metrics,
    /// config and backend state become readable from the network). Default `false`.
    pub allow_remote: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawCapture {
    /// cgroup v2 directory the programs attach to. Default: the cgroup2 mount (whole node).
    pub cgroup_path: Option<PathBuf>,
    /// `open` (default): with the proxy down, connects go direct. `closed`: they fail.
    pub fail_mode: Option<FailMode>,
    /// `SO_MARK` of the proxy's own sockets. Default `0x7467`.
    pub mark: Option<u32>,
    /// bpffs directory of the pinned maps and program links (shared with the next instance
    /// across an upgrade). Default `/sys/fs/bpf/tollgate`.
    pub pin_path: Option<PathBuf>,
    /// Unix socket a new instance takes the listeners over from (docs/upgrades.md). Default
    /// `/var/lib/tollgate/handover.sock`; `""` turns handovers off.
    pub handover_path: Option<PathBuf>,
    /// Connect timeout towards the original destination. Default `10s`.
    #[serde(default, with = "humantime_serde")]
    pub connect_timeout: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawDns {
    /// Re-resolve no more often than this. Default `5s`.
    #[serde(default, with = "humantime_serde")]
    pub min_ttl: Option<Duration>,
    /// Re-resolve at least this often. Default `5m`.
    #[serde(default, with = "humantime_serde")]
    pub max_ttl: Option<Duration>,
    /// Resolve provider hostnames from this hosts-format file only, sending no DNS query
    /// (air-gapped nodes, tests). Default: the system resolver.
    pub hosts_file: Option<PathBuf>,
    /// Send captured workloads' DNS queries through the forwarder and learn governed names
    /// from their answers. Default `true`.
    pub learn: Option<bool>,
    /// The forwarder's port (UDP and TCP) on each listener address. Default `15053`; 0 picks
    /// a free one.
    pub forwarder_port: Option<u16>,
    /// Learned addresses are kept at least this long, whatever the answer's TTL (clients cache
    /// answers beyond it). Default `60s`.
    #[serde(default, with = "humantime_serde")]
    pub learned_min_ttl: Option<Duration>,
    /// Names learned at most. Default `10000`.
    pub max_learned_names: Option<usize>,
    /// How long the forwarder waits for a server's answer. Default `5s`.
    #[serde(default, with = "humantime_serde")]
    pub query_timeout: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawProvider {
    /// Unique name, used in records and metrics. Required, except with `catalog` (default: the
    /// catalog entry's name).
    pub name: Option<String>,
    /// A built-in catalog entry (`tollgate catalog`) filling every key left out, and creating the
    /// default backend and credential (docs/config.md#provider-catalog). Default: none.
    pub catalog: Option<String>,
    /// The path clients put the API under besides `/v1` (Groq's `/openai/v1`; `/` for none; a
    /// `*` segment matches any one segment). Default: none (`/v1` only).
    pub base_path: Option<String>,
    /// With `catalog` and no `backend`: the created backend's URL. Default: the entry's.
    pub url: Option<String>,
    /// With `catalog` and no `backend`: the created backend's credential. Default: the credential
    /// named after the provider, created from `/var/run/secrets/tollgate/<name>/api-key` when no
    /// credential has that name.
    pub credential: Option<String>,
    /// With `catalog` and no `backend`: the created backend's region (bedrock, vertex).
    pub region: Option<String>,
    /// With `catalog` and no `backend`: the created backend's Google Cloud project (vertex).
    pub project: Option<String>,
    /// With `catalog` and no `backend`: the Azure OpenAI resource name in the entry's URL.
    pub resource: Option<String>,
    /// `intercept` (default), `observe` or `deny`.
    pub mode: Option<Mode>,
    /// Hostnames, resolved at start and re-resolved by TTL; patterns with `*`
    /// (`*.openai.azure.com`, `bedrock-runtime.*.amazonaws.com`) are learned from DNS answers.
    #[serde(default)]
    pub hostnames: Vec<String>,
    /// IP addresses or CIDRs.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Destination ports. Default `[443]`.
    pub ports: Option<Vec<u16>>,
    /// The API clients of this provider speak. Default `openai`.
    pub schema: Option<ApiSchema>,
    /// Backend for requests no route matches; without it they are rejected (404).
    pub backend: Option<String>,
    /// `forward` (default): `GET /v1/models` goes to a backend like any request. `routes`:
    /// Tollgate answers it with the models the calling workload's routes allow.
    pub list_models: Option<ListModels>,
}

/// Who answers `GET /v1/models` (and `/v1/models/{id}`).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum ListModels {
    /// A backend, like any request.
    #[default]
    Forward,
    /// Tollgate: the models the calling workload's routes name (exact names, and the priced
    /// models their globs match), in the provider's shape.
    Routes,
}

/// What happens to a connect that matches a provider.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, Eq, PartialEq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum Mode {
    /// Redirect to the proxy (L7 once that exists; relayed as bytes for now).
    #[default]
    Intercept,
    /// Redirect to the proxy, which only relays and records.
    Observe,
    /// Refuse the connect (`EPERM`).
    Deny,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Intercept => "intercept",
            Mode::Observe => "observe",
            Mode::Deny => "deny",
        }
    }
}

/// What the kernel does with a captured connect while the proxy is down.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, Eq, PartialEq)]
#[serde(rename_all = "camelCase")]
pub enum FailMode {
    /// Let it through to its destination. Programs detach when the process exits.
    #[default]
    Open,
    /// Refuse it. Programs stay attached (pinned) after the process exits.
    Closed,
}

// === validated ===

/// The running configuration.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    pub listener: Listeners,
    pub admin_address: SocketAddr,
    pub capture: Capture,
    pub connection_log: LogTarget,
    pub dns: Dns,
    pub providers: Vec<Provider>,
    pub tls: Tls,
    pub max_request_body: usize,
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub backends: Vec<Backend>,
    pub credentials: Vec<Credential>,
    pub routes: crate::route::Routes,
    pub audit: crate::telemetry::jsonl::Target,
    pub audit_enabled: bool,
    /// `audit.export`: audit lines to an OTLP logs collector too.
    pub audit_export: Option<crate::telemetry::otlp_logs::Settings>,
    pub worker_threads: usize,
    /// The CRI socket pod identity comes from, if any.
    pub cri_socket: Option<PathBuf>,
    /// Pod labels audit records carry (`identity.recordLabels`); `None`: all.
    pub record_labels: Option<Vec<crate::matching::Glob>>,
    pub limits: Vec<crate::limits::Limit>,
    pub limit_store: crate::limits::StoreConfig,
    pub outlier: crate::route::health::Policy,
    /// OTLP/HTTP endpoint for spans, if any.
    #[serde(serialize_with = "l7_display_opt")]
    pub otlp_endpoint: Option<http::Uri>,
    pub service_name: String,
    pub pricing: std::collections::HashMap<String, crate::accounting::RawPrice>,
    /// The shipped prices with `pricing` on top.
    #[serde(skip)]
    pub prices: std::sync::Arc<crate::accounting::PriceTable>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Listeners {
    pub host4: Option<SocketAddr>,
    pub host6: Option<SocketAddr>,
    pub node4: Option<SocketAddr>,
    pub node6: Option<SocketAddr>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Capture {
    /// `None`: the cgroup2 mount, found at start.
    pub cgroup_path: Option<PathBuf>,
    pub fail_mode: FailMode,
    pub mark: u32,
    pub pin_path: PathBuf,
    /// `None`: no handovers.
    pub handover_path: Option<PathBuf>,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
}

#[derive(Clone, Debug, Eq, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum LogTarget {
    Stdout,
    File(PathBuf),
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Dns {
    #[serde(with = "humantime_serde")]
    pub min_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub max_ttl: Duration,
    pub hosts_file: Option<PathBuf>,
    pub learn: bool,
    pub forwarder_port: u16,
    #[serde(with = "humantime_serde")]
    pub learned_min_ttl: Duration,
    pub max_learned_names: usize,
    #[serde(with = "humantime_serde")]
    pub query_timeout: Duration,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Provider {
    pub name: String,
    pub mode: Mode,
    /// The hostname patterns as written (lowercase), in `patterns` order.
    pub hostnames: Vec<String>,
    /// `hostnames`, compiled.
    #[serde(skip)]
    pub patterns: Vec<HostPattern>,
    /// Exact addresses (from bare IPs and /32, /128 CIDRs).
    pub ips: Vec<IpAddr>,
    /// Prefixes shorter than a host route.
    pub cidrs: Vec<IpNet>,
    pub ports: Vec<u16>,
    pub schema: ApiSchema,
    /// Where clients put the API besides `/v1` (`basePath`).
    pub base_path: Option<String>,
    /// Who answers `GET /v1/models` (`listModels`).
    pub list_models: ListModels,
    /// The catalog entry the provider was filled from.
    pub catalog: Option<String>,
    /// Index into `Config::backends` of the default backend.
    pub backend: Option<usize>,
    /// Name of that backend, as written.
    #[serde(skip)]
    pub backend_name: Option<String>,
}

impl Config {
    /// The provider one of whose hostnames is `host` (no port): an exact name first, in file
    /// order, then a wildcard pattern, in file order.
    pub fn provider_by_hostname(&self, host: &str) -> Option<usize> {
        let with = |exact: bool| {
            self.providers
                .iter()
                .position(|p| p.patterns.iter().any(|h| h.is_exact() == exact && h.matches(host)))
        };
        with(true).or_else(|| with(false))
    }

    /// Whether `host` is a hostname of a provider in `intercept` mode: the only names a leaf
    /// certificate is minted for, and the only SNIs whose connections are terminated.
    pub fn intercepts(&self, host: &str) -> bool {
        self.provider_by_hostname(host)
            .is_some_and(|p| self.providers[p].mode == Mode::Intercept)
    }

    /// Reads, parses and validates a file.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text)
    }

    /// Parses and validates YAML text.
    pub fn parse(text: &str) -> Result<Config, Error> {
        let raw: RawConfig = serde_yaml_ng::from_str(text).map_err(|e| Error::Parse {
            path: e
                .location()
                .map(|l| format!("line {} column {}", l.line(), l.column()))
                .unwrap_or_else(|| "config".into()),
            message: e.to_string(),
        })?;
        Config::from_raw(raw)
    }

    pub fn from_raw(mut raw: RawConfig) -> Result<Config, Error> {
        let expanded = catalog::expand(&mut raw)?;
        let mut providers = providers_from_raw(raw.providers, &expanded.origins)?;
        capacity::check(&providers)?;
        let credentials = crate::auth::config::credentials(raw.credentials)?;
        let backends = l7::backends(raw.backends, &credentials).map_err(|e| expanded.blame(e))?;
        for (i, p) in providers.iter_mut().enumerate() {
            if let Some(name) = &p.backend_name {
                p.backend =
                    Some(backends.iter().position(|b| &b.name == name).ok_or_else(|| {
                        invalid(format!("providers[{i}].backend"), format!("no backend named {name:?}"))
                    })?);
            }
        }
        let provider_names: Vec<String> = providers.iter().map(|p| p.name.clone()).collect();
        let routes = crate::route::Routes::new(l7::routes(raw.routes, &backends, &provider_names)?);
        let proxy = ProxySettings::from_raw(raw.proxy.unwrap_or_default())?;
        let prices = crate::accounting::PriceTable::new(&raw.pricing)
            .map_err(|(model, e)| invalid(format!("pricing.{model}"), e.to_string()))?;
        let mut audit = raw.audit.unwrap_or_default();
        let traces = raw.traces.unwrap_or_default();
        let tls = l7::tls(raw.tls);
        Ok(Config {
            limits: crate::limits::limits_from_raw(raw.limits)?,
            limit_store: crate::limits::store_from_raw(raw.limit_store)?,
            outlier: outlier_from_raw(raw.outlier_detection.unwrap_or_default())?,
            audit_enabled: audit.enabled.unwrap_or(true),
            audit_export: audit_export_from_raw(
                audit.export.take(),
                traces.service_name.as_deref().unwrap_or("tollgate"),
            )?,
            audit: audit_from_raw(audit, &tls.ca_key)?,
            worker_threads: worker_threads(raw.worker_threads)?,
            record_labels: raw
                .identity
                .as_ref()
                .and_then(|i| i.record_labels.as_ref())
                .map(|l| l.iter().map(|g| crate::matching::Glob::new(g)).collect()),
            cri_socket: cri_socket(raw.identity.unwrap_or_default())?,
            otlp_endpoint: otlp_from_raw(traces.otlp_endpoint)?,
            service_name: traces.service_name.unwrap_or_else(|| "tollgate".into()),
            pricing: raw.pricing,
            prices: std::sync::Arc::new(prices),
            listener: Listeners::from_raw(raw.listener.unwrap_or_default())?,
            admin_address: admin_from_raw(raw.admin.unwrap_or_default())?,
            capture: Capture::from_raw(raw.capture.unwrap_or_default())?,
            connection_log: match raw.connection_log.as_deref() {
                None | Some("-") => LogTarget::Stdout,
                Some("") => return Err(invalid("connectionLog", "empty path (use \"-\" for stdout)")),
                Some(path) => LogTarget::File(path.into()),
            },
            dns: Dns::from_raw(raw.dns.unwrap_or_default())?,
            providers,
            tls,
            max_request_body: proxy.max_request_body,
            header_read_timeout: proxy.header_read_timeout,
            max_connections: proxy.max_connections,
            backends,
            credentials,
            routes,
        })
    }
}

fn cri_socket(raw: RawIdentity) -> Result<Option<PathBuf>, Error> {
    match raw.cri_socket {
        Some(path) if !path.is_absolute() => Err(invalid(
            "identity.criSocket",
            format!("{} is not an absolute path", path.display()),
        )),
        other => Ok(other),
    }
}

/// Parses an address after replacing each `${NAME}` with the environment variable `NAME`
/// (so one ConfigMap serves every node: `"${TOLLGATE_NODE_IP}:15001"`). An unset variable is
/// an error naming it; IPv6 values are bracketed when the text does not bracket them.
fn socket_addr_with_env(field: &str, text: &str) -> Result<SocketAddr, Error> {
    socket_addr_expanded(field, text, |name| std::env::var(name).ok())
}

fn socket_addr_expanded(field: &str, text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<SocketAddr, Error> {
    let mut expanded = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        expanded.push_str(&rest[..start]);
        let Some(len) = rest[start + 2..].find('}') else {
            return Err(invalid(field, format!("{text:?}: unclosed ${{")));
        };
        let name = &rest[start + 2..start + 2 + len];
        let value =
            lookup(name).ok_or_else(|| invalid(field, format!("{text:?}: environment variable {name} is not set")))?;
        if value.parse::<std::net::Ipv6Addr>().is_ok() && !expanded.ends_with('[') {
            expanded.push('[');
            expanded.push_str(&value);
            expanded.push(']');
        } else {
            expanded.push_str(&value);
        }
        rest = &rest[start + 2 + len + 1..];
    }
    expanded.push_str(rest);
    expanded
        .parse()
        .map_err(|e| invalid(field, format!("{expanded:?} is not an ip:port address: {e}")))
}

fn admin_from_raw(admin: RawAdmin) -> Result<SocketAddr, Error> {
    let address = match admin.address {
        Some(text) => socket_addr_with_env("admin.address", &text)?,
        None => DEFAULT_ADMIN,
    };
    if !address.ip().is_loopback() && admin.allow_remote != Some(true) {
        return Err(invalid(
            "admin.address",
            format!(
                "{address} is not a loopback address: the admin port has no authentication; set admin.allowRemote: true to expose it"
            ),
        ));
    }
    Ok(address)
}

impl Capture {
    fn from_raw(capture: RawCapture) -> Result<Capture, Error> {
        let mark = capture.mark.unwrap_or(DEFAULT_MARK);
        if mark == 0 {
            return Err(invalid(
                "capture.mark",
                "0 is not allowed: the proxy's own sockets must be told apart",
            ));
        }
        if let Some(path) = &capture.cgroup_path {
            if !path.is_absolute() {
                return Err(invalid(
                    "capture.cgroupPath",
                    format!("{:?} is not an absolute path", path.display()),
                ));
            }
            if let Some(false) = crate::sysfs::is_cgroup2(path) {
                return Err(invalid(
                    "capture.cgroupPath",
                    format!(
                        "{} is not on a cgroup2 file system (the connect programs attach to cgroup v2 only; on hybrid hosts cgroup2 is often at /sys/fs/cgroup/unified)",
                        path.display()
                    ),
                ));
            }
        }
        Ok(Capture {
            cgroup_path: capture.cgroup_path,
            fail_mode: capture.fail_mode.unwrap_or_default(),
            mark,
            pin_path: capture.pin_path.unwrap_or_else(|| DEFAULT_PIN_PATH.into()),
            handover_path: match capture.handover_path {
                None => Some(DEFAULT_HANDOVER_PATH.into()),
                Some(p) if p.as_os_str().is_empty() => None,
                Some(p) if p.is_relative() => {
                    return Err(invalid(
                        "capture.handoverPath",
                        format!("{} is not an absolute path", p.display()),
                    ))
                }
                Some(p) => Some(p),
            },
            connect_timeout: capture.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
        })
    }
}

impl Dns {
    fn from_raw(dns: RawDns) -> Result<Dns, Error> {
        let dns = Dns {
            min_ttl: dns.min_ttl.unwrap_or(DEFAULT_DNS_MIN_TTL),
            max_ttl: dns.max_ttl.unwrap_or(DEFAULT_DNS_MAX_TTL),
            hosts_file: dns.hosts_file,
            learn: dns.learn.unwrap_or(true),
            forwarder_port: dns.forwarder_port.unwrap_or(DEFAULT_DNS_FORWARDER_PORT),
            learned_min_ttl: dns.learned_min_ttl.unwrap_or(DEFAULT_DNS_LEARNED_MIN_TTL),
            max_learned_names: dns.max_learned_names.unwrap_or(DEFAULT_DNS_MAX_LEARNED_NAMES),
            query_timeout: dns.query_timeout.unwrap_or(DEFAULT_DNS_QUERY_TIMEOUT),
        };
        if dns.min_ttl.is_zero() || dns.min_ttl > dns.max_ttl {
            return Err(invalid("dns", "need 0 < minTtl <= maxTtl"));
        }
        if dns.learned_min_ttl.is_zero() || dns.learned_min_ttl > dns.max_ttl {
            return Err(invalid("dns.learnedMinTtl", "need 0 < learnedMinTtl <= maxTtl"));
        }
        if dns.max_learned_names == 0 {
            return Err(invalid("dns.maxLearnedNames", "must be at least 1"));
        }
        if dns.query_timeout.is_zero() {
            return Err(invalid("dns.queryTimeout", "must be more than 0"));
        }
        Ok(dns)
    }
}

/// Validates the providers; `origins[i]` is where provider `i` was written (`providers[i]`,
/// or `catalog[j]` for the shorthand), which errors name.
fn providers_from_raw(raw: Vec<RawProvider>, origins: &[String]) -> Result<Vec<Provider>, Error> {
    let mut providers: Vec<Provider> = Vec::with_capacity(raw.len());
    for (p, origin) in raw.into_iter().zip(origins) {
        let provider = Provider::from_raw(origin, p)?;
        if providers.iter().any(|q| q.name == provider.name) {
            return Err(invalid(
                format!("{origin}.name"),
                format!("duplicate provider name {:?}", provider.name),
            ));
        }
        providers.push(provider);
    }
    Ok(providers)
}

/// The `proxy` section, validated.
struct ProxySettings {
    max_request_body: usize,
    header_read_timeout: Duration,
    max_connections: usize,
}

impl ProxySettings {
    fn from_raw(proxy: l7::RawProxy) -> Result<ProxySettings, Error> {
        let settings = ProxySettings {
            max_request_body: proxy.max_request_body.unwrap_or(l7::DEFAULT_MAX_REQUEST_BODY),
            header_read_timeout: proxy.header_read_timeout.unwrap_or(l7::DEFAULT_HEADER_READ_TIMEOUT),
            max_connections: proxy.max_connections.unwrap_or(l7::DEFAULT_MAX_CONNECTIONS),
        };
        if settings.max_request_body == 0 {
            return Err(invalid("proxy.maxRequestBody", "0 is not allowed"));
        }
        if settings.header_read_timeout.is_zero() {
            return Err(invalid("proxy.headerReadTimeout", "0 is not allowed"));
        }
        if settings.max_connections == 0 {
            return Err(invalid("proxy.maxConnections", "0 is not allowed"));
        }
        Ok(settings)
    }
}

fn otlp_from_raw(endpoint: Option<String>) -> Result<Option<http::Uri>, Error> {
    let Some(text) = endpoint else { return Ok(None) };
    let uri: http::Uri = text
        .parse()
        .map_err(|e| invalid("traces.otlpEndpoint", format!("{text:?}: {e}")))?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        return Err(invalid(
            "traces.otlpEndpoint",
            format!("{text:?}: an http:// URL is needed"),
        ));
    }
    Ok(Some(uri))
}

/// `audit.export`, validated: an `http://` or `https://` URL with a host, a queue of 1 to
/// 1,000,000 lines, a timeout of 100 ms to 60 s.
fn audit_export_from_raw(
    raw: Option<RawAuditExport>,
    service_name: &str,
) -> Result<Option<crate::telemetry::otlp_logs::Settings>, Error> {
    let Some(raw) = raw else { return Ok(None) };
    let text = &raw.otlp_endpoint;
    let endpoint: http::Uri = text
        .parse()
        .map_err(|e| invalid("audit.export.otlpEndpoint", format!("{text:?}: {e}")))?;
    if !matches!(endpoint.scheme_str(), Some("http" | "https")) || endpoint.host().is_none() {
        return Err(invalid(
            "audit.export.otlpEndpoint",
            format!("{text:?}: an http:// or https:// URL is needed"),
        ));
    }
    let queue = raw.queue.unwrap_or(10_000);
    if !(1..=1_000_000).contains(&queue) {
        return Err(invalid(
            "audit.export.queue",
            format!("{queue} is not between 1 and 1,000,000"),
        ));
    }
    let timeout = raw.timeout.unwrap_or(Duration::from_secs(5));
    if !(Duration::from_millis(100)..=Duration::from_secs(60)).contains(&timeout) {
        return Err(invalid(
            "audit.export.timeout",
            format!("{timeout:?} is not between 100ms and 60s"),
        ));
    }
    Ok(Some(crate::telemetry::otlp_logs::Settings {
        endpoint,
        queue,
        timeout,
        service_name: service_name.to_string(),
    }))
}

/// The audit log's target. A file is hash-chained with signed checkpoints (stdout is not:
/// there is no file to verify).
fn audit_from_raw(audit: RawAudit, ca_key: &Path) -> Result<crate::telemetry::jsonl::Target, Error> {
    use crate::telemetry::chain;
    let path: Option<PathBuf> = match audit.path.as_deref() {
        Some("-") => None,
        Some("") => return Err(invalid("audit.path", "empty path (use \"-\" for stdout)")),
        Some(p) => Some(p.into()),
        None => Some(DEFAULT_AUDIT_PATH.into()),
    };
    let checkpoint = audit.checkpoint.unwrap_or_default();
    let checkpoint_records = checkpoint.records.unwrap_or(chain::DEFAULT_CHECKPOINT_RECORDS);
    if checkpoint_records == 0 {
        return Err(invalid("audit.checkpoint.records", "0 is not allowed"));
    }
    let checkpoint_interval = checkpoint.interval.unwrap_or(chain::DEFAULT_CHECKPOINT_INTERVAL);
    if checkpoint_interval < MIN_CHECKPOINT_INTERVAL {
        return Err(invalid(
            "audit.checkpoint.interval",
            format!("{checkpoint_interval:?} is below the minimum of 1s"),
        ));
    }
    let signing_key = match audit.signing_key {
        Some(p) if p.is_relative() => {
            return Err(invalid(
                "audit.signingKey",
                format!("{} is not an absolute path", p.display()),
            ))
        }
        Some(p) => p,
        None => ca_key.with_file_name(chain::DEFAULT_KEY_FILE),
    };
    // Chained even while `enabled` is false: it can be turned on by a reload, and the
    // writer's decision is made at start.
    let chained = path.is_some();
    Ok(crate::telemetry::jsonl::Target {
        path,
        max_bytes: audit.max_bytes.unwrap_or(DEFAULT_AUDIT_MAX_BYTES),
        max_files: audit.max_files.unwrap_or(DEFAULT_AUDIT_MAX_FILES),
        fsync: audit.fsync.unwrap_or(crate::telemetry::jsonl::Fsync::Second),
        chain: chained.then_some(chain::Policy {
            signing_key,
            checkpoint_records,
            checkpoint_interval,
        }),
    })
}

/// Half the CPUs by default: the proxy shares the node with the workloads it serves, and on a
/// 2-vCPU node one worker added less latency and CPU per request than two at the same c=16
/// throughput (docs/benchmarks.md).
fn worker_threads(raw: Option<usize>) -> Result<usize, Error> {
    let n = raw.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| (n.get() / 2).max(1))
            .unwrap_or(1)
    });
    if n == 0 {
        return Err(invalid("workerThreads", "0 is not allowed"));
    }
    Ok(n)
}

fn outlier_from_raw(o: RawOutlier) -> Result<crate::route::health::Policy, Error> {
    use crate::route::health::{DEFAULT_BASE_EJECTION, DEFAULT_CONSECUTIVE_FAILURES, DEFAULT_MAX_EJECTION};
    let outlier = crate::route::health::Policy {
        consecutive_failures: o.consecutive_failures.unwrap_or(DEFAULT_CONSECUTIVE_FAILURES),
        base_ejection: o.base_ejection.unwrap_or(DEFAULT_BASE_EJECTION),
        max_ejection: o.max_ejection.unwrap_or(DEFAULT_MAX_EJECTION),
    };
    if outlier.consecutive_failures == 0 || outlier.base_ejection > outlier.max_ejection {
        return Err(invalid(
            "outlierDetection",
            "need consecutiveFailures >= 1 and baseEjection <= maxEjection",
        ));
    }
    Ok(outlier)
}

impl Listeners {
    fn from_raw(raw: RawListener) -> Result<Listeners, Error> {
        let addresses = raw
            .addresses
            .unwrap_or_else(|| vec![DEFAULT_LISTENER4, DEFAULT_LISTENER6]);
        let (mut host4, mut host6) = (None, None);
        for (i, addr) in addresses.into_iter().enumerate() {
            let field = format!("listener.addresses[{i}]");
            if !addr.ip().is_loopback() {
                return Err(invalid(
                    field,
                    format!("{addr} is not a loopback address (pods use nodeAddress4/6)"),
                ));
            }
            let slot = if addr.is_ipv4() { &mut host4 } else { &mut host6 };
            if slot.replace(addr).is_some() {
                return Err(invalid(field, format!("{addr}: only one listener per address family")));
            }
        }
        if host4.is_none() {
            return Err(invalid(
                "listener.addresses",
                "an IPv4 loopback listener is required (IPv4 and v4-mapped destinations go there)",
            ));
        }
        let node4 = raw
            .node_address4
            .map(|text| socket_addr_with_env("listener.nodeAddress4", &text))
            .transpose()?;
        if let Some(addr) = node4 {
            if !addr.is_ipv4() || addr.ip().is_unspecified() || addr.ip().is_loopback() {
                return Err(invalid(
                    "listener.nodeAddress4",
                    format!("{addr} must be a routable IPv4 address of this node"),
                ));
            }
        }
        let node6 = raw
            .node_address6
            .map(|text| socket_addr_with_env("listener.nodeAddress6", &text))
            .transpose()?;
        if let Some(addr) = node6 {
            if !addr.is_ipv6() || addr.ip().is_unspecified() || addr.ip().is_loopback() {
                return Err(invalid(
                    "listener.nodeAddress6",
                    format!("{addr} must be a routable IPv6 address of this node"),
                ));
            }
        }
        Ok(Listeners {
            host4,
            host6,
            node4,
            node6,
        })
    }
}

impl Provider {
    fn from_raw(origin: &str, raw: RawProvider) -> Result<Provider, Error> {
        let field = |name: &str| format!("{origin}.{name}");
        let Some(name) = raw.name else {
            return Err(invalid(field("name"), "required (or give `catalog`)"));
        };
        crate::validation::check_name(&field("name"), &name)?;
        if let Some(base) = &raw.base_path {
            check_base_path(&field("basePath"), base)?;
        }
        let mut ips = Vec::new();
        let mut cidrs = Vec::new();
        for (j, text) in raw.addresses.iter().enumerate() {
            let f = field(&format!("addresses[{j}]"));
            if let Ok(ip) = text.parse::<IpAddr>() {
                ips.push(ip);
                continue;
            }
            let net: IpNet = text
                .parse()
                .map_err(|_| invalid(&f, format!("{text:?} is neither an IP address nor a CIDR")))?;
            if net.trunc() != net {
                return Err(invalid(
                    f,
                    format!("{text:?} has host bits set (did you mean {}?)", net.trunc()),
                ));
            }
            if net.prefix_len() == net.max_prefix_len() {
                ips.push(net.addr());
            } else {
                cidrs.push(net);
            }
        }
        let mut patterns = Vec::with_capacity(raw.hostnames.len());
        for (j, host) in raw.hostnames.iter().enumerate() {
            let pattern = HostPattern::parse(host).map_err(|why| invalid(field(&format!("hostnames[{j}]")), why))?;
            patterns.push(pattern);
        }
        if ips.is_empty() && cidrs.is_empty() && raw.hostnames.is_empty() {
            return Err(invalid(
                field("addresses"),
                format!("provider {name:?} has no hostnames, addresses or CIDRs to capture"),
            ));
        }
        let ports = raw.ports.unwrap_or_else(|| DEFAULT_PORTS.to_vec());
        if ports.is_empty() {
            return Err(invalid(field("ports"), "empty list (omit it for [443])"));
        }
        if let Some(j) = ports.iter().position(|p| *p == 0) {
            return Err(invalid(field(&format!("ports[{j}]")), "port 0 is not allowed"));
        }
        Ok(Provider {
            name,
            mode: raw.mode.unwrap_or_default(),
            hostnames: patterns.iter().map(|p| p.as_str().to_string()).collect(),
            patterns,
            ips,
            cidrs,
            ports,
            schema: raw.schema.unwrap_or_default(),
            base_path: raw.base_path,
            list_models: raw.list_models.unwrap_or_default(),
            catalog: raw.catalog,
            backend: None,
            backend_name: raw.backend,
        })
    }
}

/// A `basePath`: `/` or `/`-separated segments of URL path characters, `*` only as a whole
/// segment, no `.` or `..` segment.
fn check_base_path(field: &str, base: &str) -> Result<(), Error> {
    let segment_ok = |s: &str| {
        s == "*"
            || (!s.is_empty()
                && s != "."
                && s != ".."
                && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.~".contains(c)))
    };
    let ok = base == "/"
        || base
            .strip_prefix('/')
            .is_some_and(|rest| rest.split('/').all(segment_ok));
    if !ok {
        return Err(invalid(
            field,
            format!(
                "{base:?}: a path such as /openai/v1 (segments of letters, digits, '-', '_', '.', '~', or *), or /"
            ),
        ));
    }
    Ok(())
}

fn l7_display_opt<S: serde::Serializer>(v: &Option<http::Uri>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(u) => s.collect_str(u),
        None => s.serialize_none(),
    }
}

impl fmt::Display for LogTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogTarget::Stdout => f.write_str("stdout"),
            LogTarget::File(p) => write!(f, "{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Config::parse(text).expect_err("config must be rejected").to_string()
    }

    #[test]
    fn a_file_audit_log_is_chained_with_its_key_next_to_the_ca_key() {
        let cfg = Config::parse("tls:\n  caKey: /etc/tg/ca.key\naudit:\n  checkpoint: { records: 10 }\n").unwrap();
        let chain = cfg.audit.chain.expect("a file log is chained");
        assert_eq!(chain.signing_key, PathBuf::from("/etc/tg/audit-signing.key"));
        assert_eq!(chain.checkpoint_records, 10);
        assert_eq!(
            chain.checkpoint_interval,
            crate::telemetry::chain::DEFAULT_CHECKPOINT_INTERVAL
        );
        let cfg = Config::parse("audit:\n  signingKey: /k/a.key\n  checkpoint: { interval: 5s }\n").unwrap();
        let chain = cfg.audit.chain.unwrap();
        assert_eq!(
            (chain.signing_key, chain.checkpoint_records, chain.checkpoint_interval),
            (PathBuf::from("/k/a.key"), 1000, Duration::from_secs(5))
        );
        assert_eq!(Config::parse("audit:\n  path: \"-\"\n").unwrap().audit.chain, None);
        assert!(err("audit:\n  checkpoint: { interval: 0s }\n").contains("audit.checkpoint.interval"));
    }

    #[test]
    fn defaults_apply_to_an_empty_file() {
        let cfg = Config::parse("{}").unwrap();
        assert_eq!(cfg.listener.host4, Some(DEFAULT_LISTENER4));
        assert_eq!(cfg.listener.host6, Some(DEFAULT_LISTENER6));
        assert_eq!(cfg.admin_address, DEFAULT_ADMIN);
        assert_eq!(cfg.capture.fail_mode, FailMode::Open);
        assert_eq!(cfg.capture.mark, DEFAULT_MARK);
        assert_eq!(cfg.connection_log, LogTarget::Stdout);
        assert!(cfg.providers.is_empty());
    }

    #[test]
    fn provider_addresses_split_into_ips_and_cidrs() {
        let cfg = Config::parse(
            r#"
providers:
  - name: anthropic
    hostnames: [api.anthropic.com]
    addresses: ["160.79.104.0/23", "2607:6bc0::/48", "127.10.0.1", "::1/128"]
    ports: [443, 8443]
"#,
        )
        .unwrap();
        let p = &cfg.providers[0];
        assert_eq!(p.mode, Mode::Intercept);
        assert_eq!(
            p.ips,
            vec!["127.10.0.1".parse::<IpAddr>().unwrap(), "::1".parse().unwrap()]
        );
        assert_eq!(p.cidrs.len(), 2);
        assert_eq!(p.ports, vec![443, 8443]);
    }

    #[test]
    fn unknown_key_is_rejected_with_its_name() {
        let e = err("providers:\n  - name: x\n    addresses: [127.0.0.1]\n    colour: red\n");
        assert!(e.contains("unknown field `colour`"), "{e}");
    }

    #[test]
    fn bad_cidr_names_the_field_and_value() {
        let e = err("providers:\n  - name: x\n    addresses: [\"10.0.0.300/8\"]\n");
        assert!(
            e.contains("providers[0].addresses[0]") && e.contains("10.0.0.300/8"),
            "{e}"
        );
        let e = err("providers:\n  - name: x\n    addresses: [\"10.1.2.3/8\"]\n");
        assert!(e.contains("host bits") && e.contains("10.0.0.0/8"), "{e}");
    }

    #[test]
    fn port_zero_is_rejected() {
        let e = err("providers:\n  - name: x\n    addresses: [127.0.0.1]\n    ports: [443, 0]\n");
        assert!(e.contains("providers[0].ports[1]") && e.contains("port 0"), "{e}");
    }

    #[test]
    fn a_cgroup_path_that_is_not_cgroup2_is_refused() {
        let e = err("capture:\n  cgroupPath: /tmp\n");
        assert!(
            e.contains("capture.cgroupPath") && e.contains("not on a cgroup2"),
            "{e}"
        );
        // A path that does not exist here cannot be checked: it is left to start-up.
        Config::parse("capture:\n  cgroupPath: /nonexistent/cgroup\n").unwrap();
    }

    #[test]
    fn node_and_admin_addresses_take_environment_variables() {
        let env = |name: &str| match name {
            "NODE_IP4" => Some("10.1.2.3".to_string()),
            "NODE_IP6" => Some("fd00::5".to_string()),
            _ => None,
        };
        let addr = |text| socket_addr_expanded("f", text, env).unwrap();
        assert_eq!(addr("${NODE_IP4}:15001"), "10.1.2.3:15001".parse().unwrap());
        assert_eq!(addr("${NODE_IP6}:15001"), "[fd00::5]:15001".parse().unwrap());
        assert_eq!(addr("[${NODE_IP6}]:15001"), "[fd00::5]:15001".parse().unwrap());
        assert_eq!(addr("127.0.0.1:1"), "127.0.0.1:1".parse().unwrap());
        let e = err("listener:\n  nodeAddress4: \"${TG_TEST_UNSET_VARIABLE}:15001\"\n");
        assert!(
            e.contains("listener.nodeAddress4") && e.contains("TG_TEST_UNSET_VARIABLE is not set"),
            "{e}"
        );
        let e = err("listener:\n  nodeAddress4: \"${TG_TEST_NODE_IP4:15001\"\n");
        assert!(e.contains("unclosed"), "{e}");
    }

    #[test]
    fn a_remote_admin_address_must_be_asked_for() {
        let e = err("admin:\n  address: \"0.0.0.0:15000\"\n");
        assert!(e.contains("admin.address") && e.contains("allowRemote"), "{e}");
        let cfg = Config::parse("admin:\n  address: \"0.0.0.0:15000\"\n  allowRemote: true\n").unwrap();
        assert_eq!(cfg.admin_address.port(), 15000);
    }

    #[test]
    fn listeners_must_be_loopback_and_one_per_family() {
        let e = err("listener:\n  addresses: [\"10.0.0.1:15001\"]\n");
        assert!(e.contains("listener.addresses[0]") && e.contains("loopback"), "{e}");
        let e = err("listener:\n  addresses: [\"127.0.0.1:1\", \"127.0.0.2:2\"]\n");
        assert!(e.contains("listener.addresses[1]"), "{e}");
        let e = err("listener:\n  nodeAddress4: \"[::1]:1\"\n");
        assert!(e.contains("listener.nodeAddress4"), "{e}");
    }

    #[test]
    fn provider_without_targets_and_duplicates_are_rejected() {
        let e = err("providers:\n  - name: x\n");
        assert!(e.contains("providers[0].addresses"), "{e}");
        let e = err("providers:\n  - name: x\n    addresses: [127.0.0.1]\n  - name: x\n    addresses: [127.0.0.2]\n");
        assert!(e.contains("providers[1].name") && e.contains("duplicate"), "{e}");
        let e = err("providers:\n  - name: x\n    hostnames: [\"bad host\"]\n");
        assert!(e.contains("providers[0].hostnames[0]"), "{e}");
        let e = err("providers:\n  - name: x\n    hostnames: [api.x.com, \"*.com\"]\n");
        assert!(
            e.contains("providers[0].hostnames[1]") && e.contains("two literal labels"),
            "{e}"
        );
    }

    #[test]
    fn wildcard_hostnames_match_after_exact_ones_and_are_governed() {
        let config = Config::parse(
            "providers:\n  - name: wide\n    hostnames: [\"*.openai.azure.com\", \"bedrock-runtime.*.amazonaws.com\"]\n\
             \x20 - name: exact\n    hostnames: [Special.OpenAI.Azure.com]\n    mode: observe\n",
        )
        .unwrap();
        assert_eq!(config.providers[1].hostnames, ["special.openai.azure.com"]);
        assert_eq!(config.provider_by_hostname("myres.openai.azure.com"), Some(0));
        assert_eq!(
            config.provider_by_hostname("bedrock-runtime.eu-west-1.amazonaws.com"),
            Some(0)
        );
        assert_eq!(
            config.provider_by_hostname("special.openai.azure.com"),
            Some(1),
            "an exact name wins over an earlier wildcard"
        );
        assert_eq!(config.provider_by_hostname("openai.azure.com"), None);
        assert!(config.intercepts("myres.openai.azure.com"));
        assert!(!config.intercepts("special.openai.azure.com"), "observe mode");
        let e = err("dns:\n  learnedMinTtl: 0s\n");
        assert!(e.contains("dns.learnedMinTtl"), "{e}");
        let d = Config::parse("{}").unwrap().dns;
        assert!(d.learn && d.forwarder_port == 15053 && d.max_learned_names == 10_000);
    }

    #[test]
    fn bad_mode_and_durations_are_rejected() {
        let e = err("providers:\n  - name: x\n    mode: block\n    addresses: [127.0.0.1]\n");
        assert!(e.contains("unknown variant `block`"), "{e}");
        let e = err("dns:\n  minTtl: 10m\n  maxTtl: 1m\n");
        assert!(e.contains("dns"), "{e}");
    }

    #[test]
    fn missing_file_names_the_path() {
        let e = Config::load(Path::new("/nonexistent/tollgate.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/tollgate.yaml"), "{e}");
    }

    #[test]
    fn shipped_examples_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                seen += 1;
            }
        }
        assert!(seen > 0, "no example configs found in {}", dir.display());
    }
}
