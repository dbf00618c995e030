//! Append-only JSON-lines files written by a dedicated thread (file I/O never blocks the data
//! plane), with size-based rotation and an fsync policy. Used by the connection log and the
//! audit log. Dropping every [`Sink`] and calling [`Writer::finish`] flushes everything queued:
//! nothing in flight is lost on a graceful stop. A target with a [`chain::Policy`] (the audit
//! log) is hash-chained and checkpointed by the same thread ([`super::chain`]).

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use super::chain::{self, Checkpoint, Head, NodeKey, Reason};

/// How often the writer thread takes what is queued (20 ms): records reach the file within
/// that, and a burst is written in one batch.
const BATCH_INTERVAL: Duration = Duration::from_millis(20);
/// Lines queued at most (a few KiB each): 16,384 is 800,000 lines a second at the writer's
/// pace, far beyond what the node serves, so the queue fills only when the disk stalls.
pub const QUEUE_CAPACITY: usize = 16_384;

/// What a sink does when the queue is full (the disk is not keeping up).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenFull {
    /// Wait for room: back-pressure on the data plane rather than a lost line (audit log).
    Wait,
    /// Drop the line (connection log); either way the metric and the log say so.
    Drop,
}

/// When written lines are forced to disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Fsync {
    /// Leave it to the kernel (lines are still written out promptly).
    #[default]
    Never,
    /// After every batch of lines: a crash loses nothing written.
    Always,
    /// At most once per second: a crash loses at most about a second.
    Second,
}

/// Where and how lines are written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// `None`: stdout.
    pub path: Option<PathBuf>,
    /// Rotate when the file exceeds this many bytes (0: never).
    pub max_bytes: u64,
    /// Rotated files kept (`file.1` … `file.N`).
    pub max_files: u32,
    pub fsync: Fsync,
    /// Hash-chain the lines and write signed checkpoints (file targets only).
    pub chain: Option<chain::Policy>,
}

impl Target {
    pub fn stdout() -> Target {
        Target {
            path: None,
            max_bytes: 0,
            max_files: 0,
            fsync: Fsync::Never,
            chain: None,
        }
    }
}

/// Why a writer could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Chain(#[from] chain::Error),
    #[error("cannot start the writer thread: {0}")]
    Thread(#[source] io::Error),
}

