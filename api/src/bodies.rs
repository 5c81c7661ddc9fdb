//! The JSON bodies of the write routes: one type per body, and what each route refuses about
//! its body (and its path segments) before it looks at the store or proposes anything.
//!
//! Owns one decision: how untrusted request bytes become a typed, checked request. Route
//! handlers call these functions in the order they always ran them (authentication first, then
//! path segments, then the body), so the answers are the route's own; [`decode`] runs the same
//! steps for any write route, keyed by [`WriteRoute`], for the fuzz target
//! (`fuzz/fuzz_targets/http_bodies.rs`) and for tests. Checks that need state (does the user
//! exist, is the caller a member, is this node the leader) stay in the routes and in `decide`.
//!
//! Invariant: everything here is pure and total: malformed, mistyped, missing or out-of-range
//! input is an [`ApiError`] (`invalid_request`, or `not_found` for a group id that cannot
//! exist, as the routes always answered), never a panic.

use std::collections::{BTreeSet, HashSet};

use parley_storage::ids::{is_valid_user_id, parse_group_id, ConversationId};
use parley_storage::Role;
use serde::{Deserialize, Serialize};

use crate::auth::{PASSWORD_MAX_BYTES, PASSWORD_MIN_BYTES};
use crate::error::ApiError;
use crate::http::{parse_json, segment};

/// `POST /v1/users`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterBody {
    pub user_id: String,
    pub password: String,
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
    pub fn check(self) -> Result<Register, ApiError> {
        if !is_valid_user_id(&self.user_id) {
            return Err(ApiError::invalid("user_id must match ^[a-z0-9_]{3,32}$"));
        }
        check_password(&self.password)?;
        let display_name = self.display_name.unwrap_or_else(|| self.user_id.clone());
        check_display_name(&display_name)?;
        Ok(Register { user_id: self.user_id, password: self.password, display_name })
    }
}

fn check_password(p: &str) -> Result<(), ApiError> {
    if p.len() < PASSWORD_MIN_BYTES || p.len() > PASSWORD_MAX_BYTES {
        return Err(ApiError::invalid(format!("password must be {PASSWORD_MIN_BYTES} to {PASSWORD_MAX_BYTES} bytes")));
    }
    Ok(())
}

/// `POST /v1/sessions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoginBody {
    pub user_id: String,
    pub password: String,
    pub device: Option<String>,
}

impl LoginBody {
    /// Input no account can match is refused before anything is counted or hashed: the
    /// failed-login table only ever holds well-formed ids, and an over-long password never
    /// buys a free attempt.
    pub fn check(self) -> Result<LoginBody, ApiError> {
        if !is_valid_user_id(&self.user_id) {
            return Err(ApiError::invalid("user_id must match ^[a-z0-9_]{3,32}$"));
        }
        if self.password.len() > PASSWORD_MAX_BYTES {
            return Err(ApiError::invalid(format!("password must be at most {PASSWORD_MAX_BYTES} bytes")));
        }
        Ok(self)
    }

    /// The device the session is recorded with.
    pub fn device(&self) -> String {
        self.device.clone().filter(|d| !d.is_empty()).unwrap_or_else(|| "unknown".to_owned())
    }
}

/// `POST /v1/admin/users`: an app backend's account; without a password it can use only
/// admin-issued tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminUserBody {
    pub user_id: String,
    pub display_name: Option<String>,
    pub password: Option<String>,
}

impl AdminUserBody {
    /// The same rules as a registration's, the password optional.
    pub fn check(self) -> Result<(String, String, Option<String>), ApiError> {
        if !is_valid_user_id(&self.user_id) {
            return Err(ApiError::invalid("user_id must match ^[a-z0-9_]{3,32}$"));
        }
        if let Some(p) = &self.password {
            check_password(p)?;
        }
        let display_name = self.display_name.unwrap_or_else(|| self.user_id.clone());
        check_display_name(&display_name)?;
        Ok((self.user_id, display_name, self.password))
    }
}

