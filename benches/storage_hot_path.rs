//! The storage hot path of a message send: decide + journal append + apply + atomic commit,
//! without raft or HTTP. Two shapes: one send per transaction (the worst case) and 256 sends
//! per transaction (how raft applies a batch under load: one commit for the batch).
//!
//! `cargo bench --bench storage_hot_path`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use parley_storage::{Command, CommandKind, Store};

fn setup() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open_path(dir.path(), 64 << 20).expect("open store");
    let mut tx = store.begin();
    let mut run = |kind| {
        parley_storage::execute(&mut tx, &Command { ts: 1, kind }).expect("execute").result.expect("accepted");
    };
    for u in ["alice", "bob"] {
        run(CommandKind::Register { user_id: u.into(), display_name: u.into(), password_hash: "x".into() });
    }
    run(CommandKind::FriendRequest { from: "alice".into(), to: "bob".into(), note: String::new() });
    run(CommandKind::AcceptFriend { user_id: "bob".into(), from: "alice".into() });
    tx.commit().expect("commit");
    (dir, store)
}

fn send(n: u64) -> Command {
    Command {
        ts: 1_000 + n,
        kind: CommandKind::Send {
            sender: "alice".into(),
            conversation_id: "d:alice:bob".into(),
            client_msg_id: format!("m{n}"),
            body: "x".repeat(200),
            reply_to: None,
            max_body_bytes: 16_384,
        },
    }
}

fn bench(c: &mut Criterion) {
    let (_dir, store) = setup();
    let mut n = 0u64;
    let mut g = c.benchmark_group("send");
    g.throughput(Throughput::Elements(1));
    g.bench_function("one_per_commit", |b| {
        b.iter(|| {
            n += 1;
            let mut tx = store.begin();
            parley_storage::execute(&mut tx, &send(n)).expect("execute").result.expect("accepted");
            tx.commit().expect("commit");
        })
    });
    const BATCH: u64 = 256;
    g.throughput(Throughput::Elements(BATCH));
    g.bench_function("batch_of_256_per_commit", |b| {
        b.iter_batched(
            || {
                let start = n;
                n += BATCH;
                (start..start + BATCH).map(send).collect::<Vec<_>>()
            },
            |cmds| {
                let mut tx = store.begin();
                for cmd in &cmds {
                    parley_storage::execute(&mut tx, cmd).expect("execute").result.expect("accepted");
                }
                tx.commit().expect("commit");
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
