//! The upstream inner `request` object (PROTOCOL.md §2), as the OpenAI and Anthropic transforms write it.
//!
//! Both protocols map onto the same turns, parts, tools and `generationConfig`, so the serializable shape
//! lives here once; its pieces borrow from the parsed client request, so serializing them is the only copy.
//! Helpers every protocol needs to follow the same upstream rules (merge same-role turns, user turn first,
//! the output budget above the thinking budget) live beside it.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::Value;

use super::{ToolNameMap, TransformError};
use crate::schema::{clean_schema, SchemaOptions};
use crate::signature::ModelFamily;

/// Largest output budget the upstream accepts, per family, when a thinking budget forces a bump.
pub(crate) const GEMINI_MAX_OUTPUT: u32 = 65_536;
pub(crate) const CLAUDE_MAX_OUTPUT: u32 = 64_000;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InnerJson<'a> {
    pub contents: Vec<Turn<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_instruction: Option<Turn<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolGroup<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_config: Option<ToolConfig>,
    #[serde(skip_serializing_if = "GenerationConfig::is_empty")]
    pub generation_config: GenerationConfig,
    pub session_id: &'a str,
}

impl InnerJson<'_> {
    /// The request's JSON bytes; `capacity` is a guess of their size, to allocate once.
    pub fn encode(&self, capacity: usize) -> Result<Vec<u8>, TransformError> {
        let mut json = Vec::with_capacity(capacity);
        serde_json::to_writer(&mut json, self)
            .map_err(|e| TransformError::Json(format!("The request could not be encoded: {e}")))?;
        Ok(json)
    }
}

#[derive(Serialize)]
pub(crate) struct Turn<'a> {
    pub role: &'static str,
    pub parts: Vec<Part<'a>>,
}

#[derive(Serialize)]
#[serde(untagged)]
pub(crate) enum Part<'a> {
    Text {
        text: Cow<'a, str>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        thought: bool,
        #[serde(rename = "thoughtSignature", skip_serializing_if = "Option::is_none")]
        thought_signature: Option<String>,
    },
    InlineData {
        #[serde(rename = "inlineData")]
        inline_data: MediaRef<'a>,
    },
    FileData {
        #[serde(rename = "fileData")]
        file_data: MediaRef<'a>,
    },
    FunctionCall {
        #[serde(rename = "functionCall")]
        function_call: FunctionCallOut<'a>,
        #[serde(rename = "thoughtSignature", skip_serializing_if = "Option::is_none")]
        thought_signature: Option<String>,
    },
    FunctionResponse {
        #[serde(rename = "functionResponse")]
        function_response: FunctionResponseOut<'a>,
    },
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

#[derive(Serialize)]
pub(crate) struct MediaRef<'a> {
    #[serde(rename = "mimeType")]
    pub mime_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<&'a str>,
    #[serde(rename = "fileUri", skip_serializing_if = "Option::is_none")]
    pub file_uri: Option<&'a str>,
}

#[derive(Serialize)]
pub(crate) struct FunctionCallOut<'a> {
    pub id: &'a str,
    pub name: String,
    pub args: Value,
}

#[derive(Serialize)]
pub(crate) struct FunctionResponseOut<'a> {
    pub id: &'a str,
    pub name: String,
    pub response: ToolResponse<'a>,
}

/// `response:{result}` for a tool's output, `response:{error}` for a failed call.
#[derive(Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ToolResponse<'a> {
    Result(ToolResultValue<'a>),
    Error(ToolResultValue<'a>),
}

#[derive(Serialize)]
#[serde(untagged)]
pub(crate) enum ToolResultValue<'a> {
    Json(Value),
    Text(Cow<'a, str>),
}

impl<'a> ToolResultValue<'a> {
    /// Parsed JSON when the text is a JSON object (the model reads structure better), otherwise the text.
    pub fn from_text(text: Cow<'a, str>) -> Self {
        if text.trim_start().starts_with('{') {
            if let Ok(value @ Value::Object(_)) = serde_json::from_str::<Value>(&text) {
                return ToolResultValue::Json(value);
            }
        }
        ToolResultValue::Text(text)
    }
}

/// One entry of `tools`: function declarations, or one of Google's own tools (never mixed, §2).
#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ToolGroup<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub function_declarations: Vec<FunctionDeclaration<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub google_search: Option<Value>,
}

#[derive(Serialize)]
pub(crate) struct FunctionDeclaration<'a> {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
}

impl<'a> FunctionDeclaration<'a> {
    /// A declaration for a client tool: its name registered in `names`, its schema cleaned (`param` names the
    /// schema's field in errors). Claude in VALIDATED mode needs a parameters object even for a tool without
    /// one.
    pub fn new(
        client_name: &str,
        description: Option<&'a str>,
        parameters: Option<&Value>,
        family: ModelFamily,
        names: &mut ToolNameMap,
        param: impl Fn() -> String,
    ) -> Result<Self, TransformError> {
        let opts = SchemaOptions {
            require_reason_for_empty_object: family == ModelFamily::Claude,
            ..SchemaOptions::default()
        };
        let parameters = match (parameters, family) {
            (Some(schema), _) => Some(clean_schema(schema, &opts)),
            (None, ModelFamily::Claude) => Some(clean_schema(&serde_json::json!({"type": "object"}), &opts)),
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
    pub thinking_config: Option<ThinkingConfig>,
}

impl GenerationConfig {
    pub fn is_empty(&self) -> bool {
        self.temperature.is_none()
            && self.top_p.is_none()
            && self.top_k.is_none()
            && self.max_output_tokens.is_none()
            && self.stop_sequences.is_empty()
            && self.seed.is_none()
            && self.response_mime_type.is_none()
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

    /// Sets a `thinkingLevel` (Gemini 3's alternative to a budget) with thoughts included.
    pub fn set_thinking_level(&mut self, level: &'static str) {
        self.thinking_config = Some(ThinkingConfig {
            include_thoughts: true,
            thinking_budget: None,
            thinking_level: Some(level),
        });
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
