//! `levitate accounts login`: Google's OAuth authorization-code flow with PKCE, for adding an account.
//!
//! The browser is sent to the authorize URL with a loopback redirect (`http://localhost:<free port>/oauth-callback`)
//! that this process answers. On a headless box (`--no-browser`) the operator opens the printed URL anywhere,
//! and pastes back the URL the browser was redirected to (it fails to load, which is expected) or just its
//! `code`. The code is exchanged for a refresh token (PKCE `S256` verifier, `state` checked), the email comes
//! from the userinfo endpoint, the project is discovered (or the account onboarded) with `loadCodeAssist`, and
//! the account is written to accounts.yaml atomically, which the running service then reloads.
//! Token values are never printed.

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::accounts::credentials::{AccessToken, Credentials};
use crate::accounts::file::{AccountsFile, NewAccount};
use crate::config::{AccountSpec, Secret, Snapshot, UpstreamSettings};
use crate::store::{unix_now, Store};
use crate::upstream::{Upstream, UpstreamRequest};

/// OAuth scopes the Cloud Code API needs (PROTOCOL.md §3).
pub const SCOPES: &[&str] = &[
    "https://www.googleapis.com/auth/cloud-platform",
    "https://www.googleapis.com/auth/userinfo.email",
    "https://www.googleapis.com/auth/userinfo.profile",
    "https://www.googleapis.com/auth/cclog",
    "https://www.googleapis.com/auth/experimentsandconfigs",
];
const CALLBACK_PATH: &str = "/oauth-callback";
/// How long the loopback listener waits for the browser.
const CALLBACK_WAIT: Duration = Duration::from_secs(300);
const BODY_LIMIT: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("no OAuth client secret: set the variable named by upstream.oauth_client_secret_env (or upstream.oauth_client_secret)")]
    NoClientSecret,
    #[error("cannot listen for the OAuth callback: {0}")]
    Listen(std::io::Error),
    #[error("no authorization code arrived within {0:?}")]
    Timeout(Duration),
    #[error("Google refused the authorization: {0}")]
    Denied(String),
    #[error("the callback's state does not match this login (a stale or foreign redirect)")]
    StateMismatch,
    #[error("the callback has no state parameter, so it cannot be told from a forged redirect: paste the whole URL the browser was sent to")]
    NoState,
    #[error("no authorization code in {0:?}")]
    NoCode(String),
    #[error("token exchange failed with HTTP {status}: {error}")]
    Exchange { status: u16, error: String },
    #[error("the token answer has no refresh token: revoke Levitate's access at myaccount.google.com/permissions and log in again")]
    NoRefreshToken,
    #[error("userinfo failed with HTTP {0}")]
    UserInfo(u16),
    #[error("{0}")]
    Network(String),
    #[error("{0}")]
    Discovery(String),
    #[error("{0}")]
    File(#[from] crate::accounts::file::AccountsFileError),
    #[error("reading the pasted URL: {0}")]
    Input(std::io::Error),
}

/// How the code gets back to us.
pub struct LoginOptions {
    /// Print the URL and read the redirect URL (or code) from standard input.
    pub no_browser: bool,
    /// Loopback port for the callback; 0 picks a free one.
    pub port: u16,
}

/// A PKCE verifier and its S256 challenge, and the `state` value.
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
    pub state: String,
}

impl Pkce {
    pub fn new() -> Self {
        // 2 × 122 random bits, hex: 64 characters of the unreserved set (RFC 7636 asks for 43–128).
        let verifier = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        Pkce { verifier, challenge, state: uuid::Uuid::new_v4().simple().to_string() }
    }
}

impl Default for Pkce {
    fn default() -> Self {
        Self::new()
    }
}

/// The browser URL for one login.
pub fn authorize_url(settings: &UpstreamSettings, redirect_uri: &str, pkce: &Pkce) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", &settings.oauth_client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("response_type", "code")
        .append_pair("scope", &SCOPES.join(" "))
        .append_pair("access_type", "offline")
        .append_pair("prompt", "consent")
        .append_pair("code_challenge", &pkce.challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", &pkce.state)
        .finish();
    let separator = if settings.oauth_authorize_url.contains('?') { '&' } else { '?' };
    format!("{}{separator}{query}", settings.oauth_authorize_url)
}

