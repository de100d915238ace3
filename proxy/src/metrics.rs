//! Prometheus metrics: one registry, named metrics, and small recording methods the gateway calls.
//!
//! Names follow Prometheus conventions (`_total`, `_seconds`). Label values are bounded sets (protocol,
//! operation, status, account email, outcome) so cardinality stays small.

use std::time::Duration;

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder};

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_seconds: HistogramVec,
    upstream_attempts: IntCounterVec,
    streams_truncated: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("levitate".into()), None).unwrap_or_default();
        let requests = IntCounterVec::new(
            Opts::new("requests_total", "Client requests by protocol, operation and HTTP status"),
            &["protocol", "operation", "status"],
        );
        let request_seconds = HistogramVec::new(
            HistogramOpts::new("request_duration_seconds", "Total request time, including streaming")
                .buckets(vec![0.001, 0.005, 0.025, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 180.0, 600.0]),
            &["protocol", "operation"],
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
                Metrics { registry, requests, request_seconds, upstream_attempts, streams_truncated }
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

    pub fn observe_request(&self, protocol: &str, operation: &str, status: u16, elapsed: Duration) {
        self.requests.with_label_values(&[protocol, operation, &status.to_string()]).inc();
        self.request_seconds.with_label_values(&[protocol, operation]).observe(elapsed.as_secs_f64());
    }

    pub fn upstream_attempt(&self, account: &str, outcome: &str) {
        self.upstream_attempts.with_label_values(&[account, outcome]).inc();
    }

    pub fn stream_truncated(&self, protocol: &str) {
        self.streams_truncated.with_label_values(&[protocol]).inc();
    }

    /// The text exposition format for `/metrics`.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
