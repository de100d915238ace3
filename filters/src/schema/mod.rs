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
//! - Depth is bounded by `max_depth` ([`SchemaError::TooDeep`], a 400 for the client), `$ref`/`allOf`
//!   expansion by `max_nodes` ([`SchemaError::TooLarge`]) and enums by `max_enum_values`
//!   ([`SchemaError::TooManyEnumValues`]), so a hostile schema costs bounded time and stack; every
//!   de-duplication is linear (short lists are scanned, longer ones hashed).
//! - A keyword written twice counts once, the last one, as a JSON parser keeps it; hints come in a fixed
//!   order (the union of types first, then the constraints alphabetically), whatever order the client used.
//!
//! The cleaner reads the request's recorded tokens in place ([`crate::json_tokens::Json`]) and builds only
//! its output, [`Schema`], which borrows the client's strings: a new set of tools is cleaned without a
//! `serde_json::Value` being built or dropped.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::json_tokens::{Json, JsonTokens};

mod cleaned;
mod enums;
mod hints;
mod options;
mod refs;

pub(crate) use cleaned::Schema;
use enums::{apply_enum, EnumValues};
use hints::{describe, push_display, Hints};
pub use options::{SchemaError, SchemaOptions, MAX_ENUM_VALUES};
use refs::RefMemo;

/// Constraint keywords the subset lacks; they become "(key: value)" hints in the description, in this
/// (alphabetical) order whatever order the client wrote them in.
const HINT_KEYWORDS: [&str; 12] = [
    "exclusiveMaximum",
    "exclusiveMinimum",
    "format",
    "maxItems",
    "maxLength",
    "maximum",
    "minItems",
    "minLength",
    "minimum",
    "multipleOf",
    "pattern",
    "uniqueItems",
];

/// Members that `$ref` lookups may scan in one schema: each lookup scans the objects on its path, so a
/// thousand distinct references into a definitions object of a million members would otherwise cost a
/// billion steps. Real schemas scan a few thousand.
const MAX_REF_SCAN: usize = 1_000_000;

const TYPES: &[&str] = &["string", "number", "integer", "boolean", "array", "object", "null"];

/// A JSON Schema type name in the subset's lowercase spelling; native Gemini clients send the OpenAPI enum
/// names (`OBJECT`, `STRING`, …).
fn type_name(name: &str) -> Option<&'static str> {
    // The lowercase spelling, which nearly every client sends, is an exact match.
    let exact = TYPES.iter().copied().find(|t| *t == name);
    exact.or_else(|| TYPES.iter().copied().find(|t| t.eq_ignore_ascii_case(name)))
}

/// Rewrites `schema` into the upstream's schema subset. See the module documentation for the rules.
pub fn clean_schema(schema: &Value, opts: &SchemaOptions) -> Result<Value, SchemaError> {
    let tokens = JsonTokens::from_value(schema);
    clean_json(tokens.view(), opts).map(|cleaned| cleaned.to_value())
}

/// [`clean_schema`] on recorded tokens; the result borrows its strings from them.
pub(crate) fn clean_json<'t>(schema: Json<'t>, opts: &SchemaOptions) -> Result<Schema<'t>, SchemaError> {
    let mut cleaner = Cleaner {
        root: schema,
        opts,
        refs: Vec::new(),
        resolved: RefMemo::default(),
        scanned: 0,
        // Deep enough for most schemas without growing (the bound is `max_depth`).
        path: Vec::with_capacity(8),
        nodes: 0,
    };
    let mut out = cleaner.clean(schema, 0)?.schema;
    if opts.require_reason_for_empty_object {
        add_reason_if_empty(&mut out);
    }
    Ok(out)
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
    // Every tool name of every request is checked here, a few times: bytes rather than decoded characters
    // (a non-ASCII character fails on its first byte just as it fails decoded).
    let allowed_byte = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-';
    if good_start && name.len() <= MAX && name.as_bytes().iter().all(allowed_byte) {
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
struct Cleaned<'t> {
    schema: Schema<'t>,
    nullable: bool,
}

