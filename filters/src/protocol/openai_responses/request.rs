//! The OpenAI `POST /v1/responses` request as Levitate reads it.
//!
//! [`parse_responses_request`] deserializes the body with simd-json into typed structs that borrow their
//! text from the body. Unknown fields are ignored (OpenAI adds fields often); fields that need state Levitate
//! does not keep (`previous_response_id`, `conversation`, `background`, stored prompts) or output the
//! upstream cannot give (logprobs) are refused by name; counts are bounded by [`crate::limits`]. Input items
//! are one flat struct keyed by `type`, like the chat request's content parts, so a bad item names its field
//! (`input[3].call_id`) and nothing is buffered twice.

use std::collections::HashMap;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;

use crate::inner::body::{parse_body, StrOr};
use crate::inner::TransformError;
use crate::json_tokens::JsonTokens;
use crate::limits;

/// A parsed Responses request. Built by [`parse_responses_request`], which has already checked `model` and
/// `input` and refused what Levitate cannot serve.
#[derive(Debug, Deserialize)]
pub struct ResponsesRequest<'a> {
    #[serde(default)]
    pub(super) model: &'a str,
    #[serde(borrow)]
    pub(super) instructions: Option<&'a str>,
    #[serde(borrow)]
    pub(super) input: Option<StrOr<Vec<InputItem<'a>>, &'a str>>,
    #[serde(borrow)]
    pub(super) tools: Option<Vec<Tool<'a>>>,
    #[serde(borrow)]
    pub(super) tool_choice: Option<StrOr<ToolChoiceObject<'a>, &'a str>>,
    /// Type-checked and accepted: the upstream has no switch for it (see `tools.rs`).
    #[allow(dead_code)]
    pub(super) parallel_tool_calls: Option<bool>,
    #[serde(borrow)]
    pub(super) reasoning: Option<Reasoning<'a>>,
    #[serde(borrow)]
    pub(super) text: Option<TextOptions<'a>>,
    pub(super) max_output_tokens: Option<u32>,
    pub(super) temperature: Option<f64>,
    pub(super) top_p: Option<f64>,
    pub(super) stream: Option<bool>,
    /// Type-checked and ignored: Levitate keeps no responses.
    #[allow(dead_code)]
    pub(super) store: Option<bool>,
    #[serde(borrow)]
    pub(super) include: Option<Vec<&'a str>>,
    #[serde(borrow)]
    pub(super) prompt_cache_key: Option<&'a str>,
    pub(super) metadata: Option<HashMap<String, Value>>,
    #[serde(borrow)]
    pub(super) user: Option<&'a str>,
    #[serde(borrow)]
    pub(super) safety_identifier: Option<&'a str>,
    #[serde(borrow)]
    pub(super) truncation: Option<&'a str>,
    // Refused when set: they need state or output Levitate does not have.
    #[serde(borrow)]
    pub(super) previous_response_id: Option<&'a str>,
    pub(super) conversation: Option<IgnoredAny>,
    pub(super) background: Option<bool>,
    pub(super) prompt: Option<IgnoredAny>,
    pub(super) top_logprobs: Option<u32>,
    /// The body's size, which the inner request's size follows closely.
    #[serde(skip)]
    pub(super) body_len: usize,
    /// Whether a `web_search` (or `web_search_preview`) tool is declared: Google Search grounding. Set by
    /// [`parse_responses_request`]; read through [`ResponsesRequest::web_search`].
    #[serde(skip)]
    pub(super) web_search: bool,
}

/// Roles of a `message` input item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Role {
    User,
    Assistant,
    System,
    Developer,
}

/// One `input` item. `type` decides which fields matter; a `message` may omit `type` (the easy-input form
/// `{role, content}`).
#[derive(Debug, Deserialize)]
pub(super) struct InputItem<'a> {
    #[serde(rename = "type", borrow)]
    pub(super) kind: Option<&'a str>,
    pub(super) role: Option<Role>,
    #[serde(borrow)]
    pub(super) content: Option<StrOr<Vec<ContentPart<'a>>, &'a str>>,
    #[serde(borrow)]
    pub(super) call_id: Option<&'a str>,
    #[serde(borrow)]
    pub(super) name: Option<&'a str>,
    /// A call of a tool declared inside a `namespace` tool.
    #[serde(borrow)]
    pub(super) namespace: Option<&'a str>,
    /// `function_call`: JSON-encoded arguments.
    #[serde(borrow)]
    pub(super) arguments: Option<&'a str>,
    /// `custom_tool_call`: the freeform input.
    #[serde(borrow)]
    pub(super) input: Option<&'a str>,
    /// `function_call_output` / `custom_tool_call_output`: text, or content parts.
    #[serde(borrow)]
    pub(super) output: Option<StrOr<Vec<ContentPart<'a>>, &'a str>>,
    /// `reasoning`: the summary parts shown to the user.
    #[serde(borrow)]
    pub(super) summary: Option<Vec<ContentPart<'a>>>,
    /// `reasoning`: Levitate's sealed state ([`super::seal`]).
    #[serde(borrow)]
    pub(super) encrypted_content: Option<&'a str>,
}

