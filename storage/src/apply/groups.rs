//! Applying groups and their members: `groupid_group`, the group conversation's counters,
//! members and feed, the group id counter in meta.

use super::{conv_meta, group_feed, join, leave, update_group, update_member, META_NEXT_GROUP};
use crate::command::Role;
use crate::ids::ConversationId;
use crate::keys::{self, Tree};
use crate::outcome::Audience;
use crate::records::{ConversationRecord, GroupRecord, MemberRecord};
use crate::store::StoreError;
use crate::tx::Tx;

pub(super) fn created(
    tx: &mut Tx,
    cursor: u64,
    ts: u64,
    group_id: u64,
    name: &str,
    owner: &String,
    members: &[String],
) -> Result<Audience, StoreError> {
    let conv_id = ConversationId::Group(group_id).to_string();
    tx.put(Tree::Meta, META_NEXT_GROUP.as_bytes().to_vec(), (group_id + 1).to_be_bytes().to_vec());
    let rec = GroupRecord {
        name: name.to_owned(),
        owner: owner.clone(),
        mute_all: false,
        member_count: 1 + members.len() as u64,
        created_at: ts,
        dismissed: false,
    };
    tx.put_rec(Tree::GroupIdGroup, keys::u64_key(group_id).to_vec(), &rec);
    let meta = ConversationRecord { max_seq: 0, last_feed_cursor: 0, activity_cursor: cursor };
    tx.put_rec(Tree::ConvMeta, conv_id.as_bytes().to_vec(), &meta);
    join(tx, &conv_id, owner, Role::Owner, 0, cursor);
    for m in members {
        join(tx, &conv_id, m, Role::Member, 0, cursor);
    }
    let mut aud = group_feed(tx, cursor, group_id)?;
    aud.users = std::iter::once(owner).chain(members).cloned().collect();
    Ok(aud)
}

pub(super) fn updated(
    tx: &mut Tx,
    cursor: u64,
    group_id: u64,
    name: &str,
    mute_all: bool,
) -> Result<Audience, StoreError> {
    update_group(tx, group_id, |g| {
        g.name = name.to_owned();
        g.mute_all = mute_all;
    })?;
    group_feed(tx, cursor, group_id)
}

pub(super) fn members_added(
    tx: &mut Tx,
    cursor: u64,
    group_id: u64,
    user_ids: &[String],
) -> Result<Audience, StoreError> {
    let conv_id = ConversationId::Group(group_id).to_string();
    let max_seq = conv_meta(tx, &conv_id)?.max_seq;
    for u in user_ids {
        // New members see only what comes after they joined, and start with nothing unread.
        join(tx, &conv_id, u, Role::Member, max_seq, cursor);
    }
    update_group(tx, group_id, |g| g.member_count += user_ids.len() as u64)?;
    let mut aud = group_feed(tx, cursor, group_id)?;
    aud.users = user_ids.to_vec();
    Ok(aud)
}

pub(super) fn member_removed(tx: &mut Tx, cursor: u64, group_id: u64, user_id: &str) -> Result<Audience, StoreError> {
    let conv_id = ConversationId::Group(group_id).to_string();
    // The feed entry goes in first so the removed member's interval still covers it: they get
    // their own `member_removed`.
    let mut aud = group_feed(tx, cursor, group_id)?;
    leave(tx, &conv_id, user_id, cursor)?;
    update_group(tx, group_id, |g| g.member_count = g.member_count.saturating_sub(1))?;
    aud.users = vec![user_id.to_owned()];
    Ok(aud)
}

/// A change to one member's record (role, mute); the group's feed gets the entry.
pub(super) fn member_changed(
    tx: &mut Tx,
    cursor: u64,
    group_id: u64,
    user_id: &str,
    change: impl FnOnce(&mut MemberRecord),
) -> Result<Audience, StoreError> {
    let conv_id = ConversationId::Group(group_id).to_string();
    update_member(tx, &conv_id, user_id, change)?;
    group_feed(tx, cursor, group_id)
}

pub(super) fn transferred(
    tx: &mut Tx,
    cursor: u64,
    group_id: u64,
    from: &str,
    to: &str,
) -> Result<Audience, StoreError> {
    let conv_id = ConversationId::Group(group_id).to_string();
    // The previous owner stays on as an admin.
    update_member(tx, &conv_id, from, |m| m.role = Role::Admin)?;
    update_member(tx, &conv_id, to, |m| m.role = Role::Owner)?;
    update_group(tx, group_id, |g| g.owner = to.to_owned())?;
    group_feed(tx, cursor, group_id)
}

pub(super) fn dismissed(tx: &mut Tx, cursor: u64, group_id: u64) -> Result<Audience, StoreError> {
    let conv_id = ConversationId::Group(group_id).to_string();
    let mut aud = group_feed(tx, cursor, group_id)?;
    let members: Vec<String> = tx
        .scan_prefix(Tree::ConvUserIdMember, &keys::prefix(&conv_id))?
        .into_iter()
        .filter_map(|(k, _)| keys::second(&k).map(str::to_owned))
        .collect();
    for m in &members {
        leave(tx, &conv_id, m, cursor)?;
    }
    update_group(tx, group_id, |g| {
        g.dismissed = true;
        g.member_count = 0;
    })?;
    aud.users = members;
    Ok(aud)
}
