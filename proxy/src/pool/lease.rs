//! A leased slot and the queue for one: [`Lease`] holds a slot on an account until it is dropped, and
//! [`Place`] is a request's place in the FIFO wait queue.
//!
//! When every eligible account is merely busy, `AccountPool::select_or_wait` queues the request. A released
//! [`Lease`] hands its slot straight to the longest waiter that may use that account (the in-flight count
//! never drops in between, so a newcomer cannot take it first), and only when no waiter can use it does the
//! counter go down: one wake per freed slot, served in arrival order.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use crate::config::AccountSpec;
use crate::pool::index::SelectIndex;
use crate::pool::live::{tier_rank, LiveAccount};
use crate::pool::selection::Selection;
use crate::pool::state::{Availability, Grant, PoolState, Waiter};
use crate::store::unix_now_ms as now_ms;

/// Joining and leaving the queue, and where a released slot goes.
impl PoolState {
    /// Queues a request for a slot; it keeps its place until it leaves or is handed a slot.
    pub(super) fn enqueue(self: &Arc<Self>, selection: &Selection<'_>) -> Place {
        let (sender, receiver) = oneshot::channel();
        let mut queue = self.lock_queue();
        let ticket = queue.next_ticket;
        queue.next_ticket += 1;
        queue.waiters.push_back(Waiter {
            ticket,
            model: selection.model.to_string(),
            exclude: selection.exclude.to_vec(),
            grant: sender,
        });
        Place { state: self.clone(), ticket, grant: receiver, left: false }
    }

    /// Frees one slot of an account: hands it to the longest waiter that may use the account now, else
    /// gives it back to the counter. Both happen under the queue lock, and a waiter queues before it looks
    /// for a slot, so no release can slip between a waiter's miss and its wait.
    ///
    /// A freed slot is refiled in the selection index under the same lock, so a waiter that queues after
    /// this release finds it there.
    pub(super) fn release(
        &self,
        id: &str,
        live: &Arc<LiveAccount>,
        filed: Option<&(Arc<SelectIndex>, usize)>,
    ) {
        let mut queue = self.lock_queue();
        // Nobody waiting (the usual case): the slot is simply freed, under the queue lock as always.
        if queue.waiters.is_empty() {
            live.in_flight.fetch_sub(1, Ordering::AcqRel);
            self.refile(id, filed);
            return;
        }
        let account = self.table.load().get(id).cloned();
        let mut resting = false;
        if let Some(account) = account.filter(|a| live.in_flight() <= a.max_concurrent) {
            let settings = self.settings.load();
            let now = Instant::now();
            let now_ms = now_ms();
            let mut i = 0;
            let mut admitted = false;
            while i < queue.waiters.len() {
                let waiter = &queue.waiters[i];
                let usable = !waiter.exclude.iter().any(|x| x == id)
                    && match self.availability(&account, live, &waiter.model, now, now_ms, &settings) {
                        // The slot being released is this account's own, so "at its cap" still counts.
                        Availability::Ready | Availability::Full => true,
                        Availability::Resting(_) => {
                            resting = true;
                            false
                        }
                        Availability::Unusable => false,
                    };
                if !usable {
                    i += 1;
                    continue;
                }
                // The half-open probe is claimed once, atomically, as in `select`.
                if !admitted && !live.breaker.try_admit(now, &Self::policy(&settings)) {
                    break;
                }
                admitted = true;
                let Some(waiter) = queue.waiters.remove(i) else { break };
                if waiter.grant.send(Grant { account: account.clone(), live: live.clone() }).is_ok() {
                    live.served.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                // That waiter's receiver is gone; the next one in line.
            }
        }
        live.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.refile(id, filed);
        drop(queue);
        if resting {
            // A waiter could use this slot once the account's rest ends (a 429 just locked it, say); it
            // may be asleep until its deadline, having seen only busy accounts. Waking the queue lets each
            // waiter learn of the rest and look again when it ends.
            self.changed.notify_waiters();
        }
    }
}

/// A reserved slot on one account; releasing it (drop) hands the slot to the longest waiter or frees it.
pub struct Lease {
    pub account: Arc<AccountSpec>,
    pub(super) live: Arc<LiveAccount>,
    pub(super) state: Arc<PoolState>,
    /// The index and entry the slot was taken from, so the release refiles without a lookup by id.
    pub(super) filed: Option<(Arc<SelectIndex>, usize)>,
}

impl Lease {
    /// Records what discovery said about the leased account: the tier Google reported (used when YAML names
    /// none) and the project it calls with (for `pool.lock_scope: project`).
    pub fn learn(&self, tier: Option<&str>, project: &str) {
        if self.live.learned_tier_rank.swap(tier_rank(tier), Ordering::Relaxed) != tier_rank(tier) {
            self.state.refile(&self.account.id, self.filed.as_ref());
        }
        let known = self.live.project.read().ok().is_some_and(|p| p.as_deref() == Some(project));
        if !known {
            if let Ok(mut slot) = self.live.project.write() {
                *slot = Some(project.to_string());
            }
        }
    }

    pub fn id(&self) -> &str {
        &self.account.id
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.state.release(&self.account.id, &self.live, self.filed.as_ref());
    }
}

/// A request's place in the [`WaitQueue`]. Leaving (or dropping the place, when the request is cancelled)
/// takes it out of the queue; a slot handed to it in the meantime is returned, or passed on when dropped.
pub(super) struct Place {
    state: Arc<PoolState>,
    ticket: u64,
    pub(super) grant: oneshot::Receiver<Grant>,
    pub(super) left: bool,
}

impl Place {
    /// Leaves the queue. Returns the slot handed over before it left, if one was.
    pub(super) fn leave(&mut self) -> Option<Lease> {
        if std::mem::replace(&mut self.left, true) {
            return None;
        }
        let mut queue = self.state.lock_queue();
        if let Some(i) = queue.waiters.iter().position(|w| w.ticket == self.ticket) {
            queue.waiters.remove(i);
            return None;
        }
        drop(queue);
        // Not queued any more: a release removed it and sent the grant under the same lock.
        self.grant.try_recv().ok().map(|grant| self.lease(grant))
    }

    /// A slot received while waiting.
    pub(super) fn received(&mut self, grant: Grant) -> Lease {
        self.left = true;
        self.lease(grant)
    }

    fn lease(&self, grant: Grant) -> Lease {
        Lease { account: grant.account, live: grant.live, state: self.state.clone(), filed: None }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        // A slot handed over as the request went away goes to the next waiter (the lease's drop).
        drop(self.leave());
    }
}
