//! The load generator's client side: targets, the HTTP calls a scenario needs (register, login,
//! befriend, groups, send, history), and WebSocket connections.
//!
//! Everything here speaks the public contract (`shared/API.md`) over the network, exactly as
//! any other client would: the bench links against no server crate.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;

/// Every bench user's password (the server hashes it with argon2id once per registration).
pub const PASSWORD: &str = "parley-bench-password";
/// Longest one HTTP request may take before it counts as an error.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// How many registrations/logins run at once during setup (each costs an argon2id hash on the
/// server, which runs them on a bounded pool anyway).
pub const SETUP_CONCURRENCY: usize = 8;

pub type Ws = WebSocketStream<TcpStream>;

/// One node under test.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://host:port`, no trailing slash.
    pub base: String,
    /// `host:port`.
    pub authority: String,
    pub addr: SocketAddr,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, String> {
        let url = url.trim().trim_end_matches('/');
        let authority = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("target {url:?} must be an http:// URL (no TLS: bench a node directly)"))?;
        if authority.is_empty() || authority.contains('/') {
            return Err(format!("target {url:?} must be http://host:port"));
        }
        let with_port = if authority.contains(':') { authority.to_owned() } else { format!("{authority}:80") };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {authority}: {e}"))?
            .next()
            .ok_or_else(|| format!("{authority} resolves to nothing"))?;
        Ok(Target { base: url.to_owned(), authority: with_port, addr })
    }

    pub fn is_local(&self) -> bool {
        self.addr.ip().is_loopback()
    }
}

/// A logged-in bench user.
#[derive(Debug, Clone)]
pub struct User {
    pub user_id: String,
    pub token: String,
}

/// A message the server answered for: where it is, and whether this request stored it.
#[derive(Debug, Clone, Copy)]
pub struct Stored {
    pub seq: u64,
    pub cursor: u64,
    /// `201`: stored by this request; `200`: the server already had this `client_msg_id`.
    pub created: bool,
}

impl Stored {
    /// `(seq, cursor)` of a `201`; a `200` is the [`REPEAT`] error. For callers that sent a
    /// fresh `client_msg_id`: to them a `200` is not a send.
    pub fn created(self, cmid: &str) -> Result<(u64, u64), HttpError> {
        if self.created {
            Ok((self.seq, self.cursor))
        } else {
            Err(repeat_error(cmid))
        }
    }
}

/// The error code a `200` answer to a fresh `client_msg_id` is counted under.
pub const REPEAT: &str = "repeat_200";

/// A `200` to a send that should have stored a new message.
pub fn repeat_error(cmid: &str) -> HttpError {
    HttpError { code: REPEAT.into(), message: format!("{cmid}: answered 200 (already stored), not 201") }
}

/// Messages per history page (the server's maximum).
pub const HISTORY_PAGE: usize = 500;

/// An HTTP failure, classified for the error table.
#[derive(Debug, Clone)]
pub struct HttpError {
    /// The contract's error code, `http_<status>` when the body had none, or a transport
    /// failure (`timeout`, `connect`, `io`).
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl From<HttpError> for String {
    fn from(e: HttpError) -> String {
        e.to_string()
    }
}

fn transport(e: reqwest::Error) -> HttpError {
    let code = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "io"
    };
    HttpError { code: code.into(), message: e.to_string() }
}

/// A reqwest client with the bench's defaults: HTTP/1.1 keep-alive, no proxy, Nagle off.
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
}

