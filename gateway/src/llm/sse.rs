//! Incremental server-sent events splitting (<https://html.spec.whatwg.org/multipage/server-sent-events.html>):
//! bytes in, whole raw events out, with their `event` name and `data` joined. The raw bytes are
//! kept so that an event can be forwarded exactly as received (or dropped). The buffer is
//! bounded: an event larger than the limit turns the splitter off (`overflowed`), and the caller
//! then passes bytes through unparsed.

use bytes::{Bytes, BytesMut};

/// One event, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The bytes of the event including its terminating blank line.
    pub raw: Bytes,
    /// `event:` field, if any.
    pub name: Option<String>,
    /// `data:` lines joined with `\n`.
    pub data: String,
}

pub struct Splitter {
    buf: BytesMut,
    limit: usize,
    overflowed: bool,
    /// How far the pending bytes were scanned: each byte is looked at once, however the
    /// stream is cut (an event trickled a byte at a time costs linear time, not quadratic).
    scan: Scan,
}

/// Where the search for the end of the pending event resumes.
#[derive(Clone, Copy, Debug, Default)]
struct Scan {
    /// Next byte to look at.
    i: usize,
    /// Start of the line being scanned.
    line_start: usize,
}

impl Splitter {
    pub fn new(limit: usize) -> Splitter {
        Splitter {
            buf: BytesMut::new(),
            limit,
            overflowed: false,
            scan: Scan::default(),
        }
    }

    /// Whether an oversize event made the splitter give up.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// Bytes received but not yet part of a complete event.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// Takes whatever is pending (at the end of the stream).
    pub fn take_pending(&mut self) -> Bytes {
        self.scan = Scan::default();
        self.buf.split().freeze()
    }

    /// Feeds bytes; returns the events they complete.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Event> {
        if self.overflowed {
            return Vec::new();
        }
        self.buf.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(end) = event_end(&self.buf, &mut self.scan) {
            let raw = self.buf.split_to(end).freeze();
            events.push(parse_event(raw));
        }
        if self.buf.len() > self.limit {
            self.overflowed = true;
        }
        events
    }
}

/// Index just past the blank line that ends the first event, if complete. Resumes where the
/// last call stopped (`scan`), and resets it when an event ends.
fn event_end(buf: &[u8], scan: &mut Scan) -> Option<usize> {
    let Scan { mut i, mut line_start } = *scan;
    while i < buf.len() {
        let eol = match buf[i] {
            b'\n' => Some(i + 1),
            b'\r' if i + 1 < buf.len() && buf[i + 1] == b'\n' => Some(i + 2),
            // A lone \r at the end may be the first half of \r\n: wait for more.
            b'\r' if i + 1 == buf.len() => break,
            b'\r' => Some(i + 1),
            _ => None,
        };
        if let Some(next) = eol {
            if i == line_start {
                *scan = Scan::default();
                return Some(next); // an empty line: end of event
            }
            i = next;
            line_start = next;
        } else {
            i += 1;
        }
    }
    *scan = Scan { i, line_start };
    None
}

fn parse_event(raw: Bytes) -> Event {
    let text = String::from_utf8_lossy(&raw);
    let mut name = None;
    let mut data: Option<String> = None;
    for line in text.split(['\n', '\r']) {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => name = Some(value.to_string()),
            "data" => match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_string()),
            },
            _ => {}
        }
    }
    Event {
        raw,
        name,
        data: data.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_at_any_chunk_boundary_with_any_line_ending() {
        let stream = "event: message_start\ndata: {\"a\":1}\n\n: comment\r\ndata: x\r\ndata: y\r\n\r\ndata: [DONE]\n\n";
        let whole = Splitter::new(1 << 20).feed(stream.as_bytes());
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[0].name.as_deref(), Some("message_start"));
        assert_eq!(whole[0].data, "{\"a\":1}");
        assert_eq!(whole[1].data, "x\ny");
        assert_eq!(whole[2].data, "[DONE]");
        let joined: Vec<u8> = whole.iter().flat_map(|e| e.raw.to_vec()).collect();
        assert_eq!(joined, stream.as_bytes(), "raw bytes are kept exactly");
        for cut in 0..stream.len() {
            let mut s = Splitter::new(1 << 20);
            let mut got = s.feed(&stream.as_bytes()[..cut]);
            got.extend(s.feed(&stream.as_bytes()[cut..]));
            assert_eq!(got, whole, "cut at {cut}");
            assert!(s.pending().is_empty());
        }
    }

    #[test]
    fn a_large_event_trickled_byte_by_byte_is_scanned_once() {
        let data = "x".repeat(512 * 1024);
        let stream = format!("data: {data}\n\ndata: y\n\n");
        let mut s = Splitter::new(1 << 20);
        let started = std::time::Instant::now();
        let mut got = Vec::new();
        for b in stream.as_bytes() {
            got.extend(s.feed(std::slice::from_ref(b)));
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].data.len(), data.len());
        // Rescanning from the start at every byte would take minutes here.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn an_oversize_event_turns_parsing_off() {
        let mut s = Splitter::new(16);
        assert!(s.feed(b"data: 0123456789abcdef0123").is_empty());
        assert!(s.overflowed());
        assert!(s.feed(b"\n\n").is_empty());
    }
}
