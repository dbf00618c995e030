//! Types and names shared by `gateway-ebpf` (kernel) and `gateway` (userspace).
//!
//! Everything here crosses the user/kernel boundary byte for byte, so every struct is
//! `repr(C)`, made only of fixed-width integers, with explicit padding fields (always zero) and
//! a size assertion. Byte order is documented on every address and port field: "network order"
//! means the bytes as they sit on the wire, the way the kernel keeps them in `bpf_sock_addr`.
#![no_std]

// === map and program names ===

/// Program names, as the userspace loader finds them in the object.
pub mod program {
    pub const CONNECT4: &str = "redirect_connect4";
    pub const CONNECT6: &str = "redirect_connect6";
    pub const SOCK_OPS: &str = "rekey_sock_ops";
    pub const GETPEERNAME4: &str = "restore_getpeername4";
    pub const GETPEERNAME6: &str = "restore_getpeername6";
    pub const SOCK_RELEASE: &str = "forget_sock_release";
    pub const SENDMSG4: &str = "redirect_sendmsg4";
    pub const SENDMSG6: &str = "redirect_sendmsg6";
    pub const RECVMSG4: &str = "restore_recvmsg4";
    pub const RECVMSG6: &str = "restore_recvmsg6";
    pub const DNS_EGRESS: &str = "track_dns_egress";
}

/// Version of the maps' layout (names, types, key and value structs, sizes). Instances with
/// the same version share their maps across an upgrade (pinned under
/// `<pinPath>/maps-v<MAPS_ABI>`); bump it whenever any map changes.
pub const MAPS_ABI: u32 = 3;

/// Every map, by name.
pub const ALL_MAPS: [&str; 10] = [
    CONFIG_MAP,
    ENDPOINTS4_MAP,
    ENDPOINTS6_MAP,
    CIDRS4_MAP,
    CIDRS6_MAP,
    SOCKETS_MAP,
    CONNS_MAP,
    LISTENERS_MAP,
    STATS_MAP,
    DNS_FLOWS_MAP,
];

/// Single-entry array holding [`RedirectConfig`]; written by the daemon before attaching.
pub const CONFIG_MAP: &str = "CONFIG";
/// Exact IPv4 endpoints: [`Endpoint4Key`] → [`EndpointValue`].
pub const ENDPOINTS4_MAP: &str = "ENDPOINTS4";
/// Exact IPv6 endpoints: [`Endpoint6Key`] → [`EndpointValue`].
pub const ENDPOINTS6_MAP: &str = "ENDPOINTS6";
/// IPv4 CIDR+port endpoints (LPM trie over [`Cidr4`]).
pub const CIDRS4_MAP: &str = "CIDRS4";
/// IPv6 CIDR+port endpoints (LPM trie over [`Cidr6`]).
pub const CIDRS6_MAP: &str = "CIDRS6";
/// Socket cookie → [`ConnRecord`], written by connect, read by sock_ops and getpeername,
/// removed by sock_release.
pub const SOCKETS_MAP: &str = "SOCKETS";
/// [`PeerKey`] → [`ConnRecord`], written by sock_ops, read (and removed) by the proxy on accept.
pub const CONNS_MAP: &str = "CONNS";
/// SOCKMAP holding the proxy's listening sockets, indexed by `LISTENER_*`. The kernel drops a
/// socket from it when the socket closes, so "entry present" means "proxy alive".
pub const LISTENERS_MAP: &str = "LISTENERS";
/// Per-CPU outcome counters, indexed by `STAT_*`.
pub const STATS_MAP: &str = "STATS";
/// [`PeerKey`] → [`ConnRecord`] of redirected DNS datagrams: written by the cgroup egress
/// program for each datagram a redirected UDP socket sends to the DNS forwarder, under the
/// source address and port the forwarder will see; read by the forwarder to know which server
/// the client asked.
pub const DNS_FLOWS_MAP: &str = "DNS_FLOWS";
pub const DNS_FLOWS_MAX_ENTRIES: u32 = 16_384;

