//! Names learned from workloads' DNS answers (`dns`), kept by the endpoint sync task: each
//! name's addresses under the hostname patterns it matched, until its TTL (clamped to
//! `dns.minTtl`..`dns.maxTtl`) runs out. An address stays in the maps while any name (or the
//! hostname's own resolution) still holds it. At most `dns.maxLearnedNames` names: a new one
//! past that replaces the one closest to expiry.

use std::{collections::HashMap, net::IpAddr, time::Duration};

use tokio::time::Instant;

use crate::dns::Learned;

/// What one answer changed in what the maps must hold.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// (pattern, address) pairs held now and by no name before.
    pub added: Vec<(String, IpAddr)>,
    /// A name made room for this one and an address of its is held by none now.
    pub removed: bool,
}

impl Change {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && !self.removed
    }
}

struct Name {
    patterns: Vec<String>,
    addrs: Vec<IpAddr>,
    expires: Instant,
}

impl Name {
    /// Every (pattern, address) the name holds.
    fn pairs(&self) -> impl Iterator<Item = (&str, IpAddr)> + '_ {
        self.patterns
            .iter()
            .flat_map(|p| self.addrs.iter().map(move |a| (p.as_str(), *a)))
    }
}

pub struct LearnedNames {
    names: HashMap<String, Name>,
    /// How many names hold each (pattern, address): what the maps must hold.
    held: HashMap<(String, IpAddr), usize>,
    max: usize,
    min_ttl: Duration,
    max_ttl: Duration,
}

impl LearnedNames {
    pub fn new(max: usize, min_ttl: Duration, max_ttl: Duration) -> LearnedNames {
        LearnedNames {
            names: HashMap::new(),
            held: HashMap::new(),
            max,
            min_ttl,
            max_ttl,
        }
    }

    /// Takes an answer in and says what the maps must hold now that they did not: the
    /// (pattern, address) pairs no other name held. A repeated answer, or a new name at known
    /// addresses, only sets times.
    pub fn insert(&mut self, learned: Learned, now: Instant) -> Change {
        let mut change = Change::default();
        let mut name = Name {
            patterns: learned.patterns,
            addrs: learned.addrs,
            expires: now + learned.ttl.clamp(self.min_ttl, self.max_ttl),
        };
        let old = self.names.remove(&learned.name);
        match &old {
            Some(old) => {
                // The name keeps what it held: the union, until its later expiry.
                name.expires = name.expires.max(old.expires);
                for p in &old.patterns {
                    if !name.patterns.contains(p) {
                        name.patterns.push(p.clone());
                    }
                }
                for a in &old.addrs {
                    if !name.addrs.contains(a) {
                        name.addrs.push(*a);
                    }
                }
            }
            None if self.names.len() >= self.max => {
                let soonest = self.names.iter().min_by_key(|(_, n)| n.expires).map(|(k, _)| k.clone());
                if let Some(soonest) = soonest {
                    change.removed |= self.forget(&soonest);
                }
            }
            None => {}
        }
        // Hold the new before releasing the old: what both hold never drops to zero.
        for (pattern, addr) in name.pairs() {
            if self.hold(pattern, addr) {
                change.added.push((pattern.to_string(), addr));
            }
        }
        if let Some(old) = old {
            self.release(&old);
        }
        self.names.insert(learned.name, name);
        change
    }

    /// One more name holds `(pattern, addr)`; `true` if none did.
    fn hold(&mut self, pattern: &str, addr: IpAddr) -> bool {
        let count = self.held.entry((pattern.to_string(), addr)).or_insert(0);
        *count += 1;
        *count == 1
    }

    /// A name no longer holds what it held; `true` when an address is held by none now.
    fn release(&mut self, gone: &Name) -> bool {
        let mut changed = false;
        for (pattern, addr) in gone.pairs() {
            let key = (pattern.to_string(), addr);
            if let Some(count) = self.held.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    self.held.remove(&key);
                    changed = true;
                }
            }
        }
        changed
    }

    /// Drops a name and what it held; `true` when an address is held by none now.
    fn forget(&mut self, name: &str) -> bool {
        match self.names.remove(name) {
            Some(gone) => self.release(&gone),
            None => false,
        }
    }

    /// Forgets names whose time ran out; `true` when what the maps must hold changed.
    pub fn expire(&mut self, now: Instant) -> bool {
        let due: Vec<String> = self
            .names
            .iter()
            .filter(|(_, n)| n.expires <= now)
            .map(|(k, _)| k.clone())
            .collect();
        let mut changed = false;
        for name in due {
            changed |= self.forget(&name);
        }
        changed
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
        for (pattern, addr) in self.held.keys() {
            let ips = resolved.entry(pattern.clone()).or_default();
            if !ips.contains(addr) {
                ips.push(*addr);
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
        let pair = |a: &str| ("*.openai.azure.com".to_string(), a.parse::<IpAddr>().unwrap());
        let a = t.insert(
            learned("a.openai.azure.com", "*.openai.azure.com", &["127.30.0.1"], 0),
            now,
        );
        assert_eq!(a.added, [pair("127.30.0.1")]);
        let b = learned(
            "b.openai.azure.com",
            "*.openai.azure.com",
            &["127.30.0.1", "127.30.0.2"],
            50,
        );
        assert_eq!(
            t.insert(b, now).added,
            [pair("127.30.0.2")],
            "only the address none held"
        );
        let again = t.insert(
            learned("a.openai.azure.com", "*.openai.azure.com", &["127.30.0.1"], 0),
            now,
        );
        assert!(again.is_empty(), "a repeat changes nothing");
        let c = t.insert(
            learned("c.openai.azure.com", "*.openai.azure.com", &["127.30.0.2"], 0),
            now,
        );
        assert!(c.is_empty(), "a new name at held addresses changes nothing");
        let mut r = HashMap::new();
        t.add_to(&mut r);
        assert_eq!(r["*.openai.azure.com"].len(), 2);
        // TTL 0 was clamped up to 2 s: gone after it, while b's 50 s keep the shared address.
        assert!(!t.expire(now + Duration::from_secs(3)), "b still holds both addresses");
        assert_eq!(t.len(), 1);
        let mut r = HashMap::new();
        t.add_to(&mut r);
        r.get_mut("*.openai.azure.com").unwrap().sort();
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
