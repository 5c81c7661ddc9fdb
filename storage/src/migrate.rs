//! The storage format version, and the migrations that bring an older data dir up to it.
//!
//! The `meta` tree holds [`META_FORMAT`] = the format as a u64 BE. The formats:
//! - **1** (no `format` record: parley before issue 10): `convseq_message` holds whole
//!   messages (`legacy::MessageRecord`, bodies included) and the idempotency index is
//!   `senderclientmsgid_convseq` (sender 0 client_msg_id → conversation_id 0 seq u64).
//! - **2**: a message's body is stored once on the state side, in its journal entry:
//!   `convseq_message` holds a [`MessageRecord`] (the entry's cursor and the revoked flag) and
//!   the index is `senderclientmsgid_cursor` (→ the entry's cursor).
//!
//! The journal is the same in every format (never rewritten: its hashes and head stay).
//!
//! `upgrade` runs at every [`Store::open`]: the current format opens as is; a store without
//! a `format` record is format 1 and is migrated in place (a new, empty store too: nothing to
//! move, it just gets the record); a newer format is refused with [`FormatError::TooNew`],
//! never guessed at.
//!
//! Migration 1 → 2 is streamed: `BATCH` records per sled transaction, so its memory does not
//! depend on the history's size. Each transaction also records how far it got (messages: the
//! last key rewritten, in meta; the index: records move from the old tree to the new one in
//! the same transaction), so an interrupted migration resumes where it stopped. Every legacy
//! record is checked against the journal entry it names before it is rewritten; one that
//! disagrees stops the open with an error.

use std::ops::Bound;
use std::time::Instant;

use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;

use crate::codec;
use crate::event::Event;
use crate::keys::{self, Tree};
use crate::records::MessageRecord;
use crate::store::{Store, StoreError};

/// The format this code writes.
pub const FORMAT_VERSION: u64 = 2;

/// Meta key of the format version.
pub const META_FORMAT: &str = "format";

/// Meta key of an interrupted 1 → 2 migration's progress: the last `convseq_message` key
/// rewritten.
const META_MESSAGES_DONE: &str = "migrate_2_messages_done";

/// Records per migration transaction.
const BATCH: usize = 4096;

/// Why a store's format cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FormatError {
    #[error(
        "this data dir was written by a newer parley (format {found}); upgrade parley, or export with that \
         version and import (this parley reads formats up to {FORMAT_VERSION})"
    )]
    TooNew { found: u64 },
    #[error("the storage format record is {len} bytes, expected 8")]
    BadRecord { len: usize },
    #[error("storage format {found} does not exist")]
    Unknown { found: u64 },
    #[error("migrating to format {FORMAT_VERSION}: {0}")]
    Migration(String),
}

/// The formats older parleys wrote: read only by the migrations here.
pub(crate) mod legacy {
    use rkyv::{Archive, Deserialize, Serialize};

    /// Format 1's `convseq_message` value: the whole message, body included.
    #[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
    pub struct MessageRecord {
        pub conversation_id: String,
        pub seq: u64,
        pub sender: String,
        pub body: String,
        pub ts: u64,
        pub client_msg_id: String,
        pub reply_to: Option<u64>,
        pub revoked: bool,
        pub cursor: u64,
    }

    /// Format 1's idempotency index: sender 0 client_msg_id → conversation_id 0 seq u64.
    pub const SENDER_CLIENT_MSG_ID_CONV_SEQ: &str = "senderclientmsgid_convseq";
}

/// The stored format: `None` for no record (format 1); a newer format than this code knows is
/// an error.
pub(crate) fn parse_version(stored: Option<&[u8]>) -> Result<Option<u64>, FormatError> {
    let Some(b) = stored else { return Ok(None) };
    let found = keys::trailing_u64(b).filter(|_| b.len() == 8).ok_or(FormatError::BadRecord { len: b.len() })?;
    match found {
        0 => Err(FormatError::Unknown { found }),
        f if f > FORMAT_VERSION => Err(FormatError::TooNew { found }),
        f => Ok(Some(f)),
    }
}

