//! The console's edits of levitate.yaml's `auth.api_keys`: a key's limits, its `enabled`, a new key.
//!
//! The file is the operator's, with their comments. An edit changes only the lines of the one key it touches
//! (a field's line replaced, inserted at the end of the key's block, or removed) and is then checked: the
//! edited text must parse to exactly the document the change intends. When that check fails (flow style,
//! anchors, an unusual layout) a file without comments (as tools write JSON) is rewritten from its parsed form,
//! and a file with comments is left alone with an error saying to edit it by hand. Writes are atomic (temp
//! file, fsync, rename, fsync of the folder) under an exclusive `flock` beside the file, the way
//! `accounts/file.rs` writes accounts.yaml, so the reload watcher only ever sees a whole file.

use std::os::unix::io::AsRawFd;
use std::path::Path;

use serde_yaml::{Mapping, Value};

#[derive(Debug, thiserror::Error)]
pub enum KeysFileError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("levitate.yaml is not valid YAML: {0}")]
    Yaml(String),
    #[error("no API key named {0:?} in levitate.yaml (is it defined in another way?)")]
    NoSuchKey(String),
    #[error("an API key named {0:?} already exists")]
    Exists(String),
    #[error(
        "levitate.yaml's layout cannot be edited without losing its comments; edit auth.api_keys by hand"
    )]
    NotEditable,
}

/// A key's numeric limits as the console's form sets them (`None`: no limit).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyLimits {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub max_concurrent: Option<u64>,
    pub daily_tokens: Option<u64>,
    pub monthly_tokens: Option<u64>,
}

/// One edit of `auth.api_keys`.
#[derive(Clone, Debug)]
pub enum Change {
    Limits(KeyLimits),
    Enabled(bool),
    Create { secret: String },
}

/// Applies `change` to the key `name` in the file at `path`, atomically and under the file's edit lock.
pub fn edit(path: &Path, name: &str, change: &Change) -> Result<(), KeysFileError> {
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(folder.join(format!(".{file_name}.lock")))?;
    // SAFETY: flock(2) on a descriptor this function owns; released when `lock` is dropped.
    while unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(error.into());
        }
    }
    let text = std::fs::read_to_string(path)?;
    let edited = apply(&text, name, change)?;
    let mode = crate::atomic_file::mode_or(path, 0o600);
    Ok(crate::atomic_file::replace(path, edited.as_bytes(), mode)?)
}

/// The text of levitate.yaml with `change` applied to key `name` (pure: the tests' subject).
pub fn apply(text: &str, name: &str, change: &Change) -> Result<String, KeysFileError> {
    let doc: Value = serde_yaml::from_str(text).map_err(|e| KeysFileError::Yaml(e.to_string()))?;
    let mut expected = doc.clone();
    let keys = expected
        .get_mut("auth")
        .and_then(|a| a.get_mut("api_keys"))
        .and_then(Value::as_sequence_mut)
        .ok_or_else(|| KeysFileError::NoSuchKey(name.to_string()))?;
    let index = keys.iter().position(|k| k.get("name").and_then(Value::as_str) == Some(name));
    let fields = fields_of(change);
    let edited = match (change, index) {
        (Change::Create { .. }, Some(_)) => return Err(KeysFileError::Exists(name.to_string())),
        (Change::Create { secret }, None) => {
            let mut entry = Mapping::new();
            entry.insert("name".into(), name.into());
            entry.insert("key".into(), secret.as_str().into());
            let last = keys.last().and_then(|k| k.get("name")).and_then(Value::as_str).map(str::to_string);
            keys.push(Value::Mapping(entry));
            last.and_then(|last| append_key(text, &last, name, secret))
        }
        (_, None) => return Err(KeysFileError::NoSuchKey(name.to_string())),
        (_, Some(i)) => {
            if let Some(Value::Mapping(entry)) = keys.get_mut(i) {
                for (field, value) in &fields {
                    match value {
                        Some(v) => {
                            entry.insert((*field).into(), serde_yaml::from_str(v).unwrap_or(Value::Null))
                        }
                        None => entry.remove(*field),
                    };
                }
            }
            edit_fields(text, name, &fields)
        }
    };
    if let Some(edited) = edited {
        if serde_yaml::from_str::<Value>(&edited).ok().as_ref() == Some(&expected) {
            return Ok(edited);
        }
    }
    if text.contains('#') {
        return Err(KeysFileError::NotEditable);
    }
    serde_yaml::to_string(&expected).map_err(|e| KeysFileError::Yaml(e.to_string()))
}

