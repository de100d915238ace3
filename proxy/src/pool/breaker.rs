//! A per-account circuit breaker: an account that keeps answering 5xx or dropping connections is taken out
//! of rotation for a cool-down, then tried again with a single probe.
//!
//! Closed → Open after `breaker_failures` failures within `breaker_window`; Open → Half-open once
//! `breaker_cooldown` has passed, where exactly one request (the probe) may use the account; the probe's
//! success closes the breaker, its failure opens it again. A probe that never reports (its client left)
//! does not wedge the breaker: another probe is allowed after a further cool-down.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The breaker's thresholds (from `pool.*` in levitate.yaml).
#[derive(Clone, Copy, Debug)]
pub struct BreakerPolicy {
    pub failures: u32,
    pub window: Duration,
    pub cooldown: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    window_start: Option<Instant>,
    failures: u32,
    opened_at: Option<Instant>,
    probe_started: Option<Instant>,
}

#[derive(Debug)]
pub struct Breaker {
    inner: Mutex<Inner>,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                window_start: None,
                failures: 0,
                opened_at: None,
                probe_started: None,
            }),
        }
    }
}

impl Breaker {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The state as an observer sees it at `now` (an open breaker past its cool-down reads half-open).
    pub fn state(&self, now: Instant, policy: &BreakerPolicy) -> BreakerState {
        let inner = self.lock();
        match inner.state {
            BreakerState::Open if inner.opened_at.is_some_and(|t| now >= t + policy.cooldown) => {
                BreakerState::HalfOpen
            }
            state => state,
        }
    }

    /// When an account whose breaker blocks it may be tried again; `None` when it may be tried now.
    pub fn blocked_until(&self, now: Instant, policy: &BreakerPolicy) -> Option<Instant> {
        let inner = self.lock();
        match inner.state {
            BreakerState::Closed => None,
            BreakerState::Open => inner.opened_at.map(|t| t + policy.cooldown).filter(|t| *t > now),
            BreakerState::HalfOpen => inner.probe_started.map(|t| t + policy.cooldown).filter(|t| *t > now),
        }
    }

    /// Called when a request leases the account: whether it may go. Checking `blocked_until` and then
    /// leasing is two steps, so many requests racing past an open breaker's cool-down would all pass the
    /// check; the claim here is one step under the lock, so exactly one of them becomes the probe and the
    /// rest are refused (their slot is returned by the caller).
    pub fn try_admit(&self, now: Instant, policy: &BreakerPolicy) -> bool {
        let mut inner = self.lock();
        match inner.state {
            BreakerState::Closed => true,
            BreakerState::Open => {
                if inner.opened_at.is_none_or(|t| now < t + policy.cooldown) {
                    return false;
                }
                inner.state = BreakerState::HalfOpen;
                inner.probe_started = Some(now);
                true
            }
            BreakerState::HalfOpen => {
                // A probe in flight blocks others; one that never reported frees the claim after a cool-down.
                if inner.probe_started.is_some_and(|t| now < t + policy.cooldown) {
                    return false;
                }
                inner.probe_started = Some(now);
                true
            }
        }
    }

    pub fn on_success(&self) {
        let mut inner = self.lock();
        inner.state = BreakerState::Closed;
        inner.failures = 0;
        inner.window_start = None;
        inner.opened_at = None;
        inner.probe_started = None;
    }

    /// Opens a closed breaker at `now` because another instance of the cluster opened it (its own failures
    /// count nothing here; a breaker already open or probing stays as it is). Returns whether it opened.
    pub fn open_from_cluster(&self, now: Instant) -> bool {
        let mut inner = self.lock();
        if inner.state != BreakerState::Closed {
            return false;
        }
        inner.state = BreakerState::Open;
        inner.opened_at = Some(now);
        inner.failures = 0;
        inner.window_start = None;
        true
    }

