//! An OpenAI request's tools -> the inner request's function declarations and `toolConfig`.
//!
//! Tool definitions become cleaned function declarations under names the upstream accepts, and
//! `tool_choice` becomes a function-calling mode. Agents send the same tools on every request, so the
//! encoded declarations are kept in the [`ToolCache`], keyed by a digest of the parsed tools.

use std::sync::Arc;

use super::request::{ChatRequest, Tool};
use crate::inner::body::StrOr;
use crate::inner::request::{auto_mode, encode_tools, FunctionDeclaration, ToolConfig, ToolGroup};
use crate::inner::{ToolCache, ToolNameMap, TransformError};
use crate::signature::ModelFamily;

/// The encoded `tools` for `declared`, from `cache` or built and stored there. Every name is already in
/// `names` (see [`ToolNameMap::new`]), so a hit leaves the map as a fresh build would; only successful
/// builds are stored, so a hit also stands for the validation a fresh build would have passed.
pub(super) fn cached_tools(
    declared: &[Tool],
    family: ModelFamily,
    names: &mut ToolNameMap,
    cache: &ToolCache,
) -> Result<Arc<[u8]>, TransformError> {
    let digest = cache.digest(&(family, declared));
    cache.get_or_build(digest, || Ok(encode_tools(&build_tools(declared, family, names)?)))
}

pub(super) fn build_tools<'a>(
    tools: &'a [Tool],
    family: ModelFamily,
    names: &mut ToolNameMap,
) -> Result<Vec<ToolGroup<'a>>, TransformError> {
    if tools.is_empty() {
        return Ok(Vec::new());
    }
    let mut declarations = Vec::with_capacity(tools.len());
    // Keyed randomly like the name map, without SipHash's cost per name.
    let mut seen: std::collections::HashSet<&str, ahash::RandomState> =
        std::collections::HashSet::with_capacity_and_hasher(tools.len(), ahash::RandomState::new());
    for (i, tool) in tools.iter().enumerate() {
        let function = match (tool.kind, &tool.function) {
            ("function", Some(function)) => function,
            ("function", None) => {
                return Err(TransformError::invalid(
                    format!("tools[{i}].function"),
                    "A function tool needs `function`.",
                ))
            }
            (kind, _) => {
                return Err(TransformError::unsupported(
                    format!("tools[{i}].type"),
                    format!("Tools of type {kind:?} are not supported; only \"function\" tools are."),
                ))
            }
        };
        if function.name.is_empty() {
            return Err(TransformError::invalid(
                format!("tools[{i}].function.name"),
                "A function tool needs a `name`.",
            ));
        }
        if !seen.insert(function.name) {
            return Err(TransformError::invalid(
                format!("tools[{i}].function.name"),
                format!("Tool name {:?} is declared twice.", function.name),
            ));
        }
        let param = || format!("tools[{i}].function.parameters");
        let parameters = match &function.parameters {
            Some(schema) if schema.is_object() => Some(schema.view()),
            None => None,
            Some(_) => {
                return Err(TransformError::invalid(param(), "`parameters` must be a JSON Schema object."))
            }
        };
        declarations.push(FunctionDeclaration::new(
            function.name,
            function.description,
            parameters,
            family,
            names,
            param,
        )?);
    }
    Ok(vec![ToolGroup { function_declarations: declarations, ..ToolGroup::default() }])
}

pub(super) fn build_tool_config(
    req: &ChatRequest,
    family: ModelFamily,
    has_tools: bool,
    names: &ToolNameMap,
) -> Result<Option<ToolConfig>, TransformError> {
    if !has_tools {
        return Ok(None);
    }
    let auto = auto_mode(family);
    let declared = |name: &str, param: String| -> Result<String, TransformError> {
        let known = req
            .tools
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|t| t.function.as_ref().is_some_and(|f| f.name == name));
        if known {
            Ok(names.upstream_name(name).to_owned())
        } else {
            Err(TransformError::invalid(
                param,
                format!("`tool_choice` names {name:?}, which is not in `tools`."),
            ))
        }
    };
    let (mode, allowed) = match &req.tool_choice {
        None => return Ok((family == ModelFamily::Claude).then(|| ToolConfig::new(auto, None))),
        Some(StrOr::Str(choice)) => match choice.as_str() {
            "none" => ("NONE", None),
            "auto" => (auto, None),
            "required" => ("ANY", None),
            other => {
                return Err(TransformError::invalid(
                    "tool_choice",
                    format!(
                    "Unknown tool_choice {other:?}; expected \"none\", \"auto\", \"required\" or a function."
                ),
                ))
            }
        },
        Some(StrOr::Other(choice)) => {
            match (choice.kind.as_str(), &choice.function, &choice.allowed_tools) {
                ("function", Some(f), _) => {
                    ("ANY", Some(vec![declared(&f.name, "tool_choice.function.name".into())?]))
                }
                ("allowed_tools", _, Some(allowed)) => {
                    let mode = match allowed.mode.as_deref() {
                        None | Some("auto") => auto,
                        Some("required") => "ANY",
                        Some(other) => {
                            return Err(TransformError::invalid(
                                "tool_choice.allowed_tools.mode",
                                format!("Unknown mode {other:?}; expected \"auto\" or \"required\"."),
                            ))
                        }
                    };
                    let names = allowed
                        .tools
                        .iter()
                        .enumerate()
                        .map(|(k, t)| {
                            declared(
                                &t.function.name,
                                format!("tool_choice.allowed_tools.tools[{k}].function.name"),
                            )
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    (mode, Some(names))
                }
                _ => return Err(TransformError::invalid(
                    "tool_choice",
                    "Expected {\"type\":\"function\",\"function\":{\"name\":…}} or an allowed_tools object.",
                )),
            }
        }
    };
    Ok(Some(ToolConfig::new(mode, allowed)))
}
