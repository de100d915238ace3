//! Model availability per account: which upstream models each account may call, as its last
//! `fetchAvailableModels` answer listed them.
//!
//! Accounts differ in what Google lets them call (tier, region, rollout). Sending a model to an account that
//! does not list it only earns a refusal and costs the request an attempt, so selection passes such accounts
//! by, the model listings show what at least one account serves, and a model no account serves is refused at
//! once. What is not known is not held against an account: one never polled (a fresh start, polling off)
//! or whose answer listed no model at all is taken to serve everything.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use serde::Serialize;
use serde_json::Value;

/// The model set of every account that has answered `fetchAvailableModels`, by account id.
#[derive(Default)]
pub struct ModelBook {
    by_account: RwLock<HashMap<String, Arc<BTreeSet<String>>>>,
}

impl ModelBook {
    /// Records an account's models; returns whether that changed what it serves.
    pub fn set(&self, account: &str, models: BTreeSet<String>) -> bool {
        let Ok(mut map) = self.by_account.write() else { return false };
        if map.get(account).is_some_and(|m| **m == models) {
            return false;
        }
        map.insert(account.to_string(), Arc::new(models));
        true
    }

    /// Whether the account may be sent `model`: it listed it, or its models are not known.
    pub fn serves(&self, account: &str, model: &str) -> bool {
        self.of_account(account).is_none_or(|m| m.contains(model))
    }

    /// The account's models, if known.
    pub fn of_account(&self, account: &str) -> Option<Arc<BTreeSet<String>>> {
        self.by_account.read().ok()?.get(account).cloned()
    }
}

/// The model ids a `fetchAvailableModels` answer lists (PROTOCOL.md §4), without the internal `chat_*` and
/// `tab_*` ids. `None` when the answer lists none: an answer that says nothing restricts nothing.
pub fn parse_model_ids(answer: &Value) -> Option<BTreeSet<String>> {
    let models = answer.get("models").and_then(Value::as_object)?;
    let ids: BTreeSet<String> =
        models.keys().filter(|id| !id.starts_with("chat_") && !id.starts_with("tab_")).cloned().collect();
    (!ids.is_empty()).then_some(ids)
}

/// What the enabled accounts serve together: `None` when any of them is not known (it may serve anything).
pub fn union<'a>(book: &ModelBook, accounts: impl Iterator<Item = &'a str>) -> Option<BTreeSet<String>> {
    let mut all = BTreeSet::new();
    for id in accounts {
        all.extend(book.of_account(id)?.iter().cloned());
    }
    Some(all)
}

/// Google refuses the client version the gateway presents (`upstream.user_agent`): for every model ("This
/// version of Antigravity is no longer supported"), or for one model that needs a newer client. It answers
/// 200 with the notice as the only text and zero usage (PROTOCOL.md §1, version gate), the same on every
/// account, so it is a condition of the gateway's configuration, not of an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionGate {
    /// No model is served to this client version.
    Client,
    /// This model is not served to this client version.
    Model,
}

/// The notices' telling phrases, lower case (the wording varies: "update"/"upgrade", "out of date").
const CLIENT_GATE: &[&str] =
    &["version of antigravity is no longer supported", "version of antigravity is out of date"];
const MODEL_GATE: &[&str] = &["not available on this version", "in the latest version of antigravity"];
/// A notice is one short event; a longer first event is an answer.
const MAX_NOTICE_EVENT: usize = 4096;

/// What the client is told instead of the notice as an answer.
const CLIENT_GATE_MESSAGE: &str = "Google no longer accepts the client version this gateway presents; the \
    operator must update upstream.user_agent in levitate.yaml";
const MODEL_GATE_MESSAGE: &str = "Google serves this model only to a newer client version than this gateway \
    presents; the operator must update upstream.user_agent in levitate.yaml";

impl VersionGate {
    /// Reads the first upstream event of an answer (its SSE `data`): is it a version notice?
    pub fn detect(data: &[u8]) -> Option<VersionGate> {
        if data.len() > MAX_NOTICE_EVENT || memchr_ci(data).is_none() {
            return None;
        }
        let text = String::from_utf8_lossy(data).to_ascii_lowercase();
        if CLIENT_GATE.iter().any(|p| text.contains(p)) {
            Some(VersionGate::Client)
        } else if MODEL_GATE.iter().any(|p| text.contains(p)) {
            Some(VersionGate::Model)
        } else {
            None
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            VersionGate::Client => "client_version_unsupported",
            VersionGate::Model => "model_needs_newer_client",
        }
    }

    /// The error the client gets (502: the gateway's upstream side is misconfigured, not the request).
    pub fn client_error(self) -> levitate_filters::error::ClientError {
        let message = match self {
            VersionGate::Client => CLIENT_GATE_MESSAGE,
            VersionGate::Model => MODEL_GATE_MESSAGE,
        };
        levitate_filters::error::ClientError::new(502, levitate_filters::error::ErrorKind::Api, message)
    }

    /// Which gate an error made by [`client_error`](Self::client_error) stands for.
    pub fn of_error(error: &levitate_filters::error::ClientError) -> Option<VersionGate> {
        match error.message.as_str() {
            CLIENT_GATE_MESSAGE => Some(VersionGate::Client),
            MODEL_GATE_MESSAGE => Some(VersionGate::Model),
            _ => None,
        }
    }
}

/// A cheap first look: does the event mention Antigravity at all (any case)?
fn memchr_ci(data: &[u8]) -> Option<usize> {
    data.windows(11).position(|w| w.eq_ignore_ascii_case(b"antigravity"))
}

