//! JSON wire shapes of the contract (Message, Conversation, Group, Update) built from storage
//! records and journal entries. The only place storage types become JSON.

use parley_storage::command::ArchivedRole;
use parley_storage::event::{ArchivedEvent, ArchivedRemoveReason};
use parley_storage::ids::ConversationId;
use parley_storage::records::GroupRecord;
use parley_storage::{ConversationSummary, Entry, EntryView, Event, Message, RemoveReason, Role, Store, StoreError};
use serde_json::{json, Value};

pub fn message(m: &Message) -> Value {
    json!({
        "conversation_id": m.conversation_id,
        "seq": m.seq,
        "sender": m.sender,
        "body": m.body,
        "ts": m.ts,
        "client_msg_id": m.client_msg_id,
        "reply_to": m.reply_to,
        "revoked": m.revoked,
    })
}

pub fn conversation(c: &ConversationSummary, user_id: &str, store: &Store) -> Result<Value, StoreError> {
    let mut v = json!({
        "conversation_id": c.conversation_id,
        "max_seq": c.meta.max_seq,
        "read_seq": c.member.read_seq,
        "unread": c.unread(),
        "last_message": c.last_message.as_ref().map(message),
    });
    match &c.conversation {
        ConversationId::Direct { .. } => {
            v["kind"] = json!("direct");
            v["peer"] = json!(c.conversation.peer_of(user_id));
        }
        ConversationId::Group(g) => {
            v["kind"] = json!("group");
            v["group_id"] = json!(g.to_string());
            if let Some(rec) = store.group(*g)? {
                v["name"] = json!(rec.name);
            }
        }
    }
    Ok(v)
}

pub fn group(store: &Store, group_id: u64, rec: &GroupRecord) -> Result<Value, StoreError> {
    let mut members: Vec<Value> = store
        .group_members(group_id)?
        .into_iter()
        .map(|(user_id, m)| {
            json!({"user_id": user_id, "role": m.role.as_str(), "joined_seq": m.joined_seq, "muted_until": m.muted_until})
        })
        .collect();
    members.sort_by(|a, b| a["user_id"].as_str().cmp(&b["user_id"].as_str()));
    Ok(json!({
        "group_id": group_id.to_string(),
        "conversation_id": ConversationId::Group(group_id).to_string(),
        "name": rec.name,
        "owner": rec.owner,
        "mute_all": rec.mute_all,
        "members": members,
    }))
}

