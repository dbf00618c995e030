//! Token usage, read from responses as they pass: JSON bodies and SSE streams of OpenAI (chat
//! completions, completions, embeddings, responses) and Anthropic (messages).
//!
//! Normalised counts (what the audit record and prices use):
//! - `input`: every input token, cached or not. OpenAI's `prompt_tokens`/`input_tokens`
//!   already include cached ones; Anthropic's `input_tokens` does not, so cache reads and cache
//!   writes are added to it.
//! - `cached_input`: input tokens read from the provider's prompt cache (OpenAI
//!   `cached_tokens`, Anthropic `cache_read_input_tokens`).
//! - `cache_write`: input tokens written to the cache (Anthropic `cache_creation_input_tokens`).
//! - `output`: every output token, reasoning included (OpenAI's `completion_tokens` include
//!   `reasoning_tokens`).
//! - `reasoning`: the reasoning part of `output`, where reported.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ApiSchema;
use super::{sse, Operation};

/// Largest JSON response body kept for metering and translation (64 MiB: embeddings of 2,048
/// inputs fit); larger ones are forwarded unmetered.
pub const MAX_METERED_JSON: usize = 64 * 1024 * 1024;
/// Largest single SSE event parsed (1 MiB).
pub const MAX_SSE_EVENT: usize = 1024 * 1024;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    pub cached_input: u64,
    pub cache_write: u64,
    pub reasoning: u64,
    /// The audio part of `input` (transcription models price audio tokens apart).
    pub audio_input: u64,
    /// The image part of `input` (image models price image tokens apart).
    pub image_input: u64,
    /// Audio billed by its length, in milliseconds (`whisper-1`: `usage.seconds`).
    pub audio_ms: u64,
    /// Characters of speech input (`tts-1`).
    pub characters: u64,
    /// Images generated, and what their per-image price depends on (`quality/size`).
    pub images: u64,
    pub image_tier: Option<String>,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.input.saturating_add(self.output)
    }
}

/// Usage from an OpenAI `usage` object (chat completions, completions, embeddings, responses).
pub fn openai_usage(u: &Value) -> Option<Usage> {
    let obj = u.as_object()?;
    let n = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
    // chat/completions/embeddings use prompt_/completion_; responses uses input_/output_.
    let input = n(obj.get("prompt_tokens").or(obj.get("input_tokens")));
    let output = n(obj.get("completion_tokens").or(obj.get("output_tokens")));
    let cached = n(obj
        .get("prompt_tokens_details")
        .or(obj.get("input_tokens_details"))
        .and_then(|d| d.get("cached_tokens")));
    let reasoning = n(obj
        .get("completion_tokens_details")
        .or(obj.get("output_tokens_details"))
        .and_then(|d| d.get("reasoning_tokens")));
    if !obj.contains_key("prompt_tokens") && !obj.contains_key("input_tokens") && !obj.contains_key("total_tokens") {
        return None;
    }
    Some(Usage {
        input,
        output,
        cached_input: cached,
        cache_write: 0,
        reasoning,
        ..Usage::default()
    })
}

/// Usage from an Anthropic `usage` object (message or `message_start`).
pub fn anthropic_usage(u: &Value) -> Option<Usage> {
    let obj = u.as_object()?;
    let n = |k: &str| obj.get(k).and_then(Value::as_u64).unwrap_or(0);
    let (input, read, write) = (
        n("input_tokens"),
        n("cache_read_input_tokens"),
        n("cache_creation_input_tokens"),
    );
    Some(Usage {
        input: input.saturating_add(read).saturating_add(write),
        output: n("output_tokens"),
        cached_input: read,
        cache_write: write,
        reasoning: 0,
        ..Usage::default()
    })
}

