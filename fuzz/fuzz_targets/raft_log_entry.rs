//! A `raft_log` value as the log store reads it back: the checksummed frame, the rkyv
//! `StoredEntry` inside, and the payload nested in that (an rkyv `CommandBatch` or a JSON
//! membership), converted to openraft's `Entry`.
//!
//! The first byte picks the input: odd, `data` is the whole stored value (frame included, so
//! the checksum mostly refuses it, as it should); even, `data` is a payload that is framed with
//! its correct checksum first, so the fuzzer reaches the rkyv and JSON decoders behind it.
//! Checked: never a panic; an entry that decodes converts back to the same stored entry and
//! re-encodes to a value that decodes again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parley_raft::frame;
use parley_raft::log_store::StoredEntry;

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else { return };
    let record = if which % 2 == 0 { frame::seal(bytes) } else { bytes.to_vec() };
    let Ok(stored) = StoredEntry::decode(&record) else { return };
    let again = StoredEntry::decode(&stored.encode()).expect("a re-encoded entry decodes");
    assert_eq!(again, stored);
    let log_id = stored.log_id();
    let Ok(entry) = stored.clone().into_entry() else { return };
    assert_eq!(entry.log_id, log_id);
    let back = StoredEntry::from_entry(&entry).expect("a decoded entry encodes");
    assert_eq!((back.term, back.leader_node_id, back.index), (stored.term, stored.leader_node_id, stored.index));
    let entry_again = back.into_entry().expect("a re-encoded entry converts");
    assert!(entry_again == entry, "the entry changed on a round trip: {entry_again:?} vs {entry:?}");
});
