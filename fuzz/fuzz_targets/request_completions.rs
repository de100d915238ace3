//! A legacy OpenAI completions body: parsed, then each of its prompts rewritten into the inner `v1internal`
//! request for the model `flags` selects.
#![no_main]

use levitate_filters::inner::Target;
use levitate_filters::protocol::openai_completions::{build_inner_request, parse_completion_request};
use levitate_fuzz::{control, model};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (flags, _, body) = control(data);
    let mut body = body.to_vec();
    let Ok(req) = parse_completion_request(&mut body) else { return };
    let _ = (req.model(), req.stream(), req.include_usage(), req.n(), req.session_hint());
    let target = Target { upstream_model: model(flags), session_id: "fuzz-session" };
    for prompt in req.prompts() {
        let inner = build_inner_request(&req, prompt, &target);
        serde_json::from_slice::<serde_json::Value>(&inner.json).expect("the inner request is JSON");
    }
});
