//! The Pingora `ProxyHttp` implementation: the only place that knows the order of the filters.
//!
//! Pingora's own upstream path cannot carry our main routes (the account is decided by the body, prompts
//! exceed its 64 KiB replay buffer, and a 429 must be retried on another account after its status is seen),
//! so `request_filter` does the whole exchange: route, authenticate, read the body, transform, lease an
//! account, drive the upstream through [`Upstream`], stream the rewritten answer, and return `Ok(true)`.
//! Each step is a small method below; the retry loop over accounts is [`crate::exchange::open`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use levitate_filters::auth::{presented_key_with_style, PresentedKey};
use levitate_filters::error::{ClientError, ErrorKind};
use levitate_filters::inner::{InnerRequest, Target};
use levitate_filters::protocol::anthropic::{self, AnthropicFold, AnthropicStream, AnthropicStreamOptions};
use levitate_filters::protocol::gemini::{
    self, GeminiFold, GeminiStream, GeminiStreamMode, GeminiStreamOptions,
};
use levitate_filters::protocol::openai_chat::{
    self, parse_chat_request, OpenAiFold, OpenAiStream, OpenAiStreamOptions,
};
use levitate_filters::route::{classify, Operation, Route};
use levitate_filters::sse::SseFramer;
use levitate_filters::stream::{Fold, Folded, Translator};
use levitate_filters::Protocol;
use pingora_core::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::{ProxyHttp, Session};
use sha2::{Digest, Sha256};

use crate::app::App;
use crate::config::Snapshot;
use crate::exchange::{self, Attempts};
use crate::pool::Lease;
use crate::signatures::{self, StoredSignatures};
use crate::upstream::UpstreamResponse;

/// Largest single SSE event accepted from upstream (a big inline image can be several MiB).
const MAX_UPSTREAM_EVENT: usize = 32 * 1024 * 1024;
/// How long upstream may be silent before the client gets a keep-alive.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// Per-request state: everything the `logging` hook reports.
pub struct RequestCtx {
    started: Instant,
    protocol: Protocol,
    operation: &'static str,
    key_name: Option<String>,
    client_model: Option<String>,
    upstream_model: Option<String>,
    account: Option<String>,
    attempts: u32,
    status: u16,
    first_byte: Option<Duration>,
    truncated: bool,
    /// With a 429: when the pool's earliest account unlocks (the `Retry-After` header).
    retry_after: Option<Duration>,
    /// Unix milliseconds of arrival, for the request log.
    at_ms: u64,
    /// How the client's model resolved (`routes.yaml` pattern, `direct` or `default`): a bounded metric label.
    alias: Option<String>,
    /// Time spent waiting on the upstream (attempts and stream reads); the rest is gateway overhead.
    upstream_wait: Duration,
    /// The last usage the upstream reported (prompt, candidates, thoughts, cached tokens).
    usage: Option<levitate_filters::stream::Usage>,
    /// Counts this request in `levitate_active_requests` until the context is dropped.
    _active: crate::metrics::LiveGuard,
    /// Counts a streaming response in `levitate_active_streams` while it is written.
    stream: Option<crate::metrics::LiveGuard>,
}

impl RequestCtx {
    /// Records what an upstream exchange did: its attempts, last account and `Retry-After`, and the wait.
    fn note_attempts(&mut self, attempts: &Attempts, waited: Instant) {
        self.upstream_wait += waited.elapsed();
        self.attempts = attempts.count;
        self.account = attempts.last_account.clone();
        self.retry_after = attempts.retry_after;
    }
}

/// The client-facing service.
pub struct Gateway {
    app: Arc<App>,
}

