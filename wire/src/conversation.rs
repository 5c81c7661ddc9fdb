//! Conversation, as the conversation list shows it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::message::Message;

/// `direct` (`d:<a>:<b>`) or `group` (`g:<group_id>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConversationKind {
    Direct,
    Group,
}

/// `{conversation_id, kind, peer | group_id, max_seq, read_seq, unread, last_message}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Conversation {
    pub conversation_id: String,
    pub kind: ConversationKind,
    /// The other user of a direct conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// A group conversation's group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// A group conversation's group name (beyond the contract, for list views).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub max_seq: u64,
    pub read_seq: u64,
    /// `max_seq - read_seq`.
    pub unread: u64,
    pub last_message: Option<Message>,
}

/// `GET /v1/conversations`: newest activity first; `cursor` is where to sync from after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConversationList {
    pub conversations: Vec<Conversation>,
    pub cursor: u64,
}
