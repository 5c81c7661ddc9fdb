//! The single-node part of the harness (see `support/mod.rs`).
//!
//! Every test talks to the real `parley` binary over HTTP and WebSocket on 127.0.0.1, against
//! the contract in `/work/shared/API.md`. Nothing here links against the server's crates.
//!
//! * [`TestServer`] spawns `parley serve` on a fresh data dir and port 0, waits for the single
//!   `listening on http://ADDR` line, and keeps draining the child's output so it never blocks.
//!   It is SIGKILLed on drop; [`TestServer::kill9`] and [`TestServer::restart`] serve the crash
//!   tests.
//! * [`shared`] hands out one server per test binary (per set of flags) for tests that do not
//!   interfere; it is killed and its data dir removed when the test process exits (and the
//!   kernel kills it should the test process die without running exit handlers).
//! * [`Api`] is a thin reqwest wrapper returning [`Resp`], with assertion helpers for the error
//!   envelope and the `Parley-Cursor` header.
//! * WebSocket helpers wrap tokio-tungstenite; every wait is bounded.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a server may take to print its `listening on` line.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Default bound for one HTTP request.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Default bound for waiting on one WebSocket frame.
pub const WS_TIMEOUT: Duration = Duration::from_secs(10);

/// Flags every test server gets unless the test overrides them: sends are not rate limited
/// (several tests send hundreds of messages as fast as they can).
pub const DEFAULT_FLAGS: &[&str] = &["--rate-limit-per-user", "0"];

/// Every update type the contract defines.
pub const UPDATE_TYPES: &[&str] = &[
    "message",
    "message_revoked",
    "read",
    "friend_request",
    "friend_request_rejected",
    "friend_added",
    "friend_removed",
    "blocked",
    "unblocked",
    "group_created",
    "group_updated",
    "member_added",
    "member_removed",
    "member_role",
    "member_muted",
    "owner_transferred",
    "group_dismissed",
    "session_revoked",
];

// ---------------------------------------------------------------------------------------------
// Small utilities
// ---------------------------------------------------------------------------------------------

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

static UID_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh user id (`^[a-z0-9_]{3,32}$`) unique within this test process: `<prefix>_<n><salt>`.
/// The salt (from the pid) keeps ids distinct should two test processes ever share a server.
pub fn uid(prefix: &str) -> String {
    let n = UID_COUNTER.fetch_add(1, Ordering::Relaxed);
    let salt = std::process::id() % 1000;
    let prefix: String = prefix.chars().take(16).collect();
    let id = format!("{prefix}_{n}x{salt}");
    assert!(id.len() <= 32, "generated user id too long: {id}");
    id
}

/// A fresh client message id.
pub fn cmid(tag: &str) -> String {
    let n = UID_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{tag}-{n}-{}", now_ms())
}

/// The direct conversation id of two users: `d:<a>:<b>` with `a < b`.
pub fn dm(a: &str, b: &str) -> String {
    if a < b {
        format!("d:{a}:{b}")
    } else {
        format!("d:{b}:{a}")
    }
}

/// Decodes unpadded base64url (JWT segments).
pub fn b64url_decode(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = 0u32;
    let mut bits = 0u32;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            b'=' => break,
            _ => panic!("not base64url: {s:?}"),
        } as u32;
        buf = (buf << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    out
}

/// The claims of a JWT (not verified).
pub fn jwt_claims(token: &str) -> Value {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "token is not a JWT: {token}");
    serde_json::from_slice(&b64url_decode(parts[1])).expect("JWT payload is JSON")
}

pub fn as_u64(v: &Value, what: &str) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("{what} is not a non-negative integer: {v}"))
}

pub fn as_str<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str().unwrap_or_else(|| panic!("{what} is not a string: {v}"))
}

// ---------------------------------------------------------------------------------------------
// Process management
// ---------------------------------------------------------------------------------------------

fn target_tmp() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

pub use super::flags::IP_LIMITS_OFF;
use super::spawn::spawn_child;

