//! A position in one upstream event's JSON, and the reads the scanner ([`super::scan`]) makes at it.
//!
//! Each read checks the grammar of what it passes over as JSON defines it, and gives up (`None`) on anything
//! the fast path leaves to simd-json. Strings are scanned 16 bytes per step with the output escaper's SSE2
//! stop scan. A cursor can record where the values it read are ([`Hole`]), which the scanner's
//! [`Skeleton`](super::scan::Skeleton) keeps to read the next event of the same layout without walking it.

use std::ops::Range;

use super::json::{block_stops, first_stop, stops, CHUNK};

/// How deep a skipped value may nest before the scanner gives up (simd-json then decides).
const MAX_SKIP_DEPTH: usize = 32;

/// Digits a skipped number's integer or fraction may have before the scanner gives up: every number up to
/// this many parses the same in simd-json.
const MAX_NUMBER_DIGITS: usize = 19;

/// Values a recording keeps at most. An event of the usual shape has about a dozen; the record of one with
/// more (a long skipped array, say) must not grow with it, and its layout is not kept.
pub(super) const MAX_HOLES: usize = 64;

/// A kept string: its bytes between the quotes, and what undoing its escapes takes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Span {
    pub range: Range<usize>,
    /// It has escapes.
    pub escaped: bool,
    /// Every escape, if any, is one of `\" \\ \b \f \n \r \t`, which undo to one byte.
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

/// A position in the event. Every method that reads a value starts at its first byte and stops right after
/// it; `None` means "give up".
pub(super) struct Cursor<'b> {
    pub bytes: &'b [u8],
    pub at: usize,
    /// Where the values read so far are, when the walk is recording them for a [`super::scan::Skeleton`].
    holes: Option<Vec<Hole>>,
}

/// What a value the walk read is for: the field it fills, or nothing (a skipped string or number).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Target {
    Text(usize),
    Signature(usize),
    FinishReason,
    ModelVersion,
    ResponseId,
    /// A usage count, by its place in [`super::scan::COUNT_KEYS`].
    Count(usize),
    Skipped,
}

/// A value of the event at `start..end`, read for `target`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Hole {
    pub start: usize,
    pub end: usize,
    pub target: Target,
}

/// What a backslash may be followed by in a string the scanner gives back: escapes that undo to one byte.
fn is_simple_escape(byte: u8) -> bool {
    matches!(byte, b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't')
}

impl<'b> Cursor<'b> {
    pub fn new(bytes: &'b [u8]) -> Self {
        Cursor { bytes, at: 0, holes: None }
    }

    /// A cursor that records the values read through [`read`](Self::read) into `holes` (cleared first).
    pub fn recording(bytes: &'b [u8], mut holes: Vec<Hole>) -> Self {
        holes.clear();
        Cursor { bytes, at: 0, holes: Some(holes) }
    }

    /// The recorded values, and the vector back for the next event.
    pub fn into_holes(self) -> Vec<Hole> {
        self.holes.unwrap_or_default()
    }

