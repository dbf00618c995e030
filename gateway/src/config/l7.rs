//! The L7 part of the configuration: TLS interception, backends, credentials and routes
//! (Envoy AI Gateway's AIServiceBackend, BackendSecurityPolicy and AIGatewayRoute). All of it is
//! dynamic: a valid change of the file takes effect for the next request.

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

pub use crate::{
    auth::config::{Credential, CredentialKind, RawCredential},
    route::config::*,
};

/// Node CA certificate written on first start.
pub const DEFAULT_CA_CERT: &str = "/var/lib/tollgate/ca.crt";
/// Node CA key (mode 0600).
pub const DEFAULT_CA_KEY: &str = "/var/lib/tollgate/ca.key";
/// Lifetime of a leaf certificate minted for an SNI (24 hours).
pub const DEFAULT_LEAF_TTL: Duration = Duration::from_secs(24 * 3600);
/// Largest request body Tollgate reads to find `model` and `stream` (4 MiB).
pub const DEFAULT_MAX_REQUEST_BODY: usize = 4 * 1024 * 1024;

pub use crate::llm::ApiSchema;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawTls {
    /// Node CA certificate (PEM). Created with the key on first start if neither exists.
    pub ca_cert: Option<PathBuf>,
    /// Node CA private key (PEM, mode 0600).
    pub ca_key: Option<PathBuf>,
    /// Lifetime of minted leaf certificates. Default `24h`.
    #[serde(default, with = "humantime_serde")]
    pub leaf_ttl: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawProxy {
    /// Largest request body read to parse it, in bytes. Default 4 MiB; larger bodies get 413.
    pub max_request_body: Option<usize>,
    /// Time a client has to send a request's headers (HTTP/1.1), and the longest a keep-alive
    /// connection may sit idle between requests. Default `30s`.
    #[serde(default, with = "humantime_serde")]
    pub header_read_timeout: Option<Duration>,
    /// Captured connections open at once; beyond, new ones are closed at once and counted.
    /// Default 16384.
    pub max_connections: Option<usize>,
}

/// Time a client has to send a request's headers, and the longest an HTTP/1.1 keep-alive
/// connection may sit idle between requests (30 seconds; nginx's `client_header_timeout` is 60).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Captured connections open at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16_384;

// === validated ===

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tls {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    #[serde(with = "humantime_serde")]
    pub leaf_ttl: Duration,
}

pub(super) fn tls(raw: Option<RawTls>) -> Tls {
    let raw = raw.unwrap_or_default();
    Tls {
        ca_cert: raw.ca_cert.unwrap_or_else(|| DEFAULT_CA_CERT.into()),
        ca_key: raw.ca_key.unwrap_or_else(|| DEFAULT_CA_KEY.into()),
        leaf_ttl: raw.leaf_ttl.unwrap_or(DEFAULT_LEAF_TTL),
    }
}
