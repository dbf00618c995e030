//! What the capture bench and the L7 bench share.

use std::time::Duration;

use serde_json::{json, Value};

/// p50/p90/p99 and the mean of latency samples, in microseconds.
pub(crate) fn percentiles(mut samples: Vec<Duration>) -> Value {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1e6;
    let mean = samples.iter().map(Duration::as_secs_f64).sum::<f64>() / samples.len() as f64 * 1e6;
    json!({ "n": samples.len(), "p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "mean": mean })
}
