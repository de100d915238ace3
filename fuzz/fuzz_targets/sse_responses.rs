//! Upstream SSE bytes, cut into arbitrary reads, through the framer into the Responses API machine: streamed
//! (`flags` bit 0 clear) or folded into one `response` object (bit 0 set), with keep-alives between reads,
//! as a Gemini or Claude turn (bit 5), a web search or not (bit 4), with custom and namespaced tools declared
//! (bit 6) so `custom_tool_call` items and namespaces are reached.
#![no_main]

use std::sync::Arc;

use levitate_filters::protocol::openai_responses::seal::ReasoningState;
use levitate_filters::protocol::openai_responses::{
    ResponsesFold, ResponsesStream, ResponsesStreamOptions, Sealer, ToolRoute, WebSearchOptions,
};
use levitate_filters::signature::ModelFamily;
use levitate_filters::stream::{Folded, Translator};
use levitate_fuzz::{control, seal_keys};
use libfuzzer_sys::fuzz_target;

/// Seals with the fuzz keys and a fixed nonce: the blob's bytes do not matter here, only that sealing any
/// state the machine builds works.
struct FuzzSealer;

impl Sealer for FuzzSealer {
    fn seal(&self, state: &ReasoningState) -> String {
        seal_keys().seal(state, [9; 12])
    }
}

fn tools(flags: u8) -> Vec<ToolRoute> {
    if flags & 64 == 0 {
        return Vec::new();
    }
    let route = |qualified: &str, namespace: Option<&str>, name: &str, custom: bool| ToolRoute {
        qualified: qualified.to_owned(),
        namespace: namespace.map(str::to_owned),
        name: name.to_owned(),
        custom,
    };
    vec![
        route("apply_patch", None, "apply_patch", true),
        route("ns.lookup", Some("ns"), "lookup", false),
        route("get_weather", None, "get_weather", false),
    ]
}

fn options(flags: u8) -> ResponsesStreamOptions {
    ResponsesStreamOptions {
        id: "resp_fuzz".to_owned(),
        model: "gpt-5-codex".to_owned(),
        created_at: 1_760_000_000,
        tool_call_id_prefix: "call_fuzz_".to_owned(),
        tool_names: levitate_fuzz::tool_names(flags),
        tools: tools(flags),
        family: if flags & 32 == 0 { ModelFamily::Gemini } else { ModelFamily::Claude },
        sealer: Arc::new(FuzzSealer),
        show_summary: flags & 2 != 0,
        web_search: (flags & 16 != 0)
            .then(|| WebSearchOptions { domains: Default::default(), include_sources: flags & 128 != 0 }),
    }
}

fuzz_target!(|data: &[u8]| {
    let (flags, split, body) = control(data);
    let mut machine: Box<dyn Translator> = if flags & 1 == 0 {
        Box::new(ResponsesStream::new(options(flags)))
    } else {
        Box::new(Folded::new(ResponsesFold::new(options(flags))))
    };
    let out = levitate_fuzz::drive(machine.as_mut(), flags, split, body);
    levitate_fuzz::assert_folded_is_json(flags, out.as_deref());
});
