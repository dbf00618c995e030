//! The Kubernetes objects the importer reads, as their APIs spell them: Envoy AI Gateway's
//! `aigateway.envoyproxy.io` kinds (v1beta1, and the older v1alpha1 shapes: `AIGatewayRoute`
//! `schema`/`targetRefs`, `AIServiceBackend` `backendSecurityPolicyRef`), Envoy Gateway's
//! `Backend` and `BackendTrafficPolicy` (`gateway.envoyproxy.io/v1alpha1`) and Gateway API's
//! `BackendTLSPolicy` (`gateway.networking.k8s.io/v1alpha3` and `v1`). Written from the
//! published Go types (`api/v1beta1/*.go`, `api/v1alpha1/*.go` of envoyproxy/ai-gateway up to
//! v1.1; `api/v1alpha1/{backend,ratelimit}_types.go` of envoyproxy/gateway).
//!
//! Fields are the union of the versions. Keys the importer does not know are kept in `extra`
//! and reported as not converted, never dropped in silence.

// Fields read only so that they are known (not reported as unknown keys) are never used.
#![expect(dead_code, reason = "some fields are parsed only to be accepted")]

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml_ng::Value;

/// Keys of an object the importer does not know, kept to be reported.
pub(super) type Extra = BTreeMap<String, Value>;

#[derive(Debug, Default, Deserialize)]
pub(super) struct Meta {
    #[serde(default)]
    pub name: String,
    pub namespace: Option<String>,
}

/// `group`/`kind`/`name`/`namespace` of a reference (Gateway API's object and policy target
/// references, `parentRefs`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Ref {
    #[serde(default)]
    pub name: String,
    pub namespace: Option<String>,
    pub kind: Option<String>,
    pub group: Option<String>,
    pub port: Option<u16>,
    pub section_name: Option<String>,
}

