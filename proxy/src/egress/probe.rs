//! The background service that brings `egress_down` accounts back: every [`PROBE_INTERVAL`] it makes one
//! tunnel attempt through each down account's proxy (TCP, the proxy's handshake, the tunnel to the first
//! endpoint) and closes it. Nothing is sent to Google over the probe's tunnel.
//!
//! Only down accounts are probed: a working account's own calls are its health check.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;

use crate::config::live::LiveConfig;
use crate::config::{AccountSpec, UpstreamUrl};
use crate::egress::connector::open;
use crate::egress::tunnel::Target;
use crate::pool::AccountPool;

/// How often down accounts are probed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(10);
/// Proxies probed at once.
const PROBE_CONCURRENCY: usize = 8;

/// Add it with `background_service("levitate egress probe", EgressProbe::new(..))`.
pub struct EgressProbe {
    config: Arc<LiveConfig>,
    pool: Arc<AccountPool>,
}

impl EgressProbe {
    pub fn new(config: Arc<LiveConfig>, pool: Arc<AccountPool>) -> Self {
        EgressProbe { config, pool }
    }

    /// One round over the down accounts.
    pub async fn probe_once(&self) {
        let snapshot = self.config.load();
        let Some(endpoint) = snapshot.upstream.endpoints.first() else { return };
        let timeout = snapshot.upstream.connect_timeout;
        let down: Vec<Arc<AccountSpec>> = self
            .pool
            .accounts()
            .into_iter()
            .filter(|a| a.egress.is_some() && self.pool.egress_down(&a.id).is_some())
            .collect();
        futures::stream::iter(down)
            .for_each_concurrent(PROBE_CONCURRENCY, |account| async move {
                if probe(&account, endpoint, timeout).await {
                    self.pool.mark_egress_up(&account);
                }
            })
            .await;
    }
}

/// Whether the account's proxy completes a handshake now. A proxy that answers but cannot reach the target
/// counts as up: it is the proxy that `egress_down` is about.
async fn probe(account: &AccountSpec, endpoint: &UpstreamUrl, timeout: Duration) -> bool {
    let Some(proxy) = &account.egress else { return true };
    let host = endpoint.host.trim_start_matches('[').trim_end_matches(']').to_string();
    let target = if proxy.kind.resolves_locally() {
        match tokio::net::lookup_host((host.as_str(), endpoint.port)).await.ok().and_then(|mut a| a.next()) {
            Some(addr) => Target::Ip(addr.ip(), addr.port()),
            None => Target::Name(host, endpoint.port),
        }
    } else {
        Target::Name(host, endpoint.port)
    };
    match open(proxy, &target, timeout).await {
        Ok(_) => true,
        Err(e) if !e.is_proxy_down() => true,
        Err(e) => {
            tracing::debug!(account = %account.email, error = %e, "egress probe: proxy still down");
            false
        }
    }
}

#[async_trait]
impl BackgroundService for EgressProbe {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(PROBE_INTERVAL) => {}
            }
            self.probe_once().await;
        }
    }
}
