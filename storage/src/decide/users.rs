//! Deciding registrations and sessions.

use super::{
    check_chars, events, invalid, reject, require_user, user_exists, Decided, MAX_DEVICE_CHARS, MAX_DISPLAY_NAME_CHARS,
};
use crate::event::Event;
use crate::ids::is_valid_user_id;
use crate::keys::{self, Tree};
use crate::rejection::Rejection;
use crate::tx::Tx;

pub(super) fn register(tx: &Tx, user_id: &str, display_name: &str, password_hash: &str) -> Decided {
    if !is_valid_user_id(user_id) {
        return invalid("user_id must match ^[a-z0-9_]{3,32}$");
    }
    check_chars("display_name", display_name, MAX_DISPLAY_NAME_CHARS)?;
    if password_hash.is_empty() {
        return invalid("password hash missing");
    }
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
