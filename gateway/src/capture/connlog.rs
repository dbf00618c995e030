//! The connection log: one JSON line per captured connection, written by a dedicated thread so
//! that file I/O never blocks the data plane. Dropping every [`ConnLogSink`] and calling
//! [`ConnLogWriter::finish`] flushes all lines (nothing in flight is lost on graceful stop).

use std::{
    fs::OpenOptions,
    io::{self, BufWriter, Write},
    sync::mpsc,
    thread,
};

use serde::Serialize;

use crate::{config::LogTarget, identity::Workload};

/// One line of the connection log.
#[derive(Debug, Serialize)]
pub struct ConnRecordLine<'a> {
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

/// Cheap handle that queues lines for the writer thread.
#[derive(Clone)]
pub struct ConnLogSink(mpsc::Sender<String>);

impl ConnLogSink {
    pub fn write(&self, line: &ConnRecordLine<'_>) {
        match serde_json::to_string(line) {
            Ok(json) => {
                let _ = self.0.send(json);
            }
            Err(e) => tracing::error!(error = %e, "cannot serialize connection record"),
        }
    }
}

/// The writer thread.
pub struct ConnLogWriter(thread::JoinHandle<()>);

impl ConnLogWriter {
    /// Opens the target (append) and starts the thread.
    pub fn start(target: &LogTarget) -> io::Result<(ConnLogSink, ConnLogWriter)> {
        let out: Box<dyn Write + Send> = match target {
            LogTarget::Stdout => Box::new(io::stdout()),
            LogTarget::File(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                Box::new(OpenOptions::new().create(true).append(true).open(path)?)
            }
        };
        let (tx, rx) = mpsc::channel::<String>();
        let handle = thread::Builder::new().name("tollgate-connlog".into()).spawn(move || {
            let mut out = BufWriter::new(out);
            // Block for one line, then take whatever else is queued, then flush: lines reach
            // the file promptly under low load and in batches under high load.
            while let Ok(line) = rx.recv() {
                let _ = writeln!(out, "{line}");
                while let Ok(line) = rx.try_recv() {
                    let _ = writeln!(out, "{line}");
                }
                if let Err(e) = out.flush() {
                    tracing::error!(error = %e, "cannot write the connection log");
                }
            }
        })?;
        Ok((ConnLogSink(tx), ConnLogWriter(handle)))
    }

    /// Waits until every sink is dropped and all lines are flushed.
    pub fn finish(self) {
        let _ = self.0.join();
    }
}
