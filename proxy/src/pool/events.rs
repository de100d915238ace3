//! What the pool learns that other instances of a cluster must know too: lockouts, forbidden marks and
//! quota snapshots, as events.
//!
//! The pool emits them to a sink (set by the composition root when `shared_state` is configured; none
//! otherwise) and applies the ones other instances learned through [`AccountPool::apply_remote`], which
//! never emits again, so an event does not travel in circles. The pool knows nothing of Redis.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::quota::QuotaView;
use super::{AccountPool, PERSIST_LOCKOUTS_FROM};
use crate::store::{ForbiddenRecord, LockoutRecord, QuotaRecord};

/// One change of an account's shared state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PoolEvent {
    Lockout(LockoutRecord),
    Forbidden {
        account: String,
        record: ForbiddenRecord,
    },
    Unforbidden {
        account: String,
    },
    Quota(QuotaRecord),
    /// An account's breaker opened (5xx or dropped connections); others rest it until `until_ms` too.
    BreakerOpened {
        account: String,
        until_ms: u64,
    },
}

/// Where events go.
pub type EventSink = Box<dyn Fn(PoolEvent) + Send + Sync>;

/// The pool's sink, set once.
#[derive(Default)]
pub(super) struct Events(OnceLock<EventSink>);

impl Events {
    pub(super) fn emit(&self, event: impl FnOnce() -> PoolEvent) {
        if let Some(sink) = self.0.get() {
            sink(event());
        }
    }

    pub(super) fn emit_if(&self, happened: bool, event: impl FnOnce() -> PoolEvent) {
        if happened {
            self.emit(event);
        }
    }
}

pub(super) fn lockout_event(account: &str, model: &str, until_ms: u64, reason: &str) -> PoolEvent {
    PoolEvent::Lockout(LockoutRecord {
        account: account.into(),
        model: model.into(),
        until_ms,
        reason: reason.into(),
    })
}

pub(super) fn breaker_event(account: &str, cooldown: std::time::Duration) -> PoolEvent {
    let until_ms = crate::store::unix_now_ms() + cooldown.as_millis() as u64;
    PoolEvent::BreakerOpened { account: account.into(), until_ms }
}

pub(super) fn quota_event(account: &str, model: &str, view: &QuotaView) -> PoolEvent {
    PoolEvent::Quota(QuotaRecord {
        account: account.into(),
        model: model.into(),
        remaining_fraction: view.remaining_fraction,
        reset_ms: view.reset_ms,
        fetched_at: view.fetched_at,
    })
}

impl AccountPool {
    /// Sends what this pool learns to `sink` from now on (once; later calls are ignored).
    pub fn set_event_sink(&self, sink: EventSink) {
        let _ = self.events.0.set(sink);
    }