/// A content part of a message, a tool output or a reasoning summary.
#[derive(Debug, Deserialize)]
pub(super) struct ContentPart<'a> {
    #[serde(rename = "type", borrow)]
    pub(super) kind: &'a str,
    #[serde(borrow)]
    pub(super) text: Option<&'a str>,
    #[serde(borrow)]
    pub(super) image_url: Option<&'a str>,
    #[serde(borrow)]
    pub(super) file_id: Option<&'a str>,
    #[serde(borrow)]
    pub(super) file_data: Option<&'a str>,
    #[serde(borrow)]
    pub(super) filename: Option<&'a str>,
    #[serde(borrow)]
    pub(super) refusal: Option<&'a str>,
}

/// A declared tool: `function`, `custom` (freeform input), or `web_search` (Google Search grounding).
#[derive(Debug, PartialEq, Eq, Hash, Deserialize)]
pub(super) struct Tool<'a> {
    #[serde(rename = "type", borrow)]
    pub(super) kind: &'a str,
    #[serde(borrow)]
    pub(super) name: Option<&'a str>,
    #[serde(borrow)]
    pub(super) description: Option<&'a str>,
    pub(super) parameters: Option<JsonTokens>,
    pub(super) strict: Option<bool>,
    /// A `namespace` tool's function and custom tools, called with `namespace` set on the call.
    #[serde(borrow)]
    pub(super) tools: Option<Vec<Tool<'a>>>,
    /// `web_search`: the sites its sources must come from (`filters.allowed_domains`).
    #[serde(borrow)]
    pub(super) filters: Option<SearchFilters<'a>>,
    /// `web_search`: `low`, `medium` or `high`. Checked and accepted; Google's search has no such knob.
    #[serde(borrow)]
    pub(super) search_context_size: Option<&'a str>,
    /// `web_search`: an approximate location. Checked to be an object and accepted; Google's search takes
    /// no location.
    pub(super) user_location: Option<JsonTokens>,
}

