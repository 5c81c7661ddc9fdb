//! Applying registrations, accounts and sessions: `userid_user`, `userid_deactivated`,
//! `sessionid_session`, `useridsessionid_`.

use super::personal;
use crate::keys::{self, Tree};
use crate::outcome::Audience;
use crate::records::{SessionRecord, UserRecord};
use crate::store::StoreError;
use crate::tx::Tx;

pub(super) fn registered(tx: &mut Tx, ts: u64, user_id: &str, display_name: &str, password_hash: &str) -> Audience {
    let rec =
        UserRecord { display_name: display_name.to_owned(), password_hash: password_hash.to_owned(), created_at: ts };
    tx.put_rec(Tree::UserIdUser, user_id.as_bytes().to_vec(), &rec);
    Audience::default()
}

pub(super) fn session_created(
    tx: &mut Tx,
    ts: u64,
    user_id: &str,
    session_id: &str,
    device: &str,
    expires_at: u64,
) -> Audience {
    let rec = SessionRecord { user_id: user_id.to_owned(), device: device.to_owned(), created_at: ts, expires_at };
    tx.put_rec(Tree::SessionIdSession, session_id.as_bytes().to_vec(), &rec);
    tx.put(Tree::UserIdSessionId, keys::pair(user_id, session_id), Vec::new());
    Audience::default()
}

pub(super) fn session_revoked(tx: &mut Tx, cursor: u64, user_id: &String, session_id: &str) -> Audience {
    tx.remove(Tree::SessionIdSession, session_id.as_bytes().to_vec());
    tx.remove(Tree::UserIdSessionId, keys::pair(user_id, session_id));
    personal(tx, cursor, &[user_id])
}

/// Deactivation is told to nobody by itself: the user's devices learn it from the
/// `session_revoked` updates of the same command.
pub(super) fn deactivated(tx: &mut Tx, ts: u64, user_id: &str) -> Audience {
    tx.put(Tree::UserIdDeactivated, user_id.as_bytes().to_vec(), ts.to_be_bytes().to_vec());
    Audience::default()
}

pub(super) fn reactivated(tx: &mut Tx, user_id: &str) -> Audience {
    tx.remove(Tree::UserIdDeactivated, user_id.as_bytes().to_vec());
    Audience::default()
}

pub(super) fn password_changed(tx: &mut Tx, user_id: &str, password_hash: &str) -> Result<Audience, StoreError> {
    let mut rec: UserRecord = tx
        .get_rec(Tree::UserIdUser, user_id.as_bytes())?
        .ok_or_else(|| StoreError::Corrupt(format!("password change for an unknown user {user_id}")))?;
    rec.password_hash = password_hash.to_owned();
    tx.put_rec(Tree::UserIdUser, user_id.as_bytes().to_vec(), &rec);
    Ok(Audience::default())
}