impl Gateway {
    pub fn new(app: Arc<App>) -> Self {
        Gateway { app }
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            protocol: Protocol::OpenAi,
            operation: "unknown",
            key_name: None,
            client_model: None,
            upstream_model: None,
            account: None,
            attempts: 0,
            status: 0,
            first_byte: None,
            truncated: false,
            retry_after: None,
            at_ms: crate::store::unix_now_ms(),
            alias: None,
            upstream_wait: Duration::ZERO,
            usage: None,
            _active: self.app.metrics.request_started(),
            stream: None,
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut RequestCtx,
    ) -> Result<Box<pingora_core::upstreams::peer::HttpPeer>> {
        // Every route is answered in request_filter; reaching here is a bug, not a client error.
        Err(pingora_core::Error::explain(
            pingora_core::ErrorType::InternalError,
            "no upstream peer: routes are served in request_filter",
        ))
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let snapshot = self.app.snapshot();
        // The key is read once: where it was found is part of the routing (Google's SDKs mark Gemini calls).
        let (route, key_name) = {
            let req = session.req_header();
            let presented = presented_key_with_style(&req.headers, req.uri.query());
            let route = classify(req.method.as_str(), req.uri.path(), presented.as_ref().map(|k| k.style));
            let key_name = authenticate(&snapshot, &route, presented.as_ref());
            (route, key_name)
        };
        ctx.protocol = route.protocol;
        ctx.operation = operation_label(&route.operation);
        let outcome = match key_name {
            Ok(key_name) => {
                ctx.key_name = key_name;
                self.serve(session, ctx, &snapshot, route).await
            }
            Err(e) => Err(e),
        };
        if let Err(error) = outcome {
            self.respond_error(session, ctx, &error).await?;
        }
        Ok(true)
    }

    async fn early_request_filter(&self, session: &mut Session, _ctx: &mut RequestCtx) -> Result<()> {
        if crate::upgrade::draining() {
            // Handing over to a new process: make the client's next request open a connection to it.
            session.set_keepalive(None);
        }
        Ok(())
    }

    async fn logging(&self, _session: &mut Session, _e: Option<&pingora_core::Error>, ctx: &mut RequestCtx) {
        let elapsed = ctx.started.elapsed();
        ctx.stream = None;
        self.record(ctx, elapsed);
        tracing::info!(
            protocol = ctx.protocol.as_str(),
            operation = ctx.operation,
            key = ctx.key_name.as_deref().unwrap_or("-"),
            model = ctx.client_model.as_deref().unwrap_or("-"),
            upstream_model = ctx.upstream_model.as_deref().unwrap_or("-"),
            account = ctx.account.as_deref().unwrap_or("-"),
            attempts = ctx.attempts,
            status = ctx.status,
            ttfb_ms = ctx.first_byte.map(|d| d.as_millis() as u64),
            truncated = ctx.truncated,
            ms = elapsed.as_millis() as u64,
            "request"
        );
    }
}

impl Gateway {
    /// Metrics and the request-log record of a finished request (metadata only, queued off the hot path).
    fn record(&self, ctx: &RequestCtx, elapsed: Duration) {
        let metrics = &self.app.metrics;
        let upstream_model = ctx.upstream_model.as_deref().unwrap_or("-");
        metrics.observe_request(&crate::metrics::RequestObservation {
            protocol: ctx.protocol.as_str(),
            route: ctx.operation,
            alias: ctx.alias.as_deref().unwrap_or("-"),
            upstream_model,
            status: ctx.status,
            total: elapsed,
            first_byte: ctx.first_byte,
            upstream_wait: ctx.upstream_wait,
        });
        let usage = ctx.usage.unwrap_or_default();
        if let Some(account) = ctx.account.as_deref() {
            metrics.tokens(upstream_model, account, "in", usage.prompt);
            metrics.tokens(upstream_model, account, "out", usage.candidates);
            metrics.tokens(upstream_model, account, "thoughts", usage.thoughts);
            metrics.tokens(upstream_model, account, "cached", usage.cached);
        }
        // Health probes (load balancers poll every few seconds) would crowd real requests out of the log.
        if ctx.operation == "health" {
            return;
        }
        let record = crate::request_log::RequestRecord {
            at_ms: ctx.at_ms,
            key_name: ctx.key_name.clone(),
            protocol: ctx.protocol.as_str().to_string(),
            route: ctx.operation.to_string(),
            client_model: ctx.client_model.clone(),
            upstream_model: ctx.upstream_model.clone(),
            account: ctx.account.clone(),
            status: ctx.status,
            attempts: ctx.attempts,
            latency_ms: elapsed.as_millis() as u64,
            ttfb_ms: ctx.first_byte.map(|d| d.as_millis() as u64),
            tokens_in: usage.prompt,
            tokens_out: usage.candidates,
            tokens_thoughts: usage.thoughts,
            tokens_cached: usage.cached,
            truncated: ctx.truncated,
        };
        if !self.app.request_log.record(record) {
            metrics.request_log_dropped();
        }
    }

