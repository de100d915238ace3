//! Several instances as one gateway: the state they share through Redis (`shared_state` in levitate.yaml).
//!
//! Without `shared_state` nothing here talks to anything and every call is a no-op: sled stays the only
//! store. With it, what one instance learns that the next turn of a conversation needs on another instance
//! (thoughtSignatures, session bindings) is written through to Redis, and read back when it is missing
//! locally. The request path's budget is one pipelined round trip in ([`SharedState::fetch`], only when the
//! local state misses) and one out ([`SharedState::flush`], off the response path), none per streamed chunk.
//!
//! Redis is never needed to serve: every call is bounded by `shared_state.timeout`, and a failure puts the
//! instance in degraded mode (local state only, logged once, `levitate_shared_state_up 0`) until the
//! background [`service::SharedStateService`] reconnects; then the writes made meanwhile are replayed.

mod bindings;
pub mod credentials;
pub mod keys;
mod pool_sync;
mod recorder;
pub mod service;
mod slots;
mod usage;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use prometheus::{IntCounterVec, IntGauge, Opts};
use redis::aio::MultiplexedConnection;
use redis::Value;
use tokio::sync::Notify;

use crate::config::SharedStateFile;
use crate::ops::metrics::Metrics;
use crate::pool::cluster::Share;
pub use keys::url_is_supported;
use keys::Keys;
pub use recorder::MissRecorder;

/// Writes kept while Redis is down, replayed when it returns (the newest win the bound).
const MAX_BACKLOG: usize = 10_000;
/// Signature keys asked for in one request at most (a long agent history asks for one per tool call).
pub const MAX_FETCH_KEYS: usize = 512;

/// One record for Redis, with its time to live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Signature { store_key: String, value: String, ttl: Duration },
    Binding { session: String, account: String, ttl: Duration },
}

/// What one request learned for the cluster; flushed once, when the request ends.
#[derive(Debug, Default)]
pub struct Outbox {
    writes: Vec<Write>,
}

impl Outbox {
    pub fn push(&mut self, write: Write) {
        self.writes.push(write);
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }
}

/// What a fetch found in Redis.
#[derive(Debug, Default)]
pub struct Fetched {
    /// (store key, signature) for every asked key Redis had.
    pub signatures: Vec<(String, String)>,
    /// The session's account, when asked and bound.
    pub binding: Option<String>,
}

/// The cluster link, or nothing (`shared_state` unset).
pub struct SharedState {
    link: Option<Link>,
}

struct Link {
    client: redis::Client,
    settings: SharedStateFile,
    instance: String,
    keys: Keys,
    conn: ArcSwapOption<MultiplexedConnection>,
    up: AtomicBool,
    /// Unix milliseconds of the last up/down change.
    changed_at_ms: AtomicU64,
    /// Wakes the background service to reconnect at once.
    reconnect: Notify,
    backlog: Mutex<Vec<Write>>,
    /// Bindings written lately, not written again unchanged on every turn.
    recent_bindings: bindings::RecentBindings,
    /// Live instances at the last heartbeat (or `shared_state.instances`, 1 before the first).
    members: AtomicU32,
    /// This instance's rank among them.
    rank: AtomicU32,
    up_gauge: IntGauge,
    ops: IntCounterVec,
}

impl SharedState {
    /// Gives this instance's slots of `accounts` back and leaves the instance table (see `Link::leave`).
    pub async fn leave(&self, accounts: &[String]) {
        if let Some(link) = &self.link {
            link.leave(accounts).await;
        }
    }

    /// No cluster: every call is a no-op.
    pub fn disabled() -> Self {
        SharedState { link: None }
    }

    /// The link to `settings.redis_url`; it connects in the background ([`service::SharedStateService`]) and
    /// starts degraded. The URL was checked when the configuration was validated.
    pub fn new(settings: Option<&SharedStateFile>, metrics: &Metrics) -> Self {
        let Some(settings) = settings else { return Self::disabled() };
        let client = match redis::Client::open(settings.redis_url.as_str()) {
            Ok(client) => client,
            Err(e) => {
                tracing::error!(error = %e, "shared_state.redis_url unusable; running without shared state");
                return Self::disabled();
            }
        };
        let up_gauge = IntGauge::new("shared_state_up", "1 while the shared state (Redis) is reachable")
            .expect("valid metric");
        let ops = IntCounterVec::new(
            Opts::new("shared_state_ops_total", "Shared-state (Redis) round trips by operation and outcome"),
            &["op", "outcome"],
        )
        .expect("valid metric");
        metrics.register(up_gauge.clone());
        metrics.register(ops.clone());
        let instance = settings.instance_id.clone().unwrap_or_else(default_instance_id);
        SharedState {
            link: Some(Link {
                client,
                keys: Keys::new(&settings.key_prefix),
                settings: settings.clone(),
                instance,
                conn: ArcSwapOption::empty(),
                up: AtomicBool::new(false),
                changed_at_ms: AtomicU64::new(crate::store::unix_now_ms()),
                reconnect: Notify::new(),
                backlog: Mutex::new(Vec::new()),
                recent_bindings: bindings::RecentBindings::default(),
                members: AtomicU32::new(settings.instances.unwrap_or(1)),
                rank: AtomicU32::new(0),
                up_gauge,
                ops,
            }),
        }
    }

