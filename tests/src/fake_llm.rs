//! Fake LLM providers speaking the real wire formats (OpenAI chat completions JSON and SSE,
//! Anthropic messages JSON and SSE), over TLS with a test CA or plaintext, recording every
//! request they receive so tests can assert on credentials, models and bodies.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::{Body, Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use serde_json::{json, Value};

use crate::runtime;

/// A CA for the fake providers' own certificates (what the real providers' public CAs are to
/// Tollgate's upstream client: trusted through the backend's `caFile`).
pub struct TestCa {
    pub pem_path: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    ca_der: rustls::pki_types::CertificateDer<'static>,
}

impl TestCa {
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("fake provider CA {name}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).unwrap();
        std::fs::create_dir_all(dir).unwrap();
        let pem_path = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&pem_path, cert.pem()).unwrap();
        let ca_der = cert.der().clone();
        TestCa {
            pem_path,
            issuer: Issuer::new(params, key),
            ca_der,
        }
    }

    /// A server config with a leaf for `names` (DNS names or IP addresses).
    pub fn server_config(&self, names: &[&str]) -> Arc<rustls::ServerConfig> {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone(), self.ca_der.clone()], key_der)
            .unwrap();
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(cfg)
    }
}

/// The Entra application the fake token endpoint accepts, as a credential file holds it
/// (`authorityHost` is appended by the test), and its secret form-encoded.
pub const ENTRA_APP: &str = r#""tenantId": "contoso", "clientId": "tollgate-app", "clientSecret": "entra~Secret+1""#;
const ENTRA_SECRET_FORM: &str = "entra~Secret%2B1";

/// AWS keys the fake Bedrock accepts (`ACCESS_KEY_ID:SECRET`, as a credential file holds them).
pub const BEDROCK_KEYS: &str = "AKIDTOLLGATETEST:tollgate/Test+Secret/Key";

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Checks a request's AWS Signature Version 4 as Bedrock would: the signature must cover
/// the method, the path as it arrived (encoded once more), the signed headers' values and the
/// SHA-256 of the body that arrived, with the fake's secret. Returns why not, if not.
fn sigv4_mismatch(parts: &hyper::http::request::Parts, body: &[u8]) -> Option<String> {
    use ring::{digest, hmac};
    let (key_id, secret) = BEDROCK_KEYS.split_once(':').unwrap();
    let header = |n: &str| parts.headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let auth = header("authorization");
    let field = |name: &str| {
        auth.split([' ', ','])
            .find_map(|p| p.strip_prefix(name))
            .unwrap_or("")
            .to_string()
    };
    let (credential, signed, signature) = (field("Credential="), field("SignedHeaders="), field("Signature="));
    if !auth.starts_with("AWS4-HMAC-SHA256 ") {
        return Some(format!("no SigV4 authorization: {auth:?}"));
    }
    let scope: Vec<&str> = credential.split('/').collect();
    if scope.len() != 5 || scope[0] != key_id || scope[4] != "aws4_request" {
        return Some(format!("bad credential scope {credential:?}"));
    }
    let payload = hex(digest::digest(&digest::SHA256, body).as_ref());
    if header("x-amz-content-sha256") != payload {
        return Some("x-amz-content-sha256 does not match the body".into());
    }
    let canonical_headers: String = signed
        .split(';')
        .map(|h| format!("{h}:{}\n", header(h).trim()))
        .collect();
    let mut uri = String::new();
    for b in parts.uri.path().bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => uri.push(b as char),
            _ => uri.push_str(&format!("%{b:02X}")),
        }
    }
    let canonical = format!(
        "{}\n{uri}\n{}\n{canonical_headers}\n{signed}\n{payload}",
        parts.method,
        parts.uri.query().unwrap_or("")
    );
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{}\n{}",
        header("x-amz-date"),
        scope[1..].join("/"),
        hex(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
    );
    let mac = |k: &[u8], d: &str| hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, k), d.as_bytes());
    let mut key = mac(format!("AWS4{secret}").as_bytes(), scope[1]).as_ref().to_vec();
    for part in [scope[2], scope[3], "aws4_request"] {
        key = mac(&key, part).as_ref().to_vec();
    }
    let expected = hex(mac(&key, &to_sign).as_ref());
    (expected != signature)
        .then(|| "The request signature we calculated does not match the signature you provided".into())
}

/// One AWS event-stream message (Bedrock's ConverseStream framing): prelude with its CRC32,
/// string headers, the JSON payload, the message CRC32.
fn aws_event(event_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    for (k, v) in [
        (":event-type", event_type),
        (":content-type", "application/json"),
        (":message-type", "event"),
    ] {
        h.push(k.len() as u8);
        h.extend_from_slice(k.as_bytes());
        h.push(7);
        h.extend_from_slice(&(v.len() as u16).to_be_bytes());
        h.extend_from_slice(v.as_bytes());
    }
    let total = 16 + h.len() + payload.len();
    let mut m = Vec::with_capacity(total);
    m.extend_from_slice(&(total as u32).to_be_bytes());
    m.extend_from_slice(&(h.len() as u32).to_be_bytes());
    m.extend_from_slice(&crc32fast::hash(&m).to_be_bytes());
    m.extend_from_slice(&h);
    m.extend_from_slice(payload);
    m.extend_from_slice(&crc32fast::hash(&m).to_be_bytes());
    m
}

