//! Persistent runtime state in sled: what Levitate learns and must not forget across restarts.
//!
//! Account definitions are the user's YAML; everything learned about them at run time (access tokens and
//! their expiry, discovered project ids and tiers) and the thoughtSignature cache live here. sled writes to
//! its in-memory page cache and flushes in the background, so inserts stay off the request's critical path.
//!
//! The rare writes that must survive a kill -9 (forbidden marks, lockouts, refreshed tokens, discovered
//! projects) are flushed to disk before their call returns: each is a few per hour, and losing one means
//! hammering a locked or banned account, or refreshing again, after a crash. Signatures and the request log
//! ride the background flush (every 500 ms) and the flush on every exit path.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

mod usage;
pub use usage::{UsageKey, UsageRecord};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store at {path}: {source}")]
    Open { path: String, source: sled::Error },
    #[error("store: {0}")]
    Sled(#[from] sled::Error),
    #[error("store: corrupt record: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("store hand-over file {path}: {source}")]
    Handover { path: String, source: std::io::Error },
}

/// What Levitate knows about one account beyond its YAML definition.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AccountState {
    pub access_token: Option<String>,
    /// Unix seconds at which `access_token` expires.
    pub expires_at: u64,
    pub project_id: Option<String>,
    pub tier: Option<String>,
    pub tier_name: Option<String>,
    pub identity: Option<crate::egress::identity::ClientIdentity>,
}

/// Debug output never shows the access token, only whether there is one.
impl std::fmt::Debug for AccountState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountState")
            .field("access_token", &self.access_token.as_ref().map(|_| "<redacted>"))
            .field("expires_at", &self.expires_at)
            .field("project_id", &self.project_id)
            .field("tier", &self.tier)
            .field("tier_name", &self.tier_name)
            .finish()
    }
}

/// A lockout of one (account, model) pair, kept until its deadline so a restart does not hammer the account.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LockoutRecord {
    pub account: String,
    pub model: String,
    /// Unix milliseconds the lockout ends at.
    pub until_ms: u64,
    pub reason: String,
}

/// Why an account is out of rotation until an operator acts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ForbiddenRecord {
    pub reason: String,
    /// Where a human fixes it (`validation_url` / `appeal_url`), when Google gave one.
    pub url: Option<String>,
    pub message: String,
    /// Unix seconds it was marked.
    pub at: u64,
}

/// One model's quota for one account, as `fetchAvailableModels` reported it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuotaRecord {
    pub account: String,
    pub model: String,
    pub remaining_fraction: f64,
    /// Unix milliseconds the quota resets at, when known.
    pub reset_ms: Option<u64>,
    /// Unix seconds of the fetch.
    pub fetched_at: u64,
}

/// Where [`Store::seal_keys`] keeps the keyring, in the default tree.
const SEAL_KEYS: &[u8] = b"reasoning_seal_keys";

/// One key that seals Responses reasoning items.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct SealKeyRecord {
    pub id: u32,
    pub key: Vec<u8>,
    /// Unix seconds it was made.
    pub created_at: u64,
}

/// The key that seals now and the one it replaced, which still opens.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct SealKeyring {
    pub current: SealKeyRecord,
    pub previous: Option<SealKeyRecord>,
}

fn pair_key(account: &str, model: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(account.len() + model.len() + 1);
    key.extend_from_slice(account.as_bytes());
    key.push(0);
    key.extend_from_slice(model.as_bytes());
    key
}

/// One record of a hand-over file: the tree it belongs to, and its key and value in base64.
#[derive(Serialize, Deserialize)]
struct HandoverRecord {
    tree: String,
    key: String,
    value: String,
}

/// Where the old process of an upgrade leaves the records it wrote after handing the store over, one file
/// per process id, for the new process to take in once that process has exited.
pub fn handover_dir(store_path: &Path) -> std::path::PathBuf {
    store_path.join("handover")
}

/// Creates `folder` (and missing parents) 0700, and makes it 0700 if it exists: the store and hand-over
/// folders hold tokens, and their modes must not depend on the umask of whoever started the service.
fn create_private_dir(folder: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(folder)?;
    std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o700))
}

