//! Levitate's configuration: the YAML schema, its validation, and the immutable [`Snapshot`] built from it.
//!
//! Three user-edited files make one configuration: `levitate.yaml` (server, keys, upstream), `routes.yaml`
//! (model aliases) and `accounts.yaml` (the Google accounts). They are parsed into typed structs that reject
//! unknown keys, then validated into a `Snapshot` that the request path reads without ever touching YAML.
//! Building a snapshot either fully succeeds or changes nothing, so a reload can swap it in atomically.

pub mod live;
pub mod reload;

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use levitate_filters::alias::AliasTable;
use levitate_filters::auth::ApiKeys;
use serde::Deserialize;

/// A configuration problem, phrased for the operator who has to fix the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}:{line}:{column}: {message}")]
    Syntax { path: String, line: usize, column: usize, message: String },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// A secret value: never printed, never logged.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

// ---------------------------------------------------------------------------------------------------------
// The files as written by users.

/// `levitate.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MainFile {
    #[serde(default = "defaults::listen")]
    pub listen: String,
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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminFile {
    #[serde(default = "defaults::admin_listen")]
    pub listen: String,
    pub key: Option<String>,
    pub key_env: Option<String>,
}

impl Default for AdminFile {
    fn default() -> Self {
        AdminFile { listen: defaults::admin_listen(), key: None, key_env: None }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthFile {
    pub api_keys: Vec<ApiKeyFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyFile {
    pub name: String,
    pub key: Option<String>,
    pub key_env: Option<String>,
}

#[derive(Debug, Deserialize)]
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
    #[serde(default = "defaults::connect_timeout", with = "humantime_serde_compat")]
    pub connect_timeout: Duration,
    #[serde(default = "defaults::read_timeout", with = "humantime_serde_compat")]
    pub read_timeout: Duration,
    #[serde(default = "defaults::refresh_lead", with = "humantime_serde_compat")]
    pub token_refresh_lead: Duration,
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
            token_refresh_lead: defaults::refresh_lead(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreFile {
    #[serde(default = "defaults::store_path")]
    pub path: String,
    /// How long a captured thoughtSignature stays usable.
    #[serde(default = "defaults::signature_ttl", with = "humantime_serde_compat")]
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
}

impl Default for LimitsFile {
    fn default() -> Self {
        LimitsFile { max_request_body: defaults::max_request_body() }
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
    #[serde(default = "defaults::max_wait", with = "humantime_serde_compat")]
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
    #[serde(default = "defaults::breaker_window", with = "humantime_serde_compat")]
    pub breaker_window: Duration,
    /// How long an open breaker waits before letting one probe through.
    #[serde(default = "defaults::breaker_cooldown", with = "humantime_serde_compat")]
    pub breaker_cooldown: Duration,
    /// How often `fetchAvailableModels` is polled per account; 0 turns polling off.
    #[serde(default = "defaults::quota_interval", with = "humantime_serde_compat")]
    pub quota_interval: Duration,
    /// Session affinity: how long an idle binding lives, and how many are kept (least recently used go first).
    #[serde(default = "defaults::affinity_ttl", with = "humantime_serde_compat")]
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
    #[serde(default = "defaults::grace_period", with = "humantime_serde_compat")]
    pub grace_period: Duration,
    /// Where the running instance writes its pid (read by `levitate upgrade` and init systems).
    #[serde(default = "defaults::pid_file")]
    pub pid_file: String,
    /// Unix socket the listening sockets are handed over on during a binary upgrade.
    #[serde(default = "defaults::upgrade_sock")]
    pub upgrade_sock: String,
}

impl Default for ServerFile {
    fn default() -> Self {
        ServerFile {
            threads: 0,
            grace_period: defaults::grace_period(),
            pid_file: defaults::pid_file(),
            upgrade_sock: defaults::upgrade_sock(),
        }
    }
}

/// `request_log`: the metadata-only log of recent requests kept in the store.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestLogSettings {
    #[serde(default = "defaults::request_log_max_entries")]
    pub max_entries: usize,
    #[serde(default = "defaults::request_log_max_age", with = "humantime_serde_compat")]
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

#[derive(Debug, Deserialize)]
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
        ]
        .iter()
        .map(|m| m.to_string())
        .collect()
    }
}

/// Durations written as `10s`, `500ms`, `5m` (humantime), or a bare number of seconds.
mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Seconds(s) => Ok(Duration::from_secs(s)),
            Raw::Text(t) => humantime::parse_duration(t.trim())
                .map_err(|e| serde::de::Error::custom(format!("invalid duration {t:?}: {e}"))),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// The validated result.

/// Where the three files of one configuration live.
#[derive(Clone, Debug)]
pub struct ConfigPaths {
    pub main: PathBuf,
    pub accounts: PathBuf,
    pub routes: PathBuf,
}

/// A Google account as configured (runtime state such as tokens lives in the store, keyed by `id`).
#[derive(Clone, Debug)]
pub struct AccountSpec {
    /// Stable identity across reloads: the lower-cased email.
    pub id: String,
    pub email: String,
    pub refresh_token: Secret,
    pub project_id: Option<String>,
    pub tier: Option<String>,
    pub enabled: bool,
    pub max_concurrent: u32,
}

/// A parsed upstream base URL (`https://host[:port][/prefix]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing slash (usually empty).
    pub base_path: String,
}

impl UpstreamUrl {
    pub fn parse(text: &str) -> Result<Self, String> {
        let uri: http::Uri = text.parse().map_err(|e| format!("{text:?} is not a URL: {e}"))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("{text:?}: the scheme must be http or https")),
        };
        let host = uri.host().ok_or_else(|| format!("{text:?} has no host"))?.to_string();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let base_path = uri.path().trim_end_matches('/').to_string();
        Ok(UpstreamUrl { tls, host, port, base_path })
    }

    /// The `Host` header value.
    pub fn authority(&self) -> String {
        let default_port = if self.tls { 443 } else { 80 };
        if self.port == default_port {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for UpstreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority(), self.base_path)
    }
}

