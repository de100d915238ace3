//! The admin API's view of the pool: [`AccountStatus`] for every account of the table in force, then the
//! accounts a reload removed that still finish requests (state `draining`).

use std::sync::PoisonError;
use std::time::Instant;

use serde::Serialize;

use crate::pool::breaker::BreakerState;
use crate::pool::live::tier_rank;
use crate::pool::selector::AccountSelector;
use crate::pool::state::PoolState;
use crate::store::{unix_now_ms as now_ms, ForbiddenRecord};

/// One lockout as the admin API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct LockoutStatus {
    pub model: String,
    pub reason: String,
    pub until_ms: u64,
    pub remaining_ms: u64,
}

/// One model's quota as the admin API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct QuotaStatus {
    pub model: String,
    pub remaining_fraction: f64,
    pub reset_ms: Option<u64>,
}

/// Everything the pool knows about one account, for the admin API.
#[derive(Clone, Debug, Serialize)]
pub struct AccountStatus {
    pub id: String,
    pub email: String,
    pub tier: Option<String>,
    pub tier_rank: u8,
    pub project: Option<String>,
    /// `ready`, `busy`, `disabled`, `forbidden`, `egress_down` or `breaker_open`.
    pub state: &'static str,
    pub enabled: bool,
    pub in_flight: u32,
    pub max_concurrent: u32,
    pub served: u64,
    pub breaker: &'static str,
    pub lockouts: Vec<LockoutStatus>,
    pub quotas: Vec<QuotaStatus>,
    /// The models its last `fetchAvailableModels` listed; `null` while not known (it may serve any).
    pub models: Option<Vec<String>>,
    pub forbidden: Option<ForbiddenRecord>,
    /// The account's egress proxy (`scheme://host:port`, never credentials), when it has one.
    pub egress: Option<String>,
    /// Why the egress proxy is down, while it is (state `egress_down`).
    pub egress_down: Option<String>,
}

/// Every account of the current table with what the pool knows about it, then the accounts a reload
/// removed that still finish requests (state `draining`).
pub(super) fn snapshot_state(selector: &AccountSelector, pool_state: &PoolState) -> Vec<AccountStatus> {
    let settings = pool_state.settings.load();
    let now = Instant::now();
    let now_ms = now_ms();
    let policy = PoolState::policy(&settings);
    selector
        .entries
        .iter()
        .map(|e| {
            let forbidden = e.live.forbidden();
            let egress_down = e.live.egress_down();
            let enabled = e.live.enabled(&e.account);
            let breaker = e.live.breaker.state(now, &policy);
            let state = if !enabled {
                "disabled"
            } else if forbidden.is_some() {
                "forbidden"
            } else if egress_down.is_some() {
                "egress_down"
            } else if breaker == BreakerState::Open {
                "breaker_open"
            } else if e.live.in_flight() >= e.account.max_concurrent {
                "busy"
            } else {
                "ready"
            };
            AccountStatus {
                id: e.account.id.clone(),
                email: e.account.email.clone(),
                tier: e.account.tier.clone(),
                tier_rank: PoolState::rank(&e.account, &e.live),
                project: pool_state.project_of(&e.account),
                state,
                enabled,
                in_flight: e.live.in_flight(),
                max_concurrent: e.account.max_concurrent,
                served: e.live.served(),
                breaker: breaker.as_str(),
                lockouts: pool_state
                    .lockouts
                    .of_account(&e.account.id, now_ms)
                    .into_iter()
                    .map(|(model, l)| LockoutStatus {
                        model,
                        reason: l.reason,
                        until_ms: l.until_ms,
                        remaining_ms: l.until_ms.saturating_sub(now_ms),
                    })
                    .collect(),
                quotas: pool_state
                    .quotas
                    .of_account(&e.account.id)
                    .into_iter()
                    .map(|(model, q)| QuotaStatus {
                        model,
                        remaining_fraction: q.remaining_fraction,
                        reset_ms: q.reset_ms,
                    })
                    .collect(),
                models: pool_state.models.of_account(&e.account.id).map(|m| m.iter().cloned().collect()),
                forbidden,
                egress: e.account.egress.as_ref().map(|p| p.to_string()),
                egress_down,
            }
        })
        .chain(draining(selector, pool_state))
        .collect()
}

/// Accounts a reload removed that still finish requests.
fn draining(selector: &AccountSelector, pool_state: &PoolState) -> Vec<AccountStatus> {
    let live = pool_state.live.lock().unwrap_or_else(PoisonError::into_inner);
    let mut draining: Vec<AccountStatus> = live
        .iter()
        .filter(|(id, l)| l.in_flight() > 0 && !selector.entries.iter().any(|e| &e.account.id == *id))
        .map(|(id, l)| AccountStatus {
            id: id.clone(),
            email: id.clone(),
            tier: None,
            tier_rank: tier_rank(None),
            project: None,
            state: "draining",
            enabled: false,
            in_flight: l.in_flight(),
            max_concurrent: 0,
            served: l.served(),
            breaker: BreakerState::Closed.as_str(),
            lockouts: Vec::new(),
            quotas: Vec::new(),
            models: None,
            forbidden: None,
            egress: None,
            egress_down: None,
        })
        .collect();
    draining.sort_by(|a, b| a.id.cmp(&b.id));
    draining
}
