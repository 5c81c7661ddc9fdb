//! The storage format version, and the migrations that bring an older data dir up to it.
//!
//! The `meta` tree holds [`META_FORMAT`] = the format as a u64 BE. The formats:
//! - **1** (no `format` record: parley before issue 10): `convseq_message` holds whole
//!   messages ([`legacy::MessageRecord`], bodies included) and the idempotency index is
//!   `senderclientmsgid_convseq` (sender 0 client_msg_id → conversation_id 0 seq u64).
//! - **2**: a message's body is stored once on the state side, in its journal entry:
//!   `convseq_message` holds a [`MessageRecord`] (the entry's cursor and the revoked flag) and
//!   the index is `senderclientmsgid_cursor` (→ the entry's cursor).
//!
//! The journal is the same in every format (never rewritten: its hashes and head stay).
//!
//! [`upgrade`] runs at every [`Store::open`]: the current format opens as is; a store without
//! a `format` record is format 1 and is migrated in place (a new, empty store too: nothing to
//! move, it just gets the record); a newer format is refused with [`FormatError::TooNew`],
//! never guessed at.
//!
//! Migration 1 → 2 is streamed: [`BATCH`] records per sled transaction, so its memory does not
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
    #[error(
        "snapshot of storage format {}, this parley installs format {FORMAT_VERSION} only",
        found.map_or("1 (unversioned)".to_string(), |f| f.to_string())
    )]
    Snapshot { found: Option<u64> },
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
        // Only format 1 is older, and it has no record.
        Some(found) => Err(FormatError::Unknown { found }.into()),
        None => migrate_1_to_2(store),
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
            journal_entries = store.tree(Tree::CursorEntry).len(),
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
