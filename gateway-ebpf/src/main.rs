//! Tollgate's kernel side: catch connects to known LLM endpoints and hand them to the proxy.
//!
//! Programs (all attached to one cgroup v2 directory, see `gateway/src/ebpf`):
//! - `redirect_connect4` / `redirect_connect6` (`cgroup/connect4|6`): match the destination
//!   against the endpoint maps; record who connected and where to, by socket cookie; rewrite the
//!   destination to the proxy listener (or refuse with EPERM for `deny` endpoints).
//! - `rekey_sock_ops` (`sockops`, active established): copy the record under the client's own
//!   `(ip, port)`, which the proxy sees as the peer address of the accepted socket.
//! - `restore_getpeername4|6` (`cgroup/getpeername4|6`): the client sees the address it asked
//!   for, not the proxy's.
//! - `forget_sock_release` (`cgroup/sock_release`): drop the cookie-keyed record.
//! - DNS (docs/config.md#dns-learning): `redirect_sendmsg4|6` (`cgroup/sendmsg4|6`) and the
//!   connect programs send queries to port 53 (UDP datagrams, UDP and TCP connects) to the DNS
//!   forwarder, recording the server asked by socket cookie; `track_dns_egress`
//!   (`cgroup_skb/egress`) files each redirected datagram under the source address and port the
//!   forwarder will see (`DNS_FLOWS`); `restore_recvmsg4|6` (`cgroup/recvmsg4|6`) shows the
//!   forwarder's answers as coming from that server. DNS is always fail-open.
//!
//! Failure policy, written once: when a program cannot do its job (no config, no live listener,
//! a full map) the connect goes through unmodified and a counter says why (fail-open), except
//! that with `FLAG_FAIL_CLOSED` a missing listener refuses the connect. The peer-keyed record is
//! never deleted on client close: a client that sends and closes quickly would lose it before
//! the proxy's `accept()`; the proxy deletes on lookup and the LRU is the backstop.
//!
//! # Minimum kernel version
//!
//! 5.15: `bpf_get_netns_cookie` from sock_addr (5.7) and `bpf_get_socket_cookie` from
//! cgroup_sock (5.10), SOCKMAP holding listening sockets (5.7). Tested on 6.18.
#![no_std]
#![no_main]

use core::{
    ffi::c_void,
    ptr::{addr_of, read_volatile, write_volatile},
};

use aya_ebpf::{
    bindings::{bpf_sock_addr, BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        generated::{
            bpf_get_current_cgroup_id, bpf_get_netns_cookie, bpf_get_socket_cookie, bpf_map_lookup_elem, bpf_sk_release,
        },
    },
    macros::{cgroup_skb, cgroup_sock, cgroup_sock_addr, map, sock_ops},
    maps::{lpm_trie::Key, Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, SockMap},
    programs::{SkBuffContext, SockAddrContext, SockContext, SockOpsContext},
    EbpfContext as _,
};
use gateway_common::{
    is_loopback, is_v4_mapped, lpm_prefix_len, v4_mapped, Cidr4, Cidr6, ConnRecord, Endpoint4Key, Endpoint6Key,
    EndpointValue, PeerKey, RedirectConfig, ACTION_DENY, ACTION_DNS, AF_INET, AF_INET6, CIDRS_MAX_ENTRIES,
    CONNS_MAX_ENTRIES, DNS_FLOWS_MAX_ENTRIES, DNS_PORT, ENDPOINTS_MAP_FLAGS, ENDPOINTS_MAX_ENTRIES, FLAG_DNS,
    FLAG_FAIL_CLOSED, FLAG_HAS_HOST6, FLAG_HAS_NODE4, FLAG_HAS_NODE6, LISTENERS_MAX_ENTRIES, LISTENER_DNS_TCP,
    LISTENER_DNS_UDP, LISTENER_HOST4, LISTENER_HOST6, LISTENER_NODE4, LISTENER_NODE6, SOCKETS_MAX_ENTRIES, STATS_LEN,
    STAT_DENIED, STAT_DNS_ANSWER_RESTORED, STAT_DNS_FLOW_FAILED, STAT_DNS_REDIRECTED, STAT_DNS_SKIPPED_NO_FORWARDER,
    STAT_FAILED_CLOSED, STAT_PEERNAME_RESTORED, STAT_RECORD_FAILED, STAT_REDIRECTED, STAT_SKIPPED_NO_LISTENER,
    STAT_SKIPPED_OWN,
};

