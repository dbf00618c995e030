//! Audit records leaving the node as OTLP logs (`audit.export`): what a collector receives is
//! the local file, line for line, with the records' members as attributes; a collector that
//! fails is retried, one that never answers slows no request and holds no stop up. The
//! collector here is a stand-in speaking OTLP/HTTP JSON on loopback, recording what it got.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{TcpListener, TcpStream},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use serde_json::Value;
use tests::{
    l7::{chat_curl, openai_setup},
    privileged,
};

/// How the stand-in answers.
#[derive(Clone, Copy)]
enum Answer {
    /// 503 to the first `n` requests, then 200.
    FailFirst(usize),
    /// Accepts connections and never answers.
    Never,
}

/// A collector stand-in: records the bodies of the OTLP/HTTP requests it took.
struct Collector {
    addr: std::net::SocketAddr,
    bodies: Arc<Mutex<Vec<Value>>>,
    requests: Arc<AtomicUsize>,
}

impl Collector {
    fn start(answer: Answer) -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(AtomicUsize::new(0));
        let (b, n) = (bodies.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (b, n) = (b.clone(), n.clone());
                std::thread::spawn(move || serve(stream, answer, &b, &n));
            }
        });
        Collector { addr, bodies, requests }
    }

    /// The log records received, in order.
    fn records(&self) -> Vec<Value> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| {
                b["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .collect()
    }
}

/// HTTP/1.1 keep-alive: each request's body is kept (when taken), answered per `answer`.
fn serve(stream: TcpStream, answer: Answer, bodies: &Mutex<Vec<Value>>, requests: &AtomicUsize) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap();
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let n = requests.fetch_add(1, Ordering::SeqCst);
        let status = match answer {
            Answer::Never => {
                std::thread::sleep(Duration::from_secs(3600));
                return;
            }
            Answer::FailFirst(k) if n < k => "503 Service Unavailable",
            Answer::FailFirst(_) => {
                bodies.lock().unwrap().push(serde_json::from_slice(&body).unwrap());
                "200 OK"
            }
        };
        let _ = write!(
            out,
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{{}}"
        );
    }
}

fn chat(s: &tests::l7::OpenAiSetup, gw: &tests::Gateway, n: usize) -> Duration {
    let started = Instant::now();
    for _ in 0..n {
        let (status, _) = chat_curl(
            s,
            gw,
            r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#,
            &[],
        );
        assert!(status.starts_with("200"), "{status}");
    }
    started.elapsed()
}

#[test]
fn the_collector_receives_the_local_file_line_for_line_after_a_retry() {
    if !privileged("the_collector_receives_the_local_file_line_for_line_after_a_retry") {
        return;
    }
    let collector = Collector::start(Answer::FailFirst(1));
    let (s, builder) = openai_setup(19, "export-lines", "");
    let mut gw = builder
        .audit_setting(&format!(
            "export: {{otlpEndpoint: \"http://{}/v1/logs\"}}",
            collector.addr
        ))
        .start();
    chat(&s, &gw, 4);
    let written = gw.audit_lines().len();
    gw.wait_until("the collector took every line", Duration::from_secs(15), || {
        gw.metric("tollgate_audit_exported_total") >= written as u64
    });
    assert!(
        collector.requests.load(Ordering::SeqCst) >= 2,
        "the refused batch was sent again"
    );
    gw.stop();

    let file = std::fs::read_to_string(gw.audit_path()).unwrap();
    let lines: Vec<&str> = file.lines().collect();
    let received = collector.records();
    let bodies: Vec<&str> = received
        .iter()
        .map(|r| r["body"]["stringValue"].as_str().unwrap())
        .collect();
    assert_eq!(
        bodies, lines,
        "what arrived is the local file, line for line (the stop's checkpoint too)"
    );
    // The members as attributes: a request's id, workload and cost are there to query.
    let request = received
        .iter()
        .find(|r| {
            r["body"]["stringValue"]
                .as_str()
                .unwrap()
                .starts_with(r#"{"record":"request""#)
        })
        .unwrap();
    let attr = |k: &str| {
        request["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == k)
            .map(|a| a["value"].clone())
            .unwrap_or_else(|| panic!("no {k} in {request}"))
    };
    let line: Value = serde_json::from_str(request["body"]["stringValue"].as_str().unwrap()).unwrap();
    assert_eq!(attr("tollgate.request_id")["stringValue"], line["request_id"]);
    assert_eq!(attr("tollgate.workload.comm")["stringValue"], "curl");
    assert_eq!(
        attr("tollgate.cost_nano_usd")["intValue"],
        line["cost_nano_usd"].to_string()
    );
    assert_eq!(request["traceId"], line["trace_id"]);
}

#[test]
fn a_collector_that_never_answers_slows_no_request_and_holds_no_stop() {
    if !privileged("a_collector_that_never_answers_slows_no_request_and_holds_no_stop") {
        return;
    }
    let collector = Collector::start(Answer::Never);
    let (s, builder) = openai_setup(20, "export-stuck", "");
    let mut gw = builder
        .audit_setting(&format!(
            "export: {{otlpEndpoint: \"http://{}/v1/logs\", timeout: 500ms, queue: 3}}",
            collector.addr
        ))
        .start();
    // A first batch goes out (and hangs) after a second; what comes after waits behind it.
    chat(&s, &gw, 2);
    std::thread::sleep(Duration::from_millis(1500));
    let took = chat(&s, &gw, 6);
    assert!(took < Duration::from_secs(10), "six requests took {took:?}");
    assert_eq!(gw.wait_audit(8).len(), 8, "the local file has every record");
    // The queue holds 3 lines: the rest of what waits behind the stuck batch is dropped, counted.
    gw.wait_until("lines dropped at the full queue", Duration::from_secs(10), || {
        gw.metric("tollgate_audit_export_dropped_total") >= 1
    });
    assert_eq!(gw.metric("tollgate_audit_exported_total"), 0);
    let stopping = Instant::now();
    gw.stop();
    assert!(
        stopping.elapsed() < Duration::from_secs(8),
        "the stop waited {:?} for the collector",
        stopping.elapsed()
    );
    assert!(collector.requests.load(Ordering::SeqCst) >= 1);
}
