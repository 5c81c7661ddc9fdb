//! Failover: no acknowledged message is lost or doubled when the leader dies (SIGKILL) under
//! concurrent load on every node, nor when all three nodes die at once; terms and votes never
//! go backwards; a restarted node catches up. Prints the measured election time, write gap and
//! catch-up time (`cargo test --test cluster_failover -- --nocapture`).

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::cluster::*;

async fn check_all(c: &Cluster, readers: &BTreeMap<String, User>, acks: &[Ack]) {
    let ids = c.ids();
    let ((last, _, _), converge) = c.assert_identical(&ids, Duration::from_secs(30)).await;
    for id in &ids {
        check_exactly_once(&c.http, &c.url(*id), readers, acks).await;
    }
    println!("converged {} ms after the load stopped; {} acks; head cursor {last}", ms(converge), acks.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_under_concurrent_load_loses_and_doubles_nothing() {
    let mut c = Cluster::start(3, &[]).await;
    let http = c.http.clone();
    let (users, readers, group) = population(&c, "f").await;
    // Six clients, two per node, each retrying the same client_msg_id on errors.
    let senders = senders_everywhere(&c, &users, &group);
    let load = Load::start(&http, senders, "k", None);

    const ROUNDS: usize = 3;
    let mut elections = Vec::new();
    let mut kills = Vec::new();
    let mut catchups = Vec::new();
    let mut readies = Vec::new();
    for round in 0..ROUNDS {
        tokio::time::sleep(Duration::from_millis(800)).await;
        let ids = c.ids();
        let (leader, term) = c.wait_leader(&ids).await;
        let acked_before = load.acked();
        c.kill9(leader);
        let killed_at = Instant::now();
        kills.push(killed_at);
        let survivors: Vec<u64> = ids.iter().copied().filter(|i| *i != leader).collect();
        // Election: both survivors agree on a new leader in a higher term.
        let (new_leader, new_term) = loop {
            if let Some((l, t)) = c.agreed_leader(&survivors).await {
                if t > term {
                    break (l, t);
                }
            }
            assert!(killed_at.elapsed() < READY_TIMEOUT, "no new leader after killing {leader}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let election = killed_at.elapsed();
        elections.push(ms(election));
        println!("round {round}: killed leader {leader} (term {term}, {acked_before} acks so far); node {new_leader} leads term {new_term} after {} ms", ms(election));

        tokio::time::sleep(Duration::from_millis(800)).await;
        // Restart the old leader while the load goes on; it must catch up with everything the
        // cluster had applied when it came back.
        let target = c.info(new_leader).await.map(|v| v["last_applied"].as_u64().unwrap()).unwrap_or(0);
        c.spawn(leader);
        let restarted = Instant::now();
        let ready = c.wait_ready(leader).await;
        loop {
            let applied = c.info(leader).await.and_then(|v| v["last_applied"].as_u64()).unwrap_or(0);
            if applied >= target {
                break;
            }
            assert!(restarted.elapsed() < READY_TIMEOUT, "node {leader} did not catch up");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        catchups.push(ms(restarted.elapsed()));
        readies.push(ms(ready));
        println!(
            "round {round}: node {leader} restarted, ready in {} ms, caught up to index {target} in {} ms",
            ms(ready),
            ms(restarted.elapsed())
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let retries = load.retries.load(std::sync::atomic::Ordering::Relaxed);
    let acks = load.stop().await;
    let ends: Vec<Instant> = kills.iter().skip(1).copied().chain(std::iter::once(Instant::now())).collect();
    let gaps: Vec<f64> = kills.iter().zip(&ends).map(|(k, end)| ms(longest_gap(&acks, *k, *end))).collect();

    check_all(&c, &readers, &acks).await;

    let mut sorted = elections.clone();
    sorted.sort_by(f64::total_cmp);
    let mut sorted_gaps = gaps.clone();
    sorted_gaps.sort_by(f64::total_cmp);
    let mut sorted_catchups = catchups.clone();
    sorted_catchups.sort_by(f64::total_cmp);
    println!(
        "FIGURES leader kill x{ROUNDS}: election ms {elections:?} (p50 {}, max {}); write gap ms {gaps:?} (p50 {}, max {}); \
         restart ready ms {readies:?}; catch-up ms {catchups:?} (p50 {}, max {}); {} acks, {retries} retried requests",
        percentile(&sorted, 50.0),
        percentile(&sorted, 100.0),
        percentile(&sorted_gaps, 50.0),
        percentile(&sorted_gaps, 100.0),
        percentile(&sorted_catchups, 50.0),
        percentile(&sorted_catchups, 100.0),
        acks.len()
    );
    assert!(acks.len() > 100, "the load made too little progress: {} acks", acks.len());
}

/// `(term, vote)` of every running node, as `/v1/cluster` reports them.
async fn terms_and_votes(c: &Cluster) -> BTreeMap<u64, (u64, Value)> {
    let mut out = BTreeMap::new();
    for id in c.ids() {
        let info = c.info(id).await.expect("cluster info");
        out.insert(id, (info["term"].as_u64().unwrap(), info["vote"].clone()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_cluster_killed_during_writes_loses_nothing_and_terms_never_go_back() {
    let mut c = Cluster::start(3, &[]).await;
    let http = c.http.clone();
    let (users, readers, _) = population(&c, "w").await;
    let plan = [(0, 1), (1, 2), (2, 0)];
    let senders: Vec<Sender> = plan
        .iter()
        .enumerate()
        .map(|(i, (a, b))| Sender {
            user: users[*a].clone(),
            conv: dm(&users[*a].id, &users[*b].id),
            bases: rotation(&c, i),
        })
        .collect();
    let load = Load::start(&http, senders, "w", None);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    for round in 0..2 {
        let before = terms_and_votes(&c).await;
        let acked = load.acked();
        c.kill9_all();
        let killed_at = Instant::now();
        tokio::time::sleep(Duration::from_millis(300)).await;
        for id in c.ids() {
            c.spawn(id);
        }
        let ids = c.ids();
        for id in &ids {
            c.wait_ready(*id).await;
        }
        let (leader, term) = c.wait_leader(&ids).await;
        println!(
            "round {round}: all killed after {acked} acks; leader {leader} in term {term}, cluster ready {} ms after the kill (300 ms of it down)",
            ms(killed_at.elapsed())
        );
        let after = terms_and_votes(&c).await;
        for (id, (term_before, vote_before)) in &before {
            let (term_after, vote_after) = &after[id];
            assert!(term_after >= term_before, "node {id}: term went back from {term_before} to {term_after}");
            let (vt_before, vt_after) = (vote_before["term"].as_u64().unwrap(), vote_after["term"].as_u64().unwrap());
            assert!(vt_after >= vt_before, "node {id}: vote went back from {vote_before} to {vote_after}");
            if vt_after == vt_before {
                assert_eq!(vote_after["node_id"], vote_before["node_id"], "node {id} voted twice in term {vt_after}");
            }
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    let acks = load.stop().await;
    check_all(&c, &readers, &acks).await;
}
