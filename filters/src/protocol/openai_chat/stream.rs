//! Upstream `v1internal` events → OpenAI `chat.completion.chunk` frames, or one folded `chat.completion`.
//!
//! One machine, [`Turn`], decides what the client sees (PROTOCOL.md §7 "Stream mapping"): thoughts become
//! `reasoning_content`, text becomes `content`, each `functionCall` one `tool_calls` delta with a stable
//! client id, and the finish reason follows the tool-call rule of §13. It also captures thoughtSignatures
//! (§9) and the last usage seen. [`OpenAiStream`] writes its output as SSE frames; [`OpenAiFold`] collects
//! it into one response for clients that did not ask to stream (Levitate always streams upstream).
//!
//! Frames are written by hand: their fixed head is rendered once per request and only the delta is
//! rendered per event, which keeps the rewrite well above the upstream's own throughput.

use crate::error::ClientError;
use crate::inner::ToolNameMap;
use crate::signature::CapturedSignature;
use crate::stream::chunk::{ChunkParser, FinishReason, Part, Text, Usage};
use crate::stream::json::{write_escaped, write_str, write_u64};
use crate::stream::{
    client_tool_call_id, is_empty_payload, Fold, StreamError, ToolCallSignatures, Translator,
};
use crate::Protocol;

use super::annotations::ChatSearch;

/// Per-request parameters of the client-facing response.
#[derive(Clone, Debug)]
pub struct OpenAiStreamOptions {
    /// The response id, `chatcmpl-…`.
    pub id: String,
    /// The model name the client asked for (not the upstream model).
    pub model: String,
    /// Unix seconds.
    pub created: u64,
    /// `stream_options.include_usage`: send a final usage chunk with empty `choices`.
    pub include_usage: bool,
    /// Unique per request, e.g. `call_3f9a2c_`. A tool call without an upstream id gets this prefix followed
    /// by its index, so ids stay unique across the conversation and can key captured signatures.
    pub tool_call_id_prefix: String,
    /// Upstream tool names back to the client's own (tool names are sanitised on the way up).
    pub tool_names: ToolNameMap,
    /// A Google Search (`requestType` `web_search`): its sources become `url_citation` annotations.
    pub web_search: bool,
}

