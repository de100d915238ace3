//! The OpenAI `POST /v1/chat/completions` request as Levitate reads it (PROTOCOL.md §7).
//!
//! [`parse_chat_request`] deserializes the body with simd-json into typed structs. Unknown fields are
//! ignored (OpenAI adds fields often), fields the upstream cannot honour (`n > 1`, logprobs, audio output,
//! predictions, logit bias) are rejected with the parameter named, and a body of the wrong shape gets a 400
//! that names the field at fault (`messages[3].content`). The transform ([`super::transform`]) reads the
//! fields directly.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;

use crate::inner::body::{parse_body, StrOr};
use crate::inner::TransformError;
use crate::json_tokens::JsonTokens;
use crate::limits;

/// A parsed chat.completions request. Built by [`parse_chat_request`], which has already checked that
/// `model` and `messages` are present and that no unsupported parameter is set.
///
/// Its text (messages, tool calls, tool definitions) is borrowed from the body buffer it was parsed from,
/// not copied, and tool `parameters` are kept as tokens until a build needs them (see [`JsonTokens`]).
#[derive(Debug, Deserialize)]
pub struct ChatRequest<'a> {
    #[serde(default)]
    pub(super) model: &'a str,
    #[serde(borrow)]
    pub(super) messages: Option<Vec<Message<'a>>>,
    pub(super) stream: Option<bool>,
    pub(super) stream_options: Option<StreamOptions>,
    pub(super) max_tokens: Option<u32>,
    pub(super) max_completion_tokens: Option<u32>,
    pub(super) temperature: Option<f64>,
    pub(super) top_p: Option<f64>,
    pub(super) stop: Option<StrOr<Vec<String>>>,
    pub(super) seed: Option<i64>,
    #[serde(borrow)]
    pub(super) tools: Option<Vec<Tool<'a>>>,
    pub(super) tool_choice: Option<StrOr<ToolChoiceObject>>,
    pub(super) response_format: Option<ResponseFormat>,
    #[serde(borrow)]
    pub(super) reasoning_effort: Option<&'a str>,
    #[serde(borrow)]
    pub(super) prompt_cache_key: Option<&'a str>,
    #[serde(borrow)]
    pub(super) user: Option<&'a str>,
    /// Any `web_search_options` (its `search_context_size` and `user_location` Google has no knobs for).
    pub(super) web_search_options: Option<IgnoredAny>,
    // Parameters the upstream cannot honour; rejected by `reject_unsupported` when set.
    pub(super) n: Option<u32>,
    pub(super) logprobs: Option<bool>,
    pub(super) top_logprobs: Option<u32>,
    pub(super) modalities: Option<Vec<String>>,
    pub(super) audio: Option<IgnoredAny>,
    pub(super) prediction: Option<IgnoredAny>,
    pub(super) logit_bias: Option<HashMap<String, IgnoredAny>>,
    pub(super) functions: Option<IgnoredAny>,
    pub(super) function_call: Option<IgnoredAny>,
    /// The body's size, which the inner request's size follows closely: its buffer is allocated once.
    #[serde(skip)]
    pub(super) body_len: usize,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct StreamOptions {
    pub(super) include_usage: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
    Function,
}

#[derive(Debug, Deserialize)]
pub(super) struct Message<'a> {
    pub(super) role: Role,
    #[serde(borrow)]
    pub(super) content: Option<StrOr<Vec<ContentPart<'a>>, &'a str>>,
    #[serde(borrow)]
    pub(super) reasoning_content: Option<&'a str>,
    #[serde(borrow)]
    pub(super) tool_calls: Option<Vec<ToolCall<'a>>>,
    #[serde(borrow)]
    pub(super) tool_call_id: Option<&'a str>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ContentPart<'a> {
    #[serde(rename = "type")]
    pub(super) kind: &'a str,
    #[serde(borrow)]
    pub(super) text: Option<&'a str>,
    #[serde(borrow)]
    pub(super) refusal: Option<&'a str>,
    #[serde(borrow)]
    pub(super) image_url: Option<StrOr<ImageUrl<'a>, &'a str>>,
    #[serde(borrow)]
    pub(super) input_audio: Option<InputAudio<'a>>,
    #[serde(borrow)]
    pub(super) file: Option<FilePart<'a>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ImageUrl<'a> {
    pub(super) url: &'a str,
}

#[derive(Debug, Deserialize)]
pub(super) struct InputAudio<'a> {
    pub(super) data: &'a str,
    pub(super) format: &'a str,
}

