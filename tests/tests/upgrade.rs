//! Zero-gap upgrades: while captured clients keep opening connections, instance B starts with
//! instance A's pins and handover socket, takes A's listening sockets, maps and links, and A
//! drains and is stopped. No request fails, none goes around the proxy (nothing listens at the
//! provider address: a bypass would fail), and A's and B's audit records together count every
//! request. In fail-open and in fail-closed mode.

use std::{process::Stdio, time::Duration};

use tests::{fake_llm::FakeLlm, privileged, sdk_python, workspace, Cgroup, GatewayBuilder, TempDir};

/// The provider address the clients call; nothing listens there.
const PROVIDER: &str = "127.10.31.1";
const PORT: u16 = 8000;

fn upgrade_under_load(fail_closed: bool) {
    let backend = FakeLlm::start("upstream", "127.10.31.2", None);
    let cg = Cgroup::new(if fail_closed { "upgrade-closed" } else { "upgrade-open" });
    let builder = || {
        let b = GatewayBuilder::new(&cg)
            .llm_provider("openai", &[], &[PROVIDER], &[PORT], &["backend: upstream"])
            .yaml(&format!(
                "backends:\n  - name: upstream\n    url: {}\n",
                backend.url(false)
            ));
        if fail_closed {
            b.fail_closed()
        } else {
            b
        }
    };
    let mut a = builder().start();

    let dir = TempDir::new("steady-load");
    let stop = dir.path("stop");
    let mut cmd = cg.command(sdk_python());
    cmd.arg(workspace().join("tests/clients/steady_load.py"))
        .args([PROVIDER, &PORT.to_string(), "3"])
        .arg(&stop)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let clients = cmd.spawn().unwrap();

    // Load on A alone, then B takes over under load.
    a.wait_until("A serves the load", Duration::from_secs(10), || {
        a.audit_records().len() >= 20
    });
    let b = builder().take_over_from(&a).start();
    let a_pid = a.pid();
    assert!(b.log().contains("took over"), "{}", b.log());
    a.wait_until("A hands over", Duration::from_secs(10), || {
        a.log().contains("handed over")
    });
    // One admin port, now answered by B (the kubelet probes the same port for both pods).
    assert_eq!(a.addr("admin"), b.addr("admin"));
    let (status, ready) = a.admin_get("/readyz");
    assert_eq!(status, 200, "{ready}");
    assert!(ready.contains(&format!("\"pid\":{}", b.pid())), "{ready}");
    a.handed_over();
    // B serves on its own for a while, then A is stopped (as the kubelet stops the old pod).
    let served_by_b = b.audit_records().len();
    b.wait_until("B serves the load", Duration::from_secs(10), || {
        b.audit_records().len() >= served_by_b + 20
    });
    a.stop();
    let after_a = b.audit_records().len();
    b.wait_until("B serves after A is gone", Duration::from_secs(10), || {
        b.audit_records().len() >= after_a + 20
    });
    std::fs::write(&stop, "").unwrap();
    let out = clients.wait_with_output().unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(summary["failed"], 0, "{summary}\nA:\n{}\nB:\n{}", a.log(), b.log());
    let ok = summary["ok"].as_u64().unwrap();
    assert!(ok >= 60, "{summary}");

    // Every request left exactly one record, in A's log or B's; every one reached the backend.
    let b_records = b.wait_audit(ok as usize - a.audit_records().len());
    let records: Vec<_> = a.audit_records().into_iter().chain(b_records).collect();
    assert_eq!(records.len() as u64, ok, "records of A and B together");
    assert!(records.iter().all(|r| r["status"] == 200), "every record a success");
    assert_eq!(
        backend.received().len() as u64,
        ok,
        "every request went through a proxy"
    );
    assert!(a.log().contains(&format!("successor={}", b.pid())), "{}", a.log());
    assert_ne!(a_pid, b.pid());
    eprintln!(
        "upgrade (fail_closed={fail_closed}): {ok} requests, {} recorded by A, {} by B",
        a.audit_records().len(),
        b.audit_records().len()
    );
}

#[test]
fn an_upgrade_under_load_loses_nothing_fail_open() {
    if !privileged("an_upgrade_under_load_loses_nothing_fail_open") {
        return;
    }
    upgrade_under_load(false);
}

#[test]
fn an_upgrade_under_load_loses_nothing_fail_closed() {
    if !privileged("an_upgrade_under_load_loses_nothing_fail_closed") {
        return;
    }
    upgrade_under_load(true);
}
