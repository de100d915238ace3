//! The background service that keeps the pool's quota snapshots fresh: it asks `fetchAvailableModels` for
//! every usable account on an interval (`pool.quota_interval`), records the answers in the pool and the
//! store (so a restart knows them before the first poll), notes which models each account lists (model
//! availability, `pool::models`), and prunes ended lockouts.
//!
//! It holds narrow handles (the settings receiver, the pool, the credentials, the store) rather than the
//! application, so the pool folder depends on nothing above it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use serde_json::{json, Value};

use crate::accounts::credentials::{AccessToken, CredentialError, Credentials};
use crate::config::live::LiveConfig;
use crate::config::{AccountSpec, Snapshot};
use crate::pool::models::parse_model_ids;
use crate::pool::quota::parse_available_models;
use crate::pool::AccountPool;
use crate::store::{unix_now, QuotaRecord, Store};

/// Accounts polled at once: enough that a slow account does not delay the round, few enough to stay polite.
const POLL_CONCURRENCY: usize = 8;

/// The background task polling `fetchAvailableModels` for every usable account; also prunes ended lockouts.
/// Add it to the Pingora server with `background_service("levitate quota", QuotaPoller::new(..))`.
pub struct QuotaPoller {
    config: Arc<LiveConfig>,
    pool: Arc<AccountPool>,
    credentials: Arc<Credentials>,
    store: Store,
}

impl QuotaPoller {
    /// The poller reads the settings in force, asks Google with the accounts' credentials, and writes what it
    /// learns into the pool and the store: those four handles are all it holds.
    pub fn new(
        config: Arc<LiveConfig>,
        pool: Arc<AccountPool>,
        credentials: Arc<Credentials>,
        store: Store,
    ) -> Self {
        QuotaPoller { config, pool, credentials, store }
    }

    /// One round over the accounts, a few at a time: one slow or unreachable account does not hold up the
    /// others' snapshots. Failures are logged once per account per round.
    pub async fn poll_once(&self) {
        let snapshot = self.config.load();
        let accounts = self.pool.accounts();
        futures::stream::iter(accounts.iter().filter(|a| self.pool.is_usable(&a.id)))
            .for_each_concurrent(POLL_CONCURRENCY, |account| self.poll_account(account, &snapshot))
            .await;
        self.pool.prune();
    }

    async fn fetch_available_models(
        &self,
        account: &AccountSpec,
        snapshot: &Snapshot,
        token: &AccessToken,
        project: Option<&str>,
    ) -> Result<Value, CredentialError> {
        let body = match project {
            Some(project) => json!({ "project": project }),
            None => json!({}),
        };
        self.credentials.control_call(account, &snapshot.upstream, token, "fetchAvailableModels", body).await
    }

    async fn poll_account(&self, account: &AccountSpec, snapshot: &Snapshot) {
        let token = match self.credentials.access_token(account, &snapshot.upstream).await {
            Ok(token) => token,
            Err(e) => {
                self.pool.on_credential_error(account, &e);
                tracing::debug!(account = %account.email, error = %e, "quota poll: no token");
                return;
            }
        };
        let project = match self.credentials.project(account, &snapshot.upstream, &token).await {
            Ok(project) => project,
            Err(e) => {
                self.pool.on_credential_error(account, &e);
                tracing::debug!(account = %account.email, error = %e, "quota poll: no project");
                return;
            }
        };
        // PROTOCOL.md §4: a 403 sent with the project is asked again without it; a second 403 means Google
        // has shut the account out, and it is taken out of the pool until an operator acts.
        let answer = match self.fetch_available_models(account, snapshot, &token, Some(&project.id)).await {
            Err(CredentialError::Discovery { status: 403, .. }) => {
                match self.fetch_available_models(account, snapshot, &token, None).await {
                    Err(CredentialError::Discovery { status: 403, message, .. }) => {
                        self.pool.forbid(account, "PERMISSION_DENIED", None, &message);
                        return;
                    }
                    other => other,
                }
            }
            other => other,
        };
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) => {
                self.pool.on_credential_error(account, &e);
                tracing::warn!(account = %account.email, error = %e, "quota poll failed");
                return;
            }
        };
        if let Some(models) = parse_model_ids(&answer) {
            self.pool.record_models(&account.id, models);
        }
        let now = unix_now();
        for (model, view) in parse_available_models(&answer, now) {
            let record = QuotaRecord {
                account: account.id.clone(),
                model: model.clone(),
                remaining_fraction: view.remaining_fraction,
                reset_ms: view.reset_ms,
                fetched_at: now,
            };
            self.pool.record_quota(&account.id, &model, view);
            if let Err(e) = self.store.put_quota(&record) {
                tracing::debug!(error = %e, "could not persist a quota snapshot");
            }
        }
    }
}

#[async_trait]
impl BackgroundService for QuotaPoller {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            let interval = self.config.load().pool.quota_interval;
            if !interval.is_zero() {
                self.poll_once().await;
            }
            // Polling off: look at the setting again now and then, in case a reload turns it on.
            let wait = if interval.is_zero() { Duration::from_secs(60) } else { interval };
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}
