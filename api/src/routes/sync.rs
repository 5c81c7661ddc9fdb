//! `GET /v1/sync`: a user's updates after a cursor, paged, with long-poll.

use std::sync::Arc;
use std::time::Duration;

use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use crate::error::ApiError;
use crate::http::{json_text, req, respond, with, Req};
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

/// Which wire shape a page is rendered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageFrame {
    /// `GET /v1/sync`: `{"cursor":N,"more":bool,"updates":[...]}`.
    Http,
    /// A WebSocket frame: `{"cursor":N,"more":bool,"type":"updates","updates":[...]}`.
    Ws,
}

/// One page of updates, rendered once as the JSON text that goes on the wire.
pub struct Page {
    pub text: String,
    /// Updates in the page.
    pub len: usize,
    /// Pass as the next `since`.
    pub cursor: u64,
    pub more: bool,
}

/// Bytes of JSON per update to reserve: a message with a 256-byte body is about 550.
const RESERVE_PER_UPDATE: usize = 640;

/// One page of a user's updates after `since`, rendered as `frame`, straight from the stored
/// entries into one string. Keys are in byte order (as a `serde_json::Value` writes them).
pub fn page(s: &AppState, user: &str, since: u64, limit: u64, frame: PageFrame) -> Result<Page, ApiError> {
    let page = s.store.sync_cursors(user, since, limit as usize)?;
    let mut text = String::with_capacity(64 + page.cursors.len() * RESERVE_PER_UPDATE);
    text.push_str("{\"cursor\":");
    text.push_str(itoa::Buffer::new().format(page.cursor));
    text.push_str(if page.more { ",\"more\":true" } else { ",\"more\":false" });
    if frame == PageFrame::Ws {
        text.push_str(",\"type\":\"updates\"");
    }
    text.push_str(",\"updates\":[");
    let mut first = true;
    s.store.visit_entries(&page.cursors, |e| {
        if !first {
            text.push(',');
        }
        first = false;
        render::write_update(&mut text, &e);
        Ok(())
    })?;
    text.push_str("]}");
    Ok(Page { text, len: page.cursors.len(), cursor: page.cursor, more: page.more })
}

async fn sync(s: Arc<AppState>, r: Req) -> Result<Response, ApiError> {
    let me = s.reader(&r).await?;
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
        let p = page(&s, &me.user_id, since, limit, PageFrame::Http)?;
        if p.len > 0 || wait_ms == 0 || tokio::time::Instant::now() >= deadline {
            return Ok(json_text(StatusCode::OK, p.text));
        }
        match tokio::time::timeout_at(deadline, applied.changed()).await {
            Ok(Ok(())) => continue,
            // Timed out or shutting down: answer with nothing new.
            _ => {
                let p = page(&s, &me.user_id, since, limit, PageFrame::Http)?;
                return Ok(json_text(StatusCode::OK, p.text));
            }
        }
    }
}
