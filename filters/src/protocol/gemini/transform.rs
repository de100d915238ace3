//! Native Gemini API (`/v1beta/models/{m}:generateContent`, `:streamGenerateContent`, `:countTokens`) ->
//! `v1internal` (PROTOCOL.md §1, §2, §9, §10).
//!
//! The upstream speaks Gemini already, so this is a passthrough that touches only what it must: the body is
//! kept as a JSON map (fields Levitate does not interpret travel unchanged, in either key casing), tool
//! schemas are cleaned (`parametersJsonSchema` becomes `parameters`), tool names are sanitized, the thinking
//! budget is kept under `maxOutputTokens`, history signatures are fixed per §9 (cached ones injected, the
//! sentinel for Gemini targets, foreign ones removed — Claude targets get nothing they did not sign), the
//! first turn is made the user's, and `sessionId` is set from the routing decision.
//!
//! It also answers the model listing endpoints in Gemini's own shape.

use serde_json::{json, Map, Value};

use crate::inner::body::parse_body;
use crate::inner::request::{max_output_above_budget, FunctionDeclaration};
use crate::inner::{InnerRequest, RequestType, Target, ToolNameMap, TransformError};
use crate::json_tokens::JsonTokens;
use crate::limits;
use crate::signature::{
    normalize_signature, signature_fits, ModelFamily, SignatureLookup, SKIP_VALIDATOR_SENTINEL,
};

/// A parsed `GenerateContentRequest`, every field kept.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    body: Map<String, Value>,
}

/// Parses a `generateContent` / `countTokens` body. The buffer is used as scratch space and left modified.
pub fn parse_generate_request(body: &mut [u8]) -> Result<GenerateRequest, TransformError> {
    let body: Map<String, Value> = parse_body(body, "a generateContent request")?;
    let request = GenerateRequest { body };
    if request.contents().is_none_or(|c| c.is_empty()) {
        return Err(TransformError::invalid("contents", "`contents` must be a non-empty array of turns."));
    }
    request.check_bounds()?;
    Ok(request)
}

impl GenerateRequest {
    /// The turns: `contents`, or `generateContentRequest.contents` in a `countTokens` body.
    fn contents(&self) -> Option<&Vec<Value>> {
        get(&self.body, "contents", "contents")
            .or_else(|| {
                get(&self.body, "generateContentRequest", "generate_content_request")
                    .and_then(|r| r.get("contents"))
            })
            .and_then(Value::as_array)
    }

    /// The counts a client controls stay within [`crate::limits`], so the transform's work is bounded.
    fn check_bounds(&self) -> Result<(), TransformError> {
        let contents = self.contents().map_or(&[][..], Vec::as_slice);
        limits::check_count(contents.len(), limits::MAX_MESSAGES, "contents", "turns")?;
        let tools =
            get(&self.body, "tools", "tools").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
        limits::check_count(tools.len(), limits::MAX_TOOLS, "tools", "tools")?;
        let functions: usize = tools.iter().filter_map(declarations).map(Vec::len).sum();
        limits::check_count(functions, limits::MAX_TOOLS, "tools", "function declarations")?;
        let calls = contents
            .iter()
            .filter_map(|turn| turn.get("parts").and_then(Value::as_array))
            .flatten()
            .filter(|part| part.get("functionCall").or_else(|| part.get("function_call")).is_some())
            .count();
        limits::check_count(calls, limits::MAX_TOOL_CALLS, "contents", "function calls")
    }

    /// The first user turn's first text, for deriving a session key from the conversation's start.
    pub fn first_user_text(&self) -> Option<&str> {
        let first = self
            .contents()?
            .iter()
            .find(|c| c.get("role").and_then(Value::as_str).is_none_or(|r| r == "user"))?;
        first.get("parts")?.as_array()?.iter().find_map(|p| p.get("text").and_then(Value::as_str))
    }
}

/// `map[camel]`, else `map[snake]`: proto-JSON accepts both casings and clients use both.
fn get<'a>(map: &'a Map<String, Value>, camel: &str, snake: &str) -> Option<&'a Value> {
    map.get(camel).or_else(|| map.get(snake))
}

