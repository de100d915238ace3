//! The HTTP front: accepts HTTP/1.1 and h2c on one listener, routes Google's paths (`/token`,
//! `/v1internal:{method}`, userinfo) and the sim's own `/_sim/*` control endpoints, and turns every outcome
//! into a response with Google's headers (`Server: ESF`, `X-Cloudaicompanion-Trace-Id`, `Server-Timing`).
//! The content path runs auth → envelope → faults → validation → quota → answer, in that order.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::Rng;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::accounts::{hex, Account, Accounts};
use crate::answer::{self, Chunk, Usage};
use crate::body::{sse_event, SimBody};
use crate::codeassist;
use crate::config::{SimConfig, UsageMode};
use crate::error::ApiError;
use crate::faults::{self, FaultKind, FaultRule, FaultSet};
use crate::grounding;
use crate::ids::ResponseIds;
use crate::image;
use crate::oauth;
use crate::prompt::{content_chars, estimate_tokens, Prompt};
use crate::public_api;
use crate::signature::Signer;
use crate::stats::{Call, InFlight, Stats};
use crate::validate;

/// Largest request body accepted (Claude Code prompts reach a few MiB).
const MAX_BODY: usize = 64 * 1024 * 1024;

const JSON: &str = "application/json; charset=UTF-8";
const SSE: &str = "text/event-stream";

/// Everything a request handler needs, shared by all connections.
#[derive(Debug)]
pub struct SimState {
    pub config: SimConfig,
    pub accounts: Accounts,
    pub stats: Stats,
    /// The one "account" behind the public Gemini API (an API key, not an OAuth account).
    pub public: Arc<Account>,
    faults: RwLock<Arc<FaultSet>>,
    signer: Signer,
}

impl SimState {
    pub fn new(config: SimConfig) -> SimState {
        SimState {
            accounts: Accounts::new(&config.accounts, config.token_expires_in),
            stats: Stats::new(config.recent_requests),
            public: public_api::account(),
            faults: RwLock::new(Arc::new(FaultSet::new(config.faults.clone()))),
            signer: Signer::new(&config.signature_secret),
            config,
        }
    }

    /// Replaces the fault set (validating every rule first).
    pub fn set_faults(&self, rules: Vec<FaultRule>) -> Result<(), String> {
        for r in &rules {
            r.validate()?;
        }
        *self.faults.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(FaultSet::new(rules));
        Ok(())
    }

    /// Removes every fault and the exhaustion faults left on accounts.
    pub fn clear_faults(&self) {
        *self.faults.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(FaultSet::default());
        for a in self.accounts.all() {
            a.clear_exhaustion();
        }
    }

    fn faults(&self) -> Arc<FaultSet> {
        self.faults.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Accepts connections until `shutdown` flips; each connection is dropped on shutdown too.
pub async fn serve(listener: TcpListener, state: Arc<SimState>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let Ok((stream, peer)) = accepted else {
            // Out of descriptors or a reset during accept: keep serving the others.
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let peer = peer.ip();
        state.stats.connection(peer);
        let state = state.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            // Each request runs in its peer's scope (h2 streams may run on other tasks), so the stats can
            // say which source address carried which account's calls.
            let h2_seen = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                state.stats.peer_request(peer, req.version());
                if req.version() == hyper::Version::HTTP_2
                    && !h2_seen.swap(true, std::sync::atomic::Ordering::Relaxed)
                {
                    state.stats.h2_connection();
                }
                crate::stats::PEER.scope(peer, handle(state.clone(), req))
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = shutdown.changed() => {}
            }
        });
    }
}

/// A finished response with Google's headers.
struct Reply {
    status: u16,
    content_type: &'static str,
    body: SimBody,
    trace_id: Option<String>,
}

impl Reply {
    fn json(status: u16, v: &Value) -> Reply {
        Reply { status, content_type: JSON, body: SimBody::full(v.to_string()), trace_id: None }
    }

    fn error(e: &ApiError) -> Reply {
        Reply { status: e.code(), content_type: JSON, body: SimBody::full(e.to_wire()), trace_id: None }
    }
}