/// Entries each exact endpoint map (`ENDPOINTS4`, `ENDPOINTS6`) holds: one per address and
/// port. The maps are made with [`ENDPOINTS_MAP_FLAGS`], so the kernel allocates an entry when it
/// is inserted; only the hash table's buckets (16 bytes each, 2 MiB per map) are reserved up
/// front. Was 16,384, preallocated (`MAPS_ABI` 1).
pub const ENDPOINTS_MAX_ENTRIES: u32 = 131_072;
/// Flags of the exact endpoint maps: `BPF_F_NO_PREALLOC` (userspace alone writes them).
pub const ENDPOINTS_MAP_FLAGS: u32 = 1;
/// Entries each CIDR map holds: one per prefix and port.
pub const CIDRS_MAX_ENTRIES: u32 = 4_096;
pub const SOCKETS_MAX_ENTRIES: u32 = 65_536;
pub const CONNS_MAX_ENTRIES: u32 = 65_536;

/// Index in `LISTENERS` of the host IPv4 listener (`127.0.0.1:15001` by default).
pub const LISTENER_HOST4: u32 = 0;
/// Index in `LISTENERS` of the host IPv6 listener (`[::1]:15001` by default).
pub const LISTENER_HOST6: u32 = 1;
/// Index in `LISTENERS` of the IPv4 node listener that pods (other netns) are sent to.
pub const LISTENER_NODE4: u32 = 2;
/// Index in `LISTENERS` of the IPv6 node listener that pods are sent to.
pub const LISTENER_NODE6: u32 = 3;
/// First index in `LISTENERS` of the DNS forwarder's UDP sockets: `+ LISTENER_HOST4` …
/// `+ LISTENER_NODE6`, the same order as the redirect listeners.
pub const LISTENER_DNS_UDP: u32 = 4;
/// First index in `LISTENERS` of the DNS forwarder's TCP listeners, in the same order.
pub const LISTENER_DNS_TCP: u32 = 8;
pub const LISTENERS_MAX_ENTRIES: u32 = 12;
/// The DNS port (host order): queries to it are what the DNS redirect takes.
pub const DNS_PORT: u16 = 53;

// === counters ===

/// Connect redirected to the proxy.
pub const STAT_REDIRECTED: u32 = 0;
/// Connect matched an endpoint but the socket carries Tollgate's own mark (the proxy's upstream).
pub const STAT_SKIPPED_OWN: u32 = 1;
/// Connect matched but no proxy listener exists: let through (fail-open).
pub const STAT_SKIPPED_NO_LISTENER: u32 = 2;
/// Connect to a `deny` endpoint refused with EPERM.
pub const STAT_DENIED: u32 = 3;
/// Connect matched, no proxy listener and fail-closed is set: refused with EPERM.
pub const STAT_FAILED_CLOSED: u32 = 4;
/// The record could not be stored (map full): let through unredirected, since the proxy could
/// not know where the client meant to go.
pub const STAT_RECORD_FAILED: u32 = 5;
/// getpeername answered with the original destination.
pub const STAT_PEERNAME_RESTORED: u32 = 6;
/// A DNS query (UDP datagram, UDP or TCP connect to port 53) sent to the DNS forwarder.
pub const STAT_DNS_REDIRECTED: u32 = 7;
/// A DNS query let through because the forwarder is not running (fail-open).
pub const STAT_DNS_SKIPPED_NO_FORWARDER: u32 = 8;
/// A DNS answer from the forwarder shown to the client as coming from the server it asked.
pub const STAT_DNS_ANSWER_RESTORED: u32 = 9;
/// A redirected DNS datagram whose flow could not be recorded for the forwarder.
pub const STAT_DNS_FLOW_FAILED: u32 = 10;
pub const STATS_LEN: u32 = 12;

/// Human names of the counters, by index (unused slots are empty).
pub const STAT_NAMES: [&str; STATS_LEN as usize] = [
    "redirected",
    "skipped_own",
    "skipped_no_listener",
    "denied",
    "failed_closed",
    "record_failed",
    "peername_restored",
    "dns_redirected",
    "dns_skipped_no_forwarder",
    "dns_answer_restored",
    "dns_flow_failed",
    "",
];

