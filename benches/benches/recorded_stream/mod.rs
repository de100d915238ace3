//! The upstream stream every SSE bench translates: a recorded-shape `v1internal` stream generated
//! deterministically, so every run and every client protocol measures the same bytes.
//!
//! A few thousand events of 5–60 tokens, thought summaries first in every 400, usage as a running total on
//! every event (as Google sends it), quotes, newlines and multi-byte text in the content, one tool call, and
//! a final signature part.

/// Bytes per read when feeding the stream: 4 KiB reads align with neither events nor characters, like TLS
/// records do.
pub const READ_SIZE: usize = 4096;

/// Feeds `input` to an SSE framer in `READ_SIZE` reads, as a socket delivers it: `on_event(Some(data))` for
/// each complete event, then `on_event(None)` at the end of every read (where the gateway writes downstream).
pub fn frame_reads(input: &[u8], mut on_event: impl FnMut(Option<&mut [u8]>)) {
    let mut framer = levitate_filters::sse::SseFramer::new(1 << 20);
    for read in input.chunks(READ_SIZE) {
        framer.push(read).expect("within the cap");
        while let Some(mut event) = framer.next_event() {
            on_event(Some(&mut event.data));
        }
        on_event(None);
    }
}

/// Runs a stream machine over `input` as the gateway does: each event is rewritten into `out` by `rewrite`,
/// and after every read `out` goes downstream and the buffer is reused.
pub fn rewrite_reads(input: &[u8], out: &mut Vec<u8>, mut rewrite: impl FnMut(&mut [u8], &mut Vec<u8>)) {
    frame_reads(input, |event| match event {
        Some(data) => rewrite(data, out),
        None => {
            criterion::black_box(out.as_slice());
            out.clear();
        }
    });
}

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
pub fn recorded_stream() -> Vec<u8> {
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
