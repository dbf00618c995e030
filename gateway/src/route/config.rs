//! The `backends` and `routes` config sections (≈ Envoy AI Gateway's AIServiceBackend and
//! AIGatewayRoute): raw, as written, and validated. All of it is dynamic: a valid change of the
//! file takes effect for the next request.

use std::{collections::HashMap, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

pub use crate::matching::RawWorkloadMatch;
use crate::validation::{check_name, invalid, unique, Invalid};
use crate::{
    auth::config::{Credential, CredentialKind},
    llm::ApiSchema,
    matching::{globs, Glob, WorkloadMatch},
};

/// Time a route gives a backend to answer with response headers (5 minutes).
pub const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(300);

/// Where requests can go.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawBackend {
    pub name: String,
    /// `https://host[:port][/prefix]` or `http://…`; the client's path is appended to it.
    pub url: String,
    /// The API the backend speaks. Default `openai`.
    pub schema: Option<ApiSchema>,
    /// Name of the credential injected into every request to this backend.
    pub credential: Option<String>,
    /// Extra PEM CA bundle trusted for this backend, besides the public roots.
    pub ca_file: Option<PathBuf>,
    /// Azure OpenAI: the deployment name. Default: the model the request is sent with.
    pub deployment: Option<String>,
    /// Azure OpenAI: `api-version`. Default `2024-10-21`.
    pub api_version: Option<String>,
    /// Bedrock: the AWS region requests are signed for. Default: taken from a
    /// `bedrock-runtime.<region>.amazonaws.com` URL. Vertex: the location, default taken from
    /// a `<region>-aiplatform.googleapis.com` URL.
    pub region: Option<String>,
    /// Vertex: the Google Cloud project.
    pub project: Option<String>,
    /// Offer HTTP/2 (ALPN) to the backend. Default `false`: pooled HTTP/1.1 connections, which
    /// cost less CPU and latency per request here (docs/benchmarks.md).
    pub http2: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawRouteMatch {
    /// Provider names; empty matches any.
    #[serde(default)]
    pub providers: Vec<String>,
    /// Model globs (`*`, `?`); empty matches any.
    #[serde(default)]
    pub models: Vec<String>,
    /// Header name → value glob; all must match.
    #[serde(default)]
    pub headers: HashMap<String, String>,
    /// Who is calling.
    pub workload: Option<RawWorkloadMatch>,
    /// Operations this route serves, by name (`chat_completions`, `embeddings`, `files`,
    /// `batches`, `fine_tuning`, `admin`, `other`, …). Default: the inference operations.
    /// Anything else gets a credential only when a route lists it here or in `paths`.
    #[serde(default)]
    pub operations: Vec<String>,
    /// Request path globs this route serves, any method (e.g. `/v1/files*`). Default: none.
    #[serde(default)]
    pub paths: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawBackendRef {
    pub backend: String,
    /// Relative weight within a priority tier. Default 1.
    pub weight: Option<u32>,
    /// Tier: the lowest tier with a backend is used. Default 0.
    pub priority: Option<u32>,
    /// Model the request is rewritten to for this backend.
    pub model: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawRoute {
    pub name: String,
    #[serde(rename = "match", default)]
    pub matches: RawRouteMatch,
    pub backends: Vec<RawBackendRef>,
    /// Time to response headers (first byte) per attempt. Default `5m`. Same as
    /// `timeouts.firstByte`.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    pub timeouts: Option<RawTimeouts>,
    pub retry: Option<RawRetry>,
    /// Request and response bodies in the audit record, redacted (off by default).
    pub capture: Option<crate::accounting::content::RawCapture>,
    /// For MCP providers: which tools the route's workloads may call.
    pub mcp: Option<RawMcpPolicy>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawMcpPolicy {
    pub tools: Option<RawToolPolicy>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawToolPolicy {
    /// Tool name globs that may be called. Default: every tool.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Tool name globs that may not, whatever `allow` says.
    #[serde(default)]
    pub deny: Vec<String>,
}

/// Which MCP tools a route's workloads may call (and see in `tools/list`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ToolPolicy {
    pub allow: Vec<Glob>,
    pub deny: Vec<Glob>,
}

impl ToolPolicy {
    /// Allowed: named by `allow` (or `allow` is empty) and by no `deny`.
    pub fn allows(&self, tool: &str) -> bool {
        (self.allow.is_empty() || self.allow.iter().any(|g| g.matches(tool)))
            && !self.deny.iter().any(|g| g.matches(tool))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawTimeouts {
    /// Per attempt, until the response headers. Default `5m`.
    #[serde(default, with = "humantime_serde")]
    pub first_byte: Option<Duration>,
    /// Longest gap between two chunks of a response body. Default: none.
    #[serde(default, with = "humantime_serde")]
    pub idle: Option<Duration>,
    /// The whole request, attempts and body included. Default: none.
    #[serde(default, with = "humantime_serde")]
    pub total: Option<Duration>,
}

/// What makes an attempt worth retrying on the next backend.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum RetryOn {
    Connect,
    Tls,
    Timeout,
    #[serde(rename = "429")]
    TooManyRequests,
    #[serde(rename = "5xx")]
    ServerError,
}

impl RetryOn {
    /// The condition as the config spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            RetryOn::Connect => "connect",
            RetryOn::Tls => "tls",
            RetryOn::Timeout => "timeout",
            RetryOn::TooManyRequests => "429",
            RetryOn::ServerError => "5xx",
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawRetry {
    /// Attempts per request, across all tiers. Default: the number of backends, at most 3.
    pub attempts: Option<u32>,
    /// Conditions. Default: all of `connect`, `tls`, `timeout`, `429`, `5xx`.
    pub on: Option<Vec<RetryOn>>,
    /// Other statuses that are retried.
    #[serde(default)]
    pub statuses: Vec<u16>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Backend {
    pub name: String,
    /// Scheme, authority and path prefix (no trailing `/`).
    #[serde(serialize_with = "display")]
    pub url: http::Uri,
    #[serde(skip)]
    pub prefix: String,
    pub schema: ApiSchema,
    pub credential: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub http2: bool,
    pub deployment: Option<String>,
    pub api_version: String,
    pub region: Option<String>,
    pub project: Option<String>,
}

/// `api-version` of Azure OpenAI backends when none is configured.
pub const DEFAULT_AZURE_API_VERSION: &str = "2024-10-21";

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteMatch {
    #[serde(serialize_with = "operation_names")]
    pub operations: Vec<crate::llm::Operation>,
    pub paths: Vec<Glob>,
    pub providers: Vec<String>,
    pub models: Vec<Glob>,
    pub headers: Vec<(String, Glob)>,
    #[serde(flatten)]
    pub workload: WorkloadMatch,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendRef {
    /// Index into `Config::backends`.
    pub backend: usize,
    pub weight: u32,
    pub priority: u32,
    pub model: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    pub name: String,
    #[serde(rename = "match")]
    pub matches: RouteMatch,
    pub backends: Vec<BackendRef>,
    /// First-byte timeout per attempt.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub total_timeout: Option<Duration>,
    pub retry_attempts: u32,
    pub retry_on: Vec<RetryOn>,
    pub retry_statuses: Vec<u16>,
    /// Content capture, when the route turns it on.
    pub capture: Option<std::sync::Arc<crate::accounting::content::Capture>>,
    /// MCP tools the route allows (`mcp.tools`); `None`: every tool.
    pub tools: Option<ToolPolicy>,
}

/// Retries when a route gives none.
pub const DEFAULT_RETRY_ON: [RetryOn; 5] = [
    RetryOn::Connect,
    RetryOn::Tls,
    RetryOn::Timeout,
    RetryOn::TooManyRequests,
    RetryOn::ServerError,
];
/// Most attempts a request makes by default.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

fn operation_names<S: serde::Serializer>(ops: &[crate::llm::Operation], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(ops.iter().map(|o| o.as_str()))
}

fn display<S: serde::Serializer>(v: &impl std::fmt::Display, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// Validates the `backends` section.
pub fn backends(raw: Vec<RawBackend>, credentials: &[Credential]) -> Result<Vec<Backend>, Invalid> {
    unique("backends", raw.iter().map(|b| b.name.as_str()))?;
    raw.into_iter()
        .enumerate()
        .map(|(i, b)| backend(i, b, credentials))
        .collect()
}

/// Validates `backends[i]`, the checks in the order their errors are reported.
fn backend(i: usize, b: RawBackend, credentials: &[Credential]) -> Result<Backend, Invalid> {
    check_name(&format!("backends[{i}].name"), &b.name)?;
    let url = backend_url(i, &b.url)?;
    let prefix = url.path().trim_end_matches('/').to_string();
    if let Some(c) = &b.credential {
        if !credentials.iter().any(|k| &k.name == c) {
            return Err(invalid(
                format!("backends[{i}].credential"),
                format!("no credential named {c:?}"),
            ));
        }
    }
    if let Some(ca) = &b.ca_file {
        if !ca.exists() {
            return Err(invalid(
                format!("backends[{i}].caFile"),
                format!("{} does not exist", ca.display()),
            ));
        }
    }
    let schema = b.schema.unwrap_or_default();
    let region = backend_region(i, schema, url.host().unwrap_or_default(), b.region)?;
    let project = backend_project(i, schema, b.project)?;
    if let Some(c) = &b.credential {
        check_credential_kind(i, schema, c, credentials)?;
    }
    Ok(Backend {
        name: b.name,
        url,
        prefix,
        schema,
        credential: b.credential,
        ca_file: b.ca_file,
        http2: b.http2.unwrap_or(false),
        api_version: b.api_version.unwrap_or_else(|| DEFAULT_AZURE_API_VERSION.into()),
        deployment: b.deployment,
        region,
        project,
    })
}

/// Parses `backends[i].url`: an http or https URL with a host and no query string.
fn backend_url(i: usize, raw: &str) -> Result<http::Uri, Invalid> {
    let field = format!("backends[{i}].url");
    let url: http::Uri = raw.parse().map_err(|e| invalid(&field, format!("{raw:?}: {e}")))?;
    match url.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(invalid(&field, format!("{raw:?}: scheme must be http or https"))),
    }
    if url.host().is_none() {
        return Err(invalid(&field, format!("{raw:?} has no host")));
    }
    if url.query().is_some() {
        return Err(invalid(&field, format!("{raw:?}: no query string allowed")));
    }
    Ok(url)
}

/// The region of a bedrock or vertex backend: the configured one, else the one in its host;
/// other schemas take none.
/// The region a Bedrock (`bedrock-runtime.<region>.amazonaws.com`) or Vertex
/// (`<region>-aiplatform.googleapis.com`) host names; `tollgate import` asks it too.
pub fn region_in_host(schema: ApiSchema, host: &str) -> Option<&str> {
    match schema {
        ApiSchema::Bedrock => host
            .strip_prefix("bedrock-runtime.")
            .and_then(|h| h.strip_suffix(".amazonaws.com")),
        ApiSchema::Vertex => host.strip_suffix("-aiplatform.googleapis.com"),
        _ => None,
    }
    .filter(|r| !r.is_empty() && !r.contains('.'))
}

fn backend_region(i: usize, schema: ApiSchema, host: &str, region: Option<String>) -> Result<Option<String>, Invalid> {
    let region_in_host = region_in_host(schema, host);
    match (schema, region) {
        (ApiSchema::Bedrock | ApiSchema::Vertex, Some(r)) => Ok(Some(r)),
        (ApiSchema::Bedrock | ApiSchema::Vertex, None) => match region_in_host {
            Some(r) => Ok(Some(r.to_string())),
            None => Err(invalid(
                format!("backends[{i}].region"),
                format!(
                    "a {} backend needs a region (none in the host {host:?})",
                    schema.as_str()
                ),
            )),
        },
        (_, Some(_)) => Err(invalid(
            format!("backends[{i}].region"),
            "only bedrock and vertex backends take a region",
        )),
        (_, None) => Ok(None),
    }
}

/// The Google Cloud project, which vertex backends need and no other backend takes.
fn backend_project(i: usize, schema: ApiSchema, project: Option<String>) -> Result<Option<String>, Invalid> {
    match (schema, project) {
        (ApiSchema::Vertex, Some(p)) => Ok(Some(p)),
        (ApiSchema::Vertex, None) => Err(invalid(
            format!("backends[{i}].project"),
            "a vertex backend needs a project",
        )),
        (_, Some(_)) => Err(invalid(
            format!("backends[{i}].project"),
            "only vertex backends take a project",
        )),
        (_, None) => Ok(None),
    }
}

/// Refuses a credential whose kind signs for another provider than the backend's schema
/// (AWS kinds for bedrock only, GCP kinds for vertex, Azure kinds for azureOpenai).
/// Whether a credential of `kind` can authenticate to a backend of `schema`: AWS kinds for
/// bedrock and only there, Google kinds for vertex, Entra and managed identity for azureOpenai.
/// `tollgate import` asks it too; [`check_credential_kind`] says which rule failed.
pub fn credential_fits(schema: ApiSchema, kind: CredentialKind) -> bool {
    let aws = matches!(kind, CredentialKind::AwsSigV4 | CredentialKind::AwsMetadata);
    let gcp = matches!(kind, CredentialKind::GcpServiceAccount | CredentialKind::GcpMetadata);
    let azure = matches!(kind, CredentialKind::AzureEntra | CredentialKind::AzureManagedIdentity);
    (schema == ApiSchema::Bedrock) == aws
        && (!gcp || schema == ApiSchema::Vertex)
        && (!azure || schema == ApiSchema::AzureOpenai)
}

fn check_credential_kind(i: usize, schema: ApiSchema, c: &str, credentials: &[Credential]) -> Result<(), Invalid> {
    let kind = credentials.iter().find(|k| k.name == c).map(|k| k.kind);
    let aws = matches!(kind, Some(CredentialKind::AwsSigV4 | CredentialKind::AwsMetadata));
    if (schema == ApiSchema::Bedrock) != aws {
        return Err(invalid(
            format!("backends[{i}].credential"),
            format!("{c:?}: bedrock backends, and only they, use a credential of kind awsSigV4 or awsMetadata"),
        ));
    }
    if matches!(
        kind,
        Some(CredentialKind::GcpServiceAccount | CredentialKind::GcpMetadata)
    ) && schema != ApiSchema::Vertex
    {
        return Err(invalid(
            format!("backends[{i}].credential"),
            format!("{c:?}: gcpServiceAccount and gcpMetadata credentials are for vertex backends"),
        ));
    }
    if matches!(
        kind,
        Some(CredentialKind::AzureEntra | CredentialKind::AzureManagedIdentity)
    ) && schema != ApiSchema::AzureOpenai
    {
        return Err(invalid(
            format!("backends[{i}].credential"),
            format!("{c:?}: azureEntra and azureManagedIdentity credentials are for azureOpenai backends"),
        ));
    }
    Ok(())
}

/// Validates the `routes` section against the backends and providers it names.
pub fn routes(raw: Vec<RawRoute>, backends: &[Backend], providers: &[String]) -> Result<Vec<Route>, Invalid> {
    unique("routes", raw.iter().map(|r| r.name.as_str()))?;
    raw.into_iter()
        .enumerate()
        .map(|(i, r)| route(i, r, backends, providers))
        .collect()
}

/// Validates `routes[i]`, the checks in the order their errors are reported.
fn route(i: usize, r: RawRoute, backends: &[Backend], providers: &[String]) -> Result<Route, Invalid> {
    check_name(&format!("routes[{i}].name"), &r.name)?;
    for (j, p) in r.matches.providers.iter().enumerate() {
        if !providers.contains(p) {
            return Err(invalid(
                format!("routes[{i}].match.providers[{j}]"),
                format!("no provider named {p:?}"),
            ));
        }
    }
    if r.backends.is_empty() {
        return Err(invalid(
            format!("routes[{i}].backends"),
            "a route needs at least one backend",
        ));
    }
    let refs = backend_refs(i, r.backends, backends)?;
    let w = r.matches.workload.unwrap_or_default();
    let operations = route_operations(i, &r.matches.operations)?;
    for (j, p) in r.matches.paths.iter().enumerate() {
        if !p.starts_with('/') {
            return Err(invalid(
                format!("routes[{i}].match.paths[{j}]"),
                format!("{p:?} must start with '/'"),
            ));
        }
    }
    let mut headers: Vec<(String, String)> = r
        .matches
        .headers
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    headers.sort();
    let timeouts = r.timeouts.unwrap_or_default();
    if r.timeout.is_some() && timeouts.first_byte.is_some() {
        return Err(invalid(
            format!("routes[{i}].timeout"),
            "set either timeout or timeouts.firstByte",
        ));
    }
    let retry = r.retry.unwrap_or_default();
    let retry_attempts = retry.attempts.unwrap_or((refs.len() as u32).min(DEFAULT_MAX_ATTEMPTS));
    if retry_attempts == 0 {
        return Err(invalid(format!("routes[{i}].retry.attempts"), "at least 1"));
    }
    let capture = match r.capture {
        Some(raw) => crate::accounting::content::capture_from_raw(&format!("routes[{i}].capture"), raw)
            .map_err(|(field, message)| invalid(field, message))?
            .map(std::sync::Arc::new),
        None => None,
    };
    let tools = r.mcp.and_then(|m| m.tools).map(|t| ToolPolicy {
        allow: globs(&t.allow),
        deny: globs(&t.deny),
    });
    Ok(Route {
        capture,
        tools,
        timeout: timeouts.first_byte.or(r.timeout).unwrap_or(DEFAULT_ROUTE_TIMEOUT),
        idle_timeout: timeouts.idle,
        total_timeout: timeouts.total,
        retry_attempts,
        retry_on: retry.on.unwrap_or_else(|| DEFAULT_RETRY_ON.to_vec()),
        retry_statuses: retry.statuses,
        name: r.name,
        matches: RouteMatch {
            operations,
            paths: globs(&r.matches.paths),
            providers: r.matches.providers,
            models: globs(&r.matches.models),
            headers: headers.into_iter().map(|(k, v)| (k, Glob::new(&v))).collect(),
            workload: w.compile(),
        },
        backends: refs,
    })
}

/// Resolves `routes[i].backends` to indexes into the backends, with their weight (never 0),
/// priority and model.
fn backend_refs(i: usize, raw: Vec<RawBackendRef>, backends: &[Backend]) -> Result<Vec<BackendRef>, Invalid> {
    raw.into_iter()
        .enumerate()
        .map(|(j, b)| {
            let field = format!("routes[{i}].backends[{j}]");
            let backend = backends
                .iter()
                .position(|x| x.name == b.backend)
                .ok_or_else(|| invalid(format!("{field}.backend"), format!("no backend named {:?}", b.backend)))?;
            let weight = b.weight.unwrap_or(1);
            if weight == 0 {
                return Err(invalid(
                    format!("{field}.weight"),
                    "0 is not allowed (remove the backend instead)",
                ));
            }
            Ok(BackendRef {
                backend,
                weight,
                priority: b.priority.unwrap_or(0),
                model: b.model,
            })
        })
        .collect()
}

/// Parses the operation names of `routes[i].match.operations`, naming the known ones when a
/// name is unknown.
fn route_operations(i: usize, names: &[String]) -> Result<Vec<crate::llm::Operation>, Invalid> {
    names
        .iter()
        .enumerate()
        .map(|(j, name)| {
            crate::llm::Operation::from_name(name).ok_or_else(|| {
                let known: Vec<&str> = crate::llm::Operation::ALL.iter().map(|o| o.as_str()).collect();
                invalid(
                    format!("routes[{i}].match.operations[{j}]"),
                    format!("unknown operation {name:?} (known: {})", known.join(", ")),
                )
            })
        })
        .collect()
}
