//! `warmup:` in levitate.yaml: the optional scheduler that sends one minimal request per account and model
//! family at chosen times, so the accounts' quota windows start when the operator wants them to (a window
//! opens on the first request). Off when the section is absent.
//!
//! `at` lists times of day in UTC (`"06:00"`), or `every` gives an interval; with neither, warmup runs only
//! when asked (`POST /admin/warmup`). `families` names the model families to warm, as a list of known
//! families or a map from a family name to the upstream model that warms it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// The known families and the model each is warmed with.
pub const FAMILIES: &[(&str, &str)] =
    &[("gemini", "gemini-3-flash"), ("claude", "claude-sonnet-4-6"), ("gpt-oss", "gpt-oss-120b-medium")];

/// The shortest `every` accepted: warmup starts windows, it is not a keep-alive.
const MIN_EVERY: Duration = Duration::from_secs(60);

/// `warmup:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmupFile {
    /// Times of day, UTC, `HH:MM`.
    #[serde(default)]
    pub at: Vec<String>,
    /// An interval (`5h`), counted from the start.
    pub every: Option<String>,
    #[serde(default = "default_families")]
    pub families: WarmupFamilies,
}

/// `families:` as a list of known family names or a map family → model.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum WarmupFamilies {
    List(Vec<String>),
    Map(BTreeMap<String, String>),
}

fn default_families() -> WarmupFamilies {
    WarmupFamilies::List(vec!["gemini".into(), "claude".into()])
}

/// When warmup runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// Only when asked through the admin API.
    OnDemand,
    /// At these seconds of the UTC day, sorted.
    At(Vec<u32>),
    Every(Duration),
}

impl Schedule {
    /// How long from `now_unix` (seconds) until the next slot; `None` for on-demand only. A slot that is
    /// now counts as passed, so one slot never runs twice.
    pub fn next_in(&self, now_unix: u64) -> Option<Duration> {
        match self {
            Schedule::OnDemand => None,
            Schedule::Every(every) => Some(*every),
            Schedule::At(slots) => {
                let second = (now_unix % 86_400) as u32;
                let wait = slots.iter().map(|s| (s + 86_400 - second - 1) % 86_400 + 1).min()?;
                Some(Duration::from_secs(u64::from(wait)))
            }
        }
    }
}

/// The warmup scheduler's settings, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WarmupSettings {
    pub schedule: Schedule,
    /// Family name → the upstream model that warms it, in order.
    pub families: Vec<(String, String)>,
}

fn time_of_day(text: &str) -> Option<u32> {
    let (h, m) = text.trim().split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 3600 + m * 60)
}

/// Checks `warmup:`; a problem names the key at fault.
pub fn build(file: &WarmupFile) -> Result<WarmupSettings, (&'static str, String)> {
    let schedule = match (&file.at[..], &file.every) {
        ([], None) => Schedule::OnDemand,
        ([_, ..], Some(_)) => return Err(("every", "warmup: give either at or every, not both".into())),
        ([], Some(every)) => {
            let every = humantime::parse_duration(every.trim())
                .map_err(|e| ("every", format!("warmup.every: {every:?} is not a duration: {e}")))?;
            if every < MIN_EVERY {
                return Err(("every", format!("warmup.every must be at least {}s", MIN_EVERY.as_secs())));
            }
            Schedule::Every(every)
        }
        (at, None) => {
            let mut slots = Vec::with_capacity(at.len());
            for t in at {
                slots.push(
                    time_of_day(t)
                        .ok_or_else(|| ("at", format!("warmup.at: {t:?} is not a UTC time HH:MM")))?,
                );
            }
            slots.sort_unstable();
            slots.dedup();
            Schedule::At(slots)
        }
    };
    let families: Vec<(String, String)> = match &file.families {
        WarmupFamilies::Map(map) => map.iter().map(|(f, m)| (f.clone(), m.clone())).collect(),
        WarmupFamilies::List(list) => {
            let mut out = Vec::new();
            for name in list {
                let Some((_, model)) = FAMILIES.iter().find(|(f, _)| f == name) else {
                    let known: Vec<&str> = FAMILIES.iter().map(|(f, _)| *f).collect();
                    return Err(("families", format!("warmup.families: unknown family {name:?} (one of {known:?}, or a map family: model)")));
                };
                out.push((name.clone(), model.to_string()));
            }
            out
        }
    };
    if families.is_empty() || families.iter().any(|(f, m)| f.trim().is_empty() || m.trim().is_empty()) {
        return Err(("families", "warmup.families: name at least one family and its model".into()));
    }
    Ok(WarmupSettings { schedule, families })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<WarmupSettings, (&'static str, String)> {
        build(&serde_yaml::from_str(yaml).expect("yaml"))
    }

    #[test]
    fn schedules_and_families_are_read() {
        let s = parse("at: ['13:30', '06:00']\n").unwrap();
        assert_eq!(s.schedule, Schedule::At(vec![6 * 3600, 13 * 3600 + 1800]));
        assert_eq!(s.families[0], ("gemini".to_string(), "gemini-3-flash".to_string()));
        assert_eq!(parse("every: 5h\n").unwrap().schedule, Schedule::Every(Duration::from_secs(5 * 3600)));
        assert_eq!(parse("families: {pro: gemini-3-pro-high}\n").unwrap().schedule, Schedule::OnDemand);
        assert_eq!(parse("families: {pro: gemini-3-pro-high}\n").unwrap().families[0].1, "gemini-3-pro-high");
    }

    #[test]
    fn problems_name_their_key() {
        let key = |y: &str| parse(y).err().map(|(k, _)| k);
        assert_eq!(key("at: ['25:00']\n"), Some("at"));
        assert_eq!(key("at: ['06:00']\nevery: 1h\n"), Some("every"));
        assert_eq!(key("every: 5s\n"), Some("every"));
        assert_eq!(key("families: [mistral]\n"), Some("families"));
        assert_eq!(key("families: []\n"), Some("families"));
    }

    #[test]
    fn the_next_slot_is_strictly_later_and_wraps_to_tomorrow() {
        let at = Schedule::At(vec![6 * 3600, 18 * 3600]);
        let day = 20_000 * 86_400;
        assert_eq!(at.next_in(day + 5 * 3600), Some(Duration::from_secs(3600)));
        assert_eq!(
            at.next_in(day + 6 * 3600),
            Some(Duration::from_secs(12 * 3600)),
            "a slot that is now has passed"
        );
        assert_eq!(at.next_in(day + 19 * 3600), Some(Duration::from_secs(11 * 3600)));
        assert_eq!(Schedule::OnDemand.next_in(day), None);
    }
}