async fn handle(state: Arc<SimState>, req: Request<Incoming>) -> Result<Response<SimBody>, Infallible> {
    let started = Instant::now();
    let reply = route(&state, req).await;
    let mut resp = Response::new(reply.body);
    *resp.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(reply.content_type));
    h.insert("server", HeaderValue::from_static("ESF"));
    h.insert("vary", HeaderValue::from_static("Origin, X-Origin, Referer"));
    if let Ok(v) = HeaderValue::from_str(&format!("gfet4t7; dur={}", started.elapsed().as_millis())) {
        h.insert("server-timing", v);
    }
    if let Some(t) = reply.trace_id.and_then(|t| HeaderValue::from_str(&t).ok()) {
        h.insert("x-cloudaicompanion-trace-id", t);
    }
    Ok(resp)
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    Limited::new(req.into_body(), MAX_BODY).collect().await.map(|c| c.to_bytes()).map_err(|_| {
        ApiError::InvalidArgument(format!("Request payload size exceeds the limit: {MAX_BODY} bytes."))
    })
}

fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::InvalidArgument(format!(
            "Invalid JSON payload received. Unexpected token.\n{}",
            e.to_string().chars().take(200).collect::<String>()
        ))
    })
}

async fn route(state: &Arc<SimState>, req: Request<Incoming>) -> Reply {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    if let Some(rpc) = path.split_once("/v1internal:").map(|(_, m)| m.to_string()) {
        if method != Method::POST {
            return Reply::error(&ApiError::NotFound(format!("Method not found: {rpc}")));
        }
        return v1internal(state, &rpc, req).await;
    }
    match (method, path.as_str()) {
        (Method::POST, p) if p.ends_with("/token") => token(state, req).await,
        (Method::POST, p) if p.starts_with("/v1beta/models/") => public_api(state, req).await,
        (Method::GET, p) if p.ends_with("/userinfo") => {
            let auth = header(&req, "authorization");
            match state.accounts.authenticate(auth.as_deref()) {
                Ok(a) => Reply::json(200, &oauth::userinfo(&a)),
                Err(e) => Reply::error(&e),
            }
        }
        (Method::GET, "/_sim/health") | (Method::GET, "/healthz") => {
            Reply::json(200, &json!({"status": "ok"}))
        }
        (Method::GET, "/_sim/stats") => Reply::json(200, &state.stats.snapshot()),
        (Method::POST, "/_sim/stats/reset") => {
            state.stats.reset();
            Reply::json(200, &json!({"reset": true}))
        }
        (Method::GET, "/_sim/faults") => Reply::json(200, &json!({"faults": state.faults().snapshot()})),
        (Method::DELETE, "/_sim/faults") => {
            state.clear_faults();
            Reply::json(200, &json!({"faults": []}))
        }
        (Method::POST, "/_sim/faults") => set_faults(state, req).await,
        _ => Reply::error(&ApiError::NotFound(format!(
            "The requested URL {path} was not found on this server."
        ))),
    }
}

fn header(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.headers().get(name).and_then(|v| v.to_str().ok()).map(String::from)
}

async fn token(state: &Arc<SimState>, req: Request<Incoming>) -> Reply {
    let content_type = header(&req, "content-type");
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(e) => return Reply::error(&e),
    };
    match oauth::token(&state.accounts, content_type.as_deref(), &body) {
        Ok(grant) => {
            state.stats.call(&grant.account.email, Call::TokenRefresh);
            Reply::json(200, &grant.body)
        }
        Err(e) => Reply::json(e.status(), &e.body()),
    }
}

async fn set_faults(state: &Arc<SimState>, req: Request<Incoming>) -> Reply {
    let parsed = read_body(req).await.and_then(|b| parse_json(&b));
    let value = match parsed {
        Ok(v) => v,
        Err(e) => return Reply::error(&e),
    };
    let list = value.get("faults").cloned().unwrap_or(value);
    let rules: Result<Vec<FaultRule>, String> = serde_json::from_value(list).map_err(|e| e.to_string());
    match rules.and_then(|r| state.set_faults(r)) {
        Ok(()) => Reply::json(200, &json!({"faults": state.faults().snapshot()})),
        Err(e) => Reply::error(&ApiError::InvalidArgument(e)),
    }
}

