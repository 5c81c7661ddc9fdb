//! The request table: every command proposed through raft carries a [`RequestId`], and the
//! state machine applies a given id at most once, answering a repeat with the first outcome.
//!
//! Why: a command can reach the log twice without anyone meaning it twice, e.g. a follower
//! that forwards again after an answer was lost, a proposal re-submitted after the batcher
//! could not pair outcomes with callers, or a captured `/raft/write` sent again. The raft log
//! cannot tell those apart from two real requests; the id can.
//!
//! Trees (see [`crate::keys`]): `requestid_outcome` (id -> JSON [`Recorded`]: sequence number,
//! cursor, result) and `requestseq_requestid` (sequence -> id), plus the meta counter
//! `request_seq`. Every recorded request takes the next sequence number.
//!
//! **Deterministic expiry.** A record is live while fewer than [`WINDOW`] requests were
//! recorded after it; the request that takes sequence `s` deletes the one at `s - WINDOW`. No
//! clock is read: the table is a function of the log, identical on every node and in every
//! re-application, and bounded at [`WINDOW`] records on disk (a few MiB), none in memory. An id
//! older than the window applies again; the window (32,768 requests, 16 s at the highest
//! write rate measured, far longer at ordinary rates) is far beyond any retry, and the signed
//! envelope refuses replays of captured RPCs on its own.
//!
//! **Snapshots.** The table is not rebuilt from the journal (the journal holds facts, not
//! requests), so a snapshot carries it: [`export`] reads the live records at the snapshot's
//! point, [`import`] writes them when a node installs it, in the install's first commit.
//!
//! Message replies are recorded by reference (conversation, seq) and read back on a repeat, so
//! a record never holds a body; a repeat shows the message as it is now (revoked or not).

use crate::keys::{self, Tree};
use crate::message;
use crate::outcome::{Outcome, Reply};
use crate::rejection::Rejection;
use crate::store::{Store, StoreError};
use crate::tx::Tx;

/// Requests remembered: a record is live while fewer than this many were recorded after it.
pub const WINDOW: u64 = 32_768;
/// Meta key of the last sequence number given out.
pub const META_REQUEST_SEQ: &str = "request_seq";

/// Who proposed a command and which of its requests it is: the proposing node's id and 128
/// random bits drawn there (no counter to persist, no coordination between nodes).
#[derive(
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    serde::Serialize,
    serde::Deserialize,
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
)]
pub struct RequestId {
    pub node: u64,
    pub nonce: [u8; 16],
}

impl RequestId {
    /// `requestid_outcome` key: node u64 big-endian, then the nonce.
    pub fn key(&self) -> [u8; 24] {
        let mut k = [0u8; 24];
        k[..8].copy_from_slice(&self.node.to_be_bytes());
        k[8..].copy_from_slice(&self.nonce);
        k
    }
}

/// A recorded request: when it was recorded and what it answered.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
pub struct Recorded {
    pub seq: u64,
    pub cursor: u64,
    pub result: Result<RecordedReply, Rejection>,
}

/// A [`Reply`] as recorded: a message by reference.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
pub enum RecordedReply {
    Done,
    Message { conversation_id: String, seq: u64, created: bool },
    Read { read_seq: u64, unread: u64 },
    FriendRequest { from: String, to: String, note: String, ts: u64 },
    Group { group_id: u64 },
}

impl RecordedReply {
    fn of(reply: &Reply) -> RecordedReply {
        match reply {
            Reply::Done => RecordedReply::Done,
            Reply::Message { message, created } => RecordedReply::Message {
                conversation_id: message.conversation_id.clone(),
                seq: message.seq,
                created: *created,
            },
            Reply::Read { read_seq, unread } => RecordedReply::Read { read_seq: *read_seq, unread: *unread },
            Reply::FriendRequest { from, to, note, ts } => {
                RecordedReply::FriendRequest { from: from.clone(), to: to.clone(), note: note.clone(), ts: *ts }
            }
            Reply::Group { group_id } => RecordedReply::Group { group_id: *group_id },
        }
    }

