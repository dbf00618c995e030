//! The audit record as its JSON line, written field by field.
//!
//! Every request writes one, so it is on the hot path: serde_json spends a few hundred
//! instructions per member escaping its (constant) name and going through the `Serializer`
//! calls, a fifth of the proxy's own work per request. Here member names are written as the
//! constants they are and a string value is copied as is unless it holds a byte JSON must
//! escape. The line is byte for byte what `serde_json::to_writer(&record)` writes (the
//! `Serialize` derive stays the definition, and the tests compare the two on every shape), so
//! readers see no difference. A field added to `AuditRecord` must be added here too: the
//! tests fail until it is.

use serde::Serialize;

use super::audit::{
    Attempt, AuditRecord, AuditWorkload, CredentialRef, Destination, GatewayInfo, LimitState, Policy, PriceRef, Tokens,
};

impl AuditRecord {
    /// Appends the record's JSON (no newline) to `out`.
    pub fn write_line(&self, out: &mut Vec<u8>) {
        let mut o = Obj::open(out);
        o.str("record", &self.record);
        o.u64("schema_version", u64::from(self.schema_version));
        o.str("time", &self.time);
        o.str("trace_id", &self.trace_id);
        o.str("span_id", &self.span_id);
        o.str("request_id", &self.request_id);
        self.gateway.write(o.key("gateway"));
        self.workload.write(o.key("workload"));
        self.destination.write(o.key("destination"));
        o.opt_str("provider", self.provider.as_deref());
        o.str("schema", &self.schema);
        o.str("operation", &self.operation);
        o.str("method", &self.method);
        o.str("path", &self.path);
        o.opt_str("route", self.route.as_deref());
        o.str("rule", &self.rule);
        o.opt_str("backend", self.backend.as_deref());
        match &self.credential {
            Some(c) => c.write(o.key("credential")),
            None => o.null("credential"),
        }
        o.opt_str("model", self.model.as_deref());
        o.opt_str("served_model", self.served_model.as_deref());
        o.opt_u64("timeout_ms", self.timeout_ms);
        o.array("attempts", &self.attempts, Attempt::write);
        o.str("translation", &self.translation);
        o.bool("stream", self.stream);
        o.bool("usage_requested_by_gateway", self.usage_requested_by_gateway);
        match &self.tokens {
            Some(t) => t.write(o.key("tokens")),
            None => o.null("tokens"),
        }
        o.serde("units", &self.units);
        o.serde("mcp", &self.mcp);
        o.str("usage_status", &self.usage_status);
        o.opt_str("cost_usd", self.cost_usd.as_deref());
        o.opt_u64("cost_nano_usd", self.cost_nano_usd);
        o.serde("latency_ms", &self.latency_ms);
        o.serde("ttft_ms", &self.ttft_ms);
        o.u64("status", u64::from(self.status));
        o.opt_str("error", self.error.as_deref());
        o.opt_str("error_side", self.error_side.as_deref());
        o.opt_str("error_reason", self.error_reason.as_deref());
        o.u64("response_bytes", self.response_bytes);
        o.bool("complete", self.complete);
        o.serde("limit", &self.limit);
        self.policy.write(o.key("policy"));
        match &self.content {
            Some(c) => o.serde("content", c),
            None => o.null("content"),
        }
        o.close();
    }
}

impl GatewayInfo {
    fn write(&self, out: &mut Vec<u8>) {
        let mut o = Obj::open(out);
        o.str("version", &self.version);
        o.str("build", &self.build);
        o.str("node", &self.node);
        o.u64("config_generation", self.config_generation);
        o.str("config_sha256", &self.config_sha256);
        o.close();
    }
}

