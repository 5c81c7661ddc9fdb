//! Accounts and tokens for an app backend (`/v1/admin/users*`, admin token).
//!
//! | method and path                              | body                                | answer |
//! |----------------------------------------------|-------------------------------------|--------|
//! | `POST /v1/admin/users`                       | `{user_id, display_name?, password?}` | 201 `{user_id, display_name}` |
//! | `GET /v1/admin/users?after=&limit=`          |                                     | 200 `{users:[{user_id, display_name, created_at, deactivated}], next}` |
//! | `POST /v1/admin/users/{uid}/tokens`          | `{device?, platform?, ttl_secs?}`   | 201 `{token, session_id, expires_at}` |
//! | `POST /v1/admin/users/{uid}/deactivate`      |                                     | 204 |
//! | `POST /v1/admin/users/{uid}/reactivate`      |                                     | 204 |
//! | `DELETE /v1/admin/users/{uid}/sessions`      |                                     | 204 (force logout everywhere) |
//! | `PUT /v1/admin/users/{uid}/password`         | `{password}`                        | 204 |
//!
//! This is how an app with its own accounts integrates (as with OpenIM or Centrifugo): its
//! backend creates the user once, then issues a token whenever the user signs in to the app,
//! and hands it to the client, which uses it like a login's.
//!
//! The admin token is checked before a body is read ([`gated_body`]). Every write is a
//! replicated command like a user's, so any node accepts it and every node applies it; a
//! session revocation closes that session's sockets on every node with 4001 (the hub).
//!
//! Revoking all of a user's sessions is bounded per command
//! ([`parley_storage::command::MAX_REVOKED_PER_COMMAND`]): this module repeats the command
//! until the user has none left, and a deactivated account cannot gain a new one meanwhile.

use std::sync::Arc;

use parley_storage::CommandKind;
use parley_wire::users::{AdminUser, AdminUserPage, UserProfile};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use crate::bodies::{AdminUserBody, IssueTokenBody, SetPasswordBody};
use crate::error::ApiError;
use crate::http::{gated_body, json as json_reply, no_content, parse, req, respond, segment, with, written, Req};
use crate::state::AppState;

/// Default and largest page of `GET /v1/admin/users`.
pub const USERS_DEFAULT_LIMIT: usize = 100;
pub const USERS_MAX_LIMIT: usize = 1_000;
const BODY_LIMIT: u64 = 16 * 1024;
/// Force-logout rounds before giving up (each revokes up to 1,000 sessions): a bound on one
/// request's work, far above what any account holds.
const MAX_REVOKE_ROUNDS: usize = 1_000;

pub fn routes(s: &Arc<AppState>) -> BoxedFilter<(Response,)> {
    let create = warp::path!("v1" / "admin" / "users")
        .and(warp::post())
        .and(with(s))
        .and(gated_body(s, BODY_LIMIT, admin))
        .then(|s: Arc<AppState>, b| async move { respond(s.clone(), create(s, b)).await });
    let list = warp::path!("v1" / "admin" / "users")
        .and(warp::get())
        .and(with(s))
        .and(req())
        .then(|s: Arc<AppState>, r| async move { respond(s.clone(), list(s, r)).await });
    let token = warp::path!("v1" / "admin" / "users" / String / "tokens")
        .and(warp::post())
        .and(with(s))
        .and(gated_body(s, BODY_LIMIT, admin))
        .then(|uid: String, s: Arc<AppState>, b| async move { respond(s.clone(), token(s, uid, b)).await });
    let deactivate = warp::path!("v1" / "admin" / "users" / String / "deactivate")
        .and(warp::post())
        .and(with(s))
        .and(req())
        .then(|uid: String, s: Arc<AppState>, r| async move { respond(s.clone(), deactivate(s, r, uid)).await });
    let reactivate = warp::path!("v1" / "admin" / "users" / String / "reactivate")
        .and(warp::post())
        .and(with(s))
        .and(req())
        .then(|uid: String, s: Arc<AppState>, r| async move { respond(s.clone(), reactivate(s, r, uid)).await });
    let logout = warp::path!("v1" / "admin" / "users" / String / "sessions")
        .and(warp::delete())
        .and(with(s))
        .and(req())
        .then(|uid: String, s: Arc<AppState>, r| async move { respond(s.clone(), logout(s, r, uid)).await });
    let password = warp::path!("v1" / "admin" / "users" / String / "password")
        .and(warp::put())
        .and(with(s))
        .and(gated_body(s, BODY_LIMIT, admin))
        .then(|uid: String, s: Arc<AppState>, b| async move { respond(s.clone(), password(s, uid, b)).await });
    create
        .or(list)
        .unify()
        .or(token)
        .unify()
        .or(deactivate)
        .unify()
        .or(reactivate)
        .unify()
        .or(logout)
        .unify()
        .or(password)
        .unify()
        .boxed()
}

/// The admin token (as `Authorization: Bearer` or `X-Admin-Token`), and a node that serves.
fn admin(s: &AppState, r: &Req) -> Result<(), ApiError> {
    s.admin(r)?;
    s.serving()
}

