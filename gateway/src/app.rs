//! `tollgate run`: binds the listeners, loads and attaches the eBPF programs, syncs the
//! endpoint maps, serves, and on SIGTERM/SIGINT drains and detaches.
//!
//! Start-up order matters: listeners are bound and registered in the SOCKMAP before the
//! programs attach (a program that found no listener would let connects through), and the
//! endpoint maps are synced before readiness is reported.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use anyhow::{bail, Context as _};
use gateway_common::{
    RedirectConfig, FLAG_FAIL_CLOSED, FLAG_HAS_HOST6, FLAG_HAS_NODE4, FLAG_HAS_NODE6, LISTENER_HOST4, LISTENER_HOST6,
    LISTENER_NODE4, LISTENER_NODE6,
};
use serde::Serialize;
use tokio::{net::TcpListener, sync::watch};

use arc_swap::ArcSwap;

mod dns;

use crate::{
    admin, auth,
    capture::{self, tls, Drain, Via},
    config::{Config, FailMode},
    ebpf::{self, endpoints},
    handover, identity, proxy,
    proxy::Snapshot,
    socket::{ip4_to_word, ip_to_words, netns_cookie},
    telemetry::{jsonl, Metrics},
};

/// How often the config file and credential files are checked for changes (1 second).
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Credentials that name an env var read it from the process environment.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// How long in-flight connections may run on after a stop signal.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// Written to `--ready-file` once everything is attached and synced.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadyInfo {
    pub pid: u32,
    /// The DNS forwarder's addresses (UDP and TCP), when `dns.learn` is on.
    pub dns: Vec<SocketAddr>,
    pub listener4: Option<SocketAddr>,
    pub listener6: Option<SocketAddr>,
    pub node4: Option<SocketAddr>,
    pub node6: Option<SocketAddr>,
    pub admin: SocketAddr,
    pub cgroup: PathBuf,
}

pub fn run(config: Config, config_path: PathBuf, ready_file: Option<PathBuf>) -> anyhow::Result<()> {
    raise_fd_limit();
    // One worker: a current-thread runtime, with no work-stealing machinery and no wake-ups of
    // other workers (docs/benchmarks.md).
    let rt = if config.worker_threads == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.worker_threads)
            .thread_name("tollgate-proxy")
            .enable_all()
            .build()
    }
    .context("building the proxy runtime")?;
    rt.block_on(run_async(config, config_path, ready_file))
}

/// Accept queue length asked for (the kernel caps it at `net.core.somaxconn`). Bursts of
/// hundreds of simultaneous connects from one workload are normal for agents.
const LISTEN_BACKLOG: u32 = 4096;

/// A listener for `addr`: the predecessor's socket for `slot` when it handed one over for
/// that address (port 0 takes whatever port it had), else a new one. New ones set
/// SO_REUSEPORT, so that a successor can bind beside a predecessor that cannot hand over.
async fn bind(
    addr: Option<SocketAddr>,
    slot: &str,
    inherited: Option<&mut handover::Inherited>,
) -> anyhow::Result<Option<TcpListener>> {
    let Some(addr) = addr else { return Ok(None) };
    if let Some(socket) = inherited.and_then(|i| i.take(slot, addr)) {
        socket.set_nonblocking(true)?;
        return Ok(Some(TcpListener::from_std(socket)?));
    }
    crate::socket::listen_shared(addr, LISTEN_BACKLOG)
        .map(Some)
        .with_context(|| format!("cannot bind the {slot} listener on {addr}"))
}

/// The redirect listeners, bound before anything is attached.
struct Bound {
    host4: TcpListener,
    host6: Option<TcpListener>,
    node4: Option<TcpListener>,
    node6: Option<TcpListener>,
}

