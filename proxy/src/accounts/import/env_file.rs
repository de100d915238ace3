//! The env file imported refresh tokens go to (`--tokens env`, the default): `NAME=token` lines that
//! systemd's `EnvironmentFile=` and a shell's `set -a; . file` both read, with accounts.yaml naming each
//! variable in `refresh_token_env:`. Written atomically and mode 0600: it holds every imported credential.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum EnvFileError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{email}: the refresh token has characters an env file cannot hold unquoted; import it with --tokens inline")]
    Unsafe { email: String },
}

/// The variable an account's token is stored under: `LEVITATE_REFRESH_TOKEN_` and the email in upper case
/// with every other character as `_` (`a.b@x.com` → `LEVITATE_REFRESH_TOKEN_A_B_X_COM`).
pub fn variable_for(email: &str) -> String {
    let tail: String = email
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' })
        .collect();
    format!("LEVITATE_REFRESH_TOKEN_{tail}")
}

/// Google refresh tokens are `1//` and URL-safe base64; anything else (quotes, spaces, `$`, `#`) would be
/// read differently by systemd and by a shell, so it is refused rather than quoted one way.
fn is_plain(token: &str) -> bool {
    !token.is_empty() && token.chars().all(|c| c.is_ascii_alphanumeric() || "-_./+=~:".contains(c))
}

/// The env file's text with `entries` (variable, token) set: a line for an existing variable is replaced in
/// place, new ones are appended; comments and other lines are kept.
pub fn merged(existing: &str, entries: &[(String, String, String)]) -> Result<String, EnvFileError> {
    for (email, _, token) in entries {
        if !is_plain(token) {
            return Err(EnvFileError::Unsafe { email: email.clone() });
        }
    }
    let mut lines: Vec<String> = existing.lines().map(str::to_string).collect();
    for (_, name, token) in entries {
        let line = format!("{name}={token}");
        let prefix = format!("{name}=");
        match lines
            .iter_mut()
            .find(|l| l.trim_start().strip_prefix("export ").unwrap_or(l.trim_start()).starts_with(&prefix))
        {
            Some(existing) => *existing = line,
            None => lines.push(line),
        }
    }
    let mut text = lines.join("\n");
    text.push('\n');
    Ok(text)
}

/// Sets `entries` (email, variable, token) in the env file at `path`, creating it; always leaves it 0600.
pub fn write(path: &Path, entries: &[(String, String, String)]) -> Result<(), EnvFileError> {
    let io = |source| EnvFileError::Io { path: path.display().to_string(), source };
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io(e)),
    };
    let text = merged(&existing, entries)?;
    crate::atomic_file::replace(path, text.as_bytes(), 0o600).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_names_are_shell_names() {
        assert_eq!(variable_for("Ann.Lee+work@x-y.com"), "LEVITATE_REFRESH_TOKEN_ANN_LEE_WORK_X_Y_COM");
    }

    #[test]
    fn merge_replaces_a_variable_and_keeps_the_rest() {
        let existing = "# mine\nLEVITATE_API_KEY=k\nLEVITATE_REFRESH_TOKEN_A_X=old\n";
        let entries = [
            ("a@x".to_string(), "LEVITATE_REFRESH_TOKEN_A_X".to_string(), "1//new".to_string()),
            ("b@x".to_string(), "LEVITATE_REFRESH_TOKEN_B_X".to_string(), "1//b".to_string()),
        ];
        assert_eq!(
            merged(existing, &entries).unwrap(),
            "# mine\nLEVITATE_API_KEY=k\nLEVITATE_REFRESH_TOKEN_A_X=1//new\nLEVITATE_REFRESH_TOKEN_B_X=1//b\n"
        );
        let bad = [("c@x".to_string(), "V".to_string(), "a b'$".to_string())];
        assert!(matches!(merged("", &bad), Err(EnvFileError::Unsafe { .. })));
    }

    #[test]
    fn the_file_is_private() {
        let dir = std::env::temp_dir().join(format!("levitate-import-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("accounts.env");
        std::fs::write(&path, "X=1\n").unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        write(&path, &[("a@x".into(), "V".into(), "1//t".into())]).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "X=1\nV=1//t\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
