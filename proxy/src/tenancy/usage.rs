//! Usage accounting: what every request used, per key × client model × upstream model × account × hour.
//!
//! The `logging` hook adds a finished request to an in-memory table ([`UsageBook::record`], one short mutex
//! hold); a background service ([`UsageFlusher`]) adds that table to the store's hourly rows every second and
//! drops rows older than `usage.retention_days`. Rows are counters, so a flush is an addition, and the
//! hand-over of a binary upgrade sums the old process's rows into the new one's (see `store.rs`). After a
//! stop or upgrade begins the flusher runs every 100 ms, so the last requests are in the store before the
//! lifecycle service flushes it and exits (it waits for 500 ms without requests first).
//!
//! [`query`] reads the rows of a time range grouped by the requested dimensions, for `GET /admin/usage`, the
//! CLI and the console; [`to_csv`] renders the same rows as CSV.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use serde::Serialize;

use crate::config::live::LiveConfig;
use crate::shared::SharedState;
use crate::store::{Store, StoreError, UsageKey, UsageRecord};

/// How often the in-memory table is added to the store, and how often once a stop has begun.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
const FLUSH_WHILE_STOPPING: Duration = Duration::from_millis(100);
/// How often rows past their retention are dropped.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Requests ended since the last flush, summed by row.
#[derive(Default)]
pub struct UsageBook {
    pending: Mutex<HashMap<UsageKey, UsageRecord>>,
    /// Hours whose stored rows changed since the cluster last had them (`shared::usage`).
    unpublished: Mutex<BTreeSet<u64>>,
}

impl UsageBook {
    /// Adds one finished request (or any delta) to its row.
    pub fn record(&self, key: UsageKey, delta: &UsageRecord) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.entry(key).or_default().add(delta);
    }

    /// Adds everything recorded so far to the store; returns how many rows. Rows that could not be written
    /// go back to the table for the next flush.
    pub fn flush(&self, store: &Store) -> Result<usize, StoreError> {
        let taken = std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        let count = taken.len();
        let mut rows = taken.into_iter();
        while let Some((key, record)) = rows.next() {
            let hour = key.hour;
            let written = store.add_usage(&key, &record);
            if written.is_ok() {
                self.unpublished.lock().unwrap_or_else(PoisonError::into_inner).insert(hour);
            }
            if let Err(e) = written {
                self.record(key, &record);
                for (key, record) in rows {
                    self.record(key, &record);
                }
                return Err(e);
            }
        }
        Ok(count)
    }

    /// The hours changed since the last call, for publishing to the cluster.
    fn take_unpublished(&self) -> BTreeSet<u64> {
        std::mem::take(&mut *self.unpublished.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Hours that could not be published go back for the next try.
    fn keep_unpublished(&self, hours: BTreeSet<u64>) {
        self.unpublished.lock().unwrap_or_else(PoisonError::into_inner).extend(hours);
    }
}

/// A dimension usage can be grouped by (`group_by=` in the admin API).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dimension {
    Key,
    /// The model name the client asked for.
    Model,
    UpstreamModel,
    Account,
    /// The hour, as RFC 3339 UTC.
    Hour,
}

impl Dimension {
    pub fn parse(name: &str) -> Option<Dimension> {
        Some(match name.trim() {
            "key" => Dimension::Key,
            "model" | "client_model" => Dimension::Model,
            "upstream_model" => Dimension::UpstreamModel,
            "account" => Dimension::Account,
            "hour" => Dimension::Hour,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Key => "key",
            Dimension::Model => "model",
            Dimension::UpstreamModel => "upstream_model",
            Dimension::Account => "account",
            Dimension::Hour => "hour",
        }
    }

    fn of(self, key: &UsageKey) -> String {
        match self {
            Dimension::Key => key.key.clone(),
            Dimension::Model => key.client_model.clone(),
            Dimension::UpstreamModel => key.upstream_model.clone(),
            Dimension::Account => key.account.clone(),
            Dimension::Hour => hour_label(key.hour),
        }
    }
}

/// An hour number as `YYYY-MM-DDTHH:00:00Z`.
pub fn hour_label(hour: u64) -> String {
    let seconds = i64::try_from(hour.saturating_mul(3600)).unwrap_or(i64::MAX);
    match jiff::Timestamp::from_second(seconds) {
        Ok(t) => t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Err(_) => hour.to_string(),
    }
}

/// One group of a usage query: its dimension values and the sum of its rows.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UsageGroup {
    #[serde(flatten)]
    pub labels: BTreeMap<String, String>,
    pub requests: u64,
    pub errors: u64,
    pub errors_by_class: BTreeMap<String, u64>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub thinking_tokens: u64,
    pub cached_tokens: u64,
    pub total_tokens: u64,
    pub attempts: u64,
    /// Mean time to first byte of the requests that had one.
    pub ttfb_ms_avg: Option<u64>,
}

