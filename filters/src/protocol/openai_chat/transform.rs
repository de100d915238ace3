//! An OpenAI chat.completions request -> `v1internal` inner request (PROTOCOL.md §7).
//!
//! [`build_inner_request`] maps the parsed request ([`super::request`]) onto the inner request: messages to
//! turns, tools to function declarations and sampling options to `generationConfig`, injecting the
//! thoughtSignatures Gemini requires on replayed tool calls.
//!
//! Mapping decisions beyond the table in PROTOCOL.md:
//! - Every `system`/`developer` message, wherever it appears, goes to `systemInstruction`.
//! - Consecutive turns of one role are merged (tool results become one `user` turn); a conversation that
//!   starts with a model turn gets a leading `{text:"."}` user turn; empty or blank text parts are dropped.
//! - `reasoning_content` becomes a leading thought part for Gemini targets only: Claude rejects thinking
//!   blocks without a Claude-issued signature, which an OpenAI client never has.
//! - Replayed Gemini tool calls carry their cached signature; without one, the first call of each assistant
//!   message gets [`SKIP_VALIDATOR_SENTINEL`]. Claude calls carry none: with thinking on, a Claude tool turn
//!   opens with the signed thinking block captured for it, or goes up as text ([`super::thinking`]).
//! - An http(s) `image_url` becomes `fileData` with a MIME type guessed from the extension (default
//!   `image/jpeg`); `input_audio` and data-URL `file` parts become `inlineData`; uploaded `file_id`s are
//!   rejected (there is no Files API upstream).
//! - `web_search_options` (or a `*-search-preview` model) becomes Google Search grounding: `googleSearch` as
//!   the only tool, `requestType` `web_search`; beside function tools the search is dropped
//!   ([`crate::grounding::sends_google_search`]). Its fields have no upstream equivalent and are ignored.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use super::request::{Arguments, ChatRequest, ContentPart, ImageUrl, Message, Role};
use super::thinking::{call_as_text, claude_thinks, restored_thought, result_as_text};
use super::tools::{build_tool_config, build_tools, cached_tools};
use crate::grounding::GOOGLE_SEARCH_TOOLS;
use crate::inner::body::StrOr;
use crate::inner::client_json::{JsonObject, JsonObjectError};
use crate::inner::request::{
    encode_tools, ensure_user_first, guess_mime, push_part, FunctionCallOut, FunctionResponseOut,
    GenerationConfig, InnerJson, Part, ToolResponse, ToolResultValue, Turn,
};
use crate::inner::{InnerRequest, RequestType, Target, ToolCache, ToolNameMap, TransformError};
use crate::schema::{clean_schema, SchemaOptions};
use crate::signature::{ModelFamily, SignatureLookup, SKIP_VALIDATOR_SENTINEL};
/// Builds the inner `request` object for `target`, plus the tool-name map the response stream needs.
pub fn build_inner_request(
    req: &ChatRequest,
    target: &Target,
    signatures: &dyn SignatureLookup,
) -> Result<InnerRequest, TransformError> {
    build(req, target, signatures, None)
}

/// [`build_inner_request`], taking the encoded `tools` from `cache` when the same tools were built for the
/// same model family before (and storing them when not). The bytes are identical either way.
pub fn build_inner_request_cached(
    req: &ChatRequest,
    target: &Target,
    signatures: &dyn SignatureLookup,
    cache: &ToolCache,
) -> Result<InnerRequest, TransformError> {
    build(req, target, signatures, Some(cache))
}

fn build(
    req: &ChatRequest,
    target: &Target,
    signatures: &dyn SignatureLookup,
    cache: Option<&ToolCache>,
) -> Result<InnerRequest, TransformError> {
    let family = ModelFamily::of(target.upstream_model);
    let declared = req.tools.as_deref().unwrap_or_default();
    let mut names = ToolNameMap::new(declared.iter().filter_map(|t| t.function.as_ref()).map(|f| f.name));
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
    let tools = if search { GOOGLE_SEARCH_TOOLS } else { tools };
    let tool_config = build_tool_config(req, family, !search && !tools.is_empty(), &names)?;
    let generation_config = build_generation_config(req, family)?;
    let history = History {
        family,
        claude_thinking: family == ModelFamily::Claude
            && claude_thinks(&generation_config, target.upstream_model),
        signatures,
    };
    let (contents, system_instruction) = build_contents(req.messages(), &history, &mut names)?;
    let request_type = RequestType::of(target.upstream_model, search);
    let inner = InnerJson {
        contents,
        system_instruction,
        tools,
        tool_config,
        generation_config: generation_config.for_request_type(request_type),
        session_id: target.session_id,
    };
    Ok(InnerRequest { json: inner.encode(estimated_size(req)), tool_names: names, request_type })
}

/// The inner request's size follows the body's closely: its buffer is allocated once.
fn estimated_size(req: &ChatRequest) -> usize {
    req.body_len + 4096
}

fn text_part(text: &str, thought: bool) -> Option<Part<'_>> {
    if thought {
        (!text.trim().is_empty()).then(|| Part::thought(text, None))
    } else {
        Part::text(text)
    }
}

/// What replaying history depends on besides the messages.
struct History<'s> {
    family: ModelFamily,
    /// A thinking Claude request: its tool turns need their signed thinking block, or go up as text.
    claude_thinking: bool,
    signatures: &'s dyn SignatureLookup,
}

