//! The `levitate` command line: `serve`, `check` and `demo`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app::App;
use crate::config::Snapshot;
use crate::server::{self, StartOptions};

#[derive(Parser)]
#[command(name = "levitate", version, about = "An LLM API gateway over Google's Cloud Code API")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// Path to levitate.yaml.
        #[arg(short, long, default_value = "conf/levitate.yaml")]
        config: PathBuf,
        /// Take over the listening sockets of a running instance (graceful binary upgrade).
        #[arg(short, long)]
        upgrade: bool,
    },
    /// Validate a configuration (levitate.yaml, routes and accounts) and exit.
    Check {
        #[arg(short, long, default_value = "conf/levitate.yaml")]
        config: PathBuf,
    },
    /// Run the gateway in front of the built-in upstream simulator: no Google account needed.
    Demo {
        /// Client-facing address.
        #[arg(long, default_value = "127.0.0.1:8045")]
        listen: SocketAddr,
        /// Admin address (default: the port after --listen).
        #[arg(long)]
        admin: Option<SocketAddr>,
    },
}

pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LEVITATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).try_init();
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::Serve { config, upgrade } => serve(&config, StartOptions { upgrade }),
        Command::Check { config } => check(&config),
        Command::Demo { listen, admin } => {
            let admin = admin.unwrap_or_else(|| SocketAddr::new(listen.ip(), listen.port().wrapping_add(1)));
            match crate::demo::prepare(listen, admin) {
                Ok(config) => serve(&config, StartOptions::default()),
                Err(e) => {
                    eprintln!("levitate demo: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn serve(config: &std::path::Path, start: StartOptions) -> ExitCode {
    let snapshot = match Snapshot::load(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("levitate: {e}");
            return ExitCode::FAILURE;
        }
    };
    let app = match App::new(snapshot) {
        Ok(app) => app,
        Err(e) => {
            eprintln!("levitate: {e}");
            return ExitCode::FAILURE;
        }
    };
    server::run(app, start)
}

fn check(config: &std::path::Path) -> ExitCode {
    match Snapshot::load(config) {
        Ok(s) => {
            println!("{}: ok", config.display());
            println!("  listen {} (admin {})", s.listen, s.admin.listen);
            println!(
                "  {} API key(s), {} account(s), {} upstream endpoint(s)",
                s.api_key_names.len(),
                s.accounts.len(),
                s.upstream.endpoints.len()
            );
            if s.upstream.oauth_client_secret.is_empty() {
                println!("  warning: no OAuth client secret is set; token refreshes will fail");
            }
            if s.accounts.iter().all(|a| !a.enabled) {
                println!("  warning: no enabled account; every request will be refused with 503");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
