//! `tollgate audit verify`: follows the chain through the audit log's files, oldest first,
//! checks every checkpoint's signature, and names the first line that was changed, removed,
//! reordered or inserted. What it reports and why is in docs/audit.md ("Verifying").
//!
//! A log normally holds one chain. During an upgrade the predecessor writes on while its
//! successor starts: the successor's start checkpoint links to the line the file ended with,
//! and the predecessor's next line links to the same one. The chain may fork like this at a
//! `start` checkpoint only; each branch is followed on its own.

use std::path::{Path, PathBuf};

use super::{hex, links, sha256, Checkpoint, PublicKey, Reason, GENESIS};

/// How a log verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every line is in the chain and sealed by a valid checkpoint.
    Intact,
    /// The chain holds, but its last lines come after the last checkpoint: written by a
    /// running gateway, or left by a crash, or the tail of the log was cut off.
    Unsealed,
    /// A line was changed, removed, reordered or inserted, or a checkpoint does not verify.
    Broken,
}

impl Verdict {
    /// `tollgate audit verify`'s exit status.
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Intact => 0,
            Verdict::Broken => 1,
            Verdict::Unsealed => 2,
        }
    }
}

/// The first problem found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
    pub seq: Option<u64>,
    pub message: String,
}

/// Where the key the checkpoints were checked against came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// `--key`.
    Pinned,
    /// Trusted on first use: the first checkpoint of the log.
    FirstCheckpoint { file: PathBuf, line: usize },
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Each file read and its line count.
    pub files: Vec<(PathBuf, usize)>,
    /// The key checkpoints verified with (the first one, when `--key` pins several).
    pub key: Option<(PublicKey, KeySource)>,
    /// Chained lines (checkpoints included).
    pub lines: u64,
    pub checkpoints: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Facts worth knowing that do not break the chain.
    pub notes: Vec<String>,
    /// Lines after the last checkpoint of a branch.
    pub unsealed: Vec<String>,
    pub problem: Option<Problem>,
}

impl Report {
    pub fn verdict(&self) -> Verdict {
        if self.problem.is_some() {
            Verdict::Broken
        } else if !self.unsealed.is_empty() {
            Verdict::Unsealed
        } else {
            Verdict::Intact
        }
    }

    /// The report as `tollgate audit verify` prints it.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        for (file, lines) in &self.files {
            let _ = writeln!(out, "read {} ({lines} lines)", file.display());
        }
        match &self.key {
            Some((key, KeySource::Pinned)) => {
                let _ = writeln!(out, "key {key}: pinned with --key");
            }
            Some((key, KeySource::FirstCheckpoint { file, line })) => {
                let _ = writeln!(
                    out,
                    "key {key}: NOT PINNED, trusted from the first checkpoint ({} line {line}); pin it with --key (tollgate audit pubkey prints it)",
                    file.display()
                );
            }
            None => {
                let _ = writeln!(out, "key: none (no checkpoint read)");
            }
        }
        if let (Some(first), Some(last)) = (self.first_seq, self.last_seq) {
            let _ = writeln!(
                out,
                "chain: seq {first}..{last}, {} lines, {} checkpoints",
                self.lines, self.checkpoints
            );
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        for u in &self.unsealed {
            let _ = writeln!(out, "UNSEALED: {u}");
        }
        match (&self.problem, self.verdict()) {
            (Some(p), _) => {
                let seq = p.seq.map(|s| format!(" (seq {s})")).unwrap_or_default();
                let _ = writeln!(out, "FAILED: {} line {}{seq}: {}", p.file.display(), p.line, p.message);
            }
            (None, Verdict::Unsealed) => {
                let _ = writeln!(
                    out,
                    "UNSEALED: the chain is intact up to the last checkpoint; the lines after it are chained but not signed"
                );
            }
            (None, _) => {
                let _ = writeln!(out, "OK: the chain is intact and sealed");
            }
        }
        out
    }
}

