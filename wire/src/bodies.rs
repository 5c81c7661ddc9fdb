//! Request bodies: one type per JSON body of a write route (and the WebSocket `send`), and what
//! the contract refuses about each before any state is read.
//!
//! The checks are pure and total: malformed or out-of-range input is a [`BodyError`], never a
//! panic. The API maps a `BodyError` to its status and code (`invalid_request` 400,
//! `payload_too_large` 413); the route-by-route order of checks (authentication, path
//! segments, body) is the API's (`parley_api::bodies::decode`). Checks that need state (does
//! the user exist, is the caller a member) stay in the routes and in `decide`.

use std::collections::{BTreeSet, HashSet};

use parley_storage::ids::{is_valid_user_id, ConversationId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::group::Role;

/// Passwords are 8 to 1024 bytes.
pub const PASSWORD_MIN_BYTES: usize = 8;
pub const PASSWORD_MAX_BYTES: usize = 1024;

/// Why a body is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// `invalid_request` (400).
    #[error("{0}")]
    Invalid(String),
    /// `payload_too_large` (413).
    #[error("{0}")]
    TooLarge(String),
}

fn invalid(message: impl Into<String>) -> BodyError {
    BodyError::Invalid(message.into())
}

/// `POST /v1/users`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RegisterBody {
    /// `^[a-z0-9_]{3,32}$`, immutable.
    #[schema(pattern = "^[a-z0-9_]{3,32}$")]
    pub user_id: String,
    /// 8 to 1024 bytes (the schema says 256 characters: at most 1024 bytes of UTF-8).
    #[schema(min_length = 8, max_length = 256)]
    pub password: String,
    /// 1 to 128 characters; the user id when absent.
    #[schema(min_length = 1, max_length = 128)]
    pub display_name: Option<String>,
}

/// A registration that passed [`RegisterBody::check`]: the display name defaulted.
#[derive(Debug, Clone, PartialEq)]
pub struct Register {
    pub user_id: String,
    pub password: String,
    pub display_name: String,
}

impl RegisterBody {
    /// The user id's form, the password's length and the display name's.
    pub fn check(self) -> Result<Register, BodyError> {
        if !is_valid_user_id(&self.user_id) {
            return Err(invalid("user_id must match ^[a-z0-9_]{3,32}$"));
        }
        check_password(&self.password)?;
        let display_name = self.display_name.unwrap_or_else(|| self.user_id.clone());
        let n = display_name.chars().count();
        if n == 0 || n > parley_storage::decide::MAX_DISPLAY_NAME_CHARS {
            return Err(invalid("display_name must be 1 to 128 characters"));
        }
        Ok(Register { user_id: self.user_id, password: self.password, display_name })
    }
}

fn check_password(p: &str) -> Result<(), BodyError> {
    if p.len() < PASSWORD_MIN_BYTES || p.len() > PASSWORD_MAX_BYTES {
        return Err(invalid(format!("password must be {PASSWORD_MIN_BYTES} to {PASSWORD_MAX_BYTES} bytes")));
    }
    Ok(())
}

/// `POST /v1/admin/users`: an app backend's account; without a password it can use only
/// admin-issued tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminUserBody {
    /// `^[a-z0-9_]{3,32}$`, immutable.
    #[schema(pattern = "^[a-z0-9_]{3,32}$")]
    pub user_id: String,
    /// 1 to 128 characters; the user id when absent.
    pub display_name: Option<String>,
    /// 8 to 1024 bytes; without one, the account logs in only with admin-issued tokens.
    pub password: Option<String>,
}

impl AdminUserBody {
    /// The same rules as a registration's, the password optional: `(user_id, display_name,
    /// password)`.
    pub fn check(self) -> Result<(String, String, Option<String>), BodyError> {
        if !is_valid_user_id(&self.user_id) {
            return Err(invalid("user_id must match ^[a-z0-9_]{3,32}$"));
        }
        if let Some(p) = &self.password {
            check_password(p)?;
        }
        let display_name = self.display_name.unwrap_or_else(|| self.user_id.clone());
        let n = display_name.chars().count();
        if n == 0 || n > parley_storage::decide::MAX_DISPLAY_NAME_CHARS {
            return Err(invalid("display_name must be 1 to 128 characters"));
        }
        Ok((self.user_id, display_name, self.password))
    }
}

/// The platforms a session may name.
pub const PLATFORMS: [&str; 5] = ["ios", "android", "web", "desktop", "other"];
/// Shortest and longest lifetime of an admin-issued token, in seconds.
pub const TOKEN_TTL_SECS_MIN: u64 = 60;
pub const TOKEN_TTL_SECS_MAX: u64 = 30 * 24 * 3600;

