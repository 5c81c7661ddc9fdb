//! Walking a journal, from a data dir or from an export file, checking its hash chain as it
//! goes: each entry decodes (validated), has the next cursor, its hash recomputes and its
//! `prev_hash` is the previous entry's hash. Both walks yield `(record, entry)` pairs in cursor
//! order and stop at the first bad cursor.
//!
//! For an export line "recomputes" means: the JSON parses back into an event
//! ([`super::wire`]), that event re-encodes to the journal's exact bytes, and those bytes hash
//! to the line's `hash`.

use std::io::BufRead;

use parley_storage::journal::{Hash, JournalRecord, ZERO_HASH};
use parley_storage::{Entry, StoreError};

use super::{wire, AuditError};

/// The running state of a chain check.
#[derive(Debug, Clone)]
pub struct Chain {
    /// The cursor the next entry must have.
    next: u64,
    /// The hash the next entry must link to; `None` at the start of a partial walk, whose first
    /// link cannot be checked.
    prev: Option<Hash>,
}

impl Chain {
    /// A walk from the first entry (which links to the zero hash).
    pub fn genesis() -> Chain {
        Chain { next: 1, prev: Some(ZERO_HASH) }
    }

    /// A walk starting at `cursor`, trusting that entry's `prev_hash` (export `--from`).
    pub fn starting_at(cursor: u64) -> Chain {
        Chain { next: cursor.max(1), prev: if cursor <= 1 { Some(ZERO_HASH) } else { None } }
    }

    /// The last cursor checked (the one before the start if none).
    pub fn last_cursor(&self) -> u64 {
        self.next - 1
    }

    /// The last hash checked (the zero hash if none).
    pub fn head(&self) -> Hash {
        self.prev.unwrap_or(ZERO_HASH)
    }

    /// The cursor the next entry must have.
    pub fn next_cursor(&self) -> u64 {
        self.next
    }

    /// Checks a stored record found under the key `key_cursor`.
    pub fn check_stored(&mut self, key_cursor: u64, bytes: &[u8]) -> Result<(JournalRecord, Entry), AuditError> {
        if key_cursor != self.next {
            return Err(AuditError::bad(
                self.next,
                format!("missing (the next stored entry is cursor {key_cursor}: an entry was deleted or moved)"),
            ));
        }
        let rec = JournalRecord::decode(key_cursor, bytes)?;
        let entry = rec.verify()?;
        self.link(&rec)?;
        Ok((rec, entry))
    }

    /// Checks a record rebuilt from an export line (its hash already recomputed).
    fn check_rebuilt(&mut self, rec: &JournalRecord) -> Result<(), AuditError> {
        self.link(rec)
    }

    /// Skips ahead to `cursor` without a link (a filtered export with gaps).
    fn jump(&mut self, cursor: u64) {
        if cursor != self.next {
            self.next = cursor;
            self.prev = None;
        }
    }

    fn link(&mut self, rec: &JournalRecord) -> Result<(), AuditError> {
        if let Some(prev) = self.prev {
            if rec.prev_hash != prev {
                return Err(AuditError::bad(
                    rec.cursor,
                    format!("prev_hash does not link to cursor {}'s hash", rec.cursor - 1),
                ));
            }
        }
        self.next = rec.cursor + 1;
        self.prev = Some(rec.hash);
        Ok(())
    }
}

/// The entries of a data dir's journal from a cursor on, checked.
pub struct DbEntries<I> {
    raw: I,
    chain: Chain,
    done: bool,
}

impl<I> DbEntries<I>
where
    I: Iterator<Item = Result<(u64, sled::IVec), StoreError>>,
{
    /// `raw` is `Store::journal_raw(chain.next_cursor())`.
    pub fn new(raw: I, chain: Chain) -> Self {
        DbEntries { raw, chain, done: false }
    }

    pub fn checked(&self) -> &Chain {
        &self.chain
    }
}

impl<I> Iterator for DbEntries<I>
where
    I: Iterator<Item = Result<(u64, sled::IVec), StoreError>>,
{
    type Item = Result<(JournalRecord, Entry), AuditError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = match self.raw.next()? {
            Ok((cursor, bytes)) => self.chain.check_stored(cursor, &bytes),
            Err(e) => Err(e.into()),
        };
        self.done = item.is_err();
        Some(item)
    }
}

/// The entries of an export file (JSON lines), checked.
pub struct ExportEntries<R> {
    reader: R,
    chain: Chain,
    /// Gaps allowed (a filtered export): only entries with consecutive cursors are linked.
    partial: bool,
    line_no: u64,
    buf: Vec<u8>,
    done: bool,
}

impl<R: BufRead> ExportEntries<R> {
    /// A full export starts at cursor 1; a `partial` one anywhere, with gaps.
    pub fn new(reader: R, partial: bool) -> Self {
        let chain = if partial { Chain::starting_at(0) } else { Chain::genesis() };
        ExportEntries { reader, chain, partial, line_no: 0, buf: Vec::new(), done: false }
    }

    pub fn checked(&self) -> &Chain {
        &self.chain
    }