/// The `code` from a pasted redirect URL, a query string, or a bare code. A URL or query must carry this
/// login's `state`; a bare code is the operator's own copy from the browser, so it has none to check.
pub fn code_from_input(input: &str, expected_state: &str) -> Result<String, LoginError> {
    let input = input.trim();
    let query = match input.split_once('?') {
        Some((_, q)) => q,
        None if input.contains("code=") => input,
        None if !input.is_empty() && !input.contains(char::is_whitespace) => return Ok(input.to_string()),
        None => return Err(LoginError::NoCode(input.to_string())),
    };
    code_from_query(query.split('#').next().unwrap_or(""), expected_state)
}

fn code_from_query(query: &str, expected_state: &str) -> Result<String, LoginError> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    // `state` first: without it anyone able to reach the loopback port could end (or feed) the login, and
    // Google's own redirects, errors included, always carry it.
    match get("state") {
        None => return Err(LoginError::NoState),
        Some(state) if state != expected_state => return Err(LoginError::StateMismatch),
        Some(_) => {}
    }
    if let Some(error) = get("error") {
        return Err(LoginError::Denied(error));
    }
    get("code").filter(|c| !c.is_empty()).ok_or_else(|| LoginError::NoCode(query.to_string()))
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default = "default_expires_in")]
    expires_in: u64,
}

fn default_expires_in() -> u64 {
    3599
}

/// What a login produced (the refresh token is written to the file, never returned for printing).
#[derive(Debug)]
pub struct LoggedIn {
    pub email: String,
    pub project: String,
    pub tier: Option<String>,
    pub replaced: bool,
}

/// Runs the whole login and writes the account; prompts go to `out`, pasted input comes from `input`.
pub async fn login(
    snapshot: &Snapshot,
    options: &LoginOptions,
    input: &mut (dyn BufRead + Send),
    out: &mut (dyn Write + Send),
) -> Result<LoggedIn, LoginError> {
    let settings = &snapshot.upstream;
    if settings.oauth_client_secret.is_empty() {
        return Err(LoginError::NoClientSecret);
    }
    let listener =
        tokio::net::TcpListener::bind(("127.0.0.1", options.port)).await.map_err(LoginError::Listen)?;
    let port = listener.local_addr().map_err(LoginError::Listen)?.port();
    let redirect_uri = format!("http://localhost:{port}{CALLBACK_PATH}");
    let pkce = Pkce::new();
    let url = authorize_url(settings, &redirect_uri, &pkce);
    let code = if options.no_browser {
        drop(listener);
        let _ = writeln!(
            out,
            "Open this URL in a browser on any machine and sign in with the Google account:\n\n{url}\n"
        );
        let _ = writeln!(
            out,
            "The browser then fails to load a http://localhost:{port}/… page: that is expected."
        );
        let _ = write!(out, "Paste that page's full URL (or just its code=… value) here: ");
        let _ = out.flush();
        let mut line = String::new();
        input.read_line(&mut line).map_err(LoginError::Input)?;
        code_from_input(&line, &pkce.state)?
    } else {
        let _ = writeln!(out, "Opening the browser to sign in. If it does not open, visit:\n\n{url}\n");
        let _ = out.flush();
        open_browser(&url);
        tokio::time::timeout(CALLBACK_WAIT, wait_for_callback(&listener, &pkce.state))
            .await
            .map_err(|_| LoginError::Timeout(CALLBACK_WAIT))??
    };

    complete(snapshot, &code, &redirect_uri, &pkce.verifier, out).await
}