/// Brings `store` to [`FORMAT_VERSION`] (see the module doc). Called by [`Store::open`].
pub(crate) fn upgrade(store: &Store) -> Result<(), StoreError> {
    let meta = store.tree(Tree::Meta);
    match parse_version(meta.get(META_FORMAT)?.as_deref())? {
        Some(FORMAT_VERSION) => Ok(()),
        // Format 1 has no record (and 1 is the only older format).
        _ => migrate_1_to_2(store),
    }
}

fn migrate_1_to_2(store: &Store) -> Result<(), StoreError> {
    let started = Instant::now();
    let db = store.db();
    let fresh = store.tree(Tree::CursorEntry).is_empty()
        && store.tree(Tree::ConvSeqMessage).is_empty()
        && !has_tree(db, legacy::SENDER_CLIENT_MSG_ID_CONV_SEQ)?;
    let messages = rewrite_messages(store)?;
    let index = move_index(store)?;
    let meta = store.tree(Tree::Meta);
    meta.insert(META_FORMAT, &FORMAT_VERSION.to_be_bytes())?;
    meta.remove(META_MESSAGES_DONE)?;
    db.flush()?;
    if fresh {
        tracing::debug!(format = FORMAT_VERSION, "new store");
    } else {
        tracing::info!(
            from = 1,
            to = FORMAT_VERSION,
            messages,
            index_entries = index,
            journal_head = store.head()?.cursor,
            millis = started.elapsed().as_millis() as u64,
            "storage format migrated in place: message bodies now live only in the journal"
        );
    }
    Ok(())
}

fn has_tree(db: &sled::Db, name: &str) -> Result<bool, StoreError> {
    Ok(db.tree_names().iter().any(|n| n.as_ref() == name.as_bytes()))
}

/// Rewrites every format-1 message record as a [`MessageRecord`], in place, resuming after
/// the last key a previous run rewrote. Returns how many it rewrote.
fn rewrite_messages(store: &Store) -> Result<u64, StoreError> {
    let (messages, meta) = (store.tree(Tree::ConvSeqMessage), store.tree(Tree::Meta));
    let mut after = meta.get(META_MESSAGES_DONE)?.map(|k| k.to_vec());
    let mut done = 0u64;
    loop {
        let lo = after.as_ref().map_or(Bound::Unbounded, |k| Bound::Excluded(k.clone()));
        let mut batch = Vec::with_capacity(BATCH);
        for kv in messages.range::<Vec<u8>, _>((lo, Bound::Unbounded)).take(BATCH) {
            let (k, v) = kv?;
            let new = migrate_message(store, &k, &v)?;
            batch.push((k, new));
        }
        let Some((last, _)) = batch.last() else { return Ok(done) };
        let last = last.to_vec();
        transact((messages, meta), |(m, meta)| {
            for (k, v) in &batch {
                m.insert(k, v.as_slice())?;
            }
            meta.insert(META_MESSAGES_DONE, last.as_slice())?;
            Ok(())
        })?;
        done += batch.len() as u64;
        after = Some(last);
    }
}

/// The format-2 record for a format-1 one, once it agrees with the journal entry it names.
fn migrate_message(store: &Store, key: &[u8], value: &[u8]) -> Result<[u8; MessageRecord::LEN], StoreError> {
    let (conv, seq) = split_message_key(key)?;
    let old: legacy::MessageRecord = codec::decode(value)?;
    let disagrees =
        |what: &str| FormatError::Migration(format!("message {conv}/{seq} (journal cursor {}): {what}", old.cursor));
    if old.conversation_id != conv || old.seq != seq {
        return Err(disagrees("the record is not the message its key names").into());
    }
    let rec = store.journal_record(old.cursor)?.ok_or_else(|| disagrees("no such journal entry"))?;
    let Event::MessageSent { conversation_id, seq: ev_seq, sender, body, client_msg_id, reply_to } = rec.entry()?.event
    else {
        return Err(disagrees("the journal entry is not a message").into());
    };
    let same = conversation_id == conv
        && ev_seq == seq
        && sender == old.sender
        && client_msg_id == old.client_msg_id
        && reply_to == old.reply_to
        && rec.ts == old.ts
        // A revoked message's record lost its body; the journal keeps it.
        && (if old.revoked { old.body.is_empty() } else { body == old.body });
    if !same {
        return Err(disagrees("the record and the journal entry differ").into());
    }
    Ok(MessageRecord { cursor: old.cursor, revoked: old.revoked }.encode())
}

