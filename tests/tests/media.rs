//! Audio, images, model lists and Azure deployment paths through real capture, with the
//! official OpenAI Python SDK (`tests/clients/openai_media.py`) and curl as the clients, and a
//! fake provider speaking the real wire formats (`tests::fake_media`).

use serde_json::Value;
use tests::{
    fake_llm::FakeLlm,
    fake_media::{sha256_hex, IMAGE_TOKENS, SPEECH_BYTES, TRANSCRIBE_TOKENS},
    l7::{curl, openai_setup, post_json, sdk_json, OpenAiSetup},
    privileged, Gateway,
};

fn media(s: &OpenAiSetup, gw: &Gateway, args: &[&str]) -> Value {
    sdk_json(s, gw, "api.openai.com", &s.captured_ip, "openai_media.py", args)
}

/// Nano-dollars per token (USD per 1M tokens × 1000), as in the shipped price table.
const fn per_token(usd_per_million_thousandths: u64) -> u64 {
    usd_per_million_thousandths
}

/// A 3 MiB "audio file": bigger than any frame, so it streams through in many.
fn audio_file(s: &OpenAiSetup) -> (std::path::PathBuf, Vec<u8>) {
    let data: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i * 7 % 253) as u8).collect();
    let path = s.dir.path("speech.wav");
    std::fs::write(&path, &data).unwrap();
    (path, data)
}

