//! A JSON value recorded as a compact token stream instead of a `serde_json::Value`.
//!
//! Tool schemas are most of a coding agent's request by structure, yet the transform needs them as a `Value`
//! only when its [`super::ToolCache`] misses: agents resend identical tools on every request. Recording a
//! schema while the body is deserialized appends a few bytes per node to one buffer (no allocation per
//! string or object); the cache hashes and compares those bytes, and [`JsonTokens::to_value`] builds, on a
//! miss, exactly the `Value` deserializing the schema directly would have built (the same numbers, the last
//! of duplicate keys).

use serde::de::{self, Deserialize, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// One JSON value as tokens: a tag byte per value; numbers as 8 little-endian bytes; strings (object keys
/// too) as an 8-byte length and their UTF-8; arrays and objects as their members between a start tag and
/// [`END`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct JsonTokens(Box<[u8]>);

const NULL: u8 = 0;
const TRUE: u8 = 1;
const FALSE: u8 = 2;
const I64: u8 = 3;
const U64: u8 = 4;
const F64: u8 = 5;
const STR: u8 = 6;
const ARRAY: u8 = 7;
const OBJECT: u8 = 8;
const END: u8 = 9;

impl JsonTokens {
    /// Whether the value is a JSON object.
    pub fn is_object(&self) -> bool {
        self.0.first() == Some(&OBJECT)
    }

    /// The value as `serde_json` would have deserialized it.
    pub fn to_value(&self) -> Value {
        Reader(&self.0).value().unwrap_or(Value::Null)
    }
}

impl<'de> Deserialize<'de> for JsonTokens {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut out = Vec::new();
        Recorder(&mut out).deserialize(deserializer)?;
        Ok(JsonTokens(out.into_boxed_slice()))
    }
}

/// Appends the tokens of the value it visits. Recursion is bounded by the body's depth check
/// ([`super::body::MAX_JSON_DEPTH`]), which runs before any deserialization.
struct Recorder<'o>(&'o mut Vec<u8>);

impl Recorder<'_> {
    fn number(self, tag: u8, bits: [u8; 8]) {
        self.0.push(tag);
        self.0.extend_from_slice(&bits);
    }
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
        self.0.push(if v { TRUE } else { FALSE });
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
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.0.push(STR);
        self.0.extend_from_slice(&(v.len() as u64).to_le_bytes());
        self.0.extend_from_slice(v.as_bytes());
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.0.push(NULL);
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        self.0.push(NULL);
        Ok(())
    }
    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.0.push(ARRAY);
        while seq.next_element_seed(Recorder(&mut *self.0))?.is_some() {}
        self.0.push(END);
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.0.push(OBJECT);
        while map.next_key_seed(Recorder(&mut *self.0))?.is_some() {
            map.next_value_seed(Recorder(&mut *self.0))?;
        }
        self.0.push(END);
        Ok(())
    }
}

/// Reads tokens back; `None` only on a stream [`Recorder`] cannot have written.
struct Reader<'t>(&'t [u8]);

impl<'t> Reader<'t> {
    fn take(&mut self, n: usize) -> Option<&'t [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }

    fn word(&mut self) -> Option<[u8; 8]> {
        self.take(8)?.try_into().ok()
    }

    fn tag(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    /// The string after a [`STR`] tag.
    fn string(&mut self) -> Option<String> {
        let len = usize::try_from(u64::from_le_bytes(self.word()?)).ok()?;
        std::str::from_utf8(self.take(len)?).ok().map(str::to_owned)
    }

    fn value(&mut self) -> Option<Value> {
        Some(match self.tag()? {
            NULL => Value::Null,
            TRUE => Value::Bool(true),
            FALSE => Value::Bool(false),
            I64 => Value::Number(i64::from_le_bytes(self.word()?).into()),
            U64 => Value::Number(u64::from_le_bytes(self.word()?).into()),
            F64 => Number::from_f64(f64::from_bits(u64::from_le_bytes(self.word()?)))
                .map_or(Value::Null, Value::Number),
            STR => Value::String(self.string()?),
            ARRAY => {
                let mut items = Vec::new();
                while self.0.first() != Some(&END) {
                    items.push(self.value()?);
                }
                self.take(1)?;
                Value::Array(items)
            }
            OBJECT => {
                let mut map = Map::new();
                while self.tag()? == STR {
                    let key = self.string()?;
                    map.insert(key, self.value()?);
                }
                Value::Object(map)
            }
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(json: &str) -> JsonTokens {
        let mut body = json.as_bytes().to_vec();
        simd_json::serde::from_slice(&mut body).unwrap()
    }

    #[test]
    fn values_come_back_as_serde_json_parses_them() {
        for json in [
            r#"{"type":"object","properties":{"a":{"type":["integer","null"],"minimum":-1,"maximum":18446744073709551615}}}"#,
            r#"{"x":[1.5,2e-7,0.1,true,false,null,"\u00e9\"\n",[],{}],"dup":1,"dup":2}"#,
            r#"[{"a":"b"},"c",3]"#,
            "null",
            "-0.0",
        ] {
            let want: Value = serde_json::from_str(json).unwrap();
            assert_eq!(tokens(json).to_value(), want, "{json}");
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
