//! Applying messages, revokes and read markers: `convseq_message`, `senderclientmsgid_cursor`,
//! the members' read markers, the conversation's counters and feed.
//!
//! A message's record holds only its journal cursor and whether it was revoked: the rest is in
//! the journal entry being applied ([`crate::message`]), so a send writes its body once.

use super::{conversation_feed, conversation_feed_with, join, parse, personal, update_member};
use crate::command::Role;
use crate::ids::ConversationId;
use crate::keys::{self, Tree};
use crate::outcome::Audience;
use crate::records::MessageRecord;
use crate::store::StoreError;
use crate::tx::Tx;

pub(super) fn sent(
    tx: &mut Tx,
    cursor: u64,
    conversation_id: &str,
    seq: u64,
    sender: &str,
    client_msg_id: &str,
) -> Result<Audience, StoreError> {
    let conv = parse(conversation_id)?;
    if let ConversationId::Direct { a, b } = &conv {
        // A direct conversation exists from its first message.
        for user in [a, b] {
            if !tx.contains(Tree::ConvUserIdMember, &keys::pair(conversation_id, user))? {
                join(tx, conversation_id, user, Role::Member, 0, 0);
            }
        }
    }
    let msg = MessageRecord { cursor, revoked: false };
    tx.put(Tree::ConvSeqMessage, keys::with_u64(conversation_id, seq), msg.encode().to_vec());
    tx.put(Tree::SenderClientMsgIdCursor, keys::pair(sender, client_msg_id), cursor.to_be_bytes().to_vec());
    // Sending moves the sender's read marker to their own message.
    update_member(tx, conversation_id, sender, |m| m.read_seq = m.read_seq.max(seq))?;
    // One read and one write of the counters for the whole message.
    conversation_feed_with(tx, cursor, conversation_id, &conv, |meta| {
        meta.max_seq = seq;
        meta.activity_cursor = cursor;
    })
}

pub(super) fn revoked(tx: &mut Tx, cursor: u64, conversation_id: &str, seq: u64) -> Result<Audience, StoreError> {
    let conv = parse(conversation_id)?;
    let key = keys::with_u64(conversation_id, seq);
    if let Some(b) = tx.get(Tree::ConvSeqMessage, &key)? {
        // The journal keeps the body; readers show a revoked message without it.
        let msg = MessageRecord { revoked: true, ..MessageRecord::decode(&b)? };
        tx.put(Tree::ConvSeqMessage, key, msg.encode().to_vec());
    }
    conversation_feed(tx, cursor, conversation_id, &conv)
}

pub(super) fn read(
    tx: &mut Tx,
    cursor: u64,
    conversation_id: &str,
    user_id: &String,
    read_seq: u64,
) -> Result<Audience, StoreError> {
    let conv = parse(conversation_id)?;
    update_member(tx, conversation_id, user_id, |m| m.read_seq = read_seq)?;
    Ok(match conv {
        // In a direct conversation the peer sees read receipts.
        ConversationId::Direct { .. } => conversation_feed(tx, cursor, conversation_id, &conv)?,
        // In a group only the reader's own devices do.
        ConversationId::Group(_) => personal(tx, cursor, &[user_id]),
    })
}
