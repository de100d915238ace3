//! Anthropic's error body, `{"type":"error","error":{type,message}}`, in the type names its SDK and Claude
//! Code know.

use serde_json::{json, Value};

use crate::error::{ClientError, ErrorKind};

/// The body of `error` as an Anthropic client expects it.
pub(crate) fn error_body(error: &ClientError) -> Value {
    json!({
        "type": "error",
        "error": { "type": error_type(error.kind), "message": error.message },
    })
}

/// Anthropic's `error.type` (the values its SDK and Claude Code know).
fn error_type(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidRequest => "invalid_request_error",
        ErrorKind::Authentication => "authentication_error",
        ErrorKind::Permission => "permission_error",
        ErrorKind::NotFound => "not_found_error",
        ErrorKind::PayloadTooLarge => "request_too_large",
        ErrorKind::RateLimit => "rate_limit_error",
        ErrorKind::Overloaded => "overloaded_error",
        ErrorKind::Timeout => "timeout_error",
        ErrorKind::Api => "api_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anthropic_shape_uses_its_type_names() {
        let cases = [
            (ErrorKind::InvalidRequest, "invalid_request_error"),
            (ErrorKind::Authentication, "authentication_error"),
            (ErrorKind::Permission, "permission_error"),
            (ErrorKind::NotFound, "not_found_error"),
            (ErrorKind::PayloadTooLarge, "request_too_large"),
            (ErrorKind::RateLimit, "rate_limit_error"),
            (ErrorKind::Overloaded, "overloaded_error"),
            (ErrorKind::Api, "api_error"),
        ];
        for (kind, ty) in cases {
            let v = error_body(&ClientError::new(400, kind, "m"));
            assert_eq!(v, json!({"type": "error", "error": {"type": ty, "message": "m"}}), "{kind:?}");
        }
    }
}
