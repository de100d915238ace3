//! One API key's limits ([`KeyPolicy`], from levitate.yaml) and its running counters ([`KeyCounters`]):
//! whether a request may go upstream now, and what it cost once the upstream said so.
//!
//! Token limits (`tpm`, the budgets) count what the upstream reports. A request is admitted against an
//! estimate of its prompt ([`estimate_tokens`]: a quarter of the request body's bytes), which is held as a
//! reservation while it runs; when it ends, the reservation is dropped and the upstream's real usage is
//! counted instead ([`KeyCounters::settle`]), so nothing is counted twice, and a request that failed or
//! whose client went away counts only what the upstream reported for it (usually nothing).
//!
//! A request fits a token limit when `counted + reserved + estimate <= limit`, or when nothing else is
//! reserved and `counted < limit`: a lone request larger than what is left still goes (a prompt bigger than
//! `tpm` would otherwise wait for ever), so a limit can be overshot by at most one request's tokens.
//!
//! Every decision is made under the key's own mutex with the time passed in, so limits hold exactly under
//! concurrency and tests need no clock.

use jiff::tz::TimeZone;
use levitate_filters::alias::ModelPatterns;

use super::window::{period, rfc3339, Period, SlidingWindow, Span};

/// A key's limits as configured; every field `None` (or `enabled: true`) is "no limit".
#[derive(Clone, Debug, Default)]
pub struct KeyPolicy {
    /// Allow-list matched against the client's model name and the upstream model it resolves to.
    pub models: Option<ModelPatterns>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub max_concurrent: Option<u32>,
    pub daily_tokens: Option<u64>,
    pub monthly_tokens: Option<u64>,
    /// Unix seconds after which the key is refused.
    pub expires_at: Option<i64>,
    pub enabled: bool,
}

impl KeyPolicy {
    /// A key without limits.
    pub fn unlimited() -> Self {
        KeyPolicy { enabled: true, ..KeyPolicy::default() }
    }

    /// This instance's part of the key's numeric limits when `instances` serve it together (`shared_state`):
    /// each an even share, at least 1, so the cluster's sum stays within the limit (up to the rounding up to
    /// 1 of a limit smaller than the cluster). The allow-list is not needed for counting and is left out.
    pub fn share(&self, instances: u32) -> KeyPolicy {
        let n = u64::from(instances.max(1));
        let part = |limit: u64| (limit / n).max(1);
        KeyPolicy {
            models: None,
            rpm: self.rpm.map(part),
            tpm: self.tpm.map(part),
            max_concurrent: self.max_concurrent.map(|l| part(u64::from(l)) as u32),
            daily_tokens: self.daily_tokens.map(part),
            monthly_tokens: self.monthly_tokens.map(part),
            expires_at: self.expires_at,
            enabled: self.enabled,
        }
    }

    /// Whether the key carries no limit at all.
    pub fn is_unlimited(&self) -> bool {
        self.enabled
            && self.models.is_none()
            && self.rpm.is_none()
            && self.tpm.is_none()
            && self.max_concurrent.is_none()
            && self.daily_tokens.is_none()
            && self.monthly_tokens.is_none()
            && self.expires_at.is_none()
    }

    /// Whether the key may be used at all at `now` (Unix seconds).
    pub fn check_key(&self, name: &str, now: i64, zone: &TimeZone) -> Result<(), Refusal> {
        if !self.enabled {
            return Err(Refusal::Disabled { key: name.to_string() });
        }
        match self.expires_at {
            Some(at) if now >= at => Err(Refusal::Expired { key: name.to_string(), at: rfc3339(zone, at) }),
            _ => Ok(()),
        }
    }

    /// Whether the allow-list admits this request's models (both must match when both are known).
    pub fn allows_model(&self, client_model: &str, upstream_model: &str) -> bool {
        self.models.as_ref().is_none_or(|m| m.matches(client_model) || m.matches(upstream_model))
    }

    fn budget(&self, span: Span) -> Option<u64> {
        match span {
            Span::Day => self.daily_tokens,
            Span::Month => self.monthly_tokens,
        }
    }
}