/// The keywords of one schema object that the cleaner acts on, each the last of its name (as a JSON parser
/// would keep it), read in one pass over the members. Everything else is outside the subset (`$schema`,
/// `additionalProperties`, `default`, `examples`, `title`, `not`, `if`, `x-*`, …) and is dropped.
#[derive(Default)]
struct Keywords<'t> {
    reference: Option<Json<'t>>,
    all_of: Option<Json<'t>>,
    any_of: Option<Json<'t>>,
    one_of: Option<Json<'t>>,
    constant: Option<Json<'t>>,
    description: Option<Json<'t>>,
    enumeration: Option<Json<'t>>,
    items: Option<Json<'t>>,
    nullable: Option<Json<'t>>,
    properties: Option<Json<'t>>,
    required: Option<Json<'t>>,
    ty: Option<Json<'t>>,
    hints: [Option<Json<'t>>; HINT_KEYWORDS.len()],
    /// Whether any of `hints` is set: most nodes have none, and looking at all twelve slots of every node
    /// was a tenth of the cleaner's own work.
    hinted: bool,
}

/// The slot in [`HINT_KEYWORDS`] of a hint keyword. A `match` like the other keywords' (the compiler
/// compares lengths first): a search of `HINT_KEYWORDS` for every other key (`$schema`,
/// `additionalProperties`, `default`, …) cost a dozen comparisons each.
fn hint_index(key: &str) -> Option<usize> {
    Some(match key {
        "exclusiveMaximum" => 0,
        "exclusiveMinimum" => 1,
        "format" => 2,
        "maxItems" => 3,
        "maxLength" => 4,
        "maximum" => 5,
        "minItems" => 6,
        "minLength" => 7,
        "minimum" => 8,
        "multipleOf" => 9,
        "pattern" => 10,
        "uniqueItems" => 11,
        _ => return None,
    })
}

impl<'t> Keywords<'t> {
    fn read(object: Json<'t>) -> Self {
        let mut keywords = Keywords::default();
        for (key, value) in object.members() {
            let slot = match key {
                "$ref" => &mut keywords.reference,
                "allOf" => &mut keywords.all_of,
                "anyOf" => &mut keywords.any_of,
                "oneOf" => &mut keywords.one_of,
                "const" => &mut keywords.constant,
                "description" => &mut keywords.description,
                "enum" => &mut keywords.enumeration,
                "items" => &mut keywords.items,
                // OpenAPI's (and native Gemini's) spelling of `["x","null"]`.
                "nullable" => &mut keywords.nullable,
                "properties" => &mut keywords.properties,
                "required" => &mut keywords.required,
                "type" => &mut keywords.ty,
                _ => match hint_index(key) {
                    Some(i) => {
                        keywords.hinted = true;
                        &mut keywords.hints[i]
                    }
                    None => continue,
                },
            };
            *slot = Some(value);
        }
        keywords
    }
}

struct Cleaner<'o, 't> {
    root: Json<'t>,
    opts: &'o SchemaOptions,
    /// `$ref`s being expanded, to cut cycles.
    refs: Vec<&'t str>,
    /// Each `$ref` resolved so far: a schema refers to a few definitions many times.
    resolved: RefMemo<'t>,
    /// Members scanned by `$ref` lookups, bounded by [`MAX_REF_SCAN`].
    scanned: usize,
    /// Where we are, for error messages.
    path: Vec<&'t str>,
    nodes: usize,
}

