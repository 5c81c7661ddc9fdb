//! A journal page pulled while installing a snapshot: the `/raft/journal` answer body
//! (`wire::decode::<Page>`, as `raft/src/network.rs` does) and then the chain check that
//! `catch_up` runs on it before anything is stored (`snapshot::check_page`).
//!
//! Input: `[flags][expected cursor: u64 LE][target head cursor: u64 LE][page body ...]`.
//! flags bit 0: the first entry must be the expected position's own (the first page of a
//! pull); bit 1: the expected hash is the first record's `prev_hash` (its `hash` under the
//! link check; else the zero hash), so the fuzzer can get past the first link; bit 2: the
//! target's head hash is the last record's hash (else the zero hash), as a real manifest's
//! would be.
//!
//! Checked: never a panic; a page that is accepted holds only what a correct chain may: every
//! entry verifies (its hash recomputes), cursors follow one another from the expected one,
//! each `prev_hash` is the previous hash, nothing passes the target, and the target's head hash
//! is met when the page reaches the target.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parley_raft::snapshot::{check_page, Manifest};
use parley_raft::wire::{self, Page};
use parley_storage::journal::{JournalRecord, ZERO_HASH};

fn u64_at(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_le_bytes(a)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 17 {
        return;
    }
    let (flags, expected_cursor, target_cursor, body) =
        (data[0], u64_at(&data[1..9]), u64_at(&data[9..17]), &data[17..]);
    let Ok(page) = wire::decode::<Page>(body) else { return };
    let records: Vec<Option<JournalRecord>> =
        page.entries.iter().map(|e| JournalRecord::decode(e.cursor, &e.record).ok()).collect();
    let check_link = flags & 1 != 0;
    // With the link check the first entry must be the expected position's own; else the next.
    let first = records.first().and_then(|r| r.as_ref()).map(|r| if check_link { r.hash } else { r.prev_hash });
    let last_hash = records.last().and_then(|r| r.as_ref()).map(|r| r.hash).unwrap_or(ZERO_HASH);
    let expected = (expected_cursor, if flags & 2 != 0 { first.unwrap_or(ZERO_HASH) } else { ZERO_HASH });
    let target = Manifest {
        head_cursor: target_cursor,
        head_hash: if flags & 4 != 0 { last_hash } else { ZERO_HASH },
        source: None,
        requests: Default::default(),
    };
    let Ok((accepted, end)) = check_page(page.entries.clone(), expected, check_link, &target) else { return };
    let mut at = expected;
    for (rec, event) in &accepted {
        assert_eq!(rec.cursor, at.0 + 1, "cursors must follow one another");
        assert_eq!(rec.prev_hash, at.1, "prev_hash must link");
        assert!(rec.cursor <= target.head_cursor, "nothing past the target");
        assert_eq!(&rec.verify().expect("an accepted entry verifies").event, event);
        at = (rec.cursor, rec.hash);
    }
    assert_eq!(end, at, "the position after the page is its last accepted entry");
    if end.0 == target.head_cursor {
        assert_eq!(end.1, target.head_hash, "a page that reaches the target carries its head hash");
    }
});
