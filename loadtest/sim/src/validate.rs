//! Request validation the way Google's server does it (PROTOCOL §2, §5, §9, §12): the envelope, turn order,
//! tool schemas, thinking budget, Gemini 3 thought signatures and Claude's Vertex rules. Messages are the
//! upstream's own texts where they are known verbatim, because gateways match on them.

use serde_json::{json, Value};

use crate::error::ApiError;
use crate::models::Family;
use crate::prompt::{field, thinking_enabled};
use crate::signature::{SigFamily, Signer, Verdict};

/// Schema keys the v1internal `Schema` message knows (OpenAPI subset), in both casings.
const SCHEMA_KEYS: &[&str] = &[
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "max_items",
    "minItems",
    "min_items",
    "properties",
    "required",
    "minProperties",
    "min_properties",
    "maxProperties",
    "max_properties",
    "minLength",
    "min_length",
    "maxLength",
    "max_length",
    "pattern",
    "example",
    "anyOf",
    "any_of",
    "propertyOrdering",
    "property_ordering",
    "items",
    "minimum",
    "maximum",
];

/// The Gemini 3 missing-signature text, verbatim from the upstream.
pub fn missing_signature_message(name: &str, position: usize) -> String {
    format!(
        "Function call is missing a thought_signature in functionCall parts. This is required for tools to work \
         correctly, and missing thought_signature may lead to degraded model performance. Additional data, \
         function call `default_api:{name}` , position {position}. Please refer to \
         https://ai.google.dev/gemini-api/docs/thought-signatures for more details."
    )
}

/// The envelope fields the sim routes on.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub model: String,
}

/// Checks the envelope: known model (404), the caller's own project (403), a `request` with `contents`.
pub fn envelope(
    body: &Value,
    models: &[String],
    account_project: Option<&str>,
) -> Result<Envelope, ApiError> {
    if !body.is_object() {
        return Err(ApiError::InvalidArgument("Invalid JSON payload received. Expected an object.".into()));
    }
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::InvalidArgument("Request contains an invalid argument.".into()))?;
    if !models.iter().any(|m| m == model) {
        return Err(ApiError::NotFound("Requested entity was not found.".into()));
    }
    let project = body.get("project").and_then(Value::as_str);
    if project.is_none() || project != account_project {
        let p = project.unwrap_or("");
        return Err(ApiError::PermissionDenied {
            message: format!(
                "Permission 'cloudaicompanion.companions.generateChat' denied on resource \
                 '//cloudaicompanion.googleapis.com/projects/{p}/locations/global' (or it may not exist)."
            ),
            details: vec![ApiError::error_info(
                "IAM_PERMISSION_DENIED",
                json!({"permission": "cloudaicompanion.companions.generateChat",
                       "resource": format!("projects/{p}/locations/global")}),
            )],
        });
    }
    Ok(Envelope { model: model.to_string() })
}

/// Checks the inner `request` for `model`; `prompt_tokens` is the sim's estimate of its size.
pub fn request(
    request: Option<&Value>,
    model: &str,
    signer: &Signer,
    prompt_tokens: u64,
) -> Result<(), ApiError> {
    let request = request.filter(|r| r.is_object()).ok_or_else(|| {
        ApiError::InvalidArgument("Invalid JSON payload received. Missing field \"request\".".into())
    })?;
    let contents =
        request.get("contents").and_then(Value::as_array).filter(|c| !c.is_empty()).ok_or_else(|| {
            ApiError::InvalidArgument("* GenerateContentRequest.contents: contents is not specified\n".into())
        })?;
    for (i, c) in contents.iter().enumerate() {
        if !c.get("parts").is_some_and(Value::is_array) {
            return Err(ApiError::InvalidArgument(format!(
                "* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.\n"
            )));
        }
        match c.get("role").and_then(Value::as_str) {
            None | Some("user") | Some("model") | Some("function") => {}
            Some(other) => {
                return Err(ApiError::InvalidArgument(format!(
                    "Invalid JSON payload received. Please use a valid role: user, model. Got \"{other}\"."
                )))
            }
        }
    }
    if contents[0].get("role").and_then(Value::as_str) == Some("model") {
        return Err(ApiError::InvalidArgument(
            "Please ensure that multiturn requests alternate between user and model, starting with a user turn."
                .into(),
        ));
    }
    tool_schemas(request)?;
    thinking_budget(request, model)?;
    match Family::of(model) {
        Family::Gemini3 => gemini_signatures(contents, signer, true),
        Family::Gemini2 => gemini_signatures(contents, signer, false),
        Family::Claude => claude(contents, signer, prompt_tokens, thinking_enabled(model, request)),
        Family::Other => Ok(()),
    }
}

