//! Client-protocol error bodies.
//!
//! Every failure, whether the client's, ours or Google's, reaches the client as one [`ClientError`] rendered
//! in the client's own protocol, with the HTTP status its SDK expects; each protocol's body shape lives in
//! its folder (`protocol/<name>/error.rs`). Upstream error bodies are never passed through raw:
//! [`ClientError::from_upstream`] keeps Google's message (which is useful), scrubbed of project ids and
//! numbers ([`crate::scrub`]), and drops the rest.

use std::borrow::Cow;

use crate::protocol::{anthropic, gemini, openai_chat};
use crate::scrub::scrub_projects;
use crate::Protocol;

/// What went wrong, in protocol-neutral terms; decides the error `type`/`status` strings per protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidRequest,
    Authentication,
    Permission,
    NotFound,
    PayloadTooLarge,
    RateLimit,
    Overloaded,
    Timeout,
    /// Our own or the upstream's fault (5xx).
    Api,
}

/// An error ready to be sent to a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientError {
    pub status: u16,
    pub kind: ErrorKind,
    pub message: String,
    /// The request field at fault, when known (OpenAI's `param`).
    pub param: Option<String>,
}

impl ClientError {
    pub fn new(status: u16, kind: ErrorKind, message: impl Into<String>) -> Self {
        ClientError { status, kind, message: message.into(), param: None }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, ErrorKind::InvalidRequest, message)
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// This error with the account's own `project` id replaced wherever Google wrote it, also where no
    /// pattern gives it away (`from_upstream` already scrubbed ids that follow `project` and long numbers).
    pub fn without_project(mut self, project: &str) -> Self {
        if let Cow::Owned(scrubbed) = scrub_projects(&self.message, &[project]) {
            self.message = scrubbed;
        }
        self
    }
}

/// Longest upstream message kept, in bytes: enough for Google's explanations, bounded for logs and clients.
const MAX_UPSTREAM_MESSAGE: usize = 1024;

impl ClientError {
    /// The JSON error body in the client's protocol; send it with `self.status` and
    /// `Content-Type: application/json`.
    pub fn render(&self, protocol: Protocol) -> Vec<u8> {
        let body = match protocol {
            Protocol::OpenAi => openai_chat::error_body(self),
            Protocol::Anthropic => anthropic::error_body(self),
            Protocol::Gemini => gemini::error_body(self),
        };
        // Serializing a `Value` built from strings and integers cannot fail.
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// Turns the final upstream failure of a request (after retries) into what the client sees.
    ///
    /// Only Google's `error.message` survives (truncated to 1 KiB, project ids and numbers replaced by
    /// `[project]`); details, metadata and non-JSON bodies are dropped, so nothing about our accounts or
    /// projects leaks. The status is re-mapped from the client's
    /// point of view: the client's own key was accepted, so an upstream 401/403 (our account's token or
    /// entitlement) becomes a 502 `api_error`, never a 401/403 that would make an SDK blame the user's key.
    ///
    /// | upstream | client |
    /// |---|---|
    /// | 400, 422, other 4xx | 400 invalid request |
    /// | 401, 403 | 502 api error ("upstream account ...") |
    /// | 404 | 404 not found |
    /// | 408, 504 | 504 timeout |
    /// | 413 | 413 payload too large |
    /// | 429 | 429 rate limit |
    /// | 503, 529 | 503 overloaded |
    /// | other 5xx, anything else | 502 api error |
    pub fn from_upstream(status: u16, body: &[u8]) -> ClientError {
        let upstream_message = upstream_message(body);
        let (client_status, kind, prefix) = match status {
            401 => (502, ErrorKind::Api, Some("Upstream account authentication failed")),
            403 => (502, ErrorKind::Api, Some("Upstream account is not permitted to serve this request")),
            404 => (404, ErrorKind::NotFound, None),
            408 | 504 => (504, ErrorKind::Timeout, None),
            413 => (413, ErrorKind::PayloadTooLarge, None),
            429 => (429, ErrorKind::RateLimit, None),
            503 | 529 => (503, ErrorKind::Overloaded, None),
            400..=499 => (400, ErrorKind::InvalidRequest, None),
            _ => (502, ErrorKind::Api, None),
        };
        let message = match (prefix, upstream_message) {
            (Some(prefix), Some(m)) => format!("{prefix}: {m}"),
            (Some(prefix), None) => format!("{prefix} (upstream HTTP {status})"),
            (None, Some(m)) => m,
            (None, None) => format!("Upstream returned HTTP {status} ({})", status_reason(status)),
        };
        ClientError::new(client_status, kind, message)
    }
}

/// The canonical reason phrase of an HTTP status, or "Unknown" for codes outside the registry.
pub fn status_reason(status: u16) -> &'static str {
    http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Unknown")
}

/// Google's `error.message`, from `{"error":{…}}` or the `[{"error":{…}}]` form some endpoints send.
fn upstream_message(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        error: Detail,
    }
    #[derive(serde::Deserialize)]
    struct Detail {
        message: Option<String>,
    }
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Body {
        // Before `One`: serde would also accept a one-element array as a struct.
        Many(Vec<Envelope>),
        One(Envelope),
    }
    let message = match serde_json::from_slice::<Body>(body).ok()? {
        Body::One(e) => e.error.message,
        Body::Many(list) => list.into_iter().next()?.error.message,
    }?;
    let message = message.trim();
    if message.is_empty() {
        return None;
    }
    // Claude via Vertex puts Anthropic's own error JSON in Google's message: keep only its inner message.
    let message = claude_inner_message(message).unwrap_or_else(|| message.to_owned());
    // Scrubbed before truncating: a cut must not leave half an id that no pattern recognises.
    let message = scrub_projects(&message, &[]);
    Some(truncate_utf8(&message, MAX_UPSTREAM_MESSAGE).to_owned())
}

