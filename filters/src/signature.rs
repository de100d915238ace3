//! thoughtSignature bookkeeping shared by the transforms (inject) and the stream machines (capture).
//!
//! Google's Gemini 3 models reject a history `functionCall` that lacks the signature they issued with it, so
//! every signature seen on the way down is captured and looked up again on the client's next request. The
//! store itself (sled, TTL) lives in the proxy crate behind [`SignatureLookup`]; this module only defines the
//! keys and the rules.

/// Google's documented sentinel for function calls it did not issue (Gemini targets only, never Claude).
pub const SKIP_VALIDATOR_SENTINEL: &str = "skip_thought_signature_validator";

/// A signature seen in an upstream response, with the key under which the next request will look for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapturedSignature {
    /// The client-visible tool call id the signature belongs to.
    pub tool_call_id: String,
    pub signature: String,
}

/// Read access to previously captured signatures, implemented by the proxy's store.
pub trait SignatureLookup {
    fn signature_for_tool_call(&self, tool_call_id: &str) -> Option<String>;
}

/// A lookup that knows nothing: for tests and for requests without history.
pub struct NoSignatures;

impl SignatureLookup for NoSignatures {
    fn signature_for_tool_call(&self, _tool_call_id: &str) -> Option<String> {
        None
    }
}

/// Which model family an upstream model belongs to; signatures never cross families.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelFamily {
    Gemini,
    Claude,
    Other,
}

impl ModelFamily {
    pub fn of(upstream_model: &str) -> Self {
        if upstream_model.starts_with("claude") {
            ModelFamily::Claude
        } else if upstream_model.starts_with("gemini") {
            ModelFamily::Gemini
        } else {
            ModelFamily::Other
        }
    }
}
