//! `levitate accounts import --from FORMAT PATH`: moves the accounts of another gateway into accounts.yaml.
//!
//! All or nothing on input: every file is read and every entry understood before anything is written, so a
//! malformed export changes nothing. Then accounts already in accounts.yaml (by email) are passed over, each
//! remaining refresh token is tried with one refresh (unless `--no-validate`; a token Google refuses is
//! reported and left out), and the rest are written: tokens to an env file (default, mode 0600, with
//! `refresh_token_env:` in accounts.yaml) or inline (accounts.yaml then mode 0600). accounts.yaml is edited
//! through [`AccountsFile::edit`], the same locked, atomic, comment-keeping writer `accounts login` uses, so
//! a running service reloads the result.

pub mod env_file;
pub mod formats;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_yaml::Mapping;

use crate::accounts::credentials::Credentials;
use crate::accounts::file::{AccountsFile, AccountsFileError};
use crate::config::{AccountSpec, Secret, Snapshot};
use formats::{Candidate, Format, FormatError};

/// Where imported refresh tokens are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TokenStorage {
    /// In an env file, named from accounts.yaml by `refresh_token_env:`.
    Env,
    /// In accounts.yaml itself (`refresh_token:`).
    Inline,
}

/// `levitate accounts import`'s arguments.
#[derive(clap::Args)]
pub struct ImportArgs {
    /// The tool the export comes from.
    #[arg(long = "from", value_enum)]
    pub format: Format,
    /// The export file, or a folder of them.
    pub path: PathBuf,
    /// Where the refresh tokens go.
    #[arg(long, value_enum, default_value = "env")]
    pub tokens: TokenStorage,
    /// The env file for `--tokens env` (default: accounts.env beside accounts.yaml).
    #[arg(long)]
    pub env_file: Option<PathBuf>,
    /// Import without trying each token with one refresh.
    #[arg(long)]
    pub no_validate: bool,
    #[arg(short, long, default_value = "conf/levitate.yaml")]
    pub config: PathBuf,
}

