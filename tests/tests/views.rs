//! The operator views against a running instance after a known burst of requests:
//! `tollgate status` (text and JSON), `tollgate top` in a pseudo-terminal (numbers on screen,
//! a sort key that reorders, `q` and Ctrl-C giving the terminal back), and the `/ui`
//! dashboard in a real headless Chromium (the numbers it shows equal the metrics; a
//! screenshot is kept under `<target>/test-artifacts/`).

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use base64::Engine as _;
use serde_json::{json, Value};
use tests::{
    fake_llm::Script,
    l7::{openai_setup, OpenAiSetup},
    privileged, run,
    term::Screen,
    tollgate_bin, workspace, Gateway, TempDir,
};

/// The second workload: curl under another name (a process's `comm` is the name it was
/// exec'd by).
const OTHER_COMM: &str = "burst-b";

/// One chat request from `program` in the setup's cgroup; returns the HTTP status.
fn chat_as(s: &OpenAiSetup, gw: &Gateway, program: &std::path::Path, model: &str) -> u16 {
    let mut cmd =
        s.cg.command_with_hosts(&s.dir, &[("api.openai.com", &s.captured_ip)], program);
    let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}).to_string();
    cmd.args(["-sS", "-m", "20", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(gw.ca_cert())
        .args(["-H", "content-type: application/json", "-d", &body])
        .arg("https://api.openai.com/v1/chat/completions");
    let out = run(cmd, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("status")
}

/// What the burst left, as the audit records say.
struct Burst {
    records: Vec<Value>,
}

impl Burst {
    fn by_comm(&self, comm: &str) -> (u64, u64, u64) {
        let mine = self.records.iter().filter(|r| r["workload"]["comm"] == comm);
        mine.fold((0, 0, 0), |(n, errors, cost), r| {
            let failed = r["status"].as_u64().unwrap() >= 400 || !r["error"].is_null();
            (
                n + 1,
                errors + u64::from(failed),
                cost + r["cost_nano_usd"].as_u64().unwrap_or(0),
            )
        })
    }

    fn errors_by_side(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for r in &self.records {
            if let Some(side) = r["error_side"].as_str() {
                *out.entry(side.to_string()).or_default() += 1;
            }
        }
        out
    }
}

/// A gateway, then 5 cheap requests from `curl` and 3 dearer ones from `burst-b`, the last of
/// which the backend resets: `burst-b` leads by spend and errors, `curl` by requests.
fn burst(n: u8, name: &str) -> (OpenAiSetup, Gateway, Burst) {
    let (s, builder) = openai_setup(n, name, "");
    let gw = builder.start();
    let curl = PathBuf::from("/usr/bin/curl");
    let other = s.dir.path(OTHER_COMM);
    std::os::unix::fs::symlink(&curl, &other).expect("symlink");
    for _ in 0..5 {
        assert_eq!(chat_as(&s, &gw, &curl, "gpt-4o-mini"), 200);
    }
    for _ in 0..2 {
        assert_eq!(chat_as(&s, &gw, &other, "gpt-4o"), 200);
    }
    s.primary.set_script(Script {
        reset_before_headers: true,
        ..Default::default()
    });
    assert!(chat_as(&s, &gw, &other, "gpt-4o") >= 500);
    s.primary.set_script(Script::default());
    let records = gw.wait_audit(8);
    assert_eq!(records.len(), 8, "{records:?}");
    (s, gw, Burst { records })
}

fn api_status(gw: &Gateway, query: &str) -> Value {
    let (code, body) = gw.admin_get(&format!("/api/status{query}"));
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("status JSON")
}

/// The spend row of the workload whose name starts with `comm (`.
fn row<'a>(rows: &'a Value, comm: &str) -> &'a Value {
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"].as_str().unwrap().starts_with(&format!("{comm} (")))
        .unwrap_or_else(|| panic!("no row for {comm} in {rows}"))
}

/// The status the burst must give, checked against the metrics and the audit records.
fn check_status(gw: &Gateway, b: &Burst, s: &Value) {
    assert_eq!(s["attached"], true);
    assert_eq!(s["ready"], true);
    assert_eq!(s["fail_mode"], "open");
    assert_eq!(s["endpoints"].as_u64().unwrap(), gw.metric("tollgate_endpoint_entries"));
    assert_eq!(s["requests"]["total"], 8);
    assert_eq!(gw.metric("tollgate_requests_total"), 8);
    assert_eq!(s["connections"]["total"], 8, "one connection per curl");
    let sides = b.errors_by_side();
    for side in ["client", "upstream", "proxy"] {
        assert_eq!(
            s["errors"][side]["total"].as_u64().unwrap(),
            sides.get(side).copied().unwrap_or(0),
            "{side} errors: {s}"
        );
    }
    assert_eq!(
        sides.get("upstream"),
        Some(&1),
        "the reset is the upstream's: {sides:?}"
    );
    let total_errors: u64 = sides.values().sum();
    assert_eq!(gw.metric("tollgate_request_errors_total"), total_errors);
    let t = &s["spend_today"];
    let cost: u64 = b.records.iter().filter_map(|r| r["cost_nano_usd"].as_u64()).sum();
    assert!(cost > 0);
    assert_eq!(t["total"]["cost_nano_usd"], cost);
    assert_eq!(gw.metric("tollgate_cost_nanodollars_total"), cost);
    assert_eq!(t["total"]["requests"], 8);
    assert_eq!(t["workloads"], 2);
    for comm in ["curl", OTHER_COMM] {
        let (n, errors, cost) = b.by_comm(comm);
        let r = row(&t["by_workload"], comm);
        assert_eq!(
            (r["requests"].as_u64(), r["errors"].as_u64()),
            (Some(n), Some(errors)),
            "{r}"
        );
        assert_eq!(r["cost_nano_usd"], cost, "{r}");
    }
    assert_eq!(b.by_comm("curl").0, 5);
    assert!(
        b.by_comm(OTHER_COMM).2 > b.by_comm("curl").2,
        "gpt-4o costs more than mini"
    );
    let models: Vec<&str> = t["by_model"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap())
        .collect();
    assert!(models.iter().any(|m| m.starts_with("gpt-4o-mini")), "{models:?}");
    assert_eq!(s["backends"][0]["backend"], "primary");
    assert_eq!(s["limit_store"]["kind"], "memory");
    assert_eq!(s["records"]["held"], 8);
}

#[test]
fn status_shows_a_burst_as_the_metrics_and_the_audit_log_count_it() {
    if !privileged("status_shows_a_burst_as_the_metrics_and_the_audit_log_count_it") {
        return;
    }
    let (_s, gw, b) = burst(71, "views-status");
    let admin = gw.addr("admin").to_string();
    check_status(&gw, &b, &api_status(&gw, ""));

    // The JSON of `tollgate status --json` is the admin port's.
    let mut cmd = Command::new(tollgate_bin());
    cmd.args(["status", "--json", "--admin", &admin]);
    let out = run(cmd, Duration::from_secs(20));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    check_status(&gw, &b, &serde_json::from_slice(&out.stdout).expect("JSON"));

    // The screen: 80 columns, the numbers of the burst, the dearer workload first.
    let mut cmd = Command::new(tollgate_bin());
    cmd.args(["status", "--admin", &admin]);
    let out = run(cmd, Duration::from_secs(20));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let screen = String::from_utf8(out.stdout).unwrap();
    println!("{screen}");
    for line in screen.lines() {
        assert!(line.chars().count() <= 80, "{line:?}");
    }
    let s = api_status(&gw, "");
    let endpoints = s["endpoints"].as_u64().unwrap();
    let upstream = s["errors"]["upstream"]["total"].as_u64().unwrap();
    let total_usd = s["spend_today"]["total"]["cost_usd"].as_str().unwrap().to_string();
    for want in [
        format!(
            "attached, fail-open, {endpoints} endpoint{}",
            if endpoints == 1 { "" } else { "s" }
        ),
        "8 total".to_string(),
        format!("upstream {upstream} ("),
        format!("${total_usd} over 8 requests, 2 workloads"),
        "limit store  memory, healthy".to_string(),
        "8 held of 1,000 (8 seen)".to_string(),
    ] {
        assert!(screen.contains(&want), "{want:?} not in\n{screen}");
    }
    let at = |comm: &str| {
        screen
            .lines()
            .position(|l| l.starts_with(&format!("{comm} (")))
            .unwrap_or_else(|| panic!("no {comm} row in\n{screen}"))
    };
    assert!(at(OTHER_COMM) < at("curl"), "sorted by spend:\n{screen}");
    let (_, _, curl_cost) = b.by_comm("curl");
    let curl_line = &screen.lines().nth(at("curl")).unwrap();
    assert!(
        curl_line.contains(&format!("${}", usd(curl_cost))) && curl_line.contains(" 5 "),
        "{curl_line}"
    );

    // Records: filtered by workload, model and status, newest first, as the audit log has them.
    let records = |q: &str| -> Vec<Value> {
        let (code, body) = gw.admin_get(&format!("/api/records?{q}"));
        assert_eq!(code, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        v["records"].as_array().unwrap().clone()
    };
    assert_eq!(records("").len(), 8);
    // As written, less the chain's members (the writer thread adds them to the line).
    let mut newest = b.records.last().cloned().unwrap();
    let line = newest.as_object_mut().unwrap();
    assert!(line.remove("seq").is_some() && line.remove("prev").is_some());
    assert_eq!(records("").first(), Some(&newest), "newest first, as written");
    assert_eq!(records(&format!("workload={OTHER_COMM}")).len(), 3);
    assert_eq!(records("model=gpt-4o-mini").len(), 5);
    assert_eq!(records("status=error").len(), 1);
    assert_eq!(records("status=2xx&limit=2").len(), 2);
    let (code, body) = gw.admin_get("/api/records?stauts=200");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("stauts"), "{body}");

    // A config whose admin port is chosen at start cannot say where it is.
    let mut cmd = Command::new(tollgate_bin());
    cmd.arg("status").arg("--config").arg(gw.config_path());
    let out = run(cmd, Duration::from_secs(20));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("port 0") && err.contains("--admin"), "{err}");
}

