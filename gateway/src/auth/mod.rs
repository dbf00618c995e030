//! Backend credentials (≈ Envoy AI Gateway's BackendSecurityPolicy): read from a file (a
//! Kubernetes Secret mount) or an env var, re-read when the file changes, injected into
//! upstream requests, and never printed: the value lives in [`Secret`], whose `Debug` and
//! `Display` say `<redacted>`; logs and records carry only the name and a fingerprint.
//! Kinds that are not a header value live beside it: [`sigv4`] signs Bedrock requests,
//! [`oauth`] fetches and caches access tokens for [`gcp`] service accounts (Vertex),
//! [`entra`] applications (Azure OpenAI) and the node's own identity from its metadata service
//! (GKE Workload Identity / GCE, Azure managed identity); [`sigv4::Imds`] holds an AWS role's
//! temporary keys. [`fetch`] makes the network calls all of these need, through the backend's
//! client.

pub mod config;
pub mod entra;
pub mod fetch;
pub mod gcp;
pub mod oauth;
pub mod sigv4;

use std::{
    collections::HashMap,
    fmt,
    path::PathBuf,
    sync::{Arc, RwLock},
};

use http::{header::HeaderName, HeaderMap, HeaderValue};
use sha2::{Digest as _, Sha256};

use self::config::{Credential as CredentialConfig, CredentialKind};

/// Headers a client may use to carry its own (dummy or real) key; all are removed upstream.
pub const CLIENT_CREDENTIAL_HEADERS: [&str; 4] = ["authorization", "x-api-key", "api-key", "x-goog-api-key"];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("credential {name}: cannot read {path}: {source}")]
    File {
        name: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("credential {name}: environment variable {var} is not set")]
    Env { name: String, var: String },
    #[error("credential {name}: the value is empty or not a valid header value")]
    Value { name: String },
}

/// A secret value. Its formatting never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A loaded credential: what to inject and how to name it in records.
#[derive(Debug)]
pub struct Loaded {
    pub name: String,
    pub kind: CredentialKind,
    /// `sha256:` and the first 8 hex digits of the value's SHA-256: tells rotations apart
    /// without revealing anything usable.
    pub fingerprint: String,
    presented: Presented,
    secret: Secret,
}

/// How a credential reaches the backend, by kind.
#[derive(Debug)]
enum Presented {
    /// A header carrying the value (`bearer`, `xApiKey`, `apiKey`, `xGoogApiKey`).
    Header(HeaderName, HeaderValue),
    /// Requests signed with these keys (`awsSigV4`).
    Aws(sigv4::AwsKeys),
    /// Requests signed with keys the node's AWS role hands out (`awsMetadata`).
    Imds(sigv4::Imds),
    /// Bearer tokens from a token source (`gcpServiceAccount`, `azureEntra`,
    /// `oauthClientCredentials`, `gcpMetadata`, `azureManagedIdentity`).
    OAuth(oauth::Source),
}

