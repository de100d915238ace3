//! Counters tests assert on (`GET /_sim/stats`): per-account request counts, statuses, exact in-flight and
//! peak concurrency, OAuth and Code Assist calls, per-model counts, and the metadata of recent envelopes so a
//! test can check what the gateway actually sent. In-flight is held by a guard that lives inside the response
//! body, so it drops when the body finishes or the client disconnects.
//!
//! Per peer address (`peers`): connections accepted, requests served, and the account each content or
//! control call was for, so an egress test can prove which source address carried which account's traffic
//! (a proxy connects from its own address; a direct call from the gateway's).
//!
//! Per HTTP version (`http_versions`, and `h2_connections`): which protocol requests arrived over and on how
//! many HTTP/2 connections, so a test can prove the gateway spoke h2c and multiplexed its streams.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Value};

/// In-flight count with its high-water mark, updated atomically so the peak is exact.
#[derive(Debug, Default)]
pub struct Gauge {
    in_flight: AtomicI64,
    peak: AtomicI64,
}

impl Gauge {
    fn enter(&self) {
        let now = self.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        self.peak.fetch_max(now, Ordering::AcqRel);
    }

    fn leave(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    fn reset_peak(&self) {
        self.peak.store(self.in_flight.load(Ordering::Acquire), Ordering::Release);
    }

    fn json(&self) -> (i64, i64) {
        (self.in_flight.load(Ordering::Acquire), self.peak.load(Ordering::Acquire))
    }
}

/// Holds one in-flight slot on the account's and the global gauge until dropped.
#[derive(Debug)]
pub struct InFlight {
    gauges: [Arc<Gauge>; 2],
}

impl Drop for InFlight {
    fn drop(&mut self) {
        for g in &self.gauges {
            g.leave();
        }
    }
}

/// Calls counted per account besides content requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Call {
    TokenRefresh,
    LoadCodeAssist,
    OnboardUser,
    FetchAvailableModels,
    RetrieveUserQuota,
    CountTokens,
    /// A content request to an image model that passed validation.
    ImageGeneration,
    /// A content request grounded in Google Search (`googleSearch`), counted besides its request.
    Grounding,
}

impl Call {
    fn key(self) -> &'static str {
        match self {
            Call::TokenRefresh => "token_refreshes",
            Call::LoadCodeAssist => "load_code_assist",
            Call::OnboardUser => "onboard_user",
            Call::FetchAvailableModels => "fetch_available_models",
            Call::RetrieveUserQuota => "retrieve_user_quota",
            Call::CountTokens => "count_tokens",
            Call::ImageGeneration => "image_generations",
            Call::Grounding => "grounding_requests",
        }
    }
}

#[derive(Debug, Default)]
struct AccountStats {
    gauge: Arc<Gauge>,
    requests: u64,
    by_status: BTreeMap<u16, u64>,
    calls: BTreeMap<Call, u64>,
}

/// What one source address did.
#[derive(Debug, Default)]
struct PeerStats {
    connections: u64,
    requests: u64,
    /// Content requests and control calls per account made over this address's connections.
    accounts: BTreeMap<String, u64>,
}

tokio::task_local! {
    /// The source address of the connection whose request is being handled (set around each request).
    pub static PEER: IpAddr;
}

/// The current request's peer, when it is being handled inside [`PEER`]'s scope.
fn current_peer() -> Option<IpAddr> {
    PEER.try_with(|p| *p).ok()
}

#[derive(Debug, Default)]
struct ModelStats {
    requests: u64,
    by_status: BTreeMap<u16, u64>,
}

#[derive(Debug, Default)]
struct Inner {
    accounts: HashMap<String, AccountStats>,
    models: HashMap<String, ModelStats>,
    requests: u64,
    by_status: BTreeMap<u16, u64>,
    calls: BTreeMap<Call, u64>,
    recent: VecDeque<Value>,
    peers: BTreeMap<IpAddr, PeerStats>,
    /// Requests per HTTP version label (`HTTP/1.1`, `HTTP/2`).
    versions: BTreeMap<&'static str, u64>,
    /// Connections that carried at least one HTTP/2 request.
    h2_connections: u64,
}

/// All counters of one sim.
#[derive(Debug)]
pub struct Stats {
    inner: Mutex<Inner>,
    global: Arc<Gauge>,
    recent_cap: usize,
}