/// `nano` nano-dollars as the exact decimal string.
fn usd(nano: u64) -> String {
    gateway::accounting::usd(nano)
}

#[test]
fn status_says_when_nothing_answers() {
    // A port just released: nothing listens there.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    for view in ["status", "top"] {
        let mut cmd = Command::new(tollgate_bin());
        cmd.args([view, "--admin", &addr.to_string()]);
        let out = run(cmd, Duration::from_secs(20));
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        // `top` asks before it checks for a terminal or takes one over.
        assert!(
            err.contains(&format!("nothing answers on the admin port {addr}")),
            "{view}: {err}"
        );
    }
}

/// Runs `argv` in a pseudo-terminal through `tests/clients/pty_run.py` with `plan`'s steps.
fn in_pty(argv: &[String], rows: u16, cols: u16, steps: Value) -> (Vec<Vec<u8>>, Option<i64>, bool) {
    let plan = json!({"argv": argv, "rows": rows, "cols": cols, "steps": steps});
    let mut cmd = Command::new("python3");
    cmd.arg(workspace().join("tests/clients/pty_run.py"))
        .arg(plan.to_string());
    let out = run(cmd, Duration::from_secs(60));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("pty_run JSON");
    let outputs = v["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            base64::engine::general_purpose::STANDARD
                .decode(o.as_str().unwrap())
                .unwrap()
        })
        .collect();
    (outputs, v["exit"].as_i64(), v["termios_restored"] == true)
}

