//! The upstream inner `request` object (PROTOCOL.md §2), as the OpenAI and Anthropic transforms write it.
//!
//! Both protocols map onto the same turns, parts, tools and `generationConfig`, so the serializable shape
//! lives here once; its pieces borrow from the parsed client request, so serializing them is the only copy.
//! Helpers every protocol needs to follow the same upstream rules (merge same-role turns, user turn first,
//! the output budget above the thinking budget) live beside it.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::Value;

use super::client_json::{write_small, JsonObject};
use super::{ToolNameMap, TransformError};
use crate::json_tokens::{Json, JsonTokens};
use crate::schema::{clean_json, SchemaOptions};
use crate::signature::ModelFamily;
use crate::stream::json::{write_list, write_str, Object};

/// Largest output budget the upstream accepts, per family, when a thinking budget forces a bump.
pub(crate) const GEMINI_MAX_OUTPUT: u32 = 65_536;
pub(crate) const CLAUDE_MAX_OUTPUT: u32 = 64_000;

/// The inner `request` object. It is written by hand ([`InnerJson::encode`]) with the stream machines'
/// escaper: a generic serializer escapes byte by byte, and the conversation text is most of the bytes.
pub(crate) struct InnerJson<'a> {
    pub contents: Vec<Turn<'a>>,
    pub system_instruction: Option<Turn<'a>>,
    /// The `tools` array, already encoded ([`encode_tools`] or a [`super::ToolCache`] hit); empty for none.
    pub tools: &'a [u8],
    pub tool_config: Option<ToolConfig>,
    pub generation_config: GenerationConfig,
    pub session_id: &'a str,
}

impl InnerJson<'_> {
    /// The request's JSON bytes; `capacity` is a guess of their size, to allocate once. The bytes are kept
    /// while the answer streams (a retry on another account sends them again), so a guess that turned out
    /// mostly unused room is given back: the room a small request's guess adds (4 KiB) would otherwise
    /// stay with every open stream.
    pub fn encode(&self, capacity: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(capacity);
        let mut o = Object::open(&mut out);
        write_list(o.key("contents"), &self.contents, Turn::write);
        if let Some(system) = &self.system_instruction {
            system.write(o.key("systemInstruction"));
        }
        if !self.tools.is_empty() {
            o.key("tools").extend_from_slice(self.tools);
        }
        if let Some(config) = &self.tool_config {
            config.write(o.key("toolConfig"));
        }
        if !self.generation_config.is_empty() {
            self.generation_config.write(o.key("generationConfig"));
        }
        write_str(o.key("sessionId"), self.session_id);
        o.close();
        if out.capacity() / 2 > out.len() {
            out.shrink_to_fit();
        }
        out
    }
}

pub(crate) struct Turn<'a> {
    pub role: &'static str,
    pub parts: Vec<Part<'a>>,
}

impl Turn<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        let mut o = Object::open(out);
        write_str(o.key("role"), self.role);
        write_list(o.key("parts"), &self.parts, Part::write);
        o.close();
    }
}

