//! Claude's thinking across turns for OpenAI chat clients, which cannot carry it.
//!
//! With thinking on, Claude (through Google) wants every assistant tool turn to open with the signed thought
//! it issued, the signature on that thought and never on a call (PROTOCOL.md §2 "Claude signature
//! placement", §9 rule 3). An OpenAI chat client sends back only `tool_calls`, so the stream machine stores
//! the turn's whole [`ThinkingBlock`] under its first tool call id, and the next request rebuilds the turn as
//! `[signed thought, text, calls without signature]`.
//!
//! When the block cannot be restored (a history from elsewhere, an expired or evicted entry), nothing Claude
//! would accept can stand in for it: a foreign signature or a sentinel is its 400, and so is a tool turn
//! without a thought. Turning thinking off for the request is not an option for `-thinking` models, and it
//! would make every later turn unrestorable in turn (a thinking-less answer has no block to store). So that
//! one turn goes up as text instead: the call and its result are described in words, a text-only assistant
//! turn needs no thinking, and the rest of the conversation keeps its thinking.

use std::borrow::Cow;

use super::request::{Arguments, ToolCall};
use crate::inner::request::{GenerationConfig, Part};
use crate::signature::{normalize_signature, signature_fits, ModelFamily, SignatureLookup};

/// Whether a Claude request thinks: a `-thinking` model always does; another when its thinking config
/// turns it on. Mirrors what the upstream decides, so history is rebuilt for the same case it checks.
pub(super) fn claude_thinks(config: &GenerationConfig, upstream_model: &str) -> bool {
    upstream_model.contains("thinking")
        || config.thinking_config.as_ref().is_some_and(|t| {
            t.include_thoughts || t.thinking_budget.is_some_and(|b| b != 0) || t.thinking_level.is_some()
        })
}

/// The signed thought part that opens a replayed Claude tool turn: the block captured under any of the
/// turn's call ids, if it is still cached and Claude-issued.
pub(super) fn restored_thought(
    calls: &[ToolCall<'_>],
    signatures: &dyn SignatureLookup,
) -> Option<Part<'static>> {
    let block = calls.iter().find_map(|call| signatures.thinking_block_for_tool_call(call.id))?;
    if !signature_fits(signatures, &block.signature, ModelFamily::Claude) {
        return None;
    }
    let signature = normalize_signature(&block.signature).into_owned();
    Some(Part::Text { text: Cow::Owned(block.text), thought: true, thought_signature: Some(signature) })
}

/// An earlier tool call, told as text (the turn's thinking block is lost).
pub(super) fn call_as_text(id: &str, name: &str, arguments: &Arguments<'_>) -> Part<'static> {
    let arguments: Cow<'_, str> = match arguments {
        Arguments::Text(text) if !text.trim().is_empty() => Cow::Borrowed(text),
        Arguments::Object(object) => Cow::Owned(object.to_string()),
        _ => Cow::Borrowed("{}"),
    };
    text(format!("[Called tool `{name}` (call {id}) with arguments: {arguments}]"))
}

/// The result of a tool call told as text by [`call_as_text`].
pub(super) fn result_as_text(id: &str, name: &str, result: &str) -> Part<'static> {
    text(format!("[Result of tool `{name}` (call {id}):]\n{result}"))
}

fn text(text: String) -> Part<'static> {
    Part::Text { text: Cow::Owned(text), thought: false, thought_signature: None }
}
