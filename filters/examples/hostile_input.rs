//! Worker time for the hostile request bodies of issue 14, one run each: an OpenAI tool whose parameter has
//! an `enum` of 5k/20k/40k strings, and 30,000 tool names that all sanitize to the same upstream name.
//!
//! Since the fix, a full request over a bound (10,000 enum values, 512 tools) is refused right after parsing;
//! the cleaner with its enum bound lifted and the name map on their own show that the work behind the bounds
//! grows linearly too. Not a criterion bench: before the fix one run took seconds to minutes, and the point is
//! the growth with the input size, not a precise figure. Run with
//! `cargo run --release -p levitate-filters --example hostile_input`.

use std::time::{Duration, Instant};

use levitate_filters::inner::{Target, ToolNameMap};
use levitate_filters::protocol::openai_chat::{build_inner_request, parse_chat_request};
use levitate_filters::schema::{clean_schema, SchemaOptions};
use levitate_filters::signature::NoSignatures;
use serde_json::{json, Value};

fn request(tools: Vec<Value>) -> Vec<u8> {
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "tools": tools});
    serde_json::to_vec(&body).expect("serializable")
}

fn enum_tool(values: usize) -> Vec<u8> {
    let values: Vec<String> = (0..values).map(|i| format!("value-{i}")).collect();
    request(vec![json!({"type": "function", "function": {"name": "pick", "parameters": {
        "type": "object", "properties": {"choice": {"type": "string", "enum": values}}}}})])
}

/// Distinct client names that all sanitize to `t__` (two characters outside `[A-Za-z0-9_-]`).
fn clashing_names(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            let a = char::from_u32(0x4e00 + (i / 200) as u32).unwrap_or('x');
            let b = char::from_u32(0x4e00 + (i % 200) as u32).unwrap_or('y');
            format!("t{a}{b}")
        })
        .collect()
}

fn clashing_tools(count: usize) -> Vec<u8> {
    request(
        clashing_names(count)
            .into_iter()
            .map(|name| json!({"type": "function", "function": {"name": name}}))
            .collect(),
    )
}

/// Parse + build of `body`, and whether it was accepted.
fn transform(body: &[u8]) -> (Duration, &'static str) {
    let target = Target { upstream_model: "gemini-3-pro-high", session_id: "-1" };
    let mut buf = body.to_vec();
    let start = Instant::now();
    let outcome = match parse_chat_request(&mut buf) {
        Ok(req) => match build_inner_request(&req, &target, &NoSignatures) {
            Ok(_) => "built",
            Err(_) => "400 (transform)",
        },
        Err(_) => "400 (parse)",
    };
    (start.elapsed(), outcome)
}

fn main() {
    for values in [5_000, 20_000, 40_000] {
        let body = enum_tool(values);
        let (took, outcome) = transform(&body);
        println!(
            "openai request, enum of {values:>6} ({:>4} KiB): {took:>10.2?} {outcome}",
            body.len() / 1024
        );
    }
    let unbounded = SchemaOptions { max_enum_values: usize::MAX, ..SchemaOptions::default() };
    for values in [5_000, 20_000, 40_000, 1_000_000] {
        let values: Vec<String> = (0..values).map(|i| format!("value-{i}")).collect();
        let count = values.len();
        let schema = json!({"type": "object", "properties": {"choice": {"type": "string", "enum": values}}});
        let start = Instant::now();
        let cleaned = clean_schema(&schema, &unbounded).map(|_| "cleaned").unwrap_or("refused");
        println!("clean_schema, enum bound lifted, {count:>7} values: {:>10.2?} {cleaned}", start.elapsed());
    }
    for count in [3_000, 10_000, 30_000] {
        let names = clashing_names(count);
        let start = Instant::now();
        let map = ToolNameMap::new(names.iter().map(String::as_str));
        let took = start.elapsed();
        println!(
            "ToolNameMap::new, {count:>6} clashing names: {took:>10.2?} (last {})",
            map.upstream_name(&names[count - 1])
        );
    }
    let body = clashing_tools(30_000);
    let (took, outcome) = transform(&body);
    println!("openai request, 30000 clashing tool names: {took:>10.2?} {outcome}");
}
