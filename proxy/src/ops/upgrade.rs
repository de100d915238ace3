//! The process lifecycle around Pingora's graceful upgrade: pid file, systemd readiness, handing the store
//! over, and starting the new binary on SIGUSR2.
//!
//! Pingora moves the listening sockets: the new process, started with `-u`, listens on `server.upgrade_sock`;
//! the old one, on SIGQUIT, sends its sockets there, keeps accepting for 5 s, then stops accepting and lets
//! in-flight streams finish for `server.grace_period`. Two things are ours:
//! - the store: sled holds an exclusive lock, so on SIGQUIT the old process flushes and releases it
//!   ([`crate::store::Store::detach`]) and the new one opens it after it has the sockets; what the old one
//!   records afterwards reaches the new one by file ([`crate::ops::handover`]);
//! - starting the new binary from inside the service (SIGUSR2, `levitate upgrade`), so that under systemd it
//!   runs in the unit's cgroup; it then tells systemd `MAINPID=<new pid>` (`NotifyAccess=all`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;

use crate::config::live::LiveConfig;
use crate::config::Snapshot;
use crate::ops::metrics::Metrics;
use crate::ops::request_log::RequestLog;
use crate::pool::AccountPool;
use crate::shared::SharedState;
use crate::store::Store;

/// How long the old process waits for the new one to be ready for the sockets, and the new one for the store.
pub const HANDOVER_WAIT: Duration = Duration::from_secs(60);
/// After shutdown starts: how often in-flight requests are counted, and how many idle counts in a row end it.
const DRAIN_CHECK: Duration = Duration::from_millis(100);
const DRAIN_IDLE_CHECKS: u32 = 5;
/// Longest wait for the request-log writer to write what is queued before the process exits.
const REQUEST_LOG_DRAIN: Duration = Duration::from_secs(2);

/// The binary and arguments this process was started with, captured before anything could replace the file.
struct Invocation {
    exe: PathBuf,
    args: Vec<OsString>,
}

static INVOCATION: OnceLock<Invocation> = OnceLock::new();

/// Set once this process is handing over to a new one (see [`draining`]).
static DRAINING: AtomicBool = AtomicBool::new(false);

/// Whether this process is handing its sockets over. Pingora keeps accepting for 5 s after SIGQUIT and then
/// drops idle keep-alive connections, which races with a client that reuses one at that moment; answering
/// with `Connection: close` meanwhile makes clients open their next connection to the new process instead.
pub fn draining() -> bool {
    DRAINING.load(Ordering::Relaxed)
}

/// Remembers how this process was started; call first thing in `main`. After `install` or `mv` replaces the
/// binary, `/proc/self/exe` names a deleted file, so the path must be read now.
pub fn remember_invocation() {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("levitate"));
    let args = std::env::args_os().skip(1).collect();
    let _ = INVOCATION.set(Invocation { exe, args });
}

/// Sends a state line to systemd's notify socket when running under `Type=notify`; a no-op otherwise.
pub fn notify_systemd(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let socket = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot notify systemd");
            return;
        }
    };
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|a| socket.send_to_addr(state.as_bytes(), &a))
    } else {
        socket.send_to(state.as_bytes(), Path::new(&path))
    };
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// Writes `pid` to the pid file atomically; a missing folder only warns (development runs).
pub fn write_pid_file(path: &Path, pid: u32) {
    let temp = path.with_extension(format!("tmp-{pid}"));
    let written = std::fs::write(&temp, format!("{pid}\n")).and_then(|_| std::fs::rename(&temp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        tracing::warn!(pid_file = %path.display(), error = %e, "cannot write the pid file");
    }
}

/// The pid a pid file names, when it holds one a process can have (see [`parse_pid`]).
pub fn read_pid_file(path: &Path) -> Option<u32> {
    parse_pid(&std::fs::read_to_string(path).ok()?).ok()
}

/// Linux's `PID_MAX_LIMIT`: no process id is larger.
const PID_MAX: u32 = 1 << 22;

/// Why a pid file cannot be trusted with a signal.
#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    #[error("no running levitate: cannot read it: {0}")]
    Read(std::io::Error),
    #[error("{0:?} is not a process id")]
    NotANumber(String),
    #[error("pid {0} is not one Levitate can have written (a pid file must name a process above 1 and at most {PID_MAX})")]
    OutOfRange(i64),
    #[error("pid {pid} is not a running levitate ({reason}); a stale pid file? Remove it or start levitate")]
    NotLevitate { pid: u32, reason: String },
}

