//! What the pool knows about one account between requests: its in-flight count, served count, breaker,
//! forbidden mark, the operator's override and what discovery learned (tier, project).
//!
//! [`LiveAccount`] is keyed by account id outside the swappable table, so it survives a reload; a removed
//! account keeps it while it drains. The tier ranks that order selection are worked out here too.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::RwLock;

use crate::config::{AccountSpec, TIERS, UNKNOWN_TIER_RANK};
use crate::pool::breaker::Breaker;
use crate::store::ForbiddenRecord;

/// Tier priority: lower is preferred (the ranks of [`TIERS`]).
pub fn tier_rank(tier: Option<&str>) -> u8 {
    tier.and_then(|tier| TIERS.iter().find(|(id, _)| *id == tier))
        .map_or(UNKNOWN_TIER_RANK, |(_, rank)| *rank)
}

/// The operator's override held in `LiveAccount::admin_enabled`: none, enabled or disabled.
pub(super) const ADMIN_NONE: u8 = 0;
pub(super) const ADMIN_ENABLED: u8 = 1;
pub(super) const ADMIN_DISABLED: u8 = 2;

/// Per-account runtime state that outlives configuration swaps.
pub struct LiveAccount {
    pub(super) in_flight: AtomicU32,
    /// Tier rank learned from `loadCodeAssist`, when YAML did not set one (`u8::MAX` = not learned).
    pub(super) learned_tier_rank: AtomicU8,
    pub(super) served: AtomicU64,
    pub(super) breaker: Breaker,
    pub(super) forbidden: RwLock<Option<ForbiddenRecord>>,
    /// The operator's enable/disable from the admin API (until the next reload).
    pub(super) admin_enabled: AtomicU8,
    /// The project discovered for the account (for `pool.lock_scope: project`).
    pub(super) project: RwLock<Option<String>>,
    /// Why the account's egress proxy is down (`egress_down`): unusable until the probe reaches it again.
    pub(super) egress_down: RwLock<Option<String>>,
    /// With pacing (`min_interval`): the unix ms before which the account takes no further call.
    pub(super) paced_until_ms: AtomicU64,
}

impl LiveAccount {
    pub(super) fn new() -> Self {
        LiveAccount {
            in_flight: AtomicU32::new(0),
            learned_tier_rank: AtomicU8::new(u8::MAX),
            served: AtomicU64::new(0),
            breaker: Breaker::default(),
            forbidden: RwLock::new(None),
            admin_enabled: AtomicU8::new(ADMIN_NONE),
            project: RwLock::new(None),
            egress_down: RwLock::new(None),
            paced_until_ms: AtomicU64::new(0),
        }
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    pub(super) fn forbidden(&self) -> Option<ForbiddenRecord> {
        self.forbidden.read().ok().and_then(|f| f.clone())
    }

    /// The selection's check, without copying the reason.
    pub(super) fn egress_is_down(&self) -> bool {
        self.egress_down.read().is_ok_and(|d| d.is_some())
    }

    pub(super) fn egress_down(&self) -> Option<String> {
        self.egress_down.read().ok().and_then(|f| f.clone())
    }

    /// Claims the account's next paced call at `now_ms` (spacing the one after by `gap_ms`); false while
    /// the previous call's gap runs. Atomic, so racing requests cannot both take one turn.
    pub(super) fn try_pace(&self, now_ms: u64, gap_ms: u64) -> bool {
        self.paced_until_ms
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |until| {
                (until <= now_ms).then_some(now_ms + gap_ms)
            })
            .is_ok()
    }

    pub(super) fn enabled(&self, account: &AccountSpec) -> bool {
        match self.admin_enabled.load(Ordering::Relaxed) {
            ADMIN_ENABLED => true,
            ADMIN_DISABLED => false,
            _ => account.enabled,
        }
    }

    /// Reserves one slot unless the account is at `cap`.
    pub(super) fn try_reserve(&self, cap: u32) -> bool {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < cap).then_some(n + 1))
            .is_ok()
    }
}
