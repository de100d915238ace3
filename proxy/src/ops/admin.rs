//! The admin listener: `/metrics` for Prometheus and the `/admin/*` API, behind the admin key when one is set
//! (a non-loopback `admin.listen` without a key is refused by configuration validation).
//!
//! It runs as its own Pingora service on its own address so that operators can firewall it separately and
//! so a flood of client traffic never starves the scrape. No answer ever contains a secret: API keys appear
//! by name, refresh and access tokens and the admin key not at all.
//!
//! | route | what |
//! |---|---|
//! | `GET /metrics` | Prometheus text format |
//! | `GET /admin/health` | version, pid, generation, last reload (error with file:line), settings awaiting an upgrade |
//! | `GET /admin/accounts` | per account: tier, project, state, in-flight, lockouts, quota, forbidden reason and URL |
//! | `GET /admin/circuits` | per account circuit-breaker state |
//! | `POST /admin/reload` | reload the YAML files now; 200 with the report, 422 with the error |
//! | `POST /admin/accounts/{email}/enable`, `…/disable` | take an account in or out of rotation (and persist it) |
//! | `POST /admin/accounts/{email}/clear-forbidden` | the operator fixed it: lift the account's forbidden mark |
//! | `GET /admin/requests?limit=N` | the metadata-only request log, newest first |
//! | `GET /admin/config` | the configuration in force, secrets redacted |
//! | `GET /admin/usage?group_by=key,model&from=&to=` | usage rows summed by group, JSON or CSV (`format=csv`, `Accept: text/csv`) |
//! | `GET /admin/keys` | per API key: its limits and what it used against them (minute, day, month, in flight) |
//! | `/console/…` | the web console (`ops/console/`): its own login and session cookie, see docs/console.md |

use std::sync::Arc;

use async_trait::async_trait;
use http::{Method, Response};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use crate::accounts::file::AccountsFile;
use crate::app::App;
use crate::config::reload::Trigger;
use crate::config::Snapshot;
use crate::ops::console::Console;

/// Default and largest number of request-log records one `GET /admin/requests` returns.
const REQUESTS_DEFAULT: usize = 100;
const REQUESTS_MAX: usize = 5000;

pub struct Admin {
    app: Arc<App>,
    started: std::time::Instant,
    console: Arc<Console>,
}

impl Admin {
    pub fn new(app: Arc<App>) -> Self {
        Admin { console: Arc::new(Console::new(app.clone())), app, started: std::time::Instant::now() }
    }

    fn authorized(&self, session: &ServerSession) -> bool {
        let snapshot = self.app.snapshot();
        let Some(expected) = &snapshot.admin.key else {
            return true;
        };
        let presented = session
            .req_header()
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        presented.len() == expected.expose().len()
            && bool::from(presented.as_bytes().ct_eq(expected.expose().as_bytes()))
    }

    fn metrics(&self) -> Response<Vec<u8>> {
        let accounts = self.app.pool.snapshot_state();
        self.app.metrics.set_accounts(accounts.iter().map(|a| (a.email.as_str(), a.state, a.in_flight)));
        let with_proxy = accounts.iter().filter(|a| a.egress.is_some());
        self.app.metrics.set_egress(with_proxy.map(|a| (a.email.as_str(), a.egress_down.is_none())));
        reply(200, "text/plain; version=0.0.4", self.app.metrics.render())
    }

