//! Update: one journal entry as a user's sync shows it, `{cursor, ts, type, ...payload}`, and
//! the pages of `GET /v1/sync`.
//!
//! [`UpdateKind`] is the one list of update types: an update in sync, a WebSocket `updates`
//! frame and the `event` of a journal entry (admin journal, export) are all this enum. Adding
//! an update type is one variant here (plus its event, apply arm and test in storage, and its
//! arm in [`crate::storage`] and [`crate::fast`], which the compiler asks for).

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use utoipa::{PartialSchema, ToSchema};

use crate::group::{Group, Role};
use crate::message::Message;

/// Why a member left a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RemoveReason {
    Kicked,
    Left,
}

/// An update: the entry's journal position and time, and its typed payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Update {
    /// The entry's global journal position; pass the page's `cursor` as the next `since`.
    pub cursor: u64,
    /// When the cluster applied it (ms since the epoch, the leader's clock).
    pub ts: u64,
    #[serde(flatten)]
    pub kind: UpdateKind,
}

/// The payload of an update (and of a journal entry's `event`), by `type`.
///
/// Fields marked "journal only" are in admin journal and export entries, never in a sync
/// update: they are the parts of the fact that only the audit needs (a password hash, who
/// blocked whom).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum UpdateKind {
    /// A new message, shown as it is now (a message revoked since has `revoked: true`, `body: ""`).
    Message {
        message: Message,
    },
    MessageRevoked {
        conversation_id: String,
        seq: u64,
        by: String,
    },
    /// To the reader, and to the peer of a direct conversation.
    Read {
        conversation_id: String,
        user_id: String,
        read_seq: u64,
    },
    UserRegistered {
        user_id: String,
        display_name: String,
        /// Journal only.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password_hash: Option<String>,
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
    FriendRequest {
        from: String,
        to: String,
        note: String,
    },
    FriendRequestRejected {
        from: String,
        to: String,
    },
    /// `users` is the pair `[a, b]`.
    FriendAdded {
        users: Vec<String>,
    },
    /// `users` is the pair `[a, b]`.
    FriendRemoved {
        users: Vec<String>,
    },
    /// To the blocker only: `user_id` is the user blocked.
    Blocked {
        user_id: String,
        /// Journal only: the blocker.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// To the blocker only: `user_id` is the user unblocked.
    Unblocked {
        user_id: String,
        /// Journal only: the blocker.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    GroupCreated {
        group: Group,
    },
    GroupUpdated {
        group_id: String,
        name: String,
        mute_all: bool,
    },
    MemberAdded {
        group_id: String,
        user_ids: Vec<String>,
        by: String,
    },
    MemberRemoved {
        group_id: String,
        user_id: String,
        by: String,
        reason: RemoveReason,
    },
    MemberRole {
        group_id: String,
        user_id: String,
        role: Role,
    },
    MemberMuted {
        group_id: String,
        user_id: String,
        until_ms: u64,
    },
    OwnerTransferred {
        group_id: String,
        from: String,
        to: String,
    },
    GroupDismissed {
        group_id: String,
        by: String,
    },
    /// An app backend deactivated the account (the admin journal and export; the account's
    /// devices learn it from the `session_revoked` updates that follow).
    UserDeactivated {
        user_id: String,
    },
    UserReactivated {
        user_id: String,
    },
    /// An app backend set the account's password.
    PasswordChanged {
        user_id: String,
        /// Journal only.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password_hash: Option<String>,
    },
}

/// `GET /v1/sync`: updates after `since`, ascending; `more` when the page was full.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SyncPage {
    pub updates: Vec<Update>,
    pub cursor: u64,
    pub more: bool,
}

/// Every update type (`type` of [`UpdateKind`]), in declaration order: read from the derived
/// schema, so the list cannot miss a variant.
pub fn type_names() -> &'static [String] {
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let schema = serde_json::to_value(UpdateKind::schema()).unwrap_or_default();
        schema["oneOf"]
            .as_array()
            .map(|variants| {
                variants.iter().filter_map(|v| v["properties"]["type"]["enum"][0].as_str().map(str::to_owned)).collect()
            })
            .unwrap_or_default()
    })
}
