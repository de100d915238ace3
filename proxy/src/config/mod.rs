//! Levitate's configuration: the YAML schema, its validation, and the immutable [`Snapshot`] built from it.
//!
//! Three user-edited files make one configuration: `levitate.yaml` (server, keys, upstream), `routes.yaml`
//! (model aliases) and `accounts.yaml` (the Google accounts). They are parsed into typed structs that reject
//! unknown keys, then validated into a `Snapshot` that the request path reads without ever touching YAML.
//! Building a snapshot either fully succeeds or changes nothing, so a reload can swap it in atomically.
//!
//! This file holds what the rest of the gateway sees: the [`Snapshot`] and its settings, the errors, and
//! [`Snapshot::load`]. `files` says what the YAML looks like, `source` reads a file and finds where a key is
//! written in it, and `validate` turns the parsed files into a snapshot.

mod duration;
mod egress;
pub mod fallback;
mod files;
pub mod live;
pub mod reload;
mod routes;
mod shared_state;
mod source;
mod tenancy;
mod validate;
pub mod warmup;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use levitate_filters::alias::AliasTable;
use levitate_filters::auth::ApiKeys;

use crate::egress::{Egress, EgressProxy, Pacing};
use crate::tls::TlsMaterial;
use files::MainFile;
pub use files::{LockScope, PoolSettings, RequestLogSettings};
pub use shared_state::SharedStateFile;
use source::{Parsed, Source};
pub use validate::{is_known_tier, parse_size, TIERS, UNKNOWN_TIER_RANK};

/// A configuration problem, phrased for the operator who has to fix the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}:{line}:{column}: {message}")]
    Syntax { path: String, line: usize, column: usize, message: String },
    /// A value that parses but cannot be used; `line` is where its key is written, when it could be found.
    #[error("{path}{}: {message}", .line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid { path: String, line: Option<usize>, message: String },
    /// Every problem one load found, so they can all be fixed in one go. Displayed one per line.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Several(Vec<ConfigError>),
}

impl ConfigError {
    /// The single problems this error is made of: each of `Several`, or the error itself.
    pub fn problems(&self) -> &[ConfigError] {
        match self {
            ConfigError::Several(all) => all,
            one => std::slice::from_ref(one),
        }
    }
}

/// The problems found so far while loading a configuration; loading goes on past each one.
#[derive(Default)]
struct Problems(Vec<ConfigError>);

impl Problems {
    fn push(&mut self, problem: ConfigError) {
        self.0.push(problem);
    }

    fn count(&self) -> usize {
        self.0.len()
    }

    /// The value of `result`, or `None` with its error kept.
    fn keep<T>(&mut self, result: Result<T, ConfigError>) -> Option<T> {
        result.map_err(|e| self.push(e)).ok()
    }

    /// `value` when nothing went wrong, otherwise one error holding every problem.
    fn finish<T>(mut self, value: Option<T>) -> Result<T, ConfigError> {
        match (value, self.0.len()) {
            (Some(value), 0) => Ok(value),
            (_, 1) => Err(self.0.remove(0)),
            // No value yet nothing kept: a bug in validation, reported rather than panicking.
            (None, 0) => Err(ConfigError::Invalid {
                path: "configuration".into(),
                line: None,
                message: "refused without a reason (please report this)".into(),
            }),
            _ => Err(ConfigError::Several(self.0)),
        }
    }
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
    /// The egress proxy every upstream call of this account goes through (its own, else `upstream.proxy`).
    pub egress: Option<Arc<EgressProxy>>,
    /// Spacing of the account's content calls (off by default).
    pub pacing: Pacing,
}

impl AccountSpec {
    /// What the upstream client needs to send a call of this account through its proxy.
    pub fn egress(&self) -> Option<Egress<'_>> {
        self.egress.as_ref().map(|proxy| Egress { account: &self.id, proxy })
    }
}

/// A parsed upstream base URL (`https://host[:port][/prefix]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing slash (usually empty).
    pub base_path: String,
    /// HTTP/2 by prior knowledge over plain TCP (`upstream.h2c`); only ever set on an `http://` URL.
    pub h2c: bool,
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
        Ok(UpstreamUrl { tls, host, port, base_path, h2c: false })
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
    /// Bound on one whole control-plane call (token refresh, loadCodeAssist, onboardUser, fetchAvailableModels).
    pub control_timeout: Duration,
    pub token_refresh_lead: Duration,
    /// `upstream.proxy`: the egress of accounts that name none (already applied to `Snapshot::accounts`).
    pub proxy: Option<Arc<EgressProxy>>,
}

