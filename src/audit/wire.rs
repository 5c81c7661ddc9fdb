//! Export lines back into journal entries, through the wire crate's types: the inverse of
//! `parley_wire::storage::journal_entry`.
//!
//! An export line is `{cursor, ts, prev_hash, hash, event:{type, ...}}`, a
//! [`parley_wire::JournalEntry`]. Parsing is strict: a line is accepted only if rendering the
//! parsed entry gives back exactly the same JSON value, so no field of a line can change (or be
//! added, or go missing) without being noticed, even one that the event does not store (a
//! `group_created` member's `role`, a message's `revoked`). Whether the parsed event re-encodes
//! to the line's `hash` is checked by the caller (see [`super::verify::ExportChain`]).

use parley_storage::Entry;
use parley_wire::storage::{entry_from_journal, journal_entry};
use parley_wire::JournalEntry;
use serde::Deserialize;
use serde_json::Value;

/// Parses one export line (already JSON) into an entry. The `Err` says what is wrong with it.
pub fn entry_from_json(v: &Value) -> Result<Entry, String> {
    if !v.is_object() {
        return Err("not a JSON object".into());
    }
    let parsed = JournalEntry::deserialize(v).map_err(|e| e.to_string())?;
    let entry = entry_from_journal(parsed).map_err(|e| e.to_string())?;
    let canonical = parley_wire::canonical_value(&journal_entry(&entry)).map_err(|e| e.to_string())?;
    if canonical != *v {
        return Err(format!("not in canonical form (expected {canonical})"));
    }
    Ok(entry)
}

/// The cursor a line claims, if it has one (to name it in errors about the rest of the line).
pub fn claimed_cursor(v: &Value) -> Option<u64> {
    v.get("cursor").and_then(Value::as_u64)
}

/// Every event type name, as in `Event::type_name` (for validating `--type`): the wire
/// crate's update types.
pub fn event_types() -> &'static [String] {
    parley_wire::update::type_names()
}

#[cfg(test)]
mod tests {
    use super::*;
    use parley_storage::command::Role;
    use parley_storage::journal::JournalRecord;
    use parley_storage::{Event, RemoveReason};

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
            let line = parley_wire::canonical_text(&journal_entry(&entry)).unwrap();
            let parsed = entry_from_json(&serde_json::from_str(&line).unwrap()).unwrap();
            assert_eq!(parsed, entry);
            assert_eq!(JournalRecord::new(parsed.cursor, parsed.ts, parsed.prev_hash, &parsed.event).hash, rec.hash);
            types.insert(ev.type_name());
            prev = rec.hash;
        }
        assert_eq!(types.len(), event_types().len());
        assert!(types.iter().all(|t| event_types().iter().any(|e| e == t)));
    }

    #[test]
    fn fields_the_event_does_not_store_are_still_checked() {
        let ev =
            Event::GroupCreated { group_id: 3, name: "g".into(), owner: "alice".into(), members: vec!["bob".into()] };
        let rec = JournalRecord::new(1, 5, parley_storage::journal::ZERO_HASH, &ev);
        let good = parley_wire::canonical_value(&journal_entry(&rec.verify().unwrap())).unwrap();
        assert!(entry_from_json(&good).is_ok());
        let mut bad = good.clone();
        bad["event"]["group"]["members"][1]["role"] = "admin".into();
        assert!(entry_from_json(&bad).unwrap_err().contains("canonical"));
        let mut extra = good.clone();
        extra["event"]["note"] = "x".into();
        assert!(entry_from_json(&extra).is_err());
        let mut missing = good;
        missing.as_object_mut().unwrap().remove("ts");
        assert_eq!(entry_from_json(&missing).unwrap_err(), "missing field `ts`");
    }
}
