//! `GET /v1/ws`: one task per connection.
//!
//! The connection registers with the [`Hub`](crate::hub::Hub) before its catch-up, then serves
//! `sync` by pulling pages from the store from its own cursor; every wake from the hub pulls
//! again from there. Outbound frames go through a bounded queue to a writer task: when it is
//! full the client is not reading, and it is closed with 1013 (it resumes by cursor).
//! `send` and `read` run as concurrent tasks (bounded per connection), so a client can keep
//! several requests in flight; their acks carry the request's `req`.
//!
//! The upgrade itself is ours, not warp's `ws()` filter: we check the handshake headers, answer
//! 101, take the connection from hyper and build the tokio-tungstenite socket with our own
//! [`WebSocketConfig`]. Why: warp 0.4 builds it with tungstenite's default config, whose read
//! buffer is 128 KiB, allocated eagerly per socket and zero-filled again on every poll of the
//! read half; that was ~138 KB of RSS per idle socket, and a 128 KiB memset per socket woken by
//! a fan-out. warp offers no way to size that buffer; see [`socket_config`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use parley_wire::frames::ServerFrame;
use parley_wire::Message as WireMessage;
use serde_json::Value;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Utf8Bytes};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use warp::filters::BoxedFilter;
use warp::http::header::{CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE};
use warp::http::{HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::http::{req, with, Req};
use crate::hub::Kick;
use crate::listener::ConnSlot;
use crate::routes::conversations::{mark_read, send_message, SendBody};
use crate::routes::sync::{page, PageFrame};
use crate::state::{now_ms, AppState};

/// Largest frame a client may send.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// Updates per catch-up frame.
pub const WS_PAGE: u64 = 500;
/// Requests (send/read) a connection may have in flight.
pub const MAX_IN_FLIGHT: usize = 64;
/// tungstenite's read buffer per socket (its default is 128 KiB). Client frames are small
/// JSON; a larger frame is still read whole (the buffer grows for it), only in more reads.
pub const READ_BUFFER_BYTES: usize = 4 * 1024;

pub const CLOSE_TOO_BIG: u16 = 1009;
pub const CLOSE_TRY_AGAIN_LATER: u16 = 1013;
pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_REVOKED: u16 = 4001;

type Socket = WebSocketStream<TokioIo<Upgraded>>;

pub fn routes(s: &Arc<AppState>) -> BoxedFilter<(Response,)> {
    warp::path!("v1" / "ws")
        .and(warp::get())
        .and(with(s))
        .and(req())
        // hyper puts it in the request's extensions when the request asks for an upgrade.
        .and(warp::ext::optional::<OnUpgrade>())
        // The connection's per-IP slot (listener.rs): the socket holds it while it is open.
        .and(warp::ext::optional::<ConnSlot>())
        .then(|s: Arc<AppState>, r: Req, on_upgrade: Option<OnUpgrade>, slot: Option<ConnSlot>| {
            upgrade(s, r, on_upgrade, slot)
        })
        .boxed()
}

/// The socket's tungstenite config.
///
/// - `read_buffer_size`: 4 KiB instead of 128 KiB (the reason for doing the upgrade ourselves).
/// - `max_message_size` / `max_frame_size`: frames up to 1 MiB are read so that 64 KiB..1 MiB
///   get a clean 1009 from us; beyond, tungstenite refuses them (also answered 1009).
/// - The write buffer is not allocated up front: it grows to the largest frame written and
///   keeps that capacity (each frame is flushed as it is sent, so `write_buffer_size`, a flush
///   threshold, changes neither idle memory nor latency here).
pub fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(Some(1024 * 1024))
        .max_frame_size(Some(1024 * 1024))
}

