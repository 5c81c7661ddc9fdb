//! Read models over the committed projections: what the API's GET endpoints and sync serve.
//!
//! Reads never block writes. Sync caps every scan at the applied cursor read first, so a
//! page never includes an entry whose projections are not yet committed.

use crate::codec;
use crate::ids::ConversationId;
use crate::journal::{ChainVerifier, Entry, Hash, JournalError, JournalRecord};
use crate::keys::{self, Tree};
use crate::records::{
    ConversationRecord, FriendRequestRecord, GroupRecord, MemberRecord, MessageRecord, SessionRecord, UserRecord,
};
use crate::store::{Store, StoreError};

/// A page of a user's updates.
#[derive(Debug, Clone)]
pub struct SyncPage {
    pub entries: Vec<Entry>,
    /// Pass as the next `since`.
    pub cursor: u64,
    pub more: bool,
}

/// One row of a user's conversation list.
#[derive(Debug, Clone)]
pub struct ConversationSummary {
    pub conversation_id: String,
    pub conversation: ConversationId,
    pub meta: ConversationRecord,
    pub member: MemberRecord,
    pub last_message: Option<MessageRecord>,
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

    pub fn message(&self, conversation_id: &str, seq: u64) -> Result<Option<MessageRecord>, StoreError> {
        self.get_rec(Tree::ConvSeqMessage, &keys::with_u64(conversation_id, seq))
    }

    /// Messages in ascending seq within `(after_seq, before_seq)`, at most `limit`, never at or
    /// below `floor` (a group member's `joined_seq`). With only `before_seq`, the newest page
    /// before it.
    pub fn messages(
        &self,
        conversation_id: &str,
        q: HistoryQuery,
        floor: u64,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        let lo = q.after_seq.unwrap_or(0).max(floor).saturating_add(1);
        let hi = q.before_seq.unwrap_or(u64::MAX);
        if lo >= hi || q.limit == 0 {
            return Ok(Vec::new());
        }
        let range = keys::with_u64(conversation_id, lo)..keys::with_u64(conversation_id, hi);
        let tree = self.tree(Tree::ConvSeqMessage);
        let mut out = Vec::with_capacity(q.limit.min(512));
        if q.after_seq.is_none() && q.before_seq.is_some() {
            for kv in tree.range(range).rev().take(q.limit) {
                out.push(codec::decode(&kv?.1)?);
            }
            out.reverse();
        } else {
            for kv in tree.range(range).take(q.limit) {
                out.push(codec::decode(&kv?.1)?);
            }
        }
        Ok(out)
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
    /// inside the intervals the user was a member.
    pub fn sync(&self, user_id: &str, since: u64, limit: usize) -> Result<SyncPage, StoreError> {
        let upto = self.applied_cursor();
        let limit = limit.max(1);
        if since >= upto {
            return Ok(SyncPage { entries: Vec::new(), cursor: since.max(upto), more: false });
        }
        let take = limit + 1;
        let mut cursors: Vec<u64> = Vec::new();
        self.feed_range(Tree::UserIdCursor, user_id, since + 1, upto, take, &mut cursors)?;
        let mut interval_prefix = keys::prefix(user_id);
        interval_prefix.truncate(user_id.len() + 1);
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
            self.feed_range(Tree::ConvCursor, conv, lo, hi, take, &mut cursors)?;
            // Keep the candidate set small when a user has many busy conversations.
            if cursors.len() > 4 * take {
                cursors.sort_unstable();
                cursors.dedup();
                cursors.truncate(take);
            }
        }
        cursors.sort_unstable();
        cursors.dedup();
        let more = cursors.len() > limit;
        cursors.truncate(limit);
        let cursor = if more { cursors.last().copied().unwrap_or(since) } else { upto };
        let mut entries = Vec::with_capacity(cursors.len());
        for c in cursors {
            entries.push(self.entry(c)?);
        }
        Ok(SyncPage { entries, cursor, more })
    }

    fn feed_range(
        &self,
        t: Tree,
        owner: &str,
        lo: u64,
        hi: u64,
        take: usize,
        out: &mut Vec<u64>,
    ) -> Result<(), StoreError> {
        let range = keys::with_u64(owner, lo)..=keys::with_u64(owner, hi);
        for kv in self.tree(t).range(range).take(take) {
            let (k, _) = kv?;
            out.push(keys::trailing_u64(&k).unwrap_or(0));
        }
        Ok(())
    }

    /// One decoded journal entry.
    pub fn entry(&self, cursor: u64) -> Result<Entry, StoreError> {
        let rec = self.journal_record(cursor)?.ok_or(JournalError::Missing { cursor })?;
        Ok(rec.entry()?)
    }

    /// Journal entries with cursor `>= from`, ascending, at most `limit`.
    pub fn journal(&self, from: u64, limit: usize) -> Result<Vec<Entry>, StoreError> {
        let mut out = Vec::new();
        for item in self.journal_raw(from.max(1)).take(limit) {
            let (cursor, bytes) = item?;
            out.push(JournalRecord::decode(cursor, &bytes)?.entry()?);
        }
        Ok(out)
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
