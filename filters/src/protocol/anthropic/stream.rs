//! Upstream `v1internal` events → Anthropic Messages SSE events, or one folded `message`.
//!
//! One machine, [`Turn`], decides the content blocks the client sees (PROTOCOL.md §8 "SSE out"): thoughts
//! become `thinking` blocks closed by a `signature_delta` when the upstream signed them, text becomes `text`
//! blocks, and each `functionCall` one `tool_use` block whose input arrives as a single `input_json_delta`.
//! Block indexes increase from 0 in the order blocks open; at most one block is open at a time. The
//! `stop_reason` follows §13: `tool_use` whenever a tool was called, `max_tokens` for MAX_TOKENS and for a
//! stream cut without a finish reason, `end_turn` otherwise.
//!
//! Signatures are captured twice over: per tool call id (as for OpenAI clients) and per thinking text, so a
//! thinking block the client replays without its signature can still be signed ([`crate::signature`]).
//! [`AnthropicStream`] writes `event:`/`data:` frames; [`super::fold::AnthropicFold`] collects the same
//! blocks into one `message` body for clients that did not ask to stream.
//!
//! A generated image (`inlineData`) becomes an `image` block ([`super::image_block`]).

use crate::error::ClientError;
use crate::grounding::DomainFilter;
use crate::inner::ToolNameMap;
use crate::signature::CapturedSignature;
use crate::sse::write_named_event;
use crate::stream::chunk::{ChunkParser, FinishReason, Part, Text, Usage};
use crate::stream::json::{write_str, write_u64};
use crate::stream::{client_tool_call_id, is_empty_payload, StreamError, ToolCallSignatures, Translator};
use crate::Protocol;

use super::usage::write_usage_fields;
use super::web_search::SearchTurn;

/// Per-request parameters of the client-facing response.
#[derive(Clone, Debug)]
pub struct AnthropicStreamOptions {
    /// The message id, `msg_…`.
    pub id: String,
    /// The model name the client asked for (not the upstream model).
    pub model: String,
    /// Unique per request, e.g. `toolu_01a2b3c4d5e6f7a8_`. A tool call without an upstream id gets this prefix
    /// followed by its index.
    pub tool_id_prefix: String,
    /// Upstream tool names back to the client's own.
    pub tool_names: ToolNameMap,
    /// `input_tokens` for `message_start` when it must be sent before the upstream reported usage (a
    /// [`ping`](AnthropicStream::ping) while the upstream is silent); e.g. the local estimate. The final
    /// count follows in `message_delta`.
    pub input_tokens_hint: u64,
    /// A Google Search (`requestType` `web_search`), with the sites its sources may come from: search blocks
    /// and citations ([`super::web_search`]).
    pub web_search: Option<DomainFilter>,
}

/// The kind of a content block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BlockKind {
    Thinking,
    Text,
}

/// One thing the client should see, in order.
pub(super) enum Event<'a> {
    /// The usage of the chunk being read, before its content (for `message_start`).
    Usage(Usage),
    Start {
        index: u32,
        kind: BlockKind,
    },
    Thinking {
        index: u32,
        text: Text<'a>,
    },
    Text {
        index: u32,
        text: Text<'a>,
    },
    Signature {
        index: u32,
        signature: &'a str,
    },
    ToolUse {
        index: u32,
        id: &'a str,
        name: &'a str,
        input: &'a str,
    },
    Stop {
        index: u32,
    },
    Image(u32, &'a str, &'a str),
}

/// The open thinking or text block.
#[derive(Debug)]
struct OpenBlock {
    index: u32,
    kind: BlockKind,
    /// A thinking block's full text so far, to key its signature.
    thinking: String,
}

/// The state of one assistant turn, shared by the streaming and the folded output.
#[derive(Debug)]
pub(super) struct Turn {
    parser: ChunkParser,
    tool_id_prefix: String,
    tool_names: ToolNameMap,
    open: Option<OpenBlock>,
    next_index: u32,
    tool_calls: u32,
    pub(super) upstream_finish: Option<FinishReason>,
    pub(super) usage: Option<Usage>,
    pub(super) signatures: ToolCallSignatures,
    /// A web search's held text and grounding, written at the end.
    pub(super) search: Option<SearchTurn>,
}