/// `auth.api_keys[*]` limits by key name, the zone budgets count calendar days in (`auth.time_zone`), and
/// how long usage rows are kept (`usage.retention_days`): the part of a snapshot tenancy reads.
#[derive(Clone, Debug)]
pub struct TenancySettings {
    pub keys: std::collections::HashMap<String, KeyPolicy>,
    pub time_zone: TimeZone,
    pub retention_days: u32,
}

impl TenancySettings {
    /// Refuses a disabled or expired key (403); `now` in Unix seconds. Keys without limits pass.
    pub fn check_key(&self, key: &str, now: i64) -> Result<(), Refusal> {
        match self.keys.get(key) {
            Some(policy) => policy.check_key(key, now, &self.time_zone),
            None => Ok(()),
        }
    }
}

impl Default for TenancySettings {
    fn default() -> Self {
        TenancySettings { keys: Default::default(), time_zone: TimeZone::UTC, retention_days: 90 }
    }
}

/// A key's limits as JSON for the admin API and the console (`null` for no limit).
pub fn policy_json(policy: &KeyPolicy) -> serde_json::Value {
    serde_json::json!({
        "enabled": policy.enabled,
        "models": policy.models.as_ref().map(|m| m.patterns().to_vec()),
        "rpm": policy.rpm,
        "tpm": policy.tpm,
        "max_concurrent": policy.max_concurrent,
        "daily_tokens": policy.daily_tokens,
        "monthly_tokens": policy.monthly_tokens,
        "expires_at": policy.expires_at.map(|at| rfc3339(&TimeZone::UTC, at)),
    })
}

/// Why a request was refused by its key's limits, phrased for the client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("API key {key:?} is disabled")]
    Disabled { key: String },
    #[error("API key {key:?} expired at {at}")]
    Expired { key: String, at: String },
    #[error("API key {key:?} may not use model {model:?} (allowed: {allowed})")]
    Model { key: String, model: String, allowed: String },
    #[error("API key {key:?} is over its limit of {limit} requests per minute")]
    Rpm { key: String, limit: u64, retry_after: u64 },
    #[error("API key {key:?} is over its limit of {limit} tokens per minute")]
    Tpm { key: String, limit: u64, retry_after: u64 },
    #[error("API key {key:?} already has {limit} requests in flight (max_concurrent)")]
    Concurrency { key: String, limit: u32 },
    #[error(
        "API key {key:?} has used its {} budget of {limit} tokens ({used} counted); it resets at {resets_at}",
        span.as_str()
    )]
    Budget { key: String, span: Span, limit: u64, used: u64, resets_at: String, retry_after: u64 },
}

impl Refusal {
    /// The HTTP status: 403 for what waiting does not fix, 429 for what it does.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Disabled { .. } | Refusal::Expired { .. } | Refusal::Model { .. } => 403,
            _ => 429,
        }
    }

    /// `Retry-After` seconds for a 429.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Refusal::Rpm { retry_after, .. }
            | Refusal::Tpm { retry_after, .. }
            | Refusal::Budget { retry_after, .. } => Some(*retry_after),
            Refusal::Concurrency { .. } => Some(1),
            _ => None,
        }
    }

    /// A bounded label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Disabled { .. } => "disabled",
            Refusal::Expired { .. } => "expired",
            Refusal::Model { .. } => "model",
            Refusal::Rpm { .. } => "rpm",
            Refusal::Tpm { .. } => "tpm",
            Refusal::Concurrency { .. } => "concurrency",
            Refusal::Budget { span: Span::Day, .. } => "daily_budget",
            Refusal::Budget { span: Span::Month, .. } => "monthly_budget",
        }
    }
}

/// The estimate a request is admitted against: its body's bytes over four (about a token per four bytes of
/// JSON and text), at least 1.
pub fn estimate_tokens(body_bytes: usize) -> u64 {
    (body_bytes as u64).div_ceil(4).max(1)
}

/// Tokens counted in one calendar period.
#[derive(Clone, Copy, Debug, Default)]
struct Counted {
    period: Option<Period>,
    used: u64,
}

impl Counted {
    /// The period containing `now`; counting starts from zero when a later period begins. (Before the
    /// first look `used` may hold what the store counted for the current period: it is kept.)
    fn roll(&mut self, zone: &TimeZone, span: Span, now: i64) -> Period {
        if let Some(current) = self.period.filter(|p| p.start <= now && now < p.next) {
            return current;
        }
        let next = period(zone, span, now);
        if self.period.is_some_and(|old| next.start > old.start) {
            self.used = 0;
        }
        self.period = Some(next);
        next
    }
}

