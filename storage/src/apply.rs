//! `apply`: the only way projections change. Used live (after `decide`) and by replay.
//!
//! Pure and deterministic: it reads and writes the projections through a [`Tx`] and uses
//! nothing but the event, its cursor and its ts. It never fails on valid events; an `Err` is a
//! corrupt store.

use crate::command::Role;
use crate::event::Event;
use crate::ids::ConversationId;
use crate::keys::{self, Tree};
use crate::outcome::Audience;
use crate::records::{
    ConversationRecord, FriendRequestRecord, GroupRecord, MemberRecord, MessageRecord, SessionRecord, UserRecord,
};
use crate::store::{StoreError, Tx};

/// Meta key of the next group id to assign.
pub const META_NEXT_GROUP: &str = "next_group_id";

/// Marks an open membership interval.
pub const OPEN: u64 = u64::MAX;

pub(crate) fn apply(tx: &mut Tx, cursor: u64, ts: u64, event: &Event) -> Result<Audience, StoreError> {
    let aud = match event {
        Event::UserRegistered { user_id, display_name, password_hash } => {
            let rec =
                UserRecord { display_name: display_name.clone(), password_hash: password_hash.clone(), created_at: ts };
            tx.put_rec(Tree::UserIdUser, user_id.as_bytes().to_vec(), &rec);
            Audience::default()
        }
        Event::SessionCreated { user_id, session_id, device, expires_at } => {
            let rec = SessionRecord {
                user_id: user_id.clone(),
                device: device.clone(),
                created_at: ts,
                expires_at: *expires_at,
            };
            tx.put_rec(Tree::SessionIdSession, session_id.as_bytes().to_vec(), &rec);
            tx.put(Tree::UserIdSessionId, keys::pair(user_id, session_id), Vec::new());
            Audience::default()
        }
        Event::SessionRevoked { user_id, session_id } => {
            tx.remove(Tree::SessionIdSession, session_id.as_bytes().to_vec());
            tx.remove(Tree::UserIdSessionId, keys::pair(user_id, session_id));
            personal(tx, cursor, &[user_id])
        }
        Event::FriendRequested { from, to, note } => {
            let rec = FriendRequestRecord { note: note.clone(), ts };
            tx.put_rec(Tree::FromToFriendRequest, keys::pair(from, to), &rec);
            tx.put(Tree::ToFrom, keys::pair(to, from), Vec::new());
            personal(tx, cursor, &[from, to])
        }
        Event::FriendRequestRejected { from, to } => {
            drop_request(tx, from, to);
            personal(tx, cursor, &[from, to])
        }
        Event::FriendAdded { a, b } => {
            drop_request(tx, a, b);
            drop_request(tx, b, a);
            tx.put(Tree::UserIdPeerSince, keys::pair(a, b), ts.to_be_bytes().to_vec());
            tx.put(Tree::UserIdPeerSince, keys::pair(b, a), ts.to_be_bytes().to_vec());
            personal(tx, cursor, &[a, b])
        }
        Event::FriendRemoved { a, b } => {
            tx.remove(Tree::UserIdPeerSince, keys::pair(a, b));
            tx.remove(Tree::UserIdPeerSince, keys::pair(b, a));
            personal(tx, cursor, &[a, b])
        }
        Event::Blocked { user_id, target } => {
            tx.put(Tree::UserIdTargetBlock, keys::pair(user_id, target), ts.to_be_bytes().to_vec());
            personal(tx, cursor, &[user_id])
        }
        Event::Unblocked { user_id, target } => {
            tx.remove(Tree::UserIdTargetBlock, keys::pair(user_id, target));
            personal(tx, cursor, &[user_id])
        }
        Event::MessageSent { conversation_id, seq, sender, body, client_msg_id, reply_to } => {
            let conv = parse(conversation_id)?;
            if let ConversationId::Direct { a, b } = &conv {
                // A direct conversation exists from its first message.
                for user in [a, b] {
                    if !tx.contains(Tree::ConvUserIdMember, &keys::pair(conversation_id, user))? {
                        join(tx, conversation_id, user, Role::Member, 0, 0)?;
                    }
                }
            }
            let msg = MessageRecord {
                conversation_id: conversation_id.clone(),
                seq: *seq,
                sender: sender.clone(),
                body: body.clone(),
                ts,
                client_msg_id: client_msg_id.clone(),
                reply_to: *reply_to,
                revoked: false,
                cursor,
            };
            tx.put_rec(Tree::ConvSeqMessage, keys::with_u64(conversation_id, *seq), &msg);
            tx.put(
                Tree::SenderClientMsgIdConvSeq,
                keys::pair(sender, client_msg_id),
                keys::with_u64(conversation_id, *seq),
            );
            // Sending moves the sender's read marker to their own message.
            update_member(tx, conversation_id, sender, |m| m.read_seq = m.read_seq.max(*seq))?;
            // One read and one write of the counters for the whole message.
            conversation_feed_with(tx, cursor, conversation_id, &conv, |meta| {
                meta.max_seq = *seq;
                meta.activity_cursor = cursor;
            })?
        }
        Event::MessageRevoked { conversation_id, seq, .. } => {
            let conv = parse(conversation_id)?;
            let key = keys::with_u64(conversation_id, *seq);
            if let Some(mut msg) = tx.get_rec::<MessageRecord>(Tree::ConvSeqMessage, &key)? {
                msg.body.clear();
                msg.revoked = true;
                tx.put_rec(Tree::ConvSeqMessage, key, &msg);
            }
            conversation_feed(tx, cursor, conversation_id, &conv)?
        }
        Event::ReadMarked { conversation_id, user_id, read_seq } => {
            let conv = parse(conversation_id)?;
            update_member(tx, conversation_id, user_id, |m| m.read_seq = *read_seq)?;
            match conv {
                // In a direct conversation the peer sees read receipts.
                ConversationId::Direct { .. } => conversation_feed(tx, cursor, conversation_id, &conv)?,
                // In a group only the reader's own devices do.
                ConversationId::Group(_) => personal(tx, cursor, &[user_id]),
            }
        }
        Event::GroupCreated { group_id, name, owner, members } => {
            let conv_id = ConversationId::Group(*group_id).to_string();
            tx.put(Tree::Meta, META_NEXT_GROUP.as_bytes().to_vec(), (group_id + 1).to_be_bytes().to_vec());
            let rec = GroupRecord {
                name: name.clone(),
                owner: owner.clone(),
                mute_all: false,
                member_count: 1 + members.len() as u64,
                created_at: ts,
                dismissed: false,
            };
            tx.put_rec(Tree::GroupIdGroup, keys::u64_key(*group_id).to_vec(), &rec);
            let meta = ConversationRecord { max_seq: 0, last_feed_cursor: 0, activity_cursor: cursor };
            tx.put_rec(Tree::ConvMeta, conv_id.as_bytes().to_vec(), &meta);
            join(tx, &conv_id, owner, Role::Owner, 0, cursor)?;
            for m in members {
                join(tx, &conv_id, m, Role::Member, 0, cursor)?;
            }
            let mut aud = group_feed(tx, cursor, *group_id)?;
            aud.users = std::iter::once(owner).chain(members).cloned().collect();
            aud
        }
        Event::GroupUpdated { group_id, name, mute_all } => {
            update_group(tx, *group_id, |g| {
                g.name = name.clone();
                g.mute_all = *mute_all;
            })?;
            group_feed(tx, cursor, *group_id)?
        }
        Event::MembersAdded { group_id, user_ids, .. } => {
            let conv_id = ConversationId::Group(*group_id).to_string();
            let max_seq = conv_meta(tx, &conv_id)?.max_seq;
            for u in user_ids {
                // New members see only what comes after they joined, and start with nothing unread.
                join(tx, &conv_id, u, Role::Member, max_seq, cursor)?;
            }
            update_group(tx, *group_id, |g| g.member_count += user_ids.len() as u64)?;
            let mut aud = group_feed(tx, cursor, *group_id)?;
            aud.users = user_ids.clone();
            aud
        }
        Event::MemberRemoved { group_id, user_id, .. } => {
            let conv_id = ConversationId::Group(*group_id).to_string();
            // The feed entry goes in first so the removed member's interval still covers it:
            // they get their own `member_removed`.
            let mut aud = group_feed(tx, cursor, *group_id)?;
            leave(tx, &conv_id, user_id, cursor)?;
            update_group(tx, *group_id, |g| g.member_count = g.member_count.saturating_sub(1))?;
            aud.users = vec![user_id.clone()];
            aud
        }
        Event::MemberRoleSet { group_id, user_id, role } => {
            let conv_id = ConversationId::Group(*group_id).to_string();
            update_member(tx, &conv_id, user_id, |m| m.role = *role)?;
            group_feed(tx, cursor, *group_id)?
        }
        Event::MemberMuted { group_id, user_id, until_ms } => {
            let conv_id = ConversationId::Group(*group_id).to_string();
            update_member(tx, &conv_id, user_id, |m| m.muted_until = *until_ms)?;
            group_feed(tx, cursor, *group_id)?
        }
        Event::OwnerTransferred { group_id, from, to } => {
            let conv_id = ConversationId::Group(*group_id).to_string();
            // The previous owner stays on as an admin.
            update_member(tx, &conv_id, from, |m| m.role = Role::Admin)?;
            update_member(tx, &conv_id, to, |m| m.role = Role::Owner)?;
            update_group(tx, *group_id, |g| g.owner = to.clone())?;
            group_feed(tx, cursor, *group_id)?
        }
        Event::GroupDismissed { group_id, .. } => {
            let conv_id = ConversationId::Group(*group_id).to_string();
            let mut aud = group_feed(tx, cursor, *group_id)?;
            let members: Vec<String> = tx
                .scan_prefix(Tree::ConvUserIdMember, &keys::prefix(&conv_id))?
                .into_iter()
                .filter_map(|(k, _)| keys::second(&k).map(str::to_owned))
                .collect();
            for m in &members {
                leave(tx, &conv_id, m, cursor)?;
            }
            update_group(tx, *group_id, |g| {
                g.dismissed = true;
                g.member_count = 0;
            })?;
            aud.users = members;
            aud
        }
    };
    Ok(aud)
}

