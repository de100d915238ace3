//! The hints a cleaned schema carries in its description.
//!
//! Constraints the upstream's schema subset cannot express (`minimum`, `pattern`, a union of types, allowed
//! values of a typed scalar, `nullable`) are not dropped: they are written into the node's description, so
//! the model still sees them when it calls the tool.

use std::borrow::Cow;

use crate::json_tokens::{Json, Kind};

/// The description `base` (trimmed) followed by the hints and `(nullable)`; `None` when that is empty.
pub(super) fn describe<'s>(
    base: Option<Cow<'s, str>>,
    hints: &Hints,
    nullable: bool,
) -> Option<Cow<'s, str>> {
    if hints.is_empty() && !nullable {
        return match base? {
            Cow::Borrowed(text) => Some(Cow::Borrowed(text.trim())),
            Cow::Owned(text) => Some(Cow::Owned(text.trim().to_owned())),
        }
        .filter(|text| !text.is_empty());
    }
    let base = base.as_deref().map(str::trim).unwrap_or_default();
    let mut text = String::with_capacity(base.len() + hints.0.len() + 16);
    text.push_str(base);
    if !hints.is_empty() {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push('(');
        text.push_str(&hints.0);
        text.push(')');
    }
    if nullable {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str("(nullable)");
    }
    Some(Cow::Owned(text))
}

/// A value as the model should read it in a hint or enum: strings bare, everything else as JSON.
pub(super) fn display_value<'t>(value: &Json<'t>) -> Cow<'t, str> {
    match value.as_str() {
        Some(s) => Cow::Borrowed(s),
        None => {
            let mut text = String::new();
            push_json(&mut text, value);
            Cow::Owned(text)
        }
    }
}

pub(super) fn push_display(out: &mut String, value: &Json<'_>) {
    match value.as_str() {
        Some(s) => out.push_str(s),
        None => push_json(out, value),
    }
}

/// Appends `value` as compact JSON; numbers and booleans without a detour through a new `String`.
pub(super) fn push_json(out: &mut String, value: &Json<'_>) {
    use std::fmt::Write;
    match value.kind() {
        // `Number`'s `Display` is its JSON form.
        Kind::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Kind::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        Kind::Null => out.push_str("null"),
        _ => out.push_str(&value.to_json()),
    }
}

/// Constraint hints for a description, as one ", "-separated text: a few short pieces per schema node,
/// written in place rather than formatted and joined.
#[derive(Default)]
pub(super) struct Hints(String);

impl Hints {
    /// The text to append the next hint to.
    pub(super) fn next(&mut self) -> &mut String {
        if self.0.is_empty() {
            // Room for a few hints at once: growing 8, 16, 32, 64 bytes cost a reallocation per hint.
            self.0.reserve(64);
        } else {
            self.0.push_str(", ");
        }
        &mut self.0
    }

    pub(super) fn add<'a>(&mut self, label: &str, pieces: impl Iterator<Item = &'a str>, separator: &str) {
        let hint = self.next();
        hint.push_str(label);
        for (i, piece) in pieces.enumerate() {
            if i > 0 {
                hint.push_str(separator);
            }
            hint.push_str(piece);
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