/// cgroup sock_addr verdicts.
const ALLOW: i32 = 1;
const REJECT: i32 = 0;
const IPPROTO_TCP: u32 = 6;
const IPPROTO_UDP: u32 = 17;
/// `__sk_buff.protocol` values (the L3 protocol, network order, in a u32).
const ETH_P_IP: u32 = 0x0800u16.to_be() as u32;
const ETH_P_IPV6: u32 = 0x86DDu16.to_be() as u32;

#[map]
static CONFIG: Array<RedirectConfig> = Array::with_max_entries(1, 0);
#[map]
static ENDPOINTS4: HashMap<Endpoint4Key, EndpointValue> =
    HashMap::with_max_entries(ENDPOINTS_MAX_ENTRIES, ENDPOINTS_MAP_FLAGS);
#[map]
static ENDPOINTS6: HashMap<Endpoint6Key, EndpointValue> =
    HashMap::with_max_entries(ENDPOINTS_MAX_ENTRIES, ENDPOINTS_MAP_FLAGS);
#[map]
static CIDRS4: LpmTrie<Cidr4, EndpointValue> = LpmTrie::with_max_entries(CIDRS_MAX_ENTRIES, 0);
#[map]
static CIDRS6: LpmTrie<Cidr6, EndpointValue> = LpmTrie::with_max_entries(CIDRS_MAX_ENTRIES, 0);
#[map]
static SOCKETS: LruHashMap<u64, ConnRecord> = LruHashMap::with_max_entries(SOCKETS_MAX_ENTRIES, 0);
#[map]
static CONNS: LruHashMap<PeerKey, ConnRecord> = LruHashMap::with_max_entries(CONNS_MAX_ENTRIES, 0);
#[map]
static LISTENERS: SockMap = SockMap::with_max_entries(LISTENERS_MAX_ENTRIES, 0);
#[map]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STATS_LEN, 0);
#[map]
static DNS_FLOWS: LruHashMap<PeerKey, ConnRecord> = LruHashMap::with_max_entries(DNS_FLOWS_MAX_ENTRIES, 0);

/// The address and port of a sock_addr context (`user_ip4`, `user_port` in network order).
#[inline(always)]
fn addr4(sa: *mut bpf_sock_addr) -> (u32, u16) {
    // SAFETY: the kernel hands us a valid bpf_sock_addr; fields are read one by one with
    // volatile loads because the verifier refuses merged or narrowed context accesses.
    // `user_port` is a u32 holding the port in network order in its low 16 bits; Cilium reads
    // it the same way ("missing narrow ctx access").
    unsafe {
        (
            read_volatile(addr_of!((*sa).user_ip4)),
            read_volatile(addr_of!((*sa).user_port)) as u16,
        )
    }
}

/// The IPv6 address (four words, network order) and port of a sock_addr context.
#[inline(always)]
fn addr6(sa: *mut bpf_sock_addr) -> ([u32; 4], u16) {
    // SAFETY: as in `addr4`. user_ip6 is copied word by word: copying it as an array fails
    // with "dereference of modified ctx ptr" (aya's sk_storage test notes the same).
    unsafe {
        (
            [
                read_volatile(addr_of!((*sa).user_ip6[0])),
                read_volatile(addr_of!((*sa).user_ip6[1])),
                read_volatile(addr_of!((*sa).user_ip6[2])),
                read_volatile(addr_of!((*sa).user_ip6[3])),
            ],
            read_volatile(addr_of!((*sa).user_port)) as u16,
        )
    }
}

/// Rewrites the address and port of a sock_addr context (writable in connect, sendmsg,
/// recvmsg and getpeername).
#[inline(always)]
fn set_addr4(sa: *mut bpf_sock_addr, ip: u32, port: u16) {
    // SAFETY: user_ip4/user_port are writable in these hooks; one 4-byte store each.
    unsafe {
        write_volatile(addr_of!((*sa).user_ip4).cast_mut(), ip);
        write_volatile(addr_of!((*sa).user_port).cast_mut(), u32::from(port));
    }
}

