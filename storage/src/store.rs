//! The store: the sled database holding the journal and every projection, and [`Tx`], the
//! write transaction the state machine runs each raft apply batch in.
//!
//! A [`Tx`] buffers writes in memory (reads see them) and commits them in one atomic sled
//! transaction over all trees: journal entries, projections and the head (applied cursor)
//! always agree after a crash. Only one `Tx` is open at a time: raft applies serially.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use crate::codec::{self, CodecError};
use crate::command::Command;
use crate::event::Event;
use crate::journal::{Hash, JournalError, JournalRecord, ZERO_HASH};
use crate::keys::{self, Tree};
use crate::memstate::MemState;
use crate::outcome::{Audience, Outcome};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("corrupt store: {0}")]
    Corrupt(String),
}

const META_HEAD: &str = "head";

/// The journal head: last cursor, its hash and ts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Head {
    pub cursor: u64,
    pub hash: Hash,
    pub ts: u64,
}

impl Head {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(48);
        v.extend_from_slice(&self.cursor.to_be_bytes());
        v.extend_from_slice(&self.hash);
        v.extend_from_slice(&self.ts.to_be_bytes());
        v
    }

    fn decode(b: &[u8]) -> Result<Head, StoreError> {
        if b.len() != 48 {
            return Err(StoreError::Corrupt("head record has the wrong length".into()));
        }
        let cursor = keys::trailing_u64(&b[..8]).unwrap_or_default();
        let mut hash = ZERO_HASH;
        hash.copy_from_slice(&b[8..40]);
        let ts = keys::trailing_u64(&b[40..]).unwrap_or_default();
        Ok(Head { cursor, hash, ts })
    }
}

/// An entry appended by a committed [`Tx`], with who should be told about it.
#[derive(Debug, Clone)]
pub struct AppliedEntry {
    pub cursor: u64,
    pub ts: u64,
    pub event: Event,
    pub audience: Audience,
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

impl Store {
    /// Opens the store's trees in `db` (the raft log may live in the same db).
    pub fn open(db: sled::Db) -> Result<Store, StoreError> {
        let trees = Tree::ALL.iter().map(|t| db.open_tree(t.name())).collect::<Result<Vec<_>, _>>()?;
        let store = Store { inner: Arc::new(Inner { db, trees, applied: AtomicU64::new(0) }) };
        let head = store.head()?;
        store.inner.applied.store(head.cursor, Ordering::SeqCst);
        Ok(store)
    }

    /// Opens (or creates) a sled db at `path` with a bounded cache.
    pub fn open_path(path: &Path, cache_bytes: u64) -> Result<Store, StoreError> {
        let db = sled::Config::new().path(path).cache_capacity(cache_bytes).open()?;
        Store::open(db)
    }

    pub fn db(&self) -> &sled::Db {
        &self.inner.db
    }

    pub(crate) fn tree(&self, t: Tree) -> &sled::Tree {
        &self.inner.trees[t.index()]
    }

    /// The journal head cursor: everything up to it is applied to the projections.
    pub fn applied_cursor(&self) -> u64 {
        self.inner.applied.load(Ordering::SeqCst)
    }

    /// The journal head as stored.
    pub fn head(&self) -> Result<Head, StoreError> {
        match self.tree(Tree::Meta).get(META_HEAD)? {
            Some(b) => Head::decode(&b),
            None => Ok(Head { cursor: 0, hash: ZERO_HASH, ts: 0 }),
        }
    }