/// Checks a JWT-bearer token request: the assertion's RS256 signature against `public_key`
/// and its claims. Returns the issuer.
fn verify_assertion(form: &[u8], public_key: Option<&[u8]>) -> Result<String, String> {
    use base64::Engine as _;
    let form = String::from_utf8_lossy(form);
    let field = |k: &str| form.split('&').find_map(|p| p.strip_prefix(k)).unwrap_or("");
    if field("grant_type=") != "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer" {
        return Err("unsupported grant_type".into());
    }
    let jwt = field("assertion=");
    let (input, sig) = jwt.rsplit_once('.').ok_or("malformed assertion")?;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let key = public_key.ok_or("no key configured")?;
    ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, key)
        .verify(
            input.as_bytes(),
            &b64.decode(sig).map_err(|_| "bad signature encoding")?,
        )
        .map_err(|_| "Invalid JWT Signature.")?;
    let claims: Value = input
        .split('.')
        .nth(1)
        .and_then(|c| b64.decode(c).ok())
        .and_then(|c| serde_json::from_slice(&c).ok())
        .ok_or("bad claims")?;
    if claims["scope"] != "https://www.googleapis.com/auth/cloud-platform"
        || !claims["aud"].as_str().unwrap_or("").ends_with("/token")
    {
        return Err(format!("bad claims {claims}"));
    }
    Ok(claims["iss"].as_str().unwrap_or("").to_string())
}

/// The client secret the fake authorization server (`/oauth/token`) accepts.
pub const OAUTH_CLIENT_SECRET: &str = "mcp-client-secret";

/// The token an EKS Pod Identity agent fake accepts (what the token file holds).
pub const EKS_POD_IDENTITY_TOKEN: &str = "eyJhbGciOi.fake-eks-pod-identity-token";

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub query: String,
    pub version: String,
    pub headers: HashMap<String, String>,
    pub body: Value,
    /// A multipart body's fields and files.
    pub form: Option<crate::fake_media::Form>,
    /// Bytes of the body as received.
    pub body_len: usize,
    /// For streams with a gate: whether the client opened it before the fake gave up.
    gate: Arc<Mutex<Option<bool>>>,
}

impl Received {
    /// For a gated stream: `Some(true)` when the client saw the first chunk (and opened the
    /// gate) while the fake still held the rest back.
    pub fn gate_opened(&self) -> Option<bool> {
        *self.gate.lock().unwrap()
    }
}

/// How the fake answers.
#[derive(Clone, Debug, Default)]
pub struct Script {
    /// Answer with this status and an error body in the provider's shape.
    pub status: Option<u16>,
    /// Wait this long before sending response headers.
    pub delay: Option<Duration>,
    /// Streams: after the first content chunk, wait until this file exists before sending
    /// the rest (the client creates it when it has seen the first chunk).
    pub gate: Option<PathBuf>,
    /// Streams: after the first chunks, break the response (an upstream reset mid-stream).
    pub reset_after_first: bool,
    /// Close the connection without any response (a reset before headers).
    pub reset_before_headers: bool,
    /// With `status`: a `Retry-After` header (seconds).
    pub retry_after: Option<u64>,
    /// OAuth token endpoint (`POST /token`): the RSA public key (PKCS#1 DER) service-account
    /// assertions must verify with. Tokens it issues are what Vertex paths accept.
    pub jwt_public_key: Option<Vec<u8>>,
}