/// Usage from a Gemini `usageMetadata` (thinking tokens are output, like OpenAI's reasoning).
pub fn gemini_usage(u: &Value) -> Option<Usage> {
    let obj = u.as_object()?;
    let n = |k: &str| obj.get(k).and_then(Value::as_u64).unwrap_or(0);
    let thoughts = n("thoughtsTokenCount");
    Some(Usage {
        input: n("promptTokenCount"),
        output: n("candidatesTokenCount").saturating_add(thoughts),
        cached_input: n("cachedContentTokenCount"),
        cache_write: 0,
        reasoning: thoughts,
        ..Usage::default()
    })
}

/// Usage from a Bedrock Converse `usage` object. `inputTokens` leaves out cache reads and
/// writes; they are added so `input` counts every prompt token (OpenAI semantics).
pub fn bedrock_usage(u: &Value) -> Option<Usage> {
    let obj = u.as_object()?;
    let n = |k: &str| obj.get(k).and_then(Value::as_u64).unwrap_or(0);
    let (read, write) = (n("cacheReadInputTokens"), n("cacheWriteInputTokens"));
    Some(Usage {
        input: n("inputTokens").saturating_add(read).saturating_add(write),
        output: n("outputTokens"),
        cached_input: read,
        cache_write: write,
        reasoning: 0,
        ..Usage::default()
    })
}

/// What a response yielded once it ended (or was cut).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metered {
    pub usage: Option<Usage>,
    /// The model the provider says it served.
    pub model: Option<String>,
    /// Whether the response ran to its end (a final usage event or a complete JSON body).
    pub complete: bool,
}

/// A per-response state machine. `observe` sees every response byte (in order);
/// `finish` says what was learned.
pub struct Meter {
    kind: Kind,
    /// For streams: strip the usage-only chunk Tollgate asked for on the client's behalf.
    strip_added_usage: bool,
    splitter: sse::Splitter,
    json: Vec<u8>,
    json_overflow: bool,
    events: super::eventstream::Decoder,
    metered: Metered,
    /// What the request said that prices the answer (characters, image tier).
    request: super::media::RequestUnits,
    /// Set once the first content delta is seen (time to first token).
    pub first_token_seen: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    OpenAiJson,
    OpenAiSse,
    ResponsesSse,
    AnthropicJson,
    AnthropicSse,
    GeminiJson,
    GeminiSse,
    BedrockJson,
    /// Bedrock ConverseStream: AWS event-stream messages, not SSE.
    BedrockEvents,
    /// Audio and image answers in JSON: usage as the operation reports it
    /// ([`super::media`]).
    MediaJson(Operation),
    /// Audio and image event streams (`transcript.text.done`, `speech.audio.done`,
    /// `image_generation.completed`).
    MediaSse(Operation),
    /// Audio bytes (speech): complete when they end; priced by the request's characters.
    Binary,
    None,
}

impl Meter {
    pub fn new(schema: ApiSchema, operation: Operation, stream: bool, strip_added_usage: bool) -> Meter {
        let kind = match (schema, operation, stream) {
            (ApiSchema::Openai, Operation::ChatCompletions | Operation::Completions, true) => Kind::OpenAiSse,
            (ApiSchema::Openai, Operation::Responses, true) => Kind::ResponsesSse,
            (ApiSchema::Openai, op, stream) if super::media::is_media(op) => match (op, stream) {
                (_, true) => Kind::MediaSse(op),
                (Operation::AudioSpeech, false) => Kind::Binary,
                (_, false) => Kind::MediaJson(op),
            },
            (
                ApiSchema::Openai,
                Operation::ChatCompletions | Operation::Completions | Operation::Embeddings | Operation::Responses,
                false,
            ) => Kind::OpenAiJson,
            (ApiSchema::Anthropic, Operation::Messages, true) => Kind::AnthropicSse,
            (ApiSchema::Anthropic, Operation::Messages | Operation::CountTokens, false) => Kind::AnthropicJson,
            (ApiSchema::Gemini | ApiSchema::Vertex, _, true) => Kind::GeminiSse,
            (ApiSchema::Gemini | ApiSchema::Vertex, _, false) => Kind::GeminiJson,
            (ApiSchema::Bedrock, _, false) => Kind::BedrockJson,
            (ApiSchema::Bedrock, _, true) => Kind::BedrockEvents,
            _ => Kind::None,
        };
        Meter {
            kind,
            strip_added_usage: strip_added_usage && kind == Kind::OpenAiSse,
            splitter: sse::Splitter::new(MAX_SSE_EVENT),
            json: Vec::new(),
            json_overflow: false,
            events: Default::default(),
            metered: Metered::default(),
            request: Default::default(),
            first_token_seen: false,
        }
    }

