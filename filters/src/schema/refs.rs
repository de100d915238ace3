//! The `$ref` targets one schema cleaning has looked up, so a definition referred to many times is looked up
//! once.

use std::collections::HashMap;

use super::SCAN_UP_TO;
use crate::json_tokens::Json;

/// The `$ref`s of one schema resolved so far. Most schemas use a handful of references, which a short list
/// finds faster than a hash map (SipHash of every reference, twice, and a table per tool); past
/// [`SCAN_UP_TO`] distinct references they move to a map, so a hostile schema still costs linear time.
#[derive(Default)]
pub(super) struct RefMemo<'t> {
    few: Vec<(&'t str, Option<Json<'t>>)>,
    many: HashMap<&'t str, Option<Json<'t>>>,
}

impl<'t> RefMemo<'t> {
    pub(super) fn get(&self, reference: &str) -> Option<Option<Json<'t>>> {
        if self.many.is_empty() {
            self.few.iter().find(|(r, _)| *r == reference).map(|(_, target)| *target)
        } else {
            self.many.get(reference).copied()
        }
    }

    pub(super) fn insert(&mut self, reference: &'t str, target: Option<Json<'t>>) {
        if self.many.is_empty() && self.few.len() < SCAN_UP_TO {
            self.few.push((reference, target));
        } else {
            self.many.extend(self.few.drain(..));
            self.many.insert(reference, target);
        }
    }
}