pub(crate) enum Part<'a> {
    Text { text: Cow<'a, str>, thought: bool, thought_signature: Option<String> },
    InlineData { inline_data: MediaRef<'a> },
    FileData { file_data: MediaRef<'a> },
    FunctionCall { function_call: FunctionCallOut<'a>, thought_signature: Option<String> },
    FunctionResponse { function_response: FunctionResponseOut<'a> },
}

impl Part<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        let mut o = Object::open(out);
        match self {
            Part::Text { text, thought, thought_signature } => {
                write_str(o.key("text"), text);
                if *thought {
                    o.key("thought").extend_from_slice(b"true");
                }
                if let Some(signature) = thought_signature {
                    write_str(o.key("thoughtSignature"), signature);
                }
            }
            Part::InlineData { inline_data } => inline_data.write(o.key("inlineData")),
            Part::FileData { file_data } => file_data.write(o.key("fileData")),
            Part::FunctionCall { function_call, thought_signature } => {
                function_call.write(o.key("functionCall"));
                if let Some(signature) = thought_signature {
                    write_str(o.key("thoughtSignature"), signature);
                }
            }
            Part::FunctionResponse { function_response } => {
                function_response.write(o.key("functionResponse"))
            }
        }
        o.close();
    }
}

impl<'a> Part<'a> {
    /// A visible text part, or `None` for blank text (Claude rejects empty text blocks).
    pub fn text(text: &'a str) -> Option<Self> {
        (!text.trim().is_empty()).then_some(Part::Text {
            text: Cow::Borrowed(text),
            thought: false,
            thought_signature: None,
        })
    }

    /// A thought part, with the signature that proves it when there is one.
    pub fn thought(text: &'a str, thought_signature: Option<String>) -> Self {
        Part::Text { text: Cow::Borrowed(text), thought: true, thought_signature }
    }

    /// `inlineData` with base64 `data`.
    pub fn inline(mime_type: &'a str, data: &'a str) -> Self {
        Part::InlineData { inline_data: MediaRef { mime_type, data: Some(data), file_uri: None } }
    }

    /// `fileData` referring to `uri`.
    pub fn file(mime_type: &'a str, uri: &'a str) -> Self {
        Part::FileData { file_data: MediaRef { mime_type, data: None, file_uri: Some(uri) } }
    }
}

pub(crate) struct MediaRef<'a> {
    pub mime_type: &'a str,
    pub data: Option<&'a str>,
    pub file_uri: Option<&'a str>,
}

impl MediaRef<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        let mut o = Object::open(out);
        write_str(o.key("mimeType"), self.mime_type);
        if let Some(data) = self.data {
            write_str(o.key("data"), data);
        }
        if let Some(uri) = self.file_uri {
            write_str(o.key("fileUri"), uri);
        }
        o.close();
    }
}

pub(crate) struct FunctionCallOut<'a> {
    pub id: &'a str,
    pub name: String,
    pub args: JsonObject<'a>,
}

impl FunctionCallOut<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        let mut o = Object::open(out);
        write_str(o.key("id"), self.id);
        write_str(o.key("name"), &self.name);
        self.args.write(o.key("args"));
        o.close();
    }
}

pub(crate) struct FunctionResponseOut<'a> {
    pub id: &'a str,
    pub name: String,
    pub response: ToolResponse<'a>,
}

impl FunctionResponseOut<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        let mut o = Object::open(out);
        write_str(o.key("id"), self.id);
        write_str(o.key("name"), &self.name);
        let mut response = Object::open(o.key("response"));
        match &self.response {
            ToolResponse::Result(value) => value.write(response.key("result")),
            ToolResponse::Error(value) => value.write(response.key("error")),
        }
        response.close();
        o.close();
    }
}

/// `response:{result}` for a tool's output, `response:{error}` for a failed call.
pub(crate) enum ToolResponse<'a> {
    Result(ToolResultValue<'a>),
    Error(ToolResultValue<'a>),
}

pub(crate) enum ToolResultValue<'a> {
    Json(JsonObject<'a>),
    Text(Cow<'a, str>),
}

impl<'a> ToolResultValue<'a> {
    /// The JSON object when the text is one (the model reads structure better), otherwise the text.
    pub fn from_text(text: Cow<'a, str>) -> Self {
        if text.trim_start().starts_with('{') {
            if let Ok(object) = JsonObject::parse(text.clone()) {
                return ToolResultValue::Json(object);
            }
        }
        ToolResultValue::Text(text)
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            ToolResultValue::Json(object) => object.write(out),
            ToolResultValue::Text(text) => write_str(out, text),
        }
    }
}

/// One entry of `tools`: function declarations, or one of Google's own tools (never mixed, §2).
#[derive(Default)]
pub(crate) struct ToolGroup<'a> {
    pub function_declarations: Vec<FunctionDeclaration<'a>>,
    pub google_search: bool,
}