/// Shared servers are leaked (`&'static`); this exit handler kills them and removes their data.
fn shared_registry() -> &'static Mutex<Vec<(u32, PathBuf)>> {
    static REG: OnceLock<Mutex<Vec<(u32, PathBuf)>>> = OnceLock::new();
    REG.get_or_init(|| {
        extern "C" fn cleanup() {
            if let Some(reg) = SHARED_REG_PTR.get() {
                if let Ok(list) = reg.try_lock() {
                    for (pid, dir) in list.iter() {
                        // SAFETY: plain syscalls on a pid we spawned.
                        unsafe {
                            libc::kill(*pid as libc::pid_t, libc::SIGKILL);
                            let mut status = 0;
                            libc::waitpid(*pid as libc::pid_t, &mut status, 0);
                        }
                        let _ = std::fs::remove_dir_all(dir);
                    }
                }
            }
        }
        // SAFETY: registering a plain extern "C" fn.
        unsafe {
            libc::atexit(cleanup);
        }
        Mutex::new(Vec::new())
    })
}
static SHARED_REG_PTR: OnceLock<&'static Mutex<Vec<(u32, PathBuf)>>> = OnceLock::new();

/// A running `parley serve`.
pub struct TestServer {
    child: Option<Child>,
    data_dir: Option<tempfile::TempDir>,
    data_path: PathBuf,
    pub addr: SocketAddr,
    pub admin_token: String,
    extra: Vec<String>,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
}

impl TestServer {
    /// Starts a server with [`DEFAULT_FLAGS`].
    pub fn start() -> TestServer {
        Self::start_with(DEFAULT_FLAGS)
    }

    /// Starts a server with these extra flags (after `--data-dir`, `--http`, `--admin-token`).
    pub fn start_with(extra: &[&str]) -> TestServer {
        let dir = tempfile::Builder::new().prefix("parley-it-").tempdir_in(target_tmp()).expect("create data dir");
        let data_path = dir.path().to_path_buf();
        let admin_token = format!("admin-{}-{}", std::process::id(), now_ms());
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let (child, addr, stdout, stderr) =
            launch(&data_path, &admin_token, &extra, "127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        TestServer { child: Some(child), data_dir: Some(dir), data_path, addr, admin_token, extra, stderr, stdout }
    }

    /// Starts a server on `data_dir`, which the caller owns (it is kept when the server goes):
    /// for tests that run the offline tools on the node's data dir afterwards.
    pub fn start_in(data_dir: &Path, extra: &[&str]) -> TestServer {
        let admin_token = format!("admin-{}-{}", std::process::id(), now_ms());
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let (child, addr, stdout, stderr) =
            launch(data_dir, &admin_token, &extra, "127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        TestServer {
            child: Some(child),
            data_dir: None,
            data_path: data_dir.to_path_buf(),
            addr,
            admin_token,
            extra,
            stderr,
            stdout,
        }
    }

    /// Stops the server gracefully (SIGTERM: the node flushes its db), SIGKILL after 20 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        // SAFETY: plain syscall on our own child's pid.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while child.try_wait().ok().flatten().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/ws", self.addr)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_path
    }

    pub fn api(&self) -> Api {
        Api::new(&self.base_url())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The last part of the server's stderr, for failure messages.
    pub fn stderr_tail(&self) -> String {
        tail(&self.stderr.lock().unwrap(), 4000)
    }

    /// SIGKILLs the server and waits until it is gone.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server if it still runs and starts it again on the same data dir (new port).
    pub fn restart(&mut self) {
        self.relaunch("127.0.0.1:0");
    }

    /// Like [`TestServer::restart`], on the same port: what a client that knows one address
    /// (a browser page, `parley chat`) sees when its server restarts.
    pub fn restart_same_port(&mut self) {
        self.relaunch(&self.addr.to_string());
    }

    fn relaunch(&mut self, http: &str) {
        self.kill9();
        let (child, addr, stdout, stderr) = launch(&self.data_path, &self.admin_token, &self.extra, http)
            .unwrap_or_else(|e| panic!("restart failed: {e}"));
        self.child = Some(child);
        self.addr = addr;
        self.stdout = stdout;
        self.stderr = stderr;
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- parley stderr (tail) ----\n{}\n----", self.stderr_tail());
        }
        self.kill9();
        drop(self.data_dir.take());
    }
}

fn tail(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_string();
    }
    let mut start = s.len() - n;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_string()
}

/// [`IP_LIMITS_OFF`] without the flags `extra` sets itself (clap refuses a flag twice).
fn ip_limits_off_unless_set(extra: &[String]) -> Vec<&'static str> {
    IP_LIMITS_OFF.chunks(2).filter(|flag| !extra.iter().any(|e| e == flag[0])).flatten().copied().collect()
}

