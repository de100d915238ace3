//! Upstream `v1internal` events → Responses API stream events, or one folded `response` object.
//!
//! One machine, [`Turn`], decides the output items: thoughts become a `reasoning` item (its summary the
//! thought text when `reasoning.summary` is not `none`), text a `message` item with one `output_text` part,
//! each `functionCall` a `function_call` item, or a `custom_tool_call` item when it calls a declared custom
//! tool (its `input` argument unwrapped). Every event carries a `sequence_number` that increases by one from
//! 0, and every item an `output_index` in the order items were added.
//!
//! A `reasoning` item carries the turn's sealed state in `encrypted_content` ([`super::seal`]) so the next
//! turn can restore the exact signature. Google signs a turn late (Gemini 3 on the first call or the last
//! part, Claude on the last thought part), so a reasoning item stays open until its signature arrives or the
//! turn ends; a signature seen without any thought opens a reasoning item of its own. Signatures are also
//! captured for the store by tool call id and thinking text, like the other protocols do.
//!
//! A web search (Google Search grounding) ends with its results: `url_citation` annotations on the open
//! message and `web_search_call` items ([`super::search`]).

use std::sync::Arc;

use serde_json::{json, Value};

use super::items::{Item, Kind};
use super::seal::{Family, ReasoningState, SignedOn};
use super::search::{ResponsesSearch, WebSearchOptions};
use super::tools::ToolRoute;
use crate::error::ClientError;
use crate::inner::ToolNameMap;
use crate::signature::{CapturedSignature, ModelFamily};
use crate::stream::chunk::{ChunkParser, FinishReason, Part, Usage};
use crate::stream::{
    client_tool_call_id, is_empty_payload, Fold, StreamError, ToolCallSignatures, Translator,
};

/// Seals a reasoning state into `encrypted_content` (the gateway's keys and a fresh nonce per call).
pub trait Sealer: Send + Sync {
    fn seal(&self, state: &ReasoningState) -> String;
}

/// Per-request parameters of the client-facing response.
#[derive(Clone)]
pub struct ResponsesStreamOptions {
    /// `resp_…`.
    pub id: String,
    /// The model name the client asked for.
    pub model: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Unique per request; a call without an upstream id gets this prefix and its index as `call_id`.
    pub tool_call_id_prefix: String,
    pub tool_names: ToolNameMap,
    /// Where each declared tool's calls go back to: custom tools answer as `custom_tool_call` items, and a
    /// namespaced tool's calls carry its `namespace`.
    pub tools: Vec<ToolRoute>,
    /// The upstream model's family, sealed with each signature.
    pub family: ModelFamily,
    pub sealer: Arc<dyn Sealer>,
    /// Whether thought text is shown as the reasoning summary.
    pub show_summary: bool,
    /// A Google Search (`requestType` `web_search`): its results become `web_search_call` items and
    /// `url_citation` annotations.
    pub web_search: Option<WebSearchOptions>,
}

/// The state of one response, shared by the streaming and the folded output.
struct Turn {
    opts: ResponsesStreamOptions,
    parser: ChunkParser,
    items: Vec<Item>,
    /// The open reasoning item (awaiting more thought or its signature) and the open message item.
    reasoning: Option<usize>,
    message: Option<usize>,
    /// Whether a reasoning item of this response already carries a signature.
    signed: bool,
    tool_calls: u32,
    upstream_finish: Option<FinishReason>,
    usage: Option<Usage>,
    signatures: ToolCallSignatures,
    search: Option<ResponsesSearch>,
    /// Stream output: events are written here when streaming, then moved to the client's buffer.
    streaming: bool,
    out: Vec<u8>,
    sequence: u64,
    started: bool,
    ended: bool,
}

impl Turn {
    fn new(opts: ResponsesStreamOptions, streaming: bool) -> Self {
        Turn {
            search: opts.web_search.clone().map(ResponsesSearch::new),
            opts,
            parser: ChunkParser::new(),
            items: Vec::new(),
            reasoning: None,
            message: None,
            signed: false,
            tool_calls: 0,
            upstream_finish: None,
            usage: None,
            signatures: ToolCallSignatures::default(),
            streaming,
            out: Vec::new(),
            sequence: 0,
            started: false,
            ended: false,
        }
    }

