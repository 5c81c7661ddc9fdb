//! The domain's records and journal events as wire types, and journal events back.
//!
//! The one place a storage type becomes a wire type: the API's answers, sync updates (their
//! reference form; see [`crate::fast`] for the hot path), the admin journal and exports all come
//! from here, and the audit tools parse export lines back through [`entry_from_journal`].

use parley_storage::ids::{parse_group_id, ConversationId};
use parley_storage::journal::Hash;
use parley_storage::records::GroupRecord;
use parley_storage::{ConversationSummary, Entry, Event, Store, StoreError};

use crate::conversation::{Conversation, ConversationKind};
use crate::group::{Group, GroupMember, Role};
use crate::journal::JournalEntry;
use crate::message::Message;
use crate::update::{RemoveReason, Update, UpdateKind};

impl From<parley_storage::Role> for Role {
    fn from(r: parley_storage::Role) -> Self {
        match r {
            parley_storage::Role::Owner => Role::Owner,
            parley_storage::Role::Admin => Role::Admin,
            parley_storage::Role::Member => Role::Member,
        }
    }
}

impl From<Role> for parley_storage::Role {
    fn from(r: Role) -> Self {
        match r {
            Role::Owner => parley_storage::Role::Owner,
            Role::Admin => parley_storage::Role::Admin,
            Role::Member => parley_storage::Role::Member,
        }
    }
}

impl From<parley_storage::RemoveReason> for RemoveReason {
    fn from(r: parley_storage::RemoveReason) -> Self {
        match r {
            parley_storage::RemoveReason::Kicked => RemoveReason::Kicked,
            parley_storage::RemoveReason::Left => RemoveReason::Left,
        }
    }
}

impl From<RemoveReason> for parley_storage::RemoveReason {
    fn from(r: RemoveReason) -> Self {
        match r {
            RemoveReason::Kicked => parley_storage::RemoveReason::Kicked,
            RemoveReason::Left => parley_storage::RemoveReason::Left,
        }
    }
}

impl From<&parley_storage::Message> for Message {
    fn from(m: &parley_storage::Message) -> Self {
        Message {
            conversation_id: m.conversation_id.clone(),
            seq: m.seq,
            sender: m.sender.clone(),
            body: m.body.clone(),
            ts: Some(m.ts),
            client_msg_id: m.client_msg_id.clone(),
            reply_to: m.reply_to,
            revoked: m.revoked,
        }
    }
}

/// A conversation of `user`'s list.
pub fn conversation(c: &ConversationSummary, user_id: &str, store: &Store) -> Result<Conversation, StoreError> {
    let (kind, peer, group_id, name) = match &c.conversation {
        ConversationId::Direct { .. } => {
            (ConversationKind::Direct, c.conversation.peer_of(user_id).map(str::to_owned), None, None)
        }
        ConversationId::Group(g) => {
            (ConversationKind::Group, None, Some(g.to_string()), store.group(*g)?.map(|rec| rec.name))
        }
    };
    Ok(Conversation {
        conversation_id: c.conversation_id.clone(),
        kind,
        peer,
        group_id,
        name,
        max_seq: c.meta.max_seq,
        read_seq: c.member.read_seq,
        unread: c.unread(),
        last_message: c.last_message.as_ref().map(Message::from),
    })
}

/// A group as it is now, members sorted by user id.
pub fn group(store: &Store, group_id: u64, rec: &GroupRecord) -> Result<Group, StoreError> {
    let mut members: Vec<GroupMember> = store
        .group_members(group_id)?
        .into_iter()
        .map(|(user_id, m)| GroupMember {
            user_id,
            role: m.role.into(),
            joined_seq: m.joined_seq,
            muted_until: Some(m.muted_until),
        })
        .collect();
    members.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    Ok(Group {
        group_id: group_id.to_string(),
        conversation_id: ConversationId::Group(group_id).to_string(),
        name: rec.name.clone(),
        owner: rec.owner.clone(),
        mute_all: rec.mute_all,
        members,
    })
}

