//! Admin HTTP on its own thread and runtime, away from the data plane: `/healthz`, `/readyz`
//! (programs attached, maps synced, listeners registered), `/metrics`, `/config` (effective
//! configuration; it holds no secrets), `/ca.crt` (the node CA to distribute to workloads),
//! `/backends`; for the operator views, [`api`] (`/api/status`, `/api/records`) and `/ui`
//! (one self-contained page, `ui.html`, polling those two).

pub mod api;

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
    /// The pid of the instance this one handed its listeners to (0: none). A handed-over
    /// instance is alive (`/healthz`) but not ready: it drains and waits to be stopped.
    pub handed_over_to: std::sync::atomic::AtomicU32,
    /// Why the last config reload was rejected (the previous config still serves).
    pub config_error: std::sync::Mutex<Option<String>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReadyBody {
    ready: bool,
    /// Which instance answered (after a handover the successor answers on the same port).
    pid: u32,
    listeners_registered: bool,
    maps_synced: bool,
    programs_attached: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    handed_over_to: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    config_error: Option<String>,
    #[serde(skip_serializing_if = "std::collections::HashMap::is_empty")]
    credential_errors: std::collections::HashMap<String, String>,
}

impl Readiness {
    fn body(&self) -> ReadyBody {
        let listeners_registered = self.listeners_registered.load(Ordering::Acquire);
        let maps_synced = self.maps_synced.load(Ordering::Acquire);
        let programs_attached = self.programs_attached.load(Ordering::Acquire);
        let handed_over_to = Some(self.handed_over_to.load(Ordering::Acquire)).filter(|pid| *pid != 0);
        ReadyBody {
            pid: std::process::id(),
            ready: listeners_registered && maps_synced && programs_attached && handed_over_to.is_none(),
            listeners_registered,
            maps_synced,
            programs_attached,
            handed_over_to,
            config_error: self.config_error.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            credential_errors: Default::default(),
        }
    }
}

/// What the admin handlers read.
pub struct State {
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
    pub stats: Option<Arc<Stats>>,
    /// The effective configuration as JSON (secrets are never in it: credentials are
    /// references to files or env vars).
    pub config_json: arc_swap::ArcSwap<String>,
    /// Node CA certificate (PEM), served at `/ca.crt`.
    pub ca_pem: Option<String>,
    pub credentials: Option<Arc<crate::auth::Store>>,
    /// Backend ejection state, served at `/backends`.
    pub health: Option<Arc<crate::route::health::Health>>,
    pub limits: Option<Arc<crate::limits::Store>>,
    /// `capture.pinPath`: where the program links that `tollgate_programs_attached` counts are.
    pub pin_path: Option<std::path::PathBuf>,
    /// The latest audit records and today's spend (`/api/records`, `/api/status`, `/ui`).
    pub recent: Option<Arc<crate::accounting::recent::Recent>>,
    /// `capture.failMode` (static: a restart changes it), shown by `/api/status`.
    pub fail_mode: Option<crate::config::FailMode>,
    /// When this instance started (its uptime in `/api/status`).
    pub started: std::time::Instant,
    /// Rates of the metrics' totals, sampled once a second by the admin runtime.
    pub rates: api::Rates,
}

/// How often the rates are sampled.
const RATE_SAMPLE_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);

/// Starts the admin server on `listener` in a thread with a current-thread runtime. It stops
/// when `shutdown` flips.
pub fn spawn(
    listener: std::net::TcpListener,
    state: Arc<State>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<thread::JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    thread::Builder::new().name("tollgate-admin".into()).spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("admin runtime");
        rt.block_on(serve(listener, state, shutdown));
    })
}

async fn serve(listener: std::net::TcpListener, state: Arc<State>, mut shutdown: watch::Receiver<bool>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(component = "admin", error = %e, "cannot start admin listener");
            return;
        }
    };
    let sampler = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RATE_SAMPLE_PERIOD);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                state.rates.sample(&state.metrics.totals, std::time::Instant::now());
            }
        })
    };
    let _sampler = AbortOnDrop(sampler);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, _) = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            r = listener.accept() => match r { Ok(a) => a, Err(_) => continue },
            // Reaps finished connections so the set stays as large as the open ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (state, mut stop) = (state.clone(), shutdown.clone());
        connections.spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, &req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = async { stop.wait_for(|stop| *stop).await.is_ok() } => {
                    // Answers what is in flight, then closes (an idle connection at once).
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    // A request accepted before the stop (a probe arriving as a successor takes over: the
    // listening socket is shared, and from now on only the successor accepts on it) is
    // answered, not reset as the runtime goes; idle connections close at once, and a slow
    // one is let go after the deadline.
    let _ = tokio::time::timeout(ADMIN_DRAIN, async { while connections.join_next().await.is_some() {} }).await;
}

