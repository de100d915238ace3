//! A JSON value recorded as a compact token stream, and [`Json`], a view that reads it in place.
//!
//! Tool schemas are most of a coding agent's request by structure, yet the transform needs to look inside
//! them only when its tool cache misses: agents resend identical tools on every request. Recording a schema
//! while the body is deserialized appends a few bytes per node to two buffers (no allocation per string or
//! object); the cache hashes and compares those bytes, and on a miss the schema cleaner reads them through
//! [`Json`] without building a tree: every string is borrowed, and every container knows its size in bytes,
//! so skipping one costs nothing. Values are what deserializing the JSON would have given (the same numbers,
//! the last of duplicate keys).

use serde::de::{self, Deserialize, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Number;

/// One JSON value as tokens: a tag byte per value; numbers as 8 little-endian bytes; strings (object keys
/// too) as the 4-byte offset and 4-byte length of their text in `text`; arrays and objects as a 4-byte member
/// count and the 4-byte length of their members' tokens, then the members (an object's as key, value). Strings
/// live apart from the tags, so reading them back needs no UTF-8 check: `text` is a `str` already.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct JsonTokens {
    tags: Box<[u8]>,
    text: Box<str>,
}

const NULL: u8 = 0;
const TRUE: u8 = 1;
const FALSE: u8 = 2;
const I64: u8 = 3;
const U64: u8 = 4;
const F64: u8 = 5;
const STR: u8 = 6;
const ARRAY: u8 = 7;
const OBJECT: u8 = 8;

/// Bytes after a container's tag: member count, then the length of the members' tokens.
const CONTAINER_HEADER: usize = 8;

impl JsonTokens {
    /// The tokens of an already parsed value (Anthropic and Gemini tools arrive as `serde_json::Value`s).
    pub fn from_value(value: &serde_json::Value) -> Self {
        // A `Value` always deserializes: it is valid JSON by construction.
        JsonTokens::deserialize(value).unwrap_or(JsonTokens { tags: Box::new([NULL]), text: Box::from("") })
    }

    /// Whether the value is a JSON object.
    pub fn is_object(&self) -> bool {
        self.tags.first() == Some(&OBJECT)
    }

    /// A view of the value that reads the tokens in place.
    pub fn view(&self) -> Json<'_> {
        Json { tags: &self.tags, text: &self.text }
    }
}

impl<'de> Deserialize<'de> for JsonTokens {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Recorded into this thread's scratch buffers, then copied out at their exact size: growing fresh
        // buffers by doubling copied each schema's tokens a dozen times, then once more to shrink them.
        let mut tokens = SCRATCH.take();
        tokens.tags.clear();
        tokens.text.clear();
        let recorded = Recorder(&mut tokens).deserialize(deserializer);
        let result = recorded.map(|()| JsonTokens {
            tags: Box::from(tokens.tags.as_slice()),
            text: Box::from(tokens.text.as_str()),
        });
        if tokens.tags.capacity() + tokens.text.capacity() <= KEEP_SCRATCH_UP_TO {
            SCRATCH.set(tokens);
        }
        result
    }
}

thread_local! {
    /// Scratch buffers for recording, kept per thread between values (a request has one per tool).
    static SCRATCH: std::cell::Cell<Buffers> =
        const { std::cell::Cell::new(Buffers { tags: Vec::new(), text: String::new() }) };
}

/// Scratch buffers that grew past this many bytes for one huge value are dropped rather than kept: a rare
/// huge schema should not pin memory in every worker thread.
const KEEP_SCRATCH_UP_TO: usize = 256 << 10;

#[derive(Default)]
struct Buffers {
    tags: Vec<u8>,
    text: String,
}

/// Appends the tokens of the value it visits. Recursion is bounded by the body's depth check
/// ([`crate::inner::body::MAX_JSON_DEPTH`]), which runs before any deserialization.
struct Recorder<'o>(&'o mut Buffers);

impl Recorder<'_> {
    fn number(self, tag: u8, bits: [u8; 8]) {
        self.0.tags.push(tag);
        self.0.tags.extend_from_slice(&bits);
    }

    /// A container's tag and a header to fill in by [`close`](Self::close); returns where the header is.
    fn open(&mut self, tag: u8) -> usize {
        self.0.tags.push(tag);
        self.0.tags.extend_from_slice(&[0; CONTAINER_HEADER]);
        self.0.tags.len() - CONTAINER_HEADER
    }

    fn close<E: de::Error>(&mut self, header: usize, count: usize) -> Result<(), E> {
        let span = self.0.tags.len() - header - CONTAINER_HEADER;
        self.0.tags[header..header + 4].copy_from_slice(&word32(count)?);
        self.0.tags[header + 4..header + 8].copy_from_slice(&word32(span)?);
        Ok(())
    }
}

