//! The cleaner's output: a schema in the upstream's subset, and nothing else can be expressed.
//!
//! The subset has six keys (`type`, `description`, `enum`, `properties`, `required`, `items`), so the output
//! is a struct of those six rather than a map, borrowing names and descriptions from the input. It is written
//! straight into the request body ([`Schema::write_json`]) or, for the Gemini passthrough, turned into a
//! `serde_json::Value` ([`Schema::to_value`]).

use std::borrow::Cow;
use std::collections::HashSet;

use serde_json::{Map, Value};

use super::SCAN_UP_TO;
use crate::stream::json::{write_list, write_members, write_str, Object};

/// One cleaned schema node.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Schema<'s> {
    pub ty: Option<&'static str>,
    pub description: Option<Cow<'s, str>>,
    pub enum_values: Option<Vec<Cow<'s, str>>>,
    /// In the client's order; names are unique.
    pub properties: Option<Vec<(&'s str, Schema<'s>)>>,
    /// Empty means absent.
    pub required: Vec<&'s str>,
    pub items: Option<Box<Schema<'s>>>,
}

impl<'s> Schema<'s> {
    /// `{type: object, description}`: what a `$ref` that cannot be expanded stands for.
    pub fn placeholder(description: &'static str) -> Self {
        Schema { ty: Some("object"), description: Some(Cow::Borrowed(description)), ..Schema::default() }
    }

    pub fn has_properties(&self) -> bool {
        self.properties.as_ref().is_some_and(|p| !p.is_empty())
    }

    /// Merges an `allOf` or chosen `anyOf` branch: properties and required lists are united, every other key
    /// keeps the value already present.
    pub fn merge(&mut self, branch: Schema<'s>) {
        self.ty = self.ty.or(branch.ty);
        if self.description.is_none() {
            self.description = branch.description;
        }
        if self.enum_values.is_none() {
            self.enum_values = branch.enum_values;
        }
        match (&mut self.properties, branch.properties) {
            (Some(existing), Some(more)) => {
                // A property already present wins; past a few names a set keeps this linear.
                if existing.len() + more.len() <= SCAN_UP_TO {
                    for (name, schema) in more {
                        if !existing.iter().any(|(n, _)| *n == name) {
                            existing.push((name, schema));
                        }
                    }
                } else {
                    let mut present: HashSet<&'s str> = existing.iter().map(|(n, _)| *n).collect();
                    existing.extend(more.into_iter().filter(|(name, _)| present.insert(*name)));
                }
            }
            (None, more) => self.properties = more,
            (Some(_), None) => {}
        }
        if self.required.len() + branch.required.len() <= SCAN_UP_TO {
            for name in branch.required {
                if !self.required.contains(&name) {
                    self.required.push(name);
                }
            }
        } else {
            let mut present: HashSet<&'s str> = self.required.iter().copied().collect();
            self.required.extend(branch.required.into_iter().filter(|name| present.insert(*name)));
        }
        if self.items.is_none() {
            self.items = branch.items;
        }
    }

    /// The schema as a JSON object.
    pub fn to_value(&self) -> Value {
        let mut out = Map::new();
        if let Some(ty) = self.ty {
            out.insert("type".into(), Value::String(ty.into()));
        }
        if let Some(description) = &self.description {
            out.insert("description".into(), Value::String(description.to_string()));
        }
        if let Some(values) = &self.enum_values {
            out.insert("enum".into(), values.iter().map(|v| Value::String(v.to_string())).collect());
        }
        if let Some(properties) = &self.properties {
            let properties = properties.iter().map(|(name, s)| (name.to_string(), s.to_value())).collect();
            out.insert("properties".into(), Value::Object(properties));
        }
        if !self.required.is_empty() {
            out.insert(
                "required".into(),
                self.required.iter().map(|n| Value::String(n.to_string())).collect(),
            );
        }
        if let Some(items) = &self.items {
            out.insert("items".into(), items.to_value());
        }
        Value::Object(out)
    }

    /// Appends the schema as a JSON object.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let mut o = Object::open(out);
        if let Some(ty) = self.ty {
            // Type names are the subset's own lowercase words: nothing to escape.
            let out = o.key("type");
            out.push(b'"');
            out.extend_from_slice(ty.as_bytes());
            out.push(b'"');
        }
        if let Some(description) = &self.description {
            write_str(o.key("description"), description);
        }
        if let Some(values) = &self.enum_values {
            write_list(o.key("enum"), values, |v, out| write_str(out, v));
        }
        if let Some(properties) = &self.properties {
            let members = properties.iter().map(|(name, schema)| (*name, schema));
            write_members(o.key("properties"), members, Schema::write_json);
        }
        if !self.required.is_empty() {
            write_list(o.key("required"), &self.required, |name, out| write_str(out, name));
        }
        if let Some(items) = &self.items {
            items.write_json(o.key("items"));
        }
        o.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_and_value_say_the_same() {
        let leaf = Schema {
            ty: Some("string"),
            description: Some("a \"quoted\"\nline".into()),
            ..Schema::default()
        };
        let schema = Schema {
            ty: Some("object"),
            description: None,
            enum_values: None,
            properties: Some(vec![
                ("z", leaf.clone()),
                ("a", Schema { ty: Some("array"), items: Some(Box::new(leaf)), ..Schema::default() }),
            ]),
            required: vec!["z"],
            items: None,
        };
        let mut bytes = Vec::new();
        schema.write_json(&mut bytes);
        let parsed: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(parsed, schema.to_value());
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.find("\"z\"").unwrap() < text.find("\"a\"").unwrap(), "client order kept: {text}");
        let choices = Schema {
            ty: Some("string"),
            enum_values: Some(vec!["x".into(), "y".into()]),
            ..Schema::default()
        };
        let mut bytes = Vec::new();
        choices.write_json(&mut bytes);
        assert_eq!(bytes, br#"{"type":"string","enum":["x","y"]}"#);
    }
}
