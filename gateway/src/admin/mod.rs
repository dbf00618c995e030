//! Admin HTTP on its own thread and runtime, away from the data plane: `/healthz`, `/readyz`
//! (programs attached, maps synced, listeners registered), `/metrics`, `/config` (effective
//! configuration; it holds no secrets yet).

use std::{
    convert::Infallible,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{body::Incoming, header, service::service_fn, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::sync::watch;

use crate::{ebpf::Stats, telemetry::Metrics};

/// Readiness flags, set by `app` as start-up progresses.
#[derive(Debug, Default)]
pub struct Readiness {
    pub listeners_registered: AtomicBool,
    pub maps_synced: AtomicBool,
    pub programs_attached: AtomicBool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReadyBody {
    ready: bool,
    listeners_registered: bool,
    maps_synced: bool,
    programs_attached: bool,
}

impl Readiness {
    fn body(&self) -> ReadyBody {
        let listeners_registered = self.listeners_registered.load(Ordering::Acquire);
        let maps_synced = self.maps_synced.load(Ordering::Acquire);
        let programs_attached = self.programs_attached.load(Ordering::Acquire);
        ReadyBody {
            ready: listeners_registered && maps_synced && programs_attached,
            listeners_registered,
            maps_synced,
            programs_attached,
        }
    }
}

/// What the admin handlers read.
pub struct State {
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
    pub stats: Option<Arc<Stats>>,
    /// The effective configuration as JSON.
    pub config_json: String,
}

/// Starts the admin server on `listener` in a thread with a current-thread runtime. It stops
/// when `shutdown` flips.
pub fn spawn(
    listener: std::net::TcpListener,
    state: Arc<State>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<thread::JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    thread::Builder::new()
        .name("tollgate-admin".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("admin runtime");
            rt.block_on(serve(listener, state, shutdown));
        })
}

async fn serve(
    listener: std::net::TcpListener,
    state: Arc<State>,
    mut shutdown: watch::Receiver<bool>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(component = "admin", error = %e, "cannot start admin listener");
            return;
        }
    };
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r { Ok(a) => a, Err(_) => continue },
            _ = shutdown.changed() => return,
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, &req)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn route(state: &State, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => {
            let body = state.readiness.body();
            let status = if body.ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json(status, serde_json::to_string(&body).unwrap_or_default())
        }
        "/metrics" => {
            let mut resp = text(StatusCode::OK, state.metrics.render(state.stats.as_deref()));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            resp
        }
        "/config" => json(StatusCode::OK, state.config_json.clone()),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /healthz, /readyz, /metrics, /config\n".into(),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}
