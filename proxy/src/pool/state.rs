//! The runtime state of every account, outside the swappable table: live accounts, lockouts, session
//! bindings, quota snapshots, the settings and the wait queue.
//!
//! The account table is swapped whole on reload; everything learned lives in [`PoolState`], keyed by account
//! id, so it survives the swap and a removed account drains its in-flight requests. Whether an account may
//! serve a model now ([`Availability`]) is decided here, for the selector and the queue alike.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use arc_swap::ArcSwap;
use tokio::sync::{oneshot, Notify};

use crate::config::{AccountSpec, PoolSettings};
use crate::pool::affinity::SessionAffinity;
use crate::pool::breaker::BreakerPolicy;
use crate::pool::index::SelectIndex;
use crate::pool::live::{tier_rank, LiveAccount};
use crate::pool::lockout::Lockouts;
use crate::pool::models::{ModelBook, VersionGates};
use crate::pool::quota::QuotaBook;
use crate::store::Store;

/// The runtime state of every account, outside the swappable table.
pub struct PoolState {
    pub(super) live: Mutex<HashMap<String, Arc<LiveAccount>>>,
    pub(super) lockouts: Lockouts,
    pub(super) affinity: SessionAffinity,
    pub(super) quotas: QuotaBook,
    /// The models each account listed in its last `fetchAvailableModels` answer.
    pub(super) models: ModelBook,
    /// Google's refusals of the client version the gateway presents.
    pub(super) version_gates: VersionGates,
    /// The fallback key's slots (`AccountPool::fallback_lease`), apart from every account's.
    pub(super) fallback_live: Arc<LiveAccount>,
    pub(super) settings: ArcSwap<PoolSettings>,
    pub(super) store: Option<Store>,
    /// The accounts of the table in force, by id: a released slot is handed on only under the current spec
    /// (a removed account takes no new request, a lowered cap is honoured).
    pub(super) table: ArcSwap<HashMap<String, Arc<AccountSpec>>>,
    /// The selection index of the table in force: releases and learned tiers refile their account in it.
    pub(super) index: ArcSwap<SelectIndex>,
    /// Requests waiting for a slot, oldest first.
    pub(super) queue: Mutex<WaitQueue>,
    /// Capacity appeared other than by a release (reload, settings, an operator's action): waiters look
    /// again.
    pub(super) changed: Notify,
    pub(super) rotation: AtomicU64,
}

/// Requests waiting for a slot, in arrival order.
#[derive(Default)]
pub(super) struct WaitQueue {
    pub(super) waiters: VecDeque<Waiter>,
    pub(super) next_ticket: u64,
}

/// One queued request: what it may use, and where a released slot is handed to it.
pub(super) struct Waiter {
    pub(super) ticket: u64,
    pub(super) model: String,
    pub(super) exclude: Vec<String>,
    pub(super) grant: oneshot::Sender<Grant>,
}

/// A slot handed from a released lease to a waiter, still counted in the account's in-flight count.
pub(super) struct Grant {
    pub(super) account: Arc<AccountSpec>,
    pub(super) live: Arc<LiveAccount>,
}

/// How an account stands for one model right now.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Availability {
    /// Disabled, forbidden, or not serving the model: not coming back by itself.
    Unusable,
    /// Locked, under its quota floor, or breaker open, until this unix millisecond.
    Resting(u64),
    /// At its concurrency cap.
    Full,
    Ready,
}

impl PoolState {
    pub(super) fn new(settings: PoolSettings, store: Option<Store>) -> Self {
        PoolState {
            live: Mutex::new(HashMap::new()),
            lockouts: Lockouts::default(),
            affinity: SessionAffinity::new(settings.affinity_capacity, settings.affinity_ttl),
            quotas: QuotaBook::default(),
            models: ModelBook::default(),
            version_gates: VersionGates::default(),
            fallback_live: Arc::new(LiveAccount::new()),
            settings: ArcSwap::from_pointee(settings),
            store,
            table: ArcSwap::from_pointee(HashMap::new()),
            index: ArcSwap::from_pointee(SelectIndex::new(&[])),
            queue: Mutex::new(WaitQueue::default()),
            changed: Notify::new(),
            rotation: AtomicU64::new(0),
        }
    }