/// The files of the log at `path`, oldest first: `path.N` … `path.1`, then `path` (the
/// rotated files up to the first one missing, as `tollgate usage` reads them).
pub fn log_files(path: &Path) -> Vec<PathBuf> {
    let mut files = vec![path.to_path_buf()];
    for n in 1.. {
        let mut p = path.as_os_str().to_owned();
        p.push(format!(".{n}"));
        let p = PathBuf::from(p);
        if !p.exists() {
            break;
        }
        files.push(p);
    }
    files.reverse();
    files
}

/// A line's place.
#[derive(Clone, Debug)]
struct Pos {
    file: usize,
    line: usize,
    seq: u64,
}

/// One branch of the chain.
#[derive(Clone, Debug)]
struct Branch {
    next_seq: u64,
    /// sha256 (hex) of its last line.
    hash: String,
    /// Its last line.
    at: Pos,
    /// Its last line's reason, if a checkpoint.
    reason: Option<Reason>,
    /// Lines since its last checkpoint, and the first of them.
    unsealed: u64,
    first_unsealed: Option<Pos>,
    last_checkpoint: Option<Pos>,
}

impl Branch {
    /// A branch whose last line is at `pos`, expecting `next_seq` next; `Verifier::line` fills
    /// in that line's hash and reason.
    fn new(pos: &Pos, next_seq: u64) -> Branch {
        Branch {
            next_seq,
            hash: String::new(),
            at: pos.clone(),
            reason: None,
            unsealed: 0,
            first_unsealed: None,
            last_checkpoint: None,
        }
    }
}

struct Verifier<'a> {
    files: &'a [PathBuf],
    pinned: &'a [PublicKey],
    report: Report,
    branches: Vec<Branch>,
    /// Lines before the chain starts (written before it existed).
    before_chain: u64,
    /// A line that is not JSON, and its length: a partial line a crash left, if the next
    /// line is a start checkpoint that says so.
    pending_partial: Option<(Pos, u64)>,
}

/// Verifies the log in `files` (oldest first) against the `pinned` keys (none: trust the key
/// of the first checkpoint). Stops at the first problem.
pub fn verify(files: &[PathBuf], pinned: &[PublicKey]) -> std::io::Result<Report> {
    let mut v = Verifier {
        files,
        pinned,
        report: Report::default(),
        branches: Vec::new(),
        before_chain: 0,
        pending_partial: None,
    };
    if let Some(k) = pinned.first() {
        v.report.key = Some((*k, KeySource::Pinned));
    }
    for (fi, path) in files.iter().enumerate() {
        let data = std::fs::read(path)?;
        let mut lines: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
        let partial = lines.pop().filter(|l| !l.is_empty());
        v.report
            .files
            .push((path.clone(), lines.len() + usize::from(partial.is_some())));
        if let Err(p) = v.file(fi, &lines, partial) {
            v.report.problem = Some(p);
            return Ok(v.report);
        }
    }
    if let Err(p) = v.finish() {
        v.report.problem = Some(p);
    }
    Ok(v.report)
}