fn build_contents<'a>(
    messages: &'a [Message],
    history: &History<'_>,
    names: &mut ToolNameMap,
) -> Result<(Vec<Turn<'a>>, Option<Turn<'a>>), TransformError> {
    let (family, signatures) = (history.family, history.signatures);
    let mut contents: Vec<Turn<'a>> = Vec::with_capacity(messages.len());
    let mut system: Vec<Part<'a>> = Vec::new();
    // tool_call_id -> client function name, from the assistant messages seen so far. Keyed randomly like the
    // tool-name map, without SipHash's cost for every call and result of a long agent conversation.
    let calls = messages.iter().map(|m| m.tool_calls.as_ref().map_or(0, Vec::len)).sum();
    let mut call_names: HashMap<&'a str, &'a str, ahash::RandomState> =
        HashMap::with_capacity_and_hasher(calls, ahash::RandomState::new());
    // Claude tool calls replayed as text (their thinking block is lost): their results follow as text too.
    let mut told_as_text: HashSet<&'a str, ahash::RandomState> = HashSet::default();

    for (i, message) in messages.iter().enumerate() {
        let param = || format!("messages[{i}]");
        match message.role {
            Role::System | Role::Developer => {
                for_each_text(message, i, |text| system.extend(text_part(text, false)))?;
            }
            Role::User => match &message.content {
                Some(StrOr::Str(text)) => {
                    if let Some(part) = text_part(text, false) {
                        push_part(&mut contents, "user", part);
                    }
                }
                Some(StrOr::Other(parts)) => {
                    for (j, part) in parts.iter().enumerate() {
                        if let Some(part) = user_part(part, i, j)? {
                            push_part(&mut contents, "user", part);
                        }
                    }
                }
                None => {
                    return Err(TransformError::invalid(
                        format!("{}.content", param()),
                        "A user message needs `content`.",
                    ))
                }
            },
            Role::Assistant => {
                let calls = message.tool_calls.as_deref().unwrap_or_default();
                let mut as_text = false;
                if history.claude_thinking && !calls.is_empty() {
                    match restored_thought(calls, signatures) {
                        Some(thought) => push_part(&mut contents, "model", thought),
                        None => as_text = true,
                    }
                }
                if family != ModelFamily::Claude {
                    if let Some(part) = message.reasoning_content.and_then(|t| text_part(t, true)) {
                        push_part(&mut contents, "model", part);
                    }
                }
                for_each_text(message, i, |text| {
                    if let Some(part) = text_part(text, false) {
                        push_part(&mut contents, "model", part);
                    }
                })?;
                for (k, call) in calls.iter().enumerate() {
                    let at = || format!("messages[{i}].tool_calls[{k}]");
                    if call.id.is_empty() {
                        return Err(TransformError::invalid(
                            format!("{}.id", at()),
                            "A tool call needs an `id`.",
                        ));
                    }
                    if call.function.name.is_empty() {
                        return Err(TransformError::invalid(
                            format!("{}.function.name", at()),
                            "A tool call needs a function `name`.",
                        ));
                    }
                    let args = parse_arguments(&call.function.arguments)
                        .map_err(|m| TransformError::invalid(format!("{}.function.arguments", at()), m))?;
                    call_names.insert(call.id, call.function.name);
                    if as_text {
                        told_as_text.insert(call.id);
                        let part = call_as_text(call.id, call.function.name, &call.function.arguments);
                        push_part(&mut contents, "model", part);
                        continue;
                    }
                    let thought_signature = match family {
                        ModelFamily::Claude => None,
                        _ => signatures.signature_for_tool_call(call.id).or_else(|| {
                            (family == ModelFamily::Gemini && k == 0)
                                .then(|| SKIP_VALIDATOR_SENTINEL.to_owned())
                        }),
                    };
                    let function_call = FunctionCallOut {
                        id: call.id,
                        name: names.register(call.function.name).to_owned(),
                        args,
                    };
                    push_part(
                        &mut contents,
                        "model",
                        Part::FunctionCall { function_call, thought_signature },
                    );
                }
            }
            Role::Tool => {
                let Some(id) = message.tool_call_id.filter(|id| !id.is_empty()) else {
                    return Err(TransformError::invalid(
                        format!("{}.tool_call_id", param()),
                        "A tool message needs `tool_call_id`.",
                    ));
                };
                let Some(client_name) = call_names.get(id) else {
                    return Err(TransformError::invalid(
                        format!("{}.tool_call_id", param()),
                        format!("`tool_call_id` {id:?} does not match any earlier assistant tool call."),
                    ));
                };
                if told_as_text.contains(id) {
                    let part = result_as_text(id, client_name, &tool_text(message, i)?);
                    push_part(&mut contents, "user", part);
                    continue;
                }
                let result = tool_result(message, i)?;
                let function_response = FunctionResponseOut {
                    id,
                    name: names.register(client_name).to_owned(),
                    response: ToolResponse::Result(result),
                };
                push_part(&mut contents, "user", Part::FunctionResponse { function_response });
            }
            Role::Function => {
                return Err(TransformError::unsupported(
                    format!("{}.role", param()),
                    "The legacy `function` role is not supported: use `tool` messages.",
                ))
            }
        }
    }

    if contents.is_empty() {
        return Err(TransformError::invalid(
            "messages",
            "`messages` must contain a user, assistant or tool message with content.",
        ));
    }
    ensure_user_first(&mut contents);
    let system = (!system.is_empty()).then_some(Turn { role: "user", parts: system });
    Ok((contents, system))
}

/// Calls `f` with each text of a system or assistant message (a string, or `text`/`refusal` parts).
fn for_each_text<'a>(
    message: &'a Message,
    i: usize,
    mut f: impl FnMut(&'a str),
) -> Result<(), TransformError> {
    match &message.content {
        None => {}
        Some(StrOr::Str(text)) => f(text),
        Some(StrOr::Other(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                match (part.kind, part.text, part.refusal) {
                    ("text", Some(text), _) | ("refusal", _, Some(text)) => f(text),
                    ("text", None, _) => {
                        return Err(TransformError::invalid(
                            format!("messages[{i}].content[{j}].text"),
                            "A text part needs `text`.",
                        ))
                    }
                    (kind, _, _) => {
                        return Err(TransformError::invalid(
                            format!("messages[{i}].content[{j}].type"),
                            format!(
                            "Content parts of type {kind:?} are not allowed in this message; only text is."
                        ),
                        ))
                    }
                }
            }
        }
    }
    Ok(())
}