impl Turn {
    pub(super) fn new(
        tool_id_prefix: String,
        tool_names: ToolNameMap,
        web_search: Option<DomainFilter>,
    ) -> Self {
        Turn {
            search: web_search.map(|domains| SearchTurn::new(&tool_id_prefix, domains)),
            parser: ChunkParser::new(),
            tool_id_prefix,
            tool_names,
            open: None,
            next_index: 0,
            tool_calls: 0,
            upstream_finish: None,
            usage: None,
            signatures: ToolCallSignatures::default(),
        }
    }

    pub(super) fn on_event(
        &mut self,
        data: &mut [u8],
        emit: &mut impl FnMut(Event<'_>),
    ) -> Result<(), StreamError> {
        if is_empty_payload(data) {
            return Ok(());
        }
        let mut chunk = self.parser.parse(data)?;
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage);
            emit(Event::Usage(usage));
        }
        self.search.iter_mut().zip(chunk.grounding.take()).for_each(|(search, g)| search.absorb(g));
        let finished = self.upstream_finish.is_some();
        for part in &chunk.parts {
            match part {
                Part::Text { text, thought: true, signature } => {
                    if finished {
                        continue;
                    }
                    let index = self.ensure_open(BlockKind::Thinking, emit);
                    if !text.is_empty() {
                        if let Some(open) = &mut self.open {
                            text.push_to(&mut open.thinking);
                        }
                        emit(Event::Thinking { index, text: *text });
                    }
                    if let Some(signature) = signature {
                        self.signatures.on_turn_signature(signature);
                        self.close_block(Some(signature), emit);
                    }
                }
                Part::Text { text, thought: false, signature } => {
                    if let Some(signature) = signature {
                        self.signatures.on_turn_signature(signature);
                    }
                    if let Some(search) = self.search.as_mut().filter(|_| !finished) {
                        search.hold(&text.to_str());
                    } else if !text.is_empty() && !finished {
                        let index = self.ensure_open(BlockKind::Text, emit);
                        emit(Event::Text { index, text: *text });
                    }
                }
                Part::FunctionCall { id, name, args, signature } => {
                    if finished {
                        continue;
                    }
                    self.close_block(None, emit);
                    let call = self.tool_calls;
                    self.tool_calls += 1;
                    let id = client_tool_call_id(*id, &self.tool_id_prefix, call);
                    self.signatures.on_tool_call(call, &id, *signature);
                    let index = self.next_block_index();
                    let name = self.tool_names.client_name(name);
                    emit(Event::ToolUse { index, id: &id, name, input: args });
                }
                Part::InlineData { mime_type, data } if !finished && !data.is_empty() => {
                    self.close_block(None, emit);
                    emit(Event::Image(self.next_block_index(), mime_type, data));
                }
                Part::InlineData { .. } | Part::FileData { .. } | Part::Other => {}
            }
        }
        if let Some(reason) = chunk.finish_reason {
            self.upstream_finish.get_or_insert(reason);
            self.close_block(None, emit);
        }
        Ok(())
    }

    fn next_block_index(&mut self) -> u32 {
        let index = self.next_index;
        self.next_index += 1;
        index
    }

    /// The index of the open block of `kind`, opening it (and closing another) if needed.
    fn ensure_open(&mut self, kind: BlockKind, emit: &mut impl FnMut(Event<'_>)) -> u32 {
        if let Some(open) = &self.open {
            if open.kind == kind {
                return open.index;
            }
        }
        self.close_block(None, emit);
        let index = self.next_block_index();
        self.open = Some(OpenBlock { index, kind, thinking: String::new() });
        emit(Event::Start { index, kind });
        index
    }

    /// Closes the open block; a thinking block gets its signature first, captured under its text.
    pub(super) fn close_block(&mut self, signature: Option<&str>, emit: &mut impl FnMut(Event<'_>)) {
        let Some(open) = self.open.take() else {
            return;
        };
        if let (BlockKind::Thinking, Some(signature)) = (open.kind, signature) {
            emit(Event::Signature { index: open.index, signature });
            self.signatures.captured.push(CapturedSignature::thinking(&open.thinking, signature));
        }
        emit(Event::Stop { index: open.index });
    }

    /// `tool_use` whenever a tool was called (Claude tool turns end with OTHER or STOP); `max_tokens` for
    /// MAX_TOKENS or a stream cut before any finish reason; `end_turn` otherwise.
    pub(super) fn stop_reason(&self) -> &'static str {
        if self.tool_calls > 0 {
            return "tool_use";
        }
        match self.upstream_finish {
            None | Some(FinishReason::MaxTokens) => "max_tokens",
            Some(_) => "end_turn",
        }
    }
}

