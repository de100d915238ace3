//! Reasoning continuity without server state: the `encrypted_content` of a Responses `reasoning` item.
//!
//! Codex and other Responses clients send `store: false` and replay the `reasoning` items of earlier turns
//! verbatim. What Levitate needs to restore Google's thoughtSignature on the next turn (the thought text,
//! the signature, where it sat and which model family issued it) travels inside that item, sealed with
//! AES-256-GCM under a key kept in the store, so a replay restores the exact signature after a restart, and a
//! client cannot forge or alter one (a signature sent to the wrong family, or a made-up one, fails upstream
//! with a confusing 400 much later).
//!
//! Blob: `lvr1.` + base64url(no pad) of `key id (4 bytes) ‖ nonce (12) ‖ ciphertext ‖ tag (16)`. The key id
//! and the format tag are authenticated as associated data. [`SealKeys`] holds the current key and, after a
//! rotation, the previous one, so blobs sealed just before a rotation still open. The nonce is the caller's
//! (random per seal in the gateway), which keeps this module free of I/O.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use serde::{Deserialize, Serialize};

use crate::signature::ModelFamily;

/// The format tag every blob starts with; bumped if the plaintext layout ever changes.
const PREFIX: &str = "lvr1.";
/// Authenticated with every blob, so a blob of another format or purpose never opens as this one.
const AAD_LABEL: &[u8] = b"levitate reasoning v1";
const KEY_ID_LEN: usize = 4;
const TAG_LEN: usize = 16;
/// Longest blob accepted (base64 text): a thought text of a long turn plus its signature, with room.
pub const MAX_BLOB_LEN: usize = 4 * 1024 * 1024;

/// Why a replayed `encrypted_content` could not be opened. Every case is the client's (400).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("is not an encrypted_content issued by Levitate (unknown format)")]
    Format,
    #[error("was sealed with a key this Levitate does not hold (rotated out, or from another installation)")]
    UnknownKey,
    #[error("failed authentication: it was altered or forged")]
    Tampered,
    #[error("is larger than {MAX_BLOB_LEN} bytes")]
    TooLarge,
}

/// Where the upstream put the turn's signature, so a replay puts it back in the same place.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignedOn {
    /// On a thought part (Claude always; PROTOCOL.md §2 "Claude signature placement").
    Thought,
    /// On the first `functionCall` of the turn (Gemini 3, §9 rule 1).
    Call,
    /// On a text part or the final empty part of the turn (Gemini 3 without calls).
    Text,
}

/// What a `reasoning` item carries for the next turn.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasoningState {
    /// The model family that issued `signature`: a signature never crosses families.
    pub family: Family,
    /// The whole thought text of the turn (Claude needs the exact text with its signature).
    pub thought: String,
    pub signature: Option<String>,
    pub signed_on: SignedOn,
}

/// [`ModelFamily`] as sealed (serde names kept stable apart from the enum's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Gemini,
    Claude,
    Other,
}

impl From<ModelFamily> for Family {
    fn from(f: ModelFamily) -> Self {
        match f {
            ModelFamily::Gemini => Family::Gemini,
            ModelFamily::Claude => Family::Claude,
            ModelFamily::Other => Family::Other,
        }
    }
}

impl Family {
    pub fn model_family(self) -> ModelFamily {
        match self {
            Family::Gemini => ModelFamily::Gemini,
            Family::Claude => ModelFamily::Claude,
            Family::Other => ModelFamily::Other,
        }
    }
}

/// One AES-256-GCM key with its id.
pub struct SealKey {
    id: [u8; KEY_ID_LEN],
    key: LessSafeKey,
}

impl SealKey {
    /// `None` when `material` is not 32 bytes.
    pub fn new(id: u32, material: &[u8]) -> Option<Self> {
        let unbound = UnboundKey::new(&AES_256_GCM, material).ok()?;
        Some(SealKey { id: id.to_be_bytes(), key: LessSafeKey::new(unbound) })
    }

    fn aad(&self) -> Vec<u8> {
        let mut aad = AAD_LABEL.to_vec();
        aad.extend_from_slice(&self.id);
        aad
    }
}

/// The bytes of a new key's material.
pub const KEY_LEN: usize = 32;

/// The keys blobs are sealed and opened with: the current one seals, both open.
pub struct SealKeys {
    current: SealKey,
    previous: Option<SealKey>,
}

impl std::fmt::Debug for SealKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealKeys")
            .field("current", &u32::from_be_bytes(self.current.id))
            .field("previous", &self.previous.as_ref().map(|k| u32::from_be_bytes(k.id)))
            .finish()
    }
}

impl SealKeys {
    pub fn new(current: SealKey, previous: Option<SealKey>) -> Self {
        SealKeys { current, previous }
    }

