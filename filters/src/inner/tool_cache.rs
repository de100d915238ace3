//! A small LRU of encoded `tools` arrays, keyed by a 128-bit keyed digest of the client's tool definitions.
//!
//! Coding agents resend the same tools, byte for byte, on every request of a conversation, and cleaning
//! their schemas (PROTOCOL.md §10) is the largest part of building the inner request. The cache maps the
//! digest of the parsed tool definitions (with the target's model family, which changes the cleaning) to
//! the encoded `tools` JSON. The digest is the whole key: no copy of the definitions is kept. It is two
//! 64-bit `ahash` hashes under random keys drawn per cache (per process), so a client cannot aim for a
//! collision (one client's tools answering for another's) without knowing the keys, and a chance collision
//! of 128 bits does not happen; a hit returns what a fresh build would have produced. A cryptographic hash
//! would be stronger still, but SHA-256 of a coding agent's tools costs about a quarter of a warm transform.
//!
//! Memory is bounded twice: by the number of tool sets and by the bytes of their encodings
//! ([`DEFAULT_BUDGET_BYTES`]); the least recently used entries go first when either is exceeded.
//!
//! The cache is plain state with a lock, owned by the caller (the proxy holds one for its lifetime) and
//! passed into the transform, so this crate stays free of I/O and global state.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

/// Bytes of encoded `tools` kept in all: a coding agent's tools encode to 10–60 KiB, so this holds the tool
/// sets of a few hundred distinct agents, and a flood of distinct huge tool sets cannot grow it further.
pub const DEFAULT_BUDGET_BYTES: usize = 8 << 20;

/// Encoded `tools` arrays larger than this are not kept: one would evict many ordinary sets.
const MAX_ENTRY_BYTES: usize = 1 << 20;

/// What an entry costs beyond its encoding (digest, counters, the `Arc`'s header), so that a flood of tiny
/// tool sets is bounded too.
const ENTRY_OVERHEAD: usize = 64;

/// The key of a cached tool set: a 128-bit keyed digest of the definitions and the model family.
pub(crate) type ToolsDigest = u128;

/// Encoded `tools` JSON for recently seen tool definitions; see the module documentation.
pub struct ToolCache {
    /// The digest's two random keys.
    keys: (ahash::RandomState, ahash::RandomState),
    capacity: usize,
    budget_bytes: usize,
    state: Mutex<Lru>,
}

#[derive(Default)]
struct Lru {
    entries: Vec<Entry>,
    /// Sum of the entries' costs ([`Entry::cost`]).
    bytes: usize,
    /// Incremented on every use; an entry's `used` is the tick of its last use.
    tick: u64,
}

struct Entry {
    digest: ToolsDigest,
    json: Arc<[u8]>,
    used: u64,
}

impl Entry {
    fn cost(&self) -> usize {
        self.json.len() + ENTRY_OVERHEAD
    }
}

impl ToolCache {
    /// A cache of at most `capacity` tool sets (a few dozen covers the distinct agents behind one gateway)
    /// and [`DEFAULT_BUDGET_BYTES`] of encodings.
    pub fn new(capacity: usize) -> Self {
        ToolCache::with_budget(capacity, DEFAULT_BUDGET_BYTES)
    }

    /// A cache of at most `capacity` tool sets whose encodings take at most `budget_bytes` in all.
    pub fn with_budget(capacity: usize, budget_bytes: usize) -> Self {
        let keys = (ahash::RandomState::new(), ahash::RandomState::new());
        ToolCache { keys, capacity, budget_bytes, state: Mutex::new(Lru::default()) }
    }

    /// How many tool sets are cached.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the cached encodings take, with a small per-entry overhead.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// The digest of `key`, through its `Hash` implementation (derived ones write every field with
    /// unambiguous lengths and separators, so different keys feed the hashes different bytes).
    pub(crate) fn digest<K: Hash + ?Sized>(&self, key: &K) -> ToolsDigest {
        let mut hasher = DigestHasher(self.keys.0.build_hasher(), self.keys.1.build_hasher());
        key.hash(&mut hasher);
        (u128::from(hasher.0.finish()) << 64) | u128::from(hasher.1.finish())
    }

    /// The encoding cached for `digest`.
    pub(crate) fn get(&self, digest: &ToolsDigest) -> Option<Arc<[u8]>> {
        let mut lru = self.lock();
        lru.tick += 1;
        let tick = lru.tick;
        let entry = lru.entries.iter_mut().find(|e| e.digest == *digest)?;
        entry.used = tick;
        Some(Arc::clone(&entry.json))
    }

    /// The encoding cached for `digest`, else `build`'s, kept for the next request.
    pub(crate) fn get_or_build<E>(
        &self,
        digest: ToolsDigest,
        build: impl FnOnce() -> Result<Vec<u8>, E>,
    ) -> Result<Arc<[u8]>, E> {
        if let Some(json) = self.get(&digest) {
            return Ok(json);
        }
        let json: Arc<[u8]> = build()?.into();
        self.insert(digest, Arc::clone(&json));
        Ok(json)
    }

