//! The store: the sled database holding the journal and every projection, opened at the
//! current storage format ([`crate::migrate`]), and its committed reads.
//!
//! Writes go through a [`Tx`] ([`Store::begin`]); reads here see only what is committed.
//! Queries (lists, history, sync) are in [`crate::query`], snapshots in `snapshot.rs`.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::codec::CodecError;
use crate::head::{Head, META_HEAD};
use crate::journal::{Hash, JournalError, JournalRecord};
use crate::keys::{self, Tree};
use crate::memstate::MemState;
use crate::migrate::{self, FormatError};
use crate::tx::Tx;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("corrupt store: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// The stored data itself is bad (a record that does not decode, a journal entry whose
    /// hash does not recompute or that is not where it should be): the node must stop rather
    /// than serve or extend it. IO and sled errors are not: they say nothing of the bytes.
    pub fn is_corruption(&self) -> bool {
        match self {
            StoreError::Codec(_) | StoreError::Corrupt(_) | StoreError::Journal(_) => true,
            StoreError::Sled(sled::Error::Corruption { .. }) => true,
            StoreError::Sled(_) | StoreError::Format(_) => false,
        }
    }
}

/// Point reads of stored records, committed ([`Store`]) or as a transaction sees them
/// ([`Tx`]): what the readers shared by queries and the domain ([`crate::message`]) need.
pub(crate) trait ReadTrees {
    type Bytes: AsRef<[u8]>;
    fn read(&self, t: Tree, key: &[u8]) -> Result<Option<Self::Bytes>, StoreError>;
}

struct Inner {
    db: sled::Db,
    trees: Vec<sled::Tree>,
    /// Cached journal head cursor (the applied cursor), updated after each commit.
    applied: AtomicU64,
}

/// Handle to the journal and projections. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// zstd level of a compressed state db: the fastest. Higher levels saved a few percent of disk
/// and cost a quarter of the send throughput (docs/BENCHMARKS.md, "history").
pub const COMPRESSION_LEVEL: i32 = 1;

/// The sled configuration of a state db at `path`. A db that exists keeps the compression it
/// was created with (sled refuses to open it otherwise); a new one is compressed when
/// `compress_if_new`.
pub fn sled_config(path: &Path, cache_bytes: u64, compress_if_new: bool) -> sled::Config {
    let compress = stored_compression(path).unwrap_or(compress_if_new);
    sled::Config::new()
        .path(path)
        .cache_capacity(cache_bytes)
        .use_compression(compress)
        .compression_factor(COMPRESSION_LEVEL)
}

/// Whether the sled db at `dir` was created compressed; `None` when it does not exist yet.
pub fn stored_compression(dir: &Path) -> Option<bool> {
    let conf = std::fs::read(dir.join("conf")).ok()?;
    let text = String::from_utf8_lossy(&conf);
    text.lines().find_map(|l| l.strip_prefix("use_compression: ")).map(|v| v.trim() == "true")
}

impl Store {
    /// Opens the store's trees in `db` (the raft log may live in the same db). A data dir of
    /// an older storage format is migrated in place first; one of a newer format is refused
    /// ([`FormatError::TooNew`]).
    pub fn open(db: sled::Db) -> Result<Store, StoreError> {
        let trees = Tree::ALL.iter().map(|t| db.open_tree(t.name())).collect::<Result<Vec<_>, _>>()?;
        let store = Store { inner: Arc::new(Inner { db, trees, applied: AtomicU64::new(0) }) };
        migrate::upgrade(&store)?;
        store.reload_head()?;
        Ok(store)
    }

    /// Opens (or creates, uncompressed) a sled db at `path` with a bounded cache.
    pub fn open_path(path: &Path, cache_bytes: u64) -> Result<Store, StoreError> {
        Store::open(sled_config(path, cache_bytes, false).open()?)
    }

    pub fn db(&self) -> &sled::Db {
        &self.inner.db
    }

    pub(crate) fn tree(&self, t: Tree) -> &sled::Tree {
        &self.inner.trees[t.index()]
    }

    /// Every tree, indexed by [`Tree::index`].
    pub(crate) fn trees(&self) -> &[sled::Tree] {
        &self.inner.trees
    }

    /// The journal head cursor: everything up to it is applied to the projections.
    pub fn applied_cursor(&self) -> u64 {
        self.inner.applied.load(Ordering::SeqCst)
    }

    /// Publishes a committed head cursor to readers.
    pub(crate) fn set_applied(&self, cursor: u64) {
        self.inner.applied.store(cursor, Ordering::SeqCst);
    }

    /// Reloads the cached applied cursor from the stored head (at open, after an install).
    pub(crate) fn reload_head(&self) -> Result<(), StoreError> {
        let head = self.head()?;
        self.set_applied(head.cursor);
        Ok(())
    }

    /// The journal head as stored.
    pub fn head(&self) -> Result<Head, StoreError> {
        Head::from_stored(self.tree(Tree::Meta).get(META_HEAD)?.as_deref())
    }

    /// Raw bytes stored with [`Tx::put_meta`].
    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree(Tree::Meta).get(key)?.map(|v| v.to_vec()))
    }

    /// Starts a write transaction.
    pub fn begin(&self) -> Tx {
        Tx::new(self.clone(), None)
    }

    /// Starts a transaction that never reads the store: it holds the whole state in memory.
    /// Only for an empty store (offline replay into a scratch store): reads see the
    /// transaction's own writes and nothing else, and [`Tx::projection_digest`] is then the
    /// digest the store would have after the commit, without committing.
    pub fn begin_detached(&self) -> Tx {
        Tx::new(self.clone(), Some(Box::new(MemState::new())))
    }

    /// Point read of a stored record.
    pub(crate) fn get(&self, t: Tree, key: &[u8]) -> Result<Option<sled::IVec>, StoreError> {
        Ok(self.tree(t).get(key)?)
    }

    /// Reads and verifies one journal entry's record.
    pub fn journal_record(&self, cursor: u64) -> Result<Option<JournalRecord>, StoreError> {
        match self.tree(Tree::CursorEntry).get(keys::u64_key(cursor))? {
            Some(b) => Ok(Some(JournalRecord::decode(cursor, &b)?)),
            None => Ok(None),
        }
    }

    /// Iterates stored journal records from `from` (inclusive), in cursor order, raw.
    pub fn journal_raw(&self, from: u64) -> impl Iterator<Item = Result<(u64, sled::IVec), StoreError>> {
        self.tree(Tree::CursorEntry).range(keys::u64_key(from)..).map(|r| {
            let (k, v) = r?;
            let cursor =
                keys::trailing_u64(&k).ok_or_else(|| StoreError::Corrupt("journal key is not a cursor".into()))?;
            Ok((cursor, v))
        })
    }

    /// Flushes everything to disk.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.inner.db.flush_async().await?;
        Ok(())
    }

    /// The projection digest (`digest.rs`) of the committed state: equal on every node
    /// and in every replay at the same cursor.
    pub fn projection_digest(&self) -> Result<Hash, StoreError> {
        let records = Tree::ALL
            .into_iter()
            .filter(|t| t.is_projection())
            .flat_map(|t| self.tree(t).iter().map(move |kv| kv.map(|(k, v)| (t, k, v)).map_err(StoreError::from)));
        let next_group = self.meta(crate::apply::META_NEXT_GROUP)?.unwrap_or_default();
        crate::digest::projection_digest(records, &next_group)
    }
}

impl ReadTrees for Store {
    type Bytes = sled::IVec;

    fn read(&self, t: Tree, key: &[u8]) -> Result<Option<sled::IVec>, StoreError> {
        self.get(t, key)
    }
}