/// The IPv6 side of [`set_addr4`].
#[inline(always)]
fn set_addr6(sa: *mut bpf_sock_addr, ip: [u32; 4], port: u16) {
    // SAFETY: user_ip6[i]/user_port are writable in these hooks; 4-byte stores, one per field:
    // LLVM may otherwise merge neighbours into an 8-byte store that the verifier refuses
    // ("invalid bpf_context access off=.. size=8").
    unsafe {
        write_volatile(addr_of!((*sa).user_ip6[0]).cast_mut(), ip[0]);
        write_volatile(addr_of!((*sa).user_ip6[1]).cast_mut(), ip[1]);
        write_volatile(addr_of!((*sa).user_ip6[2]).cast_mut(), ip[2]);
        write_volatile(addr_of!((*sa).user_ip6[3]).cast_mut(), ip[3]);
        write_volatile(addr_of!((*sa).user_port).cast_mut(), u32::from(port));
    }
}

/// The socket's protocol (`IPPROTO_*`).
#[inline(always)]
fn protocol(sa: *mut bpf_sock_addr) -> u32 {
    // SAFETY: a plain readable field.
    unsafe { read_volatile(addr_of!((*sa).protocol)) }
}

// === connect ===

#[cgroup_sock_addr(connect4)]
pub fn redirect_connect4(ctx: SockAddrContext) -> i32 {
    match try_redirect_connect4(&ctx) {
        Ok(verdict) | Err(verdict) => verdict,
    }
}

#[cgroup_sock_addr(connect6)]
pub fn redirect_connect6(ctx: SockAddrContext) -> i32 {
    match try_redirect_connect6(&ctx) {
        Ok(verdict) | Err(verdict) => verdict,
    }
}

fn try_redirect_connect4(ctx: &SockAddrContext) -> Result<i32, i32> {
    let sa = ctx.sock_addr;
    let protocol = protocol(sa);
    let (ip, port) = addr4(sa);
    if port == DNS_PORT.to_be() && (protocol == IPPROTO_TCP || protocol == IPPROTO_UDP) {
        redirect_dns4(ctx, ip, port, protocol == IPPROTO_TCP);
        return Ok(ALLOW);
    }
    if protocol != IPPROTO_TCP {
        return Ok(ALLOW);
    }
    let Some(endpoint) = lookup4(ip, port) else {
        return Ok(ALLOW);
    };
    let Some(listener) = decide(ctx, &endpoint, v4_mapped(ip), port, AF_INET)? else {
        return Ok(ALLOW);
    };
    let cfg = config();
    let (new_ip, new_port) = match listener {
        LISTENER_NODE4 => (cfg.node_ip4, cfg.node_port4),
        _ => (cfg.proxy_ip4, cfg.proxy_port4),
    };
    set_addr4(sa, new_ip, new_port);
    count(STAT_REDIRECTED);
    Ok(ALLOW)
}

fn try_redirect_connect6(ctx: &SockAddrContext) -> Result<i32, i32> {
    let sa = ctx.sock_addr;
    let protocol = protocol(sa);
    let (ip, port) = addr6(sa);
    if port == DNS_PORT.to_be() && (protocol == IPPROTO_TCP || protocol == IPPROTO_UDP) {
        redirect_dns6(ctx, ip, port, protocol == IPPROTO_TCP);
        return Ok(ALLOW);
    }
    if protocol != IPPROTO_TCP {
        return Ok(ALLOW);
    }
    // A dual-stack socket connecting to `::ffff:a.b.c.d` never reaches connect4: match it
    // against the IPv4 maps and send it to the IPv4 listener, written back v4-mapped.
    let mapped = is_v4_mapped(&ip);
    let endpoint = if mapped {
        lookup4(ip[3], port)
    } else {
        lookup6(&ip, port)
    };
    let Some(endpoint) = endpoint else {
        return Ok(ALLOW);
    };
    let Some(listener) = decide(ctx, &endpoint, ip, port, AF_INET6)? else {
        return Ok(ALLOW);
    };
    let cfg = config();
    let (new_ip, new_port) = match listener {
        LISTENER_HOST4 => (v4_mapped(cfg.proxy_ip4), cfg.proxy_port4),
        LISTENER_NODE4 => (v4_mapped(cfg.node_ip4), cfg.node_port4),
        LISTENER_NODE6 => (cfg.node_ip6, cfg.node_port6),
        _ => (cfg.proxy_ip6, cfg.proxy_port6),
    };
    set_addr6(sa, new_ip, new_port);
    count(STAT_REDIRECTED);
    Ok(ALLOW)
}

