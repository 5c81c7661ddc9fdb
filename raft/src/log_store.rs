//! The raft log and the raft hard state (vote, purge point, commit point) in sled.
//!
//! Owns two trees of the raft log's own `sled::Db` (see [`crate::node::NodeDbs`] for why it is
//! not the state machine's; data dirs from before the split are moved over by
//! [`LogStore::adopt_legacy`]):
//!
//! | tree          | key                               | value                                       |
//! |---------------|-----------------------------------|---------------------------------------------|
//! | `raft_log`    | log index, `u64` big-endian (8 B) | framed rkyv [`StoredEntry`]                 |
//! | `raft_state`  | `b"vote"`                         | framed JSON [`Vote`]                        |
//! |               | `b"last_purged"`                  | framed JSON [`LogId`]                       |
//! |               | `b"committed"`                    | framed JSON `Option<LogId>`                 |
//!
//! "Framed" is [`crate::frame`]: version byte + crc32 + payload. Big-endian keys make sled's
//! byte order the numeric order of indexes, so range scans are index ranges.
//!
//! Invariants:
//! - a vote is on disk before [`RaftLogStorage::save_vote`] returns;
//! - appended entries are on disk before the append callback is called. openraft 0.9 calls
//!   `append` once per client write, so a flush per call would cap throughput at one write
//!   per fsync. Instead `append` writes the entries (in memory, readable at once) and hands its
//!   callback to the [`Flusher`]: a task that takes every callback waiting, flushes once, and
//!   completes them all. That is group commit: one fsync for every write that arrived while the
//!   previous fsync ran, and no callback before the flush that covers its entries;
//! - the log has no holes: truncation removes a suffix, purging removes a prefix, and the purge
//!   point is recorded (and flushed) before any entry is removed;
//! - a record that fails its checksum or rkyv validation is a [`StorageError`], never a panic
//!   and never skipped.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{CommittedLeaderId, EntryPayload, ErrorSubject, ErrorVerb, StorageIOError};
use parley_storage::codec::{self, CodecError};
use parley_storage::{CommandBatch, CommandBatchV1};
use rkyv::{Archive, Deserialize, Serialize};
use serde::de::DeserializeOwned;

use crate::frame::{self, FrameError};
use crate::types::{Entry, LogId, Membership, StorageError, TypeConfig, Vote};

/// Tree holding the raft log: index -> entry.
pub const LOG_TREE: &str = "raft_log";
/// Tree holding the raft hard state: name -> value.
pub const STATE_TREE: &str = "raft_state";

const KEY_VOTE: &[u8] = b"vote";
const KEY_LAST_PURGED: &[u8] = b"last_purged";
const KEY_COMMITTED: &[u8] = b"committed";

/// The `raft_log` key of a log index.
pub fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// One raft log entry as stored. A stored format of its own, not openraft's `Entry`, so that
/// an openraft upgrade cannot silently change what is on disk.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct StoredEntry {
    pub term: u64,
    pub leader_node_id: u64,
    pub index: u64,
    pub payload: StoredPayload,
}

/// What an entry carries. Variants are append-only: the discriminant is on disk.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum StoredPayload {
    /// A new leader's no-op entry.
    Blank,
    /// An rkyv-encoded [`parley_storage::CommandBatchV1`] (before request ids; read only).
    Normal(Vec<u8>),
    /// A serde_json-encoded openraft membership.
    Membership(Vec<u8>),
    /// An rkyv-encoded [`CommandBatch`] with its request ids.
    Batch(Vec<u8>),
}

/// Why a log entry could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum EntryCodecError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Rkyv(#[from] CodecError),
    #[error("membership json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("entry stored under index {key} claims index {stored}")]
    IndexMismatch { key: u64, stored: u64 },
    #[error("log key of {0} bytes, expected 8")]
    BadKey(usize),
}

