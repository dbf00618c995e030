//! AWS Signature Version 4 for Bedrock backends, through AWS's own signer (`aws-sigv4`, the
//! crate the AWS SDK for Rust signs with). Tollgate keeps the keys (from a credential file or
//! environment variable, re-read on rotation) and the one rule the signer leaves to its
//! caller: the model id in the path is percent-encoded on the wire (`llm::translate::path_segment`); the
//! signer then encodes the path once more, as Bedrock expects. A request is signed after every
//! other change to it (translation, path, headers), so the signature covers exactly the bytes
//! that leave. The tests check this use of the signer against AWS's SigV4 test-suite vectors.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::{
    http_request::{self, PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings},
    sign::v4,
};
use aws_smithy_runtime_api::client::identity::Identity;
use http::{HeaderMap, HeaderValue};

/// AWS keys, from a credential of kind `awsSigV4` whose value is
/// `ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]`, or an AWS shared credentials file (its
/// `[default]` profile: what Envoy AI Gateway's `credentialsFile` Secret holds).
pub struct AwsKeys {
    pub access_key_id: String,
    /// The signer's identity (the secret and session token live only in here).
    identity: Identity,
}

impl AwsKeys {
    pub fn parse(value: &str) -> Option<AwsKeys> {
        if value.trim_start().starts_with('[') {
            return AwsKeys::parse_profile(value);
        }
        let mut parts = value.trim().splitn(3, ':');
        let id = parts.next().filter(|s| !s.is_empty())?;
        let secret = parts.next().filter(|s| !s.is_empty())?;
        let token = parts.next().filter(|s| !s.is_empty());
        let credentials = Credentials::new(id, secret, token.map(str::to_string), None, "tollgate");
        Some(AwsKeys {
            access_key_id: id.to_string(),
            identity: credentials.into(),
        })
    }
}

impl AwsKeys {
    /// The `[default]` profile of a shared credentials file (`aws_access_key_id`,
    /// `aws_secret_access_key`, `aws_session_token`).
    fn parse_profile(text: &str) -> Option<AwsKeys> {
        let (mut id, mut secret, mut token) = (None, None, None);
        let mut in_default = false;
        for line in text.lines().map(str::trim) {
            if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                in_default = section.trim() == "default";
                continue;
            }
            let Some((k, v)) = line.split_once('=').filter(|_| in_default) else {
                continue;
            };
            let v = Some(v.trim()).filter(|v| !v.is_empty() && !v.contains(':'));
            match k.trim() {
                "aws_access_key_id" => id = v,
                "aws_secret_access_key" => secret = v,
                "aws_session_token" => token = v,
                _ => {}
            }
        }
        let value = match token {
            Some(t) => format!("{}:{}:{t}", id?, secret?),
            None => format!("{}:{}", id?, secret?),
        };
        AwsKeys::parse(&value)
    }
}

impl std::fmt::Debug for AwsKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AwsKeys(<redacted>)")
    }
}

/// Where a node's AWS role hands out temporary keys, as the AWS SDKs look: a web identity
/// token traded at STS when `AWS_ROLE_ARN` and `AWS_WEB_IDENTITY_TOKEN_FILE` are set (EKS
/// IRSA), the container credentials endpoint when `AWS_CONTAINER_CREDENTIALS_FULL_URI` is set
/// (EKS Pod Identity, ECS), else the EC2 instance metadata service (IMDSv2: a session token
/// from `PUT /latest/api/token`, the role's name, then its keys).
/// Keys are kept [`IMDS_REFRESH`]: AWS makes new keys available at least five minutes before
/// the old ones expire.
pub struct Imds {
    pub base: String,
    /// The base was configured (`tokenUrl`): no container credentials endpoint is tried.
    pub explicit: bool,
    cache: std::sync::Mutex<Option<(std::sync::Arc<AwsKeys>, std::time::Instant)>>,
}

