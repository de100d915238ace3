//! thoughtSignature bookkeeping shared by the transforms (inject) and the stream machines (capture).
//!
//! Google's Gemini 3 models reject a history `functionCall` that lacks the signature they issued with it, and
//! Claude rejects a thinking block whose signature it did not issue, so every signature seen on the way down
//! is captured and looked up again on the client's next request. The store itself (sled, TTL) lives in the
//! proxy crate behind [`SignatureLookup`]; this module only defines the keys and the rules (PROTOCOL.md §9):
//!
//! - a tool call's signature is keyed by the client-visible tool call id;
//! - a thinking block's signature is keyed by a hash of the thinking text, so a client that drops or mangles
//!   the signature still gets it re-attached;
//! - a Claude turn's whole signed thinking block (its text and signature) is also keyed by the turn's first
//!   tool call id ([`ThinkingBlock`]), so a client that sends back only its `tool_calls` (OpenAI chat) gets
//!   the turn rebuilt as Claude wants it: the signed thought first, the calls unsigned (PROTOCOL.md §2, §9);
//! - signatures compare as decoded bytes: clients hand them back in URL-safe base64 or unpadded
//!   ([`normalize_signature`]);
//! - a signature's family is read from its shape ([`signature_family`]): Antigravity's Claude signatures are
//!   base64 of base64 text starting with `E` ("R-form"), Gemini's are base64 protobufs. Signatures never
//!   cross families, and sentinels never go to Claude.

use std::borrow::Cow;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use sha2::{Digest, Sha256};

/// Google's documented sentinel for function calls it did not issue (Gemini targets only, never Claude).
pub const SKIP_VALIDATOR_SENTINEL: &str = "skip_thought_signature_validator";

/// Every sentinel some client sends in place of a real signature (PROTOCOL.md §9 rule 2).
pub const SENTINELS: &[&str] = &[SKIP_VALIDATOR_SENTINEL, "context_engineering_is_the_way_to_go"];

/// Shortest signature accepted as genuine: real ones are hundreds of bytes (AM's cache uses the same floor).
pub const MIN_SIGNATURE_LEN: usize = 50;

/// Prefix of the store key of a thinking-text signature (see [`SignatureKey::store_key`]).
const THINKING_KEY_PREFIX: &str = "thinking:";

/// Prefix of the store key of a whole thinking block, keyed by its turn's first tool call id.
const BLOCK_KEY_PREFIX: &str = "block:";

/// Largest thinking text kept as a [`ThinkingBlock`]: the store holds signatures, not transcripts. A longer
/// block is not cached, and its turn is replayed as a turn without one.
pub const MAX_THINKING_BLOCK_BYTES: usize = 256 * 1024;

/// A Claude turn's signed thinking, as the upstream issued it: every thought text of the turn, in order, and
/// the signature on its last thought part. Claude checks both, so both are restored unchanged.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ThinkingBlock {
    pub text: String,
    pub signature: String,
}

/// What a captured signature belongs to, and so under which key the next request looks for it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SignatureKey {
    /// The client-visible tool call id (`call_…`, `toolu_…`, or the upstream's own id).
    ToolCall(String),
    /// [`thinking_hash`] of a thinking block's full text.
    Thinking(String),
    /// The first tool call id of a Claude turn whose whole [`ThinkingBlock`] is stored.
    Block(String),
}

impl SignatureKey {
    /// One flat string for a key-value store: the tool call id itself (as stored before thinking signatures
    /// existed), or `thinking:<hash>`.
    pub fn store_key(&self) -> Cow<'_, str> {
        match self {
            SignatureKey::ToolCall(id) => Cow::Borrowed(id),
            SignatureKey::Thinking(hash) => Cow::Owned(format!("{THINKING_KEY_PREFIX}{hash}")),
            SignatureKey::Block(id) => Cow::Owned(format!("{BLOCK_KEY_PREFIX}{id}")),
        }
    }

    /// The inverse of [`store_key`](Self::store_key).
    pub fn from_store_key(key: &str) -> Self {
        if let Some(hash) = key.strip_prefix(THINKING_KEY_PREFIX) {
            SignatureKey::Thinking(hash.to_owned())
        } else if let Some(id) = key.strip_prefix(BLOCK_KEY_PREFIX) {
            SignatureKey::Block(id.to_owned())
        } else {
            SignatureKey::ToolCall(key.to_owned())
        }
    }
}

