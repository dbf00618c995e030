//! DNS learning end to end: workloads resolve through a real `dnsmasq` whose answers Tollgate's
//! own resolution never sees (another address, a CNAME chain, a wildcard name), and are captured
//! on their first connect; answers expire with their TTL; a pod in its own network namespace
//! with its own resolver; DNS over TCP; garbage and cut-short answers pass through, counted.

use std::time::Duration;

use serde_json::Value;
use tests::{
    dns::{command_resolving_through, Dnsmasq, Record, ScriptedDns},
    fake_llm::{FakeLlm, TestCa},
    privileged, run, Cgroup, Gateway, GatewayBuilder, Pod, TempDir,
};

const BODY: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;

struct Setup {
    dir: TempDir,
    cg: Cgroup,
    _backend: FakeLlm,
}

/// A backend on `127.21.<n>.2` (TLS) and a gateway builder governing `api.openai.com` (which
/// Tollgate itself resolves to `127.21.<n>.50`, from its hosts file) and `*.openai.azure.com`
/// (which cannot be resolved ahead), both served by that backend.
fn setup(n: u8, name: &str) -> (Setup, GatewayBuilder) {
    let dir = TempDir::new(name);
    let ca = TestCa::new(&dir.0, "fake");
    let backend_ip = format!("127.21.{n}.2");
    let backend = FakeLlm::start("primary", &backend_ip, Some(ca.server_config(&[&backend_ip])));
    let key = dir.path("key");
    std::fs::write(&key, "sk-real-dns-SECRET\n").unwrap();
    let cg = Cgroup::new(name);
    let builder = GatewayBuilder::new(&cg)
        .llm_provider(
            "openai",
            &["api.openai.com"],
            &[&format!("127.21.{n}.50")],
            &[443],
            &["backend: primary"],
        )
        .llm_provider("azure", &["*.openai.azure.com"], &[], &[443], &["backend: primary"])
        .yaml(&format!(
            "backends:\n  - name: primary\n    url: {}\n    credential: key\n    caFile: {}\n\
             credentials:\n  - name: key\n    kind: bearer\n    file: {}\n",
            backend.url(true),
            ca.pem_path.display(),
            key.display()
        ));
    (
        Setup {
            dir,
            cg,
            _backend: backend,
        },
        builder,
    )
}