    fn reply(self, tx: &Tx) -> Result<Reply, StoreError> {
        Ok(match self {
            RecordedReply::Done => Reply::Done,
            RecordedReply::Message { conversation_id, seq, created } => {
                let message = message::load(tx, &conversation_id, seq)?.ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "recorded request names message {conversation_id}/{seq}, which is gone"
                    ))
                })?;
                Reply::Message { message, created }
            }
            RecordedReply::Read { read_seq, unread } => Reply::Read { read_seq, unread },
            RecordedReply::FriendRequest { from, to, note, ts } => Reply::FriendRequest { from, to, note, ts },
            RecordedReply::Group { group_id } => Reply::Group { group_id },
        })
    }
}

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(format!("request record: {e}"))
}

fn decode(raw: &[u8]) -> Result<Recorded, StoreError> {
    serde_json::from_slice(raw).map_err(corrupt)
}

/// Runs `cmd` under request id `id` at most once: a live record of `id` answers with its first
/// outcome and changes nothing; otherwise the command runs ([`crate::execute`]) and its outcome
/// is recorded. `None` (an entry from before request ids) just runs it.
pub fn execute_once(tx: &mut Tx, id: Option<&RequestId>, cmd: &crate::command::Command) -> Result<Outcome, StoreError> {
    let Some(id) = id else {
        return crate::execute(tx, cmd);
    };
    let key = id.key();
    let last = tx.meta_u64(META_REQUEST_SEQ)?.unwrap_or(0);
    if let Some(raw) = tx.get(Tree::RequestIdOutcome, &key)? {
        let rec = decode(&raw)?;
        if rec.seq + WINDOW > last {
            tracing::debug!(node = id.node, seq = rec.seq, "request applied before; answering its first outcome");
            let result = match rec.result {
                Ok(reply) => Ok(reply.reply(tx)?),
                Err(rejection) => Err(rejection),
            };
            return Ok(Outcome { cursor: rec.cursor, result });
        }
    }
    let outcome = crate::execute(tx, cmd)?;
    let seq = last + 1;
    let rec = Recorded {
        seq,
        cursor: outcome.cursor,
        result: outcome.result.as_ref().map(RecordedReply::of).map_err(Clone::clone),
    };
    tx.put(Tree::RequestIdOutcome, key.to_vec(), serde_json::to_vec(&rec).map_err(corrupt)?);
    tx.put(Tree::RequestSeqRequestId, keys::u64_key(seq).to_vec(), key.to_vec());
    tx.put_meta(META_REQUEST_SEQ, keys::u64_key(seq).to_vec());
    if let Some(old) = seq.checked_sub(WINDOW).filter(|s| *s > 0) {
        forget(tx, old)?;
    }
    Ok(outcome)
}

/// Deletes the record taken at sequence `seq` (unless its id was recorded again since).
fn forget(tx: &mut Tx, seq: u64) -> Result<(), StoreError> {
    let seq_key = keys::u64_key(seq).to_vec();
    if let Some(key) = tx.get(Tree::RequestSeqRequestId, &seq_key)? {
        if let Some(raw) = tx.get(Tree::RequestIdOutcome, &key)? {
            if decode(&raw)?.seq == seq {
                tx.remove(Tree::RequestIdOutcome, key);
            }
        }
        tx.remove(Tree::RequestSeqRequestId, seq_key);
    }
    Ok(())
}

/// The live part of the table at some point of the log, as a snapshot carries it.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestTable {
    /// The last sequence number given out.
    pub seq: u64,
    /// `(requestid_outcome key, value)` of every live record, in sequence order.
    pub records: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The live records of `store`'s committed table. The caller makes sure no apply runs meanwhile
