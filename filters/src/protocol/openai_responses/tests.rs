//! Tests of the Responses protocol across its files: request → inner request (with sealed reasoning
//! restored per family), and upstream events → Responses events and folded objects.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use super::seal::{Family, ReasoningState, SealKey, SealKeys, SignedOn, KEY_LEN};
use super::*;
use crate::inner::{Target, ToolNameMap, TransformError};
use crate::signature::{ModelFamily, NoSignatures, SignatureLookup};
use crate::stream::{Fold, Translator};

fn keys() -> SealKeys {
    SealKeys::new(SealKey::new(7, &[7; KEY_LEN]).unwrap(), None)
}

/// Seals with [`keys`] and a counter nonce.
struct TestSealer(AtomicU8);

impl Sealer for TestSealer {
    fn seal(&self, state: &ReasoningState) -> String {
        keys().seal(state, [self.0.fetch_add(1, Ordering::Relaxed); 12])
    }
}

fn build(model: &str, body: Value) -> Result<Value, TransformError> {
    build_with(model, body, &NoSignatures)
}

fn build_with(model: &str, body: Value, sigs: &dyn SignatureLookup) -> Result<Value, TransformError> {
    let req = parse_responses_request(serde_json::to_vec(&body).unwrap().leak())?;
    let target = Target { upstream_model: model, session_id: "-1" };
    let inner = build_inner_request(&req, &target, sigs, &keys())?;
    Ok(serde_json::from_slice(&inner.json).unwrap())
}

fn sealed(family: Family, thought: &str, signature: &str, signed_on: SignedOn) -> String {
    let state =
        ReasoningState { family, thought: thought.into(), signature: Some(signature.into()), signed_on };
    keys().seal(&state, [1; 12])
}

const CLAUDE_SIG: &str =
    "RWpRS01nRUJBZ01FQlFZSENBa0tDd3dORGc4UUVSSVRGQlVXRnhnWkdoc2NIUjRmSUNFaUl5UWxKaWNvS1NvckxDMHVMekE9";
const GEMINI_SIG: &str = "EjQKMgEBAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4fICEiIyQlJicoKSorLC0uLzA=";

#[test]
fn messages_instructions_and_images_map_to_turns() {
    let got = build(
        "gemini-3-flash",
        json!({"model": "gpt-5", "instructions": "Be brief.", "input": [
            {"type": "message", "role": "developer", "content": "Use tools."},
            {"role": "user", "content": [{"type": "input_text", "text": "What is this?"},
                {"type": "input_image", "image_url": "data:image/png;base64,iVBOR"}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "A cat."}]},
            {"role": "user", "content": "Thanks"}],
            "max_output_tokens": 100, "temperature": 0.5, "top_p": 0.9}),
    )
    .unwrap();
    assert_eq!(
        got["systemInstruction"],
        json!({"role": "user", "parts": [{"text": "Be brief."}, {"text": "Use tools."}]})
    );
    assert_eq!(
        got["contents"],
        json!([
            {"role": "user", "parts": [{"text": "What is this?"}, {"inlineData": {"mimeType": "image/png", "data": "iVBOR"}}]},
            {"role": "model", "parts": [{"text": "A cat."}]},
            {"role": "user", "parts": [{"text": "Thanks"}]}])
    );
    assert_eq!(got["generationConfig"], json!({"maxOutputTokens": 100, "temperature": 0.5, "topP": 0.9}));
    let searched = build(
        "gemini-3-flash",
        json!({"model": "m", "input": [{"role": "user", "content": "news?"},
            {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"type": "search", "query": "news"}},
            {"role": "assistant", "content": "Headlines."}]}),
    )
    .unwrap();
    assert_eq!(
        searched["contents"][1],
        json!({"role": "model", "parts": [{"text": "Headlines."}]}),
        "replayed searches are skipped"
    );
    let plain = build("gemini-3-flash", json!({"model": "m", "input": "hello"})).unwrap();
    assert_eq!(plain["contents"], json!([{"role": "user", "parts": [{"text": "hello"}]}]));
}

