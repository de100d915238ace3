//! The thoughtSignature cache as the request path and the housekeeping see it.
//!
//! Signatures live in sled (see `store.rs`) so they survive restarts; the transforms look them up through
//! [`StoredSignatures`], and [`SignatureSweeper`] keeps the cache within its TTL and size bound in the
//! background, off the request path. In a cluster (`crate::shared`) misses are asked of Redis in one round
//! trip after the transform ([`from_cluster`]), and what a response captured is written there when it ends ([`share`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use levitate_filters::signature::{CapturedSignature, SignatureLookup};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;

use super::ctx::RequestCtx;
use crate::app::App;
use crate::config::live::LiveConfig;
use crate::shared::{MissRecorder, Write};
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
        if found.is_none() {
            // Another instance may have captured it: the gateway asks the cluster after the transform.
            MissRecorder::note(tool_call_id);
        }
        found
    }
}

/// Stores the signatures a response carried, under the keys the next request will look for (and, in a
/// cluster, queues them for the other instances: see [`share`]).
pub(super) fn remember(app: &App, ctx: &mut RequestCtx, captured: Vec<CapturedSignature>) {
    let ttl = app.shared.enabled().then(|| app.snapshot().signature_ttl);
    for c in captured {
        if let Err(e) = app.store.put_signature(&c.tool_call_id, &c.signature) {
            tracing::warn!(error = %e, "could not store a thoughtSignature");
        }
        if let Some(ttl) = ttl {
            ctx.shared_out.push(Write::Signature { store_key: c.tool_call_id, value: c.signature, ttl });
        }
    }
}

/// Asks the cluster, in one round trip, for what the transform missed locally (`missed` signature keys) and
/// for the session's binding unless it is bound here, and adopts the answers: signatures into the local
/// cache, the binding into the pool. Returns whether any signature came (then the transform runs again).
pub(super) async fn from_cluster(app: &App, missed: &[String], session: Option<&str>) -> bool {
    let unbound = session.filter(|s| app.pool.bound_account(s).is_none());
    if missed.is_empty() && unbound.is_none() {
        return false;
    }
    let fetched = app.shared.fetch(missed, unbound).await;
    if let (Some(session), Some(account)) = (unbound, fetched.binding) {
        app.pool.adopt_binding(session, &account);
    }
    for (key, signature) in &fetched.signatures {
        if let Err(e) = app.store.put_signature(key, signature) {
            tracing::warn!(error = %e, "could not store a shared thoughtSignature");
        }
    }
    !fetched.signatures.is_empty()
}

/// When a request ends: its signatures and the session's binding go to the cluster in one write.
pub(super) fn share(app: &App, ctx: &mut RequestCtx) {
    if !app.shared.enabled() {
        return;
    }
    let mut outbox = std::mem::take(&mut ctx.shared_out);
    if let Some(session) = ctx.session.take() {
        if let Some(account) = app.pool.bound_account(&session) {
            let ttl = app.snapshot().pool.affinity_ttl;
            outbox.push(Write::Binding { session, account, ttl });
        }
    }
    app.shared.flush(outbox);
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
