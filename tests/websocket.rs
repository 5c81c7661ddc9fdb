//! `GET /v1/ws`: auth, frames and their answers, error frames, close codes, catch-up then live
//! without gaps, slow consumers.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use serde_json::{json, Value};
use support::*;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn upgrade_needs_a_valid_token() {
    let server = shared();
    let api = server.api();
    let u = api.user("wsauth").await;
    assert_eq!(ws_refused_status(&server.ws_url()).await, 401);
    assert_eq!(ws_refused_status(&format!("{}?token=garbage", server.ws_url())).await, 401);

    // Query string and header both work.
    let mut ws = ws_connect(server, &u.token).await;
    send_json(&mut ws, &json!({"type": "ping"})).await;
    assert_eq!(next_of_type(&mut ws, "pong", WS_TIMEOUT).await["type"], json!("pong"));
    let mut ws2 = ws_connect_header(server, &u.token).await;
    send_json(&mut ws2, &json!({"type": "ping"})).await;
    next_of_type(&mut ws2, "pong", WS_TIMEOUT).await;

    // A logged-out token cannot open a socket.
    let s = api.login_session(&u.id, &u.password, None).await;
    api.delete("/v1/sessions/current", Some(&s.token)).await.write(204);
    assert_eq!(ws_refused_status(&format!("{}?token={}", server.ws_url(), s.token)).await, 401);
}

#[tokio::test]
async fn ping_pong() {
    let server = shared();
    let api = server.api();
    let u = api.user("ping").await;
    let mut ws = ws_connect(server, &u.token).await;
    let t0 = now_ms();
    send_json(&mut ws, &json!({"type": "ping"})).await;
    let pong = next_of_type(&mut ws, "pong", WS_TIMEOUT).await;
    let ts = as_u64(&pong["ts"], "pong.ts");
    assert!(ts + 60_000 >= t0 && ts <= now_ms() + 60_000, "pong ts {ts} not near now");
}

