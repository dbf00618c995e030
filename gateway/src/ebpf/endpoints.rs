//! The endpoint maps: which destinations the connect programs capture, and how.
//!
//! One owner task ([`run_sync`]) computes the wanted set from the config and from hostname
//! resolution, and applies only the difference to the maps: entries are inserted or updated
//! before stale ones are removed, and the maps are never cleared, so traffic sees no window
//! without redirection.

use std::{
    collections::HashMap as StdHashMap,
    future::Future,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use aya::maps::{
    lpm_trie::{Key, LpmTrie},
    HashMap, Map, MapData,
};
use gateway_common::{
    lpm_prefix_len, Cidr4, Cidr6, Endpoint4Key, Endpoint6Key, EndpointValue, ACTION_DENY, ACTION_INTERCEPT,
    ACTION_OBSERVE, CIDRS4_MAP, CIDRS6_MAP, ENDPOINTS4_MAP, ENDPOINTS6_MAP,
};
use ipnet::IpNet;
use tokio::{sync::watch, time::Instant};

use super::{learned::LearnedNames, Error};
use crate::{
    config::{
        capacity::{MapEntries, MapKind},
        Dns, Mode, Provider,
    },
    socket::{canonical_ip as canonical, ip4_to_word, ip_to_words},
};

/// One capture rule as the kernel sees it.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Hash)]
pub enum Entry {
    Exact(SocketAddr),
    Cidr(IpNet, u16),
}

/// The wanted contents of all four maps.
pub type EndpointSet = StdHashMap<Entry, EndpointValue>;

impl Entry {
    /// The map that holds the entry.
    pub fn map(&self) -> MapKind {
        match self {
            Entry::Exact(addr) => MapKind::exact(addr.ip()),
            Entry::Cidr(net, _) => MapKind::cidr(net),
        }
    }
}

pub fn action(mode: Mode) -> u32 {
    match mode {
        Mode::Intercept => ACTION_INTERCEPT,
        Mode::Observe => ACTION_OBSERVE,
        Mode::Deny => ACTION_DENY,
    }
}

/// Handles on the four endpoint maps plus what was last written to them.
pub struct EndpointMaps {
    exact4: HashMap<MapData, Endpoint4Key, EndpointValue>,
    exact6: HashMap<MapData, Endpoint6Key, EndpointValue>,
    cidr4: LpmTrie<MapData, Cidr4, EndpointValue>,
    cidr6: LpmTrie<MapData, Cidr6, EndpointValue>,
    current: EndpointSet,
    /// Entries of `current` by map.
    counts: MapEntries,
}

/// Counts of one [`EndpointMaps::sync`].
#[derive(Debug, Default, Eq, PartialEq)]
pub struct SyncStats {
    pub upserted: usize,
    pub removed: usize,
    pub total: usize,
}

impl EndpointMaps {
    pub(super) fn take(take: &mut impl FnMut(&'static str) -> Result<Map, Error>) -> Result<Self, Error> {
        let e = |name: &'static str| move |source| Error::Map { name, source };
        let mut maps = EndpointMaps {
            exact4: HashMap::try_from(take(ENDPOINTS4_MAP)?).map_err(e(ENDPOINTS4_MAP))?,
            exact6: HashMap::try_from(take(ENDPOINTS6_MAP)?).map_err(e(ENDPOINTS6_MAP))?,
            cidr4: LpmTrie::try_from(take(CIDRS4_MAP)?).map_err(e(CIDRS4_MAP))?,
            cidr6: LpmTrie::try_from(take(CIDRS6_MAP)?).map_err(e(CIDRS6_MAP))?,
            current: EndpointSet::new(),
            counts: MapEntries::default(),
        };
        // Pinned maps may arrive filled (a predecessor's, or a fail-closed instance's): start
        // from what is there, so that the first sync removes what this config does not want
        // and rewrites nothing that is already right.
        maps.current = maps.existing();
        maps.current.keys().for_each(|e| maps.counts.add(e.map()));
        Ok(maps)
    }

    /// What the maps hold now.
    fn existing(&self) -> EndpointSet {
        let mut set = EndpointSet::new();
        for (k, v) in self.exact4.iter().flatten() {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(k.ip.to_ne_bytes()));
            set.insert(Entry::Exact(SocketAddr::new(ip, u16::from_be(k.port))), v);
        }
        for (k, v) in self.exact6.iter().flatten() {
            let ip = crate::socket::words_to_ip(k.ip);
            set.insert(Entry::Exact(SocketAddr::new(ip, u16::from_be(k.port))), v);
        }
        let prefix = |key_len: u32| key_len.saturating_sub(lpm_prefix_len(0)) as u8;
        for (k, v) in self.cidr4.iter().flatten() {
            let d = k.data();
            if let Ok(net) = ipnet::Ipv4Net::new(std::net::Ipv4Addr::from(d.addr), prefix(k.prefix_len())) {
                set.insert(Entry::Cidr(IpNet::V4(net), u16::from_be_bytes(d.port)), v);
            }
        }
        for (k, v) in self.cidr6.iter().flatten() {
            let d = k.data();
            if let Ok(net) = ipnet::Ipv6Net::new(std::net::Ipv6Addr::from(d.addr), prefix(k.prefix_len())) {
                set.insert(Entry::Cidr(IpNet::V6(net), u16::from_be_bytes(d.port)), v);
            }
        }
        set
    }

    /// Makes the maps hold exactly `wanted`, touching only what differs.
    pub fn sync(&mut self, wanted: &EndpointSet) -> Result<SyncStats, Error> {
        let mut stats = SyncStats {
            total: wanted.len(),
            ..Default::default()
        };
        for (entry, value) in wanted {
            if self.current.get(entry) != Some(value) {
                self.write(entry, Some(value))?;
                stats.upserted += 1;
            }
        }
        let stale: Vec<Entry> = self
            .current
            .keys()
            .filter(|e| !wanted.contains_key(e))
            .copied()
            .collect();
        for entry in &stale {
            self.write(entry, None)?;
            stats.removed += 1;
        }
        self.current = wanted.clone();
        self.counts = MapEntries::default();
        self.current.keys().for_each(|e| self.counts.add(e.map()));
        Ok(stats)
    }

    /// Adds entries the maps do not hold yet (an entry already there, whoever's, stays), if all
    /// of them fit; `Ok(false)`, touching nothing, when one would take its map past capacity.
    /// What DNS learning adds between full syncs, at the cost of the new entries only.
    pub fn add(&mut self, entries: &[(Entry, EndpointValue)]) -> Result<bool, Error> {
        let fresh: Vec<&(Entry, EndpointValue)> =
            entries.iter().filter(|(e, _)| !self.current.contains_key(e)).collect();
        let mut counts = self.counts;
        for (entry, _) in &fresh {
            if !counts.has_room(entry.map()) {
                return Ok(false);
            }
            counts.add(entry.map());
        }
        for (entry, value) in fresh {
            if self.current.contains_key(entry) {
                continue;
            }
            self.write(entry, Some(value))?;
            self.current.insert(*entry, *value);
            self.counts.add(entry.map());
        }
        Ok(true)
    }

    fn write(&mut self, entry: &Entry, value: Option<&EndpointValue>) -> Result<(), Error> {
        let port_be = |port: u16| port.to_be();
        let result = match *entry {
            Entry::Exact(SocketAddr::V4(addr)) => {
                let key = Endpoint4Key {
                    ip: ip4_to_word(*addr.ip()),
                    port: port_be(addr.port()),
                    _pad: 0,
                };
                (ENDPOINTS4_MAP, upsert_or_remove(&mut self.exact4, key, value))
            }
            Entry::Exact(SocketAddr::V6(addr)) => {
                let key = Endpoint6Key {
                    ip: ip_to_words(IpAddr::V6(*addr.ip())),
                    port: port_be(addr.port()),
                    _pad: 0,
                };
                (ENDPOINTS6_MAP, upsert_or_remove(&mut self.exact6, key, value))
            }
            Entry::Cidr(IpNet::V4(net), port) => {
                let data = Cidr4 {
                    port: port.to_be_bytes(),
                    addr: net.addr().octets(),
                    _pad: [0; 2],
                };
                let key = Key::new(lpm_prefix_len(u32::from(net.prefix_len())), data);
                let r = match value {
                    Some(v) => self.cidr4.insert(&key, v, 0),
                    None => self.cidr4.remove(&key),
                };
                (CIDRS4_MAP, r)
            }
            Entry::Cidr(IpNet::V6(net), port) => {
                let data = Cidr6 {
                    port: port.to_be_bytes(),
                    addr: net.addr().octets(),
                    _pad: [0; 2],
                };
                let key = Key::new(lpm_prefix_len(u32::from(net.prefix_len())), data);
                let r = match value {
                    Some(v) => self.cidr6.insert(&key, v, 0),
                    None => self.cidr6.remove(&key),
                };
                (CIDRS6_MAP, r)
            }
        };
        match result {
            (_, Ok(())) => Ok(()),
            (name, Err(aya::maps::MapError::SyscallError(e))) if e.io_error.raw_os_error() == Some(libc::E2BIG) => {
                Err(Error::MapFull {
                    name,
                    capacity: entry.map().capacity(),
                })
            }
            (name, Err(source)) => Err(Error::Map { name, source }),
        }
    }
}

fn upsert_or_remove<K: aya::Pod, V: aya::Pod>(
    map: &mut HashMap<MapData, K, V>,
    key: K,
    value: Option<&V>,
) -> Result<(), aya::maps::MapError> {
    match value {
        Some(v) => map.insert(key, v, 0),
        None => map.remove(&key),
    }
}

/// The static part of the wanted set (IPs and CIDRs) plus, for each hostname, its current
/// addresses. The first provider in file order wins when two claim the same entry.
pub fn wanted_set(providers: &[Provider], resolved: &StdHashMap<String, Vec<IpAddr>>) -> EndpointSet {
    let mut set = EndpointSet::new();
    for (index, p) in providers.iter().enumerate() {
        let value = EndpointValue {
            action: action(p.mode),
            provider: index as u32,
        };
        let host_ips = p.hostnames.iter().flat_map(|h| resolved.get(h).into_iter().flatten());
        for ip in p.ips.iter().chain(host_ips) {
            let ip = canonical(*ip);
            for port in &p.ports {
                set.entry(Entry::Exact(SocketAddr::new(ip, *port))).or_insert(value);
            }
        }
        for net in &p.cidrs {
            for port in &p.ports {
                set.entry(Entry::Cidr(*net, *port)).or_insert(value);
            }
        }
    }
    set
}

/// A hostname whose resolved addresses did not all fit in the endpoint maps.
#[derive(Debug, Eq, PartialEq)]
pub struct Overflow {
    pub provider: String,
    pub hostname: String,
    /// The map that was full.
    pub map: MapKind,
    /// Its entries (address and port) left out.
    pub skipped: usize,
}

/// Makes `wanted` fit in the maps. The config's own addresses and CIDRs always stay (loading
/// the config checked that they fit); when resolved hostnames would take a map past its
/// capacity, their entries go in while there is room, hostname by hostname in file order, and
/// the rest are left out (those destinations are not captured) and reported.
pub fn fit(
    wanted: EndpointSet,
    providers: &[Provider],
    resolved: &StdHashMap<String, Vec<IpAddr>>,
) -> (EndpointSet, Vec<Overflow>) {
    let mut n = MapEntries::default();
    wanted.keys().for_each(|e| n.add(e.map()));
    if n.over_capacity().is_none() {
        return (wanted, Vec::new());
    }
    let own = wanted_set(providers, &StdHashMap::new());
    let mut kept: EndpointSet = wanted
        .iter()
        .filter(|(e, _)| own.contains_key(e))
        .map(|(e, v)| (*e, *v))
        .collect();
    let mut n = MapEntries::default();
    kept.keys().for_each(|e| n.add(e.map()));
    let mut overflows = Vec::new();
    for p in providers {
        for host in &p.hostnames {
            let mut overflow: Option<Overflow> = None;
            for ip in resolved.get(host).into_iter().flatten() {
                for port in &p.ports {
                    let entry = Entry::Exact(SocketAddr::new(canonical(*ip), *port));
                    let Some(value) = wanted.get(&entry).filter(|_| !kept.contains_key(&entry)) else {
                        continue;
                    };
                    if n.has_room(entry.map()) {
                        n.add(entry.map());
                        kept.insert(entry, *value);
                        continue;
                    }
                    overflow
                        .get_or_insert_with(|| Overflow {
                            provider: p.name.clone(),
                            hostname: host.clone(),
                            map: entry.map(),
                            skipped: 0,
                        })
                        .skipped += 1;
                }
            }
            overflows.extend(overflow);
        }
    }
    (kept, overflows)
}

/// Which providers claim which destinations: every provider whose addresses (resolved
/// hostnames, IPs, CIDRs) and ports include it, in file order. The kernel's map holds one
/// provider per entry (the first); the proxy checks a request's SNI or `Host` against all of
/// them (providers behind one CDN share addresses).
#[derive(Debug, Default)]
pub struct Claims {
    exact: StdHashMap<SocketAddr, Vec<String>>,
    cidrs: Vec<(IpNet, u16, String)>,
}

impl Claims {
    /// From the same inputs as [`wanted_set`].
    pub fn new(providers: &[Provider], resolved: &StdHashMap<String, Vec<IpAddr>>) -> Claims {
        let mut claims = Claims::default();
        for p in providers {
            let host_ips = p.hostnames.iter().flat_map(|h| resolved.get(h).into_iter().flatten());
            for ip in p.ips.iter().chain(host_ips) {
                for port in &p.ports {
                    let names = claims.exact.entry(SocketAddr::new(canonical(*ip), *port)).or_default();
                    if !names.contains(&p.name) {
                        names.push(p.name.clone());
                    }
                }
            }
            for net in &p.cidrs {
                for port in &p.ports {
                    claims.cidrs.push((*net, *port, p.name.clone()));
                }
            }
        }
        claims
    }

    /// One more provider claims `dst` (an address DNS learning found between full syncs).
    pub fn add(&mut self, dst: SocketAddr, provider: &str) {
        let names = self
            .exact
            .entry(SocketAddr::new(canonical(dst.ip()), dst.port()))
            .or_default();
        if !names.iter().any(|n| n == provider) {
            names.push(provider.to_string());
        }
    }

    /// The providers that claim `dst`, in file order.
    pub fn claimants(&self, dst: SocketAddr) -> Vec<String> {
        let dst = SocketAddr::new(canonical(dst.ip()), dst.port());
        let mut out: Vec<String> = self.exact.get(&dst).cloned().unwrap_or_default();
        for (net, port, name) in &self.cidrs {
            if *port == dst.port() && net.contains(&dst.ip()) && !out.contains(name) {
                out.push(name.clone());
            }
        }
        out
    }
}

/// The claims the proxy reads (once per connection) while the sync task replaces them on a
/// full sync or adds to them as DNS learning finds addresses.
#[derive(Debug, Default)]
pub struct SharedClaims(std::sync::RwLock<Claims>);

impl SharedClaims {
    pub fn claimants(&self, dst: SocketAddr) -> Vec<String> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).claimants(dst)
    }

    pub fn replace(&self, claims: Claims) {
        let old = std::mem::replace(&mut *self.0.write().unwrap_or_else(|e| e.into_inner()), claims);
        // Freed after the lock is released.
        drop(old);
    }

    pub fn add(&self, dst: SocketAddr, provider: &str) {
        self.0.write().unwrap_or_else(|e| e.into_inner()).add(dst, provider);
    }
}

