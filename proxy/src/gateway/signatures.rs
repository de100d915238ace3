//! The thoughtSignature cache as the request path and the housekeeping see it.
//!
//! Signatures live in sled (see `store.rs`) so they survive restarts; the transforms look them up through
//! [`StoredSignatures`], and [`SignatureSweeper`] keeps the cache within its TTL and size bound in the
//! background, off the request path.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use levitate_filters::signature::{CapturedSignature, SignatureLookup};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;

use crate::app::App;
use crate::config::live::LiveConfig;
use crate::store::Store;

/// How often expired and excess signatures are removed.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Signature lookups for one request, against the store, counted in the metrics.
pub struct StoredSignatures<'a>(pub &'a App);

impl SignatureLookup for StoredSignatures<'_> {
    fn signature_for_tool_call(&self, tool_call_id: &str) -> Option<String> {
        let ttl = self.0.snapshot().signature_ttl;
        let found = self.0.store.signature(tool_call_id, ttl).ok().flatten();
        self.0.metrics.signature_lookup(found.is_some());
        found
    }
}

/// Stores the signatures a response carried, under the keys the next request will look for.
pub fn remember(app: &App, captured: Vec<CapturedSignature>) {
    for c in captured {
        if let Err(e) = app.store.put_signature(&c.tool_call_id, &c.signature) {
            tracing::warn!(error = %e, "could not store a thoughtSignature");
        }
    }
}

/// Background service: prunes the cache to `store.signature_ttl` and `store.max_signatures`.
pub struct SignatureSweeper {
    store: Store,
    config: Arc<LiveConfig>,
}

impl SignatureSweeper {
    pub fn new(store: Store, config: Arc<LiveConfig>) -> Self {
        SignatureSweeper { store, config }
    }
}

#[async_trait]
impl BackgroundService for SignatureSweeper {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(SWEEP_INTERVAL) => {}
            }
            let snapshot = self.config.load();
            let store = self.store.clone();
            let (ttl, max) = (snapshot.signature_ttl, snapshot.max_signatures);
            // A full scan of the tree: keep it off the async workers.
            match tokio::task::spawn_blocking(move || store.prune_signatures(ttl, max)).await {
                Ok(Ok(0)) => {}
                Ok(Ok(removed)) => tracing::debug!(removed, "signature cache pruned"),
                Ok(Err(e)) => tracing::warn!(error = %e, "signature cache pruning failed"),
                Err(e) => tracing::warn!(error = %e, "signature cache pruning task failed"),
            }
        }
    }
}
