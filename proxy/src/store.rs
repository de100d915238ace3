//! Persistent runtime state in sled: what Levitate learns and must not forget across restarts.
//!
//! Account definitions are the user's YAML; everything learned about them at run time (access tokens and
//! their expiry, discovered project ids and tiers) and the thoughtSignature cache live here. sled writes to
//! its in-memory page cache and flushes in the background, so inserts stay off the request's critical path.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store at {path}: {source}")]
    Open { path: String, source: sled::Error },
    #[error("store: {0}")]
    Sled(#[from] sled::Error),
    #[error("store: corrupt record: {0}")]
    Corrupt(#[from] serde_json::Error),
}

/// What Levitate knows about one account beyond its YAML definition.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AccountState {
    pub access_token: Option<String>,
    /// Unix seconds at which `access_token` expires.
    pub expires_at: u64,
    pub project_id: Option<String>,
    pub tier: Option<String>,
    pub tier_name: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct SignatureRecord {
    signature: String,
    stored_at: u64,
}

/// Handle to the sled database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    accounts: sled::Tree,
    signatures: sled::Tree,
}

pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .flush_every_ms(Some(500))
            .open()
            .map_err(|source| StoreError::Open { path: path.display().to_string(), source })?;
        Self::from_db(db)
    }

    /// An in-memory store for tests and for `levitate check`.
    pub fn temporary() -> Result<Store, StoreError> {
        Self::from_db(sled::Config::new().temporary(true).open()?)
    }

    fn from_db(db: sled::Db) -> Result<Store, StoreError> {
        let accounts = db.open_tree("accounts")?;
        let signatures = db.open_tree("signatures")?;
        Ok(Store { db, accounts, signatures })
    }

    pub fn account(&self, id: &str) -> Result<AccountState, StoreError> {
        match self.accounts.get(id.as_bytes())? {
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
        self.accounts.fetch_and_update(id.as_bytes(), |old| {
            let mut state: AccountState =
                old.and_then(|raw| serde_json::from_slice(raw).ok()).unwrap_or_default();
            change(&mut state);
            result = state.clone();
            serde_json::to_vec(&state).ok()
        })?;
        Ok(result)
    }

    pub fn put_signature(&self, tool_call_id: &str, signature: &str) -> Result<(), StoreError> {
        let record = SignatureRecord { signature: signature.to_string(), stored_at: unix_now() };
        self.signatures.insert(tool_call_id.as_bytes(), serde_json::to_vec(&record)?)?;
        Ok(())
    }

    /// The signature captured for a tool call, unless it is older than `ttl`.
    pub fn signature(&self, tool_call_id: &str, ttl: Duration) -> Result<Option<String>, StoreError> {
        let Some(raw) = self.signatures.get(tool_call_id.as_bytes())? else {
            return Ok(None);
        };
        let record: SignatureRecord = serde_json::from_slice(&raw)?;
        if unix_now().saturating_sub(record.stored_at) > ttl.as_secs() {
            return Ok(None);
        }
        Ok(Some(record.signature))
    }

    /// Deletes signatures older than `ttl`; returns how many were removed.
    pub fn expire_signatures(&self, ttl: Duration) -> Result<usize, StoreError> {
        self.remove_signatures_stored_before(unix_now().saturating_sub(ttl.as_secs()))
    }

    fn remove_signatures_stored_before(&self, cutoff: u64) -> Result<usize, StoreError> {
        let mut removed = 0;
        for item in self.signatures.iter() {
            let (key, raw) = item?;
            let stale =
                serde_json::from_slice::<SignatureRecord>(&raw).map(|r| r.stored_at < cutoff).unwrap_or(true);
            if stale {
                self.signatures.remove(key)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn signatures_expire() {
        let store = Store::temporary().unwrap();
        store.put_signature("call_1", "sig").unwrap();
        assert!(store.signature("call_1", Duration::from_secs(3600)).unwrap().is_some());
        assert_eq!(store.expire_signatures(Duration::from_secs(3600)).unwrap(), 0);
        assert_eq!(store.remove_signatures_stored_before(unix_now() + 10).unwrap(), 1);
        assert!(store.signature("call_1", Duration::from_secs(3600)).unwrap().is_none());
    }
}
