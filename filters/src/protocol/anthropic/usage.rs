//! The Anthropic `usage` object from Google's `usageMetadata`, shared by `message_start`, `message_delta` and
//! the folded `message`.

use crate::stream::chunk::Usage;
use crate::stream::json::write_u64;

/// Appends `"input_tokens":…,"output_tokens":…,"cache_creation_input_tokens":0,"cache_read_input_tokens":…`.
/// Google counts cached tokens inside the prompt and thoughts apart from candidates; Anthropic counts cache
/// reads apart from input and thinking inside output.
pub(super) fn write_usage_fields(
    out: &mut Vec<u8>,
    usage: Option<Usage>,
    input_tokens_hint: u64,
    output: bool,
) {
    let (input, cached, output_tokens) = match usage {
        Some(u) => (u.prompt.saturating_sub(u.cached), u.cached, u.candidates + u.thoughts),
        None => (input_tokens_hint, 0, 0),
    };
    out.extend_from_slice(b"\"input_tokens\":");
    write_u64(out, input);
    out.extend_from_slice(b",\"output_tokens\":");
    write_u64(out, if output { output_tokens } else { 0 });
    out.extend_from_slice(b",\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":");
    write_u64(out, cached);
}
