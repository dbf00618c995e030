//! Byte relay between a captured client and its original destination.

use std::{io, time::Duration};

use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _},
    net::TcpStream,
};

use crate::socket::{connect_marked, OrigDstAddr};

/// Per-direction buffer: one per direction, no copy beyond it.
const BUF_SIZE: usize = 16 * 1024;

/// Why a relay ended.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Outcome {
    /// Both sides closed their writing half.
    Completed,
    /// The original destination could not be reached.
    UpstreamConnectFailed,
    /// Connecting took longer than the configured timeout.
    UpstreamConnectTimeout,
    /// A read or write failed on the client side.
    ClientError,
    /// A read or write failed on the upstream side.
    UpstreamError,
    /// The proxy was shutting down and its drain deadline passed.
    Shutdown,
    /// Intercepted: the TLS handshake with the client failed.
    TlsHandshakeFailed,
    /// Intercepted: served by the L7 proxy until the client closed.
    Intercepted,
}

impl Outcome {
    /// Metric and log label. Exhaustive: a new variant must be named here.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::UpstreamConnectFailed => "upstream_connect_failed",
            Outcome::UpstreamConnectTimeout => "upstream_connect_timeout",
            Outcome::ClientError => "client_error",
            Outcome::UpstreamError => "upstream_error",
            Outcome::Shutdown => "shutdown",
            Outcome::TlsHandshakeFailed => "tls_handshake_failed",
            Outcome::Intercepted => "intercepted",
        }
    }
}

/// What a relay did.
#[derive(Debug)]
pub struct Relayed {
    pub outcome: Outcome,
    /// Client → upstream.
    pub sent: u64,
    /// Upstream → client.
    pub received: u64,
    pub error: Option<String>,
}

/// Connects to the original destination (with the mark), sends `prefix` (bytes already read
/// from the client while classifying it), then relays.
pub async fn relay(
    client: TcpStream,
    prefix: &[u8],
    orig: OrigDstAddr,
    mark: u32,
    connect_timeout: Duration,
) -> Relayed {
    let mut upstream = match connect_marked(orig.0, mark, connect_timeout).await {
        Ok(upstream) => upstream,
        Err(e) => {
            let outcome = if e.kind() == io::ErrorKind::TimedOut {
                Outcome::UpstreamConnectTimeout
            } else {
                Outcome::UpstreamConnectFailed
            };
            return Relayed {
                outcome,
                sent: 0,
                received: 0,
                error: Some(e.to_string()),
            };
        }
    };
    if let Err(e) = upstream.write_all(prefix).await {
        return Relayed {
            outcome: Outcome::UpstreamError,
            sent: 0,
            received: 0,
            error: Some(e.to_string()),
        };
    }
    let mut relayed = relay_streams(client, upstream).await;
    relayed.sent += prefix.len() as u64;
    relayed
}

/// Relays until both directions are done (half-close passed on) or one side fails.
pub async fn relay_streams(mut client: TcpStream, mut upstream: TcpStream) -> Relayed {
    let _ = client.set_nodelay(true);
    let (mut cr, mut cw) = client.split();
    let (mut ur, mut uw) = upstream.split();
    let (mut sent, mut received) = (0u64, 0u64);
    let result = tokio::try_join!(
        pump(
            &mut cr,
            &mut uw,
            &mut sent,
            Outcome::ClientError,
            Outcome::UpstreamError
        ),
        pump(
            &mut ur,
            &mut cw,
            &mut received,
            Outcome::UpstreamError,
            Outcome::ClientError
        ),
    );
    match result {
        Ok(_) => Relayed {
            outcome: Outcome::Completed,
            sent,
            received,
            error: None,
        },
        Err((outcome, e)) => Relayed {
            outcome,
            sent,
            received,
            error: Some(e.to_string()),
        },
    }
}

/// Copies `from` → `to` until EOF, then shuts down `to`'s write half (half-close).
async fn pump<R, W>(
    from: &mut R,
    to: &mut W,
    count: &mut u64,
    read_side: Outcome,
    write_side: Outcome,
) -> Result<(), (Outcome, io::Error)>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        let n = from.read(&mut buf).await.map_err(|e| (read_side, e))?;
        if n == 0 {
            // Shutdown failing means the peer is already gone; the other direction reports it.
            let _ = to.shutdown().await;
            return Ok(());
        }
        to.write_all(&buf[..n]).await.map_err(|e| (write_side, e))?;
        *count += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn half_close_is_passed_on_and_bytes_counted() {
        // upstream: reads everything until EOF, then answers and closes
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up_addr = upstream.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = upstream.accept().await.unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            s.write_all(format!("got {}", got.len()).as_bytes()).await.unwrap();
        });
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front_addr = front.local_addr().unwrap();
        let proxy = tokio::spawn(async move {
            let (s, _) = front.accept().await.unwrap();
            let upstream = TcpStream::connect(up_addr).await.unwrap();
            relay_streams(s, upstream).await
        });
        let mut c = TcpStream::connect(front_addr).await.unwrap();
        c.write_all(&[7u8; 100_000]).await.unwrap();
        c.shutdown().await.unwrap();
        let mut answer = String::new();
        c.read_to_string(&mut answer).await.unwrap();
        assert_eq!(answer, "got 100000");
        let relayed = proxy.await.unwrap();
        assert_eq!(relayed.outcome, Outcome::Completed);
        assert_eq!((relayed.sent, relayed.received), (100_000, 10));
    }

    #[tokio::test]
    async fn unreachable_upstream_is_reported() {
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front_addr = front.local_addr().unwrap();
        let proxy = tokio::spawn(async move {
            let (s, _) = front.accept().await.unwrap();
            // Without CAP_NET_ADMIN setting the mark fails, which is reported the same way.
            relay(
                s,
                b"",
                OrigDstAddr(addr),
                crate::config::DEFAULT_MARK,
                Duration::from_secs(5),
            )
            .await
        });
        let _c = TcpStream::connect(front_addr).await.unwrap();
        let relayed = proxy.await.unwrap();
        assert_eq!(relayed.outcome, Outcome::UpstreamConnectFailed);
    }
}