/// "Unknown name" for schema keys outside the supported subset, recursing into properties, items and anyOf.
fn tool_schemas(request: &Value) -> Result<(), ApiError> {
    let Some(tools) = request.get("tools").and_then(Value::as_array) else {
        return Ok(());
    };
    let mut errors = Vec::new();
    for (t, tool) in tools.iter().enumerate() {
        let Some(decls) =
            field(tool, "functionDeclarations", "function_declarations").and_then(Value::as_array)
        else {
            continue;
        };
        for (d, decl) in decls.iter().enumerate() {
            let name = decl.get("name").and_then(Value::as_str).unwrap_or("");
            if !valid_function_name(name) {
                return Err(ApiError::InvalidArgument(format!(
                    "* GenerateContentRequest.tools[{t}].function_declarations[{d}].name: Invalid function name. \
                     Must start with a letter or an underscore. Must be alphameric (a-z, A-Z, 0-9), underscores (_), \
                     dots (.), colons (:), or dashes (-), with a maximum length of 64.\n"
                )));
            }
            if let Some(params) = decl.get("parameters") {
                let path = format!("request.tools[{t}].function_declarations[{d}].parameters");
                unknown_schema_keys(params, &path, &mut errors);
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::InvalidArgument(errors.join("\n")))
    }
}

fn valid_function_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first_ok
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
}

fn unknown_schema_keys(schema: &Value, path: &str, errors: &mut Vec<String>) {
    let Some(obj) = schema.as_object() else {
        return;
    };
    for key in obj.keys() {
        if !SCHEMA_KEYS.contains(&key.as_str()) {
            errors.push(format!(
                "Invalid JSON payload received. Unknown name \"{key}\" at '{path}': Cannot find field."
            ));
        }
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (i, (_, sub)) in props.iter().enumerate() {
            unknown_schema_keys(sub, &format!("{path}.properties[{i}].value"), errors);
        }
    }
    if let Some(items) = obj.get("items") {
        unknown_schema_keys(items, &format!("{path}.items"), errors);
    }
    if let Some(any) = field(schema, "anyOf", "any_of").and_then(Value::as_array) {
        for (i, sub) in any.iter().enumerate() {
            unknown_schema_keys(sub, &format!("{path}.any_of[{i}]"), errors);
        }
    }
}

/// `thinkingBudget >= maxOutputTokens` is rejected (both set, budget positive).
fn thinking_budget(request: &Value, model: &str) -> Result<(), ApiError> {
    let Some(gen) = field(request, "generationConfig", "generation_config") else {
        return Ok(());
    };
    let max = field(gen, "maxOutputTokens", "max_output_tokens").and_then(Value::as_i64);
    let budget = field(gen, "thinkingConfig", "thinking_config")
        .and_then(|t| field(t, "thinkingBudget", "thinking_budget"))
        .and_then(Value::as_i64);
    match (max, budget) {
        (Some(max), Some(budget)) if budget > 0 && budget >= max => {
            Err(ApiError::InvalidArgument(if Family::of(model) == Family::Claude {
                vertex_message(&format!(
                    "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation \
                     at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window-size ({max} <= {budget})"
                ))
            } else {
                format!(
                    "Unable to submit request because the thinking budget ({budget}) must be less than \
                     max_output_tokens ({max})."
                )
            }))
        }
        _ => Ok(()),
    }
}

fn signature_of(part: &Value) -> Option<&str> {
    field(part, "thoughtSignature", "thought_signature").and_then(Value::as_str)
}

