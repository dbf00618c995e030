//! The older HTTP+SSE transport (MCP 2024-11-05) answers a POSTed message on the client's GET
//! stream, not on the POST (which gets `202 Accepted`). Its clients read nothing from the POST,
//! so a refusal Tollgate answers there would leave them waiting: instead it goes on their
//! stream, as the server's own answer would.
//!
//! A GET stream names, in its first `endpoint` event, where the client is to POST (a path
//! with a session id). [`Streams`] keeps, for each open stream, that endpoint with the
//! provider and the workload it belongs to, and a channel the stream's body reads between
//! events; a POST refused by Tollgate whose path is a registered endpoint of the same
//! provider and workload puts its JSON-RPC error there. Bounded: at most [`MAX_STREAMS`]
//! streams (beyond, a stream is not registered and refusals are answered on the POST), an
//! endpoint of at most [`MAX_ENDPOINT`] bytes, [`QUEUE`] waiting messages per stream; a stream's
//! entry leaves when its body is dropped.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use bytes::Bytes;
use tokio::sync::mpsc;

/// Open streams registered at most.
pub const MAX_STREAMS: usize = 10_000;
/// Longest endpoint registered (bytes).
pub const MAX_ENDPOINT: usize = 2048;
/// Messages waiting to go on one stream.
pub const QUEUE: usize = 16;

/// Whose stream: the provider, the workload (client address and kernel identity) and the
/// endpoint (path and query) it named.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StreamKey {
    pub provider: String,
    pub workload: String,
    pub endpoint: String,
}

/// The open streams of the HTTP+SSE transport.
#[derive(Default)]
pub struct Streams {
    open: Mutex<HashMap<StreamKey, mpsc::Sender<Bytes>>>,
}

