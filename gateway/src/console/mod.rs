//! The operator's terminal views of a running instance: `tollgate status` (one plain-text
//! screen, [`status`]) and `tollgate top` (the same, live, [`top`]). Both read the admin
//! port's `/api/status` (`admin::api::Status`), found from `--admin` or the config's
//! `admin.address`, over a plain blocking HTTP/1.1 GET: they run outside the daemon, with no
//! runtime of their own.

pub mod status;
pub mod top;

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream, ToSocketAddrs as _},
    time::Duration,
};

use crate::{accounting::recent::SortBy, admin::api::Status};

/// How long to wait for the admin port to accept.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long to wait for its answer.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read (a status is a few kilobytes).
const MAX_ANSWER: u64 = 4 << 20; // 4 MiB

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "nothing answers on the admin port {addr} (is `tollgate run` running? pass its admin \
         address with --admin, or its config with --config)"
    )]
    Unreachable {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the admin port {addr} answered {status}: {body}")]
    Status {
        addr: SocketAddr,
        status: u16,
        body: String,
    },
    #[error("the admin port {addr} sent something that is not a Tollgate status: {detail}")]
    NotStatus { addr: SocketAddr, detail: String },
    #[error("{0:?} is not an address (HOST:PORT)")]
    BadAddress(String),
}

/// Resolves `--admin` (`HOST:PORT`, or a bare port on 127.0.0.1).
pub fn parse_admin(text: &str) -> Result<SocketAddr, Error> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| Error::BadAddress(text.to_string()))
}

/// Where a configured admin listener is reached from this host: a wildcard bind is asked on
/// loopback.
pub fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => SocketAddr::from(([127, 0, 0, 1], a.port())),
        SocketAddr::V6(a) if a.ip().is_unspecified() => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, a.port())),
        a => a,
    }
}

/// `GET path` on the admin port: the status code and the body.
pub fn get(addr: SocketAddr, path: &str) -> Result<(u16, Vec<u8>), Error> {
    let unreachable = |source| Error::Unreachable { addr, source };
    let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(unreachable)?;
    stream.set_read_timeout(Some(READ_TIMEOUT)).map_err(unreachable)?;
    stream.set_write_timeout(Some(READ_TIMEOUT)).map_err(unreachable)?;
    let req = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\naccept: application/json\r\nconnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).map_err(unreachable)?;
    let mut answer = Vec::new();
    stream.take(MAX_ANSWER).read_to_end(&mut answer).map_err(unreachable)?;
    let not_http = || Error::NotStatus {
        addr,
        detail: "not an HTTP answer".into(),
    };
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(not_http)?;
    let head = std::str::from_utf8(&answer[..end]).map_err(|_| not_http())?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(not_http)?;
    // The admin server answers with a length (never chunked): the body is the rest.
    Ok((status, answer[end + 4..].to_vec()))
}

/// The instance's status, its spend rows ordered by `sort` (the first `top`, then `other`).
pub fn fetch(addr: SocketAddr, sort: SortBy, top: usize) -> Result<Status, Error> {
    let (status, body) = get(addr, &format!("/api/status?sort={}&top={top}", sort.as_str()))?;
    if status != 200 {
        return Err(Error::Status {
            addr,
            status,
            body: String::from_utf8_lossy(&body).trim().to_string(),
        });
    }
    serde_json::from_slice(&body).map_err(|e| Error::NotStatus {
        addr,
        detail: e.to_string(),
    })
}

// === formatting shared by both views ===

/// `12345` → `12,345`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `1 endpoint`, `12 endpoints`.
pub fn plural(n: u64, what: &str) -> String {
    format!("{} {what}{}", thousands(n), if n == 1 { "" } else { "s" })
}

/// A rate per second: one decimal.
pub fn rate(per_s: f64) -> String {
    format!("{per_s:.1}/s")
}

/// `$` and the exact decimal string.
pub fn dollars(usd: &str) -> String {
    format!("${usd}")
}

/// `7384` seconds → `2h03m`.
pub fn uptime(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s:02}s"),
        (0, _, _) => format!("{h}h{m:02}m"),
        _ => format!("{d}d{h:02}h"),
    }
}

/// `text` cut to `width` characters, an ellipsis marking the cut.
pub fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A backend's state as shown: `primary healthy`, `b ejected 4.2s (3 ejections)`.
pub fn backend(b: &crate::admin::api::Backend) -> String {
    let mut out = format!("{} {}", b.backend, b.state.replace('_', "-"));
    if let Some(ms) = b.available_in_ms {
        out += &format!(" {:.1}s", ms as f64 / 1000.0);
    }
    if b.ejections > 0 {
        out += &format!(" ({} ejection{})", b.ejections, if b.ejections == 1 { "" } else { "s" });
    }
    out
}

/// The limit store as shown: `memory`, `redis, healthy`, `redis, UNREACHABLE (3 counts dropped)`.
pub fn limit_store(l: Option<&crate::admin::api::LimitStore>) -> String {
    let Some(l) = l else { return "none".into() };
    let mut out = l.kind.clone();
    out += if l.healthy {
        ", healthy"
    } else {
        ", UNREACHABLE (fail-open counts locally)"
    };
    if l.dropped_counts > 0 {
        out += &format!(", {} counts dropped", thousands(l.dropped_counts));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_like_a_person_writes_them() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(uptime(59), "59s");
        assert_eq!(uptime(61), "1m01s");
        assert_eq!(uptime(7384), "2h03m");
        assert_eq!(uptime(90_000), "1d01h");
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit("abc", 4), "abc");
        assert_eq!(rate(2.26), "2.3/s");
    }

    #[test]
    fn admin_addresses_parse() {
        assert_eq!(parse_admin("15000").unwrap(), "127.0.0.1:15000".parse().unwrap());
        assert_eq!(parse_admin("127.0.0.1:9").unwrap(), "127.0.0.1:9".parse().unwrap());
        assert!(parse_admin("nowhere").is_err());
        assert_eq!(
            reachable("0.0.0.0:15000".parse().unwrap()),
            "127.0.0.1:15000".parse().unwrap()
        );
    }

    #[test]
    fn nothing_listening_is_a_clear_error() {
        // A port just released: nothing listens there.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let e = fetch(addr, SortBy::Spend, 10).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("nothing answers on the admin port {addr}")),
            "{e}"
        );
        assert!(e.contains("--admin"), "{e}");
    }
}
