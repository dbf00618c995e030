//! The AWS event-stream framing of Bedrock's `ConverseStream` answers
//! (`application/vnd.amazon.eventstream`): each message is
//! `total length (u32) | headers length (u32) | prelude CRC32 | headers | payload | message CRC32`,
//! big-endian, CRC32 (IEEE) over the bytes before it. Headers are typed; Bedrock uses strings
//! (`:event-type`, `:message-type`, `:exception-type`, `:content-type`).

use bytes::{Buf, Bytes, BytesMut};

/// Largest message accepted (Bedrock's own limit is far below this).
pub const MAX_MESSAGE: usize = 1 << 20;

/// One decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `:message-type`: `event` or `exception`.
    pub message_type: String,
    /// `:event-type` (events) or `:exception-type` (exceptions).
    pub event_type: String,
    pub payload: Bytes,
}

/// Why a stream cannot be decoded; the stream is then given up.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("event-stream message of {0} bytes is out of bounds")]
    Length(usize),
    #[error("event-stream prelude CRC mismatch")]
    PreludeCrc,
    #[error("event-stream message CRC mismatch")]
    MessageCrc,
    #[error("event-stream header is malformed")]
    Header,
}

/// Cuts a byte stream into messages, whatever the read boundaries.
#[derive(Default)]
pub struct Decoder {
    buf: BytesMut,
    failed: bool,
}

impl Decoder {
    /// Feeds bytes; returns the messages completed by them. After an error, nothing more.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Message>, Error> {
        if self.failed {
            return Ok(Vec::new());
        }
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            match self.next() {
                Ok(Some(m)) => out.push(m),
                Ok(None) => return Ok(out),
                Err(e) => {
                    self.failed = true;
                    return Err(e);
                }
            }
        }
    }

    fn next(&mut self) -> Result<Option<Message>, Error> {
        if self.buf.len() < 12 {
            return Ok(None);
        }
        let total = u32::from_be_bytes(self.buf[0..4].try_into().unwrap()) as usize;
        let headers_len = u32::from_be_bytes(self.buf[4..8].try_into().unwrap()) as usize;
        if !(16..=MAX_MESSAGE).contains(&total) || headers_len > total - 16 {
            return Err(Error::Length(total));
        }
        if crc32fast::hash(&self.buf[0..8]) != u32::from_be_bytes(self.buf[8..12].try_into().unwrap()) {
            return Err(Error::PreludeCrc);
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        let msg = self.buf.split_to(total).freeze();
        if crc32fast::hash(&msg[..total - 4]) != u32::from_be_bytes(msg[total - 4..].try_into().unwrap()) {
            return Err(Error::MessageCrc);
        }
        let mut headers = msg.slice(12..12 + headers_len);
        let payload = msg.slice(12 + headers_len..total - 4);
        let (mut message_type, mut event_type) = (String::new(), String::new());
        while headers.has_remaining() {
            let name_len = headers.get_u8() as usize;
            if headers.remaining() < name_len + 1 {
                return Err(Error::Header);
            }
            let name = headers.split_to(name_len);
            let value = match headers.get_u8() {
                0 | 1 => None, // bool true / false
                2 => skip(&mut headers, 1)?,
                3 => skip(&mut headers, 2)?,
                4 => skip(&mut headers, 4)?,
                5 | 8 => skip(&mut headers, 8)?, // i64, timestamp
                9 => skip(&mut headers, 16)?,    // uuid
                6 | 7 => {
                    if headers.remaining() < 2 {
                        return Err(Error::Header);
                    }
                    let len = headers.get_u16() as usize;
                    if headers.remaining() < len {
                        return Err(Error::Header);
                    }
                    Some(headers.split_to(len))
                }
                _ => return Err(Error::Header),
            };
            let text = || String::from_utf8_lossy(value.as_deref().unwrap_or_default()).into_owned();
            match &name[..] {
                b":message-type" => message_type = text(),
                b":event-type" | b":exception-type" => event_type = text(),
                _ => {}
            }
        }
        Ok(Some(Message {
            message_type,
            event_type,
            payload,
        }))
    }
}

fn skip(b: &mut Bytes, n: usize) -> Result<Option<Bytes>, Error> {
    if b.remaining() < n {
        return Err(Error::Header);
    }
    b.advance(n);
    Ok(None)
}

/// Encodes one message with string headers (tests and fakes; Tollgate only decodes).
pub fn encode(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    for (k, v) in headers {
        h.push(k.len() as u8);
        h.extend_from_slice(k.as_bytes());
        h.push(7);
        h.extend_from_slice(&(v.len() as u16).to_be_bytes());
        h.extend_from_slice(v.as_bytes());
    }
    let total = 12 + h.len() + payload.len() + 4;
    let mut m = Vec::with_capacity(total);
    m.extend_from_slice(&(total as u32).to_be_bytes());
    m.extend_from_slice(&(h.len() as u32).to_be_bytes());
    m.extend_from_slice(&crc32fast::hash(&m[0..8]).to_be_bytes());
    m.extend_from_slice(&h);
    m.extend_from_slice(payload);
    m.extend_from_slice(&crc32fast::hash(&m).to_be_bytes());
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(t: &str, payload: &str) -> Vec<u8> {
        encode(
            &[
                (":event-type", t),
                (":content-type", "application/json"),
                (":message-type", "event"),
            ],
            payload.as_bytes(),
        )
    }

    #[test]
    fn crc_is_ieee() {
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
    }

    /// The smallest message of the AWS event-stream spec's test vectors ("empty_message"):
    /// no headers, no payload.
    #[test]
    fn the_empty_message_vector() {
        let m = encode(&[], b"");
        assert_eq!(
            m,
            [0, 0, 0, 0x10, 0, 0, 0, 0, 0x05, 0xc2, 0x48, 0xeb, 0x7d, 0x98, 0xc8, 0xff]
        );
        let got = Decoder::default().feed(&m).unwrap();
        assert_eq!(got.len(), 1);
        assert!(got[0].payload.is_empty());
    }

    #[test]
    fn messages_come_out_whole_at_any_cut() {
        let mut stream = event("messageStart", r#"{"role":"assistant"}"#);
        stream.extend(event(
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"text":"hi"}}"#,
        ));
        stream.extend(encode(
            &[
                (":exception-type", "throttlingException"),
                (":message-type", "exception"),
            ],
            br#"{"message":"slow down"}"#,
        ));
        for step in 1..stream.len() {
            let mut d = Decoder::default();
            let mut got = Vec::new();
            for c in stream.chunks(step) {
                got.extend(d.feed(c).unwrap());
            }
            assert_eq!(got.len(), 3, "step {step}");
            assert_eq!(got[0].event_type, "messageStart");
            assert_eq!(&got[1].payload[..], br#"{"contentBlockIndex":0,"delta":{"text":"hi"}}"#);
            assert_eq!(
                (got[2].message_type.as_str(), got[2].event_type.as_str()),
                ("exception", "throttlingException")
            );
        }
    }

    #[test]
    fn corruption_is_an_error_never_a_panic() {
        let good = event("contentBlockDelta", r#"{"delta":{"text":"x"}}"#);
        for i in 0..good.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = good.clone();
                bad[i] ^= bit;
                let mut d = Decoder::default();
                let r = d.feed(&bad);
                // A flipped length may just wait for more bytes; anything decoded must be intact.
                if let Ok(msgs) = r {
                    assert!(msgs.is_empty(), "byte {i} bit {bit:#x} decoded: {msgs:?}");
                }
            }
        }
        assert_eq!(Decoder::default().feed(&[0xff; 16]), Err(Error::Length(0xffff_ffff)));
    }
}