/// A fake provider endpoint.
pub struct FakeLlm {
    pub addr: SocketAddr,
    /// Name that appears in every answer ("hello from NAME").
    pub name: String,
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<Script>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeLlm {
    /// Listens on `ip:0`, with TLS when `tls` is given.
    pub fn start(name: &str, ip: &str, tls: Option<Arc<rustls::ServerConfig>>) -> FakeLlm {
        FakeLlm::start_on(name, &format!("{ip}:0"), tls)
    }

    /// Listens on `addr` (`ip:port`).
    pub fn start_on(name: &str, addr: &str, tls: Option<Arc<rustls::ServerConfig>>) -> FakeLlm {
        let addr: SocketAddr = addr.parse().unwrap();
        let listener = runtime()
            .block_on(tokio::net::TcpListener::bind(addr))
            .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(Script::default()));
        let (rec, scr, nm) = (received.clone(), script.clone(), name.to_string());
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let task = runtime().spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (rec, scr, nm, acceptor) = (rec.clone(), scr.clone(), nm.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let (rec, scr, nm) = (rec.clone(), scr.clone(), nm.clone());
                        async move { answer(req, &nm, &rec, &scr).await }
                    });
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match acceptor {
                        Some(a) => {
                            if let Ok(tls) = a.accept(stream).await {
                                let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                            }
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
        });
        FakeLlm {
            addr,
            name: name.to_string(),
            received,
            script,
            task,
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn set_script(&self, script: Script) {
        *self.script.lock().unwrap() = script;
    }

    /// `https://ip:port` (or `http://` for a plaintext fake).
    pub fn url(&self, tls: bool) -> String {
        format!("{}://{}", if tls { "https" } else { "http" }, self.addr)
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A response body fed from a channel, so chunks leave when the fake sends them; an `Err`
/// breaks the response mid-way.
struct ChannelBody(tokio::sync::mpsc::Receiver<Result<Bytes, BoxError>>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }
}

type FakeBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

fn json_response(status: u16, v: Value) -> hyper::Response<FakeBody> {
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-request-id", "req_fake")
        .body(
            http_body_util::Full::new(Bytes::from(v.to_string()))
                .map_err(|never| match never {})
                .boxed(),
        )
        .unwrap()
}

async fn answer(
    req: hyper::Request<Incoming>,
    name: &str,
    received: &Mutex<Vec<Received>>,
    script: &Mutex<Script>,
) -> Result<hyper::Response<FakeBody>, std::io::Error> {
    let script_now = script.lock().unwrap().clone();
    let resp = respond(req, name, received, script).await;
    if script_now.reset_before_headers {
        // An error from the service makes hyper drop the connection without answering.
        return Err(std::io::Error::other("reset before headers on purpose"));
    }
    Ok(resp)
}

async fn respond(
    req: hyper::Request<Incoming>,
    name: &str,
    received: &Mutex<Vec<Received>>,
    script: &Mutex<Script>,
) -> hyper::Response<FakeBody> {
    let (parts, body) = req.into_parts();
    let bytes = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let sigv4 = parts
        .uri
        .path()
        .starts_with("/model/")
        .then(|| sigv4_mismatch(&parts, &bytes))
        .flatten();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let form = parts
        .headers
        .get("content-type")
        .and_then(|t| t.to_str().ok())
        .filter(|t| t.starts_with("multipart/form-data"))
        .and_then(|t| crate::fake_media::parse_form(t, &bytes));
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let gate_slot = Arc::new(Mutex::new(None));
    received.lock().unwrap().push(Received {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        version: format!("{:?}", parts.version),
        headers,
        body: body.clone(),
        form: form.clone(),
        body_len: bytes.len(),
        gate: gate_slot.clone(),
    });
    let script = script.lock().unwrap().clone();
    if let Some(d) = script.delay {
        tokio::time::sleep(d).await;
    }
    let anthropic = parts.uri.path().starts_with("/v1/messages");
    if let Some(status) = script.status {
        let v = if anthropic {
            json!({"type":"error","error":{"type":"api_error","message":format!("{name} failed on purpose")}})
        } else if parts.uri.path().starts_with("/model/") {
            // Bedrock: the exception's name in a header, its message in the body.
            json!({"message": format!("{name} failed on purpose")})
        } else {
            json!({"error":{"message":format!("{name} failed on purpose"),"type":"server_error","param":null,"code":null}})
        };
        let mut resp = json_response(status, v);
        if let Some(secs) = script.retry_after {
            resp.headers_mut()
                .insert("retry-after", secs.to_string().parse().unwrap());
        }
        return resp;
    }
    let model = body["model"].as_str().unwrap_or("unknown").to_string();
    let stream = body["stream"].as_bool().unwrap_or(false);
    // The answer's text, whole and as a stream's first and last pieces: after a tool result,
    // the weather it reported; otherwise a greeting.
    let step = tool_step(parts.uri.path(), &body);
    let (head, tail) = match &step {
        Some(ToolStep::Answer(result)) => ("the weather", format!(" in Paris is {result}")),
        _ => ("hello", format!(" from {name}")),
    };
    let full = format!("{head}{tail}");
    if let Some(ToolStep::Call(tool)) = &step {
        return tool_call_response(parts.uri.path(), &model, tool, stream, &script, gate_slot);
    }
    // Bedrock Converse / ConverseStream, SigV4-signed.
    if parts.uri.path().starts_with("/model/") {
        if let Some(why) = sigv4 {
            return json_response(403, json!({"message": why}));
        }
        // Titan Text Embeddings (InvokeModel): one text per call. Values follow the text's
        // length, so tests can tell which answer went where; tokens are its words.
        if parts.uri.path().ends_with("/invoke") {
            let text = body["inputText"].as_str().unwrap_or("");
            let dims = body["dimensions"].as_u64().unwrap_or(4) as usize;
            let values: Vec<f64> = (0..dims).map(|d| (text.len() + d) as f64 / 8.0).collect();
            return json_response(
                200,
                json!({"embedding": values, "inputTextTokenCount": text.split_whitespace().count(),
                       "embeddingsByType": {"float": values}}),
            );
        }
        if parts.uri.path().ends_with("/converse-stream") {
            let ev = |t: &str, v: Value| Bytes::from(aws_event(t, v.to_string().as_bytes()));
            let first = vec![
                ev("messageStart", json!({"role": "assistant", "p": "abcdefgh"})),
                ev(
                    "contentBlockDelta",
                    json!({"contentBlockIndex": 0, "delta": {"text": head}, "p": "ab"}),
                ),
            ];
            let rest = vec![
                ev(
                    "contentBlockDelta",
                    json!({"contentBlockIndex": 0, "delta": {"text": tail}}),
                ),
                ev("contentBlockStop", json!({"contentBlockIndex": 0})),
                ev("messageStop", json!({"stopReason": "end_turn"})),
                ev(
                    "metadata",
                    json!({"usage": {"inputTokens": 11, "outputTokens": 6, "totalTokens": 17},
                                      "metrics": {"latencyMs": 40}}),
                ),
            ];
            let mut resp = stream_response(first, rest, &script, gate_slot);
            resp.headers_mut()
                .insert("content-type", "application/vnd.amazon.eventstream".parse().unwrap());
            return resp;
        }
        return json_response(
            200,
            json!({"output": {"message": {"role": "assistant", "content": [{"text": full}]}},
                   "stopReason": "end_turn", "usage": {"inputTokens": 11, "outputTokens": 6, "totalTokens": 17},
                   "metrics": {"latencyMs": 42}}),
        );
    }
    // Metadata services: the GCP metadata server and Azure IMDS hand out the node's own
    // tokens to callers that send their header.
    let header = |n: &str| parts.headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    if parts.uri.path() == "/computeMetadata/v1/instance/service-accounts/default/token" {
        return if parts.method == hyper::Method::GET && header("metadata-flavor") == "Google" {
            json_response(
                200,
                json!({"access_token": "ya29.fake-metadata-default", "expires_in": 3599, "token_type": "Bearer"}),
            )
        } else {
            json_response(403, json!({"error": "Missing Metadata-Flavor:Google header."}))
        };
    }
    // STS AssumeRoleWithWebIdentity (IRSA), answered in JSON when asked for it.
    if parts.uri.path() == "/" && String::from_utf8_lossy(&bytes).contains("Action=AssumeRoleWithWebIdentity") {
        let form = String::from_utf8_lossy(&bytes).to_string();
        let ok = form.contains("RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Ftollgate")
            && form.contains(&format!("WebIdentityToken={EKS_POD_IDENTITY_TOKEN}"));
        if !ok || header("accept") != "application/json" {
            return json_response(
                400,
                json!({"Error": {"Code": "InvalidIdentityToken", "Message": "bad request"}}),
            );
        }
        let (id, secret) = BEDROCK_KEYS.split_once(':').unwrap();
        return json_response(
            200,
            json!({"AssumeRoleWithWebIdentityResponse": {"AssumeRoleWithWebIdentityResult": {"Credentials": {
                "AccessKeyId": id, "SecretAccessKey": secret, "SessionToken": "irsa-session-token", "Expiration": 1795700000}}}}),
        );
    }
    // Container credentials (EKS Pod Identity agent): keys for the pod's token.
    if parts.uri.path() == "/v1/credentials" {
        if header("authorization") != EKS_POD_IDENTITY_TOKEN {
            return json_response(401, json!({"error": "invalid token"}));
        }
        let (id, secret) = BEDROCK_KEYS.split_once(':').unwrap();
        return json_response(
            200,
            json!({"AccessKeyId": id, "SecretAccessKey": secret, "Token": "pod-identity-session-token",
                   "AccountId": "123456789012", "Expiration": "2026-11-26T23:59:59Z"}),
        );
    }
    // EC2 instance metadata (IMDSv2): a session token, then the role, then its keys.
    const IMDS_TOKEN: &str = "imds-session-token-1";
    if parts.uri.path() == "/latest/api/token" {
        return if parts.method == hyper::Method::PUT && !header("x-aws-ec2-metadata-token-ttl-seconds").is_empty() {
            hyper::Response::new(
                http_body_util::Full::new(Bytes::from_static(IMDS_TOKEN.as_bytes()))
                    .map_err(|e| match e {})
                    .boxed(),
            )
        } else {
            json_response(400, json!({"error": "IMDSv2 wants PUT with a TTL"}))
        };
    }
    if let Some(role) = parts
        .uri
        .path()
        .strip_prefix("/latest/meta-data/iam/security-credentials/")
    {
        if header("x-aws-ec2-metadata-token") != IMDS_TOKEN {
            return json_response(401, json!({"error": "no IMDSv2 session token"}));
        }
        if role.is_empty() {
            return hyper::Response::new(
                http_body_util::Full::new(Bytes::from_static(b"tollgate-node-role"))
                    .map_err(|e| match e {})
                    .boxed(),
            );
        }
        let (id, secret) = BEDROCK_KEYS.split_once(':').unwrap();
        return json_response(
            200,
            json!({"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": id, "SecretAccessKey": secret,
                   "Token": "imds-session-credentials-token", "Expiration": "2026-11-26T23:59:59Z"}),
        );
    }
    if parts.uri.path() == "/metadata/identity/oauth2/token" {
        let resource_ok = parts
            .uri
            .query()
            .unwrap_or("")
            .contains("resource=https%3A%2F%2Fcognitiveservices.azure.com");
        return if parts.method == hyper::Method::GET && header("metadata") == "true" && resource_ok {
            // IMDS sends expires_in as a string.
            json_response(
                200,
                json!({"access_token": "eyJ0eXAi.fake-entra-msi", "expires_in": "3599", "expires_on": "1795690000",
                       "resource": "https://cognitiveservices.azure.com", "token_type": "Bearer"}),
            )
        } else {
            json_response(
                400,
                json!({"error": "invalid_request", "error_description": "Required metadata header not specified"}),
            )
        };
    }
    // OAuth token endpoint (JWT-bearer grant), as Google's.
    if parts.uri.path() == "/token" {
        return match verify_assertion(&bytes, script.jwt_public_key.as_deref()) {
            Ok(iss) => json_response(
                200,
                json!({"access_token": format!("ya29.fake-{iss}"), "expires_in": 3599, "token_type": "Bearer"}),
            ),
            Err(why) => json_response(400, json!({"error": "invalid_grant", "error_description": why})),
        };
    }
    // A generic authorization server (client-credentials grant, RFC 6749 §4.4): tokens name
    // the client and scope they were issued for.
    if parts.uri.path() == "/oauth/token" {
        let field = |k: &str| form_field(&bytes, k);
        return if field("grant_type=") == "client_credentials" && field("client_secret=") == OAUTH_CLIENT_SECRET {
            json_response(
                200,
                json!({"token_type": "Bearer", "expires_in": 3600,
                       "access_token": format!("oauth-{}-{}", field("client_id="), field("scope="))}),
            )
        } else {
            json_response(401, json!({"error": "invalid_client"}))
        };
    }
    // Azure Entra ID token endpoint (client-credentials grant).
    if let Some(tenant) = parts.uri.path().strip_suffix("/oauth2/v2.0/token") {
        let field = |k: &str| form_field(&bytes, k);
        let ok = field("grant_type=") == "client_credentials"
            && field("client_secret=") == ENTRA_SECRET_FORM
            && field("scope=") == "https%3A%2F%2Fcognitiveservices.azure.com%2F.default";
        return if ok {
            json_response(
                200,
                json!({"token_type": "Bearer", "expires_in": 3599, "access_token": format!("eyJ0eXAi.fake-entra{tenant}-{}", field("client_id="))}),
            )
        } else {
            json_response(
                401,
                json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."}),
            )
        };
    }
    // Azure OpenAI with Entra: only tokens this fake issued.
    if parts.uri.path().starts_with("/openai/deployments/") {
        if let Some(auth) = parts.headers.get("authorization").and_then(|v| v.to_str().ok()) {
            if !auth.starts_with("Bearer eyJ0eXAi.fake-entra") {
                return json_response(
                    401,
                    json!({"error": {"code": "401", "message": "Access denied due to invalid subscription key or wrong API endpoint."}}),
                );
            }
        }
    }
    // Vertex AI: Gemini bodies on project paths, OAuth bearer tokens this fake issued.
    let vertex = parts
        .uri
        .path()
        .split_once("/publishers/google/models/")
        .map(|(_, r)| r);
    if vertex.is_some()
        && !parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("Bearer ya29.fake-"))
    {
        return json_response(
            401,
            json!({"error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}}),
        );
    }
    // Gemini API: generateContent / streamGenerateContent?alt=sse.
    if let Some(rest) = parts.uri.path().strip_prefix("/v1beta/models/").or(vertex) {
        let (gmodel, method) = rest.split_once(':').unwrap_or((rest, ""));
        let usage = json!({"promptTokenCount": 8, "candidatesTokenCount": 5, "totalTokenCount": 13});
        let candidate = |text: &str, finish: Option<&str>| {
            let mut c = json!({"content": {"role": "model", "parts": [{"text": text}]}, "index": 0});
            if let Some(f) = finish {
                c["finishReason"] = json!(f);
            }
            c
        };
        // Vertex text embedding models (`:predict`); gemini-embedding-* take one instance.
        if method == "predict" {
            let instances = body["instances"].as_array().cloned().unwrap_or_default();
            if gmodel.starts_with("gemini-embedding") && instances.len() != 1 {
                return json_response(
                    400,
                    json!({"error": {"code": 400, "message": "Only one instance per request is supported.", "status": "INVALID_ARGUMENT"}}),
                );
            }
            let dims = body["parameters"]["outputDimensionality"].as_u64().unwrap_or(4) as usize;
            let predictions: Vec<Value> = instances
                .iter()
                .map(|i| {
                    let text = i["content"].as_str().unwrap_or("");
                    let values: Vec<f64> = (0..dims).map(|d| (text.len() + d) as f64 / 8.0).collect();
                    json!({"embeddings": {"values": values,
                           "statistics": {"token_count": text.split_whitespace().count(), "truncated": false}}})
                })
                .collect();
            return json_response(
                200,
                json!({"predictions": predictions, "metadata": {"billableCharacterCount": 20}}),
            );
        }
        if method == "batchEmbedContents" {
            let n = body["requests"].as_array().map_or(0, Vec::len);
            let dims = body["requests"][0]["outputDimensionality"].as_u64().unwrap_or(4) as usize;
            let embeddings: Vec<Value> = (0..n)
                .map(|i| json!({"values": (0..dims).map(|d| (i * 10 + d) as f64 / 8.0).collect::<Vec<_>>()}))
                .collect();
            return json_response(200, json!({"embeddings": embeddings}));
        }
        if method == "generateContent" {
            return json_response(
                200,
                json!({"candidates": [candidate(&full, Some("STOP"))], "usageMetadata": usage,
                       "modelVersion": gmodel, "responseId": "gem-1"}),
            );
        }
        let sse = |v: &Value| Bytes::from(format!("data: {v}\r\n\r\n"));
        let first = vec![sse(
            &json!({"candidates": [candidate(head, None)], "modelVersion": gmodel}),
        )];
        let rest = vec![sse(
            &json!({"candidates": [candidate(&tail, Some("STOP"))], "usageMetadata": usage, "modelVersion": gmodel}),
        )];
        return stream_response(first, rest, &script, gate_slot);
    }
    // Azure OpenAI deployment paths, and the API bases of OpenAI-compatible providers (Groq's
    // `/openai/v1`, OpenRouter's `/api/v1`… as in the provider catalog), answer like the OpenAI API.
    const COMPATIBLE_BASES: [&str; 6] = [
        "/openai/v1",
        "/v1/openai",
        "/inference/v1",
        "/api/v1",
        "/v1beta/openai",
        "/compatibility/v1",
    ];
    let compatible = COMPATIBLE_BASES
        .iter()
        .find_map(|b| parts.uri.path().strip_prefix(b))
        .map(|rest| format!("/v1{rest}"));
    let deployment = parts
        .uri
        .path()
        .strip_prefix("/openai/deployments/")
        .and_then(|r| r.find('/').map(|i| format!("/v1{}", &r[i..])));
    let path = match parts.uri.path() {
        _ if deployment.is_some() => deployment.as_deref().unwrap_or_default(),
        p => compatible.as_deref().unwrap_or(p),
    };
    if let Some(answer) = crate::fake_media::answer(path, &body, form.as_ref(), name) {
        return media_response(answer, &script, gate_slot);
    }
    match (path, stream) {
        ("/v1/chat/completions", false) => json_response(
            200,
            json!({
                "id": "chatcmpl-fake", "object": "chat.completion", "created": 1764100000, "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": full, "refusal": null},
                             "logprobs": null, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}
            }),
        ),
        ("/v1/chat/completions", true) => {
            let include_usage = body["stream_options"]["include_usage"].as_bool().unwrap_or(false);
            // As the API does: with include_usage every chunk carries `"usage":null`, and a last
            // chunk with empty choices carries the usage.
            let chunk = |delta: Value, finish: Value| {
                let mut c = json!({"id":"chatcmpl-fake","object":"chat.completion.chunk","created":1764100000,"model":model,
                       "system_fingerprint":"fp_fake","choices":[{"index":0,"delta":delta,"logprobs":null,"finish_reason":finish}]});
                if include_usage {
                    c["usage"] = Value::Null;
                }
                c
            };
            let first = [
                chunk(json!({"role":"assistant","content":""}), Value::Null),
                chunk(json!({"content":head}), Value::Null),
            ];
            let mut rest = vec![
                chunk(json!({"content":tail}), Value::Null),
                chunk(json!({}), json!("stop")),
            ];
            if include_usage {
                rest.push(json!({"id":"chatcmpl-fake","object":"chat.completion.chunk","created":1764100000,"model":model,
                    "system_fingerprint":"fp_fake","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}}));
            }
            let sse = |v: &Value| Bytes::from(format!("data: {v}\n\n"));
            let first: Vec<Bytes> = first.iter().map(sse).collect();
            let mut rest: Vec<Bytes> = rest.iter().map(sse).collect();
            rest.push(Bytes::from_static(b"data: [DONE]\n\n"));
            stream_response(first, rest, &script, gate_slot)
        }
        // The Responses API (JSON), as OpenAI and Azure's v1 API answer it.
        ("/v1/responses", false) => json_response(
            200,
            json!({
                "id": "resp_fake", "object": "response", "created_at": 1764100000, "status": "completed",
                "error": null, "incomplete_details": null, "instructions": null, "max_output_tokens": null,
                "model": model, "parallel_tool_calls": true, "previous_response_id": null,
                "reasoning": {"effort": null, "summary": null}, "store": true, "temperature": 1.0,
                "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": 1.0,
                "truncation": "disabled", "user": null, "metadata": {},
                "output": [{"id": "msg_fake", "type": "message", "status": "completed", "role": "assistant",
                            "content": [{"type": "output_text", "text": full, "annotations": [], "logprobs": []}]}],
                "usage": {"input_tokens": 9, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 4,
                          "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 13}
            }),
        ),
        // The Responses API streamed: OpenAI's events in their order, usage in the last.
        ("/v1/responses", true) => {
            let resp = |status: &str, output: Value, usage: Value| {
                json!({"id": "resp_fake", "object": "response", "created_at": 1764100000, "status": status,
                       "error": null, "incomplete_details": null, "model": model, "output": output,
                       "parallel_tool_calls": true, "tool_choice": "auto", "tools": [], "store": true,
                       "temperature": 1.0, "top_p": 1.0, "text": {"format": {"type": "text"}}, "metadata": {},
                       "usage": usage})
            };
            let part = |text: &str| json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []});
            let item = |status: &str, content: Value| json!({"id": "msg_fake", "type": "message", "status": status, "role": "assistant", "content": content});
            let done_item = item("completed", json!([part(&full)]));
            let events = [
                json!({"type": "response.created", "response": resp("in_progress", json!([]), Value::Null)}),
                json!({"type": "response.in_progress", "response": resp("in_progress", json!([]), Value::Null)}),
                json!({"type": "response.output_item.added", "output_index": 0, "item": item("in_progress", json!([]))}),
                json!({"type": "response.content_part.added", "item_id": "msg_fake", "output_index": 0, "content_index": 0, "part": part("")}),
                json!({"type": "response.output_text.delta", "item_id": "msg_fake", "output_index": 0, "content_index": 0, "delta": head, "logprobs": []}),
                json!({"type": "response.output_text.delta", "item_id": "msg_fake", "output_index": 0, "content_index": 0, "delta": tail, "logprobs": []}),
                json!({"type": "response.output_text.done", "item_id": "msg_fake", "output_index": 0, "content_index": 0, "text": full, "logprobs": []}),
                json!({"type": "response.content_part.done", "item_id": "msg_fake", "output_index": 0, "content_index": 0, "part": part(&full)}),
                json!({"type": "response.output_item.done", "output_index": 0, "item": done_item.clone()}),
                json!({"type": "response.completed", "response": resp("completed", json!([done_item]),
                    json!({"input_tokens": 9, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 4,
                           "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 13}))}),
            ];
            let sse: Vec<Bytes> = events
                .iter()
                .enumerate()
                .map(|(n, e)| {
                    let mut e = e.clone();
                    e["sequence_number"] = json!(n);
                    Bytes::from(format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap()))
                })
                .collect();
            let (first, rest) = sse.split_at(5);
            stream_response(first.to_vec(), rest.to_vec(), &script, gate_slot)
        }
        ("/v1/messages", false) => json_response(
            200,
            json!({
                "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": full}],
                "stop_reason": "end_turn", "stop_sequence": null,
                "usage": {"input_tokens": 10, "output_tokens": 4, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
            }),
        ),
        ("/v1/messages", true) => {
            let ev = |event: &str, v: Value| Bytes::from(format!("event: {event}\ndata: {v}\n\n"));
            let first = vec![
                ev(
                    "message_start",
                    json!({"type":"message_start","message":{"id":"msg_fake","type":"message","role":"assistant",
                    "model":model,"content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":1}}}),
                ),
                ev(
                    "content_block_start",
                    json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
                ),
                ev(
                    "content_block_delta",
                    json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":head}}),
                ),
            ];
            let rest = vec![
                ev(
                    "content_block_delta",
                    json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":tail}}),
                ),
                ev("content_block_stop", json!({"type":"content_block_stop","index":0})),
                ev(
                    "message_delta",
                    json!({"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":4}}),
                ),
                ev("message_stop", json!({"type":"message_stop"})),
            ];
            stream_response(first, rest, &script, gate_slot)
        }
        ("/v1/models", _) => json_response(
            200,
            json!({"object":"list","data":[{"id":"gpt-4o-mini","object":"model","created":1,"owned_by":name}]}),
        ),
        (path, _) => json_response(
            404,
            json!({"error":{"message":format!("{name}: no such path {path}"),"type":"invalid_request_error","param":null,"code":null}}),
        ),
    }
}

/// What a provider does in a tool loop: call the request's first tool when the last turn is
/// the user's, answer with the result when the last turn carries one.
#[derive(Debug)]
enum ToolStep {
    Call(String),
    Answer(String),
}

/// Reads the tool loop's position in each provider's own request shape.
fn tool_step(path: &str, body: &Value) -> Option<ToolStep> {
    let text = |v: &Value| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
    let (tool, result) = if path.starts_with("/model/") {
        let last = body["messages"].as_array()?.last()?;
        let result = last["content"].as_array()?.iter().find_map(|b| b.get("toolResult"));
        let result = result.map(|r| text(r["content"][0].get("text").unwrap_or(&r["content"][0]["json"])));
        (&body["toolConfig"]["tools"][0]["toolSpec"]["name"], result)
    } else if path.contains("/models/") {
        let last = body["contents"].as_array()?.last()?;
        let result = last["parts"].as_array()?.iter().find_map(|p| p.get("functionResponse"));
        let result = result.map(|r| text(r["response"].get("result").unwrap_or(&r["response"])));
        (&body["tools"][0]["functionDeclarations"][0]["name"], result)
    } else if path.starts_with("/v1/messages") {
        let last = body["messages"].as_array()?.last()?;
        let blocks = last["content"].as_array().cloned().unwrap_or_default();
        let result = blocks
            .iter()
            .find(|b| b["type"] == "tool_result")
            .map(|b| text(&b["content"]));
        (&body["tools"][0]["name"], result)
    } else {
        let last = body["messages"].as_array()?.last()?;
        let result = (last["role"] == "tool").then(|| text(&last["content"]));
        (&body["tools"][0]["function"]["name"], result)
    };
    match (result, tool.as_str()) {
        (Some(r), _) => Some(ToolStep::Answer(r)),
        (None, Some(t)) => Some(ToolStep::Call(t.to_string())),
        (None, None) => None,
    }
}

/// A call of `tool` with `{"city": "Paris"}`, in the provider's shape, streamed or not; the
/// arguments arrive in two pieces when streamed, as providers send them.
fn tool_call_response(
    path: &str,
    model: &str,
    tool: &str,
    stream: bool,
    script: &Script,
    gate: Arc<Mutex<Option<bool>>>,
) -> hyper::Response<FakeBody> {
    let (args_head, args_tail) = ("{\"city\": ", "\"Paris\"}");
    if path.starts_with("/model/") {
        let use_ = json!({"toolUseId": "tooluse_fake01", "name": tool, "input": {"city": "Paris"}});
        if !path.ends_with("/converse-stream") {
            return json_response(
                200,
                json!({"output": {"message": {"role": "assistant", "content": [{"text": "Checking."}, {"toolUse": use_}]}},
                       "stopReason": "tool_use", "usage": {"inputTokens": 20, "outputTokens": 9, "totalTokens": 29}}),
            );
        }
        let ev = |t: &str, v: Value| Bytes::from(aws_event(t, v.to_string().as_bytes()));
        let first = vec![
            ev("messageStart", json!({"role": "assistant"})),
            ev(
                "contentBlockStart",
                json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "tooluse_fake01", "name": tool}}}),
            ),
            ev(
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": args_head}}}),
            ),
        ];
        let rest = vec![
            ev(
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": args_tail}}}),
            ),
            ev("contentBlockStop", json!({"contentBlockIndex": 0})),
            ev("messageStop", json!({"stopReason": "tool_use"})),
            ev(
                "metadata",
                json!({"usage": {"inputTokens": 20, "outputTokens": 9, "totalTokens": 29}, "metrics": {"latencyMs": 30}}),
            ),
        ];
        let mut resp = stream_response(first, rest, script, gate);
        resp.headers_mut()
            .insert("content-type", "application/vnd.amazon.eventstream".parse().unwrap());
        return resp;
    }
    if path.contains("/models/") {
        // Gemini sends a function call whole, in one chunk when streaming.
        let v = json!({"candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"name": tool, "args": {"city": "Paris"}}}]},
                                      "finishReason": "STOP", "index": 0}],
                       "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 9, "totalTokenCount": 29},
                       "modelVersion": model});
        if !path.ends_with(":streamGenerateContent") {
            return json_response(200, v);
        }
        return stream_response(vec![Bytes::from(format!("data: {v}\r\n\r\n"))], vec![], script, gate);
    }
    if path.starts_with("/v1/messages") {
        if !stream {
            return json_response(
                200,
                json!({"id": "msg_tool", "type": "message", "role": "assistant", "model": model,
                       "content": [{"type": "text", "text": "Checking."},
                                   {"type": "tool_use", "id": "toolu_fake01", "name": tool, "input": {"city": "Paris"}}],
                       "stop_reason": "tool_use", "stop_sequence": null,
                       "usage": {"input_tokens": 20, "output_tokens": 9}}),
            );
        }
        let ev = |event: &str, v: Value| Bytes::from(format!("event: {event}\ndata: {v}\n\n"));
        let first = vec![
            ev(
                "message_start",
                json!({"type":"message_start","message":{"id":"msg_tool","type":"message","role":"assistant","model":model,
                       "content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":20,"output_tokens":1}}}),
            ),
            ev(
                "content_block_start",
                json!({"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_fake01","name":tool,"input":{}}}),
            ),
            ev(
                "content_block_delta",
                json!({"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":args_head}}),
            ),
        ];
        let rest = vec![
            ev(
                "content_block_delta",
                json!({"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":args_tail}}),
            ),
            ev("content_block_stop", json!({"type":"content_block_stop","index":0})),
            ev(
                "message_delta",
                json!({"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":9}}),
            ),
            ev("message_stop", json!({"type":"message_stop"})),
        ];
        return stream_response(first, rest, script, gate);
    }
    // OpenAI chat completions.
    let call = |args: &str| json!({"index": 0, "id": "call_fake01", "type": "function", "function": {"name": tool, "arguments": args}});
    if !stream {
        return json_response(
            200,
            json!({"id": "chatcmpl-tool", "object": "chat.completion", "created": 1764100000, "model": model,
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
                                "tool_calls": [{"id": "call_fake01", "type": "function",
                                                "function": {"name": tool, "arguments": "{\"city\": \"Paris\"}"}}]},
                                "finish_reason": "tool_calls"}],
                   "usage": {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29}}),
        );
    }
    let chunk = |delta: Value, finish: Value, usage: Value| {
        Bytes::from(format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-tool", "object": "chat.completion.chunk", "created": 1764100000, "model": model,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], "usage": usage})
        ))
    };
    let first = vec![chunk(
        json!({"role": "assistant", "content": null, "tool_calls": [call(args_head)]}),
        Value::Null,
        Value::Null,
    )];
    let rest = vec![
        chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": args_tail}}]}),
            Value::Null,
            Value::Null,
        ),
        chunk(json!({}), json!("tool_calls"), Value::Null),
        Bytes::from(format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-tool", "object": "chat.completion.chunk", "created": 1764100000, "model": model,
                   "choices": [], "usage": {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29}})
        )),
        Bytes::from_static(b"data: [DONE]\n\n"),
    ];
    stream_response(first, rest, script, gate)
}

