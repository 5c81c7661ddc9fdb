//! The sled trees and the byte layout of their keys: the one place that lists them.
//!
//! Trees are named `<key>_<value>`. Integers in keys are big-endian so byte order is numeric
//! order; user and conversation ids never contain `0x00`, which separates key parts.
//!
//! | tree | key | value |
//! |---|---|---|
//! | `meta` | name (utf-8) | raw bytes: `head` ([`crate::head`]), `format` ([`crate::migrate`]), counters, raft metadata |
//! | `cursor_entry` | cursor u64 | [`crate::journal::JournalRecord`] (the only copy of a message's body) |
//! | `userid_user` | user_id | [`crate::records::UserRecord`] |
//! | `sessionid_session` | session_id | [`crate::records::SessionRecord`] |
//! | `useridsessionid_` | user_id 0 session_id | empty |
//! | `fromto_friendrequest` | from 0 to | [`crate::records::FriendRequestRecord`] |
//! | `tofrom_` | to 0 from | empty (incoming index) |
//! | `useridpeer_since` | user_id 0 peer | ts u64 (stored both ways) |
//! | `useridtarget_block` | blocker 0 target | ts u64 |
//! | `conv_meta` | conversation_id | [`crate::records::ConversationRecord`] |
//! | `convseq_message` | conversation_id 0 seq u64 | [`crate::records::MessageRecord`]: cursor u64, revoked u8 |
//! | `senderclientmsgid_cursor` | sender 0 client_msg_id | cursor u64 of the `message` entry |
//! | `convuserid_member` | conversation_id 0 user_id | [`crate::records::MemberRecord`] (active members) |
//! | `useridconv_` | user_id 0 conversation_id | empty (a user's active conversations) |
//! | `useridconvfrom_until` | user_id 0 conversation_id 0 from u64 | until u64 (`u64::MAX` = open) |
//! | `convcursor_` | conversation_id 0 cursor u64 | empty (the conversation's feed) |
//! | `useridcursor_` | user_id 0 cursor u64 | empty (a user's personal feed) |
//! | `groupid_group` | group_id u64 | [`crate::records::GroupRecord`] |
//! | `requestid_outcome` | node u64 + nonce 16 B (a [`crate::requests::RequestId`]) | JSON `Recorded`: its sequence number and first outcome ([`crate::requests`]) |
//! | `requestseq_requestid` | sequence u64 | the request id recorded under it (for expiry) |
//! | `userid_deactivated` | user_id | ts u64 of the deactivation (present only while deactivated) |
//!
//! `useridconvfrom_until` holds the intervals of journal cursors during which a user belongs to
//! a conversation; sync reads a conversation's feed only inside them. This is what lets one
//! message to a 5,000-member group cost one feed record instead of 5,000.
//!
//! A message's immutable parts (sender, body, ts, client id, reply) are read from its journal
//! entry: `convseq_message` and `senderclientmsgid_cursor` point at it by cursor.

/// Every tree, in a fixed order (the order of the projection digest and of snapshots).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tree {
    Meta,
    CursorEntry,
    UserIdUser,
    SessionIdSession,
    UserIdSessionId,
    FromToFriendRequest,
    ToFrom,
    UserIdPeerSince,
    UserIdTargetBlock,
    ConvMeta,
    ConvSeqMessage,
    SenderClientMsgIdCursor,
    ConvUserIdMember,
    UserIdConv,
    UserIdConvFromUntil,
    ConvCursor,
    UserIdCursor,
    GroupIdGroup,
    RequestIdOutcome,
    RequestSeqRequestId,
    UserIdDeactivated,
}

impl Tree {
    pub const ALL: [Tree; 21] = [
        Tree::Meta,
        Tree::CursorEntry,
        Tree::UserIdUser,
        Tree::SessionIdSession,
        Tree::UserIdSessionId,
        Tree::FromToFriendRequest,
        Tree::ToFrom,
        Tree::UserIdPeerSince,
        Tree::UserIdTargetBlock,
        Tree::ConvMeta,
        Tree::ConvSeqMessage,
        Tree::SenderClientMsgIdCursor,
        Tree::ConvUserIdMember,
        Tree::UserIdConv,
        Tree::UserIdConvFromUntil,
        Tree::ConvCursor,
        Tree::UserIdCursor,
        Tree::GroupIdGroup,
        Tree::RequestIdOutcome,
        Tree::RequestSeqRequestId,
        Tree::UserIdDeactivated,
    ];

