//! Deciding groups and their members: creation, settings, membership, roles, ownership,
//! mutes and dismissal.

use std::collections::HashSet;

use super::{
    blocked_either, check_chars, events, group_and_member, invalid, member_record, reject, require_moderator,
    require_owner, require_user, unchanged, Decided, Refused, MAX_GROUP_NAME_CHARS,
};
use crate::apply::META_NEXT_GROUP;
use crate::command::Role;
use crate::event::{Event, RemoveReason};
use crate::ids::ConversationId;
use crate::outcome::Reply;
use crate::records::MemberRecord;
use crate::rejection::Rejection;
use crate::tx::Tx;

pub(super) fn create(tx: &Tx, owner: &str, name: &str, members: &[String], max_members: u64) -> Decided {
    check_group_name(name)?;
    let others = distinct(members.iter().filter(|m| *m != owner));
    // The count is checked before any per-member read: an oversized list costs one pass.
    if 1 + others.len() as u64 > max_members {
        return invalid(format!("a group has at most {max_members} members"));
    }
    for m in &others {
        require_user(tx, m)?;
        require_consent(tx, owner, m)?;
    }
    let group_id = tx.meta_u64(META_NEXT_GROUP)?.unwrap_or(1);
    events(vec![Event::GroupCreated { group_id, name: name.to_owned(), owner: owner.to_owned(), members: others }])
}

pub(super) fn update(tx: &Tx, actor: &str, group_id: u64, name: Option<&str>, mute_all: Option<bool>) -> Decided {
    let (group, me) = group_and_member(tx, group_id, actor)?;
    require_moderator(&me)?;
    if let Some(n) = name {
        check_group_name(n)?;
    }
    let new_name = name.map_or_else(|| group.name.clone(), str::to_owned);
    let new_mute_all = mute_all.unwrap_or(group.mute_all);
    if new_name == group.name && new_mute_all == group.mute_all {
        return unchanged(Reply::Group { group_id });
    }
    events(vec![Event::GroupUpdated { group_id, name: new_name, mute_all: new_mute_all }])
}

pub(super) fn add_members(tx: &Tx, actor: &str, group_id: u64, user_ids: &[String], max_members: u64) -> Decided {
    let (group, me) = group_and_member(tx, group_id, actor)?;
    require_moderator(&me)?;
    let candidates = distinct(user_ids.iter());
    // More distinct ids than the limit can never fit, whoever of them is already a member
    // (the group holds at most `max_members`): refuse before reading anything per id.
    if candidates.len() as u64 > max_members {
        return invalid(format!("a group has at most {max_members} members"));
    }
    let conv_id = ConversationId::Group(group_id).to_string();
    let mut new = Vec::new();
    for u in candidates {
        require_user(tx, &u)?;
        if member_record(tx, &conv_id, &u)?.is_none() {
            require_consent(tx, actor, &u)?;
            new.push(u);
        }
    }
    if new.is_empty() {
        return unchanged(Reply::Group { group_id });
    }
    if group.member_count + new.len() as u64 > max_members {
        return invalid(format!("a group has at most {max_members} members"));
    }
    events(vec![Event::MembersAdded { group_id, user_ids: new, by: actor.to_owned() }])
}

pub(super) fn kick(tx: &Tx, actor: &str, group_id: u64, user_id: &str) -> Decided {
    let (_, me) = group_and_member(tx, group_id, actor)?;
    if actor == user_id {
        return invalid("use leave to leave a group");
    }
    require_moderator(&me)?;
    let target = require_target(tx, group_id, user_id)?;
    if me.role == Role::Admin && target.role != Role::Member {
        return reject(Rejection::Forbidden("admins can kick plain members only".into()));
    }
    events(vec![Event::MemberRemoved {
        group_id,
        user_id: user_id.to_owned(),
        by: actor.to_owned(),
        reason: RemoveReason::Kicked,
    }])
}

pub(super) fn leave(tx: &Tx, user_id: &str, group_id: u64) -> Decided {
    let (_, me) = group_and_member(tx, group_id, user_id)?;
    if me.role == Role::Owner {
        return reject(Rejection::OwnerCannotLeave);
    }
    events(vec![Event::MemberRemoved {
        group_id,
        user_id: user_id.to_owned(),
        by: user_id.to_owned(),
        reason: RemoveReason::Left,
    }])
}

pub(super) fn set_role(tx: &Tx, actor: &str, group_id: u64, user_id: &str, role: Role) -> Decided {
    let (_, me) = group_and_member(tx, group_id, actor)?;
    require_owner(&me)?;
    if role == Role::Owner {
        return invalid("use transfer to make someone the owner");
    }
    let target = require_target(tx, group_id, user_id)?;
    if target.role == Role::Owner {
        return invalid("the owner's role changes only by transfer");
    }
    if target.role == role {
        return unchanged(Reply::Group { group_id });
    }
    events(vec![Event::MemberRoleSet { group_id, user_id: user_id.to_owned(), role }])
}

pub(super) fn transfer(tx: &Tx, actor: &str, group_id: u64, to: &str) -> Decided {
    let (_, me) = group_and_member(tx, group_id, actor)?;
    require_owner(&me)?;
    if actor == to {
        return invalid("you already own this group");
    }
    require_target(tx, group_id, to)?;
    events(vec![Event::OwnerTransferred { group_id, from: actor.to_owned(), to: to.to_owned() }])
}

pub(super) fn mute(tx: &Tx, actor: &str, group_id: u64, user_id: &str, until_ms: u64) -> Decided {
    let (_, me) = group_and_member(tx, group_id, actor)?;
    require_moderator(&me)?;
    let target = require_target(tx, group_id, user_id)?;
    if target.role == Role::Owner || (me.role == Role::Admin && target.role == Role::Admin && actor != user_id) {
        return reject(Rejection::Forbidden("you cannot mute this member".into()));
    }
    events(vec![Event::MemberMuted { group_id, user_id: user_id.to_owned(), until_ms }])
}

pub(super) fn dismiss(tx: &Tx, actor: &str, group_id: u64) -> Decided {
    let (_, me) = group_and_member(tx, group_id, actor)?;
    require_owner(&me)?;
    events(vec![Event::GroupDismissed { group_id, by: actor.to_owned() }])
}

/// The ids in their first-seen order, each once. A hash set makes this one pass: a linear
/// `contains` per id was quadratic, and 80,000 ids held up every write behind it on every node.
fn distinct<'a>(ids: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut seen: HashSet<&str> = HashSet::new();
    ids.filter(|id| seen.insert(id.as_str())).cloned().collect()
}

/// `blocked` when `actor` and `user` block one another either way: being put in a group
/// reaches the user as surely as a direct message does, so a block stops that too.
fn require_consent(tx: &Tx, actor: &str, user: &str) -> Result<(), Refused> {
    if blocked_either(tx, actor, user)? {
        return reject(Rejection::Blocked);
    }
    Ok(())
}

/// The membership of the command's target, `not_found` when they are not a member.
fn require_target(tx: &Tx, group_id: u64, user_id: &str) -> Result<MemberRecord, Refused> {
    let conv_id = ConversationId::Group(group_id).to_string();
    Ok(member_record(tx, &conv_id, user_id)?
        .ok_or_else(|| Rejection::NotFound(format!("{user_id} is not a member")))?)
}

fn check_group_name(name: &str) -> Result<(), Refused> {
    if name.trim().is_empty() {
        return invalid("name must not be blank");
    }
    check_chars("name", name, MAX_GROUP_NAME_CHARS)
}