type Launched = (Child, SocketAddr, Arc<Mutex<String>>, Arc<Mutex<String>>);

fn launch(data_dir: &Path, admin_token: &str, extra: &[String], http: &str) -> Result<Launched, String> {
    // PARLEY_TEST_BIN runs the suite against another build of the binary (e.g. a release one).
    let bin = std::env::var_os("PARLEY_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_parley")));
    let mut cmd = Command::new(bin);
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--http")
        .arg(http)
        .arg("--admin-token")
        .arg(admin_token)
        .args(ip_limits_off_unless_set(extra))
        .args(extra)
        .env_remove("PARLEY_DATA_DIR")
        .env_remove("PARLEY_HTTP")
        .env_remove("PARLEY_PEERS")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn_child(cmd).map_err(|e| format!("cannot spawn parley: {e}"))?;

    let stderr_buf = Arc::new(Mutex::new(String::new()));
    let stdout_buf = Arc::new(Mutex::new(String::new()));

    // Drain stderr forever (bounded memory).
    let mut err_pipe = child.stderr.take().unwrap();
    let sb = stderr_buf.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match err_pipe.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut s = sb.lock().unwrap();
                    s.push_str(&String::from_utf8_lossy(&chunk[..n]));
                    if s.len() > 256 * 1024 {
                        let t = tail(&s, 128 * 1024);
                        *s = t;
                    }
                }
            }
        }
    });

    // Drain stdout forever, reporting the `listening on` address once.
    let out_pipe = child.stdout.take().unwrap();
    let ob = stdout_buf.clone();
    let (tx, rx) = mpsc::channel::<SocketAddr>();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(out_pipe);
        let mut line = Vec::new();
        let mut tx = Some(tx);
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line).to_string();
                    {
                        let mut s = ob.lock().unwrap();
                        if s.len() < 64 * 1024 {
                            s.push_str(&text);
                        }
                    }
                    if let Some(sender) = tx.as_ref() {
                        if let Some(addr) = parse_listening(&text) {
                            let _ = sender.send(addr);
                            tx = None;
                        }
                    }
                }
            }
        }
    });

    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.min(Duration::from_millis(200))) {
            Ok(addr) => return Ok((child, addr, stdout_buf, stderr_buf)),
            Err(mpsc::RecvTimeoutError::Disconnected) | Err(mpsc::RecvTimeoutError::Timeout) => {
                let exited = child.try_wait().ok().flatten();
                if exited.is_some() || Instant::now() >= deadline {
                    if exited.is_none() {
                        let _ = child.kill();
                    }
                    let _ = child.wait();
                    std::thread::sleep(Duration::from_millis(100));
                    return Err(format!(
                        "parley serve did not print `listening on http://...` ({})\n\
                         --- stdout ---\n{}\n--- stderr ---\n{}",
                        match exited {
                            Some(status) => format!("it exited: {status}"),
                            None => format!("timed out after {STARTUP_TIMEOUT:?}"),
                        },
                        tail(&stdout_buf.lock().unwrap(), 4000),
                        tail(&stderr_buf.lock().unwrap(), 8000),
                    ));
                }
            }
        }
    }
}

fn parse_listening(line: &str) -> Option<SocketAddr> {
    let idx = line.find("listening on http://")?;
    let rest = &line[idx + "listening on http://".len()..];
    let addr: String = rest.chars().take_while(|c| !c.is_whitespace() && *c != '/').collect();
    addr.parse().ok()
}

/// One server per test binary and set of extra flags, started on first use, never restarted.
/// If it fails to start, every test asking for it fails at once with the same message.
pub fn shared_with(extra: &[&str]) -> &'static TestServer {
    type Entry = (Vec<String>, Result<&'static TestServer, String>);
    static SHARED: OnceLock<Mutex<Vec<Entry>>> = OnceLock::new();
    let key: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let table = SHARED.get_or_init(|| Mutex::new(Vec::new()));
    let mut table = table.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, r)) = table.iter().find(|(k, _)| *k == key) {
        return r.clone().unwrap_or_else(|e| panic!("shared server failed to start earlier: {e}"));
    }
    let reg = shared_registry();
    let _ = SHARED_REG_PTR.set(reg);
    let result = std::panic::catch_unwind(|| TestServer::start_with(extra)).map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into())
    });
    let result = result.map(|mut server| {
        // Ownership of the data dir moves to the exit handler.
        let dir = server.data_dir.take().map(|d| d.keep()).unwrap_or_default();
        reg.lock().unwrap().push((server.pid().unwrap_or(0), dir));
        &*Box::leak(Box::new(server))
    });
    table.push((key, result.clone()));
    result.unwrap_or_else(|e| panic!("{e}"))
}