/// The metadata service's address on every EC2 instance.
pub const IMDS_URL: &str = "http://169.254.169.254";
/// How long keys from the metadata service are used before asking again.
pub const IMDS_REFRESH: std::time::Duration = std::time::Duration::from_secs(240);

impl std::fmt::Debug for Imds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Imds({})", self.base)
    }
}

impl Imds {
    pub fn new(base: Option<&str>) -> Imds {
        Imds {
            explicit: base.is_some(),
            base: base.unwrap_or(IMDS_URL).trim_end_matches('/').to_string(),
            cache: Default::default(),
        }
    }

    /// Keys still fresh enough to sign with.
    pub fn cached(&self) -> Option<std::sync::Arc<AwsKeys>> {
        let c = self.cache.lock().unwrap();
        c.as_ref()
            .filter(|(_, at)| at.elapsed() < IMDS_REFRESH)
            .map(|(k, _)| k.clone())
    }

    /// Reads STS's AssumeRoleWithWebIdentity answer (JSON, as asked with `Accept:
    /// application/json`) into the cache.
    /// STS's usual XML answer is read too.
    pub fn store_sts(&self, answer: &[u8]) -> Result<std::sync::Arc<AwsKeys>, String> {
        let keys = match serde_json::from_slice::<serde_json::Value>(answer) {
            Ok(v) => {
                let c = &v["AssumeRoleWithWebIdentityResponse"]["AssumeRoleWithWebIdentityResult"]["Credentials"];
                serde_json::json!({
                    "AccessKeyId": c["AccessKeyId"], "SecretAccessKey": c["SecretAccessKey"], "Token": c["SessionToken"],
                })
            }
            Err(_) => {
                let text = String::from_utf8_lossy(answer);
                let tag = |name: &str| {
                    let open = format!("<{name}>");
                    let start = text.find(&open)? + open.len();
                    let end = text[start..].find(&format!("</{name}>"))? + start;
                    Some(text[start..end].trim().to_string())
                };
                serde_json::json!({
                    "AccessKeyId": tag("AccessKeyId"), "SecretAccessKey": tag("SecretAccessKey"), "Token": tag("SessionToken"),
                })
            }
        };
        self.store(keys.to_string().as_bytes())
            .map_err(|e| e.replace("instance metadata", "STS"))
    }

    /// Reads the role's keys (`{"Code": "Success", "AccessKeyId", "SecretAccessKey", "Token"}`)
    /// into the cache.
    pub fn store(&self, answer: &[u8]) -> Result<std::sync::Arc<AwsKeys>, String> {
        let v: serde_json::Value =
            serde_json::from_slice(answer).map_err(|_| "instance metadata answered with no JSON".to_string())?;
        if v["Code"].as_str().is_some_and(|c| c != "Success") {
            return Err(format!("instance metadata: {}", v["Code"]));
        }
        let field = |k: &str| v[k].as_str().filter(|s| !s.is_empty());
        let (Some(id), Some(secret)) = (field("AccessKeyId"), field("SecretAccessKey")) else {
            return Err("instance metadata: no keys in the answer".into());
        };
        let credentials = Credentials::new(id, secret, field("Token").map(str::to_string), None, "tollgate-imds");
        let keys = std::sync::Arc::new(AwsKeys {
            access_key_id: id.to_string(),
            identity: credentials.into(),
        });
        *self.cache.lock().unwrap() = Some((keys.clone(), std::time::Instant::now()));
        Ok(keys)
    }
}

/// Why a request could not be signed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SignError(String);

