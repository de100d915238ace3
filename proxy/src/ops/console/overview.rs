//! The pool's pages: the overview (live numbers the script polls from `/console/api/overview`), the accounts
//! with their actions, and the configuration's generation with the reload button.
//!
//! Account actions call what the admin API calls: the pool's `set_enabled` / `clear_lockouts` /
//! `clear_forbidden`, and `AccountsFile::edit` so an enable or disable survives a restart.

use http::Response;
use serde_json::{json, Value};

use super::html::{self, esc};
use super::{back, html as html_reply, reply, Ctx};
use crate::accounts::file::AccountsFile;
use crate::config::reload::{ReloadReport, Trigger};
use crate::pool::AccountStatus;

/// How many request-log records the overview reads to compute the last minute's rate.
const RATE_WINDOW_RECORDS: usize = 5000;

/// The overview's numbers, as the page renders them and the script refreshes them.
pub fn overview_numbers(ctx: &Ctx<'_>) -> Value {
    let now_ms = crate::store::unix_now_ms();
    let recent: Vec<_> = crate::ops::request_log::recent(&ctx.app.store, RATE_WINDOW_RECORDS)
        .into_iter()
        .filter(|r| r.at_ms + 60_000 >= now_ms)
        .collect();
    let errors = recent.iter().filter(|r| r.status >= 400).count();
    let error_rate = if recent.is_empty() { 0.0 } else { errors as f64 / recent.len() as f64 };
    let accounts = ctx.app.pool.snapshot_state();
    let state_count = |state: &str| accounts.iter().filter(|a| a.state == state).count();
    let locked = accounts.iter().filter(|a| !a.lockouts.is_empty()).count();
    let text = String::from_utf8_lossy(&ctx.app.metrics.render()).into_owned();
    let overhead = bucket_counts(&text, "levitate_gateway_overhead_seconds_bucket");
    let last = ctx.app.reload.last();
    json!({
        "requests_per_second": format!("{:.2}", recent.len() as f64 / 60.0),
        "requests_last_minute": recent.len(),
        "error_rate": format!("{:.1}%", error_rate * 100.0),
        "in_flight": ctx.app.metrics.active_requests(),
        "queue": ctx.app.pool.queued(),
        "overhead_p50": quantile(&overhead, 0.5).map(seconds_text).unwrap_or_else(|| "–".into()),
        "overhead_p99": quantile(&overhead, 0.99).map(seconds_text).unwrap_or_else(|| "–".into()),
        "accounts_total": accounts.len(),
        "accounts_healthy": state_count("ready"),
        "accounts_busy": state_count("busy"),
        "accounts_locked": locked,
        "accounts_forbidden": state_count("forbidden"),
        "accounts_disabled": state_count("disabled"),
        "accounts_breaker_open": state_count("breaker_open"),
        "accounts_egress_down": state_count("egress_down"),
        "generation": ctx.app.reload.generation(),
        "last_reload": last.as_ref().map(reload_text).unwrap_or_else(|| "none since start".into()),
        "last_reload_ok": last.as_ref().is_none_or(|r| r.ok),
    })
}

/// The cumulative bucket counts `(le, count)` of a histogram in Prometheus text, summed over its labels.
fn bucket_counts(text: &str, name: &str) -> Vec<(f64, u64)> {
    let mut sums: Vec<(f64, u64)> = Vec::new();
    for line in text.lines().filter(|l| l.starts_with(name)) {
        let le = line.split("le=\"").nth(1).and_then(|rest| rest.split('"').next());
        let count = line.rsplit(' ').next().and_then(|c| c.parse::<f64>().ok());
        let (Some(le), Some(count)) = (le, count) else { continue };
        let le = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::INFINITY) };
        match sums.iter_mut().find(|(b, _)| *b == le) {
            Some((_, sum)) => *sum += count as u64,
            None => sums.push((le, count as u64)),
        }
    }
    sums.sort_by(|a, b| a.0.total_cmp(&b.0));
    sums
}