fn parse(conversation_id: &str) -> Result<ConversationId, StoreError> {
    ConversationId::parse(conversation_id)
        .ok_or_else(|| StoreError::Corrupt(format!("journal holds a bad conversation id {conversation_id:?}")))
}

fn drop_request(tx: &mut Tx, from: &str, to: &str) {
    tx.remove(Tree::FromToFriendRequest, keys::pair(from, to));
    tx.remove(Tree::ToFrom, keys::pair(to, from));
}

/// Adds the entry to each user's personal feed.
fn personal(tx: &mut Tx, cursor: u64, users: &[&String]) -> Audience {
    for u in users {
        tx.put(Tree::UserIdCursor, keys::with_u64(u, cursor), Vec::new());
    }
    Audience { users: users.iter().map(|u| (*u).clone()).collect(), group: None }
}

/// Adds the entry to a conversation's feed (one record, whatever the member count).
fn conversation_feed(tx: &mut Tx, cursor: u64, conv_id: &str, conv: &ConversationId) -> Result<Audience, StoreError> {
    conversation_feed_with(tx, cursor, conv_id, conv, |_| {})
}

/// [`conversation_feed`], also changing the conversation's counters in the same write.
fn conversation_feed_with(
    tx: &mut Tx,
    cursor: u64,
    conv_id: &str,
    conv: &ConversationId,
    change: impl FnOnce(&mut ConversationRecord),
) -> Result<Audience, StoreError> {
    tx.put(Tree::ConvCursor, keys::with_u64(conv_id, cursor), Vec::new());
    let mut meta = conv_meta(tx, conv_id)?;
    change(&mut meta);
    meta.last_feed_cursor = cursor;
    tx.put_rec(Tree::ConvMeta, conv_id.as_bytes().to_vec(), &meta);
    Ok(match conv {
        ConversationId::Direct { a, b } => Audience { users: vec![a.clone(), b.clone()], group: None },
        ConversationId::Group(g) => Audience { users: Vec::new(), group: Some(*g) },
    })
}

