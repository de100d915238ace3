//! The Pingora `ProxyHttp` implementation: the only place that knows the order of the filters.
//!
//! Pingora's own upstream path cannot carry our main routes (the account is decided by the body, prompts
//! exceed its 64 KiB replay buffer, and a 429 must be retried on another account after its status is seen),
//! so `request_filter` does the whole exchange: route, authenticate, read the body, transform, lease an
//! account, drive the upstream through `Upstream`, stream the rewritten answer, and return `Ok(true)`.
//!
//! The room: this file holds the hooks and the dispatch by route (`Gateway::serve`); `endpoints.rs` has one
//! method per client endpoint (parse, resolve the model, build the inner request); `exchange.rs` the retry
//! loop over accounts; `pump.rs` the upstream answer through the stream machine to the client; `respond.rs`
//! the body read and complete answers; `signatures.rs` thoughtSignature capture and lookup; `models.rs` the
//! model lists; `images.rs` the OpenAI Images endpoints; `ctx.rs` the per-request state; `edge.rs` the connection front door in front of Pingora
//! (limits, head deadline, keep-alive idle); `client_addr.rs` the client's address behind trusted proxies.

pub mod client_addr;
mod completions;
mod ctx;
pub mod edge;
mod endpoints;
pub mod exchange;
mod fallback;
mod images;
pub mod models;
mod pump;
mod reasoning_seal;
mod respond;
pub mod signatures;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use levitate_filters::auth::{presented_key_with_style, PresentedKey};
use levitate_filters::error::{ClientError, ErrorKind};
use levitate_filters::protocol::gemini;
use levitate_filters::route::{classify, Operation, Route};
use levitate_filters::Protocol;
use pingora_core::Result;
use pingora_proxy::{ProxyHttp, Session};

use self::ctx::RequestCtx;
use crate::app::App;
use crate::config::Snapshot;
use crate::ops::connections::{Connections, Kind, Refusal};

/// The client-facing service.
pub struct Gateway {
    app: Arc<App>,
    connections: Connections,
}

impl Gateway {
    pub fn new(app: Arc<App>) -> Self {
        Gateway { app, connections: Connections::new(None) }
    }

    /// Shares the connection counts of the client listener (see `edge.rs`), so requests are counted too.
    pub fn with_connections(mut self, connections: Connections) -> Self {
        self.connections = connections;
        self
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
            client_ip: None,
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
            permit: None,
            _active: self.app.metrics.request_started(),
            stream: None,
            session: None,
            shared_out: crate::shared::Outbox::default(),
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
        // A client that stops reading must not hold an account slot or a socket for ever (see pump.rs).
        session.set_write_timeout(Some(snapshot.limits.client_write_timeout));
        // A body upload that stalls this long ends with 408 (also set per HTTP/1 connection by edge.rs;
        // here it covers HTTP/2 streams and follows reloads).
        session.set_read_timeout(Some(snapshot.limits.body_read_timeout));
        let _stream_slot = match self.admit(session, ctx, &snapshot) {
            Ok(slot) => slot,
            Err(error) => {
                self.respond_error(session, ctx, &error).await?;
                return Ok(true);
            }
        };
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
        if crate::ops::upgrade::draining() {
            // Handing over to a new process: make the client's next request open a connection to it.
            session.set_keepalive(None);
        }
        Ok(())
    }

    async fn logging(&self, _session: &mut Session, _e: Option<&pingora_core::Error>, ctx: &mut RequestCtx) {
        let elapsed = ctx.started.elapsed();
        ctx.stream = None;
        // The line first: `record` then moves the request's strings into its request-log record.
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
        self.record(ctx, elapsed);
        signatures::share(&self.app, ctx);
    }
}

