//! The composition root: builds the long-lived parts of the process once (live configuration, account pool,
//! credentials, upstream client, store, metrics, reload path, request-log queue) and hands them out.
//!
//! Only the request path (`gateway`), the admin API and the server wiring see the whole [`App`]; background
//! services receive the narrow handles they need (`Arc<LiveConfig>`, `Arc<AccountPool>`, a `Store`, …), so
//! nothing below this file imports it back.

use std::sync::Arc;

use levitate_filters::inner::ToolCache;

use crate::accounts::credentials::Credentials;
use crate::config::live::LiveConfig;
use crate::config::reload::{ReloadReport, Reloader, Trigger};
use crate::config::Snapshot;
use crate::ops::metrics::Metrics;
use crate::ops::request_log::RequestLog;
use crate::pool::AccountPool;
use crate::shared::SharedState;
use crate::store::{Store, StoreError};
use crate::tenancy::Tenancy;
use crate::tls::EdgeTls;
use crate::upstream::Upstream;

/// Distinct tool sets remembered; one per agent configuration in practice.
const TOOL_CACHE_ENTRIES: usize = 64;

pub struct App {
    /// The configuration in force (a request loads it once and keeps that version).
    pub config: Arc<LiveConfig>,
    pub pool: Arc<AccountPool>,
    pub credentials: Arc<Credentials>,
    /// The same credentials (token cache, single-flight refresh, back-off) over the background services'
    /// own upstream client: a pooled connection belongs to the runtime that opened it, and each Pingora
    /// service runs its own runtime, so the quota poller must not take or return the gateway's connections.
    pub background_credentials: Arc<Credentials>,
    pub upstream: Arc<Upstream>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// The one reload path, with its generation, last outcome and the settings fixed at start.
    pub reload: Arc<Reloader>,
    /// Queue of request-log records to the background writer.
    pub request_log: Arc<RequestLog>,
    /// Cleaned tool declarations by their raw JSON: agents resend identical tools on every request.
    pub tool_cache: ToolCache,
    /// The certificates the TLS listeners hand out; each accepted reload puts new ones in force.
    pub tls: Arc<EdgeTls>,
    /// Per-key counters (limits, budgets) and the usage table; they outlive reloads.
    pub tenancy: Arc<Tenancy>,
    /// The warmup scheduler's shared state (last runs, the admin trigger).
    pub warmup: Arc<crate::ops::warmup::WarmupState>,
    /// The cluster link (`shared_state`); a no-op without it.
    pub shared: Arc<SharedState>,
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
        let pool = Arc::new(AccountPool::with_store(&snapshot.accounts, &snapshot.pool, store.clone()));
        let credentials = Arc::new(Credentials::new(upstream.clone(), store.clone()));
        let background_upstream =
            Arc::new(Upstream::new(snapshot.upstream.connect_timeout, snapshot.upstream.read_timeout));
        let background_credentials = Arc::new(credentials.with_upstream(background_upstream));
        let snapshot = Arc::new(snapshot);
        let config = Arc::new(LiveConfig::new(snapshot.clone()));
        let metrics = Arc::new(Metrics::new());
        metrics.set_config_generation(1, 0);
        let pool_of_reload = pool.clone();
        let tls = Arc::new(EdgeTls::new(snapshot.tls.as_ref(), snapshot.admin.tls.as_ref()));
        let tls_of_reload = tls.clone();
        let apply = Box::new(move |next: &Snapshot| {
            pool_of_reload.configure(&next.pool);
            pool_of_reload.replace(&next.accounts);
            tls_of_reload.apply(next.tls.as_ref(), next.admin.tls.as_ref());
        });
        let shared = Arc::new(SharedState::new(snapshot.shared_state.as_ref(), &metrics));
        if shared.enabled() {
            pool.set_event_sink(shared.pool_sink());
            // `background_credentials` shares the same per-account state, this included.
            credentials.set_cluster(Arc::new(crate::shared::credentials::RedisCredentials(shared.clone())));
        }
        let reload = Arc::new(Reloader::new(snapshot, config.clone(), metrics.clone(), apply));
        let tenancy = Arc::new(Tenancy::new(store.clone()));
        Arc::new(App {
            config,
            pool,
            credentials,
            background_credentials,
            upstream,
            store,
            metrics,
            reload,
            request_log: Arc::new(RequestLog::new()),
            tool_cache: ToolCache::new(TOOL_CACHE_ENTRIES),
            tls,
            tenancy,
            warmup: Arc::new(crate::ops::warmup::WarmupState::default()),
            shared,
        })
    }

    /// The configuration in force now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.config.load()
    }

    /// Re-reads the configuration files and swaps in the result, or changes nothing and says why.
    pub fn reload(&self, trigger: Trigger) -> ReloadReport {
        self.reload.reload(trigger)
    }
}