#[test]
fn top_shows_the_burst_reorders_by_key_and_quits_restoring_the_terminal() {
    if !privileged("top_shows_the_burst_reorders_by_key_and_quits_restoring_the_terminal") {
        return;
    }
    let (_s, gw, b) = burst(72, "views-top");
    let argv = vec![
        tollgate_bin().display().to_string(),
        "top".into(),
        "--admin".into(),
        gw.addr("admin").to_string(),
    ];
    let (rows, cols) = (40, 120);
    let (outputs, exit, restored) = in_pty(
        &argv,
        rows,
        cols,
        json!([
            {"wait_for": "sort by errors", "settle": 0.8},
            {"send": "r", "read": 1.5},
            {"send": "q", "until_exit": 10},
        ]),
    );
    let mut screen = Screen::new(usize::from(rows), usize::from(cols));

    // 1. The burst's numbers, sorted by spend: the dearer workload first.
    screen.feed(&outputs[0]);
    let first = screen.text();
    println!("{first}");
    assert!(screen.alternate, "top draws in the alternate screen");
    let s = api_status(&gw, "");
    let total_usd = s["spend_today"]["total"]["cost_usd"].as_str().unwrap();
    let (n_curl, _, curl_cost) = b.by_comm("curl");
    for want in [
        "attached, fail-open".to_string(),
        "requests     8 total".to_string(),
        format!("${total_usd} over 8 requests, 2 workloads, by spend"),
        format!("${}", usd(curl_cost)),
        "upstream 1 (".to_string(),
        "primary healthy".to_string(),
        "s sort by spend".to_string(),
        "q quit".to_string(),
    ] {
        assert!(first.contains(&want), "{want:?} not on\n{first}");
    }
    let row_of = |screen: &Screen, comm: &str| {
        screen
            .row_of(&format!("│{comm} ("))
            .unwrap_or_else(|| panic!("no {comm} row on\n{}", screen.text()))
    };
    assert!(
        row_of(&screen, OTHER_COMM) < row_of(&screen, "curl"),
        "by spend:\n{first}"
    );
    let curl_row = first.lines().nth(row_of(&screen, "curl")).unwrap();
    assert!(curl_row.contains(&format!(" {n_curl} ")), "{curl_row}");

    // 2. `r`: by requests, `curl` (5) comes before `burst-b` (3).
    screen.feed(&outputs[1]);
    let second = screen.text();
    println!("{second}");
    assert!(second.contains("by requests"), "{second}");
    assert!(
        row_of(&screen, "curl") < row_of(&screen, OTHER_COMM),
        "by requests:\n{second}"
    );

    // 3. `q`: exit 0, the alternate screen left, the cursor shown, the tty's modes as before.
    screen.feed(&outputs[2]);
    assert_eq!(
        exit,
        Some(0),
        "top's exit status; last output:\n{}",
        String::from_utf8_lossy(&outputs[2])
    );
    assert!(!screen.alternate && screen.left_alternate >= 1, "alternate screen left");
    assert!(!screen.cursor_hidden, "cursor shown again");
    assert!(restored, "terminal modes (raw mode) restored");

    // 4. Ctrl-C (a plain byte in raw mode) quits the same way.
    let (outputs, exit, restored) = in_pty(
        &argv,
        rows,
        cols,
        json!([
            {"wait_for": "sort by errors", "settle": 0.3},
            {"send": "\u{3}", "until_exit": 10},
        ]),
    );
    let mut screen = Screen::new(usize::from(rows), usize::from(cols));
    screen.feed(&outputs.concat());
    assert_eq!(exit, Some(0), "exit status after Ctrl-C");
    assert!(!screen.alternate && screen.left_alternate >= 1 && !screen.cursor_hidden);
    assert!(restored, "terminal modes restored after Ctrl-C");
}

