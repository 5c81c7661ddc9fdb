//! Measuring and reporting: HDR latency histograms, live progress on stderr, the final table on
//! stdout (and optionally one JSON line appended to a file, which `scripts/plot.py` reads), and
//! the resident memory of local servers.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::client::Target;

/// Latencies in microseconds, 1 µs to 10 min, 3 significant digits.
pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    pub fn new() -> Latency {
        // The bounds are constants that hdrhistogram accepts (low >= 1, high >= 2 * low,
        // sigfig <= 5), so this cannot fail.
        #[allow(clippy::expect_used)]
        Latency(Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds"))
    }

    pub fn record(&mut self, d: Duration) {
        self.0.saturating_record((d.as_micros() as u64).max(1));
    }

    pub fn merge(&mut self, other: &Latency) {
        // Both have the same bounds, so adding cannot overflow the range.
        let _ = self.0.add(&other.0);
    }

    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// Milliseconds at quantile `q` (0 when empty).
    pub fn ms(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.max() as f64 / 1000.0
    }
}

/// Shared counters a progress line reads.
#[derive(Clone, Default)]
pub struct Counters {
    pub ops: Arc<AtomicU64>,
    pub errors: Arc<AtomicU64>,
}

impl Counters {
    pub fn op(&self) {
        self.ops.fetch_add(1, Ordering::Relaxed);
    }

    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// Error counts by code, shared by workers.
#[derive(Clone, Default)]
pub struct ErrorLog(Arc<Mutex<BTreeMap<String, (u64, String)>>>);

impl ErrorLog {
    pub fn add(&self, code: &str, message: &str) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let e = m.entry(code.to_owned()).or_insert_with(|| (0, message.to_owned()));
        e.0 += 1;
    }

    pub fn snapshot(&self) -> BTreeMap<String, (u64, String)> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Prints a progress line to stderr every second until dropped.
pub struct Progress {
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    pub fn start(label: &str, unit: &'static str, counters: &Counters, quiet: bool) -> Progress {
        let (label, c) = (label.to_owned(), counters.clone());
        let task = tokio::spawn(async move {
            if quiet {
                return;
            }
            let started = Instant::now();
            let mut last = 0u64;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                let ops = c.ops.load(Ordering::Relaxed);
                let errors = c.errors.load(Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64();
                eprintln!(
                    "  [{label} {secs:>4.0}s] {ops:>9} {unit}  {:>9.0}/s avg  {:>9}/s now  errors {errors}",
                    ops as f64 / secs,
                    ops - last
                );
                last = ops;
            }
        });
        Progress { task }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One row of the result table.
pub struct Op {
    pub name: String,
    pub count: u64,
    pub errors: u64,
    /// Throughput is `count / seconds`.
    pub seconds: f64,
    pub latency: Option<Latency>,
}

/// A pass/fail check (exactly-once and the like).
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// The result of one scenario run.
pub struct Report {
    pub scenario: String,
    pub targets: Vec<String>,
    pub params: Vec<(String, Value)>,
    pub ops: Vec<Op>,
    pub errors: BTreeMap<String, (u64, String)>,
    pub checks: Vec<Check>,
    /// Extra figures: name, value, unit.
    pub figures: Vec<(String, f64, String)>,
    pub rss: Vec<ServerRss>,
    /// Scenario-specific parts of the JSON line (top-level keys), e.g. `history`'s rows.
    pub extra: Vec<(String, Value)>,
}

/// A local server's resident memory.
pub struct ServerRss {
    pub target: String,
    pub pid: Option<u32>,
    pub rss_kb: Option<u64>,
}

impl Report {
    pub fn new(scenario: &str, targets: &[Target]) -> Report {
        Report {
            scenario: scenario.to_owned(),
            targets: targets.iter().map(|t| t.base.clone()).collect(),
            params: Vec::new(),
            ops: Vec::new(),
            errors: BTreeMap::new(),
            checks: Vec::new(),
            figures: Vec::new(),
            rss: Vec::new(),
            extra: Vec::new(),
        }
    }

    pub fn param(&mut self, name: &str, v: impl Into<Value>) {
        self.params.push((name.to_owned(), v.into()));
    }

    pub fn figure(&mut self, name: &str, value: f64, unit: &str) {
        self.figures.push((name.to_owned(), value, unit.to_owned()));
    }

    /// A top-level key of the JSON line only (not printed).
    pub fn extra(&mut self, name: &str, v: impl Into<Value>) {
        self.extra.push((name.to_owned(), v.into()));
    }

    pub fn check(&mut self, name: &str, ok: bool, detail: impl Into<String>) {
        self.checks.push(Check { name: name.to_owned(), ok, detail: detail.into() });
    }

    /// Prints the table, appends the JSON line, and fails when a check failed.
    pub fn finish(self, json_path: Option<&std::path::Path>) -> Result<(), String> {
        self.print();
        if let Some(p) = json_path {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| format!("cannot open {}: {e}", p.display()))?;
            writeln!(f, "{}", self.to_json()).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
        }
        let failed: Vec<&str> = self.checks.iter().filter(|c| !c.ok).map(|c| c.name.as_str()).collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(format!("bench {}: check failed: {}", self.scenario, failed.join(", ")))
        }
    }

