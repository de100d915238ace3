//! Tool JSON-schema cleaning for the upstream's OpenAPI-subset `Schema`.
//!
//! Clients describe tools with full JSON Schema (`$ref`, `anyOf`, `const`, `additionalProperties`, …), but
//! the upstream accepts only a small OpenAPI subset and answers anything else with
//! `400 Invalid JSON payload received. Unknown name "…"`. [`clean_schema`] rewrites a schema into that subset
//! (PROTOCOL.md §10) without losing what the model needs to call the tool well: constraints it cannot express
//! move into the description as hints.
//!
//! Output keys are a whitelist: `type`, `description`, `enum`, `properties`, `required`, `items`. Decisions:
//! - A `$ref` cycle (a recursive type such as a tree node) is cut at the second visit and replaced by
//!   `{type: object, description: "(recursive)"}` rather than rejected: recursive schemas are legitimate and
//!   rejecting them would make the tool unusable. An unresolvable `$ref` gets the same shape with
//!   "(unresolved reference)".
//! - `enum`/`const` values become strings when the schema is (or may be) a string. On `integer`, `number`
//!   and `boolean` schemas they are moved to an "Allowed values" hint instead, so the model still sends the
//!   right JSON type to the client's tool.
//! - Depth is bounded by `max_depth` ([`SchemaError::TooDeep`], a 400 for the client) and `$ref`/`allOf`
//!   expansion by `max_nodes` ([`SchemaError::TooLarge`]), so a hostile schema costs bounded time and stack.

use std::borrow::Cow;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Limits and target-specific tweaks for [`clean_schema`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaOptions {
    /// Deepest schema nesting accepted (each `properties`/`items`/`anyOf`/`$ref` step is one level).
    pub max_depth: usize,
    /// Most schema nodes produced, counting every `$ref` expansion.
    pub max_nodes: usize,
    /// Claude in VALIDATED mode rejects parameter objects without properties: give such a root object a
    /// required `reason` string property.
    pub require_reason_for_empty_object: bool,
}

impl Default for SchemaOptions {
    fn default() -> Self {
        SchemaOptions { max_depth: 32, max_nodes: 10_000, require_reason_for_empty_object: false }
    }
}

/// Why a schema could not be cleaned.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("schema is nested deeper than {max_depth} levels (at `{path}`)")]
    TooDeep { max_depth: usize, path: String },
    #[error("schema expands to more than {max_nodes} nodes (through $ref or allOf)")]
    TooLarge { max_nodes: usize },
}

/// Constraint keywords the subset lacks; they become "(key: value)" hints in the description.
const HINT_KEYWORDS: &[&str] = &[
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minItems",
    "maxItems",
    "uniqueItems",
];

const TYPES: &[&str] = &["string", "number", "integer", "boolean", "array", "object", "null"];

/// A JSON Schema type name in the subset's lowercase spelling; native Gemini clients send the OpenAPI enum
/// names (`OBJECT`, `STRING`, …).
fn type_name(name: &str) -> Option<&'static str> {
    TYPES.iter().copied().find(|t| t.eq_ignore_ascii_case(name))
}

/// Rewrites `schema` into the upstream's schema subset. See the module documentation for the rules.
pub fn clean_schema(schema: &Value, opts: &SchemaOptions) -> Result<Value, SchemaError> {
    let mut cleaner = Cleaner { root: schema, opts, refs: Vec::new(), path: Vec::new(), nodes: 0 };
    let mut out = cleaner.clean(schema, 0)?.schema;
    if opts.require_reason_for_empty_object {
        add_reason_if_empty(&mut out);
    }
    Ok(Value::Object(out))
}

