//! The raft state machine: committed entries in, [`parley_storage::Store`] transactions out.
//!
//! Owns the adapter between openraft's apply/snapshot calls and the storage engine, plus one
//! tree of the shared `sled::Db`:
//!
//! | tree            | key        | value                                                    |
//! |-----------------|------------|----------------------------------------------------------|
//! | `raft_snapshot` | `b"meta"`  | framed JSON [`SnapshotMeta`] of the current snapshot     |
//! |                 | `b"data"`  | framed bytes of that snapshot (`Store::export_snapshot`) |
//!
//! and two meta keys inside the [`Store`], written in the same atomic commit as the batch they
//! describe: `raft_last_applied` (framed JSON `Option<LogId>`) and `raft_membership` (framed
//! JSON [`StoredMembership`]).
//!
//! Invariants:
//! - one `Store` transaction per apply batch; projections, journal, last-applied and membership
//!   commit together or not at all;
//! - a commit error is returned as a [`StorageError`] (openraft stops the node); no entry is
//!   ever skipped;
//! - the [`ApplyListener`] hears about a batch only after its commit;
//! - a snapshot's bytes and its meta describe the same state: building takes a read gate that
//!   excludes apply, and the db is flushed first, so logs purged behind a snapshot are never the
//!   only copy of applied state.

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, StorageIOError};
use parley_storage::{AppliedEntry, BatchOutcome, Outcome, Store, StoreError};
use serde::de::DeserializeOwned;
use tokio::sync::RwLock;

use crate::frame::{self, FrameError};
use crate::types::{Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig};

/// Tree holding the current snapshot (meta + data).
pub const SNAPSHOT_TREE: &str = "raft_snapshot";
/// Store meta key: the last applied log id.
pub const META_LAST_APPLIED: &str = "raft_last_applied";
/// Store meta key: the last applied membership.
pub const META_MEMBERSHIP: &str = "raft_membership";

const KEY_SNAPSHOT_META: &[u8] = b"meta";
const KEY_SNAPSHOT_DATA: &[u8] = b"data";

/// Hears about every committed apply batch, after it is committed (the API's WebSocket hub
/// implements it to fan events out).
///
/// `entries` are the journal entries appended by the batch, in cursor order (possibly none);
/// `applied_cursor` is the journal head after it. After a snapshot install `entries` is empty
/// and the cursor may jump: listeners resynchronise from the store.
///
/// Called on the state machine's task, between apply batches: it must not block (hand the
/// entries to a bounded channel or broadcast and return).
pub trait ApplyListener: Send + Sync + 'static {
    fn applied(&self, entries: &[AppliedEntry], applied_cursor: u64);
}

/// A listener that ignores everything (tests, tools).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopListener;

impl ApplyListener for NoopListener {
    fn applied(&self, _entries: &[AppliedEntry], _applied_cursor: u64) {}
}

struct Shared {
    db: sled::Db,
    store: Store,
    snapshots: sled::Tree,
    listener: Arc<dyn ApplyListener>,
    /// Held for writing while a batch or a snapshot is applied, for reading while a snapshot
    /// is exported, so an export never sees half a batch.
    gate: RwLock<()>,
}

/// The raft state machine over a [`Store`].
#[derive(Clone)]
pub struct StateMachine {
    shared: Arc<Shared>,
}

/// Builds snapshots concurrently with apply (openraft runs it in its own task).
pub struct SnapshotBuilder {
    shared: Arc<Shared>,
}