fn get_mut<'a>(map: &'a mut Map<String, Value>, camel: &str, snake: &str) -> Option<&'a mut Value> {
    if map.contains_key(camel) {
        map.get_mut(camel)
    } else {
        map.get_mut(snake)
    }
}

/// Builds the inner `request` object for `target`, plus the tool-name map the response stream needs.
pub fn build_inner_request(
    req: GenerateRequest,
    target: &Target,
    signatures: &dyn SignatureLookup,
) -> Result<InnerRequest, TransformError> {
    let family = ModelFamily::of(target.upstream_model);
    // Taken, not cloned: the body can hold megabytes of history and images.
    let mut body = req.body;
    body.remove("model");
    body.remove("session_id");
    let mut names = ToolNameMap::new(declared_names(&body).iter().map(String::as_str));
    let has_functions = clean_tools(&mut body, family, &mut names)?;
    fix_tool_config(&mut body, family, has_functions, &names);
    if RequestType::of(target.upstream_model, false) == RequestType::ImageGen {
        prepare_image_request(&mut body);
    }
    fix_generation_config(&mut body, family);
    let contents =
        get_mut(&mut body, "contents", "contents").and_then(Value::as_array_mut).ok_or_else(|| {
            TransformError::invalid("contents", "`contents` must be a non-empty array of turns.")
        })?;
    fix_contents(contents, family, signatures, &mut names)?;
    body.insert("sessionId".into(), Value::String(target.session_id.to_owned()));
    // Search beside function declarations is still an agent turn; search alone is a web search.
    let request_type = RequestType::of(target.upstream_model, !has_functions && uses_google_search(&body));
    let json = serde_json::to_vec(&body)
        .map_err(|e| TransformError::Json(format!("The request could not be encoded: {e}")))?;
    Ok(InnerRequest { json, tool_names: names, request_type })
}

/// Whether a tool grounds the answer with Google Search (`googleSearch`, or the older `googleSearchRetrieval`).
fn uses_google_search(body: &Map<String, Value>) -> bool {
    let Some(tools) = get(body, "tools", "tools").and_then(Value::as_array) else { return false };
    tools.iter().filter_map(Value::as_object).any(|tool| {
        ["googleSearch", "google_search", "googleSearchRetrieval", "google_search_retrieval"]
            .iter()
            .any(|key| tool.contains_key(*key))
    })
}

fn declarations(tool: &Value) -> Option<&Vec<Value>> {
    tool.as_object()
        .and_then(|t| get(t, "functionDeclarations", "function_declarations"))
        .and_then(Value::as_array)
}

fn declared_names(body: &Map<String, Value>) -> Vec<String> {
    let tools = get(body, "tools", "tools").and_then(Value::as_array).into_iter().flatten();
    tools
        .filter_map(declarations)
        .flatten()
        .filter_map(|d| d.get("name").and_then(Value::as_str).map(str::to_owned))
        .collect()
}

/// Cleans every function declaration's schema and name; returns whether any function is declared.
fn clean_tools(
    body: &mut Map<String, Value>,
    family: ModelFamily,
    names: &mut ToolNameMap,
) -> Result<bool, TransformError> {
    let Some(Value::Array(tools)) = get_mut(body, "tools", "tools") else {
        return Ok(false);
    };
    let mut any = false;
    for (i, tool) in tools.iter_mut().enumerate() {
        let Some(tool) = tool.as_object_mut() else {
            return Err(TransformError::invalid(format!("tools[{i}]"), "A tool must be an object."));
        };
        let key = if tool.contains_key("functionDeclarations") {
            "functionDeclarations"
        } else {
            "function_declarations"
        };
        let Some(Value::Array(decls)) = tool.get_mut(key) else {
            continue;
        };
        for (j, decl) in decls.iter_mut().enumerate() {
            let at = |field: &str| format!("tools[{i}].{key}[{j}].{field}");
            let Some(map) = decl.as_object_mut() else {
                return Err(TransformError::invalid(at("name"), "A function declaration must be an object."));
            };
            let name = map.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
            if name.is_empty() {
                return Err(TransformError::invalid(at("name"), "A function declaration needs a `name`."));
            }
            // §10: `parametersJsonSchema` (full JSON Schema) becomes the cleaned `parameters`.
            let json_schema =
                map.remove("parametersJsonSchema").or_else(|| map.remove("parameters_json_schema"));
            let (schema, field) = match json_schema {
                Some(schema) => (Some(schema), "parametersJsonSchema"),
                None => (map.remove("parameters"), "parameters"),
            };
            map.remove("responseJsonSchema");
            map.remove("response_json_schema");
            let schema = schema.filter(|s| !s.is_null());
            if schema.as_ref().is_some_and(|s| !s.is_object()) {
                return Err(TransformError::invalid(at(field), "A parameters schema must be an object."));
            }
            // The description stays where it is; only the name and schema are rewritten.
            let schema = schema.as_ref().map(JsonTokens::from_value);
            let view = schema.as_ref().map(JsonTokens::view);
            let cleaned = FunctionDeclaration::new(&name, None, view, family, names, || at(field))?;
            let parameters = cleaned.parameters.and_then(|json| serde_json::from_slice::<Value>(&json).ok());
            let upstream_name = cleaned.name;
            map.insert("name".into(), Value::String(upstream_name));
            if let Some(parameters) = parameters {
                map.insert("parameters".into(), parameters);
            }
            any = true;
        }
    }
    Ok(any)
}

