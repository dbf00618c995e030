//! Backend health: outlier ejection and `Retry-After` cool-downs, shared by every request and
//! kept across config reloads (by backend name).
//!
//! A backend with `consecutive_failures` failures in a row is ejected for `base_ejection`,
//! doubled on every repeat up to `max_ejection`. When the period ends it is half-open: one
//! request may probe it; success closes it (and resets the count), failure ejects it again for
//! longer. A 429 with `Retry-After` makes the backend cool down for that long without counting
//! as a failure. Time is `tokio::time::Instant`, so tests run on paused time.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use serde::Serialize;
use tokio::time::Instant;

/// Defaults of the `outlierDetection` config section.
pub const DEFAULT_CONSECUTIVE_FAILURES: u32 = 5;
/// First ejection (30 seconds).
pub const DEFAULT_BASE_EJECTION: Duration = Duration::from_secs(30);
/// Longest ejection (5 minutes).
pub const DEFAULT_MAX_EJECTION: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Policy {
    pub consecutive_failures: u32,
    pub base_ejection: Duration,
    pub max_ejection: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            consecutive_failures: DEFAULT_CONSECUTIVE_FAILURES,
            base_ejection: DEFAULT_BASE_EJECTION,
            max_ejection: DEFAULT_MAX_EJECTION,
        }
    }
}

/// Whether a backend may take a request now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Availability {
    Available,
    /// Half-open: this request is the probe (the number names this probe, to release it).
    Probe(u64),
    /// Ejected or cooling down until then.
    Unavailable(Instant),
}

#[derive(Debug, Default)]
struct State {
    consecutive_failures: u32,
    ejections: u32,
    ejected_until: Option<Instant>,
    /// A probe is in flight (half-open).
    probing: bool,
    /// Which probe holds the slot (each claim gets the next number).
    probe: u64,
    cooldown_until: Option<Instant>,
}

/// What the admin port shows.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Status {
    pub backend: String,
    pub state: &'static str,
    pub consecutive_failures: u32,
    pub ejections: u32,
    /// Milliseconds until the backend is tried again, if it is out.
    pub available_in_ms: Option<u64>,
}

#[derive(Debug, Default)]
pub struct Health {
    policy: Mutex<Policy>,
    states: Mutex<HashMap<String, State>>,
}

impl Health {
    pub fn new(policy: Policy) -> Health {
        Health {
            policy: Mutex::new(policy),
            states: Mutex::new(HashMap::new()),
        }
    }

    pub fn set_policy(&self, policy: Policy) {
        *self.policy.lock().unwrap_or_else(|e| e.into_inner()) = policy;
    }

