//! Deciding sends, read markers and revokes.

use super::{
    are_friends, blocked_either, events, group_record, invalid, member_record, parse_conv, reject, require_active_peer,
    require_member, require_user, unchanged, Decided, MAX_CLIENT_MSG_ID_BYTES, REVOKE_WINDOW_MS,
};
use crate::apply::conv_meta;
use crate::command::Role;
use crate::event::Event;
use crate::ids::ConversationId;
use crate::keys::{self, Tree};
use crate::message::{self, Message};
use crate::outcome::Reply;
use crate::rejection::Rejection;
use crate::store::StoreError;
use crate::tx::Tx;

// The arguments are `CommandKind::Send`'s fields and the command's ts.
#[allow(clippy::too_many_arguments)]
pub(super) fn send(
    tx: &Tx,
    now: u64,
    sender: &str,
    conversation_id: &str,
    client_msg_id: &str,
    body: &str,
    reply_to: Option<u64>,
    max_body_bytes: u64,
) -> Decided {
    if client_msg_id.is_empty() || client_msg_id.len() > MAX_CLIENT_MSG_ID_BYTES {
        return invalid(format!("client_msg_id must be 1 to {MAX_CLIENT_MSG_ID_BYTES} bytes"));
    }
    if body.is_empty() {
        return invalid("body is empty");
    }
    if body.len() as u64 > max_body_bytes {
        return reject(Rejection::PayloadTooLarge(format!("body is longer than {max_body_bytes} bytes")));
    }
    // Idempotency first: a resend answers with the original, whatever changed since.
    if let Some(existing) = sent_message(tx, sender, client_msg_id)? {
        return unchanged(Reply::Message { message: existing, created: false });
    }
    let conv = parse_conv(conversation_id)?;
    match &conv {
        ConversationId::Direct { .. } => {
            let peer = conv.peer_of(sender).ok_or(Rejection::NotMember)?;
            require_user(tx, peer)?;
            require_active_peer(tx, peer)?;
            if blocked_either(tx, sender, peer)? {
                return reject(Rejection::Blocked);
            }
            if !are_friends(tx, sender, peer)? {
                return reject(Rejection::NotFriends);
            }
        }
        ConversationId::Group(gid) => {
            let member = require_member(tx, conversation_id, sender)?;
            let group = group_record(tx, *gid)?.ok_or(Rejection::NotMember)?;
            if member.muted_until > now || (group.mute_all && !member.role.is_moderator()) {
                return reject(Rejection::Muted);
            }
        }
    }
    let max_seq = conv_meta(tx, conversation_id)?.max_seq;
    if let Some(r) = reply_to {
        if r == 0 || r > max_seq {
            return invalid("reply_to must be the seq of a message in this conversation");
        }
    }
    events(vec![Event::MessageSent {
        conversation_id: conversation_id.to_owned(),
        seq: max_seq + 1,
        sender: sender.to_owned(),
        body: body.to_owned(),
        client_msg_id: client_msg_id.to_owned(),
        reply_to,
    }])
}

pub(super) fn read(tx: &Tx, user_id: &str, conversation_id: &str, seq: u64) -> Decided {
    let conv = parse_conv(conversation_id)?;
    let max_seq = conv_meta(tx, conversation_id)?.max_seq;
    let member = match &conv {
        ConversationId::Direct { .. } => {
            if conv.peer_of(user_id).is_none() {
                return reject(Rejection::NotMember);
            }
            // No message yet: nothing to mark.
            match member_record(tx, conversation_id, user_id)? {
                Some(m) => m,
                None => return unchanged(Reply::Read { read_seq: 0, unread: 0 }),
            }
        }
        ConversationId::Group(_) => require_member(tx, conversation_id, user_id)?,
    };
    let target = seq.min(max_seq);
    if target <= member.read_seq {
        return unchanged(Reply::Read { read_seq: member.read_seq, unread: max_seq.saturating_sub(member.read_seq) });
    }
    events(vec![Event::ReadMarked {
        conversation_id: conversation_id.to_owned(),
        user_id: user_id.to_owned(),
        read_seq: target,
    }])
}

pub(super) fn revoke(tx: &Tx, now: u64, user_id: &str, conversation_id: &str, seq: u64) -> Decided {
    let conv = parse_conv(conversation_id)?;
    let (role, floor) = match &conv {
        ConversationId::Direct { .. } => {
            if conv.peer_of(user_id).is_none() {
                return reject(Rejection::NotMember);
            }
            (Role::Member, 0)
        }
        ConversationId::Group(_) => {
            let me = require_member(tx, conversation_id, user_id)?;
            (me.role, me.joined_seq)
        }
    };
    // A group member sees only messages after `joined_seq`: earlier ones do not exist for them
    // (answering with the message would show its sender, ts and client id).
    let msg = match message::load(tx, conversation_id, seq)? {
        Some(m) if seq > floor => m,
        _ => return reject(Rejection::NotFound(format!("no message with seq {seq}"))),
    };
    if msg.revoked {
        return unchanged(Reply::Message { message: msg, created: false });
    }
    let own_in_window = msg.sender == user_id && now.saturating_sub(msg.ts) <= REVOKE_WINDOW_MS;
    let moderator = conv.is_group() && role.is_moderator();
    if !own_in_window && !moderator {
        let why = if msg.sender == user_id {
            "messages can be revoked only within 120 s of sending"
        } else {
            "you can revoke only your own messages"
        };
        return reject(Rejection::Forbidden(why.into()));
    }
    events(vec![Event::MessageRevoked { conversation_id: conversation_id.to_owned(), seq, by: user_id.to_owned() }])
}

/// The message `sender` already sent with `client_msg_id`, if any.
fn sent_message(tx: &Tx, sender: &str, client_msg_id: &str) -> Result<Option<Message>, StoreError> {
    match tx.get(Tree::SenderClientMsgIdCursor, &keys::pair(sender, client_msg_id))? {
        Some(b) => {
            let cursor = keys::trailing_u64(&b)
                .filter(|_| b.len() == 8)
                .ok_or_else(|| StoreError::Corrupt("idempotency entry is not a cursor".into()))?;
            message::load_sent_at(tx, cursor).map(Some)
        }
        None => Ok(None),
    }
}
