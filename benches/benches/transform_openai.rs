//! OpenAI chat.completions -> v1internal request transform: parse + build of a realistic ~100 KiB
//! multi-turn agent request with tools (the budget is 200 µs per request).
//!
//! `cold` builds everything (the first request of an agent, or `build_inner_request`); `warm` finds the
//! encoded tools in a [`ToolCache`], as every later request of the same agent does in the proxy. The bench
//! runs on mimalloc, the `levitate` binary's allocator; `--no-default-features` measures the system one.

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use levitate_filters::inner::{wrap_envelope, Target, ToolCache};
use levitate_filters::protocol::openai_chat::{
    build_inner_request, build_inner_request_cached, parse_chat_request,
};
use levitate_filters::signature::NoSignatures;
use serde_json::{json, Value};

/// A coding-agent style request: long system prompt, 24 tools with nested schemas, 40 turns of tool calls
/// and results, padded with prose up to about 100 KiB.
fn agent_request(target_bytes: usize) -> Vec<u8> {
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

fn transform(c: &mut Criterion) {
    let body = agent_request(100 * 1024);
    let target = Target { upstream_model: "gemini-3-pro-high", session_id: "-3750763034362895579" };
    let mut group = c.benchmark_group("transform_openai");
    group.throughput(Throughput::Bytes(body.len() as u64));
    // simd-json parses in place, so each iteration first restores the body into a reused buffer, as the
    // gateway's body buffer would be (a 100 KiB memcpy, a few µs, is included in the time).
    let mut buf = body.clone();
    group.bench_function("parse_and_build_100KiB/cold", |b| {
        b.iter(|| {
            buf.copy_from_slice(&body);
            let req = parse_chat_request(&mut buf).expect("valid request");
            build_inner_request(&req, &target, &NoSignatures).expect("buildable request")
        })
    });
    let cache = ToolCache::new(64);
    group.bench_function("parse_and_build_100KiB/warm", |b| {
        b.iter(|| {
            buf.copy_from_slice(&body);
            let req = parse_chat_request(&mut buf).expect("valid request");
            build_inner_request_cached(&req, &target, &NoSignatures, &cache).expect("buildable request")
        })
    });
    group.bench_function("parse_100KiB", |b| {
        b.iter(|| {
            buf.copy_from_slice(&body);
            // The request borrows from `buf`, so it is dropped here, inside the timed loop, as before.
            black_box(parse_chat_request(&mut buf).expect("valid request"));
        })
    });
    let mut parsed = body.clone();
    let req = parse_chat_request(&mut parsed).expect("valid request");
    group.bench_function("build_100KiB/cold", |b| {
        b.iter(|| build_inner_request(&req, &target, &NoSignatures).expect("buildable request"))
    });
    group.bench_function("build_100KiB/warm", |b| {
        b.iter(|| {
            build_inner_request_cached(&req, &target, &NoSignatures, &cache).expect("buildable request")
        })
    });
    let inner = build_inner_request(&req, &target, &NoSignatures).expect("buildable request");
    group.bench_function("wrap_envelope_100KiB", |b| {
        let mut out = Vec::with_capacity(inner.json.len() + 256);
        b.iter(|| {
            out.clear();
            wrap_envelope(&inner, "rising-fact-p41fc", "gemini-3-pro-high", "agent-0000", &mut out);
            out.len()
        })
    });
    group.finish();
}

criterion_group!(benches, transform);
criterion_main!(benches);
