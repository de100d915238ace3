//! Tenancy: what each API key may do (limits, allow-list, budgets, expiry) and what each one used.
//!
//! The limits come from the configuration snapshot ([`TenancySettings`], swapped whole on reload); the
//! running counters live here, by key name, outside the snapshot, so a reload that changes a key's limits
//! applies them to the next request and keeps what was counted. A request is admitted before any upstream
//! call ([`Tenancy::admit`] returns a [`Permit`]) and settled when it ends ([`Tenancy::finish`]): the permit
//! gives back its reservation and concurrency slot even if the request never reaches `finish` (dropped).
//!
//! `limits.rs` has the per-key decision, `window.rs` the minute and calendar windows, `usage.rs` the hourly
//! usage rows in the store. Everything here is readable through plain functions ([`Tenancy::key_usage`],
//! [`usage::query`]) for the admin API, the CLI and the console.

pub mod limits;
pub mod usage;
pub mod window;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use jiff::tz::TimeZone;
use levitate_filters::error::{ClientError, ErrorKind};

pub use limits::{estimate_tokens, KeyCounters, KeyPolicy, KeyUsage, Refusal, TenancySettings};
use usage::UsageBook;
use window::{period, Span};

use crate::store::{Store, UsageKey, UsageRecord};

/// The running counters of every key, and the usage table.
pub struct Tenancy {
    counters: Mutex<HashMap<String, Arc<Mutex<KeyCounters>>>>,
    /// Finished requests not yet added to the store.
    pub usage: UsageBook,
    /// Where a key's budget counters are seeded from after a restart.
    store: Store,
    /// Instances serving the keys together (`shared_state`; 1 alone): each admits its share of every limit.
    instances: std::sync::atomic::AtomicU32,
}

/// An admitted request's hold on its key: its reservation and concurrency slot, given back when it is
/// settled or dropped.
pub struct Permit {
    counters: Arc<Mutex<KeyCounters>>,
    zone: TimeZone,
    estimate: u64,
    settled: bool,
}

impl Permit {
    /// Ends the request, counting the `used` tokens the upstream reported.
    fn settle(&mut self, used: u64, now_ms: u64) {
        if !std::mem::replace(&mut self.settled, true) {
            lock(&self.counters).settle(&self.zone, self.estimate, used, now_ms);
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.settle(0, crate::store::unix_now_ms());
    }
}

/// What a finished request did, for its usage row and its key's counters.
pub struct Finished<'a> {
    pub key: Option<&'a str>,
    pub client_model: Option<&'a str>,
    pub upstream_model: Option<&'a str>,
    pub account: Option<&'a str>,
    pub status: u16,
    pub attempts: u32,
    pub ttfb_ms: Option<u64>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub thinking_tokens: u64,
    pub cached_tokens: u64,
}

/// `model` when the configuration names it as an upstream model (listed, an alias target or the default),
/// else `other`: the `upstream_model` metric label stays bounded by the configuration.
pub fn bounded_model<'a>(aliases: &levitate_filters::alias::AliasTable, model: &'a str) -> &'a str {
    let known = aliases.upstream_models().iter().any(|m| m == model)
        || aliases.aliases().iter().any(|a| a.target == model)
        || aliases.default_model() == Some(model);
    if known || model == "-" {
        model
    } else {
        "other"
    }
}

/// The class a failed request's status falls in (`None` for a success).
pub fn error_class(status: u16) -> Option<&'static str> {
    Some(match status {
        0..=399 => return None,
        401 => "auth",
        403 => "refused",
        408 | 504 => "timeout",
        429 => "rate_limit",
        400..=499 => "invalid",
        _ => "upstream",
    })
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Refusal {
    /// This refusal in the client's protocol: 403 permission error or 429 rate-limit error.
    pub fn client_error(&self) -> ClientError {
        let kind = if self.status() == 403 { ErrorKind::Permission } else { ErrorKind::RateLimit };
        ClientError::new(self.status(), kind, self.to_string())
    }
}

impl Tenancy {
    pub fn new(store: Store) -> Self {
        let instances = std::sync::atomic::AtomicU32::new(1);
        Tenancy { counters: Mutex::new(HashMap::new()), usage: UsageBook::default(), store, instances }
    }

