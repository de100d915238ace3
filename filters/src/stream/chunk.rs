//! One upstream stream event, parsed into a protocol-neutral [`Chunk`].
//!
//! Every client stream machine (OpenAI, Anthropic, Gemini) reads the same `v1internal` events, so the
//! parsing, the tolerance for key casings and envelope variants, and the in-stream error shape live here
//! once. Parsing is zero-copy: strings are unescaped in place and a [`Chunk`] borrows them from the event's
//! own buffer. Events of the usual shape (text, usage, ids) are read by a one-pass scanner ([`super::scan`]);
//! every other event by simd-json, whose tape and scratch buffers the parser reuses across events.

use std::ops::Range;

use simd_json::{Buffers, Node, StaticNode, Tape};

use super::cursor::{self, Hole};
use super::json;
use super::scan::{self, Skeleton, Spans};
pub use super::text::Text;
pub use super::usage::Usage;
use super::StreamError;

/// Why Google stopped generating (`finishReason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    MaxTokens,
    Safety,
    Recitation,
    Blocklist,
    ProhibitedContent,
    Spii,
    ImageSafety,
    MalformedFunctionCall,
    Other,
    /// The prompt itself was blocked (`promptFeedback.blockReason`); no candidate was generated.
    PromptBlocked,
    /// A reason this gateway does not know yet.
    Unknown,
}

/// Google's names of the reasons it reports, both ways.
const GOOGLE_NAMES: [(&str, FinishReason); 10] = [
    ("STOP", FinishReason::Stop),
    ("MAX_TOKENS", FinishReason::MaxTokens),
    ("SAFETY", FinishReason::Safety),
    ("RECITATION", FinishReason::Recitation),
    ("BLOCKLIST", FinishReason::Blocklist),
    ("PROHIBITED_CONTENT", FinishReason::ProhibitedContent),
    ("SPII", FinishReason::Spii),
    ("IMAGE_SAFETY", FinishReason::ImageSafety),
    ("MALFORMED_FUNCTION_CALL", FinishReason::MalformedFunctionCall),
    ("OTHER", FinishReason::Other),
];

impl FinishReason {
    fn parse(s: &str) -> Self {
        GOOGLE_NAMES.iter().find(|(name, _)| *name == s).map_or(FinishReason::Unknown, |(_, reason)| *reason)
    }

    /// Google's name for the reason; a blocked prompt and unknown reasons are `OTHER`.
    pub fn google_name(self) -> &'static str {
        GOOGLE_NAMES.iter().find(|(_, reason)| *reason == self).map_or("OTHER", |(name, _)| name)
    }

    /// Whether a content filter ended the response (OpenAI `content_filter`).
    pub fn is_content_filter(self) -> bool {
        matches!(
            self,
            FinishReason::Safety
                | FinishReason::Recitation
                | FinishReason::Blocklist
                | FinishReason::ProhibitedContent
                | FinishReason::Spii
                | FinishReason::ImageSafety
                | FinishReason::PromptBlocked
        )
    }
}

/// One content part of the candidate, borrowing its strings from the event buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part<'a> {
    /// Visible text, or a thought summary when `thought` is set. Text may be empty when the part only
    /// carries a signature (Gemini 3's final part).
    Text { text: Text<'a>, thought: bool, signature: Option<&'a str> },
    /// A complete tool call (Google never splits one across events). `args` is compact JSON text of the
    /// arguments object, `{}` when absent, with the upstream key order kept.
    FunctionCall { id: Option<&'a str>, name: &'a str, args: String, signature: Option<&'a str> },
    /// Generated media, base64 `data`.
    InlineData { mime_type: &'a str, data: &'a str },
    /// Media by reference.
    FileData { mime_type: &'a str, file_uri: &'a str },
    /// A part kind no client protocol maps (executable code, code results, …); ignored by the machines.
    Other,
}

