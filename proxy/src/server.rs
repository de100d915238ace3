//! Pingora wiring: one server with the client-facing gateway, the admin service, and the background services
//! (configuration watcher, SIGHUP reload, request-log writer, quota poller, lifecycle).
//!
//! Pingora owns the shutdown signals: SIGTERM drains in-flight requests for `server.grace_period`, SIGINT
//! stops at once, SIGQUIT hands the listening sockets to a new process started with `-u` (see `upgrade.rs`).
//! SIGHUP reloads the YAML and SIGUSR2 starts the upgrade; both are ours. Background work runs as Pingora
//! `BackgroundService`s so it lives in the server's runtimes like everything else.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use pingora_core::apps::HttpServerOptions;
use pingora_core::listeners::{L4BufferSettings, ListenerConfig};
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::Server;
use pingora_core::services::background::background_service;
use pingora_core::services::listening::Service;
use pingora_proxy::http_proxy;

use crate::app::App;
use crate::config::reload::{ConfigWatcher, SighupReloader};
use crate::config::Snapshot;
use crate::gateway::edge::Edge;
use crate::gateway::signatures::SignatureSweeper;
use crate::gateway::Gateway;
use crate::ops::admin::Admin;
use crate::ops::connections::{
    connection_cap, raise_nofile_limit, Connections, H1_STREAMS_PER_CONNECTION, H2_STREAMS_PER_CONNECTION,
};
use crate::ops::handover::HandoverImporter;
use crate::ops::request_log::RequestLogWriter;
use crate::ops::upgrade::{Lifecycle, HANDOVER_WAIT};
use crate::pool::quota_poller::QuotaPoller;
use crate::store::{Store, StoreError};

/// Read buffer under each TLS client connection: one TLS record, so rustls's small reads are not a syscall
/// each. Plain connections have none: Pingora's default is 64 KiB, allocated zeroed for every connection and
/// held for its life, while the request head is read into the edge's own buffer and the body into Pingora's
/// body buffer sized to the body, so it only doubled the copies (issue 13: open streams must be cheap).
const TLS_READ_BUFFER: usize = 16 * 1024;

/// Timeouts longer than this run on tokio's timer instead of Pingora's "fast" one. The fast timer keeps every
/// timeout in a per-thread table until its deadline, even when the read it guarded finished long before: the
/// upstream read timeout (`upstream.read_timeout`, 600 s by default) left an entry per 10 ms of reading on
/// each worker alive for ten minutes, tens of thousands under streaming load, and after a burst they pinned
/// the pages around them for those ten minutes (issue 13: memory back within a minute of a burst). A tokio
/// timeout lives in the read's own future and goes with it. The short timeouts (client writes and request
/// bodies, 30 s; the upstream pool's idle timeout, 50 s) stay on the fast timer, which is cheaper to arm.
pub const FAST_TIMER_UP_TO: Duration = Duration::from_secs(60);

/// How the process was asked to start.
#[derive(Clone, Debug, Default)]
pub struct StartOptions {
    /// Take over listening sockets from a running instance (graceful binary upgrade).
    pub upgrade: bool,
}

