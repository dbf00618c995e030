//! The L7 part of `cargo xtask bench`: a chat completion over kept-alive HTTPS through capture,
//! TLS interception, routing and credential injection, against the same client talking TLS
//! directly to the same fake provider, at concurrency 1 and 16; and the time to first token of
//! a stream.
//!
//! The fake (hyper + rustls, in this process) holds a certificate for `api.openai.com` from a
//! throwaway CA, so the direct client and Tollgate's upstream client verify it the same way.
//! The client (`bench-client l7 …`, release build, run in the captured cgroup) connects to an
//! address and sends SNI/Host `api.openai.com`: directly to the fake, or to the captured address
//! where eBPF hands it to Tollgate.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;

const HOST: &str = "api.openai.com";
const ANTHROPIC_HOST: &str = "api.anthropic.com";
const ANTHROPIC_REQUEST: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":256,"messages":[{"role":"user","content":"Say hello in five words."}]}"#;
const ANTHROPIC_STREAM_REQUEST: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":256,"stream":true,"messages":[{"role":"user","content":"Say hello in five words."}]}"#;
const REQUEST: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello in five words."}]}"#;
const STREAM_REQUEST: &str =
    r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Say hello in five words."}]}"#;
const RESPONSE: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1764100000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there, how are you?"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":14,"completion_tokens":7,"total_tokens":21}}"#;
/// Chunks in a benchmark stream.
pub(crate) const STREAM_CHUNKS: usize = 64;

/// The fake provider's CA (PEM) and a running server.
pub(crate) struct Fake {
    pub(crate) addr: SocketAddr,
    pub(crate) ca_pem: String,
    _rt: tokio::runtime::Runtime,
}

/// Starts the fake on `ip:0` with a certificate for `api.openai.com` and for `ip`.
pub(crate) fn start_fake(ip: &str) -> anyhow::Result<Fake> {
    let addr = format!("{ip}:0");
    let super::common::Throwaway { ca: ca_cert, leaf, key } =
        super::common::throwaway_ca("bench fake provider CA", vec![HOST.to_string(), ip.to_string()])?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone(), ca_cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let (addr, rt) = serve_fake(&addr, Some(acceptor))?;
    Ok(Fake {
        addr,
        ca_pem: ca_cert.pem(),
        _rt: rt,
    })
}

/// The same fake over plaintext HTTP (an in-cluster model server, or nginx's plain upstream).
pub(crate) fn start_plain_fake(ip: &str) -> anyhow::Result<Fake> {
    let (addr, rt) = serve_fake(&format!("{ip}:0"), None)?;
    Ok(Fake {
        addr,
        ca_pem: String::new(),
        _rt: rt,
    })
}

fn serve_fake(
    addr: &str,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
) -> anyhow::Result<(SocketAddr, tokio::runtime::Runtime)> {
    // One worker: the fake is the same for every variant, and leaves a core to the rest.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let listener = rt.block_on(tokio::net::TcpListener::bind(addr))?;
    let local = listener.local_addr()?;
    rt.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let service = hyper::service::service_fn(answer);
                match acceptor {
                    Some(a) => {
                        let Ok(tls) = a.accept(stream).await else { return };
                        let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                    }
                    None => {
                        let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                    }
                }
            });
        }
    });
    Ok((local, rt))
}

