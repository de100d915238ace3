//! The tenants' pages: API keys (usage against each limit, edit limits, disable, create), usage over time
//! (inline SVG bars, a table, CSV export) and the metadata-only request log with filters.
//!
//! A key's secret is never shown, except once: in the answer to the form that created it.

use http::Response;

use super::charts::{self, Metric};
use super::html::{self, esc};
use super::keys_file::{self, Change, KeyLimits};
use super::{back, html as html_reply, reply, session, Ctx};
use crate::config::reload::Trigger;
use crate::tenancy::usage::{self, Dimension, UsageGroup, UsageQuery};

/// How many request-log records the requests page reads before filtering, and how many it shows.
const REQUESTS_READ: usize = 5000;
const REQUESTS_SHOWN: usize = 200;

fn optional(limit: Option<u64>) -> String {
    limit.map(|v| v.to_string()).unwrap_or_default()
}

fn number_input(name: &str, value: Option<u64>, label: &str) -> String {
    format!(
        "<label>{label} <input type=\"number\" min=\"1\" name=\"{name}\" value=\"{}\" placeholder=\"no limit\"></label>",
        optional(value)
    )
}

/// The keys page; `created` is a new key's name and secret, shown this once.
pub fn keys_page(ctx: &Ctx<'_>, created: Option<(&str, &str)>) -> Response<Vec<u8>> {
    let snapshot = ctx.app.snapshot();
    let settings = &snapshot.tenancy;
    let now_ms = crate::store::unix_now_ms();
    let now = (now_ms / 1000) as i64;
    let unlimited = crate::tenancy::KeyPolicy::unlimited();
    let mut rows = Vec::new();
    for name in &snapshot.api_key_names {
        let policy = settings.keys.get(name.as_str()).unwrap_or(&unlimited);
        let used = ctx.app.tenancy.key_usage(settings, name, now_ms);
        let mut state = match policy.check_key(name, now, &settings.time_zone) {
            Ok(()) => "<span class=\"state ready\">enabled</span>".to_string(),
            Err(refusal) => format!("<span class=\"state disabled\">{}</span>", esc(refusal.reason())),
        };
        if let Some(at) = policy.expires_at {
            let when = crate::tenancy::window::rfc3339(&settings.time_zone, at);
            state.push_str(&format!("<div class=\"muted\">expires {}</div>", esc(&when)));
        }
        let models =
            policy.models.as_ref().map(|m| esc(&m.patterns().join(", "))).unwrap_or_else(|| "all".into());
        let target = format!("/console/keys/{}", html::url_part(name));
        let fields = [
            number_input("rpm", policy.rpm, "rpm"),
            number_input("tpm", policy.tpm, "tpm"),
            number_input("max_concurrent", policy.max_concurrent.map(u64::from), "concurrent"),
            number_input("daily_tokens", policy.daily_tokens, "tokens/day"),
            number_input("monthly_tokens", policy.monthly_tokens, "tokens/month"),
        ]
        .concat();
        let edit = format!(
            "<details class=\"edit\"><summary>Edit limits</summary>{}</details>",
            html::form(&format!("{target}/limits"), ctx.csrf, &fields, "Save limits", "limits")
        );
        let toggle = if policy.enabled {
            html::form(&format!("{target}/disable"), ctx.csrf, "", "Disable", "inline")
        } else {
            html::form(&format!("{target}/enable"), ctx.csrf, "", "Enable", "inline")
        };
        rows.push(vec![
            format!("<strong>{}</strong>", esc(name)),
            state,
            models,
            html::against(used.requests_last_minute, policy.rpm),
            html::against(used.tokens_last_minute, policy.tpm),
            html::against(u64::from(used.in_flight), policy.max_concurrent.map(u64::from)),
            format!(
                "{}<div class=\"muted\">resets {}</div>",
                html::against(used.tokens_today, policy.daily_tokens),
                esc(&used.day_resets_at)
            ),
            format!(
                "{}<div class=\"muted\">resets {}</div>",
                html::against(used.tokens_this_month, policy.monthly_tokens),
                esc(&used.month_resets_at)
            ),
            format!("{toggle}{edit}"),
        ]);
    }
    let header = [
        "key",
        "state",
        "models",
        "requests / min",
        "tokens / min",
        "in flight",
        "today",
        "this month",
        "actions",
    ];
    let created_html = match created {
        Some((name, secret)) => format!(
            "<div class=\"secret\" id=\"created-key\"><p>Key <strong>{}</strong> created. Copy its secret now: it is not shown again.</p>\
             <code id=\"created-secret\">{}</code></div>",
            esc(name),
            esc(secret)
        ),
        None => String::new(),
    };
    let create = html::form(
        "/console/keys",
        ctx.csrf,
        "<label>Name <input name=\"name\" required pattern=\"[A-Za-z0-9._-]{1,64}\"></label>",
        "Create key",
        "create",
    );
    let body = format!(
        "{created_html}<p class=\"muted\">Time zone for budgets: {}. Limits are written to levitate.yaml (comments kept) and \
         reloaded at once; an empty field is no limit.</p>{}<h2>New key</h2>{create}",
        esc(settings.time_zone.iana_name().unwrap_or("UTC")),
        html::table("keys", &header, &rows)
    );
    html_reply(200, html::page("keys", "Keys", ctx.csrf, ctx.param("flash"), &body))
}