/// A signature seen in an upstream response, with the key under which the next request will look for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapturedSignature {
    /// The store key, [`SignatureKey::store_key`]: the client-visible tool call id for tool calls (unchanged
    /// from before), `thinking:<hash>` for thinking blocks. Use [`key`](Self::key) to tell them apart.
    pub tool_call_id: String,
    pub signature: String,
    /// The family that issued it, from its shape; `None` for sentinels and unrecognisable values.
    pub family: Option<ModelFamily>,
}

impl CapturedSignature {
    /// A signature that belongs to a tool call.
    pub fn tool_call(tool_call_id: &str, signature: &str) -> Self {
        CapturedSignature {
            tool_call_id: tool_call_id.to_owned(),
            signature: signature.to_owned(),
            family: signature_family(signature),
        }
    }

    /// A signature that belongs to a thinking block with this full text.
    pub fn thinking(thinking_text: &str, signature: &str) -> Self {
        CapturedSignature {
            tool_call_id: SignatureKey::Thinking(thinking_hash(thinking_text)).store_key().into_owned(),
            signature: signature.to_owned(),
            family: signature_family(signature),
        }
    }

    /// A Claude turn's whole thinking block, stored under its first tool call id. The stored value is the
    /// block as JSON; the store treats it as an opaque signature string.
    pub fn thinking_block(tool_call_id: &str, block: &ThinkingBlock) -> Self {
        CapturedSignature {
            tool_call_id: SignatureKey::Block(tool_call_id.to_owned()).store_key().into_owned(),
            signature: serde_json::to_string(block).unwrap_or_default(),
            family: signature_family(&block.signature),
        }
    }

    /// What the signature belongs to.
    pub fn key(&self) -> SignatureKey {
        SignatureKey::from_store_key(&self.tool_call_id)
    }
}

/// Read access to previously captured signatures, implemented by the proxy's store.
///
/// Only [`signature_for_tool_call`](Self::signature_for_tool_call) is required: the other lookups default to
/// it with the flat [`SignatureKey::store_key`], so a store keyed by `CapturedSignature::tool_call_id` serves
/// them all.
pub trait SignatureLookup {
    fn signature_for_tool_call(&self, tool_call_id: &str) -> Option<String>;

    /// The signature captured for a thinking block whose text hashes to `text_hash` ([`thinking_hash`]).
    fn signature_for_text(&self, text_hash: &str) -> Option<String> {
        self.signature_for_tool_call(&SignatureKey::Thinking(text_hash.to_owned()).store_key())
    }

    /// The whole thinking block captured for the Claude turn whose first tool call was `tool_call_id`.
    fn thinking_block_for_tool_call(&self, tool_call_id: &str) -> Option<ThinkingBlock> {
        let stored =
            self.signature_for_tool_call(&SignatureKey::Block(tool_call_id.to_owned()).store_key())?;
        serde_json::from_str(&stored).ok()
    }

    /// The family that issued `signature`. Defaults to reading its shape; a store that remembers the family
    /// it captured a signature with may answer better.
    fn family_of(&self, signature: &str) -> Option<ModelFamily> {
        signature_family(signature)
    }
}

/// A lookup that knows nothing: for tests and for requests without history.
pub struct NoSignatures;

impl SignatureLookup for NoSignatures {
    fn signature_for_tool_call(&self, _tool_call_id: &str) -> Option<String> {
        None
    }
}

/// Which model family an upstream model belongs to; signatures never cross families.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ModelFamily {
    Gemini,
    Claude,
    Other,
}

impl ModelFamily {
    pub fn of(upstream_model: &str) -> Self {
        if upstream_model.starts_with("claude") {
            ModelFamily::Claude
        } else if upstream_model.starts_with("gemini") {
            ModelFamily::Gemini
        } else {
            ModelFamily::Other
        }
    }
}