impl Bound {
    async fn bind(config: &Config, mut inherited: Option<&mut handover::Inherited>) -> anyhow::Result<Bound> {
        let l = &config.listener;
        Ok(Bound {
            host4: bind(l.host4, "host4", inherited.as_deref_mut())
                .await?
                .context("no IPv4 listener")?,
            host6: bind(l.host6, "host6", inherited.as_deref_mut()).await?,
            node4: bind(l.node4, "node4", inherited.as_deref_mut()).await?,
            node6: bind(l.node6, "node6", inherited).await?,
        })
    }

    /// What the ready file says.
    fn ready_info(&self, admin: SocketAddr, cgroup: PathBuf) -> anyhow::Result<ReadyInfo> {
        Ok(ReadyInfo {
            pid: std::process::id(),
            dns: Vec::new(),
            listener4: Some(self.host4.local_addr()?),
            listener6: self.host6.as_ref().map(|l| l.local_addr()).transpose()?,
            node4: self.node4.as_ref().map(|l| l.local_addr()).transpose()?,
            node6: self.node6.as_ref().map(|l| l.local_addr()).transpose()?,
            admin,
            cgroup,
        })
    }

    /// Each listener there is: its `LISTENER_*` index in the kernel's map, its handover slot
    /// name, the socket.
    fn each(&self) -> impl Iterator<Item = (u32, &'static str, &TcpListener)> {
        [
            (LISTENER_HOST4, "host4", Some(&self.host4)),
            (LISTENER_HOST6, "host6", self.host6.as_ref()),
            (LISTENER_NODE4, "node4", self.node4.as_ref()),
            (LISTENER_NODE6, "node6", self.node6.as_ref()),
        ]
        .into_iter()
        .filter_map(|(index, slot, l)| l.map(|l| (index, slot, l)))
    }

    /// The listeners' addresses by `LISTENER_*` index.
    fn addresses(&self) -> anyhow::Result<Vec<(u32, SocketAddr)>> {
        self.each().map(|(index, _, l)| Ok((index, l.local_addr()?))).collect()
    }

    /// The listening sockets by handover slot (valid while `self` lives).
    fn slots(&self) -> Vec<(&'static str, std::os::fd::RawFd)> {
        use std::os::fd::AsRawFd as _;
        self.each().map(|(_, slot, l)| (slot, l.as_raw_fd())).collect()
    }

    /// Puts the listeners in the kernel's `LISTENERS` map: a connect program redirects only
    /// to a listener that is there (and alive).
    fn register(&self, loaded: &mut ebpf::Loaded) -> anyhow::Result<()> {
        for (index, _, l) in self.each() {
            loaded.register_listener(index, l)?;
        }
        Ok(())
    }
}

/// What the L7 side is made of: shared state, the TLS acceptor, and the tasks and writers to
/// finish on shutdown.
struct L7Parts {
    l7: Arc<proxy::L7>,
    ca: Arc<tls::NodeCa>,
    acceptor: tokio_rustls::TlsAcceptor,
    audit_writer: jsonl::Writer,
    span_task: Option<tokio::task::JoinHandle<()>>,
}

