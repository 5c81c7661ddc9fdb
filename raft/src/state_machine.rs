//! The raft state machine: committed entries in, [`parley_storage::Store`] transactions out.
//!
//! Owns the adapter between openraft's apply/snapshot calls and the storage engine, plus one
//! tree of the state db:
//!
//! | tree            | key          | value                                                        |
//! |-----------------|--------------|--------------------------------------------------------------|
//! | `raft_snapshot` | `b"current"` | framed wire-encoded `(SnapshotMeta, Manifest)`: the current snapshot |
//!
//! and three meta keys inside the [`Store`], written in the same atomic commit as the state
//! they describe: `raft_last_applied` (framed JSON `Option<LogId>`), `raft_membership` (framed
//! JSON [`StoredMembership`]) and, only while a snapshot is being installed,
//! `raft_installing` (framed wire-encoded `(SnapshotMeta, Manifest)`).
//!
//! **Snapshots are journal pointers** ([`crate::snapshot`]). Building one reads the last
//! applied log id, the membership and the journal head (one consistent read between two apply
//! batches), then records them and flushes the state db: O(1) in history, and apply goes on.
//! The flush is what lets openraft purge the log behind the snapshot.
//!
//! **Installing one** pulls the journal the node lacks from other nodes and applies it, page
//! by page. The first commit of an install writes the snapshot's log id as last-applied,
//! its membership, and the `raft_installing` marker; the last one removes the marker. While
//! the marker is set the node is *installing*: [`StateMachine::is_installing`] is true and the
//! API refuses to serve reads, since the projections stand somewhere between the old head and
//! the manifest's. A node that stops mid-install finds the marker at start and finishes the
//! pull first (before it applies anything else, builds a snapshot or serves a read); because
//! last-applied already names the snapshot, openraft never re-applies log entries that the
//! pulled journal covers.
//!
//! Invariants:
//! - one `Store` transaction per apply batch; projections, journal, last-applied and membership
//!   commit together or not at all;
//! - a commit error is returned as a [`StorageError`] (openraft stops the node); no entry is
//!   ever skipped;
//! - the [`ApplyListener`] hears about a batch only after its commit;
//! - apply, install and the head read of a snapshot build are serialised by one gate, so a
//!   manifest's head and log id describe the same batch boundary, and the state db is flushed
//!   before a snapshot is recorded, so logs purged behind it are never the only copy of
//!   applied state.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, StorageIOError};
use parley_storage::{AppliedEntry, BatchOutcome, Outcome, Store, StoreError};
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;

