//! One method per client endpoint that reaches the upstream: parse the protocol's request, resolve the model,
//! build the inner `v1internal` request, and answer through that protocol's stream machine. Adding a client
//! protocol adds one method here and one arm in `Gateway::serve`.
//!
//! Parsing and rewriting a request is plain CPU work on the body. For bodies above
//! [`OFF_REACTOR_FROM`] bytes it runs on Tokio's blocking pool ([`off_reactor`]), so a client sending a
//! large (or hostile) body does not stall the other requests that share its worker thread; smaller bodies,
//! nearly all of them, are rewritten inline, where a hand-off would cost more than the work.

use std::sync::Arc;
use std::time::Instant;

use levitate_filters::error::{ClientError, ErrorKind};
use levitate_filters::grounding;
use levitate_filters::inner::{InnerRequest, RequestType, Target};
use levitate_filters::protocol::anthropic::{AnthropicFold, AnthropicStream, AnthropicStreamOptions};
use levitate_filters::protocol::gemini::{GeminiFold, GeminiStream, GeminiStreamMode, GeminiStreamOptions};
use levitate_filters::protocol::openai_chat::{self, parse_chat_request};
use levitate_filters::protocol::openai_chat::{OpenAiFold, OpenAiStream, OpenAiStreamOptions};
use levitate_filters::protocol::openai_responses::{
    self, ResponsesFold, ResponsesStream, ResponsesStreamOptions,
};
use levitate_filters::protocol::{anthropic, gemini};
use levitate_filters::signature::ModelFamily;
use pingora_proxy::Session;
use sha2::{Digest, Sha256};

use super::ctx::RequestCtx;
use super::exchange::{self, Attempts};
use super::pump::UpstreamCall;
use super::signatures::{self, StoredSignatures};
use super::{header, Gateway};
use crate::app::App;
use crate::config::Snapshot;
use crate::shared::MissRecorder;

/// Request bodies at least this large are parsed and rewritten on the blocking pool (a 256 KiB body takes
/// about half a millisecond of CPU in the release build; a hostile 30 MiB one, tens).
const OFF_REACTOR_FROM: usize = 256 * 1024;

/// A request parsed, resolved and rewritten, with what the stream machine needs from the client request
/// (which borrowed the body and is gone by now).
struct Prepared {
    inner: InnerRequest,
    upstream_model: String,
    session_id: String,
    client_model: String,
    stream: bool,
    include_usage: bool,
    input_tokens_hint: u64,
    /// A web search's allowed and blocked sites (Anthropic's web search tool, the Responses `web_search`
    /// tool's `filters`).
    search_domains: grounding::DomainFilter,
}

/// How the client's model resolved, recorded into the request context once the transform is back (it may
/// run on another thread): the request log wants the names even when the transform failed afterwards.
#[derive(Default)]
pub(super) struct ModelNote {
    client_model: Option<String>,
    alias: Option<String>,
    upstream_model: Option<String>,
}

impl ModelNote {
    /// Resolves the client's model name through routes.yaml, noting both names for the log.
    pub(super) fn resolve(&mut self, snapshot: &Snapshot, client_model: &str) -> Result<String, ClientError> {
        // The Gemini model comes from the path, not a parsed body: bound it here like the others.
        levitate_filters::limits::check_model_name(client_model, "model")?;
        self.client_model = Some(client_model.to_string());
        let resolution = snapshot.aliases.resolve(client_model).ok_or_else(|| {
            ClientError::new(
                404,
                ErrorKind::NotFound,
                format!("the model {client_model:?} does not exist and routes.yaml has no default"),
            )
            .with_param("model")
        })?;
        self.alias = Some(alias_label(client_model, resolution.via));
        self.upstream_model = Some(resolution.upstream.to_string());
        Ok(resolution.upstream.to_string())
    }

    /// A web search goes to a model that can ground it: the resolved one, or routes.yaml's
    /// `web_search_model` (Claude and gpt-oss cannot search).
    fn ground(&mut self, snapshot: &Snapshot, upstream_model: String) -> String {
        let model = grounding::search_model(&upstream_model, &snapshot.web_search_model).to_string();
        self.upstream_model = Some(model.clone());
        model
    }

    pub(super) fn record(self, ctx: &mut RequestCtx) {
        ctx.client_model = self.client_model.or(ctx.client_model.take());
        ctx.alias = self.alias.or(ctx.alias.take());
        ctx.upstream_model = self.upstream_model.or(ctx.upstream_model.take());
    }
}

