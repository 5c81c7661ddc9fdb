//! Snapshots as pointers into the journal, and catching a node up to one.
//!
//! The journal is append-only, every node keeps all of it, and `apply` rebuilds every
//! projection from it. So a raft snapshot need not copy any state: it is a [`Manifest`], the
//! journal head (cursor and chain hash) that the snapshot's last log id stands for. Taking one
//! costs O(1) (see `state_machine.rs`); what a lagging node lacks it pulls, and only that.
//!
//! **Catch-up** ([`catch_up`]): the follower compares its own journal head with the manifest.
//! It asks a source node for the page that starts *at* its head cursor: when that entry's
//! hash is the follower's head hash, the two journals agree up to there and the follower pulls
//! `head+1..=manifest head`; when it is not, the follower's journal has diverged and it
//! fail-stops ([`CatchUpError::Diverged`]) rather than serve or extend it. An empty follower
//! starts from cursor 1. Each page is checked before anything of it is stored: every record
//! decodes (rkyv validation), its cursor is the next one, its `prev_hash` links to the
//! previous entry and its hash recomputes; the last entry must carry the manifest's head hash.
//! A page that fails any check is never applied: the source is treated as faulty and the
//! pull goes on from another source (or the same, later). Verified pages are applied through
//! the same `apply` as everything else (`Tx::replay`), one atomic store commit per page, so
//! memory is one page whatever the journal length, and an interruption resumes from the
//! follower's new head.
//!
//! What a node serves while it catches up, and how it resumes after a crash, is the state
//! machine's part (the `raft_installing` marker in `state_machine.rs`).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use parley_storage::journal::{Hash, JournalError, JournalRecord};
use parley_storage::requests::RequestTable;
use parley_storage::{Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::wire::{Page, PageEntry, PageRequest, MAX_PAGE_BYTES, MAX_PAGE_ENTRIES};

/// What a raft snapshot holds: the journal head its last log id stands for, and the state
/// machine's request table at that point (bounded; see `parley_storage::requests`), which the
/// journal cannot rebuild.
///
/// `source` is transfer information, not state: the address of a node that holds the journal
/// up to `head_cursor` (the sending leader fills it in; a freshly built manifest has none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub head_cursor: u64,
    pub head_hash: Hash,
    pub source: Option<String>,
    pub requests: RequestTable,
}

/// A manifest as wire v2 recorded it (before request ids): read back from the state db only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestV2 {
    pub head_cursor: u64,
    pub head_hash: Hash,
    pub source: Option<String>,
}

impl From<ManifestV2> for Manifest {
    fn from(old: ManifestV2) -> Manifest {
        Manifest {
            head_cursor: old.head_cursor,
            head_hash: old.head_hash,
            source: old.source,
            requests: RequestTable::default(),
        }
    }
}

/// Fetches journal pages from other nodes (the signed `/raft/journal` RPC in production, an
/// in-memory double in tests).
pub trait JournalSource: Send + Sync + 'static {
    fn page<'a>(
        &'a self,
        addr: &'a str,
        req: PageRequest,
    ) -> Pin<Box<dyn Future<Output = Result<Page, String>> + Send + 'a>>;
}

/// Why a catch-up stopped for good. Everything else (a source down, a page that fails the
/// chain check) is retried against the next source.
#[derive(Debug, thiserror::Error)]
pub enum CatchUpError {
    #[error(
        "this node's journal diverged from the cluster's at cursor {cursor}: its entry there has \
         another hash; it will not serve or extend it. Stop the node, remove its data dir, and \
         add it again as a new node (parley members remove, then serve --join)"
    )]
    Diverged { cursor: u64 },
    #[error("this node's journal head {local} is past the snapshot's head {target}: its journal diverged")]
    Ahead { local: u64, target: u64 },
    #[error("no other node to pull the journal from")]
    NoSource,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("catch-up task failed: {0}")]
    Join(String),
}

/// One pull attempt's failure: fatal, or worth another try elsewhere.
enum Step {
    Fatal(CatchUpError),
    Retry(String),
}

impl From<StoreError> for Step {
    fn from(e: StoreError) -> Self {
        Step::Fatal(e.into())
    }
}

