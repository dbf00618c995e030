//! The OpenAI audio and images endpoints as a fake provider answers them, in their real wire
//! formats (<https://platform.openai.com/docs/api-reference/audio>,
//! <https://platform.openai.com/docs/api-reference/images>):
//!
//! - `/v1/audio/transcriptions`, `/v1/audio/translations` (multipart): `json` (the default),
//!   `verbose_json`, `text`; `whisper-1` reports `usage.type: duration`, the gpt-4o family
//!   `usage.type: tokens`; `stream=true` answers `transcript.text.delta`/`.done` events;
//! - `/v1/audio/speech` (JSON): audio bytes (`audio/mpeg`, in several chunks), or with
//!   `stream_format: sse` `speech.audio.delta`/`.done` events with token usage;
//! - `/v1/images/generations` (JSON), `/v1/images/edits` and `/v1/images/variations`
//!   (multipart; variations are `dall-e-2`'s, which the form need not name): one `data` entry
//!   per image; `gpt-image-*` adds quality, size and token usage, dall-e does not (dall-e-3
//!   adds its `revised_prompt`); `stream: true` (gpt-image) answers partial images and a
//!   `.completed` event per image.
//!
//! What the fake reads of a form (text fields, and each file's length and SHA-256) is kept in
//! the request's [`Form`], so tests check the file arrived whole.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{json, Value};

/// What a multipart request carried.
#[derive(Clone, Debug, Default)]
pub struct Form {
    pub fields: HashMap<String, String>,
    /// Per file field: its length and SHA-256 (hex).
    pub files: HashMap<String, (usize, String)>,
}

/// Bytes of the fake's speech audio.
pub const SPEECH_BYTES: usize = 96 * 1024;
/// Seconds `whisper-1` reports for any audio.
pub const WHISPER_SECONDS: u64 = 9;
/// What a token-metered transcription reports: input (audio part), output.
pub const TRANSCRIBE_TOKENS: (u64, u64, u64) = (20, 14, 45);
/// What a gpt-image answer reports per image: input (image part), output.
pub const IMAGE_TOKENS: (u64, u64, u64) = (50, 40, 4160);