/// The `tools` array for `groups`; empty when there are none.
pub(crate) fn encode_tools(groups: &[ToolGroup<'_>]) -> Vec<u8> {
    // Sized once: each declaration's parts are known, and growing by doubling copied the array 5-6 times.
    let size: usize =
        groups.iter().flat_map(|g| &g.function_declarations).map(FunctionDeclaration::size).sum();
    let mut out = Vec::with_capacity(size + 64);
    if !groups.is_empty() {
        write_list(&mut out, groups, ToolGroup::write);
    }
    out
}

impl ToolGroup<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        let mut o = Object::open(out);
        if !self.function_declarations.is_empty() {
            write_list(
                o.key("functionDeclarations"),
                &self.function_declarations,
                FunctionDeclaration::write,
            );
        }
        if self.google_search {
            o.key("googleSearch").extend_from_slice(b"{}");
        }
        o.close();
    }
}

pub(crate) struct FunctionDeclaration<'a> {
    pub name: String,
    pub description: Option<&'a str>,
    /// The cleaned schema, already JSON.
    pub parameters: Option<Vec<u8>>,
}

impl<'a> FunctionDeclaration<'a> {
    /// About the bytes [`write`](Self::write) appends, to size the `tools` array. The description is the only
    /// part escaped on the way, and prose has a quote or a newline every few dozen bytes: an eighth more
    /// covers that, where sizing it exactly made the array grow once more, a copy of all of it.
    fn size(&self) -> usize {
        let description = self.description.map_or(0, |d| d.len() + d.len() / 8);
        let parameters = self.parameters.as_ref().map_or(0, Vec::len);
        self.name.len() + description + parameters + 48
    }

    fn write(&self, out: &mut Vec<u8>) {
        let mut o = Object::open(out);
        write_str(o.key("name"), &self.name);
        if let Some(description) = self.description {
            write_str(o.key("description"), description);
        }
        if let Some(parameters) = &self.parameters {
            o.key("parameters").extend_from_slice(parameters);
        }
        o.close();
    }

    /// A declaration for a client tool: its name registered in `names`, its schema cleaned (`param` names the
    /// schema's field in errors). Claude in VALIDATED mode needs a parameters object even for a tool without
    /// one.
    pub fn new(
        client_name: &str,
        description: Option<&'a str>,
        parameters: Option<Json<'_>>,
        family: ModelFamily,
        names: &mut ToolNameMap,
        param: impl Fn() -> String,
    ) -> Result<Self, TransformError> {
        let opts = SchemaOptions {
            require_reason_for_empty_object: family == ModelFamily::Claude,
            ..SchemaOptions::default()
        };
        let encode = |schema: Json<'_>| {
            // The cleaned schema is smaller than its tokens (a string is 9 bytes of tokens plus its text, in
            // `text`); sized from them it is written without growing.
            let mut json = Vec::with_capacity(schema.token_len() + 64);
            clean_json(schema, &opts).map(|cleaned| {
                cleaned.write_json(&mut json);
                json
            })
        };
        let parameters = match (parameters, family) {
            (Some(schema), _) => Some(encode(schema)),
            (None, ModelFamily::Claude) => {
                Some(encode(JsonTokens::from_value(&serde_json::json!({"type": "object"})).view()))
            }
            (None, _) => None,
        }
        .transpose()
        .map_err(|source| TransformError::Schema { param: param(), source })?;
        Ok(FunctionDeclaration {
            name: names.register(client_name).to_owned(),
            description: description.filter(|d| !d.is_empty()),
            parameters,
        })
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ToolConfig {
    pub function_calling_config: FunctionCallingConfig,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FunctionCallingConfig {
    pub mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_function_names: Option<Vec<String>>,
}

impl ToolConfig {
    fn write(&self, out: &mut Vec<u8>) {
        write_small(out, self);
    }

    pub fn new(mode: &'static str, allowed_function_names: Option<Vec<String>>) -> Self {
        ToolConfig { function_calling_config: FunctionCallingConfig { mode, allowed_function_names } }
    }
}

/// The `auto` function-calling mode for a family: Claude always gets VALIDATED (§2).
pub(crate) fn auto_mode(family: ModelFamily) -> &'static str {
    if family == ModelFamily::Claude {
        "VALIDATED"
    } else {
        "AUTO"
    }
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GenerationConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stop_sequences: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_mime_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_schema: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_modalities: Option<&'static [&'static str]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking_config: Option<ThinkingConfig>,
}