/// Brings `store`'s journal (and so its projections) to `target`'s head, pulling from
/// `sources` in turn. Returns the number of entries applied. Retries transient failures with a
/// capped backoff for as long as it takes: a node that cannot catch up has nothing better to
/// do, and the caller (raft's state machine worker) must not install a partial state.
pub async fn catch_up(
    store: &Store,
    target: &Manifest,
    sources: &[String],
    net: &dyn JournalSource,
) -> Result<u64, CatchUpError> {
    let mut applied = 0u64;
    let mut failures = 0usize;
    loop {
        let head = store.head()?;
        if head.cursor > target.head_cursor {
            return Err(CatchUpError::Ahead { local: head.cursor, target: target.head_cursor });
        }
        if head.cursor == target.head_cursor {
            if head.hash != target.head_hash {
                return Err(CatchUpError::Diverged { cursor: head.cursor });
            }
            return Ok(applied);
        }
        if sources.is_empty() {
            return Err(CatchUpError::NoSource);
        }
        let addr = &sources[failures % sources.len()];
        match pull_from(store, target, addr, net, &mut applied).await {
            Ok(()) => {}
            Err(Step::Fatal(e)) => return Err(e),
            Err(Step::Retry(why)) => {
                failures += 1;
                let wait = Duration::from_millis(100 * (1 << failures.min(5)) as u64);
                tracing::warn!(source = %addr, %why, retry_in_ms = wait.as_millis() as u64, "journal pull failed");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// A page that passed the chain check, its records staged in the journal, ready to apply.
struct Verified {
    entries: Vec<Checked>,
}

/// One journal entry that passed the chain check: its stored bytes, as sent, and decoded.
struct Checked {
    raw: Vec<u8>,
    rec: JournalRecord,
    event: parley_storage::Event,
}

/// Pulls pages from one source until the target head is reached or the source fails.
///
/// Two stages run side by side, one page apart, so both cores work: the first fetches a page,
/// checks it and stages its records past the head ([`Store::stage_journal`]); the second
/// applies the previous page to the projections and moves the head, in one atomic commit. A
/// page is always staged before its commit starts, so a head that survives a crash never
/// points past the stored journal.
async fn pull_from(
    store: &Store,
    target: &Manifest,
    addr: &str,
    net: &dyn JournalSource,
    applied: &mut u64,
) -> Result<(), Step> {
    let head = store.head()?;
    let (ready, mut pages) = tokio::sync::mpsc::channel::<Verified>(1);
    let fetch = async move {
        let mut expected = (head.cursor, head.hash);
        // The first page starts at our own head so its first entry proves the journals agree.
        let mut check_link = head.cursor > 0;
        while expected.0 < target.head_cursor {
            let from = if check_link { expected.0 } else { expected.0 + 1 };
            let limit = (target.head_cursor - from + 1).min(MAX_PAGE_ENTRIES as u64) as u32;
            let page = net.page(addr, PageRequest { from, limit }).await.map_err(Step::Retry)?;
            let entries = verify_page(page.entries, &mut expected, &mut check_link, target)?;
            if entries.is_empty() {
                return Err(Step::Retry(format!("source has nothing past cursor {}", expected.0)));
            }
            let staging = store.clone();
            let entries = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
                let mut entries = entries;
                let raw: Vec<(u64, Vec<u8>)> =
                    entries.iter_mut().map(|c| (c.rec.cursor, std::mem::take(&mut c.raw))).collect();
                staging.stage_journal(&raw)?;
                Ok(entries)
            })
            .await
            .map_err(|e| Step::Fatal(CatchUpError::Join(e.to_string())))??;
            if ready.send(Verified { entries }).await.is_err() {
                break;
            }
        }
        Ok::<(), Step>(())
    };
    // `move`: when apply stops, its receiver goes, and the fetch stage stops too.
    let apply = async move {
        while let Some(page) = pages.recv().await {
            let n = page.entries.len() as u64;
            let store = store.clone();
            tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
                let mut tx = store.begin();
                for c in &page.entries {
                    tx.replay_projections(&c.rec, &c.event)?;
                }
                tx.commit().map(|_| ())
            })
            .await
            .map_err(|e| Step::Fatal(CatchUpError::Join(e.to_string())))??;
            *applied += n;
        }
        Ok::<(), Step>(())
    };
    let (fetched, applied_all) = tokio::join!(fetch, apply);
    // An apply failure is the more serious one (the store); report it first.
    applied_all?;
    fetched
}

