//! The account pool's shared state: lockouts, forbidden marks and quota snapshots, stored in Redis (so an
//! instance that starts or reconnects begins with them) and published on one channel (so the others react
//! within a second, not at their next 429).
//!
//! Writes leave the request path at once (a spawned pipeline per event: `HSET` + `PUBLISH`); events only
//! happen on 429s, 403s and quota polls, never per request or per chunk.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::{Link, SharedState};
use crate::pool::events::{EventSink, PoolEvent};
use crate::pool::AccountPool;
use crate::store::Store;

/// What goes on the channel: the event and who learned it (an instance ignores its own).
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    from: String,
    event: PoolEvent,
}

/// The hash an event is stored in, its field, and its value (`None`: the field is deleted).
fn stored(link: &Link, event: &PoolEvent) -> (String, String, Option<String>) {
    let json = |e: &PoolEvent| serde_json::to_string(e).ok();
    match event {
        PoolEvent::Lockout(r) => {
            (link.keys.pool("lockouts"), format!("{}|{}", r.account, r.model), json(event))
        }
        PoolEvent::Quota(r) => (link.keys.pool("quotas"), format!("{}|{}", r.account, r.model), json(event)),
        PoolEvent::Forbidden { account, .. } => (link.keys.pool("forbidden"), account.clone(), json(event)),
        PoolEvent::Unforbidden { account } => (link.keys.pool("forbidden"), account.clone(), None),
        PoolEvent::BreakerOpened { account, .. } => {
            (link.keys.pool("breakers"), account.clone(), json(event))
        }
    }
}

impl SharedState {
    /// The pool's event sink: each event is stored and published in one pipeline, off the caller's path.
    pub fn pool_sink(self: &Arc<Self>) -> EventSink {
        let this = Arc::clone(self);
        Box::new(move |event| {
            if this.link.is_none() || tokio::runtime::Handle::try_current().is_err() {
                return;
            }
            let this = Arc::clone(&this);
            tokio::spawn(async move {
                if let Some(link) = this.link.as_ref() {
                    link.publish(&[event]).await;
                }
            });
        })
    }
}

impl Link {
    /// Stores and publishes `events` in one pipeline. Lost while Redis is down: the reconciliation on
    /// reconnection pushes this instance's records from its own store instead.
    pub(super) async fn publish(&self, events: &[PoolEvent]) {
        let Some(conn) = self.conn.load_full() else { return };
        let mut pipe = redis::pipe();
        for event in events {
            let (hash, field, value) = stored(self, event);
            match value {
                Some(value) => pipe.cmd("HSET").arg(&hash).arg(&field).arg(value).ignore(),
                None => pipe.cmd("HDEL").arg(&hash).arg(&field).ignore(),
            };
            let envelope = Envelope { from: self.instance.clone(), event: event.clone() };
            if let Ok(text) = serde_json::to_string(&envelope) {
                pipe.cmd("PUBLISH").arg(self.keys.pool("events")).arg(text).ignore();
            }
        }
        let mut conn = (*conn).clone();
        match self.bounded(pipe.exec_async(&mut conn)).await {
            Ok(()) => self.count("publish", "ok"),
            Err(e) => {
                self.count("publish", "error");
                self.mark_down(&e);
            }
        }
    }

