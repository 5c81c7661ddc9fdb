//! `parley bench catchup`: a client that was offline while N updates for it were written syncs
//! from its cursor; the figure is updates per second delivered to that one client.
//!
//! W friends write N messages in all to the reader (over WebSocket, requests in flight) while
//! it is offline; then the reader syncs from the cursor it had, over WebSocket (one `sync`
//! frame, `updates` frames until `more` is false; a 1013 close resumes from the last cursor) or
//! over HTTP (`GET /v1/sync` pages of `--page`). Timed from the request to the last page. The
//! check: cursors strictly ascending, every acknowledged message exactly once.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use clap::Args;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

use super::client::{self, befriend_all, direct_id, login_all, register_all, Http, Target, User};
use super::report::{Latency, Op, Progress, Report, Servers};
use super::send::{Crew, Job, Sent};
use super::{Common, Mode};

/// Longest the catch-up itself may take.
const CATCHUP_TIMEOUT: Duration = Duration::from_secs(300);

/// Flags of `parley bench catchup`.
#[derive(Args, Debug)]
pub struct CatchupArgs {
    #[command(flatten)]
    pub common: Common,
    /// Updates written while the reader is offline.
    #[arg(short = 'n', long, default_value_t = 100_000)]
    pub updates: u64,
    /// How the reader syncs.
    #[arg(long, value_enum, default_value_t = Mode::Ws)]
    pub mode: Mode,
    /// Friends writing to the reader (one conversation each).
    #[arg(short = 'w', long, default_value_t = 8)]
    pub writers: usize,
    /// WebSocket requests in flight per writer.
    #[arg(long, default_value_t = 32)]
    pub in_flight: usize,
    /// Updates per HTTP sync page (the server allows 1000).
    #[arg(long, default_value_t = 1000)]
    pub page: u64,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 256)]
    pub body_bytes: usize,
}

/// What the reader got: `(cursor, client_msg_id)` per message update, total updates, frames
/// or pages, reconnects, time to the first update.
#[derive(Default)]
struct Caught {
    messages: Vec<(u64, String)>,
    updates: u64,
    pages: u64,
    reconnects: u64,
    first: Option<Duration>,
    ascending: bool,
}

impl Caught {
    fn take(&mut self, updates: &[Value], last: &mut u64, started: Instant) {
        if self.first.is_none() && !updates.is_empty() {
            self.first = Some(started.elapsed());
        }
        for u in updates {
            let c = u["cursor"].as_u64().unwrap_or(0);
            if c <= *last {
                self.ascending = false;
            }
            *last = c;
            self.updates += 1;
            if u["type"] == "message" {
                self.messages.push((c, u["message"]["client_msg_id"].as_str().unwrap_or("").to_owned()));
            }
        }
    }
}

async fn catch_up_ws(t: &Target, user: &User, since: u64, upto: u64, started: Instant) -> Result<Caught, String> {
    let mut caught = Caught { ascending: true, ..Caught::default() };
    let mut last = since;
    'connect: loop {
        let mut ws = client::connect_ws(t, &user.token, None).await?;
        ws.send(Message::text(json!({"type": "sync", "since": last}).to_string()))
            .await
            .map_err(|e| format!("sync frame: {e}"))?;
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(30), ws.next())
                .await
                .map_err(|_| "no frame within 30 s during catch-up".to_owned())?;
            match frame {
                Some(Ok(Message::Text(text))) => {
                    let v: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                    if v["type"] != "updates" {
                        continue;
                    }
                    caught.pages += 1;
                    caught.take(v["updates"].as_array().map(Vec::as_slice).unwrap_or(&[]), &mut last, started);
                    let cursor = v["cursor"].as_u64().unwrap_or(last);
                    last = last.max(cursor);
                    if v["more"] == false && cursor >= upto {
                        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                        return Ok(caught);
                    }
                }
                // The server closes a socket whose queue overflowed: resume from the cursor.
                Some(Ok(Message::Close(Some(f)))) if f.code == CloseCode::Again => {
                    caught.reconnects += 1;
                    continue 'connect;
                }
                Some(Ok(Message::Close(f))) => return Err(format!("socket closed during catch-up: {f:?}")),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("socket failed during catch-up: {e}")),
                None => return Err("socket ended during catch-up".into()),
            }
        }
    }
}

async fn catch_up_http(
    http: &Http,
    t: &Target,
    user: &User,
    since: u64,
    page: u64,
    started: Instant,
) -> Result<Caught, String> {
    let mut caught = Caught { ascending: true, ..Caught::default() };
    let mut last = since;
    let mut cursor = since;
    loop {
        let (updates, next, more) = http.sync(t, user, cursor, page).await?;
        caught.pages += 1;
        caught.take(&updates, &mut last, started);
        cursor = next;
        if !more {
            return Ok(caught);
        }
    }
}

