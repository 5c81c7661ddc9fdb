//! `GET /v1/ws`: one task per connection.
//!
//! The connection registers with the [`Hub`](crate::hub::Hub) before its catch-up, then serves
//! `sync` by pulling pages from the store from its own cursor; every wake from the hub pulls
//! again from there. Outbound frames go through a bounded queue to a writer task: when it is
//! full the client is not reading, and it is closed with 1013 (it resumes by cursor).
//! `send` and `read` run as concurrent tasks (bounded per connection), so a client can keep
//! several requests in flight; their acks carry the request's `req`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify, Semaphore};
use warp::filters::ws::{Message, WebSocket, Ws};
use warp::filters::BoxedFilter;
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::http::{req, with, Req};
use crate::hub::Kick;
use crate::routes::conversations::{mark_read, send_message, SendBody};
use crate::routes::sync::{page, PageFrame};
use crate::state::{now_ms, AppState};

/// Largest frame a client may send.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// Updates per catch-up frame.
pub const WS_PAGE: u64 = 500;
/// Requests (send/read) a connection may have in flight.
pub const MAX_IN_FLIGHT: usize = 64;

pub const CLOSE_TOO_BIG: u16 = 1009;
pub const CLOSE_TRY_AGAIN_LATER: u16 = 1013;
pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_REVOKED: u16 = 4001;

pub fn routes(s: &Arc<AppState>) -> BoxedFilter<(Response,)> {
    warp::path!("v1" / "ws")
        .and(warp::get())
        .and(with(s))
        .and(req())
        .and(warp::ws())
        .then(|s: Arc<AppState>, r: Req, ws: Ws| upgrade(s, r, ws))
        .boxed()
}

async fn upgrade(s: Arc<AppState>, r: Req, ws: Ws) -> Response {
    let token = r.bearer().or_else(|| r.str_param("token"));
    match s.authenticate_token(token).await {
        Err(e) => e.into_response(),
        // Frames up to 1 MiB are read so that 64 KiB..1 MiB get a clean 1009 from us.
        Ok(user) => ws
            .max_message_size(1024 * 1024)
            .max_frame_size(1024 * 1024)
            .on_upgrade(move |socket| async move {
                let span = tracing::info_span!("ws", user = %user.user_id);
                let _ = tracing::Instrument::instrument(serve(s, user, socket), span).await;
            })
            .into_response(),
    }
}

/// The bounded outbound queue of one connection.
#[derive(Clone)]
struct Outbox {
    tx: mpsc::Sender<Message>,
    overflowed: Arc<AtomicBool>,
    overflow: Arc<Notify>,
}

/// A frame's JSON text: a value to serialise, or text already rendered (a sync page).
struct FrameText(String);

impl From<&Value> for FrameText {
    fn from(v: &Value) -> Self {
        FrameText(v.to_string())
    }
}

impl From<String> for FrameText {
    fn from(text: String) -> Self {
        FrameText(text)
    }
}

impl Outbox {
    /// Queues a frame; false (and the overflow alarm) when the client is not keeping up.
    fn push(&self, frame: impl Into<FrameText>) -> bool {
        match self.tx.try_send(Message::text(frame.into().0)) {
            Ok(()) => true,
            Err(_) => {
                self.overflowed.store(true, Ordering::SeqCst);
                self.overflow.notify_one();
                false
            }
        }
    }
}

