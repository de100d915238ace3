//! Upstream `v1internal` events → native Gemini API responses (`generateContent`, `streamGenerateContent`).
//!
//! The upstream already speaks Gemini; its events only wrap each `GenerateContentResponse` in
//! `{"response":…,"traceId":…}`. [`GeminiStream`] unwraps them by copying the bytes of the `response` value
//! (found by a scan that skips strings, no re-serialization), then frames them as SSE (`alt=sse`) or as the
//! JSON array the default `:streamGenerateContent` returns. Each event is still parsed once, as for the other
//! protocols, to capture usage, the finish reason and signatures. Only when a tool name had to be sanitized
//! on the way up is an event rewritten through serde, to give the client its own names back.
//!
//! A stream cut before any `finishReason` gets a final chunk with `finishReason: "MAX_TOKENS"`, so clients
//! see why the answer stopped. [`GeminiFold`] merges all chunks into one response for `:generateContent`.

use memchr::{memchr2, memchr3};
use serde_json::Value;

use crate::error::ClientError;
use crate::grounding::Grounding;
use crate::inner::ToolNameMap;
use crate::signature::CapturedSignature;
use crate::stream::chunk::{ChunkParser, FinishReason, Part, Usage};
use crate::stream::json::{write_str, write_u64};
use crate::stream::{is_empty_payload, Fold, StreamError, ToolCallSignatures, Translator};
use crate::Protocol;

/// How the client asked to receive the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeminiStreamMode {
    /// `?alt=sse`: `data: <json>\r\n\r\n` per response.
    Sse,
    /// The default of `:streamGenerateContent`: one JSON array of responses, written as they arrive.
    JsonArray,
}

/// Per-request parameters of the client-facing response.
#[derive(Clone, Debug)]
pub struct GeminiStreamOptions {
    pub mode: GeminiStreamMode,
    /// Upstream tool names back to the client's own.
    pub tool_names: ToolNameMap,
}

/// What every Gemini machine tracks about the upstream turn.
#[derive(Debug, Default)]
struct Observed {
    upstream_finish: Option<FinishReason>,
    usage: Option<Usage>,
    tool_calls: u32,
    signatures: ToolCallSignatures,
}

impl Observed {
    /// Records a chunk's usage, finish reason and signatures; returns whether a function call name must be
    /// mapped back to the client's.
    fn observe(
        &mut self,
        parts: &[Part<'_>],
        usage: Option<Usage>,
        finish: Option<FinishReason>,
        names: &ToolNameMap,
    ) -> bool {
        if usage.is_some() {
            self.usage = usage;
        }
        if let Some(reason) = finish {
            self.upstream_finish.get_or_insert(reason);
        }
        let mut rename = false;
        for part in parts {
            match part {
                Part::Text { signature: Some(signature), .. } => self.signatures.on_turn_signature(signature),
                Part::FunctionCall { id, name, signature, .. } => {
                    let index = self.tool_calls;
                    self.tool_calls += 1;
                    // Gemini clients see the upstream's own ids only; a call without one cannot be keyed.
                    if let Some(id) = id.filter(|id| !id.is_empty()) {
                        self.signatures.on_tool_call(index, id, *signature);
                    }
                    rename |= names.client_name(name) != *name;
                }
                _ => {}
            }
        }
        rename
    }
}

/// Rewrites one upstream stream into native Gemini stream output.
#[derive(Debug)]
pub struct GeminiStream {
    opts: GeminiStreamOptions,
    parser: ChunkParser,
    observed: Observed,
    /// The pristine `response` bytes of the event being read, when names may need mapping.
    scratch: Vec<u8>,
    emitted: bool,
    done: bool,
}

impl GeminiStream {
    pub fn new(opts: GeminiStreamOptions) -> Self {
        GeminiStream {
            opts,
            parser: ChunkParser::new(),
            observed: Observed::default(),
            scratch: Vec::new(),
            emitted: false,
            done: false,
        }
    }

