//! Friend requests, friends, blocks.

mod support;

use serde_json::{json, Value};
use support::*;

async fn requests(api: &Api, u: &User) -> (Vec<Value>, Vec<Value>) {
    let r = api.get("/v1/friends/requests", Some(&u.token)).await;
    let v = r.ok(200);
    (
        v["incoming"].as_array().unwrap_or_else(|| panic!("incoming: {}", r.text)).clone(),
        v["outgoing"].as_array().unwrap_or_else(|| panic!("outgoing: {}", r.text)).clone(),
    )
}

async fn friends(api: &Api, u: &User) -> Vec<Value> {
    let r = api.get("/v1/friends", Some(&u.token)).await;
    r.ok(200)["friends"].as_array().unwrap_or_else(|| panic!("friends: {}", r.text)).clone()
}

async fn friend_ids(api: &Api, u: &User) -> Vec<String> {
    friends(api, u).await.iter().map(|f| as_str(&f["user_id"], "user_id").to_string()).collect()
}

async fn blocks(api: &Api, u: &User) -> Vec<Value> {
    let r = api.get("/v1/blocks", Some(&u.token)).await;
    r.ok(200)["blocked"].as_array().unwrap_or_else(|| panic!("blocked: {}", r.text)).clone()
}

#[tokio::test]
async fn request_then_accept() {
    let api = shared().api();
    let a = api.user("fa").await;
    let b = api.user("fb").await;

    let t0 = now_ms();
    let r = api.friend_request(&a, &b.id, Some("hi, it's alice")).await;
    let req_cursor = r.write(201);
    assert_eq!(r.json["from"], json!(a.id));
    assert_eq!(r.json["to"], json!(b.id));
    assert_eq!(r.json["note"], json!("hi, it's alice"));
    let ts = as_u64(&r.json["ts"], "ts");
    assert!(ts + 60_000 >= t0 && ts <= now_ms() + 60_000, "ts {ts} not near now");

    let (inc_a, out_a) = requests(&api, &a).await;
    assert!(inc_a.is_empty(), "{inc_a:?}");
    assert_eq!(out_a.len(), 1, "{out_a:?}");
    assert_eq!(out_a[0]["to"], json!(b.id));
    assert_eq!(out_a[0]["note"], json!("hi, it's alice"));
    assert_eq!(out_a[0]["ts"], json!(ts));
    let (inc_b, out_b) = requests(&api, &b).await;
    assert!(out_b.is_empty(), "{out_b:?}");
    assert_eq!(inc_b.len(), 1, "{inc_b:?}");
    assert_eq!(inc_b[0]["from"], json!(a.id));
    assert_eq!(inc_b[0]["note"], json!("hi, it's alice"));
    assert_eq!(inc_b[0]["ts"], json!(ts));

    // Not friends yet.
    assert!(friends(&api, &a).await.is_empty());

    let r = api.post_empty(&format!("/v1/friends/requests/{}/accept", a.id), Some(&b.token)).await;
    let added_cursor = r.write(200);
    assert_eq!(r.json["user_id"], json!(a.id));
    assert!(added_cursor > req_cursor);

    let fa = friends(&api, &a).await;
    assert_eq!(fa.len(), 1, "{fa:?}");
    assert_eq!(fa[0]["user_id"], json!(b.id));
    as_u64(&fa[0]["since"], "since");
    let fb = friends(&api, &b).await;
    assert_eq!(fb.len(), 1, "{fb:?}");
    assert_eq!(fb[0]["user_id"], json!(a.id));

    // Pending lists are empty now.
    let (i, o) = requests(&api, &a).await;
    assert!(i.is_empty() && o.is_empty(), "{i:?} {o:?}");
    let (i, o) = requests(&api, &b).await;
    assert!(i.is_empty() && o.is_empty(), "{i:?} {o:?}");

    // Both sides see the request and the friendship in sync, at the writes' cursors.
    for u in [&a, &b] {
        let (ups, _) = api.sync_all(&u.token, 0, None).await;
        let fr = of_type(&ups, "friend_request");
        assert_eq!(fr.len(), 1, "{}: {ups:?}", u.id);
        assert_eq!(fr[0]["from"], json!(a.id));
        assert_eq!(fr[0]["to"], json!(b.id));
        assert_eq!(fr[0]["note"], json!("hi, it's alice"));
        assert_eq!(fr[0]["cursor"], json!(req_cursor));
        let fa = of_type(&ups, "friend_added");
        assert_eq!(fa.len(), 1, "{}: {ups:?}", u.id);
        assert_eq!(user_set(&fa[0]["users"]), [a.id.clone(), b.id.clone()].into_iter().collect());
        assert_eq!(fa[0]["cursor"], json!(added_cursor));
    }

    // Accepting again: there is no pending request any more.
    api.post_empty(&format!("/v1/friends/requests/{}/accept", a.id), Some(&b.token)).await.err(404, "not_found");
}

