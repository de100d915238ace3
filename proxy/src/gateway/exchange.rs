//! One client request's upstream exchange: lease an account, get its token and project, send, and on a
//! refusal teach the pool what it means and move to the next account, while nothing has been written to the
//! client yet.
//!
//! The retry loop is ours, not Pingora's (see ARCHITECTURE.md): attempts are bounded by `pool.max_attempts`;
//! accounts already tried are skipped while another is eligible; every refusal is read with
//! [`levitate_filters::retry_hint`] and becomes pool state (a lockout for the pair, a breaker failure, a
//! forbidden mark). When every account rests, the request waits only if the earliest unlock is within
//! `pool.max_wait`, and otherwise answers 429 at once with `Retry-After` set to that unlock.
//!
//! A 200 that turns out empty (no part before the stream ended, PROTOCOL.md §2) is only known once the
//! gateway has read it; it reports it with [`on_empty_answer`] and calls [`open`] again with the same
//! [`Attempts`], which carry the accounts already tried and count toward `pool.max_attempts`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use levitate_filters::error::{ClientError, ErrorKind};
use levitate_filters::inner::{wrap_envelope, InnerRequest};
use levitate_filters::retry_hint::{self, Reason, Refusal, Verdict};

use super::fallback;
use crate::app::App;
use crate::config::{AccountSpec, Snapshot};
use crate::pool::{now_ms, Lease, SelectError, Selection};
use crate::upstream::{UpstreamRequest, UpstreamResponse};

/// Largest upstream error body read for classification; Google's are a few KiB.
const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// The rest for a rate limit that names no delay.
const DEFAULT_RATE_LIMIT_REST: Duration = Duration::from_secs(5);
/// `Retry-After` when every account is merely busy.
const BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);

/// What one request's attempts carry in (the session key) and what they did, for the log line and the answer.
/// It lives as long as the client request, across every [`open`] the gateway makes for it.
#[derive(Debug, Default)]
pub struct Attempts {
    /// The conversation's affinity key.
    pub session: Option<String>,
    pub count: u32,
    pub last_account: Option<String>,
    /// With a final 429: when the client should come back (the earliest unlock).
    pub retry_after: Option<Duration>,
    /// Accounts this request tried (ids): skipped while another is eligible.
    tried: Vec<String>,
}

impl Attempts {
    pub fn for_session(session: &str) -> Self {
        Attempts { session: Some(session.to_string()), ..Attempts::default() }
    }

    /// Whether `pool.max_attempts` leaves room for another attempt.
    pub fn may_retry(&self, snapshot: &Snapshot) -> bool {
        self.count < snapshot.pool.max_attempts
    }
}

/// What sending to the endpoints gave.
enum Sent {
    Ok(Box<UpstreamResponse>),
    /// A refusal and its raw body (kept for the client's error message).
    Refused(Refusal, Bytes),
    Unreachable(String),
    /// The gateway's own resources ran out (see `UpstreamError::is_local_resource`).
    LocalResource(String),
    /// The account's egress proxy failed: the account goes `egress_down`, nothing is sent around it.
    EgressDown(String),
}

/// Leases accounts and tries them until one answers 200, while nothing has been sent to the client.
pub async fn open(
    app: &App,
    snapshot: &Snapshot,
    upstream_model: &str,
    inner: &InnerRequest,
    attempts: &mut Attempts,
) -> Result<(UpstreamResponse, Lease), ClientError> {
    open_call(app, snapshot, upstream_model, Call::Generate(inner), attempts).await
}

/// `countTokens` through the same accounts, retries and endpoint fallback; returns the answer's body.
pub async fn count_tokens(
    app: &App,
    snapshot: &Snapshot,
    upstream_model: &str,
    body: Vec<u8>,
    attempts: &mut Attempts,
) -> Result<Bytes, ClientError> {
    let body = Bytes::from(body);
    let (mut response, lease) =
        open_call(app, snapshot, upstream_model, Call::CountTokens { body: &body }, attempts).await?;
    let answer = response.read_to_end(ERROR_BODY_LIMIT).await;
    response.release(&app.upstream).await;
    drop(lease);
    answer.map_err(|e| ClientError::new(502, ErrorKind::Api, format!("countTokens answer unreadable: {e}")))
}

/// Which upstream method an exchange calls, with its body.
#[derive(Clone, Copy)]
enum Call<'a> {
    /// `streamGenerateContent?alt=sse`; the body is the inner request, wrapped per attempt.
    Generate(&'a InnerRequest),
    /// `countTokens`; the body goes as is (it carries no project).
    CountTokens { body: &'a Bytes },
}

impl Call<'_> {
    fn path(self) -> &'static str {
        match self {
            Call::Generate { .. } => "/v1internal:streamGenerateContent?alt=sse",
            Call::CountTokens { .. } => "/v1internal:countTokens",
        }
    }
}