/// `POST /v1/admin/users/{uid}/tokens` (an empty body is all defaults).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueTokenBody {
    /// The session's device name; the platform, else `unknown`, when absent.
    pub device: Option<String>,
    /// `ios`, `android`, `web`, `desktop` or `other`.
    pub platform: Option<String>,
    /// 60 to 2,592,000 (30 days); one hour when absent.
    pub ttl_secs: Option<u64>,
}

impl IssueTokenBody {
    /// `(device, ttl in ms)`; `default_ttl_ms` when the body names none.
    pub fn check(self, default_ttl_ms: u64) -> Result<(String, u64), BodyError> {
        if let Some(p) = &self.platform {
            if !PLATFORMS.contains(&p.as_str()) {
                return Err(invalid(format!("platform must be one of {}", PLATFORMS.join(", "))));
            }
        }
        let ttl_ms = match self.ttl_secs {
            None => default_ttl_ms,
            Some(t) if (TOKEN_TTL_SECS_MIN..=TOKEN_TTL_SECS_MAX).contains(&t) => t * 1000,
            Some(_) => return Err(invalid(format!("ttl_secs must be {TOKEN_TTL_SECS_MIN} to {TOKEN_TTL_SECS_MAX}"))),
        };
        let device = self.device.filter(|d| !d.is_empty()).or(self.platform).unwrap_or_else(|| "unknown".to_owned());
        Ok((device, ttl_ms))
    }
}

/// `PUT /v1/admin/users/{uid}/password`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPasswordBody {
    /// 8 to 1024 bytes.
    pub password: String,
}

impl SetPasswordBody {
    pub fn check(self) -> Result<String, BodyError> {
        check_password(&self.password)?;
        Ok(self.password)
    }
}

/// `POST /v1/sessions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LoginBody {
    #[schema(pattern = "^[a-z0-9_]{3,32}$")]
    pub user_id: String,
    #[schema(max_length = 256)]
    pub password: String,
    /// A name for the session in the session list (`unknown` when absent or empty).
    #[schema(max_length = 128)]
    pub device: Option<String>,
}

impl LoginBody {
    /// Input no account can match is refused before anything is counted or hashed: the
    /// failed-login table only ever holds well-formed ids, and an over-long password never
    /// buys a free attempt.
    pub fn check(self) -> Result<LoginBody, BodyError> {
        if !is_valid_user_id(&self.user_id) {
            return Err(invalid("user_id must match ^[a-z0-9_]{3,32}$"));
        }
        if self.password.len() > PASSWORD_MAX_BYTES {
            return Err(invalid(format!("password must be at most {PASSWORD_MAX_BYTES} bytes")));
        }
        Ok(self)
    }

    /// The device the session is recorded with.
    pub fn device(&self) -> String {
        self.device.clone().filter(|d| !d.is_empty()).unwrap_or_else(|| "unknown".to_owned())
    }
}

/// `POST /v1/friends/requests`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FriendRequestBody {
    #[schema(pattern = "^[a-z0-9_]{3,32}$")]
    pub to: String,
    #[schema(max_length = 512)]
    pub note: Option<String>,
}

/// `POST /v1/conversations/{cid}/messages`, and a WebSocket `send` frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SendBody {
    /// The sender's idempotency key, 1 to 128 bytes: the same one again returns the original
    /// message (200).
    #[schema(min_length = 1, max_length = 32)]
    pub client_msg_id: String,
    /// 1 to 16,384 bytes (the node's default limit; the schema says 4,096 characters).
    #[schema(min_length = 1, max_length = 4096)]
    pub body: String,
    pub reply_to: Option<u64>,
}

impl SendBody {
    /// The conversation id's form and the body's length (`max_body_bytes`, the node's limit).
    pub fn check(&self, conversation_id: &str, max_body_bytes: u64) -> Result<(), BodyError> {
        if ConversationId::parse(conversation_id).is_none() {
            return Err(invalid(format!("bad conversation id {conversation_id:?}")));
        }
        if self.body.is_empty() {
            return Err(invalid("body is empty"));
        }
        if self.body.len() as u64 > max_body_bytes {
            return Err(BodyError::TooLarge(format!("body is longer than {max_body_bytes} bytes")));
        }
        Ok(())
    }
}

/// `POST /v1/conversations/{cid}/read`: a `seq` above `max_seq` is clamped; a lower one than
/// the current read marker changes nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReadBody {
    pub seq: u64,
}

