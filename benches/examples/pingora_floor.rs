//! Pingora on its own: a plain reverse proxy with no Levitate code, the floor under Levitate's own numbers
//! (issue 13).
//!
//! Issue 13 asks for half of a plain nginx proxy's throughput and 32 KiB per open stream. Levitate is built
//! on Pingora, so neither can be better than what Pingora costs by itself. This binary is that cost: one
//! `ProxyHttp` whose only hook names the upstream, forwarding every request as it came, on the same server
//! settings Levitate uses (worker threads, no L4 read buffer on plain listeners, long timeouts on tokio's
//! timer, HTTP/2 upstream peers with 100 streams a connection), the same allocator (mimalloc) and
//! transparent huge pages off like Levitate's `main`. `loadtest/compare-nginx.sh` and
//! `loadtest/open_streams.py` run it beside nginx and Levitate when `PINGORA_FLOOR_BIN` names it.
//!
//! ```sh
//! cargo build --release -p levitate-benches --example pingora_floor
//! target/release/examples/pingora_floor --listen 127.0.0.1:8080 --upstream 127.0.0.1:9000 [--h2c] [--threads 2]
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;

use async_trait::async_trait;
use pingora_core::listeners::{L4BufferSettings, ListenerConfig};
use pingora_core::prelude::HttpPeer;
use pingora_core::protocols::ALPN;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::Server;
use pingora_core::services::listening::Service;
use pingora_core::Result;
use pingora_proxy::{http_proxy, ProxyHttp, Session};

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Forwards every request, unchanged, to one upstream address.
struct PlainProxy {
    upstream: SocketAddr,
    h2c: bool,
}

#[async_trait]
impl ProxyHttp for PlainProxy {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        let mut peer = HttpPeer::new(self.upstream, false, String::new());
        if self.h2c {
            // Prior knowledge over plain TCP, as Levitate's `upstream.h2c`.
            peer.options.alpn = ALPN::H2;
            levitate::upstream::share_h2_connections(&mut peer.options);
        }
        Ok(Box::new(peer))
    }
}

struct Args {
    listen: String,
    upstream: SocketAddr,
    h2c: bool,
    threads: usize,
}

fn parse_args() -> std::result::Result<Args, String> {
    let mut listen = None;
    let mut upstream = None;
    let mut h2c = false;
    let mut threads = 2;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--listen" => listen = Some(value()?),
            "--upstream" => {
                let text = value()?;
                upstream = Some(text.parse().map_err(|e| format!("--upstream {text}: {e}"))?);
            }
            "--threads" => {
                let text = value()?;
                threads = text.parse().map_err(|e| format!("--threads {text}: {e}"))?;
            }
            "--h2c" => h2c = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Args {
        listen: listen.ok_or("--listen ADDR is required")?,
        upstream: upstream.ok_or("--upstream IP:PORT is required")?,
        h2c,
        threads,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("pingora_floor: {e}");
            return ExitCode::from(2);
        }
    };
    levitate::memory::disable_transparent_huge_pages();
    let conf = ServerConf {
        threads: args.threads,
        fast_timeout_to_tokio_threshold_seconds: Some(levitate::server::FAST_TIMER_UP_TO.as_secs()),
        // A benchmark's process: stop within a second of SIGTERM.
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let proxy = http_proxy(&server.configuration, PlainProxy { upstream: args.upstream, h2c: args.h2c });
    let mut service = Service::new("pingora floor".to_string(), proxy);
    let listen = ListenerConfig::tcp(args.listen.clone());
    service.add_listener(listen.l4_buffer(L4BufferSettings::default().read(0)));
    server.add_service(service);
    eprintln!("pingora_floor: listening on {} -> {}", args.listen, args.upstream);
    server.run_forever()
}
