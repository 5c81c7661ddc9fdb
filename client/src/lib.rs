//! The one Rust client of Parley's public contract (`shared/API.md`): a node [`Target`], typed
//! HTTP calls ([`Http`]) with the contract's error codes ([`HttpError`]), and WebSocket
//! connections ([`connect_ws`]).
//!
//! It speaks the contract over the network, exactly as any other client would, and links
//! against no server crate. `parley bench` drives load through it and `parley chat` (the
//! terminal client) is built on it.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;

/// Longest one HTTP request may take before it counts as an error.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
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
            .ok_or_else(|| format!("target {url:?} must be an http:// URL (no TLS: talk to a node directly)"))?;
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

/// A logged-in user: the token every call sends.
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

/// A reqwest client with defaults for talking to nodes: HTTP/1.1 keep-alive, no proxy, Nagle off.
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

    pub async fn register(&self, t: &Target, user_id: &str, password: &str) -> Result<(), HttpError> {
        let body = json!({"user_id": user_id, "password": password});
        self.ok(reqwest::Method::POST, format!("{}/v1/users", t.base), None, Some(&body)).await.map(|_| ())
    }

    /// Logs in; `device` names the session (`GET /v1/sessions` lists it).
    pub async fn login(&self, t: &Target, user_id: &str, password: &str, device: &str) -> Result<User, HttpError> {
        let body = json!({"user_id": user_id, "password": password, "device": device});
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

    /// `GET /v1/conversations`: the caller's conversations, newest activity first, and the
    /// journal cursor the list is as of (sync from it to miss nothing that comes after).
    pub async fn conversations(&self, t: &Target, user: &User) -> Result<(Vec<Value>, u64), HttpError> {
        let (_, v) =
            self.ok(reqwest::Method::GET, format!("{}/v1/conversations", t.base), Some(&user.token), None).await?;
        Ok((array(&v["conversations"]), v["cursor"].as_u64().unwrap_or(0)))
    }

    /// `GET /v1/conversations/{cid}/messages`: up to `limit` messages before `before_seq` (the
    /// newest when `None`), in ascending `seq`.
    pub async fn messages_before(
        &self,
        t: &Target,
        user: &User,
        cid: &str,
        before_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Value>, HttpError> {
        let before = before_seq.map(|b| format!("&before_seq={b}")).unwrap_or_default();
        let url = format!("{}/v1/conversations/{cid}/messages?limit={limit}{before}", t.base);
        let (_, v) = self.ok(reqwest::Method::GET, url, Some(&user.token), None).await?;
        Ok(array(&v["messages"]))
    }

    /// `POST /v1/conversations/{cid}/read`: `(read_seq, unread)`.
    pub async fn read(&self, t: &Target, user: &User, cid: &str, seq: u64) -> Result<(u64, u64), HttpError> {
        let url = format!("{}/v1/conversations/{cid}/read", t.base);
        let (_, v) = self.ok(reqwest::Method::POST, url, Some(&user.token), Some(&json!({"seq": seq}))).await?;
        Ok((v["read_seq"].as_u64().unwrap_or(0), v["unread"].as_u64().unwrap_or(0)))
    }

    /// `GET /v1/friends`: friends' user ids.
    pub async fn friends(&self, t: &Target, user: &User) -> Result<Vec<String>, HttpError> {
        let (_, v) = self.ok(reqwest::Method::GET, format!("{}/v1/friends", t.base), Some(&user.token), None).await?;
        Ok(array(&v["friends"]).iter().filter_map(|f| f["user_id"].as_str().map(str::to_owned)).collect())
    }

    /// `GET /v1/friends/requests`: `(incoming senders, outgoing addressees)`.
    pub async fn friend_requests(&self, t: &Target, user: &User) -> Result<(Vec<String>, Vec<String>), HttpError> {
        let url = format!("{}/v1/friends/requests", t.base);
        let (_, v) = self.ok(reqwest::Method::GET, url, Some(&user.token), None).await?;
        let ids = |k: &str, f: &str| -> Vec<String> {
            array(&v[k]).iter().filter_map(|r| r[f].as_str().map(str::to_owned)).collect()
        };
        Ok((ids("incoming", "from"), ids("outgoing", "to")))
    }

    /// `POST /v1/friends/requests`: asks `to` (befriends at once when they asked first).
    pub async fn request_friend(&self, t: &Target, user: &User, to: &str) -> Result<(), HttpError> {
        let url = format!("{}/v1/friends/requests", t.base);
        self.ok(reqwest::Method::POST, url, Some(&user.token), Some(&json!({"to": to}))).await.map(|_| ())
    }

    /// `POST /v1/friends/requests/{from}/accept`.
    pub async fn accept_friend(&self, t: &Target, user: &User, from: &str) -> Result<(), HttpError> {
        let url = format!("{}/v1/friends/requests/{from}/accept", t.base);
        self.ok(reqwest::Method::POST, url, Some(&user.token), None).await.map(|_| ())
    }

    /// `GET /v1/groups/{gid}`.
    pub async fn group(&self, t: &Target, user: &User, group_id: &str) -> Result<Value, HttpError> {
        let url = format!("{}/v1/groups/{group_id}", t.base);
        self.ok(reqwest::Method::GET, url, Some(&user.token), None).await.map(|(_, v)| v)
    }

    /// `POST /v1/groups/{gid}/members`.
    pub async fn add_members(&self, t: &Target, user: &User, group_id: &str, ids: &[String]) -> Result<(), HttpError> {
        let url = format!("{}/v1/groups/{group_id}/members", t.base);
        self.ok(reqwest::Method::POST, url, Some(&user.token), Some(&json!({"user_ids": ids}))).await.map(|_| ())
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

/// The direct conversation id of two users.
pub fn direct_id(a: &str, b: &str) -> String {
    if a < b {
        format!("d:{a}:{b}")
    } else {
        format!("d:{b}:{a}")
    }
}

/// Read buffer of a client socket (tungstenite allocates it eagerly: 128 KiB by default).
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

/// A JSON array's items (none when it is not one).
fn array(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        _ => Vec::new(),
    }
}
