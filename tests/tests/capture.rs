//! Transparent capture, end to end: real eBPF programs attached to a child cgroup, real
//! clients (curl, Python) in that cgroup, fake provider servers on loopback addresses.

use std::{process::Command, time::Duration};

use tests::{privileged, python_client, run, Behaviour, Cgroup, FakeServer, GatewayBuilder, Pod, TempDir};

const EPERM: i64 = 1;

#[test]
fn curl_and_python_in_the_cgroup_are_captured_with_identity() {
    if !privileged("curl_and_python_in_the_cgroup_are_captured_with_identity") {
        return;
    }
    let provider = FakeServer::start("127.10.1.1", Behaviour::Http);
    let cg = Cgroup::new("curl");
    // `observe`: captured and relayed as bytes (plaintext HTTP to an `intercept` provider goes
    // to the L7 pipeline instead; tests/tests/intercept.rs covers that).
    let gw = GatewayBuilder::new(&cg)
        .provider("openai", "observe", &["127.10.1.1"], &[provider.port()])
        .start();

    let url = format!("http://{}/v1/chat/completions", provider.addr);
    let mut curl = cg.command("curl");
    curl.args([
        "-sS",
        "-m",
        "10",
        "-w",
        "\n%{remote_ip}:%{remote_port}",
        "-H",
        "content-type: application/json",
    ])
    .args(["-d", r#"{"model":"gpt-4o-mini","messages":[]}"#, &url]);
    let out = run(curl, Duration::from_secs(20));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("hello from the fake provider"), "{stdout}");
    // getpeername (which curl reports as remote_ip:port) shows the original destination.
    assert!(
        stdout.trim_end().ends_with(&provider.addr.to_string()),
        "curl saw {stdout}"
    );

    let record = gw.wait_record("from curl", |r| r["workload"]["comm"] == "curl");
    assert_eq!(record["original_dst"], provider.addr.to_string());
    assert_eq!(record["provider"], "openai");
    assert_eq!(record["mode"], "observe");
    assert_eq!(record["l7"], false);
    assert_eq!(record["outcome"], "completed");
    assert_eq!(record["workload"]["exe"], "/usr/bin/curl");
    assert!(record["workload"]["cgroup"]
        .as_str()
        .unwrap()
        .ends_with(cg.path.file_name().unwrap().to_str().unwrap()));
    assert!(record["bytes_received"].as_u64().unwrap() > 100);
    // The fake provider saw the proxy, not curl: one hop through Tollgate.
    assert_eq!(provider.peers().len(), 1);

    // A Python client (no Tollgate awareness): its pid must be the one recorded.
    let echo = FakeServer::start("127.10.1.1", Behaviour::Peer);
    drop(gw);
    let gw = GatewayBuilder::new(&cg)
        .provider("openai", "intercept", &["127.10.1.1"], &[echo.port()])
        .start();
    let mut cmd = cg.command("python3");
    cmd.arg(tests::tcp_client())
        .args(["connect", "127.10.1.1", &echo.port().to_string()]);
    let child = cmd.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(
        v["peer"][1],
        echo.port(),
        "getpeername must return the original port: {v}"
    );
    let record = gw.wait_record("from python", |r| r["workload"]["comm"] == "python3");
    // sh execs python3 in place, so the recorded tgid is the pid we spawned.
    assert_eq!(record["workload"]["tgid"], pid);
    assert_eq!(record["workload"]["uid"], 0);
    assert!(record["workload"]["host_netns"].as_bool().unwrap());
}

#[test]
fn uncaptured_clients_and_destinations_are_left_alone() {
    if !privileged("uncaptured_clients_and_destinations_are_left_alone") {
        return;
    }
    let captured = FakeServer::start("127.10.2.1", Behaviour::Peer);
    let other = FakeServer::start("127.10.2.2", Behaviour::Peer);
    let cg = Cgroup::new("alone");
    let gw = GatewayBuilder::new(&cg)
        .provider("p", "intercept", &["127.10.2.1"], &[captured.port()])
        .start();

    // Outside the cgroup: direct, so the server sees the client's own address.
    let v = python_client(None, &["connect", "127.10.2.1", &captured.port().to_string()]);
    let sock = format!("{}:{}", v["sock"][0].as_str().unwrap(), v["sock"][1]);
    assert_eq!(v["reply"], format!("peer={sock}"), "uncaptured client must go direct");

    // In the cgroup, to a destination not in the maps: direct too.
    let v = python_client(Some(&cg), &["connect", "127.10.2.2", &other.port().to_string()]);
    let sock = format!("{}:{}", v["sock"][0].as_str().unwrap(), v["sock"][1]);
    assert_eq!(
        v["reply"],
        format!("peer={sock}"),
        "unlisted destination must go direct"
    );

    // Same address, other port: not captured either (endpoints are ip:port).
    let same_ip_other_port = FakeServer::start("127.10.2.1", Behaviour::Peer);
    let v = python_client(
        Some(&cg),
        &["connect", "127.10.2.1", &same_ip_other_port.port().to_string()],
    );
    let sock = format!("{}:{}", v["sock"][0].as_str().unwrap(), v["sock"][1]);
    assert_eq!(v["reply"], format!("peer={sock}"));

    // And the captured one in the cgroup is redirected: the server sees the proxy instead.
    let v = python_client(Some(&cg), &["connect", "127.10.2.1", &captured.port().to_string()]);
    let sock = format!("{}:{}", v["sock"][0].as_str().unwrap(), v["sock"][1]);
    assert_ne!(
        v["reply"],
        format!("peer={sock}"),
        "captured client must go through the proxy"
    );
    gw.wait_record("captured", |r| r["original_dst"] == captured.addr.to_string());
    assert_eq!(gw.records().len(), 1, "only the captured connection is recorded");
    assert_eq!(gw.metric("tollgate_ebpf_connect_events_total{event=\"redirected\"}"), 1);
}

#[test]
fn the_proxys_own_upstream_connection_is_not_redirected() {
    if !privileged("the_proxys_own_upstream_connection_is_not_redirected") {
        return;
    }
    let server = FakeServer::start("127.10.3.1", Behaviour::Echo);
    let cg = Cgroup::new("loop");
    // The gateway runs inside the captured cgroup: without the mark, its upstream connect to
    // the provider would be redirected back to itself.
    let gw = GatewayBuilder::new(&cg)
        .provider("p", "intercept", &["127.10.3.1"], &[server.port()])
        .run_inside(&cg)
        .start();
    let v = python_client(
        Some(&cg),
        &["connect", "127.10.3.1", &server.port().to_string(), "no-loop"],
    );
    assert_eq!(v["reply"], "no-loop", "{v}");
    let record = gw.wait_record("echo", |r| r["outcome"] == "completed");
    assert_eq!(record["bytes_sent"], 7);
    assert_eq!(
        gw.metric("tollgate_ebpf_connect_events_total{event=\"skipped_own\"}"),
        1
    );
    assert_eq!(gw.metric("tollgate_ebpf_connect_events_total{event=\"redirected\"}"), 1);
    assert_eq!(server.peers().len(), 1);
}

#[test]
fn ipv6_and_v4_mapped_sockets_are_captured() {
    if !privileged("ipv6_and_v4_mapped_sockets_are_captured") {
        return;
    }
    let v6 = FakeServer::start("::1", Behaviour::Peer);
    let v4 = FakeServer::start("127.10.4.1", Behaviour::Peer);
    let cg = Cgroup::new("v6");
    let gw = GatewayBuilder::new(&cg)
        .provider("v6", "intercept", &["::1"], &[v6.port()])
        .provider("v4", "intercept", &["127.10.4.0/24"], &[v4.port()])
        .start();

    let v = python_client(Some(&cg), &["connect", "::1", &v6.port().to_string()]);
    assert_eq!(v["peer"][0], "::1", "{v}");
    assert_eq!(v["peer"][1], v6.port());
    let sock = format!("[{}]:{}", v["sock"][0].as_str().unwrap(), v["sock"][1]);
    assert_ne!(v["reply"], format!("peer={sock}"));
    gw.wait_record("v6", |r| {
        r["original_dst"] == format!("[::1]:{}", v6.port()) && r["provider"] == "v6"
    });

    // An AF_INET6 socket connecting to ::ffff:127.10.4.1 never reaches connect4.
    let v = python_client(Some(&cg), &["connect", "::ffff:127.10.4.1", &v4.port().to_string()]);
    assert_eq!(
        v["peer"][0], "::ffff:127.10.4.1",
        "getpeername must show the v4-mapped original: {v}"
    );
    assert_eq!(v["peer"][1], v4.port());
    gw.wait_record("v4-mapped (CIDR match)", |r| {
        r["original_dst"] == v4.addr.to_string() && r["provider"] == "v4"
    });
}

#[test]
fn deny_endpoints_fail_connect_with_eperm() {
    if !privileged("deny_endpoints_fail_connect_with_eperm") {
        return;
    }
    let server = FakeServer::start("127.10.5.1", Behaviour::Peer);
    let cg = Cgroup::new("deny");
    let gw = GatewayBuilder::new(&cg)
        .provider("blocked", "deny", &["127.10.5.1"], &[server.port()])
        .start();
    let v = python_client(Some(&cg), &["connect", "127.10.5.1", &server.port().to_string()]);
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["errno"], EPERM, "{v}");
    let v = python_client(Some(&cg), &["connect", "::ffff:127.10.5.1", &server.port().to_string()]);
    assert_eq!(v["errno"], EPERM, "v4-mapped deny: {v}");
    assert!(server.peers().is_empty());
    assert_eq!(gw.metric("tollgate_ebpf_connect_events_total{event=\"denied\"}"), 2);
}

