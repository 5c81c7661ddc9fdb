//! Offline replay throughput: a synthetic journal (the `parley audit generate` chat mix) read,
//! verified and applied into a fresh scratch store, two ways:
//!
//! - `in_memory`: what `parley replay` does (projections built in one detached transaction,
//!   digested in memory);
//! - `batched`: what `parley import` does (journal and projections committed to sled in
//!   batches of 20,000 entries, then digested from sled).
//!
//! `cargo bench --bench replay` (N = 20,000; `PARLEY_BENCH_REPLAY_ENTRIES=N` for another size).
//! For the 1,000,000-entry figure use the release binary directly:
//! `parley audit generate --data-dir D --entries 1000000 && parley replay --data-dir D`.

use std::path::Path;
use std::process::Command;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use parley_storage::journal::{ChainVerifier, JournalRecord};
use parley_storage::replay::{Replayer, DEFAULT_BATCH_ENTRIES};
use parley_storage::Store;

fn entries() -> u64 {
    std::env::var("PARLEY_BENCH_REPLAY_ENTRIES").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000)
}

/// Generates the journal with the real binary's hidden generator.
fn generate(dir: &Path, n: u64) {
    let status = Command::new(env!("CARGO_BIN_EXE_parley"))
        .args(["audit", "generate", "--entries", &n.to_string(), "--users", "500", "--data-dir"])
        .arg(dir)
        .status()
        .expect("run parley audit generate");
    assert!(status.success(), "parley audit generate failed");
}

/// Reads, verifies and replays the whole journal of `source`; returns the digest.
fn replay(source: &Store, mut r: Replayer) -> [u8; 32] {
    let mut v = ChainVerifier::default();
    for item in source.journal_raw(1) {
        let (cursor, bytes) = item.expect("read");
        let rec = JournalRecord::decode(cursor, &bytes).expect("decode");
        let entry = v.check_record(&rec).expect("verify");
        r.push(&rec, &entry.event).expect("apply");
    }
    r.digest().expect("digest")
}

fn scratch() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open_path(&dir.path().join("db"), 256 << 20).expect("open scratch");
    (dir, store)
}

fn bench(c: &mut Criterion) {
    let n = entries();
    let data = tempfile::tempdir().expect("temp dir");
    generate(data.path(), n);
    let source = Store::open_path(&data.path().join("db"), 256 << 20).expect("open source");
    let live_digest = source.projection_digest().expect("digest");

    let mut g = c.benchmark_group("replay");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n));
    g.bench_function(format!("in_memory/{n}"), |b| {
        b.iter_batched(
            scratch,
            |(dir, store)| {
                let d = replay(&source, Replayer::in_memory(&store, usize::MAX, DEFAULT_BATCH_ENTRIES));
                assert_eq!(d, live_digest, "replay digest differs from the live store's");
                (dir, store)
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function(format!("batched/{n}"), |b| {
        b.iter_batched(
            scratch,
            |(dir, store)| {
                let d = replay(&source, Replayer::new(&store, DEFAULT_BATCH_ENTRIES));
                assert_eq!(d, live_digest, "replay digest differs from the live store's");
                (dir, store)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
