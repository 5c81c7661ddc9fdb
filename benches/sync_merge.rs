//! The sync merge (`Store::sync`): a user's personal feed merged with the feeds of each of
//! their conversations, inside their membership intervals. It serves `GET /v1/sync`, WebSocket
//! catch-up, and every live push (a woken socket pulls from its cursor), so its cost per call
//! for a user in many conversations matters.
//!
//! For users in 10, 100 and 1,000 direct conversations (5 messages each, interleaved so the
//! merge touches every feed): the first page from cursor 0, a live pull of the newest message
//! only, and a 1,000-update catch-up page from the middle of the history.
//!
//! `cargo bench --bench sync_merge`

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use parley_storage::{Command, CommandKind, Store};

const MESSAGES_PER_CONVERSATION: u64 = 5;

/// A store where `hub` has `n` friends and a direct conversation with each.
fn build(n: u64) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open_path(dir.path(), 256 << 20).expect("open store");
    let mut ts = 1_000u64;
    let mut cmds: Vec<CommandKind> = Vec::new();
    let register =
        |u: &str| CommandKind::Register { user_id: u.into(), display_name: u.into(), password_hash: "x".into() };
    cmds.push(register("hub"));
    for i in 0..n {
        let f = format!("friend_{i:05}");
        cmds.push(register(&f));
        cmds.push(CommandKind::FriendRequest { from: f.clone(), to: "hub".into(), note: String::new() });
        cmds.push(CommandKind::AcceptFriend { user_id: "hub".into(), from: f });
    }
    for m in 0..MESSAGES_PER_CONVERSATION {
        for i in 0..n {
            let f = format!("friend_{i:05}");
            cmds.push(CommandKind::Send {
                sender: f.clone(),
                conversation_id: format!("d:{f}:hub"),
                client_msg_id: format!("m{m}"),
                body: "x".repeat(200),
                reply_to: None,
                max_body_bytes: 16_384,
            });
        }
    }
    for chunk in cmds.chunks(2_000) {
        let mut tx = store.begin();
        for kind in chunk {
            ts += 1;
            parley_storage::execute(&mut tx, &Command { ts, kind: kind.clone() })
                .expect("execute")
                .result
                .expect("accepted");
        }
        tx.commit().expect("commit");
    }
    (dir, store)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("sync_merge");
    for n in [10u64, 100, 1_000] {
        let (_dir, store) = build(n);
        let head = store.applied_cursor();
        let total = store.sync("hub", 0, 1_000_000).expect("sync").entries.len() as u64;
        assert!(total >= n * (MESSAGES_PER_CONVERSATION + 1), "hub sees its friendships and messages");

        g.throughput(Throughput::Elements(100.min(total)));
        g.bench_with_input(BenchmarkId::new("first_page_100", n), &n, |b, _| {
            b.iter(|| store.sync(black_box("hub"), 0, 100).expect("sync"))
        });
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::new("live_pull_newest", n), &n, |b, _| {
            b.iter(|| store.sync(black_box("hub"), head - 1, 100).expect("sync"))
        });
        let page = 1_000.min(total / 2).max(1);
        g.throughput(Throughput::Elements(page));
        g.bench_with_input(BenchmarkId::new("catch_up_page_1000_from_middle", n), &n, |b, _| {
            b.iter(|| store.sync(black_box("hub"), head / 2, page as usize).expect("sync"))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