// === endpoint actions ===

/// Redirect to the proxy, which may look inside (L7) once that exists.
pub const ACTION_INTERCEPT: u32 = 1;
/// Redirect to the proxy, which only relays and records (L4).
pub const ACTION_OBSERVE: u32 = 2;
/// Refuse the connect with EPERM.
pub const ACTION_DENY: u32 = 3;
/// A DNS query sent to the forwarder (records only, never an endpoint's action).
pub const ACTION_DNS: u32 = 4;

/// `RedirectConfig.flags`: when no listener is alive, refuse instead of letting through.
pub const FLAG_FAIL_CLOSED: u32 = 1 << 0;
/// `RedirectConfig.flags`: `proxy_ip6`/`proxy_port6` are set.
pub const FLAG_HAS_HOST6: u32 = 1 << 1;
/// `RedirectConfig.flags`: `node_ip4`/`node_port4` are set (pods get redirected).
pub const FLAG_HAS_NODE4: u32 = 1 << 2;
/// `RedirectConfig.flags`: `node_ip6`/`node_port6` are set.
pub const FLAG_HAS_NODE6: u32 = 1 << 3;
/// `RedirectConfig.flags`: the DNS forwarder runs (`dns_port*` are set): send workloads' DNS
/// queries to it.
pub const FLAG_DNS: u32 = 1 << 4;

pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

// === structs ===

/// Where redirected sockets go, and how the programs decide.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
#[repr(C)]
pub struct RedirectConfig {
    /// Cookie of the host network namespace (`SO_NETNS_COOKIE` of a host socket). Sockets in
    /// any other namespace are pods and go to the node listener.
    pub host_netns_cookie: u64,
    /// Host IPv6 listener address, four words in network order.
    pub proxy_ip6: [u32; 4],
    /// Node IPv6 listener address (for pods), four words in network order.
    pub node_ip6: [u32; 4],
    /// Host IPv4 listener address, network order.
    pub proxy_ip4: u32,
    /// Node IPv4 listener address (for pods), network order.
    pub node_ip4: u32,
    /// Ports of the listeners above, network order.
    pub proxy_port4: u16,
    pub proxy_port6: u16,
    pub node_port4: u16,
    pub node_port6: u16,
    /// `SO_MARK` carried by the proxy's own sockets; such sockets are never redirected.
    pub mark: u32,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// Ports of the DNS forwarder (UDP and TCP alike) on the host IPv4, host IPv6, node IPv4
    /// and node IPv6 listener addresses, network order.
    pub dns_port4: u16,
    pub dns_port6: u16,
    pub dns_node_port4: u16,
    pub dns_node_port6: u16,
}
const _: () = assert!(core::mem::size_of::<RedirectConfig>() == 72);

/// Exact IPv4 endpoint.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, Hash)]
#[repr(C)]
pub struct Endpoint4Key {
    /// Network order.
    pub ip: u32,
    /// Network order.
    pub port: u16,
    pub _pad: u16,
}
const _: () = assert!(core::mem::size_of::<Endpoint4Key>() == 8);

/// Exact IPv6 endpoint.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, Hash)]
#[repr(C)]
pub struct Endpoint6Key {
    /// Four words in network order (as `bpf_sock_addr.user_ip6`).
    pub ip: [u32; 4],
    /// Network order.
    pub port: u16,
    pub _pad: u16,
}
const _: () = assert!(core::mem::size_of::<Endpoint6Key>() == 20);

/// What to do with a matching connect.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
#[repr(C)]
pub struct EndpointValue {
    /// `ACTION_*`.
    pub action: u32,
    /// Index of the provider in the daemon's config (for its records); opaque to the kernel.
    pub provider: u32,
}
const _: () = assert!(core::mem::size_of::<EndpointValue>() == 8);

/// LPM trie data for IPv4 CIDR+port: the port comes first so that a prefix of
/// `16 + cidr_len` bits matches the port exactly and the address by prefix.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
#[repr(C)]
pub struct Cidr4 {
    /// Port, network order (big-endian bytes).
    pub port: [u8; 2],
    /// Address bytes, network order.
    pub addr: [u8; 4],
    /// Never covered by a prefix; always zero.
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<Cidr4>() == 8);