    pub fn enabled(&self) -> bool {
        self.link.is_some()
    }

    /// Reachable now (false when disabled).
    pub fn is_up(&self) -> bool {
        self.link.as_ref().is_some_and(|l| l.up.load(Ordering::Relaxed))
    }

    /// The one inbound round trip: the signatures the request missed locally and the session's binding,
    /// in one pipeline. Empty when disabled, degraded, or Redis fails (which degrades).
    pub async fn fetch(&self, store_keys: &[String], session: Option<&str>) -> Fetched {
        let Some(link) = self.link.as_ref() else { return Fetched::default() };
        let Some(conn) = link.conn.load_full() else { return Fetched::default() };
        let store_keys = &store_keys[..store_keys.len().min(MAX_FETCH_KEYS)];
        if store_keys.is_empty() && session.is_none() {
            return Fetched::default();
        }
        let mut pipe = redis::pipe();
        if !store_keys.is_empty() {
            let cmd = pipe.cmd("MGET");
            for key in store_keys {
                cmd.arg(link.keys.signature(key));
            }
        }
        if let Some(session) = session {
            pipe.cmd("GET").arg(link.keys.binding(session));
        }
        let Ok(replies) = link.query::<Vec<Value>>("fetch", &pipe, &conn).await else {
            return Fetched::default();
        };
        let mut replies = replies.into_iter();
        let mut fetched = Fetched::default();
        if !store_keys.is_empty() {
            if let Some(Value::Array(values)) = replies.next() {
                for (key, value) in store_keys.iter().zip(values) {
                    if let Some(text) = text(value) {
                        fetched.signatures.push((key.clone(), text));
                    }
                }
            }
        }
        if session.is_some() {
            fetched.binding = replies.next().and_then(text);
        }
        fetched
    }

    /// The one outbound round trip, off the response path: a request's writes in one pipeline. While Redis
    /// is down they wait in a bounded backlog, replayed on reconnection.
    pub fn flush(self: &Arc<Self>, mut outbox: Outbox) {
        let Some(link) = self.link.as_ref() else { return };
        let now = std::time::Instant::now();
        outbox.writes.retain(|write| match write {
            Write::Binding { session, account, ttl } => {
                link.recent_bindings.should_write(session, account, *ttl, now)
            }
            Write::Signature { .. } => true,
        });
        if outbox.is_empty() {
            return;
        }
        if link.conn.load().is_none() {
            link.keep(outbox.writes);
            return;
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            if let Some(link) = this.link.as_ref() {
                link.write(outbox.writes).await;
            }
        });
    }

    /// `/admin/cluster`: this instance's link and, while Redis is up, every instance's last heartbeat.
    pub async fn cluster(&self) -> serde_json::Value {
        let mut status = self.status();
        let Some(link) = self.link.as_ref() else { return status };
        let Some(conn) = link.conn.load_full() else { return status };
        let mut conn = (*conn).clone();
        let mut table = redis::cmd("HGETALL");
        table.arg(link.keys.instances());
        if let Ok(instances) = link.bounded::<Vec<(String, u64)>>(table.query_async(&mut conn)).await {
            let now = crate::store::unix_now_ms();
            let instances: Vec<_> = instances
                .into_iter()
                .map(|(id, at)| serde_json::json!({ "instance": id, "seen_ms_ago": now.saturating_sub(at) }))
                .collect();
            status["instances"] = serde_json::Value::Array(instances);
        }
        status
    }

    /// This instance's link, for the admin API.
    pub fn status(&self) -> serde_json::Value {
        let Some(link) = self.link.as_ref() else {
            return serde_json::json!({ "enabled": false });
        };
        serde_json::json!({
            "enabled": true,
            "up": link.up.load(Ordering::Relaxed),
            "since_ms": link.changed_at_ms.load(Ordering::Relaxed),
            "instance": link.instance,
            "redis": redact(&link.settings.redis_url),
            "key_prefix": link.settings.key_prefix,
            "backlog": link.backlog.lock().unwrap_or_else(PoisonError::into_inner).len(),
            "live_instances": link.members.load(Ordering::Relaxed),
            "rank": link.rank.load(Ordering::Relaxed),
            "lease_seconds": link.settings.lease.as_secs(),
            "shares": [
                "thought_signatures", "session_affinity", "lockouts", "forbidden_marks", "quota_snapshots",
                "breaker_openings",
                "account_concurrency", "oauth_tokens", "projects", "key_limits",
            ],
        })
    }
}

