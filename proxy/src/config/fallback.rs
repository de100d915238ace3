//! `fallback:` in levitate.yaml: the opt-in public Gemini API key that serves a request when no account can
//! (all locked, forbidden, exhausted, or otherwise unselectable). Off when the section is absent.
//!
//! The key comes from an environment variable only (`api_key_env`): it is a paid credential and does not
//! belong in a file that is shared or committed. `models` names the upstream models the key may serve,
//! as a list, or as a map from the upstream id to the public API's id where the two differ.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{Env, Secret, UpstreamUrl};

/// The public Gemini API.
pub const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com";

/// `fallback:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackFile {
    /// The environment variable holding the API key.
    pub api_key_env: String,
    #[serde(default = "default_base_url")]
    pub base_url: String,
    pub models: FallbackModels,
    /// Requests the key serves at once; more wait for an account or are refused like a busy pool.
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent: u32,
}

/// `models:` as a list (same ids) or a map (upstream id → public id).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum FallbackModels {
    List(Vec<String>),
    Map(BTreeMap<String, String>),
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_string()
}

fn default_max_concurrent() -> u32 {
    4
}

/// The fallback provider, checked.
#[derive(Clone)]
pub struct FallbackSettings {
    pub api_key: Secret,
    pub base_url: UpstreamUrl,
    /// Upstream model → the public API's model id.
    pub models: BTreeMap<String, String>,
    pub max_concurrent: u32,
}

impl FallbackSettings {
    /// The public API's id for an upstream model the key may serve.
    pub fn public_model(&self, upstream_model: &str) -> Option<&str> {
        self.models.get(upstream_model).map(String::as_str)
    }
}

/// Checks `fallback:`; a problem names the key at fault.
pub fn build(file: &FallbackFile, env: &dyn Env) -> Result<FallbackSettings, (&'static str, String)> {
    let api_key = env.var(&file.api_key_env).map(Secret::new).ok_or_else(|| {
        ("api_key_env", format!("fallback.api_key_env: environment variable {} is not set", file.api_key_env))
    })?;
    let base_url =
        UpstreamUrl::parse(&file.base_url).map_err(|m| ("base_url", format!("fallback.base_url: {m}")))?;
    let models: BTreeMap<String, String> = match &file.models {
        FallbackModels::List(list) => list.iter().map(|m| (m.clone(), m.clone())).collect(),
        FallbackModels::Map(map) => map.clone(),
    };
    if models.is_empty() {
        return Err(("models", "fallback.models: name at least one model the key may serve".into()));
    }
    if let Some((m, _)) = models.iter().find(|(k, v)| k.trim().is_empty() || v.trim().is_empty()) {
        return Err(("models", format!("fallback.models: empty model id near {m:?}")));
    }
    if file.max_concurrent == 0 {
        return Err(("max_concurrent", "fallback.max_concurrent must be at least 1".into()));
    }
    Ok(FallbackSettings { api_key, base_url, models, max_concurrent: file.max_concurrent })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct OneVar;
    impl Env for OneVar {
        fn var(&self, name: &str) -> Option<String> {
            (name == "GEMINI_KEY").then(|| "k".to_string())
        }
    }

    fn file(yaml: &str) -> FallbackFile {
        serde_yaml::from_str(yaml).expect("valid yaml")
    }

    #[test]
    fn lists_and_maps_of_models_are_read_with_defaults() {
        let s = build(&file("api_key_env: GEMINI_KEY\nmodels: [gemini-3-flash]\n"), &OneVar).ok().unwrap();
        assert_eq!(s.public_model("gemini-3-flash"), Some("gemini-3-flash"));
        assert_eq!(s.base_url.to_string(), DEFAULT_BASE_URL);
        assert_eq!(s.max_concurrent, 4);
        let s = build(
            &file("api_key_env: GEMINI_KEY\nmodels: {gemini-3-flash: gemini-3-flash-preview}\n"),
            &OneVar,
        )
        .ok()
        .unwrap();
        assert_eq!(s.public_model("gemini-3-flash"), Some("gemini-3-flash-preview"));
        assert_eq!(s.public_model("claude-sonnet-4-6"), None);
    }

    #[test]
    fn problems_name_their_key() {
        let e = |y: &str| build(&file(y), &OneVar).err().map(|(k, _)| k);
        assert_eq!(e("api_key_env: NOPE\nmodels: [m]\n"), Some("api_key_env"));
        assert_eq!(e("api_key_env: GEMINI_KEY\nmodels: []\n"), Some("models"));
        assert_eq!(e("api_key_env: GEMINI_KEY\nbase_url: ftp://x\nmodels: [m]\n"), Some("base_url"));
        assert_eq!(e("api_key_env: GEMINI_KEY\nmodels: [m]\nmax_concurrent: 0\n"), Some("max_concurrent"));
        assert!(serde_yaml::from_str::<FallbackFile>("api_key: x\nmodels: [m]\n").is_err(), "no inline keys");
    }
}