#[test]
fn a_killed_proxy_fails_open_by_default_and_closed_when_configured() {
    if !privileged("a_killed_proxy_fails_open_by_default_and_closed_when_configured") {
        return;
    }
    let server = FakeServer::start("127.10.6.1", Behaviour::Peer);
    let port = server.port().to_string();
    let cg = Cgroup::new("failopen");

    let mut gw = GatewayBuilder::new(&cg)
        .provider("p", "intercept", &["127.10.6.1"], &[server.port()])
        .start();
    let v = python_client(Some(&cg), &["connect", "127.10.6.1", &port]);
    let sock = format!("{}:{}", v["sock"][0].as_str().unwrap(), v["sock"][1]);
    assert_ne!(v["reply"], format!("peer={sock}"), "captured while the proxy runs");
    gw.kill();
    let v = python_client(Some(&cg), &["connect", "127.10.6.1", &port]);
    let sock = format!("{}:{}", v["sock"][0].as_str().unwrap(), v["sock"][1]);
    assert_eq!(
        v["reply"],
        format!("peer={sock}"),
        "fail-open: direct after SIGKILL: {v}"
    );
    drop(gw);

    let mut gw = GatewayBuilder::new(&cg)
        .provider("p", "intercept", &["127.10.6.1"], &[server.port()])
        .fail_closed()
        .start();
    let v = python_client(Some(&cg), &["connect", "127.10.6.1", &port]);
    assert_eq!(v["ok"], true, "captured while the proxy runs: {v}");
    gw.kill();
    let v = python_client(Some(&cg), &["connect", "127.10.6.1", &port]);
    assert_eq!(v["ok"], false, "fail-closed: refused after SIGKILL: {v}");
    assert_eq!(v["errno"], EPERM, "{v}");
    // Uncaptured destinations are unaffected even then.
    let other = FakeServer::start("127.10.6.2", Behaviour::Peer);
    let v = python_client(Some(&cg), &["connect", "127.10.6.2", &other.port().to_string()]);
    assert_eq!(v["ok"], true, "{v}");
    gw.detach_pins();
    let v = python_client(Some(&cg), &["connect", "127.10.6.1", &port]);
    assert_eq!(v["ok"], true, "after `tollgate detach` connects go direct: {v}");
}