/// Resolves a hostname to its addresses and how long they may be trusted.
pub trait Resolve: Send + Sync + 'static {
    fn resolve(&self, host: &str) -> impl Future<Output = Result<(Vec<IpAddr>, Duration), String>> + Send;
}

/// The system resolver configuration (`/etc/resolv.conf`, `/etc/hosts`) through hickory,
/// which, unlike getaddrinfo, reports TTLs.
pub struct SystemResolver(hickory_resolver::TokioAsyncResolver);

impl SystemResolver {
    pub fn new() -> SystemResolver {
        let resolver = hickory_resolver::TokioAsyncResolver::tokio_from_system_conf().unwrap_or_else(|e| {
            // Without a usable resolv.conf only /etc/hosts (and localhost) resolve: better than
            // querying a public resolver the operator never chose.
            tracing::warn!(error = %e, "no usable system resolver config; only /etc/hosts will resolve");
            let config = hickory_resolver::config::ResolverConfig::from_parts(None, vec![], vec![]);
            hickory_resolver::TokioAsyncResolver::tokio(config, Default::default())
        });
        SystemResolver(resolver)
    }
}

impl Default for SystemResolver {
    fn default() -> Self {
        SystemResolver::new()
    }
}

impl Resolve for SystemResolver {
    async fn resolve(&self, host: &str) -> Result<(Vec<IpAddr>, Duration), String> {
        let lookup = self.0.lookup_ip(host).await.map_err(|e| e.to_string())?;
        let ttl = lookup
            .valid_until()
            .saturating_duration_since(std::time::Instant::now());
        Ok((lookup.iter().collect(), ttl))
    }
}