/// Node CA, credentials, audit log, span export, routes and clients.
fn start_l7(config: &Arc<Config>, metrics: &Arc<Metrics>, shutdown: &watch::Receiver<bool>) -> anyhow::Result<L7Parts> {
    let ca = Arc::new(tls::NodeCa::load_or_create(&config.tls.ca_cert, &config.tls.ca_key)?);
    tracing::info!(ca = %ca.cert_path.display(), "node CA ready: workloads must trust it (docs/trust.md)");
    let credentials = Arc::new(auth::Store::default());
    credentials.refresh(&config.credentials, &env_var);
    let full = metrics.log_queue_full("audit");
    let node = crate::config::generation::node_name();
    let (audit, audit_writer) = match &config.audit_export {
        Some(export) => {
            let exporter =
                crate::telemetry::otlp_logs::start(export.clone(), node.clone(), metrics.audit_export.clone())
                    .context("starting the audit exporter")?;
            tracing::info!(endpoint = %export.endpoint, "exporting audit records as OTLP logs");
            jsonl::Writer::start_exporting("audit", config.audit.clone(), jsonl::WhenFull::Wait, full, exporter)
        }
        None => jsonl::Writer::start("audit", config.audit.clone(), jsonl::WhenFull::Wait, full),
    }
    .with_context(|| format!("cannot open the audit log {:?}", config.audit.path))?;
    let (spans, span_task) = match &config.otlp_endpoint {
        Some(endpoint) => {
            tracing::info!(%endpoint, "exporting spans over OTLP/HTTP");
            let (sink, task) = crate::telemetry::otlp::start(
                endpoint.clone(),
                config.service_name.clone(),
                metrics.spans_dropped.clone(),
                shutdown.clone(),
            );
            (Some(sink), Some(task))
        }
        None => (None, None),
    };
    let l7 = Arc::new(proxy::L7 {
        snapshot: ArcSwap::from_pointee(Snapshot::applied(config.clone(), 1, &node, &audit)?),
        instance: proxy::instance_id(),
        credentials,
        metrics: metrics.clone(),
        audit,
        spans,
        health: Arc::new(crate::route::health::Health::new(config.outlier)),
        limits: Arc::new(crate::limits::Store::new(&config.limit_store)),
        recent: Default::default(),
        mcp_streams: Default::default(),
    });
    // Leaves only for intercept hostnames of the config in force.
    let governed = {
        let l7 = l7.clone();
        Box::new(move |name: &str| l7.snapshot.load().config.intercepts(name))
    };
    let resolver = tls::LeafResolver::new(ca.clone(), config.tls.leaf_ttl, governed);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls::server_config(Arc::new(resolver)));
    Ok(L7Parts {
        l7,
        ca,
        acceptor,
        audit_writer,
        span_task,
    })
}

/// The endpoint sync task, after its first round (readiness means "maps synced").
struct Endpoints {
    task: tokio::task::JoinHandle<()>,
    claims: Arc<endpoints::SharedClaims>,
    providers: watch::Sender<Arc<Vec<crate::config::Provider>>>,
    /// Where DNS learning hands its answers to the task.
    learner: crate::dns::Learner,
}

