//! `decide`: turns a committed command into events, or refuses it.
//!
//! Pure and deterministic: it reads projections (through the batch's [`Tx`], so it sees the
//! effects of earlier commands in the same batch) and the command, nothing else: no clock, no
//! randomness, no IO beyond the store. Permission races therefore resolve by log order, and a
//! replay decides identically.

use crate::command::{Command, CommandKind, Role};
use crate::event::{Event, RemoveReason};
use crate::ids::{is_valid_user_id, ConversationId};
use crate::keys::{self, Tree};
use crate::outcome::Reply;
use crate::records::{FriendRequestRecord, GroupRecord, MemberRecord, MessageRecord};
use crate::rejection::Rejection;
use crate::store::{StoreError, Tx};

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
            if !is_valid_user_id(user_id) {
                return invalid("user_id must match ^[a-z0-9_]{3,32}$");
            }
            check_chars("display_name", display_name, MAX_DISPLAY_NAME_CHARS)?;
            if password_hash.is_empty() {
                return invalid("password hash missing");
            }
            if user_exists(tx, user_id)? {
                return reject(Rejection::UserExists);
            }
            events(vec![Event::UserRegistered {
                user_id: user_id.clone(),
                display_name: display_name.clone(),
                password_hash: password_hash.clone(),
            }])
        }
        CommandKind::CreateSession { user_id, session_id, device, expires_at } => {
            require_user(tx, user_id)?;
            check_chars("device", device, MAX_DEVICE_CHARS)?;
            if session_id.is_empty() || tx.contains(Tree::SessionIdSession, session_id.as_bytes())? {
                return invalid("bad session id");
            }
            events(vec![Event::SessionCreated {
                user_id: user_id.clone(),
                session_id: session_id.clone(),
                device: device.clone(),
                expires_at: *expires_at,
            }])
        }
        CommandKind::RevokeSession { user_id, session_id } => {
            if !tx.contains(Tree::UserIdSessionId, &keys::pair(user_id, session_id))? {
                return reject(Rejection::NotFound("no such session".into()));
            }
            events(vec![Event::SessionRevoked { user_id: user_id.clone(), session_id: session_id.clone() }])
        }
        CommandKind::FriendRequest { from, to, note } => {
            if from == to {
                return invalid("you cannot befriend yourself");
            }
            if note.chars().count() > MAX_NOTE_CHARS {
                return invalid(format!("note is longer than {MAX_NOTE_CHARS} characters"));
            }
            require_user(tx, to)?;
            if blocked_either(tx, from, to)? {
                return reject(Rejection::Blocked);
            }
            if are_friends(tx, from, to)? {
                return reject(Rejection::AlreadyFriends);
            }
            if tx.contains(Tree::FromToFriendRequest, &keys::pair(to, from))? {
                // They already asked us: a mutual request makes friends at once.
                return events(vec![friend_added(from, to)]);
            }
            if let Some(existing) =
                tx.get_rec::<FriendRequestRecord>(Tree::FromToFriendRequest, &keys::pair(from, to))?
            {
                return Ok(Decision::Unchanged(Reply::FriendRequest {
                    from: from.clone(),
                    to: to.clone(),
                    note: existing.note,
                    ts: existing.ts,
                }));
            }
            events(vec![Event::FriendRequested { from: from.clone(), to: to.clone(), note: note.clone() }])
        }
        CommandKind::AcceptFriend { user_id, from } => {
            if !tx.contains(Tree::FromToFriendRequest, &keys::pair(from, user_id))? {
                return reject(Rejection::NotFound(format!("no pending request from {from}")));
            }
            if blocked_either(tx, from, user_id)? {
                return reject(Rejection::Blocked);
            }
            events(vec![friend_added(from, user_id)])
        }
        CommandKind::RejectFriend { user_id, from } => {
            if !tx.contains(Tree::FromToFriendRequest, &keys::pair(from, user_id))? {
                return reject(Rejection::NotFound(format!("no pending request from {from}")));
            }
            events(vec![Event::FriendRequestRejected { from: from.clone(), to: user_id.clone() }])
        }
        CommandKind::RemoveFriend { user_id, other } => {
            if !are_friends(tx, user_id, other)? {
                return reject(Rejection::NotFound(format!("{other} is not your friend")));
            }
            let (a, b) = ordered(user_id, other);
            events(vec![Event::FriendRemoved { a, b }])
        }
        CommandKind::Block { user_id, target } => {
            if user_id == target {
                return invalid("you cannot block yourself");
            }
            require_user(tx, target)?;
            if tx.contains(Tree::UserIdTargetBlock, &keys::pair(user_id, target))? {
                return Ok(Decision::Unchanged(Reply::Done));
            }
            events(vec![Event::Blocked { user_id: user_id.clone(), target: target.clone() }])
        }
        CommandKind::Unblock { user_id, target } => {
            if !tx.contains(Tree::UserIdTargetBlock, &keys::pair(user_id, target))? {
                return Ok(Decision::Unchanged(Reply::Done));
            }
            events(vec![Event::Unblocked { user_id: user_id.clone(), target: target.clone() }])
        }
        CommandKind::Send { sender, conversation_id, client_msg_id, body, reply_to, max_body_bytes } => {
            if client_msg_id.is_empty() || client_msg_id.len() > MAX_CLIENT_MSG_ID_BYTES {
                return invalid(format!("client_msg_id must be 1 to {MAX_CLIENT_MSG_ID_BYTES} bytes"));
            }
            if body.is_empty() {
                return invalid("body is empty");
            }
            if body.len() as u64 > *max_body_bytes {
                return reject(Rejection::PayloadTooLarge(format!("body is longer than {max_body_bytes} bytes")));
            }
            // Idempotency first: a resend answers with the original, whatever changed since.
            if let Some(existing) = sent_message(tx, sender, client_msg_id)? {
                return Ok(Decision::Unchanged(Reply::Message { message: existing, created: false }));
            }
            let conv = parse_conv(conversation_id)?;
            let max_seq = match &conv {
                ConversationId::Direct { .. } => {
                    let peer = conv.peer_of(sender).ok_or(Rejection::NotMember)?;
                    require_user(tx, peer)?;
                    if blocked_either(tx, sender, peer)? {
                        return reject(Rejection::Blocked);
                    }
                    if !are_friends(tx, sender, peer)? {
                        return reject(Rejection::NotFriends);
                    }
                    crate::apply::conv_meta(tx, conversation_id)?.max_seq
                }
                ConversationId::Group(gid) => {
                    let member = require_member(tx, conversation_id, sender)?;
                    let group = group_record(tx, *gid)?.ok_or(Rejection::NotMember)?;
                    if member.muted_until > now || (group.mute_all && !member.role.is_moderator()) {
                        return reject(Rejection::Muted);
                    }
                    crate::apply::conv_meta(tx, conversation_id)?.max_seq
                }
            };
            if let Some(r) = reply_to {
                if *r == 0 || *r > max_seq {
                    return invalid("reply_to must be the seq of a message in this conversation");
                }
            }
            events(vec![Event::MessageSent {
                conversation_id: conversation_id.clone(),
                seq: max_seq + 1,
                sender: sender.clone(),
                body: body.clone(),
                client_msg_id: client_msg_id.clone(),
                reply_to: *reply_to,
            }])
        }
        CommandKind::Read { user_id, conversation_id, seq } => {
            let conv = parse_conv(conversation_id)?;
            let max_seq = crate::apply::conv_meta(tx, conversation_id)?.max_seq;
            let member = match &conv {
                ConversationId::Direct { .. } => {
                    if conv.peer_of(user_id).is_none() {
                        return reject(Rejection::NotMember);
                    }
                    // No message yet: nothing to mark.
                    match member_record(tx, conversation_id, user_id)? {
                        Some(m) => m,
                        None => return Ok(Decision::Unchanged(Reply::Read { read_seq: 0, unread: 0 })),
                    }
                }
                ConversationId::Group(_) => require_member(tx, conversation_id, user_id)?,
            };
            let target = (*seq).min(max_seq);
            if target <= member.read_seq {
                return Ok(Decision::Unchanged(Reply::Read {
                    read_seq: member.read_seq,
                    unread: max_seq.saturating_sub(member.read_seq),
                }));
            }
            events(vec![Event::ReadMarked {
                conversation_id: conversation_id.clone(),
                user_id: user_id.clone(),
                read_seq: target,
            }])
        }
        CommandKind::Revoke { user_id, conversation_id, seq } => {
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
            // A group member sees only messages after `joined_seq`: earlier ones do not exist
            // for them (answering with the record would show its sender, ts and client id).
            let msg: MessageRecord = tx
                .get_rec(Tree::ConvSeqMessage, &keys::with_u64(conversation_id, *seq))?
                .filter(|_| *seq > floor)
                .ok_or_else(|| Rejection::NotFound(format!("no message with seq {seq}")))?;
            if msg.revoked {
                return Ok(Decision::Unchanged(Reply::Message { message: msg, created: false }));
            }
            let own_in_window = msg.sender == *user_id && now.saturating_sub(msg.ts) <= REVOKE_WINDOW_MS;
            let moderator = conv.is_group() && role.is_moderator();
            if !own_in_window && !moderator {
                let why = if msg.sender == *user_id {
                    "messages can be revoked only within 120 s of sending"
                } else {
                    "you can revoke only your own messages"
                };
                return reject(Rejection::Forbidden(why.into()));
            }
            events(vec![Event::MessageRevoked {
                conversation_id: conversation_id.clone(),
                seq: *seq,
                by: user_id.clone(),
            }])
        }
        CommandKind::CreateGroup { owner, name, members, max_members } => {
            check_group_name(name)?;
            let mut others: Vec<String> = Vec::new();
            for m in members {
                if m != owner && !others.contains(m) {
                    others.push(m.clone());
                }
            }
            for m in &others {
                require_user(tx, m)?;
            }
            if 1 + others.len() as u64 > *max_members {
                return invalid(format!("a group has at most {max_members} members"));
            }
            let group_id = tx.meta_u64(crate::apply::META_NEXT_GROUP)?.unwrap_or(1);
            events(vec![Event::GroupCreated { group_id, name: name.clone(), owner: owner.clone(), members: others }])
        }
        CommandKind::UpdateGroup { actor, group_id, name, mute_all } => {
            let (group, me) = group_and_member(tx, *group_id, actor)?;
            if !me.role.is_moderator() {
                return reject(Rejection::NotAdmin);
            }
            if let Some(n) = name {
                check_group_name(n)?;
            }
            let new_name = name.clone().unwrap_or_else(|| group.name.clone());
            let new_mute_all = mute_all.unwrap_or(group.mute_all);
            if new_name == group.name && new_mute_all == group.mute_all {
                return Ok(Decision::Unchanged(Reply::Group { group_id: *group_id }));
            }
            events(vec![Event::GroupUpdated { group_id: *group_id, name: new_name, mute_all: new_mute_all }])
        }
        CommandKind::AddMembers { actor, group_id, user_ids, max_members } => {
            let (group, me) = group_and_member(tx, *group_id, actor)?;
            if !me.role.is_moderator() {
                return reject(Rejection::NotAdmin);
            }
            let conv_id = ConversationId::Group(*group_id).to_string();
            let mut new = Vec::new();
            for u in user_ids {
                require_user(tx, u)?;
                if !new.contains(u) && member_record(tx, &conv_id, u)?.is_none() {
                    new.push(u.clone());
                }
            }
            if new.is_empty() {
                return Ok(Decision::Unchanged(Reply::Group { group_id: *group_id }));
            }
            if group.member_count + new.len() as u64 > *max_members {
                return invalid(format!("a group has at most {max_members} members"));
            }
            events(vec![Event::MembersAdded { group_id: *group_id, user_ids: new, by: actor.clone() }])
        }
        CommandKind::Kick { actor, group_id, user_id } => {
            let (_, me) = group_and_member(tx, *group_id, actor)?;
            if actor == user_id {
                return invalid("use leave to leave a group");
            }
            if !me.role.is_moderator() {
                return reject(Rejection::NotAdmin);
            }
            let conv_id = ConversationId::Group(*group_id).to_string();
            let target = member_record(tx, &conv_id, user_id)?
                .ok_or_else(|| Rejection::NotFound(format!("{user_id} is not a member")))?;
            if me.role == Role::Admin && target.role != Role::Member {
                return reject(Rejection::Forbidden("admins can kick plain members only".into()));
            }
            events(vec![Event::MemberRemoved {
                group_id: *group_id,
                user_id: user_id.clone(),
                by: actor.clone(),
                reason: RemoveReason::Kicked,
            }])
        }
        CommandKind::Leave { user_id, group_id } => {
            let (_, me) = group_and_member(tx, *group_id, user_id)?;
            if me.role == Role::Owner {
                return reject(Rejection::OwnerCannotLeave);
            }
            events(vec![Event::MemberRemoved {
                group_id: *group_id,
                user_id: user_id.clone(),
                by: user_id.clone(),
                reason: RemoveReason::Left,
            }])
        }
        CommandKind::SetRole { actor, group_id, user_id, role } => {
            let (_, me) = group_and_member(tx, *group_id, actor)?;
            require_owner(&me)?;
            if *role == Role::Owner {
                return invalid("use transfer to make someone the owner");
            }
            let conv_id = ConversationId::Group(*group_id).to_string();
            let target = member_record(tx, &conv_id, user_id)?
                .ok_or_else(|| Rejection::NotFound(format!("{user_id} is not a member")))?;
            if target.role == Role::Owner {
                return invalid("the owner's role changes only by transfer");
            }
            if target.role == *role {
                return Ok(Decision::Unchanged(Reply::Group { group_id: *group_id }));
            }
            events(vec![Event::MemberRoleSet { group_id: *group_id, user_id: user_id.clone(), role: *role }])
        }
        CommandKind::Transfer { actor, group_id, to } => {
            let (_, me) = group_and_member(tx, *group_id, actor)?;
            require_owner(&me)?;
            if actor == to {
                return invalid("you already own this group");
            }
            let conv_id = ConversationId::Group(*group_id).to_string();
            if member_record(tx, &conv_id, to)?.is_none() {
                return reject(Rejection::NotFound(format!("{to} is not a member")));
            }
            events(vec![Event::OwnerTransferred { group_id: *group_id, from: actor.clone(), to: to.clone() }])
        }
        CommandKind::Mute { actor, group_id, user_id, until_ms } => {
            let (_, me) = group_and_member(tx, *group_id, actor)?;
            if !me.role.is_moderator() {
                return reject(Rejection::NotAdmin);
            }
            let conv_id = ConversationId::Group(*group_id).to_string();
            let target = member_record(tx, &conv_id, user_id)?
                .ok_or_else(|| Rejection::NotFound(format!("{user_id} is not a member")))?;
            if target.role == Role::Owner || (me.role == Role::Admin && target.role == Role::Admin && actor != user_id)
            {
                return reject(Rejection::Forbidden("you cannot mute this member".into()));
            }
            events(vec![Event::MemberMuted { group_id: *group_id, user_id: user_id.clone(), until_ms: *until_ms }])
        }
        CommandKind::Dismiss { actor, group_id } => {
            let (_, me) = group_and_member(tx, *group_id, actor)?;
            require_owner(&me)?;
            events(vec![Event::GroupDismissed { group_id: *group_id, by: actor.clone() }])
        }
    }
}

