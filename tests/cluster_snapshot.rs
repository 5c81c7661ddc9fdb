//! Snapshots and log purge: with a small `--snapshot-every`, a follower that was paused
//! (SIGSTOP) or down (SIGKILL) while 1,000 entries were written finds the log it needs purged
//! on the leader, catches up by snapshot, and ends with the leader's journal (same cursor, same
//! head hash, same projection digest) and the same sync stream; a follower killed mid-install
//! resumes; a follower whose journal diverged fail-stops and serves nothing.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use support::cluster::*;

const SNAPSHOT_EVERY: u64 = 100;

struct Setup {
    leader: u64,
    follower: u64,
    other: u64,
    users: Vec<User>,
    readers: BTreeMap<String, User>,
}

async fn setup(c: &Cluster, tag: &str) -> Setup {
    let http = &c.http;
    let ids = c.ids();
    let (leader, _) = c.wait_leader(&ids).await;
    let followers: Vec<u64> = ids.iter().copied().filter(|i| *i != leader).collect();
    let bases: Vec<String> = ids.iter().map(|i| c.url(*i)).collect();
    let ann = user(http, &c.url(leader), &format!("ann_{tag}")).await;
    let ben = user(http, &c.url(followers[1]), &format!("ben_{tag}")).await;
    applied_everywhere(http, &bases, ann.cursor.max(ben.cursor)).await;
    befriend(http, &c.url(leader), &c.url(followers[1]), &ann, &ben).await;
    let mut readers = BTreeMap::new();
    readers.insert(dm(&ann.id, &ben.id), ann.clone());
    Setup { leader, follower: followers[0], other: followers[1], users: vec![ann, ben], readers }
}

/// `n` messages from four senders through the leader and the other follower.
async fn write(c: &Cluster, s: &Setup, n: usize, tag: &str) -> Vec<Ack> {
    let conv = dm(&s.users[0].id, &s.users[1].id);
    let senders: Vec<Sender> = (0..4)
        .map(|i| {
            let bases =
                if i % 2 == 1 { vec![c.url(s.other), c.url(s.leader)] } else { vec![c.url(s.leader), c.url(s.other)] };
            Sender { user: s.users[i % 2].clone(), conv: conv.clone(), bases }
        })
        .collect();
    let started = Instant::now();
    let acks = Load::start(&c.http, senders, tag, Some(n / 4)).finish().await;
    println!(
        "{} messages acknowledged in {} ms ({:.0}/s)",
        acks.len(),
        ms(started.elapsed()),
        acks.len() as f64 / started.elapsed().as_secs_f64()
    );
    acks
}

/// Writes until the leader has purged the log the stopped follower needs (so it must catch
/// up by snapshot), then checks the log stays bounded. The purge follows a snapshot
/// asynchronously, and with command batching the number of log entries per message varies, so
/// a fixed number of writes is not enough on its own; bounded at five more rounds.
async fn write_until_snapshot_needed(c: &Cluster, s: &Setup, follower_last_log: u64, tag: &str, acks: &mut Vec<Ack>) {
    for round in 0..5 {
        let (_, purged, _) = c.raft_log(s.leader).await;
        if purged > follower_last_log + 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (_, purged, _) = c.raft_log(s.leader).await;
        if purged > follower_last_log + 1 {
            break;
        }
        acks.extend(write(c, s, 200, &format!("{tag}x{round}")).await);
    }
    assert_needs_snapshot(c, s, follower_last_log).await;
}

/// The follower's needed log is purged on the leader; the log stays bounded.
async fn assert_needs_snapshot(c: &Cluster, s: &Setup, follower_last_log: u64) {
    let (last, purged, snapshot) = c.raft_log(s.leader).await;
    println!("leader raft log: last index {last}, purged up to {purged}, snapshot at {snapshot:?}; follower stopped at {follower_last_log}");
    assert!(snapshot.is_some(), "the leader has taken no snapshot");
    assert!(purged > follower_last_log + 1, "the leader still has the log the follower needs: purged {purged}");
    assert!(last - purged <= 4 * SNAPSHOT_EVERY, "raft log not bounded: {} entries kept", last - purged);
}

