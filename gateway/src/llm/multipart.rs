//! The head of a `multipart/form-data` request body (RFC 7578): its text fields, read as the
//! body arrives, up to the first file part once the fields Tollgate routes on are known. The
//! file itself (audio to transcribe, an image to edit) is never held: what follows the head
//! streams upstream as it comes.
//!
//! The OpenAI SDKs write their text fields (`model`, `stream`, `response_format`…) before
//! the file; a client that puts `model` after the file has the file read into the head until
//! `model` is found, within `proxy.maxRequestBody`.

use std::ops::Range;

/// Longest header block of one part (8 KiB).
const MAX_PART_HEADERS: usize = 8 * 1024;
/// Longest text field kept (64 KiB: a transcription `prompt` is the longest real one).
const MAX_FIELD: usize = 64 * 1024;
/// Most text fields kept.
const MAX_FIELDS: usize = 64;

/// Why a form could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormError {
    #[error("content-type must be multipart/form-data with a boundary")]
    NotMultipart,
    #[error("multipart body is malformed: {0}")]
    Malformed(&'static str),
    #[error("multipart field {0:?} is longer than 64 KiB")]
    FieldTooLong(String),
    #[error("multipart body has more than 64 text fields")]
    TooManyFields,
}

/// The boundary of a `multipart/form-data` content type.
pub fn boundary(content_type: &str) -> Result<String, FormError> {
    let mut params = content_type.split(';');
    let kind = params.next().unwrap_or("").trim();
    if !kind.eq_ignore_ascii_case("multipart/form-data") {
        return Err(FormError::NotMultipart);
    }
    params
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
        .filter(|b| !b.is_empty() && b.len() <= 70)
        .ok_or(FormError::NotMultipart)
}

/// One text field: its name and where its value lies in the head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub value: Range<usize>,
}

/// Where the scanner is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Before the first delimiter.
    Preamble,
    /// Right after a delimiter: `--` ends the form, CRLF starts a part.
    AfterDelimiter,
    /// In a part's header block, which started here.
    Headers(usize),
    /// In a part's body, which started here (`file`: it has a filename).
    Body { start: usize, file: bool },
    /// The closing delimiter was read.
    Ended,
}

/// Reads a form head incrementally: feed it the whole buffer read so far, again as it grows.
#[derive(Debug)]
pub struct Scanner {
    /// `\r\n--boundary`.
    delimiter: Vec<u8>,
    state: State,
    /// Where scanning resumes.
    pos: usize,
    /// The current part's field name (text parts).
    name: Option<String>,
    pub fields: Vec<Field>,
    /// A file part has begun (its headers are read).
    pub file_seen: bool,
}

impl Scanner {
    pub fn new(boundary: &str) -> Scanner {
        Scanner {
            delimiter: format!("\r\n--{boundary}").into_bytes(),
            state: State::Preamble,
            pos: 0,
            name: None,
            fields: Vec::new(),
            file_seen: false,
        }
    }

    /// Whether the closing delimiter was read.
    pub fn ended(&self) -> bool {
        self.state == State::Ended
    }

    /// The value of the first field named `name`, as text.
    pub fn field<'a>(&self, head: &'a [u8], name: &str) -> Option<&'a str> {
        let f = self.fields.iter().find(|f| f.name == name)?;
        std::str::from_utf8(head.get(f.value.clone())?).ok()
    }

    /// Scans what `buf` (every byte of the body so far) adds.
    pub fn feed(&mut self, buf: &[u8]) -> Result<(), FormError> {
        loop {
            let progressed = match self.state {
                State::Ended => return Ok(()),
                State::Preamble => self.preamble(buf),
                State::AfterDelimiter => self.after_delimiter(buf)?,
                State::Headers(start) => self.headers(buf, start)?,
                State::Body { start, file } => self.body(buf, start, file)?,
            };
            if !progressed {
                return Ok(());
            }
        }
    }

    fn preamble(&mut self, buf: &[u8]) -> bool {
        // The first delimiter may open the body without the CRLF before it.
        let bare = &self.delimiter[2..];
        if buf.starts_with(bare) {
            self.pos = bare.len();
            self.state = State::AfterDelimiter;
            return true;
        }
        match find(buf, &self.delimiter, self.pos) {
            Some(at) => {
                self.pos = at + self.delimiter.len();
                self.state = State::AfterDelimiter;
                true
            }
            None => {
                self.pos = buf.len().saturating_sub(self.delimiter.len());
                false
            }
        }
    }

    fn after_delimiter(&mut self, buf: &[u8]) -> Result<bool, FormError> {
        let Some(next) = buf.get(self.pos..self.pos + 2) else {
            return Ok(false);
        };
        match next {
            b"--" => self.state = State::Ended,
            b"\r\n" => {
                self.pos += 2;
                self.state = State::Headers(self.pos);
            }
            _ => return Err(FormError::Malformed("a delimiter is followed by neither CRLF nor --")),
        }
        Ok(true)
    }

    fn headers(&mut self, buf: &[u8], start: usize) -> Result<bool, FormError> {
        let Some(end) = find(buf, b"\r\n\r\n", self.pos.max(start)) else {
            if buf.len() - start > MAX_PART_HEADERS {
                return Err(FormError::Malformed("a part's headers are longer than 8 KiB"));
            }
            self.pos = buf.len().saturating_sub(3).max(start);
            return Ok(false);
        };
        let block =
            std::str::from_utf8(&buf[start..end]).map_err(|_| FormError::Malformed("part headers are not UTF-8"))?;
        let (name, filename) = disposition(block).ok_or(FormError::Malformed("a part has no form-data name"))?;
        let file = filename.is_some();
        self.file_seen |= file;
        self.name = (!file).then_some(name);
        self.pos = end + 4;
        self.state = State::Body { start: self.pos, file };
        Ok(true)
    }

    fn body(&mut self, buf: &[u8], start: usize, file: bool) -> Result<bool, FormError> {
        let Some(at) = find(buf, &self.delimiter, self.pos) else {
            if !file && buf.len() - start > MAX_FIELD {
                return Err(FormError::FieldTooLong(self.name.clone().unwrap_or_default()));
            }
            self.pos = buf.len().saturating_sub(self.delimiter.len() - 1).max(start);
            return Ok(false);
        };
        if let Some(name) = self.name.take() {
            if self.fields.len() == MAX_FIELDS {
                return Err(FormError::TooManyFields);
            }
            if at - start > MAX_FIELD {
                return Err(FormError::FieldTooLong(name));
            }
            self.fields.push(Field { name, value: start..at });
        }
        self.pos = at + self.delimiter.len();
        self.state = State::AfterDelimiter;
        Ok(true)
    }
}

