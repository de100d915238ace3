//! Scrubbing Google's error text of project identities before a client reads it.
//!
//! Google's messages are worth passing on ("You have exhausted your capacity on this model", "Cloud Code
//! Private API has not been used in project 123456789012 before…"), but they name the Cloud project of the
//! account that served the request: its id (`useful-fuze-a1b2c`), its number, `projects/…` resource paths and
//! `?project=` console links. Those identify the operator's Google accounts to every client with an API key.
//! [`scrub_projects`] replaces each with [`PROJECT_PLACEHOLDER`] and leaves the rest of the message as it was.
//!
//! One pass over the text, word by word (a word is a run of ASCII letters, digits, `-`, `_` and `.`), so the
//! cost is linear in the message whatever it holds. A word is replaced when it is
//! - one of the `known` project ids (the account's own, which may appear anywhere);
//! - a run of [`MIN_PROJECT_NUMBER_DIGITS`] or more digits (project numbers are 12; no useful figure in an
//!   error message is that long);
//! - the word after `project`/`projects`/`project_id`/`projectId`/`project_number` when a quote, `/`, `=` or `:`
//!   joins them (`projects/x`, `project 'x'`, `?project=x`, `"projectId": "x"`), or when it looks like a
//!   project id (lowercase letter first, then lowercase letters, digits and hyphens, with a digit or hyphen:
//!   `project foo-bar-123`, but not `project settings`).

use std::borrow::Cow;

/// What a project id or number is replaced with.
pub const PROJECT_PLACEHOLDER: &str = "[project]";
/// Digit runs at least this long are taken for project numbers.
pub const MIN_PROJECT_NUMBER_DIGITS: usize = 10;
/// How many separator characters may stand between `project` and its id (`project: '…`).
const MAX_SEPARATORS: usize = 4;

/// `text` with every project id and number replaced by [`PROJECT_PLACEHOLDER`]; borrowed when nothing was.
pub fn scrub_projects<'a>(text: &'a str, known: &[&str]) -> Cow<'a, str> {
    let mut out = String::new();
    // Bytes of `text` before `copied` are in `out` already (only once something was replaced).
    let mut copied = 0;
    let mut replaced = false;
    // After a `project` keyword: how many separators followed, and whether one of them binds (`/`, `=`…).
    let mut pending: Option<(usize, bool)> = None;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !is_word_byte(bytes[i]) {
            pending = match (pending, bytes[i]) {
                (Some((n, binds)), b' ' | b'\t') if n < MAX_SEPARATORS => Some((n + 1, binds)),
                (Some((n, _)), b'/' | b'=' | b':' | b'\'' | b'"' | b'`') if n < MAX_SEPARATORS => {
                    Some((n + 1, true))
                }
                _ => None,
            };
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_word_byte(bytes[i]) {
            i += 1;
        }
        // A sentence's full stop is not part of the id before it.
        let word = text[start..i].trim_end_matches('.');
        let end = start + word.len();
        let after_keyword = pending.take();
        if is_project_keyword(word) {
            pending = Some((0, false));
            continue;
        }
        let is_project = known.iter().any(|k| !k.is_empty() && *k == word)
            || (word.len() >= MIN_PROJECT_NUMBER_DIGITS && word.bytes().all(|b| b.is_ascii_digit()))
            || after_keyword.is_some_and(|(_, binds)| binds || looks_like_project_id(word));
        if is_project && !word.is_empty() {
            out.push_str(&text[copied..start]);
            out.push_str(PROJECT_PLACEHOLDER);
            copied = end;
            replaced = true;
        }
    }
    if !replaced {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

fn is_project_keyword(word: &str) -> bool {
    ["project", "projects", "project_id", "projectid", "project_number", "projectnumber"]
        .iter()
        .any(|k| word.eq_ignore_ascii_case(k))
}

/// The shape of a Google Cloud project id (6 to 30 lowercase letters, digits and hyphens, a letter first; with
/// a digit or hyphen in it, so an ordinary word after "project" is not taken for one), or a project number.
fn looks_like_project_id(word: &str) -> bool {
    let b = word.as_bytes();
    let id_shaped = (6..=30).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.iter().any(|c| c.is_ascii_digit() || *c == b'-');
    let a_number = !b.is_empty() && b.iter().all(u8::is_ascii_digit);
    id_shaped || a_number
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrub(text: &str) -> String {
        scrub_projects(text, &["useful-fuze-a1b2c"]).into_owned()
    }

    #[test]
    fn project_numbers_and_console_links_are_scrubbed() {
        let google = "Cloud Code Private API has not been used in project 123456789012 before or it is disabled. \
                      Enable it by visiting https://console.developers.google.com/apis/api/cloudcode-pa.googleapis.com/overview?project=123456789012 then retry.";
        let scrubbed = scrub(google);
        assert!(!scrubbed.contains("123456789012"), "{scrubbed}");
        assert_eq!(
            scrubbed,
            "Cloud Code Private API has not been used in project [project] before or it is disabled. \
             Enable it by visiting https://console.developers.google.com/apis/api/cloudcode-pa.googleapis.com/overview?project=[project] then retry."
        );
    }

    #[test]
    fn resource_paths_quoted_ids_and_the_known_id_are_scrubbed() {
        let cases = [
            (
                "Permission denied on resource projects/foo-bar-123/locations/global.",
                "Permission denied on resource projects/[project]/locations/global.",
            ),
            (
                "Permission 'x' denied on project 'my-project'.",
                "Permission 'x' denied on project '[project]'.",
            ),
            (
                "Consumer 'projects/987654321' has been suspended.",
                "Consumer 'projects/[project]' has been suspended.",
            ),
            (
                "The caller does not have access to project foo-bar-123.",
                "The caller does not have access to project [project].",
            ),
            ("{\"projectId\": \"acme\"}", "{\"projectId\": \"[project]\"}"),
            ("quota of useful-fuze-a1b2c is exhausted", "quota of [project] is exhausted"),
            ("Project: prod7 is not onboarded", "Project: [project] is not onboarded"),
        ];
        for (text, expected) in cases {
            assert_eq!(scrub(text), expected, "{text}");
        }
    }

    #[test]
    fn the_rest_of_the_message_is_left_as_it_was() {
        for text in [
            "You have exhausted your capacity on this model. Your quota will reset after 3h2m1s.",
            "The input token count (1048577) exceeds the maximum number of tokens allowed (1048576).",
            "Enable it in the project settings.",
            "Request contains an invalid argument.",
            "Modèle inconnu : gemini-9 — réessayez",
            "",
        ] {
            assert!(matches!(scrub_projects(text, &["useful-fuze-a1b2c"]), Cow::Borrowed(_)), "{text}");
        }
        assert_eq!(scrub_projects("a project", &[""]), "a project", "an empty known id matches nothing");
    }

    #[test]
    fn a_long_hostile_message_is_scrubbed_in_linear_time() {
        let text = "project ".repeat(100_000) + &"1".repeat(100_000);
        let scrubbed = scrub_projects(&text, &["x"; 8]);
        assert!(scrubbed.ends_with(PROJECT_PLACEHOLDER));
    }
}