    /// The sled tree name.
    pub fn name(self) -> &'static str {
        match self {
            Tree::Meta => "meta",
            Tree::CursorEntry => "cursor_entry",
            Tree::UserIdUser => "userid_user",
            Tree::SessionIdSession => "sessionid_session",
            Tree::UserIdSessionId => "useridsessionid_",
            Tree::FromToFriendRequest => "fromto_friendrequest",
            Tree::ToFrom => "tofrom_",
            Tree::UserIdPeerSince => "useridpeer_since",
            Tree::UserIdTargetBlock => "useridtarget_block",
            Tree::ConvMeta => "conv_meta",
            Tree::ConvSeqMessage => "convseq_message",
            Tree::SenderClientMsgIdCursor => "senderclientmsgid_cursor",
            Tree::ConvUserIdMember => "convuserid_member",
            Tree::UserIdConv => "useridconv_",
            Tree::UserIdConvFromUntil => "useridconvfrom_until",
            Tree::ConvCursor => "convcursor_",
            Tree::UserIdCursor => "useridcursor_",
            Tree::GroupIdGroup => "groupid_group",
            Tree::RequestIdOutcome => "requestid_outcome",
            Tree::RequestSeqRequestId => "requestseq_requestid",
            Tree::UserIdDeactivated => "userid_deactivated",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// Projection trees: everything rebuilt by replay (the digest covers these). The request
    /// table is not one: it remembers raft requests, not journal facts (snapshots carry it).
    pub fn is_projection(self) -> bool {
        !matches!(self, Tree::Meta | Tree::CursorEntry | Tree::RequestIdOutcome | Tree::RequestSeqRequestId)
    }
}

pub const SEP: u8 = 0;

/// `a 0 b`
pub fn pair(a: &str, b: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(a.len() + b.len() + 1);
    k.extend_from_slice(a.as_bytes());
    k.push(SEP);
    k.extend_from_slice(b.as_bytes());
    k
}

/// `a 0` — the prefix of every `pair(a, _)` / `with_u64(a, _)` key.
pub fn prefix(a: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(a.len() + 1);
    k.extend_from_slice(a.as_bytes());
    k.push(SEP);
    k
}

/// `a 0 n(be)`
pub fn with_u64(a: &str, n: u64) -> Vec<u8> {
    let mut k = prefix(a);
    k.extend_from_slice(&n.to_be_bytes());
    k
}

/// `a 0 b 0 n(be)`
pub fn triple(a: &str, b: &str, n: u64) -> Vec<u8> {
    let mut k = pair(a, b);
    k.push(SEP);
    k.extend_from_slice(&n.to_be_bytes());
    k
}

pub fn u64_key(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

/// Reads a trailing big-endian u64 from a key or value.
pub fn trailing_u64(bytes: &[u8]) -> Option<u64> {
    let start = bytes.len().checked_sub(8)?;
    let arr: [u8; 8] = bytes[start..].try_into().ok()?;
    Some(u64::from_be_bytes(arr))
}

/// The part of a `pair` key after the first separator.
pub fn second(bytes: &[u8]) -> Option<&str> {
    let pos = bytes.iter().position(|b| *b == SEP)?;
    std::str::from_utf8(&bytes[pos + 1..]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_layouts_are_pinned() {
        assert_eq!(pair("alice", "bob"), b"alice\0bob".to_vec());
        assert_eq!(with_u64("d:a:b", 1), b"d:a:b\0\0\0\0\0\0\0\0\x01".to_vec());
        assert_eq!(triple("alice", "g:1", 258), b"alice\0g:1\0\0\0\0\0\0\0\x01\x02".to_vec());
        assert_eq!(trailing_u64(&with_u64("x", 42)), Some(42));
        assert_eq!(second(&pair("alice", "bob")), Some("bob"));
    }

    #[test]
    fn big_endian_keys_sort_numerically() {
        assert!(with_u64("c", 255) < with_u64("c", 256));
        assert!(u64_key(9) < u64_key(10));
    }

    /// Tree names are part of the storage format: renaming one is a new format
    /// ([`crate::migrate`]).
    #[test]
    fn tree_names_are_pinned() {
        let names = Tree::ALL.map(Tree::name);
        assert_eq!(
            names,
            [
                "meta",
                "cursor_entry",
                "userid_user",
                "sessionid_session",
                "useridsessionid_",
                "fromto_friendrequest",
                "tofrom_",
                "useridpeer_since",
                "useridtarget_block",
                "conv_meta",
                "convseq_message",
                "senderclientmsgid_cursor",
                "convuserid_member",
                "useridconv_",
                "useridconvfrom_until",
                "convcursor_",
                "useridcursor_",
                "groupid_group",
                "requestid_outcome",
                "requestseq_requestid",
                "userid_deactivated",
            ]
        );
    }

    #[test]
    fn tree_names_are_unique() {
        let mut names: Vec<_> = Tree::ALL.iter().map(|t| t.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Tree::ALL.len());
        for (i, t) in Tree::ALL.iter().enumerate() {
            assert_eq!(t.index(), i);
        }
    }
}
