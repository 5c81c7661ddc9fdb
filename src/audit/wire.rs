//! Export lines back into journal entries: the inverse of `parley_api::render::journal_entry`.
//!
//! An export line is `{cursor, ts, prev_hash, hash, event:{type, ...}}`. Parsing is strict: a
//! line is accepted only if rendering the parsed entry gives back exactly the same JSON value,
//! so no field of a line can change (or be added, or go missing) without being noticed, even
//! one that the event does not store (a `group_created` member's `role`, a message's
//! `revoked`). Whether the parsed event re-encodes to the line's `hash` is checked by the
//! caller (see [`super::verify::ExportChain`]).

use parley_api::render;
use parley_storage::command::Role;
use parley_storage::ids::parse_group_id;
use parley_storage::journal::Hash;
use parley_storage::{Entry, Event, RemoveReason};
use serde_json::{Map, Value};

/// Parses one export line (already JSON) into an entry. The `Err` says what is wrong with it.
pub fn entry_from_json(v: &Value) -> Result<Entry, String> {
    let o = v.as_object().ok_or("not a JSON object")?;
    let entry = Entry {
        cursor: u64_field(o, "cursor")?,
        ts: u64_field(o, "ts")?,
        prev_hash: hash_field(o, "prev_hash")?,
        hash: hash_field(o, "hash")?,
        event: event_from_json(o.get("event").ok_or("no field `event`")?)?,
    };
    if render::journal_entry(&entry) != *v {
        return Err(format!("not in canonical form (expected {})", render::journal_entry(&entry)));
    }
    Ok(entry)
}

/// The cursor a line claims, if it has one (to name it in errors about the rest of the line).
pub fn claimed_cursor(v: &Value) -> Option<u64> {
    v.get("cursor").and_then(Value::as_u64)
}

/// Parses the `event` object of an export line.
pub fn event_from_json(v: &Value) -> Result<Event, String> {
    let o = v.as_object().ok_or("`event` is not an object")?;
    let ty = str_field(o, "type")?;
    let s = |k: &str| str_field(o, k);
    let n = |k: &str| u64_field(o, k);
    let g = || group_field(o, "group_id");
    Ok(match ty.as_str() {
        "user_registered" => Event::UserRegistered {
            user_id: s("user_id")?,
            display_name: s("display_name")?,
            password_hash: s("password_hash")?,
        },
        "session_created" => Event::SessionCreated {
            user_id: s("user_id")?,
            session_id: s("session_id")?,
            device: s("device")?,
            expires_at: n("expires_at")?,
        },
        "session_revoked" => Event::SessionRevoked { user_id: s("user_id")?, session_id: s("session_id")? },
        "friend_request" => Event::FriendRequested { from: s("from")?, to: s("to")?, note: s("note")? },
        "friend_request_rejected" => Event::FriendRequestRejected { from: s("from")?, to: s("to")? },
        "friend_added" => {
            let [a, b] = pair_field(o, "users")?;
            Event::FriendAdded { a, b }
        }
        "friend_removed" => {
            let [a, b] = pair_field(o, "users")?;
            Event::FriendRemoved { a, b }
        }
        "blocked" => Event::Blocked { user_id: s("by")?, target: s("user_id")? },
        "unblocked" => Event::Unblocked { user_id: s("by")?, target: s("user_id")? },
        "message" => {
            let m = o.get("message").and_then(Value::as_object).ok_or("no object `message`")?;
            let reply_to = match m.get("reply_to") {
                None => return Err("no field `message.reply_to`".into()),
                Some(Value::Null) => None,
                Some(r) => Some(r.as_u64().ok_or("`message.reply_to` is not a non-negative integer")?),
            };
            Event::MessageSent {
                conversation_id: str_field(m, "conversation_id")?,
                seq: u64_field(m, "seq")?,
                sender: str_field(m, "sender")?,
                body: str_field(m, "body")?,
                client_msg_id: str_field(m, "client_msg_id")?,
                reply_to,
            }
        }
        "message_revoked" => {
            Event::MessageRevoked { conversation_id: s("conversation_id")?, seq: n("seq")?, by: s("by")? }
        }
        "read" => Event::ReadMarked {
            conversation_id: s("conversation_id")?,
            user_id: s("user_id")?,
            read_seq: n("read_seq")?,
        },
        "group_created" => {
            let grp = o.get("group").and_then(Value::as_object).ok_or("no object `group`")?;
            let members = grp.get("members").and_then(Value::as_array).ok_or("no array `group.members`")?;
            let mut ids = Vec::with_capacity(members.len());
            for m in members {
                let m = m.as_object().ok_or("a member is not an object")?;
                ids.push(str_field(m, "user_id")?);
            }
            if ids.is_empty() {
                return Err("`group.members` is empty (the owner comes first)".into());
            }
            Event::GroupCreated {
                group_id: group_field(grp, "group_id")?,
                name: str_field(grp, "name")?,
                owner: str_field(grp, "owner")?,
                members: ids.split_off(1),
            }
        }
        "group_updated" => {
            Event::GroupUpdated { group_id: g()?, name: s("name")?, mute_all: bool_field(o, "mute_all")? }
        }
        "member_added" => Event::MembersAdded { group_id: g()?, user_ids: str_array(o, "user_ids")?, by: s("by")? },
        "member_removed" => Event::MemberRemoved {
            group_id: g()?,
            user_id: s("user_id")?,
            by: s("by")?,
            reason: match s("reason")?.as_str() {
                "kicked" => RemoveReason::Kicked,
                "left" => RemoveReason::Left,
                other => return Err(format!("unknown reason {other:?}")),
            },
        },
        "member_role" => Event::MemberRoleSet {
            group_id: g()?,
            user_id: s("user_id")?,
            role: match s("role")?.as_str() {
                "owner" => Role::Owner,
                "admin" => Role::Admin,
                "member" => Role::Member,
                other => return Err(format!("unknown role {other:?}")),
            },
        },
        "member_muted" => Event::MemberMuted { group_id: g()?, user_id: s("user_id")?, until_ms: n("until_ms")? },
        "owner_transferred" => Event::OwnerTransferred { group_id: g()?, from: s("from")?, to: s("to")? },
        "group_dismissed" => Event::GroupDismissed { group_id: g()?, by: s("by")? },
        "user_deactivated" => Event::UserDeactivated { user_id: s("user_id")? },
        "user_reactivated" => Event::UserReactivated { user_id: s("user_id")? },
        "password_changed" => Event::PasswordChanged { user_id: s("user_id")?, password_hash: s("password_hash")? },
        other => return Err(format!("unknown event type {other:?}")),
    })
}

