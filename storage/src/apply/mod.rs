//! `apply`: the only way projections change. Used live (after `decide`) and by replay.
//!
//! Pure and deterministic: it reads and writes the projections through a [`Tx`] and uses
//! nothing but the event, its cursor and its ts. It never fails on valid events; an `Err` is a
//! corrupt store. It never reads the journal: a replay that keeps no journal
//! ([`Tx::replay_projections`]) applies the same way.
//!
//! # Layout
//! `apply` dispatches each event to its aggregate's module; the feed, membership and counter
//! helpers they share are here.
//! - `users`: registrations and sessions.
//! - `friends`: friend requests, friendships and blocks.
//! - `messages`: messages, revokes and read markers.
//! - `groups`: groups and their members.

mod friends;
mod groups;
mod messages;
mod users;

use crate::command::Role;
use crate::event::Event;
use crate::ids::ConversationId;
use crate::keys::{self, Tree};
use crate::outcome::Audience;
use crate::records::{ConversationRecord, GroupRecord, MemberRecord};
use crate::store::StoreError;
use crate::tx::Tx;

/// Meta key of the next group id to assign.
pub const META_NEXT_GROUP: &str = "next_group_id";

/// Marks an open membership interval.
pub const OPEN: u64 = u64::MAX;

pub(crate) fn apply(tx: &mut Tx, cursor: u64, ts: u64, event: &Event) -> Result<Audience, StoreError> {
    Ok(match event {
        Event::UserRegistered { user_id, display_name, password_hash } => {
            users::registered(tx, ts, user_id, display_name, password_hash)
        }
        Event::SessionCreated { user_id, session_id, device, expires_at } => {
            users::session_created(tx, ts, user_id, session_id, device, *expires_at)
        }
        Event::SessionRevoked { user_id, session_id } => users::session_revoked(tx, cursor, user_id, session_id),
        Event::FriendRequested { from, to, note } => friends::requested(tx, cursor, ts, from, to, note),
        Event::FriendRequestRejected { from, to } => friends::rejected(tx, cursor, from, to),
        Event::FriendAdded { a, b } => friends::added(tx, cursor, ts, a, b),
        Event::FriendRemoved { a, b } => friends::removed(tx, cursor, a, b),
        Event::Blocked { user_id, target } => friends::blocked(tx, cursor, ts, user_id, target),
        Event::Unblocked { user_id, target } => friends::unblocked(tx, cursor, user_id, target),
        Event::MessageSent { conversation_id, seq, sender, client_msg_id, .. } => {
            messages::sent(tx, cursor, conversation_id, *seq, sender, client_msg_id)?
        }
        Event::MessageRevoked { conversation_id, seq, .. } => messages::revoked(tx, cursor, conversation_id, *seq)?,
        Event::ReadMarked { conversation_id, user_id, read_seq } => {
            messages::read(tx, cursor, conversation_id, user_id, *read_seq)?
        }
        Event::GroupCreated { group_id, name, owner, members } => {
            groups::created(tx, cursor, ts, *group_id, name, owner, members)?
        }
        Event::GroupUpdated { group_id, name, mute_all } => groups::updated(tx, cursor, *group_id, name, *mute_all)?,
        Event::MembersAdded { group_id, user_ids, .. } => groups::members_added(tx, cursor, *group_id, user_ids)?,
        Event::MemberRemoved { group_id, user_id, .. } => groups::member_removed(tx, cursor, *group_id, user_id)?,
        Event::MemberRoleSet { group_id, user_id, role } => {
            groups::member_changed(tx, cursor, *group_id, user_id, |m| m.role = *role)?
        }
        Event::MemberMuted { group_id, user_id, until_ms } => {
            groups::member_changed(tx, cursor, *group_id, user_id, |m| m.muted_until = *until_ms)?
        }
        Event::OwnerTransferred { group_id, from, to } => groups::transferred(tx, cursor, *group_id, from, to)?,
        Event::GroupDismissed { group_id, .. } => groups::dismissed(tx, cursor, *group_id)?,
        Event::UserDeactivated { user_id } => users::deactivated(tx, ts, user_id),
        Event::UserReactivated { user_id } => users::reactivated(tx, user_id),
        Event::PasswordChanged { user_id, password_hash } => users::password_changed(tx, user_id, password_hash)?,
    })
}

fn parse(conversation_id: &str) -> Result<ConversationId, StoreError> {
    ConversationId::parse(conversation_id)
        .ok_or_else(|| StoreError::Corrupt(format!("journal holds a bad conversation id {conversation_id:?}")))
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
fn join(tx: &mut Tx, conv_id: &str, user: &str, role: Role, joined_seq: u64, cursor: u64) {
    let rec = MemberRecord { role, joined_seq, read_seq: joined_seq, muted_until: 0 };
    tx.put_rec(Tree::ConvUserIdMember, keys::pair(conv_id, user), &rec);
    tx.put(Tree::UserIdConv, keys::pair(user, conv_id), Vec::new());
    tx.put(Tree::UserIdConvFromUntil, keys::triple(user, conv_id, cursor), OPEN.to_be_bytes().to_vec());
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