/// Reads a `multipart/form-data` body (its boundary from `content_type`), independently of
/// Tollgate's own reader: split on the delimiter, then each part's headers.
pub fn parse_form(content_type: &str, body: &[u8]) -> Option<Form> {
    let boundary = content_type.split("boundary=").nth(1)?.trim_matches('"');
    let delimiter = format!("--{boundary}");
    let mut form = Form::default();
    let mut rest = body;
    loop {
        let at = find(rest, delimiter.as_bytes())?;
        rest = &rest[at + delimiter.len()..];
        if rest.starts_with(b"--") {
            return Some(form);
        }
        rest = rest.strip_prefix(b"\r\n")?;
        let headers_end = find(rest, b"\r\n\r\n")?;
        let headers = String::from_utf8_lossy(&rest[..headers_end]).to_string();
        rest = &rest[headers_end + 4..];
        let end = find(rest, format!("\r\n{delimiter}").as_bytes())?;
        let value = &rest[..end];
        let param = |name: &str| {
            headers.split(';').find_map(|p| {
                p.trim()
                    .strip_prefix(&format!("{name}="))
                    .map(|v| v.trim_matches('"').to_string())
            })
        };
        let name = param("name")?;
        if param("filename").is_some() {
            form.files.insert(name, (value.len(), sha256_hex(value)));
        } else {
            form.fields.insert(name, String::from_utf8_lossy(value).to_string());
        }
        rest = &rest[end + 2..];
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// How the fake answers a media request.
pub enum Answer {
    Json(Value),
    Text(String),
    /// Server-sent events, in order.
    Events(Vec<Bytes>),
    /// Audio bytes, in chunks.
    Audio(Vec<Bytes>),
}

/// The answer to a media request on `path` (`/v1/...`), or `None` for other paths.
pub fn answer(path: &str, body: &Value, form: Option<&Form>, name: &str) -> Option<Answer> {
    let field = |k: &str| -> Option<String> {
        form.and_then(|f| f.fields.get(k).cloned())
            .or_else(|| {
                body.get(k)
                    .and_then(|v| v.as_str().map(str::to_string).or(Some(v.to_string())))
            })
            .filter(|v| v != "null")
    };
    let model = field("model").unwrap_or_default();
    let stream = field("stream").is_some_and(|s| s == "true" || s == "True");
    Some(match path {
        "/v1/audio/transcriptions" | "/v1/audio/translations" => {
            transcription(&model, field("response_format"), stream, name)
        }
        "/v1/audio/speech" => speech(field("stream_format").as_deref() == Some("sse")),
        "/v1/images/generations" | "/v1/images/edits" | "/v1/images/variations" => {
            let n = field("n").and_then(|n| n.parse().ok()).unwrap_or(1u64);
            let edit = path.ends_with("edits");
            let model = if model.is_empty() && path.ends_with("variations") {
                "dall-e-2".to_string()
            } else {
                model
            };
            images(&model, n, stream, edit)
        }
        _ => return None,
    })
}

fn transcription(model: &str, format: Option<String>, stream: bool, name: &str) -> Answer {
    let text = format!("hello from {name}");
    let (input, audio, output) = TRANSCRIBE_TOKENS;
    let usage = if model.starts_with("whisper") {
        json!({"type": "duration", "seconds": WHISPER_SECONDS})
    } else {
        json!({"type": "tokens", "input_tokens": input, "input_token_details": {"text_tokens": input - audio,
               "audio_tokens": audio}, "output_tokens": output, "total_tokens": input + output})
    };
    if stream {
        let ev = |v: Value| Bytes::from(format!("data: {v}\n\n"));
        return Answer::Events(vec![
            ev(json!({"type": "transcript.text.delta", "delta": "hello", "logprobs": []})),
            ev(json!({"type": "transcript.text.delta", "delta": format!(" from {name}"), "logprobs": []})),
            ev(json!({"type": "transcript.text.done", "text": text, "logprobs": [], "usage": usage})),
        ]);
    }
    match format.as_deref() {
        Some("text") => Answer::Text(format!("{text}\n")),
        Some("verbose_json") => Answer::Json(json!({"task": "transcribe", "language": "english",
            "duration": WHISPER_SECONDS as f64 - 0.53, "text": text, "segments": [], "usage": usage})),
        _ => Answer::Json(json!({"text": text, "usage": usage})),
    }
}

fn speech(sse: bool) -> Answer {
    if sse {
        let ev = |v: Value| Bytes::from(format!("data: {v}\n\n"));
        return Answer::Events(vec![
            ev(json!({"type": "speech.audio.delta", "audio": "SUQzBAAAAAAA"})),
            ev(json!({"type": "speech.audio.delta", "audio": "AAAAAAAAAAAA"})),
            ev(
                json!({"type": "speech.audio.done", "usage": {"input_tokens": 14, "output_tokens": 101, "total_tokens": 115}}),
            ),
        ]);
    }
    // An MP3-looking answer, deterministic so tests can compare digests.
    let audio: Vec<u8> = (0..SPEECH_BYTES).map(|i| (i * 31 % 251) as u8).collect();
    Answer::Audio(audio.chunks(16 * 1024).map(Bytes::copy_from_slice).collect())
}

fn images(model: &str, n: u64, stream: bool, edit: bool) -> Answer {
    let token_priced = model.starts_with("gpt-image");
    let (input, image_part, output) = IMAGE_TOKENS;
    let usage = json!({"input_tokens": input, "input_tokens_details": {"text_tokens": input - image_part,
        "image_tokens": if edit { image_part } else { 0 }}, "output_tokens": output, "total_tokens": input + output});
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
    if stream {
        let prefix = if edit { "image_edit" } else { "image_generation" };
        let ev = |t: String, v: Value| Bytes::from(format!("event: {t}\ndata: {v}\n\n"));
        let mut events = Vec::new();
        for _ in 0..n {
            events.push(ev(
                format!("{prefix}.partial_image"),
                json!({"type": format!("{prefix}.partial_image"), "b64_json": png, "partial_image_index": 0,
                       "created_at": 1764100000, "size": "1024x1024", "quality": "low", "background": "opaque", "output_format": "png"}),
            ));
            events.push(ev(
                format!("{prefix}.completed"),
                json!({"type": format!("{prefix}.completed"), "b64_json": png, "created_at": 1764100000,
                       "size": "1024x1024", "quality": "low", "background": "opaque", "output_format": "png", "usage": usage}),
            ));
        }
        return Answer::Events(events);
    }
    let data: Vec<Value> = (0..n)
        .map(|i| {
            if token_priced {
                json!({"b64_json": png})
            } else if model == "dall-e-3" {
                json!({"url": format!("https://images.example.test/{i}.png"), "revised_prompt": "a fake image"})
            } else {
                json!({"url": format!("https://images.example.test/{i}.png")})
            }
        })
        .collect();
    let mut v = json!({"created": 1764100000, "data": data});
    if token_priced {
        // gpt-image answers report tokens for the whole request, and what they rendered.
        v["usage"] = json!({"input_tokens": input * n, "input_tokens_details": {"text_tokens": (input - image_part) * n,
            "image_tokens": if edit { image_part * n } else { 0 }}, "output_tokens": output * n, "total_tokens": (input + output) * n});
        v["quality"] = json!("high");
        v["size"] = json!("1024x1536");
        v["background"] = json!("opaque");
        v["output_format"] = json!("png");
    }
    Answer::Json(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_are_read_with_their_files() {
        let body = b"--XX\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFF1234\r\n--XX--\r\n";
        let f = parse_form("multipart/form-data; boundary=XX", body).unwrap();
        assert_eq!(f.fields["model"], "whisper-1");
        assert_eq!(f.files["file"].0, 8);
    }
}