    fn health(&self) -> Value {
        let snapshot = self.app.snapshot();
        let last = self.app.reload.last();
        let accounts = self.app.pool.snapshot_state();
        let usable = accounts.iter().filter(|a| matches!(a.state, "ready" | "busy")).count();
        let config_ok = last.as_ref().is_none_or(|r| r.ok);
        let version_gates = self.app.pool.version_gates();
        json!({
            "status": if config_ok && version_gates.is_empty() { "ok" } else { "degraded" },
            "upstream_version_gates": version_gates,
            "version": env!("CARGO_PKG_VERSION"),
            "pid": std::process::id(),
            "uptime_seconds": self.started.elapsed().as_secs(),
            "listen": snapshot.listen.to_string(),
            "admin_listen": snapshot.admin.listen.to_string(),
            "accounts": accounts.len(),
            "accounts_usable": usable,
            "config": {
                "generation": self.app.reload.generation(),
                "files": [
                    snapshot.paths.main.display().to_string(),
                    snapshot.paths.routes.display().to_string(),
                    snapshot.paths.accounts.display().to_string(),
                ],
                "last_reload": last,
                "needs_upgrade": last.as_ref().map(|r| r.needs_upgrade.clone()).unwrap_or_default(),
            },
        })
    }

    fn accounts(&self) -> Value {
        let snapshot = self.app.snapshot();
        let accounts: Vec<Value> = self
            .app
            .pool
            .snapshot_state()
            .into_iter()
            .map(|status| {
                // The control-call back-off lives with the credentials: shown beside the pool's view.
                let backoff = self.app.credentials.backoff_of(&status.id);
                let mut value = json!(status);
                if let Some(object) = value.as_object_mut() {
                    object.insert("control_backoff".into(), json!(backoff));
                    // The account's client identity (not secret): what Google sees of its "install".
                    if let Some(account) = snapshot.accounts.iter().find(|a| a.id == status.id) {
                        let identity = self.app.credentials.identity(account);
                        object.insert(
                            "identity".into(),
                            json!({
                                "platform": identity.platform,
                                "machine_id": identity.machine_id,
                                "user_agent": identity.user_agent(&snapshot.upstream.user_agent),
                            }),
                        );
                    }
                }
                value
            })
            .collect();
        json!({ "accounts": accounts })
    }

    fn circuits(&self) -> Value {
        let circuits: Vec<Value> = self
            .app
            .pool
            .snapshot_state()
            .into_iter()
            .map(|a| json!({ "account": a.email, "breaker": a.breaker, "state": a.state, "in_flight": a.in_flight }))
            .collect();
        json!({ "circuits": circuits })
    }

    fn reload(&self) -> Response<Vec<u8>> {
        let report = self.app.reload(Trigger::Admin);
        let status = if report.ok { 200 } else { 422 };
        json_reply(status, &json!(report))
    }

    /// Enables or disables an account at once, then records it in accounts.yaml so it survives restarts.
    fn set_enabled(&self, email: &str, enabled: bool) -> Response<Vec<u8>> {
        let snapshot = self.app.snapshot();
        let Some(account) = snapshot.accounts.iter().find(|a| a.email.eq_ignore_ascii_case(email)) else {
            return json_reply(404, &json!({ "error": format!("no account {email}") }));
        };
        self.app.pool.set_enabled(&account.id, enabled);
        let persisted =
            AccountsFile::edit(&snapshot.paths.accounts, |file| file.set_enabled(&account.email, enabled));
        let (persisted, persist_error, reload) = match persisted {
            Ok(()) => (true, None, Some(self.app.reload(Trigger::Admin))),
            Err(e) => {
                tracing::warn!(account = %account.email, error = %e, "account state changed in memory only");
                (false, Some(e.to_string()), None)
            }
        };
        json_reply(
            200,
            &json!({
                "account": account.email,
                "enabled": enabled,
                "persisted": persisted,
                "persist_error": persist_error,
                "reload": reload,
            }),
        )
    }