async fn open_call(
    app: &App,
    snapshot: &Snapshot,
    upstream_model: &str,
    call: Call<'_>,
    attempts: &mut Attempts,
) -> Result<(UpstreamResponse, Lease), ClientError> {
    let settings = &snapshot.pool;
    let session = attempts.session.clone();
    let session = session.as_deref();
    let mut refreshed: Vec<String> = Vec::new();
    let mut last_error: Option<ClientError> = None;
    let mut earliest_unlock: Option<u64> = None;
    let request_id = format!("agent-{}", uuid::Uuid::new_v4());
    // A model no enabled account lists is refused before any account is tried (model availability).
    if !app.pool.can_serve(upstream_model) {
        if let Some(served) = fall_back(app, snapshot, upstream_model, call, attempts).await {
            return served;
        }
        return Err(super::models::unserved(upstream_model));
    }
    while attempts.count < settings.max_attempts {
        let selection = Selection { model: upstream_model, exclude: &attempts.tried, session };
        let lease = match lease(app, &selection, settings.max_wait).await {
            Ok(lease) => lease,
            // Everyone was tried once: the remaining attempts may go back to them (their lockouts still hold).
            Err(SelectError::Exhausted) => {
                attempts.tried.clear();
                continue;
            }
            Err(SelectError::NoAccounts | SelectError::Busy | SelectError::Locked { .. })
                if fallback::serves(snapshot, upstream_model) && matches!(call, Call::Generate(_)) =>
            {
                if let Some(served) = fall_back(app, snapshot, upstream_model, call, attempts).await {
                    return served;
                }
                return Err(ClientError::new(503, ErrorKind::Overloaded, "no account can serve the request"));
            }
            Err(SelectError::NoAccounts) => {
                app.metrics.pool.rejected("no_accounts");
                return Err(last_error.unwrap_or_else(|| {
                    ClientError::new(503, ErrorKind::Overloaded, "no Google account is configured and usable")
                }));
            }
            Err(SelectError::Busy) => {
                app.metrics.pool.rejected("busy");
                attempts.retry_after = Some(BUSY_RETRY_AFTER);
                return Err(ClientError::new(
                    429,
                    ErrorKind::RateLimit,
                    "every account is busy; retry shortly",
                ));
            }
            Err(SelectError::Locked { until_ms }) => {
                app.metrics.pool.rejected("resting");
                let wait = Duration::from_millis(until_ms.saturating_sub(now_ms()));
                tracing::debug!(
                    model = upstream_model,
                    wait_ms = wait.as_millis() as u64,
                    "every account is resting"
                );
                attempts.retry_after = Some(wait);
                return Err(ClientError::new(
                    429,
                    ErrorKind::RateLimit,
                    format!(
                        "every account is rate limited or out of quota for {upstream_model}; retry after {}s",
                        ceil_secs(wait)
                    ),
                ));
            }
        };
        if !attempts.tried.contains(&lease.account.id) {
            attempts.tried.push(lease.account.id.clone());
        }
        attempts.count += 1;
        attempts.last_account = Some(lease.account.email.clone());
        let account = lease.account.clone();
        let token = match app.credentials.access_token(&account, &snapshot.upstream).await {
            Ok(token) => token,
            Err(e) if crate::upstream::is_local_resource_text(&e.to_string()) => {
                tracing::warn!(error = %e, "token refresh failed for lack of local resources (file descriptors?)");
                app.metrics.upstream_attempt(&account.email, "local_error");
                return Err(local_resource_error(attempts));
            }
            Err(e) if e.egress_down() => {
                last_error = Some(on_egress_down(app, &account, session, &e.to_string()));
                continue;
            }
            Err(e) => {
                tracing::warn!(account = %account.email, error = %e, "account unusable: token refresh failed");
                app.metrics.upstream_attempt(&account.email, "token_error");
                app.pool.on_credential_error(&account, &e);
                if e.counts_against_breaker() {
                    note_breaker(app, &account);
                }
                app.metrics.pool.retry("token_error");
                last_error = Some(ClientError::new(
                    503,
                    ErrorKind::Overloaded,
                    "no account could obtain an access token",
                ));
                continue;
            }
        };
        let project = match app.credentials.project(&account, &snapshot.upstream, &token).await {
            Ok(project) => project,
            Err(e) if e.egress_down() => {
                last_error = Some(on_egress_down(app, &account, session, &e.to_string()));
                continue;
            }
            Err(e) => {
                tracing::warn!(account = %account.email, error = %e, "account unusable: no project");
                app.metrics.upstream_attempt(&account.email, "project_error");
                app.metrics.pool.retry("project_error");
                last_error = Some(ClientError::new(
                    503,
                    ErrorKind::Overloaded,
                    "no account has a usable Cloud Code project",
                ));
                continue;
            }
        };
        lease.learn(project.tier.as_deref(), &project.id);
        let body = match call {
            Call::Generate(inner) => {
                let mut envelope = Vec::new();
                wrap_envelope(inner, &project.id, upstream_model, &request_id, &mut envelope);
                Bytes::from(envelope)
            }
            // `Bytes` clones share the buffer: every attempt sends the same bytes without a copy.
            Call::CountTokens { body } => body.clone(),
        };
        // The account's own install: its platform in the user agent, its machine id (`egress::identity`).
        let identity = app.credentials.identity(&account);
        let base_agent = &snapshot.upstream.user_agent;
        let mut headers = upstream_headers(&token.token, &identity.user_agent(base_agent), upstream_model);
        headers.extend(identity.headers(base_agent));
        let sent = send_with_fallback(app, snapshot, &account, call.path(), &headers, body).await;
        let (refusal, error_body) = match sent {
            Sent::Ok(response) => {
                app.metrics.upstream_attempt(&account.email, "ok");
                app.pool.on_success(&lease, session);
                return Ok((*response, lease));
            }
            Sent::LocalResource(message) => {
                // Our own descriptors or buffers ran out: no account is at fault and another would fare the
                // same, so nothing is held against this one and the client is told plainly.
                tracing::warn!(error = %message, "upstream call failed for lack of local resources (file descriptors?)");
                app.metrics.upstream_attempt(&account.email, "local_error");
                return Err(local_resource_error(attempts));
            }
            Sent::Unreachable(message) => {
                tracing::warn!(account = %account.email, error = %message, "upstream unreachable");
                app.metrics.upstream_attempt(&account.email, "network_error");
                app.metrics.pool.retry("network_error");
                note_breaker(app, &account);
                app.pool.on_session_failure(session, &account.id);
                last_error = Some(ClientError::new(502, ErrorKind::Api, "the upstream could not be reached"));
                continue;
            }
            Sent::EgressDown(message) => {
                last_error = Some(on_egress_down(app, &account, session, &message));
                continue;
            }
            Sent::Refused(refusal, body) => (refusal, body),
        };
        let status = refusal.status;
        app.metrics.upstream_attempt(&account.email, outcome_label(status));
        // Google's version notice as an error: every account would say the same, and none is at fault.
        if let Some(gate) = crate::pool::models::VersionGate::detect(refusal.message.as_bytes()) {
            super::models::on_version_gate(app, snapshot, upstream_model, gate);
            return Err(gate.client_error());
        }
        // The account's own project id can appear anywhere in Google's text; it is no business of the client.
        let error = ClientError::from_upstream(status, &error_body).without_project(&project.id);
        match refusal.verdict(DEFAULT_RATE_LIMIT_REST) {
            Verdict::RateLimited { rest } | Verdict::QuotaExhausted { rest } => {
                let reason = match refusal.reason {
                    Reason::Other => "RESOURCE_EXHAUSTED",
                    reason => reason.as_str(),
                };
                if let Some(until_ms) = app.pool.lock(&account, upstream_model, rest, reason) {
                    app.metrics.pool.lockout(&account.email, reason);
                    if rest >= Duration::from_secs(60) {
                        tracing::info!(account = %account.email, model = upstream_model, reason, rest_s = rest.as_secs(), "account locked for this model");
                    } else {
                        tracing::debug!(account = %account.email, model = upstream_model, reason, rest_ms = rest.as_millis() as u64, "account resting");
                    }
                    earliest_unlock = Some(earliest_unlock.map_or(until_ms, |t| t.min(until_ms)));
                }
                app.metrics.pool.retry("rate_limited");
                app.pool.on_session_failure(session, &account.id);
            }
            Verdict::Capacity => {
                tracing::debug!(account = %account.email, model = upstream_model, "no capacity upstream; next account");
                app.metrics.pool.retry("capacity");
            }
            Verdict::ServerError => {
                tracing::info!(account = %account.email, status, message = %refusal.message, "upstream server error");
                app.metrics.pool.retry("server_error");
                note_breaker(app, &account);
                app.pool.on_session_failure(session, &account.id);
            }
            Verdict::Unauthenticated => {
                app.credentials.invalidate_token(&account);
                app.metrics.pool.retry("unauthenticated");
                if !refreshed.contains(&account.id) {
                    // Refresh once and retry the same account.
                    refreshed.push(account.id.clone());
                    attempts.tried.retain(|id| id != &account.id);
                }
                app.pool.on_session_failure(session, &account.id);
            }
            Verdict::Forbidden { reason, url } => {
                app.pool.forbid(&account, reason.as_str(), url, &refusal.message);
                app.metrics.pool.lockout(&account.email, reason.as_str());
                app.metrics.pool.retry("forbidden");
            }
            Verdict::AccountRefused => {
                tracing::info!(account = %account.email, status, message = %refusal.message, "account refused the request");
                app.metrics.pool.retry("account_refused");
                app.pool.on_session_failure(session, &account.id);
            }
            // The request itself is at fault: another account would answer the same.
            Verdict::RequestFault => return Err(error),
        }
        last_error = Some(error);
    }
    let error = last_error.unwrap_or_else(|| {
        ClientError::new(
            503,
            ErrorKind::Overloaded,
            "every account was tried and none could serve the request",
        )
    });
    // Every attempt went to accounts that could not serve now: the fallback key's turn.
    if error.status == 429 || error.status >= 500 {
        if let Some(served) = fall_back(app, snapshot, upstream_model, call, attempts).await {
            return served;
        }
    }
    if error.status == 429 {
        let wait = earliest_unlock.map(|t| Duration::from_millis(t.saturating_sub(now_ms())));
        attempts.retry_after = Some(wait.unwrap_or(DEFAULT_RATE_LIMIT_REST));
    }
    Err(error)
}