    /// How many instances share the keys' limits from now on (the cluster link keeps it current).
    pub fn set_instances(&self, n: u32) {
        self.instances.store(n.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// Admits a request of `key` for these models with a `body_bytes`-byte body, or says why not.
    pub fn admit(
        &self,
        settings: &TenancySettings,
        key: &str,
        client_model: &str,
        upstream_model: &str,
        body_bytes: usize,
        now_ms: u64,
    ) -> Result<Permit, Refusal> {
        let unlimited = KeyPolicy::unlimited();
        let policy = settings.keys.get(key).unwrap_or(&unlimited);
        let zone = &settings.time_zone;
        policy.check_key(key, (now_ms / 1000) as i64, zone)?;
        if !policy.allows_model(client_model, upstream_model) {
            let allowed = policy.models.as_ref().map(|m| m.patterns().join(", ")).unwrap_or_default();
            return Err(Refusal::Model { key: key.to_string(), model: client_model.to_string(), allowed });
        }
        let counters = self.counters_of(key, zone, now_ms);
        let estimate = estimate_tokens(body_bytes);
        let shared;
        let limits = match self.instances.load(std::sync::atomic::Ordering::Relaxed) {
            1 => policy,
            n => {
                shared = policy.share(n);
                &shared
            }
        };
        lock(&counters).admit(key, limits, zone, estimate, now_ms)?;
        Ok(Permit { counters, zone: zone.clone(), estimate, settled: false })
    }

    /// Settles the request's permit with the tokens the upstream reported and adds it to its usage row.
    pub fn finish(&self, permit: Option<Permit>, done: &Finished<'_>, now_ms: u64) {
        let total = done.input_tokens + done.output_tokens + done.thinking_tokens;
        if let Some(mut permit) = permit {
            permit.settle(total, now_ms);
        }
        let mut record = UsageRecord {
            requests: 1,
            input_tokens: done.input_tokens,
            output_tokens: done.output_tokens,
            thinking_tokens: done.thinking_tokens,
            cached_tokens: done.cached_tokens,
            attempts: u64::from(done.attempts),
            ttfb_ms_total: done.ttfb_ms.unwrap_or(0),
            ttfb_count: u64::from(done.ttfb_ms.is_some()),
            ..UsageRecord::default()
        };
        if let Some(class) = error_class(done.status) {
            record.errors.insert(class.to_string(), 1);
        }
        let name = |v: Option<&str>| v.unwrap_or("-").to_string();
        let key = UsageKey {
            hour: now_ms / 3_600_000,
            key: name(done.key),
            client_model: name(done.client_model),
            upstream_model: name(done.upstream_model),
            account: name(done.account),
        };
        self.usage.record(key, &record);
    }

    /// What `key` has used now against its limits (the console's keys page).
    pub fn key_usage(&self, settings: &TenancySettings, key: &str, now_ms: u64) -> KeyUsage {
        let counters = self.counters_of(key, &settings.time_zone, now_ms);
        let usage = lock(&counters).usage(&settings.time_zone, now_ms);
        usage
    }

    /// The key's counters, created on first use with the budget periods' tokens the store already counted
    /// (so a restart does not hand out a fresh budget). Hourly rows: a period starting inside an hour counts
    /// that whole hour.
    fn counters_of(&self, key: &str, zone: &TimeZone, now_ms: u64) -> Arc<Mutex<KeyCounters>> {
        if let Some(found) = lock(&self.counters).get(key) {
            return found.clone();
        }
        let now = (now_ms / 1000) as i64;
        let (day, month) = (period(zone, Span::Day, now), period(zone, Span::Month, now));
        let hour = |at: i64| (at.max(0) as u64) / 3600;
        let (mut today, mut this_month) = (0, 0);
        match self.store.usage_rows(hour(month.start.min(day.start)), hour(now) + 1) {
            Ok(rows) => {
                for (row, record) in rows.iter().filter(|(row, _)| row.key == key) {
                    let at = (row.hour * 3600) as i64;
                    if at + 3600 > month.start {
                        this_month += record.total_tokens();
                    }
                    if at + 3600 > day.start {
                        today += record.total_tokens();
                    }
                }
            }
            Err(e) => {
                tracing::warn!(key, error = %e, "cannot read the key's usage; its budgets start at zero")
            }
        }
        let seeded = Arc::new(Mutex::new(KeyCounters::seeded(zone, now, today, this_month)));
        lock(&self.counters).entry(key.to_string()).or_insert(seeded).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_773_576_000_000; // 2026-03-15T12:00:00Z

    fn settings(policy: KeyPolicy) -> TenancySettings {
        let mut s = TenancySettings::default();
        s.keys.insert("team".into(), policy);
        s
    }

    fn finished(key: &str, input: u64, output: u64) -> Finished<'_> {
        Finished {
            key: Some(key),
            client_model: Some("gpt-4o"),
            upstream_model: Some("gemini-3-flash"),
            account: Some("a@x.com"),
            status: 200,
            attempts: 1,
            ttfb_ms: Some(40),
            input_tokens: input,
            output_tokens: output,
            thinking_tokens: 0,
            cached_tokens: 0,
        }
    }

    #[test]
    fn a_dropped_permit_gives_its_slot_back() {
        let tenancy = Tenancy::new(Store::temporary().unwrap());
        let s = settings(KeyPolicy { max_concurrent: Some(1), ..KeyPolicy::unlimited() });
        let permit = tenancy.admit(&s, "team", "m", "m", 10, T0).unwrap();
        assert_eq!(
            tenancy.admit(&s, "team", "m", "m", 10, T0).err().map(|r| r.reason()),
            Some("concurrency")
        );
        drop(permit);
        let permit = tenancy.admit(&s, "team", "m", "m", 10, T0).unwrap();
        tenancy.finish(Some(permit), &finished("team", 7, 3), T0 + 500);
        let usage = tenancy.key_usage(&s, "team", T0 + 1000);
        assert_eq!((usage.in_flight, usage.reserved_tokens, usage.tokens_last_minute), (0, 0, 10));
    }

    #[test]
    fn a_reload_keeps_the_counters_and_applies_the_new_limit_at_once() {
        let tenancy = Tenancy::new(Store::temporary().unwrap());
        let loose = settings(KeyPolicy { rpm: Some(5), ..KeyPolicy::unlimited() });
        for _ in 0..3 {
            tenancy.finish(
                Some(tenancy.admit(&loose, "team", "m", "m", 1, T0).unwrap()),
                &finished("team", 1, 1),
                T0,
            );
        }
        let tight = settings(KeyPolicy { rpm: Some(3), ..KeyPolicy::unlimited() });
        assert_eq!(tenancy.admit(&tight, "team", "m", "m", 1, T0).err().map(|r| r.status()), Some(429));
        assert!(tenancy.admit(&loose, "team", "m", "m", 1, T0).is_ok());
    }

    #[test]
    fn budgets_are_seeded_from_the_store_after_a_restart() {
        let store = Store::temporary().unwrap();
        let before = Tenancy::new(store.clone());
        before.finish(None, &finished("team", 600, 400), T0 - 3_600_000);
        before.usage.flush(&store).unwrap();
        let after = Tenancy::new(store);
        let s = settings(KeyPolicy { daily_tokens: Some(1000), ..KeyPolicy::unlimited() });
        let refusal = after.admit(&s, "team", "m", "m", 1, T0).err().unwrap();
        assert_eq!(refusal.reason(), "daily_budget");
        let e = refusal.client_error();
        assert_eq!((e.status, e.kind), (429, ErrorKind::RateLimit));
        assert_eq!(after.key_usage(&s, "team", T0).tokens_today, 1000);
    }

    #[test]
    fn metric_model_labels_come_only_from_the_configuration() {
        let models = vec!["gemini-3-flash".to_string()];
        let aliases = vec![("gpt-*".to_string(), "gemini-3-pro-high".to_string())];
        let table =
            levitate_filters::alias::AliasTable::compile(&models, &aliases, Some("gemini-2.5-pro")).unwrap();
        for known in ["gemini-3-flash", "gemini-3-pro-high", "gemini-2.5-pro", "-"] {
            assert_eq!(bounded_model(&table, known), known);
        }
        assert_eq!(bounded_model(&table, "gpt-4o"), "other");
    }

    #[test]
    fn failures_are_counted_by_class() {
        assert_eq!(
            [200, 401, 403, 404, 429, 504, 502].map(error_class),
            [
                None,
                Some("auth"),
                Some("refused"),
                Some("invalid"),
                Some("rate_limit"),
                Some("timeout"),
                Some("upstream")
            ]
        );
    }
}
