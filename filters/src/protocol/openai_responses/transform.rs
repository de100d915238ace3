//! A Responses request -> `v1internal` inner request.
//!
//! `instructions` and every `system`/`developer` message go to `systemInstruction`; `user` and `assistant`
//! messages become turns; `function_call` / `custom_tool_call` items become `functionCall` parts (a custom
//! call's freeform input as the one string argument `input`), their outputs `functionResponse` parts.
//!
//! A `web_search` tool becomes Google Search grounding: `googleSearch` as the only tool, `requestType`
//! `web_search` (the gateway sends it to a model that can ground). Beside function, custom or namespace tools
//! the search is dropped and those tools are declared as usual ([`crate::grounding::sends_google_search`]).
//! Its `search_context_size` and `user_location` have no upstream equivalent and are accepted unused;
//! `filters.allowed_domains` is applied to the answer's sources ([`ResponsesRequest::search_domains`]).
//!
//! A `reasoning` item restores the turn's signed thinking from its sealed `encrypted_content`
//! ([`super::seal`]), put back where PROTOCOL.md wants it: for Claude a leading `{thought, text,
//! thoughtSignature}` part at the start of the assistant turn (§2, §9 rule 3), never a signature on a call;
//! for Gemini the signature on the turn's first `functionCall` (§9 rule 1), or where Google had put it. A
//! signature is only restored to the family that issued it. Without a restorable one, the tool-call cache is
//! asked, and Gemini's first call of a turn falls back to the sentinel; Claude never gets one.

use std::borrow::Cow;
use std::collections::HashMap;

use super::request::{ContentPart, InputItem, ResponsesRequest, Role, Tool};
use super::seal::{ReasoningState, SealKeys, SignedOn};
use super::tools::{build_tool_config, build_tools, cached_tools, flat_tools, qualified};
use crate::grounding::GOOGLE_SEARCH_TOOLS;
use crate::inner::body::StrOr;
use crate::inner::client_json::{JsonObject, JsonObjectError};
use crate::inner::request::{
    encode_tools, ensure_user_first, guess_mime, push_part, FunctionCallOut, FunctionResponseOut,
    GenerationConfig, InnerJson, Part, ToolResponse, ToolResultValue, Turn,
};
use crate::inner::{InnerRequest, RequestType, Target, ToolCache, ToolNameMap, TransformError};
use crate::protocol::openai_chat::effort_budget;
use crate::schema::{clean_schema, SchemaOptions};
use crate::signature::{signature_fits, ModelFamily, SignatureLookup, SKIP_VALIDATOR_SENTINEL};

/// Builds the inner `request` for `target`; `keys` open replayed `reasoning` items.
pub fn build_inner_request(
    req: &ResponsesRequest,
    target: &Target,
    signatures: &dyn SignatureLookup,
    keys: &SealKeys,
) -> Result<InnerRequest, TransformError> {
    build(req, target, signatures, keys, None)
}

/// [`build_inner_request`], taking the encoded `tools` from `cache` when the same tools were built for the
/// same model family before (and storing them when not). The bytes are identical either way.
pub fn build_inner_request_cached(
    req: &ResponsesRequest,
    target: &Target,
    signatures: &dyn SignatureLookup,
    keys: &SealKeys,
    cache: &ToolCache,
) -> Result<InnerRequest, TransformError> {
    build(req, target, signatures, keys, Some(cache))
}

