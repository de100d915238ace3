//! The warmup scheduler (`warmup:` in levitate.yaml, off by default): one minimal request per usable account
//! and model family at the configured times, so each account's quota window starts when the operator
//! chooses rather than at the first client request of the day.
//!
//! It is bounded by construction: a round sends exactly one request per account × family, in order, and
//! never retries one (a refused warmup is logged, counted and shown; the next slot tries again). Rounds run
//! at the schedule's slots, or when the admin API asks (`POST /admin/warmup`, answered with the round's
//! report). What each account's last round did is kept for `GET /admin/warmup`; every request is counted in
//! `levitate_warmup_total{account,family,outcome}`.
//!
//! The service runs on its own runtime with its own upstream client (pooled upstream connections belong to
//! the runtime that opened them), so an admin trigger is a message to it, not a call made from the admin
//! service's runtime.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use serde::Serialize;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use crate::accounts::credentials::{CredentialError, Credentials};
use crate::config::live::LiveConfig;
use crate::config::{AccountSpec, Snapshot};
use crate::ops::metrics::Metrics;
use crate::pool::AccountPool;
use crate::store::{unix_now, unix_now_ms};

/// Accounts warmed at once.
const CONCURRENCY: usize = 4;
/// How often an idle scheduler looks at the configuration again (a reload may turn warmup on).
const RECHECK: Duration = Duration::from_secs(60);
/// The prompt: the smallest request Google counts as a use of the model.
const PROMPT: &str = "Hi";

/// One warmup request's result.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct WarmResult {
    pub account: String,
    pub family: String,
    pub model: String,
    /// `ok`, `rate_limited`, `refused`, `token_error`, `project_error` or `network_error`.
    pub outcome: &'static str,
    /// The upstream status of a refusal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

/// One round: when, why, and every request's result.
#[derive(Clone, Debug, Serialize)]
pub struct RoundReport {
    pub at_ms: u64,
    /// `schedule` or `admin`.
    pub trigger: &'static str,
    pub results: Vec<WarmResult>,
}

/// Why an admin trigger got no report.
#[derive(Debug, thiserror::Error)]
pub enum WarmupError {
    #[error("warmup is not configured (add a warmup: section to levitate.yaml)")]
    NotConfigured,
    #[error("the warmup service is not running")]
    NotRunning,
}

/// What the admin API sees of warmup, shared with the service.
pub struct WarmupState {
    /// Each account's last round (by account id).
    last: Mutex<BTreeMap<String, RoundReport>>,
    trigger: mpsc::Sender<oneshot::Sender<RoundReport>>,
    requests: Mutex<Option<mpsc::Receiver<oneshot::Sender<RoundReport>>>>,
}

impl Default for WarmupState {
    fn default() -> Self {
        let (trigger, requests) = mpsc::channel(4);
        WarmupState { last: Mutex::new(BTreeMap::new()), trigger, requests: Mutex::new(Some(requests)) }
    }
}

impl WarmupState {
    /// Asks the service for a round now and waits for its report.
    pub async fn run_now(&self, snapshot: &Snapshot) -> Result<RoundReport, WarmupError> {
        if snapshot.warmup.is_none() {
            return Err(WarmupError::NotConfigured);
        }
        let (tx, rx) = oneshot::channel();
        self.trigger.send(tx).await.map_err(|_| WarmupError::NotRunning)?;
        rx.await.map_err(|_| WarmupError::NotRunning)
    }

    /// Each account's last round, for the admin API.
    pub fn last_runs(&self) -> serde_json::Value {
        let last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        json!({ "accounts": &*last })
    }

    /// One account's last round, for the console's accounts table.
    pub fn last_of(&self, account: &str) -> Option<RoundReport> {
        self.last.lock().unwrap_or_else(PoisonError::into_inner).get(account).cloned()
    }

    fn remember(&self, report: &RoundReport) {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let mut by_account: BTreeMap<String, Vec<WarmResult>> = BTreeMap::new();
        for r in &report.results {
            by_account.entry(r.account.clone()).or_default().push(r.clone());
        }
        for (account, results) in by_account {
            last.insert(account, RoundReport { at_ms: report.at_ms, trigger: report.trigger, results });
        }
    }
}

/// The background service; add it with `background_service("levitate warmup", Warmup::new(..))`.
pub struct Warmup {
    config: Arc<LiveConfig>,
    pool: Arc<AccountPool>,
    credentials: Arc<Credentials>,
    metrics: Arc<Metrics>,
    state: Arc<WarmupState>,
}

impl Warmup {
    pub fn new(
        config: Arc<LiveConfig>,
        pool: Arc<AccountPool>,
        credentials: Arc<Credentials>,
        metrics: Arc<Metrics>,
        state: Arc<WarmupState>,
    ) -> Self {
        Warmup { config, pool, credentials, metrics, state }
    }

