//! Groups: create, list, get, update (name, mute_all), dismiss, add, kick, leave, role,
//! transfer, mute.

use std::sync::Arc;

use parley_storage::{CommandKind, Reply};
use parley_wire::group::{Group, GroupList, GroupWritten};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use crate::bodies::{
    group_id as gid, AddMembersBody, CreateGroupBody, MuteBody, RoleBody, TransferBody, UpdateGroupBody,
};
use crate::error::ApiError;
use crate::http::{authed_body, json as json_reply, no_content, parse, req, respond, segment, with, written, Req};
use crate::state::AppState;

type Body = Result<bytes::Bytes, ApiError>;

pub fn routes(s: &Arc<AppState>) -> BoxedFilter<(Response,)> {
    let limit = s.cfg.max_request_bytes;
    let create = warp::path!("v1" / "groups")
        .and(warp::post())
        .and(with(s))
        .and(req())
        .and(authed_body(s, limit))
        .then(|s: Arc<AppState>, r, b| async move { respond(s.clone(), create(s, r, b)).await });
    let mine = warp::path!("v1" / "groups")
        .and(warp::get())
        .and(with(s))
        .and(req())
        .then(|s: Arc<AppState>, r| async move { respond(s.clone(), mine(s, r)).await });
    let get = warp::path!("v1" / "groups" / String)
        .and(warp::get())
        .and(with(s))
        .and(req())
        .then(|g: String, s: Arc<AppState>, r| async move { respond(s.clone(), get(s, r, g)).await });
    let update = warp::path!("v1" / "groups" / String)
        .and(warp::patch())
        .and(with(s))
        .and(req())
        .and(authed_body(s, limit))
        .then(|g: String, s: Arc<AppState>, r, b| async move { respond(s.clone(), update(s, r, g, b)).await });
    let dismiss = warp::path!("v1" / "groups" / String)
        .and(warp::delete())
        .and(with(s))
        .and(req())
        .then(|g: String, s: Arc<AppState>, r| async move { respond(s.clone(), dismiss(s, r, g)).await });
    let add = warp::path!("v1" / "groups" / String / "members")
        .and(warp::post())
        .and(with(s))
        .and(req())
        .and(authed_body(s, limit))
        .then(|g: String, s: Arc<AppState>, r, b| async move { respond(s.clone(), add(s, r, g, b)).await });
    let kick =
        warp::path!("v1" / "groups" / String / "members" / String).and(warp::delete()).and(with(s)).and(req()).then(
            |g: String, u: String, s: Arc<AppState>, r| async move { respond(s.clone(), kick(s, r, g, u)).await },
        );
    let leave = warp::path!("v1" / "groups" / String / "leave")
        .and(warp::post())
        .and(with(s))
        .and(req())
        .then(|g: String, s: Arc<AppState>, r| async move { respond(s.clone(), leave(s, r, g)).await });
    let role = warp::path!("v1" / "groups" / String / "members" / String / "role")
        .and(warp::put())
        .and(with(s))
        .and(req())
        .and(authed_body(s, limit))
        .then(
            |g: String, u: String, s: Arc<AppState>, r, b| async move { respond(s.clone(), role(s, r, g, u, b)).await },
        );
    let transfer = warp::path!("v1" / "groups" / String / "transfer")
        .and(warp::post())
        .and(with(s))
        .and(req())
        .and(authed_body(s, limit))
        .then(|g: String, s: Arc<AppState>, r, b| async move { respond(s.clone(), transfer(s, r, g, b)).await });
    let mute = warp::path!("v1" / "groups" / String / "members" / String / "mute")
        .and(warp::put())
        .and(with(s))
        .and(req())
        .and(authed_body(s, limit))
        .then(
            |g: String, u: String, s: Arc<AppState>, r, b| async move { respond(s.clone(), mute(s, r, g, u, b)).await },
        );
    create
        .or(mine)
        .unify()
        .or(get)
        .unify()
        .or(update)
        .unify()
        .or(dismiss)
        .unify()
        .or(add)
        .unify()
        .or(kick)
        .unify()
        .or(leave)
        .unify()
        .or(role)
        .unify()
        .or(transfer)
        .unify()
        .or(mute)
        .unify()
        .boxed()
}

/// The group as the contract's Group object.
fn group_json(s: &AppState, group_id: u64) -> Result<Group, ApiError> {
    let rec = s.store.group(group_id)?.ok_or_else(|| ApiError::not_found(format!("no group {group_id}")))?;
    Ok(parley_wire::storage::group(&s.store, group_id, &rec)?)
}

fn group_reply(s: &AppState, status: StatusCode, cursor: u64, reply: Reply) -> Result<Response, ApiError> {
    match reply {
        // The Group object, with the write's cursor beside its fields.
        Reply::Group { group_id } => {
            Ok(written(status, &GroupWritten { group: group_json(s, group_id)?, cursor }, cursor))
        }
        _ => Err(ApiError::internal("unexpected reply to a group command")),
    }
}

