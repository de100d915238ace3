//! Checking `routes.yaml`: the alias table compiled from its patterns, and the web search model it names.
//! Kept apart from the other files' checks because it is the one file whose values are compiled rather
//! than read.

use levitate_filters::alias::{AliasError, AliasTable};
use levitate_filters::grounding::can_ground;

use super::files::RoutesFile;
use super::source::At::Key;
use super::source::{Parsed, Source};
use super::Problems;

/// `web_search_model` must be an upstream model from `models` that can ground answers (a Gemini text model).
pub(super) fn check_web_search_model(routes: &Parsed<RoutesFile>, problems: &mut Problems) {
    let Some(model) = &routes.file.web_search_model else { return };
    let problem = if !routes.file.models.contains(model) {
        format!("web_search_model: {model:?} is not one of `models`")
    } else if !can_ground(model) {
        format!(
            "web_search_model: {model:?} cannot ground answers in Google Search; name a Gemini text model"
        )
    } else {
        return;
    };
    problems.push(routes.source.invalid(&[Key("web_search_model")], problem));
}

pub(super) fn alias_table(src: &Source, routes: &RoutesFile, problems: &mut Problems) -> Option<AliasTable> {
    let mut aliases = Vec::new();
    for (k, v) in &routes.aliases {
        let (Some(k), Some(v)) = (k.as_str(), v.as_str()) else {
            let message = "aliases: every entry maps a model pattern (string) to an upstream model (string)";
            problems.push(src.invalid(&[Key("aliases")], message));
            return None;
        };
        aliases.push((k.to_string(), v.to_string()));
    }
    let table = AliasTable::compile(&routes.models, &aliases, routes.default.as_deref());
    problems.keep(table.map_err(|e| {
        let at = match &e {
            AliasError::EmptyDefault => vec![Key("default")],
            AliasError::EmptyTarget { pattern }
            | AliasError::Duplicate { pattern }
            | AliasError::WildcardTarget { pattern, .. } => vec![Key("aliases"), Key(pattern.as_str())],
            _ => vec![Key("aliases")],
        };
        src.invalid(&at, e.to_string())
    }))
}