    fn policy(&self) -> Policy {
        *self.policy.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `backend` may be tried now; claims the probe slot when half-open.
    pub fn check(&self, backend: &str) -> Availability {
        let now = Instant::now();
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        let Some(s) = states.get_mut(backend) else {
            return Availability::Available;
        };
        if let Some(until) = s.cooldown_until {
            if until > now {
                return Availability::Unavailable(until);
            }
            s.cooldown_until = None;
        }
        match s.ejected_until {
            Some(until) if until > now => Availability::Unavailable(until),
            Some(_) if s.probing => Availability::Unavailable(now + Duration::from_secs(1)),
            Some(_) => {
                s.probing = true;
                s.probe += 1;
                Availability::Probe(s.probe)
            }
            None => Availability::Available,
        }
    }

    /// Whether `backend` would be available (no side effect).
    pub fn is_out(&self, backend: &str) -> bool {
        let now = Instant::now();
        let states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        states.get(backend).is_some_and(|s| {
            s.cooldown_until.is_some_and(|u| u > now) || s.ejected_until.is_some_and(|u| u > now) || s.probing
        })
    }

    pub fn success(&self, backend: &str) {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = states.get_mut(backend) {
            if s.ejected_until.is_some() {
                tracing::info!(backend, "backend recovered: probe succeeded");
            }
            *s = State {
                cooldown_until: s.cooldown_until,
                probe: s.probe,
                ..State::default()
            };
        }
    }

    /// Counts a failure; ejects when the threshold is reached or a probe failed.
    pub fn failure(&self, backend: &str) {
        let policy = self.policy();
        let now = Instant::now();
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        let s = states.entry(backend.to_string()).or_default();
        s.consecutive_failures += 1;
        let probe_failed = s.probing;
        if probe_failed || (s.ejected_until.is_none() && s.consecutive_failures >= policy.consecutive_failures) {
            let factor = 2u32.saturating_pow(s.ejections.min(16));
            let period = policy.base_ejection.saturating_mul(factor).min(policy.max_ejection);
            s.ejections += 1;
            s.ejected_until = Some(now + period);
            s.probing = false;
            tracing::warn!(backend, ?period, failures = s.consecutive_failures, "backend ejected");
        }
    }

    /// Frees a half-open backend's probe slot whose request ended unanswered (cancelled): the
    /// next request probes instead. A probe that was answered already updated the state.
    pub fn release_probe(&self, backend: &str, probe: u64) {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        // Only the probe that holds the slot frees it: a later probe's slot is not ours.
        if let Some(s) = states.get_mut(backend).filter(|s| s.probing && s.probe == probe) {
            s.probing = false;
        }
    }

    /// `Retry-After`: skip the backend for `delay` (not a failure).
    pub fn cool_down(&self, backend: &str, delay: Duration) {
        let until = Instant::now() + delay;
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        let s = states.entry(backend.to_string()).or_default();
        s.cooldown_until = Some(s.cooldown_until.map_or(until, |u| u.max(until)));
    }

    pub fn statuses(&self) -> Vec<Status> {
        let now = Instant::now();
        let states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Status> = states
            .iter()
            .map(|(name, s)| {
                let until = [s.ejected_until, s.cooldown_until]
                    .into_iter()
                    .flatten()
                    .filter(|u| *u > now)
                    .max();
                let state = match (s.ejected_until, s.probing, until) {
                    (Some(u), _, _) if u > now => "ejected",
                    (Some(_), true, _) => "probing",
                    (Some(_), false, _) => "half_open",
                    (None, _, Some(_)) => "cooling_down",
                    _ => "healthy",
                };
                Status {
                    backend: name.clone(),
                    state,
                    consecutive_failures: s.consecutive_failures,
                    ejections: s.ejections,
                    available_in_ms: until.map(|u| (u - now).as_millis() as u64),
                }
            })
            .collect();
        out.sort_by(|a, b| a.backend.cmp(&b.backend));
        out
    }
}

/// The probe slot of a half-open backend, held by the request that probes it. Dropping it
/// frees the slot: a probe whose request was cancelled never blocks the backend for good.
#[derive(Debug)]
pub struct ProbeGuard {
    health: std::sync::Arc<Health>,
    backend: String,
    probe: u64,
}

impl ProbeGuard {
    pub fn new(health: std::sync::Arc<Health>, backend: String, probe: u64) -> ProbeGuard {
        ProbeGuard { health, backend, probe }
    }
}

impl Drop for ProbeGuard {
    fn drop(&mut self) {
        self.health.release_probe(&self.backend, self.probe);
    }
}

/// `Retry-After` as seconds (RFC 9110 §10.2.3; the HTTP-date form is not used by LLM APIs and
/// is ignored). Capped at an hour.
pub fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let v = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?.trim();
    let secs: f64 = v.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(3600.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            consecutive_failures: 3,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(25),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ejection_grows_on_repeat_and_a_probe_closes_it() {
        let h = Health::new(policy());
        for _ in 0..2 {
            h.failure("a");
        }
        assert_eq!(h.check("a"), Availability::Available, "below the threshold");
        h.failure("a");
        assert!(
            matches!(h.check("a"), Availability::Unavailable(_)),
            "ejected at the threshold"
        );
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(
            matches!(h.check("a"), Availability::Probe(_)),
            "half-open after the period"
        );
        assert!(
            matches!(h.check("a"), Availability::Unavailable(_)),
            "one probe at a time"
        );
        h.failure("a");
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(
            matches!(h.check("a"), Availability::Unavailable(_)),
            "second ejection is longer (20s)"
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(matches!(h.check("a"), Availability::Probe(_)));
        h.failure("a");
        tokio::time::advance(Duration::from_secs(24)).await;
        assert!(
            matches!(h.check("a"), Availability::Unavailable(_)),
            "capped at 25s, not 40s"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(matches!(h.check("a"), Availability::Probe(_)));
        h.success("a");
        assert_eq!(h.check("a"), Availability::Available);
        assert_eq!(h.statuses()[0].state, "healthy");
        assert_eq!(h.statuses()[0].ejections, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_released_probe_frees_only_its_own_slot() {
        let h = Health::new(policy());
        for _ in 0..3 {
            h.failure("a");
        }
        tokio::time::advance(Duration::from_secs(11)).await;
        let Availability::Probe(first) = h.check("a") else {
            panic!("probe")
        };
        h.failure("a"); // the first probe failed: ejected again
        tokio::time::advance(Duration::from_secs(21)).await;
        let Availability::Probe(second) = h.check("a") else {
            panic!("probe")
        };
        h.release_probe("a", first); // the first request ends late
        assert!(h.is_out("a"), "the second probe still holds the slot");
        h.release_probe("a", second);
        assert!(!h.is_out("a"));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_cools_down_without_counting_a_failure() {
        let h = Health::new(policy());
        h.cool_down("b", Duration::from_secs(5));
        assert!(h.is_out("b"));
        assert_eq!(h.statuses()[0].state, "cooling_down");
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(h.check("b"), Availability::Available);
        assert_eq!(h.statuses()[0].consecutive_failures, 0);
    }

    #[test]
    fn retry_after_header_is_read_in_seconds() {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert(http::header::RETRY_AFTER, "0.5".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(500)));
        h.insert(
            http::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
    }
}
