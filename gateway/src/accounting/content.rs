//! Optional content capture: a route can have the audit record carry the request and response
//! bodies (their first `maxBytes`), for a sample of its requests, with redaction applied before
//! anything is written. Off unless a route turns it on.
//!
//! Redaction runs on the request's task when it ends, over at most `maxBytes` plus a margin of
//! each body: JSON pointer paths first (their values replaced whole), then the built-in rules
//! (provider API keys, AWS keys, bearer tokens, e-mail addresses) and the route's regular
//! expressions, each match replaced by `[REDACTED:<rule>]`; then the text is cut to `maxBytes`.
//! Cutting after redacting means a secret that straddles the cut is matched whole first
//! (secrets are far shorter than the margin), so no part of it is written.

use std::{borrow::Cow, sync::Arc};

use bytes::Bytes;
use regex::Regex;
use serde::{Deserialize, Serialize};

use super::audit::Content;

/// Bytes kept past `maxBytes` so that a secret across the cut is still matched whole.
const MARGIN: usize = 1024;
/// Largest `maxBytes` a route may ask for (per body).
pub const MAX_CAPTURE_BYTES: usize = 1 << 20;
/// `maxBytes` when a route does not say.
pub const DEFAULT_CAPTURE_BYTES: usize = 16 * 1024;

