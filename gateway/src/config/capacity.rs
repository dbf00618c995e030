//! How many entries the providers put in each eBPF endpoint map, against what the map holds.
//!
//! A config whose addresses and CIDRs (times their ports) do not fit is refused when it is
//! loaded or reloaded (and by `tollgate validate`). Resolved hostnames add exact entries at run
//! time only: the endpoint sync task (`ebpf/endpoints.rs`) counts them with the same
//! [`MapEntries`] and leaves out what does not fit.

use std::{
    collections::HashSet,
    net::{IpAddr, SocketAddr},
};

use gateway_common::{
    CIDRS4_MAP, CIDRS6_MAP, CIDRS_MAX_ENTRIES, ENDPOINTS4_MAP, ENDPOINTS6_MAP, ENDPOINTS_MAX_ENTRIES,
};
use ipnet::IpNet;

use super::{invalid, Error, Provider};
use crate::socket::canonical_ip;

/// One of the four endpoint maps.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum MapKind {
    Exact4,
    Exact6,
    Cidr4,
    Cidr6,
}

impl MapKind {
    const ALL: [MapKind; 4] = [MapKind::Exact4, MapKind::Exact6, MapKind::Cidr4, MapKind::Cidr6];

    /// The map's name in the eBPF object.
    pub fn map(self) -> &'static str {
        match self {
            MapKind::Exact4 => ENDPOINTS4_MAP,
            MapKind::Exact6 => ENDPOINTS6_MAP,
            MapKind::Cidr4 => CIDRS4_MAP,
            MapKind::Cidr6 => CIDRS6_MAP,
        }
    }

    /// Entries the map holds.
    pub fn capacity(self) -> usize {
        match self {
            MapKind::Exact4 | MapKind::Exact6 => ENDPOINTS_MAX_ENTRIES as usize,
            MapKind::Cidr4 | MapKind::Cidr6 => CIDRS_MAX_ENTRIES as usize,
        }
    }

    /// What one entry of the map is, for messages.
    fn what(self) -> &'static str {
        match self {
            MapKind::Exact4 => "exact IPv4 endpoints (address and port)",
            MapKind::Exact6 => "exact IPv6 endpoints (address and port)",
            MapKind::Cidr4 => "IPv4 CIDR endpoints (prefix and port)",
            MapKind::Cidr6 => "IPv6 CIDR endpoints (prefix and port)",
        }
    }

    /// The map of an exact address (v4-mapped IPv6 is IPv4 to the kernel programs).
    pub fn exact(ip: IpAddr) -> MapKind {
        match canonical_ip(ip) {
            IpAddr::V4(_) => MapKind::Exact4,
            IpAddr::V6(_) => MapKind::Exact6,
        }
    }

    pub fn cidr(net: &IpNet) -> MapKind {
        match net {
            IpNet::V4(_) => MapKind::Cidr4,
            IpNet::V6(_) => MapKind::Cidr6,
        }
    }
}

/// Entries per endpoint map.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct MapEntries([usize; 4]);

impl MapEntries {
    /// The entries of the providers' addresses and CIDRs, each (address, port) and (prefix,
    /// port) once however many providers list it.
    pub fn of_addresses(providers: &[Provider]) -> MapEntries {
        let mut exact: HashSet<SocketAddr> = HashSet::new();
        let mut cidrs: HashSet<(IpNet, u16)> = HashSet::new();
        for p in providers {
            for port in &p.ports {
                exact.extend(p.ips.iter().map(|ip| SocketAddr::new(canonical_ip(*ip), *port)));
                cidrs.extend(p.cidrs.iter().map(|net| (*net, *port)));
            }
        }
        let mut n = MapEntries::default();
        exact.iter().for_each(|a| n.add(MapKind::exact(a.ip())));
        cidrs.iter().for_each(|(net, _)| n.add(MapKind::cidr(net)));
        n
    }

    pub fn get(&self, kind: MapKind) -> usize {
        self.0[kind as usize]
    }

    pub fn add(&mut self, kind: MapKind) {
        self.0[kind as usize] += 1;
    }

