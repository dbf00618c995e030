//! What the benches share.

use std::time::Duration;

use serde_json::{json, Value};

/// p50/p90/p99 and the mean of latency samples, in microseconds.
pub(crate) fn percentiles(mut samples: Vec<Duration>) -> Value {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1e6;
    let mean = samples.iter().map(Duration::as_secs_f64).sum::<f64>() / samples.len() as f64 * 1e6;
    json!({ "n": samples.len(), "p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "mean": mean })
}

/// A throwaway CA and one leaf it signed for `names` (the fakes and nginx present these).
pub(crate) struct Throwaway {
    pub(crate) ca: rcgen::Certificate,
    pub(crate) leaf: rcgen::Certificate,
    pub(crate) key: rcgen::KeyPair,
}

pub(crate) fn throwaway_ca(ca_name: &str, names: Vec<String>) -> anyhow::Result<Throwaway> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::default();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, ca_name);
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate()?;
    let leaf = rcgen::CertificateParams::new(names)?.signed_by(&key, &issuer)?;
    Ok(Throwaway { ca, leaf, key })
}
