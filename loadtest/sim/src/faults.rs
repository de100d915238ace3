//! Fault injection: the failures real upstreams produce (PROTOCOL §5, §12) on demand, so the gateway's retry,
//! lockout and stream-repair paths can be exercised. Rules come from the scenario YAML, from
//! `POST /_sim/faults` at runtime, or from a `[sim:fault=NAME]` marker in the last user text; each rule is
//! filtered by account and model, rolled against its probability and bounded by `times`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::{ApiError, RETRY_INFO};
use crate::wire_time::{go_duration, go_duration_secs, proto_duration, rfc3339};

/// The text real clients see when their version is too old (PROTOCOL §1).
pub const VERSION_GATE_TEXT: &str =
    "This version of Antigravity is no longer supported. Please update to receive the latest features!";

/// The per-model gate's notice.
pub fn model_gate_text(model: &str) -> String {
    format!(
        "{} is not available on this version of Antigravity. Please update to receive the latest models.",
        crate::models::display_name(model)
    )
}

/// What a rule does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// 429 RESOURCE_EXHAUSTED, ErrorInfo `RATE_LIMIT_EXCEEDED`, short `quotaResetDelay`.
    RateLimit,
    /// 429 RESOURCE_EXHAUSTED, ErrorInfo `QUOTA_EXHAUSTED`; the model shows `remainingFraction` 0 until reset.
    QuotaExhausted,
    /// 503 UNAVAILABLE (or 429 with `status: 429`), `MODEL_CAPACITY_EXHAUSTED`.
    Capacity,
    /// 401 UNAUTHENTICATED as if the access token had been revoked.
    Unauthenticated,
    /// 403 with ErrorInfo `VALIDATION_REQUIRED` and `metadata.validation_url`.
    ValidationRequired,
    /// 403 with ErrorInfo `TOS_VIOLATION` and `metadata.appeal_url`.
    TosViolation,
    /// 500 INTERNAL.
    ServerError,
    /// 403 `SERVICE_DISABLED` naming the account's project by number and id, as Google does when the API is
    /// off for the project: what a gateway must scrub before a client sees the message.
    ServiceDisabled,
    /// The stream stops after `after_chunks` chunks with no finishReason (clean end, or `abort: true`).
    StreamCut,
    /// 200 with one chunk whose content has no parts.
    EmptyResponse,
    /// 200 SSE whose first event is an error object (`{"error":{code,message,status}}`, 503 UNAVAILABLE),
    /// then the end: an error that surfaces inside an accepted stream.
    StreamError,
    /// Adds `delay_ms` before the response head.
    #[serde(alias = "slow_first_byte_ms")]
    SlowFirstByte,
    /// Adds `delay_ms` between stream chunks.
    #[serde(alias = "inter_chunk_delay_ms")]
    InterChunkDelay,
    /// Answers with the "This version of Antigravity is no longer supported" text and zero usage.
    VersionGate,
    /// Answers with "<model> is not available on this version of Antigravity" and zero usage: the model
    /// needs a newer client than the user agent names.
    ModelVersionGate,
}

impl FaultKind {
    /// Parses the marker / CLI spelling (`rate_limit`, `stream_cut`, …).
    pub fn parse(name: &str) -> Option<FaultKind> {
        serde_json::from_value(json!(name)).ok()
    }

    fn is_latency(self) -> bool {
        matches!(self, FaultKind::SlowFirstByte | FaultKind::InterChunkDelay)
    }
}

fn one() -> f64 {
    1.0
}

/// One fault rule as written in YAML or posted to `/_sim/faults`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    pub kind: FaultKind,
    /// Chance the rule fires on a matching request, 0..=1.
    #[serde(default = "one")]
    pub probability: f64,
    /// Only requests of this account (email or project id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Only requests for this model; a trailing `*` matches a prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Fire at most this many times, then stay inert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u64>,
    /// rate_limit / quota_exhausted: the reset delay; latency kinds: the delay. Fractions allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<f64>,
    /// stream_cut: chunks sent before the cut (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_chunks: Option<usize>,
    /// stream_cut: abort the connection mid-body instead of ending the stream cleanly.
    #[serde(default)]
    pub abort: bool,
    /// capacity: 503 (default) or 429. version_gate / model_version_gate: 400 or 403 answer the notice as an
    /// error of that status instead of as the answer's text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// quota_exhausted: later requests for the account and model also get the 429 until the reset.
    #[serde(default)]
    pub sticky: bool,
}

