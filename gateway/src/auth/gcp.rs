//! Google service-account credentials for Vertex AI: the key file a user downloads from GCP
//! (`{"type": "service_account", "client_email", "private_key", "token_uri", …}`) is turned
//! into short-lived OAuth access tokens by the JWT-bearer grant (RFC 7523) at the key's
//! `token_uri`, cached until five minutes before they expire. Neither the key nor a token is
//! ever printed.

use std::time::SystemTime;

use base64::Engine as _;
use ring::{
    rand::SystemRandom,
    signature::{RsaKeyPair, RSA_PKCS1_SHA256},
};
use rustls_pki_types::{pem::PemObject as _, PrivatePkcs8KeyDer};

/// The scope Vertex AI accepts.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

pub struct ServiceAccount {
    pub client_email: String,
    pub token_uri: String,
    key: RsaKeyPair,
    pub cache: super::oauth::TokenCache,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServiceAccount({}, <redacted>)", self.client_email)
    }
}

impl ServiceAccount {
    /// Parses a service-account key file. `None` when it is not one (or its key is unusable).
    pub fn parse(json: &str) -> Option<ServiceAccount> {
        let v: serde_json::Value = serde_json::from_str(json).ok()?;
        if v["type"] != "service_account" {
            return None;
        }
        let pem = v["private_key"].as_str()?;
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).ok()?;
        let key = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).ok()?;
        Some(ServiceAccount {
            client_email: v["client_email"].as_str()?.to_string(),
            token_uri: v["token_uri"]
                .as_str()
                .unwrap_or("https://oauth2.googleapis.com/token")
                .to_string(),
            key,
            cache: Default::default(),
        })
    }

    /// The signed JWT asserting this account, for the token endpoint.
    pub fn assertion(&self, now: SystemTime) -> String {
        let iat = now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = serde_json::json!({
            "iss": self.client_email, "scope": SCOPE, "aud": self.token_uri,
            "iat": iat, "exp": iat + 3600,
        });
        let claims = b64.encode(claims.to_string());
        let signing_input = format!("{header}.{claims}");
        let mut sig = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut sig,
            )
            .expect("RSA signing with a parsed key");
        format!("{signing_input}.{}", b64.encode(sig))
    }

    /// The body of the token request.
    pub fn token_request(&self, now: SystemTime) -> String {
        format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={}",
            self.assertion(now)
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A throwaway key made by `openssl genpkey -algorithm RSA` at test time.
    fn key_file(dir: &std::path::Path) -> Option<(String, Vec<u8>)> {
        let pem = dir.join("sa.pem");
        let der = dir.join("pub.der");
        let ok = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(&pem)
            .output()
            .ok()?
            .status
            .success()
            && std::process::Command::new("openssl")
                .args(["rsa", "-RSAPublicKey_out", "-outform", "DER", "-in"])
                .arg(&pem)
                .arg("-out")
                .arg(&der)
                .output()
                .ok()?
                .status
                .success();
        assert!(ok, "openssl failed");
        let json = serde_json::json!({"type": "service_account", "client_email": "sa@p.iam.gserviceaccount.com",
            "private_key": std::fs::read_to_string(&pem).unwrap(), "token_uri": "https://127.0.0.1:1/token"});
        Some((json.to_string(), std::fs::read(&der).unwrap()))
    }

    #[test]
    fn a_signed_assertion_verifies_with_the_public_key() {
        let dir = std::env::temp_dir().join(format!("tollgate-gcp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (json, public) = key_file(&dir).expect("openssl is installed by cargo xtask setup");
        let sa = ServiceAccount::parse(&json).unwrap();
        assert!(!format!("{sa:?}").contains("PRIVATE"));
        let jwt = sa.assertion(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let (input, sig) = jwt.rsplit_once('.').unwrap();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let key = ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, &public);
        key.verify(input.as_bytes(), &b64.decode(sig).unwrap()).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&b64.decode(input.split('.').nth(1).unwrap()).unwrap()).unwrap();
        assert_eq!(claims["iss"], "sa@p.iam.gserviceaccount.com");
        assert_eq!(claims["aud"], "https://127.0.0.1:1/token");
        assert_eq!(claims["scope"], SCOPE);
        assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 3600);

        assert!(ServiceAccount::parse(r#"{"type":"authorized_user"}"#).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
