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
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;

const HOST: &str = "api.openai.com";
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
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::default();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "bench fake provider CA");
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate()?;
    let leaf = rcgen::CertificateParams::new(vec![HOST.to_string(), ip.to_string()])?.signed_by(&key, &issuer)?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone(), ca_cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    // One worker: the fake is the same for both variants, and leaves a core to the rest.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let listener = rt.block_on(tokio::net::TcpListener::bind(&addr))?;
    let local = listener.local_addr()?;
    rt.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else { return };
                let service = hyper::service::service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let anthropic = req.uri().path() == "/v1/messages";
                    let body = req.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                    let stream = body.windows(13).any(|w| w == b"\"stream\":true");
                    let resp = if anthropic {
                        anthropic_answer(stream)
                    } else if stream {
                        let mut sse = String::new();
                        for i in 0..STREAM_CHUNKS {
                            sse += &format!(
                                "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1764100000,\"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"t{i} \"}},\"finish_reason\":null}}]}}\n\n"
                            );
                        }
                        sse += "data: [DONE]\n\n";
                        hyper::Response::builder().header("content-type", "text/event-stream").body(Full::new(Bytes::from(sse)))
                    } else {
                        hyper::Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from_static(RESPONSE.as_bytes())))
                    };
                    Ok::<_, Infallible>(resp.expect("static response"))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Ok(Fake {
        addr: local,
        ca_pem: ca_cert.pem(),
        _rt: rt,
    })
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

/// `bench-client l7 ADDR CAFILE N CONCURRENCY [stream]`: N requests over CONCURRENCY kept-alive
/// HTTP/1.1 connections to ADDR with SNI and Host `api.openai.com`. Prints percentiles of the
/// request latency (or of the time to the first body chunk, for `stream`) and the request rate.
pub(crate) fn client(args: &[String]) -> anyhow::Result<()> {
    let [addr, ca, n, concurrency, rest @ ..] = args else {
        bail!("usage: bench-client l7 ADDR CAFILE N CONCURRENCY [stream]");
    };
    let addr: SocketAddr = addr.parse()?;
    let n: usize = n.parse()?;
    let concurrency: usize = concurrency.parse()?;
    let stream = rest.first().is_some_and(|s| s == "stream");
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
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let started = Instant::now();
    let samples = rt.block_on(async move {
        let per_task = n.div_ceil(concurrency);
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let connector = connector.clone();
            tasks.push(tokio::spawn(async move {
                one_connection(addr, connector, per_task, stream).await
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await??);
        }
        anyhow::Ok(all)
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    let mut v = crate::bench::percentiles(samples.clone());
    v["rps"] = json!(samples.len() as f64 / elapsed);
    println!("{v}");
    Ok(())
}

async fn one_connection(
    addr: SocketAddr,
    connector: tokio_rustls::TlsConnector,
    n: usize,
    stream: bool,
) -> anyhow::Result<Vec<Duration>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let tls = connector
        .connect(rustls::pki_types::ServerName::try_from(HOST)?, tcp)
        .await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let body = if stream { STREAM_REQUEST } else { REQUEST };
    let mut samples = Vec::with_capacity(n);
    // One warm-up request (TLS session, pools on the proxy side).
    for i in 0..=n {
        let req = hyper::Request::post("/v1/chat/completions")
            .header("host", HOST)
            .header("content-type", "application/json")
            .header("authorization", "Bearer sk-bench-dummy")
            .body(Full::new(Bytes::from_static(body.as_bytes())))?;
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
