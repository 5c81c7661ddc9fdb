//! `parley bench history`: fills N new messages into M direct conversations with C concurrent
//! HTTP senders and shows what the growing history does to the server, one row per slice of
//! the fill (`--rows`, default 10, so a row per 10 %).
//!
//! A row: messages stored so far (by this run), the slice's sends/s, its latency p50/p99/max,
//! its `200`s and errors by code (a `503 unavailable` is a stall: the server could not commit
//! in time), the servers' RSS, and, given `--data-dir` (one per target), the bytes under the
//! dirs' `db/` and `raft/` now and per message: (size now - size at the start of the fill) /
//! messages this run stored, per node, so whatever the server held before the run (and this
//! run's users) is not counted. The end: the last slice's sends/s against the first's, the
//! highest RSS seen (sampled every second), and the exactly-once check of `send` over the
//! conversations (`--check-conversations` bounds how many), read back page by page.
//!
//! Only a `201` counts as a send: every request carries a fresh `client_msg_id`, so a `200`
//! (the server already had it) is counted apart, and so are errors. Slices are by requests
//! completed (`N / rows` each, whatever they came to), so a run with errors still has its rows;
//! a request belongs to the slice in which it completed, and its latency is that of a `201`.
//!
//! Bounded: N requests at most, each with the client's timeout, and `--duration` if given (the
//! last row is then marked partial).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{json, Value};

use super::client::Http;
use super::disk::{DataDirs, DiskUse};
use super::report::{ErrorLog, Latency, Op, Progress, Report, Servers};
use super::send::{check_exactly_once, setup_conversations, AckBook, Crew, Kind, Outcome};
use super::Common;

/// How often the monitor looks for finished slices (their end time is exact; this only delays
/// the row and its RSS and disk readings).
const POLL: Duration = Duration::from_millis(50);
/// How often the servers' RSS is sampled for the maximum.
const RSS_EVERY: Duration = Duration::from_secs(1);
const MIB: f64 = 1024.0 * 1024.0;

/// Flags of `parley bench history`.
#[derive(Args, Debug)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub common: Common,
    /// Messages to fill (requests issued; each a new `client_msg_id`).
    #[arg(short = 'n', long, default_value_t = 100_000)]
    pub messages: u64,
    /// Concurrent HTTP senders.
    #[arg(short = 'c', long, default_value_t = 64)]
    pub concurrency: usize,
    /// Direct conversations (pairs of friends) to fill [default: one per sender].
    #[arg(short = 'm', long)]
    pub conversations: Option<usize>,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 256)]
    pub body_bytes: usize,
    /// Rows to print: one per 1/ROWS of the fill.
    #[arg(long, default_value_t = 10)]
    pub rows: u64,
    /// The targets' data dirs (same order as --target), for disk bytes per message.
    #[arg(long, value_delimiter = ',')]
    pub data_dir: Vec<PathBuf>,
    /// Stop after this many seconds even if the fill is not done.
    #[arg(short = 'd', long)]
    pub duration: Option<f64>,
    /// Check only the first K conversations' histories [default: all].
    #[arg(long)]
    pub check_conversations: Option<usize>,
}

/// One slice of the fill, written by every sender as its requests complete.
#[derive(Default)]
struct Slice {
    latency: Mutex<Latency>,
    created: AtomicU64,
    repeats: AtomicU64,
    errors: ErrorLog,
    /// Requests completed in this slice.
    done: AtomicU64,
    /// When its last request completed, in µs since the fill started.
    end_us: AtomicU64,
}

/// The fill cut into slices of completed requests.
struct Slices {
    /// `bounds[k]..bounds[k + 1]` are the completion numbers of slice `k`.
    bounds: Vec<u64>,
    completed: AtomicU64,
    started: Instant,
    slices: Vec<Slice>,
}

impl Slices {
    fn new(total: u64, rows: u64, started: Instant) -> Slices {
        let rows = rows.clamp(1, total.max(1));
        // u128: N * rows must not overflow for any N a u64 allows.
        let bounds = (0..=rows).map(|k| (u128::from(total) * u128::from(k) / u128::from(rows)) as u64).collect();
        Slices { bounds, completed: AtomicU64::new(0), started, slices: (0..rows).map(|_| Slice::default()).collect() }
    }

    fn rows(&self) -> usize {
        self.slices.len()
    }

    fn size(&self, k: usize) -> u64 {
        self.bounds[k + 1] - self.bounds[k]
    }