    /// Ends the stream with an error object in Google's shape (e.g. the upstream timed out mid-answer).
    fn write_error(&mut self, error: &ClientError, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.open_item(out);
        out.extend_from_slice(&error.render(Protocol::Gemini));
        self.close_item(out);
        self.finish_array(out);
    }

    fn finish_array(&mut self, out: &mut Vec<u8>) {
        self.done = true;
        if self.opts.mode == GeminiStreamMode::JsonArray {
            if !self.emitted {
                out.push(b'[');
            }
            out.extend_from_slice(b"]");
        }
        self.emitted = true;
    }

    fn open_item(&mut self, out: &mut Vec<u8>) {
        match self.opts.mode {
            GeminiStreamMode::Sse => out.extend_from_slice(b"data: "),
            GeminiStreamMode::JsonArray if self.emitted => out.extend_from_slice(b",\r\n"),
            GeminiStreamMode::JsonArray => out.push(b'['),
        }
    }

    fn close_item(&mut self, out: &mut Vec<u8>) {
        if self.opts.mode == GeminiStreamMode::Sse {
            out.extend_from_slice(b"\r\n\r\n");
        }
        self.emitted = true;
    }
}

impl Translator for GeminiStream {
    /// The response's content type: SSE for `?alt=sse`, JSON for the default array stream.
    fn content_type(&self) -> &'static str {
        match self.opts.mode {
            GeminiStreamMode::Sse => "text/event-stream",
            GeminiStreamMode::JsonArray => "application/json",
        }
    }

    /// One upstream SSE `data` payload in; one response appended to `out`. The payload is scratch afterwards.
    ///
    /// On an error nothing of this event is written and the error is returned; if earlier responses were
    /// written, an error object in Google's shape ends the stream (as Google does), otherwise the gateway may
    /// still retry elsewhere or answer with a plain HTTP error.
    fn on_event(&mut self, data: &mut [u8], out: &mut Vec<u8>) -> Result<(), StreamError> {
        if self.done || is_empty_payload(data) {
            return Ok(());
        }
        let span = response_span(data).unwrap_or(0..data.len());
        let mark = out.len();
        let may_rename = !self.opts.tool_names.is_identity();
        if may_rename {
            self.scratch.clear();
            self.scratch.extend_from_slice(&data[span.clone()]);
        } else {
            self.open_item(out);
            out.extend_from_slice(data[span].trim_ascii());
        }
        let observed = match self.parser.parse(data) {
            Ok(chunk) => Ok(self.observed.observe(
                &chunk.parts,
                chunk.usage,
                chunk.finish_reason,
                &self.opts.tool_names,
            )),
            Err(e) => Err(e),
        };
        let rename = match observed {
            Ok(rename) => rename,
            Err(error) => {
                out.truncate(mark);
                if self.emitted {
                    self.write_error(&error.to_client_error(), out);
                }
                return Err(error);
            }
        };
        if may_rename {
            self.open_item(out);
            if rename {
                let renamed = rename_function_calls(&self.scratch, &self.opts.tool_names)?;
                out.extend_from_slice(&renamed);
            } else {
                out.extend_from_slice(self.scratch.trim_ascii());
            }
        }
        self.close_item(out);
        Ok(())
    }

    /// The upstream ended: a stream without a finish reason gets a final `MAX_TOKENS` chunk; a JSON array is
    /// closed. Idempotent.
    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if self.observed.upstream_finish.is_none() {
            self.open_item(out);
            out.extend_from_slice(b"{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[]},\"finishReason\":\"MAX_TOKENS\",\"index\":0}]");
            if let Some(usage) = self.observed.usage {
                out.extend_from_slice(b",\"usageMetadata\":");
                write_usage_metadata(out, usage);
            }
            out.push(b'}');
            self.close_item(out);
        }
        self.finish_array(out);
    }

    /// Signatures captured since the last call (function calls with upstream ids), for the store.
    fn take_signatures(&mut self) -> Vec<CapturedSignature> {
        self.observed.signatures.take()
    }

    /// The last usage the upstream reported.
    fn usage(&self) -> Option<Usage> {
        self.observed.usage
    }

    /// Whether the upstream sent a finish reason (a stream without one was cut).
    fn finished_by_upstream(&self) -> bool {
        self.observed.upstream_finish.is_some()
    }

    /// Whether anything was written; until then the request can still be retried elsewhere.
    fn emitted_anything(&self) -> bool {
        self.emitted
    }

    // Google sends no keep-alives on Gemini streams, and Gemini clients expect none: the default writes nothing.
}