/// The shared server with [`DEFAULT_FLAGS`].
pub fn shared() -> &'static TestServer {
    shared_with(DEFAULT_FLAGS)
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

/// An HTTP response, fully read.
#[derive(Debug, Clone)]
pub struct Resp {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    /// The body parsed as JSON, or `Value::Null` when empty or not JSON.
    pub json: Value,
}

impl Resp {
    fn describe(&self) -> String {
        format!("{} {} -> {} {}", self.method, self.path, self.status, tail(&self.text, 2000))
    }

    /// Asserts the status and returns the JSON body.
    #[track_caller]
    pub fn ok(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "unexpected status: {}", self.describe());
        &self.json
    }

    /// Asserts the status and the error envelope `{"error":{"code","message"}}`.
    #[track_caller]
    pub fn err(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "expected {status} {code}: {}", self.describe());
        let e = self.json.get("error").unwrap_or_else(|| panic!("error body lacks `error`: {}", self.describe()));
        assert_eq!(e.get("code").and_then(Value::as_str), Some(code), "wrong code: {}", self.describe());
        let msg = e.get("message").and_then(Value::as_str);
        assert!(msg.is_some_and(|m| !m.is_empty()), "error.message must be a non-empty string: {}", self.describe());
    }

    /// The `Parley-Cursor` header, if present.
    pub fn cursor_header(&self) -> Option<u64> {
        self.headers.get("parley-cursor").map(|v| {
            v.to_str()
                .unwrap_or("")
                .trim()
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("Parley-Cursor is not a number: {:?} ({})", v, self.describe()))
        })
    }

    /// Asserts this is a successful write: the given status, a `Parley-Cursor` header, and when
    /// the body is JSON a `cursor` field equal to it. Returns the cursor.
    #[track_caller]
    pub fn write(&self, status: u16) -> u64 {
        self.ok(status);
        let h =
            self.cursor_header().unwrap_or_else(|| panic!("write response lacks Parley-Cursor: {}", self.describe()));
        assert!(h > 0, "cursor of a write must be positive: {}", self.describe());
        if !self.text.trim().is_empty() {
            let c = self
                .json
                .get("cursor")
                .unwrap_or_else(|| panic!("write response body lacks `cursor`: {}", self.describe()));
            assert_eq!(c.as_u64(), Some(h), "body cursor != Parley-Cursor: {}", self.describe());
        }
        h
    }
}

