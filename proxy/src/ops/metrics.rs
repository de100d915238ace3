//! Prometheus metrics: one registry, named metrics, and small recording methods the gateway calls.
//!
//! Names follow Prometheus conventions (`_total`, `_seconds`). Label values are bounded sets (protocol,
//! operation, status, account email, outcome) so cardinality stays small.
//!
//! Every finished request records into several labelled metrics; the per-route histograms keep their
//! label handles ([`RouteHandles`]) after the first use, because `with_label_values` hashes the labels and
//! takes the vector's lock (shared by every worker thread) on each call.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// The `protocol` label values (`Protocol::as_str`) and the `route` label values (the gateway's operation
/// labels) whose histogram handles are kept; any other value takes the labelled lookup.
const PROTOCOLS: [&str; 3] = ["openai", "anthropic", "gemini"];
const ROUTES: [&str; 12] = [
    "chat_completions",
    "responses",
    "completions",
    "images_generations",
    "images_edits",
    "messages",
    "generate_content",
    "count_tokens",
    "list_models",
    "get_model",
    "health",
    "unknown",
];

/// One (protocol, route)'s histograms, looked up once.
struct RouteHandles {
    seconds: Histogram,
    first_byte: Histogram,
    overhead: Histogram,
}

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_seconds: HistogramVec,
    upstream_attempts: IntCounterVec,
    streams_truncated: IntCounterVec,
    /// Filled on first use, so only pairs that were seen appear in `/metrics` (as before).
    route_handles: [OnceLock<RouteHandles>; PROTOCOLS.len() * ROUTES.len()],
    ops: OpsMetrics,
    /// The account pool's lockouts, breakers, retries and waits.
    pub pool: PoolMetrics,
}

/// Operations metrics: latency split, live gauges, tokens, accounts, reloads, caches and the request log.
struct OpsMetrics {
    first_byte_seconds: HistogramVec,
    overhead_seconds: HistogramVec,
    active_requests: IntGauge,
    active_streams: IntGauge,
    tokens: IntCounterVec,
    account_state: IntGaugeVec,
    account_in_flight: IntGaugeVec,
    account_egress_up: IntGaugeVec,
    config_reloads: IntCounterVec,
    config_generation: IntGauge,
    config_last_reload: prometheus::GaugeVec,
    config_pending_upgrade: IntGauge,
    signature_lookups: IntCounterVec,
    request_log_dropped: IntCounter,
    connections_refused: IntCounterVec,
    build_info: IntGaugeVec,
}

fn registered<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: C) -> C {
    let _ = registry.register(Box::new(metric.clone()));
    metric
}

