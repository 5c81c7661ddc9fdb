//! Groups, black-box against a real `parley serve`: permissions (allowed and refused, with the
//! contract's codes), history visibility from `joined_seq`, unread for new members, the
//! kick/send race, mute and mute_all, transfer, dismissal, sync contents for late joiners and
//! removed members, live WebSocket delivery, the member limit, and a slow socket that must not
//! delay the others.
//!
//! Every test starts its own server (fresh data dir, port 0) and kills it on drop; every wait
//! is bounded.

mod support;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::groups::GroupApi;
use support::{cursors, now_ms, TestServer, User};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const WAIT: Duration = Duration::from_secs(10);

/// A server of the test's own (fresh data dir, port 0), without the per-user rate limit.
fn start(extra: &[&str]) -> TestServer {
    TestServer::start_with(&[&["--rate-limit-per-user", "0"][..], extra].concat())
}

fn ws_url(server: &TestServer, token: &str) -> String {
    format!("{}?token={token}", server.ws_url())
}

fn types(updates: &[Value]) -> Vec<String> {
    updates.iter().map(|u| u["type"].as_str().expect("update type").to_owned()).collect()
}

/// `(user_id, role, joined_seq)` of a Group object's members, sorted.
fn roster(group: &Value) -> Vec<(String, String, u64)> {
    let mut v: Vec<_> = group["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            (
                m["user_id"].as_str().expect("user_id").to_owned(),
                m["role"].as_str().expect("role").to_owned(),
                m["joined_seq"].as_u64().expect("joined_seq"),
            )
        })
        .collect();
    v.sort();
    v
}

fn member(id: &str, role: &str, joined_seq: u64) -> (String, String, u64) {
    (id.to_owned(), role.to_owned(), joined_seq)
}

async fn ws_send<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>, v: Value) {
    tokio::time::timeout(WAIT, ws.send(Message::text(v.to_string()))).await.expect("ws send in time").expect("ws send");
}

