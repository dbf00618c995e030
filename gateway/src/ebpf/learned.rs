//! Names learned from workloads' DNS answers (`dns`), kept by the endpoint sync task: each
//! name's addresses under the hostname patterns it matched, until its TTL (clamped to
//! `dns.minTtl`..`dns.maxTtl`) runs out. An address stays in the maps while any name (or the
//! hostname's own resolution) still holds it. At most `dns.maxLearnedNames` names: a new one
//! past that replaces the one closest to expiry.

use std::{collections::HashMap, net::IpAddr, time::Duration};

use tokio::time::Instant;

use crate::dns::Learned;

struct Name {
    patterns: Vec<String>,
    addrs: Vec<IpAddr>,
    expires: Instant,
}

pub struct LearnedNames {
    names: HashMap<String, Name>,
    max: usize,
    min_ttl: Duration,
    max_ttl: Duration,
}

impl LearnedNames {
    pub fn new(max: usize, min_ttl: Duration, max_ttl: Duration) -> LearnedNames {
        LearnedNames {
            names: HashMap::new(),
            max,
            min_ttl,
            max_ttl,
        }
    }

    /// Takes an answer in. `true` when what the maps must hold changed (a new name, or new
    /// addresses or patterns for a known one); a repeated answer only extends its time.
    pub fn insert(&mut self, learned: Learned, now: Instant) -> bool {
        let expires = now + learned.ttl.clamp(self.min_ttl, self.max_ttl);
        if let Some(known) = self.names.get_mut(&learned.name) {
            known.expires = known.expires.max(expires);
            let mut changed = false;
            for addr in learned.addrs {
                if !known.addrs.contains(&addr) {
                    known.addrs.push(addr);
                    changed = true;
                }
            }
            for pattern in learned.patterns {
                if !known.patterns.contains(&pattern) {
                    known.patterns.push(pattern);
                    changed = true;
                }
            }
            return changed;
        }
        if self.names.len() >= self.max {
            let soonest = self.names.iter().min_by_key(|(_, n)| n.expires).map(|(k, _)| k.clone());
            if let Some(name) = soonest {
                self.names.remove(&name);
            }
        }
        self.names.insert(
            learned.name,
            Name {
                patterns: learned.patterns,
                addrs: learned.addrs,
                expires,
            },
        );
        true
    }

    /// Forgets names whose time ran out; `true` when any did.
    pub fn expire(&mut self, now: Instant) -> bool {
        let before = self.names.len();
        self.names.retain(|_, n| n.expires > now);
        self.names.len() != before
    }

    /// When the next name runs out.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.names.values().map(|n| n.expires).min()
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Adds the learned addresses to `resolved`, under each pattern their names matched.
    pub fn add_to(&self, resolved: &mut HashMap<String, Vec<IpAddr>>) {
        for name in self.names.values() {
            for pattern in &name.patterns {
                let ips = resolved.entry(pattern.clone()).or_default();
                for addr in &name.addrs {
                    if !ips.contains(addr) {
                        ips.push(*addr);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn learned(name: &str, pattern: &str, addrs: &[&str], ttl: u64) -> Learned {
        Learned {
            name: name.into(),
            patterns: vec![pattern.into()],
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            ttl: Duration::from_secs(ttl),
        }
    }

    #[test]
    fn an_address_stays_while_any_name_holds_it_and_ttls_are_clamped() {
        let now = Instant::now();
        let mut t = LearnedNames::new(10, Duration::from_secs(2), Duration::from_secs(100));
        assert!(t.insert(
            learned("a.openai.azure.com", "*.openai.azure.com", &["127.30.0.1"], 0),
            now
        ));
        assert!(t.insert(
            learned(
                "b.openai.azure.com",
                "*.openai.azure.com",
                &["127.30.0.1", "127.30.0.2"],
                50
            ),
            now
        ));
        assert!(
            !t.insert(
                learned("a.openai.azure.com", "*.openai.azure.com", &["127.30.0.1"], 0),
                now
            ),
            "a repeat changes nothing"
        );
        let mut r = HashMap::new();
        t.add_to(&mut r);
        assert_eq!(r["*.openai.azure.com"].len(), 2);
        // TTL 0 was clamped up to 2 s: gone after it, while b's 50 s keep the shared address.
        assert!(t.expire(now + Duration::from_secs(3)));
        let mut r = HashMap::new();
        t.add_to(&mut r);
        assert_eq!(
            r["*.openai.azure.com"],
            ["127.30.0.1".parse::<IpAddr>().unwrap(), "127.30.0.2".parse().unwrap()]
        );
        assert!(t.expire(now + Duration::from_secs(1000)), "max TTL clamps too");
        assert!(t.is_empty());
    }

    #[test]
    fn a_flood_of_names_stays_bounded() {
        let now = Instant::now();
        let mut t = LearnedNames::new(100, Duration::from_secs(1), Duration::from_secs(100));
        for i in 0..10_000u64 {
            t.insert(
                learned(
                    &format!("n{i}.openai.azure.com"),
                    "*.openai.azure.com",
                    &["127.30.0.1"],
                    i % 50,
                ),
                now,
            );
        }
        assert_eq!(t.len(), 100);
    }
}
