//! A Gemini `generateContent` body: parsed, then rewritten into the inner `v1internal` request for the model
//! `flags` selects; also the `countTokens` request built from it,
//! and the bytes read as an upstream `countTokens` answer.
#![no_main]

use levitate_filters::inner::Target;
use levitate_filters::protocol::gemini::{
    build_count_tokens_request, build_inner_request, parse_count_tokens_response, parse_generate_request,
};
use levitate_fuzz::{control, model, SomeSignatures};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (flags, _, body) = control(data);
    // The same bytes as an upstream countTokens answer.
    let _ = parse_count_tokens_response(body);
    let mut body = body.to_vec();
    let Ok(req) = parse_generate_request(&mut body) else { return };
    let _ = req.first_user_text();
    let upstream_model = model(flags);
    let count = build_count_tokens_request(&req, upstream_model);
    serde_json::from_slice::<serde_json::Value>(&count).expect("the countTokens request is JSON");
    let target = Target { upstream_model, session_id: "fuzz-session" };
    if let Ok(inner) = build_inner_request(req, &target, &SomeSignatures) {
        serde_json::from_slice::<serde_json::Value>(&inner.json).expect("the inner request is JSON");
    }
});