    /// Raw bytes stored with [`Tx::put_meta`].
    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree(Tree::Meta).get(key)?.map(|v| v.to_vec()))
    }

    /// Starts a write transaction.
    pub fn begin(&self) -> Tx {
        Tx { store: self.clone(), writes: BTreeMap::new(), head: None, appended: Vec::new(), mem: None }
    }

    /// Starts a transaction that never reads the store: it holds the whole state in memory.
    /// Only for an empty store (offline replay into a scratch store): reads see the
    /// transaction's own writes and nothing else, and [`Tx::projection_digest`] is then the
    /// digest the store would have after the commit, without committing.
    pub fn begin_detached(&self) -> Tx {
        Tx { mem: Some(Box::new(MemState::new())), ..self.begin() }
    }

    /// Point read of a projection record.
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

    /// Stores verified journal records *past the head* without applying them (a node catching
    /// up stages a page while it applies the previous one). Nothing reads past the head, and
    /// the entries are rewritten with the same bytes if the node stops before applying them;
    /// they become the journal when [`Tx::replay_projections`] moves the head over them.
    /// Refuses cursors at or behind the head: the applied journal is never rewritten.
    pub fn stage_journal(&self, records: &[(u64, Vec<u8>)]) -> Result<(), StoreError> {
        let head = self.applied_cursor();
        let mut batch = sled::Batch::default();
        for (cursor, bytes) in records {
            if *cursor <= head {
                return Err(StoreError::Corrupt(format!("journal entry {cursor} staged at or behind the head {head}")));
            }
            batch.insert(&keys::u64_key(*cursor), bytes.as_slice());
        }
        self.tree(Tree::CursorEntry).apply_batch(batch)?;
        Ok(())
    }

    /// Flushes everything to disk.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.inner.db.flush_async().await?;
        Ok(())
    }

    /// Reloads the cached applied cursor (after an install replaced the trees).
    fn reload_head(&self) -> Result<(), StoreError> {
        let head = self.head()?;
        self.inner.applied.store(head.cursor, Ordering::SeqCst);
        Ok(())
    }

    /// Serialises every tree (journal, projections, meta) into one self-checking blob:
    /// records of `(tree index u8, key len u32, key, value len u32, value)`, then a SHA-256 of
    /// everything before it.
    pub fn export_snapshot(&self) -> Result<Vec<u8>, StoreError> {
        use sha2::{Digest, Sha256};
        let mut out = Vec::new();
        out.extend_from_slice(SNAPSHOT_MAGIC);
        for t in Tree::ALL {
            for kv in self.tree(t).iter() {
                let (k, v) = kv?;
                out.push(t.index() as u8);
                out.extend_from_slice(&(k.len() as u32).to_be_bytes());
                out.extend_from_slice(&k);
                out.extend_from_slice(&(v.len() as u32).to_be_bytes());
                out.extend_from_slice(&v);
            }
        }
        let digest: [u8; 32] = Sha256::digest(&out).into();
        out.extend_from_slice(&digest);
        Ok(out)
    }

    /// Replaces every tree with the contents of a snapshot from [`Store::export_snapshot`].
    /// The blob is checked (checksum, framing, journal chain) before anything is replaced.
    pub fn install_snapshot(&self, data: &[u8]) -> Result<(), StoreError> {
        use sha2::{Digest, Sha256};
        let bad = |why: &str| StoreError::Corrupt(format!("snapshot: {why}"));
        if data.len() < SNAPSHOT_MAGIC.len() + 32 || !data.starts_with(SNAPSHOT_MAGIC) {
            return Err(bad("not a parley snapshot"));
        }
        let (body, sum) = data.split_at(data.len() - 32);
        let digest: [u8; 32] = Sha256::digest(body).into();
        if digest.as_slice() != sum {
            return Err(bad("checksum mismatch"));
        }
        let mut records: Vec<Vec<(&[u8], &[u8])>> = vec![Vec::new(); Tree::ALL.len()];
        let mut rest = &body[SNAPSHOT_MAGIC.len()..];
        let take = |rest: &mut &[u8], n: usize| -> Result<Vec<u8>, StoreError> {
            if rest.len() < n {
                return Err(bad("truncated"));
            }
            let (a, b) = rest.split_at(n);
            *rest = b;
            Ok(a.to_vec())
        };
        let mut owned: Vec<(usize, Vec<u8>, Vec<u8>)> = Vec::new();
        while !rest.is_empty() {
            let t = take(&mut rest, 1)?[0] as usize;
            if t >= Tree::ALL.len() {
                return Err(bad("unknown tree"));
            }
            let kl = read_u32(&take(&mut rest, 4)?);
            let k = take(&mut rest, kl)?;
            let vl = read_u32(&take(&mut rest, 4)?);
            let v = take(&mut rest, vl)?;
            owned.push((t, k, v));
        }
        for (t, k, v) in &owned {
            records[*t].push((k.as_slice(), v.as_slice()));
        }
        // The journal inside must be a valid chain before we trust it.
        let mut verifier = crate::journal::ChainVerifier::default();
        for (k, v) in &records[Tree::CursorEntry.index()] {
            let cursor = keys::trailing_u64(k).ok_or_else(|| bad("journal key"))?;
            verifier.check(cursor, v)?;
        }
        for t in Tree::ALL {
            let tree = self.tree(t);
            tree.clear()?;
            let mut batch = sled::Batch::default();
            for (k, v) in &records[t.index()] {
                batch.insert(*k, *v);
            }
            tree.apply_batch(batch)?;
        }
        self.inner.db.flush()?;
        self.reload_head()
    }

    /// A hash over a canonical encoding of every projection tree (not the journal, not meta):
    /// equal on every node and in every replay at the same cursor.
    pub fn projection_digest(&self) -> Result<Hash, StoreError> {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for t in Tree::ALL.into_iter().filter(|t| t.is_projection()) {
            h.update(t.name().as_bytes());
            h.update([0xff]);
            for kv in self.tree(t).iter() {
                let (k, v) = kv?;
                h.update((k.len() as u64).to_be_bytes());
                h.update(&k);
                h.update((v.len() as u64).to_be_bytes());
                h.update(&v);
            }
        }
        // The group id counter is projection state kept in meta.
        h.update(self.meta(crate::apply::META_NEXT_GROUP)?.unwrap_or_default());
        Ok(h.finalize().into())
    }
}