/// Chromium, headless, with a profile of its own; `args` then `url`. Returns stdout.
fn chromium(dir: &TempDir, args: &[String], url: &str) -> String {
    let bin = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new("sh")
                .args(["-c", &format!("command -v {b}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("no chromium: `cargo xtask setup` installs Debian's chromium package");
    let mut cmd = Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", dir.path("chromium-profile").display()))
    .args(args)
    .arg(url);
    let out = run(cmd, Duration::from_secs(90));
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 DOM")
}

/// The `data-value` of the element with `id` in a dumped DOM.
fn value_of(dom: &str, id: &str) -> String {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the page"));
    let tag = &dom[at..at + dom[at..].find('>').unwrap()];
    let v = tag
        .split("data-value=\"")
        .nth(1)
        .unwrap_or_else(|| panic!("#{id} has no data-value: {tag}"));
    v[..v.find('"').unwrap()].to_string()
}

/// The rows of the table with `id` (its `<tr data-…>` body rows).
fn rows_of<'a>(dom: &'a str, id: &str, attr: &str) -> Vec<&'a str> {
    let at = dom.find(&format!("<table id=\"{id}\"")).expect("table");
    let table = &dom[at..at + dom[at..].find("</table>").unwrap()];
    table
        .split(&format!("<tr {attr}=\""))
        .skip(1)
        .map(|r| &r[..r.find('"').unwrap()])
        .collect()
}

#[test]
fn ui_shows_the_metrics_in_a_real_browser() {
    if !privileged("ui_shows_the_metrics_in_a_real_browser") {
        return;
    }
    let (s, gw, b) = burst(73, "views-ui");
    let base = format!("http://{}", gw.addr("admin"));
    let (code, page) = gw.admin_get("/ui");
    assert_eq!(code, 200);
    for external in ["src=\"http", "href=\"http", "src=\"//", "@import", "url(http"] {
        assert!(
            !page.contains(external),
            "the page loads nothing from elsewhere ({external})"
        );
    }

    // The page as the browser built it, after its first polls.
    let budget = "--virtual-time-budget=4000".to_string();
    let dom = chromium(&s.dir, &[budget.clone(), "--dump-dom".into()], &format!("{base}/ui"));
    assert!(
        dom.contains("data-loaded=\"true\""),
        "the page never loaded its data:\n{dom}"
    );
    let st = api_status(&gw, "");
    assert_eq!(value_of(&dom, "requests-total"), "8");
    assert_eq!(
        value_of(&dom, "requests-total").parse::<u64>().unwrap(),
        gw.metric("tollgate_requests_total")
    );
    assert_eq!(value_of(&dom, "connections-total"), "8");
    assert_eq!(
        value_of(&dom, "endpoints").parse::<u64>().unwrap(),
        gw.metric("tollgate_endpoint_entries")
    );
    let sides = b.errors_by_side();
    for side in ["client", "upstream", "proxy"] {
        assert_eq!(
            value_of(&dom, &format!("errors-{side}")),
            sides.get(side).copied().unwrap_or(0).to_string()
        );
    }
    assert_eq!(
        value_of(&dom, "spend-total").parse::<u64>().unwrap(),
        gw.metric("tollgate_cost_nanodollars_total")
    );
    let total_usd = st["spend_today"]["total"]["cost_usd"].as_str().unwrap();
    assert!(dom.contains(&format!(">${total_usd}<")), "spend shown as ${total_usd}");
    let workloads = rows_of(&dom, "by-workload", "data-key");
    assert_eq!(workloads.len(), 2, "{workloads:?}");
    assert!(workloads[0].starts_with(OTHER_COMM), "by spend: {workloads:?}");
    assert_eq!(rows_of(&dom, "backends", "data-key"), ["primary"]);
    assert_eq!(rows_of(&dom, "records", "data-status").len(), 8);

    // The filter, filled from the page's own query.
    let dom = chromium(
        &s.dir,
        &[budget.clone(), "--dump-dom".into()],
        &format!("{base}/ui?workload={OTHER_COMM}&status=error"),
    );
    let statuses = rows_of(&dom, "records", "data-status");
    assert_eq!(statuses.len(), 1, "{statuses:?}");
    assert!(statuses[0].parse::<u16>().unwrap() >= 500);

    // A screenshot for people, kept with the build.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("ui.png");
    let _ = std::fs::remove_file(&png);
    chromium(
        &s.dir,
        &[
            budget,
            format!("--screenshot={}", png.display()),
            "--window-size=1400,1500".into(),
        ],
        &format!("{base}/ui"),
    );
    let started = Instant::now();
    while !png.exists() && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let bytes = std::fs::read(&png).expect("screenshot written");
    assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000, "a real PNG");
    println!("screenshot of /ui: {}", png.display());
}