/// Maps `allowedFunctionNames` to upstream names; Claude's `AUTO` (or no mode) becomes `VALIDATED` (§2).
fn fix_tool_config(
    body: &mut Map<String, Value>,
    family: ModelFamily,
    has_functions: bool,
    names: &ToolNameMap,
) {
    if family == ModelFamily::Claude && has_functions && get(body, "toolConfig", "tool_config").is_none() {
        body.insert("toolConfig".into(), json!({"functionCallingConfig": {"mode": "VALIDATED"}}));
        return;
    }
    let Some(Value::Object(config)) = get_mut(body, "toolConfig", "tool_config") else {
        return;
    };
    let Some(Value::Object(calling)) = get_mut(config, "functionCallingConfig", "function_calling_config")
    else {
        return;
    };
    if let Some(Value::Array(allowed)) = get_mut(calling, "allowedFunctionNames", "allowed_function_names") {
        for name in allowed.iter_mut() {
            if let Value::String(n) = name {
                *n = names.upstream_name(n).to_owned();
            }
        }
    }
    if family == ModelFamily::Claude && has_functions {
        let mode = calling.get("mode").and_then(Value::as_str);
        if mode.is_none_or(|m| m.eq_ignore_ascii_case("AUTO")) {
            calling.insert("mode".into(), Value::String("VALIDATED".into()));
        }
    }
}

/// Removes a client's `thinkingConfig` (image models refuse one: the upstream answers 400) and asks for text
/// and image when the client named no modalities, as every other protocol's image request does.
fn prepare_image_request(body: &mut Map<String, Value>) {
    if get(body, "generationConfig", "generation_config").is_none() {
        body.insert("generationConfig".into(), Value::Object(Map::new()));
    }
    if let Some(Value::Object(config)) = get_mut(body, "generationConfig", "generation_config") {
        config.remove("thinkingConfig");
        config.remove("thinking_config");
        if get(config, "responseModalities", "response_modalities").is_none() {
            config.insert("responseModalities".into(), json!(["TEXT", "IMAGE"]));
        }
    }
}

/// Keeps `maxOutputTokens` above a positive `thinkingBudget` (the upstream rejects otherwise).
fn fix_generation_config(body: &mut Map<String, Value>, family: ModelFamily) {
    let Some(Value::Object(config)) = get_mut(body, "generationConfig", "generation_config") else {
        return;
    };
    let budget = get(config, "thinkingConfig", "thinking_config")
        .and_then(Value::as_object)
        .and_then(|t| get(t, "thinkingBudget", "thinking_budget"))
        .and_then(Value::as_u64)
        .and_then(|b| u32::try_from(b).ok());
    let Some(budget) = budget else {
        return;
    };
    let max_key =
        if config.contains_key("max_output_tokens") { "max_output_tokens" } else { "maxOutputTokens" };
    let max = config.get(max_key).and_then(Value::as_u64).and_then(|m| u32::try_from(m).ok());
    if let Some(new_max) = max_output_above_budget(max, budget, family) {
        config.insert(max_key.into(), Value::from(new_max));
    }
}

