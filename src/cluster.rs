//! `parley cluster`: a local N-node cluster for development, from this one binary.
//!
//! Starts N child processes `parley serve --node-id <id> --peers ...`, each with its own data
//! dir (`DIR/node-<id>`), port (`P`, `P+1`, ...; `--base-port 0` picks free ports) and log file
//! (`DIR/node-<id>.log`), sharing a generated cluster secret and admin token. Once every node
//! answers `/readyz` with 200 it prints, on stdout,
//!
//! ```text
//! cluster-secret <hex>
//! admin-token <hex>
//! node 1 http://127.0.0.1:7001
//! node 2 http://127.0.0.1:7002
//! node 3 http://127.0.0.1:7003
//! ```
//!
//! and supervises them until Ctrl-C or SIGTERM, which stops every node with SIGTERM (a node
//! shuts down gracefully), then SIGKILL after a grace period.
//!
//! `DIR/cluster.json` keeps the secret, the admin token and the node addresses, so running the
//! command again on the same DIR restarts the same cluster (raft's membership holds the
//! addresses: they must not change).
//!
//! Invariants: the children die with this process however it ends. Each is spawned (from the
//! main thread, which lives as long as the process) with a parent-death signal, runs in its own
//! process group so a terminal's Ctrl-C reaches only this supervisor, and is SIGKILLed by a drop
//! guard on any error path. Secrets reach the children through their environment, not argv.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use serde::{Deserialize, Serialize};

/// How long the nodes may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a node may take to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Flags of `parley cluster`.
#[derive(Args, Debug, Clone)]
pub struct ClusterArgs {
    /// How many nodes to run.
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// Port of node 1; node N listens on P+N-1. 0 picks free ports [default: 7001].
    #[arg(long)]
    pub base_port: Option<u16>,
    /// Where the nodes keep their data (DIR/node-<id>) and logs (DIR/node-<id>.log).
    #[arg(long, default_value = "parley-cluster")]
    pub data_dir: PathBuf,
    /// Address the nodes listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Extra flags for every node's `parley serve`, after `--` (e.g. `-- --snapshot-every 500`).
    #[arg(last = true)]
    pub serve_args: Vec<String>,
}

/// What `DIR/cluster.json` keeps between runs.
#[derive(Serialize, Deserialize, Debug, Clone)]
struct Layout {
    cluster_secret: String,
    admin_token: String,
    /// Node id -> `host:port`.
    nodes: BTreeMap<u64, String>,
}

pub fn run(args: ClusterArgs) -> Result<(), String> {
    if args.nodes == 0 {
        return Err("--nodes must be at least 1".into());
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    // Runs on this (the main) thread: children are spawned from it, see the module invariants.
    runtime.block_on(supervise(args))
}

async fn supervise(args: ClusterArgs) -> Result<(), String> {
    std::fs::create_dir_all(&args.data_dir).map_err(|e| format!("cannot create {}: {e}", args.data_dir.display()))?;
    let layout = layout(&args)?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the parley binary: {e}"))?;
    let peers = layout.nodes.iter().map(|(id, addr)| format!("{id}={addr}")).collect::<Vec<_>>().join(",");
    eprintln!(
        "parley cluster: starting {} nodes in {} (logs in node-<id>.log there)",
        layout.nodes.len(),
        args.data_dir.display()
    );

    let mut children = Children::default();
    for (id, addr) in &layout.nodes {
        let log_path = args.data_dir.join(format!("node-{id}.log"));
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
        let mut cmd = Command::new(&exe);
        cmd.arg("serve")
            .arg("--node-id")
            .arg(id.to_string())
            .arg("--peers")
            .arg(&peers)
            .arg("--http")
            .arg(addr)
            .arg("--data-dir")
            .arg(args.data_dir.join(format!("node-{id}")))
            .args(&args.serve_args)
            .env("PARLEY_CLUSTER_SECRET", &layout.cluster_secret)
            .env("PARLEY_ADMIN_TOKEN", &layout.admin_token)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        let child = spawn_supervised(cmd).map_err(|e| format!("cannot start node {id}: {e}"))?;
        children.nodes.push(Node { id: *id, addr: addr.clone(), log: log_path, child: Some(child) });
    }

    tokio::select! {
        ready = wait_ready(&mut children) => ready?,
        _ = shutdown_signal() => {
            eprintln!("parley cluster: interrupted before the nodes were ready; stopping them");
            children.stop();
            return Ok(());
        }
    }

    let mut out = std::io::stdout().lock();
    let lines = std::iter::once(format!("cluster-secret {}", layout.cluster_secret))
        .chain(std::iter::once(format!("admin-token {}", layout.admin_token)))
        .chain(children.nodes.iter().map(|n| format!("node {} http://{}", n.id, n.addr)));
    for line in lines {
        writeln!(out, "{line}").map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| e.to_string())?;
    drop(out);
    eprintln!("parley cluster: all nodes ready; Ctrl-C stops them");

    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            _ = &mut signal => break,
            _ = tick.tick() => {
                for (id, status) in children.reap() {
                    eprintln!("parley cluster: node {id} exited ({status}); the others keep running");
                }
                if children.running() == 0 {
                    return Err("every node has exited".into());
                }
            }
        }
    }
    eprintln!("parley cluster: stopping");
    children.stop();
    Ok(())
}

