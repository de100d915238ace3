//! An upstream refusal (status, JSON body, `Retry-After`) read into a verdict, and every duration and date
//! parser `retry_hint` has, on the same bytes. Input: 2 bytes of status, then the body and the header value
//! separated by a NUL.
#![no_main]

use std::time::Duration;

use levitate_filters::retry_hint::{
    classify, duration_in_text, parse_go_duration, parse_http_date_ms, parse_retry_after, parse_rfc3339_ms,
};
use libfuzzer_sys::fuzz_target;

/// 2026-12-01T00:00:00Z: a fixed "now", so a crash replays exactly.
const NOW_MS: u64 = 1_796_083_200_000;

fuzz_target!(|data: &[u8]| {
    let (status, rest) = match data {
        [hi, lo, rest @ ..] => (u16::from_be_bytes([*hi, *lo]), rest),
        _ => (429, data),
    };
    let mut fields = rest.splitn(2, |b| *b == 0);
    let body = fields.next().unwrap_or_default();
    let retry_after = fields.next().and_then(|h| std::str::from_utf8(h).ok());
    let refusal = classify(status, body, retry_after, NOW_MS);
    let _ = refusal.verdict(Duration::from_secs(5));
    let _ = refusal.reason.as_str();
    if let Ok(text) = std::str::from_utf8(body) {
        let _ = parse_go_duration(text);
        let _ = duration_in_text(text);
        let _ = parse_retry_after(text, NOW_MS);
        let _ = parse_http_date_ms(text);
        let _ = parse_rfc3339_ms(text);
    }
});
