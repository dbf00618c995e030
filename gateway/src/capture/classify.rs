//! What a captured connection speaks, decided from its first bytes without consuming them:
//! a TLS ClientHello (and its SNI), plaintext HTTP/1 or the HTTP/2 preface, or something else.
//!
//! The ClientHello parser follows RFC 8446 §4.1.2 and RFC 6066 §3 (server_name). It accepts a
//! handshake message fragmented over several TLS records and over several TCP segments: the
//! caller peeks again with more bytes while [`classify`] answers [`Verdict::NeedMore`].

/// Largest ClientHello we wait for (a post-quantum key share is ~1.2 KiB; 16 KiB is the record
/// limit, and a hello spanning more than that is not worth waiting for).
pub const MAX_HELLO: usize = 16 * 1024 + 5 * 4;

const HANDSHAKE: u8 = 0x16;
const CLIENT_HELLO: u8 = 0x01;
const EXT_SERVER_NAME: u16 = 0x0000;
const EXT_ALPN: u16 = 0x0010;
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";
const METHODS: [&[u8]; 9] = [
    b"GET ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"HEAD ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
];

/// What the first bytes say.
#[derive(Debug, Eq, PartialEq)]
pub enum Verdict {
    /// A complete ClientHello.
    Tls(ClientHello),
    /// Plaintext HTTP/1.x or HTTP/2 with prior knowledge.
    Http,
    /// Not enough bytes yet to tell.
    NeedMore,
    /// Anything else (including a malformed ClientHello): relay it as bytes.
    Other,
}

/// What we read from a ClientHello.
#[derive(Debug, Default, Eq, PartialEq)]
pub struct ClientHello {
    /// The `server_name` host name, lowercased, if any.
    pub sni: Option<String>,
    /// ALPN protocols offered, in order.
    pub alpn: Vec<String>,
}

/// Classifies the bytes peeked so far.
pub fn classify(buf: &[u8]) -> Verdict {
    let Some(&first) = buf.first() else {
        return Verdict::NeedMore;
    };
    if first == HANDSHAKE {
        return match client_hello(buf) {
            Ok(Some(hello)) => Verdict::Tls(hello),
            Ok(None) if buf.len() < MAX_HELLO => Verdict::NeedMore,
            Ok(None) | Err(()) => Verdict::Other,
        };
    }
    let is_prefix_of = |token: &[u8]| {
        let n = buf.len().min(token.len());
        buf[..n] == token[..n]
    };
    if METHODS.iter().any(|m| buf.len() >= m.len() && buf.starts_with(m))
        || (buf.len() >= H2_PREFACE.len() && buf.starts_with(H2_PREFACE))
    {
        return Verdict::Http;
    }
    if METHODS.iter().any(|m| is_prefix_of(m)) || is_prefix_of(H2_PREFACE) {
        return Verdict::NeedMore;
    }
    Verdict::Other
}

