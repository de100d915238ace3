//! The fast path of [`ChunkParser`](super::ChunkParser): one pass over an upstream event of the usual shape,
//! without building a tree of it.
//!
//! Nearly every event of a stream is a text part or two, a running usage total and a few ids. simd-json
//! indexes every byte of such an event and puts every value on its tape, and that was most of the rewrite
//! cost (docs/benchmarks.md, "SSE rewriting"). This scanner walks the event once, reads only what a
//! [`Chunk`](super::Chunk) needs, checks the JSON grammar of everything it skips, and records where the
//! strings it keeps are. Anything else — a tool call, media, grounding, an error, a key or kept string with
//! an unusual escape, a repeated key, a count that is not a plain integer — makes it give up, and the caller
//! parses the event with simd-json: the fast path never decides what an unusual event means.
//!
//! Events of one stream mostly share their layout: the same keys in the same order, only the text, the counts
//! and the ids changing. The walk records where it read each value ([`Skeleton`]), and the next event is first
//! matched against that layout, the bytes between values compared whole and only the values read; an event
//! whose layout differs anywhere is walked (and its layout kept) instead.
//!
//! It does not check UTF-8: the caller checks the whole event once it has unescaped the text in place.

use std::ops::Range;

use super::cursor::{Cursor, Hole, Span, Target, MAX_HOLES};
use super::usage::Usage;

/// A text part's strings, by position in the event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct TextPart {
    pub text: Option<Span>,
    pub thought: bool,
    pub signature: Option<Range<usize>>,
}

/// What a scan found: the fields of a [`Chunk`](super::Chunk), strings as positions in the event. Reused
/// from event to event.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Spans {
    /// `None` for a part of a kind no machine maps.
    pub parts: Vec<Option<TextPart>>,
    pub finish_reason: Option<Range<usize>>,
    pub usage: Option<Usage>,
    pub response_id: Option<Range<usize>>,
    pub model_version: Option<Range<usize>>,
}

impl Clone for Spans {
    fn clone(&self) -> Self {
        let mut spans = Spans::default();
        spans.clone_from(self);
        spans
    }

    /// Field by field, so that the parts' vector is reused (the derived form would allocate one per event).
    fn clone_from(&mut self, source: &Self) {
        self.parts.clone_from(&source.parts);
        self.finish_reason.clone_from(&source.finish_reason);
        self.usage = source.usage;
        self.response_id.clone_from(&source.response_id);
        self.model_version.clone_from(&source.model_version);
    }
}

/// Walks one event's `data` into `spans`, recording where each value is into `holes`; `false` when the event
/// is not of the usual shape or not valid JSON (the caller then parses it with simd-json, which decides which).
pub(super) fn scan(data: &[u8], spans: &mut Spans, holes: &mut Vec<Hole>) -> bool {
    spans.parts.clear();
    spans.finish_reason = None;
    spans.usage = None;
    spans.response_id = None;
    spans.model_version = None;
    let mut cursor = Cursor::recording(data, std::mem::take(holes));
    cursor.skip_whitespace();
    let scanned = envelope(&mut cursor, spans).is_some() && {
        cursor.skip_whitespace();
        cursor.at == data.len()
    };
    *holes = cursor.into_holes();
    scanned
}

/// The root: `{"response":{…},"traceId":…,"metadata":…}`. Only a `response` object is the usual shape; the
/// bare response and the in-stream error are simd-json's.
fn envelope(cursor: &mut Cursor<'_>, spans: &mut Spans) -> Option<()> {
    let mut response = false;
    cursor.object(|cursor, key| match key {
        b"response" if !response => {
            response = true;
            response_fields(cursor, spans)
        }
        b"response" | b"error" => None,
        _ => cursor.skip_value(0),
    })?;
    response.then_some(())
}

/// Keys of one object seen so far, to give up on a repeated one (simd-json keeps both, and which one wins
/// differs by key).
#[derive(Default)]
struct Seen(u32);

