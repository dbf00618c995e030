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
        let ttl = Duration::from_secs(v["expires_in"].as_u64().unwrap_or(3600));
        *self.token.lock().unwrap() = Some((token.to_string(), Instant::now() + ttl));
        Ok(token.to_string())
    }
}

/// Where a credential's tokens come from.
pub enum Source {
    Gcp(Box<super::gcp::ServiceAccount>),
    Entra(super::entra::EntraApp),
}

impl Source {
    /// The token endpoint.
    pub fn token_uri(&self) -> &str {
        match self {
            Source::Gcp(sa) => &sa.token_uri,
            Source::Entra(app) => &app.token_uri,
        }
    }

    /// The form body of a token request.
    pub fn token_request(&self, now: SystemTime) -> String {
        match self {
            Source::Gcp(sa) => sa.token_request(now),
            Source::Entra(app) => app.token_request(),
        }
    }

    pub fn cache(&self) -> &TokenCache {
        match self {
            Source::Gcp(sa) => &sa.cache,
            Source::Entra(app) => &app.cache,
        }
    }
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Gcp(sa) => sa.fmt(f),
            Source::Entra(app) => app.fmt(f),
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
    }
}