    /// Whether `observe` may change the bytes (then it returns whole events only).
    pub fn rewrites(&self) -> bool {
        self.strip_added_usage
    }

    /// Sees a chunk of the response body. Returns the bytes to forward: the chunk itself, or,
    /// when stripping, the complete events it finished (minus the added usage chunk and the
    /// `"usage":null` members the added option puts in every chunk).
    pub fn observe(&mut self, chunk: &[u8]) -> Option<Vec<u8>> {
        match self.kind {
            Kind::None | Kind::Binary => None,
            Kind::OpenAiJson | Kind::AnthropicJson | Kind::GeminiJson | Kind::BedrockJson | Kind::MediaJson(_) => {
                if !self.json_overflow {
                    if self.json.len() + chunk.len() > MAX_METERED_JSON {
                        self.json_overflow = true;
                        self.json = Vec::new();
                    } else {
                        self.json.extend_from_slice(chunk);
                    }
                }
                None
            }
            Kind::BedrockEvents => {
                // A broken frame ends metering here; the translator reports it to the client.
                for m in self.events.feed(chunk).unwrap_or_default() {
                    match m.event_type.as_str() {
                        "contentBlockDelta" => self.first_token_seen = true,
                        "metadata" => {
                            let v: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
                            self.metered.usage = v.get("usage").and_then(bedrock_usage);
                            self.metered.complete = true;
                        }
                        _ => {}
                    }
                }
                None
            }
            Kind::OpenAiSse | Kind::ResponsesSse | Kind::AnthropicSse | Kind::GeminiSse | Kind::MediaSse(_) => {
                let events = self.splitter.feed(chunk);
                let mut out = self.strip_added_usage.then(Vec::new);
                if self.splitter.overflowed() && self.strip_added_usage {
                    // Cannot parse: stop rewriting and hand through what we hold.
                    self.strip_added_usage = false;
                    let mut bytes: Vec<u8> = events.iter().flat_map(|e| e.raw.to_vec()).collect();
                    bytes.extend_from_slice(&self.splitter.take_pending());
                    return Some(bytes);
                }
                for event in events {
                    let keep = self.event(&event);
                    if let Some(out) = out.as_mut() {
                        if keep {
                            out.extend_from_slice(&strip_null_usage(&event.raw));
                        }
                    }
                }
                out
            }
        }
    }

    /// Whether an event can carry anything the meter reads. Most stream events are content
    /// deltas: once the first token is seen they are skipped without parsing them.
    fn worth_parsing(&self, event: &sse::Event) -> bool {
        let data = event.data.as_str();
        match self.kind {
            Kind::OpenAiSse => !self.first_token_seen || self.metered.model.is_none() || data.contains("\"usage\":{"),
            Kind::ResponsesSse => match event.name.as_deref() {
                Some(name) => {
                    name == "response.completed"
                        || name == "response.incomplete"
                        || name == "response.failed"
                        || (!self.first_token_seen && name.ends_with(".delta"))
                }
                None => true,
            },
            Kind::AnthropicSse => match event.name.as_deref() {
                Some("content_block_delta") => !self.first_token_seen,
                Some("message_start" | "message_delta" | "message_stop") => true,
                Some(_) => false,
                None => true,
            },
            Kind::GeminiSse => !self.first_token_seen || data.contains("usageMetadata"),
            // Deltas carry audio or image bytes: only the first (time to first token) and the
            // final events are worth parsing.
            Kind::MediaSse(_) => !self.first_token_seen || super::media::is_final(event.name.as_deref(), data),
            Kind::OpenAiJson
            | Kind::AnthropicJson
            | Kind::GeminiJson
            | Kind::BedrockJson
            | Kind::BedrockEvents
            | Kind::MediaJson(_)
            | Kind::Binary
            | Kind::None => false,
        }
    }