/// A limit field: empty is no limit, else a positive whole number.
fn limit_field(ctx: &Ctx<'_>, name: &str) -> Result<Option<u64>, String> {
    match ctx.field(name).map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(format!("{name}: {v:?} is not a positive whole number (leave it empty for no limit)")),
        },
    }
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// `POST /console/keys/{name}/{limits|enable|disable}` and `POST /console/keys` (create).
pub fn key_action(ctx: &Ctx<'_>, name: &str, action: &str) -> Response<Vec<u8>> {
    let snapshot = ctx.app.snapshot();
    let path = snapshot.paths.main.clone();
    let (name, change) = match action {
        "create" => {
            let name = ctx.field("name").unwrap_or("").trim().to_string();
            if !valid_name(&name) {
                return back("keys", "A key name is 1 to 64 letters, digits, dots, dashes or underscores.");
            }
            let Some(secret) = session::random_token() else {
                return back("keys", "No random numbers for a key.");
            };
            (name, Change::Create { secret: format!("lvk-{secret}") })
        }
        "enable" | "disable" => (html::path_segment(name), Change::Enabled(action == "enable")),
        "limits" => {
            let parsed = (|| {
                Ok::<_, String>(KeyLimits {
                    rpm: limit_field(ctx, "rpm")?,
                    tpm: limit_field(ctx, "tpm")?,
                    max_concurrent: limit_field(ctx, "max_concurrent")?,
                    daily_tokens: limit_field(ctx, "daily_tokens")?,
                    monthly_tokens: limit_field(ctx, "monthly_tokens")?,
                })
            })();
            match parsed {
                Ok(limits) => (html::path_segment(name), Change::Limits(limits)),
                Err(message) => return back("keys", &message),
            }
        }
        other => return back("keys", &format!("Unknown action {other}.")),
    };
    if let Err(e) = keys_file::edit(&path, &name, &change) {
        return back("keys", &format!("{name}: not saved: {e}"));
    }
    let report = ctx.app.reload(Trigger::Admin);
    tracing::info!(key = %name, action, reload_ok = report.ok, "API key edited from the console");
    let outcome = match &report.error {
        None => format!("saved and reloaded (generation {})", report.generation),
        Some(e) => format!("saved, but the reload failed: {e}"),
    };
    match change {
        Change::Create { secret } if report.ok => keys_page(ctx, Some((&name, &secret))),
        _ => back("keys", &format!("{name}: {action} {outcome}")),
    }
}

/// The usage query of the page's `range` and `group_by` parameters.
fn usage_query(ctx: &Ctx<'_>) -> Result<(UsageQuery, String, String), String> {
    let range = ctx.param("range").unwrap_or("1d").to_string();
    let group = ctx.param("group_by").unwrap_or("key,model").to_string();
    let query = format!("from={}&group_by={}", html::url_part(&range), html::url_part(&group));
    UsageQuery::parse(Some(&query), crate::store::unix_now() as i64).map(|q| (q, range, group))
}

