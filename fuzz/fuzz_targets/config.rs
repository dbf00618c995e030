//! The YAML configuration: parsed and validated without panicking, whatever it holds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = gateway::config::Config::parse(text);
    }
});