#[tokio::test]
async fn note_is_optional() {
    let api = shared().api();
    let a = api.user("na").await;
    let b = api.user("nb").await;
    let r = api.friend_request(&a, &b.id, None).await;
    r.write(201);
    // A missing note reads back as empty.
    assert!(r.json["note"] == json!("") || r.json["note"].is_null(), "{}", r.text);
}

#[tokio::test]
async fn reject() {
    let api = shared().api();
    let a = api.user("ra").await;
    let b = api.user("rb").await;
    api.friend_request(&a, &b.id, Some("?")).await.write(201);

    let r = api.post_empty(&format!("/v1/friends/requests/{}/reject", a.id), Some(&b.token)).await;
    let cursor = r.write(204);

    let (i, o) = requests(&api, &a).await;
    assert!(i.is_empty() && o.is_empty(), "{i:?} {o:?}");
    let (i, o) = requests(&api, &b).await;
    assert!(i.is_empty() && o.is_empty(), "{i:?} {o:?}");
    assert!(friends(&api, &a).await.is_empty());
    assert!(friends(&api, &b).await.is_empty());

    for u in [&a, &b] {
        let (ups, _) = api.sync_all(&u.token, 0, None).await;
        let rej = of_type(&ups, "friend_request_rejected");
        assert_eq!(rej.len(), 1, "{}: {ups:?}", u.id);
        assert_eq!(rej[0]["from"], json!(a.id));
        assert_eq!(rej[0]["to"], json!(b.id));
        assert_eq!(rej[0]["cursor"], json!(cursor));
    }

    // Nothing left to reject or accept.
    api.post_empty(&format!("/v1/friends/requests/{}/reject", a.id), Some(&b.token)).await.err(404, "not_found");
    api.post_empty(&format!("/v1/friends/requests/{}/accept", a.id), Some(&b.token)).await.err(404, "not_found");
    // A can ask again after a rejection.
    api.friend_request(&a, &b.id, None).await.write(201);
}

#[tokio::test]
async fn accept_or_reject_without_request_is_not_found() {
    let api = shared().api();
    let a = api.user("xa").await;
    let b = api.user("xb").await;
    api.post_empty(&format!("/v1/friends/requests/{}/accept", b.id), Some(&a.token)).await.err(404, "not_found");
    api.post_empty(&format!("/v1/friends/requests/{}/reject", b.id), Some(&a.token)).await.err(404, "not_found");
    // The requester cannot accept their own outgoing request.
    api.friend_request(&a, &b.id, None).await.write(201);
    api.post_empty(&format!("/v1/friends/requests/{}/accept", b.id), Some(&a.token)).await.err(404, "not_found");
    api.post_empty(&format!("/v1/friends/requests/{}/accept", uid("ghost")), Some(&a.token))
        .await
        .err(404, "not_found");
}

