//! A JSON value recorded as a compact token stream instead of a `serde_json::Value`.
//!
//! Tool schemas are most of a coding agent's request by structure, yet the transform needs to look inside
//! them only when its [`super::ToolCache`] misses: agents resend identical tools on every request. Recording
//! a schema while the body is deserialized appends a few bytes per node to one buffer (no allocation per
//! string or object); the cache hashes and compares those bytes, and [`JsonTokens::to_node`] gives, on a
//! miss, the schema cleaner a tree that borrows its strings from the tokens (the same numbers, the last of
//! duplicate keys, as deserializing the schema directly would have given).

use serde::de::{self, Deserialize, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Number;

use crate::schema::Node;

/// One JSON value as tokens: a tag byte per value; numbers as 8 little-endian bytes; strings (object keys
/// too) as the 4-byte offset and 4-byte length of their text in `text`; arrays and objects as a 4-byte
/// member count and their members. Strings live apart from the tags so that reading them back needs no
/// UTF-8 check: `text` is a `str` already.
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

impl JsonTokens {
    /// Whether the value is a JSON object.
    pub fn is_object(&self) -> bool {
        self.tags.first() == Some(&OBJECT)
    }

    /// The value as a tree borrowing its strings from the tokens: what the schema cleaner reads.
    pub fn to_node(&self) -> Node<'_> {
        Reader { tags: &self.tags, text: &self.text }.node().unwrap_or(Node::Null)
    }
}

impl<'de> Deserialize<'de> for JsonTokens {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut tokens = Buffers::default();
        Recorder(&mut tokens).deserialize(deserializer)?;
        Ok(JsonTokens { tags: tokens.tags.into_boxed_slice(), text: tokens.text.into_boxed_str() })
    }
}

#[derive(Default)]
struct Buffers {
    tags: Vec<u8>,
    text: String,
}

/// Appends the tokens of the value it visits. Recursion is bounded by the body's depth check
/// ([`super::body::MAX_JSON_DEPTH`]), which runs before any deserialization.
struct Recorder<'o>(&'o mut Buffers);

impl Recorder<'_> {
    fn number(self, tag: u8, bits: [u8; 8]) {
        self.0.tags.push(tag);
        self.0.tags.extend_from_slice(&bits);
    }

    /// A container's tag and a count placeholder; returns where the count goes.
    fn open(&mut self, tag: u8) -> usize {
        self.0.tags.push(tag);
        self.0.tags.extend_from_slice(&[0; 4]);
        self.0.tags.len() - 4
    }

    fn close<E: de::Error>(&mut self, at: usize, count: usize) -> Result<(), E> {
        let count = u32::try_from(count).map_err(|_| E::custom("a JSON container with over 2^32 members"))?;
        self.0.tags[at..at + 4].copy_from_slice(&count.to_le_bytes());
        Ok(())
    }
}

/// A string's place in the text buffer, as two 4-byte words.
fn word32<E: de::Error>(n: usize) -> Result<[u8; 4], E> {
    u32::try_from(n).map(u32::to_le_bytes).map_err(|_| E::custom("JSON strings over 4 GiB"))
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
        let at = self.open(ARRAY);
        let mut count = 0;
        while seq.next_element_seed(Recorder(&mut *self.0))?.is_some() {
            count += 1;
        }
        self.close(at, count)
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let at = self.open(OBJECT);
        let mut count = 0;
        while map.next_key_seed(Recorder(&mut *self.0))?.is_some() {
            map.next_value_seed(Recorder(&mut *self.0))?;
            count += 1;
        }
        self.close(at, count)
    }
}

/// Reads tokens back; `None` only on tokens [`Recorder`] cannot have written.
struct Reader<'t> {
    tags: &'t [u8],
    text: &'t str,
}

impl<'t> Reader<'t> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.tags.split_first_chunk::<N>()?;
        self.tags = rest;
        Some(*head)
    }

    fn u32(&mut self) -> Option<usize> {
        usize::try_from(u32::from_le_bytes(self.take()?)).ok()
    }

    fn str(&mut self) -> Option<&'t str> {
        let (offset, len) = (self.u32()?, self.u32()?);
        self.text.get(offset..offset.checked_add(len)?)
    }

    fn node(&mut self) -> Option<Node<'t>> {
        let [tag] = self.take()?;
        Some(match tag {
            NULL => Node::Null,
            TRUE => Node::Bool(true),
            FALSE => Node::Bool(false),
            I64 => Node::Number(i64::from_le_bytes(self.take()?).into()),
            U64 => Node::Number(u64::from_le_bytes(self.take()?).into()),
            F64 => Number::from_f64(f64::from_bits(u64::from_le_bytes(self.take()?)))
                .map_or(Node::Null, Node::Number),
            STR => Node::String(self.str()?),
            ARRAY => {
                let count = self.u32()?;
                // Bounded by what is left, so corrupt counts cannot ask for a huge allocation.
                let mut items = Vec::with_capacity(count.min(self.tags.len()));
                for _ in 0..count {
                    items.push(self.node()?);
                }
                Node::Array(items)
            }
            OBJECT => {
                let count = self.u32()?;
                let mut members = Vec::with_capacity(count.min(self.tags.len()));
                for _ in 0..count {
                    let [STR] = self.take()? else { return None };
                    let key = self.str()?;
                    members.push((key, self.node()?));
                }
                Node::object(members)
            }
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn tokens(json: &str) -> JsonTokens {
        let mut body = json.as_bytes().to_vec();
        simd_json::serde::from_slice(&mut body).unwrap()
    }

    #[test]
    fn trees_come_back_as_serde_json_parses_the_values() {
        for json in [
            r#"{"type":"object","properties":{"a":{"type":["integer","null"],"minimum":-1,"maximum":18446744073709551615}}}"#,
            r#"{"x":[1.5,2e-7,0.1,true,false,null,"\u00e9\"\n",[],{}],"dup":1,"dup":2}"#,
            r#"[{"a":"b"},"c",3]"#,
            "null",
            "-0.0",
        ] {
            let want: Value = serde_json::from_str(json).unwrap();
            assert_eq!(serde_json::to_value(tokens(json).to_node()).unwrap(), want, "{json}");
        }
        assert!(tokens(r#"{"a":1}"#).is_object());
        assert!(!tokens("[1]").is_object() && !tokens(r#""{}""#).is_object());
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