/// Loads `DIR/cluster.json`, or makes (and saves) a new layout.
fn layout(args: &ClusterArgs) -> Result<Layout, String> {
    let path = args.data_dir.join("cluster.json");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let layout: Layout = serde_json::from_str(&text).map_err(|e| format!("bad {}: {e}", path.display()))?;
        if layout.nodes.len() as u64 != args.nodes {
            return Err(format!(
                "{} holds a cluster of {} nodes, not {}: use another --data-dir",
                args.data_dir.display(),
                layout.nodes.len(),
                args.nodes
            ));
        }
        let first_port = layout.nodes.values().next().and_then(|a| a.rsplit(':').next()).and_then(|p| p.parse().ok());
        if let Some(p) = args.base_port.filter(|p| *p != 0 && Some(*p) != first_port) {
            return Err(format!(
                "{} holds a cluster on other ports (raft remembers its members' addresses): drop \
                 --base-port {p} or use another --data-dir",
                args.data_dir.display()
            ));
        }
        eprintln!("parley cluster: restarting the cluster kept in {}", path.display());
        return Ok(layout);
    }

    let ports = match args.base_port.unwrap_or(7001) {
        0 => free_ports(&args.host, args.nodes)?,
        base => (0..args.nodes)
            .map(|i| u16::try_from(u64::from(base) + i).map_err(|_| "--base-port too high for --nodes".to_string()))
            .collect::<Result<Vec<u16>, String>>()?,
    };
    let nodes = (1..=args.nodes).zip(ports).map(|(id, port)| (id, format!("{}:{port}", args.host))).collect();
    let layout = Layout { cluster_secret: random_hex(), admin_token: random_hex(), nodes };
    let text = serde_json::to_string_pretty(&layout).map_err(|e| e.to_string())?;
    write_private(&path, text.as_bytes()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(layout)
}

/// `n` distinct ports free right now (all bound at once, then released).
fn free_ports(host: &str, n: u64) -> Result<Vec<u16>, String> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind((host, 0)).map_err(|e| format!("cannot find a free port on {host}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    listeners.iter().map(|l| l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())).collect()
}

fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 24]>())
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f: File = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Spawns a child that dies with this process and has its own process group.
fn spawn_supervised(mut cmd: Command) -> std::io::Result<Child> {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: between fork and exec only async-signal-safe calls (prctl, getppid) are made,
        // and nothing is allocated.
        unsafe {
            cmd.pre_exec(move || {
                // SIGTERM (a graceful stop) when the thread that spawned us, the supervisor's
                // main thread, ends.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The supervisor may have died before the signal was armed.
                if libc::getppid() != parent {
                    return Err(std::io::Error::other("the supervisor exited"));
                }
                Ok(())
            });
        }
    }
    cmd.spawn()
}

struct Node {
    id: u64,
    addr: String,
    log: PathBuf,
    child: Option<Child>,
}

/// The running nodes; any still running when this drops are killed.
#[derive(Default)]
struct Children {
    nodes: Vec<Node>,
}

impl Children {
    fn running(&self) -> usize {
        self.nodes.iter().filter(|n| n.child.is_some()).count()
    }

    /// Collects the nodes that have exited.
    fn reap(&mut self) -> Vec<(u64, ExitStatus)> {
        let mut exited = Vec::new();
        for n in &mut self.nodes {
            if let Some(status) = n.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                exited.push((n.id, status));
                n.child = None;
            }
        }
        exited
    }

    /// SIGTERM to every node, then SIGKILL to those still running after the grace period.
    fn stop(&mut self) {
        for n in &self.nodes {
            if let Some(c) = &n.child {
                terminate(c);
            }
        }
        let deadline = Instant::now() + STOP_GRACE;
        while self.running() > 0 && Instant::now() < deadline {
            self.reap();
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }

    fn kill(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                eprintln!("parley cluster: killing node {}", n.id);
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        self.kill();
    }
}

fn terminate(child: &Child) {
    #[cfg(unix)]
    {
        if let Ok(pid) = libc::pid_t::try_from(child.id()) {
            // SAFETY: kill(2) with a pid we spawned and have not reaped yet (so it is not reused).
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = child;
    }
}

/// Polls every node's `/readyz` until all answer 200; fails if one exits or time runs out.
async fn wait_ready(children: &mut Children) -> Result<(), String> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().map_err(|e| e.to_string())?;
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut ready = vec![false; children.nodes.len()];
    loop {
        if let Some((id, status)) = children.reap().into_iter().next() {
            let log = children.nodes.iter().find(|n| n.id == id).map(|n| n.log.display().to_string());
            return Err(format!("node {id} exited before it was ready ({status}); see {}", log.unwrap_or_default()));
        }
        for (i, n) in children.nodes.iter().enumerate() {
            if !ready[i] {
                let url = format!("http://{}/readyz", n.addr);
                ready[i] = client.get(url).send().await.is_ok_and(|r| r.status().is_success());
            }
        }
        if ready.iter().all(|r| *r) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let waiting: Vec<u64> =
                children.nodes.iter().zip(&ready).filter(|(_, r)| !**r).map(|(n, _)| n.id).collect();
            return Err(format!("nodes {waiting:?} were not ready within {} s", READY_TIMEOUT.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
