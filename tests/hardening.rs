//! Issue 11, hardening: what an unauthenticated client on the network can make a node hold
//! (raft bodies, slow or idle connections, connections per address, `min_cursor` waits), the
//! headers and content type that stop browsers misusing answers and forms, and the data dir's
//! permissions; what oversized login input costs the node's memory, whom a failed-login lockout
//! locks out, and the per-source-IP limits. Each test starts its own `parley serve` when it
//! needs particular flags.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The server's resident memory in KiB (`VmRSS` of /proc/<pid>/status).
fn rss_kb(server: &TestServer) -> u64 {
    let pid = server.pid().expect("server running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc status")
}

/// Reads one HTTP response head (and what follows in the same reads) within `within`; `None` if
/// the server closed the connection first, panics if it neither answered nor closed in time.
async fn read_head(rd: &mut (impl AsyncReadExt + Unpin), within: Duration) -> Option<(u16, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let n = match tokio::time::timeout_at(deadline, rd.read(&mut chunk)).await {
            Err(_) => panic!("neither an answer nor a close within {within:?}: {:?}", String::from_utf8_lossy(&buf)),
            Ok(Err(_)) | Ok(Ok(0)) => return None,
            Ok(Ok(n)) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            // Give the body (small JSON) a moment to arrive with it.
            if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(200), rd.read(&mut chunk)).await {
                buf.extend_from_slice(&chunk[..n]);
            }
            let text = String::from_utf8_lossy(&buf).to_string();
            let status = text[..end].split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status line");
            return Some((status, text));
        }
    }
}

/// The JSON body at the end of a response text.
fn body_json(text: &str) -> Value {
    text.split_once("\r\n\r\n").and_then(|(_, b)| serde_json::from_str(b.trim()).ok()).unwrap_or(Value::Null)
}

