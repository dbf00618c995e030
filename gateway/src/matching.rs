//! Globs (`*` any run of characters, `?` one character, everything else literal) compiled once
//! at config load, and the workload conditions routes and limits share. A leaf: it imports
//! nothing of the crate.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, Serializer};

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

    /// The text a pattern without wildcards equals.
    pub fn literal(&self) -> Option<&str> {
        matches!(self.kind, Kind::Literal).then_some(self.text.as_str())
    }

    /// The prefix of a `prefix*` pattern.
    pub fn prefix(&self) -> Option<&str> {
        match &self.kind {
            Kind::Prefix(p) => Some(p),
            _ => None,
        }
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

/// The workload conditions routes and limits share: `comm` globs, uids, a cgroup path glob,
/// and, for pods (identity from the container runtime), namespace globs, pod name globs and
/// label globs. Each matches anything when unset; a pod condition never matches a workload
/// that is not in a known pod.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WorkloadMatch {
    pub comm: Vec<Glob>,
    pub uids: Vec<u32>,
    pub cgroup: Option<Glob>,
    pub namespaces: Vec<Glob>,
    pub pods: Vec<Glob>,
    /// Label name → value glob; every one must match.
    pub labels: BTreeMap<String, Glob>,
}

/// The workload conditions as configured (`match.workload` of routes; inline in `match` of
/// limits).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawWorkloadMatch {
    /// Process names (`comm`) globs; empty matches any.
    #[serde(default)]
    pub comm: Vec<String>,
    /// uids; empty matches any.
    #[serde(default)]
    pub uids: Vec<u32>,
    /// cgroup path glob (relative to the cgroup2 root, e.g. `/kubepods*`).
    pub cgroup: Option<String>,
    /// Kubernetes namespace globs (pod identity from `identity.criSocket`); empty matches any.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Pod name globs; empty matches any.
    #[serde(default)]
    pub pods: Vec<String>,
    /// Pod label → value glob; all must match.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl RawWorkloadMatch {
    pub fn compile(self) -> WorkloadMatch {
        WorkloadMatch {
            comm: globs(&self.comm),
            uids: self.uids,
            cgroup: self.cgroup.as_deref().map(Glob::new),
            namespaces: globs(&self.namespaces),
            pods: globs(&self.pods),
            labels: self.labels.iter().map(|(k, v)| (k.clone(), Glob::new(v))).collect(),
        }
    }
}

/// What a workload is matched on.
#[derive(Clone, Copy, Debug, Default)]
pub struct WorkloadFacts<'a> {
    pub comm: &'a str,
    pub uid: u32,
    pub cgroup: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub pod: Option<&'a str>,
    pub labels: Option<&'a BTreeMap<String, String>>,
}

impl WorkloadMatch {
    /// Whether a workload meets every condition.
    pub fn matches(&self, w: &WorkloadFacts<'_>) -> bool {
        any(&self.comm, Some(w.comm))
            && (self.uids.is_empty() || self.uids.contains(&w.uid))
            && self
                .cgroup
                .as_ref()
                .is_none_or(|p| w.cgroup.is_some_and(|c| p.matches(c)))
            && any(&self.namespaces, w.namespace)
            && any(&self.pods, w.pod)
            && self
                .labels
                .iter()
                .all(|(k, p)| w.labels.and_then(|l| l.get(k)).is_some_and(|v| p.matches(v)))
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
            ..Default::default()
        };
        let facts = |comm, uid, cgroup| WorkloadFacts {
            comm,
            uid,
            cgroup,
            ..Default::default()
        };
        assert!(w.matches(&facts("python3", 1000, Some("/team-a/job"))));
        assert!(!w.matches(&facts("curl", 1000, Some("/team-a/job"))));
        assert!(!w.matches(&facts("python3", 0, Some("/team-a/job"))));
        assert!(!w.matches(&facts("python3", 1000, None)));
        assert!(WorkloadMatch::default().matches(&facts("anything", 0, None)));
    }

    #[test]
    fn pods_match_on_namespace_name_and_labels() {
        let w = WorkloadMatch {
            namespaces: globs(&["team-*".into()]),
            pods: globs(&["notebook-*".into()]),
            labels: [("app".to_string(), Glob::new("jupyter*"))].into(),
            ..Default::default()
        };
        let labels: BTreeMap<String, String> = [("app".to_string(), "jupyterlab".to_string())].into();
        let pod = WorkloadFacts {
            comm: "python3",
            namespace: Some("team-a"),
            pod: Some("notebook-7f9c"),
            labels: Some(&labels),
            ..Default::default()
        };
        assert!(w.matches(&pod));
        assert!(!w.matches(&WorkloadFacts {
            namespace: Some("default"),
            ..pod
        }));
        assert!(!w.matches(&WorkloadFacts {
            pod: Some("api-1"),
            ..pod
        }));
        let other: BTreeMap<String, String> = [("app".to_string(), "api".to_string())].into();
        assert!(!w.matches(&WorkloadFacts {
            labels: Some(&other),
            ..pod
        }));
        // Not in a known pod (a host process, or the runtime did not answer): no match.
        assert!(!w.matches(&WorkloadFacts {
            comm: "python3",
            ..Default::default()
        }));
    }
}
