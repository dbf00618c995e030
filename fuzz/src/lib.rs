//! What the fuzz targets share: cutting an input into the chunks a socket might deliver, and
//! shaping bytes into AWS event-stream frames (whose CRCs random bytes never match) so that
//! the decoders' and translators' code past the CRC checks is reached too.

use gateway::llm::{ApiSchema, Operation};

/// Every backend schema (a new variant must be added here to be fuzzed).
pub const SCHEMAS: [ApiSchema; 6] = [
    ApiSchema::Openai,
    ApiSchema::Anthropic,
    ApiSchema::AzureOpenai,
    ApiSchema::Gemini,
    ApiSchema::Bedrock,
    ApiSchema::Vertex,
];

/// `data` cut into chunks, as reads would deliver it. `seed` (a byte of the input) picks the
/// cuts: 0 is the whole input at once; otherwise chunk sizes are drawn in `0..=max` with `max`
/// one of 1, 2, 4 … 128, so single bytes, empty chunks and cuts inside every multi-byte token
/// all happen.
pub fn chunks(data: &[u8], seed: u8) -> Vec<&[u8]> {
    if seed == 0 {
        return vec![data];
    }
    let max = 1usize << ((seed - 1) % 8);
    let mut state = u32::from(seed).wrapping_mul(0x9e37_79b9) | 1;
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        // xorshift32
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (state as usize % (max + 1)).min(rest.len());
        let (head, tail) = rest.split_at(n);
        out.push(head);
        rest = tail;
    }
    out
}

/// Rewrites the prelude and message CRCs of the event-stream frames laid out in `buf` (as far
/// as their lengths hold together), so the decoder goes on to the headers and payload.
pub fn fix_crcs(buf: &mut [u8]) {
    let mut at = 0;
    while buf.len() - at >= 12 {
        let frame = &mut buf[at..];
        let total = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        let crc = crc32fast::hash(&frame[..8]);
        frame[8..12].copy_from_slice(&crc.to_be_bytes());
        if total < 16 || total > frame.len() {
            return;
        }
        let crc = crc32fast::hash(&frame[..total - 4]);
        frame[total - 4..total].copy_from_slice(&crc.to_be_bytes());
        at += total;
    }
}

/// The messages of a Bedrock `ConverseStream`: (`:message-type`, type header, value).
const BEDROCK_MESSAGES: [(&str, &str, &str); 10] = [
    ("event", ":event-type", "messageStart"),
    ("event", ":event-type", "contentBlockStart"),
    ("event", ":event-type", "contentBlockDelta"),
    ("event", ":event-type", "contentBlockStop"),
    ("event", ":event-type", "messageStop"),
    ("event", ":event-type", "metadata"),
    ("exception", ":exception-type", "throttlingException"),
    ("exception", ":exception-type", "validationException"),
    ("exception", ":exception-type", "modelStreamErrorException"),
    ("exception", ":exception-type", "internalServerException"),
];

/// Valid event-stream frames from records separated by `0xFF` (a byte JSON never holds): each
/// record's first byte picks the message type (`BEDROCK_MESSAGES`), the rest is its payload.
/// The seeds of the Bedrock stream targets are written this way.
pub fn bedrock_frames(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for record in data.split(|&b| b == 0xFF) {
        let Some((&kind, payload)) = record.split_first() else {
            continue;
        };
        let (message_type, header, value) = BEDROCK_MESSAGES[usize::from(kind) % BEDROCK_MESSAGES.len()];
        out.extend_from_slice(&gateway::llm::eventstream::encode(
            &[
                (":message-type", message_type),
                (header, value),
                (":content-type", "application/json"),
            ],
            payload,
        ));
    }
    out
}

/// The operation numbered `n` (wrapping).
pub fn operation(n: u8) -> Operation {
    Operation::ALL[usize::from(n) % Operation::ALL.len()]
}

/// (client schema, operation, backend schema).
pub type Combo = (ApiSchema, Operation, ApiSchema);

/// For each entry of `translate::DIRECTIONS` (same order), the combinations it applies to.
pub fn direction_combos() -> &'static [Vec<Combo>] {
    static COMBOS: std::sync::OnceLock<Vec<Vec<Combo>>> = std::sync::OnceLock::new();
    COMBOS.get_or_init(|| {
        gateway::llm::translate::DIRECTIONS
            .iter()
            .map(|d| {
                let mut combos = Vec::new();
                for client in SCHEMAS {
                    for op in Operation::ALL {
                        for backend in SCHEMAS {
                            if d.applies(client, op, backend) {
                                combos.push((client, op, backend));
                            }
                        }
                    }
                }
                combos
            })
            .collect()
    })
}