/// A small HTTP client bound to one server address.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(base: &str) -> Api {
        let http = reqwest::Client::builder().no_proxy().timeout(HTTP_TIMEOUT).build().expect("reqwest client");
        Api { base: base.to_string(), http }
    }

    /// A client whose requests come from `source` (any 127.x.y.z reaches a loopback server on
    /// Linux): a second "machine" for per-source limits.
    pub fn from_source(base: &str, source: std::net::IpAddr) -> Api {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(HTTP_TIMEOUT)
            .local_address(source)
            .build()
            .expect("reqwest client");
        Api { base: base.to_string(), http }
    }

    /// Sends a request. `body`: `Some(json)` sends JSON. `token`: a bearer token.
    pub async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> Resp {
        let mut req = self
            .http
            .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        self.finish(method, path, req).await
    }

    /// Sends a raw body with `Content-Type: application/json`.
    pub async fn call_raw(&self, method: &str, path: &str, token: Option<&str>, body: Vec<u8>) -> Resp {
        let mut req = self
            .http
            .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), format!("{}{}", self.base, path))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        self.finish(method, path, req).await
    }

    /// Sends with a per-request timeout (for long polls).
    pub async fn get_with_timeout(&self, path: &str, token: Option<&str>, timeout: Duration) -> Resp {
        let mut req = self.http.get(format!("{}{}", self.base, path)).timeout(timeout);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        self.finish("GET", path, req).await
    }

    pub async fn finish(&self, method: &str, path: &str, req: reqwest::RequestBuilder) -> Resp {
        let resp = req.send().await.unwrap_or_else(|e| panic!("{method} {path}: request failed: {e:?}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.unwrap_or_else(|e| panic!("{method} {path}: reading body failed: {e:?}"));
        let text = String::from_utf8_lossy(&bytes).to_string();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp { method: method.into(), path: path.into(), status, headers, text, json }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Resp {
        self.call("GET", path, token, None).await
    }
    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Resp {
        self.call("POST", path, token, Some(&body)).await
    }
    /// POST without a body.
    pub async fn post_empty(&self, path: &str, token: Option<&str>) -> Resp {
        self.call("POST", path, token, None).await
    }
    pub async fn put(&self, path: &str, token: Option<&str>) -> Resp {
        self.call("PUT", path, token, None).await
    }
    pub async fn delete(&self, path: &str, token: Option<&str>) -> Resp {
        self.call("DELETE", path, token, None).await
    }

    // -- users and sessions ---------------------------------------------------------------

    pub async fn register_raw(&self, user: &str, password: &str, display_name: Option<&str>) -> Resp {
        let mut body = json!({"user_id": user, "password": password});
        if let Some(d) = display_name {
            body["display_name"] = json!(d);
        }
        self.post("/v1/users", None, body).await
    }

    /// Registers a user (asserting 201).
    pub async fn register(&self, user: &str, password: &str) {
        self.register_raw(user, password, None).await.write(201);
    }

    pub async fn login_raw(&self, user: &str, password: &str, device: Option<&str>) -> Resp {
        let mut body = json!({"user_id": user, "password": password});
        if let Some(d) = device {
            body["device"] = json!(d);
        }
        self.post("/v1/sessions", None, body).await
    }

    /// Logs in (asserting 201) and returns the token.
    pub async fn login(&self, user: &str, password: &str) -> String {
        self.login_session(user, password, None).await.token
    }

    /// Logs in (asserting 201) and returns the whole session.
    pub async fn login_session(&self, user: &str, password: &str, device: Option<&str>) -> Session {
        let r = self.login_raw(user, password, device).await;
        r.ok(201);
        Session {
            token: as_str(&r.json["token"], "token").to_string(),
            session_id: as_str(&r.json["session_id"], "session_id").to_string(),
            expires_at: as_u64(&r.json["expires_at"], "expires_at"),
        }
    }

    /// Registers a fresh user with a unique id and logs in.
    pub async fn user(&self, prefix: &str) -> User {
        let id = uid(prefix);
        let password = format!("pw-{id}-secret");
        self.register(&id, &password).await;
        let s = self.login_session(&id, &password, Some("test")).await;
        User { id, password, token: s.token, session_id: s.session_id }
    }

    // -- friends ----------------------------------------------------------------------------

    pub async fn friend_request(&self, from: &User, to: &str, note: Option<&str>) -> Resp {
        let mut body = json!({"to": to});
        if let Some(n) = note {
            body["note"] = json!(n);
        }
        self.post("/v1/friends/requests", Some(&from.token), body).await
    }

    /// Makes `a` and `b` friends: a asks, b accepts.
    /// Two fresh users who are friends, and their direct conversation's id.
    pub async fn friends(&self, prefix: &str) -> (User, User, String) {
        let a = self.user(&format!("{prefix}a")).await;
        let b = self.user(&format!("{prefix}b")).await;
        self.befriend(&a, &b).await;
        let cid = dm(&a.id, &b.id);
        (a, b, cid)
    }

    pub async fn befriend(&self, a: &User, b: &User) {
        self.befriend_tokens(&a.token, &b.token, &a.id, &b.id).await
    }

    pub async fn befriend_tokens(&self, a_token: &str, b_token: &str, a: &str, b: &str) {
        self.post("/v1/friends/requests", Some(a_token), json!({"to": b})).await.write(201);
        let r = self.post_empty(&format!("/v1/friends/requests/{a}/accept"), Some(b_token)).await;
        r.write(200);
        assert_eq!(r.json["user_id"], json!(a), "accept answers the requester: {}", r.text);
    }

    // -- messages ---------------------------------------------------------------------------

    pub async fn send_raw(&self, token: &str, cid: &str, client_msg_id: &str, body: &str) -> Resp {
        self.post(
            &format!("/v1/conversations/{cid}/messages"),
            Some(token),
            json!({"client_msg_id": client_msg_id, "body": body}),
        )
        .await
    }

    /// Sends a message (asserting 201) and returns `(message, cursor)`.
    pub async fn send(&self, from: &User, cid: &str, body: &str) -> (Value, u64) {
        let r = self.send_raw(&from.token, cid, &cmid("m"), body).await;
        let c = r.write(201);
        (r.json["message"].clone(), c)
    }

    pub async fn history(&self, token: &str, cid: &str, query: &str) -> Value {
        let r = self.get(&format!("/v1/conversations/{cid}/messages{query}"), Some(token)).await;
        r.ok(200).clone()
    }

    pub async fn read(&self, token: &str, cid: &str, seq: u64) -> Resp {
        self.post(&format!("/v1/conversations/{cid}/read"), Some(token), json!({"seq": seq})).await
    }

    pub async fn conversations(&self, token: &str) -> Vec<Value> {
        let r = self.get("/v1/conversations", Some(token)).await;
        let v = r.ok(200);
        assert!(v["cursor"].is_u64(), "conversation list has a cursor: {}", r.text);
        v["conversations"].as_array().unwrap_or_else(|| panic!("conversations is not an array: {}", r.text)).clone()
    }

    pub async fn conversation(&self, token: &str, cid: &str) -> Option<Value> {
        self.conversations(token).await.into_iter().find(|c| c["conversation_id"] == json!(cid))
    }

    // -- sync -------------------------------------------------------------------------------

    /// One sync page: `(updates, cursor, more)`, checking the page's shape.
    pub async fn sync_page(&self, token: &str, since: u64, limit: Option<u64>) -> (Vec<Value>, u64, bool) {
        let mut path = format!("/v1/sync?since={since}");
        if let Some(l) = limit {
            path.push_str(&format!("&limit={l}"));
        }
        let r = self.get(&path, Some(token)).await;
        let v = r.ok(200);
        let updates = v["updates"].as_array().unwrap_or_else(|| panic!("no updates: {}", r.text)).clone();
        let cursor = as_u64(&v["cursor"], "sync cursor");
        let more = v["more"].as_bool().unwrap_or_else(|| panic!("more is not a bool: {}", r.text));
        check_updates(&updates, since);
        if let Some(last) = updates.last() {
            assert!(cursor >= as_u64(&last["cursor"], "cursor"), "sync cursor behind its updates: {}", r.text);
        }
        assert!(cursor >= since, "sync cursor went backwards: {}", r.text);
        (updates, cursor, more)
    }

    /// Every update after `since`, paging with `limit` until `more` is false.
    pub async fn sync_all(&self, token: &str, since: u64, limit: Option<u64>) -> (Vec<Value>, u64) {
        let mut all = Vec::new();
        let mut since = since;
        for _ in 0..2000 {
            let (updates, cursor, more) = self.sync_page(token, since, limit).await;
            if let Some(l) = limit {
                assert!(updates.len() as u64 <= l, "page larger than limit {l}: {}", updates.len());
            }
            all.extend(updates);
            since = cursor;
            if !more {
                check_updates(&all, 0);
                return (all, cursor);
            }
        }
        panic!("sync did not finish within 2000 pages");
    }

    /// Waits (bounded, 5 s) for `GET /readyz` to answer 200.
    pub async fn ready(&self) {
        let mut last = None;
        for _ in 0..50 {
            let r = self.get("/readyz", None).await;
            if r.status == 200 {
                return;
            }
            last = Some(r);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let r = last.unwrap();
        panic!("/readyz not 200 within 5 s: {} {}", r.status, r.text);
    }

    // -- admin ------------------------------------------------------------------------------

    pub async fn verify(&self, admin: &str) -> Value {
        let r = self.get("/v1/admin/journal/verify", Some(admin)).await;
        r.ok(200).clone()
    }
}

/// A raw HTTP/1.1 request over a fresh TCP connection: the body is written from a separate task
/// while the response is read, so a server that answers early (e.g. 413 before reading a large
/// body) and closes is still heard. Returns `(status, body as JSON or Null, raw body text)`.
pub async fn raw_http(addr: SocketAddr, head: &str, body: Vec<u8>) -> (u16, Value, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream =
        tokio::time::timeout(WS_TIMEOUT, TcpStream::connect(addr)).await.expect("connect timed out").expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let head = head.to_string();
    let writer = tokio::spawn(async move {
        if wr.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        for chunk in body.chunks(64 * 1024) {
            if wr.write_all(chunk).await.is_err() {
                return;
            }
        }
        let _ = wr.flush().await;
        // Keep the write half open until the reader is done (dropping it would half-close).
        tokio::time::sleep(Duration::from_secs(15)).await;
    });
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut chunk = vec![0u8; 16 * 1024];
    let result = loop {
        let n = match tokio::time::timeout_at(deadline, rd.read(&mut chunk)).await {
            Err(_) => break Err("timed out reading the response".to_string()),
            Ok(Err(e)) => break Err(format!("read failed: {e}")),
            Ok(Ok(n)) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let status: u16 = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("bad status line: {head}"));
            let len = head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim().eq_ignore_ascii_case("content-length").then(|| v.trim().parse::<usize>().ok())?
            });
            let body = &buf[end + 4..];
            match len {
                Some(len) if body.len() >= len => break Ok((status, body[..len].to_vec())),
                None if n == 0 => break Ok((status, body.to_vec())),
                _ => {}
            }
        }
        if n == 0 {
            break Err(format!("connection closed before a full response: {:?}", String::from_utf8_lossy(&buf)));
        }
    };
    writer.abort();
    let (status, body) = result.unwrap_or_else(|e| panic!("{e}"));
    let text = String::from_utf8_lossy(&body).to_string();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null), text)
}