/// The upper bound of the bucket the `q` quantile falls in (`None` with no observations).
fn quantile(buckets: &[(f64, u64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).ceil() as u64;
    buckets.iter().find(|(_, count)| *count >= rank.max(1)).map(|(le, _)| *le)
}

fn seconds_text(seconds: f64) -> String {
    match seconds {
        s if s.is_infinite() => "> largest bucket".into(),
        s if s < 0.001 => format!("≤ {:.0} µs", s * 1e6),
        s if s < 1.0 => format!("≤ {:.1} ms", s * 1e3),
        s => format!("≤ {s:.1} s"),
    }
}

fn reload_text(r: &ReloadReport) -> String {
    let when = html::time_ms(r.at * 1000);
    match &r.error {
        None => format!("ok at {when} UTC (generation {})", r.generation),
        Some(e) => format!("failed at {when} UTC: {e}"),
    }
}

pub fn overview_json(ctx: &Ctx<'_>) -> Response<Vec<u8>> {
    reply(200, "application/json", overview_numbers(ctx).to_string().into_bytes())
}

pub fn overview_page(ctx: &Ctx<'_>) -> Response<Vec<u8>> {
    let n = overview_numbers(ctx);
    let tile = |field: &str, label: &str| {
        let value = match &n[field] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        format!("<div class=\"tile\"><span class=\"value\" data-field=\"{field}\">{}</span><span class=\"label\">{}</span></div>", esc(&value), esc(label))
    };
    let reload_class = if n["last_reload_ok"].as_bool().unwrap_or(true) { "ok" } else { "error" };
    // A version gate stops every account alike: said first, with the setting that fixes it.
    let gates: String = ctx
        .app
        .pool
        .version_gates()
        .iter()
        .map(|g| {
            let scope = g.model.as_deref().map(|m| format!(" for {}", esc(m))).unwrap_or_default();
            format!(
                "<p class=\"error\" id=\"version-gate\">Google refuses the client version{scope} ({}, {} answers since {} UTC): \
                 set <code>upstream.user_agent</code> in levitate.yaml to a current Antigravity version and reload.</p>",
                esc(&g.user_agent),
                g.count,
                html::time_ms(g.since_ms)
            )
        })
        .collect();
    let cluster = cluster_line(&ctx.app.shared.status());
    let body = format!(
        "{gates}<section class=\"tiles\" id=\"overview\" data-poll=\"/console/api/overview\">{}{}{}{}{}{}</section>\
         <h2>Accounts</h2><section class=\"tiles\">{}{}{}{}{}{}{}</section>\
         <h2>Configuration</h2><p class=\"{reload_class}\">Generation <span data-field=\"generation\">{}</span>; last reload: \
         <span data-field=\"last_reload\">{}</span></p>{cluster}\
         <p class=\"muted\">Rates are over the last minute of the request log; overhead percentiles are the upper bounds of \
         <code>levitate_gateway_overhead_seconds</code> buckets since start. Refreshes every 3 s.</p>",
        tile("requests_per_second", "requests/s"),
        tile("error_rate", "errors (last minute)"),
        tile("overhead_p50", "gateway overhead p50"),
        tile("overhead_p99", "gateway overhead p99"),
        tile("in_flight", "in flight"),
        tile("queue", "queued for an account"),
        tile("accounts_healthy", "healthy"),
        tile("accounts_busy", "busy"),
        tile("accounts_locked", "locked (some model)"),
        tile("accounts_forbidden", "forbidden"),
        tile("accounts_disabled", "disabled"),
        tile("accounts_breaker_open", "breaker open"),
        tile("accounts_egress_down", "egress down"),
        esc(&n["generation"].to_string()),
        esc(n["last_reload"].as_str().unwrap_or("")),
    );
    html_reply(200, html::page("overview", "Overview", ctx.csrf, ctx.param("flash"), &body))
}

/// The cluster this instance belongs to (`shared_state`), as `/admin/cluster` reports it; nothing when alone.
fn cluster_line(status: &Value) -> String {
    if status["enabled"] != Value::Bool(true) {
        return String::new();
    }
    let up = status["up"].as_bool().unwrap_or(false);
    let (class, link) =
        if up { ("ok", "Redis up") } else { ("error", "Redis unreachable: serving from local state") };
    format!(
        "<h2>Cluster</h2><p class=\"{class}\" id=\"cluster\">Instance <code>{}</code>, one of {} live; {link} \
         (<code>{}</code>). Shared: {}. Details: <code>GET /admin/cluster</code>.</p>",
        esc(status["instance"].as_str().unwrap_or("?")),
        status["live_instances"],
        esc(status["redis"].as_str().unwrap_or("?")),
        esc(&status["shares"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")).unwrap_or_default()),
    )
}

fn account_row(ctx: &Ctx<'_>, a: &AccountStatus, now_ms: u64) -> Vec<String> {
    // The lowest quota first and in the summary: that is the one about to run out; the rest fold away.
    let mut by_remaining: Vec<_> = a.quotas.iter().collect();
    by_remaining
        .sort_by(|x, y| x.remaining_fraction.total_cmp(&y.remaining_fraction).then(x.model.cmp(&y.model)));
    let quota_line = |q: &crate::pool::QuotaStatus| {
        let reset =
            q.reset_ms.map(|r| format!(", resets in {}", html::countdown(r, now_ms))).unwrap_or_default();
        format!("{}: {:.0}% left{reset}", esc(&q.model), q.remaining_fraction * 100.0)
    };
    let quotas = match by_remaining.split_first() {
        None => vec!["–".to_string()],
        Some((lowest, [])) => vec![quota_line(lowest)],
        Some((lowest, rest)) => {
            let items: String = rest.iter().map(|q| format!("<li>{}</li>", quota_line(q))).collect();
            vec![format!(
                "<details class=\"quota\"><summary>{} <span class=\"muted\">(+{} models)</span></summary><ul>{items}</ul></details>",
                quota_line(lowest),
                rest.len()
            )]
        }
    };
    let lockouts: Vec<String> = a
        .lockouts
        .iter()
        .map(|l| {
            format!(
                "<div>{} ({}) for {}</div>",
                esc(&l.model),
                esc(&l.reason),
                html::countdown(l.until_ms, now_ms)
            )
        })
        .collect();
    let forbidden = match &a.forbidden {
        None => String::new(),
        Some(f) => {
            // Only an https link is made clickable: the URL comes from the upstream's error body.
            let link = match &f.url {
                Some(url) if url.starts_with("https://") => {
                    format!(
                        " <a href=\"{}\" target=\"_blank\" rel=\"noopener noreferrer\">fix it at Google</a>",
                        esc(url)
                    )
                }
                Some(url) => format!(" {}", esc(url)),
                None => String::new(),
            };
            format!("<div class=\"error\">{}: {}{link}</div>", esc(&f.reason), esc(&f.message))
        }
    };
    let warmup = match ctx.app.warmup.last_of(&a.id) {
        None => "–".to_string(),
        Some(round) => {
            let outcomes: Vec<String> = round
                .results
                .iter()
                .map(|r| {
                    let class = if r.outcome == "ok" { "ok" } else { "error" };
                    format!("<span class=\"{class}\">{} {}</span>", esc(&r.family), esc(r.outcome))
                })
                .collect();
            format!(
                "{}<div class=\"muted\">{} UTC, {}</div>",
                outcomes.join(", "),
                html::time_ms(round.at_ms),
                round.trigger
            )
        }
    };
    let forbidden = match &a.egress_down {
        Some(reason) => format!("{forbidden}<div class=\"error\">egress down: {}</div>", esc(reason)),
        None => forbidden,
    };
    let target = format!("/console/accounts/{}", html::url_part(&a.email));
    let mut actions = String::new();
    let toggle = if a.enabled { "disable" } else { "enable" };
    let button = if a.enabled { "Disable" } else { "Enable" };
    actions.push_str(&html::form(&format!("{target}/{toggle}"), ctx.csrf, "", button, "inline"));
    if !a.lockouts.is_empty() {
        actions.push_str(&html::form(
            &format!("{target}/clear-lockouts"),
            ctx.csrf,
            "",
            "Clear lockouts",
            "inline",
        ));
    }
    if a.forbidden.is_some() {
        actions.push_str(&html::form(
            &format!("{target}/clear-forbidden"),
            ctx.csrf,
            "",
            "Clear forbidden",
            "inline",
        ));
    }
    let confirm = "<label class=\"confirm\"><input type=\"checkbox\" name=\"confirm\" value=\"yes\" required> sure</label>";
    actions.push_str(&html::form(&format!("{target}/remove"), ctx.csrf, confirm, "Remove", "inline remove"));
    vec![
        esc(&a.email),
        format!("<span class=\"state {0}\">{0}</span>", esc(a.state)),
        esc(a.tier.as_deref().unwrap_or("–")),
        esc(a.project.as_deref().unwrap_or("–")),
        format!("{} / {}", a.in_flight, a.max_concurrent),
        html::count(a.served),
        quotas.concat(),
        lockouts.concat(),
        esc(a.breaker),
        forbidden,
        warmup,
        actions,
    ]
}

pub fn accounts_page(ctx: &Ctx<'_>) -> Response<Vec<u8>> {
    let now_ms = crate::store::unix_now_ms();
    let accounts = ctx.app.pool.snapshot_state();
    let rows: Vec<Vec<String>> = accounts.iter().map(|a| account_row(ctx, a, now_ms)).collect();
    let header = [
        "account",
        "state",
        "tier",
        "project",
        "in flight / cap",
        "served",
        "quota",
        "lockouts",
        "breaker",
        "forbidden",
        "last warmup",
        "actions",
    ];
    let add =
        html::form("/console/accounts/add", ctx.csrf, "", "Add an account (sign in with Google)", "add");
    let body = format!(
        "{}{add}<p class=\"muted\">Adding signs in with Google's OAuth (PKCE) and writes accounts.yaml; it needs the \
         console opened on a loopback address (or through an SSH tunnel). Elsewhere: <code>levitate accounts login --no-browser</code>.</p>",
        html::table("accounts", &header, &rows)
    );
    html_reply(200, html::page("accounts", "Accounts", ctx.csrf, ctx.param("flash"), &body))
}

/// `POST /console/accounts/{email}/{enable|disable|clear-lockouts|clear-forbidden}`.
pub fn account_action(ctx: &Ctx<'_>, email: &str, action: &str) -> Response<Vec<u8>> {
    let email = html::path_segment(email);
    let snapshot = ctx.app.snapshot();
    let Some(account) = snapshot.accounts.iter().find(|a| a.email.eq_ignore_ascii_case(&email)) else {
        return back("accounts", &format!("No account {email}."));
    };
    let message = match action {
        "enable" | "disable" => {
            let enabled = action == "enable";
            ctx.app.pool.set_enabled(&account.id, enabled);
            match AccountsFile::edit(&snapshot.paths.accounts, |file| {
                file.set_enabled(&account.email, enabled)
            }) {
                Ok(()) => {
                    let report = ctx.app.reload(Trigger::Admin);
                    format!(
                        "{} {}d and saved to accounts.yaml; {}",
                        account.email,
                        action,
                        reload_text(&report)
                    )
                }
                Err(e) => {
                    tracing::warn!(account = %account.email, error = %e, "account state changed in memory only");
                    format!("{} {}d in memory only: {e}", account.email, action)
                }
            }
        }
        "remove" if ctx.field("confirm") != Some("yes") => {
            return back("accounts", &format!("Tick the box beside Remove to remove {}.", account.email));
        }
        "remove" => match AccountsFile::edit(&snapshot.paths.accounts, |file| file.remove(&account.email)) {
            Ok(()) => {
                let report = ctx.app.reload(Trigger::Admin);
                tracing::info!(account = %account.email, "account removed from the console");
                format!("{} removed from accounts.yaml; {}", account.email, reload_text(&report))
            }
            Err(e) => format!("{} not removed: {e}", account.email),
        },
        "clear-lockouts" => {
            ctx.app.pool.clear_lockouts(&account.id);
            tracing::info!(account = %account.email, "lockouts cleared from the console");
            format!("Lockouts of {} cleared.", account.email)
        }
        "clear-forbidden" => {
            let cleared = ctx.app.pool.clear_forbidden(&account.id);
            tracing::info!(account = %account.email, cleared, "forbidden mark cleared from the console");
            format!(
                "Forbidden mark of {} {}.",
                account.email,
                if cleared { "cleared" } else { "was not set" }
            )
        }
        other => return back("accounts", &format!("Unknown action {other}.")),
    };
    back("accounts", &message)
}

pub fn config_page(ctx: &Ctx<'_>) -> Response<Vec<u8>> {
    let snapshot = ctx.app.snapshot();
    let last = ctx.app.reload.last();
    let files = [
        ("main", &snapshot.paths.main),
        ("routes", &snapshot.paths.routes),
        ("accounts", &snapshot.paths.accounts),
    ];
    let rows: Vec<Vec<String>> = files
        .iter()
        .map(|(role, path)| {
            let modified = std::fs::metadata(path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| format!("{} UTC", html::time_ms(d.as_millis() as u64)))
                .unwrap_or_else(|| "missing".into());
            vec![esc(role), format!("<code>{}</code>", esc(&path.display().to_string())), modified]
        })
        .collect();
    let last_html = match &last {
        None => "<p>No reload since start.</p>".to_string(),
        Some(r) => {
            let class = if r.ok { "ok" } else { "error" };
            let upgrade = if r.needs_upgrade.is_empty() {
                String::new()
            } else {
                format!("<p>Waiting for a binary upgrade: {}</p>", esc(&r.needs_upgrade.join(", ")))
            };
            format!("<p class=\"{class}\" id=\"last-reload\">{}</p>{upgrade}", esc(&reload_text(r)))
        }
    };
    let body = format!(
        "<p>Generation in force: <strong id=\"generation\">{}</strong></p>{}<h2>Last reload</h2>{last_html}{}",
        ctx.app.reload.generation(),
        html::table("files", &["file", "path", "modified"], &rows),
        html::form("/console/reload", ctx.csrf, "", "Reload now", "reload"),
    );
    html_reply(200, html::page("config", "Config", ctx.csrf, ctx.param("flash"), &body))
}

/// `POST /console/reload`.
pub fn reload_action(ctx: &Ctx<'_>, _: &str, _: &str) -> Response<Vec<u8>> {
    let report = ctx.app.reload(Trigger::Admin);
    back("config", &format!("Reload {}", reload_text(&report)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str =
        "levitate_gateway_overhead_seconds_bucket{protocol=\"openai\",route=\"c\",le=\"0.00005\"} 6\n\
        levitate_gateway_overhead_seconds_bucket{protocol=\"openai\",route=\"c\",le=\"0.001\"} 9\n\
        levitate_gateway_overhead_seconds_bucket{protocol=\"openai\",route=\"c\",le=\"+Inf\"} 10\n\
        levitate_gateway_overhead_seconds_bucket{protocol=\"gemini\",route=\"g\",le=\"0.00005\"} 0\n\
        levitate_gateway_overhead_seconds_bucket{protocol=\"gemini\",route=\"g\",le=\"0.001\"} 0\n\
        levitate_gateway_overhead_seconds_bucket{protocol=\"gemini\",route=\"g\",le=\"+Inf\"} 0\n\
        levitate_gateway_overhead_seconds_sum 1\n";

    #[test]
    fn overhead_percentiles_come_from_the_summed_buckets() {
        let buckets = bucket_counts(METRICS, "levitate_gateway_overhead_seconds_bucket");
        assert_eq!(buckets, vec![(0.00005, 6), (0.001, 9), (f64::INFINITY, 10)]);
        assert_eq!(quantile(&buckets, 0.5), Some(0.00005));
        assert_eq!(quantile(&buckets, 0.9), Some(0.001));
        assert_eq!(quantile(&buckets, 0.99), Some(f64::INFINITY));
        assert_eq!(quantile(&[(0.1, 0), (f64::INFINITY, 0)], 0.5), None);
        assert_eq!(seconds_text(0.00005), "≤ 50 µs");
        assert_eq!(seconds_text(0.0025), "≤ 2.5 ms");
    }
}