/// The `name` and `filename` of a part's `Content-Disposition: form-data` header.
fn disposition(block: &str) -> Option<(String, Option<String>)> {
    let line = block.split("\r\n").find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case("content-disposition").then_some(v)
    })?;
    let mut params = line.split(';');
    if !params.next()?.trim().eq_ignore_ascii_case("form-data") {
        return None;
    }
    let (mut name, mut filename) = (None, None);
    for p in params {
        let Some((k, v)) = p.split_once('=') else { continue };
        let v = v.trim().trim_matches('"').to_string();
        match k.trim().to_ascii_lowercase().as_str() {
            "name" => name = Some(v),
            "filename" | "filename*" => filename = Some(v),
            _ => {}
        }
    }
    Some((name?, filename))
}

/// The first `needle` in `hay` at or after `from`.
fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// `head` with the value of field `f` replaced by `value` (a route's model for this backend).
pub fn replace(head: &[u8], f: &Field, value: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(head.len() + value.len());
    out.extend_from_slice(&head[..f.value.start]);
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(&head[f.value.end..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body as the OpenAI Python SDK (httpx) writes it: text fields, then the file.
    fn sdk_body(b: &str) -> Vec<u8> {
        format!(
            "--{b}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\ngpt-4o-transcribe\r\n\
             --{b}\r\nContent-Disposition: form-data; name=\"response_format\"\r\n\r\njson\r\n\
             --{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\
             Content-Type: audio/wav\r\n\r\nRIFF\x00\x01--{b}x\r\n--{b}--\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn fields_before_the_file_are_read_whatever_the_frame_sizes() {
        let body = sdk_body("abc123");
        for step in [1, 2, 3, 7, 64, body.len()] {
            let mut s = Scanner::new("abc123");
            let mut seen = 0;
            while seen < body.len() && !s.ended() {
                seen = (seen + step).min(body.len());
                s.feed(&body[..seen]).unwrap();
            }
            assert_eq!(s.field(&body, "model"), Some("gpt-4o-transcribe"), "step {step}");
            assert_eq!(s.field(&body, "response_format"), Some("json"));
            assert!(s.file_seen && s.ended(), "step {step}");
            assert_eq!(s.fields.len(), 2, "the file is not a field");
        }
    }

    #[test]
    fn a_model_after_the_file_is_found_and_can_be_replaced() {
        let b = "XyZ";
        let body = format!(
            "preamble\r\n--{b}\r\ncontent-disposition: form-data; filename=\"x.png\"; name=\"image\"\r\n\r\nPNG\x01\r\n\
             --{b}\r\nContent-Disposition: form-data; name=model\r\n\r\ngpt-image-1\r\n--{b}--"
        );
        let mut s = Scanner::new(b);
        s.feed(body.as_bytes()).unwrap();
        assert!(s.file_seen && s.ended());
        let f = s.fields.iter().find(|f| f.name == "model").unwrap().clone();
        let out = replace(body.as_bytes(), &f, "dall-e-2");
        let mut again = Scanner::new(b);
        again.feed(&out).unwrap();
        assert_eq!(again.field(&out, "model"), Some("dall-e-2"));
    }

    #[test]
    fn bad_forms_are_refused_and_bounded() {
        assert_eq!(boundary("application/json"), Err(FormError::NotMultipart));
        assert_eq!(boundary("multipart/form-data"), Err(FormError::NotMultipart));
        assert_eq!(boundary("multipart/form-data; boundary=\"a b\"").unwrap(), "a b");
        let mut s = Scanner::new("b");
        assert!(matches!(
            s.feed(b"--b\r\nno-colon\r\n\r\nx"),
            Err(FormError::Malformed(_))
        ));
        let mut s = Scanner::new("b");
        assert!(matches!(s.feed(b"--bXX"), Err(FormError::Malformed(_))));
        let mut long = b"--b\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\n".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_FIELD + 10));
        let mut s = Scanner::new("b");
        assert_eq!(s.feed(&long), Err(FormError::FieldTooLong("prompt".into())));
        let mut headers = b"--b\r\n".to_vec();
        headers.extend(std::iter::repeat_n(b'h', MAX_PART_HEADERS + 10));
        let mut s = Scanner::new("b");
        assert!(matches!(s.feed(&headers), Err(FormError::Malformed(_))));
    }
}