use crate::frame::{self, FrameError};
use crate::log_store::PurgeLimit;
use crate::snapshot::{self, CatchUpError, JournalSource, Manifest};
use crate::types::{Entry, LogId, NodeId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use crate::wire::{self, WireError};

/// Tree holding the current snapshot record.
pub const SNAPSHOT_TREE: &str = "raft_snapshot";
/// Store meta key: the last applied log id.
pub const META_LAST_APPLIED: &str = "raft_last_applied";
/// Store meta key: the last applied membership.
pub const META_MEMBERSHIP: &str = "raft_membership";
/// Store meta key: the snapshot being installed (empty value = none).
pub const META_INSTALLING: &str = "raft_installing";

const KEY_CURRENT: &[u8] = b"current";
/// Keys of the whole-state snapshots written before snapshots became journal pointers.
const LEGACY_KEYS: [&[u8]; 2] = [b"meta", b"data"];

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

/// Where an install pulls the journal from: this node's id (to skip itself) and the network.
struct Puller {
    node_id: NodeId,
    source: Arc<dyn JournalSource>,
}

struct Shared {
    db: sled::Db,
    store: Store,
    snapshots: sled::Tree,
    listener: Arc<dyn ApplyListener>,
    /// Held while a batch is applied, a snapshot installed (or resumed), and while a snapshot
    /// build reads the applied state, so none of them sees another half done.
    gate: Mutex<()>,
    /// Set once the network exists (see [`StateMachine::set_journal_source`]).
    puller: OnceLock<Puller>,
    /// Whether a snapshot install is under way (the `raft_installing` marker is set).
    installing: AtomicBool,
    /// Orders writes of the current snapshot record.
    record_order: std::sync::Mutex<()>,
    /// How far the log store may purge: what durably recorded snapshots cover.
    purge_limit: PurgeLimit,
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
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error(transparent)]
    CatchUp(#[from] CatchUpError),
    #[error("installed journal head {got} differs from the snapshot's {want}")]
    HeadMismatch { got: u64, want: u64 },
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

fn snapshot_record(meta: &SnapshotMeta, manifest: &Manifest) -> Result<Vec<u8>, RecordError> {
    Ok(frame::seal(&wire::encode(&(meta, manifest))?))
}

fn from_snapshot_record(raw: &[u8]) -> Result<(SnapshotMeta, Manifest), RecordError> {
    let payload = frame::open(raw)?;
    match wire::decode(payload) {
        // Recorded by a parley from before request ids (wire v2): a manifest without a table.
        Err(WireError::Version { theirs: 2, .. }) => {
            let (meta, old): (SnapshotMeta, snapshot::ManifestV2) = wire::decode_v2(payload)?;
            Ok((meta, old.into()))
        }
        decoded => Ok(decoded?),
    }
}

impl StateMachine {
    /// Wraps `store`, whose `sled::Db` is `db`. A snapshot record from before snapshots were
    /// journal pointers (a whole-state blob) is replaced by a manifest of the applied state.
    pub fn open(
        db: sled::Db,
        store: Store,
        listener: Arc<dyn ApplyListener>,
    ) -> Result<StateMachine, crate::error::RaftError> {
        let open_error = |e: RecordError| crate::error::RaftError::from(sm_error(ErrorVerb::Read, e));
        let snapshots = db.open_tree(SNAPSHOT_TREE).map_err(|e| open_error(e.into()))?;
        let shared = Shared {
            db,
            store,
            snapshots,
            listener,
            gate: Mutex::new(()),
            puller: OnceLock::new(),
            installing: AtomicBool::new(false),
            record_order: std::sync::Mutex::new(()),
            purge_limit: PurgeLimit::upto(None),
        };
        let pending = shared.pending_install().map_err(open_error)?;
        shared.installing.store(pending.is_some(), Ordering::SeqCst);
        shared.migrate_legacy_snapshot().map_err(open_error)?;
        let current = shared.load_current_snapshot().map_err(open_error)?;
        for (meta, _) in current.iter().chain(pending.iter()) {
            if let Some(l) = meta.last_log_id {
                shared.purge_limit.raise(l.index);
            }
        }
        Ok(StateMachine { shared: Arc::new(shared) })
    }

    /// How far the log may be purged (give it to the [`crate::LogStore`]: `limit_purges`).
    pub fn purge_limit(&self) -> PurgeLimit {
        self.shared.purge_limit.clone()
    }

    /// Lets installs pull the journal through `source`; `node_id` is this node (never asked).
    pub fn set_journal_source(&self, node_id: NodeId, source: Arc<dyn JournalSource>) {
        let _ = self.shared.puller.set(Puller { node_id, source });
    }

    /// The storage engine this state machine applies to (for reads).
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// Whether a snapshot install is under way: the projections are not at any raft state and
    /// must not be served.
    pub fn is_installing(&self) -> bool {
        self.shared.installing.load(Ordering::SeqCst)
    }

    /// Finishes an install that a stop interrupted (no-op when there is none). Runs at start so
    /// the node serves again without waiting for the next entry.
    pub async fn resume_install(&self) -> Result<(), StorageError> {
        let _gate = self.shared.gate.lock().await;
        self.shared.finish_pending_install().await.map_err(|e| snapshot_error(None, ErrorVerb::Write, e))
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

    fn pending_install(&self) -> Result<Option<(SnapshotMeta, Manifest)>, RecordError> {
        match self.store.meta(META_INSTALLING)? {
            Some(raw) if !raw.is_empty() => Ok(Some(from_snapshot_record(&raw)?)),
            _ => Ok(None),
        }
    }

    /// Records `meta`/`manifest` as the current snapshot, replacing the previous one, and
    /// flushes the state db: everything applied so far, and the record, are then on disk.
    async fn save_current_snapshot(&self, meta: &SnapshotMeta, manifest: &Manifest) -> Result<(), RecordError> {
        let stored = Manifest { source: None, ..manifest.clone() };
        {
            // A build that read its state before an install finished must not replace the
            // installed (newer) snapshot: the record only moves forward.
            let _order = self.record_order.lock().unwrap_or_else(|p| p.into_inner());
            let newer = match self.load_current_snapshot()? {
                Some((current, _)) => meta.last_log_id >= current.last_log_id,
                None => true,
            };
            if newer {
                self.snapshots.insert(KEY_CURRENT, snapshot_record(meta, &stored)?)?;
            }
        }
        // Durability point: the applied state and the snapshot survive a restart before
        // openraft purges logs the snapshot covers; only then may the log store do so.
        self.db.flush_async().await?;
        if let Some(l) = meta.last_log_id {
            self.purge_limit.raise(l.index);
        }
        Ok(())
    }

    fn load_current_snapshot(&self) -> Result<Option<(SnapshotMeta, Manifest)>, RecordError> {
        match self.snapshots.get(KEY_CURRENT)? {
            Some(raw) => Ok(Some(from_snapshot_record(&raw)?)),
            None => Ok(None),
        }
    }

    /// A data dir from before journal-pointer snapshots holds a whole-state blob: drop it, and
    /// record a manifest of the applied state instead (it covers at least as much of the log).
    fn migrate_legacy_snapshot(&self) -> Result<(), RecordError> {
        if self.snapshots.get(LEGACY_KEYS[1])?.is_none() {
            return Ok(());
        }
        let (last_applied, last_membership) = self.read_applied_state()?;
        let head = self.store.head()?;
        if last_applied.is_some() && self.pending_install()?.is_none() {
            let seq = self.db.generate_id()?;
            let meta =
                SnapshotMeta { last_log_id: last_applied, last_membership, snapshot_id: format!("migrated-{seq}") };
            let requests = parley_storage::requests::export(&self.store)?;
            let manifest = Manifest { head_cursor: head.cursor, head_hash: head.hash, source: None, requests };
            self.snapshots.insert(KEY_CURRENT, snapshot_record(&meta, &manifest)?)?;
        }
        for key in LEGACY_KEYS {
            self.snapshots.remove(key)?;
        }
        self.db.flush()?;
        tracing::info!(
            head = head.cursor,
            "replaced a whole-state snapshot from an older parley by a journal manifest"
        );
        Ok(())
    }

    /// Installs `meta`/`manifest`: marks the install, pulls and applies the journal up to the
    /// manifest's head, then records the snapshot. The caller holds the gate.
    async fn install(&self, meta: &SnapshotMeta, manifest: &Manifest) -> Result<(), RecordError> {
        let mut tx = self.store.begin();
        tx.put_meta(META_LAST_APPLIED, json_record(&meta.last_log_id)?);
        tx.put_meta(META_MEMBERSHIP, json_record(&meta.last_membership)?);
        tx.put_meta(META_INSTALLING, snapshot_record(meta, manifest)?);
        // The request table as of the snapshot: the log entries after it are applied against
        // it, exactly as on the nodes that applied everything.
        parley_storage::requests::import(&mut tx, &manifest.requests)?;
        tx.commit()?;
        // Durability point: once the marker is on disk a restart resumes this install, so the
        // log it covers may go.
        self.db.flush_async().await?;
        if let Some(l) = meta.last_log_id {
            self.purge_limit.raise(l.index);
        }
        self.installing.store(true, Ordering::SeqCst);
        self.complete_install(meta, manifest).await
    }

    /// Finishes the install the marker names, if any. The caller holds the gate.
    async fn finish_pending_install(&self) -> Result<(), RecordError> {
        match self.pending_install()? {
            Some((meta, manifest)) => {
                tracing::info!(target_cursor = manifest.head_cursor, "resuming an interrupted snapshot install");
                self.complete_install(&meta, &manifest).await
            }
            None => Ok(()),
        }
    }

    async fn complete_install(&self, meta: &SnapshotMeta, manifest: &Manifest) -> Result<(), RecordError> {
        let started = std::time::Instant::now();
        let from = self.store.head()?.cursor;
        let pulled = match self.puller.get() {
            Some(p) => {
                let sources = install_sources(manifest, meta, p.node_id);
                snapshot::catch_up(&self.store, manifest, &sources, p.source.as_ref()).await?
            }
            // No network (tools, tests): only a snapshot this node already holds installs.
            None => snapshot::catch_up(&self.store, manifest, &[], &NoSource).await?,
        };
        let head = self.store.head()?;
        if head.cursor != manifest.head_cursor {
            return Err(RecordError::HeadMismatch { got: head.cursor, want: manifest.head_cursor });
        }
        let mut tx = self.store.begin();
        tx.put_meta(META_INSTALLING, Vec::new());
        tx.commit()?;
        self.save_current_snapshot(meta, manifest).await?;
        self.installing.store(false, Ordering::SeqCst);
        let secs = started.elapsed().as_secs_f64();
        tracing::info!(
            from,
            to = head.cursor,
            pulled,
            secs,
            per_sec = (pulled as f64 / secs.max(1e-6)) as u64,
            "snapshot installed"
        );
        self.listener.applied(&[], head.cursor);
        Ok(())
    }
}

/// The nodes to pull from: the manifest's sender first, then every other member.
fn install_sources(manifest: &Manifest, meta: &SnapshotMeta, me: NodeId) -> Vec<String> {
    let mut out: Vec<String> = manifest.source.iter().cloned().collect();
    for (id, node) in meta.last_membership.membership().nodes() {
        if *id != me && !out.contains(&node.addr) {
            out.push(node.addr.clone());
        }
    }
    out
}

/// The source of a node without a network: it has no journal to offer.
struct NoSource;

impl JournalSource for NoSource {
    fn page<'a>(
        &'a self,
        _addr: &'a str,
        _req: crate::wire::PageRequest,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<crate::wire::Page, String>> + Send + 'a>> {
        Box::pin(async { Err("no network".to_string()) })
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
        let gate = shared.gate.lock().await;
        let apply_error = |e: RecordError| -> StorageError { StorageIOError::apply(last_log_id, &e).into() };
        // An install interrupted by a stop is finished before anything is applied on top.
        if shared.installing.load(Ordering::SeqCst) {
            shared.finish_pending_install().await.map_err(apply_error)?;
        }
        let mut cursor = shared.store.applied_cursor();
        let mut tx = shared.store.begin();
        let mut replies = Vec::with_capacity(entries.len());
        let mut membership = None;
        for entry in &entries {
            match &entry.payload {
                EntryPayload::Normal(batch) => {
                    let mut outcomes = Vec::with_capacity(batch.commands.len());
                    for (i, cmd) in batch.commands.iter().enumerate() {
                        // A storage error here is fatal: the whole batch is abandoned
                        // uncommitted and openraft stops the node; nothing is skipped. A
                        // request id applied before answers its first outcome, unapplied.
                        let outcome = parley_storage::execute_once(&mut tx, batch.request_id(i), cmd)
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
        tx.put_meta(META_LAST_APPLIED, json_record(&Some(last_log_id)).map_err(apply_error)?);
        if let Some(membership) = &membership {
            tx.put_meta(META_MEMBERSHIP, json_record(membership).map_err(apply_error)?);
        }
        // One atomic sled transaction for the batch. Not flushed here: the entries are already
        // durable in the raft log, so a crash re-applies them from there (see
        // `LogStore::save_committed`); snapshots flush before they are recorded.
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

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Manifest>, StorageError> {
        Ok(Box::default())
    }

    #[tracing::instrument(level = "info", skip_all, fields(snapshot_id = %meta.snapshot_id, last_index = ?meta.last_log_id.map(|l| l.index), head = snapshot.head_cursor))]
    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: Box<Manifest>) -> Result<(), StorageError> {
        let shared = &self.shared;
        let write_error = |e: RecordError| snapshot_error(Some(meta), ErrorVerb::Write, e);
        let _gate = shared.gate.lock().await;
        shared.finish_pending_install().await.map_err(write_error)?;
        shared.install(meta, &snapshot).await.map_err(write_error)
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let read_error = |e| snapshot_error(None, ErrorVerb::Read, e);
        // An install this node has begun (its marker is durable, and last-applied already names
        // it) is its snapshot as far as raft is concerned: at start openraft checks that the log
        // is purged no further than the snapshot, and it purges up to last-applied. The node
        // finishes the pull before it serves, builds or leads (`finish_pending_install`).
        if let Some((meta, manifest)) = self.shared.pending_install().map_err(read_error)? {
            return Ok(Some(Snapshot { meta, snapshot: Box::new(manifest) }));
        }
        let current = self.shared.load_current_snapshot().map_err(read_error)?;
        Ok(current.map(|(meta, manifest)| Snapshot { meta, snapshot: Box::new(manifest) }))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    #[tracing::instrument(level = "info", skip_all, fields(snapshot_id = tracing::field::Empty, head = tracing::field::Empty))]
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let shared = &self.shared;
        let build_error = |e: RecordError| snapshot_error(None, ErrorVerb::Read, e);

        // One consistent read between two apply batches: the log id and the journal head it
        // stands for. O(1); apply waits only for these reads.
        // The request table is read in the same pause: it is bounded (`requests::WINDOW`
        // records), not history.
        let (last_log_id, last_membership, head, requests) = {
            let _gate = shared.gate.lock().await;
            shared.finish_pending_install().await.map_err(build_error)?;
            let (l, m) = shared.read_applied_state().map_err(build_error)?;
            let head = shared.store.head().map_err(|e| build_error(e.into()))?;
            let requests = parley_storage::requests::export(&shared.store).map_err(|e| build_error(e.into()))?;
            (l, m, head, requests)
        };

        // sled ids are unique across restarts, so two snapshots at one log id differ in id.
        let seq = shared.db.generate_id().map_err(|e| build_error(e.into()))?;
        let snapshot_id = match last_log_id {
            Some(l) => format!("{}-{}-{}-{seq}", l.leader_id.term, l.leader_id.node_id, l.index),
            None => format!("none-{seq}"),
        };
        let meta = SnapshotMeta { last_log_id, last_membership, snapshot_id };
        let manifest = Manifest { head_cursor: head.cursor, head_hash: head.hash, source: None, requests };
        let span = tracing::Span::current();
        span.record("snapshot_id", meta.snapshot_id.as_str());
        span.record("head", head.cursor);

        shared
            .save_current_snapshot(&meta, &manifest)
            .await
            .map_err(|e| snapshot_error(Some(&meta), ErrorVerb::Write, e))?;
        Ok(Snapshot { meta, snapshot: Box::new(manifest) })
    }
}

/// The answer to an entry that carries no command (blank, membership): the cursor it saw.
fn blank_outcome(cursor: u64) -> BatchOutcome {
    BatchOutcome { outcomes: vec![Outcome { cursor, ..Outcome::default() }] }
}