impl OpsMetrics {
    fn new(registry: &Registry) -> Self {
        let counters = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(Opts::new(name, help), labels)
                .unwrap_or_else(|e| unreachable!("static metric {name}: {e}"));
            registered(registry, metric)
        };
        let gauges = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntGaugeVec::new(Opts::new(name, help), labels)
                .unwrap_or_else(|e| unreachable!("static metric {name}: {e}"));
            registered(registry, metric)
        };
        let gauge = |name: &str, help: &str| {
            let metric =
                IntGauge::new(name, help).unwrap_or_else(|e| unreachable!("static metric {name}: {e}"));
            registered(registry, metric)
        };
        let histograms = |name: &str, help: &str, buckets: Vec<f64>| {
            let metric =
                HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), &["protocol", "route"])
                    .unwrap_or_else(|e| unreachable!("static metric {name}: {e}"));
            registered(registry, metric)
        };
        let last_reload = prometheus::GaugeVec::new(
            Opts::new(
                "config_last_reload_timestamp_seconds",
                "Unix time of the last configuration reload attempt, by result",
            ),
            &["result"],
        )
        .unwrap_or_else(|e| unreachable!("static metric: {e}"));
        let dropped = IntCounter::new(
            "request_log_dropped_total",
            "Request log entries dropped because the writer fell behind",
        )
        .unwrap_or_else(|e| unreachable!("static metric: {e}"));
        let ops = OpsMetrics {
            first_byte_seconds: histograms(
                "time_to_first_byte_seconds",
                "Time from the request's arrival to the first response byte sent to the client",
                vec![0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 180.0],
            ),
            overhead_seconds: histograms(
                "gateway_overhead_seconds",
                "Request time not spent waiting on the upstream (parsing, rewriting, queueing, writing)",
                // Fine steps below 100 µs: a proxied request's own work is tens of microseconds.
                vec![
                    0.00001, 0.000025, 0.00005, 0.000075, 0.0001, 0.00015, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                    0.01, 0.025, 0.1, 0.5, 1.0, 5.0,
                ],
            ),
            active_requests: gauge("active_requests", "Client requests being served, streams included"),
            active_streams: gauge("active_streams", "Streaming responses being written to clients"),
            tokens: counters(
                "tokens_total",
                "Tokens reported by the upstream, by API key name, upstream model (configured ones; others as \
                 `other`), account and kind (in, out, thoughts, cached)",
                &["key", "upstream_model", "account", "kind"],
            ),
            account_state: gauges(
                "account_state",
                "1 for each account's current state (enabled, disabled, forbidden, locked)",
                &["account", "state"],
            ),
            account_in_flight: gauges("account_in_flight", "Upstream requests in flight per account", &["account"]),
            account_egress_up: gauges(
                "account_egress_up",
                "1 while an account's egress proxy works, 0 while the account is egress_down (accounts with a proxy)",
                &["account"],
            ),
            config_reloads: counters(
                "config_reloads_total",
                "Configuration reloads by trigger (watch, signal, admin) and result (ok, failed)",
                &["trigger", "result"],
            ),
            config_generation: gauge("config_generation", "Generation of the configuration in force (1 at start)"),
            config_last_reload: registered(registry, last_reload),
            config_pending_upgrade: gauge(
                "config_pending_upgrade_settings",
                "Edited settings that only a binary upgrade or restart applies (see /admin/health)",
            ),
            signature_lookups: counters(
                "signature_cache_lookups_total",
                "thoughtSignature cache lookups by result (hit, miss)",
                &["result"],
            ),
            request_log_dropped: registered(registry, dropped),
            connections_refused: counters(
                "connections_refused_total",
                "Client connections (kind=connection) and requests behind a trusted proxy (kind=request) refused \
                 over limits.max_connections (reason=total) or limits.max_connections_per_ip (reason=per_ip)",
                &["kind", "reason"],
            ),
            build_info: gauges("build_info", "Always 1; the running version as a label", &["version"]),
        };
        ops.build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        ops
    }
}

