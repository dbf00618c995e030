//! The `credentials` config section (≈ Envoy AI Gateway's BackendSecurityPolicy): raw, as
//! written, and validated. `/config` shows a credential's name, kind and source, never where
//! its secret lives.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::validation::{check_name, invalid, unique, Invalid};

/// How a credential is presented.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, Eq, PartialEq)]
#[serde(rename_all = "camelCase")]
pub enum CredentialKind {
    /// `authorization: Bearer <value>` (OpenAI and compatibles).
    Bearer,
    /// `x-api-key: <value>` (Anthropic).
    XApiKey,
    /// `api-key: <value>` (Azure OpenAI).
    ApiKey,
    /// `x-goog-api-key: <value>` (Gemini API).
    XGoogApiKey,
    /// AWS Signature Version 4 (Bedrock): the value is
    /// `ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]`; each request is signed, no header
    /// carries the secret.
    AwsSigV4,
    /// A Google service-account key file (JSON, as downloaded from GCP): OAuth access tokens
    /// are obtained from its `token_uri` and cached (Vertex AI).
    GcpServiceAccount,
    /// An Azure Entra ID application (`{"tenantId", "clientId", "clientSecret"}`, optionally
    /// `"authorityHost"`): client-credentials tokens for Azure OpenAI, cached.
    AzureEntra,
    /// OAuth 2.0 client credentials at any authorization server (`{"tokenUrl", "clientId",
    /// "clientSecret"}`, optionally `"scope"`, `"audience"`): bearer tokens, cached (remote
    /// MCP servers).
    OauthClientCredentials,
    /// The node's Google identity (GKE Workload Identity, a GCE service account): tokens from
    /// the metadata server, cached (Vertex AI). No secret to configure.
    GcpMetadata,
    /// The node's Azure managed identity: tokens for Azure OpenAI from the instance metadata
    /// service, cached. No secret to configure.
    AzureManagedIdentity,
    /// The node's AWS instance role (Bedrock): temporary keys from the EC2 instance metadata
    /// service (IMDSv2), refreshed every few minutes, for SigV4. No secret to configure.
    AwsMetadata,
}

impl CredentialKind {
    /// Kinds whose tokens come from the node's metadata service: no file or env value.
    pub fn from_metadata(self) -> bool {
        matches!(
            self,
            CredentialKind::GcpMetadata | CredentialKind::AzureManagedIdentity | CredentialKind::AwsMetadata
        )
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawCredential {
    pub name: String,
    pub kind: CredentialKind,
    /// File holding the secret (a Kubernetes Secret mount); re-read when it changes.
    pub file: Option<PathBuf>,
    /// Environment variable holding the secret.
    pub env: Option<String>,
    /// Metadata kinds: the token endpoint, when not the platform's own.
    pub token_url: Option<String>,
}

/// A credential reference. What `/config` shows of it is its name, kind and where its value
/// comes from (`file`, `env`, `metadata`): never the file path or the variable name.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Credential {
    pub name: String,
    pub kind: CredentialKind,
    #[serde(skip)]
    pub file: Option<PathBuf>,
    #[serde(skip)]
    pub env: Option<String>,
    pub token_url: Option<String>,
    /// `file`, `env` or `metadata`.
    pub source: &'static str,
}

/// Validates the `credentials` section.
pub fn credentials(raw: Vec<RawCredential>) -> Result<Vec<Credential>, Invalid> {
    unique("credentials", raw.iter().map(|c| c.name.as_str()))?;
    raw.into_iter()
        .enumerate()
        .map(|(i, c)| {
            check_name(&format!("credentials[{i}].name"), &c.name)?;
            match (&c.file, &c.env, c.kind.from_metadata()) {
                (Some(_), None, false) | (None, Some(_), false) | (None, None, true) => {}
                (_, _, false) => {
                    return Err(invalid(
                        format!("credentials[{i}]"),
                        format!("credential {:?} needs exactly one of `file` or `env`", c.name),
                    ))
                }
                (_, _, true) => {
                    return Err(invalid(
                        format!("credentials[{i}]"),
                        format!(
                            "credential {:?} gets its tokens from the node's metadata service: no `file` or `env`",
                            c.name
                        ),
                    ))
                }
            }
            match &c.token_url {
                Some(_) if !c.kind.from_metadata() => {
                    return Err(invalid(
                        format!("credentials[{i}].tokenUrl"),
                        "only gcpMetadata, azureManagedIdentity and awsMetadata credentials take a tokenUrl",
                    ))
                }
                Some(u) if !(u.starts_with("http://") || u.starts_with("https://")) => {
                    return Err(invalid(
                        format!("credentials[{i}].tokenUrl"),
                        "an http(s) URL is expected",
                    ))
                }
                _ => {}
            }
            let source = match (&c.file, &c.env) {
                (Some(_), _) => "file",
                (None, Some(_)) => "env",
                (None, None) => "metadata",
            };
            Ok(Credential {
                name: c.name,
                kind: c.kind,
                file: c.file,
                env: c.env,
                token_url: c.token_url,
                source,
            })
        })
        .collect()
}
