//! The native Gemini API (`/v1beta/models/...`): the request passed through with only what the upstream
//! requires fixed, token counting, model listings, and the Gemini stream and body answered from the
//! upstream's events.

mod stream;
mod transform;

pub use stream::{GeminiFold, GeminiStream, GeminiStreamMode, GeminiStreamOptions};
pub use transform::{
    build_count_tokens_request, build_inner_request, gemini_model, gemini_model_list,
    parse_count_tokens_response, parse_generate_request, GenerateRequest,
};
