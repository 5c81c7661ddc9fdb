//! [`Tx`], the write transaction the state machine runs each raft apply batch in: a plain
//! in-memory overlay over the [`Store`] that the domain reads and writes through.
//!
//! Reads see the transaction's own writes; [`Tx::commit`] makes them all durable-on-flush in
//! one atomic sled transaction over every tree, so journal entries, projections and the head
//! (applied cursor) always agree after a crash. Only one `Tx` is open at a time: raft applies
//! serially.
//!
//! This module knows nothing of commands or events: what is written is the domain's business
//! (`engine.rs` appends and applies through the methods here, and defines
//! [`Tx::replay`]).

use std::collections::BTreeMap;
use std::ops::Bound;

use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use crate::codec;
use crate::event::Event;
use crate::head::{Head, META_HEAD};
use crate::journal::Hash;
use crate::keys::{self, Tree};
use crate::memstate::MemState;
use crate::outcome::Audience;
use crate::store::{ReadTrees, Store, StoreError};

/// A key and its value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// An entry appended by a committed [`Tx`], with who should be told about it.
#[derive(Debug, Clone)]
pub struct AppliedEntry {
    pub cursor: u64,
    pub ts: u64,
    pub event: Event,
    pub audience: Audience,
}

/// A write transaction: reads see its own writes; [`Tx::commit`] makes them durable-on-flush
/// atomically.
pub struct Tx {
    store: Store,
    writes: BTreeMap<(Tree, Vec<u8>), Option<Vec<u8>>>,
    /// The head as of this transaction's last write of it (read from the store once).
    head: Option<Head>,
    appended: Vec<AppliedEntry>,
    /// Set when detached ([`Store::begin_detached`]): the whole state, used instead of
    /// `writes`; reads never fall through to the store.
    mem: Option<Box<MemState>>,
}

impl Tx {
    pub(crate) fn new(store: Store, mem: Option<Box<MemState>>) -> Tx {
        Tx { store, writes: BTreeMap::new(), head: None, appended: Vec::new(), mem }
    }

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

    /// Moves the head (written once per transaction, whatever the number of entries: the
    /// overlay keeps the last value of a key).
    pub(crate) fn set_head(&mut self, head: Head) {
        self.put(Tree::Meta, META_HEAD.as_bytes().to_vec(), head.encode());
        self.head = Some(head);
    }

    /// Remembers an entry appended in this transaction, for [`Tx::commit`] to return.
    pub(crate) fn push_applied(&mut self, entry: AppliedEntry) {
        self.appended.push(entry);
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

    /// The buffered writes to each tree of an ordinary (not detached) transaction: `(tree,
    /// writes, key + value bytes)`, in [`Tree::ALL`] order, only trees written; a removal
    /// counts its key. Lets tests pin what a command costs.
    #[cfg(test)]
    pub(crate) fn write_counts(&self) -> Vec<(Tree, usize, usize)> {
        let mut out: Vec<(Tree, usize, usize)> = Vec::new();
        for ((t, k), v) in &self.writes {
            let bytes = k.len() + v.as_ref().map_or(0, Vec::len);
            match out.last_mut() {
                Some((last, n, b)) if last == t => {
                    *n += 1;
                    *b += bytes;
                }
                _ => out.push((*t, 1, bytes)),
            }
        }
        out
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
        let last = [Tree::RequestIdOutcome, Tree::RequestSeqRequestId, Tree::CursorEntry, Tree::Meta];
        for t in Tree::ALL.into_iter().filter(|t| t.is_projection()).chain(last) {
            let batch = std::mem::take(&mut batches[t.index()]);
            store.tree(t).apply_batch(batch)?;
        }
        if let Some(h) = head {
            store.set_applied(h.cursor);
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
            store
                .trees()
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
            store.set_applied(h.cursor);
        }
        Ok(appended)
    }
}

impl ReadTrees for Tx {
    type Bytes = Vec<u8>;

    fn read(&self, t: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(t, key)
    }
}
