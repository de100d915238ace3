//! The selection index: every account of a table filed by (tier rank, in-flight count), kept current on lease
//! and release, so a selection reads the best non-empty bucket instead of ranking the whole table.
//!
//! A bucket is a bitset over the table's entries (1,000 accounts are 16 words) with a count of its members;
//! an account at its cap is filed in no scanned bucket at all, so a full tier costs a few counter reads. The
//! order a selection sees is the order the table used to be ranked in: tier rank, then in-flight count, then
//! a rotating tie-break (entries from a rotating start, cyclically, which is what the old `(i - spin) mod n`
//! key sorted by). What cannot be filed ahead of time (disabled, forbidden, locked or under its quota floor for
//! the model, breaker open, already tried) is still checked lazily, only for the candidates actually taken.
//!
//! A scan that finds an account resting for its model (locked, under its quota floor, breaker open) or unusable
//! (disabled, forbidden) marks it in that model's rest mask, which later scans of the model skip word by word,
//! so a best tier whose quota is gone for one model is not checked account by account on every selection. A
//! mask lifts by itself when the earliest rest in it ends (its accounts are then checked again, lazily), and
//! at once when the pool learns something that may end a rest early ([`SelectIndex::forget_rests`]).
//!
//! Readers never lock: they scan the bitsets with atomic loads. Writers ([`SelectIndex::refile`]) serialise on
//! one mutex held for a few atomic operations, and always file an account by its counter as read under that
//! mutex, so after the last change of a counter its account sits in exactly the right bucket (an account
//! being moved is briefly in both buckets, never in none). Callers refile after every change of an in-flight
//! count or a learned tier; the release path does it under the queue lock so a waiter that queued after a
//! release finds the freed slot.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use crate::config::{AccountSpec, UNKNOWN_TIER_RANK};
use crate::pool::live::{tier_rank, LiveAccount};

/// In-flight counts from this one up share the last bucket of a rank (rotating among themselves): it keeps
/// the index small when a cap is huge, and no real account runs that many requests at once.
const MAX_LEVELS: usize = 128;
/// Tier ranks are 0..=UNKNOWN_TIER_RANK.
const RANKS: usize = UNKNOWN_TIER_RANK as usize + 1;
/// `placed` of an account filed in no scanned bucket (at its cap, or not filed yet).
const UNFILED: u32 = u32::MAX;

/// One account of the table as the index sees it.
struct Slot {
    live: Arc<LiveAccount>,
    cap: u32,
    /// `tier_rank` of the YAML tier, when set (else the learned one is read at each refile).
    yaml_rank: Option<u8>,
    /// The bucket the account is filed in (`rank * levels + level`), or [`UNFILED`]. Written under `writer`.
    placed: AtomicU32,
}

/// A set of entries (a bitset over entry positions) and how many it holds.
struct Bucket {
    words: Box<[AtomicU64]>,
    members: AtomicU32,
}

/// The entries a scan found resting or unusable for one model, and when the earliest of those rests ends.
pub(super) struct RestMask {
    words: Box<[AtomicU64]>,
    /// Unix milliseconds the earliest rest in the mask ends at (`u64::MAX`: only unusable accounts).
    until_ms: AtomicU64,
}

/// The index of one account table.
pub(super) struct SelectIndex {
    slots: Vec<Slot>,
    by_id: HashMap<String, usize>,
    /// Levels per rank: in-flight counts 0..levels are scanned (the last one also holds larger counts).
    levels: usize,
    /// `RANKS * levels` buckets, rank-major.
    buckets: Vec<Bucket>,
    writer: Mutex<()>,
    /// Rest masks by model; `any_rests` spares the common case (nothing resting) the map lookup.
    rests: RwLock<HashMap<String, Arc<RestMask>>>,
    any_rests: AtomicBool,
}