#[derive(Clone, Debug)]
pub struct UpstreamSettings {
    pub endpoints: Vec<UpstreamUrl>,
    /// Full URL of the OAuth token endpoint; `base_path` holds its path.
    pub oauth_token_url: UpstreamUrl,
    /// `levitate accounts login` only: the browser's authorize URL and the userinfo endpoint.
    pub oauth_authorize_url: String,
    pub oauth_userinfo_url: UpstreamUrl,
    pub oauth_client_id: String,
    pub oauth_client_secret: Secret,
    pub user_agent: String,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub token_refresh_lead: Duration,
}

#[derive(Clone, Debug)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    pub key: Option<Secret>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSettings {
    pub threads: usize,
    pub grace_period: Duration,
    pub pid_file: PathBuf,
    pub upgrade_sock: PathBuf,
}

/// One complete, validated configuration. Immutable; replaced whole on reload.
pub struct Snapshot {
    pub paths: ConfigPaths,
    pub listen: SocketAddr,
    pub admin: AdminSettings,
    pub api_keys: ApiKeys,
    pub api_key_names: Vec<String>,
    pub upstream: UpstreamSettings,
    pub accounts: Vec<AccountSpec>,
    pub aliases: AliasTable,
    pub store_path: PathBuf,
    pub signature_ttl: Duration,
    pub max_signatures: usize,
    pub max_request_body: usize,
    pub pool: PoolSettings,
    pub server: ServerSettings,
    pub request_log: RequestLogSettings,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("paths", &self.paths)
            .field("listen", &self.listen)
            .field("accounts", &self.accounts.len())
            .finish_non_exhaustive()
    }
}

/// How environment variables are read; a trait so tests need not mutate the process environment.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Snapshot {
    /// Reads and validates the configuration rooted at `main_path`, with secrets from the process env.
    pub fn load(main_path: &Path) -> Result<Snapshot, ConfigError> {
        Self::load_with_env(main_path, &ProcessEnv)
    }

    pub fn load_with_env(main_path: &Path, env: &dyn Env) -> Result<Snapshot, ConfigError> {
        let main_text = read(main_path)?;
        let main: MainFile = parse_yaml(main_path, &main_text)?;
        let folder = main_path.parent().unwrap_or(Path::new("."));
        let paths = ConfigPaths {
            main: main_path.to_path_buf(),
            accounts: folder.join(&main.accounts_file),
            routes: folder.join(&main.routes_file),
        };
        let accounts_text = read(&paths.accounts)?;
        let accounts: AccountsFile = parse_yaml(&paths.accounts, &accounts_text)?;
        let routes_text = read(&paths.routes)?;
        let routes: RoutesFile = parse_yaml(&paths.routes, &routes_text)?;
        build(main, accounts, routes, paths, folder, env)
    }
}

