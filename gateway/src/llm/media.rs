//! What audio and image answers report, read into [`Usage`] as they pass
//! (<https://platform.openai.com/docs/api-reference/audio>,
//! <https://platform.openai.com/docs/api-reference/images>):
//!
//! - transcriptions and translations: `usage` of `type: tokens` (the gpt-4o transcription
//!   family: input tokens with their audio part, output tokens) or `type: duration`
//!   (`whisper-1`: `seconds`); `verbose_json` also gives `duration`. Text, SRT and VTT answers
//!   report nothing;
//! - speech: audio bytes report nothing, so the request's characters price it; with
//!   `stream_format: sse` the `speech.audio.done` event carries token usage;
//! - images: `data` holds one entry per image, priced per image by quality and size, and
//!   token-priced models add `usage` (input tokens with their image part, output tokens);
//!   streams end each image with `image_generation.completed` / `image_edit.completed`.

use serde_json::Value;

use super::{
    usage::{Metered, Usage},
    Operation,
};

/// What a request says that prices its answer beyond tokens.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestUnits {
    /// Speech: the characters of `input`.
    pub characters: Option<u64>,
    /// Images: `quality/size` as asked.
    pub image_tier: Option<String>,
}

/// The operations metered here.
pub fn is_media(op: Operation) -> bool {
    matches!(
        op,
        Operation::AudioTranscriptions
            | Operation::AudioTranslations
            | Operation::AudioSpeech
            | Operation::ImagesGenerations
            | Operation::ImagesEdits
            | Operation::ImagesVariations
    )
}

/// Whether a stream event is one that ends an answer or an image (the rest are deltas).
pub fn is_final(name: Option<&str>, data: &str) -> bool {
    match name {
        Some(n) => n.ends_with(".done") || n.ends_with(".completed"),
        // Without an event name, the type leads the data.
        None => {
            let head = &data[..data.len().min(96)];
            head.contains(".done\"") || head.contains(".completed\"")
        }
    }
}

/// Usage from an audio answer's `usage` (`type: tokens` or `type: duration`) or a
/// `verbose_json` answer's `duration`.
pub fn audio_usage(answer: &Value) -> Option<Usage> {
    let u = answer.get("usage").filter(|u| u.is_object());
    let n = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    match u.and_then(|u| u.get("type")).and_then(Value::as_str) {
        Some("duration") => seconds(&u?["seconds"]).map(|ms| Usage {
            audio_ms: ms,
            ..Usage::default()
        }),
        Some("tokens") | None if u.is_some_and(|u| u.get("input_tokens").is_some()) => {
            let u = u?;
            Some(Usage {
                input: n(u, "input_tokens"),
                output: n(u, "output_tokens"),
                audio_input: n(&u["input_token_details"], "audio_tokens"),
                ..Usage::default()
            })
        }
        _ => seconds(answer.get("duration")?).map(|ms| Usage {
            audio_ms: ms,
            ..Usage::default()
        }),
    }
}

/// Seconds (a number, or a number in a string) as milliseconds.
fn seconds(v: &Value) -> Option<u64> {
    let s = v.as_f64().or_else(|| v.as_str()?.trim().parse().ok())?;
    (s.is_finite() && s >= 0.0).then(|| (s * 1000.0).round() as u64)
}

/// Usage from an image answer: `usage` tokens when reported, and the images it holds.
pub fn image_usage(answer: &Value, images: u64) -> Usage {
    let mut usage = answer
        .get("usage")
        .filter(|u| u.is_object())
        .map(|u| {
            let n = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
            Usage {
                input: n(u, "input_tokens"),
                output: n(u, "output_tokens"),
                image_input: n(&u["input_tokens_details"], "image_tokens"),
                ..Usage::default()
            }
        })
        .unwrap_or_default();
    usage.images = images;
    // gpt-image answers say the quality and size they rendered (`auto` asked).
    if let (Some(q), Some(s)) = (
        answer.get("quality").and_then(Value::as_str),
        answer.get("size").and_then(Value::as_str),
    ) {
        usage.image_tier = Some(format!("{q}/{s}"));
    }
    usage
}

/// Reads a whole JSON answer of `op`.
pub fn answer(op: Operation, json: &[u8], metered: &mut Metered) {
    let Ok(v) = serde_json::from_slice::<Value>(json) else {
        // Text, SRT and VTT transcripts: nothing reported.
        return;
    };
    metered.usage = match op {
        Operation::ImagesGenerations | Operation::ImagesEdits | Operation::ImagesVariations => {
            let images = v.get("data").and_then(Value::as_array).map_or(0, |d| d.len() as u64);
            Some(image_usage(&v, images))
        }
        _ => audio_usage(&v),
    };
    metered.complete = true;
}

