//! What one command with a huge member list costs `decide`: CreateGroup and AddMembers with 10k
//! and 100k distinct, registered ids (the accepted path: every id is looked up), and 100k ids
//! over a 10k limit (refused by count). One pass over the list, so time grows linearly with it;
//! the quadratic duplicate scan this replaced took seconds at 80k ids, on every node.
//!
//! `cargo bench --bench large_input`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use parley_storage::decide::decide;
use parley_storage::{Command, CommandKind, Reply, Store};

const SIZES: [usize; 2] = [10_000, 100_000];

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user_{i}")).collect()
}

/// A store with `alice`, her empty group 1 and `n` more users.
fn setup(n: usize) -> (tempfile::TempDir, Store, u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open_path(dir.path(), 256 << 20).expect("open store");
    let mut tx = store.begin();
    let mut run = |kind| parley_storage::execute(&mut tx, &Command { ts: 1, kind }).expect("execute").result;
    for u in std::iter::once("alice".to_owned()).chain(ids(n)) {
        run(CommandKind::Register { user_id: u.clone(), display_name: u, password_hash: "x".into() }).expect("user");
    }
    let group = match run(create(Vec::new(), 10)) {
        Ok(Reply::Group { group_id }) => group_id,
        other => panic!("no group: {other:?}"),
    };
    tx.commit().expect("commit");
    (dir, store, group)
}

fn create(members: Vec<String>, max_members: u64) -> CommandKind {
    CommandKind::CreateGroup { owner: "alice".into(), name: "big".into(), members, max_members }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("decide_large_member_list");
    for n in SIZES {
        let (_dir, store, group) = setup(n);
        let max = n as u64 + 1;
        g.throughput(Throughput::Elements(n as u64));
        let cmd = Command { ts: 2, kind: create(ids(n), max) };
        g.bench_with_input(BenchmarkId::new("create_group", n), &cmd, |b, cmd| {
            b.iter(|| decide(&store.begin(), cmd).expect("decided"))
        });
        let kind =
            CommandKind::AddMembers { actor: "alice".into(), group_id: group, user_ids: ids(n), max_members: max };
        let cmd = Command { ts: 2, kind };
        g.bench_with_input(BenchmarkId::new("add_members", n), &cmd, |b, cmd| {
            b.iter(|| decide(&store.begin(), cmd).expect("decided"))
        });
    }
    // Refused by count before any lookup: the cost of an oversized list is one hash pass.
    let (_dir, store, _) = setup(0);
    let cmd = Command { ts: 2, kind: create(ids(100_000), 10_000) };
    g.throughput(Throughput::Elements(100_000));
    g.bench_function("create_group_over_limit/100000", |b| b.iter(|| decide(&store.begin(), &cmd).is_err()));
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