/// The signature of a part, under either spelling, and the key it was found under.
fn part_signature(part: &Map<String, Value>) -> Option<(&'static str, &str)> {
    ["thoughtSignature", "thought_signature"]
        .into_iter()
        .find_map(|key| part.get(key).and_then(Value::as_str).map(|s| (key, s)))
}

fn fix_contents(
    contents: &mut Vec<Value>,
    family: ModelFamily,
    signatures: &dyn SignatureLookup,
    names: &mut ToolNameMap,
) -> Result<(), TransformError> {
    for (i, content) in contents.iter_mut().enumerate() {
        let Some(turn) = content.as_object_mut() else {
            return Err(TransformError::invalid(format!("contents[{i}]"), "A turn must be an object."));
        };
        if !turn.contains_key("role") {
            turn.insert("role".into(), Value::String("user".into()));
        }
        let Some(Value::Array(parts)) = turn.get_mut("parts") else {
            return Err(TransformError::invalid(format!("contents[{i}].parts"), "A turn needs `parts`."));
        };
        if family == ModelFamily::Claude {
            join_thought_runs(parts);
        }
        let mut first_call = true;
        parts.retain_mut(|part| fix_part(part, &mut first_call, family, signatures, names));
    }
    contents.retain(|c| c.get("parts").and_then(Value::as_array).is_some_and(|p| !p.is_empty()));
    if contents.is_empty() {
        return Err(TransformError::invalid("contents", "`contents` has no parts the upstream can take."));
    }
    if contents.first().and_then(|c| c.get("role")).and_then(Value::as_str) == Some("model") {
        contents.insert(0, json!({"role": "user", "parts": [{"text": "."}]}));
    }
    Ok(())
}

/// Claude's streamed thinking comes as several thought parts, the signature on the last (PROTOCOL.md §2), and
/// google-genai replays every streamed part as it came. For Claude that is one thinking block whose signature
/// covers its whole text, so each run of unsigned thought parts is joined into the signed one that ends it.
fn join_thought_runs(parts: &mut Vec<Value>) {
    let is_thought = |p: &Value| p.get("thought").and_then(Value::as_bool) == Some(true);
    let unsigned = |p: &Value| p.as_object().is_some_and(|o| part_signature(o).is_none());
    let mut joined: Vec<Value> = Vec::with_capacity(parts.len());
    for mut part in parts.drain(..) {
        if let Some(prev) = joined.last_mut().filter(|p| is_thought(p) && unsigned(p) && is_thought(&part)) {
            let mut text = prev.get("text").and_then(Value::as_str).unwrap_or_default().to_owned();
            text.push_str(part.get("text").and_then(Value::as_str).unwrap_or_default());
            if let Some(obj) = part.as_object_mut() {
                obj.insert("text".into(), Value::String(text));
            }
            *prev = part;
            continue;
        }
        joined.push(part);
    }
    *parts = joined;
}

/// Fixes one history part per §9; returns whether to keep it.
fn fix_part(
    part: &mut Value,
    first_call: &mut bool,
    family: ModelFamily,
    signatures: &dyn SignatureLookup,
    names: &mut ToolNameMap,
) -> bool {
    let Some(part) = part.as_object_mut() else {
        return true;
    };
    // A signature the target would reject is removed; the rest are sent in standard base64.
    if let Some((key, signature)) = part_signature(part) {
        let fits = family != ModelFamily::Other && signature_fits(signatures, signature, family);
        let normalized = normalize_signature(signature).into_owned();
        part.remove(key);
        if fits {
            part.insert("thoughtSignature".into(), Value::String(normalized));
        }
    }
    let is_thought = part.get("thought").and_then(Value::as_bool) == Some(true);
    if is_thought && family == ModelFamily::Claude && !part.contains_key("thoughtSignature") {
        return false;
    }
    // Claude signs thought parts only (PROTOCOL.md §2): a signature elsewhere is its 400.
    if !is_thought && family == ModelFamily::Claude {
        part.remove("thoughtSignature");
    }
    for (camel, snake) in [("functionCall", "function_call"), ("functionResponse", "function_response")] {
        if let Some(Value::String(name)) = get_mut(part, camel, snake).and_then(|c| c.get_mut("name")) {
            *name = names.register(name).to_owned();
        }
    }
    let call_id = get(part, "functionCall", "function_call")
        .map(|c| c.get("id").and_then(Value::as_str).map(str::to_owned));
    if let Some(id) = call_id {
        let is_first = std::mem::replace(first_call, false);
        if !part.contains_key("thoughtSignature") && family != ModelFamily::Claude {
            let cached = id
                .and_then(|id| signatures.signature_for_tool_call(&id))
                .filter(|s| family != ModelFamily::Other && signature_fits(signatures, s, family))
                .map(|s| normalize_signature(&s).into_owned());
            let signature = cached.or_else(|| {
                (family == ModelFamily::Gemini && is_first).then(|| SKIP_VALIDATOR_SENTINEL.to_owned())
            });
            if let Some(signature) = signature {
                part.insert("thoughtSignature".into(), Value::String(signature));
            }
        }
    }
    true
}