/// The key a thinking text's signature is stored under: hex of the first 16 bytes of its SHA-256.
pub fn thinking_hash(thinking_text: &str) -> String {
    let digest = Sha256::digest(thinking_text.as_bytes());
    let mut out = String::with_capacity(32);
    for byte in &digest[..16] {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Decodes a signature in any base64 alphabet clients use (standard or URL-safe, padded or not).
pub fn decode_signature(signature: &str) -> Option<Vec<u8>> {
    let text = signature.trim();
    if text.is_empty() {
        return None;
    }
    [STANDARD, URL_SAFE, STANDARD_NO_PAD, URL_SAFE_NO_PAD].iter().find_map(|engine| engine.decode(text).ok())
}

/// The canonical text of a signature for cache keys and for sending upstream: standard padded base64 of
/// its decoded bytes, so the URL-safe re-encoding google-genai hands back compares equal to the original.
/// Sentinels (some of which happen to be valid URL-safe base64) and values that are not base64 at all are
/// returned unchanged.
pub fn normalize_signature(signature: &str) -> Cow<'_, str> {
    if SENTINELS.contains(&signature) {
        return Cow::Borrowed(signature);
    }
    match decode_signature(signature) {
        Some(bytes) => {
            let canonical = STANDARD.encode(bytes);
            if canonical == signature {
                Cow::Borrowed(signature)
            } else {
                Cow::Owned(canonical)
            }
        }
        None => Cow::Borrowed(signature),
    }
}

/// Whether `signature` is one of the [`SENTINELS`], verbatim or base64-encoded (LiteLLM encodes it).
pub fn is_sentinel(signature: &str) -> bool {
    let signature = signature.trim();
    SENTINELS.contains(&signature)
        || decode_signature(signature).is_some_and(|bytes| SENTINELS.iter().any(|s| s.as_bytes() == bytes))
}

/// The family that issued a signature, read from its shape (PROTOCOL.md §9 rule 6): Claude signatures are
/// "R-form", base64 of base64 text that starts with `E`; any other base64 value of at least
/// [`MIN_SIGNATURE_LEN`] characters is Gemini's. Sentinels, short values and non-base64 text are `None`.
pub fn signature_family(signature: &str) -> Option<ModelFamily> {
    if signature.len() < MIN_SIGNATURE_LEN || is_sentinel(signature) {
        return None;
    }
    let bytes = decode_signature(signature)?;
    let inner_is_base64 =
        bytes.first() == Some(&b'E') && std::str::from_utf8(&bytes).ok().and_then(decode_signature).is_some();
    Some(if inner_is_base64 { ModelFamily::Claude } else { ModelFamily::Gemini })
}

/// Whether a signature may be sent to a model of `target` family: sentinels only to Gemini, and genuine
/// signatures only to the family that issued them.
pub fn signature_fits(lookup: &dyn SignatureLookup, signature: &str, target: ModelFamily) -> bool {
    if is_sentinel(signature) {
        return target == ModelFamily::Gemini;
    }
    match lookup.family_of(signature) {
        Some(family) => family == target,
        // Unrecognisable values are harmless to Gemini (it answers 400 only when one is missing) but Claude
        // rejects anything it did not issue.
        None => target != ModelFamily::Claude,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gemini_sig() -> String {
        let mut raw = vec![0x12u8, 48];
        raw.extend((0..48u8).map(|i| i.wrapping_mul(37)));
        STANDARD.encode(raw)
    }

    fn claude_sig() -> String {
        STANDARD.encode(gemini_sig().as_bytes())
    }

    #[test]
    fn families_are_read_from_the_shape() {
        assert!(gemini_sig().starts_with('E'));
        assert!(claude_sig().starts_with('R'));
        assert_eq!(signature_family(&gemini_sig()), Some(ModelFamily::Gemini));
        assert_eq!(signature_family(&claude_sig()), Some(ModelFamily::Claude));
        let url_safe = URL_SAFE_NO_PAD.encode(STANDARD.decode(claude_sig()).unwrap());
        assert_eq!(signature_family(&url_safe), Some(ModelFamily::Claude));
        assert_eq!(signature_family("short"), None);
        assert_eq!(signature_family(SKIP_VALIDATOR_SENTINEL), None);
        assert_eq!(signature_family(&"!".repeat(60)), None);
    }

    #[test]
    fn sentinels_are_recognised_plain_and_encoded() {
        assert!(is_sentinel(SKIP_VALIDATOR_SENTINEL));
        assert!(is_sentinel("context_engineering_is_the_way_to_go"));
        assert!(is_sentinel(&STANDARD.encode(SKIP_VALIDATOR_SENTINEL)));
        assert!(!is_sentinel(&gemini_sig()));
    }

    #[test]
    fn normalization_compares_decoded_bytes() {
        let sig = gemini_sig();
        let url_safe = URL_SAFE_NO_PAD.encode(STANDARD.decode(&sig).unwrap());
        assert_ne!(url_safe, sig);
        assert_eq!(normalize_signature(&url_safe), sig);
        assert!(matches!(normalize_signature(&sig), Cow::Borrowed(_)));
        assert_eq!(normalize_signature(SKIP_VALIDATOR_SENTINEL), SKIP_VALIDATOR_SENTINEL);
    }

    #[test]
    fn signatures_fit_only_their_family() {
        let look = NoSignatures;
        assert!(signature_fits(&look, &claude_sig(), ModelFamily::Claude));
        assert!(!signature_fits(&look, &gemini_sig(), ModelFamily::Claude));
        assert!(!signature_fits(&look, SKIP_VALIDATOR_SENTINEL, ModelFamily::Claude));
        assert!(!signature_fits(&look, "sig", ModelFamily::Claude));
        assert!(signature_fits(&look, SKIP_VALIDATOR_SENTINEL, ModelFamily::Gemini));
        assert!(signature_fits(&look, &gemini_sig(), ModelFamily::Gemini));
        assert!(!signature_fits(&look, &claude_sig(), ModelFamily::Gemini));
    }

    #[test]
    fn captured_keys_round_trip_through_the_store_key() {
        let c = CapturedSignature::tool_call("toolu_1", &gemini_sig());
        assert_eq!(c.tool_call_id, "toolu_1");
        assert_eq!(c.key(), SignatureKey::ToolCall("toolu_1".into()));
        assert_eq!(c.family, Some(ModelFamily::Gemini));
        let t = CapturedSignature::thinking("I think", &claude_sig());
        assert_eq!(t.key(), SignatureKey::Thinking(thinking_hash("I think")));
        assert!(t.tool_call_id.starts_with("thinking:"));
        assert_eq!(t.family, Some(ModelFamily::Claude));
        assert_eq!(thinking_hash("I think").len(), 32);
    }

    #[test]
    fn thinking_blocks_round_trip_through_the_flat_store() {
        struct Flat(String, String);
        impl SignatureLookup for Flat {
            fn signature_for_tool_call(&self, key: &str) -> Option<String> {
                (key == self.0).then(|| self.1.clone())
            }
        }
        let block = ThinkingBlock { text: "I will call \"ls\"".into(), signature: claude_sig() };
        let c = CapturedSignature::thinking_block("toolu_1", &block);
        assert_eq!(c.key(), SignatureKey::Block("toolu_1".into()));
        assert_eq!(c.family, Some(ModelFamily::Claude));
        let store = Flat(c.tool_call_id.clone(), c.signature.clone());
        assert_eq!(store.thinking_block_for_tool_call("toolu_1"), Some(block));
        assert_eq!(store.thinking_block_for_tool_call("toolu_2"), None);
        // A plain tool-call signature under the same id is not mistaken for a block.
        assert_eq!(Flat("toolu_1".into(), claude_sig()).thinking_block_for_tool_call("toolu_1"), None);
    }

    #[test]
    fn text_lookups_default_to_the_flat_store() {
        struct Flat(String, String);
        impl SignatureLookup for Flat {
            fn signature_for_tool_call(&self, key: &str) -> Option<String> {
                (key == self.0).then(|| self.1.clone())
            }
        }
        let captured = CapturedSignature::thinking("abc", "sig-value");
        let store = Flat(captured.tool_call_id.clone(), captured.signature.clone());
        assert_eq!(store.signature_for_text(&thinking_hash("abc")).as_deref(), Some("sig-value"));
        assert_eq!(store.signature_for_text(&thinking_hash("abd")), None);
    }
}