fn check_display_name(name: &str) -> Result<(), ApiError> {
    let n = name.chars().count();
    if n == 0 || n > parley_storage::decide::MAX_DISPLAY_NAME_CHARS {
        return Err(ApiError::invalid("display_name must be 1 to 128 characters"));
    }
    Ok(())
}

/// The platforms a session may name.
pub const PLATFORMS: [&str; 5] = ["ios", "android", "web", "desktop", "other"];
/// Shortest and longest lifetime of an admin-issued token.
pub const TOKEN_TTL_SECS_MIN: u64 = 60;
pub const TOKEN_TTL_SECS_MAX: u64 = 30 * 24 * 3600;

/// `POST /v1/admin/users/{uid}/tokens`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueTokenBody {
    pub device: Option<String>,
    pub platform: Option<String>,
    pub ttl_secs: Option<u64>,
}

impl IssueTokenBody {
    /// `(device, ttl in ms)`; the device defaults to the platform, then to "unknown".
    pub fn check(self) -> Result<(String, u64), ApiError> {
        if let Some(p) = &self.platform {
            if !PLATFORMS.contains(&p.as_str()) {
                return Err(ApiError::invalid(format!("platform must be one of {}", PLATFORMS.join(", "))));
            }
        }
        let ttl_ms = match self.ttl_secs {
            None => crate::auth::TOKEN_TTL_MS,
            Some(t) if (TOKEN_TTL_SECS_MIN..=TOKEN_TTL_SECS_MAX).contains(&t) => t * 1000,
            Some(_) => {
                return Err(ApiError::invalid(format!("ttl_secs must be {TOKEN_TTL_SECS_MIN} to {TOKEN_TTL_SECS_MAX}")))
            }
        };
        let device = self.device.filter(|d| !d.is_empty()).or(self.platform).unwrap_or_else(|| "unknown".to_owned());
        Ok((device, ttl_ms))
    }
}

/// `PUT /v1/admin/users/{uid}/password`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetPasswordBody {
    pub password: String,
}

impl SetPasswordBody {
    pub fn check(self) -> Result<String, ApiError> {
        check_password(&self.password)?;
        Ok(self.password)
    }
}

/// `POST /v1/friends/requests`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FriendRequestBody {
    pub to: String,
    pub note: Option<String>,
}

/// `POST /v1/conversations/{cid}/messages`, and a WebSocket `send` frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendBody {
    pub client_msg_id: String,
    pub body: String,
    pub reply_to: Option<u64>,
}

impl SendBody {
    /// The conversation id's form and the body's length (`max_body_bytes`, the node's limit).
    pub fn check(&self, conversation_id: &str, max_body_bytes: u64) -> Result<(), ApiError> {
        if ConversationId::parse(conversation_id).is_none() {
            return Err(ApiError::invalid(format!("bad conversation id {conversation_id:?}")));
        }
        if self.body.is_empty() {
            return Err(ApiError::invalid("body is empty"));
        }
        if self.body.len() as u64 > max_body_bytes {
            return Err(ApiError::payload_too_large(format!("body is longer than {max_body_bytes} bytes")));
        }
        Ok(())
    }
}

/// `POST /v1/conversations/{cid}/read`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadBody {
    pub seq: u64,
}

/// `POST /v1/groups`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateGroupBody {
    pub name: String,
    #[serde(default)]
    pub members: Vec<String>,
}

impl CreateGroupBody {
    /// The owner is a member too; refused here, an oversized list never reaches the raft log.
    pub fn check(&self, owner: &str, max_members: u64) -> Result<(), ApiError> {
        check_member_count(self.members.iter().filter(|m| *m != owner), 1, max_members)
    }
}

/// `PATCH /v1/groups/{gid}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateGroupBody {
    pub name: Option<String>,
    pub mute_all: Option<bool>,
}

/// `POST /v1/groups/{gid}/members`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddMembersBody {
    pub user_ids: Vec<String>,
}

