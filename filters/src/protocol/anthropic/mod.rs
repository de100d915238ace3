//! Anthropic Messages (`POST /v1/messages`, `/v1/messages/count_tokens`): the request, its rewrite into the
//! inner request, the local token count, and the Messages event stream and body answered from the
//! upstream's events.

mod count_tokens;
mod request;
mod stream;
// Gemini's tests share its signature fixtures.
pub(super) mod transform;

pub use count_tokens::{count_tokens_response, estimate_tokens};
pub use request::{parse_count_tokens_request, parse_messages_request, MessagesRequest};
pub use stream::{AnthropicFold, AnthropicStream, AnthropicStreamOptions};
pub use transform::{build_inner_request, build_inner_request_cached};