impl Streams {
    /// Registers a stream; `None` when there are too many or the endpoint is too long.
    pub fn register(self: &Arc<Self>, key: StreamKey) -> Option<Registration> {
        if key.endpoint.len() > MAX_ENDPOINT {
            return None;
        }
        let mut open = self.open.lock().ok()?;
        if open.len() >= MAX_STREAMS && !open.contains_key(&key) {
            return None;
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        open.insert(key.clone(), tx.clone());
        Some(Registration {
            streams: self.clone(),
            key,
            tx,
            rx,
        })
    }

    /// Puts `event` (a whole SSE event) on the stream `key` names; false when there is no
    /// such stream or its queue is full.
    pub fn send(&self, key: &StreamKey, event: Bytes) -> bool {
        let tx = match self.open.lock() {
            Ok(open) => open.get(key).cloned(),
            Err(_) => None,
        };
        tx.is_some_and(|tx| tx.try_send(event).is_ok())
    }

    pub fn contains(&self, key: &StreamKey) -> bool {
        self.open.lock().is_ok_and(|o| o.contains_key(key))
    }

    pub fn len(&self) -> usize {
        self.open.lock().map(|o| o.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One registered stream: what was sent to it, until dropped (then its entry leaves, unless
/// a newer stream took the same key).
pub struct Registration {
    streams: Arc<Streams>,
    key: StreamKey,
    tx: mpsc::Sender<Bytes>,
    rx: mpsc::Receiver<Bytes>,
}

impl Registration {
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut open) = self.streams.open.lock() {
            if open.get(&self.key).is_some_and(|tx| tx.same_channel(&self.tx)) {
                open.remove(&self.key);
            }
        }
    }
}

/// The path and query a client POSTs to, from an `endpoint` event's data (a URI, absolute or
/// relative to the stream's `stream_path`); `None` for what is not one.
pub fn endpoint(data: &str, stream_path: &str) -> Option<String> {
    let data = data.trim();
    let data = data.split('#').next().unwrap_or_default();
    if data.is_empty() || data.len() > MAX_ENDPOINT || data.chars().any(char::is_control) {
        return None;
    }
    if data.starts_with("http://") || data.starts_with("https://") {
        let uri: http::Uri = data.parse().ok()?;
        return uri.path_and_query().map(|p| p.as_str().to_string());
    }
    if data.starts_with("//") {
        return None;
    }
    if data.starts_with('/') {
        return Some(data.to_string());
    }
    let dir = &stream_path[..stream_path.rfind('/').map_or(0, |i| i + 1)];
    let dir = if dir.is_empty() { "/" } else { dir };
    Some(format!("{dir}{data}"))
}

/// The session an endpoint names (its `session_id` or `sessionId` query parameter: the
/// transport's servers put it there), at most 256 bytes.
pub fn session_of(endpoint: &str) -> Option<String> {
    let (_, query) = endpoint.split_once('?')?;
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "session_id" || *k == "sessionId")
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty() && v.len() <= 256)
}

/// A JSON-RPC message as one SSE event, the way the transport's servers send theirs.
pub fn message_event(json: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(json.len() + 24);
    out.extend_from_slice(b"event: message\ndata: ");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(endpoint: &str) -> StreamKey {
        StreamKey {
            provider: "tools".into(),
            workload: "127.0.0.1/7/1".into(),
            endpoint: endpoint.into(),
        }
    }

    #[test]
    fn endpoints_resolve_like_the_clients_resolve_them() {
        assert_eq!(
            endpoint("/messages/?session_id=ab", "/sse").as_deref(),
            Some("/messages/?session_id=ab")
        );
        assert_eq!(
            endpoint("https://mcp.example.test/m?s=1#x", "/sse").as_deref(),
            Some("/m?s=1")
        );
        assert_eq!(endpoint("messages?s=1", "/a/sse").as_deref(), Some("/a/messages?s=1"));
        assert_eq!(endpoint("messages?s=1", "sse").as_deref(), Some("/messages?s=1"));
        assert_eq!(endpoint("", "/sse"), None);
        assert_eq!(endpoint("//elsewhere/x", "/sse"), None);
        assert_eq!(endpoint("/a\nb", "/sse"), None);
        assert_eq!(endpoint(&"a".repeat(MAX_ENDPOINT + 1), "/sse"), None);
        assert_eq!(session_of("/messages/?session_id=ab12").as_deref(), Some("ab12"));
        assert_eq!(session_of("/m?x=1&sessionId=c").as_deref(), Some("c"));
        assert_eq!(session_of("/m?session_id="), None);
        assert_eq!(session_of("/m"), None);
    }

    #[tokio::test]
    async fn a_message_reaches_its_stream_and_the_entry_leaves_with_it() {
        let streams = Arc::new(Streams::default());
        let mut reg = streams.register(key("/m?s=1")).unwrap();
        assert!(streams.contains(&key("/m?s=1")));
        assert!(!streams.send(&key("/m?s=2"), Bytes::from_static(b"x")));
        assert!(streams.send(&key("/m?s=1"), message_event(b"{}")));
        let got = std::future::poll_fn(|cx| reg.poll_recv(cx)).await.unwrap();
        assert_eq!(&got[..], b"event: message\ndata: {}\n\n");
        // Another workload with the same endpoint reaches nothing.
        let mut other = key("/m?s=1");
        other.workload = "127.0.0.2/8/1".into();
        assert!(!streams.send(&other, Bytes::new()));
        // A newer stream under the same key is not removed by the older one's end.
        let newer = streams.register(key("/m?s=1")).unwrap();
        drop(reg);
        assert_eq!(streams.len(), 1);
        drop(newer);
        assert!(streams.is_empty());
    }

    #[test]
    fn registrations_and_queues_are_bounded() {
        let streams = Arc::new(Streams::default());
        let regs: Vec<_> = (0..MAX_STREAMS)
            .map(|i| streams.register(key(&format!("/m?s={i}"))).unwrap())
            .collect();
        assert!(streams.register(key("/m?s=over")).is_none());
        assert!(streams
            .register(key(&format!("/{}", "a".repeat(MAX_ENDPOINT))))
            .is_none());
        for _ in 0..QUEUE {
            assert!(streams.send(&key("/m?s=0"), Bytes::new()));
        }
        assert!(!streams.send(&key("/m?s=0"), Bytes::new()), "a full queue refuses");
        drop(regs);
        assert!(streams.is_empty());
    }
}