fn word32<E: de::Error>(n: usize) -> Result<[u8; 4], E> {
    u32::try_from(n).map(u32::to_le_bytes).map_err(|_| E::custom("a JSON value over 4 GiB"))
}

impl<'de> DeserializeSeed<'de> for Recorder<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Recorder<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.0.tags.push(if v { TRUE } else { FALSE });
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.number(I64, v.to_le_bytes());
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.number(U64, v.to_le_bytes());
        Ok(())
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        self.number(F64, v.to_bits().to_le_bytes());
        Ok(())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        let (offset, len) = (word32(self.0.text.len())?, word32(v.len())?);
        self.0.tags.push(STR);
        self.0.tags.extend_from_slice(&offset);
        self.0.tags.extend_from_slice(&len);
        self.0.text.push_str(v);
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.0.tags.push(NULL);
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        self.0.tags.push(NULL);
        Ok(())
    }
    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        let header = self.open(ARRAY);
        let mut count = 0;
        while seq.next_element_seed(Recorder(&mut *self.0))?.is_some() {
            count += 1;
        }
        self.close(header, count)
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let header = self.open(OBJECT);
        let mut count = 0;
        while map.next_key_seed(Recorder(&mut *self.0))?.is_some() {
            map.next_value_seed(Recorder(&mut *self.0))?;
            count += 1;
        }
        self.close(header, count)
    }
}

/// One value inside [`JsonTokens`], read in place. Every accessor is total: tokens that [`Recorder`] cannot
/// have written read as `null` or as an empty container.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Json<'t> {
    /// Starts at this value's tag; may run on past its end.
    tags: &'t [u8],
    text: &'t str,
}

/// The JSON kinds, as the schema cleaner tells them apart.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Kind<'t> {
    Null,
    Bool(bool),
    Number(Number),
    String(&'t str),
    Array,
    Object,
}

impl<'t> Json<'t> {
    fn tag(&self) -> u8 {
        self.tags.first().copied().unwrap_or(NULL)
    }

    fn word32(&self, at: usize) -> Option<usize> {
        let bytes = self.tags.get(at..at + 4)?;
        usize::try_from(u32::from_le_bytes(bytes.try_into().ok()?)).ok()
    }

    fn word64(&self) -> Option<[u8; 8]> {
        self.tags.get(1..9)?.try_into().ok()
    }

    /// How many token bytes this value takes.
    fn size(&self) -> usize {
        match self.tag() {
            I64 | U64 | F64 | STR => 9,
            ARRAY | OBJECT => 1 + CONTAINER_HEADER + self.word32(5).unwrap_or(0),
            _ => 1,
        }
    }

    /// How many token bytes this value takes (the text of its strings aside): a size hint for writing it.
    pub fn token_len(&self) -> usize {
        self.size()
    }