    /// Interprets one event; returns whether the client should see it.
    fn event(&mut self, event: &sse::Event) -> bool {
        if event.data == "[DONE]" || !self.worth_parsing(event) {
            return true;
        }
        let Ok(v) = serde_json::from_str::<Value>(&event.data) else {
            return true;
        };
        match self.kind {
            Kind::OpenAiSse => {
                if let Some(m) = v.get("model").and_then(Value::as_str) {
                    self.metered.model.get_or_insert_with(|| m.to_string());
                }
                let choices = v.get("choices").and_then(Value::as_array);
                if let Some(choices) = choices {
                    let delta = choices
                        .first()
                        .and_then(|c| c.get("delta").or(c.get("text").map(|_| c)));
                    let has_content = delta.is_some_and(|d| {
                        d.get("content").and_then(Value::as_str).is_some_and(|s| !s.is_empty())
                            || d.get("text").and_then(Value::as_str).is_some_and(|s| !s.is_empty())
                            || d.get("tool_calls").is_some()
                            || d.get("reasoning_content").is_some()
                    });
                    if has_content {
                        self.first_token_seen = true;
                    }
                }
                if let Some(u) = v.get("usage").filter(|u| !u.is_null()).and_then(openai_usage) {
                    self.metered.usage = Some(u);
                    self.metered.complete = true;
                    // The usage-only chunk (empty choices) exists because we asked for it.
                    let usage_only = choices.is_none_or(|c| c.is_empty());
                    return !(self.strip_added_usage && usage_only);
                }
                true
            }
            Kind::ResponsesSse => {
                match v.get("type").and_then(Value::as_str) {
                    Some("response.output_text.delta") | Some("response.reasoning_summary_text.delta") => {
                        self.first_token_seen = true
                    }
                    Some("response.completed") | Some("response.incomplete") | Some("response.failed") => {
                        let resp = &v["response"];
                        if let Some(m) = resp.get("model").and_then(Value::as_str) {
                            self.metered.model = Some(m.to_string());
                        }
                        if let Some(u) = resp.get("usage").and_then(openai_usage) {
                            self.metered.usage = Some(u);
                        }
                        self.metered.complete = true;
                    }
                    _ => {}
                }
                true
            }
            Kind::AnthropicSse => {
                match v.get("type").and_then(Value::as_str) {
                    Some("message_start") => {
                        let msg = &v["message"];
                        if let Some(m) = msg.get("model").and_then(Value::as_str) {
                            self.metered.model = Some(m.to_string());
                        }
                        self.metered.usage = anthropic_usage(&msg["usage"]);
                    }
                    Some("content_block_delta") => self.first_token_seen = true,
                    Some("message_delta") => {
                        // Output tokens here are cumulative; input fields may be repeated.
                        let u = &v["usage"];
                        let usage = self.metered.usage.get_or_insert_with(Usage::default);
                        if let Some(out) = u.get("output_tokens").and_then(Value::as_u64) {
                            usage.output = out;
                        }
                        if u.get("input_tokens").is_some() {
                            if let Some(fresh) = anthropic_usage(u) {
                                usage.input = usage.input.max(fresh.input);
                                usage.cached_input = usage.cached_input.max(fresh.cached_input);
                                usage.cache_write = usage.cache_write.max(fresh.cache_write);
                            }
                        }
                    }
                    Some("message_stop") => self.metered.complete = true,
                    _ => {}
                }
                true
            }
            Kind::GeminiSse => {
                if v["candidates"][0]["content"]["parts"]
                    .as_array()
                    .is_some_and(|p| !p.is_empty())
                {
                    self.first_token_seen = true;
                }
                if let Some(m) = v.get("modelVersion").and_then(Value::as_str) {
                    self.metered.model = Some(m.to_string());
                }
                if let Some(u) = v.get("usageMetadata").and_then(gemini_usage) {
                    self.metered.usage = Some(u);
                }
                if v["candidates"][0].get("finishReason").is_some() {
                    self.metered.complete = true;
                }
                true
            }
            Kind::MediaSse(_) => {
                super::media::event(&v, &mut self.metered, &mut self.first_token_seen);
                true
            }
            Kind::OpenAiJson
            | Kind::AnthropicJson
            | Kind::GeminiJson
            | Kind::BedrockJson
            | Kind::BedrockEvents
            | Kind::MediaJson(_)
            | Kind::Binary
            | Kind::None => true,
        }
    }