#[derive(Clone, Debug)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    pub key: Option<Secret>,
    /// HTTPS on the admin listener (`admin.tls`), its files loaded and checked.
    pub tls: Option<TlsMaterial>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSettings {
    pub threads: usize,
    pub grace_period: Duration,
    pub pid_file: PathBuf,
    pub upgrade_sock: PathBuf,
    pub trusted_proxies: Vec<crate::gateway::client_addr::Cidr>,
}

/// `limits:`: the bounds every client is held to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body accepted (413 beyond).
    pub max_request_body: usize,
    /// How long a write to the client may make no progress before the answer is ended and its account slot
    /// freed (a client that stopped reading, or an HTTP/2 stream whose window stays closed).
    pub client_write_timeout: Duration,
    /// The whole request head must arrive within this (slowloris); idle keep-alive connections close after
    /// `keepalive_timeout`; a body upload that makes no progress for `body_read_timeout` ends with 408.
    pub header_timeout: Duration,
    pub body_read_timeout: Duration,
    pub keepalive_timeout: Duration,
    /// Open client connections (and, apart, in-flight streams); capped further by `RLIMIT_NOFILE`.
    pub max_connections: usize,
    /// Open connections from one client address (requests, for clients behind a trusted proxy).
    pub max_connections_per_ip: u32,
}

/// One complete, validated configuration. Immutable; replaced whole on reload.
pub struct Snapshot {
    pub paths: ConfigPaths,
    pub listen: SocketAddr,
    /// HTTPS on `listen` (`tls`), its files loaded and checked; `None` is plain HTTP.
    pub tls: Option<TlsMaterial>,
    pub admin: AdminSettings,
    pub api_keys: ApiKeys,
    pub api_key_names: Vec<String>,
    pub upstream: UpstreamSettings,
    pub accounts: Vec<AccountSpec>,
    pub aliases: AliasTable,
    /// The grounding model of routes.yaml: where a web search goes when its model cannot search.
    pub web_search_model: String,
    pub store_path: PathBuf,
    pub signature_ttl: Duration,
    pub max_signatures: usize,
    pub limits: Limits,
    pub pool: PoolSettings,
    pub server: ServerSettings,
    pub request_log: RequestLogSettings,
    /// Per-key limits, the budgets' time zone and the usage retention (`crate::tenancy`).
    pub tenancy: crate::tenancy::TenancySettings,
    /// The opt-in public Gemini API key (`fallback:`); `None` is off.
    pub fallback: Option<fallback::FallbackSettings>,
    /// The warmup scheduler (`warmup:`); `None` is off.
    pub warmup: Option<warmup::WarmupSettings>,
    /// `shared_state` (used at start only: see `crate::shared`).
    pub shared_state: Option<SharedStateFile>,
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

    /// Like [`Snapshot::load`], with secrets from `env`. Every problem of all three files is reported, not
    /// only the first: each file that can be read is parsed, and each one that parses is validated.
    pub fn load_with_env(main_path: &Path, env: &dyn Env) -> Result<Snapshot, ConfigError> {
        let mut problems = Problems::default();
        // Without levitate.yaml nothing else is known, not even where the other two files are.
        let main_source = Source::read(main_path)?;
        let folder = main_path.parent().unwrap_or(Path::new("."));
        let (main, (accounts_name, routes_name)) = match main_source.parse::<MainFile>() {
            Ok(file) => {
                let names = (Some(file.accounts_file.clone()), Some(file.routes_file.clone()));
                (Some(Parsed { source: main_source, file }), names)
            }
            Err(e) => {
                problems.push(e);
                (None, MainFile::referenced_files(&main_source.text))
            }
        };
        let accounts = accounts_name.and_then(|name| Parsed::read(&folder.join(name), &mut problems));
        let routes = routes_name.and_then(|name| Parsed::read(&folder.join(name), &mut problems));
        let snapshot =
            validate::build(main.as_ref(), accounts.as_ref(), routes.as_ref(), folder, env, &mut problems);
        problems.finish(snapshot)
    }

