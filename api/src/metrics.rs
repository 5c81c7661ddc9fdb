//! Prometheus counters and gauges of a node, rendered in the text exposition format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
pub struct Metrics {
    pub http_requests: Counter,
    pub http_errors_4xx: Counter,
    pub http_errors_5xx: Counter,
    /// Commands this node proposed and saw applied.
    pub commands: Counter,
    /// Journal entries applied on this node.
    pub entries_applied: Counter,
    pub ws_open: Counter,
    pub ws_slow_closed: Counter,
    /// Requests refused by a per-source-IP limit.
    pub rate_limited: Counter,
}

/// Values read from elsewhere at scrape time.
pub struct Gauges {
    pub applied_cursor: u64,
    pub raft_term: u64,
    pub raft_last_applied: u64,
    pub is_leader: bool,
}

impl Metrics {
    pub fn render(&self, g: &Gauges) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        };
        metric("parley_http_requests_total", "counter", "HTTP requests served.", self.http_requests.get());
        metric("parley_http_client_errors_total", "counter", "HTTP 4xx answers.", self.http_errors_4xx.get());
        metric("parley_http_server_errors_total", "counter", "HTTP 5xx answers.", self.http_errors_5xx.get());
        metric("parley_commands_total", "counter", "Commands proposed through raft and applied.", self.commands.get());
        metric("parley_commits_total", "counter", "Journal entries applied on this node.", self.entries_applied.get());
        metric("parley_applied_cursor", "gauge", "Journal cursor applied on this node.", g.applied_cursor);
        metric("parley_raft_term", "gauge", "Current raft term.", g.raft_term);
        metric("parley_raft_last_applied_index", "gauge", "Last raft log index applied.", g.raft_last_applied);
        metric("parley_raft_is_leader", "gauge", "1 if this node is the raft leader.", u64::from(g.is_leader));
        metric("parley_websockets_open", "gauge", "Open WebSocket connections.", self.ws_open.get());
        metric(
            "parley_websockets_slow_closed_total",
            "counter",
            "WebSockets closed with 1013 (slow consumer).",
            self.ws_slow_closed.get(),
        );
        metric(
            "parley_ip_rate_limited_total",
            "counter",
            "Requests refused by a per-source-IP limit (logins, registrations, admin).",
            self.rate_limited.get(),
        );
        out
    }
}
