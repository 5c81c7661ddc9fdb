//! The built-in web client in a real browser: `tests/browser/chat.mjs` drives Debian's
//! chromium (Playwright, `playwright-core` only: it downloads no browser) against a real
//! 3-node cluster. User A's page talks to node 1, user B's to node 3: both register, befriend,
//! chat both ways (markup in a body stays text), watch unread counts move, reload and keep
//! their history, make a group, add a member and page back through its history; then
//! node 1 is killed and restarted on its port while A's page stays open, and every message
//! written meanwhile and after shows up exactly once.
//!
//! Skips (printing `SKIP`) when chromium, node or `tests/browser/node_modules` is missing,
//! unless `PARLEY_REQUIRE_BROWSER=1` (CI sets it after installing them), then it fails.
//! Both run on the cluster harness: it restarts a node on the same port (the open page keeps
//! its URL; `support::TestServer::restart` restarts a single node on a new one), and it runs one cluster at a
//! time, so the two browsers never compete for the machine's cores.
//!
//! A second scenario (`browser/cors.mjs`, on one node) checks `--cors-origin`
//! as chromium enforces it: a page of the allowed origin uses the API (and reads
//! `Parley-Cursor`) and the WebSocket; a page of another origin is blocked and refused.
//!
//! Screenshots go to the test's temp dir, or with `PARLEY_UPDATE_SCREENSHOTS=1` to
//! `docs/screenshots/` (the ones the README shows).

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use support::cluster::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Bound on the whole browser scenario.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(300);

fn chromium() -> PathBuf {
    std::env::var_os("PARLEY_CHROMIUM").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Why the browser test cannot run here, if it cannot.
fn missing(dir: &Path) -> Option<String> {
    if !chromium().exists() {
        return Some(format!("{} not found (apt-get install chromium)", chromium().display()));
    }
    if !dir.join("node_modules/playwright-core").exists() {
        return Some(format!("{}/node_modules missing (npm ci there)", dir.display()));
    }
    let node = std::process::Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Some("node not found".into());
    }
    None
}

/// The scripts' directory, or `None` (after printing SKIP) when the browser cannot run here and
/// `PARLEY_REQUIRE_BROWSER=1` is not set (with it, a panic).
fn browser_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let Some(why) = missing(&dir) else { return Some(dir) };
    if std::env::var("PARLEY_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
        panic!("PARLEY_REQUIRE_BROWSER=1 but the browser test cannot run: {why}");
    }
    println!("SKIP browser test: {why}");
    None
}

/// `node SCRIPT` in `dir` with `envs`, every line of its output echoed.
fn node(dir: &Path, script: &str, envs: &[(&str, String)]) -> tokio::process::Child {
    tokio::process::Command::new("node")
        .arg(script)
        .current_dir(dir)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .env("PARLEY_CHROMIUM", chromium())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn node")
}

/// Echoes a script's stderr and hands it back whole when the script ends.
fn collect_stderr(child: &mut tokio::process::Child) -> tokio::task::JoinHandle<String> {
    let mut stderr = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
    tokio::spawn(async move {
        let mut all = String::new();
        while let Ok(Some(line)) = stderr.next_line().await {
            eprintln!("[node] {line}");
            all.push_str(&line);
            all.push('\n');
        }
        all
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_chat_in_chromium_across_a_cluster_and_a_node_restart() {
    let Some(dir) = browser_dir() else { return };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shots = if std::env::var("PARLEY_UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        root.join("docs/screenshots")
    } else {
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots")
    };

    let mut c = Cluster::start(3, &[]).await;
    let envs =
        [("PARLEY_NODE_A", c.url(1)), ("PARLEY_NODE_B", c.url(3)), ("PARLEY_SCREENSHOTS", shots.display().to_string())];
    let mut child = node(&dir, "chat.mjs", &envs);
    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let errors = collect_stderr(&mut child);

    let run = async {
        while let Some(line) = stdout.next_line().await.expect("read the script's stdout") {
            println!("[chat.mjs] {line}");
            // The script asks for node 1 (user A's) to stop, then to start again.
            let answer = match line.trim() {
                "@@stop-a" => {
                    c.kill9(1);
                    "stopped\n"
                }
                "@@start-a" => {
                    c.spawn(1);
                    c.wait_ready(1).await;
                    "started\n"
                }
                _ => continue,
            };
            stdin.write_all(answer.as_bytes()).await.expect("answer the script");
            stdin.flush().await.expect("answer the script");
        }
        child.wait().await.expect("wait for node")
    };
    let status = match tokio::time::timeout(SCENARIO_TIMEOUT, run).await {
        Ok(status) => status,
        Err(_) => panic!("the browser scenario did not finish within {SCENARIO_TIMEOUT:?}"),
    };
    let stderr = errors.await.unwrap_or_default();
    assert!(status.success(), "chat.mjs failed ({status}):\n{stderr}\nnode 1 log:\n{}", c.log_tail(1, 40));
    for name in ["login", "conversations", "conversation", "groups"] {
        assert!(shots.join(format!("{name}.png")).exists(), "screenshot {name}.png not written");
    }
}

/// A port nothing listens on right now, for the script's own pages.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_an_allowed_origin_may_use_the_api_and_another_is_blocked() {
    let Some(dir) = browser_dir() else { return };
    let (app, other) = (free_port(), free_port());
    // A one-node cluster: the harness serialises it with the other test's cluster (2 cores).
    let c = Cluster::start(1, &["--cors-origin", &format!("http://127.0.0.1:{app}")]).await;
    let envs =
        [("PARLEY_NODE", c.url(1)), ("PARLEY_APP_PORT", app.to_string()), ("PARLEY_OTHER_PORT", other.to_string())];
    let mut child = node(&dir, "cors.mjs", &envs);
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let errors = collect_stderr(&mut child);
    let run = async {
        while let Some(line) = stdout.next_line().await.expect("read the script's stdout") {
            println!("[cors.mjs] {line}");
        }
        child.wait().await.expect("wait for node")
    };
    let status = tokio::time::timeout(SCENARIO_TIMEOUT, run).await.expect("the cors scenario timed out");
    let stderr = errors.await.unwrap_or_default();
    assert!(status.success(), "cors.mjs failed ({status}):\n{stderr}\nnode log:\n{}", c.log_tail(1, 40));
}
