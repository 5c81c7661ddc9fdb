//! What each write route refuses about its JSON body (and its path segments) before it looks at
//! the store or proposes anything. The bodies themselves, and the checks the contract makes of
//! each, are the wire crate's (`parley_wire::bodies`, re-exported here); this module adds the
//! path segments and each route's order of checks.
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

use parley_storage::ids::parse_group_id;
use parley_storage::Role;
pub use parley_wire::bodies::{
    AddLearnerBody, AddMembersBody, AddVotersBody, AdminUserBody, CreateGroupBody, FriendRequestBody, IssueTokenBody,
    LoginBody, MuteBody, ReadBody, Register, RegisterBody, RoleBody, SendBody, SetMembershipBody, SetPasswordBody,
    TransferBody, UpdateGroupBody,
};

use crate::error::ApiError;
use crate::http::{parse_json, segment};

/// A group id path segment; one that cannot name a group is `not_found`.
pub fn group_id(raw: &str) -> Result<u64, ApiError> {
    let raw = segment(raw)?;
    parse_group_id(&raw).ok_or_else(|| ApiError::not_found(format!("no group {raw}")))
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
            let role = parse_json::<RoleBody>(body)?.role()?.into();
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