impl Loaded {
    fn new(name: &str, kind: CredentialKind, value: String) -> Result<Loaded, Error> {
        let value = value.trim().to_string();
        let digest = Sha256::digest(value.as_bytes());
        let fingerprint = format!(
            "sha256:{}",
            digest.iter().take(4).map(|b| format!("{b:02x}")).collect::<String>()
        );
        let invalid = || Error::Value { name: name.to_string() };
        // Metadata kinds: `value` is the endpoint override, if any.
        let url = Some(value.as_str()).filter(|v| !v.is_empty());
        let header = |header_name: HeaderName, header_value: String| {
            if value.is_empty() {
                return Err(invalid());
            }
            let mut v = HeaderValue::from_str(&header_value).map_err(|_| invalid())?;
            v.set_sensitive(true);
            Ok(Presented::Header(header_name, v))
        };
        let presented = match kind {
            CredentialKind::Bearer => header(http::header::AUTHORIZATION, format!("Bearer {value}"))?,
            CredentialKind::XApiKey => header(HeaderName::from_static("x-api-key"), value.clone())?,
            CredentialKind::ApiKey => header(HeaderName::from_static("api-key"), value.clone())?,
            CredentialKind::XGoogApiKey => header(HeaderName::from_static("x-goog-api-key"), value.clone())?,
            CredentialKind::AwsSigV4 => Presented::Aws(sigv4::AwsKeys::parse(&value).ok_or_else(invalid)?),
            CredentialKind::AwsMetadata => Presented::Imds(sigv4::Imds::new(url)),
            CredentialKind::GcpServiceAccount => Presented::OAuth(oauth::Source::Gcp(Box::new(
                gcp::ServiceAccount::parse(&value).ok_or_else(invalid)?,
            ))),
            CredentialKind::AzureEntra => Presented::OAuth(oauth::Source::ClientCredentials(
                entra::ClientCredentials::entra(&value).ok_or_else(invalid)?,
            )),
            CredentialKind::OauthClientCredentials => Presented::OAuth(oauth::Source::ClientCredentials(
                entra::ClientCredentials::generic(&value).ok_or_else(invalid)?,
            )),
            CredentialKind::GcpMetadata => Presented::OAuth(oauth::Source::Metadata(oauth::Metadata::gcp(url))),
            CredentialKind::AzureManagedIdentity => {
                Presented::OAuth(oauth::Source::Metadata(oauth::Metadata::azure(url)))
            }
        };
        Ok(Loaded {
            name: name.to_string(),
            kind,
            fingerprint,
            presented,
            secret: Secret(value),
        })
    }

    /// Puts the credential on an upstream request.
    /// Signed kinds add nothing here: the request is signed once it is final.
    pub fn inject(&self, headers: &mut HeaderMap) {
        if let Presented::Header(name, value) = &self.presented {
            headers.insert(name.clone(), value.clone());
        }
    }

    /// The token source, for OAuth and metadata-token credentials.
    pub fn oauth(&self) -> Option<&oauth::Source> {
        match &self.presented {
            Presented::OAuth(source) => Some(source),
            _ => None,
        }
    }

    /// Where the node's AWS role hands out keys, for an `awsMetadata` credential.
    pub fn imds(&self) -> Option<&sigv4::Imds> {
        match &self.presented {
            Presented::Imds(imds) => Some(imds),
            _ => None,
        }
    }

    /// AWS keys, for an `awsSigV4` credential.
    pub fn aws(&self) -> Option<&sigv4::AwsKeys> {
        match &self.presented {
            Presented::Aws(keys) => Some(keys),
            _ => None,
        }
    }
}

/// Removes every header a client could carry its own credential in.
pub fn strip_client_credentials(headers: &mut HeaderMap) {
    for h in CLIENT_CREDENTIAL_HEADERS {
        headers.remove(h);
    }
}