#[tokio::test]
async fn mutual_requests_make_friends_at_once() {
    let api = shared().api();
    let a = api.user("ma").await;
    let b = api.user("mb").await;
    api.friend_request(&a, &b.id, None).await.write(201);
    let r = api.friend_request(&b, &a.id, Some("me too")).await;
    r.write(201);

    assert_eq!(friend_ids(&api, &a).await, vec![b.id.clone()]);
    assert_eq!(friend_ids(&api, &b).await, vec![a.id.clone()]);
    for u in [&a, &b] {
        let (i, o) = requests(&api, u).await;
        assert!(i.is_empty() && o.is_empty(), "{}: {i:?} {o:?}", u.id);
        let (ups, _) = api.sync_all(&u.token, 0, None).await;
        let fa = of_type(&ups, "friend_added");
        assert_eq!(fa.len(), 1, "{}: {ups:?}", u.id);
        assert_eq!(user_set(&fa[0]["users"]), [a.id.clone(), b.id.clone()].into_iter().collect());
    }
    // They can talk.
    api.send(&a, &dm(&a.id, &b.id), "hello").await;
}

#[tokio::test]
async fn request_errors() {
    let api = shared().api();
    let a = api.user("ea").await;
    let b = api.user("eb").await;

    api.friend_request(&a, &a.id, None).await.err(400, "invalid_request");
    api.friend_request(&a, &uid("ghost"), None).await.err(404, "not_found");
    api.post("/v1/friends/requests", Some(&a.token), json!({})).await.err(400, "invalid_request");
    api.post("/v1/friends/requests", Some(&a.token), json!({"to": 42})).await.err(400, "invalid_request");

    // A second identical pending request: 201 again, still one request, one update.
    api.friend_request(&a, &b.id, Some("n")).await.write(201);
    api.friend_request(&a, &b.id, Some("n")).await.write(201);
    let (_, out) = requests(&api, &a).await;
    assert_eq!(out.len(), 1, "{out:?}");
    let (inc, _) = requests(&api, &b).await;
    assert_eq!(inc.len(), 1, "{inc:?}");
    let (ups, _) = api.sync_all(&b.token, 0, None).await;
    assert_eq!(of_type(&ups, "friend_request").len(), 1, "{ups:?}");

    api.post_empty(&format!("/v1/friends/requests/{}/accept", a.id), Some(&b.token)).await.write(200);
    api.friend_request(&a, &b.id, None).await.err(409, "already_friends");
    api.friend_request(&b, &a.id, None).await.err(409, "already_friends");
}

#[tokio::test]
async fn remove_friend_both_sides() {
    let api = shared().api();
    let a = api.user("rma").await;
    let b = api.user("rmb").await;
    api.befriend(&a, &b).await;
    let cid = dm(&a.id, &b.id);
    api.send(&a, &cid, "before").await;

    let r = api.delete(&format!("/v1/friends/{}", b.id), Some(&a.token)).await;
    let cursor = r.write(204);
    assert!(friends(&api, &a).await.is_empty());
    assert!(friends(&api, &b).await.is_empty());

    for u in [&a, &b] {
        let (ups, _) = api.sync_all(&u.token, 0, None).await;
        let fr = of_type(&ups, "friend_removed");
        assert_eq!(fr.len(), 1, "{}: {ups:?}", u.id);
        assert_eq!(user_set(&fr[0]["users"]), [a.id.clone(), b.id.clone()].into_iter().collect());
        assert_eq!(fr[0]["cursor"], json!(cursor));
    }

    // No more direct messages, either way.
    api.send_raw(&a.token, &cid, &cmid("x"), "after").await.err(403, "not_friends");
    api.send_raw(&b.token, &cid, &cmid("x"), "after").await.err(403, "not_friends");

    // Removing again, or a stranger.
    api.delete(&format!("/v1/friends/{}", b.id), Some(&a.token)).await.err(404, "not_found");
    api.delete(&format!("/v1/friends/{}", a.id), Some(&b.token)).await.err(404, "not_found");
    let c = api.user("rmc").await;
    api.delete(&format!("/v1/friends/{}", c.id), Some(&a.token)).await.err(404, "not_found");

    // They can become friends again.
    api.befriend(&b, &a).await;
    api.send(&b, &cid, "again").await;
}

