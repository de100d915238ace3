//! The SSE stream benches' work a fixed number of times, for measuring CPU time rather than wall-clock time:
//! on a shared, loaded machine criterion's timings swing by 2–3× between runs, while
//! `perf stat -e task-clock target/release/examples/sse_cpu openai 100` stays within a few percent
//! (docs/benchmarks.md, "SSE rewriting").

use levitate_filters::protocol::anthropic::{AnthropicStream, AnthropicStreamOptions};
use levitate_filters::protocol::openai_chat::{OpenAiStream, OpenAiStreamOptions};
use levitate_filters::stream::Translator;

#[path = "../benches/recorded_stream/mod.rs"]
mod recorded_stream;

/// The same per-request options as the criterion benches.
fn machine(protocol: &str) -> Box<dyn Translator> {
    match protocol {
        "openai" => Box::new(OpenAiStream::new(OpenAiStreamOptions {
            id: "chatcmpl-0d6c1b9e6a7f4a0c9f3e".to_owned(),
            model: "gpt-4o".to_owned(),
            created: 1_760_000_000,
            include_usage: true,
            tool_call_id_prefix: "call_3f9a2c_".to_owned(),
            tool_names: Default::default(),
            web_search: false,
        })),
        "anthropic" => Box::new(AnthropicStream::new(AnthropicStreamOptions {
            id: "msg_0d6c1b9e6a7f4a0c9f3e".to_owned(),
            model: "claude-sonnet-4-5".to_owned(),
            tool_id_prefix: "toolu_3f9a2c_".to_owned(),
            tool_names: Default::default(),
            input_tokens_hint: 0,
            web_search: None,
        })),
        other => panic!("unknown protocol {other:?}: openai or anthropic"),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let protocol = args.next().unwrap_or_else(|| "openai".to_owned());
    let passes: usize = args.next().map_or(100, |n| n.parse().expect("passes: a number"));
    let input = recorded_stream::recorded_stream();
    let mut out = Vec::with_capacity(64 * 1024);
    let started = std::time::Instant::now();
    for _ in 0..passes {
        let mut stream = machine(&protocol);
        recorded_stream::rewrite_reads(&input, &mut out, |data, out| {
            stream.on_event(data, out).expect("valid upstream events")
        });
        stream.finish(&mut out);
        std::hint::black_box(stream.take_signatures());
    }
    eprintln!("{protocol}: {} bytes x {passes} in {:?} (wall clock)", input.len(), started.elapsed());
}