impl Seen {
    /// Records `key` (a bit of its own); `None` when it was seen before.
    fn first(&mut self, key: u32) -> Option<()> {
        let bit = 1 << key;
        let first = self.0 & bit == 0;
        self.0 |= bit;
        first.then_some(())
    }
}

fn response_fields(cursor: &mut Cursor<'_>, spans: &mut Spans) -> Option<()> {
    let mut seen = Seen::default();
    cursor.object(|cursor, key| match key {
        b"candidates" => {
            seen.first(0)?;
            let mut first = true;
            cursor.array(|cursor| {
                if std::mem::take(&mut first) {
                    candidate(cursor, spans)
                } else {
                    cursor.skip_value(0)
                }
            })
        }
        b"usageMetadata" | b"usage_metadata" => {
            seen.first(1)?;
            spans.usage = Some(usage(cursor)?);
            Some(())
        }
        b"modelVersion" | b"model_version" => {
            seen.first(2)?;
            spans.model_version = Some(cursor.read(Target::ModelVersion, Cursor::plain_string)?);
            Some(())
        }
        b"responseId" | b"response_id" => {
            seen.first(3)?;
            spans.response_id = Some(cursor.read(Target::ResponseId, Cursor::plain_string)?);
            Some(())
        }
        b"promptFeedback" | b"prompt_feedback" => None,
        _ => cursor.skip_value(0),
    })
}

fn candidate(cursor: &mut Cursor<'_>, spans: &mut Spans) -> Option<()> {
    let mut seen = Seen::default();
    cursor.object(|cursor, key| match key {
        b"content" => {
            seen.first(0)?;
            let mut parts = Seen::default();
            cursor.object(|cursor, key| match key {
                b"parts" => {
                    parts.first(0)?;
                    cursor.array(|cursor| {
                        let part = part(cursor, spans.parts.len())?;
                        spans.parts.push(part);
                        Some(())
                    })
                }
                _ => cursor.skip_value(0),
            })
        }
        b"finishReason" | b"finish_reason" => {
            seen.first(1)?;
            spans.finish_reason = Some(cursor.read(Target::FinishReason, Cursor::plain_string)?);
            Some(())
        }
        b"groundingMetadata" | b"grounding_metadata" => None,
        _ => cursor.skip_value(0),
    })
}

/// The element `index` of `parts`: a text part (`None` for a part of a kind no machine maps).
fn part(cursor: &mut Cursor<'_>, index: usize) -> Option<Option<TextPart>> {
    let mut seen = Seen::default();
    let mut part = TextPart { text: None, thought: false, signature: None };
    cursor.object(|cursor, key| match key {
        b"text" => {
            seen.first(0)?;
            part.text = Some(cursor.read(Target::Text(index), Cursor::text)?);
            Some(())
        }
        b"thought" => {
            seen.first(1)?;
            part.thought = cursor.bool()?;
            Some(())
        }
        b"thoughtSignature" | b"thought_signature" => {
            seen.first(2)?;
            part.signature = Some(cursor.read(Target::Signature(index), Cursor::plain_string)?);
            Some(())
        }
        b"functionCall" | b"function_call" | b"inlineData" | b"inline_data" | b"fileData" | b"file_data" => {
            None
        }
        _ => cursor.skip_value(0),
    })?;
    Some((part.text.is_some() || part.signature.is_some()).then_some(part))
}

/// The `usageMetadata` keys read, in both casings, in the order of [`Target::Count`]'s index.
pub(super) const COUNT_KEYS: [[&[u8]; 2]; 5] = [
    [b"promptTokenCount", b"prompt_token_count"],
    [b"candidatesTokenCount", b"candidates_token_count"],
    [b"thoughtsTokenCount", b"thoughts_token_count"],
    [b"cachedContentTokenCount", b"cached_content_token_count"],
    [b"totalTokenCount", b"total_token_count"],
];

/// The usage field a count at `index` of [`COUNT_KEYS`] fills.
fn count_field(usage: &mut Usage, index: usize) -> Option<&mut u64> {
    match index {
        0 => Some(&mut usage.prompt),
        1 => Some(&mut usage.candidates),
        2 => Some(&mut usage.thoughts),
        3 => Some(&mut usage.cached),
        4 => Some(&mut usage.total),
        _ => None,
    }
}

