//! Offline replay: folds verified journal entries into a store through [`Tx::replay`], the same
//! `apply` the live node runs.
//!
//! The live node commits each raft batch in one atomic transaction over every tree. A replay
//! target is a store nobody reads while it is built (a scratch store, a new data dir), so a
//! [`Replayer`] either commits every `batch_entries` entries with [`Tx::commit_unatomic`] (one
//! sled batch per tree; import), or builds the projections wholly in memory in one detached
//! transaction and digests them there ([`Replayer::in_memory`]; `parley replay`), spilling to
//! the store only past a bound. Either way the projections are byte for byte the live node's
//! (same `apply`, same encoding), so the projection digest agrees at every cursor.
//!
//! Invariants:
//! - entries are pushed in cursor order, each linking to the previous one ([`Tx::replay`]
//!   refuses anything else); checking the hash chain is the caller's job;
//! - a replay interrupted half way leaves a store to throw away, never one to resume.

use crate::event::Event;
use crate::head::Head;
use crate::journal::{Hash, JournalRecord};
use crate::keys::Tree;
use crate::store::{Store, StoreError};
use crate::tx::Tx;

/// Entries per commit when the caller has no preference: large enough that the per-commit
/// cost vanishes, small enough that the in-memory overlay stays a few tens of MiB.
pub const DEFAULT_BATCH_ENTRIES: usize = 20_000;

/// Records an in-memory replay holds before it spills to the store (about 400 bytes each with
/// the hash tables: some 4 GiB; a million chat-like journal entries make about 2.5 million).
pub const DEFAULT_SPILL_WRITES: usize = 10_000_000;

/// Applies journal entries to a store in batches.
pub struct Replayer {
    tx: Option<Tx>,
    store: Store,
    in_batch: usize,
    batch_entries: usize,
    /// In memory: one detached transaction, projections only, until it holds this many writes.
    spill_writes: Option<usize>,
    /// In memory, keep the journal entries of messages too: the message projection points at
    /// them for bodies ([`Replayer::for_queries`]).
    keep_messages: bool,
}

impl Replayer {
    /// Replays onto `store`, whose journal must end where the first pushed entry starts (an
    /// empty store for a full replay), committing every `batch_entries` entries. The journal
    /// entries are stored too (import).
    pub fn new(store: &Store, batch_entries: usize) -> Replayer {
        Replayer {
            tx: None,
            store: store.clone(),
            in_batch: 0,
            batch_entries: batch_entries.max(1),
            spill_writes: None,
            keep_messages: false,
        }
    }

    /// Replays onto an empty `store` wholly in memory ([`Store::begin_detached`]), keeping the
    /// projections and the head but not the journal: [`Replayer::digest`] then never touches
    /// sled. Past `spill_writes` buffered writes it commits and goes on in batches of
    /// `batch_entries`, reading the store.
    pub fn in_memory(store: &Store, spill_writes: usize, batch_entries: usize) -> Replayer {
        Replayer {
            tx: Some(store.begin_detached()),
            store: store.clone(),
            in_batch: 0,
            batch_entries: batch_entries.max(1),
            spill_writes: Some(spill_writes.max(1)),
            keep_messages: false,
        }
    }

    /// [`Replayer::in_memory`] for a replay made only to be queried ([`Replayer::finish_for_queries`]):
    /// the journal entries of messages are kept as well, since reading a message (history, a
    /// conversation's last message) reads its body from its entry. The store then holds those
    /// entries and no others: its journal is not a chain to verify or sync from.
    pub fn for_queries(store: &Store, spill_writes: usize, batch_entries: usize) -> Replayer {
        Replayer { keep_messages: true, ..Replayer::in_memory(store, spill_writes, batch_entries) }
    }

    /// Applies one verified entry (`event` decoded from `rec.event`).
    pub fn push(&mut self, rec: &JournalRecord, event: &Event) -> Result<(), StoreError> {
        let store = &self.store;
        let tx = self.tx.get_or_insert_with(|| store.begin());
        match self.spill_writes {
            Some(limit) => {
                if self.keep_messages && matches!(event, Event::MessageSent { .. }) {
                    tx.replay(rec, event)?;
                } else {
                    tx.replay_projections(rec, event)?;
                }
                if tx.pending_writes() >= limit {
                    // Too big for memory: from now on, ordinary batches over the store.
                    self.spill_writes = None;
                    self.commit()?;
                }
            }
            None => {
                tx.replay(rec, event)?;
                self.in_batch += 1;
                if self.in_batch >= self.batch_entries {
                    self.commit()?;
                }
            }
        }
        Ok(())
    }

    /// Whether everything replayed so far is held in memory (nothing committed yet).
    pub fn is_in_memory(&self) -> bool {
        self.spill_writes.is_some()
    }

    /// The projection digest of everything replayed so far, equal to
    /// [`Store::projection_digest`] after [`Replayer::finish`].
    pub fn digest(&mut self) -> Result<Hash, StoreError> {
        if self.spill_writes.is_some() {
            if let Some(digest) = self.tx.as_ref().and_then(Tx::projection_digest) {
                return Ok(digest);
            }
        }
        self.commit()?;
        self.store.projection_digest()
    }

    /// Commits what is pending.
    pub fn commit(&mut self) -> Result<(), StoreError> {
        if let Some(tx) = self.tx.take() {
            tx.commit_unatomic()?;
        }
        self.in_batch = 0;
        // Whatever was in memory is in the store now: later entries read it.
        self.spill_writes = None;
        Ok(())
    }

