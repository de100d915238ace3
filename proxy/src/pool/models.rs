//! Model availability per account: which upstream models each account may call, as its last
//! `fetchAvailableModels` answer listed them.
//!
//! Accounts differ in what Google lets them call (tier, region, rollout). Sending a model to an account that
//! does not list it only earns a refusal and costs the request an attempt, so selection passes such accounts
//! by, the model listings show what at least one account serves, and a model no account serves is refused at
//! once. What is not known is not held against an account: one never polled (a fresh start, polling off)
//! or whose answer listed no model at all is taken to serve everything.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

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