/// Checks that updates have the contract shape and strictly ascending cursors above `since`.
#[track_caller]
pub fn check_updates(updates: &[Value], since: u64) {
    let mut prev = since;
    for u in updates {
        let c = as_u64(&u["cursor"], "update.cursor");
        assert!(c > prev, "update cursors not strictly ascending after {since}: {prev} then {c} in {u}");
        prev = c;
        as_u64(&u["ts"], "update.ts");
        let t = as_str(&u["type"], "update.type");
        assert!(UPDATE_TYPES.contains(&t), "update type not in the contract: {u}");
    }
}

/// Updates of one type.
pub fn of_type<'a>(updates: &'a [Value], t: &str) -> Vec<&'a Value> {
    updates.iter().filter(|u| u["type"] == json!(t)).collect()
}

/// The cursors of updates.
pub fn cursors(updates: &[Value]) -> Vec<u64> {
    updates.iter().map(|u| as_u64(&u["cursor"], "cursor")).collect()
}

pub fn user_set(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| as_str(x, "user id").to_string())
        .collect()
}

#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
    pub session_id: String,
    pub expires_at: u64,
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub password: String,
    pub token: String,
    pub session_id: String,
}

// ---------------------------------------------------------------------------------------------
// WebSocket
// ---------------------------------------------------------------------------------------------