/// The byte range of the top-level `"response"` value of an event, or `None` if it has none (a bare
/// response) or is not an object. Strings are skipped with their escapes, so braces inside text never count.
fn response_span(data: &[u8]) -> Option<std::ops::Range<usize>> {
    let mut i = skip_ws(data, 0);
    if data.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        i = skip_ws(data, i);
        if data.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = skip_string(data, i)?;
        let key = &data[i + 1..key_end - 1];
        i = skip_ws(data, key_end);
        if data.get(i) != Some(&b':') {
            return None;
        }
        let start = skip_ws(data, i + 1);
        let end = skip_value(data, start)?;
        if key == b"response" {
            return (data.get(start) == Some(&b'{')).then_some(start..end);
        }
        i = skip_ws(data, end);
        match data.get(i) {
            Some(b',') => i += 1,
            _ => return None,
        }
    }
}

fn skip_ws(data: &[u8], mut i: usize) -> usize {
    while data.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
        i += 1;
    }
    i
}

/// The index just past the string starting at `data[start] == '"'`.
fn skip_string(data: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    loop {
        let at = i + memchr2(b'"', b'\\', data.get(i..)?)?;
        if data[at] == b'\\' {
            i = at + 2;
        } else {
            return Some(at + 1);
        }
    }
}

/// The index just past the JSON value starting at `start`.
fn skip_value(data: &[u8], start: usize) -> Option<usize> {
    match *data.get(start)? {
        b'"' => skip_string(data, start),
        // In valid JSON braces balance on their own (and brackets too), so a container's end is found by
        // counting only its own delimiters, jumping between them and quotes with a vectorised search.
        open @ (b'{' | b'[') => {
            let close = if open == b'{' { b'}' } else { b']' };
            let mut depth = 0usize;
            let mut i = start;
            loop {
                i += memchr3(b'"', open, close, data.get(i..)?)?;
                match data[i] {
                    b'"' => {
                        i = skip_string(data, i)?;
                        continue;
                    }
                    b if b == open => depth += 1,
                    _ => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                }
                i += 1;
            }
        }
        _ => {
            let mut i = start;
            while data.get(i).is_some_and(|b| !matches!(b, b',' | b'}' | b']') && !b.is_ascii_whitespace()) {
                i += 1;
            }
            Some(i)
        }
    }
}

/// Re-serializes a response with every function call name mapped back to the client's.
fn rename_function_calls(response: &[u8], names: &ToolNameMap) -> Result<Vec<u8>, StreamError> {
    let mut value: Value =
        serde_json::from_slice(response).map_err(|e| StreamError::InvalidJson(e.to_string()))?;
    let candidates = value.get_mut("candidates").and_then(Value::as_array_mut).into_iter().flatten();
    for candidate in candidates {
        let parts =
            candidate.pointer_mut("/content/parts").and_then(Value::as_array_mut).into_iter().flatten();
        for part in parts {
            let call = match part.as_object_mut() {
                Some(p) if p.contains_key("functionCall") => p.get_mut("functionCall"),
                Some(p) => p.get_mut("function_call"),
                None => None,
            };
            if let Some(Value::String(name)) = call.and_then(|c| c.get_mut("name")) {
                let client = names.client_name(name).to_owned();
                *name = client;
            }
        }
    }
    serde_json::to_vec(&value).map_err(|e| StreamError::InvalidJson(e.to_string()))
}