/// The next JSON text frame (pings and pongs skipped); panics on close or timeout.
async fn ws_next<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>, wait: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("a websocket frame in time")
            .expect("the websocket is open")
            .expect("a websocket frame");
        match msg {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("frames are JSON"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Opens a socket for `u` and syncs from `since`, consuming the catch-up frames.
async fn ws_open(server: &TestServer, u: &User, since: u64) -> WebSocketStream<impl AsyncRead + AsyncWrite + Unpin> {
    let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(ws_url(server, &u.token)))
        .await
        .expect("ws connect in time")
        .expect("ws connect");
    ws_send(&mut ws, json!({"type": "sync", "since": since})).await;
    loop {
        let f = ws_next(&mut ws, WAIT).await;
        if f["type"] == "updates" && f["more"] == json!(false) {
            return ws;
        }
    }
}

/// Live updates until one with cursor >= `cursor` arrives; returns them all.
async fn ws_until<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    cursor: u64,
    wait: Duration,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let f = ws_next(ws, left).await;
        if f["type"] != "updates" {
            continue;
        }
        let ups = f["updates"].as_array().expect("updates").clone();
        let done = ups.iter().any(|u| u["cursor"].as_u64() >= Some(cursor));
        out.extend(ups);
        if done {
            return out;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Create, read, rename, names
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn create_get_list_and_name_rules() {
    let server = start(&[]);
    let api = GroupApi::new(&server);
    let [own, bob, out] = <[User; 3]>::try_from(api.users(&["own", "bob", "out"]).await).unwrap();

    let r = api.create(&own, "Crew ✓", &[&bob, &own, &bob]).await;
    r.write(201);
    let g = r.json.clone();
    assert_eq!(g["group_id"], json!("1"), "group ids are decimal strings");
    assert_eq!(g["conversation_id"], json!("g:1"));
    assert_eq!(g["name"], json!("Crew ✓"));
    assert_eq!(g["owner"], json!("own"));
    assert_eq!(g["mute_all"], json!(false));
    assert_eq!(roster(&g), vec![member("bob", "member", 0), member("own", "owner", 0)], "duplicates collapse");

    // Members see it, outsiders do not.
    for u in [&own, &bob] {
        let v = api.get("/v1/groups/1", u).await.ok(200).clone();
        assert_eq!(roster(&v), roster(&g));
        let mine = api.get("/v1/groups", u).await.ok(200)["groups"].clone();
        assert_eq!(mine.as_array().unwrap().len(), 1);
        assert_eq!(mine[0]["group_id"], json!("1"));
        let c = api.conversation(u, "1").await.expect("the group's conversation is listed");
        assert_eq!(c["kind"], json!("group"));
        assert_eq!(c["group_id"], json!("1"));
        assert_eq!((c["max_seq"].as_u64(), c["unread"].as_u64()), (Some(0), Some(0)));
    }
    api.get("/v1/groups/1", &out).await.err(403, "not_member");
    assert_eq!(api.get("/v1/groups", &out).await.ok(200)["groups"], json!([]));
    api.history(&out, "1", "").await.err(403, "not_member");
    api.get("/v1/groups/999", &own).await.err(404, "not_found");
    api.get("/v1/groups/abc", &own).await.err(404, "not_found");

    // Names are 1 to 128 characters (not bytes), not blank.
    for bad in [json!(""), json!("   "), json!("é".repeat(129)), json!(7)] {
        api.post("/v1/groups", &own, json!({"name": bad, "members": []})).await.err(400, "invalid_request");
        api.patch(&own, "1", json!({ "name": bad })).await.err(400, "invalid_request");
    }
    api.post("/v1/groups", &own, json!({"name": null})).await.err(400, "invalid_request");
    api.post("/v1/groups", &own, json!({"members": []})).await.err(400, "invalid_request");
    let long = "é".repeat(128);
    let r = api.create(&own, &long, &[]).await;
    r.write(201);
    assert_eq!(r.json["name"], json!(long));
    assert_eq!(r.json["group_id"], json!("2"));

    // Unknown users: not_found, and nobody is added (no group was created either).
    api.create(
        &own,
        "ghosts",
        &[
            &bob,
            &User {
                id: "nobody_here".into(),
                password: String::new(),
                token: String::new(),
                session_id: String::new(),
            },
        ],
    )
    .await
    .err(404, "not_found");
    assert_eq!(api.get("/v1/groups", &bob).await.ok(200)["groups"].as_array().unwrap().len(), 1);
    api.add(&own, "1", &["out", "nobody_here"]).await.err(404, "not_found");
    assert_eq!(roster(api.get("/v1/groups/1", &own).await.ok(200)).len(), 2, "nobody was added");
    api.add(&own, "1", &["Bad-Id"]).await.err(404, "not_found");

    // Rename: name and mute_all, seen in the group and in sync.
    let r = api.patch(&own, "1", json!({"name": "renamed"})).await;
    let c = r.write(200);
    assert_eq!((r.json["name"].as_str(), r.json["mute_all"].as_bool()), (Some("renamed"), Some(false)));
    let (ups, _) = api.sync_all(&bob, c - 1, 100).await;
    assert_eq!(ups.len(), 1);
    assert_eq!(ups[0]["type"], json!("group_updated"));
    assert_eq!((ups[0]["group_id"].as_str(), ups[0]["name"].as_str()), (Some("1"), Some("renamed")));
    assert_eq!(ups[0]["mute_all"], json!(false));
    // Sync's group_created carries the whole group.
    let (ups, _) = api.sync_all(&bob, 0, 100).await;
    let created = ups.iter().find(|u| u["type"] == "group_created").expect("group_created");
    assert_eq!(created["group"]["group_id"], json!("1"));
    assert_eq!(created["group"]["name"], json!("Crew ✓"));

    // Malformed bodies are invalid_request.
    api.post("/v1/groups/1/members", &own, json!({"user_ids": "bob"})).await.err(400, "invalid_request");
    api.role(&own, "1", "bob", "owner").await.err(400, "invalid_request");
    api.role(&own, "1", "bob", "boss").await.err(400, "invalid_request");
    api.post("/v1/groups/1/transfer", &own, json!({})).await.err(400, "invalid_request");
    api.call("PUT", "/v1/groups/1/members/bob/mute", Some(&own.token), Some(json!({"until_ms": -1})))
        .await
        .err(400, "invalid_request");
}

// ---------------------------------------------------------------------------------------------
// Permissions, both ways
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn permission_rules_both_ways() {
    let server = start(&[]);
    let api = GroupApi::new(&server);
    let us = api.users(&["own", "adm", "adm2", "mem", "mem2", "mem3", "out"]).await;
    let [own, adm, adm2, mem, mem2, mem3, out] = <[User; 7]>::try_from(us).unwrap();
    let g = api.group(&own, &[&adm, &adm2, &mem, &mem2]).await;

    // Roles: only the owner sets them.
    api.role(&mem, &g, "adm", "admin").await.err(403, "not_admin");
    api.role(&out, &g, "adm", "admin").await.err(403, "not_member");
    let r = api.role(&own, &g, "adm", "admin").await;
    r.write(200);
    assert!(roster(&r.json).contains(&member("adm", "admin", 0)));
    api.role(&own, &g, "adm2", "admin").await.write(200);
    api.role(&adm, &g, "mem", "admin").await.err(403, "forbidden");
    api.role(&own, &g, "own", "member").await.err(400, "invalid_request");
    api.role(&own, &g, "out", "admin").await.err(404, "not_found");
    // Setting the same role again changes nothing.
    let r = api.role(&own, &g, "adm2", "admin").await;
    r.ok(200);

    // Adding members: owner and admins.
    api.add(&mem, &g, &["mem3"]).await.err(403, "not_admin");
    api.add(&out, &g, &["mem3"]).await.err(403, "not_member");
    let r = api.add(&adm, &g, &["mem3"]).await;
    r.write(200);
    assert!(roster(&r.json).contains(&member("mem3", "member", 0)));

    // Renaming and mute_all: owner and admins.
    api.patch(&mem, &g, json!({"name": "x"})).await.err(403, "not_admin");
    api.patch(&out, &g, json!({"name": "x"})).await.err(403, "not_member");
    api.patch(&adm, &g, json!({"name": "by admin"})).await.write(200);

    // Muting: owner and admins; admins only plain members.
    let later = now_ms() + 3_600_000;
    api.mute(&mem, &g, "mem2", later).await.err(403, "not_admin");
    api.mute(&adm, &g, "own", later).await.err(403, "forbidden");
    api.mute(&adm, &g, "adm2", later).await.err(403, "forbidden");
    api.mute(&own, &g, "own", later).await.err(403, "forbidden");
    api.mute(&adm, &g, "out", later).await.err(404, "not_found");
    api.mute(&adm, &g, "mem2", later).await.write(204);
    api.mute(&own, &g, "adm2", later).await.write(204);
    api.send(&adm2, &g, "muted admin").await.err(403, "muted");
    api.mute(&own, &g, "adm2", 0).await.write(204);
    api.mute(&adm, &g, "mem2", 0).await.write(204);

    // Kicking: owner anyone; admins plain members only; nobody themselves.
    api.kick(&mem, &g, "mem2").await.err(403, "not_admin");
    api.kick(&out, &g, "mem2").await.err(403, "not_member");
    api.kick(&adm, &g, "own").await.err(403, "forbidden");
    api.kick(&adm, &g, "adm2").await.err(403, "forbidden");
    api.kick(&own, &g, "own").await.err(400, "invalid_request");
    api.kick(&mem, &g, "mem").await.err(400, "invalid_request");
    api.kick(&adm, &g, "out").await.err(404, "not_found");
    api.kick(&adm, &g, "mem2").await.write(204);
    api.kick(&own, &g, "adm2").await.write(204);
    let v = api.get(&format!("/v1/groups/{g}"), &own).await.ok(200).clone();
    let ids: Vec<String> = roster(&v).into_iter().map(|m| m.0).collect();
    assert_eq!(ids, ["adm", "mem", "mem3", "own"]);

    // Transfer and dismissal: the owner only.
    api.transfer(&adm, &g, "mem").await.err(403, "forbidden");
    api.transfer(&mem, &g, "mem").await.err(403, "not_admin");
    api.transfer(&own, &g, "own").await.err(400, "invalid_request");
    api.transfer(&own, &g, "out").await.err(404, "not_found");
    api.dismiss(&adm, &g).await.err(403, "forbidden");
    api.dismiss(&mem, &g).await.err(403, "not_admin");
    api.dismiss(&out, &g).await.err(403, "not_member");

    // Leaving: anyone but the owner.
    api.leave(&own, &g).await.err(409, "owner_cannot_leave");
    api.leave(&out, &g).await.err(403, "not_member");
    api.leave(&mem3, &g).await.write(204);
    api.leave(&mem3, &g).await.err(403, "not_member");

    // A group that does not exist.
    api.patch(&own, "77", json!({"name": "x"})).await.err(404, "not_found");
    api.add(&own, "77", &["mem"]).await.err(404, "not_found");
    api.kick(&own, "77", "mem").await.err(404, "not_found");
    api.leave(&own, "77").await.err(404, "not_found");
    api.dismiss(&own, "77").await.err(404, "not_found");
    api.transfer(&own, "77", "mem").await.err(404, "not_found");
    api.send(&own, "77", "hello?").await.err(403, "not_member");

    // Every refusal changed nothing: the roster is what the accepted writes made it.
    let v = api.get(&format!("/v1/groups/{g}"), &adm).await.ok(200).clone();
    assert_eq!(v["name"], json!("by admin"));
    assert_eq!(roster(&v), vec![member("adm", "admin", 0), member("mem", "member", 0), member("own", "owner", 0)]);
}

// ---------------------------------------------------------------------------------------------
// History, unread, reads
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn new_members_see_history_from_joined_seq_and_start_with_nothing_unread() {
    let server = start(&[]);
    let api = GroupApi::new(&server);
    let [own, mem, late] = <[User; 3]>::try_from(api.users(&["own", "mem", "late"]).await).unwrap();
    let g = api.group(&own, &[&mem]).await;
    for i in 1..=3 {
        assert_eq!(api.sent(&own, &g, &format!("before {i}")).await.0, i);
    }
    let r = api.add(&own, &g, &["late"]).await;
    r.write(200);
    assert!(roster(&r.json).contains(&member("late", "member", 3)), "joined_seq is max_seq at join");

    // Nothing before joining is visible, and nothing is unread.
    let h = api.history(&late, &g, "").await;
    assert_eq!(h.ok(200)["messages"], json!([]));
    assert_eq!(h.json["max_seq"], json!(3));
    for q in ["?after_seq=0", "?before_seq=4", "?after_seq=1&limit=500"] {
        assert_eq!(api.history(&late, &g, q).await.ok(200)["messages"], json!([]), "{q}");
    }
    let c = api.conversation(&late, &g).await.expect("listed");
    assert_eq!((c["max_seq"].as_u64(), c["read_seq"].as_u64(), c["unread"].as_u64()), (Some(3), Some(3), Some(0)));
    assert_eq!(c["last_message"], Value::Null);
    // The old member still has everything, and 3 unread.
    let c = api.conversation(&mem, &g).await.expect("listed");
    assert_eq!((c["unread"].as_u64(), c["read_seq"].as_u64()), (Some(3), Some(0)));
    assert_eq!(api.history(&mem, &g, "").await.ok(200)["messages"].as_array().unwrap().len(), 3);

    // What follows the join is visible and unread.
    api.sent(&mem, &g, "after").await;
    let msgs = api.history(&late, &g, "").await.ok(200)["messages"].clone();
    assert_eq!(msgs.as_array().unwrap().len(), 1);
    assert_eq!((msgs[0]["seq"].as_u64(), msgs[0]["body"].as_str()), (Some(4), Some("after")));
    assert_eq!(msgs[0]["sender"], json!("mem"));
    let c = api.conversation(&late, &g).await.expect("listed");
    assert_eq!((c["unread"].as_u64(), c["last_message"]["seq"].as_u64()), (Some(1), Some(4)));
    // Sending moved the sender's own read marker.
    assert_eq!(api.conversation(&mem, &g).await.unwrap()["unread"], json!(0));

    // Reads: clamp above max_seq, never go down.
    let r = api.read(&late, &g, 99).await;
    r.write(200);
    assert_eq!((r.json["read_seq"].as_u64(), r.json["unread"].as_u64()), (Some(4), Some(0)));
    let r = api.read(&late, &g, 1).await;
    assert_eq!((r.ok(200)["read_seq"].as_u64(), r.json["unread"].as_u64()), (Some(4), Some(0)));
    api.read(&own, &g, 2).await.write(200);
    assert_eq!(api.conversation(&own, &g).await.unwrap()["unread"], json!(1));

    // Messages from before the join do not exist for the new member, not even to revoke
    // (an admin can revoke any message they can see).
    let revoke = |u: &User, seq: u64| {
        let path = format!("/v1/conversations/g:{g}/messages/{seq}/revoke");
        let api = api.clone();
        let token = u.token.clone();
        async move { api.call("POST", &path, Some(&token), None).await }
    };
    api.role(&own, &g, "late", "admin").await.write(200);
    revoke(&late, 1).await.err(404, "not_found");
    revoke(&late, 3).await.err(404, "not_found");
    let r = revoke(&late, 4).await;
    r.write(200);
    assert_eq!((r.json["message"]["revoked"].as_bool(), r.json["message"]["body"].as_str()), (Some(true), Some("")));
    let r = revoke(&own, 1).await;
    assert_eq!(r.ok(200)["message"]["seq"], json!(1));
    api.role(&own, &g, "late", "member").await.write(200);

    // A member who leaves and comes back sees only what follows the return.
    api.leave(&late, &g).await.write(204);
    api.sent(&own, &g, "while away").await;
    let r = api.add(&own, &g, &["late"]).await;
    assert!(roster(r.ok(200)).contains(&member("late", "member", 5)));
    assert_eq!(api.history(&late, &g, "").await.ok(200)["messages"], json!([]));
    assert_eq!(api.conversation(&late, &g).await.unwrap()["unread"], json!(0));
}

// ---------------------------------------------------------------------------------------------
// Kick vs send, mute, transfer, dismiss
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kick_committed_before_a_send_makes_the_send_fail() {
    let server = start(&[]);
    let api = GroupApi::new(&server);
    let [own, vic] = <[User; 2]>::try_from(api.users(&["own", "vic"]).await).unwrap();
    let g = api.group(&own, &[&vic]).await;

    // In sequence: the kick is committed when its 204 arrives.
    api.sent(&vic, &g, "still here").await;
    api.kick(&own, &g, "vic").await.write(204);
    api.send(&vic, &g, "too late").await.err(403, "not_member");
    api.read(&vic, &g, 1).await.err(403, "not_member");
    api.history(&vic, &g, "").await.err(403, "not_member");
    api.get(&format!("/v1/groups/{g}"), &vic).await.err(403, "not_member");
    assert!(api.conversation(&vic, &g).await.is_none());

    // Racing: whichever the log orders first wins, and the outcome agrees with that order.
    let mut delivered = Vec::new();
    for round in 0..12 {
        api.add(&own, &g, &["vic"]).await.write(200);
        let body = format!("race {round}");
        let (k, s) = tokio::join!(api.kick(&own, &g, "vic"), api.send(&vic, &g, &body));
        let kicked_at = k.write(204);
        match s.status {
            201 => {
                let sent_at = s.write(201);
                assert!(sent_at < kicked_at, "an accepted send was ordered before the kick");
                delivered.push(sent_at);
            }
            _ => s.err(403, "not_member"),
        }
    }
    eprintln!("kick/send race: {} of 12 sends were ordered before their kick", delivered.len());
    // The kicked member's sync holds exactly the messages that won the race, and a
    // member_removed for every round.
    let (ups, _) = api.sync_all(&vic, 0, 1000).await;
    let mine: Vec<u64> = ups
        .iter()
        .filter(|u| u["type"] == "message" && u["message"]["sender"] == "vic")
        .map(|u| u["cursor"].as_u64().unwrap())
        .collect();
    assert_eq!(mine[1..], delivered[..], "first is 'still here'");
    let removed = ups.iter().filter(|u| u["type"] == "member_removed" && u["user_id"] == "vic").count();
    assert_eq!(removed, 13);
}

#[tokio::test]
async fn mute_unmute_and_mute_all() {
    let server = start(&[]);
    let api = GroupApi::new(&server);
    let [own, adm, mem] = <[User; 3]>::try_from(api.users(&["own", "adm", "mem"]).await).unwrap();
    let g = api.group(&own, &[&adm, &mem]).await;
    api.role(&own, &g, "adm", "admin").await.write(200);

    let until = now_ms() + 3_600_000;
    let c = api.mute(&adm, &g, "mem", until).await.write(204);
    api.send(&mem, &g, "muted").await.err(403, "muted");
    // Muted members still read.
    api.sent(&own, &g, "hello").await;
    api.read(&mem, &g, 1).await.write(200);
    let (ups, _) = api.sync_all(&mem, c - 1, 100).await;
    assert_eq!(ups[0]["type"], json!("member_muted"));
    assert_eq!((ups[0]["user_id"].as_str(), ups[0]["until_ms"].as_u64()), (Some("mem"), Some(until)));
    // until_ms 0 unmutes; a time in the past is no mute either.
    api.mute(&adm, &g, "mem", 0).await.write(204);
    api.sent(&mem, &g, "free").await;
    api.mute(&own, &g, "mem", now_ms() - 1_000).await.write(204);
    api.sent(&mem, &g, "still free").await;

    // mute_all silences everyone but the owner and admins.
    let r = api.patch(&adm, &g, json!({"mute_all": true})).await;
    let c = r.write(200);
    assert_eq!(r.json["mute_all"], json!(true));
    api.send(&mem, &g, "quiet").await.err(403, "muted");
    api.sent(&adm, &g, "admins talk").await;
    api.sent(&own, &g, "owners talk").await;
    let (ups, _) = api.sync_all(&mem, c - 1, 100).await;
    assert_eq!((ups[0]["type"].as_str(), ups[0]["mute_all"].as_bool()), (Some("group_updated"), Some(true)));
    // An admin demoted to member is silenced too.
    api.role(&own, &g, "adm", "member").await.write(200);
    api.send(&adm, &g, "demoted").await.err(403, "muted");
    api.patch(&own, &g, json!({"mute_all": false})).await.write(200);
    api.sent(&mem, &g, "spring").await;
    api.sent(&adm, &g, "spring too").await;
}

#[tokio::test]
async fn transfer_then_leave() {
    let server = start(&[]);
    let api = GroupApi::new(&server);
    let [own, mem] = <[User; 2]>::try_from(api.users(&["own", "mem"]).await).unwrap();
    let g = api.group(&own, &[&mem]).await;
    let r = api.transfer(&own, &g, "mem").await;
    let c = r.write(200);
    assert_eq!(r.json["owner"], json!("mem"));
    assert_eq!(roster(&r.json), vec![member("mem", "owner", 0), member("own", "admin", 0)]);
    for u in [&own, &mem] {
        let (ups, _) = api.sync_all(u, c - 1, 100).await;
        assert_eq!(types(&ups), ["owner_transferred"]);
        assert_eq!((ups[0]["from"].as_str(), ups[0]["to"].as_str()), (Some("own"), Some("mem")));
    }
    // The new owner has the owner's powers, the old one an admin's.
    api.dismiss(&own, &g).await.err(403, "forbidden");
    api.leave(&mem, &g).await.err(409, "owner_cannot_leave");
    let c = api.leave(&own, &g).await.write(204);
    let (ups, _) = api.sync_all(&own, c - 1, 100).await;
    assert_eq!(types(&ups), ["member_removed"]);
    assert_eq!((ups[0]["user_id"].as_str(), ups[0]["by"].as_str()), (Some("own"), Some("own")));
    assert_eq!(ups[0]["reason"], json!("left"));
    api.send(&own, &g, "hi").await.err(403, "not_member");
    let v = api.get(&format!("/v1/groups/{g}"), &mem).await.ok(200).clone();
    assert_eq!(roster(&v), vec![member("mem", "owner", 0)]);
    api.sent(&mem, &g, "alone").await;
}

#[tokio::test]
async fn dismiss_then_send() {
    let server = start(&[]);
    let api = GroupApi::new(&server);
    let [own, adm, mem] = <[User; 3]>::try_from(api.users(&["own", "adm", "mem"]).await).unwrap();
    let g = api.group(&own, &[&adm, &mem]).await;
    api.role(&own, &g, "adm", "admin").await.write(200);
    api.sent(&mem, &g, "before").await;
    let c = api.dismiss(&own, &g).await.write(204);
    for u in [&own, &adm, &mem] {
        let (ups, _) = api.sync_all(u, c - 1, 100).await;
        assert_eq!(types(&ups), ["group_dismissed"], "{}", u.id);
        assert_eq!((ups[0]["group_id"].as_str(), ups[0]["by"].as_str()), (Some(g.as_str()), Some("own")));
        api.send(u, &g, "after").await.err(403, "not_member");
        api.read(u, &g, 1).await.err(403, "not_member");
        api.history(u, &g, "").await.err(403, "not_member");
        api.get(&format!("/v1/groups/{g}"), u).await.err(403, "not_member");
        assert_eq!(api.get("/v1/groups", u).await.ok(200)["groups"], json!([]));
        assert!(api.conversation(u, &g).await.is_none());
        // What they received before stays in their sync history.
        let (all, _) = api.sync_all(u, 0, 100).await;
        assert!(all.iter().any(|x| x["type"] == "message" && x["message"]["body"] == "before"));
    }
    api.dismiss(&own, &g).await.err(403, "not_member");
    api.add(&own, &g, &["mem"]).await.err(403, "not_member");
    api.patch(&adm, &g, json!({"name": "zombie"})).await.err(403, "not_member");
}

// ---------------------------------------------------------------------------------------------
// Sync contents across membership changes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn sync_covers_exactly_the_time_each_user_was_a_member() {
    let server = start(&[]);
    let api = GroupApi::new(&server);
    let [own, mem, kik, late] = <[User; 4]>::try_from(api.users(&["own", "mem", "kik", "late"]).await).unwrap();
    let r = api.create(&own, "crew", &[&mem, &kik]).await;
    let c_create = r.write(201);
    let g = r.json["group_id"].as_str().unwrap().to_owned();
    let (_, c1) = api.sent(&own, &g, "m1").await;
    let (_, c2) = api.sent(&kik, &g, "m2").await;
    let c_add = api.add(&own, &g, &["late"]).await.write(200);
    let (_, c3) = api.sent(&own, &g, "m3").await;
    let c_rl = api.read(&late, &g, 3).await.write(200);
    let c_kick = api.kick(&own, &g, "kik").await.write(204);
    let (_, c4) = api.sent(&late, &g, "m4").await;
    let c_rm = api.read(&mem, &g, 4).await.write(200);
    let c_leave = api.leave(&mem, &g).await.write(204);
    let (_, c5) = api.sent(&own, &g, "m5").await;

    let expect = [
        (&own, vec![c_create, c1, c2, c_add, c3, c_kick, c4, c_leave, c5]),
        (&mem, vec![c_create, c1, c2, c_add, c3, c_kick, c4, c_rm, c_leave]),
        (&kik, vec![c_create, c1, c2, c_add, c3, c_kick]),
        (&late, vec![c_add, c3, c_rl, c_kick, c4, c_leave, c5]),
    ];
    for (u, want) in &expect {
        let (ups, cursor) = api.sync_all(u, 0, 1000).await;
        assert_eq!(cursors(&ups), *want, "sync of {}", u.id);
        assert!(cursor >= c5);
        // Paging gives the same, one update at a time or a few.
        for limit in [1, 2, 3] {
            let (paged, _) = api.sync_all(u, 0, limit).await;
            assert_eq!(cursors(&paged), *want, "paged ({limit}) sync of {}", u.id);
        }
        // Resuming from any point gives the tail.
        for (i, c) in want.iter().enumerate() {
            let (tail, _) = api.sync_all(u, *c, 1000).await;
            assert_eq!(cursors(&tail), want[i + 1..], "sync of {} since {c}", u.id);
        }
    }

    // The kicked member: their own member_removed, then nothing more.
    let (ups, _) = api.sync_all(&kik, 0, 1000).await;
    assert_eq!(types(&ups), ["group_created", "message", "message", "member_added", "message", "member_removed"]);
    let last = ups.last().unwrap();
    assert_eq!((last["user_id"].as_str(), last["by"].as_str()), (Some("kik"), Some("own")));
    assert_eq!((last["reason"].as_str(), last["group_id"].as_str()), (Some("kicked"), Some(g.as_str())));
    let (after, _) = api.sync_all(&kik, c_kick, 1000).await;
    assert!(after.is_empty());

    // The late joiner: their own member_added first, only messages 3 and 4, their own read only.
    let (ups, _) = api.sync_all(&late, 0, 1000).await;
    assert_eq!(
        types(&ups),
        ["member_added", "message", "read", "member_removed", "message", "member_removed", "message"]
    );
    assert_eq!(ups[0]["user_ids"], json!(["late"]));
    assert_eq!(ups[0]["by"], json!("own"));
    let seqs: Vec<u64> =
        ups.iter().filter(|u| u["type"] == "message").map(|u| u["message"]["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [3, 4, 5]);
    let read = &ups[2];
    assert_eq!((read["user_id"].as_str(), read["read_seq"].as_u64()), (Some("late"), Some(3)));
    assert_eq!(read["conversation_id"], json!(format!("g:{g}")));
    // A message update carries the whole message.
    let m = &ups[1]["message"];
    assert_eq!((m["conversation_id"].as_str(), m["sender"].as_str()), (Some(format!("g:{g}").as_str()), Some("own")));
    assert_eq!((m["body"].as_str(), m["revoked"].as_bool()), (Some("m3"), Some(false)));

    // The member who left: their own member_removed with reason left.
    let (ups, _) = api.sync_all(&mem, c_leave - 1, 1000).await;
    assert_eq!(ups[0]["reason"], json!("left"));
    assert_eq!(ups[0]["user_id"], json!("mem"));

    // A long-poll of the kicked member is not answered with a later group message.
    let path = format!("/v1/sync?since={c5}&wait_ms=1500");
    let poll = api.get(&path, &kik);
    let (r, _) = tokio::join!(poll, api.sent(&own, &g, "m6"));
    assert_eq!(r.ok(200)["updates"], json!([]));
}

// ---------------------------------------------------------------------------------------------
// Live delivery
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_websocket_delivery_to_several_members() {
    let server = start(&[]);
    let api = GroupApi::new(&server);
    let us = api.users(&["own", "mem1", "mem2", "mem3", "out"]).await;
    let [own, m1, m2, m3, out] = <[User; 5]>::try_from(us).unwrap();
    let r = api.create(&own, "live", &[&m1, &m2, &m3]).await;
    let head = r.write(201);
    let g = r.json["group_id"].as_str().unwrap().to_owned();

    let mut w1 = ws_open(&server, &m1, head).await;
    let mut w2 = ws_open(&server, &m2, head).await;
    let mut w3 = ws_open(&server, &m3, head).await;
    let mut wo = ws_open(&server, &out, head).await;

    // An HTTP send reaches every member's socket.
    let (seq, c) = api.sent(&own, &g, "to everyone").await;
    for (name, ws) in [("mem1", &mut w1), ("mem2", &mut w2), ("mem3", &mut w3)] {
        let ups = ws_until(ws, c, WAIT).await;
        assert_eq!(cursors(&ups), [c], "{name}");
        assert_eq!((ups[0]["type"].as_str(), ups[0]["message"]["seq"].as_u64()), (Some("message"), Some(seq)));
        assert_eq!(ups[0]["message"]["body"], json!("to everyone"));
    }

    // A WebSocket send is acked to its sender and delivered to the others.
    ws_send(
        &mut w2,
        json!({"type": "send", "req": 7, "conversation_id": format!("g:{g}"), "client_msg_id": "ws-1", "body": "over ws"}),
    )
    .await;
    let mut acked = None;
    let mut seen = Vec::new();
    while acked.is_none() || seen.is_empty() {
        let f = ws_next(&mut w2, WAIT).await;
        match f["type"].as_str() {
            Some("ack") => {
                assert_eq!(f["req"], json!(7));
                assert_eq!(f["message"]["seq"].as_u64(), Some(seq + 1));
                acked = f["cursor"].as_u64();
            }
            Some("updates") => seen.extend(f["updates"].as_array().unwrap().clone()),
            _ => panic!("unexpected frame {f}"),
        }
    }
    let ca = acked.unwrap();
    assert_eq!(cursors(&seen), [ca], "the sender's own devices hear it too");
    for ws in [&mut w1, &mut w3] {
        let ups = ws_until(ws, ca, WAIT).await;
        assert_eq!(ups[0]["message"]["body"], json!("over ws"));
    }

    // The outsider got nothing: the first thing they hear is being added.
    let c_add = api.add(&own, &g, &["out"]).await.write(200);
    let ups = ws_until(&mut wo, c_add, WAIT).await;
    assert_eq!(cursors(&ups), [c_add]);
    assert_eq!(ups[0]["type"], json!("member_added"));
    // ... and from then on they get the group's messages live.
    let (_, c) = api.sent(&m1, &g, "welcome").await;
    assert_eq!(cursors(&ws_until(&mut wo, c, WAIT).await), [c]);
    for ws in [&mut w1, &mut w2, &mut w3] {
        let ups = ws_until(ws, c, WAIT).await;
        assert_eq!(cursors(&ups), [c_add, c]);
    }

    // A kicked member hears their removal and then no more group messages: the next thing
    // they hear is their own (personal) block.
    let c_kick = api.kick(&own, &g, "mem3").await.write(204);
    let ups = ws_until(&mut w3, c_kick, WAIT).await;
    assert_eq!((ups[0]["type"].as_str(), ups[0]["user_id"].as_str()), (Some("member_removed"), Some("mem3")));
    let (_, c_after) = api.sent(&own, &g, "without mem3").await;
    let c_block = api.call("PUT", "/v1/blocks/out", Some(&m3.token), None).await.write(204);
    let ups = ws_until(&mut w3, c_block, WAIT).await;
    assert_eq!(cursors(&ups), [c_block]);
    assert_eq!(ups[0]["type"], json!("blocked"));
    for ws in [&mut w1, &mut w2, &mut wo] {
        assert_eq!(cursors(&ws_until(ws, c_after, WAIT).await), [c_kick, c_after]);
    }

    // Reads in a group reach only the reader.
    let c_read = api.read(&m1, &g, 1_000).await.write(200);
    let ups = ws_until(&mut w1, c_read, WAIT).await;
    assert_eq!((ups[0]["type"].as_str(), ups[0]["user_id"].as_str()), (Some("read"), Some("mem1")));
    let (_, c_next) = api.sent(&own, &g, "after the read").await;
    assert_eq!(cursors(&ws_until(&mut w2, c_next, WAIT).await), [c_next], "no read receipt for others");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_socket_does_not_delay_the_others_and_is_closed_with_1013() {
    let server = start(&["--ws-queue", "4"]);
    let api = GroupApi::new(&server);
    let us = api.users(&["own", "rd1", "rd2", "rd3", "slow"]).await;
    let [own, r1, r2, r3, slow] = <[User; 5]>::try_from(us).unwrap();
    let r = api.create(&own, "fanout", &[&r1, &r2, &r3, &slow]).await;
    let head = r.write(201);
    let g = r.json["group_id"].as_str().unwrap().to_owned();
    let mut readers =
        [ws_open(&server, &r1, head).await, ws_open(&server, &r2, head).await, ws_open(&server, &r3, head).await];

    // The slow member: a tiny receive buffer, subscribes, then stops reading.
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let tcp = sock.connect(server.addr).await.expect("connect");
    let (mut slow_ws, _) =
        tokio::time::timeout(WAIT, tokio_tungstenite::client_async(ws_url(&server, &slow.token), tcp))
            .await
            .expect("ws handshake in time")
            .expect("ws handshake");
    ws_send(&mut slow_ws, json!({"type": "sync", "since": head})).await;

    // Big messages fill the slow socket's buffers; readers must get every one promptly.
    let body = "x".repeat(16_000);
    let mut worst = Duration::ZERO;
    let mut last = head;
    let mut closed = false;
    let mut sent = Vec::new();
    for i in 0..1_500 {
        let t0 = Instant::now();
        let (_, c) = api.sent(&own, &g, &body).await;
        for ws in readers.iter_mut() {
            let ups = ws_until(ws, c, Duration::from_secs(5)).await;
            assert_eq!(ups.last().unwrap()["cursor"].as_u64(), Some(c));
        }
        worst = worst.max(t0.elapsed());
        last = c;
        sent.push(c);
        if i % 5 == 4 {
            let text = api.metrics().await;
            let n: u64 = text
                .lines()
                .find_map(|l| l.strip_prefix("parley_websockets_slow_closed_total "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if n >= 1 {
                closed = true;
                break;
            }
        }
    }
    assert!(closed, "the non-reading socket was never closed");
    eprintln!("fan-out: slow socket closed after {} messages; worst send-to-all-readers {worst:?}", sent.len());

    // The slow socket: everything it was sent, then a 1013 close.
    let mut seen = head;
    let code = loop {
        let msg = tokio::time::timeout(WAIT, slow_ws.next()).await.expect("the slow socket ends in time");
        match msg {
            Some(Ok(Message::Text(t))) => {
                let f: Value = serde_json::from_str(t.as_str()).expect("JSON");
                for u in f["updates"].as_array().into_iter().flatten() {
                    let c = u["cursor"].as_u64().unwrap();
                    assert!(c > seen, "no gaps or repeats before the close");
                    seen = c;
                }
            }
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(code, Some(1013));

    assert!(seen < last, "the close came before everything was delivered");

    // It resumes from its cursor and loses nothing: exactly the messages it had not seen.
    let missed: Vec<u64> = sent.iter().copied().filter(|c| *c > seen).collect();
    let (ups, _) = api.sync_all(&slow, seen, 1000).await;
    assert_eq!(cursors(&ups), missed);
    let (mut again, _) = tokio_tungstenite::connect_async(ws_url(&server, &slow.token)).await.expect("reconnect");
    ws_send(&mut again, json!({"type": "sync", "since": seen})).await;
    let mut caught_up = Vec::new();
    loop {
        let f = ws_next(&mut again, WAIT).await;
        caught_up.extend(f["updates"].as_array().into_iter().flatten().cloned());
        if f["type"] == "updates" && f["more"] == json!(false) {
            break;
        }
    }
    assert_eq!(cursors(&caught_up), missed);
}

// ---------------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn member_limit_is_a_clear_error() {
    let server = start(&["--max-group-members", "3"]);
    let api = GroupApi::new(&server);
    let us = api.users(&["own", "aaa", "bbb", "ccc"]).await;
    let [own, a, b, c] = <[User; 4]>::try_from(us).unwrap();

    let r = api.create(&own, "four", &[&a, &b, &c]).await;
    r.err(400, "invalid_request");
    assert!(r.json["error"]["message"].as_str().unwrap().contains('3'), "the message names the limit: {}", r.json);
    assert_eq!(api.get("/v1/groups", &a).await.ok(200)["groups"], json!([]), "nobody was added");

    let g = api.group(&own, &[&a, &b]).await;
    let r = api.add(&own, &g, &["ccc"]).await;
    r.err(400, "invalid_request");
    assert!(r.json["error"]["message"].as_str().unwrap().contains('3'));
    // Re-adding existing members is not growth.
    api.add(&own, &g, &["aaa", "bbb"]).await.ok(200);
    api.kick(&own, &g, "bbb").await.write(204);
    let r = api.add(&own, &g, &["ccc", "ccc"]).await;
    r.write(200);
    assert_eq!(roster(&r.json).len(), 3);
    api.sent(&c, &g, "made it").await;
}

/// `parley_commands_total` from `/metrics`: commands this node proposed and saw applied.
async fn commands_proposed(api: &GroupApi) -> u64 {
    let text = api.metrics().await;
    text.lines()
        .find_map(|l| l.strip_prefix("parley_commands_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("parley_commands_total in /metrics")
}

#[tokio::test]
async fn oversized_member_lists_are_refused_before_they_are_proposed() {
    let server = start(&[]);
    let api = GroupApi::new(&server);
    let [own, other] = <[User; 2]>::try_from(api.users(&["own", "other"]).await).unwrap();
    let g = api.group(&own, &[]).await;
    // 80,000 distinct ids (the default limit is 10,000): once a quadratic scan in `decide`,
    // on every node, that held up every other write for seconds.
    let ids: Vec<String> = (0..80_000).map(|i| format!("u{i:05}")).collect();
    let before = commands_proposed(&api).await;
    let started = Instant::now();
    let r = api.post("/v1/groups", &own, json!({"name": "huge", "members": ids})).await;
    r.err(400, "invalid_request");
    assert!(r.json["error"]["message"].as_str().unwrap().contains("10000"), "{}", r.json);
    api.add(&own, &g, &ids.iter().map(String::as_str).collect::<Vec<_>>()).await.err(400, "invalid_request");
    assert_eq!(commands_proposed(&api).await, before, "an oversized list reached raft");
    assert!(started.elapsed() < Duration::from_secs(5), "refusing took {:?}", started.elapsed());
    // Writes go on.
    let g2 = api.group(&other, &[]).await;
    api.sent(&other, &g2, "still fast").await;
}

#[tokio::test]
async fn a_block_keeps_the_blocked_user_from_adding_the_blocker_to_groups() {
    let server = start(&[]);
    let api = GroupApi::new(&server);
    let [a, b, c] = <[User; 3]>::try_from(api.users(&["aaa", "bbb", "ccc"]).await).unwrap();
    api.call("PUT", "/v1/blocks/bbb", Some(&a.token), None).await.write(204);

    // B cannot reach A through a new group...
    api.create(&b, "sneaky", &[&c, &a]).await.err(403, "blocked");
    // ...nor by adding A to a group B already runs.
    let g = api.group(&b, &[&c]).await;
    api.add(&b, &g, &["aaa"]).await.err(403, "blocked");
    // Nothing was stored: A is in no group, B's group still has two members, and C (who was
    // in the refused create's list too) is only in B's second group.
    assert_eq!(api.get("/v1/groups", &a).await.ok(200)["groups"], json!([]));
    let roster_now = api.get(&format!("/v1/groups/{g}"), &b).await.ok(200).clone();
    assert_eq!(roster(&roster_now).len(), 2);
    assert_eq!(api.get("/v1/groups", &c).await.ok(200)["groups"].as_array().unwrap().len(), 1);
    // The blocker cannot pull B in either; anyone else may still have both.
    api.create(&a, "mine", &[&b]).await.err(403, "blocked");
    let both = api.group(&c, &[&a, &b]).await;
    assert_eq!(roster(&api.get(&format!("/v1/groups/{both}"), &c).await.ok(200).clone()).len(), 3);
}
