//! Progress of a long walk over the journal: an indicatif bar when stderr is a terminal, a
//! plain line every few seconds otherwise (logs, CI, pipes), nothing on stdout.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often the plain-line mode prints.
const PLAIN_EVERY: Duration = Duration::from_secs(5);
/// Entries between updates of the shared counter (keeps the hot loop cheap).
const CHUNK: u64 = 4096;

pub struct Progress {
    label: &'static str,
    total: u64,
    done: u64,
    pending: u64,
    bar: Option<ProgressBar>,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    /// `total` entries expected (0 when unknown).
    pub fn new(label: &'static str, total: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = if total > 0 { ProgressBar::new(total) } else { ProgressBar::new_spinner() };
            bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(4));
            let template = if total > 0 {
                "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} entries (eta {eta})"
            } else {
                "{prefix} [{elapsed_precise}] {spinner} {pos} entries"
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style);
            }
            bar.set_prefix(label);
            bar
        });
        let now = Instant::now();
        Progress { label, total, done: 0, pending: 0, bar, started: now, last_line: now }
    }

    /// Counts `n` more entries.
    pub fn inc(&mut self, n: u64) {
        self.pending += n;
        if self.pending < CHUNK {
            return;
        }
        self.flush_pending();
    }

    fn flush_pending(&mut self) {
        self.done += self.pending;
        if let Some(bar) = &self.bar {
            bar.inc(self.pending);
        } else if self.last_line.elapsed() >= PLAIN_EVERY {
            self.last_line = Instant::now();
            let rate = self.done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            if self.total > 0 {
                eprintln!("{}: {}/{} entries ({rate:.0}/s)", self.label, self.done, self.total);
            } else {
                eprintln!("{}: {} entries ({rate:.0}/s)", self.label, self.done);
            }
        }
        self.pending = 0;
    }

    /// Removes the bar (the caller prints its own summary).
    pub fn finish(&mut self) {
        self.flush_pending();
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.abandon();
        }
    }
}