#[test]
fn audio_and_images_through_capture_are_metered_priced_and_streamed() {
    if !privileged("audio_and_images_through_capture_are_metered_priced_and_streamed") {
        return;
    }
    let (s, builder) = openai_setup(70, "media-metering", "");
    // whisper-1 goes to the secondary backend: only a model read from the form routes it.
    // Bodies read whole are held to 1 MiB: the 3 MiB audio file below streams through.
    let gw = builder
        .yaml(
            "routes:\n  - name: whisper\n    match: { models: [whisper-1] }\n    backends: [{ backend: secondary }]\n",
        )
        .yaml("proxy:\n  maxRequestBody: 1048576\n")
        .start();
    let (file, data) = audio_file(&s);
    let file = file.to_str().unwrap();

    // 1. gpt-4o-transcribe: tokens with their audio part, priced apart.
    let v = media(&s, &gw, &["transcribe", "gpt-4o-transcribe", file]);
    assert_eq!(v["text"], "hello from primary", "{v}");
    let records = gw.wait_audit(1);
    let r = &records[0];
    let (input, audio, output) = TRANSCRIBE_TOKENS;
    assert_eq!(r["operation"], "audio_transcriptions");
    assert_eq!(r["model"], "gpt-4o-transcribe");
    assert_eq!(r["tokens"]["input"], input);
    assert_eq!(r["tokens"]["audio_input"], audio);
    assert_eq!(r["tokens"]["output"], output);
    assert_eq!(v["usage"]["input_tokens"], input, "the SDK saw what the record says");
    let cost = audio * per_token(6000) + (input - audio) * per_token(2500) + output * per_token(10_000);
    assert_eq!(r["cost_nano_usd"], cost);
    assert_eq!(r["usage_status"], "complete");
    // The file reached the provider whole, with Tollgate's key and not the client's.
    let got = &s.primary.received()[0];
    let form = got.form.as_ref().expect("a multipart body");
    assert_eq!(form.files["file"], (data.len(), sha256_hex(&data)));
    assert_eq!(form.fields["model"], "gpt-4o-transcribe");
    assert_eq!(got.headers["authorization"], format!("Bearer {}", tests::l7::SECRET_1));

    // 2. whisper-1, verbose JSON: seconds, priced per minute; routed by the form's model.
    let v = media(&s, &gw, &["transcribe", "whisper-1", file, "verbose_json"]);
    assert_eq!(v["text"], "hello from secondary", "{v}");
    let r = &gw.wait_audit(2)[1];
    assert_eq!(r["route"], "whisper");
    assert_eq!(r["units"]["audio_seconds"], 9.0);
    assert_eq!(r["cost_nano_usd"], 9 * 100_000, "$0.006 a minute");
    // Text transcripts report nothing: recorded as missing, not made up.
    let v = media(&s, &gw, &["transcribe", "whisper-1", file, "text"]);
    assert_eq!(v["text"], "hello from secondary\n");
    let r = &gw.wait_audit(3)[2];
    assert_eq!(r["usage_status"], "missing");
    assert!(r["cost_nano_usd"].is_null());

    // 3. A streamed transcription: events pass through, usage from the final one.
    let v = media(&s, &gw, &["transcribe_stream", "gpt-4o-mini-transcribe", file]);
    assert_eq!(v["text"], "hello from primary", "{v}");
    let r = &gw.wait_audit(4)[3];
    assert_eq!(r["stream"], true);
    assert_eq!(r["tokens"]["output"], output);
    assert!(r["ttft_ms"].as_f64().is_some());

    // 4. Speech: audio bytes streamed back untouched, priced by the input's characters.
    let text = "Tollgate meters speech by characters.";
    let out = s.dir.path("speech.mp3");
    let gate = s.dir.path("speech-gate");
    s.primary.set_script(tests::fake_llm::Script {
        gate: Some(gate.clone()),
        ..Default::default()
    });
    let v = media(
        &s,
        &gw,
        &["speech", "tts-1", out.to_str().unwrap(), text, gate.to_str().unwrap()],
    );
    s.primary.set_script(Default::default());
    let speech_call = s.primary.received().last().unwrap().clone();
    assert_eq!(
        speech_call.gate_opened(),
        Some(true),
        "the first audio reached the client while the provider held the rest"
    );
    let expected: Vec<u8> = (0..SPEECH_BYTES).map(|i| (i * 31 % 251) as u8).collect();
    assert_eq!(v["bytes"], SPEECH_BYTES, "{v}");
    assert_eq!(v["sha256"], sha256_hex(&expected));
    let r = &gw.wait_audit(5)[4];
    assert_eq!(r["operation"], "audio_speech");
    assert_eq!(r["units"]["characters"], text.chars().count());
    assert_eq!(r["cost_nano_usd"], text.chars().count() as u64 * 15_000);
    assert_eq!(
        r["policy"]["price"]["nano_usd_per_unit"]["character"], 15_000,
        "the record says the rate"
    );
    assert_eq!(r["response_bytes"], SPEECH_BYTES);

    // 5. dall-e-3: per image, by quality and size.
    let v = media(&s, &gw, &["images", "dall-e-3", "2", "hd", "1024x1792"]);
    assert_eq!(v["images"], 2, "{v}");
    let r = &gw.wait_audit(6)[5];
    assert_eq!(r["operation"], "images_generations");
    assert_eq!(r["units"]["images"], 2);
    assert_eq!(r["units"]["image_tier"], "hd/1024x1792");
    assert_eq!(r["cost_usd"], "0.24");

    // 6. gpt-image-1 edit (multipart, the image streamed): tokens with their image part.
    let image = s.dir.path("in.png");
    std::fs::write(&image, vec![0x89u8; 200_000]).unwrap();
    let v = media(&s, &gw, &["edit", "gpt-image-1", image.to_str().unwrap()]);
    assert_eq!(v["images"], 1, "{v}");
    let r = &gw.wait_audit(7)[6];
    let (input, image_part, output) = IMAGE_TOKENS;
    assert_eq!(r["operation"], "images_edits");
    assert_eq!(r["tokens"]["image_input"], image_part);
    let cost = image_part * 10_000 + (input - image_part) * 5000 + output * 40_000;
    assert_eq!(r["cost_nano_usd"], cost);
    let sent = s.primary.received().last().unwrap().form.clone().unwrap();
    assert_eq!(sent.files["image"].0, 200_000);

    // 7. A variation (multipart; the SDK names no model, the endpoint serves only dall-e-2):
    // per image at the size asked, the image streamed through as sent.
    let v = media(&s, &gw, &["variation", image.to_str().unwrap(), "2", "512x512"]);
    assert_eq!(v["images"], 2, "{v}");
    let r = &gw.wait_audit(8)[7];
    assert_eq!(
        (r["operation"].as_str(), r["model"].as_str()),
        (Some("images_variations"), Some("dall-e-2"))
    );
    assert_eq!(r["units"]["images"], 2);
    assert_eq!(r["units"]["image_tier"], "512x512");
    assert_eq!(r["cost_usd"], "0.036");
    let sent = s.primary.received().last().unwrap().clone();
    assert_eq!(sent.path, "/v1/images/variations");
    let form = sent.form.unwrap();
    assert_eq!(form.files["image"].0, 200_000);
    assert!(
        !form.fields.contains_key("model"),
        "the form goes as the client wrote it"
    );

    // 8. A form whose `model` comes after a file larger than maxRequestBody cannot be routed
    // without holding the file: 413 in OpenAI's shape, with its record; nothing was sent.
    let sent_before = s.primary.received().len() + s.secondary.received().len();
    let file_arg = format!("file=@{file}");
    let (status, v) = curl(
        &s.cg,
        &s.dir,
        "api.openai.com",
        &s.captured_ip,
        &gw.ca_cert(),
        &[
            "-F",
            &file_arg,
            "-F",
            "model=whisper-1",
            "https://api.openai.com/v1/audio/transcriptions",
        ],
    );
    assert!(status.starts_with("413"), "{status} {v}");
    assert_eq!(v["error"]["code"], "request_too_large");
    let r = &gw.wait_audit(9)[8];
    assert_eq!(
        (r["status"].as_u64(), r["error_reason"].as_str()),
        (Some(413), Some("body_too_large"))
    );
    assert_eq!(s.primary.received().len() + s.secondary.received().len(), sent_before);
}

