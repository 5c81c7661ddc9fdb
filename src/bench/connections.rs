//! `parley bench connections`: open N authenticated WebSockets and hold them idle; report the
//! time to connect them all and the server's resident memory per connection.
//!
//! The sockets log in as U users (tokens are shared: argon2id makes a login cost tens of
//! milliseconds of server CPU, and what is measured is the socket, not the session). Past one
//! source address's ephemeral ports (~28k) the sockets bind further loopback addresses
//! (127.0.0.2, ...). This process's open-file limit is raised as needed; the server's must be
//! high enough too (`ulimit -n 65536` before starting it), which is checked when its pid is
//! known. After the hold, every socket is pinged once: all must answer (the check).
//!
//! When this process may not open that many files (the hard limit cannot be raised without
//! privilege), the sockets are held by several child processes (this binary, run with hidden
//! `--child-*` flags), which report over stdout and are driven over stdin: `ping`, then EOF.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use clap::Args;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

use super::client::{self, login_all, register_all, Http, Target, Ws, WS_IDLE_READ_BUFFER};
use super::report::{nofile_of, raise_nofile, Counters, ErrorLog, Latency, Op, Progress, Report, Servers};
use super::Common;

/// Flags of `parley bench connections`.
#[derive(Args, Debug)]
pub struct ConnectionsArgs {
    #[command(flatten)]
    pub common: Common,
    /// WebSockets to open and hold.
    #[arg(short = 'n', long, default_value_t = 20_000)]
    pub connections: usize,
    /// Users the sockets log in as.
    #[arg(short = 'u', long, default_value_t = 100)]
    pub users: usize,
    /// Handshakes in progress at once.
    #[arg(long, default_value_t = 128)]
    pub connect_concurrency: usize,
    /// Seconds to hold the sockets idle before measuring.
    #[arg(long, default_value_t = 5.0)]
    pub hold: f64,
    /// Sockets per loopback source address (127.0.0.1, then .2, ...).
    #[arg(long, default_value_t = 20_000)]
    pub per_source_address: usize,
    /// Client processes holding the sockets [default: as many as this process's open-file
    /// limit requires].
    #[arg(long)]
    pub processes: Option<usize>,
    /// (internal) Run as a child process: tokens, one per line, from this file.
    #[arg(long, hide = true)]
    pub child_tokens: Option<PathBuf>,
    /// (internal) Index of a child's first socket.
    #[arg(long, hide = true, default_value_t = 0)]
    pub child_start: usize,
}

fn source_for(t: &Target, i: usize, per: usize) -> Option<IpAddr> {
    if !(t.is_local() && t.addr.is_ipv4()) {
        return None;
    }
    let n = 1 + i / per.max(1);
    (n < 255).then(|| IpAddr::V4(Ipv4Addr::new(127, 0, 0, n as u8)))
}

/// Sockets `start..start + count` of the run: opened, with their handshake times and failures.
struct Opened {
    sockets: Vec<Ws>,
    handshakes: Vec<Duration>,
    failed: u64,
}

async fn open_share(
    targets: &[Target],
    tokens: &[String],
    start: usize,
    count: usize,
    a: &ConnectionsArgs,
    counters: &Counters,
    errors: &ErrorLog,
) -> Opened {
    let results: Vec<Result<(Ws, Duration), String>> = futures_util::stream::iter(start..start + count)
        .map(|i| {
            let t = targets[i % targets.len()].clone();
            let token = tokens[i % tokens.len()].clone();
            let source = source_for(&t, i, a.per_source_address);
            let (counters, errors) = (counters.clone(), errors.clone());
            async move {
                let t0 = Instant::now();
                match client::connect_ws_with(&t, &token, source, WS_IDLE_READ_BUFFER).await {
                    Ok(ws) => {
                        counters.op();
                        Ok((ws, t0.elapsed()))
                    }
                    Err(e) => {
                        counters.error();
                        let code = e.split(':').next().unwrap_or("connect").to_owned();
                        errors.add(&code, &e);
                        Err(e)
                    }
                }
            }
        })
        .buffer_unordered(a.connect_concurrency.max(1))
        .collect()
        .await;
    let mut out = Opened { sockets: Vec::with_capacity(count), handshakes: Vec::with_capacity(count), failed: 0 };
    for r in results {
        match r {
            Ok((ws, d)) => {
                out.handshakes.push(d);
                out.sockets.push(ws);
            }
            Err(_) => out.failed += 1,
        }
    }
    out
}