/// The process id in a pid file's text. Refuses what `kill(2)` would read as a group or as everyone (0, -1
/// and other negatives, or an unsigned value that wraps to one), init (1), and what no process can be.
pub fn parse_pid(text: &str) -> Result<u32, PidFileError> {
    let text = text.trim();
    if text.is_empty() || text.len() > 12 || !text.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        return Err(PidFileError::NotANumber(text.chars().take(40).collect()));
    }
    let pid: i64 = text.parse().map_err(|_| PidFileError::NotANumber(text.to_string()))?;
    match u32::try_from(pid) {
        Ok(pid) if (2..=PID_MAX).contains(&pid) => Ok(pid),
        _ => Err(PidFileError::OutOfRange(pid)),
    }
}

/// The pid of the running levitate named by `path`, checked to be a levitate process before anyone signals
/// it: a stale pid file whose number now belongs to another program must not get its SIGHUP or SIGUSR2.
pub fn running_levitate(path: &Path) -> Result<u32, PidFileError> {
    let text = std::fs::read_to_string(path).map_err(PidFileError::Read)?;
    let pid = parse_pid(&text)?;
    is_levitate(pid).map_err(|reason| PidFileError::NotLevitate { pid, reason })?;
    Ok(pid)
}

/// Whether process `pid` runs a levitate binary: its `/proc/<pid>/exe` (readable to its owner and root) or,
/// failing that, the program in `/proc/<pid>/cmdline` (readable to all) is named levitate. Without `/proc`
/// (not Linux) nothing can be checked and the number alone is trusted.
fn is_levitate(pid: u32) -> Result<(), String> {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return Ok(());
    }
    let dir = proc.join(pid.to_string());
    let named_levitate = |program: &Path| {
        program
            .file_name()
            .is_some_and(|name| name.to_string_lossy().to_ascii_lowercase().contains("levitate"))
    };
    if let Ok(exe) = std::fs::read_link(dir.join("exe")) {
        return if named_levitate(&exe) { Ok(()) } else { Err(format!("it runs {}", exe.display())) };
    }
    match std::fs::read(dir.join("cmdline")) {
        Ok(cmdline) => {
            let program = cmdline.split(|b| *b == 0).next().unwrap_or_default();
            let program = PathBuf::from(String::from_utf8_lossy(program).into_owned());
            if named_levitate(&program) {
                Ok(())
            } else {
                Err(format!("it runs {}", program.display()))
            }
        }
        Err(_) => Err("no such process".to_string()),
    }
}

/// Removes the pid file if it still names this process (after an upgrade it names the new one).
fn remove_own_pid_file(path: &Path) {
    if read_pid_file(path) == Some(std::process::id()) {
        let _ = std::fs::remove_file(path);
    }
}

/// Announces readiness, hands the store over on SIGQUIT, and starts the new binary on SIGUSR2.
pub struct Lifecycle {
    config: Arc<LiveConfig>,
    store: Store,
    metrics: Arc<Metrics>,
    request_log: Arc<RequestLog>,
    /// The cluster this instance leaves when it stops, and the accounts whose slots it gives back.
    shared: Arc<SharedState>,
    pool: Arc<AccountPool>,
    upgrading: AtomicBool,
}

impl Lifecycle {
    pub fn new(
        config: Arc<LiveConfig>,
        store: Store,
        metrics: Arc<Metrics>,
        request_log: Arc<RequestLog>,
        shared: Arc<SharedState>,
        pool: Arc<AccountPool>,
    ) -> Self {
        Lifecycle { config, store, metrics, request_log, shared, pool, upgrading: AtomicBool::new(false) }
    }
}

