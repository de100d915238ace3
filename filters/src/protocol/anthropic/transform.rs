//! Anthropic `POST /v1/messages` -> `v1internal` inner request (PROTOCOL.md §8).
//!
//! Claude Code and the Anthropic SDKs speak this protocol. [`build_inner_request`] maps the parsed request
//! ([`super::request`]) onto the same upstream shape the OpenAI transform writes ([`crate::inner::request`]).
//!
//! Mapping decisions beyond the table in PROTOCOL.md:
//! - Thinking blocks go to Claude only with a Claude-issued signature (the client's own, or the one captured
//!   for the same thinking text), and to Gemini with a Gemini signature when there is one; anything else is
//!   dropped, since Claude rejects a thought it did not sign (§9). `redacted_thinking` is a signature without
//!   text and follows the same rule.
//! - Replayed `tool_use` blocks carry their cached signature for Gemini targets; without one, the first call
//!   of each assistant message gets the sentinel. Claude calls carry no signature at all: Claude signs its
//!   thinking blocks only (PROTOCOL.md §2).
//! - Images inside a `tool_result` follow its `functionResponse` as `inlineData` parts of the same turn.
//! - Blocks that only server tools produce (`server_tool_use`, `web_search_tool_result`, …) are dropped from
//!   history: the upstream has no equivalent to replay them as.
//! - `web_search_20250305` (and any later `web_search_*`) becomes `googleSearch`; `max_uses`,
//!   `allowed_domains` and `blocked_domains` are accepted and not enforced (Google decides its queries). The
//!   upstream never mixes Google's tools with function declarations: beside custom tools the search is dropped
//!   ([`crate::grounding::sends_google_search`]). Other Anthropic server tools (bash, text editor, computer
//!   use) are a 400.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::request::{Block, Message, MessagesRequest, Role, Source, Tool};
use crate::inner::body::StrOr;
use crate::inner::client_json::JsonObject;
use crate::inner::request::{
    auto_mode, encode_tools, ensure_user_first, guess_mime, push_part, FunctionCallOut, FunctionDeclaration,
    FunctionResponseOut, GenerationConfig, InnerJson, Part, ToolConfig, ToolGroup, ToolResponse,
    ToolResultValue, Turn,
};
use crate::inner::{InnerRequest, RequestType, Target, ToolCache, ToolNameMap, TransformError};
use crate::json_tokens::JsonTokens;
use crate::signature::{
    normalize_signature, signature_fits, thinking_hash, ModelFamily, SignatureLookup, SKIP_VALIDATOR_SENTINEL,
};

/// The budget used for `thinking:{type:"adaptive"}` on Claude, which has no thinking level (§7's "high").
const ADAPTIVE_CLAUDE_BUDGET: i32 = 24_576;

/// Builds the inner `request` object for `target`, plus the tool-name map the response stream needs.
pub fn build_inner_request(
    req: &MessagesRequest,
    target: &Target,
    signatures: &dyn SignatureLookup,
) -> Result<InnerRequest, TransformError> {
    build(req, target, signatures, None)
}

/// [`build_inner_request`], taking the encoded `tools` from `cache` when the same tools were built for the
/// same model family before (and storing them when not): Claude Code resends identical tools on every
/// request. The bytes are identical either way.
pub fn build_inner_request_cached(
    req: &MessagesRequest,
    target: &Target,
    signatures: &dyn SignatureLookup,
    cache: &ToolCache,
) -> Result<InnerRequest, TransformError> {
    build(req, target, signatures, Some(cache))
}

fn build(
    req: &MessagesRequest,
    target: &Target,
    signatures: &dyn SignatureLookup,
    cache: Option<&ToolCache>,
) -> Result<InnerRequest, TransformError> {
    let family = ModelFamily::of(target.upstream_model);
    let declared = req.tools.as_deref().unwrap_or_default();
    let mut names = ToolNameMap::new(declared.iter().filter(|t| t.is_custom()).map(|t| t.name.as_str()));
    let tools: Arc<[u8]> = match cache {
        Some(cache) if !declared.is_empty() => cached_tools(declared, family, &mut names, cache)?,
        _ => encode_tools(&build_tools(declared, family, &mut names)?).into(),
    };
    // A successful build turns every custom tool into a declaration and web search into `googleSearch`,
    // so both facts follow from the declared tools, cached or not.
    let has_functions = declared.iter().any(Tool::is_custom);
    let request_type = RequestType::of(target.upstream_model, req.web_search());
    let tool_config = build_tool_config(req, family, has_functions, &names)?;
    let contents = build_contents(req.messages(), family, signatures, &mut names)?;
    let inner = InnerJson {
        contents,
        system_instruction: build_system(req),
        tools: &tools,
        tool_config,
        generation_config: build_generation_config(req, family)?.for_request_type(request_type),
        session_id: target.session_id,
    };
    Ok(InnerRequest { json: inner.encode(estimated_size(req)), tool_names: names, request_type })
}

/// What of a [`Tool`] the [`ToolCache`] digest covers; the schema as tokens, which hash byte for byte.
#[derive(Hash)]
struct ToolKey<'a> {
    kind: Option<&'a str>,
    name: &'a str,
    description: Option<&'a str>,
    schema: Option<JsonTokens>,
}