/// A tool name the upstream accepts: `[A-Za-z0-9_-]`, starting with a letter or `_`, at most 64 characters.
///
/// Deterministic, so the same client name always maps to the same upstream name. Over-long names keep a
/// prefix plus 8 hex digits of their SHA-256, so names sharing a long prefix stay distinct. Names that still
/// collide (`a.b` and `a:b`) are the caller's to disambiguate.
pub fn sanitize_tool_name(name: &str) -> Cow<'_, str> {
    const MAX: usize = 64;
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let good_start = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if good_start && name.len() <= MAX && name.chars().all(allowed) {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len().min(MAX) + 1);
    if !good_start {
        out.push('_');
    }
    out.extend(name.chars().map(|c| if allowed(c) { c } else { '_' }));
    if out.len() > MAX {
        let digest = Sha256::digest(name.as_bytes());
        out.truncate(MAX - 9);
        out.push('_');
        for byte in &digest[..4] {
            out.push_str(&format!("{byte:02x}"));
        }
    }
    Cow::Owned(out)
}

/// A cleaned schema and whether it accepted `null` (so its parent drops it from `required`).
struct Cleaned {
    schema: Map<String, Value>,
    nullable: bool,
}

struct Cleaner<'a> {
    root: &'a Value,
    opts: &'a SchemaOptions,
    /// `$ref`s being expanded, to cut cycles.
    refs: Vec<&'a str>,
    /// Where we are, for error messages.
    path: Vec<&'a str>,
    nodes: usize,
}

impl<'a> Cleaner<'a> {
    fn clean(&mut self, node: &'a Value, depth: usize) -> Result<Cleaned, SchemaError> {
        if depth > self.opts.max_depth {
            let path = if self.path.is_empty() { "(root)".to_owned() } else { self.path.join(".") };
            return Err(SchemaError::TooDeep { max_depth: self.opts.max_depth, path });
        }
        self.nodes += 1;
        if self.nodes > self.opts.max_nodes {
            return Err(SchemaError::TooLarge { max_nodes: self.opts.max_nodes });
        }
        match node {
            Value::Object(map) => self.clean_object(map, depth),
            // `true`, `false` and malformed schemas accept anything as far as the subset can say.
            _ => Ok(Cleaned { schema: Map::new(), nullable: false }),
        }
    }

    fn clean_child(&mut self, step: &'a str, node: &'a Value, depth: usize) -> Result<Cleaned, SchemaError> {
        self.path.push(step);
        let result = self.clean(node, depth + 1);
        self.path.pop();
        result
    }

    fn clean_object(&mut self, map: &'a Map<String, Value>, depth: usize) -> Result<Cleaned, SchemaError> {
        if let Some(Value::String(reference)) = map.get("$ref") {
            return self.clean_ref(reference, map.get("description"), depth);
        }
        let mut out = Map::new();
        let mut hints: Vec<String> = Vec::new();
        let mut nullable = false;
        let mut description: Option<&str> = None;
        let mut enum_values: Option<Vec<&'a Value>> = None;
        let mut required: Vec<&'a str> = Vec::new();
        let mut nullable_props: Vec<&'a str> = Vec::new();

        for (key, value) in map {
            match key.as_str() {
                "type" => match value {
                    Value::String(t) => match type_name(t) {
                        Some("null") => nullable = true,
                        Some(t) => {
                            out.insert("type".into(), Value::String(t.to_owned()));
                        }
                        None => {}
                    },
                    Value::Array(types) => {
                        let mut named: Vec<&str> = Vec::new();
                        for t in types.iter().filter_map(Value::as_str).filter_map(type_name) {
                            if t == "null" {
                                nullable = true;
                            } else if !named.contains(&t) {
                                named.push(t);
                            }
                        }
                        if let Some(first) = named.first() {
                            out.insert("type".into(), Value::String((*first).to_owned()));
                        }
                        if named.len() > 1 {
                            hints.push(format!("Accepts: {}", named.join(" | ")));
                        }
                    }
                    _ => {}
                },
                "description" => description = value.as_str(),
                "properties" => {
                    if let Value::Object(props) = value {
                        let mut cleaned = Map::new();
                        for (name, sub) in props {
                            let sub = self.clean_child(name, sub, depth)?;
                            if sub.nullable {
                                nullable_props.push(name);
                            }
                            cleaned.insert(name.clone(), Value::Object(sub.schema));
                        }
                        out.insert("properties".into(), Value::Object(cleaned));
                    }
                }
                "items" => {
                    let item = match value {
                        Value::Array(tuple) => tuple.first(),
                        other => Some(other),
                    };
                    if let Some(item) = item {
                        let item = self.clean_child("items", item, depth)?;
                        out.insert("items".into(), Value::Object(item.schema));
                    }
                }
                "required" => {
                    if let Value::Array(names) = value {
                        required.extend(names.iter().filter_map(Value::as_str));
                    }
                }
                "enum" => {
                    if let Value::Array(values) = value {
                        enum_values = Some(values.iter().collect());
                    }
                }
                "const" => enum_values = Some(vec![value]),
                // OpenAPI's (and native Gemini's) spelling of `["x","null"]`.
                "nullable" => nullable |= value.as_bool() == Some(true),
                key if HINT_KEYWORDS.contains(&key) => hints.push(format!("{key}: {}", display_value(value))),
                // Everything else is outside the subset (`$schema`, `additionalProperties`, `default`,
                // `examples`, `title`, `not`, `if`, `x-*`, …) and is dropped.
                _ => {}
            }
        }

        if let Some(Value::Array(branches)) = map.get("allOf") {
            for branch in branches {
                let branch = self.clean_child("allOf", branch, depth)?;
                merge_into(&mut out, branch.schema);
            }
        }
        if let Some(Value::Array(branches)) = map.get("anyOf").or_else(|| map.get("oneOf")) {
            let choice = self.choose_branch(branches, depth)?;
            nullable |= choice.nullable;
            hints.extend(choice.hint);
            if let Some(chosen) = choice.branch {
                merge_into(&mut out, chosen);
            }
        }

        if let Some(values) = enum_values {
            apply_enum(&mut out, &values, &mut hints, &mut nullable);
        }
        infer_type(&mut out);
        set_required(&mut out, &required, &nullable_props);

        let existing = out.remove("description");
        let base = description.or_else(|| existing.as_ref().and_then(Value::as_str));
        if let Some(text) = describe(base, &hints, nullable) {
            out.insert("description".into(), Value::String(text));
        }
        Ok(Cleaned { schema: out, nullable })
    }

