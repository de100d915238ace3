//! Quota awareness: what `fetchAvailableModels` says is left of each account's quota, per model.
//!
//! A 429 tells us about quota only after a request has been spent on it. A Pingora background service
//! ([`QuotaPoller`]) asks Google on an interval (`pool.quota_interval`) instead, and the pool skips an account
//! for a model whose remaining fraction is under `pool.quota_floor` (or exhausted) until its reset time.
//! Snapshots are persisted, so a restart knows them before the first poll.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use serde_json::{json, Value};

use crate::accounts::credentials::{AccessToken, CredentialError};
use crate::app::App;
use crate::config::{AccountSpec, Snapshot};
use crate::store::{unix_now, QuotaRecord};

/// Accounts polled at once: enough that a slow account does not delay the round, few enough to stay polite.
const POLL_CONCURRENCY: usize = 8;
/// How long a below-floor snapshot without a reset time keeps the account out for that model.
const UNKNOWN_RESET_HOLD_MS: u64 = 5 * 60 * 1000;

/// One model's quota as last reported.
#[derive(Clone, Debug, PartialEq)]
pub struct QuotaView {
    pub remaining_fraction: f64,
    pub reset_ms: Option<u64>,
    /// Unix seconds of the fetch.
    pub fetched_at: u64,
}

impl QuotaView {
    /// When the account may serve this model again, if the snapshot keeps it out at `now_ms`.
    pub fn blocked_until(&self, floor: f64, now_ms: u64) -> Option<u64> {
        let below = self.remaining_fraction <= 0.0 || self.remaining_fraction < floor;
        if !below {
            return None;
        }
        let until = self.reset_ms.unwrap_or(self.fetched_at * 1000 + UNKNOWN_RESET_HOLD_MS);
        (until > now_ms).then_some(until)
    }
}

/// Quota snapshots for every account, by model.
#[derive(Default)]
pub struct QuotaBook {
    by_account: RwLock<HashMap<String, HashMap<String, QuotaView>>>,
}

impl QuotaBook {
    pub fn record(&self, account: &str, model: &str, view: QuotaView) {
        if let Ok(mut map) = self.by_account.write() {
            map.entry(account.to_string()).or_default().insert(model.to_string(), view);
        }
    }

    pub fn view(&self, account: &str, model: &str) -> Option<QuotaView> {
        self.by_account.read().ok()?.get(account)?.get(model).cloned()
    }