/// The `Sec-WebSocket-Key` and pending upgrade of a valid upgrade request, or why it is not one.
///
/// The same checks (and the same 400 `invalid_request`) as warp's `ws()` filter had: `GET`
/// (checked by the route), `Connection` listing `upgrade`, `Upgrade: websocket`,
/// `Sec-WebSocket-Version: 13`, a `Sec-WebSocket-Key`; and hyper must offer the upgrade (it
/// does not for HTTP/1.0, where warp used to answer 101 and then never upgrade).
fn handshake(headers: &HeaderMap, on_upgrade: Option<OnUpgrade>) -> Result<(HeaderValue, OnUpgrade), ApiError> {
    let connection_upgrade = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    let upgrade_websocket = headers.get(UPGRADE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let version_13 = headers.get(SEC_WEBSOCKET_VERSION).is_some_and(|v| v == "13");
    match (headers.get(SEC_WEBSOCKET_KEY), on_upgrade) {
        (Some(key), Some(on_upgrade)) if connection_upgrade && upgrade_websocket && version_13 => {
            Ok((key.clone(), on_upgrade))
        }
        _ => Err(ApiError::invalid(
            "not a WebSocket upgrade: needs Connection: upgrade, Upgrade: websocket, \
             Sec-WebSocket-Version: 13 and a Sec-WebSocket-Key over HTTP/1.1",
        )),
    }
}

async fn upgrade(s: Arc<AppState>, r: Req, on_upgrade: Option<OnUpgrade>, slot: Option<ConnSlot>) -> Response {
    // Browsers let any page open a WebSocket anywhere (no CORS): with `--cors-origin` set, a
    // page of another origin is refused here, before the token is even looked at.
    if let Err(e) = s.cfg.cors.check_ws(&r.headers) {
        return e.into_response();
    }
    let (key, on_upgrade) = match handshake(&r.headers, on_upgrade) {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    let token = r.bearer().or_else(|| r.str_param("token"));
    let user = match s.authenticate_token(token).await {
        Ok(user) => user,
        Err(e) => return e.into_response(),
    };
    let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) else {
        return ApiError::internal("could not derive sec-websocket-accept").into_response();
    };
    // hyper hands the connection over once the 101 below has been written.
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "websocket upgrade failed");
                return;
            }
        };
        let socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(socket_config())).await;
        let span = tracing::info_span!("ws", user = %user.user_id);
        tracing::Instrument::instrument(serve(s, user, socket), span).await;
        drop(slot);
    });
    let mut resp = Response::default();
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = resp.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    resp
}

fn close_frame(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame { code: CloseCode::from(code), reason: Utf8Bytes::from_static(reason) }))
}

/// The bounded outbound queue of one connection: text frames, queued as `String`s (24 bytes a
/// slot, not a `Message`'s 56: tokio allocates the queue 32 slots at a time, per socket).
#[derive(Clone)]
struct Outbox {
    tx: mpsc::Sender<String>,
    overflowed: Arc<AtomicBool>,
    overflow: Arc<Notify>,
}

impl Outbox {
    /// Queues a server frame (its canonical text); false when the client is not keeping up.
    fn frame(&self, frame: &ServerFrame) -> bool {
        match parley_wire::canonical_text(frame) {
            Ok(text) => self.push(text),
            // Not reachable (frames hold strings, numbers and JSON values); logged, not sent.
            Err(e) => {
                tracing::error!(error = %e, "server frame does not serialise");
                true
            }
        }
    }

    /// Queues a frame's text (a sync page comes rendered); false (and the overflow alarm) when
    /// the client is not keeping up.
    fn push(&self, text: String) -> bool {
        match self.tx.try_send(text) {
            Ok(()) => true,
            Err(_) => {
                self.overflowed.store(true, Ordering::SeqCst);
                self.overflow.notify_one();
                false
            }
        }
    }
}

async fn serve(s: Arc<AppState>, user: AuthUser, socket: Socket) {
    let reg = match s.hub.register(&user.user_id, &user.session_id) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "could not register websocket");
            return;
        }
    };
    s.metrics.ws_open.inc();
    let (sink, mut stream) = socket.split();
    let (tx, rx) = mpsc::channel::<String>(s.cfg.ws_queue.max(1));
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
                    let too_big = matches!(e, WsError::Capacity(_));
                    break too_big.then_some((CLOSE_TOO_BIG, "frame too large"));
                }
                Some(Ok(msg)) => {
                    if msg.is_close() {
                        break None;
                    }
                    if msg.is_ping() || msg.is_pong() {
                        continue;
                    }
                    if msg.len() > MAX_FRAME_BYTES {
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
    mut sink: futures_util::stream::SplitSink<Socket, Message>,
    mut rx: mpsc::Receiver<String>,
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
            r = write_queued(&mut sink, msg, &mut rx) => r,
        };
        if sent.is_err() {
            return;
        }
    };
    if let Some((code, reason)) = close {
        let _ = tokio::time::timeout(Duration::from_secs(2), sink.send(close_frame(code, reason))).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), sink.close()).await;
}

/// Frames written before one flush.
const WRITE_BATCH: usize = 64;