/// Reads one stream event; notes the first delta (time to first token).
pub fn event(v: &Value, metered: &mut Metered, first_token_seen: &mut bool) {
    let Some(typ) = v.get("type").and_then(Value::as_str) else {
        return;
    };
    if typ.ends_with(".delta") || typ.ends_with(".partial_image") {
        *first_token_seen = true;
        return;
    }
    match typ {
        "transcript.text.done" | "speech.audio.done" => {
            metered.usage = audio_usage(v).or(metered.usage.take());
            metered.complete = true;
        }
        "image_generation.completed" | "image_edit.completed" => {
            *first_token_seen = true;
            let before = metered.usage.take().unwrap_or_default();
            let mut usage = image_usage(v, before.images + 1);
            // Each completed image reports its own tokens: they add up.
            usage.input += before.input;
            usage.output += before.output;
            usage.image_input += before.image_input;
            usage.image_tier = usage.image_tier.or(before.image_tier);
            metered.usage = Some(usage);
            metered.complete = true;
        }
        _ => {}
    }
}

/// Adds what the request says to what the answer reported: a finished speech answer is
/// priced by the characters asked for; images by the tier asked for when the answer names
/// none.
pub fn priced_by(request: &RequestUnits, complete: bool, metered: &mut Metered) {
    if let (Some(chars), true) = (request.characters, complete) {
        metered.usage.get_or_insert_with(Usage::default).characters = chars;
    }
    if let Some(usage) = metered.usage.as_mut().filter(|u| u.images > 0) {
        if usage.image_tier.is_none() {
            usage.image_tier = request.image_tier.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn transcription_answers_report_tokens_or_seconds() {
        let tokens = json!({"text": "hi", "usage": {"type": "tokens", "input_tokens": 14,
            "input_token_details": {"text_tokens": 0, "audio_tokens": 14}, "output_tokens": 45, "total_tokens": 59}});
        let u = audio_usage(&tokens).unwrap();
        assert_eq!((u.input, u.audio_input, u.output, u.total()), (14, 14, 45, 59));
        let duration = json!({"text": "hi", "usage": {"type": "duration", "seconds": 9}});
        assert_eq!(audio_usage(&duration).unwrap().audio_ms, 9000);
        let verbose = json!({"task": "transcribe", "duration": 8.47, "text": "hi"});
        assert_eq!(audio_usage(&verbose).unwrap().audio_ms, 8470);
        assert_eq!(audio_usage(&json!({"text": "hi"})), None);
        let mut m = Metered::default();
        answer(Operation::AudioTranscriptions, b"plain text transcript", &mut m);
        assert_eq!((m.usage, m.complete), (None, false), "text answers report nothing");
    }

    #[test]
    fn image_answers_count_images_and_tokens() {
        let v = json!({"created": 1, "data": [{"b64_json": "AA"}, {"b64_json": "AA"}], "quality": "high",
            "size": "1024x1536", "usage": {"input_tokens": 50, "output_tokens": 4160, "total_tokens": 4210,
            "input_tokens_details": {"text_tokens": 10, "image_tokens": 40}}});
        let mut m = Metered::default();
        answer(Operation::ImagesGenerations, v.to_string().as_bytes(), &mut m);
        let u = m.usage.unwrap();
        assert_eq!((u.images, u.input, u.image_input, u.output), (2, 50, 40, 4160));
        assert_eq!(u.image_tier.as_deref(), Some("high/1024x1536"));
        let mut m = Metered::default();
        answer(
            Operation::ImagesGenerations,
            br#"{"created":1,"data":[{"url":"u"}]}"#,
            &mut m,
        );
        priced_by(
            &RequestUnits {
                characters: None,
                image_tier: Some("hd/1024x1792".into()),
            },
            true,
            &mut m,
        );
        let u = m.usage.unwrap();
        assert_eq!((u.images, u.total()), (1, 0));
        assert_eq!(u.image_tier.as_deref(), Some("hd/1024x1792"), "dall-e: the tier asked");
    }

    #[test]
    fn stream_events_end_with_usage() {
        let mut m = Metered::default();
        let mut first = false;
        event(
            &json!({"type": "transcript.text.delta", "delta": "I"}),
            &mut m,
            &mut first,
        );
        assert!(first && m.usage.is_none());
        event(
            &json!({"type": "transcript.text.done", "text": "I", "usage": {"type": "tokens", "input_tokens": 3,
                "output_tokens": 1, "total_tokens": 4}}),
            &mut m,
            &mut first,
        );
        assert_eq!(m.usage.as_ref().map(Usage::total), Some(4));
        assert!(m.complete);
        let mut m = Metered::default();
        for _ in 0..2 {
            let done = json!({"type": "image_generation.completed", "b64_json": "AA", "quality": "low",
                "size": "1024x1024", "usage": {"input_tokens": 5, "output_tokens": 272, "total_tokens": 277}});
            event(&done, &mut m, &mut first);
        }
        let u = m.usage.unwrap();
        assert_eq!((u.images, u.input, u.output), (2, 10, 544));
        assert!(is_final(Some("image_generation.completed"), ""));
        assert!(is_final(None, r#"{"type":"speech.audio.done","usage":{}}"#));
        assert!(!is_final(None, r#"{"type":"speech.audio.delta","audio":"AAAA"}"#));
    }

    #[test]
    fn speech_is_priced_by_the_characters_asked_once_complete() {
        let units = RequestUnits {
            characters: Some(42),
            image_tier: None,
        };
        let mut m = Metered::default();
        priced_by(&units, false, &mut m);
        assert_eq!(m.usage, None, "a cut answer is not priced by characters");
        priced_by(&units, true, &mut m);
        assert_eq!(m.usage.unwrap().characters, 42);
    }
}