/// The fields a change sets (`Some(YAML value)`) or removes (`None`).
fn fields_of(change: &Change) -> Vec<(&'static str, Option<String>)> {
    match change {
        Change::Limits(l) => {
            let budget = match (l.daily_tokens, l.monthly_tokens) {
                (None, None) => None,
                (d, m) => {
                    let parts: Vec<String> = [("daily_tokens", d), ("monthly_tokens", m)]
                        .iter()
                        .filter_map(|(k, v)| v.map(|v| format!("{k}: {v}")))
                        .collect();
                    Some(format!("{{ {} }}", parts.join(", ")))
                }
            };
            vec![
                ("rpm", l.rpm.map(|v| v.to_string())),
                ("tpm", l.tpm.map(|v| v.to_string())),
                ("max_concurrent", l.max_concurrent.map(|v| v.to_string())),
                ("budget", budget),
            ]
        }
        Change::Enabled(enabled) => vec![("enabled", Some(enabled.to_string()))],
        Change::Create { .. } => Vec::new(),
    }
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_content(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

/// The value of a `name:` line (quotes and a trailing comment removed).
fn name_value(body: &str) -> Option<&str> {
    let value = body.strip_prefix("name:")?;
    let value = value.split(" #").next().unwrap_or("").trim();
    Some(value.trim_matches(|c| c == '"' || c == '\''))
}

/// The block of key `name`: its first line (the `- ` item line), one past its last content line, and the
/// column its fields start at.
fn key_block(lines: &[&str], name: &str) -> Option<(usize, usize, usize)> {
    let (at, field_col) = lines.iter().enumerate().find_map(|(i, line)| {
        let trimmed = line.trim_start_matches(' ');
        let (col, body) = match trimmed.strip_prefix("- ") {
            Some(rest) => (indent_of(line) + 2 + indent_of(rest), rest.trim_start()),
            None => (indent_of(line), trimmed),
        };
        (name_value(body) == Some(name)).then_some((i, col))
    })?;
    let dash_col = field_col.checked_sub(2)?;
    let start = (0..=at)
        .rev()
        .find(|&i| indent_of(lines[i]) == dash_col && lines[i].trim_start().starts_with("- "))?;
    let mut end = start + 1;
    for (i, line) in lines.iter().enumerate().skip(start + 1) {
        if !is_content(line) {
            continue;
        }
        if indent_of(line) < field_col {
            break;
        }
        end = i + 1;
    }
    Some((start, end, field_col))
}

/// Sets or removes each field of key `name` by editing only its lines.
fn edit_fields(text: &str, name: &str, fields: &[(&str, Option<String>)]) -> Option<String> {
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
    if lines.last().is_some_and(|l| !l.ends_with('\n')) {
        lines.last_mut()?.push('\n');
    }
    for (field, value) in fields {
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let (start, end, col) = key_block(&refs, name)?;
        let found = (start..end).find(|&i| {
            let line = refs[i];
            line.len() > col
                && line.is_char_boundary(col)
                && line[col..].starts_with(&format!("{field}:"))
                && {
                    let before = &line[..col];
                    before.trim().is_empty() || (i == start && before.trim() == "-")
                }
        });
        match (found, value) {
            (Some(i), value) => {
                let extent =
                    (i + 1..end).find(|&j| is_content(refs[j]) && indent_of(refs[j]) <= col).unwrap_or(end);
                match value {
                    None if i == start => return None,
                    None => {
                        lines.drain(i..extent);
                    }
                    Some(v) => {
                        let line = refs[i];
                        let mut replacement = format!("{}{field}: {v}", &line[..col]);
                        // A one-line field keeps its comment, at the same column when the value fits.
                        if let Some(at) = line.find(" #").filter(|_| extent == i + 1) {
                            let hash = at + 1;
                            let pad = hash.saturating_sub(replacement.len()).max(1);
                            replacement =
                                format!("{replacement}{}{}", " ".repeat(pad), line[hash..].trim_end());
                        }
                        replacement.push('\n');
                        lines.splice(i..extent, [replacement]);
                    }
                }
            }
            (None, Some(v)) => lines.insert(end, format!("{}{field}: {v}\n", " ".repeat(col))),
            (None, None) => {}
        }
    }
    Some(lines.concat())
}

/// Appends a new key's block after the block of the key `last`, in the same style.
fn append_key(text: &str, last: &str, name: &str, secret: &str) -> Option<String> {
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
    if lines.last().is_some_and(|l| !l.ends_with('\n')) {
        lines.last_mut()?.push('\n');
    }
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let (_, end, col) = key_block(&refs, last)?;
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let block = format!(
        "{dash}- name: {}\n{field}key: {}\n",
        quote(name),
        quote(secret),
        dash = " ".repeat(col - 2),
        field = " ".repeat(col)
    );
    lines.insert(end, block);
    Some(lines.concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# levitate.yaml, hand-written\nlisten: 127.0.0.1:8045\nauth:\n  time_zone: UTC\n  api_keys:\n    # the CI agent\n    - name: ci\n      key_env: KEY_CI   # from the env file\n      rpm: 60          # agreed with the team\n      budget:\n        daily_tokens: 1000\n\n    - name: \"alice\"\n      key: sk-alice\n# after the keys\nusage:\n  retention_days: 30\n";

    fn parsed(text: &str) -> Value {
        serde_yaml::from_str(text).unwrap()
    }

    fn key<'a>(doc: &'a Value, name: &str) -> &'a Value {
        doc["auth"]["api_keys"].as_sequence().unwrap().iter().find(|k| k["name"] == name).unwrap()
    }

    #[test]
    fn limits_are_edited_in_place_and_comments_stay() {
        let limits = KeyLimits {
            rpm: Some(5),
            tpm: Some(900),
            daily_tokens: None,
            monthly_tokens: Some(7),
            ..KeyLimits::default()
        };
        let out = apply(FILE, "ci", &Change::Limits(limits)).unwrap();
        for comment in [
            "# levitate.yaml, hand-written",
            "# the CI agent",
            "# from the env file",
            "# agreed with the team",
            "# after the keys",
        ] {
            assert!(out.contains(comment), "{comment} lost:\n{out}");
        }
        assert!(out.contains("      rpm: 5           # agreed with the team\n"), "{out}");
        let doc = parsed(&out);
        let ci = key(&doc, "ci");
        assert_eq!((ci["rpm"].as_u64(), ci["tpm"].as_u64()), (Some(5), Some(900)));
        assert_eq!(ci["budget"]["monthly_tokens"].as_u64(), Some(7));
        assert!(ci["budget"].get("daily_tokens").is_none());
        assert_eq!(key(&doc, "alice")["key"].as_str(), Some("sk-alice"));
        assert_eq!(doc["usage"]["retention_days"].as_u64(), Some(30));
    }

    #[test]
    fn cleared_limits_are_removed_and_a_key_disabled() {
        let out = apply(FILE, "ci", &Change::Limits(KeyLimits::default())).unwrap();
        let doc = parsed(&out);
        let ci = key(&doc, "ci");
        assert!(ci.get("rpm").is_none() && ci.get("budget").is_none(), "{out}");
        assert!(out.contains("# from the env file"));
        let out = apply(&out, "alice", &Change::Enabled(false)).unwrap();
        assert!(out.contains("      key: sk-alice\n      enabled: false\n# after the keys"), "{out}");
        let out = apply(&out, "alice", &Change::Enabled(true)).unwrap();
        assert_eq!(key(&parsed(&out), "alice")["enabled"].as_bool(), Some(true));
    }

    #[test]
    fn a_new_key_is_appended_and_names_are_unique() {
        let out = apply(FILE, "bob", &Change::Create { secret: "lvk-secret".into() }).unwrap();
        assert!(out.contains("    - name: \"bob\"\n      key: \"lvk-secret\"\n# after the keys"), "{out}");
        assert_eq!(key(&parsed(&out), "bob")["key"].as_str(), Some("lvk-secret"));
        assert!(matches!(
            apply(FILE, "ci", &Change::Create { secret: "x".into() }),
            Err(KeysFileError::Exists(_))
        ));
        assert!(matches!(apply(FILE, "nobody", &Change::Enabled(false)), Err(KeysFileError::NoSuchKey(_))));
    }

    #[test]
    fn json_files_are_rewritten_and_unusual_commented_files_refused() {
        let json =
            "{\"auth\": {\"api_keys\": [{\"name\": \"e2e\", \"key\": \"k\"}]}, \"listen\": \"127.0.0.1:1\"}";
        let out =
            apply(json, "e2e", &Change::Limits(KeyLimits { rpm: Some(3), ..KeyLimits::default() })).unwrap();
        let doc = parsed(&out);
        assert_eq!(key(&doc, "e2e")["rpm"].as_u64(), Some(3));
        assert_eq!(doc["listen"].as_str(), Some("127.0.0.1:1"));
        let flow = "# mine\nauth: {api_keys: [{name: e2e, key: k}]}\n";
        assert!(matches!(apply(flow, "e2e", &Change::Enabled(false)), Err(KeysFileError::NotEditable)));
    }
}
