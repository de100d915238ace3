//! Upstream SSE bytes, cut into arbitrary reads, through the framer into the OpenAI chat machine: streamed
//! (`flags` bit 0 clear) or folded into one `chat.completion` (bit 0 set), with keep-alives between reads.
#![no_main]

use levitate_filters::protocol::openai_chat::{OpenAiFold, OpenAiStream, OpenAiStreamOptions};
use levitate_filters::stream::{Folded, Translator};
use levitate_fuzz::control;
use libfuzzer_sys::fuzz_target;

fn options(flags: u8) -> OpenAiStreamOptions {
    OpenAiStreamOptions {
        id: "chatcmpl-fuzz".to_owned(),
        model: "gpt-4o".to_owned(),
        created: 1_760_000_000,
        include_usage: flags & 2 != 0,
        tool_call_id_prefix: "call_fuzz_".to_owned(),
        tool_names: levitate_fuzz::tool_names(flags),
        // Bit 4: a web search, whose grounding becomes url_citation annotations.
        web_search: flags & 16 != 0,
    }
}

fuzz_target!(|data: &[u8]| {
    let (flags, split, body) = control(data);
    let mut machine: Box<dyn Translator> = if flags & 1 == 0 {
        Box::new(OpenAiStream::new(options(flags)))
    } else {
        Box::new(Folded::new(OpenAiFold::new(options(flags))))
    };
    let out = levitate_fuzz::drive(machine.as_mut(), flags, split, body);
    levitate_fuzz::assert_folded_is_json(flags, out.as_deref());
});