/// Writes `first` and whatever else is already queued (up to [`WRITE_BATCH`]), then flushes
/// once: a busy socket (acks of pipelined sends, catch-up pages) costs one `send` syscall per
/// burst instead of one per frame.
async fn write_queued(
    sink: &mut futures_util::stream::SplitSink<Socket, Message>,
    first: String,
    rx: &mut mpsc::Receiver<String>,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    sink.feed(Message::text(first)).await?;
    for _ in 1..WRITE_BATCH {
        match rx.try_recv() {
            Ok(next) => sink.feed(Message::text(next)).await?,
            Err(_) => break,
        }
    }
    sink.flush().await
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
                let _ = out.frame(&ServerFrame::Error { req: None, code: e.code.to_owned(), message: e.message });
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

fn error_frame(req: &Value, e: &ApiError) -> ServerFrame {
    ServerFrame::Error { req: Some(req.clone()), code: e.code.to_owned(), message: e.message.clone() }
}

/// A client frame, decoded and checked as far as that needs no state: what
/// [`decode_frame`] makes of the text of one WebSocket message.
#[derive(Debug, Clone)]
pub enum ClientFrame {
    Ping {
        req: Value,
    },
    /// Catch up from `since` (0 when absent).
    Sync {
        since: u64,
    },
    Send {
        req: Value,
        conversation_id: String,
        body: SendBody,
    },
    Read {
        req: Value,
        conversation_id: String,
        seq: u64,
    },
    /// Answered with an error frame carrying `req` (null when the frame has none or is not an
    /// object); the socket stays open.
    Refused {
        req: Value,
        error: ApiError,
    },
}

/// Decodes one text frame from a client. Total: anything malformed is
/// [`ClientFrame::Refused`], never a panic. Public so the fuzz target
/// (`fuzz/fuzz_targets/ws_frames.rs`) runs the socket's own decoder.
pub fn decode_frame(text: &str) -> ClientFrame {
    let frame: Value = match serde_json::from_str(text) {
        Ok(v @ Value::Object(_)) => v,
        _ => return ClientFrame::Refused { req: Value::Null, error: ApiError::invalid("frame is not a JSON object") },
    };
    let req = frame.get("req").cloned().unwrap_or(Value::Null);
    let refused = |req, message: &str| ClientFrame::Refused { req, error: ApiError::invalid(message) };
    match frame.get("type").and_then(Value::as_str) {
        Some("ping") => ClientFrame::Ping { req },
        Some("sync") => match frame.get("since").map(Value::as_u64) {
            None => ClientFrame::Sync { since: 0 },
            Some(Some(since)) => ClientFrame::Sync { since },
            Some(None) => refused(req, "since must be a non-negative integer"),
        },
        Some("send") => {
            let Some(conversation_id) = frame.get("conversation_id").and_then(Value::as_str).map(str::to_owned) else {
                return refused(req, "conversation_id is required");
            };
            match serde_json::from_value::<SendBody>(frame) {
                Ok(body) => ClientFrame::Send { req, conversation_id, body },
                Err(e) => ClientFrame::Refused { req, error: ApiError::invalid(e.to_string()) },
            }
        }
        Some("read") => {
            let conv = frame.get("conversation_id").and_then(Value::as_str).map(str::to_owned);
            match (conv, frame.get("seq").and_then(Value::as_u64)) {
                (Some(conversation_id), Some(seq)) => ClientFrame::Read { req, conversation_id, seq },
                _ => refused(req, "read needs conversation_id and seq"),
            }
        }
        _ => refused(req, "unknown frame type"),
    }
}

async fn handle_frame(
    s: &Arc<AppState>,
    user: &AuthUser,
    out: &Outbox,
    in_flight: &Arc<Semaphore>,
    msg: Message,
) -> FrameAction {
    let Message::Text(text) = msg else {
        out.frame(&error_frame(&Value::Null, &ApiError::invalid("frames must be JSON text")));
        return FrameAction::Continue;
    };
    match decode_frame(text.as_str()) {
        ClientFrame::Ping { req } => {
            out.frame(&ServerFrame::Pong { ts: now_ms(), req });
        }
        ClientFrame::Sync { since } => return FrameAction::Sync(since),
        ClientFrame::Refused { req, error } => {
            out.frame(&error_frame(&req, &error));
        }
        ClientFrame::Send { req, conversation_id: conv, body } => {
            let Ok(permit) = in_flight.clone().acquire_owned().await else { return FrameAction::Continue };
            let (s, out, uid) = (s.clone(), out.clone(), user.user_id.clone());
            tokio::spawn(async move {
                let answer = match send_message(&s, &uid, conv, body).await {
                    Ok((cursor, parley_storage::Reply::Message { message, .. })) => ServerFrame::Ack {
                        req,
                        message: Some(WireMessage::from(&message)),
                        read_seq: None,
                        unread: None,
                        cursor,
                    },
                    Ok(_) => error_frame(&req, &ApiError::internal("unexpected reply")),
                    Err(e) => error_frame(&req, &e),
                };
                out.frame(&answer);
                drop(permit);
            });
        }
        ClientFrame::Read { req, conversation_id: conv, seq } => {
            let Ok(permit) = in_flight.clone().acquire_owned().await else { return FrameAction::Continue };
            let (s, out, uid) = (s.clone(), out.clone(), user.user_id.clone());
            tokio::spawn(async move {
                let answer = match mark_read(&s, &uid, conv, seq).await {
                    Ok((cursor, read_seq, unread)) => {
                        ServerFrame::Ack { req, message: None, read_seq: Some(read_seq), unread: Some(unread), cursor }
                    }
                    Err(e) => error_frame(&req, &e),
                };
                out.frame(&answer);
                drop(permit);
            });
        }
    }
    FrameAction::Continue
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req_of(frame: &ClientFrame) -> &Value {
        match frame {
            ClientFrame::Ping { req }
            | ClientFrame::Send { req, .. }
            | ClientFrame::Read { req, .. }
            | ClientFrame::Refused { req, .. } => req,
            ClientFrame::Sync { .. } => &Value::Null,
        }
    }

    /// Regression (fuzz target `ws_frames`, crash-0add7ea8): serde_json's default float parser
    /// is not correctly rounded, so `req` numbers that a client writes as the shortest form of
    /// its f64 (here 4.4404444444444444e27) were read one ulp off, and the `req` echoed in the
    /// answer was another number than the client's: it could not match its request. The
    /// workspace enables serde_json's `float_roundtrip` (correct rounding).
    #[test]
    fn the_req_echoed_is_the_number_the_client_sent() {
        let text = include_str!("../tests/fuzz_regressions/ws_frames-crash-0add7ea8");
        let frame = decode_frame(text);
        assert!(matches!(frame, ClientFrame::Send { .. }), "{frame:?}");
        let req = req_of(&frame);
        // The nearest f64 to 4440444444444444444444444440 (what a correct parser reads).
        assert_eq!(req.as_f64(), Some(4.4404444444444444e27));
        let echoed = parley_wire::canonical_text(&error_frame(req, &ApiError::invalid("x"))).unwrap();
        let back: Value = serde_json::from_str(&echoed).unwrap();
        assert_eq!(&back["req"], req);
        let shortest = decode_frame(r#"{"type":"ping","req":4.4404444444444444e27}"#);
        assert_eq!(req_of(&shortest), req, "the shortest form reads as the same number");
        for text in [
            r#"{"type":"ping","req":0.1}"#,
            r#"{"type":"ping","req":1e-7}"#,
            r#"{"type":"ping","req":{"a":[2.5e300]}}"#,
        ] {
            let req = req_of(&decode_frame(text)).clone();
            let again = decode_frame(&json!({"type": "ping", "req": req}).to_string());
            assert_eq!(req_of(&again), &req, "{text}");
        }
    }

    /// The wire crate's client frames are what the socket decodes: each one, serialised, decodes
    /// to the same request (and what the socket decodes parses as a wire frame).
    #[test]
    fn wire_client_frames_decode_as_themselves() {
        use parley_wire::frames::ClientFrame as Wire;
        let conv = || "d:alice:bob".to_owned();
        let frames = [
            Wire::Sync { since: None },
            Wire::Sync { since: Some(7) },
            Wire::Send {
                req: Some(json!(1)),
                conversation_id: conv(),
                client_msg_id: "c1".into(),
                body: "hi".into(),
                reply_to: Some(3),
            },
            Wire::Send {
                req: None,
                conversation_id: conv(),
                client_msg_id: "c2".into(),
                body: "x".into(),
                reply_to: None,
            },
            Wire::Read { req: Some(json!({"k": ["v"]})), conversation_id: conv(), seq: 4 },
            Wire::Ping { req: None },
            Wire::Ping { req: Some(json!("p")) },
        ];
        for wire in frames {
            let text = serde_json::to_string(&wire).unwrap();
            let decoded = decode_frame(&text);
            let req_or_null = |r: &Option<Value>| r.clone().unwrap_or(Value::Null);
            match (&wire, &decoded) {
                (Wire::Sync { since }, ClientFrame::Sync { since: got }) => assert_eq!(since.unwrap_or(0), *got),
                (
                    Wire::Send { req, conversation_id, client_msg_id, body, reply_to },
                    ClientFrame::Send { req: r, conversation_id: c, body: b },
                ) => {
                    assert_eq!((&req_or_null(req), conversation_id), (r, c));
                    assert_eq!((client_msg_id, body, reply_to), (&b.client_msg_id, &b.body, &b.reply_to));
                }
                (
                    Wire::Read { req, conversation_id, seq },
                    ClientFrame::Read { req: r, conversation_id: c, seq: n },
                ) => {
                    assert_eq!((&req_or_null(req), conversation_id, seq), (r, c, n))
                }
                (Wire::Ping { req }, ClientFrame::Ping { req: r }) => assert_eq!(&req_or_null(req), r),
                _ => panic!("{text} decoded as {decoded:?}"),
            }
            let back: Wire = serde_json::from_str(&text).unwrap();
            assert_eq!(back, wire);
        }
    }
}