/// Resolves from a hosts-format file only (`ip name…` per line), re-read at every lookup;
/// sends no DNS query. Answers live for the configured minimum TTL.
pub struct HostsFileResolver {
    pub path: std::path::PathBuf,
    pub ttl: Duration,
}

impl Resolve for HostsFileResolver {
    async fn resolve(&self, host: &str) -> Result<(Vec<IpAddr>, Duration), String> {
        let text = std::fs::read_to_string(&self.path).map_err(|e| format!("{}: {e}", self.path.display()))?;
        let ips: Vec<IpAddr> = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or(""))
            .filter_map(|l| {
                let mut fields = l.split_whitespace();
                let ip: IpAddr = fields.next()?.parse().ok()?;
                fields.any(|name| name.eq_ignore_ascii_case(host)).then_some(ip)
            })
            .collect();
        if ips.is_empty() {
            return Err(format!("{host} not found in {}", self.path.display()));
        }
        Ok((ips, self.ttl))
    }
}

/// The resolver the config asks for.
pub enum AnyResolver {
    System(Box<SystemResolver>),
    HostsFile(HostsFileResolver),
}

impl Resolve for AnyResolver {
    async fn resolve(&self, host: &str) -> Result<(Vec<IpAddr>, Duration), String> {
        match self {
            AnyResolver::System(r) => r.resolve(host).await,
            AnyResolver::HostsFile(r) => r.resolve(host).await,
        }
    }
}