/// The protocol-neutral content of one upstream stream event (first candidate only; Levitate never asks
/// for more than one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chunk<'a> {
    pub parts: Vec<Part<'a>>,
    pub finish_reason: Option<FinishReason>,
    /// Usage as reported by this event; usually a running total, so the last one seen wins.
    pub usage: Option<Usage>,
    pub response_id: Option<&'a str>,
    pub model_version: Option<&'a str>,
    /// The candidate's `groundingMetadata` (a web search's queries and sources), on one of the last events.
    pub grounding: Option<crate::grounding::Grounding>,
}

/// Arguments nested deeper than this are rejected rather than walked.
const MAX_ARGS_DEPTH: usize = 128;

/// Parses upstream event payloads, reusing the scanner's and simd-json's buffers between events.
pub struct ChunkParser {
    /// What the scanner found in the last event of the usual shape.
    spans: Spans,
    /// Where the walk read each value of the last event it walked.
    holes: Vec<Hole>,
    /// The layout of the last event walked, to read the next event of that layout.
    skeleton: Skeleton,
    /// simd-json's scratch buffers, made on the first event the scanner leaves to it: most streams have
    /// none, and an open stream should not hold them.
    buffers: Option<Buffers>,
    /// The tape's allocation, kept empty between events.
    nodes: Vec<Node<'static>>,
}

impl Default for ChunkParser {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for ChunkParser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkParser").finish_non_exhaustive()
    }
}

impl ChunkParser {
    pub fn new() -> Self {
        let mut spans = Spans::default();
        let skeleton = Skeleton::with_room(&mut spans);
        ChunkParser {
            spans,
            holes: Vec::with_capacity(scan::USUAL_VALUES),
            skeleton,
            buffers: None,
            nodes: Vec::new(),
        }
    }

    /// Parses one SSE `data` payload: the `{"response":{…},"traceId":…}` envelope, a bare `{candidates,…}`
    /// response, or an in-stream `{"error":{code,message,status}}` (returned as [`StreamError::Upstream`]).
    /// Strings are unescaped in place, so `data` is scratch afterwards.
    pub fn parse<'a>(&mut self, data: &'a mut [u8]) -> Result<Chunk<'a>, StreamError> {
        if self.skeleton.replay(data, &mut self.spans) || self.walk(data) {
            return usual_chunk(&mut self.spans, data);
        }
        self.parse_with_simd_json(data)
    }

    /// Walks an event of another layout than the last one's, and keeps its layout for the next.
    fn walk(&mut self, data: &[u8]) -> bool {
        if !scan::scan(data, &mut self.spans, &mut self.holes) {
            return false;
        }
        self.skeleton.learn(data, &self.holes, &self.spans);
        true
    }

    /// Any event, through simd-json's tape.
    pub(super) fn parse_with_simd_json<'a>(&mut self, data: &'a mut [u8]) -> Result<Chunk<'a>, StreamError> {
        let mut tape: Tape<'a> = Tape(std::mem::take(&mut self.nodes)).reset();
        let buffers = self.buffers.get_or_insert_with(|| Buffers::new(data.len()));
        let parsed = simd_json::fill_tape(data, buffers, &mut tape)
            .map_err(|e| StreamError::InvalidJson(e.to_string()))
            .and_then(|()| chunk_from(Value(&tape.0)));
        self.nodes = tape.reset().0;
        parsed
    }
}