    /// Appends one event frame; `body` gets its `type` and `sequence_number`.
    fn event(&mut self, kind: &str, mut body: Value) {
        if !self.streaming {
            return;
        }
        if let Some(map) = body.as_object_mut() {
            map.insert("type".into(), Value::from(kind));
            map.insert("sequence_number".into(), Value::from(self.sequence));
        }
        self.sequence += 1;
        self.out.extend_from_slice(b"event: ");
        self.out.extend_from_slice(kind.as_bytes());
        self.out.extend_from_slice(b"\ndata: ");
        // A `Value` of strings and numbers always serializes.
        let _ = serde_json::to_writer(&mut self.out, &body);
        self.out.extend_from_slice(b"\n\n");
    }

    /// `response.created` and `response.in_progress`, once, before anything else.
    fn start(&mut self) {
        if self.started {
            return;
        }
        self.started = true;
        let response = self.response("in_progress");
        self.event("response.created", json!({"response": response}));
        let response = self.response("in_progress");
        self.event("response.in_progress", json!({"response": response}));
    }

    fn item_event(&mut self, kind: &str, index: usize, extra: Value) {
        let mut body = json!({"output_index": index, "item_id": self.items[index].id});
        if let (Some(map), Value::Object(extra)) = (body.as_object_mut(), extra) {
            map.extend(extra);
        }
        self.event(kind, body);
    }

    fn add_item(&mut self, item: Item) -> usize {
        self.start();
        let index = self.items.len();
        self.items.push(item);
        let json = self.items[index].json();
        self.event("response.output_item.added", json!({"output_index": index, "item": json}));
        match self.items[index].kind {
            Kind::Message => {
                let part = json!({"type": "output_text", "text": "", "annotations": [], "logprobs": []});
                self.item_event(
                    "response.content_part.added",
                    index,
                    json!({"content_index": 0, "part": part}),
                );
            }
            Kind::Reasoning | Kind::FunctionCall | Kind::CustomToolCall | Kind::WebSearchCall => {}
        }
        index
    }

    fn new_id(&self, prefix: &str) -> String {
        format!("{prefix}_{}_{}", &self.opts.id.trim_start_matches("resp_"), self.items.len())
    }

    fn on_event(&mut self, data: &mut [u8]) -> Result<(), StreamError> {
        if is_empty_payload(data) || self.ended {
            return Ok(());
        }
        // The chunk borrows `data`, not the parser, so `self` is free again once it is parsed.
        let chunk = self.parser.parse(data)?;
        self.on_chunk(chunk);
        Ok(())
    }

    fn on_chunk(&mut self, mut chunk: crate::stream::Chunk<'_>) {
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        self.search.iter_mut().zip(chunk.grounding.take()).for_each(|(search, g)| search.absorb(g));
        let finished = self.upstream_finish.is_some();
        for part in &chunk.parts {
            match part {
                Part::Text { text, thought: true, signature } => {
                    if finished {
                        continue;
                    }
                    self.on_thought(&text.to_str(), *signature);
                }
                Part::Text { text, thought: false, signature } => {
                    if !text.is_empty() && !finished {
                        self.on_text(&text.to_str());
                    }
                    if let Some(signature) = signature {
                        self.signatures.on_turn_signature(signature);
                        self.sign_reasoning(signature, SignedOn::Text);
                    }
                }
                Part::FunctionCall { id, name, args, signature } => {
                    if !finished {
                        self.on_call(*id, name, args, *signature);
                    }
                }
                Part::InlineData { .. } | Part::FileData { .. } | Part::Other => {}
            }
        }
        if let Some(reason) = chunk.finish_reason {
            self.upstream_finish.get_or_insert(reason);
        }
    }