async fn sync_endpoints(
    config: &Config,
    maps: endpoints::EndpointMaps,
    metrics: &Arc<Metrics>,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<Endpoints> {
    let (providers, providers_rx) = watch::channel(Arc::new(config.providers.clone()));
    let claims = Arc::new(endpoints::SharedClaims::default());
    let (first_tx, first_rx) = tokio::sync::oneshot::channel();
    let (learner, learn_rx) = crate::dns::Learner::channel();
    let task = tokio::spawn(endpoints::run_sync(
        maps,
        providers_rx,
        config.dns.clone(),
        endpoints::AnyResolver::for_config(&config.dns),
        learn_rx,
        Arc::new(EndpointOutputs {
            claims: claims.clone(),
            metrics: metrics.clone(),
        }),
        first_tx,
        shutdown.clone(),
    ));
    let stats = first_rx.await.context("endpoint sync task ended")??;
    tracing::info!(component = "endpoints", entries = stats.total, "endpoint maps synced");
    Ok(Endpoints {
        task,
        claims,
        providers,
        learner,
    })
}

/// The connection log's target.
fn connection_log(config: &Config) -> jsonl::Target {
    match &config.connection_log {
        crate::config::LogTarget::Stdout => jsonl::Target::stdout(),
        crate::config::LogTarget::File(p) => jsonl::Target {
            path: Some(p.clone()),
            ..jsonl::Target::stdout()
        },
    }
}

/// One accept loop per listener.
fn serve(
    bound: Bound,
    shared: Arc<capture::Shared>,
    drain: &Drain,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut serving = Vec::new();
    for (listener, via) in [
        (Some(bound.host4), Via::Host),
        (bound.host6, Via::Host),
        (bound.node4, Via::Node),
        (bound.node6, Via::Node),
    ] {
        if let Some(listener) = listener {
            tracing::info!(addr = %listener.local_addr()?, via = via.as_str(), "listening");
            serving.push(tokio::spawn(capture::serve(
                listener,
                via,
                shared.clone(),
                drain.watcher(),
                shutdown.clone(),
            )));
        }
    }
    Ok(serving)
}

async fn run_async(config: Config, config_path: PathBuf, ready_file: Option<PathBuf>) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::new());
    metrics.set_backends(config.backends.iter().map(|b| b.name.as_str()));
    let readiness = Arc::new(admin::Readiness::default());
    // A running predecessor hands its listening sockets over (docs/upgrades.md).
    let mut inherited = take_over(&config);
    let bound = Bound::bind(&config, inherited.as_mut()).await?;
    let host_netns = netns_cookie(&bound.host4).context("reading SO_NETNS_COOKIE (needs Linux 5.14+)")?;
    let cgroup = match &config.capture.cgroup_path {
        Some(p) => p.clone(),
        None => ebpf::cgroup2_root()?,
    };
    let cgroup_root = ebpf::cgroup2_root().unwrap_or_else(|_| cgroup.clone());

    let dns_sockets = dns::DnsSockets::bind(&config, &bound.addresses()?)?;
    let (mut loaded, maps) = load(&config, &bound, dns_sockets.as_ref(), host_netns)?;
    readiness.listeners_registered.store(true, Ordering::Release);

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    // The admin server outlives the data plane after a handover (alive, not ready).
    let (admin_stop_tx, admin_stop_rx) = watch::channel(false);
    let parts = start_l7(&config, &metrics, &shutdown_rx)?;
    let endpoints = sync_endpoints(&config, maps.endpoints, &metrics, &shutdown_rx).await?;
    readiness.maps_synced.store(true, Ordering::Release);
    let attached = loaded.attach(&cgroup, &config.capture.pin_path)?;
    readiness.programs_attached.store(true, Ordering::Release);
    tracing::info!(
        cgroup = %cgroup.display(),
        fail_mode = ?config.capture.fail_mode,
        replaced = attached.replaced,
        created = attached.created,
        "programs attached"
    );

    let admin_listener = admin_listener(&config, inherited.as_mut())?;
    let admin_addr = admin_listener.local_addr()?;
    let admin_fd = std::os::fd::AsRawFd::as_raw_fd(&admin_listener);
    let admin_state = admin_state(&config, &metrics, &readiness, maps.stats, &parts, started);
    let admin_thread = admin::spawn(admin_listener, admin_state.clone(), admin_stop_rx)?;
    let reload_task = tokio::spawn(watch_config(
        config_path,
        config.clone(),
        parts.l7.clone(),
        endpoints.providers.clone(),
        admin_state,
        shutdown_rx.clone(),
    ));

    let full = metrics.log_queue_full("connlog");
    let (log, log_writer) = jsonl::Writer::start("connlog", connection_log(&config), jsonl::WhenFull::Drop, full)
        .with_context(|| format!("cannot open the connection log {}", config.connection_log))?;
    let mut info = bound.ready_info(admin_addr, cgroup.clone())?;
    let conns = Arc::new(maps.conns);
    let flows = dns::KernelFlows {
        udp: maps.dns_flows,
        tcp: conns.clone(),
        host_netns_cookie: host_netns,
    };
    let forwarder = flows.forwarder(&config, endpoints.learner, endpoints.providers.subscribe(), &metrics);
    let shared = Arc::new(capture::Shared {
        config: config.clone(),
        conns,
        claims: endpoints.claims,
        identity: identity::Resolver::new(cgroup_root, host_netns),
        pods: config
            .cri_socket
            .as_deref()
            .map(|socket| identity::cri::Pods::new(socket, config.record_labels.clone())),
        host_netns_cookie: host_netns,
        metrics: metrics.clone(),
        log,
        l7: parts.l7,
        tls: parts.acceptor,
        next_id: 1.into(),
        slots: Arc::new(tokio::sync::Semaphore::new(config.max_connections)),
    });
    let mut slots = bound.slots();
    slots.push(("admin", admin_fd));
    let drain = Drain::new();
    let mut serving = serve(bound, shared, &drain, &shutdown_rx)?;
    if let Some(sockets) = dns_sockets {
        info.dns = sockets.addrs();
        serving.extend(sockets.serve(&forwarder, &shutdown_rx));
    }
    release_predecessor(inherited);
    let mut handover = config
        .capture
        .handover_path
        .clone()
        .map(|path| tokio::spawn(handover::serve(path, slots, shutdown_rx.clone())));
    tracing::info!(admin = %admin_addr, "ready");
    if let Some(path) = ready_file {
        write_ready_file(&path, &info)?;
    }

    let successor = tokio::select! {
        r = wait_for_signal() => { r?; None }
        pid = handed_over(&mut handover) => pid,
    };
    Running {
        shutdown: shutdown_tx,
        serving,
        drain,
        tasks: [Some(endpoints.task), Some(reload_task), parts.span_task],
        writers: [log_writer, parts.audit_writer],
        admin_stop: admin_stop_tx,
        admin_thread,
    }
    .stop(&readiness, successor)
    .await?;
    detach(&config, loaded, successor.is_some());
    Ok(())
}