#[test]
fn custom_tools_are_declared_as_one_string_argument_and_replayed_as_calls() {
    let got = build(
        "gemini-3-flash",
        json!({"model": "m", "tools": [
                {"type": "function", "name": "shell", "strict": true, "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}},
                {"type": "custom", "name": "apply_patch", "description": "Patch files", "format": {"type": "grammar", "syntax": "lark", "definition": "start: x"}},
                {"type": "web_search"}],
            "tool_choice": {"type": "custom", "name": "apply_patch"},
            "input": [{"role": "user", "content": "fix it"},
                {"type": "custom_tool_call", "call_id": "c1", "name": "apply_patch", "input": "*** Begin Patch"},
                {"type": "custom_tool_call_output", "call_id": "c1", "output": "Done!"},
                {"type": "function_call", "call_id": "c2", "name": "shell", "arguments": "{\"cmd\":\"ls\"}"},
                {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "a.txt"}]}]}),
    )
    .unwrap();
    let decls = &got["tools"][0]["functionDeclarations"];
    assert_eq!(decls.as_array().unwrap().len(), 2, "web_search declares no function: {decls}");
    assert_eq!(decls[1]["name"], "apply_patch");
    assert_eq!(decls[1]["parameters"]["properties"]["input"]["type"], "string");
    assert_eq!(decls[1]["parameters"]["required"], json!(["input"]));
    assert_eq!(
        got["toolConfig"]["functionCallingConfig"],
        json!({"mode": "ANY", "allowedFunctionNames": ["apply_patch"]})
    );
    let contents = &got["contents"];
    assert_eq!(
        contents[1]["parts"][0]["functionCall"],
        json!({"id": "c1", "name": "apply_patch", "args": {"input": "*** Begin Patch"}})
    );
    assert_eq!(contents[1]["parts"][0]["thoughtSignature"], "skip_thought_signature_validator");
    assert_eq!(
        contents[2]["parts"][0]["functionResponse"],
        json!({"id": "c1", "name": "apply_patch", "response": {"result": "Done!"}})
    );
    assert_eq!(contents[3]["parts"][0]["functionCall"]["args"], json!({"cmd": "ls"}));
    assert_eq!(contents[4]["parts"][0]["functionResponse"]["response"], json!({"result": "a.txt"}));
}

#[test]
fn namespace_tools_are_flattened_and_their_calls_carry_the_namespace_back() {
    let body = json!({"model": "m", "tools": [{"type": "namespace", "name": "multi_agent_v1", "description": "Sub-agents",
            "tools": [{"type": "function", "name": "close_agent", "parameters": {"type": "object", "properties": {}}}]}],
        "input": [{"role": "user", "content": "x"},
            {"type": "function_call", "namespace": "multi_agent_v1", "call_id": "c1", "name": "close_agent", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "closed"}]});
    let got = build("gemini-3-flash", body.clone()).unwrap();
    let upstream = got["tools"][0]["functionDeclarations"][0]["name"].as_str().unwrap().to_owned();
    assert_eq!(got["contents"][1]["parts"][0]["functionCall"]["name"], upstream.as_str());
    assert_eq!(got["contents"][2]["parts"][0]["functionResponse"]["name"], upstream.as_str());

    let req = parse_responses_request(serde_json::to_vec(&body).unwrap().leak()).unwrap();
    let target = Target { upstream_model: "gemini-3-flash", session_id: "-1" };
    let inner = build_inner_request(&req, &target, &NoSignatures, &keys()).unwrap();
    let mut opts = options(&[], ModelFamily::Gemini, true);
    opts.tools = tool_routes(&req);
    opts.tool_names = inner.tool_names;
    let call = json!([{"functionCall": {"name": upstream, "args": {}}, "thoughtSignature": GEMINI_SIG}]);
    let frames = run_stream(opts, vec![event(call, Some("STOP"))]);
    let output = &frames.last().unwrap().1["response"]["output"];
    assert_eq!(
        (output[1]["name"].as_str(), output[1]["namespace"].as_str()),
        (Some("close_agent"), Some("multi_agent_v1"))
    );
    let bad = json!({"model": "m", "input": "x", "tools": [{"type": "namespace", "name": "n", "tools": [{"type": "web_search"}]}]});
    assert_eq!(
        parse_responses_request(serde_json::to_vec(&bad).unwrap().leak()).unwrap_err().param(),
        Some("tools[0].tools[0].type")
    );
}