/// Opens `ws://ADDR/v1/ws?token=...`.
pub async fn ws_connect(server: &TestServer, token: &str) -> Ws {
    ws_connect_url(&format!("{}?token={}", server.ws_url(), token)).await
}

pub async fn ws_connect_url(url: &str) -> Ws {
    let fut = tokio_tungstenite::connect_async(url);
    let (ws, _resp) = tokio::time::timeout(WS_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| panic!("WebSocket connect to {url} timed out"))
        .unwrap_or_else(|e| panic!("WebSocket connect failed: {e:?}"));
    ws
}

/// Opens the WebSocket authenticating with the `Authorization` header.
pub async fn ws_connect_header(server: &TestServer, token: &str) -> Ws {
    let mut req = server.ws_url().into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (ws, _) = tokio::time::timeout(WS_TIMEOUT, tokio_tungstenite::connect_async(req))
        .await
        .expect("WebSocket connect timed out")
        .unwrap_or_else(|e| panic!("WebSocket connect failed: {e:?}"));
    ws
}

/// Attempts an upgrade and returns the HTTP status of a refusal (panics if it succeeds).
pub async fn ws_refused_status(url: &str) -> u16 {
    use tokio_tungstenite::tungstenite::Error;
    match tokio::time::timeout(WS_TIMEOUT, tokio_tungstenite::connect_async(url)).await {
        Err(_) => panic!("WebSocket connect timed out"),
        Ok(Ok(_)) => panic!("WebSocket upgrade to {url} unexpectedly succeeded"),
        Ok(Err(Error::Http(resp))) => resp.status().as_u16(),
        Ok(Err(e)) => panic!("WebSocket upgrade failed without an HTTP status: {e:?}"),
    }
}

pub async fn send_json(ws: &mut Ws, v: &Value) {
    send_text(ws, &v.to_string()).await
}

pub async fn send_text(ws: &mut Ws, s: &str) {
    tokio::time::timeout(WS_TIMEOUT, ws.send(Message::text(s.to_string())))
        .await
        .expect("WebSocket send timed out")
        .expect("WebSocket send failed");
}

