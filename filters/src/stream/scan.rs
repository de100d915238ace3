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
//! It does not check UTF-8: the caller checks the whole event once it has unescaped the text in place.

use std::ops::Range;

use super::json::{stops, CHUNK, MASK_BITS_PER_BYTE};
use super::usage::Usage;

/// How deep a skipped value may nest before the scanner gives up (simd-json then decides).
const MAX_SKIP_DEPTH: usize = 32;

/// Digits a skipped number's integer or fraction may have before the scanner gives up: every number up to
/// this many parses the same in simd-json.
const MAX_NUMBER_DIGITS: usize = 19;

/// A kept string: its bytes between the quotes, and what undoing its escapes takes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Span {
    pub range: Range<usize>,
    /// It has escapes.
    pub escaped: bool,
    /// Every escape is one of `\" \\ \b \f \n \r \t`, which undo to one byte.
    pub simple: bool,
    /// It holds U+2028 or U+2029 unescaped (which the output escaper escapes).
    pub separator: bool,
}

impl Span {
    /// Whether the bytes are exactly what the output escaper ([`super::json::write_escaped`]) writes for the
    /// unescaped string, so that a machine may copy them as they stand.
    pub fn canonical(&self) -> bool {
        self.simple && !self.separator
    }
}

/// A text part's strings, by position in the event.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct TextPart {
    pub text: Option<Span>,
    pub thought: bool,
    pub signature: Option<Range<usize>>,
}

/// What a scan found: the fields of a [`Chunk`](super::Chunk), strings as positions in the event. Reused
/// from event to event.
#[derive(Debug, Default)]
pub(super) struct Spans {
    /// `None` for a part of a kind no machine maps.
    pub parts: Vec<Option<TextPart>>,
    pub finish_reason: Option<Range<usize>>,
    pub usage: Option<Usage>,
    pub response_id: Option<Range<usize>>,
    pub model_version: Option<Range<usize>>,
}

/// Scans one event's `data` into `spans`; `false` when the event is not of the usual shape or not valid
/// JSON (the caller then parses it with simd-json, which decides which).
pub(super) fn scan(data: &[u8], spans: &mut Spans) -> bool {
    spans.parts.clear();
    spans.finish_reason = None;
    spans.usage = None;
    spans.response_id = None;
    spans.model_version = None;
    let mut cursor = Cursor { bytes: data, at: 0 };
    cursor.skip_whitespace();
    let scanned = envelope(&mut cursor, spans);
    cursor.skip_whitespace();
    scanned.is_some() && cursor.at == data.len()
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
            spans.model_version = Some(cursor.plain_string()?);
            Some(())
        }
        b"responseId" | b"response_id" => {
            seen.first(3)?;
            spans.response_id = Some(cursor.plain_string()?);
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
                        let part = part(cursor)?;
                        spans.parts.push(part);
                        Some(())
                    })
                }
                _ => cursor.skip_value(0),
            })
        }
        b"finishReason" | b"finish_reason" => {
            seen.first(1)?;
            spans.finish_reason = Some(cursor.plain_string()?);
            Some(())
        }
        b"groundingMetadata" | b"grounding_metadata" => None,
        _ => cursor.skip_value(0),
    })
}

/// One element of `parts`: a text part (`None` for a part of a kind no machine maps).
fn part(cursor: &mut Cursor<'_>) -> Option<Option<TextPart>> {
    let mut seen = Seen::default();
    let mut part = TextPart { text: None, thought: false, signature: None };
    cursor.object(|cursor, key| match key {
        b"text" => {
            seen.first(0)?;
            part.text = Some(cursor.text()?);
            Some(())
        }
        b"thought" => {
            seen.first(1)?;
            part.thought = cursor.bool()?;
            Some(())
        }
        b"thoughtSignature" | b"thought_signature" => {
            seen.first(2)?;
            part.signature = Some(cursor.plain_string()?);
            Some(())
        }
        b"functionCall" | b"function_call" | b"inlineData" | b"inline_data" | b"fileData" | b"file_data" => {
            None
        }
        _ => cursor.skip_value(0),
    })?;
    Some((part.text.is_some() || part.signature.is_some()).then_some(part))
}

fn usage(cursor: &mut Cursor<'_>) -> Option<Usage> {
    let mut usage = Usage::default();
    cursor.object(|cursor, key| {
        let count = match key {
            b"promptTokenCount" | b"prompt_token_count" => &mut usage.prompt,
            b"candidatesTokenCount" | b"candidates_token_count" => &mut usage.candidates,
            b"thoughtsTokenCount" | b"thoughts_token_count" => &mut usage.thoughts,
            b"cachedContentTokenCount" | b"cached_content_token_count" => &mut usage.cached,
            b"totalTokenCount" | b"total_token_count" => &mut usage.total,
            _ => return cursor.skip_value(0),
        };
        *count = cursor.count()?;
        Some(())
    })?;
    Some(usage)
}

