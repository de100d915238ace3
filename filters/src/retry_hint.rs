//! Google's refusals, read: why an upstream attempt failed and how long the account should rest.
//!
//! Cloud Code says "slow down" in many ways (PROTOCOL.md §5): `RetryInfo.retryDelay` ("0.479417207s"),
//! `ErrorInfo.metadata.quotaResetDelay` ("25h20m26.179915352s", "479.417207ms"), `quotaResetTimeStamp`
//! (RFC 3339), a `Retry-After` header (seconds, decimals, or an HTTP date), or only prose ("Your quota will
//! reset after 25h20m26s.", "Resets in 108h48m29s."). The `ErrorInfo.reason` says what kind of refusal it is.
//! This module turns all of that into one [`Refusal`] and one [`Verdict`] the account pool acts on. It is pure:
//! the caller passes the current time, so every form is unit-testable.

use std::time::Duration;

use serde_json::Value;

/// Longer than this, a 429 without a reason is treated as quota exhaustion rather than a rate limit
/// (CPA's rule of thumb: under five minutes switch accounts, longer counts as exhausted).
pub const QUOTA_THRESHOLD: Duration = Duration::from_secs(300);

/// The `ErrorInfo.reason` (or, failing that, the message) of a refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    RateLimitExceeded,
    QuotaExhausted,
    ModelCapacityExhausted,
    ValidationRequired,
    TosViolation,
    NotEligible,
    ServiceDisabled,
    Unauthenticated,
    /// No reason we act on specially.
    Other,
}

impl Reason {
    /// Stable label for logs, metrics and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::RateLimitExceeded => "RATE_LIMIT_EXCEEDED",
            Reason::QuotaExhausted => "QUOTA_EXHAUSTED",
            Reason::ModelCapacityExhausted => "MODEL_CAPACITY_EXHAUSTED",
            Reason::ValidationRequired => "VALIDATION_REQUIRED",
            Reason::TosViolation => "TOS_VIOLATION",
            Reason::NotEligible => "NOT_ELIGIBLE",
            Reason::ServiceDisabled => "SERVICE_DISABLED",
            Reason::Unauthenticated => "UNAUTHENTICATED",
            Reason::Other => "OTHER",
        }
    }

    fn from_error_info(reason: &str) -> Option<Reason> {
        Some(match reason {
            "RATE_LIMIT_EXCEEDED" => Reason::RateLimitExceeded,
            "QUOTA_EXHAUSTED" => Reason::QuotaExhausted,
            "MODEL_CAPACITY_EXHAUSTED" => Reason::ModelCapacityExhausted,
            "VALIDATION_REQUIRED" => Reason::ValidationRequired,
            "TOS_VIOLATION" => Reason::TosViolation,
            "SERVICE_DISABLED" => Reason::ServiceDisabled,
            "ACCESS_TOKEN_EXPIRED" | "ACCESS_TOKEN_TYPE_UNSUPPORTED" | "CREDENTIALS_MISSING" => {
                Reason::Unauthenticated
            }
            _ => return None,
        })
    }
}

/// Everything a refusal told us, parsed once.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    pub status: u16,
    pub reason: Reason,
    /// How long from `now` the upstream asked us to wait, from the most precise source present.
    pub delay: Option<Duration>,
    /// `validation_url` / `appeal_url`, for the operator.
    pub url: Option<String>,
    /// Google's `error.message` (may be empty).
    pub message: String,
}

/// What the pool should do about a refusal.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Rest (account, model) briefly, then it may serve again.
    RateLimited { rest: Duration },
    /// (account, model) is out of quota until the reset.
    QuotaExhausted { rest: Duration },
    /// Google has no capacity right now: next endpoint, then another account; no lockout.
    Capacity,
    /// 5xx / timeouts: counts against the account's circuit breaker.
    ServerError,
    /// 401: refresh the token once and retry.
    Unauthenticated,
    /// The account needs a human (validation, ToS, eligibility): out of rotation until cleared.
    Forbidden { reason: Reason, url: Option<String> },
    /// The account refused for another reason (e.g. a plain 403): try another, no state change.
    AccountRefused,
    /// The request itself is at fault; another account would answer the same.
    RequestFault,
}

