//! The audit log's tamper evidence: a hash chain over its lines, sealed by checkpoints signed
//! with the node's ed25519 key (docs/audit.md, "Tamper evidence").
//!
//! The writer thread ([`super::jsonl`]) splices `,"seq":N,"prev":"<64 hex>"` before the closing
//! `}` of every line, `prev` being the sha256 of the previous line as written (without its
//! newline), and writes a `checkpoint` line, signed, at start, every `checkpoint.records` lines
//! or `checkpoint.interval`, first in every file a rotation opens, and at a graceful stop. All
//! of it runs on the writer thread, never on the request path. [`verify`] checks a log
//! (`tollgate audit verify`).

pub mod verify;

use std::{
    fmt,
    io::{self, Read as _, Seek as _, SeekFrom, Write as _},
    path::{Path, PathBuf},
    time::Duration,
};

/// Version of the checkpoint line's layout and signed message (`schema_version` of
/// `checkpoint` lines), apart from the request record's: a new record schema does not change
/// how old logs verify.
pub const CHECKPOINT_VERSION: u32 = 1;

use base64::Engine as _;
use ring::signature::{self, Ed25519KeyPair, KeyPair as _};
use serde::{Deserialize, Serialize};

/// `prev` of the first line of a chain.
pub const GENESIS: [u8; 32] = [0; 32];
/// Checkpoint after this many lines.
pub const DEFAULT_CHECKPOINT_RECORDS: u64 = 1000;
/// Checkpoint when a line has waited this long for one (60 seconds).
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);
/// The signing key's file name, in the directory of the node CA key unless configured.
pub const DEFAULT_KEY_FILE: &str = "audit-signing.key";
/// First line of the message a checkpoint signs: the format's version.
const SIGNED_HEADER: &str = "tollgate-audit-checkpoint/1";
/// A line longer than this (16 MiB) is not looked for when resuming a chain.
const MAX_LINE: u64 = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("audit signing key {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("cannot continue the audit chain of {path}: {source}")]
    Resume {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn key_err(path: &Path, message: impl fmt::Display) -> Error {
    Error::Key {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

/// How a log is chained: the `audit.signingKey` and `audit.checkpoint` settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    /// The ed25519 key (PKCS#8 PEM, mode 0600), created on first start.
    pub signing_key: PathBuf,
    /// A checkpoint after this many lines.
    pub checkpoint_records: u64,
    /// A checkpoint once a line has waited this long for one.
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
}

// === keys ===

/// A raw ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// `ed25519:` and the first 16 hex digits of the sha256 of the raw key: for people; the
    /// checks compare whole keys.
    pub fn fingerprint(&self) -> String {
        format!("ed25519:{}", &hex(&sha256(&self.0))[..16])
    }

    /// The raw key in standard base64 (as in checkpoints and `tollgate audit pubkey`).
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    pub fn from_base64(text: &str) -> Option<PublicKey> {
        let raw = base64::engine::general_purpose::STANDARD.decode(text.trim()).ok()?;
        Some(PublicKey(raw.try_into().ok()?))
    }

    /// Reads what `tollgate audit pubkey` prints: one base64 line, `#` comment lines ignored.
    pub fn parse(text: &str) -> Result<PublicKey, String> {
        let mut lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        match (lines.next(), lines.next()) {
            (Some(line), None) => PublicKey::from_base64(line)
                .ok_or_else(|| format!("{line:?} is not a base64 ed25519 public key (32 bytes)")),
            _ => Err("expected one line: the base64 public key `tollgate audit pubkey` prints".into()),
        }
    }

    fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        signature::UnparsedPublicKey::new(&signature::ED25519, self.0)
            .verify(message, sig)
            .is_ok()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.fingerprint())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.fingerprint())
    }
}

