//! The wire contract of Parley (`shared/API.md`): every JSON shape the server answers, the
//! clients send, the WebSocket carries both ways and an export holds, as typed serde structs and
//! enums. The server serialises these, the offline tools and the clients parse them, and the
//! OpenAPI document and the WebSocket JSON Schema are derived from them (`utoipa::ToSchema`).
//!
//! # Layout
//! - [`message`]: Message, and the send / history / read answers.
//! - [`conversation`]: Conversation and the conversation list.
//! - [`group`]: Group, its members and roles.
//! - [`users`]: users, sessions, friends and blocks answers.
//! - [`update`]: Update, the `{cursor, ts, type, ...}` union of every update type; sync pages.
//! - [`journal`]: journal entries (`{cursor, ts, prev_hash, hash, event}`) and the admin reports.
//! - [`ops`]: health, readiness, cluster status and membership answers.
//! - [`error`]: the error envelope and the contract's error codes.
//! - [`bodies`]: request bodies, and what the contract refuses about them before any state.
//! - [`frames`]: WebSocket frames, client to server and server to client.
//! - [`storage`]: the domain's records and events as these types (and journal events back).
//! - [`fast`]: the hand-tuned writer of sync updates, byte-for-byte [`canonical_text`] of an
//!   [`update::Update`] (tested over every update type).
//!
//! Invariant: the text the server sends for any of these types is [`canonical_text`]: their
//! serialisation with object keys in byte order, as a `serde_json::Value` (a sorted map) writes
//! them. That is what the server has always sent (its answers were built as `Value`s), so the
//! committed export fixture and every client that compares text stay valid; the structs declare
//! their fields in contract order for readers.

pub mod bodies;
pub mod conversation;
pub mod error;
pub mod fast;
pub mod frames;
pub mod group;
pub mod journal;
pub mod message;
pub mod ops;
pub mod storage;
pub mod update;
pub mod users;

use serde::Serialize;
use serde_json::Value;

pub use conversation::{Conversation, ConversationKind};
pub use error::{ErrorBody, ErrorEnvelope};
pub use group::{Group, GroupMember, Role};
pub use journal::JournalEntry;
pub use message::Message;
pub use update::{Update, UpdateKind};

/// A wire value as a `serde_json::Value`: objects become sorted maps (the canonical key order).
pub fn canonical_value<T: Serialize + ?Sized>(v: &T) -> Result<Value, serde_json::Error> {
    serde_json::to_value(v)
}

/// A wire value's canonical JSON text (see the crate's invariant).
pub fn canonical_text<T: Serialize + ?Sized>(v: &T) -> Result<String, serde_json::Error> {
    Ok(serde_json::to_value(v)?.to_string())
}