    /// `GET /admin/usage`: the hourly rows in the range, summed by the requested dimensions: the cluster's
    /// (`cluster`, when Redis answered) or this instance's store's.
    fn usage(
        &self,
        query: Option<&str>,
        accept_csv: bool,
        cluster: Option<Vec<(crate::store::UsageKey, crate::store::UsageRecord)>>,
    ) -> Response<Vec<u8>> {
        use crate::tenancy::usage::{self, UsageQuery};
        let mut parsed = match UsageQuery::parse(query, crate::store::unix_now() as i64) {
            Ok(parsed) => parsed,
            Err(message) => return error(400, &message),
        };
        parsed.csv |= accept_csv;
        let (from_hour, to_hour) = parsed.hours();
        let scope = if cluster.is_some() { "cluster" } else { "instance" };
        let groups = match cluster {
            Some(rows) => Ok(usage::group(&rows, &parsed.group_by)),
            None => {
                usage::query(&self.app.tenancy.usage, &self.app.store, from_hour, to_hour, &parsed.group_by)
            }
        };
        match groups {
            Ok(groups) if parsed.csv => {
                reply(200, "text/csv; charset=utf-8", usage::to_csv(&parsed.group_by, &groups).into_bytes())
            }
            Ok(groups) => json_reply(
                200,
                &json!({
                    "from": usage::hour_label(from_hour),
                    "to": usage::hour_label(to_hour),
                    "group_by": parsed.group_by.iter().map(|d| d.as_str()).collect::<Vec<_>>(),
                    "scope": scope,
                    "rows": groups,
                }),
            ),
            Err(e) => error(500, &e.to_string()),
        }
    }

    /// `GET /admin/keys`: every configured key's limits and its use of them now.
    fn keys(&self) -> Value {
        let snapshot = self.app.snapshot();
        let settings = &snapshot.tenancy;
        let now = crate::store::unix_now_ms();
        let keys: Vec<Value> = snapshot
            .api_key_names
            .iter()
            .map(|name| {
                let policy = settings.keys.get(name.as_str());
                json!({
                    "name": name,
                    "limits": policy.map(crate::tenancy::limits::policy_json),
                    "usage": self.app.tenancy.key_usage(settings, name, now),
                })
            })
            .collect();
        json!({ "time_zone": settings.time_zone.iana_name().unwrap_or("UTC"), "keys": keys })
    }

    fn requests(&self, query: Option<&str>) -> Value {
        let limit = query
            .into_iter()
            .flat_map(|q| form_urlencoded::parse(q.as_bytes()))
            .find(|(k, _)| k == "limit")
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(REQUESTS_DEFAULT)
            .min(REQUESTS_MAX);
        json!({ "requests": crate::ops::request_log::recent(&self.app.store, limit) })
    }
}