/// The `error.message` of an Anthropic error body (`{"type":"error","error":{"type","message"}}`).
fn claude_inner_message(text: &str) -> Option<String> {
    if !text.starts_with('{') {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let inner = value.get("error")?.get("message")?.as_str()?.trim();
    (!inner.is_empty()).then(|| inner.to_owned())
}

/// The longest prefix of `s` that fits in `max` bytes without splitting a character.
fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn render_writes_the_protocols_own_body() {
        let e = ClientError::new(429, ErrorKind::RateLimit, "slow down").with_param("model");
        let cases = [
            (Protocol::OpenAi, openai_chat::error_body(&e)),
            (Protocol::Anthropic, anthropic::error_body(&e)),
            (Protocol::Gemini, gemini::error_body(&e)),
        ];
        for (protocol, body) in cases {
            assert_eq!(serde_json::from_slice::<Value>(&e.render(protocol)).unwrap(), body, "{protocol:?}");
        }
    }

    #[test]
    fn claude_errors_wrapped_in_google_messages_are_unwrapped() {
        let inner = r#"{"type":"error","error":{"type":"invalid_request_error","message":"messages.1.content.0: Invalid `signature` in `thinking` block"},"request_id":"req_vrtx_1"}"#;
        let body = json!({"error": {"code": 400, "message": inner, "status": "INVALID_ARGUMENT"}});
        let e = ClientError::from_upstream(400, body.to_string().as_bytes());
        assert_eq!(e.message, "messages.1.content.0: Invalid `signature` in `thinking` block");
        let plain = json!({"error": {"code": 400, "message": "{not json", "status": "INVALID_ARGUMENT"}});
        assert_eq!(ClientError::from_upstream(400, plain.to_string().as_bytes()).message, "{not json");
    }

    #[test]
    fn upstream_errors_keep_only_the_message_and_remap_status() {
        let quota = br#"{"error":{"code":429,"message":"You have exhausted your capacity on this model.","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","metadata":{"model":"m"}}]}}"#;
        let cases: [(u16, &[u8], u16, ErrorKind); 9] = [
            (429, quota, 429, ErrorKind::RateLimit),
            (400, br#"{"error":{"code":400,"message":"bad"}}"#, 400, ErrorKind::InvalidRequest),
            (401, br#"{"error":{"code":401,"message":"token expired"}}"#, 502, ErrorKind::Api),
            (403, br#"{"error":{"code":403,"message":"ToS"}}"#, 502, ErrorKind::Api),
            (404, br#"{"error":{"code":404,"message":"no model"}}"#, 404, ErrorKind::NotFound),
            (503, b"{}", 503, ErrorKind::Overloaded),
            (529, b"", 503, ErrorKind::Overloaded),
            (500, b"<html>oops</html>", 502, ErrorKind::Api),
            (504, b"", 504, ErrorKind::Timeout),
        ];
        for (up, body, status, kind) in cases {
            let e = ClientError::from_upstream(up, body);
            assert_eq!((e.status, e.kind), (status, kind), "upstream {up}");
            assert!(!e.message.contains("html") && !e.message.contains("details"), "{}", e.message);
        }
        let e = ClientError::from_upstream(429, quota);
        assert_eq!(e.message, "You have exhausted your capacity on this model.");
        let e = ClientError::from_upstream(401, br#"{"error":{"message":"token expired"}}"#);
        assert_eq!(e.message, "Upstream account authentication failed: token expired");
        let e = ClientError::from_upstream(500, b"<html>oops</html>");
        assert_eq!(e.message, "Upstream returned HTTP 500 (Internal Server Error)");
        let e = ClientError::from_upstream(400, br#"[{"error":{"code":400,"message":"array form"}}]"#);
        assert_eq!(e.message, "array form");
    }

    #[test]
    fn upstream_messages_reach_the_client_without_project_ids() {
        let body = json!({"error": {"code": 403, "message": "Permission denied on resource projects/foo-bar-123 (project number 123456789012) for acme-prod.", "status": "PERMISSION_DENIED"}});
        let e = ClientError::from_upstream(403, body.to_string().as_bytes());
        assert_eq!(
            e.message,
            "Upstream account is not permitted to serve this request: Permission denied on resource \
             projects/[project] (project number [project]) for acme-prod."
        );
        let e = e.without_project("acme-prod");
        assert!(e.message.ends_with("for [project]."), "{}", e.message);
        let streamed = json!({"error": {"message": "quota of project 'acme-prod' exhausted"}});
        let e = ClientError::from_upstream(429, streamed.to_string().as_bytes());
        assert_eq!(e.message, "quota of project '[project]' exhausted");
    }

    #[test]
    fn long_upstream_messages_are_truncated_on_a_char_boundary() {
        let long = "é".repeat(2000);
        let body = serde_json::to_vec(&json!({"error": {"message": long}})).unwrap();
        let e = ClientError::from_upstream(400, &body);
        assert!(e.message.len() <= MAX_UPSTREAM_MESSAGE && e.message.len() >= MAX_UPSTREAM_MESSAGE - 1);
        assert!(e.message.chars().all(|c| c == 'é'));
    }
}