impl FaultRule {
    /// A rule that always fires, with default parameters (used by markers and `--fault NAME`).
    pub fn always(kind: FaultKind) -> FaultRule {
        FaultRule {
            kind,
            probability: 1.0,
            account: None,
            model: None,
            times: None,
            delay_ms: None,
            after_chunks: None,
            abort: false,
            status: None,
            sticky: false,
        }
    }

    /// The reset / latency delay, with each kind's realistic default.
    pub fn delay(&self) -> Duration {
        let default_ms = match self.kind {
            FaultKind::RateLimit => 479.417207,
            FaultKind::QuotaExhausted => 91_226_179.915352,
            FaultKind::SlowFirstByte => 2_000.0,
            FaultKind::InterChunkDelay => 50.0,
            _ => 0.0,
        };
        let ms = self.delay_ms.unwrap_or(default_ms).max(0.0);
        // Via whole nanoseconds, so `479.417207` prints back as `479.417207ms`.
        Duration::from_nanos((ms * 1e6).round() as u64)
    }

    fn matches(&self, account: &[&str], model: &str) -> bool {
        let account_ok = self.account.as_deref().is_none_or(|want| account.contains(&want));
        let model_ok = self.model.as_deref().is_none_or(|want| match want.strip_suffix('*') {
            Some(prefix) => model.starts_with(prefix),
            None => want == model,
        });
        account_ok && model_ok
    }

    /// Checks the rule's own fields; a human-readable complaint when they are out of range.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.probability) || self.probability.is_nan() {
            return Err(format!("fault {:?}: probability must be within 0..=1", self.kind));
        }
        if self.delay_ms.is_some_and(|d| !d.is_finite() || d < 0.0) {
            return Err(format!("fault {:?}: delay_ms must be >= 0", self.kind));
        }
        if let Some(s) = self.status {
            let gate = matches!(self.kind, FaultKind::VersionGate | FaultKind::ModelVersionGate);
            if gate && s != 400 && s != 403 {
                return Err(format!("fault {:?}: status must be 400 or 403", self.kind));
            }
            if !gate && s != 429 && s != 503 {
                return Err(format!("fault {:?}: status must be 429 or 503", self.kind));
            }
        }
        Ok(())
    }

    /// The error this rule answers with, if it is an error fault; `project` is the calling account's.
    pub fn error(&self, model: &str, now: SystemTime, project: &str) -> Option<ApiError> {
        let delay = self.delay();
        match self.kind {
            FaultKind::RateLimit => Some(ApiError::ResourceExhausted {
                message: format!(
                    "You have exhausted your capacity on this model. Your quota will reset after {}.",
                    go_duration_secs(delay)
                ),
                details: vec![
                    ApiError::error_info(
                        "RATE_LIMIT_EXCEEDED",
                        json!({"model": model, "quotaResetDelay": go_duration(delay)}),
                    ),
                    json!({"@type": RETRY_INFO, "retryDelay": proto_duration(delay)}),
                ],
            }),
            FaultKind::QuotaExhausted => Some(quota_exhausted(model, now, now + delay)),
            FaultKind::Capacity => {
                let message = format!("No capacity available for model {model} on the server");
                let details = vec![ApiError::error_info("MODEL_CAPACITY_EXHAUSTED", json!({"model": model}))];
                Some(if self.status == Some(429) {
                    ApiError::ResourceExhausted { message, details }
                } else {
                    ApiError::Unavailable { message, details }
                })
            }
            FaultKind::Unauthenticated => Some(ApiError::Unauthenticated { reason: "ACCESS_TOKEN_EXPIRED" }),
            FaultKind::ValidationRequired => Some(ApiError::PermissionDenied {
                message: "Verify your account to continue.".into(),
                details: vec![ApiError::error_info(
                    "VALIDATION_REQUIRED",
                    json!({"validation_url": "https://accounts.google.com/signin/continue?sim=validation",
                           "validation_error_message": "Verify your account to continue."}),
                )],
            }),
            FaultKind::TosViolation => Some(ApiError::PermissionDenied {
                message:
                    "Gemini has been disabled in this account for violation of Terms of Service. If you \
                          believe this is an error, please submit an appeal."
                        .into(),
                details: vec![ApiError::error_info(
                    "TOS_VIOLATION",
                    json!({"appeal_url": "https://support.google.com/gemini/contact/sim-appeal"}),
                )],
            }),
            FaultKind::ServerError => Some(ApiError::Internal("Internal error encountered.".into())),
            FaultKind::VersionGate | FaultKind::ModelVersionGate => {
                let message = match self.kind {
                    FaultKind::VersionGate => VERSION_GATE_TEXT.to_string(),
                    _ => model_gate_text(model),
                };
                match self.status? {
                    403 => Some(ApiError::PermissionDenied { message, details: vec![] }),
                    _ => Some(ApiError::InvalidArgument(message)),
                }
            }
            FaultKind::ServiceDisabled => {
                let number = project_number(project);
                let message = format!(
                    "Gemini for Google Cloud API has not been used in project {number} before or it is disabled. \
                     Enable it by visiting https://console.developers.google.com/apis/api/cloudaicompanion.googleapis.com/overview?project={number} \
                     then retry. Resource: projects/{project}"
                );
                Some(ApiError::PermissionDenied {
                    message,
                    details: vec![ApiError::error_info(
                        "SERVICE_DISABLED",
                        json!({"consumer": format!("projects/{number}"), "service": "cloudaicompanion.googleapis.com"}),
                    )],
                })
            }
            _ => None,
        }
    }
}