impl Gateway {
    /// Finds the client's address and takes a place for this request among the in-flight streams (each
    /// holds an upstream descriptor; HTTP/2 multiplexes many on one connection) and, for a client behind a
    /// trusted proxy, among its address's places: the proxy's connections are not counted per address.
    fn admit(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
        snapshot: &Snapshot,
    ) -> std::result::Result<crate::ops::connections::Slot, ClientError> {
        let trusted = &snapshot.server.trusted_proxies;
        let peer = session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip().to_canonical());
        let forwarded = peer.filter(|ip| client_addr::is_trusted(trusted, *ip)).and_then(|peer| {
            let headers = &session.req_header().headers;
            let cf = headers.get("cf-connecting-ip").and_then(|v| v.to_str().ok());
            let xff: Vec<&str> =
                headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
            Some(client_addr::client_ip(peer, trusted, cf, &xff)).filter(|client| *client != peer)
        });
        ctx.client_ip = forwarded.or(peer);
        let limits = &snapshot.limits;
        let max_total = self.connections.max_connections(limits.max_connections);
        self.connections
            .limiter
            .acquire(Some(Kind::Stream), max_total, forwarded, limits.max_connections_per_ip)
            .map_err(|refusal| {
                self.app.metrics.connection_refused("request", refusal.as_str());
                ctx.retry_after = Some(Duration::from_secs(1));
                match refusal {
                    Refusal::Total => ClientError::new(
                        503,
                        ErrorKind::Overloaded,
                        "the gateway is at its connection limit; retry shortly",
                    ),
                    Refusal::PerIp => ClientError::new(
                        429,
                        ErrorKind::RateLimit,
                        "too many concurrent requests from your address",
                    ),
                }
            })
    }

    /// Metrics and the request-log record of a finished request (metadata only, queued off the hot path).
    /// The last use of the request's context: its strings move into the record instead of being copied.
    fn record(&self, ctx: &mut RequestCtx, elapsed: Duration) {
        let metrics = &self.app.metrics;
        let upstream_model = ctx.upstream_model.as_deref().unwrap_or("-");
        metrics.observe_request(&crate::ops::metrics::RequestObservation {
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
        let key = ctx.key_name.as_deref().unwrap_or("-");
        if let Some(account) = ctx.account.as_deref() {
            let model = crate::tenancy::bounded_model(&self.app.snapshot().aliases, upstream_model);
            for (kind, count) in [
                ("in", usage.prompt),
                ("out", usage.candidates),
                ("thoughts", usage.thoughts),
                ("cached", usage.cached),
            ] {
                metrics.tokens(key, model, account, kind, count);
            }
        }
        self.record_usage(ctx, &usage);
        // Health probes (load balancers poll every few seconds) would crowd real requests out of the log.
        if ctx.operation == "health" {
            return;
        }
        let record = crate::ops::request_log::RequestRecord {
            at_ms: ctx.at_ms,
            key_name: ctx.key_name.take(),
            client_ip: ctx.client_ip.map(|ip| ip.to_string()),
            protocol: ctx.protocol.as_str().to_string(),
            route: ctx.operation.to_string(),
            client_model: ctx.client_model.take(),
            upstream_model: ctx.upstream_model.take(),
            account: ctx.account.take(),
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

    /// Settles the key's permit with the tokens the upstream reported and adds the request to its usage row
    /// (health probes left out, like in the request log).
    fn record_usage(&self, ctx: &mut RequestCtx, usage: &levitate_filters::stream::Usage) {
        if ctx.operation == "health" {
            return;
        }
        let finished = crate::tenancy::Finished {
            key: ctx.key_name.as_deref(),
            client_model: ctx.client_model.as_deref(),
            upstream_model: ctx.upstream_model.as_deref(),
            account: ctx.account.as_deref(),
            status: ctx.status,
            attempts: ctx.attempts,
            ttfb_ms: ctx.first_byte.map(|d| d.as_millis() as u64),
            input_tokens: usage.prompt,
            output_tokens: usage.candidates,
            thinking_tokens: usage.thoughts,
            cached_tokens: usage.cached,
        };
        self.app.tenancy.finish(ctx.permit.take(), &finished, crate::store::unix_now_ms());
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
                let served = crate::gateway::models::Served::of(&self.app, snapshot);
                let body = crate::gateway::models::openai_list(&snapshot.aliases, &served);
                self.respond_json(session, ctx, 200, body).await
            }
            Operation::GetModel { model } => {
                let served = crate::gateway::models::Served::of(&self.app, snapshot);
                match crate::gateway::models::openai_model(&snapshot.aliases, &served, &model) {
                    Some(body) => self.respond_json(session, ctx, 200, body).await,
                    None => Err(ClientError::new(
                        404,
                        ErrorKind::NotFound,
                        format!("model {model:?} does not exist"),
                    )),
                }
            }
            Operation::ChatCompletions => self.chat_completions(session, ctx, snapshot).await,
            Operation::Completions => self.completions(session, ctx, snapshot).await,
            Operation::Messages => self.messages(session, ctx, snapshot).await,
            Operation::ImagesGenerations => self.images(session, ctx, snapshot, false).await,
            Operation::ImagesEdits => self.images(session, ctx, snapshot, true).await,
            Operation::Responses => self.responses(session, ctx, snapshot).await,
            Operation::ResponsesInputTokens => self.responses_input_tokens(session, ctx, snapshot).await,
            Operation::ResponsesUnsupported => Err(ClientError::new(
                404,
                ErrorKind::NotFound,
                format!(
                    "{} {} is not served: Levitate keeps no responses (compaction, retrieval and deletion need \
                     them); POST /v1/responses with the whole conversation instead",
                    session.req_header().method,
                    session.req_header().uri.path()
                ),
            )),
            Operation::CountTokensAnthropic => self.count_tokens_anthropic(session, ctx, snapshot).await,
            Operation::GenerateContent { model, stream } => {
                self.generate_content(session, ctx, snapshot, &model, stream).await
            }
            Operation::ListModelsGemini => {
                let served = crate::gateway::models::Served::of(&self.app, snapshot);
                let body =
                    gemini::gemini_model_list(crate::gateway::models::listed_names(&snapshot.aliases, &served));
                self.respond_json(session, ctx, 200, body).await
            }
            Operation::GetModelGemini { model } => {
                let name = model.strip_prefix("models/").unwrap_or(&model);
                let served = crate::gateway::models::Served::of(&self.app, snapshot);
                if crate::gateway::models::listed_names(&snapshot.aliases, &served).any(|m| m == name) {
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
        Some(name) => {
            // A disabled or expired key is refused on every route (403), not only where limits count.
            let now = crate::store::unix_now() as i64;
            snapshot.tenancy.check_key(name, now).map_err(|refusal| refusal.client_error())?;
            Ok(Some(name.to_string()))
        }
        None => Err(ClientError::new(401, ErrorKind::Authentication, "invalid API key")),
    }
}

fn header<'a>(session: &'a Session, name: &str) -> Option<&'a str> {
    session.req_header().headers.get(name).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty())
}

fn operation_label(operation: &Operation) -> &'static str {
    match operation {
        Operation::ChatCompletions => "chat_completions",
        Operation::Completions => "completions",
        Operation::ListModels | Operation::ListModelsGemini => "list_models",
        Operation::GetModel { .. } | Operation::GetModelGemini { .. } => "get_model",
        Operation::Messages => "messages",
        Operation::Responses => "responses",
        Operation::ResponsesInputTokens => "count_tokens",
        Operation::ResponsesUnsupported => "unknown",
        Operation::CountTokensAnthropic | Operation::CountTokensGemini { .. } => "count_tokens",
        Operation::GenerateContent { .. } => "generate_content",
        Operation::ImagesGenerations => "images_generations",
        Operation::ImagesEdits => "images_edits",
        Operation::Health => "health",
        Operation::Unknown => "unknown",
    }
}