/// The rest of a login once the authorization code is back (here, or in the web console's callback):
/// exchanges it, finds the email and the project, and writes the account to accounts.yaml.
pub async fn complete(
    snapshot: &Snapshot,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
    out: &mut (dyn Write + Send),
) -> Result<LoggedIn, LoginError> {
    let settings = &snapshot.upstream;
    let upstream = Arc::new(Upstream::new(settings.connect_timeout, settings.read_timeout));
    let tokens = exchange_code(&upstream, settings, code, redirect_uri, verifier).await?;
    let refresh_token = tokens.refresh_token.clone().ok_or(LoginError::NoRefreshToken)?;
    let email = user_email(&upstream, settings, &tokens.access_token).await?;
    let _ = writeln!(out, "Signed in as {email}; finding its Cloud Code project…");
    let spec = AccountSpec {
        id: email.to_ascii_lowercase(),
        email: email.clone(),
        refresh_token: Secret::new(refresh_token.clone()),
        project_id: None,
        tier: None,
        enabled: true,
        max_concurrent: snapshot.pool.max_concurrent_per_account,
        egress: settings.proxy.clone(),
        pacing: Default::default(),
    };
    let store = Store::temporary().map_err(|e| LoginError::Discovery(e.to_string()))?;
    let credentials = Credentials::new(upstream.clone(), store);
    let access = AccessToken {
        token: tokens.access_token.as_str().into(),
        expires_at: unix_now() + tokens.expires_in,
    };
    let project = credentials
        .project(&spec, settings, &access)
        .await
        .map_err(|e| LoginError::Discovery(e.to_string()))?;

    let tier = project.tier.clone().filter(|t| crate::config::is_known_tier(t));
    let replaced = AccountsFile::edit(&snapshot.paths.accounts, |file| {
        let replaced = file.accounts()?.iter().any(|a| {
            a.get("email").and_then(|e| e.as_str()).is_some_and(|e| e.trim().eq_ignore_ascii_case(&email))
        });
        if replaced {
            file.remove(&email)?;
        }
        file.add(&NewAccount {
            email: &email,
            refresh_token: &refresh_token,
            project_id: Some(&project.id),
            tier: tier.as_deref(),
        })?;
        Ok(replaced)
    })?;
    Ok(LoggedIn { email, project: project.id.to_string(), tier, replaced })
}

/// Best effort: a desktop session opens the URL; a headless one just shows it (already printed).
fn open_browser(url: &str) {
    for opener in ["xdg-open", "open"] {
        let spawned = std::process::Command::new(opener)
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        if spawned.is_ok() {
            return;
        }
    }
}

/// Answers loopback requests until one carries the authorization code (or Google's error) with this login's
/// `state`. A request without it, or with another, is answered 400 and ignored: a page that makes the browser
/// hit the port must not end the login or slip in a code of its choosing.
async fn wait_for_callback(listener: &tokio::net::TcpListener, state: &str) -> Result<String, LoginError> {
    loop {
        let (stream, _) = listener.accept().await.map_err(LoginError::Listen)?;
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        let Ok(Some(request_line)) = lines.next_line().await else { continue };
        let target = request_line.split_whitespace().nth(1).unwrap_or("").to_string();
        let Some(query) = target.strip_prefix(CALLBACK_PATH).and_then(|rest| rest.strip_prefix('?')) else {
            let _ = write
                .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await;
            continue;
        };
        let outcome = code_from_query(query, state);
        if let Err(refused @ (LoginError::NoState | LoginError::StateMismatch)) = &outcome {
            let page = format!("Levitate: this callback was refused and ignored: {refused}.");
            let response = format!(
                "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
            let _ = write.write_all(response.as_bytes()).await;
            let _ = write.shutdown().await;
            continue;
        }
        let page = match &outcome {
            Ok(_) => "Levitate: signed in. You can close this tab and return to the terminal.",
            Err(_) => "Levitate: the sign-in did not complete. See the terminal for the reason.",
        };
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
            page.len()
        );
        let _ = write.write_all(response.as_bytes()).await;
        let _ = write.shutdown().await;
        return outcome;
    }
}

async fn exchange_code(
    upstream: &Upstream,
    settings: &UpstreamSettings,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
) -> Result<TokenAnswer, LoginError> {
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("code", code)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("client_id", &settings.oauth_client_id)
        .append_pair("client_secret", settings.oauth_client_secret.expose())
        .append_pair("code_verifier", verifier)
        .finish();
    let headers = [
        ("Content-Type", "application/x-www-form-urlencoded".to_string()),
        ("Accept", "application/json".to_string()),
        ("User-Agent", format!("vscode/1.105.0 ({})", settings.user_agent)),
    ];
    let request = UpstreamRequest {
        url: &settings.oauth_token_url,
        path: "",
        headers: &headers,
        body: Bytes::from(form),
        egress: login_egress(settings),
    };
    let (status, body) =
        upstream.post(request, BODY_LIMIT).await.map_err(|e| LoginError::Network(e.to_string()))?;
    if status != 200 {
        // Only the error code: the description may echo request parameters.
        let error = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| "no error code".into());
        return Err(LoginError::Exchange { status, error });
    }
    serde_json::from_slice(&body)
        .map_err(|e| LoginError::Exchange { status, error: format!("unreadable token answer: {e}") })
}

