//! Adding an account from the console: the same OAuth authorization-code flow with PKCE as
//! `levitate accounts login` (`accounts/login.rs`), with its callback served by the console.
//!
//! `POST /console/accounts/add` (a logged-in session and its CSRF token) remembers a pending login (PKCE
//! verifier, `state`, redirect URI) and sends the browser to Google. Google sends it back to
//! `GET /console/oauth/callback?state=…&code=…`. That request comes from a cross-site redirect, so the
//! `SameSite=Strict` session cookie is not sent with it: the callback is authorized by its `state` instead,
//! 128 random bits that only the session which started the login saw, usable once and for ten minutes. The
//! code is then exchanged, the email and project found, and the account written to accounts.yaml by
//! `login::complete`; the answer shows the email and project, never a token.
//!
//! Google's installed-app OAuth clients accept only loopback redirect URIs: the console must be opened on a
//! loopback address (directly or through an SSH tunnel) for this page's flow; otherwise use
//! `levitate accounts login --no-browser`.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::Response;

use super::html::esc;
use super::{html as html_reply, redirect};
use crate::accounts::login::{self, Pkce};
use crate::app::App;
use crate::config::reload::Trigger;

/// How long a started login waits for its callback.
const PENDING_TTL: Duration = Duration::from_secs(600);
/// Started logins kept at once; the oldest go first.
const MAX_PENDING: usize = 16;

struct Pending {
    verifier: String,
    redirect_uri: String,
    expires: Instant,
}

/// Logins started from the console and not yet called back, by `state`.
#[derive(Default)]
pub struct PendingLogins {
    pending: Mutex<HashMap<String, Pending>>,
}

impl PendingLogins {
    /// Starts a login whose callback is `redirect_uri`; returns the URL to send the browser to.
    pub fn start(&self, app: &App, redirect_uri: String, now: Instant) -> String {
        let pkce = Pkce::new();
        let url = login::authorize_url(&app.snapshot().upstream, &redirect_uri, &pkce);
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.retain(|_, p| p.expires > now);
        while pending.len() >= MAX_PENDING {
            let Some(oldest) = pending.iter().min_by_key(|(_, p)| p.expires).map(|(s, _)| s.clone()) else {
                break;
            };
            pending.remove(&oldest);
        }
        pending.insert(
            pkce.state,
            Pending { verifier: pkce.verifier, redirect_uri, expires: now + PENDING_TTL },
        );
        url
    }

    /// The pending login of `state`, removed: a state works once.
    fn take(&self, state: &str, now: Instant) -> Option<Pending> {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.remove(state).filter(|p| p.expires > now)
    }
}

/// The callback URL for a console reached at `host` (the request's `Host`), if it is a plain host[:port].
pub fn redirect_uri(host: Option<&str>, fallback: &str, tls: bool) -> String {
    let sane =
        |h: &&str| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    let host = host.filter(sane).unwrap_or(fallback);
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{host}/console/oauth/callback")
}

/// `POST /console/accounts/add`: off to Google.
pub fn start(app: &App, logins: &PendingLogins, host: Option<&str>) -> Response<Vec<u8>> {
    let snapshot = app.snapshot();
    if snapshot.upstream.oauth_client_secret.is_empty() {
        return super::back("accounts", &login::LoginError::NoClientSecret.to_string());
    }
    let uri = redirect_uri(host, &snapshot.admin.listen.to_string(), app.tls.admin.is_some());
    redirect(&logins.start(app, uri, Instant::now()), None)
}

/// `GET /console/oauth/callback`: finishes the login of the callback's `state`.
pub async fn callback(app: &App, logins: &PendingLogins, query: &str) -> Response<Vec<u8>> {
    let state =
        form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "state").map(|(_, v)| v.into_owned());
    let Some(pending) = state.as_deref().and_then(|s| logins.take(s, Instant::now())) else {
        return result_page(
            400,
            "This sign-in link is unknown, used or expired. Start again from the accounts page.",
        );
    };
    let code = match login::code_from_input(&format!("?{query}"), state.as_deref().unwrap_or("")) {
        Ok(code) => code,
        Err(e) => return result_page(400, &format!("The sign-in did not complete: {e}")),
    };
    let snapshot = app.snapshot();
    let done =
        login::complete(&snapshot, &code, &pending.redirect_uri, &pending.verifier, &mut std::io::sink())
            .await;
    match done {
        Ok(account) => {
            let report = app.reload(Trigger::Admin);
            tracing::info!(account = %account.email, replaced = account.replaced, "account added from the console");
            let reload = match &report.error {
                None => format!("reloaded (generation {})", report.generation),
                Some(e) => format!("but the reload failed: {e}"),
            };
            let verb = if account.replaced { "replaced" } else { "added" };
            result_page(
                200,
                &format!(
                    "Signed in as {}; project {}{}. The account was {verb} in accounts.yaml and {reload}.",
                    account.email,
                    account.project,
                    account.tier.map(|t| format!(" ({t})")).unwrap_or_default()
                ),
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "console account login failed");
            result_page(502, &format!("The account could not be added: {e}"))
        }
    }
}

fn result_page(status: u16, message: &str) -> Response<Vec<u8>> {
    let class = if status == 200 { "flash" } else { "flash error" };
    html_reply(
        status,
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Add an account · Levitate</title>\
             <link rel=\"stylesheet\" href=\"/console/assets/console.css\"></head><body class=\"login\"><main>\
             <h1>Add an account</h1><p class=\"{class}\" id=\"oauth-result\">{}</p>\
             <p><a class=\"button\" href=\"/console/accounts\">Back to the accounts</a></p></main></body></html>",
            esc(message)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_callback_uri_follows_the_host_the_browser_used() {
        assert_eq!(
            redirect_uri(Some("127.0.0.1:8046"), "x", false),
            "http://127.0.0.1:8046/console/oauth/callback"
        );
        assert_eq!(redirect_uri(Some("[::1]:8046"), "x", true), "https://[::1]:8046/console/oauth/callback");
        assert_eq!(
            redirect_uri(Some("evil/path?x"), "127.0.0.1:8046", false),
            "http://127.0.0.1:8046/console/oauth/callback"
        );
        assert_eq!(
            redirect_uri(None, "127.0.0.1:8046", false),
            "http://127.0.0.1:8046/console/oauth/callback"
        );
    }

    #[test]
    fn a_state_works_once_and_not_after_its_time() {
        let logins = PendingLogins::default();
        let t0 = Instant::now();
        let insert = |state: &str, at: Instant| {
            logins.pending.lock().unwrap().insert(
                state.to_string(),
                Pending { verifier: "v".into(), redirect_uri: "r".into(), expires: at + PENDING_TTL },
            );
        };
        insert("s1", t0);
        assert!(logins.take("s1", t0).is_some());
        assert!(logins.take("s1", t0).is_none(), "used");
        insert("s2", t0);
        assert!(logins.take("s2", t0 + PENDING_TTL).is_none(), "expired");
        assert!(logins.take("other", t0).is_none());
    }
}
