//! The request log: one metadata record per client request, kept in the store for `GET /admin/requests`.
//!
//! Never prompt or completion content: who (API-key name), what (protocol, route, models, account), how it
//! went (status, attempts, latency, time to first byte, tokens). The `logging` hook hands a record to a
//! bounded channel and returns; a background service writes records to sled and keeps the log bounded by
//! count and age. When the writer falls behind, records are dropped and counted rather than slowing requests.
//!
//! Every exit path drains the queue first ([`RequestLog::drain`]: the writer writes what is queued and
//! flushes the store), so a stop or an upgrade loses no record of a request that was answered.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::config::live::LiveConfig;
use crate::store::Store;

/// Records waiting for the writer; beyond this they are dropped (and counted).
const CHANNEL_CAPACITY: usize = 8192;
/// How often the log is trimmed to its bounds.
const PRUNE_INTERVAL: Duration = Duration::from_secs(30);
/// How long the writer lets records gather once one has arrived. Short enough that `GET /admin/requests`
/// shows a request a moment after it ended; long enough that at tens of thousands of requests per second the
/// writer wakes a few dozen times a second. At [`CHANNEL_CAPACITY`] records per window the queue would
/// overflow only beyond 400,000 requests per second.
const BATCH_WINDOW: Duration = Duration::from_millis(20);

/// One request's metadata.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Unix milliseconds the request arrived at.
    pub at_ms: u64,
    pub key_name: Option<String>,
    /// The client's address: the TCP peer, or what a trusted proxy forwarded (`server.trusted_proxies`).
    #[serde(default)]
    pub client_ip: Option<String>,
    pub protocol: String,
    pub route: String,
    pub client_model: Option<String>,
    pub upstream_model: Option<String>,
    pub account: Option<String>,
    pub status: u16,
    pub attempts: u32,
    pub latency_ms: u64,
    pub ttfb_ms: Option<u64>,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub tokens_thoughts: u64,
    pub tokens_cached: u64,
    /// The upstream stream ended without a finish reason.
    pub truncated: bool,
}

/// A request to the writer to write everything queued now; answered with how many records it wrote.
type DrainRequest = oneshot::Sender<usize>;

/// The hot-path side: a bounded queue to the writer.
pub struct RequestLog {
    sender: mpsc::Sender<RequestRecord>,
    receiver: Mutex<Option<mpsc::Receiver<RequestRecord>>>,
    drains: mpsc::UnboundedSender<DrainRequest>,
    drain_receiver: Mutex<Option<mpsc::UnboundedReceiver<DrainRequest>>>,
}

impl Default for RequestLog {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestLog {
    pub fn new() -> Self {
        let (sender, receiver) = mpsc::channel(CHANNEL_CAPACITY);
        let (drains, drain_receiver) = mpsc::unbounded_channel();
        RequestLog {
            sender,
            receiver: Mutex::new(Some(receiver)),
            drains,
            drain_receiver: Mutex::new(Some(drain_receiver)),
        }
    }

    /// Has the writer write every record queued so far and flush the store; call before the process exits.
    /// Returns how many records that wrote, or `None` when the writer did not answer within `wait` (it is
    /// not running, or the store is stuck: the exit must not hang on it).
    pub async fn drain(&self, wait: Duration) -> Option<usize> {
        let (reply, answer) = oneshot::channel();
        self.drains.send(reply).ok()?;
        tokio::time::timeout(wait, answer).await.ok()?.ok()
    }

    /// Queues a record without waiting; false when the queue is full (the record is dropped).
    pub fn record(&self, record: RequestRecord) -> bool {
        self.sender.try_send(record).is_ok()
    }

