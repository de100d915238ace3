//! The usage page's chart: tokens or requests over time, stacked by group (key, model, account, …), drawn
//! on the server as inline SVG (no script, no library). The five largest groups get their own colour, the
//! rest are summed as "other". Empty periods are drawn as gaps, so the time axis is true: one bar per hour up
//! to three days, one per day beyond.

use std::collections::HashMap;

use super::html::{self, esc};
use crate::tenancy::usage::{self, Dimension, UsageGroup};

/// Groups drawn in their own colour; the rest are "other".
const TOP: usize = 5;
const PALETTE: [&str; TOP + 1] = ["#3559c7", "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#9aa1ad"];
const WIDTH: usize = 720;
const HEIGHT: u64 = 120;

/// What the bars measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    Tokens,
    Requests,
}

impl Metric {
    pub fn parse(text: Option<&str>) -> Metric {
        if text == Some("requests") {
            Metric::Requests
        } else {
            Metric::Tokens
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Tokens => "tokens",
            Metric::Requests => "requests",
        }
    }

    fn of(self, g: &UsageGroup) -> u64 {
        match self {
            Metric::Tokens => g.total_tokens,
            Metric::Requests => g.requests,
        }
    }
}

/// The chart's data: period starts (hour numbers), series labels, and `values[series][period]`.
#[derive(Debug, PartialEq)]
pub struct Stacks {
    pub step: u64,
    pub first: u64,
    pub labels: Vec<String>,
    pub values: Vec<Vec<u64>>,
}

/// Arranges `rows` (grouped by `dims` and `hour`) of hours `from..to` into at most [`TOP`] + 1 series.
pub fn stacks(rows: &[UsageGroup], dims: &[Dimension], from: u64, to: u64, metric: Metric) -> Stacks {
    let step = if to.saturating_sub(from) > 72 { 24 } else { 1 };
    let first = from - from % step;
    let periods = (to.saturating_sub(first).div_ceil(step)).max(1) as usize;
    let label_of = |g: &UsageGroup| {
        let parts: Vec<&str> =
            dims.iter().map(|d| g.labels.get(d.as_str()).map_or("-", String::as_str)).collect();
        parts.join(" × ")
    };
    let mut totals: HashMap<String, u64> = HashMap::new();
    for g in rows {
        *totals.entry(label_of(g)).or_default() += metric.of(g);
    }
    let mut ranked: Vec<(String, u64)> = totals.into_iter().filter(|(_, total)| *total > 0).collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut labels: Vec<String> = ranked.iter().take(TOP).map(|(l, _)| l.clone()).collect();
    if ranked.len() > TOP {
        labels.push("other".into());
    }
    let mut values = vec![vec![0u64; periods]; labels.len()];
    for g in rows {
        let hour = g
            .labels
            .get("hour")
            .and_then(|h| h.parse::<jiff::Timestamp>().ok())
            .map(|t| t.as_second() as u64 / 3600);
        let Some(period) = hour.filter(|h| *h >= first).map(|h| ((h - first) / step) as usize) else {
            continue;
        };
        let label = label_of(g);
        let series = labels.iter().position(|l| *l == label).unwrap_or(labels.len().saturating_sub(1));
        if let Some(cell) = values.get_mut(series).and_then(|s| s.get_mut(period)) {
            *cell += metric.of(g);
        }
    }
    Stacks { step, first, labels, values }
}