fn group_feed(tx: &mut Tx, cursor: u64, group_id: u64) -> Result<Audience, StoreError> {
    let conv = ConversationId::Group(group_id);
    conversation_feed(tx, cursor, &conv.to_string(), &conv)
}

pub(crate) fn conv_meta(tx: &Tx, conv_id: &str) -> Result<ConversationRecord, StoreError> {
    Ok(tx.get_rec(Tree::ConvMeta, conv_id.as_bytes())?.unwrap_or_default())
}

/// Makes `user` an active member from `cursor` on.
fn join(tx: &mut Tx, conv_id: &str, user: &str, role: Role, joined_seq: u64, cursor: u64) -> Result<(), StoreError> {
    let rec = MemberRecord { role, joined_seq, read_seq: joined_seq, muted_until: 0 };
    tx.put_rec(Tree::ConvUserIdMember, keys::pair(conv_id, user), &rec);
    tx.put(Tree::UserIdConv, keys::pair(user, conv_id), Vec::new());
    tx.put(Tree::UserIdConvFromUntil, keys::triple(user, conv_id, cursor), OPEN.to_be_bytes().to_vec());
    Ok(())
}

/// Ends `user`'s membership; the interval closes at `cursor` inclusive.
fn leave(tx: &mut Tx, conv_id: &str, user: &str, cursor: u64) -> Result<(), StoreError> {
    tx.remove(Tree::ConvUserIdMember, keys::pair(conv_id, user));
    tx.remove(Tree::UserIdConv, keys::pair(user, conv_id));
    let mut prefix = keys::pair(user, conv_id);
    prefix.push(keys::SEP);
    for (k, v) in tx.scan_prefix(Tree::UserIdConvFromUntil, &prefix)? {
        if keys::trailing_u64(&v) == Some(OPEN) {
            tx.put(Tree::UserIdConvFromUntil, k, cursor.to_be_bytes().to_vec());
        }
    }
    Ok(())
}

fn update_member(tx: &mut Tx, conv_id: &str, user: &str, f: impl FnOnce(&mut MemberRecord)) -> Result<(), StoreError> {
    let key = keys::pair(conv_id, user);
    if let Some(mut m) = tx.get_rec::<MemberRecord>(Tree::ConvUserIdMember, &key)? {
        f(&mut m);
        tx.put_rec(Tree::ConvUserIdMember, key, &m);
    }
    Ok(())
}

fn update_group(tx: &mut Tx, group_id: u64, f: impl FnOnce(&mut GroupRecord)) -> Result<(), StoreError> {
    let key = keys::u64_key(group_id).to_vec();
    if let Some(mut g) = tx.get_rec::<GroupRecord>(Tree::GroupIdGroup, &key)? {
        f(&mut g);
        tx.put_rec(Tree::GroupIdGroup, key, &g);
    }
    Ok(())
}