impl Snapshot {
    /// Settings of `next` that differ from `self` but are fixed for the life of a process (listening
    /// sockets, Pingora's server settings, the store, the upstream connector's timeouts). A reload keeps the
    /// running values of these and reports them; a binary upgrade (`levitate upgrade`) applies them.
    pub fn needs_upgrade(&self, next: &Snapshot) -> Vec<String> {
        let mut changed = Vec::new();
        let mut check = |key: &str, differs: bool| {
            if differs {
                changed.push(key.to_string());
            }
        };
        check("listen", self.listen != next.listen);
        check("admin.listen", self.admin.listen != next.admin.listen);
        check("server.threads", self.server.threads != next.server.threads);
        check("server.grace_period", self.server.grace_period != next.server.grace_period);
        check("server.pid_file", self.server.pid_file != next.server.pid_file);
        check("server.upgrade_sock", self.server.upgrade_sock != next.server.upgrade_sock);
        check("store.path", self.store_path != next.store_path);
        check("upstream.connect_timeout", self.upstream.connect_timeout != next.upstream.connect_timeout);
        check("upstream.read_timeout", self.upstream.read_timeout != next.upstream.read_timeout);
        changed
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })
}

fn parse_yaml<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    serde_yaml::from_str(text).map_err(|e| {
        let (line, column) = e.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
        // serde_yaml appends " at line N column M"; the location is already in front.
        let mut message = e.to_string();
        if let Some(cut) = message.find(" at line ") {
            message.truncate(cut);
        }
        ConfigError::Syntax { path: path.display().to_string(), line, column, message }
    })
}

fn invalid(path: &Path, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { path: path.display().to_string(), message: message.into() }
}

/// A value given inline or through an environment variable (`key` / `key_env` pairs).
fn secret_from(
    inline: Option<&str>,
    env_name: Option<&str>,
    what: &str,
    env: &dyn Env,
) -> Result<Option<Secret>, String> {
    match (inline, env_name) {
        (Some(_), Some(_)) => Err(format!("{what}: give either the value or its _env variable, not both")),
        (Some(""), None) => Err(format!("{what}: the value is empty")),
        (Some(v), None) => Ok(Some(Secret::new(v))),
        (None, Some(name)) => match env.var(name) {
            Some(v) => Ok(Some(Secret::new(v))),
            None => Err(format!("{what}: environment variable {name} is not set")),
        },
        (None, None) => Ok(None),
    }
}

/// Parses `32MiB`, `512KiB`, `1GB`, `100000` into bytes.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number.parse().map_err(|_| format!("{text:?} is not a size like 32MiB"))?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("{text:?}: unknown size unit {other:?} (use KiB, MiB, GiB)")),
    };
    Ok((number * scale) as usize)
}

/// The tier ids accounts.yaml accepts (PROTOCOL.md §4), with their selection priority: lower is preferred.
pub const TIERS: [(&str, u8); 6] = [
    ("ws-ai-ultra-business-tier", 0),
    ("g1-ultra-tier", 1),
    ("g1-pro-tier", 2),
    ("standard-tier", 3),
    ("legacy-tier", 3),
    ("free-tier", 4),
];

/// The priority of a tier nobody reported, or of one this table does not know.
pub const UNKNOWN_TIER_RANK: u8 = 5;

/// Whether `tier` is a tier id accounts.yaml accepts.
pub fn is_known_tier(tier: &str) -> bool {
    TIERS.iter().any(|(id, _)| *id == tier)
}

fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

