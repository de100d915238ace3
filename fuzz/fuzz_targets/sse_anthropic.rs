//! Upstream SSE bytes, cut into arbitrary reads, through the framer into the Anthropic Messages machine: streamed
//! (`flags` bit 0 clear) or folded into one `message` (bit 0 set), with keep-alives between reads, as a web
//! search or not (bit 4).
#![no_main]

use levitate_filters::protocol::anthropic::{AnthropicFold, AnthropicStream, AnthropicStreamOptions};
use levitate_filters::stream::{Folded, Translator};
use levitate_fuzz::control;
use libfuzzer_sys::fuzz_target;

fn options(flags: u8) -> AnthropicStreamOptions {
    AnthropicStreamOptions {
        id: "msg_fuzz".to_owned(),
        model: "claude-sonnet-4-5".to_owned(),
        tool_id_prefix: "toolu_fuzz_".to_owned(),
        tool_names: levitate_fuzz::tool_names(flags),
        input_tokens_hint: u64::from(flags),
        // Bit 4: a web search, whose text is held back and written with search blocks and citations.
        web_search: (flags & 16 != 0).then(Default::default),
    }
}

fuzz_target!(|data: &[u8]| {
    let (flags, split, body) = control(data);
    let mut machine: Box<dyn Translator> = if flags & 1 == 0 {
        Box::new(AnthropicStream::new(options(flags)))
    } else {
        Box::new(Folded::new(AnthropicFold::new(options(flags))))
    };
    let out = levitate_fuzz::drive(machine.as_mut(), flags, split, body);
    levitate_fuzz::assert_folded_is_json(flags, out.as_deref());
});
