//! The upstream's events -> legacy `text_completion` answers, streamed ([`CompletionStream`]) or folded into
//! one body ([`CompletionFold`]).
//!
//! A request with several prompts or `n > 1` makes one upstream call per choice, one after another, through
//! the same machine: the gateway calls `begin_choice` between them, and every frame or folded choice carries
//! its `index` (prompt × n + sample, as OpenAI numbers them). Only visible text is answered; thoughts stay
//! out (the legacy API has no place for them), and so do tool calls, which this API cannot declare. Usage
//! is the sum over the choices.

use crate::error::ClientError;
use crate::signature::CapturedSignature;
use crate::stream::json::{write_str, write_u64};
use crate::stream::{
    is_empty_payload, ChunkParser, FinishReason, Fold, Part, StreamError, Text, Translator, Usage,
};
use crate::Protocol;

/// Per-request parameters of the client-facing answer.
#[derive(Clone, Debug)]
pub struct CompletionOptions {
    /// The response id, `cmpl-…`.
    pub id: String,
    /// The model name the client asked for (not the upstream model).
    pub model: String,
    /// Unix seconds.
    pub created: u64,
    /// `stream_options.include_usage`: a final chunk with empty `choices` and the usage.
    pub include_usage: bool,
}

/// What one upstream call contributes to its choice.
enum Event<'a> {
    Text(Text<'a>),
    Finish(&'static str),
}

/// One choice's upstream call.
#[derive(Debug, Default)]
struct Choice {
    parser: ChunkParser,
    index: u32,
    upstream_finish: Option<FinishReason>,
    finish_sent: bool,
    usage: Option<Usage>,
    /// Usage of the choices before this one.
    earlier: Usage,
}

impl Choice {
    fn on_event(
        &mut self,
        data: &mut [u8],
        emit: &mut impl FnMut(u32, Event<'_>),
    ) -> Result<(), StreamError> {
        if is_empty_payload(data) {
            return Ok(());
        }
        let chunk = self.parser.parse(data)?;
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        for part in &chunk.parts {
            if let Part::Text { text, thought: false, .. } = part {
                if !text.is_empty() && !self.finish_sent {
                    emit(self.index, Event::Text(*text));
                }
            }
        }
        if let Some(reason) = chunk.finish_reason {
            self.upstream_finish.get_or_insert(reason);
            self.close(emit);
        }
        Ok(())
    }

    /// Emits the finish event unless it was already sent; a call cut before any finish reason reads as
    /// `length`, as in chat.
    fn close(&mut self, emit: &mut impl FnMut(u32, Event<'_>)) {
        if !self.finish_sent {
            self.finish_sent = true;
            let reason = match self.upstream_finish {
                None | Some(FinishReason::MaxTokens) => "length",
                Some(reason) if reason.is_content_filter() => "content_filter",
                Some(_) => "stop",
            };
            emit(self.index, Event::Finish(reason));
        }
    }

    /// Closes this choice and starts choice `index`, carrying the usage so far.
    fn next(&mut self, index: u32, emit: &mut impl FnMut(u32, Event<'_>)) {
        self.close(emit);
        let earlier = self.total();
        *self = Choice { index, earlier, ..Choice::default() };
    }

    /// Usage of every choice so far, this one included.
    fn total(&self) -> Usage {
        let (a, b) = (self.earlier, self.usage.unwrap_or_default());
        Usage {
            prompt: a.prompt + b.prompt,
            candidates: a.candidates + b.candidates,
            thoughts: a.thoughts + b.thoughts,
            cached: a.cached + b.cached,
            total: a.total + b.total,
        }
    }

    fn has_usage(&self) -> bool {
        self.usage.is_some() || self.earlier != Usage::default()
    }
}

/// `"id":…,"object":"text_completion","created":…,"model":…` (no braces).
fn write_response_fields(out: &mut Vec<u8>, opts: &CompletionOptions) {
    out.extend_from_slice(b"\"id\":");
    write_str(out, &opts.id);
    out.extend_from_slice(b",\"object\":\"text_completion\",\"created\":");
    write_u64(out, opts.created);
    out.extend_from_slice(b",\"model\":");
    write_str(out, &opts.model);
}

/// The usage object; completion tokens include the thoughts, as OpenAI counts reasoning tokens.
fn write_usage(out: &mut Vec<u8>, usage: Usage) {
    let completion = usage.candidates + usage.thoughts;
    out.extend_from_slice(b"{\"prompt_tokens\":");
    write_u64(out, usage.prompt);
    out.extend_from_slice(b",\"completion_tokens\":");
    write_u64(out, completion);
    out.extend_from_slice(b",\"total_tokens\":");
    write_u64(out, usage.prompt + completion);
    out.push(b'}');
}

/// One choice object; `escaped` is its text already JSON-escaped.
fn write_choice(out: &mut Vec<u8>, index: u32, escaped: &[u8], finish: Option<&str>) {
    out.extend_from_slice(b"{\"text\":\"");
    out.extend_from_slice(escaped);
    out.extend_from_slice(b"\",\"index\":");
    write_u64(out, u64::from(index));
    out.extend_from_slice(b",\"logprobs\":null,\"finish_reason\":");
    match finish {
        Some(reason) => write_str(out, reason),
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
}

/// Streams `text_completion` chunks: `data: {…,"choices":[{"text","index","logprobs":null,"finish_reason"}]}`,
/// the usage chunk when asked for, then `data: [DONE]`.
#[derive(Debug)]
pub struct CompletionStream {
    choice: Choice,
    include_usage: bool,
    /// `data: {"id":…,"object":"text_completion","created":…,"model":…,"choices":[`, rendered once.
    frame_head: Vec<u8>,
    emitted: bool,
    done: bool,
    scratch: Vec<u8>,
}

impl CompletionStream {
    pub fn new(opts: CompletionOptions) -> Self {
        let mut frame_head = Vec::with_capacity(128 + opts.id.len() + opts.model.len());
        frame_head.extend_from_slice(b"data: {");
        write_response_fields(&mut frame_head, &opts);
        frame_head.extend_from_slice(b",\"choices\":[");
        CompletionStream {
            choice: Choice::default(),
            include_usage: opts.include_usage,
            frame_head,
            emitted: false,
            done: false,
            scratch: Vec::new(),
        }
    }

    /// The next upstream call answers choice `index`: the current choice is closed (with `length` if its
    /// call ended without a finish reason) into `out`.
    pub fn begin_choice(&mut self, index: u32, out: &mut Vec<u8>) {
        let Self { choice, frame_head, emitted, scratch, .. } = self;
        choice.next(index, &mut |i, event| write_frame(out, frame_head, scratch, emitted, i, event));
    }
}

fn write_frame(
    out: &mut Vec<u8>,
    frame_head: &[u8],
    scratch: &mut Vec<u8>,
    emitted: &mut bool,
    index: u32,
    event: Event<'_>,
) {
    *emitted = true;
    scratch.clear();
    let finish = match event {
        Event::Text(text) => {
            text.write_escaped(scratch);
            None
        }
        Event::Finish(reason) => Some(reason),
    };
    out.extend_from_slice(frame_head);
    write_choice(out, index, scratch, finish);
    out.extend_from_slice(b"]}\n\n");
}

impl Translator for CompletionStream {
    fn on_event(&mut self, data: &mut [u8], out: &mut Vec<u8>) -> Result<(), StreamError> {
        let Self { choice, frame_head, emitted, done, scratch, .. } = self;
        if *done {
            return Ok(());
        }
        choice.on_event(data, &mut |i, event| write_frame(out, frame_head, scratch, emitted, i, event))
    }

    /// Closes the last choice, then the usage chunk when asked for and `data: [DONE]`. Idempotent.
    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.done = true;
        let Self { choice, frame_head, emitted, scratch, .. } = self;
        choice.close(&mut |i, event| write_frame(out, frame_head, scratch, emitted, i, event));
        if self.include_usage {
            out.extend_from_slice(&self.frame_head);
            out.extend_from_slice(b"],\"usage\":");
            write_usage(out, self.choice.total());
            out.extend_from_slice(b"}\n\n");
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
    }

    /// The upstream failed mid-answer: one `data: {"error": …}` event the SDKs raise, no `[DONE]`.
    fn fail(&mut self, error: &ClientError, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.done = true;
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&error.render(Protocol::OpenAi));
        out.extend_from_slice(b"\n\n");
    }

    fn keepalive(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b": keep-alive\n\n");
    }

    /// Completions carry no tools, so no signatures.
    fn take_signatures(&mut self) -> Vec<CapturedSignature> {
        Vec::new()
    }

    fn finished_by_upstream(&self) -> bool {
        self.choice.upstream_finish.is_some()
    }

    fn emitted_anything(&self) -> bool {
        self.emitted
    }

    fn usage(&self) -> Option<Usage> {
        self.choice.has_usage().then(|| self.choice.total())
    }
}

/// One finished choice of the folded body, its text already escaped.
#[derive(Debug)]
struct FoldedChoice {
    index: u32,
    text: Vec<u8>,
    finish: &'static str,
}

/// The same answers folded into one `text_completion` body.
#[derive(Debug)]
pub struct CompletionFold {
    opts: CompletionOptions,
    choice: Choice,
    text: Vec<u8>,
    finish: Option<&'static str>,
    done: Vec<FoldedChoice>,
}

impl CompletionFold {
    pub fn new(opts: CompletionOptions) -> Self {
        CompletionFold { opts, choice: Choice::default(), text: Vec::new(), finish: None, done: Vec::new() }
    }

    /// The next upstream call answers choice `index`; the current one is kept as it ended.
    pub fn begin_choice(&mut self, index: u32) {
        let Self { choice, text, finish, .. } = self;
        let closed = choice.index;
        choice.next(index, &mut |_, event| fold_event(text, finish, event));
        self.done.push(FoldedChoice {
            index: closed,
            text: std::mem::take(&mut self.text),
            finish: self.finish.take().unwrap_or("stop"),
        });
    }
}

fn fold_event(text: &mut Vec<u8>, finish: &mut Option<&'static str>, event: Event<'_>) {
    match event {
        Event::Text(t) => t.write_escaped(text),
        Event::Finish(reason) => *finish = Some(reason),
    }
}

impl Fold for CompletionFold {
    fn on_event(&mut self, data: &mut [u8]) -> Result<(), StreamError> {
        let Self { choice, text, finish, .. } = self;
        choice.on_event(data, &mut |_, event| fold_event(text, finish, event))
    }

    fn take_signatures(&mut self) -> Vec<CapturedSignature> {
        Vec::new()
    }

    fn finished_by_upstream(&self) -> bool {
        self.choice.upstream_finish.is_some()
    }

    /// Whether the current choice has text; until then its call may be retried elsewhere.
    fn emitted_anything(&self) -> bool {
        !self.text.is_empty()
    }

    fn usage(&self) -> Option<Usage> {
        self.choice.has_usage().then(|| self.choice.total())
    }

    /// The whole `text_completion` body.
    fn finish(mut self) -> Vec<u8> {
        let Self { choice, text, finish, .. } = &mut self;
        choice.close(&mut |_, event| fold_event(text, finish, event));
        let last = FoldedChoice {
            index: self.choice.index,
            text: std::mem::take(&mut self.text),
            finish: self.finish.unwrap_or("stop"),
        };
        let choices: Vec<&FoldedChoice> = self.done.iter().chain(std::iter::once(&last)).collect();
        let mut out = Vec::with_capacity(256 + choices.iter().map(|c| c.text.len() + 64).sum::<usize>());
        out.push(b'{');
        write_response_fields(&mut out, &self.opts);
        out.extend_from_slice(b",\"choices\":[");
        for (i, c) in choices.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_choice(&mut out, c.index, &c.text, Some(c.finish));
        }
        out.extend_from_slice(b"],\"usage\":");
        write_usage(&mut out, self.choice.total());
        out.push(b'}');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn opts(include_usage: bool) -> CompletionOptions {
        CompletionOptions {
            id: "cmpl-1".into(),
            model: "gpt-3.5-turbo-instruct".into(),
            created: 7,
            include_usage,
        }
    }

    fn upstream(parts: Value, finish: Option<&str>, candidates: u64) -> Vec<u8> {
        let mut candidate = json!({"content": {"role": "model", "parts": parts}});
        if let Some(finish) = finish {
            candidate["finishReason"] = json!(finish);
        }
        let usage = json!({"promptTokenCount": 5, "candidatesTokenCount": candidates, "thoughtsTokenCount": 1,
                           "totalTokenCount": 6 + candidates});
        serde_json::to_vec(&json!({"response": {"candidates": [candidate], "usageMetadata": usage}})).unwrap()
    }

    /// The `data:` payloads of an SSE byte stream, parsed.
    fn frames(out: &[u8]) -> Vec<Value> {
        String::from_utf8(out.to_vec())
            .unwrap()
            .split("\n\n")
            .filter_map(|f| f.strip_prefix("data: "))
            .map(|d| if d == "[DONE]" { json!("[DONE]") } else { serde_json::from_str(d).unwrap() })
            .collect()
    }

    fn first_answer() -> [Vec<u8>; 2] {
        [
            upstream(json!([{"text": "plan", "thought": true}, {"text": "Hello \"you\""}]), None, 2),
            upstream(json!([{"text": "!"}, {"text": "", "thoughtSignature": "sig"}]), Some("STOP"), 3),
        ]
    }

    #[test]
    fn a_stream_sends_text_chunks_a_finish_usage_and_done() {
        let mut stream = CompletionStream::new(opts(true));
        let mut out = Vec::new();
        for mut e in first_answer() {
            stream.on_event(&mut e, &mut out).unwrap();
        }
        stream.finish(&mut out);
        let f = frames(&out);
        assert_eq!(f[0]["object"], "text_completion");
        assert_eq!(f[0]["id"], "cmpl-1");
        assert_eq!(
            f[0]["choices"][0],
            json!({"text": "Hello \"you\"", "index": 0, "logprobs": null, "finish_reason": null})
        );
        assert_eq!(f[1]["choices"][0]["text"], "!");
        assert_eq!(
            f[2]["choices"][0],
            json!({"text": "", "index": 0, "logprobs": null, "finish_reason": "stop"})
        );
        assert_eq!(f[3]["choices"], json!([]));
        assert_eq!(f[3]["usage"], json!({"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}));
        assert_eq!(f[4], "[DONE]");
        assert_eq!(f.len(), 5);
        assert!(stream.finished_by_upstream() && stream.emitted_anything());
    }

    #[test]
    fn several_choices_stream_one_after_another_with_their_index_and_summed_usage() {
        let mut stream = CompletionStream::new(opts(true));
        let mut out = Vec::new();
        for mut e in first_answer() {
            stream.on_event(&mut e, &mut out).unwrap();
        }
        stream.begin_choice(1, &mut out);
        // The second call is cut before a finish reason: its choice ends as `length`.
        stream.on_event(&mut upstream(json!([{"text": "Bye"}]), None, 1), &mut out).unwrap();
        stream.finish(&mut out);
        let f = frames(&out);
        let indexed: Vec<(u64, Value, Value)> = f
            .iter()
            .filter_map(|v| v["choices"].get(0))
            .map(|c| (c["index"].as_u64().unwrap(), c["text"].clone(), c["finish_reason"].clone()))
            .collect();
        assert_eq!(indexed[3], (1, json!("Bye"), Value::Null));
        assert_eq!(indexed[4], (1, json!(""), json!("length")));
        let usage = &f[f.len() - 2]["usage"];
        assert_eq!(usage["prompt_tokens"], 10);
        assert_eq!(usage["completion_tokens"], 4 + 2);
    }

    #[test]
    fn a_fold_answers_every_choice_in_one_body() {
        let mut fold = CompletionFold::new(opts(false));
        for mut e in first_answer() {
            fold.on_event(&mut e).unwrap();
        }
        assert!(fold.emitted_anything());
        fold.begin_choice(1);
        assert!(!fold.emitted_anything(), "a new choice starts empty");
        fold.on_event(&mut upstream(json!([{"text": "Two"}]), Some("MAX_TOKENS"), 1)).unwrap();
        let body: Value = serde_json::from_slice(&fold.finish()).unwrap();
        assert_eq!(
            body,
            json!({"id": "cmpl-1", "object": "text_completion", "created": 7, "model": "gpt-3.5-turbo-instruct",
                   "choices": [
                       {"text": "Hello \"you\"!", "index": 0, "logprobs": null, "finish_reason": "stop"},
                       {"text": "Two", "index": 1, "logprobs": null, "finish_reason": "length"}],
                   "usage": {"prompt_tokens": 10, "completion_tokens": 6, "total_tokens": 16}})
        );
    }

    #[test]
    fn an_upstream_failure_mid_stream_is_an_error_event_without_done() {
        let mut stream = CompletionStream::new(opts(false));
        let mut out = Vec::new();
        stream.on_event(&mut upstream(json!([{"text": "Hi"}]), None, 1), &mut out).unwrap();
        stream.fail(&ClientError::new(502, crate::error::ErrorKind::Api, "cut"), &mut out);
        stream.finish(&mut out);
        let f = frames(&out);
        assert!(f[1]["error"]["message"].as_str().unwrap().contains("cut"), "{f:?}");
        assert_eq!(f.len(), 2);
    }
}
