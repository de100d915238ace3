//! The scenario file: accounts, models, timing, quotas and faults, parsed strictly (unknown keys are errors)
//! and validated once, so a typo in a test scenario fails loudly instead of silently changing behaviour.
//! `SimConfig::default()` is the demo-friendly setup: any refresh token is accepted, nothing fails.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::faults::FaultRule;
use crate::models::DEFAULT_MODELS;

/// Tier ids the sim knows (PROTOCOL §4).
pub const TIERS: &[&str] = &[
    "free-tier",
    "legacy-tier",
    "standard-tier",
    "g1-pro-tier",
    "g1-ultra-tier",
    "ws-ai-ultra-business-tier",
];

/// Everything that shapes one sim instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// Known accounts. Empty: any refresh token is accepted and an account is derived from it.
    pub accounts: Vec<AccountConfig>,
    /// Model ids served by the content methods and listed by `fetchAvailableModels`.
    pub models: Vec<String>,
    /// `expires_in` of issued access tokens, seconds; the sim rejects them afterwards.
    pub token_expires_in: u64,
    /// `onboardUser` answers `done:true` on this call (2 = the first poll after the start).
    pub onboard_polls: u32,
    /// Line ending of SSE events: `lf` (`\n\n`) or `crlf` (`\r\n\r\n`).
    pub sse_line_ending: LineEnding,
    /// Where usage goes in a stream.
    pub usage: UsageMode,
    /// Filler words after the echo in an answer (more words, more chunks).
    pub answer_words: usize,
    /// Latency applied to every content call.
    pub latency: Latency,
    /// Per-account, per-model request quota.
    pub quota: QuotaConfig,
    /// Key of the MAC inside issued thought signatures; the same key accepts signatures across restarts.
    pub signature_secret: String,
    /// A repeated prompt prefix at least this long is reported as `cachedContentTokenCount`.
    pub cache_min_tokens: u64,
    /// How many recent request envelopes `/_sim/stats` keeps.
    pub recent_requests: usize,
    /// Oldest accepted client version in the `antigravity/<ver>` user agent; older ones get the version gate.
    pub version_floor: Option<String>,
    /// Fault rules active from the start (see `faults`).
    pub faults: Vec<FaultRule>,
    /// The key the public Gemini API (`/v1beta/models/{m}:generateContent`) accepts in `x-goog-api-key` or
    /// `?key=`. Unset: every key is refused as invalid.
    pub public_api_key: Option<String>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            accounts: Vec::new(),
            models: DEFAULT_MODELS.iter().map(|m| m.to_string()).collect(),
            token_expires_in: 3599,
            onboard_polls: 2,
            sse_line_ending: LineEnding::Lf,
            usage: UsageMode::Final,
            answer_words: 40,
            latency: Latency::default(),
            quota: QuotaConfig::default(),
            signature_secret: "levitate-sim".to_string(),
            cache_min_tokens: 1024,
            recent_requests: 50,
            version_floor: None,
            faults: Vec::new(),
            public_api_key: None,
        }
    }
}

/// One configured account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    pub email: String,
    pub refresh_token: String,
    /// Defaults to a deterministic id derived from the email (`rising-fact-p41fc` style).
    #[serde(default)]
    pub project_id: Option<String>,
    /// One of `TIERS`; default `free-tier`.
    #[serde(default)]
    pub tier: Option<String>,
    /// Not onboarded: `loadCodeAssist` has no project until `onboardUser` completes. Default true.
    #[serde(default = "yes")]
    pub onboarded: bool,
    /// Google has shut the account out of its quota views: `fetchAvailableModels` answers 403
    /// PERMISSION_DENIED with or without a project. Default false.
    #[serde(default)]
    pub quota_denied: bool,
    /// The models this account may call (tier, region, rollout differ per account): `fetchAvailableModels`
    /// lists only these and a content call for another model gets 404 NOT_FOUND. Default: every model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
}

fn yes() -> bool {
    true
}

/// SSE event terminator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineEnding {
    Lf,
    Crlf,
}

/// Placement of `usageMetadata` in a stream (all three occur upstream, PROTOCOL §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageMode {
    /// Only the final chunk carries usage.
    Final,
    /// Every chunk carries the running total.
    EveryChunk,
    /// The STOP chunk has no usage; a usage-only chunk follows.
    Separate,
}

/// Latency on every content call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Latency {
    /// Before the response head.
    pub first_byte_ms: u64,
    /// Between stream chunks.
    pub inter_chunk_ms: u64,
}