#[test]
fn cached_tools_give_the_same_bytes_and_names_as_a_fresh_build() {
    let body = json!({"model": "m", "input": "x", "tools": [
        {"type": "function", "name": "mcp.fs:read", "parameters": {"type": "object", "properties": {"p": {"type": "string", "minLength": 1}}}},
        {"type": "custom", "name": "apply_patch"},
        {"type": "namespace", "name": "ns", "description": "d", "tools": [{"type": "function", "name": "f"}]}]});
    let req = parse_responses_request(serde_json::to_vec(&body).unwrap().leak()).unwrap();
    let cache = crate::inner::ToolCache::new(8);
    for model in ["gemini-3-flash", "claude-sonnet-4-6", "gemini-3-flash"] {
        let target = Target { upstream_model: model, session_id: "-1" };
        let fresh = build_inner_request(&req, &target, &NoSignatures, &keys()).unwrap();
        let cached = build_inner_request_cached(&req, &target, &NoSignatures, &keys(), &cache).unwrap();
        assert_eq!(fresh.json, cached.json, "{model}");
        assert_eq!(fresh.tool_names.upstream_name("ns.f"), cached.tool_names.upstream_name("ns.f"));
        assert_eq!(
            cached.tool_names.client_name(cached.tool_names.upstream_name("mcp.fs:read")),
            "mcp.fs:read"
        );
    }
    assert_eq!(cache.len(), 2, "one entry per family");
}

