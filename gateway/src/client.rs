//! The pooled upstream clients (hyper + rustls, h2 when the backend offers it), one per
//! backend, whose sockets carry Tollgate's mark so the connect programs never capture the
//! proxy's own traffic. Token and key fetches for a backend's credential go through its client
//! too (same trust, same mark).

use std::{
    future::Future,
    io,
    net::SocketAddr,
    path::Path,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::Uri;
use http_body_util::combinators::BoxBody;
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::Client,
    rt::{TokioExecutor, TokioIo},
};
use tokio::net::TcpStream;

use crate::socket::connect_marked;

/// Idle upstream connections are kept this long (90 seconds).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// A request body as the upstream client takes it.
pub type UpstreamBody = BoxBody<Bytes, hyper::Error>;
/// One pooled client per backend.
pub type UpstreamClient = Client<HttpsConnector<MarkedConnector>, UpstreamBody>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("backend {backend}: cannot read caFile {path}: {message}")]
    CaFile {
        backend: String,
        path: String,
        message: String,
    },
}

/// What a backend's client is built from.
pub struct Spec<'a> {
    /// The backend's name (for errors).
    pub name: &'a str,
    /// Extra PEM CA bundle trusted besides the public roots.
    pub ca_file: Option<&'a Path>,
    /// Offer HTTP/2 by ALPN.
    pub http2: bool,
    /// `SO_MARK` of the sockets.
    pub mark: u32,
    pub connect_timeout: Duration,
}

/// One pooled client for a backend.
pub fn build(spec: &Spec<'_>) -> Result<UpstreamClient, Error> {
    let (mark, connect_timeout) = (spec.mark, spec.connect_timeout);
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = spec.ca_file {
        let err = |message: String| Error::CaFile {
            backend: spec.name.to_string(),
            path: path.display().to_string(),
            message,
        };
        use rustls_pki_types::pem::PemObject as _;
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| err(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err(e.to_string()))?;
        if certs.is_empty() {
            return Err(err("no certificate in the file".into()));
        }
        for c in certs {
            roots.add(c).map_err(|e| err(e.to_string()))?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1();
    let marked = MarkedConnector { mark, connect_timeout };
    let connector = if spec.http2 {
        builder.enable_http2().wrap_connector(marked)
    } else {
        builder.wrap_connector(marked)
    };
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .build(connector))
}

/// Opens upstream TCP connections carrying `SO_MARK`, so the connect programs never capture the
/// proxy's own traffic.
#[derive(Clone, Debug)]
pub struct MarkedConnector {
    mark: u32,
    connect_timeout: Duration,
}

impl tower_service::Service<Uri> for MarkedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let (mark, timeout) = (self.mark, self.connect_timeout);
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no host"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
            let port = uri
                .port_u16()
                .unwrap_or(if uri.scheme_str() == Some("http") { 80 } else { 443 });
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port)).await?.collect();
            let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host} resolved to nothing"));
            for addr in addrs {
                match connect_marked(addr, mark, timeout).await {
                    Ok(s) => return Ok(TokioIo::new(s)),
                    Err(e) => last = e,
                }
            }
            Err(last)
        })
    }
}
