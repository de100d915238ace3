//! Selection as a `pingora-load-balancing` plugin: [`AccountSelector`] is a `BackendSelection` built from
//! the account table (accounts.yaml) through `build_with_config`, since Pingora's `Backend` ignores `ext` in
//! its identity and accounts share one upstream address.
//!
//! Its iterator yields, for a model, the eligible accounts (enabled, not forbidden, not locked for the model,
//! quota above the floor, breaker not open, below the concurrency cap) ordered by tier priority, then
//! in-flight count, then a rotating tie-break. The order is read from the table's [`SelectIndex`], kept current
//! on every lease and release, so an iterator costs the buckets it looks at, not the table. The selector is
//! immutable and swapped whole (`arc-swap`) on reload; the state it reads lives in [`PoolState`].

use std::collections::{BTreeSet, HashMap};
use std::net::{Ipv6Addr, SocketAddrV6};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use pingora_core::protocols::l4::socket::SocketAddr;
use pingora_load_balancing::selection::{BackendIter, BackendSelection};
use pingora_load_balancing::Backend;

use crate::config::{AccountSpec, PoolSettings};
use crate::pool::index::{Cursor, SelectIndex};
use crate::pool::live::LiveAccount;
use crate::pool::selection::Selection;
use crate::pool::state::{Availability, PoolState};
use crate::store::unix_now_ms as now_ms;

/// What the selector hands out in each `Backend::ext`: the account and its live state.
#[derive(Clone)]
pub struct AccountRef {
    pub account: Arc<AccountSpec>,
    pub live: Arc<LiveAccount>,
}

pub(super) struct Entry {
    pub(super) backend: Backend,
    pub(super) account: Arc<AccountSpec>,
    pub(super) live: Arc<LiveAccount>,
}

/// The account table as a Pingora selection plugin. Immutable; rebuilt and swapped on reload.
pub struct AccountSelector {
    pub(super) entries: Vec<Entry>,
    /// Account id → index in `entries`.
    by_id: HashMap<String, usize>,
    /// The entries by tier and load, kept current by leases and releases.
    pub(super) index: Arc<SelectIndex>,
    state: Arc<PoolState>,
}

/// `build_with_config`'s input: the accounts and the state they share across tables.
pub struct SelectorConfig {
    pub accounts: Vec<AccountSpec>,
    pub state: Arc<PoolState>,
}

impl AccountSelector {
    pub(super) fn from_accounts(accounts: &[AccountSpec], state: Arc<PoolState>) -> Self {
        let entries = accounts
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let account = Arc::new(spec.clone());
                let live = state.live_of(&spec.id);
                // The address is only an identity for Pingora's sets: where requests go is the endpoint list.
                let addr = SocketAddrV6::new(Ipv6Addr::from(i as u128 + 1), 0, 0, 0);
                let mut backend =
                    Backend { addr: SocketAddr::Inet(addr.into()), weight: 1, ext: Default::default() };
                backend.ext.insert(AccountRef { account: account.clone(), live: live.clone() });
                Entry { backend, account, live }
            })
            .collect::<Vec<Entry>>();
        let by_id = entries.iter().enumerate().map(|(i, e)| (e.account.id.clone(), i)).collect();
        let pairs: Vec<_> = entries.iter().map(|e| (e.account.clone(), e.live.clone())).collect();
        let index = Arc::new(SelectIndex::new(&pairs));
        AccountSelector { entries, by_id, index, state }
    }

    /// Accounts of this table, in file order.
    pub fn accounts(&self) -> impl Iterator<Item = &Arc<AccountSpec>> {
        self.entries.iter().map(|e| &e.account)
    }

    /// The entry of account `id` if this selection may use it now (listed, not excluded, ready for the
    /// model).
    pub(super) fn eligible(
        &self,
        id: &str,
        selection: &Selection<'_>,
        now: Instant,
        now_ms: u64,
        settings: &PoolSettings,
    ) -> Option<usize> {
        if selection.exclude.iter().any(|x| x == id) {
            return None;
        }
        let pos = *self.by_id.get(id)?;
        let e = self.entries.get(pos)?;
        let availability =
            self.state.availability(&e.account, &e.live, selection.model, now, now_ms, settings);
        (availability == Availability::Ready).then_some(pos)
    }

    /// The eligible entries for `model`, best first, without the plugin's owned iterator (the pool's own
    /// selection borrows what it already holds).
    pub(super) fn scan<'a>(
        &'a self,
        model: &'a str,
        now: Instant,
        now_ms: u64,
        settings: &'a PoolSettings,
    ) -> Scan<'a> {
        Scan { selector: self, model, now, now_ms, settings, cursor: self.cursor(model, now_ms) }
    }

    /// A cursor whose ties start one entry further on each time: accounts equal in tier and load take turns.
    fn cursor(&self, model: &str, now_ms: u64) -> Cursor {
        let n = self.entries.len().max(1) as u64;
        let spin = self.state.rotation.fetch_add(1, Ordering::Relaxed);
        self.index.cursor((spin % n) as usize, model, now_ms)
    }

    /// The next entry after `cursor` that is ready for `model`. One found resting or unusable for the model
    /// goes into its rest mask, so the next scans of the model pass it by.
    fn next_ready(
        &self,
        cursor: &mut Cursor,
        model: &str,
        now: Instant,
        now_ms: u64,
        settings: &PoolSettings,
    ) -> Option<usize> {
        while let Some(pos) = self.index.next(cursor) {
            let Some(e) = self.entries.get(pos) else { continue };
            match self.state.availability(&e.account, &e.live, model, now, now_ms, settings) {
                Availability::Ready => return Some(pos),
                Availability::Resting(until_ms) => self.index.rest(cursor, model, pos, until_ms),
                Availability::Unusable => self.index.rest(cursor, model, pos, u64::MAX),
                Availability::Full => {}
            }
        }
        None
    }
}

