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
///
/// Scans 16 bytes at a time ([`stops`]) and handles every byte that needs a look in the chunk from one scan;
/// the clean runs between them are copied whole. Conversation text is most of a request's bytes and has a
/// quote, newline or dash every few dozen bytes, so the cost per stop matters as much as the scan.
pub(crate) fn write_escaped(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    // Bytes before `written` are in `out`; `chunk` is where the next scan starts.
    let mut written = 0;
    let mut chunk = 0;
    while let Some(rest) = bytes.get(chunk..).filter(|rest| !rest.is_empty()) {
        let mut flags = block_stops(rest);
        while flags != 0 {
            let stop = chunk + first_stop(flags);
            flags &= flags - 1;
            let Some(&byte) = bytes.get(stop) else { break };
            let action = ESCAPE[usize::from(byte)];
            // The last digit of `\u2028` or `\u2029` for a line separator.
            let separator = match action {
                LINE_SEP_LEAD => match bytes.get(stop + 1..stop + 3) {
                    Some([0x80, 0xa8]) => b'8',
                    Some([0x80, 0xa9]) => b'9',
                    // Another character starting with 0xE2 (a dash, an ellipsis): copied with its run.
                    _ => continue,
                },
                0 => continue,
                _ => 0,
            };
            copy_run(out, bytes, written, stop);
            // Each escape is appended as a fixed-size array: a slice of either length would cost a call.
            if separator != 0 {
                out.extend_from_slice(&[b'\\', b'u', b'2', b'0', b'2', separator]);
                // The separator's two continuation bytes go with it; they are never flagged.
                written = stop + 3;
                continue;
            }
            if action == b'u' {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let hex = |nibble: u8| HEX[usize::from(nibble)];
                out.extend_from_slice(&[b'\\', b'u', b'0', b'0', hex(byte >> 4), hex(byte & 0xf)]);
            } else {
                out.extend_from_slice(&[b'\\', action]);
            }
            written = stop + 1;
        }
        chunk += CHUNK;
    }
    copy_run(out, bytes, written, bytes.len());
}

/// Appends `bytes[from..to]`. A short run is copied as a fixed 16 bytes, a few moves rather than a call to
/// `memcpy`, and the bytes past `to` are dropped again.
#[inline]
fn copy_run(out: &mut Vec<u8>, bytes: &[u8], from: usize, to: usize) {
    let len = to.saturating_sub(from);
    if len <= CHUNK {
        if let Some(window) = bytes.get(from..).and_then(<[u8]>::first_chunk::<CHUNK>) {
            out.extend_from_slice(window);
            out.truncate(out.len() - (CHUNK - len));
            return;
        }
    }
    out.extend_from_slice(bytes.get(from..to).unwrap_or_default());
}

/// The [`stops`] of the block `rest` starts: its first [`CHUNK`] bytes, or all of a shorter `rest` padded with
/// spaces, which are never a stop.
#[inline(always)]
pub(super) fn block_stops(rest: &[u8]) -> StopMask {
    match rest.first_chunk::<CHUNK>() {
        Some(next) => stops(next),
        None => {
            let mut padded = [b' '; CHUNK];
            padded[..rest.len()].copy_from_slice(rest);
            stops(&padded)
        }
    }
}

/// Where in its block the lowest stop of `flags` is ([`CHUNK`] or more when there is none).
#[inline(always)]
pub(super) fn first_stop(flags: StopMask) -> usize {
    (flags.trailing_zeros() / MASK_BITS_PER_BYTE) as usize
}

/// Bytes [`write_escaped`] scans in one step, one vector comparison. (Two per step, 32 bytes, was slower:
/// most strings of a request are shorter than that and then all go through the padded copy.)
pub(super) const CHUNK: usize = 16;

/// Which bytes of a chunk need a look in [`ESCAPE`]: the lowest set bit is the first stop, and clearing it
/// (`mask &= mask - 1`) moves to the next. Each byte owns [`MASK_BITS_PER_BYTE`] bits.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
pub(super) type StopMask = u32;
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
const MASK_BITS_PER_BYTE: u32 = 1;

