//! Commands: the typed requests that are proposed through raft and replicated in its log.
//!
//! A command says what a user asked for; it is not yet a fact. The state machine runs
//! [`crate::decide::decide`] on each committed command to turn it into events or a rejection.
//! Everything apply needs that is not in the projections (the time, a fresh session id, a
//! password hash) is carried inside the command, stamped before it is proposed, so that every
//! node and every replay reaches the same decision.

use rkyv::{Archive, Deserialize, Serialize};

/// A command as it travels through the raft log.
#[derive(Archive, Serialize, Deserialize, serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
pub struct Command {
    /// Milliseconds since the Unix epoch, stamped by the leader when it proposes the command.
    pub ts: u64,
    pub kind: CommandKind,
}

/// Commands proposed together as one raft entry.
///
/// openraft 0.9 takes a client write through append, flush and apply before it starts the next
/// one, so one command per entry caps a node at one write per round trip. The node batches
/// whatever commands are waiting into one entry (group commit); apply runs them in order, each
/// exactly as if it had its own entry.
///
/// `request_ids[i]` names `commands[i]` ([`crate::requests`]: applied at most once); an entry
/// written before request ids existed has none, and its commands are applied as they come.
#[derive(Archive, Serialize, Deserialize, serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq, Default)]
pub struct CommandBatch {
    pub commands: Vec<Command>,
    #[serde(default)]
    pub request_ids: Vec<crate::requests::RequestId>,
}

impl CommandBatch {
    /// The request id of command `i`, if it has one.
    pub fn request_id(&self, i: usize) -> Option<&crate::requests::RequestId> {
        self.request_ids.get(i)
    }
}

/// A [`CommandBatch`] as raft logs stored it before request ids (read back, never written).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct CommandBatchV1 {
    pub commands: Vec<Command>,
}

impl From<CommandBatchV1> for CommandBatch {
    fn from(old: CommandBatchV1) -> CommandBatch {
        CommandBatch { commands: old.commands, request_ids: Vec::new() }
    }
}

/// Role of a group member.
#[derive(Archive, Serialize, Deserialize, serde::Serialize, serde::Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Owner,
    Admin,
    Member,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    /// Owners and admins moderate a group.
    pub fn is_moderator(&self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }
}

/// Every change a client can ask for.
#[derive(Archive, Serialize, Deserialize, serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
pub enum CommandKind {
    /// Create an account. The argon2id hash is computed before proposing (off the raft path).
    Register {
        user_id: String,
        display_name: String,
        password_hash: String,
    },
    /// Record a login; the session id is random, chosen by the node that checked the password.
    CreateSession {
        user_id: String,
        session_id: String,
        device: String,
        expires_at: u64,
    },
    /// Log out or revoke a device's session.
    RevokeSession {
        user_id: String,
        session_id: String,
    },
    FriendRequest {
        from: String,
        to: String,
        note: String,
    },
    AcceptFriend {
        user_id: String,
        from: String,
    },
    RejectFriend {
        user_id: String,
        from: String,
    },
    RemoveFriend {
        user_id: String,
        other: String,
    },
    Block {
        user_id: String,
        target: String,
    },
    Unblock {
        user_id: String,
        target: String,
    },
    Send {
        sender: String,
        conversation_id: String,
        client_msg_id: String,
        body: String,
        reply_to: Option<u64>,
        /// Largest body accepted, from the proposing node's configuration.
        max_body_bytes: u64,
    },
    Read {
        user_id: String,
        conversation_id: String,
        seq: u64,
    },
    Revoke {
        user_id: String,
        conversation_id: String,
        seq: u64,
    },
    CreateGroup {
        owner: String,
        name: String,
        members: Vec<String>,
        max_members: u64,
    },
    UpdateGroup {
        actor: String,
        group_id: u64,
        name: Option<String>,
        mute_all: Option<bool>,
    },
    AddMembers {
        actor: String,
        group_id: u64,
        user_ids: Vec<String>,
        max_members: u64,
    },
    Kick {
        actor: String,
        group_id: u64,
        user_id: String,
    },
    Leave {
        user_id: String,
        group_id: u64,
    },
    SetRole {
        actor: String,
        group_id: u64,
        user_id: String,
        role: Role,
    },
    Transfer {
        actor: String,
        group_id: u64,
        to: String,
    },
    Mute {
        actor: String,
        group_id: u64,
        user_id: String,
        until_ms: u64,
    },
    Dismiss {
        actor: String,
        group_id: u64,
    },
    /// An app backend creates an account (`POST /v1/admin/users`). `password_hash` is empty for
    /// an account without a password, which only admin-issued tokens can use.
    CreateUser {
        user_id: String,
        display_name: String,
        password_hash: String,
    },
    /// Deactivates an account and revokes up to [`MAX_REVOKED_PER_COMMAND`] of its sessions;
    /// the node proposes [`CommandKind::RevokeAllSessions`] until none is left.
    Deactivate {
        user_id: String,
    },
    Reactivate {
        user_id: String,
    },
    /// Revokes up to [`MAX_REVOKED_PER_COMMAND`] of a user's sessions (force logout).
    RevokeAllSessions {
        user_id: String,
    },
    SetPassword {
        user_id: String,
        password_hash: String,
    },
}

/// Most sessions one command revokes: a user's session count has no bound over time, and one
/// raft entry, journal transaction and sync page must have one. More are revoked by repeating
/// the command, which the node does until the user has none.
pub const MAX_REVOKED_PER_COMMAND: usize = 1_000;

impl CommandKind {
    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            CommandKind::Register { .. } => "register",
            CommandKind::CreateSession { .. } => "create_session",
            CommandKind::RevokeSession { .. } => "revoke_session",
            CommandKind::FriendRequest { .. } => "friend_request",
            CommandKind::AcceptFriend { .. } => "accept_friend",
            CommandKind::RejectFriend { .. } => "reject_friend",
            CommandKind::RemoveFriend { .. } => "remove_friend",
            CommandKind::Block { .. } => "block",
            CommandKind::Unblock { .. } => "unblock",
            CommandKind::Send { .. } => "send",
            CommandKind::Read { .. } => "read",
            CommandKind::Revoke { .. } => "revoke",
            CommandKind::CreateGroup { .. } => "create_group",
            CommandKind::UpdateGroup { .. } => "update_group",
            CommandKind::AddMembers { .. } => "add_members",
            CommandKind::Kick { .. } => "kick",
            CommandKind::Leave { .. } => "leave",
            CommandKind::SetRole { .. } => "set_role",
            CommandKind::Transfer { .. } => "transfer",
            CommandKind::Mute { .. } => "mute",
            CommandKind::Dismiss { .. } => "dismiss",
            CommandKind::CreateUser { .. } => "create_user",
            CommandKind::Deactivate { .. } => "deactivate",
            CommandKind::Reactivate { .. } => "reactivate",
            CommandKind::RevokeAllSessions { .. } => "revoke_all_sessions",
            CommandKind::SetPassword { .. } => "set_password",
        }
    }
}