#[test]
fn a_direct_connection_to_the_listener_is_closed() {
    if !privileged("a_direct_connection_to_the_listener_is_closed") {
        return;
    }
    use std::io::{Read as _, Write as _};
    let cg = Cgroup::new("direct");
    let gw = GatewayBuilder::new(&cg)
        .provider("p", "intercept", &["127.10.7.1"], &[443])
        .start();
    for key in ["listener4", "listener6"] {
        let mut s = std::net::TcpStream::connect(gw.addr(key)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(b"CONNECT 1.2.3.4:443 HTTP/1.1\r\n\r\n");
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "the listener must close a connection it has no record for");
    }
    assert_eq!(gw.metric("tollgate_unknown_connections_total"), 2);
    assert!(gw.records().is_empty());
}

#[test]
fn a_thousand_concurrent_captured_connections_echo_intact() {
    if !privileged("a_thousand_concurrent_captured_connections_echo_intact") {
        return;
    }
    let server = FakeServer::start("127.10.8.1", Behaviour::Echo);
    let cg = Cgroup::new("thousand");
    let gw = GatewayBuilder::new(&cg)
        .provider("p", "intercept", &["127.10.8.1"], &[server.port()])
        .start();
    let v = python_client(
        Some(&cg),
        &["echo-many", "127.10.8.1", &server.port().to_string(), "1000"],
    );
    assert_eq!(v["good"], 1000, "{v}");
    // Every connection is recorded once the relays finish.
    let start = std::time::Instant::now();
    while gw.records().len() < 1000 && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let records = gw.records();
    assert_eq!(records.len(), 1000);
    assert!(records.iter().all(|r| r["outcome"] == "completed"));
    assert_eq!(server.peers().len(), 1000);
}