/// The public Gemini API (`public_api`): the content path in its bare shape, behind an API key.
async fn public_api(state: &Arc<SimState>, req: Request<Incoming>) -> Reply {
    let trace_id = hex(&rand::thread_rng().gen::<[u8; 8]>());
    let query = req.uri().query().unwrap_or("").to_string();
    let checked = public_api::method(req.uri().path(), &query).and_then(|call| {
        let key = header(&req, "x-goog-api-key");
        public_api::check_key(key.as_deref(), &query, state.config.public_api_key.as_deref()).map(|()| call)
    });
    let (model, streaming) = match checked {
        Ok(call) => call,
        Err(e) => return Reply::error(&e),
    };
    let headers = req.headers().clone();
    let body =
        read_body(req).await.and_then(|b| parse_json(&b)).and_then(|b| public_api::envelope(&model, b));
    let body = match body {
        Ok(v) => v,
        Err(e) => return Reply::error(&e),
    };
    let mut reply = content(state, &state.public, &headers, body, (streaming, true), &trace_id).await;
    reply.content_type = if streaming && reply.status == 200 { SSE } else { reply.content_type };
    reply.trace_id = Some(trace_id);
    reply
}

async fn v1internal(state: &Arc<SimState>, rpc: &str, req: Request<Incoming>) -> Reply {
    let streaming = rpc == "streamGenerateContent";
    let trace_id = hex(&rand::thread_rng().gen::<[u8; 8]>());
    let mut reply = v1internal_inner(state, rpc, streaming, req, &trace_id).await;
    reply.trace_id = Some(trace_id);
    // Google sends text/event-stream even on errors of SSE calls (PROTOCOL §1).
    if streaming {
        reply.content_type = SSE;
    }
    reply
}

async fn v1internal_inner(
    state: &Arc<SimState>,
    method: &str,
    streaming: bool,
    req: Request<Incoming>,
    trace_id: &str,
) -> Reply {
    let auth = header(&req, "authorization");
    let account = match state.accounts.authenticate(auth.as_deref()) {
        Ok(a) => a,
        Err(e) => return Reply::error(&e),
    };
    let headers = req.headers().clone();
    let body = match read_body(req).await.and_then(|b| parse_json(&b)) {
        Ok(v) => v,
        Err(e) => return Reply::error(&e),
    };
    let email = account.email.as_str();
    let result = match method {
        "loadCodeAssist" => {
            state.stats.call(email, Call::LoadCodeAssist);
            codeassist::check_metadata(&body).map(|_| codeassist::load_code_assist(&account))
        }
        "onboardUser" => {
            state.stats.call(email, Call::OnboardUser);
            codeassist::check_metadata(&body)
                .and_then(|_| codeassist::onboard_user(&account, &body, state.config.onboard_polls))
        }
        "fetchAvailableModels" => {
            state.stats.call(email, Call::FetchAvailableModels);
            codeassist::check_quota_access(&account)
                .and_then(|_| codeassist::check_project(&account, &body))
                .map(|_| {
                    let served = account.served(&state.config.models);
                    codeassist::fetch_available_models(&account, &served, &state.config.quota)
                })
        }
        "retrieveUserQuota" => {
            state.stats.call(email, Call::RetrieveUserQuota);
            codeassist::check_project(&account, &body)
                .map(|_| codeassist::retrieve_user_quota(&account, &state.config.models, &state.config.quota))
        }
        "retrieveUserQuotaSummary" => {
            state.stats.call(email, Call::RetrieveUserQuota);
            Ok(codeassist::retrieve_user_quota_summary(&account, &state.config.models, &state.config.quota))
        }
        "countTokens" => {
            state.stats.call(email, Call::CountTokens);
            count_tokens(&body, &state.config.models)
        }
        "generateContent" | "streamGenerateContent" => {
            return content(state, &account, &headers, body, (streaming, false), trace_id).await;
        }
        other => Err(ApiError::NotFound(format!("Method not found: {other}"))),
    };
    match result {
        Ok(v) => Reply::json(200, &v),
        Err(e) => Reply::error(&e),
    }
}

fn count_tokens(body: &Value, models: &[String]) -> Result<Value, ApiError> {
    validate::count_tokens(body, models)?;
    let request = &body["request"];
    let chars: usize = request["contents"].as_array().map(|c| c.iter().map(content_chars).sum()).unwrap_or(0)
        + request.get("systemInstruction").map(content_chars).unwrap_or(0)
        + request.get("tools").map(|t| t.to_string().len()).unwrap_or(0);
    Ok(json!({ "totalTokens": estimate_tokens(chars) }))
}