/// Cheap handle that queues lines for the writer thread (a bounded queue).
#[derive(Clone)]
pub struct Sink {
    tx: mpsc::SyncSender<Vec<u8>>,
    name: &'static str,
    when_full: WhenFull,
    /// Times a line found the queue full.
    full: prometheus_client::metrics::counter::Counter,
    /// When the last "queue full" line was logged (seconds since the Unix epoch).
    warned: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Sink {
    pub fn write_json(&self, value: &impl Serialize) {
        self.write_with(|buf| {
            if let Err(e) = serde_json::to_writer(&mut *buf, value) {
                buf.clear();
                tracing::error!(error = %e, "cannot serialize a log record");
            }
        });
    }

    /// Queues the line `write` puts in the buffer it is given (no newline; nothing if empty).
    pub fn write_with(&self, write: impl FnOnce(&mut Vec<u8>)) {
        thread_local! {
            /// The length of this thread's last line: the next one is written into a buffer of
            /// about that size (one allocation, no growing and copying on the way).
            static LAST_LEN: std::cell::Cell<usize> = const { std::cell::Cell::new(512) };
        }
        let mut json = Vec::with_capacity(LAST_LEN.get() + 64);
        write(&mut json);
        if json.is_empty() {
            return;
        }
        LAST_LEN.set(json.len());
        match self.tx.try_send(json) {
            Ok(()) | Err(mpsc::TrySendError::Disconnected(_)) => {}
            Err(mpsc::TrySendError::Full(json)) => {
                self.full.inc();
                self.warn_full();
                if self.when_full == WhenFull::Wait {
                    let _ = self.tx.send(json);
                }
            }
        }
    }

    /// At most one log line a second while the queue stays full.
    fn warn_full(&self) {
        use std::sync::atomic::Ordering;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if self.warned.swap(now, Ordering::Relaxed) != now {
            tracing::warn!(log = self.name, when_full = ?self.when_full, "log queue full: the disk is not keeping up");
        }
    }
}

/// The writer thread.
pub struct Writer(thread::JoinHandle<()>, Option<super::otlp_logs::Finish>);

/// A batch is written once it holds this much (1 MiB), always whole lines.
const MAX_BATCH: usize = 1024 * 1024;

enum Out {
    Stdout(io::Stdout),
    File {
        file: File,
        /// Whole lines not yet written: a batch goes to the file in one `write` (O_APPEND), so
        /// another writer of the same file (a successor during an upgrade) never finds half a
        /// line at its end.
        batch: Vec<u8>,
        path: PathBuf,
        size: u64,
    },
}

impl Out {
    fn open(target: &Target) -> io::Result<Out> {
        match &target.path {
            None => Ok(Out::Stdout(io::stdout())),
            Some(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let file = OpenOptions::new().create(true).append(true).open(path)?;
                let size = file.metadata()?.len();
                Ok(Out::File {
                    file,
                    batch: Vec::with_capacity(64 * 1024),
                    path: path.clone(),
                    size,
                })
            }
        }
    }

    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        match self {
            Out::Stdout(s) => {
                let mut s = s.lock();
                s.write_all(line)?;
                s.write_all(b"\n")
            }
            Out::File { file, batch, size, .. } => {
                batch.extend_from_slice(line);
                batch.push(b'\n');
                *size += line.len() as u64 + 1;
                if batch.len() >= MAX_BATCH {
                    file.write_all(batch)?;
                    batch.clear();
                }
                Ok(())
            }
        }
    }

    fn flush(&mut self, sync: bool) -> io::Result<()> {
        match self {
            Out::Stdout(s) => s.flush(),
            Out::File { file, batch, .. } => {
                if !batch.is_empty() {
                    let result = file.write_all(batch);
                    batch.clear();
                    result?;
                }
                if sync {
                    file.sync_data()?;
                }
                Ok(())
            }
        }
    }

    fn needs_rotation(&self, target: &Target) -> bool {
        match self {
            Out::File { size, .. } => target.max_bytes != 0 && *size >= target.max_bytes,
            Out::Stdout(_) => false,
        }
    }

    /// Renames `file` → `file.1` (shifting older ones) and starts a new file.
    fn rotate(&mut self, target: &Target) -> io::Result<()> {
        let Out::File { path, .. } = self else {
            return Ok(());
        };
        let path = path.clone();
        self.flush(true)?;
        rotate(&path, target.max_files)?;
        *self = Out::open(target)?;
        Ok(())
    }
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

fn rotate(path: &Path, keep: u32) -> io::Result<()> {
    if keep == 0 {
        return std::fs::remove_file(path);
    }
    let _ = std::fs::remove_file(rotated(path, keep));
    for n in (1..keep).rev() {
        let from = rotated(path, n);
        if from.exists() {
            std::fs::rename(&from, rotated(path, n + 1))?;
        }
    }
    std::fs::rename(path, rotated(path, 1))
}

/// The chain's state on the writer thread.
struct Chain {
    head: Head,
    key: NodeKey,
    policy: chain::Policy,
    /// Lines since the last checkpoint.
    since: u64,
    last: Instant,
}

/// What the writer thread writes to.
struct Log {
    out: Out,
    target: Target,
    chain: Option<Chain>,
    /// Every line written also goes here (OTLP logs export), without waiting.
    tap: Option<super::otlp_logs::Tap>,
}

impl Log {
    /// Opens the target; a chained one continues the chain its file (or the newest rotated
    /// file) ends with, and starts with a `start` checkpoint.
    fn open(target: Target, tap: Option<super::otlp_logs::Tap>) -> Result<Log, Error> {
        let shown = target.path.clone().unwrap_or_else(|| "stdout".into());
        let open_err = |source| Error::Open {
            path: shown.clone(),
            source,
        };
        let (chain, partial_tail) = match (&target.chain, &target.path) {
            (Some(policy), Some(path)) => {
                let key = NodeKey::load_or_create(&policy.signing_key)?;
                let resume = chain::resume(path, &rotated(path, 1))?;
                if resume.unchained {
                    tracing::warn!(path = %path.display(), "the audit log's last line is not chained: rotating it away and starting a new chain");
                    rotate(path, target.max_files).map_err(open_err)?;
                }
                tracing::info!(
                    path = %path.display(),
                    seq = resume.head.seq,
                    key = %key.public(),
                    "audit log hash-chained; checkpoints signed"
                );
                let chain = Chain {
                    head: resume.head,
                    key,
                    policy: policy.clone(),
                    since: 0,
                    last: Instant::now(),
                };
                (Some(chain), resume.partial_tail)
            }
            _ => (None, None),
        };
        let out = Out::open(&target).map_err(open_err)?;
        let mut log = Log {
            out,
            target,
            chain,
            tap,
        };
        if log.chain.is_some() {
            log.checkpoint(Reason::Start, partial_tail)
                .and_then(|()| log.out.flush(log.target.fsync != Fsync::Never))
                .map_err(open_err)?;
        }
        Ok(log)
    }