fn media_response(
    answer: crate::fake_media::Answer,
    script: &Script,
    gate: Arc<Mutex<Option<bool>>>,
) -> hyper::Response<FakeBody> {
    use crate::fake_media::Answer;
    match answer {
        Answer::Json(v) => json_response(200, v),
        Answer::Text(t) => hyper::Response::builder()
            .status(200)
            .header("content-type", "text/plain; charset=utf-8")
            .body(
                http_body_util::Full::new(Bytes::from(t))
                    .map_err(|never| match never {})
                    .boxed(),
            )
            .unwrap(),
        Answer::Events(mut events) => {
            let rest = events.split_off(1);
            stream_response(events, rest, script, gate)
        }
        Answer::Audio(chunks) => {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, BoxError>>(16);
            let (reset, gate_file) = (script.reset_after_first, script.gate.clone());
            tokio::spawn(async move {
                for (i, c) in chunks.into_iter().enumerate() {
                    if reset && i == 1 {
                        let _ = tx.send(Err(Box::new(std::io::Error::other("reset on purpose")))).await;
                        return;
                    }
                    // With a gate: the rest waits until the client has played the first chunk.
                    if let (1, Some(g)) = (i, &gate_file) {
                        let start = Instant::now();
                        while !g.exists() && start.elapsed() < Duration::from_secs(10) {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        *gate.lock().unwrap() = Some(g.exists());
                    }
                    let _ = tx.send(Ok(c)).await;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            });
            hyper::Response::builder()
                .status(200)
                .header("content-type", "audio/mpeg")
                .body(ChannelBody(rx).boxed())
                .unwrap()
        }
    }
}

fn stream_response(
    first: Vec<Bytes>,
    rest: Vec<Bytes>,
    script: &Script,
    result: Arc<Mutex<Option<bool>>>,
) -> hyper::Response<FakeBody> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, BoxError>>(16);
    let (gate, reset) = (script.gate.clone(), script.reset_after_first);
    tokio::spawn(async move {
        for b in first {
            let _ = tx.send(Ok(b)).await;
        }
        if reset {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = tx.send(Err(Box::new(std::io::Error::other("reset on purpose")))).await;
            return;
        }
        if let Some(gate) = gate {
            let start = Instant::now();
            while !gate.exists() && start.elapsed() < Duration::from_secs(10) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            *result.lock().unwrap() = Some(gate.exists());
        }
        for b in rest {
            let _ = tx.send(Ok(b)).await;
        }
    });
    hyper::Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(ChannelBody(rx).boxed())
        .unwrap()
}

/// The value of `key=` (given with its `=`) in a urlencoded form body, as sent ("" if absent).
fn form_field(form: &[u8], key: &str) -> String {
    String::from_utf8_lossy(form)
        .split('&')
        .find_map(|p| p.strip_prefix(key))
        .unwrap_or("")
        .to_string()
}