/// Which form of an event: a user's sync update, or the journal's own (audit) form.
#[derive(Debug, Clone, Copy)]
enum Form {
    /// The message shown as it is now (`revoked` since), with the entry's `ts`.
    Sync { ts: u64, revoked: bool },
    /// Exactly as journaled, with the journal-only fields.
    Journal,
}

/// The payload of `ev` in `form`. The one match over the domain's events.
fn kind_of(ev: &Event, form: Form) -> UpdateKind {
    let journal = matches!(form, Form::Journal);
    let only_journal = |s: &String| journal.then(|| s.clone());
    let gid = |g: &u64| g.to_string();
    match ev {
        Event::UserRegistered { user_id, display_name, password_hash } => UpdateKind::UserRegistered {
            user_id: user_id.clone(),
            display_name: display_name.clone(),
            password_hash: only_journal(password_hash),
        },
        Event::SessionCreated { user_id, session_id, device, expires_at } => UpdateKind::SessionCreated {
            user_id: user_id.clone(),
            session_id: session_id.clone(),
            device: device.clone(),
            expires_at: *expires_at,
        },
        Event::SessionRevoked { user_id, session_id } => {
            UpdateKind::SessionRevoked { user_id: user_id.clone(), session_id: session_id.clone() }
        }
        Event::FriendRequested { from, to, note } => {
            UpdateKind::FriendRequest { from: from.clone(), to: to.clone(), note: note.clone() }
        }
        Event::FriendRequestRejected { from, to } => {
            UpdateKind::FriendRequestRejected { from: from.clone(), to: to.clone() }
        }
        Event::FriendAdded { a, b } => UpdateKind::FriendAdded { users: vec![a.clone(), b.clone()] },
        Event::FriendRemoved { a, b } => UpdateKind::FriendRemoved { users: vec![a.clone(), b.clone()] },
        Event::Blocked { user_id, target } => {
            UpdateKind::Blocked { user_id: target.clone(), by: only_journal(user_id) }
        }
        Event::Unblocked { user_id, target } => {
            UpdateKind::Unblocked { user_id: target.clone(), by: only_journal(user_id) }
        }
        Event::MessageSent { conversation_id, seq, sender, body, client_msg_id, reply_to } => {
            let (ts, revoked) = match form {
                Form::Sync { ts, revoked } => (Some(ts), revoked),
                Form::Journal => (None, false),
            };
            UpdateKind::Message {
                message: Message {
                    conversation_id: conversation_id.clone(),
                    seq: *seq,
                    sender: sender.clone(),
                    body: if revoked { String::new() } else { body.clone() },
                    ts,
                    client_msg_id: client_msg_id.clone(),
                    reply_to: *reply_to,
                    revoked,
                },
            }
        }
        Event::MessageRevoked { conversation_id, seq, by } => {
            UpdateKind::MessageRevoked { conversation_id: conversation_id.clone(), seq: *seq, by: by.clone() }
        }
        Event::ReadMarked { conversation_id, user_id, read_seq } => {
            UpdateKind::Read { conversation_id: conversation_id.clone(), user_id: user_id.clone(), read_seq: *read_seq }
        }
        Event::GroupCreated { group_id, name, owner, members } => {
            let member = |user_id: &String, role| GroupMember {
                user_id: user_id.clone(),
                role,
                joined_seq: 0,
                muted_until: None,
            };
            let roster =
                std::iter::once(member(owner, Role::Owner)).chain(members.iter().map(|m| member(m, Role::Member)));
            UpdateKind::GroupCreated {
                group: Group {
                    group_id: gid(group_id),
                    conversation_id: ConversationId::Group(*group_id).to_string(),
                    name: name.clone(),
                    owner: owner.clone(),
                    mute_all: false,
                    members: roster.collect(),
                },
            }
        }
        Event::GroupUpdated { group_id, name, mute_all } => {
            UpdateKind::GroupUpdated { group_id: gid(group_id), name: name.clone(), mute_all: *mute_all }
        }
        Event::MembersAdded { group_id, user_ids, by } => {
            UpdateKind::MemberAdded { group_id: gid(group_id), user_ids: user_ids.clone(), by: by.clone() }
        }
        Event::MemberRemoved { group_id, user_id, by, reason } => UpdateKind::MemberRemoved {
            group_id: gid(group_id),
            user_id: user_id.clone(),
            by: by.clone(),
            reason: (*reason).into(),
        },
        Event::MemberRoleSet { group_id, user_id, role } => {
            UpdateKind::MemberRole { group_id: gid(group_id), user_id: user_id.clone(), role: (*role).into() }
        }
        Event::MemberMuted { group_id, user_id, until_ms } => {
            UpdateKind::MemberMuted { group_id: gid(group_id), user_id: user_id.clone(), until_ms: *until_ms }
        }
        Event::OwnerTransferred { group_id, from, to } => {
            UpdateKind::OwnerTransferred { group_id: gid(group_id), from: from.clone(), to: to.clone() }
        }
        Event::GroupDismissed { group_id, by } => {
            UpdateKind::GroupDismissed { group_id: gid(group_id), by: by.clone() }
        }
        Event::UserDeactivated { user_id } => UpdateKind::UserDeactivated { user_id: user_id.clone() },
        Event::UserReactivated { user_id } => UpdateKind::UserReactivated { user_id: user_id.clone() },
        Event::PasswordChanged { user_id, password_hash } => {
            UpdateKind::PasswordChanged { user_id: user_id.clone(), password_hash: only_journal(password_hash) }
        }
    }
}