#[async_trait]
impl BackgroundService for Lifecycle {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        use tokio::signal::unix::{signal, SignalKind};
        let server = self.config.load().server.clone();
        let pid = std::process::id();
        write_pid_file(&server.pid_file, pid);
        // MAINPID lets systemd follow the new process of an upgrade; harmless on a first start.
        notify_systemd(&format!("MAINPID={pid}\nREADY=1\nSTATUS=serving"));
        tracing::info!(pid, "levitate ready");
        let (mut quit, mut usr2) = match (signal(SignalKind::quit()), signal(SignalKind::user_defined2())) {
            (Ok(q), Ok(u)) => (q, u),
            _ => {
                tracing::error!("cannot listen for SIGQUIT / SIGUSR2: binary upgrades are unavailable");
                let _ = shutdown.changed().await;
                return;
            }
        };
        loop {
            tokio::select! {
                _ = quit.recv() => {
                    // Pingora is sending our sockets to the new process; give it the store too.
                    tracing::info!("SIGQUIT: handing the listening sockets and the store to the new process");
                    DRAINING.store(true, Ordering::Relaxed);
                    match self.store.detach() {
                        // What the draining streams record from now on goes to the new process by file.
                        Ok(()) => crate::ops::handover::spool_until_exit(self.store.clone(), self.config.load().store_path.clone()),
                        Err(e) => tracing::error!(error = %e, "cannot release the store for the new process"),
                    }
                }
                _ = usr2.recv() => {
                    if self.upgrading.swap(true, Ordering::AcqRel) {
                        tracing::warn!("SIGUSR2: an upgrade is already in progress");
                        continue;
                    }
                    let snapshot = self.config.load();
                    let started = tokio::task::spawn_blocking(move || start_new_binary(&snapshot)).await;
                    match started {
                        Ok(Ok(child)) => {
                            tracing::info!(new_pid = child, "new binary is ready for the sockets; sending SIGQUIT to self");
                            // SAFETY: kill(2) on our own pid with a valid signal number has no memory effects.
                            unsafe { libc::kill(libc::getpid(), libc::SIGQUIT) };
                        }
                        Ok(Err(e)) => {
                            tracing::error!(error = %e, "upgrade aborted; this process keeps serving");
                            self.upgrading.store(false, Ordering::Release);
                        }
                        Err(_) => self.upgrading.store(false, Ordering::Release),
                    }
                }
                _ = shutdown.changed() => {
                    remove_own_pid_file(&server.pid_file);
                    self.exit_when_drained().await;
                    return;
                }
            }
        }
    }
}