    fn on_thought(&mut self, text: &str, signature: Option<&str>) {
        let index = match self.reasoning {
            Some(index) => index,
            None => {
                self.close_message();
                let index = self.add_item(Item::new(Kind::Reasoning, self.new_id("rs")));
                self.reasoning = Some(index);
                index
            }
        };
        if !text.is_empty() {
            self.items[index].thought.push_str(text);
            if self.opts.show_summary {
                if self.items[index].text.is_empty() {
                    let part = json!({"type": "summary_text", "text": ""});
                    self.item_event(
                        "response.reasoning_summary_part.added",
                        index,
                        json!({"summary_index": 0, "part": part}),
                    );
                }
                self.items[index].text.push_str(text);
                self.item_event(
                    "response.reasoning_summary_text.delta",
                    index,
                    json!({"summary_index": 0, "delta": text}),
                );
            }
        }
        if let Some(signature) = signature {
            self.signatures.on_turn_signature(signature);
            let thought = &self.items[index].thought;
            self.signatures.captured.push(CapturedSignature::thinking(thought, signature));
            self.sign_reasoning(signature, SignedOn::Thought);
        }
    }

    fn on_text(&mut self, text: &str) {
        let index = match self.message {
            Some(index) => index,
            None => {
                let index = self.add_item(Item::new(Kind::Message, self.new_id("msg")));
                self.message = Some(index);
                index
            }
        };
        self.items[index].text.push_str(text);
        self.item_event(
            "response.output_text.delta",
            index,
            json!({"content_index": 0, "delta": text, "logprobs": []}),
        );
    }

    fn on_call(&mut self, upstream_id: Option<&str>, name: &str, args: &str, signature: Option<&str>) {
        self.close_message();
        let call = self.tool_calls;
        self.tool_calls += 1;
        let call_id = client_tool_call_id(upstream_id, &self.opts.tool_call_id_prefix, call).into_owned();
        self.signatures.on_tool_call(call, &call_id, signature);
        if let Some(signature) = signature {
            self.sign_reasoning(signature, SignedOn::Call);
        }
        let client_name = self.opts.tool_names.client_name(name);
        let route = self.opts.tools.iter().find(|r| r.qualified == client_name);
        let custom = route.is_some_and(|r| r.custom);
        let (kind, prefix) = if custom { (Kind::CustomToolCall, "ctc") } else { (Kind::FunctionCall, "fc") };
        let mut item = Item::new(kind, self.new_id(prefix));
        item.call_id = call_id;
        item.name = route.map_or_else(|| client_name.to_owned(), |r| r.name.clone());
        item.namespace = route.and_then(|r| r.namespace.clone());
        let index = self.add_item(item);
        let text = if custom { custom_input(args) } else { args.to_owned() };
        let (delta, done, field) = if custom {
            ("response.custom_tool_call_input.delta", "response.custom_tool_call_input.done", "input")
        } else {
            ("response.function_call_arguments.delta", "response.function_call_arguments.done", "arguments")
        };
        self.item_event(delta, index, json!({"delta": text}));
        self.items[index].text = text;
        let full = self.items[index].text.clone();
        let name = self.items[index].name.clone();
        self.item_event(done, index, json!({field: full, "name": name}));
        self.finish_item(index);
    }

    /// The turn's signature arrived: it goes to the open reasoning item, or to a reasoning item of its own
    /// when no thought came before (Gemini signs calls and text without thoughts).
    fn sign_reasoning(&mut self, signature: &str, signed_on: SignedOn) {
        if self.signed && self.reasoning.is_none() {
            return;
        }
        let index = match self.reasoning {
            Some(index) => index,
            None => {
                let index = self.add_item(Item::new(Kind::Reasoning, self.new_id("rs")));
                self.reasoning = Some(index);
                index
            }
        };
        let item = &mut self.items[index];
        item.signature = Some(signature.to_owned());
        item.signed_on = signed_on;
        self.signed = true;
        self.close_reasoning();
    }

    fn close_reasoning(&mut self) {
        let Some(index) = self.reasoning.take() else {
            return;
        };
        let item = &self.items[index];
        let state = ReasoningState {
            family: Family::from(self.opts.family),
            thought: item.thought.clone(),
            signature: item.signature.clone(),
            signed_on: item.signed_on,
        };
        let sealed = self.opts.sealer.seal(&state);
        self.items[index].encrypted = Some(sealed);
        if !self.items[index].text.is_empty() {
            let text = self.items[index].text.clone();
            let part = json!({"type": "summary_text", "text": text});
            self.item_event(
                "response.reasoning_summary_text.done",
                index,
                json!({"summary_index": 0, "text": text}),
            );
            self.item_event(
                "response.reasoning_summary_part.done",
                index,
                json!({"summary_index": 0, "part": part}),
            );
        }
        self.finish_item(index);
    }