fn build(
    req: &ResponsesRequest,
    target: &Target,
    signatures: &dyn SignatureLookup,
    keys: &SealKeys,
    cache: Option<&ToolCache>,
) -> Result<InnerRequest, TransformError> {
    let family = ModelFamily::of(target.upstream_model);
    let declared: &[Tool] = req.tools.as_deref().unwrap_or_default();
    let declared_names: Vec<String> = flat_tools(declared)
        .into_iter()
        .filter_map(|(_, namespace, t)| t.name.map(|name| qualified(namespace, name)))
        .collect();
    let mut names = ToolNameMap::new(declared_names.iter().map(String::as_str));
    // Without a cache the encoding is used as built: turning it into an `Arc` would copy it.
    let (cached, built);
    let tools: &[u8] = match cache {
        Some(cache) if !declared.is_empty() => {
            cached = cached_tools(declared, family, &mut names, cache)?;
            &cached
        }
        _ => {
            built = encode_tools(&build_tools(declared, family, &mut names)?);
            &built
        }
    };
    let search = req.web_search();
    // Searching means no function tool was declared, so nothing was encoded above.
    let tools = if search { GOOGLE_SEARCH_TOOLS } else { tools };
    let tool_config = build_tool_config(req, family, !search && !tools.is_empty(), &names)?;
    let (contents, system_instruction) = build_contents(req, family, signatures, keys, &mut names)?;
    let inner = InnerJson {
        contents,
        system_instruction,
        tools,
        tool_config,
        generation_config: build_generation_config(req, family)?,
        session_id: target.session_id,
    };
    let request_type = RequestType::of(target.upstream_model, search);
    Ok(InnerRequest { json: inner.encode(req.body_len + 4096), tool_names: names, request_type })
}

/// A model turn's restored reasoning, applied once the turn is complete.
struct Pending {
    turn: usize,
    state: ReasoningState,
}

fn build_contents<'a>(
    req: &'a ResponsesRequest,
    family: ModelFamily,
    signatures: &dyn SignatureLookup,
    keys: &SealKeys,
    names: &mut ToolNameMap,
) -> Result<(Vec<Turn<'a>>, Option<Turn<'a>>), TransformError> {
    let mut contents: Vec<Turn<'a>> = Vec::new();
    let mut system: Vec<Part<'a>> = Vec::new();
    system.extend(req.instructions.and_then(Part::text));
    // call_id -> the client's (qualified) tool name, from the calls seen so far.
    let mut call_names: HashMap<&'a str, String> = HashMap::new();
    let mut restored: Vec<Pending> = Vec::new();

    if let Some(StrOr::Str(text)) = &req.input {
        contents.extend(Part::text(text).map(|p| Turn { role: "user", parts: vec![p] }));
    }
    for (i, item) in req.items().iter().enumerate() {
        let at = |field: &str| format!("input[{i}].{field}");
        let kind = item.kind.unwrap_or(if item.role.is_some() { "message" } else { "" });
        match kind {
            "message" => message(item, i, &mut contents, &mut system)?,
            "reasoning" => {
                let Some(blob) = item.encrypted_content.filter(|b| !b.is_empty()) else {
                    // A summary without sealed state proves nothing; Gemini may read it as a thought.
                    if family == ModelFamily::Gemini {
                        for part in item.summary.as_deref().unwrap_or_default() {
                            if let Some(text) = part.text.filter(|t| !t.trim().is_empty()) {
                                push_part(&mut contents, "model", Part::thought(text, None));
                            }
                        }
                    }
                    continue;
                };
                let state = keys.open(blob).map_err(|e| {
                    TransformError::invalid(at("encrypted_content"), format!("`encrypted_content` {e}."))
                })?;
                if contents.last().is_none_or(|t| t.role != "model") {
                    contents.push(Turn { role: "model", parts: Vec::new() });
                }
                restored.push(Pending { turn: contents.len() - 1, state });
            }
            "function_call" | "custom_tool_call" => {
                let call_id = required(item.call_id, || at("call_id"), "A tool call needs a `call_id`.")?;
                let name = required(item.name, || at("name"), "A tool call needs a `name`.")?;
                let args = if kind == "function_call" {
                    parse_arguments(item.arguments.unwrap_or_default())
                        .map_err(|m| TransformError::invalid(at("arguments"), m))?
                } else {
                    let input = item.input.unwrap_or_default();
                    JsonObject::Text(Cow::Owned(serde_json::json!({ "input": input }).to_string()))
                };
                let name = qualified(item.namespace.filter(|n| !n.is_empty()), name);
                let function_call =
                    FunctionCallOut { id: call_id, name: names.register(&name).to_owned(), args };
                call_names.insert(call_id, name);
                push_part(
                    &mut contents,
                    "model",
                    Part::FunctionCall { function_call, thought_signature: None },
                );
            }
            "function_call_output" | "custom_tool_call_output" => {
                let call_id =
                    required(item.call_id, || at("call_id"), "A tool call output needs a `call_id`.")?;
                let Some(name) = call_names.get(call_id) else {
                    return Err(TransformError::invalid(
                        at("call_id"),
                        format!("`call_id` {call_id:?} does not match any earlier tool call in `input`."),
                    ));
                };
                let output = output_text(item.output.as_ref(), i)?;
                let function_response = FunctionResponseOut {
                    id: call_id,
                    name: names.register(name).to_owned(),
                    response: ToolResponse::Result(ToolResultValue::from_text(output)),
                };
                push_part(&mut contents, "user", Part::FunctionResponse { function_response });
            }
            // A search the gateway ran upstream (Google Search grounding): its results are already in the
            // answer text that follows it, and Google takes no record of the search itself.
            "web_search_call" => {}
            "item_reference" => return Err(TransformError::unsupported(
                at("type"),
                "Item references need stored responses, which Levitate does not keep: send the item itself.",
            )),
            other => {
                return Err(TransformError::unsupported(
                    at("type"),
                    format!("Input items of type {other:?} are not supported."),
                ))
            }
        }
    }
    for pending in restored {
        if let Some(turn) = contents.get_mut(pending.turn) {
            restore(turn, pending.state, family);
        }
    }
    for turn in contents.iter_mut().filter(|t| t.role == "model") {
        sign_first_call(turn, family, signatures);
    }
    contents.retain(|t| !t.parts.is_empty());
    if contents.is_empty() {
        return Err(TransformError::invalid(
            "input",
            "`input` must contain a message or tool output with content.",
        ));
    }
    ensure_user_first(&mut contents);
    let system = (!system.is_empty()).then_some(Turn { role: "user", parts: system });
    Ok((contents, system))
}