/// (the state machine's gate), so the table is the one at its last-applied log id.
pub fn export(store: &Store) -> Result<RequestTable, StoreError> {
    let seq = store.meta(META_REQUEST_SEQ)?.and_then(|b| keys::trailing_u64(&b)).unwrap_or(0);
    let from = seq.saturating_sub(WINDOW - 1).max(1);
    let mut records = Vec::new();
    for kv in store.tree(Tree::RequestSeqRequestId).range(keys::u64_key(from)..) {
        let (_, key) = kv?;
        if let Some(value) = store.tree(Tree::RequestIdOutcome).get(&key)? {
            records.push((key.to_vec(), value.to_vec()));
        }
    }
    Ok(RequestTable { seq, records })
}

/// Replaces the table in `tx` by `table` (a snapshot being installed). Records of this node's
/// own that the snapshot's window no longer covers are deleted, so the table stays bounded.
pub fn import(tx: &mut Tx, table: &RequestTable) -> Result<(), StoreError> {
    let store = tx.store().clone();
    for kv in store.tree(Tree::RequestSeqRequestId).iter() {
        let (seq_key, key) = kv?;
        tx.remove(Tree::RequestIdOutcome, key.to_vec());
        tx.remove(Tree::RequestSeqRequestId, seq_key.to_vec());
    }
    for (key, value) in &table.records {
        let rec = decode(value)?;
        if key.len() != 24 || rec.seq > table.seq {
            return Err(StoreError::Corrupt(format!("request table record at {} is malformed", rec.seq)));
        }
        tx.put(Tree::RequestIdOutcome, key.clone(), value.clone());
        tx.put(Tree::RequestSeqRequestId, keys::u64_key(rec.seq).to_vec(), key.clone());
    }
    tx.put_meta(META_REQUEST_SEQ, keys::u64_key(table.seq).to_vec());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Command, CommandKind};

    fn id(n: u8) -> RequestId {
        RequestId { node: 2, nonce: [n; 16] }
    }

    fn register(u: &str) -> Command {
        Command {
            ts: 1,
            kind: CommandKind::Register { user_id: u.into(), display_name: u.into(), password_hash: "x".into() },
        }
    }

    fn run(store: &Store, rid: Option<&RequestId>, cmd: &Command) -> Outcome {
        let mut tx = store.begin();
        let out = execute_once(&mut tx, rid, cmd).unwrap();
        tx.commit().unwrap();
        out
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_path(&dir.path().join("db"), 8 << 20).unwrap();
        (dir, store)
    }

    /// The hole: the same command proposed twice (a retried forward, a replayed write) applied
    /// twice. With its request id it applies once and the repeat gets the first answer.
    #[test]
    fn a_repeated_request_id_applies_once_and_answers_the_first_outcome() {
        let (_d, store) = store();
        let first = run(&store, Some(&id(1)), &register("alice"));
        assert!(first.result.is_ok());
        let head = store.head().unwrap();
        let again = run(&store, Some(&id(1)), &register("alice"));
        assert_eq!(again, first, "the first outcome, not `user exists`");
        assert_eq!(store.head().unwrap(), head, "nothing appended");
        // A different id is a different request: it runs (and here is refused).
        let other = run(&store, Some(&id(2)), &register("alice"));
        assert_eq!(other.result, Err(Rejection::UserExists));
        // Without an id (an entry from an older parley) nothing is deduplicated.
        assert_eq!(run(&store, None, &register("alice")).result, Err(Rejection::UserExists));
    }

    /// A rejection is recorded too: a repeat after the state changed still gets it.
    #[test]
    fn a_repeat_of_a_rejected_request_is_still_rejected() {
        let (_d, store) = store();
        run(&store, None, &register("bob"));
        let refused = run(&store, Some(&id(3)), &register("bob"));
        assert_eq!(refused.result, Err(Rejection::UserExists));
        assert_eq!(run(&store, Some(&id(3)), &register("bob")), refused);
    }

    #[test]
    fn records_expire_after_the_window_and_the_table_stays_bounded() {
        let (_d, store) = store();
        let mut tx = store.begin();
        let mk = |i: u64| RequestId { node: 1, nonce: (i as u128).to_be_bytes() };
        let cmd = Command { ts: 1, kind: CommandKind::Block { user_id: "nobody".into(), target: "x".into() } };
        let first = execute_once(&mut tx, Some(&mk(0)), &cmd).unwrap();
        for i in 1..WINDOW + 10 {
            execute_once(&mut tx, Some(&mk(i)), &cmd).unwrap();
        }
        tx.commit().unwrap();
        assert_eq!(store.tree(Tree::RequestIdOutcome).len() as u64, WINDOW);
        assert_eq!(store.tree(Tree::RequestSeqRequestId).len() as u64, WINDOW);
        // The oldest are gone: id 0 runs again (a new record), the newest is still answered.
        let mut tx = store.begin();
        let again = execute_once(&mut tx, Some(&mk(0)), &cmd).unwrap();
        assert_eq!(again.result, first.result);
        tx.commit().unwrap();
        assert_eq!(store.meta(META_REQUEST_SEQ).unwrap().and_then(|b| keys::trailing_u64(&b)), Some(WINDOW + 11));
    }

    /// What remembering a request costs a DM send, on top of the send's own 7 records (pinned
    /// in `engine.rs`): three small records. Pinned, so a fatter record fails here.
    #[test]
    fn a_recorded_send_costs_three_small_records() {
        let (_d, store) = store();
        for u in ["alice", "bob"] {
            run(&store, None, &register(u));
        }
        run(
            &store,
            None,
            &Command {
                ts: 2,
                kind: CommandKind::FriendRequest { from: "alice".into(), to: "bob".into(), note: String::new() },
            },
        );
        run(
            &store,
            None,
            &Command { ts: 3, kind: CommandKind::AcceptFriend { user_id: "bob".into(), from: "alice".into() } },
        );
        let send = |i: u64| Command { ts: 10 + i, kind: crate::engine::tests::send(i) };
        run(&store, Some(&id(1)), &send(0));
        let mut tx = store.begin();
        execute_once(&mut tx, Some(&id(2)), &send(1)).unwrap();
        let counts: Vec<_> = tx.write_counts().into_iter().map(|(t, n, b)| (t.name(), n, b)).collect();
        let request_trees: Vec<_> = counts.iter().filter(|(t, _, _)| t.starts_with("request")).cloned().collect();
        assert_eq!(
            request_trees,
            [("requestid_outcome", 1, 24 + 105), ("requestseq_requestid", 1, 8 + 24)],
            "{counts:?}"
        );
        let meta = counts.iter().find(|(t, _, _)| *t == "meta").unwrap();
        assert_eq!((meta.1, meta.2), (2, 52 + 11 + 8), "the head and the request counter");
    }

    /// A snapshot carries the live table; the installing node answers repeats the same way.
    #[test]
    fn the_table_travels_with_a_snapshot() {
        let (_d, leader) = store();
        let first = run(&leader, Some(&id(9)), &register("carol"));
        let table = export(&leader).unwrap();
        assert_eq!(table.seq, 1);
        assert_eq!(table.records.len(), 1);

        let (_d2, follower) = store();
        // The follower had a stale record of its own: the import replaces the table.
        run(&follower, Some(&id(7)), &register("dave"));
        let mut tx = follower.begin();
        import(&mut tx, &table).unwrap();
        // The journal the follower pulls for the snapshot (here: the same command).
        crate::execute(&mut tx, &register("carol")).unwrap();
        tx.commit().unwrap();
        assert_eq!(export(&follower).unwrap(), table);
        let repeat = run(&follower, Some(&id(9)), &register("carol"));
        assert_eq!(repeat.result, first.result);
    }
}
