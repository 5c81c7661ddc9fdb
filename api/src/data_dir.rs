//! The data directory's permissions: it holds every message, password hash and session of the
//! cluster (and a single node's JWT key), so only the node's own user may read it.
//!
//! The root fix is the process umask (`parley serve` sets 0o077 at start, `src/serve.rs`):
//! sled creates its files itself, with the default mode, so only the umask reaches them.
//! Here, independent of any umask: the directory is created 0700, and at start everything
//! already in it is made 0600 (files) and 0700 (directories), which also tightens a data dir
//! created by an earlier version.

use std::io;
use std::path::Path;

/// Mode of every file in the data dir.
pub const FILE_MODE: u32 = 0o600;
/// Mode of the data dir and every directory in it.
pub const DIR_MODE: u32 = 0o700;

/// Creates the data dir (and missing parents) as 0700; an existing one is left as it is here
/// and tightened by [`restrict`].
pub fn create(path: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(DIR_MODE);
    }
    builder.create(path)
}

/// Makes everything under `path` (itself included) owner-only. Symlinks are not followed.
pub fn restrict(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::symlink_metadata(path)?;
        if meta.file_type().is_symlink() {
            return Ok(());
        }
        let mode = if meta.is_dir() { DIR_MODE } else { FILE_MODE };
        if meta.permissions().mode() & 0o777 != mode {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(path)? {
                restrict(&entry?.path())?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn restrict_makes_files_0600_and_dirs_0700() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        create(&dir).unwrap();
        std::fs::create_dir(dir.join("db")).unwrap();
        std::fs::set_permissions(dir.join("db"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.join("db/conf"), b"x").unwrap();
        std::fs::set_permissions(dir.join("db/conf"), std::fs::Permissions::from_mode(0o644)).unwrap();
        restrict(&dir).unwrap();
        assert_eq!(mode(&dir), DIR_MODE);
        assert_eq!(mode(&dir.join("db")), DIR_MODE);
        assert_eq!(mode(&dir.join("db/conf")), FILE_MODE);
    }
}