    /// Validates the three files' texts exactly as [`Snapshot::load_with_env`] does, without the filesystem:
    /// problems name `levitate.yaml`, `accounts.yaml` and `routes.yaml`, and relative paths in the snapshot
    /// are relative to the current folder. The entry the config fuzz target drives (fuzz/, docs/reliability.md).
    pub fn from_texts(
        main: &str,
        accounts: &str,
        routes: &str,
        env: &dyn Env,
    ) -> Result<Snapshot, ConfigError> {
        fn parse<T: serde::de::DeserializeOwned>(
            name: &str,
            text: &str,
            problems: &mut Problems,
        ) -> Option<Parsed<T>> {
            let source = Source { path: PathBuf::from(name), text: text.to_owned() };
            let file = problems.keep(source.parse())?;
            Some(Parsed { source, file })
        }
        let mut problems = Problems::default();
        let main = parse::<MainFile>("levitate.yaml", main, &mut problems);
        let accounts = parse("accounts.yaml", accounts, &mut problems);
        let routes = parse("routes.yaml", routes, &mut problems);
        let snapshot = validate::build(
            main.as_ref(),
            accounts.as_ref(),
            routes.as_ref(),
            Path::new("."),
            env,
            &mut problems,
        );
        problems.finish(snapshot)
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
        // Turning TLS on or off changes the listener; new certificate files do not (they are re-read).
        check("tls", self.tls.is_some() != next.tls.is_some());
        check("admin.tls", self.admin.tls.is_some() != next.admin.tls.is_some());
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
        assert_eq!(s.limits.max_request_body, 32 * 1024 * 1024);
        assert_eq!(s.store_path, d.join("./data"));
    }

    #[test]
    fn texts_validate_like_files() {
        let s = Snapshot::from_texts(MAIN, ACCOUNTS, ROUTES, &env()).unwrap();
        assert_eq!(s.accounts[0].id, "a@x.com");
        assert_eq!(s.api_keys.verify("secret-key"), Some("default"));
        let bad_main = format!("{MAIN}limits:\n  max_body: 1MiB\n");
        let e = Snapshot::from_texts(&bad_main, "accounts: [", ROUTES, &env()).unwrap_err().to_string();
        assert!(e.contains("levitate.yaml:6:") && e.contains("unknown field `max_body`"), "{e}");
        assert!(e.contains("accounts.yaml:"), "{e}");
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
    fn the_web_search_model_defaults_and_must_be_a_listed_gemini_model() {
        let s = Snapshot::from_texts(MAIN, ACCOUNTS, ROUTES, &env()).unwrap();
        assert_eq!(s.web_search_model, "gemini-3-flash");
        let routes = |model: &str| {
            format!("models: [gemini-3-flash, gemini-2.5-pro, claude-sonnet-4-6]\n{ROUTES}web_search_model: {model}\n")
        };
        let s = Snapshot::from_texts(MAIN, ACCOUNTS, &routes("gemini-2.5-pro"), &env()).unwrap();
        assert_eq!(s.web_search_model, "gemini-2.5-pro");
        for (model, expected) in
            [("gemini-9", "is not one of `models`"), ("claude-sonnet-4-6", "cannot ground")]
        {
            let e = Snapshot::from_texts(MAIN, ACCOUNTS, &routes(model), &env()).unwrap_err().to_string();
            assert!(e.contains("routes.yaml:5:") && e.contains(expected), "{e}");
        }
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
            (
                format!("{MAIN}upstream: {{ control_timeout: 0s }}\n"),
                ACCOUNTS.to_string(),
                "upstream.control_timeout must be above zero",
            ),
        ];
        for (main, accounts, expected) in cases {
            let p = write_config(&d, &main, &accounts, ROUTES);
            let e = Snapshot::load_with_env(&p, &env()).unwrap_err().to_string();
            assert!(e.contains(expected), "expected {expected:?} in {e}");
        }
    }

    #[test]
    fn connection_limits_and_trusted_proxies_load_and_bad_ones_are_located() {
        let d = tempdir("conns");
        let main = format!(
            "{MAIN}limits: {{ header_timeout: 3s, max_connections_per_ip: 4 }}\nserver:\n  trusted_proxies: [10.0.0.0/8, \"::1\"]\n"
        );
        let s = Snapshot::load_with_env(&write_config(&d, &main, ACCOUNTS, ROUTES), &env()).unwrap();
        assert_eq!(s.limits.header_timeout, Duration::from_secs(3));
        assert_eq!(s.limits.max_connections_per_ip, 4);
        assert_eq!(s.limits.keepalive_timeout, Duration::from_secs(60));
        assert_eq!(s.limits.max_connections, 10_000);
        assert_eq!(s.server.trusted_proxies.len(), 2);
        assert!(s.server.trusted_proxies[0].contains("10.9.8.7".parse().unwrap()));

        let main = format!("{MAIN}server:\n  trusted_proxies:\n    - 10.0.0.0/8\n    - 10.0.0.0/40\n");
        let e = Snapshot::load_with_env(&write_config(&d, &main, ACCOUNTS, ROUTES), &env()).unwrap_err();
        let e = e.to_string();
        assert!(e.contains("levitate.yaml:8:") && e.contains("10.0.0.0/40"), "{e}");
        let main = format!("{MAIN}limits: {{ header_timeout: 0s }}\n");
        let e = Snapshot::load_with_env(&write_config(&d, &main, ACCOUNTS, ROUTES), &env()).unwrap_err();
        assert!(e.to_string().contains("limits.header_timeout must be above zero"), "{e}");
    }