/// Appends an entry as a sync update, `{cursor, ts, type, ...payload}`, to `out` as JSON text,
/// straight from the stored event. Messages are shown as they are now: a message revoked since
/// (`e.revoked`) has `revoked: true` and its body is not served again. Keys come in byte order,
/// as a `serde_json::Value` (a sorted map) writes them: the text is [`update_value`]'s.
pub fn write_update(out: &mut String, e: &EntryView<'_>) {
    let mut o = Obj::open(out);
    let ts = e.ts;
    match e.event {
        ArchivedEvent::MessageSent { conversation_id, seq, sender, body, client_msg_id, reply_to } => {
            o.u64("cursor", e.cursor);
            let mut m = o.obj("message");
            m.str("body", if e.revoked { "" } else { body.as_str() });
            m.str("client_msg_id", client_msg_id);
            m.str("conversation_id", conversation_id);
            m.opt_u64("reply_to", reply_to.as_ref().map(|r| r.to_native()));
            m.bool("revoked", e.revoked);
            m.str("sender", sender);
            m.u64("seq", seq.to_native());
            m.u64("ts", ts);
            m.close();
            o.ts_type(ts, "message");
        }
        ArchivedEvent::MessageRevoked { conversation_id, seq, by } => {
            o.str("by", by);
            o.str("conversation_id", conversation_id);
            o.u64("cursor", e.cursor);
            o.u64("seq", seq.to_native());
            o.ts_type(ts, "message_revoked");
        }
        ArchivedEvent::ReadMarked { conversation_id, user_id, read_seq } => {
            o.str("conversation_id", conversation_id);
            o.u64("cursor", e.cursor);
            o.u64("read_seq", read_seq.to_native());
            o.ts_type(ts, "read");
            o.str("user_id", user_id);
        }
        ArchivedEvent::UserRegistered { user_id, display_name, .. } => {
            o.u64("cursor", e.cursor);
            o.str("display_name", display_name);
            o.ts_type(ts, "user_registered");
            o.str("user_id", user_id);
        }
        ArchivedEvent::SessionCreated { user_id, session_id, device, expires_at } => {
            o.u64("cursor", e.cursor);
            o.str("device", device);
            o.u64("expires_at", expires_at.to_native());
            o.str("session_id", session_id);
            o.ts_type(ts, "session_created");
            o.str("user_id", user_id);
        }
        ArchivedEvent::SessionRevoked { user_id, session_id } => {
            o.u64("cursor", e.cursor);
            o.str("session_id", session_id);
            o.ts_type(ts, "session_revoked");
            o.str("user_id", user_id);
        }
        ArchivedEvent::FriendRequested { from, to, note } => {
            o.u64("cursor", e.cursor);
            o.str("from", from);
            o.str("note", note);
            o.str("to", to);
            o.ts_type(ts, "friend_request");
        }
        ArchivedEvent::FriendRequestRejected { from, to } => {
            o.u64("cursor", e.cursor);
            o.str("from", from);
            o.str("to", to);
            o.ts_type(ts, "friend_request_rejected");
        }
        ArchivedEvent::FriendAdded { a, b } => {
            o.u64("cursor", e.cursor);
            o.ts_type(ts, "friend_added");
            o.strs("users", [a.as_str(), b.as_str()]);
        }
        ArchivedEvent::FriendRemoved { a, b } => {
            o.u64("cursor", e.cursor);
            o.ts_type(ts, "friend_removed");
            o.strs("users", [a.as_str(), b.as_str()]);
        }
        ArchivedEvent::Blocked { target, .. } => {
            o.u64("cursor", e.cursor);
            o.ts_type(ts, "blocked");
            o.str("user_id", target);
        }
        ArchivedEvent::Unblocked { target, .. } => {
            o.u64("cursor", e.cursor);
            o.ts_type(ts, "unblocked");
            o.str("user_id", target);
        }
        ArchivedEvent::GroupCreated { group_id, name, owner, members } => {
            let group_id = group_id.to_native();
            o.u64("cursor", e.cursor);
            let mut g = o.obj("group");
            g.str("conversation_id", &ConversationId::Group(group_id).to_string());
            g.u64_str("group_id", group_id);
            g.key("members");
            g.out.push('[');
            let roles =
                std::iter::once((owner.as_str(), "owner")).chain(members.iter().map(|m| (m.as_str(), "member")));
            for (i, (user_id, role)) in roles.enumerate() {
                if i > 0 {
                    g.out.push(',');
                }
                let mut m = Obj::open(g.out);
                m.u64("joined_seq", 0);
                m.str("role", role);
                m.str("user_id", user_id);
                m.close();
            }
            g.out.push(']');
            g.bool("mute_all", false);
            g.str("name", name);
            g.str("owner", owner);
            g.close();
            o.ts_type(ts, "group_created");
        }
        ArchivedEvent::GroupUpdated { group_id, name, mute_all } => {
            o.u64("cursor", e.cursor);
            o.u64_str("group_id", group_id.to_native());
            o.bool("mute_all", *mute_all);
            o.str("name", name);
            o.ts_type(ts, "group_updated");
        }
        ArchivedEvent::MembersAdded { group_id, user_ids, by } => {
            o.str("by", by);
            o.u64("cursor", e.cursor);
            o.u64_str("group_id", group_id.to_native());
            o.ts_type(ts, "member_added");
            o.strs("user_ids", user_ids.iter().map(|u| u.as_str()));
        }
        ArchivedEvent::MemberRemoved { group_id, user_id, by, reason } => {
            o.str("by", by);
            o.u64("cursor", e.cursor);
            o.u64_str("group_id", group_id.to_native());
            o.str(
                "reason",
                match reason {
                    ArchivedRemoveReason::Kicked => RemoveReason::Kicked.as_str(),
                    ArchivedRemoveReason::Left => RemoveReason::Left.as_str(),
                },
            );
            o.ts_type(ts, "member_removed");
            o.str("user_id", user_id);
        }
        ArchivedEvent::MemberRoleSet { group_id, user_id, role } => {
            o.u64("cursor", e.cursor);
            o.u64_str("group_id", group_id.to_native());
            o.str(
                "role",
                match role {
                    ArchivedRole::Owner => Role::Owner.as_str(),
                    ArchivedRole::Admin => Role::Admin.as_str(),
                    ArchivedRole::Member => Role::Member.as_str(),
                },
            );
            o.ts_type(ts, "member_role");
            o.str("user_id", user_id);
        }
        ArchivedEvent::MemberMuted { group_id, user_id, until_ms } => {
            o.u64("cursor", e.cursor);
            o.u64_str("group_id", group_id.to_native());
            o.ts_type(ts, "member_muted");
            o.u64("until_ms", until_ms.to_native());
            o.str("user_id", user_id);
        }
        ArchivedEvent::OwnerTransferred { group_id, from, to } => {
            o.u64("cursor", e.cursor);
            o.str("from", from);
            o.u64_str("group_id", group_id.to_native());
            o.str("to", to);
            o.ts_type(ts, "owner_transferred");
        }
        ArchivedEvent::GroupDismissed { group_id, by } => {
            o.str("by", by);
            o.u64("cursor", e.cursor);
            o.u64_str("group_id", group_id.to_native());
            o.ts_type(ts, "group_dismissed");
        }
        ArchivedEvent::UserDeactivated { user_id } => account(&mut o, e.cursor, ts, "user_deactivated", user_id),
        ArchivedEvent::UserReactivated { user_id } => account(&mut o, e.cursor, ts, "user_reactivated", user_id),
        ArchivedEvent::PasswordChanged { user_id, .. } => account(&mut o, e.cursor, ts, "password_changed", user_id),
    }
    o.close();
}

