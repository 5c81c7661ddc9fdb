//! The domain's write path over a [`Tx`]: [`execute`] (one command through `decide`, each
//! event appended to the journal and folded in by `apply`, then the reply) and the replay of
//! verified journal entries ([`Tx::replay`]) through the same `apply`.
//!
//! This is where the journal grows: an entry gets the next cursor, the chain hash linking it to
//! the head, and moves the head, in the transaction that applies it. [`Tx`] itself is only the
//! overlay these writes go through.

use crate::apply::apply;
use crate::command::{Command, CommandKind};
use crate::decide::{decide, Decision, Refused};
use crate::event::Event;
use crate::head::Head;
use crate::journal::{JournalError, JournalRecord};
use crate::keys::{self, Tree};
use crate::message::{self, Message};
use crate::outcome::{Outcome, Reply};
use crate::records::MemberRecord;
use crate::store::StoreError;
use crate::tx::{AppliedEntry, Tx};

/// Runs one command: decide, then append and apply its events, then build the reply. A
/// rejection changes nothing. Storage errors are fatal for the node and surface as `Err`.
pub fn execute(tx: &mut Tx, cmd: &Command) -> Result<Outcome, StoreError> {
    let evs = match decide(tx, cmd) {
        Err(Refused::Store(e)) => return Err(e),
        Err(Refused::Rejected(r)) => return Ok(Outcome { cursor: tx.head()?.cursor, result: Err(r) }),
        Ok(Decision::Unchanged(reply)) => return Ok(Outcome { cursor: tx.head()?.cursor, result: Ok(reply) }),
        Ok(Decision::Events(evs)) => evs,
    };
    let mut cursor = tx.head()?.cursor;
    for ev in &evs {
        cursor = append(tx, cmd.ts, ev.clone())?;
    }
    let reply = reply_for(tx, cmd, evs, cursor)?;
    Ok(Outcome { cursor, result: Ok(reply) })
}

/// Appends one event to the journal after the head and applies it to the projections.
fn append(tx: &mut Tx, ts: u64, event: Event) -> Result<u64, StoreError> {
    let head = tx.head()?;
    let cursor = head.cursor + 1;
    // ts never goes backwards in the journal, whatever clocks the leaders had.
    let ts = ts.max(head.ts);
    let rec = JournalRecord::new(cursor, ts, head.hash, &event);
    tx.put_rec(Tree::CursorEntry, keys::u64_key(cursor).to_vec(), &rec);
    tx.set_head(Head { cursor, hash: rec.hash, ts });
    let audience = apply(tx, cursor, ts, &event)?;
    tx.push_applied(AppliedEntry { cursor, ts, event, audience });
    Ok(cursor)
}

impl Tx {
    /// Replays a verified journal entry (offline replay / import) through the same `apply`.
    pub fn replay(&mut self, rec: &JournalRecord, event: &Event) -> Result<(), StoreError> {
        check_follows(self, rec)?;
        self.put_rec(Tree::CursorEntry, keys::u64_key(rec.cursor).to_vec(), rec);
        self.replay_projections(rec, event)
    }

    /// Like [`Tx::replay`] but keeps no copy of the journal entry: projections and head only
    /// (offline replay into a scratch store only needs those to digest them).
    pub fn replay_projections(&mut self, rec: &JournalRecord, event: &Event) -> Result<(), StoreError> {
        check_follows(self, rec)?;
        self.set_head(Head { cursor: rec.cursor, hash: rec.hash, ts: rec.ts });
        apply(self, rec.cursor, rec.ts, event)?;
        Ok(())
    }
}

/// Refuses `rec` unless it is the entry that follows the head.
fn check_follows(tx: &mut Tx, rec: &JournalRecord) -> Result<(), StoreError> {
    let head = tx.head()?;
    if rec.cursor != head.cursor + 1 || rec.prev_hash != head.hash {
        return Err(JournalError::BrokenLink { cursor: rec.cursor, prev: head.cursor }.into());
    }
    Ok(())
}

