//! `parley audit verify`: walks a journal's hash chain from its first entry and names the first
//! bad cursor.
//!
//! Detects a changed byte anywhere in an entry (it no longer decodes, or its hash no longer
//! recomputes), a deleted entry (a gap in the cursors), entries swapped or moved (an entry
//! stored under another cursor's key, or a line out of place), and, against a head recorded
//! earlier (`--expect-head`), a truncated or rewritten tail. For a data dir it also compares
//! the chain's end with the head record the node keeps beside it.

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::PathBuf;

use clap::Args;
use parley_storage::journal::Hash;
use parley_storage::Store;
use serde_json::json;

use super::chain::{Chain, DbEntries, ExportEntries};
use super::progress::Progress;
use super::{close, open_data_dir, AuditError};

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["data_dir", "from_export"])))]
pub struct VerifyArgs {
    /// The node's data dir (the node must be stopped).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Verify an export file (JSON lines from `parley export`) instead; `-` reads stdin.
    #[arg(long, value_name = "FILE")]
    pub from_export: Option<PathBuf>,
    /// A head recorded earlier, `HASH` or `CURSOR:HASH`: it must still be in the chain, so a
    /// truncated or rewritten tail is caught.
    #[arg(long, value_name = "[CURSOR:]HASH")]
    pub expect_head: Option<String>,
    /// The export is filtered (`--from`, `--user`, ...): allow gaps, check every entry's hash
    /// and the links between consecutive cursors.
    #[arg(long, requires = "from_export")]
    pub partial: bool,
    /// Print `{"ok", "last_cursor", "head_hash"}` or `{"ok": false, "bad_cursor", "error"}`.
    #[arg(long)]
    pub json: bool,
    /// sled page cache of the data dir, in MiB.
    #[arg(long, default_value_t = 256, hide = true)]
    pub cache_mb: u64,
}

/// A head to find in the chain.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExpectedHead {
    pub cursor: Option<u64>,
    pub hash: Hash,
}

impl ExpectedHead {
    pub fn parse(s: &str) -> Result<ExpectedHead, String> {
        let (cursor, hash) = match s.split_once(':') {
            Some((c, h)) => (Some(c.parse::<u64>().map_err(|_| format!("bad cursor in --expect-head {s:?}"))?), h),
            None => (None, s),
        };
        let mut out = [0u8; 32];
        hex::decode_to_slice(hash, &mut out).map_err(|_| format!("--expect-head: {hash:?} is not 64 hex digits"))?;
        Ok(ExpectedHead { cursor, hash: out })
    }
}

/// Watches a walk for an expected head.
struct HeadWatch {
    expected: Option<ExpectedHead>,
    found: Option<u64>,
    /// The hash at the expected cursor, when one was given and reached.
    at_cursor: Option<Hash>,
}

impl HeadWatch {
    fn new(expected: Option<ExpectedHead>) -> Self {
        HeadWatch { expected, found: None, at_cursor: None }
    }

    fn see(&mut self, cursor: u64, hash: &Hash) {
        let Some(exp) = self.expected else { return };
        if exp.cursor.is_some_and(|c| c != cursor) {
            return;
        }
        if exp.cursor.is_some() {
            self.at_cursor = Some(*hash);
        }
        if *hash == exp.hash && self.found.is_none() {
            self.found = Some(cursor);
        }
    }

    /// After a clean walk ending at `last`.
    fn finish(&self, last: u64, head: &Hash) -> Result<(), AuditError> {
        let Some(exp) = self.expected else { return Ok(()) };
        if self.found.is_some() {
            return Ok(());
        }
        let want = hex::encode(exp.hash);
        match (exp.cursor, self.at_cursor) {
            (Some(c), Some(actual)) => Err(AuditError::bad(
                c,
                format!("hash {} differs from the expected head {want} (rewritten)", hex::encode(actual)),
            )),
            (Some(c), None) => Err(AuditError::bad(
                last + 1,
                format!("missing: the expected head is cursor {c} ({want}) but the journal ends at cursor {last} (truncated)"),
            )),
            (None, _) => Err(AuditError::bad(
                last + 1,
                format!(
                    "missing: the expected head {want} is not in the chain, which ends at cursor {last} with {} (truncated or rewritten)",
                    hex::encode(head)
                ),
            )),
        }
    }
}