    async fn serve(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        snapshot: &Arc<Snapshot>,
        route: Route,
    ) -> std::result::Result<(), ClientError> {
        match route.operation {
            Operation::Health => self.respond_json(session, ctx, 200, br#"{"status":"ok"}"#.to_vec()).await,
            Operation::ListModels => {
                let body = crate::models::openai_list(&snapshot.aliases);
                self.respond_json(session, ctx, 200, body).await
            }
            Operation::GetModel { model } => match crate::models::openai_model(&snapshot.aliases, &model) {
                Some(body) => self.respond_json(session, ctx, 200, body).await,
                None => {
                    Err(ClientError::new(404, ErrorKind::NotFound, format!("model {model:?} does not exist")))
                }
            },
            Operation::ChatCompletions => self.chat_completions(session, ctx, snapshot).await,
            Operation::Messages => self.messages(session, ctx, snapshot).await,
            Operation::CountTokensAnthropic => self.count_tokens_anthropic(session, ctx, snapshot).await,
            Operation::GenerateContent { model, stream } => {
                self.generate_content(session, ctx, snapshot, &model, stream).await
            }
            Operation::ListModelsGemini => {
                let body = gemini::gemini_model_list(crate::models::listed_names(&snapshot.aliases));
                self.respond_json(session, ctx, 200, body).await
            }
            Operation::GetModelGemini { model } => {
                let name = model.strip_prefix("models/").unwrap_or(&model);
                if crate::models::listed_names(&snapshot.aliases).any(|m| m == name) {
                    self.respond_json(session, ctx, 200, gemini::gemini_model(name)).await
                } else {
                    Err(ClientError::new(404, ErrorKind::NotFound, format!("model {name:?} is not found")))
                }
            }
            Operation::Unknown => {
                let req = session.req_header();
                Err(ClientError::new(
                    404,
                    ErrorKind::NotFound,
                    format!("no route for {} {}", req.method, req.uri.path()),
                ))
            }
            Operation::CountTokensGemini { model } => {
                self.count_tokens_gemini(session, ctx, snapshot, &model).await
            }
        }
    }

    /// Reads the whole request body, bounded by `limits.max_request_body` (413 beyond).
    async fn read_body(
        &self,
        session: &mut Session,
        limit: usize,
    ) -> std::result::Result<Vec<u8>, ClientError> {
        let too_large = || {
            ClientError::new(
                413,
                ErrorKind::PayloadTooLarge,
                format!("request body larger than the {limit}-byte limit (limits.max_request_body)"),
            )
        };
        let declared = session
            .req_header()
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > limit) {
            session.set_keepalive(None);
            return Err(too_large());
        }
        let expects_continue = session
            .req_header()
            .headers
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if expects_continue {
            // Without this, clients sending large prompts wait a second before sending the body.
            session.as_downstream_mut().set_close_on_response_before_downstream_finish(false);
            session.as_downstream_mut().write_continue_response().await.map_err(|e| {
                ClientError::new(400, ErrorKind::InvalidRequest, format!("cannot answer 100-continue: {e}"))
            })?;
        }
        let mut body = Vec::with_capacity(declared.unwrap_or(16 * 1024).min(limit));
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > limit {
                        session.set_keepalive(None);
                        return Err(too_large());
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(body),
                Err(e) => {
                    return Err(ClientError::new(
                        400,
                        ErrorKind::InvalidRequest,
                        format!("could not read the request body: {e}"),
                    ))
                }
            }
        }
    }

    async fn chat_completions(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        snapshot: &Arc<Snapshot>,
    ) -> std::result::Result<(), ClientError> {
        let mut body = self.read_body(session, snapshot.max_request_body).await?;
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
    async fn messages(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        snapshot: &Arc<Snapshot>,
    ) -> std::result::Result<(), ClientError> {
        let mut body = self.read_body(session, snapshot.max_request_body).await?;
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
    async fn count_tokens_anthropic(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        snapshot: &Arc<Snapshot>,
    ) -> std::result::Result<(), ClientError> {
        let mut body = self.read_body(session, snapshot.max_request_body).await?;
        let request = anthropic::parse_count_tokens_request(&mut body)?;
        ctx.client_model = Some(request.model().to_string());
        let body = anthropic::count_tokens_response(anthropic::estimate_tokens(&request));
        self.respond_json(session, ctx, 200, body).await
    }

    /// `POST /v1beta/models/{model}:generateContent` and `:streamGenerateContent` (Gemini SDKs and CLI).
    async fn generate_content(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        snapshot: &Arc<Snapshot>,
        model: &str,
        stream: bool,
    ) -> std::result::Result<(), ClientError> {
        let mut body = self.read_body(session, snapshot.max_request_body).await?;
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
    async fn count_tokens_gemini(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        snapshot: &Arc<Snapshot>,
        model: &str,
    ) -> std::result::Result<(), ClientError> {
        let mut body = self.read_body(session, snapshot.max_request_body).await?;
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
    fn resolve_model(
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
    fn session_id(
        &self,
        session: &Session,
        client_key: Option<&str>,
        first_user_text: Option<&str>,
    ) -> String {
        session_id(header(session, "x-session-id").or(client_key), first_user_text)
    }

    /// Runs the upstream exchange (leases, retries) and records what it did in the request's context.
    ///
    /// Raced against the client: if it leaves while we wait for the first byte (a long thinking pause, a
    /// queue for a busy account), the attempt is dropped at once, which closes the upstream connection.
    async fn open_upstream(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        call: &mut UpstreamCall<'_>,
    ) -> std::result::Result<(UpstreamResponse, Lease), ClientError> {
        let waited = Instant::now();
        let opening =
            exchange::open(&self.app, call.snapshot, call.upstream_model, call.inner, &mut call.attempts);
        let opened = tokio::select! {
            opened = opening => opened,
            _ = session.as_downstream_mut().read_body_or_idle(true) => {
                tracing::info!("client disconnected before the first byte; upstream attempt dropped");
                Err(ClientError::new(499, ErrorKind::InvalidRequest, "client closed the request"))
            }
        };
        ctx.note_attempts(&call.attempts, waited);
        opened
    }

    /// Answers with the protocol's stream machine, or its fold when the client did not ask to stream.
    ///
    /// An upstream 200 that ends before the machine has any output (no part at all, PROTOCOL.md §2) is not
    /// passed on while `pool.max_attempts` allows another attempt: the exchange moves to another account and
    /// a fresh machine reads its answer. The last attempt's answer is the client's, empty or not.
    #[allow(clippy::too_many_arguments)]
    async fn answer<O: Clone, S: Translator + 'static, F: Fold + 'static>(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        mut call: UpstreamCall<'_>,
        stream: bool,
        options: O,
        new_stream: fn(O) -> S,
        new_fold: fn(O) -> F,
    ) -> std::result::Result<(), ClientError> {
        loop {
            let (response, lease) = self.open_upstream(session, ctx, &mut call).await?;
            let account = lease.account.clone();
            let mut machine: Box<dyn Translator> = if stream {
                Box::new(new_stream(options.clone()))
            } else {
                Box::new(Folded::new(new_fold(options.clone())))
            };
            let (failure, pending) = match self.pump(session, ctx, response, lease, machine.as_mut()).await {
                Pumped::Ended { failure, pending } => (failure, pending),
                Pumped::ClientGone => return Ok(()),
            };
            let empty =
                failure.is_none() && ctx.status == 0 && pending.is_empty() && !machine.emitted_anything();
            if empty && call.attempts.may_retry(call.snapshot) {
                exchange::on_empty_answer(&self.app, &account, &call.attempts);
                continue;
            }
            let unwritten = ctx.status == 0 && pending.is_empty();
            let retryable = failure.as_ref().is_some_and(|e| e.status == 429 || e.status >= 500);
            if unwritten && retryable && call.attempts.may_retry(call.snapshot) {
                let status = failure.as_ref().map_or(502, |e| e.status);
                exchange::on_stream_error(&self.app, &account, &call.attempts, status);
                continue;
            }
            return self.close(session, ctx, machine.as_mut(), failure, pending).await;
        }
    }

    /// Reads the upstream answer through a translator, streaming its output to the client as it comes, and
    /// racing the client's disconnect. The closing events are [`close`](Self::close)'s, so the caller can
    /// still retry an answer that produced nothing.
    ///
    /// The response header is written only when the translator first has output, so an upstream error that
    /// arrives as the first event still becomes a proper error status. While upstream is silent (long
    /// thinking), keep-alives go out every [`KEEPALIVE_INTERVAL`] so proxies in front do not time out.
    async fn pump(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        mut response: UpstreamResponse,
        lease: Lease,
        machine: &mut dyn Translator,
    ) -> Pumped {
        let streaming = machine.streams();
        let mut framer = SseFramer::new(MAX_UPSTREAM_EVENT);
        let mut out = Vec::with_capacity(16 * 1024);
        let mut cut = false;
        let mut failure: Option<ClientError> = None;
        let mut next_keepalive = tokio::time::Instant::now() + KEEPALIVE_INTERVAL;
        loop {
            let read_started = Instant::now();
            let chunk = tokio::select! {
                chunk = response.read_chunk() => chunk,
                _ = session.as_downstream_mut().read_body_or_idle(true) => {
                    // The client left: stop paying for tokens nobody will read.
                    tracing::info!("client disconnected; cancelling the upstream request");
                    response.abort().await;
                    drop(lease);
                    ctx.status = 499;
                    return Pumped::ClientGone;
                }
                _ = tokio::time::sleep_until(next_keepalive), if streaming => {
                    next_keepalive = tokio::time::Instant::now() + KEEPALIVE_INTERVAL;
                    machine.keepalive(&mut out);
                    if !self.flush(session, ctx, machine.content_type(), &mut out).await {
                        response.abort().await;
                        return Pumped::ClientGone;
                    }
                    continue;
                }
            };
            ctx.upstream_wait += read_started.elapsed();
            match chunk {
                Ok(Some(bytes)) => {
                    if framer.push(&bytes).is_err() {
                        tracing::warn!("upstream event over the size limit; ending the stream");
                        cut = true;
                        break;
                    }
                    while let Some(mut event) = framer.next_event() {
                        if let Err(e) = machine.on_event(&mut event.data, &mut out) {
                            tracing::warn!(error = %e, "upstream stream error");
                            failure = Some(e.to_client_error());
                            cut = true;
                            break;
                        }
                    }
                    if cut {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "upstream stream broke");
                    cut = true;
                    break;
                }
            }
            if streaming && !out.is_empty() {
                next_keepalive = tokio::time::Instant::now() + KEEPALIVE_INTERVAL;
                if !self.flush(session, ctx, machine.content_type(), &mut out).await {
                    response.abort().await;
                    return Pumped::ClientGone;
                }
            }
        }
        if !cut {
            if let Some(mut event) = framer.finish() {
                if let Err(e) = machine.on_event(&mut event.data, &mut out) {
                    failure = Some(e.to_client_error());
                }
            }
        }
        if cut {
            response.abort().await;
        } else {
            response.release(&self.app.upstream).await;
        }
        drop(lease);
        signatures::remember(&self.app, machine.take_signatures());
        Pumped::Ended { failure, pending: out }
    }

    /// Ends the answer: an in-stream upstream error before any output becomes an error status; otherwise the
    /// machine's closing events go out (a `length` end when the upstream stopped without a finish reason).
    async fn close(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        machine: &mut dyn Translator,
        failure: Option<ClientError>,
        mut out: Vec<u8>,
    ) -> std::result::Result<(), ClientError> {
        if let Some(error) = failure {
            if ctx.status == 0 && out.is_empty() {
                // Nothing reached the client yet: answer with the upstream's error, translated.
                return Err(error);
            }
        }
        if !machine.finished_by_upstream() {
            ctx.truncated = true;
            self.app.metrics.stream_truncated(ctx.protocol.as_str());
        }
        ctx.usage = machine.usage();
        machine.finish(&mut out);
        if machine.streams() {
            self.flush(session, ctx, machine.content_type(), &mut out).await;
            let _ = session.write_response_body(None, true).await;
        } else {
            let content_type = machine.content_type();
            respond(session, ctx, 200, &[("Content-Type", content_type)], out).await;
        }
        Ok(())
    }

    /// Writes pending stream output, sending the response header first if it has not gone out yet.
    /// Returns false when the client is gone.
    async fn flush(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        content_type: &'static str,
        out: &mut Vec<u8>,
    ) -> bool {
        if out.is_empty() {
            return true;
        }
        if ctx.status == 0 {
            self.write_stream_header(session, ctx, content_type).await;
        }
        ctx.first_byte.get_or_insert_with(|| ctx.started.elapsed());
        let chunk = Bytes::copy_from_slice(out);
        out.clear();
        session.write_response_body(Some(chunk), false).await.is_ok()
    }

    async fn write_stream_header(&self, session: &mut Session, ctx: &mut RequestCtx, content_type: &str) {
        ctx.status = 200;
        ctx.stream = Some(self.app.metrics.stream_started());
        let Ok(mut header) = ResponseHeader::build(200, Some(5)) else { return };
        let _ = header.insert_header("Content-Type", content_type);
        let _ = header.insert_header("Cache-Control", "no-cache");
        let _ = header.insert_header("X-Accel-Buffering", "no");
        if !session.as_downstream().is_http2() {
            // Without it an HTTP/1.1 body would be close-delimited.
            let _ = header.insert_header("Transfer-Encoding", "chunked");
        }
        let _ = session.write_response_header(Box::new(header), false).await;
    }

    async fn respond_json(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        status: u16,
        body: Vec<u8>,
    ) -> std::result::Result<(), ClientError> {
        respond(session, ctx, status, &[("Content-Type", "application/json")], body).await;
        Ok(())
    }

    async fn respond_error(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        error: &ClientError,
    ) -> Result<()> {
        if error.status == 499 {
            // The client is gone; there is no one to answer.
            ctx.status = 499;
            return Ok(());
        }
        if ctx.status != 0 {
            // Headers already went out; the stream was ended in its own protocol.
            return Ok(());
        }
        if !session.as_downstream_mut().is_body_done() {
            // Refused before its body was read (a bad key, an oversize body): the connection cannot be reused.
            session.set_keepalive(None);
        }
        let body = error.render(ctx.protocol);
        let retry_after =
            (error.status == 429).then(|| ctx.retry_after.map_or(5, exchange::ceil_secs).to_string());
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(r) = retry_after.as_deref() {
            headers.push(("Retry-After", r));
        }
        respond(session, ctx, error.status, &headers, body).await;
        Ok(())
    }
}

/// Writes a complete, non-streaming response.
async fn respond(
    session: &mut Session,
    ctx: &mut RequestCtx,
    status: u16,
    headers: &[(&'static str, &str)],
    body: Vec<u8>,
) {
    ctx.status = status;
    let Ok(mut header) = ResponseHeader::build(status, Some(headers.len() + 1)) else { return };
    for (name, value) in headers {
        let _ = header.insert_header(*name, *value);
    }
    let _ = header.insert_header("Content-Length", body.len().to_string());
    if session.write_response_header(Box::new(header), false).await.is_ok() {
        let _ = session.write_response_body(Some(Bytes::from(body)), true).await;
    }
    ctx.first_byte.get_or_insert_with(|| ctx.started.elapsed());
}

/// One client request's upstream side: what is sent, and what its attempts did so far (across the retries
/// of an empty answer).
struct UpstreamCall<'a> {
    snapshot: &'a Arc<Snapshot>,
    upstream_model: &'a str,
    inner: &'a InnerRequest,
    attempts: Attempts,
}

impl<'a> UpstreamCall<'a> {
    fn new(
        snapshot: &'a Arc<Snapshot>,
        upstream_model: &'a str,
        session_id: &str,
        inner: &'a InnerRequest,
    ) -> Self {
        UpstreamCall { snapshot, upstream_model, inner, attempts: Attempts::for_session(session_id) }
    }
}

/// How the pump left one upstream answer.
enum Pumped {
    /// The upstream body ended, cleanly or cut, or with an in-stream error (`failure`). `pending` is output
    /// not written yet.
    Ended { failure: Option<ClientError>, pending: Vec<u8> },
    /// The client left or could not be written to: nothing more is owed to it.
    ClientGone,
}

/// Returns the name of the client's key, or a 401 in the client's protocol.
fn authenticate(
    snapshot: &Snapshot,
    route: &Route,
    presented: Option<&PresentedKey<'_>>,
) -> std::result::Result<Option<String>, ClientError> {
    if !route.requires_key() {
        return Ok(None);
    }
    let Some(presented) = presented else {
        return Err(ClientError::new(
            401,
            ErrorKind::Authentication,
            "no API key: send it as Authorization: Bearer, x-api-key, x-goog-api-key or ?key=",
        ));
    };
    match snapshot.api_keys.verify(&presented.key) {
        Some(name) => Ok(Some(name.to_string())),
        None => Err(ClientError::new(401, ErrorKind::Authentication, "invalid API key")),
    }
}

fn header<'a>(session: &'a Session, name: &str) -> Option<&'a str> {
    session.req_header().headers.get(name).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty())
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

fn operation_label(operation: &Operation) -> &'static str {
    match operation {
        Operation::ChatCompletions => "chat_completions",
        Operation::ListModels | Operation::ListModelsGemini => "list_models",
        Operation::GetModel { .. } | Operation::GetModelGemini { .. } => "get_model",
        Operation::Messages => "messages",
        Operation::CountTokensAnthropic | Operation::CountTokensGemini { .. } => "count_tokens",
        Operation::GenerateContent { .. } => "generate_content",
        Operation::Health => "health",
        Operation::Unknown => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_stable_signed_decimals() {
        let a = session_id(Some("conv-1"), Some("hello"));
        assert_eq!(a, session_id(Some("conv-1"), Some("other text")));
        assert_ne!(a, session_id(Some("conv-2"), None));
        assert_eq!(session_id(None, Some("hello")), session_id(None, Some("hello")));
        assert!(a.starts_with('-') && a[1..].parse::<i64>().is_ok(), "{a}");
    }
}
