//! rkyv encoding of every stored record (journal entries, raft log payloads, projections).
//!
//! Owns the one rule for reading bytes back: copy into an aligned buffer and validate with
//! `bytecheck` before use. sled hands back unaligned slices and a torn or tampered record must
//! surface as a [`CodecError`], never as a panic or undefined behaviour.

use rkyv::api::high::{HighDeserializer, HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

/// A record that could not be decoded: the bytes are corrupt or of another type.
#[derive(Debug, thiserror::Error)]
#[error("corrupt record: {0}")]
pub struct CodecError(pub String);

/// Encodes a value into rkyv bytes.
pub fn encode<T>(value: &T) -> Vec<u8>
where
    T: for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>,
{
    // Serialising into a growable in-memory buffer has no failure mode for our types (no
    // external resources, no size limits), so an error here is a programming bug.
    #[allow(clippy::expect_used)]
    rkyv::to_bytes::<rancor::Error>(value).expect("rkyv serialisation into memory cannot fail").into_vec()
}

/// Decodes and validates rkyv bytes read back from storage or the network.
pub fn decode<T>(bytes: &[u8]) -> Result<T, CodecError>
where
    T: Archive,
    T::Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>> + Deserialize<T, HighDeserializer<rancor::Error>>,
{
    let mut aligned = AlignedVec::<16>::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    rkyv::from_bytes::<T, rancor::Error>(&aligned).map_err(|e| CodecError(e.to_string()))
}

/// A reusable aligned buffer for reading many records in a row in place: the same
/// copy-and-validate rule as [`decode`], without an allocation per record or deserialising.
#[derive(Default)]
pub struct Scratch(AlignedVec<16>);

impl Scratch {
    /// Validates `bytes` as an archived `T` and gives a view of it, valid until the next use.
    pub fn access<T>(&mut self, bytes: &[u8]) -> Result<&T, CodecError>
    where
        T: rkyv::Portable + for<'a> CheckBytes<HighValidator<'a, rancor::Error>>,
    {
        self.0.clear();
        self.0.extend_from_slice(bytes);
        rkyv::access::<T, rancor::Error>(&self.0).map_err(|e| CodecError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
    struct Sample {
        id: u64,
        name: String,
        tags: Vec<String>,
    }

    #[test]
    fn round_trips_from_unaligned_bytes() {
        let value = Sample { id: 7, name: "alice".into(), tags: vec!["x".into()] };
        let bytes = encode(&value);
        // Shift by one byte to prove decode does not rely on the caller's alignment.
        let mut shifted = vec![0u8];
        shifted.extend_from_slice(&bytes);
        assert_eq!(decode::<Sample>(&shifted[1..]).unwrap(), value);
    }

    #[test]
    fn corrupt_bytes_are_an_error_not_a_panic() {
        let bytes = encode(&Sample { id: 1, name: "bob".into(), tags: vec![] });
        let truncated = &bytes[..bytes.len() / 2];
        assert!(decode::<Sample>(truncated).is_err());
        assert!(decode::<Sample>(&[0xff; 3]).is_err());
    }

    #[test]
    fn scratch_reads_in_place_like_decode() {
        let mut scratch = Scratch::default();
        for (i, value) in [
            Sample { id: 7, name: "a".into(), tags: vec!["x".into()] },
            Sample { id: 8, name: "longer name".into(), tags: vec![] },
        ]
        .into_iter()
        .enumerate()
        {
            let bytes = encode(&value);
            let mut shifted = vec![0u8; i + 1];
            shifted.extend_from_slice(&bytes);
            let archived = scratch.access::<ArchivedSample>(&shifted[i + 1..]).unwrap();
            assert_eq!(archived.id.to_native(), value.id);
            assert_eq!(archived.name.as_str(), value.name);
            let back: Sample = rkyv::deserialize::<Sample, rancor::Error>(archived).unwrap();
            assert_eq!(back, value);
        }
        assert!(scratch.access::<ArchivedSample>(&[0xff; 3]).is_err());
        let bytes = encode(&Sample { id: 1, name: "bob".into(), tags: vec![] });
        assert!(scratch.access::<ArchivedSample>(&bytes[..bytes.len() / 2]).is_err());
    }
}