fn user_part<'a>(part: &'a ContentPart<'_>, i: usize, j: usize) -> Result<Option<Part<'a>>, TransformError> {
    let at = |field: &str| format!("messages[{i}].content[{j}].{field}");
    match part.kind {
        "text" => {
            let text =
                part.text.ok_or_else(|| TransformError::invalid(at("text"), "A text part needs `text`."))?;
            Ok(text_part(text, false))
        }
        "image_url" => {
            let url = match &part.image_url {
                Some(StrOr::Str(url)) => url,
                Some(StrOr::Other(ImageUrl { url })) => url,
                None => {
                    return Err(TransformError::invalid(
                        at("image_url"),
                        "An image_url part needs `image_url.url`.",
                    ))
                }
            };
            media_part(url).map(Some).map_err(|m| TransformError::invalid(at("image_url"), m))
        }
        "input_audio" => {
            let audio = part.input_audio.as_ref().ok_or_else(|| {
                TransformError::invalid(at("input_audio"), "An input_audio part needs `input_audio`.")
            })?;
            let mime_type = match audio.format {
                "wav" => "audio/wav",
                "mp3" => "audio/mp3",
                other => {
                    return Err(TransformError::invalid(
                        at("input_audio.format"),
                        format!("Audio format {other:?} is not supported; use \"wav\" or \"mp3\"."),
                    ))
                }
            };
            Ok(Some(Part::inline(mime_type, audio.data)))
        }
        "file" => {
            let file = part
                .file
                .as_ref()
                .ok_or_else(|| TransformError::invalid(at("file"), "A file part needs `file`."))?;
            match (&file.file_data, &file.file_id) {
                (Some(data), _) => {
                    media_part(data).map(Some).map_err(|m| TransformError::invalid(at("file.file_data"), m))
                }
                (None, Some(_)) => Err(TransformError::unsupported(
                    at("file.file_id"),
                    "Uploaded file ids are not supported by Levitate: send the file inline as `file_data`.",
                )),
                (None, None) => Err(TransformError::invalid(at("file"), "A file part needs `file_data`.")),
            }
        }
        other => Err(TransformError::unsupported(
            at("type"),
            format!("Content parts of type {other:?} are not supported."),
        )),
    }
}

/// A `data:<mime>;base64,<data>` URL becomes `inlineData`; an http(s) URL becomes `fileData`.
fn media_part(url: &str) -> Result<Part<'_>, String> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest.split_once(',').ok_or("A data URL needs a `,` before its data.")?;
        let mime_type = meta
            .strip_suffix(";base64")
            .ok_or("Only base64 data URLs are supported (`data:<mime>;base64,<data>`).")?;
        if mime_type.is_empty() || data.is_empty() {
            return Err("A data URL needs a MIME type and data.".into());
        }
        return Ok(Part::inline(mime_type, data));
    }
    if url.starts_with("https://") || url.starts_with("http://") || url.starts_with("gs://") {
        let mime_type = guess_mime(url);
        return Ok(Part::file(mime_type, url));
    }
    Err("Expected an http(s) URL or a `data:<mime>;base64,<data>` URL.".into())
}

/// The `args` object of a replayed call: `arguments` is a JSON string (empty means no arguments), or an
/// object from lenient clients.
fn parse_arguments<'a>(arguments: &'a Arguments<'_>) -> Result<JsonObject<'a>, String> {
    match arguments {
        Arguments::Text(text) if text.trim().is_empty() => Ok(JsonObject::Empty),
        Arguments::Text(text) => JsonObject::parse(Cow::Borrowed(text)).map_err(|e| match e {
            JsonObjectError::Syntax(e) => {
                format!("`arguments` must be a JSON-encoded object; it does not parse ({e}).")
            }
            JsonObjectError::NotAnObject => "`arguments` must encode a JSON object.".into(),
        }),
        Arguments::Null => Ok(JsonObject::Empty),
        Arguments::Object(object) => Ok(JsonObject::Value(object)),
        Arguments::Other => Err("`arguments` must encode a JSON object.".into()),
    }
}

/// A tool message's content: parsed JSON when it is a JSON object, otherwise the text.
fn tool_result<'a>(message: &'a Message<'_>, i: usize) -> Result<ToolResultValue<'a>, TransformError> {
    Ok(ToolResultValue::from_text(tool_text(message, i)?))
}

/// A tool message's content as text (its text parts joined by newlines).
fn tool_text<'a>(message: &'a Message<'_>, i: usize) -> Result<Cow<'a, str>, TransformError> {
    Ok(match &message.content {
        None => Cow::Borrowed(""),
        Some(StrOr::Str(text)) => Cow::Borrowed(text),
        Some(StrOr::Other(_)) => {
            let mut joined = String::new();
            for_each_text(message, i, |t| {
                if !joined.is_empty() {
                    joined.push('\n');
                }
                joined.push_str(t);
            })?;
            Cow::Owned(joined)
        }
    })
}

fn build_generation_config(
    req: &ChatRequest,
    family: ModelFamily,
) -> Result<GenerationConfig, TransformError> {
    let mut config = GenerationConfig {
        temperature: req.temperature,
        top_p: req.top_p,
        max_output_tokens: req.max_completion_tokens.or(req.max_tokens),
        seed: req.seed,
        ..GenerationConfig::default()
    };
    config.stop_sequences = match &req.stop {
        None => Vec::new(),
        Some(StrOr::Str(stop)) => vec![stop.clone()],
        Some(StrOr::Other(stops)) => stops.clone(),
    };
    config.stop_sequences.retain(|s| !s.is_empty());

    if let Some(format) = &req.response_format {
        match format.kind.as_str() {
            "text" => {}
            "json_object" => config.response_mime_type = Some("application/json"),
            "json_schema" => {
                config.response_mime_type = Some("application/json");
                if let Some(schema) = format.json_schema.as_ref().and_then(|s| s.schema.as_ref()) {
                    let cleaned = clean_schema(schema, &SchemaOptions::default()).map_err(|source| {
                        TransformError::Schema { param: "response_format.json_schema.schema".into(), source }
                    })?;
                    config.response_schema = Some(cleaned);
                }
            }
            other => {
                return Err(TransformError::invalid(
                    "response_format.type",
                    format!("Unknown response_format type {other:?}; expected \"text\", \"json_object\" or \"json_schema\"."),
                ))
            }
        }
    }

    if let Some(effort) = req.reasoning_effort {
        config.set_thinking_budget(effort_budget(effort, "reasoning_effort")?, family);
    }
    Ok(config)
}

