//! Projection records: the values stored in the projection trees (see [`crate::keys`]).
//!
//! Each record is rkyv-encoded and validated on read, except [`MessageRecord`], which has a
//! fixed layout of its own. They are storage types, not wire types: the API converts them to
//! JSON at its edge.

use rkyv::{Archive, Deserialize, Serialize};

use crate::codec::CodecError;
use crate::command::Role;

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub display_name: String,
    pub password_hash: String,
    pub created_at: u64,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub user_id: String,
    pub device: String,
    pub created_at: u64,
    pub expires_at: u64,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct FriendRequestRecord {
    pub note: String,
    pub ts: u64,
}

/// The message projection's record of one message (`convseq_message`): where its journal
/// entry is and what has changed since. Everything else about a message (sender, body, ts,
/// client id, reply) is immutable and read from that entry ([`crate::message::Message`]), so a
/// body is stored once on the state side: in the journal.
///
/// Not rkyv: a fixed 9-byte layout, `cursor u64 BE || revoked u8 (0 or 1)`, checked on read
/// (length and flag), so a record of another layout (format 1's, see [`crate::migrate`]) can
/// never be taken for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageRecord {
    /// Journal cursor of the `message` entry.
    pub cursor: u64,
    pub revoked: bool,
}

impl MessageRecord {
    /// Bytes of a stored record.
    pub const LEN: usize = 9;

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[..8].copy_from_slice(&self.cursor.to_be_bytes());
        b[8] = u8::from(self.revoked);
        b
    }

    pub fn decode(b: &[u8]) -> Result<MessageRecord, CodecError> {
        let (cursor, flag) = match b {
            [c @ .., flag] if c.len() == 8 => (c, *flag),
            _ => return Err(CodecError(format!("message record is {} bytes, expected {}", b.len(), Self::LEN))),
        };
        let revoked = match flag {
            0 => false,
            1 => true,
            f => return Err(CodecError(format!("message record has revoked flag {f}"))),
        };
        let mut c = [0u8; 8];
        c.copy_from_slice(cursor);
        Ok(MessageRecord { cursor: u64::from_be_bytes(c), revoked })
    }
}

/// Per-conversation counters.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct ConversationRecord {
    /// Highest message seq (0 = no message yet).
    pub max_seq: u64,
    /// Cursor of the latest entry in this conversation's feed (lets sync skip idle ones).
    pub last_feed_cursor: u64,
    /// Cursor of the latest activity that orders the conversation list (a message, or creation).
    pub activity_cursor: u64,
}

/// A user's membership of a conversation (both direct and group).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct MemberRecord {
    pub role: Role,
    /// The member sees messages with `seq > joined_seq`.
    pub joined_seq: u64,
    pub read_seq: u64,
    /// Muted until this time (ms); 0 = not muted.
    pub muted_until: u64,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct GroupRecord {
    pub name: String,
    pub owner: String,
    pub mute_all: bool,
    pub member_count: u64,
    pub created_at: u64,
    /// A dismissed group keeps its record (and its messages) but has no members.
    pub dismissed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_record_layout_is_pinned() {
        let rec = MessageRecord { cursor: 258, revoked: true };
        assert_eq!(rec.encode(), [0, 0, 0, 0, 0, 0, 1, 2, 1]);
        assert_eq!(MessageRecord::decode(&rec.encode()).unwrap(), rec);
        let live = MessageRecord { cursor: 7, revoked: false };
        assert_eq!(MessageRecord::decode(&live.encode()).unwrap(), live);
        for bad in [&[0u8; 8][..], &[0u8; 10][..], &[0, 0, 0, 0, 0, 0, 0, 1, 2][..], &[][..]] {
            assert!(MessageRecord::decode(bad).is_err(), "{bad:?}");
        }
    }
}
