//! Pingora wiring: one server with the client-facing gateway service and the admin service.
//!
//! Pingora owns signals and lifecycle: SIGTERM drains in-flight requests for `server.grace_period`,
//! SIGINT stops at once, SIGQUIT hands the listening sockets to a new process started with `-u`.

use std::sync::Arc;

use pingora_core::apps::HttpServerOptions;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::Server;
use pingora_core::services::listening::Service;
use pingora_proxy::ProxyServiceBuilder;

use crate::admin::Admin;
use crate::app::App;
use crate::gateway::Gateway;

/// How the process was asked to start.
#[derive(Clone, Debug, Default)]
pub struct StartOptions {
    /// Take over listening sockets from a running instance (graceful upgrade).
    pub upgrade: bool,
}

/// Builds the Pingora server around `app` and runs it until shutdown; never returns.
pub fn run(app: Arc<App>, start: StartOptions) -> ! {
    let snapshot = app.snapshot();
    let conf = ServerConf {
        threads: match snapshot.server.threads {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            n => n,
        },
        grace_period_seconds: Some(snapshot.server.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(5),
        ..ServerConf::default()
    };
    let opt = Opt { upgrade: start.upgrade, ..Opt::default() };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    let mut server_options = HttpServerOptions::default();
    server_options.h2c = true;
    let mut gateway = ProxyServiceBuilder::new(&server.configuration, Gateway::new(app.clone()))
        .name("levitate gateway")
        .server_options(server_options)
        .build();
    gateway.add_tcp(&snapshot.listen.to_string());

    let mut admin = Service::new("levitate admin".to_string(), Admin::new(app.clone()));
    admin.add_tcp(&snapshot.admin.listen.to_string());

    server.add_service(gateway);
    server.add_service(admin);
    tracing::info!(listen = %snapshot.listen, admin = %snapshot.admin.listen, accounts = snapshot.accounts.len(), "levitate starting");
    server.run_forever()
}
