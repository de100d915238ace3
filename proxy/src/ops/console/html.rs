//! HTML building for the console: escaping, the page shell (navigation, flash message, CSRF token), and the
//! small formatting helpers every page shares. Pages are plain strings: no template engine, so nothing to
//! build and nothing to download; every value that came from outside goes through [`esc`].

use std::fmt::Write;

/// The console's pages, in navigation order: (path under /console/, title).
pub const PAGES: [(&str, &str); 6] = [
    ("overview", "Overview"),
    ("accounts", "Accounts"),
    ("keys", "Keys"),
    ("usage", "Usage"),
    ("requests", "Requests"),
    ("config", "Config"),
];

/// `text` safe inside HTML element content and double-quoted attributes.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` as one percent-encoded path segment or query value.
pub fn url_part(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>().replace('+', "%20")
}

pub use crate::ops::path::percent_decode as path_segment;

/// A whole page: head with the embedded assets, navigation with `current` marked, the flash message, `body`.
/// The CSRF token is in a `<meta>` for the script and in every form the pages write with [`form`].
pub fn page(current: &str, title: &str, csrf: &str, flash: Option<&str>, body: &str) -> String {
    let mut nav = String::new();
    for (path, name) in PAGES {
        let class = if path == current { " class=\"current\"" } else { "" };
        let _ = write!(nav, "<a href=\"/console/{path}\"{class}>{name}</a>");
    }
    let flash =
        flash.map(|f| format!("<p class=\"flash\" role=\"status\">{}</p>", esc(f))).unwrap_or_default();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title} · Levitate</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"csrf-token\" content=\"{csrf}\">\
         <link rel=\"stylesheet\" href=\"/console/assets/console.css\">\
         <script src=\"/console/assets/console.js\" defer></script></head>\
         <body><header><span class=\"brand\">Levitate</span><nav>{nav}</nav>\
         <form method=\"post\" action=\"/console/logout\" class=\"logout\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button type=\"submit\">Log out</button></form></header>\
         <main><h1>{title}</h1>{flash}{body}</main></body></html>",
        title = esc(title),
        csrf = esc(csrf),
    )
}

/// A POST form to `action` with the CSRF token and `fields` (already HTML), submitted by one button.
pub fn form(action: &str, csrf: &str, fields: &str, button: &str, class: &str) -> String {
    format!(
        "<form method=\"post\" action=\"{}\" class=\"{class}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">{fields}\
         <button type=\"submit\">{}</button></form>",
        esc(action),
        esc(csrf),
        esc(button)
    )
}

/// A table from a header and rows of cells (cells already HTML).
pub fn table(id: &str, header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("<table id=\"{id}\"><thead><tr>");
    for h in header {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    if rows.is_empty() {
        let _ = write!(out, "<tr><td colspan=\"{}\" class=\"empty\">nothing yet</td></tr>", header.len());
    }
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// A horizontal bar of `value` out of `max` with its label, as inline SVG (no script, no library).
pub fn bar(value: u64, max: u64, label: &str) -> String {
    let width = if max == 0 { 0.0 } else { (value as f64 / max as f64 * 120.0).clamp(0.0, 120.0) };
    format!(
        "<svg class=\"bar\" width=\"120\" height=\"12\" role=\"img\" aria-label=\"{label}\">\
         <rect width=\"120\" height=\"12\" class=\"track\"/><rect width=\"{width:.1}\" height=\"12\" class=\"fill\"/></svg> {label}",
        label = esc(label)
    )
}

/// `used / limit` with a bar, or just `used` when there is no limit.
pub fn against(used: u64, limit: Option<u64>) -> String {
    match limit {
        Some(limit) => bar(used, limit, &format!("{} / {}", count(used), count(limit))),
        None => format!("{} <span class=\"muted\">no limit</span>", count(used)),
    }
}

/// A count with thin thousands separators.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    out
}

/// A time (Unix milliseconds) as `YYYY-MM-DD HH:MM:SS` UTC.
pub fn time_ms(at_ms: u64) -> String {
    match jiff::Timestamp::from_millisecond(at_ms as i64) {
        Ok(t) => t.strftime("%Y-%m-%d %H:%M:%S").to_string(),
        Err(_) => at_ms.to_string(),
    }
}

/// A countdown the script keeps ticking: `data-until` holds the Unix milliseconds it counts to.
pub fn countdown(until_ms: u64, now_ms: u64) -> String {
    format!(
        "<span class=\"countdown\" data-until=\"{until_ms}\">{}</span>",
        esc(&duration_text(until_ms.saturating_sub(now_ms) / 1000))
    )
}

/// Seconds as `1h 02m`, `3m 05s` or `12s`.
pub fn duration_text(seconds: u64) -> String {
    match seconds {
        s if s >= 3600 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m {:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_attributes() {
        assert_eq!(esc("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
        assert_eq!(url_part("a+b@x.com/ c"), "a%2Bb%40x.com%2F%20c");
        assert_eq!(path_segment("a%2Bb%40x.com"), "a+b@x.com");
        assert_eq!(path_segment("a+b@x.com%zz"), "a+b@x.com%zz");
    }

    #[test]
    fn numbers_and_durations_read_well() {
        assert_eq!(count(1234567), "1\u{202f}234\u{202f}567");
        assert_eq!(count(999), "999");
        assert_eq!(duration_text(3725), "1h 02m");
        assert_eq!(duration_text(185), "3m 05s");
        assert_eq!(duration_text(7), "7s");
        assert!(bar(50, 100, "half").contains("width=\"60.0\""));
        assert!(bar(500, 100, "over").contains("width=\"120.0\""));
    }

    #[test]
    fn a_page_carries_its_csrf_token_and_marks_the_current_page() {
        let html = page("keys", "Keys <x>", "tok\"en", Some("done <b>"), "<p>body</p>");
        assert!(html.contains("content=\"tok&quot;en\""));
        assert!(html.contains("href=\"/console/keys\" class=\"current\""));
        assert!(html.contains("Keys &lt;x&gt;") && html.contains("done &lt;b&gt;"));
        let f = form("/console/x", "t", "", "Go", "inline");
        assert!(f.contains("name=\"csrf\" value=\"t\"") && f.contains("method=\"post\""));
    }
}
