//! Fan-out for backends that take few inputs per call (Amazon Titan embeds one text per
//! `InvokeModel`; Vertex `gemini-embedding-*` one instance per `:predict`): the attempt's requests are sent at most [`CONCURRENCY`] at a time and
//! answered to the rest of the pipeline as one response — the first failure as it came (so
//! retries, fallback and error translation treat it like any answer), else 200 with the
//! answers combined in input order.

use bytes::Bytes;
use futures_util::{stream, StreamExt as _};
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::{json, Value};

use super::{full, RespBody};
use crate::client::{UpstreamBody, UpstreamClient};

/// Upstream calls of one fan-out in flight at once.
pub(super) const CONCURRENCY: usize = 8;
/// Most bytes of answers one fan-out gathers (what the answer translation reads whole).
pub(super) const MAX_ANSWERS: usize = crate::llm::usage::MAX_METERED_JSON;

/// Sends `requests` and answers as one (see the module docs). A connection error fails the
/// whole attempt like a single request's would.
pub(super) async fn send_all(
    client: &UpstreamClient,
    bodies: Vec<Bytes>,
    build: &(dyn Fn(Bytes) -> Result<Request<UpstreamBody>, String> + Sync),
    combine: fn(&[Value]) -> Value,
) -> Result<Response<RespBody>, hyper_util::client::legacy::Error> {
    let mut answers = stream::iter(bodies.into_iter().map(|body| async move {
        let req = match build(body) {
            Ok(r) => r,
            Err(e) => return Ok(Err(format!("building the request: {e}"))),
        };
        let resp = client.request(req).await?;
        let (parts, body) = resp.into_parts();
        let bytes = match body.collect().await {
            Ok(c) => Ok(c.to_bytes()),
            Err(e) => Err(e.to_string()),
        };
        Ok::<_, hyper_util::client::legacy::Error>(Ok((parts, bytes)))
    }))
    .buffered(CONCURRENCY);
    let mut values = Vec::new();
    let mut size = 0;
    // The first failure ends the fan-out: calls not yet answered are dropped (cancelled).
    while let Some(answer) = answers.next().await {
        let (parts, bytes) = match answer? {
            Ok(a) => a,
            Err(e) => return Ok(error(StatusCode::INTERNAL_SERVER_ERROR, &e)),
        };
        let bytes = match bytes {
            Ok(b) => b,
            // The body broke off: a gateway error in Bedrock's error shape.
            Err(e) => return Ok(error(StatusCode::BAD_GATEWAY, &format!("upstream body: {e}"))),
        };
        if !parts.status.is_success() {
            return Ok(Response::from_parts(parts, full(bytes)));
        }
        size += bytes.len();
        if size > MAX_ANSWERS {
            return Ok(error(
                StatusCode::BAD_GATEWAY,
                &format!(
                    "the answers add up to more than {} MiB; send fewer inputs per request",
                    MAX_ANSWERS >> 20
                ),
            ));
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) => values.push(v),
            Err(e) => {
                return Ok(error(
                    StatusCode::BAD_GATEWAY,
                    &format!("upstream answer is not JSON: {e}"),
                ))
            }
        }
    }
    let mut resp = Response::new(full(Bytes::from(combine(&values).to_string())));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}

/// A gateway error readable as Bedrock's (`message`) and Google's (`error.message`) shapes.
fn error(status: StatusCode, message: &str) -> Response<RespBody> {
    let body =
        json!({"message": message, "error": {"code": status.as_u16(), "message": message, "status": "UNAVAILABLE"}});
    let mut resp = Response::new(full(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp
}
