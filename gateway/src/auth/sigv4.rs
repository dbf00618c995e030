//! AWS Signature Version 4 for Bedrock backends: the request Tollgate sends upstream is signed
//! with the node's AWS keys after every other change to it (translation, path, headers), so
//! the signature covers exactly the bytes that leave. Checked against the vectors of AWS's
//! Signature Version 4 test suite.

use std::time::SystemTime;

use http::{HeaderMap, HeaderValue};
use ring::hmac;
use sha2::{Digest, Sha256};

/// AWS keys, from a credential of kind `awsSigV4` whose value is
/// `ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]`.
pub struct AwsKeys {
    pub access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

impl AwsKeys {
    pub fn parse(value: &str) -> Option<AwsKeys> {
        let mut parts = value.trim().splitn(3, ':');
        let id = parts.next().filter(|s| !s.is_empty())?;
        let secret = parts.next().filter(|s| !s.is_empty())?;
        let token = parts.next().filter(|s| !s.is_empty());
        Some(AwsKeys {
            access_key_id: id.to_string(),
            secret_access_key: secret.to_string(),
            session_token: token.map(str::to_string),
        })
    }
}

impl std::fmt::Debug for AwsKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AwsKeys(<redacted>)")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
        .as_ref()
        .to_vec()
}

/// RFC 3986 percent-encoding as SigV4 wants it (unreserved characters kept; `/` kept in paths).
fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// One path segment as sent on the wire (a Bedrock model id such as
/// `anthropic.claude-3-haiku-20240307-v1:0`, or an ARN with `/`).
pub fn path_segment(s: &str) -> String {
    uri_encode(s, false)
}

/// `20150830T123600Z` for a point in time.
pub fn amz_date(t: SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        dt.year(),
        dt.month() as u8,
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}

/// The canonical query string: parameters sorted by encoded name, then value.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (uri_encode(&decode(k), false), uri_encode(&decode(v), false))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let digit = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(x), Some(y)) = (digit(b[i + 1]), digit(b[i + 2])) {
                out.push((x * 16 + y) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `Authorization` value for a request whose signed headers are `headers` (lower-case
/// names, any order), per the SigV4 algorithm. `path` is the path as sent on the wire;
/// services other than S3 encode it once more in the canonical request.
#[allow(clippy::too_many_arguments)]
pub fn authorization(
    keys: &AwsKeys,
    region: &str,
    service: &str,
    method: &str,
    path: &str,
    query: &str,
    headers: &[(String, String)],
    payload_sha256: &str,
    amz_date: &str,
) -> String {
    let mut headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.to_ascii_lowercase(),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect();
    headers.sort();
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed: String = headers.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(";");
    let path = if path.is_empty() { "/" } else { path };
    let canonical = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed}\n{payload_sha256}",
        method.to_ascii_uppercase(),
        uri_encode(path, true),
        canonical_query(query)
    );
    let day = &amz_date[..8.min(amz_date.len())];
    let scope = format!("{day}/{region}/{service}/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let k_date = hmac(format!("AWS4{}", keys.secret_access_key).as_bytes(), day);
    let k_region = hmac(&k_date, region);
    let k_service = hmac(&k_region, service);
    let k_signing = hmac(&k_service, "aws4_request");
    let signature = hex(&hmac(&k_signing, &to_sign));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
        keys.access_key_id
    )
}

/// Signs an upstream request in place: sets `host`, `x-amz-date`, `x-amz-content-sha256`,
/// `x-amz-security-token` (temporary keys) and `authorization`.
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
) -> Result<(), http::header::InvalidHeaderValue> {
    let host = uri.authority().map(|a| a.as_str()).unwrap_or_default();
    let date = amz_date(now);
    let payload = hex(&Sha256::digest(body));
    let mut signed = vec![
        ("host".to_string(), host.to_string()),
        ("x-amz-content-sha256".to_string(), payload.clone()),
        ("x-amz-date".to_string(), date.clone()),
    ];
    if let Some(t) = &keys.session_token {
        signed.push(("x-amz-security-token".to_string(), t.clone()));
    }
    let auth = authorization(
        keys,
        region,
        service,
        method.as_str(),
        uri.path(),
        uri.query().unwrap_or(""),
        &signed,
        &payload,
        &date,
    );
    for (k, v) in signed {
        let mut v = HeaderValue::from_str(&v)?;
        if k == "x-amz-security-token" {
            v.set_sensitive(true);
        }
        headers.insert(http::HeaderName::from_bytes(k.as_bytes()).expect("static names"), v);
    }
    let mut auth = HeaderValue::from_str(&auth)?;
    auth.set_sensitive(true);
    headers.insert(http::header::AUTHORIZATION, auth);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn suite(method: &str, path: &str, query: &str, extra: &[(&str, &str)]) -> String {
        let keys = AwsKeys::parse("AKIDEXAMPLE:wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY").unwrap();
        let mut headers = vec![
            ("host".to_string(), "example.amazonaws.com".to_string()),
            ("x-amz-date".to_string(), "20150830T123600Z".to_string()),
        ];
        headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        authorization(
            &keys,
            "us-east-1",
            "service",
            method,
            path,
            query,
            &headers,
            EMPTY,
            "20150830T123600Z",
        )
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
    fn keys_parse_and_never_print() {
        let k = AwsKeys::parse(" AKID:se/cr+et:tok\n").unwrap();
        assert_eq!(k.access_key_id, "AKID");
        assert_eq!(k.secret_access_key, "se/cr+et");
        assert_eq!(k.session_token.as_deref(), Some("tok"));
        assert!(!format!("{k:?}").contains("se/cr"));
        assert!(AwsKeys::parse("only-one").is_none());
        assert!(AwsKeys::parse(":x").is_none());
    }

    #[test]
    fn a_bedrock_model_id_path_is_encoded_again_and_dates_are_compact() {
        // `:` arrives as %3A on the wire and is signed as %253A, as AWS SDKs do.
        assert_eq!(
            uri_encode("/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse", true),
            "/model/anthropic.claude-3-haiku-20240307-v1%253A0/converse"
        );
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_440_938_160);
        assert_eq!(amz_date(t), "20150830T123600Z");
        let keys = AwsKeys::parse("AKID:secret:session").unwrap();
        let mut h = HeaderMap::new();
        let uri: http::Uri = "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/converse"
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
            t,
        )
        .unwrap();
        assert_eq!(h["host"], "bedrock-runtime.us-east-1.amazonaws.com");
        assert_eq!(h["x-amz-security-token"], "session");
        let auth = h["authorization"].to_str().unwrap();
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/bedrock/aws4_request, "));
        assert!(auth.contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,"));
    }
}