impl UsageGroup {
    fn new(labels: BTreeMap<String, String>, r: &UsageRecord) -> Self {
        UsageGroup {
            labels,
            requests: r.requests,
            errors: r.errors.values().sum(),
            errors_by_class: r.errors.clone(),
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            thinking_tokens: r.thinking_tokens,
            cached_tokens: r.cached_tokens,
            total_tokens: r.total_tokens(),
            attempts: r.attempts,
            ttfb_ms_avg: (r.ttfb_count > 0).then(|| r.ttfb_ms_total / r.ttfb_count),
        }
    }
}

/// Sums `rows` by the values of `group_by` (no dimension: one total), largest token users first.
pub fn group(rows: &[(UsageKey, UsageRecord)], group_by: &[Dimension]) -> Vec<UsageGroup> {
    let mut sums: BTreeMap<Vec<String>, UsageRecord> = BTreeMap::new();
    for (key, record) in rows {
        let labels: Vec<String> = group_by.iter().map(|d| d.of(key)).collect();
        sums.entry(labels).or_default().add(record);
    }
    let mut groups: Vec<UsageGroup> = sums
        .into_iter()
        .map(|(values, record)| {
            let labels = group_by.iter().map(|d| d.as_str().to_string()).zip(values).collect();
            UsageGroup::new(labels, &record)
        })
        .collect();
    // Hours read best in time order; anything else by who used the most.
    if !group_by.contains(&Dimension::Hour) {
        groups.sort_by(|a, b| b.total_tokens.cmp(&a.total_tokens).then(b.requests.cmp(&a.requests)));
    }
    groups
}

/// The rows of hours `from_hour..to_hour` (after adding what is pending), grouped.
pub fn query(
    book: &UsageBook,
    store: &Store,
    from_hour: u64,
    to_hour: u64,
    group_by: &[Dimension],
) -> Result<Vec<UsageGroup>, StoreError> {
    book.flush(store)?;
    Ok(group(&store.usage_rows(from_hour, to_hour)?, group_by))
}

/// A parsed `GET /admin/usage` query: the hours to read and how to group them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageQuery {
    /// Unix seconds; the rows of every hour overlapping `from..to` are read.
    pub from: i64,
    pub to: i64,
    pub group_by: Vec<Dimension>,
    pub csv: bool,
    /// `scope=instance`: this instance's rows only, even in a cluster (`shared_state`), whose rows are summed
    /// over every instance otherwise.
    pub instance_only: bool,
}

impl UsageQuery {
    /// Reads `group_by=key,model`, `from=` / `to=` (RFC 3339, Unix seconds, or a duration such as `1d`, `7d`,
    /// `12h` meaning that long before `now`) and `format=csv|json`. Defaults: the last day, grouped by key.
    pub fn parse(query: Option<&str>, now: i64) -> Result<UsageQuery, String> {
        let mut parsed = UsageQuery {
            from: now - 86_400,
            to: now,
            group_by: vec![Dimension::Key],
            csv: false,
            instance_only: false,
        };
        for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match name.as_ref() {
                "from" => parsed.from = parse_time(&value, now)?,
                "to" => parsed.to = parse_time(&value, now)?,
                "since" => parsed.from = parse_time(&value, now)?,
                "group_by" => {
                    parsed.group_by = value
                        .split(',')
                        .filter(|d| !d.trim().is_empty())
                        .map(|d| {
                            Dimension::parse(d).ok_or_else(|| {
                                format!("group_by: unknown dimension {d:?} (key, model, upstream_model, account, hour)")
                            })
                        })
                        .collect::<Result<_, _>>()?
                }
                "format" => parsed.csv = value.eq_ignore_ascii_case("csv"),
                "scope" => {
                    parsed.instance_only = match value.as_ref() {
                        "instance" => true,
                        "cluster" => false,
                        other => return Err(format!("scope: {other:?} is not instance or cluster")),
                    }
                }
                _ => {}
            }
        }
        if parsed.from > parsed.to {
            return Err("from is after to".into());
        }
        Ok(parsed)
    }

    /// The hours `from..to` overlaps, as a half-open range of hour numbers.
    pub fn hours(&self) -> (u64, u64) {
        let hour = |t: i64| (t.max(0) as u64) / 3600;
        (hour(self.from), hour(self.to) + 1)
    }
}

