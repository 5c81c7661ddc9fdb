//! Direct messages: send, idempotency, history paging, unread counts, conversation list,
//! revoke.

mod support;

use std::collections::BTreeSet;

use serde_json::{json, Value};
use support::*;

fn seqs(history: &Value) -> Vec<u64> {
    history["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("messages: {history}"))
        .iter()
        .map(|m| as_u64(&m["seq"], "seq"))
        .collect()
}

#[tokio::test]
async fn send_and_read_back() {
    let api = shared().api();
    let (a, b, cid) = api.friends("sr").await;
    assert!(cid.starts_with("d:") && cid.split(':').nth(1) < cid.split(':').nth(2));

    // Friends with no messages yet: empty history.
    let h = api.history(&a.token, &cid, "").await;
    assert_eq!(h["messages"], json!([]));
    assert_eq!(h["max_seq"], json!(0));

    let t0 = now_ms();
    let r = api
        .post(
            &format!("/v1/conversations/{cid}/messages"),
            Some(&a.token),
            json!({"client_msg_id": "c-1", "body": "héllo 👋"}),
        )
        .await;
    let cursor = r.write(201);
    let m = &r.json["message"];
    assert_eq!(m["conversation_id"], json!(cid));
    assert_eq!(m["seq"], json!(1));
    assert_eq!(m["sender"], json!(a.id));
    assert_eq!(m["body"], json!("héllo 👋"));
    assert_eq!(m["client_msg_id"], json!("c-1"));
    assert_eq!(m["reply_to"], Value::Null);
    assert_eq!(m["revoked"], json!(false));
    let ts = as_u64(&m["ts"], "ts");
    assert!(ts + 60_000 >= t0 && ts <= now_ms() + 60_000, "ts {ts} not near now");

    // A reply.
    let r = api
        .post(
            &format!("/v1/conversations/{cid}/messages"),
            Some(&b.token),
            json!({"client_msg_id": "c-1", "body": "hi!", "reply_to": 1}),
        )
        .await;
    let cursor2 = r.write(201);
    assert!(cursor2 > cursor);
    assert_eq!(r.json["message"]["seq"], json!(2));
    assert_eq!(r.json["message"]["reply_to"], json!(1));
    assert_eq!(r.json["message"]["sender"], json!(b.id));

    // Both read the same history.
    for u in [&a, &b] {
        let h = api.history(&u.token, &cid, "").await;
        assert_eq!(h["max_seq"], json!(2));
        let msgs = h["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 2, "{h}");
        assert_eq!(&msgs[0], m);
        assert_eq!(msgs[1]["body"], json!("hi!"));
        assert_eq!(msgs[1]["reply_to"], json!(1));
    }
}

#[tokio::test]
async fn reply_to_must_exist() {
    let api = shared().api();
    let (a, _b, cid) = api.friends("rt").await;
    let path = format!("/v1/conversations/{cid}/messages");
    api.post(&path, Some(&a.token), json!({"client_msg_id": cmid("r"), "body": "x", "reply_to": 1}))
        .await
        .err(400, "invalid_request");
    api.send(&a, &cid, "one").await;
    for bad in [json!(0), json!(2), json!(99), json!(-1), json!("1")] {
        api.post(&path, Some(&a.token), json!({"client_msg_id": cmid("r"), "body": "x", "reply_to": bad}))
            .await
            .err(400, "invalid_request");
    }
    // Nothing was stored by the refused sends.
    assert_eq!(api.history(&a.token, &cid, "").await["max_seq"], json!(1));
}

#[tokio::test]
async fn idempotent_resend() {
    let api = shared().api();
    let (a, b, cid) = api.friends("id").await;
    let r1 = api.send_raw(&a.token, &cid, "same-id", "first").await;
    let c1 = r1.write(201);
    // The retry (even with another body) answers 200 with the original message.
    for body in ["first", "changed on retry"] {
        let r2 = api.send_raw(&a.token, &cid, "same-id", body).await;
        r2.ok(200);
        assert_eq!(r2.json["message"], r1.json["message"], "retry returns the original");
        if let Some(c) = r2.cursor_header() {
            assert!(c >= c1);
        }
    }
    // Stored once.
    let h = api.history(&b.token, &cid, "").await;
    assert_eq!(h["max_seq"], json!(1));
    assert_eq!(h["messages"].as_array().unwrap().len(), 1);
    let (ups, _) = api.sync_all(&b.token, 0, None).await;
    assert_eq!(of_type(&ups, "message").len(), 1, "{ups:?}");

    // The key is (sender, client_msg_id): B may use the same id.
    let r3 = api.send_raw(&b.token, &cid, "same-id", "from b").await;
    r3.write(201);
    assert_eq!(r3.json["message"]["seq"], json!(2));
    assert_eq!(r3.json["message"]["sender"], json!(b.id));
}

#[tokio::test]
async fn body_limits() {
    let api = shared().api();
    let (a, _b, cid) = api.friends("bl").await;
    api.send_raw(&a.token, &cid, &cmid("e"), "").await.err(400, "invalid_request");
    api.send_raw(&a.token, &cid, &cmid("e"), &"x".repeat(16_385)).await.err(413, "payload_too_large");
    // Bytes, not characters: 8,193 two-byte characters.
    api.send_raw(&a.token, &cid, &cmid("e"), &"é".repeat(8_193)).await.err(413, "payload_too_large");
    let (m, _) = api.send(&a, &cid, &"x".repeat(16_384)).await;
    assert_eq!(m["seq"], json!(1));
    assert_eq!(m["body"].as_str().unwrap().len(), 16_384);
    // Missing or mistyped fields.
    let path = format!("/v1/conversations/{cid}/messages");
    api.post(&path, Some(&a.token), json!({"body": "no id"})).await.err(400, "invalid_request");
    api.post(&path, Some(&a.token), json!({"client_msg_id": cmid("e")})).await.err(400, "invalid_request");
    api.post(&path, Some(&a.token), json!({"client_msg_id": cmid("e"), "body": 5})).await.err(400, "invalid_request");
    assert_eq!(api.history(&a.token, &cid, "").await["max_seq"], json!(1));
}

#[tokio::test]
async fn who_may_send_and_read() {
    let api = shared().api();
    let (a, b, cid) = api.friends("wm").await;
    let c = api.user("wmc").await;
    api.send(&a, &cid, "private").await;

    // A third user is not a member of a's and b's conversation.
    api.send_raw(&c.token, &cid, &cmid("c"), "intrude").await.err(403, "not_member");
    api.get(&format!("/v1/conversations/{cid}/messages"), Some(&c.token)).await.err(403, "not_member");
    api.read(&c.token, &cid, 1).await.err(403, "not_member");
    api.post_empty(&format!("/v1/conversations/{cid}/messages/1/revoke"), Some(&c.token)).await.err(403, "not_member");

    // Strangers cannot message each other.
    api.send_raw(&a.token, &dm(&a.id, &c.id), &cmid("c"), "hi stranger").await.err(403, "not_friends");

    // Malformed conversation ids.
    let (lo, hi) = if a.id < b.id { (&a.id, &b.id) } else { (&b.id, &a.id) };
    for bad in [
        format!("d:{hi}:{lo}"),
        format!("d:{lo}:{lo}"),
        format!("d:{lo}"),
        format!("x:{lo}"),
        "x:1".to_string(),
        "d::".to_string(),
        "nonsense".to_string(),
    ] {
        api.send_raw(&a.token, &bad, &cmid("c"), "x").await.err(400, "invalid_request");
        api.get(&format!("/v1/conversations/{bad}/messages"), Some(&a.token)).await.err(400, "invalid_request");
    }
    api.get("/v1/conversations", None).await.err(401, "unauthorized");
    api.send_raw("bogus", &cid, &cmid("c"), "x").await.err(401, "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_get_gap_free_seqs() {
    let api = shared().api();
    let (a, b, cid) = api.friends("cc").await;
    const TASKS_PER_USER: usize = 3;
    const PER_TASK: usize = 10;
    let mut handles = Vec::new();
    for u in [&a, &b] {
        for t in 0..TASKS_PER_USER {
            let (api, u, cid) = (api.clone(), u.clone(), cid.clone());
            handles.push(tokio::spawn(async move {
                let mut got = Vec::new();
                for i in 0..PER_TASK {
                    let body = format!("{}-{t}-{i}", u.id);
                    let (m, c) = api.send(&u, &cid, &body).await;
                    got.push((as_u64(&m["seq"], "seq"), c, body));
                }
                got
            }));
        }
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.expect("sender task"));
    }
    let n = (2 * TASKS_PER_USER * PER_TASK) as u64;
    let mut seqs_sent: Vec<u64> = all.iter().map(|(s, _, _)| *s).collect();
    seqs_sent.sort();
    assert_eq!(seqs_sent, (1..=n).collect::<Vec<_>>(), "seqs are 1..{n} without gaps or repeats");
    // Later seq, later cursor.
    let mut by_seq = all.clone();
    by_seq.sort();
    assert!(by_seq.windows(2).all(|w| w[0].1 < w[1].1), "cursor order matches seq order");

    let h = api.history(&a.token, &cid, "?limit=500").await;
    assert_eq!(h["max_seq"], json!(n));
    assert_eq!(seqs(&h), (1..=n).collect::<Vec<_>>());
    for (seq, _, body) in &all {
        assert_eq!(h["messages"][(*seq - 1) as usize]["body"], json!(body));
    }
    // Each task's messages are in its own order.
    for u in [&a, &b] {
        for t in 0..TASKS_PER_USER {
            let prefix = format!("{}-{t}-", u.id);
            let order: Vec<u64> = h["messages"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|m| m["body"].as_str().and_then(|s| s.strip_prefix(&prefix)).map(|i| i.parse().unwrap()))
                .collect();
            assert_eq!(order, (0..PER_TASK as u64).collect::<Vec<_>>());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_paging() {
    let api = shared().api();
    let (a, b, cid) = api.friends("hp").await;
    const N: u64 = 510;
    // Send N messages quickly from a few tasks, then check they are 1..N.
    let mut handles = Vec::new();
    for t in 0..6u64 {
        let (api, u, cid) = (api.clone(), if t % 2 == 0 { a.clone() } else { b.clone() }, cid.clone());
        handles.push(tokio::spawn(async move {
            for i in 0..N / 6 {
                api.send(&u, &cid, &format!("{t}/{i}")).await;
            }
        }));
    }
    for h in handles {
        h.await.expect("sender task");
    }

    let h = api.history(&a.token, &cid, "").await;
    assert_eq!(h["max_seq"], json!(N));
    let first = seqs(&h);
    assert_eq!(first.len(), 50, "default limit is 50");
    assert!(first.windows(2).all(|w| w[1] == w[0] + 1), "ascending and contiguous: {first:?}");

    assert_eq!(seqs(&api.history(&a.token, &cid, "?after_seq=0").await), (1..=50).collect::<Vec<_>>());
    assert_eq!(seqs(&api.history(&a.token, &cid, "?after_seq=50").await), (51..=100).collect::<Vec<_>>());
    assert_eq!(seqs(&api.history(&a.token, &cid, "?after_seq=100&limit=7").await), (101..=107).collect::<Vec<_>>());
    assert_eq!(seqs(&api.history(&a.token, &cid, "?after_seq=505").await), (506..=N).collect::<Vec<_>>());
    assert!(seqs(&api.history(&a.token, &cid, &format!("?after_seq={N}")).await).is_empty());
    assert_eq!(seqs(&api.history(&a.token, &cid, "?limit=1").await), vec![1]);

    // before_seq pages backwards: the newest `limit` messages below it, in ascending order.
    assert_eq!(seqs(&api.history(&a.token, &cid, "?before_seq=501&limit=10").await), (491..=500).collect::<Vec<_>>());
    assert_eq!(seqs(&api.history(&a.token, &cid, "?before_seq=4").await), vec![1, 2, 3]);
    assert!(seqs(&api.history(&a.token, &cid, "?before_seq=1").await).is_empty());
    // Both bounds.
    assert_eq!(seqs(&api.history(&a.token, &cid, "?after_seq=10&before_seq=20").await), (11..=19).collect::<Vec<_>>());

    // At most 500.
    let big = seqs(&api.history(&a.token, &cid, "?limit=500").await);
    assert_eq!(big, (1..=500).collect::<Vec<_>>());
    let clamped = seqs(&api.history(&a.token, &cid, "?limit=1000").await);
    assert_eq!(clamped.len(), 500, "limit is clamped to 500");

    // Walking forward page by page yields every message once.
    let mut walked = Vec::new();
    let mut after = 0;
    for _ in 0..100 {
        let page = seqs(&api.history(&b.token, &cid, &format!("?after_seq={after}&limit=128")).await);
        if page.is_empty() {
            break;
        }
        after = *page.last().unwrap();
        walked.extend(page);
    }
    assert_eq!(walked, (1..=N).collect::<Vec<_>>());

    // Bad parameters.
    for q in ["?limit=abc", "?after_seq=-1", "?before_seq=x"] {
        api.get(&format!("/v1/conversations/{cid}/messages{q}"), Some(&a.token)).await.err(400, "invalid_request");
    }
}

#[tokio::test]
async fn unread_arithmetic() {
    let api = shared().api();
    let (a, b, cid) = api.friends("ur").await;
    for i in 1..=3 {
        api.send(&a, &cid, &format!("m{i}")).await;
    }
    let ca = api.conversation(&a.token, &cid).await.expect("a sees the conversation");
    assert_eq!((ca["max_seq"].clone(), ca["read_seq"].clone(), ca["unread"].clone()), (json!(3), json!(3), json!(0)));
    let cb = api.conversation(&b.token, &cid).await.expect("b sees the conversation");
    assert_eq!((cb["max_seq"].clone(), cb["read_seq"].clone(), cb["unread"].clone()), (json!(3), json!(0), json!(3)));

    let r = api.read(&b.token, &cid, 2).await;
    let c1 = r.write(200);
    assert_eq!(r.json["read_seq"], json!(2));
    assert_eq!(r.json["unread"], json!(1));

    // Lower: no-op, still success.
    let r = api.read(&b.token, &cid, 1).await;
    r.write(200);
    assert!(r.cursor_header().unwrap() >= c1);
    assert_eq!(r.json["read_seq"], json!(2));
    assert_eq!(r.json["unread"], json!(1));
    // Same: no-op.
    let r = api.read(&b.token, &cid, 2).await;
    r.write(200);
    assert_eq!((r.json["read_seq"].clone(), r.json["unread"].clone()), (json!(2), json!(1)));

    // Above max_seq: clamped.
    let r = api.read(&b.token, &cid, 1000).await;
    r.write(200);
    assert_eq!(r.json["read_seq"], json!(3));
    assert_eq!(r.json["unread"], json!(0));
    let cb = api.conversation(&b.token, &cid).await.unwrap();
    assert_eq!((cb["read_seq"].clone(), cb["unread"].clone()), (json!(3), json!(0)));

    // B's own message moves B's read_seq; A now has one unread.
    api.send(&b, &cid, "reply").await;
    let cb = api.conversation(&b.token, &cid).await.unwrap();
    assert_eq!((cb["max_seq"].clone(), cb["read_seq"].clone(), cb["unread"].clone()), (json!(4), json!(4), json!(0)));
    let ca = api.conversation(&a.token, &cid).await.unwrap();
    assert_eq!((ca["max_seq"].clone(), ca["read_seq"].clone(), ca["unread"].clone()), (json!(4), json!(3), json!(1)));

    // A message arriving after a clamped read is unread (the clamp did not read ahead).
    api.send(&a, &cid, "more").await;
    api.send(&a, &cid, "and more").await;
    let cb = api.conversation(&b.token, &cid).await.unwrap();
    assert_eq!((cb["max_seq"].clone(), cb["read_seq"].clone(), cb["unread"].clone()), (json!(6), json!(4), json!(2)));

    // Bad bodies.
    let path = format!("/v1/conversations/{cid}/read");
    api.post(&path, Some(&b.token), json!({})).await.err(400, "invalid_request");
    api.post(&path, Some(&b.token), json!({"seq": "3"})).await.err(400, "invalid_request");
    api.post(&path, Some(&b.token), json!({"seq": -1})).await.err(400, "invalid_request");
}

#[tokio::test]
async fn conversation_list_newest_activity_first() {
    let api = shared().api();
    let me = api.user("cl").await;
    let b = api.user("clb").await;
    let c = api.user("clc").await;
    let d = api.user("cld").await;
    let e = api.user("cle").await;
    for other in [&b, &c, &d, &e] {
        api.befriend(&me, other).await;
    }
    // A fresh user has no conversations; a friendship alone creates none.
    assert!(api.conversations(&me.token).await.is_empty());

    api.send(&me, &dm(&me.id, &b.id), "to b").await;
    api.send(&c, &dm(&me.id, &c.id), "from c").await;
    api.send(&me, &dm(&me.id, &d.id), "to d").await;
    let (last_b, _) = api.send(&b, &dm(&me.id, &b.id), "b again").await;

    let list = api.conversations(&me.token).await;
    let ids: Vec<String> = list.iter().map(|c| as_str(&c["conversation_id"], "conversation_id").to_string()).collect();
    assert_eq!(ids, vec![dm(&me.id, &b.id), dm(&me.id, &d.id), dm(&me.id, &c.id)], "{list:?}");

    let cb = &list[0];
    assert_eq!(cb["kind"], json!("direct"));
    assert_eq!(cb["peer"], json!(b.id));
    assert_eq!(cb["max_seq"], json!(2));
    assert_eq!(cb["read_seq"], json!(1));
    assert_eq!(cb["unread"], json!(1));
    assert_eq!(cb["last_message"], last_b);
    let cc = &list[2];
    assert_eq!(cc["peer"], json!(c.id));
    assert_eq!(cc["unread"], json!(1));
    assert_eq!(cc["last_message"]["body"], json!("from c"));
    assert_eq!(cc["last_message"]["sender"], json!(c.id));

    // The peer's view.
    let lb = api.conversations(&b.token).await;
    assert_eq!(lb.len(), 1);
    assert_eq!(lb[0]["peer"], json!(me.id));
    assert_eq!(lb[0]["read_seq"], json!(2));
    assert_eq!(lb[0]["unread"], json!(0));

    // New activity moves a conversation to the top.
    api.send(&c, &dm(&me.id, &c.id), "c again").await;
    let list = api.conversations(&me.token).await;
    assert_eq!(list[0]["conversation_id"], json!(dm(&me.id, &c.id)));
    assert_eq!(list.len(), 3);
    let unique: BTreeSet<_> = list.iter().map(|c| c["conversation_id"].to_string()).collect();
    assert_eq!(unique.len(), 3);
}

#[tokio::test]
async fn revoke_own_message() {
    let api = shared().api();
    let (a, b, cid) = api.friends("rv").await;
    let (m1, _) = api.send(&a, &cid, "oops").await;
    let (_m2, _) = api.send(&b, &cid, "what?").await;

    // Someone else's message: forbidden.
    api.post_empty(&format!("/v1/conversations/{cid}/messages/1/revoke"), Some(&b.token)).await.err(403, "forbidden");
    // No such message.
    api.post_empty(&format!("/v1/conversations/{cid}/messages/99/revoke"), Some(&a.token)).await.err(404, "not_found");

    let r = api.post_empty(&format!("/v1/conversations/{cid}/messages/1/revoke"), Some(&a.token)).await;
    let cursor = r.write(200);
    let rm = &r.json["message"];
    assert_eq!(rm["seq"], json!(1));
    assert_eq!(rm["body"], json!(""));
    assert_eq!(rm["revoked"], json!(true));
    assert_eq!(rm["sender"], json!(a.id));
    assert_eq!(rm["ts"], m1["ts"]);
    assert_eq!(rm["client_msg_id"], m1["client_msg_id"]);

    for u in [&a, &b] {
        let h = api.history(&u.token, &cid, "").await;
        assert_eq!(h["max_seq"], json!(2), "revoke keeps the seq and adds no message");
        assert_eq!(h["messages"][0], *rm);
        assert_eq!(h["messages"][1]["body"], json!("what?"));
        let (ups, _) = api.sync_all(&u.token, 0, None).await;
        let rv = of_type(&ups, "message_revoked");
        assert_eq!(rv.len(), 1, "{}: {ups:?}", u.id);
        assert_eq!(rv[0]["conversation_id"], json!(cid));
        assert_eq!(rv[0]["seq"], json!(1));
        assert_eq!(rv[0]["by"], json!(a.id));
        assert_eq!(rv[0]["cursor"], json!(cursor));
    }

    // The last message, when revoked, shows as revoked in the list.
    api.post_empty(&format!("/v1/conversations/{cid}/messages/2/revoke"), Some(&b.token)).await.write(200);
    let c = api.conversation(&a.token, &cid).await.unwrap();
    assert_eq!(c["last_message"]["seq"], json!(2));
    assert_eq!(c["last_message"]["revoked"], json!(true));
    assert_eq!(c["last_message"]["body"], json!(""));
    // The idempotent resend of a revoked message returns the original (seq 1), not a new copy.
    let r = api.send_raw(&a.token, &cid, m1["client_msg_id"].as_str().unwrap(), "oops").await;
    r.ok(200);
    assert_eq!(r.json["message"]["seq"], json!(1));
    assert_eq!(api.history(&a.token, &cid, "").await["max_seq"], json!(2));
}