/// The common decision for a connect that matched an endpoint. `Ok(Some(listener))`: redirect
/// to that `LISTENER_*`; `Ok(None)`: let through untouched; `Err(verdict)`: return it as is.
#[inline(always)]
fn decide(
    ctx: &SockAddrContext,
    endpoint: &EndpointValue,
    orig_ip: [u32; 4],
    orig_port: u16,
    family: u16,
) -> Result<Option<u32>, i32> {
    let cfg = config();
    // Our own upstream sockets first: the proxy must never be redirected to itself, nor
    // refused.
    if carries_mark(ctx.sock_addr, cfg.mark) {
        count(STAT_SKIPPED_OWN);
        return Ok(None);
    }
    if endpoint.action == ACTION_DENY {
        count(STAT_DENIED);
        return Err(REJECT);
    }
    // SAFETY: helper valid for sock_addr programs (5.7+).
    let netns_cookie = unsafe { bpf_get_netns_cookie(ctx.as_ptr()) };
    let in_host = netns_cookie == cfg.host_netns_cookie;
    let to_v4 = is_v4_mapped(&orig_ip);
    let listener = match (in_host, to_v4) {
        (true, true) => Some(LISTENER_HOST4),
        (true, false) if cfg.flags & FLAG_HAS_HOST6 != 0 => Some(LISTENER_HOST6),
        (false, true) if cfg.flags & FLAG_HAS_NODE4 != 0 => Some(LISTENER_NODE4),
        (false, false) if cfg.flags & FLAG_HAS_NODE6 != 0 => Some(LISTENER_NODE6),
        _ => None,
    };
    let alive = match listener {
        Some(index) => listener_alive(index),
        None => false,
    };
    let Some(listener) = listener.filter(|_| alive) else {
        if cfg.flags & FLAG_FAIL_CLOSED != 0 {
            count(STAT_FAILED_CLOSED);
            return Err(REJECT);
        }
        count(STAT_SKIPPED_NO_LISTENER);
        return Ok(None);
    };

    let record = record(
        orig_ip,
        orig_port,
        family,
        endpoint.action,
        endpoint.provider,
        netns_cookie,
    );
    // SAFETY: helper valid for sock_addr programs.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    if SOCKETS.insert(&cookie, &record, 0).is_err() {
        // Without a record the proxy could not know where the client meant to go: let it
        // through rather than hand the proxy a connection it must close.
        count(STAT_RECORD_FAILED);
        return Ok(None);
    }
    Ok(Some(listener))
}

/// Who connected (or sent) and where to.
#[inline(always)]
fn record(orig_ip: [u32; 4], orig_port: u16, family: u16, action: u32, provider: u32, netns_cookie: u64) -> ConnRecord {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    ConnRecord {
        orig_ip,
        orig_port,
        family,
        pid: pid_tgid as u32,
        tgid: (pid_tgid >> 32) as u32,
        uid: uid_gid as u32,
        gid: (uid_gid >> 32) as u32,
        action,
        // SAFETY: helper valid for sock_addr programs.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        netns_cookie,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
        provider,
        _pad: 0,
    }
}

#[inline(always)]
fn lookup4(ip: u32, port: u16) -> Option<EndpointValue> {
    let exact = Endpoint4Key { ip, port, _pad: 0 };
    // SAFETY: values are plain data copied out immediately.
    if let Some(v) = unsafe { ENDPOINTS4.get(&exact) } {
        return Some(*v);
    }
    let key = Key::new(
        lpm_prefix_len(32),
        Cidr4 {
            port: port.to_ne_bytes(),
            addr: ip.to_ne_bytes(),
            _pad: [0; 2],
        },
    );
    CIDRS4.get(&key).copied()
}

