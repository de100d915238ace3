//! Session bindings this instance wrote to Redis lately, so an unchanged one is not written again on every
//! turn of a conversation (each turn ends with the same session → account binding; writing it only renews
//! its TTL). A binding is written again once a quarter of its TTL has passed since this instance last wrote
//! it, so it never expires while the conversation goes on, or at once when its account changed.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Bindings remembered at most; past this the memory is cleared (the cost: one more write per session).
const MAX_REMEMBERED: usize = 65_536;

#[derive(Default)]
pub(super) struct RecentBindings {
    written: Mutex<HashMap<String, (String, Instant)>>,
}

impl RecentBindings {
    /// Whether `session → account` needs writing now; when it does, it is remembered as written at `now`.
    pub(super) fn should_write(&self, session: &str, account: &str, ttl: Duration, now: Instant) -> bool {
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((last, at)) = written.get(session) {
            if last == account && now.saturating_duration_since(*at) < ttl / 4 {
                return false;
            }
        }
        if written.len() >= MAX_REMEMBERED && !written.contains_key(session) {
            written.clear();
        }
        written.insert(session.to_string(), (account.to_string(), now));
        true
    }

    /// Redis may have lost what was written (it restarted): write every binding again.
    pub(super) fn forget(&self) {
        self.written.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unchanged_binding_is_written_again_only_after_a_quarter_of_its_ttl() {
        let recent = RecentBindings::default();
        let (t0, ttl) = (Instant::now(), Duration::from_secs(40));
        assert!(recent.should_write("s", "a", ttl, t0));
        assert!(!recent.should_write("s", "a", ttl, t0 + Duration::from_secs(9)));
        assert!(recent.should_write("s", "b", ttl, t0 + Duration::from_secs(9)), "a new account at once");
        assert!(!recent.should_write("s", "b", ttl, t0 + Duration::from_secs(18)));
        assert!(recent.should_write("s", "b", ttl, t0 + Duration::from_secs(19)), "renewed in time");
        assert!(recent.should_write("t", "a", ttl, t0), "another session");
        recent.forget();
        assert!(recent.should_write("t", "a", ttl, t0), "after a reconnection");
    }
}
