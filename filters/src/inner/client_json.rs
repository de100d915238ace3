//! JSON from the client carried into the upstream request as it came: tool-call arguments and tool results
//! validated once and copied verbatim ([`JsonObject`]), structured values written with the stream machines'
//! escaper ([`write_value`]), and the few small values `serde_json` still writes ([`write_small`]).

use std::borrow::Cow;

use serde::de::{self, Deserialize};
use serde::Serialize;
use serde_json::Value;

use crate::stream::json::{write_list, write_members, write_str};

/// A JSON object from the client, written out as it came: replayed tool-call arguments and tool results that
/// are JSON. Text is validated once ([`JsonObject::parse`]) and then copied verbatim, not rebuilt as a
/// `serde_json::Value` only to be serialized again.
pub(crate) enum JsonObject<'a> {
    /// The text of a JSON object, validated, without surrounding whitespace.
    Text(Cow<'a, str>),
    /// An object the client sent as structured JSON.
    Value(&'a Value),
    /// `{}`.
    Empty,
}

impl<'a> JsonObject<'a> {
    /// The object `text` encodes. The check is `serde_json`'s full parse (string escapes, number ranges,
    /// nesting limit, trailing characters), so what a `Value` would have accepted is accepted here, with the
    /// same error message.
    pub fn parse(text: Cow<'a, str>) -> Result<Self, JsonObjectError> {
        let mut de = serde_json::Deserializer::from_str(&text);
        AnyJson::deserialize(&mut de).and_then(|AnyJson| de.end()).map_err(JsonObjectError::Syntax)?;
        if !text.trim_start_matches(JSON_WHITESPACE).starts_with('{') {
            return Err(JsonObjectError::NotAnObject);
        }
        Ok(JsonObject::Text(match text {
            Cow::Borrowed(text) => Cow::Borrowed(text.trim_matches(JSON_WHITESPACE)),
            Cow::Owned(text) => Cow::Owned(text.trim_matches(JSON_WHITESPACE).to_owned()),
        }))
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        match self {
            JsonObject::Text(text) => out.extend_from_slice(text.as_bytes()),
            JsonObject::Value(value) => write_value(out, value),
            JsonObject::Empty => out.extend_from_slice(b"{}"),
        }
    }
}

const JSON_WHITESPACE: [char; 4] = [' ', '\t', '\n', '\r'];

/// Why a text is not a JSON object.
#[derive(Debug)]
pub(crate) enum JsonObjectError {
    Syntax(serde_json::Error),
    NotAnObject,
}

/// Any JSON value, visited in full and kept nowhere: validation without building a `Value`.
struct AnyJson;

impl<'de> Deserialize<'de> for AnyJson {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(AnyJson)
    }
}

impl<'de> de::Visitor<'de> for AnyJson {
    type Value = AnyJson;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<AnyJson, E> {
        Ok(AnyJson)
    }
    fn visit_i64<E>(self, _: i64) -> Result<AnyJson, E> {
        Ok(AnyJson)
    }
    fn visit_u64<E>(self, _: u64) -> Result<AnyJson, E> {
        Ok(AnyJson)
    }
    fn visit_f64<E>(self, _: f64) -> Result<AnyJson, E> {
        Ok(AnyJson)
    }
    fn visit_str<E>(self, _: &str) -> Result<AnyJson, E> {
        Ok(AnyJson)
    }
    fn visit_unit<E>(self) -> Result<AnyJson, E> {
        Ok(AnyJson)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<AnyJson, A::Error> {
        while seq.next_element::<AnyJson>()?.is_some() {}
        Ok(AnyJson)
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<AnyJson, A::Error> {
        while map.next_key::<AnyJson>()?.is_some() {
            map.next_value::<AnyJson>()?;
        }
        Ok(AnyJson)
    }
}

/// Writes a JSON value as `serde_json` would (object keys in the map's order), with the faster escaper.
pub(crate) fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_small(out, n),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => write_list(out, items, |v, out| write_value(out, v)),
        Value::Object(map) => {
            write_members(out, map.iter().map(|(k, v)| (k.as_str(), v)), |v, out| write_value(out, v))
        }
    }
}

/// Numbers and the small config objects go through `serde_json`: they are a few bytes per request, and it
/// keeps their formatting (ryu floats, `null` for non-finite numbers) exact.
pub(crate) fn write_small(out: &mut Vec<u8>, value: &impl Serialize) {
    // Writing into a Vec cannot fail, and these types have only string keys.
    let _ = serde_json::to_writer(out, value);
}
