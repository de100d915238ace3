//! The `levitate` command line: `serve`, `check`, `demo`, `reload`, `upgrade`, `accounts …`, `quota` and
//! `usage` (which asks the running instance's admin API: sled keeps the store locked while it runs).
//!
//! Commands other than `serve` read the configuration without requiring its secrets: an unset `*_env`
//! variable reads as empty, so an operator can list or edit accounts without the service's environment
//! (`accounts login` and `quota` do need the OAuth client secret, and say so).

#[cfg(feature = "demo")]
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use serde_json::Value;

use crate::accounts::file::AccountsFile;
use crate::config::{Env, Snapshot};
use crate::server::{self, StartOptions};

#[derive(Parser)]
#[command(name = "levitate", version, about = "An LLM API gateway over Google's Cloud Code API")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (in the foreground; under systemd as Type=notify).
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
    #[cfg(feature = "demo")]
    Demo {
        /// Client-facing address.
        #[arg(long, default_value = "127.0.0.1:8045")]
        listen: SocketAddr,
        /// Admin address (default: the port after --listen).
        #[arg(long)]
        admin: Option<SocketAddr>,
    },
    /// Ask the running instance to reload its YAML files (SIGHUP to the pid in server.pid_file).
    Reload {
        #[arg(short, long, default_value = "conf/levitate.yaml")]
        config: PathBuf,
    },
    /// Replace the running instance by the binary now on disk without dropping a connection (SIGUSR2).
    Upgrade {
        #[arg(short, long, default_value = "conf/levitate.yaml")]
        config: PathBuf,
        /// How long to wait for the new process to take over.
        #[arg(long, default_value = "90s", value_parser = humantime::parse_duration)]
        wait: Duration,
    },
    /// Manage the Google accounts in accounts.yaml.
    Accounts {
        #[command(subcommand)]
        command: AccountsCommand,
    },
    /// Remaining quota fraction and reset time per account and model, asked from Google now.
    Quota {
        #[arg(short, long, default_value = "conf/levitate.yaml")]
        config: PathBuf,
    },
    /// Requests and tokens per key and model over the last day or week (from the running instance).
    Usage {
        #[arg(short, long, default_value = "conf/levitate.yaml")]
        config: PathBuf,
        /// How far back: a duration such as 1d, 7d or 12h, or an RFC 3339 time.
        #[arg(long, default_value = "1d")]
        since: String,
        /// Dimensions to group by: key, model, upstream_model, account, hour.
        #[arg(long, default_value = "key,model")]
        group_by: String,
    },
}

