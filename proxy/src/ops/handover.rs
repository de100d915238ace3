//! Records written by the old process of a binary upgrade after it handed the store over.
//!
//! sled is single-process, so on SIGQUIT the old process releases the database and goes on in memory while
//! its last streams finish ([`crate::store::Store::detach`]). What those streams record there (their
//! thoughtSignatures, request-log entries, lockouts Google gave them) would die with the process. Instead the
//! old process writes them to `<store.path>/handover/<pid>.json` every [`SPOOL_EVERY`] and once more just
//! before it exits ([`spool`]), and the new process takes in the file of every process that has exited
//! ([`HandoverImporter`]): records it does not hold yet are added, and the pool re-reads lockouts and marks.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;

use crate::pool::AccountPool;
use crate::store::{handover_dir, Store};

/// How often the old process rewrites its hand-over file while streams drain.
pub const SPOOL_EVERY: Duration = Duration::from_secs(1);
/// How often the new process looks for files of exited processes.
const IMPORT_EVERY: Duration = Duration::from_secs(2);
/// A file older than this is taken in even if its pid seems alive (the pid was reused).
const STALE_AFTER: Duration = Duration::from_secs(600);

fn own_file(store_path: &Path) -> PathBuf {
    handover_dir(store_path).join(format!("{}.json", std::process::id()))
}

/// Writes what this (detached) process recorded since the hand-over, beside the store at `store_path`.
pub fn spool(store: &Store, store_path: &Path) {
    let file = own_file(store_path);
    match store.export_records(&file) {
        Ok(0) => {
            let _ = std::fs::remove_file(&file);
        }
        Ok(n) => tracing::debug!(records = n, file = %file.display(), "hand-over records written"),
        Err(e) => tracing::warn!(error = %e, "cannot write the hand-over records for the new process"),
    }
}

/// Rewrites the hand-over file every [`SPOOL_EVERY`] until the process exits.
pub fn spool_until_exit(store: Store, store_path: PathBuf) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(SPOOL_EVERY).await;
            let (store, store_path) = (store.clone(), store_path.clone());
            let _ = tokio::task::spawn_blocking(move || spool(&store, &store_path)).await;
        }
    });
}

/// Whether a process with this pid exists (EPERM: it exists, under another user).
fn alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    // SAFETY: kill(2) with signal 0 only checks for the process; it sends nothing and touches no memory.
    let result = unsafe { libc::kill(pid, 0) };
    result == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The hand-over files in `folder` whose writer has exited (or that are stale), with their pid.
fn finished_files(folder: &Path) -> Vec<(u32, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(folder) else { return Vec::new() };
    let own = std::process::id();
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let path = entry.path();
            let pid: u32 = path.file_name()?.to_str()?.strip_suffix(".json")?.parse().ok()?;
            let age = entry.metadata().ok()?.modified().ok()?;
            let stale = SystemTime::now().duration_since(age).is_ok_and(|a| a > STALE_AFTER);
            (pid != own && (stale || !alive(pid))).then_some((pid, path))
        })
        .collect()
}

/// Takes in every finished hand-over file; returns how many records were added.
pub fn import_finished(store: &Store, pool: &AccountPool, store_path: &Path) -> usize {
    let mut added = 0;
    for (pid, file) in finished_files(&handover_dir(store_path)) {
        match store.import_records(&file) {
            Ok(n) => {
                added += n;
                tracing::info!(
                    pid,
                    records = n,
                    "took in what the previous process recorded after the hand-over"
                );
                if let Err(e) = std::fs::remove_file(&file) {
                    tracing::warn!(error = %e, file = %file.display(), "cannot remove a hand-over file");
                }
            }
            Err(e) => {
                // A half-read or corrupt file is moved aside rather than retried forever.
                tracing::warn!(pid, error = %e, "cannot read a hand-over file; setting it aside");
                let _ = std::fs::rename(&file, file.with_extension("unreadable"));
            }
        }
    }
    if added > 0 {
        pool.restore(store);
    }
    added
}

/// The new process's side: looks for hand-over files of exited processes and takes them in.
pub struct HandoverImporter {
    store: Store,
    pool: Arc<AccountPool>,
    /// The store's folder; fixed for the life of the process.
    store_path: PathBuf,
}

impl HandoverImporter {
    pub fn new(store: Store, pool: Arc<AccountPool>, store_path: PathBuf) -> Self {
        HandoverImporter { store, pool, store_path }
    }
}

#[async_trait]
impl BackgroundService for HandoverImporter {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            let (store, pool, path) = (self.store.clone(), self.pool.clone(), self.store_path.clone());
            let _ = tokio::task::spawn_blocking(move || import_finished(&store, &pool, &path)).await;
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(IMPORT_EVERY) => {}
            }
        }
    }
}