/// Appends one `event: <name>\ndata: <json>\n\n` frame whose JSON `body` writes.
fn frame(out: &mut Vec<u8>, name: &str, body: impl FnOnce(&mut Vec<u8>)) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    body(out);
    out.extend_from_slice(b"\n\n");
}

/// Rewrites one upstream stream into Anthropic Messages SSE events.
#[derive(Debug)]
pub struct AnthropicStream {
    turn: Turn,
    writer: Writer,
    done: bool,
}

/// Writes events as frames; `message_start` goes out before the first one.
#[derive(Debug)]
struct Writer {
    opts: AnthropicStreamOptions,
    started: bool,
    /// The latest usage seen, for `message_start`.
    usage: Option<Usage>,
}

impl AnthropicStream {
    pub fn new(opts: AnthropicStreamOptions) -> Self {
        AnthropicStream {
            turn: Turn::new(opts.tool_id_prefix.clone(), opts.tool_names.clone(), opts.web_search.clone()),
            writer: Writer { opts, started: false, usage: None },
            done: false,
        }
    }

    /// Appends a `ping` event (sent while the upstream is silent, e.g. during long thinking), preceded by
    /// `message_start` if it was not sent yet, as Anthropic orders them.
    pub fn ping(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.writer.start(out);
        write_named_event(out, "ping", b"{\"type\":\"ping\"}");
    }

    /// Ends the stream with an `event: error` carrying `error` in Anthropic's shape (e.g. the upstream timed
    /// out mid-answer). Nothing more is written afterwards.
    fn write_error(&mut self, error: &ClientError, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.done = true;
        write_named_event(out, "error", &error.render(Protocol::Anthropic));
    }
}

impl Translator for AnthropicStream {
    /// One upstream SSE `data` payload in; zero or more events appended to `out`. The payload is scratch
    /// afterwards (parsed in place).
    ///
    /// On an error (an in-stream upstream error, or an unreadable event) the error is returned; if events
    /// were already written, an `event: error` is appended too and the stream is over. Before that, nothing is
    /// written, so the gateway may still retry elsewhere or answer with a plain HTTP error.
    fn on_event(&mut self, data: &mut [u8], out: &mut Vec<u8>) -> Result<(), StreamError> {
        if self.done {
            return Ok(());
        }
        let Self { turn, writer, .. } = self;
        let result = turn.on_event(data, &mut |event| writer.write(out, event));
        if let Err(error) = &result {
            if self.writer.started {
                self.write_error(&error.to_client_error(), out);
            }
        }
        result
    }

    /// The upstream ended, cleanly or not: closes the open block and appends `message_delta` (stop reason and
    /// final usage) and `message_stop`. Idempotent.
    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.done = true;
        self.writer.start(out);
        let Self { turn, writer, .. } = self;
        turn.close_block(None, &mut |event| writer.write(out, event));
        turn.search.iter().for_each(|search| search.write_events(out, &mut turn.next_index));
        let stop_reason = self.turn.stop_reason();
        let usage = self.turn.usage;
        let hint = self.writer.opts.input_tokens_hint;
        frame(out, "message_delta", |out| {
            out.extend_from_slice(b"{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":");
            write_str(out, stop_reason);
            out.extend_from_slice(b",\"stop_sequence\":null},\"usage\":{");
            write_usage_fields(out, usage, hint, true);
            self.turn.search.iter().for_each(|search| search.write_usage(out));
            out.extend_from_slice(b"}}");
        });
        frame(out, "message_stop", |out| out.extend_from_slice(b"{\"type\":\"message_stop\"}"));
    }

