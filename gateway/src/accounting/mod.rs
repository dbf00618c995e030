//! Money: a price table (shipped `prices.json`, overridden and extended by the `pricing`
//! config section) and exact costs.
//!
//! Prices are written as USD per million tokens with at most three decimals and held as
//! integer nano-dollars per token ($1 / 1M tokens = 1,000 n$/token), so every cost is an exact
//! integer number of nano-dollars: no float is ever accumulated.
//!
//! Also the record all of it ends in: [`audit`] (the governance record and its schema) and
//! `audit_line` (that record written as its JSON line on the hot path); [`report`] reads them
//! back; [`recent`] keeps the latest in memory with today's spend, for the operator views.

pub mod audit;
mod audit_line;
pub mod content;
pub mod recent;
pub mod report;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::llm::usage::Usage;

/// The shipped table.
const PRICES_JSON: &str = include_str!("prices.json");

/// Prices in nano-dollars per token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Price {
    pub input: u64,
    pub output: u64,
    /// Defaults to `input` when the provider has no cache discount.
    pub cached_input: Option<u64>,
    /// Defaults to `input`.
    pub cache_write: Option<u64>,
    /// Defaults to `output`.
    pub reasoning: Option<u64>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a price in USD per 1M tokens with at most 3 decimals")]
pub struct PriceError(pub String);

/// `"2.50"` (USD per 1M tokens) → 2500 nano-dollars per token.
pub fn parse_price(text: &str) -> Result<u64, PriceError> {
    let err = || PriceError(text.to_string());
    let t = text.trim();
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if int.is_empty() && frac.is_empty()
        || frac.len() > 3
        || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit())
    {
        return Err(err());
    }
    let int: u64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| err())?
    };
    let frac: u64 = format!("{frac:0<3}").parse().map_err(|_| err())?;
    int.checked_mul(1000).and_then(|v| v.checked_add(frac)).ok_or_else(err)
}

/// `"5.00"` (USD, at most 9 decimals) → nano-dollars.
pub fn parse_usd(text: &str) -> Result<u64, String> {
    let err = || format!("{text:?} is not an amount of USD with at most 9 decimals");
    let t = text.trim();
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if (int.is_empty() && frac.is_empty())
        || frac.len() > 9
        || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit())
    {
        return Err(err());
    }
    let int: u64 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| err())?
    };
    let frac: u64 = format!("{frac:0<9}").parse().map_err(|_| err())?;
    int.checked_mul(1_000_000_000)
        .and_then(|v| v.checked_add(frac))
        .ok_or_else(err)
}

/// A price as written in `prices.json` or the config (strings or numbers).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawPrice {
    #[serde(default)]
    pub provider: Option<String>,
    pub input: PriceText,
    pub output: PriceText,
    #[serde(default, alias = "cached_input")]
    pub cached_input: Option<PriceText>,
    #[serde(default, alias = "cache_write")]
    pub cache_write: Option<PriceText>,
    #[serde(default)]
    pub reasoning: Option<PriceText>,
}

/// `"0.15"` or `0.15`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub enum PriceText {
    Text(String),
    Number(serde_json::Number),
}

impl PriceText {
    fn parse(&self) -> Result<u64, PriceError> {
        match self {
            PriceText::Text(t) => parse_price(t),
            PriceText::Number(n) => parse_price(&n.to_string()),
        }
    }
}

impl RawPrice {
    pub fn parse(&self) -> Result<Price, PriceError> {
        Ok(Price {
            input: self.input.parse()?,
            output: self.output.parse()?,
            cached_input: self.cached_input.as_ref().map(PriceText::parse).transpose()?,
            cache_write: self.cache_write.as_ref().map(PriceText::parse).transpose()?,
            reasoning: self.reasoning.as_ref().map(PriceText::parse).transpose()?,
        })
    }
}

#[derive(Deserialize)]
struct Shipped {
    models: HashMap<String, RawPrice>,
    as_of: String,
}

/// The effective price table.
#[derive(Clone, Debug, Default)]
pub struct PriceTable {
    prices: HashMap<String, Priced>,
    /// Date of the shipped table's prices.
    as_of: String,
}

/// A price and where it comes from.
#[derive(Clone, Copy, Debug)]
struct Priced {
    price: Price,
    source: PriceSource,
}

/// Where a price comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum PriceSource {
    /// The table shipped in the binary (`gateway/src/accounting/prices.json`).
    Shipped,
    /// The config's `pricing`.
    Config,
}