    fn write(&mut self, mut line: Vec<u8>) -> io::Result<()> {
        if let Some(chain) = &mut self.chain {
            if !chain.head.append(&mut line) {
                tracing::error!("a line that is not a JSON object cannot join the audit chain: not written");
                return Ok(());
            }
            chain.since += 1;
        }
        self.put(&line)?;
        if self.out.needs_rotation(&self.target) {
            self.out.rotate(&self.target)?;
            // First line of the new file: it seals the old file's last lines, and a file
            // that does not begin with it lost its head.
            self.checkpoint(Reason::Rotate, None)?;
        }
        if self
            .chain
            .as_ref()
            .is_some_and(|c| c.since >= c.policy.checkpoint_records)
        {
            self.checkpoint(Reason::Records, None)?;
        }
        Ok(())
    }

    /// A checkpoint when lines have waited `checkpoint.interval` for one.
    fn tick(&mut self) -> io::Result<bool> {
        match &self.chain {
            Some(c) if c.since > 0 && c.last.elapsed() >= c.policy.checkpoint_interval => {
                self.checkpoint(Reason::Interval, None)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn checkpoint(&mut self, reason: Reason, partial_tail: Option<u64>) -> io::Result<()> {
        let Some(chain) = &mut self.chain else {
            return Ok(());
        };
        let time = humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string();
        let line = Checkpoint::new(&chain.key, chain.head, time, reason, partial_tail).line(&mut chain.head);
        chain.since = 0;
        chain.last = Instant::now();
        self.put(&line)
    }

    /// Writes a finished line, and hands it to the exporter.
    fn put(&mut self, line: &[u8]) -> io::Result<()> {
        self.out.write_line(line)?;
        if let Some(tap) = &self.tap {
            tap.send(line);
        }
        Ok(())
    }
}

impl Writer {
    /// Opens the target (append) and starts the thread. `full` counts lines that found the
    /// queue full.
    pub fn start(
        name: &'static str,
        target: Target,
        when_full: WhenFull,
        full: prometheus_client::metrics::counter::Counter,
    ) -> Result<(Sink, Writer), Error> {
        Writer::with_capacity(name, target, when_full, full, QUEUE_CAPACITY, None)
    }

    /// [`Writer::start`], every written line also handed to `tap` (OTLP logs export) and the
    /// exporter thread joined by [`Writer::finish`] after the last line.
    pub fn start_exporting(
        name: &'static str,
        target: Target,
        when_full: WhenFull,
        full: prometheus_client::metrics::counter::Counter,
        export: super::otlp_logs::Exporter,
    ) -> Result<(Sink, Writer), Error> {
        Writer::with_capacity(name, target, when_full, full, QUEUE_CAPACITY, Some(export))
    }

    fn with_capacity(
        name: &'static str,
        target: Target,
        when_full: WhenFull,
        full: prometheus_client::metrics::counter::Counter,
        capacity: usize,
        export: Option<super::otlp_logs::Exporter>,
    ) -> Result<(Sink, Writer), Error> {
        let (tap, exporter) = export.map(super::otlp_logs::Exporter::split).unzip();
        let mut log = Log::open(target, tap)?;
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(capacity);
        let thread_name = format!("tollgate-{name}");
        let handle = thread::Builder::new()
            .name(thread_name)
            .spawn(move || {
                let mut last_sync = Instant::now();
                let fsync = log.target.fsync;
                // The thread polls the queue every `BATCH_INTERVAL` instead of blocking on it: a
                // sender then never has to wake it, which on a 2-core node costs more CPU than the
                // write itself (a futex wake and two context switches per request).
                loop {
                    let mut wrote = false;
                    let mut result = Ok(());
                    let disconnected = loop {
                        match rx.try_recv() {
                            Ok(line) => {
                                wrote = true;
                                result = result.and_then(|_| log.write(line));
                            }
                            Err(mpsc::TryRecvError::Empty) => break false,
                            Err(mpsc::TryRecvError::Disconnected) => break true,
                        }
                    };
                    match log.tick() {
                        Ok(ticked) => wrote |= ticked,
                        Err(e) => result = result.and(Err(e)),
                    }
                    if wrote {
                        let sync = match fsync {
                            Fsync::Never => false,
                            Fsync::Always => true,
                            Fsync::Second => last_sync.elapsed() >= Duration::from_secs(1),
                        };
                        if sync {
                            last_sync = Instant::now();
                        }
                        result = result.and_then(|_| log.out.flush(sync));
                    }
                    if let Err(e) = result {
                        tracing::error!(error = %e, "cannot write a log file");
                    }
                    if disconnected {
                        // Graceful stop: the log ends sealed.
                        let result = log
                            .checkpoint(Reason::Stop, None)
                            .and_then(|()| log.out.flush(fsync != Fsync::Never));
                        if let Err(e) = result {
                            tracing::error!(error = %e, "cannot write a log file");
                        }
                        return;
                    }
                    thread::sleep(BATCH_INTERVAL);
                }
            })
            .map_err(Error::Thread)?;
        let sink = Sink {
            tx,
            name,
            when_full,
            full,
            warned: Default::default(),
        };
        Ok((sink, Writer(handle, exporter)))
    }

    /// Waits until every sink is dropped and all lines are written (and handed to the
    /// exporter, which then sends what it holds).
    pub fn finish(self) {
        let _ = self.0.join();
        if let Some(exporter) = self.1 {
            exporter.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_rotate_by_size_and_survive_finish() {
        let dir = std::env::temp_dir().join(format!("tollgate-jsonl-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("audit.jsonl");
        let target = Target {
            path: Some(path.clone()),
            max_bytes: 200,
            max_files: 2,
            fsync: Fsync::Always,
            chain: None,
        };
        let (sink, writer) = Writer::start("test", target, WhenFull::Wait, Default::default()).unwrap();
        for i in 0..40 {
            sink.write_json(&serde_json::json!({"n": i, "pad": "xxxxxxxxxxxxxxxxxxxx"}));
        }
        drop(sink);
        writer.finish();
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let all: Vec<String> = [rotated(&path, 2), rotated(&path, 1), path.clone()]
            .iter()
            .map(|p| read(p))
            .collect();
        assert!(!rotated(&path, 3).exists(), "only max_files rotated files are kept");
        assert!(
            all.iter().all(|t| t.len() <= 200 + 60),
            "each file stays near the limit"
        );
        let last = all.concat();
        let numbers: Vec<u64> = last
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["n"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(*numbers.last().unwrap(), 39, "the newest line is in the current file");
        assert!(
            numbers.windows(2).all(|w| w[1] == w[0] + 1),
            "no line lost or reordered within what is kept"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_full_queue_waits_for_audit_and_drops_for_the_connection_log() {
        let dir = std::env::temp_dir().join(format!("tollgate-jsonl-full-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let target = |name: &str| Target {
            path: Some(dir.join(name)),
            max_bytes: 0,
            max_files: 0,
            fsync: Fsync::Never,
            chain: None,
        };
        for (when_full, name) in [(WhenFull::Wait, "audit.jsonl"), (WhenFull::Drop, "conn.jsonl")] {
            let full = prometheus_client::metrics::counter::Counter::default();
            let (sink, writer) = Writer::with_capacity("test", target(name), when_full, full.clone(), 4, None).unwrap();
            // The writer takes the queue every 20 ms: a burst of 200 overflows a queue of 4.
            for i in 0..200 {
                sink.write_json(&serde_json::json!({ "n": i }));
            }
            drop(sink);
            writer.finish();
            let lines = std::fs::read_to_string(dir.join(name)).unwrap().lines().count();
            assert!(full.get() > 0, "{name}: the full queue is counted");
            match when_full {
                WhenFull::Wait => assert_eq!(lines, 200, "audit: nothing lost"),
                WhenFull::Drop => assert!(lines < 200, "connection log: dropped, counted"),
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_chained_log_rotates_restarts_and_checkpoints_and_verifies() {
        use crate::telemetry::chain::verify::{self, Verdict};
        let dir = std::env::temp_dir().join(format!("tollgate-jsonl-chain-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("audit.jsonl");
        let target = Target {
            path: Some(path.clone()),
            max_bytes: 2000,
            max_files: 10,
            fsync: Fsync::Never,
            chain: Some(chain::Policy {
                signing_key: dir.join("audit-signing.key"),
                checkpoint_records: 7,
                checkpoint_interval: Duration::from_millis(100),
            }),
        };
        let lines = || {
            verify::log_files(&path)
                .iter()
                .flat_map(|f| {
                    std::fs::read_to_string(f)
                        .unwrap()
                        .lines()
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                })
                .map(|l| serde_json::from_str::<serde_json::Value>(&l).unwrap())
                .collect::<Vec<_>>()
        };
        let reasons = |v: &[serde_json::Value]| {
            v.iter()
                .filter(|l| l["record"] == "checkpoint")
                .map(|l| l["reason"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        for run in 0..2 {
            let (sink, writer) = Writer::start("test", target.clone(), WhenFull::Wait, Default::default()).unwrap();
            for i in 0..30 {
                sink.write_json(&serde_json::json!({"run": run, "n": i, "pad": "x".repeat(40)}));
            }
            // Idle past the interval: the lines written are sealed without waiting for more.
            std::thread::sleep(Duration::from_millis(400));
            let sealed = lines();
            assert_eq!(sealed.last().unwrap()["record"], "checkpoint", "{:?}", reasons(&sealed));
            drop(sink);
            writer.finish();
        }
        let all = lines();
        let seqs: Vec<u64> = all.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
        assert_eq!(
            seqs,
            (0..all.len() as u64).collect::<Vec<_>>(),
            "one chain across files and runs"
        );
        let reasons = reasons(&all);
        for r in ["start", "records", "interval", "rotate", "stop"] {
            assert!(reasons.iter().any(|x| x == r), "{r} checkpoint missing: {reasons:?}");
        }
        assert_eq!(reasons.iter().filter(|r| *r == "start").count(), 2);
        assert_eq!(all.last().unwrap()["reason"], "stop");
        let files = verify::log_files(&path);
        assert!(files.len() > 3, "rotated: {files:?}");
        for f in &files[..files.len() - 1] {
            let first = std::fs::read_to_string(f).unwrap();
            assert!(
                first.starts_with(r#"{"record":"checkpoint""#),
                "{f:?} opens with a checkpoint"
            );
        }
        let report = verify::verify(&files, &[]).unwrap();
        assert_eq!(report.verdict(), Verdict::Intact, "{}", report.render());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
