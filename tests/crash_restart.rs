//! Durability: SIGKILL the server after acknowledged writes, restart it on the same data dir,
//! and check that everything a user can see is unchanged.

mod support;

use serde_json::{json, Value};
use support::*;

/// Everything a user can observe, minus fields that legitimately move (`cursor` of lists).
async fn snapshot(api: &Api, u: &User) -> Value {
    let mut convs = api.get("/v1/conversations", Some(&u.token)).await.ok(200).clone();
    convs.as_object_mut().unwrap().remove("cursor");
    let friends = api.get("/v1/friends", Some(&u.token)).await.ok(200).clone();
    let blocks = api.get("/v1/blocks", Some(&u.token)).await.ok(200).clone();
    let requests = api.get("/v1/friends/requests", Some(&u.token)).await.ok(200).clone();
    let sessions = api.get("/v1/sessions", Some(&u.token)).await.ok(200).clone();
    let me = api.get("/v1/me", Some(&u.token)).await.ok(200).clone();
    let (updates, _) = api.sync_all(&u.token, 0, None).await;
    json!({
        "conversations": convs, "friends": friends, "blocks": blocks, "requests": requests,
        "sessions": sessions, "me": me, "updates": updates,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_sigkill() {
    // No --jwt-secret: the node keeps a random one in its data dir, so tokens must survive.
    let mut server = TestServer::start();
    let api = server.api();
    let admin = server.admin_token.clone();

    let a = api.user("cra").await;
    let b = api.user("crb").await;
    let c = api.user("crc").await;
    api.befriend(&a, &b).await;
    api.befriend(&a, &c).await;
    let ab = dm(&a.id, &b.id);
    let ac = dm(&a.id, &c.id);
    for i in 0..10 {
        api.send(if i % 3 == 0 { &b } else { &a }, &ab, &format!("ab {i}")).await;
    }
    for i in 0..4 {
        api.send(&c, &ac, &format!("ac {i}")).await;
    }
    api.read(&b.token, &ab, 5).await.write(200);
    api.post_empty(&format!("/v1/conversations/{ab}/messages/9/revoke"), Some(&a.token)).await.write(200);
    api.put(&format!("/v1/blocks/{}", c.id), Some(&b.token)).await.write(204);
    let d = api.user("crd").await;
    api.friend_request(&d, &a.id, Some("pending")).await.write(201);
    let revoked = api.login_session(&a.id, &a.password, Some("old phone")).await;
    api.delete(&format!("/v1/sessions/{}", revoked.session_id), Some(&a.token)).await.write(204);
    // The last acknowledged write, right before the crash.
    let (_, last_write) = api.send(&b, &ab, "last words").await;

    let before_a = snapshot(&api, &a).await;
    let before_b = snapshot(&api, &b).await;
    let before_c = snapshot(&api, &c).await;
    let verify_before = api.verify(&admin).await;
    assert_eq!(verify_before["ok"], json!(true));
    assert!(as_u64(&verify_before["last_cursor"], "last_cursor") >= last_write);
    let cb = api.conversation(&b.token, &ab).await.unwrap();
    assert_eq!((cb["max_seq"].clone(), cb["read_seq"].clone(), cb["unread"].clone()), (json!(11), json!(11), json!(0)));
    // a last sent seq 9; b sent 10 and 11.
    let ca = api.conversation(&a.token, &ab).await.unwrap();
    assert_eq!((ca["read_seq"].clone(), ca["unread"].clone()), (json!(9), json!(2)));

    server.kill9();
    server.restart();
    let api = server.api();

    // Same journal.
    let verify_after = api.verify(&admin).await;
    assert_eq!(verify_after["ok"], json!(true), "{verify_after}");
    assert_eq!(verify_after["last_cursor"], verify_before["last_cursor"], "last_cursor changed across the crash");
    assert_eq!(verify_after["head_hash"], verify_before["head_hash"], "head_hash changed across the crash");

    // Old tokens work; the revoked one stays revoked.
    api.get("/v1/me", Some(&a.token)).await.ok(200);
    api.get("/v1/me", Some(&revoked.token)).await.err(401, "unauthorized");

    // Everything users can see is unchanged.
    assert_eq!(snapshot(&api, &a).await, before_a, "a's view changed across the crash");
    assert_eq!(snapshot(&api, &b).await, before_b, "b's view changed across the crash");
    assert_eq!(snapshot(&api, &c).await, before_c, "c's view changed across the crash");

    // Idempotency survives too: resending the last message returns it, not a copy.
    let hist = api.history(&b.token, &ab, "?after_seq=10").await;
    let last = hist["messages"][0].clone();
    assert_eq!(last["body"], json!("last words"));
    let r = api.send_raw(&b.token, &ab, as_str(&last["client_msg_id"], "client_msg_id"), "last words").await;
    r.ok(200);
    assert_eq!(r.json["message"], last);

    // And the node keeps going: next seq, next cursor.
    let (m, c2) = api.send(&a, &ab, "after the crash").await;
    assert_eq!(m["seq"], json!(12));
    assert!(c2 > as_u64(&verify_before["last_cursor"], "last_cursor"));
    let v = api.verify(&admin).await;
    assert_eq!(v["ok"], json!(true));
    assert_eq!(v["last_cursor"], json!(c2));

    // A second crash right after a write.
    let (_, c3) = api.send(&b, &ab, "again").await;
    server.kill9();
    server.restart();
    let api = server.api();
    let h = api.history(&a.token, &ab, "?after_seq=11").await;
    assert_eq!(h["max_seq"], json!(13));
    assert_eq!(h["messages"][1]["body"], json!("again"));
    let v = api.verify(&admin).await;
    assert_eq!(v["ok"], json!(true));
    assert_eq!(v["last_cursor"], json!(c3));
}

#[tokio::test]
async fn login_after_restart_with_a_fixed_jwt_secret() {
    let mut server =
        TestServer::start_with(&["--rate-limit-per-user", "0", "--jwt-secret", "a-test-secret-of-reasonable-length"]);
    let api = server.api();
    let u = api.user("crj").await;
    server.restart();
    let api = server.api();
    api.get("/v1/me", Some(&u.token)).await.ok(200);
    api.login(&u.id, &u.password).await;
    api.register_raw(&u.id, "whatever1", None).await.err(409, "user_exists");
}
