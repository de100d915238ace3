//! Upstream SSE bytes, cut into arbitrary reads, through the framer into the Gemini machine: `alt=sse`
//! (`flags` bit 1 clear) or the JSON array stream (bit 1 set), streamed or folded (bit 0).
#![no_main]

use levitate_filters::protocol::gemini::{GeminiFold, GeminiStream, GeminiStreamMode, GeminiStreamOptions};
use levitate_filters::stream::{Folded, Translator};
use levitate_fuzz::control;
use libfuzzer_sys::fuzz_target;

fn options(flags: u8) -> GeminiStreamOptions {
    let mode = if flags & 2 == 0 { GeminiStreamMode::Sse } else { GeminiStreamMode::JsonArray };
    GeminiStreamOptions { mode, tool_names: levitate_fuzz::tool_names(flags) }
}

fuzz_target!(|data: &[u8]| {
    let (flags, split, body) = control(data);
    let mut machine: Box<dyn Translator> = if flags & 1 == 0 {
        Box::new(GeminiStream::new(options(flags)))
    } else {
        Box::new(Folded::new(GeminiFold::new(options(flags))))
    };
    levitate_fuzz::drive(machine.as_mut(), flags, split, body);
});
