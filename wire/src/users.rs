//! Users, sessions, friends and blocks: the answers of their routes.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /v1/users` (with `cursor`), `GET /v1/me`, `GET /v1/users/{user_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserProfile {
    pub user_id: String,
    pub display_name: String,
    /// Only in a registration's answer: where it was applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<u64>,
}

/// `POST /v1/sessions`: a bearer token for the new session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionToken {
    pub token: String,
    pub session_id: String,
    /// ms since the epoch.
    pub expires_at: u64,
    pub user_id: String,
    pub cursor: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionInfo {
    pub session_id: String,
    pub device: String,
    pub created_at: u64,
    pub expires_at: u64,
    /// The session of the token that asked.
    pub current: bool,
}

/// `GET /v1/sessions`: the caller's unexpired sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionList {
    pub sessions: Vec<SessionInfo>,
}

/// `POST /v1/friends/requests`: `friends` is true when the other user had asked already (the
/// request made both friends at once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FriendRequestSent {
    pub from: String,
    pub to: String,
    pub note: String,
    pub ts: u64,
    pub friends: bool,
    pub cursor: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IncomingRequest {
    pub from: String,
    pub note: String,
    pub ts: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OutgoingRequest {
    pub to: String,
    pub note: String,
    pub ts: u64,
}

/// `GET /v1/friends/requests`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FriendRequests {
    pub incoming: Vec<IncomingRequest>,
    pub outgoing: Vec<OutgoingRequest>,
}

/// `POST /v1/friends/requests/{from}/accept`: the new friend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FriendAccepted {
    pub user_id: String,
    pub cursor: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Friend {
    pub user_id: String,
    /// When the friendship began (ms).
    pub since: u64,
}

/// `GET /v1/friends`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FriendList {
    pub friends: Vec<Friend>,
}

/// `GET /v1/blocks`: the user ids the caller blocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BlockList {
    pub blocked: Vec<String>,
}

/// One account in `GET /v1/admin/users`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AdminUser {
    pub user_id: String,
    pub display_name: String,
    /// When the account was created (ms).
    pub created_at: u64,
    /// Deactivated by `POST /v1/admin/users/{uid}/deactivate`.
    pub deactivated: bool,
}

/// `GET /v1/admin/users`: a page in user id order; `next` (the last id of a full page) is the
/// next page's `after`, `null` at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AdminUserPage {
    pub users: Vec<AdminUser>,
    pub next: Option<String>,
}