/// curl, whose form puts the file before `model`: the model is still found and routes; a form
/// without a boundary, or with a broken part, gets a 400 in OpenAI's shape and its record.
#[test]
fn forms_in_any_order_route_and_bad_forms_are_refused_with_a_record() {
    if !privileged("forms_in_any_order_route_and_bad_forms_are_refused_with_a_record") {
        return;
    }
    let (s, builder) = openai_setup(71, "media-forms", "");
    let gw = builder
        .yaml(
            "routes:\n  - name: whisper\n    match: { models: [whisper-1] }\n    backends: [{ backend: secondary }]\n",
        )
        .start();
    let (file, data) = audio_file(&s);
    let url = "https://api.openai.com/v1/audio/transcriptions";
    let file_arg = format!("file=@{}", file.display());
    let run = |args: &[&str]| curl(&s.cg, &s.dir, "api.openai.com", &s.captured_ip, &gw.ca_cert(), args);
    let (status, v) = run(&["-F", &file_arg, "-F", "model=whisper-1", url]);
    assert!(status.starts_with("200"), "{status} {v}");
    assert_eq!(v["text"], "hello from secondary");
    let got = &s.secondary.received()[0];
    assert_eq!(
        got.form.as_ref().unwrap().files["file"],
        (data.len(), sha256_hex(&data))
    );
    let r = &gw.wait_audit(1)[0];
    assert_eq!(
        (r["route"].as_str(), r["units"]["audio_seconds"].as_f64()),
        (Some("whisper"), Some(9.0))
    );

    let (status, v) = run(&["-H", "content-type: multipart/form-data", "--data-binary", "x", url]);
    assert!(status.starts_with("400"), "{status} {v}");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(v["error"]["message"].as_str().unwrap().contains("boundary"), "{v}");
    let (status, v) = run(&[
        "-H",
        "content-type: multipart/form-data; boundary=B",
        "--data-binary",
        "--B\r\nno-disposition\r\n\r\nx\r\n--B--",
        url,
    ]);
    assert!(status.starts_with("400"), "{status} {v}");
    let records = gw.wait_audit(3);
    for r in &records[1..] {
        assert_eq!(r["status"], 400);
        assert_eq!(r["error_reason"], "bad_body");
        assert_eq!(r["operation"], "audio_transcriptions");
    }
    assert_eq!(
        s.primary.received().len() + s.secondary.received().len(),
        1,
        "bad forms never left"
    );

    // Event streams the request asks for in its own words: speech's `stream_format: sse` and a
    // streamed gpt-image generation (two images) are metered from their final events.
    let json = |body: &str, path: &str| post_json(&s, &gw, path, body, &["-N"]);
    let (status, v) = json(
        r#"{"model":"gpt-4o-mini-tts","input":"hi","voice":"alloy","stream_format":"sse"}"#,
        "audio/speech",
    );
    assert!(
        status.starts_with("200") && v.as_str().unwrap().contains("speech.audio.done"),
        "{status} {v}"
    );
    let (status, v) = json(
        r#"{"model":"gpt-image-1","prompt":"x","n":2,"stream":true}"#,
        "images/generations",
    );
    assert!(
        status.starts_with("200") && v.as_str().unwrap().contains("image_generation.completed"),
        "{status} {v}"
    );
    let records = gw.wait_audit(5);
    let (speech, images) = (&records[3], &records[4]);
    assert_eq!(
        (speech["stream"].as_bool(), speech["tokens"]["output"].as_u64()),
        (Some(true), Some(101))
    );
    assert_eq!(
        speech["cost_nano_usd"],
        14 * 600 + 101 * 12_000,
        "gpt-4o-mini-tts by tokens"
    );
    let (input, _, output) = IMAGE_TOKENS;
    assert_eq!(images["units"]["images"], 2);
    assert_eq!(images["tokens"]["output"], 2 * output);
    assert_eq!(images["tokens"]["input"], 2 * input);
    assert_eq!(images["usage_status"], "complete");
}

