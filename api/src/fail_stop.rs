//! Fail-stop on corrupt stored data.
//!
//! A node that finds its own stored data bad (a journal entry whose hash does not recompute, a
//! record that does not decode, an entry that is not where its index says) stops at once, with
//! an error that names the fix, rather than answer from it or extend it. The other members
//! hold the good copy; the operator procedure (remove the node, wipe its data dir, add it again
//! under a new id: docs/CLUSTER.md, "A damaged or wiped node") brings it back.
//!
//! Two places look: [`check_tail`] at start, before raft runs (the last entries, which the next
//! apply would extend), and [`on_store_error`] on every store error an API read meets (every
//! read of an entry recomputes its hash: `parley_storage::journal::EntryScratch`). Exiting is
//! as safe as a kill -9, which a node survives by design: what it acknowledged is durable in
//! its raft log and on a quorum.

use parley_storage::{Store, StoreError};

/// The process exit status of a fail-stop (distinct from 1, a start-up or usage error).
pub const EXIT_CODE: i32 = 3;

/// How many of the newest journal entries are checked at start: O(1) in history, and enough
/// to cover whatever the last batches wrote before a crash.
pub const TAIL_ENTRIES: u64 = 1024;

/// What the operator should do, in every fail-stop message.
pub const FIX: &str = "this node will not serve or extend its stored data. Remove it from the cluster \
     (parley members remove), wipe its data dir, and add it again under a new node id with --join \
     (docs/CLUSTER.md, \"A damaged or wiped node\")";

/// Checks the journal's tail at start; the error names the bad entry and the fix.
pub fn check_tail(store: &Store) -> Result<(), String> {
    store.verify_tail(TAIL_ENTRIES).map_err(|e| format!("stored journal is corrupt: {e}; {FIX}"))
}

/// Stops the process if `e` says the stored data is corrupt; otherwise does nothing (an IO
/// error is the caller's to report).
pub fn on_store_error(e: &StoreError) {
    if e.is_corruption() {
        tracing::error!(error = %e, "fail-stop: stored data is corrupt; {FIX}");
        eprintln!("parley: fail-stop: stored data is corrupt: {e}; {FIX}");
        std::process::exit(EXIT_CODE);
    }
}