/// An account event: `{cursor, ts, type, user_id}` (a password hash is never synced).
fn account(o: &mut Obj<'_>, cursor: u64, ts: u64, ty: &str, user_id: &str) {
    o.u64("cursor", cursor);
    o.ts_type(ts, ty);
    o.str("user_id", user_id);
}

/// A JSON object being written into a `String`; the caller gives keys in the order wanted.
struct Obj<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Obj<'a> {
    fn open(out: &'a mut String) -> Self {
        out.push('{');
        Obj { out, first: true }
    }

    fn close(self) {
        self.out.push('}');
    }

    /// `k` is one of our field names: plain ASCII that needs no escaping.
    fn key(&mut self, k: &str) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        self.out.push('"');
        self.out.push_str(k);
        self.out.push_str("\":");
    }

    /// A nested object under `k`; `close` it before writing the next key here.
    fn obj(&mut self, k: &str) -> Obj<'_> {
        self.key(k);
        Obj::open(self.out)
    }

    fn str(&mut self, k: &str, v: &str) {
        self.key(k);
        push_json_str(self.out, v);
    }

    fn strs<S: AsRef<str>>(&mut self, k: &str, vs: impl IntoIterator<Item = S>) {
        self.key(k);
        self.out.push('[');
        for (i, v) in vs.into_iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            push_json_str(self.out, v.as_ref());
        }
        self.out.push(']');
    }

    fn u64(&mut self, k: &str, v: u64) {
        self.key(k);
        self.out.push_str(itoa::Buffer::new().format(v));
    }

    /// A u64 written as a JSON string (group ids).
    fn u64_str(&mut self, k: &str, v: u64) {
        self.key(k);
        self.out.push('"');
        self.out.push_str(itoa::Buffer::new().format(v));
        self.out.push('"');
    }

    fn opt_u64(&mut self, k: &str, v: Option<u64>) {
        match v {
            Some(v) => self.u64(k, v),
            None => {
                self.key(k);
                self.out.push_str("null");
            }
        }
    }

    fn bool(&mut self, k: &str, v: bool) {
        self.key(k);
        self.out.push_str(if v { "true" } else { "false" });
    }

    /// `ts` and `type`, which sort next to each other in every update.
    fn ts_type(&mut self, ts: u64, type_name: &str) {
        self.u64("ts", ts);
        self.str("type", type_name);
    }
}

