//! A small RESP2 client for the one thing limits need from Redis: running two Lua scripts
//! atomically. One connection, re-opened on error; every call has a timeout.

use std::{io, time::Duration};

use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufStream},
    net::TcpStream,
    sync::Mutex,
};

/// A reply.
#[derive(Debug, PartialEq, Eq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Resp>>),
}

pub struct Client {
    addr: String,
    timeout: Duration,
    conn: Mutex<Option<BufStream<TcpStream>>>,
}

impl Client {
    pub fn new(addr: String, timeout: Duration) -> Client {
        Client {
            addr,
            timeout,
            conn: Mutex::new(None),
        }
    }

    /// Sends one command and reads its reply.
    pub async fn command(&self, args: &[&[u8]]) -> io::Result<Resp> {
        let mut guard = self.conn.lock().await;
        let attempt = async {
            if guard.is_none() {
                let s = TcpStream::connect(&self.addr).await?;
                s.set_nodelay(true)?;
                *guard = Some(BufStream::new(s));
            }
            let conn = guard.as_mut().expect("connected above");
            let mut out = Vec::with_capacity(64);
            out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
            for a in args {
                out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
                out.extend_from_slice(a);
                out.extend_from_slice(b"\r\n");
            }
            conn.write_all(&out).await?;
            conn.flush().await?;
            read_reply(conn).await
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => {
                *guard = None;
                Err(e)
            }
            Err(_) => {
                *guard = None;
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("redis {} did not answer in {:?}", self.addr, self.timeout),
                ))
            }
        }
    }

    /// `EVAL script numkeys keys… args…`.
    pub async fn eval(&self, script: &str, keys: &[String], args: &[String]) -> io::Result<Resp> {
        let numkeys = keys.len().to_string();
        let mut parts: Vec<&[u8]> = vec![b"EVAL", script.as_bytes(), numkeys.as_bytes()];
        parts.extend(keys.iter().map(|k| k.as_bytes()));
        parts.extend(args.iter().map(|a| a.as_bytes()));
        match self.command(&parts).await? {
            Resp::Error(e) => Err(io::Error::other(format!("redis: {e}"))),
            r => Ok(r),
        }
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("redis protocol: {what}"))
}

async fn read_line(conn: &mut BufStream<TcpStream>) -> io::Result<String> {
    let mut line = String::new();
    if conn.read_line(&mut line).await? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "redis closed the connection",
        ));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn read_reply(
    conn: &mut BufStream<TcpStream>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = io::Result<Resp>> + Send + '_>> {
    Box::pin(async move {
        let line = read_line(conn).await?;
        let (kind, rest) = line.split_at(1.min(line.len()));
        match kind {
            "+" => Ok(Resp::Simple(rest.to_string())),
            "-" => Ok(Resp::Error(rest.to_string())),
            ":" => rest.parse().map(Resp::Int).map_err(|_| bad("integer")),
            "$" => {
                let n: i64 = rest.parse().map_err(|_| bad("bulk length"))?;
                if n < 0 {
                    return Ok(Resp::Bulk(None));
                }
                let mut buf = vec![0u8; n as usize + 2];
                conn.read_exact(&mut buf).await?;
                buf.truncate(n as usize);
                Ok(Resp::Bulk(Some(buf)))
            }
            "*" => {
                let n: i64 = rest.parse().map_err(|_| bad("array length"))?;
                if n < 0 {
                    return Ok(Resp::Array(None));
                }
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(read_reply(conn).await?);
                }
                Ok(Resp::Array(Some(items)))
            }
            _ => Err(bad("reply type")),
        }
    })
}
