//! Edits of the user's accounts.yaml by `levitate accounts …` and `POST /admin/accounts/{email}/…`.
//!
//! The file is the operator's: edits keep its comments and layout where they can (a block-style list gets a
//! new item appended, an `enabled:` line changed, an item's lines removed) and every text edit is checked by
//! parsing the result and comparing it with the intended change; when that check fails (flow style, JSON),
//! the file is rewritten from its parsed form. Writes are atomic (temp file, fsync, rename, fsync of the
//! folder), so the running service's file watcher only ever sees a complete file.
//!
//! Several writers may edit at once (the admin API's enable/disable, `levitate accounts` in a shell, two
//! admin requests in parallel): [`AccountsFile::edit`] holds an exclusive `flock` on a lock file beside
//! accounts.yaml across read, change and write, so no writer's update is lost, and every write uses its own
//! temp file, so two writes never share one.

use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

#[derive(Debug, thiserror::Error)]
pub enum AccountsFileError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: not valid YAML: {message}")]
    Yaml { path: String, message: String },
    #[error("{path}: no account {email}")]
    NoSuchAccount { path: String, email: String },
    #[error("{path}: account {email} already exists")]
    Exists { path: String, email: String },
}

/// A new account as `levitate accounts login` writes it.
pub struct NewAccount<'a> {
    pub email: &'a str,
    pub refresh_token: &'a str,
    pub project_id: Option<&'a str>,
    pub tier: Option<&'a str>,
}

/// The accounts file, read once, edited in memory, written back atomically.
pub struct AccountsFile {
    path: std::path::PathBuf,
    text: String,
}

/// An exclusive lock on `.<accounts file>.lock` beside the file, released when dropped (the descriptor
/// closes). The lock file is never removed: removing it would let a writer lock a file nobody else opens.
struct EditLock {
    _file: std::fs::File,
}

impl EditLock {
    fn acquire(path: &Path) -> std::io::Result<EditLock> {
        let lock_path = sibling(path, "lock");
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true).create(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&lock_path)?;
        loop {
            // SAFETY: flock(2) on a descriptor this function owns; no memory is passed.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(EditLock { _file: file });
            }
            let error = std::io::Error::last_os_error();
            if error.kind() != std::io::ErrorKind::Interrupted {
                return Err(error);
            }
        }
    }
}

/// `.<name>.<suffix>` in the file's folder.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    folder.join(format!(".{name}.{suffix}"))
}

impl AccountsFile {
    /// Reads the file, applies `change`, and writes it back, all under the edit lock: the one way to
    /// change the file, so concurrent editors queue instead of overwriting each other's change. Nothing
    /// is written when `change` fails.
    pub fn edit<R>(
        path: &Path,
        change: impl FnOnce(&mut AccountsFile) -> Result<R, AccountsFileError>,
    ) -> Result<R, AccountsFileError> {
        let _lock = EditLock::acquire(path)
            .map_err(|source| AccountsFileError::Io { path: path.display().to_string(), source })?;
        let mut file = AccountsFile::read(path)?;
        let result = change(&mut file)?;
        file.write()?;
        Ok(result)
    }