/// The configuration in force with every secret replaced by whether it is set.
pub fn redacted_config(s: &Snapshot) -> Value {
    let set = |present: bool| if present { "<set>" } else { "<unset>" };
    json!({
        "files": {
            "main": s.paths.main.display().to_string(),
            "routes": s.paths.routes.display().to_string(),
            "accounts": s.paths.accounts.display().to_string(),
        },
        "listen": s.listen.to_string(),
        "admin": { "listen": s.admin.listen.to_string(), "key": set(s.admin.key.is_some()) },
        "auth": {
            "time_zone": s.tenancy.time_zone.iana_name().unwrap_or("UTC"),
            "api_keys": s.api_key_names.iter().map(|n| {
                let mut key = json!({ "name": n, "key": "<set>" });
                // Only keys that have limits show them, so an unlimited key reads as before.
                if let (Some(policy), Some(object)) = (s.tenancy.keys.get(n.as_str()), key.as_object_mut()) {
                    if !policy.is_unlimited() {
                        object.insert("limits".into(), crate::tenancy::limits::policy_json(policy));
                    }
                }
                key
            }).collect::<Vec<_>>(),
        },
        "usage": { "retention_days": s.tenancy.retention_days },
        "upstream": {
            "endpoints": s.upstream.endpoints.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            "oauth_token_url": s.upstream.oauth_token_url.to_string(),
            "oauth_client_id": s.upstream.oauth_client_id,
            "oauth_client_secret": set(!s.upstream.oauth_client_secret.is_empty()),
            "user_agent": s.upstream.user_agent,
            "connect_timeout": humantime::format_duration(s.upstream.connect_timeout).to_string(),
            "read_timeout": humantime::format_duration(s.upstream.read_timeout).to_string(),
            "token_refresh_lead": humantime::format_duration(s.upstream.token_refresh_lead).to_string(),
            // `scheme://host:port` only; whether credentials are set, never them.
            "proxy": s.upstream.proxy.as_ref().map(|p| p.to_string()),
            "proxy_auth": set(s.upstream.proxy.as_ref().is_some_and(|p| p.auth.is_some())),
        },
        "accounts": s.accounts.iter().map(|a| json!({
            "email": a.email,
            "refresh_token": set(!a.refresh_token.is_empty()),
            "project_id": a.project_id,
            "tier": a.tier,
            "enabled": a.enabled,
            "max_concurrent": a.max_concurrent,
            "proxy": a.egress.as_ref().map(|p| p.to_string()),
            "proxy_auth": set(a.egress.as_ref().is_some_and(|p| p.auth.is_some())),
            "min_interval_ms": a.pacing.min_interval.as_millis() as u64,
            "jitter_ms": a.pacing.jitter.as_millis() as u64,
        })).collect::<Vec<_>>(),
        "routes": {
            "models": s.aliases.upstream_models(),
            "aliases": s.aliases.aliases().iter().map(|a| json!({ "pattern": a.pattern, "target": a.target })).collect::<Vec<_>>(),
            "default": s.aliases.default_model(),
        },
        "store": { "path": s.store_path.display().to_string() },
        "limits": {
            "max_request_body": s.limits.max_request_body,
            "client_write_timeout_ms": s.limits.client_write_timeout.as_millis() as u64,
        },
        "pool": {
            "max_concurrent_per_account": s.pool.max_concurrent_per_account,
            "max_attempts": s.pool.max_attempts,
        },
        "server": {
            "threads": s.server.threads,
            "grace_period": humantime::format_duration(s.server.grace_period).to_string(),
            "pid_file": s.server.pid_file.display().to_string(),
            "upgrade_sock": s.server.upgrade_sock.display().to_string(),
        },
        "request_log": {
            "max_entries": s.request_log.max_entries,
            "max_age": humantime::format_duration(s.request_log.max_age).to_string(),
        },
    })
}

fn reply(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("Content-Type", content_type)
        .header("Content-Length", body.len())
        .header("Cache-Control", "no-store")
        .body(body)
        .unwrap_or_default()
}

fn json_reply(status: u16, body: &Value) -> Response<Vec<u8>> {
    reply(status, "application/json", body.to_string().into_bytes())
}