    /// The value starting `offset` bytes in, and the rest after it.
    fn at(&self, offset: usize) -> Option<Json<'t>> {
        Some(Json { tags: self.tags.get(offset..)?, text: self.text })
    }

    pub fn kind(&self) -> Kind<'t> {
        match self.tag() {
            TRUE => Kind::Bool(true),
            FALSE => Kind::Bool(false),
            I64 => self.word64().map_or(Kind::Null, |b| Kind::Number(i64::from_le_bytes(b).into())),
            U64 => self.word64().map_or(Kind::Null, |b| Kind::Number(u64::from_le_bytes(b).into())),
            F64 => self
                .word64()
                .and_then(|b| Number::from_f64(f64::from_bits(u64::from_le_bytes(b))))
                .map_or(Kind::Null, Kind::Number),
            STR => self.as_str().map_or(Kind::Null, Kind::String),
            ARRAY => Kind::Array,
            OBJECT => Kind::Object,
            _ => Kind::Null,
        }
    }

    pub fn as_str(&self) -> Option<&'t str> {
        if self.tag() != STR {
            return None;
        }
        let (offset, len) = (self.word32(1)?, self.word32(5)?);
        self.text.get(offset..offset.checked_add(len)?)
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.tag() {
            TRUE => Some(true),
            FALSE => Some(false),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        self.tag() == NULL
    }

    pub fn is_array(&self) -> bool {
        self.tag() == ARRAY
    }

    pub fn is_object(&self) -> bool {
        self.tag() == OBJECT
    }

    /// How many items an array (or members an object) has, read from its header; 0 for other values.
    pub fn len(&self) -> usize {
        match self.tag() {
            ARRAY | OBJECT => self.word32(1).unwrap_or(0),
            _ => 0,
        }
    }

    /// An array's items; nothing for other values.
    pub fn items(&self) -> Members<'t> {
        self.members_of(ARRAY)
    }

    /// An object's members in source order, repeated keys included (see [`get`](Self::get)); nothing for
    /// other values.
    pub fn members(&self) -> Members<'t> {
        self.members_of(OBJECT)
    }

    fn members_of(&self, tag: u8) -> Members<'t> {
        let count = if self.tag() == tag { self.word32(1).unwrap_or(0) } else { 0 };
        let span = if count > 0 { self.word32(5).unwrap_or(0) } else { 0 };
        let rest = self.at(1 + CONTAINER_HEADER).map_or(&[][..], |j| j.tags);
        let rest = Json { tags: rest.get(..span).unwrap_or_default(), text: self.text };
        Members { rest, left: count, keyed: tag == OBJECT }
    }

    /// The value of `key` in an object: the last one, as `serde_json` keeps it.
    pub fn get(&self, key: &str) -> Option<Json<'t>> {
        self.members().filter(|(k, _)| *k == key).last().map(|(_, v)| v)
    }

    /// RFC 6901 JSON Pointer lookup (`""` is the value itself), as `serde_json::Value::pointer` does it.
    ///
    /// Adds to `scanned` the members of every container it looks into (each step scans its container), so a
    /// caller can bound the work of many lookups into large objects.
    pub fn pointer_counted(&self, pointer: &str, scanned: &mut usize) -> Option<Json<'t>> {
        if pointer.is_empty() {
            return Some(*self);
        }
        pointer.strip_prefix('/')?.split('/').try_fold(*self, |value, token| {
            let token: std::borrow::Cow<'_, str> = if token.contains('~') {
                token.replace("~1", "/").replace("~0", "~").into()
            } else {
                token.into()
            };
            *scanned = scanned.saturating_add(value.len());
            match value.tag() {
                OBJECT => value.get(&token),
                ARRAY => parse_index(&token).and_then(|i| value.items().nth(i).map(|(_, v)| v)),
                _ => None,
            }
        })
    }

    /// The value as compact JSON text.
    pub fn to_json(self) -> String {
        serde_json::to_string(&self).unwrap_or_default()
    }
}

/// An array index in a pointer: digits only, no leading zero (RFC 6901).
fn parse_index(token: &str) -> Option<usize> {
    if token.starts_with('+') || (token.starts_with('0') && token.len() != 1) {
        return None;
    }
    token.parse().ok()
}

/// The members of an array (keyed by `""`) or an object, in order.
pub(crate) struct Members<'t> {
    rest: Json<'t>,
    left: usize,
    /// Object members come as a key token, then the value.
    keyed: bool,
}

impl<'t> Iterator for Members<'t> {
    type Item = (&'t str, Json<'t>);

    // Every walk over a schema's members goes through here, a few steps each.
    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 || self.rest.tags.is_empty() {
            return None;
        }
        self.left -= 1;
        let mut key = "";
        if self.keyed {
            key = self.rest.as_str().unwrap_or_default();
            self.rest = self.rest.at(9)?;
        }
        let value = self.rest;
        self.rest = self.rest.at(value.size()).unwrap_or(Json { tags: &[], text: self.rest.text });
        Some((key, value))
    }
}