    #[test]
    fn an_unset_admin_key_variable_on_loopback_means_no_key() {
        let d = tempdir("admin-loopback");
        let main = format!("{MAIN}admin: {{ listen: 127.0.0.1:9001, key_env: ADMIN }}\n");
        let p = write_config(&d, &main, ACCOUNTS, ROUTES);
        let s = Snapshot::load_with_env(&p, &env()).unwrap();
        assert!(s.admin.key.is_none(), "no key: the loopback admin API is open");
        let with_key = FakeEnv(HashMap::from([("K", "secret-key"), ("ADMIN", "admin-secret")]));
        let s = Snapshot::load_with_env(&p, &with_key).unwrap();
        assert_eq!(s.admin.key.as_ref().map(Secret::expose), Some("admin-secret"));
    }

    #[test]
    fn an_unset_admin_key_variable_off_loopback_is_refused() {
        let d = tempdir("admin-exposed");
        let main = format!("{MAIN}admin: {{ listen: 0.0.0.0:9001, key_env: ADMIN }}\n");
        let p = write_config(&d, &main, ACCOUNTS, ROUTES);
        let e = Snapshot::load_with_env(&p, &env()).unwrap_err().to_string();
        assert!(e.contains("not a loopback address") && e.contains("ADMIN is not set"), "{e}");
    }

    #[test]
    fn every_problem_of_the_three_files_is_reported_in_one_run() {
        let d = tempdir("several");
        let main = MAIN.replace("127.0.0.1:9000", "nowhere") + "limits:\n  max_request_body: 12 parsecs\n";
        let routes = "aliases:\n  gpt-4o: gemini-3-flash\n  gpt-4o-mini: \"gemini-*\"\n";
        let p = write_config(&d, &main, &ACCOUNTS.replace("g1-pro-tier", "platinum"), routes);
        let e = Snapshot::load_with_env(&p, &env()).unwrap_err();
        let lines: Vec<String> =
            e.to_string().lines().map(|l| l.replace(&format!("{}/", d.display()), "")).collect();
        assert_eq!(e.problems().len(), 4, "{e}");
        assert!(lines[0].starts_with("levitate.yaml:1: listen: \"nowhere\""), "{lines:?}");
        assert!(lines[1].starts_with("levitate.yaml:6: limits.max_request_body:"), "{lines:?}");
        assert!(lines[2].starts_with("accounts.yaml:2: account A@x.com: unknown tier"), "{lines:?}");
        assert!(lines[3].starts_with("routes.yaml:3: alias `gpt-4o-mini` targets `gemini-*`"), "{lines:?}");
    }