const SNAPSHOT_MAGIC: &[u8] = b"PARLEYSNAP1\n";

/// A big-endian u32 length from exactly four bytes.
fn read_u32(b: &[u8]) -> usize {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a) as usize
}

/// A key and its value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// A write transaction: reads see its own writes; [`Tx::commit`] makes them durable-on-flush
/// atomically.
pub struct Tx {
    store: Store,
    writes: BTreeMap<(Tree, Vec<u8>), Option<Vec<u8>>>,
    head: Option<Head>,
    appended: Vec<AppliedEntry>,
    /// Set when detached ([`Store::begin_detached`]): the whole state, used instead of
    /// `writes`; reads never fall through to the store.
    mem: Option<Box<MemState>>,
}

impl Tx {
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn get(&self, t: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(mem) = &self.mem {
            return Ok(mem.get(t, key));
        }
        if let Some(v) = self.writes.get(&(t, key.to_vec())) {
            return Ok(v.clone());
        }
        Ok(self.store.get(t, key)?.map(|v| v.to_vec()))
    }

    pub(crate) fn get_rec<T>(&self, t: Tree, key: &[u8]) -> Result<Option<T>, StoreError>
    where
        T: rkyv::Archive,
        T::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>>
            + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
    {
        if let Some(mem) = &self.mem {
            return Ok(mem.get_ref(t, key).map(codec::decode).transpose()?);
        }
        match self.get(t, key)? {
            Some(b) => Ok(Some(codec::decode(&b)?)),
            None => Ok(None),
        }
    }

    pub(crate) fn contains(&self, t: Tree, key: &[u8]) -> Result<bool, StoreError> {
        if let Some(mem) = &self.mem {
            return Ok(mem.get_ref(t, key).is_some());
        }
        Ok(self.get(t, key)?.is_some())
    }

    pub(crate) fn put(&mut self, t: Tree, key: Vec<u8>, value: Vec<u8>) {
        if let Some(mem) = &mut self.mem {
            return mem.put(t, key, value);
        }
        self.writes.insert((t, key), Some(value));
    }

