//! A three-node cluster from one binary: any node accepts any request, reads are
//! read-your-writes with `?min_cursor`, raft traffic needs the cluster secret, sync streams are
//! identical on every node, restarts reuse state, and `parley cluster` runs a local cluster.

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use support::cluster::*;
use tokio_tungstenite::tungstenite::Message;

fn others(ids: &[u64], not: u64) -> Vec<u64> {
    ids.iter().copied().filter(|i| *i != not).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_node_accepts_any_request_with_read_your_writes_and_restarts_reuse_state() {
    let mut c = Cluster::start(3, &[]).await;
    let http = c.http.clone();
    let ids = c.ids();
    let (leader, term) = c.wait_leader(&ids).await;

    // `/v1/cluster` and `/readyz` on every node.
    for id in &ids {
        let info = c.info(*id).await.expect("cluster info");
        assert_eq!(info["node_id"], json!(id));
        assert_eq!(info["leader_id"], json!(leader));
        assert_eq!(info["term"], json!(term));
        assert!(info["last_applied"].as_u64().unwrap() >= 1, "{info}");
        let members = info["members"].as_array().unwrap();
        assert_eq!(members.len(), 3, "{info}");
        for m in members {
            let mid = m["node_id"].as_u64().unwrap();
            assert_eq!(m["voter"], json!(true));
            assert_eq!(m["addr"].as_str().unwrap(), c.addr(mid));
        }
        assert!(c.ready(*id).await, "node {id} not ready");
    }

    let followers = others(&ids, leader);
    let (f1, f2) = (followers[0], followers[1]);
    let bases: Vec<String> = ids.iter().map(|i| c.url(*i)).collect();
    // Registration and login on followers (forwarded to the leader).
    let alice = user(&http, &c.url(f1), "alice_b").await;
    let bob = user(&http, &c.url(f2), "bob_b").await;
    applied_everywhere(&http, &bases, alice.cursor.max(bob.cursor)).await;
    // A token from any node works on every node.
    for base in &bases {
        let (s, b) = get(&http, &format!("{base}/v1/me"), Some(&alice.token)).await;
        assert_eq!((s, b["user_id"].as_str()), (200, Some("alice_b")), "{base}: {b}");
    }
    befriend(&http, &c.url(f1), &c.url(leader), &alice, &bob).await;
    let conv = dm(&alice.id, &bob.id);

    // A write on any node, then a read on another node with its cursor sees it.
    let order = [f1, leader, f2, f1];
    for (i, id) in order.iter().enumerate() {
        let url = format!("{}/v1/conversations/{conv}/messages", c.url(*id));
        let (s, b) = post(
            &http,
            &url,
            Some(&alice.token),
            json!({"client_msg_id": format!("b-{i}"), "body": format!("hi {i}")}),
        )
        .await;
        assert_eq!(s, 201, "send on node {id}: {b}");
        assert_eq!(b["message"]["seq"], json!(i as u64 + 1));
        let cursor = b["cursor"].as_u64().unwrap();
        let next = order[(i + 1) % order.len()];
        let next = if next == *id { f2 } else { next };
        let url = format!("{}/v1/conversations/{conv}/messages?after_seq={i}&min_cursor={cursor}", c.url(next));
        let (s, b) = get(&http, &url, Some(&bob.token)).await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["messages"][0]["body"], json!(format!("hi {i}")), "read-your-writes on node {next}: {b}");
    }
    // The same client_msg_id through another node is the original message, stored once.
    let url = format!("{}/v1/conversations/{conv}/messages", c.url(f2));
    let (s, b) = post(&http, &url, Some(&alice.token), json!({"client_msg_id": "b-0", "body": "hi 0"})).await;
    assert_eq!((s, &b["message"]["seq"]), (200, &json!(1)), "idempotent retry: {b}");
    assert_eq!(messages(&http, &c.url(leader), &bob, &conv, 0).await.len(), 4);

    // A read waiting for a cursor this node never reaches gives up with 503 after ~5 s.
    let start = Instant::now();
    let (s, b) = get(&http, &format!("{}/v1/me?min_cursor=999999999", c.url(f1)), Some(&alice.token)).await;
    assert_eq!((s, b["error"]["code"].as_str()), (503, Some("unavailable")), "{b}");
    assert!(start.elapsed() >= Duration::from_millis(4500), "gave up after {:?}", start.elapsed());

    c.wait_converged(&ids, Duration::from_secs(10)).await;
    let before: Vec<(bool, u64, String, String)> = {
        let mut v = Vec::new();
        for id in &ids {
            v.push(c.verify(*id).await);
        }
        v
    };

    // Restart every node (SIGTERM): state, tokens and the raft term are kept.
    for id in &ids {
        c.stop(*id);
    }
    for id in &ids {
        c.spawn(*id);
    }
    for id in &ids {
        c.wait_ready(*id).await;
    }
    let (_, term_after) = c.wait_leader(&ids).await;
    assert!(term_after >= term, "term went back from {term} to {term_after}");
    for (i, id) in ids.iter().enumerate() {
        let (ok, last, head, _) = c.verify(*id).await;
        assert!(ok);
        assert!(last >= before[i].1, "node {id} lost journal entries on restart");
        if last == before[i].1 {
            assert_eq!(head, before[i].2);
        }
        let (s, b) = get(&http, &format!("{}/v1/me", c.url(*id)), Some(&alice.token)).await;
        assert_eq!(s, 200, "token refused on node {id} after restart: {b}");
    }
    let url = format!("{}/v1/conversations/{conv}/messages", c.url(f2));
    let (s, b) = post(&http, &url, Some(&bob.token), json!({"client_msg_id": "after-restart", "body": "back"})).await;
    assert_eq!((s, &b["message"]["seq"]), (201, &json!(5)), "{b}");
    c.wait_converged(&ids, Duration::from_secs(10)).await;
}

