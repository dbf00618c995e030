//! What the benches share.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde_json::{json, Value};

use crate::util;

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

/// `pid` and its children (nginx: the master and its worker).
pub(crate) fn process_tree(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    // The worker may take a moment to appear.
    std::thread::sleep(Duration::from_millis(200));
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(child) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
            if ppid == Some(pid) {
                pids.push(child);
            }
        }
    }
    pids
}

/// User + system CPU of `pids`, in µs.
pub(crate) fn cpu_us(pids: &[u32]) -> f64 {
    cpu_us_split(pids).0
}

/// User + system CPU of `pids` and the user-space part of it, in µs (one read of each).
pub(crate) fn cpu_us_split(pids: &[u32]) -> (f64, f64) {
    pids.iter()
        .filter_map(|p| super::cpu_times(*p).ok())
        .map(|(user, system)| ((user + system).as_secs_f64() * 1e6, user.as_secs_f64() * 1e6))
        .fold((0.0, 0.0), |(t, u), (dt, du)| (t + dt, u + du))
}

/// A `/proc/<pid>/status` memory field (`VmRSS`, `VmHWM`) summed over `pids`, in KiB.
pub(crate) fn rss_kib(pids: &[u32], field: &str) -> u64 {
    pids.iter()
        .filter_map(|p| {
            let status = std::fs::read_to_string(format!("/proc/{p}/status")).ok()?;
            let line = status.lines().find(|l| l.starts_with(field))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .sum()
}

/// The median (upper middle of an even count); NaN for none.
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Draws `results` with `bench/<script>` into the PNG beside it (matplotlib, installed into
/// the project's virtualenv on first use).
pub(crate) fn chart(script: &str, results: &Path) -> anyhow::Result<PathBuf> {
    let py = util::venv_python();
    if util::output(&py, &["-c", "import matplotlib"]).is_none() {
        util::pip_install(&["matplotlib==3.10.7"])?;
    }
    let png = results.with_extension("png");
    util::run(
        &py,
        &[
            &util::workspace().join("bench").join(script).to_string_lossy(),
            &results.to_string_lossy(),
            &png.to_string_lossy(),
        ],
    )?;
    Ok(png)
}

/// Writes `results` to `bench/results/<kind>-<unix time>.json`; returns the file.
pub(crate) fn write_results(kind: &str, results: &Value) -> anyhow::Result<PathBuf> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)?
        .as_secs();
    let dir = util::workspace().join("bench/results");
    std::fs::create_dir_all(&dir)?;
    let file = dir.join(format!("{kind}-{secs}.json"));
    std::fs::write(&file, serde_json::to_string_pretty(results)?)?;
    Ok(file)
}