impl Stats {
    pub fn new(recent_cap: usize) -> Stats {
        Stats { inner: Mutex::new(Inner::default()), global: Arc::new(Gauge::default()), recent_cap }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A connection was accepted from `peer`.
    pub fn connection(&self, peer: IpAddr) {
        self.lock().peers.entry(peer).or_default().connections += 1;
    }

    /// A request arrived from `peer` over `version` (any path, the sim's own included).
    pub fn peer_request(&self, peer: IpAddr, version: hyper::Version) {
        let label = match version {
            hyper::Version::HTTP_2 => "HTTP/2",
            hyper::Version::HTTP_11 => "HTTP/1.1",
            hyper::Version::HTTP_10 => "HTTP/1.0",
            _ => "other",
        };
        let mut inner = self.lock();
        inner.peers.entry(peer).or_default().requests += 1;
        *inner.versions.entry(label).or_default() += 1;
    }

    /// A connection served its first HTTP/2 request.
    pub fn h2_connection(&self) {
        self.lock().h2_connections += 1;
    }

    /// Attributes one call for `email` to the current request's peer.
    fn attribute(inner: &mut Inner, email: &str) {
        if let Some(peer) = current_peer() {
            *inner.peers.entry(peer).or_default().accounts.entry(email.to_string()).or_default() += 1;
        }
    }

    /// A content request starts: counts it and takes an in-flight slot.
    pub fn begin(&self, email: &str, model: &str) -> InFlight {
        let mut inner = self.lock();
        Self::attribute(&mut inner, email);
        inner.requests += 1;
        inner.models.entry(model.to_string()).or_default().requests += 1;
        let account = inner.accounts.entry(email.to_string()).or_default();
        account.requests += 1;
        let gauge = account.gauge.clone();
        drop(inner);
        gauge.enter();
        self.global.enter();
        InFlight { gauges: [gauge, self.global.clone()] }
    }

    /// The status a content request was answered with.
    pub fn status(&self, email: &str, model: &str, status: u16) {
        let mut inner = self.lock();
        *inner.by_status.entry(status).or_default() += 1;
        *inner.models.entry(model.to_string()).or_default().by_status.entry(status).or_default() += 1;
        *inner.accounts.entry(email.to_string()).or_default().by_status.entry(status).or_default() += 1;
    }

    /// One non-content call for an account.
    pub fn call(&self, email: &str, call: Call) {
        let mut inner = self.lock();
        Self::attribute(&mut inner, email);
        *inner.calls.entry(call).or_default() += 1;
        *inner.accounts.entry(email.to_string()).or_default().calls.entry(call).or_default() += 1;
    }

    /// Remembers a request's metadata (never its content) in the bounded recent list.
    pub fn remember(&self, meta: Value) {
        if self.recent_cap == 0 {
            return;
        }
        let mut inner = self.lock();
        if inner.recent.len() >= self.recent_cap {
            inner.recent.pop_front();
        }
        inner.recent.push_back(meta);
    }

    /// Zeroes every counter; in-flight slots stay (their guards are live) and peaks restart from them.
    pub fn reset(&self) {
        let mut inner = self.lock();
        let gauges: Vec<(String, Arc<Gauge>)> =
            inner.accounts.iter().map(|(k, a)| (k.clone(), a.gauge.clone())).collect();
        *inner = Inner::default();
        for (email, gauge) in gauges {
            gauge.reset_peak();
            inner.accounts.entry(email).or_default().gauge = gauge;
        }
        self.global.reset_peak();
    }

    /// The `/_sim/stats` document.
    pub fn snapshot(&self) -> Value {
        let inner = self.lock();
        let statuses =
            |m: &BTreeMap<u16, u64>| -> Value { m.iter().map(|(k, v)| (k.to_string(), json!(v))).collect() };
        let calls = |m: &BTreeMap<Call, u64>| -> serde_json::Map<String, Value> {
            [
                Call::TokenRefresh,
                Call::LoadCodeAssist,
                Call::OnboardUser,
                Call::FetchAvailableModels,
                Call::RetrieveUserQuota,
                Call::CountTokens,
                Call::ImageGeneration,
                Call::Grounding,
            ]
            .iter()
            .map(|c| (c.key().to_string(), json!(m.get(c).copied().unwrap_or(0))))
            .collect()
        };
        let accounts: serde_json::Map<String, Value> = inner
            .accounts
            .iter()
            .map(|(email, a)| {
                let (in_flight, peak) = a.gauge.json();
                let mut v = json!({
                    "requests": a.requests,
                    "by_status": statuses(&a.by_status),
                    "in_flight": in_flight,
                    "peak_concurrency": peak,
                });
                if let Some(obj) = v.as_object_mut() {
                    obj.extend(calls(&a.calls));
                }
                (email.clone(), v)
            })
            .collect();
        let models: serde_json::Map<String, Value> = inner
            .models
            .iter()
            .map(|(m, s)| (m.clone(), json!({"requests": s.requests, "by_status": statuses(&s.by_status)})))
            .collect();
        let (in_flight, peak) = self.global.json();
        let mut totals = json!({
            "requests": inner.requests,
            "by_status": statuses(&inner.by_status),
            "in_flight": in_flight,
            "peak_concurrency": peak,
        });
        if let Some(obj) = totals.as_object_mut() {
            obj.extend(calls(&inner.calls));
        }
        let peers: serde_json::Map<String, Value> = inner
            .peers
            .iter()
            .map(|(ip, p)| {
                let accounts: serde_json::Map<String, Value> =
                    p.accounts.iter().map(|(e, n)| (e.clone(), json!(n))).collect();
                (
                    ip.to_string(),
                    json!({"connections": p.connections, "requests": p.requests, "accounts": accounts}),
                )
            })
            .collect();
        let versions: serde_json::Map<String, Value> =
            inner.versions.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        json!({
            "accounts": accounts,
            "peers": peers,
            "models": models,
            "totals": totals,
            "http_versions": versions,
            "h2_connections": inner.h2_connections,
            "recent": inner.recent.iter().cloned().collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_is_exact_and_guards_release() {
        let s = Stats::new(2);
        let a = s.begin("a@x", "m");
        let b = s.begin("a@x", "m");
        let c = s.begin("b@x", "m");
        drop(a);
        let snap = s.snapshot();
        assert_eq!(snap["totals"]["peak_concurrency"], 3);
        assert_eq!(snap["totals"]["in_flight"], 2);
        assert_eq!(snap["accounts"]["a@x"]["peak_concurrency"], 2);
        assert_eq!(snap["accounts"]["a@x"]["in_flight"], 1);
        drop((b, c));
        s.reset();
        let snap = s.snapshot();
        assert_eq!(snap["totals"]["peak_concurrency"], 0);
        assert_eq!(snap["totals"]["requests"], 0);
    }

    #[tokio::test]
    async fn calls_are_attributed_to_the_peer_that_carried_them() {
        let s = Stats::new(0);
        let proxy: IpAddr = "127.0.0.2".parse().unwrap();
        s.connection(proxy);
        s.connection(proxy);
        PEER.scope(proxy, async {
            s.peer_request(proxy, hyper::Version::HTTP_2);
            s.call("a@x", Call::TokenRefresh);
            drop(s.begin("a@x", "m"));
        })
        .await;
        // Outside a request's scope nothing is attributed.
        s.call("b@x", Call::TokenRefresh);
        let snap = s.snapshot();
        let peer = &snap["peers"]["127.0.0.2"];
        assert_eq!((peer["connections"].as_u64(), peer["requests"].as_u64()), (Some(2), Some(1)));
        assert_eq!(peer["accounts"]["a@x"], 2);
        assert!(peer["accounts"].get("b@x").is_none());
        assert_eq!(snap["peers"].as_object().unwrap().len(), 1);
        assert_eq!(snap["http_versions"], json!({"HTTP/2": 1}));
        s.reset();
        assert!(s.snapshot()["peers"].as_object().unwrap().is_empty());
    }

    #[test]
    fn reset_keeps_live_slots() {
        let s = Stats::new(2);
        let a = s.begin("a@x", "m");
        s.reset();
        assert_eq!(s.snapshot()["accounts"]["a@x"]["in_flight"], 1);
        drop(a);
        assert_eq!(s.snapshot()["accounts"]["a@x"]["in_flight"], 0);
    }

    #[test]
    fn statuses_calls_and_recent() {
        let s = Stats::new(2);
        s.status("a@x", "m", 429);
        s.status("a@x", "m", 200);
        s.call("a@x", Call::TokenRefresh);
        for i in 0..3 {
            s.remember(json!({ "i": i }));
        }
        let snap = s.snapshot();
        assert_eq!(snap["accounts"]["a@x"]["by_status"]["429"], 1);
        assert_eq!(snap["accounts"]["a@x"]["token_refreshes"], 1);
        assert_eq!(snap["models"]["m"]["by_status"]["200"], 1);
        assert_eq!(snap["recent"], json!([{"i":1},{"i":2}]));
    }
}
