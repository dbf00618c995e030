//! The audit log's tamper evidence end to end: real requests through a gateway, then
//! `tollgate audit verify` on copies of its log with one line changed, removed, swapped,
//! inserted, or the tail cut off, each found and located; across rotations and a restart,
//! one chain.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use serde_json::Value;
use tests::{
    l7::{chat_curl, openai_setup, OpenAiSetup},
    privileged, run, tollgate_bin, Gateway, GatewayBuilder, TempDir,
};

const CHAT: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;

fn chat(s: &OpenAiSetup, gw: &Gateway, n: usize) {
    for _ in 0..n {
        let (status, body) = chat_curl(s, gw, CHAT, &[]);
        assert!(status.starts_with("200"), "{status} {body}");
    }
}

/// `tollgate audit <args>`: exit status and stdout + stderr.
fn audit(args: &[&std::ffi::OsStr]) -> (i32, String) {
    let (code, stdout, stderr) = audit_out(args);
    (code, stdout + &stderr)
}

/// `tollgate audit <args>`: exit status, stdout, stderr.
fn audit_out(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let mut cmd = Command::new(tollgate_bin());
    cmd.arg("audit").args(args);
    let out = run(cmd, Duration::from_secs(30));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn verify(files: &[PathBuf], key: Option<&Path>) -> (i32, String) {
    let mut args: Vec<&std::ffi::OsStr> = vec!["verify".as_ref()];
    if let Some(k) = key {
        args.extend(["--key".as_ref(), k.as_os_str()]);
    }
    args.extend(files.iter().map(|f| f.as_os_str()));
    audit(&args)
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
}

fn seq(line: &str) -> u64 {
    serde_json::from_str::<Value>(line).unwrap()["seq"].as_u64().unwrap()
}

fn is_request(line: &str) -> bool {
    line.starts_with(r#"{"record":"request""#)
}

#[test]
fn verify_finds_and_locates_each_kind_of_tampering() {
    if !privileged("verify_finds_and_locates_each_kind_of_tampering") {
        return;
    }
    let (s, builder) = openai_setup(41, "chain-tamper", "");
    let mut gw = builder.audit_setting("checkpoint: { records: 4 }").start();
    chat(&s, &gw, 7);
    assert_eq!(gw.wait_audit(7).len(), 7);

    // The operator pins the key.
    let (code, pubkey, err) = audit_out(&["pubkey".as_ref(), "--config".as_ref(), gw.config_path().as_os_str()]);
    assert_eq!(code, 0, "{pubkey}{err}");
    let key = s.dir.path("audit.pub");
    std::fs::write(&key, &pubkey).unwrap();
    let fingerprint = pubkey
        .split_whitespace()
        .find(|w| w.starts_with("ed25519:"))
        .expect("fingerprint")
        .to_owned();
    // The key next to the node CA key, private; never in the log (its fingerprint is).
    let private = std::fs::read_to_string(gw.dir().join("audit-signing.key")).unwrap();
    assert!(
        !private.lines().skip(1).any(|l| gw.log().contains(l)),
        "no key material in the log"
    );
    assert!(gw.log().contains(&fingerprint), "the start logs the key's fingerprint");

    gw.stop();
    let log = s.dir.path("audit.jsonl");
    std::fs::copy(gw.audit_path(), &log).unwrap();
    let good = lines(&log);
    let all: Vec<Value> = good.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let reasons: Vec<&str> = all
        .iter()
        .filter(|r| r["record"] == "checkpoint")
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons.first(), Some(&"start"));
    assert_eq!(reasons.last(), Some(&"stop"), "a graceful stop seals the log");
    assert!(reasons.contains(&"records"), "{reasons:?}");
    assert_eq!(
        all.iter().map(|r| r["seq"].as_u64().unwrap()).collect::<Vec<_>>(),
        (0..good.len() as u64).collect::<Vec<_>>()
    );

    // Untouched: intact, checked against the pinned key.
    let (code, out) = verify(std::slice::from_ref(&log), Some(&key));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("key {fingerprint}: pinned")), "{out}");
    assert!(out.contains("OK"), "{out}");
    // Without --key: intact, and it says whose key it trusted.
    let (code, out) = verify(std::slice::from_ref(&log), None);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("NOT PINNED"), "{out}");

    let requests: Vec<usize> = (0..good.len()).filter(|i| is_request(&good[*i])).collect();
    let (a, b) = (requests[2], requests[3]);
    let copy = s.dir.path("copy.jsonl");
    let check = |lines: &[String], want_code: i32, want: &[&str]| {
        write_lines(&copy, lines);
        let (code, out) = verify(std::slice::from_ref(&copy), Some(&key));
        assert_eq!(code, want_code, "{out}");
        for w in want {
            assert!(out.contains(w), "{w:?} not in:\n{out}");
        }
    };

    // One byte of a record changed (the model it names).
    let mut edited = good.clone();
    edited[a] = edited[a].replacen("gpt-4o-mini", "gpt-4o-mjni", 1);
    assert_ne!(edited[a], good[a]);
    check(
        &edited,
        1,
        &[&format!("copy.jsonl line {} (seq {}): changed", a + 1, seq(&good[a]))],
    );
    // One line removed.
    let mut removed = good.clone();
    removed.remove(a);
    check(
        &removed,
        1,
        &[
            &format!("line {} (seq {})", a + 1, seq(&good[a + 1])),
            &format!("lines removed: seq {0}..{0}", seq(&good[a])),
        ],
    );
    // Two lines swapped.
    let mut swapped = good.clone();
    swapped.swap(a, b);
    check(
        &swapped,
        1,
        &[&format!("line {} (seq {}): lines reordered", a + 1, seq(&good[b]))],
    );
    // A line inserted: a copy of the record before it, and a copy of an earlier one further on.
    let mut inserted = good.clone();
    inserted.insert(a + 1, good[a].clone());
    check(
        &inserted,
        1,
        &[&format!("line {} (seq {}): repeats the seq", a + 2, seq(&good[a]))],
    );
    let mut inserted = good.clone();
    inserted.insert(b + 1, good[a].clone());
    check(
        &inserted,
        1,
        &[&format!("line {} (seq {}):", b + 2, seq(&good[a])), "a line inserted"],
    );
    // A line inserted: a record without the chain's members.
    let mut made_up = good.clone();
    let bare = good[a].split(r#","seq":"#).next().unwrap().to_owned() + "}";
    made_up.insert(b, bare);
    check(&made_up, 1, &[&format!("line {}: no seq/prev", b + 1)]);
    // The tail cut off (the stop checkpoint and the last record): unsealed, located.
    let cut = &good[..good.len() - 2];
    check(
        cut,
        2,
        &[
            "UNSEALED",
            &format!(
                "to {} line {} (seq {})",
                copy.display(),
                cut.len(),
                seq(cut.last().unwrap())
            ),
        ],
    );
    // ... in the middle of a line: broken.
    let mut text = good.iter().map(|l| format!("{l}\n")).collect::<String>();
    text.truncate(text.len() - 40);
    std::fs::write(&copy, &text).unwrap();
    let (code, out) = verify(std::slice::from_ref(&copy), Some(&key));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("line {}", good.len())) && out.contains("partial last line"),
        "{out}"
    );
    // Checked against another key: refused.
    let other_dir = TempDir::new("chain-other-key");
    let other_config = other_dir.path("tollgate.yaml");
    std::fs::write(
        &other_config,
        format!(
            "audit:\n  path: {}\n  signingKey: {}\n",
            other_dir.path("audit.jsonl").display(),
            other_dir.path("other.key").display()
        ),
    )
    .unwrap();
    let (code, other, err) = audit_out(&["pubkey".as_ref(), "--config".as_ref(), other_config.as_os_str()]);
    assert_eq!(code, 0, "{other}{err}");
    assert!(err.contains("generated the audit signing key"), "{err}");
    let other_key = other_dir.path("other.pub");
    std::fs::write(&other_key, other).unwrap();
    let (code, out) = verify(std::slice::from_ref(&log), Some(&other_key));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("line 1 (seq 0): checkpoint signed by") && out.contains("not by the pinned key"),
        "{out}"
    );
}