/// What [`check_page`] accepted: the entries (record and event) and the chain position after
/// them.
pub type CheckedPage = (Vec<(JournalRecord, parley_storage::Event)>, (u64, Hash));

/// The check [`catch_up`] runs on every page a source sends, before anything of it is stored:
/// `expected` is the chain position (cursor, hash) the page must continue, `check_link` whether
/// its first entry must be that position's own entry (the first page of a pull). Returns the
/// entries the pull would stage and apply, and the position after them; `Err` says why the page
/// is refused. Public so the fuzz target (`fuzz/fuzz_targets/snapshot_page.rs`) runs this very
/// check on untrusted page bodies.
pub fn check_page(
    entries: Vec<PageEntry>,
    expected: (u64, Hash),
    check_link: bool,
    target: &Manifest,
) -> Result<CheckedPage, String> {
    let (mut expected, mut check_link) = (expected, check_link);
    match verify_page(entries, &mut expected, &mut check_link, target) {
        Ok(checked) => Ok((checked.into_iter().map(|c| (c.rec, c.event)).collect(), expected)),
        Err(Step::Fatal(e)) => Err(e.to_string()),
        Err(Step::Retry(why)) => Err(why),
    }
}

/// Checks a page against the chain from `expected` (cursor, hash), advancing it; returns the
/// decoded entries to apply. Nothing is returned unless the whole page checks out.
fn verify_page(
    entries: Vec<PageEntry>,
    expected: &mut (u64, Hash),
    check_link: &mut bool,
    target: &Manifest,
) -> Result<Vec<Checked>, Step> {
    let bad = |e: JournalError| Step::Retry(format!("page failed the chain check: {e}"));
    let mut next = *expected;
    let mut out = Vec::with_capacity(entries.len());
    for (i, e) in entries.into_iter().enumerate() {
        let rec = JournalRecord::decode(e.cursor, &e.record).map_err(bad)?;
        let entry = rec.verify().map_err(bad)?;
        if *check_link && i == 0 {
            if rec.cursor != next.0 {
                return Err(Step::Retry(format!("page starts at {} instead of {}", rec.cursor, next.0)));
            }
            if rec.hash != next.1 {
                return Err(Step::Fatal(CatchUpError::Diverged { cursor: rec.cursor }));
            }
            continue;
        }
        if rec.cursor > target.head_cursor {
            break;
        }
        // The last cursor a journal can have has no successor: nothing may follow it (found by
        // fuzzing: `next.0 + 1` overflowed).
        let Some(want) = next.0.checked_add(1) else {
            return Err(Step::Retry(format!("page goes on past cursor {}, the last a journal can have", next.0)));
        };
        if rec.cursor != want {
            return Err(bad(JournalError::Missing { cursor: want }));
        }
        if rec.prev_hash != next.1 {
            return Err(bad(JournalError::BrokenLink { cursor: rec.cursor, prev: next.0 }));
        }
        next = (rec.cursor, rec.hash);
        out.push(Checked { raw: e.record, rec, event: entry.event });
    }
    if next.0 == target.head_cursor && next.1 != target.head_hash {
        return Err(Step::Retry(format!("the source's entry {} does not carry the snapshot's head hash", next.0)));
    }
    *check_link = false;
    *expected = next;
    Ok(out)
}

/// Serves a page of this node's journal: applied entries from `req.from`, consecutive, capped
/// in count and bytes (at least one entry when there is one). Entries staged past the head by
/// an install of this node's own are not served.
pub fn read_page(store: &Store, req: PageRequest) -> Result<Page, StoreError> {
    let limit = req.limit.clamp(1, MAX_PAGE_ENTRIES) as usize;
    let head = store.applied_cursor();
    let mut entries = Vec::new();
    let mut bytes = 0usize;
    let mut scratch = parley_storage::journal::EntryScratch::default();
    for item in store.journal_raw(req.from.max(1)) {
        let (cursor, raw) = item?;
        if cursor > head || entries.len() >= limit || (bytes >= MAX_PAGE_BYTES && !entries.is_empty()) {
            break;
        }
        // Never send an entry this node cannot vouch for: the puller would refuse it anyway
        // (it checks the chain), but a corrupt entry here is this node's fault to report.
        scratch.access(cursor, &raw)?;
        bytes += raw.len();
        entries.push(PageEntry { cursor, record: raw.to_vec() });
    }
    Ok(Page { entries })
}