    /// Signatures captured since the last call (tool call ids and thinking texts), for the store.
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

    /// Whether any event was written; until then the request can still be retried elsewhere.
    fn emitted_anything(&self) -> bool {
        self.writer.started || self.turn.search.as_ref().is_some_and(SearchTurn::has_content)
    }

    /// Anthropic's own keep-alive event (sent after `message_start`).
    fn keepalive(&mut self, out: &mut Vec<u8>) {
        self.ping(out);
    }
}

impl Writer {
    fn start(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.started = true;
            write_message_start(out, &self.opts, self.usage);
        }
    }

    /// Appends the frames of one event, preceded by `message_start` if it is the first.
    fn write(&mut self, out: &mut Vec<u8>, event: Event<'_>) {
        if let Event::Usage(usage) = event {
            self.usage = Some(usage);
            return;
        }
        self.start(out);
        write_event(out, event);
    }
}

fn write_message_start(out: &mut Vec<u8>, opts: &AnthropicStreamOptions, usage: Option<Usage>) {
    frame(out, "message_start", |out| {
        out.extend_from_slice(b"{\"type\":\"message_start\",\"message\":{\"id\":");
        write_str(out, &opts.id);
        out.extend_from_slice(b",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
        write_str(out, &opts.model);
        out.extend_from_slice(b",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{");
        write_usage_fields(out, usage, opts.input_tokens_hint, false);
        out.extend_from_slice(b"}}}");
    });
}

fn write_event(out: &mut Vec<u8>, event: Event<'_>) {
    match event {
        Event::Usage(_) => {}
        Event::Start { index, kind } => frame(out, "content_block_start", |out| {
            out.extend_from_slice(b"{\"type\":\"content_block_start\",\"index\":");
            write_u64(out, u64::from(index));
            out.extend_from_slice(match kind {
                BlockKind::Thinking => {
                    b",\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}}"
                }
                BlockKind::Text => b",\"content_block\":{\"type\":\"text\",\"text\":\"\"}}".as_slice(),
            });
        }),
        Event::Thinking { index, text } => write_delta(out, index, b"thinking_delta\",\"thinking\":", text),
        Event::Text { index, text } => write_delta(out, index, b"text_delta\",\"text\":", text),
        Event::Signature { index, signature } => {
            write_delta(out, index, b"signature_delta\",\"signature\":", Text::new(signature))
        }
        Event::ToolUse { index, id, name, input } => {
            frame(out, "content_block_start", |out| {
                out.extend_from_slice(b"{\"type\":\"content_block_start\",\"index\":");
                write_u64(out, u64::from(index));
                out.extend_from_slice(b",\"content_block\":{\"type\":\"tool_use\",\"id\":");
                write_str(out, id);
                out.extend_from_slice(b",\"name\":");
                write_str(out, name);
                out.extend_from_slice(b",\"input\":{}}}");
            });
            write_delta(out, index, b"input_json_delta\",\"partial_json\":", Text::new(input));
            write_stop(out, index);
        }
        Event::Stop { index } => write_stop(out, index),
        Event::Image(index, mime, data) => super::image_block::write_frames(out, index, mime, data),
    }
}

/// `content_block_delta` whose delta is `{"type":"<kind_and_field>"<value>}`.
fn write_delta(out: &mut Vec<u8>, index: u32, kind_and_field: &[u8], value: Text<'_>) {
    frame(out, "content_block_delta", |out| {
        out.extend_from_slice(b"{\"type\":\"content_block_delta\",\"index\":");
        write_u64(out, u64::from(index));
        out.extend_from_slice(b",\"delta\":{\"type\":\"");
        out.extend_from_slice(kind_and_field);
        value.write_str(out);
        out.extend_from_slice(b"}}");
    });
}

fn write_stop(out: &mut Vec<u8>, index: u32) {
    frame(out, "content_block_stop", |out| {
        out.extend_from_slice(b"{\"type\":\"content_block_stop\",\"index\":");
        write_u64(out, u64::from(index));
        out.push(b'}');
    });
}

#[cfg(test)]
mod tests {
    use super::super::fold::AnthropicFold;
    use super::*;
    use crate::stream::Fold;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    fn opts() -> AnthropicStreamOptions {
        AnthropicStreamOptions {
            id: "msg_test".to_owned(),
            model: "claude-sonnet-4-5".to_owned(),
            tool_id_prefix: "toolu_7f3a_".to_owned(),
            tool_names: ToolNameMap::new(["mcp.fs:read"]),
            input_tokens_hint: 42,
            web_search: None,
        }
    }

    fn usage_json(prompt: u64, candidates: u64, thoughts: u64, cached: u64) -> Value {
        json!({"promptTokenCount": prompt, "candidatesTokenCount": candidates, "thoughtsTokenCount": thoughts,
               "cachedContentTokenCount": cached, "totalTokenCount": prompt + candidates + thoughts})
    }

    pub(crate) fn upstream(parts: Value, finish: Option<&str>, usage: Option<Value>) -> String {
        let mut candidate = json!({"content": {"role": "model", "parts": parts}});
        if let Some(f) = finish {
            candidate["finishReason"] = json!(f);
        }
        let mut response = json!({"candidates": [candidate], "modelVersion": "claude-sonnet-4-6", "responseId": "msg_vrtx_1"});
        if let Some(u) = usage {
            response["usageMetadata"] = u;
        }
        json!({"response": response, "traceId": "t", "metadata": {}}).to_string()
    }

    fn run(stream: &mut AnthropicStream, events: &[String]) -> Vec<u8> {
        let mut out = Vec::new();
        for event in events {
            stream.on_event(&mut event.clone().into_bytes(), &mut out).unwrap();
        }
        stream.finish(&mut out);
        out
    }

    /// (event name, data JSON) pairs, checking each frame's name matches its `type`.
    fn events(out: &[u8]) -> Vec<(String, Value)> {
        let text = std::str::from_utf8(out).unwrap();
        assert!(text.ends_with("\n\n"));
        text.trim_end()
            .split("\n\n")
            .map(|frame| {
                let (name, data) = frame.split_once('\n').unwrap();
                let name = name.strip_prefix("event: ").unwrap().to_owned();
                let data: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
                assert_eq!(data["type"], name.as_str());
                (name, data)
            })
            .collect()
    }

    fn names(events: &[(String, Value)]) -> Vec<&str> {
        events.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn thinking_text_and_tool_use_blocks_in_order_with_increasing_indexes() {
        let sig = "R".repeat(60);
        let evts = [
            upstream(json!([{"text": "**Plan**", "thought": true}]), None, Some(usage_json(100, 0, 5, 40))),
            upstream(
                json!([{"text": " more", "thought": true}, {"text": "", "thought": true, "thoughtSignature": sig}]),
                None,
                None,
            ),
            upstream(json!([{"text": "Reading "}, {"text": "it."}]), None, None),
            upstream(
                json!([{"functionCall": {"name": "mcp_fs_read", "args": {"path": "a"}, "id": "toolu_vrtx_1"}},
                            {"functionCall": {"name": "other", "args": {}}}]),
                Some("OTHER"),
                Some(usage_json(100, 20, 5, 40)),
            ),
        ];
        let mut stream = AnthropicStream::new(opts());
        let out = run(&mut stream, &evts);
        let got = events(&out);
        assert_eq!(
            names(&got),
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ]
        );
        assert_eq!(
            got[0].1["message"],
            json!({"id": "msg_test", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [],
                   "stop_reason": null, "stop_sequence": null,
                   "usage": {"input_tokens": 60, "output_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 40}})
        );
        assert_eq!(got[1].1["content_block"], json!({"type": "thinking", "thinking": "", "signature": ""}));
        assert_eq!(got[2].1["delta"], json!({"type": "thinking_delta", "thinking": "**Plan**"}));
        assert_eq!(got[4].1["delta"], json!({"type": "signature_delta", "signature": sig}));
        assert_eq!(
            got[6].1,
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}})
        );
        assert_eq!(
            got[10].1["content_block"],
            json!({"type": "tool_use", "id": "toolu_vrtx_1", "name": "mcp.fs:read", "input": {}})
        );
        assert_eq!(
            got[11].1["delta"],
            json!({"type": "input_json_delta", "partial_json": "{\"path\":\"a\"}"})
        );
        assert_eq!(got[13].1["content_block"]["id"], "toolu_7f3a_1");
        let indexes: Vec<u64> = got.iter().filter_map(|(_, d)| d["index"].as_u64()).collect();
        assert_eq!(indexes, [0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 3, 3, 3]);
        assert_eq!(
            got[16].1,
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
                   "usage": {"input_tokens": 60, "output_tokens": 25, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 40}})
        );
        let signatures = stream.take_signatures();
        assert!(signatures.contains(&CapturedSignature::thinking("**Plan** more", &sig)));
        assert!(signatures.contains(&CapturedSignature::tool_call("toolu_vrtx_1", &sig)));
    }

    #[test]
    fn stop_reasons_follow_the_finish_reason() {
        for (finish, want) in [
            (Some("STOP"), "end_turn"),
            (Some("OTHER"), "end_turn"),
            (Some("SAFETY"), "end_turn"),
            (Some("MAX_TOKENS"), "max_tokens"),
            (None, "max_tokens"),
        ] {
            let got = events(&run(
                &mut AnthropicStream::new(opts()),
                &[upstream(json!([{"text": "x"}]), finish, None)],
            ));
            assert_eq!(got[got.len() - 2].1["delta"]["stop_reason"], want, "{finish:?}");
            assert_eq!(got.last().unwrap().0, "message_stop");
        }
        let cut_tool = [upstream(json!([{"functionCall": {"name": "f", "args": {}}}]), None, None)];
        let got = events(&run(&mut AnthropicStream::new(opts()), &cut_tool));
        assert_eq!(got[got.len() - 2].1["delta"]["stop_reason"], "tool_use");
    }

    #[test]
    fn a_gemini_signature_on_the_call_is_captured_for_its_id() {
        let evts = [
            upstream(json!([{"text": "think", "thought": true}]), None, None),
            upstream(
                json!([{"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "EsigGemini"}]),
                Some("STOP"),
                None,
            ),
        ];
        let mut stream = AnthropicStream::new(opts());
        let got = events(&run(&mut stream, &evts));
        assert!(
            got.iter().all(|(_, d)| d["delta"]["type"] != "signature_delta"),
            "an unsigned thought has no signature"
        );
        assert_eq!(stream.take_signatures(), [CapturedSignature::tool_call("toolu_7f3a_0", "EsigGemini")]);
    }

    #[test]
    fn ping_sends_message_start_first_with_the_hint() {
        let mut stream = AnthropicStream::new(opts());
        let mut out = Vec::new();
        stream.ping(&mut out);
        stream.ping(&mut out);
        assert!(stream.emitted_anything());
        stream
            .on_event(
                &mut upstream(json!([{"text": "hi"}]), Some("STOP"), Some(usage_json(10, 1, 0, 0)))
                    .into_bytes(),
                &mut out,
            )
            .unwrap();
        stream.finish(&mut out);
        let got = events(&out);
        assert_eq!(names(&got)[..3], ["message_start", "ping", "ping"]);
        assert_eq!(got[0].1["message"]["usage"]["input_tokens"], 42);
        assert_eq!(got.iter().filter(|(n, _)| n == "message_start").count(), 1);
        assert_eq!(got[got.len() - 2].1["usage"]["input_tokens"], 10);
    }

    #[test]
    fn an_in_stream_error_writes_nothing_before_output_and_an_error_event_after() {
        let error = br#"{"error":{"code":429,"message":"You have exhausted your capacity on this model.","status":"RESOURCE_EXHAUSTED"}}"#;
        let mut stream = AnthropicStream::new(opts());
        let mut out = Vec::new();
        assert!(stream.on_event(&mut error.to_vec(), &mut out).is_err());
        assert!(out.is_empty() && !stream.emitted_anything());

        let mut stream = AnthropicStream::new(opts());
        stream.on_event(&mut upstream(json!([{"text": "part"}]), None, None).into_bytes(), &mut out).unwrap();
        assert!(stream.on_event(&mut error.to_vec(), &mut out).is_err());
        stream.finish(&mut out);
        let got = events(&out);
        assert_eq!(got.last().unwrap().0, "error");
        assert_eq!(
            got.last().unwrap().1,
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": "You have exhausted your capacity on this model."}})
        );
    }

    #[test]
    fn the_fold_builds_one_message() {
        let sig = "R".repeat(60);
        let evts = [
            upstream(
                json!([{"text": "ponder \"this\"", "thought": true, "thoughtSignature": sig}]),
                None,
                None,
            ),
            upstream(json!([{"text": "Calling."}]), None, None),
            upstream(
                json!([{"functionCall": {"name": "mcp_fs_read", "args": {"q": "x"}}}]),
                Some("STOP"),
                Some(usage_json(7, 4, 2, 1)),
            ),
        ];
        let mut fold = AnthropicFold::new(opts());
        for e in &evts {
            fold.on_event(&mut e.clone().into_bytes()).unwrap();
        }
        assert_eq!(fold.take_signatures().len(), 2);
        let body: Value = serde_json::from_slice(&fold.finish()).unwrap();
        assert_eq!(
            body,
            json!({"id": "msg_test", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                   "content": [
                       {"type": "thinking", "thinking": "ponder \"this\"", "signature": sig},
                       {"type": "text", "text": "Calling."},
                       {"type": "tool_use", "id": "toolu_7f3a_0", "name": "mcp.fs:read", "input": {"q": "x"}},
                   ],
                   "stop_reason": "tool_use", "stop_sequence": null,
                   "usage": {"input_tokens": 6, "output_tokens": 6, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 1}})
        );
    }

    #[test]
    fn an_empty_cut_stream_still_closes() {
        let mut fold = AnthropicFold::new(opts());
        fold.on_event(&mut upstream(json!([]), None, None).into_bytes()).unwrap();
        let body: Value = serde_json::from_slice(&fold.finish()).unwrap();
        assert_eq!(body["content"], json!([]));
        assert_eq!(body["stop_reason"], "max_tokens");
        let got = events(&run(&mut AnthropicStream::new(opts()), &[]));
        assert_eq!(names(&got), ["message_start", "message_delta", "message_stop"]);
    }

    /// A recorded-shape upstream stream: thoughts with a Claude signature, multi-byte text, a tool call, a
    /// STOP chunk without usage, then a usage-only chunk.
    pub(crate) fn recorded_stream(line_end: &str) -> Vec<u8> {
        let events = [
            upstream(json!([{"text": "**Considering the request**\nThe user wants a greeting 👋.", "thought": true}]), None, Some(usage_json(120, 0, 40, 0))),
            upstream(json!([{"text": "", "thought": true, "thoughtSignature": format!("R{}", "Vx".repeat(40))}]), None, None),
            upstream(json!([{"text": "héllo 世界 🎉, "}]), None, Some(usage_json(120, 5, 40, 0))),
            upstream(json!([{"text": "here is \"quoted\" text\nwith a newline and \u{2028}."}]), None, Some(usage_json(120, 18, 40, 0))),
            upstream(json!([{"functionCall": {"name": "lookup", "args": {"q": "café", "n": 2, "nested": {"list": [1.5, null, true]}}}}]), None, None),
            upstream(json!([{"text": "", "thoughtSignature": "EkQKQgE="}]), Some("STOP"), None),
            json!({"response": {"candidates": [], "usageMetadata": usage_json(120, 30, 40, 64)}, "traceId": "b024eecf3a9f3c5a"}).to_string(),
        ];
        let mut bytes = Vec::new();
        bytes.extend_from_slice(format!(": keep-alive{line_end}{line_end}").as_bytes());
        for event in events {
            bytes.extend_from_slice(format!("data: {event}{line_end}{line_end}").as_bytes());
        }
        bytes
    }

    fn rewrite(bytes: &[u8], cuts: &[usize]) -> (Vec<u8>, Vec<CapturedSignature>) {
        let mut stream = AnthropicStream::new(opts());
        let mut out = Vec::new();
        crate::sse::frame_in_cuts(bytes, cuts, |data| stream.on_event(data, &mut out).unwrap());
        stream.finish(&mut out);
        (out, stream.take_signatures())
    }

    #[test]
    fn a_generated_image_is_an_image_block_streamed_and_folded() {
        let image = json!([{"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}]);
        let evts = [upstream(json!([{"text": "A cat"}]), None, None), upstream(image, Some("STOP"), None)];
        let block = json!({"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                       "data": "iVBORw0KGgo="}});
        let got = events(&run(&mut AnthropicStream::new(opts()), &evts));
        let starts: Vec<&Value> = got
            .iter()
            .filter(|(n, _)| n == "content_block_start")
            .map(|(_, d)| &d["content_block"])
            .collect();
        assert_eq!(starts, [&json!({"type": "text", "text": ""}), &block]);
        assert_eq!(got[got.len() - 3].1, json!({"type": "content_block_stop", "index": 1}));
        let mut fold = AnthropicFold::new(opts());
        for event in &evts {
            fold.on_event(&mut event.clone().into_bytes()).unwrap();
        }
        let message: Value = serde_json::from_slice(&fold.finish()).unwrap();
        assert_eq!(message["content"], json!([{"type": "text", "text": "A cat"}, block]));
        assert_eq!(message["stop_reason"], "end_turn");
    }

    #[test]
    fn the_recorded_stream_rewrites_as_expected() {
        let (out, signatures) = rewrite(&recorded_stream("\n"), &[]);
        let got = events(&out);
        assert_eq!(
            got[2].1["delta"]["thinking"],
            "**Considering the request**\nThe user wants a greeting 👋."
        );
        assert_eq!(got[got.len() - 2].1["usage"]["cache_read_input_tokens"], 64);
        assert_eq!(got[got.len() - 2].1["usage"]["output_tokens"], 70);
        assert_eq!(signatures.len(), 2);
    }

    #[test]
    fn every_single_split_point_gives_identical_output() {
        for line_end in ["\n", "\r\n"] {
            let bytes = recorded_stream(line_end);
            let whole = rewrite(&bytes, &[]);
            for cut in 0..=bytes.len() {
                assert_eq!(rewrite(&bytes, &[cut]), whole, "line end {line_end:?}, cut at {cut}");
            }
        }
    }

    proptest! {
        #[test]
        fn random_multi_splits_give_identical_output(
            crlf in any::<bool>(),
            fractions in proptest::collection::vec(0.0f64..1.0, 0..40),
        ) {
            let bytes = recorded_stream(if crlf { "\r\n" } else { "\n" });
            let mut cuts: Vec<usize> = fractions.iter().map(|f| (f * bytes.len() as f64) as usize).collect();
            cuts.sort_unstable();
            prop_assert_eq!(rewrite(&bytes, &cuts), rewrite(&bytes, &[]));
        }
    }

    #[test]
    fn a_multi_megabyte_stream_is_identical_whatever_the_chunking() {
        let mut bytes = Vec::new();
        for i in 0..6000 {
            let thought = i % 500 < 50;
            let event = upstream(
                json!([{"text": format!("chunk {i} héllo 世界 🎉 \"q\"\n"), "thought": thought}]),
                None,
                Some(usage_json(1000, i, 0, 0)),
            );
            bytes.extend_from_slice(format!("data: {event}\r\n\r\n").as_bytes());
        }
        assert!(bytes.len() > 1 << 20);
        let whole = rewrite(&bytes, &[]);
        for step in [1usize, 7, 4096, 65_537] {
            let cuts: Vec<usize> = (step..bytes.len()).step_by(step).collect();
            assert!(rewrite(&bytes, &cuts) == whole, "step {step}");
        }
    }
}
