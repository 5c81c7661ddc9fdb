//! `execute`: one command through `decide`, then each event through the journal and `apply`,
//! then the reply built from the new state.

use crate::command::{Command, CommandKind};
use crate::decide::{decide, Decision, Refused};
use crate::event::Event;
use crate::keys::{self, Tree};
use crate::outcome::{Outcome, Reply};
use crate::records::{MemberRecord, MessageRecord};
use crate::store::{StoreError, Tx};

pub(crate) fn execute(tx: &mut Tx, cmd: &Command) -> Result<Outcome, StoreError> {
    let evs = match decide(tx, cmd) {
        Err(Refused::Store(e)) => return Err(e),
        Err(Refused::Rejected(r)) => return Ok(Outcome { cursor: tx.head()?.cursor, result: Err(r) }),
        Ok(Decision::Unchanged(reply)) => return Ok(Outcome { cursor: tx.head()?.cursor, result: Ok(reply) }),
        Ok(Decision::Events(evs)) => evs,
    };
    let mut cursor = tx.head()?.cursor;
    for ev in &evs {
        cursor = tx.append(cmd.ts, ev.clone())?;
    }
    let reply = reply_for(tx, cmd, &evs)?;
    Ok(Outcome { cursor, result: Ok(reply) })
}

fn reply_for(tx: &mut Tx, cmd: &Command, evs: &[Event]) -> Result<Reply, StoreError> {
    let ts = tx.head()?.ts;
    Ok(match (&cmd.kind, evs.first()) {
        (_, Some(Event::MessageSent { conversation_id, seq, .. })) => {
            Reply::Message { message: message(tx, conversation_id, *seq)?, created: true }
        }
        (_, Some(Event::MessageRevoked { conversation_id, seq, .. })) => {
            Reply::Message { message: message(tx, conversation_id, *seq)?, created: false }
        }
        (_, Some(Event::ReadMarked { conversation_id, user_id, .. })) => {
            let max_seq = crate::apply::conv_meta(tx, conversation_id)?.max_seq;
            let read_seq = tx
                .get_rec::<MemberRecord>(Tree::ConvUserIdMember, &keys::pair(conversation_id, user_id))?
                .map(|m| m.read_seq)
                .unwrap_or(0);
            Reply::Read { read_seq, unread: max_seq.saturating_sub(read_seq) }
        }
        (_, Some(Event::FriendRequested { from, to, note })) => {
            Reply::FriendRequest { from: from.clone(), to: to.clone(), note: note.clone(), ts }
        }
        (CommandKind::FriendRequest { from, to, note }, Some(Event::FriendAdded { .. })) => {
            Reply::FriendRequest { from: from.clone(), to: to.clone(), note: note.clone(), ts }
        }
        (_, Some(Event::GroupCreated { group_id, .. })) => Reply::Group { group_id: *group_id },
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

fn message(tx: &Tx, conversation_id: &str, seq: u64) -> Result<MessageRecord, StoreError> {
    tx.get_rec(Tree::ConvSeqMessage, &keys::with_u64(conversation_id, seq))?
        .ok_or_else(|| StoreError::Corrupt(format!("message {conversation_id}/{seq} vanished after apply")))
}