/// Reads a credential's value from its source.
fn read(c: &CredentialConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<String, Error> {
    if c.kind.from_metadata() {
        // Nothing secret: the source is the node's metadata service (and its URL, if set).
        return Ok(c.token_url.clone().unwrap_or_default());
    }
    match (&c.file, &c.env) {
        (Some(path), _) => std::fs::read_to_string(path).map_err(|source| Error::File {
            name: c.name.clone(),
            path: path.clone(),
            source,
        }),
        (None, Some(var)) => env(var).ok_or_else(|| Error::Env {
            name: c.name.clone(),
            var: var.clone(),
        }),
        (None, None) => Err(Error::Value { name: c.name.clone() }),
    }
}

/// All credentials by name. Re-read with [`Store::refresh`]; requests hold an `Arc<Loaded>`, so
/// a rotation never disturbs a request in flight.
#[derive(Default)]
pub struct Store {
    entries: RwLock<HashMap<String, Arc<Loaded>>>,
    /// Last load error per credential (shown on /readyz).
    errors: RwLock<HashMap<String, String>>,
}

impl Store {
    /// Loads (or reloads) every credential in `configs`, dropping those no longer configured.
    /// Returns the names whose value changed. A credential that fails to load keeps its last
    /// good value (if any) and its error is recorded.
    pub fn refresh(&self, configs: &[CredentialConfig], env: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
        let mut changed = Vec::new();
        let mut next = HashMap::new();
        let mut errors = HashMap::new();
        let current = self.entries.read().unwrap_or_else(|e| e.into_inner()).clone();
        for c in configs {
            match read(c, env).and_then(|v| Loaded::new(&c.name, c.kind, v)) {
                Ok(loaded) => {
                    let same = current
                        .get(&c.name)
                        .is_some_and(|old| old.secret == loaded.secret && old.kind == loaded.kind);
                    if same {
                        next.insert(c.name.clone(), current[&c.name].clone());
                    } else {
                        tracing::info!(credential = %c.name, fingerprint = %loaded.fingerprint, "credential loaded");
                        changed.push(c.name.clone());
                        next.insert(c.name.clone(), Arc::new(loaded));
                    }
                }
                Err(e) => {
                    tracing::warn!(credential = %c.name, error = %e, "credential not loaded");
                    errors.insert(c.name.clone(), e.to_string());
                    if let Some(old) = current.get(&c.name) {
                        next.insert(c.name.clone(), old.clone());
                    }
                }
            }
        }
        *self.entries.write().unwrap_or_else(|e| e.into_inner()) = next;
        *self.errors.write().unwrap_or_else(|e| e.into_inner()) = errors;
        changed
    }

    pub fn get(&self, name: &str) -> Option<Arc<Loaded>> {
        self.entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    pub fn errors(&self) -> HashMap<String, String> {
        self.errors.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(name: &str, kind: CredentialKind, file: Option<PathBuf>, env: Option<&str>) -> CredentialConfig {
        CredentialConfig {
            name: name.into(),
            kind,
            source: if file.is_some() { "file" } else { "env" },
            file,
            env: env.map(String::from),
            token_url: None,
        }
    }

    #[test]
    fn secrets_never_format_and_headers_are_right() {
        let l = Loaded::new("k", CredentialKind::Bearer, "sk-live-123\n".into()).unwrap();
        assert_eq!(format!("{:?} {}", l.secret, l.secret), "<redacted> <redacted>");
        assert!(!format!("{l:?}").contains("sk-live-123"));
        let mut h = HeaderMap::new();
        l.inject(&mut h);
        assert_eq!(h["authorization"], "Bearer sk-live-123");
        let a = Loaded::new("a", CredentialKind::XApiKey, "ant".into()).unwrap();
        a.inject(&mut h);
        assert_eq!(h["x-api-key"], "ant");
        assert!(l.fingerprint.starts_with("sha256:") && l.fingerprint.len() == 15);
        assert!(Loaded::new("e", CredentialKind::Bearer, "  \n".into()).is_err());
        assert!(Loaded::new("e", CredentialKind::Bearer, "bad\u{7f}value".into()).is_err());
    }

    #[test]
    fn refresh_picks_up_rotation_and_keeps_last_good_on_error() {
        let dir = std::env::temp_dir().join(format!("tollgate-cred-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("key");
        std::fs::write(&file, "one").unwrap();
        let store = Store::default();
        let configs = vec![
            cfg("f", CredentialKind::Bearer, Some(file.clone()), None),
            cfg("e", CredentialKind::XApiKey, None, Some("TOLLGATE_TEST_KEY")),
        ];
        let env = |v: &str| (v == "TOLLGATE_TEST_KEY").then(|| "from-env".to_string());
        assert_eq!(store.refresh(&configs, &env).len(), 2);
        let first = store.get("f").unwrap().fingerprint.clone();
        assert!(store.refresh(&configs, &env).is_empty(), "unchanged");
        std::fs::write(&file, "two").unwrap();
        assert_eq!(store.refresh(&configs, &env), vec!["f".to_string()]);
        assert_ne!(store.get("f").unwrap().fingerprint, first);
        std::fs::remove_file(&file).unwrap();
        assert!(store.refresh(&configs, &env).is_empty());
        assert!(store.get("f").is_some(), "last good value kept");
        assert!(store.errors()["f"].contains("cannot read"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
