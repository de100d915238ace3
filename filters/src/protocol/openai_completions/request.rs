//! The legacy OpenAI `POST /v1/completions` request as Levitate reads it.
//!
//! [`parse_completion_request`] deserializes the body into typed fields and checks it: a `prompt` that is a
//! string or a list of strings (token-id prompts are refused: the upstream has no OpenAI tokenizer), `n`
//! and the number of prompts bounded by [`MAX_CHOICES`], and the fields the upstream cannot honour (`suffix`,
//! `echo`, `logprobs`, `best_of > 1`, `logit_bias`) refused with the field named. Unknown fields are ignored,
//! as for chat.

use std::collections::HashMap;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;

use crate::inner::body::{parse_body, StrOr};
use crate::inner::TransformError;
use crate::limits;

/// Most choices one request may ask for (prompts × `n`): each is a separate upstream call on one account
/// lease after another, so the count bounds how long one request holds the pool.
pub const MAX_CHOICES: usize = 8;

/// A parsed completions request. Built by [`parse_completion_request`], which has already checked it.
#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    #[serde(default)]
    pub(super) model: String,
    prompt: Option<StrOr<Vec<Value>>>,
    pub(super) max_tokens: Option<u32>,
    pub(super) temperature: Option<f64>,
    pub(super) top_p: Option<f64>,
    pub(super) stop: Option<StrOr<Vec<String>>>,
    pub(super) seed: Option<i64>,
    n: Option<u32>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    user: Option<String>,
    // Parameters the upstream cannot honour; refused by `reject_unsupported` when set.
    suffix: Option<String>,
    echo: Option<bool>,
    logprobs: Option<IgnoredAny>,
    best_of: Option<u32>,
    logit_bias: Option<HashMap<String, IgnoredAny>>,
    /// The prompts, from `prompt` (a string is a list of one).
    #[serde(skip)]
    pub(super) prompts: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

/// Parses and checks a completions body. The buffer is scratch space for the parser afterwards.
pub fn parse_completion_request(body: &mut [u8]) -> Result<CompletionRequest, TransformError> {
    let mut request: CompletionRequest = parse_body(body, "a completions request")?;
    if request.model.trim().is_empty() {
        return Err(TransformError::invalid("model", "`model` is required."));
    }
    limits::check_model_name(&request.model, "model")?;
    request.reject_unsupported()?;
    request.prompts = prompts(request.prompt.take())?;
    let n = request.n.unwrap_or(1);
    if n == 0 {
        return Err(TransformError::invalid("n", "`n` must be at least 1."));
    }
    let choices = request.prompts.len().saturating_mul(n as usize);
    if choices > MAX_CHOICES {
        return Err(TransformError::invalid(
            if request.prompts.len() > 1 { "prompt" } else { "n" },
            format!(
                "The request asks for {choices} choices ({} prompts × n = {n}); Levitate answers at most \
                 {MAX_CHOICES} per request.",
                request.prompts.len()
            ),
        ));
    }
    if request.max_tokens == Some(0) {
        return Err(TransformError::invalid("max_tokens", "`max_tokens` must be at least 1."));
    }
    Ok(request)
}

/// The prompt texts: a string, or a non-empty list of strings. Token ids (a list of integers, or a list of
/// such lists) cannot be decoded without OpenAI's tokenizer. Empty text is refused: Claude rejects it.
fn prompts(prompt: Option<StrOr<Vec<Value>>>) -> Result<Vec<String>, TransformError> {
    let texts = match prompt {
        None => return Err(TransformError::invalid("prompt", "`prompt` is required.")),
        Some(StrOr::Str(text)) => vec![text],
        Some(StrOr::Other(items)) if items.is_empty() => {
            return Err(TransformError::invalid("prompt", "`prompt` must not be an empty list."))
        }
        Some(StrOr::Other(items)) => {
            let mut texts = Vec::with_capacity(items.len().min(MAX_CHOICES + 1));
            for item in items {
                match item {
                    Value::String(text) => texts.push(text),
                    Value::Number(_) | Value::Array(_) => {
                        return Err(TransformError::unsupported(
                            "prompt",
                            "Token-id prompts are not supported by Levitate: send the prompt as text.",
                        ))
                    }
                    _ => {
                        return Err(TransformError::invalid(
                            "prompt",
                            "`prompt` must be a string or a list of strings.",
                        ))
                    }
                }
            }
            texts
        }
    };
    if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
        let param = if texts.len() > 1 { format!("prompt[{i}]") } else { "prompt".into() };
        return Err(TransformError::invalid(param, "The prompt must not be empty."));
    }
    Ok(texts)
}

impl CompletionRequest {
    /// The client's model name (non-empty).
    pub fn model(&self) -> &str {
        &self.model
    }