    /// At the end of the body (`ended`: the upstream finished it; otherwise it was cut).
    /// Returns the bytes still held back (when rewriting) and what was learned.
    pub fn finish(&mut self, ended: bool) -> (Vec<u8>, Metered) {
        let mut rest = Vec::new();
        match self.kind {
            Kind::MediaJson(op) if ended && !self.json_overflow => {
                super::media::answer(op, &self.json, &mut self.metered);
            }
            Kind::Binary => self.metered.complete = ended,
            Kind::OpenAiJson | Kind::AnthropicJson | Kind::GeminiJson | Kind::BedrockJson
                if ended && !self.json_overflow =>
            {
                // OpenAI's answers: usage read into its fields directly (no `Value` tree);
                // anything that does not fit that shape takes the general path below, which
                // gives the same result.
                if self.kind == Kind::OpenAiJson {
                    if let Ok(a) = serde_json::from_slice::<OpenAiAnswer<'_>>(&self.json) {
                        if let Some(m) = a.model.or(a.model_version) {
                            self.metered.model = Some(m.into_owned());
                        }
                        self.metered.usage = a.usage.flatten().and_then(OpenAiUsage::usage);
                        self.metered.complete = true;
                        if !ended {
                            self.metered.complete = false;
                        }
                        return (rest, self.metered.clone());
                    }
                }
                // Only the members that matter are read (the rest of the answer is skipped
                // unparsed); an answer that does not fit that shape (a repeated member, a
                // model that is not a string) is read whole, as before.
                let answer = serde_json::from_slice::<Answer<'_>>(&self.json).or_else(|_| {
                    serde_json::from_slice::<Value>(&self.json).map(|v| Answer {
                        model: v.get("model").and_then(Value::as_str).map(|m| m.to_string().into()),
                        model_version: v
                            .get("modelVersion")
                            .and_then(Value::as_str)
                            .map(|m| m.to_string().into()),
                        usage: v.get("usage").cloned(),
                        usage_metadata: v.get("usageMetadata").cloned(),
                    })
                });
                if let Ok(a) = answer {
                    if let Some(m) = a.model.or(a.model_version) {
                        self.metered.model = Some(m.into_owned());
                    }
                    let u = a.usage.as_ref().filter(|u| !u.is_null());
                    self.metered.usage = match self.kind {
                        Kind::AnthropicJson => u.and_then(anthropic_usage),
                        Kind::GeminiJson => a.usage_metadata.as_ref().and_then(gemini_usage),
                        Kind::BedrockJson => u.and_then(bedrock_usage),
                        _ => u.and_then(openai_usage),
                    };
                    self.metered.complete = true;
                }
            }
            _ => {
                if self.strip_added_usage {
                    rest = self.splitter.take_pending().to_vec();
                }
            }
        }
        if !ended {
            self.metered.complete = false;
        }
        super::media::priced_by(&self.request, self.metered.complete, &mut self.metered);
        (rest, self.metered.clone())
    }

    /// What the request said that prices its answer beyond tokens (a speech request's
    /// characters, an image request's quality and size).
    pub fn priced_by(mut self, request: super::media::RequestUnits) -> Meter {
        self.request = request;
        self
    }
}

