//! The projection digest: one SHA-256 over a canonical encoding of every projection tree (not
//! the journal, not meta), equal on every node and in every replay at the same cursor.
//!
//! The encoding, tree by tree in [`Tree::ALL`] order (empty trees included):
//! `name || 0xff`, then for each record in key order `len(key) u64 BE || key || len(value) u64
//! BE || value`; last, the raw bytes of the group id counter (projection state kept in meta,
//! [`crate::apply::META_NEXT_GROUP`]; nothing when unset).
//!
//! This is the only implementation: the store digests its sled trees and a detached
//! transaction its in-memory state through [`projection_digest`], so they cannot drift apart.

use sha2::{Digest, Sha256};

use crate::journal::Hash;
use crate::keys::Tree;

/// Bytes gathered before each hash update: many tiny updates cost more than the hashing.
const CHUNK: usize = 1 << 16;

/// The digest of the projection records `records`, which must come tree by tree in
/// [`Tree::ALL`] order and in key order within a tree (records of other trees are skipped),
/// and of the group id counter `next_group_id`.
pub(crate) fn projection_digest<K, V, E>(
    records: impl IntoIterator<Item = Result<(Tree, K, V), E>>,
    next_group_id: &[u8],
) -> Result<Hash, E>
where
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let mut trees = Tree::ALL.into_iter().filter(|t| t.is_projection()).peekable();
    let mut h = Sha256::new();
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK * 2);
    // Writes the header of every tree up to and including `upto` not written yet.
    let mut open_until = |buf: &mut Vec<u8>, upto: Option<Tree>| {
        while let Some(&t) = trees.peek() {
            if upto.is_some_and(|u| t > u) {
                break;
            }
            buf.extend_from_slice(t.name().as_bytes());
            buf.push(0xff);
            trees.next();
        }
    };
    let mut current: Option<Tree> = None;
    for record in records {
        let (t, k, v) = record?;
        if !t.is_projection() {
            continue;
        }
        if current != Some(t) {
            debug_assert!(current < Some(t), "projection records out of tree order");
            open_until(&mut buf, Some(t));
            current = Some(t);
        }
        let (k, v) = (k.as_ref(), v.as_ref());
        buf.extend_from_slice(&(k.len() as u64).to_be_bytes());
        buf.extend_from_slice(k);
        buf.extend_from_slice(&(v.len() as u64).to_be_bytes());
        buf.extend_from_slice(v);
        if buf.len() >= CHUNK {
            h.update(&buf);
            buf.clear();
        }
    }
    open_until(&mut buf, None);
    h.update(&buf);
    h.update(next_group_id);
    Ok(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    fn digest(records: &[(Tree, &[u8], &[u8])], next: &[u8]) -> Hash {
        projection_digest(records.iter().map(|&(t, k, v)| Ok::<_, Infallible>((t, k, v))), next).unwrap()
    }

    /// The encoding written out by hand for a small state.
    #[test]
    fn the_encoding_is_pinned() {
        let got = digest(
            &[(Tree::Meta, b"head", b"x"), (Tree::UserIdUser, b"ann", b"1"), (Tree::GroupIdGroup, b"g", b"")],
            &[0, 0, 0, 0, 0, 0, 0, 2],
        );
        let mut want = Vec::new();
        for t in Tree::ALL.into_iter().filter(|t| t.is_projection()) {
            want.extend_from_slice(t.name().as_bytes());
            want.push(0xff);
            let (k, v): (&[u8], &[u8]) = match t {
                Tree::UserIdUser => (b"ann", b"1"),
                Tree::GroupIdGroup => (b"g", b""),
                _ => continue,
            };
            want.extend_from_slice(&(k.len() as u64).to_be_bytes());
            want.extend_from_slice(k);
            want.extend_from_slice(&(v.len() as u64).to_be_bytes());
            want.extend_from_slice(v);
        }
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 2]);
        let want: Hash = Sha256::digest(&want).into();
        assert_eq!(got, want);
    }

    #[test]
    fn every_byte_counts() {
        let base = digest(&[(Tree::UserIdUser, b"ann", b"1")], b"");
        assert_ne!(base, digest(&[(Tree::UserIdUser, b"ann", b"2")], b""));
        assert_ne!(base, digest(&[(Tree::UserIdConv, b"ann", b"1")], b""));
        assert_ne!(base, digest(&[(Tree::UserIdUser, b"ann", b"1")], b"\x01"));
        assert_ne!(base, digest(&[], b""));
    }
}
