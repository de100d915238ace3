//! An account's concurrency cap split over the instances of a cluster, so the cap holds for their sum.
//!
//! With Redis reachable, each instance holds slots of every account in a ledger there (`crate::shared::slots`):
//! once a second it asks for its fair part of each cap ([`Share::Exact`]: `cap / n` of the `n` live instances,
//! the remainder going to different instances for different accounts), or for the slots it has in use if
//! that is more, and is granted no more than the others leave free. Its local cap is what it holds
//! ([`Share::Held`]), so the sum over instances never exceeds the cap, also while instances join or leave:
//! a newcomer gets its part only as the others give theirs back, and an instance gives back a slot only once
//! its request has finished. No Redis call is made per request. A crashed instance's slots return once its
//! holding is older than the lease (`shared_state.lease`); a stopped one gives them back as it exits, once
//! nothing is in flight (`SharedState::leave`), so its replacement need not wait out the lease.
//!
//! While the cluster cannot be seen (Redis down), each instance takes `cap / n` of the last known or
//! configured `n`, at least one ([`Share::Fallback`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;

use super::AccountPool;
use crate::config::AccountSpec;

/// How this instance shares the caps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Share {
    /// Alone (no cluster): the whole cap.
    Whole,
    /// One of `n` live instances, at position `rank` in their sorted ids: the fair part it asks the ledger for.
    Exact { n: u32, rank: u32 },
    /// What the ledger granted, per account id (one of `n` live instances). An account it has not answered
    /// for yet (just added by a reload) has no slot here until the next settlement, a second at most.
    Held { n: u32, slots: Arc<HashMap<String, u32>> },
    /// The cluster cannot be seen: an even share of `n` instances, at least one slot.
    Fallback { n: u32 },
}

impl Share {
    /// This instance's part of `cap` for account `id` at `position` in the table.
    pub fn of(&self, id: &str, cap: u32, position: usize) -> u32 {
        match self {
            Share::Whole => cap,
            &Share::Exact { n, rank } if n > 1 => {
                // Rotating by position hands the remainder to different instances for different accounts.
                let turn = (rank as usize + position) % n as usize;
                cap / n + u32::from((turn as u32) < cap % n)
            }
            Share::Exact { .. } => cap,
            Share::Held { slots, .. } => slots.get(id).copied().unwrap_or(0).min(cap),
            &Share::Fallback { n } => (cap / n.max(1)).max(1),
        }
    }

    /// The number of instances the share assumes.
    pub fn instances(&self) -> u32 {
        match self {
            Share::Whole => 1,
            Share::Exact { n, .. } | Share::Held { n, .. } | Share::Fallback { n } => *n,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Share::Whole => "whole",
            Share::Exact { .. } => "even",
            Share::Held { .. } => "held",
            Share::Fallback { .. } => "fallback",
        }
    }
}

/// What this instance asks the ledger for one account: its fair part, or the slots it has in use if more
/// (a slot is given back only once its request has finished).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotWant {
    pub account: String,
    pub cap: u32,
    pub fair: u32,
    pub want: u32,
}

impl SlotWant {
    /// The local cap from the ledger's grant: never above the fair part, so slots held beyond it (from before
    /// an instance joined) take no new request and go back to the ledger as their requests finish.
    pub fn cap_from(&self, grant: u32) -> u32 {
        grant.min(self.fair)
    }
}

/// The share in force and the table as the operator wrote it (the pool's own table holds the shares).
pub(super) struct ClusterShare {
    share: Mutex<Share>,
    written: ArcSwap<Vec<AccountSpec>>,
}

impl ClusterShare {
    pub(super) fn new(accounts: &[AccountSpec]) -> Self {
        ClusterShare { share: Mutex::new(Share::Whole), written: ArcSwap::from_pointee(accounts.to_vec()) }
    }

    /// Remembers the written table and returns it with this instance's shares as caps.
    pub(super) fn apply(&self, accounts: &[AccountSpec]) -> Vec<AccountSpec> {
        self.written.store(Arc::new(accounts.to_vec()));
        let share = self.share.lock().unwrap_or_else(PoisonError::into_inner).clone();
        scaled(accounts, &share)
    }
}

fn scaled(accounts: &[AccountSpec], share: &Share) -> Vec<AccountSpec> {
    accounts
        .iter()
        .enumerate()
        .map(|(i, a)| AccountSpec { max_concurrent: share.of(&a.id, a.max_concurrent, i), ..a.clone() })
        .collect()
}

impl AccountPool {
    /// Puts a new share in force (the cluster's live instances or this instance's held slots changed); the
    /// table is re-filed with the new caps, in-flight requests keep their slots.
    pub fn set_cluster_share(&self, share: Share) {
        {
            let mut current = self.cluster.share.lock().unwrap_or_else(PoisonError::into_inner);
            if *current == share {
                return;
            }
            // Held slots change often; the log line is for a change of the cluster's shape only.
            if current.kind() != share.kind() || current.instances() != share.instances() {
                tracing::info!(
                    instances = share.instances(),
                    kind = share.kind(),
                    "account caps re-split over the cluster"
                );
            }
            *current = share;
        }
        let written = self.cluster.written.load_full();
        self.replace(&written);
    }