    fn clean_ref(
        &mut self,
        reference: &'a str,
        description: Option<&'a Value>,
        depth: usize,
    ) -> Result<Cleaned, SchemaError> {
        let target = reference.strip_prefix('#').and_then(|pointer| self.root.pointer(pointer));
        let mut cleaned = match target {
            Some(target) if !self.refs.contains(&reference) => {
                self.refs.push(reference);
                let cleaned = self.clean_child(reference, target, depth);
                self.refs.pop();
                cleaned?
            }
            Some(_) => placeholder("(recursive)"),
            None => placeholder("(unresolved reference)"),
        };
        if let Some(Value::String(text)) = description {
            cleaned.schema.insert("description".into(), Value::String(text.clone()));
        }
        Ok(cleaned)
    }

    /// Picks the `anyOf`/`oneOf` branch the model should follow: a union of plain enums becomes one enum;
    /// otherwise the richest branch (object with properties > object > array > scalar) wins, and the
    /// description lists what else would have been accepted.
    fn choose_branch(&mut self, branches: &'a [Value], depth: usize) -> Result<Choice, SchemaError> {
        let mut nullable = false;
        let mut kept: Vec<Map<String, Value>> = Vec::with_capacity(branches.len());
        for branch in branches {
            if branch.get("type").and_then(Value::as_str) == Some("null") {
                nullable = true;
                continue;
            }
            let cleaned = self.clean_child("anyOf", branch, depth)?;
            nullable |= cleaned.nullable;
            kept.push(cleaned.schema);
        }
        if kept.is_empty() {
            return Ok(Choice { branch: None, nullable, hint: None });
        }
        let all_enums = kept.iter().all(|b| {
            b.contains_key("enum") && b.keys().all(|k| matches!(k.as_str(), "enum" | "type" | "description"))
        });
        if all_enums && kept.len() > 1 {
            let mut merged: Vec<Value> = Vec::new();
            for branch in &kept {
                for value in branch.get("enum").and_then(Value::as_array).into_iter().flatten() {
                    if !merged.contains(value) {
                        merged.push(value.clone());
                    }
                }
            }
            let mut out = Map::new();
            out.insert("type".into(), Value::String("string".into()));
            out.insert("enum".into(), Value::Array(merged));
            return Ok(Choice { branch: Some(out), nullable, hint: None });
        }
        let mut labels: Vec<&str> = Vec::new();
        for branch in &kept {
            let label = branch.get("type").and_then(Value::as_str).unwrap_or("any");
            if !labels.contains(&label) {
                labels.push(label);
            }
        }
        let hint = (labels.len() > 1).then(|| format!("Accepts: {}", labels.join(" | ")));
        let best =
            (0..kept.len()).max_by_key(|&i| (branch_score(&kept[i]), std::cmp::Reverse(i))).unwrap_or(0);
        Ok(Choice { branch: Some(kept.swap_remove(best)), nullable, hint })
    }
}