fn usage(cursor: &mut Cursor<'_>) -> Option<Usage> {
    let mut usage = Usage::default();
    cursor.object(|cursor, key| {
        let Some(index) = COUNT_KEYS.iter().position(|names| names.contains(&key)) else {
            return cursor.skip_value(0);
        };
        *count_field(&mut usage, index)? = cursor.read(Target::Count(index), Cursor::count)?;
        Some(())
    })?;
    Some(usage)
}

/// The layout of the last event walked: the bytes between its values, what each value was read for, and
/// what the walk found. An event with the same bytes between values of the same kinds has the same keys in
/// the same order and the same structure, so the walk would read it into the same fields: [`replay`] reads
/// only its values. Kept per stream (a few hundred bytes).
///
/// [`replay`]: Skeleton::replay
#[derive(Debug, Default)]
pub(super) struct Skeleton {
    /// The bytes between the values, one after another.
    between: Vec<u8>,
    /// Each value: how many bytes of `between` come before it, and what it is read for.
    values: Vec<(usize, Target)>,
    /// What the walk found, its positions to be replaced by the next event's.
    spans: Spans,
    learned: bool,
}

/// Room made up front for the usual event's layout: its parts, values and bytes between values.
const USUAL_PARTS: usize = 2;
pub(super) const USUAL_VALUES: usize = 16;
const USUAL_BETWEEN_BYTES: usize = 512;

/// The bytes between values a skeleton keeps at most: the usual event has a few hundred (its text is a
/// value), and a stream's skeleton must stay small whatever upstream sends.
const MAX_BETWEEN_BYTES: usize = 2048;

impl Skeleton {
    /// An empty skeleton with room for the usual event's layout, and `spans` with room for its parts.
    ///
    /// Made whole when the stream starts, with the stream's other state, rather than grown piece by piece on
    /// its first events: blocks allocated mid-stream share allocator pages with what outlives the stream,
    /// and kept more of them resident after a burst (2–3 MiB after 10,000 streams, docs/benchmarks.md).
    pub fn with_room(spans: &mut Spans) -> Self {
        spans.parts.reserve(USUAL_PARTS);
        Skeleton {
            between: Vec::with_capacity(USUAL_BETWEEN_BYTES),
            values: Vec::with_capacity(USUAL_VALUES),
            spans: Spans { parts: Vec::with_capacity(USUAL_PARTS), ..Spans::default() },
            learned: false,
        }
    }

    /// Keeps the layout of `data`, which [`scan`] just walked into `spans`, recording `holes`; forgets the
    /// last one instead when `data` has too many values or too many bytes between them.
    pub fn learn(&mut self, data: &[u8], holes: &[Hole], spans: &Spans) {
        self.between.clear();
        self.values.clear();
        let in_values: usize = holes.iter().map(|hole| hole.end.saturating_sub(hole.start)).sum();
        self.learned = holes.len() < MAX_HOLES && data.len().saturating_sub(in_values) <= MAX_BETWEEN_BYTES;
        if !self.learned {
            return;
        }
        let mut at = 0;
        for hole in holes {
            self.between.extend_from_slice(data.get(at..hole.start).unwrap_or_default());
            self.values.push((hole.start.saturating_sub(at), hole.target));
            at = hole.end;
        }
        self.between.extend_from_slice(data.get(at..).unwrap_or_default());
        self.spans.clone_from(spans);
    }

    /// Reads `data` into `spans` if it has the learned layout; `false` (and `spans` scratch) if not.
    pub fn replay(&self, data: &[u8], spans: &mut Spans) -> bool {
        if !self.learned {
            return false;
        }
        spans.clone_from(&self.spans);
        let mut cursor = Cursor::new(data);
        let mut between = self.between.as_slice();
        for &(before, target) in &self.values {
            let Some((bytes, rest)) = between.split_at_checked(before) else { return false };
            between = rest;
            if cursor.literal(bytes).is_none() || read(&mut cursor, target, spans).is_none() {
                return false;
            }
        }
        cursor.literal(between).is_some() && cursor.at == data.len()
    }
}

