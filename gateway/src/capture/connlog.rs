//! The connection log: one JSON line per captured connection (written through
//! [`crate::telemetry::jsonl`], off the data plane).

use serde::Serialize;

use crate::identity::Workload;

/// One line of the connection log.
#[derive(Debug, Serialize)]
pub struct ConnRecordLine<'a> {
    /// Always `connection` (the audit log's lines say `request`).
    pub record: &'static str,
    /// RFC 3339, UTC, microseconds.
    pub time: String,
    /// Process-unique connection id.
    pub id: u64,
    /// `host` (loopback listener) or `node` (a pod, through the node address).
    pub via: &'static str,
    pub client: String,
    pub original_dst: String,
    pub provider: Option<&'a str>,
    pub mode: &'static str,
    /// TLS server name the client asked for, when it spoke TLS.
    pub sni: Option<String>,
    /// Whether the L7 proxy served it (TLS terminated or plaintext HTTP) rather than a relay.
    pub l7: bool,
    pub workload: &'a Workload,
    /// Client → upstream.
    pub bytes_sent: u64,
    /// Upstream → client.
    pub bytes_received: u64,
    pub duration_ms: f64,
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Where connection records go.
pub type ConnLogSink = crate::telemetry::jsonl::Sink;
