//! `parley replay`: rebuilds every projection from a data dir's journal into a scratch store
//! (a temp dir, removed afterwards) with the same `apply` the live node runs, and prints the
//! projection digest, which equals the live node's `GET /v1/admin/digest` at the same cursor.
//!
//! The journal is verified as it is read (a replay never trusts a bad entry) and, for a replay
//! to the end, its end is compared with the node's head record, so a truncated tail is caught
//! too. `--until CURSOR` and `--until-ts MS` stop early: the state as of that point in time.

use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::Instant;

use clap::Args;
use parley_storage::journal::{Hash, JournalRecord};
use parley_storage::replay::{Replayer, DEFAULT_BATCH_ENTRIES, DEFAULT_SPILL_WRITES};
use parley_storage::Event;
use parley_storage::Store;
use serde_json::json;

use super::chain::{Chain, DbEntries};
use super::progress::Progress;
use super::{close, open_data_dir, open_db, AuditError, DataDirArgs};

#[derive(Args, Debug)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub dir: DataDirArgs,
    /// Stop after this cursor (inclusive).
    #[arg(long, value_name = "CURSOR", conflicts_with = "until_ts")]
    pub until: Option<u64>,
    /// Stop after the last entry with `ts <= MS` (milliseconds since the Unix epoch).
    #[arg(long, value_name = "MS")]
    pub until_ts: Option<u64>,
    /// Print `{"cursor", "digest", "head_hash", ...}` instead of `cursor N digest HEX`.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub scratch: ScratchArgs,
}

/// Where and how the scratch store is built.
#[derive(Args, Debug, Clone)]
pub struct ScratchArgs {
    /// Directory for the scratch store [default: the system temp dir]; removed afterwards.
    #[arg(long, value_name = "DIR")]
    pub scratch_dir: Option<PathBuf>,
    /// sled page cache of the scratch store, in MiB.
    #[arg(long, default_value_t = 1024, hide = true)]
    pub scratch_cache_mb: u64,
    /// Journal entries per replay commit once the replay no longer fits in memory.
    #[arg(long, default_value_t = DEFAULT_BATCH_ENTRIES, hide = true)]
    pub batch: usize,
    /// Buffered writes the replay keeps in memory before it spills to the scratch store.
    #[arg(long, default_value_t = DEFAULT_SPILL_WRITES, hide = true)]
    pub spill_writes: usize,
}

/// Where a replay stops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Until {
    /// The end of the journal.
    Head,
    /// After this cursor.
    Cursor(u64),
    /// After the last entry with `ts <=` this.
    Ts(u64),
}

impl Until {
    pub fn from_flags(cursor: Option<u64>, ts: Option<u64>) -> Until {
        match (cursor, ts) {
            (Some(c), _) => Until::Cursor(c),
            (None, Some(t)) => Until::Ts(t),
            (None, None) => Until::Head,
        }
    }

    fn stops_before(&self, cursor: u64, ts: u64) -> bool {
        match *self {
            Until::Head => false,
            Until::Cursor(c) => cursor > c,
            Until::Ts(t) => ts > t,
        }
    }
}

/// A store in a temp dir, deleted on drop.
pub struct Scratch {
    // Field order is drop order: the db closes before its directory goes.
    pub store: Store,
    _dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new(args: &ScratchArgs) -> Result<Scratch, AuditError> {
        let mut b = tempfile::Builder::new();
        b.prefix("parley-replay-");
        let dir = match &args.scratch_dir {
            Some(parent) => {
                std::fs::create_dir_all(parent)?;
                b.tempdir_in(parent)
            }
            None => b.tempdir(),
        }
        .map_err(|e| AuditError::Other(format!("cannot create a scratch dir: {e}")))?;
        let db = open_db(&dir.path().join("db"), args.scratch_cache_mb, false)?;
        Ok(Scratch { store: Store::open(db)?, _dir: dir })
    }

    /// Removes the scratch dir without sled's teardown of the store (the process exits next).
    pub fn discard(self) {
        let Scratch { store, _dir } = self;
        std::mem::forget(store);
        drop(_dir);
    }

    /// A replayer into this store, in memory as long as it fits.
    pub fn replayer(&self, args: &ScratchArgs) -> Replayer {
        Replayer::in_memory(&self.store, args.spill_writes, args.batch)
    }

    /// A replayer into this store for `parley state`: in memory as long as it fits, keeping
    /// the journal entries that messages read their bodies from.
    pub fn query_replayer(&self, args: &ScratchArgs) -> Replayer {
        Replayer::for_queries(&self.store, args.spill_writes, args.batch)
    }
}

/// What a replay reached.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Replayed {
    /// The last cursor applied (0 for none).
    pub cursor: u64,
    pub head: Hash,
    /// ts of the last entry applied.
    pub ts: u64,
    pub entries: u64,
}

/// Entries per hand-off from the reading thread to the applying one.
const HANDOFF: usize = 1024;

/// Verified entries in cursor order.
type Batch = Vec<(JournalRecord, Event)>;

/// What the reading thread hands over: a batch, or why it stopped.
type Handoff = Result<Batch, AuditError>;