    /// Counts one completed request in the slice it completes.
    fn record(&self, outcome: &Outcome, took: Duration) {
        let idx = self.completed.fetch_add(1, Ordering::AcqRel);
        let k = self.bounds[1..].partition_point(|&b| b <= idx).min(self.rows() - 1);
        let s = &self.slices[k];
        match outcome {
            Outcome::Created(_) => {
                s.latency.lock().unwrap_or_else(|p| p.into_inner()).record(took);
                s.created.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Repeat => {
                s.repeats.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Failed(e) => s.errors.add(&e.code, &e.message),
        }
        s.end_us.fetch_max(self.started.elapsed().as_micros() as u64, Ordering::Relaxed);
        // Release: whoever sees `done` reach the slice's size sees everything recorded above.
        s.done.fetch_add(1, Ordering::Release);
    }

    fn finished(&self, k: usize) -> bool {
        self.slices[k].done.load(Ordering::Acquire) >= self.size(k)
    }
}

/// One printed row.
struct Row {
    slice: usize,
    rows: usize,
    partial: bool,
    /// Seconds since the fill started, at the end of the slice.
    at: f64,
    seconds: f64,
    /// `201`s so far (all slices up to this one).
    stored: u64,
    created: u64,
    repeats: u64,
    errors: BTreeMap<String, u64>,
    latency: Latency,
    rss_kb: Vec<Option<u64>>,
    disk: Option<DiskUse>,
    /// Growth since the start per stored message, per node: db, raft, total.
    per_message: Option<[f64; 3]>,
}

impl Row {
    fn sends_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.created as f64 / self.seconds
        } else {
            0.0
        }
    }

    fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    fn rss_total_kb(&self) -> Option<u64> {
        self.rss_kb.iter().copied().sum()
    }

    fn header() -> String {
        format!(
            "{:<10} {:>10} {:>9} {:>8} {:>8} {:>9} {:>6} {:>7} {:>8} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8}  errors by code",
            "# slice",
            "stored",
            "sends/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "200s",
            "errors",
            "RSS MiB",
            "db MiB",
            "raft MiB",
            "disk MiB",
            "B/msg db",
            "B/m raft",
            "B/msg"
        )
    }

    fn line(&self) -> String {
        let opt = |v: Option<f64>, prec: usize| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.prec$}"));
        let disk = |f: fn(&DiskUse) -> u64| opt(self.disk.as_ref().map(|d| f(d) as f64 / MIB), 1);
        let per = |i: usize| opt(self.per_message.map(|p| p[i]), 0);
        let codes: Vec<String> = self.errors.iter().map(|(c, n)| format!("{c}={n}")).collect();
        format!(
            "{:<10} {:>10} {:>9.1} {:>8.2} {:>8.2} {:>9.2} {:>6} {:>7} {:>8} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8}  {}{}",
            format!("row {}/{}", self.slice, self.rows),
            self.stored,
            self.sends_per_second(),
            self.latency.ms(0.5),
            self.latency.ms(0.99),
            self.latency.max_ms(),
            self.repeats,
            self.error_count(),
            opt(self.rss_total_kb().map(|kb| kb as f64 / 1024.0), 1),
            disk(|d| d.db),
            disk(|d| d.raft),
            disk(DiskUse::total),
            per(0),
            per(1),
            per(2),
            if codes.is_empty() { "-".to_owned() } else { codes.join(" ") },
            if self.partial { "  (partial: --duration)" } else { "" },
        )
    }

    fn to_json(&self) -> Value {
        json!({
            "slice": self.slice,
            "partial": self.partial,
            "at_seconds": self.at,
            "seconds": self.seconds,
            "stored": self.stored,
            "sends": self.created,
            "sends_per_second": self.sends_per_second(),
            "p50_ms": self.latency.ms(0.5),
            "p99_ms": self.latency.ms(0.99),
            "max_ms": self.latency.max_ms(),
            "repeats_200": self.repeats,
            "errors": self.errors,
            "rss_kb": self.rss_kb,
            "disk_bytes": self.disk.map(DiskUse::to_json),
            "bytes_per_message": self.per_message.map(|[db, raft, total]| json!({"db": db, "raft": raft, "total": total})),
        })
    }
}

/// What the monitor knows of the run besides the slices.
struct Watch {
    servers: Arc<Servers>,
    dirs: DataDirs,
    disk_start: Option<DiskUse>,
    /// Set once every sender has finished.
    senders_done: Arc<AtomicBool>,
}