#[test]
fn a_pod_in_its_own_netns_is_captured_through_the_node_address() {
    if !privileged("a_pod_in_its_own_netns_is_captured_through_the_node_address") {
        return;
    }
    let server = FakeServer::start("127.10.9.1", Behaviour::Peer);
    let pod = Pod::new(1);
    let cg = Cgroup::new("pod");
    let gw = GatewayBuilder::new(&cg)
        .provider("p", "intercept", &["127.10.9.1"], &[server.port()])
        .node_address4(&format!("{}:0", pod.host_ip))
        .start();
    let mut cmd = pod.command(&cg, "python3");
    cmd.arg(tests::tcp_client())
        .args(["connect", "127.10.9.1", &server.port().to_string(), "from-pod"]);
    let out = run(cmd, Duration::from_secs(30));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(
        v["sock"][0],
        pod.pod_ip.as_str(),
        "the pod connected from its own address: {v}"
    );
    assert_eq!(
        v["peer"][1],
        server.port(),
        "getpeername shows the original destination: {v}"
    );
    assert!(
        v["reply"].as_str().unwrap().starts_with("peer=127."),
        "relayed by the proxy on the host: {v}"
    );
    let record = gw.wait_record("from the pod", |r| r["via"] == "node");
    assert_eq!(
        record["client"].as_str().unwrap().split(':').next().unwrap(),
        pod.pod_ip
    );
    assert_eq!(record["original_dst"], server.addr.to_string());
    assert_eq!(record["workload"]["host_netns"], false);
    assert_eq!(record["workload"]["comm"], "python3");

    // A host client in the same cgroup still uses the loopback listener.
    let v = python_client(Some(&cg), &["connect", "127.10.9.1", &server.port().to_string()]);
    assert_eq!(v["ok"], true);
    gw.wait_record("from the host", |r| r["via"] == "host");
}

#[test]
fn hostnames_are_resolved_into_the_maps_and_admin_reports_ready() {
    if !privileged("hostnames_are_resolved_into_the_maps_and_admin_reports_ready") {
        return;
    }
    // `localhost` resolves from /etc/hosts (no DNS traffic) to 127.0.0.1.
    let server = FakeServer::start("127.0.0.1", Behaviour::Peer);
    let cg = Cgroup::new("dns");
    let gw = GatewayBuilder::new(&cg)
        .hostname_provider("local", &["localhost"], &[server.port()])
        .start();
    let v = python_client(Some(&cg), &["connect", "127.0.0.1", &server.port().to_string()]);
    let sock = format!("{}:{}", v["sock"][0].as_str().unwrap(), v["sock"][1]);
    assert_ne!(
        v["reply"],
        format!("peer={sock}"),
        "hostname-derived endpoint must be captured"
    );
    gw.wait_record("via hostname", |r| r["provider"] == "local");

    let (status, body) = gw.admin_get("/readyz");
    assert_eq!(status, 200, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["programsAttached"], true);
    let (status, _) = gw.admin_get("/healthz");
    assert_eq!(status, 200);
    assert!(gw.metric("tollgate_endpoint_entries") >= 1);
    let (status, body) = gw.admin_get("/config");
    assert_eq!(status, 200);
    assert!(body.contains("localhost"), "{body}");
}