// === AIGatewayRoute ===

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct AiGatewayRouteSpec {
    #[serde(default)]
    pub parent_refs: Vec<Ref>,
    /// v1alpha1 (up to v0.3): the Gateways it attaches to.
    #[serde(default)]
    pub target_refs: Vec<Ref>,
    /// v1alpha1: the input schema (only `OpenAI` existed).
    pub schema: Option<VersionedSchema>,
    #[serde(default)]
    pub hostnames: Vec<String>,
    #[serde(default)]
    pub rules: Vec<RouteRule>,
    #[serde(default)]
    pub llm_request_costs: Vec<LlmRequestCost>,
    pub filter_config: Option<Value>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RouteRule {
    pub name: Option<String>,
    #[serde(default)]
    pub backend_refs: Vec<RuleBackendRef>,
    #[serde(default)]
    pub matches: Vec<RuleMatch>,
    pub timeouts: Option<HttpRouteTimeouts>,
    pub stream_idle_timeout: Option<String>,
    pub models_owned_by: Option<String>,
    pub models_created_at: Option<Value>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RuleBackendRef {
    pub name: String,
    pub namespace: Option<String>,
    pub group: Option<String>,
    pub kind: Option<String>,
    pub model_name_override: Option<String>,
    pub weight: Option<i64>,
    pub priority: Option<u32>,
    pub header_mutation: Option<Value>,
    pub body_mutation: Option<Value>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RuleMatch {
    #[serde(default)]
    pub headers: Vec<HeaderMatch>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Gateway API's `HTTPHeaderMatch` (and Envoy Gateway's rate limit `HeaderMatch`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct HeaderMatch {
    /// `Exact` (the default), `RegularExpression`; rate limits also `Distinct`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub name: String,
    pub value: Option<String>,
    pub invert: Option<bool>,
}

/// Gateway API's `HTTPRouteTimeouts`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct HttpRouteTimeouts {
    pub request: Option<String>,
    pub backend_request: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct LlmRequestCost {
    pub metadata_key: String,
    /// `InputToken`, `CachedInputToken`, `CacheCreationInputToken`, `OutputToken`,
    /// `TotalToken`, `ReasoningToken` or `CEL`.
    #[serde(rename = "type")]
    pub kind: String,
    pub cel: Option<String>,
}

// === AIServiceBackend ===

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct AiServiceBackendSpec {
    pub schema: VersionedSchema,
    pub backend_ref: Ref,
    /// v1alpha1 (up to v0.3): the policy, before policies named their targets.
    pub backend_security_policy_ref: Option<Ref>,
    /// v1alpha1 (v0.2).
    pub timeouts: Option<HttpRouteTimeouts>,
    pub header_mutation: Option<Value>,
    pub body_mutation: Option<Value>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Deserialize)]
pub(super) struct VersionedSchema {
    pub name: String,
    pub version: Option<String>,
    pub prefix: Option<String>,
}

// === BackendSecurityPolicy ===

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SecurityPolicySpec {
    #[serde(default)]
    pub target_refs: Vec<Ref>,
    #[serde(rename = "type")]
    pub kind: String,
    pub api_key: Option<SecretHolder>,
    #[serde(rename = "anthropicAPIKey")]
    pub anthropic_api_key: Option<SecretHolder>,
    #[serde(rename = "azureAPIKey")]
    pub azure_api_key: Option<SecretHolder>,
    pub aws_credentials: Option<AwsCredentials>,
    pub azure_credentials: Option<AzureCredentials>,
    pub gcp_credentials: Option<GcpCredentials>,
    pub credential_override: Option<Value>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SecretHolder {
    pub secret_ref: Option<Ref>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct AwsCredentials {
    #[serde(default)]
    pub region: String,
    pub credentials_file: Option<AwsCredentialsFile>,
    pub oidc_exchange_token: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct AwsCredentialsFile {
    pub secret_ref: Option<Ref>,
    pub profile: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct AzureCredentials {
    #[serde(rename = "clientID", default)]
    pub client_id: String,
    #[serde(rename = "tenantID", default)]
    pub tenant_id: String,
    pub client_secret_ref: Option<Ref>,
    pub oidc_exchange_token: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GcpCredentials {
    #[serde(default)]
    pub project_name: String,
    #[serde(default)]
    pub region: String,
    pub credentials_file: Option<SecretHolder>,
    pub workload_identity_federation_config: Option<Value>,
}

// === Envoy Gateway: Backend, BackendTrafficPolicy ===

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct BackendSpec {
    /// `Endpoints` (the default) or `DynamicResolver`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    pub tls: Option<BackendTls>,
    #[serde(default)]
    pub app_protocols: Vec<String>,
    pub fallback: Option<bool>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Deserialize)]
pub(super) struct Endpoint {
    pub fqdn: Option<HostPort>,
    pub ip: Option<IpPort>,
    pub unix: Option<Value>,
    pub hostname: Option<String>,
    pub zone: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct HostPort {
    pub hostname: String,
    pub port: u16,
}

#[derive(Debug, Deserialize)]
pub(super) struct IpPort {
    pub address: String,
    pub port: u16,
}

/// `Backend.spec.tls` (Envoy Gateway).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct BackendTls {
    #[serde(default)]
    pub ca_certificate_refs: Vec<Ref>,
    pub well_known_ca_certificates: Option<String>,
    pub insecure_skip_verify: Option<bool>,
    pub sni: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TrafficPolicySpec {
    #[serde(default)]
    pub target_refs: Vec<Ref>,
    pub target_ref: Option<Ref>,
    pub rate_limit: Option<RateLimit>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Deserialize)]
pub(super) struct RateLimit {
    /// Deprecated `Global`/`Local`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub global: Option<RateLimitRules>,
    pub local: Option<RateLimitRules>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RateLimitRules {
    #[serde(default)]
    pub rules: Vec<RateLimitRule>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RateLimitRule {
    #[serde(default)]
    pub client_selectors: Vec<ClientSelector>,
    pub limit: RateLimitValue,
    pub cost: Option<RateLimitCost>,
    pub shared: Option<bool>,
    pub shadow_mode: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ClientSelector {
    #[serde(default)]
    pub headers: Vec<HeaderMatch>,
    pub methods: Option<Value>,
    pub path: Option<Value>,
    #[serde(rename = "sourceCIDR")]
    pub source_cidr: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RateLimitValue {
    pub requests: u64,
    /// `Second`, `Minute`, `Hour`, `Day`, `Month`, `Year`.
    pub unit: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct RateLimitCost {
    pub request: Option<CostSpecifier>,
    pub response: Option<CostSpecifier>,
}

#[derive(Debug, Deserialize)]
pub(super) struct CostSpecifier {
    /// `Number` or `Metadata`.
    pub from: String,
    pub number: Option<u64>,
    pub metadata: Option<CostMetadata>,
}

#[derive(Debug, Deserialize)]
pub(super) struct CostMetadata {
    pub namespace: String,
    pub key: String,
}

// === Gateway API: BackendTLSPolicy ===

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TlsPolicySpec {
    #[serde(default)]
    pub target_refs: Vec<Ref>,
    /// v1alpha2 had one `targetRef`.
    pub target_ref: Option<Ref>,
    pub validation: Option<TlsValidation>,
    /// v1alpha2 named it `tls`.
    pub tls: Option<TlsValidation>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TlsValidation {
    #[serde(default)]
    pub ca_certificate_refs: Vec<Ref>,
    pub well_known_ca_certificates: Option<String>,
    pub hostname: Option<String>,
    #[serde(default)]
    pub subject_alt_names: Vec<Value>,
}
