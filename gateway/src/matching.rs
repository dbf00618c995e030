//! Globs (`*` any run of characters, `?` one character, everything else literal) compiled once
//! at config load, and the workload conditions routes and limits share. A leaf: it imports
//! nothing of the crate.

use serde::{Serialize, Serializer};

/// A compiled glob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    text: String,
    kind: Kind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    /// No wildcard: plain equality.
    Literal,
    /// `prefix*` with no other wildcard: a prefix test.
    Prefix(String),
    /// Anything else, as characters.
    General(Box<[char]>),
}

impl Glob {
    pub fn new(pattern: &str) -> Glob {
        let wild = |c: char| c == '*' || c == '?';
        let kind = if !pattern.contains(wild) {
            Kind::Literal
        } else if let Some(prefix) = pattern.strip_suffix('*').filter(|p| !p.contains(wild)) {
            Kind::Prefix(prefix.to_string())
        } else {
            Kind::General(pattern.chars().collect())
        };
        Glob {
            text: pattern.to_string(),
            kind,
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn matches(&self, text: &str) -> bool {
        match &self.kind {
            Kind::Literal => self.text == text,
            Kind::Prefix(p) => text.starts_with(p.as_str()),
            Kind::General(p) => general(p, text),
        }
    }
}

impl Serialize for Glob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// Compiles a list of patterns.
pub fn globs(patterns: &[String]) -> Vec<Glob> {
    patterns.iter().map(|p| Glob::new(p)).collect()
}

/// Backtracking match with one remembered star (linear in practice for the short patterns of a
/// config).
fn general(p: &[char], text: &str) -> bool {
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Whether `value` matches one of `patterns`; an empty list matches anything.
pub fn any(patterns: &[Glob], value: Option<&str>) -> bool {
    patterns.is_empty() || value.is_some_and(|v| patterns.iter().any(|p| p.matches(v)))
}

/// The workload conditions routes and limits share: `comm` globs, uids and a cgroup path glob,
/// each matching anything when unset.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WorkloadMatch {
    pub comm: Vec<Glob>,
    pub uids: Vec<u32>,
    pub cgroup: Option<Glob>,
}

impl WorkloadMatch {
    /// Whether a workload (`comm`, uid, cgroup path) meets every condition.
    pub fn matches(&self, comm: &str, uid: u32, cgroup: Option<&str>) -> bool {
        any(&self.comm, Some(comm))
            && (self.uids.is_empty() || self.uids.contains(&uid))
            && self
                .cgroup
                .as_ref()
                .is_none_or(|p| cgroup.is_some_and(|c| p.matches(c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(p: &str, t: &str) -> bool {
        Glob::new(p).matches(t)
    }

    #[test]
    fn globs_match_like_a_shell() {
        assert!(glob("gpt-4o*", "gpt-4o-mini"));
        assert!(glob("gpt-4o*", "gpt-4o"));
        assert!(!glob("gpt-4o*", "gpt-4"));
        assert!(glob("*", ""));
        assert!(glob("claude-?-*", "claude-3-opus"));
        assert!(glob("/kubepods*/pod*", "/kubepods.slice/pod123"));
        assert!(!glob("a*b", "acd"));
        assert!(glob("*a*b*", "xxaxxbxx"));
        assert!(glob("exact", "exact") && !glob("exact", "exactly"));
        assert!(glob("héllo?", "héllo!"), "characters, not bytes");
    }

    #[test]
    fn workloads_match_on_every_condition_set() {
        let w = WorkloadMatch {
            comm: globs(&["python*".into()]),
            uids: vec![1000],
            cgroup: Some(Glob::new("/team-a/*")),
        };
        assert!(w.matches("python3", 1000, Some("/team-a/job")));
        assert!(!w.matches("curl", 1000, Some("/team-a/job")));
        assert!(!w.matches("python3", 0, Some("/team-a/job")));
        assert!(!w.matches("python3", 1000, None));
        assert!(WorkloadMatch::default().matches("anything", 0, None));
    }
}