/// The thinking budget of an OpenAI reasoning effort (chat's `reasoning_effort`, Responses'
/// `reasoning.effort`); `param` names the field in the error.
pub(crate) fn effort_budget(effort: &str, param: &str) -> Result<i32, TransformError> {
    Ok(match effort {
        "none" => 0,
        "auto" => -1,
        "minimal" | "low" => 1024,
        "medium" => 8192,
        "high" => 24_576,
        "xhigh" => 32_768,
        other => {
            return Err(TransformError::invalid(
                param,
                format!("Unknown {param} {other:?}; expected none, minimal, low, medium, high or xhigh."),
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inner::with_fields as with;
    use crate::protocol::openai_chat::parse_chat_request;
    use serde_json::{json, Value};

    struct Cached(HashMap<&'static str, &'static str>);

    impl SignatureLookup for Cached {
        fn signature_for_tool_call(&self, id: &str) -> Option<String> {
            self.0.get(id).map(|s| s.to_string())
        }
    }

    /// The request borrows from its body, leaked so a test can keep it as long as it likes.
    fn parse(body: Value) -> Result<ChatRequest<'static>, TransformError> {
        parse_chat_request(serde_json::to_vec(&body).unwrap().leak())
    }

    fn build_for(
        model: &str,
        body: Value,
        sigs: &[(&'static str, &'static str)],
    ) -> Result<(Value, ToolNameMap), TransformError> {
        let req = parse(body)?;
        let target = Target { upstream_model: model, session_id: "-42" };
        let inner = build_inner_request(&req, &target, &Cached(sigs.iter().copied().collect()))?;
        Ok((serde_json::from_slice(&inner.json).unwrap(), inner.tool_names))
    }

    fn build(body: Value) -> Value {
        build_for("gemini-3-flash", body, &[]).unwrap().0
    }

    fn chat(messages: Value) -> Value {
        json!({"model": "gpt-4o", "messages": messages})
    }

    #[test]
    fn a_small_request_keeps_no_room_for_the_size_guess() {
        let req = parse(chat(json!([{"role": "user", "content": "hi"}]))).unwrap();
        let target = Target { upstream_model: "gemini-3-flash", session_id: "-1" };
        let inner = build_inner_request(&req, &target, &Cached(HashMap::new())).unwrap();
        // The guess is the body's size plus 4 KiB; the encoded request is kept while its answer streams.
        assert!(inner.json.len() < 200, "{}", inner.json.len());
        assert!(inner.json.capacity() <= 2 * inner.json.len(), "capacity {}", inner.json.capacity());
    }

    #[test]
    fn web_search_options_become_google_search_unless_function_tools_are_declared() {
        let ask = chat(json!([{"role": "user", "content": "news?"}]));
        let search = with(ask.clone(), json!({"web_search_options": {"search_context_size": "low"}}));
        let req = parse(search.clone()).unwrap();
        assert!(req.web_search());
        let target = Target { upstream_model: "gemini-3-flash", session_id: "-1" };
        let inner = build_inner_request(&req, &target, &Cached(HashMap::new())).unwrap();
        assert_eq!(inner.request_type, RequestType::WebSearch);
        let got: Value = serde_json::from_slice(&inner.json).unwrap();
        assert_eq!((&got["tools"], got.get("toolConfig")), (&json!([{"googleSearch": {}}]), None));
        let preview = with(ask.clone(), json!({"model": "gpt-4o-search-preview"}));
        assert!(parse(preview).unwrap().web_search());
        let tool = json!({"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}});
        let mixed = with(search, json!({"tools": [tool]}));
        assert!(!parse(mixed.clone()).unwrap().web_search());
        assert!(build(mixed)["tools"][0].get("functionDeclarations").is_some(), "the functions win");
        assert!(!parse(ask).unwrap().web_search());
    }

    fn err(body: Value) -> TransformError {
        match parse(body) {
            Err(e) => e,
            Ok(req) => build_inner_request(
                &req,
                &Target { upstream_model: "gemini-3-flash", session_id: "s" },
                &crate::signature::NoSignatures,
            )
            .expect_err("expected an error"),
        }
    }

    #[test]
    fn system_user_and_assistant_text_map_to_turns() {
        let got = build(chat(json!([
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric."}, {"type": "text", "text": ""}]},
            {"role": "user", "content": "Hi"},
            {"role": "user", "content": [{"type": "text", "text": "there"}, {"type": "text", "text": "  "}]},
            {"role": "assistant", "content": "Hello!", "reasoning_content": "They greet me."},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": "Weather?"},
        ])));
        assert_eq!(
            got,
            json!({
                "systemInstruction": {"role": "user", "parts": [{"text": "Be brief."}, {"text": "Use metric."}]},
                "contents": [
                    {"role": "user", "parts": [{"text": "Hi"}, {"text": "there"}]},
                    {"role": "model", "parts": [{"text": "They greet me.", "thought": true}, {"text": "Hello!"}]},
                    {"role": "user", "parts": [{"text": "Weather?"}]},
                ],
                "sessionId": "-42",
            })
        );
    }

    #[test]
    fn a_conversation_starting_with_the_model_gets_a_user_turn_first() {
        let got = build(chat(
            json!([{"role": "assistant", "content": "I start."}, {"role": "user", "content": "ok"}]),
        ));
        assert_eq!(got["contents"][0], json!({"role": "user", "parts": [{"text": "."}]}));
        assert_eq!(got["contents"][1]["role"], "model");
    }

    #[test]
    fn images_audio_and_files_map_to_inline_or_file_data() {
        let got = build(chat(json!([{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K", "detail": "high"}},
            {"type": "image_url", "image_url": "https://example.com/cat.webp?x=1"},
            {"type": "image_url", "image_url": {"url": "https://example.com/photo"}},
            {"type": "input_audio", "input_audio": {"data": "UklGR", "format": "wav"}},
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBER", "filename": "a.pdf"}},
        ]}])));
        assert_eq!(
            got["contents"][0]["parts"],
            json!([
                {"inlineData": {"mimeType": "image/png", "data": "iVBORw0K"}},
                {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/cat.webp?x=1"}},
                {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/photo"}},
                {"inlineData": {"mimeType": "audio/wav", "data": "UklGR"}},
                {"inlineData": {"mimeType": "application/pdf", "data": "JVBER"}},
            ])
        );
    }

    fn tool_history() -> Value {
        chat(json!([
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}},
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 21}"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "18 degrees"}]},
            {"role": "assistant", "content": "Paris 21, Rome 18.", "tool_calls": [
                {"id": "call_3", "type": "function", "function": {"name": "get_weather", "arguments": ""}},
            ]},
            {"role": "tool", "tool_call_id": "call_3", "content": "[1,2]"},
        ]))
    }

    #[test]
    fn tool_calls_and_results_map_to_function_parts() {
        let got = build(tool_history());
        let contents = got["contents"].as_array().unwrap();
        assert_eq!(contents.len(), 5);
        assert_eq!(
            contents[1]["parts"][0],
            json!({"functionCall": {"id": "call_1", "name": "get_weather", "args": {"city": "Paris"}},
                   "thoughtSignature": SKIP_VALIDATOR_SENTINEL})
        );
        assert_eq!(
            contents[2],
            json!({"role": "user", "parts": [
                {"functionResponse": {"id": "call_1", "name": "get_weather", "response": {"result": {"temp": 21}}}},
                {"functionResponse": {"id": "call_2", "name": "get_weather", "response": {"result": "18 degrees"}}},
            ]})
        );
        assert_eq!(contents[3]["parts"][1]["functionCall"]["args"], json!({}));
        assert_eq!(contents[4]["parts"][0]["functionResponse"]["response"], json!({"result": "[1,2]"}));
    }

    #[test]
    fn signatures_cached_else_sentinel_on_first_gemini_call_only() {
        let sigs = [("call_2", "EsigTwo"), ("call_3", "EsigThree")];
        let signature = |v: &Value, turn: usize, part: usize| {
            v["contents"][turn]["parts"][part].get("thoughtSignature").cloned()
        };
        let (gemini, _) = build_for("gemini-3-pro-high", tool_history(), &sigs).unwrap();
        assert_eq!(signature(&gemini, 1, 0), Some(json!(SKIP_VALIDATOR_SENTINEL)));
        assert_eq!(signature(&gemini, 1, 1), Some(json!("EsigTwo")));
        assert_eq!(signature(&gemini, 3, 1), Some(json!("EsigThree")));
        let (gemini, _) = build_for("gemini-3-pro-high", tool_history(), &[]).unwrap();
        assert_eq!(signature(&gemini, 1, 1), None, "parallel siblings get no sentinel");
        assert_eq!(signature(&gemini, 3, 1), Some(json!(SKIP_VALIDATOR_SENTINEL)));
        let (claude, _) = build_for("claude-sonnet-4-6", tool_history(), &[("call_3", "Rsig")]).unwrap();
        assert_eq!(signature(&claude, 1, 0), None, "Claude never gets the sentinel");
        assert_eq!(signature(&claude, 1, 1), None);
        assert_eq!(
            signature(&claude, 3, 1),
            None,
            "a Claude signature belongs on a thought, never on a call"
        );
    }

    /// A Claude-shaped signature (R-form: base64 of base64 text starting with `E`).
    fn claude_sig() -> String {
        use base64::Engine;
        let engine = base64::engine::general_purpose::STANDARD;
        let raw: Vec<u8> = [0x12u8, 48].into_iter().chain((0..48u8).map(|i| i.wrapping_mul(37))).collect();
        engine.encode(engine.encode(raw))
    }

    /// The store entry the stream machine leaves for a Claude turn whose first call was `id`.
    fn block_entry(id: &str, text: &str, signature: &str) -> (&'static str, &'static str) {
        let block = crate::signature::ThinkingBlock { text: text.into(), signature: signature.into() };
        let c = crate::signature::CapturedSignature::thinking_block(id, &block);
        (c.tool_call_id.leak(), c.signature.leak())
    }

    #[test]
    fn a_thinking_claude_tool_turn_opens_with_its_restored_thinking_block() {
        let sig = claude_sig();
        let sigs = [block_entry("call_1", "Two cities: call twice.", &sig), ("call_1", "Rstale")];
        let mut body = tool_history();
        body["reasoning_effort"] = json!("low");
        let (got, _) = build_for("claude-sonnet-4-6", body.clone(), &sigs).unwrap();
        let turn = &got["contents"][1];
        assert_eq!(turn["role"], "model");
        assert_eq!(
            turn["parts"][0],
            json!({"text": "Two cities: call twice.", "thought": true, "thoughtSignature": sig})
        );
        for k in [1, 2] {
            assert!(turn["parts"][k]["functionCall"].is_object(), "{turn}");
            assert!(turn["parts"][k].get("thoughtSignature").is_none(), "calls carry no signature: {turn}");
        }
        assert_eq!(got["contents"][2]["parts"][0]["functionResponse"]["id"], "call_1");

        // call_3 has no block: its turn and its result go up as text, never with a signature.
        let later = &got["contents"][3]["parts"];
        assert_eq!(later[0], json!({"text": "Paris 21, Rome 18."}));
        assert_eq!(later[1], json!({"text": "[Called tool `get_weather` (call call_3) with arguments: {}]"}));
        assert_eq!(
            got["contents"][4]["parts"][0],
            json!({"text": "[Result of tool `get_weather` (call call_3):]\n[1,2]"})
        );
        assert!(!serde_json::to_string(&got).unwrap().contains("Rstale"));

        // A `-thinking` model thinks by its name alone.
        let (got, _) = build_for("claude-opus-4-6-thinking", tool_history(), &sigs).unwrap();
        assert_eq!(got["contents"][1]["parts"][0]["thought"], true);

        // Without thinking nothing is required: plain calls, no thought, no signature.
        let (got, _) = build_for("claude-sonnet-4-6", tool_history(), &sigs).unwrap();
        assert!(got["contents"][1]["parts"][0]["functionCall"].is_object());
        assert!(!serde_json::to_string(&got).unwrap().contains("thoughtSignature"));
    }

    #[test]
    fn a_foreign_or_sentinel_block_is_never_restored_for_claude() {
        let gemini = "EhIAAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8wMTIzNA==";
        for bad in [gemini, SKIP_VALIDATOR_SENTINEL] {
            let sigs = [block_entry("call_1", "thinking", bad)];
            let (got, _) = build_for("claude-opus-4-6-thinking", tool_history(), &sigs).unwrap();
            let text = serde_json::to_string(&got).unwrap();
            assert!(!text.contains("thoughtSignature"), "{text}");
            assert!(got["contents"][1]["parts"][0]["text"].as_str().unwrap().starts_with("[Called tool"));
        }
    }

    #[test]
    fn gemini_keeps_its_signature_on_the_first_call() {
        let sigs = [block_entry("call_1", "thinking", &claude_sig()), ("call_1", "EsigOne")];
        let (got, _) = build_for("gemini-3-flash", tool_history(), &sigs).unwrap();
        let turn = &got["contents"][1]["parts"];
        assert_eq!(turn[0]["thoughtSignature"], "EsigOne");
        assert!(turn[0]["functionCall"].is_object());
    }

    #[test]
    fn claude_targets_drop_unsigned_reasoning() {
        let body = chat(
            json!([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "reasoning_content": "hmm"}]),
        );
        let (got, _) = build_for("claude-sonnet-4-6", body, &[]).unwrap();
        assert_eq!(got["contents"][1]["parts"], json!([{"text": "a"}]));
    }

    fn tools() -> Value {
        json!([
            {"type": "function", "function": {"name": "get_weather", "description": "Weather now",
                "parameters": {"type": "object", "properties": {"city": {"type": "string", "minLength": 1}},
                               "required": ["city"], "additionalProperties": false}}},
            {"type": "function", "function": {"name": "mcp.fs:read", "parameters": {"type": "object", "properties": {}}}},
            {"type": "function", "function": {"name": "noop"}},
        ])
    }

    #[test]
    fn cached_tools_give_the_same_bytes_and_other_tools_miss() {
        let cache = ToolCache::new(8);
        let sigs = crate::signature::NoSignatures;
        let body = with(chat(json!([{"role": "user", "content": "x"}])), json!({"tools": tools()}));
        let req = parse(body).unwrap();
        for model in ["gemini-3-flash", "claude-sonnet-4-6", "gemini-3-flash"] {
            let target = Target { upstream_model: model, session_id: "-42" };
            let fresh = build_inner_request(&req, &target, &sigs).unwrap();
            let cached = build_inner_request_cached(&req, &target, &sigs, &cache).unwrap();
            let again = build_inner_request_cached(&req, &target, &sigs, &cache).unwrap();
            assert_eq!(fresh.json, cached.json, "{model}");
            assert_eq!(fresh.json, again.json, "{model}");
            assert_eq!(fresh.tool_names, again.tool_names, "{model}");
        }
        assert_eq!(cache.len(), 2, "one entry per model family");
        let mut other_tools = tools();
        other_tools[0]["function"]["description"] = json!("Weather later");
        let other =
            parse(with(chat(json!([{"role": "user", "content": "x"}])), json!({"tools": other_tools})))
                .unwrap();
        let target = Target { upstream_model: "gemini-3-flash", session_id: "-42" };
        let got = build_inner_request_cached(&other, &target, &sigs, &cache).unwrap();
        assert_eq!(got.json, build_inner_request(&other, &target, &sigs).unwrap().json);
        assert_eq!(cache.len(), 3, "different tools are a miss");
        let none = parse(chat(json!([{"role": "user", "content": "x"}]))).unwrap();
        let got = build_inner_request_cached(&none, &target, &sigs, &cache).unwrap();
        assert_eq!(got.json, build_inner_request(&none, &target, &sigs).unwrap().json);
        assert_eq!(cache.len(), 3, "no tools, nothing cached");
        let bad = with(
            chat(json!([{"role": "user", "content": "x"}])),
            json!({"tools": [{"type": "function", "function": {"name": "f", "parameters": "nope"}}]}),
        );
        let e = build_inner_request_cached(&parse(bad).unwrap(), &target, &sigs, &cache).unwrap_err();
        assert_eq!(e.param(), Some("tools[0].function.parameters"));
        assert_eq!(cache.len(), 3, "failed builds are not cached");
    }

    /// The cache compares the tools as recorded from the body, so a hit needs the same definitions, however
    /// they are spaced, and any change to a schema (even `1` for `1.0`) is a miss built from scratch.
    #[test]
    fn the_tool_cache_key_is_the_recorded_tools() {
        let cache = ToolCache::new(8);
        let sigs = crate::signature::NoSignatures;
        let target = Target { upstream_model: "gemini-3-flash", session_id: "-42" };
        let build = |body: &str| {
            let req = parse_chat_request(body.as_bytes().to_vec().leak()).unwrap();
            let cached = build_inner_request_cached(&req, &target, &sigs, &cache).map(|i| i.json);
            assert_eq!(cached, build_inner_request(&req, &target, &sigs).map(|i| i.json), "{body}");
            cached
        };
        let body = |tools: &str| {
            format!(r#"{{"model":"m","messages":[{{"role":"user","content":"x"}}],"tools":{tools}}}"#)
        };
        let tools = r#"[{"type":"function","function":{"name":"f","description":"d","parameters":
            {"type":"object","properties":{"n":{"type":"integer","maximum":1,"enum":[1,"\u00e9"]}}}}}]"#;
        let first = build(&body(tools)).unwrap();
        let spaced = tools.replace(':', " : ").replace(',', " ,\n ");
        assert_eq!(build(&body(&spaced)).unwrap(), first);
        assert_eq!(cache.len(), 1, "the same tools, spaced differently, hit");
        for (k, changed) in [
            tools.replace(r#""maximum":1"#, r#""maximum":1.0"#),
            tools.replace(r#""maximum":1"#, r#""maximum":"1""#),
            tools.replace(r#""\u00e9""#, r#""e""#),
            tools.replace(r#""description":"d""#, r#""description":"d2""#),
            tools.replace(r#""name":"f""#, r#""name":"g""#),
            tools.replace(r#","properties":{"n":{"type":"integer","maximum":1,"enum":[1,"\u00e9"]}}"#, ""),
        ]
        .iter()
        .enumerate()
        {
            build(&body(changed)).unwrap();
            assert_eq!(cache.len(), k + 2, "{changed} is a miss");
        }
    }

    /// Tool schemas are parsed only when the cache misses; what is wrong with them is reported as before.
    #[test]
    fn bad_tool_schemas_are_reported_on_a_miss() {
        let cache = ToolCache::new(8);
        let sigs = crate::signature::NoSignatures;
        let target = Target { upstream_model: "claude-sonnet-4-6", session_id: "-42" };
        let deep = format!("{}{{}}{}", r#"{"type":"array","items":"#.repeat(40), "}".repeat(40));
        let too_deep = format!(
            "invalid JSON schema in `tools[0].function.parameters`: schema is nested deeper than 32 levels (at `{}`)",
            vec!["items"; 33].join(".")
        );
        let not_an_object = "`parameters` must be a JSON Schema object.".to_owned();
        let cases = [
            (deep, too_deep),
            ("\"nope\"".to_owned(), not_an_object.clone()),
            ("[{}]".to_owned(), not_an_object.clone()),
            ("7".to_owned(), not_an_object),
        ];
        for (parameters, message) in cases {
            let body = format!(
                r#"{{"model":"m","messages":[{{"role":"user","content":"x"}}],"tools":[{{"type":"function","function":{{"name":"f","parameters":{parameters}}}}}]}}"#
            );
            let req = parse_chat_request(body.into_bytes().leak()).unwrap();
            for _ in 0..2 {
                let e = build_inner_request_cached(&req, &target, &sigs, &cache).unwrap_err();
                assert_eq!(e.param(), Some("tools[0].function.parameters"));
                assert_eq!(e.to_string(), message);
                assert_eq!(build_inner_request(&req, &target, &sigs).unwrap_err(), e);
            }
        }
        assert!(cache.is_empty(), "failed builds are not cached");
        let null = r#"{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f","parameters":null}}]}"#;
        let req = parse_chat_request(null.as_bytes().to_vec().leak()).unwrap();
        let got = build_inner_request_cached(&req, &target, &sigs, &cache).unwrap();
        let got: Value = serde_json::from_slice(&got.json).unwrap();
        assert_eq!(got["tools"][0]["functionDeclarations"][0]["parameters"]["required"], json!(["reason"]));
    }

    #[test]
    fn json_arguments_and_tool_results_are_copied_verbatim_once_valid() {
        let body = chat(json!([
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [
                {"id": "c1", "function": {"name": "f", "arguments": " {\"z\": 1, \"a\": [1.50, \"\\u00e9\"]}\n"}},
                {"id": "c2", "function": {"name": "f", "arguments": {"k": "v"}}},
                {"id": "c3", "function": {"name": "f", "arguments": ""}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "{\"ok\": true}"},
            {"role": "tool", "tool_call_id": "c2", "content": "{not json"},
        ]));
        let req = parse(body).unwrap();
        let target = Target { upstream_model: "gemini-3-flash", session_id: "-42" };
        let json = build_inner_request(&req, &target, &crate::signature::NoSignatures).unwrap().json;
        let text = String::from_utf8(json).unwrap();
        assert!(text.contains(r#""args":{"z": 1, "a": [1.50, "\u00e9"]}"#), "{text}");
        assert!(text.contains(r#""args":{"k":"v"}"#), "{text}");
        assert!(text.contains(r#""args":{}"#), "{text}");
        assert!(text.contains(r#""response":{"result":{"ok": true}}"#), "{text}");
        assert!(text.contains(r#""response":{"result":"{not json"}"#), "{text}");
        // What a `serde_json::Value` rejects is still rejected: lone surrogates, out-of-range numbers, trailing
        // characters, non-objects.
        for (arguments, text) in [
            (r#"{"a": "\ud800"}"#, "does not parse"),
            (r#"{"a": 1e400}"#, "does not parse"),
            (r#"{"a": 1} x"#, "does not parse"),
            ("[1]", "must encode a JSON object"),
        ] {
            let e = err(chat(json!([{"role": "user", "content": "x"},
                {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": arguments}}]}])));
            assert_eq!(e.param(), Some("messages[1].tool_calls[0].function.arguments"), "{arguments}");
            assert!(e.to_string().contains(text), "{arguments}: {e}");
        }
    }

    #[test]
    fn tools_become_cleaned_function_declarations_with_a_name_map() {
        let body = with(chat(json!([{"role": "user", "content": "x"}])), json!({"tools": tools()}));
        let (got, names) = build_for("gemini-3-flash", body.clone(), &[]).unwrap();
        assert_eq!(
            got["tools"],
            json!([{"functionDeclarations": [
                {"name": "get_weather", "description": "Weather now", "parameters": {"type": "object",
                    "properties": {"city": {"type": "string", "description": "(minLength: 1)"}}, "required": ["city"]}},
                {"name": "mcp_fs_read", "parameters": {"type": "object", "properties": {}}},
                {"name": "noop"},
            ]}])
        );
        assert!(got.get("toolConfig").is_none());
        assert_eq!(names.client_name("mcp_fs_read"), "mcp.fs:read");
        let (claude, _) = build_for("claude-sonnet-4-6", body, &[]).unwrap();
        let decls = &claude["tools"][0]["functionDeclarations"];
        assert_eq!(decls[2]["parameters"]["required"], json!(["reason"]));
        assert_eq!(claude["toolConfig"], json!({"functionCallingConfig": {"mode": "VALIDATED"}}));
    }

    #[test]
    fn tool_choice_maps_to_function_calling_modes() {
        let cases = [
            ("gemini-3-flash", json!("none"), json!({"mode": "NONE"})),
            ("gemini-3-flash", json!("auto"), json!({"mode": "AUTO"})),
            ("claude-sonnet-4-6", json!("auto"), json!({"mode": "VALIDATED"})),
            ("gemini-3-flash", json!("required"), json!({"mode": "ANY"})),
            (
                "gemini-3-flash",
                json!({"type": "function", "function": {"name": "mcp.fs:read"}}),
                json!({"mode": "ANY", "allowedFunctionNames": ["mcp_fs_read"]}),
            ),
            (
                "claude-sonnet-4-6",
                json!({"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [{"type": "function", "function": {"name": "noop"}}]}}),
                json!({"mode": "VALIDATED", "allowedFunctionNames": ["noop"]}),
            ),
        ];
        for (model, choice, want) in cases {
            let body = with(
                chat(json!([{"role": "user", "content": "x"}])),
                json!({"tools": tools(), "tool_choice": choice}),
            );
            let (got, _) = build_for(model, body, &[]).unwrap();
            assert_eq!(got["toolConfig"]["functionCallingConfig"], want, "{choice}");
        }
        let bad = err(with(
            chat(json!([{"role": "user", "content": "x"}])),
            json!({"tools": tools(), "tool_choice": {"type": "function", "function": {"name": "nope"}}}),
        ));
        assert_eq!(bad.param(), Some("tool_choice.function.name"));
    }

    #[test]
    fn generation_config_maps_sampling_and_response_format() {
        let body = with(
            chat(json!([{"role": "user", "content": "x"}])),
            json!({"max_tokens": 100, "temperature": 0.2, "top_p": 0.9, "stop": "END", "seed": 7,
                   "response_format": {"type": "json_schema", "json_schema": {"name": "r", "strict": true,
                        "schema": {"type": "object", "properties": {"a": {"const": 1}}, "additionalProperties": false}}}}),
        );
        assert_eq!(
            build(body)["generationConfig"],
            json!({"maxOutputTokens": 100, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"], "seed": 7,
                   "responseMimeType": "application/json",
                   "responseSchema": {"type": "object", "properties": {"a": {"type": "string", "enum": ["1"]}}}})
        );
        let body = with(
            chat(json!([{"role": "user", "content": "x"}])),
            json!({"max_tokens": 100, "max_completion_tokens": 50, "stop": ["a", "b"], "response_format": {"type": "json_object"}}),
        );
        assert_eq!(
            build(body)["generationConfig"],
            json!({"maxOutputTokens": 50, "stopSequences": ["a", "b"], "responseMimeType": "application/json"})
        );
        let body = with(
            chat(json!([{"role": "user", "content": "x"}])),
            json!({"response_format": {"type": "text"}}),
        );
        assert!(build(body).get("generationConfig").is_none());
    }

    #[test]
    fn image_models_get_no_thinking_config() {
        let body =
            with(chat(json!([{"role": "user", "content": "a cat"}])), json!({"reasoning_effort": "high"}));
        let (got, _) = build_for("gemini-3-pro-image", body, &[]).unwrap();
        assert!(got["generationConfig"].get("thinkingConfig").is_none(), "{got}");
        assert_eq!(got["generationConfig"]["responseModalities"], json!(["TEXT", "IMAGE"]), "{got}");
    }

    #[test]
    fn reasoning_effort_sets_budget_and_keeps_max_above_it() {
        let cases = [
            (
                "gemini-3-flash",
                "none",
                None,
                json!({"thinkingConfig": {"includeThoughts": false, "thinkingBudget": 0}}),
            ),
            (
                "gemini-3-flash",
                "minimal",
                None,
                json!({"thinkingConfig": {"includeThoughts": true, "thinkingBudget": 1024}}),
            ),
            (
                "gemini-3-flash",
                "low",
                Some(4000),
                json!({"maxOutputTokens": 4000, "thinkingConfig": {"includeThoughts": true, "thinkingBudget": 1024}}),
            ),
            (
                "gemini-3-flash",
                "medium",
                Some(1000),
                json!({"maxOutputTokens": 9192, "thinkingConfig": {"includeThoughts": true, "thinkingBudget": 8192}}),
            ),
            (
                "gemini-3-flash",
                "high",
                Some(60000),
                json!({"maxOutputTokens": 60000, "thinkingConfig": {"includeThoughts": true, "thinkingBudget": 24576}}),
            ),
            (
                "gemini-3-flash",
                "xhigh",
                Some(32768),
                json!({"maxOutputTokens": 65536, "thinkingConfig": {"includeThoughts": true, "thinkingBudget": 32768}}),
            ),
            (
                "gemini-3-flash",
                "auto",
                None,
                json!({"thinkingConfig": {"includeThoughts": true, "thinkingBudget": -1}}),
            ),
            (
                "claude-opus-4-6-thinking",
                "high",
                None,
                json!({"maxOutputTokens": 64000, "thinkingConfig": {"includeThoughts": true, "thinkingBudget": 24576}}),
            ),
        ];
        for (model, effort, max, want) in cases {
            let mut body =
                with(chat(json!([{"role": "user", "content": "x"}])), json!({"reasoning_effort": effort}));
            if let Some(max) = max {
                body["max_completion_tokens"] = json!(max);
            }
            let (got, _) = build_for(model, body, &[]).unwrap();
            assert_eq!(got["generationConfig"], want, "{model} {effort}");
        }
        assert_eq!(
            err(with(chat(json!([{"role": "user", "content": "x"}])), json!({"reasoning_effort": "max"})))
                .param(),
            Some("reasoning_effort")
        );
    }

    #[test]
    fn bad_shapes_name_the_field_at_fault() {
        let cases: Vec<(Value, Option<&str>, &str)> = vec![
            (json!({"messages": [{"role": "user", "content": "x"}]}), Some("model"), "`model` is required"),
            (json!({"model": "m"}), Some("messages"), "`messages` is required"),
            (json!({"model": "m", "messages": []}), Some("messages"), "at least one message"),
            (json!({"model": "m", "messages": {"role": "user"}}), Some("messages"), "expected an array"),
            (
                with(chat(json!([{"role": "user", "content": "x"}])), json!({"temperature": "hot"})),
                Some("temperature"),
                "Invalid type for `temperature`: expected a number",
            ),
            (
                with(chat(json!([{"role": "user", "content": "x"}])), json!({"max_tokens": -5})),
                Some("max_tokens"),
                "non-negative integer",
            ),
            (
                chat(json!([{"role": "robot", "content": "x"}])),
                Some("messages[0].role"),
                "`robot`, expected one of",
            ),
            (chat(json!([{"role": "user", "content": 5}])), Some("messages[0].content"), "Invalid type"),
            (
                chat(json!([{"role": "user", "content": [{"type": "text", "text": 1}]}])),
                Some("messages[0].content[0].text"),
                "expected a string",
            ),
            (chat(json!([{"content": "x"}])), Some("messages[0]"), "role"),
            (chat(json!([{"role": "user"}])), Some("messages[0].content"), "needs `content`"),
            (
                chat(json!([{"role": "system", "content": "only system"}])),
                Some("messages"),
                "user, assistant or tool",
            ),
            (
                chat(json!([{"role": "user", "content": [{"type": "video", "video": {}}]}])),
                Some("messages[0].content[0].type"),
                "not supported",
            ),
            (
                chat(
                    json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}]),
                ),
                Some("messages[0].content[0].image_url"),
                "http(s)",
            ),
            (
                chat(json!([{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}])),
                Some("messages[0].content[0].file.file_id"),
                "file_data",
            ),
            (
                chat(
                    json!([{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "nope", "content": "r"}]),
                ),
                Some("messages[1].tool_call_id"),
                "does not match",
            ),
            (
                chat(json!([{"role": "user", "content": "x"}, {"role": "tool", "content": "r"}])),
                Some("messages[1].tool_call_id"),
                "needs `tool_call_id`",
            ),
            (
                chat(
                    json!([{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{oops"}}]}]),
                ),
                Some("messages[1].tool_calls[0].function.arguments"),
                "JSON-encoded object",
            ),
            (
                with(
                    chat(json!([{"role": "user", "content": "x"}])),
                    json!({"tools": [{"type": "function", "function": {"name": "f", "parameters": "nope"}}]}),
                ),
                Some("tools[0].function.parameters"),
                "JSON Schema object",
            ),
            (
                with(
                    chat(json!([{"role": "user", "content": "x"}])),
                    json!({"tools": [{"type": "web_search"}]}),
                ),
                Some("tools[0].type"),
                "only \"function\"",
            ),
        ];
        for (body, param, text) in cases {
            let e = err(body.clone());
            assert_eq!(e.param(), param, "{body} -> {e}");
            assert!(e.to_string().contains(text), "{body} -> {e}");
        }
    }
}