/// One version gate in force, for the admin API.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct GateRecord {
    pub kind: &'static str,
    /// The model refused, for a per-model gate.
    pub model: Option<String>,
    /// The user agent Google refused.
    pub user_agent: String,
    pub since_ms: u64,
    pub last_ms: u64,
    pub count: u64,
}

/// The version gates in force: noted when a notice comes, lifted when an answer of that scope succeeds.
#[derive(Default)]
pub struct VersionGates {
    any: AtomicBool,
    by_scope: Mutex<BTreeMap<Option<String>, GateRecord>>,
}

impl VersionGates {
    /// Notes a gate; returns true when it is new (the caller logs it once).
    pub fn note(&self, gate: VersionGate, model: &str, user_agent: &str, now_ms: u64) -> bool {
        let scope = (gate == VersionGate::Model).then(|| model.to_string());
        let mut map = self.by_scope.lock().unwrap_or_else(PoisonError::into_inner);
        self.any.store(true, Ordering::Release);
        match map.get_mut(&scope) {
            Some(r) if r.user_agent == user_agent => {
                r.count += 1;
                r.last_ms = now_ms;
                false
            }
            _ => {
                let record = GateRecord {
                    kind: gate.label(),
                    model: scope.clone(),
                    user_agent: user_agent.to_string(),
                    since_ms: now_ms,
                    last_ms: now_ms,
                    count: 1,
                };
                map.insert(scope, record);
                true
            }
        }
    }

    /// An answer for `model` came through: the client gate and that model's gate are over.
    pub fn lift(&self, model: &str) {
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        let mut map = self.by_scope.lock().unwrap_or_else(PoisonError::into_inner);
        map.remove(&None);
        map.remove(&Some(model.to_string()));
        self.any.store(!map.is_empty(), Ordering::Release);
    }

    pub fn snapshot(&self) -> Vec<GateRecord> {
        self.by_scope.lock().unwrap_or_else(PoisonError::into_inner).values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_answer_lists_models_without_internal_ids() {
        let answer = json!({"models": {"gemini-3-flash": {}, "claude-sonnet-4-6": {}, "chat_20706": {},
                                       "tab_flash_lite_preview": {}}});
        assert_eq!(parse_model_ids(&answer), Some(set(&["claude-sonnet-4-6", "gemini-3-flash"])));
        assert_eq!(
            parse_model_ids(&json!({"models": {"chat_1": {}}})),
            None,
            "nothing listed restricts nothing"
        );
        assert_eq!(parse_model_ids(&json!({})), None);
    }

    #[test]
    fn version_notices_are_told_apart_from_answers() {
        let client = br#"{"response":{"candidates":[{"content":{"role":"model","parts":[{"text":"This version of Antigravity is no longer supported. Please update to receive the latest features!"}]},"finishReason":"STOP"}]}}"#;
        assert_eq!(VersionGate::detect(client), Some(VersionGate::Client));
        let old = br#"{"response":{"candidates":[{"content":{"parts":[{"text":"Your current version of Antigravity is out of date."}]}}]}}"#;
        assert_eq!(VersionGate::detect(old), Some(VersionGate::Client));
        let model = br#"{"response":{"candidates":[{"content":{"parts":[{"text":"Gemini 3 Pro is not available on this version of Antigravity."}]}}]}}"#;
        assert_eq!(VersionGate::detect(model), Some(VersionGate::Model));
        assert_eq!(
            VersionGate::detect(
                br#"{"response":{"candidates":[{"content":{"parts":[{"text":"Antigravity is an IDE"}]}}]}}"#
            ),
            None
        );
        assert_eq!(VersionGate::detect(b"{}"), None);
        let e = VersionGate::Model.client_error();
        assert_eq!(VersionGate::of_error(&e), Some(VersionGate::Model));
        assert_eq!(VersionGate::of_error(&levitate_filters::error::ClientError::invalid("x")), None);
    }

    #[test]
    fn gates_are_noted_once_and_lifted_by_a_good_answer() {
        let gates = VersionGates::default();
        assert!(gates.note(VersionGate::Client, "m", "antigravity/1.0", 1));
        assert!(!gates.note(VersionGate::Client, "m2", "antigravity/1.0", 2), "same gate, same agent");
        assert!(gates.note(VersionGate::Model, "m3", "antigravity/1.0", 3));
        assert_eq!(gates.snapshot().len(), 2);
        assert_eq!(gates.snapshot()[0].count, 2);
        gates.lift("m");
        assert_eq!(gates.snapshot().len(), 1, "the model gate of m3 stays");
        gates.lift("m3");
        assert!(gates.snapshot().is_empty());
    }

    #[test]
    fn unknown_accounts_serve_everything_known_ones_what_they_listed() {
        let book = ModelBook::default();
        assert!(book.serves("a", "anything"), "never polled");
        assert!(book.set("a", set(&["m1"])));
        assert!(!book.set("a", set(&["m1"])), "same set: no change");
        assert!(book.serves("a", "m1"));
        assert!(!book.serves("a", "m2"));
        assert_eq!(union(&book, ["a"].into_iter()), Some(set(&["m1"])));
        assert_eq!(union(&book, ["a", "b"].into_iter()), None, "b is not known yet");
        book.set("b", set(&["m2"]));
        assert_eq!(union(&book, ["a", "b"].into_iter()), Some(set(&["m1", "m2"])));
    }
}