/// The node's checkpoint signing key. Its `Debug` shows the public fingerprint only.
pub struct NodeKey {
    pair: Ed25519KeyPair,
    public: PublicKey,
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl NodeKey {
    /// Loads the key at `path`, or creates it (mode 0600, its directory too) when there is
    /// none. A key that group or others can read is refused: whoever reads it can sign a
    /// rewritten log.
    pub fn load_or_create(path: &Path) -> Result<NodeKey, Error> {
        match std::fs::read(path) {
            Ok(pem) => {
                check_private(path)?;
                NodeKey::from_pem(&pem).map_err(|e| key_err(path, e))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let (key, pem) = NodeKey::generate_pem().map_err(|e| key_err(path, e))?;
                crate::keyfile::create(path, pem.as_bytes(), 0o600).map_err(|e| key_err(path, e))?;
                tracing::info!(key = %key.public, path = %path.display(), "generated the audit signing key");
                Ok(key)
            }
            Err(e) => Err(key_err(path, e)),
        }
    }

    /// A new key, not stored (tests).
    pub fn generate() -> NodeKey {
        NodeKey::generate_pem().expect("ed25519 key generation").0
    }

    fn generate_pem() -> Result<(NodeKey, String), String> {
        let rng = ring::rand::SystemRandom::new();
        let der = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| e.to_string())?;
        let key = NodeKey::from_der(der.as_ref())?;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        Ok((key, pem))
    }

    fn from_pem(pem: &[u8]) -> Result<NodeKey, String> {
        use rustls_pki_types::{pem::PemObject as _, PrivatePkcs8KeyDer};
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem).map_err(|e| format!("not a PKCS#8 PEM key: {e}"))?;
        NodeKey::from_der(der.secret_pkcs8_der())
    }

    fn from_der(der: &[u8]) -> Result<NodeKey, String> {
        // "maybe_unchecked" also takes PKCS#8 v1 (no public key inside), as
        // `openssl genpkey -algorithm ed25519` writes it.
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|e| format!("not an ed25519 key: {e}"))?;
        let public = PublicKey(
            pair.public_key()
                .as_ref()
                .try_into()
                .map_err(|_| "bad public key length")?,
        );
        Ok(NodeKey { pair, public })
    }

    pub fn public(&self) -> PublicKey {
        self.public
    }
}

fn check_private(path: &Path) -> Result<(), Error> {
    crate::keyfile::check_private(path).map_err(|m| key_err(path, m))
}

// === the chain ===

/// What the next line links to: its `seq` and the hash of the line before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub prev: [u8; 32],
}

impl Head {
    /// The head of a new chain.
    pub const GENESIS: Head = Head { seq: 0, prev: GENESIS };

    /// Splices `,"seq":N,"prev":"…"` before the closing `}` of `line` (a JSON object, no
    /// newline) and moves the head past it. A line that is not an object is left as it is and
    /// `false` returned.
    pub fn append(&mut self, line: &mut Vec<u8>) -> bool {
        if line.first() != Some(&b'{') || line.last() != Some(&b'}') {
            return false;
        }
        line.pop();
        if line.len() > 1 {
            line.push(b',');
        }
        line.extend_from_slice(b"\"seq\":");
        line.extend_from_slice(self.seq.to_string().as_bytes());
        line.extend_from_slice(b",\"prev\":\"");
        hex_into(line, &self.prev);
        line.extend_from_slice(b"\"}");
        self.prev = sha256(line);
        self.seq += 1;
        true
    }
}

/// The `seq` and `prev` of a chained line, when they are its last two members exactly as the
/// writer splices them.
pub fn links(line: &[u8]) -> Option<(u64, String)> {
    #[derive(Deserialize)]
    struct Links {
        seq: Option<u64>,
        prev: Option<String>,
    }
    let links: Links = serde_json::from_slice(line).ok()?;
    let (seq, prev) = (links.seq?, links.prev?);
    if prev.len() != 64 || !prev.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let suffix = format!("\"seq\":{seq},\"prev\":\"{prev}\"}}");
    let before = line.len().checked_sub(suffix.len() + 1)?;
    (line.ends_with(suffix.as_bytes()) && (line[before] == b',' || before == 0)).then_some((seq, prev))
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .try_into()
        .expect("sha256 is 32 bytes")
}

pub fn hex(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len() * 2);
    hex_into(&mut out, bytes);
    String::from_utf8(out).expect("hex is ASCII")
}

fn hex_into(out: &mut Vec<u8>, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 15)]);
    }
}

// === checkpoints ===

