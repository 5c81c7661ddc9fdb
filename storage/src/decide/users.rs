//! Deciding registrations and sessions.

use super::{
    check_chars, events, invalid, is_deactivated, reject, require_user, unchanged, user_exists, Decided,
    MAX_DEVICE_CHARS, MAX_DISPLAY_NAME_CHARS,
};
use crate::command::MAX_REVOKED_PER_COMMAND;
use crate::event::Event;
use crate::ids::is_valid_user_id;
use crate::keys::{self, Tree};
use crate::outcome::Reply;
use crate::rejection::Rejection;
use crate::tx::Tx;

pub(super) fn register(tx: &Tx, user_id: &str, display_name: &str, password_hash: &str) -> Decided {
    if password_hash.is_empty() {
        return invalid("password hash missing");
    }
    create_user(tx, user_id, display_name, password_hash)
}

/// A registration, or an app backend's account (`password_hash` empty: no password login).
pub(super) fn create_user(tx: &Tx, user_id: &str, display_name: &str, password_hash: &str) -> Decided {
    if !is_valid_user_id(user_id) {
        return invalid("user_id must match ^[a-z0-9_]{3,32}$");
    }
    check_chars("display_name", display_name, MAX_DISPLAY_NAME_CHARS)?;
    if user_exists(tx, user_id)? {
        return reject(Rejection::UserExists);
    }
    events(vec![Event::UserRegistered {
        user_id: user_id.to_owned(),
        display_name: display_name.to_owned(),
        password_hash: password_hash.to_owned(),
    }])
}

pub(super) fn create_session(tx: &Tx, user_id: &str, session_id: &str, device: &str, expires_at: u64) -> Decided {
    require_user(tx, user_id)?;
    if is_deactivated(tx, user_id)? {
        // Decided here, not only at login: a login whose password check passed just before
        // the deactivation committed is refused all the same.
        return reject(Rejection::AccountDeactivated);
    }
    check_chars("device", device, MAX_DEVICE_CHARS)?;
    if session_id.is_empty() || tx.contains(Tree::SessionIdSession, session_id.as_bytes())? {
        return invalid("bad session id");
    }
    events(vec![Event::SessionCreated {
        user_id: user_id.to_owned(),
        session_id: session_id.to_owned(),
        device: device.to_owned(),
        expires_at,
    }])
}

pub(super) fn revoke_session(tx: &Tx, user_id: &str, session_id: &str) -> Decided {
    if !tx.contains(Tree::UserIdSessionId, &keys::pair(user_id, session_id))? {
        return reject(Rejection::NotFound("no such session".into()));
    }
    events(vec![Event::SessionRevoked { user_id: user_id.to_owned(), session_id: session_id.to_owned() }])
}

/// Deactivation: the flag, and the first sessions revoked (the node revokes the rest with
/// [`revoke_all_sessions`]; none can be added meanwhile). Deactivating twice changes nothing.
pub(super) fn deactivate(tx: &Tx, user_id: &str) -> Decided {
    require_user(tx, user_id)?;
    if is_deactivated(tx, user_id)? {
        return unchanged(Reply::Done);
    }
    let mut evs = vec![Event::UserDeactivated { user_id: user_id.to_owned() }];
    evs.extend(revocations(tx, user_id)?);
    events(evs)
}

pub(super) fn reactivate(tx: &Tx, user_id: &str) -> Decided {
    require_user(tx, user_id)?;
    if !is_deactivated(tx, user_id)? {
        return unchanged(Reply::Done);
    }
    events(vec![Event::UserReactivated { user_id: user_id.to_owned() }])
}

/// Revokes up to [`MAX_REVOKED_PER_COMMAND`] sessions; none left changes nothing.
pub(super) fn revoke_all_sessions(tx: &Tx, user_id: &str) -> Decided {
    require_user(tx, user_id)?;
    let evs = revocations(tx, user_id)?;
    if evs.is_empty() {
        return unchanged(Reply::Done);
    }
    events(evs)
}

fn revocations(tx: &Tx, user_id: &str) -> Result<Vec<Event>, super::Refused> {
    let prefix = keys::prefix(user_id);
    let mut evs = Vec::new();
    for (key, _) in tx.scan_prefix(Tree::UserIdSessionId, &prefix)?.into_iter().take(MAX_REVOKED_PER_COMMAND) {
        let session_id = String::from_utf8(key[prefix.len()..].to_vec())
            .map_err(|_| crate::store::StoreError::Corrupt("a session id is not utf-8".into()))?;
        evs.push(Event::SessionRevoked { user_id: user_id.to_owned(), session_id });
    }
    Ok(evs)
}

pub(super) fn set_password(tx: &Tx, user_id: &str, password_hash: &str) -> Decided {
    require_user(tx, user_id)?;
    if password_hash.is_empty() {
        return invalid("password hash missing");
    }
    events(vec![Event::PasswordChanged { user_id: user_id.to_owned(), password_hash: password_hash.to_owned() }])
}
