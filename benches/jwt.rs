//! Token checks on every request and WebSocket upgrade: `Auth::authenticate` (HS256 signature,
//! `exp`, and the session lookup in the replicated sessions projection), and `Auth::issue`.
//!
//! `cargo bench --bench jwt`

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use parley_api::auth::{Auth, TOKEN_TTL_MS};
use parley_storage::{Command, CommandKind, Store};

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970").as_millis() as u64
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open_path(dir.path(), 64 << 20).expect("open store");
    let now = now_ms();
    let mut tx = store.begin();
    for kind in [
        CommandKind::Register { user_id: "alice".into(), display_name: "alice".into(), password_hash: "x".into() },
        CommandKind::CreateSession {
            user_id: "alice".into(),
            session_id: "0123456789abcdef0123456789abcdef".into(),
            device: "bench".into(),
            expires_at: now + TOKEN_TTL_MS,
        },
    ] {
        parley_storage::execute(&mut tx, &Command { ts: now, kind }).expect("execute").result.expect("accepted");
    }
    tx.commit().expect("commit");
    let auth = Auth::new(b"a 32-byte secret for the jwt bench", None).expect("auth");
    let token = auth.issue("alice", "0123456789abcdef0123456789abcdef", now, now + TOKEN_TTL_MS).expect("token");
    let bad = format!("{}x", &token[..token.len() - 1]);

    let mut g = c.benchmark_group("jwt");
    g.throughput(Throughput::Elements(1));
    g.bench_function("authenticate (verify + session lookup)", |b| {
        b.iter(|| auth.authenticate(&store, Some(black_box(&token))).expect("valid token"))
    });
    g.bench_function("authenticate bad signature", |b| {
        b.iter(|| auth.authenticate(&store, Some(black_box(&bad))).expect_err("refused"))
    });
    g.bench_function("issue", |b| {
        b.iter(|| auth.issue("alice", black_box("0123456789abcdef0123456789abcdef"), now, now + TOKEN_TTL_MS))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