    /// Reads the file; a missing file is an empty one (the first login creates it).
    pub fn read(path: &Path) -> Result<Self, AccountsFileError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(AccountsFileError::Io { path: path.display().to_string(), source }),
        };
        let file = AccountsFile { path: path.to_path_buf(), text };
        file.parsed()?;
        Ok(file)
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    fn err_yaml(&self, e: impl std::fmt::Display) -> AccountsFileError {
        AccountsFileError::Yaml { path: self.path.display().to_string(), message: e.to_string() }
    }

    fn parsed(&self) -> Result<Value, AccountsFileError> {
        if self.text.trim().is_empty() {
            return Ok(Value::Mapping(Mapping::new()));
        }
        serde_yaml::from_str(&self.text).map_err(|e| self.err_yaml(e))
    }

    /// The accounts as YAML values (email, enabled, tier, project_id; secrets never leave this module).
    pub fn accounts(&self) -> Result<Vec<Value>, AccountsFileError> {
        Ok(accounts_of(&self.parsed()?))
    }

    fn position(&self, email: &str) -> Result<usize, AccountsFileError> {
        self.accounts()?.iter().position(|a| same_email(a, email)).ok_or_else(|| {
            AccountsFileError::NoSuchAccount {
                path: self.path.display().to_string(),
                email: email.to_string(),
            }
        })
    }

    /// Appends an account (refusing a duplicate email).
    pub fn add(&mut self, account: &NewAccount<'_>) -> Result<(), AccountsFileError> {
        let mut entry = Mapping::new();
        entry.insert("email".into(), account.email.into());
        entry.insert("refresh_token".into(), account.refresh_token.into());
        if let Some(p) = account.project_id {
            entry.insert("project_id".into(), p.into());
        }
        if let Some(t) = account.tier {
            entry.insert("tier".into(), t.into());
        }
        self.add_entry(entry)
    }

    /// Whether an account with this email is in the file (compared as the pool does: trimmed, any case).
    pub fn contains(&self, email: &str) -> Result<bool, AccountsFileError> {
        Ok(self.accounts()?.iter().any(|a| same_email(a, email)))
    }

    /// Appends an entry with its `email` key first and any further keys of accounts.yaml (`levitate accounts
    /// import` writes `refresh_token_env` and `enabled`), refusing a duplicate email.
    pub fn add_entry(&mut self, entry: Mapping) -> Result<(), AccountsFileError> {
        let email = entry.get("email").and_then(Value::as_str).unwrap_or_default().to_string();
        if self.contains(&email)? {
            return Err(AccountsFileError::Exists { path: self.path.display().to_string(), email });
        }
        let mut expected = self.parsed()?;
        accounts_mut(&mut expected).push(Value::Mapping(entry.clone()));
        let edited = append_block_item(&self.text, &entry);
        self.settle(edited, expected)
    }

    /// Sets `enabled:` of one account.
    pub fn set_enabled(&mut self, email: &str, enabled: bool) -> Result<(), AccountsFileError> {
        let index = self.position(email)?;
        let mut expected = self.parsed()?;
        if let Some(Value::Mapping(m)) = accounts_mut(&mut expected).get_mut(index) {
            m.insert("enabled".into(), enabled.into());
        }
        let edited =
            item_lines(&self.text, index).and_then(|range| set_enabled_line(&self.text, range, enabled));
        self.settle(edited, expected)
    }

    /// Removes one account.
    pub fn remove(&mut self, email: &str) -> Result<(), AccountsFileError> {
        let index = self.position(email)?;
        let mut expected = self.parsed()?;
        accounts_mut(&mut expected).remove(index);
        let edited = item_lines(&self.text, index).map(|(start, end)| {
            let lines: Vec<&str> = self.text.split_inclusive('\n').collect();
            lines[..start].concat() + &lines[end..].concat()
        });
        self.settle(edited, expected)
    }

    /// Keeps a text edit if it parses to `expected`, else rewrites the file from `expected`.
    fn settle(&mut self, edited: Option<String>, expected: Value) -> Result<(), AccountsFileError> {
        if let Some(text) = edited {
            if serde_yaml::from_str::<Value>(&text).ok().as_ref() == Some(&expected) {
                self.text = text;
                return Ok(());
            }
        }
        self.text = serde_yaml::to_string(&expected).map_err(|e| self.err_yaml(e))?;
        Ok(())
    }

    /// Writes the file atomically: temp file beside it, fsync, rename over it, fsync the folder. Private: every
    /// write goes through [`edit`](Self::edit), under the lock.
    fn write(&self) -> Result<(), AccountsFileError> {
        let io = |source| AccountsFileError::Io { path: self.path.display().to_string(), source };
        // The file holds refresh tokens: private unless the operator chose otherwise.
        let mode = crate::atomic_file::mode_or(&self.path, 0o600);
        crate::atomic_file::replace(&self.path, self.text.as_bytes(), mode).map_err(io)
    }
}

fn accounts_of(doc: &Value) -> Vec<Value> {
    doc.get("accounts").and_then(Value::as_sequence).cloned().unwrap_or_default()
}

