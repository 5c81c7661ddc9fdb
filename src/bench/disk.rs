//! What a server's data dir holds on disk: the sum of the file sizes under its `db/` (journal
//! and projections) and `raft/` (the raft log), walked from the file system.
//!
//! File sizes, not allocated blocks: sled grows its files by writing, so the sizes are what the
//! store has written out; they are also what a copy or a backup of the dir would move. The
//! bench reads the dirs of servers it does not own while they write: files may appear or vanish
//! during a walk (sled's temporary and snapshot files), and those are skipped, not errors.

use std::io;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// Bytes under `db/` and `raft/`, summed over one or more data dirs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskUse {
    pub db: u64,
    pub raft: u64,
}

impl DiskUse {
    pub fn total(&self) -> u64 {
        self.db + self.raft
    }

    pub fn to_json(self) -> Value {
        json!({"db": self.db, "raft": self.raft, "total": self.total()})
    }
}

/// The data dirs of the servers under test (one per target).
#[derive(Debug, Clone)]
pub struct DataDirs(Vec<PathBuf>);

impl DataDirs {
    /// Fails unless every dir looks like a Parley data dir (has `db/`): a typo would otherwise
    /// measure zero bytes per message.
    pub fn new(dirs: &[PathBuf]) -> Result<DataDirs, String> {
        for d in dirs {
            if !d.join("db").is_dir() {
                return Err(format!("--data-dir {}: no db/ in it (not a parley data dir?)", d.display()));
            }
        }
        Ok(DataDirs(dirs.to_vec()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The sizes now, summed over the dirs.
    pub fn measure(&self) -> Result<DiskUse, String> {
        let mut sum = DiskUse::default();
        for d in &self.0 {
            let one = measure_one(d)?;
            sum.db += one.db;
            sum.raft += one.raft;
        }
        Ok(sum)
    }
}

fn measure_one(dir: &Path) -> Result<DiskUse, String> {
    let walk = |sub: &str| {
        let p = dir.join(sub);
        tree_bytes(&p).map_err(|e| format!("cannot measure {}: {e}", p.display()))
    };
    Ok(DiskUse { db: walk("db")?, raft: walk("raft")? })
}

/// The sum of the sizes of the regular files under `path` (0 when it does not exist);
/// symbolic links are not followed.
pub fn tree_bytes(path: &Path) -> io::Result<u64> {
    let mut total = 0;
    let mut pending = vec![path.to_path_buf()];
    while let Some(p) = pending.pop() {
        let meta = match std::fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if meta.is_file() {
            total += meta.len();
        } else if meta.is_dir() {
            let entries = match std::fs::read_dir(&p) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for entry in entries {
                match entry {
                    Ok(entry) => pending.push(entry.path()),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_files_in_db_and_raft_and_refuses_a_dir_without_db() {
        let root = tempfile::tempdir().expect("temp dir");
        assert!(DataDirs::new(&[root.path().to_path_buf()]).is_err());
        std::fs::create_dir_all(root.path().join("db/blobs")).expect("mkdir");
        std::fs::write(root.path().join("db/conf"), [0u8; 10]).expect("write");
        std::fs::write(root.path().join("db/blobs/1"), [0u8; 5]).expect("write");
        std::fs::write(root.path().join("jwt.key"), [0u8; 99]).expect("write");
        let dirs = DataDirs::new(&[root.path().to_path_buf()]).expect("a data dir");
        // No raft/ yet (a single node before its first write) counts as empty.
        assert_eq!(dirs.measure(), Ok(DiskUse { db: 15, raft: 0 }));
        std::fs::create_dir_all(root.path().join("raft")).expect("mkdir");
        std::fs::write(root.path().join("raft/db"), [0u8; 7]).expect("write");
        assert_eq!(dirs.measure().map(|d| d.total()), Ok(22));
    }
}
