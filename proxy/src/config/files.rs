//! What the three configuration files look like: the serde types `levitate.yaml`, `accounts.yaml` and
//! `routes.yaml` are parsed into, their defaults, and reading a file into one of them.
//!
//! Every type rejects unknown keys, so a misspelt key is reported with its file, line and column instead of
//! being silently ignored. Nothing here checks values; `validate` turns these into a `Snapshot`.

use std::time::Duration;

use serde::Deserialize;

pub use super::tenancy::{AuthFile, UsageFile};

/// `levitate.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MainFile {
    #[serde(default = "defaults::listen")]
    pub listen: String,
    /// HTTPS on `listen`; plain HTTP without it.
    pub tls: Option<TlsFile>,
    #[serde(default)]
    pub admin: AdminFile,
    pub auth: AuthFile,
    #[serde(default)]
    pub upstream: UpstreamFile,
    #[serde(default = "defaults::accounts_file")]
    pub accounts_file: String,
    #[serde(default = "defaults::routes_file")]
    pub routes_file: String,
    #[serde(default)]
    pub store: StoreFile,
    #[serde(default)]
    pub limits: LimitsFile,
    #[serde(default)]
    pub pool: PoolSettings,
    #[serde(default)]
    pub server: ServerFile,
    #[serde(default)]
    pub request_log: RequestLogSettings,
    #[serde(default)]
    pub usage: UsageFile,
    /// The opt-in public Gemini API key for when no account can serve (`config::fallback`).
    #[serde(default)]
    pub fallback: Option<super::fallback::FallbackFile>,
    /// The optional warmup scheduler (`config::warmup`).
    #[serde(default)]
    pub warmup: Option<super::warmup::WarmupFile>,
    /// Several instances as one gateway, through Redis (`crate::shared`); absent: this box alone (sled only).
    pub shared_state: Option<super::shared_state::SharedStateFile>,
}