impl Refusal {
    /// Decides what the refusal means; `default_rest` is used for a rate limit that names no delay.
    pub fn verdict(&self, default_rest: Duration) -> Verdict {
        match (self.status, self.reason) {
            (_, Reason::ModelCapacityExhausted) => Verdict::Capacity,
            (_, Reason::QuotaExhausted) => {
                Verdict::QuotaExhausted { rest: self.delay.unwrap_or(QUOTA_THRESHOLD) }
            }
            (_, Reason::RateLimitExceeded) => {
                Verdict::RateLimited { rest: self.delay.unwrap_or(default_rest) }
            }
            (429, _) => match self.delay {
                Some(rest) if rest > QUOTA_THRESHOLD => Verdict::QuotaExhausted { rest },
                delay => Verdict::RateLimited { rest: delay.unwrap_or(default_rest) },
            },
            (401, _) | (_, Reason::Unauthenticated) => Verdict::Unauthenticated,
            (
                403,
                reason @ (Reason::ValidationRequired
                | Reason::TosViolation
                | Reason::NotEligible
                | Reason::ServiceDisabled),
            ) => Verdict::Forbidden { reason, url: self.url.clone() },
            (403, _) => Verdict::AccountRefused,
            (503, _) => Verdict::Capacity,
            (408 | 500..=599, _) => Verdict::ServerError,
            _ => Verdict::RequestFault,
        }
    }
}

/// Reads a refusal: `status`, its (JSON) body, the `Retry-After` header if any, and the current unix time in
/// milliseconds (to turn timestamps into delays).
pub fn classify(status: u16, body: &[u8], retry_after: Option<&str>, now_unix_ms: u64) -> Refusal {
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let error = json.get("error").unwrap_or(&Value::Null);
    let message = error.get("message").and_then(Value::as_str).unwrap_or_default().to_string();
    let details = error.get("details").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();

    let mut reason = None;
    let mut retry_delay = None;
    let mut reset_delay = None;
    let mut reset_stamp = None;
    let mut url = None;
    for detail in details {
        let kind = detail.get("@type").and_then(Value::as_str).unwrap_or_default();
        if kind.ends_with("google.rpc.RetryInfo") {
            retry_delay = detail.get("retryDelay").and_then(duration_value);
        } else if kind.ends_with("google.rpc.ErrorInfo") {
            if reason.is_none() {
                reason = detail.get("reason").and_then(Value::as_str).and_then(Reason::from_error_info);
            }
            if let Some(metadata) = detail.get("metadata") {
                let text = |key: &str| metadata.get(key).and_then(Value::as_str);
                reset_delay = reset_delay.or_else(|| text("quotaResetDelay").and_then(parse_go_duration));
                reset_stamp = reset_stamp.or_else(|| text("quotaResetTimeStamp").and_then(parse_rfc3339_ms));
                url = url.or_else(|| {
                    text("validation_url").or_else(|| text("validationUrl")).or_else(|| text("appeal_url"))
                });
            }
        }
    }
    let reason = reason.unwrap_or_else(|| reason_from_text(status, &message));
    let stamp_delay = reset_stamp.map(|at| Duration::from_millis(at.saturating_sub(now_unix_ms)));
    let delay = retry_delay
        .or(reset_delay)
        .or(stamp_delay)
        .or_else(|| retry_after.and_then(|h| parse_retry_after(h, now_unix_ms)))
        .or_else(|| duration_in_text(&message));
    Refusal { status, reason, delay, url: url.map(str::to_string), message }
}

/// Reasons told only in prose (the bare 403s and capacity 503s some paths send).
fn reason_from_text(status: u16, message: &str) -> Reason {
    let lower = message.to_ascii_lowercase();
    if lower.contains("no capacity available") {
        Reason::ModelCapacityExhausted
    } else if status == 403 && lower.contains("terms of service") {
        Reason::TosViolation
    } else if status == 403 && lower.contains("not eligible") {
        Reason::NotEligible
    } else if status == 401 {
        Reason::Unauthenticated
    } else {
        Reason::Other
    }
}

/// A duration given as a JSON string ("1.5s") or, leniently, a number of seconds.
fn duration_value(v: &Value) -> Option<Duration> {
    match v {
        Value::String(s) => parse_go_duration(s),
        Value::Number(n) => n.as_f64().and_then(seconds),
        _ => None,
    }
}

fn seconds(s: f64) -> Option<Duration> {
    (s.is_finite() && (0.0..1e12).contains(&s)).then(|| Duration::from_secs_f64(s))
}

/// Parses Go / protobuf durations: `25h20m26.179915352s`, `479.417207ms`, `0.479417207s`, `1m`, `250us`.
/// The whole text must be a duration.
pub fn parse_go_duration(text: &str) -> Option<Duration> {
    let (duration, used) = go_duration_prefix(text.trim().as_bytes())?;
    (used == text.trim().len()).then_some(duration)
}

