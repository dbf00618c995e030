//! A workload's request body through every translation direction and the public request
//! translators: input = flags (1 byte), combination selector (1 byte), then the body.
//! Flags: bits 0-1 the route's model override (none, a plain name, a Titan and a Gemini
//! embedding model), bit 2 the backend names a project and region (Vertex), bit 3 a deployment
//! (Azure).
#![no_main]

use bytes::Bytes;
use gateway::llm::translate::{self, BackendSpec, ClientRequest, DIRECTIONS};
use libfuzzer_sys::fuzz_target;

const MODELS: [Option<&str>; 4] = [
    None,
    Some("fuzz-model"),
    Some("amazon.titan-embed-text-v2:0"),
    Some("gemini-embedding-001"),
];

fuzz_target!(|data: &[u8]| {
    let [flags, select, body @ ..] = data else {
        return;
    };
    let bytes = Bytes::copy_from_slice(body);
    // The proxy hands directions a body only when it parsed.
    let parsed = gateway::llm::parse(body).ok();
    let model_override = MODELS[usize::from(flags & 3)];
    let vertex = flags & 4 != 0;
    let combos = tollgate_fuzz::direction_combos();
    for (i, direction) in DIRECTIONS.iter().enumerate() {
        let Some(&(client, operation, backend)) = combos[i].get(usize::from(*select) % combos[i].len().max(1)) else {
            continue;
        };
        let req = ClientRequest {
            schema: client,
            operation,
            path_and_query: "/v1/fuzz?x=1",
            body: parsed.as_ref().map(|p| (&bytes, p)),
            form: None,
            model_override,
        };
        let spec = BackendSpec {
            name: "fuzz",
            schema: backend,
            project: vertex.then_some("fuzz-project"),
            region: vertex.then_some("us-central1"),
            deployment: (flags & 8 != 0).then_some("fuzz-deployment"),
            api_version: "2024-10-21",
        };
        let _ = direction.request(&req, &spec);
    }
    // The public translators take any bytes, parsed or not.
    let model = model_override
        .or(parsed.as_ref().and_then(|p| p.model.as_deref()))
        .unwrap_or_default();
    let _ = translate::openai_chat_to_anthropic(body, model);
    let _ = translate::anthropic_to_openai_chat(body, model);
    let _ = translate::openai_chat_to_gemini(body);
    let _ = translate::openai_chat_to_bedrock(body, model);
    let _ = translate::openai_embeddings_to_gemini(body, model);
    let _ = translate::openai_embeddings_to_vertex(body, model);
    let _ = translate::openai_embeddings_to_titan(body, model);
});