impl<'t> Cleaner<'_, 't> {
    fn clean(&mut self, node: Json<'t>, depth: usize) -> Result<Cleaned<'t>, SchemaError> {
        if depth > self.opts.max_depth {
            let path = if self.path.is_empty() { "(root)".to_owned() } else { self.path.join(".") };
            return Err(SchemaError::TooDeep { max_depth: self.opts.max_depth, path });
        }
        self.nodes += 1;
        if self.nodes > self.opts.max_nodes {
            return Err(SchemaError::TooLarge { max_nodes: self.opts.max_nodes });
        }
        if node.is_object() {
            // By reference: the keywords are two dozen slots, and moving them cost a copy per node.
            self.clean_object(&Keywords::read(node), depth)
        } else {
            // `true`, `false` and malformed schemas accept anything as far as the subset can say.
            Ok(Cleaned { schema: Schema::default(), nullable: false })
        }
    }

    fn clean_child(
        &mut self,
        step: &'t str,
        node: Json<'t>,
        depth: usize,
    ) -> Result<Cleaned<'t>, SchemaError> {
        self.path.push(step);
        let result = self.clean(node, depth + 1);
        self.path.pop();
        result
    }

    fn clean_object(&mut self, keywords: &Keywords<'t>, depth: usize) -> Result<Cleaned<'t>, SchemaError> {
        if let Some(reference) = keywords.reference.and_then(|r| r.as_str()) {
            return self.clean_ref(reference, keywords.description, depth);
        }
        let mut out = Schema::default();
        let mut hints = Hints::default();
        let mut nullable = keywords.nullable.and_then(|n| n.as_bool()) == Some(true);

        if let Some(ty) = keywords.ty {
            if let Some(t) = ty.as_str() {
                match type_name(t) {
                    Some("null") => nullable = true,
                    Some(t) => out.ty = Some(t),
                    None => {}
                }
            } else if ty.is_array() {
                let mut named: Vec<&str> = Vec::new();
                for (_, t) in ty.items() {
                    match t.as_str().and_then(type_name) {
                        Some("null") => nullable = true,
                        Some(t) if !named.contains(&t) => named.push(t),
                        _ => {}
                    }
                }
                out.ty = named.first().copied();
                if named.len() > 1 {
                    hints.add("Accepts: ", named.iter().copied(), " | ");
                }
            }
        }
        let hinted = if keywords.hinted { &keywords.hints[..] } else { &[] };
        for (key, value) in HINT_KEYWORDS.iter().zip(hinted) {
            if let Some(value) = value {
                let hint = hints.next();
                hint.push_str(key);
                hint.push_str(": ");
                push_display(hint, value);
            }
        }
        // `enum` wins over `const`; neither is ever cleaned as a schema.
        if keywords.enumeration.is_some_and(|v| v.is_array() && v.len() > self.opts.max_enum_values) {
            return Err(self.too_many_enum_values());
        }
        // Read in place when applied, not collected: a list of the values per node cost an allocation.
        let enum_values: Option<EnumValues<'t>> = match (keywords.enumeration, keywords.constant) {
            (Some(values), _) if values.is_array() => Some(EnumValues::List(values)),
            (_, Some(constant)) => Some(EnumValues::One(constant)),
            _ => None,
        };
        if let Some(item) = keywords.items {
            // A tuple (`items: [...]`) is described by its first schema.
            let item = if item.is_array() { item.items().next().map(|(_, v)| v) } else { Some(item) };
            if let Some(item) = item {
                out.items = Some(Box::new(self.clean_child("items", item, depth)?.schema));
            }
        }
        let mut nullable_props: Vec<&'t str> = Vec::new();
        if let Some(props) = keywords.properties.filter(Json::is_object) {
            let mut cleaned: Vec<(&'t str, Cleaned<'t>)> = Vec::with_capacity(props.len());
            for (name, sub) in props.members() {
                cleaned.push((name, self.clean_child(name, sub, depth)?));
            }
            keep_last_of_each_name(&mut cleaned);
            nullable_props.extend(cleaned.iter().filter(|(_, sub)| sub.nullable).map(|(name, _)| *name));
            out.properties = Some(cleaned.into_iter().map(|(name, sub)| (name, sub.schema)).collect());
        }
        let required: Vec<&'t str> = match keywords.required {
            Some(names) => {
                let mut required = Vec::with_capacity(names.len());
                required.extend(names.items().filter_map(|(_, n)| n.as_str()));
                required
            }
            None => Vec::new(),
        };

        if let Some(branches) = keywords.all_of.filter(Json::is_array) {
            for (_, branch) in branches.items() {
                let branch = self.clean_child("allOf", branch, depth)?;
                out.merge(branch.schema);
            }
        }
        if let Some(branches) = keywords.any_of.or(keywords.one_of).filter(Json::is_array) {
            let choice = self.choose_branch(branches, depth)?;
            nullable |= choice.nullable;
            if choice.union.len() > 1 {
                hints.add("Accepts: ", choice.union.iter().copied(), " | ");
            }
            if let Some(chosen) = choice.branch {
                out.merge(chosen);
            }
        }

        if let Some(values) = enum_values {
            apply_enum(&mut out, values, &mut hints, &mut nullable);
        }
        infer_type(&mut out);
        set_required(&mut out, &required, &nullable_props);

        let existing = out.description.take();
        let base = keywords.description.and_then(|d| d.as_str()).map(Cow::Borrowed).or(existing);
        out.description = describe(base, &hints, nullable);
        Ok(Cleaned { schema: out, nullable })
    }

    fn too_many_enum_values(&self) -> SchemaError {
        let path = if self.path.is_empty() { "(root)".to_owned() } else { self.path.join(".") };
        SchemaError::TooManyEnumValues { max: self.opts.max_enum_values, path }
    }

    fn clean_ref(
        &mut self,
        reference: &'t str,
        description: Option<Json<'t>>,
        depth: usize,
    ) -> Result<Cleaned<'t>, SchemaError> {
        let target = match self.resolved.get(reference) {
            Some(target) => target,
            None => {
                let target = reference
                    .strip_prefix('#')
                    .and_then(|pointer| self.root.pointer_counted(pointer, &mut self.scanned));
                if self.scanned > MAX_REF_SCAN {
                    return Err(SchemaError::TooManyLookups { max: MAX_REF_SCAN });
                }
                self.resolved.insert(reference, target);
                target
            }
        };
        let mut cleaned = match target {
            Some(target) if !self.refs.contains(&reference) => {
                self.refs.push(reference);
                let cleaned = self.clean_child(reference, target, depth);
                self.refs.pop();
                cleaned?
            }
            Some(_) => Cleaned { schema: Schema::placeholder("(recursive)"), nullable: false },
            None => Cleaned { schema: Schema::placeholder("(unresolved reference)"), nullable: false },
        };
        if let Some(text) = description.and_then(|d| d.as_str()) {
            cleaned.schema.description = Some(Cow::Borrowed(text));
        }
        Ok(cleaned)
    }

    /// Picks the `anyOf`/`oneOf` branch the model should follow: a union of plain enums becomes one enum;
    /// otherwise the richest branch (object with properties > object > array > scalar) wins, and the
    /// description lists what else would have been accepted.
    fn choose_branch(&mut self, branches: Json<'t>, depth: usize) -> Result<Choice<'t>, SchemaError> {
        let mut nullable = false;
        let mut kept: Vec<Schema<'t>> = Vec::new();
        for (_, branch) in branches.items() {
            if branch.get("type").and_then(|t| t.as_str()) == Some("null") {
                nullable = true;
                continue;
            }
            let cleaned = self.clean_child("anyOf", branch, depth)?;
            nullable |= cleaned.nullable;
            kept.push(cleaned.schema);
        }
        if kept.is_empty() {
            return Ok(Choice { branch: None, nullable, union: Vec::new() });
        }
        let all_enums = kept.iter().all(|b| {
            b.enum_values.is_some() && b.properties.is_none() && b.required.is_empty() && b.items.is_none()
        });
        if all_enums && kept.len() > 1 {
            let mut merged: Vec<Cow<'t, str>> =
                kept.into_iter().flat_map(|b| b.enum_values.unwrap_or_default()).collect();
            keep_first_of_each(&mut merged);
            if merged.len() > self.opts.max_enum_values {
                return Err(self.too_many_enum_values());
            }
            let out = Schema { ty: Some("string"), enum_values: Some(merged), ..Schema::default() };
            return Ok(Choice { branch: Some(out), nullable, union: Vec::new() });
        }
        let mut union: Vec<&'static str> = Vec::new();
        for branch in &kept {
            let label = branch.ty.unwrap_or("any");
            if !union.contains(&label) {
                union.push(label);
            }
        }
        let best =
            (0..kept.len()).max_by_key(|&i| (branch_score(&kept[i]), std::cmp::Reverse(i))).unwrap_or(0);
        Ok(Choice { branch: Some(kept.swap_remove(best)), nullable, union })
    }
}

