//! Session affinity: which account a conversation last ran on, so its next turn hits the same prompt cache.
//!
//! A bounded LRU with a time-to-live: a binding unused for `pool.affinity_ttl` is gone, and when more than
//! `pool.affinity_capacity` conversations are bound the least recently used binding is evicted (by recency,
//! never by hash order). A binding counts consecutive failures of its account and is dropped after three.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Failures in a row after which a conversation stops preferring its account.
pub const MAX_CONSECUTIVE_FAILURES: u32 = 3;

struct Binding {
    account: String,
    failures: u32,
    last_used: Instant,
    /// Position in the recency order.
    seq: u64,
}

struct Lru {
    map: HashMap<String, Binding>,
    /// seq → session key, oldest first.
    order: BTreeMap<u64, String>,
    next_seq: u64,
    capacity: usize,
    ttl: Duration,
}

impl Lru {
    fn touch(&mut self, key: &str, now: Instant) {
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(binding) = self.map.get_mut(key) {
            // The key moves to its new place in the order; no new copy of it is made.
            let key = self.order.remove(&binding.seq).unwrap_or_else(|| key.to_string());
            binding.seq = seq;
            binding.last_used = now;
            self.order.insert(seq, key);
        }
    }

    fn remove(&mut self, key: &str) {
        if let Some(binding) = self.map.remove(key) {
            self.order.remove(&binding.seq);
        }
    }

    /// Drops expired bindings from the old end, then the least recently used beyond capacity.
    fn evict(&mut self, now: Instant) {
        while let Some((&seq, key)) = self.order.first_key_value() {
            let expired = self.map.get(key).is_none_or(|b| now.duration_since(b.last_used) >= self.ttl);
            if !expired && self.map.len() <= self.capacity {
                break;
            }
            let key = key.clone();
            self.order.remove(&seq);
            self.map.remove(&key);
        }
    }
}

/// Conversation → account bindings.
pub struct SessionAffinity {
    inner: Mutex<Lru>,
}

impl SessionAffinity {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        SessionAffinity {
            inner: Mutex::new(Lru {
                map: HashMap::new(),
                order: BTreeMap::new(),
                next_seq: 0,
                capacity: capacity.max(1),
                ttl,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies new limits (on reload); shrinking evicts at once.
    pub fn configure(&self, capacity: usize, ttl: Duration) {
        let mut lru = self.lock();
        lru.capacity = capacity.max(1);
        lru.ttl = ttl;
        lru.evict(Instant::now());
    }

    /// The account a session is bound to, if the binding is alive.
    pub fn account_of(&self, session: &str, now: Instant) -> Option<String> {
        let mut lru = self.lock();
        let ttl = lru.ttl;
        let alive = lru.map.get(session).map(|b| now.duration_since(b.last_used) < ttl)?;
        if !alive {
            lru.remove(session);
            return None;
        }
        lru.touch(session, now);
        lru.map.get(session).map(|b| b.account.clone())
    }

    /// Binds (or re-binds) a session to an account and clears its failure count.
    pub fn bind(&self, session: &str, account: &str, now: Instant) {
        let mut lru = self.lock();
        // Re-binding a live session (every successful turn does) updates it in place.
        if let Some(binding) = lru.map.get_mut(session) {
            if binding.account != account {
                binding.account = account.to_string();
            }
            binding.failures = 0;
            lru.touch(session, now);
            lru.evict(now);
            return;
        }
        let seq = lru.next_seq;
        lru.next_seq += 1;
        lru.map.insert(
            session.to_string(),
            Binding { account: account.to_string(), failures: 0, last_used: now, seq },
        );
        lru.order.insert(seq, session.to_string());
        lru.evict(now);
    }

    /// Counts a failure of the session's own account; drops the binding at the third in a row.
    /// Returns true when the binding was dropped.
    pub fn record_failure(&self, session: &str, account: &str) -> bool {
        let mut lru = self.lock();
        let Some(binding) = lru.map.get_mut(session).filter(|b| b.account == account) else {
            return false;
        };
        binding.failures += 1;
        if binding.failures >= MAX_CONSECUTIVE_FAILURES {
            lru.remove(session);
            return true;
        }
        false
    }

    pub fn unbind(&self, session: &str) {
        self.lock().remove(session);
    }

    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_binding_is_evicted_first() {
        let a = SessionAffinity::new(2, Duration::from_secs(60));
        let t = Instant::now();
        a.bind("s1", "acc1", t);
        a.bind("s2", "acc2", t);
        assert_eq!(a.account_of("s1", t).as_deref(), Some("acc1"), "s1 is now the most recent");
        a.bind("s3", "acc3", t);
        assert_eq!(a.account_of("s2", t), None, "s2 was the least recently used");
        assert_eq!(a.account_of("s1", t).as_deref(), Some("acc1"));
        assert_eq!(a.account_of("s3", t).as_deref(), Some("acc3"));
        assert_eq!(a.len(), 2);
    }

    #[test]
    fn idle_bindings_expire() {
        let a = SessionAffinity::new(10, Duration::from_secs(60));
        let t = Instant::now();
        a.bind("s1", "acc1", t);
        assert_eq!(a.account_of("s1", t + Duration::from_secs(59)).as_deref(), Some("acc1"));
        assert_eq!(a.account_of("s1", t + Duration::from_secs(120)), None);
        assert!(a.is_empty());
    }

    #[test]
    fn three_failures_in_a_row_drop_the_binding_and_success_resets_the_count() {
        let a = SessionAffinity::new(10, Duration::from_secs(60));
        let t = Instant::now();
        a.bind("s", "acc", t);
        assert!(!a.record_failure("s", "acc"));
        assert!(!a.record_failure("s", "acc"));
        a.bind("s", "acc", t);
        assert!(!a.record_failure("s", "other"), "another account's failure does not count");
        assert!(!a.record_failure("s", "acc"));
        assert!(!a.record_failure("s", "acc"));
        assert!(a.record_failure("s", "acc"));
        assert_eq!(a.account_of("s", t), None);
    }
}
