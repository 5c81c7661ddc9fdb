//! Users and sessions: register, login, me, profiles, session list, logout, revoke.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use parley_storage::CommandKind;
use parley_wire::users::{SessionInfo, SessionList, SessionToken, UserProfile};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use crate::auth::TOKEN_TTL_MS;
use crate::bodies::{LoginBody, Register, RegisterBody};
use crate::error::ApiError;
use crate::http::{body, json as json_reply, no_content, parse, req, respond, segment, with, written, Req};
use crate::state::{now_ms, AppState};

pub fn routes(s: &Arc<AppState>) -> BoxedFilter<(Response,)> {
    let limit = s.cfg.max_request_bytes;
    let register = warp::path!("v1" / "users")
        .and(warp::post())
        .and(with(s))
        .and(body(s, limit))
        .then(|s: Arc<AppState>, b| async move { respond(s.clone(), register(s, b)).await });
    let login = warp::path!("v1" / "sessions")
        .and(warp::post())
        .and(with(s))
        .and(crate::listener::remote())
        .and(body(s, limit))
        .then(|s: Arc<AppState>, from: Option<SocketAddr>, b| async move {
            respond(s.clone(), login(s, from.map(|a| a.ip()), b)).await
        });
    let list = warp::path!("v1" / "sessions")
        .and(warp::get())
        .and(with(s))
        .and(req())
        .then(|s: Arc<AppState>, r| async move { respond(s.clone(), sessions(s, r)).await });
    let revoke = warp::path!("v1" / "sessions" / String)
        .and(warp::delete())
        .and(with(s))
        .and(req())
        .then(|sid: String, s: Arc<AppState>, r| async move { respond(s.clone(), revoke(s, r, sid)).await });
    let me = warp::path!("v1" / "me")
        .and(warp::get())
        .and(with(s))
        .and(req())
        .then(|s: Arc<AppState>, r| async move { respond(s.clone(), me(s, r)).await });
    let profile = warp::path!("v1" / "users" / String)
        .and(warp::get())
        .and(with(s))
        .and(req())
        .then(|uid: String, s: Arc<AppState>, r| async move { respond(s.clone(), profile(s, r, uid)).await });
    register.or(login).unify().or(list).unify().or(revoke).unify().or(me).unify().or(profile).unify().boxed()
}

async fn register(s: Arc<AppState>, b: Result<bytes::Bytes, ApiError>) -> Result<Response, ApiError> {
    if s.cfg.registration == crate::state::Registration::Closed {
        return Err(parley_storage::Rejection::Forbidden(
            "registration is closed on this server: accounts are created by the app's backend".into(),
        )
        .into());
    }
    let b: Register = parse::<RegisterBody>(b)?.check()?;
    // Cheap early refusal; the replicated decision is still the one that counts.
    if s.store.user(&b.user_id)?.is_some() {
        return Err(parley_storage::Rejection::UserExists.into());
    }
    let password_hash = s.auth.hash_password(b.password).await?;
    let (cursor, _) = s
        .submit(CommandKind::Register {
            user_id: b.user_id.clone(),
            display_name: b.display_name.clone(),
            password_hash,
        })
        .await?;
    Ok(written(
        StatusCode::CREATED,
        &UserProfile { user_id: b.user_id, display_name: b.display_name, cursor: Some(cursor) },
        cursor,
    ))
}

async fn login(s: Arc<AppState>, ip: Option<IpAddr>, b: Result<bytes::Bytes, ApiError>) -> Result<Response, ApiError> {
    let b = parse::<LoginBody>(b)?.check()?;
    let device = b.device();
    if !s.login_limiter.allow(&b.user_id, ip) {
        return Err(ApiError::rate_limited("too many failed logins; try again in a minute").retry_after(60));
    }
    // An account made without a password (`POST /v1/admin/users`) has an empty hash: it is
    // checked against the dummy hash like an unknown user, so its answer takes as long.
    let hash = s.store.user(&b.user_id)?.map(|u| u.password_hash).filter(|h| !h.is_empty());
    if !s.auth.verify_password(b.password, hash).await? {
        s.login_limiter.failed(&b.user_id, ip);
        return Err(ApiError::invalid_credentials());
    }
    start_session(&s, &b.user_id, device, TOKEN_TTL_MS).await
}

/// Records a new session and answers 201 `{token, session_id, expires_at, user_id}`: a login's
/// answer, and an admin-issued token's. A deactivated account is refused in the replicated
/// decision (`account_deactivated`).
pub(crate) async fn start_session(
    s: &AppState,
    user_id: &str,
    device: String,
    ttl_ms: u64,
) -> Result<Response, ApiError> {
    let session_id = random_id();
    let now = now_ms();
    let expires_at = now + ttl_ms;
    let (cursor, _) = s
        .submit(CommandKind::CreateSession {
            user_id: user_id.to_owned(),
            session_id: session_id.clone(),
            device,
            expires_at,
        })
        .await?;
    let token = s.auth.issue_at_cursor(user_id, &session_id, now, expires_at, Some(cursor))?;
    Ok(written(
        StatusCode::CREATED,
        &SessionToken { token, session_id, expires_at, user_id: user_id.to_owned(), cursor },
        cursor,
    ))
}

fn random_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

async fn sessions(s: Arc<AppState>, r: Req) -> Result<Response, ApiError> {
    let me = s.reader(&r).await?;
    let now = now_ms();
    let sessions: Vec<_> = s
        .store
        .sessions_of(&me.user_id)?
        .into_iter()
        .filter(|(_, rec)| rec.expires_at > now)
        .map(|(sid, rec)| SessionInfo {
            current: sid == me.session_id,
            session_id: sid,
            device: rec.device,
            created_at: rec.created_at,
            expires_at: rec.expires_at,
        })
        .collect();
    Ok(json_reply(StatusCode::OK, &SessionList { sessions }))
}

async fn revoke(s: Arc<AppState>, r: Req, sid: String) -> Result<Response, ApiError> {
    let me = s.user(&r).await?;
    let sid = segment(&sid)?;
    let session_id = if sid == "current" { me.session_id.clone() } else { sid };
    let (cursor, _) = s.submit(CommandKind::RevokeSession { user_id: me.user_id, session_id }).await?;
    Ok(no_content(cursor))
}

async fn me(s: Arc<AppState>, r: Req) -> Result<Response, ApiError> {
    let me = s.reader(&r).await?;
    let user = s.store.user(&me.user_id)?.ok_or_else(|| ApiError::unauthorized("user no longer exists"))?;
    Ok(json_reply(StatusCode::OK, &UserProfile { user_id: me.user_id, display_name: user.display_name, cursor: None }))
}

async fn profile(s: Arc<AppState>, r: Req, uid: String) -> Result<Response, ApiError> {
    s.reader(&r).await?;
    let uid = segment(&uid)?;
    let user = s.store.user(&uid)?.ok_or_else(|| ApiError::not_found(format!("no user {uid}")))?;
    Ok(json_reply(StatusCode::OK, &UserProfile { user_id: uid, display_name: user.display_name, cursor: None }))
}
