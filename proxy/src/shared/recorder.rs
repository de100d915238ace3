//! Which signature lookups of one request transform missed the local cache.
//!
//! The transforms look signatures up synchronously through `SignatureLookup`, deep inside the protocol code;
//! a Redis call cannot happen there. Instead the transform runs once against the local cache while this
//! recorder notes every miss (a thread-local: the transform runs on one thread, inline or on the blocking
//! pool), the gateway asks Redis for all of them in one round trip, and runs the transform again only if
//! Redis had some.

use std::cell::RefCell;

use super::MAX_FETCH_KEYS;

thread_local! {
    static MISSES: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

/// Records misses on this thread from [`MissRecorder::start`] to [`MissRecorder::finish`].
pub struct MissRecorder {
    active: bool,
}

impl MissRecorder {
    /// Starts recording when `enabled` (a cluster is configured); otherwise records nothing.
    pub fn start(enabled: bool) -> Self {
        if enabled {
            MISSES.with(|m| *m.borrow_mut() = Some(Vec::new()));
        }
        MissRecorder { active: enabled }
    }

    /// The keys missed since `start`, each once, in lookup order.
    pub fn finish(self) -> Vec<String> {
        if !self.active {
            return Vec::new();
        }
        MISSES.with(|m| m.borrow_mut().take()).unwrap_or_default()
    }

    /// Notes a local miss of `store_key` (a no-op unless a recorder is active on this thread).
    pub fn note(store_key: &str) {
        MISSES.with(|m| {
            if let Some(misses) = m.borrow_mut().as_mut() {
                if misses.len() < MAX_FETCH_KEYS && !misses.iter().any(|k| k == store_key) {
                    misses.push(store_key.to_string());
                }
            }
        });
    }
}

impl Drop for MissRecorder {
    fn drop(&mut self) {
        // A transform that panicked must not leave a recorder behind for the thread's next request.
        if self.active {
            MISSES.with(|m| m.borrow_mut().take());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misses_are_recorded_once_and_only_while_recording() {
        MissRecorder::note("before");
        let recorder = MissRecorder::start(true);
        MissRecorder::note("call_1");
        MissRecorder::note("call_2");
        MissRecorder::note("call_1");
        assert_eq!(recorder.finish(), vec!["call_1".to_string(), "call_2".to_string()]);
        MissRecorder::note("after");
        assert!(MissRecorder::start(true).finish().is_empty());
    }

    #[test]
    fn a_disabled_recorder_records_nothing() {
        let recorder = MissRecorder::start(false);
        MissRecorder::note("call_1");
        assert!(recorder.finish().is_empty());
    }
}
