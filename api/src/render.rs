//! JSON wire shapes of the contract (Message, Conversation, Group, Update) built from storage
//! records and journal entries. The only place storage types become JSON.

use parley_storage::ids::ConversationId;
use parley_storage::records::{GroupRecord, MessageRecord};
use parley_storage::{ConversationSummary, Entry, Event, Store, StoreError};
use serde_json::{json, Value};

pub fn message(m: &MessageRecord) -> Value {
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

/// An entry as a sync update: `{cursor, ts, type, ...payload}`. Messages are shown as they are
/// now (a revoked message's body is not served again).
pub fn update(store: &Store, e: &Entry) -> Result<Value, StoreError> {
    let mut v = event_payload(&e.event);
    if let Event::MessageSent { conversation_id, seq, .. } = &e.event {
        if let Some(current) = store.message(conversation_id, *seq)? {
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
    Ok(v)
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
    }
}

/// A journal entry for audit (admin journal, export): `{cursor, ts, prev_hash, hash, event}`
/// where `event` is `{type, ...payload}` exactly as journaled (bodies before any revoke).
pub fn journal_entry(e: &Entry) -> Value {
    let mut event = event_payload(&e.event);
    event["type"] = json!(e.event.type_name());
    match &e.event {
        Event::UserRegistered { password_hash, .. } => event["password_hash"] = json!(password_hash),
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