/// Why a checkpoint was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The writer started (and links to the log's last line, if any).
    Start,
    /// `checkpoint.records` lines since the last one.
    Records,
    /// `checkpoint.interval` since the last one, with lines since.
    Interval,
    /// First line of a file a rotation opened.
    Rotate,
    /// Graceful stop: the last line this writer wrote.
    Stop,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Start => "start",
            Reason::Records => "records",
            Reason::Interval => "interval",
            Reason::Rotate => "rotate",
            Reason::Stop => "stop",
        }
    }
}

/// A checkpoint line's members, in the order written.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Always `checkpoint`.
    pub record: String,
    pub schema_version: u32,
    /// RFC 3339 UTC.
    pub time: String,
    pub reason: Reason,
    /// At start only: the length of a partial line (a crash mid-write) the writer ended with a
    /// newline and left behind it.
    #[serde(default)]
    pub partial_tail: Option<u64>,
    /// `ed25519:<16 hex>`: fingerprint of `public_key`.
    pub key: String,
    /// Raw ed25519 public key, base64.
    pub public_key: String,
    /// ed25519 signature (base64) of [`Checkpoint::message`].
    pub signature: String,
    pub seq: u64,
    pub prev: String,
}

impl Checkpoint {
    /// A new checkpoint at `head`, signed with `key`.
    pub fn new(key: &NodeKey, head: Head, time: String, reason: Reason, partial_tail: Option<u64>) -> Checkpoint {
        let mut cp = Checkpoint {
            record: "checkpoint".into(),
            schema_version: CHECKPOINT_VERSION,
            time,
            reason,
            partial_tail,
            key: key.public.fingerprint(),
            public_key: key.public.to_base64(),
            signature: String::new(),
            seq: head.seq,
            prev: hex(&head.prev),
        };
        let sig = key.pair.sign(cp.message().as_bytes());
        cp.signature = base64::engine::general_purpose::STANDARD.encode(sig.as_ref());
        cp
    }

    /// What the signature covers: the seq and hash of the chain head it seals (its own `seq`
    /// and `prev`), when, why and by which key, one `name=value` per line:
    ///
    /// ```text
    /// tollgate-audit-checkpoint/1
    /// seq=<seq>
    /// prev=<prev>
    /// time=<time>
    /// reason=<reason>
    /// partial_tail=<partial_tail or 0>
    /// public_key=<public_key>
    /// ```
    pub fn message(&self) -> String {
        format!(
            "{SIGNED_HEADER}\nseq={}\nprev={}\ntime={}\nreason={}\npartial_tail={}\npublic_key={}\n",
            self.seq,
            self.prev,
            self.time,
            self.reason.as_str(),
            self.partial_tail.unwrap_or(0),
            self.public_key
        )
    }

    /// The line without its `seq` and `prev`, which [`Head::append`] splices in like on every
    /// line.
    fn body(&self) -> Vec<u8> {
        let s = |v: &str| serde_json::to_string(v).expect("a string serializes");
        let mut line = format!(
            "{{\"record\":{},\"schema_version\":{},\"time\":{},\"reason\":\"{}\"",
            s(&self.record),
            self.schema_version,
            s(&self.time),
            self.reason.as_str()
        );
        if let Some(n) = self.partial_tail {
            line.push_str(&format!(",\"partial_tail\":{n}"));
        }
        line.push_str(&format!(
            ",\"key\":{},\"public_key\":{},\"signature\":{}}}",
            s(&self.key),
            s(&self.public_key),
            s(&self.signature)
        ));
        line.into_bytes()
    }

    /// The complete line (no newline), chained at `head`, which must be this checkpoint's.
    pub fn line(&self, head: &mut Head) -> Vec<u8> {
        debug_assert_eq!((head.seq, hex(&head.prev)), (self.seq, self.prev.clone()));
        let mut line = self.body();
        head.append(&mut line);
        line
    }

