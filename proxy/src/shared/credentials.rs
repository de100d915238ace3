//! OAuth access tokens and discovered projects in Redis, for `accounts::cluster`: one token refresh per
//! account per expiry across the cluster (a `SET NX PX` claim; the others poll for the published token),
//! and a project discovered once for all instances.
//!
//! Tokens are bearer credentials: Redis must be private (see docs/operations.md). They are stored with their
//! remaining lifetime as TTL, so an expired one is never handed out.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::SharedState;
use crate::accounts::cluster::{ClusterCredentials, SharedProject, Token};
use crate::store::unix_now;

#[derive(Serialize, Deserialize)]
struct StoredToken {
    token: String,
    expires_at: u64,
}

#[derive(Serialize, Deserialize)]
struct StoredProject {
    id: String,
    tier: Option<String>,
}

/// The cluster's credentials over the shared-state link.
pub struct RedisCredentials(pub Arc<SharedState>);

impl RedisCredentials {
    async fn get(&self, key: String) -> Option<String> {
        let link = self.0.link.as_ref()?;
        let conn = link.conn.load_full()?;
        let mut conn = (*conn).clone();
        let mut cmd = redis::cmd("GET");
        cmd.arg(key);
        match link.bounded::<Option<String>>(cmd.query_async(&mut conn)).await {
            Ok(value) => value,
            Err(e) => {
                link.mark_down(&e);
                None
            }
        }
    }

    async fn run(&self, pipe: redis::Pipeline) {
        let Some(link) = self.0.link.as_ref() else { return };
        let Some(conn) = link.conn.load_full() else { return };
        let mut conn = (*conn).clone();
        if let Err(e) = link.bounded(pipe.exec_async(&mut conn)).await {
            link.mark_down(&e);
        }
    }

    fn key(&self, kind: &str, account: &str) -> Option<String> {
        self.0.link.as_ref().map(|l| l.keys.account(kind, account))
    }
}

#[async_trait]
impl ClusterCredentials for RedisCredentials {
    async fn token(&self, account: &str) -> Option<Token> {
        let text = self.get(self.key("token", account)?).await?;
        let stored: StoredToken = serde_json::from_str(&text).ok()?;
        Some(Token { token: stored.token.into(), expires_at: stored.expires_at })
    }

    async fn claim_refresh(&self, account: &str, hold: Duration) -> bool {
        let (Some(link), Some(key)) = (self.0.link.as_ref(), self.key("refreshing", account)) else {
            return true;
        };
        let Some(conn) = link.conn.load_full() else { return true };
        let mut conn = (*conn).clone();
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(&link.instance).arg("NX").arg("PX").arg(hold.as_millis().max(1) as u64);
        match link.bounded::<Option<String>>(cmd.query_async(&mut conn)).await {
            Ok(answer) => answer.is_some(),
            Err(e) => {
                link.mark_down(&e);
                true
            }
        }
    }

    async fn put_token(&self, account: &str, token: &Token) {
        let (Some(key), Some(claim)) = (self.key("token", account), self.key("refreshing", account)) else {
            return;
        };
        let ttl = token.expires_at.saturating_sub(unix_now());
        let stored = StoredToken { token: token.token.to_string(), expires_at: token.expires_at };
        let Ok(text) = serde_json::to_string(&stored) else { return };
        let mut pipe = redis::pipe();
        if ttl > 0 {
            pipe.cmd("SET").arg(key).arg(text).arg("EX").arg(ttl).ignore();
        }
        pipe.cmd("DEL").arg(claim).ignore();
        self.run(pipe).await;
    }

    async fn end_claim(&self, account: &str) {
        let Some(claim) = self.key("refreshing", account) else { return };
        let mut pipe = redis::pipe();
        pipe.cmd("DEL").arg(claim).ignore();
        self.run(pipe).await;
    }

    async fn project(&self, account: &str) -> Option<SharedProject> {
        let text = self.get(self.key("project", account)?).await?;
        let stored: StoredProject = serde_json::from_str(&text).ok()?;
        Some(SharedProject { id: stored.id, tier: stored.tier })
    }

    async fn put_project(&self, account: &str, project: &SharedProject) {
        let Some(key) = self.key("project", account) else { return };
        let stored = StoredProject { id: project.id.clone(), tier: project.tier.clone() };
        let Ok(text) = serde_json::to_string(&stored) else { return };
        let mut pipe = redis::pipe();
        pipe.cmd("SET").arg(key).arg(text).ignore();
        self.run(pipe).await;
    }
}