/// Prints a row as each slice completes (and a partial one if the senders stop early); returns
/// the rows and the highest total RSS sampled.
async fn monitor(slices: Arc<Slices>, watch: Watch) -> (Vec<Row>, Option<u64>) {
    let mut rows = Vec::with_capacity(slices.rows());
    let mut max_rss = watch.servers.total_rss_kb();
    let mut last_rss = Instant::now();
    let (mut stored, mut prev_end) = (0u64, 0.0f64);
    println!("{}", Row::header());
    let mut k = 0;
    while k < slices.rows() {
        // Read before looking at the slices: when set, every completion is already counted.
        let done = watch.senders_done.load(Ordering::Acquire);
        let complete = slices.finished(k);
        if complete || (done && slices.slices[k].done.load(Ordering::Acquire) > 0) {
            let row = take_row(&slices, k, !complete, &mut stored, &mut prev_end, &watch).await;
            max_rss = max_rss.max(row.rss_total_kb());
            println!("{}", row.line());
            rows.push(row);
            k += 1;
            continue;
        }
        if done {
            break;
        }
        if last_rss.elapsed() >= RSS_EVERY {
            max_rss = max_rss.max(watch.servers.total_rss_kb());
            last_rss = Instant::now();
        }
        tokio::time::sleep(POLL).await;
    }
    (rows, max_rss)
}

async fn take_row(
    slices: &Slices,
    k: usize,
    partial: bool,
    stored: &mut u64,
    prev_end: &mut f64,
    watch: &Watch,
) -> Row {
    let s = &slices.slices[k];
    let created = s.created.load(Ordering::Relaxed);
    *stored += created;
    let end = s.end_us.load(Ordering::Relaxed) as f64 / 1e6;
    let seconds = (end - *prev_end).max(0.0);
    *prev_end = end;
    let disk = match watch.disk_start {
        Some(_) => {
            let dirs = watch.dirs.clone();
            match tokio::task::spawn_blocking(move || dirs.measure()).await {
                Ok(Ok(d)) => Some(d),
                Ok(Err(e)) => {
                    eprintln!("  history: {e}");
                    None
                }
                Err(e) => {
                    eprintln!("  history: disk measurement failed: {e}");
                    None
                }
            }
        }
        None => None,
    };
    let per_message = match (disk, watch.disk_start) {
        (Some(now), Some(start)) if *stored > 0 => {
            let per =
                |now: u64, start: u64| (now as f64 - start as f64) / *stored as f64 / watch.dirs.len().max(1) as f64;
            Some([per(now.db, start.db), per(now.raft, start.raft), per(now.total(), start.total())])
        }
        _ => None,
    };
    let latency = std::mem::take(&mut *s.latency.lock().unwrap_or_else(|p| p.into_inner()));
    Row {
        slice: k + 1,
        rows: slices.rows(),
        partial,
        at: end,
        seconds,
        stored: *stored,
        created,
        repeats: s.repeats.load(Ordering::Relaxed),
        errors: s.errors.snapshot().into_iter().map(|(code, (n, _))| (code, n)).collect(),
        latency,
        rss_kb: watch.servers.rss().iter().map(|r| r.rss_kb).collect(),
        disk,
        per_message,
    }
}

/// Every sender's acknowledgements by request number: `seqs[i][n - 1]` is the seq the `n`th
/// request of sender `i` was acknowledged at (0: not a `201`). Eight bytes a message, where a
/// map of every `client_msg_id` would be ten times that: a 5M fill stays at ~40 MB.
struct Ledger {
    /// The senders' `client_msg_id`s are `<cmid_prefix><i>-<n>`.
    cmid_prefix: String,
    conv_of: Vec<usize>,
    seqs: Vec<Vec<u64>>,
    acked_in: Vec<u64>,
    max_cursor: u64,
}

impl Ledger {
    fn sender_and_number(&self, cmid: &str) -> Option<(usize, usize)> {
        let (i, n) = cmid.strip_prefix(self.cmid_prefix.as_str())?.split_once('-')?;
        Some((i.parse().ok()?, n.parse().ok()?))
    }
}

impl AckBook for Ledger {
    fn acked_seq(&self, conv: usize, cmid: &str) -> Option<u64> {
        let (i, n) = self.sender_and_number(cmid)?;
        if *self.conv_of.get(i)? != conv {
            return None;
        }
        self.seqs.get(i)?.get(n.checked_sub(1)?).copied().filter(|&seq| seq > 0)
    }

