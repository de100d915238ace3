//! One configuration file as read from disk: its path and text, parsing it, and finding the line a key is
//! written on, so that a problem found after parsing can still say `file:line` like a syntax error does.
//!
//! serde_yaml does not keep positions once a value is deserialized, so a key is found again in the text: a
//! cheap search that understands block and flow mappings and block sequences, which is what these files use.
//! When a key cannot be found, the problem names its nearest enclosing key's line, or only the file.

use std::path::{Path, PathBuf};

use super::{ConfigError, Problems};

/// A file's path and text.
pub(super) struct Source {
    pub path: PathBuf,
    pub text: String,
}

/// A file parsed into its serde type, kept with its text for locating problems.
pub(super) struct Parsed<T> {
    pub source: Source,
    pub file: T,
}

/// One step of a key path: `[Key("auth"), Key("api_keys"), Item(0), Key("key_env")]`.
#[derive(Clone, Copy, Debug)]
pub(super) enum At<'a> {
    Key(&'a str),
    Item(usize),
}

impl<T: serde::de::DeserializeOwned> Parsed<T> {
    /// The file at `path`, parsed; `None` with the problem kept when it cannot be read or parsed.
    pub fn read(path: &Path, problems: &mut Problems) -> Option<Parsed<T>> {
        let source = problems.keep(Source::read(path))?;
        let file = problems.keep(source.parse())?;
        Some(Parsed { source, file })
    }
}

impl Source {
    pub fn read(path: &Path) -> Result<Source, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Source { path: path.to_path_buf(), text }),
            Err(source) => Err(ConfigError::Read { path: path.display().to_string(), source }),
        }
    }

    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, ConfigError> {
        serde_yaml::from_str(&self.text).map_err(|e| {
            let (line, column) = e.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
            // serde_yaml appends " at line N column M"; the location is already in front.
            let mut message = e.to_string();
            if let Some(cut) = message.find(" at line ") {
                message.truncate(cut);
            }
            ConfigError::Syntax { path: self.path.display().to_string(), line, column, message }
        })
    }

    /// A problem with the value written at `at`.
    pub fn invalid(&self, at: &[At<'_>], message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.display().to_string(),
            line: self.line_of(at),
            message: message.into(),
        }
    }

    /// The 1-based line of the deepest step of `at` that can be found.
    pub fn line_of(&self, at: &[At<'_>]) -> Option<usize> {
        let text = self.text.as_str();
        let (mut from, mut to) = (0, text.len());
        let mut found = None;
        for (depth, step) in at.iter().enumerate() {
            let next = match *step {
                At::Key(key) => find_key(text, from, to, key, depth == 0).map(|(s, e)| (s, s + key.len(), e)),
                At::Item(index) => find_item(text, from, to, index).map(|(s, e)| (s, s + 1, e)),
            };
            let Some((start, inside, end)) = next else { break };
            found = Some(start);
            from = inside;
            to = end.min(to);
        }
        found.map(|offset| text[..offset].matches('\n').count() + 1)
    }
}

