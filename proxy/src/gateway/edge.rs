//! The client listener's front door: what happens to a connection before Pingora parses a request.
//!
//! Pingora's HTTP/1 server waits up to 60 s *per read* for a request head, so a client trickling one byte a
//! minute (slowloris), or one that connects and sends nothing, holds a socket for ever; and nothing bounds how
//! many sockets one address may hold. [`Edge`] wraps the proxy app: it counts connections (refusing one over
//! `limits.max_connections` or `limits.max_connections_per_ip` with a short answer and a close), reads each
//! HTTP/1 request head itself under a whole-head deadline (`limits.header_timeout`), waits at most
//! `limits.keepalive_timeout` for the next request on an idle connection, and then hands the head to Pingora
//! as already-read bytes. HTTP/2 connections go to Pingora's own handling once their preface arrived in time.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use pingora_core::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::{Stream, ALPN};
use pingora_core::server::ShutdownWatch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{timeout_at, Instant};

use crate::app::App;
use crate::gateway::client_addr::is_trusted;
use crate::ops::connections::{Connections, Kind, Refusal};

/// https://datatracker.ietf.org/doc/html/rfc9113#section-3.4
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Past this a head is handed to Pingora unfinished, which refuses it (its own limit is 1 MiB).
const MAX_HEAD: usize = 1 << 20;

/// At most one warning about refused connections per this interval.
const REFUSAL_WARNING_EVERY: Duration = Duration::from_secs(10);

/// How long a refusal may take to write: the point is to let the socket go.
const REFUSAL_WRITE: Duration = Duration::from_secs(1);

/// Wraps the HTTP proxy app (`A`) of the client listener.
pub struct Edge<A> {
    inner: Arc<A>,
    app: Arc<App>,
    connections: Connections,
    started: std::time::Instant,
    /// Seconds after `started` of the last refusal warning; `u64::MAX` before the first.
    last_warning: AtomicU64,
}

impl<A> Edge<A> {
    pub fn new(inner: A, app: Arc<App>, connections: Connections) -> Self {
        Edge {
            inner: Arc::new(inner),
            app,
            connections,
            started: std::time::Instant::now(),
            last_warning: AtomicU64::new(u64::MAX),
        }
    }
}

#[async_trait]
impl<A> ServerApp for Edge<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new(self: &Arc<Self>, mut stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let accepted = Instant::now();
        let snapshot = self.app.snapshot();
        let limits = &snapshot.limits;
        let peer = peer_ip(&stream);
        // A trusted proxy carries many clients: its connections count only in the total, and its clients
        // are held to the per-address limit request by request (see `Gateway::request_filter`).
        let per_ip = peer.filter(|ip| !is_trusted(&snapshot.server.trusted_proxies, *ip));
        let max_total = self.connections.max_connections(limits.max_connections);
        let _slot = match self.connections.limiter.acquire(
            Some(Kind::Connection),
            max_total,
            per_ip,
            limits.max_connections_per_ip,
        ) {
            Ok(slot) => slot,
            Err(refusal) => {
                self.note_refusal(peer, refusal);
                refuse(stream, refusal).await;
                return None;
            }
        };

        let header_deadline = accepted + limits.header_timeout;
        let options = self.inner.server_options();
        let h2 = if stream.get_ssl_digest().is_some() {
            matches!(stream.selected_alpn_proto(), Some(ALPN::H2) | Some(ALPN::Custom(_)))
        } else if options.is_some_and(|o| o.h2c) {
            let mut preface = [0u8; H2_PREFACE.len()];
            // Peeking is not cancel-safe, but a client that misses the deadline is closed anyway.
            match timeout_at(header_deadline, stream.try_peek(&mut preface)).await {
                Ok(Ok(true)) => preface == H2_PREFACE,
                Ok(Ok(false)) => false,
                Ok(Err(_)) | Err(_) => return None,
            }
        } else {
            false
        };
        if h2 {
            return self.inner.process_new(stream, shutdown).await;
        }

        let keepalive_secs = limits.keepalive_timeout.as_secs().max(1);
        let mut persistent: Option<HttpPersistentSettings> = None;
        // A new connection's whole head is due `header_timeout` after accept; a reused one may idle for
        // `keepalive_timeout`, then has `header_timeout` from its first byte.
        let (mut first_byte_by, mut head_by) = (header_deadline, Some(header_deadline));
        loop {
            let head =
                read_head(&mut stream, first_byte_by, head_by, limits.header_timeout, shutdown).await?;
            let mut session = ServerSession::new_http1(stream);
            match persistent.take() {
                Some(settings) => settings.apply_to_session(&mut session),
                None => {
                    session.set_keepalive(if *shutdown.borrow() { None } else { Some(keepalive_secs) });
                    session.set_keepalive_reuses_remaining(options.and_then(|o| o.keepalive_request_limit));
                }
            }
            session.set_pipelined_prefix(head);
            // Reads of the body: one that makes no progress for this long ends the request (408).
            session.set_read_timeout(Some(limits.body_read_timeout));
            let reused = self.inner.process_new_http(session, shutdown).await?;
            let (next, settings) = reused.consume();
            stream = next;
            persistent = settings;
            (first_byte_by, head_by) = (Instant::now() + limits.keepalive_timeout, None);
        }
    }

    async fn cleanup(&self) {
        self.inner.http_cleanup().await;
    }
}

