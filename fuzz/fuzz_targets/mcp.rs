//! An MCP client's message and a server's answer: input = cut seed (1 byte), content-type
//! selector (1 byte), then the message, a `0xFF` byte, and the answer cut anywhere. The message
//! is read as the proxy reads a POST; the answer goes through the observer that reads results
//! and filters tool lists.
#![no_main]

use std::sync::Arc;

use gateway::mcp::{read, Observer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [cut, kind, rest @ ..] = data else {
        return;
    };
    let (message, answer) = match rest.iter().position(|b| *b == 0xFF) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    let id = read(message).ok().and_then(|m| m.id);
    let content_type = ["text/event-stream", "application/json", "text/plain"][usize::from(kind % 3)];
    let filter: Option<gateway::mcp::Allows> = (kind & 4 != 0).then(|| Arc::new(|t: &str| t.starts_with('a')) as _);
    let mut observer = Observer::new(content_type, id, filter);
    for chunk in tollgate_fuzz::chunks(answer, *cut) {
        let _ = observer.feed(chunk);
    }
    let _ = observer.finish();
});
