//! OpenAI Chat Completions (`POST /v1/chat/completions`): the request (`request.rs`), its rewrite into the
//! inner request (`transform.rs`, with its tools in `tools.rs` and Claude's thinking across turns in
//! `thinking.rs`), the `chat.completion.chunk` stream and `chat.completion` body answered from the
//! upstream's events (`stream.rs`, with a web search's citations from `annotations.rs`), and the error body
//! (`error.rs`).

mod annotations;
mod error;
mod request;
mod stream;
mod thinking;
mod tools;
mod transform;

pub(crate) use error::error_body;
pub use request::{parse_chat_request, ChatRequest};
pub use stream::{OpenAiFold, OpenAiStream, OpenAiStreamOptions};
pub(crate) use transform::effort_budget;
pub use transform::{build_inner_request, build_inner_request_cached};
