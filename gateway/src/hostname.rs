//! Hostname patterns of providers: exact names, and the wildcards whole families of provider
//! endpoints need (`*.openai.azure.com`, `bedrock-runtime.*.amazonaws.com`,
//! `*-aiplatform.googleapis.com`). A leaf: it imports nothing of the crate.
//!
//! - A leading `*.` label matches one or more labels: `*.openai.azure.com` matches
//!   `a.openai.azure.com` and `a.b.openai.azure.com`, not `openai.azure.com` (as Gateway API
//!   hostnames do).
//! - Any other `*` matches within one label: `bedrock-runtime.*.amazonaws.com` matches
//!   `bedrock-runtime.us-east-1.amazonaws.com` only; `*-aiplatform.googleapis.com` matches
//!   `europe-west4-aiplatform.googleapis.com`.
//! - The last two labels are always literal, so a pattern names one registered domain.
//!
//! Comparison ignores case and a trailing dot.

use std::fmt;

/// A compiled hostname pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPattern {
    text: String,
    kind: Kind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    Exact,
    /// `*.suffix`: the `.suffix` (with its dot) the name must end with, after one or more labels.
    Subdomains(String),
    /// Labels, each literal or a glob within the label.
    Labels(Box<[Label]>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Label {
    Literal(String),
    /// The label's text split at its `*`s: the parts must appear in order, the first at the
    /// start and the last at the end.
    Glob(Box<[String]>),
}

impl HostPattern {
    /// Parses and checks a pattern; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<HostPattern, String> {
        let lower = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
        if lower.is_empty() || lower.len() > 253 {
            return Err(format!("{text:?} is not a hostname"));
        }
        let labels: Vec<&str> = lower.split('.').collect();
        for label in &labels {
            let valid = !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '*');
            if !valid {
                return Err(format!("{text:?} is not a hostname"));
            }
        }
        if !lower.contains('*') {
            return Ok(HostPattern {
                text: lower,
                kind: Kind::Exact,
            });
        }
        if labels.len() < 3 || labels[labels.len() - 2..].iter().any(|l| l.contains('*')) {
            return Err(format!(
                "{text:?}: a wildcard needs at least two literal labels after it (like \"*.openai.azure.com\")"
            ));
        }
        let kind = if labels[0] == "*" && !labels[1..].iter().any(|l| l.contains('*')) {
            Kind::Subdomains(lower[1..].to_string())
        } else if labels[0] == "*" && labels.len() > 1 && labels[1..].iter().any(|l| l.contains('*')) {
            return Err(format!(
                "{text:?}: a leading \"*.\" cannot be combined with other wildcards"
            ));
        } else {
            let labels = labels
                .iter()
                .map(|l| match l.contains('*') {
                    true => Label::Glob(l.split('*').map(str::to_string).collect()),
                    false => Label::Literal(l.to_string()),
                })
                .collect();
            Kind::Labels(labels)
        };
        Ok(HostPattern { text: lower, kind })
    }

    /// The pattern as written (lowercase, no trailing dot).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern names exactly one host (and so can be resolved ahead of time).
    pub fn is_exact(&self) -> bool {
        matches!(self.kind, Kind::Exact)
    }

    /// Whether `name` (any case, trailing dot allowed) matches. Called per request (SNI and
    /// `Host`), which are lowercase already: only a name with capitals is copied.
    pub fn matches(&self, name: &str) -> bool {
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            return self.matches(&name.to_ascii_lowercase());
        }
        let name = name.strip_suffix('.').unwrap_or(name);
        match &self.kind {
            Kind::Exact => name == self.text,
            Kind::Subdomains(suffix) => name
                .strip_suffix(suffix.as_str())
                .is_some_and(|sub| !sub.is_empty() && !sub.split('.').any(str::is_empty)),
            Kind::Labels(labels) => {
                let mut parts = name.split('.');
                let all = labels.iter().all(|l| parts.next().is_some_and(|p| l.matches(p)));
                all && parts.next().is_none()
            }
        }
    }
}

impl Label {
    /// `label` is lowercase ([`HostPattern::matches`] sees to it).
    fn matches(&self, label: &str) -> bool {
        if label.is_empty() {
            return false;
        }
        match self {
            Label::Literal(l) => l == label,
            Label::Glob(parts) => {
                let (first, last) = (&parts[0], &parts[parts.len() - 1]);
                if label.len() < first.len() + last.len()
                    || !label.starts_with(first.as_str())
                    || !label.ends_with(last.as_str())
                {
                    return false;
                }
                let mut rest = &label[first.len()..label.len() - last.len()];
                for middle in &parts[1..parts.len() - 1] {
                    match rest.find(middle.as_str()) {
                        Some(at) => rest = &rest[at + middle.len()..],
                        None => return false,
                    }
                }
                true
            }
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::HostPattern;

    fn p(s: &str) -> HostPattern {
        HostPattern::parse(s).unwrap()
    }

    #[test]
    fn exact_names_ignore_case_and_a_trailing_dot() {
        let h = p("API.openai.com.");
        assert!(h.is_exact());
        assert_eq!(h.as_str(), "api.openai.com");
        assert!(h.matches("api.openai.com") && h.matches("Api.OpenAI.com."));
        assert!(!h.matches("xapi.openai.com") && !h.matches("openai.com"));
    }

    #[test]
    fn a_leading_wildcard_matches_one_or_more_labels() {
        let h = p("*.openai.azure.com");
        assert!(!h.is_exact());
        assert!(h.matches("myres.openai.azure.com") && h.matches("a.b.openai.azure.com"));
        assert!(h.matches("MyRes.OpenAI.Azure.com."));
        assert!(!h.matches("openai.azure.com"), "the bare domain is not a subdomain");
        assert!(!h.matches(".openai.azure.com") && !h.matches("a..openai.azure.com"));
        assert!(!h.matches("evilopenai.azure.com"));
        assert!(!h.matches("myres.openai.azure.com.evil.com"));
    }

    #[test]
    fn an_inner_wildcard_matches_within_one_label() {
        let h = p("bedrock-runtime.*.amazonaws.com");
        assert!(h.matches("bedrock-runtime.us-east-1.amazonaws.com"));
        assert!(!h.matches("bedrock-runtime.a.b.amazonaws.com"), "one label only");
        assert!(!h.matches("bedrock-runtime..amazonaws.com"));
        assert!(!h.matches("bedrock.us-east-1.amazonaws.com"));
        let h = p("*-aiplatform.googleapis.com");
        assert!(h.matches("europe-west4-aiplatform.googleapis.com"));
        assert!(h.matches("US-central1-aiplatform.googleapis.com"));
        assert!(!h.matches("aiplatform.googleapis.com"));
        assert!(!h.matches("a.b-aiplatform.googleapis.com"));
        let h = p("a*b*c.example.com");
        assert!(h.matches("abc.example.com") && h.matches("axxbyyc.example.com"));
        assert!(!h.matches("acb.example.com"));
    }

    #[test]
    fn bad_patterns_say_why() {
        for bad in [
            "",
            "bad host",
            "a..b",
            "*.com",
            "*",
            "api.*.com",
            "api.openai.*",
            "*.*.azure.com",
            "a_b.com",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(HostPattern::parse("*.com").unwrap_err().contains("two literal labels"));
        assert!(HostPattern::parse(&"a".repeat(64)).is_err());
    }
}
