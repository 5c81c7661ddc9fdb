//! Harness for the cluster tests: real `parley serve` processes on 127.0.0.1.
//!
//! [`Cluster::start`] picks free ports, starts N nodes (`--peers`, a fresh cluster secret and
//! admin token, each node's data dir and log file under one temp dir), and waits until every
//! node is ready and agrees on a leader. Nodes can be killed (`SIGKILL`), paused (`SIGSTOP`),
//! resumed, restarted on their data dir, and new nodes started with `--join`.
//!
//! Every wait is bounded. Children are spawned from one long-lived thread with a parent-death
//! signal, so they die with the test process however it ends, and are killed when the
//! [`Cluster`] drops. On a failing test the temp dir is kept and the tail of every node's log is
//! printed. Clusters in one test binary run one at a time ([`Cluster::start`] takes a global
//! lock): the machine has 2 cores.
//!
//! Multi-node; the single-node side is `node.rs`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Bound on a node becoming ready or the cluster electing a leader.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on one HTTP request.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(20);

pub const PASSWORD: &str = "correct horse battery";

/// The binary under test; `PARLEY_CLUSTER_BIN` points the measurement runs at a release build.
pub fn bin() -> String {
    std::env::var("PARLEY_CLUSTER_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_parley").to_string())
}

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

pub use super::flags::IP_LIMITS_OFF;
use super::spawn;

/// Spawns a `parley` child that dies with the test process (see `tests/support/spawn.rs`).
pub fn spawn_child(cmd: Command) -> Child {
    spawn::spawn_child(cmd).expect("spawn parley")
}

pub fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill(2) on a child we have not reaped, so the pid is still ours.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill({}, {sig}) failed", child.id());
}

/// `n` distinct free ports (all bound at once, then released).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    listeners.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

fn random_hex() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{:x}{:x}{:x}", t, std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

// ---------------------------------------------------------------------------------------------
// Cluster
// ---------------------------------------------------------------------------------------------

pub use super::netns;

/// Where a node runs: the address it listens on, the address its peers reach it at (when not
/// that one: a proxy), and what wraps its process (`ip netns exec <ns>`, environment).
#[derive(Clone, Debug, Default)]
pub struct Placement {
    pub addr: String,
    pub advertise: Option<String>,
    pub prefix: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl Placement {
    pub fn local(addr: String) -> Placement {
        Placement { addr, ..Placement::default() }
    }

    /// The address raft and forwarded writes use.
    pub fn peer_addr(&self) -> &str {
        self.advertise.as_deref().unwrap_or(&self.addr)
    }
}

/// One node's process and where it lives.
pub struct NodeProc {
    pub id: u64,
    pub addr: String,
    pub place: Placement,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    /// Started with `--join` (no `--peers`).
    pub join: bool,
    pub child: Option<Child>,
    pub stopped: bool,
}

pub struct Cluster {
    pub dir: Option<tempfile::TempDir>,
    pub secret: String,
    pub admin: String,
    pub peers: String,
    pub flags: Vec<String>,
    pub nodes: BTreeMap<u64, NodeProc>,
    pub http: reqwest::Client,
    /// `http`, or `https` for a cluster started with `--peer-tls-*` ([`Cluster::start_with`]).
    pub scheme: &'static str,
    _turn: tokio::sync::OwnedMutexGuard<()>,
}

/// One cluster at a time per test binary (also for tests that run `parley cluster`).
pub async fn turn() -> tokio::sync::OwnedMutexGuard<()> {
    static TURN: OnceLock<Arc<tokio::sync::Mutex<()>>> = OnceLock::new();
    TURN.get_or_init(|| Arc::new(tokio::sync::Mutex::new(()))).clone().lock_owned().await
}

/// The test's plain-HTTP client for a cluster's nodes.
fn default_http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .connect_timeout(Duration::from_secs(2))
        .pool_max_idle_per_host(32)
        .build()
        .unwrap()
}

/// Flags every node gets: no rate limits (the tests send as fast as they can).
pub const BASE_FLAGS: &[&str] = &["--rate-limit-per-user", "0", "--login-rate-limit", "0", "--cache-mb", "32"];

