//! Account credentials: OAuth access tokens (refreshed ahead of expiry, single-flight) and the Cloud Code
//! project and tier each account calls with (from YAML, or discovered through `loadCodeAssist` and
//! `onboardUser`).
//!
//! A cold account hit by a burst of requests must cause exactly one refresh: each account has one async
//! mutex that refreshers queue on, and whoever gets it second finds the fresh token and returns. Tokens,
//! projects and tiers are written to the store so a restart neither re-refreshes nor re-discovers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::config::{AccountSpec, UpstreamSettings};
use crate::store::{unix_now, Store};
use crate::upstream::{Upstream, UpstreamError, UpstreamRequest};

/// Largest OAuth or discovery answer we accept; real ones are a few KiB.
const CONTROL_BODY_LIMIT: usize = 1 << 20;
const ONBOARD_POLLS: usize = 10;
const ONBOARD_POLL_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The refresh token is revoked or the client is wrong: permanent until the operator acts.
    #[error("account {account}: refresh rejected ({error}): {description}")]
    Revoked { account: String, error: String, description: String },
    #[error("account {account}: token refresh failed with HTTP {status}: {message}")]
    Refresh { account: String, status: u16, message: String },
    #[error("account {account}: {call} failed with HTTP {status}: {message}")]
    Discovery { account: String, call: &'static str, status: u16, message: String },
    #[error("account {account}: onboarding did not finish after {ONBOARD_POLLS} polls")]
    OnboardTimeout { account: String },
    #[error("account {account}: {source}")]
    Network { account: String, source: UpstreamError },
}

impl CredentialError {
    /// Whether retrying on another account makes sense (everything but the operator's mistakes).
    pub fn is_permanent(&self) -> bool {
        matches!(self, CredentialError::Revoked { .. })
    }
}

/// An access token and the unix second it expires at.
#[derive(Clone)]
pub struct AccessToken {
    pub token: Arc<str>,
    pub expires_at: u64,
}

/// The token is a bearer credential: debug output (logs, panics) shows only when it expires.
impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The project an account calls with and the tier Google reports for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Project {
    pub id: Arc<str>,
    pub tier: Option<String>,
}

#[derive(Default)]
struct AccountCredentials {
    token: RwLock<Option<AccessToken>>,
    project: RwLock<Option<Project>>,
    refresh_gate: tokio::sync::Mutex<()>,
    discovery_gate: tokio::sync::Mutex<()>,
}

/// Tokens and projects for every account, shared by all requests.
pub struct Credentials {
    upstream: Arc<Upstream>,
    store: Store,
    accounts: Mutex<HashMap<String, Arc<AccountCredentials>>>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default = "default_expires_in")]
    expires_in: u64,
}

fn default_expires_in() -> u64 {
    3599
}

#[derive(Deserialize)]
struct OAuthError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

impl Credentials {
    pub fn new(upstream: Arc<Upstream>, store: Store) -> Self {
        Credentials { upstream, store, accounts: Mutex::new(HashMap::new()) }
    }

    fn entry(&self, account: &AccountSpec) -> Arc<AccountCredentials> {
        let mut map = self.accounts.lock().unwrap_or_else(PoisonError::into_inner);
        // Every token and project call comes here: find the entry without allocating its key.
        if let Some(entry) = map.get(&account.id) {
            return entry.clone();
        }
        map.entry(account.id.clone())
            .or_insert_with(|| {
                // Seed from the store so a restart reuses tokens and projects.
                let saved = self.store.account(&account.id).unwrap_or_default();
                let entry = AccountCredentials::default();
                if let Some(token) = saved.access_token {
                    if let Ok(mut slot) = entry.token.write() {
                        *slot = Some(AccessToken { token: token.into(), expires_at: saved.expires_at });
                    }
                }
                if let Some(id) = saved.project_id {
                    if let Ok(mut slot) = entry.project.write() {
                        *slot = Some(Project { id: id.into(), tier: saved.tier });
                    }
                }
                Arc::new(entry)
            })
            .clone()
    }

    fn fresh(entry: &AccountCredentials, lead: Duration) -> Option<AccessToken> {
        let token = entry.token.read().ok()?.clone()?;
        (token.expires_at > unix_now() + lead.as_secs()).then_some(token)
    }

    /// A token valid for at least the configured lead time, refreshing it (once, for all waiters) if needed.
    pub async fn access_token(
        &self,
        account: &AccountSpec,
        settings: &UpstreamSettings,
    ) -> Result<AccessToken, CredentialError> {
        let entry = self.entry(account);
        if let Some(token) = Self::fresh(&entry, settings.token_refresh_lead) {
            return Ok(token);
        }
        let _gate = entry.refresh_gate.lock().await;
        if let Some(token) = Self::fresh(&entry, settings.token_refresh_lead) {
            return Ok(token);
        }
        let token = self.refresh(account, settings).await?;
        if let Ok(mut slot) = entry.token.write() {
            *slot = Some(token.clone());
        }
        let saved = token.clone();
        if let Err(e) = self.store.update_account(&account.id, |s| {
            s.access_token = Some(saved.token.to_string());
            s.expires_at = saved.expires_at;
        }) {
            tracing::warn!(account = %account.email, error = %e, "could not persist the refreshed token");
        }
        Ok(token)
    }