/// The longest Go duration at the start of `bytes`, and how many bytes it took.
fn go_duration_prefix(bytes: &[u8]) -> Option<(Duration, usize)> {
    let mut total = 0f64;
    let mut i = 0;
    let mut terms = 0;
    while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let Some(number) = std::str::from_utf8(&bytes[start..i]).ok().and_then(|n| n.parse::<f64>().ok())
        else {
            // A lone `.` (end of a sentence) ends the duration before it.
            i = start;
            break;
        };
        let rest = &bytes[i..];
        let (scale, unit_len) = if rest.starts_with(b"ms") {
            (1e-3, 2)
        } else if rest.starts_with(b"us") {
            (1e-6, 2)
        } else if rest.starts_with("µs".as_bytes()) {
            (1e-6, "µs".len())
        } else if rest.starts_with(b"ns") {
            (1e-9, 2)
        } else if rest.starts_with(b"h") {
            (3600.0, 1)
        } else if rest.starts_with(b"m") {
            (60.0, 1)
        } else if rest.starts_with(b"s") {
            (1.0, 1)
        } else {
            // A number without a unit ends the duration before it.
            i = start;
            break;
        };
        total += number * scale;
        i += unit_len;
        terms += 1;
    }
    if terms == 0 {
        return None;
    }
    seconds(total).map(|d| (d, i))
}

/// The first duration written in a message ("…reset after 25h20m26s.", "Resets in 108h48m29s.").
pub fn duration_in_text(message: &str) -> Option<Duration> {
    let bytes = message.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let boundary_before = i == 0 || !bytes[i - 1].is_ascii_alphanumeric() && bytes[i - 1] != b'.';
        if boundary_before && bytes[i].is_ascii_digit() {
            if let Some((duration, used)) = go_duration_prefix(&bytes[i..]) {
                let end = i + used;
                if end == bytes.len() || !bytes[end].is_ascii_alphanumeric() {
                    return Some(duration);
                }
            }
        }
        i += 1;
    }
    None
}