impl AddMembersBody {
    /// The group has at least one member, so more distinct ids than the limit never fit.
    pub fn check(&self, max_members: u64) -> Result<(), ApiError> {
        check_member_count(self.user_ids.iter(), 0, max_members)
    }
}

/// `invalid_request` (as `decide` words it) when `already` plus the distinct `ids` exceed `max`.
/// `decide` checks the same on the replicated state; this keeps a huge list from being
/// replicated, stored in every log and decided on every node just to be refused.
fn check_member_count<'a>(ids: impl Iterator<Item = &'a String>, already: u64, max: u64) -> Result<(), ApiError> {
    let mut seen = HashSet::new();
    for id in ids {
        if seen.insert(id.as_str()) && already + seen.len() as u64 > max {
            return Err(ApiError::invalid(format!("a group has at most {max} members")));
        }
    }
    Ok(())
}

/// `PUT /v1/groups/{gid}/members/{uid}/role`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoleBody {
    pub role: String,
}

impl RoleBody {
    /// Only `admin` and `member` can be given (an owner is made by a transfer).
    pub fn role(&self) -> Result<Role, ApiError> {
        match self.role.as_str() {
            "admin" => Ok(Role::Admin),
            "member" => Ok(Role::Member),
            _ => Err(ApiError::invalid("role must be \"admin\" or \"member\"")),
        }
    }
}

/// `POST /v1/groups/{gid}/transfer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferBody {
    pub to: String,
}

/// `PUT /v1/groups/{gid}/members/{uid}/mute`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MuteBody {
    pub until_ms: u64,
}

/// A group id path segment; one that cannot name a group is `not_found`.
pub fn group_id(raw: &str) -> Result<u64, ApiError> {
    let raw = segment(raw)?;
    parse_group_id(&raw).ok_or_else(|| ApiError::not_found(format!("no group {raw}")))
}

/// `POST /v1/admin/cluster/learners`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddLearnerBody {
    pub node_id: u64,
    pub addr: String,
    pub wait_ms: Option<u64>,
}

impl AddLearnerBody {
    /// The address the learner is reached at, trimmed; an empty one is refused.
    pub fn addr(&self) -> Result<&str, ApiError> {
        match self.addr.trim() {
            "" => Err(ApiError::invalid("addr must not be empty")),
            addr => Ok(addr),
        }
    }
}

/// `POST /v1/admin/cluster/voters`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddVotersBody {
    pub node_ids: Vec<u64>,
    pub wait_ms: Option<u64>,
}

impl AddVotersBody {
    /// The distinct ids to promote; none is refused.
    pub fn ids(&self) -> Result<BTreeSet<u64>, ApiError> {
        non_empty(&self.node_ids, "node_ids must not be empty")
    }
}

/// `PUT /v1/admin/cluster/membership`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetMembershipBody {
    pub voters: Vec<u64>,
    /// Voters left out stay as learners (default) or leave the cluster.
    pub retain: Option<bool>,
    pub wait_ms: Option<u64>,
}

impl SetMembershipBody {
    /// The distinct voters; none is refused.
    pub fn ids(&self) -> Result<BTreeSet<u64>, ApiError> {
        non_empty(&self.voters, "voters must not be empty")
    }
}

fn non_empty(ids: &[u64], why: &str) -> Result<BTreeSet<u64>, ApiError> {
    let ids: BTreeSet<u64> = ids.iter().copied().collect();
    if ids.is_empty() {
        return Err(ApiError::invalid(why));
    }
    Ok(ids)
}

/// Every write route that takes a JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteRoute {
    Register,
    Login,
    FriendRequest,
    Send,
    Read,
    CreateGroup,
    UpdateGroup,
    AddMembers,
    SetRole,
    Transfer,
    Mute,
    AddLearner,
    AddVoters,
    SetMembership,
}

