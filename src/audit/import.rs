//! `parley import`: builds a new data dir from a full export file, verifying the chain as it
//! goes: every line must parse back into an event that re-encodes to the exact bytes its hash
//! covers, else the import fails naming the cursor and leaves nothing behind.
//!
//! The new data dir holds the journal and the projections rebuilt from it, and no raft state:
//! `parley serve` on it starts raft pristine (a single node bootstraps a fresh cluster) and the
//! journal continues at the imported head + 1.
//!
//! The db is built in `<dir>/db.importing` and renamed to `<dir>/db` only once complete and
//! flushed, so an interrupted import never leaves a data dir a node would start on.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;
use parley_storage::replay::{Replayer, DEFAULT_BATCH_ENTRIES};
use parley_storage::Store;
use serde_json::json;

use super::chain::ExportEntries;
use super::progress::Progress;
use super::verify::open_export;
use super::{db_path, open_db, AuditError};

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The new data dir (must not hold a database yet).
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// A full, unfiltered export (JSON lines from `parley export`); `-` reads stdin.
    #[arg(long, value_name = "FILE")]
    pub from_export: PathBuf,
    /// Print `{"last_cursor", "head_hash", "digest"}` instead of a line.
    #[arg(long)]
    pub json: bool,
    /// sled page cache while importing, in MiB.
    #[arg(long, default_value_t = 512, hide = true)]
    pub cache_mb: u64,
    /// Journal entries per commit.
    #[arg(long, default_value_t = DEFAULT_BATCH_ENTRIES, hide = true)]
    pub batch: usize,
}

/// What an import built.
#[derive(Debug, Clone)]
pub struct Imported {
    pub last_cursor: u64,
    pub head_hash: String,
    pub digest: String,
}

/// Imports `reader` into a new data dir.
pub fn import(
    data_dir: &Path,
    reader: impl std::io::BufRead,
    cache_mb: u64,
    batch: usize,
) -> Result<Imported, AuditError> {
    let final_path = db_path(data_dir);
    if final_path.exists() {
        return Err(AuditError::Other(format!(
            "{} already holds a database; import builds a new data dir",
            data_dir.display()
        )));
    }
    std::fs::create_dir_all(data_dir)
        .map_err(|e| AuditError::Other(format!("cannot create {}: {e}", data_dir.display())))?;
    let staging = data_dir.join("db.importing");
    if staging.exists() {
        // Left by an interrupted import: never trusted, rebuilt from scratch.
        std::fs::remove_dir_all(&staging)?;
    }
    let result = build(&staging, reader, cache_mb, batch);
    match result {
        Ok(imported) => {
            std::fs::rename(&staging, &final_path)?;
            Ok(imported)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

fn build(path: &Path, reader: impl std::io::BufRead, cache_mb: u64, batch: usize) -> Result<Imported, AuditError> {
    let store = Store::open(open_db(path, cache_mb, false)?)?;
    let mut replayer = Replayer::new(&store, batch);
    let mut progress = Progress::new("import", 0);
    let mut entries = ExportEntries::new(reader, false);
    for item in entries.by_ref() {
        let (rec, entry) = item?;
        replayer.push(&rec, &entry.event)?;
        progress.inc(1);
    }
    progress.finish();
    let head = replayer.finish()?;
    if head.cursor == 0 {
        return Err(AuditError::Other("the export holds no entries".into()));
    }
    let digest = hex::encode(store.projection_digest()?);
    // Durability point: everything is on disk before the db is renamed into place.
    store.db().flush()?;
    Ok(Imported { last_cursor: head.cursor, head_hash: hex::encode(head.hash), digest })
}

pub fn run(args: ImportArgs) -> Result<(), String> {
    let run = || -> Result<Imported, AuditError> {
        let reader = open_export(&args.from_export)?;
        import(&args.data_dir, reader, args.cache_mb, args.batch)
    };
    let imported = run().map_err(|e| format!("import failed: {e}"))?;
    let line = if args.json {
        json!({"last_cursor": imported.last_cursor, "head_hash": imported.head_hash, "digest": imported.digest})
            .to_string()
    } else {
        format!("imported {} {} digest {}", imported.last_cursor, imported.head_hash, imported.digest)
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").map_err(|e| e.to_string())?;
    Ok(())
}