impl<'a> ToolKey<'a> {
    fn new(tool: &'a Tool) -> Self {
        ToolKey {
            kind: tool.kind.as_deref(),
            name: &tool.name,
            description: tool.description.as_deref(),
            schema: tool.input_schema.as_ref().map(JsonTokens::from_value),
        }
    }
}

/// The encoded `tools` for `declared`, from `cache` or built and stored there (only successful builds are
/// stored, so a hit stands for the validation a fresh build would have passed).
fn cached_tools(
    declared: &[Tool],
    family: ModelFamily,
    names: &mut ToolNameMap,
    cache: &ToolCache,
) -> Result<Arc<[u8]>, TransformError> {
    let keys: Vec<ToolKey> = declared.iter().map(ToolKey::new).collect();
    let digest = cache.digest(&(family, &keys));
    cache.get_or_build(digest, || Ok(encode_tools(&build_tools(declared, family, names)?)))
}

fn estimated_size(req: &MessagesRequest) -> usize {
    let text: usize = req
        .messages()
        .iter()
        .map(|m| match &m.content {
            StrOr::Str(s) => s.len(),
            StrOr::Other(blocks) => blocks.len() * 256,
        })
        .sum();
    text + 4096
}

fn build_system(req: &MessagesRequest) -> Option<Turn<'_>> {
    let parts: Vec<Part<'_>> = match req.system.as_ref()? {
        StrOr::Str(text) => Part::text(text).into_iter().collect(),
        StrOr::Other(blocks) => blocks.iter().filter_map(|b| Part::text(&b.text)).collect(),
    };
    (!parts.is_empty()).then_some(Turn { role: "user", parts })
}

/// The signature a replayed thinking block may carry to `family`, if any: the client's own when it fits,
/// else the one captured for the same thinking text.
fn thinking_signature(
    thinking: &str,
    signature: &str,
    family: ModelFamily,
    signatures: &dyn SignatureLookup,
) -> Option<String> {
    let fits =
        |s: &str| !s.is_empty() && signature_fits(signatures, s, family) && family != ModelFamily::Other;
    if fits(signature) {
        return Some(normalize_signature(signature).into_owned());
    }
    if thinking.is_empty() {
        return None;
    }
    signatures.signature_for_text(&thinking_hash(thinking)).filter(|s| fits(s))
}

fn build_contents<'a>(
    messages: &'a [Message],
    family: ModelFamily,
    signatures: &dyn SignatureLookup,
    names: &mut ToolNameMap,
) -> Result<Vec<Turn<'a>>, TransformError> {
    let mut contents: Vec<Turn<'a>> = Vec::with_capacity(messages.len());
    // tool_use id -> client tool name, from the assistant messages seen so far.
    let mut call_names: HashMap<&'a str, &'a str> = HashMap::new();

    for (i, message) in messages.iter().enumerate() {
        let role = match message.role {
            Role::User => "user",
            Role::Assistant => "model",
        };
        let blocks = match &message.content {
            StrOr::Str(text) => {
                if let Some(part) = Part::text(text) {
                    push_part(&mut contents, role, part);
                }
                continue;
            }
            StrOr::Other(blocks) => blocks,
        };
        let mut calls_in_message = 0usize;
        for (j, block) in blocks.iter().enumerate() {
            let at = |field: &str| format!("messages[{i}].content[{j}].{field}");
            match block {
                Block::Text { text } => {
                    if let Some(part) = Part::text(text) {
                        push_part(&mut contents, role, part);
                    }
                }
                Block::Image { source } | Block::Document { source } => {
                    if let Some(part) = media_part(source, at)? {
                        push_part(&mut contents, role, part);
                    }
                }
                Block::Thinking { thinking, signature } if message.role == Role::Assistant => {
                    let signature = thinking_signature(thinking, signature, family, signatures);
                    match (family, signature) {
                        (_, Some(signature)) => {
                            push_part(&mut contents, role, Part::thought(thinking, Some(signature)));
                        }
                        (ModelFamily::Gemini, None) if !thinking.trim().is_empty() => {
                            push_part(&mut contents, role, Part::thought(thinking, None));
                        }
                        _ => {}
                    }
                }
                Block::RedactedThinking { data } if message.role == Role::Assistant => {
                    if family == ModelFamily::Claude && signature_fits(signatures, data, family) {
                        push_part(
                            &mut contents,
                            role,
                            Part::thought("", Some(normalize_signature(data).into_owned())),
                        );
                    }
                }
                Block::Thinking { .. } | Block::RedactedThinking { .. } => {}
                Block::ToolUse { id, name, input } => {
                    if message.role != Role::Assistant {
                        return Err(TransformError::invalid(
                            at("type"),
                            "`tool_use` blocks may only appear in assistant messages.",
                        ));
                    }
                    if id.is_empty() {
                        return Err(TransformError::invalid(at("id"), "A tool_use block needs an `id`."));
                    }
                    if name.is_empty() {
                        return Err(TransformError::invalid(at("name"), "A tool_use block needs a `name`."));
                    }
                    let args = match input {
                        Value::Object(_) => JsonObject::Value(input),
                        Value::Null => JsonObject::Empty,
                        _ => {
                            return Err(TransformError::invalid(
                                at("input"),
                                "The `input` of a tool_use block must be an object.",
                            ))
                        }
                    };
                    let first = calls_in_message == 0;
                    calls_in_message += 1;
                    let thought_signature = call_signature(id, first, family, signatures);
                    call_names.insert(id, name);
                    let function_call = FunctionCallOut { id, name: names.register(name).to_owned(), args };
                    push_part(&mut contents, role, Part::FunctionCall { function_call, thought_signature });
                }
                Block::ToolResult { tool_use_id, content, is_error } => {
                    if message.role != Role::User {
                        return Err(TransformError::invalid(
                            at("type"),
                            "`tool_result` blocks may only appear in user messages.",
                        ));
                    }
                    let Some(client_name) = call_names.get(tool_use_id.as_str()) else {
                        return Err(TransformError::invalid(
                            at("tool_use_id"),
                            format!(
                                "`tool_use_id` {tool_use_id:?} does not match any earlier tool_use block."
                            ),
                        ));
                    };
                    let (text, media) = tool_result_content(content.as_ref(), &at)?;
                    let result = ToolResultValue::from_text(text);
                    let function_response = FunctionResponseOut {
                        id: tool_use_id,
                        name: names.register(client_name).to_owned(),
                        response: if *is_error {
                            ToolResponse::Error(result)
                        } else {
                            ToolResponse::Result(result)
                        },
                    };
                    push_part(&mut contents, role, Part::FunctionResponse { function_response });
                    for part in media {
                        push_part(&mut contents, role, part);
                    }
                }
                Block::Other => {}
            }
        }
    }

    if contents.is_empty() {
        return Err(TransformError::invalid("messages", "`messages` must contain some content."));
    }
    ensure_user_first(&mut contents);
    Ok(contents)
}

