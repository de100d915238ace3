//! Throughput of the streaming hot path: upstream `v1internal` SSE bytes framed and rewritten into OpenAI
//! `chat.completion.chunk` frames, measured in upstream bytes per second.
//!
//! The input is the recorded-shape stream of [`recorded_stream`], fed in 4 KiB reads.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use levitate_filters::protocol::openai_chat::{OpenAiFold, OpenAiStream, OpenAiStreamOptions};
use levitate_filters::sse::SseFramer;
use levitate_filters::stream::{Fold, Translator};

mod recorded_stream;

use recorded_stream::{frame_reads, recorded_stream, rewrite_reads, READ_SIZE};

fn options() -> OpenAiStreamOptions {
    OpenAiStreamOptions {
        id: "chatcmpl-0d6c1b9e6a7f4a0c9f3e".to_owned(),
        model: "gpt-4o".to_owned(),
        created: 1_760_000_000,
        include_usage: true,
        tool_call_id_prefix: "call_3f9a2c_".to_owned(),
        tool_names: Default::default(),
        web_search: false,
    }
}

fn frame_only(input: &[u8]) -> usize {
    let mut framer = SseFramer::new(1 << 20);
    let mut events = 0;
    for read in input.chunks(READ_SIZE) {
        framer.push(read).expect("within the cap");
        while let Some(event) = framer.next_event() {
            events += black_box(event.data.len()) & 1;
        }
    }
    while framer.finish().is_some() {
        events += 1;
    }
    events
}

fn frame_and_rewrite(input: &[u8], out: &mut Vec<u8>) {
    let mut stream = OpenAiStream::new(options());
    rewrite_reads(input, out, |data, out| stream.on_event(data, out).expect("valid upstream events"));
    stream.finish(out);
    black_box(stream.take_signatures());
}

fn frame_and_fold(input: &[u8]) -> Vec<u8> {
    let mut fold = OpenAiFold::new(options());
    frame_reads(input, |event| {
        if let Some(data) = event {
            fold.on_event(data).expect("valid upstream events");
        }
    });
    fold.finish()
}

fn benches(c: &mut Criterion) {
    let input = recorded_stream();
    let mut group = c.benchmark_group("sse_openai");
    group.throughput(Throughput::Bytes(input.len() as u64));
    group.sample_size(20);

    group.bench_function("sse_framer", |b| b.iter(|| frame_only(black_box(&input))));

    let mut out = Vec::with_capacity(64 * 1024);
    group.bench_function("framer+openai_stream", |b| {
        b.iter(|| frame_and_rewrite(black_box(&input), &mut out))
    });

    group.bench_function("framer+openai_fold", |b| b.iter(|| frame_and_fold(black_box(&input))));
    group.finish();
}

criterion_group!(sse_openai, benches);
criterion_main!(sse_openai);
