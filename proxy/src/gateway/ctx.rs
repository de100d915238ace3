//! Per-request state ([`RequestCtx`], Pingora's `CTX`): what one request did, for the `logging` hook, the
//! metrics and the request log.

use std::time::{Duration, Instant};

use levitate_filters::Protocol;

use super::exchange::Attempts;

/// Per-request state: everything the `logging` hook reports.
pub struct RequestCtx {
    pub(super) started: Instant,
    pub(super) protocol: Protocol,
    pub(super) operation: &'static str,
    pub(super) key_name: Option<String>,
    /// The client's address (see `client_addr`), for the request log.
    pub(super) client_ip: Option<std::net::IpAddr>,
    pub(super) client_model: Option<String>,
    pub(super) upstream_model: Option<String>,
    pub(super) account: Option<String>,
    pub(super) attempts: u32,
    pub(super) status: u16,
    pub(super) first_byte: Option<Duration>,
    pub(super) truncated: bool,
    /// With a 429: when the pool's earliest account unlocks (the `Retry-After` header).
    pub(super) retry_after: Option<Duration>,
    /// Unix milliseconds of arrival, for the request log.
    pub(super) at_ms: u64,
    /// How the client's model resolved (`routes.yaml` pattern, `direct` or `default`): a bounded metric label.
    pub(super) alias: Option<String>,
    /// Time spent waiting on the upstream (attempts and stream reads); the rest is gateway overhead.
    pub(super) upstream_wait: Duration,
    /// The last usage the upstream reported (prompt, candidates, thoughts, cached tokens).
    pub(super) usage: Option<levitate_filters::stream::Usage>,
    /// The key's hold on its limits (concurrency slot, token reservation), settled when the request ends.
    pub(super) permit: Option<crate::tenancy::Permit>,
    /// Counts this request in `levitate_active_requests` until the context is dropped.
    pub(super) _active: crate::ops::metrics::LiveGuard,
    /// Counts a streaming response in `levitate_active_streams` while it is written.
    pub(super) stream: Option<crate::ops::metrics::LiveGuard>,
    /// The conversation's affinity key, for the shared binding written when the request ends.
    pub(super) session: Option<String>,
    /// What this request learned for the other instances (`crate::shared`), flushed when it ends.
    pub(super) shared_out: crate::shared::Outbox,
}

impl RequestCtx {
    /// Records what an upstream exchange did: its attempts, last account and `Retry-After`, and the wait.
    pub(super) fn note_attempts(&mut self, attempts: &Attempts, waited: Instant) {
        self.upstream_wait += waited.elapsed();
        self.attempts = attempts.count;
        self.account = attempts.last_account.clone();
        self.retry_after = attempts.retry_after;
        self.session.clone_from(&attempts.session);
    }
}