/// A position in the event. Every method that reads a value starts at its first byte and stops right after
/// it; `None` means "give up".
struct Cursor<'b> {
    bytes: &'b [u8],
    at: usize,
}

/// What a backslash may be followed by in a string the scanner gives back: escapes that undo to one byte.
fn is_simple_escape(byte: u8) -> bool {
    matches!(byte, b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't')
}

impl<'b> Cursor<'b> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.at += 1;
        }
    }

    /// The next byte that is not whitespace, consumed.
    #[inline]
    fn next_token(&mut self) -> Option<u8> {
        let mut byte = self.peek()?;
        while matches!(byte, b' ' | b'\n' | b'\r' | b'\t') {
            self.at += 1;
            byte = self.peek()?;
        }
        self.at += 1;
        Some(byte)
    }

    /// An object, each member's value read by `member` (called at the value with its key).
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'b [u8]) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        self.skip_whitespace();
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            let key = self.key()?;
            if self.next_token()? != b':' {
                return None;
            }
            self.skip_whitespace();
            member(self, key)?;
            match self.next_token()? {
                b',' => self.skip_whitespace(),
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    /// An array, each element read by `element` (called at the element).
    fn array(&mut self, mut element: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.eat(b'[')?;
        self.skip_whitespace();
        if self.eat(b']').is_some() {
            return Some(());
        }
        loop {
            element(self)?;
            match self.next_token()? {
                b',' => self.skip_whitespace(),
                b']' => return Some(()),
                _ => return None,
            }
        }
    }

    /// An object key, which the scanner compares as bytes: one with an escape gives up.
    fn key(&mut self) -> Option<&'b [u8]> {
        if let Some(key) = self.short_plain_string() {
            return Some(key);
        }
        let span = self.string()?;
        if span.escaped {
            return None;
        }
        self.bytes.get(span.range)
    }

    /// The common string: plain, and closed within the 32 bytes after its opening quote (keys, ids, most
    /// values). At most two [`stops`] scans; `None` (the cursor unmoved) for any other string.
    #[inline]
    fn short_plain_string(&mut self) -> Option<&'b [u8]> {
        if self.peek() != Some(b'"') {
            return None;
        }
        let start = self.at + 1;
        for offset in [0, CHUNK] {
            let block = self.bytes.get(start + offset..).and_then(<[u8]>::first_chunk::<CHUNK>)?;
            let flags = stops(block);
            if flags == 0 {
                continue;
            }
            let stop = (flags.trailing_zeros() / MASK_BITS_PER_BYTE) as usize;
            if block.get(stop) != Some(&b'"') {
                return None;
            }
            let end = start + offset + stop;
            self.at = end + 1;
            return self.bytes.get(start..end);
        }
        None
    }

    /// A string kept as it stands (an id, a signature, a finish reason): one with an escape gives up.
    fn plain_string(&mut self) -> Option<Range<usize>> {
        let start = self.at + 1;
        if let Some(string) = self.short_plain_string() {
            return Some(start..start + string.len());
        }
        let span = self.string()?;
        (!span.escaped).then_some(span.range)
    }

    /// A part's text, which may hold simple escapes (a machine copies it as it stands, or the caller undoes
    /// them in place); `\u` and `\/` give up.
    fn text(&mut self) -> Option<Span> {
        let span = self.string()?;
        (!span.escaped || span.simple).then_some(span)
    }

    /// A string, 16 bytes per step ([`stops`] flags quotes, backslashes, control characters and 0xE2): its
    /// contents' range and what its escapes are. Escapes are checked as JSON defines them; a control
    /// character, an unfinished string or a `\u` escape of a surrogate gives up.
    fn string(&mut self) -> Option<Span> {
        self.eat(b'"')?;
        let bytes = self.bytes;
        let start = self.at;
        let mut span = Span { range: start..start, escaped: false, simple: true, separator: false };
        // A flagged byte before this one was escaped by a backslash, not a stop of its own.
        let mut escape_end = start;
        let mut block = start;
        loop {
            let rest = bytes.get(block..).filter(|rest| !rest.is_empty())?;
            let mut flags = match rest.first_chunk::<CHUNK>() {
                Some(next) => stops(next),
                None => {
                    // The last few bytes, padded with spaces (never a stop) to one block.
                    let mut padded = [b' '; CHUNK];
                    padded[..rest.len()].copy_from_slice(rest);
                    stops(&padded)
                }
            };
            while flags != 0 {
                let stop = block + (flags.trailing_zeros() / MASK_BITS_PER_BYTE) as usize;
                flags &= flags - 1;
                if stop < escape_end {
                    continue;
                }
                match *bytes.get(stop)? {
                    b'"' => {
                        self.at = stop + 1;
                        span.range.end = stop;
                        return Some(span);
                    }
                    b'\\' => {
                        let letter = *bytes.get(stop + 1)?;
                        span.escaped = true;
                        span.simple &= is_simple_escape(letter);
                        escape_end = stop + escape_len(bytes.get(stop + 1..)?)?;
                    }
                    0xe2 => {
                        span.separator |= matches!(bytes.get(stop + 1..stop + 3), Some([0x80, 0xa8 | 0xa9]))
                    }
                    _ => return None,
                }
            }
            block += CHUNK;
        }
    }

    fn bool(&mut self) -> Option<bool> {
        if self.literal(b"true").is_some() {
            return Some(true);
        }
        self.literal(b"false").map(|()| false)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at + word.len();
        (self.bytes.get(self.at..end)? == word).then(|| self.at = end)
    }

    /// A token count: a non-negative integer as JSON writes it. A sign, a fraction or an exponent gives up
    /// (simd-json reads those as other number kinds), as do more digits than always fit.
    fn count(&mut self) -> Option<u64> {
        // Counts of up to seven digits, nearly all of them, are read from one 8-byte word.
        if let Some(word) = self.bytes.get(self.at..).and_then(<[u8]>::first_chunk::<8>) {
            let (digits, value) = leading_digits(*word);
            if (1..8).contains(&digits) {
                let leading_zero = digits > 1 && word[0] == b'0';
                if leading_zero || matches!(word.get(digits), Some(b'.' | b'e' | b'E')) {
                    return None;
                }
                self.at += digits;
                return Some(value);
            }
        }
        let start = self.at;
        let mut count = 0u64;
        while let Some(digit) = self.peek().filter(u8::is_ascii_digit) {
            // Never wraps where it matters: more than MAX_NUMBER_DIGITS digits give up below.
            count = count.wrapping_mul(10).wrapping_add(u64::from(digit - b'0'));
            self.at += 1;
        }
        let digits = self.at - start;
        let leading_zero = digits > 1 && self.bytes.get(start) == Some(&b'0');
        if digits == 0
            || digits > MAX_NUMBER_DIGITS
            || leading_zero
            || matches!(self.peek(), Some(b'.' | b'e' | b'E'))
        {
            return None;
        }
        Some(count)
    }

    /// At least one digit, skipped; how many.
    fn digits(&mut self) -> Option<usize> {
        let start = self.at;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
        (self.at > start).then_some(self.at - start)
    }

    /// A number as JSON's grammar has it, without an exponent (those give up: simd-json rejects some that
    /// the grammar allows).
    fn skip_number(&mut self) -> Option<()> {
        let _ = self.eat(b'-');
        let first = self.peek()?;
        let digits = self.digits()?;
        if digits > MAX_NUMBER_DIGITS || (digits > 1 && first == b'0') {
            return None;
        }
        if self.eat(b'.').is_some() && self.digits()? > MAX_NUMBER_DIGITS {
            return None;
        }
        (!matches!(self.peek(), Some(b'e' | b'E'))).then_some(())
    }

    /// Any JSON value, checked and passed over.
    fn skip_value(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_SKIP_DEPTH {
            return None;
        }
        match self.peek()? {
            b'{' => self.object(|cursor, _| cursor.skip_value(depth + 1)),
            b'[' => self.array(|cursor| cursor.skip_value(depth + 1)),
            b'"' => match self.short_plain_string() {
                Some(_) => Some(()),
                None => self.string().map(drop),
            },
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.skip_number(),
            _ => None,
        }
    }
}

