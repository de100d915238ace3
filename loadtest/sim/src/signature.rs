//! Thought signatures (PROTOCOL §9): the sim issues them on answers and checks them on replay, as Google does.
//! Instead of remembering every issued signature, each one carries a MAC keyed by `signature_secret`, so
//! validation needs no memory, survives restarts with the same key, and still rejects anything the sim did not
//! issue. Signatures are compared as decoded bytes: standard or URL-safe base64, padded or not, and for Claude
//! also the one-layer-decoded form some clients hand back.
//!
//! A Claude signature also covers the thinking text it signs, as Anthropic's do ("thinking blocks cannot be
//! modified"): [`Signer::issue_for_text`] binds it, and [`Signer::check_for_text`] fails when the replayed
//! text differs. A signature issued on a part that is not a thought signs the empty text.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::models::SENTINELS;

/// Which family a signature was issued for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigFamily {
    Gemini = 1,
    Claude = 2,
}

/// The verdict on one replayed signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Sentinel,
    Issued(SigFamily),
    Unknown,
}

const NONCE: usize = 31;
const MAC: usize = 16;
const RAW_LEN: usize = 3 + NONCE + MAC;

/// Issues and checks signatures with one key.
#[derive(Debug, Clone)]
pub struct Signer {
    secret: Vec<u8>,
}

impl Signer {
    pub fn new(secret: &str) -> Signer {
        Signer { secret: secret.as_bytes().to_vec() }
    }

    /// A fresh signature: base64 of a protobuf-like blob starting with `E` for Gemini; the same, base64-encoded
    /// again (R-form), for Claude.
    pub fn issue(&self, family: SigFamily) -> String {
        self.issue_for_text(family, "")
    }

    /// [`issue`](Self::issue), a Claude signature binding `text` (the whole thinking it signs).
    pub fn issue_for_text(&self, family: SigFamily, text: &str) -> String {
        let mut raw = [0u8; RAW_LEN];
        raw[0] = 0x12; // makes the base64 start with `E`, like Google's
        raw[1] = (RAW_LEN - 2) as u8;
        raw[2] = family as u8;
        rand::thread_rng().fill_bytes(&mut raw[3..3 + NONCE]);
        let mac = self.mac(&raw[..3 + NONCE], family, text);
        raw[3 + NONCE..].copy_from_slice(&mac);
        let gemini = STANDARD.encode(raw);
        match family {
            SigFamily::Gemini => gemini,
            SigFamily::Claude => STANDARD.encode(gemini.as_bytes()),
        }
    }

    /// Classifies a signature found in a request on a part that is not a thought (or a thought without text).
    pub fn check(&self, signature: &str) -> Verdict {
        self.check_for_text(signature, "")
    }

    /// Classifies a signature found in a request on thinking whose whole text is `text`: a Claude signature
    /// issued for other text is [`Verdict::Unknown`].
    pub fn check_for_text(&self, signature: &str, text: &str) -> Verdict {
        if SENTINELS.contains(&signature) {
            return Verdict::Sentinel;
        }
        let Some(bytes) = decode(signature) else {
            return Verdict::Unknown;
        };
        if SENTINELS.iter().any(|s| s.as_bytes() == bytes.as_slice()) {
            return Verdict::Sentinel;
        }
        if let Some(f) = self.verify_raw(&bytes, text) {
            return Verdict::Issued(f);
        }
        // R-form: the decoded bytes are themselves base64 text.
        match std::str::from_utf8(&bytes).ok().and_then(decode) {
            Some(inner) => self.verify_raw(&inner, text).map_or(Verdict::Unknown, Verdict::Issued),
            None => Verdict::Unknown,
        }
    }

    fn verify_raw(&self, raw: &[u8], text: &str) -> Option<SigFamily> {
        if raw.len() != RAW_LEN || raw[0] != 0x12 {
            return None;
        }
        let family = match raw[2] {
            1 => SigFamily::Gemini,
            2 => SigFamily::Claude,
            _ => return None,
        };
        (self.mac(&raw[..3 + NONCE], family, text) == raw[3 + NONCE..]).then_some(family)
    }

    /// The MAC of a signature's header and nonce; a Claude signature's also covers the text it signs.
    fn mac(&self, data: &[u8], family: SigFamily, text: &str) -> [u8; MAC] {
        let mut h = Sha256::new();
        h.update(&self.secret);
        h.update(data);
        if family == SigFamily::Claude {
            h.update(Sha256::digest(text.as_bytes()));
        }
        let digest = h.finalize();
        let mut out = [0u8; MAC];
        out.copy_from_slice(&digest[..MAC]);
        out
    }
}

/// Decodes any of the base64 alphabets clients use.
fn decode(text: &str) -> Option<Vec<u8>> {
    let t = text.trim();
    [STANDARD, URL_SAFE, STANDARD_NO_PAD, URL_SAFE_NO_PAD].iter().find_map(|e| e.decode(t).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_signatures_verify_in_any_alphabet() {
        let s = Signer::new("k");
        let g = s.issue(SigFamily::Gemini);
        assert!(g.starts_with('E'));
        assert!(g.len() >= 50);
        assert_eq!(s.check(&g), Verdict::Issued(SigFamily::Gemini));
        let url = URL_SAFE_NO_PAD.encode(STANDARD.decode(&g).expect("b64"));
        assert_eq!(s.check(&url), Verdict::Issued(SigFamily::Gemini));
        let c = s.issue(SigFamily::Claude);
        assert!(c.starts_with('R'));
        assert_eq!(s.check(&c), Verdict::Issued(SigFamily::Claude));
        // one layer decoded, as AM hands it to clients
        let inner = String::from_utf8(STANDARD.decode(&c).expect("b64")).expect("utf8");
        assert_eq!(s.check(&inner), Verdict::Issued(SigFamily::Claude));
    }

    #[test]
    fn strangers_and_other_keys_are_unknown() {
        let s = Signer::new("k");
        assert_eq!(s.check("Eabc"), Verdict::Unknown);
        assert_eq!(Signer::new("other").check(&s.issue(SigFamily::Gemini)), Verdict::Unknown);
        assert_eq!(s.check("not base64 !!"), Verdict::Unknown);
    }

    #[test]
    fn claude_signatures_bind_their_thinking_text() {
        let s = Signer::new("k");
        let c = s.issue_for_text(SigFamily::Claude, "I should call ls.");
        assert_eq!(s.check_for_text(&c, "I should call ls."), Verdict::Issued(SigFamily::Claude));
        assert_eq!(s.check_for_text(&c, "I should call rm."), Verdict::Unknown);
        assert_eq!(s.check(&c), Verdict::Unknown, "the empty text is other text");
        // Gemini signatures sign no text.
        let g = s.issue(SigFamily::Gemini);
        assert_eq!(s.check_for_text(&g, "anything"), Verdict::Issued(SigFamily::Gemini));
    }

    #[test]
    fn sentinels_plain_or_encoded() {
        let s = Signer::new("k");
        assert_eq!(s.check("skip_thought_signature_validator"), Verdict::Sentinel);
        assert_eq!(s.check(&STANDARD.encode("context_engineering_is_the_way_to_go")), Verdict::Sentinel);
    }
}