    fn close_message(&mut self) {
        let Some(index) = self.message.take() else {
            return;
        };
        let text = self.items[index].text.clone();
        self.item_event(
            "response.output_text.done",
            index,
            json!({"content_index": 0, "text": text, "logprobs": []}),
        );
        let part = self.items[index].text_part();
        self.item_event("response.content_part.done", index, json!({"content_index": 0, "part": part}));
        self.finish_item(index);
    }

    /// A web search's results, once the upstream ended (Google reports them last): the open message's
    /// annotations before it closes, then one `web_search_call` item per query, each through its status
    /// events. The fold moves those items before the message (see [`super::search`]).
    fn finish_search(&mut self) {
        let Some(search) = self.search.take() else {
            return;
        };
        if let Some(index) = self.message {
            let annotations = search.annotations(&self.items, index);
            for (i, annotation) in annotations.iter().enumerate() {
                let body = json!({"content_index": 0, "annotation_index": i, "annotation": annotation});
                self.item_event("response.output_text.annotation.added", index, body);
            }
            self.items[index].annotations = annotations;
        }
        self.close_message();
        let first_new = self.items.len();
        for action in search.actions() {
            let mut item = Item::new(Kind::WebSearchCall, self.new_id("ws"));
            item.action = action;
            let index = self.add_item(item);
            for status in ["in_progress", "searching", "completed"] {
                self.item_event(&format!("response.web_search_call.{status}"), index, json!({}));
            }
            self.finish_item(index);
        }
        let first_message = self.items.iter().position(|i| i.kind == Kind::Message);
        if let (false, Some(at)) = (self.streaming, first_message) {
            let searches = self.items.len() - first_new;
            self.items[at..].rotate_right(searches);
        }
    }

    fn finish_item(&mut self, index: usize) {
        self.items[index].done = true;
        let json = self.items[index].json();
        self.event("response.output_item.done", json!({"output_index": index, "item": json}));
    }

    /// `completed`, or `incomplete` with its reason: a tool call always completes the turn (Claude tool
    /// turns end with OTHER); MAX_TOKENS or a cut stream is `max_output_tokens`, a filter `content_filter`.
    fn status(&self) -> (&'static str, Option<&'static str>) {
        if self.tool_calls > 0 {
            return ("completed", None);
        }
        match self.upstream_finish {
            None | Some(FinishReason::MaxTokens) => ("incomplete", Some("max_output_tokens")),
            Some(reason) if reason.is_content_filter() => ("incomplete", Some("content_filter")),
            Some(_) => ("completed", None),
        }
    }

    /// The `response` object with the items so far.
    fn response(&self, status: &str) -> Value {
        let incomplete = (status == "incomplete").then(|| json!({"reason": self.status().1}));
        let output: Vec<Value> =
            if status == "in_progress" { Vec::new() } else { self.items.iter().map(Item::json).collect() };
        let usage = (status != "in_progress").then(|| usage_json(self.usage.unwrap_or_default()));
        json!({
            "id": self.opts.id, "object": "response", "created_at": self.opts.created_at, "status": status,
            "error": null, "incomplete_details": incomplete, "model": self.opts.model, "output": output,
            "usage": usage, "parallel_tool_calls": true, "tool_choice": "auto", "tools": [], "store": false,
            "metadata": {}, "text": {"format": {"type": "text"}},
        })
    }

    /// Closes the open items and writes the final event; the response object.
    fn end(&mut self) -> Value {
        self.start();
        self.close_reasoning();
        self.finish_search();
        self.close_message();
        self.ended = true;
        let (status, _) = self.status();
        let response = self.response(status);
        let kind = if status == "completed" { "response.completed" } else { "response.incomplete" };
        self.event(kind, json!({"response": response}));
        response
    }
}

