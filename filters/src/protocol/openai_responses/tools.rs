//! A Responses request's tools -> function declarations and `toolConfig`.
//!
//! `function` tools map as chat's do (`strict` is accepted: the upstream validates arguments against the
//! declared schema anyway). A `custom` tool takes freeform text (Codex's `apply_patch`, whose grammar the
//! upstream cannot enforce): it is declared upstream as a function with one string argument `input`, and the
//! stream machine turns its calls back into `custom_tool_call` items. `web_search` tools are accepted and
//! flagged on the request ([`ResponsesRequest::web_search`]) for Google Search grounding; they declare no
//! function. A `namespace` tool (Codex groups its sub-agent tools in one) is flattened: each tool inside is
//! declared under `namespace.name` and its calls carry `namespace` again ([`ToolRoute`]).

use std::sync::Arc;

use super::request::{is_web_search, ResponsesRequest, Tool};
use crate::inner::body::StrOr;
use crate::inner::request::{auto_mode, encode_tools, FunctionDeclaration, ToolConfig, ToolGroup};
use crate::inner::{ToolCache, ToolNameMap, TransformError};
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

/// Where the calls of one declared tool go back to: the client's name, its namespace, and whether it is a
/// custom (freeform) tool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolRoute {
    /// `namespace.name`, or `name`: the name the tool is registered under upstream.
    pub qualified: String,
    pub namespace: Option<String>,
    pub name: String,
    pub custom: bool,
}

/// The name a tool is declared under: `namespace.name` inside a namespace.
pub(super) fn qualified(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(namespace) => format!("{namespace}.{name}"),
        None => name.to_owned(),
    }
}

/// Every function and custom tool, namespaces flattened: `(param path, namespace, tool)`.
pub(super) fn flat_tools<'t, 'a>(tools: &'t [Tool<'a>]) -> Vec<(String, Option<&'a str>, &'t Tool<'a>)> {
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        if tool.kind == "namespace" {
            for (j, inner) in tool.tools.as_deref().unwrap_or_default().iter().enumerate() {
                out.push((format!("tools[{i}].tools[{j}]"), tool.name, inner));
            }
        } else if !is_web_search(tool.kind) {
            out.push((format!("tools[{i}]"), None, tool));
        }
    }
    out
}

/// Where each declared tool's calls go back to.
pub fn tool_routes(req: &ResponsesRequest) -> Vec<ToolRoute> {
    flat_tools(req.tools.as_deref().unwrap_or_default())
        .into_iter()
        .filter_map(|(_, namespace, tool)| {
            let name = tool.name?;
            Some(ToolRoute {
                qualified: qualified(namespace, name),
                namespace: namespace.map(str::to_owned),
                name: name.to_owned(),
                custom: tool.kind == "custom",
            })
        })
        .collect()
}

/// The encoded `tools` for `declared`, from `cache` or built and stored there, as chat's are: Codex sends
/// the same ~18 KB of tools on every request. Every name is already in `names` (see [`ToolNameMap::new`]),
/// so a hit leaves the map as a fresh build would; the key is tagged so a chat tool list never meets it.
pub(super) fn cached_tools(
    declared: &[Tool],
    family: ModelFamily,
    names: &mut ToolNameMap,
    cache: &ToolCache,
) -> Result<Arc<[u8]>, TransformError> {
    let digest = cache.digest(&("responses", family, declared));
    cache.get_or_build(digest, || Ok(encode_tools(&build_tools(declared, family, names)?)))
}

pub(super) fn build_tools<'a>(
    tools: &'a [Tool],
    family: ModelFamily,
    names: &mut ToolNameMap,
) -> Result<Vec<ToolGroup<'a>>, TransformError> {
    let flat = flat_tools(tools);
    let mut declarations = Vec::with_capacity(flat.len());
    let mut seen = std::collections::HashSet::with_capacity(flat.len());
    let custom = custom_schema();
    for (at, namespace, tool) in flat {
        let name = tool.name.filter(|n| !n.is_empty()).ok_or_else(|| {
            TransformError::invalid(format!("{at}.name"), "A function or custom tool needs a `name`.")
        })?;
        let name = qualified(namespace, name);
        if !seen.insert(name.clone()) {
            return Err(TransformError::invalid(
                format!("{at}.name"),
                format!("Tool name {name:?} is declared twice."),
            ));
        }
        let param = || format!("{at}.parameters");
        let parameters = match (tool.kind, &tool.parameters) {
            ("custom", _) => Some(custom.view()),
            (_, Some(schema)) if schema.is_object() => Some(schema.view()),
            (_, None) => None,
            (_, Some(_)) => {
                return Err(TransformError::invalid(param(), "`parameters` must be a JSON Schema object."))
            }
        };
        declarations.push(FunctionDeclaration::new(
            &name,
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
        if flat_tools(tools)
            .iter()
            .any(|(_, namespace, t)| qualified(*namespace, t.name.unwrap_or_default()) == name)
        {
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
