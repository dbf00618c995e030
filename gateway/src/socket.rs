//! Socket-level helpers: address newtypes, the proxy's mark, the netns cookie, and the
//! conversions between std addresses and the kernel's word layout.

use std::{
    fmt, io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::AsFd,
};

use gateway_common::{is_loopback, PeerKey};

/// The client's socket address as the listener saw it in `accept()`.
#[derive(Copy, Clone, Debug, Eq, PartialEq, Hash)]
pub struct ClientAddr(pub SocketAddr);

/// Where the client tried to connect before eBPF redirected it.
#[derive(Copy, Clone, Debug, Eq, PartialEq, Hash)]
pub struct OrigDstAddr(pub SocketAddr);

impl fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for OrigDstAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A v4-mapped IPv6 address is an IPv4 destination to the kernel programs.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// An address as four words in network order, IPv4 as `::ffff:a.b.c.d` (the kernel's layout in
/// `bpf_sock_addr.user_ip6` and `bpf_sock_ops.local_ip6`).
pub fn ip_to_words(ip: IpAddr) -> [u32; 4] {
    let v6 = match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    let o = v6.octets();
    std::array::from_fn(|i| u32::from_ne_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]]))
}

/// The inverse of [`ip_to_words`]; v4-mapped addresses come back as IPv4.
pub fn words_to_ip(words: [u32; 4]) -> IpAddr {
    let mut o = [0u8; 16];
    for (i, w) in words.iter().enumerate() {
        o[4 * i..4 * i + 4].copy_from_slice(&w.to_ne_bytes());
    }
    let v6 = Ipv6Addr::from(o);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// An IPv4 address in network order (as `bpf_sock_addr.user_ip4`).
pub fn ip4_to_word(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}

/// The key under which `rekey_sock_ops` stored the record of the client at `peer`.
pub fn peer_key(peer: ClientAddr, host_netns_cookie: u64) -> PeerKey {
    let ip = match peer.0.ip() {
        // An IPv6 listener reports IPv4 clients v4-mapped; normalise both ways to one form.
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    let words = ip_to_words(ip);
    PeerKey {
        ip: words,
        port: peer.0.port(),
        _pad: 0,
        _pad2: 0,
        netns: if is_loopback(&words) { host_netns_cookie } else { 0 },
    }
}

/// A TCP listener on `addr` with `SO_REUSEADDR` and `SO_REUSEPORT`, so that a successor can
/// bind beside a predecessor during an upgrade.
pub fn listen_shared(addr: SocketAddr, backlog: u32) -> io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Puts `mark` on a socket so the connect programs skip it. Needs `CAP_NET_ADMIN`.
pub fn set_mark(socket: &impl AsFd, mark: u32) -> io::Result<()> {
    socket2::SockRef::from(socket).set_mark(mark)
}

/// The cookie of the network namespace `socket` lives in (`SO_NETNS_COOKIE`, Linux 5.14+).
pub fn netns_cookie(socket: &impl AsFd) -> io::Result<u64> {
    use std::os::fd::AsRawFd as _;
    const SO_NETNS_COOKIE: libc::c_int = 71;
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: valid fd, and a u64 out-buffer whose size we pass.
    #[expect(unsafe_code, reason = "getsockopt(SO_NETNS_COOKIE) has no safe wrapper")]
    let rc = unsafe {
        libc::getsockopt(
            socket.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cookie)
}

/// Opens a TCP connection to `dst` on a socket that carries `mark`, so the connect programs
/// let it through (no loop): the relay's and the upstream clients' connections. A connect
/// that takes longer than `timeout` fails with `TimedOut`.
pub async fn connect_marked(
    dst: SocketAddr,
    mark: u32,
    timeout: std::time::Duration,
) -> io::Result<tokio::net::TcpStream> {
    let socket = if dst.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }?;
    set_mark(&socket, mark)?;
    let stream = tokio::time::timeout(timeout, socket.connect(dst))
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_match_kernel_layout() {
        let v4: IpAddr = "127.10.0.1".parse().unwrap();
        let w = ip_to_words(v4);
        assert_eq!(w[3], u32::from_ne_bytes([127, 10, 0, 1]));
        assert_eq!(w[2], 0x0000_ffffu32.to_be());
        assert_eq!(words_to_ip(w), v4);
        let v6: IpAddr = "2607:6bc0::1".parse().unwrap();
        assert_eq!(words_to_ip(ip_to_words(v6)), v6);
    }

    #[test]
    fn peer_key_puts_netns_only_on_loopback_and_normalises_mapped() {
        let k = peer_key(ClientAddr("127.0.0.1:4000".parse().unwrap()), 7);
        assert_eq!((k.port, k.netns), (4000, 7));
        let mapped = peer_key(ClientAddr("[::ffff:127.0.0.1]:4000".parse().unwrap()), 7);
        assert_eq!(k, mapped);
        let pod = peer_key(ClientAddr("198.18.0.2:4000".parse().unwrap()), 7);
        assert_eq!(pod.netns, 0);
        let v6 = peer_key(ClientAddr("[::1]:4000".parse().unwrap()), 7);
        assert_eq!(v6.netns, 7);
    }
}
