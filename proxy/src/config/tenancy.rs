//! The tenancy keys of levitate.yaml: each `auth.api_keys` entry's limits (`models`, `rpm`, `tpm`,
//! `max_concurrent`, `budget`, `expires_at`, `enabled`), `auth.time_zone` and `usage:`, as written and as
//! checked into [`TenancySettings`]. Kept apart from `files.rs` and `validate.rs` so those stay readable.
//!
//! The key's debug output, which a log line or a panic may print, never shows its secret.
//!
//! A zero limit is refused rather than read as "nothing allowed": `enabled: false` says that plainly.

use std::collections::HashMap;

use jiff::tz::TimeZone;
use levitate_filters::alias::ModelPatterns;
use serde::Deserialize;

use crate::tenancy::{KeyPolicy, TenancySettings};

use super::source::At::{Item, Key};
use super::source::Source;
use super::Problems;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthFile {
    pub api_keys: Vec<ApiKeyFile>,
    /// IANA zone (`Europe/Berlin`) the budgets' calendar days and months are counted in; UTC by default.
    pub time_zone: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyFile {
    pub name: String,
    pub key: Option<String>,
    pub key_env: Option<String>,
    /// Limits (see `config/tenancy.rs` and docs/tenancy.md); absent means unlimited.
    pub models: Option<Vec<String>>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub max_concurrent: Option<u32>,
    pub budget: Option<BudgetFile>,
    pub expires_at: Option<String>,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
}

impl std::fmt::Debug for ApiKeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyFile")
            .field("name", &self.name)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("key_env", &self.key_env)
            .finish_non_exhaustive()
    }
}

fn enabled_by_default() -> bool {
    true
}

/// `auth.api_keys[*].budget`: tokens (input + output + thinking) per calendar day and month.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetFile {
    pub daily_tokens: Option<u64>,
    pub monthly_tokens: Option<u64>,
}

/// `usage:`: how long the hourly usage rows are kept.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageFile {
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
}

fn default_retention_days() -> u32 {
    90
}

impl Default for UsageFile {
    fn default() -> Self {
        UsageFile { retention_days: default_retention_days() }
    }
}

/// Checks the tenancy keys of levitate.yaml; every problem is kept with its line.
pub(super) fn settings(
    src: &Source,
    auth: &AuthFile,
    usage: &UsageFile,
    problems: &mut Problems,
) -> Option<TenancySettings> {
    let before = problems.count();
    let time_zone = match auth.time_zone.as_deref().map(str::trim) {
        None | Some("") | Some("UTC") => Some(TimeZone::UTC),
        Some(name) => match TimeZone::get(name) {
            Ok(zone) => Some(zone),
            Err(e) => {
                let message = format!("auth.time_zone: {name:?} is not a time zone like Europe/Berlin ({e})");
                problems.push(src.invalid(&[Key("auth"), Key("time_zone")], message));
                None
            }
        },
    };
    if usage.retention_days == 0 {
        let at = [Key("usage"), Key("retention_days")];
        problems.push(src.invalid(&at, "usage.retention_days must be at least 1"));
    }
    let mut keys = HashMap::new();
    for (i, k) in auth.api_keys.iter().enumerate() {
        if let Some(policy) = key_policy(src, i, k, problems) {
            keys.insert(k.name.clone(), policy);
        }
    }
    let time_zone = time_zone?;
    (problems.count() == before).then_some(TenancySettings {
        keys,
        time_zone,
        retention_days: usage.retention_days,
    })
}

