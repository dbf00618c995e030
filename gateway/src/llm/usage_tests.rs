//! Golden fixtures (`testdata/<provider>/<case>`) written from the providers' API references,
//! with exact token counts asserted.

use super::*;

fn fixture(path: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/llm/testdata")
        .join(path);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Feeds `body` in chunks of `step` bytes; returns (forwarded bytes, metered).
fn run(meter: &mut Meter, body: &[u8], step: usize, ended: bool) -> (Vec<u8>, Metered) {
    let mut out = Vec::new();
    for chunk in body.chunks(step) {
        match meter.observe(chunk) {
            Some(bytes) => out.extend(bytes),
            None => out.extend_from_slice(chunk),
        }
    }
    let (rest, metered) = meter.finish(ended);
    out.extend(rest);
    (out, metered)
}

fn usage(input: u64, output: u64, cached: u64, write: u64, reasoning: u64) -> Option<Usage> {
    Some(Usage {
        input,
        output,
        cached_input: cached,
        cache_write: write,
        reasoning,
        ..Usage::default()
    })
}

#[test]
fn openai_chat_json() {
    let mut m = Meter::new(ApiSchema::Openai, Operation::ChatCompletions, false, false);
    let (_, got) = run(&mut m, &fixture("openai/chat-basic.response.json"), 64, true);
    assert_eq!(got.usage, usage(19, 10, 0, 0, 0));
    assert_eq!(got.model.as_deref(), Some("gpt-4o-2024-08-06"));
    assert!(got.complete);
}

#[test]
fn a_json_answer_outside_the_fast_shape_is_still_metered() {
    // A repeated member defeats the typed reader; the whole-value reader takes the last one,
    // as it always did.
    let body = br#"{"model":"a","model":"gpt-4o","usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#;
    let mut m = Meter::new(ApiSchema::Openai, Operation::ChatCompletions, false, false);
    let (_, got) = run(&mut m, body, 64, true);
    assert_eq!(got.usage, usage(3, 4, 0, 0, 0));
    assert_eq!(got.model.as_deref(), Some("gpt-4o"));
}

#[test]
fn openai_cached_and_reasoning_tokens_are_parts_of_input_and_output() {
    let mut m = Meter::new(ApiSchema::Openai, Operation::ChatCompletions, false, false);
    let (_, got) = run(
        &mut m,
        &fixture("openai/chat-cached-reasoning.response.json"),
        4096,
        true,
    );
    assert_eq!(got.usage, usage(2048, 900, 1536, 0, 832));
}

#[test]
fn openai_embeddings_json() {
    let mut m = Meter::new(ApiSchema::Openai, Operation::Embeddings, false, false);
    let (_, got) = run(&mut m, &fixture("openai/embeddings.response.json"), 7, true);
    assert_eq!(got.usage, usage(8, 0, 0, 0, 0));
}

#[test]
fn openai_stream_usage_chunk_is_read_at_any_chunking() {
    let body = fixture("openai/chat-stream-usage.sse");
    for step in [1, 3, 17, 100, 10_000] {
        let mut m = Meter::new(ApiSchema::Openai, Operation::ChatCompletions, true, false);
        let (out, got) = run(&mut m, &body, step, true);
        assert_eq!(out, body, "passed through untouched when the client asked for usage");
        assert_eq!(got.usage, usage(12, 2, 0, 0, 0), "step {step}");
        assert!(got.complete && m.first_token_seen);
        assert_eq!(got.model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
    }
}

#[test]
fn usage_added_by_tollgate_is_removed_byte_for_byte() {
    // What the client would have seen without Tollgate is exactly the no-usage fixture.
    let with = fixture("openai/chat-stream-usage.sse");
    let without = fixture("openai/chat-stream-no-usage.sse");
    for step in [1, 5, 64, 10_000] {
        let mut m = Meter::new(ApiSchema::Openai, Operation::ChatCompletions, true, true);
        let (out, got) = run(&mut m, &with, step, true);
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&without),
            "step {step}"
        );
        assert_eq!(got.usage, usage(12, 2, 0, 0, 0));
    }
}

#[test]
fn openai_stream_without_usage_yields_none() {
    let mut m = Meter::new(ApiSchema::Openai, Operation::ChatCompletions, true, false);
    let (_, got) = run(&mut m, &fixture("openai/chat-stream-no-usage.sse"), 50, true);
    assert_eq!(got.usage, None);
}

#[test]
fn openai_responses_stream_completed_event() {
    let mut m = Meter::new(ApiSchema::Openai, Operation::Responses, true, false);
    let (_, got) = run(&mut m, &fixture("openai/responses-stream.sse"), 13, true);
    assert_eq!(got.usage, usage(37, 11, 5, 0, 0));
    assert_eq!(got.model.as_deref(), Some("gpt-4.1-2025-04-14"));
    assert!(got.complete && m.first_token_seen);
}

#[test]
fn anthropic_json_adds_cache_reads_and_writes_to_input() {
    let mut m = Meter::new(ApiSchema::Anthropic, Operation::Messages, false, false);
    let (_, got) = run(&mut m, &fixture("anthropic/messages.response.json"), 32, true);
    assert_eq!(got.usage, usage(2112, 6, 2000, 100, 0));
}

