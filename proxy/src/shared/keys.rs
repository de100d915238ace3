//! Key and channel names in Redis, and the pure rules around them: one place that says where each kind of
//! shared record lives, so every instance of a cluster reads what the others wrote; and the settings check.

use std::time::Duration;

use crate::config::SharedStateFile;

/// Names under one prefix (`shared_state.key_prefix`), so several clusters can share one Redis.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Keys { prefix: prefix.to_string() }
    }

    /// A thoughtSignature (or thinking block) under the store key the local cache uses.
    pub fn signature(&self, store_key: &str) -> String {
        format!("{}sig:{store_key}", self.prefix)
    }

    /// The sorted set of signature keys by capture time (unix seconds): the cluster-wide size bound.
    pub fn signature_index(&self) -> String {
        format!("{}sigidx", self.prefix)
    }

    /// A conversation's account binding (session affinity).
    pub fn binding(&self, session: &str) -> String {
        format!("{}aff:{session}", self.prefix)
    }

    /// Instance heartbeats: instance id → unix milliseconds of its last ping.
    pub fn instances(&self) -> String {
        format!("{}instances", self.prefix)
    }

    /// One hour's usage rows of every instance (`shared::usage`).
    pub fn usage(&self, hour: u64) -> String {
        format!("{}usage:{hour}", self.prefix)
    }

    /// The account pool's shared tables (`lockouts`, `forbidden`, `quotas`) and its event channel (`events`).
    pub fn pool(&self, name: &str) -> String {
        format!("{}pool:{name}", self.prefix)
    }

    /// Per-account credentials: `token`, `refreshing` (the refresh claim), `project`.
    pub fn account(&self, kind: &str, account: &str) -> String {
        format!("{}acct:{kind}:{account}", self.prefix)
    }

    /// An account's slot ledger: instance id → slots held and until when (`shared::slots`).
    pub fn slots(&self, account: &str) -> String {
        format!("{}slots:{account}", self.prefix)
    }

    /// The store key back from a signature key (for the index trim), if it is one of ours.
    pub fn store_key_of<'a>(&self, signature_key: &'a str) -> Option<&'a str> {
        signature_key.strip_prefix(&self.prefix)?.strip_prefix("sig:")
    }
}

/// This instance's place among the live instances of `table` (id, last heartbeat in unix ms): how many are
/// alive (heartbeat younger than `lease_ms`, and always this one) and this one's position in their sorted ids.
pub fn membership(table: &[(String, u64)], me: &str, now_ms: u64, lease_ms: u64) -> (u32, u32) {
    let mut live: Vec<&str> = table
        .iter()
        .filter(|(id, at)| id != me && now_ms.saturating_sub(*at) < lease_ms)
        .map(|(id, _)| id.as_str())
        .collect();
    live.push(me);
    live.sort_unstable();
    let rank = live.iter().position(|id| *id == me).unwrap_or(0);
    (live.len() as u32, rank as u32)
}

/// What is left to write after Redis came back: the newest `max` writes, in order (older ones are dropped:
/// the freshest signatures and bindings are the ones the next turns need).
pub fn bounded_backlog<T>(mut backlog: Vec<T>, max: usize) -> Vec<T> {
    if backlog.len() > max {
        backlog.drain(..backlog.len() - max);
    }
    backlog
}

/// How many of the signature index's entries (oldest first) a sweep removes to keep `max` entries.
pub fn excess(len: u64, max: usize) -> u64 {
    len.saturating_sub(max as u64)
}

/// The first thing wrong with `shared_state`, as (key, message), for the configuration check.
pub fn settings_problem(settings: &SharedStateFile) -> Option<(&'static str, &'static str)> {
    if !url_is_supported(&settings.redis_url) {
        return Some((
            "redis_url",
            "shared_state.redis_url must be redis://host:port[/db] or unix:///path (TLS to Redis is not built in)",
        ));
    }
    if settings.timeout.is_zero() {
        return Some(("timeout", "shared_state.timeout must be more than zero"));
    }
    if settings.lease < Duration::from_secs(3) {
        return Some(("lease", "shared_state.lease must be at least 3s (three heartbeats)"));
    }
    if settings.instances == Some(0) {
        return Some(("instances", "shared_state.instances must be at least 1"));
    }
    None
}

/// A Redis URL this build can connect to: plain TCP or a Unix socket (no TLS feature is compiled in).
pub fn url_is_supported(url: &str) -> bool {
    let plain = url.strip_prefix("redis://").or_else(|| url.strip_prefix("unix://"));
    plain.is_some_and(|rest| !rest.is_empty()) && redis::Client::open(url).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_prefix_and_signature_keys_map_back() {
        let keys = Keys::new("lv:");
        assert_eq!(keys.signature("call_1"), "lv:sig:call_1");
        assert_eq!(keys.binding("conv"), "lv:aff:conv");
        assert_eq!(keys.store_key_of("lv:sig:call_1"), Some("call_1"));
        assert_eq!(keys.store_key_of("other:sig:call_1"), None);
        assert_eq!(keys.store_key_of("lv:aff:conv"), None);
    }

    #[test]
    fn membership_counts_live_instances_and_always_this_one() {
        let table = vec![("b".to_string(), 9_000), ("c".to_string(), 1_000), ("a".to_string(), 9_500)];
        assert_eq!(membership(&table, "b", 10_000, 5_000), (2, 1), "c's lease ran out");
        assert_eq!(membership(&table, "z", 10_000, 60_000), (4, 3));
        assert_eq!(membership(&[], "me", 10_000, 5_000), (1, 0), "before its own first heartbeat");
    }

    #[test]
    fn the_backlog_keeps_the_newest_writes() {
        assert_eq!(bounded_backlog(vec![1, 2, 3, 4, 5], 3), vec![3, 4, 5]);
        assert_eq!(bounded_backlog(vec![1, 2], 3), vec![1, 2]);
    }

    #[test]
    fn the_index_trims_only_beyond_its_bound() {
        assert_eq!(excess(10, 8), 2);
        assert_eq!(excess(3, 8), 0);
    }

    #[test]
    fn settings_are_checked_key_by_key() {
        let good = SharedStateFile {
            redis_url: "redis://127.0.0.1:6379".into(),
            key_prefix: "levitate:".into(),
            timeout: Duration::from_millis(250),
            instance_id: None,
            instances: None,
            lease: Duration::from_secs(15),
        };
        assert_eq!(settings_problem(&good), None);
        let bad = |change: fn(&mut SharedStateFile)| {
            let mut s = good.clone();
            change(&mut s);
            settings_problem(&s).map(|(key, _)| key)
        };
        assert_eq!(bad(|s| s.redis_url = "rediss://x:1".into()), Some("redis_url"));
        assert_eq!(bad(|s| s.timeout = Duration::ZERO), Some("timeout"));
        assert_eq!(bad(|s| s.lease = Duration::from_secs(1)), Some("lease"));
        assert_eq!(bad(|s| s.instances = Some(0)), Some("instances"));
    }

    #[test]
    fn only_plain_and_unix_urls_are_accepted() {
        assert!(url_is_supported("redis://127.0.0.1:6379"));
        assert!(url_is_supported("redis://:secret@10.0.0.2:6379/2"));
        assert!(url_is_supported("unix:///run/redis/redis.sock"));
        assert!(!url_is_supported("rediss://127.0.0.1:6379"));
        assert!(!url_is_supported("http://127.0.0.1:6379"));
        assert!(!url_is_supported("redis://"));
    }
}