/// The outcome of an `anyOf`/`oneOf`: the branch to merge, whether `null` was allowed, and the hint.
struct Choice {
    branch: Option<Map<String, Value>>,
    nullable: bool,
    hint: Option<String>,
}

fn branch_score(branch: &Map<String, Value>) -> u8 {
    match branch.get("type").and_then(Value::as_str) {
        Some("object")
            if branch.get("properties").and_then(Value::as_object).is_some_and(|p| !p.is_empty()) =>
        {
            4
        }
        Some("object") => 3,
        Some("array") => 2,
        Some(_) => 1,
        None => 0,
    }
}

fn placeholder(description: &str) -> Cleaned {
    let mut schema = Map::new();
    schema.insert("type".into(), Value::String("object".into()));
    schema.insert("description".into(), Value::String(description.into()));
    Cleaned { schema, nullable: false }
}

/// Merges an `allOf` or chosen `anyOf` branch: properties and required lists are united, every other key
/// keeps the value already present.
fn merge_into(out: &mut Map<String, Value>, branch: Map<String, Value>) {
    for (key, value) in branch {
        match (key.as_str(), out.get_mut(&key), value) {
            ("properties", Some(Value::Object(existing)), Value::Object(more)) => {
                for (name, schema) in more {
                    existing.entry(name).or_insert(schema);
                }
            }
            ("required", Some(Value::Array(existing)), Value::Array(more)) => {
                for name in more {
                    if !existing.contains(&name) {
                        existing.push(name);
                    }
                }
            }
            (_, Some(_), _) => {}
            (_, None, value) => {
                out.insert(key, value);
            }
        }
    }
}

/// `enum`/`const` values: strings for string-like schemas, an "Allowed values" hint for typed scalars.
fn apply_enum(out: &mut Map<String, Value>, values: &[&Value], hints: &mut Vec<String>, nullable: &mut bool) {
    let non_null: Vec<&Value> = values.iter().copied().filter(|v| !v.is_null()).collect();
    if non_null.len() < values.len() {
        *nullable = true;
    }
    if non_null.is_empty() {
        return;
    }
    match out.get("type").and_then(Value::as_str) {
        None | Some("string") => {
            let strings =
                non_null.iter().map(|v| Value::String(display_value(v))).fold(Vec::new(), |mut acc, v| {
                    if !acc.contains(&v) {
                        acc.push(v);
                    }
                    acc
                });
            out.insert("type".into(), Value::String("string".into()));
            out.insert("enum".into(), Value::Array(strings));
        }
        Some(_) => {
            let listed: Vec<String> =
                non_null.iter().map(|v| serde_json::to_string(v).unwrap_or_default()).collect();
            hints.push(format!("Allowed values: {}", listed.join(" | ")));
        }
    }
}

fn infer_type(out: &mut Map<String, Value>) {
    if out.contains_key("type") {
        return;
    }
    let inferred = if out.contains_key("properties") {
        "object"
    } else if out.contains_key("items") {
        "array"
    } else {
        return;
    };
    out.insert("type".into(), Value::String(inferred.into()));
}