/// The headers that sign a request (`x-amz-date`, `x-amz-content-sha256` when `settings` ask,
/// `x-amz-security-token` for temporary keys, `authorization`), with whether each is secret.
/// Only `host` and `headers` are signed besides them, so nothing a hop adds later can break
/// the signature.
#[allow(clippy::too_many_arguments)]
fn signing_headers(
    keys: &AwsKeys,
    region: &str,
    service: &str,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    now: SystemTime,
    settings: SigningSettings,
) -> Result<Vec<(&'static str, String, bool)>, SignError> {
    let params = v4::SigningParams::builder()
        .identity(&keys.identity)
        .region(region)
        .name(service)
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| SignError(e.to_string()))?
        .into();
    let request = SignableRequest::new(method, uri, headers.iter().copied(), SignableBody::Bytes(body))
        .map_err(|e| SignError(e.to_string()))?;
    let (instructions, _) = http_request::sign(request, &params)
        .map_err(|e| SignError(e.to_string()))?
        .into_parts();
    let (out, _params) = instructions.into_parts();
    Ok(out
        .into_iter()
        .map(|h| {
            (
                h.name(),
                h.value().to_string(),
                h.sensitive() || h.name() == "authorization",
            )
        })
        .collect())
}

/// Signs an upstream request in place: sets `host`, `x-amz-date`, `x-amz-content-sha256`,
/// `x-amz-security-token` (temporary keys) and `authorization`. The signature covers the
/// method, the path and query, `host` and the SHA-256 of `body` — the exact bytes sent.
#[allow(clippy::too_many_arguments)]
pub fn sign(
    keys: &AwsKeys,
    region: &str,
    service: &str,
    method: &http::Method,
    uri: &http::Uri,
    headers: &mut HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<(), SignError> {
    let host = uri.authority().map(|a| a.as_str()).unwrap_or_default();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let signed = signing_headers(
        keys,
        region,
        service,
        method.as_str(),
        &uri.to_string(),
        &[("host", host)],
        body,
        now,
        settings,
    )?;
    headers.insert(
        http::header::HOST,
        HeaderValue::from_str(host).map_err(|e| SignError(e.to_string()))?,
    );
    for (name, value, sensitive) in signed {
        let mut v = HeaderValue::from_str(&value).map_err(|e| SignError(e.to_string()))?;
        v.set_sensitive(sensitive);
        headers.insert(name, v);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2015-08-30T12:36:00Z, the test suite's time.
    fn suite_time() -> SystemTime {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_440_938_160)
    }

    fn suite(method: &str, path: &str, query: &str, extra: &[(&str, &str)]) -> String {
        let keys = AwsKeys::parse("AKIDEXAMPLE:wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY").unwrap();
        let mut headers = vec![("host", "example.amazonaws.com")];
        headers.extend_from_slice(extra);
        let q = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        let uri = format!("https://example.amazonaws.com{path}{q}");
        let signed = signing_headers(
            &keys,
            "us-east-1",
            "service",
            method,
            &uri,
            &headers,
            b"",
            suite_time(),
            SigningSettings::default(),
        )
        .unwrap();
        let date = signed.iter().find(|h| h.0 == "x-amz-date").unwrap();
        assert_eq!(date.1, "20150830T123600Z");
        signed.into_iter().find(|h| h.0 == "authorization").unwrap().1
    }

    fn signature(auth: &str) -> &str {
        auth.rsplit("Signature=").next().unwrap()
    }

    /// Vectors from AWS's Signature Version 4 test suite (get-vanilla, post-vanilla,
    /// get-vanilla-query-order-key-case, post-vanilla-query, post-header-value-case).
    #[test]
    fn the_aws_test_suite_vectors() {
        let a = suite("GET", "/", "", &[]);
        assert_eq!(
            a,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
        assert_eq!(
            signature(&suite("POST", "/", "", &[])),
            "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
        );
        assert_eq!(
            signature(&suite("GET", "/", "Param2=value2&Param1=value1", &[])),
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
        );
        assert_eq!(
            signature(&suite("POST", "/", "Param1=value1", &[])),
            "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11"
        );
        assert_eq!(
            signature(&suite("POST", "/", "", &[("My-Header1", "VALUE1")])),
            "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d"
        );
    }

    #[test]
    fn instance_role_keys_are_read_and_kept_for_a_while() {
        let imds = Imds::new(Some("http://127.0.0.1:9/"));
        assert_eq!(imds.base, "http://127.0.0.1:9");
        assert!(imds.cached().is_none());
        let k = imds
            .store(br#"{"Code":"Success","AccessKeyId":"ASIA1","SecretAccessKey":"s/cr+t","Token":"tok","Expiration":"2026-11-26T23:00:00Z"}"#)
            .unwrap();
        assert_eq!(k.access_key_id, "ASIA1");
        assert_eq!(k.identity.data::<Credentials>().unwrap().session_token(), Some("tok"));
        assert!(imds.cached().is_some());
        assert!(!format!("{imds:?} {k:?}").contains("s/cr+t"));
        assert!(imds.store(br#"{"Code":"Failure"}"#).is_err());
        // STS, JSON or XML.
        let k = imds
            .store_sts(br#"{"AssumeRoleWithWebIdentityResponse":{"AssumeRoleWithWebIdentityResult":{"Credentials":{"AccessKeyId":"ASIA2","SecretAccessKey":"s2","SessionToken":"t2"}}}}"#)
            .unwrap();
        assert_eq!(k.access_key_id, "ASIA2");
        let xml = b"<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>\
            <SessionToken>t3</SessionToken><SecretAccessKey>s3</SecretAccessKey><AccessKeyId>ASIA3</AccessKeyId>\
            </Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>";
        let k = imds.store_sts(xml).unwrap();
        assert_eq!(k.identity.data::<Credentials>().unwrap().session_token(), Some("t3"));
        assert!(imds
            .store_sts(b"<ErrorResponse><Error><Code>AccessDenied</Code></Error></ErrorResponse>")
            .is_err());
        assert!(imds.store(br#"{"Code":"Success"}"#).is_err());
    }

    #[test]
    fn keys_parse_and_never_print() {
        let k = AwsKeys::parse(" AKID:se/cr+et:tok\n").unwrap();
        assert_eq!(k.access_key_id, "AKID");
        let c = k.identity.data::<Credentials>().unwrap();
        assert_eq!(c.secret_access_key(), "se/cr+et");
        assert_eq!(c.session_token(), Some("tok"));
        assert!(!format!("{k:?}").contains("se/cr"));
        assert!(AwsKeys::parse("only-one").is_none());
        let file = "[other]\naws_access_key_id = OTHER\naws_secret_access_key = x\n\n[default]\naws_access_key_id = AKIDF\naws_secret_access_key = se/cr+et\naws_session_token = tok\n";
        assert_eq!(AwsKeys::parse(file).unwrap().access_key_id, "AKIDF");
        assert!(AwsKeys::parse("[other]\naws_access_key_id = A\naws_secret_access_key = B\n").is_none());
        assert!(AwsKeys::parse(":x").is_none());
    }

    #[test]
    fn a_bedrock_request_is_signed_over_its_encoded_path_with_the_session_token() {
        assert_eq!(
            crate::llm::translate::path_segment("anthropic.claude-3-haiku-20240307-v1:0"),
            "anthropic.claude-3-haiku-20240307-v1%3A0"
        );
        let keys = AwsKeys::parse("AKID:secret:session").unwrap();
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        let uri: http::Uri = "https://bedrock-runtime.us-east-1.amazonaws.com/model/m%3A0/converse"
            .parse()
            .unwrap();
        sign(
            &keys,
            "us-east-1",
            "bedrock",
            &http::Method::POST,
            &uri,
            &mut h,
            b"{}",
            suite_time(),
        )
        .unwrap();
        assert_eq!(h["host"], "bedrock-runtime.us-east-1.amazonaws.com");
        assert_eq!(h["x-amz-date"], "20150830T123600Z");
        assert_eq!(h["x-amz-security-token"], "session");
        assert!(h["x-amz-security-token"].is_sensitive() && h["authorization"].is_sensitive());
        assert_eq!(
            h["x-amz-content-sha256"],
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        let auth = h["authorization"].to_str().unwrap();
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/bedrock/aws4_request, "));
        assert!(
            auth.contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,"),
            "{auth}"
        );
    }
}
