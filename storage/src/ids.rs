//! Identifiers: user ids, group ids and conversation ids, with their validation and parsing.
//!
//! A conversation id on the wire is `d:<a>:<b>` (direct, `a < b` in byte order) or
//! `g:<group_id>`. Parsing is the only place these strings are interpreted.

use std::fmt;

/// Maximum and minimum user id length (`^[a-z0-9_]{3,32}$`).
pub const USER_ID_MIN: usize = 3;
pub const USER_ID_MAX: usize = 32;

/// True when `id` matches `^[a-z0-9_]{3,32}$`.
pub fn is_valid_user_id(id: &str) -> bool {
    (USER_ID_MIN..=USER_ID_MAX).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A parsed conversation id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConversationId {
    /// Direct conversation between two distinct users, stored with `a < b`.
    Direct { a: String, b: String },
    /// The conversation of a group.
    Group(u64),
}

impl ConversationId {
    /// The direct conversation between two users, in canonical order.
    pub fn direct(x: &str, y: &str) -> Self {
        if x < y {
            ConversationId::Direct { a: x.to_owned(), b: y.to_owned() }
        } else {
            ConversationId::Direct { a: y.to_owned(), b: x.to_owned() }
        }
    }

    /// Parses a wire id; `None` when it is not a well-formed direct or group id.
    pub fn parse(s: &str) -> Option<Self> {
        if let Some(rest) = s.strip_prefix("d:") {
            let (a, b) = rest.split_once(':')?;
            if is_valid_user_id(a) && is_valid_user_id(b) && a < b {
                return Some(ConversationId::Direct { a: a.to_owned(), b: b.to_owned() });
            }
            return None;
        }
        if let Some(rest) = s.strip_prefix("g:") {
            return parse_group_id(rest).map(ConversationId::Group);
        }
        None
    }

    /// For a direct conversation, the other participant; `None` when `user` is not in it.
    pub fn peer_of(&self, user: &str) -> Option<&str> {
        match self {
            ConversationId::Direct { a, b } if a == user => Some(b),
            ConversationId::Direct { a, b } if b == user => Some(a),
            _ => None,
        }
    }

    pub fn is_group(&self) -> bool {
        matches!(self, ConversationId::Group(_))
    }
}

impl fmt::Display for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConversationId::Direct { a, b } => write!(f, "d:{a}:{b}"),
            ConversationId::Group(g) => write!(f, "g:{g}"),
        }
    }
}

/// Parses a group id as it appears on the wire (a decimal string, no leading zeros).
pub fn parse_group_id(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|g| *g > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids() {
        assert!(is_valid_user_id("abc"));
        assert!(is_valid_user_id("a_1_b"));
        assert!(!is_valid_user_id("ab"));
        assert!(!is_valid_user_id("Abc"));
        assert!(!is_valid_user_id("a-bc"));
        assert!(!is_valid_user_id(&"a".repeat(33)));
    }

    #[test]
    fn conversation_ids() {
        assert_eq!(ConversationId::direct("bob", "alice").to_string(), "d:alice:bob");
        assert_eq!(ConversationId::parse("d:alice:bob"), Some(ConversationId::direct("alice", "bob")));
        assert_eq!(ConversationId::parse("d:bob:alice"), None, "a must sort before b");
        assert_eq!(ConversationId::parse("d:alice:alice"), None);
        assert_eq!(ConversationId::parse("g:12"), Some(ConversationId::Group(12)));
        assert_eq!(ConversationId::parse("g:012"), None);
        assert_eq!(ConversationId::parse("g:0"), None);
        assert_eq!(ConversationId::parse("x:1"), None);
        assert_eq!(ConversationId::direct("alice", "bob").peer_of("alice"), Some("bob"));
    }
}
