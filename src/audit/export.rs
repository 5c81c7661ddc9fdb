//! `parley export`: journal entries as JSON lines on stdout, each exactly as the admin journal
//! renders it (`{cursor, ts, prev_hash, hash, event}`), in cursor order, streamed (one entry
//! and at most one sync page in memory).
//!
//! Filters combine (all must match):
//! - `--from N`, `--to N`: the cursor range, inclusive. Unfiltered, the output is the complete,
//!   consecutive journal in that range and `parley audit verify --from-export` /
//!   `parley import` accept it;
//! - `--user U`: every entry U's sync returns ([`parley_storage::Store::sync`] paged over the
//!   store as it is now) plus U's own actions sync does not carry: U's registration and the
//!   sessions U created;
//! - `--conversation C`: entries about conversation C (its messages, revokes and read markers;
//!   for a group `g:N` also every group event of N);
//! - `--type T[,T...]`: entries whose event type is one of these (the `event.type` names).
//!
//! Every entry's hash is recomputed and consecutive entries' links checked on the way out; a
//! bad entry stops the export with its cursor.

use std::collections::VecDeque;
use std::io::{BufWriter, Write};

use clap::Args;
use parley_storage::ids::ConversationId;
use parley_storage::{Entry, Event, Store};
use parley_wire::storage::journal_entry;

use super::chain::{Chain, DbEntries};
use super::{close, open_data_dir, wire, write_out, AuditError, DataDirArgs};

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    pub dir: DataDirArgs,
    /// First cursor (inclusive).
    #[arg(long, value_name = "N")]
    pub from: Option<u64>,
    /// Last cursor (inclusive).
    #[arg(long, value_name = "N")]
    pub to: Option<u64>,
    /// Only entries that concern this user (what their sync returns, plus their registration
    /// and session entries).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Only entries about this conversation (`d:a:b` or `g:N`).
    #[arg(long, value_name = "CONVERSATION")]
    pub conversation: Option<String>,
    /// Only entries of these event types (comma-separated or repeated).
    #[arg(long = "type", value_name = "TYPE", value_delimiter = ',')]
    pub types: Vec<String>,
}

/// Which entries an export keeps.
pub struct Filter {
    user: Option<UserFeed>,
    conversation: Option<(String, ConversationId)>,
    types: Vec<String>,
}

impl Filter {
    pub fn new(
        store: &Store,
        from: u64,
        user: Option<&str>,
        conversation: Option<&str>,
        types: &[String],
    ) -> Result<Filter, AuditError> {
        for t in types {
            if !wire::event_types().contains(t) {
                return Err(AuditError::Other(format!(
                    "unknown event type {t:?}; one of: {}",
                    wire::event_types().join(", ")
                )));
            }
        }
        let conversation = match conversation {
            Some(c) => match ConversationId::parse(c) {
                Some(id) => Some((c.to_owned(), id)),
                None => return Err(AuditError::Other(format!("{c:?} is not a conversation id (d:a:b or g:N)"))),
            },
            None => None,
        };
        let user = match user {
            Some(u) => {
                if store.user(u)?.is_none() {
                    return Err(AuditError::Other(format!("no user {u:?} in this journal")));
                }
                Some(UserFeed::new(u, from))
            }
            None => None,
        };
        Ok(Filter { user, conversation, types: types.to_vec() })
    }

    /// Whether the export keeps `e`. Entries must be offered in cursor order.
    pub fn keeps(&mut self, store: &Store, e: &Entry) -> Result<bool, AuditError> {
        if !self.types.is_empty() && !self.types.iter().any(|t| t == e.event.type_name()) {
            return Ok(false);
        }
        if let Some((raw, id)) = &self.conversation {
            if !about_conversation(&e.event, raw, id) {
                return Ok(false);
            }
        }
        if let Some(feed) = &mut self.user {
            return feed.concerns(store, e);
        }
        Ok(true)
    }
}