/// Drops all but the last entry of a repeated name (a JSON parser keeps the last of a repeated key), in
/// linear time however many names there are. Short lists are scanned instead of hashed: a hash map or set
/// per schema object (here and in [`set_required`]) made the cold transform bench 14% slower.
fn keep_last_of_each_name<T>(entries: &mut Vec<(&str, T)>) {
    if entries.len() <= SCAN_UP_TO {
        let mut i = 0;
        while i < entries.len() {
            if entries[i + 1..].iter().any(|(name, _)| *name == entries[i].0) {
                entries.remove(i);
            } else {
                i += 1;
            }
        }
        return;
    }
    let last: HashMap<&str, usize> = entries.iter().enumerate().map(|(i, (name, _))| (*name, i)).collect();
    if last.len() < entries.len() {
        let mut i = 0;
        entries.retain(|(name, _)| {
            let keep = last.get(name) == Some(&i);
            i += 1;
            keep
        });
    }
}

/// The outcome of an `anyOf`/`oneOf`: the branch to merge, whether `null` was allowed, and the types the
/// branches allowed (an "Accepts: a | b" hint when more than one; written straight into the node's hints
/// rather than formatted apart and copied).
struct Choice<'s> {
    branch: Option<Schema<'s>>,
    nullable: bool,
    union: Vec<&'static str>,
}

fn branch_score(branch: &Schema<'_>) -> u8 {
    match branch.ty {
        Some("object") if branch.has_properties() => 4,
        Some("object") => 3,
        Some("array") => 2,
        Some(_) => 1,
        None => 0,
    }
}

