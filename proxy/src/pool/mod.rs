//! The account pool: which Google account serves the next upstream attempt, and what the pool has learned
//! about each account (lockouts, breaker, quota, forbidden marks, session bindings).
//!
//! [`AccountPool`] is the pool's public face. [`AccountPool::select`] walks the selector's order (best
//! eligible account first, read from an index kept current on every lease and release), skips accounts this request already tried, prefers the session's sticky account
//! among the best tier, and reserves a slot with a compare-and-swap, so no account ever exceeds its cap
//! whatever the race. [`AccountPool::select_or_wait`] queues the request when every eligible account is
//! merely busy; what upstream answers teach the pool (lockouts, breaker failures, forbidden marks, quota)
//! comes in through its `on_*`, `lock` and `record_quota` methods.
//!
//! The files, each using only those before it (no import circles):
//! - `affinity`, `breaker`, `lockout`, `models`, `quota`: self-contained books of what was learned;
//! - `live`: [`LiveAccount`], one account's runtime state, and tier ranks;
//! - `index`: `SelectIndex`, a table's accounts filed by tier and in-flight count;
//! - `selection`: [`Selection`], what an attempt asks, and [`SelectError`];
//! - `state`: [`PoolState`], every account's state outside the swappable table, and its wait queue;
//! - `lease`: [`Lease`], the queue's places and where a released slot goes;
//! - `selector`: [`AccountSelector`], the `pingora-load-balancing` plugin over the table;
//! - `status`: [`AccountStatus`], the admin API's view; `operator`: the admin API's actions on the pool;
//! - `availability`: the pool's methods for model availability, version gates and the fallback key's slots;
//! - this file: [`AccountPool`]; and above it `quota_poller`, the background service feeding the quota book.

pub mod affinity;
mod availability;
pub mod breaker;
pub mod cluster;
mod egress;
pub mod events;
mod index;
mod lease;
mod live;
pub mod lockout;
pub mod models;
mod operator;
pub mod quota;
pub mod quota_poller;
mod selection;
mod selector;
mod state;
mod status;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::accounts::credentials::CredentialError;
use crate::config::{AccountSpec, LockScope, PoolSettings};
use crate::pool::breaker::BreakerState;
use crate::pool::live::ADMIN_NONE;
use crate::pool::quota::QuotaView;
use crate::pool::selection::Miss;
use crate::pool::state::Availability;
use crate::store::{unix_now, ForbiddenRecord, LockoutRecord, Store};

pub use crate::pool::lease::Lease;
pub use crate::pool::live::{tier_rank, LiveAccount};
pub use crate::pool::selection::{SelectError, Selection};
pub use crate::pool::selector::{AccountIter, AccountRef, AccountSelector, SelectorConfig};
pub use crate::pool::state::PoolState;
pub use crate::pool::status::{AccountStatus, LockoutStatus, QuotaStatus};
/// Unix milliseconds now: the clock lockouts and quota resets are kept in.
pub use crate::store::unix_now_ms as now_ms;

/// The account label of requests the fallback key served (logs, metrics, usage); no account id has no `@`.
pub const FALLBACK_ID: &str = "fallback";

/// A session whose account is locked for longer than this stops preferring it.
pub const AFFINITY_LOCKOUT_LIMIT: Duration = Duration::from_secs(300);
/// Lockouts shorter than this are not persisted: they end before any restart completes.
const PERSIST_LOCKOUTS_FROM: Duration = Duration::from_secs(1);

/// The accounts, their live state, and the selection policy.
pub struct AccountPool {
    selector: ArcSwap<AccountSelector>,
    state: Arc<PoolState>,
    /// Where lockouts, forbidden marks and quota snapshots go for the other instances (`events`).
    events: events::Events,
    /// This instance's share of each account's cap in a cluster (`cluster`).
    cluster: cluster::ClusterShare,
}

impl AccountPool {
    /// A pool with default settings and no persistence (tests, `levitate check`).
    pub fn new(accounts: &[AccountSpec]) -> Self {
        Self::build(accounts, PoolSettings::default(), None)
    }

    /// The serving pool: settings from the snapshot, and lockouts, forbidden marks and quota snapshots
    /// restored from the store so a restart never hammers an account Google told us to rest.
    pub fn with_store(accounts: &[AccountSpec], settings: &PoolSettings, store: Store) -> Self {
        let pool = Self::build(accounts, settings.clone(), Some(store.clone()));
        pool.restore(&store);
        pool
    }

    fn build(accounts: &[AccountSpec], settings: PoolSettings, store: Option<Store>) -> Self {
        let state = Arc::new(PoolState::new(settings, store));
        let selector = AccountSelector::from_accounts(accounts, state.clone());
        state.install(selector.accounts(), &selector.index);
        let cluster = cluster::ClusterShare::new(accounts);
        AccountPool { selector: ArcSwap::from_pointee(selector), state, events: Default::default(), cluster }
    }

