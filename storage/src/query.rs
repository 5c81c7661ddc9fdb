//! Read models over the committed projections: what the API's GET endpoints and sync serve.
//!
//! Reads never block writes. Sync caps every scan at the applied cursor read first, so a
//! page never includes an entry whose projections are not yet committed.

use std::cmp::Reverse;
use std::collections::binary_heap::{BinaryHeap, PeekMut};
use std::collections::HashMap;

use crate::codec;
use crate::event::{ArchivedEvent, Event};
use crate::ids::ConversationId;
use crate::journal::{ArchivedJournalRecord, ChainVerifier, Entry, EntryScratch, Hash, JournalError, JournalRecord};
use crate::keys::{self, Tree};
use crate::message::{self, Message};
use crate::records::{
    ConversationRecord, FriendRequestRecord, GroupRecord, MemberRecord, MessageRecord, SessionRecord, UserRecord,
};
use crate::store::{Store, StoreError};

/// An account as the admin list shows it: user id, record, deactivated.
pub type AccountRow = (String, UserRecord, bool);

/// A page of a user's updates.
#[derive(Debug, Clone)]
pub struct SyncPage {
    pub entries: Vec<Entry>,
    /// Pass as the next `since`.
    pub cursor: u64,
    pub more: bool,
}

/// Where a sync page ends, and the cursors of its entries.
#[derive(Debug, Clone)]
pub struct SyncCursors {
    pub cursors: Vec<u64>,
    /// Pass as the next `since`.
    pub cursor: u64,
    pub more: bool,
}

/// A journal entry read in place ([`Store::visit_entries`]): the event's strings are those of
/// the stored record, not copies.
pub struct EntryView<'a> {
    pub cursor: u64,
    pub ts: u64,
    pub event: &'a ArchivedEvent,
    /// For a `message` entry: its message has been revoked since (the current record says so;
    /// sync shows a message as it is now). False for every other entry.
    pub revoked: bool,
}

/// One row of a user's conversation list.
#[derive(Debug, Clone)]
pub struct ConversationSummary {
    pub conversation_id: String,
    pub conversation: ConversationId,
    pub meta: ConversationRecord,
    pub member: MemberRecord,
    pub last_message: Option<Message>,
}

impl ConversationSummary {
    pub fn unread(&self) -> u64 {
        self.meta.max_seq.saturating_sub(self.member.read_seq)
    }
}

/// Requested window of a conversation's history.
#[derive(Debug, Clone, Copy)]
pub struct HistoryQuery {
    pub after_seq: Option<u64>,
    pub before_seq: Option<u64>,
    pub limit: usize,
}

impl Store {
    fn get_rec<T>(&self, t: Tree, key: &[u8]) -> Result<Option<T>, StoreError>
    where
        T: rkyv::Archive,
        T::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>>
            + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
    {
        match self.get(t, key)? {
            Some(b) => Ok(Some(codec::decode(&b)?)),
            None => Ok(None),
        }
    }