    /// Whether one more entry fits in the map.
    pub fn has_room(&self, kind: MapKind) -> bool {
        self.get(kind) < kind.capacity()
    }

    /// The first map with more entries than it holds.
    pub fn over_capacity(&self) -> Option<MapKind> {
        MapKind::ALL.into_iter().find(|k| self.get(*k) > k.capacity())
    }
}

/// Refuses providers whose addresses and CIDRs do not fit in the endpoint maps.
pub(super) fn check(providers: &[Provider]) -> Result<(), Error> {
    let n = MapEntries::of_addresses(providers);
    match n.over_capacity() {
        None => Ok(()),
        Some(kind) => Err(invalid(
            "providers",
            format!(
                "{} {} over all providers' addresses and ports: more than the {} the eBPF map {} holds (fewer ports or addresses, or a CIDR, make fewer)",
                n.get(kind),
                kind.what(),
                kind.capacity(),
                kind.map(),
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// A config with one provider per chunk of `n` consecutive IPv4 addresses from 10.0.0.0,
    /// each on `ports`.
    fn addresses(n: usize, ports: &str) -> String {
        let mut yaml = String::from("providers:\n");
        let all: Vec<String> = (0..n)
            .map(|i| std::net::Ipv4Addr::from(0x0a00_0000 + i as u32).to_string())
            .collect();
        for (j, chunk) in all.chunks(50_000).enumerate() {
            yaml.push_str(&format!(
                "  - name: p{j}\n    ports: {ports}\n    addresses: [{}]\n",
                chunk.join(", ")
            ));
        }
        yaml
    }

    #[test]
    fn exact_endpoints_are_counted_once_per_address_and_port() {
        let p = Config::parse(
            r#"
providers:
  - name: a
    hostnames: [api.example]
    addresses: ["127.10.0.1", "::ffff:127.10.0.1", "::1", "10.0.0.0/8", "fd00::/8"]
    ports: [443, 8443]
  - name: b
    addresses: ["127.10.0.1", "127.10.0.2", "10.0.0.0/8"]
"#,
        )
        .unwrap()
        .providers;
        let n = MapEntries::of_addresses(&p);
        // 127.10.0.1 (twice, once v4-mapped) and ::1 on two ports, 127.10.0.2 on 443.
        assert_eq!(n.get(MapKind::Exact4), 3);
        assert_eq!(n.get(MapKind::Exact6), 2);
        assert_eq!(n.get(MapKind::Cidr4), 2, "10.0.0.0/8 on 443 (twice) and 8443");
        assert_eq!(n.get(MapKind::Cidr6), 2);
        assert_eq!(n.over_capacity(), None);
    }

    #[test]
    fn a_config_over_the_map_capacity_is_refused_naming_the_limit_and_the_count() {
        let cap = ENDPOINTS_MAX_ENTRIES as usize;
        Config::parse(&addresses(cap, "[443]")).expect("exactly full fits");
        let e = Config::parse(&addresses(cap + 1, "[443]")).unwrap_err().to_string();
        assert!(
            e.contains(&format!("{} exact IPv4 endpoints", cap + 1))
                && e.contains(&format!("the {cap} the eBPF map ENDPOINTS4 holds")),
            "{e}"
        );
        // Ports multiply.
        let e = Config::parse(&addresses(cap / 2 + 1, "[443, 8443]"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("{} exact IPv4", cap + 2)), "{e}");
    }

    #[test]
    fn cidrs_over_their_map_are_refused() {
        let cap = CIDRS_MAX_ENTRIES as usize;
        let nets: Vec<String> = (0..=cap)
            .map(|i| format!("\"10.{}.{}.0/24\"", i / 256, i % 256))
            .collect();
        let yaml = format!("providers:\n  - name: a\n    addresses: [{}]\n", nets.join(", "));
        let e = Config::parse(&yaml).unwrap_err().to_string();
        assert!(
            e.contains(&format!("{} IPv4 CIDR endpoints", cap + 1)) && e.contains("CIDRS4"),
            "{e}"
        );
    }
}
