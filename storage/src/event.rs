//! Events: the facts appended to the journal, one journal entry (one `cursor`) per event.
//!
//! Events are what happened, after validation; projections change only by applying them
//! ([`crate::apply`]), live and in replay alike. The enum is the journal's stored format
//! (rkyv); its JSON rendering for sync and export lives in the api crate (`api/src/render.rs`).

use rkyv::{Archive, Deserialize, Serialize};

use crate::command::Role;

/// Why a member left a group.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoveReason {
    Kicked,
    Left,
}

impl RemoveReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            RemoveReason::Kicked => "kicked",
            RemoveReason::Left => "left",
        }
    }
}

/// A journal event. Variants are append-only: never reorder or remove one, because the
/// discriminant is part of every stored entry and of its hash.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum Event {
    UserRegistered {
        user_id: String,
        display_name: String,
        password_hash: String,
    },
    SessionCreated {
        user_id: String,
        session_id: String,
        device: String,
        expires_at: u64,
    },
    SessionRevoked {
        user_id: String,
        session_id: String,
    },
    FriendRequested {
        from: String,
        to: String,
        note: String,
    },
    FriendRequestRejected {
        from: String,
        to: String,
    },
    FriendAdded {
        a: String,
        b: String,
    },
    FriendRemoved {
        a: String,
        b: String,
    },
    Blocked {
        user_id: String,
        target: String,
    },
    Unblocked {
        user_id: String,
        target: String,
    },
    MessageSent {
        conversation_id: String,
        seq: u64,
        sender: String,
        body: String,
        client_msg_id: String,
        reply_to: Option<u64>,
    },
    MessageRevoked {
        conversation_id: String,
        seq: u64,
        by: String,
    },
    ReadMarked {
        conversation_id: String,
        user_id: String,
        read_seq: u64,
    },
    GroupCreated {
        group_id: u64,
        name: String,
        owner: String,
        members: Vec<String>,
    },
    GroupUpdated {
        group_id: u64,
        name: String,
        mute_all: bool,
    },
    MembersAdded {
        group_id: u64,
        user_ids: Vec<String>,
        by: String,
    },
    MemberRemoved {
        group_id: u64,
        user_id: String,
        by: String,
        reason: RemoveReason,
    },
    MemberRoleSet {
        group_id: u64,
        user_id: String,
        role: Role,
    },
    MemberMuted {
        group_id: u64,
        user_id: String,
        until_ms: u64,
    },
    OwnerTransferred {
        group_id: u64,
        from: String,
        to: String,
    },
    GroupDismissed {
        group_id: u64,
        by: String,
    },
    /// An app backend deactivated the account (`POST /v1/admin/users/{uid}/deactivate`): it can
    /// no longer log in or be sent to. Its sessions are revoked by `SessionRevoked` events of
    /// the same command.
    UserDeactivated {
        user_id: String,
    },
    UserReactivated {
        user_id: String,
    },
    /// A new password hash (`PUT /v1/admin/users/{uid}/password`); sessions are kept.
    PasswordChanged {
        user_id: String,
        password_hash: String,
    },
}

impl Event {
    /// The update `type` this event has in sync, export and the admin journal.
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::UserRegistered { .. } => "user_registered",
            Event::SessionCreated { .. } => "session_created",
            Event::SessionRevoked { .. } => "session_revoked",
            Event::FriendRequested { .. } => "friend_request",
            Event::FriendRequestRejected { .. } => "friend_request_rejected",
            Event::FriendAdded { .. } => "friend_added",
            Event::FriendRemoved { .. } => "friend_removed",
            Event::Blocked { .. } => "blocked",
            Event::Unblocked { .. } => "unblocked",
            Event::MessageSent { .. } => "message",
            Event::MessageRevoked { .. } => "message_revoked",
            Event::ReadMarked { .. } => "read",
            Event::GroupCreated { .. } => "group_created",
            Event::GroupUpdated { .. } => "group_updated",
            Event::MembersAdded { .. } => "member_added",
            Event::MemberRemoved { .. } => "member_removed",
            Event::MemberRoleSet { .. } => "member_role",
            Event::MemberMuted { .. } => "member_muted",
            Event::OwnerTransferred { .. } => "owner_transferred",
            Event::GroupDismissed { .. } => "group_dismissed",
            Event::UserDeactivated { .. } => "user_deactivated",
            Event::UserReactivated { .. } => "user_reactivated",
            Event::PasswordChanged { .. } => "password_changed",
        }
    }
}