impl Http {
    pub fn new() -> Result<Http, String> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .tcp_nodelay(true)
            .timeout(HTTP_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Http { client })
    }

    /// Sends a request and returns the status with the JSON body (`Null` when empty).
    async fn call(
        &self,
        method: reqwest::Method,
        url: String,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<(u16, Value), HttpError> {
        let mut rb = self.client.request(method, url);
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = body {
            rb = rb.header("content-type", "application/json").body(b.to_string());
        }
        let resp = rb.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(transport)?;
        let value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
        Ok((status, value))
    }

    /// A call that must answer 2xx; anything else becomes an [`HttpError`] with the contract's
    /// error code.
    pub async fn ok(
        &self,
        method: reqwest::Method,
        url: String,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<(u16, Value), HttpError> {
        let (status, v) = self.call(method, url, token, body).await?;
        if (200..300).contains(&status) {
            return Ok((status, v));
        }
        let code = v["error"]["code"].as_str().map(str::to_owned).unwrap_or_else(|| format!("http_{status}"));
        let message = v["error"]["message"].as_str().unwrap_or("").to_owned();
        Err(HttpError { code, message })
    }

    pub async fn register(&self, t: &Target, user_id: &str) -> Result<(), HttpError> {
        let body = json!({"user_id": user_id, "password": PASSWORD});
        self.ok(reqwest::Method::POST, format!("{}/v1/users", t.base), None, Some(&body)).await.map(|_| ())
    }

    pub async fn login(&self, t: &Target, user_id: &str) -> Result<User, HttpError> {
        let body = json!({"user_id": user_id, "password": PASSWORD, "device": "parley-bench"});
        let (_, v) = self.ok(reqwest::Method::POST, format!("{}/v1/sessions", t.base), None, Some(&body)).await?;
        let token = v["token"]
            .as_str()
            .ok_or_else(|| HttpError { code: "bad_reply".into(), message: "login answered no token".into() })?;
        Ok(User { user_id: user_id.to_owned(), token: token.to_owned() })
    }

    /// Makes `a` and `b` friends: `a` asks, `b` accepts.
    pub async fn befriend(&self, t: &Target, a: &User, b: &User) -> Result<(), HttpError> {
        let body = json!({"to": b.user_id});
        self.ok(reqwest::Method::POST, format!("{}/v1/friends/requests", t.base), Some(&a.token), Some(&body)).await?;
        let url = format!("{}/v1/friends/requests/{}/accept", t.base, a.user_id);
        self.ok(reqwest::Method::POST, url, Some(&b.token), None).await.map(|_| ())
    }

    /// Creates a group owned by `owner`; returns its conversation id.
    pub async fn create_group(
        &self,
        t: &Target,
        owner: &User,
        name: &str,
        members: &[String],
    ) -> Result<String, HttpError> {
        let body = json!({"name": name, "members": members});
        let (_, v) =
            self.ok(reqwest::Method::POST, format!("{}/v1/groups", t.base), Some(&owner.token), Some(&body)).await?;
        v["conversation_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| HttpError { code: "bad_reply".into(), message: "group answered no conversation_id".into() })
    }

    /// Sends a message and says whether it was stored anew (`201`) or was an idempotent repeat
    /// of a `client_msg_id` the server already had (`200`).
    pub async fn send(&self, t: &Target, user: &User, cid: &str, cmid: &str, body: &str) -> Result<Stored, HttpError> {
        let payload = json!({"client_msg_id": cmid, "body": body});
        let url = format!("{}/v1/conversations/{cid}/messages", t.base);
        let (status, v) = self.ok(reqwest::Method::POST, url, Some(&user.token), Some(&payload)).await?;
        match (v["message"]["seq"].as_u64(), v["cursor"].as_u64()) {
            (Some(seq), Some(cursor)) => Ok(Stored { seq, cursor, created: status == 201 }),
            _ => Err(HttpError { code: "bad_reply".into(), message: format!("send answered {status} {v}") }),
        }
    }

    /// One page of a conversation's history after `after_seq`, as `(seq, sender,
    /// client_msg_id)`, read after this node has applied `min_cursor`; with the conversation's
    /// `max_seq`. A page shorter than [`HISTORY_PAGE`] is the last.
    pub async fn history_page(
        &self,
        t: &Target,
        user: &User,
        cid: &str,
        after_seq: u64,
        min_cursor: u64,
    ) -> Result<(Vec<(u64, String, String)>, u64), HttpError> {
        let url = format!(
            "{}/v1/conversations/{cid}/messages?after_seq={after_seq}&limit={HISTORY_PAGE}&min_cursor={min_cursor}",
            t.base
        );
        let (_, v) = self.ok(reqwest::Method::GET, url, Some(&user.token), None).await?;
        let max_seq = v["max_seq"].as_u64().unwrap_or(0);
        let page = match &v["messages"] {
            Value::Array(a) => a
                .iter()
                .map(|m| {
                    (
                        m["seq"].as_u64().unwrap_or(0),
                        m["sender"].as_str().unwrap_or("").to_owned(),
                        m["client_msg_id"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect(),
            _ => Vec::new(),
        };
        Ok((page, max_seq))
    }

    /// `(cursor, leader_id, node_id)` of a node, from `GET /v1/cluster` (no auth).
    pub async fn cluster(&self, t: &Target) -> Result<(u64, Option<u64>, u64), HttpError> {
        let (_, v) = self.ok(reqwest::Method::GET, format!("{}/v1/cluster", t.base), None, None).await?;
        Ok((v["cursor"].as_u64().unwrap_or(0), v["leader_id"].as_u64(), v["node_id"].as_u64().unwrap_or(0)))
    }

    /// One page of `GET /v1/sync`: `(updates, cursor, more)`.
    pub async fn sync(
        &self,
        t: &Target,
        user: &User,
        since: u64,
        limit: u64,
    ) -> Result<(Vec<Value>, u64, bool), HttpError> {
        let url = format!("{}/v1/sync?since={since}&limit={limit}", t.base);
        let (_, v) = self.ok(reqwest::Method::GET, url, Some(&user.token), None).await?;
        let updates = match v["updates"] {
            Value::Array(ref a) => a.clone(),
            _ => Vec::new(),
        };
        Ok((updates, v["cursor"].as_u64().unwrap_or(since), v["more"].as_bool().unwrap_or(false)))
    }

    /// Waits until every target has applied `cursor` (sessions and friendships made on one node
    /// are then usable on all of them).
    pub async fn wait_applied(&self, targets: &[Target], cursor: u64) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        for t in targets {
            loop {
                match self.cluster(t).await {
                    Ok((c, _, _)) if c >= cursor => break,
                    _ if Instant::now() > deadline => {
                        return Err(format!("{} did not apply cursor {cursor} within 30 s", t.base))
                    }
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }
        Ok(())
    }

    /// The highest cursor any target has applied.
    pub async fn head(&self, targets: &[Target]) -> Result<u64, String> {
        let mut head = 0;
        for t in targets {
            head = head.max(self.cluster(t).await?.0);
        }
        Ok(head)
    }
}

/// Registers `ids` (spread over the targets), printing progress every few hundred.
pub async fn register_all(http: &Http, targets: &[Target], ids: &[String], label: &str) -> Result<(), String> {
    let done = Arc::new(AtomicU64::new(0));
    let total = ids.len();
    let started = Instant::now();
    let results: Vec<Result<(), String>> = futures_util::stream::iter(ids.iter().enumerate())
        .map(|(i, id)| {
            let (http, t, done) = (http.clone(), targets[i % targets.len()].clone(), done.clone());
            async move {
                http.register(&t, id).await.map_err(|e| format!("register {id}: {e}"))?;
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                if n % 500 == 0 && (n as usize) < total {
                    eprintln!("  {label}: registered {n}/{total} users ({:.0?})", started.elapsed());
                }
                Ok(())
            }
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>, String>>()?;
    eprintln!("  {label}: registered {total} users in {:.1?}", started.elapsed());
    Ok(())
}

/// Logs `ids` in (each on target `i % targets`), in order.
pub async fn login_all(http: &Http, targets: &[Target], ids: &[String]) -> Result<Vec<User>, String> {
    let started = Instant::now();
    let users: Vec<Result<User, String>> = futures_util::stream::iter(ids.iter().enumerate())
        .map(|(i, id)| {
            let (http, t) = (http.clone(), targets[i % targets.len()].clone());
            async move { http.login(&t, id).await.map_err(|e| format!("login {id}: {e}")) }
        })
        .buffered(SETUP_CONCURRENCY)
        .collect()
        .await;
    let users = users.into_iter().collect::<Result<Vec<User>, String>>()?;
    eprintln!("  logged in {} users in {:.1?}", users.len(), started.elapsed());
    Ok(users)
}

/// Befriends `(a, b)` pairs.
pub async fn befriend_all(http: &Http, targets: &[Target], pairs: &[(User, User)]) -> Result<(), String> {
    let results: Vec<Result<(), String>> =
        futures_util::stream::iter(pairs.iter().enumerate())
            .map(|(i, (a, b))| {
                let (http, t) = (http.clone(), targets[i % targets.len()].clone());
                async move {
                    http.befriend(&t, a, b).await.map_err(|e| format!("befriend {} {}: {e}", a.user_id, b.user_id))
                }
            })
            .buffer_unordered(SETUP_CONCURRENCY * 2)
            .collect()
            .await;
    results.into_iter().collect::<Result<Vec<()>, String>>().map(|_| ())
}

/// The direct conversation id of two users.
pub fn direct_id(a: &str, b: &str) -> String {
    if a < b {
        format!("d:{a}:{b}")
    } else {
        format!("d:{b}:{a}")
    }
}

/// Read buffer of the bench's sockets (tungstenite allocates it eagerly: 128 KiB by default).
pub const WS_READ_BUFFER: usize = 64 * 1024;
/// Read buffer of the idle sockets of the `connections` scenario (tens of thousands of them).
pub const WS_IDLE_READ_BUFFER: usize = 4 * 1024;

/// Opens an authenticated WebSocket to `t`.
pub async fn connect_ws(t: &Target, token: &str, source: Option<IpAddr>) -> Result<Ws, String> {
    connect_ws_with(t, token, source, WS_READ_BUFFER).await
}

/// Opens an authenticated WebSocket to `t`, optionally from a given local address (to use
/// more than one address's ephemeral ports), with a given read buffer.
pub async fn connect_ws_with(
    t: &Target,
    token: &str,
    source: Option<IpAddr>,
    read_buffer: usize,
) -> Result<Ws, String> {
    let socket =
        if t.addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(|e| format!("socket: {e}"))?;
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0)).map_err(|e| format!("bind {ip}: {e}"))?;
    }
    socket.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
    let stream = socket.connect(t.addr).await.map_err(|e| format!("connect {}: {e}", t.addr))?;
    let config = WebSocketConfig::default().read_buffer_size(read_buffer);
    let request = format!("ws://{}/v1/ws?token={token}", t.authority)
        .into_client_request()
        .map_err(|e| format!("bad websocket request: {e}"))?;
    let (ws, _) = tokio_tungstenite::client_async_with_config(request, stream, Some(config))
        .await
        .map_err(|e| format!("websocket handshake: {e}"))?;
    Ok(ws)
}

/// A message body of `n` bytes (ASCII).
pub fn body_of(n: usize) -> String {
    "x".repeat(n.max(1))
}

/// Message bodies that look like chat text to storage: words of a small vocabulary in a fixed
/// pseudo-random order, and a different slice of it for every message. A store that
/// compresses sees text as it compresses (not `xxxx`, which compresses to nothing), and no
/// two consecutive messages are equal.
#[derive(Debug)]
pub struct Bodies {
    text: String,
    len: usize,
}

const WORDS: &[&str] = &[
    "the", "a", "to", "and", "you", "I", "it", "is", "that", "of", "in", "we", "for", "on", "are", "be", "this",
    "with", "have", "can", "just", "so", "but", "not", "what", "at", "was", "do", "if", "me", "my", "your", "all",
    "about", "get", "will", "there", "ok", "yes", "no", "now", "time", "today", "tomorrow", "meeting", "lunch",
    "later", "see", "think", "know", "need", "want", "going", "call", "send", "file", "link", "thanks", "great",
    "sure", "maybe", "sorry", "late", "home", "work", "office", "team", "project", "update", "deploy", "review",
    "coffee", "weekend", "train", "flight", "hotel", "ticket", "photo", "video", "morning", "night", "good", "nice",
    "cool", "haha", "lol", "right", "left", "still", "again", "also", "really", "very", "much", "one", "two", "three",
    "minutes", "hours", "days", "back", "here", "where", "when", "why", "how", "who", "let's",
];

impl Bodies {
    /// Bodies of `len` bytes (at least 1).
    pub fn new(len: usize) -> Bodies {
        let len = len.max(1);
        let mut text = String::with_capacity(len + 65_536 + 16);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        while text.len() < len + 65_536 {
            // xorshift64: cheap and the same on every run.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            text.push_str(WORDS[(x % WORDS.len() as u64) as usize]);
            text.push(match x >> 58 {
                0 => '.',
                1 => ',',
                2 => '?',
                _ => ' ',
            });
        }
        Bodies { text, len }
    }

    /// The body of message number `n`.
    pub fn at(&self, n: u64) -> &str {
        let span = (self.text.len() - self.len) as u64;
        let start = (n.wrapping_mul(2_654_435_761) % span) as usize;
        &self.text[start..start + self.len]
    }
}

/// A run prefix for user ids: `b` + 6 random hex digits + `_` (user ids: `^[a-z0-9_]{3,32}$`).
pub fn run_prefix() -> String {
    format!("b{}_", &hex::encode(rand::random::<[u8; 4]>())[..6])
}
