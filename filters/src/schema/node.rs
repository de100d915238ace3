//! The schema as the cleaner reads it: a JSON tree that borrows its strings from where the schema came from.
//!
//! OpenAI and Anthropic tools arrive as the request's recorded tokens, Gemini tools as a `serde_json::Value`;
//! both become a [`Node`] without copying a single string, and the cleaner's output borrows from the same
//! place. Building a `Value` instead (a `String` per key and a B-tree per object, then dropping it all)
//! was most of the cost of a request with a new set of tools.

use std::collections::HashMap;

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::{Number, Value};

/// One JSON value; strings are borrowed for `'s`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Node<'s> {
    Null,
    Bool(bool),
    Number(Number),
    String(&'s str),
    Array(Vec<Node<'s>>),
    /// Members in source order, each key once: a repeated key keeps its last value, as `serde_json` does.
    Object(Vec<(&'s str, Node<'s>)>),
}

/// Above this many members, duplicate keys are found with a hash map rather than by scanning.
const SCAN_LIMIT: usize = 16;

impl<'s> Node<'s> {
    /// A view of a parsed `serde_json` value (its objects iterate in key order).
    pub fn from_value(value: &'s Value) -> Self {
        match value {
            Value::Null => Node::Null,
            Value::Bool(b) => Node::Bool(*b),
            Value::Number(n) => Node::Number(n.clone()),
            Value::String(s) => Node::String(s),
            Value::Array(items) => Node::Array(items.iter().map(Node::from_value).collect()),
            Value::Object(map) => {
                Node::Object(map.iter().map(|(k, v)| (k.as_str(), Node::from_value(v))).collect())
            }
        }
    }

    /// An object from members in source order, dropping all but the last of a repeated key.
    pub fn object(mut members: Vec<(&'s str, Node<'s>)>) -> Self {
        if members.len() <= SCAN_LIMIT {
            let mut i = 0;
            while i < members.len() {
                if members[i + 1..].iter().any(|(k, _)| *k == members[i].0) {
                    members.remove(i);
                } else {
                    i += 1;
                }
            }
        } else {
            let last: HashMap<&str, usize> = members.iter().enumerate().map(|(i, (k, _))| (*k, i)).collect();
            if last.len() < members.len() {
                let mut i = 0;
                members.retain(|(k, _)| {
                    let keep = last.get(k) == Some(&i);
                    i += 1;
                    keep
                });
            }
        }
        Node::Object(members)
    }

    /// The value of `key` in an object.
    pub fn get(&self, key: &str) -> Option<&Node<'s>> {
        match self {
            Node::Object(members) => members.iter().find(|(k, _)| *k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&'s str> {
        match self {
            Node::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Node::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// RFC 6901 JSON Pointer lookup (`""` is the node itself), as `serde_json::Value::pointer` does it.
    pub fn pointer(&self, pointer: &str) -> Option<&Node<'s>> {
        if pointer.is_empty() {
            return Some(self);
        }
        let rest = pointer.strip_prefix('/')?;
        rest.split('/').try_fold(self, |node, token| {
            let token: std::borrow::Cow<'_, str> = if token.contains('~') {
                token.replace("~1", "/").replace("~0", "~").into()
            } else {
                token.into()
            };
            match node {
                Node::Object(_) => node.get(&token),
                Node::Array(items) => parse_index(&token).and_then(|i| items.get(i)),
                _ => None,
            }
        })
    }

    /// The value as compact JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// An array index in a pointer: digits only, no leading zero (RFC 6901).
fn parse_index(token: &str) -> Option<usize> {
    if token.starts_with('+') || (token.starts_with('0') && token.len() != 1) {
        return None;
    }
    token.parse().ok()
}

impl Serialize for Node<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Null => serializer.serialize_unit(),
            Node::Bool(b) => serializer.serialize_bool(*b),
            Node::Number(n) => n.serialize(serializer),
            Node::String(s) => serializer.serialize_str(s),
            Node::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Node::Object(members) => {
                let mut map = serializer.serialize_map(Some(members.len()))?;
                for (k, v) in members {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pointers_resolve_like_serde_json() {
        let value = json!({"$defs": {"a/b": {"x": [10, 20]}, "m~n": 1}, "list": [{"k": "v"}]});
        let node = Node::from_value(&value);
        for pointer in [
            "",
            "/$defs",
            "/$defs/a~1b/x/1",
            "/$defs/m~0n",
            "/list/0/k",
            "/list/01",
            "/list/+0",
            "/nope",
            "x",
        ] {
            let want = value.pointer(pointer).map(Node::from_value);
            assert_eq!(node.pointer(pointer).cloned(), want, "{pointer}");
        }
    }

    #[test]
    fn repeated_keys_keep_the_last_value_in_small_and_large_objects() {
        let small = Node::object(vec![("a", Node::Bool(true)), ("b", Node::Null), ("a", Node::Bool(false))]);
        assert_eq!(small, Node::Object(vec![("b", Node::Null), ("a", Node::Bool(false))]));
        let keys: Vec<String> = (0..40).map(|i| format!("k{}", i % 30)).collect();
        let large = Node::object(
            keys.iter().enumerate().map(|(i, k)| (k.as_str(), Node::Number(i.into()))).collect(),
        );
        let Node::Object(members) = &large else { panic!("an object") };
        assert_eq!(members.len(), 30);
        assert_eq!(large.get("k3"), Some(&Node::Number(33.into())));
        assert_eq!(large.get("k29"), Some(&Node::Number(29.into())));
    }

    #[test]
    fn json_text_is_serde_json_s() {
        let value = json!({"b": [1, 2.5, -3, null, true], "a": "q\"\n"});
        assert_eq!(Node::from_value(&value).to_json(), value.to_string());
    }
}