/// Declares `total` bytes for `path` and streams zeros while reading the answer; returns the
/// answer and how many bytes had been sent when it arrived.
async fn post_huge(addr: SocketAddr, path: &str, extra_headers: &str, total: u64) -> (u16, Value, u64, Duration) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/octet-stream\r\n{extra_headers}content-length: {total}\r\n\r\n"
    );
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let writer = tokio::spawn(async move {
        if wr.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let zeros = vec![0u8; 1 << 20];
        let mut left = total;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            if wr.write_all(&zeros[..n]).await.is_err() {
                return;
            }
            left -= n as u64;
            counter.fetch_add(n as u64, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let started = Instant::now();
    let answer = read_head(&mut rd, Duration::from_secs(60)).await;
    let elapsed = started.elapsed();
    let sent_then = sent.load(Ordering::Relaxed);
    writer.abort();
    let (status, text) = answer.unwrap_or_else(|| panic!("POST {path}: closed without an answer"));
    (status, body_json(&text), sent_then, elapsed)
}

#[tokio::test]
async fn unsigned_raft_bodies_are_refused_before_they_are_read() {
    // A single node: no cluster secret, so no raft request can ever be valid here.
    let server = TestServer::start();
    server.api().ready().await;
    const TOTAL: u64 = 300_000_000;
    let before = rss_kb(&server);
    let senders: Vec<_> = ["/raft/vote", "/raft/append", "/raft/write"]
        .into_iter()
        .map(|path| tokio::spawn(post_huge(server.addr, path, "", TOTAL)))
        .collect();
    for (i, s) in senders.into_iter().enumerate() {
        let (status, body, sent, elapsed) = s.await.expect("sender task");
        assert_eq!(status, 401, "sender {i}: {body}");
        assert_eq!(body["error"]["code"], json!("unauthorized"), "{body}");
        assert!(sent < TOTAL / 2, "sender {i}: the answer came only after {sent} of {TOTAL} bytes");
        assert!(elapsed < Duration::from_secs(5), "sender {i}: answered after {elapsed:?}");
    }
    let after = rss_kb(&server);
    assert!(
        after < before + 64 * 1024,
        "RSS grew from {before} KiB to {after} KiB while refusing unsigned 300 MB bodies"
    );
    // A signature header without a cluster secret is refused the same way.
    let (status, body, _, _) = post_huge(server.addr, "/raft/vote", "parley-raft-auth: 00\r\n", TOTAL).await;
    assert_eq!(status, 401, "{body}");
    server.api().get("/healthz", None).await.ok(200);
}

/// Envelope header lines that pass every check made before the body is read (well formed,
/// addressed to node 1, fresh) but carry a MAC under another secret: what an outsider who
/// knows the format can send, and what must still cost the node no more than the RPC's cap.
fn forged_envelope(path: &str) -> String {
    let signed = parley_raft::envelope::sign(b"not the cluster secret", 2, Some(1), "POST", path, b"");
    signed.headers().iter().map(|(name, value)| format!("{name}: {value}\r\n")).collect()
}

#[tokio::test]
async fn signed_raft_bodies_over_their_rpc_cap_are_refused_at_once() {
    let server = TestServer::start_with(&["--cluster-secret", "hardening-secret"]);
    server.api().ready().await;
    let before = rss_kb(&server);
    // Declared lengths over each RPC's cap: refused from the header alone, nothing buffered.
    for (path, len) in [("/raft/vote", 100u64 << 20), ("/raft/append", 100 << 20), ("/raft/journal", 100 << 20)] {
        let (status, body, sent, elapsed) = post_huge(server.addr, path, &forged_envelope(path), len).await;
        assert_eq!(status, 413, "{path} declaring {len} bytes: {body}");
        assert_eq!(body["error"]["code"], json!("payload_too_large"), "{body}");
        assert!(sent < len, "{path}: answered only after the whole body");
        assert!(elapsed < Duration::from_secs(2), "{path}: answered after {elapsed:?}");
    }
    // A MAC header without the rest of the envelope (the old body-only scheme), or an envelope
    // whose timestamp is outside the window, is refused before a byte of the body is read.
    let forged = forged_envelope("/raft/append");
    let ts_line = forged.lines().find(|l| l.starts_with("Parley-Raft-Ts: ")).expect("a timestamp header");
    let old_ts = forged.replace(ts_line, "Parley-Raft-Ts: 1000");
    for (what, headers) in [("a body-only MAC", "parley-raft-auth: 00\r\n".to_string()), ("a stale envelope", old_ts)] {
        let (status, body, sent, elapsed) = post_huge(server.addr, "/raft/append", &headers, 100 << 20).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert!(sent < 100 << 20, "{what}: answered only after the whole body");
        assert!(elapsed < Duration::from_secs(2), "{what}: answered after {elapsed:?}");
    }
    // A chunked body (no declared length) is cut off at the cap while streaming.
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        let envelope = forged_envelope("/raft/vote");
        let head = format!("POST /raft/vote HTTP/1.1\r\nhost: x\r\n{envelope}transfer-encoding: chunked\r\n\r\n");
        wr.write_all(head.as_bytes()).await.ok()?;
        let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "z".repeat(64 * 1024));
        for _ in 0..1000 {
            wr.write_all(chunk.as_bytes()).await.ok()?;
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
        Some(())
    });
    let (status, text) = read_head(&mut rd, Duration::from_secs(5)).await.expect("an answer to the chunked body");
    writer.abort();
    assert_eq!(status, 413, "{text}");
    let after = rss_kb(&server);
    assert!(after < before + 32 * 1024, "RSS grew from {before} KiB to {after} KiB");
}

#[tokio::test]
async fn slowloris_connections_are_closed_at_the_header_timeout() {
    let server = TestServer::start_with(&["--header-timeout-secs", "1", "--max-conns-per-ip", "0"]);
    server.api().ready().await;
    let mut conns = Vec::new();
    for _ in 0..50 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: ").await.unwrap();
        conns.push(s);
    }
    // An idle connection that sent nothing at all is closed too.
    conns.push(TcpStream::connect(server.addr).await.unwrap());
    let started = Instant::now();
    for (i, mut s) in conns.into_iter().enumerate() {
        let mut buf = [0u8; 1024];
        // hyper may answer 408 before closing; either way the connection ends.
        loop {
            match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
                Err(_) => panic!("connection {i} still open {:?} after its partial header", started.elapsed()),
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(_)) => continue,
            }
        }
    }
    assert!(started.elapsed() < Duration::from_secs(5), "closed after {:?}", started.elapsed());
    server.api().get("/healthz", None).await.ok(200);
}

