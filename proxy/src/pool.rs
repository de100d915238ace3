//! The account pool: which Google account serves the next upstream attempt.
//!
//! The account table (from accounts.yaml) is immutable and swapped whole on reload; what changes per request
//! (in-flight counts, the tier learned from Google) lives in [`LiveAccount`], keyed by account id outside the
//! table, so it survives a swap and a removed account drains its in-flight requests. Selection orders
//! eligible accounts by tier priority, then in-flight count, then a rotating tie-break, and reserves the slot
//! with a compare-and-swap so no account ever exceeds its concurrency cap, whatever the race.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::Notify;

use crate::config::AccountSpec;

/// Tier priority: lower is preferred (PROTOCOL.md §4 tier ids).
pub fn tier_rank(tier: Option<&str>) -> u8 {
    match tier {
        Some("ws-ai-ultra-business-tier") => 0,
        Some("g1-ultra-tier") => 1,
        Some("g1-pro-tier") => 2,
        Some("standard-tier" | "legacy-tier") => 3,
        Some("free-tier") => 4,
        _ => 5,
    }
}

/// Per-account runtime state that outlives configuration swaps.
pub struct LiveAccount {
    in_flight: AtomicU32,
    /// Tier rank learned from `loadCodeAssist`, when YAML did not set one (`u8::MAX` = not learned).
    learned_tier_rank: AtomicU8,
    served: AtomicU64,
}

impl LiveAccount {
    fn new() -> Self {
        LiveAccount {
            in_flight: AtomicU32::new(0),
            learned_tier_rank: AtomicU8::new(u8::MAX),
            served: AtomicU64::new(0),
        }
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Reserves one slot unless the account is at `cap`.
    fn try_reserve(&self, cap: u32) -> bool {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < cap).then_some(n + 1))
            .is_ok()
    }
}

/// Why no account could be leased.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectError {
    #[error("no account is configured and enabled")]
    NoAccounts,
    #[error("every eligible account was already tried for this request")]
    Exhausted,
    #[error("every account is at its concurrency limit")]
    Busy,
}

/// What one upstream attempt asks of the pool.
pub struct Selection<'a> {
    pub model: &'a str,
    /// Accounts this request already tried.
    pub exclude: &'a [String],
}

/// A reserved slot on one account; releasing it (drop) frees the slot and wakes one waiter.
pub struct Lease {
    pub account: Arc<AccountSpec>,
    live: Arc<LiveAccount>,
    released: Arc<Notify>,
}

impl Lease {
    pub fn id(&self) -> &str {
        &self.account.id
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.live.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.released.notify_one();
    }
}

/// An eligible account with its sort key: (tier rank, in-flight, tie-break).
type Candidate = (u8, u32, u64, Arc<AccountSpec>, Arc<LiveAccount>);

/// The accounts, their live counters, and the selection policy.
pub struct AccountPool {
    table: ArcSwap<Vec<Arc<AccountSpec>>>,
    live: Mutex<HashMap<String, Arc<LiveAccount>>>,
    rotation: AtomicU64,
    released: Arc<Notify>,
}

impl AccountPool {
    pub fn new(accounts: &[AccountSpec]) -> Self {
        let pool = AccountPool {
            table: ArcSwap::from_pointee(Vec::new()),
            live: Mutex::new(HashMap::new()),
            rotation: AtomicU64::new(0),
            released: Arc::new(Notify::new()),
        };
        pool.replace(accounts);
        pool
    }

    /// Swaps in a new account table; live state of accounts that stay is kept.
    pub fn replace(&self, accounts: &[AccountSpec]) {
        for a in accounts {
            self.live_of(&a.id);
        }
        self.table.store(Arc::new(accounts.iter().cloned().map(Arc::new).collect()));
        self.released.notify_waiters();
    }

    pub fn live_of(&self, id: &str) -> Arc<LiveAccount> {
        let mut live = match self.live.lock() {
            Ok(live) => live,
            Err(poisoned) => poisoned.into_inner(),
        };
        live.entry(id.to_string()).or_insert_with(|| Arc::new(LiveAccount::new())).clone()
    }

    /// Records the tier Google reported for an account without one in YAML.
    pub fn learn_tier(&self, id: &str, tier: Option<&str>) {
        self.live_of(id).learned_tier_rank.store(tier_rank(tier), Ordering::Relaxed);
    }

    pub fn accounts(&self) -> Arc<Vec<Arc<AccountSpec>>> {
        self.table.load_full()
    }

    fn rank(&self, account: &AccountSpec, live: &LiveAccount) -> u8 {
        if account.tier.is_some() {
            return tier_rank(account.tier.as_deref());
        }
        match live.learned_tier_rank.load(Ordering::Relaxed) {
            u8::MAX => tier_rank(None),
            learned => learned,
        }
    }