impl Verifier<'_> {
    fn problem(&self, pos: &Pos, seq: Option<u64>, message: impl Into<String>) -> Problem {
        Problem {
            file: self.files[pos.file].clone(),
            line: pos.line,
            seq,
            message: message.into(),
        }
    }

    fn at(&self, pos: &Pos) -> String {
        format!("{} line {} (seq {})", self.files[pos.file].display(), pos.line, pos.seq)
    }

    fn file(&mut self, fi: usize, lines: &[&[u8]], partial: Option<&[u8]>) -> Result<(), Problem> {
        for (i, line) in lines.iter().enumerate() {
            let pos = Pos {
                file: fi,
                line: i + 1,
                seq: 0,
            };
            self.line(&pos, line, &lines[i + 1..])?;
        }
        if let Some(p) = partial {
            let pos = Pos {
                file: fi,
                line: lines.len() + 1,
                seq: 0,
            };
            if let Some((ppos, _)) = self.pending_partial.take() {
                return Err(self.problem(&ppos, None, "not a chained line (not JSON): changed or inserted"));
            }
            return Err(self.problem(
                &pos,
                links(p).map(|(s, _)| s),
                format!(
                    "partial last line ({} bytes, no newline): the file was cut off (or a writer is in the middle of it)",
                    p.len()
                ),
            ));
        }
        Ok(())
    }

    fn line(&mut self, pos: &Pos, line: &[u8], rest: &[&[u8]]) -> Result<(), Problem> {
        let Some((seq, prev)) = links(line) else {
            if !self.branches.is_empty() {
                if let Some((ppos, _)) = &self.pending_partial {
                    return Err(self.problem(ppos, None, "not a chained line (not JSON): changed or inserted"));
                }
                if serde_json::from_slice::<serde_json::Value>(line).is_err() {
                    // A crash's partial line, if the next line (a start checkpoint) says so.
                    self.pending_partial = Some((pos.clone(), line.len() as u64));
                    return Ok(());
                }
                return Err(self.problem(
                    pos,
                    None,
                    "no seq/prev as the writer writes them: a line inserted into the chain, or its seq or prev changed",
                ));
            }
            if serde_json::from_slice::<serde_json::Value>(line).is_err() {
                return Err(self.problem(pos, None, "not JSON: changed, or the file is not an audit log"));
            }
            self.before_chain += 1;
            return Ok(());
        };
        let pos = Pos { seq, ..pos.clone() };
        let checkpoint = if line.starts_with(br#"{"record":"checkpoint""#) {
            let (cp, key) =
                Checkpoint::check(line).map_err(|e| self.problem(&pos, Some(seq), format!("checkpoint: {e}")))?;
            self.trust(&pos, key)?;
            Some(cp)
        } else {
            None
        };
        let reason = checkpoint.as_ref().map(|c| c.reason);
        if let Some((ppos, len)) = self.pending_partial.take() {
            let acknowledged =
                reason == Some(Reason::Start) && checkpoint.as_ref().and_then(|c| c.partial_tail) == Some(len);
            if !acknowledged {
                return Err(self.problem(&ppos, None, "not a chained line (not JSON): changed or inserted"));
            }
            self.report.notes.push(format!(
                "{} line {}: a partial line ({len} bytes) a crash left mid-write, ended by the restart at line {} (the record in it is lost)",
                self.files[ppos.file].display(),
                ppos.line,
                pos.line
            ));
        }
        self.link(&pos, &prev, reason, rest)?;
        let hash = hex(&sha256(line));
        let branch = self.branches.last_mut().expect("link() leaves the line's branch last");
        branch.hash = hash;
        branch.at = pos.clone();
        branch.reason = reason;
        if reason.is_some() {
            branch.unsealed = 0;
            branch.first_unsealed = None;
            branch.last_checkpoint = Some(pos.clone());
            self.report.checkpoints += 1;
        } else {
            branch.unsealed += 1;
            branch.first_unsealed.get_or_insert(pos.clone());
        }
        self.report.lines += 1;
        self.report.first_seq.get_or_insert(seq);
        self.report.last_seq = Some(seq);
        Ok(())
    }

    /// Finds the branch the line extends and moves it last (a new branch for a chain's first
    /// line or a fork), or says what went wrong.
    fn link(&mut self, pos: &Pos, prev: &str, reason: Option<Reason>, rest: &[&[u8]]) -> Result<(), Problem> {
        if pos.seq == 0 && prev == hex(&GENESIS) {
            return self.begin(pos, reason);
        }
        if self.branches.is_empty() {
            return self.resume(pos, reason);
        }
        match self.branches.iter().position(|b| b.hash == prev) {
            Some(i) => self.extend(i, pos, reason),
            None => Err(self.unlinked(pos, rest)),
        }
    }

    /// The chain's first line (seq 0, linking to the genesis hash): the first chained line of
    /// the log, and a start checkpoint.
    fn begin(&mut self, pos: &Pos, reason: Option<Reason>) -> Result<(), Problem> {
        let seq = pos.seq;
        if !self.branches.is_empty() {
            return Err(self.problem(
                pos,
                Some(seq),
                "a new chain (seq 0) starts in the middle of the log: the log before it was replaced, or its last line was damaged",
            ));
        }
        if reason != Some(Reason::Start) {
            return Err(self.problem(pos, Some(seq), "the chain does not begin with a start checkpoint"));
        }
        if self.before_chain > 0 {
            self.report.notes.push(format!(
                "{} lines before the chain starts (written without seq/prev, by a Tollgate without the chain) are not covered",
                self.before_chain
            ));
        }
        self.branches.push(Branch::new(pos, seq + 1));
        Ok(())
    }

    /// The first chained line of a log whose chain began in files rotated away: its link
    /// cannot be checked, so it must be the checkpoint opening a file.
    fn resume(&mut self, pos: &Pos, reason: Option<Reason>) -> Result<(), Problem> {
        let seq = pos.seq;
        if pos.line != 1 || !matches!(reason, Some(Reason::Rotate | Reason::Start)) {
            return Err(self.problem(
                pos,
                Some(seq),
                "the log starts in the middle of the chain, not at the checkpoint opening a file: the lines before it were removed",
            ));
        }
        self.report.notes.push(format!(
            "the chain starts at seq {seq}: older lines were rotated away (the link to them is not checked)"
        ));
        self.branches.push(Branch::new(pos, seq + 1));
        Ok(())
    }

    /// The line links to the last line of branch `i`. It must carry the next seq. A start
    /// checkpoint opens a new branch there (the fork of an upgrade; after a stop checkpoint
    /// the old branch is done and dropped); any other line extends the branch, unless the
    /// branch ended with a stop checkpoint.
    fn extend(&mut self, i: usize, pos: &Pos, reason: Option<Reason>) -> Result<(), Problem> {
        let seq = pos.seq;
        let b = &self.branches[i];
        if b.next_seq != seq {
            return Err(self.problem(
                pos,
                Some(seq),
                format!("seq {seq} does not follow {} it links to: changed", self.at(&b.at)),
            ));
        }
        if reason == Some(Reason::Start) {
            if b.reason != Some(Reason::Stop) {
                self.report.notes.push(format!(
                    "{}: a start without a stop checkpoint before it (after a crash or kill, or an upgrade whose predecessor wrote on)",
                    self.at(pos)
                ));
                // The start checkpoint sealed the branch; a predecessor may still extend it.
                let old = &mut self.branches[i];
                old.unsealed = 0;
                old.first_unsealed = None;
                old.reason = Some(Reason::Start);
            } else {
                self.branches.remove(i);
            }
            self.branches.push(Branch::new(pos, seq + 1));
            return Ok(());
        }
        if b.reason == Some(Reason::Stop) {
            return Err(self.problem(
                pos,
                Some(seq),
                format!(
                    "links to the stop checkpoint at {}, which only a start checkpoint may follow: inserted",
                    self.at(&b.at)
                ),
            ));
        }
        let mut b = self.branches.remove(i);
        b.next_seq = seq + 1;
        self.branches.push(b);
        Ok(())
    }

    /// No branch ends with the line this one links to: names the likeliest cause, looking at
    /// the branches newest first and at the lines `rest` after this one.
    fn unlinked(&self, pos: &Pos, rest: &[&[u8]]) -> Problem {
        let seq = pos.seq;
        // The line it should link to is there, but its hash differs: that line was changed.
        if let Some(b) = self.branches.iter().rev().find(|b| b.next_seq == seq) {
            return self.problem(
                &b.at,
                Some(b.at.seq),
                format!(
                    "changed: its sha256 is not the prev that the next line, {}, holds",
                    self.at(pos)
                ),
            );
        }
        // Seqs are skipped: later in the file (reordered) or nowhere (removed).
        if let Some(b) = self.branches.iter().rev().find(|b| b.next_seq < seq) {
            let expected = b.next_seq;
            let later = rest.iter().position(|l| links(l).is_some_and(|(s, _)| s == expected));
            return match later {
                Some(k) => self.problem(
                    pos,
                    Some(seq),
                    format!(
                        "lines reordered: seq {seq} comes before seq {expected} (line {}) and right after {}",
                        pos.line + 1 + k,
                        self.at(&b.at)
                    ),
                ),
                None => self.problem(
                    pos,
                    Some(seq),
                    format!(
                        "lines removed: seq {expected}..{} are missing between {} and this line",
                        seq - 1,
                        self.at(&b.at)
                    ),
                ),
            };
        }
        if let Some(b) = self.branches.iter().rev().find(|b| b.at.seq == seq) {
            return self.problem(
                pos,
                Some(seq),
                format!("repeats the seq of {}: a line inserted", self.at(&b.at)),
            );
        }
        self.problem(
            pos,
            Some(seq),
            "seq is lower than the chain's: a line inserted, or lines reordered",
        )
    }

    fn trust(&mut self, pos: &Pos, key: PublicKey) -> Result<(), Problem> {
        if !self.pinned.is_empty() {
            if !self.pinned.contains(&key) {
                let pinned: Vec<String> = self.pinned.iter().map(PublicKey::fingerprint).collect();
                return Err(self.problem(
                    pos,
                    Some(pos.seq),
                    format!(
                        "checkpoint signed by {key}, not by the pinned key {}",
                        pinned.join(", ")
                    ),
                ));
            }
            return Ok(());
        }
        match &self.report.key {
            None => {
                self.report.key = Some((
                    key,
                    KeySource::FirstCheckpoint {
                        file: self.files[pos.file].clone(),
                        line: pos.line,
                    },
                ));
                Ok(())
            }
            Some((k, _)) if *k == key => Ok(()),
            Some((k, _)) => Err(self.problem(
                pos,
                Some(pos.seq),
                format!(
                    "checkpoint signed by {key}, but the log's first checkpoint by {k}; if the node key was replaced, pass both with --key"
                ),
            )),
        }
    }

    fn finish(&mut self) -> Result<(), Problem> {
        if let Some((ppos, _)) = self.pending_partial.take() {
            return Err(self.problem(&ppos, None, "not a chained line (not JSON): changed or inserted"));
        }
        if self.branches.is_empty() {
            let pos = Pos {
                file: self.files.len().saturating_sub(1),
                line: self.report.files.last().map_or(0, |f| f.1),
                seq: 0,
            };
            return Err(self.problem(&pos, None, "no chained line in the log"));
        }
        for b in &self.branches {
            if let Some(first) = &b.first_unsealed {
                let after = match &b.last_checkpoint {
                    Some(cp) => format!("after the checkpoint at {}", self.at(cp)),
                    None => "with no checkpoint before them".into(),
                };
                self.report.unsealed.push(format!(
                    "{} lines {after}, from {} to {}: a running gateway seals them within checkpoint.interval; otherwise it stopped without a stop checkpoint (crash) or the log's tail was cut off",
                    b.unsealed,
                    self.at(first),
                    self.at(&b.at)
                ));
            }
        }
        let newest = self.branches.last().expect("not empty");
        if newest.unsealed == 0 && newest.reason != Some(Reason::Stop) {
            self.report.notes.push(format!(
                "the log ends with a {} checkpoint ({}), not a stop one: the gateway was running then, or stopped without a stop checkpoint",
                newest.reason.map_or("?", Reason::as_str),
                self.at(&newest.at)
            ));
        }
        Ok(())
    }
}