#[test]
fn anthropic_stream_message_start_plus_delta() {
    let mut m = Meter::new(ApiSchema::Anthropic, Operation::Messages, true, false);
    let (_, got) = run(&mut m, &fixture("anthropic/messages-stream.sse"), 9, true);
    assert_eq!(got.usage, usage(1049, 15, 1024, 0, 0));
    assert!(got.complete && m.first_token_seen);
}

#[test]
fn a_stream_cut_short_yields_partial_usage() {
    let body = fixture("anthropic/messages-stream.sse");
    // Stop right after the first text delta.
    let at = String::from_utf8_lossy(&body).find("\"!\"").unwrap();
    let mut m = Meter::new(ApiSchema::Anthropic, Operation::Messages, true, false);
    let (_, got) = run(&mut m, &body[..at], 16, false);
    assert!(!got.complete);
    assert_eq!(
        got.usage,
        usage(1049, 1, 1024, 0, 0),
        "input from message_start, output so far"
    );
    let mut m = Meter::new(ApiSchema::Openai, Operation::ChatCompletions, true, true);
    let with = fixture("openai/chat-stream-usage.sse");
    let (_, got) = run(&mut m, &with[..with.len() / 2], 16, false);
    assert!(!got.complete);
    assert_eq!(got.usage, None);
}

#[test]
fn huge_counts_from_a_provider_saturate_instead_of_overflowing() {
    // Found by the usage_meter fuzz target (fuzz/regressions/usage_meter): counts near
    // u64::MAX made the sums overflow (a panic in debug builds, wrapped totals in release).
    let max = u64::MAX;
    let a = anthropic_usage(
        &serde_json::json!({"input_tokens": max, "cache_read_input_tokens": max, "cache_creation_input_tokens": 1}),
    )
    .unwrap();
    assert_eq!((a.input, a.total()), (max, max));
    let b = bedrock_usage(&serde_json::json!({"inputTokens": max, "cacheReadInputTokens": 5})).unwrap();
    assert_eq!(b.input, max);
    let g = gemini_usage(&serde_json::json!({"candidatesTokenCount": max, "thoughtsTokenCount": max})).unwrap();
    assert_eq!(g.output, max);
}

/// The typed read of an OpenAI answer's usage gives what `openai_usage` gives from the same
/// object whenever it parses (when it does not, the answer takes `openai_usage`'s path).
#[test]
fn the_typed_openai_usage_reads_what_the_value_path_reads() {
    let cases = [
        (r#"{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}"#, true),
        (
            r#"{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13,"prompt_tokens_details":{"cached_tokens":3,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":2,"accepted_prediction_tokens":0}}"#,
            true,
        ),
        (
            r#"{"input_tokens":7,"output_tokens":5,"total_tokens":12,"input_tokens_details":{"cached_tokens":1},"output_tokens_details":{"reasoning_tokens":4}}"#,
            true,
        ),
        (r#"{"prompt_tokens":8,"total_tokens":8}"#, true),
        (r#"{"total_tokens":8}"#, true),
        (r#"{}"#, true),
        (r#"{"completion_tokens":3}"#, true),
        (r#"{"prompt_tokens":null,"input_tokens":5,"completion_tokens":2}"#, true),
        (
            r#"{"prompt_tokens":4,"prompt_tokens_details":null,"input_tokens_details":{"cached_tokens":2}}"#,
            true,
        ),
        (
            r#"{"prompt_tokens":4,"prompt_tokens_details":{"cached_tokens":null}}"#,
            true,
        ),
        (r#"{"prompt_tokens":4,"total_tokens":null}"#, true),
        (r#"{"prompt_tokens":4.0,"completion_tokens":1}"#, false),
        (r#"{"prompt_tokens":-1,"completion_tokens":1}"#, false),
        (r#"{"prompt_tokens":"4"}"#, false),
        (r#"{"prompt_tokens":4,"prompt_tokens_details":7}"#, false),
    ];
    for (usage, typed_parses) in cases {
        let typed = serde_json::from_str::<OpenAiUsage>(usage);
        assert_eq!(typed.is_ok(), typed_parses, "{usage}");
        if let Ok(t) = typed {
            let value: Value = serde_json::from_str(usage).unwrap();
            assert_eq!(t.usage(), openai_usage(&value), "{usage}");
        }
    }
    // Whole answers: the same record either way, model included; a usage of another shape, or
    // a null one, ends the same as through the general path.
    for answer in [
        r#"{"id":"x","model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}}"#,
        r#"{"model":"gpt-4o-mini","usage":null}"#,
        r#"{"model":"gpt-4o-mini"}"#,
        r#"{"model":"gpt-4o-mini","usage":{"prompt_tokens":1.5}}"#,
        r#"{"model":"m","model":"n","usage":{"prompt_tokens":1}}"#,
        r#"{"modelVersion":"gemini-x","usage":{"input_tokens":3}}"#,
    ] {
        let mut fast = Meter::new(ApiSchema::Openai, Operation::ChatCompletions, false, false);
        let _ = fast.observe(answer.as_bytes());
        let (_, got) = fast.finish(true);
        let v: Value = serde_json::from_str(answer).unwrap_or(Value::Null);
        let want_usage = v.get("usage").filter(|u| !u.is_null()).and_then(openai_usage);
        assert_eq!(got.usage, want_usage, "{answer}");
        assert!(got.complete, "{answer}");
    }
}