/// No account can serve: the opt-in fallback key, when it may serve the model (`gateway::fallback`). Only
/// content calls fall back; `countTokens` has no envelope-free twin worth a paid key.
async fn fall_back(
    app: &App,
    snapshot: &Snapshot,
    upstream_model: &str,
    call: Call<'_>,
    attempts: &mut Attempts,
) -> Option<Result<(UpstreamResponse, Lease), ClientError>> {
    let Call::Generate(inner) = call else { return None };
    // Boxed: a rare path whose state would otherwise size every request's future (see `access_token`).
    match Box::pin(fallback::open(app, snapshot, upstream_model, inner)).await? {
        fallback::Outcome::Sent(result) => {
            attempts.count += 1;
            attempts.last_account = Some(crate::pool::FALLBACK_ID.to_string());
            Some(*result)
        }
        fallback::Outcome::Busy(error) => {
            attempts.retry_after = Some(BUSY_RETRY_AFTER);
            Some(Err(error))
        }
    }
}

/// Leases an account, waiting (bounded, in the pool's FIFO queue) for a slot or a short lockout. Only a
/// request that really waits is counted in the queue-depth gauge and the wait histogram.
async fn lease(app: &App, selection: &Selection<'_>, max_wait: Duration) -> Result<Lease, SelectError> {
    match app.pool.select(selection) {
        Ok(lease) => return Ok(lease),
        Err(error) if !error.may_wait(max_wait) => return Err(error),
        Err(_) => {}
    }
    let _waiting = app.metrics.pool.wait_started();
    let started = Instant::now();
    let result = app.pool.select_or_wait(selection, max_wait).await;
    app.metrics.pool.waited(started.elapsed());
    result
}