/// Appends `s` as a JSON string, escaped exactly as `serde_json` does: `"` and `\`, control
/// characters (the short forms `\b \t \n \f \r`, else `\u00XX` in lower-case hex); everything
/// else as is. Runs of plain text are skipped eight bytes at a time.
fn push_json_str(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(s.len() + 2);
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(word) = bytes.get(i..i + 8).and_then(|w| <[u8; 8]>::try_from(w).ok()) {
            if !may_need_escape(u64::from_le_bytes(word)) {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            b'\t' => "\\t",
            b'\n' => "\\n",
            0x0c => "\\f",
            b'\r' => "\\r",
            0x00..=0x1f => "",
            _ => {
                i += 1;
                continue;
            }
        };
        // Every byte escaped is ASCII, so `start..i` falls on character boundaries.
        out.push_str(&s[start..i]);
        if short.is_empty() {
            out.push_str("\\u00");
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0xf) as usize] as char);
        } else {
            out.push_str(short);
        }
        i += 1;
        start = i;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// False only when none of the eight bytes of `w` is below 0x20, `"` or `\` (it may be true
/// when none is: the caller then looks at each byte).
fn may_need_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Some byte below n (n <= 0x80): (w - n*ONES) & !w & HIGH != 0. A zero byte of x: n = 1.
    let below_space = w.wrapping_sub(ONES * 0x20) & !w;
    let q = w ^ (ONES * u64::from(b'"'));
    let quote = q.wrapping_sub(ONES) & !q;
    let b = w ^ (ONES * u64::from(b'\\'));
    let backslash = b.wrapping_sub(ONES) & !b;
    (below_space | quote | backslash) & HIGH != 0
}

/// The payload fields of an event, as in sync (without `cursor`, `ts`, `type`).
pub fn event_payload(ev: &Event) -> Value {
    match ev {
        Event::UserRegistered { user_id, display_name, .. } => {
            json!({"user_id": user_id, "display_name": display_name})
        }
        Event::SessionCreated { user_id, session_id, device, expires_at } => {
            json!({"user_id": user_id, "session_id": session_id, "device": device, "expires_at": expires_at})
        }
        Event::SessionRevoked { user_id, session_id } => json!({"user_id": user_id, "session_id": session_id}),
        Event::FriendRequested { from, to, note } => json!({"from": from, "to": to, "note": note}),
        Event::FriendRequestRejected { from, to } => json!({"from": from, "to": to}),
        Event::FriendAdded { a, b } => json!({"users": [a, b]}),
        Event::FriendRemoved { a, b } => json!({"users": [a, b]}),
        Event::Blocked { target, .. } => json!({"user_id": target}),
        Event::Unblocked { target, .. } => json!({"user_id": target}),
        Event::MessageSent { conversation_id, seq, sender, body, client_msg_id, reply_to } => json!({
            "message": {
                "conversation_id": conversation_id, "seq": seq, "sender": sender, "body": body,
                "client_msg_id": client_msg_id, "reply_to": reply_to, "revoked": false,
            }
        }),
        Event::MessageRevoked { conversation_id, seq, by } => {
            json!({"conversation_id": conversation_id, "seq": seq, "by": by})
        }
        Event::ReadMarked { conversation_id, user_id, read_seq } => {
            json!({"conversation_id": conversation_id, "user_id": user_id, "read_seq": read_seq})
        }
        Event::GroupCreated { group_id, name, owner, members } => {
            let mut ms = vec![json!({"user_id": owner, "role": "owner", "joined_seq": 0})];
            ms.extend(members.iter().map(|m| json!({"user_id": m, "role": "member", "joined_seq": 0})));
            json!({"group": {
                "group_id": group_id.to_string(),
                "conversation_id": ConversationId::Group(*group_id).to_string(),
                "name": name, "owner": owner, "mute_all": false, "members": ms,
            }})
        }
        Event::GroupUpdated { group_id, name, mute_all } => {
            json!({"group_id": group_id.to_string(), "name": name, "mute_all": mute_all})
        }
        Event::MembersAdded { group_id, user_ids, by } => {
            json!({"group_id": group_id.to_string(), "user_ids": user_ids, "by": by})
        }
        Event::MemberRemoved { group_id, user_id, by, reason } => {
            json!({"group_id": group_id.to_string(), "user_id": user_id, "by": by, "reason": reason.as_str()})
        }
        Event::MemberRoleSet { group_id, user_id, role } => {
            json!({"group_id": group_id.to_string(), "user_id": user_id, "role": role.as_str()})
        }
        Event::MemberMuted { group_id, user_id, until_ms } => {
            json!({"group_id": group_id.to_string(), "user_id": user_id, "until_ms": until_ms})
        }
        Event::OwnerTransferred { group_id, from, to } => {
            json!({"group_id": group_id.to_string(), "from": from, "to": to})
        }
        Event::GroupDismissed { group_id, by } => json!({"group_id": group_id.to_string(), "by": by}),
        Event::UserDeactivated { user_id }
        | Event::UserReactivated { user_id }
        | Event::PasswordChanged { user_id, .. } => {
            json!({"user_id": user_id})
        }
    }
}