#[inline(always)]
fn lookup6(ip: &[u32; 4], port: u16) -> Option<EndpointValue> {
    let exact = Endpoint6Key { ip: *ip, port, _pad: 0 };
    // SAFETY: values are plain data copied out immediately.
    if let Some(v) = unsafe { ENDPOINTS6.get(&exact) } {
        return Some(*v);
    }
    let mut addr = [0u8; 16];
    let mut i = 0;
    while i < 4 {
        let word = ip[i].to_ne_bytes();
        addr[i * 4] = word[0];
        addr[i * 4 + 1] = word[1];
        addr[i * 4 + 2] = word[2];
        addr[i * 4 + 3] = word[3];
        i += 1;
    }
    let key = Key::new(
        lpm_prefix_len(128),
        Cidr6 {
            port: port.to_ne_bytes(),
            addr,
            _pad: [0; 2],
        },
    );
    CIDRS6.get(&key).copied()
}

/// Whether the connecting socket carries Tollgate's `SO_MARK`.
#[inline(always)]
fn carries_mark(sa: *mut bpf_sock_addr, mark: u32) -> bool {
    if mark == 0 {
        return false;
    }
    // SAFETY: `sk` is a PTR_TO_SOCKET the verifier allows us to read; `mark` is a plain
    // readable field of bpf_sock.
    unsafe {
        let sk = read_volatile(addr_of!((*sa).__bindgen_anon_1.sk));
        !sk.is_null() && read_volatile(addr_of!((*sk).mark)) == mark
    }
}

/// A listener is alive while its socket sits in `LISTENERS`: the kernel removes closed sockets
/// from a SOCKMAP, so a dead proxy means no entry. (`bpf_sk_lookup_tcp` cannot be used: from a
/// pod's netns it does not see the host's listener.)
#[inline(always)]
fn listener_alive(index: u32) -> bool {
    // SAFETY: LISTENERS is a SOCKMAP; its lookup returns a referenced socket that must be
    // released, which we do at once. `SockMap` is `repr(transparent)` over the map definition,
    // so the static's address is the map pointer the loader relocates.
    unsafe {
        let sk = bpf_map_lookup_elem(
            addr_of!(LISTENERS).cast_mut().cast::<c_void>(),
            addr_of!(index).cast::<c_void>(),
        );
        if sk.is_null() {
            return false;
        }
        bpf_sk_release(sk);
    }
    true
}

#[inline(always)]
fn config() -> RedirectConfig {
    CONFIG.get(0).copied().unwrap_or_default()
}

#[inline(always)]
fn count(stat: u32) {
    if let Some(counter) = STATS.get_ptr_mut(stat) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU while we run.
        unsafe { *counter += 1 };
    }
}

// === DNS ===

/// Where a DNS query from this socket goes: `Some(slot)` (`LISTENER_HOST4` … `LISTENER_NODE6`)
/// when the forwarder takes it, after recording the server asked by socket cookie; `None`: let
/// it through (no forwarder, our own socket, a pod's own loopback resolver).
#[inline(always)]
fn dns_slot(ctx: &SockAddrContext, orig_ip: [u32; 4], orig_port: u16, family: u16, tcp: bool) -> Option<u32> {
    let cfg = config();
    if cfg.flags & FLAG_DNS == 0 || carries_mark(ctx.sock_addr, cfg.mark) {
        return None;
    }
    // SAFETY: helper valid for sock_addr programs (5.7+).
    let netns_cookie = unsafe { bpf_get_netns_cookie(ctx.as_ptr()) };
    let in_host = netns_cookie == cfg.host_netns_cookie;
    let to_v4 = is_v4_mapped(&orig_ip);
    // A resolver on a pod's own loopback (a sidecar) is out of the host's reach.
    if !in_host && is_loopback(&orig_ip) {
        return None;
    }
    let slot = match (in_host, to_v4) {
        (true, true) => LISTENER_HOST4,
        (true, false) if cfg.flags & FLAG_HAS_HOST6 != 0 => LISTENER_HOST6,
        (false, true) if cfg.flags & FLAG_HAS_NODE4 != 0 => LISTENER_NODE4,
        (false, false) if cfg.flags & FLAG_HAS_NODE6 != 0 => LISTENER_NODE6,
        _ => return None,
    };
    let base = if tcp { LISTENER_DNS_TCP } else { LISTENER_DNS_UDP };
    if !listener_alive(base + slot) {
        count(STAT_DNS_SKIPPED_NO_FORWARDER);
        return None;
    }
    let record = record(orig_ip, orig_port, family, ACTION_DNS, u32::MAX, netns_cookie);
    // SAFETY: helper valid for sock_addr programs.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    if SOCKETS.insert(&cookie, &record, 0).is_err() {
        count(STAT_RECORD_FAILED);
        return None;
    }
    count(STAT_DNS_REDIRECTED);
    Some(slot)
}