impl SelectIndex {
    /// An index over `accounts` (in table order, with their live state), each filed by its counters now.
    pub(super) fn new(accounts: &[(Arc<AccountSpec>, Arc<LiveAccount>)]) -> Self {
        let max_cap = accounts.iter().map(|(a, _)| a.max_concurrent as usize).max().unwrap_or(0);
        let levels = max_cap.clamp(1, MAX_LEVELS);
        let words = accounts.len().div_ceil(64).max(1);
        let buckets = (0..RANKS * levels)
            .map(|_| Bucket {
                words: (0..words).map(|_| AtomicU64::new(0)).collect(),
                members: AtomicU32::new(0),
            })
            .collect();
        let slots = accounts
            .iter()
            .map(|(account, live)| Slot {
                live: live.clone(),
                cap: account.max_concurrent,
                yaml_rank: account.tier.as_deref().map(|t| tier_rank(Some(t))),
                placed: AtomicU32::new(UNFILED),
            })
            .collect();
        let by_id = accounts.iter().enumerate().map(|(i, (a, _))| (a.id.clone(), i)).collect();
        let index = SelectIndex {
            slots,
            by_id,
            levels,
            buckets,
            writer: Mutex::new(()),
            rests: RwLock::new(HashMap::new()),
            any_rests: AtomicBool::new(false),
        };
        index.refile_all();
        index
    }