/// A journal entry for audit (admin journal, export): `{cursor, ts, prev_hash, hash, event}`
/// where `event` is `{type, ...payload}` exactly as journaled (bodies before any revoke).
pub fn journal_entry(e: &Entry) -> Value {
    let mut event = event_payload(&e.event);
    event["type"] = json!(e.event.type_name());
    match &e.event {
        Event::UserRegistered { password_hash, .. } | Event::PasswordChanged { password_hash, .. } => {
            event["password_hash"] = json!(password_hash)
        }
        Event::Blocked { user_id, .. } | Event::Unblocked { user_id, .. } => event["by"] = json!(user_id),
        _ => {}
    }
    json!({
        "cursor": e.cursor,
        "ts": e.ts,
        "prev_hash": hex::encode(e.prev_hash),
        "hash": hex::encode(e.hash),
        "event": event,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use parley_storage::{Command, CommandKind, RemoveReason, Role};

    /// The reference the tests hold [`write_update`] to: an entry as a sync update, as a `Value`.
    fn update_value(e: &Entry, revoked: bool) -> Value {
        let mut v = event_payload(&e.event);
        v["cursor"] = json!(e.cursor);
        v["ts"] = json!(e.ts);
        v["type"] = json!(e.event.type_name());
        if let Some(m) = v.get_mut("message") {
            m["ts"] = json!(e.ts);
            if revoked {
                m["body"] = json!("");
                m["revoked"] = json!(true);
            }
        }
        v
    }

    fn entry(cursor: u64, event: Event) -> Entry {
        Entry { cursor, ts: 1_700_000_000_000 + cursor, prev_hash: [1; 32], hash: [2; 32], event }
    }

    /// `write_update` of an owned entry, through its stored (archived) form.
    fn written(e: &Entry, revoked: bool) -> String {
        let bytes = parley_storage::codec::encode(&e.event);
        let mut scratch = parley_storage::codec::Scratch::default();
        let event = scratch.access::<ArchivedEvent>(&bytes).unwrap();
        let mut out = String::from("prefix ");
        write_update(&mut out, &EntryView { cursor: e.cursor, ts: e.ts, event, revoked });
        out.split_off("prefix ".len())
    }

    const TRICKY: &str = "q\"b\\s/\u{7f} \u{0}\u{1f}\u{8}\t\n\u{c}\r é 中 🦀 </script>";

    #[test]
    fn strings_are_escaped_like_serde_json() {
        let mut all: String = (0u32..0x80).filter_map(char::from_u32).collect();
        all.push_str(TRICKY);
        for s in ["", "plain", TRICKY, &all, "\"", "\\", "a\u{1}b"] {
            let mut out = String::new();
            push_json_str(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).unwrap());
        }
        // Escapes and multi-byte characters at every offset from an eight-byte boundary.
        for special in ["\"", "\\", "\n", "\u{1}", "\u{1f}", "é", "中", "🦀", "\u{7f}", " "] {
            for before in 0..20 {
                for after in 0..12 {
                    let s = format!("{}{special}{}{special}", "a".repeat(before), "b".repeat(after));
                    let mut out = String::new();
                    push_json_str(&mut out, &s);
                    assert_eq!(out, serde_json::to_string(&s).unwrap(), "{s:?}");
                }
            }
        }
        for c in (0u32..0x800).filter_map(char::from_u32) {
            let mut out = String::new();
            push_json_str(&mut out, &c.to_string());
            assert_eq!(out, serde_json::to_string(&c.to_string()).unwrap(), "char {:#x}", c as u32);
        }
    }

    /// Every event type, with awkward strings and extreme numbers.
    fn every_event() -> Vec<Event> {
        let t = || TRICKY.to_owned();
        vec![
            Event::UserRegistered { user_id: "alice".into(), display_name: t(), password_hash: "h".into() },
            Event::SessionCreated { user_id: "alice".into(), session_id: t(), device: t(), expires_at: u64::MAX },
            Event::SessionRevoked { user_id: "alice".into(), session_id: t() },
            Event::FriendRequested { from: "alice".into(), to: "bob".into(), note: t() },
            Event::FriendRequestRejected { from: "alice".into(), to: "bob".into() },
            Event::FriendAdded { a: "alice".into(), b: "bob".into() },
            Event::FriendRemoved { a: "alice".into(), b: "bob".into() },
            Event::Blocked { user_id: "alice".into(), target: "bob".into() },
            Event::Unblocked { user_id: "alice".into(), target: "bob".into() },
            Event::MessageSent {
                conversation_id: "d:alice:bob".into(),
                seq: 7,
                sender: "alice".into(),
                body: t(),
                client_msg_id: t(),
                reply_to: Some(3),
            },
            Event::MessageSent {
                conversation_id: "g:12".into(),
                seq: u64::MAX,
                sender: "bob".into(),
                body: String::new(),
                client_msg_id: String::new(),
                reply_to: None,
            },
            Event::MessageRevoked { conversation_id: "g:12".into(), seq: 1, by: "bob".into() },
            Event::ReadMarked { conversation_id: "d:alice:bob".into(), user_id: "bob".into(), read_seq: 0 },
            Event::GroupCreated { group_id: 12, name: t(), owner: "alice".into(), members: vec![] },
            Event::GroupCreated {
                group_id: u64::MAX,
                name: t(),
                owner: "alice".into(),
                members: vec!["bob".into(), "carol".into()],
            },
            Event::GroupUpdated { group_id: 12, name: t(), mute_all: true },
            Event::MembersAdded { group_id: 12, user_ids: vec![], by: "alice".into() },
            Event::MembersAdded { group_id: 12, user_ids: vec!["bob".into(), "carol".into()], by: "alice".into() },
            Event::MemberRemoved {
                group_id: 12,
                user_id: "bob".into(),
                by: "alice".into(),
                reason: RemoveReason::Kicked,
            },
            Event::MemberRemoved { group_id: 12, user_id: "bob".into(), by: "bob".into(), reason: RemoveReason::Left },
            Event::MemberRoleSet { group_id: 12, user_id: "bob".into(), role: Role::Admin },
            Event::MemberMuted { group_id: 12, user_id: "bob".into(), until_ms: 99 },
            Event::OwnerTransferred { group_id: 12, from: "alice".into(), to: "bob".into() },
            Event::GroupDismissed { group_id: 12, by: "alice".into() },
            Event::UserDeactivated { user_id: "bob".into() },
            Event::UserReactivated { user_id: "bob".into() },
            Event::PasswordChanged { user_id: "bob".into(), password_hash: "$argon2id$x".into() },
        ]
    }

    #[test]
    fn written_updates_are_the_value_rendering_byte_for_byte() {
        for (i, ev) in every_event().into_iter().enumerate() {
            let e = entry(i as u64 + 1, ev);
            for revoked in [false, true] {
                let text = written(&e, revoked);
                assert_eq!(text, serde_json::to_string(&update_value(&e, revoked)).unwrap());
                let _: Value = serde_json::from_str(&text).unwrap();
            }
        }
    }

    /// The rendering sync had before updates were written directly: the event's payload, with
    /// the message read back from the store as it is now.
    fn update_as_before(store: &Store, e: &Entry) -> Value {
        let mut v = event_payload(&e.event);
        if let Event::MessageSent { conversation_id, seq, .. } = &e.event {
            if let Some(current) = store.message(conversation_id, *seq).unwrap() {
                v["message"] = message(&current);
            }
        }
        v["cursor"] = json!(e.cursor);
        v["ts"] = json!(e.ts);
        v["type"] = json!(e.event.type_name());
        if let Event::MessageSent { .. } = &e.event {
            if let Some(m) = v.get_mut("message") {
                m["ts"] = json!(e.ts);
            }
        }
        v
    }

    #[test]
    fn sync_pages_show_messages_as_they_are_now() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_path(dir.path(), 8 << 20).unwrap();
        let send = |sender: &str, conv: &str, n: u64| CommandKind::Send {
            sender: sender.into(),
            conversation_id: conv.into(),
            client_msg_id: format!("{sender}-{n}"),
            body: format!("{TRICKY} {n}"),
            reply_to: (n > 1).then_some(n - 1),
            max_body_bytes: 16_384,
        };
        let reg =
            |u: &str| CommandKind::Register { user_id: u.into(), display_name: u.into(), password_hash: "x".into() };
        let mut cmds = vec![
            reg("alice"),
            reg("bob"),
            reg("carol"),
            CommandKind::FriendRequest { from: "alice".into(), to: "bob".into(), note: TRICKY.into() },
            CommandKind::AcceptFriend { user_id: "bob".into(), from: "alice".into() },
            CommandKind::CreateGroup {
                owner: "alice".into(),
                name: "g".into(),
                members: vec!["bob".into(), "carol".into()],
                max_members: 100,
            },
        ];
        for n in 1..=6 {
            cmds.push(send("alice", "d:alice:bob", n));
            cmds.push(send("bob", "g:1", n));
            if n == 3 {
                cmds.push(CommandKind::Leave { user_id: "carol".into(), group_id: 1 });
            }
        }
        // Carol saw g:1's seq 2 before she left; the revocation after is not hers, but the
        // message is shown to her as it is now.
        cmds.push(CommandKind::Revoke { user_id: "alice".into(), conversation_id: "d:alice:bob".into(), seq: 2 });
        cmds.push(CommandKind::Revoke { user_id: "alice".into(), conversation_id: "g:1".into(), seq: 2 });
        cmds.push(CommandKind::Read { user_id: "bob".into(), conversation_id: "d:alice:bob".into(), seq: 4 });
        let mut tx = store.begin();
        for (i, kind) in cmds.into_iter().enumerate() {
            let out = parley_storage::execute(&mut tx, &Command { ts: 1_000 + i as u64, kind }).unwrap();
            assert!(out.result.is_ok(), "{out:?}");
        }
        tx.commit().unwrap();

        for user in ["alice", "bob", "carol"] {
            let page = store.sync_cursors(user, 0, 1000).unwrap();
            let entries = store.entries(&page.cursors).unwrap();
            let mut texts = Vec::new();
            let mut seen_revoked = 0;
            store
                .visit_entries(&page.cursors, |v| {
                    seen_revoked += usize::from(v.revoked);
                    let mut text = String::new();
                    write_update(&mut text, &v);
                    texts.push(text);
                    Ok(())
                })
                .unwrap();
            assert_eq!(texts.len(), entries.len());
            for (text, e) in texts.iter().zip(&entries) {
                let before = serde_json::to_string(&update_as_before(&store, e)).unwrap();
                assert_eq!(*text, before, "{user} cursor {}", e.cursor);
            }
            assert_eq!(seen_revoked, if user == "carol" { 1 } else { 2 }, "{user}");
        }
    }
}
