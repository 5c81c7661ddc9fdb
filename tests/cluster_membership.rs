//! Membership: a node started with `--join` waits to be contacted (it never makes a cluster of
//! its own), is added as a learner with `parley members add` through a follower, catches up by
//! snapshot to the same journal, is promoted to voter through `POST /v1/admin/cluster/voters`;
//! the leader is then removed with `parley members remove` and the rest carries on; a learner
//! is added and removed over HTTP. Admin endpoints need the admin token.

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::cluster::*;

fn members(info: &Value) -> Vec<(u64, bool)> {
    info["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["node_id"].as_u64().unwrap(), m["voter"].as_bool().unwrap()))
        .collect()
}

/// Waits until every node of `ids` shows exactly `expected` as `(node_id, voter)`.
async fn wait_members(c: &Cluster, ids: &[u64], expected: &[(u64, bool)]) {
    let start = Instant::now();
    'poll: loop {
        for id in ids {
            let seen = c.info(*id).await.map(|i| members(&i));
            if seen.as_deref() != Some(expected) {
                assert!(start.elapsed() < READY_TIMEOUT, "node {id} shows members {seen:?}, expected {expected:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue 'poll;
            }
        }
        return;
    }
}

fn members_cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin()).arg("members").args(args).output().expect("run parley members");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_add_learner_promote_and_remove_the_leader() {
    let mut c = Cluster::start(3, &["--snapshot-every", "50"]).await;
    let http = c.http.clone();
    let ids = c.ids();
    let (leader, _) = c.wait_leader(&ids).await;
    let followers: Vec<u64> = ids.iter().copied().filter(|i| *i != leader).collect();
    let bases: Vec<String> = ids.iter().map(|i| c.url(*i)).collect();

    // Enough history that the leader has snapshotted and purged its log.
    let ann = user(&http, &bases[0], "ann_m").await;
    let ben = user(&http, &bases[1], "ben_m").await;
    applied_everywhere(&http, &bases, ann.cursor.max(ben.cursor)).await;
    befriend(&http, &bases[0], &bases[2], &ann, &ben).await;
    let conv = dm(&ann.id, &ben.id);
    let senders = vec![
        Sender { user: ann.clone(), conv: conv.clone(), bases: bases.clone() },
        Sender { user: ben.clone(), conv: conv.clone(), bases: bases.iter().rev().cloned().collect() },
    ];
    let mut acks = Load::start(&http, senders, "m", Some(100)).finish().await;
    let purged = async {
        loop {
            let info = c.info(leader).await.unwrap();
            if info["purged_index"].as_u64().unwrap_or(0) > 0 {
                return info;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let info = tokio::time::timeout(Duration::from_secs(20), purged).await.expect("the leader purged its log");
    println!("leader log before the join: last {} purged {}", info["last_log_index"], info["purged_index"]);

    // A joining node waits: no leader, no members, not ready, even after election timeouts.
    let addr4 = c.spawn_joining(4);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let info4 = c.info(4).await.expect("node 4 answers");
    assert_eq!(info4["leader_id"], Value::Null, "{info4}");
    assert_eq!(members(&info4), vec![], "a joining node must not initialise a cluster: {info4}");
    assert!(!c.ready(4).await, "a node nobody added is not ready");

    // Admin endpoints need the admin token.
    let learners = format!("{}/v1/admin/cluster/learners", c.url(followers[0]));
    let body = json!({"node_id": 4, "addr": addr4});
    for token in [None, Some("wrong-token")] {
        let (s, b) = call(&http, reqwest::Method::POST, &learners, token, Some(&body)).await.unwrap();
        assert_eq!((s, b["error"]["code"].as_str()), (401, Some("unauthorized")), "{b}");
    }
    let (s, _) = call(
        &http,
        reqwest::Method::DELETE,
        &format!("{}/v1/admin/cluster/nodes/{}", c.url(leader), followers[0]),
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!(s, 401);

    // Add node 4 as a learner through a follower, with the CLI; it catches up by snapshot.
    let added = Instant::now();
    let target = c.url(followers[0]);
    let (ok, out, err) =
        members_cli(&["add", "--target", &target, "--admin-token", &c.admin, "--node-id", "4", "--addr", &addr4]);
    assert!(ok, "parley members add failed: {err}");
    assert!(out.contains(&format!("node 4 {addr4} learner")), "{out}");
    c.wait_ready(4).await;
    let four = [1, 2, 3, 4];
    let caught_up = c.wait_converged(&four, Duration::from_secs(60)).await;
    println!("FIGURES learner added and caught up by snapshot in {} ms", ms(added.elapsed()));
    let _ = caught_up;
    let info4 = c.info(4).await.unwrap();
    assert!(info4["snapshot_index"].as_u64().is_some(), "node 4 got no snapshot: {info4}");
    assert_eq!(c.verify(4).await, c.verify(leader).await, "node 4's journal differs from the leader's");
    check_exactly_once(&http, &c.url(4), &[(conv.clone(), ann.clone())].into_iter().collect(), &acks).await;

    // Promote it through the other follower, over HTTP.
    let (s, b) = call(
        &http,
        reqwest::Method::POST,
        &format!("{}/v1/admin/cluster/voters", c.url(followers[1])),
        Some(&c.admin),
        Some(&json!({"node_ids": [4]})),
    )
    .await
    .unwrap();
    assert_eq!(s, 200, "promote: {b}");
    let all_voters = [(1, true), (2, true), (3, true), (4, true)];
    wait_members(&c, &four, &all_voters).await;
    // Node 4 takes writes and serves reads.
    let url = format!("{}/v1/conversations/{conv}/messages", c.url(4));
    let (s, b) = post(&http, &url, Some(&ben.token), json!({"client_msg_id": "via-4", "body": "from node 4"})).await;
    assert_eq!(s, 201, "{b}");
    let cursor = b["cursor"].as_u64().unwrap();
    let read = format!(
        "{}/v1/conversations/{conv}/messages?after_seq={}&min_cursor={cursor}",
        bases[0],
        b["message"]["seq"].as_u64().unwrap() - 1
    );
    assert_eq!(get(&http, &read, Some(&ann.token)).await.1["messages"][0]["client_msg_id"], json!("via-4"));

    // Remove the current leader through a follower, with the CLI; the other three carry on.
    let (old_leader, term) = c.wait_leader(&four).await;
    let via = four.iter().copied().find(|i| *i != old_leader).unwrap();
    let (ok, out, err) = members_cli(&[
        "remove",
        "--target",
        &c.url(via),
        "--admin-token",
        &c.admin,
        "--node-id",
        &old_leader.to_string(),
    ]);
    assert!(ok, "parley members remove failed: {err}");
    assert!(!out.contains(&format!("node {old_leader} ")), "{out}");
    let rest: Vec<u64> = four.iter().copied().filter(|i| *i != old_leader).collect();
    let (new_leader, new_term) = c.wait_leader(&rest).await;
    println!("removed leader {old_leader} (term {term}); node {new_leader} leads term {new_term}");
    let expected: Vec<(u64, bool)> = rest.iter().map(|i| (*i, true)).collect();
    wait_members(&c, &rest, &expected).await;
    c.kill9(old_leader);

    let rest_bases: Vec<String> = rest.iter().map(|i| c.url(*i)).collect();
    let senders = vec![
        Sender { user: ann.clone(), conv: conv.clone(), bases: rest_bases.clone() },
        Sender { user: ben.clone(), conv: conv.clone(), bases: rest_bases.iter().rev().cloned().collect() },
    ];
    acks.extend(Load::start(&http, senders, "r", Some(30)).finish().await);
    c.wait_converged(&rest, Duration::from_secs(30)).await;
    let readers = [(conv.clone(), ann.clone())].into_iter().collect();
    for id in &rest {
        check_exactly_once(&http, &c.url(*id), &readers, &acks).await;
    }

    // A learner added and removed over HTTP.
    let addr5 = c.spawn_joining(5);
    let (s, b) = call(
        &http,
        reqwest::Method::POST,
        &format!("{}/v1/admin/cluster/learners", c.url(rest[0])),
        Some(&c.admin),
        Some(&json!({"node_id": 5, "addr": addr5, "wait_ms": 30000})),
    )
    .await
    .unwrap();
    assert_eq!((s, &b["caught_up"]), (200, &json!(true)), "{b}");
    let mut with5 = expected.clone();
    with5.push((5, false));
    wait_members(&c, &rest, &with5).await;
    let (s, b) = call(
        &http,
        reqwest::Method::DELETE,
        &format!("{}/v1/admin/cluster/nodes/5", c.url(rest[1])),
        Some(&c.admin),
        None,
    )
    .await
    .unwrap();
    assert_eq!(s, 200, "{b}");
    wait_members(&c, &rest, &expected).await;
    let (s, b) = call(
        &http,
        reqwest::Method::DELETE,
        &format!("{}/v1/admin/cluster/nodes/42", c.url(rest[2])),
        Some(&c.admin),
        None,
    )
    .await
    .unwrap();
    assert_eq!((s, b["error"]["code"].as_str()), (404, Some("not_found")), "{b}");
    let voters: BTreeSet<u64> = rest.iter().copied().collect();
    assert_eq!(voters.len(), 3);
}