/// A stable 12-digit project number for a project id (Google's numbers are 12 digits, not derived from ids).
fn project_number(project: &str) -> u64 {
    let hash = project
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    100_000_000_000 + hash % 900_000_000_000
}

/// The QUOTA_EXHAUSTED 429, verbatim shape from PROTOCOL §5, for a reset at `reset`.
pub fn quota_exhausted(model: &str, now: SystemTime, reset: SystemTime) -> ApiError {
    let left = reset.duration_since(now).unwrap_or_default();
    ApiError::ResourceExhausted {
        message: format!(
            "You have exhausted your capacity on this model. Your quota will reset after {}.",
            go_duration_secs(left)
        ),
        details: vec![
            ApiError::error_info(
                "QUOTA_EXHAUSTED",
                json!({"uiMessage": "true", "model": model, "quotaResetDelay": go_duration(left),
                       "quotaResetTimeStamp": rfc3339(reset)}),
            ),
            json!({"@type": RETRY_INFO, "retryDelay": proto_duration(left)}),
        ],
    }
}

/// A rule plus how often it has fired.
#[derive(Debug)]
struct ActiveRule {
    rule: FaultRule,
    fired: AtomicU64,
}

/// The current rule set; replaced wholesale by `POST /_sim/faults`.
#[derive(Debug, Default)]
pub struct FaultSet {
    rules: Vec<ActiveRule>,
}

/// What the rules decided for one request.
#[derive(Debug, Default, Clone)]
pub struct Decision {
    /// The first error or behaviour rule that fired.
    pub outcome: Option<FaultRule>,
    pub first_byte_delay: Duration,
    pub inter_chunk_delay: Duration,
}

impl FaultSet {
    pub fn new(rules: Vec<FaultRule>) -> FaultSet {
        FaultSet {
            rules: rules.into_iter().map(|rule| ActiveRule { rule, fired: AtomicU64::new(0) }).collect(),
        }
    }

    /// The rules with how often each fired, for `GET /_sim/faults`.
    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.rules
                .iter()
                .map(|r| {
                    let mut v = serde_json::to_value(&r.rule).unwrap_or_default();
                    v["fired"] = json!(r.fired.load(Ordering::Relaxed));
                    v
                })
                .collect(),
        )
    }

    /// Rolls every matching rule for a request. `account` holds the selectors the account answers to (email and
    /// project). A marker-requested fault wins over configured ones.
    pub fn decide(&self, account: &[&str], model: &str, marker: Option<FaultRule>) -> Decision {
        let mut decision = Decision { outcome: marker, ..Decision::default() };
        let mut rng = rand::thread_rng();
        for active in &self.rules {
            let rule = &active.rule;
            if !rule.matches(account, model) {
                continue;
            }
            if !rule.kind.is_latency() && decision.outcome.is_some() {
                continue;
            }
            if rule.probability < 1.0 && rng.gen::<f64>() >= rule.probability {
                continue;
            }
            if !active.try_fire() {
                continue;
            }
            match rule.kind {
                FaultKind::SlowFirstByte => decision.first_byte_delay += rule.delay(),
                FaultKind::InterChunkDelay => decision.inter_chunk_delay += rule.delay(),
                _ => decision.outcome = Some(rule.clone()),
            }
        }
        decision
    }
}

impl ActiveRule {
    /// Counts one firing unless `times` is used up (exact under concurrency).
    fn try_fire(&self) -> bool {
        match self.rule.times {
            None => {
                self.fired.fetch_add(1, Ordering::Relaxed);
                true
            }
            Some(limit) => self
                .fired
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < limit).then_some(n + 1))
                .is_ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(kind: FaultKind) -> FaultRule {
        FaultRule::always(kind)
    }

