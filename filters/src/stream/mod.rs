//! What every client protocol's stream machine shares: the upstream `v1internal` stream parsed into chunks,
//! and the interfaces the gateway drives the machines through, streaming or folded into one response.
//!
//! Each upstream SSE `data` payload is parsed once into a protocol-neutral [`Chunk`] ([`chunk`]); each client
//! protocol then has a small machine (`protocol/<name>/stream.rs`) that turns chunks into its own frames,
//! capturing thoughtSignatures and usage on the way. Every machine implements [`Translator`] (streaming) or
//! [`Fold`] (one body), so the gateway drives all protocols through one interface and the protocol's own
//! bytes, keep-alives included, stay in this crate.

use std::borrow::Cow;

use crate::signature::{
    signature_family, CapturedSignature, ModelFamily, ThinkingBlock, MAX_THINKING_BLOCK_BYTES,
};

pub mod chunk;
mod cursor;
pub(crate) mod json;
mod scan;
mod text;
mod usage;

pub use chunk::{Chunk, ChunkParser, FinishReason, Part, Text, Usage};

/// A client protocol's streaming machine: upstream `v1internal` SSE events in, the client's own frames out.
/// The gateway drives every protocol through this one interface (as `Box<dyn Translator>`).
pub trait Translator: Send {
    /// One upstream SSE `data` payload in (scratch afterwards); client output appended to `out`.
    fn on_event(&mut self, data: &mut [u8], out: &mut Vec<u8>) -> Result<(), StreamError>;
    /// The upstream ended; write the closing events.
    fn finish(&mut self, out: &mut Vec<u8>);
    /// The upstream failed (an error event, a broken connection) after output went out: write what makes the
    /// client see an error rather than a finished answer. Protocols without an in-stream error shape close
    /// as [`finish`](Self::finish) does.
    fn fail(&mut self, _error: &crate::error::ClientError, out: &mut Vec<u8>) {
        self.finish(out);
    }
    /// Upstream has been silent for a while; write whatever keeps the client's connection alive.
    fn keepalive(&mut self, _out: &mut Vec<u8>) {}
    /// Signatures captured since the last call, for the store.
    fn take_signatures(&mut self) -> Vec<CapturedSignature>;
    /// Whether the upstream sent a finish reason (a stream without one was cut).
    fn finished_by_upstream(&self) -> bool;
    /// Whether any client output came of the upstream events so far; until then the answer may be retried.
    fn emitted_anything(&self) -> bool;
    /// The last usage the upstream reported (for metrics and the request log).
    fn usage(&self) -> Option<Usage>;
    fn content_type(&self) -> &'static str {
        "text/event-stream"
    }
    /// Whether output is written as it comes (a stream) or once at the end (a fold).
    fn streams(&self) -> bool {
        true
    }
}

/// A client protocol's non-streaming answer: the same upstream events folded into one body.
pub trait Fold: Send {
    /// One upstream SSE `data` payload in (scratch afterwards).
    fn on_event(&mut self, data: &mut [u8]) -> Result<(), StreamError>;
    /// Signatures captured since the last call, for the store.
    fn take_signatures(&mut self) -> Vec<CapturedSignature>;
    /// Whether the upstream sent a finish reason (a stream without one was cut).
    fn finished_by_upstream(&self) -> bool;
    /// Whether any content was collected.
    fn emitted_anything(&self) -> bool;
    /// The last usage the upstream reported.
    fn usage(&self) -> Option<Usage>;
    /// The whole response body. Take the signatures first.
    fn finish(self) -> Vec<u8>;
}

/// A [`Fold`] driven as a [`Translator`] that writes nothing until the end, so streamed and non-streamed
/// answers share one pump.
pub struct Folded<F: Fold>(Option<F>);

impl<F: Fold> Folded<F> {
    pub fn new(fold: F) -> Self {
        Folded(Some(fold))
    }

    /// The fold, until it is finished: for machines that answer several upstream calls in one body.
    pub fn get_mut(&mut self) -> Option<&mut F> {
        self.0.as_mut()
    }
}

