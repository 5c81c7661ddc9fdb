//! Whole-state snapshots: every tree (journal, projections, meta) in one self-checking blob,
//! as the raft state machine builds and installs them today.
//!
//! Being replaced by snapshots that point into the journal (the raft crate); kept until that
//! lands. A blob is installed only if it is of this storage format ([`crate::migrate`]): its
//! projection records are copied as they are, so a blob of another format would be misread.
//!
//! Blob layout: `PARLEYSNAP1\n`, then records of `(tree index u8, key len u32 BE, key, value
//! len u32 BE, value)` in [`Tree::ALL`] order, then a SHA-256 of everything before it.

use sha2::{Digest, Sha256};

use crate::journal::ChainVerifier;
use crate::keys::{self, Tree};
use crate::migrate::{self, FormatError};
use crate::store::{Store, StoreError};

const SNAPSHOT_MAGIC: &[u8] = b"PARLEYSNAP1\n";

impl Store {
    /// Serialises every tree into one blob (see the module doc for its layout).
    pub fn export_snapshot(&self) -> Result<Vec<u8>, StoreError> {
        let mut out = Vec::new();
        out.extend_from_slice(SNAPSHOT_MAGIC);
        for t in Tree::ALL {
            for kv in self.tree(t).iter() {
                let (k, v) = kv?;
                out.push(t.index() as u8);
                out.extend_from_slice(&(k.len() as u32).to_be_bytes());
                out.extend_from_slice(&k);
                out.extend_from_slice(&(v.len() as u32).to_be_bytes());
                out.extend_from_slice(&v);
            }
        }
        let digest: [u8; 32] = Sha256::digest(&out).into();
        out.extend_from_slice(&digest);
        Ok(out)
    }

    /// Replaces every tree with the contents of a snapshot from [`Store::export_snapshot`].
    /// The blob is checked (checksum, framing, storage format, journal chain) before anything
    /// is replaced.
    pub fn install_snapshot(&self, data: &[u8]) -> Result<(), StoreError> {
        let bad = |why: &str| StoreError::Corrupt(format!("snapshot: {why}"));
        if data.len() < SNAPSHOT_MAGIC.len() + 32 || !data.starts_with(SNAPSHOT_MAGIC) {
            return Err(bad("not a parley snapshot"));
        }
        let (body, sum) = data.split_at(data.len() - 32);
        let digest: [u8; 32] = Sha256::digest(body).into();
        if digest.as_slice() != sum {
            return Err(bad("checksum mismatch"));
        }
        let mut records: Vec<Vec<(&[u8], &[u8])>> = vec![Vec::new(); Tree::ALL.len()];
        let mut rest = &body[SNAPSHOT_MAGIC.len()..];
        let take = |rest: &mut &[u8], n: usize| -> Result<Vec<u8>, StoreError> {
            if rest.len() < n {
                return Err(bad("truncated"));
            }
            let (a, b) = rest.split_at(n);
            *rest = b;
            Ok(a.to_vec())
        };
        let mut owned: Vec<(usize, Vec<u8>, Vec<u8>)> = Vec::new();
        while !rest.is_empty() {
            let t = take(&mut rest, 1)?[0] as usize;
            if t >= Tree::ALL.len() {
                return Err(bad("unknown tree"));
            }
            let kl = read_u32(&take(&mut rest, 4)?);
            let k = take(&mut rest, kl)?;
            let vl = read_u32(&take(&mut rest, 4)?);
            let v = take(&mut rest, vl)?;
            owned.push((t, k, v));
        }
        for (t, k, v) in &owned {
            records[*t].push((k.as_slice(), v.as_slice()));
        }
        let format = records[Tree::Meta.index()].iter().find(|(k, _)| *k == migrate::META_FORMAT.as_bytes());
        match migrate::parse_version(format.map(|(_, v)| *v))? {
            Some(migrate::FORMAT_VERSION) => {}
            found => return Err(FormatError::Snapshot { found }.into()),
        }
        // The journal inside must be a valid chain before we trust it.
        let mut verifier = ChainVerifier::default();
        for (k, v) in &records[Tree::CursorEntry.index()] {
            let cursor = keys::trailing_u64(k).ok_or_else(|| bad("journal key"))?;
            verifier.check(cursor, v)?;
        }
        for t in Tree::ALL {
            let tree = self.tree(t);
            tree.clear()?;
            let mut batch = sled::Batch::default();
            for (k, v) in &records[t.index()] {
                batch.insert(*k, *v);
            }
            tree.apply_batch(batch)?;
        }
        self.db().flush()?;
        self.reload_head()
    }
}

/// A big-endian u32 length from exactly four bytes.
fn read_u32(b: &[u8]) -> usize {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a) as usize
}
