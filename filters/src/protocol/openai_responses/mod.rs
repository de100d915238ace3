//! OpenAI Responses API (`POST /v1/responses`; Codex CLI's wire API): the request (`request.rs`), its rewrite
//! into the inner request (`transform.rs`, tools in `tools.rs`), the Responses event stream and folded
//! `response` object answered from the upstream's events (`stream.rs`; a web search's results in
//! `search.rs`), and the sealed reasoning state that lets a stateless gateway restore Google's
//! thoughtSignatures on the next turn (`seal.rs`). Errors use OpenAI's shape ([`crate::Protocol::OpenAi`]).

mod items;
mod request;
pub mod seal;
mod search;
mod stream;
mod tools;
mod transform;

pub use request::{parse_responses_request, ResponsesRequest};
pub use search::WebSearchOptions;
pub use stream::{ResponsesFold, ResponsesStream, ResponsesStreamOptions, Sealer};
pub use tools::{tool_routes, ToolRoute};
pub use transform::{build_inner_request, build_inner_request_cached};

#[cfg(test)]
mod tests;