/// The fake's answer to one request, in the API its path names.
async fn answer(req: hyper::Request<hyper::body::Incoming>) -> Result<hyper::Response<Paced>, Infallible> {
    let path = req.uri().path().to_string();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    // `x-bench-pace: delta`: every event of a stream in its own write (as a provider sends
    // tokens); `x-bench-hold-ms: MS`: the first event, then the rest after MS or when the
    // client goes (a gap after the first token; idle open streams).
    let each_delta = header(PACE_HEADER).is_some_and(|v| v == "delta");
    let hold = header(HOLD_HEADER)
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_millis);
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let stream = body.windows(13).any(|w| w == b"\"stream\":true");
    let resp = if path == "/v1/messages" {
        anthropic_answer(stream)
    } else if path.contains(":generateContent") || path.contains(":streamGenerateContent") {
        gemini_answer(path.contains(":stream"))
    } else if path.starts_with("/model/") {
        bedrock_answer(path.ends_with("/converse-stream"))
    } else if stream {
        let mut sse = String::new();
        for i in 0..STREAM_CHUNKS {
            sse += &format!(
                "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1764100000,\"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"t{i} \"}},\"finish_reason\":null}}]}}\n\n"
            );
        }
        sse += "data: [DONE]\n\n";
        hyper::Response::builder()
            .header("content-type", "text/event-stream")
            .body(Full::new(Bytes::from(sse)))
    } else {
        hyper::Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(RESPONSE.as_bytes())))
    };
    let (parts, body) = resp.expect("static response").into_parts();
    let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let stream = stream || path.contains(":stream") || path.ends_with("-stream");
    let pacing = match (stream, hold) {
        (false, _) => Pacing::Whole,
        (true, Some(d)) => Pacing::Hold(d),
        (true, None) if each_delta => Pacing::EachEvent,
        (true, None) => Pacing::FirstToken,
    };
    Ok(hyper::Response::from_parts(parts, Paced::new(body, pacing)))
}

/// Request header: `delta` paces every event of a stream into its own write.
pub(crate) const PACE_HEADER: &str = "x-bench-pace";
/// Request header: milliseconds to hold a stream after its first event.
pub(crate) const HOLD_HEADER: &str = "x-bench-hold-ms";

/// Streams the fakes hold open now (`x-bench-hold`), over every fake of this process.
pub(crate) static HELD_STREAMS: AtomicUsize = AtomicUsize::new(0);

/// How the fake hands a body to its connection.
enum Pacing {
    /// All at once.
    Whole,
    /// Up to the end of the event that carries the first token, then the rest.
    FirstToken,
    /// Every event (SSE) in its own frame, flushed before the next.
    EachEvent,
    /// The first token's event, then the rest after this long (or never, if the client goes).
    Hold(Duration),
}

/// A response body sent as providers stream: up to the end of the event or frame that carries
/// the first token (`t0 `), then, once the connection has flushed it, the rest. So a stream's first token
/// reaches a proxy in its own read, as with a real provider, and "time to first token" measures
/// what happens to that first event rather than to the whole stream at once. With
/// [`Pacing::EachEvent`] every event is flushed on its own (a proxy's cost per delta); with
/// [`Pacing::Hold`] the rest waits (an idle open stream).
struct Paced {
    frames: std::collections::VecDeque<Bytes>,
    sent_first: bool,
    yielded: bool,
    hold: Option<HeldStream>,
}

/// The timer of a held stream, counted in [`HELD_STREAMS`] while it lives.
struct HeldStream(std::pin::Pin<Box<tokio::time::Sleep>>);

impl HeldStream {
    fn new(d: Duration) -> HeldStream {
        HELD_STREAMS.fetch_add(1, Ordering::Relaxed);
        HeldStream(Box::pin(tokio::time::sleep(d)))
    }
}

