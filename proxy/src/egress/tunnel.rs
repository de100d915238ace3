//! The handshakes that turn a connection to a proxy into a byte tunnel to the target: SOCKS5 (RFC 1928, with
//! the username/password method of RFC 1929) and HTTP CONNECT (RFC 9110 §9.3.6).
//!
//! They work over any stream, so the tests drive them against scripted peers in memory. Each reads exactly
//! the proxy's answer and nothing past it: the bytes after it are the target's (TLS), not the proxy's.

use std::net::IpAddr;

use base64::Engine;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{EgressError, EgressProxy};

/// Longest CONNECT answer header read; real ones are a few dozen bytes.
const CONNECT_ANSWER_LIMIT: usize = 8 * 1024;

/// Where the tunnel goes: a name the proxy resolves, or an address the gateway resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Name(String, u16),
    Ip(IpAddr, u16),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Name(host, port) => write!(f, "{host}:{port}"),
            Target::Ip(IpAddr::V6(ip), port) => write!(f, "[{ip}]:{port}"),
            Target::Ip(ip, port) => write!(f, "{ip}:{port}"),
        }
    }
}

fn broken(proxy: &EgressProxy, reason: impl Into<String>) -> EgressError {
    EgressError::Handshake { proxy: proxy.to_string(), reason: reason.into() }
}

fn io_broken(proxy: &EgressProxy) -> impl Fn(std::io::Error) -> EgressError + '_ {
    move |e| broken(proxy, e.to_string())
}

/// RFC 1928 reply codes, for the error text.
fn socks_reply_text(code: u8) -> &'static str {
    match code {
        1 => "general failure",
        2 => "connection not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unknown reply code",
    }
}

/// Runs the SOCKS5 handshake: method negotiation, username/password when the proxy asks for it (and only
/// if credentials are configured), then CONNECT to `target`.
pub async fn socks5<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    proxy: &EgressProxy,
    target: &Target,
) -> Result<(), EgressError> {
    let io = io_broken(proxy);
    let greeting: &[u8] = if proxy.auth.is_some() { &[5, 2, 0, 2] } else { &[5, 1, 0] };
    stream.write_all(greeting).await.map_err(&io)?;
    let mut choice = [0u8; 2];
    stream.read_exact(&mut choice).await.map_err(&io)?;
    if choice[0] != 5 {
        return Err(broken(proxy, format!("not a SOCKS5 proxy (version byte {})", choice[0])));
    }
    match (choice[1], &proxy.auth) {
        (0, _) => {}
        (2, Some(auth)) => {
            let mut request = Vec::with_capacity(3 + auth.user.len() + auth.password.len());
            request.push(1);
            request.push(auth.user.len() as u8);
            request.extend_from_slice(auth.user.as_bytes());
            request.push(auth.password.len() as u8);
            request.extend_from_slice(auth.password.as_bytes());
            stream.write_all(&request).await.map_err(&io)?;
            let mut status = [0u8; 2];
            stream.read_exact(&mut status).await.map_err(&io)?;
            if status[1] != 0 {
                return Err(EgressError::AuthFailed { proxy: proxy.to_string() });
            }
        }
        (0xFF, None) | (2, None) => {
            return Err(broken(proxy, "the proxy requires credentials; set proxy_auth_env"));
        }
        (0xFF, Some(_)) => return Err(EgressError::AuthFailed { proxy: proxy.to_string() }),
        (method, _) => return Err(broken(proxy, format!("the proxy chose an unoffered method {method}"))),
    }
    let mut request = vec![5, 1, 0];
    let port = match target {
        Target::Ip(IpAddr::V4(ip), port) => {
            request.push(1);
            request.extend_from_slice(&ip.octets());
            port
        }
        Target::Ip(IpAddr::V6(ip), port) => {
            request.push(4);
            request.extend_from_slice(&ip.octets());
            port
        }
        Target::Name(host, port) => {
            let name = host.as_bytes();
            if name.len() > 255 {
                return Err(broken(proxy, "target name longer than 255 bytes"));
            }
            request.push(3);
            request.push(name.len() as u8);
            request.extend_from_slice(name);
            port
        }
    };
    request.extend_from_slice(&port.to_be_bytes());
    stream.write_all(&request).await.map_err(&io)?;
    let mut head = [0u8; 4];
    stream.read_exact(&mut head).await.map_err(&io)?;
    if head[0] != 5 {
        return Err(broken(proxy, format!("bad reply version {}", head[0])));
    }
    if head[1] != 0 {
        return Err(EgressError::TargetUnreachable {
            proxy: proxy.to_string(),
            target: target.to_string(),
            reason: format!("SOCKS reply {} ({})", head[1], socks_reply_text(head[1])),
        });
    }
    // The bound address the proxy reports: read it whole so nothing of it is taken for TLS bytes.
    let rest = match head[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => {
            let mut len = [0u8; 1];
            stream.read_exact(&mut len).await.map_err(&io)?;
            usize::from(len[0]) + 2
        }
        other => return Err(broken(proxy, format!("bad bound address type {other}"))),
    };
    let mut bound = [0u8; 257];
    stream.read_exact(&mut bound[..rest]).await.map_err(&io)?;
    Ok(())
}

