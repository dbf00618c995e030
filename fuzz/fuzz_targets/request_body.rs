//! A workload's request body: `parse` reads `model`, `stream`, `stream_options` and the token
//! limits; a body that parses is then rewritten as the proxy may (model override, added
//! `stream_options.include_usage`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if gateway::llm::parse(data).is_ok() {
        for (model, add_include_usage) in [(Some("fuzz-model"), false), (None, true), (Some("fuzz-model"), true)] {
            let _ = gateway::llm::rewrite(data, model, add_include_usage);
        }
    }
});