/// Runs the command, printing what happened; fails when the input is refused or a token did not validate
/// (the valid ones are imported all the same).
pub async fn command(snapshot: &Snapshot, args: &ImportArgs) -> std::process::ExitCode {
    let options = ImportOptions {
        format: args.format,
        path: args.path.clone(),
        tokens: args.tokens,
        env_file: args.env_file.clone(),
        validate: !args.no_validate,
    };
    match run(snapshot, &options, &mut std::io::stdout()).await {
        Ok(done) => {
            println!(
                "{} imported, {} skipped, {} not imported",
                done.imported.len(),
                done.skipped.len(),
                done.failed.len()
            );
            if done.failed.is_empty() {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("levitate accounts import: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

pub struct ImportOptions {
    pub format: Format,
    /// A file, or a folder whose `*.json` files are all read.
    pub path: PathBuf,
    pub tokens: TokenStorage,
    /// Default: `accounts.env` beside accounts.yaml.
    pub env_file: Option<PathBuf>,
    pub validate: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: not JSON: {message}")]
    Json { path: String, message: String },
    #[error("{0}")]
    Format(#[from] FormatError),
    #[error("{path}: no *.json file in this folder")]
    EmptyFolder { path: String },
    #[error("no OAuth client secret to validate the tokens with: set the variable named by upstream.oauth_client_secret_env, or pass --no-validate")]
    NoClientSecret,
    #[error("{0}")]
    EnvFile(#[from] env_file::EnvFileError),
    #[error("{0}")]
    File(#[from] AccountsFileError),
    #[error("{0}")]
    Runtime(String),
}

/// How an import ended, for the exit status and the closing line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub imported: Vec<String>,
    pub skipped: Vec<String>,
    pub failed: Vec<String>,
}

/// The files to read: `path` itself, or the `*.json` files in it (sorted, so entries are reported in a
/// stable order), and whether they came from a folder.
fn input_files(path: &Path) -> Result<(Vec<PathBuf>, bool), ImportError> {
    let read = |source| ImportError::Read { path: path.display().to_string(), source };
    if !std::fs::metadata(path).map_err(read)?.is_dir() {
        return Ok((vec![path.to_path_buf()], false));
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(read)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ImportError::EmptyFolder { path: path.display().to_string() });
    }
    Ok((files, true))
}

/// Reads and understands every input file; the first malformed file or entry ends the import.
pub fn read_candidates(format: Format, path: &Path) -> Result<(Vec<Candidate>, Vec<String>), ImportError> {
    let (files, in_folder) = input_files(path)?;
    let mut candidates = Vec::new();
    let mut notes = Vec::new();
    for file in files {
        let name = file.display().to_string();
        let text = std::fs::read_to_string(&file)
            .map_err(|source| ImportError::Read { path: name.clone(), source })?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| ImportError::Json { path: name.clone(), message: e.to_string() })?;
        let parsed = formats::parse(format, &name, &json, in_folder)?;
        candidates.extend(parsed.candidates);
        notes.extend(parsed.notes);
    }
    Ok((candidates, notes))
}

/// Splits `candidates` into those to import and lines about the rest: an email seen earlier in the input,
/// or already in accounts.yaml.
pub fn new_accounts(
    candidates: Vec<Candidate>,
    file: &AccountsFile,
) -> Result<(Vec<Candidate>, Vec<String>), AccountsFileError> {
    let mut fresh: Vec<Candidate> = Vec::new();
    let mut skipped = Vec::new();
    for candidate in candidates {
        if file.contains(&candidate.email)? {
            skipped
                .push(format!("{}: skipped {}: already in accounts.yaml", candidate.origin, candidate.email));
        } else if let Some(first) = fresh.iter().find(|c| c.email.eq_ignore_ascii_case(&candidate.email)) {
            skipped.push(format!(
                "{}: skipped {}: already imported from {}",
                candidate.origin, candidate.email, first.origin
            ));
        } else {
            fresh.push(candidate);
        }
    }
    Ok((fresh, skipped))
}

/// Tries each token with one refresh at the configured token endpoint; returns the ones that worked and a
/// line per one that did not.
async fn validated(
    snapshot: &Snapshot,
    candidates: Vec<Candidate>,
) -> Result<(Vec<Candidate>, Vec<String>), ImportError> {
    let settings = &snapshot.upstream;
    let upstream = Arc::new(crate::upstream::Upstream::new(settings.connect_timeout, settings.read_timeout));
    let store = crate::store::Store::temporary().map_err(|e| ImportError::Runtime(e.to_string()))?;
    let credentials = Credentials::new(upstream, store);
    let mut good = Vec::new();
    let mut failed = Vec::new();
    for candidate in candidates {
        let spec = AccountSpec {
            id: candidate.email.to_ascii_lowercase(),
            email: candidate.email.clone(),
            refresh_token: Secret::new(candidate.refresh_token.clone()),
            project_id: candidate.project_id.clone(),
            tier: candidate.tier.clone(),
            enabled: true,
            max_concurrent: 1,
            // The validating refresh leaves through `upstream.proxy`, as the account's calls will.
            egress: settings.proxy.clone(),
            pacing: Default::default(),
        };
        match credentials.access_token(&spec, settings).await {
            Ok(_) => good.push(candidate),
            Err(e) => failed.push(format!("{}: not imported: {e}", candidate.origin)),
        }
    }
    Ok((good, failed))
}

/// The accounts.yaml entry of an imported account; `token_env` names its variable in env mode.
fn entry(candidate: &Candidate, token_env: Option<&str>) -> Mapping {
    let mut entry = Mapping::new();
    entry.insert("email".into(), candidate.email.as_str().into());
    match token_env {
        Some(name) => entry.insert("refresh_token_env".into(), name.into()),
        None => entry.insert("refresh_token".into(), candidate.refresh_token.as_str().into()),
    };
    if let Some(p) = &candidate.project_id {
        entry.insert("project_id".into(), p.as_str().into());
    }
    if let Some(t) = &candidate.tier {
        entry.insert("tier".into(), t.as_str().into());
    }
    if !candidate.enabled {
        entry.insert("enabled".into(), false.into());
    }
    entry
}

/// The whole import; progress lines go to `out`. Tokens are never printed.
pub async fn run(
    snapshot: &Snapshot,
    options: &ImportOptions,
    out: &mut (dyn Write + Send),
) -> Result<Summary, ImportError> {
    if options.validate && snapshot.upstream.oauth_client_secret.is_empty() {
        return Err(ImportError::NoClientSecret);
    }
    let accounts_path = &snapshot.paths.accounts;
    let (candidates, notes) = read_candidates(options.format, &options.path)?;
    for note in &notes {
        let _ = writeln!(out, "warning: {note}");
    }
    let existing = AccountsFile::read(accounts_path)?;
    let (fresh, mut skipped) = new_accounts(candidates, &existing)?;
    let (fresh, failed) =
        if options.validate { validated(snapshot, fresh).await? } else { (fresh, Vec::new()) };
    let mut summary = Summary { failed, ..Summary::default() };
    if !fresh.is_empty() {
        let (env, variables) = match options.tokens {
            TokenStorage::Inline => {
                make_private(accounts_path)?;
                (None, vec![None; fresh.len()])
            }
            TokenStorage::Env => {
                let path = options.env_file.clone().unwrap_or_else(|| beside(accounts_path, "accounts.env"));
                let names = variables(&fresh, &existing)?;
                let entries: Vec<(String, String, String)> = fresh
                    .iter()
                    .zip(&names)
                    .map(|(c, name)| (c.email.clone(), name.clone(), c.refresh_token.clone()))
                    .collect();
                // The tokens first: accounts.yaml never names a variable the env file lacks.
                env_file::write(&path, &entries)?;
                (Some(path), names.into_iter().map(Some).collect())
            }
        };
        let written = AccountsFile::edit(accounts_path, |file| {
            let mut written = Vec::new();
            for (candidate, variable) in fresh.iter().zip(&variables) {
                // Another writer may have added it since the check above: pass over, not fail.
                if file.contains(&candidate.email)? {
                    skipped.push(format!(
                        "{}: skipped {}: already in accounts.yaml",
                        candidate.origin, candidate.email
                    ));
                    continue;
                }
                file.add_entry(entry(candidate, variable.as_deref()))?;
                written.push(candidate);
            }
            Ok(written.into_iter().cloned().collect::<Vec<_>>())
        })?;
        for candidate in &written {
            let project = candidate.project_id.as_deref().unwrap_or("discovered on first use");
            let state = if candidate.enabled { "" } else { ", disabled as in the export" };
            let _ = writeln!(
                out,
                "{}: imported {} (project {project}{state})",
                candidate.origin, candidate.email
            );
            summary.imported.push(candidate.email.clone());
        }
        if let (Some(path), false) = (&env, written.is_empty()) {
            let _ = writeln!(
                out,
                "refresh tokens written to {} (mode 0600): load it into levitate's environment (systemd: \
                 EnvironmentFile=) and restart it, since a reload does not re-read the environment",
                path.display()
            );
        }
    }
    for line in &skipped {
        let _ = writeln!(out, "{line}");
    }
    for line in &summary.failed {
        let _ = writeln!(out, "{line}");
    }
    summary.skipped = skipped;
    Ok(summary)
}

/// The env variable of each new account: [`env_file::variable_for`] its email, with `_2`, `_3`, … when that
/// name is taken by an account already in accounts.yaml or by an earlier one of this import (`a.b@x` and
/// `a_b@x` share a name), so an import never overwrites another account's token.
fn variables(fresh: &[Candidate], existing: &AccountsFile) -> Result<Vec<String>, AccountsFileError> {
    let mut taken: std::collections::HashSet<String> = existing
        .accounts()?
        .iter()
        .filter_map(|a| a.get("refresh_token_env").and_then(serde_yaml::Value::as_str).map(str::to_string))
        .collect();
    let mut names = Vec::with_capacity(fresh.len());
    for candidate in fresh {
        let base = env_file::variable_for(&candidate.email);
        let mut name = base.clone();
        let mut n = 1;
        while taken.contains(&name) {
            n += 1;
            name = format!("{base}_{n}");
        }
        taken.insert(name.clone());
        names.push(name);
    }
    Ok(names)
}

/// `name` in the folder of `path`.
fn beside(path: &Path, name: &str) -> PathBuf {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).join(name)
}

/// Inline tokens make accounts.yaml a credential store: 0600 before the edit, whose atomic write keeps the
/// file's mode.
fn make_private(path: &Path) -> Result<(), ImportError> {
    match std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(AccountsFileError::Io { path: path.display().to_string(), source: e }.into())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/import");

    /// A configuration folder whose accounts.yaml is `accounts`.
    fn config(name: &str, accounts: &str) -> (PathBuf, Snapshot) {
        let dir = std::env::temp_dir().join(format!("levitate-import-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let write = |file: &str, text: &str| std::fs::write(dir.join(file), text).unwrap();
        write(
            "levitate.yaml",
            "listen: 127.0.0.1:9000\nauth:\n  api_keys:\n    - { name: default, key: k }\n",
        );
        write("accounts.yaml", accounts);
        write("routes.yaml", "aliases: {}\n");
        // As the command loads it: an unset variable reads as empty.
        let snapshot = Snapshot::load_with_env(&dir.join("levitate.yaml"), &Vars(Vec::new())).unwrap();
        (dir, snapshot)
    }

    fn options(format: Format, path: PathBuf, tokens: TokenStorage) -> ImportOptions {
        ImportOptions { format, path, tokens, env_file: None, validate: false }
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// An environment with these variables; any other reads as empty, as `levitate accounts` commands read it.
    struct Vars(Vec<(String, String)>);
    impl crate::config::Env for Vars {
        fn var(&self, name: &str) -> Option<String> {
            Some(self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap_or_default())
        }
    }

    #[tokio::test]
    async fn a_cliproxyapi_folder_goes_to_the_env_file_and_skips_a_present_account() {
        let existing = "# my accounts\naccounts:\n  - email: CPA.one@sim.local\n    refresh_token: r1\n";
        let (dir, snapshot) = config("cpa", existing);
        let options =
            options(Format::Cliproxyapi, format!("{FIXTURES}/cliproxyapi").into(), TokenStorage::Env);
        let mut out = Vec::new();
        let summary = run(&snapshot, &options, &mut out).await.unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(summary.imported, ["cpa.off@sim.local"]);
        assert_eq!(summary.skipped.len(), 1, "{out}");
        assert!(out.contains("skipped cpa.one@sim.local: already in accounts.yaml"), "{out}");
        assert!(out.contains("warning: ") && out.contains("favourite_colour"), "{out}");
        assert!(out.contains("passed over: an auth file of type gemini"), "{out}");
        assert!(!out.contains("1//import"), "no token is printed: {out}");

        let env_path = dir.join("accounts.env");
        assert_eq!(mode(&env_path), 0o600);
        assert_eq!(
            std::fs::read_to_string(&env_path).unwrap(),
            "LEVITATE_REFRESH_TOKEN_CPA_OFF_SIM_LOCAL=1//import-cpa-off\n"
        );
        let yaml = std::fs::read_to_string(dir.join("accounts.yaml")).unwrap();
        assert!(yaml.starts_with("# my accounts\n"), "{yaml}");
        assert!(
            yaml.ends_with(
                "  - email: cpa.off@sim.local\n    refresh_token_env: LEVITATE_REFRESH_TOKEN_CPA_OFF_SIM_LOCAL\n    enabled: false\n"
            ),
            "{yaml}"
        );
        // The result is a configuration Levitate loads, with the token from the env file.
        let env = Vars(vec![("LEVITATE_REFRESH_TOKEN_CPA_OFF_SIM_LOCAL".into(), "1//import-cpa-off".into())]);
        let loaded = Snapshot::load_with_env(&dir.join("levitate.yaml"), &env).unwrap();
        let off = loaded.accounts.iter().find(|a| a.email == "cpa.off@sim.local").unwrap();
        assert_eq!((off.refresh_token.expose(), off.enabled), ("1//import-cpa-off", false));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn inline_tokens_make_accounts_yaml_private() {
        let (dir, snapshot) = config("acp", "accounts: []\n");
        let accounts = dir.join("accounts.yaml");
        std::fs::set_permissions(&accounts, std::fs::Permissions::from_mode(0o644)).unwrap();
        let file = format!("{FIXTURES}/antigravity-claude-proxy-accounts.json").into();
        let summary = run(
            &snapshot,
            &options(Format::AntigravityClaudeProxy, file, TokenStorage::Inline),
            &mut Vec::new(),
        )
        .await
        .unwrap();
        assert_eq!(summary.imported, ["acp.one@sim.local", "acp.two@sim.local"]);
        assert_eq!(mode(&accounts), 0o600);
        assert!(!dir.join("accounts.env").exists());
        let loaded = Snapshot::load(&dir.join("levitate.yaml")).unwrap();
        let got: Vec<_> = loaded
            .accounts
            .iter()
            .map(|a| (a.email.as_str(), a.refresh_token.expose(), a.project_id.as_deref(), a.enabled))
            .collect();
        assert_eq!(
            got,
            [
                ("acp.one@sim.local", "1//import-acp-one", Some("acp-managed-1"), true),
                ("acp.two@sim.local", "1//import-acp-two", Some("acp-legacy-2"), false)
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_malformed_file_writes_nothing() {
        let (dir, snapshot) = config("malformed", "accounts: []\n");
        let input = dir.join("export");
        std::fs::create_dir_all(&input).unwrap();
        std::fs::write(input.join("a.json"), r#"[{"email": "a@x", "refresh_token": "1//a"}]"#).unwrap();
        std::fs::write(
            input.join("b.json"),
            r#"[{"email": "b@x", "refresh_token": "1//b"}, {"email": "c@x"}]"#,
        )
        .unwrap();
        let e = run(
            &snapshot,
            &options(Format::AntigravityManager, input.clone(), TokenStorage::Env),
            &mut Vec::new(),
        )
        .await
        .unwrap_err();
        assert!(
            e.to_string().starts_with(&format!("{}#1: no refresh_token", input.join("b.json").display())),
            "{e}"
        );
        std::fs::write(input.join("b.json"), "{not json").unwrap();
        let e =
            run(&snapshot, &options(Format::AntigravityManager, input, TokenStorage::Env), &mut Vec::new())
                .await
                .unwrap_err();
        assert!(matches!(e, ImportError::Json { .. }), "{e}");
        assert_eq!(std::fs::read_to_string(dir.join("accounts.yaml")).unwrap(), "accounts: []\n");
        assert!(!dir.join("accounts.env").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_email_twice_in_the_input_is_imported_once() {
        let json = serde_json::json!([
            {"email": "a@x", "refresh_token": "1//a"},
            {"email": "A@X", "refresh_token": "1//a2"},
            {"email": "b@x", "refresh_token": "1//b"}
        ]);
        let parsed = formats::parse(Format::AntigravityManager, "am.json", &json, false).unwrap();
        let file = AccountsFile::read(Path::new("/nonexistent/accounts.yaml")).unwrap();
        let (fresh, skipped) = new_accounts(parsed.candidates, &file).unwrap();
        let emails: Vec<_> = fresh.iter().map(|c| c.email.as_str()).collect();
        assert_eq!(emails, ["a@x", "b@x"]);
        assert_eq!(skipped, ["am.json#1: skipped A@X: already imported from am.json#0"]);
    }

    #[tokio::test]
    async fn emails_that_share_a_variable_name_never_overwrite_each_others_token() {
        let existing =
            "accounts:\n  - email: a.b@x.com\n    refresh_token_env: LEVITATE_REFRESH_TOKEN_A_B_X_COM\n";
        let (dir, snapshot) = config("collide", existing);
        let env_path = dir.join("accounts.env");
        std::fs::write(&env_path, "LEVITATE_REFRESH_TOKEN_A_B_X_COM=1//theirs\n").unwrap();
        let export = dir.join("export.json");
        std::fs::write(
            &export,
            r#"[{"email": "a_b@x.com", "refresh_token": "1//one"}, {"email": "a-b@x.com", "refresh_token": "1//two"}]"#,
        )
        .unwrap();
        run(&snapshot, &options(Format::AntigravityManager, export, TokenStorage::Env), &mut Vec::new())
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&env_path).unwrap(),
            "LEVITATE_REFRESH_TOKEN_A_B_X_COM=1//theirs\nLEVITATE_REFRESH_TOKEN_A_B_X_COM_2=1//one\n\
             LEVITATE_REFRESH_TOKEN_A_B_X_COM_3=1//two\n"
        );
        let env = Vars(vec![
            ("LEVITATE_REFRESH_TOKEN_A_B_X_COM".into(), "1//theirs".into()),
            ("LEVITATE_REFRESH_TOKEN_A_B_X_COM_2".into(), "1//one".into()),
            ("LEVITATE_REFRESH_TOKEN_A_B_X_COM_3".into(), "1//two".into()),
        ]);
        let loaded = Snapshot::load_with_env(&dir.join("levitate.yaml"), &env).unwrap();
        let tokens: Vec<_> =
            loaded.accounts.iter().map(|a| (a.email.as_str(), a.refresh_token.expose())).collect();
        assert_eq!(tokens, [("a.b@x.com", "1//theirs"), ("a_b@x.com", "1//one"), ("a-b@x.com", "1//two")]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn validation_needs_the_client_secret() {
        let (dir, snapshot) = config("secret", "accounts: []\n");
        let mut options = options(
            Format::AntigravityManager,
            format!("{FIXTURES}/antigravity-manager-export.json").into(),
            TokenStorage::Env,
        );
        options.validate = true;
        let e = run(&snapshot, &options, &mut Vec::new()).await.unwrap_err();
        assert!(matches!(e, ImportError::NoClientSecret), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
