//! Google's error shape (PROTOCOL §5). Every failure a `v1internal` method answers with is one `ApiError`,
//! rendered once, at the edge, as `{"error":{"code","message","status","details"}}` so no handler builds
//! error JSON by hand and every variant keeps the wire shape clients parse.

use serde_json::{json, Value};

/// `@type` of the ErrorInfo detail.
pub const ERROR_INFO: &str = "type.googleapis.com/google.rpc.ErrorInfo";
/// `@type` of the RetryInfo detail.
pub const RETRY_INFO: &str = "type.googleapis.com/google.rpc.RetryInfo";
/// The domain Cloud Code puts in its ErrorInfo details.
pub const DOMAIN: &str = "cloudcode-pa.googleapis.com";

/// A `v1internal` error, one variant per canonical status the sim produces.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("400 INVALID_ARGUMENT: {0}")]
    InvalidArgument(String),
    #[error("401 UNAUTHENTICATED ({reason})")]
    Unauthenticated { reason: &'static str },
    #[error("403 PERMISSION_DENIED: {message}")]
    PermissionDenied { message: String, details: Vec<Value> },
    #[error("404 NOT_FOUND: {0}")]
    NotFound(String),
    #[error("429 RESOURCE_EXHAUSTED: {message}")]
    ResourceExhausted { message: String, details: Vec<Value> },
    #[error("500 INTERNAL: {0}")]
    Internal(String),
    #[error("503 UNAVAILABLE: {message}")]
    Unavailable { message: String, details: Vec<Value> },
}

impl ApiError {
    /// The HTTP status code, which Google repeats as `error.code`.
    pub fn code(&self) -> u16 {
        match self {
            ApiError::InvalidArgument(_) => 400,
            ApiError::Unauthenticated { .. } => 401,
            ApiError::PermissionDenied { .. } => 403,
            ApiError::NotFound(_) => 404,
            ApiError::ResourceExhausted { .. } => 429,
            ApiError::Internal(_) => 500,
            ApiError::Unavailable { .. } => 503,
        }
    }

    /// The canonical status name carried in `error.status`.
    pub fn status(&self) -> &'static str {
        match self {
            ApiError::InvalidArgument(_) => "INVALID_ARGUMENT",
            ApiError::Unauthenticated { .. } => "UNAUTHENTICATED",
            ApiError::PermissionDenied { .. } => "PERMISSION_DENIED",
            ApiError::NotFound(_) => "NOT_FOUND",
            ApiError::ResourceExhausted { .. } => "RESOURCE_EXHAUSTED",
            ApiError::Internal(_) => "INTERNAL",
            ApiError::Unavailable { .. } => "UNAVAILABLE",
        }
    }

    /// The JSON body, exactly as Google frames it.
    pub fn body(&self) -> Value {
        let (message, details): (String, Vec<Value>) = match self {
            ApiError::InvalidArgument(m) | ApiError::NotFound(m) | ApiError::Internal(m) => {
                (m.clone(), Vec::new())
            }
            ApiError::Unauthenticated { reason } => (
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or \
                 other valid authentication credential. See \
                 https://developers.google.com/identity/sign-in/web/devconsole-project."
                    .to_string(),
                vec![json!({
                    "@type": ERROR_INFO,
                    "reason": reason,
                    "domain": "googleapis.com",
                    "metadata": {"service": DOMAIN, "method": "google.internal.cloud.code.v1internal.CloudCode"}
                })],
            ),
            ApiError::PermissionDenied { message, details }
            | ApiError::ResourceExhausted { message, details }
            | ApiError::Unavailable { message, details } => (message.clone(), details.clone()),
        };
        let mut error = json!({"code": self.code(), "message": message, "status": self.status()});
        if !details.is_empty() {
            error["details"] = Value::Array(details);
        }
        json!({ "error": error })
    }

    /// The body as bytes on the wire, keys in Google's order (code, message, status, details); `body()` is the
    /// same document as a value.
    pub fn to_wire(&self) -> String {
        let body = self.body();
        let e = &body["error"];
        let mut out = format!(
            "{{\"error\":{{\"code\":{},\"message\":{},\"status\":{}",
            e["code"], e["message"], e["status"]
        );
        if let Some(details) = e.get("details") {
            out.push_str(&format!(",\"details\":{details}"));
        }
        out.push_str("}}");
        out
    }

    /// An ErrorInfo detail with Cloud Code's domain.
    pub fn error_info(reason: &str, metadata: Value) -> Value {
        json!({"@type": ERROR_INFO, "reason": reason, "domain": DOMAIN, "metadata": metadata})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_google_shape() {
        let e = ApiError::InvalidArgument("bad".into());
        assert_eq!(e.body(), json!({"error":{"code":400,"message":"bad","status":"INVALID_ARGUMENT"}}));
        let e = ApiError::ResourceExhausted {
            message: "m".into(),
            details: vec![ApiError::error_info("RATE_LIMIT_EXCEEDED", json!({}))],
        };
        assert_eq!(e.body()["error"]["details"][0]["reason"], "RATE_LIMIT_EXCEEDED");
        assert_eq!(e.code(), 429);
    }

    #[test]
    fn wire_order_is_googles() {
        let e = ApiError::Unavailable { message: "m".into(), details: vec![json!({"a": 1})] };
        let wire = e.to_wire();
        assert!(wire.starts_with(
            "{\"error\":{\"code\":503,\"message\":\"m\",\"status\":\"UNAVAILABLE\",\"details\":"
        ));
        assert_eq!(serde_json::from_str::<Value>(&wire).ok(), Some(e.body()));
    }

    #[test]
    fn unauthenticated_carries_reason() {
        let b = ApiError::Unauthenticated { reason: "ACCESS_TOKEN_EXPIRED" }.body();
        assert_eq!(b["error"]["status"], "UNAUTHENTICATED");
        assert_eq!(b["error"]["details"][0]["reason"], "ACCESS_TOKEN_EXPIRED");
    }
}
