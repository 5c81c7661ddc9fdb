//! Deciding friend requests, friendships and blocks.

use super::{
    are_friends, blocked_either, events, invalid, reject, require_active_peer, require_user, unchanged, Decided,
    MAX_NOTE_CHARS,
};
use crate::event::Event;
use crate::keys::{self, Tree};
use crate::outcome::Reply;
use crate::records::FriendRequestRecord;
use crate::rejection::Rejection;
use crate::tx::Tx;

pub(super) fn request(tx: &Tx, from: &str, to: &str, note: &str) -> Decided {
    if from == to {
        return invalid("you cannot befriend yourself");
    }
    if note.chars().count() > MAX_NOTE_CHARS {
        return invalid(format!("note is longer than {MAX_NOTE_CHARS} characters"));
    }
    require_user(tx, to)?;
    require_active_peer(tx, to)?;
    if blocked_either(tx, from, to)? {
        return reject(Rejection::Blocked);
    }
    if are_friends(tx, from, to)? {
        return reject(Rejection::AlreadyFriends);
    }
    if tx.contains(Tree::FromToFriendRequest, &keys::pair(to, from))? {
        // They already asked us: a mutual request makes friends at once.
        return events(vec![friend_added(from, to)]);
    }
    if let Some(existing) = tx.get_rec::<FriendRequestRecord>(Tree::FromToFriendRequest, &keys::pair(from, to))? {
        return unchanged(Reply::FriendRequest {
            from: from.to_owned(),
            to: to.to_owned(),
            note: existing.note,
            ts: existing.ts,
        });
    }
    events(vec![Event::FriendRequested { from: from.to_owned(), to: to.to_owned(), note: note.to_owned() }])
}

pub(super) fn accept(tx: &Tx, user_id: &str, from: &str) -> Decided {
    require_request(tx, from, user_id)?;
    if blocked_either(tx, from, user_id)? {
        return reject(Rejection::Blocked);
    }
    events(vec![friend_added(from, user_id)])
}

pub(super) fn reject_request(tx: &Tx, user_id: &str, from: &str) -> Decided {
    require_request(tx, from, user_id)?;
    events(vec![Event::FriendRequestRejected { from: from.to_owned(), to: user_id.to_owned() }])
}

pub(super) fn remove(tx: &Tx, user_id: &str, other: &str) -> Decided {
    if !are_friends(tx, user_id, other)? {
        return reject(Rejection::NotFound(format!("{other} is not your friend")));
    }
    let (a, b) = ordered(user_id, other);
    events(vec![Event::FriendRemoved { a, b }])
}

pub(super) fn block(tx: &Tx, user_id: &str, target: &str) -> Decided {
    if user_id == target {
        return invalid("you cannot block yourself");
    }
    require_user(tx, target)?;
    if tx.contains(Tree::UserIdTargetBlock, &keys::pair(user_id, target))? {
        return unchanged(Reply::Done);
    }
    events(vec![Event::Blocked { user_id: user_id.to_owned(), target: target.to_owned() }])
}

pub(super) fn unblock(tx: &Tx, user_id: &str, target: &str) -> Decided {
    if !tx.contains(Tree::UserIdTargetBlock, &keys::pair(user_id, target))? {
        return unchanged(Reply::Done);
    }
    events(vec![Event::Unblocked { user_id: user_id.to_owned(), target: target.to_owned() }])
}

/// `not_found` unless `from` has a pending request to `to`.
fn require_request(tx: &Tx, from: &str, to: &str) -> Result<(), super::Refused> {
    if !tx.contains(Tree::FromToFriendRequest, &keys::pair(from, to))? {
        return reject(Rejection::NotFound(format!("no pending request from {from}")));
    }
    Ok(())
}

fn friend_added(x: &str, y: &str) -> Event {
    let (a, b) = ordered(x, y);
    Event::FriendAdded { a, b }
}

fn ordered(x: &str, y: &str) -> (String, String) {
    if x < y {
        (x.to_owned(), y.to_owned())
    } else {
        (y.to_owned(), x.to_owned())
    }
}
