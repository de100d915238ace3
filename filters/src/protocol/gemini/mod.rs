//! The native Gemini API (`/v1beta/models/...`): the request passed through with only what the upstream
//! requires fixed, token counting and model listings (`transform.rs`), the Gemini stream and body answered
//! from the upstream's events (`stream.rs`), and the error body (`error.rs`).

mod error;
mod stream;
mod transform;

pub(crate) use error::error_body;
pub use stream::{GeminiFold, GeminiStream, GeminiStreamMode, GeminiStreamOptions};
pub use transform::{
    build_count_tokens_request, build_inner_request, gemini_model, gemini_model_list,
    parse_count_tokens_response, parse_generate_request, GenerateRequest,
};
