//! HTTP exchanges with Google (or the simulator) through Pingora's own connector.
//!
//! The gateway cannot use Pingora's `upstream_peer` path for its main routes (the body decides the account,
//! and a 429 must be retried elsewhere after its status is seen), so it drives exchanges itself with
//! Pingora's HTTP/1 and HTTP/2 connectors (`pingora_core::connectors::http::{v1, v2}`): pooled connections,
//! rustls, h1/h2. This module owns peers (DNS resolved asynchronously and cached, SNI always set so
//! certificates are verified), timeouts, and the one-request helpers the OAuth and discovery calls use.
//!
//! HTTP/2 is spoken where the peer may: over TLS by ALPN (h2, else h1), and over plain HTTP only when the URL is
//! marked `h2c` (`upstream.h2c`, prior knowledge). An HTTP/2 connection carries many streams ([`H2_MAX_STREAMS`]).
//!
//! A request made for an account with an egress proxy carries it ([`UpstreamRequest::egress`]): its peer gets
//! the proxy's tunnel as a custom L4 connector and a pool key of its own, so its connections are opened only
//! through the proxy and never shared with another account or with direct ones.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use pingora_core::connectors::http::{v1, v2};
use pingora_core::connectors::ConnectorOptions;
use pingora_core::protocols::http::client::HttpSession;
use pingora_core::protocols::ALPN;
use pingora_core::upstreams::peer::{HttpPeer, Peer, PeerOptions};
use pingora_http::RequestHeader;

use crate::config::UpstreamUrl;
use crate::egress::connector::{egress_failure, unresolved, EgressConnector};
use crate::egress::{Egress, EgressError};

/// How long a DNS answer is reused; Google's front ends rotate addresses, so it must not be forever.
const DNS_TTL: Duration = Duration::from_secs(60);

/// How long a pooled upstream connection waits for its next request before it is closed.
pub(crate) const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(50);

/// Streams one HTTP/2 connection may carry. Pingora's default is 1, a connection per stream, which throws
/// HTTP/2's multiplexing away; the server's own SETTINGS_MAX_CONCURRENT_STREAMS still caps it (Google's
/// front ends announce 100), and a full connection makes Pingora open the next one.
const H2_MAX_STREAMS: usize = 100;

/// Per-stream receive window. It bounds what one stream buffers while its client is slow (the pump stops
/// reading upstream), not what is allocated up front. 1 MiB is far above what a model emits per round trip,
/// and far below the connection window, so a few stalled clients cannot close the window of the connection
/// their neighbours share (Pingora's default gives streams the whole 8 MiB connection window each).
const H2_STREAM_WINDOW: u32 = 1 << 20;

/// Connection-level receive window: 16 stalled streams' worth before the connection's others wait.
const H2_CONNECTION_WINDOW: u32 = 16 << 20;

/// Lets HTTP/2 connections to a peer carry [`H2_MAX_STREAMS`] streams with Levitate's receive windows.
/// Public for the benchmarks' plain Pingora proxy (`benches/examples/pingora_floor.rs`), which must
/// reach its upstream the same way.
pub fn share_h2_connections(options: &mut PeerOptions) {
    options.max_h2_streams = H2_MAX_STREAMS;
    options.h2_stream_window_size = Some(H2_STREAM_WINDOW);
    options.h2_connection_window_size = Some(H2_CONNECTION_WINDOW);
}

/// A host's addresses and when they were looked up.
type Resolved = (Arc<[SocketAddr]>, Instant);

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("{url}: {source}")]
    Io { url: String, source: Box<pingora_core::Error> },
    #[error("{url}: response body larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
}

impl UpstreamError {
    /// Whether the gateway itself ran out of something (descriptors, socket buffers, memory) while trying:
    /// the upstream and the account are not at fault, so this must never open a breaker or lock an account.
    pub fn is_local_resource(&self) -> bool {
        match self {
            UpstreamError::Io { source, .. } => {
                let root = source.root_cause();
                let os = root.downcast_ref::<std::io::Error>().and_then(std::io::Error::raw_os_error);
                os.is_some_and(is_local_resource_errno) || is_local_resource_text(&source.to_string())
            }
            UpstreamError::Resolve { reason, .. } => is_local_resource_text(reason),
            UpstreamError::TooLarge { .. } => false,
        }
    }