impl Policy {
    fn write(&self, out: &mut Vec<u8>) {
        let mut o = Obj::open(out);
        {
            let t = &self.timeouts;
            let mut t_o = Obj::open(o.key("timeouts"));
            t_o.opt_u64("first_byte_ms", t.first_byte_ms);
            t_o.opt_u64("idle_ms", t.idle_ms);
            t_o.opt_u64("total_ms", t.total_ms);
            t_o.close();
        }
        {
            let r = &self.retry;
            let mut r_o = Obj::open(o.key("retry"));
            r_o.u64("attempts", u64::from(r.attempts));
            r_o.array("on", &r.on, |c, out| string(out, c));
            r_o.array("statuses", &r.statuses, |s, out| {
                out.extend_from_slice(itoa::Buffer::new().format(*s).as_bytes())
            });
            r_o.close();
        }
        o.array("plan", &self.plan, |b, out| string(out, b));
        o.array("limits", &self.limits, LimitState::write);
        match &self.price {
            Some(p) => p.write(o.key("price")),
            None => o.null("price"),
        }
        o.close();
    }
}

impl LimitState {
    fn write(&self, out: &mut Vec<u8>) {
        let mut o = Obj::open(out);
        o.str("name", &self.name);
        o.str("kind", self.kind.as_str());
        o.str("window", &self.window);
        o.u64("window_left_s", self.window_left_s);
        o.u64("max", self.max);
        o.u64("used", self.used);
        o.u64("remaining", self.remaining);
        o.close();
    }
}

impl PriceRef {
    fn write(&self, out: &mut Vec<u8>) {
        let mut o = Obj::open(out);
        o.str("entry", &self.entry);
        {
            let p = &self.nano_usd_per_token;
            let mut p_o = Obj::open(o.key("nano_usd_per_token"));
            p_o.u64("input", p.input);
            p_o.u64("output", p.output);
            p_o.u64("cached_input", p.cached_input);
            p_o.u64("cache_write", p.cache_write);
            p_o.u64("reasoning", p.reasoning);
            p_o.u64("audio_input", p.audio_input);
            p_o.u64("image_input", p.image_input);
            p_o.close();
        }
        // Rare (audio and image models): serde's writer is fast enough.
        o.serde("nano_usd_per_unit", &self.nano_usd_per_unit);
        o.str("source", &self.source);
        o.opt_str("as_of", self.as_of.as_deref());
        o.close();
    }
}

impl AuditWorkload {
    fn write(&self, out: &mut Vec<u8>) {
        let mut o = Obj::open(out);
        o.u64("pid", u64::from(self.pid));
        o.u64("tgid", u64::from(self.tgid));
        o.u64("uid", u64::from(self.uid));
        o.u64("gid", u64::from(self.gid));
        o.str("comm", &self.comm);
        o.opt_str("exe", self.exe.as_deref());
        o.u64("cgroup_id", self.cgroup_id);
        o.opt_str("cgroup", self.cgroup.as_deref());
        o.opt_str("container_id", self.container_id.as_deref());
        o.opt_str("container_runtime", self.container_runtime.as_deref());
        o.opt_str("pod_uid", self.pod_uid.as_deref());
        o.opt_str("pod", self.pod.as_deref());
        o.opt_str("namespace", self.namespace.as_deref());
        o.opt_str("container", self.container.as_deref());
        o.serde("pod_labels", &self.pod_labels);
        match &self.owner {
            Some(owner) => {
                let mut w = Obj::open(o.key("owner"));
                w.str("kind", &owner.kind);
                w.str("name", &owner.name);
                w.close();
            }
            None => o.null("owner"),
        }
        o.opt_str("pod_error", self.pod_error.as_deref());
        o.opt_str("systemd_unit", self.systemd_unit.as_deref());
        o.bool("host_netns", self.host_netns);
        o.close();
    }
}

impl Destination {
    fn write(&self, out: &mut Vec<u8>) {
        let mut o = Obj::open(out);
        o.str("ip", &self.ip);
        o.u64("port", u64::from(self.port));
        o.opt_str("sni", self.sni.as_deref());
        o.bool("tls", self.tls);
        o.opt_str("host", self.host.as_deref());
        o.array("claimed_by", &self.claimed_by, |c, out| string(out, c));
        o.close();
    }
}