    /// Commits what is pending and returns the store's journal head.
    pub fn finish(mut self) -> Result<Head, StoreError> {
        self.commit()?;
        self.store.head()
    }

    /// Like [`Replayer::finish`] for a replay made only to be queried (`parley state`): what
    /// is still in memory is committed without the trees that only sync and idempotent sends
    /// read (the conversation and personal feeds, the client message id index), which are
    /// most of the records. The store then answers lists, groups, friends and (made by
    /// [`Replayer::for_queries`]) messages, not sync, and its projection digest is no longer
    /// the live node's.
    pub fn finish_for_queries(mut self) -> Result<Head, StoreError> {
        if self.spill_writes.is_some() {
            if let Some(tx) = self.tx.as_mut() {
                for t in [Tree::ConvCursor, Tree::UserIdCursor, Tree::SenderClientMsgIdCursor] {
                    tx.discard_tree(t);
                }
            }
        }
        self.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Command, CommandKind};
    use crate::journal::ChainVerifier;

    fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_path(&dir.path().join("db"), 16 << 20).unwrap();
        (dir, store)
    }

    fn run(store: &Store, ts: u64, kind: CommandKind) {
        let mut tx = store.begin();
        let out = crate::execute(&mut tx, &Command { ts, kind }).unwrap();
        assert!(out.result.is_ok(), "{:?}", out.result);
        tx.commit().unwrap();
    }

    #[test]
    fn batched_replay_matches_the_live_digest() {
        let (_d, live) = temp_store();
        let reg =
            |u: &str| CommandKind::Register { user_id: u.into(), display_name: u.into(), password_hash: "x".into() };
        run(&live, 1, reg("alice"));
        run(&live, 2, reg("bob"));
        run(&live, 3, CommandKind::FriendRequest { from: "alice".into(), to: "bob".into(), note: "hi".into() });
        run(&live, 4, CommandKind::AcceptFriend { user_id: "bob".into(), from: "alice".into() });
        for i in 0..25u64 {
            run(
                &live,
                10 + i,
                CommandKind::Send {
                    sender: if i % 2 == 0 { "alice".into() } else { "bob".into() },
                    conversation_id: "d:alice:bob".into(),
                    client_msg_id: format!("m{i}"),
                    body: format!("body {i}"),
                    reply_to: None,
                    max_body_bytes: 1024,
                },
            );
        }
        run(
            &live,
            50,
            CommandKind::CreateGroup {
                owner: "alice".into(),
                name: "g".into(),
                members: vec!["bob".into()],
                max_members: 10,
            },
        );
        run(&live, 51, CommandKind::Leave { user_id: "bob".into(), group_id: 1 });
        let live_digest = live.projection_digest().unwrap();

        for batch in [1, 3, 1000] {
            let (_d, scratch) = temp_store();
            let mut r = Replayer::new(&scratch, batch);
            let mut v = ChainVerifier::default();
            for item in live.journal_raw(1) {
                let (cursor, bytes) = item.unwrap();
                let rec = JournalRecord::decode(cursor, &bytes).unwrap();
                let entry = v.check_record(&rec).unwrap();
                r.push(&rec, &entry.event).unwrap();
            }
            let head = r.finish().unwrap();
            assert_eq!(head, live.head().unwrap());
            assert_eq!(scratch.projection_digest().unwrap(), live_digest, "batch {batch}");
            assert_eq!(scratch.applied_cursor(), head.cursor);
        }

        // In memory (and spilling part way at every size), the same digest without a commit,
        // and the same store after one. A replay for queries also answers message reads (it
        // keeps the entries messages point at), with the live node's answers.
        let live_list = |store: &Store| -> Vec<_> {
            store.conversations("alice").unwrap().into_iter().map(|c| (c.conversation_id, c.last_message)).collect()
        };
        for (spill, queries) in [(1, false), (20, false), (50, true), (usize::MAX, false), (usize::MAX, true)] {
            let (_d, scratch) = temp_store();
            let mut r = match queries {
                false => Replayer::in_memory(&scratch, spill, 7),
                true => Replayer::for_queries(&scratch, spill, 7),
            };
            for item in live.journal_raw(1) {
                let (cursor, bytes) = item.unwrap();
                let rec = JournalRecord::decode(cursor, &bytes).unwrap();
                r.push(&rec, &rec.entry().unwrap().event).unwrap();
            }
            assert_eq!(r.is_in_memory(), spill == usize::MAX);
            assert_eq!(r.digest().unwrap(), live_digest, "spill {spill}");
            let head = r.finish().unwrap();
            assert_eq!(head, live.head().unwrap());
            assert_eq!(scratch.projection_digest().unwrap(), live_digest, "spill {spill}");
            if queries {
                assert_eq!(live_list(&scratch), live_list(&live), "spill {spill}");
                assert_eq!(live_list(&scratch).len(), 2);
            }
        }
    }

    #[test]
    fn an_entry_that_does_not_link_is_refused() {
        let (_d, scratch) = temp_store();
        let ev = Event::Blocked { user_id: "alice".into(), target: "bob".into() };
        let first = JournalRecord::new(1, 1, crate::journal::ZERO_HASH, &ev);
        let stray = JournalRecord::new(3, 1, first.hash, &ev);
        let mut r = Replayer::new(&scratch, 10);
        r.push(&first, &ev).unwrap();
        assert!(r.push(&stray, &ev).is_err());
    }
}