/// LPM trie data for IPv6 CIDR+port; see [`Cidr4`].
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
#[repr(C)]
pub struct Cidr6 {
    pub port: [u8; 2],
    pub addr: [u8; 16],
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<Cidr6>() == 20);

/// Prefix length of an LPM key: the port (16 bits) then `addr_prefix` bits of address.
pub const fn lpm_prefix_len(addr_prefix: u32) -> u32 {
    16 + addr_prefix
}

/// Everything the kernel knows about a redirected connect.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
#[repr(C)]
pub struct ConnRecord {
    /// Original destination address, four words in network order. IPv4 destinations are
    /// stored as IPv4-mapped IPv6 (`::ffff:a.b.c.d`), whatever the socket family.
    pub orig_ip: [u32; 4],
    /// Original destination port, network order.
    pub orig_port: u16,
    /// Socket family (`AF_INET` or `AF_INET6`).
    pub family: u16,
    /// Thread id (the kernel's pid) that called connect.
    pub pid: u32,
    /// Process id (the kernel's tgid).
    pub tgid: u32,
    pub uid: u32,
    pub gid: u32,
    /// `ACTION_*` of the endpoint that matched.
    pub action: u32,
    /// cgroup v2 id (the inode number of the cgroup directory).
    pub cgroup_id: u64,
    /// Network namespace cookie of the socket.
    pub netns_cookie: u64,
    /// `comm` of the calling thread, NUL padded.
    pub comm: [u8; 16],
    /// `EndpointValue.provider` of the endpoint that matched.
    pub provider: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<ConnRecord>() == 80);

/// Key under which the proxy finds a record: the client's own address as `accept()` sees it.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, Hash)]
#[repr(C)]
pub struct PeerKey {
    /// Client address, four words in network order, IPv4 as IPv4-mapped IPv6.
    pub ip: [u32; 4],
    /// Client port, host order.
    pub port: u16,
    pub _pad: u16,
    pub _pad2: u32,
    /// For loopback clients, the netns cookie of the host (the only netns whose loopback can
    /// reach the proxy), so that loopback keys of other namespaces cannot collide with it;
    /// zero for every other address, which is unique on the node.
    pub netns: u64,
}
const _: () = assert!(core::mem::size_of::<PeerKey>() == 32);

/// `true` for 127.0.0.0/8 (mapped) and `::1`, given words in network order.
pub fn is_loopback(ip: &[u32; 4]) -> bool {
    let [a, b, c, d] = *ip;
    if a == 0 && b == 0 && c == 0 {
        return u32::from_be(d) == 1;
    }
    is_v4_mapped(ip) && (u32::from_be(d) >> 24) == 127
}

/// `true` for `::ffff:a.b.c.d` given words in network order.
pub fn is_v4_mapped(ip: &[u32; 4]) -> bool {
    ip[0] == 0 && ip[1] == 0 && u32::from_be(ip[2]) == 0x0000_ffff
}

/// `::ffff:a.b.c.d` for an IPv4 address in network order.
pub fn v4_mapped(ip4: u32) -> [u32; 4] {
    [0, 0, 0x0000_ffffu32.to_be(), ip4]
}

#[cfg(feature = "user")]
#[expect(unsafe_code, reason = "aya::Pod is an unsafe marker trait")]
mod pod {
    // SAFETY (for every impl below): repr(C), Copy, only integers, and no implicit padding
    // (sizes asserted next to each struct).
    unsafe impl aya::Pod for super::RedirectConfig {}
    unsafe impl aya::Pod for super::Endpoint4Key {}
    unsafe impl aya::Pod for super::Endpoint6Key {}
    unsafe impl aya::Pod for super::EndpointValue {}
    unsafe impl aya::Pod for super::Cidr4 {}
    unsafe impl aya::Pod for super::Cidr6 {}
    unsafe impl aya::Pod for super::ConnRecord {}
    unsafe impl aya::Pod for super::PeerKey {}
}
