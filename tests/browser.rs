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
//! The restart runs on the cluster harness because it restarts a node on the same port (the
//! open page keeps its URL); `tests/common` restarts a single node on a new one.
//!
//! Screenshots go to the test's temp dir, or with `PARLEY_UPDATE_SCREENSHOTS=1` to
//! `docs/screenshots/` (the ones the README shows).

mod cluster_support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use cluster_support::*;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_chat_in_chromium_across_a_cluster_and_a_node_restart() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("tests/browser");
    if let Some(why) = missing(&dir) {
        if std::env::var("PARLEY_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
            panic!("PARLEY_REQUIRE_BROWSER=1 but the browser test cannot run: {why}");
        }
        println!("SKIP browser test: {why}");
        return;
    }
    let shots = if std::env::var("PARLEY_UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        root.join("docs/screenshots")
    } else {
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots")
    };

    let mut c = Cluster::start(3, &[]).await;
    let mut child = tokio::process::Command::new("node")
        .arg("chat.mjs")
        .current_dir(&dir)
        .env("PARLEY_NODE_A", c.url(1))
        .env("PARLEY_NODE_B", c.url(3))
        .env("PARLEY_SCREENSHOTS", &shots)
        .env("PARLEY_CHROMIUM", chromium())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn node");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let mut stderr = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
    let errors = tokio::spawn(async move {
        let mut all = String::new();
        while let Ok(Some(line)) = stderr.next_line().await {
            eprintln!("[chat.mjs] {line}");
            all.push_str(&line);
            all.push('\n');
        }
        all
    });

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