impl StoredEntry {
    /// Converts an openraft entry to its stored form.
    pub fn from_entry(entry: &Entry) -> Result<StoredEntry, EntryCodecError> {
        let payload = match &entry.payload {
            EntryPayload::Blank => StoredPayload::Blank,
            EntryPayload::Normal(batch) => StoredPayload::Batch(codec::encode(batch)),
            EntryPayload::Membership(m) => StoredPayload::Membership(serde_json::to_vec(m)?),
        };
        Ok(StoredEntry {
            term: entry.log_id.leader_id.term,
            leader_node_id: entry.log_id.leader_id.node_id,
            index: entry.log_id.index,
            payload,
        })
    }

    /// Converts back to an openraft entry, validating the nested payload.
    pub fn into_entry(self) -> Result<Entry, EntryCodecError> {
        let log_id = self.log_id();
        let payload = match self.payload {
            StoredPayload::Blank => EntryPayload::Blank,
            StoredPayload::Normal(bytes) => EntryPayload::Normal(codec::decode::<CommandBatchV1>(&bytes)?.into()),
            StoredPayload::Batch(bytes) => EntryPayload::Normal(codec::decode::<CommandBatch>(&bytes)?),
            StoredPayload::Membership(bytes) => EntryPayload::Membership(serde_json::from_slice::<Membership>(&bytes)?),
        };
        Ok(Entry { log_id, payload })
    }

    /// The openraft log id of this entry.
    pub fn log_id(&self) -> LogId {
        LogId::new(CommittedLeaderId::new(self.term, self.leader_node_id), self.index)
    }

    /// The bytes stored in `raft_log`: a frame around the rkyv encoding.
    pub fn encode(&self) -> Vec<u8> {
        frame::seal(&codec::encode(self))
    }

    /// Checks the frame and validates the rkyv bytes.
    pub fn decode(record: &[u8]) -> Result<StoredEntry, EntryCodecError> {
        Ok(codec::decode::<StoredEntry>(frame::open(record)?)?)
    }

    /// Decodes a `raft_log` key/value pair and checks that they agree.
    fn decode_record(key: &[u8], value: &[u8]) -> Result<StoredEntry, EntryCodecError> {
        let key: [u8; 8] = key.try_into().map_err(|_| EntryCodecError::BadKey(key.len()))?;
        let key = u64::from_be_bytes(key);
        let entry = StoredEntry::decode(value)?;
        if entry.index != key {
            return Err(EntryCodecError::IndexMismatch { key, stored: entry.index });
        }
        Ok(entry)
    }
}

/// The raft log store. Cheap to clone (sled handles are reference counted); a clone is the
/// log reader handed to replication tasks.
#[derive(Clone)]
pub struct LogStore {
    db: sled::Db,
    log: sled::Tree,
    state: sled::Tree,
    flusher: Flusher,
    limit: PurgeLimit,
    /// A purge the limit did not allow yet (see [`PurgeLimit`]).
    deferred: std::sync::Arc<std::sync::Mutex<Option<LogId>>>,
}

