//! Applying friend requests, friendships and blocks: `fromto_friendrequest`, `tofrom_`,
//! `useridpeer_since`, `useridtarget_block`, and both users' personal feeds.

use super::personal;
use crate::keys::{self, Tree};
use crate::outcome::Audience;
use crate::records::FriendRequestRecord;
use crate::tx::Tx;

pub(super) fn requested(tx: &mut Tx, cursor: u64, ts: u64, from: &String, to: &String, note: &str) -> Audience {
    let rec = FriendRequestRecord { note: note.to_owned(), ts };
    tx.put_rec(Tree::FromToFriendRequest, keys::pair(from, to), &rec);
    tx.put(Tree::ToFrom, keys::pair(to, from), Vec::new());
    personal(tx, cursor, &[from, to])
}

pub(super) fn rejected(tx: &mut Tx, cursor: u64, from: &String, to: &String) -> Audience {
    drop_request(tx, from, to);
    personal(tx, cursor, &[from, to])
}

pub(super) fn added(tx: &mut Tx, cursor: u64, ts: u64, a: &String, b: &String) -> Audience {
    drop_request(tx, a, b);
    drop_request(tx, b, a);
    tx.put(Tree::UserIdPeerSince, keys::pair(a, b), ts.to_be_bytes().to_vec());
    tx.put(Tree::UserIdPeerSince, keys::pair(b, a), ts.to_be_bytes().to_vec());
    personal(tx, cursor, &[a, b])
}

pub(super) fn removed(tx: &mut Tx, cursor: u64, a: &String, b: &String) -> Audience {
    tx.remove(Tree::UserIdPeerSince, keys::pair(a, b));
    tx.remove(Tree::UserIdPeerSince, keys::pair(b, a));
    personal(tx, cursor, &[a, b])
}

pub(super) fn blocked(tx: &mut Tx, cursor: u64, ts: u64, user_id: &String, target: &str) -> Audience {
    tx.put(Tree::UserIdTargetBlock, keys::pair(user_id, target), ts.to_be_bytes().to_vec());
    personal(tx, cursor, &[user_id])
}

pub(super) fn unblocked(tx: &mut Tx, cursor: u64, user_id: &String, target: &str) -> Audience {
    tx.remove(Tree::UserIdTargetBlock, keys::pair(user_id, target));
    personal(tx, cursor, &[user_id])
}

fn drop_request(tx: &mut Tx, from: &str, to: &str) {
    tx.remove(Tree::FromToFriendRequest, keys::pair(from, to));
    tx.remove(Tree::ToFrom, keys::pair(to, from));
}