/// The SVG and its legend.
pub fn render(stacks: &Stacks, metric: Metric) -> String {
    let periods = stacks.values.first().map_or(1, Vec::len).max(1);
    let column_totals: Vec<u64> = (0..periods).map(|p| stacks.values.iter().map(|s| s[p]).sum()).collect();
    let max = column_totals.iter().copied().max().unwrap_or(0).max(1);
    let bar = (WIDTH / periods).clamp(2, 24);
    let width = periods * bar;
    let mut rects = String::new();
    for period in 0..periods {
        let mut y = HEIGHT;
        let at = usage::hour_label(stacks.first + period as u64 * stacks.step);
        for (series, label) in stacks.labels.iter().enumerate() {
            let value = stacks.values[series][period];
            if value == 0 {
                continue;
            }
            let h = (value * HEIGHT / max).max(1);
            y = y.saturating_sub(h);
            rects.push_str(&format!(
                "<rect x=\"{}\" y=\"{y}\" width=\"{}\" height=\"{h}\" fill=\"{}\"><title>{}, {}: {value} {}</title></rect>",
                period * bar,
                bar.saturating_sub(1).max(1),
                PALETTE[series.min(TOP)],
                esc(&at),
                esc(label),
                metric.as_str()
            ));
        }
    }
    let legend: String = stacks
        .labels
        .iter()
        .enumerate()
        .map(|(i, label)| {
            format!(
                "<span class=\"legend\"><svg width=\"10\" height=\"10\"><rect width=\"10\" height=\"10\" fill=\"{}\"/></svg> {}</span>",
                PALETTE[i.min(TOP)],
                esc(label)
            )
        })
        .collect();
    let unit = if stacks.step == 1 { "hour" } else { "day" };
    let last = stacks.first + periods as u64 * stacks.step;
    format!(
        "<figure><svg class=\"chart\" id=\"chart\" width=\"{width}\" height=\"{HEIGHT}\" viewBox=\"0 0 {width} {HEIGHT}\" \
         role=\"img\" aria-label=\"{metric} per {unit}\">{rects}</svg><figcaption class=\"muted\">{metric} per {unit}, \
         {} to {} UTC; tallest bar {}</figcaption><div class=\"legends\">{legend}</div></figure>",
        esc(&usage::hour_label(stacks.first)),
        esc(&usage::hour_label(last)),
        html::count(max),
        metric = metric.as_str(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const H0: u64 = 493_000; // an hour number

    fn row(key: &str, hour: u64, tokens: u64) -> UsageGroup {
        let labels = BTreeMap::from([
            ("key".to_string(), key.to_string()),
            ("hour".to_string(), usage::hour_label(hour)),
        ]);
        UsageGroup {
            labels,
            requests: 1,
            errors: 0,
            errors_by_class: BTreeMap::new(),
            input_tokens: tokens,
            output_tokens: 0,
            thinking_tokens: 0,
            cached_tokens: 0,
            total_tokens: tokens,
            attempts: 1,
            ttfb_ms_avg: None,
        }
    }

    #[test]
    fn the_largest_groups_get_a_series_and_the_rest_are_other() {
        let mut rows: Vec<UsageGroup> = (0..7).map(|i| row(&format!("k{i}"), H0 + 1, 100 - i)).collect();
        rows.push(row("k0", H0 + 3, 5));
        let s = stacks(&rows, &[Dimension::Key], H0, H0 + 4, Metric::Tokens);
        assert_eq!((s.step, s.first), (1, H0));
        assert_eq!(s.labels, ["k0", "k1", "k2", "k3", "k4", "other"]);
        assert_eq!(s.values[0], [0, 100, 0, 5]);
        assert_eq!(s.values[5], [0, 94 + 95, 0, 0], "k5 and k6");
        let requests = stacks(&rows, &[Dimension::Key], H0, H0 + 4, Metric::Requests);
        assert_eq!(requests.values[0], [0, 1, 0, 1]);
        let svg = render(&s, Metric::Tokens);
        assert!(
            svg.contains("tallest bar 679")
                && svg.contains("</svg> k0</span>")
                && svg.contains("</svg> other</span>"),
            "{svg}"
        );
    }

    #[test]
    fn long_ranges_are_drawn_by_day() {
        let s = stacks(&[row("k", H0 + 50, 7)], &[Dimension::Key], H0, H0 + 24 * 7, Metric::Tokens);
        assert_eq!(s.step, 24);
        let day = ((H0 + 50) - s.first) / 24;
        assert_eq!(s.values[0][day as usize], 7);
        assert_eq!(stacks(&[], &[Dimension::Key], H0, H0 + 2, Metric::Tokens).labels.len(), 0);
    }
}
