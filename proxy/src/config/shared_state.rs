//! `shared_state` in levitate.yaml: the Redis several instances share (`crate::shared`). Its own file
//! because it is read once at start, unlike the reloadable sections beside it in `files`.

use std::time::Duration;

use serde::Deserialize;

/// `shared_state`: the Redis that several instances share (read at start; a change needs a restart).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SharedStateFile {
    /// `redis://[user:password@]host:port[/db]` or `unix:///path/to/redis.sock`.
    pub redis_url: String,
    /// Prepended to every key and channel, so several clusters can share one Redis.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// The longest a request waits on Redis; beyond it the instance goes on with its local state (degraded).
    #[serde(default = "default_timeout", with = "super::duration")]
    pub timeout: Duration,
    /// This instance's name in the cluster (admin API, logs); default `<hostname>-<pid>`.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// How many instances to split each account's `max_concurrent` over while Redis cannot be reached;
    /// default: as many as were last seen alive (1 before Redis was ever reached).
    #[serde(default)]
    pub instances: Option<u32>,
    /// An instance whose heartbeat is older than this counts as gone: its share of the caps returns to the
    /// others.
    #[serde(default = "default_lease", with = "super::duration")]
    pub lease: Duration,
}

fn default_key_prefix() -> String {
    "levitate:".to_string()
}

fn default_timeout() -> Duration {
    Duration::from_millis(250)
}

fn default_lease() -> Duration {
    Duration::from_secs(15)
}