/// `POST /v1/groups`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreateGroupBody {
    /// 1 to 128 characters, not blank.
    #[schema(min_length = 1, max_length = 128, pattern = "\\S")]
    pub name: String,
    /// The members besides the caller (the owner).
    #[serde(default)]
    pub members: Vec<String>,
}

impl CreateGroupBody {
    /// The owner is a member too; refused here, an oversized list never reaches the raft log.
    pub fn check(&self, owner: &str, max_members: u64) -> Result<(), BodyError> {
        check_member_count(self.members.iter().filter(|m| *m != owner), 1, max_members)
    }
}

/// `PATCH /v1/groups/{gid}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UpdateGroupBody {
    #[schema(min_length = 1, max_length = 128, pattern = "\\S")]
    pub name: Option<String>,
    pub mute_all: Option<bool>,
}

/// `POST /v1/groups/{gid}/members`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AddMembersBody {
    pub user_ids: Vec<String>,
}

impl AddMembersBody {
    /// The group has at least one member, so more distinct ids than the limit never fit.
    pub fn check(&self, max_members: u64) -> Result<(), BodyError> {
        check_member_count(self.user_ids.iter(), 0, max_members)
    }
}

/// `invalid_request` (as `decide` words it) when `already` plus the distinct `ids` exceed `max`.
/// `decide` checks the same on the replicated state; this keeps a huge list from being
/// replicated, stored in every log and decided on every node just to be refused.
fn check_member_count<'a>(ids: impl Iterator<Item = &'a String>, already: u64, max: u64) -> Result<(), BodyError> {
    let mut seen = HashSet::new();
    for id in ids {
        if seen.insert(id.as_str()) && already + seen.len() as u64 > max {
            return Err(invalid(format!("a group has at most {max} members")));
        }
    }
    Ok(())
}

/// `PUT /v1/groups/{gid}/members/{uid}/role`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RoleBody {
    /// `admin` or `member` (an owner is made by a transfer).
    #[schema(example = "admin", pattern = "^(admin|member)$")]
    pub role: String,
}

impl RoleBody {
    /// Only `admin` and `member` can be given (an owner is made by a transfer).
    pub fn role(&self) -> Result<Role, BodyError> {
        match self.role.as_str() {
            "admin" => Ok(Role::Admin),
            "member" => Ok(Role::Member),
            _ => Err(invalid("role must be \"admin\" or \"member\"")),
        }
    }
}

/// `POST /v1/groups/{gid}/transfer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TransferBody {
    #[schema(pattern = "^[a-z0-9_]{3,32}$")]
    pub to: String,
}

/// `PUT /v1/groups/{gid}/members/{uid}/mute`: until this time (ms); 0 unmutes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MuteBody {
    pub until_ms: u64,
}

/// `POST /v1/admin/cluster/learners`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddLearnerBody {
    pub node_id: u64,
    #[schema(pattern = "\\S")]
    pub addr: String,
    /// How long to wait for the learner to catch up (default 60,000, at most 600,000).
    pub wait_ms: Option<u64>,
}

impl AddLearnerBody {
    /// The address the learner is reached at, trimmed; an empty one is refused.
    pub fn addr(&self) -> Result<&str, BodyError> {
        match self.addr.trim() {
            "" => Err(invalid("addr must not be empty")),
            addr => Ok(addr),
        }
    }
}

/// `POST /v1/admin/cluster/voters`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddVotersBody {
    #[schema(min_items = 1)]
    pub node_ids: Vec<u64>,
    pub wait_ms: Option<u64>,
}

impl AddVotersBody {
    /// The distinct ids to promote; none is refused.
    pub fn ids(&self) -> Result<BTreeSet<u64>, BodyError> {
        non_empty(&self.node_ids, "node_ids must not be empty")
    }
}

/// `PUT /v1/admin/cluster/membership`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetMembershipBody {
    #[schema(min_items = 1)]
    pub voters: Vec<u64>,
    /// Voters left out stay as learners (default) or leave the cluster.
    pub retain: Option<bool>,
    pub wait_ms: Option<u64>,
}

impl SetMembershipBody {
    /// The distinct voters; none is refused.
    pub fn ids(&self) -> Result<BTreeSet<u64>, BodyError> {
        non_empty(&self.voters, "voters must not be empty")
    }
}

fn non_empty(ids: &[u64], why: &str) -> Result<BTreeSet<u64>, BodyError> {
    let ids: BTreeSet<u64> = ids.iter().copied().collect();
    if ids.is_empty() {
        return Err(invalid(why));
    }
    Ok(ids)
}
