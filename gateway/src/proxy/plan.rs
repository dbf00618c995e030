//! The attempt policy, with no network: which backend comes next (ejected and cooling-down
//! backends last, a half-open backend's probe slot claimed), and what an attempt's
//! [`Outcome`] means (health bookkeeping: failures, ejection, `Retry-After` cool-downs; then
//! deliver, try the next backend, or stop). `attempt` drives it with `upstream::Call`.

use std::{sync::Arc, time::Duration};

use super::ProxyError;
use crate::{
    config::l7::RetryOn,
    route::health::{Availability, Health, ProbeGuard},
};

/// The backends a request may use, in order, and the retry policy over them.
pub(super) struct Plan {
    backends: std::vec::IntoIter<(usize, Option<String>)>,
    attempts_left: u32,
    retry_on: Vec<RetryOn>,
    retry_statuses: Vec<u16>,
    /// Every backend is ejected or cooling down: try them anyway, in order.
    all_out: bool,
    last_error: Option<ProxyError>,
}

/// One attempt to make.
pub(super) struct Step {
    pub(super) backend: usize,
    /// The route's model for this backend.
    pub(super) model: Option<String>,
    /// The half-open probe slot this attempt holds.
    pub(super) probe: Option<ProbeGuard>,
}

/// What an attempt came to.
#[derive(Debug)]
pub(super) enum Outcome {
    /// Nothing was sent: the backend's credential, token or translation failed here.
    NotSent(ProxyError),
    /// The backend could not be reached (connect or TLS).
    Unreachable(RetryOn, ProxyError),
    /// No response headers within the attempt's timeout.
    TimedOut(ProxyError),
    /// The whole request's budget ran out.
    TotalTimeout(ProxyError),
    /// The backend answered with this status.
    Answered { status: u16, retry_after: Option<Duration> },
}

/// What to do after an attempt.
#[derive(Debug)]
pub(super) enum Verdict {
    /// Hand this answer to the client.
    Deliver,
    /// Try the next backend.
    Next,
    /// Fail the request with this error.
    Stop(ProxyError),
}

impl Plan {
    pub(super) fn new(
        backends: Vec<(usize, Option<String>)>,
        attempts: u32,
        retry_on: Vec<RetryOn>,
        retry_statuses: Vec<u16>,
    ) -> Plan {
        Plan {
            backends: backends.into_iter(),
            attempts_left: attempts,
            retry_on,
            retry_statuses,
            all_out: false,
            last_error: None,
        }
    }

    /// Ejected and cooling-down backends go last: they are tried only when nothing else is
    /// left (then all of them, in order).
    pub(super) fn prune(&mut self, health: &Health, name: impl Fn(usize) -> String) {
        let backends: Vec<_> = self.backends.by_ref().collect();
        self.all_out = backends.iter().all(|(b, _)| health.is_out(&name(*b)));
        let kept = backends
            .into_iter()
            .filter(|(b, _)| self.all_out || !health.is_out(&name(*b)))
            .collect::<Vec<_>>();
        self.backends = kept.into_iter();
    }

    /// The backends the plan holds, in the order it would try them.
    pub(super) fn order(&self) -> Vec<usize> {
        self.backends.as_slice().iter().map(|(b, _)| *b).collect()
    }

    /// The first backend the plan would try (limits keyed by backend count it).
    pub(super) fn first(&self) -> Option<usize> {
        self.backends.as_slice().first().map(|(b, _)| *b)
    }

    /// The next attempt, or `None` when the budget or the backends ran out.
    pub(super) fn next(&mut self, health: &Arc<Health>, name: impl Fn(usize) -> String) -> Option<Step> {
        while self.attempts_left > 0 {
            let (backend, model) = self.backends.next()?;
            let probe = if self.all_out {
                None
            } else {
                match health.check(&name(backend)) {
                    Availability::Unavailable(_) => continue,
                    Availability::Probe(probe) => Some(ProbeGuard::new(health.clone(), name(backend), probe)),
                    Availability::Available => None,
                }
            };
            self.attempts_left -= 1;
            return Some(Step { backend, model, probe });
        }
        None
    }

    /// Books an outcome against the backend's health and decides what follows. Returns the
    /// attempt's metric label too (`None` when nothing was sent).
    pub(super) fn judge(
        &mut self,
        outcome: Outcome,
        health: &Health,
        backend: &str,
    ) -> (Verdict, Option<&'static str>) {
        let (condition, error, label) = match outcome {
            Outcome::NotSent(e) => {
                // Nothing left the node: the next backend is always safe to try, and this one
                // does not use up an attempt (a streamed body was not touched either).
                self.attempts_left += 1;
                self.last_error = Some(e);
                return (Verdict::Next, None);
            }
            Outcome::TotalTimeout(e) => {
                health.failure(backend);
                return (Verdict::Stop(e), Some("timeout"));
            }
            Outcome::TimedOut(e) => {
                health.failure(backend);
                (RetryOn::Timeout, e, "timeout")
            }
            Outcome::Unreachable(condition, e) => {
                health.failure(backend);
                (condition, e, "error")
            }
            Outcome::Answered { status, retry_after } => {
                return (
                    self.answered(status, retry_after, health, backend),
                    Some(if (200..300).contains(&status) {
                        "ok"
                    } else {
                        "error_status"
                    }),
                )
            }
        };
        let retryable = self.retry_on.contains(&condition);
        if retryable {
            self.last_error = Some(error);
            (Verdict::Next, Some(label))
        } else {
            (Verdict::Stop(error), Some(label))
        }
    }