/// Request headers as `(name, value)` pairs.
type Headers = Vec<(&'static str, String)>;

fn hmac_hex(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_rpcs_without_the_cluster_secret_are_refused_and_touch_nothing() {
    let c = Cluster::start(3, &[]).await;
    let http = c.http.clone();
    let ids = c.ids();
    let (leader, term) = c.wait_leader(&ids).await;
    let mut before = Vec::new();
    for id in &ids {
        let info = c.info(*id).await.unwrap();
        before.push((info["term"].clone(), info["vote"].clone(), info["last_log_index"].clone(), c.verify(*id).await));
    }

    // Requests that would disrupt the cluster if accepted: a vote in a far higher term, an
    // append from a fake leader, a forged client command.
    let high = term + 100;
    let vote = json!({"vote": {"leader_id": {"term": high, "node_id": 9}, "committed": false},
                      "last_log_id": {"leader_id": {"term": high, "node_id": 9}, "index": 1_000_000}});
    let append = json!({"vote": {"leader_id": {"term": high, "node_id": 9}, "committed": true},
                        "prev_log_id": null, "leader_commit": null, "entries": []});
    let snapshot = json!({"vote": {"leader_id": {"term": high, "node_id": 9}, "committed": true},
                          "meta": {}, "offset": 0, "data": [], "done": true});
    let write =
        json!({"ts": 1, "kind": {"Register": {"user_id": "mallory", "display_name": "m", "password_hash": "x"}}});
    let rpcs = [("append", append), ("vote", vote), ("snapshot", snapshot), ("write", write)];
    for id in &ids {
        for (rpc, body) in &rpcs {
            let bytes = serde_json::to_vec(body).unwrap();
            let other_body = serde_json::to_vec(&json!({"other": true})).unwrap();
            let path = format!("/raft/{rpc}");
            let envelope = |secret: &[u8], body: &[u8]| {
                Some(parley_raft::envelope::sign(secret, 9, Some(*id), "POST", &path, body).headers().to_vec())
            };
            let not_hex = envelope(c.secret.as_bytes(), &bytes).map(|mut h| {
                h[4].1 = "not-a-mac".into();
                h
            });
            let headers: [(&str, Option<Headers>); 5] = [
                ("no header", None),
                (
                    "a body-only MAC (the old scheme)",
                    Some(vec![("Parley-Raft-Auth", hmac_hex(c.secret.as_bytes(), &bytes))]),
                ),
                ("not hex", not_hex),
                ("wrong secret", envelope(b"not the cluster secret", &bytes)),
                ("mac of another body", envelope(c.secret.as_bytes(), &other_body)),
            ];
            for (what, header) in headers {
                let mut req = http
                    .post(format!("{}/raft/{rpc}", c.url(*id)))
                    .header("content-type", "application/json")
                    .body(bytes.clone());
                for (name, value) in header.into_iter().flatten() {
                    req = req.header(name, value);
                }
                let resp = req.send().await.unwrap();
                let status = resp.status().as_u16();
                let b: Value = resp.json().await.unwrap_or(Value::Null);
                assert_eq!(status, 401, "/raft/{rpc} on node {id} with {what}: {b}");
                assert_eq!(b["error"]["code"], json!("unauthorized"), "{b}");
            }
        }
    }

    // A signed body in another wire version (JSON, as parleys before the binary wire sent) is
    // refused, naming the versions, and changes nothing.
    let stale = serde_json::to_vec(&json!({"vote": {"leader_id": {"term": 0, "node_id": 9}, "committed": false},
                                            "last_log_id": null}))
    .unwrap();
    let signed = parley_raft::envelope::sign(c.secret.as_bytes(), 9, Some(leader), "POST", "/raft/vote", &stale);
    let resp = signed
        .apply(http.post(format!("{}/raft/vote", c.url(leader))))
        .header("content-type", "application/json")
        .body(stale)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400, "a JSON raft body is refused");
    let b: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(b["error"]["message"].as_str().is_some_and(|m| m.contains("JSON")), "the refusal says why: {b}");

    // Positive control: the same endpoint with a valid signature and this wire version is
    // served (a stale vote request, which changes nothing).
    let vote = parley_raft::types::VoteRequest::new(parley_raft::types::Vote::new(0, 9), None);
    let stale = parley_raft::wire::encode(&vote).unwrap();
    let signed = parley_raft::envelope::sign(c.secret.as_bytes(), 9, Some(leader), "POST", "/raft/vote", &stale);
    let resp = signed
        .apply(http.post(format!("{}/raft/vote", c.url(leader))))
        .header("content-type", "application/octet-stream")
        .body(stale)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "a signed request is served");

    // Nothing moved: term, vote, raft log, journal, leader. (Should a loaded machine delay
    // heartbeats enough for a genuine re-election, term and log may move, but never to the
    // forged term or leader.)
    let (leader_after, term_after) = c.wait_leader(&ids).await;
    assert!(
        term_after < high && ids.contains(&leader_after),
        "forged vote adopted: leader {leader_after} term {term_after}"
    );
    for (i, id) in ids.iter().enumerate() {
        let info = c.info(*id).await.unwrap();
        assert_ne!(info["vote"]["node_id"], json!(9), "node {id} voted for the forger: {info}");
        assert!(info["term"].as_u64().unwrap() < high, "node {id} adopted the forged term: {info}");
        if term_after == term {
            assert_eq!(info["term"], before[i].0, "term of node {id} changed");
            assert_eq!(info["vote"], before[i].1, "vote of node {id} changed");
            assert_eq!(info["last_log_index"], before[i].2, "raft log of node {id} changed");
        }
        assert_eq!(c.verify(*id).await, before[i].3, "journal of node {id} changed");
    }
    let (s, _) = post(
        &http,
        &format!("{}/v1/sessions", c.url(leader)),
        None,
        json!({"user_id": "mallory", "password": PASSWORD}),
    )
    .await;
    assert_eq!(s, 401, "the forged registration must not exist");
}