    /// Records the accounts of a new table (for handing released slots on) and its selection index, then
    /// refiles every account in that index: a release that went to the previous index while this table was
    /// being built is taken in.
    pub(super) fn install<'a>(
        &self,
        accounts: impl Iterator<Item = &'a Arc<AccountSpec>>,
        index: &Arc<SelectIndex>,
    ) {
        let table = accounts.map(|account| (account.id.clone(), account.clone())).collect();
        self.table.store(Arc::new(table));
        self.index.store(index.clone());
        index.refile_all();
    }

    /// Refiles account `id` in the index in force (after its in-flight count or learned tier changed).
    /// `hint` is where the caller last saw it filed, used when it is that same index.
    pub(super) fn refile(&self, id: &str, hint: Option<&(Arc<SelectIndex>, usize)>) {
        let index = self.index.load();
        let pos = match hint {
            Some((filed, pos)) if Arc::ptr_eq(filed, &index) => Some(*pos),
            _ => index.position(id),
        };
        if let Some(pos) = pos {
            index.refile(pos);
        }
    }

    pub(super) fn lock_queue(&self) -> std::sync::MutexGuard<'_, WaitQueue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn live_of(&self, id: &str) -> Arc<LiveAccount> {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = live.get(id) {
            return found.clone();
        }
        live.entry(id.to_string()).or_insert_with(|| Arc::new(LiveAccount::new())).clone()
    }

    pub(super) fn policy(settings: &PoolSettings) -> BreakerPolicy {
        BreakerPolicy {
            failures: settings.breaker_failures,
            window: settings.breaker_window,
            cooldown: settings.breaker_cooldown,
        }
    }

    pub(super) fn rank(account: &AccountSpec, live: &LiveAccount) -> u8 {
        Self::rank_with(account.tier.as_deref().map(|t| tier_rank(Some(t))), live)
    }

    /// The rank from YAML when it names a tier (worked out once per table), else the one Google reported.
    pub(super) fn rank_with(yaml_rank: Option<u8>, live: &LiveAccount) -> u8 {
        if let Some(rank) = yaml_rank {
            return rank;
        }
        match live.learned_tier_rank.load(Ordering::Relaxed) {
            u8::MAX => tier_rank(None),
            learned => learned,
        }
    }

    pub(super) fn availability(
        &self,
        account: &AccountSpec,
        live: &LiveAccount,
        model: &str,
        now: Instant,
        now_ms: u64,
        settings: &PoolSettings,
    ) -> Availability {
        if !live.enabled(account) || live.forbidden().is_some() || live.egress_is_down() {
            return Availability::Unusable;
        }
        if !self.models.serves(&account.id, model) {
            return Availability::Unusable;
        }
        // A paced account rests until its gap ends: the selection prefers another, and waits only when none.
        let mut until = live.paced_until_ms.load(std::sync::atomic::Ordering::Acquire);
        if let Some(t) = self.lockouts.until(&account.id, model, now_ms) {
            until = until.max(t);
        }
        if let Some(t) =
            self.quotas.view(&account.id, model).and_then(|v| v.blocked_until(settings.quota_floor, now_ms))
        {
            until = until.max(t);
        }
        if let Some(t) = live.breaker.blocked_until(now, &Self::policy(settings)) {
            until = until.max(now_ms + t.duration_since(now).as_millis() as u64 + 1);
        }
        if until > now_ms {
            return Availability::Resting(until);
        }
        if live.in_flight() >= account.max_concurrent {
            return Availability::Full;
        }
        Availability::Ready
    }

    /// The account's project: from YAML, else the one discovery found.
    pub(super) fn project_of(&self, account: &AccountSpec) -> Option<String> {
        account.project_id.clone().or_else(|| self.live_of(&account.id).project.read().ok()?.clone())
    }
}