    /// One round: every usable account × every configured family, one request each, no retries.
    pub async fn round(&self, trigger: &'static str) -> RoundReport {
        let snapshot = self.config.load();
        let at_ms = unix_now_ms();
        let Some(settings) = snapshot.warmup.as_ref() else {
            return RoundReport { at_ms, trigger, results: Vec::new() };
        };
        let accounts: Vec<Arc<AccountSpec>> =
            self.pool.accounts().into_iter().filter(|a| self.pool.is_usable(&a.id)).collect();
        let families = &settings.families;
        let results: Vec<Vec<WarmResult>> = futures::stream::iter(accounts)
            .map(|account| {
                let snapshot = &snapshot;
                async move {
                    let mut out = Vec::with_capacity(families.len());
                    for (family, model) in families {
                        out.push(self.warm(&account, snapshot, family, model).await);
                    }
                    out
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut results: Vec<WarmResult> = results.into_iter().flatten().collect();
        results.sort_by(|a, b| (&a.account, &a.family).cmp(&(&b.account, &b.family)));
        let report = RoundReport { at_ms, trigger, results };
        self.state.remember(&report);
        report
    }

    async fn warm(
        &self,
        account: &AccountSpec,
        snapshot: &Snapshot,
        family: &str,
        model: &str,
    ) -> WarmResult {
        let (outcome, status) = self.send(account, snapshot, model).await;
        self.metrics.pool.warmup(&account.email, family, outcome);
        tracing::info!(account = %account.email, family, model, outcome, status, "warmup request");
        WarmResult {
            account: account.email.clone(),
            family: family.to_string(),
            model: model.to_string(),
            outcome,
            status,
        }
    }

    async fn send(
        &self,
        account: &AccountSpec,
        snapshot: &Snapshot,
        model: &str,
    ) -> (&'static str, Option<u16>) {
        let upstream = &snapshot.upstream;
        let Ok(token) = self.credentials.access_token(account, upstream).await else {
            return ("token_error", None);
        };
        let Ok(project) = self.credentials.project(account, upstream, &token).await else {
            return ("project_error", None);
        };
        let body = json!({
            "project": &*project.id,
            "model": model,
            "userAgent": "antigravity",
            "requestType": "agent",
            "requestId": format!("agent-{}", uuid::Uuid::new_v4()),
            "request": {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]},
        });
        match self.credentials.control_call(account, upstream, &token, "generateContent", body).await {
            Ok(_) => ("ok", Some(200)),
            Err(CredentialError::Discovery { status: 429, .. }) => ("rate_limited", Some(429)),
            Err(CredentialError::Discovery { status, .. }) => ("refused", Some(status)),
            Err(_) => ("network_error", None),
        }
    }
}

#[async_trait]
impl BackgroundService for Warmup {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let taken = self.state.requests.lock().unwrap_or_else(PoisonError::into_inner).take();
        let Some(mut requests) = taken else { return };
        let mut last_every = tokio::time::Instant::now();
        loop {
            let schedule = self.config.load().warmup.as_ref().map(|w| w.schedule.clone());
            let wait = match &schedule {
                Some(crate::config::warmup::Schedule::Every(every)) => {
                    (last_every + *every).saturating_duration_since(tokio::time::Instant::now())
                }
                Some(s) => s.next_in(unix_now()).unwrap_or(RECHECK),
                None => RECHECK,
            };
            let due = schedule.as_ref().is_some_and(|s| s.next_in(unix_now()).is_some());
            tokio::select! {
                _ = shutdown.changed() => return,
                asked = requests.recv() => {
                    let Some(reply) = asked else { return };
                    let _ = reply.send(self.round("admin").await);
                }
                _ = tokio::time::sleep(wait) => {
                    if due {
                        last_every = tokio::time::Instant::now();
                        let report = self.round("schedule").await;
                        tracing::info!(requests = report.results.len(), "warmup round done");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_round_is_kept_per_account() {
        let state = WarmupState::default();
        let result = |account: &str, family: &str| WarmResult {
            account: account.into(),
            family: family.into(),
            model: "m".into(),
            outcome: "ok",
            status: Some(200),
        };
        let report = RoundReport {
            at_ms: 1,
            trigger: "admin",
            results: vec![result("a", "gemini"), result("b", "gemini")],
        };
        state.remember(&report);
        state.remember(&RoundReport { at_ms: 2, trigger: "schedule", results: vec![result("a", "claude")] });
        let last = state.last_runs();
        assert_eq!(last["accounts"]["a"]["at_ms"], 2);
        assert_eq!(last["accounts"]["a"]["results"][0]["family"], "claude");
        assert_eq!(last["accounts"]["b"]["at_ms"], 1);
    }
}
