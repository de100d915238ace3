//! A small LRU of encoded `tools` arrays, keyed by the client's tool definitions.
//!
//! Coding agents resend the same tools, byte for byte, on every request of a conversation, and cleaning
//! their schemas (PROTOCOL.md §10) is the largest part of building the inner request. The cache maps the
//! parsed tool definitions (with the target's model family, which changes the cleaning) to the encoded
//! `tools` JSON. A hit is verified by comparing the definitions themselves, not only their hash, so a hit
//! always returns what a fresh build would have produced.
//!
//! The cache is plain state with a lock, owned by the caller (the proxy holds one for its lifetime) and
//! passed into the transform, so this crate stays free of I/O and global state.

use std::any::Any;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

/// Encoded `tools` arrays larger than this are not kept, so memory stays bounded by
/// `capacity × (definitions + encoding)` of at most about this size each.
const MAX_ENTRY_BYTES: usize = 1 << 20;

/// Encoded `tools` JSON for recently seen tool definitions; see the module documentation.
pub struct ToolCache {
    capacity: usize,
    state: Mutex<Lru>,
}

#[derive(Default)]
struct Lru {
    entries: Vec<Entry>,
    /// Incremented on every use; an entry's `used` is the tick of its last use.
    tick: u64,
}

struct Entry {
    hash: u64,
    key: Box<dyn Any + Send + Sync>,
    json: Arc<[u8]>,
    used: u64,
}

impl ToolCache {
    /// A cache of at most `capacity` tool sets (a few dozen covers the distinct agents behind one gateway).
    pub fn new(capacity: usize) -> Self {
        ToolCache { capacity, state: Mutex::new(Lru::default()) }
    }

    /// How many tool sets are cached.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn hash<K: Hash + ?Sized>(&self, key: &K) -> u64 {
        let mut hasher = ContentHasher(0);
        key.hash(&mut hasher);
        hasher.finish()
    }

    /// The encoding cached for the key that hashes to `hash` and for which `is_key` holds.
    pub(crate) fn get<K: Any>(&self, hash: u64, is_key: impl Fn(&K) -> bool) -> Option<Arc<[u8]>> {
        let mut lru = self.lock();
        lru.tick += 1;
        let tick = lru.tick;
        let entry = lru
            .entries
            .iter_mut()
            .find(|e| e.hash == hash && e.key.downcast_ref::<K>().is_some_and(&is_key))?;
        entry.used = tick;
        Some(Arc::clone(&entry.json))
    }

    /// Keeps `json` for `key`, evicting the least recently used entry when full.
    pub(crate) fn insert<K: Any + Send + Sync>(&self, hash: u64, key: K, json: Arc<[u8]>) {
        if self.capacity == 0 || json.len() > MAX_ENTRY_BYTES {
            return;
        }
        let mut lru = self.lock();
        lru.tick += 1;
        let entry = Entry { hash, key: Box::new(key), json, used: lru.tick };
        if lru.entries.len() < self.capacity {
            lru.entries.push(entry);
        } else if let Some(oldest) = lru.entries.iter_mut().min_by_key(|e| e.used) {
            *oldest = entry;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        // The state is a plain list that every operation leaves consistent, so a panic elsewhere while the
        // lock was held does not invalidate it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A fast multiply-rotate hash (FxHash's step, a word at a time). The hash only picks the entry to compare
/// in full, and the entries are scanned in a short list, so crafted collisions cost a few comparisons, not
/// correctness; SipHash was a quarter of a cache hit's cost on 24 tools.
struct ContentHasher(u64);

impl ContentHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for ContentHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut buf = [0u8; 8];
            buf.copy_from_slice(word);
            self.add(u64::from_le_bytes(buf));
        }
        let mut buf = [0u8; 8];
        buf[..words.remainder().len()].copy_from_slice(words.remainder());
        self.add(u64::from_le_bytes(buf));
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl std::fmt::Debug for ToolCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolCache").field("capacity", &self.capacity).field("len", &self.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(s: &str) -> Arc<[u8]> {
        Arc::from(s.as_bytes())
    }

    #[test]
    fn a_hit_needs_an_equal_key_not_only_an_equal_hash() {
        let cache = ToolCache::new(4);
        cache.insert(7, "tools-a".to_owned(), json("[1]"));
        assert_eq!(cache.get(7, |k: &String| k == "tools-a").as_deref(), Some(&b"[1]"[..]));
        assert!(cache.get(7, |k: &String| k == "tools-b").is_none(), "same hash, different key");
        assert!(cache.get(8, |k: &String| k == "tools-a").is_none());
        assert!(cache.get(7, |_: &u32| true).is_none(), "a key of another type never matches");
    }

    #[test]
    fn it_is_bounded_and_evicts_the_least_recently_used() {
        let cache = ToolCache::new(2);
        cache.insert(1, 1u32, json("one"));
        cache.insert(2, 2u32, json("two"));
        assert!(cache.get(1, |k: &u32| *k == 1).is_some());
        cache.insert(3, 3u32, json("three"));
        assert_eq!(cache.len(), 2);
        assert!(cache.get(2, |k: &u32| *k == 2).is_none(), "2 was the least recently used");
        assert!(cache.get(1, |k: &u32| *k == 1).is_some());
        assert!(cache.get(3, |k: &u32| *k == 3).is_some());
        let off = ToolCache::new(0);
        off.insert(1, 1u32, json("one"));
        assert!(off.is_empty());
    }
}
