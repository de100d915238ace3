//! The process-wide state every service shares: the live configuration and the long-lived parts built
//! around it (account pool, credentials, upstream client, store, metrics).
//!
//! The configuration is one `Snapshot` behind `ArcSwap`: a request loads it once and keeps that version
//! for its whole life, while a reload builds a complete new one and swaps it in with a single store.

use std::sync::Arc;

use arc_swap::ArcSwap;
use levitate_filters::inner::ToolCache;

use crate::config::Snapshot;
use crate::credentials::Credentials;
use crate::metrics::Metrics;
use crate::pool::AccountPool;
use crate::reload::{ReloadReport, ReloadState, Trigger};
use crate::request_log::RequestLog;
use crate::store::{Store, StoreError};
use crate::upstream::Upstream;

/// Distinct tool sets remembered; one per agent configuration in practice.
const TOOL_CACHE_ENTRIES: usize = 64;

pub struct App {
    snapshot: ArcSwap<Snapshot>,
    pub pool: AccountPool,
    pub credentials: Credentials,
    pub upstream: Arc<Upstream>,
    pub store: Store,
    pub metrics: Metrics,
    /// Reload generation, last outcome, and the settings fixed at start (see `reload.rs`).
    pub reload: ReloadState,
    /// Queue of request-log records to the background writer.
    pub request_log: RequestLog,
    /// Cleaned tool declarations by their raw JSON: agents resend identical tools on every request.
    pub tool_cache: ToolCache,
}

impl App {
    /// Opens the store named by the configuration and builds everything around it.
    pub fn new(snapshot: Snapshot) -> Result<Arc<App>, StoreError> {
        let store = Store::open(&snapshot.store_path)?;
        Ok(Self::with_store(snapshot, store))
    }

    pub fn with_store(snapshot: Snapshot, store: Store) -> Arc<App> {
        let upstream =
            Arc::new(Upstream::new(snapshot.upstream.connect_timeout, snapshot.upstream.read_timeout));
        let pool = AccountPool::with_store(&snapshot.accounts, &snapshot.pool, store.clone());
        let credentials = Credentials::new(upstream.clone(), store.clone());
        let snapshot = Arc::new(snapshot);
        let metrics = Metrics::new();
        metrics.set_config_generation(1, 0);
        Arc::new(App {
            reload: ReloadState::new(snapshot.clone()),
            request_log: RequestLog::new(),
            tool_cache: ToolCache::new(TOOL_CACHE_ENTRIES),
            snapshot: ArcSwap::new(snapshot),
            pool,
            credentials,
            upstream,
            store,
            metrics,
        })
    }

    /// The configuration in force now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Re-reads the configuration files and swaps in the result, or changes nothing and says why.
    pub fn reload(&self, trigger: Trigger) -> ReloadReport {
        crate::reload::reload(self, trigger)
    }

    /// Makes `next` the configuration in force; in-flight requests finish on the version they loaded.
    pub fn install(&self, next: Snapshot) {
        self.pool.configure(&next.pool);
        self.pool.replace(&next.accounts);
        self.snapshot.store(Arc::new(next));
    }
}
