//! Offline audit tools against a real node's data dir: a mixed workload over HTTP, the live
//! digest recorded after every step, then (node stopped) replay, verify, export, import and
//! tampering with the sled db itself.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use parley_storage::journal::JournalRecord;
use serde_json::{json, Value};
use support::audit::AuditApi;
use support::offline::*;
use support::TestServer;

/// What the workload recorded.
struct Recorded {
    /// Live `(cursor, digest)` after every step.
    digests: Vec<(u64, String)>,
    /// Live sync cursors per user (at the end).
    sync: BTreeMap<String, Vec<u64>>,
    /// Registration and login cursors per user (own actions sync does not carry).
    own: BTreeMap<String, Vec<u64>>,
    /// Cursors of the writes in the direct conversation `d:ann:ben`.
    ann_ben: Vec<u64>,
    /// Cursors of every message sent.
    messages: Vec<u64>,
    head_hash: String,
    last_cursor: u64,
}

const USERS: [&str; 4] = ["ann", "ben", "cat", "dan"];

/// Users, sessions, friends, DMs, reads, revokes, blocks, groups with kick, leave, transfer and
/// dismissal; the live digest after each step.
async fn workload(http: &AuditApi) -> Recorded {
    let mut digests = Vec::new();
    let mut own: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut tokens = BTreeMap::new();
    for u in USERS {
        let c = http.register(u).await;
        own.entry(u.to_owned()).or_default().push(c);
        digests.push(http.digest().await);
    }
    for u in USERS {
        let (token, _, c) = http.login(u).await;
        own.entry(u.to_owned()).or_default().push(c);
        tokens.insert(u, token);
        digests.push(http.digest().await);
    }
    let t = |u: &str| tokens[u].clone();
    // A second session for ann, revoked from the first.
    let (_, sid, c) = http.login("ann").await;
    own.entry("ann".into()).or_default().push(c);
    http.write("DELETE", &format!("/v1/sessions/{sid}"), &t("ann"), None).await;
    digests.push(http.digest().await);

    // Friends: accepted, rejected, mutual, removed.
    http.write("POST", "/v1/friends/requests", &t("ann"), Some(json!({"to": "ben", "note": "hi"}))).await;
    http.write("POST", "/v1/friends/requests/ann/accept", &t("ben"), None).await;
    digests.push(http.digest().await);
    http.write("POST", "/v1/friends/requests", &t("ann"), Some(json!({"to": "cat"}))).await;
    http.write("POST", "/v1/friends/requests/ann/reject", &t("cat"), None).await;
    http.write("POST", "/v1/friends/requests", &t("cat"), Some(json!({"to": "ann"}))).await;
    http.write("POST", "/v1/friends/requests", &t("ann"), Some(json!({"to": "cat"}))).await;
    digests.push(http.digest().await);
    http.write("POST", "/v1/friends/requests", &t("dan"), Some(json!({"to": "ann"}))).await;
    http.write("POST", "/v1/friends/requests/dan/accept", &t("ann"), None).await;
    http.write("DELETE", "/v1/friends/ann", &t("dan"), None).await;
    digests.push(http.digest().await);

    // Direct messages, reads, a revoke.
    let mut ann_ben = Vec::new();
    let mut messages = Vec::new();
    for i in 0..4 {
        let from = if i % 2 == 0 { "ann" } else { "ben" };
        let body = json!({"client_msg_id": format!("ab{i}"), "body": format!("hello {i}")});
        let (c, _) = http.write("POST", "/v1/conversations/d:ann:ben/messages", &t(from), Some(body)).await;
        ann_ben.push(c);
        messages.push(c);
        digests.push(http.digest().await);
    }
    let (c, _) = http.write("POST", "/v1/conversations/d:ann:ben/read", &t("ann"), Some(json!({"seq": 4}))).await;
    ann_ben.push(c);
    digests.push(http.digest().await);
    let body = json!({"client_msg_id": "ab-oops", "body": "oops", "reply_to": 2});
    let (c, _) = http.write("POST", "/v1/conversations/d:ann:ben/messages", &t("ann"), Some(body)).await;
    ann_ben.push(c);
    messages.push(c);
    let (c, _) = http.write("POST", "/v1/conversations/d:ann:ben/messages/5/revoke", &t("ann"), None).await;
    ann_ben.push(c);
    digests.push(http.digest().await);

    // Blocks.
    http.write("PUT", "/v1/blocks/dan", &t("ben"), None).await;
    http.write("DELETE", "/v1/blocks/dan", &t("ben"), None).await;
    http.write("PUT", "/v1/blocks/ben", &t("cat"), None).await;
    digests.push(http.digest().await);

    // A group through its life.
    let (_, g) =
        http.write("POST", "/v1/groups", &t("ann"), Some(json!({"name": "club", "members": ["ben", "cat"]}))).await;
    let gid = g["group_id"].as_str().expect("group_id").to_owned();
    let conv = format!("g:{gid}");
    digests.push(http.digest().await);
    http.write("PATCH", &format!("/v1/groups/{gid}"), &t("ann"), Some(json!({"name": "the club"}))).await;
    http.write("POST", &format!("/v1/groups/{gid}/members"), &t("ann"), Some(json!({"user_ids": ["dan"]}))).await;
    http.write("PUT", &format!("/v1/groups/{gid}/members/ben/role"), &t("ann"), Some(json!({"role": "admin"}))).await;
    digests.push(http.digest().await);
    for (i, from) in ["ann", "ben", "cat", "dan"].iter().enumerate() {
        let body = json!({"client_msg_id": format!("g{i}"), "body": format!("group {i}")});
        let (c, _) = http.write("POST", &format!("/v1/conversations/{conv}/messages"), &t(from), Some(body)).await;
        messages.push(c);
    }
    http.write("POST", &format!("/v1/conversations/{conv}/read"), &t("cat"), Some(json!({"seq": 99}))).await;
    digests.push(http.digest().await);
    let until = json!({"until_ms": 4_000_000_000_000u64});
    http.write("PUT", &format!("/v1/groups/{gid}/members/cat/mute"), &t("ben"), Some(until)).await;
    http.write("DELETE", &format!("/v1/groups/{gid}/members/dan"), &t("ben"), None).await;
    digests.push(http.digest().await);
    http.write("POST", &format!("/v1/groups/{gid}/leave"), &t("cat"), None).await;
    http.write("POST", &format!("/v1/groups/{gid}/transfer"), &t("ann"), Some(json!({"to": "ben"}))).await;
    http.write("POST", &format!("/v1/conversations/{conv}/messages/1/revoke"), &t("ben"), None).await;
    http.write("PATCH", &format!("/v1/groups/{gid}"), &t("ben"), Some(json!({"mute_all": true}))).await;
    digests.push(http.digest().await);
    let (_, g2) = http.write("POST", "/v1/groups", &t("dan"), Some(json!({"name": "brief", "members": ["cat"]}))).await;
    let gid2 = g2["group_id"].as_str().expect("group_id").to_owned();
    let body = json!({"client_msg_id": "second-group", "body": "anyone?"});
    let (c, _) = http.write("POST", &format!("/v1/conversations/g:{gid2}/messages"), &t("cat"), Some(body)).await;
    messages.push(c);
    http.write("DELETE", &format!("/v1/groups/{gid2}"), &t("dan"), None).await;
    digests.push(http.digest().await);

    let mut sync = BTreeMap::new();
    for u in USERS {
        sync.insert(u.to_owned(), http.sync_cursors(&t(u)).await);
    }
    let v = http.admin_get("/v1/admin/journal/verify").await;
    assert_eq!(v.json["ok"], true, "{}", v.text);
    Recorded {
        digests,
        sync,
        own,
        ann_ben,
        messages,
        head_hash: v.json["head_hash"].as_str().expect("head_hash").to_owned(),
        last_cursor: v.json["last_cursor"].as_u64().expect("last_cursor"),
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_audit_of_a_real_node() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("node");
    let mut server = TestServer::start_in(&data, &["--rate-limit-per-user", "0", "--login-rate-limit", "0"]);
    let http = AuditApi::new(&server);
    let rec = workload(&http).await;

    // While the node runs, offline tools refuse its data dir clearly.
    let run = verify_dir(&data, &[]);
    assert!(!run.ok());
    assert!(run.stderr.contains("in use by another process (is a parley node running on it?)"), "{}", run.stderr);
    let run = parley(&["replay", "--data-dir", s(&data)]);
    assert!(!run.ok() && run.stderr.contains("in use by another process"), "{}", run.stderr);
    server.stop();

    // Verify: the same head the live node reported.
    let run = verify_dir(&data, &[]);
    assert_eq!(run.expect_ok("verify").trim(), format!("ok {} {}", rec.last_cursor, rec.head_hash));
    let run = verify_dir(&data, &["--json"]);
    let v: Value = serde_json::from_str(run.expect_ok("verify --json").trim()).expect("JSON");
    assert_eq!(v, json!({"ok": true, "last_cursor": rec.last_cursor, "head_hash": rec.head_hash}));

    // Replay: the live digest at the end, deterministic, and at every recorded step.
    let (last_cursor, last_digest) = rec.digests.last().cloned().expect("digests");
    assert_eq!(last_cursor, rec.last_cursor);
    assert_eq!(replay(&data, &[]), (last_cursor, last_digest.clone()));
    assert_eq!(replay(&data, &[]), (last_cursor, last_digest.clone()));
    let plain = parley(&["replay", "--data-dir", s(&data)]);
    assert_eq!(plain.expect_ok("replay").trim(), format!("cursor {last_cursor} digest {last_digest}"));
    for (cursor, digest) in &rec.digests {
        assert_eq!(replay(&data, &["--until", &cursor.to_string()]), (*cursor, digest.clone()), "--until {cursor}");
    }

    // Export filters against what was recorded.
    let all = export_lines(&data, &[]);
    assert_eq!(cursors(&all), (1..=rec.last_cursor).collect::<Vec<_>>());
    assert_eq!(all.last().expect("entries")["hash"], rec.head_hash);
    assert_eq!(cursors(&export_lines(&data, &["--conversation", "d:ann:ben"])), rec.ann_ben);
    let types: Vec<String> = all.iter().map(|l| format!("{}:{}", l["cursor"], l["event"]["type"])).collect();
    assert_eq!(cursors(&export_lines(&data, &["--type", "message"])), rec.messages, "{types:?}");
    assert_eq!(cursors(&export_lines(&data, &["--from", "5", "--to", "9"])), vec![5, 6, 7, 8, 9]);
    for u in USERS {
        let mut want: BTreeSet<u64> = rec.sync[u].iter().copied().collect();
        want.extend(&rec.own[u]);
        let got = cursors(&export_lines(&data, &["--user", u]));
        assert_eq!(got, want.into_iter().collect::<Vec<_>>(), "export --user {u}");
    }
    // `--until-ts` by an entry's ts equals `--until` at the last entry with that ts.
    let mid = &all[all.len() / 2];
    let ts = mid["ts"].as_u64().expect("ts");
    let last_at_ts =
        all.iter().filter(|l| l["ts"].as_u64() <= Some(ts)).map(|l| l["cursor"].as_u64().expect("c")).max();
    let (c, d) = replay(&data, &["--until-ts", &ts.to_string()]);
    assert_eq!(Some(c), last_at_ts);
    assert_eq!(replay(&data, &["--until", &c.to_string()]), (c, d));

    // Point in time: ann's conversations as of after the revoke in d:ann:ben.
    let at = rec.ann_ben.last().expect("revoke");
    let run = parley(&["state", "--data-dir", s(&data), "--at", &at.to_string(), "conversations", "--user", "ben"]);
    let v: Value = serde_json::from_str(run.expect_ok("state")).expect("JSON");
    assert_eq!(v["cursor"], *at);
    assert_eq!(v["conversations"][0]["conversation_id"], "d:ann:ben");
    assert_eq!(v["conversations"][0]["max_seq"], 5);
    assert_eq!(v["conversations"][0]["read_seq"], 4);
    assert_eq!(v["conversations"][0]["unread"], 1);
    assert_eq!(v["conversations"][0]["last_message"]["revoked"], true);

    // Import round trip: same head and digest, and the new data dir serves as a single node.
    let file = tmp.path().join("export.jsonl");
    std::fs::write(&file, parley(&["export", "--data-dir", s(&data)]).expect_ok("export")).expect("write");
    let copy = tmp.path().join("imported");
    let run = parley(&["import", "--data-dir", s(&copy), "--from-export", s(&file), "--json"]);
    let v: Value = serde_json::from_str(run.expect_ok("import").trim()).expect("JSON");
    assert_eq!(v, json!({"last_cursor": rec.last_cursor, "head_hash": rec.head_hash, "digest": last_digest}));
    assert_eq!(replay(&copy, &[]), (last_cursor, last_digest.clone()));
    let mut imported = TestServer::start_in(&copy, &["--rate-limit-per-user", "0", "--login-rate-limit", "0"]);
    let http2 = AuditApi::new(&imported);
    assert_eq!(http2.digest().await, (last_cursor, last_digest.clone()));
    // Imported users log in with their journaled password hashes; the journal continues.
    let (token, _, c) = http2.login("ann").await;
    assert_eq!(c, rec.last_cursor + 1);
    let body = json!({"client_msg_id": "after-import", "body": "still here"});
    let (c, m) = http2.write("POST", "/v1/conversations/d:ann:ben/messages", &token, Some(body)).await;
    assert_eq!(c, rec.last_cursor + 2);
    assert_eq!(m["message"]["seq"], 6);
    let v = http2.admin_get("/v1/admin/journal/verify").await;
    assert_eq!(v.json["ok"], true, "{}", v.text);
    let new_head = v.json["head_hash"].as_str().expect("head").to_owned();
    let live = http2.digest().await;
    imported.stop();
    // The node's own writes verify and replay offline too, and the old head is in the chain.
    let run = verify_dir(&copy, &["--expect-head", &rec.head_hash]);
    assert_eq!(run.expect_ok("verify after serve").trim(), format!("ok {} {new_head}", rec.last_cursor + 2));
    assert_eq!(replay(&copy, &[]), live);

    tamper_with_the_db(&data, tmp.path(), &rec);
}

/// Copies of the stopped node's data dir, each tampered with through sled.
fn tamper_with_the_db(data: &Path, tmp: &Path, rec: &Recorded) {
    let last = rec.last_cursor;
    let fresh = |name: &str| {
        let d = tmp.join(name);
        copy_dir(data, &d);
        d
    };

    // A changed byte inside one entry's event bytes.
    let d = fresh("flip");
    with_journal_tree(&d, |j, _| {
        let raw = j.get(key(17)).expect("get").expect("entry 17").to_vec();
        let rec = JournalRecord::decode(17, &raw).expect("decode");
        let at = raw.windows(rec.event.len()).position(|w| w == rec.event.as_slice()).expect("event bytes");
        let mut bad = raw.clone();
        bad[at + rec.event.len() / 2] ^= 0x01;
        j.insert(key(17), bad).expect("insert");
    });
    let run = verify_dir(&d, &[]);
    assert_eq!(run.bad_cursor(), 17, "{}", run.stdout);
    let r = parley(&["replay", "--data-dir", s(&d)]);
    assert!(!r.ok() && r.stderr.contains("cursor 17"), "replay must refuse: {}", r.stderr);
    let r = parley(&["export", "--data-dir", s(&d)]);
    assert!(!r.ok() && r.stderr.contains("cursor 17"), "export must refuse: {}", r.stderr);

    // A changed byte in the ts.
    let d = fresh("ts");
    with_journal_tree(&d, |j, _| {
        let raw = j.get(key(23)).expect("get").expect("entry 23").to_vec();
        let rec = JournalRecord::decode(23, &raw).expect("decode");
        let ts = rec.ts.to_le_bytes();
        let at = raw.windows(8).position(|w| w == ts).expect("ts bytes");
        let mut bad = raw.clone();
        bad[at] ^= 0x01;
        j.insert(key(23), bad).expect("insert");
    });
    assert_eq!(verify_dir(&d, &[]).bad_cursor(), 23);

    // A deleted entry.
    let d = fresh("delete");
    with_journal_tree(&d, |j, _| {
        j.remove(key(30)).expect("remove");
    });
    assert_eq!(verify_dir(&d, &[]).bad_cursor(), 30);

    // Two entries swapped.
    let d = fresh("swap");
    with_journal_tree(&d, |j, _| {
        let a = j.get(key(40)).expect("get").expect("40");
        let b = j.get(key(41)).expect("get").expect("41");
        j.insert(key(40), b).expect("insert");
        j.insert(key(41), a).expect("insert");
    });
    assert_eq!(verify_dir(&d, &[]).bad_cursor(), 40);

    // An entry rebuilt with a valid hash of its own but not linked: a rewritten history.
    let d = fresh("rewrite");
    with_journal_tree(&d, |j, _| {
        let raw = j.get(key(12)).expect("get").expect("12").to_vec();
        let old = JournalRecord::decode(12, &raw).expect("decode");
        let ev = parley_storage::Event::Blocked { user_id: "ann".into(), target: "dan".into() };
        let forged = JournalRecord::new(12, old.ts, old.prev_hash, &ev);
        j.insert(key(12), parley_storage::codec::encode(&forged)).expect("insert");
    });
    assert_eq!(verify_dir(&d, &[]).bad_cursor(), 13);

    // A truncated tail: the head record notices...
    let d = fresh("truncate");
    with_journal_tree(&d, |j, _| {
        for c in last - 2..=last {
            j.remove(key(c)).expect("remove");
        }
    });
    assert_eq!(verify_dir(&d, &[]).bad_cursor(), last - 2);
    // ...and if the head record is rewritten to match, only a recorded head does.
    let d = fresh("truncate-head");
    with_journal_tree(&d, |j, meta| {
        let prev =
            JournalRecord::decode(last - 3, &j.get(key(last - 3)).expect("get").expect("entry")).expect("decode");
        for c in last - 2..=last {
            j.remove(key(c)).expect("remove");
        }
        let mut head = Vec::new();
        head.extend_from_slice(&(last - 3).to_be_bytes());
        head.extend_from_slice(&prev.hash);
        head.extend_from_slice(&prev.ts.to_be_bytes());
        meta.insert("head", head).expect("insert");
    });
    verify_dir(&d, &[]).expect_ok("a consistently truncated journal is a valid chain");
    assert_eq!(verify_dir(&d, &["--expect-head", &rec.head_hash]).bad_cursor(), last - 2);
    assert_eq!(verify_dir(&d, &["--expect-head", &format!("{last}:{}", rec.head_hash)]).bad_cursor(), last - 2);
    // A recorded head from earlier is found in the longer chain: fine.
    let untouched = verify_dir(data, &["--expect-head", &format!("{}:{}", rec.last_cursor, rec.head_hash)]);
    untouched.expect_ok("expected head present");
}