impl Cluster {
    /// Starts `n` voters (ids 1..=n) with `flags` added to each `parley serve`, and waits until
    /// all are ready and agree on a leader.
    pub async fn start(n: u64, flags: &[&str]) -> Cluster {
        Cluster::start_with(n, flags, default_http(), "http").await
    }

    /// Like [`Cluster::start`], reaching the nodes with `http` at `scheme://` (a TLS cluster).
    pub async fn start_with(n: u64, flags: &[&str], http: reqwest::Client, scheme: &'static str) -> Cluster {
        let ports = free_ports(n as usize);
        let places = (1..=n).zip(ports).map(|(id, p)| (id, Placement::local(format!("127.0.0.1:{p}")))).collect();
        Cluster::start_placed_with(places, flags, http, scheme).await
    }

    /// Starts one voter per entry of `places` (see [`Placement`]), like [`Cluster::start`].
    pub async fn start_placed(places: BTreeMap<u64, Placement>, flags: &[&str]) -> Cluster {
        Cluster::start_placed_with(places, flags, default_http(), "http").await
    }

    async fn start_placed_with(
        places: BTreeMap<u64, Placement>,
        flags: &[&str],
        http: reqwest::Client,
        scheme: &'static str,
    ) -> Cluster {
        let turn = turn().await;
        let dir = tempfile::Builder::new()
            .prefix("parley-cluster-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("temp dir");
        let peers = places.iter().map(|(id, p)| format!("{id}={}", p.peer_addr())).collect::<Vec<_>>().join(",");
        let mut cluster = Cluster {
            scheme,
            secret: format!("secret-{}", random_hex()),
            admin: format!("admin-{}", random_hex()),
            peers,
            flags: flags.iter().map(|s| s.to_string()).collect(),
            nodes: BTreeMap::new(),
            http,
            dir: Some(dir),
            _turn: turn,
        };
        for (id, place) in places {
            let data_dir = cluster.root().join(format!("node-{id}"));
            let log = cluster.root().join(format!("node-{id}.log"));
            let addr = place.addr.clone();
            let node = NodeProc { id, addr, place, data_dir, log, join: false, child: None, stopped: false };
            cluster.nodes.insert(id, node);
            cluster.spawn(id);
        }
        let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
        for id in &ids {
            cluster.wait_ready(*id).await;
        }
        cluster.wait_leader(&ids).await;
        cluster
    }

    pub fn root(&self) -> &Path {
        self.dir.as_ref().expect("temp dir kept until drop").path()
    }

    pub fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    pub fn url(&self, id: u64) -> String {
        format!("{}://{}", self.scheme, self.nodes[&id].addr)
    }

    pub fn addr(&self, id: u64) -> String {
        self.nodes[&id].addr.clone()
    }

    /// (Re)starts node `id`'s process on its data dir.
    pub fn spawn(&mut self, id: u64) {
        let node = self.nodes.get(&id).expect("known node");
        assert!(node.child.is_none(), "node {id} is already running");
        let log = OpenOptions::new().create(true).append(true).open(&node.log).unwrap();
        let mut cmd = match node.place.prefix.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(bin());
                cmd
            }
            None => Command::new(bin()),
        };
        cmd.envs(node.place.env.iter().map(|(k, v)| (k, v)));
        cmd.arg("serve")
            .arg("--node-id")
            .arg(id.to_string())
            .arg("--http")
            .arg(&node.addr)
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(BASE_FLAGS)
            .args(IP_LIMITS_OFF)
            .args(&self.flags)
            .env("PARLEY_CLUSTER_SECRET", &self.secret)
            .env("PARLEY_ADMIN_TOKEN", &self.admin)
            .env("RUST_LOG", "warn,parley=info,parley_api=info,parley_raft=info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some(advertise) = &node.place.advertise {
            cmd.arg("--advertise").arg(advertise);
        }
        if node.join {
            cmd.arg("--join");
        } else {
            cmd.arg("--peers").arg(&self.peers);
        }
        let child = spawn_child(cmd);
        let node = self.nodes.get_mut(&id).expect("known node");
        node.child = Some(child);
        node.stopped = false;
    }

    /// Starts a new node `id` with `--join` (it waits to be added); returns its address.
    pub fn spawn_joining(&mut self, id: u64) -> String {
        let port = free_ports(1)[0];
        self.spawn_joining_placed(id, Placement::local(format!("127.0.0.1:{port}")))
    }

    /// Starts a new node `id` with `--join` at `place`; returns the address peers use.
    pub fn spawn_joining_placed(&mut self, id: u64, place: Placement) -> String {
        let data_dir = self.root().join(format!("node-{id}"));
        let log = self.root().join(format!("node-{id}.log"));
        let (addr, peer) = (place.addr.clone(), place.peer_addr().to_string());
        self.nodes.insert(id, NodeProc { id, addr, place, data_dir, log, join: true, child: None, stopped: false });
        self.spawn(id);
        peer
    }

    /// SIGKILL, and reap.
    pub fn kill9(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).expect("known node");
        if let Some(mut child) = node.child.take() {
            if node.stopped {
                signal(&child, libc::SIGCONT);
            }
            child.kill().unwrap();
            child.wait().unwrap();
        }
        node.stopped = false;
    }

    /// SIGKILL every node at (almost) the same instant, then reap.
    pub fn kill9_all(&mut self) {
        let mut children = Vec::new();
        for node in self.nodes.values_mut() {
            if let Some(child) = node.child.take() {
                signal(&child, libc::SIGKILL);
                children.push(child);
            }
            node.stopped = false;
        }
        for mut c in children {
            c.wait().unwrap();
        }
    }

    /// SIGTERM (graceful stop), and wait for the exit.
    pub fn stop(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).expect("known node");
        if let Some(mut child) = node.child.take() {
            signal(&child, libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(15);
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    child.kill().unwrap();
                    panic!("node {id} did not stop within 15 s of SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// SIGSTOP: the node is frozen (a partition, as far as the others can tell).
    pub fn pause(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).expect("known node");
        signal(node.child.as_ref().expect("running"), libc::SIGSTOP);
        node.stopped = true;
    }

    pub fn resume(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).expect("known node");
        signal(node.child.as_ref().expect("running"), libc::SIGCONT);
        node.stopped = false;
    }

    pub fn running(&self) -> Vec<u64> {
        self.nodes.values().filter(|n| n.child.is_some() && !n.stopped).map(|n| n.id).collect()
    }

    // -- observing nodes ------------------------------------------------------------------------

    /// `GET /v1/cluster` on node `id`, or None if it does not answer quickly.
    pub async fn info(&self, id: u64) -> Option<Value> {
        let resp =
            self.http.get(format!("{}/v1/cluster", self.url(id))).timeout(Duration::from_secs(1)).send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.json().await.ok()
    }

    pub async fn ready(&self, id: u64) -> bool {
        match self.http.get(format!("{}/readyz", self.url(id))).timeout(Duration::from_secs(1)).send().await {
            Ok(r) => r.status().is_success(),
            Err(_) => false,
        }
    }

    pub async fn wait_ready(&self, id: u64) -> Duration {
        let start = Instant::now();
        while !self.ready(id).await {
            if start.elapsed() > READY_TIMEOUT {
                panic!("node {id} not ready within {READY_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        start.elapsed()
    }

    /// Waits until every node of `ids` reports the same leader, which is one of `ids`, in the
    /// same term; returns `(leader, term)`.
    pub async fn wait_leader(&self, ids: &[u64]) -> (u64, u64) {
        let start = Instant::now();
        loop {
            if let Some(found) = self.agreed_leader(ids).await {
                return found;
            }
            if start.elapsed() > READY_TIMEOUT {
                let mut seen = Vec::new();
                for id in ids {
                    seen.push((id, self.info(*id).await.map(|v| (v["leader_id"].clone(), v["term"].clone()))));
                }
                panic!("no agreed leader among {ids:?} within {READY_TIMEOUT:?}: {seen:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The leader and term all of `ids` agree on right now, if they do.
    pub async fn agreed_leader(&self, ids: &[u64]) -> Option<(u64, u64)> {
        let mut agreed: Option<(u64, u64)> = None;
        for id in ids {
            let v = self.info(*id).await?;
            let found = (v["leader_id"].as_u64()?, v["term"].as_u64()?);
            if agreed.is_some_and(|a| a != found) {
                return None;
            }
            agreed = Some(found);
        }
        agreed.filter(|(leader, _)| ids.contains(leader))
    }

    /// `GET /v1/admin/journal/verify`: `(ok, last_cursor, head_hash, digest)`.
    pub async fn verify(&self, id: u64) -> (bool, u64, String, String) {
        let v = self.get_admin(id, "/v1/admin/journal/verify").await;
        (
            v["ok"].as_bool().unwrap_or(false),
            v["last_cursor"].as_u64().unwrap_or(0),
            v["head_hash"].as_str().unwrap_or("").to_string(),
            v["digest"].as_str().unwrap_or("").to_string(),
        )
    }

    pub async fn get_admin(&self, id: u64, path: &str) -> Value {
        let resp = self.http.get(format!("{}{path}", self.url(id))).bearer_auth(&self.admin).send().await.unwrap();
        assert!(resp.status().is_success(), "GET {path} on node {id}: {}", resp.status());
        resp.json().await.unwrap()
    }

    /// Waits until every node of `ids` has the same journal (cursor and head hash, verified)
    /// as `reference`; returns how long it took.
    pub async fn wait_converged(&self, ids: &[u64], timeout: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let mut heads = Vec::new();
            for id in ids {
                heads.push(self.verify(*id).await);
            }
            let first = &heads[0];
            if heads.iter().all(|h| h.0 && h.1 == first.1 && h.2 == first.2) {
                return start.elapsed();
            }
            if start.elapsed() > timeout {
                panic!("journals of {ids:?} did not converge within {timeout:?}: {heads:?}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until `ids` have converged, then checks every journal verifies and that all have
    /// the same `(last_cursor, head_hash, digest)`; returns it and how long convergence took.
    pub async fn assert_identical(&self, ids: &[u64], timeout: Duration) -> ((u64, String, String), Duration) {
        let took = self.wait_converged(ids, timeout).await;
        let (ok, last, head, digest) = self.verify(ids[0]).await;
        assert!(ok, "node {}: journal does not verify", ids[0]);
        for id in &ids[1..] {
            let (ok2, last2, head2, digest2) = self.verify(*id).await;
            assert!(ok2, "node {id}: journal does not verify");
            assert_eq!((last2, &head2, &digest2), (last, &head, &digest), "node {id} differs from node {}", ids[0]);
        }
        ((last, head, digest), took)
    }

    /// Node `id`'s raft log: `(last_log_index, purged_index, snapshot_index)`.
    pub async fn raft_log(&self, id: u64) -> (u64, u64, Option<u64>) {
        let info = self.info(id).await.expect("cluster info");
        (
            info["last_log_index"].as_u64().unwrap(),
            info["purged_index"].as_u64().unwrap_or(0),
            info["snapshot_index"].as_u64(),
        )
    }

    pub fn log_tail(&self, id: u64, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.nodes[&id].log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            for id in self.nodes.keys() {
                eprintln!("---- node {id} log (tail) ----\n{}", self.log_tail(*id, 40));
            }
            if let Some(dir) = self.dir.take() {
                eprintln!("cluster data kept in {}", dir.keep().display());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers
// ---------------------------------------------------------------------------------------------

/// A user with a session token (valid on every node).
#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub token: String,
    /// The cursor of the login: a node serves this token once it has applied it.
    pub cursor: u64,
}

/// Three friends (registered on different nodes), their direct conversations and one group;
/// returns (users, conv -> a user who can read it, the group's conversation).
pub async fn population(c: &Cluster, tag: &str) -> (Vec<User>, BTreeMap<String, User>, String) {
    let http = &c.http;
    let bases: Vec<String> = c.ids().iter().map(|i| c.url(*i)).collect();
    let mut users = Vec::new();
    for (i, name) in ["ann", "ben", "cat"].iter().enumerate() {
        users.push(user(http, &bases[i % bases.len()], &format!("{name}_{tag}")).await);
    }
    let cursor = users.iter().map(|u| u.cursor).max().unwrap();
    applied_everywhere(http, &bases, cursor).await;
    befriend(http, &bases[0], &bases[1], &users[0], &users[1]).await;
    befriend(http, &bases[1], &bases[2], &users[1], &users[2]).await;
    befriend(http, &bases[2], &bases[0], &users[0], &users[2]).await;
    let (s, g) = post(
        http,
        &format!("{}/v1/groups", bases[1]),
        Some(&users[0].token),
        json!({"name": "failover", "members": [users[1].id, users[2].id]}),
    )
    .await;
    assert_eq!(s, 201, "{g}");
    let group_conv = g["conversation_id"].as_str().unwrap().to_string();
    applied_everywhere(http, &bases, g["cursor"].as_u64().unwrap()).await;
    let mut readers = BTreeMap::new();
    readers.insert(dm(&users[0].id, &users[1].id), users[0].clone());
    readers.insert(dm(&users[1].id, &users[2].id), users[1].clone());
    readers.insert(dm(&users[0].id, &users[2].id), users[2].clone());
    readers.insert(group_conv.clone(), users[0].clone());
    (users, readers, group_conv)
}

/// Node base URLs starting at node `first` and going round.
pub fn rotation(c: &Cluster, first: usize) -> Vec<String> {
    let ids = c.ids();
    (0..ids.len()).map(|k| c.url(ids[(first + k) % ids.len()])).collect()
}

/// Six senders over [`population`]'s conversations, two starting on each node: both sides of
/// every direct conversation and the group.
pub fn senders_everywhere(c: &Cluster, users: &[User], group: &str) -> Vec<Sender> {
    let (ann, ben, cat) = (&users[0], &users[1], &users[2]);
    let plan = [
        (ann, dm(&ann.id, &ben.id)),
        (ben, dm(&ann.id, &ben.id)),
        (ben, dm(&ben.id, &cat.id)),
        (cat, dm(&ben.id, &cat.id)),
        (cat, dm(&ann.id, &cat.id)),
        (ann, group.to_string()),
    ];
    plan.iter()
        .enumerate()
        .map(|(i, (u, conv))| Sender { user: (*u).clone(), conv: conv.clone(), bases: rotation(c, i % 3) })
        .collect()
}

/// `(status, body)` of a request; body `Null` when not JSON.
pub async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Result<(u16, Value), reqwest::Error> {
    let mut req = http.request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await?;
    Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
}

pub async fn post(http: &reqwest::Client, url: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    call(http, reqwest::Method::POST, url, token, Some(&body)).await.unwrap_or_else(|e| panic!("POST {url}: {e}"))
}

pub async fn get(http: &reqwest::Client, url: &str, token: Option<&str>) -> (u16, Value) {
    call(http, reqwest::Method::GET, url, token, None).await.unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// Registers `id` on node `base` and logs in on the same node.
pub async fn user(http: &reqwest::Client, base: &str, id: &str) -> User {
    let (s, b) = post(http, &format!("{base}/v1/users"), None, json!({"user_id": id, "password": PASSWORD})).await;
    assert_eq!(s, 201, "register {id}: {b}");
    login(http, base, id).await
}

pub async fn login(http: &reqwest::Client, base: &str, id: &str) -> User {
    let (s, b) = post(http, &format!("{base}/v1/sessions"), None, json!({"user_id": id, "password": PASSWORD})).await;
    assert_eq!(s, 201, "login {id}: {b}");
    User { id: id.to_string(), token: b["token"].as_str().unwrap().to_string(), cursor: b["cursor"].as_u64().unwrap() }
}

/// Waits until every node in `bases` has applied `cursor` (a read with `min_cursor`).
pub async fn applied_everywhere(http: &reqwest::Client, bases: &[String], cursor: u64) {
    for base in bases {
        let (s, b) = get(http, &format!("{base}/v1/cluster?min_cursor={cursor}"), None).await;
        assert_eq!(s, 200, "{base} did not apply cursor {cursor}: {b}");
    }
}

/// `a` asks `b` on node `base_a`, `b` accepts on node `base_b`.
pub async fn befriend(http: &reqwest::Client, base_a: &str, base_b: &str, a: &User, b: &User) {
    let (s, body) = post(http, &format!("{base_a}/v1/friends/requests"), Some(&a.token), json!({"to": b.id})).await;
    assert_eq!(s, 201, "friend request: {body}");
    let url = format!("{base_b}/v1/friends/requests/{}/accept", a.id);
    let (s, body) = post(http, &url, Some(&b.token), json!({})).await;
    assert_eq!(s, 200, "accept: {body}");
}

pub fn dm(a: &str, b: &str) -> String {
    if a < b {
        format!("d:{a}:{b}")
    } else {
        format!("d:{b}:{a}")
    }
}

/// Every message of `conv` as node `base` has it (after it has applied `min_cursor`).
pub async fn messages(http: &reqwest::Client, base: &str, user: &User, conv: &str, min_cursor: u64) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let url =
            format!("{base}/v1/conversations/{conv}/messages?after_seq={after}&limit=500&min_cursor={min_cursor}");
        let (s, b) = get(http, &url, Some(&user.token)).await;
        assert_eq!(s, 200, "messages of {conv} on {base}: {b}");
        let page = b["messages"].as_array().unwrap().clone();
        if page.is_empty() {
            return out;
        }
        after = page.last().unwrap()["seq"].as_u64().unwrap();
        out.extend(page);
    }
}

/// Everything user `u`'s sync returns from node `base`, from cursor 0.
pub async fn full_sync(http: &reqwest::Client, base: &str, u: &User) -> Vec<Value> {
    let mut out = Vec::new();
    let mut since = 0;
    loop {
        let (s, b) = get(http, &format!("{base}/v1/sync?since={since}&limit=1000"), Some(&u.token)).await;
        assert_eq!(s, 200, "sync on {base}: {b}");
        out.extend(b["updates"].as_array().expect("updates").iter().cloned());
        since = b["cursor"].as_u64().expect("cursor");
        if !b["more"].as_bool().expect("more") {
            return out;
        }
    }
}

/// A value's percentile (nearest rank) of a sorted slice.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

// ---------------------------------------------------------------------------------------------
// Load: concurrent senders that retry with the same client_msg_id until acknowledged
// ---------------------------------------------------------------------------------------------

/// One acknowledged send.
#[derive(Clone, Debug)]
pub struct Ack {
    pub client: usize,
    pub conv: String,
    pub cmid: String,
    pub seq: u64,
    pub cursor: u64,
    pub at: Instant,
    /// From the first attempt to the acknowledgement, retries included.
    pub took: Duration,
}

/// What a sender does: who sends, where, and which nodes it may use (it starts on the first
/// and moves to the next on any error).
#[derive(Clone, Debug)]
pub struct Sender {
    pub user: User,
    pub conv: String,
    pub bases: Vec<String>,
}

/// Senders running until [`Load::stop`].
pub struct Load {
    stop: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pub acks: Arc<Mutex<Vec<Ack>>>,
    pub retries: Arc<AtomicU64>,
}

/// How long one message may take to be acknowledged, retries included.
pub const SEND_GIVE_UP: Duration = Duration::from_secs(45);

impl Load {
    /// Starts one task per sender; each sends `limit` messages (or until stopped), one at a
    /// time, retrying each with the same `client_msg_id` until it is acknowledged.
    pub fn start(http: &reqwest::Client, senders: Vec<Sender>, tag: &str, limit: Option<usize>) -> Load {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let retries = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for (i, s) in senders.into_iter().enumerate() {
            let (stop, acks, retries, http, tag) =
                (stop.clone(), acks.clone(), retries.clone(), http.clone(), tag.to_string());
            tasks.push(tokio::spawn(async move {
                let mut node = 0usize;
                let mut k = 0usize;
                while !stop.load(Ordering::Relaxed) && !matches!(limit, Some(l) if k >= l) {
                    let cmid = format!("{tag}{i}-{k}");
                    let body = json!({"client_msg_id": cmid, "body": format!("{tag} {i} {k}")});
                    let started = Instant::now();
                    loop {
                        let url = format!("{}/v1/conversations/{}/messages", s.bases[node % s.bases.len()], s.conv);
                        let sent = call(&http, reqwest::Method::POST, &url, Some(&s.user.token), Some(&body)).await;
                        match sent {
                            Ok((200 | 201, b)) => {
                                let ack = Ack {
                                    client: i,
                                    conv: s.conv.clone(),
                                    cmid: cmid.clone(),
                                    seq: b["message"]["seq"].as_u64().expect("seq"),
                                    cursor: b["cursor"].as_u64().expect("cursor"),
                                    at: Instant::now(),
                                    took: started.elapsed(),
                                };
                                acks.lock().unwrap().push(ack);
                                break;
                            }
                            // Unavailable (no leader, leader unreachable, not committed in
                            // time) or the node is down: the same message again elsewhere.
                            Ok((503, _)) | Err(_) => {
                                retries.fetch_add(1, Ordering::Relaxed);
                                node += 1;
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                            Ok((status, b)) => panic!("send {cmid} to {url}: unexpected {status} {b}"),
                        }
                        assert!(started.elapsed() < SEND_GIVE_UP, "{cmid} not acknowledged within {SEND_GIVE_UP:?}");
                    }
                    k += 1;
                }
            }));
        }
        Load { stop, tasks, acks, retries }
    }

    /// Stops the senders after their message in flight is acknowledged; returns every ack.
    pub async fn stop(self) -> Vec<Ack> {
        self.stop.store(true, Ordering::Relaxed);
        self.finish().await
    }

    /// Waits until every sender has sent its `limit`.
    pub async fn finish(self) -> Vec<Ack> {
        for t in self.tasks {
            t.await.expect("sender task");
        }
        let acks = self.acks.lock().unwrap().clone();
        acks
    }

    pub fn acked(&self) -> usize {
        self.acks.lock().unwrap().len()
    }
}

/// What node `base` holds of the acknowledged sends: how many are missing or at another seq,
/// how many client message ids are stored more than once, and whether some conversation's
/// seqs are not exactly 1..N.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tally {
    pub lost: usize,
    pub duplicated: usize,
    pub seq_gaps: usize,
    /// The first few problems, for the failure message.
    pub problems: Vec<String>,
}

impl Tally {
    fn problem(&mut self, p: String) {
        if self.problems.len() < 10 {
            self.problems.push(p);
        }
    }

    pub fn clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.seq_gaps == 0
    }
}

/// Counts, on node `base`, the acknowledged messages that are not stored exactly once at the
/// seq they were acknowledged with, and the conversations whose seqs are not exactly 1..N.
pub async fn tally(http: &reqwest::Client, base: &str, reader: &BTreeMap<String, User>, acks: &[Ack]) -> Tally {
    let min_cursor = acks.iter().map(|a| a.cursor).max().unwrap_or(0);
    let mut t = Tally::default();
    for (conv, user) in reader {
        let stored = messages(http, base, user, conv, min_cursor).await;
        let seqs: Vec<u64> = stored.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
        let expected: Vec<u64> = (1..=stored.len() as u64).collect();
        if seqs != expected {
            t.seq_gaps += 1;
            t.problem(format!("{conv} on {base}: seqs are not 1..N"));
        }
        let mut by_cmid: BTreeMap<String, u64> = BTreeMap::new();
        for m in &stored {
            let cmid = m["client_msg_id"].as_str().unwrap().to_string();
            let seq = m["seq"].as_u64().unwrap();
            if by_cmid.insert(cmid.clone(), seq).is_some() {
                t.duplicated += 1;
                t.problem(format!("{cmid} stored twice in {conv} on {base}"));
            }
        }
        for a in acks.iter().filter(|a| &a.conv == conv) {
            if by_cmid.get(&a.cmid) != Some(&a.seq) {
                t.lost += 1;
                t.problem(format!("acknowledged {} (seq {}) missing or moved in {conv} on {base}", a.cmid, a.seq));
            }
        }
    }
    t
}

/// Checks on node `base` that every acknowledged message is stored exactly once with the seq
/// it was acknowledged with, and that each conversation's seqs are exactly 1..N.
pub async fn check_exactly_once(http: &reqwest::Client, base: &str, reader: &BTreeMap<String, User>, acks: &[Ack]) {
    let t = tally(http, base, reader, acks).await;
    assert!(t.clean(), "{base}: {t:?}");
}

/// The largest pause between consecutive acknowledgements that ends in `(from, to]`: after a
/// kill at `from`, how long no write at all was acknowledged.
pub fn longest_gap(acks: &[Ack], from: Instant, to: Instant) -> Duration {
    let mut times: Vec<Instant> = acks.iter().map(|a| a.at).collect();
    times.sort();
    times.windows(2).filter(|w| w[1] > from && w[1] <= to).map(|w| w[1] - w[0]).max().unwrap_or_default()
}

pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 10.0).round() / 10.0
}
