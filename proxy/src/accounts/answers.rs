//! Reading Google's answers to the credential calls: the error message of a refused call (and nothing else of
//! its body, which may echo what was sent), and the project and tier of a `loadCodeAssist` answer, by the
//! precedence PROTOCOL.md gives.

use serde_json::Value;

/// Google's error message from an error body, without anything else of it.
pub(super) fn google_message(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.pointer("/error/message").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| "no error message".to_string())
}

/// `cloudaicompanionProject` may be a string or `{id, name}`.
pub(super) fn project_of(answer: &Value) -> Option<String> {
    match answer.get("cloudaicompanionProject")? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Object(o) => o.get("id").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string),
        _ => None,
    }
}

/// Tier precedence: `paidTier` > `currentTier` (unless `ineligibleTiers` is set) > the `allowedTiers` default.
pub fn tier_of(answer: &Value) -> Option<String> {
    let id =
        |key: &str| answer.get(key).and_then(|t| t.get("id")).and_then(Value::as_str).map(str::to_string);
    if let Some(paid) = id("paidTier") {
        return Some(paid);
    }
    let ineligible = answer.get("ineligibleTiers").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
    if !ineligible {
        if let Some(current) = id("currentTier") {
            return Some(current);
        }
    }
    default_allowed_tier(answer)
}

/// The tier `allowedTiers` marks as the default (what onboarding asks for).
pub(super) fn default_allowed_tier(answer: &Value) -> Option<String> {
    answer
        .get("allowedTiers")?
        .as_array()?
        .iter()
        .find(|t| t.get("isDefault").and_then(Value::as_bool) == Some(true))
        .and_then(|t| t.get("id"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tier_precedence_follows_protocol() {
        let paid = json!({"paidTier": {"id": "g1-pro-tier"}, "currentTier": {"id": "free-tier"}});
        assert_eq!(tier_of(&paid).as_deref(), Some("g1-pro-tier"));
        let current = json!({"currentTier": {"id": "standard-tier"}, "allowedTiers": [{"id": "free-tier", "isDefault": true}]});
        assert_eq!(tier_of(&current).as_deref(), Some("standard-tier"));
        let ineligible = json!({"currentTier": {"id": "standard-tier"}, "ineligibleTiers": [{"reasonCode": "X"}],
            "allowedTiers": [{"id": "free-tier", "isDefault": true}]});
        assert_eq!(tier_of(&ineligible).as_deref(), Some("free-tier"));
        assert_eq!(tier_of(&json!({})), None);
    }

    #[test]
    fn project_forms() {
        assert_eq!(project_of(&json!({"cloudaicompanionProject": "p-1"})).as_deref(), Some("p-1"));
        assert_eq!(
            project_of(&json!({"cloudaicompanionProject": {"id": "p-2", "name": "x"}})).as_deref(),
            Some("p-2")
        );
        assert_eq!(project_of(&json!({"cloudaicompanionProject": ""})), None);
        assert_eq!(project_of(&json!({})), None);
    }

    #[test]
    fn google_message_never_echoes_raw_bodies() {
        assert_eq!(google_message(br#"{"error":{"message":"quota"}}"#), "quota");
        assert_eq!(google_message(b"<html>secret</html>"), "no error message");
    }
}
