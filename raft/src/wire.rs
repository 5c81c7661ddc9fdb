//! The binary encoding of every raft RPC body between nodes.
//!
//! Owns one decision: what bytes travel on `/raft/*` (except `/raft/write`, a forwarded client
//! command, which is the API's). Every body, request and answer alike, is
//!
//! ```text
//! [ WIRE_VERSION: u8 ][ postcard encoding of the value ... ]
//! ```
//!
//! postcard is a compact, non-self-describing serde format: openraft's RPC types derive serde,
//! so their binary form needs no mirror types, and byte strings (journal pages) go as raw
//! bytes behind a varint length, never as JSON arrays of numbers.
//!
//! **Version mismatch.** A node refuses a body whose first byte is not its own
//! [`WIRE_VERSION`] with [`WireError::Version`], which names both versions; the inbound route
//! answers it with 400 and that text, and the sending node logs it on every attempt. A body
//! from a parley that still spoke JSON starts with `{` and is named as such. Two nodes of
//! different wire versions therefore never misread each other: they refuse, loudly, until the
//! cluster runs one version (roll an upgrade by replacing nodes one at a time only between
//! releases with the same `WIRE_VERSION`; the release notes say when it changes).
//!
//! Invariant: decoding is total: a short, truncated or garbled body is a [`WireError`], never
//! a panic, and trailing bytes after the value are refused.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::snapshot::Manifest;
use crate::types::{SnapshotMeta, Vote};

/// The raft wire version this build speaks. Bump it with any change to an RPC type (ours or
/// openraft's, e.g. on an openraft upgrade).
///
/// v3: request ids in every command batch and the request table in snapshot manifests (the
/// signed envelope of `crate::envelope` changed at the same release).
pub const WIRE_VERSION: u8 = 3;

/// Why a body could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("empty raft body")]
    Empty,
    #[error("raft wire version mismatch: this node speaks v{ours}, the peer sent v{theirs}; run one parley version across the cluster")]
    Version { ours: u8, theirs: u8 },
    #[error(
        "raft body is JSON (a parley from before wire v{WIRE_VERSION}); run one parley version across the cluster"
    )]
    Json,
    #[error("raft body does not decode: {0}")]
    Decode(postcard::Error),
    #[error("raft body has {0} bytes after its value")]
    Trailing(usize),
    #[error("raft body does not encode: {0}")]
    Encode(postcard::Error),
}

/// `[WIRE_VERSION] + postcard(value)`.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, WireError> {
    let out = vec![WIRE_VERSION];
    postcard::to_extend(value, out).map_err(WireError::Encode)
}

/// The value of a body made by [`encode`], refusing other versions and trailing bytes.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, WireError> {
    let (&version, rest) = body.split_first().ok_or(WireError::Empty)?;
    if version != WIRE_VERSION {
        return Err(if version == b'{' {
            WireError::Json
        } else {
            WireError::Version { ours: WIRE_VERSION, theirs: version }
        });
    }
    let (value, tail) = postcard::take_from_bytes(rest).map_err(WireError::Decode)?;
    if !tail.is_empty() {
        return Err(WireError::Trailing(tail.len()));
    }
    Ok(value)
}

/// Decodes a value that a v2 parley encoded (records it left in the state db; never a body).
pub fn decode_v2<T: DeserializeOwned>(body: &[u8]) -> Result<T, WireError> {
    match body.split_first() {
        Some((2, rest)) => {
            let (value, tail) = postcard::take_from_bytes(rest).map_err(WireError::Decode)?;
            if !tail.is_empty() {
                return Err(WireError::Trailing(tail.len()));
            }
            Ok(value)
        }
        Some((&theirs, _)) => Err(WireError::Version { ours: WIRE_VERSION, theirs }),
        None => Err(WireError::Empty),
    }
}

/// `/raft/snapshot`: the leader hands a follower a snapshot manifest; the follower pulls what
/// it lacks of the journal (see [`crate::snapshot`]) and answers when it is installed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotRequest {
    pub vote: Vote,
    pub meta: SnapshotMeta,
    pub manifest: Manifest,
}

/// `/raft/journal`: a page of stored journal records from `from` (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRequest {
    pub from: u64,
    /// At most this many entries (the server caps it at [`MAX_PAGE_ENTRIES`]).
    pub limit: u32,
}

/// Most entries in one journal page.
pub const MAX_PAGE_ENTRIES: u32 = 2048;
/// A page stops growing once its records reach this many bytes (at least one entry is sent).
pub const MAX_PAGE_BYTES: usize = 4 << 20;

/// The answer to a [`PageRequest`]: consecutive journal entries as stored, in cursor order;
/// empty when the serving node's journal ends before `from`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    pub entries: Vec<PageEntry>,
}

/// One stored journal record (`parley_storage::JournalRecord`, rkyv bytes) and its cursor. The
/// receiver validates and chain-checks every byte; nothing in a page is trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageEntry {
    pub cursor: u64,
    #[serde(with = "serde_bytes_compat")]
    pub record: Vec<u8>,
}

/// Byte strings as serde bytes (one length and the raw bytes) rather than a sequence of u8.
mod serde_bytes_compat {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
                while let Some(b) = seq.next_element()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_bytes(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let page = Page { entries: vec![PageEntry { cursor: 7, record: vec![1, 2, 3, 255] }] };
        let body = encode(&page).unwrap();
        assert_eq!(body[0], WIRE_VERSION);
        // version + entries len + cursor + record len + 4 raw bytes: no per-byte overhead.
        assert_eq!(body.len(), 1 + 1 + 1 + 1 + 4);
        assert_eq!(decode::<Page>(&body).unwrap(), page);

        let mut other = body.clone();
        other[0] = 2;
        assert!(matches!(decode::<Page>(&other), Err(WireError::Version { ours: WIRE_VERSION, theirs: 2 })));
        assert_eq!(decode_v2::<Page>(&other).unwrap(), page, "a v2 record still reads");
        assert!(matches!(decode::<Page>(br#"{"entries":[]}"#), Err(WireError::Json)));
        assert!(matches!(decode::<Page>(&[]), Err(WireError::Empty)));
        assert!(matches!(decode::<Page>(&body[..body.len() - 1]), Err(WireError::Decode(_))));
        let mut long = body.clone();
        long.push(0);
        assert!(matches!(decode::<Page>(&long), Err(WireError::Trailing(1))));
    }

    #[test]
    fn the_version_message_names_both_versions() {
        let e = decode::<Page>(&[9, 0]).unwrap_err().to_string();
        assert!(e.contains("v3") && e.contains("v9"), "{e}");
    }
}