/// The chunk of an event the scanner read: texts stay escaped where that form is canonical ([`Text`]), the
/// rest are unescaped in place, then the whole event is checked as UTF-8 once (as simd-json checks every event
/// whole).
fn usual_chunk<'a>(spans: &mut Spans, data: &'a mut [u8]) -> Result<Chunk<'a>, StreamError> {
    for text in spans.parts.iter_mut().flatten().filter_map(|part| part.text.as_mut()) {
        if text.escaped && !text.canonical() {
            text.range.end = cursor::unescape_in_place(data, text.range.clone());
            text.escaped = false;
        }
    }
    let data: &'a [u8] = data;
    let event = simdutf8::basic::from_utf8(data)
        .map_err(|_| StreamError::InvalidJson("the event is not valid UTF-8".to_owned()))?;
    // Every range starts and ends next to an ASCII quote, so it is on character boundaries.
    let string = |range: &Range<usize>| {
        event
            .get(range.clone())
            .ok_or_else(|| StreamError::InvalidJson("a string splits a character".to_owned()))
    };
    let mut parts = Vec::with_capacity(spans.parts.len());
    for part in &spans.parts {
        parts.push(match part {
            Some(part) => Part::Text {
                text: match &part.text {
                    Some(span) if span.canonical() => Text::escaped(string(&span.range)?),
                    Some(span) => Text::new(string(&span.range)?),
                    None => Text::new(""),
                },
                thought: part.thought,
                signature: part.signature.as_ref().map(string).transpose()?,
            },
            None => Part::Other,
        });
    }
    Ok(Chunk {
        parts,
        finish_reason: spans.finish_reason.as_ref().map(string).transpose()?.map(FinishReason::parse),
        usage: spans.usage,
        response_id: spans.response_id.as_ref().map(string).transpose()?,
        model_version: spans.model_version.as_ref().map(string).transpose()?,
        grounding: None,
    })
}

fn chunk_from<'a>(root: Value<'_, 'a>) -> Result<Chunk<'a>, StreamError> {
    if !root.is_object() {
        return Err(StreamError::NotAnObject);
    }
    let mut response = root;
    for (key, value) in root.fields() {
        match key {
            "response" if value.is_object() => response = value,
            "error" => return Err(upstream_error(value)),
            _ => {}
        }
    }
    let mut chunk = Chunk::default();
    for (key, value) in response.fields() {
        match key {
            "candidates" => {
                if let Some(candidate) = value.items().next() {
                    read_candidate(candidate, &mut chunk)?;
                }
            }
            "usageMetadata" | "usage_metadata" => chunk.usage = Some(read_usage(value)),
            "modelVersion" | "model_version" => chunk.model_version = value.as_str(),
            "responseId" | "response_id" => chunk.response_id = value.as_str(),
            "promptFeedback" | "prompt_feedback"
                if value.get_either("blockReason", "block_reason").is_some() =>
            {
                chunk.finish_reason.get_or_insert(FinishReason::PromptBlocked);
            }
            _ => {}
        }
    }
    Ok(chunk)
}