/// The upstream `countTokens` body: exactly `{"request":{"model":"models/<id>","contents":[…]}}` (a
/// top-level `model` or `project`, or `safetySettings`, gets a 400 upstream, §1).
pub fn build_count_tokens_request(req: &GenerateRequest, upstream_model: &str) -> Vec<u8> {
    // The upstream countTokens takes only `model` and `contents` (anything else is an "Unknown name"), so the
    // system instruction and tool declarations a client counts with are sent as leading user text: the
    // count then covers them, as the client expects, without risking a refused field.
    let scope = get(&req.body, "generateContentRequest", "generate_content_request")
        .and_then(Value::as_object)
        .unwrap_or(&req.body);
    let mut preamble = Vec::new();
    if let Some(parts) = get(scope, "systemInstruction", "system_instruction").and_then(|s| s.get("parts")) {
        preamble.extend(parts.as_array().into_iter().flatten().filter(|p| p.get("text").is_some()).cloned());
    }
    if let Some(tools) = get(scope, "tools", "tools").filter(|t| t.as_array().is_some_and(|a| !a.is_empty()))
    {
        preamble.push(json!({"text": tools.to_string()}));
    }
    let mut contents = Vec::new();
    if !preamble.is_empty() {
        contents.push(json!({"role": "user", "parts": preamble}));
    }
    contents.extend(req.contents().cloned().unwrap_or_default());
    let body = json!({"request": {"model": format!("models/{upstream_model}"), "contents": contents}});
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The client's `countTokens` answer from the upstream's: `{"totalTokens":N}` (also accepted wrapped in
/// `response`). `None` when the upstream body has no count.
pub fn parse_count_tokens_response(body: &[u8]) -> Option<Vec<u8>> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let total = value.get("totalTokens").or_else(|| value.pointer("/response/totalTokens"))?.as_u64()?;
    Some(format!("{{\"totalTokens\":{total}}}").into_bytes())
}

/// Token limits Levitate advertises for an upstream model (§6).
fn limits(model: &str) -> (u64, u64) {
    match ModelFamily::of(model) {
        ModelFamily::Claude => (200_000, 64_000),
        _ => (1_048_576, 65_536),
    }
}

/// `gemini-3-flash` -> `Gemini 3 Flash`.
fn display_name(model: &str) -> String {
    model
        .split('-')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn model_json(model: &str) -> Value {
    let (input, output) = limits(model);
    json!({
        "name": format!("models/{model}"),
        "displayName": display_name(model),
        "inputTokenLimit": input,
        "outputTokenLimit": output,
        "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"],
    })
}

/// The `GET /v1beta/models` body for these model ids (upstream models and aliases alike).
pub fn gemini_model_list<'a>(models: impl IntoIterator<Item = &'a str>) -> Vec<u8> {
    let models: Vec<Value> = models.into_iter().map(model_json).collect();
    serde_json::to_vec(&json!({ "models": models })).unwrap_or_default()
}