/// Sends `GET /healthz` on `s` (keep-alive) and reads the status; `None` if the server closed.
async fn healthz(s: &mut TcpStream) -> Option<u16> {
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.ok()?;
    read_head(s, Duration::from_secs(5)).await.map(|(status, _)| status)
}

#[tokio::test]
async fn connections_past_the_per_ip_cap_are_closed_at_accept() {
    let server = TestServer::start_with(&["--max-conns-per-ip", "20", "--rate-limit-per-user", "0"]);
    let token = {
        let api = server.api();
        api.ready().await;
        api.user("capped").await.token
        // The client and its pooled connections go here.
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // 20 held open: 5 WebSockets (they count too) and 15 keep-alive HTTP connections.
    let mut sockets = Vec::new();
    for _ in 0..5 {
        sockets.push(ws_connect(&server, &token).await);
    }
    let mut held = Vec::new();
    for i in 0..15 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        assert_eq!(healthz(&mut s).await, Some(200), "connection {i} within the cap");
        held.push(s);
    }
    let mut extra = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(healthz(&mut extra).await, None, "the 21st connection was served");
    drop(extra);
    drop(held);
    drop(sockets);
    // Once they are closed, new connections are accepted again.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        if healthz(&mut s).await == Some(200) {
            break;
        }
        assert!(Instant::now() < deadline, "still refused after the held connections closed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn min_cursor_waits_only_after_authentication() {
    let api = shared().api();
    for path in ["/v1/me", "/v1/sync", "/v1/conversations", "/v1/friends", "/v1/groups"] {
        let started = Instant::now();
        let r = api.get(&format!("{path}?min_cursor=999999999"), None).await;
        r.err(401, "unauthorized");
        assert!(started.elapsed() < Duration::from_secs(1), "{path}: 401 after {:?}", started.elapsed());
    }
    // Authenticated, the wait still applies (503 after up to 5 s, as the contract says).
    let u = api.user("gate").await;
    api.get("/v1/me?min_cursor=999999999", Some(&u.token)).await.err(503, "unavailable");
}

#[tokio::test]
async fn answers_carry_nosniff_and_no_store() {
    let api = shared().api();
    let u = api.user("hdr").await;
    let login = api.login_raw(&u.id, &u.password, None).await;
    login.ok(201);
    let error = api.get("/v1/me", None).await;
    let health = api.get("/healthz", None).await;
    for (what, r) in [("login", &login), ("an error", &error), ("/healthz", &health)] {
        let h = |name: &str| r.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        assert_eq!(h("x-content-type-options"), "nosniff", "{what}");
        assert_eq!(h("cache-control"), "no-store", "{what}");
    }
}

#[tokio::test]
async fn json_routes_refuse_bodies_not_sent_as_json() {
    let server = shared();
    let api = server.api();
    let u = api.user("ctype").await;
    let http = reqwest::Client::new();
    let login = serde_json::to_vec(&json!({"user_id": u.id, "password": u.password})).unwrap();
    let url = format!("{}/v1/sessions", server.base_url());
    for ctype in [Some("text/plain"), Some("application/x-www-form-urlencoded"), None] {
        let mut req = http.post(&url).body(login.clone());
        if let Some(t) = ctype {
            req = req.header("content-type", t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let b: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 415, "login sent as {ctype:?}: {b}");
        assert_eq!(b["error"]["code"], json!("invalid_request"), "{b}");
    }
    let resp =
        http.post(&url).header("content-type", "application/json; charset=utf-8").body(login).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 201, "a JSON login with a charset is served");
}