/// A model's price and the table entry it was found under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PriceEntry<'a> {
    /// The entry's name: the model as asked, lowercased, or its normalised name.
    pub entry: &'a str,
    pub price: &'a Price,
    pub source: PriceSource,
}

impl PriceTable {
    /// The shipped table with `overrides` (model → price) on top.
    pub fn new(overrides: &HashMap<String, RawPrice>) -> Result<PriceTable, (String, PriceError)> {
        let shipped: Shipped = serde_json::from_str(PRICES_JSON).expect("prices.json is valid");
        let mut prices = HashMap::new();
        let from_shipped = shipped.models.iter().map(|m| (m, PriceSource::Shipped));
        for ((model, raw), source) in from_shipped.chain(overrides.iter().map(|m| (m, PriceSource::Config))) {
            let price = raw.parse().map_err(|e| (model.clone(), e))?;
            prices.insert(model.to_ascii_lowercase(), Priced { price, source });
        }
        Ok(PriceTable {
            prices,
            as_of: shipped.as_of,
        })
    }

    /// The price of `model`: exact name first, then the normalised name.
    pub fn get(&self, model: &str) -> Option<&Price> {
        self.lookup(model).map(|e| e.price)
    }

    /// What [`PriceTable::get`] finds, with the entry's name and where its price comes from
    /// (the audit record's `policy.price`, `tollgate explain`).
    pub fn lookup(&self, model: &str) -> Option<PriceEntry<'_>> {
        fn entry<'a>((entry, p): (&'a String, &'a Priced)) -> PriceEntry<'a> {
            PriceEntry {
                entry: entry.as_str(),
                price: &p.price,
                source: p.source,
            }
        }
        // Most requests name a model exactly as the table does: no allocation for those.
        if !model.bytes().any(|b| b.is_ascii_uppercase()) {
            if let Some(found) = self.prices.get_key_value(model) {
                return Some(entry(found));
            }
        }
        let lower = model.to_ascii_lowercase();
        self.prices
            .get_key_value(&lower)
            .or_else(|| self.prices.get_key_value(&normalize(&lower)))
            .map(entry)
    }

    /// The entry as the audit record's `policy.price`.
    pub fn reference(&self, e: PriceEntry<'_>) -> audit::PriceRef {
        let x = e.price;
        let shipped = e.source == PriceSource::Shipped;
        audit::PriceRef {
            entry: e.entry.to_string(),
            nano_usd_per_token: audit::TokenPrices {
                input: x.input,
                output: x.output,
                cached_input: x.cached_input.unwrap_or(x.input),
                cache_write: x.cache_write.unwrap_or(x.input),
                reasoning: x.reasoning.unwrap_or(x.output),
            },
            source: if shipped { "table" } else { "config" }.into(),
            as_of: shipped.then(|| self.as_of.clone().into()),
        }
    }

    /// Whether a model is priced (used to bound metric labels).
    pub fn knows(&self, model: &str) -> bool {
        self.get(model).is_some()
    }
}

/// `openai/gpt-4o-2024-08-06` → `gpt-4o`; `us.anthropic.claude-3-5-haiku-20241022-v1:0` →
/// `claude-3-5-haiku`; `claude-sonnet-4-5@20250929` → `claude-sonnet-4-5`.
pub fn normalize(model: &str) -> String {
    let mut m = model.to_ascii_lowercase();
    if let Some((_, rest)) = m.rsplit_once('/') {
        m = rest.to_string();
    }
    // Bedrock: region prefix, vendor prefix, version suffix.
    for region in ["us.", "eu.", "apac.", "global."] {
        if let Some(rest) = m.strip_prefix(region) {
            m = rest.to_string();
        }
    }
    for vendor in ["anthropic.", "meta.", "mistral.", "amazon.", "cohere."] {
        if let Some(rest) = m.strip_prefix(vendor) {
            m = rest.to_string();
        }
    }
    if let Some(i) = m.find(['@', ':']) {
        m.truncate(i);
    }
    // Bedrock's `-v1:0` versions, except in Titan names, where the version is the model.
    let versions: &[&str] = if m.starts_with("titan-") {
        &["-latest"]
    } else {
        &["-latest", "-v1", "-v2"]
    };
    for suffix in versions {
        if let Some(rest) = m.strip_suffix(suffix) {
            m = rest.to_string();
        }
    }
    // Dated suffixes: -YYYY-MM-DD and -YYYYMMDD.
    let b = m.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    let dashed = b.len() > 11 && b[b.len() - 11] == b'-' && b[b.len() - 6] == b'-' && b[b.len() - 3] == b'-';
    if dashed
        && digits(&b[b.len() - 10..b.len() - 6])
        && digits(&b[b.len() - 5..b.len() - 3])
        && digits(&b[b.len() - 2..])
    {
        m.truncate(m.len() - 11);
    } else if b.len() > 9 && b[b.len() - 9] == b'-' && digits(&b[b.len() - 8..]) {
        m.truncate(m.len() - 9);
    }
    m
}