    /// Seals `state` under the current key with `nonce` (which must never repeat for one key).
    pub fn seal(&self, state: &ReasoningState, nonce: [u8; NONCE_LEN]) -> String {
        // A struct of strings and enums always serializes.
        let mut buffer = serde_json::to_vec(state).unwrap_or_default();
        let key = &self.current;
        let tag = key.key.seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(key.aad()),
            &mut buffer,
        );
        let mut raw = Vec::with_capacity(KEY_ID_LEN + NONCE_LEN + buffer.len() + TAG_LEN);
        raw.extend_from_slice(&key.id);
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&buffer);
        // Sealing only fails for inputs beyond AES-GCM's 64 GiB bound; an empty tag makes the blob unopenable.
        if let Ok(tag) = tag {
            raw.extend_from_slice(tag.as_ref());
        }
        let mut out = String::with_capacity(PREFIX.len() + raw.len() * 4 / 3 + 4);
        out.push_str(PREFIX);
        URL_SAFE_NO_PAD.encode_string(&raw, &mut out);
        out
    }

    /// Opens a blob sealed by [`seal`](Self::seal) under the current or the previous key.
    pub fn open(&self, blob: &str) -> Result<ReasoningState, SealError> {
        if blob.len() > MAX_BLOB_LEN {
            return Err(SealError::TooLarge);
        }
        let body = blob.trim().strip_prefix(PREFIX).ok_or(SealError::Format)?;
        let mut raw = URL_SAFE_NO_PAD.decode(body).map_err(|_| SealError::Format)?;
        if raw.len() < KEY_ID_LEN + NONCE_LEN + TAG_LEN {
            return Err(SealError::Format);
        }
        let id = &raw[..KEY_ID_LEN];
        let key = std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .find(|k| k.id == id)
            .ok_or(SealError::UnknownKey)?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&raw[KEY_ID_LEN..KEY_ID_LEN + NONCE_LEN]);
        let sealed = &mut raw[KEY_ID_LEN + NONCE_LEN..];
        let plain = key
            .key
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(key.aad()), sealed)
            .map_err(|_| SealError::Tampered)?;
        // Authentic bytes that do not parse were sealed by a different layout: as good as forged.
        serde_json::from_slice(plain).map_err(|_| SealError::Tampered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(current: u32, previous: Option<u32>) -> SealKeys {
        let key = |id: u32| SealKey::new(id, &[id as u8; KEY_LEN]).unwrap();
        SealKeys::new(key(current), previous.map(key))
    }

    fn state() -> ReasoningState {
        ReasoningState {
            family: Family::Claude,
            thought: "**Planning** the answer".into(),
            signature: Some("RXN".repeat(30)),
            signed_on: SignedOn::Thought,
        }
    }

    #[test]
    fn a_sealed_state_opens_to_itself_and_hides_the_text() {
        let keys = keys(1, None);
        let blob = keys.seal(&state(), [7; NONCE_LEN]);
        assert!(blob.starts_with("lvr1.") && !blob.contains("Planning"), "{blob}");
        assert_eq!(keys.open(&blob), Ok(state()));
        assert_ne!(blob, keys.seal(&state(), [8; NONCE_LEN]), "the nonce varies the blob");
    }

    #[test]
    fn tampered_forged_and_foreign_blobs_are_refused() {
        let keys = keys(1, None);
        let blob = keys.seal(&state(), [7; NONCE_LEN]);
        // Flip one bit of every byte position in turn: none opens.
        let raw = URL_SAFE_NO_PAD.decode(&blob[PREFIX.len()..]).unwrap();
        for i in KEY_ID_LEN..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 0x01;
            let bad = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(&bad));
            assert_eq!(keys.open(&bad), Err(SealError::Tampered), "byte {i}");
        }
        let mut truncated = raw.clone();
        truncated.truncate(raw.len() - 1);
        assert_eq!(
            keys.open(&format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(&truncated))),
            Err(SealError::Tampered)
        );
        assert_eq!(keys.open("gAAAAABo-openai-style-blob"), Err(SealError::Format));
        assert_eq!(keys.open("lvr1.!!!"), Err(SealError::Format));
        assert_eq!(keys.open("lvr1.AAAA"), Err(SealError::Format));
        let other_installation = self::keys(9, None).seal(&state(), [7; NONCE_LEN]);
        assert_eq!(keys.open(&other_installation), Err(SealError::UnknownKey));
        // Same id, different material: authentic only under the key that sealed it.
        let impostor = SealKeys::new(SealKey::new(1, &[42; KEY_LEN]).unwrap(), None);
        assert_eq!(impostor.open(&blob), Err(SealError::Tampered));
        assert_eq!(keys.open(&"x".repeat(MAX_BLOB_LEN + 1)), Err(SealError::TooLarge));
        assert!(SealKey::new(1, &[0; 16]).is_none(), "only 256-bit keys");
    }

    #[test]
    fn rotation_keeps_the_previous_key_for_opening_only() {
        let before = keys(1, None);
        let old_blob = before.seal(&state(), [1; NONCE_LEN]);
        let after = keys(2, Some(1));
        assert_eq!(after.open(&old_blob), Ok(state()));
        let new_blob = after.seal(&state(), [2; NONCE_LEN]);
        assert_eq!(URL_SAFE_NO_PAD.decode(&new_blob[PREFIX.len()..]).unwrap()[..4], 2u32.to_be_bytes());
        let twice_rotated = keys(3, Some(2));
        assert_eq!(twice_rotated.open(&old_blob), Err(SealError::UnknownKey));
        assert_eq!(twice_rotated.open(&new_blob), Ok(state()));
    }
}