#[cfg(test)]
mod tests {
    use parley_storage::journal::ZERO_HASH;
    use parley_storage::Event;

    use super::*;

    fn entry(cursor: u64, prev_hash: Hash) -> (PageEntry, JournalRecord) {
        let ev = Event::Blocked { user_id: "alice".into(), target: "bob".into() };
        let rec = JournalRecord::new(cursor, 1000, prev_hash, &ev);
        (PageEntry { cursor, record: parley_storage::codec::encode(&rec) }, rec)
    }

    #[test]
    fn a_page_that_continues_the_chain_is_accepted() {
        let (e1, r1) = entry(1, ZERO_HASH);
        let (e2, r2) = entry(2, r1.hash);
        let target = Manifest { head_cursor: 2, head_hash: r2.hash, source: None, requests: Default::default() };
        let (accepted, end) = check_page(vec![e1, e2], (0, ZERO_HASH), false, &target).unwrap();
        assert_eq!(accepted.len(), 2);
        assert_eq!(end, (2, r2.hash));
        let wrong_head = Manifest { head_hash: r1.hash, ..target };
        let (e1, _) = entry(1, ZERO_HASH);
        let (e2, _) = entry(2, r1.hash);
        assert!(check_page(vec![e1, e2], (0, ZERO_HASH), false, &wrong_head).is_err());
    }

    /// Regression (fuzz target `snapshot_page`, crash-49bd0a4f): a chain position at the last
    /// possible cursor made the successor computation overflow (a panic in debug builds, a
    /// wrap to cursor 0 in release). It is refused instead.
    #[test]
    fn nothing_follows_the_last_possible_cursor() {
        let target =
            Manifest { head_cursor: u64::MAX, head_hash: ZERO_HASH, source: None, requests: Default::default() };
        let (e, _) = entry(5, ZERO_HASH);
        let err = check_page(vec![e], (u64::MAX, ZERO_HASH), false, &target).unwrap_err();
        assert!(err.contains("past cursor"), "{err}");
        // Reaching the last cursor is fine; an entry after it in the same page is refused.
        let (last, r) = entry(u64::MAX, ZERO_HASH);
        let (after, _) = entry(5, r.hash);
        let at_end = Manifest { head_hash: r.hash, ..target.clone() };
        assert!(check_page(vec![last.clone()], (u64::MAX - 1, ZERO_HASH), false, &at_end).is_ok());
        assert!(check_page(vec![last, after], (u64::MAX - 1, ZERO_HASH), false, &at_end).is_err());
    }

    /// The crashing input itself, through the fuzz target's layout: `[flags][expected cursor
    /// LE][target cursor LE][page body]`.
    #[test]
    fn the_fuzz_crash_input_is_refused_without_a_panic() {
        let data = include_bytes!("../tests/fuzz_regressions/snapshot_page-crash-49bd0a4f");
        let expected = u64::from_le_bytes(data[1..9].try_into().unwrap());
        let head_cursor = u64::from_le_bytes(data[9..17].try_into().unwrap());
        let page: Page = crate::wire::decode(&data[17..]).unwrap();
        assert_eq!(data[0], 0b010, "no link check; the expected hash is the first prev_hash");
        let first = JournalRecord::decode(page.entries[0].cursor, &page.entries[0].record).unwrap();
        assert!(first.cursor <= head_cursor && first.verify().is_ok(), "the entry that reached the overflow");
        let target = Manifest { head_cursor, head_hash: ZERO_HASH, source: None, requests: Default::default() };
        assert!(check_page(page.entries, (expected, first.prev_hash), false, &target).is_err());
    }
}