/// Pages of `GET /v1/sync` on rotating nodes, then a WebSocket on one node, then on another:
/// every update arrives once, in cursor order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_switching_nodes_mid_stream_sees_each_update_once_in_order() {
    let c = Cluster::start(3, &[]).await;
    let http = c.http.clone();
    let ids = c.ids();
    let bases: Vec<String> = ids.iter().map(|i| c.url(*i)).collect();
    let alice = user(&http, &bases[0], "alice_s").await;
    let bob = user(&http, &bases[1], "bob_s").await;
    applied_everywhere(&http, &bases, alice.cursor.max(bob.cursor)).await;
    befriend(&http, &bases[2], &bases[0], &alice, &bob).await;
    let conv = dm(&alice.id, &bob.id);
    const SENDS: usize = 60;

    // Writers: alice and bob send, alternating nodes, while bob's devices sync.
    let writer = {
        let (http, bases, alice, bob, conv) = (http.clone(), bases.clone(), alice.clone(), bob.clone(), conv.clone());
        tokio::spawn(async move {
            for i in 0..SENDS {
                let (who, base) = if i % 4 == 3 { (&bob, &bases[(i + 1) % 3]) } else { (&alice, &bases[i % 3]) };
                let url = format!("{base}/v1/conversations/{conv}/messages");
                let (s, b) = post(
                    &http,
                    &url,
                    Some(&who.token),
                    json!({"client_msg_id": format!("s-{i}"), "body": format!("m{i}")}),
                )
                .await;
                assert_eq!(s, 201, "{b}");
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        })
    };

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen: Vec<Value> = Vec::new();
    let mut last_cursor = 0u64;
    let mut since = 0u64;
    let count_msgs = |seen: &Vec<Value>| seen.iter().filter(|u| u["type"] == "message").count();
    let mut accept = |updates: &[Value], seen: &mut Vec<Value>, where_: &str| {
        for u in updates {
            let cur = u["cursor"].as_u64().unwrap();
            assert!(cur > last_cursor, "update {cur} after {last_cursor} ({where_}): repeated or out of order");
            last_cursor = cur;
            seen.push(u.clone());
        }
    };

    // Phase 1: HTTP pages of 7, each from the next node.
    let mut page = 0usize;
    while count_msgs(&seen) < SENDS / 3 {
        assert!(Instant::now() < deadline, "phase 1 timed out");
        let base = &bases[page % 3];
        page += 1;
        let (s, b) = get(&http, &format!("{base}/v1/sync?since={since}&limit=7&wait_ms=1000"), Some(&bob.token)).await;
        assert_eq!(s, 200, "{b}");
        let next = b["cursor"].as_u64().unwrap();
        assert!(next >= since, "sync cursor went back from {since} to {next} on {base}");
        accept(b["updates"].as_array().unwrap(), &mut seen, base);
        since = next;
    }

    // Phases 2 and 3: a WebSocket on one node, then on another, each resuming from the cursor.
    for (phase, base) in [(2, &bases[1]), (3, &bases[2])] {
        let target = if phase == 2 { 2 * SENDS / 3 } else { SENDS };
        let ws_url = format!("{}/v1/ws?token={}", base.replace("http://", "ws://"), bob.token);
        let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.expect("websocket");
        ws.send(Message::text(json!({"type": "sync", "since": since}).to_string())).await.unwrap();
        while count_msgs(&seen) < target {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = tokio::time::timeout(left, ws.next()).await.expect("phase timed out").unwrap().unwrap();
            let Message::Text(text) = frame else { continue };
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["type"] != "updates" {
                continue;
            }
            accept(v["updates"].as_array().unwrap(), &mut seen, base);
            since = since.max(v["cursor"].as_u64().unwrap());
        }
        let _ = ws.close(None).await;
    }
    writer.await.unwrap();

    // Exactly the updates the journal holds for bob, as any node serves them from 0.
    let mut full = Vec::new();
    let mut from = 0;
    loop {
        let (s, b) = get(
            &http,
            &format!("{}/v1/sync?since={from}&limit=1000&min_cursor={last_cursor}", bases[0]),
            Some(&bob.token),
        )
        .await;
        assert_eq!(s, 200);
        full.extend(
            b["updates"].as_array().unwrap().iter().filter(|u| u["cursor"].as_u64().unwrap() <= last_cursor).cloned(),
        );
        from = b["cursor"].as_u64().unwrap();
        if !b["more"].as_bool().unwrap() {
            break;
        }
    }
    let seen_cursors: Vec<u64> = seen.iter().map(|u| u["cursor"].as_u64().unwrap()).collect();
    let full_cursors: Vec<u64> = full.iter().map(|u| u["cursor"].as_u64().unwrap()).collect();
    assert_eq!(seen_cursors, full_cursors, "switching nodes changed the stream");
    assert_eq!(seen, full, "the same updates, field for field");
    let cmids: BTreeSet<String> = seen
        .iter()
        .filter(|u| u["type"] == "message")
        .map(|u| u["message"]["client_msg_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(cmids.len(), SENDS, "every message once");
}

/// `parley cluster --nodes 3 --base-port 0`: prints the secret, the admin token and one
/// `node <id> http://<addr>` line per node once all are ready; SIGTERM stops every node; a
/// second run on the same data dir brings the same cluster back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parley_cluster_runs_a_local_cluster_and_stops_it() {
    let _turn = turn().await;
    let dir = tempfile::Builder::new().prefix("parley-cluster-cmd-").tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let http = reqwest::Client::builder().timeout(HTTP_TIMEOUT).build().unwrap();
    let mut first_nodes: Vec<String> = Vec::new();
    for run in 0..2 {
        let mut cmd = Command::new(bin());
        cmd.args(["cluster", "--nodes", "3", "--base-port", "0", "--data-dir"])
            .arg(dir.path())
            .args(["--", "--rate-limit-per-user", "0"])
            .args(IP_LIMITS_OFF)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = spawn_child(cmd);
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut lines = Vec::new();
        while lines.iter().filter(|l: &&String| l.starts_with("node ")).count() < 3 {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(l) => lines.push(l),
                Err(e) => {
                    let _ = child.kill();
                    panic!("parley cluster printed {lines:?} and then {e:?}");
                }
            }
        }
        let admin = lines.iter().find_map(|l| l.strip_prefix("admin-token ")).expect("admin token printed").to_string();
        assert!(lines.iter().any(|l| l.starts_with("cluster-secret ")), "{lines:?}");
        let nodes: Vec<String> = lines.iter().filter(|l| l.starts_with("node ")).cloned().collect();
        let mut urls = Vec::new();
        for (i, line) in nodes.iter().enumerate() {
            let parts: Vec<&str> = line.split(' ').collect();
            assert_eq!(parts.len(), 3, "{line:?}");
            assert_eq!(parts[1], (i + 1).to_string(), "{line:?}");
            assert!(parts[2].starts_with("http://127.0.0.1:"), "{line:?}");
            urls.push(parts[2].to_string());
        }
        for u in &urls {
            let (s, _) = get(&http, &format!("{u}/readyz"), None).await;
            assert_eq!(s, 200, "{u} not ready");
        }
        let (s, info) = get(&http, &format!("{}/v1/cluster", urls[0]), None).await;
        assert_eq!(s, 200);
        let addrs: BTreeSet<String> = info["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| format!("http://{}", m["addr"].as_str().unwrap()))
            .collect();
        assert_eq!(addrs, urls.iter().cloned().collect::<BTreeSet<_>>());
        let (s, v) =
            call(&http, reqwest::Method::GET, &format!("{}/v1/admin/journal/verify", urls[2]), Some(&admin), None)
                .await
                .unwrap();
        assert_eq!((s, &v["ok"]), (200, &json!(true)), "{v}");
        if run == 0 {
            let (s, b) = post(
                &http,
                &format!("{}/v1/users", urls[1]),
                None,
                json!({"user_id": "carol_c", "password": PASSWORD}),
            )
            .await;
            assert_eq!(s, 201, "{b}");
            first_nodes = nodes.clone();
        } else {
            assert_eq!(nodes, first_nodes, "a restart keeps the nodes' addresses");
            let (s, b) = post(
                &http,
                &format!("{}/v1/sessions", urls[2]),
                None,
                json!({"user_id": "carol_c", "password": PASSWORD}),
            )
            .await;
            assert_eq!(s, 201, "state kept across runs: {b}");
        }

        signal(&child, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            assert!(Instant::now() < deadline, "parley cluster did not stop within 20 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(status.success(), "parley cluster exited with {status}");
        for u in &urls {
            let addr = u.trim_start_matches("http://");
            assert!(std::net::TcpStream::connect(addr).is_err(), "{addr} still listening after stop");
        }
    }
}

/// Not part of the suite: write throughput and latency of a three-node cluster, for
/// docs/CLUSTER.md and docs/scaling.md. Run against a release build:
///
/// ```text
/// cargo build --release
/// PARLEY_CLUSTER_BIN=target/release/parley cargo test --test cluster_basic measure -- --ignored --nocapture
/// ```
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test"]
async fn measure_write_throughput() {
    // MEASURE_FLAGS: extra `parley serve` flags, e.g. "--snapshot-every 5000".
    let flags = std::env::var("MEASURE_FLAGS").unwrap_or_default();
    let flags: Vec<&str> = flags.split_whitespace().collect();
    let c = Cluster::start(3, &flags).await;
    let http = c.http.clone();
    let ids = c.ids();
    let (leader, _) = c.wait_leader(&ids).await;
    let bases: Vec<String> = ids.iter().map(|i| c.url(*i)).collect();
    const USERS: usize = 8;
    let mut users = Vec::new();
    for i in 0..USERS {
        users.push(user(&http, &bases[i % 3], &format!("tp_{i}")).await);
    }
    applied_everywhere(&http, &bases, users.iter().map(|u| u.cursor).max().unwrap()).await;
    for i in 0..USERS {
        befriend(&http, &bases[0], &bases[1], &users[i], &users[(i + 1) % USERS]).await;
    }
    let secs: u64 = std::env::var("MEASURE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(8);
    for (label, spread) in [("all to the leader", false), ("spread over the 3 nodes", true)] {
        for concurrency in [8usize, 32, 64] {
            let senders: Vec<Sender> = (0..concurrency)
                .map(|k| {
                    let i = k % USERS;
                    let (from, to) = if k / USERS % 2 == 1 { ((i + 1) % USERS, i) } else { (i, (i + 1) % USERS) };
                    let node = if spread { bases[k % 3].clone() } else { c.url(leader) };
                    Sender { user: users[from].clone(), conv: dm(&users[from].id, &users[to].id), bases: vec![node] }
                })
                .collect();
            let tag = format!("t{concurrency}{}", if spread { "s" } else { "l" });
            let started = Instant::now();
            let load = Load::start(&http, senders, &tag, None);
            tokio::time::sleep(Duration::from_secs(secs)).await;
            let acks = load.stop().await;
            let elapsed = started.elapsed().as_secs_f64();
            let mut lat: Vec<f64> = acks.iter().map(|a| ms(a.took)).collect();
            lat.sort_by(f64::total_cmp);
            println!(
                "FIGURES throughput {label}, {concurrency} concurrent senders: {:.0} msgs/s, latency p50 {} ms p99 {} ms max {} ms",
                acks.len() as f64 / elapsed,
                percentile(&lat, 50.0),
                percentile(&lat, 99.0),
                percentile(&lat, 100.0)
            );
        }
    }
    let (last, purged, snapshot) = {
        let info = c.info(leader).await.unwrap();
        (info["last_log_index"].clone(), info["purged_index"].clone(), info["snapshot_index"].clone())
    };
    let du = Command::new("du").arg("-sk").arg(&c.nodes[&leader].data_dir).output().unwrap();
    println!(
        "FIGURES leader raft log last {last} purged {purged} snapshot {snapshot}; data dir {}",
        String::from_utf8_lossy(&du.stdout).split_whitespace().next().unwrap_or("?").to_string() + " KiB"
    );
}

/// An app backend on three nodes: a user created and given a token on node 2 is served on
/// node 3; deactivating them on node 1 closes their socket on node 3 (4001) and refuses their
/// login on every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_users_and_deactivation_reach_every_node() {
    let c = Cluster::start(3, &[]).await;
    let (http, admin) = (&c.http, c.admin.as_str());
    let (n1, n2, n3) = (c.url(1), c.url(2), c.url(3));
    let id = "app_user_x";
    let (s, b) =
        post(http, &format!("{n2}/v1/admin/users"), Some(admin), json!({"user_id": id, "password": PASSWORD})).await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = post(http, &format!("{n2}/v1/admin/users/{id}/tokens"), Some(admin), json!({"platform": "web"})).await;
    assert_eq!(s, 201, "{b}");
    let token = b["token"].as_str().unwrap().to_owned();
    // Node 3 waits for the session's cursor rather than refusing the fresh token.
    let (s, b) = get(http, &format!("{n3}/v1/me"), Some(&token)).await;
    assert_eq!((s, b["user_id"].as_str()), (200, Some(id)), "{b}");

    let ws_url = format!("{}/v1/ws?token={token}", n3.replace("http://", "ws://"));
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.expect("websocket on node 3");
    ws.send(Message::text(json!({"type": "sync", "since": 0}).to_string())).await.unwrap();

    let (s, b) = post(http, &format!("{n1}/v1/admin/users/{id}/deactivate"), Some(admin), json!({})).await;
    assert_eq!(s, 204, "{b}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await.expect("no close within 10 s") {
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            other => panic!("socket ended without a close frame: {other:?}"),
        }
    };
    assert_eq!(code, Some(4001));
    for base in [&n1, &n2, &n3] {
        let (s, b) =
            post(http, &format!("{base}/v1/sessions"), None, json!({"user_id": id, "password": PASSWORD})).await;
        assert_eq!((s, b["error"]["code"].as_str()), (403, Some("account_deactivated")), "{base}: {b}");
    }
    let (s, b) = get(http, &format!("{n3}/v1/admin/users?limit=10"), Some(admin)).await;
    assert_eq!(s, 200);
    let me = b["users"].as_array().unwrap().iter().find(|u| u["user_id"] == id).cloned().expect("listed");
    assert_eq!(me["deactivated"], json!(true));
}
