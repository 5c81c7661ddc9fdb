//! The whole projection state in memory, for a detached [`crate::tx::Tx`]
//! ([`crate::store::Store::begin_detached`]): offline replay builds it without touching sled.
//!
//! One hash map per tree makes point reads and writes O(1) whatever the size (a single ordered
//! map of millions of keys spends its time in cache misses). Ordered access is needed only by
//! `apply`'s prefix scans (a few trees, rare events) and by the digest: each tree gets an
//! ordered key index the first time it is scanned, maintained from then on; the digest sorts.
//! The digest itself is [`crate::digest`]'s, the one the store computes.
//!
//! Invariant: holds exactly what the store would hold after committing, so there are no
//! tombstones: a removed key is simply absent.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::convert::Infallible;
use std::hash::{BuildHasherDefault, Hasher};

use crate::journal::Hash;
use crate::keys::Tree;
use crate::tx::KeyValue;

/// A fast non-cryptographic hasher for keys we wrote ourselves (the Fx hash of rustc, with
/// its final rotation so the high bits hashbrown groups by are mixed). Never exposed to
/// untrusted input that could aim for collisions: replay keys come from a verified journal.
#[derive(Default, Clone, Copy)]
struct FxHasher {
    hash: u64,
}

const FX_SEED: u64 = 0xf135_7aea_2e62_a9c5;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash.rotate_left(26)
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// Keys up to this many bytes live inside the hash table's slot: comparing a probed key then
/// costs no extra cache miss (nearly every projection key fits).
const INLINE: usize = 46;

/// A key, inline when short. Hashes and compares as its bytes, so maps keyed by it can be
/// queried with a `&[u8]`.
#[derive(Clone)]
enum Key {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl Key {
    fn new(k: Vec<u8>) -> Key {
        if k.len() <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..k.len()].copy_from_slice(&k);
            Key::Inline { len: k.len() as u8, bytes }
        } else {
            Key::Heap(k.into_boxed_slice())
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Key::Inline { len, bytes } => &bytes[..*len as usize],
            Key::Heap(b) => b,
        }
    }
}

impl std::borrow::Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Key {}

impl std::hash::Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Exactly as `[u8]` hashes, as `Borrow` requires.
        self.as_slice().hash(state)
    }
}

#[derive(Default)]
pub(crate) struct MemState {
    trees: Vec<FastMap<Key, Vec<u8>>>,
    /// Ordered keys of the trees scanned so far (built on first scan).
    index: RefCell<Vec<Option<BTreeSet<Vec<u8>>>>>,
}

impl MemState {
    pub(crate) fn new() -> MemState {
        MemState {
            trees: Tree::ALL.iter().map(|_| FastMap::default()).collect(),
            index: RefCell::new(Tree::ALL.iter().map(|_| None).collect()),
        }
    }

    pub(crate) fn get(&self, t: Tree, key: &[u8]) -> Option<Vec<u8>> {
        self.get_ref(t, key).map(<[u8]>::to_vec)
    }

    pub(crate) fn get_ref(&self, t: Tree, key: &[u8]) -> Option<&[u8]> {
        self.trees[t.index()].get(key).map(Vec::as_slice)
    }