fn write_usage_metadata(out: &mut Vec<u8>, usage: Usage) {
    out.extend_from_slice(b"{\"promptTokenCount\":");
    write_u64(out, usage.prompt);
    out.extend_from_slice(b",\"candidatesTokenCount\":");
    write_u64(out, usage.candidates);
    if usage.thoughts > 0 {
        out.extend_from_slice(b",\"thoughtsTokenCount\":");
        write_u64(out, usage.thoughts);
    }
    if usage.cached > 0 {
        out.extend_from_slice(b",\"cachedContentTokenCount\":");
        write_u64(out, usage.cached);
    }
    out.extend_from_slice(b",\"totalTokenCount\":");
    write_u64(out, usage.total.max(usage.prompt + usage.candidates + usage.thoughts));
    out.push(b'}');
}

/// A part collected for the folded response; text kept already escaped.
#[derive(Debug)]
enum FoldedPart {
    Text { escaped: Vec<u8>, thought: bool, signature: Option<String> },
    FunctionCall { id: Option<String>, name: String, args: String, signature: Option<String> },
    InlineData { mime_type: String, data: String },
}

/// The same upstream stream folded into one `GenerateContentResponse` for `:generateContent`.
#[derive(Debug)]
pub struct GeminiFold {
    tool_names: ToolNameMap,
    parser: ChunkParser,
    observed: Observed,
    parts: Vec<FoldedPart>,
    model_version: Option<String>,
    response_id: Option<String>,
    /// A web search's `groundingMetadata`, which the folded candidate carries again.
    grounding: Option<Grounding>,
}

impl GeminiFold {
    pub fn new(opts: GeminiStreamOptions) -> Self {
        GeminiFold {
            tool_names: opts.tool_names,
            parser: ChunkParser::new(),
            observed: Observed::default(),
            parts: Vec::new(),
            model_version: None,
            response_id: None,
            grounding: None,
        }
    }
}

impl Fold for GeminiFold {
    /// One upstream SSE `data` payload in (scratch afterwards).
    fn on_event(&mut self, data: &mut [u8]) -> Result<(), StreamError> {
        if is_empty_payload(data) {
            return Ok(());
        }
        let mut chunk = self.parser.parse(data)?;
        if let Some(later) = chunk.grounding.take() {
            self.grounding.get_or_insert_with(Grounding::default).absorb(later);
        }
        self.observed.observe(&chunk.parts, chunk.usage, chunk.finish_reason, &self.tool_names);
        if let Some(v) = chunk.model_version {
            self.model_version.get_or_insert_with(|| v.to_owned());
        }
        if let Some(id) = chunk.response_id {
            self.response_id.get_or_insert_with(|| id.to_owned());
        }
        for part in &chunk.parts {
            match part {
                Part::Text { text, thought, signature } => {
                    // Adjacent texts of one kind merge until a signature closes the part it arrived on.
                    match self.parts.last_mut() {
                        Some(FoldedPart::Text { escaped, thought: last_thought, signature: slot @ None })
                            if last_thought == thought =>
                        {
                            text.write_escaped(escaped);
                            *slot = signature.map(str::to_owned);
                        }
                        _ => {
                            let mut escaped = Vec::new();
                            text.write_escaped(&mut escaped);
                            self.parts.push(FoldedPart::Text {
                                escaped,
                                thought: *thought,
                                signature: signature.map(str::to_owned),
                            });
                        }
                    }
                }
                Part::FunctionCall { id, name, args, signature } => {
                    self.parts.push(FoldedPart::FunctionCall {
                        id: id.map(str::to_owned),
                        name: self.tool_names.client_name(name).to_owned(),
                        args: args.clone(),
                        signature: signature.map(str::to_owned),
                    })
                }
                Part::InlineData { mime_type, data } => self.parts.push(FoldedPart::InlineData {
                    mime_type: (*mime_type).to_owned(),
                    data: (*data).to_owned(),
                }),
                Part::FileData { .. } | Part::Other => {}
            }
        }
        Ok(())
    }

