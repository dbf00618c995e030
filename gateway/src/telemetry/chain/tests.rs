use std::path::{Path, PathBuf};

use super::{
    verify::{self, Verdict},
    *,
};

/// A scratch directory removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("tollgate-chain-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const T: &str = "2026-01-02T03:04:05.000006Z";

/// A log as the writer writes it: start checkpoint, `n` records, stop checkpoint.
fn log(key: &NodeKey, head: &mut Head, n: usize) -> Vec<Vec<u8>> {
    let mut lines = vec![Checkpoint::new(key, *head, T.into(), Reason::Start, None).line(head)];
    for i in 0..n {
        let mut line = format!(r#"{{"record":"request","n":{i}}}"#).into_bytes();
        assert!(head.append(&mut line));
        lines.push(line);
    }
    lines.push(Checkpoint::new(key, *head, T.into(), Reason::Stop, None).line(head));
    lines
}

fn write(path: &Path, lines: &[Vec<u8>]) {
    let mut text = Vec::new();
    for l in lines {
        text.extend_from_slice(l);
        text.push(b'\n');
    }
    std::fs::write(path, text).unwrap();
}

fn check(files: &[PathBuf], pinned: &[PublicKey]) -> verify::Report {
    verify::verify(files, pinned).unwrap()
}

#[test]
fn the_writer_splices_seq_and_prev_and_chains_the_sha256_of_each_line() {
    let mut head = Head::GENESIS;
    let mut a = br#"{"record":"request","x":"}"}"#.to_vec();
    assert!(head.append(&mut a));
    assert_eq!(
        String::from_utf8(a.clone()).unwrap(),
        format!(r#"{{"record":"request","x":"}}","seq":0,"prev":"{}"}}"#, "0".repeat(64))
    );
    assert_eq!(
        head,
        Head {
            seq: 1,
            prev: sha256(&a)
        }
    );
    let mut b = b"{}".to_vec();
    assert!(head.append(&mut b));
    assert_eq!(
        String::from_utf8(b.clone()).unwrap(),
        format!(r#"{{"seq":1,"prev":"{}"}}"#, hex(&sha256(&a)))
    );
    assert_eq!(links(&b), Some((1, hex(&sha256(&a)))));
    // Not an object: left alone, the head does not move.
    let mut c = b"[1]".to_vec();
    assert!(!head.append(&mut c));
    assert_eq!((c, head.seq), (b"[1]".to_vec(), 2));
    // seq/prev elsewhere than last, or not as written, are not links.
    let moved = format!(r#"{{"seq":1,"prev":"{}","a":1}}"#, "0".repeat(64));
    assert_eq!(links(moved.as_bytes()), None);
    let upper = format!(r#"{{"seq":1,"prev":"{}"}}"#, "A".repeat(64));
    assert_eq!(links(upper.as_bytes()), None);
}

#[test]
fn a_checkpoint_verifies_and_any_changed_byte_is_caught() {
    let key = NodeKey::generate();
    let mut head = Head { seq: 41, prev: [7; 32] };
    let cp = Checkpoint::new(&key, head, T.into(), Reason::Interval, None);
    let line = cp.line(&mut head);
    let text = String::from_utf8(line.clone()).unwrap();
    assert!(
        text.starts_with(r#"{"record":"checkpoint","schema_version":1,"time":"2026-01-02T03:04:05.000006Z","reason":"interval","key":"ed25519:"#),
        "{text}"
    );
    assert!(
        text.ends_with(&format!(r#","seq":41,"prev":"{}"}}"#, hex(&[7; 32]))),
        "{text}"
    );
    let (parsed, signer) = Checkpoint::check(&line).unwrap();
    assert_eq!((parsed, signer), (cp.clone(), key.public()));
    assert!(cp
        .message()
        .starts_with("tollgate-audit-checkpoint/1\nseq=41\nprev=0707"));
    for i in 0..line.len() {
        for flip in [1u8, 0x20] {
            let mut bad = line.clone();
            bad[i] ^= flip;
            if bad[i] == line[i] {
                continue;
            }
            assert!(
                Checkpoint::check(&bad).is_err(),
                "byte {i} ({:?}) changed yet verifies: {}",
                line[i] as char,
                String::from_utf8_lossy(&bad)
            );
        }
    }
    // Signed by another key, with that key's own fingerprint: valid, but a different key.
    let other = NodeKey::generate();
    let (_, signer) =
        Checkpoint::check(&Checkpoint::new(&other, head, T.into(), Reason::Stop, None).line(&mut head.clone()))
            .unwrap();
    assert_ne!(signer, key.public());
}

#[test]
fn the_key_is_created_private_reloaded_and_refused_when_readable() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = Dir::new("key");
    let path = dir.path("sub/audit-signing.key");
    let key = NodeKey::load_or_create(&path).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let pem = std::fs::read_to_string(&path).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
    assert_eq!(NodeKey::load_or_create(&path).unwrap().public(), key.public());
    assert!(
        !format!("{key:?}").contains(&pem[30..60]),
        "Debug shows no key material"
    );
    assert_eq!(
        PublicKey::parse(&format!("# comment\n{}\n", key.public().to_base64())),
        Ok(key.public())
    );
    assert!(PublicKey::parse("abc").is_err());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = NodeKey::load_or_create(&path).unwrap_err().to_string();
    assert!(e.contains("chmod 600"), "{e}");
}

#[test]
fn resume_continues_after_the_last_line_and_ends_a_partial_one() {
    let dir = Dir::new("resume");
    let (path, one) = (dir.path("audit.jsonl"), dir.path("audit.jsonl.1"));
    // Nothing yet: a new chain.
    let fresh = resume(&path, &one).unwrap();
    assert_eq!(
        (fresh.head, fresh.partial_tail, fresh.unchained),
        (Head::GENESIS, None, false)
    );

    let key = NodeKey::generate();
    let mut head = Head::GENESIS;
    let lines = log(&key, &mut head, 3);
    write(&path, &lines);
    assert_eq!(resume(&path, &one).unwrap().head, head);

    // A crash mid-line: the fragment is ended with a newline and reported.
    let mut text = std::fs::read(&path).unwrap();
    text.extend_from_slice(br#"{"record":"req"#);
    std::fs::write(&path, &text).unwrap();
    let r = resume(&path, &one).unwrap();
    assert_eq!((r.head, r.partial_tail, r.unchained), (head, Some(14), false));
    assert!(std::fs::read(&path).unwrap().ends_with(b"{\"record\":\"req\n"));

    // The current file empty (rotated just before a stop): the rotated file's end.
    std::fs::rename(&path, &one).unwrap();
    std::fs::write(&path, b"").unwrap();
    write(&one, &lines);
    assert_eq!(resume(&path, &one).unwrap().head, head);

    // A log written before chaining: rotated away by the writer, then a new chain.
    std::fs::write(&path, b"{\"record\":\"request\"}\n").unwrap();
    assert!(resume(&path, &one).unwrap().unchained);
}

#[test]
fn verify_accepts_an_intact_log_and_names_the_first_damaged_line() {
    let dir = Dir::new("verify");
    let key = NodeKey::generate();
    let mut head = Head::GENESIS;
    let good = log(&key, &mut head, 6); // lines 1..=8: start, 6 records (seq 1..=6), stop (seq 7)
    let path = dir.path("audit.jsonl");
    let files = [path.clone()];
    write(&path, &good);
    let r = check(&files, &[]);
    assert_eq!(r.verdict(), Verdict::Intact, "{}", r.render());
    assert!(r.render().contains("NOT PINNED"), "{}", r.render());
    let r = check(&files, &[key.public()]);
    assert_eq!(r.verdict(), Verdict::Intact, "{}", r.render());
    assert!(
        r.render().contains(&format!("key {}: pinned", key.public())),
        "{}",
        r.render()
    );

    let broken = |lines: &[Vec<u8>]| {
        write(&path, lines);
        let r = check(&files, &[key.public()]);
        assert_eq!(r.verdict(), Verdict::Broken, "{}", r.render());
        r.problem.unwrap()
    };
    // One byte of a record changed: that record is named.
    let mut edited = good.clone();
    edited[3][12] ^= 1;
    let p = broken(&edited);
    assert_eq!((p.line, p.seq), (4, Some(3)), "{}", p.message);
    assert!(p.message.contains("changed"), "{}", p.message);
    // ... so that it is not JSON any more.
    let mut edited = good.clone();
    edited[3][20] ^= 1;
    let p = broken(&edited);
    assert_eq!(p.line, 4, "{}", p.message);
    assert!(p.message.contains("not JSON"), "{}", p.message);
    // One removed.
    let mut removed = good.clone();
    removed.remove(3);
    let p = broken(&removed);
    assert_eq!((p.line, p.seq), (4, Some(4)), "{}", p.message);
    assert!(p.message.contains("removed: seq 3..3"), "{}", p.message);
    // Two swapped.
    let mut swapped = good.clone();
    swapped.swap(3, 4);
    let p = broken(&swapped);
    assert_eq!(p.line, 4, "{}", p.message);
    assert!(p.message.contains("reordered"), "{}", p.message);
    // One inserted: a copy, then a made-up one.
    let mut copied = good.clone();
    copied.insert(5, good[2].clone());
    let p = broken(&copied);
    assert_eq!((p.line, p.seq), (6, Some(2)), "{}", p.message);
    let mut forged = good.clone();
    forged.insert(5, br#"{"record":"request","n":99}"#.to_vec());
    let p = broken(&forged);
    assert_eq!(p.line, 6, "{}", p.message);
    // A line forged with a correct link: the chain holds, the next checkpoint's signature not.
    let mut relinked = good[..5].to_vec();
    let mut h = Head {
        seq: 5,
        prev: sha256(&good[4]),
    };
    let mut fake = br#"{"record":"request","n":"fake"}"#.to_vec();
    h.append(&mut fake);
    relinked.push(fake);
    for l in &good[6..good.len() - 1] {
        let mut l = l[..l.iter().rposition(|b| *b == b',').unwrap()].to_vec();
        l.truncate(l.iter().rposition(|b| *b == b',').unwrap());
        l.push(b'}');
        h.append(&mut l);
        relinked.push(l);
    }
    let mut stop = good.last().unwrap().clone();
    let cp: Checkpoint = serde_json::from_slice(&stop).unwrap();
    let forged_cp = Checkpoint {
        seq: h.seq,
        prev: hex(&h.prev),
        ..cp
    };
    stop = forged_cp.line(&mut h);
    relinked.push(stop);
    let p = broken(&relinked);
    assert_eq!(p.line, 8, "{}", p.message);
    assert!(p.message.contains("signature does not verify"), "{}", p.message);
    // The tail cut off after the last record: unsealed, not broken.
    write(&path, &good[..7]);
    let r = check(&files, &[key.public()]);
    assert_eq!(r.verdict(), Verdict::Unsealed, "{}", r.render());
    assert!(
        r.unsealed[0].contains("6 lines after the checkpoint at"),
        "{}",
        r.render()
    );
    // Cut in the middle of a line: broken.
    let mut text = std::fs::read(&path).unwrap();
    text.truncate(text.len() - 10);
    std::fs::write(&path, text).unwrap();
    let r = check(&files, &[key.public()]);
    assert_eq!(r.verdict(), Verdict::Broken, "{}", r.render());
    assert!(r.problem.unwrap().message.contains("partial last line"));
    // Another key than the pinned one.
    write(&path, &good);
    let r = check(&files, &[NodeKey::generate().public()]);
    assert!(r.problem.unwrap().message.contains("not by the pinned key"));
}

#[test]
fn verify_follows_rotations_restarts_crashes_and_an_upgrade_overlap() {
    let dir = Dir::new("verify-files");
    let key = NodeKey::generate();
    let mut head = Head::GENESIS;
    let rec = |head: &mut Head, i: usize| {
        let mut l = format!(r#"{{"record":"request","n":{i}}}"#).into_bytes();
        head.append(&mut l);
        l
    };
    let cp = |head: &mut Head, reason, partial| Checkpoint::new(&key, *head, T.into(), reason, partial).line(head);
    // File 1 (rotated away later), file 2 opens with a rotate checkpoint.
    let mut f1 = vec![cp(&mut head, Reason::Start, None), rec(&mut head, 0), rec(&mut head, 1)];
    let mut f2 = vec![cp(&mut head, Reason::Rotate, None), rec(&mut head, 2)];
    // A crash mid-line, then a restart that says so.
    f2.push(br#"{"record":"requ"#.to_vec());
    f2.push(cp(&mut head, Reason::Start, Some(15)));
    // An upgrade: the successor starts (links to the last line) while the predecessor writes
    // on from the same line, then stops.
    let fork = head;
    f2.push(cp(&mut head, Reason::Start, None));
    let mut old = fork;
    f2.push(rec(&mut old, 100));
    f2.push(rec(&mut head, 3));
    f2.push(cp(&mut old, Reason::Stop, None));
    f2.push(rec(&mut head, 4));
    f2.push(cp(&mut head, Reason::Stop, None));
    let (p1, p2) = (dir.path("audit.jsonl.1"), dir.path("audit.jsonl"));
    write(&p1, &f1);
    write(&p2, &f2);
    assert_eq!(verify::log_files(&p2), vec![p1.clone(), p2.clone()]);
    let r = check(&[p1.clone(), p2.clone()], &[]);
    assert_eq!(r.verdict(), Verdict::Intact, "{}", r.render());
    assert!(r.render().contains("a partial line (15 bytes)"), "{}", r.render());
    // The oldest file gone: the chain starts at file 2's rotate checkpoint.
    let r = check(std::slice::from_ref(&p2), &[]);
    assert_eq!(r.verdict(), Verdict::Intact, "{}", r.render());
    // ... but not after the first lines of that file were removed.
    write(&p2, &f2[1..]);
    let r = check(std::slice::from_ref(&p2), &[]);
    assert_eq!(r.verdict(), Verdict::Broken, "{}", r.render());
    // The end of file 1 cut off: the link into file 2 breaks there.
    write(&p2, &f2);
    f1.pop();
    write(&p1, &f1);
    let p = check(&[p1, p2.clone()], &[]).problem.unwrap();
    assert_eq!((p.file, p.line, p.seq), (p2, 1, Some(3)), "{}", p.message);
}