#[derive(Debug, Deserialize)]
pub(super) struct FilePart<'a> {
    #[serde(borrow)]
    pub(super) file_data: Option<&'a str>,
    #[serde(borrow)]
    pub(super) file_id: Option<&'a str>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ToolCall<'a> {
    pub(super) id: &'a str,
    #[serde(borrow)]
    pub(super) function: FunctionCallIn<'a>,
}

#[derive(Debug, Deserialize)]
pub(super) struct FunctionCallIn<'a> {
    pub(super) name: &'a str,
    #[serde(default, borrow)]
    pub(super) arguments: Arguments<'a>,
}

/// A replayed call's `arguments`: a JSON-encoded string per the spec; some clients send the object itself.
/// Anything else is kept only to be rejected by name when the request is built.
#[derive(Debug, Default)]
pub(super) enum Arguments<'a> {
    Text(Cow<'a, str>),
    Object(Value),
    #[default]
    Null,
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for Arguments<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ArgumentsVisitor;
        impl<'de> serde::de::Visitor<'de> for ArgumentsVisitor {
            type Value = Arguments<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON-encoded string or an object")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Arguments::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Arguments::Text(Cow::Owned(v.to_owned())))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Arguments::Null)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Arguments::Null)
            }
            fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(self)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                Value::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Arguments::Object)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                IgnoredAny::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?;
                Ok(Arguments::Other)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Arguments::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Arguments::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Arguments::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Arguments::Other)
            }
        }
        deserializer.deserialize_any(ArgumentsVisitor)
    }
}

#[derive(Debug, PartialEq, Eq, Hash, Deserialize)]
pub(super) struct Tool<'a> {
    #[serde(rename = "type", default = "function_type")]
    pub(super) kind: &'a str,
    #[serde(borrow)]
    pub(super) function: Option<FunctionDef<'a>>,
}

fn function_type<'a>() -> &'a str {
    "function"
}

#[derive(Debug, PartialEq, Eq, Hash, Deserialize)]
pub(super) struct FunctionDef<'a> {
    pub(super) name: &'a str,
    #[serde(borrow)]
    pub(super) description: Option<&'a str>,
    /// Turned into a `serde_json::Value` only when the tools are built, not found in the [`ToolCache`](crate::inner::ToolCache).
    pub(super) parameters: Option<JsonTokens>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ToolChoiceObject {
    #[serde(rename = "type")]
    pub(super) kind: String,
    pub(super) function: Option<NamedFunction>,
    /// `allowed_tools` form: `{type:"allowed_tools", allowed_tools:{mode, tools:[{type, function:{name}}]}}`.
    pub(super) allowed_tools: Option<AllowedTools>,
}

#[derive(Debug, Deserialize)]
pub(super) struct NamedFunction {
    pub(super) name: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct AllowedTools {
    pub(super) mode: Option<String>,
    #[serde(default)]
    pub(super) tools: Vec<AllowedTool>,
}

#[derive(Debug, Deserialize)]
pub(super) struct AllowedTool {
    pub(super) function: NamedFunction,
}

#[derive(Debug, Deserialize)]
pub(super) struct ResponseFormat {
    #[serde(rename = "type")]
    pub(super) kind: String,
    pub(super) json_schema: Option<JsonSchemaFormat>,
}

#[derive(Debug, Deserialize)]
pub(super) struct JsonSchemaFormat {
    pub(super) schema: Option<Value>,
}

/// Parses a chat.completions body. The buffer is used as scratch space by simd-json and left modified; the
/// request borrows its text from it.
pub fn parse_chat_request(body: &mut [u8]) -> Result<ChatRequest<'_>, TransformError> {
    let body_len = body.len();
    let mut request: ChatRequest = parse_body(body, "a chat.completions request")?;
    request.validate()?;
    request.body_len = body_len;
    Ok(request)
}

