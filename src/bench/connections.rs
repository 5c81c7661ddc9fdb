//! `parley bench connections`: open N authenticated WebSockets and hold them idle; report the
//! time to connect them all and the server's resident memory per connection.
//!
//! The sockets log in as U users (tokens are shared: argon2id makes a login cost tens of
//! milliseconds of server CPU, and what is measured is the socket, not the session). Past one
//! source address's ephemeral ports (~28k) the sockets bind further loopback addresses
//! (127.0.0.2, ...). This process's open-file limit is raised as needed; the server's must be
//! high enough too (`ulimit -n 65536` before starting it), which is checked when its pid is
//! known. After the hold, every socket is pinged once: all must answer (the check).

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use clap::Args;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
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
}

fn source_for(t: &Target, i: usize, per: usize) -> Option<IpAddr> {
    if !(t.is_local() && t.addr.is_ipv4()) {
        return None;
    }
    let n = 1 + i / per.max(1);
    (n < 255).then(|| IpAddr::V4(Ipv4Addr::new(127, 0, 0, n as u8)))
}

pub async fn run(a: ConnectionsArgs) -> Result<(), String> {
    let targets = a.common.targets()?;
    let prefix = a.common.prefix()?;
    let http = Http::new()?;
    let servers = Servers::resolve(&targets, &a.common.server_pid);
    let n = a.connections.max(1);
    let u = a.users.clamp(1, n);
    let limit = raise_nofile(n as u64 + 1024);
    if limit < n as u64 + 64 {
        return Err(format!("this process may open only {limit} files; raise it (ulimit -n) to at least {}", n + 1024));
    }
    for (i, t) in targets.iter().enumerate() {
        if let Some(l) = servers.pid(i).and_then(nofile_of) {
            let share = (n / targets.len()) as u64 + 64;
            if l < share {
                eprintln!("warning: the server at {} may open only {l} files (needs ~{share}): start it after `ulimit -n 65536`", t.base);
            }
        }
    }
    eprintln!("connections: {n} WebSockets as {u} users, prefix {prefix}");
    let ids: Vec<String> = (0..u).map(|i| format!("{prefix}{i}")).collect();
    register_all(&http, &targets, &ids, "setup").await?;
    let users = login_all(&http, &targets, &ids).await?;
    let head = http.head(&targets).await?;
    http.wait_applied(&targets, head).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = servers.total_rss_kb();

    let counters = Counters::default();
    let errors = ErrorLog::default();
    let progress = Progress::start("connections", "open", &counters, a.common.quiet);
    let started = Instant::now();
    let results: Vec<Result<(Ws, Duration), String>> = futures_util::stream::iter(0..n)
        .map(|i| {
            let t = targets[i % targets.len()].clone();
            let token = users[i % u].token.clone();
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
    let connect_secs = started.elapsed().as_secs_f64();
    drop(progress);
    let mut handshake = Latency::new();
    let mut sockets = Vec::with_capacity(n);
    let mut failed = 0u64;
    for r in results {
        match r {
            Ok((ws, d)) => {
                handshake.record(d);
                sockets.push(ws);
            }
            Err(_) => failed += 1,
        }
    }
    eprintln!("  {} open in {connect_secs:.1} s ({failed} failed); holding them idle for {} s", sockets.len(), a.hold);
    tokio::time::sleep(Duration::from_secs_f64(a.hold.max(0.0))).await;
    let held = servers.total_rss_kb();
    let rss = servers.rss();

    // Every socket must still be authenticated and served: one ping each.
    let ping_start = Instant::now();
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
    let ping_secs = ping_start.elapsed().as_secs_f64();
    let mut ping = Latency::new();
    let mut pongs = 0u64;
    for d in pings.into_iter().flatten() {
        ping.record(d);
        pongs += 1;
    }
    let open = sockets.len() as u64;
    drop(sockets);

    let mut report = Report::new("connections", &targets);
    report.param("connections", n as u64);
    report.param("users", u as u64);
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
        errors: open - pongs,
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