    pub(crate) fn put(&mut self, t: Tree, key: Vec<u8>, value: Vec<u8>) {
        let i = t.index();
        match self.trees[i].entry(Key::new(key)) {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                e.insert(value);
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                if let Some(ix) = self.index.get_mut()[i].as_mut() {
                    ix.insert(e.key().as_slice().to_vec());
                }
                e.insert(value);
            }
        }
    }

    pub(crate) fn remove(&mut self, t: Tree, key: &[u8]) {
        let i = t.index();
        if self.trees[i].remove(key).is_some() {
            if let Some(ix) = self.index.get_mut()[i].as_mut() {
                ix.remove(key);
            }
        }
    }

    /// `(key, value)` pairs whose key starts with `prefix`, in key order.
    pub(crate) fn scan_prefix(&self, t: Tree, prefix: &[u8]) -> Vec<KeyValue> {
        let i = t.index();
        let map = &self.trees[i];
        let mut index = self.index.borrow_mut();
        let ix = index[i].get_or_insert_with(|| map.keys().map(|k| k.as_slice().to_vec()).collect());
        ix.range(prefix.to_vec()..)
            .take_while(|k| k.starts_with(prefix))
            .filter_map(|k| map.get(k.as_slice()).map(|v| (k.clone(), v.clone())))
            .collect()
    }

    /// Empties one tree.
    pub(crate) fn clear(&mut self, t: Tree) {
        self.trees[t.index()] = FastMap::default();
        self.index.get_mut()[t.index()] = None;
    }

    /// Number of records held.
    pub(crate) fn len(&self) -> usize {
        self.trees.iter().map(FastMap::len).sum()
    }

    /// The projection digest ([`crate::digest`]) of a store holding exactly this state.
    pub(crate) fn projection_digest(&self) -> Hash {
        let trees: Vec<Tree> = Tree::ALL.into_iter().filter(|t| t.is_projection()).collect();
        let maps = &self.trees;
        let sort = |t: &Tree| {
            let mut kvs: Vec<(&[u8], &[u8])> =
                maps[t.index()].iter().map(|(k, v)| (k.as_slice(), v.as_slice())).collect();
            kvs.sort_unstable_by(|a, b| a.0.cmp(b.0));
            kvs
        };
        let next_group = self.get_ref(Tree::Meta, crate::apply::META_NEXT_GROUP.as_bytes()).unwrap_or_default();
        // Sorting dominates: two threads sort alternate trees, in order, while this one hashes
        // each as it comes.
        std::thread::scope(|s| {
            let lanes: Vec<_> = (0..2)
                .map(|lane| {
                    let (tx, rx) = std::sync::mpsc::sync_channel(1);
                    let mine: Vec<&Tree> = trees.iter().skip(lane).step_by(2).collect();
                    s.spawn(move || {
                        for t in mine {
                            if tx.send(sort(t)).is_err() {
                                return;
                            }
                        }
                    });
                    rx
                })
                .collect();
            let records = trees.iter().enumerate().flat_map(|(i, &t)| {
                // A lane only stops early if it panicked, which `scope` re-raises on exit.
                let kvs = lanes[i % 2].recv().unwrap_or_default();
                kvs.into_iter().map(move |(k, v)| Ok::<_, Infallible>((t, k, v)))
            });
            match crate::digest::projection_digest(records, next_group) {
                Ok(h) => h,
                Err(never) => match never {},
            }
        })
    }

    /// The state as a transaction's write set.
    pub(crate) fn into_writes(self) -> BTreeMap<(Tree, Vec<u8>), Option<Vec<u8>>> {
        let mut out = BTreeMap::new();
        for (t, map) in Tree::ALL.into_iter().zip(self.trees) {
            for (k, v) in map {
                out.insert((t, k.as_slice().to_vec()), Some(v));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    #[test]
    fn short_and_long_keys_read_write_and_scan_in_order() {
        let mut m = MemState::new();
        let long = "x".repeat(INLINE + 1);
        let keys = ["", "a", &"b".repeat(INLINE), long.as_str(), "a\0z", "a\0b", "b"];
        for (i, key) in keys.iter().enumerate() {
            m.put(Tree::ConvMeta, k(key), vec![i as u8]);
        }
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(m.get(Tree::ConvMeta, key.as_bytes()), Some(vec![i as u8]), "{key:?}");
        }
        assert_eq!(m.get(Tree::GroupIdGroup, b"a"), None);
        // The first scan builds the index; later writes keep it current.
        let scan = |m: &MemState| -> Vec<Vec<u8>> {
            m.scan_prefix(Tree::ConvMeta, b"a\0").into_iter().map(|(k, _)| k).collect()
        };
        assert_eq!(scan(&m), vec![k("a\0b"), k("a\0z")]);
        m.put(Tree::ConvMeta, k("a\0m"), vec![9]);
        m.remove(Tree::ConvMeta, b"a\0b");
        m.put(Tree::ConvMeta, k("a\0z"), vec![8]);
        assert_eq!(scan(&m), vec![k("a\0m"), k("a\0z")]);
        assert_eq!(m.scan_prefix(Tree::ConvMeta, b"a\0")[1].1, vec![8]);
        m.remove(Tree::ConvMeta, long.as_bytes());
        assert_eq!(m.get(Tree::ConvMeta, long.as_bytes()), None);
        assert_eq!(m.len(), keys.len() - 1);
    }

    #[test]
    fn the_digest_is_the_committed_stores() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open_path(&dir.path().join("db"), 8 << 20).unwrap();
        let mut tx = store.begin_detached();
        tx.put(Tree::UserIdUser, k("alice"), vec![1, 2, 3]);
        tx.put(Tree::ConvCursor, k(&"g:1\0".repeat(20)), Vec::new());
        tx.put(Tree::ConvCursor, k("d:a:b\0"), Vec::new());
        tx.put(Tree::Meta, k(crate::apply::META_NEXT_GROUP), 2u64.to_be_bytes().to_vec());
        tx.put(Tree::GroupIdGroup, k("x"), vec![7]);
        tx.remove(Tree::GroupIdGroup, k("x"));
        let digest = tx.projection_digest().unwrap();
        tx.commit().unwrap();
        assert_eq!(store.projection_digest().unwrap(), digest);
    }
}
