//! `parley bench fanout`: one group of K members, L of them online over WebSocket (spread over
//! the targets); the owner sends S messages one after another, and for each the time from the
//! send to the *last* online member's receipt is one sample (p50/p99 over the S messages).
//! Every receipt is also recorded on its own. The check: every online member received every
//! message exactly once.
//!
//! Setup registers K users (one argon2id hash each on the server: about a minute for 5,000 on
//! two cores) and logs in L+1 of them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::client::{self, login_all, register_all, Http, Ws};
use super::deliver::live_socket;
use super::report::{Counters, ErrorLog, Latency, Op, Progress, Report, Servers};
use super::Common;

/// Flags of `parley bench fanout`.
#[derive(Args, Debug)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: Common,
    /// Group members, the owner included.
    #[arg(short = 'k', long, default_value_t = 5000)]
    pub members: usize,
    /// Members online over WebSocket.
    #[arg(short = 'l', long, default_value_t = 1000)]
    pub online: usize,
    /// Messages sent (one latency sample each).
    #[arg(short = 's', long, default_value_t = 20)]
    pub messages: usize,
    /// Pause between one message's last receipt and the next send, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub interval_ms: u64,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 256)]
    pub body_bytes: usize,
    /// Longest to wait for one message to reach every online member, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub receipt_timeout: f64,
}

/// Forwards `(message index, receipt instant)` for each group message; counts duplicates.
async fn member(
    mut ws: Ws,
    cid: String,
    prefix: String,
    tx: mpsc::UnboundedSender<(usize, Instant)>,
    duplicates: Arc<AtomicU64>,
) {
    let mut seen = std::collections::HashSet::new();
    while let Some(Ok(frame)) = ws.next().await {
        let Message::Text(text) = frame else {
            if matches!(frame, Message::Close(_)) {
                break;
            }
            continue;
        };
        let at = Instant::now();
        let v: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
        let Some(updates) = v["updates"].as_array() else { continue };
        for u in updates {
            let m = &u["message"];
            if u["type"] != "message" || m["conversation_id"].as_str() != Some(cid.as_str()) {
                continue;
            }
            let Some(j) =
                m["client_msg_id"].as_str().and_then(|c| c.strip_prefix(&prefix)).and_then(|n| n.parse().ok())
            else {
                continue;
            };
            if !seen.insert(j) {
                duplicates.fetch_add(1, Ordering::Relaxed);
            } else if tx.send((j, at)).is_err() {
                return;
            }
        }
    }
}

pub async fn run(a: FanoutArgs) -> Result<(), String> {
    let targets = a.common.targets()?;
    let prefix = a.common.prefix()?;
    let http = Http::new()?;
    let servers = Servers::resolve(&targets, &a.common.server_pid);
    let k = a.members.max(2);
    let l = a.online.min(k - 1);
    let s = a.messages.max(1);
    super::report::raise_nofile(l as u64 + 1024);
    eprintln!("fanout: a group of {k} members, {l} online, {s} messages, prefix {prefix}");
    let ids: Vec<String> = (0..k).map(|i| format!("{prefix}{i}")).collect();
    register_all(&http, &targets, &ids, "setup").await?;
    let logged = login_all(&http, &targets, &ids[..=l]).await?;
    let owner = logged[0].clone();
    let cid = http
        .create_group(&targets[0], &owner, "bench fanout", &ids[1..])
        .await
        .map_err(|e| format!("create group: {e}"))?;
    let head = http.head(&targets).await?;
    http.wait_applied(&targets, head).await?;

    let started = Instant::now();
    let sockets: Vec<Result<Ws, String>> = futures_util::stream::iter(logged[1..].iter().enumerate())
        .map(|(i, u)| {
            let t = targets[i % targets.len()].clone();
            async move { live_socket(&t, u, head).await }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let sockets = sockets.into_iter().collect::<Result<Vec<Ws>, String>>()?;
    eprintln!("  {l} members online in {:.1?}", started.elapsed());
    let cmid_prefix = format!("{prefix}f");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let dups = Arc::new(AtomicU64::new(0));
    let members: Vec<_> = sockets
        .into_iter()
        .map(|ws| tokio::spawn(member(ws, cid.clone(), cmid_prefix.clone(), tx.clone(), dups.clone())))
        .collect();
    drop(tx);

    let counters = Counters::default();
    let errors = ErrorLog::default();
    let progress = Progress::start("fanout", "messages fully delivered", &counters, a.common.quiet);
    let body = client::body_of(a.body_bytes);
    let timeout = Duration::from_secs_f64(a.receipt_timeout.max(0.1));
    let (mut ack, mut last, mut each) = (Latency::new(), Latency::new(), Latency::new());
    let mut sent_at: Vec<Option<Instant>> = vec![None; s];
    let mut got = vec![0usize; s];
    let mut incomplete = 0usize;
    let mut send_errors = 0u64;
    let run_start = Instant::now();
    for j in 0..s {
        let t_send = Instant::now();
        sent_at[j] = Some(t_send);
        let cmid = format!("{cmid_prefix}{j}");
        match http.send(&targets[0], &owner, &cid, &cmid, &body).await.and_then(|s| s.created(&cmid)) {
            Ok(_) => ack.record(t_send.elapsed()),
            Err(e) => {
                send_errors += 1;
                counters.error();
                errors.add(&e.code, &e.message);
                continue;
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last_at = t_send;
        while got[j] < l {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((jj, at))) if jj < s => {
                    let Some(t) = sent_at[jj] else { continue };
                    got[jj] += 1;
                    each.record(at.saturating_duration_since(t));
                    if jj == j {
                        last_at = last_at.max(at);
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        if got[j] == l {
            last.record(last_at.saturating_duration_since(t_send));
            counters.op();
        } else {
            incomplete += 1;
            errors.add("incomplete", &format!("message {j} reached {} of {l} members in {timeout:?}", got[j]));
        }
        tokio::time::sleep(Duration::from_millis(a.interval_ms)).await;
    }
    let run_secs = run_start.elapsed().as_secs_f64();
    // Late receipts still count for the exactly-once check.
    while let Ok(Some((jj, _))) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
        if jj < s {
            got[jj] += 1;
        }
    }
    drop(progress);
    for m in &members {
        m.abort();
    }
    let duplicates = dups.load(Ordering::Relaxed);

    let mut report = Report::new("fanout", &targets);
    report.param("members", k as u64);
    report.param("online", l as u64);
    report.param("messages", s as u64);
    report.param("nodes", targets.len() as u64);
    report.rss = servers.rss();
    report.errors = errors.snapshot();
    report.ops.push(Op {
        name: "send (to ack)".into(),
        count: ack.count(),
        errors: send_errors,
        seconds: run_secs,
        latency: Some(ack),
    });
    report.ops.push(Op {
        name: "last member receipt".into(),
        count: last.count(),
        errors: incomplete as u64,
        seconds: run_secs,
        latency: Some(last),
    });
    report.ops.push(Op {
        name: "each member receipt".into(),
        count: each.count(),
        errors: 0,
        seconds: run_secs,
        latency: Some(each),
    });
    let sent_ok = s as u64 - send_errors;
    let complete = got.iter().filter(|n| **n == l).count();
    let over = got.iter().filter(|n| **n > l).count();
    report.check(
        "exactly-once fan-out",
        duplicates == 0 && over == 0 && send_errors == 0 && complete == s,
        format!("{sent_ok} messages to {l} online members: {complete} complete, {duplicates} duplicate receipts"),
    );
    report.finish(a.common.json.as_deref())
}
