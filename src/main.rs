//! `parley`: the one binary. Parses the command line, sets up tracing, and calls into the
//! library crates; no product logic lives here.

use parley::audit;
mod bench;
mod chat;
mod cluster;
mod config;
mod members;
mod serve;

use std::process::ExitCode;

/// mimalloc rather than the system allocator: sled copies a tree node on most writes, and
/// glibc's malloc spent a third of the apply time and fragmented the heap.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "parley", version, about = "Event-sourced chat backend")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node (single node by default; a cluster member with --peers).
    Serve(Box<config::ServeArgs>),
    /// Run a local N-node cluster (child processes) until Ctrl-C.
    Cluster(cluster::ClusterArgs),
    /// Add, promote or remove cluster members through any node's admin API.
    Members(members::MembersArgs),
    /// Rebuild every projection from the journal, offline, and print the projection digest.
    Replay(audit::replay::ReplayArgs),
    /// Audit the journal: verify its hash chain.
    Audit(audit::AuditArgs),
    /// Journal entries as JSON lines on stdout (offline).
    Export(audit::export::ExportArgs),
    /// Build a new data dir from a full export, verifying its chain.
    Import(audit::import::ImportArgs),
    /// Read models as of a past cursor (offline, by replay).
    State(audit::state::StateArgs),
    /// A terminal chat client: conversations, history, sending, live updates, read markers.
    Chat(chat::ChatArgs),
    /// Load generator: send, deliver, fanout, catchup, history, connections (see docs/BENCHMARKS.md).
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new("warn,parley=info,parley_api=info,parley_raft=info")
        }))
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Cluster(args) => cluster::run(args),
        Command::Members(args) => members::run(args),
        Command::Replay(args) => audit::replay::run(args),
        Command::Audit(args) => audit::run(args),
        Command::Export(args) => audit::export::run(args),
        Command::Import(args) => audit::import::run(args),
        Command::State(args) => audit::state::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Chat(args) => chat::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parley: {e}");
            ExitCode::FAILURE
        }
    }
}
