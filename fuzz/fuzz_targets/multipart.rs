//! A workload's multipart form (audio to transcribe, an image to edit), cut anywhere: input =
//! cut seed (1 byte), then `boundary\n` and the body. The head scanner reads it chunk by chunk
//! as the proxy does; what it found is read as fields and rewritten as a route's model would.
#![no_main]

use gateway::llm::{multipart, parse_form, Operation};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [cut, rest @ ..] = data else {
        return;
    };
    let Some(nl) = rest.iter().position(|b| *b == b'\n') else {
        return;
    };
    let (Ok(boundary), body) = (std::str::from_utf8(&rest[..nl]), &rest[nl + 1..]) else {
        return;
    };
    let _ = multipart::boundary(&format!("multipart/form-data; boundary={boundary}"));
    let mut scanner = multipart::Scanner::new(boundary);
    let mut seen = 0;
    for chunk in tollgate_fuzz::chunks(body, *cut) {
        seen += chunk.len();
        if scanner.feed(&body[..seen]).is_err() {
            return;
        }
    }
    let _ = parse_form(&scanner, body, Operation::ImagesEdits);
    for f in scanner.fields.clone() {
        assert!(f.value.start <= f.value.end && f.value.end <= body.len());
        let _ = multipart::replace(body, &f, "fuzz-model");
    }
});
