//! Model listings in the OpenAI shape: the upstream models clients may name, plus the exact aliases.
//!
//! Wildcard patterns cannot be listed (they are not model names), so `GET /v1/models` shows upstream models
//! and exact aliases only; any name a wildcard or the default catches still works in requests.

use levitate_filters::alias::AliasTable;
use serde_json::{json, Value};

fn owner(upstream_model: &str) -> &'static str {
    if upstream_model.starts_with("claude") {
        "anthropic"
    } else if upstream_model.starts_with("gpt-oss") {
        "openai"
    } else {
        "google"
    }
}

/// What a client may list: the upstream models, then the exact aliases with the model each stands for.
fn listed(aliases: &AliasTable) -> impl Iterator<Item = (&str, Option<&str>)> {
    let upstream = aliases.upstream_models().iter().map(|m| (m.as_str(), None));
    let exact = aliases.aliases().iter().filter(|a| !a.is_wildcard());
    upstream.chain(exact.map(|a| (a.pattern.as_str(), Some(a.target.as_str()))))
}

/// The names a client may list (every protocol's model listing).
pub fn listed_names(aliases: &AliasTable) -> impl Iterator<Item = &str> {
    listed(aliases).map(|(name, _)| name)
}

fn entries(aliases: &AliasTable) -> Vec<Value> {
    listed(aliases)
        .map(|(name, target)| match target {
            None => json!({"id": name, "object": "model", "created": 0, "owned_by": owner(name)}),
            Some(target) => {
                json!({"id": name, "object": "model", "created": 0, "owned_by": "levitate", "parent": target})
            }
        })
        .collect()
}

/// `GET /v1/models`
pub fn openai_list(aliases: &AliasTable) -> Vec<u8> {
    json!({"object": "list", "data": entries(aliases)}).to_string().into_bytes()
}

/// `GET /v1/models/{model}`
pub fn openai_model(aliases: &AliasTable, model: &str) -> Option<Vec<u8>> {
    entries(aliases)
        .into_iter()
        .find(|e| e.get("id").and_then(Value::as_str) == Some(model))
        .map(|e| e.to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_upstream_models_and_exact_aliases() {
        let table = AliasTable::compile(
            &["gemini-3-flash".to_string(), "claude-sonnet-4-6".to_string()],
            &[
                ("gpt-4o".to_string(), "gemini-3-flash".to_string()),
                ("gpt-*".to_string(), "gemini-3-flash".to_string()),
            ],
            None,
        )
        .unwrap();
        let list: Value = serde_json::from_slice(&openai_list(&table)).unwrap();
        let ids: Vec<&str> =
            list["data"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["gemini-3-flash", "claude-sonnet-4-6", "gpt-4o"]);
        assert!(openai_model(&table, "claude-sonnet-4-6").is_some());
        assert!(openai_model(&table, "gpt-*").is_none());
    }
}