fn required<'a>(
    value: Option<&'a str>,
    param: impl Fn() -> String,
    message: &str,
) -> Result<&'a str, TransformError> {
    value.filter(|v| !v.is_empty()).ok_or_else(|| TransformError::invalid(param(), message))
}

/// Puts a restored signature back where the upstream wants it in the finished model turn.
fn restore(turn: &mut Turn<'_>, state: ReasoningState, family: ModelFamily) {
    if state.family.model_family() != family {
        // Thinking of another family is worthless here and its signature would be rejected.
        return;
    }
    let ReasoningState { thought, signature, signed_on, .. } = state;
    let Some(signature) = signature else {
        if family == ModelFamily::Gemini && !thought.trim().is_empty() {
            turn.parts.insert(0, owned_thought(thought, None));
        }
        return;
    };
    let first_call = turn.parts.iter().position(|p| matches!(p, Part::FunctionCall { .. }));
    match (family, signed_on, first_call) {
        (ModelFamily::Gemini, SignedOn::Call | SignedOn::Text, Some(index)) => {
            if let Some(Part::FunctionCall { thought_signature, .. }) = turn.parts.get_mut(index) {
                *thought_signature = Some(signature);
            }
        }
        (ModelFamily::Gemini, SignedOn::Text, None) => {
            match turn.parts.iter_mut().find(|p| matches!(p, Part::Text { thought: false, .. })) {
                Some(Part::Text { thought_signature, .. }) => *thought_signature = Some(signature),
                _ => turn.parts.push(Part::Text {
                    text: Cow::Borrowed(""),
                    thought: false,
                    thought_signature: Some(signature),
                }),
            }
        }
        // Claude, and thought-signed Gemini turns: the signed thinking leads the turn.
        _ => turn.parts.insert(0, owned_thought(thought, Some(signature))),
    }
}