    pub(crate) fn put_rec<T>(&mut self, t: Tree, key: Vec<u8>, value: &T)
    where
        T: for<'a> rkyv::Serialize<
            rkyv::api::high::HighSerializer<
                rkyv::util::AlignedVec,
                rkyv::ser::allocator::ArenaHandle<'a>,
                rkyv::rancor::Error,
            >,
        >,
    {
        let bytes = codec::encode(value);
        self.put(t, key, bytes);
    }

    pub(crate) fn remove(&mut self, t: Tree, key: Vec<u8>) {
        if let Some(mem) = &mut self.mem {
            return mem.remove(t, &key);
        }
        self.writes.insert((t, key), None);
    }

    /// All `(key, value)` pairs whose key starts with `prefix`, merged with pending writes, in
    /// key order.
    pub(crate) fn scan_prefix(&self, t: Tree, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        if let Some(mem) = &self.mem {
            return Ok(mem.scan_prefix(t, prefix));
        }
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for kv in self.store.tree(t).scan_prefix(prefix) {
            let (k, v) = kv?;
            merged.insert(k.to_vec(), v.to_vec());
        }
        let lo = (t, prefix.to_vec());
        for ((wt, k), v) in self.writes.range((Bound::Included(lo), Bound::Unbounded)) {
            if *wt != t || !k.starts_with(prefix) {
                break;
            }
            match v {
                Some(v) => merged.insert(k.clone(), v.clone()),
                None => merged.remove(k),
            };
        }
        Ok(merged.into_iter().collect())
    }

    /// Stores raw metadata (e.g. raft's last applied log id) in this transaction.
    pub fn put_meta(&mut self, key: &str, value: Vec<u8>) {
        self.put(Tree::Meta, key.as_bytes().to_vec(), value);
    }