    /// The entry position of account `id` in this table.
    pub(super) fn position(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    /// The tier rank entry `pos` is ordered by now.
    pub(super) fn rank(&self, pos: usize) -> usize {
        self.slots.get(pos).map_or(RANKS, Self::rank_of)
    }

    /// The rank an account is ordered by: its YAML tier, else the tier Google reported, else unknown.
    fn rank_of(slot: &Slot) -> usize {
        let rank =
            slot.yaml_rank.unwrap_or_else(|| match slot.live.learned_tier_rank.load(Ordering::Relaxed) {
                u8::MAX => tier_rank(None),
                learned => learned,
            });
        (rank as usize).min(RANKS - 1)
    }

    /// Files the account at `pos` by its counters now. Call after every change of its in-flight count or
    /// learned tier.
    pub(super) fn refile(&self, pos: usize) {
        let Some(slot) = self.slots.get(pos) else { return };
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let in_flight = slot.live.in_flight();
        let target = if in_flight >= slot.cap {
            UNFILED
        } else {
            (Self::rank_of(slot) * self.levels + (in_flight as usize).min(self.levels - 1)) as u32
        };
        let placed = slot.placed.load(Ordering::Relaxed);
        if placed == target {
            return;
        }
        let (word, bit) = (pos / 64, 1u64 << (pos % 64));
        // Into the new bucket first, then out of the old: a reader may meet the account twice, never miss it.
        if let Some(bucket) = self.buckets.get(target as usize) {
            bucket.words[word].fetch_or(bit, Ordering::Release);
            bucket.members.fetch_add(1, Ordering::Release);
        }
        if let Some(bucket) = self.buckets.get(placed as usize) {
            bucket.members.fetch_sub(1, Ordering::Release);
            bucket.words[word].fetch_and(!bit, Ordering::Release);
        }
        slot.placed.store(target, Ordering::Relaxed);
    }

    /// Files every account by its counters now (after the table is installed, to take in releases that
    /// went to the previous table's index while this one was being built).
    pub(super) fn refile_all(&self) {
        for pos in 0..self.slots.len() {
            self.refile(pos);
        }
    }

    /// A cursor over the filed accounts, best first, ties starting at entry `start`, skipping the accounts
    /// known to rest for `model` at `now_ms`.
    pub(super) fn cursor(&self, start: usize, model: &str, now_ms: u64) -> Cursor {
        let mask = if self.any_rests.load(Ordering::Acquire) { self.rest_mask(model, now_ms) } else { None };
        Cursor { bucket: 0, step: 0, bits: 0, start: start % self.slots.len().max(1), fresh: true, mask }
    }

    /// The model's rest mask, unless its earliest rest has ended (then it is dropped, to be learned again).
    fn rest_mask(&self, model: &str, now_ms: u64) -> Option<Arc<RestMask>> {
        let mask = self.rests.read().unwrap_or_else(PoisonError::into_inner).get(model).cloned()?;
        if mask.until_ms.load(Ordering::Acquire) > now_ms {
            return Some(mask);
        }
        let mut rests = self.rests.write().unwrap_or_else(PoisonError::into_inner);
        if rests.get(model).is_some_and(|m| Arc::ptr_eq(m, &mask)) {
            rests.remove(model);
        }
        None
    }

    /// Marks entry `pos` as resting for `model` until `until_ms` (`u64::MAX`: unusable until the pool
    /// learns otherwise), so later scans of that model skip it.
    pub(super) fn rest(&self, cursor: &mut Cursor, model: &str, pos: usize, until_ms: u64) {
        let (word, bit) = (pos / 64, 1u64 << (pos % 64));
        let mask = match &cursor.mask {
            Some(mask) => mask.clone(),
            None => {
                let mut rests = self.rests.write().unwrap_or_else(PoisonError::into_inner);
                let words = self.buckets.first().map_or(1, |b| b.words.len());
                let mask = rests
                    .entry(model.to_string())
                    .or_insert_with(|| {
                        Arc::new(RestMask {
                            words: (0..words).map(|_| AtomicU64::new(0)).collect(),
                            until_ms: AtomicU64::new(u64::MAX),
                        })
                    })
                    .clone();
                self.any_rests.store(true, Ordering::Release);
                cursor.mask = Some(mask.clone());
                mask
            }
        };
        // The deadline first: a reader that sees the bit sees a deadline no later than this rest's end.
        mask.until_ms.fetch_min(until_ms, Ordering::AcqRel);
        if let Some(w) = mask.words.get(word) {
            w.fetch_or(bit, Ordering::Release);
        }
    }

    /// Drops every rest mask: the pool learned something that may end a rest early (an operator's action,
    /// a quota snapshot, new settings, a breaker closed).
    pub(super) fn forget_rests(&self) {
        if self.any_rests.swap(false, Ordering::AcqRel) {
            self.rests.write().unwrap_or_else(PoisonError::into_inner).clear();
        }
    }

    /// The next filed entry position after `cursor`, best bucket first; each bucket is scanned once, from
    /// the cursor's start round to just before it. An account moved between buckets during the scan may come
    /// twice or be missed (as it may be with any snapshot); the caller checks what it takes.
    pub(super) fn next(&self, cursor: &mut Cursor) -> Option<usize> {
        let words = self.buckets.first()?.words.len();
        let (start_word, start_bit) = (cursor.start / 64, cursor.start % 64);
        loop {
            if cursor.bits != 0 {
                let bit = cursor.bits.trailing_zeros() as usize;
                cursor.bits &= cursor.bits - 1;
                let word = (start_word + cursor.step - 1) % words;
                return Some(word * 64 + bit);
            }
            let bucket = self.buckets.get(cursor.bucket)?;
            if cursor.fresh {
                cursor.fresh = false;
                if bucket.members.load(Ordering::Acquire) == 0 {
                    cursor.bucket += 1;
                    cursor.fresh = true;
                    continue;
                }
            }
            // Steps 1..=words+1 read words start_word, start_word+1, ... and start_word again: the bits at and
            // after the start first, the bits before it last.
            if cursor.step > words {
                cursor.bucket += 1;
                cursor.step = 0;
                cursor.fresh = true;
                continue;
            }
            let word = (start_word + cursor.step) % words;
            let mut bits = bucket.words[word].load(Ordering::Acquire);
            if let Some(mask) = &cursor.mask {
                bits &= !mask.words[word].load(Ordering::Acquire);
            }
            if cursor.step == 0 {
                bits &= u64::MAX << start_bit;
            } else if cursor.step == words {
                bits &= !(u64::MAX << start_bit);
            }
            cursor.step += 1;
            cursor.bits = bits;
        }
    }
}

/// Where a scan of the index stands.
pub(super) struct Cursor {
    bucket: usize,
    /// Words of the current bucket read so far.
    step: usize,
    /// Bits of the last word read, not yet yielded.
    bits: u64,
    start: usize,
    /// The current bucket's member count was not looked at yet.
    fresh: bool,
    /// The scanned model's rest mask, if any account is known to rest for it.
    mask: Option<Arc<RestMask>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::selector::tests::account;