/// The members of a whole JSON answer that metering reads.
#[derive(serde::Deserialize)]
struct Answer<'a> {
    #[serde(borrow, default)]
    model: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "modelVersion", borrow, default)]
    model_version: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    usage: Option<Value>,
    #[serde(rename = "usageMetadata", default)]
    usage_metadata: Option<Value>,
}

/// An OpenAI answer's members that metering reads, typed: `usage` without building a `Value`.
/// Present-but-null members are told from absent ones (`Option<Option<_>>`), as
/// [`openai_usage`] tells them apart; a member of another type fails the parse (and the
/// general path reads the answer).
#[derive(serde::Deserialize)]
struct OpenAiAnswer<'a> {
    #[serde(borrow, default)]
    model: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "modelVersion", borrow, default)]
    model_version: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, deserialize_with = "present")]
    usage: Option<Option<OpenAiUsage>>,
}

/// OpenAI's `usage`: chat, completions and embeddings name tokens `prompt_`/`completion_`,
/// the Responses API `input_`/`output_`.
#[derive(serde::Deserialize)]
struct OpenAiUsage {
    #[serde(default, deserialize_with = "present")]
    prompt_tokens: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    input_tokens: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    completion_tokens: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    output_tokens: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    total_tokens: Option<serde::de::IgnoredAny>,
    #[serde(default, deserialize_with = "present")]
    prompt_tokens_details: Option<Option<TokenDetails>>,
    #[serde(default, deserialize_with = "present")]
    input_tokens_details: Option<Option<TokenDetails>>,
    #[serde(default, deserialize_with = "present")]
    completion_tokens_details: Option<Option<TokenDetails>>,
    #[serde(default, deserialize_with = "present")]
    output_tokens_details: Option<Option<TokenDetails>>,
}

#[derive(serde::Deserialize)]
struct TokenDetails {
    #[serde(default, deserialize_with = "present")]
    cached_tokens: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    reasoning_tokens: Option<Option<u64>>,
}

/// A member that is there: `Some`, whatever its value (null included); absent ones take the
/// field's default, `None`.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

impl OpenAiUsage {
    /// What [`openai_usage`] reads from the same object.
    fn usage(self) -> Option<Usage> {
        if self.prompt_tokens.is_none() && self.input_tokens.is_none() && self.total_tokens.is_none() {
            return None;
        }
        let n = |v: Option<Option<u64>>| v.flatten().unwrap_or(0);
        let details = |a: Option<Option<TokenDetails>>, b: Option<Option<TokenDetails>>| a.or(b).flatten();
        let cached = details(self.prompt_tokens_details, self.input_tokens_details).and_then(|d| d.cached_tokens);
        let reasoning =
            details(self.completion_tokens_details, self.output_tokens_details).and_then(|d| d.reasoning_tokens);
        Some(Usage {
            input: n(self.prompt_tokens.or(self.input_tokens)),
            output: n(self.completion_tokens.or(self.output_tokens)),
            cached_input: n(cached),
            cache_write: 0,
            reasoning: n(reasoning),
            ..Usage::default()
        })
    }
}

/// Removes the `"usage":null` member that `stream_options.include_usage` adds to every chunk.
fn strip_null_usage(raw: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    const PATTERNS: [&[u8]; 2] = [b",\"usage\":null", b"\"usage\":null,"];
    for p in PATTERNS {
        if let Some(at) = raw.windows(p.len()).position(|w| w == p) {
            let mut v = raw[..at].to_vec();
            v.extend_from_slice(&raw[at + p.len()..]);
            return std::borrow::Cow::Owned(v);
        }
    }
    std::borrow::Cow::Borrowed(raw)
}

#[cfg(test)]
#[path = "usage_tests.rs"]
mod tests;
