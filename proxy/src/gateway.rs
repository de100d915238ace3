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
use levitate_filters::auth::presented_key_with_style;
use levitate_filters::error::{ClientError, ErrorKind};
use levitate_filters::route::{classify, Operation, Route};
use levitate_filters::signature::{CapturedSignature, SignatureLookup};
use levitate_filters::sse::SseFramer;
use levitate_filters::stream::openai::{OpenAiFold, OpenAiStream, OpenAiStreamOptions};
use levitate_filters::stream::StreamError;
use levitate_filters::transform::openai::{build_inner_request, parse_chat_request, ChatRequest};
use levitate_filters::transform::Target;
use levitate_filters::Protocol;
use pingora_core::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::{ProxyHttp, Session};
use sha2::{Digest, Sha256};

use crate::app::App;
use crate::config::Snapshot;
use crate::exchange::{self, Attempts};
use crate::pool::Lease;
use crate::upstream::UpstreamResponse;

/// Largest single SSE event accepted from upstream (a big inline image can be several MiB).
const MAX_UPSTREAM_EVENT: usize = 32 * 1024 * 1024;
/// How long upstream may be silent before the client gets a keep-alive.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// How long captured thoughtSignatures stay usable.
pub const SIGNATURE_TTL: Duration = Duration::from_secs(2 * 60 * 60);

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
        let route = self.route(session);
        ctx.protocol = route.protocol;
        ctx.operation = operation_label(&route.operation);
        let outcome = match self.authenticate(session, &snapshot, &route) {
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

    async fn logging(&self, _session: &mut Session, _e: Option<&pingora_core::Error>, ctx: &mut RequestCtx) {
        let elapsed = ctx.started.elapsed();
        self.app.metrics.observe_request(ctx.protocol.as_str(), ctx.operation, ctx.status, elapsed);
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
    fn route(&self, session: &Session) -> Route {
        let req = session.req_header();
        let style = presented_key_with_style(&req.headers, req.uri.query()).map(|k| k.style);
        classify(req.method.as_str(), req.uri.path(), style)
    }

    /// Returns the name of the client's key, or a 401 in the client's protocol.
    fn authenticate(
        &self,
        session: &Session,
        snapshot: &Snapshot,
        route: &Route,
    ) -> std::result::Result<Option<String>, ClientError> {
        if !route.requires_key() {
            return Ok(None);
        }
        let req = session.req_header();
        let Some(presented) = presented_key_with_style(&req.headers, req.uri.query()) else {
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
            Operation::Unknown => {
                let req = session.req_header();
                Err(ClientError::new(
                    404,
                    ErrorKind::NotFound,
                    format!("no route for {} {}", req.method, req.uri.path()),
                ))
            }
            _ => Err(ClientError::new(
                404,
                ErrorKind::NotFound,
                "this API is not served by this Levitate build yet",
            )),
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
        let request: ChatRequest = parse_chat_request(&mut body)?;
        drop(body);
        ctx.client_model = Some(request.model().to_string());
        let upstream_model =
            snapshot.aliases.resolve(request.model()).map(|r| r.upstream.to_string()).ok_or_else(|| {
                ClientError::new(
                    404,
                    ErrorKind::NotFound,
                    format!("the model {:?} does not exist and routes.yaml has no default", request.model()),
                )
                .with_param("model")
            })?;
        ctx.upstream_model = Some(upstream_model.clone());
        let session_id =
            session_id(header(session, "x-session-id").or(request.session_hint()), request.first_user_text());
        let signatures = StoredSignatures(&self.app);
        let inner = build_inner_request(
            &request,
            &Target { upstream_model: &upstream_model, session_id: &session_id },
            &signatures,
        )?;

        let mut attempts = Attempts::default();
        let opened = exchange::open(&self.app, snapshot, &upstream_model, &inner.json, &mut attempts).await;
        ctx.attempts = attempts.count;
        ctx.account = attempts.last_account;
        let (response, lease) = opened?;
        let request_uuid = uuid::Uuid::new_v4().simple().to_string();
        let options = OpenAiStreamOptions {
            id: format!("chatcmpl-{request_uuid}"),
            model: request.model().to_string(),
            created: crate::store::unix_now(),
            include_usage: request.include_usage(),
            tool_call_id_prefix: format!("call_{}_", &request_uuid[..16]),
            tool_names: inner.tool_names.clone(),
        };
        if request.stream() {
            let mut machine = OpenAiStream::new(options);
            self.pump(session, ctx, response, lease, &mut machine, true).await
        } else {
            let mut machine = FoldAdapter(Some(OpenAiFold::new(options)));
            self.pump(session, ctx, response, lease, &mut machine, false).await
        }
    }

    /// Streams the upstream answer through a translator to the client, racing the client's disconnect.
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
        streaming: bool,
    ) -> std::result::Result<(), ClientError> {
        let mut framer = SseFramer::new(MAX_UPSTREAM_EVENT);
        let mut out = Vec::with_capacity(16 * 1024);
        let mut cut = false;
        let mut failure: Option<ClientError> = None;
        let mut next_keepalive = tokio::time::Instant::now() + KEEPALIVE_INTERVAL;
        loop {
            let chunk = tokio::select! {
                chunk = response.read_chunk() => chunk,
                _ = session.as_downstream_mut().read_body_or_idle(true) => {
                    // The client left: stop paying for tokens nobody will read.
                    tracing::info!("client disconnected; cancelling the upstream request");
                    response.abort().await;
                    drop(lease);
                    ctx.status = 499;
                    return Ok(());
                }
                _ = tokio::time::sleep_until(next_keepalive), if streaming => {
                    next_keepalive = tokio::time::Instant::now() + KEEPALIVE_INTERVAL;
                    machine.keepalive(&mut out);
                    if !self.flush(session, ctx, machine.content_type(), &mut out).await {
                        response.abort().await;
                        return Ok(());
                    }
                    continue;
                }
            };
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
                            failure = Some(stream_error_to_client(e));
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
                    return Ok(());
                }
            }
        }
        if !cut {
            if let Some(mut event) = framer.finish() {
                if let Err(e) = machine.on_event(&mut event.data, &mut out) {
                    failure = Some(stream_error_to_client(e));
                }
            }
        }
        if cut {
            response.abort().await;
        } else {
            response.release(&self.app.upstream).await;
        }
        drop(lease);
        self.remember_signatures(machine.take_signatures());
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
        machine.finish(&mut out);
        if streaming {
            self.flush(session, ctx, machine.content_type(), &mut out).await;
            let _ = session.write_response_body(None, true).await;
            Ok(())
        } else {
            let content_type = machine.content_type();
            respond(session, ctx, 200, &[("Content-Type", content_type)], out).await;
            Ok(())
        }
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

    fn remember_signatures(&self, captured: Vec<CapturedSignature>) {
        for c in captured {
            if let Err(e) = self.app.store.put_signature(&c.tool_call_id, &c.signature) {
                tracing::warn!(error = %e, "could not store a thoughtSignature");
            }
        }
    }

    async fn write_stream_header(&self, session: &mut Session, ctx: &mut RequestCtx, content_type: &str) {
        ctx.status = 200;
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
        if ctx.status != 0 {
            // Headers already went out; the stream was ended in its own protocol.
            return Ok(());
        }
        let body = error.render(ctx.protocol);
        let retry_after = (error.status == 429).then(|| "5".to_string());
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

/// The stream machines of every protocol, as the pump drives them.
pub trait Translator: Send {
    fn on_event(&mut self, data: &mut [u8], out: &mut Vec<u8>) -> std::result::Result<(), StreamError>;
    /// The upstream ended; write the closing events.
    fn finish(&mut self, out: &mut Vec<u8>);
    /// Upstream has been silent for a while; write whatever keeps the client's connection alive.
    fn keepalive(&mut self, _out: &mut Vec<u8>) {}
    fn take_signatures(&mut self) -> Vec<CapturedSignature>;
    fn finished_by_upstream(&self) -> bool;
    fn content_type(&self) -> &'static str {
        "text/event-stream"
    }
}

impl Translator for OpenAiStream {
    fn on_event(&mut self, data: &mut [u8], out: &mut Vec<u8>) -> std::result::Result<(), StreamError> {
        OpenAiStream::on_event(self, data, out)
    }
    fn finish(&mut self, out: &mut Vec<u8>) {
        OpenAiStream::finish(self, out)
    }
    fn keepalive(&mut self, out: &mut Vec<u8>) {
        // An SSE comment: every OpenAI client's parser skips it.
        out.extend_from_slice(b": keep-alive\n\n");
    }
    fn take_signatures(&mut self) -> Vec<CapturedSignature> {
        OpenAiStream::take_signatures(self)
    }
    fn finished_by_upstream(&self) -> bool {
        OpenAiStream::finished_by_upstream(self)
    }
}

/// Drives a fold (non-streaming answer) through the same pump; it writes only at the end.
struct FoldAdapter(Option<OpenAiFold>);

impl Translator for FoldAdapter {
    fn on_event(&mut self, data: &mut [u8], _out: &mut Vec<u8>) -> std::result::Result<(), StreamError> {
        match &mut self.0 {
            Some(fold) => fold.on_event(data),
            None => Ok(()),
        }
    }
    fn finish(&mut self, out: &mut Vec<u8>) {
        if let Some(fold) = self.0.take() {
            out.extend_from_slice(&fold.finish());
        }
    }
    fn take_signatures(&mut self) -> Vec<CapturedSignature> {
        self.0.as_mut().map(|f| f.take_signatures()).unwrap_or_default()
    }
    fn finished_by_upstream(&self) -> bool {
        self.0.as_ref().is_none_or(|f| f.finished_by_upstream())
    }
    fn content_type(&self) -> &'static str {
        "application/json"
    }
}

