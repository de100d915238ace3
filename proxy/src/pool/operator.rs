//! The operator's view and actions on the pool through the admin API: the status of every account, and
//! enabling, disabling, clearing a forbidden mark or the lockouts. Each action wakes waiting selections, since
//! it can make an account usable again.

use std::sync::atomic::Ordering;

use crate::pool::live::{ADMIN_DISABLED, ADMIN_ENABLED};
use crate::pool::{events, status, AccountPool, AccountStatus};

impl AccountPool {
    /// Every account of the current table with what the pool knows about it, then the accounts a reload
    /// removed that still finish requests (state `draining`).
    pub fn snapshot_state(&self) -> Vec<AccountStatus> {
        status::snapshot_state(&self.selector.load(), &self.state)
    }

    /// The operator enables or disables an account until a reload changes that account's `enabled` in the
    /// file (the admin API writes the file too, so the two agree). Returns false for unknown ids.
    pub fn set_enabled(&self, id: &str, enabled: bool) -> bool {
        if !self.selector.load().entries.iter().any(|e| e.account.id == id) {
            return false;
        }
        let value = if enabled { ADMIN_ENABLED } else { ADMIN_DISABLED };
        self.state.live_of(id).admin_enabled.store(value, Ordering::Relaxed);
        self.state.index.load().forget_rests();
        self.state.changed.notify_waiters();
        true
    }

    /// Clears an account's forbidden mark. Returns whether there was one.
    pub fn clear_forbidden(&self, id: &str) -> bool {
        let live = self.state.live_of(id);
        let had = live.forbidden.write().ok().and_then(|mut slot| slot.take()).is_some();
        if had {
            self.events.emit(|| events::PoolEvent::Unforbidden { account: id.to_string() });
            if let Some(store) = &self.state.store {
                let _ = store.remove_forbidden(id);
            }
            self.state.index.load().forget_rests();
            self.state.changed.notify_waiters();
        }
        had
    }

    /// Lifts every lockout of an account (in memory and in the store).
    pub fn clear_lockouts(&self, id: &str) {
        for (model, _) in self.state.lockouts.of_account(id, 0) {
            if let Some(store) = &self.state.store {
                let _ = store.remove_lockout(id, &model);
            }
        }
        self.state.lockouts.clear_account(id);
        self.state.index.load().forget_rests();
        self.state.changed.notify_waiters();
    }
}