    /// Leases the best eligible account right now, without waiting.
    pub fn select(&self, selection: &Selection<'_>) -> Result<Lease, SelectError> {
        let table = self.table.load();
        let mut candidates: Vec<Candidate> = Vec::with_capacity(table.len());
        let mut any_enabled = false;
        let spin = self.rotation.fetch_add(1, Ordering::Relaxed);
        for (i, account) in table.iter().enumerate() {
            if !account.enabled {
                continue;
            }
            any_enabled = true;
            if selection.exclude.iter().any(|id| id == &account.id) {
                continue;
            }
            let live = self.live_of(&account.id);
            // Rotating tie-break: accounts equal in tier and load take turns.
            let tie = (i as u64).wrapping_sub(spin) % (table.len() as u64).max(1);
            candidates.push((self.rank(account, &live), live.in_flight(), tie, account.clone(), live));
        }
        if !any_enabled {
            return Err(SelectError::NoAccounts);
        }
        if candidates.is_empty() {
            return Err(SelectError::Exhausted);
        }
        candidates.sort_unstable_by_key(|c| (c.0, c.1, c.2));
        for (_, _, _, account, live) in candidates {
            if live.try_reserve(account.max_concurrent) {
                live.served.fetch_add(1, Ordering::Relaxed);
                return Ok(Lease { account, live, released: self.released.clone() });
            }
        }
        Err(SelectError::Busy)
    }

    /// Like [`select`](Self::select), but when every candidate is merely busy, waits up to `max_wait` for a
    /// slot to free: a full pool must not turn into a burst of client errors.
    pub async fn select_or_wait(
        &self,
        selection: &Selection<'_>,
        max_wait: Duration,
    ) -> Result<Lease, SelectError> {
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            let notified = self.released.notified();
            match self.select(selection) {
                Err(SelectError::Busy) => {}
                other => return other,
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.select(selection);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn account(email: &str, tier: Option<&str>, cap: u32) -> AccountSpec {
        AccountSpec {
            id: email.to_string(),
            email: email.to_string(),
            refresh_token: Secret::new("r"),
            project_id: None,
            tier: tier.map(str::to_string),
            enabled: true,
            max_concurrent: cap,
        }
    }

    fn pick(pool: &AccountPool) -> Result<Lease, SelectError> {
        pool.select(&Selection { model: "m", exclude: &[] })
    }

    #[test]
    fn higher_tier_first_then_least_loaded() {
        let pool = AccountPool::new(&[
            account("free@x", Some("free-tier"), 2),
            account("pro@x", Some("g1-pro-tier"), 2),
            account("ultra@x", Some("g1-ultra-tier"), 1),
        ]);
        let a = pick(&pool).unwrap();
        assert_eq!(a.id(), "ultra@x");
        let b = pick(&pool).unwrap();
        let c = pick(&pool).unwrap();
        assert_eq!((b.id(), c.id()), ("pro@x", "pro@x"));
        let d = pick(&pool).unwrap();
        assert_eq!(d.id(), "free@x");
        drop(a);
        assert_eq!(pick(&pool).unwrap().id(), "ultra@x");
    }

    #[test]
    fn caps_hold_and_release_frees() {
        let pool = AccountPool::new(&[account("a@x", None, 1)]);
        let lease = pick(&pool).unwrap();
        assert_eq!(pick(&pool).err(), Some(SelectError::Busy));
        drop(lease);
        assert!(pick(&pool).is_ok());
    }

    #[test]
    fn excluded_and_disabled_accounts_are_skipped() {
        let mut off = account("off@x", None, 3);
        off.enabled = false;
        let pool = AccountPool::new(&[account("a@x", None, 3), off]);
        let tried = vec!["a@x".to_string()];
        assert_eq!(
            pool.select(&Selection { model: "m", exclude: &tried }).err(),
            Some(SelectError::Exhausted)
        );
        let none = AccountPool::new(&[]);
        assert_eq!(pick(&none).err(), Some(SelectError::NoAccounts));
    }

    #[test]
    fn concurrent_reservations_never_exceed_caps() {
        let pool = Arc::new(AccountPool::new(&[account("a@x", None, 3), account("b@x", None, 2)]));
        let peak = Arc::new(AtomicU32::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let pool = pool.clone();
                let peak = peak.clone();
                std::thread::spawn(move || {
                    for _ in 0..2000 {
                        if let Ok(lease) = pick(&pool) {
                            let now = lease.live.in_flight();
                            assert!(
                                now <= lease.account.max_concurrent,
                                "{} over its cap: {now}",
                                lease.id()
                            );
                            peak.fetch_max(now, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        for id in ["a@x", "b@x"] {
            assert_eq!(pool.live_of(id).in_flight(), 0, "counter drift on {id}");
        }
        assert!(peak.load(Ordering::Relaxed) >= 1);
    }

    #[test]
    fn live_state_survives_a_swap() {
        let pool = AccountPool::new(&[account("a@x", None, 1)]);
        let lease = pick(&pool).unwrap();
        pool.replace(&[account("a@x", None, 1), account("b@x", None, 1)]);
        assert_eq!(pick(&pool).unwrap().id(), "b@x");
        drop(lease);
        assert_eq!(pool.live_of("a@x").in_flight(), 0);
    }

    #[tokio::test]
    async fn waiters_get_the_next_free_slot() {
        let pool = Arc::new(AccountPool::new(&[account("a@x", None, 1)]));
        let lease = pick(&pool).unwrap();
        let waiter = {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.select_or_wait(&Selection { model: "m", exclude: &[] }, Duration::from_secs(5))
                    .await
                    .map(|l| l.id().to_string())
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(lease);
        assert_eq!(waiter.await.unwrap().unwrap(), "a@x");
        let held = pick(&pool).unwrap();
        let timed_out =
            pool.select_or_wait(&Selection { model: "m", exclude: &[] }, Duration::from_millis(30)).await;
        assert_eq!(timed_out.err(), Some(SelectError::Busy));
        drop(held);
    }
}
