//! Anthropic Messages (`POST /v1/messages`, `/v1/messages/count_tokens`): the request (`request.rs`), its
//! rewrite into the inner request (`transform.rs`), the local token count (`count_tokens.rs`), the Messages
//! event stream and body answered from the upstream's events (`stream.rs`, with web searches' blocks from
//! `web_search.rs`, generated images in `image_block.rs`, usage from `usage.rs`), and the error body
//! (`error.rs`).

mod count_tokens;
mod error;
mod fold;
mod image_block;
mod request;
mod stream;
// Gemini's tests share its signature fixtures.
pub(super) mod transform;
mod usage;
mod web_search;

pub(crate) use count_tokens::text_tokens;
pub use count_tokens::{count_tokens_response, estimate_tokens};
pub(crate) use error::error_body;
pub use fold::AnthropicFold;
pub use request::{parse_count_tokens_request, parse_messages_request, MessagesRequest};
pub use stream::{AnthropicStream, AnthropicStreamOptions};
pub use transform::{build_inner_request, build_inner_request_cached};
