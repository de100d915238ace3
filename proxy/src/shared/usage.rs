//! Usage rows for the whole cluster: each instance publishes its own hourly rows to Redis, and
//! `GET /admin/usage` on any instance sums every instance's rows.
//!
//! An instance writes the *totals* of its rows (what its store holds), not deltas: a write repeated after a
//! lost answer or a reconnection sets the same value again instead of counting twice. The rows are filed
//! under the store that holds them (`shared_state.instance_id` when set, else the host and the store's
//! path), not the process: after a binary upgrade the new process holds the old one's rows in the same
//! store and overwrites the same fields, where a per-process name would count them twice. One hash per hour
//! (`usage:<hour>`), one field per instance × row, kept as long as `usage.retention_days`. The usage
//! flusher publishes the hours it changed, once a second at most, off the request path; hours it could not
//! publish while Redis was down stay dirty until it can.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use redis::Value;

use super::SharedState;
use crate::store::{UsageKey, UsageRecord};

/// Most hours one cluster query reads (the longest retention the config accepts is well under this).
pub const MAX_HOURS: u64 = 24 * 400;

impl SharedState {
    /// Publishes this instance's rows of some hours (their totals). `Err` when Redis is not reachable now;
    /// the caller keeps the hours for the next try.
    pub async fn publish_usage(
        &self,
        store_path: &Path,
        rows: &[(UsageKey, UsageRecord)],
        retention_days: u32,
    ) -> Result<(), String> {
        let Some(link) = self.link.as_ref() else { return Ok(()) };
        let publisher = match &link.settings.instance_id {
            Some(id) => id.clone(),
            None => format!("{}:{}", super::hostname(), store_path.display()),
        };
        if rows.is_empty() {
            return Ok(());
        }
        let Some(conn) = link.conn.load_full() else { return Err("Redis is not reachable".into()) };
        let mut pipe = redis::pipe();
        let mut hours = BTreeSet::new();
        for (key, record) in rows {
            let value = serde_json::to_string(record).map_err(|e| e.to_string())?;
            pipe.cmd("HSET").arg(link.keys.usage(key.hour)).arg(field(&publisher, key)).arg(value).ignore();
            hours.insert(key.hour);
        }
        let ttl = u64::from(retention_days.max(1)) * 86_400 + 3_600;
        for hour in hours {
            pipe.cmd("EXPIRE").arg(link.keys.usage(hour)).arg(ttl).ignore();
        }
        link.query::<()>("usage", &pipe, &conn).await
    }

    /// Every instance's rows of hours `from_hour..to_hour`, or `None` when there is no cluster or Redis
    /// does not answer (the caller answers from this instance's store and says so).
    pub async fn cluster_usage(&self, from_hour: u64, to_hour: u64) -> Option<Vec<(UsageKey, UsageRecord)>> {
        let link = self.link.as_ref()?;
        let conn = link.conn.load_full()?;
        let to_hour = to_hour.min(from_hour.saturating_add(MAX_HOURS));
        let mut pipe = redis::pipe();
        for hour in from_hour..to_hour {
            pipe.cmd("HGETALL").arg(link.keys.usage(hour));
        }
        let replies = link.query::<Vec<Value>>("usage", &pipe, &conn).await.ok()?;
        let mut rows: HashMap<UsageKey, UsageRecord> = HashMap::new();
        for (hour, reply) in (from_hour..to_hour).zip(replies) {
            for (name, value) in pairs(reply) {
                let (Some(key), Ok(record)) =
                    (parse_field(hour, &name), serde_json::from_str::<UsageRecord>(&value))
                else {
                    continue;
                };
                rows.entry(key).or_default().add(&record);
            }
        }
        Some(rows.into_iter().collect())
    }
}

/// `["publisher","key","client model","upstream model","account"]`: JSON, so no name a client chose (a model
/// string may hold any character) can shift the parts.
fn field(publisher: &str, key: &UsageKey) -> String {
    serde_json::json!([publisher, key.key, key.client_model, key.upstream_model, key.account]).to_string()
}

/// The row a field names (the publisher is dropped: rows of all instances sum).
fn parse_field(hour: u64, name: &str) -> Option<UsageKey> {
    let [_publisher, key, client_model, upstream_model, account]: [String; 5] =
        serde_json::from_str(name).ok()?;
    Some(UsageKey { hour, key, client_model, upstream_model, account })
}

/// An HGETALL reply as (field, value) strings (RESP2 flat array or RESP3 map).
fn pairs(reply: Value) -> Vec<(String, String)> {
    let text = |v: Value| match v {
        Value::BulkString(b) => String::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    };
    match reply {
        Value::Array(items) => {
            let mut out = Vec::new();
            let mut items = items.into_iter();
            while let (Some(k), Some(v)) = (items.next(), items.next()) {
                if let (Some(k), Some(v)) = (text(k), text(v)) {
                    out.push((k, v));
                }
            }
            out
        }
        Value::Map(entries) => entries.into_iter().filter_map(|(k, v)| Some((text(k)?, text(v)?))).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_names_its_row_and_the_instance_is_dropped() {
        let key = UsageKey {
            hour: 7,
            key: "team".into(),
            client_model: "gpt-4o".into(),
            upstream_model: "gemini-3-flash".into(),
            account: "a@x".into(),
        };
        assert_eq!(parse_field(7, &field("box-1", &key)), Some(key.clone()));
        let odd = UsageKey { client_model: "a\",\"b\u{1f}c".into(), ..key };
        assert_eq!(parse_field(7, &field("box-1", &odd)), Some(odd), "a model name cannot shift the parts");
        assert_eq!(parse_field(7, r#"["too","few"]"#), None);
    }

    #[test]
    fn both_reply_shapes_are_read() {
        let flat = Value::Array(vec![Value::BulkString(b"f".to_vec()), Value::BulkString(b"v".to_vec())]);
        assert_eq!(pairs(flat), vec![("f".to_string(), "v".to_string())]);
        let map = Value::Map(vec![(Value::BulkString(b"g".to_vec()), Value::BulkString(b"w".to_vec()))]);
        assert_eq!(pairs(map), vec![("g".to_string(), "w".to_string())]);
    }
}