    /// The ids of the accounts as the operator wrote them: those with a slot ledger in the cluster.
    pub fn cluster_account_ids(&self) -> Vec<String> {
        self.cluster.written.load().iter().map(|a| a.id.clone()).collect()
    }

    /// What to ask the cluster's slot ledger for, account by account, as one of `n` live instances at `rank`.
    pub fn slot_wants(&self, n: u32, rank: u32) -> Vec<SlotWant> {
        let fair = Share::Exact { n, rank };
        let written = self.cluster.written.load();
        written
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let in_use = self.state.live_of(&a.id).in_flight();
                let part = fair.of(&a.id, a.max_concurrent, i);
                let want = part.max(in_use).min(a.max_concurrent);
                SlotWant { account: a.id.clone(), cap: a.max_concurrent, fair: part, want }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::selector::tests::account;

    #[test]
    fn exact_shares_sum_to_the_cap_for_every_account() {
        for n in 1..=5u32 {
            for cap in 0..=9u32 {
                for position in 0..4 {
                    let sum: u32 = (0..n).map(|rank| Share::Exact { n, rank }.of("a", cap, position)).sum();
                    assert_eq!(sum, cap, "n={n} cap={cap} position={position}");
                }
            }
        }
    }

    #[test]
    fn the_remainder_goes_to_different_instances_for_different_accounts() {
        let share = |rank, position| Share::Exact { n: 3, rank }.of("a", 1, position);
        // Three accounts of cap 1 over three instances: each instance gets one account.
        for rank in 0..3 {
            assert_eq!((0..3).map(|p| share(rank, p)).sum::<u32>(), 1, "rank {rank}");
        }
    }

    #[test]
    fn the_fallback_keeps_at_least_one_slot_and_whole_keeps_the_cap() {
        assert_eq!(Share::Fallback { n: 3 }.of("a", 9, 0), 3);
        assert_eq!(Share::Fallback { n: 3 }.of("a", 2, 0), 1);
        assert_eq!(Share::Whole.of("a", 7, 3), 7);
    }

    #[test]
    fn a_new_share_re_caps_the_table_and_a_reload_keeps_it() {
        let pool = AccountPool::new(&[account("a@x", None, 4), account("b@x", None, 4)]);
        pool.set_cluster_share(Share::Exact { n: 2, rank: 0 });
        let caps = |pool: &AccountPool| pool.accounts().iter().map(|a| a.max_concurrent).collect::<Vec<_>>();
        assert_eq!(caps(&pool), vec![2, 2]);
        pool.replace(&[account("a@x", None, 6), account("b@x", None, 4)]);
        assert_eq!(caps(&pool), vec![3, 2], "a reload's caps are split too");
        pool.set_cluster_share(Share::Whole);
        assert_eq!(caps(&pool), vec![6, 4]);
    }

    #[test]
    fn held_slots_are_the_caps_and_an_account_the_ledger_did_not_answer_for_has_none() {
        let pool =
            AccountPool::new(&[account("a@x", None, 4), account("b@x", None, 4), account("c@x", None, 2)]);
        let slots = Arc::new(HashMap::from([("a@x".to_string(), 3), ("b@x".to_string(), 9)]));
        pool.set_cluster_share(Share::Held { n: 2, slots });
        let caps = pool.accounts().iter().map(|a| a.max_concurrent).collect::<Vec<_>>();
        assert_eq!(caps, vec![3, 4, 0], "never above the written cap; nothing without a grant");
    }

    #[test]
    fn an_instance_asks_for_its_fair_part_or_for_what_it_has_in_use() {
        let pool = AccountPool::new(&[account("a@x", None, 4), account("b@x", None, 3)]);
        let held = [pool.select(&sel()).unwrap(), pool.select(&sel()).unwrap(), pool.select(&sel()).unwrap()];
        let in_use = |id: &str| held.iter().filter(|l| l.id() == id).count() as u32;
        let wants = pool.slot_wants(3, 0);
        // Fair parts of 4 and 3 over three instances at rank 0: 2 (the remainder's turn) and 1.
        assert_eq!(wants[0].want, 2u32.max(in_use("a@x")));
        assert_eq!(wants[1].want, 1u32.max(in_use("b@x")));
        assert_eq!((wants[0].cap, wants[1].cap), (4, 3));
        drop(held);
        let idle: Vec<u32> = pool.slot_wants(3, 0).iter().map(|w| w.want).collect();
        assert_eq!(idle, vec![2, 1], "slots no longer in use are given back");
    }

    fn sel() -> crate::pool::Selection<'static> {
        crate::pool::Selection { model: "m", exclude: &[], session: None }
    }
}
