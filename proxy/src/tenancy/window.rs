//! The two kinds of window a key's limits count in: the last minute (`rpm`, `tpm`) and the calendar day or
//! month of the budget, in the configured time zone.
//!
//! The minute is a sliding window of 60 one-second buckets: adding, summing and finding when room frees up
//! are constant-time (60 steps) and the memory is fixed, whatever the request rate. A bucket holds what was
//! counted during its second and is forgotten once that second is a minute old, so the window is exact to
//! the second. Every function takes the current time as an argument: tests drive the clock, nothing sleeps.

use jiff::tz::TimeZone;
use jiff::Timestamp;

/// Seconds the sliding window covers.
pub const WINDOW_SECONDS: u64 = 60;

/// Counts over the last [`WINDOW_SECONDS`] seconds in one-second buckets.
#[derive(Clone, Debug)]
pub struct SlidingWindow {
    /// `(second the bucket counts, count)`, indexed by second modulo the window.
    buckets: [(u64, u64); WINDOW_SECONDS as usize],
}

impl Default for SlidingWindow {
    fn default() -> Self {
        SlidingWindow { buckets: [(0, 0); WINDOW_SECONDS as usize] }
    }
}

impl SlidingWindow {
    /// Whether the bucket for second `at` is within the window ending at `now` (inclusive).
    fn live(at: u64, now: u64) -> bool {
        at <= now && now - at < WINDOW_SECONDS
    }

    /// Adds `amount` at second `now`.
    pub fn add(&mut self, now: u64, amount: u64) {
        let slot = &mut self.buckets[(now % WINDOW_SECONDS) as usize];
        if slot.0 != now {
            *slot = (now, 0);
        }
        slot.1 = slot.1.saturating_add(amount);
    }

    /// What was counted in the last minute up to and including second `now`.
    pub fn sum(&self, now: u64) -> u64 {
        self.buckets
            .iter()
            .filter(|(at, _)| Self::live(*at, now))
            .fold(0, |sum, (_, n)| sum.saturating_add(*n))
    }

    /// Seconds from `now` until at least `excess` of what is counted has left the window (at least 1), or
    /// `None` when even an empty window would not free that much.
    pub fn seconds_until_freed(&self, now: u64, excess: u64) -> Option<u64> {
        let mut live: Vec<(u64, u64)> =
            self.buckets.iter().copied().filter(|(at, n)| *n > 0 && Self::live(*at, now)).collect();
        live.sort_unstable_by_key(|(at, _)| *at);
        let mut freed = 0u64;
        for (at, n) in live {
            freed = freed.saturating_add(n);
            if freed >= excess {
                // The bucket of second `at` leaves the window at `at + 60`.
                return Some((at + WINDOW_SECONDS).saturating_sub(now).max(1));
            }
        }
        None
    }
}

/// A calendar period (day or month) in the budget's time zone: its start and the next one's, in Unix
/// seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Period {
    pub start: i64,
    pub next: i64,
}

/// Which calendar window a budget counts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Span {
    Day,
    Month,
}

impl Span {
    pub fn as_str(self) -> &'static str {
        match self {
            Span::Day => "daily",
            Span::Month => "monthly",
        }
    }
}

/// The day or month containing `now` (Unix seconds) in `zone`. Days are calendar days, so one can last 23
/// or 25 hours when the clocks change. Falls back to UTC days of 86,400 s if the zone arithmetic fails
/// (it only can at the ends of the representable range).
pub fn period(zone: &TimeZone, span: Span, now: i64) -> Period {
    let computed = (|| {
        let zoned = Timestamp::from_second(now).ok()?.to_zoned(zone.clone());
        let (start, next) = match span {
            Span::Day => {
                let start = zoned.start_of_day().ok()?;
                let next = start.tomorrow().ok()?.start_of_day().ok()?;
                (start, next)
            }
            Span::Month => {
                let start = zoned.first_of_month().ok()?.start_of_day().ok()?;
                let next = zoned.last_of_month().ok()?.tomorrow().ok()?.start_of_day().ok()?;
                (start, next)
            }
        };
        Some(Period { start: start.timestamp().as_second(), next: next.timestamp().as_second() })
    })();
    computed.unwrap_or_else(|| {
        let start = now - now.rem_euclid(86_400);
        Period { start, next: start + 86_400 }
    })
}

/// A Unix time as RFC 3339 in `zone` (the moment a budget resets, for messages and the admin API).
pub fn rfc3339(zone: &TimeZone, at: i64) -> String {
    match Timestamp::from_second(at) {
        Ok(t) => t.to_zoned(zone.clone()).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
        Err(_) => at.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_forgets_a_second_once_it_is_a_minute_old() {
        let mut w = SlidingWindow::default();
        w.add(1000, 3);
        w.add(1030, 2);
        assert_eq!(w.sum(1030), 5);
        assert_eq!(w.sum(1059), 5);
        assert_eq!(w.sum(1060), 2, "second 1000 left the window at 1060");
        assert_eq!(w.sum(1089), 2);
        assert_eq!(w.sum(1090), 0);
        // A bucket slot reused a minute later starts from zero.
        w.add(1120, 1);
        assert_eq!(w.sum(1120), 1);
        assert_eq!(w.sum(999), 0, "a clock that went back sees nothing from the future");
    }

    #[test]
    fn room_frees_when_the_oldest_seconds_leave() {
        let mut w = SlidingWindow::default();
        w.add(100, 4);
        w.add(110, 4);
        w.add(150, 4);
        assert_eq!(w.seconds_until_freed(150, 1), Some(10), "second 100 leaves at 160");
        assert_eq!(w.seconds_until_freed(150, 5), Some(20), "seconds 100 and 110 must leave");
        assert_eq!(w.seconds_until_freed(150, 12), Some(60));
        assert_eq!(w.seconds_until_freed(150, 13), None);
        assert_eq!(w.seconds_until_freed(159, 1), Some(1));
    }

    #[test]
    fn days_and_months_follow_the_time_zone_and_its_clock_changes() {
        let utc = TimeZone::UTC;
        // 2026-03-15T12:00:00Z
        let now = 1_773_576_000;
        let day = period(&utc, Span::Day, now);
        assert_eq!((day.start, day.next - day.start), (1_773_532_800, 86_400));
        let month = period(&utc, Span::Month, now);
        assert_eq!(rfc3339(&utc, month.start), "2026-03-01T00:00:00+00:00");
        assert_eq!(rfc3339(&utc, month.next), "2026-04-01T00:00:00+00:00");

        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        // 2026-03-29 is 23 hours long in Berlin (clocks go forward at 02:00).
        let dst = 1_774_778_400; // 2026-03-29T10:00:00Z
        let day = period(&berlin, Span::Day, dst);
        assert_eq!(rfc3339(&berlin, day.start), "2026-03-29T00:00:00+01:00");
        assert_eq!(rfc3339(&berlin, day.next), "2026-03-30T00:00:00+02:00");
        assert_eq!(day.next - day.start, 23 * 3600);
        // 23:30 UTC on March 31st is already April 1st in Berlin.
        let month = period(&berlin, Span::Month, 1_774_999_800);
        assert_eq!(rfc3339(&berlin, month.start), "2026-04-01T00:00:00+02:00");
    }
}
