//! `decide`: turns a committed command into events, or refuses it.
//!
//! Pure and deterministic: it reads projections (through the batch's [`Tx`], so it sees the
//! effects of earlier commands in the same batch) and the command, nothing else: no clock, no
//! randomness, no IO beyond the store. Permission races therefore resolve by log order, and a
//! replay decides identically.
//!
//! # Layout
//! [`decide`] dispatches each command to its aggregate's module; the checks they share
//! (users exist, friendship, blocks, membership) are here.
//! - `users`: registration and sessions.
//! - `friends`: friend requests, friendships and blocks.
//! - `messages`: sends, read markers and revokes.
//! - `groups`: groups and their members.

mod friends;
mod groups;
mod messages;
mod users;

use crate::command::{Command, CommandKind, Role};
use crate::event::Event;
use crate::ids::{is_valid_user_id, ConversationId};
use crate::keys::{self, Tree};
use crate::outcome::Reply;
use crate::records::{GroupRecord, MemberRecord};
use crate::rejection::Rejection;
use crate::store::StoreError;
use crate::tx::Tx;

/// How long after sending a sender may revoke their own message.
pub const REVOKE_WINDOW_MS: u64 = 120_000;
pub const MAX_DISPLAY_NAME_CHARS: usize = 128;
pub const MAX_GROUP_NAME_CHARS: usize = 128;
pub const MAX_NOTE_CHARS: usize = 512;
pub const MAX_CLIENT_MSG_ID_BYTES: usize = 128;
pub const MAX_DEVICE_CHARS: usize = 128;

/// The result of deciding a command that is not refused.
#[derive(Debug)]
pub enum Decision {
    /// Append these events, in order.
    Events(Vec<Event>),
    /// Nothing to change; answer with this (idempotent resend, read marker not moving, ...).
    Unchanged(Reply),
}

/// A refusal, or a failure to read the store (fatal, not the client's fault).
#[derive(Debug)]
pub enum Refused {
    Rejected(Rejection),
    Store(StoreError),
}

impl From<Rejection> for Refused {
    fn from(r: Rejection) -> Self {
        Refused::Rejected(r)
    }
}

impl From<StoreError> for Refused {
    fn from(e: StoreError) -> Self {
        Refused::Store(e)
    }
}

type Decided = Result<Decision, Refused>;

fn events(evs: Vec<Event>) -> Decided {
    Ok(Decision::Events(evs))
}

fn unchanged(reply: Reply) -> Decided {
    Ok(Decision::Unchanged(reply))
}

fn reject<T>(r: Rejection) -> Result<T, Refused> {
    Err(Refused::Rejected(r))
}

fn invalid<T>(msg: impl Into<String>) -> Result<T, Refused> {
    reject(Rejection::InvalidRequest(msg.into()))
}

pub fn decide(tx: &Tx, cmd: &Command) -> Decided {
    let now = cmd.ts;
    match &cmd.kind {
        CommandKind::Register { user_id, display_name, password_hash } => {
            users::register(tx, user_id, display_name, password_hash)
        }
        CommandKind::CreateSession { user_id, session_id, device, expires_at } => {
            users::create_session(tx, user_id, session_id, device, *expires_at)
        }
        CommandKind::RevokeSession { user_id, session_id } => users::revoke_session(tx, user_id, session_id),
        CommandKind::FriendRequest { from, to, note } => friends::request(tx, from, to, note),
        CommandKind::AcceptFriend { user_id, from } => friends::accept(tx, user_id, from),
        CommandKind::RejectFriend { user_id, from } => friends::reject_request(tx, user_id, from),
        CommandKind::RemoveFriend { user_id, other } => friends::remove(tx, user_id, other),
        CommandKind::Block { user_id, target } => friends::block(tx, user_id, target),
        CommandKind::Unblock { user_id, target } => friends::unblock(tx, user_id, target),
        CommandKind::Send { sender, conversation_id, client_msg_id, body, reply_to, max_body_bytes } => {
            messages::send(tx, now, sender, conversation_id, client_msg_id, body, *reply_to, *max_body_bytes)
        }
        CommandKind::Read { user_id, conversation_id, seq } => messages::read(tx, user_id, conversation_id, *seq),
        CommandKind::Revoke { user_id, conversation_id, seq } => {
            messages::revoke(tx, now, user_id, conversation_id, *seq)
        }
        CommandKind::CreateGroup { owner, name, members, max_members } => {
            groups::create(tx, owner, name, members, *max_members)
        }
        CommandKind::UpdateGroup { actor, group_id, name, mute_all } => {
            groups::update(tx, actor, *group_id, name.as_deref(), *mute_all)
        }
        CommandKind::AddMembers { actor, group_id, user_ids, max_members } => {
            groups::add_members(tx, actor, *group_id, user_ids, *max_members)
        }
        CommandKind::Kick { actor, group_id, user_id } => groups::kick(tx, actor, *group_id, user_id),
        CommandKind::Leave { user_id, group_id } => groups::leave(tx, user_id, *group_id),
        CommandKind::SetRole { actor, group_id, user_id, role } => {
            groups::set_role(tx, actor, *group_id, user_id, *role)
        }
        CommandKind::Transfer { actor, group_id, to } => groups::transfer(tx, actor, *group_id, to),
        CommandKind::Mute { actor, group_id, user_id, until_ms } => {
            groups::mute(tx, actor, *group_id, user_id, *until_ms)
        }
        CommandKind::Dismiss { actor, group_id } => groups::dismiss(tx, actor, *group_id),
        CommandKind::CreateUser { user_id, display_name, password_hash } => {
            users::create_user(tx, user_id, display_name, password_hash)
        }
        CommandKind::Deactivate { user_id } => users::deactivate(tx, user_id),
        CommandKind::Reactivate { user_id } => users::reactivate(tx, user_id),
        CommandKind::RevokeAllSessions { user_id } => users::revoke_all_sessions(tx, user_id),
        CommandKind::SetPassword { user_id, password_hash } => users::set_password(tx, user_id, password_hash),
    }
}

