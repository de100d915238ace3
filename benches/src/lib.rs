//! Inputs shared by the criterion benches (`benches/`) and the instruction-count driver
//! (`filters/examples/transform_callgrind.rs`, which includes this file), so both measure the same request.

use serde_json::{json, Value};

/// A coding-agent style request: long system prompt, 24 tools with nested schemas, 40 turns of tool calls
/// and results, padded with prose up to about 100 KiB.
pub fn agent_request(target_bytes: usize) -> Vec<u8> {
    let prose =
        "The quick brown fox jumps over the lazy dog while the build runs; \"quoted\" text, a tab\t, \
                 and unicode — naïve café — keep the escaper honest. ";
    let tools: Vec<Value> = (0..24)
        .map(|i| {
            json!({"type": "function", "function": {
                "name": format!("tool_{i}"),
                "description": prose.repeat(3),
                "parameters": {
                    "$schema": "http://json-schema.org/draft-07/schema#",
                    "type": "object",
                    "additionalProperties": false,
                    "properties": {
                        "path": {"type": "string", "description": "File path", "minLength": 1},
                        "mode": {"type": "string", "enum": ["read", "write", "append"]},
                        "limit": {"type": ["integer", "null"], "minimum": 1, "maximum": 1000},
                        "edits": {"type": "array", "items": {"$ref": "#/$defs/Edit"}},
                        "options": {"anyOf": [{"type": "string"}, {"type": "object", "properties": {
                            "recursive": {"type": "boolean", "default": false}}}]},
                    },
                    "required": ["path", "mode"],
                    "$defs": {"Edit": {"type": "object", "properties": {
                        "old": {"type": "string"}, "new": {"type": "string"}}, "required": ["old", "new"]}},
                }
            }})
        })
        .collect();
    let mut messages = vec![
        json!({"role": "system", "content": prose.repeat(120)}),
        json!({"role": "user", "content": "Refactor the parser and run the tests."}),
    ];
    let mut turn = 0;
    loop {
        let id = format!("call_{turn}");
        messages.push(json!({"role": "assistant", "content": format!("Step {turn}: {}", prose.repeat(2)),
            "tool_calls": [{"id": id, "type": "function", "function": {"name": format!("tool_{}", turn % 24),
                "arguments": json!({"path": format!("src/file_{turn}.rs"), "mode": "read", "limit": 200}).to_string()}}]}));
        messages.push(json!({"role": "tool", "tool_call_id": id, "content": format!("fn f{turn}() {{}}\n{}", prose.repeat(6))}));
        turn += 1;
        let body = json!({"model": "gpt-4o", "stream": true, "stream_options": {"include_usage": true},
            "messages": messages, "tools": tools, "tool_choice": "auto", "temperature": 0.3,
            "max_completion_tokens": 8000, "reasoning_effort": "medium"});
        let bytes = serde_json::to_vec(&body).expect("serializable");
        if bytes.len() >= target_bytes {
            return bytes;
        }
    }
}
