//! Accounts and credentials: who a refresh token or access token belongs to, and each account's server-side
//! state (onboarding progress, per-model quota, the prompt prefixes it has sent). With no accounts configured
//! any refresh token is welcome and an account is derived from it, which is what the demo and k6 want.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

use crate::config::{AccountConfig, QuotaConfig};
use crate::error::ApiError;

/// Prefix hashes kept per account for `cachedContentTokenCount`; cleared when full.
const MAX_PREFIXES: usize = 20_000;
/// Issued access tokens kept before expired ones are swept.
const SWEEP_AT: usize = 50_000;

/// One Google account as the upstream sees it.
#[derive(Debug)]
pub struct Account {
    pub email: String,
    pub refresh_token: String,
    pub tier: String,
    pub project_id: String,
    /// `fetchAvailableModels` is refused with 403 (see [`AccountConfig::quota_denied`]).
    pub quota_denied: bool,
    /// The models the account may call; `None`: all the sim serves.
    pub models: Option<Vec<String>>,
    state: Mutex<AccountState>,
}

#[derive(Debug, Default)]
struct AccountState {
    onboarded: bool,
    onboard_calls: u32,
    operation: Option<String>,
    quota: HashMap<String, ModelQuota>,
    prefixes: HashMap<[u8; 32], u64>,
}

/// Per-model quota bookkeeping of one account.
#[derive(Debug, Clone)]
struct ModelQuota {
    window_start: SystemTime,
    used: u64,
    exhausted_until: Option<SystemTime>,
    sticky: bool,
}

/// Progress of `onboardUser`'s long-running operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Onboarding {
    Pending { operation: String },
    Done,
}

/// Quota as `fetchAvailableModels` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaView {
    pub remaining_fraction: f64,
    pub reset_time: SystemTime,
}

impl Account {
    pub fn new(config: &AccountConfig) -> Account {
        Account {
            email: config.email.clone(),
            refresh_token: config.refresh_token.clone(),
            tier: config.tier.clone().unwrap_or_else(|| "free-tier".into()),
            project_id: config.project_id.clone().unwrap_or_else(|| derived_project_id(&config.email)),
            quota_denied: config.quota_denied,
            models: config.models.clone(),
            state: Mutex::new(AccountState { onboarded: config.onboarded, ..AccountState::default() }),
        }
    }

    fn state(&self) -> MutexGuard<'_, AccountState> {
        // A panic while holding the lock cannot leave the state half-written in a way that matters here.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The project the account may use, once onboarded.
    pub fn project(&self) -> Option<&str> {
        self.state().onboarded.then_some(self.project_id.as_str())
    }

    /// Whether the account may call `model` (its own model set, when it has one).
    pub fn serves(&self, model: &str) -> bool {
        self.models.as_ref().is_none_or(|m| m.iter().any(|x| x == model))
    }

    /// Of the sim's models, those this account may call (what `fetchAvailableModels` lists for it).
    pub fn served(&self, all: &[String]) -> Vec<String> {
        all.iter().filter(|m| self.serves(m)).cloned().collect()
    }

    /// The selectors fault rules match against: email and project id.
    pub fn selectors(&self) -> [&str; 2] {
        [self.email.as_str(), self.project_id.as_str()]
    }

    /// Advances the onboarding operation by one poll; done on the `polls_needed`-th call.
    pub fn onboard_poll(&self, polls_needed: u32) -> Onboarding {
        let mut st = self.state();
        if st.onboarded {
            return Onboarding::Done;
        }
        st.onboard_calls += 1;
        if st.onboard_calls >= polls_needed {
            st.onboarded = true;
            return Onboarding::Done;
        }
        let operation = st
            .operation
            .get_or_insert_with(|| format!("operations/onboard-{}", &hex(&sha(&self.email))[..16]))
            .clone();
        Onboarding::Pending { operation }
    }

    /// Counts one content request against the model's quota. `Err(reset)` when it is exhausted.
    pub fn use_quota(&self, model: &str, config: &QuotaConfig, now: SystemTime) -> Result<(), SystemTime> {
        let mut st = self.state();
        let q = quota_entry(&mut st, model, config, now);
        if let Some(until) = q.exhausted_until.filter(|u| *u > now) {
            if q.sticky {
                return Err(until);
            }
        }
        if let Some(limit) = config.requests_per_window {
            if q.used >= limit {
                let reset = q.window_start + Duration::from_secs(config.window_secs);
                return Err(reset);
            }
        }
        q.used += 1;
        Ok(())
    }

    /// Marks a model exhausted until `until` (the quota_exhausted fault); `sticky` also fails content calls.
    pub fn mark_exhausted(
        &self,
        model: &str,
        until: SystemTime,
        sticky: bool,
        config: &QuotaConfig,
        now: SystemTime,
    ) {
        let mut st = self.state();
        let q = quota_entry(&mut st, model, config, now);
        q.exhausted_until = Some(until);
        q.sticky = sticky;
    }

