//! The Anthropic `POST /v1/messages` (and `/v1/messages/count_tokens`) request as Levitate reads it
//! (PROTOCOL.md §8).
//!
//! [`parse_messages_request`] deserializes the body into typed structs: unknown fields such as
//! `context_management` and every `cache_control` are ignored, and a field of the wrong type gets a 400
//! naming it. The transform ([`super::transform`]) and the token count ([`super::count_tokens`]) read the
//! fields directly.

use serde::Deserialize;
use serde_json::Value;

use crate::inner::body::{parse_body, StrOr};
use crate::inner::TransformError;
use crate::limits;

/// A parsed Messages API request. Built by [`parse_messages_request`], which has already checked that
/// `model`, `max_tokens` and a non-empty `messages` are present.
#[derive(Debug, Default, Deserialize)]
pub struct MessagesRequest {
    #[serde(default)]
    pub(crate) model: String,
    pub(crate) messages: Option<Vec<Message>>,
    pub(crate) system: Option<StrOr<Vec<SystemBlock>>>,
    pub(super) max_tokens: Option<u32>,
    pub(super) stream: Option<bool>,
    pub(super) temperature: Option<f64>,
    pub(super) top_p: Option<f64>,
    pub(super) top_k: Option<u32>,
    pub(super) stop_sequences: Option<Vec<String>>,
    pub(super) thinking: Option<Thinking>,
    pub(crate) tools: Option<Vec<Tool>>,
    pub(super) tool_choice: Option<ToolChoice>,
    pub(super) metadata: Option<Metadata>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Role {
    User,
    Assistant,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Message {
    pub(crate) role: Role,
    pub(crate) content: StrOr<Vec<Block>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SystemBlock {
    #[serde(default)]
    pub(crate) text: String,
}

/// One content block. `cache_control`, `citations` and other annotations are ignored.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Block {
    Text {
        text: String,
    },
    Image {
        source: Source,
    },
    Document {
        source: Source,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    ToolResult {
        tool_use_id: String,
        content: Option<StrOr<Vec<Block>>>,
        #[serde(default)]
        is_error: bool,
    },
    Thinking {
        thinking: String,
        #[serde(default)]
        signature: String,
    },
    RedactedThinking {
        #[serde(default)]
        data: String,
    },
    /// Server-tool blocks and block types newer than this gateway: dropped from history.
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Source {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(super) media_type: Option<String>,
    pub(crate) data: Option<String>,
    pub(super) url: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Thinking {
    #[serde(rename = "type")]
    pub(super) kind: String,
    pub(super) budget_tokens: Option<u32>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Tool {
    #[serde(rename = "type")]
    pub(super) kind: Option<String>,
    #[serde(default)]
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    pub(crate) input_schema: Option<Value>,
    /// The web search tool's site lists (Claude Code fills them from its WebSearch tool's input).
    pub(super) allowed_domains: Option<Vec<String>>,
    pub(super) blocked_domains: Option<Vec<String>>,
}

impl Tool {
    /// A client-defined tool (no type, or `custom`), as opposed to an Anthropic server tool.
    pub(super) fn is_custom(&self) -> bool {
        matches!(self.kind.as_deref(), None | Some("custom"))
    }

    /// Anthropic's web search server tool (`web_search_20250305`, …), which becomes `googleSearch`.
    pub(super) fn is_web_search(&self) -> bool {
        !self.is_custom() && self.kind.as_deref().is_some_and(|k| k.starts_with("web_search_"))
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct ToolChoice {
    #[serde(rename = "type")]
    pub(super) kind: String,
    pub(super) name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Metadata {
    pub(super) user_id: Option<String>,
}

/// Parses a Messages API body. The buffer is used as scratch space by simd-json and left modified.
pub fn parse_messages_request(body: &mut [u8]) -> Result<MessagesRequest, TransformError> {
    let request: MessagesRequest = parse_body(body, "a Messages API request")?;
    request.validate()?;
    if request.max_tokens.is_none() {
        return Err(TransformError::invalid("max_tokens", "max_tokens: Field required"));
    }
    Ok(request)
}

/// Parses `POST /v1/messages/count_tokens`: a Messages request without `max_tokens`.
pub fn parse_count_tokens_request(body: &mut [u8]) -> Result<MessagesRequest, TransformError> {
    let request: MessagesRequest = parse_body(body, "a count_tokens request")?;
    request.validate()?;
    Ok(request)
}

impl MessagesRequest {
    /// The client's model name (non-empty).
    pub fn model(&self) -> &str {
        &self.model
    }

    pub fn stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// `metadata.user_id`, Claude Code's per-user key, for session affinity.
    pub fn session_hint(&self) -> Option<&str> {
        self.metadata.as_ref()?.user_id.as_deref().filter(|s| !s.trim().is_empty())
    }

    /// The first user message's first text, for deriving a session key from the conversation's start.
    /// Claude Code prefixes turns with `<system-reminder>` blocks, which are skipped (§11).
    pub fn first_user_text(&self) -> Option<&str> {
        let first = self.messages().iter().find(|m| m.role == Role::User)?;
        match &first.content {
            StrOr::Str(text) => Some(text),
            StrOr::Other(blocks) => blocks.iter().find_map(|b| match b {
                Block::Text { text } if !text.trim_start().starts_with("<system-reminder>") => {
                    Some(text.as_str())
                }
                _ => None,
            }),
        }
    }

    /// Whether the client asked for thinking (`enabled` or `adaptive`).
    pub fn thinking_enabled(&self) -> bool {
        self.thinking.as_ref().is_some_and(|t| matches!(t.kind.as_str(), "enabled" | "adaptive"))
    }

    /// Whether the request goes upstream as a Google Search: it declares the web search server tool and no
    /// custom tool ([`crate::grounding::sends_google_search`]).
    pub fn web_search(&self) -> bool {
        let tools = self.tools.as_deref().unwrap_or_default();
        crate::grounding::sends_google_search(
            tools.iter().any(Tool::is_web_search),
            tools.iter().any(Tool::is_custom),
        )
    }

    /// The web search tool's `allowed_domains` and `blocked_domains`, applied to the sources Google returns.
    pub fn search_domains(&self) -> crate::grounding::DomainFilter {
        let mut filter = crate::grounding::DomainFilter::default();
        for tool in self.tools.iter().flatten().filter(|t| t.is_web_search()) {
            filter.allowed.extend(tool.allowed_domains.iter().flatten().cloned());
            filter.blocked.extend(tool.blocked_domains.iter().flatten().cloned());
        }
        filter
    }

    /// `max_tokens` (always present after [`parse_messages_request`]).
    pub fn max_tokens(&self) -> u32 {
        self.max_tokens.unwrap_or_default()
    }

    pub(crate) fn messages(&self) -> &[Message] {
        self.messages.as_deref().unwrap_or_default()
    }

    /// The counts a client controls stay within [`crate::limits`], so the transform's work is bounded.
    fn check_bounds(&self) -> Result<(), TransformError> {
        limits::check_model_name(&self.model, "model")?;
        let messages = self.messages();
        limits::check_count(messages.len(), limits::MAX_MESSAGES, "messages", "messages")?;
        let tools = self.tools.as_deref().unwrap_or_default();
        limits::check_count(tools.len(), limits::MAX_TOOLS, "tools", "tools")?;
        let calls: usize = messages
            .iter()
            .map(|m| match &m.content {
                StrOr::Other(blocks) => blocks.iter().filter(|b| matches!(b, Block::ToolUse { .. })).count(),
                StrOr::Str(_) => 0,
            })
            .sum();
        limits::check_count(calls, limits::MAX_TOOL_CALLS, "messages", "tool_use blocks")
    }

    fn validate(&self) -> Result<(), TransformError> {
        if self.model.trim().is_empty() {
            return Err(TransformError::invalid("model", "model: Field required"));
        }
        self.check_bounds()?;
        match &self.messages {
            None => Err(TransformError::invalid("messages", "messages: Field required")),
            Some(m) if m.is_empty() => {
                Err(TransformError::invalid("messages", "messages: at least one message is required"))
            }
            Some(_) => Ok(()),
        }
    }
}
