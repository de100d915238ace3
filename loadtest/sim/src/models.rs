//! The model catalog (PROTOCOL §6): which model ids the sim serves, and the per-family rules that decide how a
//! request is validated and answered (Gemini 3 signatures, Claude's Vertex rules, ids and versions).

/// The default catalog: the mid-2026 list plus the late-2025 ids clients still send.
pub const DEFAULT_MODELS: &[&str] = &[
    "gemini-3-flash",
    "gemini-pro-agent",
    "gemini-3.1-pro-low",
    "gemini-3.5-flash-low",
    "gemini-3.6-flash-high",
    "gemini-3.7-flash-high",
    "gemini-3.1-flash-image",
    "gemini-3.1-flash-lite",
    "gemini-3-pro-high",
    "gemini-3-pro-low",
    "gemini-3-pro-image",
    "gemini-2.5-flash",
    "gemini-2.5-flash-lite",
    "gemini-2.5-flash-thinking",
    "gemini-2.5-pro",
    "claude-sonnet-4-6",
    "claude-opus-4-6-thinking",
    "claude-sonnet-4-5",
    "claude-sonnet-4-5-thinking",
    "claude-opus-4-5-thinking",
    "gpt-oss-120b-medium",
];

/// Internal ids `fetchAvailableModels` lists but clients filter out (`chat_*`, `tab_*`).
pub const INTERNAL_MODELS: &[&str] = &["chat_20706", "tab_flash_lite_preview"];

/// The first sentinel every tool uses for synthetic calls (PROTOCOL §9).
pub const SENTINELS: &[&str] = &["skip_thought_signature_validator", "context_engineering_is_the_way_to_go"];

/// Which upstream family serves a model id; decides validation and answer shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Gemini 3 and later: history function calls need thought signatures.
    Gemini3,
    /// Gemini 2.x: signatures are optional.
    Gemini2,
    /// Claude through Vertex: `claude-*`.
    Claude,
    /// Anything else (gpt-oss): no signature rules.
    Other,
}

impl Family {
    pub fn of(model: &str) -> Family {
        if model.starts_with("claude-") {
            Family::Claude
        } else if model.starts_with("gemini-2") || model.starts_with("gemini-1") {
            Family::Gemini2
        } else if model.starts_with("gemini-") {
            Family::Gemini3
        } else {
            Family::Other
        }
    }

    pub fn is_gemini(self) -> bool {
        matches!(self, Family::Gemini3 | Family::Gemini2)
    }
}

/// `modelVersion` as the upstream reports it (e.g. `gemini-3-flash-a`); may differ from the request.
pub fn model_version(model: &str) -> String {
    match Family::of(model) {
        Family::Gemini3 | Family::Gemini2 => format!("{model}-a"),
        _ => model.to_string(),
    }
}

/// A human display name: `gemini-3-flash` → `Gemini 3 Flash`.
pub fn display_name(model: &str) -> String {
    model
        .split('-')
        .map(|w| match w {
            "gpt" => "GPT".to_string(),
            "oss" => "OSS".to_string(),
            _ => {
                let mut c = w.chars();
                match c.next() {
                    Some(f) => f.to_uppercase().chain(c).collect(),
                    None => String::new(),
                }
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Context window the catalog reports, and the sim enforces for Claude.
pub fn max_prompt_tokens(model: &str) -> u64 {
    match Family::of(model) {
        Family::Claude => 200_000,
        Family::Other => 131_072,
        _ => 1_048_576,
    }
}

/// Max output tokens the catalog reports.
pub fn max_output_tokens(model: &str) -> u64 {
    match Family::of(model) {
        Family::Claude => 64_000,
        _ => 65_536,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families() {
        assert_eq!(Family::of("gemini-3-flash"), Family::Gemini3);
        assert_eq!(Family::of("gemini-pro-agent"), Family::Gemini3);
        assert_eq!(Family::of("gemini-2.5-pro"), Family::Gemini2);
        assert_eq!(Family::of("claude-sonnet-4-6"), Family::Claude);
        assert_eq!(Family::of("gpt-oss-120b-medium"), Family::Other);
        assert_eq!(model_version("gemini-3-flash"), "gemini-3-flash-a");
        assert_eq!(display_name("gemini-3-flash"), "Gemini 3 Flash");
    }
}