/// How far the log may be purged: up to the last log index that a snapshot the state machine
/// has durably recorded covers (its current snapshot, or the marker of an install it has
/// begun). The state machine raises it after each such flush ([`PurgeLimit::raise`]).
///
/// openraft 0.9 purges the log up to an installed snapshot's last log id as soon as it hands
/// the install to the state machine, concurrently with it. A kill -9 after that purge and
/// before the state machine recorded anything left a node whose log was purged past its
/// snapshot: openraft refuses that state at start (an invariant panic, every start), so the
/// node was lost until wiped (found by the fault suite, `tests/faults.rs`). A purge past the
/// limit is therefore deferred: it removes and records nothing until the limit allows it, and
/// then runs before the next append (entries after an installed snapshot arrive only once the
/// install is recorded), so the log never has a hole between old entries and new ones.
#[derive(Clone, Debug)]
pub struct PurgeLimit(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl PurgeLimit {
    /// No limit (tools and tests that run a log store alone).
    pub fn unlimited() -> Self {
        PurgeLimit(std::sync::Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX)))
    }

    /// Purges allowed up to `index` (none at all for `None`).
    pub fn upto(index: Option<u64>) -> Self {
        PurgeLimit(std::sync::Arc::new(std::sync::atomic::AtomicU64::new(index.map_or(0, |i| i + 1))))
    }

    /// Allows purges up to `index` from now on (never lowers the limit).
    pub fn raise(&self, index: u64) {
        self.0.fetch_max(index.saturating_add(1), std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether a purge up to `index` is allowed.
    pub fn allows(&self, index: u64) -> bool {
        index < self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Group commit for appends: callbacks wait here for the next flush of the db.
#[derive(Clone)]
struct Flusher {
    tx: std::sync::Arc<std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedSender<LogFlushed<TypeConfig>>>>>,
}

impl Flusher {
    fn new() -> Self {
        Flusher { tx: Default::default() }
    }

    /// Queues `callback` for the next flush, starting the flush task on first use (it needs
    /// the runtime, which `open` may not run on).
    fn submit(&self, db: &sled::Db, callback: LogFlushed<TypeConfig>) {
        let mut guard = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let tx = guard.get_or_insert_with(|| {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(flush_loop(db.clone(), rx));
            tx
        });
        if let Err(returned) = tx.send(callback) {
            // The task is gone (runtime shutting down): never acknowledge without a flush.
            let res = db.flush().map(|_| ()).map_err(|e| io::Error::other(e.to_string()));
            returned.0.log_io_completed(res);
        }
    }
}

/// Flushes once for every callback waiting, then completes them in order.
async fn flush_loop(db: sled::Db, mut rx: tokio::sync::mpsc::UnboundedReceiver<LogFlushed<TypeConfig>>) {
    let mut waiting = Vec::new();
    while let Some(first) = rx.recv().await {
        waiting.push(first);
        while let Ok(more) = rx.try_recv() {
            waiting.push(more);
        }
        // Durability point: everything appended before these callbacks were queued is in
        // this flush.
        let started = std::time::Instant::now();
        let res = db.flush_async().await;
        tracing::trace!(batch = waiting.len(), micros = started.elapsed().as_micros() as u64, "log flushed");
        for cb in waiting.drain(..) {
            cb.log_io_completed(res.as_ref().map(|_| ()).map_err(|e| io::Error::other(e.to_string())));
        }
    }
}

impl LogStore {
    /// Moves the raft trees of a data dir written before the log had its own db from
    /// `state_db` into `log_db`. Does nothing when `log_db` already holds raft state or
    /// `state_db` holds none. Copies and flushes first, drops the old trees after, so a crash
    /// in between leaves the copy in place and the next start only drops the leftovers.
    pub fn adopt_legacy(state_db: &sled::Db, log_db: &sled::Db) -> Result<bool, sled::Error> {
        let names = state_db.tree_names();
        let legacy = |name: &str| names.iter().any(|n| n.as_ref() == name.as_bytes());
        if !legacy(LOG_TREE) && !legacy(STATE_TREE) {
            return Ok(false);
        }
        let log_state = log_db.open_tree(STATE_TREE)?;
        let adopted = log_state.is_empty();
        if adopted {
            for name in [LOG_TREE, STATE_TREE] {
                let from = state_db.open_tree(name)?;
                let to = log_db.open_tree(name)?;
                let mut batch = sled::Batch::default();
                for kv in from.iter() {
                    let (k, v) = kv?;
                    batch.insert(k, v);
                }
                to.apply_batch(batch)?;
            }
            log_db.flush()?;
        }
        for name in [LOG_TREE, STATE_TREE] {
            state_db.drop_tree(name)?;
        }
        state_db.flush()?;
        Ok(adopted)
    }

    /// Opens (creating if needed) the raft trees in `db`.
    pub fn open(db: sled::Db) -> Result<LogStore, sled::Error> {
        let log = db.open_tree(LOG_TREE)?;
        let state = db.open_tree(STATE_TREE)?;
        Ok(LogStore {
            db,
            log,
            state,
            flusher: Flusher::new(),
            limit: PurgeLimit::unlimited(),
            deferred: Default::default(),
        })
    }

    /// Purges only as far as `limit` allows (see [`PurgeLimit`]); the state machine's.
    pub fn limit_purges(&mut self, limit: PurgeLimit) {
        self.limit = limit;
    }

    fn read_state<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StateError> {
        match self.state.get(key)? {
            None => Ok(None),
            Some(raw) => Ok(Some(serde_json::from_slice(frame::open(&raw)?)?)),
        }
    }

    fn state_record<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StateError> {
        Ok(frame::seal(&serde_json::to_vec(value)?))
    }

    // `StorageError` is openraft's (large) type, returned as is to openraft's trait methods.
    #[allow(clippy::result_large_err)]
    fn last_log_id_in_tree(&self) -> Result<Option<LogId>, StorageError> {
        match self.log.last().map_err(|e| StorageIOError::read_logs(&e))? {
            None => Ok(None),
            Some((key, value)) => {
                let entry = StoredEntry::decode_record(&key, &value).map_err(|e| StorageIOError::read_logs(&e))?;
                Ok(Some(entry.log_id()))
            }
        }
    }

    /// Removes every entry whose key lies in `range`, in one atomic batch.
    fn remove_range(&self, range: (Bound<[u8; 8]>, Bound<[u8; 8]>)) -> Result<usize, sled::Error> {
        let mut batch = sled::Batch::default();
        let mut removed = 0;
        for key in self.log.range(range).keys() {
            batch.remove(key?);
            removed += 1;
        }
        self.log.apply_batch(batch)?;
        Ok(removed)
    }
}

/// A `raft_state` value that could not be read or written.
#[derive(Debug, thiserror::Error)]
enum StateError {
    #[error(transparent)]
    Sled(#[from] sled::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

fn state_error(subject: ErrorSubject<u64>, verb: ErrorVerb, e: StateError) -> StorageError {
    StorageIOError::new(subject, verb, &e).into()
}

fn to_key_bound(bound: Bound<&u64>) -> Bound<[u8; 8]> {
    match bound {
        Bound::Included(i) => Bound::Included(log_key(*i)),
        Bound::Excluded(i) => Bound::Excluded(log_key(*i)),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let keys = (to_key_bound(range.start_bound()), to_key_bound(range.end_bound()));
        let mut entries = Vec::new();
        for item in self.log.range(keys) {
            let (key, value) = item.map_err(|e| StorageIOError::read_logs(&e))?;
            let entry = StoredEntry::decode_record(&key, &value)
                .and_then(StoredEntry::into_entry)
                .map_err(|e| StorageIOError::read_logs(&e))?;
            entries.push(entry);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> =
            self.read_state(KEY_LAST_PURGED).map_err(|e| state_error(ErrorSubject::Logs, ErrorVerb::Read, e))?;
        let last_log_id = self.last_log_id_in_tree()?.or(last_purged_log_id);
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(term = vote.leader_id.term, node = vote.leader_id.node_id, committed = vote.committed))]
    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let record = Self::state_record(vote).map_err(|e| state_error(ErrorSubject::Vote, ErrorVerb::Write, e))?;
        self.state.insert(KEY_VOTE, record).map_err(|e| StorageIOError::write_vote(&e))?;
        // Durability point: the vote is on disk before save_vote returns.
        self.db.flush_async().await.map_err(|e| StorageIOError::write_vote(&e))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.read_state(KEY_VOTE).map_err(|e| state_error(ErrorSubject::Vote, ErrorVerb::Read, e))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let record =
            Self::state_record(&committed).map_err(|e| state_error(ErrorSubject::Store, ErrorVerb::Write, e))?;
        // Not flushed here (this runs on every commit): the next append/vote flush or sled's
        // background flush persists it. A lost commit point only means a restarted node
        // re-applies less on its own and waits for the leader to re-send the commit index.
        self.state.insert(KEY_COMMITTED, record).map_err(|e| StorageIOError::write(&e))?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let committed: Option<Option<LogId>> =
            self.read_state(KEY_COMMITTED).map_err(|e| state_error(ErrorSubject::Store, ErrorVerb::Read, e))?;
        Ok(committed.flatten())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(count = tracing::field::Empty, first = tracing::field::Empty, last = tracing::field::Empty))]
    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        self.run_deferred_purge().await?;
        let mut batch = sled::Batch::default();
        let mut count = 0u64;
        let mut first = None;
        let mut last = None;
        for entry in entries {
            let record =
                StoredEntry::from_entry(&entry).map_err(|e| StorageIOError::write_log_entry(entry.log_id, &e))?;
            batch.insert(&log_key(entry.log_id.index), record.encode());
            first.get_or_insert(entry.log_id.index);
            last = Some(entry.log_id.index);
            count += 1;
        }
        let span = tracing::Span::current();
        span.record("count", count);
        if let (Some(first), Some(last)) = (first, last) {
            span.record("first", first);
            span.record("last", last);
        }

        // The whole batch lands atomically and is readable from here on (in memory).
        self.log.apply_batch(batch).map_err(|e| StorageIOError::write_logs(&e))?;

        // Durability point (group commit): the callback that lets openraft acknowledge these
        // entries runs only after the flusher's next flush, shared with concurrent appends.
        self.flusher.submit(&self.db, callback);
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(since = log_id.index))]
    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let removed = self
            .remove_range((Bound::Included(log_key(log_id.index)), Bound::Unbounded))
            .map_err(|e| StorageIOError::write_logs(&e))?;
        tracing::debug!(removed, "truncated log suffix");
        // Durability point: removed entries cannot reappear after a crash. (Strictly the next
        // append's flush would cover it; truncation is rare, so make it explicit.)
        self.db.flush_async().await.map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(upto = log_id.index))]
    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        if !self.limit.allows(log_id.index) {
            tracing::info!(upto = log_id.index, "purge deferred: no durable snapshot covers it yet");
            let mut deferred = self.deferred.lock().unwrap_or_else(|p| p.into_inner());
            if deferred.as_ref().is_none_or(|d| d.index < log_id.index) {
                *deferred = Some(log_id);
            }
            return Ok(());
        }
        // A deferred purge this one covers is done with it (and must never run later: it would
        // move the purge point back).
        {
            let mut deferred = self.deferred.lock().unwrap_or_else(|p| p.into_inner());
            if deferred.as_ref().is_some_and(|d| d.index <= log_id.index) {
                *deferred = None;
            }
        }
        self.purge_now(log_id).await
    }
}

