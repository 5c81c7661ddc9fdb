//! What the state machine returns for each command (raft's response type), and who is told
//! about each appended entry.

use crate::message::Message;
use crate::rejection::Rejection;

/// The answer to one command: the journal position it was applied at and its result.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Outcome {
    /// Cursor of the last entry the command appended, or the head when it appended nothing.
    pub cursor: u64,
    pub result: Result<Reply, Rejection>,
}

impl Default for Outcome {
    fn default() -> Self {
        Outcome { cursor: 0, result: Ok(Reply::Done) }
    }
}

/// The outcomes of a [`crate::command::CommandBatch`], one per command, in order.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct BatchOutcome {
    pub outcomes: Vec<Outcome>,
}

/// What a successful command returns beyond its cursor.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Reply {
    Done,
    /// A sent (`created`) or already-sent (idempotent resend) or revoked message.
    Message {
        message: Message,
        created: bool,
    },
    Read {
        read_seq: u64,
        unread: u64,
    },
    FriendRequest {
        from: String,
        to: String,
        note: String,
        ts: u64,
    },
    Group {
        group_id: u64,
    },
}

/// Who should hear about an entry live. A hint for the WebSocket hub: it may name more users
/// than the sync query will return the entry to, never fewer. Sync decides exactly.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Audience {
    /// Users named directly (both sides of a friendship, a direct conversation's pair, a
    /// removed member, new members).
    pub users: Vec<String>,
    /// The group whose current members are concerned.
    pub group: Option<u64>,
}