#[test]
fn one_chain_runs_through_rotations_and_a_restart() {
    if !privileged("one_chain_runs_through_rotations_and_a_restart") {
        return;
    }
    let (s, _) = openai_setup(42, "chain-rotate", "");
    let log = s.dir.path("log/audit.jsonl");
    let signing_key = s.dir.path("keys/audit-signing.key");
    // Both runs: the same log and key, records of ~1.5 KB in files of 4 KB.
    let gateway = || {
        GatewayBuilder::new(&s.cg)
            .llm_provider(
                "openai",
                &["api.openai.com"],
                &[&s.captured_ip],
                &[443],
                &["backend: primary"],
            )
            .yaml(&format!(
                "backends:\n  - name: primary\n    url: {}\n    credential: openai-key\n    caFile: {}\n\
                 credentials:\n  - name: openai-key\n    kind: bearer\n    file: {}\n",
                s.primary.url(true),
                s.dir.path("fake-ca.pem").display(),
                s.secret_file.display()
            ))
            .audit_path(&log)
            .audit_setting("maxBytes: 4000")
            .audit_setting("maxFiles: 50")
            .audit_setting(&format!("signingKey: {}", signing_key.display()))
            .start()
    };
    let requests_written = || {
        std::fs::read_dir(log.parent().unwrap())
            .unwrap()
            .flat_map(|e| lines(&e.unwrap().path()))
            .filter(|l| is_request(l))
            .count()
    };
    let mut gw = gateway();
    chat(&s, &gw, 6);
    gw.wait_until("6 records", Duration::from_secs(10), || requests_written() == 6);
    gw.stop();
    // A restart: the chain goes on from the last line.
    let mut gw2 = gateway();
    chat(&s, &gw2, 3);
    gw2.wait_until("9 records", Duration::from_secs(10), || requests_written() == 9);
    gw2.stop();

    let count = std::fs::read_dir(log.parent().unwrap()).unwrap().count();
    assert!(count >= 4, "rotated into {count} files");
    // Oldest first, as verify reads them by default.
    let ordered: Vec<PathBuf> = (1..count)
        .rev()
        .map(|n| PathBuf::from(format!("{}.{n}", log.display())))
        .chain([log.clone()])
        .collect();
    let all: Vec<String> = ordered.iter().flat_map(|f| lines(f)).collect();
    let values: Vec<Value> = all.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(
        values.iter().map(|v| v["seq"].as_u64().unwrap()).collect::<Vec<_>>(),
        (0..all.len() as u64).collect::<Vec<_>>(),
        "one sequence across files and runs"
    );
    assert_eq!(values.iter().filter(|v| is_request_value(v)).count(), 9);
    let starts: Vec<usize> = (0..values.len()).filter(|i| values[*i]["reason"] == "start").collect();
    assert_eq!(starts.len(), 2, "one start checkpoint per run");
    let restart = starts[1];
    assert_eq!(values[restart - 1]["reason"], "stop", "the restart follows the stop");
    assert_eq!(
        values[restart]["prev"].as_str().unwrap(),
        sha256_hex(all[restart - 1].as_bytes()),
        "the restart links to the last line of the log"
    );
    for f in &ordered[1..] {
        assert!(
            lines(f)[0].contains(r#""reason":"rotate""#),
            "{f:?} opens with a rotate checkpoint"
        );
    }

    // The files found from the config, oldest first: intact.
    let config_path = gw2.config_path().to_owned();
    let (code, out) = audit(&["verify".as_ref(), "--config".as_ref(), config_path.as_os_str()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("read {}.{}", log.display(), count - 1)), "{out}");
    assert!(out.contains("OK"), "{out}");

    // A byte changed in a rotated file: that file and line are named.
    let copies = TempDir::new("chain-rotate-copies");
    let copy: Vec<PathBuf> = ordered
        .iter()
        .map(|f| copies.path(f.file_name().unwrap().to_str().unwrap()))
        .collect();
    for (f, c) in ordered.iter().zip(&copy) {
        std::fs::copy(f, c).unwrap();
    }
    let victim = 1; // the second-oldest file
    let mut v = lines(&copy[victim]);
    let i = v.iter().position(|l| is_request(l)).expect("a record in the file");
    let target_seq = seq(&v[i]);
    v[i] = v[i].replacen("\"status\":200", "\"status\":201", 1);
    write_lines(&copy[victim], &v);
    let (code, out) = verify(&copy, None);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "{} line {} (seq {target_seq}): changed",
            copy[victim].display(),
            i + 1
        )),
        "{out}"
    );
    // A rotated file left out in the middle: the gap is found.
    let mut gap = ordered.clone();
    gap.remove(2);
    let (code, out) = verify(&gap, None);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("lines removed"), "{out}");
}

fn is_request_value(v: &Value) -> bool {
    v["record"] == "request"
}

fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