    /// Reads a value with `read`, recording where it is and what it is for (up to [`MAX_HOLES`] values).
    #[inline]
    pub fn read<T>(&mut self, target: Target, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<T> {
        let start = self.at;
        let value = read(self)?;
        if let Some(holes) = self.holes.as_mut().filter(|holes| holes.len() < MAX_HOLES) {
            holes.push(Hole { start, end: self.at, target });
        }
        Some(value)
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    pub fn skip_whitespace(&mut self) {
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
    pub fn object(&mut self, mut member: impl FnMut(&mut Self, &'b [u8]) -> Option<()>) -> Option<()> {
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
    pub fn array(&mut self, mut element: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
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
    pub fn key(&mut self) -> Option<&'b [u8]> {
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
            let stop = first_stop(flags);
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
    pub fn plain_string(&mut self) -> Option<Range<usize>> {
        let start = self.at + 1;
        if let Some(string) = self.short_plain_string() {
            return Some(start..start + string.len());
        }
        let span = self.string()?;
        (!span.escaped).then_some(span.range)
    }

    /// A part's text, which may hold simple escapes (a machine copies it as it stands, or the caller undoes
    /// them in place); `\u` and `\/` give up.
    pub fn text(&mut self) -> Option<Span> {
        let span = self.string()?;
        span.simple.then_some(span)
    }

    /// A string, 16 bytes per step ([`stops`] flags quotes, backslashes, control characters and 0xE2): its
    /// contents' range and what its escapes are. Escapes are checked as JSON defines them; a control
    /// character, an unfinished string or a `\u` escape of a surrogate gives up.
    pub fn string(&mut self) -> Option<Span> {
        self.eat(b'"')?;
        let bytes = self.bytes;
        let start = self.at;
        let mut span = Span { range: start..start, escaped: false, simple: true, separator: false };
        // A flagged byte before this one was escaped by a backslash, not a stop of its own.
        let mut escape_end = start;
        let mut block = start;
        loop {
            let rest = bytes.get(block..).filter(|rest| !rest.is_empty())?;
            let mut flags = block_stops(rest);
            while flags != 0 {
                let stop = block + first_stop(flags);
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

    pub fn bool(&mut self) -> Option<bool> {
        if self.literal(b"true").is_some() {
            return Some(true);
        }
        self.literal(b"false").map(|()| false)
    }

    pub fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at + word.len();
        (self.bytes.get(self.at..end)? == word).then(|| self.at = end)
    }

    /// A token count: a non-negative integer as JSON writes it. A sign, a fraction or an exponent gives up
    /// (simd-json reads those as other number kinds), as do more digits than always fit.
    pub fn count(&mut self) -> Option<u64> {
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
        // Any other: a number by JSON's grammar (skip_number), of digits only.
        let start = self.at;
        self.skip_number()?;
        let number = self.bytes.get(start..self.at)?;
        if !number.iter().all(u8::is_ascii_digit) {
            return None;
        }
        // At most MAX_NUMBER_DIGITS digits: never wraps.
        Some(
            number
                .iter()
                .fold(0u64, |count, &digit| count.wrapping_mul(10).wrapping_add(u64::from(digit - b'0'))),
        )
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
    pub fn skip_number(&mut self) -> Option<()> {
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
    pub fn skip_value(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_SKIP_DEPTH {
            return None;
        }
        match self.peek()? {
            b'{' => self.object(|cursor, _| cursor.skip_value(depth + 1)),
            b'[' => self.array(|cursor| cursor.skip_value(depth + 1)),
            b'"' => self.read(Target::Skipped, |cursor| match cursor.short_plain_string() {
                Some(_) => Some(()),
                None => cursor.string().map(drop),
            }),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.read(Target::Skipped, Cursor::skip_number),
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
    use super::*;

    #[test]
    fn reads_counts_of_every_length_as_the_digits_say() {
        let mut lengths = (1..=19).map(|digits| 10u64.pow(digits - 1)).collect::<Vec<_>>();
        lengths.extend([0, 9, 10, 99, 17_984, 1_234_567, 9_999_999, 10_000_000, 98_765_432, u64::MAX / 10]);
        let samples =
            (0..2_000u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15) % 10u64.pow(1 + (i % 19) as u32));
        for count in lengths.into_iter().chain(samples) {
            for after in ["", ",\"totalTokenCount\":1}", "}", " ,"] {
                let text = format!("{count}{after}");
                let mut cursor = Cursor::new(text.as_bytes());
                assert_eq!(cursor.count(), Some(count), "{text}");
                assert_eq!(cursor.at, count.to_string().len(), "{text}");
            }
        }
        for refused in ["01", "007,", "1.5", "12e3", "-1", "x", "", "12345678901234567890"] {
            let mut cursor = Cursor::new(refused.as_bytes());
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