async fn serve(s: Arc<AppState>, user: AuthUser, socket: WebSocket) {
    let reg = match s.hub.register(&user.user_id, &user.session_id) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "could not register websocket");
            return;
        }
    };
    s.metrics.ws_open.inc();
    let (sink, mut stream) = socket.split();
    let (tx, rx) = mpsc::channel::<Message>(s.cfg.ws_queue.max(1));
    let (close_tx, close_rx) = tokio::sync::oneshot::channel::<(u16, &'static str)>();
    let writer = tokio::spawn(write_loop(sink, rx, close_rx));
    let out = Outbox { tx, overflowed: Arc::new(AtomicBool::new(false)), overflow: Arc::new(Notify::new()) };
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut kick = reg.kick.clone();
    let mut since: Option<u64> = None;

    let close: Option<(u16, &'static str)> = loop {
        tokio::select! {
            frame = stream.next() => match frame {
                None => break None,
                Some(Err(e)) => {
                    // tungstenite refuses frames over its cap; anything else is a dead socket.
                    let too_big = e.to_string().to_ascii_lowercase().contains("too long")
                        || e.to_string().to_ascii_lowercase().contains("capacity");
                    break too_big.then_some((CLOSE_TOO_BIG, "frame too large"));
                }
                Some(Ok(msg)) => {
                    if msg.is_close() {
                        break None;
                    }
                    if msg.is_ping() || msg.is_pong() {
                        continue;
                    }
                    if msg.as_bytes().len() > MAX_FRAME_BYTES {
                        break Some((CLOSE_TOO_BIG, "frame too large"));
                    }
                    match handle_frame(&s, &user, &out, &in_flight, msg).await {
                        FrameAction::Continue => {}
                        FrameAction::Sync(from) => {
                            since = Some(from);
                            if !pull(&s, &user, &out, &mut since, true).await {
                                break Some((CLOSE_TRY_AGAIN_LATER, "outbound queue full; resume from your cursor"));
                            }
                        }
                    }
                }
            },
            _ = reg.wake.notified(), if since.is_some() => {
                if !pull(&s, &user, &out, &mut since, false).await {
                    break Some((CLOSE_TRY_AGAIN_LATER, "outbound queue full; resume from your cursor"));
                }
            }
            _ = out.overflow.notified() => {
                break Some((CLOSE_TRY_AGAIN_LATER, "outbound queue full; resume from your cursor"));
            }
            changed = kick.changed() => {
                let why = *kick.borrow();
                match (changed, why) {
                    (Ok(()), Kick::Revoked) => break Some((CLOSE_REVOKED, "session revoked")),
                    (Ok(()), Kick::Shutdown) | (Err(_), _) => break Some((CLOSE_GOING_AWAY, "server shutting down")),
                    (Ok(()), Kick::None) => {}
                }
            }
        }
    };
    if let Some((code, _)) = close {
        if code == CLOSE_TRY_AGAIN_LATER {
            s.metrics.ws_slow_closed.inc();
        }
        tracing::debug!(code, "closing websocket");
    }
    let _ = close_tx.send(close.unwrap_or((1000, "")));
    drop(out);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    s.metrics.ws_open.dec();
    drop(reg);
}

/// Writes queued frames; on a close request, abandons whatever is stuck and sends the close.
async fn write_loop(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Message>,
    mut close_rx: tokio::sync::oneshot::Receiver<(u16, &'static str)>,
) {
    let close = loop {
        let next = tokio::select! {
            biased;
            c = &mut close_rx => break c.ok(),
            m = rx.recv() => m,
        };
        let Some(msg) = next else { break close_rx.await.ok() };
        let sent = tokio::select! {
            biased;
            c = &mut close_rx => break c.ok(),
            r = sink.send(msg) => r,
        };
        if sent.is_err() {
            return;
        }
    };
    if let Some((code, reason)) = close {
        let _ = tokio::time::timeout(Duration::from_secs(2), sink.send(Message::close_with(code, reason))).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), sink.close()).await;
}

/// Frames a catch-up keeps queued ahead of the writer (at most half the queue): enough to keep
/// the socket busy while the next page renders, and leaves room for acks and live frames.
const CATCH_UP_AHEAD: usize = 4;
/// How long a catch-up waits for the writer to send a frame before it decides the client is
/// not reading (it is then closed with 1013, like any client whose queue overflows).
const CATCH_UP_STALL: Duration = Duration::from_secs(10);

/// Pulls the user's updates after `since` and queues them. False when the queue overflowed
/// (or, in a catch-up, the client stopped reading).
///
/// Each page is rendered once, as its frame's text. Between pages the task yields, so the
/// writer sends the first pages while later ones are rendered. A catch-up (`catch_up`, the
/// answer to a `sync` frame) paces itself on the writer: it queues a page only when fewer than
/// [`CATCH_UP_AHEAD`] frames wait, so a client that reads is never closed however long its
/// backlog, and the queue keeps room for acks. (It watches the queue's free capacity rather
/// than waiting on the channel's semaphore, which would hand every freed slot to the waiting
/// catch-up and starve the acks.) A live pull never waits: a full queue means the client is not
/// keeping up.
async fn pull(s: &AppState, user: &AuthUser, out: &Outbox, since: &mut Option<u64>, catch_up: bool) -> bool {
    let Some(mut from) = *since else { return true };
    let capacity = out.tx.max_capacity();
    let ahead = CATCH_UP_AHEAD.min(capacity / 2).max(1);
    let mut first = catch_up;
    loop {
        let p = match page(s, &user.user_id, from, WS_PAGE, PageFrame::Ws) {
            Ok(p) => p,
            Err(e) => {
                let _ = out.push(&json!({"type": "error", "code": e.code, "message": e.message}));
                return true;
            }
        };
        if p.len > 0 || first {
            if catch_up {
                let stalled = tokio::time::Instant::now() + CATCH_UP_STALL;
                let mut pause = Duration::from_millis(1);
                while capacity.saturating_sub(out.tx.capacity()) >= ahead {
                    if out.tx.is_closed() {
                        // The writer is gone (the socket died): nothing more to send.
                        return true;
                    }
                    if tokio::time::Instant::now() >= stalled {
                        return false;
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(16));
                }
            }
            if !out.push(p.text) {
                return false;
            }
        }
        first = false;
        from = p.cursor;
        *since = Some(from);
        if !p.more {
            return true;
        }
        tokio::task::yield_now().await;
    }
}