/// Pings every socket once; the round trip of each that answered.
async fn ping_all(sockets: &mut [Ws]) -> Vec<Duration> {
    let pings: Vec<Option<Duration>> = futures_util::stream::iter(sockets.iter_mut())
        .map(|ws| async move {
            let t0 = Instant::now();
            ws.send(Message::text(r#"{"type":"ping"}"#)).await.ok()?;
            loop {
                match tokio::time::timeout(Duration::from_secs(30), ws.next()).await.ok()?? {
                    Ok(Message::Text(t)) => {
                        let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                        if v["type"] == "pong" {
                            return Some(t0.elapsed());
                        }
                    }
                    Ok(Message::Close(_)) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        })
        .buffer_unordered(512)
        .collect()
        .await;
    pings.into_iter().flatten().collect()
}

fn micros(ds: &[Duration]) -> Vec<u64> {
    ds.iter().map(|d| d.as_micros() as u64).collect()
}

fn from_micros(v: &Value) -> Vec<Duration> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_u64).map(Duration::from_micros).collect()).unwrap_or_default()
}

/// Child mode: open this share, report, ping on `ping`, exit on EOF.
async fn run_child(a: ConnectionsArgs, tokens_file: PathBuf) -> Result<(), String> {
    let targets = a.common.targets()?;
    let tokens: Vec<String> = std::fs::read_to_string(&tokens_file)
        .map_err(|e| format!("cannot read {}: {e}", tokens_file.display()))?
        .lines()
        .map(str::to_owned)
        .collect();
    if tokens.is_empty() {
        return Err("no tokens".into());
    }
    raise_nofile(a.connections as u64 + 256);
    let (counters, errors) = (Counters::default(), ErrorLog::default());
    let mut opened = open_share(&targets, &tokens, a.child_start, a.connections, &a, &counters, &errors).await;
    let errs: serde_json::Map<String, Value> = errors.snapshot().into_iter().map(|(k, (n, _))| (k, json!(n))).collect();
    println!(
        "{}",
        json!({"open": opened.sockets.len(), "failed": opened.failed,
                          "handshake_us": micros(&opened.handshakes), "errors": errs})
    );
    // Commands from the parent on stdin (a plain thread: blocking reads).
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = rx.recv().await {
        if line.trim() == "ping" {
            let pongs = ping_all(&mut opened.sockets).await;
            println!("{}", json!({"pongs": pongs.len(), "ping_us": micros(&pongs)}));
        }
    }
    Ok(())
}

/// A child process holding part of the sockets.
struct Child {
    proc: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Child {
    async fn report(&mut self) -> Result<Value, String> {
        match tokio::time::timeout(Duration::from_secs(600), self.lines.next_line()).await {
            Ok(Ok(Some(line))) => serde_json::from_str(&line).map_err(|e| format!("child said {line:?}: {e}")),
            _ => Err("a child process ended or hung without reporting".into()),
        }
    }
}

pub async fn run(a: ConnectionsArgs) -> Result<(), String> {
    if let Some(f) = a.child_tokens.clone() {
        return run_child(a, f).await;
    }
    let targets = a.common.targets()?;
    let prefix = a.common.prefix()?;
    let http = Http::new()?;
    let servers = Servers::resolve(&targets, &a.common.server_pid);
    let n = a.connections.max(1);
    let u = a.users.clamp(1, n);
    let limit = raise_nofile(n as u64 + 1024);
    let per_process = limit.saturating_sub(256).max(1) as usize;
    let processes = a.processes.unwrap_or(if n + 256 <= limit as usize { 1 } else { n.div_ceil(per_process) }).max(1);
    if processes == 1 && limit < n as u64 + 64 {
        return Err(format!("this process may open only {limit} files; raise it (ulimit -n) or use --processes"));
    }
    for (i, t) in targets.iter().enumerate() {
        if let Some(l) = servers.pid(i).and_then(nofile_of) {
            let share = (n / targets.len()) as u64 + 64;
            if l < share {
                eprintln!(
                    "warning: the server at {} may open only {l} files (needs ~{share}): start it after `ulimit -n 65536`",
                    t.base
                );
            }
        }
    }
    eprintln!("connections: {n} WebSockets as {u} users from {processes} process(es), prefix {prefix}");
    let ids: Vec<String> = (0..u).map(|i| format!("{prefix}{i}")).collect();
    register_all(&http, &targets, &ids, "setup").await?;
    let users = login_all(&http, &targets, &ids).await?;
    let tokens: Vec<String> = users.iter().map(|u| u.token.clone()).collect();
    let head = http.head(&targets).await?;
    http.wait_applied(&targets, head).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = servers.total_rss_kb();

    let counters = Counters::default();
    let errors = ErrorLog::default();
    let mut handshakes: Vec<Duration> = Vec::with_capacity(n);
    let mut failed = 0u64;
    let mut open = 0u64;
    let mut local: Option<Opened> = None;
    let mut children: Vec<Child> = Vec::new();
    let _tokens_dir;
    let started = Instant::now();
    if processes == 1 {
        let progress = Progress::start("connections", "open", &counters, a.common.quiet);
        let o = open_share(&targets, &tokens, 0, n, &a, &counters, &errors).await;
        drop(progress);
        handshakes.extend_from_slice(&o.handshakes);
        failed = o.failed;
        open = o.sockets.len() as u64;
        local = Some(o);
    } else {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let file = dir.path().join("tokens");
        std::fs::write(&file, tokens.join("\n")).map_err(|e| format!("cannot write tokens: {e}"))?;
        _tokens_dir = dir;
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
        let share = n.div_ceil(processes);
        for p in 0..processes {
            let start = p * share;
            let count = share.min(n.saturating_sub(start));
            if count == 0 {
                break;
            }
            let mut proc = tokio::process::Command::new(&exe)
                .args(["bench", "connections", "--quiet", "--target", &a.common.target.join(",")])
                .arg("--child-tokens")
                .arg(&file)
                .args(["--child-start", &start.to_string(), "--connections", &count.to_string()])
                .args(["--per-source-address", &a.per_source_address.to_string()])
                .args(["--connect-concurrency", &(a.connect_concurrency / processes).max(1).to_string()])
                .args(["--threads", "1"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("cannot start a child process: {e}"))?;
            let (Some(stdin), Some(stdout)) = (proc.stdin.take(), proc.stdout.take()) else {
                return Err("child process without pipes".into());
            };
            children.push(Child { proc, stdin, lines: BufReader::new(stdout).lines() });
        }
        for c in &mut children {
            let r = c.report().await?;
            open += r["open"].as_u64().unwrap_or(0);
            failed += r["failed"].as_u64().unwrap_or(0);
            handshakes.extend(from_micros(&r["handshake_us"]));
            if let Some(errs) = r["errors"].as_object() {
                for (code, count) in errs {
                    for _ in 0..count.as_u64().unwrap_or(0) {
                        errors.add(code, "in a child process");
                    }
                }
            }
        }
    }
    let connect_secs = started.elapsed().as_secs_f64();
    let mut handshake = Latency::new();
    for d in &handshakes {
        handshake.record(*d);
    }
    eprintln!("  {open} open in {connect_secs:.1} s ({failed} failed); holding them idle for {} s", a.hold);
    tokio::time::sleep(Duration::from_secs_f64(a.hold.max(0.0))).await;
    let held = servers.total_rss_kb();
    let rss = servers.rss();

    // Every socket must still be authenticated and served: one ping each.
    let ping_start = Instant::now();
    let mut pongs: Vec<Duration> = Vec::with_capacity(n);
    if let Some(o) = local.as_mut() {
        pongs = ping_all(&mut o.sockets).await;
    }
    for c in &mut children {
        c.stdin.write_all(b"ping\n").await.map_err(|e| format!("child stdin: {e}"))?;
    }
    for c in &mut children {
        pongs.extend(from_micros(&c.report().await?["ping_us"]));
    }
    let ping_secs = ping_start.elapsed().as_secs_f64();
    let mut ping = Latency::new();
    for d in &pongs {
        ping.record(*d);
    }
    let pongs = pongs.len() as u64;
    drop(local);
    for mut c in children {
        drop(c.stdin);
        let _ = tokio::time::timeout(Duration::from_secs(30), c.proc.wait()).await;
    }

    let mut report = Report::new("connections", &targets);
    report.param("connections", n as u64);
    report.param("users", u as u64);
    report.param("client_processes", processes as u64);
    report.param("nodes", targets.len() as u64);
    report.rss = rss;
    report.errors = errors.snapshot();
    report.ops.push(Op {
        name: "connect (handshake)".into(),
        count: open,
        errors: failed,
        seconds: connect_secs,
        latency: Some(handshake),
    });
    report.ops.push(Op {
        name: "ping (after idle)".into(),
        count: pongs,
        errors: open - pongs.min(open),
        seconds: ping_secs,
        latency: Some(ping),
    });
    report.figure("time to connect all", connect_secs, "s");
    if let (Some(b), Some(h)) = (baseline, held) {
        report.figure("server RSS before", b as f64 / 1024.0, "MiB");
        report.figure("server RSS holding", h as f64 / 1024.0, "MiB");
        if open > 0 {
            report.figure(
                "server RSS per connection",
                h.saturating_sub(b) as f64 * 1024.0 / open as f64 / 1000.0,
                "KB (1000 bytes)",
            );
        }
    }
    report.check(
        "all sockets authenticated and alive",
        failed == 0 && pongs == open,
        format!("{open} of {n} connected, {pongs} answered a ping after {} s idle", a.hold),
    );
    report.finish(a.common.json.as_deref())
}