#[tokio::test]
async fn the_data_dir_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let server = TestServer::start();
    let api = server.api();
    api.ready().await;
    // Some writes, so that sled has created (and rotated) its files.
    api.user("modes").await;
    let mut seen = 0;
    let mut stack = vec![server.data_dir().to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        if meta.is_dir() {
            assert_eq!(mode, 0o700, "{} is {mode:o}", path.display());
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            assert_eq!(mode, 0o600, "{} is {mode:o}", path.display());
            seen += 1;
        }
    }
    assert!(seen >= 4, "expected the dbs' files and jwt.secret, saw {seen} files");
}

#[tokio::test]
async fn a_stalled_body_is_answered_408_at_the_body_timeout() {
    let server = TestServer::start_with(&["--body-timeout-secs", "1"]);
    server.api().ready().await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let head = "POST /v1/users HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"user_id\"";
    s.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let (status, text) = read_head(&mut s, Duration::from_secs(5)).await.expect("an answer, not a silent close");
    assert_eq!(status, 408, "{text}");
    assert_eq!(body_json(&text)["error"]["code"], json!("invalid_request"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(3), "answered after {:?}", started.elapsed());
}

/// A 4-byte `/raft/{rpc}` body with a (wrong) signature header: the answer.
async fn signed_garbage(addr: SocketAddr, rpc: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let envelope = forged_envelope(&format!("/raft/{rpc}"));
    let req = format!("POST /raft/{rpc} HTTP/1.1\r\nhost: x\r\n{envelope}content-length: 4\r\n\r\nabcd");
    s.write_all(req.as_bytes()).await.unwrap();
    read_head(&mut s, Duration::from_secs(2)).await.expect("an answer")
}

#[tokio::test]
async fn journal_pages_have_their_own_bound_and_never_starve_votes() {
    let server = TestServer::start_with(&["--cluster-secret", "hardening-secret"]);
    server.api().ready().await;
    // Journal requests that declare a small body and never send it each hold a permit (until
    // the raft body timeout); past the journal pool the next is refused at once.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        let envelope = forged_envelope("/raft/journal");
        let head = format!("POST /raft/journal HTTP/1.1\r\nhost: x\r\n{envelope}content-length: 100\r\n\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, text) = signed_garbage(server.addr, "journal").await;
    assert_eq!(status, 503, "{text}");
    assert!(text.to_ascii_lowercase().contains("retry-after: "), "{text}");
    assert_eq!(body_json(&text)["error"]["code"], json!("unavailable"), "{text}");
    // A vote still gets a permit: it is read and its (bad) signature checked.
    let (status, text) = signed_garbage(server.addr, "vote").await;
    assert_eq!(status, 401, "{text}");
    drop(held);
}

fn source(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

#[tokio::test]
async fn oversized_login_attempts_are_refused_and_leave_no_memory_behind() {
    let server = TestServer::start();
    let api = server.api();
    // ~1 MiB user ids and a password past the limit: each was remembered by the failed-login
    // table for good (200 of them grew the node by 200 MB).
    let attempt = |i: usize| {
        let body = json!({"user_id": format!("{i}{}", "x".repeat(1_040_000)), "password": "p".repeat(1025)});
        let api = api.clone();
        async move { api.post("/v1/sessions", None, body).await }
    };
    let mut answers = Vec::new();
    for i in 0..20 {
        answers.push(attempt(i).await);
    }
    let before = rss_kb(&server);
    for i in 20..220 {
        answers.push(attempt(i).await);
    }
    let grown_mib = rss_kb(&server).saturating_sub(before) / 1024;
    assert!(grown_mib <= 16, "200 oversized logins grew the server by {grown_mib} MiB");
    // Each was refused as malformed: no account has such an id.
    for r in &answers {
        r.err(400, "invalid_request");
    }
    // A normal login still works.
    let id = uid("mem");
    api.register(&id, "the right one").await;
    api.login(&id, "the right one").await;
}

#[tokio::test]
async fn a_password_guesser_locks_out_only_their_own_address() {
    let server = shared_with(&["--login-rate-limit", "3"]);
    let owner = Api::from_source(&server.base_url(), source(1));
    let guesser = Api::from_source(&server.base_url(), source(77));
    let id = uid("lock");
    owner.register(&id, "the right one").await;
    for _ in 0..3 {
        guesser.login_raw(&id, "a wrong guess", None).await.err(401, "invalid_credentials");
    }
    let r = guesser.login_raw(&id, "the right one", None).await;
    r.err(429, "rate_limited");
    assert!(r.headers.contains_key("retry-after"), "429 without Retry-After");
    // The account's owner, from their own address, is not locked out.
    owner.login(&id, "the right one").await;
}

#[tokio::test]
async fn per_source_limits_answer_429_with_retry_after() {
    let server = TestServer::start_with(&[
        "--login-rate-limit",
        "0",
        "--login-rate-limit-per-ip",
        "4",
        "--register-rate-limit-per-ip",
        "2",
        "--admin-rate-limit-per-ip",
        "3",
    ]);
    let here = Api::from_source(&server.base_url(), source(5));
    let there = Api::from_source(&server.base_url(), source(6));
    let retry_after = |r: &Resp| -> u64 {
        let v = r.headers.get("retry-after").unwrap_or_else(|| panic!("429 without Retry-After: {r:?}"));
        v.to_str().ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("Retry-After not seconds: {v:?}"))
    };

    // Registrations.
    let id = uid("ipl");
    here.register(&id, "the right one").await;
    here.register(&uid("ipl"), "the right one").await;
    let r = here.register_raw(&uid("ipl"), "the right one", None).await;
    r.err(429, "rate_limited");
    assert!((1..=60).contains(&retry_after(&r)));
    there.register(&uid("ipl"), "the right one").await;

    // Logins, right or wrong.
    here.login(&id, "the right one").await;
    for _ in 0..3 {
        here.login_raw(&id, "a wrong one", None).await.err(401, "invalid_credentials");
    }
    let r = here.login_raw(&id, "the right one", None).await;
    r.err(429, "rate_limited");
    assert!((1..=60).contains(&retry_after(&r)));
    there.login(&id, "the right one").await;

    // Admin-token guesses: past the limit even the right token waits.
    for _ in 0..3 {
        here.get("/v1/admin/journal", Some("a guess")).await.err(401, "unauthorized");
    }
    let r = here.get("/v1/admin/journal", Some(&server.admin_token)).await;
    r.err(429, "rate_limited");
    assert!(retry_after(&r) >= 1);
    there.get("/v1/admin/journal", Some(&server.admin_token)).await.ok(200);
}

/// A write without a valid token is answered 401 before its body is read: a caller who is
/// nobody cannot make the node wait for (or buffer) a body. With a body that never arrives,
/// the answer comes at once, not at the body timeout.
#[tokio::test]
async fn writes_are_authenticated_before_their_body_is_read() {
    let server = TestServer::start_with(&["--body-timeout-secs", "30"]);
    server.api().ready().await;
    let cases = [
        ("POST /v1/friends/requests", ""),
        ("POST /v1/conversations/d:aaa:bbb/messages", "authorization: Bearer not-a-token\r\n"),
        ("POST /v1/groups", ""),
        ("POST /v1/admin/users", "authorization: Bearer wrong-admin\r\n"),
        ("POST /v1/admin/cluster/learners", ""),
    ];
    for (line, auth) in cases {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        let head = format!(
            "{line} HTTP/1.1\r\nhost: x\r\n{auth}content-type: application/json\r\ncontent-length: 100000\r\n\r\n{{\"to\""
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let started = Instant::now();
        let (status, text) = read_head(&mut s, Duration::from_secs(5)).await.expect("an answer before the body");
        assert_eq!(status, 401, "{line}: {text}");
        assert!(started.elapsed() < Duration::from_secs(3), "{line}: answered after {:?}", started.elapsed());
    }
}