/// Sends an IPv4 DNS query (connect or datagram) to the forwarder when it runs.
#[inline(always)]
fn redirect_dns4(ctx: &SockAddrContext, ip: u32, port: u16, tcp: bool) {
    let Some(slot) = dns_slot(ctx, v4_mapped(ip), port, AF_INET, tcp) else {
        return;
    };
    let cfg = config();
    let (new_ip, new_port) = match slot {
        LISTENER_NODE4 => (cfg.node_ip4, cfg.dns_node_port4),
        _ => (cfg.proxy_ip4, cfg.dns_port4),
    };
    set_addr4(ctx.sock_addr, new_ip, new_port);
}

/// The IPv6 side of [`redirect_dns4`]; v4-mapped servers go to the IPv4 forwarder.
#[inline(always)]
fn redirect_dns6(ctx: &SockAddrContext, ip: [u32; 4], port: u16, tcp: bool) {
    let Some(slot) = dns_slot(ctx, ip, port, AF_INET6, tcp) else {
        return;
    };
    let cfg = config();
    let (new_ip, new_port) = match slot {
        LISTENER_HOST4 => (v4_mapped(cfg.proxy_ip4), cfg.dns_port4),
        LISTENER_NODE4 => (v4_mapped(cfg.node_ip4), cfg.dns_node_port4),
        LISTENER_NODE6 => (cfg.node_ip6, cfg.dns_node_port6),
        _ => (cfg.proxy_ip6, cfg.dns_port6),
    };
    set_addr6(ctx.sock_addr, new_ip, new_port);
}

#[cgroup_sock_addr(sendmsg4)]
pub fn redirect_sendmsg4(ctx: SockAddrContext) -> i32 {
    let (ip, port) = addr4(ctx.sock_addr);
    if port == DNS_PORT.to_be() {
        redirect_dns4(&ctx, ip, port, false);
    }
    ALLOW
}

#[cgroup_sock_addr(sendmsg6)]
pub fn redirect_sendmsg6(ctx: SockAddrContext) -> i32 {
    let (ip, port) = addr6(ctx.sock_addr);
    if port == DNS_PORT.to_be() {
        redirect_dns6(&ctx, ip, port, false);
    }
    ALLOW
}

/// The server a DNS socket asked, when `(ip, port)` (the source of a datagram it receives)
/// is one of the forwarder's addresses.
#[inline(always)]
fn asked_server(ctx: &SockAddrContext, ip: [u32; 4], port: u16) -> Option<ConnRecord> {
    let cfg = config();
    if cfg.flags & FLAG_DNS == 0 {
        return None;
    }
    let forwarder = (ip == v4_mapped(cfg.proxy_ip4) && port == cfg.dns_port4)
        || (cfg.flags & FLAG_HAS_NODE4 != 0 && ip == v4_mapped(cfg.node_ip4) && port == cfg.dns_node_port4)
        || (cfg.flags & FLAG_HAS_HOST6 != 0 && ip == cfg.proxy_ip6 && port == cfg.dns_port6)
        || (cfg.flags & FLAG_HAS_NODE6 != 0 && ip == cfg.node_ip6 && port == cfg.dns_node_port6);
    if !forwarder {
        return None;
    }
    record_of(ctx).filter(|r| r.action == ACTION_DNS)
}