impl Drop for HeldStream {
    fn drop(&mut self) {
        HELD_STREAMS.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Paced {
    fn new(mut body: Bytes, pacing: Pacing) -> Paced {
        let mut frames = std::collections::VecDeque::new();
        let mut hold = None;
        match pacing {
            Pacing::Whole => frames.push_back(body),
            Pacing::FirstToken | Pacing::Hold(_) => {
                let rest = body.split_off(first_token_end(&body).min(body.len()));
                frames.push_back(body);
                if !rest.is_empty() {
                    frames.push_back(rest);
                }
                if let Pacing::Hold(d) = pacing {
                    hold = Some(HeldStream::new(d));
                }
            }
            Pacing::EachEvent => {
                while let Some(end) = body.windows(2).position(|w| w == b"\n\n") {
                    frames.push_back(body.split_to(end + 2));
                }
                if !body.is_empty() {
                    frames.push_back(body);
                }
            }
        }
        Paced {
            frames,
            sent_first: false,
            yielded: false,
            hold,
        }
    }
}

/// The end of the SSE event or AWS event-stream frame holding the first token.
fn first_token_end(body: &[u8]) -> usize {
    let Some(at) = body.windows(3).position(|w| w == b"t0 ") else {
        return body.len();
    };
    if body.starts_with(&[0, 0]) {
        // Event-stream frames: a big-endian total length opens each frame.
        let mut start = 0;
        while start + 4 <= body.len() {
            let len = u32::from_be_bytes([body[start], body[start + 1], body[start + 2], body[start + 3]]) as usize;
            if at < start + len || len == 0 {
                return start + len.max(4);
            }
            start += len;
        }
        return body.len();
    }
    let tail = &body[at..];
    let lf = tail.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let crlf = tail.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => at + a.min(b),
        (Some(e), None) | (None, Some(e)) => at + e,
        (None, None) => body.len(),
    }
}

impl hyper::body::Body for Paced {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        use std::{future::Future as _, task::Poll};
        if self.frames.is_empty() {
            return Poll::Ready(None);
        }
        if self.sent_first {
            if let Some(hold) = &mut self.hold {
                if hold.0.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.hold = None;
            } else if !self.yielded {
                // Let the connection flush what went before the next frame is queued.
                self.yielded = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
        self.sent_first = true;
        self.yielded = false;
        Poll::Ready(self.frames.pop_front().map(|f| Ok(hyper::body::Frame::data(f))))
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
    }
}

/// The same answers in Anthropic's Messages format (for the translation runs).
fn anthropic_answer(stream: bool) -> Result<hyper::Response<Full<Bytes>>, hyper::http::Error> {
    if !stream {
        let body = r#"{"id":"msg_bench","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"Hello there, how are you?"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":14,"output_tokens":7}}"#;
        return hyper::Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(body.as_bytes())));
    }
    let mut sse = String::from(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_bench\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":14,\"output_tokens\":1}}}\n\n\
         event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    );
    for i in 0..STREAM_CHUNKS {
        sse += &format!(
            "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"t{i} \"}}}}\n\n"
        );
    }
    sse += "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
            event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":64}}\n\n\
            event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    hyper::Response::builder()
        .header("content-type", "text/event-stream")
        .body(Full::new(Bytes::from(sse)))
}

/// Gemini's answers (`generateContent`, `streamGenerateContent?alt=sse`) with the same text.
fn gemini_answer(stream: bool) -> Result<hyper::Response<Full<Bytes>>, hyper::http::Error> {
    let usage = r#""usageMetadata":{"promptTokenCount":14,"candidatesTokenCount":7,"totalTokenCount":21},"modelVersion":"gemini-2.5-flash""#;
    if !stream {
        let body = format!(
            r#"{{"candidates":[{{"content":{{"role":"model","parts":[{{"text":"Hello there, how are you?"}}]}},"finishReason":"STOP","index":0}}],{usage}}}"#
        );
        return hyper::Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)));
    }
    let mut sse = String::new();
    for i in 0..STREAM_CHUNKS {
        let finish = if i + 1 == STREAM_CHUNKS {
            r#","finishReason":"STOP""#
        } else {
            ""
        };
        sse += &format!(
            "data: {{\"candidates\":[{{\"content\":{{\"role\":\"model\",\"parts\":[{{\"text\":\"t{i} \"}}]}}{finish},\"index\":0}}],{usage}}}\r\n\r\n"
        );
    }
    hyper::Response::builder()
        .header("content-type", "text/event-stream")
        .body(Full::new(Bytes::from(sse)))
}