    fn keys_after_prefix(&self, t: Tree, prefix: &[u8]) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        for kv in self.tree(t).scan_prefix(prefix) {
            let (k, _) = kv?;
            if let Some(s) = keys::second(&k) {
                out.push(s.to_owned());
            }
        }
        Ok(out)
    }

    pub fn user(&self, user_id: &str) -> Result<Option<UserRecord>, StoreError> {
        self.get_rec(Tree::UserIdUser, user_id.as_bytes())
    }

    /// Whether an app backend has deactivated the account.
    pub fn is_deactivated(&self, user_id: &str) -> Result<bool, StoreError> {
        Ok(self.tree(Tree::UserIdDeactivated).contains_key(user_id.as_bytes())?)
    }

    /// Whether the user has any session left.
    pub fn has_sessions(&self, user_id: &str) -> Result<bool, StoreError> {
        Ok(self.tree(Tree::UserIdSessionId).scan_prefix(keys::prefix(user_id)).next().transpose()?.is_some())
    }

    /// One page of accounts in user id order (see [`AccountRow`]), starting after `after`: `(user_id, record,
    /// deactivated)`, at most `limit`, and whether more follow. O(limit), whatever the count.
    pub fn users_page(&self, after: Option<&str>, limit: usize) -> Result<(Vec<AccountRow>, bool), StoreError> {
        let tree = self.tree(Tree::UserIdUser);
        let iter = match after {
            Some(a) => tree.range::<&[u8], _>((std::ops::Bound::Excluded(a.as_bytes()), std::ops::Bound::Unbounded)),
            None => tree.iter(),
        };
        let mut out = Vec::with_capacity(limit.min(1024));
        for kv in iter {
            let (k, v) = kv?;
            if out.len() == limit {
                return Ok((out, true));
            }
            let user_id =
                String::from_utf8(k.to_vec()).map_err(|_| StoreError::Corrupt("a user id is not utf-8".into()))?;
            let rec: UserRecord = codec::decode(&v)?;
            let deactivated = self.is_deactivated(&user_id)?;
            out.push((user_id, rec, deactivated));
        }
        Ok((out, false))
    }

    pub fn session(&self, session_id: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.get_rec(Tree::SessionIdSession, session_id.as_bytes())
    }

    /// A user's live sessions, oldest first.
    pub fn sessions_of(&self, user_id: &str) -> Result<Vec<(String, SessionRecord)>, StoreError> {
        let mut out = Vec::new();
        for sid in self.keys_after_prefix(Tree::UserIdSessionId, &keys::prefix(user_id))? {
            if let Some(s) = self.session(&sid)? {
                out.push((sid, s));
            }
        }
        out.sort_by(|a, b| a.1.created_at.cmp(&b.1.created_at).then_with(|| a.0.cmp(&b.0)));
        Ok(out)
    }

    /// `(incoming [(from, request)], outgoing [(to, request)])`.
    #[allow(clippy::type_complexity)]
    pub fn friend_requests(
        &self,
        user_id: &str,
    ) -> Result<(Vec<(String, FriendRequestRecord)>, Vec<(String, FriendRequestRecord)>), StoreError> {
        let mut incoming = Vec::new();
        for from in self.keys_after_prefix(Tree::ToFrom, &keys::prefix(user_id))? {
            if let Some(r) = self.get_rec(Tree::FromToFriendRequest, &keys::pair(&from, user_id))? {
                incoming.push((from, r));
            }
        }
        let mut outgoing = Vec::new();
        for kv in self.tree(Tree::FromToFriendRequest).scan_prefix(keys::prefix(user_id)) {
            let (k, v) = kv?;
            if let Some(to) = keys::second(&k) {
                outgoing.push((to.to_owned(), codec::decode(&v)?));
            }
        }
        Ok((incoming, outgoing))
    }

    /// `(peer, since)` for every friend.
    pub fn friends(&self, user_id: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.tree(Tree::UserIdPeerSince).scan_prefix(keys::prefix(user_id)) {
            let (k, v) = kv?;
            if let Some(peer) = keys::second(&k) {
                out.push((peer.to_owned(), keys::trailing_u64(&v).unwrap_or(0)));
            }
        }
        Ok(out)
    }

    pub fn are_friends(&self, a: &str, b: &str) -> Result<bool, StoreError> {
        Ok(self.get(Tree::UserIdPeerSince, &keys::pair(a, b))?.is_some())
    }

    pub fn blocks(&self, user_id: &str) -> Result<Vec<String>, StoreError> {
        self.keys_after_prefix(Tree::UserIdTargetBlock, &keys::prefix(user_id))
    }

    pub fn conversation(&self, conversation_id: &str) -> Result<ConversationRecord, StoreError> {
        Ok(self.get_rec(Tree::ConvMeta, conversation_id.as_bytes())?.unwrap_or_default())
    }

    pub fn member(&self, conversation_id: &str, user_id: &str) -> Result<Option<MemberRecord>, StoreError> {
        self.get_rec(Tree::ConvUserIdMember, &keys::pair(conversation_id, user_id))
    }

    /// Message `seq` of a conversation, body read from its journal entry.
    pub fn message(&self, conversation_id: &str, seq: u64) -> Result<Option<Message>, StoreError> {
        message::load(self, conversation_id, seq)
    }

    /// Messages in ascending seq within `(after_seq, before_seq)`, at most `limit`, never at or
    /// below `floor` (a group member's `joined_seq`). With only `before_seq`, the newest page
    /// before it. One scan of the message projection, then one point read of the journal per
    /// message for what the record does not hold.
    pub fn messages(&self, conversation_id: &str, q: HistoryQuery, floor: u64) -> Result<Vec<Message>, StoreError> {
        let lo = q.after_seq.unwrap_or(0).max(floor).saturating_add(1);
        let hi = q.before_seq.unwrap_or(u64::MAX);
        if lo >= hi || q.limit == 0 {
            return Ok(Vec::new());
        }
        let range = keys::with_u64(conversation_id, lo)..keys::with_u64(conversation_id, hi);
        let tree = self.tree(Tree::ConvSeqMessage);
        let mut records = Vec::with_capacity(q.limit.min(512));
        if q.after_seq.is_none() && q.before_seq.is_some() {
            for kv in tree.range(range).rev().take(q.limit) {
                records.push(kv?);
            }
            records.reverse();
        } else {
            for kv in tree.range(range).take(q.limit) {
                records.push(kv?);
            }
        }
        let mut scratch = EntryScratch::default();
        records
            .into_iter()
            .map(|(k, v)| {
                let seq =
                    keys::trailing_u64(&k).ok_or_else(|| StoreError::Corrupt("bad convseq_message key".into()))?;
                message::read(self, conversation_id, seq, &v, &mut scratch)
            })
            .collect()
    }

    /// A user's active conversations, newest activity first.
    pub fn conversations(&self, user_id: &str) -> Result<Vec<ConversationSummary>, StoreError> {
        let mut out = Vec::new();
        for conv_id in self.keys_after_prefix(Tree::UserIdConv, &keys::prefix(user_id))? {
            let Some(conversation) = ConversationId::parse(&conv_id) else {
                return Err(StoreError::Corrupt(format!("bad conversation id {conv_id:?} in useridconv_")));
            };
            let Some(member) = self.member(&conv_id, user_id)? else { continue };
            let meta = self.conversation(&conv_id)?;
            let last_message =
                if meta.max_seq > member.joined_seq { self.message(&conv_id, meta.max_seq)? } else { None };
            out.push(ConversationSummary { conversation_id: conv_id, conversation, meta, member, last_message });
        }
        out.sort_by(|a, b| {
            b.meta.activity_cursor.cmp(&a.meta.activity_cursor).then_with(|| a.conversation_id.cmp(&b.conversation_id))
        });
        Ok(out)
    }

    pub fn group(&self, group_id: u64) -> Result<Option<GroupRecord>, StoreError> {
        self.get_rec(Tree::GroupIdGroup, &keys::u64_key(group_id))
    }

    /// Active members of a group, by user id.
    pub fn group_members(&self, group_id: u64) -> Result<Vec<(String, MemberRecord)>, StoreError> {
        let conv = ConversationId::Group(group_id).to_string();
        let mut out = Vec::new();
        for kv in self.tree(Tree::ConvUserIdMember).scan_prefix(keys::prefix(&conv)) {
            let (k, v) = kv?;
            if let Some(u) = keys::second(&k) {
                out.push((u.to_owned(), codec::decode(&v)?));
            }
        }
        Ok(out)
    }

    /// Group ids the user is an active member of.
    pub fn groups_of(&self, user_id: &str) -> Result<Vec<u64>, StoreError> {
        Ok(self
            .keys_after_prefix(Tree::UserIdConv, &keys::prefix(user_id))?
            .into_iter()
            .filter_map(|c| match ConversationId::parse(&c) {
                Some(ConversationId::Group(g)) => Some(g),
                _ => None,
            })
            .collect())
    }

    /// Every update for `user_id` with `cursor > since`, ascending, at most `limit`.
    ///
    /// Merges the user's personal feed with the feeds of their conversations, each read only
    /// inside the intervals the user was a member. See [`Store::sync_cursors`].
    pub fn sync(&self, user_id: &str, since: u64, limit: usize) -> Result<SyncPage, StoreError> {
        let SyncCursors { cursors, cursor, more } = self.sync_cursors(user_id, since, limit)?;
        let entries = self.entries(&cursors)?;
        Ok(SyncPage { entries, cursor, more })
    }

    /// The cursors of [`Store::sync`]'s page, without reading the entries.
    ///
    /// The merge is lazy: each feed is read only as far as the page needs, whatever the
    /// number of conversations.
    pub fn sync_cursors(&self, user_id: &str, since: u64, limit: usize) -> Result<SyncCursors, StoreError> {
        let upto = self.applied_cursor();
        let limit = limit.max(1);
        if since >= upto {
            return Ok(SyncCursors { cursors: Vec::new(), cursor: since.max(upto), more: false });
        }
        let take = limit + 1;
        let mut feeds = Vec::new();
        feeds.push(self.feed_range(Tree::UserIdCursor, user_id, since + 1, upto));
        let interval_prefix = keys::prefix(user_id);
        for kv in self.tree(Tree::UserIdConvFromUntil).scan_prefix(&interval_prefix) {
            let (k, v) = kv?;
            let until = keys::trailing_u64(&v).unwrap_or(0);
            if until <= since {
                continue;
            }
            let from = keys::trailing_u64(&k).unwrap_or(0);
            let conv = k
                .get(user_id.len() + 1..k.len().saturating_sub(9))
                .and_then(|c| std::str::from_utf8(c).ok())
                .ok_or_else(|| StoreError::Corrupt("bad membership interval key".into()))?;
            let lo = (since + 1).max(from);
            let hi = until.min(upto);
            if lo > hi || self.conversation(conv)?.last_feed_cursor < lo {
                continue;
            }
            feeds.push(self.feed_range(Tree::ConvCursor, conv, lo, hi));
        }
        let mut cursors = merge_feeds(feeds, take)?;
        let more = cursors.len() > limit;
        cursors.truncate(limit);
        let cursor = if more { cursors.last().copied().unwrap_or(since) } else { upto };
        Ok(SyncCursors { cursors, cursor, more })
    }

    /// The keys of `owner`'s feed in `t` with cursors in `lo..=hi`, in order.
    fn feed_range(&self, t: Tree, owner: &str, lo: u64, hi: u64) -> sled::Iter {
        self.tree(t).range(keys::with_u64(owner, lo)..=keys::with_u64(owner, hi))
    }

    /// Decoded journal entries at `cursors` (each must exist), in the order given.
    pub fn entries(&self, cursors: &[u64]) -> Result<Vec<Entry>, StoreError> {
        let mut out = Vec::with_capacity(cursors.len());
        self.read_entries(cursors, false, |rec, event, _| {
            let event = rkyv::deserialize::<Event, rkyv::rancor::Error>(event)
                .map_err(|e| JournalError::Corrupt { cursor: rec.cursor.to_native(), reason: e.to_string() })?;
            out.push(Entry {
                cursor: rec.cursor.to_native(),
                ts: rec.ts.to_native(),
                prev_hash: rec.prev_hash,
                hash: rec.hash,
                event,
            });
            Ok(())
        })?;
        Ok(out)
    }

    /// Visits the journal entries at `cursors` (each must exist), in the order given, read in
    /// place: nothing is copied out of the stored record. For sync: each `message` entry comes
    /// with whether its message has been revoked since.
    pub fn visit_entries(
        &self,
        cursors: &[u64],
        mut visit: impl FnMut(EntryView<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.read_entries(cursors, true, |rec, event, revoked| {
            visit(EntryView { cursor: rec.cursor.to_native(), ts: rec.ts.to_native(), event, revoked })
        })
    }

    /// Reads the journal records at `cursors` with the checks of `JournalRecord::decode` and
    /// `entry` (validated, stored cursor matches), without decoding them; with `current`, also
    /// looks up whether each message has been revoked.
    ///
    /// Sync pages are ascending and usually dense runs of the journal, and a conversation's
    /// messages in them come in seq order: those are read with range scans (cheaper per
    /// record than point reads in sled), anything else with point reads.
    fn read_entries(
        &self,
        cursors: &[u64],
        current: bool,
        mut f: impl FnMut(&ArchivedJournalRecord, &ArchivedEvent, bool) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let journal = self.tree(Tree::CursorEntry);
        let mut scratch = EntryScratch::default();
        let mut scan = match (cursors.first(), cursors.last()) {
            (Some(&first), Some(&last))
                if cursors.len() >= MIN_SCAN
                    && cursors.windows(2).all(|w| w[0] < w[1])
                    && last - first < 2 * cursors.len() as u64 =>
            {
                Some(journal.range(keys::u64_key(first)..=keys::u64_key(last)))
            }
            _ => None,
        };
        let mut messages = MessageReader::new(self.tree(Tree::ConvSeqMessage));
        for &cursor in cursors {
            let bytes = match &mut scan {
                Some(scan) => next_at(scan, cursor)?,
                None => journal.get(keys::u64_key(cursor))?,
            };
            let bytes = bytes.ok_or(JournalError::Missing { cursor })?;
            let (rec, event) = scratch.access(cursor, &bytes)?;
            let mut revoked = false;
            if let (true, ArchivedEvent::MessageSent { conversation_id, seq, .. }) = (current, event) {
                if let Some(m) = messages.get(conversation_id, seq.to_native())? {
                    revoked = MessageRecord::decode(&m)?.revoked;
                }
            }
            f(rec, event, revoked)?;
        }
        Ok(())
    }

    /// One decoded journal entry (its hash checked, like every entry a read serves).
    pub fn entry(&self, cursor: u64) -> Result<Entry, StoreError> {
        let rec = self.journal_record(cursor)?.ok_or(JournalError::Missing { cursor })?;
        Ok(rec.verify()?)
    }

    /// Journal entries with cursor `>= from`, ascending, at most `limit`.
    pub fn journal(&self, from: u64, limit: usize) -> Result<Vec<Entry>, StoreError> {
        let mut out = Vec::new();
        // Only the applied journal: entries staged past the head by a snapshot install are not
        // the journal yet (`snapshot.rs`).
        let head = self.applied_cursor();
        for item in self.journal_raw(from.max(1)).take(limit) {
            let (cursor, bytes) = item?;
            if cursor > head {
                break;
            }
            out.push(JournalRecord::decode(cursor, &bytes)?.verify()?);
        }
        Ok(out)
    }

    /// Checks the last `n` entries of the journal: each decodes, its hash recomputes, each
    /// links to the one before, and the last is the head record's cursor and hash. What a node
    /// checks at start before it serves or extends its journal: O(n), whatever the history (the
    /// rest is checked where it is read, [`crate::journal::EntryScratch`]).
    pub fn verify_tail(&self, n: u64) -> Result<(), StoreError> {
        let head = self.head()?;
        if head.cursor == 0 {
            return Ok(());
        }
        let first = head.cursor.saturating_sub(n.max(1) - 1).max(1);
        let mut prev: Option<(u64, Hash)> = None;
        for item in self.journal_raw(first) {
            let (cursor, bytes) = item?;
            if cursor > head.cursor {
                break;
            }
            let expected = prev.map_or(first, |(c, _)| c + 1);
            if cursor != expected {
                return Err(JournalError::Missing { cursor: expected }.into());
            }
            let rec = JournalRecord::decode(cursor, &bytes)?;
            rec.verify()?;
            if let Some((c, hash)) = prev {
                if rec.prev_hash != hash {
                    return Err(JournalError::BrokenLink { cursor, prev: c }.into());
                }
            }
            prev = Some((cursor, rec.hash));
        }
        match prev {
            Some((c, hash)) if c == head.cursor && hash == head.hash => Ok(()),
            Some((c, _)) if c < head.cursor => Err(JournalError::Missing { cursor: c + 1 }.into()),
            None => Err(JournalError::Missing { cursor: first }.into()),
            Some((_, hash)) => {
                Err(JournalError::HeadMismatch { expected: hex::encode(head.hash), actual: hex::encode(hash) }.into())
            }
        }
    }

    /// Walks the whole hash chain. `Ok((last_cursor, head_hash))` or the first bad entry.
    pub fn verify_journal(&self) -> Result<(u64, Hash), StoreError> {
        let mut v = ChainVerifier::default();
        for item in self.journal_raw(1) {
            let (cursor, bytes) = item?;
            v.check(cursor, &bytes)?;
        }
        let head = self.head()?;
        if head.cursor != v.last_cursor() || head.hash != v.head() {
            return Err(
                JournalError::HeadMismatch { expected: hex::encode(head.hash), actual: hex::encode(v.head()) }.into()
            );
        }
        Ok((v.last_cursor(), v.head()))
    }
}