/// How many ASCII digits `word` starts with (8 when all are), and the number the first of them write when
/// there are fewer than 8: a few word operations instead of a loop per digit.
fn leading_digits(word: [u8; 8]) -> (usize, u64) {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let word = u64::from_le_bytes(word);
    // Per byte: `b - '0'`, with the high bit set below '0'; `b + 0x46` has it set above '9'. A borrow or carry
    // only crosses into the next byte from a byte that is not a digit, so the first non-digit is exact.
    let values = word.wrapping_sub(ONES * u64::from(b'0'));
    let not_digits = (values | word.wrapping_add(ONES * 0x46)) & (ONES * 0x80);
    let digits = (not_digits.trailing_zeros() / 8) as usize;
    if digits == 0 || digits == 8 {
        return (digits, 0);
    }
    // The digits moved to the word's top bytes, as if zero-padded on the left to eight, then combined in
    // pairs, fours and eights (the first digit is the lowest byte).
    let padded = values << (8 * (8 - digits));
    let pairs = padded.wrapping_mul(10).wrapping_add(padded >> 8);
    const LOW_OF_PAIRS: u64 = 0x0000_00ff_0000_00ff;
    let value = ((pairs & LOW_OF_PAIRS)
        .wrapping_mul(100 + (1_000_000 << 32))
        .wrapping_add(((pairs >> 16) & LOW_OF_PAIRS).wrapping_mul(1 + (10_000 << 32))))
        >> 32;
    (digits, value)
}