fn check_chars(field: &str, value: &str, max: usize) -> Result<(), Refused> {
    let n = value.chars().count();
    if n == 0 || n > max {
        return invalid(format!("{field} must be 1 to {max} characters"));
    }
    Ok(())
}

fn parse_conv(conversation_id: &str) -> Result<ConversationId, Refused> {
    ConversationId::parse(conversation_id)
        .ok_or_else(|| Rejection::InvalidRequest(format!("bad conversation id {conversation_id:?}")).into())
}

pub(crate) fn user_exists(tx: &Tx, user: &str) -> Result<bool, StoreError> {
    tx.contains(Tree::UserIdUser, user.as_bytes())
}

fn require_user(tx: &Tx, user: &str) -> Result<(), Refused> {
    if !is_valid_user_id(user) || !user_exists(tx, user)? {
        return reject(Rejection::NotFound(format!("no user {user}")));
    }
    Ok(())
}

/// Whether an app backend has deactivated the account.
pub(crate) fn is_deactivated(tx: &Tx, user: &str) -> Result<bool, StoreError> {
    tx.contains(Tree::UserIdDeactivated, user.as_bytes())
}

/// Refuses to reach a deactivated account (`forbidden`: the caller did nothing wrong, but the
/// account takes nothing new).
fn require_active_peer(tx: &Tx, user: &str) -> Result<(), Refused> {
    if is_deactivated(tx, user)? {
        return reject(Rejection::Forbidden(format!("the account {user} is deactivated")));
    }
    Ok(())
}

fn are_friends(tx: &Tx, a: &str, b: &str) -> Result<bool, StoreError> {
    tx.contains(Tree::UserIdPeerSince, &keys::pair(a, b))
}

fn blocked_either(tx: &Tx, a: &str, b: &str) -> Result<bool, StoreError> {
    Ok(tx.contains(Tree::UserIdTargetBlock, &keys::pair(a, b))?
        || tx.contains(Tree::UserIdTargetBlock, &keys::pair(b, a))?)
}

fn member_record(tx: &Tx, conv_id: &str, user: &str) -> Result<Option<MemberRecord>, StoreError> {
    tx.get_rec(Tree::ConvUserIdMember, &keys::pair(conv_id, user))
}

fn require_member(tx: &Tx, conv_id: &str, user: &str) -> Result<MemberRecord, Refused> {
    member_record(tx, conv_id, user)?.ok_or(Refused::Rejected(Rejection::NotMember))
}

fn group_record(tx: &Tx, group_id: u64) -> Result<Option<GroupRecord>, StoreError> {
    tx.get_rec(Tree::GroupIdGroup, &keys::u64_key(group_id))
}

/// The group (`not_found` if it never existed) and the caller's membership (`not_member`).
fn group_and_member(tx: &Tx, group_id: u64, user: &str) -> Result<(GroupRecord, MemberRecord), Refused> {
    let group = group_record(tx, group_id)?.ok_or_else(|| Rejection::NotFound(format!("no group {group_id}")))?;
    let me = require_member(tx, &ConversationId::Group(group_id).to_string(), user)?;
    Ok((group, me))
}

fn require_moderator(me: &MemberRecord) -> Result<(), Refused> {
    if !me.role.is_moderator() {
        return reject(Rejection::NotAdmin);
    }
    Ok(())
}

fn require_owner(me: &MemberRecord) -> Result<(), Refused> {
    match me.role {
        Role::Owner => Ok(()),
        Role::Admin => reject(Rejection::Forbidden("only the group's owner may do this".into())),
        Role::Member => reject(Rejection::NotAdmin),
    }
}
