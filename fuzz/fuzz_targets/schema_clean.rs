//! A tool's JSON schema, as a client declares it, through the cleaner that makes it acceptable upstream;
//! `flags` picks the limits and the Claude empty-object rule. Also the tool-name sanitiser on the same bytes.
#![no_main]

use levitate_filters::schema::{clean_schema, sanitize_tool_name, SchemaOptions};
use levitate_fuzz::control;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (flags, _, body) = control(data);
    if let Ok(name) = std::str::from_utf8(body) {
        let clean = sanitize_tool_name(name);
        assert!(!clean.is_empty() && clean.len() <= 64, "sanitized name {clean:?} out of shape");
        assert!(clean.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'), "{clean:?}");
    }
    let Ok(schema) = serde_json::from_slice::<serde_json::Value>(body) else { return };
    let opts = SchemaOptions {
        max_depth: if flags & 1 == 0 { 32 } else { 4 },
        max_nodes: if flags & 2 == 0 { 10_000 } else { 64 },
        max_enum_values: if flags & 8 == 0 { SchemaOptions::default().max_enum_values } else { 16 },
        require_reason_for_empty_object: flags & 4 != 0,
    };
    let _ = clean_schema(&schema, &opts);
});