/// Builds the Pingora server for `snapshot` and runs it until shutdown.
pub fn run(snapshot: Snapshot, start: StartOptions) -> ExitCode {
    ignore_hangup_until_handled();
    let conf = ServerConf {
        threads: match snapshot.server.threads {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            n => n,
        },
        grace_period_seconds: Some(snapshot.server.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(5),
        pid_file: snapshot.server.pid_file.display().to_string(),
        upgrade_sock: snapshot.server.upgrade_sock.display().to_string(),
        // Both sides of the hand-over retry once a second: the new process may still be opening its store.
        upgrade_sock_connect_accept_max_retries: Some(HANDOVER_WAIT.as_secs() as usize),
        fast_timeout_to_tokio_threshold_seconds: Some(FAST_TIMER_UP_TO.as_secs()),
        ..ServerConf::default()
    };
    let opt = Opt { upgrade: start.upgrade, ..Opt::default() };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    // With `-u` this receives the listening sockets; the old process releases the store as it sends them.
    server.bootstrap();
    let store = match open_store(&snapshot, start.upgrade) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("levitate: {e}");
            return ExitCode::FAILURE;
        }
    };
    let app = App::with_store(snapshot, store);
    let snapshot = app.snapshot();

    // Connections are counted and cut at the client listener's door (see gateway/edge.rs); the admin
    // listener is not counted, and the descriptors it needs are kept out of the client budget.
    let nofile = raise_nofile_limit();
    // Streams share upstream connections when every upstream URL speaks HTTP/2 (TLS with ALPN h2, or h2c).
    let upstream = &snapshot.upstream;
    let urls = || upstream.endpoints.iter().chain([&upstream.oauth_token_url, &upstream.oauth_userinfo_url]);
    let per_connection =
        if urls().all(|u| u.tls || u.h2c) { H2_STREAMS_PER_CONNECTION } else { H1_STREAMS_PER_CONNECTION };
    let connections = Connections::new(nofile.map(|n| connection_cap(n, per_connection)));
    if let Some(nofile) = nofile {
        let cap = connections.max_connections(snapshot.limits.max_connections);
        tracing::info!(nofile, max_connections = cap, "client connections capped below the descriptor limit");
    }
    let mut server_options = HttpServerOptions::default();
    server_options.h2c = true;
    // An HTTP/2 connection with no stream open is idle like an HTTP/1 keep-alive one.
    server_options.h2_idle_timeout = Some(snapshot.limits.keepalive_timeout);
    let mut proxy =
        http_proxy(&server.configuration, Gateway::new(app.clone()).with_connections(connections.clone()));
    proxy.server_options = Some(server_options);
    let mut gateway =
        Service::new("levitate gateway".to_string(), Edge::new(proxy, app.clone(), connections));
    // With TLS, HTTP/2 is offered by ALPN (h2c stays for plain listeners only; Pingora ignores it on TLS).
    let listen = ListenerConfig::tcp(snapshot.listen.to_string());
    gateway.add_listener(match &app.tls.gateway {
        Some(tls) => {
            listen.tls(tls.settings(true)).l4_buffer(L4BufferSettings::default().read(TLS_READ_BUFFER))
        }
        None => listen.l4_buffer(L4BufferSettings::default().read(0)),
    });

    let mut admin = Service::new("levitate admin".to_string(), Admin::new(app.clone()));
    match &app.tls.admin {
        Some(tls) => {
            admin.add_tls_with_settings(&snapshot.admin.listen.to_string(), None, tls.settings(false))
        }
        None => admin.add_tcp(&snapshot.admin.listen.to_string()),
    }

    server.add_service(gateway);
    server.add_service(admin);
    server.add_service(background_service(
        "levitate config watcher",
        ConfigWatcher::new(app.reload.clone(), app.config.clone()),
    ));
    server.add_service(background_service("levitate sighup", SighupReloader::new(app.reload.clone())));
    // Its own upstream client: pooled connections belong to the runtime (service) that opened them.
    let warmup_upstream =
        crate::upstream::Upstream::new(snapshot.upstream.connect_timeout, snapshot.upstream.read_timeout);
    server.add_service(background_service(
        "levitate warmup",
        crate::ops::warmup::Warmup::new(
            app.config.clone(),
            app.pool.clone(),
            std::sync::Arc::new(app.credentials.with_upstream(std::sync::Arc::new(warmup_upstream))),
            app.metrics.clone(),
            app.warmup.clone(),
        ),
    ));
    server.add_service(background_service(
        "levitate request log",
        RequestLogWriter::new(app.request_log.clone(), app.store.clone(), app.config.clone()),
    ));
    server.add_service(background_service(
        "levitate usage",
        crate::tenancy::usage::UsageFlusher::new(
            app.tenancy.clone(),
            app.store.clone(),
            app.config.clone(),
            app.shared.clone(),
        ),
    ));
    server.add_service(background_service(
        "levitate quota",
        QuotaPoller::new(
            app.config.clone(),
            app.pool.clone(),
            app.background_credentials.clone(),
            app.store.clone(),
        ),
    ));
    server.add_service(background_service(
        "levitate egress probe",
        crate::egress::probe::EgressProbe::new(app.config.clone(), app.pool.clone()),
    ));
    server.add_service(background_service(
        "levitate shared state",
        crate::shared::service::SharedStateService::new(
            app.shared.clone(),
            app.config.clone(),
            app.pool.clone(),
            app.tenancy.clone(),
            app.store.clone(),
        ),
    ));
    server.add_service(background_service(
        "levitate signatures",
        SignatureSweeper::new(app.store.clone(), app.config.clone()),
    ));
    server.add_service(background_service(
        "levitate lifecycle",
        Lifecycle::new(
            app.config.clone(),
            app.store.clone(),
            app.metrics.clone(),
            app.request_log.clone(),
            app.shared.clone(),
            app.pool.clone(),
        ),
    ));
    server.add_service(background_service(
        "levitate handover",
        HandoverImporter::new(app.store.clone(), app.pool.clone(), snapshot.store_path.clone()),
    ));
    tracing::info!(listen = %snapshot.listen, tls = snapshot.tls.is_some(), admin = %snapshot.admin.listen, admin_tls = snapshot.admin.tls.is_some(), accounts = snapshot.accounts.len(), upgrade = start.upgrade, "levitate starting");
    server.run_forever()
}

/// SIGHUP's default action ends the process. `levitate reload` may send it as soon as the pid file exists, a
/// moment before [`SighupReloader`] installs its handler; until then a hang-up is ignored (the files were
/// just read) rather than fatal.
fn ignore_hangup_until_handled() {
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler code and touches no memory of ours.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
}

/// Opens the store; during an upgrade, waits for the old process to release it.
fn open_store(snapshot: &Snapshot, upgrade: bool) -> Result<Store, StoreError> {
    let deadline = Instant::now() + if upgrade { HANDOVER_WAIT } else { Duration::ZERO };
    loop {
        match Store::open(&snapshot.store_path) {
            Ok(store) => return Ok(store),
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "store still held by the old process; retrying");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e),
        }
    }
}
