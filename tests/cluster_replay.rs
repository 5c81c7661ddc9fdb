//! Issue 11, hole 4: raft requests could be replayed. A `POST /raft/write` captured on the wire
//! and sent again was accepted: it re-added a kicked member to a group and revived a revoked
//! session. These tests send exactly what a follower sends (a [`ForwardedWrite`] signed by the
//! node's own envelope code, `parley_raft::envelope`) to a real 3-node cluster, then send it
//! again in every way an eavesdropper could, and once more the way a retrying follower would.

mod support;

use parley_api::state::ForwardedWrite;
use parley_raft::envelope::{self, Claims};
use parley_storage::{Command, CommandKind, RequestId};
use serde_json::{json, Value};
use support::cluster::*;

/// One request as it went over the wire: where, its headers, its body.
#[derive(Clone)]
struct Captured {
    url: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Captured {
    async fn send(&self, http: &reqwest::Client) -> (u16, Value) {
        let mut req = http.post(&self.url).header("content-type", "application/json").body(self.body.clone());
        for (name, value) in &self.headers {
            req = req.header(*name, value);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

/// What follower `from` sends the leader for `cmd` under `request_id`, signed now.
fn forward(c: &Cluster, from: u64, leader: u64, request_id: RequestId, cmd: CommandKind) -> Captured {
    let body = serde_json::to_vec(&ForwardedWrite { request_id, command: Command { ts: 0, kind: cmd } }).unwrap();
    let signed = envelope::sign(c.secret.as_bytes(), from, Some(leader), "POST", "/raft/write", &body);
    Captured { url: format!("{}/raft/write", c.url(leader)), headers: signed.headers().to_vec(), body }
}

/// The same body under a new envelope: what a follower retrying the same request sends.
fn resent(c: &Cluster, from: u64, leader: u64, captured: &Captured) -> Captured {
    let signed = envelope::sign(c.secret.as_bytes(), from, Some(leader), "POST", "/raft/write", &captured.body);
    Captured { headers: signed.headers().to_vec(), ..captured.clone() }
}

fn request_id(node: u64, n: u8) -> RequestId {
    RequestId { node, nonce: [n; 16] }
}

async fn group_members(c: &Cluster, id: u64, owner: &User, gid: &str, min_cursor: u64) -> Vec<String> {
    let url = format!("{}/v1/groups/{gid}?min_cursor={min_cursor}", c.url(id));
    let (s, b) = get(&c.http, &url, Some(&owner.token)).await;
    assert_eq!(s, 200, "{b}");
    b["members"].as_array().unwrap().iter().map(|m| m["user_id"].as_str().unwrap().to_string()).collect()
}

fn assert_refused(what: &str, (status, body): (u16, Value), why: &str) {
    assert_eq!(status, 401, "{what}: {body}");
    assert_eq!(body["error"]["code"], json!("unauthorized"), "{what}: {body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(why), "{what}: the refusal says why ({why}): {body}");
}

/// A 3-node cluster and its roles: `(cluster, leader, follower, the other follower)`.
async fn three_nodes() -> (Cluster, u64, u64, u64) {
    let c = Cluster::start(3, &[]).await;
    let ids = c.ids();
    let (leader, _) = c.wait_leader(&ids).await;
    let follower = *ids.iter().find(|i| **i != leader).unwrap();
    let other = *ids.iter().find(|i| **i != leader && **i != follower).unwrap();
    (c, leader, follower, other)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_forwarded_write_cannot_re_add_a_kicked_member_or_revive_a_session() {
    let (c, leader, follower, other) = three_nodes().await;
    let http = c.http.clone();
    let ids = c.ids();
    let base = c.url(leader);
    let alice = user(&http, &base, "alice_r").await;
    let bob = user(&http, &base, "bob_r").await;
    let (s, g) =
        post(&http, &format!("{base}/v1/groups"), Some(&alice.token), json!({"name": "g", "members": []})).await;
    assert_eq!(s, 201, "{g}");
    let gid = g["group_id"].as_str().unwrap().to_string();

    // --- A kicked member re-added by a replayed "add members". ---
    let add = CommandKind::AddMembers {
        actor: alice.id.clone(),
        group_id: gid.parse().unwrap(),
        user_ids: vec![bob.id.clone()],
        max_members: 10_000,
    };
    let captured = forward(&c, follower, leader, request_id(follower, 1), add);
    let (s, first) = captured.send(&http).await;
    assert_eq!(s, 200, "the genuine forward is served: {first}");
    let added_at = first["cursor"].as_u64().unwrap();
    assert!(group_members(&c, leader, &alice, &gid, added_at).await.contains(&bob.id));
    let url = format!("{base}/v1/groups/{gid}/members/{}", bob.id);
    let (s, b) = call(&http, reqwest::Method::DELETE, &url, Some(&alice.token), None).await.unwrap();
    assert_eq!(s, 204, "kick: {b}");

    // The eavesdropper's replays: the same bytes to the leader, to another node, and to
    // another path; the same body with the timestamp moved (its MAC no longer fits).
    assert_refused("replay to the leader", captured.send(&http).await, "already seen");
    for id in [follower, other] {
        let elsewhere = Captured { url: format!("{}/raft/write", c.url(id)), ..captured.clone() };
        assert_refused("replay to another node", elsewhere.send(&http).await, "addressed to node");
    }
    let append = Captured { url: format!("{base}/raft/append"), ..captured.clone() };
    assert_refused("another path", append.send(&http).await, "does not verify");
    let mut moved = captured.clone();
    for (name, value) in &mut moved.headers {
        if *name == envelope::TS_HEADER {
            *value = (value.parse::<u64>().unwrap() + 1).to_string();
        }
    }
    assert_refused("timestamp changed", moved.send(&http).await, "does not verify");

    // A follower retrying the same request (same request id, new envelope) is served with the
    // first outcome and applies nothing: bob stays out.
    let (s, again) = resent(&c, follower, leader, &captured).send(&http).await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(again, first, "the retry answers the first outcome");
    let (_, cluster) = get(&http, &format!("{base}/v1/cluster"), None).await;
    let now = cluster["cursor"].as_u64().unwrap();
    for id in &ids {
        let members = group_members(&c, *id, &alice, &gid, now).await;
        assert!(!members.contains(&bob.id), "node {id}: the kicked member is back: {members:?}");
    }
    let (s, b) = get(&http, &format!("{}/v1/groups/{gid}?min_cursor={now}", c.url(follower)), Some(&bob.token)).await;
    assert_eq!(s, 403, "bob reads the group after his kick: {b}");

    // --- A revoked session revived by a replayed login. ---
    let session = CommandKind::CreateSession {
        user_id: alice.id.clone(),
        session_id: "replayed-session".into(),
        device: "laptop".into(),
        expires_at: u64::MAX / 2,
    };
    let captured = forward(&c, follower, leader, request_id(follower, 2), session);
    let (s, b) = captured.send(&http).await;
    assert_eq!(s, 200, "{b}");
    let sessions = |cursor: u64| {
        let http = http.clone();
        let url = format!("{base}/v1/sessions?min_cursor={cursor}");
        let token = alice.token.clone();
        async move {
            let (s, b) = get(&http, &url, Some(&token)).await;
            assert_eq!(s, 200, "{b}");
            b["sessions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["session_id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert!(sessions(b["cursor"].as_u64().unwrap()).await.contains(&"replayed-session".to_string()));
    let url = format!("{base}/v1/sessions/replayed-session");
    let (s, b) = call(&http, reqwest::Method::DELETE, &url, Some(&alice.token), None).await.unwrap();
    assert_eq!(s, 204, "revoke: {b}");
    assert_refused("replayed login", captured.send(&http).await, "already seen");
    let (s, b) = resent(&c, follower, leader, &captured).send(&http).await;
    assert_eq!(s, 200, "{b}");
    let (_, cluster) = get(&http, &format!("{base}/v1/cluster"), None).await;
    let live = sessions(cluster["cursor"].as_u64().unwrap()).await;
    assert!(!live.contains(&"replayed-session".to_string()), "the revoked session is back: {live:?}");
}

/// Requests that are not replays but are still not fresh or not genuine: a timestamp outside
/// the window either way, and envelope headers that do not parse. All 401 before the body is
/// read, and the node keeps serving genuine requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_future_and_malformed_envelopes_are_refused() {
    let (c, leader, follower, _) = three_nodes().await;
    let http = c.http.clone();
    let body = serde_json::to_vec(&ForwardedWrite {
        request_id: request_id(follower, 3),
        command: Command {
            ts: 0,
            kind: CommandKind::Register {
                user_id: "eve_r".into(),
                display_name: "e".into(),
                password_hash: "x".into(),
            },
        },
    })
    .unwrap();
    let now = envelope::now_ms();
    for (what, ts) in
        [("stale", now - envelope::WINDOW_MS - 5_000), ("from the future", now + envelope::WINDOW_MS + 5_000)]
    {
        let claims = Claims { from: follower, to: Some(leader), ts, nonce: rand_nonce(ts) };
        let signed = envelope::sign_claims(c.secret.as_bytes(), claims, "POST", "/raft/write", &body);
        let req = Captured {
            url: format!("{}/raft/write", c.url(leader)),
            headers: signed.headers().to_vec(),
            body: body.clone(),
        };
        assert_refused(what, req.send(&http).await, "ms from this node's clock");
    }
    let good = forward(
        &c,
        follower,
        leader,
        request_id(follower, 3),
        CommandKind::Register { user_id: "eve_r".into(), display_name: "e".into(), password_hash: "x".into() },
    );
    for (header, bad) in
        [(envelope::NODE_HEADER, "node-2"), (envelope::TS_HEADER, "soon"), (envelope::NONCE_HEADER, "abc")]
    {
        let mut req = good.clone();
        for (name, value) in &mut req.headers {
            if *name == header {
                *value = bad.to_string();
            }
        }
        assert_refused(header, req.send(&http).await, "malformed");
    }
    let (s, b) = good.send(&http).await;
    assert_eq!(s, 200, "the genuine request is still served: {b}");
}

fn rand_nonce(seed: u64) -> u128 {
    (seed as u128) << 64 | 0x5eed
}
