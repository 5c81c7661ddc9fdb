//! rkyv encoding of the records on the hot path of a message send, with validated decoding (the
//! only way Parley reads bytes back: copy into an aligned buffer, `bytecheck`, deserialize):
//! the raft log payload (`Command`), the journal record (`JournalRecord`, decode + hash check +
//! event decode, as sync and replay read it) and the message projection's record (`MessageRecord`,
//! a fixed 9-byte layout since storage format 2: the body is read from the journal record).
//!
//! `cargo bench --bench codec`

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use parley_storage::codec::{decode, encode};
use parley_storage::journal::{EntryScratch, JournalRecord, ZERO_HASH};
use parley_storage::records::MessageRecord;
use parley_storage::{Command, CommandKind, Event};

const BODY_BYTES: usize = 256;

fn command() -> Command {
    Command {
        ts: 1_700_000_000_000,
        kind: CommandKind::Send {
            sender: "alice_0001".into(),
            conversation_id: "d:alice_0001:bob_00002".into(),
            client_msg_id: "b1f2e3-s17-12345".into(),
            body: "x".repeat(BODY_BYTES),
            reply_to: None,
            max_body_bytes: 16_384,
        },
    }
}

fn event() -> Event {
    Event::MessageSent {
        conversation_id: "d:alice_0001:bob_00002".into(),
        seq: 12_345,
        sender: "alice_0001".into(),
        body: "x".repeat(BODY_BYTES),
        client_msg_id: "b1f2e3-s17-12345".into(),
        reply_to: None,
    }
}

fn message() -> MessageRecord {
    MessageRecord { cursor: 987_654, revoked: false }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1));

    let cmd = command();
    let cmd_bytes = encode(&cmd);
    g.bench_function("command_encode", |b| b.iter(|| encode(black_box(&cmd))));
    g.bench_function("command_decode_validated", |b| {
        b.iter(|| decode::<Command>(black_box(&cmd_bytes)).expect("valid command"))
    });

    let ev = event();
    g.bench_function("journal_record_new (encode + sha256)", |b| {
        b.iter(|| JournalRecord::new(black_box(987_654), 1_700_000_000_000, ZERO_HASH, black_box(&ev)))
    });
    let rec = JournalRecord::new(987_654, 1_700_000_000_000, ZERO_HASH, &ev);
    let rec_bytes = encode(&rec);
    // What sync does per entry: decode the record and its event.
    g.bench_function("journal_record_decode_entry", |b| {
        b.iter(|| JournalRecord::decode(987_654, black_box(&rec_bytes)).expect("valid").entry().expect("valid event"))
    });
    // What verification and replay do per entry: also recompute the chain hash.
    g.bench_function("journal_record_decode_verify", |b| {
        b.iter(|| JournalRecord::decode(987_654, black_box(&rec_bytes)).expect("valid").verify().expect("hash ok"))
    });

    // What every serving read does per entry (sync, history, message joins): access in
    // place, validated, with the chain hash recomputed (a flipped bit is refused there).
    let mut scratch = EntryScratch::default();
    g.bench_function("journal_entry_access (in place, hash checked)", |b| {
        b.iter(|| scratch.access(987_654, black_box(&rec_bytes)).map(|(r, _)| r.ts.to_native()).expect("valid"))
    });

    let msg = message();
    let msg_bytes = msg.encode();
    g.bench_function("message_record_encode", |b| b.iter(|| black_box(&msg).encode()));
    g.bench_function("message_record_decode_validated", |b| {
        b.iter(|| MessageRecord::decode(black_box(&msg_bytes)).expect("valid message"))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