pub async fn run(a: CatchupArgs) -> Result<(), String> {
    let targets = a.common.targets()?;
    let prefix = a.common.prefix()?;
    let http = Http::new()?;
    let servers = Servers::resolve(&targets, &a.common.server_pid);
    let w = a.writers.max(1);
    let reader_target = targets[1 % targets.len()].clone();
    eprintln!(
        "catchup: {} updates from {w} writers, reader syncs over {} from {}",
        a.updates,
        a.mode.as_str(),
        reader_target.base
    );
    let ids: Vec<String> = (0..=w).map(|i| format!("{prefix}{i}")).collect();
    register_all(&http, &targets, &ids, "setup").await?;
    let users = login_all(&http, &targets, &ids).await?;
    let reader = users[0].clone();
    let pairs: Vec<(User, User)> = users[1..].iter().map(|u| (u.clone(), reader.clone())).collect();
    befriend_all(&http, &targets, &pairs).await?;
    let since = http.head(&targets).await?;
    http.wait_applied(&targets, since).await?;

    // The reader is offline: write N messages to it.
    let crew = Crew::new(a.body_bytes, a.in_flight, Some(a.updates));
    let progress = Progress::start("catchup: writing", "acked", &crew.counters, a.common.quiet);
    let write_start = Instant::now();
    let handles: Vec<_> = users[1..]
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let job = Job {
                target: targets[i % targets.len()].clone(),
                user: u.clone(),
                conv: i,
                conv_id: direct_id(&u.user_id, &reader.user_id),
                cmid_prefix: format!("{prefix}c{i}-"),
                crew: crew.clone(),
            };
            tokio::spawn(job.run_ws())
        })
        .collect();
    let mut written = Sent::default();
    for h in handles {
        let s = h.await.map_err(|e| format!("writer task failed: {e}"))?;
        written.latency.merge(&s.latency);
        written.acked.extend(s.acked);
        written.errors += s.errors;
    }
    let write_secs = write_start.elapsed().as_secs_f64();
    drop(progress);
    let upto = written.acked.iter().map(|a| a.cursor).max().unwrap_or(since);
    http.wait_applied(std::slice::from_ref(&reader_target), upto).await?;
    eprintln!("  wrote {} messages in {write_secs:.1} s; the reader syncs from cursor {since}", written.acked.len());

    let started = Instant::now();
    let caught = match a.mode {
        Mode::Ws => {
            tokio::time::timeout(CATCHUP_TIMEOUT, catch_up_ws(&reader_target, &reader, since, upto, started)).await
        }
        Mode::Http => {
            tokio::time::timeout(CATCHUP_TIMEOUT, catch_up_http(&http, &reader_target, &reader, since, a.page, started))
                .await
        }
    }
    .map_err(|_| format!("catch-up took longer than {CATCHUP_TIMEOUT:?}"))??;
    let secs = started.elapsed().as_secs_f64();

    let acked: HashSet<&str> = written.acked.iter().map(|a| a.cmid.as_str()).collect();
    let mut seen = HashSet::with_capacity(caught.messages.len());
    let mut duplicates = 0;
    for (_, cmid) in &caught.messages {
        if !seen.insert(cmid.as_str()) {
            duplicates += 1;
        }
    }
    let missing = acked.iter().filter(|c| !seen.contains(*c)).count();
    let mut report = Report::new("catchup", &targets);
    report.param("mode", a.mode.as_str());
    report.param("updates", a.updates);
    report.param("writers", w as u64);
    report.param("body_bytes", a.body_bytes as u64);
    report.param("nodes", targets.len() as u64);
    report.rss = servers.rss();
    report.errors = crew.errors.snapshot();
    report.ops.push(Op {
        name: "write (to ack)".into(),
        count: written.acked.len() as u64,
        errors: written.errors,
        seconds: write_secs,
        latency: Some(written.latency),
    });
    let mut first = Latency::new();
    if let Some(f) = caught.first {
        first.record(f);
    }
    report.ops.push(Op {
        name: "catch-up updates".into(),
        count: caught.updates,
        errors: 0,
        seconds: secs,
        latency: None,
    });
    report.ops.push(Op {
        name: "time to first update".into(),
        count: first.count(),
        errors: 0,
        seconds: secs,
        latency: Some(first),
    });
    report.figure("catch-up", caught.updates as f64 / secs, "updates/s to one client");
    report.figure("catch-up time", secs * 1000.0, "ms");
    report.figure("pages or frames", caught.pages as f64, "");
    report.figure("reconnects after 1013", caught.reconnects as f64, "");
    report.check(
        "exactly-once catch-up",
        caught.ascending && duplicates == 0 && missing == 0,
        format!(
            "{} acknowledged, {} message updates received, {missing} missing, {duplicates} duplicated, cursors {}",
            acked.len(),
            caught.messages.len(),
            if caught.ascending { "ascending" } else { "NOT ascending" }
        ),
    );
    report.finish(a.common.json.as_deref())
}
