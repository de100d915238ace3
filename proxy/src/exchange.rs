//! One client request's upstream exchange: lease an account, get its token and project, send, and on a
//! refusal move to the next account, while nothing has been written to the client yet.
//!
//! The retry loop is ours, not Pingora's (see ARCHITECTURE.md): attempts are bounded by `pool.max_attempts`,
//! accounts already tried are excluded, and an upstream refusal is translated into the client's protocol
//! only when no account is left to try.

use std::time::Duration;

use bytes::Bytes;
use levitate_filters::error::{ClientError, ErrorKind};
use levitate_filters::transform::wrap_envelope;

use crate::app::App;
use crate::config::Snapshot;
use crate::pool::{Lease, SelectError, Selection};
use crate::upstream::{UpstreamRequest, UpstreamResponse};

/// Largest upstream error body read for translation; Google's are a few KiB.
const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// How long a request waits for a busy account to free a slot before answering 429.
const MAX_QUEUE_WAIT: Duration = Duration::from_secs(5);

/// What the attempts of one request did, for its log line.
#[derive(Debug, Default)]
pub struct Attempts {
    pub count: u32,
    pub last_account: Option<String>,
}

/// Leases accounts and tries them until one answers 200, while nothing has been sent to the client.
pub async fn open(
    app: &App,
    snapshot: &Snapshot,
    upstream_model: &str,
    inner_request: &[u8],
    attempts: &mut Attempts,
) -> Result<(UpstreamResponse, Lease), ClientError> {
    let mut tried: Vec<String> = Vec::new();
    let mut last_error: Option<ClientError> = None;
    let request_id = format!("agent-{}", uuid::Uuid::new_v4());
    let mut envelope = Vec::with_capacity(inner_request.len() + 256);
    for _ in 0..snapshot.pool.max_attempts {
        let selection = Selection { model: upstream_model, exclude: &tried };
        let lease = match app.pool.select_or_wait(&selection, MAX_QUEUE_WAIT).await {
            Ok(lease) => lease,
            Err(SelectError::Exhausted) => break,
            Err(SelectError::NoAccounts) => {
                return Err(ClientError::new(
                    503,
                    ErrorKind::Overloaded,
                    "no Google account is configured and enabled",
                ))
            }
            Err(SelectError::Busy) => {
                return Err(ClientError::new(
                    429,
                    ErrorKind::RateLimit,
                    "every account is busy; retry shortly",
                ))
            }
        };
        tried.push(lease.id().to_string());
        attempts.count += 1;
        attempts.last_account = Some(lease.account.email.clone());
        let account = lease.account.clone();
        let token = match app.credentials.access_token(&account, &snapshot.upstream).await {
            Ok(token) => token,
            Err(e) => {
                tracing::warn!(account = %account.email, error = %e, "account unusable: token refresh failed");
                app.metrics.upstream_attempt(&account.email, "token_error");
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
            Err(e) => {
                tracing::warn!(account = %account.email, error = %e, "account unusable: no project");
                app.metrics.upstream_attempt(&account.email, "project_error");
                last_error = Some(ClientError::new(
                    503,
                    ErrorKind::Overloaded,
                    "no account has a usable Cloud Code project",
                ));
                continue;
            }
        };
        app.pool.learn_tier(&account.id, project.tier.as_deref());
        envelope.clear();
        wrap_envelope(inner_request, &project.id, upstream_model, &request_id, &mut envelope);
        let headers = upstream_headers(&token.token, &snapshot.upstream.user_agent, upstream_model);
        let body = Bytes::copy_from_slice(&envelope);
        let mut response = match send_with_fallback(app, snapshot, &headers, body).await {
            Ok(response) => response,
            Err(message) => {
                tracing::warn!(account = %account.email, error = %message, "upstream unreachable");
                app.metrics.upstream_attempt(&account.email, "network_error");
                last_error = Some(ClientError::new(502, ErrorKind::Api, "the upstream could not be reached"));
                continue;
            }
        };
        if response.status == 200 {
            app.metrics.upstream_attempt(&account.email, "ok");
            return Ok((response, lease));
        }
        let status = response.status;
        let error_body = response.read_to_end(ERROR_BODY_LIMIT).await.unwrap_or_default();
        response.release(&app.upstream).await;
        let error = ClientError::from_upstream(status, &error_body);
        app.metrics.upstream_attempt(&account.email, outcome_label(status));
        tracing::info!(account = %account.email, status, message = %error.message, "upstream refused the attempt");
        match status {
            401 => app.credentials.invalidate_token(&account),
            403 | 408 | 429 | 500..=599 => {}
            // The request itself is at fault: another account would answer the same.
            _ => return Err(error),
        }
        last_error = Some(error);
    }
    Err(last_error.unwrap_or_else(|| {
        ClientError::new(
            503,
            ErrorKind::Overloaded,
            "every account was tried and none could serve the request",
        )
    }))
}

/// Sends to the configured endpoints in order, moving on after network errors, 404, 408 and 5xx.
async fn send_with_fallback(
    app: &App,
    snapshot: &Snapshot,
    headers: &[(&'static str, String)],
    body: Bytes,
) -> Result<UpstreamResponse, String> {
    let endpoints = &snapshot.upstream.endpoints;
    let mut last = String::from("no endpoint configured");
    for (i, url) in endpoints.iter().enumerate() {
        let is_last = i + 1 == endpoints.len();
        let request = UpstreamRequest {
            url,
            path: "/v1internal:streamGenerateContent?alt=sse",
            headers,
            body: body.clone(),
        };
        match app.upstream.send(request).await {
            Ok(response) if is_last || !matches!(response.status, 404 | 408 | 500..=599) => {
                return Ok(response)
            }
            Ok(response) => {
                last = format!("{url} answered {}", response.status);
                response.abort().await;
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
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
}