/// The recent-request record: envelope metadata and headers, never content.
fn request_meta(account: &Account, headers: &hyper::HeaderMap, body: &Value, streaming: bool) -> Value {
    let s = |k: &str| body.get(k).cloned().unwrap_or(Value::Null);
    let hs: serde_json::Map<String, Value> = headers
        .iter()
        .filter(|(k, _)| k.as_str() != "authorization")
        .map(|(k, v)| (k.as_str().to_string(), json!(v.to_str().unwrap_or(""))))
        .collect();
    let request = body.get("request");
    json!({
        "account": account.email,
        "stream": streaming,
        "model": s("model"),
        "project": s("project"),
        "requestId": s("requestId"),
        "userAgent": s("userAgent"),
        "requestType": s("requestType"),
        "enabledCreditTypes": s("enabledCreditTypes"),
        "sessionId": request.and_then(|r| crate::prompt::field(r, "sessionId", "session_id")).cloned().unwrap_or(Value::Null),
        // Which generation settings were sent (names only), so tests can check what reached an image model.
        "generationConfigKeys": request
            .and_then(|r| crate::prompt::field(r, "generationConfig", "generation_config"))
            .and_then(Value::as_object)
            .map(|g| g.keys().cloned().collect::<Vec<_>>()),
        "user_agent": headers.get("user-agent").and_then(|v| v.to_str().ok()),
        "headers": hs,
        "at": crate::wire_time::rfc3339(SystemTime::now()),
    })
}

/// Whether the `antigravity/<ver>` user agent is older than the floor.
fn below_version_floor(user_agent: Option<&str>, floor: &str) -> bool {
    let parse = |v: &str| -> Vec<u64> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    let Some(ua) = user_agent else {
        return false;
    };
    let lower = ua.to_ascii_lowercase();
    let Some(rest) = lower.split("antigravity/").nth(1) else {
        return false;
    };
    let rest = rest.strip_prefix("hub/").unwrap_or(rest);
    let version: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    !version.is_empty() && parse(&version) < parse(floor)
}

/// A content call; `bare` answers in the public Gemini API's shape (no `v1internal` wrapper).
async fn content(
    state: &Arc<SimState>,
    account: &Arc<Account>,
    headers: &hyper::HeaderMap,
    body: Value,
    (streaming, bare): (bool, bool),
    trace_id: &str,
) -> Reply {
    let model_name = body.get("model").and_then(Value::as_str).unwrap_or("").to_string();
    let slot = state.stats.begin(&account.email, &model_name);
    let mut meta = request_meta(account, headers, &body, streaming);
    meta["replayed_signatures"] = crate::replay::replayed_signatures(&body, &state.signer);
    state.stats.remember(meta);
    let reply = content_reply(state, account, headers, &body, (streaming, bare), trace_id, slot).await;
    state.stats.status(&account.email, &model_name, reply.status);
    reply
}