/// The result of a clean walk.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verified {
    pub last_cursor: u64,
    pub head: Hash,
}

/// Verifies a data dir's journal, and that the node's head record agrees with its end.
pub fn verify_store(store: &Store, expected: Option<ExpectedHead>) -> Result<Verified, AuditError> {
    let recorded = store.head()?;
    let mut progress = Progress::new("verify", recorded.cursor);
    let mut watch = HeadWatch::new(expected);
    let mut entries = DbEntries::new(store.journal_raw(1), Chain::genesis());
    for item in entries.by_ref() {
        let (rec, _) = item?;
        watch.see(rec.cursor, &rec.hash);
        progress.inc(1);
    }
    progress.finish();
    let chain = entries.checked();
    let (last, head) = (chain.last_cursor(), chain.head());
    if recorded.cursor > last {
        return Err(AuditError::bad(
            last + 1,
            format!(
                "missing: the head record says the journal ends at cursor {}, the chain ends at {last} (truncated)",
                recorded.cursor
            ),
        ));
    }
    if recorded.cursor < last {
        return Err(AuditError::bad(
            recorded.cursor + 1,
            format!("entries after the recorded head (cursor {}): appended outside the node", recorded.cursor),
        ));
    }
    if recorded.hash != head {
        return Err(AuditError::bad(last, "the head record's hash differs from this entry's (rewritten)"));
    }
    watch.finish(last, &head)?;
    Ok(Verified { last_cursor: last, head })
}

/// Verifies an export file.
pub fn verify_export(
    reader: impl std::io::BufRead,
    partial: bool,
    expected: Option<ExpectedHead>,
) -> Result<Verified, AuditError> {
    let mut watch = HeadWatch::new(expected);
    let mut progress = Progress::new("verify", 0);
    let mut entries = ExportEntries::new(reader, partial);
    for item in entries.by_ref() {
        let (rec, _) = item?;
        watch.see(rec.cursor, &rec.hash);
        progress.inc(1);
    }
    progress.finish();
    let chain = entries.checked();
    let (last, head) = (chain.last_cursor(), chain.head());
    watch.finish(last, &head)?;
    Ok(Verified { last_cursor: last, head })
}

/// Opens an export file, `-` being stdin.
pub fn open_export(path: &std::path::Path) -> Result<Box<dyn std::io::BufRead>, AuditError> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(BufReader::with_capacity(1 << 20, std::io::stdin())));
    }
    let f = File::open(path).map_err(|e| AuditError::Other(format!("cannot open {}: {e}", path.display())))?;
    Ok(Box::new(BufReader::with_capacity(1 << 20, f)))
}

pub fn run(args: VerifyArgs) -> Result<(), String> {
    let expected = args.expect_head.as_deref().map(ExpectedHead::parse).transpose()?;
    let result = match (&args.data_dir, &args.from_export) {
        (_, Some(file)) => open_export(file).and_then(|r| verify_export(r, args.partial, expected)),
        (Some(dir), None) => open_data_dir(dir, args.cache_mb).and_then(|s| {
            let verified = verify_store(&s, expected);
            close(s)?;
            verified
        }),
        (None, None) => Err(AuditError::Other("give --data-dir or --from-export".into())),
    };
    let mut out = std::io::stdout().lock();
    let line = match &result {
        Ok(v) if args.json => {
            json!({"ok": true, "last_cursor": v.last_cursor, "head_hash": hex::encode(v.head)}).to_string()
        }
        Ok(v) => format!("ok {} {}", v.last_cursor, hex::encode(v.head)),
        Err(e @ AuditError::Bad { why, .. }) if args.json => {
            json!({"ok": false, "bad_cursor": e.bad_cursor(), "error": e.to_string(), "why": why}).to_string()
        }
        Err(AuditError::Bad { cursor, why }) => format!("bad {cursor} {why}"),
        // Could not run at all (locked, unreadable): no verdict on stdout.
        Err(e) => return Err(e.to_string()),
    };
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    match result {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("the journal is not intact: {e}")),
    }
}
