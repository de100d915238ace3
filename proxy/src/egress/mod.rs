//! How an account reaches Google: through its own egress proxy (HTTP CONNECT, HTTPS CONNECT, SOCKS5), never
//! around it.
//!
//! An account bound to a proxy must never show the gateway's own address to Google, so every call made for it
//! (token refresh, discovery, content, quota polls) opens its connection through the tunnel, and a tunnel
//! that cannot be opened is an error, never a reason to connect directly. The tunnel carries TLS end to end:
//! Pingora runs its usual handshake (SNI, certificate checks) over the stream [`connector`] hands it.
//!
//! - `tunnel`: the SOCKS5 (RFC 1928/1929) and CONNECT handshakes over any byte stream;
//! - `connector`: Pingora's custom L4 hook that dials the proxy and runs the handshake;
//! - `probe`: the background service that brings an account marked `egress_down` back;
//! - `identity`: the stable per-account client identity (user agent platform, machine id).

pub mod connector;
pub mod identity;
pub mod probe;
pub mod tunnel;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The proxy protocols accounts.yaml accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProxyKind {
    /// `http://`: plain CONNECT.
    Http,
    /// `https://`: CONNECT inside TLS to the proxy itself.
    Https,
    /// `socks5://`: the gateway resolves Google's name and hands the proxy an address.
    Socks5,
    /// `socks5h://`: the proxy resolves the name (no DNS lookup from the gateway's box).
    Socks5h,
}

impl ProxyKind {
    fn scheme(self) -> &'static str {
        match self {
            ProxyKind::Http => "http",
            ProxyKind::Https => "https",
            ProxyKind::Socks5 => "socks5",
            ProxyKind::Socks5h => "socks5h",
        }
    }

    /// Whether the gateway looks up the target's addresses itself (only `socks5://`).
    pub fn resolves_locally(self) -> bool {
        self == ProxyKind::Socks5
    }
}

/// The proxy's username and password (from `proxy_auth_env`, `user:pass`): never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyAuth {
    pub user: String,
    pub password: String,
}

impl fmt::Debug for ProxyAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyAuth").field("user", &self.user).field("password", &"<redacted>").finish()
    }
}

impl ProxyAuth {
    /// Reads `user:pass` (the password may contain `:`; the user may not).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (user, password) =
            text.split_once(':').ok_or_else(|| "the value must be user:password".to_string())?;
        if user.is_empty() {
            return Err("the user before ':' is empty".into());
        }
        // RFC 1929 carries each in one length byte.
        if user.len() > 255 || password.len() > 255 {
            return Err("user and password must be at most 255 bytes each".into());
        }
        Ok(ProxyAuth { user: user.to_string(), password: password.to_string() })
    }
}

/// One configured egress proxy.
#[derive(Clone, PartialEq, Eq)]
pub struct EgressProxy {
    pub kind: ProxyKind,
    pub host: String,
    pub port: u16,
    pub auth: Option<ProxyAuth>,
}

impl fmt::Debug for EgressProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EgressProxy({self}{})", if self.auth.is_some() { ", auth" } else { "" })
    }
}

/// `scheme://host:port`, never the credentials: what logs, metrics and the admin API show.
impl fmt::Display for EgressProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.kind.scheme(), self.host, self.port)
    }
}

impl EgressProxy {
    /// Parses `scheme://host[:port]`. Credentials written in the URL are refused: they belong in the
    /// environment (`proxy_auth_env`), where no file, log line or admin answer shows them.
    pub fn parse(text: &str, auth: Option<ProxyAuth>) -> Result<Self, String> {
        let (scheme, rest) =
            text.split_once("://").ok_or_else(|| format!("{text:?} is not a URL like socks5://host:1080"))?;
        let kind = match scheme.to_ascii_lowercase().as_str() {
            "http" => ProxyKind::Http,
            "https" => ProxyKind::Https,
            "socks5" => ProxyKind::Socks5,
            "socks5h" => ProxyKind::Socks5h,
            other => {
                return Err(format!("{other:?}: the proxy scheme must be http, https, socks5 or socks5h"))
            }
        };
        if rest.contains('@') {
            return Err("credentials in the proxy URL are refused: put user:password in the variable named \
                 by proxy_auth_env"
                .into());
        }
        let authority = rest.trim_end_matches('/');
        if authority.contains('/') || authority.contains('?') {
            return Err(format!("{text:?}: a proxy URL has no path"));
        }
        let uri: http::uri::Authority =
            authority.parse().map_err(|e| format!("{text:?}: not a host[:port]: {e}"))?;
        let host = uri.host().trim_start_matches('[').trim_end_matches(']').to_string();
        if host.is_empty() {
            return Err(format!("{text:?} has no host"));
        }
        let default_port = match kind {
            ProxyKind::Http => 80,
            ProxyKind::Https => 443,
            ProxyKind::Socks5 | ProxyKind::Socks5h => 1080,
        };
        // Read from the text: `http` drops a port that does not fit in u16 instead of refusing it.
        let port_text =
            if authority.ends_with(']') { None } else { authority.rsplit_once(':').map(|(_, p)| p) };
        let port = match port_text {
            None => default_port,
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("{text:?}: bad port {port}"))?,
        };
        Ok(EgressProxy { kind, host, port, auth })
    }
}