/// Request quota per account and model; enforced only when `requests_per_window` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaConfig {
    /// Content requests allowed per window; beyond it, 429 QUOTA_EXHAUSTED until the window resets.
    pub requests_per_window: Option<u64>,
    /// Window length, seconds (5 h like the real one).
    pub window_secs: u64,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        QuotaConfig { requests_per_window: None, window_secs: 5 * 3600 }
    }
}

/// Why a scenario was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("invalid scenario YAML: {0}")]
    Parse(#[from] serde_yaml::Error),
    #[error("invalid scenario: {0}")]
    Invalid(String),
}

impl SimConfig {
    /// Parses and validates a scenario.
    pub fn from_yaml(text: &str) -> Result<SimConfig, ConfigError> {
        let config: SimConfig =
            if text.trim().is_empty() { SimConfig::default() } else { serde_yaml::from_str(text)? };
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates a scenario file.
    pub fn from_file(path: &Path) -> Result<SimConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        SimConfig::from_yaml(&text)
    }

    /// Cross-field checks serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        let mut emails = HashSet::new();
        let mut tokens = HashSet::new();
        for a in &self.accounts {
            if a.email.is_empty() || a.refresh_token.is_empty() {
                return invalid("every account needs an email and a refresh_token".into());
            }
            if !emails.insert(a.email.as_str()) {
                return invalid(format!("duplicate account email {}", a.email));
            }
            if !tokens.insert(a.refresh_token.as_str()) {
                return invalid(format!("duplicate refresh_token (account {})", a.email));
            }
            if let Some(t) = &a.tier {
                if !TIERS.contains(&t.as_str()) {
                    return invalid(format!("account {}: unknown tier {t} (one of {TIERS:?})", a.email));
                }
            }
            for m in a.models.iter().flatten() {
                if !self.models.contains(m) {
                    return invalid(format!("account {}: model {m} is not in the sim's models", a.email));
                }
            }
        }
        if self.models.is_empty() {
            return invalid("models must not be empty".into());
        }
        if self.token_expires_in == 0 {
            return invalid("token_expires_in must be at least 1".into());
        }
        if self.onboard_polls == 0 {
            return invalid("onboard_polls must be at least 1".into());
        }
        if self.quota.window_secs == 0 {
            return invalid("quota.window_secs must be at least 1".into());
        }
        for f in &self.faults {
            f.validate().map_err(ConfigError::Invalid)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_yaml_is_default() {
        assert_eq!(SimConfig::from_yaml("").ok(), Some(SimConfig::default()));
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(matches!(SimConfig::from_yaml("acounts: []"), Err(ConfigError::Parse(_))));
    }

    #[test]
    fn parses_accounts_and_faults() {
        let c = SimConfig::from_yaml(
            "accounts:\n  - {email: a@x, refresh_token: r1, tier: g1-pro-tier}\n  - {email: b@x, refresh_token: r2, onboarded: false}\n\
             faults:\n  - {kind: rate_limit, probability: 0.5, account: a@x}\n  - {kind: slow_first_byte_ms, delay_ms: 10}\n",
        )
        .expect("valid");
        assert_eq!(c.accounts.len(), 2);
        assert!(c.accounts[0].onboarded);
        assert!(!c.accounts[1].onboarded);
        assert_eq!(c.faults.len(), 2);
    }

    #[test]
    fn example_scenario_is_valid() {
        let c = SimConfig::from_yaml(include_str!("../scenarios/example.yaml")).expect("example.yaml");
        assert_eq!(c.accounts.len(), 2);
        assert_eq!(c.faults.len(), 3);
    }

    #[test]
    fn bad_values_are_explained() {
        let e = SimConfig::from_yaml("accounts:\n  - {email: a@x, refresh_token: r, tier: gold}\n");
        assert!(matches!(e, Err(ConfigError::Invalid(m)) if m.contains("unknown tier")));
        let e = SimConfig::from_yaml("faults:\n  - {kind: capacity, probability: 2}\n");
        assert!(matches!(e, Err(ConfigError::Invalid(_))));
        let e = SimConfig::from_yaml("accounts:\n  - {email: a@x, refresh_token: r, models: [gpt-9]}\n");
        assert!(matches!(e, Err(ConfigError::Invalid(m)) if m.contains("gpt-9")));
    }

    #[test]
    fn per_account_models_parse() {
        let c =
            SimConfig::from_yaml("accounts:\n  - {email: a@x, refresh_token: r, models: [gemini-3-flash]}\n")
                .expect("valid");
        assert_eq!(c.accounts[0].models.as_deref(), Some(&["gemini-3-flash".to_string()][..]));
    }
}
