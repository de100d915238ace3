//! The background side of the cluster link: connects to Redis and reconnects after a failure, replays the
//! writes kept while it was down, checks it every second (a heartbeat other instances see), and keeps the
//! shared signature cache within `store.signature_ttl` and `store.max_signatures`.
//!
//! It also holds the subscription to the account pool's events (`pool_sync`) and reconciles the pool's
//! shared tables on every (re)connection.
//!
//! A Pingora background service, so the connection's driver task lives in a runtime that lasts as long as
//! the process; the request path's runtimes use the connection through its channel.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use redis::AsyncConnectionConfig;

use super::{keys, Link, SharedState};
use crate::config::live::LiveConfig;
use crate::pool::cluster::Share;
use crate::pool::AccountPool;
use crate::store::Store;
use crate::tenancy::Tenancy;

/// How often the link is checked (and how soon after a failure it is retried).
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How often the shared signature cache is trimmed.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// The longest a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

pub struct SharedStateService {
    shared: Arc<SharedState>,
    config: Arc<LiveConfig>,
    pool: Arc<AccountPool>,
    tenancy: Arc<Tenancy>,
    store: Store,
}

impl SharedStateService {
    pub fn new(
        shared: Arc<SharedState>,
        config: Arc<LiveConfig>,
        pool: Arc<AccountPool>,
        tenancy: Arc<Tenancy>,
        store: Store,
    ) -> Self {
        SharedStateService { shared, config, pool, tenancy, store }
    }

    /// Puts the cluster's shape in force: the accounts' caps and the keys' limits are split over it. With the
    /// cluster in view, the caps are the slots the ledger grants this instance (its fair part once the others
    /// have given theirs back); without it, an even share.
    async fn apply(&self, link: &Link, share: Share) {
        self.tenancy.set_instances(share.instances());
        let share = match share {
            Share::Exact { n, rank } => match link.settle_slots(&self.pool.slot_wants(n, rank)).await {
                Ok(slots) => Share::Held { n, slots },
                Err(_) => link.share(None),
            },
            other => other,
        };
        self.pool.set_cluster_share(share);
    }

    /// The link's life: connect, heartbeat, sweep; reconnect after a failure.
    async fn run(&self, link: &Link) {
        let mut last_sweep: Option<Instant> = None;
        loop {
            let members = if link.conn.load().is_none() {
                if connect(link).await {
                    link.reconcile(&self.pool, &self.store).await;
                    heartbeat(link).await
                } else {
                    None
                }
            } else {
                heartbeat(link).await
            };
            self.apply(link, link.share(members)).await;
            if link.conn.load().is_some() && last_sweep.is_none_or(|t| t.elapsed() >= SWEEP_INTERVAL) {
                last_sweep = Some(Instant::now());
                let snapshot = self.config.load();
                sweep(link, snapshot.signature_ttl, snapshot.max_signatures).await;
                link.prune_lockouts().await;
            }
            tokio::select! {
                _ = tokio::time::sleep(HEARTBEAT) => {}
                _ = link.reconnect.notified() => {}
            }
        }
    }

    /// The event subscription, re-established a second after it breaks.
    async fn listen(&self, link: &Link) {
        loop {
            if let Err(e) = super::pool_sync::listen(link, &self.pool).await {
                tracing::debug!(error = %e, "shared-state subscription lost; resubscribing");
            }
            tokio::time::sleep(HEARTBEAT).await;
        }
    }
}

#[async_trait]
impl BackgroundService for SharedStateService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(link) = self.shared.link.as_ref() else { return };
        // Until the cluster is seen, this instance takes no more than an even share of each cap.
        self.apply(link, link.share(None)).await;
        tokio::select! {
            _ = shutdown.changed() => {}
            _ = self.run(link) => {}
            _ = self.listen(link) => {}
        }
    }
}

/// Returns whether the link is up afterwards.
async fn connect(link: &Link) -> bool {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(link.settings.timeout));
    let attempt = link.client.get_multiplexed_async_connection_with_config(&config);
    let conn = match tokio::time::timeout(CONNECT_TIMEOUT * 2, attempt).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            link.mark_down(&e.to_string());
            return false;
        }
        Err(_) => {
            link.mark_down("connection attempt timed out");
            return false;
        }
    };
    link.mark_up(conn);
    // Reconcile: what this instance learned while Redis was away goes to the cluster now.
    let backlog = link.take_backlog();
    if !backlog.is_empty() {
        tracing::info!(writes = backlog.len(), "replaying shared-state writes made while Redis was down");
        link.write(backlog).await;
    }
    link.conn.load().is_some()
}

/// This instance's heartbeat in the cluster's instance table, and the table read back: how many instances
/// are alive and this one's rank among them (`None` when Redis failed).
async fn heartbeat(link: &Link) -> Option<(u32, u32)> {
    let conn = link.conn.load_full()?;
    let now = crate::store::unix_now_ms();
    let mut pipe = redis::pipe();
    pipe.cmd("HSET").arg(link.keys.instances()).arg(&link.instance).arg(now).ignore();
    pipe.cmd("HGETALL").arg(link.keys.instances());
    let mut conn = (*conn).clone();
    match link.bounded(pipe.query_async::<(Vec<(String, u64)>,)>(&mut conn)).await {
        Ok((table,)) => {
            link.count("heartbeat", "ok");
            let lease_ms = link.settings.lease.as_millis() as u64;
            Some(keys::membership(&table, &link.instance, now, lease_ms))
        }
        Err(e) => {
            link.count("heartbeat", "error");
            link.mark_down(&e);
            None
        }
    }
}

/// Drops index entries older than `ttl` (their keys expired by themselves), then the oldest signatures
/// beyond `max` (keys and index entries). Idempotent, so every instance may run it.
async fn sweep(link: &Link, ttl: Duration, max: usize) {
    let Some(conn) = link.conn.load_full() else { return };
    let mut conn = (*conn).clone();
    let index = link.keys.signature_index();
    let cutoff = crate::store::unix_now().saturating_sub(ttl.as_secs());
    let mut pipe = redis::pipe();
    pipe.cmd("ZREMRANGEBYSCORE").arg(&index).arg("-inf").arg(format!("({cutoff}")).ignore();
    pipe.cmd("ZCARD").arg(&index);
    let len = match link.bounded(pipe.query_async::<(u64,)>(&mut conn)).await {
        Ok((len,)) => len,
        Err(e) => return tracing::debug!(error = %e, "shared signature sweep failed"),
    };
    let excess = keys::excess(len, max);
    if excess == 0 {
        return;
    }
    let oldest: Vec<String> = match link
        .bounded(redis::cmd("ZRANGE").arg(&index).arg(0).arg(excess - 1).query_async(&mut conn))
        .await
    {
        Ok(oldest) => oldest,
        Err(e) => return tracing::debug!(error = %e, "shared signature sweep failed"),
    };
    let mut pipe = redis::pipe();
    for chunk in oldest.chunks(500) {
        pipe.cmd("DEL").arg(chunk).ignore();
        pipe.cmd("ZREM").arg(&index).arg(chunk).ignore();
    }
    if let Err(e) = link.bounded(pipe.exec_async(&mut conn)).await {
        tracing::debug!(error = %e, "shared signature sweep failed");
    } else {
        tracing::debug!(removed = oldest.len(), "shared signature cache trimmed");
    }
}