    /// Keeps `json` for `digest`, evicting the least recently used entries until both bounds hold.
    pub(crate) fn insert(&self, digest: ToolsDigest, json: Arc<[u8]>) {
        if self.capacity == 0 || json.len() > MAX_ENTRY_BYTES {
            return;
        }
        let mut lru = self.lock();
        lru.tick += 1;
        let entry = Entry { digest, json, used: lru.tick };
        if entry.cost() > self.budget_bytes {
            return;
        }
        if let Some(i) = lru.entries.iter().position(|e| e.digest == digest) {
            // Two requests built the same tools at once: keep one.
            let old = lru.entries.swap_remove(i);
            lru.bytes -= old.cost();
        }
        while lru.entries.len() >= self.capacity || lru.bytes + entry.cost() > self.budget_bytes {
            let Some(oldest) = (0..lru.entries.len()).min_by_key(|&i| lru.entries[i].used) else { break };
            let old = lru.entries.swap_remove(oldest);
            lru.bytes -= old.cost();
        }
        lru.bytes += entry.cost();
        lru.entries.push(entry);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        // The state is a plain list that every operation leaves consistent, so a panic elsewhere while the
        // lock was held does not invalidate it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Feeds what a `Hash` implementation writes into both keyed hashes (only [`ToolCache::digest`] reads
/// the result, from each of them).
struct DigestHasher(ahash::AHasher, ahash::AHasher);

impl Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
        self.1.write(bytes);
    }

    fn write_u8(&mut self, n: u8) {
        self.0.write_u8(n);
        self.1.write_u8(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.0.write_usize(n);
        self.1.write_usize(n);
    }

    fn finish(&self) -> u64 {
        // Never used for the key: the digest is taken from both hashers.
        self.0.finish()
    }
}

impl std::fmt::Debug for ToolCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lru = self.lock();
        f.debug_struct("ToolCache")
            .field("capacity", &self.capacity)
            .field("budget_bytes", &self.budget_bytes)
            .field("len", &lru.entries.len())
            .field("bytes", &lru.bytes)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(s: &str) -> Arc<[u8]> {
        Arc::from(s.as_bytes())
    }

    fn key(cache: &ToolCache, n: u32) -> ToolsDigest {
        cache.digest(&n)
    }

    #[test]
    fn the_key_is_a_digest_of_the_whole_definition() {
        let cache = ToolCache::new(4);
        assert_eq!(cache.digest(&("a", "bc")), cache.digest(&("a", "bc")));
        assert_ne!(cache.digest(&("a", "bc")), cache.digest(&("ab", "c")), "field boundaries count");
        assert_ne!(cache.digest(&"a"), ToolCache::new(4).digest(&"a"), "every cache draws its own keys");
        cache.insert(cache.digest(&"tools-a"), json("[1]"));
        assert_eq!(cache.get(&cache.digest(&"tools-a")).as_deref(), Some(&b"[1]"[..]));
        assert!(cache.get(&cache.digest(&"tools-b")).is_none());
    }

    #[test]
    fn it_is_bounded_in_entries_and_evicts_the_least_recently_used() {
        let cache = ToolCache::new(2);
        cache.insert(key(&cache, 1), json("one"));
        cache.insert(key(&cache, 2), json("two"));
        assert!(cache.get(&key(&cache, 1)).is_some());
        cache.insert(key(&cache, 3), json("three"));
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&key(&cache, 2)).is_none(), "2 was the least recently used");
        assert!(cache.get(&key(&cache, 1)).is_some());
        assert!(cache.get(&key(&cache, 3)).is_some());
        let off = ToolCache::new(0);
        off.insert(key(&off, 1), json("one"));
        assert!(off.is_empty());
    }

    #[test]
    fn it_is_bounded_in_bytes() {
        let entry = 1000;
        let cache = ToolCache::with_budget(100, 3 * (entry + ENTRY_OVERHEAD));
        let body = "x".repeat(entry);
        for n in 0..10 {
            cache.insert(key(&cache, n), json(&body));
            if n == 1 {
                assert!(cache.get(&key(&cache, 0)).is_some(), "0 used again: 1 becomes the oldest");
            }
            assert!(cache.bytes() <= 3 * (entry + ENTRY_OVERHEAD), "{} bytes after {n}", cache.bytes());
        }
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.bytes(), 3 * (entry + ENTRY_OVERHEAD));
        assert!(cache.get(&key(&cache, 9)).is_some() && cache.get(&key(&cache, 1)).is_none());
        cache.insert(key(&cache, 99), json(&"y".repeat(4 * entry)));
        assert!(cache.get(&key(&cache, 99)).is_none(), "an entry over the whole budget is not kept");
        assert_eq!(cache.len(), 3, "and evicts nothing");
        cache.insert(key(&cache, 9), json(&body));
        assert_eq!((cache.len(), cache.bytes()), (3, 3 * (entry + ENTRY_OVERHEAD)), "a re-insert replaces");
    }
}
