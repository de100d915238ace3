//! Throughput of the streaming hot path: upstream `v1internal` SSE bytes framed and rewritten into OpenAI
//! `chat.completion.chunk` frames, measured in upstream bytes per second.
//!
//! The input is a recorded-shape stream generated deterministically: a few thousand events of 5–60 tokens,
//! thought summaries first, usage as a running total on every event (as Google sends it), quotes, newlines
//! and multi-byte text in the content, one tool call, and a final signature part. It is fed in 4 KiB reads,
//! which align with neither events nor characters, like TLS records do.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use levitate_filters::sse::SseFramer;
use levitate_filters::stream::openai::{OpenAiFold, OpenAiStream, OpenAiStreamOptions};

const READ_SIZE: usize = 4096;
const EVENTS: usize = 12_000;

/// A small deterministic generator, so every run measures the same bytes.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: &[&str] = &[
    "the",
    "request",
    "handler",
    "returns",
    "a",
    "stream",
    "of",
    "events",
    "and",
    "each",
    "one",
    "carries",
    "text",
    "with",
    "\\\"quotes\\\"",
    "café",
    "naïve",
    "世界",
    "🎉",
    "tokens",
    "function",
    "=>",
    "{",
    "}",
    "`code`",
    "é",
    "\\n",
    "\\n\\n",
    "- item",
    "**bold**",
    "rewrite",
    "upstream",
    "latency",
];

/// `n` tokens of JSON-escaped text (roughly one word per token).
fn text(rng: &mut Lcg, tokens: u64) -> String {
    let mut out = String::new();
    for i in 0..tokens {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
    }
    out
}

fn event(parts: &str, finish: &str, usage: (u64, u64, u64)) -> String {
    let (prompt, candidates, thoughts) = usage;
    format!(
        "data: {{\"response\":{{\"candidates\":[{{\"content\":{{\"role\":\"model\",\"parts\":[{parts}]}}{finish}}}],\
         \"usageMetadata\":{{\"promptTokenCount\":{prompt},\"candidatesTokenCount\":{candidates},\
         \"thoughtsTokenCount\":{thoughts},\"totalTokenCount\":{}}},\"modelVersion\":\"gemini-3-flash-a\",\
         \"responseId\":\"tjVCavaJBYjgz7IP-NnfSQ\"}},\"traceId\":\"b024eecf3a9f3c5a\",\"metadata\":{{}}}}\r\n\r\n",
        prompt + candidates + thoughts
    )
}

/// A multi-megabyte upstream stream of the shape Google sends.
fn recorded_stream() -> Vec<u8> {
    let mut rng = Lcg(0x5eed);
    let prompt = 17_984;
    let (mut candidates, mut thoughts) = (0, 0);
    let mut out = String::new();
    for i in 0..EVENTS {
        let tokens = 5 + rng.below(56);
        let part = if i % 400 < 40 {
            thoughts += tokens;
            format!("{{\"text\":\"{}\",\"thought\":true}}", text(&mut rng, tokens))
        } else {
            candidates += tokens;
            format!("{{\"text\":\"{}\"}}", text(&mut rng, tokens))
        };
        out.push_str(&event(&part, "", (prompt, candidates, thoughts)));
    }
    let call =
        "{\"functionCall\":{\"name\":\"read_file\",\"args\":{\"path\":\"src/main.rs\",\"lines\":[1,200]}},\
                \"thoughtSignature\":\"EtwBCtkBAb4+9vsQ\"}";
    out.push_str(&event(call, "", (prompt, candidates, thoughts)));
    out.push_str(&event(
        "{\"text\":\"\",\"thoughtSignature\":\"EkQKQgE\"}",
        ",\"finishReason\":\"STOP\"",
        (prompt, candidates, thoughts),
    ));
    out.into_bytes()
}

fn options() -> OpenAiStreamOptions {
    OpenAiStreamOptions {
        id: "chatcmpl-0d6c1b9e6a7f4a0c9f3e".to_owned(),
        model: "gpt-4o".to_owned(),
        created: 1_760_000_000,
        include_usage: true,
        tool_call_id_prefix: "call_3f9a2c_".to_owned(),
        tool_names: Default::default(),
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
    let mut framer = SseFramer::new(1 << 20);
    let mut stream = OpenAiStream::new(options());
    for read in input.chunks(READ_SIZE) {
        framer.push(read).expect("within the cap");
        while let Some(mut event) = framer.next_event() {
            stream.on_event(&mut event.data, out).expect("valid upstream events");
        }
        // The gateway writes `out` downstream after every read and reuses the buffer.
        black_box(out.as_slice());
        out.clear();
    }
    stream.finish(out);
    black_box(stream.take_signatures());
}

fn frame_and_fold(input: &[u8]) -> Vec<u8> {
    let mut framer = SseFramer::new(1 << 20);
    let mut fold = OpenAiFold::new(options());
    for read in input.chunks(READ_SIZE) {
        framer.push(read).expect("within the cap");
        while let Some(mut event) = framer.next_event() {
            fold.on_event(&mut event.data).expect("valid upstream events");
        }
    }
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