impl Link {
    /// A Redis call bounded by `shared_state.timeout`.
    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(self.settings.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.settings.timeout)),
        }
    }

    /// The share of each account's cap this instance takes, from the last heartbeat's membership (or, when
    /// it failed, an even share of the last known or configured number of instances).
    fn share(&self, members: Option<(u32, u32)>) -> Share {
        match members {
            Some((n, rank)) => {
                self.members.store(n, Ordering::Relaxed);
                self.rank.store(rank, Ordering::Relaxed);
                Share::Exact { n, rank }
            }
            None => Share::Fallback {
                n: self.settings.instances.unwrap_or_else(|| self.members.load(Ordering::Relaxed)),
            },
        }
    }

    fn count(&self, op: &str, outcome: &str) {
        self.ops.with_label_values(&[op, outcome]).inc();
    }

    /// Runs `pipe` on `conn` within the timeout, counted under `op`; a failure puts the instance in degraded
    /// mode.
    async fn query<T: redis::FromRedisValue>(
        &self,
        op: &str,
        pipe: &redis::Pipeline,
        conn: &MultiplexedConnection,
    ) -> Result<T, String> {
        let mut conn = conn.clone();
        match self.bounded(pipe.query_async::<T>(&mut conn)).await {
            Ok(value) => {
                self.count(op, "ok");
                Ok(value)
            }
            Err(e) => {
                self.count(op, "error");
                self.mark_down(&e);
                Err(e)
            }
        }
    }

    async fn write(&self, writes: Vec<Write>) {
        let Some(conn) = self.conn.load_full() else {
            self.keep(writes);
            return;
        };
        let now = crate::store::unix_now();
        let mut pipe = redis::pipe();
        for write in &writes {
            match write {
                Write::Signature { store_key, value, ttl } => {
                    let key = self.keys.signature(store_key);
                    pipe.cmd("SET").arg(&key).arg(value).arg("EX").arg(ttl.as_secs().max(1)).ignore();
                    pipe.cmd("ZADD").arg(self.keys.signature_index()).arg(now).arg(&key).ignore();
                }
                Write::Binding { session, account, ttl } => {
                    let key = self.keys.binding(session);
                    pipe.cmd("SET").arg(&key).arg(account).arg("EX").arg(ttl.as_secs().max(1)).ignore();
                }
            }
        }
        let mut conn = (*conn).clone();
        match self.bounded(pipe.exec_async(&mut conn)).await {
            Ok(()) => self.count("write", "ok"),
            Err(e) => {
                self.count("write", "error");
                self.mark_down(&e);
                self.keep(writes);
            }
        }
    }

    fn keep(&self, writes: Vec<Write>) {
        let mut backlog = self.backlog.lock().unwrap_or_else(PoisonError::into_inner);
        backlog.extend(writes);
        if backlog.len() > MAX_BACKLOG {
            let kept = keys::bounded_backlog(std::mem::take(&mut *backlog), MAX_BACKLOG);
            *backlog = kept;
        }
    }

    fn take_backlog(&self) -> Vec<Write> {
        std::mem::take(&mut *self.backlog.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Degraded mode: drop the connection, say so once per transition, ask for a reconnection.
    fn mark_down(&self, error: &str) {
        self.conn.store(None);
        if self.up.swap(false, Ordering::Relaxed) {
            self.changed_at_ms.store(crate::store::unix_now_ms(), Ordering::Relaxed);
            self.up_gauge.set(0);
            tracing::warn!(error, "shared state (Redis) unreachable: serving with local state only");
        }
        self.reconnect.notify_one();
    }

    fn mark_up(&self, conn: MultiplexedConnection) {
        self.recent_bindings.forget();
        self.conn.store(Some(Arc::new(conn)));
        if !self.up.swap(true, Ordering::Relaxed) {
            self.changed_at_ms.store(crate::store::unix_now_ms(), Ordering::Relaxed);
            self.up_gauge.set(1);
            tracing::info!(instance = %self.instance, "shared state (Redis) reachable");
        }
    }
}

/// A reply's text, if it is one.
fn text(value: Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

/// The URL without its password, for the admin API.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://***@{}", &url[..scheme], &url[at + 1..]),
        _ => url.to_string(),
    }
}

fn default_instance_id() -> String {
    format!("{}-{}", hostname(), std::process::id())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "levitate".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(redact("redis://:secret@10.0.0.2:6379/2"), "redis://***@10.0.0.2:6379/2");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn replies_become_text_only_when_they_are_text() {
        assert_eq!(text(Value::BulkString(b"sig".to_vec())).as_deref(), Some("sig"));
        assert_eq!(text(Value::Nil), None);
        assert_eq!(text(Value::Int(3)), None);
    }

    #[tokio::test]
    async fn a_disabled_link_does_nothing() {
        let shared = Arc::new(SharedState::disabled());
        assert!(!shared.enabled() && !shared.is_up());
        let fetched = shared.fetch(&["call_1".to_string()], Some("conv")).await;
        assert!(fetched.signatures.is_empty() && fetched.binding.is_none());
        let mut outbox = Outbox::default();
        outbox.push(Write::Binding { session: "s".into(), account: "a".into(), ttl: Duration::from_secs(1) });
        shared.flush(outbox);
        assert_eq!(shared.status()["enabled"], false);
    }
}
