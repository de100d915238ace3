//! Key and channel names in Redis, and the pure rules around them: one place that says where each kind of
//! shared record lives, so every instance of a cluster reads what the others wrote.

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

    /// The account pool's shared tables (`lockouts`, `forbidden`, `quotas`) and its event channel (`events`).
    pub fn pool(&self, name: &str) -> String {
        format!("{}pool:{name}", self.prefix)
    }

    /// The store key back from a signature key (for the index trim), if it is one of ours.
    pub fn store_key_of<'a>(&self, signature_key: &'a str) -> Option<&'a str> {
        signature_key.strip_prefix(&self.prefix)?.strip_prefix("sig:")
    }
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
    fn only_plain_and_unix_urls_are_accepted() {
        assert!(url_is_supported("redis://127.0.0.1:6379"));
        assert!(url_is_supported("redis://:secret@10.0.0.2:6379/2"));
        assert!(url_is_supported("unix:///run/redis/redis.sock"));
        assert!(!url_is_supported("rediss://127.0.0.1:6379"));
        assert!(!url_is_supported("http://127.0.0.1:6379"));
        assert!(!url_is_supported("redis://"));
    }
}