/// Fewest entries worth a range scan of the journal (a scan costs more than a point read to set
/// up, less per record).
const MIN_SCAN: usize = 8;

/// Advances an ascending scan of the journal to the record at `cursor`; `None` if it is not
/// there.
fn next_at(scan: &mut sled::Iter, cursor: u64) -> Result<Option<sled::IVec>, StoreError> {
    for kv in scan {
        let (k, v) = kv?;
        match keys::trailing_u64(&k) {
            Some(c) if c == cursor => return Ok(Some(v)),
            Some(c) if c > cursor => return Ok(None),
            _ => {}
        }
    }
    Ok(None)
}

/// Reads message records, following each conversation with a range scan while the seqs asked
/// for are consecutive (as in a sync page), and with point reads otherwise.
struct MessageReader<'a> {
    tree: &'a sled::Tree,
    /// Per conversation: a scan positioned after the last record read, and that record's seq.
    scans: HashMap<String, (sled::Iter, u64)>,
    key: Vec<u8>,
}

impl<'a> MessageReader<'a> {
    fn new(tree: &'a sled::Tree) -> Self {
        MessageReader { tree, scans: HashMap::new(), key: Vec::new() }
    }

    /// The record of message `seq` of `conversation_id`, if any.
    fn get(&mut self, conversation_id: &str, seq: u64) -> Result<Option<sled::IVec>, StoreError> {
        self.key.clear();
        self.key.extend_from_slice(conversation_id.as_bytes());
        self.key.push(keys::SEP);
        self.key.extend_from_slice(&seq.to_be_bytes());
        if let Some((scan, last)) = self.scans.get_mut(conversation_id) {
            if last.checked_add(1) == Some(seq) {
                if let Some(kv) = scan.next() {
                    let (k, v) = kv?;
                    if *k == *self.key {
                        *last = seq;
                        return Ok(Some(v));
                    }
                }
            }
        }
        // Not the next one: (re)start this conversation's scan here.
        let mut scan = self.tree.range(self.key.clone()..=keys::with_u64(conversation_id, u64::MAX));
        let found = match scan.next() {
            Some(kv) => {
                let (k, v) = kv?;
                (*k == *self.key).then_some(v)
            }
            None => None,
        };
        match self.scans.get_mut(conversation_id) {
            Some(entry) => *entry = (scan, seq),
            None => {
                self.scans.insert(conversation_id.to_owned(), (scan, seq));
            }
        }
        Ok(found)
    }
}