    fn answered(&mut self, status: u16, retry_after: Option<Duration>, health: &Health, backend: &str) -> Verdict {
        let condition = match status {
            429 => {
                if let Some(delay) = retry_after {
                    health.cool_down(backend, delay);
                }
                Some(RetryOn::TooManyRequests)
            }
            500..=599 => {
                health.failure(backend);
                Some(RetryOn::ServerError)
            }
            _ => {
                health.success(backend);
                None
            }
        };
        let retryable = condition.is_some_and(|c| self.retry_on.contains(&c)) || self.retry_statuses.contains(&status);
        if retryable && self.attempts_left > 0 {
            Verdict::Next
        } else {
            Verdict::Deliver
        }
    }

    /// The error a request fails with when no attempt delivered.
    pub(super) fn give_up(self) -> ProxyError {
        self.last_error
            .unwrap_or_else(|| ProxyError::NoBackend("every backend of the route is ejected or cooling down".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::health::Policy;

    fn plan(n: usize, attempts: u32) -> Plan {
        let backends = (0..n).map(|i| (i, None)).collect();
        Plan::new(backends, attempts, crate::config::l7::DEFAULT_RETRY_ON.to_vec(), vec![])
    }

    fn name(b: usize) -> String {
        format!("b{b}")
    }

    fn health() -> Arc<Health> {
        Arc::new(Health::new(Policy {
            consecutive_failures: 2,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(60),
        }))
    }

    fn down() -> Outcome {
        Outcome::Unreachable(
            RetryOn::Connect,
            ProxyError::Upstream {
                backend: "x".into(),
                message: "refused".into(),
            },
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_backend_falls_back_and_the_last_answer_is_delivered() {
        let h = health();
        let mut p = plan(3, 3);
        let s = p.next(&h, name).unwrap();
        assert_eq!(s.backend, 0);
        assert!(matches!(p.judge(down(), &h, "b0").0, Verdict::Next));
        let s = p.next(&h, name).unwrap();
        assert_eq!(s.backend, 1);
        let answered = Outcome::Answered {
            status: 503,
            retry_after: None,
        };
        assert!(
            matches!(p.judge(answered, &h, "b1").0, Verdict::Next),
            "5xx with attempts left"
        );
        let s = p.next(&h, name).unwrap();
        let answered = Outcome::Answered {
            status: 500,
            retry_after: None,
        };
        assert!(
            matches!(p.judge(answered, &h, "b2").0, Verdict::Deliver),
            "the last attempt's answer is delivered"
        );
        assert_eq!(s.backend, 2);
        assert!(p.next(&h, name).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn errors_outside_retry_on_stop_and_4xx_is_delivered() {
        let h = health();
        let mut p = Plan::new(vec![(0, None), (1, None)], 2, vec![RetryOn::ServerError], vec![]);
        p.next(&h, name).unwrap();
        assert!(
            matches!(p.judge(down(), &h, "b0").0, Verdict::Stop(_)),
            "connect is not in retry_on"
        );
        let mut p = plan(2, 2);
        p.next(&h, name).unwrap();
        let bad = Outcome::Answered {
            status: 400,
            retry_after: None,
        };
        assert!(matches!(p.judge(bad, &h, "b0").0, Verdict::Deliver));
    }

    #[tokio::test(start_paused = true)]
    async fn local_failures_move_on_and_give_up_names_the_last() {
        let h = health();
        let mut p = plan(2, 2);
        p.next(&h, name).unwrap();
        let (v, label) = p.judge(Outcome::NotSent(ProxyError::CredentialMissing("k".into())), &h, "b0");
        assert!(matches!(v, Verdict::Next) && label.is_none());
        assert_eq!(h.statuses().len(), 0, "nothing was sent: no health change");
        p.next(&h, name).unwrap();
        let (v, _) = p.judge(Outcome::NotSent(ProxyError::Untranslatable("no".into())), &h, "b1");
        assert!(matches!(v, Verdict::Next));
        assert!(p.next(&h, name).is_none(), "no backend left");
        assert!(matches!(p.give_up(), ProxyError::Untranslatable(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_that_never_left_the_node_does_not_use_up_the_budget() {
        let h = health();
        // One attempt (a streamed body): the first backend lacks its credential.
        let mut p = plan(2, 1);
        p.next(&h, name).unwrap();
        p.judge(Outcome::NotSent(ProxyError::CredentialMissing("k".into())), &h, "b0");
        let s = p.next(&h, name).expect("the next backend still gets the one attempt");
        assert_eq!(s.backend, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn ejected_backends_go_last_and_a_dropped_probe_frees_its_slot() {
        let h = health();
        h.failure("b0");
        h.failure("b0");
        let mut p = plan(2, 2);
        p.prune(&h, name);
        assert_eq!(
            p.first(),
            Some(1),
            "the ejected backend is left out while another is in"
        );
        tokio::time::advance(Duration::from_secs(11)).await;
        let mut p = plan(1, 1);
        p.prune(&h, name);
        let s = p.next(&h, name).unwrap();
        assert!(s.probe.is_some(), "half-open: this attempt is the probe");
        assert!(h.is_out("b0"), "one probe at a time");
        drop(s);
        assert!(!h.is_out("b0"), "a probe dropped unanswered frees the slot");
        let mut p = plan(1, 1);
        let s = p.next(&h, name).unwrap();
        assert!(s.probe.is_some(), "the next request probes again");
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_cools_the_backend_down() {
        let h = health();
        let mut p = plan(2, 2);
        p.next(&h, name).unwrap();
        let limited = Outcome::Answered {
            status: 429,
            retry_after: Some(Duration::from_secs(5)),
        };
        assert!(matches!(p.judge(limited, &h, "b0").0, Verdict::Next));
        assert!(h.is_out("b0"));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(!h.is_out("b0"));
    }
}