/// The path's user id, which must name an account.
fn existing_user(s: &AppState, raw: &str) -> Result<String, ApiError> {
    let uid = segment(raw)?;
    if !parley_storage::ids::is_valid_user_id(&uid) || s.store.user(&uid)?.is_none() {
        return Err(ApiError::not_found(format!("no user {uid}")));
    }
    Ok(uid)
}

#[tracing::instrument(skip_all)]
async fn create(s: Arc<AppState>, b: Result<bytes::Bytes, ApiError>) -> Result<Response, ApiError> {
    let (user_id, display_name, password) = parse::<AdminUserBody>(b)?.check()?;
    if s.store.user(&user_id)?.is_some() {
        return Err(parley_storage::Rejection::UserExists.into());
    }
    let password_hash = match password {
        Some(p) => s.auth.hash_password(p).await?,
        None => String::new(),
    };
    let (cursor, _) = s
        .submit(CommandKind::CreateUser { user_id: user_id.clone(), display_name: display_name.clone(), password_hash })
        .await?;
    Ok(written(StatusCode::CREATED, &UserProfile { user_id, display_name, cursor: Some(cursor) }, cursor))
}

async fn list(s: Arc<AppState>, r: Req) -> Result<Response, ApiError> {
    admin(&s, &r)?;
    s.read_gate(&r).await?;
    let limit = r.u64_param("limit")?.map(|l| l as usize).unwrap_or(USERS_DEFAULT_LIMIT);
    if limit == 0 || limit > USERS_MAX_LIMIT {
        return Err(ApiError::invalid(format!("limit must be 1 to {USERS_MAX_LIMIT}")));
    }
    let after = r.str_param("after").filter(|a| !a.is_empty());
    let (page, more) = s.store.users_page(after, limit)?;
    let next = if more { page.last().map(|(uid, _, _)| uid.clone()) } else { None };
    let users = page
        .into_iter()
        .map(|(user_id, rec, deactivated)| AdminUser {
            user_id,
            display_name: rec.display_name,
            created_at: rec.created_at,
            deactivated,
        })
        .collect();
    Ok(json_reply(StatusCode::OK, &AdminUserPage { users, next }))
}

#[tracing::instrument(skip_all)]
async fn token(s: Arc<AppState>, uid: String, b: Result<bytes::Bytes, ApiError>) -> Result<Response, ApiError> {
    let body = b?;
    let uid = existing_user(&s, &uid)?;
    // An empty body is all defaults.
    let b = if body.is_empty() { IssueTokenBody::default() } else { parse::<IssueTokenBody>(Ok(body))? };
    let (device, ttl_ms) = b.check(crate::auth::TOKEN_TTL_MS)?;
    if s.store.is_deactivated(&uid)? {
        return Err(parley_storage::Rejection::AccountDeactivated.into());
    }
    super::users::start_session(&s, &uid, device, ttl_ms).await
}

#[tracing::instrument(skip_all)]
async fn deactivate(s: Arc<AppState>, r: Req, uid: String) -> Result<Response, ApiError> {
    admin(&s, &r)?;
    let uid = existing_user(&s, &uid)?;
    let (cursor, _) = s.submit(CommandKind::Deactivate { user_id: uid.clone() }).await?;
    let cursor = revoke_rest(&s, &uid, cursor).await?;
    Ok(no_content(cursor))
}

async fn reactivate(s: Arc<AppState>, r: Req, uid: String) -> Result<Response, ApiError> {
    admin(&s, &r)?;
    let uid = existing_user(&s, &uid)?;
    let (cursor, _) = s.submit(CommandKind::Reactivate { user_id: uid }).await?;
    Ok(no_content(cursor))
}

#[tracing::instrument(skip_all)]
async fn logout(s: Arc<AppState>, r: Req, uid: String) -> Result<Response, ApiError> {
    admin(&s, &r)?;
    let uid = existing_user(&s, &uid)?;
    let cursor = revoke_rest(&s, &uid, 0).await?;
    Ok(no_content(cursor))
}

/// Revokes the user's sessions, a bounded batch per command, until none is left; returns the
/// cursor of the last write (or `cursor` when there was nothing to revoke).
async fn revoke_rest(s: &AppState, uid: &str, mut cursor: u64) -> Result<u64, ApiError> {
    for _ in 0..MAX_REVOKE_ROUNDS {
        // Read this node's projections at the last write, so a round is never repeated on a
        // stale view.
        s.wait_applied(cursor).await?;
        if !s.store.has_sessions(uid)? {
            return Ok(cursor.max(s.store.applied_cursor()));
        }
        let (c, _) = s.submit(CommandKind::RevokeAllSessions { user_id: uid.to_owned() }).await?;
        cursor = c;
    }
    Err(ApiError::unavailable("the user has too many sessions to revoke in one request; repeat it"))
}

#[tracing::instrument(skip_all)]
async fn password(s: Arc<AppState>, uid: String, b: Result<bytes::Bytes, ApiError>) -> Result<Response, ApiError> {
    let b = b?;
    let uid = existing_user(&s, &uid)?;
    let password = parse::<SetPasswordBody>(Ok(b))?.check()?;
    let password_hash = s.auth.hash_password(password).await?;
    let (cursor, _) = s.submit(CommandKind::SetPassword { user_id: uid, password_hash }).await?;
    Ok(no_content(cursor))
}