/// A key's running counters. They live outside the configuration snapshot (by key name), so a reload that
/// changes the limits keeps them.
#[derive(Clone, Debug, Default)]
pub struct KeyCounters {
    requests: SlidingWindow,
    tokens: SlidingWindow,
    /// Estimates of the requests in flight.
    reserved: u64,
    in_flight: u32,
    day: Counted,
    month: Counted,
}

/// What a key has used, for the admin API and the console.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct KeyUsage {
    pub requests_last_minute: u64,
    pub tokens_last_minute: u64,
    pub in_flight: u32,
    pub reserved_tokens: u64,
    pub tokens_today: u64,
    pub tokens_this_month: u64,
    pub day_resets_at: String,
    pub month_resets_at: String,
}

fn fits(counted: u64, reserved: u64, estimate: u64, limit: u64) -> bool {
    counted.saturating_add(reserved).saturating_add(estimate) <= limit || (reserved == 0 && counted < limit)
}

impl KeyCounters {
    /// Counters seeded with what the store holds for the current day and month (after a restart).
    pub fn seeded(zone: &TimeZone, now: i64, today: u64, this_month: u64) -> Self {
        let mut counters = KeyCounters::default();
        counters.day.roll(zone, Span::Day, now);
        counters.day.used = today;
        counters.month.roll(zone, Span::Month, now);
        counters.month.used = this_month;
        counters
    }

    /// Admits a request of `estimate` tokens at `now_ms` (Unix milliseconds) or says why not. On success the
    /// request is counted (rpm, in flight) and its estimate reserved until [`settle`](Self::settle).
    pub fn admit(
        &mut self,
        key: &str,
        policy: &KeyPolicy,
        zone: &TimeZone,
        estimate: u64,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        let second = now_ms / 1000;
        let now = second as i64;
        for (span, counted) in [(Span::Day, &mut self.day), (Span::Month, &mut self.month)] {
            let period = counted.roll(zone, span, now);
            if let Some(limit) = policy.budget(span) {
                if !fits(counted.used, self.reserved, estimate, limit) {
                    return Err(Refusal::Budget {
                        key: key.to_string(),
                        span,
                        limit,
                        used: counted.used,
                        resets_at: rfc3339(zone, period.next),
                        retry_after: (period.next - now).max(1) as u64,
                    });
                }
            }
        }
        if let Some(limit) = policy.rpm {
            let used = self.requests.sum(second);
            if used >= limit {
                let retry_after = self.requests.seconds_until_freed(second, used + 1 - limit).unwrap_or(1);
                return Err(Refusal::Rpm { key: key.to_string(), limit, retry_after });
            }
        }
        if let Some(limit) = policy.tpm {
            let used = self.tokens.sum(second);
            if !fits(used, self.reserved, estimate, limit) {
                // Room frees as counted tokens age out; tokens still reserved free when their requests end.
                let excess = (used + self.reserved + estimate).saturating_sub(limit).max(1);
                let retry_after = self.tokens.seconds_until_freed(second, excess).unwrap_or(1);
                return Err(Refusal::Tpm { key: key.to_string(), limit, retry_after });
            }
        }
        if let Some(limit) = policy.max_concurrent {
            if self.in_flight >= limit {
                return Err(Refusal::Concurrency { key: key.to_string(), limit });
            }
        }
        self.requests.add(second, 1);
        self.reserved += estimate;
        self.in_flight += 1;
        Ok(())
    }

    /// Ends an admitted request: its reservation is released and the `used` tokens the upstream reported
    /// are counted in the minute and the budgets.
    pub fn settle(&mut self, zone: &TimeZone, estimate: u64, used: u64, now_ms: u64) {
        self.reserved = self.reserved.saturating_sub(estimate);
        self.in_flight = self.in_flight.saturating_sub(1);
        let second = now_ms / 1000;
        if used > 0 {
            self.tokens.add(second, used);
            for (span, counted) in [(Span::Day, &mut self.day), (Span::Month, &mut self.month)] {
                counted.roll(zone, span, second as i64);
                counted.used = counted.used.saturating_add(used);
            }
        }
    }