fn read_candidate<'a>(candidate: Value<'_, 'a>, chunk: &mut Chunk<'a>) -> Result<(), StreamError> {
    for (key, value) in candidate.fields() {
        match key {
            "content" => {
                if let Some(parts) = value.get("parts") {
                    chunk.parts.reserve(parts.len());
                    for part in parts.items() {
                        chunk.parts.push(read_part(part)?);
                    }
                }
            }
            "groundingMetadata" | "grounding_metadata" => {
                // Rare (web searches only) and small once bounded: re-serialized and parsed by its own module.
                let mut json = Vec::new();
                if write_value(&mut json, value, 0).is_ok() {
                    chunk.grounding = crate::grounding::Grounding::from_json(&json);
                }
            }
            "finishReason" | "finish_reason" => {
                if let Some(reason) = value.as_str() {
                    // A candidate reason is more precise than a prompt block, and they never meet anyway.
                    chunk.finish_reason = Some(FinishReason::parse(reason));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn read_part<'a>(part: Value<'_, 'a>) -> Result<Part<'a>, StreamError> {
    let mut text = None;
    let mut thought = false;
    let mut signature = None;
    let mut call = None;
    let mut media = None;
    let mut file = None;
    for (key, value) in part.fields() {
        match key {
            "text" => text = value.as_str(),
            "thought" => thought = value.as_bool().unwrap_or(false),
            "thoughtSignature" | "thought_signature" => signature = value.as_str(),
            "functionCall" | "function_call" => call = Some(value),
            "inlineData" | "inline_data" => media = Some(value),
            "fileData" | "file_data" => file = Some(value),
            _ => {}
        }
    }
    if let Some(call) = call {
        let args = match call.get("args") {
            Some(value) if !value.is_null() => {
                let mut args = Vec::new();
                write_value(&mut args, value, 0)?;
                // Valid UTF-8 strings and ASCII punctuation make valid UTF-8.
                String::from_utf8(args)
                    .map_err(|_| StreamError::InvalidJson("args are not UTF-8".to_owned()))?
            }
            _ => "{}".to_owned(),
        };
        return Ok(Part::FunctionCall {
            id: call.get("id").and_then(Value::as_str),
            name: call.get("name").and_then(Value::as_str).unwrap_or(""),
            args,
            signature,
        });
    }
    if let Some(media) = media {
        return Ok(Part::InlineData {
            mime_type: media.get_either("mimeType", "mime_type").and_then(Value::as_str).unwrap_or(""),
            data: media.get("data").and_then(Value::as_str).unwrap_or(""),
        });
    }
    if let Some(file) = file {
        return Ok(Part::FileData {
            mime_type: file.get_either("mimeType", "mime_type").and_then(Value::as_str).unwrap_or(""),
            file_uri: file.get_either("fileUri", "file_uri").and_then(Value::as_str).unwrap_or(""),
        });
    }
    if text.is_some() || signature.is_some() {
        return Ok(Part::Text { text: Text::new(text.unwrap_or("")), thought, signature });
    }
    Ok(Part::Other)
}

fn read_usage(usage: Value<'_, '_>) -> Usage {
    let mut out = Usage::default();
    for (key, value) in usage.fields() {
        let count = value.as_u64().unwrap_or(0);
        match key {
            "promptTokenCount" | "prompt_token_count" => out.prompt = count,
            "candidatesTokenCount" | "candidates_token_count" => out.candidates = count,
            "thoughtsTokenCount" | "thoughts_token_count" => out.thoughts = count,
            "cachedContentTokenCount" | "cached_content_token_count" => out.cached = count,
            "totalTokenCount" | "total_token_count" => out.total = count,
            _ => {}
        }
    }
    out
}

fn upstream_error(error: Value<'_, '_>) -> StreamError {
    let status = error
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|code| u16::try_from(code).ok())
        .filter(|code| (400..=599).contains(code))
        .unwrap_or(500);
    StreamError::Upstream {
        status,
        google_status: error.get("status").and_then(Value::as_str).map(str::to_owned),
        message: error.get("message").and_then(Value::as_str).unwrap_or("upstream error").to_owned(),
    }
}

/// Re-serialises a tape value as compact JSON, keeping key order.
fn write_value(out: &mut Vec<u8>, value: Value<'_, '_>, depth: usize) -> Result<(), StreamError> {
    if depth > MAX_ARGS_DEPTH {
        return Err(StreamError::TooDeep);
    }
    match value.head() {
        Some(Node::String(s)) => json::write_str(out, s),
        Some(Node::Object { .. }) => {
            out.push(b'{');
            for (i, (key, field)) in value.fields().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json::write_str(out, key);
                out.push(b':');
                write_value(out, field, depth + 1)?;
            }
            out.push(b'}');
        }
        Some(Node::Array { .. }) => {
            out.push(b'[');
            for (i, item) in value.items().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item, depth + 1)?;
            }
            out.push(b']');
        }
        Some(Node::Static(node)) => match node {
            StaticNode::Null => out.extend_from_slice(b"null"),
            StaticNode::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            StaticNode::I64(n) => json::write_i64(out, *n),
            StaticNode::U64(n) => json::write_u64(out, *n),
            // serde_json writes the shortest round-trip form (ryu); a parsed float is always finite.
            StaticNode::F64(f) => match serde_json::Number::from_f64(*f) {
                Some(n) => out.extend_from_slice(n.to_string().as_bytes()),
                None => out.extend_from_slice(b"null"),
            },
        },
        None => out.extend_from_slice(b"null"),
    }
    Ok(())
}

/// One JSON value on a simd-json tape: its head node followed by all nested nodes.
#[derive(Clone, Copy)]
struct Value<'t, 'a>(&'t [Node<'a>]);

