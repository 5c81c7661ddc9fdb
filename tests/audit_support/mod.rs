//! Helpers for the audit tests: run the real `parley` binary (offline tools and `serve`), talk
//! to a node over HTTP, tamper with a stopped node's sled db, copy data dirs.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[path = "../support/flags.rs"]
mod flags;

pub const ADMIN: &str = "audit-admin-token";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_parley")
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// The result of one run of the binary.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// Asserts success and returns stdout.
    pub fn expect_ok(&self, what: &str) -> &str {
        assert!(self.ok(), "{what} failed ({:?}):\nstdout: {}\nstderr: {}", self.code, self.stdout, self.stderr);
        &self.stdout
    }

    /// The `bad <cursor> <why>` verdict of a failed `audit verify`.
    pub fn bad_cursor(&self) -> u64 {
        assert!(!self.ok(), "expected a failure, got: {}", self.stdout);
        let line = self
            .stdout
            .lines()
            .find(|l| l.starts_with("bad "))
            .unwrap_or_else(|| panic!("no `bad` verdict:\nstdout: {}\nstderr: {}", self.stdout, self.stderr));
        line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("bad verdict: {line}"))
    }
}

/// Runs `parley <args>` to completion (at most 5 minutes).
pub fn parley(args: &[&str]) -> Run {
    parley_with_stdin(args, None)
}