impl LogStore {
    /// Runs a deferred purge once the limit allows it.
    async fn run_deferred_purge(&mut self) -> Result<(), StorageError> {
        let due = {
            let mut deferred = self.deferred.lock().unwrap_or_else(|p| p.into_inner());
            match *deferred {
                Some(d) if self.limit.allows(d.index) => deferred.take(),
                _ => None,
            }
        };
        match due {
            Some(log_id) => self.purge_now(log_id).await,
            None => Ok(()),
        }
    }

    async fn purge_now(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let record = Self::state_record(&log_id).map_err(|e| state_error(ErrorSubject::Logs, ErrorVerb::Write, e))?;
        self.state.insert(KEY_LAST_PURGED, record).map_err(|e| StorageIOError::write_logs(&e))?;
        // Durability point: the purge point is on disk before any entry is removed, so after a
        // crash the log state never reports entries that are gone.
        self.db.flush_async().await.map_err(|e| StorageIOError::write_logs(&e))?;
        let removed = self
            .remove_range((Bound::Unbounded, Bound::Included(log_key(log_id.index))))
            .map_err(|e| StorageIOError::write_logs(&e))?;
        tracing::debug!(removed, "purged log prefix");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use openraft::{BasicNode, Membership};
    use parley_storage::{Command, CommandKind};
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    fn log_id(term: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn sample_entries() -> Vec<Entry> {
        let cmd = Command {
            ts: 42,
            kind: CommandKind::Register {
                user_id: "alice".into(),
                display_name: "Alice".into(),
                password_hash: "$argon2id$x".into(),
            },
        };
        let nodes = BTreeMap::from([(1u64, BasicNode::new("http://127.0.0.1:1"))]);
        let membership = Membership::new(vec![BTreeSet::from([1u64])], nodes);
        vec![
            Entry { log_id: log_id(1, 1), payload: EntryPayload::Blank },
            Entry {
                log_id: log_id(1, 2),
                payload: EntryPayload::Normal(CommandBatch {
                    commands: vec![cmd],
                    request_ids: vec![parley_storage::RequestId { node: 1, nonce: [7; 16] }],
                }),
            },
            Entry { log_id: log_id(2, 3), payload: EntryPayload::Membership(membership) },
        ]
    }

    #[test]
    fn stored_entry_round_trips() {
        for entry in sample_entries() {
            let stored = StoredEntry::from_entry(&entry).unwrap();
            let bytes = stored.encode();
            let back = StoredEntry::decode(&bytes).unwrap();
            assert_eq!(back, stored);
            let entry_back = back.into_entry().unwrap();
            assert_eq!(entry_back.log_id, entry.log_id);
            assert_eq!(format!("{:?}", entry_back.payload), format!("{:?}", entry.payload));
        }
    }

    #[test]
    fn log_keys_are_big_endian_indexes() {
        assert_eq!(log_key(1), [0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(log_key(0x0102), [0, 0, 0, 0, 0, 0, 1, 2]);
        assert!(log_key(255) < log_key(256), "byte order must be numeric order");
    }

    #[test]
    fn corrupt_records_are_errors_not_panics() {
        let entries = sample_entries();
        let bytes = StoredEntry::from_entry(&entries[1]).unwrap().encode();

        // A flipped bit anywhere is caught by the frame checksum.
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x40;
            assert!(StoredEntry::decode(&damaged).is_err(), "flip at byte {i} not detected");
        }
        // Truncation and garbage.
        assert!(StoredEntry::decode(&bytes[..bytes.len() / 2]).is_err());
        assert!(StoredEntry::decode(&[]).is_err());
        // A well-framed record whose payload is not a valid rkyv StoredEntry.
        assert!(matches!(StoredEntry::decode(&frame::seal(&[0xff; 7])), Err(EntryCodecError::Rkyv(_))));
        // A valid entry whose nested command bytes are garbage.
        let nested =
            StoredEntry { term: 1, leader_node_id: 1, index: 9, payload: StoredPayload::Normal(vec![1, 2, 3]) };
        let decoded = StoredEntry::decode(&nested.encode()).unwrap();
        assert!(matches!(decoded.into_entry(), Err(EntryCodecError::Rkyv(_))));
        // An entry stored under the wrong key.
        assert!(matches!(
            StoredEntry::decode_record(&log_key(3), &bytes),
            Err(EntryCodecError::IndexMismatch { key: 3, stored: 2 })
        ));
    }

    /// An entry logged before request ids (payload variant `Normal`, a batch of commands
    /// only) still reads back, as a batch without ids.
    #[test]
    fn an_entry_from_before_request_ids_reads_back_without_ids() {
        let Entry { payload: EntryPayload::Normal(batch), .. } = &sample_entries()[1] else { unreachable!() };
        let old = CommandBatchV1 { commands: batch.commands.clone() };
        let stored =
            StoredEntry { term: 1, leader_node_id: 1, index: 2, payload: StoredPayload::Normal(codec::encode(&old)) };
        let back = StoredEntry::decode(&stored.encode()).unwrap().into_entry().unwrap();
        let EntryPayload::Normal(back) = back.payload else { panic!("not a normal entry") };
        assert_eq!(back.commands, batch.commands);
        assert!(back.request_ids.is_empty());
    }

    #[tokio::test]
    async fn a_purge_past_the_limit_waits_for_it_and_never_moves_back() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let mut store = LogStore::open(db.clone()).unwrap();
        let limit = PurgeLimit::upto(None);
        store.limit_purges(limit.clone());
        let log = db.open_tree(LOG_TREE).unwrap();
        let entries = sample_entries();
        for entry in &entries {
            log.insert(log_key(entry.log_id.index), StoredEntry::from_entry(entry).unwrap().encode()).unwrap();
        }
        let (second, last) = (entries[1].log_id, entries.last().unwrap().log_id);

        // Nothing durable covers it: the purge removes and records nothing.
        store.purge(second).await.unwrap();
        assert_eq!(store.get_log_state().await.unwrap().last_purged_log_id, None);
        assert_eq!(store.try_get_log_entries(0..100).await.unwrap().len(), entries.len());

        // Once the state machine has recorded a snapshot covering it, it runs (before an append).
        limit.raise(second.index);
        store.run_deferred_purge().await.unwrap();
        assert_eq!(store.get_log_state().await.unwrap().last_purged_log_id, Some(second));
        assert!(store.try_get_log_entries(0..=second.index).await.unwrap().is_empty());

        // A later, larger purge supersedes a deferred smaller one, which never runs after it.
        store.purge(last).await.unwrap();
        assert_eq!(store.get_log_state().await.unwrap().last_purged_log_id, Some(second));
        let beyond = log_id(2, last.index + 7);
        limit.raise(beyond.index);
        store.purge(beyond).await.unwrap();
        store.run_deferred_purge().await.unwrap();
        assert_eq!(store.get_log_state().await.unwrap().last_purged_log_id, Some(beyond));
    }

    #[tokio::test]
    async fn legacy_raft_trees_move_into_the_log_db() {
        let dir = tempfile::tempdir().unwrap();
        let old = sled::Config::new().path(dir.path().join("db")).open().unwrap();
        let new = sled::Config::new().path(dir.path().join("raft")).open().unwrap();
        let mut legacy = LogStore::open(old.clone()).unwrap();
        let vote = Vote::new(3, 1);
        legacy.save_vote(&vote).await.unwrap();
        let log = old.open_tree(LOG_TREE).unwrap();
        for entry in sample_entries() {
            log.insert(log_key(entry.log_id.index), StoredEntry::from_entry(&entry).unwrap().encode()).unwrap();
        }
        drop(legacy);

        assert!(LogStore::adopt_legacy(&old, &new).unwrap());
        let names = old.tree_names();
        assert!(!names.iter().any(|n| n.as_ref() == LOG_TREE.as_bytes() || n.as_ref() == STATE_TREE.as_bytes()));
        let mut moved = LogStore::open(new.clone()).unwrap();
        assert_eq!(moved.read_vote().await.unwrap(), Some(vote));
        let entries = moved.try_get_log_entries(0..10).await.unwrap();
        assert_eq!(
            entries.iter().map(|e| e.log_id).collect::<Vec<_>>(),
            vec![log_id(1, 1), log_id(1, 2), log_id(2, 3)]
        );
        // Second start: nothing left to adopt, nothing changed.
        assert!(!LogStore::adopt_legacy(&old, &new).unwrap());
        assert_eq!(moved.read_vote().await.unwrap(), Some(vote));
    }

    #[tokio::test]
    async fn corrupt_log_record_surfaces_as_storage_error() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let mut store = LogStore::open(db.clone()).unwrap();
        let tree = db.open_tree(LOG_TREE).unwrap();
        tree.insert(log_key(1), &b"\x01\0\0\0\0garbage"[..]).unwrap();
        assert!(store.try_get_log_entries(0..10).await.is_err());
        assert!(store.get_log_state().await.is_err());

        let state = db.open_tree(STATE_TREE).unwrap();
        state.insert(KEY_VOTE, &b"not a frame"[..]).unwrap();
        assert!(store.read_vote().await.is_err());
    }
}
