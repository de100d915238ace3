//! Hand-written JSON output for the stream machines.
//!
//! Every upstream event becomes one or more client frames, so building them through a generic serializer
//! would dominate the rewrite cost. The frames' fixed parts are precomputed; only strings and numbers are
//! written per event, by these functions.

use std::io::Write as _;

/// What [`write_str`] does with each byte: 0 copies it, `u` writes `\u00XX`, [`LINE_SEP_LEAD`] checks for
/// U+2028/U+2029, anything else is the letter after a backslash.
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table[0xe2] = LINE_SEP_LEAD;
    table
};

/// Marks 0xE2, the first byte of U+2028/U+2029, which are valid JSON but end lines in JavaScript.
const LINE_SEP_LEAD: u8 = 1;

/// Appends `s` as a quoted JSON string: quotes, backslashes and control characters escaped, and U+2028 /
/// U+2029 written as `\u2028` / `\u2029` so the frame is also safe to evaluate as JavaScript.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    write_escaped(out, s);
    out.push(b'"');
}

/// Appends the inside of a JSON string for `s`, without quotes: for strings built from several pieces.
pub(crate) fn write_escaped(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Skip a word at a time to the first byte that needs a look; the tail goes byte by byte.
        match bytes.get(i..i + 8) {
            Some(word) => {
                let mask = escape_mask(word);
                if mask == 0 {
                    i += 8;
                    continue;
                }
                i += (mask.trailing_zeros() / 8) as usize;
            }
            None if ESCAPE[usize::from(bytes[i])] == 0 => {
                i += 1;
                continue;
            }
            None => {}
        }
        let byte = bytes[i];
        let action = ESCAPE[usize::from(byte)];
        if action == LINE_SEP_LEAD {
            let separator = match bytes.get(i + 1..i + 3) {
                Some([0x80, 0xa8]) => b"\\u2028",
                Some([0x80, 0xa9]) => b"\\u2029",
                _ => {
                    i += 1;
                    continue;
                }
            };
            out.extend_from_slice(&bytes[copied..i]);
            out.extend_from_slice(separator);
            i += 3;
            copied = i;
            continue;
        }
        out.extend_from_slice(&bytes[copied..i]);
        if action == b'u' {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            let hex = |nibble: u8| HEX[usize::from(nibble)];
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', hex(byte >> 4), hex(byte & 0xf)]);
        } else {
            out.extend_from_slice(&[b'\\', action]);
        }
        i += 1;
        copied = i;
    }
    out.extend_from_slice(&bytes[copied..]);
}

/// Flags the bytes of an 8-byte word that need a look in [`ESCAPE`] (control characters, `"`, `\\`, 0xE2) by
/// their high bit, checking the word at once (SWAR). Bits above the lowest one may be false positives, but the
/// lowest set bit is exact, which is all [`write_escaped`] uses.
#[inline]
fn escape_mask(word: &[u8]) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(word);
    let w = u64::from_le_bytes(bytes);
    let zero_bytes = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGHS;
    below_space
        | zero_bytes(w ^ (ONES * u64::from(b'"')))
        | zero_bytes(w ^ (ONES * u64::from(b'\\')))
        | zero_bytes(w ^ (ONES * 0xe2))
}

/// Writes an object's members; keys are the protocol's own ASCII names, so they need no escaping.
pub(crate) struct Object<'o> {
    out: &'o mut Vec<u8>,
    empty: bool,
}

impl<'o> Object<'o> {
    pub(crate) fn open(out: &'o mut Vec<u8>) -> Self {
        out.push(b'{');
        Object { out, empty: true }
    }

    /// Starts the member `key` and returns the buffer its value is written to.
    pub(crate) fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    pub(crate) fn close(self) {
        self.out.push(b'}');
    }
}

pub(crate) fn write_list<T>(out: &mut Vec<u8>, items: &[T], write: impl Fn(&T, &mut Vec<u8>)) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(item, out);
    }
    out.push(b']');
}

/// Writes an object whose keys come from the client (property names), so they are escaped.
pub(crate) fn write_members<'k, T>(
    out: &mut Vec<u8>,
    members: impl Iterator<Item = (&'k str, T)>,
    write: impl Fn(T, &mut Vec<u8>),
) {
    out.push(b'{');
    for (i, (key, value)) in members.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, key);
        out.push(b':');
        write(value, out);
    }
    out.push(b'}');
}

/// Appends an unsigned integer.
pub(crate) fn write_u64(out: &mut Vec<u8>, n: u64) {
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{n}");
}

/// Appends a signed integer.
pub(crate) fn write_i64(out: &mut Vec<u8>, n: i64) {
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{n}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quoted(s: &str) -> String {
        let mut out = Vec::new();
        write_str(&mut out, s);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escapes_what_json_requires() {
        assert_eq!(quoted("a\"b\\c\n\r\t\u{8}\u{c}\u{1}\u{1f}"), r#""a\"b\\c\n\r\t\b\f\u0001\u001f""#);
    }

    #[test]
    fn escapes_javascript_line_separators_but_not_other_e2_characters() {
        assert_eq!(quoted("a\u{2028}b\u{2029}c€…"), "\"a\\u2028b\\u2029c€…\"");
    }

    #[test]
    fn output_parses_back_to_the_input() {
        let inputs = ["", "héllo 世界 🎉", "\u{7f}\u{0}x", "\u{2028}", "\u{2000}end"];
        for input in inputs {
            let parsed: String = serde_json::from_str(&quoted(input)).unwrap();
            assert_eq!(parsed, input);
        }
    }

    proptest::proptest! {
        #[test]
        fn any_string_round_trips(input in "(?s).{0,64}", pad in 0usize..9) {
            let input = format!("{}{input}", "x".repeat(pad));
            let out = quoted(&input);
            let has_separator = out.contains(['\u{2028}', '\u{2029}']);
            proptest::prop_assert!(!has_separator, "unescaped line separator");
            let parsed: String = serde_json::from_str(&out).unwrap();
            proptest::prop_assert_eq!(parsed, input);
        }
    }
}