    fn acked_in(&self, conv: usize) -> u64 {
        self.acked_in.get(conv).copied().unwrap_or(0)
    }

    fn max_cursor(&self) -> u64 {
        self.max_cursor
    }
}

/// One sender's share of the [`Ledger`].
#[derive(Default)]
struct Own {
    seqs: Vec<u64>,
    max_cursor: u64,
    /// `200`s and errors: messages that may be stored without a `201`.
    not_created: u64,
}

pub async fn run(a: HistoryArgs) -> Result<(), String> {
    let targets = a.common.targets()?;
    let prefix = a.common.prefix()?;
    if a.messages == 0 {
        return Err("--messages must be at least 1".into());
    }
    if !a.data_dir.is_empty() && a.data_dir.len() != targets.len() {
        return Err(format!("{} --data-dir for {} targets: give one per target", a.data_dir.len(), targets.len()));
    }
    let dirs = DataDirs::new(&a.data_dir)?;
    let http = Http::new()?;
    let servers = Arc::new(Servers::resolve(&targets, &a.common.server_pid));
    let c = a.concurrency.max(1);
    let m = a.conversations.unwrap_or(c).max(1);
    eprintln!(
        "history: {} messages of {} bytes, {c} HTTP senders into {m} direct conversations, prefix {prefix}",
        a.messages, a.body_bytes
    );
    let convs = setup_conversations(&http, &targets, &prefix, Kind::Direct, m, c).await?;
    http.wait_applied(&targets, http.head(&targets).await?).await?;

    // Measured after the setup: its users and friendships are not this run's messages.
    let disk_start = if dirs.is_empty() { None } else { Some(dirs.measure()?) };
    let crew = Crew::new(a.body_bytes, 1, Some(a.messages));
    let cmid_prefix = format!("{prefix}h");
    let jobs = crew.spread(c, &targets, &convs, &cmid_prefix);
    let conv_of: Vec<usize> = jobs.iter().map(|j| j.conv).collect();

    let progress = Progress::start("history", "stored", &crew.counters, a.common.quiet);
    let started = Instant::now();
    let slices = Arc::new(Slices::new(a.messages, a.rows, started));
    let senders_done = Arc::new(AtomicBool::new(false));
    let watch = Watch { servers: servers.clone(), dirs, disk_start, senders_done };
    let senders_done = watch.senders_done.clone();
    let monitor = tokio::spawn(monitor(slices.clone(), watch));
    let timer = a.duration.map(|d| crew.stop_after(d));
    let handles: Vec<_> = jobs
        .into_iter()
        .map(|job| {
            let (http, slices) = (http.clone(), slices.clone());
            tokio::spawn(async move {
                let mut own = Own::default();
                job.run_http_each(http, |n, outcome, took| {
                    slices.record(&outcome, took);
                    let n = n as usize;
                    own.seqs.resize(n.max(own.seqs.len()), 0);
                    match outcome {
                        Outcome::Created(acked) => {
                            own.seqs[n - 1] = acked.seq;
                            own.max_cursor = own.max_cursor.max(acked.cursor);
                        }
                        Outcome::Repeat | Outcome::Failed(_) => own.not_created += 1,
                    }
                })
                .await;
                own
            })
        })
        .collect();
    let mut owns = Vec::with_capacity(c);
    for h in handles {
        owns.push(h.await.map_err(|e| format!("sender task failed: {e}"))?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    senders_done.store(true, Ordering::Release);
    if let Some(t) = timer {
        t.abort();
    }
    let (rows, max_rss) = monitor.await.map_err(|e| format!("monitor task failed: {e}"))?;
    drop(progress);

    let mut ledger = Ledger {
        cmid_prefix,
        acked_in: vec![0; m],
        max_cursor: owns.iter().map(|o| o.max_cursor).max().unwrap_or(0),
        seqs: Vec::with_capacity(c),
        conv_of,
    };
    let mut not_created = 0;
    for (i, own) in owns.into_iter().enumerate() {
        ledger.acked_in[ledger.conv_of[i]] += own.seqs.iter().filter(|&&s| s > 0).count() as u64;
        not_created += own.not_created;
        ledger.seqs.push(own.seqs);
    }

    let mut total = Latency::new();
    let (mut created, mut repeats, mut failed) = (0, 0, 0);
    for r in &rows {
        total.merge(&r.latency);
        created += r.created;
        repeats += r.repeats;
        failed += r.error_count();
    }
    let mut report = Report::new("history", &targets);
    report.param("messages", a.messages);
    report.param("concurrency", c as u64);
    report.param("conversations", m as u64);
    report.param("body_bytes", a.body_bytes as u64);
    report.param("rows", rows.len() as u64);
    report.param("nodes", targets.len() as u64);
    report.rss = servers.rss();
    report.errors = crew.errors.snapshot();
    report.ops.push(Op {
        name: "send (201)".into(),
        count: created,
        errors: failed,
        seconds: elapsed,
        latency: Some(total),
    });
    report.ops.push(Op {
        name: "repeat (200, not a send)".into(),
        count: repeats,
        errors: 0,
        seconds: elapsed,
        latency: None,
    });
    if let (Some(first), Some(last)) = (rows.first(), rows.last()) {
        report.figure("first slice", first.sends_per_second(), "sends/s");
        report.figure("last slice", last.sends_per_second(), "sends/s");
        if first.sends_per_second() > 0.0 {
            report.figure("last / first slice", 100.0 * last.sends_per_second() / first.sends_per_second(), "%");
        }
        if let Some(p) = last.per_message {
            report.figure("disk per message, per node (db + raft)", p[2], "bytes");
        }
        if let Some(d) = last.disk {
            report.figure("disk at the end (all data dirs)", d.total() as f64 / MIB, "MiB");
        }
    }
    if let Some(start) = disk_start {
        report.figure("disk at the start (all data dirs)", start.total() as f64 / MIB, "MiB");
    }
    if let Some(kb) = max_rss {
        report.figure("max server RSS (all targets)", kb as f64 / 1024.0, "MiB");
    }
    report.extra("rows", rows.iter().map(Row::to_json).collect::<Vec<_>>());
    report.extra("data_dirs", dirs_json(&a.data_dir, disk_start));
    report.extra("max_rss_kb", json!(max_rss));

    let which: Vec<usize> = (0..m.min(a.check_conversations.unwrap_or(m))).collect();
    eprintln!("  checking the history of {} of {m} conversations ...", which.len());
    let (ok, detail) = check_exactly_once(&http, &targets[0], &convs, &which, &ledger, not_created).await;
    report.check("exactly-once", ok, detail);
    report.finish(a.common.json.as_deref())
}

fn dirs_json(dirs: &[PathBuf], start: Option<DiskUse>) -> Value {
    json!({
        "paths": dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>(),
        "at_start": start.map(DiskUse::to_json),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_split_the_fill_evenly_and_attribute_completions_in_order() {
        let s = Slices::new(25, 10, Instant::now());
        assert_eq!(s.rows(), 10);
        assert_eq!((0..10).map(|k| s.size(k)).sum::<u64>(), 25);
        for _ in 0..5 {
            s.record(&Outcome::Repeat, Duration::from_millis(1));
        }
        // 25 / 10: slices of 2 or 3; the first two hold completions 0..5.
        assert!(s.finished(0) && s.finished(1) && !s.finished(2));
        // Fewer messages than rows: one row per message.
        assert_eq!(Slices::new(3, 10, Instant::now()).rows(), 3);
    }

    #[test]
    fn the_ledger_finds_a_senders_acknowledgement_only_in_its_conversation() {
        let ledger = Ledger {
            cmid_prefix: "b1_h".into(),
            conv_of: vec![0, 1],
            seqs: vec![vec![1, 0, 2], vec![1]],
            acked_in: vec![2, 1],
            max_cursor: 9,
        };
        assert_eq!(ledger.acked_seq(0, "b1_h0-1"), Some(1));
        assert_eq!(ledger.acked_seq(0, "b1_h0-2"), None, "not a 201");
        assert_eq!(ledger.acked_seq(0, "b1_h0-3"), Some(2));
        assert_eq!(ledger.acked_seq(1, "b1_h0-1"), None, "another conversation's sender");
        assert_eq!(ledger.acked_seq(0, "b1_h0-0"), None);
        assert_eq!(ledger.acked_seq(0, "b1_h0-4"), None);
        assert_eq!(ledger.acked_seq(0, "other"), None);
        assert_eq!(ledger.acked_seq(1, "b1_h1-1"), Some(1));
    }
}
