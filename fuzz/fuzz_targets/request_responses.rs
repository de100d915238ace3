//! An OpenAI Responses API body: parsed, every accessor the gateway calls, then rewritten into the inner
//! `v1internal` request for the model `flags` selects, with sealing keys that open the reasoning items the
//! seeds carry (any other `encrypted_content` takes the "cannot open" path). With `flags` bit 2, also through
//! the tool cache, which must give the same bytes.
#![no_main]

use levitate_filters::inner::Target;
use levitate_filters::protocol::openai_responses::{
    build_inner_request, build_inner_request_cached, parse_responses_request, tool_routes,
};
use levitate_fuzz::{control, model, seal_keys, SomeSignatures};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (flags, _, body) = control(data);
    let mut body = body.to_vec();
    let Ok(req) = parse_responses_request(&mut body) else { return };
    let _ =
        (req.model(), req.stream(), req.web_search(), req.search_domains(), req.includes_search_sources());
    let _ = (req.session_hint(), req.first_user_text(), req.includes_encrypted_reasoning());
    let _ = (req.wants_summary(), req.estimate_tokens(), tool_routes(&req));
    let target = Target { upstream_model: model(flags), session_id: "fuzz-session" };
    let keys = seal_keys();
    let built = build_inner_request(&req, &target, &SomeSignatures, &keys);
    levitate_fuzz::check_built(flags, built, |cache| {
        build_inner_request_cached(&req, &target, &SomeSignatures, &keys, cache)
    });
});
