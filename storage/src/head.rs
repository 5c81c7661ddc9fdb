//! The journal head: the last cursor, its hash and its ts, stored as one fixed-size record in
//! the `meta` tree under `head`.
//!
//! The head moves in the same transaction as the journal entries and projections it covers, so
//! it is the applied cursor: everything up to it is in the projections.

use crate::journal::{Hash, ZERO_HASH};
use crate::keys;
use crate::store::StoreError;

/// Meta key of the head record.
pub(crate) const META_HEAD: &str = "head";

/// Bytes of a stored head: cursor u64 BE, hash (32 bytes), ts u64 BE.
const HEAD_LEN: usize = 48;

/// The journal head: last cursor, its hash and ts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Head {
    pub cursor: u64,
    pub hash: Hash,
    pub ts: u64,
}

impl Head {
    /// The head of an empty journal.
    pub const EMPTY: Head = Head { cursor: 0, hash: ZERO_HASH, ts: 0 };

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(HEAD_LEN);
        v.extend_from_slice(&self.cursor.to_be_bytes());
        v.extend_from_slice(&self.hash);
        v.extend_from_slice(&self.ts.to_be_bytes());
        v
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Head, StoreError> {
        if b.len() != HEAD_LEN {
            return Err(StoreError::Corrupt("head record has the wrong length".into()));
        }
        // The length check above makes both 8-byte slices whole.
        let cursor = keys::trailing_u64(&b[..8]).unwrap_or_default();
        let mut hash = ZERO_HASH;
        hash.copy_from_slice(&b[8..40]);
        let ts = keys::trailing_u64(&b[40..]).unwrap_or_default();
        Ok(Head { cursor, hash, ts })
    }

    /// The stored head, or [`Head::EMPTY`] when none is stored yet.
    pub(crate) fn from_stored(b: Option<&[u8]>) -> Result<Head, StoreError> {
        b.map_or(Ok(Head::EMPTY), Head::decode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_is_pinned_and_round_trips() {
        let head = Head { cursor: 258, hash: [7; 32], ts: 1 };
        let bytes = head.encode();
        assert_eq!(bytes.len(), HEAD_LEN);
        assert_eq!(&bytes[..8], &[0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(&bytes[40..], &[0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(Head::decode(&bytes).unwrap(), head);
        assert!(Head::decode(&bytes[1..]).is_err());
        assert_eq!(Head::from_stored(None).unwrap(), Head::EMPTY);
    }
}
