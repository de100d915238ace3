//! Request classification: which API a request calls, and so which protocol its answers and errors speak.
//!
//! Routing happens before authentication (a 401 must already be in the client's own shape), and it looks
//! only at the method, the path and which header carries the key: the body is not read yet. Over h2 the URI
//! carries scheme and host, so only the path is used.

use crate::auth::KeyStyle;
use crate::Protocol;

/// One client-facing API operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation {
    /// `POST /v1/chat/completions`
    ChatCompletions,
    /// `POST /v1/responses` (OpenAI Responses API; Codex CLI).
    Responses,
    /// `POST /v1/responses/input_tokens`: a local estimate, like Anthropic's count_tokens.
    ResponsesInputTokens,
    /// `POST /v1/responses/compact` and other `/v1/responses/...` paths Levitate does not serve (they need
    /// stored responses); answered with a clear OpenAI error.
    ResponsesUnsupported,
    /// `POST /v1/completions` (legacy OpenAI completions)
    Completions,
    /// `GET /v1/models` (OpenAI list of upstream models and aliases).
    ListModels,
    /// `GET /v1/models/{model}` in the OpenAI shape.
    GetModel { model: String },
    /// `POST /v1/messages`
    Messages,
    /// `POST /v1/messages/count_tokens`
    CountTokensAnthropic,
    /// `POST /v1beta/models/{model}:generateContent` (and `:streamGenerateContent`).
    GenerateContent { model: String, stream: bool },
    /// `POST /v1beta/models/{model}:countTokens`
    CountTokensGemini { model: String },
    /// `GET /v1beta/models`
    ListModelsGemini,
    /// `GET /v1beta/models/{model}`
    GetModelGemini { model: String },
    /// `POST /v1/images/generations` (OpenAI Images, JSON body).
    ImagesGenerations,
    /// `POST /v1/images/edits` (OpenAI Images, multipart form).
    ImagesEdits,
    /// `GET /health`: liveness for load balancers, no key needed.
    Health,
    /// Anything else; answered 404 in the guessed protocol.
    Unknown,
}

/// The result of classifying a request line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub operation: Operation,
    pub protocol: Protocol,
}

impl Route {
    /// Whether the operation needs a client API key.
    pub fn requires_key(&self) -> bool {
        !matches!(self.operation, Operation::Health)
    }
}