    /// Forgets fault-made exhaustion (when the fault set is cleared).
    pub fn clear_exhaustion(&self) {
        for q in self.state().quota.values_mut() {
            q.exhausted_until = None;
            q.sticky = false;
        }
    }

    /// `remainingFraction` / `resetTime` for a model.
    pub fn quota_view(&self, model: &str, config: &QuotaConfig, now: SystemTime) -> QuotaView {
        let mut st = self.state();
        let q = quota_entry(&mut st, model, config, now);
        let window_end = q.window_start + Duration::from_secs(config.window_secs);
        if let Some(until) = q.exhausted_until.filter(|u| *u > now) {
            return QuotaView { remaining_fraction: 0.0, reset_time: until };
        }
        let remaining_fraction = match config.requests_per_window {
            Some(0) => 0.0,
            Some(limit) => (limit.saturating_sub(q.used)) as f64 / limit as f64,
            None => 1.0,
        };
        QuotaView { remaining_fraction, reset_time: window_end }
    }

    /// Given cumulative prefix hashes with their token counts (shortest first), returns the token count of the
    /// longest prefix this account sent before, and remembers all of them.
    pub fn cached_prefix(&self, prefixes: &[([u8; 32], u64)]) -> u64 {
        let mut st = self.state();
        let hit =
            prefixes.iter().rev().find(|(h, _)| st.prefixes.contains_key(h)).map(|(_, t)| *t).unwrap_or(0);
        if st.prefixes.len() + prefixes.len() > MAX_PREFIXES {
            st.prefixes.clear();
        }
        for (h, t) in prefixes {
            st.prefixes.insert(*h, *t);
        }
        hit
    }
}

fn quota_entry<'a>(
    st: &'a mut AccountState,
    model: &str,
    config: &QuotaConfig,
    now: SystemTime,
) -> &'a mut ModelQuota {
    let window = Duration::from_secs(config.window_secs);
    let q = st.quota.entry(model.to_string()).or_insert(ModelQuota {
        window_start: now,
        used: 0,
        exhausted_until: None,
        sticky: false,
    });
    if q.window_start + window <= now {
        q.window_start = now;
        q.used = 0;
    }
    q
}

/// An access token the sim issued.
#[derive(Debug, Clone)]
struct Issued {
    account: Arc<Account>,
    expires: Instant,
}

/// The account registry and the access tokens issued for it.
#[derive(Debug)]
pub struct Accounts {
    derive: bool,
    by_refresh: RwLock<HashMap<String, Arc<Account>>>,
    tokens: Mutex<HashMap<String, Issued>>,
    expires_in: Duration,
}

impl Accounts {
    pub fn new(configs: &[AccountConfig], token_expires_in: u64) -> Accounts {
        let by_refresh =
            configs.iter().map(|c| (c.refresh_token.clone(), Arc::new(Account::new(c)))).collect();
        Accounts {
            derive: configs.is_empty(),
            by_refresh: RwLock::new(by_refresh),
            tokens: Mutex::new(HashMap::new()),
            expires_in: Duration::from_secs(token_expires_in),
        }
    }

    /// The account a refresh token belongs to; derived on first sight when no accounts are configured.
    pub fn by_refresh_token(&self, token: &str) -> Option<Arc<Account>> {
        if let Some(a) = self.read().get(token) {
            return Some(a.clone());
        }
        if !self.derive || token.is_empty() {
            return None;
        }
        let email = format!("{}@sim.local", &hex(&sha(token))[..8]);
        let account = Arc::new(Account::new(&AccountConfig {
            email,
            refresh_token: token.to_string(),
            project_id: None,
            tier: None,
            onboarded: true,
            quota_denied: false,
            models: None,
        }));
        let mut map = self.by_refresh.write().unwrap_or_else(|e| e.into_inner());
        Some(map.entry(token.to_string()).or_insert(account).clone())
    }

    /// The account an authorization code `sim-code-<x>` logs in: the configured account whose email is `<x>`,
    /// else the first configured one; with none configured, one derived from `<x>`.
    pub fn by_auth_code(&self, code: &str) -> Option<Arc<Account>> {
        let who = code.strip_prefix("sim-code-")?;
        if self.derive {
            return self.by_refresh_token(&format!("1//sim-{who}"));
        }
        let map = self.read();
        map.values()
            .find(|a| a.email == who)
            .or_else(|| map.values().min_by(|a, b| a.email.cmp(&b.email)))
            .cloned()
    }

    /// Issues an access token; returns it with its lifetime in seconds.
    pub fn issue_access_token(&self, account: Arc<Account>) -> (String, u64) {
        let token = format!("ya29.sim-{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let now = Instant::now();
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        if tokens.len() >= SWEEP_AT {
            tokens.retain(|_, t| t.expires > now);
        }
        tokens.insert(token.clone(), Issued { account, expires: now + self.expires_in });
        (token, self.expires_in.as_secs())
    }

    /// Resolves an `Authorization` header value to its account, or the 401 Google would send.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Arc<Account>, ApiError> {
        let header = authorization.ok_or(ApiError::Unauthenticated { reason: "CREDENTIALS_MISSING" })?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .ok_or(ApiError::Unauthenticated { reason: "CREDENTIALS_MISSING" })?;
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        match tokens.get(token) {
            Some(t) if t.expires > Instant::now() => Ok(t.account.clone()),
            Some(_) => Err(ApiError::Unauthenticated { reason: "ACCESS_TOKEN_EXPIRED" }),
            None => Err(ApiError::Unauthenticated { reason: "ACCESS_TOKEN_TYPE_UNSUPPORTED" }),
        }
    }

