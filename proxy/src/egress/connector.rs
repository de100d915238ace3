//! Pingora's custom L4 hook for accounts behind a proxy: dial the proxy, run its handshake, hand Pingora the
//! tunnel. Pingora then runs its own TLS handshake to Google over it (SNI and certificate checks unchanged),
//! and pools the connection under the account's own key.
//!
//! There is no fallback: a proxy that cannot be reached fails the connection with an [`EgressError`] that
//! the upstream client recognises, and the account is marked `egress_down`.

use std::net::SocketAddr as InetAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::connectors::L4Connect;
use pingora_core::protocols::l4::socket::SocketAddr;
use pingora_core::protocols::l4::stream::Stream;
use pingora_core::protocols::l4::virt::{VirtualSockOpt, VirtualSocket, VirtualSocketStream};
use pingora_core::tls::{ClientTlsStream, RootCertStore, ServerName, TlsConnector};
use pingora_core::{Error, ErrorType};
use tokio::net::TcpStream;

use super::tunnel::{self, Target};
use super::{EgressError, EgressProxy, ProxyKind};

/// Opens tunnels to one target host through one proxy.
#[derive(Debug)]
pub struct EgressConnector {
    pub proxy: Arc<EgressProxy>,
    /// The target's name (sent to proxies that resolve it) and port.
    pub host: String,
    pub port: u16,
    /// Bound on reaching the proxy and finishing its handshake.
    pub timeout: Duration,
}

#[async_trait]
impl L4Connect for EgressConnector {
    async fn connect(&self, addr: &SocketAddr) -> pingora_core::Result<Stream> {
        // Only `socks5://` hands the proxy an address the gateway resolved; the others send the name.
        let target = match (self.proxy.kind.resolves_locally(), addr.as_inet()) {
            (true, Some(inet)) => Target::Ip(inet.ip(), inet.port()),
            _ => Target::Name(self.host.clone(), self.port),
        };
        open(&self.proxy, &target, self.timeout)
            .await
            .map_err(|e| Error::because(ErrorType::ConnectError, format!("egress via {}", self.proxy), e))
    }
}

/// Dials the proxy and opens a tunnel to `target`, bounded by `timeout` as a whole.
pub async fn open(proxy: &EgressProxy, target: &Target, timeout: Duration) -> Result<Stream, EgressError> {
    tokio::time::timeout(timeout, open_unbounded(proxy, target))
        .await
        .unwrap_or_else(|_| Err(EgressError::Timeout { proxy: proxy.to_string(), after: timeout }))
}

async fn open_unbounded(proxy: &EgressProxy, target: &Target) -> Result<Stream, EgressError> {
    let tcp = TcpStream::connect((proxy.host.as_str(), proxy.port))
        .await
        .map_err(|e| EgressError::Unreachable { proxy: proxy.to_string(), reason: e.to_string() })?;
    let _ = tcp.set_nodelay(true);
    match proxy.kind {
        ProxyKind::Socks5 | ProxyKind::Socks5h => {
            let mut tcp = tcp;
            tunnel::socks5(&mut tcp, proxy, target).await?;
            Ok(tcp.into())
        }
        ProxyKind::Http => {
            let mut tcp = tcp;
            tunnel::http_connect(&mut tcp, proxy, target).await?;
            Ok(tcp.into())
        }
        ProxyKind::Https => {
            let mut tls = proxy_tls(proxy, tcp).await?;
            tunnel::http_connect(&mut tls, proxy, target).await?;
            Ok(VirtualSocketStream::new(Box::new(TlsToProxy(tls))).into())
        }
    }
}

