//! The DNS forwarder: UDP sockets and TCP listeners on the redirect listeners' addresses
//! (`dns.forwarderPort`), to which the kernel programs send workloads' queries to port 53.
//!
//! Each query goes on unchanged to the server the workload asked (found in the kernel's
//! records: `DNS_FLOWS` for datagrams, `CONNS` for TCP), from a socket carrying
//! `capture.mark`, so the programs let it through. The answer is read (`answer`); when it
//! names a governed hostname its addresses go to the endpoint sync task, and the answer goes
//! back to the workload only once the maps hold them (or after `LEARN_WAIT`). Bytes are never
//! changed: an answer that does not parse is passed on and counted. A query whose server cannot
//! be found or does not answer gets no answer, as from that server (the client retries).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, UdpSocket},
    sync::{watch, Semaphore},
};

use super::{
    answer::{self, Read},
    Learned, Learner,
};
use crate::{config::Provider, telemetry::Metrics};

/// Queries (datagrams and TCP connections) in flight at most; beyond, datagrams are dropped
/// and connections closed, counted as `busy`.
const MAX_IN_FLIGHT: usize = 4096;
/// How long an answer waits for the endpoint maps at most.
const LEARN_WAIT: Duration = Duration::from_secs(1);
/// A TCP connection idle this long (no query, no answer) is closed.
const TCP_IDLE: Duration = Duration::from_secs(30);

/// Where a redirected client's query was going.
pub trait Flows: Send + Sync + 'static {
    /// The server a datagram from `peer` was sent to.
    fn udp(&self, peer: SocketAddr) -> Option<SocketAddr>;
    /// The server a TCP connection from `peer` was opened to (taken once).
    fn tcp(&self, peer: SocketAddr) -> Option<SocketAddr>;
}

/// What happened to one query, as counted in `tollgate_dns_queries_total{outcome}`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Outcome {
    /// Answered; nothing governed in it.
    Answered,
    /// Answered; a governed name's addresses were put in the endpoint maps first.
    Learned,
    /// Answered with a governed name whose addresses the maps did not confirm in time.
    LearnLate,
    /// The answer did not parse (garbage, cut short): passed on untouched.
    Unparsed,
    /// The server did not answer in `dns.queryTimeout`, or could not be reached.
    UpstreamFailed,
    /// No kernel record of where the query was going.
    NoFlow,
    /// Too many queries in flight.
    Busy,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Learned => "learned",
            Outcome::LearnLate => "learn_late",
            Outcome::Unparsed => "unparsed",
            Outcome::UpstreamFailed => "upstream_failed",
            Outcome::NoFlow => "no_flow",
            Outcome::Busy => "busy",
        }
    }
}

/// One UDP socket and one TCP listener on the same address and port.
pub struct Pair {
    pub udp: UdpSocket,
    pub tcp: TcpListener,
}

impl Pair {
    /// Binds both on `addr`; port 0 picks one free for both.
    pub fn bind(addr: SocketAddr) -> std::io::Result<Pair> {
        let mut last = None;
        for _ in 0..16 {
            let udp = bind_udp(addr)?;
            let port = udp.local_addr()?.port();
            match crate::socket::listen_shared(SocketAddr::new(addr.ip(), port), 1024) {
                Ok(tcp) => return Ok(Pair { udp, tcp }),
                // The port UDP picked may be taken for TCP: pick again.
                Err(e) if addr.port() == 0 => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no free port")))
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.udp.local_addr()
    }
}

fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    // A successor binds beside its predecessor during an upgrade.
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// The forwarder's shared state.
pub struct Forwarder {
    flows: Arc<dyn Flows>,
    learner: Learner,
    /// The providers in force (the endpoint sync task's own copy).
    providers: watch::Receiver<Arc<Vec<Provider>>>,
    mark: u32,
    query_timeout: Duration,
    metrics: Arc<Metrics>,
    in_flight: Arc<Semaphore>,
}

impl Forwarder {
    pub fn new(
        flows: Arc<dyn Flows>,
        learner: Learner,
        providers: watch::Receiver<Arc<Vec<Provider>>>,
        mark: u32,
        query_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Arc<Forwarder> {
        Arc::new(Forwarder {
            flows,
            learner,
            providers,
            mark,
            query_timeout,
            metrics,
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        })
    }

    fn count(&self, transport: &'static str, outcome: Outcome) {
        self.metrics.dns_query(transport, outcome.as_str());
    }

    /// Serves datagrams on `socket` until shutdown.
    pub async fn serve_udp(self: Arc<Self>, socket: UdpSocket, mut shutdown: watch::Receiver<bool>) {
        let socket = Arc::new(socket);
        let mut buf = vec![0u8; 65_535];
        loop {
            let (n, peer) = tokio::select! {
                r = socket.recv_from(&mut buf) => match r {
                    Ok(got) => got,
                    Err(e) => {
                        tracing::debug!(component = "dns", error = %e, "receive failed");
                        continue;
                    }
                },
                _ = shutdown.changed() => return,
            };
            let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
                self.count("udp", Outcome::Busy);
                continue;
            };
            let query = buf[..n].to_vec();
            let (this, socket) = (self.clone(), socket.clone());
            tokio::spawn(async move {
                let outcome = this.udp_query(&socket, peer, &query).await;
                this.count("udp", outcome);
                drop(permit);
            });
        }
    }

    async fn udp_query(&self, socket: &UdpSocket, peer: SocketAddr, query: &[u8]) -> Outcome {
        let Some(server) = self.flows.udp(peer) else {
            return Outcome::NoFlow;
        };
        let answer = match tokio::time::timeout(self.query_timeout, self.ask_udp(server, query)).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                tracing::debug!(component = "dns", %server, error = %e, "server unreachable");
                return Outcome::UpstreamFailed;
            }
            Err(_) => return Outcome::UpstreamFailed,
        };
        let outcome = self.learn(&answer).await;
        if let Err(e) = socket.send_to(&answer, peer).await {
            tracing::debug!(component = "dns", %peer, error = %e, "answer not delivered");
        }
        outcome
    }

