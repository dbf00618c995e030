//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): read the client's
//! `traceparent` or start a trace, give Tollgate's request its own span, and pass
//! `traceparent` on upstream so the provider call joins the same trace.

use http::HeaderMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: u128,
    /// Tollgate's span for this request.
    pub span_id: u64,
    /// The client's span, when it sent a `traceparent`.
    pub parent_span_id: Option<u64>,
    pub sampled: bool,
}

fn nonzero_u128() -> u128 {
    loop {
        let v = fastrand::u128(..);
        if v != 0 {
            return v;
        }
    }
}

fn nonzero_u64() -> u64 {
    loop {
        let v = fastrand::u64(..);
        if v != 0 {
            return v;
        }
    }
}

/// Parses `00-<32 hex>-<16 hex>-<2 hex>`; all-zero ids and version `ff` are invalid.
pub fn parse_traceparent(value: &str) -> Option<(u128, u64, bool)> {
    let parts: Vec<&str> = value.trim().split('-').collect();
    if parts.len() < 4 || parts[0].len() != 2 || parts[1].len() != 32 || parts[2].len() != 16 || parts[3].len() != 2 {
        return None;
    }
    let lower_hex = |s: &str| s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !parts[..4].iter().all(|p| lower_hex(p)) || parts[0] == "ff" || (parts[0] == "00" && parts.len() != 4) {
        return None;
    }
    let trace = u128::from_str_radix(parts[1], 16).ok().filter(|t| *t != 0)?;
    let span = u64::from_str_radix(parts[2], 16).ok().filter(|s| *s != 0)?;
    let flags = u8::from_str_radix(parts[3], 16).ok()?;
    Some((trace, span, flags & 1 == 1))
}

impl TraceContext {
    /// Joins the client's trace, or starts a new one (sampled).
    pub fn from_headers(headers: &HeaderMap) -> TraceContext {
        let parsed = headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_traceparent);
        match parsed {
            Some((trace_id, parent, sampled)) => TraceContext {
                trace_id,
                span_id: nonzero_u64(),
                parent_span_id: Some(parent),
                sampled,
            },
            None => TraceContext {
                trace_id: nonzero_u128(),
                span_id: nonzero_u64(),
                parent_span_id: None,
                sampled: true,
            },
        }
    }

    pub fn trace_id_hex(&self) -> String {
        hex(self.trace_id, 32)
    }

    pub fn span_id_hex(&self) -> String {
        hex(u128::from(self.span_id), 16)
    }

    /// The header for the upstream request: same trace, Tollgate's span as parent.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        )
    }
}

/// The low `digits` hex digits of `v`, lower case, zero-padded (`format!("{v:032x}")` without
/// the formatting machinery: every request writes two of these).
fn hex(v: u128, digits: usize) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    (0..digits)
        .rev()
        .map(|i| char::from(HEX[((v >> (4 * i)) & 0xf) as usize]))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_zero_padded_lower_hex() {
        for v in [
            0u128,
            1,
            0xf,
            0xabcdef,
            u128::from(u64::MAX),
            u128::MAX,
            0x0af7651916cd43dd8448eb211c80319c,
        ] {
            assert_eq!(super::hex(v, 32), format!("{v:032x}"));
            let low = v & u128::from(u64::MAX);
            assert_eq!(super::hex(low, 16), format!("{low:016x}"));
        }
    }

    use super::*;

    #[test]
    fn a_client_trace_is_joined_and_propagated() {
        let mut h = HeaderMap::new();
        h.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        let t = TraceContext::from_headers(&h);
        assert_eq!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.parent_span_id, Some(0x00f0_67aa_0ba9_02b7));
        let up = t.traceparent();
        assert!(up.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(!up.contains("00f067aa0ba902b7"), "our own span is the upstream parent");
        assert!(up.ends_with("-01"));
    }

    #[test]
    fn invalid_traceparents_start_a_new_trace() {
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "garbage",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad}");
        }
        let t = TraceContext::from_headers(&HeaderMap::new());
        assert_ne!(t.trace_id, 0);
        assert_eq!(t.parent_span_id, None);
        assert_eq!(t.traceparent().len(), 55);
    }
}