    #[test]
    fn the_other_files_are_checked_when_levitate_yaml_does_not_deserialize() {
        let d = tempdir("main-broken");
        let main = format!("{MAIN}limits:\n  max_body: 1MiB\n");
        let p = write_config(&d, &main, &ACCOUNTS.replace("g1-pro-tier", "platinum"), ROUTES);
        let e = Snapshot::load_with_env(&p, &env()).unwrap_err();
        let text = e.to_string();
        assert_eq!(e.problems().len(), 2, "{text}");
        assert!(text.contains("levitate.yaml:6:") && text.contains("unknown field `max_body`"), "{text}");
        assert!(text.contains("accounts.yaml:2: account A@x.com: unknown tier"), "{text}");

        // Not YAML at all: where the other files are cannot be told, so only that is reported.
        let p = write_config(&d, "listen: [127.0.0.1\n", ACCOUNTS, "aliases: [\n");
        let e = Snapshot::load_with_env(&p, &env()).unwrap_err();
        assert_eq!(e.problems().len(), 1, "{e}");
        assert!(e.to_string().contains("levitate.yaml:"), "{e}");
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
    fn tls_file_problems_name_the_key_line_and_the_file() {
        let d = tempdir("tls");
        std::fs::write(d.join("cert.pem"), "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n")
            .unwrap();
        let main = format!(
            "{MAIN}tls:\n  cert: cert.pem\n  key: missing.key\nadmin:\n  tls: {{ cert: '', key: k }}\n"
        );
        let p = write_config(&d, &main, ACCOUNTS, ROUTES);
        let e = Snapshot::load_with_env(&p, &env()).unwrap_err();
        let lines: Vec<String> =
            e.to_string().lines().map(|l| l.replace(&format!("{}/", d.display()), "")).collect();
        assert_eq!(e.problems().len(), 2, "{e}");
        assert!(lines[0].starts_with("levitate.yaml:6: tls.cert: cert.pem:1: not valid PEM"), "{lines:?}");
        assert!(lines[1].starts_with("levitate.yaml:9: admin.tls.cert: the file name is empty"), "{lines:?}");

        let main = format!("{MAIN}tls: {{ cert: nowhere.pem, key: k }}\n");
        let p = write_config(&d, &main, ACCOUNTS, ROUTES);
        let e = Snapshot::load_with_env(&p, &env())
            .unwrap_err()
            .to_string()
            .replace(&format!("{}/", d.display()), "");
        assert!(e.starts_with("levitate.yaml:5: tls.cert: nowhere.pem: cannot read"), "{e}");

        let main = format!("{MAIN}tls: {{ cert: c, key: k, ca: x }}\n");
        let p = write_config(&d, &main, ACCOUNTS, ROUTES);
        let e = Snapshot::load_with_env(&p, &env()).unwrap_err().to_string();
        assert!(e.contains("unknown field `ca`"), "{e}");
    }

    #[test]
    fn turning_tls_on_or_off_needs_an_upgrade_but_new_files_do_not() {
        let d = tempdir("tls-upgrade");
        crate::tls::fixtures::write(&d, crate::tls::fixtures::KEY);
        let p = write_config(&d, MAIN, ACCOUNTS, ROUTES);
        let plain = Snapshot::load_with_env(&p, &env()).unwrap();
        let p =
            write_config(&d, &format!("{MAIN}tls: {{ cert: cert.pem, key: key.pem }}\n"), ACCOUNTS, ROUTES);
        let tls = Snapshot::load_with_env(&p, &env()).unwrap();
        assert_eq!(tls.tls.as_ref().map(|t| t.files.cert.clone()), Some(d.join("cert.pem")));
        assert_eq!(plain.needs_upgrade(&tls), vec!["tls"]);
        assert!(tls.needs_upgrade(&Snapshot::load_with_env(&p, &env()).unwrap()).is_empty());
    }

    #[test]
    fn debug_output_never_shows_a_secret() {
        let d = tempdir("debug");
        let main = format!(
            "{}admin: {{ listen: 127.0.0.1:9001, key: admin-s3cr3t-1 }}\n\
             upstream: {{ oauth_client_id: client-id, oauth_client_secret: client-s3cr3t-2 }}\n",
            MAIN.replace("key_env: K", "key: api-s3cr3t-3")
        );
        let accounts = ACCOUNTS.replace("refresh_token: r1", "refresh_token: refresh-s3cr3t-4");
        let p = write_config(&d, &main, &accounts, ROUTES);
        let s = Snapshot::load_with_env(&p, &env()).unwrap();
        let main_file: MainFile = Source::read(&p).unwrap().parse().unwrap();
        let accounts_file: files::AccountsFile =
            Source::read(&d.join("accounts.yaml")).unwrap().parse().unwrap();
        let printed = [
            format!("{s:?}"),
            format!("{:?}", s.accounts),
            format!("{:?}", s.admin),
            format!("{:?}", s.upstream),
            format!("{:?}", s.api_keys),
            format!("{main_file:?}"),
            format!("{accounts_file:?}"),
            format!("{:#?}", s.accounts),
        ]
        .join("\n");
        assert!(!printed.contains("s3cr3t"), "{printed}");
        assert!(printed.contains("a@x.com") && printed.contains("client-id"), "the rest is still shown");
    }

    #[test]
    fn urls_parse() {
        let u = UpstreamUrl::parse("http://127.0.0.1:9999/x/").unwrap();
        assert_eq!((u.tls, u.port, u.base_path.as_str()), (false, 9999, "/x"));
        assert_eq!(
            UpstreamUrl::parse("https://cloudcode-pa.googleapis.com").unwrap().authority(),
            "cloudcode-pa.googleapis.com"
        );
        assert!(UpstreamUrl::parse("ftp://x").is_err());
    }
}
