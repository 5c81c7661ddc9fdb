//! WebSocket frames (`GET /v1/ws`, text frames of JSON), both ways.
//!
//! `req` is the client's own request tag, any JSON value, echoed unchanged in the answer
//! (`null` when the request had none).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::message::Message;
use crate::update::Update;

/// Client to server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Catch up from `since` (0 when absent) with `updates` frames, then live ones.
    Sync {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<u64>,
    },
    /// Send a message; answered by an `ack` with the message.
    Send {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<Value>,
        conversation_id: String,
        client_msg_id: String,
        body: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<u64>,
    },
    /// Move the read marker; answered by an `ack` with `read_seq` and `unread`.
    Read {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<Value>,
        conversation_id: String,
        seq: u64,
    },
    /// Answered by a `pong`.
    Ping {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<Value>,
    },
}

/// Server to client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// A page of updates: catch-up pages until `more` is false, then live pages.
    Updates { updates: Vec<Update>, cursor: u64, more: bool },
    /// A `send` or `read` that was applied: a send's `message`, or a read's `read_seq` and
    /// `unread`; `cursor` is where it was applied.
    Ack {
        req: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<Message>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        read_seq: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unread: Option<u64>,
        cursor: u64,
    },
    /// A refused frame or request (the socket stays open), with the contract's error codes.
    /// `req` is absent when the error answers no request (a failed live pull).
    Error {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<Value>,
        code: String,
        message: String,
    },
    /// The answer to a `ping`: the server's time (ms).
    Pong { ts: u64, req: Value },
}