fn build(
    main: MainFile,
    accounts: AccountsFile,
    routes: RoutesFile,
    paths: ConfigPaths,
    folder: &Path,
    env: &dyn Env,
) -> Result<Snapshot, ConfigError> {
    let mp = paths.main.clone();
    let listen: SocketAddr = main.listen.parse().map_err(|_| {
        invalid(&mp, format!("listen: {:?} is not an address like 127.0.0.1:8045", main.listen))
    })?;
    let admin_listen: SocketAddr = main.admin.listen.parse().map_err(|_| {
        invalid(&mp, format!("admin.listen: {:?} is not an address like 127.0.0.1:8046", main.admin.listen))
    })?;
    let admin_key = secret_from(main.admin.key.as_deref(), main.admin.key_env.as_deref(), "admin.key", env)
        .map_err(|m| invalid(&mp, m))?;
    if admin_key.is_none() && !is_loopback(&admin_listen) {
        return Err(invalid(
            &mp,
            "admin.listen is not a loopback address, so admin.key or admin.key_env is required",
        ));
    }
    if admin_listen == listen {
        return Err(invalid(&mp, "admin.listen and listen must differ"));
    }

    if main.auth.api_keys.is_empty() {
        return Err(invalid(&mp, "auth.api_keys: at least one key is required"));
    }
    let mut keys = Vec::new();
    let mut names = HashSet::new();
    for (i, k) in main.auth.api_keys.iter().enumerate() {
        let what = format!("auth.api_keys[{i}] ({})", k.name);
        if k.name.is_empty() {
            return Err(invalid(&mp, format!("auth.api_keys[{i}]: name is empty")));
        }
        if !names.insert(k.name.clone()) {
            return Err(invalid(&mp, format!("{what}: duplicate key name")));
        }
        let secret = secret_from(k.key.as_deref(), k.key_env.as_deref(), &what, env)
            .map_err(|m| invalid(&mp, m))?
            .ok_or_else(|| invalid(&mp, format!("{what}: give key or key_env")))?;
        keys.push((k.name.clone(), secret.expose().to_string()));
    }
    let api_key_names = keys.iter().map(|(n, _)| n.clone()).collect();
    let api_keys = ApiKeys::new(keys);

    let u = &main.upstream;
    if u.endpoints.is_empty() {
        return Err(invalid(&mp, "upstream.endpoints: at least one endpoint is required"));
    }
    let endpoints = u
        .endpoints
        .iter()
        .map(|e| UpstreamUrl::parse(e).map_err(|m| invalid(&mp, format!("upstream.endpoints: {m}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let oauth_token_url = UpstreamUrl::parse(&u.oauth_token_url)
        .map_err(|m| invalid(&mp, format!("upstream.oauth_token_url: {m}")))?;
    let oauth_userinfo_url = UpstreamUrl::parse(&u.oauth_userinfo_url)
        .map_err(|m| invalid(&mp, format!("upstream.oauth_userinfo_url: {m}")))?;
    UpstreamUrl::parse(&u.oauth_authorize_url)
        .map_err(|m| invalid(&mp, format!("upstream.oauth_authorize_url: {m}")))?;
    let oauth_client_secret =
        match secret_from(u.oauth_client_secret.as_deref(), None, "upstream.oauth_client_secret", env)
            .map_err(|m| invalid(&mp, m))?
        {
            Some(s) => s,
            // A missing secret is not fatal here: accounts may already hold fresh tokens, and the first refresh
            // reports the problem per account. `levitate check` warns about it.
            None => env.var(&u.oauth_client_secret_env).map(Secret::new).unwrap_or_default(),
        };
    let upstream = UpstreamSettings {
        endpoints,
        oauth_token_url,
        oauth_authorize_url: u.oauth_authorize_url.clone(),
        oauth_userinfo_url,
        oauth_client_id: u.oauth_client_id.clone(),
        oauth_client_secret,
        user_agent: u.user_agent.clone(),
        connect_timeout: u.connect_timeout,
        read_timeout: u.read_timeout,
        token_refresh_lead: u.token_refresh_lead,
    };

    let max_request_body = parse_size(&main.limits.max_request_body)
        .map_err(|m| invalid(&mp, format!("limits.max_request_body: {m}")))?;
    if max_request_body < 1024 {
        return Err(invalid(&mp, "limits.max_request_body must be at least 1KiB"));
    }
    if main.store.max_signatures == 0 || main.store.signature_ttl.is_zero() {
        return Err(invalid(&mp, "store.signature_ttl and store.max_signatures must be above zero"));
    }
    if main.pool.max_concurrent_per_account == 0 || main.pool.max_attempts == 0 {
        return Err(invalid(&mp, "pool.max_concurrent_per_account and pool.max_attempts must be at least 1"));
    }
    if !(0.0..=1.0).contains(&main.pool.quota_floor) {
        return Err(invalid(&mp, "pool.quota_floor must be a fraction within 0..=1"));
    }
    if main.pool.breaker_failures == 0 || main.pool.affinity_capacity == 0 {
        return Err(invalid(&mp, "pool.breaker_failures and pool.affinity_capacity must be at least 1"));
    }

    let ap = &paths.accounts;
    let mut specs = Vec::new();
    let mut seen = HashSet::new();
    for a in &accounts.accounts {
        let id = a.email.trim().to_ascii_lowercase();
        if !id.contains('@') {
            return Err(invalid(ap, format!("account {:?}: email is not an email address", a.email)));
        }
        if !seen.insert(id.clone()) {
            return Err(invalid(ap, format!("account {}: duplicate email", a.email)));
        }
        let what = format!("account {}", a.email);
        let refresh_token =
            secret_from(a.refresh_token.as_deref(), a.refresh_token_env.as_deref(), &what, env)
                .map_err(|m| invalid(ap, m))?
                .ok_or_else(|| invalid(ap, format!("{what}: give refresh_token or refresh_token_env")))?;
        if let Some(tier) = &a.tier {
            if !is_known_tier(tier) {
                let known: Vec<&str> = TIERS.iter().map(|(id, _)| *id).collect();
                return Err(invalid(
                    ap,
                    format!("{what}: unknown tier {tier:?} (known: {})", known.join(", ")),
                ));
            }
        }
        if a.max_concurrent == Some(0) {
            return Err(invalid(ap, format!("{what}: max_concurrent must be at least 1")));
        }
        specs.push(AccountSpec {
            id,
            email: a.email.trim().to_string(),
            refresh_token,
            project_id: a.project_id.clone().filter(|p| !p.is_empty()),
            tier: a.tier.clone(),
            enabled: a.enabled,
            max_concurrent: a.max_concurrent.unwrap_or(main.pool.max_concurrent_per_account),
        });
    }

    let rp = &paths.routes;
    let mut aliases = Vec::new();
    for (k, v) in &routes.aliases {
        let (Some(k), Some(v)) = (k.as_str(), v.as_str()) else {
            return Err(invalid(
                rp,
                "aliases: every entry maps a model pattern (string) to an upstream model (string)",
            ));
        };
        aliases.push((k.to_string(), v.to_string()));
    }
    let alias_table = AliasTable::compile(&routes.models, &aliases, routes.default.as_deref())
        .map_err(|e| invalid(rp, e.to_string()))?;

    if main.request_log.max_entries == 0 {
        return Err(invalid(&mp, "request_log.max_entries must be at least 1"));
    }
    let store_path = folder.join(&main.store.path);
    Ok(Snapshot {
        paths,
        listen,
        admin: AdminSettings { listen: admin_listen, key: admin_key },
        api_keys,
        api_key_names,
        upstream,
        accounts: specs,
        aliases: alias_table,
        store_path,
        signature_ttl: main.store.signature_ttl,
        max_signatures: main.store.max_signatures,
        max_request_body,
        pool: main.pool.clone(),
        server: ServerSettings {
            threads: main.server.threads,
            grace_period: main.server.grace_period,
            pid_file: folder.join(&main.server.pid_file),
            upgrade_sock: folder.join(&main.server.upgrade_sock),
        },
        request_log: main.request_log.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct FakeEnv(HashMap<&'static str, &'static str>);
    impl Env for FakeEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|v| v.to_string())
        }
    }

    fn write_config(dir: &Path, main: &str, accounts: &str, routes: &str) -> PathBuf {
        std::fs::write(dir.join("levitate.yaml"), main).unwrap();
        std::fs::write(dir.join("accounts.yaml"), accounts).unwrap();
        std::fs::write(dir.join("routes.yaml"), routes).unwrap();
        dir.join("levitate.yaml")
    }

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("levitate-config-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    const MAIN: &str = "listen: 127.0.0.1:9000\nauth:\n  api_keys:\n    - { name: default, key_env: K }\n";
    const ACCOUNTS: &str = "accounts:\n  - { email: A@x.com, refresh_token: r1, tier: g1-pro-tier }\n";
    const ROUTES: &str = "aliases:\n  gpt-4o: gemini-3-flash\ndefault: gemini-3-flash\n";

    fn env() -> FakeEnv {
        FakeEnv(HashMap::from([("K", "secret-key")]))
    }

    #[test]
    fn loads_a_valid_configuration() {
        let d = tempdir("ok");
        let p = write_config(&d, MAIN, ACCOUNTS, ROUTES);
        let s = Snapshot::load_with_env(&p, &env()).unwrap();
        assert_eq!(s.listen.port(), 9000);
        assert_eq!(s.accounts[0].id, "a@x.com");
        assert_eq!(s.accounts[0].max_concurrent, 3);
        assert_eq!(s.api_keys.verify("secret-key"), Some("default"));
        assert_eq!(s.max_request_body, 32 * 1024 * 1024);
        assert_eq!(s.store_path, d.join("./data"));
    }

    #[test]
    fn unknown_key_is_reported_with_file_line_and_name() {
        let d = tempdir("unknown");
        let p = write_config(&d, &format!("{MAIN}limits:\n  max_body: 1MiB\n"), ACCOUNTS, ROUTES);
        let e = Snapshot::load_with_env(&p, &env()).unwrap_err().to_string();
        assert!(e.contains("levitate.yaml:6:"), "{e}");
        assert!(e.contains("unknown field `max_body`"), "{e}");
    }

    #[test]
    fn semantic_errors_are_refused() {
        let d = tempdir("bad");
        let cases = [
            (MAIN.replace("key_env: K", "key_env: MISSING"), ACCOUNTS.to_string(), "MISSING is not set"),
            (
                MAIN.to_string(),
                format!("{ACCOUNTS}  - {{ email: a@x.com, refresh_token: r2 }}\n"),
                "duplicate email",
            ),
            (MAIN.to_string(), ACCOUNTS.replace("g1-pro-tier", "platinum"), "unknown tier"),
            (format!("{MAIN}admin: {{ listen: 0.0.0.0:9001 }}\n"), ACCOUNTS.to_string(), "admin.key"),
            (format!("{MAIN}limits: {{ max_request_body: 12 parsecs }}\n"), ACCOUNTS.to_string(), "size"),
        ];
        for (main, accounts, expected) in cases {
            let p = write_config(&d, &main, &accounts, ROUTES);
            let e = Snapshot::load_with_env(&p, &env()).unwrap_err().to_string();
            assert!(e.contains(expected), "expected {expected:?} in {e}");
        }
    }

    #[test]
    fn missing_referenced_file_names_it() {
        let d = tempdir("missing");
        let p = write_config(&d, &format!("{MAIN}routes_file: nowhere.yaml\n"), ACCOUNTS, ROUTES);
        let e = Snapshot::load_with_env(&p, &env()).unwrap_err().to_string();
        assert!(e.contains("nowhere.yaml"), "{e}");
    }

    #[test]
    fn settings_fixed_for_the_process_are_reported_as_needing_an_upgrade() {
        let d = tempdir("upgrade");
        let p = write_config(&d, MAIN, ACCOUNTS, ROUTES);
        let running = Snapshot::load_with_env(&p, &env()).unwrap();
        assert!(running.needs_upgrade(&Snapshot::load_with_env(&p, &env()).unwrap()).is_empty());
        let edited = MAIN.replace("9000", "9100") + "server: { grace_period: 10s }\n";
        let p = write_config(&d, &edited, ACCOUNTS, "default: gemini-3-pro-high\n");
        let next = Snapshot::load_with_env(&p, &env()).unwrap();
        assert_eq!(running.needs_upgrade(&next), vec!["listen", "server.grace_period"]);
        assert_eq!(next.server.pid_file, PathBuf::from("/run/levitate/levitate.pid"), "absolute paths stay");
    }

    #[test]
    fn sizes_and_urls_parse() {
        assert_eq!(parse_size("32MiB").unwrap(), 33554432);
        assert_eq!(parse_size("512 KiB").unwrap(), 524288);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("lots").is_err());
        let u = UpstreamUrl::parse("http://127.0.0.1:9999/x/").unwrap();
        assert_eq!((u.tls, u.port, u.base_path.as_str()), (false, 9999, "/x"));
        assert_eq!(
            UpstreamUrl::parse("https://cloudcode-pa.googleapis.com").unwrap().authority(),
            "cloudcode-pa.googleapis.com"
        );
        assert!(UpstreamUrl::parse("ftp://x").is_err());
    }
}