/// What the admin server reads.
fn admin_state(
    config: &Arc<Config>,
    metrics: &Arc<Metrics>,
    readiness: &Arc<admin::Readiness>,
    stats: ebpf::Stats,
    parts: &L7Parts,
    started: std::time::Instant,
) -> Arc<admin::State> {
    Arc::new(admin::State {
        metrics: metrics.clone(),
        readiness: readiness.clone(),
        stats: Some(Arc::new(stats)),
        config_json: ArcSwap::from_pointee(serde_json::to_string_pretty(config.as_ref()).unwrap_or_default()),
        ca_pem: Some(parts.ca.cert_pem.clone()),
        credentials: Some(parts.l7.credentials.clone()),
        health: Some(parts.l7.health.clone()),
        limits: Some(parts.l7.limits.clone()),
        pin_path: Some(config.capture.pin_path.clone()),
        recent: Some(parts.l7.recent.clone()),
        fail_mode: Some(config.capture.fail_mode),
        started,
        rates: Default::default(),
    })
}

/// Loads the programs, tells them where the listeners and the DNS forwarder are, and registers
/// those sockets as alive. The maps a predecessor pinned are opened and shared: its redirect
/// records stay valid for whichever instance accepts their connection.
fn load(
    config: &Config,
    bound: &Bound,
    dns_sockets: Option<&dns::DnsSockets>,
    host_netns: u64,
) -> anyhow::Result<(ebpf::Loaded, ebpf::Maps)> {
    let (mut loaded, maps) = ebpf::Loaded::load(&config.capture.pin_path)?;
    let mut redirect = redirect_config(config, bound, host_netns)?;
    if let Some(sockets) = dns_sockets {
        sockets.configure(&mut redirect)?;
        sockets.register(&mut loaded)?;
    }
    loaded.set_config(&redirect)?;
    bound.register(&mut loaded)?;
    Ok((loaded, maps))
}

/// What runs once the instance serves, in the order it stops.
struct Running {
    shutdown: watch::Sender<bool>,
    serving: Vec<tokio::task::JoinHandle<()>>,
    drain: Drain,
    /// Endpoint sync, config watcher, span export.
    tasks: [Option<tokio::task::JoinHandle<()>>; 3],
    /// Connection log and audit log.
    writers: [jsonl::Writer; 2],
    admin_stop: watch::Sender<bool>,
    admin_thread: std::thread::JoinHandle<()>,
}