/// The account answered 200 but its stream ended before any part (Google does this now and then; PROTOCOL.md
/// §2). Not worth a lockout or a breaker failure: the account stays in the tried list, so the next [`open`]
/// goes elsewhere while another account is eligible.
pub fn on_empty_answer(app: &App, account: &AccountSpec, attempts: &Attempts) {
    tracing::info!(
        account = %account.email,
        attempt = attempts.count,
        "upstream answered with no content; next account"
    );
    app.metrics.pool.retry("empty_response");
    app.pool.on_session_failure(attempts.session.as_deref(), &account.id);
}

/// The account answered 200, then its stream carried an error (a 429 or 5xx as an SSE event) before any
/// content: like a refused attempt, it moves the request on while nothing has reached the client. A 5xx counts
/// against the account's breaker; a rate limit inside a stream carries no reliable delay, so no lockout.
pub fn on_stream_error(app: &App, account: &AccountSpec, attempts: &Attempts, status: u16) {
    tracing::info!(account = %account.email, status, attempt = attempts.count, "upstream stream failed before any content; next account");
    app.metrics.pool.retry("stream_error");
    if status >= 500 {
        note_breaker(app, account);
    }
    app.pool.on_session_failure(attempts.session.as_deref(), &account.id);
}

/// The answer when the gateway itself is out of descriptors or buffers: a 503 that says so, not a 502 that
/// blames the upstream.
fn local_resource_error(attempts: &mut Attempts) -> ClientError {
    attempts.retry_after = Some(Duration::from_secs(1));
    ClientError::new(
        503,
        ErrorKind::Overloaded,
        "the gateway is out of local resources (open connections); retry shortly",
    )
}