impl Lifecycle {
    /// Pingora waits out the whole grace period even when nothing is in flight; an idle old process (or one
    /// being stopped) exits as soon as its last request ends instead, after flushing the store.
    async fn exit_when_drained(&self) {
        let mut idle_checks = 0;
        loop {
            tokio::time::sleep(DRAIN_CHECK).await;
            if self.metrics.active_requests() > 0 {
                idle_checks = 0;
                continue;
            }
            idle_checks += 1;
            if idle_checks >= DRAIN_IDLE_CHECKS {
                // The records of the last requests may still be queued: written (and flushed, or spooled to
                // the new process below) before exiting.
                if self.request_log.drain(REQUEST_LOG_DRAIN).await.is_none() {
                    tracing::warn!("the request log writer did not drain in time; queued records are lost");
                }
                if draining() {
                    crate::ops::handover::spool(&self.store, &self.config.load().store_path);
                } else {
                    if let Err(e) = self.store.flush() {
                        tracing::warn!(error = %e, "store flush before exit failed");
                    }
                    // A stop, not an upgrade (whose new process may carry the same instance id): nothing is in
                    // flight, so the slots this instance holds go back to the cluster now instead of after the
                    // lease, and the others stop counting it.
                    self.shared.leave(&self.pool.cluster_account_ids()).await;
                }
                tracing::info!("all in-flight requests finished; exiting before the end of the grace period");
                std::process::exit(0);
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("cannot run {exe}: {source}")]
    Spawn { exe: String, source: std::io::Error },
    #[error("the new binary refused the configuration (`levitate check` exited with {0})")]
    Check(std::process::ExitStatus),
    #[error("the new process exited with {0} before taking the sockets")]
    Exited(std::process::ExitStatus),
    #[error("the new process did not open {sock} within {HANDOVER_WAIT:?}")]
    Timeout { sock: String },
}

/// Starts the binary at this process's path with `--upgrade` and waits until it listens on the upgrade socket.
/// The new binary first validates the configuration, so a broken binary or config never costs the sockets.
fn start_new_binary(snapshot: &Snapshot) -> Result<u32, UpgradeError> {
    let invocation = INVOCATION.get_or_init(|| Invocation {
        exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("levitate")),
        args: std::env::args_os().skip(1).collect(),
    });
    let exe = &invocation.exe;
    let spawn_error = |source| UpgradeError::Spawn { exe: exe.display().to_string(), source };
    let check = std::process::Command::new(exe)
        .arg("check")
        .arg("-c")
        .arg(&snapshot.paths.main)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(spawn_error)?;
    if !check.success() {
        return Err(UpgradeError::Check(check));
    }
    let sock = &snapshot.server.upgrade_sock;
    let _ = std::fs::remove_file(sock);
    let mut args: Vec<OsString> =
        invocation.args.iter().filter(|a| *a != "-u" && *a != "--upgrade").cloned().collect();
    args.push("--upgrade".into());
    let mut child = std::process::Command::new(exe)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .spawn()
        .map_err(spawn_error)?;
    let deadline = Instant::now() + HANDOVER_WAIT;
    loop {
        if sock.exists() {
            return Ok(child.id());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(UpgradeError::Exited(status));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(UpgradeError::Timeout { sock: sock.display().to_string() });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_file_round_trips_and_only_our_own_is_removed() {
        let dir = std::env::temp_dir().join(format!("levitate-pid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("levitate.pid");
        write_pid_file(&path, 4242);
        assert_eq!(read_pid_file(&path), Some(4242));
        remove_own_pid_file(&path);
        assert!(path.exists(), "another process's pid file stays");
        write_pid_file(&path, std::process::id());
        remove_own_pid_file(&path);
        assert!(!path.exists());
        write_pid_file(&dir.join("missing-folder").join("x.pid"), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_a_plausible_pid_is_read_from_a_pid_file() {
        assert_eq!(parse_pid("4242\n").unwrap(), 4242);
        assert_eq!(parse_pid(" 2 ").unwrap(), 2);
        for refused in ["0", "1", "-1", "-4242", "4294967295", "4294967296", "99999999999", "4194305"] {
            assert!(matches!(parse_pid(refused), Err(PidFileError::OutOfRange(_))), "{refused}");
        }
        for refused in ["", "abc", "12 34", "0x10", "+5", "4242abc", "99999999999999999999999"] {
            assert!(matches!(parse_pid(refused), Err(PidFileError::NotANumber(_))), "{refused:?}");
        }
        let dir = std::env::temp_dir().join(format!("levitate-pid-parse-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("levitate.pid");
        std::fs::write(&path, "-1\n").unwrap();
        assert_eq!(read_pid_file(&path), None, "never kill(-1)");
        std::fs::write(&path, "0").unwrap();
        assert_eq!(read_pid_file(&path), None, "never kill(0)");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_pid_file_naming_another_program_is_not_signalled() {
        let dir = std::env::temp_dir().join(format!("levitate-pid-owner-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("levitate.pid");
        // This test runs inside the `levitate-<hash>` test binary: a levitate process.
        write_pid_file(&path, std::process::id());
        assert_eq!(running_levitate(&path).unwrap(), std::process::id());
        let mut sleeper = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        write_pid_file(&path, sleeper.id());
        let refused = running_levitate(&path).unwrap_err();
        let _ = sleeper.kill();
        let _ = sleeper.wait();
        assert!(matches!(refused, PidFileError::NotLevitate { .. }), "{refused}");
        assert!(refused.to_string().contains("sleep"), "{refused}");
        std::fs::write(&path, "1").unwrap();
        assert!(matches!(running_levitate(&path), Err(PidFileError::OutOfRange(1))));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn systemd_notification_reaches_the_socket() {
        let dir = std::env::temp_dir().join(format!("levitate-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        std::env::set_var("NOTIFY_SOCKET", &path);
        notify_systemd("READY=1");
        std::env::remove_var("NOTIFY_SOCKET");
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
