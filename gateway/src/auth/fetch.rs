//! What credentials fetch over the network, through the backend's own client (its socket
//! marks and trust): OAuth and metadata-service tokens ([`oauth_token`]) and the AWS role keys
//! of `awsMetadata` credentials ([`aws_role_keys`]). Every call is bounded (10 s, 64 KiB).

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::{header, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};

use super::{oauth, sigv4};
use crate::client::{UpstreamBody, UpstreamClient};

/// Longest wait for a token or key endpoint.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read from one.
const MAX_ANSWER: usize = 64 * 1024;

/// An access token for `source`: the cached one while it has life left, else a new one.
pub async fn oauth_token(source: &oauth::Source, client: &UpstreamClient) -> Result<String, String> {
    if let Some(t) = source.cache().cached() {
        return Ok(t);
    }
    let (req, body) = match source.token_request(std::time::SystemTime::now()) {
        oauth::TokenRequest::Form(form) => (
            Request::post(source.token_uri()).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded"),
            Bytes::from(form),
        ),
        oauth::TokenRequest::Get(name, value) => (Request::get(source.token_uri()).header(name, value), Bytes::new()),
    };
    // A refusal's body names why (`error_description`): the cache reads it either way.
    let (_, answer) = call(client, req, body)
        .await
        .map_err(|e| e.replace("endpoint", "token endpoint"))?;
    source.cache().store(&answer)
}

/// The AWS role's keys an `awsMetadata` credential signs with, cached for a few minutes, from
/// where the AWS SDKs would look (see [`sigv4::Imds`]).
pub async fn aws_role_keys(imds: &sigv4::Imds, client: &UpstreamClient) -> Result<Arc<sigv4::AwsKeys>, String> {
    if let Some(k) = imds.cached() {
        return Ok(k);
    }
    // IRSA (EKS IAM roles for service accounts): the projected web identity token traded at
    // STS for the role's keys (an unsigned AssumeRoleWithWebIdentity call).
    if let (false, Ok(role), Ok(token_file)) = (
        imds.explicit,
        std::env::var("AWS_ROLE_ARN"),
        std::env::var("AWS_WEB_IDENTITY_TOKEN_FILE"),
    ) {
        let token =
            std::fs::read_to_string(&token_file).map_err(|e| format!("web identity token file {token_file}: {e}"))?;
        let sts = std::env::var("AWS_ENDPOINT_URL_STS").unwrap_or_else(|_| {
            let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
            format!("https://sts.{region}.amazonaws.com")
        });
        let session = std::env::var("AWS_ROLE_SESSION_NAME").unwrap_or_else(|_| "tollgate".into());
        let form = format!(
            "Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn={}&RoleSessionName={}&WebIdentityToken={}",
            oauth::form_encode(&role),
            oauth::form_encode(&session),
            oauth::form_encode(token.trim())
        );
        let req = Request::post(format!("{}/", sts.trim_end_matches('/')))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json");
        let answer = checked(client, req, Bytes::from(form), "STS").await?;
        return imds.store_sts(&answer);
    }
    // EKS Pod Identity / ECS: the container credentials endpoint, with the (rotating) token
    // from its file, as the AWS SDKs read them.
    if let (false, Ok(uri)) = (imds.explicit, std::env::var("AWS_CONTAINER_CREDENTIALS_FULL_URI")) {
        let token = match std::env::var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
            Ok(path) => std::fs::read_to_string(&path)
                .map_err(|e| format!("container credentials token file {path}: {e}"))?
                .trim()
                .to_string(),
            Err(_) => std::env::var("AWS_CONTAINER_AUTHORIZATION_TOKEN").unwrap_or_default(),
        };
        let mut req = Request::get(uri);
        if !token.is_empty() {
            let mut v =
                HeaderValue::from_str(&token).map_err(|_| "container credentials token is not a header value")?;
            v.set_sensitive(true);
            req = req.header(header::AUTHORIZATION, v);
        }
        let keys = checked(client, req, Bytes::new(), "container credentials").await?;
        return imds.store(&keys);
    }
    let token = imds_call(
        client,
        Request::put(format!("{}/latest/api/token", imds.base)).header("x-aws-ec2-metadata-token-ttl-seconds", "300"),
    )
    .await?;
    let token = String::from_utf8_lossy(&token).trim().to_string();
    let roles_url = format!("{}/latest/meta-data/iam/security-credentials/", imds.base);
    let roles = imds_call(
        client,
        Request::get(&roles_url).header("x-aws-ec2-metadata-token", &token),
    )
    .await?;
    let role = String::from_utf8_lossy(&roles)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    if role.is_empty() || role.contains('/') {
        return Err("instance metadata names no instance role".into());
    }
    let keys = imds_call(
        client,
        Request::get(format!("{roles_url}{role}")).header("x-aws-ec2-metadata-token", &token),
    )
    .await?;
    imds.store(&keys)
}

/// One IMDSv2 call.
async fn imds_call(client: &UpstreamClient, req: http::request::Builder) -> Result<Bytes, String> {
    checked(client, req, Bytes::new(), "instance metadata").await
}

/// One call whose answer must be 2xx; errors name `what` was asked.
async fn checked(
    client: &UpstreamClient,
    req: http::request::Builder,
    body: Bytes,
    what: &str,
) -> Result<Bytes, String> {
    match call(client, req, body).await {
        Ok((status, body)) if status.is_success() => Ok(body),
        Ok((status, _)) => Err(format!("{what} answered {status}")),
        Err(e) => Err(format!("{what} {e}")),
    }
}

/// One bounded call: the status and at most [`MAX_ANSWER`] bytes of body.
async fn call(
    client: &UpstreamClient,
    req: http::request::Builder,
    body: Bytes,
) -> Result<(StatusCode, Bytes), String> {
    let body: UpstreamBody = Full::new(body).map_err(|never| match never {}).boxed();
    let req = req.body(body).map_err(|e| format!("request: {e}"))?;
    let resp = tokio::time::timeout(TIMEOUT, client.request(req))
        .await
        .map_err(|_| "endpoint timed out".to_string())?
        .map_err(|e| format!("endpoint: {e}"))?;
    let status = resp.status();
    let answer = http_body_util::Limited::new(resp.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| format!("endpoint: {e}"))?
        .to_bytes();
    Ok((status, answer))
}
