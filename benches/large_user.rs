//! Read latency for a user in many groups, against a real release server.
//!
//! Starts `parley serve` (the release binary `cargo bench` builds), makes one user a member of
//! 500 groups with a few messages each, then times `GET /v1/conversations` and `GET /v1/sync`
//! (first page from 0, and caught-up at the head) and prints p50/p99/max. Runs in well under
//! two minutes: `cargo bench --bench large_user`. `LARGE_USER_GROUPS` and
//! `LARGE_USER_SAMPLES` override the sizes.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const PASSWORD: &str = "correct horse battery";

struct Server {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_parley"))
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--http", "127.0.0.1:0", "--admin-token", "T", "--rate-limit-per-user", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn parley");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.trim().strip_prefix("listening on http://") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(addr.to_owned());
                }
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(60)).expect("server printed its address");
    Server { child, base: format!("http://{addr}"), _dir: dir }
}

#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn call(&self, method: reqwest::Method, path: &str, token: Option<&str>, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let v: Value = resp.json().await.expect("JSON body");
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    async fn user(&self, id: &str) -> String {
        let creds = json!({"user_id": id, "password": PASSWORD});
        self.call(reqwest::Method::POST, "/v1/users", None, Some(creds.clone())).await;
        let s = self.call(reqwest::Method::POST, "/v1/sessions", None, Some(creds)).await;
        s["token"].as_str().expect("token").to_owned()
    }

    async fn send(&self, token: &str, gid: &str, cmid: String) {
        let path = format!("/v1/conversations/g:{gid}/messages");
        self.call(
            reqwest::Method::POST,
            &path,
            Some(token),
            Some(json!({"client_msg_id": cmid, "body": "hello there"})),
        )
        .await;
    }
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `(p50, p99, max)` of the samples.
fn percentiles(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    (at(0.50), at(0.99), v[v.len() - 1])
}

async fn time(
    c: &Client,
    token: &str,
    path: &str,
    samples: usize,
    check: impl Fn(&Value),
) -> (Duration, Duration, Duration) {
    // Warm up (page cache, allocator, connection).
    for _ in 0..10 {
        check(&c.call(reqwest::Method::GET, path, Some(token), None).await);
    }
    let mut v = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t0 = Instant::now();
        let body = c.call(reqwest::Method::GET, path, Some(token), None).await;
        v.push(t0.elapsed());
        check(&body);
    }
    percentiles(v)
}

fn main() {
    // `cargo bench` passes `--bench`; without it (`cargo test --benches`) run a quick smoke
    // test of the same code.
    let full = std::env::args().any(|a| a == "--bench");
    let groups = env_or("LARGE_USER_GROUPS", if full { 500 } else { 20 });
    let samples = env_or("LARGE_USER_SAMPLES", if full { 300 } else { 12 });
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async move {
        let server = start();
        let c = Client { http: reqwest::Client::new(), base: server.base.clone() };
        let big = c.user("big_user").await;
        let pal = c.user("pal").await;
        let t_setup = Instant::now();

        // 500 groups, each with the pal and three messages (two unread for the big user).
        let mut gids = Vec::with_capacity(groups);
        for chunk in (0..groups).collect::<Vec<_>>().chunks(16) {
            let futs = chunk.iter().map(|i| {
                let c = c.clone();
                let big = big.clone();
                async move {
                    let body = json!({"name": format!("group {i}"), "members": ["pal"]});
                    let g = c.call(reqwest::Method::POST, "/v1/groups", Some(&big), Some(body)).await;
                    g["group_id"].as_str().expect("group_id").to_owned()
                }
            });
            gids.extend(futures_util::future::join_all(futs).await);
        }
        for chunk in gids.chunks(16) {
            let futs = chunk.iter().map(|g| {
                let (c, big, pal) = (c.clone(), big.clone(), pal.clone());
                async move {
                    c.send(&big, g, format!("b-{g}")).await;
                    c.send(&pal, g, format!("p1-{g}")).await;
                    c.send(&pal, g, format!("p2-{g}")).await;
                }
            });
            futures_util::future::join_all(futs).await;
        }
        // The list's cursor is the applied head.
        let head = c.call(reqwest::Method::GET, "/v1/conversations", Some(&big), None).await["cursor"]
            .as_u64()
            .expect("cursor");
        println!(
            "large_user: {groups} groups, {} journal entries, setup {:.1?}, {samples} samples each",
            head,
            t_setup.elapsed()
        );

        let n = groups;
        // The big user's updates: group_created and three messages per group.
        let total = 4 * groups;
        let rows = [
            (
                "GET /v1/conversations".to_owned(),
                time(&c, &big, "/v1/conversations", samples, |v| {
                    let list = v["conversations"].as_array().expect("conversations");
                    assert_eq!(list.len(), n);
                    assert_eq!(list[0]["unread"], json!(2));
                })
                .await,
            ),
            (
                "GET /v1/sync?since=0 (limit 100)".to_owned(),
                time(&c, &big, "/v1/sync?since=0&limit=100", samples, |v| {
                    assert_eq!(v["updates"].as_array().expect("updates").len(), total.min(100));
                    assert_eq!(v["more"], json!(total > 100));
                })
                .await,
            ),
            (
                "GET /v1/sync?since=0&limit=1000".to_owned(),
                time(&c, &big, "/v1/sync?since=0&limit=1000", samples / 3, |v| {
                    assert_eq!(v["updates"].as_array().expect("updates").len(), total.min(1000));
                })
                .await,
            ),
            (
                format!("GET /v1/sync?since={} (1 new)", head - 1),
                time(&c, &big, &format!("/v1/sync?since={}", head - 1), samples, |v| {
                    assert_eq!(v["updates"].as_array().expect("updates").len(), 1);
                })
                .await,
            ),
            (
                format!("GET /v1/sync?since={} (10 new)", head - 10),
                time(&c, &big, &format!("/v1/sync?since={}", head - 10), samples, |v| {
                    assert_eq!(v["updates"].as_array().expect("updates").len(), 10);
                })
                .await,
            ),
            (
                format!("GET /v1/sync?since={head} (caught up)"),
                time(&c, &big, &format!("/v1/sync?since={head}"), samples, |v| {
                    assert_eq!(v["updates"], json!([]));
                })
                .await,
            ),
        ];
        println!("{:<44} {:>10} {:>10} {:>10}", "request", "p50", "p99", "max");
        for (what, (p50, p99, max)) in rows {
            println!("{what:<44} {:>10.2?} {:>10.2?} {:>10.2?}", p50, p99, max);
        }
        drop(server);
    });
}
