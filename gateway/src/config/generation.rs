//! The configuration a record was made under: each applied configuration gets a generation
//! number and the sha256 of its normalised form, and the audit log gets one `config` record
//! holding that form before any request made under it. A request record's `gateway` names the
//! generation and hash, so it can be tied to the exact policy in force.

use std::{borrow::Cow, sync::Arc, time::SystemTime};

use sha2::{Digest, Sha256};

use super::Config;
use crate::accounting::audit::{ConfigRecord, GatewayInfo, SCHEMA_VERSION};

/// The revision the binary was built from (`build.rs`), and its profile.
#[cfg(debug_assertions)]
pub const BUILD: &str = concat!(env!("TOLLGATE_REVISION"), " debug");
#[cfg(not(debug_assertions))]
pub const BUILD: &str = concat!(env!("TOLLGATE_REVISION"), " release");

/// The node's name: `TOLLGATE_NODE_NAME` (the Helm chart sets it from `spec.nodeName`), else
/// the kernel's host name.
pub fn node_name() -> String {
    std::env::var("TOLLGATE_NODE_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_default()
}

/// The configuration as the `config` record holds it: the validated config as JSON with
/// object members in sorted order (so equal configs hash equal, however their YAML was laid
/// out). Credential values are never part of a config: only where they come from.
pub fn normalised(config: &Config) -> serde_json::Value {
    // serde_json's maps are sorted (no `preserve_order`): converting sorts every object.
    serde_json::to_value(config).unwrap_or(serde_json::Value::Null)
}

/// sha256 of the normalised config's compact JSON, as lowercase hex.
pub fn sha256_hex(normalised: &serde_json::Value) -> String {
    let digest = Sha256::digest(normalised.to_string().as_bytes());
    let mut hex = String::with_capacity(64);
    for b in digest {
        hex.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        hex.push(char::from(b"0123456789abcdef"[usize::from(b & 0xf)]));
    }
    hex
}

/// The record's `gateway` for `generation` of `config`, and its `config` record.
pub fn applied(config: &Config, generation: u64, node: &str) -> (Arc<GatewayInfo>, ConfigRecord) {
    let config = normalised(config);
    let gateway = Arc::new(GatewayInfo {
        version: Cow::Borrowed(env!("CARGO_PKG_VERSION")),
        build: Cow::Borrowed(BUILD),
        node: node.to_string(),
        config_generation: generation,
        config_sha256: sha256_hex(&config),
    });
    let record = ConfigRecord {
        record: "config".into(),
        schema_version: SCHEMA_VERSION,
        time: humantime::format_rfc3339_micros(SystemTime::now()).to_string(),
        gateway: gateway.clone(),
        config,
    };
    (gateway, record)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
listener:
  addresses: ["127.0.0.1:0"]
providers:
  - name: openai
    hostnames: [api.openai.com]
    backend: openai
backends:
  - name: openai
    url: https://api.openai.com
    credential: key
credentials:
  - name: key
    kind: bearer
    env: OPENAI_API_KEY
pricing:
  b-model: {input: "1", output: "2"}
  a-model: {input: "1", output: "2"}
"#;

    #[test]
    fn equal_configs_hash_equal_and_a_change_changes_the_hash() {
        let a = Config::parse(CONFIG).unwrap();
        // The same config laid out differently (pricing entries swapped, a comment).
        let swapped = CONFIG.replace(
            "  b-model: {input: \"1\", output: \"2\"}\n  a-model: {input: \"1\", output: \"2\"}",
            "  a-model: {input: \"1\", output: \"2\"} # first\n  b-model: {input: \"1\", output: \"2\"}",
        );
        assert_ne!(swapped, CONFIG);
        let b = Config::parse(&swapped).unwrap();
        let (ga, ra) = applied(&a, 1, "n1");
        let (gb, _) = applied(&b, 2, "n1");
        assert_eq!(ga.config_sha256, gb.config_sha256);
        assert_eq!(ga.config_sha256.len(), 64);
        assert_eq!(
            ga.config_sha256,
            sha256_hex(&ra.config),
            "the record holds what was hashed"
        );
        let c = Config::parse(&CONFIG.replace("output: \"2\"}\n  a-model", "output: \"3\"}\n  a-model")).unwrap();
        assert_ne!(applied(&c, 3, "n1").0.config_sha256, ga.config_sha256);
        assert_eq!((ga.config_generation, gb.config_generation), (1, 2));
    }

    #[test]
    fn the_config_record_names_credentials_without_where_their_values_are() {
        let config = Config::parse(&CONFIG.replace("OPENAI_API_KEY", "OPENAI_API_KEY_FOR_THIS_TEST")).unwrap();
        let (_, record) = applied(&config, 1, "n1");
        let line = serde_json::to_string(&record).unwrap();
        assert!(line.contains("\"record\":\"config\""), "{line}");
        assert!(line.contains("\"name\":\"key\""), "{line}");
        assert!(!line.contains("OPENAI_API_KEY_FOR_THIS_TEST"), "{line}");
    }
}
