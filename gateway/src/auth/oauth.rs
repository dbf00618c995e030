//! OAuth access tokens obtained by Tollgate on a credential's behalf (Vertex service accounts,
//! Azure Entra applications): how to ask the token endpoint, and the cache that keeps a token
//! until five minutes before it expires.

use std::{
    sync::Mutex,
    time::{Duration, Instant, SystemTime},
};

/// A token is renewed when less than this is left of it.
const RENEW_BEFORE: Duration = Duration::from_secs(300);

/// The last token a credential obtained.
#[derive(Default)]
pub struct TokenCache {
    token: Mutex<Option<(String, Instant)>>,
}

impl TokenCache {
    /// A cached token with enough life left.
    pub fn cached(&self) -> Option<String> {
        let t = self.token.lock().unwrap();
        t.as_ref()
            .filter(|(_, until)| until.saturating_duration_since(Instant::now()) > RENEW_BEFORE)
            .map(|(tok, _)| tok.clone())
    }

    /// Takes a token endpoint's answer (`{"access_token", "expires_in"}`) into the cache.
    pub fn store(&self, answer: &[u8]) -> Result<String, String> {
        let v: serde_json::Value =
            serde_json::from_slice(answer).map_err(|_| "token endpoint answered with no JSON".to_string())?;
        let Some(token) = v["access_token"].as_str() else {
            let why = v["error_description"]
                .as_str()
                .or(v["error"].as_str())
                .unwrap_or("no access_token");
            return Err(format!("token endpoint refused: {why}"));
        };
        // Azure's instance metadata service sends `expires_in` as a string.
        let expires_in = v["expires_in"]
            .as_u64()
            .or_else(|| v["expires_in"].as_str().and_then(|s| s.parse().ok()));
        let ttl = Duration::from_secs(expires_in.unwrap_or(3600));
        *self.token.lock().unwrap() = Some((token.to_string(), Instant::now() + ttl));
        Ok(token.to_string())
    }
}

/// Where a credential's tokens come from.
pub enum Source {
    Gcp(Box<super::gcp::ServiceAccount>),
    /// Client credentials (`azureEntra`, `oauthClientCredentials`).
    ClientCredentials(super::entra::ClientCredentials),
    /// The node's metadata service (GCP metadata server, Azure IMDS): a GET with the header
    /// that proves the caller is on the node, nothing secret in the request.
    Metadata(Metadata),
}

/// A metadata-service token source.
pub struct Metadata {
    pub token_uri: String,
    /// The header the service insists on (`Metadata-Flavor: Google`, `Metadata: true`).
    pub header: (&'static str, &'static str),
    pub cache: TokenCache,
}

/// GKE Workload Identity / GCE: the default service account's token.
pub const GCP_METADATA_TOKEN_URL: &str =
    "http://169.254.169.254/computeMetadata/v1/instance/service-accounts/default/token";
/// Azure IMDS: a managed identity's token for Azure OpenAI (Cognitive Services).
pub const AZURE_IMDS_TOKEN_URL: &str =
    "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fcognitiveservices.azure.com";

impl Metadata {
    pub fn gcp(token_url: Option<&str>) -> Metadata {
        Metadata {
            token_uri: token_url.unwrap_or(GCP_METADATA_TOKEN_URL).to_string(),
            header: ("metadata-flavor", "Google"),
            cache: TokenCache::default(),
        }
    }

    pub fn azure(token_url: Option<&str>) -> Metadata {
        Metadata {
            token_uri: token_url.unwrap_or(AZURE_IMDS_TOKEN_URL).to_string(),
            header: ("metadata", "true"),
            cache: TokenCache::default(),
        }
    }
}

/// How to ask for a token.
pub enum TokenRequest {
    /// POST an `application/x-www-form-urlencoded` body.
    Form(String),
    /// GET with one header.
    Get(&'static str, &'static str),
}

impl Source {
    /// The token endpoint.
    pub fn token_uri(&self) -> &str {
        match self {
            Source::Gcp(sa) => &sa.token_uri,
            Source::ClientCredentials(app) => &app.token_uri,
            Source::Metadata(m) => &m.token_uri,
        }
    }

    /// The token request.
    pub fn token_request(&self, now: SystemTime) -> TokenRequest {
        match self {
            Source::Gcp(sa) => TokenRequest::Form(sa.token_request(now)),
            Source::ClientCredentials(app) => TokenRequest::Form(app.token_request()),
            Source::Metadata(m) => TokenRequest::Get(m.header.0, m.header.1),
        }
    }

    pub fn cache(&self) -> &TokenCache {
        match self {
            Source::Gcp(sa) => &sa.cache,
            Source::ClientCredentials(app) => &app.cache,
            Source::Metadata(m) => &m.cache,
        }
    }
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Gcp(sa) => sa.fmt(f),
            Source::ClientCredentials(app) => app.fmt(f),
            Source::Metadata(m) => write!(f, "Metadata({})", m.token_uri),
        }
    }
}

/// `application/x-www-form-urlencoded` value encoding.
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_cached_until_close_to_expiry_and_refusals_are_named() {
        let c = TokenCache::default();
        assert!(c.cached().is_none());
        assert_eq!(
            c.store(br#"{"access_token":"ya29.a","expires_in":3599}"#).unwrap(),
            "ya29.a"
        );
        assert_eq!(c.cached().as_deref(), Some("ya29.a"));
        // A token about to expire is not used.
        c.store(br#"{"access_token":"ya29.b","expires_in":60}"#).unwrap();
        assert!(c.cached().is_none());
        let e = c
            .store(br#"{"error":"invalid_grant","error_description":"bad sig"}"#)
            .unwrap_err();
        assert!(e.contains("bad sig"), "{e}");
        assert_eq!(form_encode("a+b/c=d ~"), "a%2Bb%2Fc%3Dd%20~");
        // Azure IMDS says expires_in as a string.
        c.store(br#"{"access_token":"eyJ.m","expires_in":"3599","token_type":"Bearer"}"#)
            .unwrap();
        assert_eq!(c.cached().as_deref(), Some("eyJ.m"));
    }
}