/// How long the admin server's open connections may take to finish once it stops.
const ADMIN_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Stops a task when dropped (the sampler ends with the server).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The dashboard: one page, its CSS and JS inline, nothing fetched but the JSON above.
const UI_HTML: &str = include_str!("ui.html");

fn route(state: &State, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let q = req.uri().query();
    match req.uri().path() {
        "/api/status" => match api::status(state, q) {
            Ok(s) => json(StatusCode::OK, serde_json::to_string(&s).unwrap_or_default()),
            Err(e) => text(StatusCode::BAD_REQUEST, format!("{e}\n")),
        },
        "/api/records" => match api::records(state.recent.as_deref(), q) {
            Ok(body) => {
                let mut resp = json(StatusCode::OK, String::new());
                *resp.body_mut() = Full::new(Bytes::from(body));
                resp
            }
            Err(e) => text(StatusCode::BAD_REQUEST, format!("{e}\n")),
        },
        "/ui" | "/ui/" => {
            let mut resp = text(StatusCode::OK, UI_HTML.to_string());
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/html; charset=utf-8"),
            );
            // Nothing but this page and the admin port's own JSON: no external asset can load.
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                header::HeaderValue::from_static(
                    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                     connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'",
                ),
            );
            resp
        }
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => {
            let mut body = state.readiness.body();
            if let Some(c) = &state.credentials {
                body.credential_errors = c.errors();
            }
            let status = if body.ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json(status, serde_json::to_string(&body).unwrap_or_default())
        }
        "/backends" => {
            let statuses = state.health.as_ref().map(|h| h.statuses()).unwrap_or_default();
            json(
                StatusCode::OK,
                serde_json::to_string_pretty(&statuses).unwrap_or_default(),
            )
        }
        "/metrics" => {
            if let Some(h) = &state.health {
                let statuses = h.statuses();
                state
                    .metrics
                    .set_backend_states(statuses.iter().map(|s| (s.backend.as_str(), s.state != "healthy")));
            }
            if let Some(l) = &state.limits {
                state.metrics.limit_store_degraded.set(i64::from(l.is_degraded()));
                state.metrics.limit_store_dropped.set(l.dropped_pending() as i64);
                state.metrics.set_budget_used(l.budget_used());
            }
            if let Some(pins) = &state.pin_path {
                state
                    .metrics
                    .programs_attached
                    .set(crate::ebpf::attached_programs(pins) as i64);
            }
            let mut resp = text(
                StatusCode::OK,
                state.metrics.render(state.stats.as_deref().map(|s| s.read())),
            );
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
            );
            resp
        }
        "/config" => json(StatusCode::OK, state.config_json.load().to_string()),
        "/ca.crt" => match &state.ca_pem {
            Some(pem) => {
                let mut resp = text(StatusCode::OK, pem.clone());
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("application/x-pem-file"),
                );
                resp
            }
            None => text(StatusCode::NOT_FOUND, "no node CA\n".into()),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /healthz, /readyz, /metrics, /config, /ca.crt, /backends, /api/status, \
             /api/records, /ui\n"
                .into(),
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

#[cfg(test)]
mod tests {
    use std::{
        io::{Read, Write},
        net::TcpStream,
        time::{Duration, Instant},
    };

    use super::*;

    fn state() -> Arc<State> {
        Arc::new(State {
            metrics: Arc::new(Metrics::new()),
            readiness: Default::default(),
            stats: None,
            config_json: arc_swap::ArcSwap::from_pointee(String::new()),
            ca_pem: None,
            credentials: None,
            health: None,
            limits: None,
            pin_path: None,
            recent: None,
            fail_mode: None,
            started: Instant::now(),
            rates: Default::default(),
        })
    }

    /// A request the server had accepted when it was told to stop (a probe as a successor
    /// takes over the shared socket) is answered, not reset; an idle keep-alive connection is
    /// closed at once; the thread ends.
    #[test]
    fn a_stop_answers_what_was_accepted_and_closes_idle_connections() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = watch::channel(false);
        let thread = spawn(listener, state(), stopped).unwrap();

        let mut idle = TcpStream::connect(addr).unwrap();
        idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let mut buf = [0u8; 512];
        let n = idle.read(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

        let mut busy = TcpStream::connect(addr).unwrap();
        busy.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(200));
        stop.send(true).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        busy.write_all(b"\r\n").unwrap();
        busy.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut answer = String::new();
        busy.read_to_string(&mut answer).expect("answered, not reset");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");

        idle.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        assert_eq!(idle.read(&mut buf).unwrap(), 0, "an idle connection is closed");
        let started = Instant::now();
        thread.join().unwrap();
        assert!(started.elapsed() < ADMIN_DRAIN);
    }
}
