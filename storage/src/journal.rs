//! The journal: the hash-chained, never-truncated sequence of events, keyed by a global cursor.
//!
//! Invariants:
//! - cursors are 1, 2, 3, ... with no gaps; entry `n` links to entry `n-1` through `prev_hash`
//!   (all zeroes for the first entry);
//! - `hash = SHA-256(prev_hash || cursor (u64 BE) || ts (u64 BE) || event bytes)`, where the
//!   event bytes are the exact rkyv bytes stored in the entry;
//! - entries are validated on every read; a record that does not decode or whose hash does
//!   not recompute is a [`JournalError`], never skipped.

use rkyv::{Archive, Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::codec::{self, CodecError};
use crate::event::{ArchivedEvent, Event};

pub type Hash = [u8; 32];
pub const ZERO_HASH: Hash = [0u8; 32];

/// One stored journal entry.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct JournalRecord {
    pub cursor: u64,
    pub ts: u64,
    pub prev_hash: Hash,
    pub hash: Hash,
    /// rkyv bytes of the [`Event`], hashed exactly as stored.
    pub event: Vec<u8>,
}

/// A decoded journal entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub cursor: u64,
    pub ts: u64,
    pub prev_hash: Hash,
    pub hash: Hash,
    pub event: Event,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum JournalError {
    #[error("cursor {cursor}: record does not decode: {reason}")]
    Corrupt { cursor: u64, reason: String },
    #[error("cursor {cursor}: stored cursor {stored} does not match its key")]
    CursorMismatch { cursor: u64, stored: u64 },
    #[error("cursor {cursor}: hash does not recompute")]
    HashMismatch { cursor: u64 },
    #[error("cursor {cursor}: prev_hash does not link to cursor {prev}'s hash")]
    BrokenLink { cursor: u64, prev: u64 },
    #[error("cursor {cursor}: missing (expected consecutive cursors)")]
    Missing { cursor: u64 },
    #[error("head hash {actual} differs from the expected {expected} (truncated or rewritten tail)")]
    HeadMismatch { expected: String, actual: String },
}

impl JournalError {
    /// The first bad cursor this error names, if any.
    pub fn cursor(&self) -> Option<u64> {
        match self {
            JournalError::Corrupt { cursor, .. }
            | JournalError::CursorMismatch { cursor, .. }
            | JournalError::HashMismatch { cursor }
            | JournalError::BrokenLink { cursor, .. }
            | JournalError::Missing { cursor } => Some(*cursor),
            JournalError::HeadMismatch { .. } => None,
        }
    }
}

/// The chain hash of an entry.
pub fn chain_hash(prev_hash: &Hash, cursor: u64, ts: u64, event_bytes: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(prev_hash);
    h.update(cursor.to_be_bytes());
    h.update(ts.to_be_bytes());
    h.update(event_bytes);
    h.finalize().into()
}

impl JournalRecord {
    /// Builds the record that follows `prev_hash`.
    pub fn new(cursor: u64, ts: u64, prev_hash: Hash, event: &Event) -> Self {
        let event = codec::encode(event);
        let hash = chain_hash(&prev_hash, cursor, ts, &event);
        JournalRecord { cursor, ts, prev_hash, hash, event }
    }

    /// Decodes a stored record (validated) for the entry at `cursor`.
    pub fn decode(cursor: u64, bytes: &[u8]) -> Result<Self, JournalError> {
        let rec: JournalRecord =
            codec::decode(bytes).map_err(|CodecError(reason)| JournalError::Corrupt { cursor, reason })?;
        if rec.cursor != cursor {
            return Err(JournalError::CursorMismatch { cursor, stored: rec.cursor });
        }
        Ok(rec)
    }

    /// Recomputes the hash and decodes the event.
    pub fn verify(&self) -> Result<Entry, JournalError> {
        if chain_hash(&self.prev_hash, self.cursor, self.ts, &self.event) != self.hash {
            return Err(JournalError::HashMismatch { cursor: self.cursor });
        }
        self.entry()
    }

    /// Decodes the event without recomputing the hash.
    pub fn entry(&self) -> Result<Entry, JournalError> {
        let event: Event = codec::decode(&self.event)
            .map_err(|CodecError(reason)| JournalError::Corrupt { cursor: self.cursor, reason })?;
        Ok(Entry { cursor: self.cursor, ts: self.ts, prev_hash: self.prev_hash, hash: self.hash, event })
    }
}

/// Reusable buffers for reading stored journal records in place, with the checks of
/// [`JournalRecord::decode`] and [`JournalRecord::verify`] (validated, stored cursor matches,
/// hash recomputes) but without deserialising anything.
///
/// Every read that serves an entry (sync, history, message joins, journal pages) goes through
/// here, so a bit flipped in a stored entry is a [`JournalError::HashMismatch`] where it is
/// read, never a wrong body served: rkyv validation alone accepts any flipped byte of a string.
/// The cost is one SHA-256 of the entry's bytes per entry read (measured in `benches/codec.rs`,
/// `journal_entry_access`).
#[derive(Default)]
pub struct EntryScratch {
    rec: codec::Scratch,
    event: codec::Scratch,
}

