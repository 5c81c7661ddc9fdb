//! The hot path of sync: an entry written as its update's JSON text straight from the stored
//! (archived) event, without building an [`Update`](crate::update::Update) first, for the
//! types that make up a history (messages, revocations, reads); every other type is written
//! through its typed update.
//!
//! Why by hand: a catch-up renders every update of a user's history; building the typed value
//! (owned strings) and then a sorted `serde_json::Value` cost several times the writing itself
//! (docs/BENCHMARKS.md, "catch-up"). The text is exactly
//! [`canonical_text`](crate::canonical_text) of [`Update::from_entry`](crate::update::Update::from_entry):
//! the tests below hold every update type to that, byte for byte, so this is the typed
//! serialisation's fast writer, not a second definition of the shape.

use parley_storage::event::ArchivedEvent;
use parley_storage::{EntryView, Event, StoreError};

use crate::update::Update;

/// Appends an entry as a sync update, `{cursor, ts, type, ...payload}`, to `out` as JSON text,
/// straight from the stored event. Messages are shown as they are now: a message revoked since
/// (`e.revoked`) has `revoked: true` and its body is not served again. Keys come in byte order,
/// as a `serde_json::Value` (a sorted map) writes them: the text is
/// [`canonical_text`](crate::canonical_text) of the entry's [`Update`](crate::update::Update).
///
/// Messages, revocations and reads (the bulk of any history) are written here by hand; every
/// other type through [`write_typed`]. An error is an entry that cannot be served: its event
/// does not deserialise (a validated archive always does).
pub fn write_update(out: &mut String, e: &EntryView<'_>) -> Result<(), StoreError> {
    let ts = e.ts;
    // Checked before `{` is written: the typed path writes the whole object itself.
    if !matches!(
        e.event,
        ArchivedEvent::MessageSent { .. } | ArchivedEvent::MessageRevoked { .. } | ArchivedEvent::ReadMarked { .. }
    ) {
        return write_typed(out, e, e.event);
    }
    let mut o = Obj::open(out);
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
        // Every other type (friends, blocks, sessions, groups: rare next to messages and reads
        // in a catch-up) went through the typed update itself above, so a new update type
        // needs no code here.
        _ => {}
    }
    o.close();
    Ok(())
}

/// `e` as [`canonical_text`](crate::canonical_text) of its typed [`Update`]: the event read back
/// from its archive, converted as every other answer is ([`crate::storage`]).
fn write_typed(out: &mut String, e: &EntryView<'_>, event: &ArchivedEvent) -> Result<(), StoreError> {
    let event = rkyv::deserialize::<Event, rkyv::rancor::Error>(event)
        .map_err(|err| StoreError::Corrupt(format!("cursor {}: the event does not deserialise: {err}", e.cursor)))?;
    let update = Update::from_event(e.cursor, e.ts, &event, e.revoked);
    // A wire type always serialises (no maps with non-string keys, no custom `Serialize`);
    // were it not to, the entry could not be served, like a corrupt one.
    let text = crate::canonical_text(&update)
        .map_err(|err| StoreError::Corrupt(format!("cursor {}: the update does not serialise: {err}", e.cursor)))?;
    out.push_str(&text);
    Ok(())
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

    fn u64(&mut self, k: &str, v: u64) {
        self.key(k);
        self.out.push_str(itoa::Buffer::new().format(v));
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
pub fn push_json_str(out: &mut String, s: &str) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::update::{Update, UpdateKind};
    use parley_storage::{Command, CommandKind, Entry, Event, RemoveReason, Role, Store};

    /// The reference the tests hold [`write_update`] to: the typed update's canonical text.
    fn typed(e: &Entry, revoked: bool) -> String {
        crate::canonical_text(&Update::from_entry(e, revoked)).unwrap()
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
        write_update(&mut out, &EntryView { cursor: e.cursor, ts: e.ts, event, revoked }).unwrap();
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
    fn written_updates_are_the_typed_serialisation_byte_for_byte() {
        for (i, ev) in every_event().into_iter().enumerate() {
            let e = entry(i as u64 + 1, ev);
            for revoked in [false, true] {
                let text = written(&e, revoked);
                assert_eq!(text, typed(&e, revoked), "{}", e.event.type_name());
                // And it parses back as the very update (the typed shape both ways).
                let back: Update = serde_json::from_str(&text).unwrap();
                assert_eq!(back, Update::from_entry(&e, revoked));
            }
        }
    }

    /// An entry's update with its message read back from the store as it is now (the rendering
    /// sync had before updates were written directly).
    fn update_as_stored(store: &Store, e: &Entry) -> String {
        let mut u = Update::from_entry(e, false);
        if let (Event::MessageSent { conversation_id, seq, .. }, UpdateKind::Message { message }) =
            (&e.event, &mut u.kind)
        {
            if let Some(current) = store.message(conversation_id, *seq).unwrap() {
                *message = crate::message::Message { ts: Some(e.ts), ..crate::message::Message::from(&current) };
            }
        }
        crate::canonical_text(&u).unwrap()
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
                    write_update(&mut text, &v)?;
                    texts.push(text);
                    Ok(())
                })
                .unwrap();
            assert_eq!(texts.len(), entries.len());
            for (text, e) in texts.iter().zip(&entries) {
                let before = update_as_stored(&store, e);
                assert_eq!(*text, before, "{user} cursor {}", e.cursor);
            }
            assert_eq!(seen_revoked, if user == "carol" { 1 } else { 2 }, "{user}");
        }
    }

    /// The tests above cover every update type the wire crate has: a variant added to
    /// `UpdateKind` without a case in `every_event` fails here.
    #[test]
    fn every_update_type_is_covered() {
        let tested: std::collections::BTreeSet<String> =
            every_event().iter().map(|e| e.type_name().to_owned()).collect();
        let typed: std::collections::BTreeSet<String> = crate::update::type_names().iter().cloned().collect();
        assert_eq!(tested, typed);
    }
}
