//! Replacing a file the operator owns (accounts.yaml, levitate.yaml, an env file of refresh tokens) so that
//! a crash or a full disk never leaves it half-written: a temp file beside it, written and fsynced, renamed
//! over it, then the folder fsynced so the rename itself survives a power cut.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Temp-file names stay unique across threads of one process.
static WRITES: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` atomically with permission bits `mode` (e.g. `0o600` for files holding secrets).
/// The temp file is removed when anything fails, and `path` is then untouched.
pub fn replace(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let write = WRITES.fetch_add(1, Ordering::Relaxed);
    let temp = folder.join(format!(".{name}.levitate-{}-{write}", std::process::id()));
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
        let mut file = options.open(&temp)?;
        // A temp file left by an earlier crash keeps its mode: make sure it has `mode` before writing.
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        std::fs::File::open(folder)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// The permission bits of an existing file, or `default` when it does not exist (or cannot be read).
pub fn mode_or(path: &Path, default: u32) -> u32 {
    std::fs::metadata(path)
        .map_or(default, |m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn folder(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("levitate-atomic-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn replaces_the_file_with_the_mode_and_leaves_no_temp_file() {
        let dir = folder("replace");
        let path = dir.join("accounts.yaml");
        std::fs::write(&path, "old").unwrap();
        replace(&path, b"new", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(mode_or(&path, 0o644), 0o600);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no temp file left");
    }

    #[test]
    fn a_failed_write_leaves_the_file_untouched() {
        let path = folder("fail").join("gone").join("levitate.yaml");
        assert!(replace(&path, b"new", 0o600).is_err());
        assert_eq!(mode_or(&path, 0o640), 0o640);
    }
}