impl CredentialRef {
    fn write(&self, out: &mut Vec<u8>) {
        let mut o = Obj::open(out);
        o.str("name", &self.name);
        o.str("fingerprint", &self.fingerprint);
        o.close();
    }
}

impl Attempt {
    fn write(&self, out: &mut Vec<u8>) {
        let mut o = Obj::open(out);
        o.str("backend", &self.backend);
        o.serde("status", &self.status);
        o.opt_str("error", self.error.as_deref());
        o.serde("duration_ms", &self.duration_ms);
        o.close();
    }
}

impl Tokens {
    fn write(&self, out: &mut Vec<u8>) {
        let mut o = Obj::open(out);
        o.u64("input", self.input);
        o.u64("output", self.output);
        o.u64("cached_input", self.cached_input);
        o.u64("cache_write", self.cache_write);
        o.u64("reasoning", self.reasoning);
        o.u64("total", self.total);
        o.u64("audio_input", self.audio_input);
        o.u64("image_input", self.image_input);
        o.close();
    }
}

/// A JSON object being written: members are added in order, names are trusted constants.
struct Obj<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Obj<'a> {
    #[inline]
    fn open(out: &'a mut Vec<u8>) -> Obj<'a> {
        out.push(b'{');
        Obj { out, first: true }
    }

    #[inline]
    fn close(self) {
        self.out.push(b'}');
    }

    /// Writes `"name":` and returns the output for the value.
    #[inline]
    fn key(&mut self, name: &'static str) -> &mut Vec<u8> {
        debug_assert!(!needs_escape(name));
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    #[inline]
    fn str(&mut self, name: &'static str, v: &str) {
        string(self.key(name), v);
    }

    #[inline]
    fn opt_str(&mut self, name: &'static str, v: Option<&str>) {
        match v {
            Some(v) => self.str(name, v),
            None => self.null(name),
        }
    }

    #[inline]
    fn u64(&mut self, name: &'static str, v: u64) {
        let mut b = itoa::Buffer::new();
        self.key(name).extend_from_slice(b.format(v).as_bytes());
    }

    #[inline]
    fn opt_u64(&mut self, name: &'static str, v: Option<u64>) {
        match v {
            Some(v) => self.u64(name, v),
            None => self.null(name),
        }
    }

    #[inline]
    fn bool(&mut self, name: &'static str, v: bool) {
        let v: &[u8] = if v { b"true" } else { b"false" };
        self.key(name).extend_from_slice(v);
    }

    #[inline]
    fn null(&mut self, name: &'static str) {
        self.key(name).extend_from_slice(b"null");
    }

    /// `items` as a JSON array, each written by `write`.
    fn array<T>(&mut self, name: &'static str, items: &[T], write: impl Fn(&T, &mut Vec<u8>)) {
        let out = self.key(name);
        out.push(b'[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write(item, out);
        }
        out.push(b']');
    }

    /// A value written by serde_json (numbers with fractions, rare nested members).
    fn serde(&mut self, name: &'static str, v: &impl Serialize) {
        let out = self.key(name);
        if serde_json::to_writer(&mut *out, v).is_err() {
            // Only maps with non-string keys fail, and the record has none.
            out.extend_from_slice(b"null");
        }
    }
}

/// Whether JSON needs `s` escaped (the bytes serde_json escapes). Sixteen bytes at a time
/// without branching per byte, which the compiler turns into vector instructions.
fn needs_escape(s: &str) -> bool {
    let escaped = |b: u8| (b < 0x20) | (b == b'"') | (b == b'\\');
    let mut chunks = s.as_bytes().chunks_exact(16);
    for chunk in &mut chunks {
        if chunk.iter().fold(false, |any, &b| any | escaped(b)) {
            return true;
        }
    }
    chunks.remainder().iter().any(|&b| escaped(b))
}

/// `s` as a JSON string.
#[inline]
fn string(out: &mut Vec<u8>, s: &str) {
    if needs_escape(s) {
        // Writing a str to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    } else {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, sync::Arc};

    use super::*;
    use crate::accounting::audit::{LimitDecision, LimitKind, LimitOutcome, Retry, Timeouts, TokenPrices};

    fn line(a: &AuditRecord) -> String {
        let mut out = Vec::new();
        a.write_line(&mut out);
        String::from_utf8(out).unwrap()
    }

    fn same_as_serde(a: &AuditRecord) {
        assert_eq!(line(a), serde_json::to_string(a).unwrap());
    }

    #[test]
    fn an_empty_record_is_what_serde_writes() {
        same_as_serde(&AuditRecord::default());
    }

    #[test]
    fn a_full_record_is_what_serde_writes() {
        let a = AuditRecord {
            record: "request".into(),
            schema_version: 1,
            time: "2026-11-28T06:00:00.000001Z".into(),
            trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
            span_id: "b7ad6b7169203331".into(),
            request_id: "7-1".into(),
            gateway: Arc::new(GatewayInfo {
                version: "0.1.0".into(),
                build: "abc\"def".into(),
                node: "node-1".into(),
                config_generation: 3,
                config_sha256: "00ff".into(),
            }),
            workload: full_workload(),
            destination: Destination {
                ip: "2001:db8::1".into(),
                port: 443,
                sni: Some("api.openai.com".into()),
                tls: true,
                host: Some("api.openai.com".into()),
                claimed_by: vec!["openai".into(), "az\\ure".into()],
            },
            provider: Some("openai".into()),
            schema: "openai".into(),
            operation: "chat".into(),
            method: "POST".into(),
            path: "/v1/chat/completions?x=\"1\"".into(),
            route: Some("r".into()),
            rule: "route".into(),
            backend: Some("b".into()),
            credential: Some(CredentialRef {
                name: "openai-key".into(),
                fingerprint: "sha256:ab12".into(),
            }),
            model: Some("gpt-4o-mini".into()),
            served_model: Some("gpt-4o-mini-2024-07-18".into()),
            timeout_ms: Some(30_000),
            attempts: vec![
                Attempt {
                    backend: "a".into(),
                    status: Some(503),
                    error: Some("upstream said \"no\"\n".into()),
                    duration_ms: 1.25,
                },
                Attempt {
                    backend: "b".into(),
                    status: None,
                    error: None,
                    duration_ms: 0.1 + 0.2,
                },
            ],
            translation: "openai_to_anthropic".into(),
            stream: true,
            usage_requested_by_gateway: true,
            tokens: Some(Tokens {
                input: 12,
                output: 34,
                cached_input: 5,
                cache_write: 6,
                reasoning: 7,
                total: 46,
                audio_input: 1,
                image_input: 2,
            }),
            units: Some(crate::accounting::audit::Units {
                audio_seconds: Some(8.47),
                characters: 3,
                images: 2,
                image_tier: Some("hd/1024x1792".into()),
            }),
            mcp: Some(crate::accounting::audit::McpRecord {
                session: Some("s-1".into()),
                message: crate::mcp::Message {
                    kind: "request".into(),
                    method: Some("tools/call".into()),
                    id: Some("\"a\"".into()),
                    tool: Some("add".into()),
                    arguments_bytes: Some(13),
                    ..Default::default()
                },
                outcome: "denied".into(),
                error_code: Some(-32001),
                ..Default::default()
            }),
            usage_status: "partial".into(),
            cost_usd: Some("0.000123".into()),
            cost_nano_usd: Some(123_000),
            latency_ms: 12.345678,
            ttft_ms: Some(f64::NAN),
            status: 200,
            error: Some("é ☃ \u{7f}".into()),
            error_side: Some("upstream".into()),
            error_reason: Some("timeout".into()),
            response_bytes: 1 << 40,
            complete: false,
            limit: Some(LimitDecision {
                outcome: LimitOutcome::StoreUnavailable,
                limit: Some("team".into()),
                kind: Some(LimitKind::Budget),
                retry_after_s: Some(60),
                counted: vec!["team".into(), "user".into()],
                degraded: true,
            }),
            policy: full_policy(),
            content: Some(crate::accounting::audit::Content {
                request: Some("{\"x\":\"[REDACTED:email]\"}".into()),
                request_truncated: false,
                response: None,
                response_truncated: true,
                redactions: 1,
            }),
        };
        same_as_serde(&a);
        // And it reads back.
        let back: AuditRecord = serde_json::from_str(&line(&a)).unwrap();
        assert_eq!(back.workload.comm, a.workload.comm);
        assert_eq!(back.attempts[0].error, a.attempts[0].error);
    }

    /// A workload with every member set, escapes included.
    fn full_workload() -> AuditWorkload {
        let labels: BTreeMap<String, String> = [("app".into(), "chat \"bot\"".into())].into();
        AuditWorkload {
            pid: 4242,
            tgid: 4240,
            uid: 1000,
            gid: 1000,
            comm: "py\tthon\u{1}".into(),
            exe: Some("/usr/bin/python3".into()),
            cgroup_id: u64::MAX,
            cgroup: Some("/kubepods/burstable/pod1/abc".into()),
            container_id: Some("abc".into()),
            container_runtime: Some("containerd".into()),
            pod_uid: Some("pod1".into()),
            pod: Some("chat-0".into()),
            namespace: Some("ai".into()),
            container: Some("app".into()),
            pod_labels: Some(Arc::new(labels)),
            owner: Some(crate::identity::cri::Owner {
                kind: "Deployment".into(),
                name: "chat\"x".into(),
            }),
            pod_error: None,
            systemd_unit: Some("chat.service".into()),
            host_netns: true,
        }
    }

    /// A policy with every member set, escapes included.
    fn full_policy() -> Policy {
        Policy {
            timeouts: Timeouts {
                first_byte_ms: Some(30_000),
                idle_ms: None,
                total_ms: Some(u64::MAX),
            },
            retry: Retry {
                attempts: 3,
                on: vec!["connect".into(), "5xx".into()],
                statuses: vec![409, 418],
            },
            plan: vec!["a".into(), "b\n".into()],
            limits: vec![
                LimitState {
                    name: "team".into(),
                    kind: LimitKind::Budget,
                    window: "day".into(),
                    window_left_s: 3600,
                    max: 5_000_000_000,
                    used: 123_000,
                    remaining: 4_999_877_000,
                },
                LimitState {
                    name: "rpm\"".into(),
                    kind: LimitKind::Requests,
                    window: "minute".into(),
                    window_left_s: 0,
                    max: 1,
                    used: 2,
                    remaining: 0,
                },
            ],
            price: Some(PriceRef {
                entry: "gpt-4o-mini".into(),
                nano_usd_per_token: TokenPrices {
                    input: 150,
                    output: 600,
                    cached_input: 75,
                    cache_write: 150,
                    reasoning: 600,
                    audio_input: 150,
                    image_input: 150,
                },
                nano_usd_per_unit: Some(crate::accounting::audit::UnitPrices {
                    character: 15_000,
                    minute: 6_000_000,
                    image: [("hd/1024x1792".to_string(), 120_000_000)].into(),
                }),
                source: "table".into(),
                as_of: Some("2025-10-01".into()),
            }),
        }
    }

    #[test]
    fn every_escape_matches_serde() {
        let mut cases: Vec<String> = [
            "",
            "plain",
            "\"",
            "\\",
            "\n\r\t",
            "\u{0}\u{1f}",
            "a\"b\\c",
            "ünï☃",
            "</script>",
        ]
        .map(String::from)
        .into();
        // Every position around the 16-byte blocks the scan reads.
        for len in [15, 16, 17, 31, 32, 33, 47] {
            for at in 0..len {
                for c in ['"', '\\', '\n', '\u{1f}'] {
                    let mut s: Vec<char> = "x".repeat(len).chars().collect();
                    s[at] = c;
                    cases.push(s.into_iter().collect());
                }
            }
            cases.push("y".repeat(len));
        }
        for s in &cases {
            let mut out = Vec::new();
            string(&mut out, s);
            assert_eq!(out, serde_json::to_vec(s).unwrap(), "{s:?}");
        }
    }
}