    fn table(specs: &[AccountSpec]) -> (SelectIndex, Vec<Arc<LiveAccount>>) {
        let lives: Vec<Arc<LiveAccount>> = specs.iter().map(|_| Arc::new(LiveAccount::new())).collect();
        let pairs: Vec<_> = specs.iter().cloned().map(Arc::new).zip(lives.iter().cloned()).collect();
        (SelectIndex::new(&pairs), lives)
    }

    fn order(index: &SelectIndex, start: usize) -> Vec<usize> {
        let mut cursor = index.cursor(start, "m", 0);
        std::iter::from_fn(|| index.next(&mut cursor)).collect()
    }

    #[test]
    fn tier_then_load_then_rotation_and_full_accounts_are_not_offered() {
        let specs: Vec<AccountSpec> = (0..130)
            .map(|i| account(&format!("a{i}"), Some(if i % 2 == 0 { "free-tier" } else { "g1-pro-tier" }), 2))
            .collect();
        let (index, lives) = table(&specs);
        // Odd entries are pro: first, from the start round; then the free ones.
        let got = order(&index, 101);
        let pro: Vec<usize> = (101..130).chain(0..101).filter(|i| i % 2 == 1).collect();
        let free: Vec<usize> = (101..130).chain(0..101).filter(|i| i % 2 == 0).collect();
        assert_eq!(got, [pro.clone(), free.clone()].concat());

        lives[1].in_flight.store(1, Ordering::Relaxed);
        index.refile(1);
        lives[3].in_flight.store(2, Ordering::Relaxed);
        index.refile(3);
        let got = order(&index, 0);
        assert_eq!(got[..2], [5, 7], "the idle pro accounts first");
        let at_one = got.iter().position(|&p| p == 1).unwrap();
        assert_eq!(at_one, pro.len() - 2, "then the pro account with one in flight, before any free one");
        assert!(!got.contains(&3), "an account at its cap is in no scanned bucket");

        lives[3].in_flight.store(0, Ordering::Relaxed);
        lives[1].in_flight.store(0, Ordering::Relaxed);
        index.refile_all();
        assert_eq!(order(&index, 101), [pro, free].concat(), "released accounts are back where they were");
    }

    #[test]
    fn a_learned_tier_refiles_an_account() {
        let (index, lives) = table(&[account("a", None, 1), account("b", Some("free-tier"), 1)]);
        assert_eq!(order(&index, 0), [1, 0], "unknown ranks below free");
        lives[0].learned_tier_rank.store(tier_rank(Some("g1-ultra-tier")), Ordering::Relaxed);
        index.refile(0);
        assert_eq!(order(&index, 0), [0, 1]);
        assert_eq!(index.position("b"), Some(1));
    }

    #[test]
    fn a_rest_mask_hides_an_account_for_its_model_until_the_earliest_rest_ends_or_it_is_forgotten() {
        let (index, _) = table(&[account("a", None, 1), account("b", None, 1), account("c", None, 1)]);
        let mut cursor = index.cursor(0, "m", 0);
        index.rest(&mut cursor, "m", 0, 100);
        index.rest(&mut cursor, "m", 2, u64::MAX);
        let scan = |model: &str, now_ms: u64| {
            let mut cursor = index.cursor(0, model, now_ms);
            std::iter::from_fn(|| index.next(&mut cursor)).collect::<Vec<_>>()
        };
        assert_eq!(scan("m", 50), [1]);
        assert_eq!(scan("other", 50), [0, 1, 2], "a rest is per model");
        assert_eq!(scan("m", 100), [0, 1, 2], "the earliest rest ended: every account is checked again");
        let mut cursor = index.cursor(0, "m", 0);
        index.rest(&mut cursor, "m", 2, u64::MAX);
        assert_eq!(scan("m", 200), [0, 1]);
        index.forget_rests();
        assert_eq!(scan("m", 200), [0, 1, 2]);
    }
}
