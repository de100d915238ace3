//! Request-body parsing shared by the protocol transforms.
//!
//! Client bodies reach megabytes, so they are deserialized with simd-json straight into typed structs, with
//! scratch buffers reused per thread. Before that, one cheap pass bounds the nesting depth (serde recurses per
//! level, so a hostile body could otherwise exhaust the stack), and a body of the wrong shape is parsed a
//! second time, slowly, only to name the field at fault (`messages[3].content`) in the 400.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::TransformError;

/// Deepest JSON nesting accepted in a request body. Deserialization recurses per level, so this bounds the
/// stack a hostile body can consume; real requests stay far below it (a tool schema of 32 levels is ~70).
pub(crate) const MAX_JSON_DEPTH: usize = 128;

/// Parses a JSON object body into `T`; `what` names the API in messages ("a chat.completions request").
/// The buffer is used as scratch space by simd-json and left modified: simd-json unescapes every string in
/// place, so a `T` with `&'a str` fields borrows them all from `body` instead of copying them.
pub(crate) fn parse_body<'a, T: Deserialize<'a>>(
    body: &'a mut [u8],
    what: &str,
) -> Result<T, TransformError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(TransformError::Json(format!("The request body is empty: send {what} as JSON.")));
    }
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(TransformError::Json(format!("The request body must be a JSON object ({what}).")));
    }
    let mut de = with_parse_buffers(body.len(), |buffers| {
        simd_json::Deserializer::from_slice_with_buffers(body, buffers)
    })
    .map_err(|e| {
        TransformError::Json(format!("The request body is not valid JSON (error near byte {}).", e.index()))
    })?;
    if !nests_within(de.as_value(), MAX_JSON_DEPTH) {
        return Err(TransformError::Json(format!(
            "The request body nests JSON deeper than {MAX_JSON_DEPTH} levels."
        )));
    }
    match T::deserialize(&mut de) {
        Ok(request) => Ok(request),
        Err(_) => {
            // Parse again, slower, only to name the field at fault.
            de.restart();
            Err(match serde_path_to_error::deserialize::<_, T>(&mut de) {
                Err(e) => describe_shape_error(&e.path().to_string(), e.inner(), what),
                Ok(_) => {
                    TransformError::Json(format!("The request body does not match the shape of {what}."))
                }
            })
        }
    }
}

/// A field a client API allows as either a bare string or a structured value (`content`, `stop`, `tool_choice`,
/// `image_url`). Deserialized by hand: serde's untagged enums buffer the whole value (large for base64
/// images) and lose the error position. The string is an `S`: `String`, or `&'a str` to borrow it from the
/// body.
#[derive(Debug)]
pub(crate) enum StrOr<T, S = String> {
    Str(S),
    Other(T),
}

impl<'de, T: Deserialize<'de>, S: Deserialize<'de>> Deserialize<'de> for StrOr<T, S> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrOrVisitor<T, S>(PhantomData<(T, S)>);
        impl<'de, T: Deserialize<'de>, S: Deserialize<'de>> Visitor<'de> for StrOrVisitor<T, S> {
            type Value = StrOr<T, S>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, an array or an object")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                S::deserialize(de::value::BorrowedStrDeserializer::new(v)).map(StrOr::Str)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                S::deserialize(de::value::StrDeserializer::new(v)).map(StrOr::Str)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(StrOr::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(StrOr::Other)
            }
        }
        deserializer.deserialize_any(StrOrVisitor(PhantomData))
    }
}

/// Whether `value` nests arrays and objects at most `levels` deep: checked on the parsed document before any
/// recursive deserializer (serde's `IgnoredAny`, `serde_json::Value`) could overflow the stack on it. Walks
/// simd-json's tape, where each container knows its size, rather than replaying the body through serde.
fn nests_within(value: simd_json::tape::Value<'_, '_>, levels: usize) -> bool {
    // Only containers are looked into: most members are strings and numbers, and a call for each of them
    // was most of the walk's cost.
    let within = |member: simd_json::tape::Value<'_, '_>| {
        !(member.is_array() || member.is_object()) || nests_within(member, levels - 1)
    };
    if let Some(array) = value.as_array() {
        levels > 0 && array.iter().all(within)
    } else if let Some(object) = value.as_object() {
        levels > 0 && object.values().all(within)
    } else {
        true
    }
}

