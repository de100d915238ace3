//! Upstream `v1internal` stream → client stream state machines, and the same machines folded into one
//! non-streaming response.
//!
//! Each upstream SSE `data` payload is parsed once into a protocol-neutral [`Chunk`] ([`chunk`]); each client
//! protocol then has a small machine that turns chunks into its own frames, capturing thoughtSignatures and
//! usage on the way.

use std::borrow::Cow;

use crate::signature::CapturedSignature;

pub mod anthropic;
pub mod chunk;
pub mod gemini;
pub(crate) mod json;
pub mod openai;

pub use chunk::{Chunk, ChunkParser, FinishReason, Part, Usage};

/// Why an upstream stream event could not be turned into client output.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The event's `data` is not JSON.
    #[error("upstream stream event is not valid JSON: {0}")]
    InvalidJson(String),
    /// The event's `data` is JSON but not an object.
    #[error("upstream stream event is not a JSON object")]
    NotAnObject,
    /// Function call arguments nest deeper than any real tool schema.
    #[error("upstream function call arguments nest too deeply")]
    TooDeep,
    /// Google reported an error inside the stream (`{"error":{code,message,status}}`). The parts are kept raw
    /// so the gateway can map them with the same rules as an HTTP error response.
    #[error("upstream error {status}: {message}")]
    Upstream {
        /// `error.code`, the HTTP status Google would have used (500 when absent or not an error status).
        status: u16,
        /// `error.status`, e.g. `RESOURCE_EXHAUSTED`.
        google_status: Option<String>,
        message: String,
    },
}

impl StreamError {
    /// The error as the client should see it, with the same status mapping as an HTTP error response.
    pub fn to_client_error(&self) -> crate::error::ClientError {
        match self {
            StreamError::Upstream { status, message, .. } => {
                let body = serde_json::json!({"error": {"message": message}});
                crate::error::ClientError::from_upstream(*status, body.to_string().as_bytes())
            }
            other => crate::error::ClientError::new(502, crate::error::ErrorKind::Api, other.to_string()),
        }
    }
}

/// Whether an event payload carries nothing to parse (blank, or an OpenAI-style `[DONE]` some relays add).
fn is_empty_payload(data: &[u8]) -> bool {
    let payload = data.trim_ascii();
    payload.is_empty() || payload == b"[DONE]"
}

/// The client-visible id of the `index`-th tool call of a response: the upstream's own id when it sent one,
/// else the per-request prefix plus the index, so ids stay unique across a conversation and can key captured
/// signatures.
fn client_tool_call_id<'a>(upstream_id: Option<&'a str>, prefix: &str, index: u32) -> Cow<'a, str> {
    match upstream_id {
        Some(id) if !id.is_empty() => Cow::Borrowed(id),
        _ => Cow::Owned(format!("{prefix}{index}")),
    }
}

/// Attributes the signatures of one upstream turn to client-visible tool call ids (PROTOCOL.md §2, §9).
///
/// A call's own signature belongs to it. Gemini 3 may instead sign the turn on a text or final empty part,
/// and Claude signs its last thought: such a turn signature, seen before or after the calls, belongs to the
/// first call of the turn (parallel siblings need none).
#[derive(Debug, Default)]
struct ToolCallSignatures {
    /// The latest signature seen on a text or thought part.
    turn_signature: Option<String>,
    /// The first tool call's id while it has no signature of its own; a later turn signature belongs to it.
    first_call_awaiting_signature: Option<String>,
    captured: Vec<CapturedSignature>,
}

impl ToolCallSignatures {
    /// A tool call was emitted as the `index`-th of the turn under client id `id`.
    fn on_tool_call(&mut self, index: u32, id: &str, signature: Option<&str>) {
        match signature {
            Some(signature) => self.captured.push(CapturedSignature::tool_call(id, signature)),
            None if index == 0 => match &self.turn_signature {
                Some(turn_signature) => self.captured.push(CapturedSignature::tool_call(id, turn_signature)),
                None => self.first_call_awaiting_signature = Some(id.to_owned()),
            },
            None => {}
        }
    }

    /// A text or thought part carried a signature.
    fn on_turn_signature(&mut self, signature: &str) {
        self.turn_signature = Some(signature.to_owned());
        if let Some(id) = self.first_call_awaiting_signature.take() {
            self.captured.push(CapturedSignature::tool_call(&id, signature));
        }
    }

    fn take(&mut self) -> Vec<CapturedSignature> {
        std::mem::take(&mut self.captured)
    }
}
