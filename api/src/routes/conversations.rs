//! Conversations and messages: the list, send, history, read markers, revoke.

use std::sync::Arc;

use parley_storage::ids::ConversationId;
use parley_storage::{CommandKind, HistoryQuery, Reply};
use parley_wire::conversation::ConversationList;
use parley_wire::message::{History, MessageWritten, ReadAnswer};
use parley_wire::Message;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use crate::bodies::ReadBody;
pub use crate::bodies::SendBody;
use crate::error::ApiError;
use crate::http::{authed_body, json as json_reply, parse, req, respond, segment, with, written, Req};
use crate::state::AppState;

pub const HISTORY_DEFAULT_LIMIT: u64 = 50;
pub const HISTORY_MAX_LIMIT: u64 = 500;

pub fn routes(s: &Arc<AppState>) -> BoxedFilter<(Response,)> {
    let limit = s.cfg.max_request_bytes;
    let list = warp::path!("v1" / "conversations")
        .and(warp::get())
        .and(with(s))
        .and(req())
        .then(|s: Arc<AppState>, r| async move { respond(s.clone(), list(s, r)).await });
    let send = warp::path!("v1" / "conversations" / String / "messages")
        .and(warp::post())
        .and(with(s))
        .and(req())
        .and(authed_body(s, limit))
        .then(|c: String, s: Arc<AppState>, r, b| async move { respond(s.clone(), send(s, r, c, b)).await });
    let history = warp::path!("v1" / "conversations" / String / "messages")
        .and(warp::get())
        .and(with(s))
        .and(req())
        .then(|c: String, s: Arc<AppState>, r| async move { respond(s.clone(), history(s, r, c)).await });
    let read = warp::path!("v1" / "conversations" / String / "read")
        .and(warp::post())
        .and(with(s))
        .and(req())
        .and(authed_body(s, limit))
        .then(|c: String, s: Arc<AppState>, r, b| async move { respond(s.clone(), read(s, r, c, b)).await });
    let revoke = warp::path!("v1" / "conversations" / String / "messages" / String / "revoke")
        .and(warp::post())
        .and(with(s))
        .and(req())
        .then(
            |c: String, seq: String, s: Arc<AppState>, r| async move { respond(s.clone(), revoke(s, r, c, seq)).await },
        );
    list.or(send).unify().or(history).unify().or(read).unify().or(revoke).unify().boxed()
}

async fn list(s: Arc<AppState>, r: Req) -> Result<Response, ApiError> {
    let me = s.reader(&r).await?;
    // Read the cursor first: the list reflects at least this much, so syncing from it later
    // cannot miss anything (it may repeat a little, which clients dedupe by cursor).
    let cursor = s.store.applied_cursor();
    let mut convs = Vec::new();
    for c in s.store.conversations(&me.user_id)? {
        convs.push(parley_wire::storage::conversation(&c, &me.user_id, &s.store)?);
    }
    Ok(json_reply(StatusCode::OK, &ConversationList { conversations: convs, cursor }))
}

/// Validates and proposes a send; shared by HTTP and the WebSocket.
pub async fn send_message(
    s: &AppState,
    sender: &str,
    conversation_id: String,
    b: SendBody,
) -> Result<(u64, Reply), ApiError> {
    b.check(&conversation_id, s.cfg.max_body_bytes)?;
    if !s.send_limiter.allow(sender) {
        return Err(ApiError::rate_limited("too many messages; slow down").retry_after(1));
    }
    s.submit(CommandKind::Send {
        sender: sender.to_owned(),
        conversation_id,
        client_msg_id: b.client_msg_id,
        body: b.body,
        reply_to: b.reply_to,
        max_body_bytes: s.cfg.max_body_bytes,
    })
    .await
}

async fn send(s: Arc<AppState>, r: Req, conv: String, b: Result<bytes::Bytes, ApiError>) -> Result<Response, ApiError> {
    let me = s.user(&r).await?;
    let conv = segment(&conv)?;
    let b: SendBody = parse(b)?;
    let (cursor, reply) = send_message(&s, &me.user_id, conv, b).await?;
    match reply {
        Reply::Message { message, created } => {
            let status = if created { StatusCode::CREATED } else { StatusCode::OK };
            Ok(written(status, &MessageWritten { message: Message::from(&message), cursor }, cursor))
        }
        _ => Err(ApiError::internal("unexpected reply to a send")),
    }
}

/// The caller's view floor of a conversation (`joined_seq`), or `not_member`.
pub fn visible_floor(s: &AppState, user: &str, conv_id: &str) -> Result<u64, ApiError> {
    let conv =
        ConversationId::parse(conv_id).ok_or_else(|| ApiError::invalid(format!("bad conversation id {conv_id:?}")))?;
    match conv {
        ConversationId::Direct { .. } if conv.peer_of(user).is_some() => Ok(0),
        ConversationId::Direct { .. } => Err(ApiError::not_member()),
        ConversationId::Group(_) => {
            s.store.member(conv_id, user)?.map(|m| m.joined_seq).ok_or_else(ApiError::not_member)
        }
    }
}

async fn history(s: Arc<AppState>, r: Req, conv: String) -> Result<Response, ApiError> {
    let me = s.reader(&r).await?;
    let conv = segment(&conv)?;
    let floor = visible_floor(&s, &me.user_id, &conv)?;
    let limit = match r.u64_param("limit")? {
        None => HISTORY_DEFAULT_LIMIT,
        Some(0) => return Err(ApiError::invalid("limit must be at least 1")),
        Some(n) => n.min(HISTORY_MAX_LIMIT),
    };
    let q = HistoryQuery {
        after_seq: r.u64_param("after_seq")?,
        before_seq: r.u64_param("before_seq")?,
        limit: limit as usize,
    };
    let max_seq = s.store.conversation(&conv)?.max_seq;
    let messages = s.store.messages(&conv, q, floor)?.iter().map(Message::from).collect();
    Ok(json_reply(StatusCode::OK, &History { messages, max_seq }))
}

pub async fn mark_read(
    s: &AppState,
    user: &str,
    conversation_id: String,
    seq: u64,
) -> Result<(u64, u64, u64), ApiError> {
    let (cursor, reply) = s.submit(CommandKind::Read { user_id: user.to_owned(), conversation_id, seq }).await?;
    match reply {
        Reply::Read { read_seq, unread } => Ok((cursor, read_seq, unread)),
        _ => Err(ApiError::internal("unexpected reply to a read")),
    }
}

async fn read(s: Arc<AppState>, r: Req, conv: String, b: Result<bytes::Bytes, ApiError>) -> Result<Response, ApiError> {
    let me = s.user(&r).await?;
    let conv = segment(&conv)?;
    let b: ReadBody = parse(b)?;
    let (cursor, read_seq, unread) = mark_read(&s, &me.user_id, conv, b.seq).await?;
    Ok(written(StatusCode::OK, &ReadAnswer { read_seq, unread, cursor }, cursor))
}

async fn revoke(s: Arc<AppState>, r: Req, conv: String, seq: String) -> Result<Response, ApiError> {
    let me = s.user(&r).await?;
    let conv = segment(&conv)?;
    let seq: u64 = seq.parse().map_err(|_| ApiError::invalid("seq must be a positive integer"))?;
    let (cursor, reply) = s.submit(CommandKind::Revoke { user_id: me.user_id, conversation_id: conv, seq }).await?;
    match reply {
        Reply::Message { message, .. } => {
            Ok(written(StatusCode::OK, &MessageWritten { message: Message::from(&message), cursor }, cursor))
        }
        _ => Err(ApiError::internal("unexpected reply to a revoke")),
    }
}