impl Update {
    /// `e` as a sync update; `revoked`: its message (if it is one) has been revoked since.
    pub fn from_entry(e: &Entry, revoked: bool) -> Update {
        Update::from_event(e.cursor, e.ts, &e.event, revoked)
    }

    /// The entry at `cursor`, applied at `ts`, of `event`, as a sync update.
    pub fn from_event(cursor: u64, ts: u64, event: &Event, revoked: bool) -> Update {
        Update { cursor, ts, kind: kind_of(event, Form::Sync { ts, revoked }) }
    }
}

/// `e` for audit (admin journal, export): the event exactly as journaled.
pub fn journal_entry(e: &Entry) -> JournalEntry {
    JournalEntry {
        cursor: e.cursor,
        ts: e.ts,
        prev_hash: hex::encode(e.prev_hash),
        hash: hex::encode(e.hash),
        event: kind_of(&e.event, Form::Journal),
    }
}

/// Why a journal entry's JSON does not stand for any journal entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JournalFormError {
    #[error("`{0}` is not 64 hex digits")]
    Hash(&'static str),
    #[error("`{field}` {value:?} is not a group id")]
    GroupId { field: &'static str, value: String },
    #[error("`{0}` does not hold exactly two users")]
    Pair(&'static str),
    #[error("`group.members` is empty (the owner comes first)")]
    NoOwner,
    #[error("no field `{0}` (journal entries carry it)")]
    Missing(&'static str),
}

fn hash(field: &'static str, s: &str) -> Result<Hash, JournalFormError> {
    let mut h = [0u8; 32];
    hex::decode_to_slice(s, &mut h).map_err(|_| JournalFormError::Hash(field))?;
    Ok(h)
}

fn group_id(field: &'static str, s: &str) -> Result<u64, JournalFormError> {
    parse_group_id(s).ok_or_else(|| JournalFormError::GroupId { field, value: s.to_owned() })
}

fn pair(field: &'static str, users: Vec<String>) -> Result<(String, String), JournalFormError> {
    let [a, b] = <[String; 2]>::try_from(users).map_err(|_| JournalFormError::Pair(field))?;
    Ok((a, b))
}

fn journaled(field: &'static str, v: Option<String>) -> Result<String, JournalFormError> {
    v.ok_or(JournalFormError::Missing(field))
}

/// The journal entry a [`JournalEntry`] stands for: the inverse of [`journal_entry`] for every
/// entry it renders. It does not prove canonical form (a member's `role` in `group_created` is
/// not stored, say): the audit compares [`journal_entry`] of the result with what it parsed.
pub fn entry_from_journal(j: JournalEntry) -> Result<Entry, JournalFormError> {
    let event = match j.event {
        UpdateKind::UserRegistered { user_id, display_name, password_hash } => {
            Event::UserRegistered { user_id, display_name, password_hash: journaled("password_hash", password_hash)? }
        }
        UpdateKind::SessionCreated { user_id, session_id, device, expires_at } => {
            Event::SessionCreated { user_id, session_id, device, expires_at }
        }
        UpdateKind::SessionRevoked { user_id, session_id } => Event::SessionRevoked { user_id, session_id },
        UpdateKind::FriendRequest { from, to, note } => Event::FriendRequested { from, to, note },
        UpdateKind::FriendRequestRejected { from, to } => Event::FriendRequestRejected { from, to },
        UpdateKind::FriendAdded { users } => {
            let (a, b) = pair("users", users)?;
            Event::FriendAdded { a, b }
        }
        UpdateKind::FriendRemoved { users } => {
            let (a, b) = pair("users", users)?;
            Event::FriendRemoved { a, b }
        }
        UpdateKind::Blocked { user_id, by } => Event::Blocked { user_id: journaled("by", by)?, target: user_id },
        UpdateKind::Unblocked { user_id, by } => Event::Unblocked { user_id: journaled("by", by)?, target: user_id },
        UpdateKind::Message { message: m } => Event::MessageSent {
            conversation_id: m.conversation_id,
            seq: m.seq,
            sender: m.sender,
            body: m.body,
            client_msg_id: m.client_msg_id,
            reply_to: m.reply_to,
        },
        UpdateKind::MessageRevoked { conversation_id, seq, by } => Event::MessageRevoked { conversation_id, seq, by },
        UpdateKind::Read { conversation_id, user_id, read_seq } => {
            Event::ReadMarked { conversation_id, user_id, read_seq }
        }
        UpdateKind::GroupCreated { group } => {
            let mut ids = group.members.into_iter().map(|m| m.user_id);
            if ids.next().is_none() {
                return Err(JournalFormError::NoOwner);
            }
            Event::GroupCreated {
                group_id: group_id("group.group_id", &group.group_id)?,
                name: group.name,
                owner: group.owner,
                members: ids.collect(),
            }
        }
        UpdateKind::GroupUpdated { group_id: g, name, mute_all } => {
            Event::GroupUpdated { group_id: group_id("group_id", &g)?, name, mute_all }
        }
        UpdateKind::MemberAdded { group_id: g, user_ids, by } => {
            Event::MembersAdded { group_id: group_id("group_id", &g)?, user_ids, by }
        }
        UpdateKind::MemberRemoved { group_id: g, user_id, by, reason } => {
            Event::MemberRemoved { group_id: group_id("group_id", &g)?, user_id, by, reason: reason.into() }
        }
        UpdateKind::MemberRole { group_id: g, user_id, role } => {
            Event::MemberRoleSet { group_id: group_id("group_id", &g)?, user_id, role: role.into() }
        }
        UpdateKind::MemberMuted { group_id: g, user_id, until_ms } => {
            Event::MemberMuted { group_id: group_id("group_id", &g)?, user_id, until_ms }
        }
        UpdateKind::OwnerTransferred { group_id: g, from, to } => {
            Event::OwnerTransferred { group_id: group_id("group_id", &g)?, from, to }
        }
        UpdateKind::GroupDismissed { group_id: g, by } => {
            Event::GroupDismissed { group_id: group_id("group_id", &g)?, by }
        }
        UpdateKind::UserDeactivated { user_id } => Event::UserDeactivated { user_id },
        UpdateKind::UserReactivated { user_id } => Event::UserReactivated { user_id },
        UpdateKind::PasswordChanged { user_id, password_hash } => {
            Event::PasswordChanged { user_id, password_hash: journaled("password_hash", password_hash)? }
        }
    };
    Ok(Entry {
        cursor: j.cursor,
        ts: j.ts,
        prev_hash: hash("prev_hash", &j.prev_hash)?,
        hash: hash("hash", &j.hash)?,
        event,
    })
}