    /// Counts a failure; returns true when this failure opened the breaker.
    pub fn on_failure(&self, now: Instant, policy: &BreakerPolicy) -> bool {
        let mut inner = self.lock();
        match inner.state {
            BreakerState::HalfOpen => {
                inner.state = BreakerState::Open;
                inner.opened_at = Some(now);
                inner.probe_started = None;
                true
            }
            BreakerState::Open => false,
            BreakerState::Closed => {
                if inner.window_start.is_none_or(|start| now >= start + policy.window) {
                    inner.window_start = Some(now);
                    inner.failures = 0;
                }
                inner.failures += 1;
                if inner.failures >= policy.failures {
                    inner.state = BreakerState::Open;
                    inner.opened_at = Some(now);
                    inner.failures = 0;
                    inner.window_start = None;
                    true
                } else {
                    false
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: BreakerPolicy =
        BreakerPolicy { failures: 3, window: Duration::from_secs(10), cooldown: Duration::from_secs(5) };

    #[test]
    fn the_cluster_opens_only_a_closed_breaker_which_then_probes_as_usual() {
        let b = Breaker::default();
        let t0 = Instant::now();
        assert!(b.open_from_cluster(t0));
        assert!(!b.open_from_cluster(t0 + Duration::from_secs(1)), "already open");
        assert!(!b.try_admit(t0 + Duration::from_secs(1), &POLICY));
        assert!(b.try_admit(t0 + Duration::from_secs(6), &POLICY), "one probe after the cool-down");
        assert!(!b.open_from_cluster(t0 + Duration::from_secs(6)), "a probing breaker is left alone");
    }

    #[test]
    fn opens_after_n_failures_in_a_window_then_probes_once() {
        let b = Breaker::default();
        let t0 = Instant::now();
        assert!(!b.on_failure(t0, &POLICY));
        assert!(!b.on_failure(t0 + Duration::from_secs(1), &POLICY));
        assert!(b.on_failure(t0 + Duration::from_secs(2), &POLICY), "third failure opens");
        assert_eq!(b.state(t0 + Duration::from_secs(3), &POLICY), BreakerState::Open);
        assert!(b.blocked_until(t0 + Duration::from_secs(3), &POLICY).is_some());
        let later = t0 + Duration::from_secs(8);
        assert_eq!(b.blocked_until(later, &POLICY), None, "cool-down over: one probe may go");
        assert!(b.try_admit(later, &POLICY));
        assert_eq!(b.state(later, &POLICY), BreakerState::HalfOpen);
        assert!(b.blocked_until(later, &POLICY).is_some(), "only one probe at a time");
        assert!(!b.try_admit(later, &POLICY), "only one probe at a time");
        assert!(b.on_failure(later, &POLICY), "a failed probe opens it again");
        assert!(b.try_admit(later + Duration::from_secs(6), &POLICY));
        b.on_success();
        assert_eq!(b.state(later + Duration::from_secs(6), &POLICY), BreakerState::Closed);
    }

    #[test]
    fn failures_spread_beyond_the_window_do_not_open() {
        let b = Breaker::default();
        let t0 = Instant::now();
        for i in 0..6 {
            assert!(!b.on_failure(t0 + Duration::from_secs(6 * i), &POLICY));
        }
        assert_eq!(b.state(t0 + Duration::from_secs(40), &POLICY), BreakerState::Closed);
    }

    #[test]
    fn half_open_admits_exactly_one_probe_under_concurrency() {
        use std::sync::atomic::{AtomicU32, Ordering};
        use std::sync::{Arc, Barrier};
        for _ in 0..50 {
            let b = Arc::new(Breaker::default());
            let t0 = Instant::now();
            for i in 0..3 {
                b.on_failure(t0 + Duration::from_millis(i), &POLICY);
            }
            let later = t0 + Duration::from_secs(8);
            let threads = 16;
            let barrier = Arc::new(Barrier::new(threads));
            let admitted = Arc::new(AtomicU32::new(0));
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let (b, barrier, admitted) = (b.clone(), barrier.clone(), admitted.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        // What the pool does: look, then lease.
                        if b.blocked_until(later, &POLICY).is_none() && b.try_admit(later, &POLICY) {
                            admitted.fetch_add(1, Ordering::SeqCst);
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().expect("thread");
            }
            assert_eq!(admitted.load(Ordering::SeqCst), 1, "exactly one probe");
        }
    }
}