/// Merges ascending feeds of cursor keys (`owner 0 cursor`) into their first `take` distinct
/// cursors, ascending. Reads each feed only as far as needed.
fn merge_feeds(mut feeds: Vec<sled::Iter>, take: usize) -> Result<Vec<u64>, StoreError> {
    fn next(feed: &mut sled::Iter) -> Result<Option<u64>, StoreError> {
        match feed.next() {
            None => Ok(None),
            Some(kv) => {
                let (k, _) = kv?;
                keys::trailing_u64(&k).map(Some).ok_or_else(|| StoreError::Corrupt("bad feed key".into()))
            }
        }
    }
    let mut out: Vec<u64> = Vec::with_capacity(take.min(1024));
    let mut heap = BinaryHeap::with_capacity(feeds.len());
    for (i, feed) in feeds.iter_mut().enumerate() {
        if let Some(c) = next(feed)? {
            heap.push(Reverse((c, i)));
        }
    }
    while out.len() < take {
        let Some(mut top) = heap.peek_mut() else { break };
        let Reverse((c, i)) = *top;
        // Two feeds can hold the same entry: it is taken once.
        if out.last() != Some(&c) {
            out.push(c);
        }
        match next(&mut feeds[i])? {
            Some(n) => *top = Reverse((n, i)),
            None => {
                PeekMut::pop(top);
            }
        }
    }
    Ok(out)
}