/// The signature a replayed `tool_use` carries (PROTOCOL.md §9): the cached one when it fits the target's
/// family; else, for Gemini, the sentinel on the first call of the message. Claude calls carry nothing: Claude
/// signs thought parts only (PROTOCOL.md §2), and a signature on a call is its 400.
fn call_signature(
    id: &str,
    first_in_message: bool,
    family: ModelFamily,
    signatures: &dyn SignatureLookup,
) -> Option<String> {
    if family == ModelFamily::Claude {
        return None;
    }
    let cached = signatures
        .signature_for_tool_call(id)
        .filter(|s| family != ModelFamily::Other && signature_fits(signatures, s, family))
        .map(|s| normalize_signature(&s).into_owned());
    cached.or_else(|| {
        (family == ModelFamily::Gemini && first_in_message).then(|| SKIP_VALIDATOR_SENTINEL.to_owned())
    })
}

/// An image or document block: base64 → `inlineData`, URL → `fileData`, plain-text document → text.
fn media_part<'a>(
    source: &'a Source,
    at: impl Fn(&str) -> String,
) -> Result<Option<Part<'a>>, TransformError> {
    match source.kind.as_str() {
        "base64" => {
            let (Some(mime_type), Some(data)) = (source.media_type.as_deref(), source.data.as_deref()) else {
                return Err(TransformError::invalid(
                    at("source"),
                    "A base64 source needs `media_type` and `data`.",
                ));
            };
            Ok(Some(Part::inline(mime_type, data)))
        }
        "url" => {
            let url = source
                .url
                .as_deref()
                .ok_or_else(|| TransformError::invalid(at("source.url"), "A url source needs `url`."))?;
            let mime_type = source.media_type.as_deref().unwrap_or_else(|| guess_mime(url));
            Ok(Some(Part::file(mime_type, url)))
        }
        "text" => Ok(source.data.as_deref().and_then(Part::text)),
        other => Err(TransformError::unsupported(
            at("source.type"),
            format!("Sources of type {other:?} are not supported; send base64 data, a url or text."),
        )),
    }
}

/// A tool_result's content: its text (blocks joined with newlines) and any images, which follow the
/// `functionResponse` as parts of their own.
fn tool_result_content<'a>(
    content: Option<&'a StrOr<Vec<Block>>>,
    at: &impl Fn(&str) -> String,
) -> Result<(Cow<'a, str>, Vec<Part<'a>>), TransformError> {
    let blocks = match content {
        None => return Ok((Cow::Borrowed(""), Vec::new())),
        Some(StrOr::Str(text)) => return Ok((Cow::Borrowed(text), Vec::new())),
        Some(StrOr::Other(blocks)) => blocks,
    };
    let mut texts: Vec<&str> = Vec::new();
    let mut media = Vec::new();
    for (k, block) in blocks.iter().enumerate() {
        match block {
            Block::Text { text } => texts.push(text),
            Block::Image { source } | Block::Document { source } => {
                media.extend(media_part(source, |f| at(&format!("content[{k}].{f}")))?);
            }
            _ => {
                return Err(TransformError::invalid(
                    at(&format!("content[{k}].type")),
                    "A tool_result may only contain text, image and document blocks.",
                ))
            }
        }
    }
    let text = match texts.as_slice() {
        [] => Cow::Borrowed(""),
        [one] => Cow::Borrowed(*one),
        many => Cow::Owned(many.join("\n")),
    };
    Ok((text, media))
}

