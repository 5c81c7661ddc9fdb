//! The checker every fault scenario ends with, and the syncing clients it watches.
//!
//! - Every acknowledged send (the load's [`Ack`]s: conversation, seq, client message id) is
//!   stored exactly once at its acknowledged seq on every node, and every conversation's seqs
//!   are exactly 1..N ([`tally`] on each node).
//! - Once the fault has healed, every node's journal verifies and all have the same last
//!   cursor, head hash and projection digest ([`Cluster::assert_identical`]).
//! - A [`Syncer`] per node polls `GET /v1/sync` on that node only, from its own cursor, for
//!   the whole scenario, through the fault. Each update must come after the previous one (no
//!   repeat), and at the end what it received must be exactly a healthy node's full sync, JSON
//!   for JSON (no skip, and nothing that differs: a node never served bad data).
//! - Time unavailable: the longest stretch in which no client's write was acknowledged.
//!
//! The counts are returned as [`Counts`] and printed as a `RELIABILITY` line (the table in
//! docs/RELIABILITY.md); the scenario then asserts they are clean.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::cluster::*;

/// One scenario's figures.
#[derive(Debug, Clone)]
pub struct Counts {
    pub scenario: String,
    pub acked: usize,
    pub lost: usize,
    pub duplicated: usize,
    pub seq_gaps: usize,
    /// Updates a syncing client missed, got twice, or got different from a healthy node.
    pub sync_faults: usize,
    pub unavailable: Duration,
    pub note: String,
}

impl Counts {
    pub fn print(&self) {
        println!(
            "RELIABILITY | {} | {} | {} | {} | {:.2} s | {} |",
            self.scenario,
            self.acked,
            self.lost,
            self.duplicated,
            self.unavailable.as_secs_f64(),
            self.note
        );
    }

    pub fn assert_clean(&self) {
        assert_eq!(
            (self.lost, self.duplicated, self.seq_gaps, self.sync_faults),
            (0, 0, 0, 0),
            "{}: lost, duplicated, seq gaps, sync faults",
            self.scenario
        );
    }
}

/// A client that syncs one user from one node for the whole scenario.
pub struct Syncer {
    pub node: u64,
    pub user: User,
    stop: Arc<AtomicBool>,
    cursor: Arc<AtomicU64>,
    received: Arc<Mutex<Vec<Value>>>,
    repeats: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Syncer {
    /// Starts polling `base` (node `node`) from cursor 0; errors and 503s are retried on the
    /// same node, from the same cursor.
    pub fn start(http: &reqwest::Client, node: u64, base: String, user: User) -> Syncer {
        let stop = Arc::new(AtomicBool::new(false));
        let cursor = Arc::new(AtomicU64::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let repeats = Arc::new(AtomicU64::new(0));
        let (s, c, r, rep, http, token) =
            (stop.clone(), cursor.clone(), received.clone(), repeats.clone(), http.clone(), user.token.clone());
        let task = tokio::spawn(async move {
            let mut last_update = 0u64;
            while !s.load(Ordering::Relaxed) {
                let since = c.load(Ordering::Relaxed);
                let url = format!("{base}/v1/sync?since={since}&limit=1000&wait_ms=300");
                let req = http.get(&url).bearer_auth(&token).timeout(Duration::from_secs(3));
                let page = match req.send().await {
                    Ok(resp) if resp.status().is_success() => resp.json::<Value>().await.ok(),
                    _ => None,
                };
                let Some(page) = page else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let updates = page["updates"].as_array().cloned().unwrap_or_default();
                let mut got = r.lock().unwrap();
                for u in updates {
                    let uc = u["cursor"].as_u64().unwrap_or(0);
                    if uc <= last_update {
                        rep.fetch_add(1, Ordering::Relaxed);
                    }
                    last_update = last_update.max(uc);
                    got.push(u);
                }
                drop(got);
                if let Some(next) = page["cursor"].as_u64() {
                    c.store(next, Ordering::Relaxed);
                }
            }
        });
        Syncer { node, user, stop, cursor, received, repeats, task }
    }

    pub fn cursor(&self) -> u64 {
        self.cursor.load(Ordering::Relaxed)
    }

    /// Waits (bounded) until it has synced up to `head`, stops it, and counts the updates that
    /// differ from `reference` (missing, repeated, extra or changed). For a node that has left
    /// (`whole` false: removed, fail-stopped) what it received must be a prefix of `reference`.
    pub async fn finish(self, head: u64, reference: &[Value], whole: bool) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        while whole && self.cursor() < head && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        let got = self.received.lock().unwrap().clone();
        let reference = if whole { reference } else { &reference[..got.len().min(reference.len())] };
        stream_faults(&format!("sync of {} on node {}", self.user.id, self.node), &got, reference)
            + self.repeats.load(Ordering::Relaxed) as usize
    }
}

/// How many updates of `got` are not `reference` (position by position, plus the difference
/// in length); prints the first difference.
pub fn stream_faults(what: &str, got: &[Value], reference: &[Value]) -> usize {
    let mut bad = got.len().abs_diff(reference.len());
    for (i, (g, r)) in got.iter().zip(reference).enumerate() {
        if g != r {
            if bad == got.len().abs_diff(reference.len()) {
                println!("{what}: update {i} differs: got {g}, expected {r}");
            }
            bad += 1;
        }
    }
    if bad > 0 {
        println!("{what}: {} updates received, {} expected, {bad} faults", got.len(), reference.len());
    }
    bad
}

/// The end of every scenario: heal is done by the caller; waits for `ids` to converge, checks
/// journals, digests, every ack on every node, and every syncer; returns the counts.
pub async fn check(
    c: &Cluster,
    scenario: &str,
    ids: &[u64],
    readers: &BTreeMap<String, User>,
    acks: &[Ack],
    syncers: Vec<Syncer>,
    load_window: (Instant, Instant),
) -> Counts {
    let ((head, _, _), took) = c.assert_identical(ids, Duration::from_secs(60)).await;
    let mut counts = Counts {
        scenario: scenario.to_string(),
        acked: acks.len(),
        lost: 0,
        duplicated: 0,
        seq_gaps: 0,
        sync_faults: 0,
        unavailable: longest_gap(acks, load_window.0, load_window.1),
        note: String::new(),
    };
    for id in ids {
        let t = tally(&c.http, &c.url(*id), readers, acks).await;
        if !t.clean() {
            println!("{scenario}: node {id}: {t:?}");
        }
        counts.lost = counts.lost.max(t.lost);
        counts.duplicated = counts.duplicated.max(t.duplicated);
        counts.seq_gaps += t.seq_gaps;
    }
    let mut references: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for s in syncers {
        if !references.contains_key(&s.user.id) {
            references.insert(s.user.id.clone(), full_sync(&c.http, &c.url(ids[0]), &s.user).await);
        }
        let whole = ids.contains(&s.node);
        let reference = references[&s.user.id].clone();
        counts.sync_faults += s.finish(head, &reference, whole).await;
    }
    println!("{scenario}: converged in {} ms, head cursor {head}", ms(took));
    counts
}