impl<'t, 'a> Value<'t, 'a> {
    fn head(self) -> Option<&'t Node<'a>> {
        self.0.first()
    }

    fn is_object(self) -> bool {
        matches!(self.head(), Some(Node::Object { .. }))
    }

    fn is_null(self) -> bool {
        matches!(self.head(), Some(Node::Static(StaticNode::Null)))
    }

    fn as_str(self) -> Option<&'a str> {
        match self.head() {
            Some(Node::String(s)) => Some(s),
            _ => None,
        }
    }

    fn as_bool(self) -> Option<bool> {
        match self.head() {
            Some(Node::Static(StaticNode::Bool(b))) => Some(*b),
            _ => None,
        }
    }

    fn as_u64(self) -> Option<u64> {
        match self.head() {
            Some(Node::Static(StaticNode::U64(n))) => Some(*n),
            Some(Node::Static(StaticNode::I64(n))) => u64::try_from(*n).ok(),
            _ => None,
        }
    }

    /// Number of elements of an array (0 for anything else).
    fn len(self) -> usize {
        match self.head() {
            Some(Node::Array { len, .. }) => *len,
            _ => 0,
        }
    }

    /// Key/value pairs of an object; nothing for any other value.
    fn fields(self) -> Fields<'t, 'a> {
        match self.head() {
            Some(Node::Object { len, .. }) => {
                Fields { rest: self.0.get(1..).unwrap_or_default(), left: *len }
            }
            _ => Fields { rest: &[], left: 0 },
        }
    }

    /// Elements of an array; nothing for any other value.
    fn items(self) -> Items<'t, 'a> {
        match self.head() {
            Some(Node::Array { len, .. }) => Items { rest: self.0.get(1..).unwrap_or_default(), left: *len },
            _ => Items { rest: &[], left: 0 },
        }
    }

    fn get(self, key: &str) -> Option<Value<'t, 'a>> {
        self.fields().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    fn get_either(self, key: &str, alias: &str) -> Option<Value<'t, 'a>> {
        self.fields().find(|(k, _)| *k == key || *k == alias).map(|(_, v)| v)
    }
}

/// Splits the value starting at `nodes[0]` off the front of `nodes`.
fn split_value<'t, 'a>(nodes: &'t [Node<'a>]) -> Option<(Value<'t, 'a>, &'t [Node<'a>])> {
    let span = match nodes.first()? {
        Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
        _ => 1,
    };
    if span > nodes.len() {
        return None;
    }
    let (value, rest) = nodes.split_at(span);
    Some((Value(value), rest))
}

struct Fields<'t, 'a> {
    rest: &'t [Node<'a>],
    left: usize,
}

impl<'t, 'a> Iterator for Fields<'t, 'a> {
    type Item = (&'a str, Value<'t, 'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let (key, after_key) = self.rest.split_first()?;
        let Node::String(key) = key else { return None };
        let (value, rest) = split_value(after_key)?;
        self.rest = rest;
        Some((key, value))
    }
}

struct Items<'t, 'a> {
    rest: &'t [Node<'a>],
    left: usize,
}

