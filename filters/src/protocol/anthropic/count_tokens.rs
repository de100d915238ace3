//! Local token estimate for `POST /v1/messages/count_tokens`.
//!
//! Claude Code calls `count_tokens` often (to decide when to compact a conversation), and each upstream
//! `countTokens` call would spend an account's request. The upstream's count is also only Gemini's
//! tokenizer, not Claude's, so it is no more exact than a good local estimate. [`estimate_tokens`] answers
//! in microseconds without I/O.
//!
//! Method (documented so its error can be measured against an upstream count):
//! - Text: ASCII bytes count 1/4 token each (≈ 4 characters per token for English and code); CJK, kana and
//!   Hangul characters count 1 token each (tokenizers rarely merge them); other non-ASCII characters
//!   (accented Latin, Cyrillic, emoji…) count 1/2 token each. The sum is rounded up per text.
//! - JSON (tool schemas and `tool_use` inputs): the compact JSON text is counted as text, plus 1 token per
//!   8 bytes of it for the punctuation tokenizers split apart.
//! - Images: a flat 1,600 tokens (Anthropic's cost of a ~1.15-megapixel image, the size it resizes to).
//!   PDF documents: 1 token per 3 bytes of decoded data, at least 1,600 (text plus a page image per page).
//! - Structure: 3 tokens per message, 10 per tool definition, 4 per content block that is not plain text.

use super::request::{Block, MessagesRequest, Source};
use crate::inner::body::StrOr;

/// Tokens charged per image (Anthropic: width × height / 750 for the ≤ 1.15 MP images it resizes to).
const IMAGE_TOKENS: u64 = 1_600;
const PER_MESSAGE: u64 = 3;
const PER_TOOL: u64 = 10;
const PER_BLOCK: u64 = 4;

/// An estimate of the input tokens of `req`: system prompt, messages and tool definitions.
pub fn estimate_tokens(req: &MessagesRequest) -> u64 {
    let mut total = 0;
    if let Some(system) = &req.system {
        total += match system {
            StrOr::Str(text) => text_tokens(text),
            StrOr::Other(blocks) => blocks.iter().map(|b| text_tokens(&b.text)).sum(),
        };
    }
    for message in req.messages() {
        total += PER_MESSAGE;
        total += match &message.content {
            StrOr::Str(text) => text_tokens(text),
            StrOr::Other(blocks) => blocks.iter().map(block_tokens).sum(),
        };
    }
    for tool in req.tools.as_deref().unwrap_or_default() {
        total += PER_TOOL + text_tokens(&tool.name);
        total += tool.description.as_deref().map_or(0, text_tokens);
        total += tool.input_schema.as_ref().map_or(0, json_tokens);
    }
    total.max(1)
}

/// The `count_tokens` response body, `{"input_tokens":n}`.
pub fn count_tokens_response(input_tokens: u64) -> Vec<u8> {
    format!("{{\"input_tokens\":{input_tokens}}}").into_bytes()
}

fn block_tokens(block: &Block) -> u64 {
    match block {
        Block::Text { text } => text_tokens(text),
        Block::Thinking { thinking, .. } => PER_BLOCK + text_tokens(thinking),
        Block::RedactedThinking { .. } | Block::Other => PER_BLOCK,
        Block::Image { .. } => PER_BLOCK + IMAGE_TOKENS,
        Block::Document { source } => PER_BLOCK + document_tokens(source),
        Block::ToolUse { name, input, .. } => PER_BLOCK + text_tokens(name) + json_tokens(input),
        Block::ToolResult { content, .. } => {
            PER_BLOCK
                + match content {
                    None => 0,
                    Some(StrOr::Str(text)) => text_tokens(text),
                    Some(StrOr::Other(blocks)) => blocks.iter().map(block_tokens).sum(),
                }
        }
    }
}

fn document_tokens(source: &Source) -> u64 {
    let data = source.data.as_deref().unwrap_or_default();
    match source.kind.as_str() {
        "text" => text_tokens(data),
        // base64 carries 3 bytes per 4 characters.
        "base64" => ((data.len() as u64 * 3 / 4) / 3).max(IMAGE_TOKENS),
        _ => IMAGE_TOKENS,
    }
}