/// Sends `CONNECT host:port` and reads the answer's header byte by byte up to its blank line, so the stream
/// is left at the first byte of the tunnel.
pub async fn http_connect<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    proxy: &EgressProxy,
    target: &Target,
) -> Result<(), EgressError> {
    let io = io_broken(proxy);
    let authority = target.to_string();
    let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(auth) = &proxy.auth {
        let pair = format!("{}:{}", auth.user, auth.password);
        let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
        request.push_str(&format!("Proxy-Authorization: Basic {encoded}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.map_err(&io)?;
    stream.flush().await.map_err(&io)?;
    let mut answer = Vec::with_capacity(128);
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\n") {
        if answer.len() >= CONNECT_ANSWER_LIMIT {
            return Err(broken(proxy, "CONNECT answer header too long"));
        }
        let n = stream.read(&mut byte).await.map_err(&io)?;
        if n == 0 {
            return Err(broken(proxy, "the proxy closed the connection during CONNECT"));
        }
        answer.push(byte[0]);
    }
    let status_line = answer.split(|b| *b == b'\n').next().unwrap_or_default();
    let status_line = String::from_utf8_lossy(status_line).trim().to_string();
    let mut words = status_line.split_whitespace();
    let (Some(version), Some(code)) = (words.next(), words.next()) else {
        return Err(broken(proxy, format!("unreadable CONNECT answer {status_line:?}")));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(broken(proxy, format!("unreadable CONNECT answer {status_line:?}")));
    }
    match code.parse::<u16>() {
        Ok(200..=299) => Ok(()),
        Ok(407) => Err(EgressError::AuthFailed { proxy: proxy.to_string() }),
        // The proxy works but the target does not answer it: the upstream's failure, not the proxy's.
        Ok(502..=504) => Err(EgressError::TargetUnreachable {
            proxy: proxy.to_string(),
            target: authority,
            reason: status_line,
        }),
        _ => Err(broken(proxy, format!("CONNECT refused: {status_line}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::{ProxyAuth, ProxyKind};
    use tokio::io::duplex;

    fn proxy(kind: ProxyKind, auth: Option<(&str, &str)>) -> EgressProxy {
        EgressProxy {
            kind,
            host: "proxy".into(),
            port: 1080,
            auth: auth.map(|(u, p)| ProxyAuth { user: u.into(), password: p.into() }),
        }
    }

    /// A scripted SOCKS5 server: checks what the client sends and answers as told; returns what it read.
    async fn socks_server<S: AsyncRead + AsyncWrite + Unpin>(
        mut s: S,
        method: u8,
        auth_ok: bool,
        reply: u8,
    ) -> Vec<u8> {
        let mut seen = Vec::new();
        let mut head = [0u8; 2];
        s.read_exact(&mut head).await.unwrap();
        let mut methods = vec![0u8; head[1] as usize];
        s.read_exact(&mut methods).await.unwrap();
        seen.extend_from_slice(&head);
        seen.extend_from_slice(&methods);
        s.write_all(&[5, method]).await.unwrap();
        if method == 0xFF {
            return seen;
        }
        if method == 2 {
            let mut v = [0u8; 2];
            s.read_exact(&mut v).await.unwrap();
            let mut user = vec![0u8; v[1] as usize];
            s.read_exact(&mut user).await.unwrap();
            let mut plen = [0u8; 1];
            s.read_exact(&mut plen).await.unwrap();
            let mut pass = vec![0u8; plen[0] as usize];
            s.read_exact(&mut pass).await.unwrap();
            seen.extend_from_slice(&user);
            seen.push(b':');
            seen.extend_from_slice(&pass);
            s.write_all(&[1, if auth_ok { 0 } else { 1 }]).await.unwrap();
            if !auth_ok {
                return seen;
            }
        }
        let mut req = [0u8; 4];
        s.read_exact(&mut req).await.unwrap();
        seen.extend_from_slice(&req);
        let addr_len = match req[3] {
            1 => 4,
            4 => 16,
            _ => {
                let mut l = [0u8; 1];
                s.read_exact(&mut l).await.unwrap();
                seen.push(l[0]);
                l[0] as usize
            }
        };
        let mut addr = vec![0u8; addr_len + 2];
        s.read_exact(&mut addr).await.unwrap();
        seen.extend_from_slice(&addr);
        // A domain-typed bound address, then the first tunnel bytes: they must stay unread.
        s.write_all(&[5, reply, 0, 3, 4, b'h', b'o', b's', b't', 0, 80]).await.unwrap();
        s.write_all(b"TLS").await.unwrap();
        seen
    }

    #[tokio::test]
    async fn socks5h_sends_the_name_and_leaves_the_tunnel_bytes() {
        let (mut client, server) = duplex(1024);
        let server = tokio::spawn(socks_server(server, 0, true, 0));
        let target = Target::Name("cloudcode-pa.googleapis.com".into(), 443);
        socks5(&mut client, &proxy(ProxyKind::Socks5h, None), &target).await.unwrap();
        let mut rest = [0u8; 3];
        client.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"TLS");
        let seen = server.await.unwrap();
        assert_eq!(&seen[..3], &[5, 1, 0], "no auth offered without credentials");
        assert_eq!(&seen[3..7], &[5, 1, 0, 3]);
        assert_eq!(seen[7] as usize, "cloudcode-pa.googleapis.com".len());
        assert!(seen.ends_with(&[1, 187]), "port 443");
    }

    #[tokio::test]
    async fn socks5_with_credentials_authenticates_and_connects_to_an_address() {
        let (mut client, server) = duplex(1024);
        let server = tokio::spawn(socks_server(server, 2, true, 0));
        let target = Target::Ip("10.1.2.3".parse().unwrap(), 8443);
        socks5(&mut client, &proxy(ProxyKind::Socks5, Some(("u", "p:w"))), &target).await.unwrap();
        let seen = server.await.unwrap();
        assert_eq!(&seen[..4], &[5, 2, 0, 2]);
        assert_eq!(&seen[4..8], b"u:p:");
        assert!(seen.windows(4).any(|w| w == [10, 1, 2, 3]));
    }

    #[tokio::test]
    async fn socks5_failures_say_whose_fault_they_are() {
        let target = Target::Name("h".into(), 443);
        let (mut c, s) = duplex(1024);
        tokio::spawn(socks_server(s, 2, false, 0));
        let e = socks5(&mut c, &proxy(ProxyKind::Socks5, Some(("u", "bad"))), &target).await.unwrap_err();
        assert!(matches!(e, EgressError::AuthFailed { .. }) && e.is_proxy_down(), "{e}");

        let (mut c, s) = duplex(1024);
        tokio::spawn(socks_server(s, 0xFF, false, 0));
        let e = socks5(&mut c, &proxy(ProxyKind::Socks5, None), &target).await.unwrap_err();
        assert!(e.is_proxy_down() && e.to_string().contains("proxy_auth_env"), "{e}");

        let (mut c, s) = duplex(1024);
        tokio::spawn(socks_server(s, 0, true, 5));
        let e = socks5(&mut c, &proxy(ProxyKind::Socks5, None), &target).await.unwrap_err();
        assert!(!e.is_proxy_down() && e.to_string().contains("connection refused"), "{e}");

        let (mut c, mut s) = duplex(1024);
        tokio::spawn(async move {
            let mut b = [0u8; 3];
            let _ = s.read_exact(&mut b).await;
            let _ = s.write_all(b"HTTP/1.1 400 Bad\r\n\r\n").await;
        });
        let e = socks5(&mut c, &proxy(ProxyKind::Socks5, None), &target).await.unwrap_err();
        assert!(e.is_proxy_down() && e.to_string().contains("not a SOCKS5 proxy"), "{e}");
    }

    async fn connect_server<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, answer: &'static str) -> String {
        let mut seen = Vec::new();
        let mut b = [0u8; 1];
        while !seen.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut b).await.unwrap();
            seen.push(b[0]);
        }
        s.write_all(answer.as_bytes()).await.unwrap();
        String::from_utf8(seen).unwrap()
    }

    #[tokio::test]
    async fn connect_sends_authority_and_basic_auth_and_stops_at_the_blank_line() {
        let (mut client, server) = duplex(4096);
        let server =
            tokio::spawn(connect_server(server, "HTTP/1.1 200 Connection established\r\nX: y\r\n\r\nTLS"));
        let target = Target::Name("cloudcode-pa.googleapis.com".into(), 443);
        http_connect(&mut client, &proxy(ProxyKind::Http, Some(("user", "pw"))), &target).await.unwrap();
        let mut rest = [0u8; 3];
        client.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"TLS");
        let seen = server.await.unwrap();
        assert!(seen.starts_with("CONNECT cloudcode-pa.googleapis.com:443 HTTP/1.1\r\n"), "{seen}");
        assert!(seen.contains("Host: cloudcode-pa.googleapis.com:443\r\n"), "{seen}");
        assert!(seen.contains("Proxy-Authorization: Basic dXNlcjpwdw==\r\n"), "{seen}");
        let v6 = Target::Ip("::1".parse().unwrap(), 443).to_string();
        assert_eq!(v6, "[::1]:443");
    }

    #[tokio::test]
    async fn connect_refusals_are_classified() {
        let target = Target::Name("h".into(), 443);
        for (answer, proxy_down, needle) in [
            ("HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", true, "credentials"),
            ("HTTP/1.1 403 Forbidden\r\n\r\n", true, "403"),
            ("HTTP/1.1 502 Bad Gateway\r\n\r\n", false, "502"),
            ("SSH-2.0-x\r\n\r\n", true, "unreadable"),
        ] {
            let (mut c, s) = duplex(4096);
            tokio::spawn(connect_server(s, answer));
            let e = http_connect(&mut c, &proxy(ProxyKind::Http, None), &target).await.unwrap_err();
            assert_eq!(e.is_proxy_down(), proxy_down, "{answer}: {e}");
            assert!(e.to_string().contains(needle), "{answer}: {e}");
        }
        let (mut c, s) = duplex(4096);
        drop(s);
        let e = http_connect(&mut c, &proxy(ProxyKind::Http, None), &target).await.unwrap_err();
        assert!(e.is_proxy_down(), "{e}");
    }
}