/// The length of the escape whose letter starts `after` (the bytes after its backslash), backslash
/// included; `None` for an invalid one or a surrogate's `\u` (simd-json pairs those, and they are rare).
fn escape_len(after: &[u8]) -> Option<usize> {
    match *after.first()? {
        byte if is_simple_escape(byte) || byte == b'/' => Some(2),
        b'u' => {
            let hex = after.get(1..5)?;
            let code =
                hex.iter().try_fold(0u32, |code, &digit| Some(code * 16 + (digit as char).to_digit(16)?))?;
            (!(0xd800..=0xdfff).contains(&code)).then_some(6)
        }
        _ => None,
    }
}

/// Undoes the simple escapes of the string at `range` where it stands (the scanner let no others through),
/// and fills the bytes this frees with spaces so that the event stays valid UTF-8. Returns the string's new
/// end.
pub(super) fn unescape_in_place(data: &mut [u8], range: Range<usize>) -> usize {
    let Range { start, end } = range;
    let mut write = start;
    let mut read = start;
    while let Some(offset) = data.get(read..end).and_then(|rest| memchr::memchr(b'\\', rest)) {
        let slash = read + offset;
        data.copy_within(read..slash, write);
        write += slash - read;
        let byte = match data.get(slash + 1) {
            Some(b'b') => 0x08,
            Some(b'f') => 0x0c,
            Some(b'n') => b'\n',
            Some(b'r') => b'\r',
            Some(b't') => b'\t',
            Some(&quote_or_backslash) => quote_or_backslash,
            None => break,
        };
        if let Some(slot) = data.get_mut(write) {
            *slot = byte;
        }
        write += 1;
        read = slash + 2;
    }
    if read < end {
        data.copy_within(read..end, write);
        write += end - read;
    }
    if let Some(freed) = data.get_mut(write..end) {
        freed.fill(b' ');
    }
    write
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
        let mut parser = ChunkParser::new();
        let took = scan(event, &mut Spans::default());
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
        Ok(took)
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
        assert!(scan(event, &mut spans));
        let text = spans.parts[0].as_ref().and_then(|part| part.text.clone()).unwrap();
        assert!(text.escaped && text.canonical());
        assert_eq!(&event[text.range], br#"say \"hi\"\n"#);
        assert_eq!(spans.usage.map(|usage| usage.total), Some(17987));
        assert_eq!(agrees_with_simd_json(event), Ok(true));
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
            assert!(!scan(event.as_bytes(), &mut Spans::default()), "took {event}");
            assert!(agrees_with_simd_json(event.as_bytes()).is_ok(), "{event}");
        }
    }

    #[test]
    fn reads_counts_of_every_length_as_the_digits_say() {
        let mut lengths = (1..=19).map(|digits| 10u64.pow(digits - 1)).collect::<Vec<_>>();
        lengths.extend([0, 9, 10, 99, 17_984, 1_234_567, 9_999_999, 10_000_000, 98_765_432, u64::MAX / 10]);
        let samples =
            (0..2_000u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) % 10u64.pow(1 + (i % 19) as u32));
        for count in lengths.into_iter().chain(samples) {
            for after in ["", ",\"totalTokenCount\":1}", "}", " ,"] {
                let text = format!("{count}{after}");
                let mut cursor = Cursor { bytes: text.as_bytes(), at: 0 };
                assert_eq!(cursor.count(), Some(count), "{text}");
                assert_eq!(cursor.at, count.to_string().len(), "{text}");
            }
        }
        for refused in ["01", "007,", "1.5", "12e3", "-1", "x", "", "12345678901234567890"] {
            let mut cursor = Cursor { bytes: refused.as_bytes(), at: 0 };
            assert_eq!(cursor.count(), None, "{refused}");
        }
    }

    #[test]
    fn unescapes_in_place_and_pads_with_spaces() {
        let mut data = br#""a\"b\\c\nd\te""#.to_vec();
        let close = data.len() - 1;
        let end = unescape_in_place(&mut data, 1..close);
        assert_eq!(&data[1..end], b"a\"b\\c\nd\te");
        assert!(data[end..data.len() - 1].iter().all(|&b| b == b' '));
    }
}