    /// Every known account (configured and derived so far).
    pub fn all(&self) -> Vec<Arc<Account>> {
        self.read().values().cloned().collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Account>>> {
        self.by_refresh.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// SHA-256, the sim's one hash for derived ids.
pub fn sha(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A project id shaped like Google's generated ones (`rising-fact-p41fc`), stable per email.
pub fn derived_project_id(email: &str) -> String {
    const ADJ: &[&str] = &[
        "rising", "bamboo", "silent", "gentle", "brave", "lucid", "amber", "steady", "quiet", "vivid",
        "noble", "swift", "mellow", "bright", "cosmic", "humble",
    ];
    const NOUN: &[&str] = &[
        "fact", "precept", "harbor", "meadow", "signal", "summit", "canyon", "beacon", "orbit", "river",
        "forest", "lantern", "prairie", "glacier", "island", "falcon",
    ];
    const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let h = sha(email);
    let tail: String = h[2..7].iter().map(|b| ALNUM[*b as usize % ALNUM.len()] as char).collect();
    format!("{}-{}-{tail}", ADJ[h[0] as usize % ADJ.len()], NOUN[h[1] as usize % NOUN.len()])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(email: &str, token: &str, onboarded: bool) -> AccountConfig {
        AccountConfig {
            email: email.into(),
            refresh_token: token.into(),
            project_id: None,
            tier: None,
            onboarded,
            quota_denied: false,
            models: None,
        }
    }

    #[test]
    fn derives_accounts_when_none_configured() {
        let accounts = Accounts::new(&[], 60);
        let a = accounts.by_refresh_token("1//abc").expect("derived");
        assert!(a.email.ends_with("@sim.local"));
        assert_eq!(a.email.len(), 8 + "@sim.local".len());
        assert_eq!(a.project(), Some(a.project_id.as_str()));
        let again = accounts.by_refresh_token("1//abc").expect("same");
        assert!(Arc::ptr_eq(&a, &again));
    }

    #[test]
    fn configured_accounts_reject_strangers() {
        let accounts = Accounts::new(&[cfg("a@x", "r1", true)], 60);
        assert!(accounts.by_refresh_token("r1").is_some());
        assert!(accounts.by_refresh_token("other").is_none());
        assert_eq!(accounts.by_auth_code("sim-code-a@x").map(|a| a.email.clone()), Some("a@x".into()));
    }

    #[test]
    fn tokens_authenticate_and_expire() {
        let accounts = Accounts::new(&[], 0);
        let a = accounts.by_refresh_token("t").expect("derived");
        let (token, _) = accounts.issue_access_token(a);
        let e = accounts.authenticate(Some(&format!("Bearer {token}")));
        assert!(matches!(e, Err(ApiError::Unauthenticated { reason: "ACCESS_TOKEN_EXPIRED" })));
        assert!(accounts.authenticate(None).is_err());
        assert!(accounts.authenticate(Some("Bearer nope")).is_err());
    }

    #[test]
    fn onboarding_completes_on_the_configured_poll() {
        let a = Account::new(&cfg("a@x", "r", false));
        assert_eq!(a.project(), None);
        assert!(matches!(a.onboard_poll(2), Onboarding::Pending { .. }));
        assert_eq!(a.onboard_poll(2), Onboarding::Done);
        assert!(a.project().is_some());
    }

    #[test]
    fn quota_limits_and_reports() {
        let a = Account::new(&cfg("a@x", "r", true));
        let q = QuotaConfig { requests_per_window: Some(2), window_secs: 60 };
        let now = SystemTime::now();
        assert!(a.use_quota("m", &q, now).is_ok());
        assert_eq!(a.quota_view("m", &q, now).remaining_fraction, 0.5);
        assert!(a.use_quota("m", &q, now).is_ok());
        assert!(a.use_quota("m", &q, now).is_err());
        assert!(a.use_quota("m", &q, now + Duration::from_secs(61)).is_ok());
    }

    #[test]
    fn prefix_cache_finds_longest_seen() {
        let a = Account::new(&cfg("a@x", "r", true));
        assert_eq!(a.cached_prefix(&[([1; 32], 10), ([2; 32], 20)]), 0);
        assert_eq!(a.cached_prefix(&[([1; 32], 10), ([2; 32], 20), ([3; 32], 30)]), 20);
    }

    #[test]
    fn project_ids_look_generated() {
        let p = derived_project_id("a@x");
        assert_eq!(p.split('-').count(), 3);
        assert_eq!(p, derived_project_id("a@x"));
    }
}