impl<'a> ChatRequest<'a> {
    /// The client's model name (non-empty).
    pub fn model(&self) -> &str {
        self.model
    }

    pub fn stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// Whether a streaming client asked for the final usage chunk (`stream_options.include_usage`).
    pub fn include_usage(&self) -> bool {
        self.stream_options.as_ref().and_then(|o| o.include_usage).unwrap_or(false)
    }

    /// A client-chosen conversation key for affinity: `prompt_cache_key`, else `user`.
    pub fn session_hint(&self) -> Option<&str> {
        let non_empty = |s: &Option<&'a str>| s.filter(|s| !s.trim().is_empty());
        non_empty(&self.prompt_cache_key).or_else(|| non_empty(&self.user))
    }

    /// The first user message's text, for deriving a session key from the conversation's start.
    pub fn first_user_text(&self) -> Option<&str> {
        let first = self.messages.as_deref()?.iter().find(|m| m.role == Role::User)?;
        match first.content.as_ref()? {
            StrOr::Str(text) => Some(text),
            StrOr::Other(parts) => parts.iter().find(|p| p.kind == "text").and_then(|p| p.text),
        }
    }

    /// Whether the request goes upstream as a Google Search: `web_search_options`, or a `*-search-preview`
    /// model, without function tools ([`crate::grounding::sends_google_search`]).
    pub fn web_search(&self) -> bool {
        let wants = self.web_search_options.is_some() || self.model.contains("-search-preview");
        crate::grounding::sends_google_search(wants, self.tools.as_ref().is_some_and(|t| !t.is_empty()))
    }

    pub(super) fn messages(&self) -> &[Message<'_>] {
        self.messages.as_deref().unwrap_or_default()
    }

    fn validate(&self) -> Result<(), TransformError> {
        if self.model.trim().is_empty() {
            return Err(TransformError::invalid("model", "`model` is required."));
        }
        self.check_bounds()?;
        match &self.messages {
            None => return Err(TransformError::invalid("messages", "`messages` is required.")),
            Some(m) if m.is_empty() => {
                return Err(TransformError::invalid(
                    "messages",
                    "`messages` must contain at least one message.",
                ))
            }
            Some(_) => {}
        }
        self.reject_unsupported()
    }

    /// The counts a client controls stay within [`crate::limits`], so the transform's work is bounded.
    fn check_bounds(&self) -> Result<(), TransformError> {
        limits::check_model_name(self.model, "model")?;
        let messages = self.messages();
        limits::check_count(messages.len(), limits::MAX_MESSAGES, "messages", "messages")?;
        let tools = self.tools.as_deref().unwrap_or_default();
        limits::check_count(tools.len(), limits::MAX_TOOLS, "tools", "tools")?;
        if let Some(StrOr::Other(ToolChoiceObject { allowed_tools: Some(allowed), .. })) = &self.tool_choice {
            let (count, param) = (allowed.tools.len(), "tool_choice.allowed_tools.tools");
            limits::check_count(count, limits::MAX_TOOLS, param, "allowed tools")?;
        }
        let calls: usize = messages.iter().map(|m| m.tool_calls.as_ref().map_or(0, Vec::len)).sum();
        limits::check_count(calls, limits::MAX_TOOL_CALLS, "messages", "tool calls")
    }

