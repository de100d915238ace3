//! Bounds on every count a client controls inside a request body.
//!
//! The body size is bounded by the proxy (`limits.max_request_body`, a 413) and its nesting by
//! [`crate::inner::body`]; inside those, a hostile client could still send a million tools, messages or enum
//! values, or a model name of megabytes that is then copied into logs and metrics. Each count below is far
//! above what a real client sends (a coding agent declares a few dozen tools; the largest real enums are
//! country or timezone lists of a few hundred) and is checked right after parsing, so the transform's work
//! stays bounded however the body is built. A request over a bound gets a 400 naming the field.

use crate::inner::TransformError;

/// Longest model name accepted, in bytes (real names are under 64).
pub const MAX_MODEL_NAME_BYTES: usize = 256;
/// Most tools (function declarations) in one request.
pub const MAX_TOOLS: usize = 512;
pub use crate::schema::MAX_ENUM_VALUES;
/// Most messages (Gemini: `contents` turns) in one request.
pub const MAX_MESSAGES: usize = 10_000;
/// Most tool calls in the whole history of one request (OpenAI `tool_calls`, Anthropic `tool_use` blocks,
/// Gemini `functionCall` parts).
pub const MAX_TOOL_CALLS: usize = 10_000;

/// `model` must be at most [`MAX_MODEL_NAME_BYTES`] long.
pub fn check_model_name(model: &str, param: &str) -> Result<(), TransformError> {
    if model.len() > MAX_MODEL_NAME_BYTES {
        return Err(TransformError::invalid(
            param,
            format!(
                "The model name is {} bytes long; at most {MAX_MODEL_NAME_BYTES} are accepted.",
                model.len()
            ),
        ));
    }
    Ok(())
}