fn build_tools<'a>(
    tools: &'a [Tool],
    family: ModelFamily,
    names: &mut ToolNameMap,
) -> Result<Vec<ToolGroup<'a>>, TransformError> {
    let mut group = ToolGroup::default();
    let mut seen = std::collections::HashSet::new();
    let mut web_search = false;
    for (i, tool) in tools.iter().enumerate() {
        if !tool.is_custom() {
            match tool.kind.as_deref().unwrap_or_default() {
                _ if tool.is_web_search() => {
                    web_search = true;
                    continue;
                }
                kind => {
                    return Err(TransformError::unsupported(
                        format!("tools[{i}].type"),
                        format!(
                        "Server tools of type {kind:?} are not supported by Levitate; define a custom tool."
                    ),
                    ))
                }
            }
        }
        if tool.name.is_empty() {
            return Err(TransformError::invalid(format!("tools[{i}].name"), "A tool needs a `name`."));
        }
        if !seen.insert(tool.name.as_str()) {
            return Err(TransformError::invalid(
                format!("tools[{i}].name"),
                format!("Tool name {:?} is declared twice.", tool.name),
            ));
        }
        let param = || format!("tools[{i}].input_schema");
        let schema = match &tool.input_schema {
            Some(schema @ Value::Object(_)) => Some(JsonTokens::from_value(schema)),
            None | Some(Value::Null) => None,
            Some(_) => {
                return Err(TransformError::invalid(param(), "`input_schema` must be a JSON Schema object."))
            }
        };
        group.function_declarations.push(FunctionDeclaration::new(
            &tool.name,
            tool.description.as_deref(),
            schema.as_ref().map(JsonTokens::view),
            family,
            names,
            param,
        )?);
    }
    group.google_search =
        crate::grounding::sends_google_search(web_search, !group.function_declarations.is_empty());
    let empty = group.function_declarations.is_empty() && !group.google_search;
    Ok(if empty { Vec::new() } else { vec![group] })
}

fn build_tool_config(
    req: &MessagesRequest,
    family: ModelFamily,
    has_functions: bool,
    names: &ToolNameMap,
) -> Result<Option<ToolConfig>, TransformError> {
    if !has_functions {
        return Ok(None);
    }
    let auto = auto_mode(family);
    let Some(choice) = &req.tool_choice else {
        return Ok((family == ModelFamily::Claude).then(|| ToolConfig::new(auto, None)));
    };
    let config = match choice.kind.as_str() {
        "auto" => ToolConfig::new(auto, None),
        "any" => ToolConfig::new("ANY", None),
        "none" => ToolConfig::new("NONE", None),
        "tool" => {
            let name = choice.name.as_deref().unwrap_or_default();
            let declared =
                req.tools.as_deref().unwrap_or_default().iter().any(|t| t.is_custom() && t.name == name);
            if !declared {
                return Err(TransformError::invalid(
                    "tool_choice.name",
                    format!("`tool_choice` names {name:?}, which is not in `tools`."),
                ));
            }
            ToolConfig::new("ANY", Some(vec![names.upstream_name(name).to_owned()]))
        }
        other => {
            return Err(TransformError::invalid(
                "tool_choice.type",
                format!(
                    "Unknown tool_choice type {other:?}; expected \"auto\", \"any\", \"none\" or \"tool\"."
                ),
            ))
        }
    };
    Ok(Some(config))
}