impl Running {
    /// Stops accepting, drains the connections and flushes the logs. After a handover to
    /// `successor`, waits for SIGTERM before stopping the admin server's thread: exiting at once
    /// would look like a crash to a supervisor, which would start us again (and we would take
    /// over back).
    async fn stop(self, readiness: &admin::Readiness, successor: Option<u32>) -> anyhow::Result<()> {
        match successor {
            Some(pid) => {
                readiness.handed_over_to.store(pid, Ordering::Release);
                // The successor answers on the admin socket from now on (probes included).
                let _ = self.admin_stop.send(true);
                tracing::info!(successor = pid, "handed over: no new connections here; draining")
            }
            None => tracing::info!("stopping: draining connections"),
        }
        let _ = self.shutdown.send(true);
        for task in self.serving {
            let _ = task.await;
        }
        self.drain.drain(DRAIN_DEADLINE).await;
        for task in self.tasks.into_iter().flatten() {
            let _ = task.await;
        }
        // Every sink is gone with the connection tasks: flush the logs.
        for writer in self.writers {
            writer.finish();
        }
        if successor.is_some() {
            tracing::info!("drained; waiting to be stopped");
            wait_for_signal().await?;
        }
        let _ = self.admin_stop.send(true);
        let _ = self.admin_thread.join();
        Ok(())
    }
}

/// The admin listener: the predecessor's when it handed one over for this address (the
/// kubelet's probes of both pods go to one port), else a new one.
fn admin_listener(
    config: &Config,
    inherited: Option<&mut handover::Inherited>,
) -> anyhow::Result<std::net::TcpListener> {
    let addr = config.admin_address;
    if let Some(socket) = inherited.and_then(|i| i.take("admin", addr)) {
        return Ok(socket);
    }
    std::net::TcpListener::bind(addr).with_context(|| format!("cannot bind the admin listener on {addr}"))
}

/// Tells the predecessor (if any) that this instance serves: it stops accepting and drains.
fn release_predecessor(inherited: Option<handover::Inherited>) {
    let Some(predecessor) = inherited else { return };
    let pid = predecessor.pid;
    match predecessor.ready() {
        Ok(()) => tracing::info!(predecessor = pid, "took over: the previous instance drains"),
        Err(e) => tracing::warn!(predecessor = pid, error = %e, "could not tell the previous instance to drain"),
    }
}

/// The predecessor's listeners, if one serves the handover socket.
fn take_over(config: &Config) -> Option<handover::Inherited> {
    let path = config.capture.handover_path.as_ref()?;
    match handover::take_over(path) {
        Ok(Some(inherited)) => {
            tracing::info!(predecessor = inherited.pid, path = %path.display(), "taking over from a running instance");
            Some(inherited)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "no handover from the previous instance: binding anew");
            None
        }
    }
}

/// Resolves with the successor's pid once one took the listeners over; never without one.
async fn handed_over(task: &mut Option<tokio::task::JoinHandle<std::io::Result<Option<u32>>>>) -> Option<u32> {
    let Some(t) = task.as_mut() else {
        return std::future::pending().await;
    };
    let result = t.await;
    *task = None;
    match result {
        Ok(Ok(Some(pid))) => Some(pid),
        Ok(Ok(None)) => std::future::pending().await,
        Ok(Err(e)) => {
            tracing::warn!(component = "handover", error = %e, "cannot serve handovers: upgrades will bind anew");
            std::future::pending().await
        }
        Err(e) => {
            tracing::warn!(component = "handover", error = %e, "the handover task failed");
            std::future::pending().await
        }
    }
}

/// After a handover the programs and maps belong to the successor: nothing is touched.
/// Otherwise fail-open removes the pins (the programs detach, captured workloads connect
/// directly) and fail-closed keeps them (captured connects are refused until an instance runs
/// again or `tollgate detach` removes them).
fn detach(config: &Config, loaded: ebpf::Loaded, handed_over: bool) {
    drop(loaded);
    if handed_over {
        tracing::info!("programs and maps stay with the instance that took over");
        return;
    }
    match config.capture.fail_mode {
        FailMode::Open => {
            tracing::info!("detaching programs: captured workloads now connect directly");
            if let Err(e) = ebpf::remove_pins(&config.capture.pin_path) {
                tracing::warn!(error = %e, "could not remove the pins: `tollgate detach` removes them");
            }
        }
        FailMode::Closed => tracing::warn!(
            pins = %config.capture.pin_path.display(),
            "fail-closed: programs stay attached and captured connects fail until tollgate runs again or `tollgate detach` removes them"
        ),
    }
}