/// The bytes of `chunk` that need a look in [`ESCAPE`] (control characters, `"`, `\\`, 0xE2), one bit per
/// byte: four byte comparisons and one `movemask`, all in registers. The portable lane-by-lane form
/// ([`stops_by_lanes`]) compiles to vector comparisons too, but LLVM rebuilds its 16 flag bytes into a
/// number through the stack, which made this scan a sixth of the cold request transform's time.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
pub(super) fn stops(chunk: &[u8; CHUNK]) -> StopMask {
    // SAFETY: the only requirement of `stops_sse2` is the `sse2` target feature, which this build enables
    // (the `cfg` above; every x86-64 target does).
    unsafe { stops_sse2(chunk) }
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
fn stops_sse2(chunk: &[u8; CHUNK]) -> StopMask {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8, _mm_set_epi64x,
    };
    // One unaligned 16-byte load, written without a pointer.
    let bytes = u128::from_le_bytes(*chunk);
    let v = _mm_set_epi64x((bytes >> 64) as u64 as i64, bytes as u64 as i64);
    let is = |byte: u8| _mm_cmpeq_epi8(v, _mm_set1_epi8(byte as i8));
    // Unsigned `b <= 0x1f` is `min(b, 0x1f) == b`.
    let control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
    let hits = _mm_or_si128(_mm_or_si128(is(b'"'), is(b'\\')), _mm_or_si128(is(0xe2), control));
    // 16 meaningful bits: the cast loses nothing.
    _mm_movemask_epi8(hits) as StopMask
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
pub(super) type StopMask = u128;
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
const MASK_BITS_PER_BYTE: u32 = 8;

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
pub(super) fn stops(chunk: &[u8; CHUNK]) -> StopMask {
    stops_by_lanes(chunk)
}

/// The portable form of [`stops`]: one flag byte per input byte, 0x80 or 0, read as a little-endian number,
/// so the first stop is at `trailing_zeros / 8`.
///
/// Written lane by lane in wrapping byte arithmetic so that the compiler turns it into a dozen vector
/// instructions (NEON on ARM) without intrinsics. (Comparisons that yield `bool`s vectorize badly
/// here: the compiler rebuilds the number from them bit by bit.)
#[cfg_attr(all(target_arch = "x86_64", target_feature = "sse2"), allow(dead_code))]
#[inline(always)]
fn stops_by_lanes(chunk: &[u8; CHUNK]) -> u128 {
    // High bit set when `t` is zero; `b - 0x20` and not `b`, when `b` is below 0x20.
    let zero = |t: u8| t.wrapping_sub(1) & !t;
    let mut flags = [0u8; CHUNK];
    for (flag, &b) in flags.iter_mut().zip(chunk) {
        let below_space = b.wrapping_sub(0x20) & !b;
        *flag = (below_space | zero(b ^ b'"') | zero(b ^ b'\\') | zero(b ^ 0xe2)) & 0x80;
    }
    u128::from_le_bytes(flags)
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
    // Inlined so the key's length is a constant where it is written: copying it is then a few moves, not a
    // call to `memcpy`, and a request writes thousands of keys.
    #[inline]
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

    /// What [`write_escaped`] must write, one byte at a time through [`ESCAPE`]: the chunked scan, the
    /// padded tail and the short-run copies are checked against it byte for byte.
    fn escaped_byte_by_byte(s: &str) -> Vec<u8> {
        let (bytes, mut out, mut i) = (s.as_bytes(), Vec::new(), 0);
        while let Some(&byte) = bytes.get(i) {
            i += 1;
            match ESCAPE[usize::from(byte)] {
                0 => out.push(byte),
                LINE_SEP_LEAD => match bytes.get(i..i + 2) {
                    Some([0x80, last @ (0xa8 | 0xa9)]) => {
                        out.extend_from_slice(if *last == 0xa8 { b"\\u2028" } else { b"\\u2029" });
                        i += 2;
                    }
                    _ => out.push(byte),
                },
                b'u' => out.extend_from_slice(format!("\\u{byte:04x}").as_bytes()),
                letter => out.extend_from_slice(&[b'\\', letter]),
            }
        }
        out
    }

    #[test]
    fn every_stop_at_every_offset_is_escaped_as_byte_by_byte() {
        let stops =
            ["\"", "\\", "\n", "\u{0}", "\u{1f}", "\u{2028}", "\u{2029}", "—", "…", "\u{7f}", "é", "🎉"];
        for len in 0..40 {
            for at in 0..len {
                for stop in stops {
                    for tail in ["", "\"", "\u{2028}x"] {
                        let input = format!("{}{stop}{}{tail}", "a".repeat(at), "b".repeat(len - at));
                        let mut out = b"prefix".to_vec();
                        write_escaped(&mut out, &input);
                        assert_eq!(out[6..], escaped_byte_by_byte(&input), "{input:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn both_stop_scans_flag_the_same_bytes() {
        for byte in 0..=255u8 {
            for at in 0..CHUNK {
                let mut chunk = [b'a'; CHUNK];
                chunk[at] = byte;
                let lanes = stops_by_lanes(&chunk);
                let by_lanes: Vec<usize> = (0..CHUNK).filter(|i| lanes >> (i * 8 + 7) & 1 == 1).collect();
                let mask = stops(&chunk);
                let bits = MASK_BITS_PER_BYTE as usize;
                let by_mask: Vec<usize> =
                    (0..CHUNK).filter(|i| mask >> ((i + 1) * bits - 1) & 1 == 1).collect();
                assert_eq!(by_lanes, by_mask, "byte {byte:#04x} at {at}");
                let wanted = ESCAPE[usize::from(byte)] != 0;
                assert_eq!(by_mask, if wanted { vec![at] } else { vec![] }, "byte {byte:#04x}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn any_text_escapes_as_byte_by_byte(input in "(?s)[a\"\\\\\n\u{1}\u{2028}\u{2029}—é]{0,80}") {
            let mut out = Vec::new();
            write_escaped(&mut out, &input);
            proptest::prop_assert_eq!(out, escaped_byte_by_byte(&input));
        }

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