/// Decrements a live gauge when the request or stream it counts ends, whatever path it ends on.
pub struct LiveGuard(IntGauge);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What the `logging` hook knows about one finished request.
pub struct RequestObservation<'a> {
    pub protocol: &'a str,
    pub route: &'a str,
    pub alias: &'a str,
    pub upstream_model: &'a str,
    pub status: u16,
    pub total: Duration,
    pub first_byte: Option<Duration>,
    pub upstream_wait: Duration,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("levitate".into()), None).unwrap_or_default();
        let requests = IntCounterVec::new(
            Opts::new(
                "requests_total",
                "Client requests by protocol, route, alias (routes.yaml pattern), upstream model and HTTP status",
            ),
            &["protocol", "route", "alias", "upstream_model", "status"],
        );
        let request_seconds = HistogramVec::new(
            HistogramOpts::new("request_duration_seconds", "Total request time, including streaming")
                .buckets(vec![0.001, 0.005, 0.025, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 180.0, 600.0]),
            &["protocol", "route"],
        );
        let upstream_attempts = IntCounterVec::new(
            Opts::new("upstream_attempts_total", "Upstream attempts by account and outcome"),
            &["account", "outcome"],
        );
        let streams_truncated = IntCounterVec::new(
            Opts::new("streams_truncated_total", "Upstream streams that ended without a finishReason"),
            &["protocol"],
        );
        let metrics = match (requests, request_seconds, upstream_attempts, streams_truncated) {
            (Ok(requests), Ok(request_seconds), Ok(upstream_attempts), Ok(streams_truncated)) => {
                let ops = OpsMetrics::new(&registry);
                let pool = PoolMetrics::new(&registry);
                Metrics {
                    registry,
                    requests,
                    request_seconds,
                    upstream_attempts,
                    streams_truncated,
                    route_handles: std::array::from_fn(|_| OnceLock::new()),
                    ops,
                    pool,
                }
            }
            _ => unreachable!("metric definitions are static and valid"),
        };
        for collector in [
            Box::new(metrics.requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(metrics.request_seconds.clone()),
            Box::new(metrics.upstream_attempts.clone()),
            Box::new(metrics.streams_truncated.clone()),
        ] {
            let _ = metrics.registry.register(collector);
        }
        metrics
    }

    pub fn observe_request(&self, r: &RequestObservation<'_>) {
        let mut status_buf = [0u8; 5];
        let status = status_label(r.status, &mut status_buf);
        self.requests.with_label_values(&[r.protocol, r.route, r.alias, r.upstream_model, status]).inc();
        let overhead = r.total.saturating_sub(r.upstream_wait);
        let observe = |h: &RouteHandles| {
            h.seconds.observe(r.total.as_secs_f64());
            if let Some(first_byte) = r.first_byte {
                h.first_byte.observe(first_byte.as_secs_f64());
            }
            h.overhead.observe(overhead.as_secs_f64());
        };
        match route_index(r.protocol, r.route) {
            Some(i) => {
                observe(self.route_handles[i].get_or_init(|| self.route_handles_for(r.protocol, r.route)))
            }
            None => observe(&self.route_handles_for(r.protocol, r.route)),
        }
    }

    fn route_handles_for(&self, protocol: &str, route: &str) -> RouteHandles {
        let labels = [protocol, route];
        RouteHandles {
            seconds: self.request_seconds.with_label_values(&labels),
            first_byte: self.ops.first_byte_seconds.with_label_values(&labels),
            overhead: self.ops.overhead_seconds.with_label_values(&labels),
        }
    }

    /// Counts a request as active until the returned guard is dropped.
    pub fn request_started(&self) -> LiveGuard {
        self.ops.active_requests.inc();
        LiveGuard(self.ops.active_requests.clone())
    }

    /// Requests being served now (the drain check of a graceful stop or upgrade).
    pub fn active_requests(&self) -> i64 {
        self.ops.active_requests.get()
    }

    /// Counts a stream as active until the returned guard is dropped.
    pub fn stream_started(&self) -> LiveGuard {
        self.ops.active_streams.inc();
        LiveGuard(self.ops.active_streams.clone())
    }

    /// Counts tokens; every label value comes from the configuration (key names, upstream models mapped
    /// by `tenancy::bounded_model`, account emails), so the series stay bounded.
    pub fn tokens(&self, key: &str, upstream_model: &str, account: &str, kind: &str, count: u64) {
        if count > 0 {
            self.ops.tokens.with_label_values(&[key, upstream_model, account, kind]).inc_by(count);
        }
    }

    /// Replaces the per-account gauges (called at scrape time, so removed accounts disappear).
    pub fn set_accounts<'a>(&self, accounts: impl IntoIterator<Item = (&'a str, &'a str, u32)>) {
        self.ops.account_state.reset();
        self.ops.account_in_flight.reset();
        for (account, state, in_flight) in accounts {
            self.ops.account_state.with_label_values(&[account, state]).set(1);
            self.ops.account_in_flight.with_label_values(&[account]).set(i64::from(in_flight));
        }
    }

    /// Replaces the egress gauges: one per account with a proxy (called at scrape time).
    pub fn set_egress<'a>(&self, accounts: impl IntoIterator<Item = (&'a str, bool)>) {
        self.ops.account_egress_up.reset();
        for (account, up) in accounts {
            self.ops.account_egress_up.with_label_values(&[account]).set(i64::from(up));
        }
    }

    pub fn config_reload(&self, trigger: &str, ok: bool, generation: u64, pending_upgrade: usize) {
        let result = if ok { "ok" } else { "failed" };
        self.ops.config_reloads.with_label_values(&[trigger, result]).inc();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.ops.config_last_reload.with_label_values(&[result]).set(now);
        self.set_config_generation(generation, pending_upgrade);
    }

    pub fn set_config_generation(&self, generation: u64, pending_upgrade: usize) {
        self.ops.config_generation.set(generation as i64);
        self.ops.config_pending_upgrade.set(pending_upgrade as i64);
    }

    pub fn signature_lookup(&self, hit: bool) {
        self.ops.signature_lookups.with_label_values(&[if hit { "hit" } else { "miss" }]).inc();
    }

    pub fn request_log_dropped(&self) {
        self.ops.request_log_dropped.inc();
    }

    /// A connection or request refused at a connection limit: `kind` is `connection` or `request`, `reason`
    /// `total` or `per_ip`.
    pub fn connection_refused(&self, kind: &'static str, reason: &'static str) {
        self.ops.connections_refused.with_label_values(&[kind, reason]).inc();
    }

    pub fn upstream_attempt(&self, account: &str, outcome: &str) {
        self.upstream_attempts.with_label_values(&[account, outcome]).inc();
    }

    pub fn stream_truncated(&self, protocol: &str) {
        self.streams_truncated.with_label_values(&[protocol]).inc();
    }

    /// The text exposition format for `/metrics`.
    /// Adds a metric owned elsewhere (the shared-state link) to this registry.
    pub fn register<C: prometheus::core::Collector + Clone + 'static>(&self, metric: C) {
        let _ = registered(&self.registry, metric);
    }

    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