thread_local! {
    /// simd-json's scratch buffers, kept per thread between requests: allocating them fresh costs page
    /// faults on every large body (a third of the parse time at 100 KiB). Bodies above
    /// [`REUSE_BUFFERS_UP_TO`] get one-off buffers so a rare huge request does not pin memory in every worker.
    static PARSE_BUFFERS: std::cell::RefCell<Option<simd_json::Buffers>> = const { std::cell::RefCell::new(None) };
}

const REUSE_BUFFERS_UP_TO: usize = 1 << 20;

fn with_parse_buffers<R>(len: usize, parse: impl FnOnce(&mut simd_json::Buffers) -> R) -> R {
    if len > REUSE_BUFFERS_UP_TO {
        return parse(&mut simd_json::Buffers::new(len));
    }
    let mut buffers =
        PARSE_BUFFERS.with(|cell| cell.borrow_mut().take()).unwrap_or_else(|| simd_json::Buffers::new(len));
    let result = parse(&mut buffers);
    PARSE_BUFFERS.with(|cell| *cell.borrow_mut() = Some(buffers));
    result
}

/// Turns a deserialization failure into a message a developer can act on.
fn describe_shape_error(path: &str, error: &simd_json::Error, what: &str) -> TransformError {
    use simd_json::ErrorType as E;
    let expected = |what: &str| format!("invalid type: another type, expected {what}");
    let detail = match error.error() {
        E::Serde(text) => text.clone(),
        E::ExpectedArray => expected("an array"),
        E::ExpectedMap => expected("an object"),
        E::ExpectedString => expected("a string"),
        E::ExpectedBoolean => expected("a boolean"),
        E::ExpectedInteger | E::ExpectedSigned => expected("an integer"),
        E::ExpectedUnsigned => expected("a non-negative integer"),
        E::ExpectedFloat | E::ExpectedNumber => expected("a number"),
        E::ExpectedNull => expected("null"),
        E::Overflow => "invalid value: a number that does not fit, expected a smaller number".to_owned(),
        other => format!("{other:?}"),
    };
    if path == "." {
        return TransformError::Json(format!("The request body must be a JSON object ({what})."));
    }
    let message = if let Some(rest) = detail.strip_prefix("invalid type: ") {
        let (got, expected) = rest.split_once(", expected ").unwrap_or((rest, "another type"));
        let got = if got == "another type" { String::new() } else { format!(", got {got}") };
        format!("Invalid type for `{path}`: expected {}{got}.", friendly_type(expected))
    } else if let Some(rest) = detail.strip_prefix("invalid value: ") {
        let (got, expected) = rest.split_once(", expected ").unwrap_or((rest, "another value"));
        format!("Invalid value for `{path}`: expected {}, got {got}.", friendly_type(expected))
    } else if let Some(rest) = detail.strip_prefix("unknown variant ") {
        format!("Invalid value for `{path}`: {rest}.")
    } else if detail.starts_with("missing field") {
        format!("`{path}` is missing a required field: {}.", detail.trim_start_matches("missing field "))
    } else {
        format!("Invalid `{path}`: {detail}.")
    };
    TransformError::Invalid { param: Some(path.to_owned()), message }
}

fn friendly_type(serde_name: &str) -> &str {
    match serde_name {
        "f64" | "f32" => "a number",
        "u32" | "u64" | "u16" | "u8" | "usize" => "a non-negative integer",
        "i64" | "i32" => "an integer",
        "a sequence" => "an array",
        "a map" => "an object",
        name if name.starts_with("struct ") => "an object",
        name => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Anything {
        #[allow(dead_code)]
        x: serde_json::Value,
    }

    /// `{"x": [[…]]}` with `levels` containers in all, the root object included.
    fn nested(levels: usize) -> Vec<u8> {
        let arrays = levels - 1;
        format!("{{\"x\":{}{}}}", "[".repeat(arrays), "]".repeat(arrays)).into_bytes()
    }

    #[test]
    fn nesting_is_bounded_at_exactly_max_json_depth() {
        assert!(parse_body::<Anything>(&mut nested(MAX_JSON_DEPTH), "a test body").is_ok());
        let e = parse_body::<Anything>(&mut nested(MAX_JSON_DEPTH + 1), "a test body").unwrap_err();
        assert!(e.to_string().contains("deeper than 128 levels"), "{e}");
        let mut wide = format!("{{\"x\":[{}]}}", vec!["{\"a\":[1,{\"b\":[]}]}"; 5000].join(",")).into_bytes();
        assert!(parse_body::<Anything>(&mut wide, "a test body").is_ok(), "wide but shallow is fine");
    }
}