#[test]
fn sigterm_detaches_and_flushes_the_log() {
    if !privileged("sigterm_detaches_and_flushes_the_log") {
        return;
    }
    let server = FakeServer::start("127.10.10.1", Behaviour::Peer);
    let cg = Cgroup::new("sigterm");
    let mut gw = GatewayBuilder::new(&cg)
        .provider("p", "intercept", &["127.10.10.1"], &[server.port()])
        .start();
    let v = python_client(Some(&cg), &["connect", "127.10.10.1", &server.port().to_string()]);
    assert_eq!(v["ok"], true);
    gw.stop();
    assert_eq!(gw.records().len(), 1, "the record is flushed by a graceful stop");
    assert!(gw.log().contains("detaching programs"));
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("cat {}/cgroup.procs | wc -l", cg.path.display()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
    let v = python_client(Some(&cg), &["connect", "127.10.10.1", &server.port().to_string()]);
    let sock = format!("{}:{}", v["sock"][0].as_str().unwrap(), v["sock"][1]);
    assert_eq!(
        v["reply"],
        format!("peer={sock}"),
        "after SIGTERM the programs are gone: {v}"
    );
}

/// The names pinned under `dir` (maps under `maps-v<N>/` as `maps-v<N>/<map>`).
fn pinned(dir: &std::path::Path) -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_dir() {
            names.extend(pinned(&entry.path()).into_iter().map(|m| format!("{name}/{m}")));
        } else {
            names.push(name);
        }
    }
    names.sort();
    names
}

#[test]
fn a_failed_start_removes_the_pins_it_created_and_no_others() {
    if !privileged("a_failed_start_removes_the_pins_it_created_and_no_others") {
        return;
    }
    let server = FakeServer::start("127.10.11.1", Behaviour::Peer);
    let port = server.port();
    let cg = Cgroup::new("failstart");
    // A directory as the audit log: the start fails after loading the maps, before attaching.
    let not_a_file = TempDir::new("failstart-audit");
    let builder = || GatewayBuilder::new(&cg).provider("p", "intercept", &["127.10.11.1"], &[port]);

    // Alone: it created the maps and the pin directory, and removes them.
    let (log, pins) = builder().audit_path(&not_a_file.0).start_to_fail();
    assert!(log.contains("cannot open the audit log"), "{log}");
    assert!(log.contains("removed the pins it had created"), "{log}");
    assert!(!pins.exists(), "left behind: {:?}", pinned(&pins));

    // Beside a running instance (a handover that fails): the running one's pins stay, and it
    // goes on capturing.
    let gw = builder().start();
    let before = pinned(gw.pin_path());
    assert!(before.iter().any(|p| p.ends_with("/ENDPOINTS4")), "{before:?}");
    let (log, _) = builder().take_over_from(&gw).audit_path(&not_a_file.0).start_to_fail();
    assert!(log.contains("cannot open the audit log"), "{log}");
    assert!(!log.contains("removed the pins"), "{log}");
    assert_eq!(pinned(gw.pin_path()), before);
    let v = python_client(Some(&cg), &["connect", "127.10.11.1", &port.to_string()]);
    assert_eq!(v["ok"], true, "{v}");
    let sock = format!("{}:{}", v["sock"][0].as_str().unwrap(), v["sock"][1]);
    assert_ne!(v["reply"], format!("peer={sock}"), "still captured: {v}");
    gw.wait_record("after the failed start", |r| r["provider"] == "p");
}

#[test]
fn a_full_endpoint_map_leaves_out_resolved_addresses_and_says_so() {
    if !privileged("a_full_endpoint_map_leaves_out_resolved_addresses_and_says_so") {
        return;
    }
    let cap = gateway::config::capacity::MapKind::Exact4.capacity() as u32;
    let server = FakeServer::start("127.0.0.1", Behaviour::Peer);
    let port = server.port();
    // As many addresses as the exact IPv4 map holds (far past the 16,384 it held before), all
    // loopback, then a hostname (`localhost`, from the test's hosts file) with no room left.
    let addresses: Vec<String> = (0..cap)
        .map(|i| std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(127, 12, 0, 0)) + i).to_string())
        .collect();
    let addresses: Vec<&str> = addresses.iter().map(String::as_str).collect();
    let cg = Cgroup::new("fullmap");
    let gw = GatewayBuilder::new(&cg)
        .provider("many", "observe", &addresses, &[port])
        .hostname_provider("local", &["localhost"], &[port])
        .start();
    assert_eq!(gw.metric("tollgate_endpoint_entries"), u64::from(cap));
    let log = gw.log();
    assert!(
        log.contains("endpoint map full: addresses of this hostname are not captured") && log.contains("localhost"),
        "{log}"
    );
    assert!(gw.metric("tollgate_dns_resolution_failures_total{provider=\"local\"}") >= 1);
    // Left out: a connect to it is not redirected.
    let v = python_client(Some(&cg), &["connect", "127.0.0.1", &port.to_string()]);
    let sock = format!("{}:{}", v["sock"][0].as_str().unwrap(), v["sock"][1]);
    assert_eq!(v["reply"], format!("peer={sock}"), "not captured: {v}");
}