fn parts_of(content: &Value) -> &[Value] {
    content.get("parts").and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// Gemini: every signature present must be genuine; with `required`, the first functionCall of each turn must
/// carry one.
fn gemini_signatures(contents: &[Value], signer: &Signer, required: bool) -> Result<(), ApiError> {
    for (i, content) in contents.iter().enumerate() {
        let mut first_call = true;
        for part in parts_of(content) {
            let call = field(part, "functionCall", "function_call");
            match signature_of(part) {
                Some(sig) => match signer.check(sig) {
                    Verdict::Sentinel | Verdict::Issued(SigFamily::Gemini) => {}
                    _ => return Err(ApiError::InvalidArgument("Corrupted thought signature.".into())),
                },
                None if required && first_call && call.is_some() => {
                    let name = call.and_then(|c| c.get("name")).and_then(Value::as_str).unwrap_or("");
                    return Err(ApiError::InvalidArgument(missing_signature_message(name, i)));
                }
                None => {}
            }
            if call.is_some() {
                first_call = false;
            }
        }
    }
    Ok(())
}

/// Claude via Vertex: the error text is Anthropic's JSON, carried inside Google's message.
fn vertex_message(message: &str) -> String {
    let request_id = format!("req_vrtx_011C{}", &uuid::Uuid::new_v4().simple().to_string()[..20]);
    json!({"type":"error","error":{"type":"invalid_request_error","message":message},"request_id":request_id})
        .to_string()
}

/// Anthropic's text when a thinking conversation's assistant turn does not open with a thinking block.
fn thinking_first_message(i: usize, found: &str) -> String {
    format!(
        "messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{found}`. When \
         `thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding the \
         lastmost set of `tool_use` and `tool_result` blocks). We recommend you include thinking blocks from \
         previous turns. To avoid this requirement, disable `thinking`. Please consult our documentation at \
         https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
    )
}

/// With thinking on (PROTOCOL §2 "Claude signature placement", §9 rule 3), a model turn with tool calls must
/// open with a signed thought part, and the signature lives on thought parts only: Google turns each signed
/// thought into one Anthropic `thinking` block, and a `tool_use` block has no place for one. Text-only turns
/// may omit thinking, as Anthropic lets earlier turns omit theirs.
fn claude_thinking_turn(i: usize, content: &Value) -> Result<(), String> {
    let parts = parts_of(content);
    let is_thought = |p: &Value| p.get("thought").and_then(Value::as_bool) == Some(true);
    let has_call = parts.iter().any(|p| field(p, "functionCall", "function_call").is_some());
    if content.get("role").and_then(Value::as_str) != Some("model") {
        return Ok(());
    }
    if has_call {
        match parts.first() {
            Some(p) if is_thought(p) && signature_of(p).is_some() => {}
            Some(p) if is_thought(p) => {
                return Err(format!("messages.{i}.content.0.thinking.signature: Field required"))
            }
            Some(p) if field(p, "functionCall", "function_call").is_some() => {
                return Err(thinking_first_message(i, "tool_use"))
            }
            _ => return Err(thinking_first_message(i, "text")),
        }
    }
    match parts.iter().position(|p| !is_thought(p) && signature_of(p).is_some()) {
        Some(j) => Err(format!("messages.{i}.content.{j}: Invalid `signature` in `thinking` block")),
        None => Ok(()),
    }
}

fn claude(contents: &[Value], signer: &Signer, prompt_tokens: u64, thinking: bool) -> Result<(), ApiError> {
    let invalid = |m: String| Err(ApiError::InvalidArgument(vertex_message(&m)));
    if prompt_tokens > 200_000 {
        return invalid(format!("prompt is too long: {prompt_tokens} tokens > 200000 maximum"));
    }
    for (i, content) in contents.iter().enumerate() {
        if thinking {
            claude_thinking_turn(i, content).or_else(invalid)?;
        }
        for (j, part) in parts_of(content).iter().enumerate() {
            let thought = part.get("thought").and_then(Value::as_bool) == Some(true);
            if let Some(sig) = signature_of(part) {
                // A signed thought is one Anthropic thinking block: its signature covers its text.
                let signed_text =
                    if thought { part.get("text").and_then(Value::as_str).unwrap_or("") } else { "" };
                if signer.check_for_text(sig, signed_text) != Verdict::Issued(SigFamily::Claude) {
                    return invalid(format!(
                        "messages.{i}.content.{j}: Invalid `signature` in `thinking` block"
                    ));
                }
            } else if thought {
                return invalid(format!("messages.{i}.content.{j}.thinking.signature: Field required"));
            }
            if !thought && part.get("text").and_then(Value::as_str).is_some_and(|t| t.trim().is_empty()) {
                return invalid(format!(
                    "messages.{i}.content.{j}.text: text content blocks must contain non-whitespace text"
                ));
            }
        }
        let calls: Vec<String> = parts_of(content)
            .iter()
            .filter_map(|p| field(p, "functionCall", "function_call"))
            .map(|c| c.get("id").or_else(|| c.get("name")).and_then(Value::as_str).unwrap_or("").to_string())
            .collect();
        if calls.is_empty() {
            continue;
        }
        let answered: Vec<String> = contents
            .get(i + 1)
            .map(parts_of)
            .unwrap_or(&[])
            .iter()
            .filter_map(|p| field(p, "functionResponse", "function_response"))
            .flat_map(|r| {
                ["id", "name"]
                    .iter()
                    .filter_map(|k| r.get(*k).and_then(Value::as_str).map(String::from))
                    .collect::<Vec<_>>()
            })
            .collect();
        let orphans: Vec<&str> = calls.iter().filter(|c| !answered.contains(c)).map(String::as_str).collect();
        if !orphans.is_empty() {
            return invalid(format!(
                "messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: {}. \
                 Each `tool_use` block must have a corresponding `tool_result` block in the next message.",
                orphans.join(", ")
            ));
        }
    }
    Ok(())
}

/// `countTokens`: `{"request":{"model":"models/<id>","contents":[…]}}` and nothing else; returns the model id.
pub fn count_tokens(body: &Value, models: &[String]) -> Result<String, ApiError> {
    let Some(obj) = body.as_object() else {
        return Err(ApiError::InvalidArgument("Invalid JSON payload received. Expected an object.".into()));
    };
    if let Some(key) = obj.keys().find(|k| k.as_str() != "request") {
        return Err(ApiError::InvalidArgument(format!(
            "Invalid JSON payload received. Unknown name \"{key}\": Cannot find field."
        )));
    }
    let request = obj.get("request").and_then(Value::as_object).ok_or_else(|| {
        ApiError::InvalidArgument("Invalid JSON payload received. Missing field \"request\".".into())
    })?;
    const ALLOWED: &[&str] = &[
        "model",
        "contents",
        "systemInstruction",
        "system_instruction",
        "tools",
        "generationConfig",
        "generation_config",
    ];
    if let Some(key) = request.keys().find(|k| !ALLOWED.contains(&k.as_str())) {
        return Err(ApiError::InvalidArgument(format!(
            "Invalid JSON payload received. Unknown name \"{key}\" at 'request': Cannot find field."
        )));
    }
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::InvalidArgument("Request contains an invalid argument.".into()))?;
    let id = model.strip_prefix("models/").unwrap_or(model);
    if !models.iter().any(|m| m == id) {
        return Err(ApiError::NotFound("Requested entity was not found.".into()));
    }
    if !request.get("contents").is_some_and(Value::is_array) {
        return Err(ApiError::InvalidArgument(
            "* CountTokensRequest.contents: contents is not specified\n".into(),
        ));
    }
    Ok(id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        Signer::new("k")
    }

    fn user(text: &str) -> Value {
        json!({"role":"user","parts":[{"text":text}]})
    }

    fn call_turn(sig: Option<&str>) -> Value {
        let mut part = json!({"functionCall":{"name":"read_file","args":{}}});
        if let Some(s) = sig {
            part["thoughtSignature"] = json!(s);
        }
        json!({"role":"model","parts":[part, {"functionCall":{"name":"ls","args":{}}}]})
    }

    fn response_turn() -> Value {
        json!({"role":"user","parts":[{"functionResponse":{"name":"read_file","response":{"result":"x"}}},
                                       {"functionResponse":{"name":"ls","response":{"result":"y"}}}]})
    }

    fn check(model: &str, contents: Vec<Value>) -> Result<(), ApiError> {
        request(Some(&json!({ "contents": contents })), model, &signer(), 10)
    }

    #[test]
    fn missing_signature_is_the_verbatim_400() {
        let e = check("gemini-3-flash", vec![user("hi"), call_turn(None), response_turn()]);
        match e {
            Err(ApiError::InvalidArgument(m)) => {
                assert_eq!(m, missing_signature_message("read_file", 1));
                assert!(m.contains("function call `default_api:read_file` , position 1."));
            }
            other => panic!("unexpected {other:?}"),
        }
        // Gemini 2 does not require it.
        assert!(check("gemini-2.5-flash", vec![user("hi"), call_turn(None), response_turn()]).is_ok());
    }

    #[test]
    fn sentinel_and_issued_signatures_pass_strangers_fail() {
        let s = signer();
        let issued = s.issue(SigFamily::Gemini);
        for sig in ["skip_thought_signature_validator", issued.as_str()] {
            assert!(check("gemini-3-flash", vec![user("hi"), call_turn(Some(sig)), response_turn()]).is_ok());
        }
        let e = check("gemini-3-flash", vec![user("hi"), call_turn(Some("Eforged")), response_turn()]);
        assert!(matches!(e, Err(ApiError::InvalidArgument(m)) if m.contains("Corrupted thought signature")));
    }

    #[test]
    fn claude_rules() {
        let e = check(
            "claude-sonnet-4-6",
            vec![user("hi"), call_turn(Some("skip_thought_signature_validator")), response_turn()],
        );
        assert!(
            matches!(e, Err(ApiError::InvalidArgument(m)) if m.contains("Invalid `signature` in `thinking` block") && m.contains("req_vrtx_"))
        );
        let e = check("claude-sonnet-4-6", vec![user("")]);
        assert!(matches!(e, Err(ApiError::InvalidArgument(m)) if m.contains("non-whitespace")));
        let e = check("claude-sonnet-4-6", vec![user("hi"), call_turn(None)]);
        assert!(matches!(e, Err(ApiError::InvalidArgument(m)) if m.contains("`tool_use` ids were found")));
        assert!(check("claude-sonnet-4-6", vec![user("hi"), call_turn(None), response_turn()]).is_ok());
        let e = request(Some(&json!({"contents":[user("hi")]})), "claude-sonnet-4-6", &signer(), 200_001);
        assert!(
            matches!(e, Err(ApiError::InvalidArgument(m)) if m.contains("prompt is too long: 200001 tokens > 200000 maximum"))
        );
    }

    /// A Claude model turn: an optional leading thought signed with `thought_sig`, then one call that carries
    /// `call_sig`.
    fn claude_call_turn(thought_sig: Option<&str>, call_sig: Option<&str>) -> Value {
        let mut parts = Vec::new();
        if let Some(s) = thought_sig {
            parts.push(json!({"text": "let me look", "thought": true, "thoughtSignature": s}));
        }
        let mut call = json!({"functionCall": {"name": "read_file", "args": {}, "id": "toolu_1"}});
        if let Some(s) = call_sig {
            call["thoughtSignature"] = json!(s);
        }
        parts.push(call);
        json!({"role": "model", "parts": parts})
    }

    fn claude_response() -> Value {
        json!({"role":"user","parts":[{"functionResponse":{"name":"read_file","id":"toolu_1","response":{"result":"x"}}}]})
    }

    fn claude_error(model: &str, turn: Value) -> String {
        match check(model, vec![user("hi"), turn, claude_response()]) {
            Err(ApiError::InvalidArgument(m)) => m,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn claude_thinking_turns_open_with_a_signed_thought() {
        let s = signer();
        // Signs the thought text of `claude_call_turn`.
        let claude = s.issue_for_text(SigFamily::Claude, "let me look");
        let on_call = s.issue(SigFamily::Claude);
        let gemini = s.issue(SigFamily::Gemini);
        let thinking = "claude-opus-4-6-thinking";
        // The defect's shape: the signature on the call, no leading thought.
        let m = claude_error(thinking, claude_call_turn(None, Some(&claude)));
        assert!(m.contains(
            "messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, but found `tool_use`"
        ));
        assert!(m.contains("req_vrtx_"), "Vertex carries Anthropic's error JSON: {m}");
        let m = claude_error(thinking, claude_call_turn(None, None));
        assert!(m.contains("but found `tool_use`"), "{m}");
        // A signed thought first, the call unsigned: what Claude issued, put back where it was.
        assert!(check(thinking, vec![user("hi"), claude_call_turn(Some(&claude), None), claude_response()])
            .is_ok());
        // The thinking text is signed too: a restored block must carry it unchanged.
        let signed = s.issue_for_text(SigFamily::Claude, "let me look");
        assert!(check(thinking, vec![user("hi"), claude_call_turn(Some(&signed), None), claude_response()])
            .is_ok());
        let mut edited = claude_call_turn(Some(&signed), None);
        edited["parts"][0]["text"] = json!("let me look again");
        assert!(claude_error(thinking, edited)
            .contains("messages.1.content.0: Invalid `signature` in `thinking` block"));
        // A signature on the call as well is misplaced.
        let m = claude_error(thinking, claude_call_turn(Some(&claude), Some(&claude)));
        assert!(m.contains("messages.1.content.1: Invalid `signature` in `thinking` block"), "{m}");
        // Foreign and sentinel signatures on the thought.
        for bad in [gemini.as_str(), "skip_thought_signature_validator"] {
            let m = claude_error(thinking, claude_call_turn(Some(bad), None));
            assert!(m.contains("Invalid `signature` in `thinking` block"), "{m}");
        }
        // Text before the thought.
        let mut turn = claude_call_turn(Some(&claude), None);
        turn["parts"].as_array_mut().expect("parts").insert(0, json!({"text": "calling"}));
        assert!(claude_error(thinking, turn).contains("but found `text`"));
        // Text-only turns may omit thinking.
        let plain = json!({"role":"model","parts":[{"text":"hello"}]});
        assert!(check(thinking, vec![user("hi"), plain, user("again")]).is_ok());
        // Thinking asked for by config on a plain model name counts too; without it the rule is off.
        let req = json!({"contents": [user("hi"), claude_call_turn(None, Some(&claude)), claude_response()],
                         "generationConfig": {"thinkingConfig": {"includeThoughts": true, "thinkingBudget": 1024}}});
        assert!(request(Some(&req), "claude-sonnet-4-6", &s, 10).is_err());
        assert!(check(
            "claude-sonnet-4-6",
            vec![user("hi"), claude_call_turn(None, Some(&on_call)), claude_response()]
        )
        .is_ok());
    }

    #[test]
    fn first_turn_must_be_user() {
        let e = check("gemini-3-flash", vec![json!({"role":"model","parts":[{"text":"x"}]}), user("hi")]);
        assert!(matches!(e, Err(ApiError::InvalidArgument(_))));
        assert!(matches!(
            request(Some(&json!({"contents":[]})), "gemini-3-flash", &signer(), 1),
            Err(ApiError::InvalidArgument(_))
        ));
    }

    #[test]
    fn unknown_schema_keys_are_named_with_their_path() {
        let req = json!({"contents":[user("hi")],"tools":[{"functionDeclarations":[{"name":"f","parameters":
            {"type":"object","additionalProperties":false,"properties":{"a":{"type":"string"},
             "b":{"type":"array","items":{"type":"string","const":"x"}}}}}]}]});
        match request(Some(&req), "gemini-3-flash", &signer(), 1) {
            Err(ApiError::InvalidArgument(m)) => {
                assert!(m.starts_with("Invalid JSON payload received. Unknown name \"additionalProperties\" at 'request.tools[0].function_declarations[0].parameters': Cannot find field."));
                assert!(m.contains("Unknown name \"const\" at 'request.tools[0].function_declarations[0].parameters.properties[1].value.items'"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn budget_must_be_below_max() {
        let req = json!({"contents":[user("hi")],"generationConfig":{"maxOutputTokens":100,"thinkingConfig":{"thinkingBudget":100}}});
        assert!(request(Some(&req), "gemini-3-flash", &signer(), 1).is_err());
        let req = json!({"contents":[user("hi")],"generationConfig":{"maxOutputTokens":100,"thinkingConfig":{"thinkingBudget":-1}}});
        assert!(request(Some(&req), "gemini-3-flash", &signer(), 1).is_ok());
    }

    #[test]
    fn envelope_checks() {
        let models = vec!["gemini-3-flash".to_string()];
        let ok = json!({"model":"gemini-3-flash","project":"p","request":{}});
        assert!(envelope(&ok, &models, Some("p")).is_ok());
        assert!(matches!(envelope(&ok, &models, Some("q")), Err(ApiError::PermissionDenied { .. })));
        let bad = json!({"model":"gpt-9","project":"p"});
        assert!(matches!(envelope(&bad, &models, Some("p")), Err(ApiError::NotFound(_))));
    }

    #[test]
    fn count_tokens_shape() {
        let models = vec!["gemini-3-flash".to_string()];
        let ok = json!({"request":{"model":"models/gemini-3-flash","contents":[]}});
        assert_eq!(count_tokens(&ok, &models).ok().as_deref(), Some("gemini-3-flash"));
        let e = count_tokens(&json!({"model":"x","request":{}}), &models);
        assert!(
            matches!(e, Err(ApiError::InvalidArgument(m)) if m == "Invalid JSON payload received. Unknown name \"model\": Cannot find field.")
        );
        let e = count_tokens(
            &json!({"request":{"model":"models/gemini-3-flash","contents":[],"safetySettings":[]}}),
            &models,
        );
        assert!(
            matches!(e, Err(ApiError::InvalidArgument(m)) if m.contains("Unknown name \"safetySettings\" at 'request'"))
        );
    }
}
