//! An Anthropic Messages body: parsed, then rewritten into the inner `v1internal` request for the model
//! `flags` selects. With `flags` bit 2, also through the tool cache, which must give the same bytes.
#![no_main]

use levitate_filters::inner::Target;
use levitate_filters::protocol::anthropic::{
    build_inner_request, build_inner_request_cached, parse_messages_request,
};
use levitate_fuzz::{control, model, SomeSignatures};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (flags, _, body) = control(data);
    let mut body = body.to_vec();
    let Ok(req) = parse_messages_request(&mut body) else { return };
    let _ = (
        req.model(),
        req.stream(),
        req.session_hint(),
        req.first_user_text(),
        req.thinking_enabled(),
        req.max_tokens(),
    );
    let target = Target { upstream_model: model(flags), session_id: "fuzz-session" };
    let built = build_inner_request(&req, &target, &SomeSignatures);
    levitate_fuzz::check_built(flags, built, |cache| {
        build_inner_request_cached(&req, &target, &SomeSignatures, cache)
    });
});