    pub fn stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// Whether a streaming client asked for the final usage chunk (`stream_options.include_usage`).
    pub fn include_usage(&self) -> bool {
        self.stream_options.as_ref().and_then(|o| o.include_usage).unwrap_or(false)
    }

    /// The prompts, in order; each gets `n` choices.
    pub fn prompts(&self) -> &[String] {
        &self.prompts
    }

    /// Choices per prompt.
    pub fn n(&self) -> usize {
        self.n.unwrap_or(1) as usize
    }

    /// A client-chosen key for session affinity: `user`.
    pub fn session_hint(&self) -> Option<&str> {
        self.user.as_deref().filter(|u| !u.trim().is_empty())
    }

    fn reject_unsupported(&self) -> Result<(), TransformError> {
        let unsupported = TransformError::unsupported;
        if self.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
            return Err(unsupported("suffix", "`suffix` (fill-in-the-middle) is not supported by Levitate."));
        }
        if self.echo == Some(true) {
            return Err(unsupported("echo", "`echo` is not supported by Levitate."));
        }
        if self.logprobs.is_some() {
            return Err(unsupported("logprobs", "logprobs are not supported by Levitate."));
        }
        if self.best_of.is_some_and(|n| n > 1) {
            return Err(unsupported("best_of", "best_of > 1 is not supported by Levitate."));
        }
        if self.logit_bias.as_ref().is_some_and(|b| !b.is_empty()) {
            return Err(unsupported("logit_bias", "logit_bias is not supported by Levitate."));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inner::with_fields as with;
    use serde_json::json;

    fn parse(body: Value) -> Result<CompletionRequest, TransformError> {
        parse_completion_request(&mut serde_json::to_vec(&body).unwrap())
    }

    fn base() -> Value {
        json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Say this is a test"})
    }

    #[test]
    fn a_string_or_a_list_of_strings_is_a_prompt() {
        let one = parse(base()).unwrap();
        assert_eq!(one.prompts(), ["Say this is a test"]);
        assert_eq!((one.n(), one.stream(), one.include_usage()), (1, false, false));
        let many = parse(with(
            base(),
            json!({"prompt": ["a", "b"], "n": 2, "stream": true,
                                              "stream_options": {"include_usage": true}}),
        ))
        .unwrap();
        assert_eq!(many.prompts(), ["a", "b"]);
        assert_eq!((many.n(), many.stream(), many.include_usage()), (2, true, true));
    }

    #[test]
    fn unsupported_fields_are_refused_by_name() {
        let cases = [
            (json!({"suffix": "}"}), "suffix", "fill-in-the-middle"),
            (json!({"echo": true}), "echo", "echo"),
            (json!({"logprobs": 2}), "logprobs", "logprobs"),
            (json!({"logprobs": 0}), "logprobs", "logprobs"),
            (json!({"best_of": 3}), "best_of", "best_of"),
            (json!({"logit_bias": {"50256": -100}}), "logit_bias", "logit_bias"),
            (json!({"prompt": [1, 2, 3]}), "prompt", "Token-id prompts"),
            (json!({"prompt": [[1, 2], [3]]}), "prompt", "Token-id prompts"),
        ];
        for (extra, param, text) in cases {
            let e = parse(with(base(), extra.clone())).unwrap_err();
            assert!(matches!(e, TransformError::Unsupported { .. }), "{extra}: {e:?}");
            assert_eq!(e.param(), Some(param), "{extra}");
            assert!(e.to_string().contains(text), "{e}");
        }
        let fine = json!({"suffix": null, "echo": false, "logprobs": null, "best_of": 1, "logit_bias": {},
                          "presence_penalty": 0, "future_field": [1]});
        assert!(parse(with(base(), fine)).is_ok());
    }

    #[test]
    fn bad_prompts_counts_and_budgets_are_invalid() {
        let cases = [
            (json!({"prompt": null}), "prompt"),
            (json!({"prompt": []}), "prompt"),
            (json!({"prompt": ""}), "prompt"),
            (json!({"prompt": ["a", " "]}), "prompt[1]"),
            (json!({"prompt": [{"text": "a"}]}), "prompt"),
            (json!({"n": 0}), "n"),
            (json!({"n": 9}), "n"),
            (json!({"prompt": ["a", "b", "c"], "n": 3}), "prompt"),
            (json!({"max_tokens": 0}), "max_tokens"),
            (json!({"model": ""}), "model"),
        ];
        for (extra, param) in cases {
            let e = parse(with(base(), extra.clone())).unwrap_err();
            assert!(matches!(e, TransformError::Invalid { .. }), "{extra}: {e:?}");
            assert_eq!(e.param(), Some(param), "{extra}");
        }
        assert!(parse(with(base(), json!({"n": 8}))).is_ok());
        let e = parse(with(base(), json!({"max_tokens": "many"}))).unwrap_err();
        assert!(e.to_string().contains("max_tokens"), "{e}");
    }
}
