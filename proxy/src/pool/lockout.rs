//! Lockouts: the (account, model) pairs Google told us to rest, until when, and why.
//!
//! A 429 is about one account and one model: a rate limit rests the pair for the delay Google named, quota
//! exhaustion until the reset. The account keeps serving every other model. Deadlines are unix milliseconds
//! so they can be persisted and restored across a restart unchanged.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

/// One running lockout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lockout {
    /// Unix milliseconds it ends at.
    pub until_ms: u64,
    /// `RATE_LIMIT_EXCEEDED`, `QUOTA_EXHAUSTED`, …
    pub reason: String,
}

/// All lockouts, keyed by account id then upstream model.
#[derive(Default)]
pub struct Lockouts {
    by_account: RwLock<HashMap<String, HashMap<String, Lockout>>>,
}

impl Lockouts {
    /// Rests (account, model) until `until_ms`. A shorter lockout never cuts a longer one short.
    /// Returns whether this changed anything (so callers log and persist only real changes).
    pub fn lock(&self, account: &str, model: &str, until_ms: u64, reason: &str) -> bool {
        let mut map = self.by_account.write().unwrap_or_else(PoisonError::into_inner);
        let models = map.entry(account.to_string()).or_default();
        match models.get(model) {
            Some(existing) if existing.until_ms >= until_ms => false,
            _ => {
                models.insert(model.to_string(), Lockout { until_ms, reason: reason.to_string() });
                true
            }
        }
    }

    /// When (account, model) may serve again, if it is locked at `now_ms`.
    pub fn until(&self, account: &str, model: &str, now_ms: u64) -> Option<u64> {
        let map = self.by_account.read().ok()?;
        let lockout = map.get(account)?.get(model)?;
        (lockout.until_ms > now_ms).then_some(lockout.until_ms)
    }

    /// The account's lockouts still running at `now_ms`, by model.
    pub fn of_account(&self, account: &str, now_ms: u64) -> Vec<(String, Lockout)> {
        let Ok(map) = self.by_account.read() else { return Vec::new() };
        let mut running: Vec<(String, Lockout)> = map
            .get(account)
            .map(|models| {
                models
                    .iter()
                    .filter(|(_, l)| l.until_ms > now_ms)
                    .map(|(m, l)| (m.clone(), l.clone()))
                    .collect()
            })
            .unwrap_or_default();
        running.sort_by(|a, b| a.0.cmp(&b.0));
        running
    }

    /// Lifts every lockout of an account (an operator's action).
    pub fn clear_account(&self, account: &str) {
        if let Ok(mut map) = self.by_account.write() {
            map.remove(account);
        }
    }

    /// Forgets lockouts that ended before `now_ms`, so the map does not grow with history.
    pub fn prune(&self, now_ms: u64) {
        if let Ok(mut map) = self.by_account.write() {
            map.retain(|_, models| {
                models.retain(|_, l| l.until_ms > now_ms);
                !models.is_empty()
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lockout_rests_one_model_of_one_account_until_its_deadline() {
        let l = Lockouts::default();
        assert!(l.lock("a", "gemini-3-flash", 1_000, "QUOTA_EXHAUSTED"));
        assert_eq!(l.until("a", "gemini-3-flash", 500), Some(1_000));
        assert_eq!(l.until("a", "claude-sonnet-4-6", 500), None, "other models still serve");
        assert_eq!(l.until("b", "gemini-3-flash", 500), None, "other accounts still serve");
        assert_eq!(l.until("a", "gemini-3-flash", 1_000), None, "over at the deadline");
    }

    #[test]
    fn a_short_rate_limit_never_shortens_a_quota_lockout() {
        let l = Lockouts::default();
        l.lock("a", "m", 90_000, "QUOTA_EXHAUSTED");
        assert!(!l.lock("a", "m", 1_000, "RATE_LIMIT_EXCEEDED"));
        assert_eq!(l.of_account("a", 0)[0].1.reason, "QUOTA_EXHAUSTED");
        l.prune(100_000);
        assert!(l.of_account("a", 0).is_empty());
    }
}