#[tokio::test]
async fn send_and_read_frames() {
    let server = shared();
    let api = server.api();
    let (a, b, cid) = api.friends("wsf").await;
    let stranger = api.user("wsfs").await;
    let mut wa = ws_connect(server, &a.token).await;
    let mut wb = ws_connect(server, &b.token).await;

    send_json(
        &mut wa,
        &json!({"type": "send", "req": 1, "conversation_id": cid, "client_msg_id": "w-1", "body": "over ws"}),
    )
    .await;
    let ack = next_of_type(&mut wa, "ack", WS_TIMEOUT).await;
    assert_eq!(ack["req"], json!(1));
    let m = ack["message"].clone();
    assert_eq!(m["seq"], json!(1));
    assert_eq!(m["sender"], json!(a.id));
    assert_eq!(m["body"], json!("over ws"));
    assert_eq!(m["conversation_id"], json!(cid));
    assert_eq!(m["client_msg_id"], json!("w-1"));
    assert_eq!(m["revoked"], json!(false));
    let c1 = as_u64(&ack["cursor"], "ack.cursor");

    // Stored like an HTTP send.
    let h = api.history(&b.token, &cid, "").await;
    assert_eq!(h["messages"][0], m);

    // Reply with reply_to; a repeated client_msg_id acks the original message.
    send_json(&mut wa, &json!({"type": "send", "req": "two", "conversation_id": cid, "client_msg_id": "w-2", "body": "again", "reply_to": 1})).await;
    let ack2 = next_of_type(&mut wa, "ack", WS_TIMEOUT).await;
    assert_eq!(ack2["req"], json!("two"));
    assert_eq!(ack2["message"]["seq"], json!(2));
    assert_eq!(ack2["message"]["reply_to"], json!(1));
    assert!(as_u64(&ack2["cursor"], "cursor") > c1);
    send_json(
        &mut wa,
        &json!({"type": "send", "req": 3, "conversation_id": cid, "client_msg_id": "w-1", "body": "over ws"}),
    )
    .await;
    let ack3 = next_of_type(&mut wa, "ack", WS_TIMEOUT).await;
    assert_eq!(ack3["req"], json!(3));
    assert_eq!(ack3["message"], m);
    assert_eq!(api.history(&b.token, &cid, "").await["max_seq"], json!(2));

    // Read frame.
    send_json(&mut wb, &json!({"type": "read", "req": 7, "conversation_id": cid, "seq": 1})).await;
    let rack = next_of_type(&mut wb, "ack", WS_TIMEOUT).await;
    assert_eq!(rack["req"], json!(7));
    assert_eq!(rack["read_seq"], json!(1));
    assert_eq!(rack["unread"], json!(1));
    as_u64(&rack["cursor"], "cursor");
    send_json(&mut wb, &json!({"type": "read", "req": 8, "conversation_id": cid, "seq": 99})).await;
    let rack = next_of_type(&mut wb, "ack", WS_TIMEOUT).await;
    assert_eq!(rack["req"], json!(8));
    assert_eq!(rack["read_seq"], json!(2));
    assert_eq!(rack["unread"], json!(0));
    let c = api.conversation(&b.token, &cid).await.unwrap();
    assert_eq!(c["read_seq"], json!(2));

    // Refused requests answer an error frame carrying req and the contract code.
    let cid_s = dm(&a.id, &stranger.id);
    send_json(
        &mut wa,
        &json!({"type": "send", "req": 9, "conversation_id": cid_s, "client_msg_id": "w-9", "body": "hi"}),
    )
    .await;
    let e = next_of_type(&mut wa, "error", WS_TIMEOUT).await;
    assert_eq!(e["req"], json!(9));
    assert_eq!(e["code"], json!("not_friends"));
    assert!(e["message"].as_str().is_some_and(|s| !s.is_empty()), "{e}");
    send_json(
        &mut wa,
        &json!({"type": "send", "req": 10, "conversation_id": cid, "client_msg_id": "w-10", "body": ""}),
    )
    .await;
    let e = next_of_type(&mut wa, "error", WS_TIMEOUT).await;
    assert_eq!((e["req"].clone(), e["code"].clone()), (json!(10), json!("invalid_request")));
    send_json(&mut wa, &json!({"type": "send", "req": 11, "conversation_id": cid, "client_msg_id": "w-11", "body": "x".repeat(16_385)})).await;
    let e = next_of_type(&mut wa, "error", WS_TIMEOUT).await;
    assert_eq!((e["req"].clone(), e["code"].clone()), (json!(11), json!("payload_too_large")));
    send_json(&mut wa, &json!({"type": "send", "req": 12, "conversation_id": cid, "body": "no id"})).await;
    let e = next_of_type(&mut wa, "error", WS_TIMEOUT).await;
    assert_eq!((e["req"].clone(), e["code"].clone()), (json!(12), json!("invalid_request")));
    let cid_x = dm(&b.id, &stranger.id);
    send_json(&mut wa, &json!({"type": "read", "req": 13, "conversation_id": cid_x, "seq": 1})).await;
    let e = next_of_type(&mut wa, "error", WS_TIMEOUT).await;
    assert_eq!((e["req"].clone(), e["code"].clone()), (json!(13), json!("not_member")));

    // Still open.
    send_json(&mut wa, &json!({"type": "ping"})).await;
    next_of_type(&mut wa, "pong", WS_TIMEOUT).await;
    assert_eq!(api.history(&a.token, &cid, "").await["max_seq"], json!(2));
}