/// The slot of a (protocol, route) pair in `Metrics::route_handles`, if it is one of the known pairs.
fn route_index(protocol: &str, route: &str) -> Option<usize> {
    let p = PROTOCOLS.iter().position(|v| *v == protocol)?;
    let r = ROUTES.iter().position(|v| *v == route)?;
    Some(p * ROUTES.len() + r)
}

/// The status code as label text, written into `buf` (no allocation per request).
fn status_label(status: u16, buf: &mut [u8; 5]) -> &str {
    let mut n = status;
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 || start == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[start..]).unwrap_or("0")
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The account pool's metrics: why attempts were retried, which accounts were rested or cut off, and how long
/// requests queued for a slot.
pub struct PoolMetrics {
    lockouts: IntCounterVec,
    breaker_opened: IntCounterVec,
    retries: IntCounterVec,
    rejected: IntCounterVec,
    waiting: IntGauge,
    wait_seconds: prometheus::Histogram,
    version_gates: IntCounterVec,
    warmups: IntCounterVec,
}

impl PoolMetrics {
    fn new(registry: &Registry) -> Self {
        let counters = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(Opts::new(name, help), labels)
                .unwrap_or_else(|e| unreachable!("static metric {name}: {e}"));
            registered(registry, metric)
        };
        let waiting =
            IntGauge::new("pool_waiting_requests", "Requests waiting for a free or unlocked account")
                .unwrap_or_else(|e| unreachable!("static metric: {e}"));
        let wait_seconds = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "pool_wait_seconds",
                "Time requests waited for an account before their attempt",
            )
            .buckets(vec![0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        )
        .unwrap_or_else(|e| unreachable!("static metric: {e}"));
        PoolMetrics {
            lockouts: counters(
                "account_lockouts_total",
                "(account, model) lockouts placed, by account and reason (RATE_LIMIT_EXCEEDED, QUOTA_EXHAUSTED, ...)",
                &["account", "reason"],
            ),
            breaker_opened: counters(
                "account_breaker_opened_total",
                "Times an account's circuit breaker opened",
                &["account"],
            ),
            retries: counters(
                "upstream_retries_total",
                "Attempts moved to another account (or retried) before any byte reached the client, by cause",
                &["cause"],
            ),
            rejected: counters(
                "pool_rejections_total",
                "Requests answered without an upstream attempt because no account could take them, by reason",
                &["reason"],
            ),
            waiting: registered(registry, waiting),
            wait_seconds: registered(registry, wait_seconds),
            version_gates: counters(
                "upstream_version_gate_total",
                "Answers in which Google refused the gateway's client version (upstream.user_agent), by kind",
                &["kind"],
            ),
            warmups: counters(
                "warmup_total",
                "Warmup requests (one per account and model family per slot), by outcome",
                &["account", "family", "outcome"],
            ),
        }
    }

    pub fn lockout(&self, account: &str, reason: &str) {
        self.lockouts.with_label_values(&[account, reason]).inc();
    }

    pub fn breaker_opened(&self, account: &str) {
        self.breaker_opened.with_label_values(&[account]).inc();
    }

    pub fn retry(&self, cause: &str) {
        self.retries.with_label_values(&[cause]).inc();
    }

    pub fn rejected(&self, reason: &str) {
        self.rejected.with_label_values(&[reason]).inc();
    }

    pub fn version_gate(&self, kind: &str) {
        self.version_gates.with_label_values(&[kind]).inc();
    }

    pub fn warmup(&self, account: &str, family: &str, outcome: &str) {
        self.warmups.with_label_values(&[account, family, outcome]).inc();
    }

    /// Counts a request as waiting until the returned guard is dropped.
    pub fn wait_started(&self) -> LiveGuard {
        self.waiting.inc();
        LiveGuard(self.waiting.clone())
    }

    pub fn waited(&self, elapsed: Duration) {
        self.wait_seconds.observe(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_labels_are_the_decimal_code() {
        for code in [0u16, 7, 42, 200, 404, 599, 65535] {
            let mut buf = [0u8; 5];
            assert_eq!(status_label(code, &mut buf), code.to_string());
        }
    }

    fn observe(metrics: &Metrics, protocol: &str, route: &str) {
        metrics.observe_request(&RequestObservation {
            protocol,
            route,
            alias: "-",
            upstream_model: "-",
            status: 200,
            total: Duration::from_micros(300),
            first_byte: Some(Duration::from_micros(200)),
            upstream_wait: Duration::from_micros(260),
        });
    }

    /// The kept handles record into the same labelled series a lookup would, for known and unknown pairs.
    #[test]
    fn kept_route_handles_record_into_the_labelled_series() {
        let metrics = Metrics::new();
        observe(&metrics, "openai", "chat_completions");
        observe(&metrics, "openai", "chat_completions");
        observe(&metrics, "anthropic", "messages");
        observe(&metrics, "other", "custom");
        let text = String::from_utf8(metrics.render()).unwrap();
        let count = |name: &str, labels: &str| {
            let prefix = format!("levitate_{name}_count{{{labels}}} ");
            text.lines().find_map(|l| l.strip_prefix(&prefix)).map(str::to_string)
        };
        for name in ["request_duration_seconds", "time_to_first_byte_seconds", "gateway_overhead_seconds"] {
            assert_eq!(
                count(name, r#"protocol="openai",route="chat_completions""#).as_deref(),
                Some("2"),
                "{name}"
            );
            assert_eq!(
                count(name, r#"protocol="anthropic",route="messages""#).as_deref(),
                Some("1"),
                "{name}"
            );
            assert_eq!(count(name, r#"protocol="other",route="custom""#).as_deref(), Some("1"), "{name}");
        }
        assert!(!text.contains(r#"route="health""#), "pairs never seen stay out of /metrics");
        // 40 µs of overhead falls in the 50 µs bucket, which exists so the 50 µs target can be read.
        assert!(text.contains(r#"levitate_gateway_overhead_seconds_bucket{protocol="openai",route="chat_completions",le="0.00005"} 2"#));
    }
}