fn line_start(text: &str, offset: usize) -> usize {
    text[..offset].rfind('\n').map_or(0, |i| i + 1)
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_sequence_item(content: &str) -> bool {
    content == "-" || content.starts_with("- ")
}

/// Where the value of a key or item starting at `offset` (column `column`) ends: at the next line indented
/// no deeper than it, except a sequence written at its own key's indentation, which YAML allows.
fn block_end(text: &str, offset: usize, column: usize) -> usize {
    let mut line_begin = text[offset..].find('\n').map_or(text.len(), |i| offset + i + 1);
    while line_begin < text.len() {
        let line_end = text[line_begin..].find('\n').map_or(text.len(), |i| line_begin + i);
        let line = &text[line_begin..line_end];
        let content = line.trim_start();
        if !content.is_empty() && !content.starts_with('#') {
            let depth = indent(line);
            if depth < column || (depth == column && !is_sequence_item(content)) {
                return line_begin;
            }
        }
        line_begin = line_end + 1;
    }
    text.len()
}

/// The key `key` written in `text[from..to]`, as `(where it starts, where its value ends)`.
fn find_key(text: &str, from: usize, to: usize, key: &str, top_level: bool) -> Option<(usize, usize)> {
    let mut search = from;
    while let Some(found) = text[search..to].find(key) {
        let start = search + found;
        search = start + key.len().max(1);
        let mut before = &text[line_start(text, start)..start];
        let mut after = &text[start + key.len()..];
        for quote in ['"', '\''] {
            if before.ends_with(quote) && after.starts_with(quote) {
                before = &before[..before.len() - 1];
                after = &after[1..];
            }
        }
        let prefix = before.trim_end();
        let opens_key = if top_level {
            before.is_empty()
        } else {
            prefix.is_empty() || prefix.ends_with('-') || prefix.ends_with('{') || prefix.ends_with(',')
        };
        let after = after.trim_start_matches(' ');
        let is_key = after.starts_with(':') && after[1..].chars().next().is_none_or(char::is_whitespace);
        if opens_key && is_key && !before.contains('#') {
            let column = start - line_start(text, start);
            return Some((start, block_end(text, start, column)));
        }
    }
    None
}

/// Item `index` of the block sequence in `text[from..to]`, as `(its dash, where it ends)`.
fn find_item(text: &str, from: usize, to: usize, index: usize) -> Option<(usize, usize)> {
    let mut items = Vec::new();
    let mut item_indent = None;
    let mut line_begin = text[from..to].find('\n').map(|i| from + i + 1)?;
    while line_begin < to {
        let line_end = text[line_begin..to].find('\n').map_or(to, |i| line_begin + i);
        let line = &text[line_begin..line_end];
        if is_sequence_item(line.trim_start()) && *item_indent.get_or_insert(indent(line)) == indent(line) {
            items.push(line_begin + indent(line));
        }
        line_begin = line_end + 1;
    }
    let start = *items.get(index)?;
    Some((start, items.get(index + 1).copied().unwrap_or(to)))
}

#[cfg(test)]
mod tests {
    use super::At::{Item, Key};
    use super::*;

    fn source(text: &str) -> Source {
        Source { path: "levitate.yaml".into(), text: text.to_string() }
    }

    const TEXT: &str = "\
# listen: in a comment
listen: 127.0.0.1:8045
admin:
  listen: 127.0.0.1:8046   # not the top-level listen
auth:
  api_keys:
    - { name: a, key_env: A }
    - name: b
      key_env: B
pool: { max_wait: 5s, \"quota_floor\": 2 }
accounts:
- email: x@y
  tier: platinum
";

    #[test]
    fn keys_are_found_on_their_lines() {
        let s = source(TEXT);
        assert_eq!(s.line_of(&[Key("listen")]), Some(2));
        assert_eq!(s.line_of(&[Key("admin"), Key("listen")]), Some(4));
        assert_eq!(s.line_of(&[Key("pool"), Key("quota_floor")]), Some(10));
        assert_eq!(s.line_of(&[Key("auth"), Key("api_keys"), Item(0), Key("key_env")]), Some(7));
        assert_eq!(s.line_of(&[Key("auth"), Key("api_keys"), Item(1), Key("key_env")]), Some(9));
        assert_eq!(s.line_of(&[Key("accounts"), Item(0), Key("tier")]), Some(13));
    }

    #[test]
    fn a_missing_key_falls_back_to_its_parent() {
        let s = source(TEXT);
        assert_eq!(s.line_of(&[Key("admin"), Key("key")]), Some(3));
        assert_eq!(s.line_of(&[Key("auth"), Key("api_keys"), Item(5)]), Some(6));
        assert_eq!(s.line_of(&[Key("store")]), None);
        let e = s.invalid(&[Key("upstream"), Key("endpoints")], "x").to_string();
        assert_eq!(e, "levitate.yaml: x");
    }
}