impl GenerationConfig {
    fn write(&self, out: &mut Vec<u8>) {
        write_small(out, self);
    }

    pub fn is_empty(&self) -> bool {
        self.temperature.is_none()
            && self.top_p.is_none()
            && self.top_k.is_none()
            && self.max_output_tokens.is_none()
            && self.stop_sequences.is_empty()
            && self.seed.is_none()
            && self.response_mime_type.is_none()
            && self.response_modalities.is_none()
            && self.thinking_config.is_none()
    }

    /// Sets a thinking budget (`0` off, `-1` dynamic) and keeps `maxOutputTokens` above it.
    pub fn set_thinking_budget(&mut self, budget: i32, family: ModelFamily) {
        self.thinking_config = Some(ThinkingConfig {
            include_thoughts: budget != 0,
            thinking_budget: Some(budget),
            thinking_level: None,
        });
        if let Ok(budget) = u32::try_from(budget) {
            self.max_output_tokens = max_output_above_budget(self.max_output_tokens, budget, family);
        }
    }
}

/// The upstream rejects `maxOutputTokens <= thinkingBudget`. The client's limit was meant for the answer, so
/// the budget is added on top (within the family's output cap); Claude needs an explicit limit.
pub(crate) fn max_output_above_budget(max: Option<u32>, budget: u32, family: ModelFamily) -> Option<u32> {
    if budget == 0 {
        return max;
    }
    let cap = if family == ModelFamily::Claude { CLAUDE_MAX_OUTPUT } else { GEMINI_MAX_OUTPUT };
    match max {
        Some(max) if max <= budget => Some(budget.saturating_add(max).min(cap)),
        None if family == ModelFamily::Claude => Some(cap),
        other => other,
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ThinkingConfig {
    pub include_thoughts: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking_budget: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking_level: Option<&'static str>,
}

/// Appends a part to the last turn when it has the same role, else opens a new turn (consecutive same-role
/// turns are merged, as the upstream wants alternating roles).
pub(crate) fn push_part<'a>(contents: &mut Vec<Turn<'a>>, role: &'static str, part: Part<'a>) {
    match contents.last_mut() {
        Some(turn) if turn.role == role => turn.parts.push(part),
        _ => contents.push(Turn { role, parts: vec![part] }),
    }
}

/// Gemini needs the first turn to be the user's: a conversation that starts with the model gets a `"."`
/// user turn first (Claude rejects empty text).
pub(crate) fn ensure_user_first(contents: &mut Vec<Turn<'_>>) {
    if contents.first().is_some_and(|turn| turn.role != "user") {
        contents.insert(
            0,
            Turn {
                role: "user",
                parts: vec![Part::Text { text: Cow::Borrowed("."), thought: false, thought_signature: None }],
            },
        );
    }
}

/// A MIME type guessed from a URL's extension, for `fileData` (default `image/jpeg`).
pub(crate) fn guess_mime(url: &str) -> &'static str {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let ext = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        "mp3" => "audio/mp3",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        _ => "image/jpeg",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_budget_stays_above_the_thinking_budget() {
        let g = ModelFamily::Gemini;
        assert_eq!(max_output_above_budget(Some(1000), 8192, g), Some(9192));
        assert_eq!(max_output_above_budget(Some(60_000), 24_576, g), Some(60_000));
        assert_eq!(max_output_above_budget(Some(32_768), 32_768, g), Some(65_536));
        assert_eq!(max_output_above_budget(None, 1024, g), None);
        assert_eq!(max_output_above_budget(None, 1024, ModelFamily::Claude), Some(64_000));
        assert_eq!(max_output_above_budget(Some(10), 0, ModelFamily::Claude), Some(10));
    }
}
