//! A provider's server-sent events, cut anywhere: input = cut seed (1 byte), buffer limit
//! selector (1 byte), then the stream.
#![no_main]

use gateway::llm::{sse::Splitter, usage::MAX_SSE_EVENT};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [cut, limit, stream @ ..] = data else {
        return;
    };
    // Small limits reach the overflow path (an event larger than the buffer).
    let limit = match limit % 4 {
        0 => MAX_SSE_EVENT,
        1 => 256,
        2 => 16,
        _ => 0,
    };
    let mut splitter = Splitter::new(limit);
    for chunk in tollgate_fuzz::chunks(stream, *cut) {
        let _ = splitter.feed(chunk);
    }
    let _ = splitter.take_pending();
});