/// The built-in redaction rules: name and pattern. Order matters where patterns overlap
/// (Anthropic's `sk-ant-` before OpenAI's `sk-`).
const BUILTIN_RULES: [(&str, &str); 9] = [
    ("anthropic_key", r"sk-ant-[A-Za-z0-9_\-]{20,}"),
    ("openai_key", r"sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}"),
    ("google_api_key", r"AIza[0-9A-Za-z_\-]{35}"),
    ("aws_access_key", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    (
        "aws_secret_key",
        r#"(?i)aws_?secret_?access_?key["'\s:=]+[A-Za-z0-9/+=]{40}"#,
    ),
    ("github_token", r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    (
        "provider_key",
        r"\b(?:gsk|xai|csk|fw)_[A-Za-z0-9]{20,}\b|\bxai-[A-Za-z0-9]{20,}\b",
    ),
    ("bearer_token", r"(?i)\bbearer\s+[A-Za-z0-9._~+/=\-]{16,}"),
    ("email", r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}\b"),
];

/// `routes[].capture` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawCapture {
    /// Capture bodies (default `true` once the section is there).
    pub enabled: Option<bool>,
    /// Bytes kept of each body (default 16 KiB, at most 1 MiB).
    pub max_bytes: Option<usize>,
    /// Fraction of the route's requests captured, 0 to 1 (default 1).
    pub sample_rate: Option<f64>,
    #[serde(default)]
    pub redact: RawRedact,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawRedact {
    /// Apply the built-in rules (default `true`).
    pub builtins: Option<bool>,
    /// More rules: regular expressions (Rust `regex` syntax); matches are replaced.
    #[serde(default)]
    pub patterns: Vec<String>,
    /// JSON pointer paths (RFC 6901) whose values are replaced whole, e.g. `/user`,
    /// `/messages/0/content`; applied to JSON bodies.
    #[serde(default)]
    pub json_pointers: Vec<String>,
}

/// A route's capture settings, validated.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Capture {
    pub max_bytes: usize,
    pub sample_rate: f64,
    pub builtins: bool,
    pub patterns: Vec<String>,
    pub json_pointers: Vec<String>,
    #[serde(skip)]
    rules: Arc<Vec<(Cow<'static, str>, Regex)>>,
}

impl PartialEq for Capture {
    fn eq(&self, other: &Capture) -> bool {
        (
            self.max_bytes,
            self.sample_rate,
            self.builtins,
            &self.patterns,
            &self.json_pointers,
        ) == (
            other.max_bytes,
            other.sample_rate,
            other.builtins,
            &other.patterns,
            &other.json_pointers,
        )
    }
}

/// Validates `field` (`routes[i].capture`): `Ok(None)` when capture is off. Errors name the
/// offending member.
pub fn capture_from_raw(field: &str, raw: RawCapture) -> Result<Option<Capture>, (String, String)> {
    if raw.enabled == Some(false) {
        return Ok(None);
    }
    let max_bytes = raw.max_bytes.unwrap_or(DEFAULT_CAPTURE_BYTES);
    if max_bytes == 0 || max_bytes > MAX_CAPTURE_BYTES {
        return Err((
            format!("{field}.maxBytes"),
            format!("{max_bytes} is not between 1 and {MAX_CAPTURE_BYTES}"),
        ));
    }
    let sample_rate = raw.sample_rate.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample_rate) {
        return Err((
            format!("{field}.sampleRate"),
            format!("{sample_rate} is not between 0 and 1"),
        ));
    }
    let builtins = raw.redact.builtins.unwrap_or(true);
    let mut rules: Vec<(Cow<'static, str>, Regex)> = Vec::new();
    if builtins {
        for (name, pattern) in BUILTIN_RULES {
            rules.push((name.into(), Regex::new(pattern).expect("built-in rules compile")));
        }
    }
    for (j, p) in raw.redact.patterns.iter().enumerate() {
        let re = Regex::new(p).map_err(|e| (format!("{field}.redact.patterns[{j}]"), e.to_string()))?;
        if re.is_match("") {
            return Err((
                format!("{field}.redact.patterns[{j}]"),
                format!("{p:?} matches the empty string"),
            ));
        }
        rules.push((format!("pattern{j}").into(), re));
    }
    for (j, p) in raw.redact.json_pointers.iter().enumerate() {
        if !p.starts_with('/') {
            return Err((
                format!("{field}.redact.jsonPointers[{j}]"),
                format!("{p:?} is not a JSON pointer (starts with '/')"),
            ));
        }
    }
    Ok(Some(Capture {
        max_bytes,
        sample_rate,
        builtins,
        patterns: raw.redact.patterns,
        json_pointers: raw.redact.json_pointers,
        rules: Arc::new(rules),
    }))
}

impl Capture {
    /// Whether this request is in the sample.
    pub fn sampled(&self) -> bool {
        self.sample_rate >= 1.0 || fastrand::f64() < self.sample_rate
    }

    /// `body` as the record may hold it: redacted, then cut to `max_bytes` (on a character
    /// boundary). Returns the text, whether it was cut, and the number of redactions.
    pub fn redact(&self, body: &[u8], seen: u64) -> (String, bool, u32) {
        let kept = &body[..body.len().min(self.max_bytes + MARGIN)];
        let mut count = 0u32;
        let mut text = String::from_utf8_lossy(kept).into_owned();
        // JSON pointers on a whole JSON body.
        if !self.json_pointers.is_empty() && kept.len() == body.len() {
            if let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(body) {
                for p in &self.json_pointers {
                    if let Some(slot) = v.pointer_mut(p) {
                        *slot = serde_json::Value::String("[REDACTED:json_pointer]".into());
                        count += 1;
                    }
                }
                if count > 0 {
                    text = v.to_string();
                }
            }
        }
        for (name, re) in self.rules.iter() {
            let n = re.find_iter(&text).count();
            if n > 0 {
                count += n as u32;
                text = re
                    .replace_all(&text, format!("[REDACTED:{name}]").as_str())
                    .into_owned();
            }
        }
        let mut truncated = seen > kept.len() as u64;
        if text.len() > self.max_bytes {
            let mut cut = self.max_bytes;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            truncated = true;
        }
        (text, truncated, count)
    }
}

/// The bodies of one sampled request, gathered as it goes (at most `maxBytes` plus a margin of
/// each).
pub struct Captured {
    capture: Arc<Capture>,
    /// `None` when the request body was streamed through unread.
    request: Option<Bytes>,
    response: Vec<u8>,
    response_seen: u64,
}

impl Captured {
    pub fn new(capture: Arc<Capture>, request: Option<Bytes>) -> Captured {
        Captured {
            capture,
            request,
            response: Vec::new(),
            response_seen: 0,
        }
    }

    /// A chunk of the response as the backend sent it.
    pub fn response(&mut self, data: &[u8]) {
        self.response_seen += data.len() as u64;
        let room = (self.capture.max_bytes + MARGIN).saturating_sub(self.response.len());
        self.response.extend_from_slice(&data[..data.len().min(room)]);
    }

    /// The record's `content`, redacted.
    pub fn finish(self) -> Content {
        let c = &self.capture;
        let request = self.request.as_ref().map(|b| c.redact(b, b.len() as u64));
        let response = (self.response_seen > 0).then(|| c.redact(&self.response, self.response_seen));
        let redactions = request.as_ref().map_or(0, |r| r.2) + response.as_ref().map_or(0, |r| r.2);
        Content {
            request_truncated: request.as_ref().is_some_and(|r| r.1),
            request: request.map(|r| r.0),
            response_truncated: response.as_ref().is_some_and(|r| r.1),
            response: response.map(|r| r.0),
            redactions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(yaml: &str) -> Capture {
        let raw: RawCapture = serde_yaml_ng::from_str(yaml).unwrap();
        capture_from_raw("routes[0].capture", raw).unwrap().unwrap()
    }

    #[test]
    fn built_in_rules_cover_common_secrets() {
        let c = capture("{}");
        let body = concat!(
            r#"{"messages":[{"role":"user","content":"my key is sk-proj-AbCdEf0123456789AbCdEf0123 and "#,
            r#"sk-ant-api03-ZZZZZZZZZZZZZZZZZZZZZZZZ, AKIAIOSFODNN7EXAMPLE, "#,
            r#"aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY1, "#,
            r#"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig, mail me at ada@example.org, "#,
            r#"AIzaSyA-1234567890abcdefghijklmnopqrstu, ghp_abcdefghijklmnopqrstuvwxyz0123456789"}]}"#
        );
        let (text, truncated, n) = c.redact(body.as_bytes(), body.len() as u64);
        for secret in [
            "sk-proj-AbCdEf",
            "sk-ant-api03",
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI",
            "eyJhbGciOiJIUzI1NiJ9",
            "ada@example.org",
            "AIzaSyA-1234567890",
            "ghp_abcdef",
        ] {
            assert!(!text.contains(secret), "{secret} left in {text}");
        }
        for rule in [
            "openai_key",
            "anthropic_key",
            "aws_access_key",
            "aws_secret_key",
            "bearer_token",
            "email",
        ] {
            assert!(text.contains(&format!("[REDACTED:{rule}]")), "{rule}: {text}");
        }
        assert_eq!(n, 8, "{text}");
        assert!(!truncated);
        assert!(text.contains("my key is"), "the rest stays: {text}");
    }

    #[test]
    fn pointers_and_patterns_redact_and_a_secret_across_the_cut_is_not_half_written() {
        let c = capture(
            r#"{maxBytes: 64, redact: {builtins: false, patterns: ["EMP-[0-9]{6}"], jsonPointers: ["/user", "/messages/0/content"]}}"#,
        );
        let body = r#"{"user":"ada","messages":[{"role":"user","content":"private words"}],"note":"EMP-123456"}"#;
        let (text, _, n) = c.redact(body.as_bytes(), body.len() as u64);
        assert!(
            !text.contains("ada") && !text.contains("private words") && !text.contains("EMP-123456"),
            "{text}"
        );
        assert_eq!(n, 3);
        // A key that starts before the 64-byte cut and ends after it is removed whole.
        let c = capture("{maxBytes: 64}");
        let body = format!("{}sk-proj-{}", "x".repeat(50), "k".repeat(40));
        let (text, truncated, n) = c.redact(body.as_bytes(), body.len() as u64);
        assert!(truncated && n == 1, "{text}");
        assert!(!text.contains("sk-proj") && !text.contains("kkk"), "{text}");
        assert!(text.len() <= 64);
    }

    #[test]
    fn bad_settings_are_refused_with_their_path() {
        let err = |yaml: &str| {
            let raw: RawCapture = serde_yaml_ng::from_str(yaml).unwrap();
            capture_from_raw("routes[2].capture", raw).unwrap_err()
        };
        assert_eq!(
            err(r#"{redact: {patterns: ["ok", "(unclosed"]}}"#).0,
            "routes[2].capture.redact.patterns[1]"
        );
        assert_eq!(
            err(r#"{redact: {patterns: ["a*"]}}"#).0,
            "routes[2].capture.redact.patterns[0]"
        );
        assert_eq!(err("{sampleRate: 1.5}").0, "routes[2].capture.sampleRate");
        assert_eq!(err("{maxBytes: 0}").0, "routes[2].capture.maxBytes");
        assert_eq!(
            err(r#"{redact: {jsonPointers: ["user"]}}"#).0,
            "routes[2].capture.redact.jsonPointers[0]"
        );
        let raw: RawCapture = serde_yaml_ng::from_str("{enabled: false}").unwrap();
        assert!(capture_from_raw("x", raw).unwrap().is_none());
    }

    #[test]
    fn the_response_kept_is_bounded_and_sampling_holds() {
        let c = Arc::new(capture("{maxBytes: 100}"));
        let mut cap = Captured::new(c.clone(), Some(Bytes::from_static(b"{\"a\":1}")));
        for _ in 0..10_000 {
            cap.response(&[b'y'; 1000]);
        }
        assert!(cap.response.len() <= 100 + MARGIN);
        let content = cap.finish();
        assert_eq!(content.response.as_deref().map(str::len), Some(100));
        assert!(content.response_truncated && !content.request_truncated);
        assert_eq!(content.request.as_deref(), Some("{\"a\":1}"));
        let none = capture("{sampleRate: 0}");
        assert!((0..1000).all(|_| !none.sampled()));
        let half = capture("{sampleRate: 0.5}");
        let n = (0..10_000).filter(|_| half.sampled()).count();
        assert!((4_000..6_000).contains(&n), "{n}");
    }
}