fn redirect_config(config: &Config, bound: &Bound, host_netns_cookie: u64) -> anyhow::Result<RedirectConfig> {
    let (host4, host6, node4, node6) = (
        &bound.host4,
        bound.host6.as_ref(),
        bound.node4.as_ref(),
        bound.node6.as_ref(),
    );
    let mut rc = RedirectConfig {
        host_netns_cookie,
        mark: config.capture.mark,
        ..Default::default()
    };
    let v4 = |l: &TcpListener| -> anyhow::Result<(u32, u16)> {
        match l.local_addr()? {
            SocketAddr::V4(a) => Ok((ip4_to_word(*a.ip()), a.port().to_be())),
            other => bail!("{other} is not an IPv4 address"),
        }
    };
    let v6 = |l: &TcpListener| -> anyhow::Result<([u32; 4], u16)> {
        let a = l.local_addr()?;
        Ok((ip_to_words(a.ip()), a.port().to_be()))
    };
    (rc.proxy_ip4, rc.proxy_port4) = v4(host4)?;
    if let Some(l) = host6 {
        (rc.proxy_ip6, rc.proxy_port6) = v6(l)?;
        rc.flags |= FLAG_HAS_HOST6;
    }
    if let Some(l) = node4 {
        (rc.node_ip4, rc.node_port4) = v4(l)?;
        rc.flags |= FLAG_HAS_NODE4;
    }
    if let Some(l) = node6 {
        (rc.node_ip6, rc.node_port6) = v6(l)?;
        rc.flags |= FLAG_HAS_NODE6;
    }
    if config.capture.fail_mode == FailMode::Closed {
        rc.flags |= FLAG_FAIL_CLOSED;
    }
    Ok(rc)
}

fn write_ready_file(path: &Path, info: &ReadyInfo) -> anyhow::Result<()> {
    // Write then rename, so a reader never sees half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(info)?).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// Watches the config file (its content, so symlink swaps of ConfigMaps count) and the
/// credential files. A valid new config replaces the dynamic state for the next request; an
/// invalid one is logged, counted, shown on `/readyz`, and the last good config keeps serving.
async fn watch_config(
    path: PathBuf,
    mut current: Arc<Config>,
    l7: Arc<proxy::L7>,
    providers_tx: watch::Sender<Arc<Vec<crate::config::Provider>>>,
    admin: Arc<admin::State>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last = std::fs::read(&path).unwrap_or_default();
    let node = l7.snapshot.load().gateway.node.clone();
    let mut generation = 1;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(WATCH_INTERVAL) => {}
            _ = shutdown.changed() => return,
        }
        l7.credentials.refresh(&current.credentials, &env_var);
        let Ok(bytes) = std::fs::read(&path) else { continue };
        if bytes == last {
            continue;
        }
        last = bytes;
        let reloaded = std::str::from_utf8(&last)
            .map_err(|e| e.to_string())
            .and_then(|text| Config::parse(text).map_err(|e| e.to_string()))
            .and_then(|cfg| {
                let cfg = Arc::new(cfg);
                Snapshot::applied(cfg.clone(), generation + 1, &node, &l7.audit)
                    .map(|s| (cfg, s))
                    .map_err(|e| e.to_string())
            });
        match reloaded {
            Ok((cfg, snapshot)) => {
                for field in static_changes(&current, &cfg) {
                    tracing::warn!(
                        field,
                        "config reload: this setting needs a restart; the running value is kept"
                    );
                }
                l7.snapshot.store(Arc::new(snapshot));
                l7.health.set_policy(cfg.outlier);
                l7.credentials.refresh(&cfg.credentials, &env_var);
                if serde_json::to_value(&cfg.providers).ok() != serde_json::to_value(&current.providers).ok() {
                    providers_tx.send_replace(Arc::new(cfg.providers.clone()));
                }
                admin
                    .config_json
                    .store(Arc::new(serde_json::to_string_pretty(&*cfg).unwrap_or_default()));
                *admin.readiness.config_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
                admin.metrics.config_reload(true);
                admin.metrics.set_backends(cfg.backends.iter().map(|b| b.name.as_str()));
                generation += 1;
                tracing::info!(path = %path.display(), generation, "config reloaded");
                current = cfg;
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "config reload rejected; the last good config keeps serving");
                *admin.readiness.config_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                admin.metrics.config_reload(false);
            }
        }
    }
}

