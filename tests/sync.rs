//! `GET /v1/sync`: paging, routing of updates to the right users, long polling,
//! read-your-writes with `min_cursor`.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

#[tokio::test]
async fn fresh_user_has_no_updates() {
    let api = shared().api();
    let u = api.user("fresh").await;
    let (ups, cursor, more) = api.sync_page(&u.token, 0, None).await;
    assert!(ups.is_empty(), "registration and login are not updates of the contract: {ups:?}");
    assert!(!more);
    // Syncing from the returned cursor stays empty.
    let (ups, cursor2, more) = api.sync_page(&u.token, cursor, None).await;
    assert!(ups.is_empty() && !more);
    assert!(cursor2 >= cursor);
}

#[tokio::test]
async fn paged_sync_equals_one_shot() {
    let api = shared().api();
    let (a, b, cid) = api.friends("pg").await;
    let c = api.user("pgc").await;
    // A mix of update types for `a`: 105 messages, reads, a revoke, a block and unblock, a
    // friend request from a third user.
    for i in 0..105 {
        let from = if i % 3 == 0 { &b } else { &a };
        api.send(from, &cid, &format!("m{i}")).await;
        if i % 10 == 0 {
            api.read(&a.token, &cid, i + 1).await.write(200);
        }
    }
    api.post_empty(&format!("/v1/conversations/{cid}/messages/105/revoke"), Some(&a.token)).await.write(200);
    api.put(&format!("/v1/blocks/{}", c.id), Some(&a.token)).await.write(204);
    api.delete(&format!("/v1/blocks/{}", c.id), Some(&a.token)).await.write(204);
    api.friend_request(&c, &a.id, Some("hey")).await.write(201);

    let (one_shot, end) = api.sync_all(&a.token, 0, Some(1000)).await;
    assert!(one_shot.len() > 110, "expected all updates: {}", one_shot.len());
    // Strictly ascending, no repeats (checked by sync_all), and the types we caused.
    for t in ["friend_request", "friend_added", "message", "read", "message_revoked", "blocked", "unblocked"] {
        assert!(!of_type(&one_shot, t).is_empty(), "missing {t} update");
    }
    assert_eq!(of_type(&one_shot, "message").len(), 105);

    for limit in [1, 3, 7, 64] {
        let (paged, end2) = api.sync_all(&a.token, 0, Some(limit)).await;
        assert_eq!(paged, one_shot, "limit {limit}: paged sync differs from one-shot");
        assert!(end2 >= end, "the end cursor never goes backwards");
    }

    // The default page is 100 updates, and says there is more.
    let (page, _, more) = api.sync_page(&a.token, 0, None).await;
    assert_eq!(page.len(), 100, "default limit is 100");
    assert!(more);
    assert_eq!(&page[..], &one_shot[..100]);

    // Starting in the middle returns exactly the tail.
    let mid = as_u64(&one_shot[40]["cursor"], "cursor");
    let (tail, _) = api.sync_all(&a.token, mid, Some(1000)).await;
    assert_eq!(&tail[..], &one_shot[41..]);

    // B's view of the same conversation: the same message updates, same cursors.
    let (ups_b, _) = api.sync_all(&b.token, 0, Some(1000)).await;
    let ma: Vec<_> = of_type(&one_shot, "message").into_iter().cloned().collect();
    let mb: Vec<_> = of_type(&ups_b, "message").into_iter().cloned().collect();
    assert_eq!(ma, mb, "both participants get the same message updates");
    // B never sees a's blocks.
    assert!(of_type(&ups_b, "blocked").is_empty() && of_type(&ups_b, "unblocked").is_empty());
}

