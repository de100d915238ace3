//! One method per client endpoint that reaches the upstream: parse the protocol's request, resolve the model,
//! build the inner `v1internal` request, and answer through that protocol's stream machine. Adding a client
//! protocol adds one method here and one arm in `Gateway::serve`.

use std::sync::Arc;
use std::time::Instant;

use levitate_filters::error::{ClientError, ErrorKind};
use levitate_filters::inner::Target;
use levitate_filters::protocol::anthropic::{AnthropicFold, AnthropicStream, AnthropicStreamOptions};
use levitate_filters::protocol::gemini::{GeminiFold, GeminiStream, GeminiStreamMode, GeminiStreamOptions};
use levitate_filters::protocol::openai_chat::{self, parse_chat_request};
use levitate_filters::protocol::openai_chat::{OpenAiFold, OpenAiStream, OpenAiStreamOptions};
use levitate_filters::protocol::{anthropic, gemini};
use pingora_proxy::Session;
use sha2::{Digest, Sha256};

use super::ctx::RequestCtx;
use super::exchange::{self, Attempts};
use super::pump::UpstreamCall;
use super::signatures::StoredSignatures;
use super::{header, Gateway};
use crate::config::Snapshot;

impl Gateway {
    pub(super) async fn chat_completions(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        snapshot: &Arc<Snapshot>,
    ) -> std::result::Result<(), ClientError> {
        let mut body = self.read_body(session, snapshot.limits.max_request_body).await?;
        // `request` borrows its text from `body`, so the body lives as long as the request.
        let request = parse_chat_request(&mut body)?;
        let upstream_model = self.resolve_model(ctx, snapshot, request.model())?;
        let session_id = self.session_id(session, request.session_hint(), request.first_user_text());
        let target = Target { upstream_model: &upstream_model, session_id: &session_id };
        let mut inner = openai_chat::build_inner_request_cached(
            &request,
            &target,
            &StoredSignatures(&self.app),
            &self.app.tool_cache,
        )?;
        // The stream machine takes the name map; the call keeps the request bytes for its retries.
        let tool_names = std::mem::take(&mut inner.tool_names);
        let call = UpstreamCall::new(snapshot, &upstream_model, &session_id, &inner);
        let request_uuid = uuid::Uuid::new_v4().simple().to_string();
        let options = OpenAiStreamOptions {
            id: format!("chatcmpl-{request_uuid}"),
            model: request.model().to_string(),
            created: crate::store::unix_now(),
            include_usage: request.include_usage(),
            tool_call_id_prefix: format!("call_{}_", &request_uuid[..16]),
            tool_names,
        };
        let stream = request.stream();
        self.answer(session, ctx, call, stream, options, OpenAiStream::new, OpenAiFold::new).await
    }

    /// `POST /v1/messages` (Anthropic Messages; Claude Code).
    pub(super) async fn messages(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        snapshot: &Arc<Snapshot>,
    ) -> std::result::Result<(), ClientError> {
        let mut body = self.read_body(session, snapshot.limits.max_request_body).await?;
        let request = anthropic::parse_messages_request(&mut body)?;
        drop(body);
        let upstream_model = self.resolve_model(ctx, snapshot, request.model())?;
        let client_key = header(session, "x-claude-code-session-id").or(request.session_hint());
        let session_id = self.session_id(session, client_key, request.first_user_text());
        let target = Target { upstream_model: &upstream_model, session_id: &session_id };
        let mut inner = anthropic::build_inner_request_cached(
            &request,
            &target,
            &StoredSignatures(&self.app),
            &self.app.tool_cache,
        )?;
        let tool_names = std::mem::take(&mut inner.tool_names);
        let call = UpstreamCall::new(snapshot, &upstream_model, &session_id, &inner);
        let request_uuid = uuid::Uuid::new_v4().simple().to_string();
        let options = AnthropicStreamOptions {
            id: format!("msg_{request_uuid}"),
            model: request.model().to_string(),
            tool_id_prefix: format!("toolu_{}_", &request_uuid[..16]),
            tool_names,
            input_tokens_hint: anthropic::estimate_tokens(&request),
        };
        let stream = request.stream();
        self.answer(session, ctx, call, stream, options, AnthropicStream::new, AnthropicFold::new).await
    }

    /// `POST /v1/messages/count_tokens`: answered locally; clients call it dozens of times a second.
    pub(super) async fn count_tokens_anthropic(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        snapshot: &Arc<Snapshot>,
    ) -> std::result::Result<(), ClientError> {
        let mut body = self.read_body(session, snapshot.limits.max_request_body).await?;
        let request = anthropic::parse_count_tokens_request(&mut body)?;
        ctx.client_model = Some(request.model().to_string());
        let body = anthropic::count_tokens_response(anthropic::estimate_tokens(&request));
        self.respond_json(session, ctx, 200, body).await
    }