fn groups(ctx: &Ctx<'_>, q: &UsageQuery, dims: &[Dimension]) -> Result<Vec<UsageGroup>, String> {
    let (from, to) = q.hours();
    usage::query(&ctx.app.tenancy.usage, &ctx.app.store, from, to, dims).map_err(|e| e.to_string())
}

pub fn usage_page(ctx: &Ctx<'_>) -> Response<Vec<u8>> {
    let (q, range, group) = match usage_query(ctx) {
        Ok(parsed) => parsed,
        Err(message) => return back("usage", &message),
    };
    let metric = Metric::parse(ctx.param("metric"));
    let mut by_hour = q.group_by.clone();
    by_hour.push(Dimension::Hour);
    let (table_groups, hours) = match (groups(ctx, &q, &q.group_by), groups(ctx, &q, &by_hour)) {
        (Ok(t), Ok(h)) => (t, h),
        (Err(e), _) | (_, Err(e)) => return back("overview", &format!("usage could not be read: {e}")),
    };
    let max_tokens = table_groups.iter().map(|g| g.total_tokens).max().unwrap_or(0);
    let mut header: Vec<&str> = q.group_by.iter().map(|d| d.as_str()).collect();
    header.extend(["requests", "errors", "input", "output", "thinking", "cached", "tokens", "ttfb avg"]);
    let rows: Vec<Vec<String>> = table_groups
        .iter()
        .map(|g| {
            let mut row: Vec<String> =
                q.group_by.iter().map(|d| esc(g.labels.get(d.as_str()).map_or("", String::as_str))).collect();
            row.extend([
                html::count(g.requests),
                html::count(g.errors),
                html::count(g.input_tokens),
                html::count(g.output_tokens),
                html::count(g.thinking_tokens),
                html::count(g.cached_tokens),
                html::bar(g.total_tokens, max_tokens, &html::count(g.total_tokens)),
                g.ttfb_ms_avg.map(|t| format!("{t} ms")).unwrap_or_else(|| "–".into()),
            ]);
            row
        })
        .collect();
    let select = |name: &str, current: &str, options: &[(&str, &str)]| {
        let options: String = options
            .iter()
            .map(|(v, label)| {
                let selected = if *v == current { " selected" } else { "" };
                format!("<option value=\"{}\"{selected}>{}</option>", esc(v), esc(label))
            })
            .collect();
        format!("<select name=\"{name}\">{options}</select>")
    };
    let controls = format!(
        "<form method=\"get\" action=\"/console/usage\" class=\"filters\">{}{}{}<button type=\"submit\">Show</button>\
         <a class=\"button\" id=\"csv\" href=\"/console/usage.csv?range={}&amp;group_by={}\">CSV</a></form>",
        select("range", &range, &[("1h", "last hour"), ("1d", "last day"), ("7d", "last week"), ("30d", "last 30 days"), ("90d", "last 90 days")]),
        select(
            "group_by",
            &group,
            &[("key,model", "key × model"), ("key", "key"), ("model", "model"), ("account", "account"), ("key,model,account", "key × model × account"), ("upstream_model", "upstream model")]
        ),
        select("metric", metric.as_str(), &[("tokens", "tokens"), ("requests", "requests")]),
        esc(&html::url_part(&range)),
        esc(&html::url_part(&group)),
    );
    let body = format!(
        "{controls}<h2>{} over time</h2>{}<h2>By {}</h2>{}",
        if metric == Metric::Tokens { "Tokens" } else { "Requests" },
        {
            let (from, to) = q.hours();
            charts::render(&charts::stacks(&hours, &q.group_by, from, to, metric), metric)
        },
        esc(&group.replace(',', " × ")),
        html::table("usage", &header, &rows)
    );
    html_reply(200, html::page("usage", "Usage", ctx.csrf, ctx.param("flash"), &body))
}