#[tokio::test]
async fn garbage_frames_answer_errors_and_keep_the_socket() {
    let server = shared();
    let api = server.api();
    let u = api.user("garb").await;
    let mut ws = ws_connect(server, &u.token).await;
    for bad in
        ["not json", "{", "[]", "42", "{}", r#"{"type":"bogus"}"#, r#"{"type":7}"#, r#"{"type":"sync","since":"x"}"#]
    {
        send_text(&mut ws, bad).await;
        let e = next_of_type(&mut ws, "error", WS_TIMEOUT).await;
        assert_eq!(e["code"], json!("invalid_request"), "frame {bad:?} -> {e}");
        assert!(e["message"].as_str().is_some_and(|s| !s.is_empty()), "{e}");
    }
    send_json(&mut ws, &json!({"type": "ping"})).await;
    next_of_type(&mut ws, "pong", WS_TIMEOUT).await;
}

#[tokio::test]
async fn frame_over_64k_closes_with_1009() {
    let server = shared();
    let api = server.api();
    let u = api.user("big").await;
    let mut ws = ws_connect(server, &u.token).await;
    // Just under the limit: an ordinary bad frame (not JSON), answered with an error.
    send_text(&mut ws, &"p".repeat(60 * 1024)).await;
    let e = next_of_type(&mut ws, "error", WS_TIMEOUT).await;
    assert_eq!(e["code"], json!("invalid_request"));

    let big = "p".repeat(70 * 1024);
    let _ = tokio::time::timeout(WS_TIMEOUT, ws.send(Message::text(big))).await;
    let (code, _) = read_until_close(&mut ws, WS_TIMEOUT).await;
    assert_eq!(code, Some(1009));
}

/// The upgrade is the server's own code (not warp's `ws()` filter): a request to `/v1/ws` that is
/// not a WebSocket handshake is a 400 `invalid_request`, checked before the token; never a 101,
/// a 500 or a dropped connection.
#[tokio::test]
async fn requests_that_are_not_websocket_handshakes_are_invalid() {
    let server = shared();
    let api = server.api();
    let u = api.user("wshs").await;
    let key = "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let cases: Vec<(&str, String)> = vec![
        ("HTTP/1.1", String::new()),
        ("HTTP/1.1", "connection: upgrade\r\n".into()),
        ("HTTP/1.1", "connection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\n".into()),
        ("HTTP/1.1", format!("connection: keep-alive\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\n{key}")),
        ("HTTP/1.1", format!("connection: upgrade\r\nupgrade: h2c\r\nsec-websocket-version: 13\r\n{key}")),
        ("HTTP/1.1", format!("connection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 8\r\n{key}")),
        ("HTTP/1.1", format!("connection: upgrade\r\nupgrade: websocket\r\n{key}")),
        // hyper offers no upgrade over HTTP/1.0.
        ("HTTP/1.0", format!("connection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\n{key}")),
    ];
    for (version, headers) in cases {
        let head = format!("GET /v1/ws?token={} {version}\r\nhost: {}\r\n{headers}\r\n", u.token, server.addr);
        let (status, json, text) = raw_http(server.addr, &head, Vec::new()).await;
        assert_eq!(status, 400, "{version} with {headers:?}: {text}");
        assert_eq!(json["error"]["code"], json!("invalid_request"), "{version} with {headers:?}: {text}");
    }
    // A valid handshake is checked for its token next (401), as before.
    let head = format!(
        "GET /v1/ws?token=garbage HTTP/1.1\r\nhost: {}\r\nconnection: Upgrade\r\nupgrade: WebSocket\r\n\
         sec-websocket-version: 13\r\n{key}\r\n",
        server.addr
    );
    let (status, json, text) = raw_http(server.addr, &head, Vec::new()).await;
    assert_eq!((status, &json["error"]["code"]), (401, &json!("unauthorized")), "{text}");
    // Other methods: 405 with `Allow`, as on any known path.
    api.call("POST", "/v1/ws", Some(&u.token), None).await.err(405, "invalid_request");
}

