//! Google's error body, `{"error":{code,message,status}}`, with the canonical `google.rpc.Code` status names.

use serde_json::{json, Value};

use crate::error::{ClientError, ErrorKind};

/// The body of `error` as a Gemini client expects it.
pub(crate) fn error_body(error: &ClientError) -> Value {
    json!({
        "error": {
            "code": error.status,
            "message": error.message,
            "status": error_status(error.kind),
        }
    })
}

/// Google's canonical `error.status` (google.rpc.Code name).
fn error_status(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidRequest | ErrorKind::PayloadTooLarge => "INVALID_ARGUMENT",
        ErrorKind::Authentication => "UNAUTHENTICATED",
        ErrorKind::Permission => "PERMISSION_DENIED",
        ErrorKind::NotFound => "NOT_FOUND",
        ErrorKind::RateLimit => "RESOURCE_EXHAUSTED",
        ErrorKind::Overloaded => "UNAVAILABLE",
        ErrorKind::Timeout => "DEADLINE_EXCEEDED",
        ErrorKind::Api => "INTERNAL",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemini_shape_has_numeric_code_and_status() {
        let cases = [
            (400, ErrorKind::InvalidRequest, "INVALID_ARGUMENT"),
            (401, ErrorKind::Authentication, "UNAUTHENTICATED"),
            (403, ErrorKind::Permission, "PERMISSION_DENIED"),
            (404, ErrorKind::NotFound, "NOT_FOUND"),
            (429, ErrorKind::RateLimit, "RESOURCE_EXHAUSTED"),
            (503, ErrorKind::Overloaded, "UNAVAILABLE"),
            (504, ErrorKind::Timeout, "DEADLINE_EXCEEDED"),
            (500, ErrorKind::Api, "INTERNAL"),
        ];
        for (status, kind, name) in cases {
            let v = error_body(&ClientError::new(status, kind, "m"));
            assert_eq!(v, json!({"error": {"code": status, "message": "m", "status": name}}));
        }
    }
}
