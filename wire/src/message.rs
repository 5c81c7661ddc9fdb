//! Message, and the answers of the routes that send, list, read and revoke messages.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A message as the contract shows it: `{conversation_id, seq, sender, body, ts, client_msg_id,
/// reply_to, revoked}`. A revoked message keeps its `seq`; its `body` is `""`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Message {
    pub conversation_id: String,
    /// Per conversation, from 1, without gaps.
    pub seq: u64,
    pub sender: String,
    pub body: String,
    /// When the cluster stored it (ms since the epoch). Absent only inside a journal entry's
    /// `message` event, whose time is the entry's own `ts` (as the journal stores it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<u64>,
    pub client_msg_id: String,
    pub reply_to: Option<u64>,
    pub revoked: bool,
}

/// `POST /v1/conversations/{cid}/messages` (201, or 200 for an idempotent repeat) and
/// `POST .../messages/{seq}/revoke`: the message and the write's journal position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MessageWritten {
    pub message: Message,
    pub cursor: u64,
}

/// `GET /v1/conversations/{cid}/messages`: ascending `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct History {
    pub messages: Vec<Message>,
    pub max_seq: u64,
}

/// `POST /v1/conversations/{cid}/read`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReadAnswer {
    pub read_seq: u64,
    pub unread: u64,
    pub cursor: u64,
}
