//! Quota awareness: what `fetchAvailableModels` says is left of each account's quota, per model.
//!
//! A 429 tells us about quota only after a request has been spent on it. A background service (`QuotaPoller`,
//! in `quota_poller.rs`) asks Google on an interval (`pool.quota_interval`) instead, and the pool skips an
//! account for a model whose remaining fraction is under `pool.quota_floor` (or exhausted) until its reset
//! time. This file holds what was learned ([`QuotaBook`]) and how an answer reads; the poller is apart so the
//! pool's state does not depend on the service that feeds it.

use std::collections::HashMap;
use std::sync::RwLock;

use serde_json::Value;

/// How long a below-floor snapshot without a reset time keeps the account out for that model.
const UNKNOWN_RESET_HOLD_MS: u64 = 5 * 60 * 1000;

/// One model's quota as last reported.
#[derive(Clone, Debug, PartialEq)]
pub struct QuotaView {
    pub remaining_fraction: f64,
    pub reset_ms: Option<u64>,
    /// Unix seconds of the fetch.
    pub fetched_at: u64,
}

impl QuotaView {
    /// When the account may serve this model again, if the snapshot keeps it out at `now_ms`.
    pub fn blocked_until(&self, floor: f64, now_ms: u64) -> Option<u64> {
        let below = self.remaining_fraction <= 0.0 || self.remaining_fraction < floor;
        if !below {
            return None;
        }
        let until = self.reset_ms.unwrap_or(self.fetched_at * 1000 + UNKNOWN_RESET_HOLD_MS);
        (until > now_ms).then_some(until)
    }
}

/// Quota snapshots for every account, by model.
#[derive(Default)]
pub struct QuotaBook {
    by_account: RwLock<HashMap<String, HashMap<String, QuotaView>>>,
}

impl QuotaBook {
    pub fn record(&self, account: &str, model: &str, view: QuotaView) {
        if let Ok(mut map) = self.by_account.write() {
            map.entry(account.to_string()).or_default().insert(model.to_string(), view);
        }
    }

    pub fn view(&self, account: &str, model: &str) -> Option<QuotaView> {
        self.by_account.read().ok()?.get(account)?.get(model).cloned()
    }

    /// The account's snapshots, sorted by model.
    pub fn of_account(&self, account: &str) -> Vec<(String, QuotaView)> {
        let Ok(map) = self.by_account.read() else { return Vec::new() };
        let mut all: Vec<(String, QuotaView)> = map
            .get(account)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

/// The per-model quotas in a `fetchAvailableModels` answer (PROTOCOL.md §4): a `resetTime` without a
/// `remainingFraction` means exhausted; internal `chat_*` / `tab_*` ids are skipped.
pub fn parse_available_models(answer: &Value, fetched_at: u64) -> Vec<(String, QuotaView)> {
    let Some(models) = answer.get("models").and_then(Value::as_object) else { return Vec::new() };
    let mut out = Vec::new();
    for (id, model) in models {
        if id.starts_with("chat_") || id.starts_with("tab_") {
            continue;
        }
        let Some(info) = model.get("quotaInfo") else { continue };
        let fraction = info.get("remainingFraction").and_then(Value::as_f64);
        let reset_ms = info
            .get("resetTime")
            .and_then(Value::as_str)
            .and_then(levitate_filters::retry_hint::parse_rfc3339_ms);
        let remaining_fraction = match (fraction, reset_ms) {
            (Some(f), _) => f.clamp(0.0, 1.0),
            (None, Some(_)) => 0.0,
            (None, None) => continue,
        };
        out.push((id.clone(), QuotaView { remaining_fraction, reset_ms, fetched_at }));
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn exhausted_and_partial_models_are_read() {
        let answer = json!({"models": {
            "gemini-3-flash": {"quotaInfo": {"remainingFraction": 0.87, "resetTime": "2026-09-08T14:22:38Z"}},
            "claude-sonnet-4-6": {"quotaInfo": {"resetTime": "1970-01-01T00:01:40Z"}},
            "chat_20706": {"quotaInfo": {"remainingFraction": 1.0}},
            "no-quota": {"displayName": "x"}
        }});
        let mut views = parse_available_models(&answer, 7);
        views.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(views.len(), 2);
        assert_eq!(views[0].0, "claude-sonnet-4-6");
        assert_eq!(views[0].1, QuotaView { remaining_fraction: 0.0, reset_ms: Some(100_000), fetched_at: 7 });
        assert_eq!(views[1].1.remaining_fraction, 0.87);
    }

    #[test]
    fn below_the_floor_keeps_the_account_out_until_the_reset() {
        let view = QuotaView { remaining_fraction: 0.05, reset_ms: Some(10_000), fetched_at: 0 };
        assert_eq!(view.blocked_until(0.1, 5_000), Some(10_000));
        assert_eq!(view.blocked_until(0.1, 10_000), None, "the reset came");
        assert_eq!(view.blocked_until(0.0, 5_000), None, "above a zero floor");
        let empty = QuotaView { remaining_fraction: 0.0, reset_ms: None, fetched_at: 1 };
        assert_eq!(empty.blocked_until(0.0, 2_000), Some(1_000 + UNKNOWN_RESET_HOLD_MS));
    }
}