/// Exact cost in nano-dollars.
pub fn cost(price: &Price, u: &Usage) -> u64 {
    let uncached = u.input.saturating_sub(u.cached_input).saturating_sub(u.cache_write);
    let plain_output = u.output.saturating_sub(u.reasoning);
    let n = |tokens: u64, rate: u64| u128::from(tokens) * u128::from(rate);
    // Token counts come from the provider: sums saturate rather than overflow.
    let total = [
        n(uncached, price.input),
        n(u.cached_input, price.cached_input.unwrap_or(price.input)),
        n(u.cache_write, price.cache_write.unwrap_or(price.input)),
        n(plain_output, price.output),
        n(u.reasoning, price.reasoning.unwrap_or(price.output)),
    ]
    .into_iter()
    .fold(0u128, u128::saturating_add);
    u64::try_from(total).unwrap_or(u64::MAX)
}

/// Nano-dollars as an exact decimal string of dollars (`2100` → `"0.0000021"`).
pub fn usd(nano: u64) -> String {
    let (int, frac) = (nano / 1_000_000_000, nano % 1_000_000_000);
    let mut s = String::with_capacity(32);
    s.push_str(itoa::Buffer::new().format(int));
    if frac != 0 {
        // Nine digits, zero-padded, trailing zeros dropped.
        let mut digits = [b'0'; 9];
        let (mut f, mut i) = (frac, 9);
        while f > 0 {
            i -= 1;
            digits[i] = b'0' + (f % 10) as u8;
            f /= 10;
        }
        let end = digits.iter().rposition(|&d| d != b'0').map_or(0, |p| p + 1);
        s.push('.');
        s.extend(digits[..end].iter().map(|&d| char::from(d)));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_of_huge_counts_saturates() {
        let max = u64::MAX;
        let u = Usage {
            input: max,
            output: max,
            cached_input: 0,
            cache_write: 0,
            reasoning: max,
        };
        let prices = PriceTable::new(&Default::default()).unwrap();
        assert_eq!(cost(prices.get("gpt-4o").unwrap(), &u), u64::MAX);
    }

    #[test]
    fn prices_parse_exactly() {
        assert_eq!(parse_price("2.50"), Ok(2500));
        assert_eq!(parse_price("0.075"), Ok(75));
        assert_eq!(parse_price("15"), Ok(15000));
        assert_eq!(parse_price(".5"), Ok(500));
        assert!(parse_price("0.0001").is_err());
        assert!(parse_price("-1").is_err());
        assert!(parse_price("1e3").is_err());
        assert!(parse_price("").is_err());
    }

    #[test]
    fn model_names_normalize() {
        assert_eq!(normalize("openai/gpt-4o-2024-08-06"), "gpt-4o");
        assert_eq!(normalize("gpt-4o-mini-2024-07-18"), "gpt-4o-mini");
        assert_eq!(normalize("claude-sonnet-4-5-20250929"), "claude-sonnet-4-5");
        assert_eq!(
            normalize("us.anthropic.claude-3-5-haiku-20241022-v1:0"),
            "claude-3-5-haiku"
        );
        assert_eq!(normalize("claude-sonnet-4-5@20250929"), "claude-sonnet-4-5");
        assert_eq!(normalize("models/gemini-2.5-pro"), "gemini-2.5-pro");
        assert_eq!(normalize("claude-3-7-sonnet-latest"), "claude-3-7-sonnet");
        assert_eq!(normalize("o3"), "o3");
        assert_eq!(normalize("amazon.titan-embed-text-v2:0"), "titan-embed-text-v2");
        assert_eq!(normalize("gpt-5-mini"), "gpt-5-mini");
    }

    #[test]
    fn lookups_name_the_entry_and_where_its_price_comes_from() {
        let raw: HashMap<String, RawPrice> = serde_yaml_ng::from_str(
            "GPT-4o-mini: { input: \"0.10\", output: \"0.40\" }\nmy-llama: { input: 1, output: 2 }\n",
        )
        .unwrap();
        let table = PriceTable::new(&raw).unwrap();
        let mini = table.lookup("gpt-4o-mini-2024-07-18").unwrap();
        assert_eq!((mini.entry, mini.source), ("gpt-4o-mini", PriceSource::Config));
        assert_eq!(
            (mini.price.input, mini.price.output),
            (100, 400),
            "the config's price wins"
        );
        let o3 = table.lookup("O3").unwrap();
        assert_eq!((o3.entry, o3.source), ("o3", PriceSource::Shipped));
        assert_eq!(table.lookup("my-llama").unwrap().source, PriceSource::Config);
        assert_eq!(table.lookup("no-such-model"), None);
        assert_eq!(table.get("gpt-4o-mini"), Some(mini.price), "get and lookup agree");
    }

    #[test]
    fn costs_are_exact_and_respect_cache_and_reasoning() {
        let table = PriceTable::new(&HashMap::new()).unwrap();
        let mini = table.get("gpt-4o-mini-2024-07-18").unwrap();
        // 12 in, 2 out: 12 * 150 + 2 * 600 = 3000 n$
        let u = Usage {
            input: 12,
            output: 2,
            ..Default::default()
        };
        assert_eq!(cost(mini, &u), 3000);
        assert_eq!(usd(cost(mini, &u)), "0.000003");
        // o3: 2048 in (1536 cached), 900 out (832 reasoning, priced as output)
        let o3 = table.get("o3-2025-04-16").unwrap();
        let u = Usage {
            input: 2048,
            output: 900,
            cached_input: 1536,
            reasoning: 832,
            cache_write: 0,
        };
        assert_eq!(cost(o3, &u), 512 * 2000 + 1536 * 500 + 900 * 8000);
        // Anthropic: cache writes and reads priced apart from fresh input
        let sonnet = table.get("claude-sonnet-4-5-20250929").unwrap();
        let u = Usage {
            input: 2112,
            output: 6,
            cached_input: 2000,
            cache_write: 100,
            reasoning: 0,
        };
        assert_eq!(cost(sonnet, &u), 12 * 3000 + 2000 * 300 + 100 * 3750 + 6 * 15000);
        assert!(table.get("my-own-model").is_none());
    }

    #[test]
    fn config_overrides_and_extends_the_table() {
        let overrides: HashMap<String, RawPrice> = serde_json::from_str(
            r#"{"gpt-4o-mini": {"input": 1, "output": "2"}, "llama-3.1-70b": {"input": "0.2", "output": "0.2"}}"#,
        )
        .unwrap();
        let table = PriceTable::new(&overrides).unwrap();
        assert_eq!(table.get("gpt-4o-mini").unwrap().input, 1000);
        assert_eq!(table.get("llama-3.1-70b").unwrap().output, 200);
        let bad: HashMap<String, RawPrice> = serde_json::from_str(r#"{"x": {"input": "abc", "output": "1"}}"#).unwrap();
        assert_eq!(PriceTable::new(&bad).unwrap_err().0, "x");
    }

    #[test]
    fn usd_amounts_parse_exactly() {
        assert_eq!(parse_usd("5.00"), Ok(5_000_000_000));
        assert_eq!(parse_usd("0.000000001"), Ok(1));
        assert!(parse_usd("1.0000000001").is_err());
        assert!(parse_usd("-1").is_err());
    }

    #[test]
    fn usd_strings_match_the_decimal_formatting() {
        for nano in [
            0,
            1,
            9,
            10,
            100_000_000,
            999_999_999,
            1_000_000_000,
            1_000_000_001,
            1_500_000_000,
            123_456_789_012,
            u64::MAX,
        ] {
            let (int, frac) = (nano / 1_000_000_000, nano % 1_000_000_000);
            let want = if frac == 0 {
                format!("{int}")
            } else {
                format!("{int}.{}", format!("{frac:09}").trim_end_matches('0'))
            };
            assert_eq!(usd(nano), want);
        }
    }

    #[test]
    fn usd_strings_are_exact() {
        assert_eq!(usd(0), "0");
        assert_eq!(usd(1), "0.000000001");
        assert_eq!(usd(1_500_000_000), "1.5");
        assert_eq!(usd(12_000_000_000), "12");
    }
}