    fn next_entry(&mut self) -> Option<Result<(JournalRecord, Entry), AuditError>> {
        self.buf.clear();
        match self.reader.read_until(b'\n', &mut self.buf) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) => return Some(Err(e.into())),
        }
        self.line_no += 1;
        let n = self.line_no;
        let expected = self.chain.next_cursor();
        let line = self.buf.strip_suffix(b"\n").unwrap_or(&self.buf);
        let value: serde_json::Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(e) => return Some(Err(AuditError::bad(expected, format!("line {n} is not a valid entry: {e}")))),
        };
        let claimed = wire::claimed_cursor(&value);
        if self.partial {
            match claimed {
                Some(c) if c >= expected => self.chain.jump(c),
                Some(c) => {
                    return Some(Err(AuditError::bad(
                        expected,
                        format!("line {n} holds cursor {c}, not after the previous line's (lines out of order)"),
                    )))
                }
                None => return Some(Err(AuditError::bad(expected, format!("line {n} has no cursor")))),
            }
        } else if claimed != Some(expected) {
            let why = match claimed {
                Some(c) if c > expected => {
                    format!("missing (line {n} holds cursor {c}: an entry was deleted or lines were reordered)")
                }
                Some(c) => format!("line {n} holds cursor {c} where {expected} belongs (lines reordered or repeated)"),
                None => format!("line {n} has no cursor"),
            };
            return Some(Err(AuditError::bad(expected, why)));
        }
        let cursor = self.chain.next_cursor();
        let entry = match wire::entry_from_json(&value) {
            Ok(e) => e,
            Err(why) => return Some(Err(AuditError::bad(cursor, format!("line {n}: {why}")))),
        };
        let rec = JournalRecord::new(entry.cursor, entry.ts, entry.prev_hash, &entry.event);
        if rec.hash != entry.hash {
            return Some(Err(AuditError::bad(cursor, "hash does not recompute (the entry was changed)")));
        }
        if let Err(e) = self.chain.check_rebuilt(&rec) {
            return Some(Err(e));
        }
        Some(Ok((rec, entry)))
    }
}

impl<R: BufRead> Iterator for ExportEntries<R> {
    type Item = Result<(JournalRecord, Entry), AuditError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.next_entry();
        self.done = !matches!(item, Some(Ok(_)));
        item
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parley_storage::Event;
    use parley_wire::storage::journal_entry;

    fn lines(n: u64) -> Vec<String> {
        let mut prev = ZERO_HASH;
        (1..=n)
            .map(|c| {
                let ev = Event::FriendRequested { from: "alice".into(), to: format!("user{c}"), note: "hello".into() };
                let rec = JournalRecord::new(c, 100 + c, prev, &ev);
                prev = rec.hash;
                parley_wire::canonical_text(&journal_entry(&rec.verify().unwrap())).unwrap()
            })
            .collect()
    }

    fn check(lines: &[String], partial: bool) -> Result<(u64, Hash), AuditError> {
        let text = lines.iter().map(|l| format!("{l}\n")).collect::<String>();
        let mut it = ExportEntries::new(text.as_bytes(), partial);
        for item in it.by_ref() {
            item?;
        }
        Ok((it.checked().last_cursor(), it.checked().head()))
    }

    #[test]
    fn a_good_export_verifies() {
        let l = lines(6);
        assert_eq!(check(&l, false).unwrap().0, 6);
    }

    #[test]
    fn every_single_bit_flip_of_a_line_is_caught_at_its_cursor() {
        let l = lines(4);
        let target = 3;
        let original = l[target - 1].clone().into_bytes();
        for i in 0..original.len() {
            for bit in [0x01u8, 0x20, 0x80] {
                let mut bytes = original.clone();
                bytes[i] ^= bit;
                if bytes[i] == b'\n' {
                    continue; // a new line break: covered by the split-line cases below
                }
                let mut tampered = l.clone();
                tampered[target - 1] = String::from_utf8_lossy(&bytes).into_owned();
                let err = check(&tampered, false).expect_err(&format!("flip {bit:#x} at byte {i} went unnoticed"));
                assert_eq!(err.bad_cursor(), Some(target as u64), "flip {bit:#x} at byte {i}: {err}");
            }
        }
    }

    #[test]
    fn dropped_swapped_and_repeated_lines_are_caught() {
        let l = lines(5);
        let mut dropped = l.clone();
        dropped.remove(2);
        assert_eq!(check(&dropped, false).unwrap_err().bad_cursor(), Some(3));
        let mut swapped = l.clone();
        swapped.swap(1, 2);
        assert_eq!(check(&swapped, false).unwrap_err().bad_cursor(), Some(2));
        let mut repeated = l.clone();
        repeated.insert(2, l[1].clone());
        assert_eq!(check(&repeated, false).unwrap_err().bad_cursor(), Some(3));
        let first_dropped = l[1..].to_vec();
        assert_eq!(check(&first_dropped, false).unwrap_err().bad_cursor(), Some(1));
    }

    #[test]
    fn a_partial_export_checks_hashes_and_the_links_it_can() {
        let l = lines(6);
        let filtered = vec![l[1].clone(), l[2].clone(), l[4].clone()];
        assert_eq!(check(&filtered, true).unwrap().0, 5);
        assert!(check(&filtered, false).is_err());
        let mut bad = filtered.clone();
        bad[2] = bad[2].replace("hello", "hellO");
        assert_eq!(check(&bad, true).unwrap_err().bad_cursor(), Some(5));
    }
}
