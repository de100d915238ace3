//! The Anthropic machine folded into one non-streaming `message` body, for clients that did not ask to
//! stream: the same [`Turn`] as [`super::stream::AnthropicStream`] decides the blocks, collected here with
//! their strings kept already escaped.

use crate::signature::CapturedSignature;
use crate::stream::chunk::Usage;
use crate::stream::json::write_str;
use crate::stream::{Fold, StreamError};

use super::stream::{AnthropicStreamOptions, BlockKind, Event, Turn};
use super::usage::write_usage_fields;
use super::web_search::SearchTurn;

/// A content block collected for the folded response; strings kept already escaped.
#[derive(Debug)]
enum FoldedBlock {
    Thinking { escaped: Vec<u8>, signature: String },
    Text { escaped: Vec<u8> },
    ToolUse { id: String, name: String, input: String },
    Image(Vec<u8>),
}

/// The same machine as [`AnthropicStream`], folded into one non-streaming `message` body.
#[derive(Debug)]
pub struct AnthropicFold {
    turn: Turn,
    opts: AnthropicStreamOptions,
    blocks: Vec<FoldedBlock>,
}

impl AnthropicFold {
    pub fn new(opts: AnthropicStreamOptions) -> Self {
        AnthropicFold {
            turn: Turn::new(opts.tool_id_prefix.clone(), opts.tool_names.clone(), opts.web_search.clone()),
            opts,
            blocks: Vec::new(),
        }
    }
}

impl Fold for AnthropicFold {
    /// One upstream SSE `data` payload in (scratch afterwards).
    fn on_event(&mut self, data: &mut [u8]) -> Result<(), StreamError> {
        let blocks = &mut self.blocks;
        self.turn.on_event(data, &mut |event| fold_event(blocks, event))
    }

    /// Signatures captured since the last call, for the store.
    fn take_signatures(&mut self) -> Vec<CapturedSignature> {
        self.turn.signatures.take()
    }

    /// The last usage the upstream reported.
    fn usage(&self) -> Option<Usage> {
        self.turn.usage
    }

    /// Whether the upstream sent a finish reason (a stream without one was cut).
    fn finished_by_upstream(&self) -> bool {
        self.turn.upstream_finish.is_some()
    }

    /// Whether any content was collected.
    fn emitted_anything(&self) -> bool {
        !self.blocks.is_empty() || self.turn.search.as_ref().is_some_and(SearchTurn::has_content)
    }

    /// The whole `message` JSON body. Take the signatures first.
    fn finish(mut self) -> Vec<u8> {
        let blocks = &mut self.blocks;
        self.turn.close_block(None, &mut |event| fold_event(blocks, event));
        let size: usize = self
            .blocks
            .iter()
            .map(|b| match b {
                FoldedBlock::Thinking { escaped, signature } => escaped.len() + signature.len(),
                FoldedBlock::Text { escaped } => escaped.len(),
                FoldedBlock::ToolUse { input, .. } => input.len() + 64,
                FoldedBlock::Image(block) => block.len(),
            })
            .sum();
        let mut out = Vec::with_capacity(320 + size);
        out.extend_from_slice(b"{\"id\":");
        write_str(&mut out, &self.opts.id);
        out.extend_from_slice(b",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
        write_str(&mut out, &self.opts.model);
        out.extend_from_slice(b",\"content\":[");
        for (i, block) in self.blocks.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            match block {
                FoldedBlock::Thinking { escaped, signature } => {
                    out.extend_from_slice(b"{\"type\":\"thinking\",\"thinking\":\"");
                    out.extend_from_slice(escaped);
                    out.extend_from_slice(b"\",\"signature\":");
                    write_str(&mut out, signature);
                    out.push(b'}');
                }
                FoldedBlock::Text { escaped } => {
                    out.extend_from_slice(b"{\"type\":\"text\",\"text\":\"");
                    out.extend_from_slice(escaped);
                    out.extend_from_slice(b"\"}");
                }
                FoldedBlock::ToolUse { id, name, input } => {
                    out.extend_from_slice(b"{\"type\":\"tool_use\",\"id\":");
                    write_str(&mut out, id);
                    out.extend_from_slice(b",\"name\":");
                    write_str(&mut out, name);
                    out.extend_from_slice(b",\"input\":");
                    out.extend_from_slice(input.as_bytes());
                    out.push(b'}');
                }
                FoldedBlock::Image(block) => out.extend_from_slice(block),
            }
        }
        self.turn.search.iter().for_each(|search| search.write_folded(&mut out, self.blocks.len()));
        out.extend_from_slice(b"],\"stop_reason\":");
        write_str(&mut out, self.turn.stop_reason());
        out.extend_from_slice(b",\"stop_sequence\":null,\"usage\":{");
        write_usage_fields(&mut out, self.turn.usage, self.opts.input_tokens_hint, true);
        self.turn.search.iter().for_each(|search| search.write_usage(&mut out));
        out.extend_from_slice(b"}}");
        out
    }
}

fn fold_event(blocks: &mut Vec<FoldedBlock>, event: Event<'_>) {
    match event {
        Event::Start { kind: BlockKind::Thinking, .. } => {
            blocks.push(FoldedBlock::Thinking { escaped: Vec::new(), signature: String::new() })
        }
        Event::Start { kind: BlockKind::Text, .. } => blocks.push(FoldedBlock::Text { escaped: Vec::new() }),
        Event::Thinking { text, .. } | Event::Text { text, .. } => {
            if let Some(FoldedBlock::Thinking { escaped, .. } | FoldedBlock::Text { escaped }) =
                blocks.last_mut()
            {
                text.write_escaped(escaped);
            }
        }
        Event::Signature { signature, .. } => {
            if let Some(FoldedBlock::Thinking { signature: slot, .. }) = blocks.last_mut() {
                *slot = signature.to_owned();
            }
        }
        Event::ToolUse { id, name, input, .. } => blocks.push(FoldedBlock::ToolUse {
            id: id.to_owned(),
            name: name.to_owned(),
            input: input.to_owned(),
        }),
        Event::Image(_, mime, data) => blocks.push(FoldedBlock::Image(super::image_block::block(mime, data))),
        Event::Usage(_) | Event::Stop { .. } => {}
    }
}
