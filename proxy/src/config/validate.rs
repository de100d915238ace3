//! Turning the parsed files into a [`Snapshot`]: every value is checked, secrets are read from the
//! environment, addresses, URLs and sizes are parsed, and aliases are compiled.
//!
//! Validation does not stop at the first problem: each is kept with its file and line (where the key can be
//! found) and checking goes on, so `levitate check` reports them all in one run. A snapshot is built only
//! when there are none.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use levitate_filters::auth::ApiKeys;
use levitate_filters::grounding::DEFAULT_WEB_SEARCH_MODEL;

use crate::egress::EgressProxy;
use crate::tls::{self, TlsFiles, TlsMaterial};

use super::files::{AccountsFile, MainFile, RoutesFile, TlsFile, UpstreamFile};
use super::source::At::{self, Item, Key};
use super::source::{Parsed, Source};
use super::{
    AccountSpec, AdminSettings, ConfigError, ConfigPaths, Env, Limits, PoolSettings, Problems, Secret,
    ServerSettings, Snapshot, UpstreamSettings, UpstreamUrl,
};

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

/// Builds the snapshot from the three parsed files, or keeps every problem found in `problems`. A file that
/// did not parse is `None`; the others are still checked.
pub(super) fn build(
    main: Option<&Parsed<MainFile>>,
    accounts: Option<&Parsed<AccountsFile>>,
    routes: Option<&Parsed<RoutesFile>>,
    folder: &Path,
    env: &dyn Env,
    problems: &mut Problems,
) -> Option<Snapshot> {
    let settings = main.and_then(|m| main_settings(&m.source, &m.file, env, problems));
    // Accounts are checked even when levitate.yaml is broken, with the built-in default concurrency.
    let default_concurrency = main.map_or(PoolSettings::default().max_concurrent_per_account, |m| {
        m.file.pool.max_concurrent_per_account
    });
    let default_proxy = settings.as_ref().and_then(|s| s.upstream.proxy.clone());
    let specs = accounts.and_then(|a| {
        account_specs(&a.source, &a.file, (default_concurrency, default_proxy.as_ref()), env, problems)
    });
    let aliases = routes.and_then(|r| super::routes::alias_table(&r.source, &r.file, problems));
    let tenancy =
        main.and_then(|m| super::tenancy::settings(&m.source, &m.file.auth, &m.file.usage, problems));
    let fallback = main.and_then(|m| {
        let file = m.file.fallback.as_ref()?;
        let built = super::fallback::build(file, env);
        problems.keep(built.map_err(|(key, m2)| m.source.invalid(&[Key("fallback"), Key(key)], m2)))
    });
    let warmup = main.and_then(|m| {
        let built = super::warmup::build(m.file.warmup.as_ref()?);
        problems.keep(built.map_err(|(key, m2)| m.source.invalid(&[Key("warmup"), Key(key)], m2)))
    });
    let tls = main.and_then(|m| {
        let gateway = listener_tls(&m.source, m.file.tls.as_ref(), &[Key("tls")], folder, problems);
        let admin_at = [Key("admin"), Key("tls")];
        let admin = listener_tls(&m.source, m.file.admin.tls.as_ref(), &admin_at, folder, problems);
        Some((gateway?, admin?))
    });
    let (Some(main), Some(accounts), Some(routes), Some(mut settings), Some(specs), Some(aliases), Some(tls)) =
        (main, accounts, routes, settings, specs, aliases, tls)
    else {
        return None;
    };
    super::routes::check_web_search_model(routes, problems);
    if problems.count() > 0 {
        return None;
    }
    let tenancy = tenancy?;
    let file = &main.file;
    settings.admin.tls = tls.1;
    Some(Snapshot {
        paths: ConfigPaths {
            main: main.source.path.clone(),
            accounts: accounts.source.path.clone(),
            routes: routes.source.path.clone(),
        },
        listen: settings.listen,
        tls: tls.0,
        admin: settings.admin,
        api_keys: settings.api_keys,
        api_key_names: settings.api_key_names,
        upstream: settings.upstream,
        accounts: specs,
        aliases,
        web_search_model: routes
            .file
            .web_search_model
            .clone()
            .unwrap_or_else(|| DEFAULT_WEB_SEARCH_MODEL.into()),
        store_path: folder.join(&file.store.path),
        signature_ttl: file.store.signature_ttl,
        max_signatures: file.store.max_signatures,
        limits: Limits {
            max_request_body: settings.max_request_body,
            client_write_timeout: file.limits.client_write_timeout,
            header_timeout: file.limits.header_timeout,
            body_read_timeout: file.limits.body_read_timeout,
            keepalive_timeout: file.limits.keepalive_timeout,
            max_connections: file.limits.max_connections,
            max_connections_per_ip: file.limits.max_connections_per_ip,
        },
        pool: file.pool.clone(),
        server: ServerSettings {
            threads: file.server.threads,
            grace_period: file.server.grace_period,
            pid_file: folder.join(&file.server.pid_file),
            upgrade_sock: folder.join(&file.server.upgrade_sock),
            trusted_proxies: settings.trusted_proxies,
        },
        request_log: file.request_log.clone(),
        tenancy,
        fallback,
        warmup,
        shared_state: file.shared_state.clone(),
    })
}