    #[test]
    fn times_limits_firing() {
        let set = FaultSet::new(vec![FaultRule { times: Some(2), ..rule(FaultKind::RateLimit) }]);
        let fired = (0..5).filter(|_| set.decide(&["a@x"], "m", None).outcome.is_some()).count();
        assert_eq!(fired, 2);
    }

    #[test]
    fn selectors_filter() {
        let set = FaultSet::new(vec![FaultRule {
            account: Some("a@x".into()),
            model: Some("gemini-3*".into()),
            ..rule(FaultKind::ServerError)
        }]);
        assert!(set.decide(&["a@x", "p"], "gemini-3-flash", None).outcome.is_some());
        assert!(set.decide(&["b@x", "q"], "gemini-3-flash", None).outcome.is_none());
        assert!(set.decide(&["a@x", "p"], "claude-sonnet-4-6", None).outcome.is_none());
    }

    #[test]
    fn latency_adds_up_and_does_not_block_errors() {
        let set = FaultSet::new(vec![
            FaultRule { delay_ms: Some(10.0), ..rule(FaultKind::SlowFirstByte) },
            FaultRule { delay_ms: Some(5.0), ..rule(FaultKind::InterChunkDelay) },
            rule(FaultKind::Capacity),
        ]);
        let d = set.decide(&[], "m", None);
        assert_eq!(d.first_byte_delay, Duration::from_millis(10));
        assert_eq!(d.inter_chunk_delay, Duration::from_millis(5));
        assert_eq!(d.outcome.map(|r| r.kind), Some(FaultKind::Capacity));
    }

    #[test]
    fn version_gates_answer_as_text_or_as_an_error_of_their_status() {
        let now = SystemTime::now();
        assert!(rule(FaultKind::VersionGate).error("m", now, "p").is_none(), "text by default");
        let as_403 = FaultRule { status: Some(403), ..rule(FaultKind::VersionGate) };
        assert!(as_403.validate().is_ok());
        let e = as_403.error("m", now, "p").expect("error");
        assert_eq!(e.code(), 403);
        assert!(e.body()["error"]["message"].as_str().unwrap_or("").contains("no longer supported"));
        let as_400 = FaultRule { status: Some(400), ..rule(FaultKind::ModelVersionGate) };
        assert_eq!(as_400.error("gemini-3-flash", now, "p").map(|e| e.code()), Some(400));
        assert!(FaultRule { status: Some(429), ..rule(FaultKind::VersionGate) }.validate().is_err());
        assert!(FaultRule { status: Some(403), ..rule(FaultKind::Capacity) }.validate().is_err());
    }

    #[test]
    fn rate_limit_body_matches_protocol() {
        let e = rule(FaultKind::RateLimit).error("gemini-3-flash", SystemTime::now(), "p").expect("error");
        let b = e.body();
        assert_eq!(b["error"]["code"], 429);
        assert_eq!(b["error"]["status"], "RESOURCE_EXHAUSTED");
        assert_eq!(b["error"]["details"][0]["reason"], "RATE_LIMIT_EXCEEDED");
        assert_eq!(b["error"]["details"][0]["metadata"]["quotaResetDelay"], "479.417207ms");
        assert_eq!(b["error"]["details"][1]["retryDelay"], "0.479417207s");
        assert!(b["error"]["message"].as_str().unwrap_or("").ends_with("reset after 0s."));
    }

    #[test]
    fn quota_body_matches_protocol() {
        let e = rule(FaultKind::QuotaExhausted)
            .error("claude-opus-4-6-thinking", SystemTime::now(), "p")
            .expect("error");
        let b = e.body();
        assert_eq!(
            b["error"]["message"],
            "You have exhausted your capacity on this model. Your quota will reset after 25h20m26s."
        );
        assert_eq!(b["error"]["details"][0]["metadata"]["quotaResetDelay"], "25h20m26.179915352s");
        assert_eq!(b["error"]["details"][1]["retryDelay"], "91226.179915352s");
    }

    #[test]
    fn kinds_parse_from_names() {
        assert_eq!(FaultKind::parse("stream_cut"), Some(FaultKind::StreamCut));
        assert_eq!(FaultKind::parse("slow_first_byte_ms"), Some(FaultKind::SlowFirstByte));
        assert_eq!(FaultKind::parse("nope"), None);
    }
}