    /// Parses a checkpoint line and checks it: written exactly as the writer writes it, its
    /// `key` the fingerprint of its `public_key`, its signature valid for that key. Returns the
    /// checkpoint and the key that signed it; the caller decides whether it trusts the key.
    pub fn check(line: &[u8]) -> Result<(Checkpoint, PublicKey), String> {
        let cp: Checkpoint = serde_json::from_slice(line).map_err(|e| format!("not a checkpoint line: {e}"))?;
        let prev: [u8; 32] = unhex(&cp.prev).ok_or("prev is not 64 hex digits")?;
        if cp.record != "checkpoint" || cp.schema_version != CHECKPOINT_VERSION {
            return Err("not a checkpoint of this schema version".into());
        }
        let mut head = Head { seq: cp.seq, prev };
        if cp.line(&mut head) != line {
            return Err("not written as the writer writes checkpoints (changed)".into());
        }
        let key = PublicKey::from_base64(&cp.public_key).ok_or("public_key is not a base64 ed25519 key")?;
        if cp.key != key.fingerprint() {
            return Err(format!(
                "key {} is not the fingerprint of its public_key ({key})",
                cp.key
            ));
        }
        let sig = base64::engine::general_purpose::STANDARD
            .decode(&cp.signature)
            .map_err(|_| "signature is not base64")?;
        if !key.verify(cp.message().as_bytes(), &sig) {
            return Err(format!("the signature does not verify with its key {key}"));
        }
        Ok((cp, key))
    }
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

// === resuming ===

/// Where a chain goes on when the writer starts.
#[derive(Debug, PartialEq, Eq)]
pub struct Resume {
    pub head: Head,
    /// Length of a partial last line (a crash mid-write), now ended with a newline.
    pub partial_tail: Option<u64>,
    /// The file's last line is not chained (written before chaining, or damaged): the file
    /// must be rotated away and a new chain started.
    pub unchained: bool,
}

/// The head to continue from: after the last line of `path`, or of `rotated_1` (`path.1`) when
/// `path` is empty or missing. A partial last line of `path` is ended with a newline first,
/// so that the next line starts on its own.
pub fn resume(path: &Path, rotated_1: &Path) -> Result<Resume, Error> {
    let err = |source| Error::Resume {
        path: path.to_owned(),
        source,
    };
    let mut partial_tail = None;
    if let Some(tail) = tail(path).map_err(err)? {
        if tail.partial > 0 {
            std::fs::OpenOptions::new()
                .append(true)
                .open(path)
                .and_then(|mut f| f.write_all(b"\n"))
                .map_err(err)?;
            partial_tail = Some(tail.partial);
        }
        if let Some(line) = tail.last {
            return Ok(match links(&line) {
                Some((seq, _)) => Resume {
                    head: Head {
                        seq: seq + 1,
                        prev: sha256(&line),
                    },
                    partial_tail,
                    unchained: false,
                },
                None => Resume {
                    head: Head::GENESIS,
                    partial_tail,
                    unchained: true,
                },
            });
        }
    }
    let head = match tail(rotated_1).map_err(|source| Error::Resume {
        path: rotated_1.to_owned(),
        source,
    })? {
        Some(Tail { last: Some(line), .. }) => match links(&line) {
            Some((seq, _)) => Head {
                seq: seq + 1,
                prev: sha256(&line),
            },
            None => Head::GENESIS,
        },
        _ => Head::GENESIS,
    };
    Ok(Resume {
        head,
        partial_tail,
        unchained: false,
    })
}

struct Tail {
    /// The last complete line (without its newline).
    last: Option<Vec<u8>>,
    /// Bytes after the last newline.
    partial: u64,
}

/// The end of a file, read backwards; `None` when it is missing or empty.
fn tail(path: &Path) -> io::Result<Option<Tail>> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(None);
    }
    let mut window = 64 * 1024u64;
    loop {
        let n = window.min(len);
        let mut buf = vec![0; n as usize];
        file.seek(SeekFrom::Start(len - n))?;
        file.read_exact(&mut buf)?;
        let whole = n == len;
        let found = match buf.iter().rposition(|b| *b == b'\n') {
            None if whole => Some(Tail {
                last: None,
                partial: len,
            }),
            None => None,
            Some(end) => {
                let partial = (buf.len() - end - 1) as u64;
                match buf[..end].iter().rposition(|b| *b == b'\n') {
                    Some(start) => Some(Tail {
                        last: Some(buf[start + 1..end].to_vec()),
                        partial,
                    }),
                    None if whole => Some(Tail {
                        last: Some(buf[..end].to_vec()),
                        partial,
                    }),
                    None => None,
                }
            }
        };
        if let Some(t) = found {
            return Ok(Some(t));
        }
        if window > 2 * MAX_LINE {
            return Err(io::Error::other(format!("no line end in the last {window} bytes")));
        }
        window *= 4;
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
