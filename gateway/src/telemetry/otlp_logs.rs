//! Audit records leaving the node: every line the audit log's writer thread writes (requests,
//! `config` records, checkpoints, with their chain members) is also sent as an OTLP log record
//! over OTLP/HTTP JSON (<https://opentelemetry.io/docs/specs/otlp/#otlphttp>) to a collector.
//! The log record's body is the line exactly as written; its attributes are the line's
//! members, flattened (`tollgate.workload.comm`, `tollgate.policy.plan`, …).
//!
//! The local file stays the source of truth: the writer hands lines over with a non-blocking
//! send into a bounded queue and never waits for the exporter. The exporter runs on a thread
//! of its own (a current-thread runtime): lines are batched (up to `BATCH` or one second), a
//! batch the collector did not take (connect error, timeout, 429, 5xx) is retried with
//! growing pauses, then given up; lines that found the queue full and batches given up are
//! counted (`tollgate_audit_export_dropped_total`, `tollgate_audit_export_failed_total`),
//! lines delivered too (`tollgate_audit_exported_total`). A graceful stop sends what is queued,
//! bounded by the request timeout.

use std::{
    thread,
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

/// Log records per export request at most.
const BATCH: usize = 512;
/// Export at least this often when lines are waiting.
const INTERVAL: Duration = Duration::from_secs(1);
/// Attempts per batch (the first and the retries).
const ATTEMPTS: u32 = 5;
/// Pause before the first retry; doubled for each further one (0.5, 1, 2, 4 s).
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// `audit.export`, validated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    /// The collector's OTLP/HTTP logs URL, e.g. `http://127.0.0.1:4318/v1/logs`.
    #[serde(serialize_with = "display")]
    pub endpoint: http::Uri,
    /// Lines queued at most while the collector is slow or away (beyond: dropped, counted).
    pub queue: usize,
    /// One export request, connecting included.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// `service.name` of the resource.
    pub service_name: String,
}