impl<'t, 'a> Iterator for Items<'t, 'a> {
    type Item = Value<'t, 'a>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let (value, rest) = split_value(self.rest)?;
        self.rest = rest;
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_with<T>(json: &str, check: impl FnOnce(Result<Chunk<'_>, StreamError>) -> T) -> T {
        let mut data = json.as_bytes().to_vec();
        let mut parser = ChunkParser::new();
        check(parser.parse(&mut data))
    }

    #[test]
    fn parses_the_v1internal_envelope() {
        let json = r#"{"response":{"candidates":[{"content":{"role":"model","parts":[{"text":"OK"}]},"finishReason":"STOP"}],
            "usageMetadata":{"promptTokenCount":21,"candidatesTokenCount":1,"totalTokenCount":131,"thoughtsTokenCount":109,"cachedContentTokenCount":5},
            "modelVersion":"gemini-3-flash-a","responseId":"tjVCavaJBYjgz7IP-NnfSQ"},"traceId":"x","metadata":{}}"#;
        parse_with(json, |chunk| {
            let chunk = chunk.unwrap();
            assert_eq!(chunk.parts, [Part::Text { text: "OK".into(), thought: false, signature: None }]);
            assert_eq!(chunk.finish_reason, Some(FinishReason::Stop));
            assert_eq!(
                chunk.usage,
                Some(Usage { prompt: 21, candidates: 1, thoughts: 109, cached: 5, total: 131 })
            );
            assert_eq!(chunk.model_version, Some("gemini-3-flash-a"));
            assert_eq!(chunk.response_id, Some("tjVCavaJBYjgz7IP-NnfSQ"));
        });
    }

    #[test]
    fn reads_grounding_metadata_beside_the_finish_reason() {
        let json = r#"{"response":{"candidates":[{"content":{"parts":[{"text":""}]},"finishReason":"STOP",
            "groundingMetadata":{"webSearchQueries":["levitate"],"groundingChunks":[{"web":{"uri":"https://x/r","title":"x.dev"}}],
            "groundingSupports":[{"segment":{"endIndex":4,"text":"Levi"},"groundingChunkIndices":[0]}]}}]}}"#;
        parse_with(json, |chunk| {
            let grounding = chunk.unwrap().grounding.expect("grounding");
            assert_eq!(grounding.queries, ["levitate"]);
            assert_eq!(grounding.sources[0].title, "x.dev");
            assert_eq!(grounding.cited_spans("Levitate").len(), 1);
        });
        parse_with(r#"{"candidates":[{"groundingMetadata":{"groundingChunks":"junk"}}]}"#, |chunk| {
            assert_eq!(chunk.unwrap().grounding, None, "a malformed block is ignored, not an error");
        });
    }

    #[test]
    fn parses_an_unwrapped_response() {
        parse_with(r#"{"candidates":[{"content":{"parts":[{"text":"hi \"there\"\n"}]}}]}"#, |chunk| {
            assert_eq!(
                chunk.unwrap().parts,
                [Part::Text { text: "hi \"there\"\n".into(), thought: false, signature: None }]
            );
        });
    }

    #[test]
    fn reads_thoughts_and_both_signature_spellings() {
        let json = r#"{"response":{"candidates":[{"content":{"parts":[
            {"text":"**Plan**","thought":true,"thoughtSignature":"sigA"},
            {"text":"","thought_signature":"sigB"},
            {"thoughtSignature":"sigC"}]}}]}}"#;
        parse_with(json, |chunk| {
            assert_eq!(
                chunk.unwrap().parts,
                [
                    Part::Text { text: "**Plan**".into(), thought: true, signature: Some("sigA") },
                    Part::Text { text: "".into(), thought: false, signature: Some("sigB") },
                    Part::Text { text: "".into(), thought: false, signature: Some("sigC") },
                ]
            );
        });
    }

    #[test]
    fn keeps_function_call_args_as_ordered_compact_json() {
        let json = r#"{"response":{"candidates":[{"content":{"parts":[
            {"functionCall":{"name":"get_weather","args":{"z":1,"a":[true,null,-2,1.5,"x\"y"],"m":{}},"id":"t1"},"thoughtSignature":"sig"},
            {"function_call":{"name":"noop"}}]}}]}}"#;
        parse_with(json, |chunk| {
            assert_eq!(
                chunk.unwrap().parts,
                [
                    Part::FunctionCall {
                        id: Some("t1"),
                        name: "get_weather",
                        args: r#"{"z":1,"a":[true,null,-2,1.5,"x\"y"],"m":{}}"#.to_owned(),
                        signature: Some("sig"),
                    },
                    Part::FunctionCall { id: None, name: "noop", args: "{}".to_owned(), signature: None },
                ]
            );
        });
    }

    #[test]
    fn reads_media_parts() {
        let json = r#"{"candidates":[{"content":{"parts":[{"inlineData":{"mimeType":"image/png","data":"iVBO"}},
            {"file_data":{"mime_type":"application/pdf","file_uri":"gs://b/f"}},{"executableCode":{"code":"1"}}]}}]}"#;
        parse_with(json, |chunk| {
            assert_eq!(
                chunk.unwrap().parts,
                [
                    Part::InlineData { mime_type: "image/png", data: "iVBO" },
                    Part::FileData { mime_type: "application/pdf", file_uri: "gs://b/f" },
                    Part::Other,
                ]
            );
        });
    }

    #[test]
    fn maps_every_documented_finish_reason() {
        for (name, reason) in [
            ("MAX_TOKENS", FinishReason::MaxTokens),
            ("SAFETY", FinishReason::Safety),
            ("RECITATION", FinishReason::Recitation),
            ("OTHER", FinishReason::Other),
            ("BLOCKLIST", FinishReason::Blocklist),
            ("PROHIBITED_CONTENT", FinishReason::ProhibitedContent),
            ("SPII", FinishReason::Spii),
            ("IMAGE_SAFETY", FinishReason::ImageSafety),
            ("SOMETHING_NEW", FinishReason::Unknown),
        ] {
            let json = format!(r#"{{"response":{{"candidates":[{{"finishReason":"{name}"}}]}}}}"#);
            parse_with(&json, |chunk| assert_eq!(chunk.unwrap().finish_reason, Some(reason)));
        }
    }

    #[test]
    fn a_blocked_prompt_finishes_the_response() {
        parse_with(r#"{"response":{"promptFeedback":{"blockReason":"SAFETY"}}}"#, |chunk| {
            assert_eq!(chunk.unwrap().finish_reason, Some(FinishReason::PromptBlocked));
        });
    }

    #[test]
    fn an_in_stream_error_is_returned_as_upstream_error() {
        let json = r#"{"error":{"code":429,"message":"You have exhausted your capacity on this model.","status":"RESOURCE_EXHAUSTED"}}"#;
        parse_with(json, |chunk| {
            assert_eq!(
                chunk.unwrap_err(),
                StreamError::Upstream {
                    status: 429,
                    google_status: Some("RESOURCE_EXHAUSTED".to_owned()),
                    message: "You have exhausted your capacity on this model.".to_owned(),
                }
            );
        });
    }

    #[test]
    fn rejects_invalid_json_and_non_objects() {
        parse_with("{\"response\":", |chunk| assert!(matches!(chunk, Err(StreamError::InvalidJson(_)))));
        parse_with("[1]", |chunk| assert_eq!(chunk.unwrap_err(), StreamError::NotAnObject));
    }

    #[test]
    fn rejects_absurdly_deep_args() {
        let args = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let json = format!(
            r#"{{"candidates":[{{"content":{{"parts":[{{"functionCall":{{"name":"f","args":{args}}}}}]}}}}]}}"#
        );
        parse_with(&json, |chunk| assert!(chunk.is_err()));
    }

    #[test]
    fn the_parser_is_reusable_across_events() {
        let mut parser = ChunkParser::new();
        for i in 0..50 {
            let mut data =
                format!(r#"{{"response":{{"candidates":[{{"content":{{"parts":[{{"text":"n{i}"}}]}}}}]}}}}"#)
                    .into_bytes();
            let chunk = parser.parse(&mut data).unwrap();
            let expected = format!("n{i}");
            assert_eq!(
                chunk.parts,
                [Part::Text { text: expected.as_str().into(), thought: false, signature: None }]
            );
        }
    }
}
