//! `GET /v1/sync`: a user's updates after a cursor, paged, with long-poll.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use crate::error::ApiError;
use crate::http::{json as json_reply, req, respond, with, Req};
use crate::render;
use crate::state::AppState;

pub const SYNC_DEFAULT_LIMIT: u64 = 100;
pub const SYNC_MAX_LIMIT: u64 = 1000;
pub const SYNC_MAX_WAIT_MS: u64 = 30_000;

pub fn routes(s: &Arc<AppState>) -> BoxedFilter<(Response,)> {
    warp::path!("v1" / "sync")
        .and(warp::get())
        .and(with(s))
        .and(req())
        .then(|s: Arc<AppState>, r| async move { respond(s.clone(), sync(s, r)).await })
        .boxed()
}

/// One page of updates rendered for the wire: `(updates, cursor, more)`.
pub fn page(s: &AppState, user: &str, since: u64, limit: u64) -> Result<(Vec<Value>, u64, bool), ApiError> {
    let page = s.store.sync(user, since, limit as usize)?;
    let mut updates = Vec::with_capacity(page.entries.len());
    for e in &page.entries {
        updates.push(render::update(&s.store, e)?);
    }
    Ok((updates, page.cursor, page.more))
}

async fn sync(s: Arc<AppState>, r: Req) -> Result<Response, ApiError> {
    s.read_gate(&r).await?;
    let me = s.user(&r).await?;
    let since = r.u64_param("since")?.unwrap_or(0);
    let limit = match r.u64_param("limit")? {
        None => SYNC_DEFAULT_LIMIT,
        Some(0) => return Err(ApiError::invalid("limit must be at least 1")),
        Some(n) => n.min(SYNC_MAX_LIMIT),
    };
    let wait_ms = r.u64_param("wait_ms")?.unwrap_or(0).min(SYNC_MAX_WAIT_MS);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
    // Subscribe before the first read so an entry applied in between still wakes us.
    let mut applied = s.hub.applied_watch();
    loop {
        applied.borrow_and_update();
        let (updates, cursor, more) = page(&s, &me.user_id, since, limit)?;
        if !updates.is_empty() || wait_ms == 0 || tokio::time::Instant::now() >= deadline {
            return Ok(json_reply(StatusCode::OK, &json!({"updates": updates, "cursor": cursor, "more": more})));
        }
        match tokio::time::timeout_at(deadline, applied.changed()).await {
            Ok(Ok(())) => continue,
            // Timed out or shutting down: answer with nothing new.
            _ => {
                let (updates, cursor, more) = page(&s, &me.user_id, since, limit)?;
                return Ok(json_reply(StatusCode::OK, &json!({"updates": updates, "cursor": cursor, "more": more})));
            }
        }
    }
}