/// Runs `work` (a parse and transform of a `body_len`-byte body) inline for small bodies and on Tokio's
/// blocking pool for large ones; see the module documentation.
pub(super) async fn off_reactor<T: Send + 'static>(
    body_len: usize,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ClientError> {
    if body_len < OFF_REACTOR_FROM {
        return Ok(work());
    }
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        tracing::error!(error = %e, "a request transform on the blocking pool failed");
        ClientError::new(500, ErrorKind::Api, "the request could not be processed")
    })
}

/// The session-affinity headers, copied out of the request head so the transform can run elsewhere.
pub(super) struct SessionHeaders {
    pub(super) session_id: Option<String>,
    claude_code: Option<String>,
    /// Codex CLI's conversation id (`session-id`; `session_id` before 0.16x).
    codex: Option<String>,
}

impl SessionHeaders {
    pub(super) fn of(session: &Session) -> Self {
        SessionHeaders {
            session_id: header(session, "x-session-id").map(str::to_owned),
            claude_code: header(session, "x-claude-code-session-id").map(str::to_owned),
            codex: header(session, "session-id").or_else(|| header(session, "session_id")).map(str::to_owned),
        }
    }
}

/// What [`Gateway::prepare`] admits against the key's limits: the client's model and the upstream model it
/// resolved to.
pub(super) trait Admissible {
    fn models(&self) -> (&str, &str);
    /// The conversation's affinity key, where the request has one.
    fn session(&self) -> Option<&str> {
        None
    }
}

impl Admissible for Prepared {
    fn models(&self) -> (&str, &str) {
        (&self.client_model, &self.upstream_model)
    }
    fn session(&self) -> Option<&str> {
        Some(&self.session_id)
    }
}

impl<T: Send> Admissible for (Prepared, T) {
    fn models(&self) -> (&str, &str) {
        self.0.models()
    }
    fn session(&self) -> Option<&str> {
        self.0.session()
    }
}

fn prepare_chat(
    mut body: Vec<u8>,
    app: &App,
    snapshot: &Snapshot,
    headers: &SessionHeaders,
    note: &mut ModelNote,
) -> Result<Prepared, ClientError> {
    // `request` borrows its text from `body`, so the body lives as long as the request.
    let request = parse_chat_request(&mut body)?;
    let mut upstream_model = note.resolve(snapshot, request.model())?;
    if request.web_search() {
        upstream_model = note.ground(snapshot, upstream_model);
    }
    let client_key = headers.session_id.as_deref().or(request.session_hint());
    let session_id = session_id(client_key, request.first_user_text());
    let target = Target { upstream_model: &upstream_model, session_id: &session_id };
    let inner =
        openai_chat::build_inner_request_cached(&request, &target, &StoredSignatures(app), &app.tool_cache)?;
    Ok(Prepared {
        inner,
        client_model: request.model().to_string(),
        stream: request.stream(),
        include_usage: request.include_usage(),
        input_tokens_hint: 0,
        search_domains: grounding::DomainFilter::default(),
        upstream_model,
        session_id,
    })
}

fn prepare_messages(
    mut body: Vec<u8>,
    app: &App,
    snapshot: &Snapshot,
    headers: &SessionHeaders,
    note: &mut ModelNote,
) -> Result<Prepared, ClientError> {
    let request = anthropic::parse_messages_request(&mut body)?;
    drop(body);
    let mut upstream_model = note.resolve(snapshot, request.model())?;
    if request.web_search() {
        upstream_model = note.ground(snapshot, upstream_model);
    }
    let client_key =
        headers.session_id.as_deref().or(headers.claude_code.as_deref()).or(request.session_hint());
    let session_id = session_id(client_key, request.first_user_text());
    let target = Target { upstream_model: &upstream_model, session_id: &session_id };
    let inner =
        anthropic::build_inner_request_cached(&request, &target, &StoredSignatures(app), &app.tool_cache)?;
    Ok(Prepared {
        inner,
        client_model: request.model().to_string(),
        stream: request.stream(),
        include_usage: false,
        input_tokens_hint: anthropic::estimate_tokens(&request),
        search_domains: request.search_domains(),
        upstream_model,
        session_id,
    })
}

