//! Throughput of the Anthropic streaming path: upstream `v1internal` SSE bytes framed and rewritten into
//! Anthropic Messages events (`content_block_delta`…), measured in upstream bytes per second. The native
//! Gemini passthrough (unwrap only) is measured beside it, as the floor of what a rewrite can cost.
//!
//! The input is the recorded-shape stream of [`recorded_stream`], the same bytes the OpenAI bench uses, fed
//! in 4 KiB reads.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use levitate_filters::protocol::anthropic::{AnthropicFold, AnthropicStream, AnthropicStreamOptions};
use levitate_filters::protocol::gemini::{GeminiStream, GeminiStreamMode, GeminiStreamOptions};
use levitate_filters::stream::{Fold, Translator};

mod recorded_stream;

use recorded_stream::{frame_reads, recorded_stream, rewrite_reads};

fn options() -> AnthropicStreamOptions {
    AnthropicStreamOptions {
        id: "msg_0d6c1b9e6a7f4a0c9f3e".to_owned(),
        model: "claude-sonnet-4-5".to_owned(),
        tool_id_prefix: "toolu_3f9a2c_".to_owned(),
        tool_names: Default::default(),
        input_tokens_hint: 0,
        web_search: None,
    }
}

fn frame_and_rewrite(input: &[u8], out: &mut Vec<u8>) {
    let mut stream = AnthropicStream::new(options());
    rewrite_reads(input, out, |data, out| stream.on_event(data, out).expect("valid upstream events"));
    stream.finish(out);
    black_box(stream.take_signatures());
}

fn frame_and_fold(input: &[u8]) -> Vec<u8> {
    let mut fold = AnthropicFold::new(options());
    frame_reads(input, |event| {
        if let Some(data) = event {
            fold.on_event(data).expect("valid upstream events");
        }
    });
    fold.finish()
}

fn frame_and_unwrap(input: &[u8], out: &mut Vec<u8>) {
    let mut stream = GeminiStream::new(GeminiStreamOptions {
        mode: GeminiStreamMode::Sse,
        tool_names: Default::default(),
    });
    rewrite_reads(input, out, |data, out| stream.on_event(data, out).expect("valid upstream events"));
    stream.finish(out);
}

fn benches(c: &mut Criterion) {
    let input = recorded_stream();
    let mut group = c.benchmark_group("sse_anthropic");
    group.throughput(Throughput::Bytes(input.len() as u64));
    group.sample_size(20);

    let mut out = Vec::with_capacity(64 * 1024);
    group.bench_function("framer+anthropic_stream", |b| {
        b.iter(|| frame_and_rewrite(black_box(&input), &mut out))
    });
    group.bench_function("framer+anthropic_fold", |b| b.iter(|| frame_and_fold(black_box(&input))));
    group.bench_function("framer+gemini_sse_unwrap", |b| {
        b.iter(|| frame_and_unwrap(black_box(&input), &mut out))
    });
    group.finish();
}

criterion_group!(sse_anthropic, benches);
criterion_main!(sse_anthropic);
