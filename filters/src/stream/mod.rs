//! Upstream `v1internal` stream → client stream state machines, and the same machines folded into one
//! non-streaming response.
//!
//! Each upstream SSE `data` payload is parsed once into a protocol-neutral [`Chunk`] ([`chunk`]); each client
//! protocol then has a small machine that turns chunks into its own frames, capturing thoughtSignatures and
//! usage on the way.

pub mod chunk;
mod json;
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
