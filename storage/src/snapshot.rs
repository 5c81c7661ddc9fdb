//! What journal-pointer snapshots need from storage.
//!
//! A raft snapshot is a pointer into the journal (the raft crate's `snapshot` module): the head
//! cursor and hash its last log id stands for. Nothing of the state is copied. A node that
//! installs one pulls the entries it lacks from another node, checks them against the hash
//! chain, and applies them with [`crate::Tx::replay_projections`] after staging each page's
//! records past its head here, so one page is stored while the previous one is applied.
//!
//! Invariant: staging never touches the applied journal (cursors at or behind the head are
//! refused); staged entries are invisible to every reader, which reads only up to the head.

use crate::keys::{self, Tree};
use crate::store::{Store, StoreError};

impl Store {
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
}
