//! OpenAI Chat Completions (`POST /v1/chat/completions`): the request, its rewrite into the inner request,
//! and the `chat.completion.chunk` stream and `chat.completion` body answered from the upstream's events.

mod request;
mod stream;
mod tools;
mod transform;

pub use request::{parse_chat_request, ChatRequest};
pub use stream::{OpenAiFold, OpenAiStream, OpenAiStreamOptions};
pub use transform::{build_inner_request, build_inner_request_cached};