#[derive(Subcommand)]
enum AccountsCommand {
    /// Sign in with a Google account (OAuth + PKCE) and add it to accounts.yaml.
    Login {
        #[arg(short, long, default_value = "conf/levitate.yaml")]
        config: PathBuf,
        /// Headless: print the URL and read the redirect URL (or the code) pasted back.
        #[arg(long)]
        no_browser: bool,
        /// Loopback port for the OAuth callback (0 = any free port).
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
    /// List the configured accounts (no secrets).
    List {
        #[arg(short, long, default_value = "conf/levitate.yaml")]
        config: PathBuf,
    },
    /// Remove an account from accounts.yaml.
    Remove {
        email: String,
        #[arg(short, long, default_value = "conf/levitate.yaml")]
        config: PathBuf,
    },
    /// Take an account out of rotation (`enabled: false`).
    Disable {
        email: String,
        #[arg(short, long, default_value = "conf/levitate.yaml")]
        config: PathBuf,
    },
    /// Put an account back into rotation.
    Enable {
        email: String,
        #[arg(short, long, default_value = "conf/levitate.yaml")]
        config: PathBuf,
    },
    /// Add the accounts of another gateway's export (docs/operations.md, "Importing accounts").
    Import(crate::accounts::import::ImportArgs),
}

/// Lines are `<time> <LEVEL> <message> key=value ...` (one per finished request: `request protocol=...
/// status=... ms=...`), which journald, files and log shippers take as they are. Colour codes only when
/// stdout is a terminal (and `NO_COLOR` is unset): in a file or the journal they are noise to grep and cost
/// bytes on every request's line.
pub fn init_logging() {
    let filter = log_filter(std::env::var("LEVITATE_LOG").ok().as_deref());
    let ansi = use_colour(std::io::IsTerminal::is_terminal(&std::io::stdout()), std::env::var_os("NO_COLOR"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_ansi(ansi).try_init();
}

/// Colour for a terminal only, and never when `NO_COLOR` is set to anything non-empty (no-color.org).
fn use_colour(stdout_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stdout_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Pingora's connector logs `ERROR failed to acquire reusable stream` when a pooled upstream connection is
/// still held by its idle watcher: a benign pool miss (a new connection is opened) that appeared on normal,
/// successful traffic. Its module logs nothing else worth an operator's attention (one warning about an idle
/// connection that had unexpected data, which is then dropped), so that module alone is silenced; its
/// submodules (connect, TLS, HTTP sessions) keep the configured level. A `LEVITATE_LOG` that names the
/// module itself wins.
const PINGORA_POOL: &str = "pingora_core::connectors";

fn log_filter(spec: Option<&str>) -> tracing_subscriber::EnvFilter {
    let spec = spec.filter(|s| !s.trim().is_empty()).unwrap_or("info");
    let mut directives = Vec::new();
    if !spec.contains(PINGORA_POOL) {
        // The submodules follow the spec's overall level (its bare `level` entry, `info` without one).
        let level = spec
            .split(',')
            .map(str::trim)
            .rfind(|d| d.parse::<tracing_subscriber::filter::LevelFilter>().is_ok())
            .unwrap_or("info");
        directives.push(format!("{PINGORA_POOL}=off"));
        for sub in ["l4", "tls", "http"] {
            directives.push(format!("{PINGORA_POOL}::{sub}={level}"));
        }
    }
    directives.push(spec.to_string());
    tracing_subscriber::EnvFilter::try_new(directives.join(","))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("info,{PINGORA_POOL}=off")))
}

pub fn main() -> ExitCode {
    crate::ops::upgrade::remember_invocation();
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::Serve { config, upgrade } => serve(&config, StartOptions { upgrade }),
        Command::Check { config } => check(&config),
        #[cfg(feature = "demo")]
        Command::Demo { listen, admin } => {
            let admin = admin.unwrap_or_else(|| SocketAddr::new(listen.ip(), listen.port().wrapping_add(1)));
            match crate::demo::prepare(listen, admin) {
                Ok(config) => serve(&config, StartOptions::default()),
                Err(e) => fail(format!("levitate demo: {e}")),
            }
        }
        Command::Reload { config } => signal_running(&config, libc::SIGHUP, "reload"),
        Command::Upgrade { config, wait } => upgrade(&config, wait),
        Command::Accounts { command } => accounts(command),
        Command::Quota { config } => quota(&config),
        Command::Usage { config, since, group_by } => usage(&config, &since, &group_by),
    }
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("{message}");
    ExitCode::FAILURE
}

fn serve(config: &Path, start: StartOptions) -> ExitCode {
    match Snapshot::load(config) {
        Ok(snapshot) => server::run(snapshot, start),
        Err(e) => fail(format!("levitate: {e}")),
    }
}

fn check(config: &Path) -> ExitCode {
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
            let limited = s.tenancy.keys.values().filter(|k| !k.is_unlimited()).count();
            if limited > 0 {
                let zone = s.tenancy.time_zone.iana_name().unwrap_or("UTC");
                println!("  {limited} key(s) with limits (budgets count days in {zone})");
            }
            if s.admin.key.is_none() {
                println!("  note: no admin key; the admin API is open to local users on {}", s.admin.listen);
            }
            if s.upstream.oauth_client_secret.is_empty() {
                println!("  warning: no OAuth client secret is set; token refreshes will fail");
            }
            if s.accounts.iter().all(|a| !a.enabled) {
                println!("  warning: no enabled account; every request will be refused with 503");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            // Every problem found, one per line, so they can all be fixed before the next run.
            for problem in e.problems() {
                eprintln!("{problem}");
            }
            fail(format!("{}: {} problem(s)", config.display(), e.problems().len()))
        }
    }
}

