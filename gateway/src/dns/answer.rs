//! Reading a DNS answer: the name asked, the CNAME chain the server followed, the addresses
//! at its end and how long they may be kept; and which governed hostname patterns it concerns.

use std::net::IpAddr;

use hickory_resolver::proto::{
    op::{Message, MessageType, ResponseCode},
    rr::{Name, RData},
};

use crate::config::Provider;

/// Longest CNAME chain followed (resolvers give up well before).
const MAX_CHAIN: usize = 16;
/// Most addresses taken from one answer.
pub const MAX_ADDRESSES: usize = 64;

/// What an answer says, when it says anything about addresses.
#[derive(Debug, Eq, PartialEq)]
pub struct Answer {
    /// The name asked, then each CNAME target in order (lowercase, no trailing dot).
    pub names: Vec<String>,
    /// The A and AAAA addresses of any name of the chain.
    pub addrs: Vec<IpAddr>,
    /// The smallest TTL of the chain's records and the addresses, in seconds.
    pub ttl: u32,
}

/// How an answer read.
#[derive(Debug, Eq, PartialEq)]
pub enum Read {
    /// A successful answer with addresses.
    Addresses(Answer),
    /// A well-formed message with nothing to learn (an error, no addresses, a query).
    Nothing,
    /// Not a DNS message, or cut short: passed on untouched and counted.
    Unparsed,
}

fn text(name: &Name) -> String {
    let mut s = name.to_ascii();
    if s.ends_with('.') {
        s.pop();
    }
    s.make_ascii_lowercase();
    s
}

/// Reads an answer's bytes.
pub fn read(bytes: &[u8]) -> Read {
    let Ok(message) = Message::from_vec(bytes) else {
        return Read::Unparsed;
    };
    if message.message_type() != MessageType::Response || message.response_code() != ResponseCode::NoError {
        return Read::Nothing;
    }
    let Some(query) = message.queries().first() else {
        return Read::Nothing;
    };
    // Each record's owner name, read once.
    let records: Vec<(String, &hickory_resolver::proto::rr::Record)> =
        message.answers().iter().map(|r| (text(r.name()), r)).collect();
    let mut names = vec![text(query.name())];
    let mut ttl = u32::MAX;
    // Follow the chain from the name asked, whatever order the records come in.
    while names.len() <= MAX_CHAIN {
        let last = &names[names.len() - 1];
        let next = records.iter().find_map(|(owner, r)| match r.data() {
            Some(RData::CNAME(target)) if owner == last => Some((text(&target.0), r.ttl())),
            _ => None,
        });
        match next {
            Some((target, record_ttl)) if !names.contains(&target) => {
                names.push(target);
                ttl = ttl.min(record_ttl);
            }
            _ => break,
        }
    }
    let mut addrs = Vec::new();
    for (owner, record) in &records {
        let ip = match record.data() {
            Some(RData::A(a)) => IpAddr::V4(a.0),
            Some(RData::AAAA(a)) => IpAddr::V6(a.0),
            _ => continue,
        };
        if names.contains(owner) && !addrs.contains(&ip) && addrs.len() < MAX_ADDRESSES {
            addrs.push(ip);
            ttl = ttl.min(record.ttl());
        }
    }
    if addrs.is_empty() {
        return Read::Nothing;
    }
    Read::Addresses(Answer { names, addrs, ttl })
}

/// The hostname patterns of `providers` that a name of the chain matches, each once, in file
/// order.
pub fn governed(providers: &[Provider], answer: &Answer) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in providers {
        for pattern in &p.patterns {
            if answer.names.iter().any(|n| pattern.matches(n)) && !out.iter().any(|o| o == pattern.as_str()) {
                out.push(pattern.as_str().to_string());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use hickory_resolver::proto::{
        op::{Message, MessageType, Query},
        rr::{
            rdata::{A, AAAA, CNAME},
            Name, RData, Record, RecordType,
        },
    };

    use super::*;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn answer(q: &str, records: Vec<Record>) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(7).set_message_type(MessageType::Response);
        m.add_query(Query::query(name(q), RecordType::A));
        m.add_answers(records);
        m.to_vec().unwrap()
    }

    #[test]
    fn a_cname_chain_is_followed_to_its_addresses_with_the_smallest_ttl() {
        // Records out of order, and an unrelated address that must not be taken.
        let bytes = answer(
            "api.openai.com.",
            vec![
                Record::from_rdata(name("edge.cdn.example."), 30, RData::A(A::new(127, 30, 0, 9))),
                Record::from_rdata(
                    name("api.openai.com."),
                    300,
                    RData::CNAME(CNAME(name("lb.openai.com."))),
                ),
                Record::from_rdata(
                    name("lb.openai.com."),
                    60,
                    RData::CNAME(CNAME(name("edge.cdn.example."))),
                ),
                Record::from_rdata(
                    name("edge.cdn.example."),
                    30,
                    RData::AAAA(AAAA::new(0xfd00, 0, 0, 0, 0, 0, 0, 9)),
                ),
                Record::from_rdata(name("other.example."), 5, RData::A(A::new(127, 30, 0, 66))),
            ],
        );
        let Read::Addresses(a) = read(&bytes) else { panic!() };
        assert_eq!(a.names, ["api.openai.com", "lb.openai.com", "edge.cdn.example"]);
        assert_eq!(
            a.addrs,
            ["127.30.0.9".parse::<IpAddr>().unwrap(), "fd00::9".parse().unwrap()]
        );
        assert_eq!(a.ttl, 30);
    }

    #[test]
    fn errors_empty_answers_and_garbage_teach_nothing() {
        let mut m = Message::new();
        m.set_message_type(MessageType::Response)
            .set_response_code(ResponseCode::NXDomain)
            .add_query(Query::query(name("api.openai.com."), RecordType::A));
        assert_eq!(read(&m.to_vec().unwrap()), Read::Nothing);
        assert_eq!(read(&answer("api.openai.com.", vec![])), Read::Nothing);
        assert_eq!(read(b"\x00\x07garbage"), Read::Unparsed);
        let good = answer(
            "api.openai.com.",
            vec![Record::from_rdata(
                name("api.openai.com."),
                60,
                RData::A(A::new(127, 30, 0, 1)),
            )],
        );
        assert_eq!(read(&good[..good.len() - 3]), Read::Unparsed, "cut short");
        // A CNAME loop ends.
        let looped = answer(
            "a.example.",
            vec![
                Record::from_rdata(name("a.example."), 60, RData::CNAME(CNAME(name("b.example.")))),
                Record::from_rdata(name("b.example."), 60, RData::CNAME(CNAME(name("a.example.")))),
            ],
        );
        assert_eq!(read(&looped), Read::Nothing);
    }

    #[test]
    fn governed_patterns_match_any_name_of_the_chain() {
        let config = crate::config::Config::parse(
            r#"
providers:
  - name: azure
    hostnames: ["*.openai.azure.com"]
  - name: openai
    hostnames: [api.openai.com]
"#,
        )
        .unwrap();
        let a = Answer {
            names: vec!["chat.corp.example".into(), "myres.openai.azure.com".into()],
            addrs: vec![],
            ttl: 1,
        };
        assert_eq!(governed(&config.providers, &a), ["*.openai.azure.com"]);
        let b = Answer {
            names: vec!["api.openai.com".into()],
            addrs: vec![],
            ttl: 1,
        };
        assert_eq!(governed(&config.providers, &b), ["api.openai.com"]);
        let none = Answer {
            names: vec!["openai.azure.com".into()],
            addrs: vec![],
            ttl: 1,
        };
        assert!(governed(&config.providers, &none).is_empty());
    }
}
