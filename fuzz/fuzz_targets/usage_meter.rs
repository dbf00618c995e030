//! The usage meter on a provider's answer bytes, for the schema × operation × stream × strip
//! combination the input picks: input = cut seed, schema, operation, flags (1 byte each), then
//! the answer. Flags: bit 0 stream, bit 1 strip the added usage chunk, bit 2 the body ended
//! (else it was cut), bit 3 the answer is `0xFF`-separated Bedrock records framed as
//! event-stream messages (`tollgate_fuzz::bedrock_frames`), bit 4 the answer is raw frames
//! whose CRCs are rewritten.
#![no_main]

use gateway::llm::usage::Meter;
use libfuzzer_sys::fuzz_target;
use tollgate_fuzz::{bedrock_frames, chunks, fix_crcs, operation, SCHEMAS};

fuzz_target!(|data: &[u8]| {
    let [cut, schema, op, flags, answer @ ..] = data else {
        return;
    };
    let schema = SCHEMAS[usize::from(*schema) % SCHEMAS.len()];
    let (stream, strip, ended) = (flags & 1 != 0, flags & 2 != 0, flags & 4 != 0);
    let answer = if flags & 8 != 0 {
        bedrock_frames(answer)
    } else {
        let mut a = answer.to_vec();
        if flags & 16 != 0 {
            fix_crcs(&mut a);
        }
        a
    };
    let mut meter = Meter::new(schema, operation(*op), stream, strip);
    for chunk in chunks(&answer, *cut) {
        let _ = meter.observe(chunk);
    }
    let _ = meter.finish(ended);
});