/// One thing the client should see, in the order it should see it.
enum Delta<'a> {
    Reasoning(Text<'a>),
    Content(Text<'a>),
    /// Generated media; OpenAI chat has no media output, so it is shown as a markdown data-URL image.
    Image {
        mime_type: &'a str,
        data: &'a str,
    },
    ToolCall {
        index: u32,
        id: &'a str,
        name: &'a str,
        arguments: &'a str,
    },
    /// A web search's `annotations` array, already JSON, just before the finish.
    Annotations(&'a [u8]),
    Finish(&'static str),
}

/// The state of one assistant turn, shared by the streaming and the folded output.
#[derive(Debug)]
struct Turn {
    parser: ChunkParser,
    tool_call_id_prefix: String,
    tool_names: ToolNameMap,
    tool_calls: u32,
    upstream_finish: Option<FinishReason>,
    finish_sent: bool,
    usage: Option<Usage>,
    signatures: ToolCallSignatures,
    search: Option<ChatSearch>,
}

impl Turn {
    fn new(tool_call_id_prefix: String, tool_names: ToolNameMap, web_search: bool) -> Self {
        Turn {
            search: web_search.then(ChatSearch::default),
            parser: ChunkParser::new(),
            tool_call_id_prefix,
            tool_names,
            tool_calls: 0,
            upstream_finish: None,
            finish_sent: false,
            usage: None,
            signatures: ToolCallSignatures::with_thinking_blocks(),
        }
    }

    fn on_event(&mut self, data: &mut [u8], emit: &mut impl FnMut(Delta<'_>)) -> Result<(), StreamError> {
        if is_empty_payload(data) {
            return Ok(());
        }
        let mut chunk = self.parser.parse(data)?;
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        self.search.iter_mut().zip(chunk.grounding.take()).for_each(|(search, g)| search.absorb(g));
        for part in &chunk.parts {
            match part {
                Part::Text { text, thought, signature } => {
                    if *thought {
                        self.signatures.on_thought_text(&text.to_str());
                    }
                    if let Some(signature) = signature {
                        self.signatures.on_turn_signature(signature);
                    }
                    if !text.is_empty() && !self.finish_sent {
                        if let Some(search) = self.search.as_mut().filter(|_| !*thought) {
                            search.push_content(&text.to_str());
                        }
                        emit(if *thought { Delta::Reasoning(*text) } else { Delta::Content(*text) });
                    }
                }
                Part::FunctionCall { id, name, args, signature } => {
                    if self.finish_sent {
                        continue;
                    }
                    let index = self.tool_calls;
                    self.tool_calls += 1;
                    let id = client_tool_call_id(*id, &self.tool_call_id_prefix, index);
                    self.signatures.on_tool_call(index, &id, *signature);
                    let name = self.tool_names.client_name(name);
                    emit(Delta::ToolCall { index, id: &id, name, arguments: args });
                }
                Part::InlineData { mime_type, data } => {
                    if !data.is_empty() && !self.finish_sent {
                        emit(Delta::Image { mime_type, data });
                    }
                }
                Part::FileData { .. } | Part::Other => {}
            }
        }
        if let Some(reason) = chunk.finish_reason {
            self.upstream_finish.get_or_insert(reason);
            self.close(emit);
        }
        Ok(())
    }

    /// Emits the finish delta unless it was already sent.
    fn close(&mut self, emit: &mut impl FnMut(Delta<'_>)) {
        if !self.finish_sent {
            self.finish_sent = true;
            if let Some(annotations) = self.search.as_ref().and_then(ChatSearch::annotations) {
                emit(Delta::Annotations(&annotations));
            }
            emit(Delta::Finish(self.finish_reason()));
        }
    }

    /// `tool_calls` whenever a tool call was emitted, whatever the upstream said (Claude turns end with
    /// `OTHER` or `STOP`); a stream cut before any finish reason reads as `length`.
    fn finish_reason(&self) -> &'static str {
        if self.tool_calls > 0 {
            return "tool_calls";
        }
        match self.upstream_finish {
            None | Some(FinishReason::MaxTokens) => "length",
            Some(reason) if reason.is_content_filter() => "content_filter",
            Some(_) => "stop",
        }
    }
}

/// Appends the OpenAI `usage` object. `completion_tokens` includes the thoughts, as OpenAI counts reasoning
/// tokens inside completion tokens (and detailed in `reasoning_tokens`); Google counts them apart.
fn write_usage(out: &mut Vec<u8>, usage: Usage) {
    let completion = usage.candidates + usage.thoughts;
    out.extend_from_slice(b"{\"prompt_tokens\":");
    write_u64(out, usage.prompt);
    out.extend_from_slice(b",\"completion_tokens\":");
    write_u64(out, completion);
    out.extend_from_slice(b",\"total_tokens\":");
    write_u64(out, usage.prompt + completion);
    out.extend_from_slice(b",\"prompt_tokens_details\":{\"cached_tokens\":");
    write_u64(out, usage.cached);
    out.extend_from_slice(b"},\"completion_tokens_details\":{\"reasoning_tokens\":");
    write_u64(out, usage.thoughts);
    out.extend_from_slice(b"}}");
}

/// Appends `"id":…,"object":"<object>","created":…,"model":…` (no braces).
fn write_response_fields(out: &mut Vec<u8>, opts: &OpenAiStreamOptions, object: &str) {
    out.extend_from_slice(b"\"id\":");
    write_str(out, &opts.id);
    out.extend_from_slice(b",\"object\":");
    write_str(out, object);
    out.extend_from_slice(b",\"created\":");
    write_u64(out, opts.created);
    out.extend_from_slice(b",\"model\":");
    write_str(out, &opts.model);
}

fn write_image_markdown(out: &mut Vec<u8>, mime_type: &str, data: &str) {
    out.extend_from_slice(b"![image](data:");
    write_escaped(out, mime_type);
    out.extend_from_slice(b";base64,");
    write_escaped(out, data);
    out.push(b')');
}

/// Rewrites one upstream stream into OpenAI `chat.completion.chunk` SSE frames.
#[derive(Debug)]
pub struct OpenAiStream {
    turn: Turn,
    include_usage: bool,
    /// `data: {"id":…,"object":"chat.completion.chunk","created":…,"model":…,"choices":[`, rendered once.
    frame_head: Vec<u8>,
    role_sent: bool,
    done: bool,
}

impl OpenAiStream {
    pub fn new(opts: OpenAiStreamOptions) -> Self {
        let mut frame_head = Vec::with_capacity(128 + opts.id.len() + opts.model.len());
        frame_head.extend_from_slice(b"data: {");
        write_response_fields(&mut frame_head, &opts, "chat.completion.chunk");
        frame_head.extend_from_slice(b",\"choices\":[");
        OpenAiStream {
            turn: Turn::new(opts.tool_call_id_prefix, opts.tool_names, opts.web_search),
            include_usage: opts.include_usage,
            frame_head,
            role_sent: false,
            done: false,
        }
    }
}

impl Translator for OpenAiStream {
    /// One upstream SSE `data` payload in; zero or more `data: {…}\n\n` frames appended to `out`. The
    /// payload is scratch afterwards (parsed in place). Nothing is written for an in-stream upstream error,
    /// so a gateway that has sent nothing yet may still retry on another account.
    fn on_event(&mut self, data: &mut [u8], out: &mut Vec<u8>) -> Result<(), StreamError> {
        let Self { turn, frame_head, role_sent, done, .. } = self;
        if *done {
            return Ok(());
        }
        turn.on_event(data, &mut |delta| write_delta_frame(out, frame_head, role_sent, delta))
    }

    /// The upstream ended, cleanly or not: appends the finish chunk if none was sent (`length` when Google
    /// cut the stream silently), the usage chunk when asked for, and `data: [DONE]`. Idempotent.
    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.done = true;
        let Self { turn, frame_head, role_sent, .. } = self;
        turn.close(&mut |delta| write_delta_frame(out, frame_head, role_sent, delta));
        if self.include_usage {
            out.extend_from_slice(&self.frame_head);
            out.extend_from_slice(b"],\"usage\":");
            write_usage(out, self.turn.usage.unwrap_or_default());
            out.extend_from_slice(b"}\n\n");
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
    }

    /// The upstream failed mid-answer: one `data: {"error": {...}}` event and no finish chunk, usage or
    /// `[DONE]`. The openai SDKs raise `APIError` on an event with an `error` key; a `finish_reason` of
    /// `length` would have them return a truncated answer as if it were complete. Idempotent with `finish`.
    fn fail(&mut self, error: &ClientError, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.done = true;
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&error.render(Protocol::OpenAi));
        out.extend_from_slice(b"\n\n");
    }

    /// Signatures captured since the last call, keyed by client-visible tool call id, for the store.
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

    /// Whether any frame was written; until then the request can still be retried elsewhere.
    fn emitted_anything(&self) -> bool {
        self.role_sent
    }

    /// An SSE comment: every OpenAI client's parser skips it.
    fn keepalive(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b": keep-alive\n\n");
    }
}

/// Appends one `chat.completion.chunk` frame for `delta`, preceded by the role frame if it is the first.
fn write_delta_frame(out: &mut Vec<u8>, frame_head: &[u8], role_sent: &mut bool, delta: Delta<'_>) {
    if !*role_sent {
        *role_sent = true;
        out.extend_from_slice(frame_head);
        out.extend_from_slice(
            b"{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
        );
    }
    out.extend_from_slice(frame_head);
    out.extend_from_slice(b"{\"index\":0,\"delta\":");
    let mut finish_reason = None;
    match delta {
        Delta::Content(text) => {
            out.extend_from_slice(b"{\"content\":");
            text.write_str(out);
            out.push(b'}');
        }
        Delta::Reasoning(text) => {
            out.extend_from_slice(b"{\"reasoning_content\":");
            text.write_str(out);
            out.push(b'}');
        }
        Delta::Image { mime_type, data } => {
            out.extend_from_slice(b"{\"content\":\"");
            write_image_markdown(out, mime_type, data);
            out.extend_from_slice(b"\"}");
        }
        Delta::ToolCall { index, id, name, arguments } => {
            out.extend_from_slice(b"{\"tool_calls\":[{\"index\":");
            write_u64(out, u64::from(index));
            out.extend_from_slice(b",\"id\":");
            write_str(out, id);
            out.extend_from_slice(b",\"type\":\"function\",\"function\":{\"name\":");
            write_str(out, name);
            out.extend_from_slice(b",\"arguments\":");
            write_str(out, arguments);
            out.extend_from_slice(b"}}]}");
        }
        Delta::Annotations(json) => {
            out.extend_from_slice(b"{\"annotations\":");
            out.extend_from_slice(json);
            out.push(b'}');
        }
        Delta::Finish(reason) => {
            out.extend_from_slice(b"{}");
            finish_reason = Some(reason);
        }
    }
    out.extend_from_slice(b",\"logprobs\":null,\"finish_reason\":");
    match finish_reason {
        Some(reason) => write_str(out, reason),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b"}]}\n\n");
}

/// A tool call collected for the folded response.
#[derive(Debug)]
struct FoldedToolCall {
    id: String,
    name: String,
    arguments: String,
}

/// The client-visible message collected from the deltas. Content and reasoning are kept already escaped,
/// so the final body never re-scans them.
#[derive(Debug, Default)]
struct FoldedMessage {
    content: Option<Vec<u8>>,
    reasoning: Option<Vec<u8>>,
    tool_calls: Vec<FoldedToolCall>,
    annotations: Option<Vec<u8>>,
    finish_reason: Option<&'static str>,
}

impl FoldedMessage {
    fn apply(&mut self, delta: Delta<'_>) {
        match delta {
            Delta::Content(text) => text.write_escaped(self.content.get_or_insert_with(Vec::new)),
            Delta::Reasoning(text) => text.write_escaped(self.reasoning.get_or_insert_with(Vec::new)),
            Delta::Image { mime_type, data } => {
                write_image_markdown(self.content.get_or_insert_with(Vec::new), mime_type, data);
            }
            Delta::ToolCall { id, name, arguments, .. } => self.tool_calls.push(FoldedToolCall {
                id: id.to_owned(),
                name: name.to_owned(),
                arguments: arguments.to_owned(),
            }),
            Delta::Annotations(json) => self.annotations = Some(json.to_vec()),
            Delta::Finish(reason) => self.finish_reason = Some(reason),
        }
    }
}

/// The same machine as [`OpenAiStream`], folded into one non-streaming `chat.completion` body.
#[derive(Debug)]
pub struct OpenAiFold {
    turn: Turn,
    opts: OpenAiStreamOptions,
    message: FoldedMessage,
}

impl OpenAiFold {
    pub fn new(opts: OpenAiStreamOptions) -> Self {
        OpenAiFold {
            turn: Turn::new(opts.tool_call_id_prefix.clone(), opts.tool_names.clone(), opts.web_search),
            opts,
            message: FoldedMessage::default(),
        }
    }
}

impl Fold for OpenAiFold {
    /// One upstream SSE `data` payload in (scratch afterwards).
    fn on_event(&mut self, data: &mut [u8]) -> Result<(), StreamError> {
        let message = &mut self.message;
        self.turn.on_event(data, &mut |delta| message.apply(delta))
    }

    /// Signatures captured since the last call, keyed by client-visible tool call id, for the store.
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

    /// Whether any content was collected (text, reasoning, tool calls); until then the request can still be
    /// retried elsewhere.
    fn emitted_anything(&self) -> bool {
        let m = &self.message;
        m.content.is_some() || m.reasoning.is_some() || !m.tool_calls.is_empty()
    }

    /// The whole `chat.completion` JSON body. Take the signatures first.
    fn finish(mut self) -> Vec<u8> {
        let message = &mut self.message;
        self.turn.close(&mut |delta| message.apply(delta));
        let message = &self.message;

        let text_len =
            message.content.as_ref().map_or(0, Vec::len) + message.reasoning.as_ref().map_or(0, Vec::len);
        let mut out = Vec::with_capacity(256 + text_len);
        out.push(b'{');
        write_response_fields(&mut out, &self.opts, "chat.completion");
        out.extend_from_slice(b",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
        match &message.content {
            Some(escaped) => write_quoted_escaped(&mut out, escaped),
            None => out.extend_from_slice(b"null"),
        }
        if let Some(annotations) = &message.annotations {
            out.extend_from_slice(b",\"annotations\":");
            out.extend_from_slice(annotations);
        }
        if let Some(escaped) = &message.reasoning {
            out.extend_from_slice(b",\"reasoning_content\":");
            write_quoted_escaped(&mut out, escaped);
        }
        if !message.tool_calls.is_empty() {
            out.extend_from_slice(b",\"tool_calls\":[");
            for (i, call) in message.tool_calls.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"id\":");
                write_str(&mut out, &call.id);
                out.extend_from_slice(b",\"type\":\"function\",\"function\":{\"name\":");
                write_str(&mut out, &call.name);
                out.extend_from_slice(b",\"arguments\":");
                write_str(&mut out, &call.arguments);
                out.extend_from_slice(b"}}");
            }
            out.push(b']');
        }
        out.extend_from_slice(b",\"refusal\":null},\"logprobs\":null,\"finish_reason\":");
        write_str(&mut out, message.finish_reason.unwrap_or("stop"));
        out.extend_from_slice(b"}],\"usage\":");
        write_usage(&mut out, self.turn.usage.unwrap_or_default());
        out.push(b'}');
        out
    }
}

/// Appends already-escaped string contents between quotes.
fn write_quoted_escaped(out: &mut Vec<u8>, escaped: &[u8]) {
    out.push(b'"');
    out.extend_from_slice(escaped);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::ThinkingBlock;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    fn opts(include_usage: bool) -> OpenAiStreamOptions {
        OpenAiStreamOptions {
            id: "chatcmpl-test".to_owned(),
            model: "gpt-4o".to_owned(),
            created: 1_700_000_000,
            include_usage,
            tool_call_id_prefix: "call_3f9a2c_".to_owned(),
            tool_names: ToolNameMap::default(),
            web_search: false,
        }
    }

    /// An upstream event payload with the given parts and extra response fields.
    fn upstream(parts: Value, finish: Option<&str>, usage: Option<Value>) -> String {
        let mut candidate = json!({"content": {"role": "model", "parts": parts}});
        if let Some(finish) = finish {
            candidate["finishReason"] = json!(finish);
        }
        let mut response =
            json!({"candidates": [candidate], "modelVersion": "gemini-3-flash-a", "responseId": "r1"});
        if let Some(usage) = usage {
            response["usageMetadata"] = usage;
        }
        json!({"response": response, "traceId": "b024eecf3a9f3c5a", "metadata": {}}).to_string()
    }

    fn usage_json(prompt: u64, candidates: u64, thoughts: u64, cached: u64) -> Value {
        json!({"promptTokenCount": prompt, "candidatesTokenCount": candidates, "thoughtsTokenCount": thoughts,
               "cachedContentTokenCount": cached, "totalTokenCount": prompt + candidates + thoughts})
    }

    fn run(stream: &mut OpenAiStream, events: &[String]) -> Vec<u8> {
        let mut out = Vec::new();
        for event in events {
            stream.on_event(&mut event.clone().into_bytes(), &mut out).unwrap();
        }
        stream.finish(&mut out);
        out
    }

    /// The JSON frames of an output, and whether it ended with `[DONE]`.
    fn frames(out: &[u8]) -> (Vec<Value>, bool) {
        let text = std::str::from_utf8(out).unwrap();
        assert!(text.ends_with("\n\n"), "frames end with a blank line: {text:?}");
        let mut frames = Vec::new();
        let mut done = false;
        for frame in text.split_terminator("\n\n") {
            let data = frame.strip_prefix("data: ").unwrap();
            assert!(!done, "nothing follows [DONE]");
            if data == "[DONE]" {
                done = true;
            } else {
                frames.push(serde_json::from_str(data).unwrap());
            }
        }
        (frames, done)
    }

    fn deltas(frames: &[Value]) -> Vec<Value> {
        frames
            .iter()
            .filter(|f| !f["choices"].as_array().unwrap().is_empty())
            .map(|f| f["choices"][0]["delta"].clone())
            .collect()
    }

    fn finish_reasons(frames: &[Value]) -> Vec<String> {
        frames
            .iter()
            .filter_map(|f| f["choices"].get(0)?["finish_reason"].as_str().map(str::to_owned))
            .collect()
    }

    #[test]
    fn text_and_thoughts_become_content_and_reasoning_after_a_role_frame() {
        let events = [
            upstream(json!([{"text": "**Plan** the answer", "thought": true}]), None, None),
            upstream(json!([{"text": "Hello"}, {"text": ""}]), None, None),
            upstream(json!([{"text": " world"}]), Some("STOP"), Some(usage_json(10, 2, 5, 0))),
        ];
        let mut stream = OpenAiStream::new(opts(false));
        let (frames, done) = frames(&run(&mut stream, &events));
        assert!(done);
        assert_eq!(
            deltas(&frames),
            [
                json!({"role": "assistant", "content": ""}),
                json!({"reasoning_content": "**Plan** the answer"}),
                json!({"content": "Hello"}),
                json!({"content": " world"}),
                json!({}),
            ]
        );
        assert_eq!(finish_reasons(&frames), ["stop"]);
        for frame in &frames {
            assert_eq!(frame["id"], "chatcmpl-test");
            assert_eq!(frame["object"], "chat.completion.chunk");
            assert_eq!(frame["created"], 1_700_000_000);
            assert_eq!(frame["model"], "gpt-4o");
            assert_eq!(frame["choices"][0]["index"], 0);
            assert_eq!(frame["choices"][0]["logprobs"], Value::Null);
        }
        assert!(stream.finished_by_upstream());
        assert!(stream.emitted_anything());
    }

    #[test]
    fn function_calls_become_indexed_tool_call_deltas_and_finish_as_tool_calls() {
        for upstream_reason in ["STOP", "OTHER"] {
            let events = [
                upstream(json!([{"text": "Let me check."}]), None, None),
                upstream(
                    json!([{"functionCall": {"name": "get_weather", "args": {"city": "Paris", "days": 3}}},
                           {"functionCall": {"name": "get_time", "args": {}, "id": "toolu_vrtx_01"}}]),
                    Some(upstream_reason),
                    None,
                ),
            ];
            let (frames, _) = frames(&run(&mut OpenAiStream::new(opts(false)), &events));
            let deltas = deltas(&frames);
            assert_eq!(
                deltas[2],
                json!({"tool_calls": [{"index": 0, "id": "call_3f9a2c_0", "type": "function",
                       "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\",\"days\":3}"}}]})
            );
            assert_eq!(
                deltas[3],
                json!({"tool_calls": [{"index": 1, "id": "toolu_vrtx_01", "type": "function",
                       "function": {"name": "get_time", "arguments": "{}"}}]})
            );
            assert_eq!(finish_reasons(&frames), ["tool_calls"]);
        }
    }

    #[test]
    fn maps_upstream_finish_reasons() {
        for (upstream_reason, expected) in [
            ("STOP", "stop"),
            ("MAX_TOKENS", "length"),
            ("SAFETY", "content_filter"),
            ("RECITATION", "content_filter"),
            ("BLOCKLIST", "content_filter"),
            ("PROHIBITED_CONTENT", "content_filter"),
            ("SPII", "content_filter"),
            ("IMAGE_SAFETY", "content_filter"),
            ("OTHER", "stop"),
        ] {
            let events = [upstream(json!([{"text": "x"}]), Some(upstream_reason), None)];
            let (frames, _) = frames(&run(&mut OpenAiStream::new(opts(false)), &events));
            assert_eq!(finish_reasons(&frames), [expected], "{upstream_reason}");
        }
    }

    #[test]
    fn usage_arriving_after_the_finish_chunk_lands_in_the_final_usage_chunk() {
        let events = [
            upstream(json!([{"text": "OK"}]), None, Some(usage_json(21, 1, 100, 0))),
            upstream(json!([{"text": "", "thoughtSignature": "sig"}]), Some("STOP"), None),
            json!({"response": {"candidates": [], "usageMetadata": usage_json(21, 3, 109, 16)}}).to_string(),
        ];
        let mut stream = OpenAiStream::new(opts(true));
        let (frames, done) = frames(&run(&mut stream, &events));
        assert!(done);
        assert_eq!(finish_reasons(&frames), ["stop"]);
        let last = frames.last().unwrap();
        assert_eq!(last["choices"], json!([]));
        assert_eq!(
            last["usage"],
            json!({"prompt_tokens": 21, "completion_tokens": 112, "total_tokens": 133,
                   "prompt_tokens_details": {"cached_tokens": 16},
                   "completion_tokens_details": {"reasoning_tokens": 109}})
        );
        assert_eq!(
            stream.usage(),
            Some(Usage { prompt: 21, candidates: 3, thoughts: 109, cached: 16, total: 133 })
        );
    }

    #[test]
    fn a_stream_without_finish_reason_ends_with_length_usage_and_done() {
        let events = [upstream(json!([{"text": "cut mid-"}]), None, Some(usage_json(5, 3, 0, 0)))];
        let mut stream = OpenAiStream::new(opts(true));
        let out = run(&mut stream, &events);
        let (frames, done) = frames(&out);
        assert!(done);
        assert!(!stream.finished_by_upstream());
        assert_eq!(finish_reasons(&frames), ["length"]);
        assert_eq!(frames.last().unwrap()["usage"]["total_tokens"], 8);
        let mut again = Vec::new();
        stream.finish(&mut again);
        assert!(again.is_empty(), "finish is idempotent");
    }

    #[test]
    fn a_stream_that_fails_after_content_ends_with_an_error_event_not_a_finish() {
        let events = [upstream(json!([{"text": "half an ans"}]), None, Some(usage_json(5, 3, 0, 0)))];
        let mut stream = OpenAiStream::new(opts(true));
        let mut out = Vec::new();
        for event in &events {
            stream.on_event(&mut event.clone().into_bytes(), &mut out).unwrap();
        }
        let error = ClientError::new(502, crate::error::ErrorKind::Api, "the upstream connection broke");
        stream.fail(&error, &mut out);
        let text = String::from_utf8(out).unwrap();
        let payloads: Vec<&str> =
            text.split("\n\n").filter_map(|frame| frame.strip_prefix("data: ")).collect();
        assert!(!payloads.contains(&"[DONE]"), "no [DONE] after an error: {text}");
        let last: Value = serde_json::from_str(payloads.last().unwrap()).unwrap();
        assert_eq!(last["error"]["message"], "the upstream connection broke", "{text}");
        let frames: Vec<Value> =
            payloads[..payloads.len() - 1].iter().map(|p| serde_json::from_str(p).unwrap()).collect();
        assert!(finish_reasons(&frames).is_empty(), "no finish_reason: {text}");
        let mut again = Vec::new();
        stream.finish(&mut again);
        stream.fail(&error, &mut again);
        assert!(again.is_empty(), "the stream is closed once");
    }

    #[test]
    fn an_empty_stream_still_closes_properly() {
        let mut stream = OpenAiStream::new(opts(false));
        let mut out = Vec::new();
        stream.on_event(&mut upstream(json!([]), None, None).into_bytes(), &mut out).unwrap();
        assert!(!stream.emitted_anything(), "the gateway may still retry");
        stream.finish(&mut out);
        let (frames, done) = frames(&out);
        assert!(done);
        assert_eq!(deltas(&frames), [json!({"role": "assistant", "content": ""}), json!({})]);
        assert_eq!(finish_reasons(&frames), ["length"]);
    }

    #[test]
    fn without_include_usage_there_is_no_usage_chunk() {
        let events = [upstream(json!([{"text": "hi"}]), Some("STOP"), Some(usage_json(1, 1, 0, 0)))];
        let (frames, _) = frames(&run(&mut OpenAiStream::new(opts(false)), &events));
        assert!(frames.iter().all(|f| f.get("usage").is_none()));
    }

    #[test]
    fn an_in_stream_error_is_returned_before_anything_is_written() {
        let mut stream = OpenAiStream::new(opts(false));
        let mut out = Vec::new();
        let mut event = br#"{"error":{"code":503,"message":"No capacity available for model gemini-3-flash on the server","status":"UNAVAILABLE"}}"#.to_vec();
        let err = stream.on_event(&mut event, &mut out).unwrap_err();
        assert_eq!(
            err,
            StreamError::Upstream {
                status: 503,
                google_status: Some("UNAVAILABLE".to_owned()),
                message: "No capacity available for model gemini-3-flash on the server".to_owned(),
            }
        );
        assert!(out.is_empty());
        assert!(!stream.emitted_anything());
    }

    #[test]
    fn invalid_json_is_an_error() {
        let mut stream = OpenAiStream::new(opts(false));
        assert!(matches!(
            stream.on_event(&mut b"{not json".to_vec(), &mut Vec::new()),
            Err(StreamError::InvalidJson(_))
        ));
    }

    #[test]
    fn a_function_call_signature_is_captured_under_its_client_id() {
        let events = [upstream(
            json!([{"functionCall": {"name": "a", "args": {}}, "thoughtSignature": "sigA"},
                   {"functionCall": {"name": "b", "args": {}}}]),
            Some("STOP"),
            None,
        )];
        let mut stream = OpenAiStream::new(opts(false));
        run(&mut stream, &events);
        assert_eq!(stream.take_signatures(), [CapturedSignature::tool_call("call_3f9a2c_0", "sigA")]);
        assert!(stream.take_signatures().is_empty(), "taken once");
    }

    #[test]
    fn a_final_text_signature_is_attached_to_the_first_unsigned_tool_call() {
        let events = [
            upstream(
                json!([{"functionCall": {"name": "a", "args": {}}}, {"functionCall": {"name": "b", "args": {}}}]),
                None,
                None,
            ),
            upstream(json!([{"text": "", "thoughtSignature": "turnSig"}]), Some("STOP"), None),
        ];
        let mut stream = OpenAiStream::new(opts(false));
        let (frames, _) = frames(&run(&mut stream, &events));
        assert_eq!(deltas(&frames).len(), 4, "role, two tool calls, finish: the empty text emits nothing");
        assert_eq!(stream.take_signatures(), [CapturedSignature::tool_call("call_3f9a2c_0", "turnSig")]);
    }

    #[test]
    fn a_thought_signature_seen_before_the_tool_call_is_attached_too() {
        let events = [upstream(
            json!([{"text": "thinking", "thought": true, "thought_signature": "thoughtSig"},
                   {"functionCall": {"name": "a", "args": {}, "id": "toolu_1"}}]),
            Some("OTHER"),
            None,
        )];
        let mut stream = OpenAiStream::new(opts(false));
        run(&mut stream, &events);
        assert_eq!(stream.take_signatures(), [CapturedSignature::tool_call("toolu_1", "thoughtSig")]);
    }

    /// A Claude-shaped signature (R-form: base64 of base64 text starting with `E`).
    fn claude_sig() -> String {
        use base64::Engine;
        let engine = base64::engine::general_purpose::STANDARD;
        let raw: Vec<u8> = [0x12u8, 48].into_iter().chain((0..48u8).map(|i| i.wrapping_mul(37))).collect();
        engine.encode(engine.encode(raw))
    }

    #[test]
    fn a_claude_turn_leaves_its_whole_thinking_block_under_the_first_call() {
        let sig = claude_sig();
        let events = [
            upstream(json!([{"text": "First, ", "thought": true}]), None, None),
            upstream(json!([{"text": "the weather.", "thought": true, "thoughtSignature": sig}]), None, None),
            upstream(
                json!([{"functionCall": {"name": "a", "args": {}, "id": "toolu_1"}},
                       {"functionCall": {"name": "b", "args": {}, "id": "toolu_2"}}]),
                Some("OTHER"),
                None,
            ),
        ];
        let block = ThinkingBlock { text: "First, the weather.".into(), signature: sig.clone() };
        for fold in [false, true] {
            let captured = if fold {
                let mut f = OpenAiFold::new(opts(false));
                for e in &events {
                    f.on_event(&mut e.clone().into_bytes()).unwrap();
                }
                f.take_signatures()
            } else {
                let mut stream = OpenAiStream::new(opts(false));
                run(&mut stream, &events);
                stream.take_signatures()
            };
            assert_eq!(
                captured,
                [
                    CapturedSignature::thinking_block("toolu_1", &block),
                    CapturedSignature::tool_call("toolu_1", &sig)
                ]
            );
        }
    }

    #[test]
    fn thinking_over_the_bound_is_not_kept_as_a_block() {
        let sig = claude_sig();
        let long = "x".repeat(crate::signature::MAX_THINKING_BLOCK_BYTES / 2 + 1);
        let events = [
            upstream(json!([{"text": long, "thought": true}]), None, None),
            upstream(json!([{"text": long, "thought": true, "thoughtSignature": sig}]), None, None),
            upstream(
                json!([{"functionCall": {"name": "a", "args": {}, "id": "toolu_1"}}]),
                Some("OTHER"),
                None,
            ),
        ];
        let mut stream = OpenAiStream::new(opts(false));
        run(&mut stream, &events);
        let captured = stream.take_signatures();
        assert_eq!(
            captured,
            [CapturedSignature::tool_call("toolu_1", &sig)],
            "no block, the call's signature only"
        );
    }

    #[test]
    fn a_claude_signature_on_the_call_still_makes_a_block() {
        // The upstream may sign the call when it shows no thoughts: the block is then the signature alone.
        let sig = claude_sig();
        let events = [upstream(
            json!([{"functionCall": {"name": "a", "args": {}, "id": "toolu_9"}, "thoughtSignature": sig}]),
            Some("STOP"),
            None,
        )];
        let mut stream = OpenAiStream::new(opts(false));
        run(&mut stream, &events);
        let block = ThinkingBlock { text: String::new(), signature: sig.clone() };
        assert_eq!(stream.take_signatures()[0], CapturedSignature::thinking_block("toolu_9", &block));
    }

    #[test]
    fn a_text_only_turn_captures_nothing() {
        let events =
            [upstream(json!([{"text": "hi"}, {"text": "", "thoughtSignature": "s"}]), Some("STOP"), None)];
        let mut stream = OpenAiStream::new(opts(false));
        run(&mut stream, &events);
        assert!(stream.take_signatures().is_empty());
    }

    #[test]
    fn strings_are_escaped_for_json_and_javascript() {
        let text = "quote\" back\\ nl\n tab\t ctl\u{1} ls\u{2028} 世界 🎉";
        let events = [upstream(json!([{"text": text}]), Some("STOP"), None)];
        let out = run(&mut OpenAiStream::new(opts(false)), &events);
        assert!(!String::from_utf8(out.clone()).unwrap().contains('\u{2028}'));
        let (frames, _) = frames(&out);
        assert_eq!(deltas(&frames)[1]["content"], text);
    }

    #[test]
    fn inline_images_are_shown_as_markdown() {
        let events = [upstream(
            json!([{"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}]),
            Some("STOP"),
            None,
        )];
        let (frames, _) = frames(&run(&mut OpenAiStream::new(opts(false)), &events));
        assert_eq!(deltas(&frames)[1]["content"], "![image](data:image/png;base64,iVBORw0KGgo=)");
    }

    #[test]
    fn the_fold_builds_one_chat_completion() {
        let events = [
            upstream(json!([{"text": "ponder", "thought": true}]), None, None),
            upstream(json!([{"text": "Calling \"a\"."}]), None, None),
            upstream(
                json!([{"functionCall": {"name": "a", "args": {"q": "x"}}, "thoughtSignature": "sig"}]),
                Some("STOP"),
                Some(usage_json(7, 4, 2, 1)),
            ),
        ];
        let mut fold = OpenAiFold::new(opts(false));
        for event in &events {
            fold.on_event(&mut event.clone().into_bytes()).unwrap();
        }
        assert_eq!(fold.take_signatures().len(), 1);
        assert!(fold.finished_by_upstream());
        let body: Value = serde_json::from_slice(&fold.finish()).unwrap();
        assert_eq!(
            body,
            json!({"id": "chatcmpl-test", "object": "chat.completion", "created": 1_700_000_000, "model": "gpt-4o",
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": "Calling \"a\".",
                       "reasoning_content": "ponder",
                       "tool_calls": [{"id": "call_3f9a2c_0", "type": "function", "function": {"name": "a", "arguments": "{\"q\":\"x\"}"}}],
                       "refusal": null}, "logprobs": null, "finish_reason": "tool_calls"}],
                   "usage": {"prompt_tokens": 7, "completion_tokens": 6, "total_tokens": 13,
                             "prompt_tokens_details": {"cached_tokens": 1}, "completion_tokens_details": {"reasoning_tokens": 2}}})
        );
    }

    #[test]
    fn the_fold_of_a_cut_tool_only_stream_has_null_content() {
        let mut fold = OpenAiFold::new(opts(false));
        fold.on_event(&mut upstream(json!([{"functionCall": {"name": "a"}}]), None, None).into_bytes())
            .unwrap();
        let body: Value = serde_json::from_slice(&fold.finish()).unwrap();
        assert_eq!(body["choices"][0]["message"]["content"], Value::Null);
        assert!(body["choices"][0]["message"].get("reasoning_content").is_none());
        assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(body["usage"]["total_tokens"], 0);
    }

    #[test]
    fn the_fold_knows_whether_it_collected_anything() {
        let mut fold = OpenAiFold::new(opts(false));
        fold.on_event(&mut upstream(json!([{"text": ""}]), None, None).into_bytes()).unwrap();
        assert!(!fold.emitted_anything(), "an empty part is no content");
        fold.on_event(&mut upstream(json!([{"text": "hm", "thought": true}]), None, None).into_bytes())
            .unwrap();
        assert!(fold.emitted_anything());
    }

    #[test]
    fn the_fold_of_a_cut_text_stream_finishes_with_length() {
        let mut fold = OpenAiFold::new(opts(false));
        fold.on_event(&mut upstream(json!([{"text": "partial"}]), None, None).into_bytes()).unwrap();
        let body: Value = serde_json::from_slice(&fold.finish()).unwrap();
        assert_eq!(body["choices"][0]["message"]["content"], "partial");
        assert_eq!(body["choices"][0]["finish_reason"], "length");
    }

    /// A recorded-shape upstream stream: thoughts, multi-byte text, a tool call with a signature, a final
    /// signature part, STOP without usage, then a usage-only chunk.
    fn recorded_stream(line_end: &str) -> Vec<u8> {
        let events = [
            upstream(json!([{"text": "**Considering the request**\nThe user wants a greeting.", "thought": true}]), None, Some(usage_json(120, 0, 40, 0))),
            upstream(json!([{"text": "héllo 世界 🎉, "}]), None, Some(usage_json(120, 5, 40, 0))),
            upstream(json!([{"text": "here is \"quoted\" text\nwith a newline and \u{2028}."}]), None, Some(usage_json(120, 18, 40, 0))),
            upstream(json!([{"functionCall": {"name": "lookup", "args": {"q": "café", "n": 2, "nested": {"list": [1.5, null, true]}}}, "thoughtSignature": "EtwBCtkBAb4+9vs="}]), None, None),
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

    /// Frames the byte stream as chunked, rewrites it, and returns the client bytes and captured signatures.
    fn rewrite(bytes: &[u8], cuts: &[usize]) -> (Vec<u8>, Vec<CapturedSignature>) {
        let mut stream = OpenAiStream::new(opts(true));
        let mut out = Vec::new();
        crate::sse::frame_in_cuts(bytes, cuts, |data| stream.on_event(data, &mut out).unwrap());
        stream.finish(&mut out);
        (out, stream.take_signatures())
    }

    #[test]
    fn the_recorded_stream_rewrites_as_expected() {
        let (out, signatures) = rewrite(&recorded_stream("\n"), &[]);
        let (frames, done) = frames(&out);
        assert!(done);
        let deltas = deltas(&frames);
        assert_eq!(deltas[1]["reasoning_content"], "**Considering the request**\nThe user wants a greeting.");
        assert_eq!(deltas[2]["content"], "héllo 世界 🎉, ");
        let arguments: Value =
            serde_json::from_str(deltas[4]["tool_calls"][0]["function"]["arguments"].as_str().unwrap())
                .unwrap();
        assert_eq!(arguments, json!({"q": "café", "n": 2, "nested": {"list": [1.5, null, true]}}));
        assert_eq!(finish_reasons(&frames), ["tool_calls"]);
        assert_eq!(frames.last().unwrap()["usage"]["prompt_tokens_details"]["cached_tokens"], 64);
        assert_eq!(signatures, [CapturedSignature::tool_call("call_3f9a2c_0", "EtwBCtkBAb4+9vs=")]);
    }

    #[test]
    fn every_single_split_point_gives_identical_output() {
        for line_end in ["\n", "\r\n", "\r"] {
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
}
