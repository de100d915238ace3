//! The fallback provider (`fallback:` in levitate.yaml, off by default): when no account can serve a
//! request (every one locked, forbidden, exhausted, busy or otherwise unselectable) and the key may serve the
//! model, the request goes to the public Gemini API with an API key instead of failing.
//!
//! The transforms are the same as for the accounts minus the `v1internal` envelope: the body is the inner
//! request (what the envelope carries in `request`, less the `v1internal`-only `sessionId`), sent to
//! `/v1beta/models/{model}:streamGenerateContent?alt=sse` with `x-goog-api-key`; the answer is the bare
//! response, which the stream machines read as they read the envelope's `response`. The request is
//! labelled `fallback` wherever an account would be named (request log, metrics, usage), and holds a slot
//! of the key's own `max_concurrent`, never an account's. With `upstream.proxy` set it leaves through that
//! proxy like every account without one of its own: a box whose traffic must not show its own address keeps
//! that promise for the fallback too.

use bytes::Bytes;
use levitate_filters::error::{ClientError, ErrorKind};
use levitate_filters::inner::InnerRequest;
use serde_json::{Map, Value};

use crate::app::App;
use crate::config::Snapshot;
use crate::egress::Egress;
use crate::pool::{Lease, FALLBACK_ID};
use crate::upstream::{UpstreamRequest, UpstreamResponse};

/// Largest error body read from the public API.
const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// Fields of the inner request the public API does not know (it answers "Unknown name" for them).
const INTERNAL_ONLY: &[&str] = &["sessionId", "session_id"];

/// Whether the fallback key may serve `upstream_model` under this configuration.
pub fn serves(snapshot: &Snapshot, upstream_model: &str) -> bool {
    snapshot.fallback.as_ref().is_some_and(|f| f.public_model(upstream_model).is_some())
}

/// What the fallback did for a request, for the exchange's bookkeeping.
pub enum Outcome {
    /// Sent to the public API: its answer (200) or the refusal the client gets.
    Sent(Box<Result<(UpstreamResponse, Lease), ClientError>>),
    /// Every slot of the key is taken: nothing was sent.
    Busy(ClientError),
}

/// Sends the request to the public Gemini API, if the key may serve the model; `None` when it may not (the
/// caller answers as it would have without a fallback).
pub async fn open(
    app: &App,
    snapshot: &Snapshot,
    upstream_model: &str,
    inner: &InnerRequest,
) -> Option<Outcome> {
    let settings = snapshot.fallback.as_ref()?;
    let public_model = settings.public_model(upstream_model)?;
    let Some(lease) = app.pool.fallback_lease(settings.max_concurrent) else {
        app.metrics.pool.rejected("fallback_busy");
        return Some(Outcome::Busy(ClientError::new(
            429,
            ErrorKind::RateLimit,
            "no account can serve this request and the fallback key is at its concurrency limit; retry shortly",
        )));
    };
    let egress = snapshot.upstream.proxy.as_ref().map(|proxy| Egress { account: FALLBACK_ID, proxy });
    Some(Outcome::Sent(Box::new(
        send(app, settings, egress, upstream_model, public_model, inner, lease).await,
    )))
}

async fn send(
    app: &App,
    settings: &crate::config::fallback::FallbackSettings,
    egress: Option<Egress<'_>>,
    upstream_model: &str,
    public_model: &str,
    inner: &InnerRequest,
    lease: Lease,
) -> Result<(UpstreamResponse, Lease), ClientError> {
    let body = public_body(&inner.json)?;
    let path = format!("/v1beta/models/{public_model}:streamGenerateContent?alt=sse");
    let headers = [
        ("x-goog-api-key", settings.api_key.expose().to_string()),
        ("Content-Type", "application/json".to_string()),
        ("Accept", "text/event-stream".to_string()),
    ];
    let request = UpstreamRequest { url: &settings.base_url, path: &path, headers: &headers, body, egress };
    let outcome = match app.upstream.send(request).await {
        Ok(response) if response.status == 200 => {
            app.metrics.upstream_attempt(FALLBACK_ID, "ok");
            tracing::info!(
                model = upstream_model,
                public_model,
                "no account could serve: served by the fallback key"
            );
            return Ok((response, lease));
        }
        Ok(mut response) => {
            let status = response.status;
            let error_body = response.read_to_end(ERROR_BODY_LIMIT).await.unwrap_or_default();
            response.release(&app.upstream).await;
            app.metrics.upstream_attempt(FALLBACK_ID, if status == 429 { "rate_limited" } else { "refused" });
            tracing::warn!(status, model = upstream_model, "the fallback key's request was refused");
            ClientError::from_upstream(status, &error_body)
        }
        Err(e) => {
            app.metrics.upstream_attempt(FALLBACK_ID, "network_error");
            tracing::warn!(error = %e, "the fallback provider could not be reached");
            ClientError::new(
                502,
                ErrorKind::Api,
                "no account could serve and the fallback provider could not be reached",
            )
        }
    };
    Err(outcome)
}

/// The inner request as the public API takes it: the same JSON without the `v1internal`-only fields.
fn public_body(inner: &[u8]) -> Result<Bytes, ClientError> {
    let mut request: Map<String, Value> = serde_json::from_slice(inner).map_err(|e| {
        tracing::error!(error = %e, "an inner request is not a JSON object");
        ClientError::new(500, ErrorKind::Api, "the request could not be prepared for the fallback provider")
    })?;
    for key in INTERNAL_ONLY {
        request.remove(*key);
    }
    Ok(Bytes::from(Value::Object(request).to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_body_is_the_inner_request_without_its_session() {
        let inner = br#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}],"sessionId":"-1","generationConfig":{"temperature":1}}"#;
        let body: Value = serde_json::from_slice(&public_body(inner).unwrap()).unwrap();
        assert!(body.get("sessionId").is_none());
        assert_eq!(body["contents"][0]["parts"][0]["text"], "hi");
        assert_eq!(body["generationConfig"]["temperature"], 1);
        assert_eq!(public_body(b"[1]").err().map(|e| e.status), Some(500));
    }
}