#[cgroup_sock_addr(recvmsg4)]
pub fn restore_recvmsg4(ctx: SockAddrContext) -> i32 {
    // The datagram's source.
    let (ip, port) = addr4(ctx.sock_addr);
    if let Some(record) = asked_server(&ctx, v4_mapped(ip), port) {
        set_addr4(ctx.sock_addr, record.orig_ip[3], record.orig_port);
        count(STAT_DNS_ANSWER_RESTORED);
    }
    ALLOW
}

#[cgroup_sock_addr(recvmsg6)]
pub fn restore_recvmsg6(ctx: SockAddrContext) -> i32 {
    let (ip, port) = addr6(ctx.sock_addr);
    if let Some(record) = asked_server(&ctx, ip, port) {
        set_addr6(ctx.sock_addr, record.orig_ip, record.orig_port);
        count(STAT_DNS_ANSWER_RESTORED);
    }
    ALLOW
}

/// Files each datagram a redirected DNS socket sends to the forwarder under its source address
/// and port, which only the packet knows (an unbound socket's address is chosen by routing
/// after sendmsg; a pod's is its own). Every packet passes; only UDP to a forwarder is looked at.
#[cgroup_skb(egress)]
pub fn track_dns_egress(ctx: SkBuffContext) -> i32 {
    let _ = try_track_dns_egress(&ctx);
    1
}

fn try_track_dns_egress(ctx: &SkBuffContext) -> Option<()> {
    let cfg = config();
    if cfg.flags & FLAG_DNS == 0 {
        return None;
    }
    // SAFETY: `protocol` is a readable __sk_buff field.
    let protocol = unsafe { read_volatile(addr_of!((*ctx.skb.skb).protocol)) };
    let (src, sport, to_forwarder) = if protocol == ETH_P_IP {
        // Fixed-size loads: the verifier refuses a length that may be zero.
        let ip: [u8; 20] = ctx.load(0).ok()?;
        if ip[9] != IPPROTO_UDP as u8 {
            return None;
        }
        let ports: [u8; 4] = ctx.load(usize::from(ip[0] & 0x0f) * 4).ok()?;
        let dst = u32::from_ne_bytes([ip[16], ip[17], ip[18], ip[19]]);
        let dport = u16::from_ne_bytes([ports[2], ports[3]]);
        let hit = (dst == cfg.proxy_ip4 && dport == cfg.dns_port4)
            || (cfg.flags & FLAG_HAS_NODE4 != 0 && dst == cfg.node_ip4 && dport == cfg.dns_node_port4);
        let src = v4_mapped(u32::from_ne_bytes([ip[12], ip[13], ip[14], ip[15]]));
        (src, u16::from_be_bytes([ports[0], ports[1]]), hit)
    } else if protocol == ETH_P_IPV6 {
        let ip: [u8; 44] = ctx.load(0).ok()?;
        // Next header UDP directly: the resolvers' datagrams carry no extension headers.
        if ip[6] != IPPROTO_UDP as u8 {
            return None;
        }
        let word = |at: usize| u32::from_ne_bytes([ip[at], ip[at + 1], ip[at + 2], ip[at + 3]]);
        let dst = [word(24), word(28), word(32), word(36)];
        let dport = u16::from_ne_bytes([ip[42], ip[43]]);
        let hit = (cfg.flags & FLAG_HAS_HOST6 != 0 && dst == cfg.proxy_ip6 && dport == cfg.dns_port6)
            || (cfg.flags & FLAG_HAS_NODE6 != 0 && dst == cfg.node_ip6 && dport == cfg.dns_node_port6);
        (
            [word(8), word(12), word(16), word(20)],
            u16::from_be_bytes([ip[40], ip[41]]),
            hit,
        )
    } else {
        return None;
    };
    if !to_forwarder {
        return None;
    }
    // SAFETY: helper valid for cgroup_skb programs: the cookie of the sending socket.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    // SAFETY: copied out at once.
    let record = unsafe { SOCKETS.get(&cookie) }.copied()?;
    if record.action != ACTION_DNS {
        return None;
    }
    let key = PeerKey {
        ip: src,
        port: sport,
        _pad: 0,
        _pad2: 0,
        netns: if is_loopback(&src) { record.netns_cookie } else { 0 },
    };
    if DNS_FLOWS.insert(&key, &record, 0).is_err() {
        count(STAT_DNS_FLOW_FAILED);
    }
    Some(())
}

