//! Time as Google writes it on the wire: RFC 3339 timestamps (`resetTime`, `quotaResetTimeStamp`), Go
//! duration strings (`quotaResetDelay: "25h20m26.179915352s"`, "reset after 25h20m26s") and protobuf
//! Duration JSON (`retryDelay: "0.479417207s"`). Clients parse these texts, so the sim must produce them
//! byte-for-byte in the same forms; kept here so each form has one implementation.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `2026-04-28T09:06:26Z` (whole seconds, UTC).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, (rem % 3600) / 60, rem % 60)
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Go's `time.Duration.String()`: `479.417207ms`, `25h20m26.179915352s`, `0s`.
pub fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", trim_fraction(nanos / 1_000, (nanos % 1_000) as u64, 3));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", trim_fraction(nanos / 1_000_000, (nanos % 1_000_000) as u64, 6));
    }
    let total_secs = d.as_secs();
    let (h, m, s) = (total_secs / 3600, (total_secs % 3600) / 60, total_secs % 60);
    let secs = trim_fraction(s as u128, d.subsec_nanos() as u64, 9);
    match (h, m) {
        (0, 0) => format!("{secs}s"),
        (0, m) => format!("{m}m{secs}s"),
        (h, m) => format!("{h}h{m}m{secs}s"),
    }
}

/// Go duration truncated to whole seconds, as in "Your quota will reset after 25h20m26s.".
pub fn go_duration_secs(d: Duration) -> String {
    go_duration(Duration::from_secs(d.as_secs()))
}

/// Protobuf Duration JSON: seconds with up to nine fractional digits, `0.479417207s`, `60s`.
pub fn proto_duration(d: Duration) -> String {
    format!("{}s", trim_fraction(d.as_secs() as u128, d.subsec_nanos() as u64, 9))
}

fn trim_fraction(whole: u128, frac: u64, digits: usize) -> String {
    if frac == 0 {
        return whole.to_string();
    }
    let f = format!("{frac:0digits$}");
    format!("{whole}.{}", f.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_match_google() {
        assert_eq!(go_duration(Duration::from_nanos(479_417_207)), "479.417207ms");
        assert_eq!(go_duration(Duration::new(91_226, 179_915_352)), "25h20m26.179915352s");
        assert_eq!(go_duration_secs(Duration::new(91_226, 179_915_352)), "25h20m26s");
        assert_eq!(go_duration_secs(Duration::from_millis(479)), "0s");
        assert_eq!(go_duration(Duration::from_secs(65)), "1m5s");
        assert_eq!(proto_duration(Duration::from_nanos(479_417_207)), "0.479417207s");
        assert_eq!(proto_duration(Duration::new(91_226, 179_915_352)), "91226.179915352s");
        assert_eq!(proto_duration(Duration::from_secs(60)), "60s");
    }

    #[test]
    fn rfc3339_is_utc() {
        let t = UNIX_EPOCH + Duration::from_secs(1_777_367_186);
        assert_eq!(rfc3339(t), "2026-04-28T09:06:26Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }
}
