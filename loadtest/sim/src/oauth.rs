//! Google's OAuth token endpoint (PROTOCOL §3): form-encoded refresh and authorization-code grants answered with
//! `ya29.` access tokens the content methods then accept, errors in OAuth's own `{error, error_description}`
//! shape, plus the userinfo endpoint clients call after a login.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use crate::accounts::{Account, Accounts};

/// The scopes Antigravity asks for.
pub const SCOPES: &str =
    "https://www.googleapis.com/auth/cloud-platform https://www.googleapis.com/auth/userinfo.email \
https://www.googleapis.com/auth/userinfo.profile https://www.googleapis.com/auth/cclog \
https://www.googleapis.com/auth/experimentsandconfigs openid";

/// A failed token request, answered 400 (or 401 for a client problem) with OAuth's error shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    #[error("unsupported_grant_type: {0}")]
    UnsupportedGrantType(String),
    #[error("invalid_grant: {0}")]
    InvalidGrant(String),
}

impl OAuthError {
    pub fn status(&self) -> u16 {
        400
    }

    pub fn body(&self) -> Value {
        let (error, description) = match self {
            OAuthError::InvalidRequest(d) => ("invalid_request", d),
            OAuthError::UnsupportedGrantType(d) => ("unsupported_grant_type", d),
            OAuthError::InvalidGrant(d) => ("invalid_grant", d),
        };
        json!({"error": error, "error_description": description})
    }
}

/// A granted token and the account it belongs to.
#[derive(Debug)]
pub struct Grant {
    pub account: Arc<Account>,
    pub body: Value,
}

/// Handles `POST /token`: `content_type` is the request's header, `body` its bytes.
pub fn token(accounts: &Accounts, content_type: Option<&str>, body: &[u8]) -> Result<Grant, OAuthError> {
    let form_ok = content_type
        .map(|c| c.to_ascii_lowercase())
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    if !form_ok {
        return Err(OAuthError::InvalidRequest(
            "Invalid Content-Type: expected application/x-www-form-urlencoded".into(),
        ));
    }
    let form = parse_form(body);
    let get =
        |k: &str| form.iter().find(|(name, _)| name == k).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty());
    let grant_type = get("grant_type")
        .ok_or_else(|| OAuthError::InvalidRequest("Missing required parameter: grant_type".into()))?;
    if get("client_id").is_none() {
        return Err(OAuthError::InvalidRequest("Could not determine client ID from request.".into()));
    }
    match grant_type {
        "refresh_token" => {
            let refresh = get("refresh_token").ok_or_else(|| {
                OAuthError::InvalidRequest("Missing required parameter: refresh_token".into())
            })?;
            let account = accounts
                .by_refresh_token(refresh)
                .ok_or_else(|| OAuthError::InvalidGrant("Token has been expired or revoked.".into()))?;
            let (access, expires_in) = accounts.issue_access_token(account.clone());
            let body = json!({"access_token": access, "expires_in": expires_in, "token_type": "Bearer",
                              "scope": SCOPES});
            Ok(Grant { account, body })
        }
        "authorization_code" => {
            let code = get("code")
                .ok_or_else(|| OAuthError::InvalidRequest("Missing required parameter: code".into()))?;
            if get("redirect_uri").is_none() {
                return Err(OAuthError::InvalidRequest("Missing parameter: redirect_uri".into()));
            }
            let account = accounts
                .by_auth_code(code)
                .ok_or_else(|| OAuthError::InvalidGrant("Malformed auth code.".into()))?;
            let (access, expires_in) = accounts.issue_access_token(account.clone());
            let body = json!({"access_token": access, "expires_in": expires_in, "token_type": "Bearer",
                              "scope": SCOPES, "refresh_token": account.refresh_token,
                              "id_token": id_token(&account)});
            Ok(Grant { account, body })
        }
        other => Err(OAuthError::UnsupportedGrantType(format!("Invalid grant_type: {other}"))),
    }
}

