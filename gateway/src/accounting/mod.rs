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

/// Prices in nano-dollars per token (per character, minute or image where so named).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Price {
    pub input: u64,
    pub output: u64,
    /// Defaults to `input` when the provider has no cache discount.
    pub cached_input: Option<u64>,
    /// Defaults to `input`.
    pub cache_write: Option<u64>,
    /// Defaults to `output`.
    pub reasoning: Option<u64>,
    /// Audio input tokens. Defaults to `input`.
    pub audio_input: Option<u64>,
    /// Image input tokens. Defaults to `input`.
    pub image_input: Option<u64>,
    /// Per character of speech input.
    pub characters: u64,
    /// Per minute of audio (counted to the millisecond).
    pub per_minute: u64,
    /// Per image, by `quality/size` or `size` (`*`: any other), sorted by key.
    pub per_image: Vec<(String, u64)>,
}

impl Price {
    /// The price of one image of `tier` (`quality/size`): the tier itself, then its size,
    /// then `*`.
    pub fn image(&self, tier: Option<&str>) -> Option<u64> {
        let find = |k: &str| {
            self.per_image
                .binary_search_by(|(key, _)| key.as_str().cmp(k))
                .ok()
                .map(|i| self.per_image[i].1)
        };
        let tier = tier.unwrap_or("1024x1024");
        let size = tier.rsplit('/').next().unwrap_or(tier);
        find(tier).or_else(|| find(size)).or_else(|| find("*"))
    }
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
    /// USD per 1M input tokens (0 for a model priced only per minute, character or image).
    #[serde(default)]
    pub input: Option<PriceText>,
    #[serde(default)]
    pub output: Option<PriceText>,
    #[serde(default, alias = "cached_input")]
    pub cached_input: Option<PriceText>,
    #[serde(default, alias = "cache_write")]
    pub cache_write: Option<PriceText>,
    #[serde(default)]
    pub reasoning: Option<PriceText>,
    /// USD per 1M audio input tokens.
    #[serde(default, alias = "audio_input")]
    pub audio_input: Option<PriceText>,
    /// USD per 1M image input tokens.
    #[serde(default, alias = "image_input")]
    pub image_input: Option<PriceText>,
    /// USD per 1M characters of speech input.
    #[serde(default)]
    pub characters: Option<PriceText>,
    /// USD per minute of audio.
    #[serde(default, alias = "per_minute")]
    pub per_minute: Option<PriceText>,
    /// USD per image, by `quality/size`, `size` or `*`.
    #[serde(default, alias = "per_image")]
    pub per_image: std::collections::BTreeMap<String, PriceText>,
}

/// `"0.15"` or `0.15`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub enum PriceText {
    Text(String),
    Number(serde_json::Number),
}

impl PriceText {
    fn text(&self) -> String {
        match self {
            PriceText::Text(t) => t.clone(),
            PriceText::Number(n) => n.to_string(),
        }
    }

    fn parse(&self) -> Result<u64, PriceError> {
        parse_price(&self.text())
    }

    /// An amount of USD (per minute, per image) in nano-dollars.
    fn usd(&self) -> Result<u64, PriceError> {
        parse_usd(&self.text()).map_err(|_| PriceError(self.text()))
    }
}

impl RawPrice {
    pub fn parse(&self) -> Result<Price, PriceError> {
        let opt = |p: &Option<PriceText>| p.as_ref().map(PriceText::parse).transpose();
        let unit_priced = self.characters.is_some() || self.per_minute.is_some() || !self.per_image.is_empty();
        if (self.input.is_none() || self.output.is_none()) && !unit_priced {
            return Err(PriceError(
                "input and output (or characters, perMinute or perImage)".into(),
            ));
        }
        Ok(Price {
            input: opt(&self.input)?.unwrap_or(0),
            output: opt(&self.output)?.unwrap_or(0),
            cached_input: opt(&self.cached_input)?,
            cache_write: opt(&self.cache_write)?,
            reasoning: opt(&self.reasoning)?,
            audio_input: opt(&self.audio_input)?,
            image_input: opt(&self.image_input)?,
            characters: opt(&self.characters)?.unwrap_or(0),
            per_minute: self.per_minute.as_ref().map(PriceText::usd).transpose()?.unwrap_or(0),
            per_image: self
                .per_image
                .iter()
                .map(|(k, v)| Ok((k.to_ascii_lowercase(), v.usd()?)))
                .collect::<Result<Vec<_>, PriceError>>()?,
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
#[derive(Clone, Debug)]
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
                audio_input: x.audio_input.unwrap_or(x.input),
                image_input: x.image_input.unwrap_or(x.input),
            },
            nano_usd_per_unit: (x.characters > 0 || x.per_minute > 0 || !x.per_image.is_empty()).then(|| {
                audit::UnitPrices {
                    character: x.characters,
                    minute: x.per_minute,
                    image: x.per_image.iter().cloned().collect(),
                }
            }),
            source: if shipped { "table" } else { "config" }.into(),
            as_of: shipped.then(|| self.as_of.clone().into()),
        }
    }