/// RFC 3339, Unix seconds, or a duration before `now` (`1d`, `7d`, `90m`).
pub fn parse_time(text: &str, now: i64) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<i64>() {
        return Ok(seconds);
    }
    if let Ok(at) = text.parse::<jiff::Timestamp>() {
        return Ok(at.as_second());
    }
    match humantime::parse_duration(text) {
        Ok(ago) => Ok(now - i64::try_from(ago.as_secs()).unwrap_or(i64::MAX).min(now)),
        Err(_) => Err(format!("{text:?} is not a time (RFC 3339, Unix seconds, or a duration such as 7d)")),
    }
}

/// `groups` as CSV: the dimensions, then the counters; error classes as one `class=n;…` column.
pub fn to_csv(group_by: &[Dimension], groups: &[UsageGroup]) -> String {
    let mut out = String::new();
    let mut header: Vec<&str> = group_by.iter().map(|d| d.as_str()).collect();
    header.extend([
        "requests",
        "errors",
        "errors_by_class",
        "input_tokens",
        "output_tokens",
        "thinking_tokens",
        "cached_tokens",
        "total_tokens",
        "attempts",
        "ttfb_ms_avg",
    ]);
    out.push_str(&header.join(","));
    out.push('\n');
    for g in groups {
        let mut fields: Vec<String> =
            group_by.iter().map(|d| csv_field(g.labels.get(d.as_str()).map_or("", String::as_str))).collect();
        let classes: Vec<String> = g.errors_by_class.iter().map(|(c, n)| format!("{c}={n}")).collect();
        fields.extend([
            g.requests.to_string(),
            g.errors.to_string(),
            csv_field(&classes.join(";")),
            g.input_tokens.to_string(),
            g.output_tokens.to_string(),
            g.thinking_tokens.to_string(),
            g.cached_tokens.to_string(),
            g.total_tokens.to_string(),
            g.attempts.to_string(),
            g.ttfb_ms_avg.map(|v| v.to_string()).unwrap_or_default(),
        ]);
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

/// A `GET /admin/usage` JSON answer as a text table (the `levitate usage` command): the dimensions, then
/// requests, errors, input / output / thinking / cached tokens and mean time to first byte.
pub fn table(answer: &serde_json::Value) -> String {
    let dims: Vec<String> = answer["group_by"]
        .as_array()
        .map(|a| a.iter().filter_map(|d| d.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let counters =
        ["requests", "errors", "input_tokens", "output_tokens", "thinking_tokens", "cached_tokens"];
    let mut header: Vec<String> = dims.iter().map(|d| d.to_uppercase()).collect();
    header
        .extend(["REQUESTS", "ERRORS", "INPUT", "OUTPUT", "THINKING", "CACHED", "TTFB_MS"].map(String::from));
    let mut lines = vec![header];
    let empty = Vec::new();
    for row in answer["rows"].as_array().unwrap_or(&empty) {
        let mut line: Vec<String> = dims.iter().map(|d| row[d].as_str().unwrap_or("-").to_string()).collect();
        line.extend(counters.iter().map(|c| row[c].as_u64().unwrap_or(0).to_string()));
        line.push(row["ttfb_ms_avg"].as_u64().map_or("-".into(), |v| v.to_string()));
        lines.push(line);
    }
    let columns = lines[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|i| lines.iter().map(|l| l.get(i).map_or(0, |c| c.chars().count())).max().unwrap_or(0))
        .collect();
    let mut out = format!(
        "usage from {} to {}\n",
        answer["from"].as_str().unwrap_or("?"),
        answer["to"].as_str().unwrap_or("?")
    );
    for line in &lines {
        let cells: Vec<String> = line
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                if i < dims.len() {
                    format!("{cell:<w$}", w = widths[i])
                } else {
                    format!("{cell:>w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    if lines.len() == 1 {
        out.push_str("(no requests in this period)\n");
    }
    out
}

/// A CSV field, quoted when it holds a separator, a quote or a line break. A leading `=`, `+`, `-` or `@`
/// is prefixed with `'` so a spreadsheet does not run a client-chosen model name as a formula.
fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@']) && value != "-" {
        format!("'{value}")
    } else {
        value.to_string()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

/// Adds the usage table to the store every second, publishes the changed hours to the cluster (with
/// `shared_state`), and prunes rows past `usage.retention_days`.
pub struct UsageFlusher {
    book: Arc<super::Tenancy>,
    store: Store,
    config: Arc<LiveConfig>,
    shared: Arc<SharedState>,
}

impl UsageFlusher {
    pub fn new(
        book: Arc<super::Tenancy>,
        store: Store,
        config: Arc<LiveConfig>,
        shared: Arc<SharedState>,
    ) -> Self {
        UsageFlusher { book, store, config, shared }
    }

    /// This instance's rows of the hours that changed, to Redis; kept for the next tick when it is down.
    async fn publish(&self) {
        let hours = self.book.usage.take_unpublished();
        if hours.is_empty() || !self.shared.enabled() {
            return;
        }
        let mut rows = Vec::new();
        for &hour in &hours {
            match self.store.usage_rows(hour, hour + 1) {
                Ok(found) => rows.extend(found),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read usage rows to publish; kept for the next try");
                    self.book.usage.keep_unpublished(hours);
                    return;
                }
            }
        }
        let config = self.config.load();
        let published =
            self.shared.publish_usage(&config.store_path, &rows, config.tenancy.retention_days).await;
        if published.is_err() {
            self.book.usage.keep_unpublished(hours);
        }
    }

    fn flush(&self) {
        if let Err(e) = self.book.usage.flush(&self.store) {
            tracing::warn!(error = %e, "cannot write usage rows; kept for the next flush");
        }
    }

    fn prune(&self) {
        let days = u64::from(self.config.load().tenancy.retention_days);
        let cutoff = (crate::store::unix_now() / 3600).saturating_sub(days * 24);
        match self.store.prune_usage(cutoff) {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "usage rows past their retention dropped"),
            Err(e) => tracing::warn!(error = %e, "cannot prune usage rows"),
        }
    }
}

#[async_trait]
impl BackgroundService for UsageFlusher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut flush = tokio::time::interval(FLUSH_EVERY);
        let mut prune = tokio::time::interval(PRUNE_EVERY);
        loop {
            tokio::select! {
                _ = flush.tick() => {
                    self.flush();
                    self.publish().await;
                }
                _ = prune.tick() => self.prune(),
                _ = shutdown.changed() => break,
            }
        }
        // Requests still draining record until the process exits: keep adding them to the store.
        loop {
            self.flush();
            tokio::time::sleep(FLUSH_WHILE_STOPPING).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(hour: u64, key: &str, model: &str, account: &str) -> UsageKey {
        UsageKey {
            hour,
            key: key.into(),
            client_model: model.into(),
            upstream_model: "gemini-3-flash".into(),
            account: account.into(),
        }
    }

    fn used(requests: u64, input: u64, output: u64) -> UsageRecord {
        UsageRecord { requests, input_tokens: input, output_tokens: output, ..UsageRecord::default() }
    }

    #[test]
    fn recorded_requests_reach_the_store_summed_and_survive_a_second_flush() {
        let store = Store::temporary().unwrap();
        let book = UsageBook::default();
        book.record(key(10, "alice", "gpt-4o", "a@x"), &used(1, 10, 5));
        book.record(key(10, "alice", "gpt-4o", "a@x"), &used(1, 20, 5));
        book.record(key(11, "bob", "gpt-4o", "b@x"), &used(1, 1, 1));
        assert_eq!(book.flush(&store).unwrap(), 2);
        book.record(key(10, "alice", "gpt-4o", "a@x"), &used(1, 1, 0));
        assert_eq!(book.flush(&store).unwrap(), 1);
        let rows = store.usage_rows(10, 11).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].1.requests, rows[0].1.input_tokens, rows[0].1.output_tokens), (3, 31, 10));
        assert_eq!(store.usage_rows(0, 100).unwrap().len(), 2);
        assert_eq!(store.prune_usage(11).unwrap(), 1);
        assert_eq!(store.usage_rows(0, 100).unwrap().len(), 1);
    }

    #[test]
    fn groups_sum_by_the_requested_dimensions() {
        let mut failed = used(1, 0, 0);
        failed.errors.insert("rate_limit".into(), 1);
        let rows = vec![
            (key(10, "alice", "gpt-4o", "a@x"), used(2, 100, 50)),
            (key(11, "alice", "claude", "b@x"), used(1, 10, 5)),
            (key(11, "bob", "gpt-4o", "a@x"), failed),
        ];
        let by_key = group(&rows, &[Dimension::Key]);
        assert_eq!(by_key.len(), 2);
        assert_eq!(
            (by_key[0].labels["key"].as_str(), by_key[0].requests, by_key[0].total_tokens),
            ("alice", 3, 165)
        );
        assert_eq!((by_key[1].errors, by_key[1].errors_by_class["rate_limit"]), (1, 1));
        let all = group(&rows, &[]);
        assert_eq!((all.len(), all[0].requests), (1, 4));
        let by_hour = group(&rows, &[Dimension::Hour, Dimension::Model]);
        assert_eq!(by_hour[0].labels["hour"], "1970-01-01T10:00:00Z");
        let csv =
            to_csv(&[Dimension::Key, Dimension::Model], &group(&rows, &[Dimension::Key, Dimension::Model]));
        let lines: Vec<&str> = csv.lines().collect();
        assert!(lines[0].starts_with("key,model,requests,errors,errors_by_class,input_tokens"), "{csv}");
        assert!(lines.contains(&"alice,gpt-4o,2,0,,100,50,0,0,150,0,"), "{csv}");
        assert!(lines.contains(&"bob,gpt-4o,1,1,rate_limit=1,0,0,0,0,0,0,"), "{csv}");
    }

    #[test]
    fn usage_queries_parse_times_durations_and_dimensions() {
        let now = 1_773_576_000;
        let q = UsageQuery::parse(None, now).unwrap();
        assert_eq!(
            (q.from, q.to, q.group_by.clone(), q.csv),
            (now - 86_400, now, vec![Dimension::Key], false)
        );
        let q = UsageQuery::parse(Some("group_by=key,model&from=7d&format=csv"), now).unwrap();
        assert_eq!((q.from, q.group_by.len(), q.csv), (now - 7 * 86_400, 2, true));
        let q = UsageQuery::parse(Some("from=2026-03-15T10:30:00Z&to=1773576000"), now).unwrap();
        assert_eq!(q.hours(), (492_658, 492_661));
        assert!(UsageQuery::parse(Some("group_by=colour"), now).unwrap_err().contains("colour"));
        assert!(UsageQuery::parse(Some("from=yesterday"), now).is_err());
        assert!(UsageQuery::parse(Some("from=1h&to=2h"), now).unwrap_err().contains("after"));
    }

    #[test]
    fn the_cli_table_lines_up_dimensions_and_counters() {
        let rows = vec![(key(10, "alice", "gpt-4o", "a@x"), used(2, 100, 50))];
        let groups = group(&rows, &[Dimension::Key, Dimension::Model]);
        let answer =
            serde_json::json!({ "from": "a", "to": "b", "group_by": ["key", "model"], "rows": groups });
        let text = table(&answer);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "usage from a to b");
        assert_eq!(lines[1], "KEY    MODEL   REQUESTS  ERRORS  INPUT  OUTPUT  THINKING  CACHED  TTFB_MS");
        assert_eq!(lines[2], "alice  gpt-4o         2       0    100      50         0       0        -");
    }

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_field("-"), "-");
    }
}
