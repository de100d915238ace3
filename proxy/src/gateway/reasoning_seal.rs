//! The keys that seal Responses `reasoning` items, as the request path uses them.
//!
//! The sealing scheme itself is pure and lives with the protocol
//! (`levitate_filters::protocol::openai_responses::seal`); this file loads the keyring from the store once
//! per process (creating it on first use, rotating it when the current key is older than
//! [`ROTATE_AFTER`]) and adds what the filters crate must not do itself: a fresh random nonce per seal.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use levitate_filters::error::{ClientError, ErrorKind};
use levitate_filters::protocol::openai_responses::seal::{ReasoningState, SealKey, SealKeys, KEY_LEN};
use levitate_filters::protocol::openai_responses::Sealer;
use ring::rand::{SecureRandom, SystemRandom};

use crate::store::{SealKeyRecord, Store};

/// A key seals for this long, then opens only (as the previous key) for as long again: a reasoning item
/// replayed more than twice this after it was made gets a 400 naming the unknown key.
pub const ROTATE_AFTER: Duration = Duration::from_secs(30 * 86_400);

/// Seals with the store's current key and a random nonce; opens with the current or the previous key.
pub struct ReasoningSealer {
    keys: SealKeys,
    random: SystemRandom,
}

impl ReasoningSealer {
    pub fn keys(&self) -> &SealKeys {
        &self.keys
    }
}

impl Sealer for ReasoningSealer {
    fn seal(&self, state: &ReasoningState) -> String {
        let mut nonce = [0u8; 12];
        if self.random.fill(&mut nonce).is_err() {
            // The OS generator does not fail on supported systems; a v4 UUID (also the OS's) is the fallback.
            nonce.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..12]);
        }
        self.keys.seal(state, nonce)
    }
}

static SEALER: OnceLock<Arc<ReasoningSealer>> = OnceLock::new();

/// The process's sealer, loaded from `store` on first use.
pub fn sealer(store: &Store) -> Result<Arc<ReasoningSealer>, ClientError> {
    if let Some(sealer) = SEALER.get() {
        return Ok(Arc::clone(sealer));
    }
    let random = SystemRandom::new();
    let generate = || {
        let mut key = vec![0u8; KEY_LEN];
        if random.fill(&mut key).is_err() {
            key.iter_mut().zip(uuid::Uuid::new_v4().as_bytes().iter().cycle()).for_each(|(k, r)| *k = *r);
        }
        key
    };
    let unavailable = |what: String| {
        tracing::error!(error = %what, "the reasoning sealing keys are unavailable");
        ClientError::new(500, ErrorKind::Api, "the reasoning sealing keys are unavailable")
    };
    let keyring = store.seal_keys(ROTATE_AFTER, generate).map_err(|e| unavailable(e.to_string()))?;
    let key = |record: &SealKeyRecord| SealKey::new(record.id, &record.key);
    let current =
        key(&keyring.current).ok_or_else(|| unavailable("the stored key is not 256 bits".into()))?;
    let keys = SealKeys::new(current, keyring.previous.as_ref().and_then(key));
    Ok(Arc::clone(SEALER.get_or_init(|| Arc::new(ReasoningSealer { keys, random }))))
}
