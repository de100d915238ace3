//! Account credentials: OAuth access tokens (refreshed ahead of expiry, single-flight) and the Cloud Code
//! project and tier each account calls with (from YAML, or discovered through `loadCodeAssist` and
//! `onboardUser`).
//!
//! A cold account hit by a burst of requests must cause exactly one refresh: each account has one async
//! mutex that refreshers queue on, and whoever gets it second finds the fresh token and returns. Tokens,
//! projects and tiers are written to the store so a restart neither re-refreshes nor re-discovers.
//!
//! Each account also has a stable client identity (platform, machine id; see `egress::identity`), made once
//! and stored, which every call made for it presents.
//!
//! Every control call is bounded as a whole by `upstream.control_timeout` (the content read timeout is
//! minutes long, for thinking pauses), and an account whose refresh or discovery failed is backed off
//! (30 s, doubling to 10 min) so the requests meanwhile fail over at once instead of each paying the wait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Deserialize;

use super::cluster::{refresh_once, ClusterCredentials, SharedProject, Token};
use crate::config::{AccountSpec, UpstreamSettings};
use crate::egress::identity::ClientIdentity;
use crate::store::{unix_now, Store};
use crate::upstream::{Upstream, UpstreamError, UpstreamRequest};

mod control;

/// Largest OAuth or discovery answer we accept; real ones are a few KiB.
const CONTROL_BODY_LIMIT: usize = 1 << 20;
const ONBOARD_POLLS: usize = 10;
/// First back-off after a failed refresh or discovery; doubles per further failure up to the cap.
const BACKOFF_FIRST: Duration = Duration::from_secs(30);
const BACKOFF_CAP: Duration = Duration::from_secs(600);

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
    #[error("account {account}: {call} did not answer within {}", humantime::format_duration(*.after))]
    Timeout { account: String, call: &'static str, after: Duration },
    /// A recent refresh or discovery failed: not retried until the back-off ends.
    #[error("account {account}: backing off for {}s after: {reason}", .remaining.as_secs())]
    BackedOff { account: String, remaining: Duration, reason: String },
}

impl CredentialError {
    /// Whether retrying on another account makes sense (everything but the operator's mistakes).
    pub fn is_permanent(&self) -> bool {
        matches!(self, CredentialError::Revoked { .. })
    }

    /// Whether this is new evidence of a failing account for its circuit breaker: not a revoked grant (the
    /// forbidden mark handles it) and not a refusal while a back-off runs (the failure behind it was counted
    /// once already; counting every fast refusal would open the breaker on one hung call).
    pub fn counts_against_breaker(&self) -> bool {
        !matches!(self, CredentialError::Revoked { .. } | CredentialError::BackedOff { .. })
            && !self.egress_down()
    }