    /// What the key has used as of `now_ms`.
    pub fn usage(&mut self, zone: &TimeZone, now_ms: u64) -> KeyUsage {
        let second = now_ms / 1000;
        let day = self.day.roll(zone, Span::Day, second as i64);
        let month = self.month.roll(zone, Span::Month, second as i64);
        KeyUsage {
            requests_last_minute: self.requests.sum(second),
            tokens_last_minute: self.tokens.sum(second),
            in_flight: self.in_flight,
            reserved_tokens: self.reserved,
            tokens_today: self.day.used,
            tokens_this_month: self.month.used,
            day_resets_at: rfc3339(zone, day.next),
            month_resets_at: rfc3339(zone, month.next),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_773_576_000_000; // 2026-03-15T12:00:00Z, in ms

    fn policy() -> KeyPolicy {
        KeyPolicy::unlimited()
    }

    #[test]
    fn a_cluster_share_splits_every_numeric_limit_and_keeps_one_at_least() {
        let p = KeyPolicy {
            rpm: Some(10),
            tpm: Some(9_000),
            max_concurrent: Some(2),
            daily_tokens: Some(300),
            monthly_tokens: None,
            ..policy()
        };
        let s = p.share(3);
        assert_eq!(
            (s.rpm, s.tpm, s.max_concurrent, s.daily_tokens),
            (Some(3), Some(3_000), Some(1), Some(100))
        );
        assert_eq!(s.monthly_tokens, None, "no limit stays no limit");
        assert_eq!(p.share(1).rpm, Some(10));
    }

    #[test]
    fn rpm_admits_exactly_the_limit_then_frees_as_the_minute_slides() {
        let p = KeyPolicy { rpm: Some(3), ..policy() };
        let mut c = KeyCounters::default();
        let utc = TimeZone::UTC;
        for i in 0..3 {
            c.admit("k", &p, &utc, 1, T0 + i * 10_000).unwrap();
        }
        let e = c.admit("k", &p, &utc, 1, T0 + 30_000).unwrap_err();
        assert_eq!((e.status(), e.retry_after()), (429, Some(30)), "{e}");
        assert!(e.to_string().contains("3 requests per minute"), "{e}");
        // Settling does not give rpm back: it counts requests started.
        c.settle(&utc, 1, 0, T0 + 31_000);
        assert!(c.admit("k", &p, &utc, 1, T0 + 59_999).is_err());
        c.admit("k", &p, &utc, 1, T0 + 60_000).unwrap();
    }

    #[test]
    fn tpm_reserves_the_estimate_and_counts_the_real_usage_once() {
        let p = KeyPolicy { tpm: Some(100), ..policy() };
        let utc = TimeZone::UTC;
        let mut c = KeyCounters::default();
        for _ in 0..4 {
            c.admit("k", &p, &utc, 25, T0).unwrap();
        }
        let e = c.admit("k", &p, &utc, 25, T0).unwrap_err();
        assert_eq!((e.reason(), e.retry_after()), ("tpm", Some(1)), "only reservations: retry shortly");
        // Two answers report 10 tokens each: 20 counted, 50 still reserved, 30 free.
        c.settle(&utc, 25, 10, T0 + 1000);
        c.settle(&utc, 25, 10, T0 + 1000);
        c.admit("k", &p, &utc, 25, T0 + 2000).unwrap();
        assert!(c.admit("k", &p, &utc, 25, T0 + 2000).is_err(), "20 + 75 reserved + 25 > 100");
        let usage = c.usage(&utc, T0 + 2000);
        assert_eq!((usage.tokens_last_minute, usage.reserved_tokens, usage.in_flight), (20, 75, 3));
        // A failed request releases its reservation and counts nothing.
        c.settle(&utc, 25, 0, T0 + 3000);
        c.admit("k", &p, &utc, 25, T0 + 3000).unwrap();
    }

    #[test]
    fn a_lone_request_larger_than_tpm_goes_but_only_alone() {
        let p = KeyPolicy { tpm: Some(100), ..policy() };
        let utc = TimeZone::UTC;
        let mut c = KeyCounters::default();
        c.admit("k", &p, &utc, 500, T0).unwrap();
        assert!(c.admit("k", &p, &utc, 1, T0).is_err());
        c.settle(&utc, 500, 480, T0 + 5000);
        let e = c.admit("k", &p, &utc, 1, T0 + 6000).unwrap_err();
        assert_eq!(e.retry_after(), Some(59), "the 480 tokens of second 5 leave at second 65");
        c.admit("k", &p, &utc, 1, T0 + 65_000).unwrap();
    }

    #[test]
    fn concurrency_is_released_by_settling() {
        let p = KeyPolicy { max_concurrent: Some(2), ..policy() };
        let utc = TimeZone::UTC;
        let mut c = KeyCounters::default();
        c.admit("k", &p, &utc, 1, T0).unwrap();
        c.admit("k", &p, &utc, 1, T0).unwrap();
        let e = c.admit("k", &p, &utc, 1, T0).unwrap_err();
        assert_eq!((e.status(), e.retry_after(), e.reason()), (429, Some(1), "concurrency"));
        c.settle(&utc, 1, 0, T0);
        c.admit("k", &p, &utc, 1, T0).unwrap();
    }

    #[test]
    fn budgets_reset_at_the_start_of_the_next_calendar_period_in_the_zone() {
        let zone = TimeZone::get("America/New_York").unwrap();
        let p = KeyPolicy { daily_tokens: Some(1000), monthly_tokens: Some(1500), ..policy() };
        let mut c = KeyCounters::default();
        c.admit("k", &p, &zone, 10, T0).unwrap();
        c.settle(&zone, 10, 1000, T0 + 1000);
        let e = c.admit("k", &p, &zone, 10, T0 + 2000).unwrap_err();
        // 12:00Z is 08:00 in New York (EDT since March 8th): the day resets at 04:00Z tomorrow, 16 h away.
        assert_eq!(e.reason(), "daily_budget");
        assert_eq!(e.retry_after(), Some(16 * 3600 - 2));
        assert!(e.to_string().contains("daily budget of 1000 tokens"), "{e}");
        assert!(e.to_string().contains("resets at 2026-03-16T00:00:00-04:00"), "{e}");
        let next_day = T0 + 16 * 3600 * 1000;
        c.admit("k", &p, &zone, 10, next_day).unwrap();
        c.settle(&zone, 10, 600, next_day);
        let e = c.admit("k", &p, &zone, 10, next_day + 1000).unwrap_err();
        assert_eq!(e.reason(), "monthly_budget", "1600 of 1500 this month");
        assert!(e.to_string().contains("resets at 2026-04-01T00:00:00-04:00"), "{e}");
    }

    #[test]
    fn seeded_counters_carry_what_the_store_counted_and_drop_it_with_the_period() {
        let utc = TimeZone::UTC;
        let p = KeyPolicy { daily_tokens: Some(100), ..policy() };
        let now = (T0 / 1000) as i64;
        let mut c = KeyCounters::seeded(&utc, now, 100, 100);
        assert_eq!(c.admit("k", &p, &utc, 1, T0).unwrap_err().reason(), "daily_budget");
        c.admit("k", &p, &utc, 1, T0 + 12 * 3600 * 1000).unwrap();
    }

    #[test]
    fn expired_disabled_and_foreign_models_are_403() {
        let utc = TimeZone::UTC;
        assert!(policy().is_unlimited());
        let p = KeyPolicy { enabled: false, ..policy() };
        assert!(!p.is_unlimited());
        assert_eq!(p.check_key("k", 0, &utc).unwrap_err().status(), 403);
        let p = KeyPolicy { expires_at: Some(100), ..policy() };
        assert!(p.check_key("k", 99, &utc).is_ok());
        let e = p.check_key("k", 100, &utc).unwrap_err();
        assert_eq!(e.to_string(), "API key \"k\" expired at 1970-01-01T00:01:40+00:00");
        let models = ModelPatterns::new(&["gemini-*".to_string()]).unwrap();
        let p = KeyPolicy { models: Some(models), ..policy() };
        assert!(p.allows_model("gpt-4o", "gemini-3-flash"), "the upstream model is allowed");
        assert!(p.allows_model("gemini-3-flash", "gemini-3-flash"));
        assert!(!p.allows_model("claude-sonnet-4-6", "claude-sonnet-4-6"));
    }

    #[test]
    fn estimates_are_a_quarter_of_the_body() {
        assert_eq!((estimate_tokens(0), estimate_tokens(4), estimate_tokens(5)), (1, 1, 2));
    }
}