/// Every event type name, as in `Event::type_name` (for validating `--type`).
pub const EVENT_TYPES: [&str; 23] = [
    "user_registered",
    "session_created",
    "session_revoked",
    "friend_request",
    "friend_request_rejected",
    "friend_added",
    "friend_removed",
    "blocked",
    "unblocked",
    "message",
    "message_revoked",
    "read",
    "group_created",
    "group_updated",
    "member_added",
    "member_removed",
    "member_role",
    "member_muted",
    "owner_transferred",
    "group_dismissed",
    "user_deactivated",
    "user_reactivated",
    "password_changed",
];

fn str_field(o: &Map<String, Value>, k: &str) -> Result<String, String> {
    match o.get(k) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("`{k}` is not a string")),
        None => Err(format!("no field `{k}`")),
    }
}

fn u64_field(o: &Map<String, Value>, k: &str) -> Result<u64, String> {
    match o.get(k) {
        Some(v) => v.as_u64().ok_or_else(|| format!("`{k}` is not a non-negative integer")),
        None => Err(format!("no field `{k}`")),
    }
}

fn bool_field(o: &Map<String, Value>, k: &str) -> Result<bool, String> {
    match o.get(k) {
        Some(v) => v.as_bool().ok_or_else(|| format!("`{k}` is not a boolean")),
        None => Err(format!("no field `{k}`")),
    }
}

fn group_field(o: &Map<String, Value>, k: &str) -> Result<u64, String> {
    let s = str_field(o, k)?;
    parse_group_id(&s).ok_or_else(|| format!("`{k}` {s:?} is not a group id"))
}

fn str_array(o: &Map<String, Value>, k: &str) -> Result<Vec<String>, String> {
    let arr = o.get(k).and_then(Value::as_array).ok_or_else(|| format!("no array `{k}`"))?;
    arr.iter().map(|v| v.as_str().map(str::to_owned).ok_or_else(|| format!("`{k}` holds a non-string"))).collect()
}

fn pair_field(o: &Map<String, Value>, k: &str) -> Result<[String; 2], String> {
    let v = str_array(o, k)?;
    <[String; 2]>::try_from(v).map_err(|_| format!("`{k}` does not hold exactly two users"))
}

