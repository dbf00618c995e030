//! Bedrock's AWS event-stream framing, cut anywhere: input = cut seed (1 byte), flags (1 byte:
//! bit 0 rewrites the frames' CRCs so headers and payloads are decoded), then the stream.
#![no_main]

use gateway::llm::eventstream::Decoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [cut, flags, stream @ ..] = data else {
        return;
    };
    let mut stream = stream.to_vec();
    if flags & 1 != 0 {
        tollgate_fuzz::fix_crcs(&mut stream);
    }
    let mut decoder = Decoder::default();
    for chunk in tollgate_fuzz::chunks(&stream, *cut) {
        let _ = decoder.feed(chunk);
    }
});
