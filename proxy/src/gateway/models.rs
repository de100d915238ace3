//! Model listings in the OpenAI shape: the upstream models clients may name, plus the exact aliases.
//!
//! Wildcard patterns cannot be listed (they are not model names), so `GET /v1/models` shows upstream models
//! and exact aliases only; any name a wildcard or the default catches still works in requests.
//!
//! Every listing shows only what can be served ([`Served`]): an upstream model at least one enabled account
//! listed in its `fetchAvailableModels` answer (all of them while any account is not known yet), and an
//! alias whose target is such a model, or a model the fallback key may serve. A request for a model nobody serves is refused at once with
//! [`unserved`], in the client's protocol, before any account is tried.

use std::collections::BTreeSet;

use levitate_filters::alias::AliasTable;
use levitate_filters::error::{ClientError, ErrorKind};
use serde_json::{json, Value};

use crate::app::App;
use crate::config::Snapshot;
use crate::pool::models::VersionGate;

/// Which upstream models can be served now.
#[derive(Debug, Clone, Default)]
pub struct Served {
    /// `None`: not known (an account may serve anything), so everything counts as served.
    models: Option<BTreeSet<String>>,
}

impl Served {
    /// What the pool's enabled accounts serve together, and the fallback key's models (`fallback:`).
    pub fn of(app: &App, snapshot: &Snapshot) -> Self {
        let mut models = app.pool.served_models();
        if let (Some(models), Some(fallback)) = (models.as_mut(), snapshot.fallback.as_ref()) {
            models.extend(fallback.models.keys().cloned());
        }
        Served { models }
    }

    /// A known set (tests).
    pub fn only(models: BTreeSet<String>) -> Self {
        Served { models: Some(models) }
    }

    pub fn allows(&self, upstream_model: &str) -> bool {
        self.models.as_ref().is_none_or(|m| m.contains(upstream_model))
    }
}

/// The 404 for a model no enabled account serves (the client's protocol renders it).
pub fn unserved(upstream_model: &str) -> ClientError {
    ClientError::new(
        404,
        ErrorKind::NotFound,
        format!("the model {upstream_model:?} is not served by any enabled account"),
    )
    .with_param("model")
}

/// Google refused the client version in `upstream.user_agent`: noted (admin API), counted, and logged once
/// per gate with the setting to change, instead of moving the request from account to account.
pub fn on_version_gate(app: &App, snapshot: &Snapshot, upstream_model: &str, gate: VersionGate) {
    app.metrics.pool.version_gate(gate.label());
    let user_agent = snapshot.upstream.user_agent.as_str();
    if app.pool.note_version_gate(gate, upstream_model, user_agent) {
        tracing::error!(
            gate = gate.label(),
            model = upstream_model,
            user_agent,
            "Google refuses the client version this gateway presents: set upstream.user_agent in levitate.yaml to \
             a current Antigravity version (then reload)"
        );
    }
}

fn owner(upstream_model: &str) -> &'static str {
    if upstream_model.starts_with("claude") {
        "anthropic"
    } else if upstream_model.starts_with("gpt-oss") {
        "openai"
    } else {
        "google"
    }
}

/// What a client may list: the upstream models, then the exact aliases with the model each stands for;
/// only those that can be served.
fn listed<'a>(
    aliases: &'a AliasTable,
    served: &'a Served,
) -> impl Iterator<Item = (&'a str, Option<&'a str>)> {
    let upstream = aliases.upstream_models().iter().map(|m| (m.as_str(), None));
    let exact = aliases.aliases().iter().filter(|a| !a.is_wildcard());
    upstream
        .chain(exact.map(|a| (a.pattern.as_str(), Some(a.target.as_str()))))
        .filter(|(name, target)| served.allows(target.unwrap_or(name)))
}

/// The names a client may list (every protocol's model listing).
pub fn listed_names<'a>(aliases: &'a AliasTable, served: &'a Served) -> impl Iterator<Item = &'a str> {
    listed(aliases, served).map(|(name, _)| name)
}

fn entries(aliases: &AliasTable, served: &Served) -> Vec<Value> {
    listed(aliases, served)
        .map(|(name, target)| match target {
            None => json!({"id": name, "object": "model", "created": 0, "owned_by": owner(name)}),
            Some(target) => {
                json!({"id": name, "object": "model", "created": 0, "owned_by": "levitate", "parent": target})
            }
        })
        .collect()
}

/// `GET /v1/models`
pub fn openai_list(aliases: &AliasTable, served: &Served) -> Vec<u8> {
    json!({"object": "list", "data": entries(aliases, served)}).to_string().into_bytes()
}

/// `GET /v1/models/{model}`
pub fn openai_model(aliases: &AliasTable, served: &Served, model: &str) -> Option<Vec<u8>> {
    entries(aliases, served)
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
        let all = Served::default();
        let list: Value = serde_json::from_slice(&openai_list(&table, &all)).unwrap();
        let ids: Vec<&str> =
            list["data"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["gemini-3-flash", "claude-sonnet-4-6", "gpt-4o"]);
        assert!(openai_model(&table, &all, "claude-sonnet-4-6").is_some());
        assert!(openai_model(&table, &all, "gpt-*").is_none());
    }

    #[test]
    fn only_served_models_and_aliases_to_them_are_listed() {
        let table = AliasTable::compile(
            &["gemini-3-flash".to_string(), "claude-sonnet-4-6".to_string()],
            &[
                ("gpt-4o".to_string(), "gemini-3-flash".to_string()),
                ("opus".to_string(), "claude-sonnet-4-6".to_string()),
            ],
            None,
        )
        .unwrap();
        let served = Served::only(["claude-sonnet-4-6".to_string()].into_iter().collect());
        let names: Vec<&str> = listed_names(&table, &served).collect();
        assert_eq!(names, ["claude-sonnet-4-6", "opus"]);
        assert!(openai_model(&table, &served, "gpt-4o").is_none());
        assert_eq!(unserved("gemini-3-flash").status, 404);
    }
}
