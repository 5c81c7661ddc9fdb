//! Offline replay: folds verified journal entries into a store through [`Tx::replay`], the same
//! `apply` the live node runs, in large batches.
//!
//! The live node commits each raft batch in one atomic transaction over every tree. A replay
//! target is a store nobody reads while it is built (a scratch store, a new data dir), so a
//! [`Replayer`] commits every `batch_entries` entries with [`Tx::commit_unatomic`] (one sled
//! batch per tree) instead. The projections it builds are byte for byte the live node's (same
//! `apply`, same encoding), so [`Store::projection_digest`] agrees at every cursor.
//!
//! Invariants:
//! - entries are pushed in cursor order, each linking to the previous one ([`Tx::replay`]
//!   refuses anything else); checking the hash chain is the caller's job;
//! - a replay interrupted half way leaves a store to throw away, never one to resume.

use crate::event::Event;
use crate::journal::JournalRecord;
use crate::store::{Head, Store, StoreError, Tx};

/// Entries per commit when the caller has no preference: large enough that the per-commit
/// cost vanishes, small enough that the in-memory overlay stays a few tens of MiB.
pub const DEFAULT_BATCH_ENTRIES: usize = 20_000;

/// Applies journal entries to a store in batches.
pub struct Replayer {
    tx: Option<Tx>,
    store: Store,
    in_batch: usize,
    batch_entries: usize,
}

impl Replayer {
    /// Replays onto `store`, whose journal must end where the first pushed entry starts (an
    /// empty store for a full replay).
    pub fn new(store: &Store, batch_entries: usize) -> Replayer {
        Replayer { tx: None, store: store.clone(), in_batch: 0, batch_entries: batch_entries.max(1) }
    }

    /// Applies one verified entry (`event` decoded from `rec.event`).
    pub fn push(&mut self, rec: &JournalRecord, event: &Event) -> Result<(), StoreError> {
        let store = &self.store;
        let tx = self.tx.get_or_insert_with(|| store.begin());
        tx.replay(rec, event)?;
        self.in_batch += 1;
        if self.in_batch >= self.batch_entries {
            self.commit()?;
        }
        Ok(())
    }

    /// Commits what is pending.
    pub fn commit(&mut self) -> Result<(), StoreError> {
        if let Some(tx) = self.tx.take() {
            tx.commit_unatomic()?;
        }
        self.in_batch = 0;
        Ok(())
    }

    /// Commits what is pending and returns the store's journal head.
    pub fn finish(mut self) -> Result<Head, StoreError> {
        self.commit()?;
        self.store.head()
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
        let out = tx.execute(&Command { ts, kind }).unwrap();
        assert!(out.result.is_ok(), "{:?}", out.result);
        tx.commit().unwrap();
    }

    #[test]
    fn batched_replay_matches_the_live_digest() {
        let (_d, live) = temp_store();
        let reg = |u: &str| CommandKind::Register {
            user_id: u.into(),
            display_name: u.into(),
            password_hash: "x".into(),
        };
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
        run(&live, 50, CommandKind::CreateGroup {
            owner: "alice".into(),
            name: "g".into(),
            members: vec!["bob".into()],
            max_members: 10,
        });
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