    pub(crate) fn meta_u64(&self, key: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.get(Tree::Meta, key.as_bytes())?.and_then(|b| keys::trailing_u64(&b)))
    }

    /// The journal head including entries appended in this transaction.
    pub fn head(&mut self) -> Result<Head, StoreError> {
        match self.head {
            Some(h) => Ok(h),
            None => {
                let h = self.store.head()?;
                self.head = Some(h);
                Ok(h)
            }
        }
    }

    /// Appends one event to the journal and applies it to the projections.
    pub(crate) fn append(&mut self, ts: u64, event: Event) -> Result<u64, StoreError> {
        let head = self.head()?;
        let cursor = head.cursor + 1;
        // ts never goes backwards in the journal, whatever clocks the leaders had.
        let ts = ts.max(head.ts);
        let rec = JournalRecord::new(cursor, ts, head.hash, &event);
        let new_head = Head { cursor, hash: rec.hash, ts };
        self.put_rec(Tree::CursorEntry, keys::u64_key(cursor).to_vec(), &rec);
        self.put(Tree::Meta, META_HEAD.as_bytes().to_vec(), new_head.encode());
        self.head = Some(new_head);
        let audience = crate::apply::apply(self, cursor, ts, &event)?;
        self.appended.push(AppliedEntry { cursor, ts, event, audience });
        Ok(cursor)
    }

    /// Replays a verified journal entry (offline replay / import) through the same `apply`.
    pub fn replay(&mut self, rec: &JournalRecord, event: &Event) -> Result<(), StoreError> {
        self.check_follows(rec)?;
        self.put_rec(Tree::CursorEntry, keys::u64_key(rec.cursor).to_vec(), rec);
        self.replay_projections(rec, event)
    }

    /// Like [`Tx::replay`] but keeps no copy of the journal entry: projections and head only
    /// (offline replay into a scratch store only needs those).
    pub fn replay_projections(&mut self, rec: &JournalRecord, event: &Event) -> Result<(), StoreError> {
        self.check_follows(rec)?;
        let new_head = Head { cursor: rec.cursor, hash: rec.hash, ts: rec.ts };
        self.put(Tree::Meta, META_HEAD.as_bytes().to_vec(), new_head.encode());
        self.head = Some(new_head);
        crate::apply::apply(self, rec.cursor, rec.ts, event)?;
        Ok(())
    }

    /// Refuses `rec` unless it is the entry that follows the head.
    fn check_follows(&mut self, rec: &JournalRecord) -> Result<(), StoreError> {
        let head = self.head()?;
        if rec.cursor != head.cursor + 1 || rec.prev_hash != head.hash {
            return Err(JournalError::BrokenLink { cursor: rec.cursor, prev: head.cursor }.into());
        }
        Ok(())
    }

    /// Runs one command: decide, then append and apply its events. A rejection changes
    /// nothing. Storage errors are fatal for the node and surface as `Err`.
    pub fn execute(&mut self, cmd: &Command) -> Result<Outcome, StoreError> {
        crate::engine::execute(self, cmd)
    }

    /// For a detached transaction ([`Store::begin_detached`]), the digest
    /// [`Store::projection_digest`] gives after the commit, computed in memory; `None` for an
    /// ordinary one.
    pub fn projection_digest(&self) -> Option<Hash> {
        self.mem.as_ref().map(|m| m.projection_digest())
    }

    /// Forgets every pending write to tree `t` (a detached transaction: that whole tree).
    pub(crate) fn discard_tree(&mut self, t: Tree) {
        match &mut self.mem {
            Some(mem) => mem.clear(t),
            None => self.writes.retain(|(wt, _), _| *wt != t),
        }
    }

    /// Number of buffered writes (lets callers bound a batch).
    pub fn pending_writes(&self) -> usize {
        self.mem.as_ref().map_or(self.writes.len(), |m| m.len())
    }

    /// Commits all writes with one sled batch per tree: atomic within each tree, **not** across
    /// trees. Only for a store nobody reads while it is built and that is thrown away if the
    /// build is interrupted (offline replay into a scratch store, import into a new data dir);
    /// the live node always uses [`Tx::commit`]. Much faster than one transaction over every
    /// tree for large batches; the stored bytes are the same.
    pub fn commit_unatomic(self) -> Result<Vec<AppliedEntry>, StoreError> {
        let Tx { store, mut writes, head, appended, mem } = self;
        if let Some(mem) = mem {
            writes = mem.into_writes();
        }
        let mut batches: Vec<sled::Batch> = Tree::ALL.iter().map(|_| sled::Batch::default()).collect();
        for ((t, k), v) in writes {
            match v {
                Some(v) => batches[t.index()].insert(k, v),
                None => batches[t.index()].remove(k),
            }
        }
        // The journal and head go last, so an interrupted build never has a head ahead of its
        // projections.
        let last = [Tree::CursorEntry, Tree::Meta];
        for t in Tree::ALL.into_iter().filter(|t| t.is_projection()).chain(last) {
            let batch = std::mem::take(&mut batches[t.index()]);
            store.tree(t).apply_batch(batch)?;
        }
        if let Some(h) = head {
            store.inner.applied.store(h.cursor, Ordering::SeqCst);
        }
        Ok(appended)
    }

    /// Commits all writes in one atomic sled transaction over every tree.
    pub fn commit(self) -> Result<Vec<AppliedEntry>, StoreError> {
        let Tx { store, mut writes, head, appended, mem } = self;
        if let Some(mem) = mem {
            writes = mem.into_writes();
        }
        if !writes.is_empty() {
            let trees = store.inner.trees.as_slice();
            trees
                .transaction(|txs| {
                    for ((t, k), v) in &writes {
                        let tree = &txs[t.index()];
                        match v {
                            Some(v) => {
                                tree.insert(k.as_slice(), v.as_slice())?;
                            }
                            None => {
                                tree.remove(k.as_slice())?;
                            }
                        }
                    }
                    Ok::<(), ConflictableTransactionError<()>>(())
                })
                .map_err(|e| match e {
                    TransactionError::Storage(e) => StoreError::Sled(e),
                    TransactionError::Abort(()) => StoreError::Corrupt("transaction aborted".into()),
                })?;
        }
        if let Some(h) = head {
            store.inner.applied.store(h.cursor, Ordering::SeqCst);
        }
        Ok(appended)
    }
}
