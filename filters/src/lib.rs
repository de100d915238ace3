//! Levitate's filters: everything that parses or rewrites bytes, with no I/O.
//!
//! The proxy crate owns sockets, accounts and storage; this crate owns the meaning of the bytes that flow
//! through them. Every item here is a plain function or a small state machine, so it can be unit-tested,
//! fuzzed and benchmarked without a runtime. `proxy::gateway` decides the order in which these run.
//!
//! Each client protocol is one folder under [`protocol`]. What the protocols share sits beside it: the
//! upstream request they are rewritten into ([`inner`]), the bounds on what a body may hold ([`limits`]),
//! the stream machines' interfaces and upstream chunk parser ([`stream`]), SSE framing ([`sse`]), tool schema
//! cleaning ([`schema`]), thoughtSignature rules ([`signature`]), web-search grounding ([`grounding`]),
//! client error bodies ([`error`]), and the steps before a body is read ([`route`], [`auth`], [`alias`]) or
//! after an upstream failure ([`retry_hint`]).

pub mod alias;
pub mod auth;
pub mod error;
pub mod grounding;
pub mod inner;
pub(crate) mod json_tokens;
pub mod limits;
pub mod protocol;
pub mod retry_hint;
pub mod route;
pub mod schema;
pub mod scrub;
pub mod signature;
pub mod sse;
pub mod stream;

/// The wire protocol a client speaks; decides request parsing, stream shape and error bodies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    OpenAi,
    Anthropic,
    Gemini,
}

impl Protocol {
    /// A short, stable label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::OpenAi => "openai",
            Protocol::Anthropic => "anthropic",
            Protocol::Gemini => "gemini",
        }
    }
}
