//! A Responses request's tools -> function declarations and `toolConfig`.
//!
//! `function` tools map as chat's do (`strict` is accepted: the upstream validates arguments against the
//! declared schema anyway). A `custom` tool takes freeform text (Codex's `apply_patch`, whose grammar the
//! upstream cannot enforce): it is declared upstream as a function with one string argument `input`, and the
//! stream machine turns its calls back into `custom_tool_call` items. `web_search` tools are accepted and
//! flagged on the request ([`ResponsesRequest::web_search`]) for Google Search grounding; they declare no
//! function.

use super::request::{is_web_search, ResponsesRequest, Tool};
use crate::inner::body::StrOr;
use crate::inner::request::{auto_mode, FunctionDeclaration, ToolConfig, ToolGroup};
use crate::inner::{ToolNameMap, TransformError};
use crate::json_tokens::JsonTokens;
use crate::signature::ModelFamily;

/// The schema a custom (freeform) tool is declared upstream with.
fn custom_schema() -> JsonTokens {
    JsonTokens::from_value(&serde_json::json!({
        "type": "object",
        "properties": {"input": {"type": "string", "description": "The tool's whole freeform input."}},
        "required": ["input"],
    }))
}

pub(super) fn build_tools<'a>(
    tools: &'a [Tool],
    family: ModelFamily,
    names: &mut ToolNameMap,
) -> Result<Vec<ToolGroup<'a>>, TransformError> {
    let mut declarations = Vec::with_capacity(tools.len());
    let mut seen = std::collections::HashSet::with_capacity(tools.len());
    let custom = custom_schema();
    for (i, tool) in tools.iter().enumerate() {
        if is_web_search(tool.kind) {
            continue;
        }
        let name = tool.name.filter(|n| !n.is_empty()).ok_or_else(|| {
            TransformError::invalid(format!("tools[{i}].name"), "A function or custom tool needs a `name`.")
        })?;
        if !seen.insert(name) {
            return Err(TransformError::invalid(
                format!("tools[{i}].name"),
                format!("Tool name {name:?} is declared twice."),
            ));
        }
        let param = || format!("tools[{i}].parameters");
        let parameters = match (tool.kind, &tool.parameters) {
            ("custom", _) => Some(custom.view()),
            (_, Some(schema)) if schema.is_object() => Some(schema.view()),
            (_, None) => None,
            (_, Some(_)) => {
                return Err(TransformError::invalid(param(), "`parameters` must be a JSON Schema object."))
            }
        };
        declarations.push(FunctionDeclaration::new(
            name,
            tool.description,
            parameters,
            family,
            names,
            param,
        )?);
    }
    if declarations.is_empty() {
        return Ok(Vec::new());
    }
    Ok(vec![ToolGroup { function_declarations: declarations, ..ToolGroup::default() }])
}

/// The names of the declared `custom` tools, whose calls are answered as `custom_tool_call` items.
pub fn custom_tool_names(req: &ResponsesRequest) -> Vec<String> {
    let tools = req.tools.as_deref().unwrap_or_default();
    tools.iter().filter(|t| t.kind == "custom").filter_map(|t| t.name.map(str::to_owned)).collect()
}

pub(super) fn build_tool_config(
    req: &ResponsesRequest,
    family: ModelFamily,
    has_tools: bool,
    names: &ToolNameMap,
) -> Result<Option<ToolConfig>, TransformError> {
    if !has_tools {
        return Ok(None);
    }
    let auto = auto_mode(family);
    let declared = |name: Option<&str>, param: String| -> Result<String, TransformError> {
        let name = name.unwrap_or_default();
        let tools = req.tools.as_deref().unwrap_or_default();
        if tools.iter().any(|t| t.name == Some(name) && !is_web_search(t.kind)) {
            Ok(names.upstream_name(name).to_owned())
        } else {
            Err(TransformError::invalid(
                param,
                format!("`tool_choice` names {name:?}, which is not in `tools`."),
            ))
        }
    };
    // `parallel_tool_calls: false` cannot be enforced upstream; the model is asked for calls either way.
    let (mode, allowed) = match &req.tool_choice {
        None => return Ok((family == ModelFamily::Claude).then(|| ToolConfig::new(auto, None))),
        Some(StrOr::Str(choice)) => match *choice {
            "none" => ("NONE", None),
            "auto" => (auto, None),
            "required" => ("ANY", None),
            other => {
                return Err(TransformError::invalid(
                    "tool_choice",
                    format!("Unknown tool_choice {other:?}; expected \"none\", \"auto\", \"required\" or a tool."),
                ))
            }
        },
        Some(StrOr::Other(choice)) => match choice.kind {
            "function" | "custom" => ("ANY", Some(vec![declared(choice.name, "tool_choice.name".into())?])),
            "allowed_tools" => {
                let mode = match choice.mode {
                    None | Some("auto") => auto,
                    Some("required") => "ANY",
                    Some(other) => {
                        return Err(TransformError::invalid(
                            "tool_choice.mode",
                            format!("Unknown mode {other:?}; expected \"auto\" or \"required\"."),
                        ))
                    }
                };
                let mut allowed = Vec::with_capacity(choice.tools.len());
                for (k, tool) in choice.tools.iter().enumerate() {
                    if tool.kind.is_some_and(is_web_search) {
                        continue;
                    }
                    allowed.push(declared(tool.name, format!("tool_choice.tools[{k}].name"))?);
                }
                (mode, Some(allowed))
            }
            kind if is_web_search(kind) => (auto, None),
            other => {
                return Err(TransformError::invalid(
                    "tool_choice.type",
                    format!("Unknown tool_choice type {other:?}; expected \"function\", \"custom\" or \"allowed_tools\"."),
                ))
            }
        },
    };
    Ok(Some(ToolConfig::new(mode, allowed)))
}