    fn print(&self) {
        let params: Vec<String> = self.params.iter().map(|(k, v)| format!("{k}={}", plain(v))).collect();
        println!();
        println!("scenario {}  ({})  {}", self.scenario, params.join(" "), today());
        println!("targets  {}", self.targets.join(" "));
        println!(
            "{:<22} {:>10} {:>8} {:>12} {:>9} {:>9} {:>9} {:>9}",
            "operation", "count", "errors", "per second", "p50 ms", "p90 ms", "p99 ms", "max ms"
        );
        for op in &self.ops {
            let rate = if op.seconds > 0.0 { op.count as f64 / op.seconds } else { 0.0 };
            match &op.latency {
                Some(l) => println!(
                    "{:<22} {:>10} {:>8} {:>12.1} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                    op.name,
                    op.count,
                    op.errors,
                    rate,
                    l.ms(0.5),
                    l.ms(0.9),
                    l.ms(0.99),
                    l.max_ms()
                ),
                None => println!(
                    "{:<22} {:>10} {:>8} {:>12.1} {:>9} {:>9} {:>9} {:>9}",
                    op.name, op.count, op.errors, rate, "-", "-", "-", "-"
                ),
            }
        }
        for (name, value, unit) in &self.figures {
            println!("{}", format!("{name}: {value:.1} {unit}").trim_end());
        }
        for (code, (n, example)) in &self.errors {
            println!("error {code}: {n} (e.g. {example})");
        }
        for r in &self.rss {
            match (r.pid, r.rss_kb) {
                (Some(pid), Some(kb)) => {
                    println!("server RSS {} (pid {pid}): {:.1} MiB", r.target, kb as f64 / 1024.0)
                }
                _ => println!("server RSS {}: unknown (not local, or pass --server-pid)", r.target),
            }
        }
        for c in &self.checks {
            println!("{}: {} ({})", c.name, if c.ok { "ok" } else { "FAILED" }, c.detail);
        }
    }