#[test]
fn effort_and_structured_output_map_like_chat() {
    let got = build(
        "gemini-3-flash",
        json!({"model": "m", "input": "x", "reasoning": {"effort": "high", "summary": "auto"}, "text": {"verbosity": "low",
            "format": {"type": "json_schema", "name": "r", "strict": true, "schema": {"type": "object",
                "properties": {"a": {"type": "integer"}}, "required": ["a"], "additionalProperties": false}}}}),
    )
    .unwrap();
    assert_eq!(
        got["generationConfig"],
        json!({"responseMimeType": "application/json", "responseSchema": {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
               "thinkingConfig": {"includeThoughts": true, "thinkingBudget": 24576}})
    );
    let e = build("gemini-3-flash", json!({"model": "m", "input": "x", "reasoning": {"effort": "max"}}))
        .unwrap_err();
    assert_eq!(e.param(), Some("reasoning.effort"));
}

#[test]
fn sealed_claude_reasoning_leads_the_assistant_turn_with_its_signature() {
    let blob = sealed(Family::Claude, "Let me list files.", CLAUDE_SIG, SignedOn::Thought);
    let body = json!({"model": "m", "input": [
        {"role": "user", "content": "list"},
        {"type": "function_call", "call_id": "toolu_1", "name": "shell", "arguments": "{}"},
        {"type": "reasoning", "summary": [], "encrypted_content": blob},
        {"type": "function_call_output", "call_id": "toolu_1", "output": "a.txt"}],
        "tools": [{"type": "function", "name": "shell"}]});
    let got = build("claude-sonnet-4-6-thinking", body.clone()).unwrap();
    let turn = &got["contents"][1]["parts"];
    assert_eq!(
        turn[0],
        json!({"text": "Let me list files.", "thought": true, "thoughtSignature": CLAUDE_SIG})
    );
    assert!(turn[1].get("thoughtSignature").is_none(), "never on Claude's call: {turn}");
    // The same blob to a Gemini model: a Claude signature never crosses; Gemini gets the sentinel.
    let gemini = build("gemini-3-flash", body).unwrap();
    let turn = &gemini["contents"][1]["parts"];
    assert_eq!(turn.as_array().unwrap().len(), 1, "{turn}");
    assert_eq!(turn[0]["thoughtSignature"], "skip_thought_signature_validator");
}

#[test]
fn sealed_gemini_signature_returns_to_the_first_call_or_its_text() {
    let blob = sealed(Family::Gemini, "", GEMINI_SIG, SignedOn::Call);
    let got = build(
        "gemini-3-flash",
        json!({"model": "m", "input": [{"role": "user", "content": "x"},
            {"type": "reasoning", "summary": [], "encrypted_content": blob},
            {"type": "function_call", "call_id": "a", "name": "f", "arguments": "{}"},
            {"type": "function_call", "call_id": "b", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "a", "output": "1"},
            {"type": "function_call_output", "call_id": "b", "output": "2"}],
            "tools": [{"type": "function", "name": "f"}]}),
    )
    .unwrap();
    let turn = &got["contents"][1]["parts"];
    assert_eq!(turn[0]["thoughtSignature"], GEMINI_SIG);
    assert!(turn[1].get("thoughtSignature").is_none(), "parallel siblings need none");
    let blob = sealed(Family::Gemini, "", GEMINI_SIG, SignedOn::Text);
    let got = build(
        "gemini-3-flash",
        json!({"model": "m", "input": [{"role": "user", "content": "x"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hi"}]},
            {"type": "reasoning", "summary": [], "encrypted_content": blob},
            {"role": "user", "content": "again"}]}),
    )
    .unwrap();
    assert_eq!(got["contents"][1]["parts"], json!([{"text": "Hi", "thoughtSignature": GEMINI_SIG}]));
}

#[test]
fn claude_without_a_restorable_signature_gets_no_sentinel_but_a_cached_one_leads() {
    struct Cached;
    impl SignatureLookup for Cached {
        fn signature_for_tool_call(&self, id: &str) -> Option<String> {
            (id == "toolu_1").then(|| CLAUDE_SIG.to_owned())
        }
    }
    let body = json!({"model": "m", "input": [{"role": "user", "content": "x"},
        {"type": "function_call", "call_id": "toolu_1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "toolu_1", "output": "1"}],
        "tools": [{"type": "function", "name": "f"}]});
    let bare = build("claude-sonnet-4-6", body.clone()).unwrap();
    assert_eq!(bare["contents"][1]["parts"].as_array().unwrap().len(), 1);
    assert!(bare["contents"][1]["parts"][0].get("thoughtSignature").is_none());
    let cached = build_with("claude-sonnet-4-6", body, &Cached).unwrap();
    assert_eq!(
        cached["contents"][1]["parts"][0],
        json!({"text": "", "thought": true, "thoughtSignature": CLAUDE_SIG})
    );
}

#[test]
fn bad_reasoning_and_unservable_items_are_clear_400s() {
    let blob = sealed(Family::Claude, "t", CLAUDE_SIG, SignedOn::Thought);
    let mut tampered = blob.clone().into_bytes();
    let last = tampered.len() - 3;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let cases = [
        (
            json!({"type": "reasoning", "summary": [], "encrypted_content": tampered}),
            "input[1].encrypted_content",
            "altered or forged",
        ),
        (
            json!({"type": "reasoning", "summary": [], "encrypted_content": "gAAAAABopenai"}),
            "input[1].encrypted_content",
            "not an encrypted_content issued by Levitate",
        ),
        (json!({"type": "item_reference", "id": "msg_1"}), "input[1].type", "does not keep"),
        (
            json!({"type": "local_shell_call", "call_id": "x"}),
            "input[1].type",
            "\"local_shell_call\" are not supported",
        ),
        (
            json!({"type": "function_call_output", "call_id": "nope", "output": "x"}),
            "input[1].call_id",
            "does not match",
        ),
        (
            json!({"type": "function_call", "call_id": "c", "name": "f", "arguments": "{oops"}),
            "input[1].arguments",
            "JSON-encoded object",
        ),
        (
            json!({"role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]}),
            "input[1].content[0].file_id",
            "inline",
        ),
    ];
    for (item, param, text) in cases {
        let e = build(
            "claude-sonnet-4-6",
            json!({"model": "m", "input": [{"role": "user", "content": "x"}, item]}),
        )
        .unwrap_err();
        assert_eq!(e.param(), Some(param), "{e}");
        assert!(e.to_string().contains(text), "{e}");
    }
}

// --- the stream machine ---

fn options(custom: &[&str], family: ModelFamily, show_summary: bool) -> ResponsesStreamOptions {
    ResponsesStreamOptions {
        id: "resp_abc".into(),
        model: "gpt-5".into(),
        created_at: 1_700_000_000,
        tool_call_id_prefix: "call_x_".into(),
        tool_names: ToolNameMap::new(["shell", "apply_patch"]),
        tools: custom
            .iter()
            .map(|s| ToolRoute {
                qualified: s.to_string(),
                namespace: None,
                name: s.to_string(),
                custom: true,
            })
            .collect(),
        family,
        sealer: Arc::new(TestSealer(AtomicU8::new(0))),
        show_summary,
        web_search: None,
    }
}

fn event(parts: Value, finish: Option<&str>) -> Vec<u8> {
    let mut candidate = json!({"content": {"role": "model", "parts": parts}});
    if let Some(reason) = finish {
        candidate["finishReason"] = json!(reason);
    }
    let usage = json!({"promptTokenCount": 10, "candidatesTokenCount": 5, "thoughtsTokenCount": 3, "cachedContentTokenCount": 2, "totalTokenCount": 18});
    serde_json::to_vec(&json!({"response": {"candidates": [candidate], "usageMetadata": usage}})).unwrap()
}

/// Runs events through a stream; returns the parsed `(event name, data)` frames.
fn run_stream(opts: ResponsesStreamOptions, events: Vec<Vec<u8>>) -> Vec<(String, Value)> {
    let mut stream = ResponsesStream::new(opts);
    let mut out = Vec::new();
    for mut e in events {
        stream.on_event(&mut e, &mut out).unwrap();
    }
    stream.finish(&mut out);
    parse_frames(&out)
}

fn parse_frames(out: &[u8]) -> Vec<(String, Value)> {
    String::from_utf8(out.to_vec())
        .unwrap()
        .split("\n\n")
        .filter(|f| f.starts_with("event: "))
        .map(|f| {
            let (name, data) = f.split_once('\n').unwrap();
            let data: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            (name["event: ".len()..].to_string(), data)
        })
        .collect()
}

fn names(frames: &[(String, Value)]) -> Vec<&str> {
    frames.iter().map(|(n, _)| n.as_str()).collect()
}

fn assert_sequenced(frames: &[(String, Value)]) {
    for (i, (name, data)) in frames.iter().enumerate() {
        assert_eq!(data["sequence_number"], json!(i), "{name}");
        assert_eq!(data["type"], json!(name));
    }
}

#[test]
fn a_thinking_text_answer_streams_the_full_event_sequence_in_order() {
    let frames = run_stream(
        options(&[], ModelFamily::Gemini, true),
        vec![
            event(json!([{"text": "**Plan** ", "thought": true}]), None),
            event(json!([{"text": "then answer", "thought": true}]), None),
            event(json!([{"text": "Hello "}]), None),
            event(json!([{"text": "world"}, {"text": "", "thoughtSignature": GEMINI_SIG}]), Some("STOP")),
        ],
    );
    assert_sequenced(&frames);
    assert_eq!(
        names(&frames),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.reasoning_summary_part.added",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.delta",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.reasoning_summary_text.done",
            "response.reasoning_summary_part.done",
            "response.output_item.done",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let (_, completed) = frames.last().unwrap();
    let response = &completed["response"];
    assert_eq!(response["status"], "completed");
    assert_eq!(
        response["output"][0]["summary"],
        json!([{"type": "summary_text", "text": "**Plan** then answer"}])
    );
    assert_eq!(response["output"][1]["content"][0]["text"], "Hello world");
    assert_eq!(
        response["usage"],
        json!({"input_tokens": 10, "input_tokens_details": {"cached_tokens": 2}, "output_tokens": 8,
               "output_tokens_details": {"reasoning_tokens": 3}, "total_tokens": 18})
    );
    let blob = response["output"][0]["encrypted_content"].as_str().unwrap();
    let state = keys().open(blob).unwrap();
    assert_eq!(
        state,
        ReasoningState {
            family: Family::Gemini,
            thought: "**Plan** then answer".into(),
            signature: Some(GEMINI_SIG.into()),
            signed_on: SignedOn::Text
        }
    );
}

#[test]
fn calls_become_function_and_custom_tool_call_items_with_their_argument_events() {
    let frames = run_stream(
        options(&["apply_patch"], ModelFamily::Claude, false),
        vec![
            event(
                json!([{"text": "Think", "thought": true}, {"text": "", "thought": true, "thoughtSignature": CLAUDE_SIG}]),
                None,
            ),
            event(
                json!([{"functionCall": {"id": "toolu_1", "name": "shell", "args": {"cmd": "ls"}}},
                       {"functionCall": {"name": "apply_patch", "args": {"input": "*** Begin Patch\n"}}}]),
                Some("OTHER"),
            ),
        ],
    );
    assert_sequenced(&frames);
    assert_eq!(
        names(&frames),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.custom_tool_call_input.delta",
            "response.custom_tool_call_input.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let output = &frames.last().unwrap().1["response"]["output"];
    assert_eq!(output[0]["summary"], json!([]), "reasoning.summary none hides the thought text");
    let state = keys().open(output[0]["encrypted_content"].as_str().unwrap()).unwrap();
    assert_eq!(
        (state.thought.as_str(), state.signature.as_deref(), state.signed_on),
        ("Think", Some(CLAUDE_SIG), SignedOn::Thought)
    );
    assert_eq!(
        output[1],
        json!({"id": output[1]["id"], "type": "function_call", "call_id": "toolu_1", "name": "shell", "arguments": "{\"cmd\":\"ls\"}", "status": "completed"})
    );
    assert_eq!(output[2]["type"], "custom_tool_call");
    assert_eq!(
        (output[2]["call_id"].as_str(), output[2]["input"].as_str()),
        (Some("call_x_1"), Some("*** Begin Patch\n"))
    );
    assert_eq!(frames[10].1["input"], "*** Begin Patch\n");
}

#[test]
fn a_gemini_signature_on_a_call_without_thoughts_gets_a_reasoning_item() {
    let frames = run_stream(
        options(&[], ModelFamily::Gemini, true),
        vec![event(
            json!([{"functionCall": {"name": "shell", "args": {}}, "thoughtSignature": GEMINI_SIG}]),
            Some("STOP"),
        )],
    );
    let output = &frames.last().unwrap().1["response"]["output"];
    assert_eq!(
        (output[0]["type"].as_str(), output[1]["type"].as_str()),
        (Some("reasoning"), Some("function_call"))
    );
    let state = keys().open(output[0]["encrypted_content"].as_str().unwrap()).unwrap();
    assert_eq!((state.signature.as_deref(), state.signed_on), (Some(GEMINI_SIG), SignedOn::Call));
}

#[test]
fn max_tokens_and_cut_streams_are_incomplete_failures_end_with_error_events() {
    let frames = run_stream(
        options(&[], ModelFamily::Gemini, true),
        vec![event(json!([{"text": "Hel"}]), Some("MAX_TOKENS"))],
    );
    let (name, last) = frames.last().unwrap();
    assert_eq!(name, "response.incomplete");
    assert_eq!(last["response"]["incomplete_details"], json!({"reason": "max_output_tokens"}));
    let frames =
        run_stream(options(&[], ModelFamily::Gemini, true), vec![event(json!([{"text": "Hel"}]), None)]);
    assert_eq!(frames.last().unwrap().0, "response.incomplete", "a cut stream is not a completed answer");

    let mut stream = ResponsesStream::new(options(&[], ModelFamily::Gemini, true));
    let mut out = Vec::new();
    assert!(!stream.emitted_anything());
    stream.on_event(&mut event(json!([{"text": "Hel"}]), None), &mut out).unwrap();
    assert!(stream.emitted_anything());
    stream
        .fail(&crate::error::ClientError::new(502, crate::error::ErrorKind::Api, "upstream broke"), &mut out);
    stream.finish(&mut out);
    let frames = parse_frames(&out);
    assert_sequenced(&frames);
    let tail: Vec<&str> = names(&frames).into_iter().rev().take(2).collect();
    assert_eq!(tail, ["response.failed", "error"]);
    let (_, error) = &frames[frames.len() - 2];
    assert_eq!(error["message"], "upstream broke");
    assert_eq!(error["error"]["type"], "server_error", "the SDK raises on an error event with `error`");
}

#[test]
fn an_upstream_error_before_output_writes_nothing_so_it_can_be_retried() {
    let mut stream = ResponsesStream::new(options(&[], ModelFamily::Gemini, true));
    let mut out = Vec::new();
    let mut error = br#"{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED"}}"#.to_vec();
    assert!(stream.on_event(&mut error, &mut out).is_err());
    assert!(out.is_empty() && !stream.emitted_anything());
}

#[test]
fn the_fold_answers_one_response_object() {
    let mut fold = ResponsesFold::new(options(&["apply_patch"], ModelFamily::Gemini, true));
    fold.on_event(&mut event(json!([{"text": "ponder", "thought": true}]), None)).unwrap();
    fold.on_event(&mut event(json!([{"text": "{\"a\": 1}", "thoughtSignature": GEMINI_SIG}]), Some("STOP")))
        .unwrap();
    assert!(fold.emitted_anything() && fold.finished_by_upstream());
    let body: Value = serde_json::from_slice(&fold.finish()).unwrap();
    assert_eq!((body["object"].as_str(), body["status"].as_str()), (Some("response"), Some("completed")));
    assert_eq!(body["output"][0]["type"], "reasoning");
    assert_eq!(
        body["output"][1]["content"][0],
        json!({"type": "output_text", "text": "{\"a\": 1}", "annotations": [], "logprobs": []})
    );
}
