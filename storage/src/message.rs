//! A message as readers see it ([`Message`]): the message projection's record (where its
//! journal entry is, whether it was revoked) joined with that entry (everything that never
//! changes: sender, body, ts, client id, reply).
//!
//! The body is stored once on the state side, in the journal; history, the conversation list,
//! a send's or a revoke's reply and an idempotent resend's answer all read it from there: one
//! point read of the journal per message. A revoked message reads with an empty body (the
//! journal keeps the original, as it always did).
//!
//! Invariant: a join checks that the entry is the `message` entry of that conversation and seq;
//! a pointer to anything else is a corrupt store, never a wrong message.

use crate::event::{ArchivedEvent, Event};
use crate::journal::{EntryScratch, JournalError};
use crate::keys::{self, Tree};
use crate::records::MessageRecord;
use crate::store::{ReadTrees, StoreError};

/// A message, as the API renders it. Also returned to callers in
/// [`crate::outcome::Reply::Message`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Message {
    pub conversation_id: String,
    pub seq: u64,
    pub sender: String,
    /// Empty once revoked.
    pub body: String,
    pub ts: u64,
    pub client_msg_id: String,
    pub reply_to: Option<u64>,
    pub revoked: bool,
    /// Journal cursor of the `message` entry.
    pub cursor: u64,
}

impl Message {
    /// The message a `message` event at `cursor` sent, as it is now (`revoked`); `None` for
    /// another event.
    pub fn from_event(event: Event, cursor: u64, ts: u64, revoked: bool) -> Option<Message> {
        match event {
            Event::MessageSent { conversation_id, seq, sender, body, client_msg_id, reply_to } => Some(Message {
                conversation_id,
                seq,
                sender,
                body: if revoked { String::new() } else { body },
                ts,
                client_msg_id,
                reply_to,
                revoked,
                cursor,
            }),
            _ => None,
        }
    }
}

/// Joins message `seq` of `conversation_id`'s `record` with its journal entry's stored bytes.
fn join(
    conversation_id: &str,
    seq: u64,
    record: MessageRecord,
    entry: &[u8],
    scratch: &mut EntryScratch,
) -> Result<Message, StoreError> {
    let cursor = record.cursor;
    let (rec, event) = scratch.access(cursor, entry)?;
    let ts = rec.ts.to_native();
    let event = rkyv::deserialize::<Event, rkyv::rancor::Error>(event)
        .map_err(|e| JournalError::Corrupt { cursor, reason: e.to_string() })?;
    match Message::from_event(event, cursor, ts, record.revoked) {
        Some(m) if m.conversation_id == conversation_id && m.seq == seq => Ok(m),
        _ => Err(StoreError::Corrupt(format!(
            "message {conversation_id}/{seq} points at journal cursor {cursor}, which is not its entry"
        ))),
    }
}

/// The journal entry at `cursor`, which must exist.
fn entry<R: ReadTrees>(src: &R, cursor: u64) -> Result<R::Bytes, StoreError> {
    Ok(src.read(Tree::CursorEntry, &keys::u64_key(cursor))?.ok_or(JournalError::Missing { cursor })?)
}

/// Message `seq` of `conversation_id`, if there is one.
pub(crate) fn load(src: &impl ReadTrees, conversation_id: &str, seq: u64) -> Result<Option<Message>, StoreError> {
    let Some(b) = src.read(Tree::ConvSeqMessage, &keys::with_u64(conversation_id, seq))? else { return Ok(None) };
    read(src, conversation_id, seq, b.as_ref(), &mut EntryScratch::default()).map(Some)
}

/// Message `seq` of `conversation_id` from its stored `record`, joined with its journal entry
/// read from `src`.
pub(crate) fn read(
    src: &impl ReadTrees,
    conversation_id: &str,
    seq: u64,
    record: &[u8],
    scratch: &mut EntryScratch,
) -> Result<Message, StoreError> {
    let record = MessageRecord::decode(record)?;
    let entry = entry(src, record.cursor)?;
    join(conversation_id, seq, record, entry.as_ref(), scratch)
}

/// The message whose `message` entry is at `cursor` (what the idempotency index points at).
pub(crate) fn load_sent_at(src: &impl ReadTrees, cursor: u64) -> Result<Message, StoreError> {
    let entry = entry(src, cursor)?;
    let mut scratch = EntryScratch::default();
    let (conv, seq) = match scratch.access(cursor, entry.as_ref())? {
        (_, ArchivedEvent::MessageSent { conversation_id, seq, .. }) => (conversation_id.to_string(), seq.to_native()),
        _ => {
            return Err(StoreError::Corrupt(format!("the idempotency index points at cursor {cursor}, not a message")))
        }
    };
    let key = keys::with_u64(&conv, seq);
    let record = src
        .read(Tree::ConvSeqMessage, &key)?
        .map(|b| MessageRecord::decode(b.as_ref()))
        .transpose()?
        .filter(|r| r.cursor == cursor)
        .ok_or_else(|| {
            StoreError::Corrupt(format!("message {conv}/{seq} of cursor {cursor} is not in the projection"))
        })?;
    join(&conv, seq, record, entry.as_ref(), &mut scratch)
}