fn error(status: u16, message: &str) -> Response<Vec<u8>> {
    json_reply(status, &json!({ "error": message }))
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        // The console authenticates with its own session cookie, not the Authorization header.
        if let Some(response) = self.console.respond(session).await {
            return response;
        }
        if !self.authorized(session) {
            return error(401, "admin key required: Authorization: Bearer <admin.key>");
        }
        let req = session.req_header();
        let method = req.method.clone();
        let path = req.uri.path().trim_end_matches('/').to_string();
        let query = req.uri.query().map(str::to_string);
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (&method, segments.as_slice()) {
            (&Method::GET, ["metrics"]) => self.metrics(),
            (&Method::GET, ["admin", "health"]) => json_reply(200, &self.health()),
            (&Method::GET, ["admin", "accounts"]) => json_reply(200, &self.accounts()),
            (&Method::GET, ["admin", "circuits"]) => json_reply(200, &self.circuits()),
            (&Method::GET, ["admin", "requests"]) => json_reply(200, &self.requests(query.as_deref())),
            (&Method::GET, ["admin", "config"]) => json_reply(200, &redacted_config(&self.app.snapshot())),
            (&Method::GET, ["admin", "keys"]) => json_reply(200, &self.keys()),
            (&Method::GET, ["admin", "cluster"]) => json_reply(200, &self.app.shared.cluster().await),
            (&Method::GET, ["admin", "usage"]) => {
                let accept = req.headers.get("accept").and_then(|v| v.to_str().ok()).unwrap_or("");
                let accept_csv = accept.contains("text/csv");
                let admin =
                    Admin { app: self.app.clone(), started: self.started, console: self.console.clone() };
                let query = query.clone();
                // In a cluster the rows of every instance, from Redis (each publishes its own once a second).
                let cluster = match crate::tenancy::usage::UsageQuery::parse(
                    query.as_deref(),
                    crate::store::unix_now() as i64,
                ) {
                    Ok(parsed) if !parsed.instance_only && self.app.shared.enabled() => {
                        let (from_hour, to_hour) = parsed.hours();
                        self.app.shared.cluster_usage(from_hour, to_hour).await
                    }
                    _ => None,
                };
                match tokio::task::spawn_blocking(move || admin.usage(query.as_deref(), accept_csv, cluster))
                    .await
                {
                    Ok(response) => response,
                    Err(_) => error(500, "usage query failed"),
                }
            }
            (&Method::GET, ["admin", "warmup"]) => json_reply(200, &self.app.warmup.last_runs()),
            (&Method::POST, ["admin", "warmup"]) => match self.app.warmup.run_now(&self.app.snapshot()).await
            {
                Ok(report) => json_reply(200, &json!(report)),
                Err(e @ super::warmup::WarmupError::NotConfigured) => error(409, &e.to_string()),
                Err(e) => error(503, &e.to_string()),
            },
            (&Method::POST, ["admin", "reload"]) => {
                let app = self.app.clone();
                let admin = Admin { app, started: self.started, console: self.console.clone() };
                match tokio::task::spawn_blocking(move || admin.reload()).await {
                    Ok(response) => response,
                    Err(_) => error(500, "reload task failed"),
                }
            }
            (&Method::POST, ["admin", "accounts", email, action @ ("enable" | "disable")]) => {
                let email = super::path::percent_decode(email);
                let enabled = *action == "enable";
                let admin =
                    Admin { app: self.app.clone(), started: self.started, console: self.console.clone() };
                match tokio::task::spawn_blocking(move || admin.set_enabled(&email, enabled)).await {
                    Ok(response) => response,
                    Err(_) => error(500, "account update failed"),
                }
            }
            (&Method::POST, ["admin", "accounts", email, "clear-forbidden"]) => {
                let email = super::path::percent_decode(email);
                let snapshot = self.app.snapshot();
                match snapshot.accounts.iter().find(|a| a.email.eq_ignore_ascii_case(&email)) {
                    Some(account) => {
                        let cleared = self.app.pool.clear_forbidden(&account.id);
                        tracing::info!(account = %account.email, cleared, "forbidden mark cleared by the operator");
                        json_reply(200, &json!({ "account": account.email, "cleared": cleared }))
                    }
                    None => json_reply(404, &json!({ "error": format!("no account {email}") })),
                }
            }
            (_, ["metrics"] | ["admin", ..]) if known_path(&segments) => error(405, "method not allowed"),
            _ => error(404, "not found"),
        }
    }
}

fn known_path(segments: &[&str]) -> bool {
    matches!(
        segments,
        ["metrics"]
            | [
                "admin",
                "health"
                    | "accounts"
                    | "circuits"
                    | "requests"
                    | "config"
                    | "reload"
                    | "usage"
                    | "keys"
                    | "warmup"
                    | "cluster"
            ]
            | ["admin", "accounts", _, "enable" | "disable" | "clear-forbidden"]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_in_paths_are_decoded() {
        assert_eq!(super::super::path::percent_decode("a%40x.com"), "a@x.com");
        assert_eq!(super::super::path::percent_decode("a+tag@x.com"), "a+tag@x.com");
        assert_eq!(super::super::path::percent_decode("bad%zz"), "bad%zz");
    }

    #[test]
    fn method_mismatches_are_405_not_404() {
        assert!(known_path(&["admin", "reload"]));
        assert!(known_path(&["admin", "accounts", "a@x", "disable"]));
        assert!(!known_path(&["admin", "nothing"]));
    }
}