impl WriteRoute {
    pub const ALL: [WriteRoute; 14] = [
        WriteRoute::Register,
        WriteRoute::Login,
        WriteRoute::FriendRequest,
        WriteRoute::Send,
        WriteRoute::Read,
        WriteRoute::CreateGroup,
        WriteRoute::UpdateGroup,
        WriteRoute::AddMembers,
        WriteRoute::SetRole,
        WriteRoute::Transfer,
        WriteRoute::Mute,
        WriteRoute::AddLearner,
        WriteRoute::AddVoters,
        WriteRoute::SetMembership,
    ];
}

/// What [`decode`] needs besides the request: the authenticated caller and the node's limits.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    pub caller: &'a str,
    pub max_body_bytes: u64,
    pub max_group_members: u64,
}

/// A write request that passed every check that needs no state.
#[derive(Debug, Clone, PartialEq)]
pub enum Checked {
    Register(Register),
    Login(LoginBody),
    FriendRequest(FriendRequestBody),
    Send { conversation_id: String, body: SendBody },
    Read { conversation_id: String, body: ReadBody },
    CreateGroup(CreateGroupBody),
    UpdateGroup { group_id: u64, body: UpdateGroupBody },
    AddMembers { group_id: u64, body: AddMembersBody },
    SetRole { group_id: u64, user_id: String, role: Role },
    Transfer { group_id: u64, body: TransferBody },
    Mute { group_id: u64, user_id: String, body: MuteBody },
    AddLearner(AddLearnerBody),
    AddVoters(AddVotersBody),
    SetMembership(SetMembershipBody),
}

/// Runs `route`'s checks, in the route's own order, on its raw path segments (the conversation
/// or group id first, then a user id; unused ones are ignored) and its body.
pub fn decode(route: WriteRoute, segments: [&str; 2], body: &[u8], ctx: &Context) -> Result<Checked, ApiError> {
    let [first, second] = segments;
    Ok(match route {
        WriteRoute::Register => Checked::Register(parse_json::<RegisterBody>(body)?.check()?),
        WriteRoute::Login => Checked::Login(parse_json::<LoginBody>(body)?.check()?),
        WriteRoute::FriendRequest => Checked::FriendRequest(parse_json(body)?),
        WriteRoute::Send => {
            let conversation_id = segment(first)?;
            let body: SendBody = parse_json(body)?;
            body.check(&conversation_id, ctx.max_body_bytes)?;
            Checked::Send { conversation_id, body }
        }
        WriteRoute::Read => {
            let conversation_id = segment(first)?;
            Checked::Read { conversation_id, body: parse_json(body)? }
        }
        WriteRoute::CreateGroup => {
            let body: CreateGroupBody = parse_json(body)?;
            body.check(ctx.caller, ctx.max_group_members)?;
            Checked::CreateGroup(body)
        }
        WriteRoute::UpdateGroup => {
            let group_id = group_id(first)?;
            Checked::UpdateGroup { group_id, body: parse_json(body)? }
        }
        WriteRoute::AddMembers => {
            let group_id = group_id(first)?;
            let body: AddMembersBody = parse_json(body)?;
            body.check(ctx.max_group_members)?;
            Checked::AddMembers { group_id, body }
        }
        WriteRoute::SetRole => {
            let group_id = group_id(first)?;
            let role = parse_json::<RoleBody>(body)?.role()?;
            Checked::SetRole { group_id, user_id: segment(second)?, role }
        }
        WriteRoute::Transfer => {
            let group_id = group_id(first)?;
            Checked::Transfer { group_id, body: parse_json(body)? }
        }
        WriteRoute::Mute => {
            let group_id = group_id(first)?;
            let body: MuteBody = parse_json(body)?;
            Checked::Mute { group_id, user_id: segment(second)?, body }
        }
        WriteRoute::AddLearner => {
            let body: AddLearnerBody = parse_json(body)?;
            body.addr()?;
            Checked::AddLearner(body)
        }
        WriteRoute::AddVoters => {
            let body: AddVotersBody = parse_json(body)?;
            body.ids()?;
            Checked::AddVoters(body)
        }
        WriteRoute::SetMembership => {
            let body: SetMembershipBody = parse_json(body)?;
            body.ids()?;
            Checked::SetMembership(body)
        }
    })
}