pub fn parley_with_stdin(args: &[&str], stdin: Option<&[u8]>) -> Run {
    let mut cmd = Command::new(bin());
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().expect("spawn parley");
    if let Some(input) = stdin {
        use std::io::Write;
        let mut w = child.stdin.take().expect("stdin");
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = w.write_all(&input);
        });
    }
    let out: Output = wait_output(child, Duration::from_secs(300));
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn wait_output(mut child: Child, limit: Duration) -> Output {
    let mut so = child.stdout.take().expect("stdout");
    let mut se = child.stderr.take().expect("stderr");
    let t1 = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t2 = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("parley did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output { status, stdout: t1.join().unwrap_or_default(), stderr: t2.join().unwrap_or_default() }
}

/// `parley audit verify --data-dir DIR [extra]`.
pub fn verify_dir(dir: &Path, extra: &[&str]) -> Run {
    let d = dir.to_str().expect("utf-8 path");
    let mut args = vec!["audit", "verify", "--data-dir", d];
    args.extend_from_slice(extra);
    parley(&args)
}

/// `parley replay --data-dir DIR [extra] --json` -> (cursor, digest).
pub fn replay(dir: &Path, extra: &[&str]) -> (u64, String) {
    let d = dir.to_str().expect("utf-8 path");
    let mut args = vec!["replay", "--data-dir", d, "--json"];
    args.extend_from_slice(extra);
    let run = parley(&args);
    let v: Value = serde_json::from_str(run.expect_ok("replay").trim()).expect("replay --json prints JSON");
    (v["cursor"].as_u64().expect("cursor"), v["digest"].as_str().expect("digest").to_owned())
}

/// Lines of an export, parsed.
pub fn export_lines(dir: &Path, extra: &[&str]) -> Vec<Value> {
    let d = dir.to_str().expect("utf-8 path");
    let mut args = vec!["export", "--data-dir", d];
    args.extend_from_slice(extra);
    let run = parley(&args);
    run.expect_ok("export").lines().map(|l| serde_json::from_str(l).expect("export line is JSON")).collect()
}

pub fn cursors(lines: &[Value]) -> Vec<u64> {
    lines.iter().map(|l| l["cursor"].as_u64().expect("cursor")).collect()
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("dir entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

/// Opens a stopped node's journal tree with sled directly, runs `f` on it, flushes.
pub fn with_journal_tree(data_dir: &Path, f: impl FnOnce(&sled::Tree, &sled::Tree)) {
    let db = parley_storage::store::sled_config(&data_dir.join("db"), 8 << 20, false).open().expect("open sled db");
    let journal = db.open_tree("cursor_entry").expect("journal tree");
    let meta = db.open_tree("meta").expect("meta tree");
    f(&journal, &meta);
    db.flush().expect("flush");
}

pub fn key(c: u64) -> [u8; 8] {
    c.to_be_bytes()
}

/// A running `parley serve` on a data dir, stopped (SIGTERM, then SIGKILL) on drop.
pub struct Server {
    child: Option<Child>,
    pub base: String,
    pub data_dir: PathBuf,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    pub fn start(data_dir: &Path) -> Server {
        let mut child = Command::new(bin())
            .args(["serve", "--data-dir"])
            .arg(data_dir)
            .args(["--http", "127.0.0.1:0", "--admin-token", ADMIN, "--rate-limit-per-user", "0"])
            .args(["--login-rate-limit", "0"])
            .args(flags::IP_LIMITS_OFF)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn parley serve");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut l) = log2.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        let base = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(b) => b,
            Err(_) => {
                let _ = child.kill();
                panic!("server did not start: {}", log.lock().map(|l| l.clone()).unwrap_or_default());
            }
        };
        Server { child: Some(child), base, data_dir: data_dir.to_path_buf(), stderr: log }
    }

    /// Graceful stop (SIGTERM: the node flushes its db), bounded.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        // SAFETY: plain syscall on our own child's pid.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A thin HTTP client for one node.
#[derive(Clone)]
pub struct Http {
    pub base: String,
    client: reqwest::Client,
}

/// A response: status, `Parley-Cursor` header, JSON body (Null if none).
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub cursor: Option<u64>,
    pub body: Value,
}

impl Http {
    pub fn new(base: &str) -> Http {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
        Http { base: base.to_owned(), client }
    }

    pub async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Resp {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.client.request(m, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let cursor = resp.headers().get("parley-cursor").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
        let text = resp.text().await.expect("body");
        let body =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        Resp { status, cursor, body }
    }

    /// A write that must succeed; returns its cursor.
    pub async fn write(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> (u64, Value) {
        let r = self.call(method, path, Some(token), body).await;
        assert!((200..300).contains(&r.status), "{method} {path}: {} {}", r.status, r.body);
        let cursor = r.cursor.unwrap_or_else(|| panic!("{method} {path}: no Parley-Cursor header"));
        (cursor, r.body)
    }

    /// Registers a user; returns the cursor of the registration.
    pub async fn register(&self, user: &str) -> u64 {
        let r = self
            .call("POST", "/v1/users", None, Some(json!({"user_id": user, "password": "correct horse battery"})))
            .await;
        assert_eq!(r.status, 201, "register {user}: {}", r.body);
        r.cursor.expect("registration carries Parley-Cursor")
    }

    /// Logs in; returns (token, session_id, cursor).
    pub async fn login(&self, user: &str) -> (String, String, u64) {
        let r = self
            .call("POST", "/v1/sessions", None, Some(json!({"user_id": user, "password": "correct horse battery"})))
            .await;
        assert_eq!(r.status, 201, "login {user}: {}", r.body);
        let cursor = r.cursor.expect("login carries Parley-Cursor");
        (
            r.body["token"].as_str().expect("token").to_owned(),
            r.body["session_id"].as_str().expect("session_id").to_owned(),
            cursor,
        )
    }

    /// `GET /v1/admin/digest` -> (cursor, digest).
    pub async fn digest(&self) -> (u64, String) {
        let r = self.call("GET", "/v1/admin/digest", Some(ADMIN), None).await;
        assert_eq!(r.status, 200, "digest: {}", r.body);
        (r.body["cursor"].as_u64().expect("cursor"), r.body["digest"].as_str().expect("digest").to_owned())
    }

    /// Every update cursor the user's sync returns, paging to the end.
    pub async fn sync_cursors(&self, token: &str) -> Vec<u64> {
        let mut since = 0u64;
        let mut out = Vec::new();
        loop {
            let r = self.call("GET", &format!("/v1/sync?since={since}&limit=7"), Some(token), None).await;
            assert_eq!(r.status, 200, "sync: {}", r.body);
            for u in r.body["updates"].as_array().expect("updates") {
                out.push(u["cursor"].as_u64().expect("cursor"));
            }
            since = r.body["cursor"].as_u64().expect("cursor");
            if !r.body["more"].as_bool().unwrap_or(false) {
                return out;
            }
        }
    }
}
