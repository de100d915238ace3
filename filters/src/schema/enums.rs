//! `enum` and `const`: values the subset keeps as a string enum, or describes in a hint for typed scalars.

use std::borrow::Cow;

use super::cleaned::Schema;
use super::hints::{display_value, push_json, Hints};
use super::keep_first_of_each;
use crate::json_tokens::Json;

/// A node's `enum` array or its `const` value.
#[derive(Clone, Copy)]
pub(super) enum EnumValues<'t> {
    List(Json<'t>),
    One(Json<'t>),
}

impl<'t> EnumValues<'t> {
    fn iter(self) -> impl Iterator<Item = Json<'t>> {
        let (list, one) = match self {
            EnumValues::List(list) => (Some(list), None),
            EnumValues::One(one) => (None, Some(one)),
        };
        list.into_iter().flat_map(|list| list.items().map(|(_, v)| v)).chain(one)
    }

    fn len(self) -> usize {
        match self {
            EnumValues::List(list) => list.len(),
            EnumValues::One(_) => 1,
        }
    }
}

/// `enum`/`const` values: strings for string-like schemas, an "Allowed values" hint for typed scalars.
pub(super) fn apply_enum<'t>(
    out: &mut Schema<'t>,
    values: EnumValues<'t>,
    hints: &mut Hints,
    nullable: &mut bool,
) {
    if values.iter().any(|v| v.is_null()) {
        *nullable = true;
    }
    if values.iter().all(|v| v.is_null()) {
        return;
    }
    let non_null = values.iter().filter(|v| !v.is_null());
    match out.ty {
        None | Some("string") => {
            let mut strings: Vec<Cow<'t, str>> = Vec::with_capacity(values.len());
            strings.extend(non_null.map(|v| display_value(&v)));
            keep_first_of_each(&mut strings);
            out.ty = Some("string");
            out.enum_values = Some(strings);
        }
        Some(_) => {
            let hint = hints.next();
            hint.push_str("Allowed values: ");
            for (i, value) in non_null.enumerate() {
                if i > 0 {
                    hint.push_str(" | ");
                }
                push_json(hint, &value);
            }
        }
    }
}
