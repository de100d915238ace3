//! What a request replayed of the signatures the sim issued, for tests that must tell a restored signature
//! from a fallback (`recent[].replayed_signatures` in `/_sim/stats`).
//!
//! The validators already reject what Google rejects; they cannot tell a genuine replay from a sentinel on
//! Gemini (both pass) or from a turn sent without thinking on Claude. A stateless client protocol (the
//! Responses API, whose signatures travel sealed in the client's own history) must restore the genuine one,
//! so the sim reports, per request, the verdicts of every signature in its model turns and how many model
//! turns open with a signed thought part (Claude's placement, PROTOCOL.md §2).

use serde_json::{json, Value};

use crate::prompt::field;
use crate::signature::{SigFamily, Signer, Verdict};

fn signature(part: &Value) -> Option<&str> {
    field(part, "thoughtSignature", "thought_signature").and_then(Value::as_str)
}

/// `{"gemini": n, "claude": n, "sentinel": n, "unknown": n, "leading_signed_thoughts": n}` for `body`.
pub fn replayed_signatures(body: &Value, signer: &Signer) -> Value {
    let (mut gemini, mut claude, mut sentinel, mut unknown, mut leading) = (0, 0, 0, 0, 0);
    let contents = body.get("request").and_then(|r| r.get("contents")).and_then(Value::as_array);
    for content in contents.map_or(&[][..], Vec::as_slice) {
        if content.get("role").and_then(Value::as_str) != Some("model") {
            continue;
        }
        let parts = content.get("parts").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
        if parts.first().is_some_and(|p| p.get("thought") == Some(&json!(true)) && signature(p).is_some()) {
            leading += 1;
        }
        for part in parts {
            let Some(sig) = signature(part) else { continue };
            // A signed thought's signature covers its text (Claude's rule, as in `validate`).
            let thought = part.get("thought") == Some(&json!(true));
            let text = if thought { part.get("text").and_then(Value::as_str).unwrap_or("") } else { "" };
            match signer.check_for_text(sig, text) {
                Verdict::Issued(SigFamily::Gemini) => gemini += 1,
                Verdict::Issued(SigFamily::Claude) => claude += 1,
                Verdict::Sentinel => sentinel += 1,
                Verdict::Unknown => unknown += 1,
            }
        }
    }
    json!({"gemini": gemini, "claude": claude, "sentinel": sentinel, "unknown": unknown,
           "leading_signed_thoughts": leading})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_verdicts_and_leading_signed_thoughts_in_model_turns() {
        let signer = Signer::new("k");
        let claude = signer.issue_for_text(SigFamily::Claude, "t");
        let gemini = signer.issue(SigFamily::Gemini);
        let body = json!({"request": {"contents": [
            {"role": "user", "parts": [{"text": "x", "thoughtSignature": gemini}]},
            {"role": "model", "parts": [{"text": "t", "thought": true, "thoughtSignature": claude},
                                         {"functionCall": {"name": "f"}}]},
            {"role": "model", "parts": [{"functionCall": {"name": "f"}, "thoughtSignature": gemini},
                                         {"functionCall": {"name": "g"}, "thoughtSignature": "skip_thought_signature_validator"},
                                         {"text": "y", "thought_signature": "bogus"}]}]}});
        assert_eq!(
            replayed_signatures(&body, &signer),
            json!({"gemini": 1, "claude": 1, "sentinel": 1, "unknown": 1, "leading_signed_thoughts": 1})
        );
        assert_eq!(replayed_signatures(&json!({}), &signer)["gemini"], 0);
        // A Claude signature replayed over other thinking text is not the one the sim issued.
        let moved = json!({"request": {"contents": [
            {"role": "model", "parts": [{"text": "other", "thought": true, "thoughtSignature": claude}]}]}});
        assert_eq!(replayed_signatures(&moved, &signer)["unknown"], 1);
    }
}