    /// The account's snapshots, sorted by model.
    pub fn of_account(&self, account: &str) -> Vec<(String, QuotaView)> {
        let Ok(map) = self.by_account.read() else { return Vec::new() };
        let mut all: Vec<(String, QuotaView)> = map
            .get(account)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

/// The per-model quotas in a `fetchAvailableModels` answer (PROTOCOL.md §4): a `resetTime` without a
/// `remainingFraction` means exhausted; internal `chat_*` / `tab_*` ids are skipped.
pub fn parse_available_models(answer: &Value, fetched_at: u64) -> Vec<(String, QuotaView)> {
    let Some(models) = answer.get("models").and_then(Value::as_object) else { return Vec::new() };
    let mut out = Vec::new();
    for (id, model) in models {
        if id.starts_with("chat_") || id.starts_with("tab_") {
            continue;
        }
        let Some(info) = model.get("quotaInfo") else { continue };
        let fraction = info.get("remainingFraction").and_then(Value::as_f64);
        let reset_ms = info
            .get("resetTime")
            .and_then(Value::as_str)
            .and_then(levitate_filters::retry_hint::parse_rfc3339_ms);
        let remaining_fraction = match (fraction, reset_ms) {
            (Some(f), _) => f.clamp(0.0, 1.0),
            (None, Some(_)) => 0.0,
            (None, None) => continue,
        };
        out.push((id.clone(), QuotaView { remaining_fraction, reset_ms, fetched_at }));
    }
    out
}

/// The background task polling `fetchAvailableModels` for every usable account; also prunes ended lockouts.
/// Add it to the Pingora server with `background_service("levitate quota", QuotaPoller::new(app))`.
pub struct QuotaPoller {
    app: Arc<App>,
}

impl QuotaPoller {
    pub fn new(app: Arc<App>) -> Self {
        QuotaPoller { app }
    }

    /// One round over the accounts, a few at a time: one slow or unreachable account does not hold up the
    /// others' snapshots. Failures are logged once per account per round.
    pub async fn poll_once(&self) {
        let snapshot = self.app.snapshot();
        let accounts = self.app.pool.accounts();
        futures::stream::iter(accounts.iter().filter(|a| self.app.pool.is_usable(&a.id)))
            .for_each_concurrent(POLL_CONCURRENCY, |account| self.poll_account(account, &snapshot))
            .await;
        self.app.pool.prune();
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
        self.app
            .credentials
            .control_call(account, &snapshot.upstream, token, "fetchAvailableModels", body)
            .await
    }

    async fn poll_account(&self, account: &AccountSpec, snapshot: &Snapshot) {
        let token = match self.app.credentials.access_token(account, &snapshot.upstream).await {
            Ok(token) => token,
            Err(e) => {
                self.app.pool.on_credential_error(account, &e);
                tracing::debug!(account = %account.email, error = %e, "quota poll: no token");
                return;
            }
        };
        let project = match self.app.credentials.project(account, &snapshot.upstream, &token).await {
            Ok(project) => project,
            Err(e) => {
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
                        self.app.pool.forbid(account, "PERMISSION_DENIED", None, &message);
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
                tracing::warn!(account = %account.email, error = %e, "quota poll failed");
                return;
            }
        };
        let now = unix_now();
        for (model, view) in parse_available_models(&answer, now) {
            let record = QuotaRecord {
                account: account.id.clone(),
                model: model.clone(),
                remaining_fraction: view.remaining_fraction,
                reset_ms: view.reset_ms,
                fetched_at: now,
            };
            self.app.pool.record_quota(&account.id, &model, view);
            if let Err(e) = self.app.store.put_quota(&record) {
                tracing::debug!(error = %e, "could not persist a quota snapshot");
            }
        }
    }
}

#[async_trait]
impl BackgroundService for QuotaPoller {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            let interval = self.app.snapshot().pool.quota_interval;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exhausted_and_partial_models_are_read() {
        let answer = json!({"models": {
            "gemini-3-flash": {"quotaInfo": {"remainingFraction": 0.87, "resetTime": "2026-09-08T14:22:38Z"}},
            "claude-sonnet-4-6": {"quotaInfo": {"resetTime": "1970-01-01T00:01:40Z"}},
            "chat_20706": {"quotaInfo": {"remainingFraction": 1.0}},
            "no-quota": {"displayName": "x"}
        }});
        let mut views = parse_available_models(&answer, 7);
        views.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(views.len(), 2);
        assert_eq!(views[0].0, "claude-sonnet-4-6");
        assert_eq!(views[0].1, QuotaView { remaining_fraction: 0.0, reset_ms: Some(100_000), fetched_at: 7 });
        assert_eq!(views[1].1.remaining_fraction, 0.87);
    }

    #[test]
    fn below_the_floor_keeps_the_account_out_until_the_reset() {
        let view = QuotaView { remaining_fraction: 0.05, reset_ms: Some(10_000), fetched_at: 0 };
        assert_eq!(view.blocked_until(0.1, 5_000), Some(10_000));
        assert_eq!(view.blocked_until(0.1, 10_000), None, "the reset came");
        assert_eq!(view.blocked_until(0.0, 5_000), None, "above a zero floor");
        let empty = QuotaView { remaining_fraction: 0.0, reset_ms: None, fetched_at: 1 };
        assert_eq!(empty.blocked_until(0.0, 2_000), Some(1_000 + UNKNOWN_RESET_HOLD_MS));
    }
}