    /// Every model the table prices (lowercase), in no order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.prices.keys().map(String::as_str)
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

/// The cost of `u` at `price`, or `None` when the answer was metered only in units the price
/// does not price (a speech answer's characters for a token-priced model, images of a tier
/// with no price): unknown, never zero.
pub fn priced_cost(price: &Price, u: &Usage) -> Option<u64> {
    let tokens = u.total() > 0;
    let unpriced = !tokens
        && ((u.characters > 0 && price.characters == 0)
            || (u.audio_ms > 0 && price.per_minute == 0)
            || (u.images > 0 && price.image(u.image_tier.as_deref()).is_none()));
    (!unpriced).then(|| cost(price, u))
}

/// Exact cost in nano-dollars.
pub fn cost(price: &Price, u: &Usage) -> u64 {
    let uncached = u
        .input
        .saturating_sub(u.cached_input)
        .saturating_sub(u.cache_write)
        .saturating_sub(u.audio_input)
        .saturating_sub(u.image_input);
    let plain_output = u.output.saturating_sub(u.reasoning);
    let n = |tokens: u64, rate: u64| u128::from(tokens) * u128::from(rate);
    let image = price.image(u.image_tier.as_deref()).unwrap_or(0);
    // Counts come from the provider: sums saturate rather than overflow.
    let total = [
        n(uncached, price.input),
        n(u.cached_input, price.cached_input.unwrap_or(price.input)),
        n(u.cache_write, price.cache_write.unwrap_or(price.input)),
        n(u.audio_input, price.audio_input.unwrap_or(price.input)),
        n(u.image_input, price.image_input.unwrap_or(price.input)),
        n(plain_output, price.output),
        n(u.reasoning, price.reasoning.unwrap_or(price.output)),
        n(u.characters, price.characters),
        n(u.audio_ms, price.per_minute) / 60_000,
        // Token-priced image models report tokens; a per-image price is for those that do not.
        if u.total() == 0 { n(u.images, image) } else { 0 },
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
            ..Usage::default()
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
            ..Usage::default()
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
            ..Usage::default()
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

#[cfg(test)]
mod media_price_tests {
    use super::*;

    #[test]
    fn audio_and_image_answers_are_priced_by_their_units() {
        let table = PriceTable::new(&HashMap::new()).unwrap();
        let price = |m: &str| table.get(m).unwrap().clone();
        // gpt-4o-transcribe: 14 audio + 6 text input tokens, 45 output tokens.
        let u = Usage {
            input: 20,
            audio_input: 14,
            output: 45,
            ..Usage::default()
        };
        assert_eq!(
            cost(&price("gpt-4o-transcribe"), &u),
            14 * 6000 + 6 * 2500 + 45 * 10_000
        );
        // whisper-1: $0.006 a minute, to the millisecond.
        let u = Usage {
            audio_ms: 90_000,
            ..Usage::default()
        };
        assert_eq!(cost(&price("whisper-1"), &u), 9_000_000);
        // tts-1: $15 per 1M characters.
        let u = Usage {
            characters: 1000,
            ..Usage::default()
        };
        assert_eq!(cost(&price("tts-1"), &u), 15_000_000);
        // dall-e-3: per image by quality and size; no quality asked is standard.
        let images = |n, tier: &str| Usage {
            images: n,
            image_tier: Some(tier.into()),
            ..Usage::default()
        };
        assert_eq!(cost(&price("dall-e-3"), &images(2, "hd/1024x1792")), 240_000_000);
        assert_eq!(cost(&price("dall-e-3"), &images(1, "1792x1024")), 80_000_000);
        assert_eq!(
            cost(&price("dall-e-2"), &images(1, "standard/512x512")),
            18_000_000,
            "by size"
        );
        // gpt-image-1 reports tokens: those price it, not a per-image price.
        let u = Usage {
            input: 50,
            image_input: 40,
            output: 4160,
            images: 1,
            image_tier: Some("high/1024x1024".into()),
            ..Usage::default()
        };
        assert_eq!(cost(&price("gpt-image-1"), &u), 10 * 5000 + 40 * 10_000 + 4160 * 40_000);
        // A speech answer with no token report, from a token-priced model: unknown, not zero.
        let chars = Usage {
            characters: 40,
            ..Usage::default()
        };
        assert_eq!(priced_cost(&price("gpt-4o-mini-tts"), &chars), None);
        assert_eq!(priced_cost(&price("tts-1"), &chars), Some(600_000));
        assert_eq!(
            priced_cost(&price("gpt-4o"), &Usage::default()),
            Some(0),
            "zero tokens cost zero"
        );
    }

    #[test]
    fn a_price_needs_tokens_or_units() {
        let raw: RawPrice = serde_json::from_str(r#"{"input": "1"}"#).unwrap();
        assert!(raw.parse().is_err());
        let raw: RawPrice = serde_json::from_str(r#"{"perImage": {"1024x1024": "0.04"}}"#).unwrap();
        assert_eq!(raw.parse().unwrap().image(None), Some(40_000_000));
        let raw: RawPrice = serde_json::from_str(r#"{"perMinute": "0.0061234567891"}"#).unwrap();
        assert!(raw.parse().is_err(), "more than 9 decimals");
    }
}