/// What levitate.yaml gives that takes more than copying a value.
struct MainSettings {
    listen: SocketAddr,
    admin: AdminSettings,
    api_keys: ApiKeys,
    api_key_names: Vec<String>,
    upstream: UpstreamSettings,
    max_request_body: usize,
    trusted_proxies: Vec<crate::gateway::client_addr::Cidr>,
}

fn main_settings(
    src: &Source,
    main: &MainFile,
    env: &dyn Env,
    problems: &mut Problems,
) -> Option<MainSettings> {
    let before = problems.count();
    let listen = problems.keep(address(src, &[Key("listen")], &main.listen, "127.0.0.1:8045"));
    let admin_listen =
        problems.keep(address(src, &[Key("admin"), Key("listen")], &main.admin.listen, "127.0.0.1:8046"));
    let admin_key = problems.keep(admin_key(src, main, admin_listen, env));
    if listen.is_some() && listen == admin_listen {
        problems.push(src.invalid(&[Key("admin"), Key("listen")], "admin.listen and listen must differ"));
    }
    let api_keys = api_keys(src, main, env, problems);
    let upstream = upstream_settings(src, &main.upstream, env, problems);

    let size_at = [Key("limits"), Key("max_request_body")];
    let max_request_body = match parse_size(&main.limits.max_request_body) {
        Ok(size) if size >= 1024 => Some(size),
        Ok(_) => {
            problems.push(src.invalid(&size_at, "limits.max_request_body must be at least 1KiB"));
            None
        }
        Err(m) => {
            problems.push(src.invalid(&size_at, format!("limits.max_request_body: {m}")));
            None
        }
    };
    let mut check = |holds: bool, at: &[At<'_>], message: &str| {
        if !holds {
            problems.push(src.invalid(at, message));
        }
    };
    let limits = &main.limits;
    for (key, value) in [
        ("client_write_timeout", limits.client_write_timeout),
        ("header_timeout", limits.header_timeout),
        ("body_read_timeout", limits.body_read_timeout),
        ("keepalive_timeout", limits.keepalive_timeout),
    ] {
        check(!value.is_zero(), &[Key("limits"), Key(key)], &format!("limits.{key} must be above zero"));
    }
    check(
        limits.max_connections > 0 && limits.max_connections_per_ip > 0,
        &[Key("limits")],
        "limits.max_connections and limits.max_connections_per_ip must be at least 1",
    );
    let mut trusted_proxies = Vec::new();
    for (i, text) in main.server.trusted_proxies.iter().enumerate() {
        match crate::gateway::client_addr::Cidr::parse(text) {
            Ok(cidr) => trusted_proxies.push(cidr),
            Err(e) => check(
                false,
                &[Key("server"), Key("trusted_proxies"), Item(i)],
                &format!("server.trusted_proxies: {e}"),
            ),
        }
    }
    check(
        !main.upstream.control_timeout.is_zero(),
        &[Key("upstream"), Key("control_timeout")],
        "upstream.control_timeout must be above zero",
    );
    check(
        main.store.max_signatures > 0 && !main.store.signature_ttl.is_zero(),
        &[Key("store")],
        "store.signature_ttl and store.max_signatures must be above zero",
    );
    let pool = &main.pool;
    check(
        pool.max_concurrent_per_account > 0 && pool.max_attempts > 0,
        &[Key("pool")],
        "pool.max_concurrent_per_account and pool.max_attempts must be at least 1",
    );
    check(
        (0.0..=1.0).contains(&pool.quota_floor),
        &[Key("pool"), Key("quota_floor")],
        "pool.quota_floor must be a fraction within 0..=1",
    );
    check(
        pool.breaker_failures > 0 && pool.affinity_capacity > 0,
        &[Key("pool")],
        "pool.breaker_failures and pool.affinity_capacity must be at least 1",
    );
    if let Some((key, problem)) = main.shared_state.as_ref().and_then(crate::shared::keys::settings_problem) {
        check(false, &[Key("shared_state"), Key(key)], problem);
    }
    check(
        main.request_log.max_entries > 0,
        &[Key("request_log"), Key("max_entries")],
        "request_log.max_entries must be at least 1",
    );

    let (
        Some(listen),
        Some(admin_listen),
        Some(admin_key),
        Some((api_keys, api_key_names)),
        Some(upstream),
        Some(max_request_body),
    ) = (listen, admin_listen, admin_key, api_keys, upstream, max_request_body)
    else {
        return None;
    };
    if problems.count() > before {
        return None;
    }
    Some(MainSettings {
        listen,
        admin: AdminSettings { listen: admin_listen, key: admin_key, tls: None },
        api_keys,
        api_key_names,
        upstream,
        max_request_body,
        trusted_proxies,
    })
}

