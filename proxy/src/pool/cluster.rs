//! An account's concurrency cap split over the instances of a cluster, so the cap holds for their sum.
//!
//! Each instance admits up to its share of every account's `max_concurrent`, with no Redis call per request:
//! the shares are recomputed only when the set of live instances changes (`crate::shared` reads it from the
//! instances' heartbeats, every second). While the cluster is known, the cap is split exactly (`cap / n`,
//! the remainder going to different instances for different accounts, so no instance is left without an
//! account); while it is not (Redis down), each instance takes `cap / n` of the last known or configured
//! `n`, at least one. A crashed instance's share returns to the others once its heartbeat is older than the
//! lease (`shared_state.lease`): no cleanup is needed.

use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;

use super::AccountPool;
use crate::config::AccountSpec;

/// How this instance shares the caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Share {
    /// Alone (no cluster): the whole cap.
    Whole,
    /// One of `n` live instances, at position `rank` in their sorted ids.
    Exact { n: u32, rank: u32 },
    /// The cluster cannot be seen: an even share of `n` instances, at least one slot.
    Fallback { n: u32 },
}

impl Share {
    /// This instance's part of `cap` for the account at `position` in the table.
    pub fn of(self, cap: u32, position: usize) -> u32 {
        match self {
            Share::Whole => cap,
            Share::Exact { n, rank } if n > 1 => {
                // Rotating by position hands the remainder to different instances for different accounts.
                let turn = (rank as usize + position) % n as usize;
                cap / n + u32::from((turn as u32) < cap % n)
            }
            Share::Exact { .. } => cap,
            Share::Fallback { n } => (cap / n.max(1)).max(1),
        }
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
        let share = *self.share.lock().unwrap_or_else(PoisonError::into_inner);
        scaled(accounts, share)
    }
}

fn scaled(accounts: &[AccountSpec], share: Share) -> Vec<AccountSpec> {
    accounts
        .iter()
        .enumerate()
        .map(|(i, a)| AccountSpec { max_concurrent: share.of(a.max_concurrent, i), ..a.clone() })
        .collect()
}

impl AccountPool {
    /// Puts a new share in force (a change of the cluster's live instances); the table is re-filed with the
    /// new caps, in-flight requests keep their slots.
    pub fn set_cluster_share(&self, share: Share) {
        {
            let mut current = self.cluster.share.lock().unwrap_or_else(PoisonError::into_inner);
            if *current == share {
                return;
            }
            *current = share;
        }
        tracing::info!(?share, "account concurrency caps re-split over the cluster");
        let written = self.cluster.written.load_full();
        self.replace(&written);
    }

    pub fn cluster_share(&self) -> Share {
        *self.cluster.share.lock().unwrap_or_else(PoisonError::into_inner)
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
                    let sum: u32 = (0..n).map(|rank| Share::Exact { n, rank }.of(cap, position)).sum();
                    assert_eq!(sum, cap, "n={n} cap={cap} position={position}");
                }
            }
        }
    }

    #[test]
    fn the_remainder_goes_to_different_instances_for_different_accounts() {
        let share = |rank, position| Share::Exact { n: 3, rank }.of(1, position);
        // Three accounts of cap 1 over three instances: each instance gets one account.
        for rank in 0..3 {
            assert_eq!((0..3).map(|p| share(rank, p)).sum::<u32>(), 1, "rank {rank}");
        }
    }

    #[test]
    fn the_fallback_keeps_at_least_one_slot_and_whole_keeps_the_cap() {
        assert_eq!(Share::Fallback { n: 3 }.of(9, 0), 3);
        assert_eq!(Share::Fallback { n: 3 }.of(2, 0), 1);
        assert_eq!(Share::Whole.of(7, 3), 7);
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
}
