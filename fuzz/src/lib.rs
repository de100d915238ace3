//! What the fuzz targets share: how one fuzzer input is cut into the pieces a target needs (read boundaries
//! of an upstream body, fields of a request), and the stand-ins for the gateway's stores.
//!
//! Every decoding here is total: any byte string is a valid input, so libFuzzer never wastes runs on inputs a
//! target rejects before reaching the code under test, and a crash file replays exactly.

use levitate_filters::signature::SignatureLookup;
use levitate_filters::sse::{SseEvent, SseFramer};
use levitate_filters::stream::Translator;

/// The per-event cap the fuzz targets give the SSE framer: small enough that inputs of libFuzzer's size
/// reach the "event too large" path, large enough for every seed.
pub const MAX_EVENT: usize = 16 * 1024;

/// The first two bytes of an input as control bits (which mode a machine runs in, how reads are split);
/// the rest is the body under test. Short inputs get zeros.
pub fn control(data: &[u8]) -> (u8, u8, &[u8]) {
    match data {
        [flags, split, body @ ..] => (*flags, *split, body),
        [flags] => (*flags, 0, &[]),
        [] => (0, 0, &[]),
    }
}

/// Cuts `body` into reads of 1 to 64 bytes (or, for `seed` 0, one read), from a small generator seeded by
/// the input, so the fuzzer explores where reads end relative to lines, `\r\n` pairs and UTF-8 characters.
pub fn reads(body: &[u8], seed: u8) -> Vec<&[u8]> {
    if seed == 0 {
        return vec![body];
    }
    let mut state = u32::from(seed).wrapping_mul(2_654_435_761) | 1;
    let mut rest = body;
    let mut out = Vec::new();
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let len = (state % 64 + 1) as usize;
        let (read, tail) = rest.split_at(len.min(rest.len()));
        out.push(read);
        rest = tail;
    }
    out
}

/// Frames `reads` as the gateway's pump does (push each read, drain events, then `finish`), handing each
/// event's data to `on_event`. Returns the events in order, or `None` once the framer refused the stream.
pub fn frame(reads: &[&[u8]], mut on_event: impl FnMut(&mut Vec<u8>)) -> Option<Vec<SseEvent>> {
    let mut framer = SseFramer::new(MAX_EVENT);
    let mut events = Vec::new();
    let mut keep = |mut event: SseEvent, events: &mut Vec<SseEvent>| {
        let copy = event.clone();
        on_event(&mut event.data);
        events.push(copy);
    };
    for read in reads {
        if framer.push(read).is_err() {
            return None;
        }
        while let Some(event) = framer.next_event() {
            keep(event, &mut events);
        }
    }
    if let Some(event) = framer.finish() {
        keep(event, &mut events);
        while let Some(event) = framer.next_event() {
            keep(event, &mut events);
        }
    }
    Some(events)
}

/// Frames `body` read by read through `on_event`, and checks the framer's promise that where reads end does
/// not change the events: the same body pushed whole must give the same events.
pub fn frame_split_invariant(body: &[u8], split: u8, on_event: impl FnMut(&mut Vec<u8>)) {
    let Some(split_events) = frame(&reads(body, split), on_event) else { return };
    if split == 0 {
        return;
    }
    if let Some(whole) = frame(&[body], |_| {}) {
        assert_eq!(split_events, whole, "events depend on where the reads end");
    }
}

/// Drives a stream machine over `body` as the pump does: framed in the reads `split` chooses (checked against
/// the whole body), a keep-alive after every event when `flags` bit 2 is set, every query the gateway makes,
/// then the closing events. Returns the machine's output, or `None` when it refused an event.
pub fn drive(machine: &mut dyn Translator, flags: u8, split: u8, body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut failed = false;
    frame_split_invariant(body, split, |event| {
        if failed {
            return;
        }
        if machine.on_event(event, &mut out).is_err() {
            failed = true;
        }
        if flags & 4 != 0 {
            machine.keepalive(&mut out);
        }
    });
    machine.take_signatures();
    let _ = (machine.finished_by_upstream(), machine.emitted_anything(), machine.usage());
    machine.finish(&mut out);
    (!failed).then_some(out)
}

/// A folded answer (`flags` bit 0) that the machine accepted is one JSON body the SDK parses.
pub fn assert_folded_is_json(flags: u8, out: Option<&[u8]>) {
    if let (true, Some(out)) = (flags & 1 != 0, out) {
        serde_json::from_slice::<serde_json::Value>(out).expect("the folded answer is JSON");
    }
}

/// A signature store that knows some tool calls: those whose id has an even length get a signature, so the
/// transforms' "signature found" and "not found" paths are both reached.
pub struct SomeSignatures;

impl SignatureLookup for SomeSignatures {
    fn signature_for_tool_call(&self, tool_call_id: &str) -> Option<String> {
        (tool_call_id.len() % 2 == 0).then(|| format!("CiQBfuzzsignature{}", tool_call_id.len()))
    }
}

/// Upstream models whose families take different transform paths (Gemini, Claude, thinking, image).
pub const MODELS: [&str; 4] =
    ["gemini-2.5-pro", "claude-sonnet-4-5-thinking", "gemini-3-pro-image-preview", "claude-opus-4-5"];

/// The upstream model a `flags` byte selects.
pub fn model(flags: u8) -> &'static str {
    MODELS[usize::from(flags) % MODELS.len()]
}

/// A tool-name map with renames in it (`flags` bit 3), as a request whose tool names the upstream refused
/// leaves it, so the stream machines' name mapping on the way back is reached; otherwise the identity map.
pub fn tool_names(flags: u8) -> levitate_filters::inner::ToolNameMap {
    if flags & 8 == 0 {
        return Default::default();
    }
    levitate_filters::inner::ToolNameMap::new(["get weather", "get_weather", "ns.lookup", "a/b"])
}

/// The reasoning-sealing keys of the Responses targets: the same key as the filters' unit tests, so a sealed
/// `encrypted_content` lifted from a test opens, with a previous key so the rotation path is reached too.
pub fn seal_keys() -> levitate_filters::protocol::openai_responses::seal::SealKeys {
    use levitate_filters::protocol::openai_responses::seal::{SealKey, SealKeys};
    let key = |id: u32, byte: u8| SealKey::new(id, &[byte; 32]).expect("a 32-byte key");
    SealKeys::new(key(7, 7), Some(key(6, 6)))
}

/// The tool cache's promise, checked when `flags` bit 2 is set: building through a fresh cache twice (a miss,
/// then a hit) gives the same bytes, or the same error, as building without it. Then a request that was
/// built is JSON.
pub fn check_built<E: PartialEq + std::fmt::Debug>(
    flags: u8,
    built: Result<levitate_filters::inner::InnerRequest, E>,
    cached: impl Fn(&levitate_filters::inner::ToolCache) -> Result<levitate_filters::inner::InnerRequest, E>,
) {
    if flags & 4 != 0 {
        let cache = levitate_filters::inner::ToolCache::new(4);
        for _ in 0..2 {
            match (&built, &cached(&cache)) {
                (Ok(a), Ok(b)) => assert_eq!(a.json, b.json, "the tool cache changed the request"),
                (Err(a), Err(b)) => assert_eq!(a, b),
                (a, b) => panic!("the tool cache changed the outcome: {a:?} vs {b:?}"),
            }
        }
    }
    if let Ok(inner) = built {
        serde_json::from_slice::<serde_json::Value>(&inner.json).expect("the inner request is JSON");
    }
}