impl<F: Fold> Translator for Folded<F> {
    fn on_event(&mut self, data: &mut [u8], _out: &mut Vec<u8>) -> Result<(), StreamError> {
        match &mut self.0 {
            Some(fold) => fold.on_event(data),
            None => Ok(()),
        }
    }
    fn finish(&mut self, out: &mut Vec<u8>) {
        if let Some(fold) = self.0.take() {
            out.extend_from_slice(&fold.finish());
        }
    }
    fn take_signatures(&mut self) -> Vec<CapturedSignature> {
        self.0.as_mut().map(|f| f.take_signatures()).unwrap_or_default()
    }
    fn finished_by_upstream(&self) -> bool {
        self.0.as_ref().is_none_or(|f| f.finished_by_upstream())
    }
    fn emitted_anything(&self) -> bool {
        self.0.as_ref().is_none_or(|f| f.emitted_anything())
    }
    fn usage(&self) -> Option<Usage> {
        self.0.as_ref().and_then(|f| f.usage())
    }
    fn content_type(&self) -> &'static str {
        "application/json"
    }
    fn streams(&self) -> bool {
        false
    }
}

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
pub(crate) fn is_empty_payload(data: &[u8]) -> bool {
    let payload = data.trim_ascii();
    payload.is_empty() || payload == b"[DONE]"
}

/// The client-visible id of the `index`-th tool call of a response: the upstream's own id when it sent one,
/// else the per-request prefix plus the index, so ids stay unique across a conversation and can key captured
/// signatures.
pub(crate) fn client_tool_call_id<'a>(
    upstream_id: Option<&'a str>,
    prefix: &str,
    index: u32,
) -> Cow<'a, str> {
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
pub(crate) struct ToolCallSignatures {
    /// The latest signature seen on a text or thought part.
    turn_signature: Option<String>,
    /// The first tool call's id while it has no signature of its own; a later turn signature belongs to it.
    first_call_awaiting_signature: Option<String>,
    pub(crate) captured: Vec<CapturedSignature>,
    /// Claude's thinking block, for machines whose clients cannot carry it ([`Self::with_thinking_blocks`]).
    block: Option<ThinkingBlockCapture>,
}

/// The pieces of a Claude turn's signed thinking block: its thought text, the Claude signature (wherever the
/// upstream put it) and the first tool call it is stored under once all are known.
#[derive(Debug, Default)]
struct ThinkingBlockCapture {
    text: String,
    too_long: bool,
    signature: Option<String>,
    first_call: Option<String>,
    stored: bool,
}

impl ToolCallSignatures {
    /// Also captures Claude's whole thinking block: for machines whose clients cannot carry thinking blocks
    /// back (OpenAI chat). With a Claude signature and a tool call it becomes a [`ThinkingBlock`] keyed by the
    /// turn's first call.
    pub(crate) fn with_thinking_blocks() -> Self {
        ToolCallSignatures { block: Some(ThinkingBlockCapture::default()), ..Self::default() }
    }

    /// A thought part's text, for the thinking block.
    pub(crate) fn on_thought_text(&mut self, text: &str) {
        let Some(block) = &mut self.block else {
            return;
        };
        if block.stored || block.too_long {
            return;
        }
        if block.text.len() + text.len() > MAX_THINKING_BLOCK_BYTES {
            block.too_long = true;
            block.text = String::new();
        } else {
            block.text.push_str(text);
        }
    }

    fn on_block_signature(&mut self, signature: &str) {
        if let Some(block) = &mut self.block {
            if signature_family(signature) == Some(ModelFamily::Claude) {
                block.signature = Some(signature.to_owned());
                self.store_block();
            }
        }
    }

    fn store_block(&mut self) {
        let Some(block) = &mut self.block else {
            return;
        };
        if block.stored || block.too_long {
            return;
        }
        if let (Some(id), Some(signature)) = (&block.first_call, &block.signature) {
            let text = std::mem::take(&mut block.text);
            let captured = ThinkingBlock { text, signature: signature.clone() };
            self.captured.push(CapturedSignature::thinking_block(id, &captured));
            block.stored = true;
        }
    }

    /// A tool call was emitted as the `index`-th of the turn under client id `id`.
    pub(crate) fn on_tool_call(&mut self, index: u32, id: &str, signature: Option<&str>) {
        if let (0, Some(block)) = (index, &mut self.block) {
            block.first_call = Some(id.to_owned());
        }
        match signature {
            Some(signature) => self.on_block_signature(signature),
            None => self.store_block(),
        }
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
    pub(crate) fn on_turn_signature(&mut self, signature: &str) {
        self.on_block_signature(signature);
        self.turn_signature = Some(signature.to_owned());
        if let Some(id) = self.first_call_awaiting_signature.take() {
            self.captured.push(CapturedSignature::tool_call(&id, signature));
        }
    }

    pub(crate) fn take(&mut self) -> Vec<CapturedSignature> {
        std::mem::take(&mut self.captured)
    }
}