enum FrameAction {
    Continue,
    Sync(u64),
}

fn error_frame(req: &Value, e: &ApiError) -> Value {
    json!({"type": "error", "req": req, "code": e.code, "message": e.message})
}

async fn handle_frame(
    s: &Arc<AppState>,
    user: &AuthUser,
    out: &Outbox,
    in_flight: &Arc<Semaphore>,
    msg: Message,
) -> FrameAction {
    let Ok(text) = msg.to_str() else {
        out.push(&error_frame(&Value::Null, &ApiError::invalid("frames must be JSON text")));
        return FrameAction::Continue;
    };
    let frame: Value = match serde_json::from_str(text) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            out.push(&error_frame(&Value::Null, &ApiError::invalid("frame is not a JSON object")));
            return FrameAction::Continue;
        }
    };
    let req = frame.get("req").cloned().unwrap_or(Value::Null);
    match frame.get("type").and_then(Value::as_str) {
        Some("ping") => {
            out.push(&json!({"type": "pong", "ts": now_ms(), "req": req}));
        }
        Some("sync") => match frame.get("since").map(Value::as_u64) {
            None | Some(Some(_)) => return FrameAction::Sync(frame.get("since").and_then(Value::as_u64).unwrap_or(0)),
            Some(None) => {
                out.push(&error_frame(&req, &ApiError::invalid("since must be a non-negative integer")));
            }
        },
        Some("send") => {
            let parsed = (|| -> Result<(String, SendBody), ApiError> {
                let conv = frame
                    .get("conversation_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| ApiError::invalid("conversation_id is required"))?
                    .to_owned();
                let body: SendBody =
                    serde_json::from_value(frame.clone()).map_err(|e| ApiError::invalid(e.to_string()))?;
                Ok((conv, body))
            })();
            match parsed {
                Err(e) => {
                    out.push(&error_frame(&req, &e));
                }
                Ok((conv, body)) => {
                    let Ok(permit) = in_flight.clone().acquire_owned().await else { return FrameAction::Continue };
                    let (s, out, uid) = (s.clone(), out.clone(), user.user_id.clone());
                    tokio::spawn(async move {
                        let answer = match send_message(&s, &uid, conv, body).await {
                            Ok((cursor, parley_storage::Reply::Message { message, .. })) => {
                                json!({"type": "ack", "req": req, "message": crate::render::message(&message), "cursor": cursor})
                            }
                            Ok(_) => error_frame(&req, &ApiError::internal("unexpected reply")),
                            Err(e) => error_frame(&req, &e),
                        };
                        out.push(&answer);
                        drop(permit);
                    });
                }
            }
        }
        Some("read") => {
            let conv = frame.get("conversation_id").and_then(Value::as_str).map(str::to_owned);
            let seq = frame.get("seq").and_then(Value::as_u64);
            match (conv, seq) {
                (Some(conv), Some(seq)) => {
                    let Ok(permit) = in_flight.clone().acquire_owned().await else { return FrameAction::Continue };
                    let (s, out, uid) = (s.clone(), out.clone(), user.user_id.clone());
                    tokio::spawn(async move {
                        let answer = match mark_read(&s, &uid, conv, seq).await {
                            Ok((cursor, read_seq, unread)) => {
                                json!({"type": "ack", "req": req, "read_seq": read_seq, "unread": unread, "cursor": cursor})
                            }
                            Err(e) => error_frame(&req, &e),
                        };
                        out.push(&answer);
                        drop(permit);
                    });
                }
                _ => {
                    out.push(&error_frame(&req, &ApiError::invalid("read needs conversation_id and seq")));
                }
            }
        }
        _ => {
            out.push(&error_frame(&req, &ApiError::invalid("unknown frame type")));
        }
    }
    FrameAction::Continue
}