async fn create(s: Arc<AppState>, r: Req, b: Body) -> Result<Response, ApiError> {
    let me = s.user(&r).await?;
    let b: CreateGroupBody = parse(b)?;
    b.check(&me.user_id, s.cfg.max_group_members)?;
    let kind = CommandKind::CreateGroup {
        owner: me.user_id,
        name: b.name,
        members: b.members,
        max_members: s.cfg.max_group_members,
    };
    let (cursor, reply) = s.submit(kind).await?;
    group_reply(&s, StatusCode::CREATED, cursor, reply)
}

async fn mine(s: Arc<AppState>, r: Req) -> Result<Response, ApiError> {
    let me = s.reader(&r).await?;
    let mut groups = Vec::new();
    for g in s.store.groups_of(&me.user_id)? {
        groups.push(group_json(&s, g)?);
    }
    Ok(json_reply(StatusCode::OK, &GroupList { groups }))
}

async fn get(s: Arc<AppState>, r: Req, g: String) -> Result<Response, ApiError> {
    let me = s.reader(&r).await?;
    let g = gid(&g)?;
    if s.store.group(g)?.is_none() {
        return Err(ApiError::not_found(format!("no group {g}")));
    }
    // Refuse outsiders before rendering a roster of up to `max_group_members`.
    if s.store.member(&format!("g:{g}"), &me.user_id)?.is_none() {
        return Err(ApiError::not_member());
    }
    Ok(json_reply(StatusCode::OK, &group_json(&s, g)?))
}

async fn update(s: Arc<AppState>, r: Req, g: String, b: Body) -> Result<Response, ApiError> {
    let me = s.user(&r).await?;
    let group_id = gid(&g)?;
    let b: UpdateGroupBody = parse(b)?;
    let (cursor, reply) =
        s.submit(CommandKind::UpdateGroup { actor: me.user_id, group_id, name: b.name, mute_all: b.mute_all }).await?;
    group_reply(&s, StatusCode::OK, cursor, reply)
}

async fn dismiss(s: Arc<AppState>, r: Req, g: String) -> Result<Response, ApiError> {
    let me = s.user(&r).await?;
    let group_id = gid(&g)?;
    let (cursor, _) = s.submit(CommandKind::Dismiss { actor: me.user_id, group_id }).await?;
    Ok(no_content(cursor))
}

async fn add(s: Arc<AppState>, r: Req, g: String, b: Body) -> Result<Response, ApiError> {
    let me = s.user(&r).await?;
    let group_id = gid(&g)?;
    let b: AddMembersBody = parse(b)?;
    b.check(s.cfg.max_group_members)?;
    let kind = CommandKind::AddMembers {
        actor: me.user_id,
        group_id,
        user_ids: b.user_ids,
        max_members: s.cfg.max_group_members,
    };
    let (cursor, reply) = s.submit(kind).await?;
    group_reply(&s, StatusCode::OK, cursor, reply)
}

async fn kick(s: Arc<AppState>, r: Req, g: String, u: String) -> Result<Response, ApiError> {
    let me = s.user(&r).await?;
    let group_id = gid(&g)?;
    let (cursor, _) = s.submit(CommandKind::Kick { actor: me.user_id, group_id, user_id: segment(&u)? }).await?;
    Ok(no_content(cursor))
}

async fn leave(s: Arc<AppState>, r: Req, g: String) -> Result<Response, ApiError> {
    let me = s.user(&r).await?;
    let group_id = gid(&g)?;
    let (cursor, _) = s.submit(CommandKind::Leave { user_id: me.user_id, group_id }).await?;
    Ok(no_content(cursor))
}

async fn role(s: Arc<AppState>, r: Req, g: String, u: String, b: Body) -> Result<Response, ApiError> {
    let me = s.user(&r).await?;
    let group_id = gid(&g)?;
    let role = parse::<RoleBody>(b)?.role()?.into();
    let (cursor, reply) =
        s.submit(CommandKind::SetRole { actor: me.user_id, group_id, user_id: segment(&u)?, role }).await?;
    group_reply(&s, StatusCode::OK, cursor, reply)
}

async fn transfer(s: Arc<AppState>, r: Req, g: String, b: Body) -> Result<Response, ApiError> {
    let me = s.user(&r).await?;
    let group_id = gid(&g)?;
    let b: TransferBody = parse(b)?;
    let (cursor, reply) = s.submit(CommandKind::Transfer { actor: me.user_id, group_id, to: b.to }).await?;
    group_reply(&s, StatusCode::OK, cursor, reply)
}

async fn mute(s: Arc<AppState>, r: Req, g: String, u: String, b: Body) -> Result<Response, ApiError> {
    let me = s.user(&r).await?;
    let group_id = gid(&g)?;
    let b: MuteBody = parse(b)?;
    let (cursor, _) = s
        .submit(CommandKind::Mute { actor: me.user_id, group_id, user_id: segment(&u)?, until_ms: b.until_ms })
        .await?;
    Ok(no_content(cursor))
}
