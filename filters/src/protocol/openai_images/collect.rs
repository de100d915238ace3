//! Upstream `v1internal` events of an image model → the `data` items of an OpenAI Images response.
//!
//! [`ImageCollector`] is driven by the gateway's pump like any protocol's machine, but writes nothing while
//! the upstream streams: each `inlineData` image is rendered once, straight from the event buffer into its
//! item (`{"b64_json":…}` or `{"url":"data:…"}`), with the model's text so far as `revised_prompt`. The
//! gateway makes one upstream call per requested image and joins the items with [`images_response`].

use crate::error::{ClientError, ErrorKind};
use crate::signature::CapturedSignature;
use crate::stream::chunk::{ChunkParser, FinishReason, Part, Usage};
use crate::stream::json::{write_escaped, write_str, write_u64};
use crate::stream::{is_empty_payload, StreamError, Translator};

use super::request::ResponseFormat;

/// Longest model text kept as `revised_prompt`.
const MAX_REVISED_PROMPT: usize = 4096;

/// Collects the images of one upstream answer.
#[derive(Debug)]
pub struct ImageCollector {
    parser: ChunkParser,
    format: ResponseFormat,
    /// The rendered `data` items, comma-separated.
    items: Vec<u8>,
    images: u32,
    text: String,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
}

impl ImageCollector {
    pub fn new(format: ResponseFormat) -> Self {
        ImageCollector {
            parser: ChunkParser::new(),
            format,
            items: Vec::new(),
            images: 0,
            text: String::new(),
            finish: None,
            usage: None,
        }
    }

    /// The answer's rendered items, or why it has none: the upstream's safety filter (400, as OpenAI
    /// refuses such prompts) or an answer with text only (502, with the text, which usually says why).
    pub fn into_items(self) -> Result<Vec<u8>, ClientError> {
        if self.images > 0 {
            return Ok(self.items);
        }
        if self.finish.is_some_and(FinishReason::is_content_filter) {
            return Err(ClientError::invalid(
                "The image was refused by the upstream's safety system; change the prompt and try again.",
            )
            .with_param("prompt"));
        }
        let said = if self.text.is_empty() { String::new() } else { format!(": {}", self.text.trim()) };
        Err(ClientError::new(502, ErrorKind::Api, format!("The image model answered without an image{said}")))
    }

    fn on_image(&mut self, mime_type: &str, data: &str) {
        if self.images > 0 {
            self.items.push(b',');
        }
        self.images += 1;
        self.items.reserve(data.len() + mime_type.len() + self.text.len() + 64);
        match self.format {
            ResponseFormat::B64Json => self.items.extend_from_slice(b"{\"b64_json\":\""),
            ResponseFormat::Url => {
                self.items.extend_from_slice(b"{\"url\":\"data:");
                write_escaped(&mut self.items, mime_type);
                self.items.extend_from_slice(b";base64,");
            }
        }
        // Base64 needs no escaping, but the bytes come from the network: one checked pass, one copy.
        write_escaped(&mut self.items, data);
        self.items.push(b'"');
        if !self.text.trim().is_empty() {
            self.items.extend_from_slice(b",\"revised_prompt\":");
            write_str(&mut self.items, self.text.trim());
        }
        self.items.push(b'}');
    }
}

impl Translator for ImageCollector {
    fn on_event(&mut self, data: &mut [u8], _out: &mut Vec<u8>) -> Result<(), StreamError> {
        if is_empty_payload(data) {
            return Ok(());
        }
        let chunk = self.parser.parse(data)?;
        if chunk.usage.is_some() {
            self.usage = chunk.usage;
        }
        for part in &chunk.parts {
            match part {
                Part::Text { text, thought: false, .. } => {
                    let text = text.to_str();
                    let room = MAX_REVISED_PROMPT.saturating_sub(self.text.len());
                    let mut end = text.len().min(room);
                    while !text.is_char_boundary(end) {
                        end -= 1;
                    }
                    self.text.push_str(&text[..end]);
                }
                // Only images count: a model's other media (none seen so far) has no place in `data`.
                Part::InlineData { mime_type, data }
                    if !data.is_empty() && mime_type.starts_with("image/") =>
                {
                    let (mime_type, data) = (*mime_type, *data);
                    self.on_image(mime_type, data);
                }
                _ => {}
            }
        }
        if let Some(reason) = chunk.finish_reason {
            self.finish.get_or_insert(reason);
        }
        Ok(())
    }

    fn finish(&mut self, _out: &mut Vec<u8>) {}

    fn take_signatures(&mut self) -> Vec<CapturedSignature> {
        Vec::new()
    }

    fn finished_by_upstream(&self) -> bool {
        self.finish.is_some()
    }

    fn emitted_anything(&self) -> bool {
        self.images > 0
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn content_type(&self) -> &'static str {
        "application/json"
    }

    fn streams(&self) -> bool {
        false
    }
}

/// The Images response: `{"created","data":[items…],"usage"}`. Google counts the image as output tokens.
pub fn images_response(created: u64, items: &[Vec<u8>], usage: Usage) -> Vec<u8> {
    let size: usize = items.iter().map(Vec::len).sum();
    let mut out = Vec::with_capacity(size + items.len() + 256);
    out.extend_from_slice(b"{\"created\":");
    write_u64(&mut out, created);
    out.extend_from_slice(b",\"data\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(item);
    }
    out.extend_from_slice(b"],\"usage\":{\"input_tokens\":");
    write_u64(&mut out, usage.prompt);
    out.extend_from_slice(b",\"input_tokens_details\":{\"text_tokens\":");
    write_u64(&mut out, usage.prompt);
    out.extend_from_slice(b",\"image_tokens\":0},\"output_tokens\":");
    write_u64(&mut out, usage.candidates + usage.thoughts);
    out.extend_from_slice(b",\"total_tokens\":");
    write_u64(&mut out, usage.prompt + usage.candidates + usage.thoughts);
    out.extend_from_slice(b"}}");
    out
}
