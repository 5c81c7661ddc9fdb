//! What one message costs the state machine: `decide` + `apply` + journal append + the atomic
//! sled commit of a send, to a 2-member group, to a 5,000-member group, and in a direct
//! conversation. A group message writes one `convcursor_` feed record whatever the member
//! count, so the two group figures should be about equal.
//!
//! `cargo bench --bench group_send` (release). The sled db is file-backed with the server's
//! default cache; the commit is sled's atomic batch, not an fsync (durability comes from the
//! raft log, as in the server).

use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use parley_storage::{Command, CommandKind, Reply, Store};

const BIG: usize = 5_000;
const T0: u64 = 1_700_000_000_000;

struct World {
    store: Store,
    _dir: tempfile::TempDir,
    now: u64,
}

impl World {
    /// Runs commands in one transaction (setup only) and checks each was accepted.
    fn batch(&mut self, kinds: impl IntoIterator<Item = CommandKind>) -> Vec<Reply> {
        let mut tx = self.store.begin();
        let mut out = Vec::new();
        for kind in kinds {
            self.now += 1;
            let o = parley_storage::execute(&mut tx, &Command { ts: self.now, kind }).expect("no storage error");
            out.push(o.result.expect("setup command accepted"));
        }
        tx.commit().expect("commit");
        out
    }
}

fn user_id(i: usize) -> String {
    format!("user{i:05}")
}

/// Users `user00000..`, a 2-member and a 5,000-member group owned by `user00000`, and a
/// friendship `user00000`/`user00001` for the direct conversation.
fn setup() -> (World, u64, u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open_path(dir.path(), 256 << 20).expect("store");
    let mut w = World { store, _dir: dir, now: T0 };
    for chunk in (0..BIG).collect::<Vec<_>>().chunks(500) {
        w.batch(chunk.iter().map(|i| CommandKind::Register {
            user_id: user_id(*i),
            display_name: user_id(*i),
            password_hash: "x".into(),
        }));
    }
    w.batch([
        CommandKind::FriendRequest { from: user_id(0), to: user_id(1), note: String::new() },
        CommandKind::AcceptFriend { user_id: user_id(1), from: user_id(0) },
    ]);
    let create = |n: usize| CommandKind::CreateGroup {
        owner: user_id(0),
        name: format!("{n} members"),
        members: (1..n).map(user_id).collect(),
        max_members: 10_000,
    };
    let gid = |r: &Reply| match r {
        Reply::Group { group_id } => *group_id,
        other => panic!("unexpected {other:?}"),
    };
    let small = gid(&w.batch([create(2)])[0]);
    let big = gid(&w.batch([create(BIG)])[0]);
    assert_eq!(w.store.group(big).unwrap().unwrap().member_count, BIG as u64);
    (w, small, big)
}

fn send(w: &mut World, n: &mut u64, sender: &str, conversation_id: &str) {
    *n += 1;
    w.now += 1;
    let kind = CommandKind::Send {
        sender: sender.to_owned(),
        conversation_id: conversation_id.to_owned(),
        client_msg_id: format!("b{n}"),
        body: "a typical chat message of about sixty bytes, give or take".into(),
        reply_to: None,
        max_body_bytes: 16_384,
    };
    let mut tx = w.store.begin();
    let out = parley_storage::execute(&mut tx, &Command { ts: w.now, kind }).expect("no storage error");
    assert!(matches!(out.result, Ok(Reply::Message { created: true, .. })), "{out:?}");
    tx.commit().expect("commit");
}

fn bench(c: &mut Criterion) {
    let (mut w, small, big) = setup();
    let mut n = 0u64;
    let sender = user_id(1);
    let convs = [format!("g:{small}"), format!("g:{big}"), format!("d:{}:{}", user_id(0), user_id(1))];
    let mut g = c.benchmark_group("send");
    // Every iteration sends to all three conversations (rotating the order) and times only
    // one of them: the journal and the trees grow the same way under each figure, so the
    // figures compare like with like even on a busy machine.
    for (which, name) in ["group_2_members", "group_5000_members", "direct"].into_iter().enumerate() {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for i in 0..iters as usize {
                    for k in 0..convs.len() {
                        let k = (k + i) % convs.len();
                        let t0 = Instant::now();
                        send(&mut w, &mut n, &sender, &convs[k]);
                        if k == which {
                            timed += t0.elapsed();
                        }
                    }
                }
                timed
            })
        });
    }
    g.finish();
}

/// The same three sends, interleaved one by one in a single run, reported as medians: on a
/// shared machine this is the fairest comparison (load spikes hit all three alike).
fn interleaved() {
    const ROUNDS: usize = 20_000;
    let (mut w, small, big) = setup();
    let mut n = 0u64;
    let sender = user_id(1);
    let convs = [format!("g:{small}"), format!("g:{big}"), format!("d:{}:{}", user_id(0), user_id(1))];
    let mut samples: [Vec<Duration>; 3] = Default::default();
    for i in 0..ROUNDS {
        for k in 0..convs.len() {
            let k = (k + i) % convs.len();
            let t0 = Instant::now();
            send(&mut w, &mut n, &sender, &convs[k]);
            samples[k].push(t0.elapsed());
        }
    }
    println!("interleaved, {ROUNDS} sends each:            p50        p90        p99");
    for (name, v) in ["group_2_members", "group_5000_members", "direct"].iter().zip(samples.iter_mut()) {
        v.sort();
        let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
        println!("  send/{name:<32} {:>10.1?} {:>10.1?} {:>10.1?}", at(0.5), at(0.9), at(0.99));
    }
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // Only under `cargo bench` (not `cargo test --benches`), and not when filtering
    // (`cargo bench -- <filter>` runs only the criterion benches that match).
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--bench") && args.iter().all(|a| a.starts_with('-')) {
        interleaved();
    }
}