fn owned_thought<'a>(text: String, thought_signature: Option<String>) -> Part<'a> {
    Part::Text { text: Cow::Owned(text), thought: true, thought_signature }
}

/// Signs a model turn whose reasoning could not be restored from the tool-call cache, following §9: the
/// first call's cached signature if it fits the family (for Claude as a leading signed thought part, never on
/// the call), else the sentinel for Gemini, and nothing for Claude.
fn sign_first_call(turn: &mut Turn<'_>, family: ModelFamily, signatures: &dyn SignatureLookup) {
    let signed = turn.parts.iter().any(|p| match p {
        Part::Text { thought_signature, .. } | Part::FunctionCall { thought_signature, .. } => {
            thought_signature.is_some()
        }
        _ => false,
    });
    if signed {
        return;
    }
    let Some(index) = turn.parts.iter().position(|p| matches!(p, Part::FunctionCall { .. })) else {
        return;
    };
    let Some(Part::FunctionCall { function_call, thought_signature }) = turn.parts.get_mut(index) else {
        return;
    };
    let cached = signatures
        .signature_for_tool_call(function_call.id)
        .filter(|s| signature_fits(signatures, s, family));
    match (family, cached) {
        (ModelFamily::Claude, Some(signature)) => {
            turn.parts.insert(0, owned_thought(String::new(), Some(signature)))
        }
        (ModelFamily::Claude, None) => {}
        (ModelFamily::Gemini, None) => *thought_signature = Some(SKIP_VALIDATOR_SENTINEL.to_owned()),
        (_, cached) => *thought_signature = cached,
    }
}

fn message<'a>(
    item: &'a InputItem,
    i: usize,
    contents: &mut Vec<Turn<'a>>,
    system: &mut Vec<Part<'a>>,
) -> Result<(), TransformError> {
    let role = item
        .role
        .ok_or_else(|| TransformError::invalid(format!("input[{i}].role"), "A message needs a `role`."))?;
    let content = item.content.as_ref().ok_or_else(|| {
        TransformError::invalid(format!("input[{i}].content"), "A message needs `content`.")
    })?;
    let mut push = |part: Part<'a>| match role {
        Role::System | Role::Developer => system.push(part),
        Role::User => push_part(contents, "user", part),
        Role::Assistant => push_part(contents, "model", part),
    };
    match content {
        StrOr::Str(text) => push_text(text, &mut push),
        StrOr::Other(parts) => {
            for (j, part) in parts.iter().enumerate() {
                let at = |field: &str| format!("input[{i}].content[{j}].{field}");
                match (part.kind, role) {
                    ("input_text" | "output_text" | "text", _) => {
                        let text = part.text.ok_or_else(|| {
                            TransformError::invalid(at("text"), "A text part needs `text`.")
                        })?;
                        push_text(text, &mut push);
                    }
                    ("refusal", Role::Assistant) => push_text(part.refusal.unwrap_or_default(), &mut push),
                    ("input_image" | "input_file", Role::User) => {
                        push(media(part, &at)?);
                    }
                    (kind, _) => {
                        return Err(TransformError::unsupported(
                            at("type"),
                            format!(
                                "Content parts of type {kind:?} are not supported in a {role:?} message."
                            ),
                        ))
                    }
                }
            }
        }
    }
    Ok(())
}

fn push_text<'a>(text: &'a str, push: &mut impl FnMut(Part<'a>)) {
    if let Some(part) = Part::text(text) {
        push(part);
    }
}