/// The eligible entries for one model, best first (see [`AccountSelector::scan`]).
pub(super) struct Scan<'a> {
    selector: &'a AccountSelector,
    model: &'a str,
    now: Instant,
    now_ms: u64,
    settings: &'a PoolSettings,
    cursor: Cursor,
}

impl Scan<'_> {
    pub(super) fn next_pos(&mut self) -> Option<usize> {
        self.selector.next_ready(&mut self.cursor, self.model, self.now, self.now_ms, self.settings)
    }
}

impl BackendSelection for AccountSelector {
    type Iter = AccountIter;
    type Config = SelectorConfig;

    fn build_with_config(_backends: &BTreeSet<Backend>, config: &SelectorConfig) -> Self {
        Self::from_accounts(&config.accounts, config.state.clone())
    }

    /// Accounts cannot be told apart by address, so a selector built from bare backends is empty.
    fn build(_backends: &BTreeSet<Backend>) -> Self {
        Self::from_accounts(&[], Arc::new(PoolState::new(PoolSettings::default(), None)))
    }

    /// `key` is the upstream model: eligibility depends on it (lockouts and quota are per model).
    ///
    /// The order comes from the table's index (tier, then in-flight count, then a rotating tie-break);
    /// eligibility is checked only for the accounts actually taken from it, best first.
    fn iter(self: &Arc<Self>, key: &[u8]) -> AccountIter {
        let model = String::from_utf8_lossy(key).into_owned();
        let now_ms = now_ms();
        AccountIter {
            selector: self.clone(),
            settings: self.state.settings.load_full(),
            now: Instant::now(),
            now_ms,
            cursor: self.cursor(&model, now_ms),
            model,
        }
    }
}

/// The eligible accounts for one model, best first.
pub struct AccountIter {
    selector: Arc<AccountSelector>,
    model: String,
    settings: Arc<PoolSettings>,
    now: Instant,
    now_ms: u64,
    cursor: Cursor,
}

impl BackendIter for AccountIter {
    fn next(&mut self) -> Option<&Backend> {
        let pos =
            self.selector.next_ready(&mut self.cursor, &self.model, self.now, self.now_ms, &self.settings)?;
        self.selector.entries.get(pos).map(|e| &e.backend)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::config::Secret;

    /// An enabled account for tests: id and email `email`, the given tier and concurrency cap.
    pub(in crate::pool) fn account(email: &str, tier: Option<&str>, cap: u32) -> AccountSpec {
        AccountSpec {
            id: email.to_string(),
            email: email.to_string(),
            refresh_token: Secret::new("r"),
            project_id: None,
            tier: tier.map(str::to_string),
            enabled: true,
            max_concurrent: cap,
            egress: None,
            pacing: Default::default(),
        }
    }

    #[test]
    fn the_plugin_orders_by_tier_then_load_through_pingoras_traits() {
        let state = Arc::new(PoolState::new(PoolSettings::default(), None));
        let config = SelectorConfig {
            accounts: vec![
                account("free@x", Some("free-tier"), 2),
                account("pro@x", Some("g1-pro-tier"), 2),
                account("biz@x", Some("ws-ai-ultra-business-tier"), 2),
                account("ultra@x", Some("g1-ultra-tier"), 2),
            ],
            state: state.clone(),
        };
        let selector = Arc::new(AccountSelector::build_with_config(&BTreeSet::new(), &config));
        state.live_of("biz@x").in_flight.store(2, Ordering::Relaxed); // at its cap: not eligible
        let mut iter = selector.iter(b"m");
        let mut order = Vec::new();
        while let Some(backend) = iter.next() {
            order.push(backend.ext.get::<AccountRef>().map(|r| r.account.id.clone()).unwrap_or_default());
        }
        assert_eq!(order, ["ultra@x", "pro@x", "free@x"]);
        assert!(Arc::new(AccountSelector::build(&BTreeSet::new())).iter(b"m").next().is_none());
    }
}