    /// Signatures captured since the last call, for the store.
    fn take_signatures(&mut self) -> Vec<CapturedSignature> {
        self.observed.signatures.take()
    }

    /// The last usage the upstream reported.
    fn usage(&self) -> Option<Usage> {
        self.observed.usage
    }

    /// Whether the upstream sent a finish reason (a stream without one was cut).
    fn finished_by_upstream(&self) -> bool {
        self.observed.upstream_finish.is_some()
    }

    /// Whether any content was collected.
    fn emitted_anything(&self) -> bool {
        !self.parts.is_empty()
    }

    /// The whole `GenerateContentResponse` body. Take the signatures first.
    fn finish(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.parts.len() * 64);
        out.extend_from_slice(b"{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[");
        let mut first = true;
        for part in &self.parts {
            if matches!(part, FoldedPart::Text { escaped, signature: None, .. } if escaped.is_empty()) {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            match part {
                FoldedPart::Text { escaped, thought, signature } => {
                    out.extend_from_slice(b"{\"text\":\"");
                    out.extend_from_slice(escaped);
                    out.push(b'"');
                    if *thought {
                        out.extend_from_slice(b",\"thought\":true");
                    }
                    write_signature(&mut out, signature.as_deref());
                    out.push(b'}');
                }
                FoldedPart::FunctionCall { id, name, args, signature } => {
                    out.extend_from_slice(b"{\"functionCall\":{\"name\":");
                    write_str(&mut out, name);
                    out.extend_from_slice(b",\"args\":");
                    out.extend_from_slice(args.as_bytes());
                    if let Some(id) = id {
                        out.extend_from_slice(b",\"id\":");
                        write_str(&mut out, id);
                    }
                    out.push(b'}');
                    write_signature(&mut out, signature.as_deref());
                    out.push(b'}');
                }
                FoldedPart::InlineData { mime_type, data } => {
                    out.extend_from_slice(b"{\"inlineData\":{\"mimeType\":");
                    write_str(&mut out, mime_type);
                    out.extend_from_slice(b",\"data\":");
                    write_str(&mut out, data);
                    out.extend_from_slice(b"}}");
                }
            }
        }
        out.extend_from_slice(b"]},\"finishReason\":");
        write_str(&mut out, self.observed.upstream_finish.map_or("MAX_TOKENS", FinishReason::google_name));
        if let Some(grounding) = &self.grounding {
            out.extend_from_slice(b",\"groundingMetadata\":");
            out.extend_from_slice(&grounding.to_google_json());
        }
        out.extend_from_slice(b",\"index\":0}]");
        if let Some(usage) = self.observed.usage {
            out.extend_from_slice(b",\"usageMetadata\":");
            write_usage_metadata(&mut out, usage);
        }
        if let Some(v) = &self.model_version {
            out.extend_from_slice(b",\"modelVersion\":");
            write_str(&mut out, v);
        }
        if let Some(id) = &self.response_id {
            out.extend_from_slice(b",\"responseId\":");
            write_str(&mut out, id);
        }
        out.push(b'}');
        out
    }
}