fn accounts_mut(doc: &mut Value) -> &mut Vec<Value> {
    if !doc.is_mapping() {
        *doc = Value::Mapping(Mapping::new());
    }
    let Value::Mapping(map) = doc else { unreachable!("made a mapping above") };
    let slot = map.entry("accounts".into()).or_insert_with(|| Value::Sequence(Vec::new()));
    if !slot.is_sequence() {
        *slot = Value::Sequence(Vec::new());
    }
    match slot {
        Value::Sequence(items) => items,
        _ => unreachable!("made a sequence above"),
    }
}

fn same_email(account: &Value, email: &str) -> bool {
    account.get("email").and_then(Value::as_str).is_some_and(|e| e.trim().eq_ignore_ascii_case(email.trim()))
}

/// Indentation of the block-style items under a top-level `accounts:` key, and the line index of that key.
fn block_list(text: &str) -> Option<(usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let key = lines.iter().position(|l| l.trim_end() == "accounts:")?;
    let first = lines[key + 1..].iter().find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))?;
    let indent: String = first.chars().take_while(|c| *c == ' ').collect();
    first[indent.len()..].starts_with("- ").then_some((key, indent))
}

/// The line range `[start, end)` of the `index`-th item of a block-style accounts list.
fn item_lines(text: &str, index: usize) -> Option<(usize, usize)> {
    let (key, indent) = block_list(text)?;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let item_start = format!("{indent}- ");
    let mut starts = Vec::new();
    let mut end_of_list = lines.len();
    for (i, line) in lines.iter().enumerate().skip(key + 1) {
        let content = line.trim_end_matches(['\n', '\r']);
        if content.trim().is_empty() || content.trim_start().starts_with('#') {
            continue;
        }
        if content.starts_with(&item_start) {
            starts.push(i);
        } else if content.len() - content.trim_start().len() <= indent.len() {
            end_of_list = i;
            break;
        }
    }
    let start = *starts.get(index)?;
    let mut end = starts.get(index + 1).copied().unwrap_or(end_of_list);
    // Trailing blank and comment lines belong to whatever follows.
    while end > start + 1 && {
        let l = lines[end - 1].trim();
        l.is_empty() || l.starts_with('#')
    } {
        end -= 1;
    }
    Some((start, end))
}

fn set_enabled_line(text: &str, (start, end): (usize, usize), enabled: bool) -> Option<String> {
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
    let value = if enabled { "true" } else { "false" };
    for line in &mut lines[start..end] {
        let body = line.trim_start().trim_start_matches("- ");
        if body.starts_with("enabled:") {
            let at = line.find("enabled:")?;
            let newline = if line.ends_with('\n') { "\n" } else { "" };
            *line = format!("{}enabled: {value}{newline}", &line[..at]);
            return Some(lines.concat());
        }
    }
    let first = lines[start].clone();
    let dash = first.find("- ")?;
    if first[dash + 2..].trim_start().starts_with('{') {
        return None; // flow mapping: let the rewrite handle it
    }
    let field_indent = " ".repeat(dash + 2);
    let insert = format!("{field_indent}enabled: {value}\n");
    if !first.ends_with('\n') {
        lines[start].push('\n');
    }
    lines.insert(start + 1, insert);
    Some(lines.concat())
}