impl EntryScratch {
    /// The record stored at `cursor` and its event, valid until the next use.
    pub fn access(
        &mut self,
        cursor: u64,
        bytes: &[u8],
    ) -> Result<(&ArchivedJournalRecord, &ArchivedEvent), JournalError> {
        let corrupt = |CodecError(reason)| JournalError::Corrupt { cursor, reason };
        let rec = self.rec.access::<ArchivedJournalRecord>(bytes).map_err(corrupt)?;
        let stored = rec.cursor.to_native();
        if stored != cursor {
            return Err(JournalError::CursorMismatch { cursor, stored });
        }
        let recomputed = chain_hash(&rec.prev_hash, cursor, rec.ts.to_native(), rec.event.as_slice());
        if recomputed != rec.hash {
            return Err(JournalError::HashMismatch { cursor });
        }
        let event = self.event.access::<ArchivedEvent>(rec.event.as_slice()).map_err(corrupt)?;
        Ok((rec, event))
    }
}

/// Walks records in cursor order and checks the whole chain: decoding, consecutive cursors,
/// links and hashes. Returns `(last_cursor, head_hash)`.
pub struct ChainVerifier {
    last_cursor: u64,
    head: Hash,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        ChainVerifier { last_cursor: 0, head: ZERO_HASH }
    }
}

impl ChainVerifier {
    /// Checks the next stored record; `key_cursor` is the cursor its key says.
    pub fn check(&mut self, key_cursor: u64, bytes: &[u8]) -> Result<Entry, JournalError> {
        let expected = self.last_cursor + 1;
        if key_cursor != expected {
            return Err(JournalError::Missing { cursor: expected });
        }
        let rec = JournalRecord::decode(key_cursor, bytes)?;
        self.check_record(&rec)
    }

    /// Checks the next decoded record.
    pub fn check_record(&mut self, rec: &JournalRecord) -> Result<Entry, JournalError> {
        let expected = self.last_cursor + 1;
        if rec.cursor != expected {
            return Err(JournalError::Missing { cursor: expected });
        }
        let entry = rec.verify()?;
        if rec.prev_hash != self.head {
            return Err(JournalError::BrokenLink { cursor: rec.cursor, prev: self.last_cursor });
        }
        self.last_cursor = rec.cursor;
        self.head = rec.hash;
        Ok(entry)
    }

    pub fn last_cursor(&self) -> u64 {
        self.last_cursor
    }

    pub fn head(&self) -> Hash {
        self.head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(n: u64) -> Event {
        Event::Blocked { user_id: format!("user{n}"), target: "target".into() }
    }

    fn chain(n: u64) -> Vec<JournalRecord> {
        let mut prev = ZERO_HASH;
        (1..=n)
            .map(|c| {
                let r = JournalRecord::new(c, 1000 + c, prev, &ev(c));
                prev = r.hash;
                r
            })
            .collect()
    }

    #[test]
    fn a_good_chain_verifies() {
        let mut v = ChainVerifier::default();
        for r in chain(5) {
            v.check(r.cursor, &codec::encode(&r)).unwrap();
        }
        assert_eq!(v.last_cursor(), 5);
    }

    #[test]
    fn a_flipped_bit_in_a_stored_entry_is_refused_where_it_is_read() {
        let rec = &chain(3)[1];
        let good = codec::encode(rec);
        let mut scratch = EntryScratch::default();
        assert!(scratch.access(2, &good).is_ok());
        // A bit of the event bytes (the last one is inside the archived event), flipped in the
        // stored record: still a valid archive, but no longer the entry that was hashed.
        let mut bad = rec.clone();
        let last = bad.event.len() - 1;
        bad.event[last] ^= 0x04;
        let err = scratch.access(2, &codec::encode(&bad)).map(|_| ()).unwrap_err();
        assert_eq!(err, JournalError::HashMismatch { cursor: 2 });
    }

    #[test]
    fn tampering_is_caught_at_the_right_cursor() {
        let recs = chain(5);
        // changed event byte
        let mut bad = recs.clone();
        let last = bad[2].event.len() - 1;
        bad[2].event[last] ^= 0x01;
        let mut v = ChainVerifier::default();
        let err = bad.iter().map(|r| v.check_record(r)).find_map(|r| r.err()).unwrap();
        assert_eq!(err.cursor(), Some(3));
        // deleted entry
        let mut v = ChainVerifier::default();
        let err = recs.iter().filter(|r| r.cursor != 2).map(|r| v.check_record(r)).find_map(|r| r.err()).unwrap();
        assert_eq!(err, JournalError::Missing { cursor: 2 });
        // swapped pair
        let mut swapped = recs.clone();
        swapped.swap(1, 2);
        let mut v = ChainVerifier::default();
        let err = swapped.iter().map(|r| v.check_record(r)).find_map(|r| r.err()).unwrap();
        assert_eq!(err.cursor(), Some(2));
    }
}