/// A value's tokens as its JSON text's, plus one per 8 bytes of it. The text is counted as serde_json writes
/// it, never held: schemas and tool inputs are counted on every Anthropic request.
fn json_tokens(value: &serde_json::Value) -> u64 {
    let mut counter = QuarterCounter::default();
    // Writing into the counter cannot fail.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.quarters.div_ceil(4) + counter.bytes / 8
}

/// Quarter tokens and bytes of text written to it (serde_json writes whole characters at a time).
#[derive(Default)]
struct QuarterCounter {
    quarters: u64,
    bytes: u64,
}

impl std::io::Write for QuarterCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.quarters += std::str::from_utf8(buf).map_or(buf.len() as u64, quarter_tokens);
        self.bytes += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Tokens of one text: ASCII bytes / 4, CJK characters 1 each, other non-ASCII characters 1/2 each.
pub fn text_tokens(text: &str) -> u64 {
    quarter_tokens(text).div_ceil(4)
}

/// In quarter tokens: 1 per ASCII byte, 4 per CJK character, 2 per other character.
fn quarter_tokens(text: &str) -> u64 {
    let ascii = text.bytes().filter(u8::is_ascii).count() as u64;
    if ascii == text.len() as u64 {
        return ascii;
    }
    let (mut cjk, mut other) = (0u64, 0u64);
    for c in text.chars().filter(|c| !c.is_ascii()) {
        if is_cjk(c) {
            cjk += 1;
        } else {
            other += 1;
        }
    }
    ascii + 4 * cjk + 2 * other
}

fn is_cjk(c: char) -> bool {
    matches!(u32::from(c),
        0x3040..=0x30FF     // hiragana, katakana
        | 0x3400..=0x4DBF   // CJK extension A
        | 0x4E00..=0x9FFF   // CJK unified ideographs
        | 0xAC00..=0xD7AF   // Hangul syllables
        | 0xF900..=0xFAFF   // CJK compatibility ideographs
        | 0x20000..=0x2FFFF // CJK extensions B and later
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_counted_as_its_text_would_be() {
        for value in [
            json!({"type": "object", "properties": {"path": {"type": "string", "description": "\"quoted\"\n\ttab"}}}),
            json!({"q": "日本語のテキスト", "e": "café naïve 🎉", "n": [1, 2.5, null, true]}),
            json!("plain"),
        ] {
            let text = value.to_string();
            assert_eq!(json_tokens(&value), text_tokens(&text) + text.len() as u64 / 8, "{text}");
        }
    }
    use crate::protocol::anthropic::parse_messages_request;
    use serde_json::json;

    fn estimate(body: serde_json::Value) -> u64 {
        estimate_tokens(&parse_messages_request(&mut serde_json::to_vec(&body).unwrap()).unwrap())
    }

    #[test]
    fn text_counts_follow_the_documented_rates() {
        assert_eq!(text_tokens(""), 0);
        assert_eq!(text_tokens("abcd"), 1);
        assert_eq!(text_tokens("abcde"), 2);
        assert_eq!(text_tokens("世界"), 2);
        assert_eq!(text_tokens("éé"), 1);
        assert_eq!(text_tokens("hi 世界 🎉"), 4); // 4 ASCII bytes (1) + 2 CJK (2) + 1 emoji (1/2) → 3.5 → 4
    }

    #[test]
    fn requests_count_system_messages_tools_and_media() {
        let base = json!({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "a".repeat(400)}]});
        assert_eq!(estimate(base.clone()), 103);
        let mut rich = base.clone();
        rich["system"] = json!("s".repeat(40));
        rich["tools"] =
            json!([{"name": "read", "description": "Read a file", "input_schema": {"type": "object"}}]);
        rich["messages"] = json!([
            {"role": "user", "content": [{"type": "text", "text": "a".repeat(400)},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]},
        ]);
        let got = estimate(rich);
        assert!(got > 103 + 1_600 + 10 + 10, "{got}");
        assert_eq!(count_tokens_response(42), br#"{"input_tokens":42}"#);
    }
}