/// `conversation_id 0 seq u64` → its parts.
fn split_message_key(key: &[u8]) -> Result<(&str, u64), StoreError> {
    let bad = || StoreError::Corrupt(format!("convseq_message key {key:?} is not conversation 0 seq"));
    let split = key.len().checked_sub(9).ok_or_else(bad)?;
    if key[split] != keys::SEP {
        return Err(bad());
    }
    let conv = std::str::from_utf8(&key[..split]).map_err(|_| bad())?;
    Ok((conv, keys::trailing_u64(key).ok_or_else(bad)?))
}

/// Moves format 1's idempotency index to `senderclientmsgid_cursor`, each value now the
/// message's cursor, then drops the old tree. Returns how many entries moved.
fn move_index(store: &Store) -> Result<u64, StoreError> {
    let db = store.db();
    if !has_tree(db, legacy::SENDER_CLIENT_MSG_ID_CONV_SEQ)? {
        return Ok(0);
    }
    let (old, new) = (db.open_tree(legacy::SENDER_CLIENT_MSG_ID_CONV_SEQ)?, store.tree(Tree::SenderClientMsgIdCursor));
    let mut moved = 0u64;
    loop {
        // What is left in the old tree is what is left to do.
        let mut batch = Vec::with_capacity(BATCH);
        for kv in old.iter().take(BATCH) {
            let (k, convseq) = kv?;
            let cursor = index_cursor(store, &k, &convseq)?;
            batch.push((k, cursor));
        }
        if batch.is_empty() {
            break;
        }
        transact((&old, new), |(old, new)| {
            for (k, cursor) in &batch {
                new.insert(k, &cursor.to_be_bytes())?;
                old.remove(k)?;
            }
            Ok(())
        })?;
        moved += batch.len() as u64;
    }
    drop(old);
    db.drop_tree(legacy::SENDER_CLIENT_MSG_ID_CONV_SEQ)?;
    Ok(moved)
}

/// The cursor of the message a format-1 index entry names, once that message (already
/// migrated) is the sender's message with that client id.
fn index_cursor(store: &Store, key: &[u8], convseq: &[u8]) -> Result<u64, StoreError> {
    let disagrees = || FormatError::Migration(format!("idempotency entry {key:?} does not name its message"));
    let (conv, seq) = split_message_key(convseq)?;
    let msg = store.message(conv, seq)?.ok_or_else(disagrees)?;
    if keys::pair(&msg.sender, &msg.client_msg_id) != key {
        return Err(disagrees().into());
    }
    Ok(msg.cursor)
}