    /// The egress proxy's own failure behind this error (unreachable, refusing, a broken handshake): the
    /// account is marked `egress_down`, and nothing is retried without the proxy.
    pub fn egress_down(&self) -> Option<&EgressError> {
        match self {
            UpstreamError::Io { source, .. } => egress_failure(source).filter(|e| e.is_proxy_down()),
            _ => None,
        }
    }
}

fn is_local_resource_errno(errno: i32) -> bool {
    matches!(errno, libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
}

/// The same judgement from an error's text, for errors that reach us only as text (Pingora flattens some
/// causes into its context, resolver failures are strings, other modules wrap these errors).
pub fn is_local_resource_text(text: &str) -> bool {
    const MARKS: [&str; 4] = [
        "Too many open files",
        "No file descriptors available",
        "No buffer space available",
        "Cannot allocate memory",
    ];
    MARKS.iter().any(|mark| text.contains(mark))
}

/// Whether a refusal is the endpoint's rather than the account's (not found, timed out, a server error):
/// the same request then goes to the next configured endpoint.
pub fn is_endpoint_problem(status: u16) -> bool {
    matches!(status, 404 | 408 | 500..=599)
}

/// One request to send: the method is always POST in this API.
pub struct UpstreamRequest<'a> {
    pub url: &'a UpstreamUrl,
    /// Path and query after the base URL's own path, e.g. `/v1internal:streamGenerateContent?alt=sse`.
    pub path: &'a str,
    pub headers: &'a [(&'static str, String)],
    pub body: Bytes,
    /// The account's egress proxy, when it has one: the connection is then opened only through it.
    pub egress: Option<Egress<'a>>,
}

/// A session and the peer it is connected to, boxed: together they are over a kilobyte, and an exchange moves
/// them through several futures (each move a copy of every future around them; issue 13).
struct Connection {
    session: HttpSession,
    peer: HttpPeer,
}

/// An upstream response whose header has been read; the body is read on demand.
pub struct UpstreamResponse {
    connection: Box<Connection>,
    pub status: u16,
    url: String,
}

