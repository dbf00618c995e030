//! The first bytes of a captured connection (ClientHello with SNI/ALPN, plaintext HTTP, the
//! HTTP/2 preface): whatever a workload sends, `classify` answers without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = gateway::capture::classify::classify(data);
});