/// `Ok(None)`: incomplete; `Err(())`: not a well-formed ClientHello.
fn client_hello(buf: &[u8]) -> Result<Option<ClientHello>, ()> {
    // Reassemble the handshake message from as many records as it spans.
    let mut handshake = Vec::new();
    let mut rest = buf;
    loop {
        if rest.len() < 5 {
            return Ok(None);
        }
        if rest[0] != HANDSHAKE || rest[1] != 0x03 {
            return Err(());
        }
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if len == 0 || len > 16_384 {
            return Err(());
        }
        if rest.len() < 5 + len {
            return Ok(None);
        }
        handshake.extend_from_slice(&rest[5..5 + len]);
        rest = &rest[5 + len..];
        if handshake.len() >= 4 {
            if handshake[0] != CLIENT_HELLO {
                return Err(());
            }
            let msg_len =
                (usize::from(handshake[1]) << 16) | (usize::from(handshake[2]) << 8) | usize::from(handshake[3]);
            if msg_len > MAX_HELLO {
                return Err(());
            }
            if handshake.len() >= 4 + msg_len {
                return parse_hello(&handshake[4..4 + msg_len]).map(Some);
            }
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ()> {
        if self.0.len() < n {
            return Err(());
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<usize, ()> {
        Ok(usize::from(self.take(1)?[0]))
    }
    fn u16(&mut self) -> Result<usize, ()> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
    fn vec8(&mut self) -> Result<&'a [u8], ()> {
        let n = self.u8()?;
        self.take(n)
    }
    fn vec16(&mut self) -> Result<&'a [u8], ()> {
        let n = self.u16()?;
        self.take(n)
    }
}

fn parse_hello(body: &[u8]) -> Result<ClientHello, ()> {
    let mut r = Reader(body);
    r.take(2)?; // legacy_version
    r.take(32)?; // random
    r.vec8()?; // legacy_session_id
    r.vec16()?; // cipher_suites
    r.vec8()?; // legacy_compression_methods
    let mut hello = ClientHello::default();
    if r.0.is_empty() {
        return Ok(hello); // no extensions at all
    }
    let mut exts = Reader(r.vec16()?);
    while !exts.0.is_empty() {
        let kind = exts.u16()? as u16;
        let data = exts.vec16()?;
        match kind {
            EXT_SERVER_NAME => {
                let mut list = Reader(Reader(data).vec16()?);
                while !list.0.is_empty() {
                    let name_type = list.u8()?;
                    let name = list.vec16()?;
                    if name_type == 0 {
                        let name = std::str::from_utf8(name).map_err(|_| ())?;
                        hello.sni = Some(name.trim_end_matches('.').to_ascii_lowercase());
                    }
                }
            }
            EXT_ALPN => {
                let mut list = Reader(Reader(data).vec16()?);
                while !list.0.is_empty() {
                    let proto = list.vec8()?;
                    hello.alpn.push(String::from_utf8_lossy(proto).into_owned());
                }
            }
            _ => {}
        }
    }
    Ok(hello)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello as rustls writes it for `api.openai.com` with ALPN h2 + http/1.1.
    fn real_hello(sni: &str) -> Vec<u8> {
        use std::sync::Arc;
        let roots = rustls::RootCertStore::empty();
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn a_real_client_hello_yields_sni_and_alpn() {
        let hello = real_hello("api.openai.com");
        let Verdict::Tls(h) = classify(&hello) else {
            panic!("not TLS")
        };
        assert_eq!(h.sni.as_deref(), Some("api.openai.com"));
        assert_eq!(h.alpn, vec!["h2", "http/1.1"]);
    }

    #[test]
    fn a_hello_split_across_segments_asks_for_more_at_every_cut() {
        let hello = real_hello("api.anthropic.com");
        for cut in 0..hello.len() {
            assert_eq!(classify(&hello[..cut]), Verdict::NeedMore, "cut at {cut}");
        }
        assert!(matches!(classify(&hello), Verdict::Tls(_)));
    }

    #[test]
    fn a_hello_fragmented_over_two_records_is_reassembled() {
        let hello = real_hello("api.openai.com");
        let body = &hello[5..];
        let (a, b) = body.split_at(body.len() / 2);
        let mut two = Vec::new();
        for part in [a, b] {
            two.extend_from_slice(&[0x16, 0x03, 0x01]);
            two.extend_from_slice(&(part.len() as u16).to_be_bytes());
            two.extend_from_slice(part);
        }
        let Verdict::Tls(h) = classify(&two) else {
            panic!("not reassembled")
        };
        assert_eq!(h.sni.as_deref(), Some("api.openai.com"));
    }

    #[test]
    fn plaintext_http_and_h2_preface_are_recognised() {
        assert_eq!(classify(b"POST /v1/chat/completions HTTP/1.1\r\n"), Verdict::Http);
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Verdict::Http);
        assert_eq!(classify(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), Verdict::Http);
        assert_eq!(classify(b"PO"), Verdict::NeedMore);
        assert_eq!(classify(b"PRI * HT"), Verdict::NeedMore);
    }

    #[test]
    fn garbage_is_other_and_never_panics() {
        assert_eq!(classify(b"\x00\x01\x02garbage"), Verdict::Other);
        assert_eq!(classify(b"SSH-2.0-OpenSSH_9.2\r\n"), Verdict::Other);
        // a handshake record that is not a ClientHello
        assert_eq!(
            classify(&[0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00]),
            Verdict::Other
        );
        // truncated extensions inside a complete record
        let mut hello = real_hello("x.example");
        let n = hello.len();
        hello.truncate(n - 3);
        let len = (hello.len() - 5) as u16;
        hello[3..5].copy_from_slice(&len.to_be_bytes());
        let msg_len = hello.len() - 9;
        hello[6] = (msg_len >> 16) as u8;
        hello[7] = (msg_len >> 8) as u8;
        hello[8] = msg_len as u8;
        assert_eq!(classify(&hello), Verdict::Other);
        // every prefix and every single-byte corruption: no panic
        let good = real_hello("api.openai.com");
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0xff;
            let _ = classify(&bad);
        }
    }
}