/// TLS to an `https://` proxy itself, verified against the system's roots (the inner TLS to Google is
/// Pingora's, over the tunnel).
async fn proxy_tls(proxy: &EgressProxy, tcp: TcpStream) -> Result<ClientTlsStream<TcpStream>, EgressError> {
    static CONFIG: OnceLock<Result<Arc<pingora_core::tls::ClientConfig>, String>> = OnceLock::new();
    let config = CONFIG
        .get_or_init(|| {
            let mut roots = RootCertStore::empty();
            pingora_core::tls::load_platform_certs_incl_env_into_store(&mut roots)
                .map_err(|e| e.to_string())?;
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = pingora_core::tls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
        .map_err(|reason| EgressError::Handshake { proxy: proxy.to_string(), reason })?;
    let name = ServerName::try_from(proxy.host.clone())
        .map_err(|e| EgressError::Handshake { proxy: proxy.to_string(), reason: e.to_string() })?;
    TlsConnector::from(config).connect(name, tcp).await.map_err(|e| EgressError::Handshake {
        proxy: proxy.to_string(),
        reason: format!("TLS to the proxy: {e}"),
    })
}

/// The TLS stream to an `https://` proxy as the byte stream Pingora runs its own TLS over.
#[derive(Debug)]
struct TlsToProxy(ClientTlsStream<TcpStream>);

impl VirtualSocket for TlsToProxy {
    fn set_socket_option(&self, opt: VirtualSockOpt) -> std::io::Result<()> {
        match opt {
            VirtualSockOpt::NoDelay => self.0.get_ref().0.set_nodelay(true),
            _ => Ok(()),
        }
    }
}

impl tokio::io::AsyncRead for TlsToProxy {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsToProxy {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// The egress failure behind a Pingora error, if the connection failed in [`EgressConnector`].
pub fn egress_failure(error: &Error) -> Option<&EgressError> {
    error.root_cause().downcast_ref::<EgressError>()
}

/// The address to give Pingora's peer when the proxy resolves the name: any fixed value (the connector
/// ignores it), so connections through the proxy pool under one key per host.
pub fn unresolved(port: u16) -> InetAddr {
    InetAddr::from(([0, 0, 0, 0], port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A one-connection SOCKS5 proxy (no auth) that tunnels to whatever it is asked, over real sockets.
    async fn socks_once(listener: TcpListener) {
        let (mut client, _) = listener.accept().await.unwrap();
        let mut greeting = [0u8; 3];
        client.read_exact(&mut greeting).await.unwrap();
        client.write_all(&[5, 0]).await.unwrap();
        let mut head = [0u8; 5];
        client.read_exact(&mut head).await.unwrap();
        let mut name = vec![0u8; head[4] as usize + 2];
        client.read_exact(&mut name).await.unwrap();
        let host = String::from_utf8(name[..name.len() - 2].to_vec()).unwrap();
        let port = u16::from_be_bytes([name[name.len() - 2], name[name.len() - 1]]);
        let mut upstream = TcpStream::connect((host.as_str(), port)).await.unwrap();
        client.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0]).await.unwrap();
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    }

    #[tokio::test]
    async fn bytes_flow_through_a_socks5h_tunnel() {
        let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target_port = target.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = target.accept().await.unwrap();
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf).await.unwrap();
        });
        let proxy_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy_port = proxy_listener.local_addr().unwrap().port();
        tokio::spawn(socks_once(proxy_listener));
        let proxy = EgressProxy::parse(&format!("socks5h://127.0.0.1:{proxy_port}"), None).unwrap();
        let target = Target::Name("127.0.0.1".into(), target_port);
        let mut stream = open(&proxy, &target, Duration::from_secs(5)).await.unwrap();
        stream.write_all(b"ping").await.unwrap();
        stream.flush().await.unwrap();
        let mut echo = [0u8; 4];
        stream.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"ping");
    }

    #[tokio::test]
    async fn a_closed_proxy_port_is_a_proxy_failure() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let proxy = EgressProxy::parse(&format!("http://127.0.0.1:{port}"), None).unwrap();
        let e = open(&proxy, &Target::Name("h".into(), 443), Duration::from_secs(5)).await.err().unwrap();
        assert!(matches!(e, EgressError::Unreachable { .. }) && e.is_proxy_down(), "{e}");
    }

    /// A proxy that accepts and never answers ends at the bound, as a proxy failure.
    #[tokio::test(start_paused = true)]
    async fn a_silent_proxy_times_out() {
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = silent.local_addr().unwrap().port();
        let proxy = EgressProxy::parse(&format!("socks5://127.0.0.1:{port}"), None).unwrap();
        let e = open(&proxy, &Target::Name("h".into(), 443), Duration::from_secs(3)).await.err().unwrap();
        assert!(matches!(e, EgressError::Timeout { .. }) && e.is_proxy_down(), "{e}");
        drop(silent);
    }
}