fn friend_added(x: &str, y: &str) -> Event {
    let (a, b) = ordered(x, y);
    Event::FriendAdded { a, b }
}

fn ordered(x: &str, y: &str) -> (String, String) {
    if x < y {
        (x.to_owned(), y.to_owned())
    } else {
        (y.to_owned(), x.to_owned())
    }
}

fn check_chars(field: &str, value: &str, max: usize) -> Result<(), Refused> {
    let n = value.chars().count();
    if n == 0 || n > max {
        return invalid(format!("{field} must be 1 to {max} characters"));
    }
    Ok(())
}

fn check_group_name(name: &str) -> Result<(), Refused> {
    if name.trim().is_empty() {
        return invalid("name must not be blank");
    }
    check_chars("name", name, MAX_GROUP_NAME_CHARS)
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

fn require_owner(me: &MemberRecord) -> Result<(), Refused> {
    match me.role {
        Role::Owner => Ok(()),
        Role::Admin => reject(Rejection::Forbidden("only the group's owner may do this".into())),
        Role::Member => reject(Rejection::NotAdmin),
    }
}

fn sent_message(tx: &Tx, sender: &str, client_msg_id: &str) -> Result<Option<MessageRecord>, StoreError> {
    match tx.get(Tree::SenderClientMsgIdConvSeq, &keys::pair(sender, client_msg_id))? {
        Some(convseq) => tx.get_rec(Tree::ConvSeqMessage, &convseq),
        None => Ok(None),
    }
}
