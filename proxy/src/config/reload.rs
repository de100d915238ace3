//! Live configuration reload: read and validate every file, build a complete new [`Snapshot`], then swap it
//! in with one store. A bad edit changes nothing; its error (file:line and reason) is logged, kept for
//! `/admin/health` and `/admin/reload`, and counted in `levitate_config_reloads_total{result="failed"}`.
//!
//! Three triggers share [`Reloader::reload`]: a change in the configuration folder ([`ConfigWatcher`], which watches the
//! folders rather than the files so that editors saving by rename are seen), SIGHUP ([`SighupReloader`]; Pingora
//! does not handle it and its default action would kill the process) and `POST /admin/reload`. Settings a
//! running process cannot change (listening addresses, the store, Pingora's server settings) keep their
//! running values and are reported as needing a binary upgrade.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use notify::{RecursiveMode, Watcher};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use serde::Serialize;

use crate::config::live::LiveConfig;
use crate::config::Snapshot;
use crate::ops::metrics::Metrics;
use crate::store::unix_now;

/// Quiet time after a file event before reloading: editors write several events per save.
const DEBOUNCE: Duration = Duration::from_millis(250);
/// Longest wait for quiet: a file rewritten continuously must still be reloaded.
const DEBOUNCE_MAX: Duration = Duration::from_secs(2);

/// What asked for a reload (a metric label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Watch,
    Signal,
    Admin,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Watch => "watch",
            Trigger::Signal => "signal",
            Trigger::Admin => "admin",
        }
    }
}

/// The outcome of one reload attempt, as `/admin/reload` returns it and `/admin/health` shows the last one.
#[derive(Clone, Debug, Serialize)]
pub struct ReloadReport {
    pub ok: bool,
    pub trigger: Trigger,
    /// Unix seconds of the attempt.
    pub at: u64,
    /// Generation in force after the attempt (unchanged on failure).
    pub generation: u64,
    /// `file:line:column: reason` or `file: reason`.
    pub error: Option<String>,
    /// Edited settings that keep their running value until a binary upgrade.
    pub needs_upgrade: Vec<String>,
}

/// What a new configuration is applied to before it is put in force (the account pool's table and settings).
pub type Apply = Box<dyn Fn(&Snapshot) + Send + Sync>;

/// The one reload path: reads the files, applies the result and keeps the bookkeeping `/admin/health` shows.
pub struct Reloader {
    /// Serializes reloads: two triggers at once must not interleave read-validate-swap.
    gate: Mutex<()>,
    generation: std::sync::atomic::AtomicU64,
    last: Mutex<Option<ReloadReport>>,
    /// The configuration the process started with: the source of the settings fixed for its life.
    boot: Arc<Snapshot>,
    config: Arc<LiveConfig>,
    metrics: Arc<Metrics>,
    apply: Apply,
}