fn key_policy(src: &Source, i: usize, k: &ApiKeyFile, problems: &mut Problems) -> Option<KeyPolicy> {
    let before = problems.count();
    let what = format!("auth.api_keys[{i}] ({})", k.name);
    let mut refuse = |key: &str, message: String| {
        problems.push(src.invalid(&[Key("auth"), Key("api_keys"), Item(i), Key(key)], message));
    };
    for (key, value) in [("rpm", k.rpm), ("tpm", k.tpm), ("max_concurrent", k.max_concurrent.map(u64::from))]
    {
        if value == Some(0) {
            refuse(key, format!("{what}: {key} must be at least 1 (to stop a key, set enabled: false)"));
        }
    }
    if let Some(budget) = &k.budget {
        if budget.daily_tokens == Some(0) || budget.monthly_tokens == Some(0) {
            refuse(
                "budget",
                format!("{what}: budget.daily_tokens and budget.monthly_tokens must be at least 1"),
            );
        }
        if budget.daily_tokens.is_none() && budget.monthly_tokens.is_none() {
            refuse("budget", format!("{what}: budget needs daily_tokens, monthly_tokens or both"));
        }
    }
    let models = match &k.models {
        None => None,
        Some(list) if list.is_empty() => {
            refuse("models", format!("{what}: models is empty, which allows nothing (use enabled: false)"));
            None
        }
        Some(list) => match ModelPatterns::new(list) {
            Ok(patterns) => Some(patterns),
            Err(e) => {
                refuse("models", format!("{what}: models: {e}"));
                None
            }
        },
    };
    let expires_at = match k.expires_at.as_deref() {
        None => None,
        Some(text) => {
            match text.trim().parse::<jiff::Timestamp>() {
                Ok(at) => Some(at.as_second()),
                Err(e) => {
                    refuse(
                    "expires_at",
                    format!("{what}: expires_at {text:?} is not an RFC 3339 time like 2026-12-31T23:59:59Z ({e})"),
                );
                    None
                }
            }
        }
    };
    (problems.count() == before).then(|| KeyPolicy {
        models,
        rpm: k.rpm,
        tpm: k.tpm,
        max_concurrent: k.max_concurrent,
        daily_tokens: k.budget.as_ref().and_then(|b| b.daily_tokens),
        monthly_tokens: k.budget.as_ref().and_then(|b| b.monthly_tokens),
        expires_at,
        enabled: k.enabled,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{Env, Snapshot};

    struct NoEnv;
    impl Env for NoEnv {
        fn var(&self, _: &str) -> Option<String> {
            None
        }
    }

    const ACCOUNTS: &str = "accounts:\n  - { email: a@x.com, refresh_token: r }\n";
    const ROUTES: &str = "default: gemini-3-flash\n";

    fn load(keys: &str, extra: &str) -> Result<Snapshot, String> {
        let main = format!("listen: 127.0.0.1:9000\nauth:\n  api_keys:\n{keys}{extra}");
        Snapshot::from_texts(&main, ACCOUNTS, ROUTES, &NoEnv).map_err(|e| e.to_string())
    }

    #[test]
    fn limits_load_with_their_defaults() {
        let keys = "    - name: team\n      key: k1\n      models: [\"gemini-*\"]\n      rpm: 60\n      tpm: 100000\n      \
                    max_concurrent: 4\n      budget: { daily_tokens: 1000000 }\n      expires_at: 2027-01-01T00:00:00Z\n    \
                    - { name: open, key: k2 }\n";
        let s = load(keys, "  time_zone: Europe/Berlin\n").unwrap();
        let team = &s.tenancy.keys["team"];
        assert_eq!((team.rpm, team.tpm, team.max_concurrent), (Some(60), Some(100_000), Some(4)));
        assert_eq!((team.daily_tokens, team.monthly_tokens, team.enabled), (Some(1_000_000), None, true));
        assert_eq!(team.expires_at, Some(1_798_761_600));
        assert!(team.allows_model("x", "gemini-3-flash") && !team.allows_model("x", "claude-sonnet-4-6"));
        let open = &s.tenancy.keys["open"];
        assert!(open.rpm.is_none() && open.models.is_none() && open.enabled);
        assert_eq!(s.tenancy.time_zone.iana_name(), Some("Europe/Berlin"));
        assert_eq!(s.tenancy.retention_days, 90);
        let s = load("    - { name: k, key: k }\n", "usage: { retention_days: 7 }\n").unwrap();
        assert_eq!((s.tenancy.retention_days, s.tenancy.time_zone.iana_name()), (7, Some("UTC")));
    }

    #[test]
    fn every_bad_limit_is_reported_at_its_line() {
        let keys =
            "    - name: team\n      key: k1\n      rpm: 0\n      models: []\n      budget: {}\n      \
                    expires_at: tomorrow\n";
        let e = load(keys, "  time_zone: Mars/Olympus\nusage: { retention_days: 0 }\n").unwrap_err();
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 6, "{e}");
        assert!(lines[0].starts_with("levitate.yaml:10: auth.time_zone: \"Mars/Olympus\""), "{e}");
        assert!(lines[1].starts_with("levitate.yaml:11: usage.retention_days must be at least 1"), "{e}");
        assert!(
            lines[2].starts_with("levitate.yaml:6: auth.api_keys[0] (team): rpm must be at least 1"),
            "{e}"
        );
        assert!(lines[3].starts_with("levitate.yaml:8: auth.api_keys[0] (team): budget needs"), "{e}");
        assert!(lines[4].starts_with("levitate.yaml:7: auth.api_keys[0] (team): models is empty"), "{e}");
        assert!(
            lines[5].starts_with("levitate.yaml:9: auth.api_keys[0] (team): expires_at \"tomorrow\""),
            "{e}"
        );
        let e = load("    - { name: k, key: k, budget: { weekly_tokens: 5 } }\n", "").unwrap_err();
        assert!(e.contains("levitate.yaml:4:") && e.contains("unknown field `weekly_tokens`"), "{e}");
    }
}
