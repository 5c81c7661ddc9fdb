//! Friends and blocks: requests, accept, reject, list, remove, block, unblock.

use std::sync::Arc;

use parley_storage::{CommandKind, Reply};
use parley_wire::users::{
    BlockList, Friend, FriendAccepted, FriendList, FriendRequestSent, FriendRequests, IncomingRequest, OutgoingRequest,
};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use crate::bodies::FriendRequestBody;
use crate::error::ApiError;
use crate::http::{authed_body, json as json_reply, no_content, parse, req, respond, segment, with, written, Req};
use crate::state::AppState;

pub fn routes(s: &Arc<AppState>) -> BoxedFilter<(Response,)> {
    let limit = s.cfg.max_request_bytes;
    let request = warp::path!("v1" / "friends" / "requests")
        .and(warp::post())
        .and(with(s))
        .and(req())
        .and(authed_body(s, limit))
        .then(|s: Arc<AppState>, r, b| async move { respond(s.clone(), request(s, r, b)).await });
    let requests = warp::path!("v1" / "friends" / "requests")
        .and(warp::get())
        .and(with(s))
        .and(req())
        .then(|s: Arc<AppState>, r| async move { respond(s.clone(), requests(s, r)).await });
    let accept =
        warp::path!("v1" / "friends" / "requests" / String / "accept").and(warp::post()).and(with(s)).and(req()).then(
            |from: String, s: Arc<AppState>, r| async move { respond(s.clone(), answer(s, r, from, true)).await },
        );
    let reject =
        warp::path!("v1" / "friends" / "requests" / String / "reject").and(warp::post()).and(with(s)).and(req()).then(
            |from: String, s: Arc<AppState>, r| async move { respond(s.clone(), answer(s, r, from, false)).await },
        );
    let list = warp::path!("v1" / "friends")
        .and(warp::get())
        .and(with(s))
        .and(req())
        .then(|s: Arc<AppState>, r| async move { respond(s.clone(), friends(s, r)).await });
    let remove = warp::path!("v1" / "friends" / String)
        .and(warp::delete())
        .and(with(s))
        .and(req())
        .then(|other: String, s: Arc<AppState>, r| async move { respond(s.clone(), remove(s, r, other)).await });
    let block = warp::path!("v1" / "blocks" / String)
        .and(warp::put())
        .and(with(s))
        .and(req())
        .then(|t: String, s: Arc<AppState>, r| async move { respond(s.clone(), set_block(s, r, t, true)).await });
    let unblock = warp::path!("v1" / "blocks" / String)
        .and(warp::delete())
        .and(with(s))
        .and(req())
        .then(|t: String, s: Arc<AppState>, r| async move { respond(s.clone(), set_block(s, r, t, false)).await });
    let blocks = warp::path!("v1" / "blocks")
        .and(warp::get())
        .and(with(s))
        .and(req())
        .then(|s: Arc<AppState>, r| async move { respond(s.clone(), list_blocks(s, r)).await });
    request
        .or(requests)
        .unify()
        .or(accept)
        .unify()
        .or(reject)
        .unify()
        .or(list)
        .unify()
        .or(remove)
        .unify()
        .or(block)
        .unify()
        .or(unblock)
        .unify()
        .or(blocks)
        .unify()
        .boxed()
}

async fn request(s: Arc<AppState>, r: Req, b: Result<bytes::Bytes, ApiError>) -> Result<Response, ApiError> {
    let me = s.user(&r).await?;
    let b: FriendRequestBody = parse(b)?;
    let (cursor, reply) =
        s.submit(CommandKind::FriendRequest { from: me.user_id, to: b.to, note: b.note.unwrap_or_default() }).await?;
    let Reply::FriendRequest { from, to, note, ts } = reply else {
        return Err(ApiError::internal("unexpected reply to a friend request"));
    };
    let friends = s.store.are_friends(&from, &to)?;
    Ok(written(StatusCode::CREATED, &FriendRequestSent { from, to, note, ts, friends, cursor }, cursor))
}

async fn requests(s: Arc<AppState>, r: Req) -> Result<Response, ApiError> {
    let me = s.reader(&r).await?;
    let (incoming, outgoing) = s.store.friend_requests(&me.user_id)?;
    let incoming = incoming.into_iter().map(|(from, q)| IncomingRequest { from, note: q.note, ts: q.ts }).collect();
    let outgoing = outgoing.into_iter().map(|(to, q)| OutgoingRequest { to, note: q.note, ts: q.ts }).collect();
    Ok(json_reply(StatusCode::OK, &FriendRequests { incoming, outgoing }))
}

async fn answer(s: Arc<AppState>, r: Req, from: String, accept: bool) -> Result<Response, ApiError> {
    let me = s.user(&r).await?;
    let from = segment(&from)?;
    if accept {
        let (cursor, _) = s.submit(CommandKind::AcceptFriend { user_id: me.user_id, from: from.clone() }).await?;
        Ok(written(StatusCode::OK, &FriendAccepted { user_id: from, cursor }, cursor))
    } else {
        let (cursor, _) = s.submit(CommandKind::RejectFriend { user_id: me.user_id, from }).await?;
        Ok(no_content(cursor))
    }
}

async fn friends(s: Arc<AppState>, r: Req) -> Result<Response, ApiError> {
    let me = s.reader(&r).await?;
    let friends = s.store.friends(&me.user_id)?.into_iter().map(|(user_id, since)| Friend { user_id, since }).collect();
    Ok(json_reply(StatusCode::OK, &FriendList { friends }))
}

async fn remove(s: Arc<AppState>, r: Req, other: String) -> Result<Response, ApiError> {
    let me = s.user(&r).await?;
    let other = segment(&other)?;
    let (cursor, _) = s.submit(CommandKind::RemoveFriend { user_id: me.user_id, other }).await?;
    Ok(no_content(cursor))
}

async fn set_block(s: Arc<AppState>, r: Req, target: String, on: bool) -> Result<Response, ApiError> {
    let me = s.user(&r).await?;
    let target = segment(&target)?;
    let kind = if on {
        CommandKind::Block { user_id: me.user_id, target }
    } else {
        CommandKind::Unblock { user_id: me.user_id, target }
    };
    let (cursor, _) = s.submit(kind).await?;
    Ok(no_content(cursor))
}

async fn list_blocks(s: Arc<AppState>, r: Req) -> Result<Response, ApiError> {
    let me = s.reader(&r).await?;
    Ok(json_reply(StatusCode::OK, &BlockList { blocked: s.store.blocks(&me.user_id)? }))
}