#[tokio::test]
async fn block_stops_requests_and_messages_until_unblocked() {
    let api = shared().api();
    let a = api.user("ba").await;
    let b = api.user("bb").await;
    let c = api.user("bc").await;
    api.befriend(&a, &b).await;
    let cid = dm(&a.id, &b.id);
    api.send(&b, &cid, "hi").await;

    // A blocks B.
    let r = api.put(&format!("/v1/blocks/{}", b.id), Some(&a.token)).await;
    let block_cursor = r.write(204);
    assert_eq!(blocks(&api, &a).await, vec![json!(b.id)]);
    assert!(blocks(&api, &b).await.is_empty());

    // Direct messages are refused both ways.
    api.send_raw(&b.token, &cid, &cmid("x"), "let me in").await.err(403, "blocked");
    api.send_raw(&a.token, &cid, &cmid("x"), "go away").await.err(403, "blocked");

    // Blocking again changes nothing.
    api.put(&format!("/v1/blocks/{}", b.id), Some(&a.token)).await.write(204);
    assert_eq!(blocks(&api, &a).await, vec![json!(b.id)]);

    // Only the blocker is told.
    let (ups_a, _) = api.sync_all(&a.token, 0, None).await;
    let bl = of_type(&ups_a, "blocked");
    assert_eq!(bl.len(), 1, "{ups_a:?}");
    assert_eq!(bl[0]["user_id"], json!(b.id));
    assert_eq!(bl[0]["cursor"], json!(block_cursor));
    let (ups_b, _) = api.sync_all(&b.token, 0, None).await;
    assert!(of_type(&ups_b, "blocked").is_empty(), "the blocked user is not told: {ups_b:?}");

    // A blocks C (a stranger): requests are refused in both directions.
    api.put(&format!("/v1/blocks/{}", c.id), Some(&a.token)).await.write(204);
    api.friend_request(&c, &a.id, None).await.err(403, "blocked");
    api.friend_request(&a, &c.id, None).await.err(403, "blocked");
    assert!(requests(&api, &a).await.0.is_empty());

    // Unblock.
    let r = api.delete(&format!("/v1/blocks/{}", b.id), Some(&a.token)).await;
    let unblock_cursor = r.write(204);
    assert_eq!(blocks(&api, &a).await, vec![json!(c.id)]);
    let (ups_a, _) = api.sync_all(&a.token, 0, None).await;
    let ub = of_type(&ups_a, "unblocked");
    assert_eq!(ub.len(), 1, "{ups_a:?}");
    assert_eq!(ub[0]["user_id"], json!(b.id));
    assert_eq!(ub[0]["cursor"], json!(unblock_cursor));
    let (ups_b, _) = api.sync_all(&b.token, 0, None).await;
    assert!(of_type(&ups_b, "unblocked").is_empty(), "{ups_b:?}");

    // Blocking did not end the friendship: they can talk again.
    api.send(&b, &cid, "back").await;
    api.send(&a, &cid, "welcome back").await;

    api.delete(&format!("/v1/blocks/{}", c.id), Some(&a.token)).await.write(204);
    api.friend_request(&c, &a.id, None).await.write(201);

    // Unblocking someone not blocked changes nothing.
    api.delete(&format!("/v1/blocks/{}", b.id), Some(&a.token)).await.write(204);
    assert!(blocks(&api, &a).await.is_empty());
}

#[tokio::test]
async fn block_errors() {
    let api = shared().api();
    let a = api.user("bea").await;
    api.put(&format!("/v1/blocks/{}", a.id), Some(&a.token)).await.err(400, "invalid_request");
    api.put(&format!("/v1/blocks/{}", uid("ghost")), Some(&a.token)).await.err(404, "not_found");
    assert!(blocks(&api, &a).await.is_empty());
}

#[tokio::test]
async fn friend_endpoints_need_a_token() {
    let api = shared().api();
    api.get("/v1/friends", None).await.err(401, "unauthorized");
    api.get("/v1/friends/requests", None).await.err(401, "unauthorized");
    api.post("/v1/friends/requests", None, json!({"to": "someone"})).await.err(401, "unauthorized");
    api.get("/v1/blocks", None).await.err(401, "unauthorized");
    api.put("/v1/blocks/someone", None).await.err(401, "unauthorized");
}
