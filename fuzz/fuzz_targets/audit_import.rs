//! The JSON lines of an export, as `parley import` and `parley audit verify --from-export` read
//! them (`parley::audit::chain::ExportEntries`: line splitting, JSON, the strict line parser in
//! `audit::wire`, re-encoding and the hash chain). The first byte picks a full export (genesis
//! first, no gaps: what import accepts) or a partial one (filtered, gaps allowed).
//!
//! Checked: never a panic; the walk stops at the first error; every entry it yields renders
//! back to exactly its line's JSON, re-encodes to its own hash, and links to the previous one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parley::audit::chain::ExportEntries;
use parley::audit::wire::entry_from_json;
use parley_wire::storage::journal_entry;
use parley_storage::journal::{JournalRecord, ZERO_HASH};

fuzz_target!(|data: &[u8]| {
    let Some((&which, text)) = data.split_first() else { return };
    let partial = which % 2 == 1;
    let mut entries = ExportEntries::new(text, partial);
    let mut prev: Option<(u64, [u8; 32])> = None;
    let mut failed = false;
    for item in entries.by_ref() {
        assert!(!failed, "the walk goes on after an error");
        let Ok((rec, entry)) = item else {
            failed = true;
            continue;
        };
        assert_eq!(JournalRecord::new(entry.cursor, entry.ts, entry.prev_hash, &entry.event), rec);
        assert_eq!(rec.hash, entry.hash);
        let rendered = parley_wire::canonical_value(&journal_entry(&entry)).expect("an entry renders");
        assert_eq!(entry_from_json(&rendered).expect("a rendered entry parses"), entry);
        match prev {
            None if !partial => assert_eq!((entry.cursor, entry.prev_hash), (1, ZERO_HASH)),
            Some((c, h)) if !partial || entry.cursor == c + 1 => {
                assert_eq!((entry.cursor, entry.prev_hash), (c + 1, h), "consecutive entries link")
            }
            Some((c, _)) => assert!(entry.cursor > c, "a partial export only goes forward"),
            None => {}
        }
        prev = Some((entry.cursor, entry.hash));
    }
    if !failed {
        let chain = entries.checked();
        assert_eq!(chain.last_cursor(), prev.map_or(0, |p| p.0), "the chain ends at the last entry");
        assert_eq!(chain.head(), prev.map_or(ZERO_HASH, |p| p.1));
    }
});