/// The process environment, with unset variables reading as empty: commands that only edit or inspect the
/// configuration must not need the service's secrets.
struct LenientEnv;

impl Env for LenientEnv {
    fn var(&self, name: &str) -> Option<String> {
        Some(std::env::var(name).unwrap_or_default())
    }
}

fn load_lenient(config: &Path) -> Result<Snapshot, ExitCode> {
    Snapshot::load_with_env(config, &LenientEnv).map_err(fail)
}

/// The running levitate's pid, validated before it is signalled (never 0, -1 or 1, only a levitate process).
fn running_pid(snapshot: &Snapshot) -> Result<u32, ExitCode> {
    let path = &snapshot.server.pid_file;
    crate::ops::upgrade::running_levitate(path).map_err(|e| fail(format!("pid file {}: {e}", path.display())))
}

fn send_signal(pid: u32, signal: libc::c_int) -> std::io::Result<()> {
    // SAFETY: kill(2) with a pid validated by `running_levitate` (above 1, a levitate process) and a valid
    // signal number has no memory effects.
    if unsafe { libc::kill(pid as libc::pid_t, signal) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn signal_running(config: &Path, signal: libc::c_int, what: &str) -> ExitCode {
    let snapshot = match load_lenient(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let pid = match running_pid(&snapshot) {
        Ok(pid) => pid,
        Err(code) => return code,
    };
    match send_signal(pid, signal) {
        Ok(()) => {
            println!(
                "asked levitate (pid {pid}) to {what}; see its log or GET /admin/health for the outcome"
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("cannot signal pid {pid}: {e}")),
    }
}

/// SIGUSR2 to the running instance, then waits for the pid file to name its successor.
fn upgrade(config: &Path, wait: Duration) -> ExitCode {
    let snapshot = match load_lenient(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let old = match running_pid(&snapshot) {
        Ok(pid) => pid,
        Err(code) => return code,
    };
    if let Err(e) = send_signal(old, libc::SIGUSR2) {
        return fail(format!("cannot signal pid {old}: {e}"));
    }
    println!("asked levitate (pid {old}) to start the binary on disk and hand over its sockets…");
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if let Some(new) = crate::ops::upgrade::read_pid_file(&snapshot.server.pid_file).filter(|p| *p != old)
        {
            println!(
                "upgraded: pid {new} serves now; pid {old} finishes its in-flight requests (up to {})",
                humantime::format_duration(snapshot.server.grace_period)
            );
            return ExitCode::SUCCESS;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    fail(format!(
        "no new process took over within {}; the old one keeps serving (see its log)",
        humantime::format_duration(wait)
    ))
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| fail(format!("cannot start a runtime: {e}")))
}

fn accounts(command: AccountsCommand) -> ExitCode {
    match command {
        AccountsCommand::Login { config, no_browser, port } => {
            let snapshot = match load_lenient(&config) {
                Ok(s) => s,
                Err(code) => return code,
            };
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            let options = crate::accounts::login::LoginOptions { no_browser, port };
            let mut input = std::io::BufReader::new(std::io::stdin());
            let mut out = std::io::stdout();
            match rt.block_on(crate::accounts::login::login(&snapshot, &options, &mut input, &mut out)) {
                Ok(done) => {
                    println!(
                        "{} {} (project {}, tier {}) in {}; a running levitate reloads it by itself.",
                        if done.replaced { "Replaced" } else { "Added" },
                        done.email,
                        done.project,
                        done.tier.as_deref().unwrap_or("unknown"),
                        snapshot.paths.accounts.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(format!("levitate accounts login: {e}")),
            }
        }
        AccountsCommand::List { config } => list_accounts(&config),
        AccountsCommand::Remove { email, config } => {
            edit_accounts(&config, &email, "removed", |f| f.remove(&email))
        }
        AccountsCommand::Disable { email, config } => {
            edit_accounts(&config, &email, "disabled", |f| f.set_enabled(&email, false))
        }
        AccountsCommand::Enable { email, config } => {
            edit_accounts(&config, &email, "enabled", |f| f.set_enabled(&email, true))
        }
        AccountsCommand::Import(args) => match (load_lenient(&args.config), runtime()) {
            (Ok(snapshot), Ok(rt)) => rt.block_on(crate::accounts::import::command(&snapshot, &args)),
            (Err(code), _) | (_, Err(code)) => code,
        },
    }
}

fn list_accounts(config: &Path) -> ExitCode {
    let snapshot = match load_lenient(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    println!("{:<40} {:<8} {:<28} {:<30} MAX_CONCURRENT", "EMAIL", "ENABLED", "TIER", "PROJECT");
    for a in &snapshot.accounts {
        println!(
            "{:<40} {:<8} {:<28} {:<30} {}",
            a.email,
            if a.enabled { "yes" } else { "no" },
            a.tier.as_deref().unwrap_or("(discovered)"),
            a.project_id.as_deref().unwrap_or("(discovered)"),
            a.max_concurrent
        );
    }
    ExitCode::SUCCESS
}

fn edit_accounts(
    config: &Path,
    email: &str,
    done: &str,
    edit: impl FnOnce(&mut AccountsFile) -> Result<(), crate::accounts::file::AccountsFileError>,
) -> ExitCode {
    let snapshot = match load_lenient(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let path = &snapshot.paths.accounts;
    let result = AccountsFile::edit(path, edit);
    match result {
        Ok(()) => {
            println!("{email}: {done} in {}; a running levitate reloads it by itself.", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn quota(config: &Path) -> ExitCode {
    let snapshot = match load_lenient(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if snapshot.upstream.oauth_client_secret.is_empty() {
        return fail("levitate quota: no OAuth client secret (set the variable named by upstream.oauth_client_secret_env)");
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let rows = rt.block_on(fetch_quotas(&snapshot));
    println!("{:<40} {:<28} {:>10}  RESETS", "ACCOUNT", "MODEL", "REMAINING");
    let mut failed = false;
    for row in rows {
        match row {
            Ok((account, model, fraction, reset)) => {
                println!("{account:<40} {model:<28} {:>9.0}%  {reset}", fraction * 100.0);
            }
            Err((account, error)) => {
                failed = true;
                println!("{account:<40} error: {error}");
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `levitate usage`: `GET /admin/usage` on the configured admin listener, printed as a table.
fn usage(config: &Path, since: &str, group_by: &str) -> ExitCode {
    let snapshot = match load_lenient(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let admin = &snapshot.admin;
    let scheme = if admin.tls.is_some() { "https" } else { "http" };
    let url = match crate::config::UpstreamUrl::parse(&format!("{scheme}://{}", admin.listen)) {
        Ok(url) => url,
        Err(e) => return fail(format!("levitate usage: {e}")),
    };
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("since", since).append_pair("group_by", group_by);
    let path = format!("/admin/usage?{}", query.finish());
    let mut headers = vec![("Accept", "application/json".to_string())];
    if let Some(key) = admin.key.as_ref().filter(|k| !k.is_empty()) {
        headers.push(("Authorization", format!("Bearer {}", key.expose())));
    }
    let upstream = crate::upstream::Upstream::new(Duration::from_secs(5), Duration::from_secs(60));
    let request = crate::upstream::UpstreamRequest {
        url: &url,
        path: &path,
        headers: &headers,
        body: bytes::Bytes::new(),
        egress: None,
    };
    let answer = rt.block_on(upstream.get(request, 64 << 20));
    let value: Value = match answer {
        Ok((200, body)) => match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return fail(format!("levitate usage: unreadable answer: {e}")),
        },
        Ok((status, body)) => {
            return fail(format!(
                "levitate usage: {url}{path}: HTTP {status}: {}",
                String::from_utf8_lossy(&body)
            ))
        }
        Err(e) => return fail(format!("levitate usage: is levitate running? {e}")),
    };
    print!("{}", crate::tenancy::usage::table(&value));
    ExitCode::SUCCESS
}

type QuotaRow = Result<(String, String, f64, String), (String, String)>;

async fn fetch_quotas(snapshot: &Snapshot) -> Vec<QuotaRow> {
    let settings = &snapshot.upstream;
    let upstream =
        std::sync::Arc::new(crate::upstream::Upstream::new(settings.connect_timeout, settings.read_timeout));
    let store = match crate::store::Store::temporary() {
        Ok(s) => s,
        Err(e) => return vec![Err(("-".into(), e.to_string()))],
    };
    let credentials = crate::accounts::credentials::Credentials::new(upstream.clone(), store);
    let mut rows = Vec::new();
    for account in snapshot.accounts.iter().filter(|a| a.enabled) {
        let failed = |e: String| Err((account.email.clone(), e));
        let token = match credentials.access_token(account, settings).await {
            Ok(t) => t,
            Err(e) => {
                rows.push(failed(e.to_string()));
                continue;
            }
        };
        let project = match credentials.project(account, settings, &token).await {
            Ok(p) => p,
            Err(e) => {
                rows.push(failed(e.to_string()));
                continue;
            }
        };
        let headers = [
            ("Content-Type", "application/json".to_string()),
            ("Authorization", format!("Bearer {}", token.token)),
            ("User-Agent", settings.user_agent.clone()),
        ];
        let body = bytes::Bytes::from(serde_json::json!({ "project": project.id.as_ref() }).to_string());
        let mut answer: Option<Value> = None;
        let mut last_error = String::from("no endpoint answered");
        for url in &settings.endpoints {
            let request = crate::upstream::UpstreamRequest {
                url,
                path: "/v1internal:fetchAvailableModels",
                headers: &headers,
                body: body.clone(),
                egress: account.egress(),
            };
            match upstream.post(request, 4 << 20).await {
                Ok((200, raw)) => {
                    answer = serde_json::from_slice(&raw).ok();
                    break;
                }
                Ok((status, _)) => last_error = format!("fetchAvailableModels answered HTTP {status}"),
                Err(e) => last_error = e.to_string(),
            }
        }
        let Some(answer) = answer else {
            rows.push(failed(last_error));
            continue;
        };
        let mut models = crate::pool::quota::parse_available_models(&answer, crate::store::unix_now());
        models.sort_by(|a, b| a.0.cmp(&b.0));
        for (model, view) in models {
            let reset = view
                .reset_ms
                .map(|ms| {
                    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(ms))
                        .to_string()
                })
                .unwrap_or_else(|| "-".into());
            rows.push(Ok((account.email.clone(), model, view.remaining_fraction, reset)));
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[test]
    fn log_lines_are_coloured_only_on_a_terminal() {
        assert!(use_colour(true, None));
        assert!(!use_colour(false, None), "a file or the journal gets plain lines");
        assert!(!use_colour(true, Some("1".into())), "NO_COLOR wins over a terminal");
        assert!(use_colour(true, Some("".into())), "an empty NO_COLOR is unset");
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(spec: Option<&str>, emit: impl FnOnce()) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(log_filter(spec))
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = captured.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn the_benign_pool_miss_is_not_an_error_line_but_real_errors_are() {
        let out = logged(None, || {
            tracing::error!(target: "pingora_core::connectors", "failed to acquire reusable stream");
            tracing::error!(target: "pingora_core::connectors::l4", "connect refused");
            tracing::error!(target: "pingora_proxy", "Fail to proxy");
            tracing::info!(target: "levitate::gateway", "request");
            tracing::debug!(target: "pingora_core::connectors::l4", "noise");
        });
        assert!(!out.contains("failed to acquire reusable stream"), "{out}");
        assert!(
            out.contains("connect refused") && out.contains("Fail to proxy") && out.contains("request"),
            "{out}"
        );
        assert!(!out.contains("noise"), "{out}");
    }

    #[test]
    fn an_operator_spec_is_kept_and_may_name_the_module() {
        let out = logged(Some("debug"), || {
            tracing::debug!(target: "pingora_core::connectors::l4", "connect detail");
            tracing::error!(target: "pingora_core::connectors", "failed to acquire reusable stream");
        });
        assert!(out.contains("connect detail") && !out.contains("reusable"), "{out}");
        let out = logged(Some("info,pingora_core::connectors=error"), || {
            tracing::error!(target: "pingora_core::connectors", "failed to acquire reusable stream");
        });
        assert!(out.contains("reusable"), "{out}");
    }
}