/// A snapshot or meta record that could not be read or written.
#[derive(Debug, thiserror::Error)]
enum RecordError {
    #[error(transparent)]
    Sled(#[from] sled::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("snapshot record incomplete: meta present {meta}, data present {data}")]
    Incomplete { meta: bool, data: bool },
    #[error("background task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

fn sm_error(verb: ErrorVerb, e: RecordError) -> StorageError {
    StorageIOError::new(ErrorSubject::StateMachine, verb, &e).into()
}

fn snapshot_error(meta: Option<&SnapshotMeta>, verb: ErrorVerb, e: RecordError) -> StorageError {
    StorageIOError::new(ErrorSubject::Snapshot(meta.map(SnapshotMeta::signature)), verb, &e).into()
}

fn json_record<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, RecordError> {
    Ok(frame::seal(&serde_json::to_vec(value)?))
}

fn from_json_record<T: DeserializeOwned>(raw: &[u8]) -> Result<T, RecordError> {
    Ok(serde_json::from_slice(frame::open(raw)?)?)
}

impl StateMachine {
    /// Wraps `store`, whose `sled::Db` is `db` (the log store's Db too).
    pub fn open(db: sled::Db, store: Store, listener: Arc<dyn ApplyListener>) -> Result<StateMachine, sled::Error> {
        let snapshots = db.open_tree(SNAPSHOT_TREE)?;
        Ok(StateMachine { shared: Arc::new(Shared { db, store, snapshots, listener, gate: RwLock::new(()) }) })
    }

    /// The storage engine this state machine applies to (for reads).
    pub fn store(&self) -> &Store {
        &self.shared.store
    }
}

impl Shared {
    fn read_applied_state(&self) -> Result<(Option<LogId>, StoredMembership), RecordError> {
        let last_applied = match self.store.meta(META_LAST_APPLIED)? {
            Some(raw) => from_json_record::<Option<LogId>>(&raw)?,
            None => None,
        };
        let membership = match self.store.meta(META_MEMBERSHIP)? {
            Some(raw) => from_json_record::<StoredMembership>(&raw)?,
            None => StoredMembership::default(),
        };
        Ok((last_applied, membership))
    }

    /// Records `meta`/`data` as the current snapshot, replacing the previous one.
    async fn save_current_snapshot(&self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), RecordError> {
        let mut batch = sled::Batch::default();
        batch.insert(KEY_SNAPSHOT_META, json_record(meta)?);
        batch.insert(KEY_SNAPSHOT_DATA, frame::seal(data));
        // Meta and data replace the previous snapshot together (one batch, one tree).
        self.snapshots.apply_batch(batch)?;
        // Durability point: the snapshot survives a restart before openraft purges logs it covers.
        self.db.flush_async().await?;
        Ok(())
    }

    fn load_current_snapshot(&self) -> Result<Option<(SnapshotMeta, Vec<u8>)>, RecordError> {
        let meta = self.snapshots.get(KEY_SNAPSHOT_META)?;
        let data = self.snapshots.get(KEY_SNAPSHOT_DATA)?;
        match (meta, data) {
            (None, None) => Ok(None),
            (Some(meta), Some(data)) => {
                let meta: SnapshotMeta = from_json_record(&meta)?;
                let data = frame::open(&data)?.to_vec();
                Ok(Some((meta, data)))
            }
            (meta, data) => Err(RecordError::Incomplete { meta: meta.is_some(), data: data.is_some() }),
        }
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        self.shared.read_applied_state().map_err(|e| sm_error(ErrorVerb::Read, e))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(count = tracing::field::Empty, last_index = tracing::field::Empty, cursor = tracing::field::Empty))]
    async fn apply<I>(&mut self, entries: I) -> Result<Vec<BatchOutcome>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let Some(last_log_id) = entries.last().map(|e| e.log_id) else {
            return Ok(Vec::new());
        };
        let span = tracing::Span::current();
        span.record("count", entries.len());
        span.record("last_index", last_log_id.index);

        let shared = &self.shared;
        let started = std::time::Instant::now();
        let gate = shared.gate.write().await;
        let mut cursor = shared.store.applied_cursor();
        let mut tx = shared.store.begin();
        let mut replies = Vec::with_capacity(entries.len());
        let mut membership = None;
        for entry in &entries {
            match &entry.payload {
                EntryPayload::Normal(batch) => {
                    let mut outcomes = Vec::with_capacity(batch.commands.len());
                    for cmd in &batch.commands {
                        // A storage error here is fatal: the whole batch is abandoned
                        // uncommitted and openraft stops the node; nothing is skipped.
                        let outcome = parley_storage::execute(&mut tx, cmd)
                            .map_err(|e| -> StorageError { StorageIOError::apply(entry.log_id, &e).into() })?;
                        cursor = cursor.max(outcome.cursor);
                        outcomes.push(outcome);
                    }
                    replies.push(BatchOutcome { outcomes });
                }
                EntryPayload::Blank => replies.push(blank_outcome(cursor)),
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(entry.log_id), m.clone()));
                    replies.push(blank_outcome(cursor));
                }
            }
        }
        let apply_error = |e: RecordError| -> StorageError { StorageIOError::apply(last_log_id, &e).into() };
        tx.put_meta(META_LAST_APPLIED, json_record(&Some(last_log_id)).map_err(apply_error)?);
        if let Some(membership) = &membership {
            tx.put_meta(META_MEMBERSHIP, json_record(membership).map_err(apply_error)?);
        }
        // One atomic sled transaction for the batch. Not flushed here: the entries are already
        // durable in the raft log, so a crash re-applies them from there (see
        // `LogStore::save_committed`); snapshots flush before they are taken.
        let applied = tx.commit().map_err(|e| apply_error(RecordError::Store(e)))?;
        let applied_cursor = shared.store.applied_cursor();
        drop(gate);
        span.record("cursor", applied_cursor);
        tracing::trace!(entries = entries.len(), micros = started.elapsed().as_micros() as u64, "batch applied");

        shared.listener.applied(&applied, applied_cursor);
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { shared: self.shared.clone() }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    #[tracing::instrument(level = "info", skip_all, fields(snapshot_id = %meta.snapshot_id, last_index = ?meta.last_log_id.map(|l| l.index)))]
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let shared = &self.shared;
        let write_error = |e: RecordError| snapshot_error(Some(meta), ErrorVerb::Write, e);
        let data = snapshot.into_inner();
        let gate = shared.gate.write().await;

        let store = shared.store.clone();
        let data = tokio::task::spawn_blocking(move || store.install_snapshot(&data).map(|()| data))
            .await
            .map_err(RecordError::from)
            .and_then(|r| r.map_err(RecordError::from))
            .map_err(write_error)?;

        // The snapshot's own log id and membership become this node's applied state.
        let mut tx = shared.store.begin();
        tx.put_meta(META_LAST_APPLIED, json_record(&meta.last_log_id).map_err(write_error)?);
        tx.put_meta(META_MEMBERSHIP, json_record(&meta.last_membership).map_err(write_error)?);
        tx.commit().map_err(|e| write_error(e.into()))?;

        // Flushes the installed state, its raft meta and the snapshot record together.
        shared.save_current_snapshot(meta, &data).await.map_err(write_error)?;
        let applied_cursor = shared.store.applied_cursor();
        drop(gate);

        shared.listener.applied(&[], applied_cursor);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let current = self.shared.load_current_snapshot().map_err(|e| snapshot_error(None, ErrorVerb::Read, e))?;
        Ok(current.map(|(meta, data)| Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    #[tracing::instrument(level = "info", skip_all, fields(snapshot_id = tracing::field::Empty, bytes = tracing::field::Empty))]
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let shared = &self.shared;
        let build_error = |e: RecordError| snapshot_error(None, ErrorVerb::Read, e);

        // Excludes apply until the export is done: meta and bytes describe the same batch.
        let gate = shared.gate.read().await;
        // Durability point: all applied state is on disk before a snapshot lets logs be purged.
        shared.db.flush_async().await.map_err(|e| build_error(e.into()))?;
        let (last_log_id, last_membership) = shared.read_applied_state().map_err(build_error)?;
        let store = shared.store.clone();
        let data = tokio::task::spawn_blocking(move || store.export_snapshot())
            .await
            .map_err(RecordError::from)
            .and_then(|r| r.map_err(RecordError::from))
            .map_err(build_error)?;

        // sled ids are unique across restarts, so two snapshots at one log id differ in id.
        let seq = shared.db.generate_id().map_err(|e| build_error(e.into()))?;
        let snapshot_id = match last_log_id {
            Some(l) => format!("{}-{}-{}-{seq}", l.leader_id.term, l.leader_id.node_id, l.index),
            None => format!("none-{seq}"),
        };
        let meta = SnapshotMeta { last_log_id, last_membership, snapshot_id };
        let span = tracing::Span::current();
        span.record("snapshot_id", meta.snapshot_id.as_str());
        span.record("bytes", data.len());

        shared
            .save_current_snapshot(&meta, &data)
            .await
            .map_err(|e| snapshot_error(Some(&meta), ErrorVerb::Write, e))?;
        // Released only now, so a snapshot installed meanwhile is not overwritten by this one.
        drop(gate);
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

/// The answer to an entry that carries no command (blank, membership): the cursor it saw.
fn blank_outcome(cursor: u64) -> BatchOutcome {
    BatchOutcome { outcomes: vec![Outcome { cursor, ..Outcome::default() }] }
}
