//! The public Gemini API (`generativelanguage.googleapis.com`), which a gateway may fall back to when its
//! accounts cannot serve: `POST /v1beta/models/{model}:generateContent` and `:streamGenerateContent?alt=sse`
//! with an API key (`x-goog-api-key` or `?key=`). The body is the bare request (what `v1internal` carries in
//! its envelope's `request`) and the answer is the bare response. Strict like Google: a missing or wrong key
//! is refused, and envelope fields or the `v1internal`-only `sessionId` are "Unknown name" errors.
//! Requests are counted under the account `public-api` in `/_sim/stats`, and fault rules may target it.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::accounts::Account;
use crate::config::AccountConfig;
use crate::error::ApiError;

/// The email and project the public API's requests are counted and matched under.
pub const PUBLIC_ACCOUNT: &str = "public-api";

/// Fields of the `v1internal` envelope and inner request the public API does not know.
const UNKNOWN_FIELDS: &[&str] =
    &["project", "model", "request", "userAgent", "requestType", "requestId", "sessionId", "session_id"];

pub fn account() -> Arc<Account> {
    Arc::new(Account::new(&AccountConfig {
        email: PUBLIC_ACCOUNT.into(),
        refresh_token: "-".into(),
        project_id: Some(PUBLIC_ACCOUNT.into()),
        tier: None,
        onboarded: true,
        quota_denied: false,
        models: None,
    }))
}

/// What a public API call asks for: the model and whether it streams, from its path and query.
pub fn method(path: &str, query: &str) -> Result<(String, bool), ApiError> {
    let Some((model, method)) = path.trim_start_matches("/v1beta/models/").split_once(':') else {
        return Err(ApiError::NotFound(format!("The requested URL {path} was not found.")));
    };
    match method {
        "generateContent" => Ok((model.to_string(), false)),
        "streamGenerateContent" if query.split('&').any(|kv| kv == "alt=sse") => {
            Ok((model.to_string(), true))
        }
        "streamGenerateContent" => {
            Err(ApiError::InvalidArgument("the sim serves streams only with alt=sse".into()))
        }
        other => Err(ApiError::NotFound(format!("Method not found: {other}"))),
    }
}

/// The API key of a call (`x-goog-api-key`, else `?key=`), checked against the configured one.
pub fn check_key(given: Option<&str>, query: &str, expected: Option<&str>) -> Result<(), ApiError> {
    let from_query = query.split('&').find_map(|kv| kv.strip_prefix("key="));
    check_key_value(given.or(from_query), expected)
}

/// The body as the content path takes it: the bare request checked, then wrapped as an envelope.
pub fn envelope(model: &str, body: Value) -> Result<Value, ApiError> {
    check_body(&body)?;
    Ok(json!({"model": model, "project": PUBLIC_ACCOUNT, "request": body}))
}

fn check_key_value(given: Option<&str>, expected: Option<&str>) -> Result<(), ApiError> {
    match given {
        None | Some("") => Err(ApiError::PermissionDenied {
            message:
                "Method doesn't allow unregistered callers (callers without established identity). Please \
                      use API Key or other form of API consumer identity to call this API."
                    .into(),
            details: vec![],
        }),
        Some(k) if Some(k) == expected => Ok(()),
        Some(_) => Err(ApiError::InvalidArgument("API key not valid. Please pass a valid API key.".into())),
    }
}

fn check_body(body: &Value) -> Result<(), ApiError> {
    let Some(object) = body.as_object() else {
        return Err(ApiError::InvalidArgument("Invalid JSON payload received. Expected an object.".into()));
    };
    let mut unknown: Vec<&str> = UNKNOWN_FIELDS.iter().copied().filter(|k| object.contains_key(*k)).collect();
    unknown.sort_unstable();
    match unknown.first() {
        Some(name) => Err(ApiError::InvalidArgument(format!(
            "Invalid JSON payload received. Unknown name \"{name}\": Cannot find field."
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_required_and_checked() {
        assert_eq!(check_key(None, "", Some("k")).err().map(|e| e.code()), Some(403));
        assert_eq!(check_key(Some("x"), "", Some("k")).err().map(|e| e.code()), Some(400));
        assert_eq!(check_key(Some("x"), "", None).err().map(|e| e.code()), Some(400));
        assert!(check_key(Some("k"), "", Some("k")).is_ok());
        assert!(check_key(None, "alt=sse&key=k", Some("k")).is_ok());
        assert_eq!(
            method("/v1beta/models/m:streamGenerateContent", "alt=sse").ok(),
            Some(("m".into(), true))
        );
        assert!(method("/v1beta/models/m:streamGenerateContent", "").is_err());
    }

    #[test]
    fn envelopes_and_session_ids_are_unknown_names() {
        let e = check_body(&json!({"project": "p", "request": {}})).err().map(|e| e.to_string());
        assert!(e.is_some_and(|m| m.contains("Unknown name \"project\"")));
        assert!(check_body(&json!({"contents": [], "sessionId": "1"})).is_err());
        assert!(check_body(&json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})).is_ok());
    }
}
