//! The web console on the admin listener: server-rendered pages under `/console/` for people who would
//! rather look at the pool than read JSON. Every asset is embedded in the binary (`include_str!`): edge boxes
//! are often offline, and there is nothing to build.
//!
//! Security model (docs/console.md): login with the admin key opens an in-memory session ([`session`]) whose
//! id lives in an `HttpOnly; SameSite=Strict` cookie; every POST but the login must carry the session's CSRF
//! token (form field `csrf` or header `X-CSRF-Token`) or is refused with 403; the console is off (404) when
//! the admin listener has no key and is not on loopback. No page or JSON answer carries a secret: accounts
//! appear by email, keys by name and a short prefix of their secret at most.
//!
//! `overview.rs` has the overview, accounts and config pages, `tenants.rs` the keys, usage and requests
//! pages, `charts.rs` the usage chart, `oauth.rs` adding an account through Google's sign-in,
//! `keys_file.rs` the edits of levitate.yaml, `html.rs` the shared markup.

mod charts;
mod html;
mod keys_file;
mod oauth;
mod overview;
mod session;
mod tenants;

use std::sync::Arc;
use std::time::Instant;

use http::{Method, Response};
use pingora_core::protocols::http::ServerSession;

use crate::app::App;
use session::Sessions;

/// Largest form body the console reads (a key's limits, a login).
const MAX_FORM_BYTES: usize = 64 * 1024;

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// The console: its sessions and the application it shows.
pub struct Console {
    app: Arc<App>,
    sessions: Sessions,
    logins: oauth::PendingLogins,
}

/// What a page handler gets: the application, the session's CSRF token, the query and the form.
pub struct Ctx<'a> {
    pub app: &'a App,
    pub csrf: &'a str,
    pub query: Vec<(String, String)>,
    pub form: Vec<(String, String)>,
}

impl Ctx<'_> {
    /// A query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    }

    /// A form field.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