/// The `GET /v1beta/models/{model}` body; `model` may carry the `models/` prefix.
pub fn gemini_model(model: &str) -> Vec<u8> {
    serde_json::to_vec(&model_json(model.strip_prefix("models/").unwrap_or(model))).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::anthropic::transform::tests::{claude_sig, gemini_sig};
    use crate::signature::{CapturedSignature, NoSignatures};
    use std::collections::HashMap;

    struct Cached(HashMap<String, String>);

    impl SignatureLookup for Cached {
        fn signature_for_tool_call(&self, key: &str) -> Option<String> {
            self.0.get(key).cloned()
        }
    }

    fn build_with(
        model: &str,
        body: Value,
        sigs: &dyn SignatureLookup,
    ) -> Result<(Value, ToolNameMap), TransformError> {
        let req = parse_generate_request(&mut serde_json::to_vec(&body).unwrap())?;
        let inner = build_inner_request(req, &Target { upstream_model: model, session_id: "-9" }, sigs)?;
        Ok((serde_json::from_slice(&inner.json).unwrap(), inner.tool_names))
    }

    fn history() -> Value {
        json!({"contents": [
            {"role": "model", "parts": [{"text": "hi"}]},
            {"role": "user", "parts": [{"text": "read two files"}]},
            {"role": "model", "parts": [
                {"text": "ponder", "thought": true},
                {"functionCall": {"name": "fs.read", "args": {"p": "a"}, "id": "c1"}},
                {"function_call": {"name": "fs.read", "args": {"p": "b"}}},
            ]},
            {"parts": [{"functionResponse": {"name": "fs.read", "id": "c1", "response": {"result": "A"}}}]},
        ],
        "tools": [{"functionDeclarations": [{"name": "fs.read", "description": "Read",
            "parametersJsonSchema": {"type": "object", "properties": {"p": {"type": "string", "format": "path"}}, "$schema": "x", "additionalProperties": false}}]},
            {"googleSearch": {}}],
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "OFF"}],
        "generationConfig": {"maxOutputTokens": 100, "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": true}, "responseModalities": ["TEXT"]},
        "cachedContent": "keep-me", "model": "models/x"})
    }

    #[test]
    fn image_models_get_no_thinking_config() {
        let (got, _) = build_with("gemini-3-pro-image", history(), &NoSignatures).unwrap();
        assert_eq!(got["generationConfig"], json!({"maxOutputTokens": 100, "responseModalities": ["TEXT"]}));
        // A client that names no modalities gets text and image, as in the other protocols.
        let plain = json!({"contents": [{"role": "user", "parts": [{"text": "a cat"}]}]});
        let (got, _) = build_with("gemini-3-pro-image", plain, &NoSignatures).unwrap();
        assert_eq!(got["generationConfig"], json!({"responseModalities": ["TEXT", "IMAGE"]}));
    }

    #[test]
    fn passthrough_cleans_tools_fixes_turns_and_injects_sentinels() {
        let (got, names) = build_with("gemini-3-flash", history(), &NoSignatures).unwrap();
        assert_eq!(got["contents"][0], json!({"role": "user", "parts": [{"text": "."}]}));
        assert_eq!(
            got["contents"][3]["parts"],
            json!([
                {"text": "ponder", "thought": true},
                {"functionCall": {"name": "fs_read", "args": {"p": "a"}, "id": "c1"}, "thoughtSignature": SKIP_VALIDATOR_SENTINEL},
                {"function_call": {"name": "fs_read", "args": {"p": "b"}}},
            ])
        );
        assert_eq!(got["contents"][4]["role"], "user");
        assert_eq!(got["contents"][4]["parts"][0]["functionResponse"]["name"], "fs_read");
        assert_eq!(
            got["tools"][0]["functionDeclarations"][0],
            json!({"name": "fs_read", "description": "Read",
                   "parameters": {"type": "object", "properties": {"p": {"type": "string", "description": "(format: path)"}}}})
        );
        assert_eq!(got["tools"][1], json!({"googleSearch": {}}));
        let kind = |model: &str, body: Value| {
            let req = parse_generate_request(&mut serde_json::to_vec(&body).unwrap()).unwrap();
            let target = Target { upstream_model: model, session_id: "-9" };
            build_inner_request(req, &target, &NoSignatures).unwrap().request_type
        };
        assert_eq!(kind("gemini-3-flash", history()), RequestType::Agent, "search beside functions");
        let ask = json!({"contents": [{"role": "user", "parts": [{"text": "news?"}]}]});
        assert_eq!(kind("gemini-3-flash", ask.clone()), RequestType::Agent);
        assert_eq!(kind("gemini-3-pro-image", ask.clone()), RequestType::ImageGen);
        let search = crate::inner::with_fields(ask, json!({"tools": [{"google_search": {}}]}));
        assert_eq!(kind("gemini-3-flash", search), RequestType::WebSearch);
        assert_eq!(got["generationConfig"]["maxOutputTokens"], 1124);
        assert_eq!(got["generationConfig"]["responseModalities"], json!(["TEXT"]));
        assert_eq!(got["safetySettings"][0]["threshold"], "OFF");
        assert_eq!(got["cachedContent"], "keep-me");
        assert_eq!(got["sessionId"], "-9");
        assert!(got.get("model").is_none());
        assert_eq!(names.client_name("fs_read"), "fs.read");
    }

    #[test]
    fn cached_signatures_are_injected_and_foreign_ones_removed() {
        let sigs = Cached(
            [(CapturedSignature::tool_call("c1", &gemini_sig()))]
                .iter()
                .map(|c| (c.tool_call_id.clone(), c.signature.clone()))
                .collect(),
        );
        let (got, _) = build_with("gemini-3-flash", history(), &sigs).unwrap();
        assert_eq!(got["contents"][3]["parts"][1]["thoughtSignature"], gemini_sig());
        let mut body = history();
        body["contents"][2]["parts"][1]["thought_signature"] = json!(claude_sig());
        let (got, _) = build_with("gemini-3-flash", body.clone(), &NoSignatures).unwrap();
        assert_eq!(got["contents"][3]["parts"][1]["thoughtSignature"], SKIP_VALIDATOR_SENTINEL);
        assert!(got["contents"][3]["parts"][1].get("thought_signature").is_none());
        // Claude: unsigned thoughts dropped, no sentinel, VALIDATED mode.
        let (got, _) = build_with("claude-sonnet-4-6", history(), &NoSignatures).unwrap();
        assert!(!got.to_string().contains("thoughtSignature"));
        assert_eq!(got["contents"][3]["parts"].as_array().unwrap().len(), 2);
        assert_eq!(got["toolConfig"], json!({"functionCallingConfig": {"mode": "VALIDATED"}}));
        body["contents"][2]["parts"][0]["thoughtSignature"] = json!(claude_sig());
        let (got, _) = build_with("claude-sonnet-4-6", body, &NoSignatures).unwrap();
        assert_eq!(got["contents"][3]["parts"][0]["thoughtSignature"], claude_sig());
        // ...on the thought only: never on a call, whether the client or the cache has one for it.
        assert!(got["contents"][3]["parts"][1]["functionCall"].is_object());
        assert!(got["contents"][3]["parts"][1].get("thoughtSignature").is_none());
        let cached = Cached([("c1".to_owned(), claude_sig())].into_iter().collect());
        let (got, _) = build_with("claude-sonnet-4-6", history(), &cached).unwrap();
        assert!(!got.to_string().contains("thoughtSignature"), "{got}");
    }

    #[test]
    fn a_claude_thinking_block_replayed_in_pieces_is_joined() {
        let mut body = history();
        body["contents"][2]["parts"] = json!([
            {"text": "First ", "thought": true},
            {"text": "second.", "thought": true, "thought_signature": claude_sig()},
            {"text": "unsigned tail", "thought": true},
            {"functionCall": {"name": "fs.read", "args": {"p": "a"}, "id": "c1"}},
        ]);
        let (got, _) = build_with("claude-sonnet-4-6", body.clone(), &NoSignatures).unwrap();
        let parts = &got["contents"][3]["parts"];
        assert_eq!(
            parts[0],
            json!({"text": "First second.", "thought": true, "thoughtSignature": claude_sig()})
        );
        assert!(parts[1]["functionCall"].is_object(), "the unsigned tail is dropped: {parts}");
        // Gemini keeps its parts as they are.
        let (got, _) = build_with("gemini-3-flash", body, &NoSignatures).unwrap();
        assert_eq!(got["contents"][3]["parts"][0]["text"], "First ");
    }

    #[test]
    fn tool_config_names_are_mapped() {
        let mut body = history();
        body["toolConfig"] =
            json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["fs.read"]}});
        let (got, _) = build_with("gemini-3-flash", body, &NoSignatures).unwrap();
        assert_eq!(
            got["toolConfig"],
            json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["fs_read"]}})
        );
    }

    #[test]
    fn bad_bodies_are_400s() {
        let e = build_with("gemini-3-flash", json!({"contents": []}), &NoSignatures).unwrap_err();
        assert_eq!(e.param(), Some("contents"));
        let e =
            build_with("gemini-3-flash", json!({"contents": [{"role": "user"}]}), &NoSignatures).unwrap_err();
        assert_eq!(e.param(), Some("contents[0].parts"));
        let e = parse_generate_request(&mut b"[1]".to_vec()).unwrap_err();
        assert!(matches!(e, TransformError::Json(_)));
    }

    #[test]
    fn count_tokens_request_and_response_have_the_upstream_shape() {
        let req = parse_generate_request(&mut serde_json::to_vec(&history()).unwrap()).unwrap();
        let body: Value =
            serde_json::from_slice(&build_count_tokens_request(&req, "gemini-3-flash")).unwrap();
        assert_eq!(body.as_object().unwrap().len(), 1);
        assert_eq!(body["request"].as_object().unwrap().keys().collect::<Vec<_>>(), ["contents", "model"]);
        assert_eq!(body["request"]["model"], "models/gemini-3-flash");
        let wrapped = json!({"generateContentRequest": {"model": "models/x", "contents": [{"role": "user", "parts": [{"text": "hi"}]}]}});
        let req = parse_generate_request(&mut serde_json::to_vec(&wrapped).unwrap()).unwrap();
        let body: Value = serde_json::from_slice(&build_count_tokens_request(&req, "m")).unwrap();
        assert_eq!(body["request"]["contents"][0]["parts"][0]["text"], "hi");
        assert_eq!(req.first_user_text(), Some("hi"));
        assert_eq!(parse_count_tokens_response(br#"{"totalTokens":17}"#).unwrap(), br#"{"totalTokens":17}"#);
        assert_eq!(
            parse_count_tokens_response(br#"{"response":{"totalTokens":3}}"#).unwrap(),
            br#"{"totalTokens":3}"#
        );
        assert_eq!(parse_count_tokens_response(b"{}"), None);
    }

    #[test]
    fn count_tokens_counts_system_instruction_and_tools_as_leading_text() {
        let with_extras = json!({"generateContentRequest": {
            "systemInstruction": {"parts": [{"text": "be brief"}]},
            "tools": [{"functionDeclarations": [{"name": "f"}]}],
            "contents": [{"role": "user", "parts": [{"text": "hi"}]}]}});
        let req = parse_generate_request(&mut serde_json::to_vec(&with_extras).unwrap()).unwrap();
        let body: Value = serde_json::from_slice(&build_count_tokens_request(&req, "m")).unwrap();
        let contents = body["request"]["contents"].as_array().unwrap();
        assert_eq!(contents.len(), 2);
        assert_eq!(contents[0]["parts"][0]["text"], "be brief");
        assert!(contents[0]["parts"][1]["text"].as_str().unwrap().contains("functionDeclarations"));
        assert_eq!(contents[1]["parts"][0]["text"], "hi");
        assert_eq!(body["request"].as_object().unwrap().keys().collect::<Vec<_>>(), ["contents", "model"]);
    }

    #[test]
    fn model_listings_have_the_gemini_shape() {
        let list: Value =
            serde_json::from_slice(&gemini_model_list(["gemini-3-flash", "claude-sonnet-4-6"])).unwrap();
        assert_eq!(
            list["models"][0],
            json!({"name": "models/gemini-3-flash", "displayName": "Gemini 3 Flash", "inputTokenLimit": 1_048_576,
                   "outputTokenLimit": 65_536, "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"]})
        );
        assert_eq!(list["models"][1]["inputTokenLimit"], 200_000);
        let one: Value = serde_json::from_slice(&gemini_model("models/claude-sonnet-4-6")).unwrap();
        assert_eq!(one["outputTokenLimit"], 64_000);
    }
}