/// Keeps only required names that exist as (non-nullable) properties, without duplicates.
fn set_required(out: &mut Map<String, Value>, own: &[&str], nullable_props: &[&str]) {
    let merged = match out.remove("required") {
        Some(Value::Array(from_branches)) => from_branches,
        _ => Vec::new(),
    };
    let Some(Value::Object(props)) = out.get("properties") else {
        return;
    };
    let mut keep: Vec<Value> = Vec::new();
    let candidates = own.iter().copied().chain(merged.iter().filter_map(Value::as_str));
    for name in candidates {
        let wanted = Value::String(name.to_owned());
        if props.contains_key(name) && !nullable_props.contains(&name) && !keep.contains(&wanted) {
            keep.push(wanted);
        }
    }
    if !keep.is_empty() {
        out.insert("required".into(), Value::Array(keep));
    }
}

fn describe(base: Option<&str>, hints: &[String], nullable: bool) -> Option<String> {
    let mut text = base.map(str::trim).unwrap_or_default().to_owned();
    let mut append = |piece: &str| {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(piece);
    };
    if !hints.is_empty() {
        append(&format!("({})", hints.join(", ")));
    }
    if nullable {
        append("(nullable)");
    }
    (!text.is_empty()).then_some(text)
}

/// A value as the model should read it in a hint or enum: strings bare, everything else as JSON.
fn display_value(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

fn add_reason_if_empty(out: &mut Map<String, Value>) {
    let is_object = out.get("type").and_then(Value::as_str).is_none_or(|t| t == "object");
    let has_props = out.get("properties").and_then(Value::as_object).is_some_and(|p| !p.is_empty());
    if !is_object || has_props {
        return;
    }
    out.insert("type".into(), Value::String("object".into()));
    out.insert(
        "properties".into(),
        serde_json::json!({"reason": {"type": "string", "description": "Why this tool is being called"}}),
    );
    out.insert("required".into(), serde_json::json!(["reason"]));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn clean(schema: Value) -> Value {
        clean_schema(&schema, &SchemaOptions::default()).unwrap()
    }

    #[test]
    fn unsupported_keywords_are_dropped_and_constraints_become_hints() {
        let got = clean(json!({
            "$schema": "http://json-schema.org/draft-07/schema#", "$id": "x", "title": "T", "$comment": "c",
            "type": "object", "additionalProperties": false, "x-vendor": 1, "default": {}, "examples": [],
            "properties": {
                "email": {"type": "string", "format": "email", "maxLength": 100, "description": "Who"},
                "n": {"type": "integer", "minimum": 1, "title": "N", "not": {"const": 3}},
                "type": {"type": "string", "pattern": "^a"},
            },
            "required": ["email", "missing", "email"],
            "propertyNames": {"pattern": "x"}, "patternProperties": {}, "if": {}, "then": {}, "else": {},
        }));
        assert_eq!(
            got,
            json!({
                "type": "object",
                "properties": {
                    "email": {"type": "string", "description": "Who (format: email, maxLength: 100)"},
                    "n": {"type": "integer", "description": "(minimum: 1)"},
                    "type": {"type": "string", "description": "(pattern: ^a)"},
                },
                "required": ["email"],
            })
        );
    }

    #[test]
    fn const_and_enum_values_follow_the_schema_type() {
        let got = clean(json!({"type": "object", "properties": {
            "mode": {"const": "fast"},
            "level": {"type": "integer", "enum": [1, 2, 3]},
            "flag": {"enum": [true, "x", 2, null]},
            "nested": {"type": "object", "enum": [{"properties": {"not": "a schema"}}]},
        }}));
        assert_eq!(got["properties"]["mode"], json!({"type": "string", "enum": ["fast"]}));
        assert_eq!(
            got["properties"]["level"],
            json!({"type": "integer", "description": "(Allowed values: 1 | 2 | 3)"})
        );
        assert_eq!(
            got["properties"]["flag"],
            json!({"type": "string", "enum": ["true", "x", "2"], "description": "(nullable)"})
        );
        assert_eq!(got["properties"]["nested"]["type"], "object");
        assert!(got["properties"]["nested"].get("properties").is_none(), "enum values are not schemas");
    }

    #[test]
    fn refs_are_inlined_and_cycles_cut() {
        let got = clean(json!({
            "type": "object",
            "properties": {
                "node": {"$ref": "#/$defs/Node", "description": "the root"},
                "legacy": {"$ref": "#/definitions/Leaf"},
                "remote": {"$ref": "https://example.com/schema.json"},
            },
            "$defs": {"Node": {"type": "object", "properties": {
                "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                "value": {"type": "string"}}}},
            "definitions": {"Leaf": {"type": "number"}},
        }));
        let node = &got["properties"]["node"];
        assert_eq!(node["description"], "the root");
        assert_eq!(node["properties"]["value"], json!({"type": "string"}));
        assert_eq!(
            node["properties"]["children"]["items"],
            json!({"type": "object", "description": "(recursive)"})
        );
        assert_eq!(got["properties"]["legacy"], json!({"type": "number"}));
        assert_eq!(got["properties"]["remote"]["description"], "(unresolved reference)");
        assert!(got.get("$defs").is_none() && got.get("definitions").is_none());
        let root_cycle = clean(json!({"type": "object", "properties": {"self": {"$ref": "#"}}}));
        assert_eq!(root_cycle["properties"]["self"]["properties"]["self"]["description"], "(recursive)");
    }

    #[test]
    fn all_of_is_merged() {
        let got = clean(json!({"allOf": [
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            {"properties": {"b": {"type": "number"}}, "required": ["b", "zz"]},
        ]}));
        assert_eq!(
            got,
            json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "number"}},
                   "required": ["a", "b"]})
        );
    }

    #[test]
    fn any_of_picks_the_richest_branch_with_a_hint() {
        let got = clean(json!({"anyOf": [
            {"type": "string"},
            {"type": "object", "properties": {"path": {"type": "string"}}},
            {"type": "null"},
        ], "description": "Target"}));
        assert_eq!(got["type"], "object");
        assert_eq!(got["properties"]["path"], json!({"type": "string"}));
        assert_eq!(got["description"], "Target (Accepts: string | object) (nullable)");
        let consts =
            clean(json!({"oneOf": [{"const": "a"}, {"const": "b", "description": "B"}, {"enum": ["c"]}]}));
        assert_eq!(consts, json!({"type": "string", "enum": ["a", "b", "c"]}));
    }

    #[test]
    fn nullable_types_become_the_type_plus_a_hint_and_leave_required() {
        let got = clean(json!({"type": "object", "properties": {
            "a": {"type": ["string", "null"]},
            "b": {"type": ["integer", "string"]},
            "c": {"type": "string"},
        }, "required": ["a", "b", "c"]}));
        assert_eq!(got["properties"]["a"], json!({"type": "string", "description": "(nullable)"}));
        assert_eq!(
            got["properties"]["b"],
            json!({"type": "integer", "description": "(Accepts: integer | string)"})
        );
        assert_eq!(got["required"], json!(["b", "c"]));
    }

    #[test]
    fn openapi_spellings_from_gemini_clients_are_accepted() {
        let got = clean(json!({"type": "OBJECT", "properties": {
            "a": {"type": "STRING", "nullable": true, "format": "enum", "enum": ["x", "y"]},
            "b": {"type": "ARRAY", "items": {"type": "INTEGER"}},
            "c": {"type": "TYPE_UNSPECIFIED"},
        }, "required": ["a", "b"], "propertyOrdering": ["a", "b"]}));
        assert_eq!(
            got,
            json!({"type": "object", "properties": {
                "a": {"type": "string", "enum": ["x", "y"], "description": "(format: enum) (nullable)"},
                "b": {"type": "array", "items": {"type": "integer"}},
                "c": {},
            }, "required": ["b"]})
        );
    }

    #[test]
    fn enum_and_const_values_are_never_cleaned_as_schemas() {
        let got = clean(json!({"type": "object", "properties": {
            "k": {"enum": [{"$ref": "#/nowhere", "type": "object"}, {"properties": {}}]},
            "c": {"const": {"anyOf": [1]}},
        }}));
        assert_eq!(got["properties"]["k"]["type"], "string");
        assert_eq!(got["properties"]["k"]["enum"][0], r##"{"$ref":"#/nowhere","type":"object"}"##);
        assert_eq!(got["properties"]["c"]["enum"], json!([r#"{"anyOf":[1]}"#]));
    }

    #[test]
    fn mutual_ref_cycles_terminate() {
        let got = clean(json!({"$ref": "#/$defs/A", "$defs": {
            "A": {"type": "object", "properties": {"b": {"$ref": "#/$defs/B"}}},
            "B": {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}, "items": {"type": "array", "items": {"$ref": "#/$defs/B"}}}},
        }}));
        assert_eq!(got["properties"]["b"]["properties"]["a"]["description"], "(recursive)");
        assert_eq!(got["properties"]["b"]["properties"]["items"]["items"]["description"], "(recursive)");
    }

    #[test]
    fn properties_and_items_are_both_recursed() {
        let got = clean(json!({"properties": {"x": {"type": "string", "minLength": 1}},
                               "items": {"type": "string", "maxLength": 2}, "type": "object"}));
        assert_eq!(got["properties"]["x"]["description"], "(minLength: 1)");
        assert_eq!(got["items"]["description"], "(maxLength: 2)");
        let tuple =
            clean(json!({"type": "array", "items": [{"type": "integer", "title": "t"}, {"type": "string"}]}));
        assert_eq!(tuple, json!({"type": "array", "items": {"type": "integer"}}));
        let inferred = clean(json!({"items": {"type": "string"}}));
        assert_eq!(inferred["type"], "array");
    }

    #[test]
    fn depth_and_size_are_bounded() {
        let mut deep = json!({"type": "string"});
        for _ in 0..40 {
            deep = json!({"type": "object", "properties": {"x": deep}});
        }
        let err = clean_schema(&deep, &SchemaOptions::default()).unwrap_err();
        assert!(matches!(err, SchemaError::TooDeep { max_depth: 32, .. }), "{err}");
        assert!(err.to_string().contains("x.x.x"), "{err}");
        // Each level references the next one twice: 2^20 nodes if expanded naively.
        let mut defs = Map::new();
        for i in 0..20 {
            let next = format!("#/$defs/d{}", i + 1);
            defs.insert(
                format!("d{i}"),
                json!({"type": "object", "properties": {"a": {"$ref": next}, "b": {"$ref": next}}}),
            );
        }
        defs.insert("d20".into(), json!({"type": "string"}));
        let bomb = json!({"$ref": "#/$defs/d0", "$defs": defs});
        let opts = SchemaOptions { max_depth: 64, ..SchemaOptions::default() };
        assert_eq!(clean_schema(&bomb, &opts).unwrap_err(), SchemaError::TooLarge { max_nodes: 10_000 });
    }

    #[test]
    fn empty_objects_get_a_reason_for_claude() {
        let opts = SchemaOptions { require_reason_for_empty_object: true, ..SchemaOptions::default() };
        let got = clean_schema(&json!({"type": "object", "properties": {}}), &opts).unwrap();
        assert_eq!(got["required"], json!(["reason"]));
        assert_eq!(got["properties"]["reason"]["type"], "string");
        let full = json!({"type": "object", "properties": {"a": {"type": "string"}}});
        assert_eq!(clean_schema(&full, &opts).unwrap(), full);
    }

    #[test]
    fn tool_names_are_sanitized_deterministically() {
        let long = "a".repeat(70);
        let long_other = format!("{}b", "a".repeat(69));
        let cases: &[(&str, &str)] = &[
            ("get_weather", "get_weather"),
            ("read-file", "read-file"),
            ("mcp.server:tool", "mcp_server_tool"),
            ("9lives", "_9lives"),
            ("-x", "_-x"),
            ("héllo", "h_llo"),
            ("", "_"),
        ];
        for (input, want) in cases {
            assert_eq!(sanitize_tool_name(input), *want, "{input}");
        }
        assert!(matches!(sanitize_tool_name("ok_name"), Cow::Borrowed(_)));
        let a = sanitize_tool_name(&long);
        let b = sanitize_tool_name(&long_other);
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert_eq!(a, sanitize_tool_name(&long));
    }
}