fn build_generation_config(
    req: &MessagesRequest,
    family: ModelFamily,
) -> Result<GenerationConfig, TransformError> {
    let mut config = GenerationConfig {
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k,
        max_output_tokens: req.max_tokens,
        stop_sequences: req.stop_sequences.iter().flatten().filter(|s| !s.is_empty()).cloned().collect(),
        ..GenerationConfig::default()
    };
    if let Some(thinking) = &req.thinking {
        match thinking.kind.as_str() {
            "enabled" => {
                let budget = thinking.budget_tokens.ok_or_else(|| {
                    TransformError::invalid(
                        "thinking.budget_tokens",
                        "thinking.budget_tokens: Field required",
                    )
                })?;
                config.set_thinking_budget(i32::try_from(budget).unwrap_or(i32::MAX), family);
            }
            "adaptive" if family == ModelFamily::Claude => {
                config.set_thinking_budget(ADAPTIVE_CLAUDE_BUDGET, family)
            }
            "adaptive" => config.set_thinking_level("high"),
            "disabled" => {}
            other => {
                return Err(TransformError::invalid(
                    "thinking.type",
                    format!(
                    "Unknown thinking type {other:?}; expected \"enabled\", \"disabled\" or \"adaptive\"."
                ),
                ))
            }
        }
    }
    Ok(config)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::inner::with_fields as with;
    use crate::protocol::anthropic::parse_messages_request;
    use crate::signature::{CapturedSignature, NoSignatures};
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine;
    use serde_json::json;

    struct Cached(HashMap<String, String>);

    impl SignatureLookup for Cached {
        fn signature_for_tool_call(&self, key: &str) -> Option<String> {
            self.0.get(key).cloned()
        }
    }

    fn cache(entries: &[CapturedSignature]) -> Cached {
        Cached(entries.iter().map(|c| (c.tool_call_id.clone(), c.signature.clone())).collect())
    }

    pub(crate) fn gemini_sig() -> String {
        let mut raw = vec![0x12u8, 48];
        raw.extend((0..48u8).map(|i| i.wrapping_mul(29)));
        STANDARD.encode(raw)
    }

    pub(crate) fn claude_sig() -> String {
        STANDARD.encode(gemini_sig().as_bytes())
    }

    fn parse(body: Value) -> Result<MessagesRequest, TransformError> {
        parse_messages_request(&mut serde_json::to_vec(&body).unwrap())
    }

    fn build_with(
        model: &str,
        body: Value,
        sigs: &dyn SignatureLookup,
    ) -> Result<(Value, ToolNameMap), TransformError> {
        let req = parse(body)?;
        let inner = build_inner_request(&req, &Target { upstream_model: model, session_id: "-7" }, sigs)?;
        Ok((serde_json::from_slice(&inner.json).unwrap(), inner.tool_names))
    }

    fn build_for(model: &str, body: Value) -> Value {
        build_with(model, body, &NoSignatures).unwrap().0
    }

    fn msgs(messages: Value) -> Value {
        json!({"model": "claude-sonnet-4-5", "max_tokens": 1024, "messages": messages})
    }

    fn err(body: Value) -> TransformError {
        match parse(body) {
            Err(e) => e,
            Ok(req) => build_inner_request(
                &req,
                &Target { upstream_model: "gemini-3-flash", session_id: "s" },
                &NoSignatures,
            )
            .expect_err("expected an error"),
        }
    }

    #[test]
    fn system_text_and_roles_map_to_turns_with_cache_control_stripped() {
        let body = with(
            msgs(json!([
                {"role": "user", "content": "Hi"},
                {"role": "user", "content": [{"type": "text", "text": "there", "cache_control": {"type": "ephemeral"}}, {"type": "text", "text": ""}]},
                {"role": "assistant", "content": [{"type": "text", "text": "Hello!"}]},
                {"role": "user", "content": "Weather?"},
            ])),
            json!({"system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}, {"type": "text", "text": "Metric."}],
                   "context_management": {"edits": []}}),
        );
        assert_eq!(
            build_for("gemini-3-flash", body),
            json!({
                "systemInstruction": {"role": "user", "parts": [{"text": "Be brief."}, {"text": "Metric."}]},
                "contents": [
                    {"role": "user", "parts": [{"text": "Hi"}, {"text": "there"}]},
                    {"role": "model", "parts": [{"text": "Hello!"}]},
                    {"role": "user", "parts": [{"text": "Weather?"}]},
                ],
                "generationConfig": {"maxOutputTokens": 1024},
                "sessionId": "-7",
            })
        );
        let got = build_for(
            "gemini-3-flash",
            with(msgs(json!([{"role": "user", "content": "x"}])), json!({"system": "S"})),
        );
        assert_eq!(got["systemInstruction"], json!({"role": "user", "parts": [{"text": "S"}]}));
    }

    #[test]
    fn a_conversation_starting_with_the_assistant_gets_a_user_turn_first() {
        let got = build_for(
            "gemini-3-flash",
            msgs(json!([{"role": "assistant", "content": "I start."}, {"role": "user", "content": "ok"}])),
        );
        assert_eq!(got["contents"][0], json!({"role": "user", "parts": [{"text": "."}]}));
    }

    #[test]
    fn images_and_documents_map_to_inline_or_file_data() {
        let got = build_for(
            "gemini-3-flash",
            msgs(json!([{"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.webp"}},
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"}},
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain doc"}},
            ]}])),
        );
        assert_eq!(
            got["contents"][0]["parts"],
            json!([
                {"inlineData": {"mimeType": "image/png", "data": "iVBORw0K"}},
                {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/cat.webp"}},
                {"inlineData": {"mimeType": "application/pdf", "data": "JVBER"}},
                {"text": "plain doc"},
            ])
        );
    }

    fn tool_turns() -> Value {
        msgs(json!([
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "mcp.weather:get", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "mcp.weather:get", "input": {"city": "Rome"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "{\"temp\": 21}"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": true,
                 "content": [{"type": "text", "text": "timeout"}, {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]},
            ]},
        ]))
    }

    #[test]
    fn tool_use_and_results_map_to_function_call_and_response() {
        let (got, names) = build_with("gemini-3-flash", with(tool_turns(), json!({"tools": [
            {"name": "mcp.weather:get", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]})), &NoSignatures).unwrap();
        assert_eq!(
            got["contents"][1]["parts"],
            json!([
                {"text": "Checking."},
                {"functionCall": {"id": "toolu_1", "name": "mcp_weather_get", "args": {"city": "Paris"}},
                 "thoughtSignature": SKIP_VALIDATOR_SENTINEL},
                {"functionCall": {"id": "toolu_2", "name": "mcp_weather_get", "args": {"city": "Rome"}}},
            ])
        );
        assert_eq!(
            got["contents"][2]["parts"],
            json!([
                {"functionResponse": {"id": "toolu_1", "name": "mcp_weather_get", "response": {"result": {"temp": 21}}}},
                {"functionResponse": {"id": "toolu_2", "name": "mcp_weather_get", "response": {"error": "timeout"}}},
                {"inlineData": {"mimeType": "image/png", "data": "AAAA"}},
            ])
        );
        assert_eq!(names.client_name("mcp_weather_get"), "mcp.weather:get");
    }

    #[test]
    fn claude_never_gets_a_sentinel_or_a_foreign_signature() {
        let sigs = cache(&[CapturedSignature::tool_call("toolu_1", &gemini_sig())]);
        let (got, _) = build_with("claude-sonnet-4-6", tool_turns(), &sigs).unwrap();
        let text = got.to_string();
        assert!(!text.contains("thoughtSignature"), "{text}");
        let sigs = cache(&[CapturedSignature::tool_call("toolu_1", &claude_sig())]);
        let (got, _) = build_with("claude-sonnet-4-6", tool_turns(), &sigs).unwrap();
        assert!(got["contents"][1]["parts"][1]["functionCall"].is_object());
        assert!(!got.to_string().contains("thoughtSignature"), "Claude never gets a signature on a call");
        // ...and a Claude signature never goes to Gemini: the sentinel takes its place.
        let (got, _) = build_with("gemini-3-flash", tool_turns(), &sigs).unwrap();
        assert_eq!(got["contents"][1]["parts"][1]["thoughtSignature"], SKIP_VALIDATOR_SENTINEL);
    }

    #[test]
    fn cached_gemini_signatures_are_replayed_normalized() {
        let url_safe = URL_SAFE_NO_PAD.encode(STANDARD.decode(gemini_sig()).unwrap());
        let sigs = cache(&[CapturedSignature::tool_call("toolu_1", &url_safe)]);
        let (got, _) = build_with("gemini-3-flash", tool_turns(), &sigs).unwrap();
        assert_eq!(got["contents"][1]["parts"][1]["thoughtSignature"], gemini_sig());
    }

    fn thinking_turns(signature: &str) -> Value {
        msgs(json!([
            {"role": "user", "content": "Plan it."},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Let me plan.", "signature": signature},
                {"type": "redacted_thinking", "data": signature},
                {"type": "tool_use", "id": "toolu_9", "name": "plan", "input": {}},
            ]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "done"}]},
        ]))
    }

    #[test]
    fn claude_thinking_is_kept_only_with_a_claude_signature() {
        let sigs = cache(&[CapturedSignature::tool_call("toolu_9", &claude_sig())]);
        let got = build_with("claude-opus-4-6-thinking", thinking_turns(&claude_sig()), &sigs).unwrap().0;
        assert_eq!(
            got["contents"][1]["parts"],
            json!([
                {"text": "Let me plan.", "thought": true, "thoughtSignature": claude_sig()},
                {"text": "", "thought": true, "thoughtSignature": claude_sig()},
                {"functionCall": {"id": "toolu_9", "name": "plan", "args": {}}},
            ]),
            "a signed thinking block makes the call's signature unnecessary"
        );
        for foreign in [gemini_sig(), SKIP_VALIDATOR_SENTINEL.to_owned(), "short".to_owned(), String::new()] {
            let got = build_for("claude-opus-4-6-thinking", thinking_turns(&foreign));
            assert_eq!(
                got["contents"][1]["parts"],
                json!([{"functionCall": {"id": "toolu_9", "name": "plan", "args": {}}}]),
                "{foreign}"
            );
        }
    }

    #[test]
    fn a_thinking_signature_dropped_by_the_client_is_found_by_its_text() {
        let sigs = cache(&[CapturedSignature::thinking("Let me plan.", &claude_sig())]);
        let got = build_with("claude-opus-4-6-thinking", thinking_turns(""), &sigs).unwrap().0;
        assert_eq!(got["contents"][1]["parts"][0]["thoughtSignature"], claude_sig());
    }

    #[test]
    fn gemini_gets_thoughts_with_gemini_signatures_only() {
        let got = build_for("gemini-3-flash", thinking_turns(&claude_sig()));
        assert_eq!(
            got["contents"][1]["parts"],
            json!([
                {"text": "Let me plan.", "thought": true},
                {"functionCall": {"id": "toolu_9", "name": "plan", "args": {}}, "thoughtSignature": SKIP_VALIDATOR_SENTINEL},
            ])
        );
        let got = build_for("gemini-3-flash", thinking_turns(&gemini_sig()));
        assert_eq!(got["contents"][1]["parts"][0]["thoughtSignature"], gemini_sig());
    }

    fn tools() -> Value {
        json!([
            {"name": "get_weather", "description": "Weather now", "cache_control": {"type": "ephemeral"},
             "input_schema": {"type": "object", "properties": {"city": {"type": "string", "minLength": 1}},
                              "required": ["city"], "additionalProperties": false, "$schema": "x"}},
            {"name": "noop", "input_schema": {"type": "object"}},
        ])
    }

    #[test]
    fn tools_become_cleaned_declarations_and_tool_choice_maps() {
        let body = with(msgs(json!([{"role": "user", "content": "x"}])), json!({"tools": tools()}));
        let got = build_for("gemini-3-flash", body.clone());
        assert_eq!(
            got["tools"],
            json!([{"functionDeclarations": [
                {"name": "get_weather", "description": "Weather now", "parameters": {"type": "object",
                    "properties": {"city": {"type": "string", "description": "(minLength: 1)"}}, "required": ["city"]}},
                {"name": "noop", "parameters": {"type": "object"}},
            ]}])
        );
        assert!(got.get("toolConfig").is_none());
        let claude = build_for("claude-sonnet-4-6", body);
        assert_eq!(
            claude["tools"][0]["functionDeclarations"][1]["parameters"]["required"],
            json!(["reason"])
        );
        assert_eq!(claude["toolConfig"], json!({"functionCallingConfig": {"mode": "VALIDATED"}}));
        let cases = [
            ("gemini-3-flash", json!({"type": "auto"}), json!({"mode": "AUTO"})),
            ("claude-sonnet-4-6", json!({"type": "auto"}), json!({"mode": "VALIDATED"})),
            ("gemini-3-flash", json!({"type": "any"}), json!({"mode": "ANY"})),
            ("gemini-3-flash", json!({"type": "none"}), json!({"mode": "NONE"})),
            (
                "claude-sonnet-4-6",
                json!({"type": "tool", "name": "noop"}),
                json!({"mode": "ANY", "allowedFunctionNames": ["noop"]}),
            ),
        ];
        for (model, choice, want) in cases {
            let body = with(
                msgs(json!([{"role": "user", "content": "x"}])),
                json!({"tools": tools(), "tool_choice": choice}),
            );
            assert_eq!(build_for(model, body)["toolConfig"]["functionCallingConfig"], want, "{choice}");
        }
        let bad = err(with(
            msgs(json!([{"role": "user", "content": "x"}])),
            json!({"tools": tools(), "tool_choice": {"type": "tool", "name": "nope"}}),
        ));
        assert_eq!(bad.param(), Some("tool_choice.name"));
    }

    #[test]
    fn cached_tools_give_the_same_bytes_and_other_tools_miss() {
        let cache = ToolCache::new(8);
        let body = with(msgs(json!([{"role": "user", "content": "x"}])), json!({"tools": tools()}));
        let req = parse(body).unwrap();
        for model in ["gemini-3-flash", "claude-sonnet-4-6", "gemini-3-flash"] {
            let target = Target { upstream_model: model, session_id: "-7" };
            let fresh = build_inner_request(&req, &target, &NoSignatures).unwrap();
            let cached = build_inner_request_cached(&req, &target, &NoSignatures, &cache).unwrap();
            let again = build_inner_request_cached(&req, &target, &NoSignatures, &cache).unwrap();
            assert_eq!(fresh.json, cached.json, "{model}");
            assert_eq!(fresh.json, again.json, "{model}");
            assert_eq!(fresh.tool_names, again.tool_names, "{model}");
        }
        assert_eq!(cache.len(), 2, "one entry per model family");
        let mut other_tools = tools();
        other_tools[0]["description"] = json!("Weather later");
        let other =
            parse(with(msgs(json!([{"role": "user", "content": "x"}])), json!({"tools": other_tools})))
                .unwrap();
        let target = Target { upstream_model: "gemini-3-flash", session_id: "-7" };
        let got = build_inner_request_cached(&other, &target, &NoSignatures, &cache).unwrap();
        assert_eq!(got.json, build_inner_request(&other, &target, &NoSignatures).unwrap().json);
        assert_eq!(cache.len(), 3, "different tools are a miss");
        let search = parse(with(
            msgs(json!([{"role": "user", "content": "news?"}])),
            json!({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
        ))
        .unwrap();
        let first = build_inner_request_cached(&search, &target, &NoSignatures, &cache).unwrap();
        let hit = build_inner_request_cached(&search, &target, &NoSignatures, &cache).unwrap();
        assert_eq!((first.request_type, hit.request_type), (RequestType::WebSearch, RequestType::WebSearch));
        assert_eq!(first.json, hit.json);
    }

    #[test]
    fn web_search_becomes_google_search_and_other_server_tools_are_rejected() {
        let body = with(
            msgs(json!([{"role": "user", "content": "news?"}])),
            json!({"tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]}),
        );
        let req = parse(body.clone()).unwrap();
        let target = Target { upstream_model: "gemini-3-flash", session_id: "-7" };
        let inner = build_inner_request(&req, &target, &NoSignatures).unwrap();
        assert_eq!(inner.request_type, RequestType::WebSearch, "the envelope says what the request is");
        let got = build_for("gemini-3-flash", body);
        assert_eq!(got["tools"], json!([{"googleSearch": {}}]));
        assert!(got.get("toolConfig").is_none());
        let plain = parse(msgs(json!([{"role": "user", "content": "hi"}]))).unwrap();
        assert_eq!(
            build_inner_request(&plain, &target, &NoSignatures).unwrap().request_type,
            RequestType::Agent
        );
        let e = err(with(
            msgs(json!([{"role": "user", "content": "x"}])),
            json!({"tools": [{"type": "bash_20250124", "name": "bash"}]}),
        ));
        assert!(matches!(e, TransformError::Unsupported { .. }));
        assert_eq!(e.param(), Some("tools[0].type"));
        let mut mixed = tools();
        mixed.as_array_mut().unwrap().push(json!({"type": "web_search_20260209", "name": "web_search"}));
        let body = with(msgs(json!([{"role": "user", "content": "x"}])), json!({"tools": mixed}));
        let got = build_for("gemini-3-flash", body.clone());
        assert_eq!(got["tools"].as_array().map(Vec::len), Some(1));
        assert!(got["tools"][0].get("googleSearch").is_none(), "beside custom tools the search is dropped");
        assert!(!parse(body).unwrap().web_search());
        assert!(req.web_search());
    }

    #[test]
    fn generation_config_and_thinking_map() {
        let body = with(
            msgs(json!([{"role": "user", "content": "x"}])),
            json!({"temperature": 0.5, "top_p": 0.9, "top_k": 40, "stop_sequences": ["END", ""],
                   "thinking": {"type": "enabled", "budget_tokens": 8000}}),
        );
        assert_eq!(
            build_for("gemini-3-flash", body)["generationConfig"],
            json!({"temperature": 0.5, "topP": 0.9, "topK": 40, "maxOutputTokens": 9024, "stopSequences": ["END"],
                   "thinkingConfig": {"includeThoughts": true, "thinkingBudget": 8000}})
        );
        let adaptive =
            with(msgs(json!([{"role": "user", "content": "x"}])), json!({"thinking": {"type": "adaptive"}}));
        assert_eq!(
            build_for("gemini-3-flash", adaptive.clone())["generationConfig"]["thinkingConfig"],
            json!({"includeThoughts": true, "thinkingLevel": "high"})
        );
        assert_eq!(
            build_for("claude-opus-4-6-thinking", adaptive)["generationConfig"],
            json!({"maxOutputTokens": 25600, "thinkingConfig": {"includeThoughts": true, "thinkingBudget": 24576}})
        );
    }

    #[test]
    fn image_models_get_no_thinking_config() {
        let body = with(
            msgs(json!([{"role": "user", "content": "a cat"}])),
            json!({"thinking": {"type": "enabled", "budget_tokens": 2048}}),
        );
        let got = build_for("gemini-3.1-flash-image", body);
        assert!(got["generationConfig"].get("thinkingConfig").is_none(), "{got}");
        assert_eq!(got["generationConfig"]["responseModalities"], json!(["TEXT", "IMAGE"]), "{got}");
    }

    #[test]
    fn bad_requests_name_the_field_at_fault() {
        let cases: Vec<(Value, Option<&str>, &str)> = vec![
            (
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}),
                Some("max_tokens"),
                "Field required",
            ),
            (
                json!({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
                Some("model"),
                "Field required",
            ),
            (json!({"model": "m", "max_tokens": 5, "messages": []}), Some("messages"), "at least one"),
            (json!({"model": "m", "max_tokens": 5}), Some("messages"), "Field required"),
            (
                with(msgs(json!([{"role": "user", "content": "x"}])), json!({"temperature": "hot"})),
                Some("temperature"),
                "expected a number",
            ),
            (
                with(msgs(json!([{"role": "user", "content": "x"}])), json!({"max_tokens": "many"})),
                Some("max_tokens"),
                "Invalid type",
            ),
            (msgs(json!([{"role": "robot", "content": "x"}])), Some("messages[0].role"), "robot"),
            (
                msgs(json!([{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "nope"}]}])),
                Some("messages[0].content[0].tool_use_id"),
                "does not match",
            ),
            (
                msgs(
                    json!([{"role": "user", "content": "x"}, {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": [1]}]}]),
                ),
                Some("messages[1].content[0].input"),
                "object",
            ),
            (
                msgs(
                    json!([{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]),
                ),
                Some("messages[0].content[0].source.type"),
                "not supported",
            ),
            (
                with(
                    msgs(json!([{"role": "user", "content": "x"}])),
                    json!({"thinking": {"type": "enabled"}}),
                ),
                Some("thinking.budget_tokens"),
                "Field required",
            ),
        ];
        for (body, param, text) in cases {
            let e = err(body.clone());
            assert_eq!(e.param(), param, "{body} -> {e}");
            assert!(e.to_string().contains(text), "{body} -> {e}");
        }
    }

    #[test]
    fn unknown_blocks_are_dropped_and_accessors_work() {
        let req = parse(with(
            msgs(json!([
                {"role": "user", "content": [{"type": "text", "text": "<system-reminder>ctx</system-reminder>"}, {"type": "text", "text": "first"}]},
                {"role": "assistant", "content": [{"type": "server_tool_use", "id": "srv", "name": "web_search", "input": {}}, {"type": "text", "text": "ok"}]},
            ])),
            json!({"stream": true, "metadata": {"user_id": "user_abc"}, "thinking": {"type": "enabled", "budget_tokens": 2048}}),
        ))
        .unwrap();
        assert_eq!(req.model(), "claude-sonnet-4-5");
        assert!(req.stream() && req.thinking_enabled());
        assert_eq!(req.session_hint(), Some("user_abc"));
        assert_eq!(req.first_user_text(), Some("first"));
        assert_eq!(req.max_tokens(), 1024);
        let inner = build_inner_request(
            &req,
            &Target { upstream_model: "gemini-3-flash", session_id: "s" },
            &NoSignatures,
        )
        .unwrap();
        let got: Value = serde_json::from_slice(&inner.json).unwrap();
        assert_eq!(got["contents"][1]["parts"], json!([{"text": "ok"}]));
    }
}