/// Drops every repeat of a value, keeping the first, in linear time: lists up to [`SCAN_UP_TO`] are scanned
/// (most enums are a handful of values, and a hash set per schema node made the cold transform slower, see
/// [`keep_last_of_each_name`]), longer ones hashed.
pub(crate) fn keep_first_of_each<T: AsRef<str>>(values: &mut Vec<T>) {
    if values.len() <= SCAN_UP_TO {
        let mut i = 1;
        while i < values.len() {
            if values[..i].iter().any(|v| v.as_ref() == values[i].as_ref()) {
                values.remove(i);
            } else {
                i += 1;
            }
        }
        return;
    }
    let mut seen: HashSet<&str> = HashSet::with_capacity(values.len());
    let keep: Vec<bool> = values.iter().map(|v| seen.insert(v.as_ref())).collect();
    if keep.iter().all(|k| *k) {
        return;
    }
    let mut keep = keep.into_iter();
    values.retain(|_| keep.next().unwrap_or(true));
}

/// Below this many entries a list is scanned rather than hashed to find repeats.
pub(crate) const SCAN_UP_TO: usize = 16;

fn infer_type(out: &mut Schema<'_>) {
    if out.ty.is_some() {
        return;
    }
    if out.properties.is_some() {
        out.ty = Some("object");
    } else if out.items.is_some() {
        out.ty = Some("array");
    }
}

/// Keeps only required names that exist as (non-nullable) properties, without duplicates. Sets are used
/// past a handful of names, so a hostile list of a million names costs linear time.
fn set_required<'s>(out: &mut Schema<'s>, own: &[&'s str], nullable_props: &[&'s str]) {
    let merged = std::mem::take(&mut out.required);
    let Some(props) = &out.properties else {
        return;
    };
    let candidates = own.iter().chain(merged.iter()).copied();
    let mut keep: Vec<&'s str> = Vec::new();
    if props.len() + own.len() + merged.len() <= 32 {
        for name in candidates {
            if props.iter().any(|(n, _)| *n == name)
                && !nullable_props.contains(&name)
                && !keep.contains(&name)
            {
                keep.push(name);
            }
        }
    } else {
        let mut allowed: HashSet<&str> = props.iter().map(|(n, _)| *n).collect();
        for name in nullable_props {
            allowed.remove(name);
        }
        for name in candidates {
            // Removing on first use keeps the list free of duplicates.
            if allowed.remove(name) {
                keep.push(name);
            }
        }
    }
    out.required = keep;
}

fn add_reason_if_empty(out: &mut Schema<'_>) {
    let is_object = out.ty.is_none_or(|t| t == "object");
    if !is_object || out.has_properties() {
        return;
    }
    out.ty = Some("object");
    let reason = Schema {
        ty: Some("string"),
        description: Some(Cow::Borrowed("Why this tool is being called")),
        ..Schema::default()
    };
    out.properties = Some(vec![("reason", reason)]);
    out.required = vec!["reason"];
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Map};

    fn clean(schema: Value) -> Value {
        clean_schema(&schema, &SchemaOptions::default()).unwrap()
    }

    #[test]
    fn every_hint_keyword_lands_in_its_own_slot() {
        for (i, keyword) in HINT_KEYWORDS.iter().enumerate() {
            let tokens = JsonTokens::from_value(&json!({ *keyword: 1 }));
            let read = Keywords::read(tokens.view());
            let filled: Vec<usize> = (0..HINT_KEYWORDS.len()).filter(|&j| read.hints[j].is_some()).collect();
            assert_eq!(filled, vec![i], "{keyword}");
        }
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
    fn ref_lookups_into_huge_definitions_are_bounded_and_repeated_refs_cost_once() {
        let defs: Map<String, Value> =
            (0..200_000).map(|i| (format!("d{i}"), json!({"type": "string"}))).collect();
        let props = |refs: Vec<String>| -> Map<String, Value> {
            refs.into_iter().enumerate().map(|(i, r)| (format!("p{i}"), json!({"$ref": r}))).collect()
        };
        let same = props(vec!["#/$defs/d199999".to_owned(); 1000]);
        let cleaned = clean_schema(
            &json!({"type": "object", "properties": same, "$defs": defs}),
            &SchemaOptions::default(),
        );
        assert!(cleaned.is_ok(), "one definition referred to 1000 times is looked up once: {cleaned:?}");
        let distinct = props((0..10).map(|i| format!("#/$defs/d{}", 199_990 + i)).collect());
        let cleaned = clean_schema(
            &json!({"type": "object", "properties": distinct, "$defs": defs}),
            &SchemaOptions::default(),
        );
        assert_eq!(cleaned, Err(SchemaError::TooManyLookups { max: MAX_REF_SCAN }));
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
