//! Legacy OpenAI Completions (`POST /v1/completions`), for the tools that still use it: the request
//! (`request.rs`), one inner request per prompt (`transform.rs`), and the `text_completion` answers streamed
//! or folded from the upstream's events (`stream.rs`). Errors use OpenAI's shape, as chat's do.

mod request;
mod stream;
mod transform;

pub use request::{parse_completion_request, CompletionRequest, MAX_CHOICES};
pub use stream::{CompletionFold, CompletionOptions, CompletionStream};
pub use transform::build_inner_request;