    fn reject_unsupported(&self) -> Result<(), TransformError> {
        let unsupported = TransformError::unsupported;
        if self.n.is_some_and(|n| n > 1) {
            return Err(unsupported("n", "n > 1 is not supported by Levitate: send one request per choice."));
        }
        if self.logprobs == Some(true) {
            return Err(unsupported("logprobs", "logprobs are not supported by Levitate."));
        }
        if self.top_logprobs.is_some_and(|n| n > 0) {
            return Err(unsupported("top_logprobs", "top_logprobs is not supported by Levitate."));
        }
        if self.audio.is_some() || self.modalities.as_ref().is_some_and(|m| m.iter().any(|m| m == "audio")) {
            let param = if self.audio.is_some() { "audio" } else { "modalities" };
            return Err(unsupported(param, "Audio output is not supported by Levitate."));
        }
        if self.prediction.is_some() {
            return Err(unsupported("prediction", "Predicted outputs are not supported by Levitate."));
        }
        if self.logit_bias.as_ref().is_some_and(|b| !b.is_empty()) {
            return Err(unsupported("logit_bias", "logit_bias is not supported by Levitate."));
        }
        if self.functions.is_some() || self.function_call.is_some() {
            let param = if self.functions.is_some() { "functions" } else { "function_call" };
            return Err(unsupported(
                param,
                "The legacy `functions` API is not supported: use `tools` and `tool_choice`.",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inner::with_fields as with;
    use serde_json::json;

    /// The request borrows from its body, leaked so a test can keep it as long as it likes.
    fn parse(body: Value) -> Result<ChatRequest<'static>, TransformError> {
        parse_chat_request(serde_json::to_vec(&body).unwrap().leak())
    }

    fn chat(messages: Value) -> Value {
        json!({"model": "gpt-4o", "messages": messages})
    }

    #[test]
    fn unsupported_parameters_are_rejected_by_name() {
        let cases = [
            (json!({"n": 2}), "n", "n > 1 is not supported by Levitate"),
            (json!({"logprobs": true}), "logprobs", "logprobs"),
            (json!({"top_logprobs": 3}), "top_logprobs", "top_logprobs"),
            (json!({"modalities": ["text", "audio"]}), "modalities", "Audio output"),
            (json!({"audio": {"voice": "alloy", "format": "wav"}}), "audio", "Audio output"),
            (json!({"prediction": {"type": "content", "content": "x"}}), "prediction", "Predicted outputs"),
            (json!({"logit_bias": {"50256": -100}}), "logit_bias", "logit_bias"),
            (json!({"functions": [{"name": "f"}]}), "functions", "use `tools`"),
        ];
        for (extra, param, text) in cases {
            let e = parse(with(chat(json!([{"role": "user", "content": "x"}])), extra.clone())).unwrap_err();
            assert!(matches!(e, TransformError::Unsupported { .. }), "{extra}");
            assert_eq!(e.param(), Some(param), "{extra}");
            assert!(e.to_string().contains(text), "{e}");
        }
        let fine =
            json!({"n": 1, "logprobs": false, "logit_bias": {}, "audio": null, "future_field": {"x": [1]}});
        assert!(parse(with(chat(json!([{"role": "user", "content": "x"}])), fine)).is_ok());
    }

    #[test]
    fn malformed_bodies_get_json_errors() {
        let cases: [(&[u8], &str); 5] = [
            (b"", "empty"),
            (b"  \n", "empty"),
            (b"{\"model\":", "not valid JSON"),
            (b"[1,2]", "must be a JSON object"),
            (b"\"text\"", "must be a JSON object"),
        ];
        for (body, text) in cases {
            let e = parse_chat_request(&mut body.to_vec()).unwrap_err();
            assert!(matches!(e, TransformError::Json(_)) && e.to_string().contains(text), "{e}");
        }
        let mut deep =
            format!("{{\"model\":\"m\",\"x\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes();
        let e = parse_chat_request(&mut deep).unwrap_err();
        assert!(e.to_string().contains("deeper than"), "{e}");
    }

    #[test]
    fn accessors_expose_routing_facts() {
        let req = parse(with(
            chat(json!([{"role": "system", "content": "s"}, {"role": "user", "content": [{"type": "image_url", "image_url": "https://x/y.png"}, {"type": "text", "text": "first"}]}, {"role": "user", "content": "second"}])),
            json!({"stream": true, "stream_options": {"include_usage": true}, "user": "u-1"}),
        ))
        .unwrap();
        assert_eq!(req.model(), "gpt-4o");
        assert!(req.stream() && req.include_usage());
        assert_eq!(req.session_hint(), Some("u-1"));
        assert_eq!(req.first_user_text(), Some("first"));
        let req = parse(with(
            chat(json!([{"role": "user", "content": "hello"}])),
            json!({"prompt_cache_key": "conv-9", "user": "u"}),
        ))
        .unwrap();
        assert!(!req.stream() && !req.include_usage());
        assert_eq!(req.session_hint(), Some("conv-9"));
        assert_eq!(req.first_user_text(), Some("hello"));
    }
}