/// An error inside an upstream stream, as the client should see it.
fn stream_error_to_client(error: StreamError) -> ClientError {
    match error {
        StreamError::Upstream { status, message, .. } => {
            let body = serde_json::json!({"error": {"code": status, "message": message}});
            ClientError::from_upstream(status, body.to_string().as_bytes())
        }
        other => {
            ClientError::new(502, ErrorKind::Api, format!("the upstream sent an unreadable stream: {other}"))
        }
    }
}

/// Looks signatures up in the store, for the transforms.
struct StoredSignatures<'a>(&'a App);

impl SignatureLookup for StoredSignatures<'_> {
    fn signature_for_tool_call(&self, tool_call_id: &str) -> Option<String> {
        self.0.store.signature(tool_call_id, SIGNATURE_TTL).ok().flatten()
    }
}

fn header<'a>(session: &'a Session, name: &str) -> Option<&'a str> {
    session.req_header().headers.get(name).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty())
}

/// `request.sessionId`: a stable signed-decimal id per conversation (PROTOCOL.md §11), from the client's
/// own session key when it sends one, else from the first user message, else random.
fn session_id(client_key: Option<&str>, first_user_text: Option<&str>) -> String {
    let seed = match (client_key, first_user_text) {
        (Some(key), _) => format!("key:{key}"),
        (None, Some(text)) => format!("text:{text}"),
        (None, None) => uuid::Uuid::new_v4().to_string(),
    };
    let digest = Sha256::digest(seed.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    format!("-{}", u64::from_be_bytes(first) & (i64::MAX as u64))
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