impl Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.kind() {
            Kind::Null => serializer.serialize_unit(),
            Kind::Bool(b) => serializer.serialize_bool(b),
            Kind::Number(n) => n.serialize(serializer),
            Kind::String(s) => serializer.serialize_str(s),
            Kind::Array => {
                let mut seq = serializer.serialize_seq(None)?;
                for (_, item) in self.items() {
                    seq.serialize_element(&item)?;
                }
                seq.end()
            }
            Kind::Object => {
                let mut map = serializer.serialize_map(None)?;
                for (k, v) in self.members() {
                    map.serialize_entry(k, &v)?;
                }
                map.end()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn tokens(json: &str) -> JsonTokens {
        let mut body = json.as_bytes().to_vec();
        simd_json::serde::from_slice(&mut body).unwrap()
    }

    #[test]
    fn values_read_back_as_serde_json_parses_them() {
        for json in [
            r#"{"type":"object","properties":{"a":{"type":["integer","null"],"minimum":-1,"maximum":18446744073709551615}}}"#,
            r#"{"x":[1.5,2e-7,0.1,true,false,null,"\u00e9\"\n",[],{}],"dup":1,"dup":2}"#,
            r#"[{"a":"b"},"c",3,[[[]],{"k":[1,{"z":null}]}],"after"]"#,
            "null",
            "-0.0",
            r#""text""#,
        ] {
            let want: Value = serde_json::from_str(json).unwrap();
            assert_eq!(serde_json::to_value(tokens(json).view()).unwrap(), want, "{json}");
            assert_eq!(serde_json::to_value(JsonTokens::from_value(&want).view()).unwrap(), want, "{json}");
        }
        assert!(tokens(r#"{"a":1}"#).is_object());
        assert!(!tokens("[1]").is_object() && !tokens(r#""{}""#).is_object());
    }

    #[test]
    fn members_skip_nested_values_and_get_keeps_the_last_key() {
        let recorded = tokens(r#"{"a":{"deep":[1,[2,[3]],{"x":"y"}]},"b":"two","a":[true],"c":null}"#);
        let view = recorded.view();
        let keys: Vec<&str> = view.members().map(|(k, _)| k).collect();
        assert_eq!(keys, ["a", "b", "a", "c"]);
        assert_eq!(view.get("b").and_then(|v| v.as_str()), Some("two"));
        assert!(view.get("a").is_some_and(|v| v.is_array()), "the last `a` wins");
        assert!(view.get("c").is_some_and(|v| v.is_null()));
        assert!(view.get("zz").is_none());
        assert_eq!(view.get("a").map(|a| a.items().count()), Some(1));
        assert_eq!(view.members().count(), 4);
        assert_eq!(recorded.view().items().count(), 0, "an object has no items");
    }

    #[test]
    fn pointers_resolve_like_serde_json() {
        let value = json!({"$defs": {"a/b": {"x": [10, 20]}, "m~n": 1}, "list": [{"k": "v"}, 7]});
        let recorded = JsonTokens::from_value(&value);
        for pointer in [
            "",
            "/$defs",
            "/$defs/a~1b/x/1",
            "/$defs/m~0n",
            "/list/0/k",
            "/list/1",
            "/list/01",
            "/list/+0",
            "/list/2",
            "/nope",
            "x",
        ] {
            let got =
                recorded.view().pointer_counted(pointer, &mut 0).map(|v| serde_json::to_value(v).unwrap());
            assert_eq!(got.as_ref(), value.pointer(pointer), "{pointer}");
        }
    }

    #[test]
    fn a_recording_that_failed_halfway_leaves_nothing_for_the_next() {
        // serde_json streams, so this fails after recording `{"a":[1,` into the thread's scratch buffers.
        assert!(serde_json::from_str::<JsonTokens>(r#"{"a":[1,x]}"#).is_err());
        let after: JsonTokens = serde_json::from_str(r#"{"b":"text"}"#).unwrap();
        assert_eq!(after, tokens(r#"{"b":"text"}"#));
        assert_eq!(serde_json::to_value(after.view()).unwrap(), serde_json::json!({"b": "text"}));
        // Scratch that one huge value grew is not kept, and what follows still records from empty buffers.
        let huge = format!("[\"{}\"]", "x".repeat(KEEP_SCRATCH_UP_TO));
        assert_eq!(tokens(&huge).view().items().count(), 1);
        assert_eq!(tokens("[true]"), JsonTokens::from_value(&serde_json::json!([true])));
    }

    #[test]
    fn equal_values_give_equal_tokens_and_different_ones_do_not() {
        assert_eq!(tokens(r#"{"a": [1, "x"]}"#), tokens(r#" { "a" : [ 1 , "x" ] } "#));
        for (a, b) in [
            (r#"{"a":1}"#, r#"{"a":1.0}"#),
            (r#"{"a":"1"}"#, r#"{"a":1}"#),
            (r#"{"ab":""}"#, r#"{"a":"b"}"#),
            (r#"[[],[]]"#, r#"[[[]]]"#),
            (r#"{"a":{}}"#, r#"{"a":[]}"#),
        ] {
            assert_ne!(tokens(a), tokens(b), "{a} vs {b}");
        }
    }
}