fn hash_field(o: &Map<String, Value>, k: &str) -> Result<Hash, String> {
    let s = str_field(o, k)?;
    let mut h = [0u8; 32];
    hex::decode_to_slice(&s, &mut h).map_err(|_| format!("`{k}` is not 64 hex digits"))?;
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use parley_storage::journal::JournalRecord;

    /// One of every event, with awkward strings.
    pub(crate) fn every_event() -> Vec<Event> {
        let s = |x: &str| x.to_string();
        vec![
            Event::UserRegistered {
                user_id: s("alice"),
                display_name: s("Ålice \"q\" \\ ✓"),
                password_hash: s("$a$h"),
            },
            Event::SessionCreated { user_id: s("alice"), session_id: s("s1"), device: s("phone"), expires_at: 9 },
            Event::SessionRevoked { user_id: s("alice"), session_id: s("s1") },
            Event::FriendRequested { from: s("alice"), to: s("bob"), note: s("") },
            Event::FriendRequestRejected { from: s("alice"), to: s("bob") },
            Event::FriendAdded { a: s("bob"), b: s("alice") },
            Event::FriendRemoved { a: s("alice"), b: s("bob") },
            Event::Blocked { user_id: s("alice"), target: s("bob") },
            Event::Unblocked { user_id: s("alice"), target: s("bob") },
            Event::MessageSent {
                conversation_id: s("d:alice:bob"),
                seq: 1,
                sender: s("alice"),
                body: s("hi\n\u{0}x"),
                client_msg_id: s("c1"),
                reply_to: None,
            },
            Event::MessageSent {
                conversation_id: s("g:1"),
                seq: 2,
                sender: s("bob"),
                body: s("re"),
                client_msg_id: s("c2"),
                reply_to: Some(1),
            },
            Event::MessageRevoked { conversation_id: s("d:alice:bob"), seq: 1, by: s("alice") },
            Event::ReadMarked { conversation_id: s("d:alice:bob"), user_id: s("bob"), read_seq: 1 },
            Event::GroupCreated { group_id: 1, name: s("g"), owner: s("alice"), members: vec![s("bob"), s("carol")] },
            Event::GroupCreated { group_id: 2, name: s("solo"), owner: s("alice"), members: vec![] },
            Event::GroupUpdated { group_id: 1, name: s("g2"), mute_all: true },
            Event::MembersAdded { group_id: 1, user_ids: vec![s("dave")], by: s("alice") },
            Event::MemberRemoved { group_id: 1, user_id: s("dave"), by: s("alice"), reason: RemoveReason::Kicked },
            Event::MemberRemoved { group_id: 1, user_id: s("carol"), by: s("carol"), reason: RemoveReason::Left },
            Event::MemberRoleSet { group_id: 1, user_id: s("bob"), role: Role::Admin },
            Event::MemberRoleSet { group_id: 1, user_id: s("bob"), role: Role::Member },
            Event::MemberMuted { group_id: 1, user_id: s("bob"), until_ms: 77 },
            Event::OwnerTransferred { group_id: 1, from: s("alice"), to: s("bob") },
            Event::GroupDismissed { group_id: 1, by: s("bob") },
            Event::UserDeactivated { user_id: s("bob") },
            Event::UserReactivated { user_id: s("bob") },
            Event::PasswordChanged { user_id: s("bob"), password_hash: s("$argon2id$v=19$x") },
        ]
    }

    #[test]
    fn every_event_round_trips_to_the_same_hash() {
        let mut prev = parley_storage::journal::ZERO_HASH;
        let mut types = std::collections::BTreeSet::new();
        for (i, ev) in every_event().into_iter().enumerate() {
            let rec = JournalRecord::new(i as u64 + 1, 1000 + i as u64, prev, &ev);
            let entry = rec.verify().unwrap();
            let line = serde_json::to_string(&render::journal_entry(&entry)).unwrap();
            let parsed = entry_from_json(&serde_json::from_str(&line).unwrap()).unwrap();
            assert_eq!(parsed, entry);
            assert_eq!(JournalRecord::new(parsed.cursor, parsed.ts, parsed.prev_hash, &parsed.event).hash, rec.hash);
            types.insert(ev.type_name());
            prev = rec.hash;
        }
        assert_eq!(types.len(), EVENT_TYPES.len());
        assert!(types.iter().all(|t| EVENT_TYPES.contains(t)));
    }

    #[test]
    fn fields_the_event_does_not_store_are_still_checked() {
        let ev =
            Event::GroupCreated { group_id: 3, name: "g".into(), owner: "alice".into(), members: vec!["bob".into()] };
        let rec = JournalRecord::new(1, 5, parley_storage::journal::ZERO_HASH, &ev);
        let good = render::journal_entry(&rec.verify().unwrap());
        assert!(entry_from_json(&good).is_ok());
        let mut bad = good.clone();
        bad["event"]["group"]["members"][1]["role"] = "admin".into();
        assert!(entry_from_json(&bad).unwrap_err().contains("canonical"));
        let mut extra = good.clone();
        extra["event"]["note"] = "x".into();
        assert!(entry_from_json(&extra).is_err());
        let mut missing = good;
        missing.as_object_mut().unwrap().remove("ts");
        assert_eq!(entry_from_json(&missing).unwrap_err(), "no field `ts`");
    }
}