fn append_block_item(text: &str, entry: &Mapping) -> Option<String> {
    let (_, indent) = block_list(text)?;
    let (start, end) = {
        let count = accounts_of(&serde_yaml::from_str(text).ok()?).len();
        item_lines(text, count.checked_sub(1)?)?
    };
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut item = String::new();
    for (i, (k, v)) in entry.iter().enumerate() {
        let key = k.as_str()?;
        let value = serde_yaml::to_string(v).ok()?;
        let prefix = if i == 0 { format!("{indent}- ") } else { format!("{indent}  ") };
        item.push_str(&format!("{prefix}{key}: {}\n", value.trim_end()));
    }
    let _ = start;
    let mut before = lines[..end].concat();
    if !before.ends_with('\n') {
        before.push('\n');
    }
    Some(before + &item + &lines[end..].concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMENTED: &str = "# my accounts\naccounts:\n  # the main one\n  - email: a@x.com\n    refresh_token_env: TOKEN_A   # from the env file\n    tier: g1-pro-tier\n\n  - email: b@x.com\n    refresh_token: r-b\n\n# trailing note\n";

    fn file(text: &str) -> AccountsFile {
        AccountsFile { path: "accounts.yaml".into(), text: text.to_string() }
    }

    fn emails(f: &AccountsFile) -> Vec<String> {
        f.accounts().unwrap().iter().map(|a| a["email"].as_str().unwrap().to_string()).collect()
    }

    #[test]
    fn append_keeps_comments() {
        let mut f = file(COMMENTED);
        f.add(&NewAccount { email: "c@x.com", refresh_token: "r-c", project_id: Some("p-c"), tier: None })
            .unwrap();
        assert_eq!(emails(&f), ["a@x.com", "b@x.com", "c@x.com"]);
        assert!(
            f.text().contains("# the main one") && f.text().contains("# from the env file"),
            "{}",
            f.text()
        );
        assert!(f.text().contains("# trailing note"), "{}", f.text());
        assert!(
            f.text().contains("  - email: c@x.com\n    refresh_token: r-c\n    project_id: p-c\n"),
            "{}",
            f.text()
        );
        let dup = NewAccount { email: "A@X.com", refresh_token: "r", project_id: None, tier: None };
        assert!(matches!(f.add(&dup), Err(AccountsFileError::Exists { .. })));
    }

    #[test]
    fn disable_and_remove_keep_comments() {
        let mut f = file(COMMENTED);
        f.set_enabled("b@x.com", false).unwrap();
        assert!(f.text().contains("  - email: b@x.com\n    enabled: false\n"), "{}", f.text());
        f.set_enabled("b@x.com", true).unwrap();
        assert!(f.text().contains("    enabled: true\n"), "{}", f.text());
        f.remove("a@x.com").unwrap();
        assert_eq!(emails(&f), ["b@x.com"]);
        assert!(f.text().contains("# my accounts") && f.text().contains("# trailing note"), "{}", f.text());
        assert!(matches!(f.remove("zz@x.com"), Err(AccountsFileError::NoSuchAccount { .. })));
    }

    #[test]
    fn json_and_flow_files_are_rewritten_correctly() {
        let mut f = file("{\"accounts\": [{\"email\": \"a@x.com\", \"refresh_token\": \"r\"}]}\n");
        f.set_enabled("a@x.com", false).unwrap();
        f.add(&NewAccount {
            email: "b@x.com",
            refresh_token: "r2",
            project_id: None,
            tier: Some("free-tier"),
        })
        .unwrap();
        let accounts = f.accounts().unwrap();
        assert_eq!(accounts[0]["enabled"], Value::Bool(false));
        assert_eq!(accounts[1]["tier"].as_str(), Some("free-tier"));
        let mut empty = file("");
        empty
            .add(&NewAccount { email: "a@x.com", refresh_token: "r", project_id: None, tier: None })
            .unwrap();
        assert_eq!(emails(&empty), ["a@x.com"]);
    }

    #[test]
    fn writes_atomically_and_privately() {
        let dir = std::env::temp_dir().join(format!("levitate-accounts-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("accounts.yaml");
        let _ = std::fs::remove_file(&path);
        let mut f = AccountsFile::read(&path).unwrap();
        f.add(&NewAccount { email: "a@x.com", refresh_token: "r", project_id: None, tier: None }).unwrap();
        f.write().unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(emails(&AccountsFile::read(&path).unwrap()), ["a@x.com"]);
        let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()).collect();
        assert_eq!(leftovers.len(), 1, "no temp file left behind");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Eight writers each add ten accounts, read-modify-write at once: none of the eighty adds is lost and
    /// the file always parses.
    #[test]
    fn concurrent_editors_lose_no_update() {
        let dir = std::env::temp_dir().join(format!("levitate-accounts-concurrent-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("accounts.yaml");
        std::fs::write(
            &path,
            "# the operator's comment\naccounts:\n  - email: first@x.com\n    refresh_token: r\n",
        )
        .unwrap();
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let (path, barrier) = (path.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    for i in 0..10 {
                        let email = format!("w{w}-{i}@x.com");
                        AccountsFile::edit(&path, |file| {
                            file.add(&NewAccount {
                                email: &email,
                                refresh_token: "r",
                                project_id: None,
                                tier: None,
                            })
                        })
                        .unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        let file = AccountsFile::read(&path).unwrap();
        assert_eq!(emails(&file).len(), 81, "every add survived");
        assert!(file.text().starts_with("# the operator's comment"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