/// Makes everything under `folder` private: folders 0700, files 0600 (symlinks are left alone).
fn make_private(folder: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o700))?;
    for entry in std::fs::read_dir(folder)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            make_private(&entry.path())?;
        } else if kind.is_file() {
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

#[derive(Serialize, Deserialize)]
struct SignatureRecord {
    signature: String,
    stored_at: u64,
}

/// Handle to the sled database; cheap to clone.
///
/// The trees sit behind one `ArcSwap` so that [`Store::detach`] can hand the database over to a new process
/// during a graceful upgrade (sled holds an exclusive file lock until its last handle is dropped).
#[derive(Clone)]
pub struct Store {
    trees: Arc<ArcSwap<Trees>>,
}

/// The open database and its trees.
struct Trees {
    db: sled::Db,
    accounts: sled::Tree,
    signatures: sled::Tree,
    lockouts: sled::Tree,
    forbidden: sled::Tree,
    quotas: sled::Tree,
    requests: sled::Tree,
    usage: sled::Tree,
}

pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

pub fn unix_now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Store {
    /// Opens (or creates) the store at `path`, private to the service's user: the folder is made 0700 before
    /// sled writes into it and what sled created is made 0600, whatever the umask, since it holds access
    /// tokens. sled creates its files with the process umask and offers no mode of its own.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let io = |source: std::io::Error| StoreError::Open {
            path: path.display().to_string(),
            source: source.into(),
        };
        create_private_dir(path).map_err(io)?;
        let db = sled::Config::new()
            .path(path)
            .flush_every_ms(Some(500))
            .open()
            .map_err(|source| StoreError::Open { path: path.display().to_string(), source })?;
        make_private(path).map_err(io)?;
        Self::from_db(db)
    }

    /// An in-memory store for tests and for `levitate check`.
    pub fn temporary() -> Result<Store, StoreError> {
        Self::from_db(sled::Config::new().temporary(true).open()?)
    }

    fn from_db(db: sled::Db) -> Result<Store, StoreError> {
        let accounts = db.open_tree("accounts")?;
        let signatures = db.open_tree("signatures")?;
        let lockouts = db.open_tree("lockouts")?;
        let forbidden = db.open_tree("forbidden")?;
        let quotas = db.open_tree("quotas")?;
        let requests = db.open_tree("requests")?;
        let usage = db.open_tree("usage")?;
        let trees = Trees { db, accounts, signatures, lockouts, forbidden, quotas, requests, usage };
        Ok(Store { trees: Arc::new(ArcSwap::from_pointee(trees)) })
    }

    fn trees(&self) -> arc_swap::Guard<Arc<Trees>> {
        self.trees.load()
    }

    /// Flushes and releases the on-disk database, continuing in memory: the old process of a graceful
    /// upgrade calls this so the new one can open the store while old streams finish. What the old process
    /// writes afterwards (signatures of streams that end there, their request log entries, lockouts) reaches
    /// the new process through [`export_records`](Self::export_records) and
    /// [`import_records`](Self::import_records).
    pub fn detach(&self) -> Result<(), StoreError> {
        self.flush()?;
        let memory = Self::temporary()?;
        let trees = memory.trees.load_full();
        self.trees.store(trees);
        Ok(())
    }

    fn named_trees(&self) -> [(&'static str, sled::Tree); 7] {
        let t = self.trees();
        [
            ("accounts", t.accounts.clone()),
            ("signatures", t.signatures.clone()),
            ("lockouts", t.lockouts.clone()),
            ("forbidden", t.forbidden.clone()),
            ("quotas", t.quotas.clone()),
            ("requests", t.requests.clone()),
            ("usage", t.usage.clone()),
        ]
    }

    /// Writes every record to `file` (write-temp, fsync, rename), returning how many. Called on a detached
    /// store, whose in-memory database holds exactly what was written after the hand-over.
    pub fn export_records(&self, file: &Path) -> Result<usize, StoreError> {
        use base64::engine::general_purpose::STANDARD;
        use base64::Engine;
        let mut records = Vec::new();
        for (tree, handle) in self.named_trees() {
            for item in handle.iter() {
                let (key, value) = item?;
                records.push(HandoverRecord {
                    tree: tree.into(),
                    key: STANDARD.encode(key),
                    value: STANDARD.encode(value),
                });
            }
        }
        let io = |source| StoreError::Handover { path: file.display().to_string(), source };
        if let Some(folder) = file.parent() {
            create_private_dir(folder).map_err(io)?;
        }
        let temp = file.with_extension("tmp");
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            // A leftover temp file would keep its old mode: start from a fresh one, created 0600.
            let _ = std::fs::remove_file(&temp);
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temp)
                .map_err(io)?;
            out.write_all(&serde_json::to_vec(&records)?).map_err(io)?;
            out.sync_all().map_err(io)?;
        }
        std::fs::rename(&temp, file).map_err(io)?;
        Ok(records.len())
    }

    /// Merges the records of an exported file, returning how many were added or replaced. Either process
    /// may hold the newer record of a key (the old one, still finishing streams, may extend a lockout or
    /// refresh a token after the new one wrote its own), so the newer wins by the record's own clock: a
    /// lockout's `until_ms`, a forbidden mark's `at`, a token's `expires_at`, a quota's `fetched_at`, a
    /// signature's `stored_at`. Unreadable records never replace readable ones.
    pub fn import_records(&self, file: &Path) -> Result<usize, StoreError> {
        use base64::engine::general_purpose::STANDARD;
        use base64::Engine;
        let raw = std::fs::read(file)
            .map_err(|source| StoreError::Handover { path: file.display().to_string(), source })?;
        let records: Vec<HandoverRecord> = serde_json::from_slice(&raw)?;
        let trees = self.named_trees();
        let mut added = 0;
        for record in records {
            let Some((_, tree)) = trees.iter().find(|(name, _)| *name == record.tree) else { continue };
            let (Ok(key), Ok(value)) = (STANDARD.decode(&record.key), STANDARD.decode(&record.value)) else {
                continue;
            };
            if merge_newer(tree, record.tree.as_str(), &key, value)? {
                added += 1;
            }
        }
        self.flush()?;
        Ok(added)
    }

    pub fn account(&self, id: &str) -> Result<AccountState, StoreError> {
        match self.trees().accounts.get(id.as_bytes())? {
            Some(raw) => Ok(serde_json::from_slice(&raw)?),
            None => Ok(AccountState::default()),
        }
    }

    /// Applies `change` to an account's record atomically with respect to other updates.
    pub fn update_account(
        &self,
        id: &str,
        change: impl Fn(&mut AccountState),
    ) -> Result<AccountState, StoreError> {
        let mut result = AccountState::default();
        self.trees().accounts.fetch_and_update(id.as_bytes(), |old| {
            let mut state: AccountState =
                old.and_then(|raw| serde_json::from_slice(raw).ok()).unwrap_or_default();
            change(&mut state);
            result = state.clone();
            serde_json::to_vec(&state).ok()
        })?;
        // A refreshed token or a discovered project: rare, and costly to lose.
        self.flush()?;
        Ok(result)
    }

    /// The keys that seal Responses reasoning items (`gateway/reasoning_seal.rs`), created on first use and
    /// rotated when the current one is older than `max_age`: the current key becomes the previous one (still
    /// opening what it sealed) and `generate` makes the new one. Kept in the default tree and flushed before
    /// returning: a lost key makes every reasoning item it sealed unopenable.
    pub fn seal_keys(
        &self,
        max_age: Duration,
        generate: impl Fn() -> Vec<u8>,
    ) -> Result<SealKeyring, StoreError> {
        self.seal_keys_at(unix_now(), max_age, generate)
    }

    fn seal_keys_at(
        &self,
        now: u64,
        max_age: Duration,
        generate: impl Fn() -> Vec<u8>,
    ) -> Result<SealKeyring, StoreError> {
        let db = &self.trees().db;
        let stored: Option<SealKeyring> =
            db.get(SEAL_KEYS)?.map(|raw| serde_json::from_slice(&raw)).transpose()?;
        let fresh = |id: u32| SealKeyRecord { id, key: generate(), created_at: now };
        let keyring = match stored {
            Some(keys) if now.saturating_sub(keys.current.created_at) <= max_age.as_secs() => {
                return Ok(keys)
            }
            Some(keys) => {
                SealKeyring { current: fresh(keys.current.id.wrapping_add(1)), previous: Some(keys.current) }
            }
            None => SealKeyring { current: fresh(1), previous: None },
        };
        db.insert(SEAL_KEYS, serde_json::to_vec(&keyring)?)?;
        self.flush()?;
        Ok(keyring)
    }

    pub fn put_signature(&self, tool_call_id: &str, signature: &str) -> Result<(), StoreError> {
        let record = SignatureRecord { signature: signature.to_string(), stored_at: unix_now() };
        self.trees().signatures.insert(tool_call_id.as_bytes(), serde_json::to_vec(&record)?)?;
        Ok(())
    }

    /// The signature captured for a tool call, unless it is older than `ttl`.
    pub fn signature(&self, tool_call_id: &str, ttl: Duration) -> Result<Option<String>, StoreError> {
        let Some(raw) = self.trees().signatures.get(tool_call_id.as_bytes())? else {
            return Ok(None);
        };
        let record: SignatureRecord = serde_json::from_slice(&raw)?;
        if unix_now().saturating_sub(record.stored_at) > ttl.as_secs() {
            return Ok(None);
        }
        Ok(Some(record.signature))
    }

    /// Deletes signatures older than `ttl`, then the oldest beyond `max_entries`; returns how many went.
    pub fn prune_signatures(&self, ttl: Duration, max_entries: usize) -> Result<usize, StoreError> {
        self.prune_signatures_at(unix_now().saturating_sub(ttl.as_secs()), max_entries)
    }

    fn prune_signatures_at(&self, cutoff: u64, max_entries: usize) -> Result<usize, StoreError> {
        let tree = &self.trees().signatures;
        let mut kept: Vec<(u64, sled::IVec)> = Vec::new();
        let mut removed = 0;
        for item in tree.iter() {
            let (key, raw) = item?;
            match serde_json::from_slice::<SignatureRecord>(&raw) {
                Ok(record) if record.stored_at >= cutoff => kept.push((record.stored_at, key)),
                _ => {
                    tree.remove(key)?;
                    removed += 1;
                }
            }
        }
        if kept.len() > max_entries {
            kept.sort_unstable_by_key(|(stored_at, _)| *stored_at);
            let excess = kept.len() - max_entries;
            for (_, key) in kept.into_iter().take(excess) {
                tree.remove(key)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    pub fn put_lockout(&self, record: &LockoutRecord) -> Result<(), StoreError> {
        self.trees()
            .lockouts
            .insert(pair_key(&record.account, &record.model), serde_json::to_vec(record)?)?;
        self.flush()
    }

    pub fn remove_lockout(&self, account: &str, model: &str) -> Result<(), StoreError> {
        self.trees().lockouts.remove(pair_key(account, model))?;
        self.flush()
    }

    /// Lockouts still running at `now_ms`; expired or unreadable ones are deleted on the way.
    pub fn lockouts(&self, now_ms: u64) -> Result<Vec<LockoutRecord>, StoreError> {
        let mut live = Vec::new();
        for item in self.trees().lockouts.iter() {
            let (key, raw) = item?;
            match serde_json::from_slice::<LockoutRecord>(&raw) {
                Ok(record) if record.until_ms > now_ms => live.push(record),
                _ => {
                    self.trees().lockouts.remove(key)?;
                }
            }
        }
        Ok(live)
    }

    pub fn put_forbidden(&self, account: &str, record: &ForbiddenRecord) -> Result<(), StoreError> {
        self.trees().forbidden.insert(account.as_bytes(), serde_json::to_vec(record)?)?;
        self.flush()
    }

    pub fn remove_forbidden(&self, account: &str) -> Result<(), StoreError> {
        self.trees().forbidden.remove(account.as_bytes())?;
        self.flush()
    }

    pub fn forbidden(&self) -> Result<Vec<(String, ForbiddenRecord)>, StoreError> {
        let mut all = Vec::new();
        for item in self.trees().forbidden.iter() {
            let (key, raw) = item?;
            if let Ok(record) = serde_json::from_slice(&raw) {
                all.push((String::from_utf8_lossy(&key).into_owned(), record));
            }
        }
        Ok(all)
    }

    pub fn put_quota(&self, record: &QuotaRecord) -> Result<(), StoreError> {
        self.trees().quotas.insert(pair_key(&record.account, &record.model), serde_json::to_vec(record)?)?;
        Ok(())
    }

    pub fn quotas(&self) -> Result<Vec<QuotaRecord>, StoreError> {
        let mut all = Vec::new();
        for item in self.trees().quotas.iter() {
            let (_, raw) = item?;
            if let Ok(record) = serde_json::from_slice(&raw) {
                all.push(record);
            }
        }
        Ok(all)
    }

    /// Appends one request-log record (already serialized metadata) under a time-ordered key.
    pub fn put_request_record(&self, at_ms: u64, record: &[u8]) -> Result<(), StoreError> {
        let trees = self.trees();
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&at_ms.to_be_bytes());
        key[8..].copy_from_slice(&trees.db.generate_id()?.to_be_bytes());
        trees.requests.insert(key, record)?;
        Ok(())
    }

    /// Up to `limit` request-log records, newest first.
    pub fn request_records(&self, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut records = Vec::with_capacity(limit.min(1024));
        for item in self.trees().requests.iter().rev().take(limit) {
            records.push(item?.1.to_vec());
        }
        Ok(records)
    }

    /// Bounds the request log: drops records older than `cutoff_ms`, then the oldest beyond `max_entries`.
    /// Returns how many were removed.
    pub fn prune_request_records(&self, max_entries: usize, cutoff_ms: u64) -> Result<usize, StoreError> {
        let trees = self.trees();
        let mut removed = 0;
        for item in trees.requests.range(..cutoff_ms.to_be_bytes().to_vec()) {
            trees.requests.remove(item?.0)?;
            removed += 1;
        }
        let excess = trees.requests.len().saturating_sub(max_entries);
        for item in trees.requests.iter().take(excess) {
            trees.requests.remove(item?.0)?;
            removed += 1;
        }
        Ok(removed)
    }

    pub fn flush(&self) -> Result<(), StoreError> {
        self.trees().db.flush()?;
        Ok(())
    }
}

/// Stores `incoming` under `key` unless the record already there is as new or newer; true when it was stored.
fn merge_newer(tree: &sled::Tree, name: &str, key: &[u8], incoming: Vec<u8>) -> Result<bool, StoreError> {
    // A concurrent writer may change the key between the read and the swap: read again and decide again.
    for _ in 0..8 {
        let current = tree.get(key)?;
        let value = match &current {
            None => incoming.clone(),
            Some(existing) => match newer(name, existing, &incoming) {
                Some(merged) => merged,
                None => return Ok(false),
            },
        };
        if tree.compare_and_swap(key, current, Some(value))?.is_ok() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// What replaces `existing` when `incoming` is newer, or `None` to keep `existing`.
fn newer(tree: &str, existing: &[u8], incoming: &[u8]) -> Option<Vec<u8>> {
    fn clock<T: serde::de::DeserializeOwned>(raw: &[u8], at: impl Fn(&T) -> u64) -> Option<u64> {
        serde_json::from_slice::<T>(raw).ok().map(|r| at(&r))
    }
    let later = |at: fn(&[u8]) -> Option<u64>| match (at(existing), at(incoming)) {
        (Some(old), Some(new)) if new > old => Some(incoming.to_vec()),
        (None, Some(_)) => Some(incoming.to_vec()),
        _ => None,
    };
    match tree {
        "lockouts" => later(|raw| clock(raw, |r: &LockoutRecord| r.until_ms)),
        "forbidden" => later(|raw| clock(raw, |r: &ForbiddenRecord| r.at)),
        "quotas" => later(|raw| clock(raw, |r: &QuotaRecord| r.fetched_at)),
        "signatures" => later(|raw| clock(raw, |r: &SignatureRecord| r.stored_at)),
        "accounts" => {
            // Field by field: the later token, and the project either side discovered.
            let mine: AccountState = serde_json::from_slice(existing).ok()?;
            let theirs: AccountState = serde_json::from_slice(incoming).ok()?;
            let mut merged = mine.clone();
            if theirs.expires_at > mine.expires_at && theirs.access_token.is_some() {
                merged.access_token = theirs.access_token;
                merged.expires_at = theirs.expires_at;
            }
            if merged.project_id.is_none() && theirs.project_id.is_some() {
                merged.project_id = theirs.project_id;
                merged.tier = theirs.tier;
                merged.tier_name = theirs.tier_name;
            }
            (merged != mine).then(|| serde_json::to_vec(&merged).ok()).flatten()
        }
        "usage" => {
            // Counters: both processes counted different requests, so the row is their sum.
            let mut sum: UsageRecord = serde_json::from_slice(existing).unwrap_or_default();
            sum.add(&serde_json::from_slice(incoming).ok()?);
            serde_json::to_vec(&sum).ok()
        }
        // Request-log keys are unique per record: nothing to merge.
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_keys_are_made_once_kept_and_rotated_with_the_previous_kept() {
        let store = Store::temporary().unwrap();
        let day = Duration::from_secs(86_400);
        let first = store.seal_keys_at(1_000, day, || vec![1; 32]).unwrap();
        assert_eq!(
            (first.current.id, first.current.key.clone(), first.previous.is_none()),
            (1, vec![1; 32], true)
        );
        let again = store.seal_keys_at(1_000 + 86_400, day, || vec![2; 32]).unwrap();
        assert!(again == first, "a key within its age is kept");
        let rotated = store.seal_keys_at(1_000 + 86_401, day, || vec![3; 32]).unwrap();
        assert_eq!((rotated.current.id, rotated.current.key.clone()), (2, vec![3; 32]));
        assert!(rotated.previous == Some(first.current), "the old key still opens");
        let twice = store.seal_keys_at(1_000 + 3 * 86_400, day, || vec![4; 32]).unwrap();
        assert!(twice.previous == Some(rotated.current) && twice.current.id == 3, "only one previous key");
    }

    fn mode(path: &Path) -> u32 {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(path).unwrap().permissions()) & 0o777
    }

    #[test]
    fn the_store_and_hand_over_files_are_private_whatever_the_umask() {
        let dir = std::env::temp_dir().join(format!("levitate-store-modes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("data");
        // SAFETY: umask(2) only sets the process's file-creation mask; 022 is the common default.
        let before = unsafe { libc::umask(0o022) };
        let store = Store::open(&path).unwrap();
        store
            .put_lockout(&LockoutRecord {
                account: "a@x".into(),
                model: "m".into(),
                until_ms: u64::MAX,
                reason: "r".into(),
            })
            .unwrap();
        store.flush().unwrap();
        store.detach().unwrap();
        let handover = handover_dir(&path).join("4242.json");
        store
            .put_lockout(&LockoutRecord {
                account: "b@x".into(),
                model: "m".into(),
                until_ms: u64::MAX,
                reason: "r".into(),
            })
            .unwrap();
        assert_eq!(store.export_records(&handover).unwrap(), 1);
        drop(store);
        // SAFETY: as above, restoring the mask the test found.
        unsafe { libc::umask(before) };

        assert_eq!(mode(&path), 0o700, "the store folder");
        assert_eq!(mode(&handover_dir(&path)), 0o700, "the hand-over folder");
        assert_eq!(mode(&handover), 0o600, "the hand-over file");
        let mut files = 0;
        for entry in std::fs::read_dir(&path).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                files += 1;
                assert_eq!(mode(&entry.path()), 0o600, "{}", entry.path().display());
            }
        }
        assert!(files > 0, "sled wrote its files");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn hand_over_import_keeps_the_newer_record() {
        let file = std::env::temp_dir().join(format!("levitate-handover-merge-{}.json", std::process::id()));
        let lockout = |model: &str, until_ms| LockoutRecord {
            account: "a".into(),
            model: model.into(),
            until_ms,
            reason: "rate".into(),
        };
        let old = Store::temporary().unwrap();
        old.put_lockout(&lockout("m1", 2_000)).unwrap(); // the old process extended it later
        old.put_lockout(&lockout("m2", 1_000)).unwrap(); // the new process holds a longer one
        old.update_account("a", |s| {
            s.access_token = Some("newer".into());
            s.expires_at = 900;
        })
        .unwrap();
        old.export_records(&file).unwrap();

        let new = Store::temporary().unwrap();
        new.put_lockout(&lockout("m1", 1_500)).unwrap();
        new.put_lockout(&lockout("m2", 3_000)).unwrap();
        new.update_account("a", |s| {
            s.access_token = Some("older".into());
            s.expires_at = 500;
            s.project_id = Some("p".into());
        })
        .unwrap();
        assert_eq!(new.import_records(&file).unwrap(), 2, "m1's lockout and the account's token");
        let until =
            |model: &str| new.lockouts(0).unwrap().into_iter().find(|r| r.model == model).map(|r| r.until_ms);
        assert_eq!(until("m1"), Some(2_000));
        assert_eq!(until("m2"), Some(3_000));
        let state = new.account("a").unwrap();
        assert_eq!((state.access_token.as_deref(), state.expires_at), (Some("newer"), 900));
        assert_eq!(state.project_id.as_deref(), Some("p"), "what the new process learned stays");
        let _ = std::fs::remove_file(&file);
    }

    #[test]
    fn account_state_round_trips_and_survives_reopen() {
        let dir = std::env::temp_dir().join(format!("levitate-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let store = Store::open(&dir).unwrap();
            store
                .update_account("a@x.com", |s| {
                    s.project_id = Some("p-1".into());
                    s.expires_at = 42;
                })
                .unwrap();
            store.put_signature("call_1", "sig").unwrap();
            store.flush().unwrap();
        }
        let store = Store::open(&dir).unwrap();
        let state = store.account("a@x.com").unwrap();
        assert_eq!(state.project_id.as_deref(), Some("p-1"));
        assert_eq!(state.expires_at, 42);
        assert_eq!(store.signature("call_1", Duration::from_secs(60)).unwrap().as_deref(), Some("sig"));
        assert_eq!(store.account("nobody").unwrap(), AccountState::default());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn pool_state_round_trips_and_expired_lockouts_are_dropped() {
        let store = Store::temporary().unwrap();
        let lock = |model: &str, until_ms| LockoutRecord {
            account: "a@x".into(),
            model: model.into(),
            until_ms,
            reason: "QUOTA_EXHAUSTED".into(),
        };
        store.put_lockout(&lock("m1", 2_000)).unwrap();
        store.put_lockout(&lock("m2", 500)).unwrap();
        assert_eq!(store.lockouts(1_000).unwrap(), vec![lock("m1", 2_000)]);
        assert_eq!(store.lockouts(0).unwrap(), vec![lock("m1", 2_000)], "the expired one was deleted");
        store.remove_lockout("a@x", "m1").unwrap();
        assert!(store.lockouts(0).unwrap().is_empty());
        let mark = ForbiddenRecord { reason: "TOS_VIOLATION".into(), url: None, message: "m".into(), at: 1 };
        store.put_forbidden("a@x", &mark).unwrap();
        assert_eq!(store.forbidden().unwrap(), vec![("a@x".to_string(), mark)]);
        store.remove_forbidden("a@x").unwrap();
        assert!(store.forbidden().unwrap().is_empty());
        let quota = QuotaRecord {
            account: "a@x".into(),
            model: "m1".into(),
            remaining_fraction: 0.5,
            reset_ms: Some(9),
            fetched_at: 1,
        };
        store.put_quota(&quota).unwrap();
        assert_eq!(store.quotas().unwrap(), vec![quota]);
    }

    #[test]
    fn request_log_is_newest_first_and_bounded_by_age_and_count() {
        let store = Store::temporary().unwrap();
        for (at, body) in [(1_000u64, "a"), (2_000, "b"), (3_000, "c"), (4_000, "d")] {
            store.put_request_record(at, body.as_bytes()).unwrap();
        }
        assert_eq!(store.request_records(2).unwrap(), vec![b"d".to_vec(), b"c".to_vec()]);
        assert_eq!(
            store.prune_request_records(10, 2_000).unwrap(),
            1,
            "only the record older than the cutoff"
        );
        assert_eq!(store.prune_request_records(2, 0).unwrap(), 1, "then the oldest beyond the count");
        assert_eq!(store.request_records(10).unwrap(), vec![b"d".to_vec(), b"c".to_vec()]);
    }

    #[test]
    fn usage_rows_of_an_upgrade_hand_over_are_added_not_replaced() {
        let row = UsageKey { hour: 5, key: "team".into(), ..UsageKey::default() };
        let used = |n| UsageRecord { requests: n, input_tokens: 10 * n, ..UsageRecord::default() };
        let old = Store::temporary().unwrap();
        old.add_usage(&row, &used(2)).unwrap();
        let new = Store::temporary().unwrap();
        new.add_usage(&row, &used(3)).unwrap();
        let file = std::env::temp_dir().join(format!("levitate-usage-handover-{}.json", std::process::id()));
        old.export_records(&file).unwrap();
        new.import_records(&file).unwrap();
        let rows = new.usage_rows(0, 10).unwrap();
        assert_eq!(rows, vec![(row, used(5))]);
        let _ = std::fs::remove_file(file);
    }

    #[test]
    fn detach_releases_the_database_and_continues_in_memory() {
        let dir = std::env::temp_dir().join(format!("levitate-store-detach-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let old = Store::open(&dir).unwrap();
        old.put_signature("call_1", "sig").unwrap();
        assert!(Store::open(&dir).is_err(), "sled holds an exclusive lock while open");
        old.detach().unwrap();
        // sled's background flusher lets go of the file lock within one flush period, not at once (the new
        // process of an upgrade retries the same way; see server.rs).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let new = loop {
            match Store::open(&dir) {
                Ok(store) => break store,
                Err(e) if std::time::Instant::now() > deadline => panic!("store still locked: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        assert_eq!(new.signature("call_1", Duration::from_secs(60)).unwrap().as_deref(), Some("sig"));
        old.put_signature("call_2", "late").unwrap();
        assert!(new.signature("call_2", Duration::from_secs(60)).unwrap().is_none());

        // What the old process wrote after the hand-over reaches the new one by file, without overwriting
        // what the new one wrote meanwhile.
        old.put_signature("call_3", "old-view").unwrap();
        new.put_signature("call_3", "new-view").unwrap();
        old.put_request_record(7, br#"{"status":200}"#).unwrap();
        let file = handover_dir(&dir).join("4242.json");
        assert_eq!(old.export_records(&file).unwrap(), 3, "only the records written since the detach");
        assert_eq!(new.import_records(&file).unwrap(), 2);
        let sig = |id: &str| new.signature(id, Duration::from_secs(60)).unwrap();
        assert_eq!(sig("call_2").as_deref(), Some("late"));
        assert_eq!(sig("call_3").as_deref(), Some("new-view"), "the newer process's own record wins");
        assert_eq!(new.request_records(10).unwrap(), vec![br#"{"status":200}"#.to_vec()]);
        assert_eq!(new.import_records(&file).unwrap(), 0, "taking a file in twice adds nothing");
        std::fs::write(&file, b"{not json").unwrap();
        assert!(new.import_records(&file).is_err());
        drop(new);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn signatures_expire() {
        let store = Store::temporary().unwrap();
        store.put_signature("call_1", "sig").unwrap();
        assert!(store.signature("call_1", Duration::from_secs(3600)).unwrap().is_some());
        assert_eq!(store.prune_signatures(Duration::from_secs(3600), 10).unwrap(), 0);
        assert_eq!(store.prune_signatures_at(unix_now() + 10, 10).unwrap(), 1);
        assert!(store.signature("call_1", Duration::from_secs(3600)).unwrap().is_none());
    }

    #[test]
    fn signatures_are_bounded_oldest_first() {
        let store = Store::temporary().unwrap();
        for (i, id) in ["a", "b", "c", "d"].iter().enumerate() {
            let record = SignatureRecord { signature: format!("sig-{id}"), stored_at: 1_000 + i as u64 };
            store.trees().signatures.insert(id.as_bytes(), serde_json::to_vec(&record).unwrap()).unwrap();
        }
        assert_eq!(store.prune_signatures_at(0, 2).unwrap(), 2);
        let left: Vec<_> = store.trees().signatures.iter().keys().map(|k| k.unwrap().to_vec()).collect();
        assert_eq!(left, [b"c".to_vec(), b"d".to_vec()]);
    }
}