impl Reloader {
    /// `config` holds `boot` now; `apply` receives every accepted snapshot before it goes in force.
    pub fn new(boot: Arc<Snapshot>, config: Arc<LiveConfig>, metrics: Arc<Metrics>, apply: Apply) -> Self {
        Reloader {
            gate: Mutex::new(()),
            generation: std::sync::atomic::AtomicU64::new(1),
            last: Mutex::new(None),
            boot,
            config,
            metrics,
            apply,
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn last(&self) -> Option<ReloadReport> {
        self.last.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Reloads the configuration from the files the running one came from. Never partially applies.
    pub fn reload(&self, trigger: Trigger) -> ReloadReport {
        let _gate = self.gate.lock().unwrap_or_else(PoisonError::into_inner);
        let main_path = self.config.load().paths.main.clone();
        let loaded = Snapshot::load(&main_path).map_err(|e| e.to_string()).and_then(|next| {
            match weakens_admin_protection(&self.boot, &next) {
                Some(reason) => Err(reason),
                None => Ok(next),
            }
        });
        let report = match loaded {
            Ok(mut next) => {
                let needs_upgrade = self.boot.needs_upgrade(&next);
                keep_process_settings(&mut next, &self.boot);
                (self.apply)(&next);
                self.config.store(Arc::new(next));
                // Published after the report (below): whoever sees the new generation sees its report too.
                // Reloads are serialised by `gate`, so nothing else moves the counter meanwhile.
                let generation = self.generation() + 1;
                if needs_upgrade.is_empty() {
                    tracing::info!(trigger = trigger.as_str(), generation, "configuration reloaded");
                } else {
                    tracing::warn!(
                        trigger = trigger.as_str(),
                        generation,
                        needs_upgrade = %needs_upgrade.join(", "),
                        "configuration reloaded; these settings keep their running value until a binary upgrade"
                    );
                }
                ReloadReport { ok: true, trigger, at: unix_now(), generation, error: None, needs_upgrade }
            }
            Err(e) => {
                tracing::error!(trigger = trigger.as_str(), error = %e, "configuration reload refused; nothing changed");
                let pending = self
                    .last
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .as_ref()
                    .map(|r| r.needs_upgrade.clone())
                    .unwrap_or_default();
                ReloadReport {
                    ok: false,
                    trigger,
                    at: unix_now(),
                    generation: self.generation(),
                    error: Some(e),
                    needs_upgrade: pending,
                }
            }
        };
        self.metrics.config_reload(
            trigger.as_str(),
            report.ok,
            report.generation,
            report.needs_upgrade.len(),
        );
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(report.clone());
        if report.ok {
            self.generation.store(report.generation, std::sync::atomic::Ordering::Release);
        }
        report
    }

    /// Reloads on a blocking thread: reading and validating files must not stall an async worker.
    async fn reload_off_reactor(self: &Arc<Self>, trigger: Trigger) {
        let reloader = self.clone();
        let _ = tokio::task::spawn_blocking(move || reloader.reload(trigger)).await;
    }
}

/// Why `next` must not go in force when it would leave the running admin listener unprotected, if it would.
///
/// The admin listener keeps its boot address for the life of the process, so a file that now says
/// `admin.listen: 127.0.0.1:…` without a key would still be validated as loopback while the running socket
/// listens on every interface: that reload would open the admin API to the network. It is refused instead and
/// the running key stays.
fn weakens_admin_protection(boot: &Snapshot, next: &Snapshot) -> Option<String> {
    let running = boot.admin.listen;
    let keyless = next.admin.key.as_ref().is_none_or(|key| key.is_empty());
    (keyless && !running.ip().is_loopback()).then(|| {
        format!(
            "admin: the running admin listener {running} is not a loopback address, so a reload may not remove \
             or empty admin.key; the running key stays (move admin.listen to loopback with a binary upgrade first)"
        )
    })
}

/// Puts back the values a running process cannot change, so the snapshot in force tells the truth.
fn keep_process_settings(next: &mut Snapshot, boot: &Snapshot) {
    next.listen = boot.listen;
    next.admin.listen = boot.admin.listen;
    next.server = boot.server.clone();
    next.store_path = boot.store_path.clone();
    next.upstream.connect_timeout = boot.upstream.connect_timeout;
    next.upstream.read_timeout = boot.upstream.read_timeout;
}

/// SIGHUP reloads the configuration (`systemctl reload levitate`).
pub struct SighupReloader {
    reloader: Arc<Reloader>,
}

impl SighupReloader {
    pub fn new(reloader: Arc<Reloader>) -> Self {
        SighupReloader { reloader }
    }
}

#[async_trait]
impl BackgroundService for SighupReloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; reload by file change or /admin/reload");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = hangup.recv() => self.reloader.reload_off_reactor(Trigger::Signal).await,
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Watches the folders of levitate.yaml, routes.yaml and accounts.yaml and reloads after a change settles.
///
/// The folders are watched from [`ConfigWatcher::new`], before the listeners open: an edit made as soon as the
/// service answers its first request is seen, not lost to a watch registered a moment later on a busy box.
pub struct ConfigWatcher {
    reloader: Arc<Reloader>,
    config: Arc<LiveConfig>,
    armed: Mutex<Option<Armed>>,
}

/// The registered watch, handed from the constructor to the background task.
struct Armed {
    watcher: notify::RecommendedWatcher,
    events: tokio::sync::mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
    files: HashSet<PathBuf>,
    folders: HashSet<PathBuf>,
}

impl ConfigWatcher {
    pub fn new(reloader: Arc<Reloader>, config: Arc<LiveConfig>) -> Self {
        let armed = Self::arm(&config.load());
        ConfigWatcher { reloader, config, armed: Mutex::new(armed) }
    }

    fn arm(snapshot: &Snapshot) -> Option<Armed> {
        let (tx, events) = tokio::sync::mpsc::unbounded_channel();
        let mut watcher = match notify::recommended_watcher(move |event| {
            let _ = tx.send(event);
        }) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(error = %e, "cannot watch the configuration folder; reload with SIGHUP or /admin/reload");
                return None;
            }
        };
        let (files, folders) = watched(snapshot);
        for folder in &folders {
            if let Err(e) = watcher.watch(folder, RecursiveMode::NonRecursive) {
                tracing::error!(folder = %folder.display(), error = %e, "cannot watch a configuration folder");
            }
        }
        Some(Armed { watcher, events, files, folders })
    }
}

/// The configuration files of a snapshot, as absolute-ish paths, and the folders holding them.
fn watched(snapshot: &Snapshot) -> (HashSet<PathBuf>, HashSet<PathBuf>) {
    let files: HashSet<PathBuf> = [&snapshot.paths.main, &snapshot.paths.routes, &snapshot.paths.accounts]
        .into_iter()
        .map(|p| absolute(p))
        .collect();
    let folders = files.iter().filter_map(|f| f.parent().map(Path::to_path_buf)).collect();
    (files, folders)
}

fn absolute(path: &Path) -> PathBuf {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    // Symlinked folders (/etc/levitate -> …) report events under the real path.
    match (path.parent().and_then(|p| p.canonicalize().ok()), path.file_name()) {
        (Some(folder), Some(name)) => folder.join(name),
        _ => path,
    }
}

#[async_trait]
impl BackgroundService for ConfigWatcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let armed = self.armed.lock().unwrap_or_else(PoisonError::into_inner).take();
        let Some(Armed { mut watcher, events: mut rx, mut files, mut folders }) = armed else { return };
        loop {
            let event = tokio::select! {
                event = rx.recv() => event,
                _ = shutdown.changed() => return,
            };
            let Some(event) = event else { return };
            if !concerns(&event, &files) {
                continue;
            }
            // Let the save finish: wait until the configuration files are quiet (other files in the folder,
            // such as a log being written, do not count), but never longer than DEBOUNCE_MAX.
            let give_up = tokio::time::Instant::now() + DEBOUNCE_MAX;
            let mut quiet_from = tokio::time::Instant::now() + DEBOUNCE;
            loop {
                match tokio::time::timeout_at(quiet_from.min(give_up), rx.recv()).await {
                    Ok(Some(event)) => {
                        if concerns(&event, &files) {
                            quiet_from = tokio::time::Instant::now() + DEBOUNCE;
                        }
                    }
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            self.reloader.reload_off_reactor(Trigger::Watch).await;
            // accounts_file / routes_file may now name other files, possibly in other folders.
            let (next_files, next_folders) = watched(&self.config.load());
            for folder in next_folders.difference(&folders) {
                if let Err(e) = watcher.watch(folder, RecursiveMode::NonRecursive) {
                    tracing::error!(folder = %folder.display(), error = %e, "cannot watch a configuration folder");
                }
            }
            for folder in folders.difference(&next_folders) {
                let _ = watcher.unwatch(folder);
            }
            files = next_files;
            folders = next_folders;
        }
    }
}

/// Whether a file event touches one of the configuration files (created, written, renamed onto, removed).
fn concerns(event: &notify::Result<notify::Event>, files: &HashSet<PathBuf>) -> bool {
    let Ok(event) = event else { return true };
    if event.kind.is_access() {
        return false;
    }
    event.paths.iter().any(|p| files.contains(p) || files.contains(&absolute(p)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::App;
    use crate::config::Secret;
    use crate::store::Store;

    const MAIN: &str = "listen: 127.0.0.1:9000\nauth:\n  api_keys:\n    - { name: default, key: k }\n";
    const ACCOUNTS: &str = "accounts:\n  - { email: a@x.com, refresh_token: r1 }\n";

    #[test]
    fn a_bad_edit_changes_nothing_and_fixed_settings_keep_their_running_value() {
        let dir = std::env::temp_dir().join(format!("levitate-reload-app-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
        write("levitate.yaml", MAIN);
        write("accounts.yaml", ACCOUNTS);
        write("routes.yaml", "aliases:\n  gpt-4o: gemini-3-flash\n");
        let app =
            App::with_store(Snapshot::load(&dir.join("levitate.yaml")).unwrap(), Store::temporary().unwrap());

        write("routes.yaml", "aliases:\n  gpt-4o: gemini-3-pro-high\n");
        let ok = app.reload(Trigger::Admin);
        assert!(ok.ok && ok.generation == 2, "{ok:?}");
        assert_eq!(app.snapshot().aliases.resolve("gpt-4o").unwrap().upstream, "gemini-3-pro-high");

        write("routes.yaml", "aliases:\n  a: b\n  b: a\n");
        let refused = app.reload(Trigger::Watch);
        assert!(!refused.ok && refused.generation == 2);
        assert!(refused.error.as_deref().unwrap_or("").contains("cycle"), "{refused:?}");
        assert_eq!(app.snapshot().aliases.resolve("gpt-4o").unwrap().upstream, "gemini-3-pro-high");
        assert!(!app.reload.last().unwrap().ok, "the refusal is what health shows");

        write("routes.yaml", "aliases:\n  gpt-4o: gemini-3-flash\n");
        write("levitate.yaml", &MAIN.replace("9000", "9001"));
        let moved = app.reload(Trigger::Signal);
        assert!(moved.ok && moved.generation == 3);
        assert_eq!(moved.needs_upgrade, vec!["listen"]);
        assert_eq!(app.snapshot().listen.port(), 9000, "the running listener is what the snapshot says");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_reload_never_removes_the_key_of_an_admin_listener_off_loopback() {
        let dir = std::env::temp_dir().join(format!("levitate-reload-admin-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
        let exposed = format!("{MAIN}admin: {{ listen: 0.0.0.0:9101, key: admin-secret }}\n");
        write("levitate.yaml", &exposed);
        write("accounts.yaml", ACCOUNTS);
        write("routes.yaml", "aliases:\n  gpt-4o: gemini-3-flash\n");
        let app =
            App::with_store(Snapshot::load(&dir.join("levitate.yaml")).unwrap(), Store::temporary().unwrap());

        // The file now claims loopback and drops the key; the running socket still listens on 0.0.0.0.
        write("levitate.yaml", &format!("{MAIN}admin: {{ listen: 127.0.0.1:9101 }}\n"));
        let refused = app.reload(Trigger::Admin);
        assert!(!refused.ok && refused.generation == 1, "{refused:?}");
        let why = refused.error.as_deref().unwrap_or("");
        assert!(why.contains("0.0.0.0:9101") && why.contains("admin.key"), "{why}");
        assert_eq!(app.snapshot().admin.key.as_ref().map(Secret::expose), Some("admin-secret"));

        // Changing the key is not weakening it.
        write("levitate.yaml", &exposed.replace("admin-secret", "another-secret"));
        let changed = app.reload(Trigger::Admin);
        assert!(changed.ok, "{changed:?}");
        assert_eq!(app.snapshot().admin.key.as_ref().map(Secret::expose), Some("another-secret"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_events_on_configuration_files_count() {
        let dir = std::env::temp_dir().join(format!("levitate-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files: HashSet<PathBuf> = [absolute(&dir.join("routes.yaml"))].into_iter().collect();
        let event = |path: PathBuf, kind| Ok(notify::Event::new(kind).add_path(path));
        let modify = notify::EventKind::Modify(notify::event::ModifyKind::Any);
        let access = notify::EventKind::Access(notify::event::AccessKind::Any);
        assert!(concerns(&event(dir.join("routes.yaml"), modify), &files));
        assert!(!concerns(&event(dir.join(".routes.yaml.swp"), modify), &files));
        assert!(!concerns(&event(dir.join("routes.yaml"), access), &files));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