impl AnyResolver {
    pub fn for_config(dns: &Dns) -> AnyResolver {
        match &dns.hosts_file {
            Some(path) => AnyResolver::HostsFile(HostsFileResolver {
                path: path.clone(),
                ttl: dns.min_ttl,
            }),
            None => AnyResolver::System(Box::default()),
        }
    }
}

/// Where the sync task publishes what it learns: the claims (for the proxy) and its counts
/// (for metrics). `app` wires it; this module knows neither consumer.
pub trait Publish: Send + Sync + 'static {
    fn claims(&self, claims: Claims);
    /// One more claim, of a learned address.
    fn claim(&self, dst: SocketAddr, provider: &str);
    /// Entries in the maps after a sync.
    fn endpoints(&self, total: usize);
    /// A provider's hostname failed to resolve (its last addresses are kept), or resolved to
    /// more addresses than the maps had room for (those left out are not captured).
    fn dns_failure(&self, provider: &str);
    /// Names DNS learning holds now.
    fn learned_names(&self, n: usize);
}

/// Hostname state kept by the sync task.
struct HostState {
    provider: String,
    ips: Vec<IpAddr>,
    next: Instant,
}

/// Tells about hostnames whose addresses the maps had no room for: an error each, and a count
/// in the provider's failed resolutions (its other destinations stay captured).
fn report_overflows(overflows: &[Overflow], out: &dyn Publish) {
    for o in overflows {
        tracing::error!(
            component = "endpoints",
            host = o.hostname,
            provider = o.provider,
            skipped = o.skipped,
            map = o.map.map(),
            capacity = o.map.capacity(),
            "endpoint map full: addresses of this hostname are not captured"
        );
        out.dns_failure(&o.provider);
    }
}