pub fn usage_csv(ctx: &Ctx<'_>) -> Response<Vec<u8>> {
    let result = usage_query(ctx).and_then(|(q, _, _)| groups(ctx, &q, &q.group_by).map(|g| (q, g)));
    match result {
        Ok((q, groups)) => {
            reply(200, "text/csv; charset=utf-8", usage::to_csv(&q.group_by, &groups).into_bytes())
        }
        Err(message) => reply(400, "text/plain; charset=utf-8", message.into_bytes()),
    }
}

pub fn requests_page(ctx: &Ctx<'_>) -> Response<Vec<u8>> {
    let filter = |name: &str| ctx.param(name).map(str::to_string);
    let (key, model, status, account) = (filter("key"), filter("model"), filter("status"), filter("account"));
    let since = filter("since");
    let since_ms = match since.as_deref().map(|t| usage::parse_time(t, crate::store::unix_now() as i64)) {
        None => 0,
        Some(Ok(at)) => (at.max(0) as u64) * 1000,
        Some(Err(message)) => return back("requests", &format!("since: {message}")),
    };
    let matches = |wanted: &Option<String>, value: Option<&str>| {
        wanted.as_deref().is_none_or(|w| value.is_some_and(|v| v.contains(w)))
    };
    let records: Vec<_> = crate::ops::request_log::recent(&ctx.app.store, REQUESTS_READ)
        .into_iter()
        .filter(|r| r.at_ms >= since_ms)
        .filter(|r| matches(&key, r.key_name.as_deref()))
        .filter(|r| {
            matches(&model, r.client_model.as_deref()) || matches(&model, r.upstream_model.as_deref())
        })
        .filter(|r| matches(&account, r.account.as_deref()))
        .filter(|r| match status.as_deref() {
            None => true,
            Some("errors") => r.status >= 400,
            Some(s) if s.len() == 3 && s.ends_with("xx") => {
                r.status / 100 == u16::from(s.as_bytes()[0].saturating_sub(b'0'))
            }
            Some(s) => s.parse::<u16>().is_ok_and(|want| want == r.status),
        })
        .take(REQUESTS_SHOWN)
        .collect();
    let dash = |v: &Option<String>| esc(v.as_deref().unwrap_or("–"));
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            let class = if r.status >= 400 { "error" } else { "ok" };
            vec![
                html::time_ms(r.at_ms),
                dash(&r.key_name),
                esc(&format!("{} {}", r.protocol, r.route)),
                dash(&r.client_model),
                dash(&r.upstream_model),
                dash(&r.account),
                format!("<span class=\"{class}\">{}</span>", r.status),
                r.attempts.to_string(),
                format!("{} ms", r.latency_ms),
                r.ttfb_ms.map(|t| format!("{t} ms")).unwrap_or_else(|| "–".into()),
                format!("{} / {}", r.tokens_in, r.tokens_out + r.tokens_thoughts),
            ]
        })
        .collect();
    let input = |name: &str, value: &Option<String>, hint: &str| {
        format!(
            "<label>{name} <input name=\"{name}\" value=\"{}\" placeholder=\"{hint}\"></label>",
            esc(value.as_deref().unwrap_or(""))
        )
    };
    let body = format!(
        "<form method=\"get\" action=\"/console/requests\" class=\"filters\">{}{}{}{}{}<button type=\"submit\">Filter</button></form>\
         <p class=\"muted\">Newest first, at most {REQUESTS_SHOWN} shown; metadata only, never content. Times in UTC.</p>{}",
        input("key", &key, "name"),
        input("model", &model, "client or upstream"),
        input("status", &status, "200, 4xx, errors"),
        input("account", &account, "email"),
        input("since", &since, "10m, 2h, RFC 3339"),
        html::table(
            "requests",
            &["time", "key", "route", "model", "upstream model", "account", "status", "attempts", "latency", "ttfb", "tokens in / out"],
            &rows
        )
    );
    html_reply(200, html::page("requests", "Requests", ctx.csrf, ctx.param("flash"), &body))
}