fn prepare_generate(
    mut body: Vec<u8>,
    app: &App,
    snapshot: &Snapshot,
    headers: &SessionHeaders,
    model: &str,
    note: &mut ModelNote,
) -> Result<Prepared, ClientError> {
    let request = gemini::parse_generate_request(&mut body)?;
    drop(body);
    let upstream_model = note.resolve(snapshot, model)?;
    let session_id = session_id(headers.session_id.as_deref(), request.first_user_text());
    let target = Target { upstream_model: &upstream_model, session_id: &session_id };
    let inner = gemini::build_inner_request(request, &target, &StoredSignatures(app))?;
    Ok(Prepared {
        inner,
        client_model: model.to_string(),
        stream: false,
        include_usage: false,
        input_tokens_hint: 0,
        search_domains: grounding::DomainFilter::default(),
        upstream_model,
        session_id,
    })
}

/// What the Responses stream machine needs from the request besides [`Prepared`].
struct ResponsesExtra {
    tools: Vec<openai_responses::ToolRoute>,
    show_summary: bool,
    /// `include` has `web_search_call.action.sources`.
    search_sources: bool,
}

fn prepare_responses(
    mut body: Vec<u8>,
    app: &App,
    snapshot: &Snapshot,
    headers: &SessionHeaders,
    note: &mut ModelNote,
) -> Result<(Prepared, ResponsesExtra), ClientError> {
    let request = openai_responses::parse_responses_request(&mut body)?;
    let mut upstream_model = note.resolve(snapshot, request.model())?;
    if request.web_search() {
        upstream_model = note.ground(snapshot, upstream_model);
    }
    let client_key = headers.session_id.as_deref().or(headers.codex.as_deref()).or(request.session_hint());
    let session_id = session_id(client_key, request.first_user_text());
    let target = Target { upstream_model: &upstream_model, session_id: &session_id };
    let sealer = super::reasoning_seal::sealer(&app.store)?;
    let (signatures, keys) = (StoredSignatures(app), sealer.keys());
    let inner =
        openai_responses::build_inner_request_cached(&request, &target, &signatures, keys, &app.tool_cache)?;
    let extra = ResponsesExtra {
        tools: openai_responses::tool_routes(&request),
        show_summary: request.wants_summary(),
        search_sources: request.includes_search_sources(),
    };
    let prepared = Prepared {
        inner,
        client_model: request.model().to_string(),
        stream: request.stream(),
        include_usage: false,
        input_tokens_hint: 0,
        upstream_model,
        session_id,
        search_domains: request.search_domains(),
    };
    Ok((prepared, extra))
}

impl Gateway {
    /// `POST /v1/responses` (OpenAI Responses API; Codex CLI).
    pub(super) async fn responses(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        snapshot: &Arc<Snapshot>,
    ) -> std::result::Result<(), ClientError> {
        let body = self.read_body(session, snapshot.limits.max_request_body).await?;
        let (prepared, extra) = self.prepare(session, ctx, snapshot, body, prepare_responses).await?;
        let sealer = super::reasoning_seal::sealer(&self.app.store)?;
        let mut inner = prepared.inner;
        let tool_names = std::mem::take(&mut inner.tool_names);
        let call = UpstreamCall::new(snapshot, &prepared.upstream_model, &prepared.session_id, &inner);
        let request_uuid = uuid::Uuid::new_v4().simple().to_string();
        let options = ResponsesStreamOptions {
            id: format!("resp_{request_uuid}"),
            model: prepared.client_model,
            created_at: crate::store::unix_now(),
            tool_call_id_prefix: format!("call_{}_", &request_uuid[..16]),
            tool_names,
            tools: extra.tools,
            family: ModelFamily::of(&prepared.upstream_model),
            sealer,
            show_summary: extra.show_summary,
            web_search: (inner.request_type == RequestType::WebSearch).then_some(
                openai_responses::WebSearchOptions {
                    domains: prepared.search_domains,
                    include_sources: extra.search_sources,
                },
            ),
        };
        let stream = prepared.stream;
        self.answer(session, ctx, call, stream, options, ResponsesStream::new, ResponsesFold::new).await
    }

    /// `POST /v1/responses/input_tokens`: a local estimate, like Anthropic's count_tokens.
    pub(super) async fn responses_input_tokens(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        snapshot: &Arc<Snapshot>,
    ) -> std::result::Result<(), ClientError> {
        let mut body = self.read_body(session, snapshot.limits.max_request_body).await?;
        let counted = off_reactor(body.len(), move || {
            openai_responses::parse_responses_request(&mut body)
                .map(|request| (request.model().to_string(), request.estimate_tokens()))
        })
        .await??;
        ctx.client_model = Some(counted.0);
        let body = serde_json::json!({"object": "response.input_tokens", "input_tokens": counted.1});
        self.respond_json(session, ctx, 200, body.to_string().into_bytes()).await
    }