/// Classifies a request by method and path (query string already removed) and the style of key it carries.
///
/// google-genai calls `/v1/models/{m}:generateContent` (v1, not v1beta) by default, while the OpenAI SDK
/// calls `GET /v1/models` with a Bearer key: the `:method` suffix and the key style tell them apart.
pub fn classify(method: &str, path: &str, key_style: Option<KeyStyle>) -> Route {
    let path = path.trim_end_matches('/');
    let gemini_key = key_style.is_some_and(KeyStyle::is_google);
    let route = |operation, protocol| Route { operation, protocol };

    if path == "/health" || path == "/healthz" {
        return route(Operation::Health, Protocol::OpenAi);
    }
    if path == "/v1/chat/completions" || path == "/chat/completions" {
        return route(Operation::ChatCompletions, Protocol::OpenAi);
    }
    if path == "/v1/images/generations" || path == "/images/generations" {
        return route(Operation::ImagesGenerations, Protocol::OpenAi);
    }
    if path == "/v1/images/edits" || path == "/images/edits" {
        return route(Operation::ImagesEdits, Protocol::OpenAi);
    }
    if path == "/v1/responses" || path == "/responses" {
        return route(Operation::Responses, Protocol::OpenAi);
    }
    if let Some(rest) = path.strip_prefix("/v1/responses/").or_else(|| path.strip_prefix("/responses/")) {
        let operation = if rest == "input_tokens" {
            Operation::ResponsesInputTokens
        } else {
            Operation::ResponsesUnsupported
        };
        return route(operation, Protocol::OpenAi);
    }
    if path == "/v1/completions" || path == "/completions" {
        return route(Operation::Completions, Protocol::OpenAi);
    }
    if path == "/v1/messages" {
        return route(Operation::Messages, Protocol::Anthropic);
    }
    if path == "/v1/messages/count_tokens" {
        return route(Operation::CountTokensAnthropic, Protocol::Anthropic);
    }
    for prefix in ["/v1beta/models", "/v1/models", "/v1alpha/models"] {
        let Some(rest) = path.strip_prefix(prefix) else {
            continue;
        };
        let beta = prefix != "/v1/models";
        if rest.is_empty() {
            let gemini = beta || gemini_key;
            return match (method, gemini) {
                ("GET", true) => route(Operation::ListModelsGemini, Protocol::Gemini),
                ("GET", false) => route(Operation::ListModels, Protocol::OpenAi),
                (_, true) => route(Operation::Unknown, Protocol::Gemini),
                (_, false) => route(Operation::Unknown, Protocol::OpenAi),
            };
        }
        let Some(name) = rest.strip_prefix('/') else {
            break;
        };
        if let Some((model, action)) = name.rsplit_once(':') {
            let model = model.to_string();
            let operation = match (method, action) {
                ("POST", "generateContent") => Operation::GenerateContent { model, stream: false },
                ("POST", "streamGenerateContent") => Operation::GenerateContent { model, stream: true },
                ("POST", "countTokens") => Operation::CountTokensGemini { model },
                _ => Operation::Unknown,
            };
            return route(operation, Protocol::Gemini);
        }
        if method == "GET" && !name.contains('/') {
            let model = name.to_string();
            return if beta || gemini_key {
                route(Operation::GetModelGemini { model }, Protocol::Gemini)
            } else {
                route(Operation::GetModel { model }, Protocol::OpenAi)
            };
        }
        let protocol = if beta || gemini_key { Protocol::Gemini } else { Protocol::OpenAi };
        return route(Operation::Unknown, protocol);
    }
    let protocol = if path.starts_with("/v1beta") || gemini_key {
        Protocol::Gemini
    } else if path.starts_with("/v1/messages") {
        Protocol::Anthropic
    } else {
        Protocol::OpenAi
    };
    route(Operation::Unknown, protocol)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(method: &str, path: &str, style: Option<KeyStyle>) -> (Operation, Protocol) {
        let r = classify(method, path, style);
        (r.operation, r.protocol)
    }

    #[test]
    fn openai_paths() {
        assert_eq!(
            op("POST", "/v1/chat/completions", Some(KeyStyle::Bearer)),
            (Operation::ChatCompletions, Protocol::OpenAi)
        );
        for path in ["/v1/completions", "/completions", "/v1/completions/"] {
            assert_eq!(op("POST", path, Some(KeyStyle::Bearer)), (Operation::Completions, Protocol::OpenAi));
        }
        assert_eq!(
            op("GET", "/v1/models", Some(KeyStyle::Bearer)),
            (Operation::ListModels, Protocol::OpenAi)
        );
        assert_eq!(op("POST", "/v1/images/generations", None).0, Operation::ImagesGenerations);
        assert_eq!(op("POST", "/v1/images/edits", None), (Operation::ImagesEdits, Protocol::OpenAi));
        assert_eq!(
            op("GET", "/v1/models/gpt-4o", Some(KeyStyle::Bearer)),
            (Operation::GetModel { model: "gpt-4o".into() }, Protocol::OpenAi)
        );
    }

    #[test]
    fn responses_paths() {
        for path in ["/v1/responses", "/responses", "/v1/responses/"] {
            assert_eq!(
                op("POST", path, Some(KeyStyle::Bearer)),
                (Operation::Responses, Protocol::OpenAi),
                "{path}"
            );
        }
        assert_eq!(op("POST", "/v1/responses/input_tokens", None).0, Operation::ResponsesInputTokens);
        assert_eq!(
            op("POST", "/v1/responses/compact", None),
            (Operation::ResponsesUnsupported, Protocol::OpenAi)
        );
        assert_eq!(op("GET", "/v1/responses/resp_1", None).0, Operation::ResponsesUnsupported);
    }

    #[test]
    fn gemini_paths_on_v1_and_v1beta() {
        let generate = Operation::GenerateContent { model: "gemini-3-flash".into(), stream: false };
        assert_eq!(
            op("POST", "/v1/models/gemini-3-flash:generateContent", Some(KeyStyle::GoogApiKey)),
            (generate.clone(), Protocol::Gemini)
        );
        assert_eq!(
            op("POST", "/v1beta/models/gemini-3-flash:generateContent", None),
            (generate, Protocol::Gemini)
        );
        assert_eq!(
            op("POST", "/v1beta/models/g:streamGenerateContent", None).0,
            Operation::GenerateContent { model: "g".into(), stream: true }
        );
        assert_eq!(op("GET", "/v1/models", Some(KeyStyle::GoogApiKey)).0, Operation::ListModelsGemini);
        assert_eq!(op("GET", "/v1beta/models", None).0, Operation::ListModelsGemini);
    }

    #[test]
    fn anthropic_and_unknown() {
        assert_eq!(
            op("POST", "/v1/messages", Some(KeyStyle::XApiKey)),
            (Operation::Messages, Protocol::Anthropic)
        );
        assert_eq!(op("POST", "/v1/messages/count_tokens", None).0, Operation::CountTokensAnthropic);
        assert_eq!(op("GET", "/nope", None), (Operation::Unknown, Protocol::OpenAi));
        assert_eq!(op("GET", "/health", None).0, Operation::Health);
        assert!(!classify("GET", "/health", None).requires_key());
    }
}