impl MainFile {
    /// The accounts and routes file names of a `levitate.yaml` that is YAML but does not deserialize (an
    /// unknown key, a wrong type), so those files can still be checked in the same run. `None` for a name
    /// that cannot be told: the text is not YAML, or the name is not a string.
    pub fn referenced_files(text: &str) -> (Option<String>, Option<String>) {
        let map = match serde_yaml::from_str(text) {
            Ok(serde_yaml::Value::Mapping(map)) => map,
            Ok(serde_yaml::Value::Null) => serde_yaml::Mapping::new(),
            _ => return (None, None),
        };
        let name = |key: &str, default: fn() -> String| match map.get(key) {
            None => Some(default()),
            Some(value) => value.as_str().map(str::to_string),
        };
        (name("accounts_file", defaults::accounts_file), name("routes_file", defaults::routes_file))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminFile {
    #[serde(default = "defaults::admin_listen")]
    pub listen: String,
    pub key: Option<String>,
    /// The variable holding the key. Unset on a loopback `listen` means no key; elsewhere it is an error.
    pub key_env: Option<String>,
    pub tls: Option<TlsFile>,
}

impl Default for AdminFile {
    fn default() -> Self {
        AdminFile { listen: defaults::admin_listen(), key: None, key_env: None, tls: None }
    }
}

/// `tls:` / `admin.tls:`: PEM files, relative to the folder of levitate.yaml.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    pub cert: String,
    pub key: String,
    /// Only clients with a certificate signed by one of these CAs may connect (Authenticated Origin Pulls).
    pub client_ca: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamFile {
    #[serde(default = "defaults::endpoints")]
    pub endpoints: Vec<String>,
    #[serde(default = "defaults::oauth_token_url")]
    pub oauth_token_url: String,
    /// Where `levitate accounts login` sends the browser.
    #[serde(default = "defaults::oauth_authorize_url")]
    pub oauth_authorize_url: String,
    /// Where `levitate accounts login` reads the logged-in account's email.
    #[serde(default = "defaults::oauth_userinfo_url")]
    pub oauth_userinfo_url: String,
    #[serde(default)]
    pub oauth_client_id: String,
    pub oauth_client_secret: Option<String>,
    #[serde(default = "defaults::oauth_client_secret_env")]
    pub oauth_client_secret_env: String,
    #[serde(default = "defaults::user_agent")]
    pub user_agent: String,
    #[serde(default = "defaults::connect_timeout", with = "super::duration")]
    pub connect_timeout: Duration,
    #[serde(default = "defaults::read_timeout", with = "super::duration")]
    pub read_timeout: Duration,
    /// Whole-call bound for token refresh and discovery calls (not the content read timeout).
    #[serde(default = "defaults::control_timeout", with = "super::duration")]
    pub control_timeout: Duration,
    #[serde(default = "defaults::refresh_lead", with = "super::duration")]
    pub token_refresh_lead: Duration,
    /// Default egress proxy of accounts that name none (`socks5://`, `socks5h://`, `http://`, `https://`).
    pub proxy: Option<String>,
    /// Environment variable holding `user:password` for `proxy`.
    pub proxy_auth_env: Option<String>,
    /// Speak HTTP/2 without TLS (h2c, prior knowledge) to the `http://` URLs above: a local simulator or an
    /// internal h2c proxy. `https://` URLs negotiate HTTP/2 by ALPN already and are not affected.
    #[serde(default)]
    pub h2c: bool,
}

impl Default for UpstreamFile {
    fn default() -> Self {
        UpstreamFile {
            endpoints: defaults::endpoints(),
            oauth_token_url: defaults::oauth_token_url(),
            oauth_authorize_url: defaults::oauth_authorize_url(),
            oauth_userinfo_url: defaults::oauth_userinfo_url(),
            oauth_client_id: String::new(),
            oauth_client_secret: None,
            oauth_client_secret_env: defaults::oauth_client_secret_env(),
            user_agent: defaults::user_agent(),
            connect_timeout: defaults::connect_timeout(),
            read_timeout: defaults::read_timeout(),
            control_timeout: defaults::control_timeout(),
            token_refresh_lead: defaults::refresh_lead(),
            proxy: None,
            proxy_auth_env: None,
            h2c: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreFile {
    #[serde(default = "defaults::store_path")]
    pub path: String,
    /// How long a captured thoughtSignature stays usable.
    #[serde(default = "defaults::signature_ttl", with = "super::duration")]
    pub signature_ttl: Duration,
    /// Most signatures kept; the oldest go first beyond it.
    #[serde(default = "defaults::max_signatures")]
    pub max_signatures: usize,
}

impl Default for StoreFile {
    fn default() -> Self {
        StoreFile {
            path: defaults::store_path(),
            signature_ttl: defaults::signature_ttl(),
            max_signatures: defaults::max_signatures(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    #[serde(default = "defaults::max_request_body")]
    pub max_request_body: String,
    #[serde(default = "defaults::client_write_timeout", with = "super::duration")]
    pub client_write_timeout: Duration,
    #[serde(default = "defaults::header_timeout", with = "super::duration")]
    pub header_timeout: Duration,
    #[serde(default = "defaults::body_read_timeout", with = "super::duration")]
    pub body_read_timeout: Duration,
    #[serde(default = "defaults::keepalive_timeout", with = "super::duration")]
    pub keepalive_timeout: Duration,
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    #[serde(default = "defaults::max_connections_per_ip")]
    pub max_connections_per_ip: u32,
}

impl Default for LimitsFile {
    fn default() -> Self {
        LimitsFile {
            max_request_body: defaults::max_request_body(),
            client_write_timeout: defaults::client_write_timeout(),
            header_timeout: defaults::header_timeout(),
            body_read_timeout: defaults::body_read_timeout(),
            keepalive_timeout: defaults::keepalive_timeout(),
            max_connections: defaults::max_connections(),
            max_connections_per_ip: defaults::max_connections_per_ip(),
        }
    }
}

/// `pool:` as written in levitate.yaml, and as the pool applies it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSettings {
    #[serde(default = "defaults::max_concurrent")]
    pub max_concurrent_per_account: u32,
    #[serde(default = "defaults::max_attempts")]
    pub max_attempts: u32,
    /// Longest a request waits for a busy or briefly locked account before answering 429.
    #[serde(default = "defaults::max_wait", with = "super::duration")]
    pub max_wait: Duration,
    /// Accounts whose remaining quota fraction for a model is below this are skipped for it.
    #[serde(default)]
    pub quota_floor: f64,
    /// Whether a lockout rests only the account, or every account sharing its project.
    #[serde(default)]
    pub lock_scope: LockScope,
    /// Consecutive-window failures (5xx, network) that open an account's circuit breaker.
    #[serde(default = "defaults::breaker_failures")]
    pub breaker_failures: u32,
    #[serde(default = "defaults::breaker_window", with = "super::duration")]
    pub breaker_window: Duration,
    /// How long an open breaker waits before letting one probe through.
    #[serde(default = "defaults::breaker_cooldown", with = "super::duration")]
    pub breaker_cooldown: Duration,
    /// How often `fetchAvailableModels` is polled per account; 0 turns polling off.
    #[serde(default = "defaults::quota_interval", with = "super::duration")]
    pub quota_interval: Duration,
    /// Session affinity: how long an idle binding lives, and how many are kept (least recently used go first).
    #[serde(default = "defaults::affinity_ttl", with = "super::duration")]
    pub affinity_ttl: Duration,
    #[serde(default = "defaults::affinity_capacity")]
    pub affinity_capacity: usize,
}

/// `pool.lock_scope`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockScope {
    #[default]
    Account,
    Project,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_concurrent_per_account: defaults::max_concurrent(),
            max_attempts: defaults::max_attempts(),
            max_wait: defaults::max_wait(),
            quota_floor: 0.0,
            lock_scope: LockScope::Account,
            breaker_failures: defaults::breaker_failures(),
            breaker_window: defaults::breaker_window(),
            breaker_cooldown: defaults::breaker_cooldown(),
            quota_interval: defaults::quota_interval(),
            affinity_ttl: defaults::affinity_ttl(),
            affinity_capacity: defaults::affinity_capacity(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    /// Worker threads for the client-facing service; 0 means one per core.
    #[serde(default)]
    pub threads: usize,
    #[serde(default = "defaults::grace_period", with = "super::duration")]
    pub grace_period: Duration,
    /// Where the running instance writes its pid (read by `levitate upgrade` and init systems).
    #[serde(default = "defaults::pid_file")]
    pub pid_file: String,
    /// Unix socket the listening sockets are handed over on during a binary upgrade.
    #[serde(default = "defaults::upgrade_sock")]
    pub upgrade_sock: String,
    /// Proxies (CIDRs) whose CF-Connecting-IP / X-Forwarded-For name the client.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

impl Default for ServerFile {
    fn default() -> Self {
        ServerFile {
            threads: 0,
            grace_period: defaults::grace_period(),
            pid_file: defaults::pid_file(),
            upgrade_sock: defaults::upgrade_sock(),
            trusted_proxies: Vec::new(),
        }
    }
}

/// `request_log`: the metadata-only log of recent requests kept in the store.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestLogSettings {
    #[serde(default = "defaults::request_log_max_entries")]
    pub max_entries: usize,
    #[serde(default = "defaults::request_log_max_age", with = "super::duration")]
    pub max_age: Duration,
}

impl Default for RequestLogSettings {
    fn default() -> Self {
        RequestLogSettings {
            max_entries: defaults::request_log_max_entries(),
            max_age: defaults::request_log_max_age(),
        }
    }
}

/// `accounts.yaml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountsFile {
    #[serde(default)]
    pub accounts: Vec<AccountFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountFile {
    pub email: String,
    pub refresh_token: Option<String>,
    pub refresh_token_env: Option<String>,
    pub project_id: Option<String>,
    pub tier: Option<String>,
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
    pub max_concurrent: Option<u32>,
    /// The account's own egress proxy, or `direct` to opt out of `upstream.proxy`.
    pub proxy: Option<String>,
    /// Environment variable holding `user:password` for `proxy`.
    pub proxy_auth_env: Option<String>,
    /// Least time between two upstream calls of this account (0 = no pacing).
    #[serde(default, with = "super::duration")]
    pub min_interval: Duration,
    /// Up to this much more, drawn per call.
    #[serde(default, with = "super::duration")]
    pub jitter: Duration,
}

/// Shown in place of a secret written inline in a file: whether it is set, never its text.
fn redacted(value: &Option<String>) -> Option<&'static str> {
    value.as_ref().map(|_| "<redacted>")
}

// The file structs hold secrets written inline (keys, the OAuth client secret, refresh tokens); their debug
// output, which a log line or a panic may print, names the fields but never shows those values.
impl std::fmt::Debug for AdminFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminFile")
            .field("listen", &self.listen)
            .field("key", &redacted(&self.key))
            .field("key_env", &self.key_env)
            .finish()
    }
}

impl std::fmt::Debug for UpstreamFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamFile")
            .field("endpoints", &self.endpoints)
            .field("oauth_client_id", &self.oauth_client_id)
            .field("oauth_client_secret", &redacted(&self.oauth_client_secret))
            .field("oauth_client_secret_env", &self.oauth_client_secret_env)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for AccountFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountFile")
            .field("email", &self.email)
            .field("refresh_token", &redacted(&self.refresh_token))
            .field("refresh_token_env", &self.refresh_token_env)
            .field("project_id", &self.project_id)
            .field("tier", &self.tier)
            .field("enabled", &self.enabled)
            .field("max_concurrent", &self.max_concurrent)
            .finish()
    }
}

/// `routes.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutesFile {
    /// Upstream model ids clients may name directly; listed by `GET /v1/models`.
    #[serde(default = "defaults::models")]
    pub models: Vec<String>,
    /// Client model pattern -> upstream model. Kept in file order (ties between wildcards go to the first).
    #[serde(default)]
    pub aliases: serde_yaml::Mapping,
    pub default: Option<String>,
    /// The upstream model web searches go to when the requested model cannot ground (Claude, gpt-oss);
    /// `levitate_filters::grounding::DEFAULT_WEB_SEARCH_MODEL` when absent.
    pub web_search_model: Option<String>,
}

mod defaults {
    use std::time::Duration;

