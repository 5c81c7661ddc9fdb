//! Projection records: the values stored in the projection trees (see [`crate::keys`]).
//!
//! Each record is rkyv-encoded and validated on read. They are storage types, not wire types:
//! the API converts them to JSON at its edge.

use rkyv::{Archive, Deserialize, Serialize};

use crate::command::Role;

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub display_name: String,
    pub password_hash: String,
    pub created_at: u64,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub user_id: String,
    pub device: String,
    pub created_at: u64,
    pub expires_at: u64,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct FriendRequestRecord {
    pub note: String,
    pub ts: u64,
}

/// A stored message. Also returned to callers in [`crate::outcome::Reply::Message`].
#[derive(Archive, Serialize, Deserialize, serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
pub struct MessageRecord {
    pub conversation_id: String,
    pub seq: u64,
    pub sender: String,
    pub body: String,
    pub ts: u64,
    pub client_msg_id: String,
    pub reply_to: Option<u64>,
    pub revoked: bool,
    /// Journal cursor of the `message` entry.
    pub cursor: u64,
}

/// Per-conversation counters.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct ConversationRecord {
    /// Highest message seq (0 = no message yet).
    pub max_seq: u64,
    /// Cursor of the latest entry in this conversation's feed (lets sync skip idle ones).
    pub last_feed_cursor: u64,
    /// Cursor of the latest activity that orders the conversation list (a message, or creation).
    pub activity_cursor: u64,
}

/// A user's membership of a conversation (both direct and group).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct MemberRecord {
    pub role: Role,
    /// The member sees messages with `seq > joined_seq`.
    pub joined_seq: u64,
    pub read_seq: u64,
    /// Muted until this time (ms); 0 = not muted.
    pub muted_until: u64,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct GroupRecord {
    pub name: String,
    pub owner: String,
    pub mute_all: bool,
    pub member_count: u64,
    pub created_at: u64,
    /// A dismissed group keeps its record (and its messages) but has no members.
    pub dismissed: bool,
}