/// Whether an event is about conversation `raw` (parsed as `id`).
fn about_conversation(ev: &Event, raw: &str, id: &ConversationId) -> bool {
    match ev {
        Event::MessageSent { conversation_id, .. }
        | Event::MessageRevoked { conversation_id, .. }
        | Event::ReadMarked { conversation_id, .. } => conversation_id == raw,
        Event::GroupCreated { group_id, .. }
        | Event::GroupUpdated { group_id, .. }
        | Event::MembersAdded { group_id, .. }
        | Event::MemberRemoved { group_id, .. }
        | Event::MemberRoleSet { group_id, .. }
        | Event::MemberMuted { group_id, .. }
        | Event::OwnerTransferred { group_id, .. }
        | Event::GroupDismissed { group_id, .. } => *id == ConversationId::Group(*group_id),
        _ => false,
    }
}

/// A user's sync, read a page at a time, merged with the entries of theirs sync leaves out.
struct UserFeed {
    user: String,
    since: u64,
    queue: VecDeque<u64>,
    exhausted: bool,
}

/// Sync page size while exporting.
const PAGE: usize = 1000;

impl UserFeed {
    fn new(user: &str, from: u64) -> UserFeed {
        UserFeed { user: user.to_owned(), since: from.saturating_sub(1), queue: VecDeque::new(), exhausted: false }
    }

    fn concerns(&mut self, store: &Store, e: &Entry) -> Result<bool, AuditError> {
        // The user's own actions that sync does not carry (they reach no feed).
        match &e.event {
            Event::UserRegistered { user_id, .. }
            | Event::SessionCreated { user_id, .. }
            | Event::UserDeactivated { user_id }
            | Event::UserReactivated { user_id }
            | Event::PasswordChanged { user_id, .. }
                if *user_id == self.user =>
            {
                return Ok(true)
            }
            _ => {}
        }
        loop {
            while let Some(&c) = self.queue.front() {
                if c < e.cursor {
                    self.queue.pop_front();
                } else {
                    return Ok(c == e.cursor);
                }
            }
            if self.exhausted {
                return Ok(false);
            }
            let page = store.sync(&self.user, self.since, PAGE)?;
            self.queue.extend(page.entries.iter().map(|x| x.cursor));
            self.exhausted = !page.more || page.cursor <= self.since;
            self.since = page.cursor;
        }
    }
}

/// Streams the selected entries of `store` to `out`; returns how many were written.
pub fn export(
    store: &Store,
    from: u64,
    to: Option<u64>,
    filter: &mut Filter,
    out: &mut impl Write,
) -> Result<u64, AuditError> {
    let from = from.max(1);
    let recorded = store.head()?;
    let mut entries = DbEntries::new(store.journal_raw(from), Chain::starting_at(from));
    let mut written = 0u64;
    let mut line = Vec::with_capacity(1024);
    let mut reached_end = true;
    for item in entries.by_ref() {
        let (_, entry) = item?;
        if to.is_some_and(|t| entry.cursor > t) {
            reached_end = false;
            break;
        }
        if !filter.keeps(store, &entry)? {
            continue;
        }
        line.clear();
        parley_wire::canonical_value(&journal_entry(&entry))
            .and_then(|v| serde_json::to_writer(&mut line, &v))
            .map_err(|e| AuditError::Other(format!("cannot render cursor {}: {e}", entry.cursor)))?;
        line.push(b'\n');
        if !write_out(out, &line)? {
            return Ok(written);
        }
        written += 1;
    }
    let last = entries.checked().last_cursor();
    if reached_end && from <= recorded.cursor && last < recorded.cursor {
        return Err(AuditError::bad(
            last + 1,
            format!(
                "missing: the head record says the journal ends at cursor {}, the chain ends at {last} (truncated)",
                recorded.cursor
            ),
        ));
    }
    Ok(written)
}

pub fn run(args: ExportArgs) -> Result<(), String> {
    run_inner(args).map_err(|e| e.to_string())
}

fn run_inner(args: ExportArgs) -> Result<(), AuditError> {
    let store = open_data_dir(&args.dir.data_dir, args.dir.cache_mb)?;
    let from = args.from.unwrap_or(1);
    let mut filter = Filter::new(&store, from, args.user.as_deref(), args.conversation.as_deref(), &args.types)?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
    let n = export(&store, from, args.to, &mut filter, &mut out)?;
    match out.flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
        _ => {}
    }
    tracing::debug!(entries = n, "export done");
    close(store)
}