#[tokio::test]
async fn updates_go_to_the_right_users() {
    let api = shared().api();
    let (a, b, cid) = api.friends("rt").await;
    let outsider = api.user("rto").await;
    let (_, start_a) = api.sync_all(&a.token, 0, None).await;
    let (_, start_b) = api.sync_all(&b.token, 0, None).await;

    let (m, send_cursor) = api.send(&a, &cid, "hello").await;
    let r = api.read(&b.token, &cid, 1).await;
    let read_cursor = r.write(200);

    for (u, since) in [(&a, start_a), (&b, start_b)] {
        let (ups, _) = api.sync_all(&u.token, since, None).await;
        let msgs = of_type(&ups, "message");
        assert_eq!(msgs.len(), 1, "{}: {ups:?}", u.id);
        assert_eq!(msgs[0]["message"], m, "the update carries the message as sent");
        assert_eq!(msgs[0]["cursor"], json!(send_cursor), "the update is at the send's cursor");
        // Sending emits no read update; B's read reaches both participants.
        let reads = of_type(&ups, "read");
        assert_eq!(reads.len(), 1, "{}: {ups:?}", u.id);
        assert_eq!(reads[0]["conversation_id"], json!(cid));
        assert_eq!(reads[0]["user_id"], json!(b.id));
        assert_eq!(reads[0]["read_seq"], json!(1));
        assert_eq!(reads[0]["cursor"], json!(read_cursor));
        assert_eq!(ups.len(), 2, "{}: only the message and the read: {ups:?}", u.id);
    }

    // A read that changes nothing appends nothing.
    api.read(&b.token, &cid, 1).await.write(200);
    api.read(&b.token, &cid, 0).await.write(200);
    let (ups, _) = api.sync_all(&b.token, read_cursor, None).await;
    assert!(ups.is_empty(), "no-op reads are not updates: {ups:?}");

    // Nothing leaks to a third user.
    let (ups, _) = api.sync_all(&outsider.token, 0, None).await;
    assert!(ups.is_empty(), "{ups:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_wakes_when_a_message_arrives() {
    let api = shared().api();
    let (a, b, cid) = api.friends("lp").await;
    let (_, since) = api.sync_all(&a.token, 0, None).await;

    let poller = {
        let api = api.clone();
        let token = a.token.clone();
        tokio::spawn(async move {
            let t0 = Instant::now();
            let r = api
                .get_with_timeout(
                    &format!("/v1/sync?since={since}&wait_ms=20000"),
                    Some(&token),
                    Duration::from_secs(40),
                )
                .await;
            (r, t0.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (m, cursor) = api.send(&b, &cid, "wake up").await;

    let (r, elapsed) = tokio::time::timeout(Duration::from_secs(45), poller).await.expect("poll bounded").unwrap();
    let v = r.ok(200);
    assert!(elapsed < Duration::from_secs(10), "long poll returned after {elapsed:?}, not soon after the message");
    let ups = v["updates"].as_array().unwrap();
    check_updates(ups, since);
    let msgs = of_type(ups, "message");
    assert_eq!(msgs.len(), 1, "{}", r.text);
    assert_eq!(msgs[0]["message"], m);
    assert_eq!(msgs[0]["cursor"], json!(cursor));
    assert!(as_u64(&v["cursor"], "cursor") >= cursor);
}

#[tokio::test]
async fn long_poll_without_news_waits_then_returns_empty() {
    let api = shared().api();
    let u = api.user("idle").await;
    let (_, since) = api.sync_all(&u.token, 0, None).await;
    let t0 = Instant::now();
    let r = api
        .get_with_timeout(&format!("/v1/sync?since={since}&wait_ms=600"), Some(&u.token), Duration::from_secs(20))
        .await;
    let elapsed = t0.elapsed();
    let v = r.ok(200);
    assert_eq!(v["updates"], json!([]));
    assert_eq!(v["more"], json!(false));
    assert!(elapsed >= Duration::from_millis(500), "returned after {elapsed:?}, did not wait");
    assert!(elapsed < Duration::from_secs(10), "waited {elapsed:?} for a 600 ms poll");

    // wait_ms=0 answers at once.
    let t0 = Instant::now();
    let r = api.get(&format!("/v1/sync?since={since}&wait_ms=0"), Some(&u.token)).await;
    r.ok(200);
    assert!(t0.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn min_cursor_read_your_writes() {
    let api = shared().api();
    let (a, _b, cid) = api.friends("mc").await;
    let (_, cursor) = api.send(&a, &cid, "x").await;
    let t0 = Instant::now();
    let r = api.get(&format!("/v1/conversations/{cid}/messages?min_cursor={cursor}"), Some(&a.token)).await;
    assert_eq!(r.ok(200)["max_seq"], json!(1));
    assert!(t0.elapsed() < Duration::from_secs(3));
    api.get(&format!("/v1/me?min_cursor={cursor}"), Some(&a.token)).await.ok(200);
    api.get(&format!("/v1/sync?since=0&min_cursor={cursor}"), Some(&a.token)).await.ok(200);

    // A cursor this node will not reach within 5 s: 503 unavailable, after about 5 s.
    let t0 = Instant::now();
    let r = api.get(&format!("/v1/me?min_cursor={}", cursor + 1_000_000_000), Some(&a.token)).await;
    r.err(503, "unavailable");
    let waited = t0.elapsed();
    assert!(waited >= Duration::from_secs(4) && waited < Duration::from_secs(15), "waited {waited:?}");
}

#[tokio::test]
async fn sync_errors() {
    let api = shared().api();
    let u = api.user("se").await;
    api.get("/v1/sync?since=0", None).await.err(401, "unauthorized");
    api.get("/v1/sync?since=abc", Some(&u.token)).await.err(400, "invalid_request");
    api.get("/v1/sync?since=0&limit=x", Some(&u.token)).await.err(400, "invalid_request");
}