/// `usage`: OpenAI counts reasoning inside output tokens and cached inside input, as Google does the latter.
fn usage_json(usage: Usage) -> Value {
    let output = usage.candidates + usage.thoughts;
    json!({
        "input_tokens": usage.prompt, "input_tokens_details": {"cached_tokens": usage.cached},
        "output_tokens": output, "output_tokens_details": {"reasoning_tokens": usage.thoughts},
        "total_tokens": usage.prompt + output,
    })
}

/// A custom tool's freeform input from the arguments of the function it was declared as.
fn custom_input(args: &str) -> String {
    match serde_json::from_str::<Value>(args) {
        Ok(Value::Object(mut map)) => match map.remove("input") {
            Some(Value::String(input)) => input,
            Some(other) => other.to_string(),
            None => String::new(),
        },
        _ => args.to_owned(),
    }
}

/// Rewrites one upstream stream into Responses API SSE events.
pub struct ResponsesStream {
    turn: Turn,
}

impl ResponsesStream {
    pub fn new(opts: ResponsesStreamOptions) -> Self {
        ResponsesStream { turn: Turn::new(opts, true) }
    }
}

impl Translator for ResponsesStream {
    /// Nothing is written for an error before the first event, so the gateway may still retry.
    fn on_event(&mut self, data: &mut [u8], out: &mut Vec<u8>) -> Result<(), StreamError> {
        let result = self.turn.on_event(data);
        out.append(&mut self.turn.out);
        result
    }

    /// Closes the open items and ends with `response.completed` or `response.incomplete`. Idempotent.
    fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.turn.ended {
            self.turn.end();
        }
        out.append(&mut self.turn.out);
    }

    /// The upstream failed mid-answer: an `error` event (the SDKs raise on it) and `response.failed`.
    fn fail(&mut self, error: &ClientError, out: &mut Vec<u8>) {
        if self.turn.ended {
            return;
        }
        self.turn.start();
        self.turn.ended = true;
        let body = crate::protocol::openai_chat::error_body(error);
        let inner = body.get("error").cloned().unwrap_or(Value::Null);
        let code = inner.get("code").cloned().unwrap_or(Value::Null);
        self.turn.event(
            "error",
            json!({"code": code, "message": error.message, "param": error.param, "error": inner}),
        );
        let mut response = self.turn.response("failed");
        response["error"] = json!({"code": if code.is_null() { json!("server_error") } else { code }, "message": error.message});
        self.turn.event("response.failed", json!({"response": response}));
        out.append(&mut self.turn.out);
    }

    /// `response.created` first if nothing went out yet (it is harmless and tells the client work started),
    /// then an SSE comment.
    fn keepalive(&mut self, out: &mut Vec<u8>) {
        if self.turn.ended {
            return;
        }
        self.turn.start();
        out.append(&mut self.turn.out);
        out.extend_from_slice(b": keep-alive\n\n");
    }

    fn take_signatures(&mut self) -> Vec<CapturedSignature> {
        self.turn.signatures.take()
    }

    fn finished_by_upstream(&self) -> bool {
        self.turn.upstream_finish.is_some()
    }

    fn emitted_anything(&self) -> bool {
        self.turn.started
    }

    fn usage(&self) -> Option<Usage> {
        self.turn.usage
    }
}

/// The same machine folded into one `response` object for clients that did not ask to stream.
pub struct ResponsesFold {
    turn: Turn,
}

impl ResponsesFold {
    pub fn new(opts: ResponsesStreamOptions) -> Self {
        ResponsesFold { turn: Turn::new(opts, false) }
    }
}

impl Fold for ResponsesFold {
    fn on_event(&mut self, data: &mut [u8]) -> Result<(), StreamError> {
        self.turn.on_event(data)
    }

    fn take_signatures(&mut self) -> Vec<CapturedSignature> {
        self.turn.signatures.take()
    }

    fn finished_by_upstream(&self) -> bool {
        self.turn.upstream_finish.is_some()
    }

    fn emitted_anything(&self) -> bool {
        !self.turn.items.is_empty()
    }

    fn usage(&self) -> Option<Usage> {
        self.turn.usage
    }

    fn finish(mut self) -> Vec<u8> {
        let response = self.turn.end();
        serde_json::to_vec(&response).unwrap_or_default()
    }
}