impl<A> Edge<A> {
    /// A flood refuses thousands of connections a second: one warning per interval says it is happening,
    /// the rest go to debug.
    fn note_refusal(&self, peer: Option<IpAddr>, refusal: Refusal) {
        self.app.metrics.connection_refused("connection", refusal.as_str());
        let now = self.started.elapsed().as_secs();
        let last = self.last_warning.load(Ordering::Relaxed);
        let due = last == u64::MAX || now >= last.saturating_add(REFUSAL_WARNING_EVERY.as_secs());
        if due && self.last_warning.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            let limiter = &self.connections.limiter;
            tracing::warn!(peer = ?peer, ?refusal, open = limiter.connections(), "refusing client connections over limits.max_connections / max_connections_per_ip");
        } else {
            tracing::debug!(peer = ?peer, ?refusal, "connection refused");
        }
    }
}

fn peer_ip(stream: &Stream) -> Option<IpAddr> {
    let digest = stream.get_socket_digest()?;
    digest.peer_addr()?.as_inet().map(|addr| addr.ip().to_canonical())
}

/// Reads one request head. The first byte must come by `first_byte_by` (the header deadline of a new
/// connection, the end of the keep-alive wait of an idle one); the whole head by `head_by`, or, on an idle
/// connection, within `header_timeout` of its first byte. `None`: the client went away, was too slow, or
/// the server is shutting down.
async fn read_head(
    stream: &mut Stream,
    first_byte_by: Instant,
    head_by: Option<Instant>,
    header_timeout: Duration,
    shutdown: &ShutdownWatch,
) -> Option<BytesMut> {
    // Pingora keeps the buffer a head was parsed from for the whole request. Copying a short head into a
    // buffer of its own size saved 3.8 KiB per open stream but left 3 MiB more resident a minute after
    // 10,000 streams, in three runs of each (docs/benchmarks.md, eleventh session): not done.
    let mut buf = BytesMut::with_capacity(4096);
    let mut stopping = shutdown.clone();
    let first = tokio::select! {
        read = timeout_at(first_byte_by, stream.read_buf(&mut buf)) => read,
        _ = stopping.wait_for(|stop| *stop) => return None,
    };
    match first {
        Ok(Ok(n)) if n > 0 => {}
        _ => return None,
    }
    let deadline = head_by.unwrap_or_else(|| Instant::now() + header_timeout);
    let mut scanned = 0;
    loop {
        if head_end(&buf, scanned).is_some() || buf.len() > MAX_HEAD {
            return Some(buf);
        }
        scanned = buf.len();
        match timeout_at(deadline, stream.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            Ok(_) => return None,
            Err(_) => {
                tracing::debug!(bytes = buf.len(), "request head not complete within limits.header_timeout");
                let _ = tokio::time::timeout(REFUSAL_WRITE, stream.write_all(TIMEOUT_ANSWER)).await;
                return None;
            }
        }
    }
}

const TIMEOUT_ANSWER: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// Where the blank line ending a head is, searching from `from` (minus the 3 bytes a terminator may
/// straddle) so a head trickled in byte by byte costs linear time.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3);
    let window = buf.get(start..)?;
    window.windows(2).enumerate().find_map(|(i, pair)| {
        let at = start + i;
        match pair {
            b"\n\n" => Some(at + 2),
            b"\r\n" if buf.get(at + 2..at + 4) == Some(b"\r\n") => Some(at + 4),
            _ => None,
        }
    })
}

/// Answers a connection over a limit and closes it. Whatever the client already sent is read first (briefly),
/// so the close does not reset the connection before the answer is seen.
async fn refuse(mut stream: Stream, refusal: Refusal) {
    let (status, message) = match refusal {
        Refusal::Total => {
            ("503 Service Unavailable", "the gateway is at its connection limit; retry shortly")
        }
        Refusal::PerIp => ("429 Too Many Requests", "too many connections from your address"),
    };
    let body = format!(r#"{{"error":{{"message":"{message}","type":"overloaded_error"}}}}"#);
    let answer = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_millis(50), stream.read(&mut sink)).await;
    let _ = tokio::time::timeout(REFUSAL_WRITE, async {
        stream.write_all(answer.as_bytes()).await?;
        stream.flush().await
    })
    .await;
    let _ = tokio::time::timeout(REFUSAL_WRITE, AsyncWriteExt::shutdown(&mut stream)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_end_finds_the_blank_line_wherever_it_starts() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody";
        assert_eq!(head_end(head, 0), Some(27));
        // Scanning resumes just before where the last read ended, so a split terminator is found.
        assert_eq!(head_end(head, 25), Some(27));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n", 0), None);
        assert_eq!(head_end(b"GET / HTTP/1.1\nHost: a\n\n", 0), Some(24));
        assert_eq!(head_end(b"", 0), None);
    }
}