/// An account's way out, as the upstream client needs it for one call: the proxy, and the account it is for
/// (connections through it are pooled per account, so two accounts never share one).
#[derive(Clone, Copy, Debug)]
pub struct Egress<'a> {
    pub account: &'a str,
    pub proxy: &'a Arc<EgressProxy>,
}

/// Optional spacing of one account's upstream calls (`min_interval`, `jitter` in accounts.yaml).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Pacing {
    pub min_interval: Duration,
    /// Up to this much more, drawn per call.
    pub jitter: Duration,
}

impl Pacing {
    /// The gap before the account's next call, given a random draw in `0..=u64::MAX`.
    pub fn gap(&self, draw: u64) -> Duration {
        let jitter_ms = self.jitter.as_millis() as u64;
        let extra = if jitter_ms == 0 { 0 } else { draw % (jitter_ms + 1) };
        self.min_interval + Duration::from_millis(extra)
    }

    pub fn is_off(&self) -> bool {
        self.min_interval.is_zero() && self.jitter.is_zero()
    }
}

/// What can go wrong opening a tunnel. The proxy's own failures (unreachable, refusing, bad credentials,
/// a broken handshake) mark the account `egress_down`; a proxy that works but cannot reach the target is an
/// ordinary network failure of the upstream.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error("egress proxy {proxy} unreachable: {reason}")]
    Unreachable { proxy: String, reason: String },
    #[error("egress proxy {proxy} refused the credentials")]
    AuthFailed { proxy: String },
    #[error("egress proxy {proxy}: handshake failed: {reason}")]
    Handshake { proxy: String, reason: String },
    #[error("egress proxy {proxy} did not finish its handshake within {}ms", .after.as_millis())]
    Timeout { proxy: String, after: Duration },
    #[error("egress proxy {proxy} could not reach {target}: {reason}")]
    TargetUnreachable { proxy: String, target: String, reason: String },
}

impl EgressError {
    /// Whether the proxy itself failed (the account goes `egress_down` until the probe sees it again).
    pub fn is_proxy_down(&self) -> bool {
        !matches!(self, EgressError::TargetUnreachable { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_parse_with_default_ports() {
        let p = EgressProxy::parse("socks5h://proxy.example:1081", None).unwrap();
        assert_eq!((p.kind, p.host.as_str(), p.port), (ProxyKind::Socks5h, "proxy.example", 1081));
        assert_eq!(EgressProxy::parse("socks5://10.0.0.1", None).unwrap().port, 1080);
        assert_eq!(EgressProxy::parse("http://p", None).unwrap().port, 80);
        assert_eq!(EgressProxy::parse("https://p/", None).unwrap().port, 443);
        let v6 = EgressProxy::parse("http://[::1]:3128", None).unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 3128));
        assert_eq!(v6.to_string(), "http://::1:3128");
    }

    #[test]
    fn bad_proxy_urls_are_refused_with_a_reason() {
        for (text, needle) in [
            ("ftp://p:1", "scheme"),
            ("p:1080", "not a URL"),
            ("socks5://user:pw@p:1080", "proxy_auth_env"),
            ("http://p:1/path", "no path"),
            ("http://:1", "host"),
            ("socks5://p:99999", "bad port"),
            ("socks5://p:0", "bad port"),
        ] {
            let e = EgressProxy::parse(text, None).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn credentials_never_show() {
        let auth = ProxyAuth::parse("bob:s3cr:et").unwrap();
        assert_eq!((auth.user.as_str(), auth.password.as_str()), ("bob", "s3cr:et"));
        let p = EgressProxy::parse("socks5://p:1", Some(auth)).unwrap();
        let shown = format!("{p} {p:?} {:?}", p.auth);
        assert!(!shown.contains("s3cr"), "{shown}");
        assert!(ProxyAuth::parse("nocolon").is_err());
        assert!(ProxyAuth::parse(":pw").is_err());
    }

    #[test]
    fn pacing_gap_stays_within_interval_and_jitter() {
        let p = Pacing { min_interval: Duration::from_millis(500), jitter: Duration::from_millis(100) };
        for draw in [0, 1, 99, 100, 101, u64::MAX] {
            let gap = p.gap(draw);
            assert!(gap >= Duration::from_millis(500) && gap <= Duration::from_millis(600), "{gap:?}");
        }
        assert!(Pacing::default().is_off());
        assert_eq!(Pacing::default().gap(7), Duration::ZERO);
    }
}