/// `input_image` / `input_file`: a `data:` URL becomes `inlineData`, an http(s) image URL `fileData`;
/// uploaded file ids have nowhere to come from (there is no Files API upstream).
fn media<'a>(part: &'a ContentPart, at: &impl Fn(&str) -> String) -> Result<Part<'a>, TransformError> {
    if part.file_id.is_some() {
        return Err(TransformError::unsupported(
            at("file_id"),
            "Uploaded file ids are not supported by Levitate: send the file inline as a data URL.",
        ));
    }
    let (field, url) = match (part.image_url, part.file_data) {
        (Some(url), _) => ("image_url", url),
        (None, Some(data)) => ("file_data", data),
        (None, None) => {
            return Err(TransformError::invalid(
                at("image_url"),
                "An image or file part needs `image_url` or `file_data`.",
            ))
        }
    };
    if let Some(rest) = url.strip_prefix("data:") {
        let (mime, data) =
            rest.split_once(";base64,").filter(|(m, d)| !m.is_empty() && !d.is_empty()).ok_or_else(|| {
                TransformError::invalid(at(field), "Expected a `data:<mime>;base64,<data>` URL.")
            })?;
        return Ok(Part::inline(mime, data));
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(Part::file(guess_mime(url), url));
    }
    if field == "file_data" {
        // The SDK's bare base64 form, typed by its file name.
        let mime = part.filename.map_or("application/pdf", guess_mime);
        return Ok(Part::inline(mime, url));
    }
    Err(TransformError::invalid(at(field), "Expected an http(s) URL or a `data:<mime>;base64,<data>` URL."))
}

fn parse_arguments(text: &str) -> Result<JsonObject<'_>, String> {
    if text.trim().is_empty() {
        return Ok(JsonObject::Empty);
    }
    JsonObject::parse(Cow::Borrowed(text)).map_err(|e| match e {
        JsonObjectError::Syntax(e) => {
            format!("`arguments` must be a JSON-encoded object; it does not parse ({e}).")
        }
        JsonObjectError::NotAnObject => "`arguments` must encode a JSON object.".into(),
    })
}

/// A tool output's text: the string, or its text parts joined (images in outputs are not carried).
fn output_text<'a>(
    output: Option<&'a StrOr<Vec<ContentPart<'a>>, &'a str>>,
    i: usize,
) -> Result<Cow<'a, str>, TransformError> {
    Ok(match output {
        None => Cow::Borrowed(""),
        Some(StrOr::Str(text)) => Cow::Borrowed(text),
        Some(StrOr::Other(parts)) => {
            let mut texts = Vec::new();
            for (j, part) in parts.iter().enumerate() {
                match (part.kind, part.text) {
                    ("input_text" | "output_text" | "text", Some(text)) => texts.push(text),
                    (kind, _) => {
                        return Err(TransformError::unsupported(
                            format!("input[{i}].output[{j}].type"),
                            format!("Tool output parts of type {kind:?} are not supported; send text."),
                        ))
                    }
                }
            }
            Cow::Owned(texts.join("\n"))
        }
    })
}

fn build_generation_config(
    req: &ResponsesRequest,
    family: ModelFamily,
) -> Result<GenerationConfig, TransformError> {
    let mut config = GenerationConfig {
        temperature: req.temperature,
        top_p: req.top_p,
        max_output_tokens: req.max_output_tokens,
        ..GenerationConfig::default()
    };
    if let Some(format) = req.text.as_ref().and_then(|t| t.format.as_ref()) {
        match format.kind {
            "text" => {}
            "json_object" => config.response_mime_type = Some("application/json"),
            "json_schema" => {
                config.response_mime_type = Some("application/json");
                if let Some(schema) = &format.schema {
                    let cleaned = clean_schema(schema, &SchemaOptions::default())
                        .map_err(|source| TransformError::Schema { param: "text.format.schema".into(), source })?;
                    config.response_schema = Some(cleaned);
                }
            }
            other => {
                return Err(TransformError::invalid(
                    "text.format.type",
                    format!("Unknown text.format type {other:?}; expected \"text\", \"json_object\" or \"json_schema\"."),
                ))
            }
        }
    }
    if let Some(effort) = req.reasoning.as_ref().and_then(|r| r.effort) {
        config.set_thinking_budget(effort_budget(effort, "reasoning.effort")?, family);
    }
    Ok(config)
}