/// Owns the endpoint maps: resolves exact hostnames when their TTL (clamped to `dns`) runs
/// out, takes in what DNS learning found (`learn_rx`), and applies the resulting set. Runs the
/// first round before returning the initial stats through `first_sync`, so that readiness
/// means "maps synced". A learned answer is acknowledged once the maps hold it.
#[expect(clippy::too_many_arguments, reason = "the task's inputs, each wired once by app")]
pub async fn run_sync<R: Resolve>(
    mut maps: EndpointMaps,
    mut providers_rx: watch::Receiver<Arc<Vec<Provider>>>,
    dns: Dns,
    resolver: R,
    mut learn_rx: tokio::sync::mpsc::Receiver<crate::dns::LearnRequest>,
    out: Arc<dyn Publish>,
    first_sync: tokio::sync::oneshot::Sender<Result<SyncStats, Error>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut hosts: StdHashMap<String, HostState> = StdHashMap::new();
    let mut learned = LearnedNames::new(dns.max_learned_names, dns.learned_min_ttl, dns.max_ttl);
    let mut acks: Vec<tokio::sync::oneshot::Sender<()>> = Vec::new();
    let mut first_sync = Some(first_sync);
    loop {
        let providers = providers_rx.borrow_and_update().clone();
        resolve_due(&mut hosts, &providers, &dns, &resolver, out.as_ref()).await;
        learned.expire(Instant::now());
        out.learned_names(learned.len());
        let mut resolved: StdHashMap<String, Vec<IpAddr>> =
            hosts.iter().map(|(h, s)| (h.clone(), s.ips.clone())).collect();
        learned.add_to(&mut resolved);
        let (wanted, overflows) = fit(wanted_set(&providers, &resolved), &providers, &resolved);
        report_overflows(&overflows, out.as_ref());
        // Claims before the maps: a connect the new entries redirect finds its provider.
        out.claims(Claims::new(&providers, &resolved));
        let synced = maps.sync(&wanted);
        // What was learned is in the maps (or failed to go in, which waiting will not mend).
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
        match synced {
            Ok(stats) => {
                out.endpoints(stats.total);
                if stats.upserted + stats.removed > 0 {
                    tracing::info!(
                        component = "endpoints",
                        upserted = stats.upserted,
                        removed = stats.removed,
                        total = stats.total,
                        "endpoint maps synced"
                    );
                }
                if let Some(tx) = first_sync.take() {
                    let _ = tx.send(Ok(stats));
                }
            }
            Err(e) => match first_sync.take() {
                Some(tx) => {
                    let _ = tx.send(Err(e));
                    return;
                }
                None => {
                    tracing::error!(component = "endpoints", error = %e, "endpoint sync failed")
                }
            },
        }
        let mut next = hosts.values().map(|s| s.next).chain(learned.next_expiry()).min();
        // Wait for a refresh, a reload or news from DNS; an answer that changes nothing (the
        // usual repeat) is acknowledged at once, without a sync.
        loop {
            tokio::select! {
                    _ = async {
                        match next {
                            Some(at) => tokio::time::sleep_until(at).await,
                            None => std::future::pending().await,
                        }
                    } => break,
                    _ = shutdown.changed() => return,
                    changed = providers_rx.changed() => if changed.is_err() { return } else { break },
                    request = learn_rx.recv() => {
                    let Some(first) = request else { continue };
                    let mut batch = vec![first];
                    while let Ok(more) = learn_rx.try_recv() {
                        batch.push(more);
                    }
                    let now = Instant::now();
                    let mut added = Vec::new();
                    let mut removed = false;
                    for (answer, ack) in batch {
                        let change = learned.insert(answer, now);
                        added.extend(change.added);
                        removed |= change.removed;
                        acks.push(ack);
                    }
                    out.learned_names(learned.len());
                    // New addresses go in on their own; a name pushed out (the table full)
                    // or a full map takes a full sync.
                    if removed || !add_learned(&mut maps, &providers, &added, out.as_ref()) {
                        break;
                    }
                    for ack in acks.drain(..) {
                        let _ = ack.send(());
                    }
                    next = next.into_iter().chain(learned.next_expiry()).min();
                }
            }
        }
    }
}