fn display<S: serde::Serializer>(v: &impl std::fmt::Display, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// What the exporter counts.
#[derive(Clone, Default)]
pub struct Counters {
    pub exported: Counter,
    pub dropped: Counter,
    pub failed: Counter,
}

/// The writer's end: hands lines to the exporter without waiting.
pub struct Tap {
    tx: mpsc::Sender<Vec<u8>>,
    dropped: Counter,
}

impl Tap {
    /// Queues a copy of `line` for export; a full queue drops it (counted).
    pub fn send(&self, line: &[u8]) {
        if self.tx.try_send(line.to_vec()).is_err() {
            self.dropped.inc();
        }
    }
}

/// A started exporter: the writer's [`Tap`], and how to wait for the thread's end.
pub struct Exporter {
    pub tap: Tap,
    done: std::sync::mpsc::Receiver<()>,
    /// How long a stop waits for the last lines to go out.
    grace: Duration,
}

/// Waits, at a stop, for the exporter to send what it holds.
pub struct Finish {
    done: std::sync::mpsc::Receiver<()>,
    grace: Duration,
}

impl Exporter {
    pub fn split(self) -> (Tap, Finish) {
        (
            self.tap,
            Finish {
                done: self.done,
                grace: self.grace,
            },
        )
    }
}

impl Finish {
    /// Once the tap is dropped: waits for the exporter's last send, at most one request
    /// timeout and a second (a collector that is away does not hold a stop up any longer; its
    /// lines are in the local file).
    pub fn wait(self) {
        if self.done.recv_timeout(self.grace).is_err() {
            tracing::warn!(
                component = "audit-export",
                "stopping without waiting further for the collector"
            );
        }
    }
}

/// Starts the exporter thread. It ends once the [`Tap`] is dropped and what was queued is
/// sent (or given up).
pub fn start(settings: Settings, node: String, counters: Counters) -> std::io::Result<Exporter> {
    let (tx, rx) = mpsc::channel(settings.queue.max(1));
    let tap = Tap {
        tx,
        dropped: counters.dropped.clone(),
    };
    let grace = settings.timeout + Duration::from_secs(1);
    let (done_tx, done) = std::sync::mpsc::channel();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    thread::Builder::new()
        .name("tollgate-audit-export".into())
        .spawn(move || {
            runtime.block_on(run(settings, node, counters, rx));
            let _ = done_tx.send(());
        })?;
    Ok(Exporter { tap, done, grace })
}

async fn run(settings: Settings, node: String, counters: Counters, mut rx: mpsc::Receiver<Vec<u8>>) {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let tls =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let mut batch: Vec<Vec<u8>> = Vec::new();
    loop {
        let deadline = tokio::time::sleep(INTERVAL);
        tokio::pin!(deadline);
        let ended = loop {
            tokio::select! {
                line = rx.recv() => match line {
                    Some(l) => {
                        batch.push(l);
                        if batch.len() >= BATCH { break false; }
                    }
                    None => break true,
                },
                _ = &mut deadline => break false,
            }
        };
        if !batch.is_empty() {
            let lines = std::mem::take(&mut batch);
            let n = lines.len() as u64;
            let body = Bytes::from(request_body(&settings.service_name, &node, &lines).to_string());
            // At a stop, one attempt: the process is going away.
            let attempts = if ended { 1 } else { ATTEMPTS };
            match send(&client, &settings, body, attempts).await {
                Ok(()) => {
                    counters.exported.inc_by(n);
                }
                Err(e) => {
                    counters.failed.inc_by(n);
                    tracing::warn!(component = "audit-export", lines = n, error = %e, "audit records not exported (the local file has them)");
                }
            }
        }
        if ended {
            return;
        }
    }
}

/// Posts one batch, retrying what may succeed later.
async fn send(
    client: &Client<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>, Full<Bytes>>,
    settings: &Settings,
    body: Bytes,
    attempts: u32,
) -> Result<(), String> {
    let mut pause = FIRST_BACKOFF;
    let mut last = String::new();
    for attempt in 1..=attempts {
        let req = http::Request::post(settings.endpoint.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body.clone()))
            .map_err(|e| e.to_string())?;
        let retry = match tokio::time::timeout(settings.timeout, client.request(req)).await {
            Ok(Ok(resp)) => {
                let status = resp.status();
                let _ = resp.into_body().collect().await;
                if status.is_success() {
                    return Ok(());
                }
                last = format!("collector answered {status}");
                status == http::StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
            }
            Ok(Err(e)) => {
                last = format!("{e}");
                true
            }
            Err(_) => {
                last = format!("no answer in {:?}", settings.timeout);
                true
            }
        };
        if !retry || attempt == attempts {
            break;
        }
        tracing::debug!(component = "audit-export", attempt, error = %last, "retrying");
        tokio::time::sleep(pause).await;
        pause *= 2;
    }
    Err(last)
}

/// The OTLP/HTTP JSON request for `lines`.
pub fn request_body(service_name: &str, node: &str, lines: &[Vec<u8>]) -> Value {
    let records: Vec<Value> = lines.iter().map(|l| log_record(l)).collect();
    json!({"resourceLogs": [{
        "resource": {"attributes": [
            kv("service.name", json!({"stringValue": service_name})),
            kv("host.name", json!({"stringValue": node})),
        ]},
        "scopeLogs": [{
            "scope": {"name": "tollgate.audit", "version": env!("CARGO_PKG_VERSION")},
            "logRecords": records,
        }],
    }]})
}

/// One line as an OTLP log record: the line as its body, its members as attributes, its time
/// and trace ids where it has them.
fn log_record(line: &[u8]) -> Value {
    let text = String::from_utf8_lossy(line);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
        .to_string();
    let mut record = json!({
        "observedTimeUnixNano": now,
        "severityNumber": 9,
        "severityText": "INFO",
        "body": {"stringValue": text},
    });
    let Ok(Value::Object(members)) = serde_json::from_str::<Value>(&text) else {
        return record;
    };
    let time = members
        .get("time")
        .and_then(Value::as_str)
        .and_then(|t| humantime::parse_rfc3339(t).ok())
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok());
    if let Some(t) = time {
        record["timeUnixNano"] = json!(t.as_nanos().to_string());
    }
    for (from, to) in [("trace_id", "traceId"), ("span_id", "spanId")] {
        if let Some(id) = members.get(from).and_then(Value::as_str) {
            record[to] = json!(id);
        }
    }
    if members.get("error").is_some_and(|e| !e.is_null()) {
        record["severityNumber"] = json!(13);
        record["severityText"] = json!("WARN");
    }
    let mut attributes = Vec::new();
    flatten("tollgate", &members, &mut attributes);
    record["attributes"] = Value::Array(attributes);
    record
}