/// The login's own calls leave through `upstream.proxy` when one is set, like the account will.
fn login_egress(settings: &UpstreamSettings) -> Option<crate::egress::Egress<'_>> {
    settings.proxy.as_ref().map(|proxy| crate::egress::Egress { account: "levitate-login", proxy })
}

async fn user_email(
    upstream: &Upstream,
    settings: &UpstreamSettings,
    access_token: &str,
) -> Result<String, LoginError> {
    let headers = [
        ("Authorization", format!("Bearer {access_token}")),
        ("Accept", "application/json".to_string()),
        ("User-Agent", format!("vscode/1.105.0 ({})", settings.user_agent)),
    ];
    let request = UpstreamRequest {
        url: &settings.oauth_userinfo_url,
        path: "",
        headers: &headers,
        body: Bytes::new(),
        egress: login_egress(settings),
    };
    let (status, body) =
        upstream.get(request, BODY_LIMIT).await.map_err(|e| LoginError::Network(e.to_string()))?;
    if status != 200 {
        return Err(LoginError::UserInfo(status));
    }
    serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("email").and_then(|e| e.as_str()).map(str::to_string))
        .filter(|e| e.contains('@'))
        .ok_or(LoginError::UserInfo(status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_challenge_is_s256_of_the_verifier() {
        let p = Pkce::new();
        assert_eq!(p.verifier.len(), 64);
        assert_eq!(p.challenge, URL_SAFE_NO_PAD.encode(Sha256::digest(p.verifier.as_bytes())));
        assert_ne!(Pkce::new().verifier, p.verifier);
        // RFC 7636 appendix B.
        let rfc = URL_SAFE_NO_PAD.encode(Sha256::digest(b"dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"));
        assert_eq!(rfc, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }

    #[test]
    fn pasted_input_forms() {
        let url = "http://localhost:4242/oauth-callback?state=s1&code=4%2F0Abc&scope=x";
        assert_eq!(code_from_input(url, "s1").unwrap(), "4/0Abc");
        assert_eq!(code_from_input("  sim-code-a@x\n", "s1").unwrap(), "sim-code-a@x");
        assert_eq!(code_from_input("code=c1&state=s1", "s1").unwrap(), "c1");
        assert!(matches!(code_from_input(url, "other"), Err(LoginError::StateMismatch)));
        assert!(matches!(
            code_from_input("http://localhost:1/oauth-callback?state=s&error=access_denied", "s"),
            Err(LoginError::Denied(_))
        ));
        assert!(matches!(code_from_input("", "s"), Err(LoginError::NoCode(_))));
    }

    #[test]
    fn a_callback_without_this_logins_state_is_refused() {
        let no_state = code_from_query("code=4%2F0Abc&scope=x", "s1").unwrap_err();
        assert!(matches!(no_state, LoginError::NoState));
        assert!(no_state.to_string().contains("no state parameter"), "{no_state}");
        assert!(matches!(code_from_query("state=&code=c", "s1"), Err(LoginError::StateMismatch)));
        assert!(matches!(code_from_query("state=s2&code=c", "s1"), Err(LoginError::StateMismatch)));
        // A forged error redirect must not end the login either.
        assert!(matches!(code_from_query("error=access_denied", "s1"), Err(LoginError::NoState)));
        assert!(matches!(
            code_from_input("http://localhost:1/oauth-callback?code=c", "s1"),
            Err(LoginError::NoState)
        ));
        assert_eq!(code_from_query("state=s1&code=c", "s1").unwrap(), "c");
    }

    #[tokio::test]
    async fn the_loopback_listener_ignores_a_callback_without_state_and_waits_for_the_real_one() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let waiting = tokio::spawn(async move { wait_for_callback(&listener, "s1").await });
        let get = |target: &'static str| async move {
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            stream.write_all(format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
            let mut answer = String::new();
            tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut answer).await.unwrap();
            answer
        };
        let forged = get("/oauth-callback?code=evil").await;
        assert!(forged.starts_with("HTTP/1.1 400") && forged.contains("no state parameter"), "{forged}");
        let wrong = get("/oauth-callback?state=s2&code=evil").await;
        assert!(wrong.starts_with("HTTP/1.1 400") && wrong.contains("does not match"), "{wrong}");
        let real = get("/oauth-callback?state=s1&code=good").await;
        assert!(real.starts_with("HTTP/1.1 200"), "{real}");
        assert_eq!(waiting.await.unwrap().unwrap(), "good");
    }
}
