//! Console sessions: who logged in with the admin key, held in memory only, each with its own CSRF token.
//!
//! A session id and a CSRF token are 256 random bits from the system's generator (`ring`). The id travels
//! only in an `HttpOnly; SameSite=Strict` cookie; the token is written into every page's forms and must come
//! back with every state-changing request. A session remembers a digest of the admin key it logged in with:
//! when a reload changes the key, every session made with the old one stops working. Sessions end at their
//! expiry, at logout, or when the process ends (a restart asks everyone to log in again, by design).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// How long a session lasts after login.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// More live sessions than this and the oldest are dropped (a login loop must not grow memory for ever).
const MAX_SESSIONS: usize = 256;
/// The cookie's name.
pub const COOKIE: &str = "levitate_console";
/// Failed logins allowed per [`FAILURE_WINDOW`], from everyone together; beyond it every login attempt is
/// refused until the window has room again, which makes guessing the admin key hopeless even from many
/// addresses (the cost: under such an attack the operator waits a minute too).
pub const MAX_FAILURES: usize = 10;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// One logged-in browser.
#[derive(Clone, Debug)]
pub struct Session {
    pub csrf: String,
    expires: Instant,
    key_digest: [u8; 32],
}

/// Every live session, by id.
#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, Session>>,
    /// When the recent failed logins happened, oldest first.
    failures: Mutex<std::collections::VecDeque<Instant>>,
}

/// The digest a session keeps of the admin key (an empty key when none is configured).
pub fn key_digest(admin_key: Option<&str>) -> [u8; 32] {
    Sha256::digest(admin_key.unwrap_or("").as_bytes()).into()
}

/// 256 random bits, base64url.
pub fn random_token() -> Option<String> {
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes).ok()?;
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Whether `presented` is the admin key (constant time); with no key configured, anything is.
pub fn key_matches(expected: Option<&str>, presented: &str) -> bool {
    match expected {
        None => true,
        Some(expected) => {
            presented.len() == expected.len() && bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
        }
    }
}

impl Sessions {
    /// Whether a login may be tried now: `Err(seconds)` to wait when too many failed in the last minute.
    pub fn may_try(&self, now: Instant) -> Result<(), u64> {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        while failures.front().is_some_and(|at| now.duration_since(*at) >= FAILURE_WINDOW) {
            failures.pop_front();
        }
        match failures.front() {
            Some(oldest) if failures.len() >= MAX_FAILURES => {
                Err((FAILURE_WINDOW.saturating_sub(now.duration_since(*oldest))).as_secs().max(1))
            }
            _ => Ok(()),
        }
    }

    /// Counts a failed login.
    pub fn failed(&self, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        failures.push_back(now);
        while failures.len() > MAX_FAILURES {
            failures.pop_front();
        }
    }

    /// Opens a session for the current admin key; returns its id and the session.
    pub fn open(&self, admin_key: Option<&str>, now: Instant) -> Option<(String, Session)> {
        let id = random_token()?;
        let session =
            Session { csrf: random_token()?, expires: now + SESSION_TTL, key_digest: key_digest(admin_key) };
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        live.retain(|_, s| s.expires > now);
        while live.len() >= MAX_SESSIONS {
            let Some(oldest) = live.iter().min_by_key(|(_, s)| s.expires).map(|(id, _)| id.clone()) else {
                break;
            };
            live.remove(&oldest);
        }
        live.insert(id.clone(), session.clone());
        Some((id, session))
    }

    /// The live session of `id`, if it has not expired and was opened with the admin key in force now.
    pub fn get(&self, id: &str, admin_key: Option<&str>, now: Instant) -> Option<Session> {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let session = live.get(id)?.clone();
        let digest = key_digest(admin_key);
        if session.expires <= now || !bool::from(session.key_digest.ct_eq(&digest)) {
            live.remove(id);
            return None;
        }
        Some(session)
    }

    /// Ends a session (logout).
    pub fn close(&self, id: &str) {
        self.live.lock().unwrap_or_else(PoisonError::into_inner).remove(id);
    }
}

impl Session {
    /// Whether `presented` is this session's CSRF token (constant time).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        presented.len() == self.csrf.len() && bool::from(presented.as_bytes().ct_eq(self.csrf.as_bytes()))
    }
}

/// The session id in a `Cookie:` header value.
pub fn cookie_value(header: &str) -> Option<&str> {
    header.split(';').map(str::trim).find_map(|pair| pair.strip_prefix(COOKIE)?.strip_prefix('='))
}

/// The `Set-Cookie` value of a new session (`Secure` when the admin listener speaks TLS).
pub fn set_cookie(id: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{COOKIE}={id}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        SESSION_TTL.as_secs()
    )
}

/// The `Set-Cookie` value that removes the cookie (logout).
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_lives_until_expiry_or_logout() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        let (id, session) = sessions.open(Some("admin-secret"), t0).unwrap();
        assert_eq!(id.len(), 43);
        assert_ne!(id, session.csrf);
        assert!(sessions.get(&id, Some("admin-secret"), t0 + Duration::from_secs(60)).is_some());
        assert!(sessions.get(&id, Some("admin-secret"), t0 + SESSION_TTL).is_none());
        let (id, _) = sessions.open(Some("admin-secret"), t0).unwrap();
        sessions.close(&id);
        assert!(sessions.get(&id, Some("admin-secret"), t0).is_none());
    }

    #[test]
    fn a_changed_admin_key_ends_old_sessions() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        let (id, _) = sessions.open(Some("old"), t0).unwrap();
        assert!(sessions.get(&id, Some("new"), t0).is_none());
        assert!(sessions.get(&id, Some("old"), t0).is_none(), "removed once refused");
    }

    #[test]
    fn csrf_and_key_checks() {
        let sessions = Sessions::default();
        let (_, session) = sessions.open(None, Instant::now()).unwrap();
        assert!(session.csrf_matches(&session.csrf.clone()));
        assert!(!session.csrf_matches(""));
        assert!(!session.csrf_matches(&format!("{}x", session.csrf)));
        assert!(
            key_matches(Some("k1"), "k1") && !key_matches(Some("k1"), "k2") && !key_matches(Some("k1"), "")
        );
        assert!(key_matches(None, ""));
    }

    #[test]
    fn cookies() {
        assert_eq!(cookie_value("a=b; levitate_console=xyz; c=d"), Some("xyz"));
        assert_eq!(cookie_value("levitate_consolex=1"), None);
        let set = set_cookie("xyz", true);
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Secure"));
        assert!(set.contains("Max-Age=43200"));
    }

    #[test]
    fn failed_logins_are_throttled() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        for i in 0..MAX_FAILURES {
            assert_eq!(sessions.may_try(t0 + Duration::from_secs(i as u64)), Ok(()));
            sessions.failed(t0 + Duration::from_secs(i as u64));
        }
        assert_eq!(sessions.may_try(t0 + Duration::from_secs(10)), Err(50));
        assert_eq!(sessions.may_try(t0 + FAILURE_WINDOW), Ok(()), "the oldest failure left the window");
    }

    #[test]
    fn sessions_are_bounded() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        for i in 0..(MAX_SESSIONS + 10) {
            sessions.open(None, t0 + Duration::from_millis(i as u64)).unwrap();
        }
        assert_eq!(sessions.live.lock().unwrap().len(), MAX_SESSIONS);
    }
}
