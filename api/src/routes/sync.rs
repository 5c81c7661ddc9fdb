//! `GET /v1/sync`: a user's updates after a cursor, paged, with long-poll.

use std::sync::Arc;
use std::time::Duration;

use parley_storage::{Store, StoreError};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use crate::error::ApiError;
use crate::http::{json_text, req, respond, with, Req};
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
    Ok(render_page(&s.store, user, since, limit, frame)?)
}

/// [`page`] from a store: the text is `parley_wire::canonical_text` of the page's
/// `SyncPage` (HTTP) or `ServerFrame::Updates` (WebSocket), tested below byte for byte.
pub fn render_page(store: &Store, user: &str, since: u64, limit: u64, frame: PageFrame) -> Result<Page, StoreError> {
    let page = store.sync_cursors(user, since, limit as usize)?;
    let mut text = String::with_capacity(64 + page.cursors.len() * RESERVE_PER_UPDATE);
    text.push_str("{\"cursor\":");
    text.push_str(itoa::Buffer::new().format(page.cursor));
    text.push_str(if page.more { ",\"more\":true" } else { ",\"more\":false" });
    if frame == PageFrame::Ws {
        text.push_str(",\"type\":\"updates\"");
    }
    text.push_str(",\"updates\":[");
    let mut first = true;
    store.visit_entries(&page.cursors, |e| {
        if !first {
            text.push(',');
        }
        first = false;
        parley_wire::fast::write_update(&mut text, &e)
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

#[cfg(test)]
mod tests {
    use super::*;
    use parley_storage::{Command, CommandKind};
    use parley_wire::frames::ServerFrame;
    use parley_wire::update::{SyncPage, Update};

    /// Pages (HTTP and WebSocket, full and partial, empty) are the typed page's canonical text.
    #[test]
    fn pages_are_the_typed_pages_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_path(dir.path(), 8 << 20).unwrap();
        let reg =
            |u: &str| CommandKind::Register { user_id: u.into(), display_name: u.into(), password_hash: "x".into() };
        let mut cmds = vec![
            reg("alice"),
            reg("bob"),
            CommandKind::FriendRequest { from: "alice".into(), to: "bob".into(), note: "hi \"there\"".into() },
            CommandKind::AcceptFriend { user_id: "bob".into(), from: "alice".into() },
        ];
        for n in 0..5 {
            cmds.push(CommandKind::Send {
                sender: "alice".into(),
                conversation_id: "d:alice:bob".into(),
                client_msg_id: format!("c{n}"),
                body: format!("body {n}\n"),
                reply_to: None,
                max_body_bytes: 1024,
            });
        }
        cmds.push(CommandKind::Revoke { user_id: "alice".into(), conversation_id: "d:alice:bob".into(), seq: 2 });
        let mut tx = store.begin();
        for (i, kind) in cmds.into_iter().enumerate() {
            let out = parley_storage::execute(&mut tx, &Command { ts: 10 + i as u64, kind }).unwrap();
            assert!(out.result.is_ok(), "{out:?}");
        }
        tx.commit().unwrap();
        for (since, limit) in [(0, 1000), (0, 3), (4, 2), (1000, 10)] {
            let cursors = store.sync_cursors("bob", since, limit as usize).unwrap();
            let mut revoked = Vec::new();
            store
                .visit_entries(&cursors.cursors, |v| {
                    revoked.push(v.revoked);
                    Ok(())
                })
                .unwrap();
            let entries = store.entries(&cursors.cursors).unwrap();
            let updates: Vec<Update> = entries.iter().zip(revoked).map(|(e, r)| Update::from_entry(e, r)).collect();
            let http = SyncPage { updates: updates.clone(), cursor: cursors.cursor, more: cursors.more };
            let ws = ServerFrame::Updates { updates, cursor: cursors.cursor, more: cursors.more };
            let p = render_page(&store, "bob", since, limit, PageFrame::Http).unwrap();
            assert_eq!(p.text, parley_wire::canonical_text(&http).unwrap(), "since {since} limit {limit}");
            assert_eq!(p.more, cursors.more);
            let p = render_page(&store, "bob", since, limit, PageFrame::Ws).unwrap();
            assert_eq!(p.text, parley_wire::canonical_text(&ws).unwrap(), "since {since} limit {limit}");
        }
    }
}
