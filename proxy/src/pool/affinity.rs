//! Session affinity: which account a conversation last ran on, so its next turn hits the same prompt cache.
//!
//! A bounded LRU with a time-to-live: a binding unused for `pool.affinity_ttl` is gone, and when more than
//! `pool.affinity_capacity` conversations are bound the least recently used binding is evicted (by recency,
//! never by hash order). A binding counts consecutive failures of its account and is dropped after three.
//!
//! A binding outlives the request that made it, so it allocates nothing of its own: the session is keyed by
//! a keyed 64-bit hash and the account name is shared with every other binding to that account. Three small
//! strings per binding, made on whichever worker served the turn, were enough after a burst of streams to
//! keep the allocator pages around them resident for as long as the binding lived (issue 13).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Failures in a row after which a conversation stops preferring its account.
pub const MAX_CONSECUTIVE_FAILURES: u32 = 3;

/// A session as the table knows it: its id hashed with this process's random key. Two sessions sharing a
/// key (odds of about n² / 2⁶⁵ for n bindings) would share a cache hint, never anything else: a binding only
/// says which account to try first.
type SessionKey = u64;

struct Binding {
    account: Arc<str>,
    failures: u32,
    last_used: Instant,
    /// Position in the recency order.
    seq: u64,
}

struct Lru {
    map: HashMap<SessionKey, Binding>,
    /// seq → session, oldest first.
    order: BTreeMap<u64, SessionKey>,
    /// One copy of each account name a binding points at; emptied with the table.
    accounts: HashSet<Arc<str>>,
    hasher: RandomState,
    next_seq: u64,
    capacity: usize,
    ttl: Duration,
}

impl Lru {
    fn key(&self, session: &str) -> SessionKey {
        self.hasher.hash_one(session)
    }

    fn account(&mut self, name: &str) -> Arc<str> {
        if let Some(shared) = self.accounts.get(name) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(name);
        self.accounts.insert(shared.clone());
        shared
    }

    fn touch(&mut self, key: SessionKey, now: Instant) {
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(binding) = self.map.get_mut(&key) {
            self.order.remove(&binding.seq);
            binding.seq = seq;
            binding.last_used = now;
            self.order.insert(seq, key);
        }
    }

    fn remove(&mut self, key: SessionKey) {
        if let Some(binding) = self.map.remove(&key) {
            self.order.remove(&binding.seq);
        }
        self.forget_accounts_when_empty();
    }

    /// Drops expired bindings from the old end, then the least recently used beyond capacity.
    fn evict(&mut self, now: Instant) {
        while let Some((&seq, &key)) = self.order.first_key_value() {
            let expired = self.map.get(&key).is_none_or(|b| now.duration_since(b.last_used) >= self.ttl);
            if !expired && self.map.len() <= self.capacity {
                break;
            }
            self.order.remove(&seq);
            self.map.remove(&key);
        }
        self.forget_accounts_when_empty();
    }

    /// Account names are kept while any binding may point at them; accounts removed on reload stay in the
    /// set until the table empties (the set is at most as large as the accounts ever bound).
    fn forget_accounts_when_empty(&mut self) {
        if self.map.is_empty() && !self.accounts.is_empty() {
            self.accounts = HashSet::new();
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
                accounts: HashSet::new(),
                hasher: RandomState::new(),
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
    pub fn account_of(&self, session: &str, now: Instant) -> Option<Arc<str>> {
        let mut lru = self.lock();
        let key = lru.key(session);
        let ttl = lru.ttl;
        let alive = lru.map.get(&key).map(|b| now.duration_since(b.last_used) < ttl)?;
        if !alive {
            lru.remove(key);
            return None;
        }
        lru.touch(key, now);
        lru.map.get(&key).map(|b| b.account.clone())
    }

    /// Binds (or re-binds) a session to an account and clears its failure count.
    pub fn bind(&self, session: &str, account: &str, now: Instant) {
        let mut lru = self.lock();
        let key = lru.key(session);
        let same_account = lru.map.get(&key).map(|binding| &*binding.account == account);
        // Re-binding a live session (every successful turn does) updates it in place.
        if let Some(same_account) = same_account {
            let moved_to = (!same_account).then(|| lru.account(account));
            if let Some(binding) = lru.map.get_mut(&key) {
                if let Some(account) = moved_to {
                    binding.account = account;
                }
                binding.failures = 0;
            }
            lru.touch(key, now);
            lru.evict(now);
            return;
        }
        let seq = lru.next_seq;
        lru.next_seq += 1;
        let account = lru.account(account);
        lru.map.insert(key, Binding { account, failures: 0, last_used: now, seq });
        lru.order.insert(seq, key);
        lru.evict(now);
    }

    /// Counts a failure of the session's own account; drops the binding at the third in a row.
    /// Returns true when the binding was dropped.
    pub fn record_failure(&self, session: &str, account: &str) -> bool {
        let mut lru = self.lock();
        let key = lru.key(session);
        let Some(binding) = lru.map.get_mut(&key).filter(|b| &*b.account == account) else {
            return false;
        };
        binding.failures += 1;
        if binding.failures >= MAX_CONSECUTIVE_FAILURES {
            lru.remove(key);
            return true;
        }
        false
    }

    pub fn unbind(&self, session: &str) {
        let mut lru = self.lock();
        let key = lru.key(session);
        lru.remove(key);
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
    fn bindings_to_one_account_share_its_name_and_rebinding_moves_it() {
        let a = SessionAffinity::new(100, Duration::from_secs(60));
        let t = Instant::now();
        for i in 0..50 {
            a.bind(&format!("s{i}"), "acc", t);
        }
        let first = a.account_of("s0", t).unwrap();
        let last = a.account_of("s49", t).unwrap();
        assert!(Arc::ptr_eq(&first, &last), "one copy of the name for every binding");
        a.bind("s0", "other", t);
        assert_eq!(a.account_of("s0", t).as_deref(), Some("other"));
        assert_eq!(a.account_of("s1", t).as_deref(), Some("acc"));
        assert_eq!(a.lock().accounts.len(), 2);
        for i in 0..50 {
            a.unbind(&format!("s{i}"));
        }
        assert!(a.is_empty());
        assert!(a.lock().accounts.is_empty(), "names go with the last binding");
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