fn write_signature(out: &mut Vec<u8>, signature: Option<&str>) {
    if let Some(signature) = signature {
        out.extend_from_slice(b",\"thoughtSignature\":");
        write_str(out, signature);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn opts(mode: GeminiStreamMode) -> GeminiStreamOptions {
        GeminiStreamOptions { mode, tool_names: ToolNameMap::default() }
    }

    fn usage_json(prompt: u64, candidates: u64, thoughts: u64) -> Value {
        json!({"promptTokenCount": prompt, "candidatesTokenCount": candidates, "thoughtsTokenCount": thoughts,
               "totalTokenCount": prompt + candidates + thoughts})
    }

    fn response(parts: Value, finish: Option<&str>, usage: Option<Value>) -> Value {
        let mut candidate = json!({"content": {"role": "model", "parts": parts}});
        if let Some(f) = finish {
            candidate["finishReason"] = json!(f);
        }
        let mut response =
            json!({"candidates": [candidate], "modelVersion": "gemini-3-flash-a", "responseId": "r1"});
        if let Some(u) = usage {
            response["usageMetadata"] = u;
        }
        response
    }

    fn wrap(response: &Value) -> String {
        json!({"response": response, "traceId": "t{}", "metadata": {"x": "}\"{"}}).to_string()
    }

    fn run(stream: &mut GeminiStream, events: &[String]) -> Vec<u8> {
        let mut out = Vec::new();
        for e in events {
            stream.on_event(&mut e.clone().into_bytes(), &mut out).unwrap();
        }
        stream.finish(&mut out);
        out
    }

    fn sse_items(out: &[u8]) -> Vec<Value> {
        let text = std::str::from_utf8(out).unwrap();
        text.split("\r\n\r\n")
            .filter(|f| !f.is_empty())
            .map(|f| serde_json::from_str(f.strip_prefix("data: ").unwrap()).unwrap())
            .collect()
    }

    #[test]
    fn the_response_span_skips_strings_and_nesting() {
        let data = br#" { "traceId" : "a\"}{", "response" : {"a":[1,{"b":"}"}]} , "metadata":{}}"#;
        let span = response_span(data).unwrap();
        assert_eq!(&data[span], br#"{"a":[1,{"b":"}"}]}"#);
        assert_eq!(response_span(br#"{"candidates":[]}"#), None);
        assert_eq!(response_span(br#"{"response":"#), None);
        assert_eq!(response_span(br#"{"n":12,"response":{}}"#), Some(19..21));
    }

    #[test]
    fn sse_mode_unwraps_each_response_byte_for_byte() {
        let r1 = response(json!([{"text": "héllo \"x\" }"}]), None, Some(usage_json(5, 1, 0)));
        let r2 = response(
            json!([{"text": "", "thoughtSignature": "sigZ"}]),
            Some("STOP"),
            Some(usage_json(5, 2, 0)),
        );
        let mut stream = GeminiStream::new(opts(GeminiStreamMode::Sse));
        let out = run(&mut stream, &[wrap(&r1), wrap(&r2)]);
        assert_eq!(sse_items(&out), [r1.clone(), r2]);
        assert!(out.starts_with(format!("data: {r1}\r\n\r\n").as_bytes()));
        assert!(stream.finished_by_upstream());
    }

    #[test]
    fn json_array_mode_writes_one_array() {
        let r1 = response(json!([{"text": "a"}]), Some("STOP"), None);
        let out = run(&mut GeminiStream::new(opts(GeminiStreamMode::JsonArray)), &[wrap(&r1), wrap(&r1)]);
        let parsed: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(parsed, json!([r1, r1]));
        let empty = run(&mut GeminiStream::new(opts(GeminiStreamMode::JsonArray)), &[]);
        let parsed: Value = serde_json::from_slice(&empty).unwrap();
        assert_eq!(parsed[0]["candidates"][0]["finishReason"], "MAX_TOKENS");
    }

    #[test]
    fn a_cut_stream_ends_with_max_tokens_and_usage() {
        let r1 = response(json!([{"text": "partial"}]), None, Some(usage_json(5, 1, 2)));
        let items = sse_items(&run(&mut GeminiStream::new(opts(GeminiStreamMode::Sse)), &[wrap(&r1)]));
        assert_eq!(items.len(), 2);
        assert_eq!(
            items[1],
            json!({"candidates": [{"content": {"role": "model", "parts": []}, "finishReason": "MAX_TOKENS", "index": 0}],
                   "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 1, "thoughtsTokenCount": 2, "totalTokenCount": 8}})
        );
    }

    #[test]
    fn sanitized_tool_names_are_mapped_back_and_signatures_captured() {
        let names = ToolNameMap::new(["mcp.fs:read"]);
        let r = response(
            json!([{"functionCall": {"name": "mcp_fs_read", "args": {"p": 1}, "id": "c1"}, "thoughtSignature": "sigC"}]),
            Some("STOP"),
            None,
        );
        let mut stream =
            GeminiStream::new(GeminiStreamOptions { mode: GeminiStreamMode::Sse, tool_names: names });
        let items = sse_items(&run(&mut stream, &[wrap(&r)]));
        assert_eq!(items[0]["candidates"][0]["content"]["parts"][0]["functionCall"]["name"], "mcp.fs:read");
        assert_eq!(items[0]["candidates"][0]["content"]["parts"][0]["thoughtSignature"], "sigC");
        assert_eq!(stream.take_signatures(), [CapturedSignature::tool_call("c1", "sigC")]);
    }

    #[test]
    fn in_stream_errors_write_nothing_first_and_an_error_object_later() {
        let error = br#"{"error":{"code":503,"message":"No capacity available","status":"UNAVAILABLE"}}"#;
        let mut stream = GeminiStream::new(opts(GeminiStreamMode::JsonArray));
        let mut out = Vec::new();
        assert!(stream.on_event(&mut error.to_vec(), &mut out).is_err());
        assert!(out.is_empty() && !stream.emitted_anything());
        let r = response(json!([{"text": "a"}]), None, None);
        stream.on_event(&mut wrap(&r).into_bytes(), &mut out).unwrap();
        assert!(stream.on_event(&mut error.to_vec(), &mut out).is_err());
        stream.finish(&mut out);
        let parsed: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            parsed[1],
            json!({"error": {"code": 503, "message": "No capacity available", "status": "UNAVAILABLE"}})
        );
        assert_eq!(parsed.as_array().unwrap().len(), 2);
    }

    #[test]
    fn the_fold_keeps_a_web_search_grounding_metadata() {
        let metadata = json!({"webSearchQueries": ["q"], "groundingChunks": [{"web": {"uri": "https://r/1", "title": "a.dev"}}],
            "groundingSupports": [{"segment": {"startIndex": 0, "endIndex": 2, "text": "Hi"}, "groundingChunkIndices": [0]}]});
        let mut last = response(json!([{"text": "Hi"}]), Some("STOP"), None);
        last["candidates"][0]["groundingMetadata"] = metadata.clone();
        let mut fold = GeminiFold::new(opts(GeminiStreamMode::Sse));
        fold.on_event(&mut wrap(&last).into_bytes()).unwrap();
        let body: Value = serde_json::from_slice(&fold.finish()).unwrap();
        assert_eq!(
            body["candidates"][0]["groundingMetadata"], metadata,
            "Gemini CLI reads its sources there"
        );
    }

    #[test]
    fn the_fold_merges_parts_of_a_kind_and_keeps_calls_and_signatures() {
        let events = [
            wrap(&response(json!([{"text": "think ", "thought": true}]), None, None)),
            wrap(&response(
                json!([{"text": "more", "thought": true, "thoughtSignature": "sigT"}]),
                None,
                None,
            )),
            wrap(&response(
                json!([{"text": "Hello "}, {"text": "\"world\""}]),
                None,
                Some(usage_json(3, 2, 1)),
            )),
            wrap(&response(
                json!([{"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": "sigF"}]),
                None,
                None,
            )),
            wrap(&response(
                json!([{"text": "", "thoughtSignature": "sigE"}]),
                Some("STOP"),
                Some(usage_json(3, 4, 1)),
            )),
        ];
        let mut fold = GeminiFold::new(opts(GeminiStreamMode::Sse));
        for e in &events {
            fold.on_event(&mut e.clone().into_bytes()).unwrap();
        }
        let body: Value = serde_json::from_slice(&fold.finish()).unwrap();
        assert_eq!(
            body,
            json!({"candidates": [{"content": {"role": "model", "parts": [
                        {"text": "think more", "thought": true, "thoughtSignature": "sigT"},
                        {"text": "Hello \"world\""},
                        {"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": "sigF"},
                        {"text": "", "thoughtSignature": "sigE"},
                    ]}, "finishReason": "STOP", "index": 0}],
                   "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4, "thoughtsTokenCount": 1, "totalTokenCount": 8},
                   "modelVersion": "gemini-3-flash-a", "responseId": "r1"})
        );
    }

    fn recorded_stream(line_end: &str) -> Vec<u8> {
        let events = [
            wrap(&response(
                json!([{"text": "**Plan** 👋", "thought": true}]),
                None,
                Some(usage_json(120, 0, 40)),
            )),
            wrap(&response(
                json!([{"text": "héllo 世界 🎉, \"q\" \u{2028} {braces}"}]),
                None,
                Some(usage_json(120, 5, 40)),
            )),
            wrap(&response(
                json!([{"functionCall": {"name": "lookup", "args": {"q": "café"}, "id": "x1"}, "thoughtSignature": "EtwB"}]),
                None,
                None,
            )),
            wrap(&response(json!([{"text": "", "thoughtSignature": "EkQK"}]), Some("STOP"), None)),
        ];
        let mut bytes = Vec::new();
        for event in events {
            bytes.extend_from_slice(format!("data: {event}{line_end}{line_end}").as_bytes());
        }
        bytes
    }

    fn rewrite(bytes: &[u8], cuts: &[usize], mode: GeminiStreamMode) -> Vec<u8> {
        let mut stream = GeminiStream::new(opts(mode));
        let mut out = Vec::new();
        crate::sse::frame_in_cuts(bytes, cuts, |data| stream.on_event(data, &mut out).unwrap());
        stream.finish(&mut out);
        out
    }

    #[test]
    fn every_single_split_point_gives_identical_output() {
        for mode in [GeminiStreamMode::Sse, GeminiStreamMode::JsonArray] {
            let bytes = recorded_stream("\r\n");
            let whole = rewrite(&bytes, &[], mode);
            for cut in 0..=bytes.len() {
                assert_eq!(rewrite(&bytes, &[cut], mode), whole, "{mode:?} cut at {cut}");
            }
        }
    }

    proptest! {
        #[test]
        fn random_multi_splits_give_identical_output(
            crlf in any::<bool>(),
            array in any::<bool>(),
            fractions in proptest::collection::vec(0.0f64..1.0, 0..40),
        ) {
            let mode = if array { GeminiStreamMode::JsonArray } else { GeminiStreamMode::Sse };
            let bytes = recorded_stream(if crlf { "\r\n" } else { "\n" });
            let mut cuts: Vec<usize> = fractions.iter().map(|f| (f * bytes.len() as f64) as usize).collect();
            cuts.sort_unstable();
            prop_assert_eq!(rewrite(&bytes, &cuts, mode), rewrite(&bytes, &[], mode));
        }
    }

    #[test]
    fn a_multi_megabyte_stream_is_identical_whatever_the_chunking() {
        let mut bytes = Vec::new();
        for i in 0..6000 {
            let r = response(
                json!([{"text": format!("chunk {i} héllo 世界 🎉 \"q\"\n"), "thought": i % 500 < 50}]),
                None,
                Some(usage_json(1000, i, 0)),
            );
            bytes.extend_from_slice(format!("data: {}\r\n\r\n", wrap(&r)).as_bytes());
        }
        assert!(bytes.len() > 1 << 20);
        for mode in [GeminiStreamMode::Sse, GeminiStreamMode::JsonArray] {
            let whole = rewrite(&bytes, &[], mode);
            for step in [1usize, 4096, 65_537] {
                let cuts: Vec<usize> = (step..bytes.len()).step_by(step).collect();
                assert!(rewrite(&bytes, &cuts, mode) == whole, "{mode:?} step {step}");
            }
        }
    }
}
