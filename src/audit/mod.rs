//! Offline audit tools over a stopped node's data dir: `parley replay`, `parley audit verify`,
//! `parley export`, `parley import` and `parley state`.
//!
//! Everything here reads the journal (the hash-chained `cursor_entry` tree) and trusts nothing
//! else: every entry is decoded with validation, its hash recomputed and its link to the
//! previous entry checked before it is used, and projections are rebuilt by the same `apply`
//! the live node runs ([`parley_storage::replay`]). A journal that does not verify stops the
//! tool with the first bad cursor.
//!
//! # Layout
//! - [`chain`]: walking a journal (a data dir's or an export file's) and checking its chain.
//! - [`wire`]: export lines back into journal entries (the inverse of the admin JSON).
//! - [`replay`]: rebuilding projections into a scratch store; `parley replay`.
//! - [`verify`]: `parley audit verify`.
//! - [`export`]: `parley export` and its filters.
//! - [`import`]: `parley import`: a new data dir from an export.
//! - [`state`]: `parley state`: queries as of a past cursor.
//! - [`generate`]: deterministic journals: the committed fixture and bench loads (hidden).
//! - [`progress`]: a progress bar on a terminal, plain lines otherwise.
//!
//! Invariants:
//! - a data dir is opened only when no node runs on it (sled's file lock says so; we refuse
//!   with a clear message rather than wait);
//! - output is streamed: nothing holds the whole journal in memory.

pub mod chain;
pub mod export;
pub mod generate;
pub mod import;
pub mod progress;
pub mod replay;
pub mod state;
pub mod verify;
pub mod wire;

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use parley_storage::journal::JournalError;
use parley_storage::{Store, StoreError};

/// Why an audit tool stopped.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("database {} is in use by another process (is a parley node running on it?)", .0.display())]
    Locked(PathBuf),
    #[error("no parley database in {} (expected {})", .0.display(), .0.join("db").display())]
    NoDatabase(PathBuf),
    /// The journal is not intact: the first bad cursor and why.
    #[error("cursor {cursor}: {why}")]
    Bad { cursor: u64, why: String },
    #[error("storage: {0}")]
    Store(StoreError),
    #[error("{0}")]
    Other(String),
}

impl AuditError {
    /// The first bad cursor, when the journal is not intact.
    pub fn bad_cursor(&self) -> Option<u64> {
        match self {
            AuditError::Bad { cursor, .. } => Some(*cursor),
            _ => None,
        }
    }

    pub fn bad(cursor: u64, why: impl Into<String>) -> AuditError {
        AuditError::Bad { cursor, why: why.into() }
    }
}

impl From<JournalError> for AuditError {
    fn from(e: JournalError) -> Self {
        match e {
            JournalError::Corrupt { cursor, reason } => AuditError::bad(cursor, format!("does not decode: {reason}")),
            JournalError::CursorMismatch { cursor, stored } => AuditError::bad(
                cursor,
                format!("holds the entry of cursor {stored} (entries swapped, moved or rewritten)"),
            ),
            JournalError::HashMismatch { cursor } => {
                AuditError::bad(cursor, "hash does not recompute (the entry was changed)")
            }
            JournalError::BrokenLink { cursor, prev } => {
                AuditError::bad(cursor, format!("prev_hash does not link to cursor {prev}'s hash"))
            }
            JournalError::Missing { cursor } => {
                AuditError::bad(cursor, "missing (cursors are not consecutive: an entry was deleted or moved)")
            }
            e @ JournalError::HeadMismatch { .. } => AuditError::Other(e.to_string()),
        }
    }
}

impl From<StoreError> for AuditError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Journal(j) => j.into(),
            e => AuditError::Store(e),
        }
    }
}

impl From<sled::Error> for AuditError {
    fn from(e: sled::Error) -> Self {
        AuditError::Store(StoreError::Sled(e))
    }
}

impl From<std::io::Error> for AuditError {
    fn from(e: std::io::Error) -> Self {
        AuditError::Other(e.to_string())
    }
}

/// The sled db of a data dir.
pub fn db_path(data_dir: &Path) -> PathBuf {
    data_dir.join("db")
}

/// Opens the store of an existing data dir; refuses if a node holds it.
pub fn open_data_dir(data_dir: &Path, cache_mb: u64) -> Result<Store, AuditError> {
    let path = db_path(data_dir);
    if !path.join("conf").is_file() {
        return Err(AuditError::NoDatabase(data_dir.to_path_buf()));
    }
    open_db(&path, cache_mb, true).map(Store::open)?.map_err(AuditError::from)
}

/// Closes a data dir's store at the end of a tool: flushed, then left to the OS. sled's
/// teardown walks its whole page cache (seconds for a large db) and the process exits next.
pub fn close(store: Store) -> Result<(), AuditError> {
    store.db().flush()?;
    std::mem::forget(store);
    Ok(())
}

/// Opens (creating) a sled db at `path`, with the compression it was created with (a new one is
/// compressed when `durable`, as a node's would be). `durable` off skips background flushes:
/// for scratch stores that are thrown away.
pub fn open_db(path: &Path, cache_mb: u64, durable: bool) -> Result<sled::Db, AuditError> {
    let mut cfg = parley_storage::store::sled_config(path, cache_mb.max(1) * 1024 * 1024, durable);
    if !durable {
        cfg = cfg.flush_every_ms(None);
    }
    cfg.open().map_err(|e| match e {
        // sled takes an exclusive `flock` on its db file; a running node holds it.
        sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
            AuditError::Locked(path.to_path_buf())
        }
        e => AuditError::Store(StoreError::Sled(e)),
    })
}

/// Flags every tool that reads a data dir shares.
#[derive(Args, Debug, Clone)]
pub struct DataDirArgs {
    /// The node's data dir (the node must be stopped).
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// sled page cache of the data dir, in MiB.
    #[arg(long, default_value_t = 256, hide = true)]
    pub cache_mb: u64,
}

/// `parley audit ...`
#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check the journal's hash chain (of a data dir, or of an export file).
    Verify(verify::VerifyArgs),
    /// Write the committed test fixture (a journal export and its expected digest).
    #[command(hide = true)]
    Fixture(generate::FixtureArgs),
    /// Fill a new data dir with a synthetic journal of N entries (for benchmarks).
    #[command(hide = true)]
    Generate(generate::GenerateArgs),
}

/// Runs `parley audit ...`.
pub fn run(args: AuditArgs) -> Result<(), String> {
    match args.command {
        AuditCommand::Verify(a) => verify::run(a),
        AuditCommand::Fixture(a) => generate::run_fixture(a),
        AuditCommand::Generate(a) => generate::run_generate(a),
    }
}

/// Writes `text` to stdout; a closed pipe (`| head`) is not an error.
pub(crate) fn write_out(out: &mut impl std::io::Write, text: &[u8]) -> Result<bool, AuditError> {
    match out.write_all(text) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e.into()),
    }
}
