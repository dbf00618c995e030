//! OTLP trace export (off by default): one span per request, with the OpenTelemetry GenAI
//! semantic-convention attributes, sent in batches as OTLP/HTTP JSON
//! (<https://opentelemetry.io/docs/specs/otlp/#otlphttp>) to a configured collector. The data
//! plane only queues spans; a full queue drops spans (counted) rather than slowing requests.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use crate::accounting::audit::AuditRecord;

/// Spans queued at most before new ones are dropped.
const QUEUE: usize = 4096;
/// Spans per export request at most.
const BATCH: usize = 512;
/// Export at least this often when spans are waiting (1 second).
const INTERVAL: Duration = Duration::from_secs(1);

/// Queues spans for the exporter task.
#[derive(Clone)]
pub struct SpanSink {
    tx: mpsc::Sender<Value>,
    dropped: prometheus_client::metrics::counter::Counter,
}

impl SpanSink {
    /// Turns an audit record (the request's whole story) into a span.
    pub fn record(&self, a: &AuditRecord, parent_span_id: Option<u64>, started: SystemTime) {
        let start = started.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        let end = start + Duration::from_secs_f64(a.latency_ms / 1000.0);
        let operation = match &*a.operation {
            "chat_completions" | "messages" => "chat",
            "completions" => "text_completion",
            "embeddings" => "embeddings",
            "responses" => "chat",
            other => other,
        };
        let mut attrs = vec![
            kv("gen_ai.operation.name", json!({"stringValue": operation})),
            kv("http.request.method", json!({"stringValue": a.method})),
            kv("http.response.status_code", json!({"intValue": a.status.to_string()})),
            kv(
                "server.address",
                json!({"stringValue": a.destination.sni.clone().unwrap_or_else(|| a.destination.ip.clone())}),
            ),
            kv("tollgate.request_id", json!({"stringValue": a.request_id})),
            kv("tollgate.workload.comm", json!({"stringValue": a.workload.comm})),
            kv(
                "tollgate.workload.pid",
                json!({"intValue": a.workload.tgid.to_string()}),
            ),
        ];
        let mut opt = |key: &str, v: Option<&str>| {
            if let Some(v) = v {
                attrs.push(kv(key, json!({"stringValue": v})));
            }
        };
        opt("gen_ai.provider.name", a.provider.as_deref());
        opt("gen_ai.request.model", a.model.as_deref());
        opt("gen_ai.response.model", a.served_model.as_deref());
        opt("tollgate.route", a.route.as_deref());
        opt("tollgate.backend", a.backend.as_deref());
        opt("tollgate.cost_usd", a.cost_usd.as_deref());
        opt("error.type", a.error_side.as_deref());
        if let Some(t) = &a.tokens {
            attrs.push(kv(
                "gen_ai.usage.input_tokens",
                json!({"intValue": t.input.to_string()}),
            ));
            attrs.push(kv(
                "gen_ai.usage.output_tokens",
                json!({"intValue": t.output.to_string()}),
            ));
        }
        let mut span = json!({
            "traceId": a.trace_id,
            "spanId": a.span_id,
            "name": format!("{operation} {}", a.model.as_deref().unwrap_or("")).trim_end().to_string(),
            "kind": 3,
            "startTimeUnixNano": start.as_nanos().to_string(),
            "endTimeUnixNano": end.as_nanos().to_string(),
            "attributes": attrs,
            "status": {"code": if a.status >= 500 || a.error.is_some() { 2 } else { 1 }},
        });
        if let Some(p) = parent_span_id {
            span["parentSpanId"] = json!(format!("{p:016x}"));
        }
        if self.tx.try_send(span).is_err() {
            self.dropped.inc();
        }
    }
}

fn kv(key: &str, value: Value) -> Value {
    json!({"key": key, "value": value})
}

/// Starts the exporter task on the current runtime.
pub fn start(
    endpoint: http::Uri,
    service_name: String,
    dropped: prometheus_client::metrics::counter::Counter,
    mut shutdown: watch::Receiver<bool>,
) -> (SpanSink, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Value>(QUEUE);
    let task = tokio::spawn(async move {
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let mut batch = Vec::new();
        loop {
            let deadline = tokio::time::sleep(INTERVAL);
            tokio::pin!(deadline);
            let stop = loop {
                tokio::select! {
                    span = rx.recv() => match span {
                        Some(s) => {
                            batch.push(s);
                            if batch.len() >= BATCH { break false; }
                        }
                        None => break true,
                    },
                    _ = &mut deadline => break false,
                    _ = shutdown.changed() => {
                        while let Ok(s) = rx.try_recv() { batch.push(s); }
                        break true;
                    }
                }
            };
            if !batch.is_empty() {
                let body = json!({"resourceSpans": [{
                    "resource": {"attributes": [kv("service.name", json!({"stringValue": service_name}))]},
                    "scopeSpans": [{"scope": {"name": "tollgate", "version": env!("CARGO_PKG_VERSION")}, "spans": std::mem::take(&mut batch)}],
                }]});
                let req = http::Request::post(endpoint.clone())
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(Full::new(Bytes::from(body.to_string())));
                match req {
                    Ok(req) => match tokio::time::timeout(Duration::from_secs(5), client.request(req)).await {
                        Ok(Ok(resp)) => {
                            let status = resp.status();
                            let _ = resp.into_body().collect().await;
                            if !status.is_success() {
                                tracing::warn!(component = "otlp", %status, "collector refused spans");
                            }
                        }
                        Ok(Err(e)) => tracing::warn!(component = "otlp", error = %e, "span export failed"),
                        Err(_) => tracing::warn!(component = "otlp", "span export timed out"),
                    },
                    Err(e) => tracing::warn!(component = "otlp", error = %e, "bad export request"),
                }
            }
            if stop {
                return;
            }
        }
    });
    (SpanSink { tx, dropped }, task)
}