/// The userinfo document for an account.
pub fn userinfo(account: &Account) -> Value {
    let name = account.email.split('@').next().unwrap_or("");
    json!({"id": numeric_id(account), "email": account.email, "verified_email": true, "name": name,
           "given_name": name, "picture": "https://lh3.googleusercontent.com/a/sim"})
}

fn numeric_id(account: &Account) -> String {
    let h = crate::accounts::sha(&account.email);
    let n = u64::from_le_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]);
    format!("1{n:020}")
}

/// An unsigned JWT with the claims clients read (`email`, `sub`); nobody verifies it against the sim.
fn id_token(account: &Account) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"sim","typ":"JWT"}"#);
    let claims = json!({"iss": "https://accounts.google.com", "sub": numeric_id(account),
                        "email": account.email, "email_verified": true,
                        "aud": "1071006060591-tmhssin2h21lcre235vtolojh4g403ep.apps.googleusercontent.com"});
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.c2ltLXNpZ25hdHVyZQ")
}

/// `application/x-www-form-urlencoded` into ordered pairs.
pub fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    body.split(|b| *b == b'&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let mut it = kv.splitn(2, |b| *b == b'=');
            let k = it.next().unwrap_or_default();
            let v = it.next().unwrap_or_default();
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &[u8]) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len() => {
                match std::str::from_utf8(&s[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AccountConfig;

    const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

    fn configured() -> Accounts {
        Accounts::new(
            &[AccountConfig {
                email: "a@x".into(),
                refresh_token: "1//r1".into(),
                project_id: Some("p".into()),
                tier: None,
                onboarded: true,
                quota_denied: false,
                models: None,
            }],
            3599,
        )
    }

    #[test]
    fn form_decoding() {
        assert_eq!(
            parse_form(b"a=1&b=x%2Fy+z&c=%zz&d"),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x/y z".into()),
                ("c".into(), "%zz".into()),
                ("d".into(), "".into())
            ]
        );
    }

    #[test]
    fn refresh_grant() {
        let accounts = configured();
        let g = token(
            &accounts,
            FORM,
            b"grant_type=refresh_token&refresh_token=1%2F%2Fr1&client_id=c&client_secret=s",
        )
        .expect("grant");
        assert!(g.body["access_token"].as_str().unwrap_or("").starts_with("ya29.sim-"));
        assert_eq!(g.body["expires_in"], 3599);
        assert_eq!(g.body["token_type"], "Bearer");
        assert!(g.body.get("refresh_token").is_none());
        let e = token(&accounts, FORM, b"grant_type=refresh_token&refresh_token=nope&client_id=c");
        assert_eq!(e.err().map(|e| e.body()["error"].clone()), Some(json!("invalid_grant")));
    }

    #[test]
    fn request_errors() {
        let accounts = configured();
        let e = token(&accounts, Some("application/json"), b"{}").err();
        assert_eq!(e.map(|e| e.body()["error"].clone()), Some(json!("invalid_request")));
        let e = token(&accounts, FORM, b"grant_type=password&client_id=c").err();
        assert_eq!(e.map(|e| e.body()["error"].clone()), Some(json!("unsupported_grant_type")));
        let e = token(&accounts, FORM, b"client_id=c").err();
        assert_eq!(e.map(|e| e.body()["error"].clone()), Some(json!("invalid_request")));
    }

    #[test]
    fn authorization_code_grant_returns_refresh_token() {
        let accounts = configured();
        let g = token(
            &accounts,
            FORM,
            b"grant_type=authorization_code&code=sim-code-a%40x&redirect_uri=http%3A%2F%2Flocalhost%3A51121%2Foauth-callback&client_id=c&code_verifier=v",
        )
        .expect("grant");
        assert_eq!(g.body["refresh_token"], "1//r1");
        assert!(g.body["id_token"].as_str().unwrap_or("").split('.').count() == 3);
    }
}
