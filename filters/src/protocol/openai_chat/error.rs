//! OpenAI's error body, `{"error":{message,type,param,code}}`, in the names OpenAI's SDKs know.

use serde_json::{json, Value};

use crate::error::{ClientError, ErrorKind};

/// The body of `error` as an OpenAI client expects it.
pub(crate) fn error_body(error: &ClientError) -> Value {
    json!({
        "error": {
            "message": error.message,
            "type": error_type(error.kind),
            "param": error.param,
            "code": error_code(error.kind),
        }
    })
}

/// OpenAI's `error.type`. SDKs classify by HTTP status; the body type is informational, so these follow
/// the values OpenAI itself and common OpenAI-compatible servers send.
fn error_type(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidRequest | ErrorKind::PayloadTooLarge => "invalid_request_error",
        ErrorKind::Authentication => "authentication_error",
        ErrorKind::Permission => "permission_error",
        ErrorKind::NotFound => "not_found_error",
        ErrorKind::RateLimit => "rate_limit_error",
        ErrorKind::Overloaded | ErrorKind::Timeout | ErrorKind::Api => "server_error",
    }
}

/// OpenAI's machine-readable `error.code`, where OpenAI has a well-known one.
fn error_code(kind: ErrorKind) -> Option<&'static str> {
    match kind {
        ErrorKind::InvalidRequest | ErrorKind::Api => None,
        ErrorKind::Authentication => Some("invalid_api_key"),
        ErrorKind::Permission => Some("permission_denied"),
        ErrorKind::NotFound => Some("not_found"),
        ErrorKind::PayloadTooLarge => Some("request_too_large"),
        ErrorKind::RateLimit => Some("rate_limit_exceeded"),
        ErrorKind::Overloaded => Some("overloaded"),
        ErrorKind::Timeout => Some("timeout"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_shape_carries_type_param_and_code() {
        let e = ClientError::invalid("temperature must be a number").with_param("temperature");
        assert_eq!(
            error_body(&e),
            json!({"error": {"message": "temperature must be a number", "type": "invalid_request_error",
                              "param": "temperature", "code": null}})
        );
        let e = ClientError::new(429, ErrorKind::RateLimit, "slow down");
        let v = error_body(&e);
        assert_eq!(v["error"]["code"], "rate_limit_exceeded");
        assert_eq!(v["error"]["param"], Value::Null);
        let v = error_body(&ClientError::new(502, ErrorKind::Api, "x"));
        assert_eq!(v["error"]["type"], "server_error");
    }
}