/// The handshake answered by hand (RFC 6455's example key), then a frame declaring more than
/// tungstenite's 1 MiB cap: refused on its header, with a clean 1009.
#[tokio::test]
async fn raw_handshake_then_frame_over_one_mib_closes_with_1009() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = shared();
    let u = server.api().user("wsraw").await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.expect("connect");
    let head = format!(
        "GET /v1/ws HTTP/1.1\r\nhost: {}\r\nconnection: keep-alive, Upgrade\r\nupgrade: websocket\r\n\
         sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         authorization: Bearer {}\r\n\r\n",
        server.addr, u.token
    );
    tcp.write_all(head.as_bytes()).await.expect("write handshake");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = tokio::time::timeout(WS_TIMEOUT, tcp.read(&mut chunk)).await.expect("101 in time").expect("read");
        assert!(n > 0, "closed during the handshake: {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    };
    let response = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    assert!(response.starts_with("http/1.1 101"), "{response}");
    for expected in ["sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=", "upgrade: websocket", "connection: upgrade"]
    {
        assert!(response.lines().any(|l| l.trim() == expected), "no `{expected}` in {response}");
    }
    buf.drain(..end + 4);

    // Text frame, FIN, masked, 64-bit length of 2 MiB; then only a few payload bytes.
    let mut frame = vec![0x81, 0x80 | 127];
    frame.extend_from_slice(&(2u64 * 1024 * 1024).to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    frame.extend_from_slice(&[b'x'; 16]);
    tcp.write_all(&frame).await.expect("write frame");

    // The server's first frame is a close (unmasked, short payload) with code 1009.
    while buf.len() < 4 || buf.len() < 2 + usize::from(buf[1] & 0x7f) {
        let n = tokio::time::timeout(WS_TIMEOUT, tcp.read(&mut chunk)).await.expect("close in time").expect("read");
        assert!(n > 0, "connection ended without a close frame: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(buf[0], 0x88, "expected a close frame first: {buf:?}");
    assert_eq!(u16::from_be_bytes([buf[2], buf[3]]), 1009, "close code: {buf:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_then_live_without_gap_or_duplicate() {
    let server = shared();
    let api = server.api();
    let (a, b, cid) = api.friends("cu").await;
    const BEFORE: usize = 30;
    const DURING: usize = 30;
    for i in 0..BEFORE {
        let from = if i % 2 == 0 { &a } else { &b };
        api.send(from, &cid, &format!("before {i}")).await;
    }

    let mut ws = ws_connect(server, &a.token).await;
    send_json(&mut ws, &json!({"type": "sync", "since": 0})).await;
    // Meanwhile b keeps sending (and a reads now and then, over HTTP).
    let sender = {
        let (api, a, b, cid) = (api.clone(), a.clone(), b.clone(), cid.clone());
        tokio::spawn(async move {
            for i in 0..DURING {
                api.send(&b, &cid, &format!("during {i}")).await;
                if i % 7 == 0 {
                    api.read(&a.token, &cid, 1000).await.write(200);
                }
            }
        })
    };

    let mut got: Vec<Value> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut sender = Some(sender);
    let mut target: Option<u64> = None;
    for _ in 0..100_000 {
        if let Some(t) = target {
            if got.last().map(|u| as_u64(&u["cursor"], "c")) >= Some(t) {
                break;
            }
        }
        assert!(Instant::now() < deadline, "WebSocket did not deliver everything in time: {} updates", got.len());
        if let Some(h) = sender.as_ref() {
            if h.is_finished() {
                sender.take().unwrap().await.expect("sender task");
                let (http, _) = api.sync_all(&a.token, 0, None).await;
                target = Some(as_u64(&http.last().unwrap()["cursor"], "cursor"));
            }
        }
        match next_frame(&mut ws, Duration::from_millis(500)).await {
            Frame::Json(f) if f["type"] == json!("updates") => got.extend(updates_of(&f)),
            Frame::Json(f) => panic!("unexpected frame {f}"),
            Frame::Timeout => continue,
            other => panic!("socket ended: {other:?}"),
        }
    }
    check_updates(&got, 0); // strictly ascending: no duplicate
    let (http, _) = api.sync_all(&a.token, 0, None).await;
    assert_eq!(cursors(&got), cursors(&http), "WebSocket and HTTP sync disagree on the cursors");
    assert_eq!(got, http, "WebSocket and HTTP sync disagree on the updates");
    assert_eq!(of_type(&got, "message").len(), BEFORE + DURING);

    // Live frames keep coming for new writes.
    let (m, c) = api.send(&b, &cid, "live").await;
    let f = next_of_type(&mut ws, "updates", WS_TIMEOUT).await;
    let ups = updates_of(&f);
    assert_eq!(ups.len(), 1, "{f}");
    assert_eq!(ups[0]["cursor"], json!(c));
    assert_eq!(ups[0]["message"], m);
}

#[tokio::test]
async fn sync_from_a_cursor_over_ws() {
    let server = shared();
    let api = server.api();
    let (a, b, cid) = api.friends("wsc").await;
    for i in 0..5 {
        api.send(&b, &cid, &format!("{i}")).await;
    }
    let (all, end) = api.sync_all(&a.token, 0, None).await;
    let mid = as_u64(&all[2]["cursor"], "cursor");
    let mut ws = ws_connect(server, &a.token).await;
    let (ups, cursor) = ws_catch_up(&mut ws, mid).await;
    assert_eq!(&ups[..], &all[3..]);
    assert!(cursor >= as_u64(&all.last().unwrap()["cursor"], "cursor"));
    // Caught up from the end: nothing.
    let mut ws2 = ws_connect(server, &a.token).await;
    let (ups, _) = ws_catch_up(&mut ws2, end).await;
    assert!(ups.is_empty(), "{ups:?}");
}

#[tokio::test]
async fn revoked_session_socket_closes_with_4001() {
    let server = shared();
    let api = server.api();
    let u = api.user("wsrv").await;
    let other = api.login_session(&u.id, &u.password, Some("other")).await;

    let mut ws = ws_connect(server, &u.token).await;
    ws_catch_up(&mut ws, 0).await;
    let mut ws_other = ws_connect(server, &other.token).await;
    ws_catch_up(&mut ws_other, 0).await;

    api.delete(&format!("/v1/sessions/{}", u.session_id), Some(&other.token)).await.write(204);
    let (code, _) = read_until_close(&mut ws, WS_TIMEOUT).await;
    assert_eq!(code, Some(4001), "revoked session's socket");

    // The surviving device's socket stays open and is told about the revocation.
    let f = next_of_type(&mut ws_other, "updates", WS_TIMEOUT).await;
    let ups = updates_of(&f);
    assert_eq!(ups.len(), 1, "{f}");
    assert_eq!(ups[0]["type"], json!("session_revoked"));
    assert_eq!(ups[0]["session_id"], json!(u.session_id));

    // Logging out closes one's own sockets the same way.
    api.delete("/v1/sessions/current", Some(&other.token)).await.write(204);
    let (code, _) = read_until_close(&mut ws_other, WS_TIMEOUT).await;
    assert_eq!(code, Some(4001), "logged-out session's socket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_closed_with_1013_and_resumes_losing_nothing() {
    let server = TestServer::start_with(&["--rate-limit-per-user", "0", "--ws-queue", "8"]);
    let api = server.api();
    let (a, b, cid) = api.friends("slow").await;
    let mut ws = ws_connect(&server, &a.token).await;
    let (_, start) = ws_catch_up(&mut ws, 0).await;

    // Do not read while b sends enough to overflow both the queue and the socket buffers.
    const N: u64 = 300;
    let body = "s".repeat(15_000);
    let mut handles = Vec::new();
    for t in 0..3u64 {
        let (api, b, cid, body) = (api.clone(), b.clone(), cid.clone(), body.clone());
        handles.push(tokio::spawn(async move {
            for i in 0..N / 3 {
                api.send(&b, &cid, &format!("{t}:{i}:{body}")).await;
            }
        }));
    }
    for h in handles {
        tokio::time::timeout(Duration::from_secs(120), h).await.expect("sends bounded").expect("sender task");
    }

    // Now read: some updates, then the 1013 close.
    let (code, frames) = read_until_close(&mut ws, Duration::from_secs(30)).await;
    assert_eq!(code, Some(1013), "slow consumer close code (after {} frames)", frames.len());
    let mut first: Vec<Value> = Vec::new();
    let mut last_cursor = start;
    for f in &frames {
        if f["type"] == json!("updates") {
            first.extend(updates_of(f));
            last_cursor = last_cursor.max(as_u64(&f["cursor"], "cursor"));
        }
    }
    check_updates(&first, start);

    // Reconnect and resume from the last cursor received.
    let mut ws2 = ws_connect(&server, &a.token).await;
    let (second, _) = ws_catch_up(&mut ws2, last_cursor).await;
    let mut all = first.clone();
    all.extend(second);
    check_updates(&all, start); // ascending, no duplicate across the two sockets
    let mut seqs: BTreeMap<u64, usize> = BTreeMap::new();
    for u in of_type(&all, "message") {
        *seqs.entry(as_u64(&u["message"]["seq"], "seq")).or_default() += 1;
    }
    assert_eq!(seqs.len() as u64, N, "every message arrives");
    assert!(seqs.values().all(|n| *n == 1), "no message twice");
    assert_eq!(seqs.keys().copied().collect::<Vec<_>>(), (1..=N).collect::<Vec<_>>());
    let (http, _) = api.sync_all(&a.token, start, Some(1000)).await;
    assert_eq!(cursors(&all), cursors(&http));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reading_client_catches_up_through_a_small_queue() {
    // Four catch-up frames (500 updates each) through a queue of two: the catch-up waits for
    // the writer instead of overflowing, and the client is not closed.
    let server = TestServer::start_with(&["--rate-limit-per-user", "0", "--ws-queue", "2"]);
    let api = server.api();
    let (a, b, cid) = api.friends("bigcu").await;
    const N: u64 = 1600;
    let mut handles = Vec::new();
    for t in 0..8u64 {
        let (api, b, cid) = (api.clone(), b.clone(), cid.clone());
        handles.push(tokio::spawn(async move {
            for i in 0..N / 8 {
                api.send(&b, &cid, &format!("{t}:{i} \"quoted\" \\ é")).await;
            }
        }));
    }
    for h in handles {
        tokio::time::timeout(Duration::from_secs(120), h).await.expect("sends bounded").expect("sender task");
    }

    let mut ws = ws_connect(&server, &a.token).await;
    let (ups, cursor) = ws_catch_up(&mut ws, 0).await;
    assert_eq!(of_type(&ups, "message").len() as u64, N, "every message arrives");
    // The same updates as HTTP sync, value for value.
    let (http, http_cursor) = api.sync_all(&a.token, 0, Some(1000)).await;
    assert_eq!(ups, http);
    assert_eq!(cursor, http_cursor);
    // Still open and serving.
    send_json(&mut ws, &json!({"type": "ping"})).await;
    next_of_type(&mut ws, "pong", WS_TIMEOUT).await;
}
