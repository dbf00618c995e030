//! DNS learning (docs/config.md#dns-learning): workloads' DNS queries, redirected here by the
//! kernel programs, are forwarded unchanged to the server each workload asked; answers that
//! name a governed hostname (after CNAME chains, wildcards included) have their addresses put
//! in the endpoint maps before the workload sees them, so its first connect is captured.
//!
//! - `answer`: reading an answer and matching it against the providers' hostname patterns.
//! - `forwarder`: the UDP and TCP sockets, the forwarding, and the counts.
//! - [`Learner`]: hands what an answer taught to the endpoint sync task (`ebpf::endpoints`),
//!   which owns the maps, and waits until they hold it.

pub mod answer;
pub mod forwarder;

use std::{net::IpAddr, time::Duration};

use tokio::sync::{mpsc, oneshot};

/// What one answer taught: the addresses of a governed name.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Learned {
    /// The name asked (lowercase).
    pub name: String,
    /// The providers' hostname patterns the answer's names matched (as in `Provider::hostnames`).
    pub patterns: Vec<String>,
    pub addrs: Vec<IpAddr>,
    /// The answer's TTL (before clamping to `dns.minTtl`/`dns.maxTtl`).
    pub ttl: Duration,
}

/// A learned answer and the way to say the maps hold it.
pub type LearnRequest = (Learned, oneshot::Sender<()>);

/// The sending side, held by the forwarder.
#[derive(Clone)]
pub struct Learner(mpsc::Sender<LearnRequest>);

/// Answers queued for the sync task at most; beyond, the forwarder waits.
const LEARN_QUEUE: usize = 1024;

impl Learner {
    pub fn channel() -> (Learner, mpsc::Receiver<LearnRequest>) {
        let (tx, rx) = mpsc::channel(LEARN_QUEUE);
        (Learner(tx), rx)
    }

    /// Hands `learned` over and waits (at most `within`) until the endpoint maps hold it.
    /// `false`: not confirmed in time (the answer goes out anyway: DNS is never held back).
    pub async fn learn(&self, learned: Learned, within: Duration) -> bool {
        let (ack, done) = oneshot::channel();
        let sent = async {
            self.0.send((learned, ack)).await.ok()?;
            done.await.ok()
        };
        matches!(tokio::time::timeout(within, sent).await, Ok(Some(())))
    }
}
