//! A provider's answers through the answer translators of every translating direction: each
//! direction is given a fixed valid request, then the input goes to its JSON translator (and,
//! for fan-outs, through `combine` first) and, cut anywhere, to its stream translator.
//! Input = cut seed, flags, status selector (1 byte each), then the answer. Flags: bit 0 the
//! request streams, bit 1 it asks for stream usage, bit 2 embeddings in base64, bit 3 the
//! answer is `0xFF`-separated Bedrock records framed as event-stream messages
//! (`tollgate_fuzz::bedrock_frames`) for Bedrock backends.
#![no_main]

use bytes::Bytes;
use gateway::llm::{
    translate::{BackendSpec, ClientRequest, UpstreamBody, DIRECTIONS},
    ApiSchema, Operation,
};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const STATUSES: [u16; 12] = [200, 201, 400, 401, 403, 404, 413, 422, 429, 500, 503, 529];

/// A request each direction translates: (client schema, operation) → body.
fn request_body(client: ApiSchema, operation: Operation, flags: u8) -> String {
    let (stream, include_usage, base64) = (flags & 1 != 0, flags & 2 != 0, flags & 4 != 0);
    match (client, operation) {
        (_, Operation::Embeddings) => format!(
            r#"{{"model":"amazon.titan-embed-text-v2:0","input":["a","b"],"encoding_format":"{}"}}"#,
            if base64 { "base64" } else { "float" }
        ),
        (ApiSchema::Anthropic, _) => format!(
            r#"{{"model":"fuzz-model","max_tokens":16,"stream":{stream},"messages":[{{"role":"user","content":"hi"}}]}}"#
        ),
        _ if stream => format!(
            r#"{{"model":"fuzz-model","max_tokens":16,"stream":true,"stream_options":{{"include_usage":{include_usage}}},"messages":[{{"role":"user","content":"hi"}}]}}"#
        ),
        _ => r#"{"model":"fuzz-model","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#.into(),
    }
}

fuzz_target!(|data: &[u8]| {
    let [cut, flags, status, answer @ ..] = data else {
        return;
    };
    let status = STATUSES[usize::from(*status) % STATUSES.len()];
    let framed = (flags & 8 != 0).then(|| tollgate_fuzz::bedrock_frames(answer));
    let combos = tollgate_fuzz::direction_combos();
    for (i, direction) in DIRECTIONS.iter().enumerate() {
        let Some(&(client, operation, backend)) = combos[i].first() else {
            continue;
        };
        let body = Bytes::from(request_body(client, operation, *flags));
        let Ok(parsed) = gateway::llm::parse(&body) else {
            continue;
        };
        let req = ClientRequest {
            schema: client,
            operation,
            path_and_query: "/v1/fuzz",
            body: Some((&body, &parsed)),
            form: None,
            model_override: None,
        };
        let spec = BackendSpec {
            name: "fuzz",
            schema: backend,
            project: None,
            region: None,
            deployment: None,
            api_version: "2024-10-21",
        };
        let Ok(upstream) = direction.request(&req, &spec) else {
            continue;
        };
        let Some(translate) = upstream.answer.translate else {
            continue;
        };
        let _ = (translate.json)(answer, status);
        if let UpstreamBody::FanOut { combine, .. } = upstream.body {
            // The fan-out combines the answers (each parsed JSON) and translates the result.
            if let Ok(Value::Array(answers)) = serde_json::from_slice::<Value>(answer) {
                let _ = (translate.json)(combine(&answers).to_string().as_bytes(), 200);
            }
        }
        if let Some(mut stream) = translate.stream {
            let bytes = match &framed {
                Some(frames) if backend == ApiSchema::Bedrock => frames.as_slice(),
                _ => answer,
            };
            for chunk in tollgate_fuzz::chunks(bytes, *cut) {
                let _ = stream.feed(chunk);
            }
        }
    }
});