    pub fn listen() -> String {
        "127.0.0.1:8045".into()
    }
    pub fn admin_listen() -> String {
        "127.0.0.1:8046".into()
    }
    pub fn endpoints() -> Vec<String> {
        vec![
            "https://daily-cloudcode-pa.sandbox.googleapis.com".into(),
            "https://cloudcode-pa.googleapis.com".into(),
        ]
    }
    pub fn oauth_token_url() -> String {
        "https://oauth2.googleapis.com/token".into()
    }
    pub fn oauth_client_secret_env() -> String {
        "LEVITATE_OAUTH_CLIENT_SECRET".into()
    }
    pub fn user_agent() -> String {
        "antigravity/1.15.8 linux/amd64".into()
    }
    pub fn connect_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn control_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn read_timeout() -> Duration {
        Duration::from_secs(600)
    }
    pub fn refresh_lead() -> Duration {
        Duration::from_secs(900)
    }
    pub fn accounts_file() -> String {
        "accounts.yaml".into()
    }
    pub fn routes_file() -> String {
        "routes.yaml".into()
    }
    pub fn signature_ttl() -> Duration {
        Duration::from_secs(2 * 60 * 60)
    }
    pub fn max_signatures() -> usize {
        200_000
    }
    pub fn store_path() -> String {
        "./data".into()
    }
    pub fn client_write_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn header_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn body_read_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn keepalive_timeout() -> Duration {
        Duration::from_secs(60)
    }
    pub fn max_connections() -> usize {
        10_000
    }
    pub fn max_connections_per_ip() -> u32 {
        256
    }
    pub fn max_request_body() -> String {
        "32MiB".into()
    }
    pub fn max_concurrent() -> u32 {
        3
    }
    pub fn max_attempts() -> u32 {
        8
    }
    pub fn max_wait() -> Duration {
        Duration::from_secs(5)
    }
    pub fn breaker_failures() -> u32 {
        5
    }
    pub fn breaker_window() -> Duration {
        Duration::from_secs(30)
    }
    pub fn breaker_cooldown() -> Duration {
        Duration::from_secs(30)
    }
    pub fn quota_interval() -> Duration {
        Duration::from_secs(300)
    }
    pub fn affinity_ttl() -> Duration {
        Duration::from_secs(3600)
    }
    pub fn affinity_capacity() -> usize {
        10_000
    }
    pub fn grace_period() -> Duration {
        Duration::from_secs(300)
    }
    pub fn pid_file() -> String {
        "/run/levitate/levitate.pid".into()
    }
    pub fn upgrade_sock() -> String {
        "/run/levitate/upgrade.sock".into()
    }
    pub fn request_log_max_entries() -> usize {
        10_000
    }
    pub fn request_log_max_age() -> Duration {
        Duration::from_secs(7 * 24 * 3600)
    }
    pub fn oauth_authorize_url() -> String {
        "https://accounts.google.com/o/oauth2/v2/auth".into()
    }
    pub fn oauth_userinfo_url() -> String {
        "https://www.googleapis.com/oauth2/v2/userinfo".into()
    }
    pub fn yes() -> bool {
        true
    }
    pub fn models() -> Vec<String> {
        [
            "gemini-3-flash",
            "gemini-3-pro-high",
            "gemini-3-pro-low",
            "gemini-3.1-pro-low",
            "gemini-pro-agent",
            "gemini-2.5-flash",
            "gemini-2.5-pro",
            "claude-sonnet-4-6",
            "claude-opus-4-6-thinking",
            "gpt-oss-120b-medium",
            "gemini-3-pro-image",
            "gemini-3.1-flash-image",
        ]
        .iter()
        .map(|m| m.to_string())
        .collect()
    }
}