/// `curl` (a command set up to run it where the test wants) POSTs a chat completion to
/// `https://{host}`, trusting the node CA; returns whether curl succeeded, its `http_code` and
/// its stderr.
fn post_chat(mut curl: std::process::Command, gw: &Gateway, host: &str) -> (bool, String, String) {
    curl.args(["-sS", "-m", "15", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(gw.ca_cert())
        .args(["-H", "content-type: application/json", "-d", BODY])
        .arg(format!("https://{host}/v1/chat/completions"));
    let out = run(curl, Duration::from_secs(30));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// [`post_chat`] from the setup's cgroup, resolving `host` through `nameserver`.
fn curl_via_dns(s: &Setup, gw: &Gateway, nameserver: &str, host: &str) -> (bool, String, String) {
    post_chat(command_resolving_through(&s.cg, &s.dir, nameserver, "curl"), gw, host)
}

/// The python client asking `server` for `name` (unconnected UDP, or `--tcp`) from the cgroup.
fn dns_query(cg: &Cgroup, server: &str, name: &str, tcp: bool) -> Value {
    let mut cmd = cg.command(tests::sdk_python());
    cmd.arg(tests::workspace().join("tests/clients/dns_query.py"))
        .args([server, name]);
    if tcp {
        cmd.arg("--tcp");
    }
    let out = run(cmd, Duration::from_secs(20));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn dns_metric(gw: &Gateway, transport: &str, outcome: &str) -> u64 {
    gw.metric(&format!(
        "tollgate_dns_queries_total{{transport=\"{transport}\",outcome=\"{outcome}\"}}"
    ))
}

/// A workload whose resolver answers what Tollgate's own resolution never saw — another address
/// behind a CNAME chain, a name under a wildcard — is captured on its first connect; the
/// answer's source is the server it asked; other names pass through untouched; when the TTL
/// runs out the address leaves the maps.
#[test]
fn a_workload_is_captured_at_the_addresses_its_own_resolver_answered() {
    if !privileged("a_workload_is_captured_at_the_addresses_its_own_resolver_answered") {
        return;
    }
    let (s, builder) = setup(1, "dns-learn");
    let dns = Dnsmasq::start(
        &s.dir,
        "127.21.1.53",
        &[
            Record::Cname("api.openai.com", "edge.cdn.test", 1),
            Record::A("edge.cdn.test", "127.21.1.60", 1),
            Record::A("myres.openai.azure.com", "127.21.1.70", 1),
            Record::A("plain.test", "127.21.1.80", 1),
        ],
    );
    let gw = builder.dns_setting("learnedMinTtl: 1s").start();

    let (ok, code, err) = curl_via_dns(&s, &gw, &dns.ip, "api.openai.com");
    assert!(ok && code == "200", "{code} {err}\n{}", gw.log());
    let r = gw.wait_record("api.openai.com via the CDN address", |r| r["provider"] == "openai");
    assert_eq!(r["original_dst"], "127.21.1.60:443", "{r}");
    assert!(
        dns.asked().contains("api.openai.com"),
        "the workload's own resolver answered"
    );

    let (ok, code, err) = curl_via_dns(&s, &gw, &dns.ip, "myres.openai.azure.com");
    assert!(ok && code == "200", "{code} {err}\n{}", gw.log());
    let r = gw.wait_record("the wildcard name", |r| r["provider"] == "azure");
    assert_eq!(r["original_dst"], "127.21.1.70:443", "{r}");
    assert_eq!(r["sni"], "myres.openai.azure.com", "{r}");

    // sendto/recvfrom on an unconnected socket: the answer shows the server asked as its source.
    let v = dns_query(&s.cg, &dns.ip, "api.openai.com", false);
    assert_eq!(v["from"], serde_json::json!(["127.21.1.53", 53]), "{v}");
    assert_eq!(v["addresses"], serde_json::json!(["127.21.1.60"]), "{v}");
    let learned = dns_metric(&gw, "udp", "learned");
    assert!(learned >= 3, "{learned}");
    let v = dns_query(&s.cg, &dns.ip, "plain.test", false);
    assert_eq!(v["addresses"], serde_json::json!(["127.21.1.80"]), "{v}");
    assert_eq!(
        dns_metric(&gw, "udp", "learned"),
        learned,
        "nothing governed: nothing learned"
    );
    assert!(dns_metric(&gw, "udp", "answered") >= 1);

    // TTL 1 s: the learned addresses go, and a connect to them is no longer captured.
    gw.wait_until("learned names expired", Duration::from_secs(15), || {
        gw.metric("tollgate_dns_learned_names") == 0
    });
    let mut cmd =
        s.cg.command_with_hosts(&s.dir, &[("api.openai.com", "127.21.1.60")], "curl");
    cmd.args(["-sS", "-m", "5", "-o", "/dev/null", "--cacert"])
        .arg(gw.ca_cert())
        .arg("https://api.openai.com/v1/models");
    let out = run(cmd, Duration::from_secs(20));
    assert!(
        !out.status.success(),
        "127.21.1.60 is not captured any more (nothing listens there): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// DNS over TCP is forwarded and learned from like UDP; a server's garbage or cut-short answer
/// reaches the client byte for byte, is counted, and the forwarder keeps serving.
#[test]
fn dns_over_tcp_is_learned_and_garbage_answers_pass_through() {
    if !privileged("dns_over_tcp_is_learned_and_garbage_answers_pass_through") {
        return;
    }
    let (s, builder) = setup(2, "dns-tcp");
    let dns = Dnsmasq::start(
        &s.dir,
        "127.21.2.53",
        &[Record::A("other.openai.azure.com", "127.21.2.71", 60)],
    );
    let garbage: &[u8] = b"\x81\x80not a dns message at all";
    let scripted = ScriptedDns::start("127.21.2.54", move |q| {
        let name = String::from_utf8_lossy(q);
        let mut a = q[..2].to_vec();
        if name.contains("cut") {
            // A real answer's header promising one record, then nothing.
            a.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
            a.extend_from_slice(&q[12..]);
            a.extend_from_slice(&[0xc0, 0x0c, 0, 1]);
        } else {
            a.extend_from_slice(garbage);
        }
        a
    });
    let gw = builder.start();

    let v = dns_query(&s.cg, &dns.ip, "other.openai.azure.com", true);
    assert_eq!(v["addresses"], serde_json::json!(["127.21.2.71"]), "{v}");
    assert_eq!(
        v["from"],
        serde_json::json!(["127.21.2.53", 53]),
        "getpeername shows the server: {v}"
    );
    assert!(dns_metric(&gw, "tcp", "learned") >= 1);
    // The address learned over TCP is captured (the client now connects by address).
    let cmd =
        s.cg.command_with_hosts(&s.dir, &[("other.openai.azure.com", "127.21.2.71")], "curl");
    let (_, code, _) = post_chat(cmd, &gw, "other.openai.azure.com");
    assert_eq!(code, "200", "{}", gw.log());
    let r = gw.wait_record("learned over TCP", |r| r["provider"] == "azure");
    assert_eq!(r["original_dst"], "127.21.2.71:443");

    let v = dns_query(&s.cg, "127.21.2.54", "junk.test", false);
    let mut expected = vec![0x51u8, 0x51];
    expected.extend_from_slice(garbage);
    assert_eq!(v["hex"], hex(&expected), "passed on byte for byte: {v}");
    assert_eq!(v["from"], serde_json::json!(["127.21.2.54", 53]));
    let v = dns_query(&s.cg, "127.21.2.54", "cut.test", false);
    assert_eq!(v["addresses"], serde_json::json!([]), "{v}");
    assert!(dns_metric(&gw, "udp", "unparsed") >= 2);
    // Still serving.
    let v = dns_query(&s.cg, &dns.ip, "other.openai.azure.com", false);
    assert_eq!(v["addresses"], serde_json::json!(["127.21.2.71"]), "{v}");
    drop(scripted);

    // IPv6: a resolver on ::1, asked from an AF_INET6 socket (sendmsg6/recvmsg6).
    let before = dns_metric(&gw, "udp", "learned");
    let dns6 = Dnsmasq::start(&s.dir, "::1", &[Record::A("v6.openai.azure.com", "127.21.2.72", 60)]);
    let v = dns_query(&s.cg, &dns6.ip, "v6.openai.azure.com", false);
    assert_eq!(v["addresses"], serde_json::json!(["127.21.2.72"]), "{v}");
    assert_eq!(v["from"][0], "::1", "{v}");
    assert_eq!(v["from"][1], 53, "{v}");
    assert!(dns_metric(&gw, "udp", "learned") > before, "learned over IPv6");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A pod in its own network namespace, whose resolver is its own address (the cluster DNS
/// of a real node), is captured at the address that resolver answered.
#[test]
fn a_pod_with_its_own_resolver_is_captured() {
    if !privileged("a_pod_with_its_own_resolver_is_captured") {
        return;
    }
    let (s, builder) = setup(3, "dns-pod");
    let pod = Pod::new(7);
    let dns = Dnsmasq::start(&s.dir, &pod.host_ip, &[Record::A("api.openai.com", "127.21.3.60", 30)]);
    // `ip netns exec` mounts these over /etc for the pod.
    let etc = std::path::PathBuf::from("/etc/netns").join(&pod.netns);
    std::fs::create_dir_all(&etc).unwrap();
    let _cleanup = RemoveDir(etc.clone());
    std::fs::write(etc.join("resolv.conf"), format!("nameserver {}\n", pod.host_ip)).unwrap();
    std::fs::write(etc.join("hosts"), "127.0.0.1 localhost\n").unwrap();
    let gw = builder.node_address4(&format!("{}:0", pod.host_ip)).start();
    let (_, code, err) = post_chat(pod.command(&s.cg, "curl"), &gw, "api.openai.com");
    assert_eq!(code, "200", "{err}\n{}", gw.log());
    let r = gw.wait_record("from the pod", |r| r["provider"] == "openai");
    assert_eq!(r["original_dst"], "127.21.3.60:443", "{r}");
    assert_eq!(r["workload"]["host_netns"], false, "{r}");
    assert!(dns.asked().contains("api.openai.com"));
}

struct RemoveDir(std::path::PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// DNS is fail-open whatever `capture.failMode` says: with a fail-closed instance gone (its
/// programs still attached, captured connects refused), queries go straight to their server.
#[test]
fn dns_goes_straight_to_its_server_while_tollgate_is_down_even_fail_closed() {
    if !privileged("dns_goes_straight_to_its_server_while_tollgate_is_down_even_fail_closed") {
        return;
    }
    let (s, builder) = setup(4, "dns-down");
    let dns = Dnsmasq::start(&s.dir, "127.21.4.53", &[Record::A("api.openai.com", "127.21.4.60", 60)]);
    let mut gw = builder.fail_closed().start();
    let v = dns_query(&s.cg, &dns.ip, "api.openai.com", false);
    assert_eq!(v["addresses"], serde_json::json!(["127.21.4.60"]), "{v}");
    assert!(dns_metric(&gw, "udp", "learned") >= 1);
    gw.kill();
    // The programs stay (fail-closed): a connect to the learned address is refused...
    let mut cmd =
        s.cg.command_with_hosts(&s.dir, &[("api.openai.com", "127.21.4.60")], "curl");
    cmd.args(["-sS", "-m", "5", "https://api.openai.com/v1/models"]);
    let out = run(cmd, Duration::from_secs(20));
    assert!(!out.status.success(), "fail-closed refuses the captured connect");
    // ...while DNS, over UDP and TCP, reaches its server directly.
    let v = dns_query(&s.cg, &dns.ip, "api.openai.com", false);
    assert_eq!(v["addresses"], serde_json::json!(["127.21.4.60"]), "{v}");
    assert_eq!(v["from"], serde_json::json!(["127.21.4.53", 53]), "{v}");
    let v = dns_query(&s.cg, &dns.ip, "api.openai.com", true);
    assert_eq!(v["addresses"], serde_json::json!(["127.21.4.60"]), "{v}");
    gw.detach_pins();
}
