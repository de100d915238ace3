//! The client protocols Levitate speaks, one folder each.
//!
//! A folder holds everything that is one protocol's own: parsing its request and rewriting it into the
//! shared inner request ([`crate::inner`]), its stream machine and fold over the upstream's events
//! ([`crate::stream`]), and its error body. Adding a protocol means one new folder here, one line in
//! [`crate::route`] and one dispatch arm in the gateway.

pub mod anthropic;
pub mod gemini;
pub mod openai_chat;
pub mod openai_completions;
pub mod openai_images;
pub mod openai_responses;
