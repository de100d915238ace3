//! Turning the parsed files into a [`Snapshot`]: every value is checked, secrets are read from the
//! environment, addresses, URLs and sizes are parsed, and aliases are compiled.
//!
//! Errors name the file and the key so the operator knows what to fix.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;

use levitate_filters::alias::AliasTable;
use levitate_filters::auth::ApiKeys;

use super::files::{AccountsFile, MainFile, RoutesFile};
use super::{
    AccountSpec, AdminSettings, ConfigError, ConfigPaths, Env, Secret, ServerSettings, Snapshot,
    UpstreamSettings, UpstreamUrl,
};

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

pub(super) fn build(
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
    // The admin key is optional on loopback, so there a `key_env` naming an unset variable means no key: the
    // admin API is open to local users, as when no key is configured. Off loopback a missing key is refused.
    let admin_key = match (main.admin.key.as_deref(), main.admin.key_env.as_deref()) {
        (None, Some(name)) => env.var(name).map(Secret::new),
        (inline, name) => secret_from(inline, name, "admin.key", env).map_err(|m| invalid(&mp, m))?,
    };
    if admin_key.is_none() && !is_loopback(&admin_listen) {
        let missing = match &main.admin.key_env {
            Some(name) => format!("environment variable {name} is not set"),
            None => "give admin.key or admin.key_env".to_string(),
        };
        return Err(invalid(
            &mp,
            format!("admin.listen {admin_listen} is not a loopback address, so the admin API needs a key: {missing}"),
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

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("32MiB").unwrap(), 33554432);
        assert_eq!(parse_size("512 KiB").unwrap(), 524288);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("lots").is_err());
    }
}