    /// Forgets the current token (the upstream answered 401), so the next call refreshes.
    pub fn invalidate_token(&self, account: &AccountSpec) {
        let entry = self.entry(account);
        if let Ok(mut slot) = entry.token.write() {
            *slot = None;
        };
    }

    async fn refresh(
        &self,
        account: &AccountSpec,
        settings: &UpstreamSettings,
    ) -> Result<AccessToken, CredentialError> {
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "refresh_token")
            .append_pair("refresh_token", account.refresh_token.expose())
            .append_pair("client_id", &settings.oauth_client_id)
            .append_pair("client_secret", settings.oauth_client_secret.expose())
            .finish();
        let headers = [
            ("Content-Type", "application/x-www-form-urlencoded".to_string()),
            ("Accept", "application/json".to_string()),
            ("User-Agent", format!("vscode/1.105.0 ({})", settings.user_agent)),
        ];
        let url = &settings.oauth_token_url;
        let request = UpstreamRequest { url, path: "", headers: &headers, body: Bytes::from(form) };
        let (status, body) = self
            .upstream
            .post(request, CONTROL_BODY_LIMIT)
            .await
            .map_err(|source| CredentialError::Network { account: account.email.clone(), source })?;
        if status == 200 {
            let answer: TokenAnswer =
                serde_json::from_slice(&body).map_err(|e| CredentialError::Refresh {
                    account: account.email.clone(),
                    status,
                    message: format!("unreadable token answer: {e}"),
                })?;
            tracing::info!(account = %account.email, expires_in = answer.expires_in, "access token refreshed");
            return Ok(AccessToken {
                token: answer.access_token.into(),
                expires_at: unix_now() + answer.expires_in,
            });
        }
        let err: OAuthError = serde_json::from_slice(&body)
            .unwrap_or(OAuthError { error: String::new(), error_description: String::new() });
        if matches!(err.error.as_str(), "invalid_grant" | "invalid_client" | "unauthorized_client") {
            return Err(CredentialError::Revoked {
                account: account.email.clone(),
                error: err.error,
                description: err.error_description,
            });
        }
        Err(CredentialError::Refresh {
            account: account.email.clone(),
            status,
            message: if err.error.is_empty() { "no error description".into() } else { err.error },
        })
    }

    /// The project to call with: configured, remembered, or discovered (and onboarded if there is none).
    pub async fn project(
        &self,
        account: &AccountSpec,
        settings: &UpstreamSettings,
        token: &AccessToken,
    ) -> Result<Project, CredentialError> {
        if let Some(id) = &account.project_id {
            return Ok(Project { id: id.as_str().into(), tier: account.tier.clone() });
        }
        let entry = self.entry(account);
        let known = |entry: &AccountCredentials| entry.project.read().ok().and_then(|p| p.clone());
        if let Some(project) = known(&entry) {
            return Ok(project);
        }
        let _gate = entry.discovery_gate.lock().await;
        if let Some(project) = known(&entry) {
            return Ok(project);
        }
        let project = self.discover(account, settings, token).await?;
        if let Ok(mut slot) = entry.project.write() {
            *slot = Some(project.clone());
        }
        let saved = project.clone();
        if let Err(e) = self.store.update_account(&account.id, |s| {
            s.project_id = Some(saved.id.to_string());
            s.tier = saved.tier.clone();
        }) {
            tracing::warn!(account = %account.email, error = %e, "could not persist the discovered project");
        }
        Ok(project)
    }

    async fn discover(
        &self,
        account: &AccountSpec,
        settings: &UpstreamSettings,
        token: &AccessToken,
    ) -> Result<Project, CredentialError> {
        let metadata =
            json!({"ideType": "ANTIGRAVITY", "platform": "PLATFORM_UNSPECIFIED", "pluginType": "GEMINI"});
        let answer = self
            .control_call(account, settings, token, "loadCodeAssist", json!({ "metadata": metadata }))
            .await?;
        let tier = tier_of(&answer);
        if let Some(id) = project_of(&answer) {
            tracing::info!(account = %account.email, project = %id, tier = ?tier, "project discovered");
            return Ok(Project { id: id.into(), tier });
        }
        let tier_id = default_allowed_tier(&answer).unwrap_or_else(|| "free-tier".to_string());
        let body = json!({ "tierId": tier_id, "metadata": metadata });
        for _ in 0..ONBOARD_POLLS {
            let operation = self.control_call(account, settings, token, "onboardUser", body.clone()).await?;
            if operation.get("done").and_then(Value::as_bool) == Some(true) {
                if let Some(id) = operation.get("response").and_then(project_of) {
                    tracing::info!(account = %account.email, project = %id, "account onboarded");
                    return Ok(Project { id: id.into(), tier: tier.or(Some(tier_id)) });
                }
            }
            tokio::time::sleep(ONBOARD_POLL_INTERVAL).await;
        }
        Err(CredentialError::OnboardTimeout { account: account.email.clone() })
    }

    /// One JSON call to a `v1internal` control method, trying endpoints in order on network errors and 5xx.
    /// Also the quota poller's way to call `fetchAvailableModels`.
    pub async fn control_call(
        &self,
        account: &AccountSpec,
        settings: &UpstreamSettings,
        token: &AccessToken,
        method: &'static str,
        body: Value,
    ) -> Result<Value, CredentialError> {
        let body = Bytes::from(body.to_string());
        let headers = [
            ("Content-Type", "application/json".to_string()),
            ("Authorization", format!("Bearer {}", token.token)),
            ("User-Agent", settings.user_agent.clone()),
        ];
        let path = format!("/v1internal:{method}");
        let mut last: Option<CredentialError> = None;
        for url in &settings.endpoints {
            let request = UpstreamRequest { url, path: &path, headers: &headers, body: body.clone() };
            match self.upstream.post(request, CONTROL_BODY_LIMIT).await {
                Ok((200, answer)) => {
                    return serde_json::from_slice(&answer).map_err(|e| CredentialError::Discovery {
                        account: account.email.clone(),
                        call: method,
                        status: 200,
                        message: format!("unreadable answer: {e}"),
                    })
                }
                Ok((status, answer)) => {
                    let error = CredentialError::Discovery {
                        account: account.email.clone(),
                        call: method,
                        status,
                        message: google_message(&answer),
                    };
                    if !crate::upstream::is_endpoint_problem(status) {
                        return Err(error);
                    }
                    last = Some(error);
                }
                Err(source) => {
                    last = Some(CredentialError::Network { account: account.email.clone(), source })
                }
            }
        }
        Err(last.unwrap_or(CredentialError::Discovery {
            account: account.email.clone(),
            call: method,
            status: 0,
            message: "no endpoints configured".into(),
        }))
    }
}

