//! Group, its members and their roles.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A member's role in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Owner,
    Admin,
    Member,
}

/// `{group_id, conversation_id, name, owner, mute_all, members:[{user_id, role, joined_seq}]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Group {
    /// Assigned by the server; a decimal number as a string.
    pub group_id: String,
    /// `g:<group_id>`.
    pub conversation_id: String,
    pub name: String,
    pub owner: String,
    pub mute_all: bool,
    /// Sorted by `user_id` (in a `group_created` update: the owner first, then the members as
    /// created).
    pub members: Vec<GroupMember>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GroupMember {
    pub user_id: String,
    pub role: Role,
    /// The member sees the group's messages with `seq > joined_seq`.
    pub joined_seq: u64,
    /// Muted until this time (ms; 0 = not muted). Shown by the group routes, not in the
    /// `group_created` update (a new group has nobody muted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub muted_until: Option<u64>,
}

/// `GET /v1/groups`: the caller's groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GroupList {
    pub groups: Vec<Group>,
}

/// A group write's answer (create, update, add members, role, transfer): the Group as it is
/// after the write, and the write's `cursor` beside its fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GroupWritten {
    #[serde(flatten)]
    pub group: Group,
    pub cursor: u64,
}