/// One AWS event-stream message (the framing of Bedrock's ConverseStream): prelude with CRC,
/// string headers, JSON payload, message CRC.
fn aws_event(event_type: &str, payload: &str) -> Vec<u8> {
    let mut headers = Vec::new();
    for (name, value) in [
        (":event-type", event_type),
        (":content-type", "application/json"),
        (":message-type", "event"),
    ] {
        headers.push(name.len() as u8);
        headers.extend_from_slice(name.as_bytes());
        headers.push(7); // string
        headers.extend_from_slice(&(value.len() as u16).to_be_bytes());
        headers.extend_from_slice(value.as_bytes());
    }
    let total = 12 + headers.len() + payload.len() + 4;
    let mut frame = Vec::with_capacity(total);
    frame.extend_from_slice(&(total as u32).to_be_bytes());
    frame.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    let prelude_crc = crc32fast::hash(&frame);
    frame.extend_from_slice(&prelude_crc.to_be_bytes());
    frame.extend_from_slice(&headers);
    frame.extend_from_slice(payload.as_bytes());
    let crc = crc32fast::hash(&frame);
    frame.extend_from_slice(&crc.to_be_bytes());
    frame
}

/// Bedrock's answers (Converse JSON, ConverseStream event-stream frames) with the same text.
fn bedrock_answer(stream: bool) -> Result<hyper::Response<Full<Bytes>>, hyper::http::Error> {
    let usage = r#"{"usage":{"inputTokens":14,"outputTokens":7,"totalTokens":21},"metrics":{"latencyMs":1}}"#;
    if !stream {
        let body = r#"{"output":{"message":{"role":"assistant","content":[{"text":"Hello there, how are you?"}]}},"stopReason":"end_turn","usage":{"inputTokens":14,"outputTokens":7,"totalTokens":21},"metrics":{"latencyMs":1}}"#;
        return hyper::Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(body.as_bytes())));
    }
    let mut frames = aws_event("messageStart", r#"{"role":"assistant"}"#);
    for i in 0..STREAM_CHUNKS {
        frames.extend(aws_event(
            "contentBlockDelta",
            &format!(r#"{{"contentBlockIndex":0,"delta":{{"text":"t{i} "}}}}"#),
        ));
    }
    frames.extend(aws_event("contentBlockStop", r#"{"contentBlockIndex":0}"#));
    frames.extend(aws_event("messageStop", r#"{"stopReason":"end_turn"}"#));
    frames.extend(aws_event("metadata", usage));
    hyper::Response::builder()
        .header("content-type", "application/vnd.amazon.eventstream")
        .body(Full::new(Bytes::from(frames)))
}

/// `bench-client l7 ADDR CAFILE N CONCURRENCY [stream] [anthropic] [host=NAME]
/// [header=NAME:VALUE]… [models=M]`: N requests over CONCURRENCY kept-alive HTTP/1.1
/// connections to ADDR with SNI and Host `api.openai.com` (OpenAI chat completions), or
/// `api.anthropic.com` (Anthropic Messages) with `anthropic`, or NAME; CAFILE `-` means
/// plaintext HTTP. `header=` adds a request header; `models=M` names the model of request `i`
/// `bench-<i mod M>` (to fill limit buckets keyed by model). Prints percentiles of the request
/// latency (or of the time to the first body chunk, for `stream`) and the request rate.
pub(crate) fn client(args: &[String]) -> anyhow::Result<()> {
    let [addr, ca, n, concurrency, rest @ ..] = args else {
        bail!("usage: bench-client l7 ADDR CAFILE N CONCURRENCY [stream] [anthropic] [host=NAME] [header=NAME:VALUE] [models=M]");
    };
    let addr: SocketAddr = addr.parse()?;
    let n: usize = n.parse()?;
    let concurrency: usize = concurrency.parse()?;
    let opts = Arc::new(Options {
        stream: rest.iter().any(|s| s == "stream"),
        anthropic: rest.iter().any(|s| s == "anthropic"),
        host: rest.iter().find_map(|s| s.strip_prefix("host=")).map(str::to_string),
        headers: rest
            .iter()
            .filter_map(|s| s.strip_prefix("header=")?.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect(),
        models: rest
            .iter()
            .find_map(|s| s.strip_prefix("models="))
            .map(str::parse)
            .transpose()?,
    });
    let connector = if ca == "-" { None } else { Some(tls_connector(ca)?) };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let started = Instant::now();
    let samples = rt.block_on(async move {
        let per_task = n.div_ceil(concurrency);
        let mut tasks = Vec::new();
        for t in 0..concurrency {
            let (connector, opts) = (connector.clone(), opts.clone());
            tasks.push(tokio::spawn(async move {
                one_connection(addr, connector, t * per_task, per_task, &opts).await
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await??);
        }
        anyhow::Ok(all)
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    let mut v = super::common::percentiles(samples.clone());
    v["rps"] = json!(samples.len() as f64 / elapsed);
    println!("{v}");
    Ok(())
}

/// A TLS client trusting only the certificates of `ca` (a PEM file), speaking HTTP/1.1.
pub(crate) fn tls_connector(ca: &str) -> anyhow::Result<tokio_rustls::TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject as _;
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).with_context(|| format!("reading {ca}"))? {
        roots.add(cert?)?;
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(tls)))
}

/// What every request of an `l7` client run looks like.
struct Options {
    stream: bool,
    anthropic: bool,
    host: Option<String>,
    headers: Vec<(String, String)>,
    models: Option<usize>,
}

/// The OpenAI request body (`stream` or not) naming `model`.
pub(crate) fn request_body(model: &str, stream: bool) -> String {
    let body = if stream { STREAM_REQUEST } else { REQUEST };
    body.replace("gpt-4o-mini", model)
}

/// `n` requests (plus one warm-up) on one connection; request `first + i` is the `i`th.
async fn one_connection(
    addr: SocketAddr,
    connector: Option<tokio_rustls::TlsConnector>,
    first: usize,
    n: usize,
    opts: &Options,
) -> anyhow::Result<Vec<Duration>> {
    let stream = opts.stream;
    let (host, path, fixed_body, key_header, key) = if opts.anthropic {
        let body = if stream {
            ANTHROPIC_STREAM_REQUEST
        } else {
            ANTHROPIC_REQUEST
        };
        (ANTHROPIC_HOST, "/v1/messages", body, "x-api-key", "sk-ant-bench-dummy")
    } else {
        let body = if stream { STREAM_REQUEST } else { REQUEST };
        (
            HOST,
            "/v1/chat/completions",
            body,
            "authorization",
            "Bearer sk-bench-dummy",
        )
    };
    let host = opts.host.as_deref().unwrap_or(host);
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut sender = match connector {
        Some(connector) => {
            let tls = connector
                .connect(rustls::pki_types::ServerName::try_from(host.to_string())?, tcp)
                .await?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
            tokio::spawn(conn);
            sender
        }
        None => {
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
            tokio::spawn(conn);
            sender
        }
    };
    let mut samples = Vec::with_capacity(n);
    // One warm-up request (TLS session, pools on the proxy side).
    for i in 0..=n {
        let body = match opts.models {
            Some(m) => Bytes::from(request_body(&format!("bench-{}", (first + i) % m.max(1)), stream)),
            None => Bytes::from_static(fixed_body.as_bytes()),
        };
        let mut req = hyper::Request::post(path)
            .header("host", host)
            .header("content-type", "application/json")
            .header(key_header, key);
        for (k, v) in &opts.headers {
            req = req.header(k, v);
        }
        let req = req.body(Full::new(body))?;
        let start = Instant::now();
        let resp = sender.send_request(req).await?;
        if resp.status() != 200 {
            bail!("status {}", resp.status());
        }
        let mut body = resp.into_body();
        let mut first = None;
        while let Some(frame) = body.frame().await {
            let frame = frame?;
            if first.is_none() && frame.data_ref().is_some_and(|d| !d.is_empty()) {
                first = Some(start.elapsed());
            }
        }
        let sample = if stream {
            first.unwrap_or_else(|| start.elapsed())
        } else {
            start.elapsed()
        };
        if i > 0 {
            samples.push(sample);
        }
    }
    Ok(samples)
}
