//! The request log: one metadata record per client request, kept in the store for `GET /admin/requests`.
//!
//! Never prompt or completion content: who (API-key name), what (protocol, route, models, account), how it
//! went (status, attempts, latency, time to first byte, tokens). The `logging` hook hands a record to a
//! bounded channel and returns; a background service writes records to sled and keeps the log bounded by
//! count and age. When the writer falls behind, records are dropped and counted rather than slowing requests.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::config::live::LiveConfig;
use crate::store::Store;

/// Records waiting for the writer; beyond this they are dropped (and counted).
const CHANNEL_CAPACITY: usize = 8192;
/// How often the log is trimmed to its bounds.
const PRUNE_INTERVAL: Duration = Duration::from_secs(30);

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

/// The hot-path side: a bounded queue to the writer.
pub struct RequestLog {
    sender: mpsc::Sender<RequestRecord>,
    receiver: Mutex<Option<mpsc::Receiver<RequestRecord>>>,
}

impl Default for RequestLog {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestLog {
    pub fn new() -> Self {
        let (sender, receiver) = mpsc::channel(CHANNEL_CAPACITY);
        RequestLog { sender, receiver: Mutex::new(Some(receiver)) }
    }

    /// Queues a record without waiting; false when the queue is full (the record is dropped).
    pub fn record(&self, record: RequestRecord) -> bool {
        self.sender.try_send(record).is_ok()
    }

    fn take_receiver(&self) -> Option<mpsc::Receiver<RequestRecord>> {
        self.receiver.lock().unwrap_or_else(PoisonError::into_inner).take()
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
        let Some(mut receiver) = self.log.take_receiver() else {
            return;
        };
        let mut prune = tokio::time::interval(PRUNE_INTERVAL);
        loop {
            tokio::select! {
                record = receiver.recv() => match record {
                    Some(record) => self.write(&record),
                    None => break,
                },
                _ = prune.tick() => self.prune(),
                _ = shutdown.changed() => break,
            }
        }
        // In-flight requests keep logging during the grace period: keep writing until the runtime stops.
        while let Some(record) = receiver.recv().await {
            self.write(&record);
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

    #[test]
    fn records_carry_no_content_fields() {
        let json = serde_json::to_value(RequestRecord::default()).unwrap();
        let keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        for forbidden in ["messages", "prompt", "content", "completion", "body", "key"] {
            assert!(!keys.contains(&forbidden), "{forbidden} in {keys:?}");
        }
    }
}
