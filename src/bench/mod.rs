//! `parley bench <scenario> --target URL[,URL...]`: a load generator for a running node or
//! cluster, speaking the public HTTP/WebSocket contract like any client.
//!
//! Each run registers its own users under a fresh prefix (so runs never collide and can be
//! repeated against the same server), prints a progress line a second on stderr, and ends with
//! a table on stdout: operations, throughput, latency p50/p90/p99/max from an HDR histogram,
//! errors by code, the checks it made (exactly-once delivery and the like) and the RSS of every
//! target server running on this machine. `--json FILE` appends the same as one JSON line
//! (`scripts/plot.py` turns those into the plots of `docs/BENCHMARKS.md`).
//!
//! Scenarios, one module each:
//! - [`send`]: C concurrent senders into M conversations, then an exactly-once check of every
//!   conversation's history;
//! - [`deliver`]: an open-loop sender at a fixed rate, send-to-recipient latency over WebSocket;
//! - [`fanout`]: one large group, time from a send to the last online member's receipt;
//! - [`catchup`]: one client offline for N updates syncs from its cursor;
//! - [`history`]: a fill of N messages in slices: how throughput, latency, errors, server RSS
//!   and disk bytes per message change as the stored history grows;
//! - [`connections`]: N idle authenticated WebSockets, server RSS per connection;
//! - [`tokens`]: not a measurement: users, friendships and tokens for an external tool (wrk).
//!
//! Invariant: traffic goes only to the given targets, and every loop is bounded in count and
//! time (`--duration`, `--messages`, per-request timeouts).
//! The run fails (non-zero exit) when a check fails; errors alone are reported, not fatal.

mod catchup;
mod client;
mod connections;
mod deliver;
mod disk;
mod fanout;
mod history;
mod report;
mod send;
mod tokens;

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

pub use client::Target;

/// Flags of `parley bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Subcommand, Debug)]
pub enum Scenario {
    /// Concurrent senders (HTTP, or WebSocket with requests in flight); exactly-once check.
    Send(send::SendArgs),
    /// Send at a fixed offered rate; send-to-recipient latency over WebSocket.
    Deliver(deliver::DeliverArgs),
    /// One group of K members, L online: time from a send to the last member's receipt.
    Fanout(fanout::FanoutArgs),
    /// A client offline for N updates syncs from its cursor: updates per second.
    Catchup(catchup::CatchupArgs),
    /// Fill N messages and print a row per slice: sends/s, latency, errors, RSS, disk per message.
    History(history::HistoryArgs),
    /// Hold N idle authenticated WebSockets: time to connect them, server RSS per connection.
    Connections(connections::ConnectionsArgs),
    /// Register friends in pairs and write `token<TAB>conversation_id` lines (for wrk).
    Tokens(tokens::TokensArgs),
}

/// Flags every scenario takes.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Node URLs, comma separated (`http://127.0.0.1:8080`); clients spread over them.
    #[arg(long, value_delimiter = ',', required = true)]
    pub target: Vec<String>,
    /// Pids of the target servers (same order), for RSS; found by listening port when local.
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Append the results as one JSON line to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Prefix of this run's user ids (default: random, so runs never collide).
    #[arg(long)]
    pub prefix: Option<String>,
    /// No progress lines.
    #[arg(long)]
    pub quiet: bool,
    /// Client worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
}

impl Common {
    pub fn targets(&self) -> Result<Vec<Target>, String> {
        let targets: Vec<Target> = self.target.iter().map(|t| Target::parse(t)).collect::<Result<_, _>>()?;
        if targets.is_empty() {
            return Err("at least one --target is needed".into());
        }
        Ok(targets)
    }

    pub fn prefix(&self) -> Result<String, String> {
        match &self.prefix {
            None => Ok(client::run_prefix()),
            Some(p)
                if p.len() <= 20 && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') =>
            {
                Ok(p.clone())
            }
            Some(p) => Err(format!("--prefix {p:?}: at most 20 of [a-z0-9_]")),
        }
    }
}

/// How a client sends.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One HTTP request per message, one at a time per sender.
    Http,
    /// One WebSocket per sender, several `send` frames in flight.
    Ws,
}

impl Mode {
    pub fn as_str(&self) -> &'static str {
        match self {
            Mode::Http => "http",
            Mode::Ws => "ws",
        }
    }
}

pub fn run(args: BenchArgs) -> Result<(), String> {
    let threads = match &args.scenario {
        Scenario::Send(a) => a.common.threads,
        Scenario::Deliver(a) => a.common.threads,
        Scenario::Fanout(a) => a.common.threads,
        Scenario::Catchup(a) => a.common.threads,
        Scenario::History(a) => a.common.threads,
        Scenario::Connections(a) => a.common.threads,
        Scenario::Tokens(a) => a.common.threads,
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = threads {
        builder.worker_threads(n.max(1));
    }
    let runtime = builder.build().map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        match args.scenario {
            Scenario::Send(a) => send::run(a).await,
            Scenario::Deliver(a) => deliver::run(a).await,
            Scenario::Fanout(a) => fanout::run(a).await,
            Scenario::Catchup(a) => catchup::run(a).await,
            Scenario::History(a) => history::run(a).await,
            Scenario::Connections(a) => connections::run(a).await,
            Scenario::Tokens(a) => tokens::run(a).await,
        }
    })
}
