//! Selection as a `pingora-load-balancing` plugin: [`AccountSelector`] is a `BackendSelection` built from
//! the account table (accounts.yaml) through `build_with_config`, since Pingora's `Backend` ignores `ext` in
//! its identity and accounts share one upstream address.
//!
//! Its iterator yields, for a model, the eligible accounts (enabled, not forbidden, not locked for the model,
//! quota above the floor, breaker not open, below the concurrency cap) ordered by tier priority, then
//! in-flight count, then a rotating tie-break. The selector is immutable and swapped whole (`arc-swap`) on
//! reload; the state it reads lives in [`PoolState`].

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::net::{Ipv6Addr, SocketAddrV6};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use pingora_core::protocols::l4::socket::SocketAddr;
use pingora_load_balancing::selection::{BackendIter, BackendSelection};
use pingora_load_balancing::Backend;

use crate::config::{AccountSpec, PoolSettings};
use crate::pool::live::{tier_rank, LiveAccount};
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
    /// `tier_rank` of the YAML tier, when set: the selection ranks every account, so not per call.
    yaml_rank: Option<u8>,
}

/// The account table as a Pingora selection plugin. Immutable; rebuilt and swapped on reload.
pub struct AccountSelector {
    pub(super) entries: Vec<Entry>,
    /// Account id → index in `entries`.
    by_id: HashMap<String, usize>,
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
                let yaml_rank = spec.tier.as_deref().map(|t| tier_rank(Some(t)));
                Entry { backend, account, live, yaml_rank }
            })
            .collect::<Vec<Entry>>();
        let by_id = entries.iter().enumerate().map(|(i, e)| (e.account.id.clone(), i)).collect();
        AccountSelector { entries, by_id, state }
    }

    /// Accounts of this table, in file order.
    pub fn accounts(&self) -> impl Iterator<Item = &Arc<AccountSpec>> {
        self.entries.iter().map(|e| &e.account)
    }

    /// The account `id` if this selection may use it now (listed, not excluded, ready for the model).
    pub(super) fn eligible(&self, id: &str, selection: &Selection<'_>, now: Instant) -> Option<AccountRef> {
        if selection.exclude.iter().any(|x| x == id) {
            return None;
        }
        let e = self.entries.get(*self.by_id.get(id)?)?;
        let settings = self.state.settings.load();
        let availability =
            self.state.availability(&e.account, &e.live, selection.model, now, now_ms(), &settings);
        (availability == Availability::Ready)
            .then(|| AccountRef { account: e.account.clone(), live: e.live.clone() })
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
    /// Every account is ranked (tier, then in-flight count, then a rotating tie-break) into a heap, which is
    /// linear to build; eligibility is checked only for the accounts actually taken from it, best first, so
    /// a selection that succeeds at once does not look up lockouts, quota and breakers of the whole table.
    fn iter(self: &Arc<Self>, key: &[u8]) -> AccountIter {
        let state = &self.state;
        let n = self.entries.len().max(1) as u64;
        let spin = state.rotation.fetch_add(1, Ordering::Relaxed);
        let ranked: Vec<Reverse<(u8, u32, u64, usize)>> = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                // Rotating tie-break: accounts equal in tier and load take turns.
                let tie = (i as u64 + n - spin % n) % n;
                Reverse((PoolState::rank_with(e.yaml_rank, &e.live), e.live.in_flight(), tie, i))
            })
            .collect();
        let now = Instant::now();
        AccountIter {
            selector: self.clone(),
            model: String::from_utf8_lossy(key).into_owned(),
            settings: state.settings.load_full(),
            now,
            now_ms: now_ms(),
            order: BinaryHeap::from(ranked),
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
    order: BinaryHeap<Reverse<(u8, u32, u64, usize)>>,
}

impl AccountIter {
    /// The next eligible account, best first.
    pub(super) fn next_entry(&mut self) -> Option<&Entry> {
        let selector = &self.selector;
        while let Some(Reverse((.., index))) = self.order.pop() {
            let Some(e) = selector.entries.get(index) else { continue };
            let availability = selector.state.availability(
                &e.account,
                &e.live,
                &self.model,
                self.now,
                self.now_ms,
                &self.settings,
            );
            if availability == Availability::Ready {
                return Some(e);
            }
        }
        None
    }
}

impl BackendIter for AccountIter {
    fn next(&mut self) -> Option<&Backend> {
        self.next_entry().map(|e| &e.backend)
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