/// What the next WebSocket read produced.
#[derive(Debug)]
pub enum Frame {
    Json(Value),
    /// A close frame with its code (None: no code).
    Close(Option<u16>, String),
    /// The stream ended or failed without a close frame.
    Ended(String),
    Timeout,
}

/// Reads the next data frame (skipping ping/pong), bounded by `timeout`.
pub async fn next_frame(ws: &mut Ws, timeout: Duration) -> Frame {
    let deadline = tokio::time::Instant::now() + timeout;
    for _ in 0..100_000 {
        let next = match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return Frame::Timeout,
            Ok(n) => n,
        };
        match next {
            None => return Frame::Ended("stream ended".into()),
            Some(Err(e)) => return Frame::Ended(format!("{e:?}")),
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str())
                    .unwrap_or_else(|e| panic!("server sent a text frame that is not JSON ({e}): {t}"));
                return Frame::Json(v);
            }
            Some(Ok(Message::Binary(b))) => panic!("server sent a binary frame: {} bytes", b.len()),
            Some(Ok(Message::Close(cf))) => {
                return match cf {
                    Some(cf) => Frame::Close(Some(u16::from(cf.code)), cf.reason.to_string()),
                    None => Frame::Close(None, String::new()),
                }
            }
            Some(Ok(_)) => continue, // ping / pong / raw frame
        }
    }
    panic!("too many control frames");
}

/// The next JSON frame; panics on close, end or timeout.
pub async fn next_json(ws: &mut Ws, timeout: Duration) -> Value {
    match next_frame(ws, timeout).await {
        Frame::Json(v) => v,
        other => panic!("expected a JSON frame, got {other:?}"),
    }
}

/// The next JSON frame of type `t`, skipping others (e.g. live `updates`).
pub async fn next_of_type(ws: &mut Ws, t: &str, timeout: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + timeout;
    for _ in 0..100_000 {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let v = match next_frame(ws, left).await {
            Frame::Json(v) => v,
            other => panic!("waiting for a `{t}` frame, got {other:?}"),
        };
        if v["type"] == json!(t) {
            return v;
        }
    }
    panic!("no `{t}` frame");
}

/// Reads frames until a close frame arrives; returns its code and the JSON frames read before.
pub async fn read_until_close(ws: &mut Ws, timeout: Duration) -> (Option<u16>, Vec<Value>) {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut seen = Vec::new();
    for _ in 0..1_000_000 {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match next_frame(ws, left).await {
            Frame::Json(v) => seen.push(v),
            Frame::Close(code, _) => return (code, seen),
            Frame::Ended(e) => panic!("connection ended without a close frame ({e}) after {} frames", seen.len()),
            Frame::Timeout => panic!("no close frame within {timeout:?} ({} frames read)", seen.len()),
        }
    }
    panic!("too many frames before close");
}

/// Checks an `updates` frame's shape and returns its updates.
#[track_caller]
pub fn updates_of(frame: &Value) -> Vec<Value> {
    assert_eq!(frame["type"], json!("updates"), "not an updates frame: {frame}");
    assert!(frame["cursor"].is_u64(), "updates frame without cursor: {frame}");
    let ups = frame["updates"].as_array().unwrap_or_else(|| panic!("updates frame without updates: {frame}")).clone();
    check_updates(&ups, 0);
    if let Some(last) = ups.last() {
        assert!(
            as_u64(&frame["cursor"], "cursor") >= as_u64(&last["cursor"], "cursor"),
            "frame cursor behind its updates: {frame}"
        );
    }
    ups
}

/// Sends `sync since` and reads `updates` frames until one says `more: false`.
/// Returns the updates and the last frame cursor.
pub async fn ws_catch_up(ws: &mut Ws, since: u64) -> (Vec<Value>, u64) {
    send_json(ws, &json!({"type": "sync", "since": since})).await;
    let mut all = Vec::new();
    let mut cursor = since;
    for _ in 0..10_000 {
        let f = next_of_type(ws, "updates", WS_TIMEOUT).await;
        all.extend(updates_of(&f));
        cursor = cursor.max(as_u64(&f["cursor"], "cursor"));
        if f["more"] == json!(false) {
            check_updates(&all, since);
            return (all, cursor);
        }
    }
    panic!("catch-up never finished");
}