/// Google's error message from an error body, without anything else of it.
fn google_message(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.pointer("/error/message").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| "no error message".to_string())
}

/// `cloudaicompanionProject` may be a string or `{id, name}`.
fn project_of(answer: &Value) -> Option<String> {
    match answer.get("cloudaicompanionProject")? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Object(o) => o.get("id").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string),
        _ => None,
    }
}

/// Tier precedence: `paidTier` > `currentTier` (unless `ineligibleTiers` is set) > the `allowedTiers` default.
pub fn tier_of(answer: &Value) -> Option<String> {
    let id =
        |key: &str| answer.get(key).and_then(|t| t.get("id")).and_then(Value::as_str).map(str::to_string);
    if let Some(paid) = id("paidTier") {
        return Some(paid);
    }
    let ineligible = answer.get("ineligibleTiers").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
    if !ineligible {
        if let Some(current) = id("currentTier") {
            return Some(current);
        }
    }
    default_allowed_tier(answer)
}

fn default_allowed_tier(answer: &Value) -> Option<String> {
    answer
        .get("allowedTiers")?
        .as_array()?
        .iter()
        .find(|t| t.get("isDefault").and_then(Value::as_bool) == Some(true))
        .and_then(|t| t.get("id"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_an_access_token() {
        let token = AccessToken { token: Arc::from("ya29.SECRET-token"), expires_at: 42 };
        let state = crate::store::AccountState {
            access_token: Some("ya29.SECRET-token".into()),
            expires_at: 42,
            ..Default::default()
        };
        let printed = format!("{token:?} {token:#?} {state:?} {:?}", Some(&token));
        assert!(!printed.contains("SECRET"), "{printed}");
        assert!(printed.contains("42") && printed.contains("<redacted>"), "{printed}");
    }

    #[test]
    fn tier_precedence_follows_protocol() {
        let paid = json!({"paidTier": {"id": "g1-pro-tier"}, "currentTier": {"id": "free-tier"}});
        assert_eq!(tier_of(&paid).as_deref(), Some("g1-pro-tier"));
        let current = json!({"currentTier": {"id": "standard-tier"}, "allowedTiers": [{"id": "free-tier", "isDefault": true}]});
        assert_eq!(tier_of(&current).as_deref(), Some("standard-tier"));
        let ineligible = json!({"currentTier": {"id": "standard-tier"}, "ineligibleTiers": [{"reasonCode": "X"}],
            "allowedTiers": [{"id": "free-tier", "isDefault": true}]});
        assert_eq!(tier_of(&ineligible).as_deref(), Some("free-tier"));
        assert_eq!(tier_of(&json!({})), None);
    }

    #[test]
    fn project_forms() {
        assert_eq!(project_of(&json!({"cloudaicompanionProject": "p-1"})).as_deref(), Some("p-1"));
        assert_eq!(
            project_of(&json!({"cloudaicompanionProject": {"id": "p-2", "name": "x"}})).as_deref(),
            Some("p-2")
        );
        assert_eq!(project_of(&json!({"cloudaicompanionProject": ""})), None);
        assert_eq!(project_of(&json!({})), None);
    }

    #[test]
    fn google_message_never_echoes_raw_bodies() {
        assert_eq!(google_message(br#"{"error":{"message":"quota"}}"#), "quota");
        assert_eq!(google_message(b"<html>secret</html>"), "no error message");
    }
}