/// Runs `f` as one sled transaction over two trees; its writes are infallible apart from
/// sled's own errors.
fn transact<'a>(
    trees: (&'a sled::Tree, &'a sled::Tree),
    f: impl Fn((&TransactionalTree, &TransactionalTree)) -> Result<(), ConflictableTransactionError<()>>,
) -> Result<(), StoreError> {
    trees.transaction(|(a, b)| f((a, b))).map_err(|e| match e {
        TransactionError::Storage(e) => StoreError::Sled(e),
        TransactionError::Abort(()) => StoreError::Corrupt("migration transaction aborted".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Command, CommandKind};
    use crate::journal::JournalRecord;
    use crate::outcome::{Outcome, Reply};
    use crate::query::HistoryQuery;

    const USERS: [&str; 3] = ["alice", "bob", "carol"];

    fn temp_db() -> sled::Db {
        sled::Config::new().temporary(true).open().unwrap()
    }

    fn run(store: &Store, ts: u64, kind: CommandKind) -> Outcome {
        let mut tx = store.begin();
        let out = crate::execute(&mut tx, &Command { ts, kind }).unwrap();
        assert!(out.result.is_ok(), "{:?}", out.result);
        tx.commit().unwrap();
        out
    }

    fn send(sender: &str, conv: &str, id: &str, reply_to: Option<u64>) -> CommandKind {
        CommandKind::Send {
            sender: sender.into(),
            conversation_id: conv.into(),
            client_msg_id: id.into(),
            body: format!("body of {id} ✓"),
            reply_to,
            max_body_bytes: 1024,
        }
    }

    /// A store of the current format with direct and group messages, replies, revokes (own
    /// and by a moderator) and read markers.
    fn live() -> Store {
        let store = Store::open(temp_db()).unwrap();
        let mut ts = 1_000;
        let mut at = |kind| {
            ts += 10;
            run(&store, ts, kind)
        };
        for u in USERS {
            at(CommandKind::Register { user_id: u.into(), display_name: u.into(), password_hash: "h".into() });
        }
        for peer in ["bob", "carol"] {
            at(CommandKind::FriendRequest { from: "alice".into(), to: peer.into(), note: String::new() });
            at(CommandKind::AcceptFriend { user_id: peer.into(), from: "alice".into() });
        }
        for i in 0..12u64 {
            let (sender, conv) = if i % 3 == 0 { ("carol", "d:alice:carol") } else { ("bob", "d:alice:bob") };
            at(send(sender, conv, &format!("m{i}"), (i > 4).then_some(1)));
        }
        at(CommandKind::Revoke { user_id: "bob".into(), conversation_id: "d:alice:bob".into(), seq: 2 });
        at(CommandKind::Read { user_id: "alice".into(), conversation_id: "d:alice:bob".into(), seq: 5 });
        at(CommandKind::CreateGroup {
            owner: "alice".into(),
            name: "team".into(),
            members: vec!["bob".into()],
            max_members: 10,
        });
        for i in 0..5 {
            at(send(if i % 2 == 0 { "bob" } else { "alice" }, "g:1", &format!("g{i}"), None));
        }
        at(CommandKind::Revoke { user_id: "alice".into(), conversation_id: "g:1".into(), seq: 1 });
        at(CommandKind::AddMembers {
            actor: "alice".into(),
            group_id: 1,
            user_ids: vec!["carol".into()],
            max_members: 10,
        });
        at(send("carol", "g:1", "g5", Some(5)));
        store
    }

    /// `store`'s state written into a fresh db the way format 1 stored it: whole messages in
    /// `convseq_message`, the old index tree, no format record. Optionally as an interrupted
    /// migration left it: the first `messages_done` message records rewritten already (and
    /// the progress record saying so), the first `index_moved` index entries moved.
    fn as_format_1(store: &Store, messages_done: usize, index_moved: usize) -> sled::Db {
        let db = temp_db();
        let old_index = db.open_tree(legacy::SENDER_CLIENT_MSG_ID_CONV_SEQ).unwrap();
        for t in Tree::ALL {
            let tree = db.open_tree(t.name()).unwrap();
            for (i, kv) in store.tree(t).iter().enumerate() {
                let (k, v) = kv.unwrap();
                match t {
                    Tree::Meta if *k == *META_FORMAT.as_bytes() => {}
                    Tree::ConvSeqMessage if i >= messages_done => {
                        let (conv, seq) = split_message_key(&k).unwrap();
                        let m = store.message(conv, seq).unwrap().unwrap();
                        let old = legacy::MessageRecord {
                            conversation_id: m.conversation_id,
                            seq: m.seq,
                            sender: m.sender,
                            body: m.body,
                            ts: m.ts,
                            client_msg_id: m.client_msg_id,
                            reply_to: m.reply_to,
                            revoked: m.revoked,
                            cursor: m.cursor,
                        };
                        tree.insert(k, codec::encode(&old)).unwrap();
                    }
                    Tree::SenderClientMsgIdCursor if i >= index_moved => {
                        let cursor = keys::trailing_u64(&v).unwrap();
                        let rec = store.journal_record(cursor).unwrap().unwrap();
                        let Event::MessageSent { conversation_id, seq, .. } = rec.entry().unwrap().event else {
                            panic!("the index points at a message");
                        };
                        old_index.insert(k, keys::with_u64(&conversation_id, seq)).unwrap();
                    }
                    _ => {
                        tree.insert(k, v).unwrap();
                    }
                }
            }
        }
        if messages_done > 0 {
            let (last, _) = store.tree(Tree::ConvSeqMessage).iter().nth(messages_done - 1).unwrap().unwrap();
            db.open_tree("meta").unwrap().insert(META_MESSAGES_DONE, last).unwrap();
        }
        db
    }

    /// Everything the API reads, per user and conversation.
    fn answers(store: &Store) -> Vec<String> {
        let mut out = Vec::new();
        for u in USERS {
            let list = store.conversations(u).unwrap();
            out.push(format!(
                "{u} conversations {:?}",
                list.iter().map(|c| (&c.conversation_id, &c.last_message)).collect::<Vec<_>>()
            ));
            for c in &list {
                let all = HistoryQuery { after_seq: None, before_seq: None, limit: 1000 };
                out.push(format!(
                    "{} history {:?}",
                    c.conversation_id,
                    store.messages(&c.conversation_id, all, 0).unwrap()
                ));
                let newest = HistoryQuery { after_seq: None, before_seq: Some(6), limit: 3 };
                out.push(format!(
                    "{} page {:?}",
                    c.conversation_id,
                    store.messages(&c.conversation_id, newest, 0).unwrap()
                ));
            }
            let page = store.sync(u, 0, 1000).unwrap();
            let cursors: Vec<u64> = page.entries.iter().map(|e| e.cursor).collect();
            let mut revoked = Vec::new();
            store
                .visit_entries(&cursors, |v| {
                    revoked.push(v.revoked);
                    Ok(())
                })
                .unwrap();
            out.push(format!("{u} sync {:?} {revoked:?} {} {}", page.entries, page.cursor, page.more));
        }
        out
    }

    /// The projection digest of a fresh replay of `store`'s journal.
    fn replayed_digest(store: &Store) -> crate::journal::Hash {
        let fresh = Store::open(temp_db()).unwrap();
        let mut tx = fresh.begin();
        for item in store.journal_raw(1) {
            let (cursor, bytes) = item.unwrap();
            let rec = JournalRecord::decode(cursor, &bytes).unwrap();
            tx.replay(&rec, &rec.verify().unwrap().event).unwrap();
        }
        tx.commit().unwrap();
        fresh.projection_digest().unwrap()
    }

    #[test]
    fn a_format_1_store_is_migrated_in_place_and_answers_as_before() {
        let live = live();
        let want = answers(&live);
        let digest = live.projection_digest().unwrap();
        assert_eq!(replayed_digest(&live), digest);
        let messages = live.tree(Tree::ConvSeqMessage).len();
        let index = live.tree(Tree::SenderClientMsgIdCursor).len();
        assert_eq!((messages, index), (18, 18));

        // From scratch, and resumed after an interruption in either step.
        for (messages_done, index_moved) in [(0, 0), (7, 0), (messages, 5)] {
            let db = as_format_1(&live, messages_done, index_moved);
            let lens: Vec<usize> =
                db.open_tree("convseq_message").unwrap().iter().map(|kv| kv.unwrap().1.len()).collect();
            assert!(lens[messages_done..].iter().all(|&n| n > MessageRecord::LEN), "format 1's records: {lens:?}");
            assert!(lens[..messages_done].iter().all(|&n| n == MessageRecord::LEN), "rewritten ones: {lens:?}");

            let store = Store::open(db).unwrap();
            let case = format!("resumed at {messages_done} messages, {index_moved} index entries");
            assert_eq!(store.meta(META_FORMAT).unwrap(), Some(FORMAT_VERSION.to_be_bytes().to_vec()), "{case}");
            assert_eq!(store.meta(META_MESSAGES_DONE).unwrap(), None, "{case}");
            assert!(!has_tree(store.db(), legacy::SENDER_CLIENT_MSG_ID_CONV_SEQ).unwrap(), "{case}");
            assert_eq!(store.head().unwrap(), live.head().unwrap(), "{case}");
            store.verify_journal().unwrap();
            assert_eq!(answers(&store), want, "{case}");
            assert_eq!(store.projection_digest().unwrap(), digest, "{case}");
            assert_eq!(replayed_digest(&store), digest, "{case}");

            // The index answers resends with the original message.
            let resend = run(&store, 99_999, send("bob", "d:alice:bob", "m4", None));
            let Ok(Reply::Message { message, created: false }) = resend.result else { panic!("{resend:?}") };
            assert_eq!(Some(message), live.message("d:alice:bob", 3).unwrap(), "{case}");

            // Opening again finds the current format: nothing to do.
            let db = store.db().clone();
            drop(store);
            assert_eq!(Store::open(db).unwrap().projection_digest().unwrap(), digest, "{case}");
        }
    }

    #[test]
    fn a_legacy_record_that_disagrees_with_the_journal_stops_the_open() {
        let live = live();
        let db = as_format_1(&live, 0, 0);
        let messages = db.open_tree("convseq_message").unwrap();
        let (k, v) = messages.iter().nth(2).unwrap().unwrap();
        let mut old: legacy::MessageRecord = codec::decode(&v).unwrap();
        old.body.push('!');
        messages.insert(k, codec::encode(&old)).unwrap();
        let err = Store::open(db.clone()).err().expect("refused");
        assert!(matches!(err, StoreError::Format(FormatError::Migration(_))), "{err}");
        // Nothing was marked done: the next open tries again (and fails again).
        assert_eq!(db.open_tree("meta").unwrap().get(META_FORMAT).unwrap(), None);
    }

    #[test]
    fn a_newer_format_is_refused_and_left_alone() {
        let db = temp_db();
        let store = Store::open(db.clone()).unwrap();
        run(
            &store,
            1,
            CommandKind::Register { user_id: "alice".into(), display_name: "a".into(), password_hash: "h".into() },
        );
        drop(store);
        let meta = db.open_tree("meta").unwrap();
        meta.insert(META_FORMAT, &3u64.to_be_bytes()).unwrap();
        let before: Vec<_> = db.open_tree("userid_user").unwrap().iter().collect::<Result<_, _>>().unwrap();
        let err = Store::open(db.clone()).err().expect("refused");
        assert!(matches!(err, StoreError::Format(FormatError::TooNew { found: 3 })), "{err}");
        let text = err.to_string();
        assert!(text.contains("newer parley (format 3)") && text.contains("upgrade parley"), "{text}");
        assert!(text.contains("export with that version and import"), "{text}");
        assert_eq!(meta.get(META_FORMAT).unwrap().as_deref(), Some(&3u64.to_be_bytes()[..]));
        let after: Vec<_> = db.open_tree("userid_user").unwrap().iter().collect::<Result<_, _>>().unwrap();
        assert_eq!(before, after);
        // A record that is not a version at all is refused too.
        meta.insert(META_FORMAT, b"2").unwrap();
        assert!(matches!(Store::open(db).err(), Some(StoreError::Format(FormatError::BadRecord { len: 1 }))));
    }

    #[test]
    fn a_new_store_gets_the_current_format() {
        let store = Store::open(temp_db()).unwrap();
        assert_eq!(store.meta(META_FORMAT).unwrap(), Some(FORMAT_VERSION.to_be_bytes().to_vec()));
        assert!(!has_tree(store.db(), legacy::SENDER_CLIENT_MSG_ID_CONV_SEQ).unwrap());
    }
}