/// Text part `index` of `spans`.
fn text_part(spans: &mut Spans, index: usize) -> Option<&mut TextPart> {
    spans.parts.get_mut(index).and_then(Option::as_mut)
}

/// Reads the value at the cursor into the field `target` names, as the walk does.
fn read(cursor: &mut Cursor<'_>, target: Target, spans: &mut Spans) -> Option<()> {
    match target {
        Target::Text(index) => text_part(spans, index)?.text = Some(cursor.text()?),
        Target::Signature(index) => text_part(spans, index)?.signature = Some(cursor.plain_string()?),
        Target::FinishReason => spans.finish_reason = Some(cursor.plain_string()?),
        Target::ModelVersion => spans.model_version = Some(cursor.plain_string()?),
        Target::ResponseId => spans.response_id = Some(cursor.plain_string()?),
        Target::Count(index) => *count_field(spans.usage.as_mut()?, index)? = cursor.count()?,
        // Any value there is skipped by the walk alike.
        Target::Skipped => cursor.skip_value(0)?,
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::super::chunk::{ChunkParser, Part};
    use super::super::json;
    use super::*;

    /// A small deterministic generator: each proptest case is a seed, so a failing case prints the event.
    struct Gen(u64);

    impl Gen {
        fn below(&mut self, n: usize) -> usize {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((self.0 >> 33) % n as u64) as usize
        }

        fn one_in(&mut self, n: usize) -> bool {
            self.below(n) == 0
        }

        fn pick<'s>(&mut self, items: &[&'s str]) -> &'s str {
            items[self.below(items.len())]
        }

        fn ws(&mut self) -> &'static str {
            if self.one_in(6) {
                self.pick(&[" ", "\n", "\r\n  ", "\t"])
            } else {
                ""
            }
        }

        /// The inside of a JSON string: plain text mostly, with every kind of escape and a few invalid bytes.
        fn string(&mut self) -> String {
            let pieces = [
                "word",
                " ",
                "café",
                "世界",
                "🎉",
                "\\\"",
                "\\\\",
                "\\n",
                "\\t",
                "\\r",
                "\\b",
                "\\f",
                "\\/",
                "\\u00e9",
                "\\u0041",
                "\\ud83c\\udf89",
                "\\ud83c",
                "\u{2028}",
                "\u{2029}",
                "—",
                "<",
                "\u{1}",
                "\\x",
                "\\u12",
                "'",
            ];
            let rare = 12;
            (0..self.below(12))
                .map(|_| if self.one_in(40) { self.pick(&pieces) } else { self.pick(&pieces[..rare]) })
                .collect()
        }

        fn number(&mut self) -> String {
            self.pick(&[
                "0",
                "7",
                "17984",
                "-3",
                "1.5",
                "-0",
                "01",
                "1e3",
                "2E-2",
                "99999999999999999999",
                "1.",
                ".5",
            ])
            .to_owned()
        }

        fn count(&mut self) -> String {
            if self.one_in(20) {
                self.number()
            } else {
                self.below(100_000).to_string()
            }
        }

        /// Any value, for the keys the scanner skips.
        fn value(&mut self, depth: usize) -> String {
            match self.below(if depth > 3 { 4 } else { 7 }) {
                0 => format!("\"{}\"", self.string()),
                1 => self.number(),
                2 => self.pick(&["true", "false", "null", "nul", "tru"]).to_owned(),
                3 => "{}".to_owned(),
                4 => {
                    let items: Vec<_> = (0..self.below(4)).map(|_| self.value(depth + 1)).collect();
                    format!("[{}{}]", self.ws(), items.join(","))
                }
                _ => {
                    let members: Vec<_> = (0..self.below(4))
                        .map(|_| format!("\"{}\":{}{}", self.string(), self.ws(), self.value(depth + 1)))
                        .collect();
                    format!("{{{}}}", members.join(","))
                }
            }
        }

        fn object(&mut self, mut members: Vec<String>) -> String {
            if self.one_in(8) {
                let key = self.pick(&["index", "role", "createTime", "x"]).to_owned();
                members.push(format!("\"{key}\":{}", self.value(0)));
            }
            if self.one_in(40) && !members.is_empty() {
                let again = members[self.below(members.len())].clone();
                members.push(again);
            }
            if self.one_in(4) {
                let (a, b) = (self.below(members.len().max(1)), self.below(members.len().max(1)));
                if a < members.len() && b < members.len() {
                    members.swap(a, b);
                }
            }
            let sep = format!(",{}", self.ws());
            format!("{{{}{}{}}}", self.ws(), members.join(&sep), self.ws())
        }

        fn part(&mut self) -> String {
            let mut members = Vec::new();
            if !self.one_in(6) {
                members.push(format!("\"text\":{}\"{}\"", self.ws(), self.string()));
            }
            if self.one_in(3) {
                let thought =
                    if self.one_in(10) { self.pick(&["1", "null"]) } else { self.pick(&["true", "false"]) };
                members.push(format!("\"thought\":{thought}"));
            }
            if self.one_in(4) {
                let key = self.pick(&["thoughtSignature", "thought_signature"]);
                members.push(format!("\"{key}\":\"{}\"", self.string()));
            }
            if self.one_in(15) {
                members.push(r#""functionCall":{"name":"f","args":{"a":[1,2]}}"#.to_owned());
            }
            self.object(members)
        }

        fn response(&mut self) -> String {
            let mut members = Vec::new();
            let parts: Vec<_> = (0..self.below(3) + 1).map(|_| self.part()).collect();
            let mut candidate =
                vec![format!("\"content\":{{\"role\":\"model\",\"parts\":[{}]}}", parts.join(","))];
            if self.one_in(4) {
                candidate.push(format!(
                    "\"finishReason\":\"{}\"",
                    self.pick(&["STOP", "MAX_TOKENS", "NEW", "S\\u0054OP"])
                ));
            }
            let candidate = self.object(candidate);
            members.push(if self.one_in(10) {
                "\"candidates\":[]".to_owned()
            } else {
                format!("\"candidates\":[{candidate}]")
            });
            if !self.one_in(5) {
                let keys = [
                    "promptTokenCount",
                    "candidatesTokenCount",
                    "thoughtsTokenCount",
                    "cachedContentTokenCount",
                    "total_token_count",
                ];
                let mut counts = Vec::new();
                for key in keys {
                    if !self.one_in(4) {
                        counts.push(format!("\"{key}\":{}", self.count()));
                    }
                }
                let usage = self.object(counts);
                members.push(format!("\"usageMetadata\":{usage}"));
            }
            let model = if self.one_in(10) { "g\\u0065mini" } else { "gemini-3-flash" };
            members.push(format!("\"modelVersion\":\"{model}\""));
            members.push(format!(
                "\"responseId\":{}",
                if self.one_in(10) { "7".to_owned() } else { "\"tjVC\"".to_owned() }
            ));
            if self.one_in(20) {
                members.push("\"promptFeedback\":{\"blockReason\":\"SAFETY\"}".to_owned());
            }
            self.object(members)
        }

        fn event(&mut self) -> Vec<u8> {
            let response = self.response();
            let mut members = vec![
                format!("\"response\":{response}"),
                "\"traceId\":\"b024\"".to_owned(),
                "\"metadata\":{}".to_owned(),
            ];
            if self.one_in(20) {
                members.push(r#""error":{"code":429,"message":"busy"}"#.to_owned());
            }
            let mut event = if self.one_in(10) { response } else { self.object(members) }.into_bytes();
            // Now and then a byte lost, changed or added, as a broken upstream might send.
            if self.one_in(10) && !event.is_empty() {
                let at = self.below(event.len());
                match self.below(4) {
                    0 => event.truncate(at),
                    1 => event[at] = b"\"\\{}[],:0 \x01\xff"[self.below(12)],
                    2 => event.insert(at, 0xc3),
                    _ => drop(event.remove(at)),
                }
            }
            event
        }
    }

    /// Parses `event` through the fast path (when the scanner takes it) and through simd-json, and checks
    /// they agree; returns whether the fast path took it.
    fn agrees_with_simd_json(event: &[u8]) -> Result<bool, String> {
        let took = scan(event, &mut Spans::default(), &mut Vec::new());
        parser_agrees_with_simd_json(&mut ChunkParser::new(), event)?;
        Ok(took)
    }

    /// Parses `event` with `parser` (which may have read earlier events) and with simd-json, and checks they
    /// agree.
    fn parser_agrees_with_simd_json(parser: &mut ChunkParser, event: &[u8]) -> Result<(), String> {
        let (mut fast_data, mut slow_data) = (event.to_vec(), event.to_vec());
        let fast = parser.parse(&mut fast_data);
        let slow = ChunkParser::new().parse_with_simd_json(&mut slow_data);
        match (&fast, &slow) {
            (Ok(a), Ok(b)) if a == b => {}
            (Err(_), Err(_)) => {}
            _ => return Err(format!("fast {fast:?}\nsimd-json {slow:?}")),
        }
        // Text kept escaped must be exactly what the escaper writes for the text.
        for part in fast.iter().flat_map(|chunk| &chunk.parts) {
            if let Part::Text { text, .. } = part {
                let (mut kept, mut escaped) = (Vec::new(), Vec::new());
                text.write_escaped(&mut kept);
                json::write_escaped(&mut escaped, &text.to_str());
                if kept != escaped {
                    return Err(format!(
                        "text written as {:?}, escaper {:?}",
                        String::from_utf8_lossy(&kept),
                        String::from_utf8_lossy(&escaped)
                    ));
                }
            }
        }
        Ok(())
    }

    /// `event` with a few bytes changed, as the next event of a stream differs from the last: mostly digits
    /// and letters (values, sometimes keys), now and then an escape, a character or a byte added or lost.
    fn variant(gen: &mut Gen, event: &[u8]) -> Vec<u8> {
        let mut variant = event.to_vec();
        for _ in 0..gen.below(4) {
            if variant.is_empty() {
                break;
            }
            let at = gen.below(variant.len());
            let byte = variant[at];
            match gen.below(10) {
                0..=3 if byte.is_ascii_digit() => variant[at] = b'0' + gen.below(10) as u8,
                0..=5 if byte.is_ascii_alphabetic() => variant[at] = b'a' + gen.below(26) as u8,
                6 => drop(variant.splice(at..at, *b"\\n")),
                7 => drop(variant.splice(at..at, "é".bytes())),
                8 => drop(variant.remove(at)),
                _ => variant.insert(at, b' '),
            }
        }
        variant
    }

    #[test]
    fn events_read_by_the_learned_layout_agree_with_simd_json() {
        let (mut events, mut replayed) = (0, 0);
        for seed in 0..1_500 {
            let mut gen = Gen(seed ^ 0x5eed);
            let base = Gen(seed).event();
            let other = Gen(seed + 1).event();
            let mut parser = ChunkParser::new();
            // What the parser's own skeleton does, to count the events it read by the learned layout.
            let (mut shadow, mut spans, mut holes) = (Skeleton::default(), Spans::default(), Vec::new());
            let sequence = (0..12).map(|i| match i {
                1 | 2 => base.clone(),
                7 => other.clone(),
                _ => variant(&mut gen, &base),
            });
            for event in std::iter::once(base.clone()).chain(sequence) {
                events += 1;
                if shadow.replay(&event, &mut spans) {
                    replayed += 1;
                } else if scan(&event, &mut spans, &mut holes) {
                    shadow.learn(&event, &holes, &spans);
                }
                if let Err(diff) = parser_agrees_with_simd_json(&mut parser, &event) {
                    panic!(
                        "after {}\n{}\n{diff}",
                        String::from_utf8_lossy(&base),
                        String::from_utf8_lossy(&event)
                    );
                }
            }
        }
        // Most generated events are unusual on purpose, and so are many variants; a skeleton that never
        // matched would agree with simd-json trivially.
        assert!(replayed > 600, "only {replayed} of {events} events were read by a learned layout");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

        #[test]
        fn the_fast_path_agrees_with_simd_json(seed in proptest::prelude::any::<u64>()) {
            let event = Gen(seed).event();
            if let Err(diff) = agrees_with_simd_json(&event) {
                proptest::prop_assert!(false, "{}\n{diff}", String::from_utf8_lossy(&event));
            }
        }
    }

    #[test]
    fn the_fast_path_takes_most_generated_events_and_agrees_on_all() {
        let mut taken = 0;
        for seed in 0..5_000 {
            let event = Gen(seed).event();
            match agrees_with_simd_json(&event) {
                Ok(took) => taken += usize::from(took),
                Err(diff) => panic!("{}\n{diff}", String::from_utf8_lossy(&event)),
            }
        }
        // The generator makes most events unusual on purpose; a scanner that gave up on everything would
        // agree with simd-json trivially.
        assert!(taken > 1_000, "the fast path took only {taken} of 5,000 events");
    }

    #[test]
    fn takes_the_usual_events_and_keeps_their_text_escaped() {
        let event = br#"{"response": {"candidates": [{"content": {"role": "model","parts": [{"text": "say \"hi\"\n","thought": true}]}}],"usageMetadata": {"promptTokenCount": 17984,"candidatesTokenCount": 3,"totalTokenCount": 17987},"modelVersion": "gemini-3-flash-a","responseId": "tjVC"},"traceId": "b024","metadata": {}}"#;
        let mut spans = Spans::default();
        assert!(scan(event, &mut spans, &mut Vec::new()));
        let text = spans.parts[0].as_ref().and_then(|part| part.text.clone()).unwrap();
        assert!(text.escaped && text.canonical());
        assert_eq!(&event[text.range], br#"say \"hi\"\n"#);
        assert_eq!(spans.usage.map(|usage| usage.total), Some(17987));
        assert_eq!(agrees_with_simd_json(event), Ok(true));
    }

    #[test]
    fn keeps_no_layout_of_an_event_with_too_many_values() {
        let numbers = vec!["1"; 10_000].join(",");
        let event = format!(
            r#"{{"response":{{"x":[{numbers}],"candidates":[{{"content":{{"parts":[{{"text":"a"}}]}}}}]}}}}"#
        );
        let (mut spans, mut holes) = (Spans::default(), Vec::new());
        assert!(scan(event.as_bytes(), &mut spans, &mut holes));
        assert_eq!(holes.len(), MAX_HOLES, "the record stops growing");
        let mut skeleton = Skeleton::default();
        skeleton.learn(event.as_bytes(), &holes, &spans);
        assert!(!skeleton.replay(event.as_bytes(), &mut spans), "no layout was kept");
        let usual = br#"{"response":{"candidates":[{"content":{"parts":[{"text":"a"}]}}]}}"#;
        assert!(scan(usual, &mut spans, &mut holes));
        skeleton.learn(usual, &holes, &spans);
        assert!(skeleton.replay(usual, &mut spans));
    }

    #[test]
    fn gives_up_on_what_simd_json_should_decide() {
        for event in [
            r#"{"candidates":[{"content":{"parts":[{"text":"bare"}]}}]}"#,
            r#"{"response":{"candidates":[{"content":{"parts":[{"functionCall":{"name":"f"}}]}}]}}"#,
            r#"{"response":{"candidates":[{"content":{"parts":[{"text":"\u00e9"}]}}]}}"#,
            r#"{"response":{"modelVersion":"a","modelVersion":"b"}}"#,
            r#"{"response":{"usageMetadata":{"totalTokenCount":1.5}}}"#,
            r#"{"response":{},"error":{"code":500}}"#,
            r#"{"response":{"x":1e3}}"#,
            r#"{"response":{}} x"#,
        ] {
            assert!(!scan(event.as_bytes(), &mut Spans::default(), &mut Vec::new()), "took {event}");
            assert!(agrees_with_simd_json(event.as_bytes()).is_ok(), "{event}");
        }
    }
}