    /// Sends `query` to `server` from a fresh marked socket and returns the first datagram
    /// that answers it (same id); others are ignored.
    async fn ask_udp(&self, server: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
        let any = match server {
            SocketAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            SocketAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
        };
        let socket = UdpSocket::bind(any).await?;
        crate::socket::set_mark(&socket, self.mark)?;
        socket.connect(server).await?;
        socket.send(query).await?;
        loop {
            // Room for the largest datagram, not zeroed first (recv_buf fills it as it comes).
            let mut buf = Vec::with_capacity(65_535);
            socket.recv_buf(&mut buf).await?;
            if buf.len() >= 2 && query.len() >= 2 && buf[..2] == query[..2] {
                return Ok(buf);
            }
        }
    }

    /// Reads an answer and, when it names a governed hostname, has its addresses put in the
    /// endpoint maps.
    async fn learn(&self, answer: &[u8]) -> Outcome {
        let found = match answer::read(answer) {
            Read::Unparsed => return Outcome::Unparsed,
            Read::Nothing => return Outcome::Answered,
            Read::Addresses(found) => found,
        };
        let patterns = answer::governed(&self.providers.borrow(), &found);
        if patterns.is_empty() {
            return Outcome::Answered;
        }
        let learned = Learned {
            name: found.names[0].clone(),
            patterns,
            addrs: found.addrs,
            ttl: Duration::from_secs(u64::from(found.ttl)),
        };
        tracing::debug!(component = "dns", name = learned.name, addrs = ?learned.addrs, ttl = found.ttl, "learned");
        match self.learner.learn(learned, LEARN_WAIT).await {
            true => Outcome::Learned,
            false => Outcome::LearnLate,
        }
    }

    /// Accepts TCP connections on `listener` until shutdown.
    pub async fn serve_tcp(self: Arc<Self>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
        loop {
            let (stream, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(got) => got,
                    Err(e) => {
                        tracing::debug!(component = "dns", error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
                _ = shutdown.changed() => return,
            };
            let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
                self.count("tcp", Outcome::Busy);
                continue;
            };
            let this = self.clone();
            tokio::spawn(async move {
                this.tcp_connection(stream, peer).await;
                drop(permit);
            });
        }
    }

    /// Relays one TCP connection: the client's bytes as they come, the server's answers
    /// message by message (two-byte length, then the message), each read on its way.
    async fn tcp_connection(&self, mut client: TcpStream, peer: SocketAddr) {
        let Some(server) = self.flows.tcp(peer) else {
            self.count("tcp", Outcome::NoFlow);
            return;
        };
        let connect = async {
            let socket = match server {
                SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
                SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
            };
            crate::socket::set_mark(&socket, self.mark)?;
            socket.connect(server).await
        };
        let Ok(Ok(mut upstream)) = tokio::time::timeout(self.query_timeout, connect).await else {
            self.count("tcp", Outcome::UpstreamFailed);
            return;
        };
        let (mut client_read, mut client_write) = client.split();
        let (mut server_read, mut server_write) = upstream.split();
        let queries = async {
            let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
            let _ = server_write.shutdown().await;
        };
        let answers = async {
            loop {
                let mut len = [0u8; 2];
                match tokio::time::timeout(TCP_IDLE, server_read.read_exact(&mut len)).await {
                    Ok(Ok(_)) => {}
                    _ => break,
                }
                let mut message = vec![0u8; usize::from(u16::from_be_bytes(len))];
                let read = tokio::time::timeout(self.query_timeout, server_read.read_exact(&mut message)).await;
                if !matches!(read, Ok(Ok(_))) {
                    self.count("tcp", Outcome::UpstreamFailed);
                    break;
                }
                let outcome = self.learn(&message).await;
                self.count("tcp", outcome);
                if client_write.write_all(&len).await.is_err() || client_write.write_all(&message).await.is_err() {
                    break;
                }
            }
            let _ = client_write.shutdown().await;
        };
        // Done when the server is: it closes (after the client did) or goes idle. A client
        // that closed its side still gets the answers to what it sent.
        tokio::pin!(queries, answers);
        tokio::select! {
            _ = &mut answers => {}
            _ = &mut queries => answers.await,
        }
    }
}