/// Replays `source`'s journal through `replayer` up to `until`, verifying the chain.
///
/// Two threads: one reads, decodes and verifies the journal, the other applies, with a
/// bounded queue between them (a few thousand entries in flight at most). Applied batches go
/// back to the reader to be freed and refilled: memory is freed by the thread that allocated
/// it, which keeps the allocator's per-thread arenas uncontended.
pub fn replay_store(source: &Store, until: Until, replayer: &mut Replayer) -> Result<Replayed, AuditError> {
    let recorded = source.head()?;
    let total = match until {
        Until::Cursor(c) => c.min(recorded.cursor),
        _ => recorded.cursor,
    };
    let mut progress = Progress::new("replay", total);
    let mut last = Replayed { cursor: 0, head: parley_storage::journal::ZERO_HASH, ts: 0, entries: 0 };
    let (sender, receiver) = std::sync::mpsc::sync_channel::<Handoff>(8);
    let (recycle, recycled) = std::sync::mpsc::sync_channel::<Batch>(16);
    let (applied, stopped_early) = std::thread::scope(|s| {
        let reader = s.spawn(move || read_journal(source, until, &sender, &recycled));
        let mut applied: Result<(), AuditError> = Ok(());
        'batches: for handoff in receiver.iter() {
            let batch = match handoff {
                Ok(batch) => batch,
                Err(e) => {
                    applied = Err(e);
                    break;
                }
            };
            for (rec, event) in &batch {
                if let Err(e) = replayer.push(rec, event) {
                    applied = Err(e.into());
                    break 'batches;
                }
                last = Replayed { cursor: rec.cursor, head: rec.hash, ts: rec.ts, entries: last.entries + 1 };
            }
            progress.inc(batch.len() as u64);
            // If the reader is gone or behind, the batch is simply freed here.
            let _ = recycle.try_send(batch);
        }
        // Unblocks the reader if we stopped first.
        drop(receiver);
        drop(recycle);
        let stopped_early = reader.join().map_err(|_| AuditError::Other("the journal reader panicked".into()));
        (applied, stopped_early)
    });
    progress.finish();
    applied?;
    if !stopped_early? && recorded.cursor != last.cursor {
        // The walk ended cleanly but not where the node says its journal ends.
        return Err(AuditError::bad(
            last.cursor + 1,
            format!(
                "missing: the head record says the journal ends at cursor {}, the chain ends at {} (truncated)",
                recorded.cursor, last.cursor
            ),
        ));
    }
    Ok(last)
}

/// The reading side of [`replay_store`]; returns whether it stopped at `until`.
fn read_journal(source: &Store, until: Until, out: &SyncSender<Handoff>, recycled: &Receiver<Batch>) -> bool {
    let mut batch = Vec::with_capacity(HANDOFF);
    for item in DbEntries::new(source.journal_raw(1), Chain::genesis()) {
        match item {
            Ok((rec, entry)) => {
                if until.stops_before(rec.cursor, rec.ts) {
                    let _ = out.send(Ok(batch));
                    return true;
                }
                batch.push((rec, entry.event));
                if batch.len() == HANDOFF {
                    let next = match recycled.try_recv() {
                        Ok(mut b) => {
                            b.clear();
                            b
                        }
                        Err(_) => Vec::with_capacity(HANDOFF),
                    };
                    if out.send(Ok(std::mem::replace(&mut batch, next))).is_err() {
                        return false;
                    }
                    // Free whatever else came back, here where it was allocated.
                    while recycled.try_recv().is_ok() {}
                }
            }
            Err(e) => {
                let _ = out.send(Ok(batch));
                let _ = out.send(Err(e));
                return false;
            }
        }
    }
    let _ = out.send(Ok(batch));
    false
}

pub fn run(args: ReplayArgs) -> Result<(), String> {
    run_inner(args).map_err(|e| e.to_string())
}

fn run_inner(args: ReplayArgs) -> Result<(), AuditError> {
    let source = open_data_dir(&args.dir.data_dir, args.dir.cache_mb)?;
    let until = Until::from_flags(args.until, args.until_ts);
    let scratch = Scratch::new(&args.scratch)?;
    let started = Instant::now();
    let mut replayer = scratch.replayer(&args.scratch);
    let r = replay_store(&source, until, &mut replayer)?;
    let replay_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let digest = hex::encode(replayer.digest()?);
    let digest_secs = started.elapsed().as_secs_f64();
    // Freeing millions of small allocations one by one takes seconds and the process is about
    // to exit: leave them to the OS. (The scratch directory is still removed on drop.)
    std::mem::forget(replayer);
    let rate = r.entries as f64 / replay_secs.max(1e-9);
    eprintln!(
        "replayed {} entries in {replay_secs:.2} s ({rate:.0} entries/s); digest in {digest_secs:.2} s",
        r.entries
    );
    if let Until::Cursor(c) = until {
        if c > r.cursor {
            eprintln!("note: the journal ends at cursor {}, before --until {c}", r.cursor);
        }
    }
    let line = if args.json {
        json!({
            "cursor": r.cursor,
            "digest": digest,
            "head_hash": hex::encode(r.head),
            "ts": r.ts,
            "entries": r.entries,
            "replay_ms": (replay_secs * 1000.0) as u64,
            "digest_ms": (digest_secs * 1000.0) as u64,
            "entries_per_sec": rate as u64,
        })
        .to_string()
    } else {
        format!("cursor {} digest {digest}", r.cursor)
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    scratch.discard();
    close(source)
}
