//! What the pool knows about accounts' egress: which are `egress_down` (their proxy failed; unusable until
//! the probe reaches it again), and the pacing turn taken when an account is leased.
//!
//! Kept apart from selection so the egress feature is one file of the pool: the state lives in
//! [`LiveAccount`](super::live::LiveAccount), and `availability` reads it.

use crate::config::AccountSpec;
use crate::pool::{now_ms, AccountPool};

impl AccountPool {
    /// The account's proxy failed: it takes no requests until [`mark_egress_up`](Self::mark_egress_up).
    /// Returns true when this is news (the caller logs it once).
    pub fn mark_egress_down(&self, account: &AccountSpec, reason: &str) -> bool {
        let live = self.state.live_of(&account.id);
        let Ok(mut slot) = live.egress_down.write() else { return false };
        let news = slot.is_none();
        *slot = Some(reason.to_string());
        drop(slot);
        if news {
            tracing::warn!(account = %account.email, proxy = ?account.egress.as_ref().map(|p| p.to_string()), reason, "egress proxy down: account unusable until the probe reaches it");
        }
        news
    }

    /// The probe reached the account's proxy again. Returns true when the account was down.
    pub fn mark_egress_up(&self, account: &AccountSpec) -> bool {
        let live = self.state.live_of(&account.id);
        let was = live.egress_down.write().ok().and_then(|mut slot| slot.take());
        if was.is_some() {
            tracing::info!(account = %account.email, "egress proxy reachable again: account back in the pool");
            self.state.index.load().forget_rests();
            self.state.changed.notify_waiters();
        }
        was.is_some()
    }

    /// Why the account's egress is down, if it is.
    pub fn egress_down(&self, id: &str) -> Option<String> {
        self.state.live_of(id).egress_down()
    }

    /// Takes the account's pacing turn (no-op without pacing): false while its gap runs.
    pub(super) fn take_pacing_turn(&self, account: &AccountSpec) -> bool {
        if account.pacing.is_off() {
            return true;
        }
        let draw = uuid::Uuid::new_v4().as_u64_pair().0;
        let gap = account.pacing.gap(draw).as_millis() as u64;
        self.state.live_of(&account.id).try_pace(now_ms(), gap)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::egress::{EgressProxy, Pacing};
    use crate::pool::selector::tests::account;
    use crate::pool::{AccountPool, SelectError, Selection};

    fn select<'a>(exclude: &'a [String]) -> Selection<'a> {
        Selection { model: "gemini-3-flash", exclude, session: None }
    }

    #[test]
    fn an_egress_down_account_is_skipped_until_it_is_up_again() {
        let mut a = account("a@x.com", None, 4);
        a.egress = Some(Arc::new(EgressProxy::parse("socks5://127.0.0.1:9", None).unwrap()));
        let b = account("b@x.com", None, 4);
        let pool = AccountPool::new(&[a.clone(), b]);
        assert!(pool.mark_egress_down(&a, "refused"));
        assert!(!pool.mark_egress_down(&a, "refused again"), "told once");
        for _ in 0..4 {
            assert_eq!(pool.select(&select(&[])).unwrap().account.id, "b@x.com");
        }
        assert!(!pool.is_usable("a@x.com"), "no quota polls through a dead proxy");
        let state = pool.snapshot_state();
        let shown = state.iter().find(|s| s.id == "a@x.com").unwrap();
        assert_eq!(shown.state, "egress_down");
        assert_eq!(shown.egress_down.as_deref(), Some("refused again"));
        assert_eq!(shown.egress.as_deref(), Some("socks5://127.0.0.1:9"));
        let only_a = vec!["b@x.com".to_string()];
        assert!(matches!(
            pool.select(&select(&only_a)),
            Err(SelectError::Exhausted | SelectError::NoAccounts)
        ));
        assert!(pool.mark_egress_up(&a));
        assert_eq!(pool.select(&select(&only_a)).unwrap().account.id, "a@x.com");
        assert!(pool.is_usable("a@x.com"));
    }

    #[test]
    fn a_reload_that_changes_the_proxy_lifts_egress_down_and_one_that_does_not_keeps_it() {
        let mut a = account("a@x.com", None, 4);
        a.egress = Some(Arc::new(EgressProxy::parse("socks5://127.0.0.1:9", None).unwrap()));
        let pool = AccountPool::new(std::slice::from_ref(&a));
        pool.mark_egress_down(&a, "refused");
        pool.replace(std::slice::from_ref(&a));
        assert!(pool.egress_down("a@x.com").is_some(), "same proxy: still down");
        a.egress = Some(Arc::new(EgressProxy::parse("http://127.0.0.1:3128", None).unwrap()));
        pool.replace(std::slice::from_ref(&a));
        assert!(pool.egress_down("a@x.com").is_none(), "a new proxy is tried");
    }

    #[test]
    fn a_paced_account_gives_way_to_another_between_its_calls() {
        let mut a = account("a@x.com", Some("g1-ultra-tier"), 4);
        a.pacing = Pacing { min_interval: Duration::from_secs(600), jitter: Duration::ZERO };
        let b = account("b@x.com", None, 4);
        let pool = AccountPool::new(&[a, b]);
        // a is preferred (better tier) and takes its turn; within its gap the next requests go to b even
        // though a has free slots.
        let first = pool.select(&select(&[])).unwrap();
        assert_eq!(first.account.id, "a@x.com");
        drop(first);
        for _ in 0..3 {
            assert_eq!(pool.select(&select(&[])).unwrap().account.id, "b@x.com");
        }
        let only_a = vec!["b@x.com".to_string()];
        match pool.select(&select(&only_a)) {
            Err(SelectError::Locked { until_ms }) => assert!(until_ms > crate::pool::now_ms()),
            other => {
                panic!("expected the paced account to rest, got {:?}", other.map(|l| l.account.id.clone()))
            }
        }
    }
}