    /// `POST /v1beta/models/{model}:generateContent` and `:streamGenerateContent` (Gemini SDKs and CLI).
    pub(super) async fn generate_content(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        snapshot: &Arc<Snapshot>,
        model: &str,
        stream: bool,
    ) -> std::result::Result<(), ClientError> {
        let mut body = self.read_body(session, snapshot.limits.max_request_body).await?;
        let request = gemini::parse_generate_request(&mut body)?;
        drop(body);
        let upstream_model = self.resolve_model(ctx, snapshot, model)?;
        let session_id = self.session_id(session, None, request.first_user_text());
        let target = Target { upstream_model: &upstream_model, session_id: &session_id };
        let mut inner = gemini::build_inner_request(request, &target, &StoredSignatures(&self.app))?;
        let tool_names = std::mem::take(&mut inner.tool_names);
        let call = UpstreamCall::new(snapshot, &upstream_model, &session_id, &inner);
        let sse = session.req_header().uri.query().is_some_and(|q| q.split('&').any(|kv| kv == "alt=sse"));
        let mode = if sse { GeminiStreamMode::Sse } else { GeminiStreamMode::JsonArray };
        let options = GeminiStreamOptions { mode, tool_names };
        self.answer(session, ctx, call, stream, options, GeminiStream::new, GeminiFold::new).await
    }

    /// `POST /v1beta/models/{model}:countTokens`, forwarded to the upstream `countTokens` in its own shape.
    pub(super) async fn count_tokens_gemini(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        snapshot: &Arc<Snapshot>,
        model: &str,
    ) -> std::result::Result<(), ClientError> {
        let mut body = self.read_body(session, snapshot.limits.max_request_body).await?;
        let request = gemini::parse_generate_request(&mut body)?;
        drop(body);
        let upstream_model = self.resolve_model(ctx, snapshot, model)?;
        let upstream_body = gemini::build_count_tokens_request(&request, &upstream_model);
        let mut attempts = Attempts::default();
        let waited = Instant::now();
        let answer =
            exchange::count_tokens(&self.app, snapshot, &upstream_model, upstream_body, &mut attempts).await;
        ctx.note_attempts(&attempts, waited);
        let answer = answer?;
        let body = gemini::parse_count_tokens_response(&answer).ok_or_else(|| {
            ClientError::new(502, ErrorKind::Api, "the upstream answered countTokens without totalTokens")
        })?;
        self.respond_json(session, ctx, 200, body).await
    }

    /// Resolves the client's model name through routes.yaml, recording both names for the log.
    pub(super) fn resolve_model(
        &self,
        ctx: &mut RequestCtx,
        snapshot: &Snapshot,
        client_model: &str,
    ) -> std::result::Result<String, ClientError> {
        ctx.client_model = Some(client_model.to_string());
        let resolution = snapshot.aliases.resolve(client_model).ok_or_else(|| {
            ClientError::new(
                404,
                ErrorKind::NotFound,
                format!("the model {client_model:?} does not exist and routes.yaml has no default"),
            )
            .with_param("model")
        })?;
        ctx.alias = Some(alias_label(client_model, resolution.via));
        ctx.upstream_model = Some(resolution.upstream.to_string());
        Ok(resolution.upstream.to_string())
    }

    /// The conversation's session id: the `x-session-id` header, else the protocol's own key, else the
    /// first user message.
    pub(super) fn session_id(
        &self,
        session: &Session,
        client_key: Option<&str>,
        first_user_text: Option<&str>,
    ) -> String {
        session_id(header(session, "x-session-id").or(client_key), first_user_text)
    }
}

/// `request.sessionId`: a stable signed-decimal id per conversation (PROTOCOL.md §11), from the client's
/// own session key when it sends one, else from the first user message, else random.
fn session_id(client_key: Option<&str>, first_user_text: Option<&str>) -> String {
    // Hashed in pieces: the first user message can be a whole pasted file, not worth a copy.
    let mut hasher = Sha256::new();
    match (client_key, first_user_text) {
        (Some(key), _) => {
            hasher.update(b"key:");
            hasher.update(key.as_bytes());
        }
        (None, Some(text)) => {
            hasher.update(b"text:");
            hasher.update(text.as_bytes());
        }
        (None, None) => hasher.update(uuid::Uuid::new_v4().to_string().as_bytes()),
    }
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    format!("-{}", u64::from_be_bytes(first) & (i64::MAX as u64))
}

/// The `alias` metric label: the routes.yaml pattern that matched, `direct` or `default` (never the raw
/// client model name, which would make the label set unbounded).
fn alias_label(client_model: &str, via: levitate_filters::alias::Via<'_>) -> String {
    match via {
        levitate_filters::alias::Via::Wildcard { pattern } => pattern.to_string(),
        // An exact alias is a routes.yaml key, so the name itself is bounded.
        levitate_filters::alias::Via::Exact => client_model.trim_start_matches("models/").to_string(),
        levitate_filters::alias::Via::Upstream => "direct".to_string(),
        levitate_filters::alias::Via::Default => "default".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn session_ids_are_stable_signed_decimals() {
        let a = session_id(Some("conv-1"), Some("hello"));
        assert_eq!(a, session_id(Some("conv-1"), Some("other text")));
        assert_ne!(a, session_id(Some("conv-2"), None));
        assert_eq!(session_id(None, Some("hello")), session_id(None, Some("hello")));
        assert!(a.starts_with('-') && a[1..].parse::<i64>().is_ok(), "{a}");
    }
}