/// Settings read once at start.
fn static_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let same = |a: &dyn erased::Json, b: &dyn erased::Json| a.json() == b.json();
    let mut changed = Vec::new();
    if !same(&old.listener, &new.listener) {
        changed.push("listener");
    }
    if old.admin_address != new.admin_address {
        changed.push("admin");
    }
    if !same(&old.capture, &new.capture) {
        changed.push("capture");
    }
    if old.connection_log != new.connection_log {
        changed.push("connectionLog");
    }
    if !same(&old.dns, &new.dns) {
        changed.push("dns");
    }
    if !same(&old.tls, &new.tls) {
        changed.push("tls");
    }
    if !same(&old.limit_store, &new.limit_store) {
        changed.push("limitStore");
    }
    if old.max_connections != new.max_connections {
        changed.push("proxy.maxConnections");
    }
    if old.worker_threads != new.worker_threads {
        changed.push("workerThreads");
    }
    if old.cri_socket != new.cri_socket {
        changed.push("identity.criSocket");
    }
    if old.record_labels != new.record_labels {
        changed.push("identity.recordLabels");
    }
    if old.otlp_endpoint != new.otlp_endpoint || old.service_name != new.service_name {
        changed.push("traces");
    }
    if old.audit != new.audit || old.audit_export != new.audit_export {
        changed.push("audit");
    }
    changed
}

mod erased {
    /// Compare config sections through their serialized form.
    pub(super) trait Json {
        fn json(&self) -> Option<serde_json::Value>;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> Option<serde_json::Value> {
            serde_json::to_value(self).ok()
        }
    }
}

/// What the endpoint sync task publishes goes to the proxy (claims) and the metrics.
struct EndpointOutputs {
    claims: Arc<endpoints::SharedClaims>,
    metrics: Arc<Metrics>,
}

impl endpoints::Publish for EndpointOutputs {
    fn claims(&self, claims: endpoints::Claims) {
        self.claims.replace(claims);
    }

    fn claim(&self, dst: SocketAddr, provider: &str) {
        self.claims.add(dst, provider);
    }

    fn endpoints(&self, total: usize) {
        self.metrics.set_endpoints(total);
    }

    fn dns_failure(&self, provider: &str) {
        self.metrics.dns_failure(provider);
    }

    fn learned_names(&self, n: usize) {
        self.metrics.dns_learned_names.set(n as i64);
    }
}

/// Every captured connection costs two descriptors: take the hard limit, not the soft one.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    #[expect(unsafe_code, reason = "getrlimit/setrlimit have no safe wrapper in std")]
    // SAFETY: a valid out-pointer, then the same struct back.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_names_every_setting_that_needs_a_restart() {
        let old = Config::parse("{}").unwrap();
        let new = Config::parse(
            "limitStore:\n  redis: \"127.0.0.1:6379\"\nproxy:\n  maxConnections: 10\nworkerThreads: 7\ntraces:\n  serviceName: x\naudit:\n  path: \"-\"\n",
        )
        .unwrap();
        assert_eq!(
            static_changes(&old, &new),
            ["limitStore", "proxy.maxConnections", "workerThreads", "traces", "audit"]
        );
        assert!(static_changes(&old, &Config::parse("{}").unwrap()).is_empty());
    }
}