async fn assert_identical(c: &Cluster, s: &Setup, acks: &[Ack]) {
    let ids = c.ids();
    let heads: Vec<_> = {
        let mut v = Vec::new();
        for id in &ids {
            v.push(c.verify(*id).await);
        }
        v
    };
    for (i, id) in ids.iter().enumerate() {
        assert!(heads[i].0, "node {id} journal does not verify");
        assert_eq!(heads[i], heads[0], "node {id}: (ok, last_cursor, head_hash, digest) differ from node {}", ids[0]);
        check_exactly_once(&c.http, &c.url(*id), &s.readers, acks).await;
    }
    let (_, _, snap) = c.raft_log(s.follower).await;
    assert!(snap.is_some(), "the follower has no snapshot");
    for u in &s.users {
        assert_eq!(
            full_sync(&c.http, &c.url(s.follower), u).await,
            full_sync(&c.http, &c.url(s.leader), u).await,
            "sync of {} differs",
            u.id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_follower_catches_up_by_snapshot_to_the_same_journal() {
    let every = SNAPSHOT_EVERY.to_string();
    let mut c = Cluster::start(3, &["--snapshot-every", &every]).await;
    let s = setup(&c, "p").await;
    let (follower_last_log, _, _) = c.raft_log(s.follower).await;
    c.pause(s.follower);
    let mut acks = write(&c, &s, 1000, "p").await;
    write_until_snapshot_needed(&c, &s, follower_last_log, "p", &mut acks).await;

    c.resume(s.follower);
    let resumed = Instant::now();
    let caught_up = c.wait_converged(&c.ids(), Duration::from_secs(60)).await;
    println!("FIGURES snapshot catch-up after SIGSTOP over 1000 writes: {} ms", ms(caught_up));
    assert!(resumed.elapsed() < Duration::from_secs(60));
    assert_identical(&c, &s, &acks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_down_long_catches_up_by_snapshot_after_restart() {
    let every = SNAPSHOT_EVERY.to_string();
    let mut c = Cluster::start(3, &["--snapshot-every", &every]).await;
    let s = setup(&c, "d").await;
    let (follower_last_log, _, _) = c.raft_log(s.follower).await;
    c.kill9(s.follower);
    let mut acks = write(&c, &s, 600, "d").await;
    write_until_snapshot_needed(&c, &s, follower_last_log, "d", &mut acks).await;

    c.spawn(s.follower);
    let ready = c.wait_ready(s.follower).await;
    let caught_up = c.wait_converged(&c.ids(), Duration::from_secs(60)).await;
    println!(
        "FIGURES restart after 600 writes: ready {} ms, then journal identical {} ms later",
        ms(ready),
        ms(caught_up)
    );
    assert_identical(&c, &s, &acks).await;
}

/// The follower's `/v1/cluster` cursor, if it answers.
async fn cursor_of(c: &Cluster, id: u64) -> Option<u64> {
    c.info(id).await.and_then(|i| i["cursor"].as_u64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_killed_in_the_middle_of_an_install_resumes_and_converges() {
    let every = SNAPSHOT_EVERY.to_string();
    let mut c = Cluster::start(3, &["--snapshot-every", &every]).await;
    let s = setup(&c, "k").await;
    let mut acks = Vec::new();
    // Up to three rounds: each takes the follower down for enough writes that its install
    // pulls several pages, then kills it as soon as its cursor has moved but not arrived.
    let mut killed_mid_install = false;
    for round in 0..3 {
        let (follower_last_log, _, _) = c.raft_log(s.follower).await;
        c.kill9(s.follower);
        acks.extend(write(&c, &s, 5000, &format!("k{round}")).await);
        write_until_snapshot_needed(&c, &s, follower_last_log, &format!("k{round}"), &mut acks).await;
        let target = cursor_of(&c, s.leader).await.expect("leader answers");
        c.spawn(s.follower);
        let mut start = None;
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(cur) = cursor_of(&c, s.follower).await {
                let first = *start.get_or_insert(cur);
                if cur > first && cur < target {
                    c.kill9(s.follower);
                    println!(
                        "FIGURES killed the follower mid-install at cursor {cur} of {target} (started at {first})"
                    );
                    killed_mid_install = true;
                    break;
                }
                if cur >= target {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if killed_mid_install {
            break;
        }
    }
    assert!(killed_mid_install, "never caught the follower mid-install");

    // Restarted, it finishes the interrupted install and converges on the same journal, and
    // catching up never deposes the leader (a node mid-install does not call elections).
    let term_before = c.info(s.leader).await.expect("leader answers")["term"].as_u64();
    c.spawn(s.follower);
    c.wait_ready(s.follower).await;
    let caught_up = c.wait_converged(&c.ids(), Duration::from_secs(60)).await;
    println!("FIGURES resumed install converged {} ms after ready", ms(caught_up));
    let after = c.info(s.leader).await.expect("leader answers");
    assert_eq!(after["term"].as_u64(), term_before, "the catch-up changed the term: {after}");
    assert_eq!(after["leader_id"].as_u64(), Some(s.leader), "the catch-up changed the leader: {after}");
    assert!(
        c.log_tail(s.follower, 400).contains("resuming an interrupted snapshot install"),
        "the restarted follower did not resume its install:\n{}",
        c.log_tail(s.follower, 40)
    );
    assert_identical(&c, &s, &acks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_with_a_diverged_journal_fail_stops_and_serves_nothing() {
    let every = SNAPSHOT_EVERY.to_string();
    let mut c = Cluster::start(3, &["--snapshot-every", &every]).await;
    let s = setup(&c, "v").await;
    let (follower_last_log, _, _) = c.raft_log(s.follower).await;
    c.stop(s.follower);

    // Tamper: append an entry the cluster never wrote to the stopped follower's journal. Its
    // chain is valid on its own, but from that cursor on it is not the cluster's journal.
    {
        let db = c.root().join(format!("node-{}", s.follower)).join("db");
        let store = parley_storage::Store::open_path(&db, 8 << 20).expect("open the follower's store");
        let mut tx = store.begin();
        let intruder = parley_storage::CommandKind::Register {
            user_id: "intruder".into(),
            display_name: "Not the cluster's".into(),
            password_hash: "x".into(),
        };
        let outcome = parley_storage::execute(&mut tx, &parley_storage::Command { ts: 1, kind: intruder }).unwrap();
        assert!(outcome.result.is_ok());
        tx.commit().unwrap();
        store.db().flush().unwrap();
    }

    let mut acks = write(&c, &s, 600, "v").await;
    write_until_snapshot_needed(&c, &s, follower_last_log, "v", &mut acks).await;
    c.spawn(s.follower);

    // It detects the divergence when it installs the snapshot, and stops with a clear error.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !c.log_tail(s.follower, 200).contains("diverged") {
        assert!(Instant::now() < deadline, "no divergence reported:\n{}", c.log_tail(s.follower, 40));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(c.log_tail(s.follower, 200).contains("remove its data dir"), "the error says what to do");
    // It never serves the divergent state: not ready, user reads refused.
    assert!(!c.ready(s.follower).await, "a diverged node reports ready");
    let (status, body) =
        get(&c.http, &format!("{}/v1/conversations", c.url(s.follower)), Some(&s.users[0].token)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    // The others carry on.
    let more = write(&c, &s, 40, "v2").await;
    assert_eq!(more.len(), 40);
}