/// `listModels: routes`: the SDK's model list is what this workload's routes allow; a model
/// it may not use is 404. Azure clients on deployment paths are metered as their operations.
/// A request limit holds for images as for chat.
#[test]
fn model_lists_follow_routes_azure_paths_are_operations_and_limits_hold() {
    if !privileged("model_lists_follow_routes_azure_paths_are_operations_and_limits_hold") {
        return;
    }
    // Azure's backend: plaintext, so its URL is known before the setup writes the backends.
    let azure_fake = FakeLlm::start("azure", "127.20.72.10", None);
    let azure_backend = format!(
        "  - name: azure-backend\n    url: {}\n    schema: azureOpenai\n",
        azure_fake.url(false)
    );
    let (s, builder) = openai_setup(72, "media-models", &azure_backend);
    let azure_ip = "127.20.72.9";
    let gw = builder
        .provider_line("openai", "listModels: routes")
        .llm_provider("azure", &["myres.openai.azure.com"], &[azure_ip], &[443], &["backend: azure-backend"])
        .yaml(
            "routes:\n  - name: mine\n    match: { providers: [openai], models: [\"gpt-4o-mini*\", my-finetune] }\n    backends: [{ backend: primary }]\n\
             \x20 - name: others\n    match: { providers: [openai], models: [\"o3*\"], workload: { uids: [4242] } }\n    backends: [{ backend: primary }]\n\
             limits:\n  - name: one-image\n    match: { models: [dall-e-3] }\n    requestsPerMinute: 1\n"
        )
        .start();

    // 1. The list: exact names and the priced models the workload's globs match; not o3*.
    let v = media(&s, &gw, &["models"]);
    let ids: Vec<&str> = v["ids"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(ids.contains(&"gpt-4o-mini") && ids.contains(&"my-finetune"), "{v}");
    assert!(
        ids.contains(&"gpt-4o-mini-transcribe"),
        "a glob lists priced models: {v}"
    );
    assert!(!ids.iter().any(|i| i.starts_with("o3") || *i == "gpt-4o"), "{v}");
    assert_eq!(v["retrieved"], v["ids"]);
    let v = media(&s, &gw, &["retrieve", "o3"]);
    assert_eq!(v["status"], 404, "{v}");
    assert_eq!(v["body"]["code"], "not_found", "{v}");
    assert!(s.primary.received().is_empty(), "answered by Tollgate");
    let n = 2 + ids.len();
    let records = gw.wait_audit(n);
    assert!(records.iter().all(|r| r["operation"] == "models"));
    assert_eq!(records[0]["rule"], "gateway");
    assert_eq!(records[n - 1]["error_reason"], "model_not_listed");

    // 2. Azure deployment paths: the model is the deployment; the path and api-version go as sent.
    let azure = |args: &[&str]| sdk_json(&s, &gw, "myres.openai.azure.com", azure_ip, "openai_media.py", args);
    let v = azure(&["azure_chat", "gpt-4o-prod"]);
    assert_eq!(v["content"], "hello from azure", "{v}");
    let (file, _) = audio_file(&s);
    let v = azure(&["azure_transcribe", "whisper-prod", file.to_str().unwrap()]);
    assert_eq!(v["text"], "hello from azure", "{v}");
    let got = azure_fake.received();
    assert_eq!(got[0].path, "/openai/deployments/gpt-4o-prod/chat/completions");
    assert_eq!(got[0].query, "api-version=2024-10-21");
    assert_eq!(got[1].path, "/openai/deployments/whisper-prod/audio/transcriptions");
    let records = gw.wait_audit(n + 2);
    let (chat, audio) = (&records[n], &records[n + 1]);
    assert_eq!(
        (chat["operation"].as_str(), chat["model"].as_str()),
        (Some("chat_completions"), Some("gpt-4o-prod"))
    );
    assert_eq!(chat["tokens"]["total"], 13);
    assert_eq!(audio["operation"], "audio_transcriptions");
    assert_eq!(audio["model"], "whisper-prod");
    assert_eq!(
        audio["units"]["audio_seconds"], 9.0,
        "whisper deployments report seconds"
    );

    // 3. A request limit on dall-e-3 (per workload: curl here): the second image request is
    // refused in OpenAI's shape, before any provider sees it.
    let body = r#"{"model":"dall-e-3","prompt":"a lighthouse"}"#;
    let post = || post_json(&s, &gw, "images/generations", body, &[]);
    tests::fresh_minute_window();
    let (status, v) = post();
    assert!(status.starts_with("200"), "{status} {v}");
    let (status, v) = post();
    assert!(status.starts_with("429"), "{status} {v}");
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert_eq!(s.primary.received().len(), 1, "the refused request never left");
    let records = gw.wait_audit(n + 4);
    assert_eq!(records[n + 3]["limit"]["limit"], "one-image");
    assert_eq!(records[n + 2]["cost_usd"], "0.04");
}