/// A `web_search` tool's `filters`.
#[derive(Debug, PartialEq, Eq, Hash, Deserialize)]
pub(super) struct SearchFilters<'a> {
    #[serde(borrow)]
    pub(super) allowed_domains: Option<Vec<&'a str>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ToolChoiceObject<'a> {
    #[serde(rename = "type", borrow)]
    pub(super) kind: &'a str,
    #[serde(borrow)]
    pub(super) name: Option<&'a str>,
    #[serde(borrow)]
    pub(super) mode: Option<&'a str>,
    #[serde(default, borrow)]
    pub(super) tools: Vec<NamedTool<'a>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct NamedTool<'a> {
    #[serde(rename = "type", borrow)]
    pub(super) kind: Option<&'a str>,
    #[serde(borrow)]
    pub(super) name: Option<&'a str>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct Reasoning<'a> {
    #[serde(borrow)]
    pub(super) effort: Option<&'a str>,
    #[serde(borrow)]
    pub(super) summary: Option<&'a str>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct TextOptions<'a> {
    #[serde(borrow)]
    pub(super) format: Option<TextFormat<'a>>,
    #[serde(borrow)]
    pub(super) verbosity: Option<&'a str>,
}

#[derive(Debug, Deserialize)]
pub(super) struct TextFormat<'a> {
    #[serde(rename = "type", borrow)]
    pub(super) kind: &'a str,
    pub(super) schema: Option<Value>,
}

/// Tool types served; anything else is refused by name.
pub(super) const TOOL_TYPES: &str = "\"function\", \"custom\", \"namespace\" and \"web_search\"";

/// Parses a Responses body. The buffer is scratch for simd-json afterwards; the request borrows from it.
pub fn parse_responses_request(body: &mut [u8]) -> Result<ResponsesRequest<'_>, TransformError> {
    let body_len = body.len();
    let mut request: ResponsesRequest = parse_body(body, "a Responses API request")?;
    request.validate()?;
    request.body_len = body_len;
    request.web_search = request.tools.as_deref().unwrap_or_default().iter().any(|t| is_web_search(t.kind));
    Ok(request)
}

impl<'a> ResponsesRequest<'a> {
    /// The client's model name (non-empty).
    pub fn model(&self) -> &str {
        self.model
    }

    pub fn stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// Whether the request goes upstream as a Google Search: a `web_search` (or `web_search_preview`) tool
    /// and no function, custom or namespace tool beside it ([`crate::grounding::sends_google_search`]: Codex
    /// always offers web search beside its own tools, and its tools win).
    pub fn web_search(&self) -> bool {
        let tools = self.tools.as_deref().unwrap_or_default();
        crate::grounding::sends_google_search(self.web_search, tools.iter().any(|t| !is_web_search(t.kind)))
    }

    /// The web search tools' `filters.allowed_domains`, applied to the sources Google returns.
    pub fn search_domains(&self) -> crate::grounding::DomainFilter {
        let mut filter = crate::grounding::DomainFilter::default();
        let tools = self.tools.iter().flatten().filter(|t| is_web_search(t.kind));
        for filters in tools.filter_map(|t| t.filters.as_ref()) {
            filter.allowed.extend(filters.allowed_domains.iter().flatten().map(|d| d.to_string()));
        }
        filter
    }

    /// Whether `include` asks for `web_search_call.action.sources` (the pages each search found).
    pub fn includes_search_sources(&self) -> bool {
        self.include.as_deref().unwrap_or_default().contains(&"web_search_call.action.sources")
    }

    /// A client-chosen conversation key for affinity: `prompt_cache_key`, else a session-like `metadata`
    /// value, else `safety_identifier` / `user`.
    pub fn session_hint(&self) -> Option<&str> {
        let non_empty = |s: Option<&'a str>| s.filter(|s| !s.trim().is_empty());
        let from_metadata = || {
            let metadata = self.metadata.as_ref()?;
            ["session_id", "conversation_id", "user_id"]
                .iter()
                .find_map(|k| metadata.get(*k).and_then(Value::as_str).filter(|s| !s.trim().is_empty()))
        };
        non_empty(self.prompt_cache_key)
            .or_else(from_metadata)
            .or_else(|| non_empty(self.safety_identifier))
            .or_else(|| non_empty(self.user))
    }

    /// The first user message's text, for deriving a session key from the conversation's start.
    pub fn first_user_text(&self) -> Option<&str> {
        match self.input.as_ref()? {
            StrOr::Str(text) => Some(text),
            StrOr::Other(items) => {
                let first = items.iter().find(|i| i.role == Some(Role::User))?;
                match first.content.as_ref()? {
                    StrOr::Str(text) => Some(text),
                    StrOr::Other(parts) => parts.iter().find_map(|p| p.text),
                }
            }
        }
    }

    /// Whether the client asked for `reasoning.encrypted_content` in `include`.
    pub fn includes_encrypted_reasoning(&self) -> bool {
        self.include.as_deref().unwrap_or_default().contains(&"reasoning.encrypted_content")
    }

    /// Whether thought summaries should be shown: `reasoning.summary` other than `none`, or unset.
    pub fn wants_summary(&self) -> bool {
        self.reasoning.as_ref().and_then(|r| r.summary).is_none_or(|s| s != "none")
    }

    /// An estimate of the input tokens (for `POST /v1/responses/input_tokens`), with the same per-text rule
    /// as Anthropic's count_tokens: instructions, every text in `input`, and the tool definitions.
    pub fn estimate_tokens(&self) -> u64 {
        use crate::protocol::anthropic::text_tokens;
        const PER_ITEM: u64 = 3;
        const PER_TOOL: u64 = 10;
        let mut total = self.instructions.map_or(0, text_tokens);
        if let Some(StrOr::Str(text)) = &self.input {
            total += PER_ITEM + text_tokens(text);
        }
        let parts_tokens =
            |parts: &[ContentPart]| -> u64 { parts.iter().filter_map(|p| p.text).map(text_tokens).sum() };
        for item in self.items() {
            total += PER_ITEM;
            for text in [item.arguments, item.input, item.name].into_iter().flatten() {
                total += text_tokens(text);
            }
            for content in [&item.content, &item.output].into_iter().flatten() {
                total += match content {
                    StrOr::Str(text) => text_tokens(text),
                    StrOr::Other(parts) => parts_tokens(parts),
                };
            }
            total += parts_tokens(item.summary.as_deref().unwrap_or_default());
        }
        for tool in self.tools.as_deref().unwrap_or_default() {
            total += PER_TOOL + tool.name.map_or(0, text_tokens) + tool.description.map_or(0, text_tokens);
            total += tool.parameters.as_ref().map_or(0, |p| p.view().token_len() as u64 / 4);
        }
        total
    }

    pub(super) fn items(&self) -> &[InputItem<'a>] {
        match &self.input {
            Some(StrOr::Other(items)) => items,
            _ => &[],
        }
    }

    fn validate(&self) -> Result<(), TransformError> {
        if self.model.trim().is_empty() {
            return Err(TransformError::invalid("model", "`model` is required."));
        }
        limits::check_model_name(self.model, "model")?;
        if let Some(id) = self.previous_response_id {
            return Err(TransformError::unsupported(
                "previous_response_id",
                format!(
                    "`previous_response_id` ({id:?}) cannot be served: Levitate does not keep responses \
                     (`store` is ignored). Send the whole conversation in `input`, replaying the `reasoning` \
                     items with their `encrypted_content`."
                ),
            ));
        }
        let refuse = |param: &str, message: &str| Err(TransformError::unsupported(param, message));
        if self.conversation.is_some() {
            return refuse("conversation", "Conversations are not supported: Levitate keeps no state; send the whole conversation in `input`.");
        }
        if self.background == Some(true) {
            return refuse("background", "Background responses are not supported by Levitate.");
        }
        if self.prompt.is_some() {
            return refuse(
                "prompt",
                "Stored prompt templates are not supported by Levitate: send `instructions`.",
            );
        }
        if self.top_logprobs.is_some_and(|n| n > 0) {
            return refuse("top_logprobs", "top_logprobs is not supported by Levitate.");
        }
        match &self.input {
            None => return Err(TransformError::invalid("input", "`input` is required.")),
            Some(StrOr::Other(items)) => {
                limits::check_count(items.len(), limits::MAX_MESSAGES, "input", "input items")?;
                let calls = items
                    .iter()
                    .filter(|i| matches!(i.kind, Some("function_call" | "custom_tool_call")))
                    .count();
                limits::check_count(calls, limits::MAX_TOOL_CALLS, "input", "tool calls")?;
            }
            Some(StrOr::Str(_)) => {}
        }
        if let Some(truncation) = self.truncation.filter(|t| !matches!(*t, "auto" | "disabled")) {
            return Err(TransformError::invalid(
                "truncation",
                format!("Unknown truncation {truncation:?}; expected \"auto\" or \"disabled\"."),
            ));
        }
        // Accepted without an upstream equivalent: the model's length follows the prompt.
        if let Some(verbosity) = self.text.as_ref().and_then(|t| t.verbosity) {
            if !matches!(verbosity, "low" | "medium" | "high") {
                return Err(TransformError::invalid(
                    "text.verbosity",
                    format!("Unknown text.verbosity {verbosity:?}; expected low, medium or high."),
                ));
            }
        }
        let tools = self.tools.as_deref().unwrap_or_default();
        limits::check_count(tools.len(), limits::MAX_TOOLS, "tools", "tools")?;
        if let Some(StrOr::Other(choice)) = &self.tool_choice {
            limits::check_count(choice.tools.len(), limits::MAX_TOOLS, "tool_choice.tools", "allowed tools")?;
        }
        let mut count = 0;
        for (i, tool) in tools.iter().enumerate() {
            count += 1;
            if tool.kind == "namespace" {
                for (j, inner) in tool.tools.as_deref().unwrap_or_default().iter().enumerate() {
                    count += 1;
                    if !matches!(inner.kind, "function" | "custom") {
                        return Err(TransformError::unsupported(
                            format!("tools[{i}].tools[{j}].type"),
                            format!("A namespace holds function and custom tools, not {:?}.", inner.kind),
                        ));
                    }
                }
            } else if is_web_search(tool.kind) {
                check_web_search(tool, i)?;
            } else if !matches!(tool.kind, "function" | "custom") {
                return Err(TransformError::unsupported(
                    format!("tools[{i}].type"),
                    format!("Tools of type {:?} are not supported; only {TOOL_TYPES} tools are.", tool.kind),
                ));
            }
        }
        limits::check_count(count, limits::MAX_TOOLS, "tools", "tools")
    }
}

/// A `web_search` tool's options: known values, bounded lists. None of them reaches Google (it has no
/// switches for them); the allowed domains filter its sources afterwards.
fn check_web_search(tool: &Tool, i: usize) -> Result<(), TransformError> {
    if let Some(size) = tool.search_context_size.filter(|s| !matches!(*s, "low" | "medium" | "high")) {
        return Err(TransformError::invalid(
            format!("tools[{i}].search_context_size"),
            format!("Unknown search_context_size {size:?}; expected low, medium or high."),
        ));
    }
    if tool.user_location.as_ref().is_some_and(|l| !l.is_object()) {
        return Err(TransformError::invalid(
            format!("tools[{i}].user_location"),
            "`user_location` must be an object.",
        ));
    }
    let domains = tool.filters.as_ref().and_then(|f| f.allowed_domains.as_deref()).unwrap_or_default();
    let param = format!("tools[{i}].filters.allowed_domains");
    limits::check_count(domains.len(), limits::MAX_TOOLS, &param, "allowed domains")
}

pub(super) fn is_web_search(kind: &str) -> bool {
    matches!(
        kind,
        "web_search" | "web_search_preview" | "web_search_2025_08_26" | "web_search_preview_2025_03_11"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(body: Value) -> Result<ResponsesRequest<'static>, TransformError> {
        parse_responses_request(serde_json::to_vec(&body).unwrap().leak())
    }

    #[test]
    fn stateful_and_unservable_fields_are_refused_by_name() {
        let cases = [
            (json!({"previous_response_id": "resp_1"}), "previous_response_id", "does not keep responses"),
            (json!({"conversation": "conv_1"}), "conversation", "keeps no state"),
            (json!({"background": true}), "background", "Background"),
            (json!({"prompt": {"id": "pmpt_1"}}), "prompt", "Stored prompt"),
            (json!({"top_logprobs": 2}), "top_logprobs", "top_logprobs"),
            (
                json!({"tools": [{"type": "file_search"}]}),
                "tools[0].type",
                "\"file_search\" are not supported",
            ),
            (json!({"tools": [{"type": "computer_use_preview"}]}), "tools[0].type", "computer_use_preview"),
        ];
        for (extra, param, text) in cases {
            let mut body = json!({"model": "gpt-5", "input": "hi"});
            body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            let e = parse(body).unwrap_err();
            assert_eq!(e.param(), Some(param), "{e}");
            assert!(e.to_string().contains(text), "{e}");
        }
        assert_eq!(parse(json!({"input": "x"})).unwrap_err().param(), Some("model"));
        assert_eq!(parse(json!({"model": "m"})).unwrap_err().param(), Some("input"));
    }

    #[test]
    fn web_search_tools_are_accepted_and_flagged_for_grounding() {
        for kind in ["web_search", "web_search_preview"] {
            let req = parse(json!({"model": "m", "input": "x", "tools": [{"type": kind}]})).unwrap();
            assert!(req.web_search(), "{kind}");
        }
        let req =
            parse(json!({"model": "m", "input": "x", "tools": [{"type": "function", "name": "f"}]})).unwrap();
        assert!(!req.web_search());
    }

    #[test]
    fn accessors_expose_routing_facts() {
        let req = parse(json!({"model": "gpt-5", "stream": true, "input": [
            {"type": "message", "role": "developer", "content": "rules"},
            {"role": "user", "content": [{"type": "input_text", "text": "first"}]}],
            "include": ["reasoning.encrypted_content"], "metadata": {"session_id": "s-1"},
            "reasoning": {"effort": "high", "summary": "none"}}))
        .unwrap();
        assert!(req.stream() && req.includes_encrypted_reasoning() && !req.wants_summary());
        assert_eq!(req.first_user_text(), Some("first"));
        assert_eq!(req.session_hint(), Some("s-1"));
        let req = parse(json!({"model": "m", "input": "hello", "prompt_cache_key": "conv-9", "user": "u"}))
            .unwrap();
        assert_eq!((req.first_user_text(), req.session_hint()), (Some("hello"), Some("conv-9")));
        assert!(!req.stream() && req.wants_summary());
    }
}