/// Members as attributes, nested objects by dotted names; arrays as arrays of their values;
/// nulls left out.
fn flatten(prefix: &str, members: &Map<String, Value>, out: &mut Vec<Value>) {
    for (k, v) in members {
        let key = format!("{prefix}.{k}");
        match v {
            Value::Null => {}
            Value::Object(inner) => flatten(&key, inner, out),
            other => out.push(kv(&key, any_value(other))),
        }
    }
}

/// A JSON value as an OTLP `AnyValue` (64-bit integers as strings, as OTLP/JSON has them).
fn any_value(v: &Value) -> Value {
    match v {
        Value::Null => json!({}),
        Value::Bool(b) => json!({"boolValue": b}),
        Value::Number(n) if n.is_u64() || n.is_i64() => json!({"intValue": n.to_string()}),
        Value::Number(n) => json!({"doubleValue": n.as_f64()}),
        Value::String(s) => json!({"stringValue": s}),
        Value::Array(items) => json!({"arrayValue": {"values": items.iter().map(any_value).collect::<Vec<_>>()}}),
        Value::Object(_) => json!({"stringValue": v.to_string()}),
    }
}

fn kv(key: &str, value: Value) -> Value {
    json!({"key": key, "value": value})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_becomes_a_log_record_with_its_members_as_attributes() {
        let line = br#"{"record":"request","time":"2026-11-28T10:00:00.000001Z","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","workload":{"comm":"python3","pid":42,"pod":null},"policy":{"plan":["a","b"]},"latency_ms":1.5,"complete":true,"error":null,"seq":7,"prev":"00"}"#;
        let body = request_body("tollgate", "node-1", &[line.to_vec()]);
        let r = &body["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
        assert_eq!(
            r["body"]["stringValue"],
            std::str::from_utf8(line).unwrap(),
            "the line as written"
        );
        assert_eq!(r["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(r["timeUnixNano"], "1795860000000001000");
        assert_eq!(r["severityText"], "INFO");
        let attrs = r["attributes"].as_array().unwrap();
        let get = |k: &str| attrs.iter().find(|a| a["key"] == k).map(|a| a["value"].clone());
        assert_eq!(get("tollgate.workload.comm"), Some(json!({"stringValue": "python3"})));
        assert_eq!(get("tollgate.workload.pid"), Some(json!({"intValue": "42"})));
        assert_eq!(get("tollgate.workload.pod"), None, "nulls left out");
        assert_eq!(
            get("tollgate.policy.plan"),
            Some(json!({"arrayValue": {"values": [{"stringValue": "a"}, {"stringValue": "b"}]}}))
        );
        assert_eq!(get("tollgate.latency_ms"), Some(json!({"doubleValue": 1.5})));
        assert_eq!(get("tollgate.seq"), Some(json!({"intValue": "7"})));
        let resource = &body["resourceLogs"][0]["resource"]["attributes"];
        assert_eq!(resource[1], kv("host.name", json!({"stringValue": "node-1"})));
    }

    #[test]
    fn a_line_that_is_not_json_is_still_sent_as_its_body() {
        let body = request_body("t", "n", &[b"not json".to_vec()]);
        let r = &body["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
        assert_eq!(r["body"]["stringValue"], "not json");
        assert!(r.get("attributes").is_none());
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        let (tx, _rx) = mpsc::channel(2);
        let tap = Tap {
            tx,
            dropped: Counter::default(),
        };
        for _ in 0..5 {
            tap.send(b"{}");
        }
        assert_eq!(tap.dropped.get(), 3);
    }
}