    /// Whether the account's egress proxy failed (not Google, not the account): the account is marked
    /// `egress_down` and the call is never retried around the proxy.
    pub fn egress_down(&self) -> bool {
        matches!(self, CredentialError::Network { source, .. } if source.egress_down().is_some())
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

/// The back-off of one account's control calls after failures.
#[derive(Clone, Debug, Default)]
struct Backoff {
    /// Consecutive failures so far (0 = none).
    failures: u32,
    until: Option<Instant>,
    reason: String,
}

impl Backoff {
    /// The wait after the `failures`-th consecutive failure: 30 s, 60 s, … capped at 10 min.
    fn delay(failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(16);
        BACKOFF_FIRST.saturating_mul(1 << doublings).min(BACKOFF_CAP)
    }

    fn fail(&mut self, now: Instant, reason: String) {
        self.failures = self.failures.saturating_add(1);
        self.until = Some(now + Self::delay(self.failures));
        self.reason = reason;
    }

    fn remaining(&self, now: Instant) -> Option<Duration> {
        self.until.filter(|t| *t > now).map(|t| t - now)
    }
}

/// What `/admin/accounts` shows of an account's control-call back-off.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BackoffStatus {
    pub failures: u32,
    pub remaining_secs: u64,
    pub reason: String,
}

#[derive(Default)]
struct AccountCredentials {
    token: RwLock<Option<AccessToken>>,
    project: RwLock<Option<Project>>,
    identity: RwLock<Option<Arc<ClientIdentity>>>,
    refresh_gate: tokio::sync::Mutex<()>,
    discovery_gate: tokio::sync::Mutex<()>,
    backoff: Mutex<Backoff>,
}

impl AccountCredentials {
    fn backoff(&self) -> std::sync::MutexGuard<'_, Backoff> {
        self.backoff.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Refuses at once while a back-off runs.
    fn check_backoff(&self, account: &AccountSpec) -> Result<(), CredentialError> {
        let backoff = self.backoff();
        match backoff.remaining(Instant::now()) {
            Some(remaining) => Err(CredentialError::BackedOff {
                account: account.email.clone(),
                remaining,
                reason: backoff.reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Records the outcome of a refresh or discovery: a transient failure starts or extends the back-off
    /// (a revoked grant is the forbidden mark's business), success ends it.
    fn note<T>(&self, result: &Result<T, CredentialError>) {
        match result {
            Ok(_) => *self.backoff() = Backoff::default(),
            Err(CredentialError::Revoked { .. } | CredentialError::BackedOff { .. }) => {}
            // A dead proxy is the `egress_down` mark's business: once the probe sees it again, the next
            // request must refresh at once rather than wait out a back-off.
            Err(e) if e.egress_down() => {}
            Err(e) => self.backoff().fail(Instant::now(), e.to_string()),
        }
    }
}

/// Tokens and projects for every account, shared by all requests.
///
/// [`Credentials::with_upstream`] gives background services a view over their own upstream client that
/// shares the same per-account state: one token cache, one single-flight refresh, one back-off.
pub struct Credentials {
    upstream: Arc<Upstream>,
    store: Store,
    accounts: Arc<Mutex<HashMap<String, Arc<AccountCredentials>>>>,
    /// Tokens and projects shared with other instances (`shared_state`), set once at start.
    cluster: Arc<std::sync::OnceLock<Arc<dyn ClusterCredentials>>>,
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
        Credentials {
            upstream,
            store,
            accounts: Arc::new(Mutex::new(HashMap::new())),
            cluster: Default::default(),
        }
    }

    /// Shares tokens (one refresh per account per expiry across the cluster) and projects from now on.
    pub fn set_cluster(&self, cluster: Arc<dyn ClusterCredentials>) {
        let _ = self.cluster.set(cluster);
    }

    /// The same tokens, projects and gates, calling through another upstream client (the background
    /// services' own, so they never take or poison the gateway runtime's pooled connections).
    pub fn with_upstream(&self, upstream: Arc<Upstream>) -> Credentials {
        let (store, accounts, cluster) = (self.store.clone(), self.accounts.clone(), self.cluster.clone());
        Credentials { upstream, store, accounts, cluster }
    }

    /// The account's control-call back-off, when one is running (for `/admin/accounts`).
    pub fn backoff_of(&self, id: &str) -> Option<BackoffStatus> {
        let entry = self.accounts.lock().unwrap_or_else(PoisonError::into_inner).get(id).cloned()?;
        let backoff = entry.backoff();
        let remaining = backoff.remaining(Instant::now())?;
        Some(BackoffStatus {
            failures: backoff.failures,
            remaining_secs: remaining.as_secs_f64().ceil() as u64,
            reason: backoff.reason.clone(),
        })
    }

    /// Runs one control call under `upstream.control_timeout`.
    async fn bounded<T>(
        account: &AccountSpec,
        settings: &UpstreamSettings,
        call: &'static str,
        work: impl std::future::Future<Output = Result<T, CredentialError>>,
    ) -> Result<T, CredentialError> {
        tokio::time::timeout(settings.control_timeout, work).await.unwrap_or_else(|_| {
            Err(CredentialError::Timeout {
                account: account.email.clone(),
                call,
                after: settings.control_timeout,
            })
        })
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
                if let (Some(identity), Ok(mut slot)) = (saved.identity, entry.identity.write()) {
                    *slot = Some(Arc::new(identity));
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

    /// The account's client identity: remembered, else made now and stored (the first writer wins, so two
    /// racing requests and a restart all see the same one).
    pub fn identity(&self, account: &AccountSpec) -> Arc<ClientIdentity> {
        let entry = self.entry(account);
        if let Some(identity) = entry.identity.read().ok().and_then(|i| i.clone()) {
            return identity;
        }
        let made = ClientIdentity::generate();
        let kept = match self.store.update_account(&account.id, |s| {
            s.identity.get_or_insert_with(|| made.clone());
        }) {
            Ok(state) => state.identity.unwrap_or(made),
            Err(e) => {
                tracing::warn!(account = %account.email, error = %e, "could not persist the client identity");
                made
            }
        };
        let kept = Arc::new(kept);
        if let Ok(mut slot) = entry.identity.write() {
            return slot.get_or_insert(kept).clone();
        }
        kept
    }

    fn fresh(entry: &AccountCredentials, lead: Duration) -> Option<AccessToken> {
        let token = entry.token.read().ok()?.clone()?;
        (token.expires_at > unix_now() + lead.as_secs()).then_some(token)
    }

    /// A token valid for at least the configured lead time, refreshing it (once, for all waiters) if needed.
    ///
    /// The refresh is boxed: its state (a token call, a cluster claim) is kilobytes, and unboxed it would
    /// size every request's future, which is copied as a whole at each of Pingora's boxed hooks, for a path
    /// taken once an hour (issue 13). The same holds for [`project`](Self::project)'s discovery.
    pub async fn access_token(
        &self,
        account: &AccountSpec,
        settings: &UpstreamSettings,
    ) -> Result<AccessToken, CredentialError> {
        let entry = self.entry(account);
        if let Some(token) = Self::fresh(&entry, settings.token_refresh_lead) {
            return Ok(token);
        }
        Box::pin(self.refresh_token(entry, account, settings)).await
    }

    async fn refresh_token(
        &self,
        entry: Arc<AccountCredentials>,
        account: &AccountSpec,
        settings: &UpstreamSettings,
    ) -> Result<AccessToken, CredentialError> {
        entry.check_backoff(account)?;
        let _gate = entry.refresh_gate.lock().await;
        if let Some(token) = Self::fresh(&entry, settings.token_refresh_lead) {
            return Ok(token);
        }
        // Waiters queued behind a refresh that just failed fail with it rather than each retrying.
        entry.check_backoff(account)?;
        let result = match self.cluster.get() {
            Some(cluster) => {
                // Waiting for another instance's refresh takes at most half the bound, so a waiter whose
                // claimant died still has time to refresh for itself.
                let (lead, patience) = (settings.token_refresh_lead, settings.control_timeout / 2);
                let refresh = || async {
                    let t = self.refresh(account, settings).await?;
                    Ok(Token { token: t.token, expires_at: t.expires_at })
                };
                let once = refresh_once(&**cluster, &account.id, lead, patience, refresh);
                let shared = Self::bounded(account, settings, "token refresh", once).await;
                shared.map(|t| AccessToken { token: t.token, expires_at: t.expires_at })
            }
            None => Self::bounded(account, settings, "token refresh", self.refresh(account, settings)).await,
        };
        entry.note(&result);
        let token = result?;
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
            (
                "User-Agent",
                format!("vscode/1.105.0 ({})", self.identity(account).user_agent(&settings.user_agent)),
            ),
        ];
        let url = &settings.oauth_token_url;
        let request = UpstreamRequest {
            url,
            path: "",
            headers: &headers,
            body: Bytes::from(form),
            egress: account.egress(),
        };
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
        if let Some(project) = Self::known_project(&entry) {
            return Ok(project);
        }
        Box::pin(self.find_project(entry, account, settings, token)).await
    }

    fn known_project(entry: &AccountCredentials) -> Option<Project> {
        entry.project.read().ok().and_then(|p| p.clone())
    }

    /// [`project`](Self::project) when neither configured nor known: from the cluster, or discovered.
    async fn find_project(
        &self,
        entry: Arc<AccountCredentials>,
        account: &AccountSpec,
        settings: &UpstreamSettings,
        token: &AccessToken,
    ) -> Result<Project, CredentialError> {
        entry.check_backoff(account)?;
        let _gate = entry.discovery_gate.lock().await;
        if let Some(project) = Self::known_project(&entry) {
            return Ok(project);
        }
        let cluster = self.cluster.get();
        if let Some(shared) = match cluster {
            Some(cluster) => cluster.project(&account.id).await,
            None => None,
        } {
            let project = Project { id: shared.id.into(), tier: shared.tier };
            if let Ok(mut slot) = entry.project.write() {
                *slot = Some(project.clone());
            }
            return Ok(project);
        }
        entry.check_backoff(account)?;
        // The whole discovery (loadCodeAssist, onboarding polls) is bounded, and so is each call in it.
        let budget = settings.control_timeout.saturating_mul(ONBOARD_POLLS as u32 + 1);
        let result = tokio::time::timeout(budget, self.discover(account, settings, token))
            .await
            .unwrap_or_else(|_| {
                Err(CredentialError::Timeout {
                    account: account.email.clone(),
                    call: "discovery",
                    after: budget,
                })
            });
        entry.note(&result);
        let project = result?;
        if let Ok(mut slot) = entry.project.write() {
            *slot = Some(project.clone());
        }
        if let Some(cluster) = cluster {
            let shared = SharedProject { id: project.id.to_string(), tier: project.tier.clone() };
            cluster.put_project(&account.id, &shared).await;
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
    fn each_account_keeps_one_distinct_identity_across_a_restart() {
        let spec = |email: &str| AccountSpec {
            id: email.into(),
            email: email.into(),
            refresh_token: crate::config::Secret::new("r"),
            project_id: None,
            tier: None,
            enabled: true,
            max_concurrent: 1,
            egress: None,
            pacing: Default::default(),
        };
        let (a, b) = (spec("a@x.com"), spec("b@x.com"));
        let store = Store::temporary().unwrap();
        let upstream = Arc::new(Upstream::new(Duration::from_secs(1), Duration::from_secs(1)));
        let first = Credentials::new(upstream.clone(), store.clone());
        let (ia, ib) = (first.identity(&a), first.identity(&b));
        assert_ne!(ia.machine_id, ib.machine_id);
        assert_eq!(first.identity(&a), ia, "made once");
        // A new process over the same store: the same identity, not a new draw.
        let restarted = Credentials::new(upstream, store.clone());
        assert_eq!(*restarted.identity(&a), *ia);
        assert_eq!(store.account("a@x.com").unwrap().identity.as_ref(), Some(&*ia));
    }

    #[test]
    fn backoff_doubles_from_thirty_seconds_to_ten_minutes() {
        let delays: Vec<u64> = (1..=7).map(|n| Backoff::delay(n).as_secs()).collect();
        assert_eq!(delays, [30, 60, 120, 240, 480, 600, 600]);
        assert_eq!(Backoff::delay(u32::MAX).as_secs(), 600);
    }

    /// A token endpoint that accepts connections and never answers: the refresh must end at
    /// `control_timeout` (not the 600 s content read timeout), and the next request must not pay again.
    #[tokio::test(start_paused = true)]
    async fn a_silent_control_endpoint_times_out_and_backs_the_account_off() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let dir = std::env::temp_dir().join(format!("levitate-cred-timeout-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("levitate.yaml"),
            format!(
                "listen: 127.0.0.1:9000\nauth:\n  api_keys:\n    - {{ name: default, key: k }}\n\
                 upstream:\n  oauth_token_url: http://127.0.0.1:{port}/token\n  control_timeout: 2s\n  \
                 read_timeout: 600s\n"
            ),
        )
        .unwrap();
        std::fs::write(dir.join("accounts.yaml"), "accounts:\n  - { email: a@x.com, refresh_token: r1 }\n")
            .unwrap();
        std::fs::write(dir.join("routes.yaml"), "aliases: {}\n").unwrap();
        let snapshot = crate::config::Snapshot::load(&dir.join("levitate.yaml")).unwrap();
        let settings = &snapshot.upstream;
        assert_eq!(settings.control_timeout, Duration::from_secs(2));
        let upstream = Arc::new(Upstream::new(settings.connect_timeout, settings.read_timeout));
        let credentials = Credentials::new(upstream, Store::temporary().unwrap());
        let account = &snapshot.accounts[0];

        let first = credentials.access_token(account, settings).await.unwrap_err();
        assert!(
            matches!(first, CredentialError::Timeout { after, .. } if after == Duration::from_secs(2)),
            "{first}"
        );
        let second = credentials.access_token(account, settings).await.unwrap_err();
        assert!(matches!(second, CredentialError::BackedOff { .. }), "{second}");
        let status = credentials.backoff_of(&account.id).expect("visible back-off");
        assert_eq!(status.failures, 1);
        assert!(status.remaining_secs <= 30 && status.remaining_secs > 0, "{status:?}");
        // The shared view of a background service sees the same back-off.
        let background = credentials
            .with_upstream(Arc::new(Upstream::new(settings.connect_timeout, settings.read_timeout)));
        assert!(background.backoff_of(&account.id).is_some());
        drop(silent);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