    /// `POST /v1/chat/completions` (OpenAI).
    pub(super) async fn chat_completions(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        snapshot: &Arc<Snapshot>,
    ) -> std::result::Result<(), ClientError> {
        let body = self.read_body(session, snapshot.limits.max_request_body).await?;
        let prepared = self.prepare(session, ctx, snapshot, body, prepare_chat).await?;
        // The stream machine takes the name map; the call keeps the request bytes for its retries.
        let mut inner = prepared.inner;
        let tool_names = std::mem::take(&mut inner.tool_names);
        let call = UpstreamCall::new(snapshot, &prepared.upstream_model, &prepared.session_id, &inner);
        let request_uuid = uuid::Uuid::new_v4().simple().to_string();
        let options = OpenAiStreamOptions {
            id: format!("chatcmpl-{request_uuid}"),
            model: prepared.client_model,
            created: crate::store::unix_now(),
            include_usage: prepared.include_usage,
            tool_call_id_prefix: format!("call_{}_", &request_uuid[..16]),
            tool_names,
            web_search: inner.request_type == RequestType::WebSearch,
        };
        self.answer(session, ctx, call, prepared.stream, options, OpenAiStream::new, OpenAiFold::new).await
    }

    /// `POST /v1/messages` (Anthropic Messages; Claude Code).
    pub(super) async fn messages(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        snapshot: &Arc<Snapshot>,
    ) -> std::result::Result<(), ClientError> {
        let body = self.read_body(session, snapshot.limits.max_request_body).await?;
        let prepared = self.prepare(session, ctx, snapshot, body, prepare_messages).await?;
        let mut inner = prepared.inner;
        let tool_names = std::mem::take(&mut inner.tool_names);
        let call = UpstreamCall::new(snapshot, &prepared.upstream_model, &prepared.session_id, &inner);
        let request_uuid = uuid::Uuid::new_v4().simple().to_string();
        let options = AnthropicStreamOptions {
            id: format!("msg_{request_uuid}"),
            model: prepared.client_model,
            tool_id_prefix: format!("toolu_{}_", &request_uuid[..16]),
            tool_names,
            input_tokens_hint: prepared.input_tokens_hint,
            web_search: (inner.request_type == RequestType::WebSearch).then_some(prepared.search_domains),
        };
        let stream = prepared.stream;
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
        let counted = off_reactor(body.len(), move || {
            anthropic::parse_count_tokens_request(&mut body)
                .map(|request| (request.model().to_string(), anthropic::estimate_tokens(&request)))
        })
        .await??;
        ctx.client_model = Some(counted.0);
        let body = anthropic::count_tokens_response(counted.1);
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
        let body = self.read_body(session, snapshot.limits.max_request_body).await?;
        let model = model.to_owned();
        let prepare = move |body, app: &App, snapshot: &Snapshot, headers: &SessionHeaders, note: &mut _| {
            prepare_generate(body, app, snapshot, headers, &model, note)
        };
        let prepared = self.prepare(session, ctx, snapshot, body, prepare).await?;
        let mut inner = prepared.inner;
        let tool_names = std::mem::take(&mut inner.tool_names);
        let call = UpstreamCall::new(snapshot, &prepared.upstream_model, &prepared.session_id, &inner);
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
        let snap = Arc::clone(snapshot);
        let model = model.to_owned();
        let (note, built) = off_reactor(body.len(), move || {
            let mut note = ModelNote::default();
            let built = (|| {
                let request = gemini::parse_generate_request(&mut body)?;
                drop(body);
                let upstream_model = note.resolve(&snap, &model)?;
                let upstream_body = gemini::build_count_tokens_request(&request, &upstream_model);
                Ok::<_, ClientError>((upstream_model, upstream_body))
            })();
            (note, built)
        })
        .await?;
        note.record(ctx);
        let (upstream_model, upstream_body) = built?;
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

    /// Runs `prepare` on the body (inline or on the blocking pool, see [`off_reactor`]) and records how the
    /// model resolved.
    pub(super) async fn prepare<F, P>(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
        snapshot: &Arc<Snapshot>,
        body: Vec<u8>,
        prepare: F,
    ) -> Result<P, ClientError>
    where
        F: Fn(Vec<u8>, &App, &Snapshot, &SessionHeaders, &mut ModelNote) -> Result<P, ClientError>
            + Clone
            + Send
            + 'static,
        P: Admissible + Send + 'static,
    {
        let headers = Arc::new(SessionHeaders::of(session));
        let body_len = body.len();
        // In a cluster the transform may run a second time with what Redis knew (see `crate::shared`).
        let second = self.app.shared.is_up().then(|| body.clone());
        let (note, prepared, missed) = self.transform(snapshot, &headers, body, prepare.clone()).await?;
        let (note, prepared) = match (second, prepared) {
            (Some(body), Ok(first))
                if signatures::from_cluster(&self.app, &missed, first.session()).await =>
            {
                let (note, again, _) = self.transform(snapshot, &headers, body, prepare).await?;
                (note, again)
            }
            (_, prepared) => (note, prepared),
        };
        note.record(ctx);
        let prepared = prepared?;
        let (client_model, upstream_model) = prepared.models();
        self.admit_key(ctx, snapshot, client_model, upstream_model, body_len)?;
        Ok(prepared)
    }

    /// One run of a transform (inline or on the blocking pool), noting the signatures it missed locally.
    async fn transform<F, P>(
        &self,
        snapshot: &Arc<Snapshot>,
        headers: &Arc<SessionHeaders>,
        body: Vec<u8>,
        prepare: F,
    ) -> Result<(ModelNote, Result<P, ClientError>, Vec<String>), ClientError>
    where
        F: Fn(Vec<u8>, &App, &Snapshot, &SessionHeaders, &mut ModelNote) -> Result<P, ClientError>
            + Send
            + 'static,
        P: Send + 'static,
    {
        let (app, snap, headers) = (Arc::clone(&self.app), Arc::clone(snapshot), Arc::clone(headers));
        let record = app.shared.is_up();
        off_reactor(body.len(), move || {
            let recorder = MissRecorder::start(record);
            let mut note = ModelNote::default();
            let prepared = prepare(body, &app, &snap, &headers, &mut note);
            (note, prepared, recorder.finish())
        })
        .await
    }

    /// The key's limits, before any upstream call (see crate::tenancy): every endpoint that calls the
    /// upstream goes through here once its model is resolved.
    pub(super) fn admit_key(
        &self,
        ctx: &mut RequestCtx,
        snapshot: &Snapshot,
        client_model: &str,
        upstream_model: &str,
        body_len: usize,
    ) -> Result<(), ClientError> {
        let Some(key) = ctx.key_name.as_deref() else {
            return Ok(());
        };
        let now = crate::store::unix_now_ms();
        match self.app.tenancy.admit(&snapshot.tenancy, key, client_model, upstream_model, body_len, now) {
            Ok(permit) => {
                ctx.permit = Some(permit);
                Ok(())
            }
            Err(refusal) => {
                ctx.retry_after = refusal.retry_after().map(std::time::Duration::from_secs);
                Err(refusal.client_error())
            }
        }
    }
}

/// `request.sessionId`: a stable signed-decimal id per conversation (PROTOCOL.md §11), from the client's
/// own session key when it sends one, else from the first user message, else random.
pub(super) fn session_id(client_key: Option<&str>, first_user_text: Option<&str>) -> String {
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

    #[tokio::test]
    async fn large_bodies_are_transformed_off_the_reactor_small_ones_inline() {
        let here = std::thread::current().id();
        let small = off_reactor(OFF_REACTOR_FROM - 1, || std::thread::current().id()).await.unwrap();
        assert_eq!(small, here, "a small body is rewritten inline");
        let large = off_reactor(OFF_REACTOR_FROM, || std::thread::current().id()).await.unwrap();
        assert_ne!(large, here, "a large body is rewritten on the blocking pool");
    }

    #[test]
    pub(super) fn session_ids_are_stable_signed_decimals() {
        let a = session_id(Some("conv-1"), Some("hello"));
        assert_eq!(a, session_id(Some("conv-1"), Some("other text")));
        assert_ne!(a, session_id(Some("conv-2"), None));
        assert_eq!(session_id(None, Some("hello")), session_id(None, Some("hello")));
        assert!(a.starts_with('-') && a[1..].parse::<i64>().is_ok(), "{a}");
    }
}