    /// On (re)connection: takes in what the cluster stored, then offers the cluster what this instance knows
    /// and it does not (lockouts that end later, forbidden marks and quota snapshots it lacks).
    pub(super) async fn reconcile(&self, pool: &AccountPool, store: &Store) {
        let Some(conn) = self.conn.load_full() else { return };
        let mut conn = (*conn).clone();
        let mut pipe = redis::pipe();
        for name in ["lockouts", "forbidden", "quotas", "breakers"] {
            pipe.cmd("HGETALL").arg(self.keys.pool(name));
        }
        let tables: Vec<HashMap<String, String>> = match self.bounded(pipe.query_async(&mut conn)).await {
            Ok(tables) => tables,
            Err(e) => return self.mark_down(&e),
        };
        let remote: HashMap<(String, String), PoolEvent> = tables
            .into_iter()
            .flat_map(|table| table.into_values())
            .filter_map(|text| serde_json::from_str::<PoolEvent>(&text).ok())
            .map(|event| {
                let (hash, field, _) = stored(self, &event);
                ((hash, field), event)
            })
            .collect();
        let taken = remote.len();
        for event in remote.values() {
            pool.apply_remote(event.clone());
        }
        let now = crate::store::unix_now_ms();
        let mut local: Vec<PoolEvent> = Vec::new();
        local.extend(store.lockouts(now).unwrap_or_default().into_iter().map(PoolEvent::Lockout));
        local.extend(
            store
                .forbidden()
                .unwrap_or_default()
                .into_iter()
                .map(|(account, record)| PoolEvent::Forbidden { account, record }),
        );
        local.extend(store.quotas().unwrap_or_default().into_iter().map(PoolEvent::Quota));
        let offered: Vec<PoolEvent> = local
            .into_iter()
            .filter(|event| {
                let (hash, field, _) = stored(self, event);
                match (remote.get(&(hash, field)), event) {
                    (None, _) => true,
                    (Some(PoolEvent::Lockout(theirs)), PoolEvent::Lockout(ours)) => {
                        ours.until_ms > theirs.until_ms
                    }
                    (Some(PoolEvent::Quota(theirs)), PoolEvent::Quota(ours)) => {
                        ours.fetched_at > theirs.fetched_at
                    }
                    _ => false,
                }
            })
            .collect();
        if taken + offered.len() > 0 {
            tracing::info!(taken, offered = offered.len(), "account state reconciled with the cluster");
        }
        if !offered.is_empty() {
            self.publish(&offered).await;
        }
    }

    /// Drops stored lockouts and breaker openings that have ended (every instance may do it; idempotent).
    pub(super) async fn prune_lockouts(&self) {
        for name in ["lockouts", "breakers"] {
            self.prune(&self.keys.pool(name)).await;
        }
    }

    async fn prune(&self, hash: &str) {
        let Some(conn) = self.conn.load_full() else { return };
        let mut conn = (*conn).clone();
        let mut get = redis::cmd("HGETALL");
        get.arg(hash);
        let Ok(table) = self.bounded::<HashMap<String, String>>(get.query_async(&mut conn)).await else {
            return;
        };
        let now = crate::store::unix_now_ms();
        let ended: Vec<String> = table
            .into_iter()
            .filter(|(_, text)| match serde_json::from_str::<PoolEvent>(text) {
                Ok(PoolEvent::Lockout(r)) => r.until_ms <= now,
                Ok(PoolEvent::BreakerOpened { until_ms, .. }) => until_ms <= now,
                _ => true,
            })
            .map(|(field, _)| field)
            .collect();
        if !ended.is_empty() {
            let mut del = redis::cmd("HDEL");
            del.arg(hash).arg(&ended);
            let _ = self.bounded(del.exec_async(&mut conn)).await;
        }
    }
}

/// Listens on the event channel until the subscription breaks (Redis gone); the caller reconnects.
pub(super) async fn listen(link: &Link, pool: &AccountPool) -> Result<(), String> {
    let connect = link.client.get_async_pubsub();
    let mut pubsub = match tokio::time::timeout(std::time::Duration::from_secs(2), connect).await {
        Ok(Ok(pubsub)) => pubsub,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err("subscription timed out".to_string()),
    };
    pubsub.subscribe(link.keys.pool("events")).await.map_err(|e| e.to_string())?;
    let mut messages = pubsub.on_message();
    while let Some(message) = messages.next().await {
        let Ok(envelope) = serde_json::from_slice::<Envelope>(message.get_payload_bytes()) else { continue };
        if envelope.from != link.instance {
            pool.apply_remote(envelope.event);
        }
    }
    Err("subscription ended".to_string())
}