impl UpstreamResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.connection.session.response_header()?.headers.get(name)?.to_str().ok()
    }

    /// The next body chunk, or `None` at the end of the body.
    pub async fn read_chunk(&mut self) -> Result<Option<Bytes>, UpstreamError> {
        let url = &self.url;
        self.connection
            .session
            .read_response_body()
            .await
            .map_err(|source| UpstreamError::Io { url: url.clone(), source })
    }

    /// The whole body, refusing more than `limit` bytes.
    pub async fn read_to_end(&mut self, limit: usize) -> Result<Bytes, UpstreamError> {
        let mut body = BytesMut::new();
        while let Some(chunk) = self.read_chunk().await? {
            if body.len() + chunk.len() > limit {
                return Err(UpstreamError::TooLarge { url: self.url.clone(), limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    /// Returns the connection to the pool (Pingora keeps it only if the body was fully read), for at most the
    /// peer's idle timeout: Pingora's connector does not read that option itself, and without it a burst's
    /// connections (HTTP/1 sockets, or HTTP/2 connections with their codec state) stayed pooled for good.
    ///
    /// Boxed: the release (draining, Pingora's reuse checks) is kilobytes of state that would otherwise size
    /// the whole stream's future.
    pub async fn release(self, upstream: &Upstream) {
        Box::pin(upstream.connectors.release(self.connection)).await;
    }

    /// Drops the exchange at once, e.g. when the client went away mid-stream.
    pub async fn abort(mut self) {
        Box::pin(self.connection.session.shutdown()).await;
    }
}

/// An upstream client: the gateway's, and a second one for background services (see `App`), so pooled
/// connections never cross between Pingora service runtimes.
pub struct Upstream {
    connectors: Arc<Connectors>,
    connect_timeout: Duration,
    read_timeout: Duration,
    /// How long a released connection may wait in the pool for its next request.
    idle_timeout: Duration,
    resolved: Mutex<HashMap<(String, u16), Resolved>>,
}

impl Upstream {
    pub fn new(connect_timeout: Duration, read_timeout: Duration) -> Self {
        let mut options = ConnectorOptions::new(128);
        options.keepalive_pool_size = 128;
        Upstream {
            connectors: Arc::new(Connectors::new(options)),
            connect_timeout,
            read_timeout,
            idle_timeout: POOL_IDLE_TIMEOUT,
            resolved: Mutex::new(HashMap::new()),
        }
    }

    /// Every address the name resolves to, in the resolver's order (cached for [`DNS_TTL`]).
    async fn resolve(
        &self,
        url: &UpstreamUrl,
        egress: Option<Egress<'_>>,
    ) -> Result<Arc<[SocketAddr]>, UpstreamError> {
        if egress.is_some_and(|e| !e.proxy.kind.resolves_locally()) {
            // The proxy resolves the name: no lookup from this box at all.
            return Ok(Arc::from([unresolved(url.port)]));
        }
        let key = (url.host.clone(), url.port);
        if let Ok(cache) = self.resolved.lock() {
            if let Some((addrs, at)) = cache.get(&key) {
                if at.elapsed() < DNS_TTL {
                    return Ok(addrs.clone());
                }
            }
        }
        let host = url.host.trim_start_matches('[').trim_end_matches(']').to_string();
        let addrs: Arc<[SocketAddr]> = tokio::net::lookup_host((host.as_str(), url.port))
            .await
            .map_err(|e| UpstreamError::Resolve { host: url.host.clone(), reason: e.to_string() })?
            .collect();
        if addrs.is_empty() {
            return Err(UpstreamError::Resolve { host: url.host.clone(), reason: "no addresses".into() });
        }
        if let Ok(mut cache) = self.resolved.lock() {
            cache.insert(key, (addrs.clone(), Instant::now()));
        }
        Ok(addrs)
    }

    fn peer(&self, url: &UpstreamUrl, addr: SocketAddr, egress: Option<Egress<'_>>) -> HttpPeer {
        // An empty SNI disables certificate verification under rustls: always name the host.
        let mut peer = HttpPeer::new(addr, url.tls, url.host.clone());
        if let Some(egress) = egress {
            peer.options.custom_l4 = Some(Arc::new(EgressConnector {
                proxy: egress.proxy.clone(),
                host: url.host.trim_start_matches('[').trim_end_matches(']').to_string(),
                port: url.port,
                timeout: self.connect_timeout,
            }));
            // Pooled connections are keyed by this too: an account's tunnel is never lent to another account
            // (nor a direct connection to it).
            peer.group_key = egress_pool_key(egress);
        }
        peer.options.connection_timeout = Some(self.connect_timeout);
        peer.options.total_connection_timeout = Some(self.connect_timeout * 2);
        peer.options.read_timeout = Some(self.read_timeout);
        peer.options.write_timeout = Some(self.read_timeout);
        peer.options.idle_timeout = Some(self.idle_timeout);
        if url.tls {
            peer.options.alpn = ALPN::H2H1;
        } else if url.h2c {
            // Prior knowledge: plaintext has no ALPN, Pingora trusts a minimum version of 2 to mean h2c.
            peer.options.alpn = ALPN::H2;
        }
        if url.tls || url.h2c {
            share_h2_connections(&mut peer.options);
        }
        peer
    }

    /// A session to the first of the name's addresses that accepts a connection: one unreachable front
    /// end (a dead IPv6 route, a withdrawn address) must not fail every request while others answer.
    async fn connect(
        &self,
        url: &UpstreamUrl,
        addrs: &[SocketAddr],
        egress: Option<Egress<'_>>,
    ) -> Result<Box<Connection>, Box<pingora_core::Error>> {
        let mut last = None;
        for addr in addrs.iter() {
            let peer = self.peer(url, *addr, egress);
            match self.session(&peer).await {
                Ok(session) => return Ok(Box::new(Connection { session, peer })),
                // A dead proxy fails every address alike: no point dialling it again per address.
                Err(e) if egress_failure(&e).is_some_and(EgressError::is_proxy_down) => return Err(e),
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "upstream address refused, trying the next");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| pingora_core::Error::new(pingora_core::ErrorType::ConnectError)))
    }

    /// A pooled session to `peer` if one is free, else a new connection opened on a task of its own. Opening
    /// a connection is deep (a tunnel's handshake, then TLS), and under a request's own nesting (discovery
    /// inside an exchange) a debug build overflowed the worker thread's stack; on its own task it starts from
    /// an empty stack. Dropping the caller (the client left) aborts the task. The pooled lookup stays on the
    /// caller's task: it is shallow, and it is the common case, where a task per request cost a spawn, often
    /// a wake-up of the other worker thread, and a copy of the session out of the task (issue 13).
    async fn session(&self, peer: &HttpPeer) -> pingora_core::Result<HttpSession> {
        if let Some(session) = self.connectors.pooled(peer).await? {
            return Ok(session);
        }
        let connectors = self.connectors.clone();
        let owned = peer.clone();
        let task = tokio::spawn(async move { connectors.open(&owned).await });
        let _abort = AbortOnDrop(task.abort_handle());
        match task.await {
            Ok(result) => result,
            Err(e) => {
                Err(pingora_core::Error::because(pingora_core::ErrorType::ConnectError, "connect task", e))
            }
        }
    }

    /// Sends one request and reads the response header.
    pub async fn send(&self, request: UpstreamRequest<'_>) -> Result<UpstreamResponse, UpstreamError> {
        self.send_with_method("POST", request).await
    }

    /// One GET, read whole and bounded (the OAuth userinfo endpoint of `levitate accounts login`).
    pub async fn get(
        &self,
        request: UpstreamRequest<'_>,
        limit: usize,
    ) -> Result<(u16, Bytes), UpstreamError> {
        let mut response = self.send_with_method("GET", request).await?;
        let body = response.read_to_end(limit).await?;
        let status = response.status;
        response.release(self).await;
        Ok((status, body))
    }

    async fn send_with_method(
        &self,
        method: &str,
        request: UpstreamRequest<'_>,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let url_text = format!("{}{}", request.url, request.path);
        let io = |source| UpstreamError::Io { url: url_text.clone(), source };
        let addrs = self.resolve(request.url, request.egress).await?;
        let full_path = format!("{}{}", request.url.base_path, request.path);
        let mut header = RequestHeader::build(method, full_path.as_bytes(), Some(request.headers.len() + 3))
            .map_err(io)?;
        header.insert_header("Host", request.url.authority()).map_err(io)?;
        header.insert_header("Content-Length", request.body.len().to_string()).map_err(io)?;
        for (name, value) in request.headers {
            header.insert_header(*name, value.as_str()).map_err(io)?;
        }
        let mut connection = self.connect(request.url, &addrs, request.egress).await.map_err(io)?;
        let session = &mut connection.session;
        session.set_read_timeout(Some(self.read_timeout));
        session.write_request_header(Box::new(header)).await.map_err(io)?;
        session.write_request_body(request.body, true).await.map_err(io)?;
        session.finish_request_body().await.map_err(io)?;
        session.read_response_header().await.map_err(io)?;
        let status = session.response_header().map(|h| h.status.as_u16()).unwrap_or(502);
        Ok(UpstreamResponse { connection, status, url: url_text })
    }

    /// Sends one request and reads the whole (bounded) response: for OAuth and discovery calls.
    pub async fn post(
        &self,
        request: UpstreamRequest<'_>,
        limit: usize,
    ) -> Result<(u16, Bytes), UpstreamError> {
        let mut response = self.send(request).await?;
        let body = response.read_to_end(limit).await?;
        let status = response.status;
        response.release(self).await;
        Ok((status, body))
    }
}

/// Pingora's HTTP/1 and HTTP/2 connectors with their pools, asked in the order Pingora's combined connector
/// asks them (an h2-capable peer: a free stream on a pooled HTTP/2 connection, then a pooled HTTP/1 socket
/// unless the peer is h2-only, then a new connection that ALPN may still make HTTP/1), split in two so that
/// [`Upstream::session`] can look in the pools without a task of its own.
struct Connectors {
    h1: v1::Connector,
    h2: v2::Connector,
}

impl Connectors {
    fn new(options: ConnectorOptions) -> Self {
        Connectors { h1: v1::Connector::new(Some(options.clone())), h2: v2::Connector::new(Some(options)) }
    }

    /// The lowest and highest HTTP version `peer` may speak (no ALPN option: HTTP/1 only).
    fn versions(peer: &HttpPeer) -> (u8, u8) {
        peer.get_peer_options()
            .map_or((1, 1), |o| (o.alpn.get_min_http_version(), o.alpn.get_max_http_version()))
    }

    /// A session on a pooled connection, if one is free.
    async fn pooled(&self, peer: &HttpPeer) -> pingora_core::Result<Option<HttpSession>> {
        let (min, max) = Self::versions(peer);
        if max >= 2 {
            if let Some(stream) = self.h2.reused_http_session(peer).await? {
                return Ok(Some(HttpSession::H2(stream)));
            }
        }
        if min == 1 {
            return Ok(self.h1.reused_http_session(peer).await.map(HttpSession::H1));
        }
        Ok(None)
    }

    /// A session on a new connection (HTTP/1 may still find a pooled socket released meanwhile).
    async fn open(&self, peer: &HttpPeer) -> pingora_core::Result<HttpSession> {
        if Self::versions(peer).1 >= 2 {
            return self.h2.new_http_session::<_, ()>(peer).await;
        }
        let (session, _reused) = self.h1.get_http_session(peer).await?;
        Ok(HttpSession::H1(session))
    }

    /// Returns a session's connection to its pool for at most the peer's idle timeout.
    async fn release(&self, connection: Box<Connection>) {
        let Connection { session, peer } = *connection;
        let (peer, idle) = (&peer, peer.idle_timeout());
        match session {
            HttpSession::H1(h1) => self.h1.release_http_session(h1, peer, idle).await,
            HttpSession::H2(h2) => self.h2.release_http_session(h2, peer, idle),
            HttpSession::Custom(()) => {}
        }
    }
}

/// Aborts a spawned task when the future awaiting it is dropped (a finished task is unaffected).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The connection pool key of an account's tunnels (never 0, the key of direct connections).
fn egress_pool_key(egress: Egress<'_>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    egress.account.hash(&mut hasher);
    egress.proxy.to_string().hash(&mut hasher);
    hasher.finish().max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_core::{Error, ErrorType};

    fn io_error(errno: i32) -> UpstreamError {
        let cause = std::io::Error::from_raw_os_error(errno);
        UpstreamError::Io {
            url: "https://x".into(),
            source: Error::because(ErrorType::ConnectError, "connect", cause),
        }
    }

    #[test]
    fn running_out_of_descriptors_is_local() {
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert!(io_error(errno).is_local_resource(), "errno {errno}");
        }
        let resolve =
            UpstreamError::Resolve { host: "h".into(), reason: "Too many open files (os error 24)".into() };
        assert!(resolve.is_local_resource());
    }

    #[test]
    fn the_upstream_s_failures_are_not_local() {
        for errno in [libc::ECONNREFUSED, libc::ECONNRESET, libc::ETIMEDOUT, libc::EHOSTUNREACH] {
            assert!(!io_error(errno).is_local_resource(), "errno {errno}");
        }
        let plain = UpstreamError::Io {
            url: "u".into(),
            source: Error::explain(ErrorType::ConnectTimedout, "timed out"),
        };
        assert!(!plain.is_local_resource());
        assert!(
            !UpstreamError::Resolve { host: "h".into(), reason: "no addresses".into() }.is_local_resource()
        );
    }

    #[tokio::test]
    async fn a_refused_address_falls_through_to_the_next() {
        let refused = {
            let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            closed.local_addr().unwrap()
        };
        let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open_addr = open.local_addr().unwrap();
        let upstream = Upstream::new(Duration::from_secs(5), Duration::from_secs(5));
        let url = UpstreamUrl::parse(&format!("http://localhost:{}", open_addr.port())).unwrap();
        let connection = upstream.connect(&url, &[refused, open_addr], None).await.expect("second address");
        assert_eq!(connection.peer._address.to_string(), open_addr.to_string());
        assert!(upstream.connect(&url, &[refused], None).await.is_err());
    }

    /// The account's proxy is down: the call fails as `egress_down`, and the target never sees a connection
    /// (no fallback to a direct one).
    #[tokio::test]
    async fn a_dead_proxy_never_falls_back_to_a_direct_connection() {
        let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        target.set_nonblocking(true).unwrap();
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let upstream = Upstream::new(Duration::from_secs(5), Duration::from_secs(5));
        let url =
            UpstreamUrl::parse(&format!("http://127.0.0.1:{}", target.local_addr().unwrap().port())).unwrap();
        for scheme in ["socks5", "socks5h", "http"] {
            let proxy = Arc::new(
                crate::egress::EgressProxy::parse(&format!("{scheme}://127.0.0.1:{dead}"), None).unwrap(),
            );
            let request = UpstreamRequest {
                url: &url,
                path: "/v1internal:loadCodeAssist",
                headers: &[],
                body: Bytes::new(),
                egress: Some(Egress { account: "a@x.com", proxy: &proxy }),
            };
            let error = upstream.send(request).await.err().expect("no tunnel, no call");
            assert!(error.egress_down().is_some(), "{scheme}: {error}");
            assert!(error.to_string().contains(&format!("{scheme}://127.0.0.1:{dead}")), "{error}");
        }
        let accepted = target.accept();
        assert!(
            matches!(&accepted, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "the target saw a direct connection: {accepted:?}"
        );
    }

    /// Reads one request head from `socket` and answers it `200 ok`.
    async fn answer_ok(socket: &mut tokio::net::TcpStream) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut buf, mut head) = (vec![0u8; 4096], Vec::new());
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "the request ended early");
            head.extend_from_slice(&buf[..n]);
        }
        socket.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await.unwrap();
    }

    /// A released connection waits in the pool only for the idle timeout, then is closed: Pingora's connector
    /// does not read the peer's option by itself, and a burst's connections used to stay pooled for good.
    #[tokio::test]
    async fn a_pooled_connection_is_closed_after_the_idle_timeout() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            answer_ok(&mut socket).await;
            // The client's side closes once the pooled connection has been idle long enough (EOF here).
            let mut buf = [0u8; 64];
            matches!(tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buf)).await, Ok(Ok(0)))
        });
        let mut upstream = Upstream::new(Duration::from_secs(5), Duration::from_secs(5));
        upstream.idle_timeout = Duration::from_millis(200);
        let url = UpstreamUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let request =
            UpstreamRequest { url: &url, path: "/x", headers: &[], body: Bytes::new(), egress: None };
        let (status, body) = upstream.get(request, 64).await.unwrap();
        assert_eq!((status, &body[..]), (200, &b"ok"[..]));
        assert!(server.await.unwrap(), "the pooled connection was never closed");
    }

    /// The pooled lookup now happens on the caller's task, outside Pingora's combined connector: a released
    /// connection must still carry the next request (one connection for three requests).
    #[tokio::test]
    async fn a_released_connection_carries_the_next_request() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            for _ in 0..3 {
                answer_ok(&mut socket).await;
            }
            // No second connection comes: the three requests shared the first.
            tokio::time::timeout(Duration::from_millis(300), listener.accept()).await.is_err()
        });
        let upstream = Upstream::new(Duration::from_secs(5), Duration::from_secs(5));
        let url = UpstreamUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        for _ in 0..3 {
            let request =
                UpstreamRequest { url: &url, path: "/x", headers: &[], body: Bytes::new(), egress: None };
            let (status, body) = upstream.get(request, 64).await.unwrap();
            assert_eq!((status, &body[..]), (200, &b"ok"[..]));
        }
        assert!(server.await.unwrap(), "a second connection was opened");
    }
}