    fn take_receiver(&self) -> Option<mpsc::Receiver<RequestRecord>> {
        self.receiver.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    fn take_drain_receiver(&self) -> Option<mpsc::UnboundedReceiver<DrainRequest>> {
        self.drain_receiver.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// Reads up to `limit` records, newest first; unreadable records are skipped.
pub fn recent(store: &Store, limit: usize) -> Vec<RequestRecord> {
    match store.request_records(limit) {
        Ok(raw) => raw.iter().filter_map(|r| serde_json::from_slice(r).ok()).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the request log");
            Vec::new()
        }
    }
}

/// The background writer: drains the queue into the store and trims the log to its bounds.
pub struct RequestLogWriter {
    log: Arc<RequestLog>,
    store: Store,
    config: Arc<LiveConfig>,
}

impl RequestLogWriter {
    pub fn new(log: Arc<RequestLog>, store: Store, config: Arc<LiveConfig>) -> Self {
        RequestLogWriter { log, store, config }
    }

    fn write(&self, record: &RequestRecord) {
        let written = serde_json::to_vec(record)
            .map_err(|e| e.to_string())
            .and_then(|raw| self.store.put_request_record(record.at_ms, &raw).map_err(|e| e.to_string()));
        if let Err(e) = written {
            tracing::warn!(error = %e, "cannot write a request log record");
        }
    }

    /// Writes every record queued now, without waiting for more; returns how many.
    fn write_queued(&self, receiver: &mut mpsc::Receiver<RequestRecord>) -> usize {
        let mut written = 0;
        while let Ok(record) = receiver.try_recv() {
            self.write(&record);
            written += 1;
        }
        written
    }

    /// Writes what is queued now, then flushes the store so it survives the exit that follows.
    fn drain_now(&self, receiver: &mut mpsc::Receiver<RequestRecord>) -> usize {
        let written = self.write_queued(receiver);
        if let Err(e) = self.store.flush() {
            tracing::warn!(error = %e, "cannot flush the request log");
        }
        written
    }

    fn prune(&self) {
        let bounds = self.config.load().request_log.clone();
        let cutoff_ms = crate::store::unix_now().saturating_sub(bounds.max_age.as_secs()) * 1000;
        match self.store.prune_request_records(bounds.max_entries, cutoff_ms) {
            Ok(0) => {}
            Ok(n) => tracing::debug!(removed = n, "request log trimmed"),
            Err(e) => tracing::warn!(error = %e, "cannot trim the request log"),
        }
    }
}

#[async_trait]
impl BackgroundService for RequestLogWriter {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let (Some(mut receiver), Some(mut drains)) =
            (self.log.take_receiver(), self.log.take_drain_receiver())
        else {
            return;
        };
        let mut prune = tokio::time::interval(PRUNE_INTERVAL);
        // In-flight requests keep logging during the grace period: after shutdown starts, keep writing (and
        // answering drains) until the runtime stops; only the trimming ends.
        let mut stopping = false;
        loop {
            tokio::select! {
                record = receiver.recv() => match record {
                    Some(record) => {
                        // Let the batch gather without polling the queue (so senders wake nobody); a drain
                        // request cuts the window short.
                        let drain = tokio::select! {
                            _ = tokio::time::sleep(BATCH_WINDOW) => None,
                            Some(reply) = drains.recv() => Some(reply),
                        };
                        self.write(&record);
                        match drain {
                            Some(reply) => {
                                let _ = reply.send(1 + self.drain_now(&mut receiver));
                            }
                            None => {
                                self.write_queued(&mut receiver);
                            }
                        }
                    }
                    None => break,
                },
                Some(reply) = drains.recv() => {
                    let _ = reply.send(self.drain_now(&mut receiver));
                }
                _ = prune.tick(), if !stopping => self.prune(),
                _ = shutdown.changed(), if !stopping => stopping = true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_instead_of_blocking() {
        let log = RequestLog::new();
        let accepted = (0..CHANNEL_CAPACITY + 10).filter(|_| log.record(RequestRecord::default())).count();
        assert_eq!(accepted, CHANNEL_CAPACITY);
        assert!(log.take_receiver().is_some());
        assert!(log.take_receiver().is_none(), "only one writer may own the queue");
    }

    /// The exit path's guarantee: once `drain` answers, every record queued before it is in the store, even
    /// after shutdown has started.
    #[tokio::test]
    async fn drain_writes_every_queued_record_before_answering() {
        let dir = std::env::temp_dir().join(format!("levitate-request-log-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
        write(
            "levitate.yaml",
            "listen: 127.0.0.1:9000\nauth:\n  api_keys:\n    - { name: default, key: k }\n",
        );
        write("accounts.yaml", "accounts:\n  - { email: a@x.com, refresh_token: r1 }\n");
        write("routes.yaml", "aliases: {}\n");
        let snapshot = crate::config::Snapshot::load(&dir.join("levitate.yaml")).unwrap();
        let config = Arc::new(LiveConfig::new(Arc::new(snapshot)));
        let store = Store::temporary().unwrap();
        let log = Arc::new(RequestLog::new());
        let writer = RequestLogWriter::new(log.clone(), store.clone(), config);
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move { writer.start(shutdown).await });
        stop.send(true).unwrap();
        for i in 0..500 {
            assert!(log.record(RequestRecord { at_ms: 1_000 + i, ..RequestRecord::default() }));
        }
        assert!(log.drain(Duration::from_secs(30)).await.is_some(), "the writer answers");
        assert_eq!(recent(&store, 1000).len(), 500, "every queued record was written before the answer");
        task.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn records_carry_no_content_fields() {
        let json = serde_json::to_value(RequestRecord::default()).unwrap();
        let keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        for forbidden in ["messages", "prompt", "content", "completion", "body", "key"] {
            assert!(!keys.contains(&forbidden), "{forbidden} in {keys:?}");
        }
    }
}