/// `Retry-After`: delta seconds (decimals tolerated) or an HTTP date (IMF-fixdate).
pub fn parse_retry_after(value: &str, now_unix_ms: u64) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return seconds(secs);
    }
    let at = parse_http_date_ms(value)?;
    Some(Duration::from_millis(at.saturating_sub(now_unix_ms)))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` → unix milliseconds.
pub fn parse_http_date_ms(text: &str) -> Option<u64> {
    let (_, rest) = text.split_once(", ")?;
    let mut parts = rest.split_ascii_whitespace();
    let day: u32 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next()?.parse().ok()?;
    let (h, m, s) = hms(parts.next()?)?;
    if parts.next()? != "GMT" {
        return None;
    }
    unix_ms(year, month, day, h, m, s, 0, 0)
}

/// `2026-04-28T09:06:26Z`, `2026-04-28T09:06:26.5+02:00` → unix milliseconds.
pub fn parse_rfc3339_ms(text: &str) -> Option<u64> {
    let text = text.trim();
    let (date, time) = text.split_once(['T', 't', ' '])?;
    let mut d = date.splitn(3, '-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: u32 = d.next()?.parse().ok()?;
    let day: u32 = d.next()?.parse().ok()?;
    let (clock, offset_minutes) = if let Some(clock) = time.strip_suffix(['Z', 'z']) {
        (clock, 0i64)
    } else {
        let cut = time.rfind(['+', '-'])?;
        let (clock, offset) = time.split_at(cut);
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let (oh, om) = offset[1..].split_once(':')?;
        let (oh, om) = (oh.parse::<i64>().ok()?, om.parse::<i64>().ok()?);
        // Real offsets are within a day; anything else is not a timestamp (and would overflow below).
        if !(0..24).contains(&oh) || !(0..60).contains(&om) {
            return None;
        }
        (clock, sign * (oh * 60 + om))
    };
    let (whole, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let (h, m, s) = hms(whole)?;
    let millis = if fraction.is_empty() {
        0
    } else {
        let digits: String = fraction.chars().take(3).collect();
        let value: u32 = digits.parse().ok()?;
        value * 10u32.pow(3 - digits.len() as u32)
    };
    unix_ms(year, month, day, h, m, s, millis, offset_minutes)
}

fn hms(text: &str) -> Option<(u32, u32, u32)> {
    let mut t = text.splitn(3, ':');
    let h = t.next()?.parse().ok()?;
    let m = t.next()?.parse().ok()?;
    let s = t.next()?.parse().ok()?;
    (h < 24 && m < 60 && s < 61).then_some((h, m, s))
}

#[allow(clippy::too_many_arguments)]
fn unix_ms(
    year: i64,
    month: u32,
    day: u32,
    h: u32,
    m: u32,
    s: u32,
    millis: u32,
    offset_minutes: i64,
) -> Option<u64> {
    // Both formats write four-digit years; a longer one from a hostile body would overflow the arithmetic.
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || !(0..=9999).contains(&year) {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + (h * 3600 + m * 60 + s) as i64 - offset_minutes * 60;
    u64::try_from(secs).ok().map(|s| s * 1000 + millis as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_777_000_000_000; // 2026-04-24T03:06:40Z

    /// Found by the `retry_hint` fuzz target (docs/reliability.md): an offset or year of many digits
    /// overflowed the millisecond arithmetic (a panic with overflow checks, a wrong delay without).
    #[test]
    fn absurd_offsets_and_years_are_not_timestamps() {
        assert_eq!(parse_rfc3339_ms("2026-04-28T09:06:26+5555555555555555550:00"), None);
        assert_eq!(
            parse_rfc3339_ms("7-08-4 \u{7f}07-5555555555555555550z7-08-3 \u{7f}07-55555555555055508:0"),
            None
        );
        assert_eq!(parse_rfc3339_ms("2026-04-28T09:06:26+24:00"), None);
        assert_eq!(parse_rfc3339_ms("99999999999999999-04-28T09:06:26Z"), None);
        assert_eq!(parse_http_date_ms("Sun, 06 Nov 99999999999999999 08:49:37 GMT"), None);
        assert_eq!(parse_rfc3339_ms("2026-04-28T09:06:26+02:00"), Some(1_777_359_986_000));
    }

    #[test]
    fn go_and_proto_durations() {
        assert_eq!(parse_go_duration("25h20m26s"), Some(Duration::from_secs(91_226)));
        assert_eq!(parse_go_duration("479.417207ms"), Some(Duration::from_nanos(479_417_207)));
        assert_eq!(parse_go_duration("0.479417207s"), Some(Duration::from_nanos(479_417_207)));
        let long = parse_go_duration("25h20m26.179915352s").unwrap();
        assert_eq!(long.as_secs(), 91_226);
        assert_eq!(parse_go_duration("91226.179915352s").unwrap().as_secs(), 91_226);
        assert_eq!(parse_go_duration("250us"), Some(Duration::from_micros(250)));
        assert_eq!(parse_go_duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_go_duration("5"), None);
        assert_eq!(parse_go_duration("soon"), None);
        assert_eq!(parse_go_duration("3s later"), None);
    }

    #[test]
    fn durations_in_prose() {
        let m = "You have exhausted your capacity on this model. Your quota will reset after 25h20m26s.";
        assert_eq!(duration_in_text(m), Some(Duration::from_secs(91_226)));
        let m =
            "Individual quota reached. Contact your administrator to enable overages. Resets in 108h48m29s.";
        assert_eq!(duration_in_text(m), Some(Duration::from_secs(108 * 3600 + 48 * 60 + 29)));
        assert_eq!(duration_in_text("retry in 479.4ms please"), Some(Duration::from_micros(479_400)));
        assert_eq!(duration_in_text("No capacity available for model gemini-3-flash on the server"), None);
        assert_eq!(duration_in_text("Resource has been exhausted (e.g. check quota)."), None);
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("120", NOW), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("1.5", NOW), Some(Duration::from_millis(1500)));
        assert_eq!(parse_http_date_ms("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777_000));
        let in_a_minute = parse_retry_after("Fri, 24 Apr 2026 03:07:40 GMT", NOW);
        assert_eq!(in_a_minute, Some(Duration::from_secs(60)));
        assert_eq!(parse_retry_after("Fri, 24 Apr 2020 03:07:40 GMT", NOW), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("whenever", NOW), None);
        assert_eq!(parse_retry_after("-3", NOW), None);
    }

    #[test]
    fn rfc3339_stamps() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339_ms("2026-04-24T03:06:40Z"), Some(NOW));
        assert_eq!(parse_rfc3339_ms("2026-04-24T05:06:40.25+02:00"), Some(NOW + 250));
        assert_eq!(parse_rfc3339_ms("2026-13-01T00:00:00Z"), None);
    }

    #[test]
    fn quota_exhausted_uses_retry_info_first() {
        let body = br#"{"error":{"code":429,"message":"You have exhausted your capacity on this model. Your quota will reset after 25h20m26s.","status":"RESOURCE_EXHAUSTED",
 "details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"QUOTA_EXHAUSTED","domain":"cloudcode-pa.googleapis.com",
   "metadata":{"uiMessage":"true","model":"claude-opus-4-6-thinking","quotaResetDelay":"25h20m26.179915352s","quotaResetTimeStamp":"2026-04-28T09:06:26Z"}},
  {"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"91226.179915352s"}]}}"#;
        let r = classify(429, body, None, NOW);
        assert_eq!(r.reason, Reason::QuotaExhausted);
        assert_eq!(r.delay.map(|d| d.as_secs()), Some(91_226));
        assert!(
            matches!(r.verdict(Duration::from_secs(5)), Verdict::QuotaExhausted { rest } if rest.as_secs() == 91_226)
        );
    }

    #[test]
    fn each_delay_source_is_used_when_alone() {
        let info = |metadata: &str| {
            format!(
                r#"{{"error":{{"code":429,"message":"x","details":[{{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"QUOTA_EXHAUSTED","metadata":{metadata}}}]}}}}"#
            )
        };
        let r = classify(429, info(r#"{"quotaResetDelay":"1h"}"#).as_bytes(), None, NOW);
        assert_eq!(r.delay, Some(Duration::from_secs(3600)));
        let r =
            classify(429, info(r#"{"quotaResetTimeStamp":"2026-04-24T04:06:40Z"}"#).as_bytes(), None, NOW);
        assert_eq!(r.delay, Some(Duration::from_secs(3600)));
        let r = classify(429, info("{}").as_bytes(), Some("7"), NOW);
        assert_eq!(r.delay, Some(Duration::from_secs(7)));
        let bare = br#"{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED"}}"#;
        let r = classify(429, bare, None, NOW);
        assert_eq!((r.reason, r.delay), (Reason::Other, None));
        assert_eq!(r.verdict(Duration::from_secs(5)), Verdict::RateLimited { rest: Duration::from_secs(5) });
        let prose = br#"{"error":{"code":429,"message":"Individual quota reached. Resets in 108h48m29s."}}"#;
        assert!(matches!(
            classify(429, prose, None, NOW).verdict(Duration::from_secs(5)),
            Verdict::QuotaExhausted { .. }
        ));
    }

    #[test]
    fn rate_limit_capacity_and_forbidden_are_told_apart() {
        let rate = br#"{"error":{"code":429,"message":"reset after 0s.","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"RATE_LIMIT_EXCEEDED","metadata":{"quotaResetDelay":"479.417207ms"}},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"0.479417207s"}]}}"#;
        assert_eq!(
            classify(429, rate, None, NOW).verdict(Duration::from_secs(5)),
            Verdict::RateLimited { rest: Duration::from_nanos(479_417_207) }
        );
        let capacity = br#"{"error":{"code":503,"message":"No capacity available for model gemini-3-flash on the server","status":"UNAVAILABLE","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"MODEL_CAPACITY_EXHAUSTED"}]}}"#;
        assert_eq!(classify(503, capacity, None, NOW).verdict(Duration::ZERO), Verdict::Capacity);
        assert_eq!(classify(429, capacity, None, NOW).verdict(Duration::ZERO), Verdict::Capacity);
        let validation = br#"{"error":{"code":403,"message":"Verify your account","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"VALIDATION_REQUIRED","metadata":{"validation_url":"https://accounts.google.com/v"}}]}}"#;
        assert_eq!(
            classify(403, validation, None, NOW).verdict(Duration::ZERO),
            Verdict::Forbidden {
                reason: Reason::ValidationRequired,
                url: Some("https://accounts.google.com/v".into())
            }
        );
        let tos = br#"{"error":{"code":403,"message":"Gemini has been disabled in this account for violation of Terms of Service."}}"#;
        assert!(matches!(
            classify(403, tos, None, NOW).verdict(Duration::ZERO),
            Verdict::Forbidden { reason: Reason::TosViolation, .. }
        ));
        let project = br#"{"error":{"code":403,"message":"The caller does not have permission"}}"#;
        assert_eq!(classify(403, project, None, NOW).verdict(Duration::ZERO), Verdict::AccountRefused);
        assert_eq!(classify(401, b"", None, NOW).verdict(Duration::ZERO), Verdict::Unauthenticated);
        assert_eq!(classify(500, b"<html>", None, NOW).verdict(Duration::ZERO), Verdict::ServerError);
        assert_eq!(classify(400, b"{}", None, NOW).verdict(Duration::ZERO), Verdict::RequestFault);
    }
}