    /// Applies what another instance learned, as if learned here, without emitting it again.
    pub fn apply_remote(&self, event: PoolEvent) {
        let store = self.state.store.as_ref();
        match event {
            PoolEvent::Lockout(r) => {
                let now = crate::store::unix_now_ms();
                if r.until_ms > now && self.state.lockouts.lock(&r.account, &r.model, r.until_ms, &r.reason) {
                    tracing::debug!(account = %r.account, model = %r.model, "lockout learned from the cluster");
                    if r.until_ms - now >= PERSIST_LOCKOUTS_FROM.as_millis() as u64 {
                        let _ = store.map(|s| s.put_lockout(&r));
                    }
                }
            }
            PoolEvent::Forbidden { account, record } => {
                let live = self.state.live_of(&account);
                if let Ok(mut slot) = live.forbidden.write() {
                    if slot.as_ref().is_some_and(|r| r.reason == record.reason) {
                        return;
                    }
                    *slot = Some(record.clone());
                }
                tracing::warn!(account, reason = %record.reason, "account forbidden (learned from the cluster)");
                let _ = store.map(|s| s.put_forbidden(&account, &record));
            }
            PoolEvent::Unforbidden { account } => {
                let live = self.state.live_of(&account);
                if live.forbidden.write().ok().and_then(|mut slot| slot.take()).is_some() {
                    let _ = store.map(|s| s.remove_forbidden(&account));
                    self.state.index.load().forget_rests();
                    self.state.changed.notify_waiters();
                }
            }
            PoolEvent::BreakerOpened { account, until_ms } => {
                if until_ms > crate::store::unix_now_ms()
                    && self.state.live_of(&account).breaker.open_from_cluster(std::time::Instant::now())
                {
                    tracing::info!(account, "breaker opened (learned from the cluster)");
                }
            }
            PoolEvent::Quota(r) => {
                let view = QuotaView {
                    remaining_fraction: r.remaining_fraction,
                    reset_ms: r.reset_ms,
                    fetched_at: r.fetched_at,
                };
                let newer =
                    self.state.quotas.view(&r.account, &r.model).is_none_or(|v| v.fetched_at <= r.fetched_at);
                if newer {
                    self.state.quotas.record(&r.account, &r.model, view);
                    self.state.index.load().forget_rests();
                    let _ = store.map(|s| s.put_quota(&r));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::pool::state::PoolState;

    fn pool() -> AccountPool {
        AccountPool::new(&[crate::pool::selector::tests::account("a@example.com", None, 2)])
    }

    /// A pool whose emitted events are collected.
    fn watched_pool() -> (AccountPool, Arc<Mutex<Vec<PoolEvent>>>) {
        let pool = pool();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        pool.set_event_sink(Box::new(move |e| sink.lock().unwrap().push(e)));
        (pool, seen)
    }

    #[test]
    fn what_the_pool_learns_is_emitted_and_what_it_is_told_is_not() {
        let (pool, seen) = watched_pool();
        let account = pool.accounts()[0].clone();
        pool.lock(&account, "m", std::time::Duration::from_secs(30), "quota");
        assert!(matches!(seen.lock().unwrap().as_slice(), [PoolEvent::Lockout(r)] if r.model == "m"));

        let until_ms = crate::store::unix_now_ms() + 30_000;
        let told =
            LockoutRecord { account: account.id.clone(), model: "n".into(), until_ms, reason: "q".into() };
        pool.apply_remote(PoolEvent::Lockout(told));
        assert_eq!(seen.lock().unwrap().len(), 1, "a remote event is not sent back");
        assert_eq!(pool.state.lockouts.until(&account.id, "n", until_ms - 1), Some(until_ms));
    }

    #[test]
    fn a_breaker_opened_here_is_emitted_and_one_opened_elsewhere_rests_the_account_here() {
        let (pool, seen) = watched_pool();
        let account = pool.accounts()[0].clone();
        let mut failures = 0;
        while !pool.on_server_failure(&account) {
            failures += 1;
            assert!(failures < 100, "the breaker never opened");
        }
        assert!(
            matches!(seen.lock().unwrap().as_slice(), [PoolEvent::BreakerOpened { account: a, .. }] if *a == account.id)
        );

        let other = AccountPool::new(&[crate::pool::selector::tests::account("a@example.com", None, 2)]);
        let until_ms = crate::store::unix_now_ms() + 30_000;
        other.apply_remote(PoolEvent::BreakerOpened { account: account.id.clone(), until_ms });
        let live = other.state.live_of(&account.id);
        assert!(live
            .breaker
            .blocked_until(std::time::Instant::now(), &PoolState::policy(&other.state.settings.load()))
            .is_some());
    }

    #[test]
    fn expired_remote_lockouts_and_older_quotas_change_nothing() {
        let pool = pool();
        let id = pool.accounts()[0].id.clone();
        let past = LockoutRecord { account: id.clone(), model: "m".into(), until_ms: 1, reason: "q".into() };
        pool.apply_remote(PoolEvent::Lockout(past));
        assert_eq!(pool.state.lockouts.until(&id, "m", 0), None);

        let quota = |fraction, at| QuotaRecord {
            account: id.clone(),
            model: "m".into(),
            remaining_fraction: fraction,
            reset_ms: None,
            fetched_at: at,
        };
        pool.apply_remote(PoolEvent::Quota(quota(0.5, 20)));
        pool.apply_remote(PoolEvent::Quota(quota(0.9, 10)));
        assert_eq!(pool.state.quotas.view(&id, "m").map(|v| v.remaining_fraction), Some(0.5));
    }

    #[test]
    fn events_travel_as_tagged_json() {
        let event = PoolEvent::Unforbidden { account: "a".into() };
        let text = serde_json::to_string(&event).unwrap();
        assert_eq!(text, r#"{"kind":"unforbidden","account":"a"}"#);
        assert_eq!(serde_json::from_str::<PoolEvent>(&text).unwrap(), event);
    }
}