/// The reply to `cmd`, whose events `evs` were appended up to `cursor`.
fn reply_for(tx: &mut Tx, cmd: &Command, evs: Vec<Event>, cursor: u64) -> Result<Reply, StoreError> {
    let ts = tx.head()?.ts;
    Ok(match (&cmd.kind, evs.into_iter().next()) {
        // A send appends exactly its message: the reply is that event, nothing to read back.
        (_, Some(ev @ Event::MessageSent { .. })) => {
            let message = Message::from_event(ev, cursor, ts, false)
                .ok_or_else(|| StoreError::Corrupt("a message event is not a message".into()))?;
            Reply::Message { message, created: true }
        }
        (_, Some(Event::MessageRevoked { conversation_id, seq, .. })) => {
            let message = message::load(tx, &conversation_id, seq)?
                .ok_or_else(|| StoreError::Corrupt(format!("message {conversation_id}/{seq} vanished after apply")))?;
            Reply::Message { message, created: false }
        }
        (_, Some(Event::ReadMarked { conversation_id, user_id, .. })) => {
            let max_seq = crate::apply::conv_meta(tx, &conversation_id)?.max_seq;
            let read_seq = tx
                .get_rec::<MemberRecord>(Tree::ConvUserIdMember, &keys::pair(&conversation_id, &user_id))?
                .map(|m| m.read_seq)
                .unwrap_or(0);
            Reply::Read { read_seq, unread: max_seq.saturating_sub(read_seq) }
        }
        (_, Some(Event::FriendRequested { from, to, note })) => Reply::FriendRequest { from, to, note, ts },
        (CommandKind::FriendRequest { from, to, note }, Some(Event::FriendAdded { .. })) => {
            Reply::FriendRequest { from: from.clone(), to: to.clone(), note: note.clone(), ts }
        }
        (_, Some(Event::GroupCreated { group_id, .. })) => Reply::Group { group_id },
        (
            CommandKind::UpdateGroup { group_id, .. }
            | CommandKind::AddMembers { group_id, .. }
            | CommandKind::SetRole { group_id, .. }
            | CommandKind::Transfer { group_id, .. },
            _,
        ) => Reply::Group { group_id: *group_id },
        _ => Reply::Done,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::Store;

    fn run(store: &Store, ts: u64, kind: CommandKind) -> Vec<(Tree, usize, usize)> {
        let mut tx = store.begin();
        let out = execute(&mut tx, &Command { ts, kind }).unwrap();
        assert!(out.result.is_ok(), "{:?}", out.result);
        let counts = tx.write_counts();
        tx.commit().unwrap();
        counts
    }

    /// A DM send from alice to bob, as the cost pins in this crate use it.
    pub(crate) fn send(i: u64) -> CommandKind {
        CommandKind::Send {
            sender: "alice".into(),
            conversation_id: "d:alice:bob".into(),
            // A UUID, as clients send them, and a 100-byte body.
            client_msg_id: format!("0b7c6f2e-3d1a-4c5b-9e8f-{i:012}"),
            body: "x".repeat(100),
            reply_to: None,
            max_body_bytes: 4096,
        }
    }

    /// What one DM send writes, tree by tree: `(tree, writes, key + value bytes)`. Pinned, so
    /// a change that writes more per message fails here. Format 1 wrote the same 7 trees for
    /// 782 bytes (body and ids again in `convseq_message`: 252 bytes; the index's value
    /// `conversation 0 seq`: 62 bytes).
    #[test]
    fn a_dm_send_writes_seven_records() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_path(&dir.path().join("db"), 8 << 20).unwrap();
        let reg =
            |u: &str| CommandKind::Register { user_id: u.into(), display_name: u.into(), password_hash: "x".into() };
        run(&store, 1, reg("alice"));
        run(&store, 2, reg("bob"));
        run(&store, 3, CommandKind::FriendRequest { from: "alice".into(), to: "bob".into(), note: String::new() });
        run(&store, 4, CommandKind::AcceptFriend { user_id: "bob".into(), from: "alice".into() });

        // The first message also makes both users members of the conversation.
        let first = run(&store, 10, send(0));
        let steady = run(&store, 11, send(1));
        let total = |c: &[(Tree, usize, usize)]| c.iter().fold((0, 0), |(n, b), &(_, wn, wb)| (n + wn, b + wb));
        let by_name = |c: &[(Tree, usize, usize)]| c.iter().map(|&(t, n, b)| (t.name(), n, b)).collect::<Vec<_>>();
        assert_eq!(
            by_name(&steady),
            [
                ("meta", 1, 52),                     // the head (once per transaction)
                ("cursor_entry", 1, 312),            // the journal entry: the body's only copy
                ("conv_meta", 1, 35),                // max seq, feed and activity cursors
                ("convseq_message", 1, 29),          // cursor + revoked
                ("senderclientmsgid_cursor", 1, 50), // idempotency: the entry's cursor
                ("convuserid_member", 1, 49),        // the sender's read marker
                ("convcursor_", 1, 20),              // one feed record
            ]
        );
        assert_eq!(total(&steady), (7, 547));
        assert_eq!(total(&first), (12, 692));
    }
}