    pub fn to_json(&self) -> Value {
        let params: serde_json::Map<String, Value> = self.params.iter().cloned().collect();
        let ops: Vec<Value> = self
            .ops
            .iter()
            .map(|op| {
                let rate = if op.seconds > 0.0 { op.count as f64 / op.seconds } else { 0.0 };
                let mut v = json!({"name": op.name, "count": op.count, "errors": op.errors,
                                   "seconds": op.seconds, "per_second": rate});
                if let Some(l) = &op.latency {
                    v["p50_ms"] = json!(l.ms(0.5));
                    v["p90_ms"] = json!(l.ms(0.9));
                    v["p99_ms"] = json!(l.ms(0.99));
                    v["p999_ms"] = json!(l.ms(0.999));
                    v["max_ms"] = json!(l.max_ms());
                }
                v
            })
            .collect();
        let figures: serde_json::Map<String, Value> =
            self.figures.iter().map(|(k, v, _)| (k.clone(), json!(v))).collect();
        let errors: serde_json::Map<String, Value> =
            self.errors.iter().map(|(k, (n, _))| (k.clone(), json!(n))).collect();
        let mut line = json!({
            "scenario": self.scenario,
            "date": today(),
            "unix_time": SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
            "targets": self.targets,
            "params": params,
            "ops": ops,
            "figures": figures,
            "errors": errors,
            "checks": self.checks.iter().map(|c| json!({"name": c.name, "ok": c.ok, "detail": c.detail})).collect::<Vec<_>>(),
            "rss_kb": self.rss.iter().map(|r| json!(r.rss_kb)).collect::<Vec<_>>(),
        });
        for (k, v) in &self.extra {
            line[k.as_str()] = v.clone();
        }
        line
    }
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Today's date (UTC) as `YYYY-MM-DD`.
pub fn today() -> String {
    let days = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() / 86_400).unwrap_or(0) as i64;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The servers behind the targets, for RSS: explicit pids, else found by listening port when
/// the target is on this machine.
pub struct Servers {
    entries: Vec<(String, Option<u32>)>,
}

impl Servers {
    pub fn resolve(targets: &[Target], explicit: &[u32]) -> Servers {
        let entries = targets
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let pid = explicit
                    .get(i)
                    .copied()
                    .or_else(|| t.is_local().then(|| pid_listening_on(t.addr.port())).flatten());
                (t.base.clone(), pid)
            })
            .collect();
        Servers { entries }
    }

    pub fn rss(&self) -> Vec<ServerRss> {
        self.entries
            .iter()
            .map(|(t, pid)| ServerRss { target: t.clone(), pid: *pid, rss_kb: pid.and_then(rss_kb) })
            .collect()
    }

    /// Total RSS of the known servers, in KiB (None if any is unknown).
    pub fn total_rss_kb(&self) -> Option<u64> {
        self.rss().iter().map(|r| r.rss_kb).sum()
    }

    pub fn pid(&self, i: usize) -> Option<u32> {
        self.entries.get(i).and_then(|e| e.1)
    }
}

/// `VmRSS` of a process, in KiB.
pub fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The process with a TCP socket listening on `port` (any local address): the socket's inode
/// from `/proc/net/tcp{,6}`, then the process holding that inode among `/proc/*/fd`.
pub fn pid_listening_on(port: u16) -> Option<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 10 || cols[3] != "0A" {
                continue;
            }
            let local_port = cols[1].rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) {
                inodes.push(format!("socket:[{}]", cols[9]));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let me = std::process::id();
    for proc_entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = proc_entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(proc_entry.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            if let Ok(link) = std::fs::read_link(fd.path()) {
                if inodes.iter().any(|i| link.as_os_str() == i.as_str()) {
                    return Some(pid);
                }
            }
        }
    }
    None
}

/// Raises this process's open-file limit to at least `want` (the soft limit up to the hard one;
/// the hard one too when privileged). Returns the resulting soft limit.
pub fn raise_nofile(want: u64) -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur >= want {
            return lim.rlim_cur;
        }
        let raised = libc::rlimit { rlim_cur: want.max(lim.rlim_cur), rlim_max: want.max(lim.rlim_max) };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
            return raised.rlim_cur;
        }
        let soft = libc::rlimit { rlim_cur: lim.rlim_max.min(want), rlim_max: lim.rlim_max };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &soft) == 0 {
            return soft.rlim_cur;
        }
        lim.rlim_cur
    }
}

/// The soft open-file limit of another process, from `/proc/<pid>/limits`.
pub fn nofile_of(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}