/// A count of `what` (the field, e.g. `tools`) must be at most `max`.
pub(crate) fn check_count(count: usize, max: usize, param: &str, what: &str) -> Result<(), TransformError> {
    if count > max {
        return Err(TransformError::invalid(
            param,
            format!("The request has {count} {what}; at most {max} are accepted."),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inner::{Target, ToolNameMap};
    use crate::protocol::{anthropic, gemini, openai_chat};
    use crate::schema::SchemaError;
    use crate::signature::NoSignatures;
    use serde_json::{json, Value};

    const TARGET: Target = Target { upstream_model: "gemini-3-flash", session_id: "-1" };

    /// Parse and build through each protocol; the error's `(param, message)` or `None` when accepted.
    fn openai(body: Value) -> Option<(Option<String>, String)> {
        let mut bytes = serde_json::to_vec(&body).unwrap();
        let built = openai_chat::parse_chat_request(&mut bytes)
            .and_then(|req| openai_chat::build_inner_request(&req, &TARGET, &NoSignatures));
        built.err().map(|e| (e.param().map(str::to_owned), e.to_string()))
    }

    fn anthropic(body: Value) -> Option<(Option<String>, String)> {
        let mut bytes = serde_json::to_vec(&body).unwrap();
        let built = anthropic::parse_messages_request(&mut bytes)
            .and_then(|req| anthropic::build_inner_request(&req, &TARGET, &NoSignatures));
        built.err().map(|e| (e.param().map(str::to_owned), e.to_string()))
    }

    fn gemini(body: Value) -> Option<(Option<String>, String)> {
        let mut bytes = serde_json::to_vec(&body).unwrap();
        let built = gemini::parse_generate_request(&mut bytes)
            .and_then(|req| gemini::build_inner_request(req, &TARGET, &NoSignatures));
        built.err().map(|e| (e.param().map(str::to_owned), e.to_string()))
    }

    fn oa(extra: Value) -> Value {
        let mut body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    }

    fn an(extra: Value) -> Value {
        let mut body = json!({"model": "claude-sonnet-4-5", "max_tokens": 64,
            "messages": [{"role": "user", "content": "hi"}]});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    }

    fn ge(extra: Value) -> Value {
        let mut body = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    }

    fn rejected(outcome: Option<(Option<String>, String)>, param: &str, says: &str) {
        let (got_param, message) = outcome.expect("the request was accepted");
        assert_eq!(got_param.as_deref(), Some(param), "{message}");
        assert!(message.contains(says), "{message}");
    }

    #[test]
    fn a_long_model_name_is_a_400() {
        let model = "m".repeat(MAX_MODEL_NAME_BYTES + 1);
        rejected(openai(oa(json!({"model": model}))), "model", "at most 256");
        rejected(anthropic(an(json!({"model": model}))), "model", "at most 256");
        assert!(openai(oa(json!({"model": "m".repeat(MAX_MODEL_NAME_BYTES)}))).is_none());
    }

    #[test]
    fn too_many_tools_is_a_400() {
        let names = |n: usize| (0..n).map(|i| format!("tool_{i}")).collect::<Vec<_>>();
        let oa_tools =
            |n| names(n).into_iter().map(|name| json!({"type": "function", "function": {"name": name}}));
        let an_tools =
            |n| names(n).into_iter().map(|name| json!({"name": name, "input_schema": {"type": "object"}}));
        let ge_decls = |n| names(n).into_iter().map(|name| json!({"name": name})).collect::<Vec<_>>();
        assert!(openai(oa(json!({"tools": oa_tools(MAX_TOOLS).collect::<Vec<_>>()}))).is_none());
        rejected(
            openai(oa(json!({"tools": oa_tools(MAX_TOOLS + 1).collect::<Vec<_>>()}))),
            "tools",
            "513 tools",
        );
        rejected(
            anthropic(an(json!({"tools": an_tools(MAX_TOOLS + 1).collect::<Vec<_>>()}))),
            "tools",
            "513 tools",
        );
        assert!(gemini(ge(json!({"tools": [{"functionDeclarations": ge_decls(MAX_TOOLS)}]}))).is_none());
        let split = json!({"tools": [{"functionDeclarations": ge_decls(300)}, {"functionDeclarations": ge_decls(213)}]});
        rejected(gemini(ge(split)), "tools", "513 function declarations");
        let allowed: Vec<Value> = names(MAX_TOOLS + 1)
            .into_iter()
            .map(|n| json!({"type": "function", "function": {"name": n}}))
            .collect();
        let choice = json!({"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": allowed}});
        rejected(
            openai(oa(json!({"tools": oa_tools(1).collect::<Vec<_>>(), "tool_choice": choice}))),
            "tool_choice.allowed_tools.tools",
            "513 allowed tools",
        );
    }

    #[test]
    fn too_many_messages_is_a_400() {
        let many = |message: Value| vec![message; MAX_MESSAGES + 1];
        rejected(
            openai(oa(json!({"messages": many(json!({"role": "user", "content": "hi"}))}))),
            "messages",
            "10001 messages",
        );
        rejected(
            anthropic(an(json!({"messages": many(json!({"role": "user", "content": "hi"}))}))),
            "messages",
            "10001 messages",
        );
        rejected(
            gemini(ge(json!({"contents": many(json!({"role": "user", "parts": [{"text": "hi"}]}))}))),
            "contents",
            "10001 turns",
        );
        let at_bound = vec![json!({"role": "user", "content": "hi"}); MAX_MESSAGES];
        assert!(openai(oa(json!({"messages": at_bound}))).is_none());
    }

    #[test]
    fn too_many_tool_calls_is_a_400() {
        let n = MAX_TOOL_CALLS + 1;
        let calls: Vec<Value> = (0..n)
            .map(|i| json!({"id": format!("c{i}"), "type": "function", "function": {"name": "f", "arguments": "{}"}}))
            .collect();
        let messages = json!([{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": calls}]);
        rejected(openai(oa(json!({"messages": messages}))), "messages", "10001 tool calls");
        let uses: Vec<Value> = (0..n)
            .map(|i| json!({"type": "tool_use", "id": format!("t{i}"), "name": "f", "input": {}}))
            .collect();
        let messages = json!([{"role": "user", "content": "hi"}, {"role": "assistant", "content": uses}]);
        rejected(anthropic(an(json!({"messages": messages}))), "messages", "10001 tool_use blocks");
        let parts: Vec<Value> = (0..n).map(|_| json!({"functionCall": {"name": "f", "args": {}}})).collect();
        let contents =
            json!([{"role": "user", "parts": [{"text": "hi"}]}, {"role": "model", "parts": parts}]);
        rejected(gemini(ge(json!({"contents": contents}))), "contents", "10001 function calls");
    }

    #[test]
    fn an_enum_over_the_bound_is_a_400_in_every_protocol() {
        let values = |n: usize| (0..n).map(|i| format!("v{i}")).collect::<Vec<_>>();
        let schema =
            |n| json!({"type": "object", "properties": {"choice": {"type": "string", "enum": values(n)}}});
        let too_many = "an enum has more than 10000 values (at `choice`)";
        let oa_tool = |n| json!({"tools": [{"type": "function", "function": {"name": "pick", "parameters": schema(n)}}]});
        assert!(openai(oa(oa_tool(MAX_ENUM_VALUES))).is_none());
        rejected(openai(oa(oa_tool(MAX_ENUM_VALUES + 1))), "tools[0].function.parameters", too_many);
        let an_tool = json!({"tools": [{"name": "pick", "input_schema": schema(MAX_ENUM_VALUES + 1)}]});
        rejected(anthropic(an(an_tool)), "tools[0].input_schema", too_many);
        let ge_tool = json!({"tools": [{"functionDeclarations": [{"name": "pick", "parameters": schema(MAX_ENUM_VALUES + 1)}]}]});
        let (_, message) = gemini(ge(ge_tool)).expect("rejected");
        assert!(message.contains(too_many), "{message}");
        // Two enums that are each within the bound but whose union is not.
        let union = json!({"type": "object", "properties": {"choice": {"anyOf": [
            {"type": "string", "enum": values(6000)},
            {"type": "string", "enum": (6000..12_000).map(|i| format!("v{i}")).collect::<Vec<_>>()}]}}});
        let cleaned = crate::schema::clean_schema(&union, &crate::schema::SchemaOptions::default());
        assert!(
            matches!(cleaned, Err(SchemaError::TooManyEnumValues { max: MAX_ENUM_VALUES, .. })),
            "{cleaned:?}"
        );
    }

    #[test]
    fn thirty_thousand_clashing_tool_names_are_refused_by_count_and_renamed_uniquely_below_it() {
        let cjk = |i: usize| char::from_u32(0x4e00 + i as u32).unwrap_or('x');
        let names: Vec<String> = (0..30_000).map(|i| format!("t{}{}", cjk(i / 200), cjk(i % 200))).collect();
        let tools = |n: usize| {
            names[..n]
                .iter()
                .map(|n| json!({"type": "function", "function": {"name": n}}))
                .collect::<Vec<_>>()
        };
        rejected(openai(oa(json!({"tools": tools(30_000)}))), "tools", "30000 tools");
        assert!(openai(oa(json!({"tools": tools(MAX_TOOLS)}))).is_none());
        let map = ToolNameMap::new(names.iter().map(String::as_str));
        let distinct: std::collections::HashSet<&str> = names.iter().map(|n| map.upstream_name(n)).collect();
        assert_eq!(distinct.len(), names.len());
    }

    #[test]
    fn bounds_are_inclusive_and_name_the_field() {
        assert!(check_model_name(&"m".repeat(MAX_MODEL_NAME_BYTES), "model").is_ok());
        let e = check_model_name(&"m".repeat(MAX_MODEL_NAME_BYTES + 1), "model").unwrap_err();
        assert_eq!(e.param(), Some("model"));
        assert!(check_count(MAX_TOOLS, MAX_TOOLS, "tools", "tools").is_ok());
        let e = check_count(MAX_TOOLS + 1, MAX_TOOLS, "tools", "tools").unwrap_err();
        assert_eq!(e.to_string(), "The request has 513 tools; at most 512 are accepted.");
    }
}