fn pairs(text: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(text).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

pub fn reply(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("Content-Type", content_type)
        .header("Content-Length", body.len())
        .header("Cache-Control", "no-store")
        // Pages load only their own embedded assets, are never framed, and send nothing elsewhere.
        .header("Content-Security-Policy", csp("'self'"))
        .header("X-Content-Type-Options", "nosniff")
        .header("Referrer-Policy", "no-referrer")
        .body(body)
        .unwrap_or_default()
}

/// The content security policy, with the places forms may be sent to (`form-action`, which also governs
/// where a form's answer may redirect).
fn csp(form_action: &str) -> String {
    format!("default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action {form_action}; base-uri 'none'")
}

/// `response` with `form-action` widened to the origin of `url`: the accounts page's "Add an account" form
/// answers with a redirect to Google's sign-in page, which `form-action 'self'` would block.
fn allow_form_target(mut response: Response<Vec<u8>>, url: &str) -> Response<Vec<u8>> {
    let origin: String = url.splitn(4, '/').take(3).collect::<Vec<_>>().join("/");
    let plain_origin =
        origin.contains("://") && origin.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:/[]".contains(&b));
    if plain_origin {
        if let Ok(value) = http::HeaderValue::from_str(&csp(&format!("'self' {origin}"))) {
            response.headers_mut().insert("Content-Security-Policy", value);
        }
    }
    response
}

pub fn html(status: u16, body: String) -> Response<Vec<u8>> {
    reply(status, "text/html; charset=utf-8", body.into_bytes())
}

/// A 303 to `location`, with a `Set-Cookie` when given.
pub fn redirect(location: &str, cookie: Option<String>) -> Response<Vec<u8>> {
    let mut builder = Response::builder()
        .status(303)
        .header("Location", location)
        .header("Content-Length", 0)
        .header("Cache-Control", "no-store");
    if let Some(cookie) = cookie {
        builder = builder.header("Set-Cookie", cookie);
    }
    builder.body(Vec::new()).unwrap_or_default()
}

/// A redirect back to `page` with a flash message in its query.
pub fn back(page: &str, message: &str) -> Response<Vec<u8>> {
    redirect(&format!("/console/{page}?flash={}", html::url_part(message)), None)
}

fn plain(status: u16, message: &str) -> Response<Vec<u8>> {
    reply(status, "text/plain; charset=utf-8", format!("{message}\n").into_bytes())
}

impl Console {
    pub fn new(app: Arc<App>) -> Self {
        Console { app, sessions: Sessions::default(), logins: oauth::PendingLogins::default() }
    }

    /// Answers a request under `/console`, or `None` for any other path (the admin API's).
    pub async fn respond(&self, session: &mut ServerSession) -> Option<Response<Vec<u8>>> {
        let req = session.req_header();
        let path = req.uri.path().to_string();
        if path != "/console" && !path.starts_with("/console/") {
            return None;
        }
        let snapshot = self.app.snapshot();
        let admin_key = snapshot.admin.key.as_ref().map(|k| k.expose().to_string());
        if !console_on(admin_key.is_some(), snapshot.admin.listen) {
            return Some(plain(404, "not found"));
        }
        let method = req.method.clone();
        let query = req.uri.query().map(|q| pairs(q.as_bytes())).unwrap_or_default();
        let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let cookie = header("cookie").and_then(|c| session::cookie_value(&c).map(str::to_string));
        let csrf_header = header("x-csrf-token");
        let host = header("host");
        let segments: Vec<String> = path
            .trim_start_matches('/')
            .trim_end_matches('/')
            .split('/')
            .skip(1)
            .map(str::to_string)
            .collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let form = if method == Method::POST {
            match read_form(session).await {
                Ok(form) => form,
                Err(status) => return Some(plain(status, "the form could not be read")),
            }
        } else {
            Vec::new()
        };
        let now = Instant::now();
        let secure = self.app.tls.admin.is_some();
        match (&method, segments.as_slice()) {
            (&Method::GET, ["assets", "console.css"]) => {
                return Some(reply(200, "text/css; charset=utf-8", CSS.as_bytes().to_vec()))
            }
            (&Method::GET, ["assets", "console.js"]) => {
                return Some(reply(200, "text/javascript; charset=utf-8", JS.as_bytes().to_vec()))
            }
            // Authorized by its one-time `state`: the Strict cookie is not sent on Google's redirect.
            (&Method::GET, ["oauth", "callback"]) => {
                let raw = session.req_header().uri.query().unwrap_or("").to_string();
                return Some(oauth::callback(&self.app, &self.logins, &raw).await);
            }
            (&Method::GET, ["login"]) => return Some(html(200, login_page(admin_key.is_some(), None))),
            (&Method::POST, ["login"]) => return Some(self.login(&form, admin_key.as_deref(), now, secure)),
            _ => {}
        }
        let live = cookie.as_deref().and_then(|id| self.sessions.get(id, admin_key.as_deref(), now));
        let Some(live) = live else {
            return Some(match method {
                Method::GET | Method::HEAD => redirect("/console/login", None),
                _ => plain(403, "no console session: log in first"),
            });
        };
        if method != Method::GET && method != Method::HEAD {
            let presented = form
                .iter()
                .find(|(k, _)| k == "csrf")
                .map(|(_, v)| v.clone())
                .or(csrf_header)
                .unwrap_or_default();
            if !live.csrf_matches(&presented) {
                tracing::warn!("console request refused: missing or wrong CSRF token");
                return Some(plain(403, "missing or wrong CSRF token"));
            }
        }
        let ctx = Ctx { app: &self.app, csrf: &live.csrf, query, form };
        Some(match (&method, segments.as_slice()) {
            (&Method::GET, [] | [""]) => redirect("/console/overview", None),
            (&Method::POST, ["logout"]) => {
                if let Some(id) = &cookie {
                    self.sessions.close(id);
                }
                redirect("/console/login", Some(session::clear_cookie()))
            }
            (&Method::GET, ["overview"]) => {
                self.blocking(ctx, "", "", |c, _, _| overview::overview_page(c)).await
            }
            (&Method::GET, ["api", "overview"]) => {
                self.blocking(ctx, "", "", |c, _, _| overview::overview_json(c)).await
            }
            (&Method::GET, ["accounts"]) => {
                allow_form_target(overview::accounts_page(&ctx), &snapshot.upstream.oauth_authorize_url)
            }
            (&Method::POST, ["accounts", "add"]) => oauth::start(&self.app, &self.logins, host.as_deref()),
            (&Method::POST, ["accounts", email, action]) => {
                self.blocking(ctx, email, action, overview::account_action).await
            }
            (&Method::GET, ["config"]) => overview::config_page(&ctx),
            (&Method::POST, ["reload"]) => self.blocking(ctx, "", "", overview::reload_action).await,
            (&Method::GET, ["keys"]) => {
                self.blocking(ctx, "", "", |c, _, _| tenants::keys_page(c, None)).await
            }
            (&Method::POST, ["keys"]) => self.blocking(ctx, "", "create", tenants::key_action).await,
            (&Method::POST, ["keys", name, action]) => {
                self.blocking(ctx, name, action, tenants::key_action).await
            }
            (&Method::GET, ["usage"]) => self.blocking(ctx, "", "", |c, _, _| tenants::usage_page(c)).await,
            (&Method::GET, ["usage.csv"]) => {
                self.blocking(ctx, "", "", |c, _, _| tenants::usage_csv(c)).await
            }
            (&Method::GET, ["requests"]) => {
                self.blocking(ctx, "", "", |c, _, _| tenants::requests_page(c)).await
            }
            _ => plain(404, "not found"),
        })
    }

    /// `POST /console/login`: a session for the admin key, within the failed-login throttle.
    fn login(
        &self,
        form: &[(String, String)],
        admin_key: Option<&str>,
        now: Instant,
        secure: bool,
    ) -> Response<Vec<u8>> {
        let presented = form.iter().find(|(k, _)| k == "key").map(|(_, v)| v.as_str()).unwrap_or("");
        if let Err(wait) = self.sessions.may_try(now) {
            let message = format!("Too many failed logins: try again in {wait} s.");
            return html(429, login_page(admin_key.is_some(), Some(&message)));
        }
        if !session::key_matches(admin_key, presented) {
            self.sessions.failed(now);
            tracing::warn!("console login refused: wrong admin key");
            return html(401, login_page(admin_key.is_some(), Some("That is not the admin key.")));
        }
        match self.sessions.open(admin_key, now) {
            Some((id, _)) => redirect("/console/overview", Some(session::set_cookie(&id, secure))),
            None => plain(500, "no random numbers for a session id"),
        }
    }

    /// Runs a handler that touches files or the store (the request log, usage rows, levitate.yaml) on the
    /// blocking pool, off the admin listener's event loop.
    async fn blocking(
        &self,
        ctx: Ctx<'_>,
        target: &str,
        action: &str,
        handler: fn(&Ctx<'_>, &str, &str) -> Response<Vec<u8>>,
    ) -> Response<Vec<u8>> {
        let app = self.app.clone();
        let (csrf, query, form) = (ctx.csrf.to_string(), ctx.query, ctx.form);
        let (target, action) = (target.to_string(), action.to_string());
        let task = tokio::task::spawn_blocking(move || {
            let ctx = Ctx { app: &app, csrf: &csrf, query, form };
            handler(&ctx, &target, &action)
        });
        task.await.unwrap_or_else(|_| plain(500, "the console's task failed"))
    }
}

/// Whether the console is served: only behind an admin key, or on a loopback listener. (Validation refuses a
/// keyless non-loopback admin listener already; the console does not rely on that.)
fn console_on(has_key: bool, listen: std::net::SocketAddr) -> bool {
    has_key || listen.ip().is_loopback()
}

/// Reads an `application/x-www-form-urlencoded` body of at most [`MAX_FORM_BYTES`].
async fn read_form(session: &mut ServerSession) -> Result<Vec<(String, String)>, u16> {
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_FORM_BYTES {
                    return Err(413);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(pairs(&body)),
            Err(_) => return Err(400),
        }
    }
}

fn login_page(has_key: bool, error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p class=\"flash error\" role=\"alert\">{}</p>", html::esc(e)))
        .unwrap_or_default();
    let field = if has_key {
        "<label>Admin key <input type=\"password\" name=\"key\" autocomplete=\"current-password\" autofocus required></label>"
    } else {
        "<p class=\"muted\">No admin key is configured and the admin listener is on loopback: anyone on this host may enter.</p>"
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Log in · Levitate</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <link rel=\"stylesheet\" href=\"/console/assets/console.css\"></head>\
         <body class=\"login\"><main><h1>Levitate console</h1>{error}\
         <form method=\"post\" action=\"/console/login\" id=\"login\">{field}<button type=\"submit\">Log in</button></form>\
         </main></body></html>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_is_off_on_an_open_non_loopback_listener() {
        let at = |a: &str| a.parse::<std::net::SocketAddr>().unwrap();
        assert!(console_on(false, at("127.0.0.1:8046")) && console_on(false, at("[::1]:8046")));
        assert!(console_on(true, at("0.0.0.0:8046")));
        assert!(!console_on(false, at("0.0.0.0:8046")) && !console_on(false, at("10.1.2.3:8046")));
    }

    #[test]
    fn only_the_sign_in_origin_is_added_to_form_action() {
        let page = || html(200, String::new());
        let policy =
            |r: Response<Vec<u8>>| r.headers()["content-security-policy"].to_str().unwrap().to_string();
        assert!(policy(page()).contains("form-action 'self';"));
        let widened = allow_form_target(page(), "https://accounts.google.com/o/oauth2/v2/auth");
        assert!(policy(widened).contains("form-action 'self' https://accounts.google.com;"));
        let odd = allow_form_target(page(), "https://x.test; script-src *");
        assert!(policy(odd).contains("form-action 'self';"));
    }
}