#[allow(clippy::too_many_arguments)]
async fn content_reply(
    state: &Arc<SimState>,
    account: &Arc<Account>,
    headers: &hyper::HeaderMap,
    body: &Value,
    (streaming, bare): (bool, bool),
    trace_id: &str,
    slot: InFlight,
) -> Reply {
    let config = &state.config;
    let envelope = match validate::envelope(body, &config.models, account.project()) {
        Ok(e) => e,
        Err(e) => return Reply::error(&e),
    };
    let model = envelope.model.as_str();
    // A model the sim serves but this account may not call: Google answers as for an unknown model.
    if !account.serves(model) {
        return Reply::error(&ApiError::NotFound("Requested entity was not found.".into()));
    }
    let request = body.get("request");
    let prompt = Prompt::read(model, request.unwrap_or(&Value::Null));

    let decision = state.faults().decide(&account.selectors(), model, prompt.markers.fault_rule());
    let first_byte = Duration::from_millis(config.latency.first_byte_ms) + decision.first_byte_delay;
    if !first_byte.is_zero() {
        tokio::time::sleep(first_byte).await;
    }
    let now = SystemTime::now();
    let outcome = decision.outcome.as_ref();
    if let Some(rule) = outcome {
        if let Some(err) = rule.error(model, now, account.project().unwrap_or_default()) {
            if rule.kind == FaultKind::QuotaExhausted {
                account.mark_exhausted(model, now + rule.delay(), rule.sticky, &config.quota, now);
            }
            return Reply::error(&err);
        }
    }
    let validated = validate::request(request, model, &state.signer, prompt.prompt_tokens)
        .and_then(|()| image::validate(body, request, model));
    if let Err(e) = validated {
        return Reply::error(&e);
    }
    let search = match grounding::check(request, model) {
        Ok(search) => search,
        Err(e) => return Reply::error(&e),
    };
    if let Err(reset) = account.use_quota(model, &config.quota, now) {
        return Reply::error(&faults::quota_exhausted(model, now, reset));
    }

    let user_agent = headers.get("user-agent").and_then(|v| v.to_str().ok());
    let gated = outcome.is_some_and(|r| r.kind == FaultKind::VersionGate)
        || config.version_floor.as_deref().is_some_and(|floor| below_version_floor(user_agent, floor));
    let cached = account.cached_prefix(&prompt.prefixes);
    let cached = if cached >= config.cache_min_tokens { cached } else { 0 };
    let chunks = if gated {
        answer::version_gate()
    } else if outcome.is_some_and(|r| r.kind == FaultKind::ModelVersionGate) {
        answer::model_version_gate(model)
    } else if outcome.is_some_and(|r| r.kind == FaultKind::EmptyResponse) {
        vec![Chunk {
            parts: vec![],
            finish_reason: None,
            usage: Usage { prompt: prompt.prompt_tokens, ..Usage::default() },
        }]
    } else if image::is_image_model(model) {
        state.stats.call(&account.email, Call::ImageGeneration);
        image::generate(&prompt, request.unwrap_or(&Value::Null))
    } else {
        answer::generate(&prompt, cached, config.answer_words, &state.signer)
    };
    if search {
        state.stats.call(&account.email, Call::Grounding);
    }
    // Google sends the metadata on the last event, after the text it grounds.
    let grounding_metadata = (search && !gated).then(|| grounding::metadata(&prompt, &chunks));
    let cut = outcome
        .filter(|r| r.kind == FaultKind::StreamCut)
        .map(|r| (r.after_chunks.unwrap_or(1).min(chunks.len().saturating_sub(1)), r.abort));

    let ids = ResponseIds::new(model, trace_id, bare);
    if streaming && outcome.is_some_and(|r| r.kind == FaultKind::StreamError) {
        let error = ApiError::Unavailable {
            message: format!("The service is currently unavailable for model {model}."),
            details: vec![],
        };
        let event = sse_event(&error.to_wire(), config.sse_line_ending);
        return Reply {
            status: 200,
            content_type: SSE,
            body: SimBody::sse(vec![event], Duration::ZERO, None).holding(Some(slot)),
            trace_id: None,
        };
    }
    if streaming {
        let mut events: Vec<Bytes> = Vec::with_capacity(chunks.len() + 1);
        let n = chunks.len();
        for (i, c) in chunks.iter().enumerate() {
            let last = i + 1 == n;
            let usage = match config.usage {
                UsageMode::EveryChunk => Some(c.usage),
                UsageMode::Final if last => Some(c.usage),
                _ => None,
            };
            let grounding = grounding_metadata.as_ref().filter(|_| last);
            let chunk = ids.wrap(&c.parts, c.finish_reason, usage, grounding);
            events.push(sse_event(&chunk, config.sse_line_ending));
        }
        if config.usage == UsageMode::Separate {
            if let Some(c) = chunks.last() {
                events.push(sse_event(&ids.usage_only(c.usage), config.sse_line_ending));
            }
        }
        let delay = Duration::from_millis(config.latency.inter_chunk_ms) + decision.inter_chunk_delay;
        Reply {
            status: 200,
            content_type: SSE,
            body: SimBody::sse(events, delay, cut).holding(Some(slot)),
            trace_id: None,
        }
    } else {
        let kept = cut.map_or(chunks.len(), |(n, _)| n);
        let (parts, finish, usage) = answer::fold(&chunks[..kept]);
        let finish = if cut.is_some() { None } else { finish };
        let v = ids.wrap(&parts, finish, Some(usage), grounding_metadata.as_ref());
        Reply { status: 200, content_type: JSON, body: SimBody::full(v).holding(Some(slot)), trace_id: None }
    }
}

/// Binds the listener (port 0 allowed) and builds the shared state.
pub async fn bind(config: SimConfig, listen: SocketAddr) -> std::io::Result<(TcpListener, Arc<SimState>)> {
    config.validate().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    let listener = TcpListener::bind(listen).await?;
    Ok((listener, Arc::new(SimState::new(config))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_floor_compares_numerically() {
        assert!(below_version_floor(Some("antigravity/1.11.9 windows/amd64"), "1.15.8"));
        assert!(!below_version_floor(Some("antigravity/1.15.8 darwin/arm64"), "1.15.8"));
        assert!(below_version_floor(Some("antigravity/hub/1.2.0 darwin/arm64"), "1.15.8"));
        assert!(!below_version_floor(Some("curl/8"), "1.15.8"));
        assert!(!below_version_floor(None, "1.15.8"));
    }
}
