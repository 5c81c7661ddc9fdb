//! Checksummed framing of every value this crate writes to sled.
//!
//! sled has open reports of torn or damaged values after abrupt kills, and rkyv's validation
//! only proves bytes are *well formed*, not that they are the bytes written. So every value in
//! the `raft_*` trees is framed as
//!
//! ```text
//! [ version: u8 = 1 ][ crc32 (IEEE) of payload: u32 big-endian ][ payload ... ]
//! ```
//!
//! and [`open`] refuses a frame whose version is unknown or whose checksum does not match.
//! Invariant: a refused frame is reported as an error (which stops the node), never skipped.

/// The only frame layout written so far.
pub const VERSION: u8 = 1;
/// Bytes before the payload: version + checksum.
pub const HEADER_LEN: usize = 5;

/// Why a stored value could not be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("record too short: {0} bytes")]
    TooShort(usize),
    #[error("unknown record version {0}")]
    UnknownVersion(u8),
    #[error("record checksum mismatch: stored {stored:08x}, computed {computed:08x}")]
    Checksum { stored: u32, computed: u32 },
}

/// Frames `payload` for storage.
pub fn seal(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.push(VERSION);
    out.extend_from_slice(&crc32fast::hash(payload).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Checks a stored frame and returns its payload.
pub fn open(record: &[u8]) -> Result<&[u8], FrameError> {
    let (header, payload) = match record.split_at_checked(HEADER_LEN) {
        Some(parts) => parts,
        None => return Err(FrameError::TooShort(record.len())),
    };
    if header[0] != VERSION {
        return Err(FrameError::UnknownVersion(header[0]));
    }
    let stored = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    let computed = crc32fast::hash(payload);
    if stored != computed {
        return Err(FrameError::Checksum { stored, computed });
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_version_then_big_endian_crc_then_payload() {
        let framed = seal(b"abc");
        assert_eq!(framed[0], 1);
        assert_eq!(&framed[1..5], &crc32fast::hash(b"abc").to_be_bytes());
        assert_eq!(&framed[5..], b"abc");
        assert_eq!(open(&framed), Ok(&b"abc"[..]));
    }

    #[test]
    fn damaged_frames_are_refused() {
        let mut framed = seal(b"payload");
        framed[7] ^= 0x01;
        assert!(matches!(open(&framed), Err(FrameError::Checksum { .. })));
        assert_eq!(open(&[1, 0, 0]), Err(FrameError::TooShort(3)));
        let mut versioned = seal(b"x");
        versioned[0] = 9;
        assert_eq!(open(&versioned), Err(FrameError::UnknownVersion(9)));
    }
}