/// Puts the entries of newly learned (pattern, address) pairs in the maps — claims first, so
/// that a connect the new entries redirect finds its provider — without recomputing the whole
/// set. `false` when they do not all fit (or a write failed): the caller then runs a full sync.
fn add_learned(maps: &mut EndpointMaps, providers: &[Provider], added: &[(String, IpAddr)], out: &dyn Publish) -> bool {
    if added.is_empty() {
        return true;
    }
    let mut entries = Vec::new();
    for (pattern, addr) in added {
        for (index, p) in providers.iter().enumerate() {
            if !p.hostnames.iter().any(|h| h == pattern) {
                continue;
            }
            let value = EndpointValue {
                action: action(p.mode),
                provider: index as u32,
            };
            for port in &p.ports {
                let dst = SocketAddr::new(canonical(*addr), *port);
                out.claim(dst, &p.name);
                entries.push((Entry::Exact(dst), value));
            }
        }
    }
    match maps.add(&entries) {
        Ok(true) => {
            out.endpoints(maps.current.len());
            true
        }
        Ok(false) => false,
        Err(e) => {
            tracing::error!(component = "endpoints", error = %e, "adding learned addresses failed");
            false
        }
    }
}

/// Resolves the exact hostnames whose time has come; keeps state only for hostnames still
/// listed (providers change on a reload). Wildcard patterns are never resolved: DNS learning
/// finds their addresses.
async fn resolve_due<R: Resolve>(
    hosts: &mut StdHashMap<String, HostState>,
    providers: &[Provider],
    dns: &Dns,
    resolver: &R,
    out: &dyn Publish,
) {
    let mut wanted_hosts: StdHashMap<String, HostState> = StdHashMap::new();
    for p in providers {
        for h in p.patterns.iter().filter(|h| h.is_exact()).map(|h| h.as_str()) {
            let state = hosts.remove(h).unwrap_or(HostState {
                provider: p.name.clone(),
                ips: vec![],
                next: Instant::now(),
            });
            wanted_hosts.entry(h.to_string()).or_insert(state);
        }
    }
    *hosts = wanted_hosts;
    let now = Instant::now();
    for (host, state) in hosts.iter_mut().filter(|(_, s)| s.next <= now) {
        match resolver.resolve(host).await {
            Ok((mut ips, ttl)) => {
                ips.sort();
                ips.dedup();
                if ips != state.ips {
                    tracing::info!(component = "endpoints", host, ?ips, ttl = ?ttl, "resolved");
                }
                state.ips = ips;
                state.next = now + ttl.clamp(dns.min_ttl, dns.max_ttl);
            }
            Err(error) => {
                // Keep the last known addresses: a resolver hiccup must not uncapture.
                tracing::warn!(component = "endpoints", host, %error, kept = ?state.ips, "resolution failed");
                out.dns_failure(&state.provider);
                state.next = now + dns.min_ttl;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn providers(yaml: &str) -> Vec<Provider> {
        Config::parse(yaml).unwrap().providers
    }

    #[test]
    fn wanted_set_expands_ports_hostnames_and_cidrs() {
        let p = providers(
            r#"
providers:
  - name: a
    hostnames: [api.example]
    addresses: ["127.10.0.1", "10.0.0.0/8", "::ffff:127.10.0.2"]
    ports: [443, 8443]
  - name: b
    mode: deny
    addresses: ["127.10.0.1", "127.10.0.9"]
"#,
        );
        let resolved = StdHashMap::from([("api.example".to_string(), vec!["127.10.0.3".parse().unwrap()])]);
        let set = wanted_set(&p, &resolved);
        let exact = |s: &str| Entry::Exact(s.parse().unwrap());
        // first provider wins on overlap
        assert_eq!(
            set[&exact("127.10.0.1:443")],
            EndpointValue {
                action: ACTION_INTERCEPT,
                provider: 0
            }
        );
        assert_eq!(
            set[&exact("127.10.0.9:443")],
            EndpointValue {
                action: ACTION_DENY,
                provider: 1
            }
        );
        assert!(set.contains_key(&exact("127.10.0.3:8443")));
        assert!(
            set.contains_key(&exact("127.10.0.2:443")),
            "v4-mapped is stored as IPv4"
        );
        assert!(set.contains_key(&Entry::Cidr("10.0.0.0/8".parse().unwrap(), 8443)));
        assert_eq!(set.len(), 3 * 2 + 2 + 1);
    }

    #[test]
    fn claims_list_every_provider_of_a_shared_address() {
        let p = providers(
            r#"
providers:
  - name: a
    hostnames: [api.example]
    addresses: ["127.10.0.1"]
  - name: b
    addresses: ["127.10.0.0/24"]
  - name: c
    addresses: ["127.10.0.2"]
    ports: [8443]
"#,
        );
        let resolved = StdHashMap::from([("api.example".to_string(), vec!["127.10.0.3".parse().unwrap()])]);
        let claims = Claims::new(&p, &resolved);
        let at = |s: &str| claims.claimants(s.parse().unwrap());
        assert_eq!(at("127.10.0.1:443"), vec!["a", "b"]);
        assert_eq!(at("127.10.0.3:443"), vec!["a", "b"], "resolved hostnames claim too");
        assert_eq!(at("[::ffff:127.10.0.1]:443"), vec!["a", "b"], "v4-mapped is IPv4");
        assert_eq!(at("127.10.0.2:8443"), vec!["c"]);
        assert!(at("127.10.1.1:443").is_empty());
    }

    #[test]
    fn resolved_addresses_past_the_map_capacity_are_left_out_and_reported() {
        let mut p = providers(
            r#"
providers:
  - name: own
    addresses: ["10.0.0.1"]
  - name: a
    hostnames: [a.example]
  - name: b
    hostnames: [b.example]
    addresses: ["::1"]
"#,
        );
        let cap = gateway_common::ENDPOINTS_MAX_ENTRIES;
        // The config's own IPv4 addresses leave room for two more.
        p[0].ips = (0..cap - 2)
            .map(|i| IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i)))
            .collect();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let resolved = StdHashMap::from([
            (
                "a.example".to_string(),
                vec![ip("10.0.0.5"), ip("127.10.0.1"), ip("127.10.0.2")],
            ),
            (
                "b.example".to_string(),
                vec![ip("127.10.0.3"), ip("127.10.0.1"), ip("::2")],
            ),
        ]);
        let (set, overflows) = fit(wanted_set(&p, &resolved), &p, &resolved);
        let exact = |s: &str| Entry::Exact(s.parse().unwrap());
        let mut n = MapEntries::default();
        set.keys().for_each(|e| n.add(e.map()));
        assert_eq!(n.get(MapKind::Exact4), cap as usize, "full, not over");
        assert_eq!(n.over_capacity(), None);
        assert_eq!(
            set[&exact("10.0.0.5:443")].provider,
            0,
            "an address of the config's own stays its"
        );
        assert!(set.contains_key(&exact("127.10.0.1:443")) && set.contains_key(&exact("127.10.0.2:443")));
        assert!(!set.contains_key(&exact("127.10.0.3:443")), "no room left");
        assert!(
            set.contains_key(&exact("[::1]:443")) && set.contains_key(&exact("[::2]:443")),
            "IPv6 has room"
        );
        assert_eq!(
            overflows,
            vec![Overflow {
                provider: "b".into(),
                hostname: "b.example".into(),
                map: MapKind::Exact4,
                skipped: 1,
            }]
        );
        // Under the capacity nothing is touched.
        let (small, none) = fit(wanted_set(&p[1..], &resolved), &p[1..], &resolved);
        assert!(none.is_empty());
        assert_eq!(small, wanted_set(&p[1..], &resolved));
    }

    #[tokio::test]
    async fn hosts_file_resolution_needs_no_network() {
        let path = std::env::temp_dir().join(format!("tollgate-hosts-{}", std::process::id()));
        std::fs::write(
            &path,
            "# test\n127.20.0.1 api.openai.com openai\n::1 api.openai.com\n127.0.0.1 other\n",
        )
        .unwrap();
        let r = HostsFileResolver {
            path: path.clone(),
            ttl: Duration::from_secs(5),
        };
        let (ips, ttl) = r.resolve("API.openai.com").await.unwrap();
        assert_eq!(
            ips,
            vec!["127.20.0.1".parse::<IpAddr>().unwrap(), "::1".parse().unwrap()]
        );
        assert_eq!(ttl, Duration::from_secs(5));
        assert!(r.resolve("api.anthropic.com").await.unwrap_err().contains("not found"));
        std::fs::remove_file(&path).unwrap();
    }
}