/// A listener's `tls:` with its files read and checked: `Some(None)` for plain HTTP, `None` after a problem
/// (kept at the line of the key naming the file that failed).
fn listener_tls(
    src: &Source,
    tls: Option<&TlsFile>,
    at: &[At<'_>],
    folder: &Path,
    problems: &mut Problems,
) -> Option<Option<TlsMaterial>> {
    let Some(t) = tls else { return Some(None) };
    let name = key_path(at);
    let key_at = |key| [at, &[Key(key)]].concat();
    let before = problems.count();
    for (key, value) in [("cert", Some(&t.cert)), ("key", Some(&t.key)), ("client_ca", t.client_ca.as_ref())]
    {
        if value.is_some_and(|v| v.trim().is_empty()) {
            problems.push(src.invalid(&key_at(key), format!("{name}.{key}: the file name is empty")));
        }
    }
    if problems.count() > before {
        return None;
    }
    let files = TlsFiles {
        cert: folder.join(&t.cert),
        key: folder.join(&t.key),
        client_ca: t.client_ca.as_ref().map(|ca| folder.join(ca)),
    };
    match tls::load(&files) {
        Ok(material) => Some(Some(material)),
        Err(e) => {
            let path = e.path();
            let key = if path == files.cert.display().to_string() {
                "cert"
            } else if path == files.key.display().to_string() {
                "key"
            } else {
                "client_ca"
            };
            problems.push(src.invalid(&key_at(key), format!("{name}.{key}: {e}")));
            None
        }
    }
}

fn address(src: &Source, at: &[At<'_>], text: &str, example: &str) -> Result<SocketAddr, ConfigError> {
    let name = key_path(at);
    text.parse().map_err(|_| src.invalid(at, format!("{name}: {text:?} is not an address like {example}")))
}

/// `[Key("admin"), Key("listen")]` as `admin.listen`, the way messages name keys.
fn key_path(at: &[At<'_>]) -> String {
    let mut path = String::new();
    for step in at {
        match step {
            Key(key) if path.is_empty() => path.push_str(key),
            Key(key) => {
                path.push('.');
                path.push_str(key);
            }
            Item(index) => path.push_str(&format!("[{index}]")),
        }
    }
    path
}

/// The admin key is optional on loopback, so there a `key_env` naming an unset variable means no key: the
/// admin API is open to local users, as when no key is configured. Off loopback a missing key is refused.
fn admin_key(
    src: &Source,
    main: &MainFile,
    admin_listen: Option<SocketAddr>,
    env: &dyn Env,
) -> Result<Option<Secret>, ConfigError> {
    let admin = &main.admin;
    let key = match (admin.key.as_deref(), admin.key_env.as_deref()) {
        (None, Some(name)) => env.var(name).map(Secret::new),
        (inline, name) => secret_from(inline, name, "admin.key", env).map_err(|m| {
            src.invalid(&[Key("admin"), Key(if name.is_some() { "key_env" } else { "key" })], m)
        })?,
    };
    match admin_listen {
        Some(listen) if key.is_none() && !is_loopback(&listen) => {
            let missing = match &admin.key_env {
                Some(name) => format!(", but environment variable {name} is not set"),
                None => String::new(),
            };
            let message = format!(
                "admin.listen {listen} is not a loopback address, so admin.key or admin.key_env is required{missing}"
            );
            Err(src.invalid(&[Key("admin"), Key("listen")], message))
        }
        _ => Ok(key),
    }
}

/// The client API keys and their names, in file order.
fn api_keys(
    src: &Source,
    main: &MainFile,
    env: &dyn Env,
    problems: &mut Problems,
) -> Option<(ApiKeys, Vec<String>)> {
    let before = problems.count();
    if main.auth.api_keys.is_empty() {
        problems.push(
            src.invalid(&[Key("auth"), Key("api_keys")], "auth.api_keys: at least one key is required"),
        );
    }
    let mut keys = Vec::new();
    let mut names = HashSet::new();
    for (i, k) in main.auth.api_keys.iter().enumerate() {
        let at = [Key("auth"), Key("api_keys"), Item(i)];
        let what = format!("auth.api_keys[{i}] ({})", k.name);
        if k.name.is_empty() {
            problems.push(src.invalid(&at, format!("auth.api_keys[{i}]: name is empty")));
        } else if !names.insert(k.name.as_str()) {
            problems.push(src.invalid(&at, format!("{what}: duplicate key name")));
        }
        match secret_from(k.key.as_deref(), k.key_env.as_deref(), &what, env) {
            Ok(Some(secret)) => keys.push((k.name.clone(), secret.expose().to_string())),
            Ok(None) => problems.push(src.invalid(&at, format!("{what}: give key or key_env"))),
            Err(m) => problems.push(src.invalid(&at, m)),
        }
    }
    if problems.count() > before {
        return None;
    }
    let names = keys.iter().map(|(n, _)| n.clone()).collect();
    Some((ApiKeys::new(keys), names))
}

fn upstream_settings(
    src: &Source,
    u: &UpstreamFile,
    env: &dyn Env,
    problems: &mut Problems,
) -> Option<UpstreamSettings> {
    let before = problems.count();
    if u.endpoints.is_empty() {
        problems.push(src.invalid(
            &[Key("upstream"), Key("endpoints")],
            "upstream.endpoints: at least one endpoint is required",
        ));
    }
    let mut endpoints = Vec::new();
    for (i, e) in u.endpoints.iter().enumerate() {
        let at = [Key("upstream"), Key("endpoints"), Item(i)];
        endpoints.extend(
            problems.keep(
                UpstreamUrl::parse(e).map_err(|m| src.invalid(&at, format!("upstream.endpoints: {m}"))),
            ),
        );
    }
    let mut url = |key: &str, text: &str| {
        let at = [Key("upstream"), Key(key)];
        problems.keep(UpstreamUrl::parse(text).map_err(|m| src.invalid(&at, format!("upstream.{key}: {m}"))))
    };
    let mut oauth_token_url = url("oauth_token_url", &u.oauth_token_url);
    let mut oauth_userinfo_url = url("oauth_userinfo_url", &u.oauth_userinfo_url);
    let oauth_authorize_url = url("oauth_authorize_url", &u.oauth_authorize_url);
    if u.h2c {
        // h2c is plaintext by definition: an https:// URL keeps negotiating by ALPN (h2, else h1).
        let plain = endpoints.iter_mut().chain(oauth_token_url.as_mut()).chain(oauth_userinfo_url.as_mut());
        let mut any = false;
        for target in plain.filter(|t| !t.tls) {
            target.h2c = true;
            any = true;
        }
        if !any && problems.count() == before {
            problems.push(src.invalid(
                &[Key("upstream"), Key("h2c")],
                "upstream.h2c: true, but no upstream URL is http:// (h2c is HTTP/2 without TLS; https:// \
                 URLs negotiate HTTP/2 by ALPN already)",
            ));
        }
    }
    let oauth_client_secret =
        match secret_from(u.oauth_client_secret.as_deref(), None, "upstream.oauth_client_secret", env) {
            Ok(Some(s)) => Some(s),
            // A missing secret is not fatal here: accounts may already hold fresh tokens, and the first refresh
            // reports the problem per account. `levitate check` warns about it.
            Ok(None) => Some(env.var(&u.oauth_client_secret_env).map(Secret::new).unwrap_or_default()),
            Err(m) => {
                problems.push(src.invalid(&[Key("upstream"), Key("oauth_client_secret")], m));
                None
            }
        };
    let proxy =
        super::egress::default_proxy(src, u.proxy.as_deref(), u.proxy_auth_env.as_deref(), env, problems);
    let (Some(oauth_token_url), Some(oauth_userinfo_url), Some(_), Some(oauth_client_secret), Ok(proxy)) =
        (oauth_token_url, oauth_userinfo_url, oauth_authorize_url, oauth_client_secret, proxy)
    else {
        return None;
    };
    if problems.count() > before {
        return None;
    }
    Some(UpstreamSettings {
        endpoints,
        oauth_token_url,
        oauth_authorize_url: u.oauth_authorize_url.clone(),
        oauth_userinfo_url,
        oauth_client_id: u.oauth_client_id.clone(),
        oauth_client_secret,
        user_agent: u.user_agent.clone(),
        connect_timeout: u.connect_timeout,
        read_timeout: u.read_timeout,
        control_timeout: u.control_timeout,
        token_refresh_lead: u.token_refresh_lead,
        proxy,
    })
}

fn account_specs(
    src: &Source,
    accounts: &AccountsFile,
    (default_concurrency, default_proxy): (u32, Option<&Arc<EgressProxy>>),
    env: &dyn Env,
    problems: &mut Problems,
) -> Option<Vec<AccountSpec>> {
    let before = problems.count();
    let mut specs = Vec::new();
    let mut seen = HashSet::new();
    for (i, a) in accounts.accounts.iter().enumerate() {
        let at = |key| [Key("accounts"), Item(i), Key(key)];
        let id = a.email.trim().to_ascii_lowercase();
        let what = format!("account {}", a.email);
        if !id.contains('@') {
            problems.push(
                src.invalid(&at("email"), format!("account {:?}: email is not an email address", a.email)),
            );
        } else if !seen.insert(id.clone()) {
            problems.push(src.invalid(&at("email"), format!("{what}: duplicate email")));
        }
        let token_key = if a.refresh_token_env.is_some() { "refresh_token_env" } else { "refresh_token" };
        let refresh_token =
            match secret_from(a.refresh_token.as_deref(), a.refresh_token_env.as_deref(), &what, env) {
                Ok(Some(token)) => Some(token),
                Ok(None) => {
                    let message = format!("{what}: give refresh_token or refresh_token_env");
                    problems.push(src.invalid(&[Key("accounts"), Item(i)], message));
                    None
                }
                Err(m) => {
                    problems.push(src.invalid(&at(token_key), m));
                    None
                }
            };
        if let Some(tier) = a.tier.as_deref().filter(|t| !is_known_tier(t)) {
            let known: Vec<&str> = TIERS.iter().map(|(id, _)| *id).collect();
            let message = format!("{what}: unknown tier {tier:?} (known: {})", known.join(", "));
            problems.push(src.invalid(&at("tier"), message));
        }
        if a.max_concurrent == Some(0) {
            problems.push(
                src.invalid(&at("max_concurrent"), format!("{what}: max_concurrent must be at least 1")),
            );
        }
        let edge = super::egress::account_edge(src, i, a, default_proxy, env, problems);
        if let (Some(refresh_token), Ok((egress, pacing))) = (refresh_token, edge) {
            specs.push(AccountSpec {
                id,
                email: a.email.trim().to_string(),
                refresh_token,
                project_id: a.project_id.clone().filter(|p| !p.is_empty()),
                tier: a.tier.clone(),
                enabled: a.enabled,
                max_concurrent: a.max_concurrent.unwrap_or(default_concurrency),
                egress,
                pacing,
            });
        }
    }
    (problems.count() == before).then_some(specs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("32MiB").unwrap(), 33554432);
        assert_eq!(parse_size("512 KiB").unwrap(), 524288);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("lots").is_err());
    }

    fn load_upstream(upstream: &str) -> Result<Snapshot, String> {
        struct NoEnv;
        impl Env for NoEnv {
            fn var(&self, _: &str) -> Option<String> {
                None
            }
        }
        let main = format!(
            "listen: 127.0.0.1:9000\nauth:\n  api_keys:\n    - {{ name: k, key: k }}\nupstream:\n{upstream}"
        );
        let accounts = "accounts:\n  - { email: a@x.com, refresh_token: r }\n";
        Snapshot::from_texts(&main, accounts, "default: gemini-3-flash\n", &NoEnv).map_err(|e| e.to_string())
    }

    #[test]
    fn h2c_marks_only_plain_http_urls() {
        let s = load_upstream(
            "  h2c: true\n  endpoints: [http://127.0.0.1:1, https://x.example]\n  \
             oauth_token_url: http://127.0.0.1:1/token\n",
        )
        .unwrap();
        let marks: Vec<bool> = s.upstream.endpoints.iter().map(|u| u.h2c).collect();
        assert_eq!(marks, [true, false]);
        assert!(s.upstream.oauth_token_url.h2c);
        assert!(!s.upstream.oauth_userinfo_url.h2c, "https userinfo stays on ALPN");
        let off = load_upstream("  endpoints: [http://127.0.0.1:1]\n").unwrap();
        assert!(!off.upstream.endpoints[0].h2c, "off by default");
    }

    #[test]
    fn h2c_without_any_http_url_is_refused_at_its_line() {
        let e = load_upstream("  endpoints: [https://x.example]\n  h2c: true\n").err().unwrap();
        assert!(e.contains("upstream.h2c") && e.contains(":7"), "{e}");
    }
}