/// The account's egress proxy failed: mark it `egress_down` (the probe brings it back) and move on. Not the
/// client's fault and not the account's: no breaker failure, no lockout.
fn on_egress_down(app: &App, account: &AccountSpec, session: Option<&str>, message: &str) -> ClientError {
    app.pool.mark_egress_down(account, message);
    app.metrics.upstream_attempt(&account.email, "egress_down");
    app.metrics.pool.retry("egress_down");
    app.pool.on_session_failure(session, &account.id);
    ClientError::new(
        503,
        ErrorKind::Overloaded,
        "no account could reach the upstream through its egress proxy",
    )
}

fn note_breaker(app: &App, account: &AccountSpec) {
    if app.pool.on_server_failure(account) {
        tracing::warn!(account = %account.email, "circuit breaker opened: the account keeps failing");
        app.metrics.pool.breaker_opened(&account.email);
    }
}

/// Whole seconds, rounded up, at least 1: what a `Retry-After` header carries.
pub fn ceil_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// Sends to the configured endpoints in order. Network errors, 404, 408, 5xx and "no capacity" move on to
/// the next endpoint; anything else (and the last endpoint's answer) is final.
async fn send_with_fallback(
    app: &App,
    snapshot: &Snapshot,
    account: &AccountSpec,
    path: &str,
    headers: &[(&'static str, String)],
    body: Bytes,
) -> Sent {
    let endpoints = &snapshot.upstream.endpoints;
    let mut last = Sent::Unreachable("no endpoint configured".to_string());
    for url in endpoints {
        let request = UpstreamRequest { url, path, headers, body: body.clone(), egress: account.egress() };
        match app.upstream.send(request).await {
            Ok(response) if response.status == 200 => return Sent::Ok(Box::new(response)),
            Ok(mut response) => {
                let status = response.status;
                let retry_after = response.header("retry-after").map(str::to_string);
                let error_body = response.read_to_end(ERROR_BODY_LIMIT).await.unwrap_or_default();
                response.release(&app.upstream).await;
                let refusal = retry_hint::classify(status, &error_body, retry_after.as_deref(), now_ms());
                // Capacity is per endpoint too: another endpoint may have room for the model.
                let endpoint_problem = crate::upstream::is_endpoint_problem(status)
                    || refusal.reason == Reason::ModelCapacityExhausted;
                if !endpoint_problem {
                    return Sent::Refused(refusal, error_body);
                }
                last = Sent::Refused(refusal, error_body);
            }
            Err(e) if e.is_local_resource() => return Sent::LocalResource(e.to_string()),
            Err(e) if e.egress_down().is_some() => return Sent::EgressDown(e.to_string()),
            Err(e) => last = Sent::Unreachable(e.to_string()),
        }
    }
    last
}

/// The headers a real Antigravity client sends with content calls (PROTOCOL.md §1).
pub fn upstream_headers(token: &str, user_agent: &str, upstream_model: &str) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        ("Authorization", format!("Bearer {token}")),
        ("Content-Type", "application/json".to_string()),
        ("Accept", "text/event-stream".to_string()),
        ("User-Agent", user_agent.to_string()),
    ];
    if upstream_model.starts_with("claude") {
        headers.push(("anthropic-beta", "interleaved-thinking-2025-05-14".to_string()));
    }
    headers
}

fn outcome_label(status: u16) -> &'static str {
    match status {
        401 => "unauthenticated",
        403 => "forbidden",
        404 => "not_found",
        429 => "rate_limited",
        400..=499 => "client_error",
        _ => "server_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claude_targets_get_the_beta_header() {
        let h = upstream_headers("t", "ua", "claude-sonnet-4-6");
        assert!(h.iter().any(|(n, _)| *n == "anthropic-beta"));
        assert!(!upstream_headers("t", "ua", "gemini-3-flash").iter().any(|(n, _)| *n == "anthropic-beta"));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_millis(1500)), 2);
        assert_eq!(ceil_secs(Duration::from_secs(3)), 3);
        assert_eq!(ceil_secs(Duration::ZERO), 1);
    }
}