    /// Loads lockouts, forbidden marks and quota snapshots from the store (at start, and after taking in what
    /// the old process of an upgrade recorded late). Applying a record twice changes nothing.
    pub fn restore(&self, store: &Store) {
        let now = now_ms();
        let (mut lockouts, mut forbidden, mut quotas) = (0, 0, 0);
        match store.lockouts(now) {
            Ok(records) => {
                for r in records {
                    self.state.lockouts.lock(&r.account, &r.model, r.until_ms, &r.reason);
                    lockouts += 1;
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not restore lockouts"),
        }
        match store.forbidden() {
            Ok(records) => {
                for (id, record) in records {
                    if let Ok(mut slot) = self.state.live_of(&id).forbidden.write() {
                        *slot = Some(record);
                        forbidden += 1;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not restore forbidden marks"),
        }
        match store.quotas() {
            Ok(records) => {
                for r in records {
                    let view = QuotaView {
                        remaining_fraction: r.remaining_fraction,
                        reset_ms: r.reset_ms,
                        fetched_at: r.fetched_at,
                    };
                    self.state.quotas.record(&r.account, &r.model, view);
                    quotas += 1;
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not restore quota snapshots"),
        }
        // Restored quota snapshots may be fresher than a rest a scan has already marked.
        self.state.index.load().forget_rests();
        if lockouts + forbidden + quotas > 0 {
            tracing::info!(lockouts, forbidden, quotas, "account pool state restored from the store");
        }
    }

    /// Swaps in a new account table (reload). Live state of accounts that stay is kept; removed accounts
    /// finish their in-flight requests and take no new ones.
    ///
    /// A reload clears only what its edit is about. An account's forbidden mark goes when that account's
    /// credentials changed (see [`credentials_changed`]): Google refused those credentials, and a reload that
    /// only disables a neighbour must not revive them (an operator clears a mark with `clear_forbidden`). The
    /// operator's enable/disable override goes when the file changed that account's `enabled`, the newer word
    /// on it; otherwise it survives the reload. Accounts new to the table keep what the store remembers.
    pub fn replace(&self, accounts: &[AccountSpec]) {
        let accounts = &self.cluster.apply(accounts);
        let previous = self.selector.load_full();
        let before: HashMap<&str, &AccountSpec> =
            previous.entries.iter().map(|e| (e.account.id.as_str(), e.account.as_ref())).collect();
        for a in accounts {
            let Some(old) = before.get(a.id.as_str()) else { continue };
            if old.enabled != a.enabled {
                self.state.live_of(&a.id).admin_enabled.store(ADMIN_NONE, Ordering::Relaxed);
            }
            if credentials_changed(old, a) && self.clear_forbidden(&a.id) {
                tracing::info!(account = %a.email, "forbidden mark cleared: the account's credentials changed");
            }
            // A new proxy gets its chance at once; if it fails too, the next call marks the account again.
            if old.egress != a.egress {
                self.mark_egress_up(a);
            }
        }
        let selector = AccountSelector::from_accounts(accounts, self.state.clone());
        self.state.install(selector.accounts(), &selector.index);
        self.selector.store(Arc::new(selector));
        self.state.changed.notify_waiters();
    }

    /// Applies reloaded pool settings.
    pub fn configure(&self, settings: &PoolSettings) {
        self.state.affinity.configure(settings.affinity_capacity, settings.affinity_ttl);
        self.state.settings.store(Arc::new(settings.clone()));
        // A new quota floor or breaker cool-down may end rests early.
        self.state.index.load().forget_rests();
        self.state.changed.notify_waiters();
    }

    pub fn live_of(&self, id: &str) -> Arc<LiveAccount> {
        self.state.live_of(id)
    }

    /// The selection plugin in force now.
    pub fn selector(&self) -> Arc<AccountSelector> {
        self.selector.load_full()
    }

    pub fn accounts(&self) -> Vec<Arc<AccountSpec>> {
        self.selector.load().accounts().cloned().collect()
    }

    /// Enabled, not forbidden, its egress up: worth polling and selecting at all.
    pub fn is_usable(&self, id: &str) -> bool {
        let selector = self.selector.load();
        let live = self.state.live_of(id);
        selector.entries.iter().any(|e| e.account.id == id && e.live.enabled(&e.account))
            && live.forbidden().is_none()
            && !live.egress_is_down()
    }

    /// Leases the best eligible account right now, without waiting.
    pub fn select(&self, selection: &Selection<'_>) -> Result<Lease, SelectError> {
        self.try_select(selection).map_err(|miss| miss.error)
    }

    /// [`select`](Self::select), and on a miss also when the earliest resting account may serve again.
    fn try_select(&self, selection: &Selection<'_>) -> Result<Lease, Miss> {
        let selector = self.selector.load();
        let settings = self.state.settings.load();
        let now = Instant::now();
        let now_ms = now_ms();
        let sticky = selection.session.and_then(|s| self.sticky_account(s, selection.model, now, now_ms));
        let mut scan = selector.scan(selection.model, now, now_ms, &settings);
        let mut candidates = std::iter::from_fn(|| {
            while let Some(pos) = scan.next_pos() {
                if !selection.exclude.iter().any(|id| id == &selector.entries[pos].account.id) {
                    return Some(pos);
                }
            }
            None
        });
        if let Some(best) = candidates.next() {
            // The sticky account goes first when it is eligible and of the best tier on offer: a free higher
            // tier still wins.
            let sticky = sticky
                .and_then(|id| selector.eligible(&id, selection, now, now_ms, &settings))
                .filter(|&s| selector.index.rank(s) == selector.index.rank(best));
            for pos in sticky.into_iter().chain(std::iter::once(best)).chain(candidates) {
                if let Some(lease) = self.reserve(&selector, pos, now, &settings) {
                    return Ok(lease);
                }
            }
        }
        self.why_none(&selector, selection, now, &settings)
    }

    /// Takes a slot on entry `pos` if one is free (compare-and-swap under its cap), and refiles it.
    fn reserve(
        &self,
        selector: &AccountSelector,
        pos: usize,
        now: Instant,
        settings: &PoolSettings,
    ) -> Option<Lease> {
        let e = selector.entries.get(pos)?;
        if !e.live.try_reserve(e.account.max_concurrent) {
            return None;
        }
        selector.index.refile(pos);
        let lease = Lease {
            account: e.account.clone(),
            live: e.live.clone(),
            state: self.state.clone(),
            filed: Some((selector.index.clone(), pos)),
        };
        // The breaker's claim is atomic: of many requests racing past a half-open breaker, one probes.
        // Pacing before the breaker: a refused turn must not hold a half-open breaker's probe claim.
        if !self.take_pacing_turn(&lease.account) {
            return None;
        }
        if !lease.live.breaker.try_admit(now, &PoolState::policy(settings)) {
            return None; // dropping the lease returns the slot and refiles the account
        }
        lease.live.served.fetch_add(1, Ordering::Relaxed);
        Some(lease)
    }

    /// The session's bound account, unless that account is locked for this model for a long time.
    fn sticky_account(&self, session: &str, model: &str, now: Instant, now_ms: u64) -> Option<Arc<str>> {
        let bound = self.state.affinity.account_of(session, now)?;
        let until = self.state.lockouts.until(&bound, model, now_ms);
        if until.is_some_and(|t| t.saturating_sub(now_ms) > AFFINITY_LOCKOUT_LIMIT.as_millis() as u64) {
            self.state.affinity.unbind(session);
            return None;
        }
        Some(bound)
    }

    /// Explains an empty selection: busy beats resting beats all-tried beats nothing-usable.
    ///
    /// It looks at the whole table, so it is also the index's safety net: an account that is ready but was
    /// not offered (filed where the scan did not see it while it moved) is leased here, best first, rather
    /// than answering busy while a slot is free.
    fn why_none(
        &self,
        selector: &AccountSelector,
        selection: &Selection<'_>,
        now: Instant,
        settings: &PoolSettings,
    ) -> Result<Lease, Miss> {
        let now_ms = now_ms();
        let (mut busy, mut tried, mut earliest) = (false, false, None::<u64>);
        let mut missed = Vec::new();
        for (pos, e) in selector.entries.iter().enumerate() {
            let availability =
                self.state.availability(&e.account, &e.live, selection.model, now, now_ms, settings);
            if availability == Availability::Unusable {
                continue;
            }
            if selection.exclude.iter().any(|id| id == &e.account.id) {
                tried = true;
                continue;
            }
            match availability {
                Availability::Resting(until) => earliest = Some(earliest.map_or(until, |t| t.min(until))),
                Availability::Ready => {
                    missed.push((PoolState::rank(&e.account, &e.live), e.live.in_flight(), pos));
                    busy = true;
                }
                // Ready but the CAS lost a race counts as busy too.
                _ => busy = true,
            }
        }
        missed.sort_unstable();
        for (.., pos) in missed {
            selector.index.refile(pos);
            if let Some(lease) = self.reserve(selector, pos, now, settings) {
                return Ok(lease);
            }
        }
        let error = match (busy, earliest, tried) {
            (true, _, _) => SelectError::Busy,
            (false, Some(until_ms), _) => SelectError::Locked { until_ms },
            (false, None, true) => SelectError::Exhausted,
            (false, None, false) => SelectError::NoAccounts,
        };
        Err(Miss { error, resting_until: earliest })
    }

    /// Like [`select`](Self::select), but waits up to `max_wait` when every candidate is busy, or resting
    /// with the earliest unlock within `max_wait`. Resting beyond that answers at once: never sleep on a
    /// locked account while the client could be told when to come back.
    ///
    /// The request holds a place in the FIFO [`WaitQueue`] while it waits: a released slot goes to the
    /// longest waiter that can use it, so nobody is overtaken and one release wakes one waiter. It also looks
    /// again when the lockout it waits on ends and when capacity appears otherwise (a reload, an operator's
    /// action). Dropping the future (the client left) gives up the place; a slot handed to it goes on.
    pub async fn select_or_wait(
        &self,
        selection: &Selection<'_>,
        max_wait: Duration,
    ) -> Result<Lease, SelectError> {
        let deadline = tokio::time::Instant::now() + max_wait;
        let mut place = self.state.enqueue(selection);
        loop {
            let changed = self.state.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let Miss { error, resting_until } = match self.try_select(selection) {
                Ok(lease) => {
                    // A slot handed over in the meantime goes straight on to the next waiter.
                    drop(place.leave());
                    return Ok(lease);
                }
                Err(miss) => miss,
            };
            let now = tokio::time::Instant::now();
            let remaining = deadline.saturating_duration_since(now);
            if remaining.is_zero() || !error.may_wait(remaining) {
                return place.leave().ok_or(error);
            }
            // Busy or not, look again when the first resting account may serve: its slot may have been
            // freed while it rested, and nothing else announces the end of a rest.
            let wake_at = resting_until.map_or(deadline, |until_ms| {
                deadline.min(now + Duration::from_millis(until_ms.saturating_sub(now_ms())))
            });
            let granted = tokio::select! {
                grant = &mut place.grant => Some(grant),
                _ = changed => None,
                _ = tokio::time::sleep_until(wake_at) => None,
            };
            match granted {
                Some(Ok(grant)) => return Ok(place.received(grant)),
                // The sender went without a grant (nothing does that while the place is queued).
                Some(Err(_)) => {
                    place.left = true;
                    return Err(error);
                }
                None => {}
            }
        }
    }

    /// Requests waiting in the queue now.
    pub fn queued(&self) -> usize {
        self.state.lock_queue().waiters.len()
    }

    // -----------------------------------------------------------------------------------------------------
    // What upstream answers teach the pool.

    /// A request succeeded on the lease's account: closes its breaker and keeps the session on it (or moves
    /// the session to it when it is of a higher tier than the session's account).
    pub fn on_success(&self, lease: &Lease, session: Option<&str>) {
        let policy = PoolState::policy(&self.state.settings.load());
        let was_closed = lease.live.breaker.state(Instant::now(), &policy) == BreakerState::Closed;
        lease.live.breaker.on_success();
        if !was_closed {
            // A probe's success ends the account's rest before the deadline its rest mask holds.
            self.state.index.load().forget_rests();
        }
        let Some(session) = session else { return };
        let now = Instant::now();
        let rebind = match self.state.affinity.account_of(session, now) {
            None => true,
            Some(bound) if *bound == *lease.account.id => true,
            Some(bound) => {
                let selector = self.selector.load();
                match selector.entries.iter().find(|e| *e.account.id == *bound) {
                    Some(e) => {
                        PoolState::rank(&lease.account, &lease.live) < PoolState::rank(&e.account, &e.live)
                    }
                    None => true,
                }
            }
        };
        if rebind {
            self.state.affinity.bind(session, &lease.account.id, now);
        }
    }

    /// The account a session is bound to here (for the shared binding, `crate::shared`).
    pub fn bound_account(&self, session: &str) -> Option<String> {
        self.state.affinity.account_of(session, Instant::now()).map(|account| account.to_string())
    }

    /// A binding another instance made: taken unless this instance has its own, or the account is unknown.
    pub fn adopt_binding(&self, session: &str, account: &str) {
        let now = Instant::now();
        let known = self.selector.load().entries.iter().any(|e| e.account.id == account);
        if known && self.state.affinity.account_of(session, now).is_none() {
            self.state.affinity.bind(session, account, now);
        }
    }

    /// A failed attempt of a session on an account; three in a row on its own account drop the binding.
    pub fn on_session_failure(&self, session: Option<&str>, account: &str) {
        if let Some(session) = session {
            if self.state.affinity.record_failure(session, account) {
                tracing::debug!(account, "session binding dropped after repeated failures");
            }
        }
    }

    /// Rests (account, model) for `rest` (and, with `lock_scope: project`, every account of its project).
    /// Returns the lockout's end in unix milliseconds, or `None` when nothing changed (already locked longer).
    pub fn lock(&self, account: &AccountSpec, model: &str, rest: Duration, reason: &str) -> Option<u64> {
        let until_ms = now_ms() + rest.as_millis() as u64;
        let settings = self.state.settings.load();
        let mut ids = vec![account.id.clone()];
        if settings.lock_scope == LockScope::Project {
            if let Some(project) = self.state.project_of(account) {
                let selector = self.selector.load();
                for e in selector.entries.iter() {
                    if e.account.id != account.id
                        && self.state.project_of(&e.account).as_deref() == Some(&project)
                    {
                        ids.push(e.account.id.clone());
                    }
                }
            }
        }
        let mut changed = false;
        for id in &ids {
            if self.state.lockouts.lock(id, model, until_ms, reason) {
                changed = true;
                self.events.emit(|| events::lockout_event(id, model, until_ms, reason));
                if rest >= PERSIST_LOCKOUTS_FROM {
                    self.persist_lockout(id, model, until_ms, reason);
                }
            }
        }
        changed.then_some(until_ms)
    }

    fn persist_lockout(&self, id: &str, model: &str, until_ms: u64, reason: &str) {
        let Some(store) = &self.state.store else { return };
        let record = LockoutRecord {
            account: id.to_string(),
            model: model.to_string(),
            until_ms,
            reason: reason.to_string(),
        };
        if let Err(e) = store.put_lockout(&record) {
            tracing::warn!(account = id, error = %e, "could not persist a lockout");
        }
    }

    /// A 5xx or network failure: feeds the account's breaker. Returns true when it opened the breaker.
    pub fn on_server_failure(&self, account: &AccountSpec) -> bool {
        let settings = self.state.settings.load();
        let live = self.state.live_of(&account.id);
        let opened = live.breaker.on_failure(Instant::now(), &PoolState::policy(&settings));
        self.events.emit_if(opened, || events::breaker_event(&account.id, settings.breaker_cooldown));
        opened
    }

    /// Takes an account out of rotation until a reload or an operator clears it.
    pub fn forbid(&self, account: &AccountSpec, reason: &str, url: Option<String>, message: &str) {
        let record =
            ForbiddenRecord { reason: reason.to_string(), url, message: message.to_string(), at: unix_now() };
        let live = self.state.live_of(&account.id);
        if let Ok(mut slot) = live.forbidden.write() {
            if slot.as_ref().is_some_and(|r| r.reason == record.reason) {
                return;
            }
            *slot = Some(record.clone());
        }
        tracing::warn!(account = %account.email, reason, url = ?record.url, "account forbidden until an operator acts");
        let account_id = account.id.clone();
        self.events.emit(|| events::PoolEvent::Forbidden { account: account_id, record: record.clone() });
        if let Some(store) = &self.state.store {
            if let Err(e) = store.put_forbidden(&account.id, &record) {
                tracing::warn!(account = %account.email, error = %e, "could not persist a forbidden mark");
            }
        }
    }

    /// A permanent credential failure (`invalid_grant`) forbids the account; a dead egress proxy marks it
    /// `egress_down`.
    pub fn on_credential_error(&self, account: &AccountSpec, error: &CredentialError) {
        if let CredentialError::Revoked { error: code, description, .. } = error {
            self.forbid(account, code, None, description);
        } else if error.egress_down() {
            self.mark_egress_down(account, &error.to_string());
        }
    }

    pub fn record_quota(&self, account: &str, model: &str, view: QuotaView) {
        self.events.emit(|| events::quota_event(account, model, &view));
        self.state.quotas.record(account, model, view);
        // A fresh snapshot may put an account back above the floor before its reset.
        self.state.index.load().forget_rests();
    }

    /// Forgets lockouts that have ended (periodic housekeeping).
    pub fn prune(&self) {
        self.state.lockouts.prune(now_ms());
    }

    // -----------------------------------------------------------------------------------------------------
}

/// Whether a reload gave an account other credentials: another refresh token, or another project to bill
/// (a `PERMISSION_DENIED` on a project is fixed by naming a different one). The OAuth client is the same for
/// every account and changes only with the process configuration, so it is not part of an account's identity.
fn credentials_changed(before: &AccountSpec, after: &AccountSpec) -> bool {
    before.refresh_token != after.refresh_token || before.project_id != after.project_id
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::AtomicU32;
    use std::sync::Mutex;

    use super::*;
    use crate::pool::selector::tests::account;

    fn pick(pool: &AccountPool) -> Result<Lease, SelectError> {
        pool.select(&Selection { model: "m", exclude: &[], session: None })
    }

    fn pick_for(pool: &AccountPool, session: &str) -> Result<Lease, SelectError> {
        pool.select(&Selection { model: "m", exclude: &[], session: Some(session) })
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
    fn equal_accounts_share_the_load_evenly() {
        let pool =
            AccountPool::new(&[account("a@x", None, 3), account("b@x", None, 3), account("c@x", None, 3)]);
        let mut counts: HashMap<String, u32> = HashMap::new();
        for _ in 0..300 {
            let lease = pick(&pool).unwrap();
            *counts.entry(lease.id().to_string()).or_default() += 1;
        }
        assert!(counts.values().all(|&n| n == 100), "{counts:?}");
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
            pool.select(&Selection { model: "m", exclude: &tried, session: None }).err(),
            Some(SelectError::Exhausted)
        );
        let none = AccountPool::new(&[]);
        assert_eq!(pick(&none).err(), Some(SelectError::NoAccounts));
    }

    #[test]
    fn a_locked_model_moves_to_the_next_account_and_reports_the_earliest_unlock() {
        let pool = AccountPool::new(&[account("a@x", Some("g1-ultra-tier"), 3), account("b@x", None, 3)]);
        let a = pool.accounts()[0].clone();
        let b = pool.accounts()[1].clone();
        assert!(pool.lock(&a, "m", Duration::from_secs(60), "RATE_LIMIT_EXCEEDED").is_some());
        assert_eq!(pick(&pool).unwrap().id(), "b@x");
        assert_eq!(
            pool.select(&Selection { model: "other", exclude: &[], session: None }).unwrap().id(),
            "a@x",
            "the lockout is per model"
        );
        let until_b = pool.lock(&b, "m", Duration::from_secs(30), "RATE_LIMIT_EXCEEDED").unwrap();
        assert_eq!(pick(&pool).err(), Some(SelectError::Locked { until_ms: until_b }));
    }

    #[test]
    fn project_scope_locks_the_whole_project() {
        let settings = PoolSettings { lock_scope: LockScope::Project, ..PoolSettings::default() };
        let mut a = account("a@x", None, 3);
        a.project_id = Some("p".into());
        let mut b = account("b@x", None, 3);
        b.project_id = Some("p".into());
        let pool = AccountPool::build(&[a.clone(), b, account("c@x", None, 3)], settings, None);
        pool.lock(&a, "m", Duration::from_secs(60), "QUOTA_EXHAUSTED");
        assert_eq!(pick(&pool).unwrap().id(), "c@x");
        assert_eq!(pick(&pool).unwrap().id(), "c@x");
    }

    #[test]
    fn accounts_under_the_quota_floor_are_skipped_until_the_reset() {
        let settings = PoolSettings { quota_floor: 0.2, ..PoolSettings::default() };
        let pool = AccountPool::build(
            &[account("a@x", Some("g1-ultra-tier"), 3), account("b@x", None, 3)],
            settings,
            None,
        );
        let view =
            QuotaView { remaining_fraction: 0.1, reset_ms: Some(now_ms() + 60_000), fetched_at: unix_now() };
        pool.record_quota("a@x", "m", view);
        assert_eq!(pick(&pool).unwrap().id(), "b@x");
        let past =
            QuotaView { remaining_fraction: 0.1, reset_ms: Some(now_ms() - 1), fetched_at: unix_now() };
        pool.record_quota("a@x", "m", past);
        assert_eq!(pick(&pool).unwrap().id(), "a@x", "after the reset the snapshot no longer holds");
    }

    #[test]
    fn a_model_goes_only_to_accounts_that_list_it_and_unpolled_ones_serve_all() {
        use std::collections::BTreeSet;
        let pool = AccountPool::new(&[account("a@x", Some("g1-ultra-tier"), 3), account("b@x", None, 3)]);
        let only = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let for_model = |m: &str| pool.select(&Selection { model: m, exclude: &[], session: None });
        assert_eq!(for_model("m2").unwrap().id(), "a@x", "never polled: serves anything");
        assert_eq!(pool.served_models(), None);
        pool.record_models("a@x", only(&["m1"]));
        assert_eq!(for_model("m2").unwrap().id(), "b@x");
        assert_eq!(for_model("m1").unwrap().id(), "a@x");
        pool.record_models("b@x", only(&["m2"]));
        assert_eq!(for_model("m3").err(), Some(SelectError::NoAccounts));
        assert!(!pool.can_serve("m3") && pool.can_serve("m1") && pool.can_serve("m2"));
        assert_eq!(pool.served_models(), Some(only(&["m1", "m2"])));
        pool.record_models("b@x", only(&["m2", "m3"]));
        assert_eq!(for_model("m3").unwrap().id(), "b@x", "a new model list takes effect at once");
    }

    #[test]
    fn the_fallback_key_has_its_own_cap_and_touches_no_account() {
        let pool = AccountPool::new(&[account("a@x", None, 1)]);
        let first = pool.fallback_lease(2).unwrap();
        let second = pool.fallback_lease(2).unwrap();
        assert_eq!(first.id(), FALLBACK_ID);
        assert!(pool.fallback_lease(2).is_none(), "its cap holds");
        assert_eq!(pick(&pool).unwrap().id(), "a@x", "the accounts' slots are untouched");
        drop(second);
        assert!(pool.fallback_lease(2).is_some(), "a released slot is free again");
        assert!(pool.snapshot_state().iter().all(|a| a.id != FALLBACK_ID));
    }

    #[test]
    fn an_open_breaker_takes_the_account_out() {
        let pool = AccountPool::new(&[account("a@x", Some("g1-ultra-tier"), 3), account("b@x", None, 3)]);
        let a = pool.accounts()[0].clone();
        let opened = (0..5).map(|_| pool.on_server_failure(&a)).filter(|o| *o).count();
        assert_eq!(opened, 1);
        assert_eq!(pick(&pool).unwrap().id(), "b@x");
        assert_eq!(pool.snapshot_state()[0].state, "breaker_open");
    }

    #[test]
    fn a_rest_that_ends_early_ends_at_once_for_selection() {
        let settings =
            PoolSettings { breaker_cooldown: Duration::from_millis(40), ..PoolSettings::default() };
        let pool = AccountPool::build(
            &[account("a@x", Some("g1-ultra-tier"), 3), account("b@x", None, 3)],
            settings,
            None,
        );
        let a = pool.accounts()[0].clone();
        pool.lock(&a, "m", Duration::from_secs(600), "QUOTA_EXHAUSTED");
        assert_eq!(pick(&pool).unwrap().id(), "b@x");
        assert_eq!(pick(&pool).unwrap().id(), "b@x", "a rests for the model (and is known to)");
        pool.clear_lockouts("a@x");
        assert_eq!(pick(&pool).unwrap().id(), "a@x", "an operator lifted the lockout");

        while !pool.on_server_failure(&a) {}
        std::thread::sleep(Duration::from_millis(50));
        let probe = pick(&pool).unwrap();
        assert_eq!(probe.id(), "a@x", "the half-open probe");
        assert_eq!(pick(&pool).unwrap().id(), "b@x", "one probe at a time");
        pool.on_success(&probe, None);
        assert_eq!(pick(&pool).unwrap().id(), "a@x", "the probe's success closed the breaker");
    }

    #[test]
    fn forbidden_accounts_are_skipped_until_cleared() {
        let pool = AccountPool::new(&[account("a@x", Some("g1-ultra-tier"), 3), account("b@x", None, 3)]);
        let a = pool.accounts()[0].clone();
        pool.forbid(&a, "VALIDATION_REQUIRED", Some("https://v".into()), "verify");
        assert_eq!(pick(&pool).unwrap().id(), "b@x");
        let status = &pool.snapshot_state()[0];
        assert_eq!(status.state, "forbidden");
        assert_eq!(status.forbidden.as_ref().and_then(|f| f.url.as_deref()), Some("https://v"));
        assert!(pool.clear_forbidden("a@x"));
        assert_eq!(pick(&pool).unwrap().id(), "a@x");
        assert!(pool.set_enabled("a@x", false));
        assert_eq!(pick(&pool).unwrap().id(), "b@x");
        assert!(!pool.set_enabled("nobody@x", false));
    }

    #[test]
    fn a_session_stays_on_its_account_but_a_free_higher_tier_wins() {
        let pool = AccountPool::new(&[
            account("p1@x", Some("g1-pro-tier"), 3),
            account("p2@x", Some("g1-pro-tier"), 3),
            account("ultra@x", Some("g1-ultra-tier"), 1),
        ]);
        let hold_ultra = pick(&pool).unwrap();
        assert_eq!(hold_ultra.id(), "ultra@x");
        let first = pick_for(&pool, "conv").unwrap();
        let home = first.id().to_string();
        pool.on_success(&first, Some("conv"));
        drop(first);
        // Load the home account more than the other: least-connections alone would move the session.
        let _busy = pool.select(&Selection { model: "m", exclude: &[], session: Some("conv") }).unwrap();
        for _ in 0..5 {
            let turn = pick_for(&pool, "conv").unwrap();
            assert_eq!(turn.id(), home, "the conversation stays on its account");
            pool.on_success(&turn, Some("conv"));
        }
        drop(hold_ultra);
        let turn = pick_for(&pool, "conv").unwrap();
        assert_eq!(turn.id(), "ultra@x", "a free higher tier wins over the sticky account");
    }

    #[test]
    fn a_rate_limit_moves_one_request_and_keeps_the_binding() {
        let pool = AccountPool::new(&[account("a@x", None, 3), account("b@x", None, 3)]);
        let first = pick_for(&pool, "conv").unwrap();
        let home = first.account.clone();
        pool.on_success(&first, Some("conv"));
        drop(first);
        pool.lock(&home, "m", Duration::from_millis(50), "RATE_LIMIT_EXCEEDED");
        let moved = pick_for(&pool, "conv").unwrap();
        assert_ne!(moved.id(), home.id);
        pool.on_success(&moved, Some("conv"));
        drop(moved);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(pick_for(&pool, "conv").unwrap().id(), home.id, "back home after the short rest");
        pool.lock(&home, "m", Duration::from_secs(600), "QUOTA_EXHAUSTED");
        assert_ne!(pick_for(&pool, "conv").unwrap().id(), home.id);
        assert_eq!(pool.state.affinity.account_of("conv", Instant::now()), None, "a long lockout drops it");
    }

    #[test]
    fn concurrent_reservations_never_exceed_caps() {
        let pool = Arc::new(AccountPool::new(&[account("a@x", None, 3), account("b@x", None, 2)]));
        let peak = Arc::new(AtomicU32::new(0));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let pool = pool.clone();
                let peak = peak.clone();
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        let session = format!("s{}", (t * 7 + i) % 13);
                        if let Ok(lease) = pick_for(&pool, &session) {
                            let now = lease.live.in_flight();
                            assert!(
                                now <= lease.account.max_concurrent,
                                "{} over its cap: {now}",
                                lease.id()
                            );
                            peak.fetch_max(now, Ordering::Relaxed);
                            if i % 3 == 0 {
                                pool.on_success(&lease, Some(&session));
                            }
                            if i % 50 == 0 {
                                // A reload in the middle of the storm.
                                pool.replace(&[account("a@x", None, 3), account("b@x", None, 2)]);
                            }
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

    /// Every account of the pool's index, in its order, with nothing in flight anywhere.
    fn filed(pool: &AccountPool) -> Vec<usize> {
        let selector = pool.selector();
        let mut cursor = selector.index.cursor(0, "m", 0);
        let mut order: Vec<usize> = std::iter::from_fn(|| selector.index.next(&mut cursor)).collect();
        order.sort_unstable();
        order
    }

    #[test]
    fn the_index_is_current_after_a_storm_of_leases_releases_and_reloads() {
        let table =
            [account("a@x", None, 3), account("b@x", Some("g1-pro-tier"), 2), account("c@x", None, 1)];
        let pool = Arc::new(AccountPool::new(&table));
        let threads: Vec<_> = (0..6)
            .map(|t| {
                let pool = pool.clone();
                let table = table.clone();
                std::thread::spawn(move || {
                    let mut held = Vec::new();
                    for i in 0..3000 {
                        if let Ok(lease) = pick(&pool) {
                            held.push(lease);
                        }
                        if (i + t) % 3 == 0 {
                            held.clear();
                        }
                        if i % 97 == 0 {
                            pool.replace(&table);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(filed(&pool), [0, 1, 2], "each account filed exactly once, as idle");
        assert_eq!(pick(&pool).unwrap().id(), "b@x", "and in tier order");
    }

    #[test]
    fn a_free_account_the_index_missed_is_still_leased_rather_than_answering_busy() {
        let pool = AccountPool::new(&[account("a@x", None, 1)]);
        let live = pool.live_of("a@x");
        // Filed as full, then freed behind the index's back (as a racing move could leave it for a moment).
        live.in_flight.store(1, Ordering::Relaxed);
        pool.selector().index.refile(0);
        live.in_flight.store(0, Ordering::Relaxed);
        assert!(filed(&pool).is_empty());
        let lease = pick(&pool).expect("the safety net leases it");
        assert_eq!((lease.id(), live.in_flight()), ("a@x", 1));
        drop(lease);
        assert_eq!(filed(&pool), [0], "and it is filed again");
    }

    #[test]
    fn live_state_survives_a_swap_and_removed_accounts_drain() {
        let pool = AccountPool::new(&[account("a@x", None, 1)]);
        let lease = pick(&pool).unwrap();
        pool.replace(&[account("b@x", None, 1)]);
        assert_eq!(pool.live_of("a@x").in_flight(), 1, "the removed account finishes its request");
        assert_eq!(pool.snapshot_state()[1].state, "draining");
        assert_eq!(pick(&pool).unwrap().id(), "b@x");
        assert_eq!(pick(&pool).unwrap().id(), "b@x", "and takes no new ones");
        drop(lease);
        assert_eq!(pool.live_of("a@x").in_flight(), 0);
        assert_eq!(pool.snapshot_state().len(), 1, "drained");
    }

    #[test]
    fn a_reload_clears_a_forbidden_mark_only_when_that_accounts_credentials_changed() {
        let store = Store::temporary().unwrap();
        let table = [account("a@x", None, 3), account("b@x", None, 3), account("c@x", None, 3)];
        let pool = AccountPool::with_store(&table, &PoolSettings::default(), store.clone());
        pool.forbid(&table[1], "invalid_grant", None, "revoked");
        pool.forbid(&table[2], "PERMISSION_DENIED", None, "no access");

        // Disabling A says nothing about B and C: Google still refuses them.
        let mut edited = table.clone();
        edited[0].enabled = false;
        pool.replace(&edited);
        let states: Vec<&str> = pool.snapshot_state().into_iter().map(|s| s.state).collect();
        assert_eq!(states[1], "forbidden", "{states:?}");
        assert_eq!(states[2], "forbidden", "{states:?}");
        assert_eq!(store.forbidden().unwrap().len(), 2, "the marks stay in the store too");

        // A new refresh token for B, a new project for C: those are the fixes.
        edited[1].refresh_token = crate::config::Secret::new("r-new");
        pool.replace(&edited);
        assert_eq!(pool.snapshot_state()[1].state, "ready");
        assert_eq!(pool.snapshot_state()[2].state, "forbidden");
        edited[2].project_id = Some("other-project".into());
        pool.replace(&edited);
        assert_eq!(pool.snapshot_state()[2].state, "ready");
        assert!(store.forbidden().unwrap().is_empty());
    }

    #[test]
    fn an_operators_override_survives_a_reload_that_does_not_touch_that_account() {
        let table = [account("a@x", None, 3), account("b@x", None, 3)];
        let pool = AccountPool::new(&table);
        assert!(pool.set_enabled("b@x", false));
        let mut edited = table.clone();
        edited[0].max_concurrent = 5;
        pool.replace(&edited);
        assert!(!pool.is_usable("b@x"), "an unrelated edit keeps B disabled");

        // The file now speaks about B's `enabled`: that is the newer instruction.
        edited[1].enabled = false;
        pool.replace(&edited);
        edited[1].enabled = true;
        pool.replace(&edited);
        assert!(pool.is_usable("b@x"), "the file re-enabled B");
    }

    #[test]
    fn lockouts_and_forbidden_marks_survive_a_restart() {
        let store = Store::temporary().unwrap();
        let accounts = [account("a@x", Some("g1-ultra-tier"), 3), account("b@x", None, 3)];
        {
            let pool = AccountPool::with_store(&accounts, &PoolSettings::default(), store.clone());
            pool.lock(&accounts[0], "m", Duration::from_secs(3600), "QUOTA_EXHAUSTED");
            pool.forbid(&accounts[1], "invalid_grant", None, "revoked");
        }
        let pool = AccountPool::with_store(&accounts, &PoolSettings::default(), store);
        let status = pool.snapshot_state();
        assert_eq!(status[0].lockouts[0].reason, "QUOTA_EXHAUSTED");
        assert_eq!(status[1].state, "forbidden");
        assert!(matches!(pick(&pool).err(), Some(SelectError::Locked { .. })));
    }

    #[tokio::test]
    async fn waiters_get_the_next_free_slot() {
        let pool = Arc::new(AccountPool::new(&[account("a@x", None, 1)]));
        let lease = pick(&pool).unwrap();
        let waiter = {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.select_or_wait(
                    &Selection { model: "m", exclude: &[], session: None },
                    Duration::from_secs(5),
                )
                .await
                .map(|l| l.id().to_string())
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(lease);
        assert_eq!(waiter.await.unwrap().unwrap(), "a@x");
        let held = pick(&pool).unwrap();
        let timed_out = pool
            .select_or_wait(&Selection { model: "m", exclude: &[], session: None }, Duration::from_millis(30))
            .await;
        assert_eq!(timed_out.err(), Some(SelectError::Busy));
        drop(held);
    }

    fn wait_for(
        pool: &Arc<AccountPool>,
        exclude: Vec<String>,
        max_wait: Duration,
    ) -> tokio::task::JoinHandle<Result<Lease, SelectError>> {
        let pool = pool.clone();
        tokio::spawn(async move {
            pool.select_or_wait(&Selection { model: "m", exclude: &exclude, session: None }, max_wait).await
        })
    }

    /// Yields until `n` requests are queued (each waiter queues on its first miss).
    async fn until_queued(pool: &AccountPool, n: usize) {
        for _ in 0..2000 {
            if pool.queued() == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("expected {n} queued, found {}", pool.queued());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn waiters_on_a_busy_account_are_served_in_arrival_order() {
        let pool = Arc::new(AccountPool::new(&[account("a@x", None, 1)]));
        let held = pick(&pool).unwrap();
        let served = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for n in 0..6 {
            let pool2 = pool.clone();
            let served = served.clone();
            waiters.push(tokio::spawn(async move {
                let sel = Selection { model: "m", exclude: &[], session: None };
                let lease = pool2.select_or_wait(&sel, Duration::from_secs(10)).await.unwrap();
                served.lock().unwrap().push(n);
                tokio::time::sleep(Duration::from_millis(3)).await;
                drop(lease);
            }));
            until_queued(&pool, n + 1).await;
        }
        drop(held);
        // The slot went to the head of the queue, not back to the counter: a newcomer cannot take it.
        assert_eq!(pick(&pool).err(), Some(SelectError::Busy), "a newcomer overtook the queue");
        for w in waiters {
            w.await.unwrap();
        }
        assert_eq!(*served.lock().unwrap(), [0, 1, 2, 3, 4, 5]);
        assert_eq!(pool.live_of("a@x").in_flight(), 0, "counter drift");
        assert_eq!(pool.queued(), 0);
        assert_eq!(pool.live_of("a@x").served(), 7);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiter_that_gives_up_leaves_the_queue_without_taking_a_slot() {
        let pool = Arc::new(AccountPool::new(&[account("a@x", None, 1)]));
        let held = pick(&pool).unwrap();
        let impatient = wait_for(&pool, vec![], Duration::from_millis(40));
        until_queued(&pool, 1).await;
        let patient = wait_for(&pool, vec![], Duration::from_secs(10));
        until_queued(&pool, 2).await;
        let cancelled = wait_for(&pool, vec![], Duration::from_secs(10));
        until_queued(&pool, 3).await;
        cancelled.abort();
        assert!(cancelled.await.is_err_and(|e| e.is_cancelled()));
        assert_eq!(impatient.await.unwrap().err(), Some(SelectError::Busy));
        assert_eq!(pool.queued(), 1, "the timed-out and the cancelled waiter left; the patient one stays");
        drop(held);
        let lease = patient.await.unwrap().unwrap();
        assert_eq!(lease.id(), "a@x");
        assert_eq!(pool.live_of("a@x").in_flight(), 1);
        drop(lease);
        assert_eq!(pool.live_of("a@x").in_flight(), 0, "counter drift");
        assert_eq!(pool.queued(), 0);
        assert!(pick(&pool).is_ok());
    }

    #[tokio::test]
    async fn a_released_slot_skips_waiters_that_cannot_use_that_account() {
        let pool = Arc::new(AccountPool::new(&[account("a@x", None, 1), account("b@x", None, 1)]));
        let on_a = pick(&pool).unwrap();
        let on_b = pick(&pool).unwrap();
        let (on_a, on_b) = if on_a.id() == "a@x" { (on_a, on_b) } else { (on_b, on_a) };
        let not_a = wait_for(&pool, vec!["a@x".to_string()], Duration::from_secs(10));
        until_queued(&pool, 1).await;
        let anyone = wait_for(&pool, vec![], Duration::from_secs(10));
        until_queued(&pool, 2).await;
        drop(on_a);
        assert_eq!(
            anyone.await.unwrap().unwrap().id(),
            "a@x",
            "the head excluded a@x, so the next waiter got it"
        );
        assert_eq!(pool.queued(), 1);
        drop(on_b);
        assert_eq!(not_a.await.unwrap().unwrap().id(), "b@x");
        assert_eq!(
            (pool.live_of("a@x").in_flight(), pool.live_of("b@x").in_flight(), pool.queued()),
            (0, 0, 0)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn waiting_under_churn_never_exceeds_caps_or_drifts() {
        let pool = Arc::new(AccountPool::new(&[account("a@x", None, 2), account("b@x", None, 1)]));
        let peak = Arc::new(AtomicU32::new(0));
        let tasks: Vec<_> = (0..200u64)
            .map(|i| {
                let pool = pool.clone();
                let peak = peak.clone();
                tokio::spawn(async move {
                    // Some give up almost at once, so timeouts race hand-overs.
                    let wait = Duration::from_millis(if i % 3 == 0 { 1 + i % 4 } else { 5000 });
                    let sel = Selection { model: "m", exclude: &[], session: None };
                    if let Ok(lease) = pool.select_or_wait(&sel, wait).await {
                        let now = lease.live.in_flight();
                        assert!(now <= lease.account.max_concurrent, "{} over its cap: {now}", lease.id());
                        peak.fetch_max(now, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_micros(200 * (i % 5))).await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(
            (pool.live_of("a@x").in_flight(), pool.live_of("b@x").in_flight()),
            (0, 0),
            "counter drift"
        );
        assert_eq!(pool.queued(), 0);
        assert!(peak.load(Ordering::Relaxed) >= 1);
    }

    #[tokio::test]
    async fn a_slot_of_a_removed_account_is_not_handed_on() {
        let pool = Arc::new(AccountPool::new(&[account("a@x", None, 1)]));
        let held = pick(&pool).unwrap();
        let waiter = wait_for(&pool, vec![], Duration::from_millis(200));
        until_queued(&pool, 1).await;
        pool.replace(&[account("b@x", None, 1)]);
        let lease = waiter.await.unwrap().unwrap();
        assert_eq!(lease.id(), "b@x", "the reload woke the waiter onto the new account");
        let late = wait_for(&pool, vec![], Duration::from_millis(100));
        until_queued(&pool, 1).await;
        drop(held);
        assert_eq!(pool.live_of("a@x").in_flight(), 0, "the removed account drained");
        assert_eq!(late.await.unwrap().err(), Some(SelectError::Busy), "and its slot went to no one");
        drop(lease);
        assert_eq!((pool.live_of("b@x").in_flight(), pool.queued()), (0, 0));
    }

    /// The storm case: every account busy, a waiter queued; a 429 locks one account briefly and its slot is
    /// freed while it rests, so no waiter could take it then. The waiter must be served when the rest ends,
    /// not when its own wait runs out (it used to sleep until then: a whole instance stalled for 30 s).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slot_freed_while_its_account_rests_goes_to_a_waiter_when_the_rest_ends() {
        let pool = Arc::new(AccountPool::new(&[account("a@x", None, 1), account("b@x", None, 1)]));
        let (a, b) = (pick(&pool).unwrap(), pick(&pool).unwrap());
        let waiter = wait_for(&pool, vec![], Duration::from_secs(120));
        until_queued(&pool, 1).await;
        pool.lock(&a.account, "m", Duration::from_millis(150), "RATE_LIMIT_EXCEEDED");
        let locked = a.id().to_string();
        drop(a);
        let served = tokio::time::timeout(Duration::from_secs(20), waiter).await;
        let lease = served.expect("the waiter slept past the end of the rest").unwrap().unwrap();
        assert_eq!(lease.id(), locked);
        drop((lease, b));
        assert_eq!(pool.queued(), 0);
    }

    #[tokio::test]
    async fn a_short_lockout_is_waited_out_and_a_long_one_answers_at_once() {
        let pool = AccountPool::new(&[account("a@x", None, 1)]);
        let a = pool.accounts()[0].clone();
        pool.lock(&a, "m", Duration::from_millis(40), "RATE_LIMIT_EXCEEDED");
        let started = Instant::now();
        let sel = Selection { model: "m", exclude: &[], session: None };
        assert!(pool.select_or_wait(&sel, Duration::from_secs(5)).await.is_ok());
        assert!(started.elapsed() >= Duration::from_millis(30));
        pool.lock(&a, "m", Duration::from_secs(60), "QUOTA_EXHAUSTED");
        let started = Instant::now();
        let answer = pool.select_or_wait(&sel, Duration::from_secs(5)).await;
        assert!(matches!(answer, Err(SelectError::Locked { .. })));
        assert!(started.elapsed() < Duration::from_millis(50), "no sleeping on a long lockout");
    }
}