// === sock_ops ===

#[sock_ops]
pub fn rekey_sock_ops(ctx: SockOpsContext) -> u32 {
    try_rekey_sock_ops(&ctx);
    0
}

fn try_rekey_sock_ops(ctx: &SockOpsContext) {
    // Active established fires while the client processes the SYN-ACK, before its final ACK,
    // so the peer-keyed record exists before the proxy's accept() can return.
    if ctx.op() != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB {
        return;
    }
    // SAFETY: helper valid for sock_ops programs.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    // SAFETY: copied out at once.
    let Some(record) = (unsafe { SOCKETS.get(&cookie) }).copied() else {
        return;
    };
    let ops = ctx.ops;
    // SAFETY: readable bpf_sock_ops fields, each read on its own. All are read whatever the
    // family: when the IPv4 and IPv6 branches each loaded their field, LLVM sank both loads
    // into one with a run-time offset, which the verifier refuses ("dereference of modified
    // ctx ptr R5 off=60 disallowed"), volatile or not.
    let (family, ip4, ip6, port) = unsafe {
        (
            read_volatile(addr_of!((*ops).family)),
            read_volatile(addr_of!((*ops).local_ip4)),
            [
                read_volatile(addr_of!((*ops).local_ip6[0])),
                read_volatile(addr_of!((*ops).local_ip6[1])),
                read_volatile(addr_of!((*ops).local_ip6[2])),
                read_volatile(addr_of!((*ops).local_ip6[3])),
            ],
            // local_port is in host order (unlike remote_port).
            read_volatile(addr_of!((*ops).local_port)) as u16,
        )
    };
    let ip = match family {
        2 => v4_mapped(ip4),
        10 => ip6,
        _ => return,
    };
    let key = PeerKey {
        ip,
        port,
        _pad: 0,
        _pad2: 0,
        netns: if is_loopback(&ip) { record.netns_cookie } else { 0 },
    };
    let _ = CONNS.insert(&key, &record, 0);
}

// === getpeername ===

#[cgroup_sock_addr(getpeername4)]
pub fn restore_getpeername4(ctx: SockAddrContext) -> i32 {
    if let Some(record) = record_of(&ctx) {
        set_addr4(ctx.sock_addr, record.orig_ip[3], record.orig_port);
        count(STAT_PEERNAME_RESTORED);
    }
    ALLOW
}

#[cgroup_sock_addr(getpeername6)]
pub fn restore_getpeername6(ctx: SockAddrContext) -> i32 {
    if let Some(record) = record_of(&ctx) {
        // The record keeps IPv4 destinations v4-mapped, which is what an AF_INET6 socket
        // that connected to `::ffff:a.b.c.d` must see.
        set_addr6(ctx.sock_addr, record.orig_ip, record.orig_port);
        count(STAT_PEERNAME_RESTORED);
    }
    ALLOW
}

#[inline(always)]
fn record_of(ctx: &SockAddrContext) -> Option<ConnRecord> {
    // SAFETY: helper valid for sock_addr programs; the value is copied out at once.
    unsafe {
        let cookie = bpf_get_socket_cookie(ctx.as_ptr());
        SOCKETS.get(&cookie).copied()
    }
}

// === sock_release ===

#[cgroup_sock(sock_release)]
pub fn forget_sock_release(ctx: SockContext) -> i32 {
    // SAFETY: bpf_get_socket_cookie is valid for cgroup_sock programs (5.10+).
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let _ = SOCKETS.remove(&cookie);
    ALLOW
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // SAFETY: the verifier rejects any program that could reach a panic, so this is dead code.
    unsafe { core::hint::unreachable_unchecked() }
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
