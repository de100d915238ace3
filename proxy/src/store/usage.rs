//! The usage tree: hourly counters per key × client model × upstream model × account (see
//! `crate::tenancy::usage`), kept with the rest of the store's records so they survive restarts and move
//! with the store in a binary upgrade, where the old process's rows are added to the new one's.

use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

/// Which usage row a request counts in: the hour it ended in and who used what through which account.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UsageKey {
    /// Hours since the Unix epoch (UTC).
    pub hour: u64,
    /// The API key's name (`-` for requests without one).
    pub key: String,
    pub client_model: String,
    pub upstream_model: String,
    pub account: String,
}

impl UsageKey {
    /// The hour first (big-endian), so a time range is a key range; then the names, NUL-separated.
    fn encode(&self) -> Vec<u8> {
        let mut out = self.hour.to_be_bytes().to_vec();
        for (i, part) in
            [&self.key, &self.client_model, &self.upstream_model, &self.account].iter().enumerate()
        {
            if i > 0 {
                out.push(0);
            }
            out.extend_from_slice(part.as_bytes());
        }
        out
    }

    fn decode(raw: &[u8]) -> Option<UsageKey> {
        let hour = u64::from_be_bytes(raw.get(..8)?.try_into().ok()?);
        let text = std::str::from_utf8(&raw[8..]).ok()?;
        let mut parts = text.split('\0').map(str::to_string);
        let key = UsageKey {
            hour,
            key: parts.next()?,
            client_model: parts.next()?,
            upstream_model: parts.next()?,
            account: parts.next()?,
        };
        parts.next().is_none().then_some(key)
    }
}

/// What the requests of one usage row added up to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    pub requests: u64,
    /// Failed requests by class (`invalid`, `auth`, `refused`, `rate_limit`, `timeout`, `upstream`).
    #[serde(default)]
    pub errors: std::collections::BTreeMap<String, u64>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub thinking_tokens: u64,
    pub cached_tokens: u64,
    /// Upstream attempts (retries on other accounts included).
    pub attempts: u64,
    /// Sum and count of the times to first byte, for the mean.
    pub ttfb_ms_total: u64,
    pub ttfb_count: u64,
}

impl UsageRecord {
    pub fn add(&mut self, other: &UsageRecord) {
        self.requests += other.requests;
        for (class, n) in &other.errors {
            *self.errors.entry(class.clone()).or_default() += n;
        }
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.thinking_tokens += other.thinking_tokens;
        self.cached_tokens += other.cached_tokens;
        self.attempts += other.attempts;
        self.ttfb_ms_total += other.ttfb_ms_total;
        self.ttfb_count += other.ttfb_count;
    }

    /// Input, output and thinking tokens: what limits and budgets count.
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens + self.thinking_tokens
    }
}

impl Store {
    /// Adds `delta` to the usage row `key` (created at zero).
    pub fn add_usage(&self, key: &UsageKey, delta: &UsageRecord) -> Result<(), StoreError> {
        self.trees().usage.update_and_fetch(key.encode(), |old| {
            let mut sum: UsageRecord = old.and_then(|o| serde_json::from_slice(o).ok()).unwrap_or_default();
            sum.add(delta);
            serde_json::to_vec(&sum).ok()
        })?;
        Ok(())
    }

    /// The usage rows of hours `from_hour..to_hour`, in key order (hour first); unreadable rows are skipped.
    pub fn usage_rows(
        &self,
        from_hour: u64,
        to_hour: u64,
    ) -> Result<Vec<(UsageKey, UsageRecord)>, StoreError> {
        let mut rows = Vec::new();
        let range = from_hour.to_be_bytes().to_vec()..to_hour.to_be_bytes().to_vec();
        for item in self.trees().usage.range(range) {
            let (key, value) = item?;
            if let (Some(key), Ok(record)) = (UsageKey::decode(&key), serde_json::from_slice(&value)) {
                rows.push((key, record));
            }
        }
        Ok(rows)
    }

    /// Drops the usage rows of hours before `before_hour`; returns how many.
    pub fn prune_usage(&self, before_hour: u64) -> Result<usize, StoreError> {
        let tree = &self.trees().usage;
        let mut removed = 0;
        for item in tree.range(..before_hour.to_be_bytes().to_vec()) {
            tree.remove(item?.0)?;
            removed += 1;
        }
        Ok(removed)
    }
}
