//! `parley bench deliver`: messages at a fixed offered rate (open loop: a send is issued on
//! schedule whether or not earlier ones were answered), and the time from each message's
//! scheduled send to its recipient receiving it in a live `updates` frame over WebSocket.
//!
//! P pairs of friends: senders send over HTTP to the first target; recipients hold a WebSocket
//! on the second target when there are several (so delivery crosses raft replication), else the
//! same one. Latencies count from the scheduled instant, so a server that falls behind shows
//! its queueing (no coordinated omission). The check: every acknowledged message reached its
//! recipient exactly once.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::Message;

use super::client::{self, befriend_all, direct_id, login_all, register_all, Http, Target, User, Ws};
use super::report::{Counters, ErrorLog, Latency, Op, Progress, Report, Servers};
use super::Common;

/// How long after the last send the recipients may take to receive everything.
const DRAIN: Duration = Duration::from_secs(10);

/// Flags of `parley bench deliver`.
#[derive(Args, Debug)]
pub struct DeliverArgs {
    #[command(flatten)]
    pub common: Common,
    /// Offered rate, messages per second (all pairs together).
    #[arg(short = 'r', long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Seconds of sending.
    #[arg(short = 'd', long, default_value_t = 10.0)]
    pub duration: f64,
    /// Sender/recipient pairs.
    #[arg(short = 'p', long, default_value_t = 16)]
    pub pairs: usize,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 256)]
    pub body_bytes: usize,
    /// Most sends outstanding at once; a send due past this is counted as an error.
    #[arg(long, default_value_t = 4096)]
    pub max_outstanding: usize,
}

/// What one recipient saw.
struct Received {
    latency: Latency,
    seen: HashSet<String>,
    duplicates: u64,
}

/// Reads live updates until told to stop; records the latency of each message sent to it.
async fn recipient(
    mut ws: Ws,
    me: String,
    t0: Instant,
    counters: Counters,
    mut stop: watch::Receiver<bool>,
) -> Received {
    let mut r = Received { latency: Latency::new(), seen: HashSet::new(), duplicates: 0 };
    loop {
        let frame = tokio::select! {
            _ = stop.changed() => break,
            f = ws.next() => f,
        };
        let text = match frame {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
            Some(Ok(_)) => continue,
        };
        let now = t0.elapsed();
        let v: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
        let Some(updates) = v["updates"].as_array() else { continue };
        for u in updates {
            let m = &u["message"];
            if u["type"] != "message" || m["sender"].as_str() == Some(me.as_str()) {
                continue;
            }
            let Some(cmid) = m["client_msg_id"].as_str() else { continue };
            // `<prefix>d<i>-<scheduled µs since t0>`
            let Some(sched_us) = cmid.rsplit('-').next().and_then(|s| s.parse::<u64>().ok()) else { continue };
            if !r.seen.insert(cmid.to_owned()) {
                r.duplicates += 1;
                continue;
            }
            r.latency.record(now.saturating_sub(Duration::from_micros(sched_us)));
            counters.op();
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    r
}

/// Opens a recipient's socket and waits for its (empty) catch-up from the current head.
pub async fn live_socket(t: &Target, user: &User, since: u64) -> Result<Ws, String> {
    let mut ws = client::connect_ws(t, &user.token, None).await?;
    ws.send(Message::text(json!({"type": "sync", "since": since}).to_string()))
        .await
        .map_err(|e| format!("sync frame: {e}"))?;
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .map_err(|_| "no catch-up frame within 30 s".to_owned())?;
        match frame {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                if v["type"] == "updates" && v["more"] == false {
                    return Ok(ws);
                }
                if v["type"] == "error" {
                    return Err(format!("sync refused: {v}"));
                }
            }
            Some(Ok(_)) => {}
            other => return Err(format!("socket closed during catch-up: {other:?}")),
        }
    }
}

pub async fn run(a: DeliverArgs) -> Result<(), String> {
    let targets = a.common.targets()?;
    let prefix = a.common.prefix()?;
    let http = Http::new()?;
    let servers = Servers::resolve(&targets, &a.common.server_pid);
    let p = a.pairs.max(1);
    if a.rate <= 0.0 {
        return Err("--rate must be positive".into());
    }
    let send_target = targets[0].clone();
    let recv_target = targets[1 % targets.len()].clone();
    eprintln!(
        "deliver: {} msg/s for {} s over {p} pairs, senders on {}, recipients on {}, prefix {prefix}",
        a.rate, a.duration, send_target.base, recv_target.base
    );
    let ids: Vec<String> = (0..2 * p).map(|i| format!("{prefix}{i}")).collect();
    register_all(&http, &targets, &ids, "setup").await?;
    let users = login_all(&http, &targets, &ids).await?;
    let pairs: Vec<(User, User)> = users.chunks(2).map(|c| (c[0].clone(), c[1].clone())).collect();
    befriend_all(&http, &targets, &pairs).await?;
    let head = http.head(&targets).await?;
    http.wait_applied(&targets, head).await?;

    let t0 = Instant::now();
    let delivered = Counters::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut readers = Vec::with_capacity(p);
    for (_, r) in &pairs {
        let ws = live_socket(&recv_target, r, head).await?;
        readers.push(tokio::spawn(recipient(ws, r.user_id.clone(), t0, delivered.clone(), stop_rx.clone())));
    }

    let sent = Counters::default();
    let errors = ErrorLog::default();
    let progress = Progress::start("deliver", "received", &delivered, a.common.quiet);
    let total = (a.rate * a.duration).round().max(1.0) as u64;
    let interval = Duration::from_secs_f64(1.0 / a.rate);
    let outstanding = Arc::new(Semaphore::new(a.max_outstanding.max(1)));
    let body = Arc::new(client::body_of(a.body_bytes));
    let convs: Arc<Vec<(User, String)>> =
        Arc::new(pairs.iter().map(|(s, r)| (s.clone(), direct_id(&s.user_id, &r.user_id))).collect());
    let send_start = Instant::now();
    let mut handles = Vec::with_capacity(total as usize);
    let overload = Arc::new(AtomicU64::new(0));
    for i in 0..total {
        let at = send_start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(at.into()).await;
        let Ok(permit) = outstanding.clone().try_acquire_owned() else {
            overload.fetch_add(1, Ordering::Relaxed);
            sent.error();
            errors.add("client_overload", "too many sends outstanding; the server is not keeping up");
            continue;
        };
        let j = (i as usize) % p;
        let sched_us = at.duration_since(t0).as_micros() as u64;
        let cmid = format!("{prefix}d{i}-{sched_us}");
        let (http, t, convs, body, sent, errors) =
            (http.clone(), send_target.clone(), convs.clone(), body.clone(), sent.clone(), errors.clone());
        handles.push(tokio::spawn(async move {
            let (user, cid) = &convs[j];
            let r = http.send(&t, user, cid, &cmid, &body).await.and_then(|s| s.created(&cmid));
            drop(permit);
            match r {
                Ok(_) => {
                    sent.op();
                    Some((j, cmid, at.elapsed()))
                }
                Err(e) => {
                    sent.error();
                    errors.add(&e.code, &e.message);
                    None
                }
            }
        }));
    }
    let mut ack_latency = Latency::new();
    let mut acked: Vec<(usize, String)> = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(Some((j, cmid, lat))) = h.await {
            ack_latency.record(lat);
            acked.push((j, cmid));
        }
    }
    let send_secs = send_start.elapsed().as_secs_f64();
    let drain_until = Instant::now() + DRAIN;
    while delivered.ops.load(Ordering::Relaxed) < acked.len() as u64 && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop_tx.send(true);
    drop(progress);
    let mut received = Vec::with_capacity(p);
    for r in readers {
        received.push(r.await.map_err(|e| format!("recipient task failed: {e}"))?);
    }

    let mut latency = Latency::new();
    let mut duplicates = 0;
    for r in &received {
        latency.merge(&r.latency);
        duplicates += r.duplicates;
    }
    let missing = acked.iter().filter(|(j, cmid)| !received[*j].seen.contains(cmid)).count();
    let mut report = Report::new("deliver", &targets);
    report.param("rate", a.rate);
    report.param("duration_s", a.duration);
    report.param("pairs", p as u64);
    report.param("body_bytes", a.body_bytes as u64);
    report.param("nodes", targets.len() as u64);
    report.param("cross_node", targets.len() > 1);
    report.rss = servers.rss();
    report.errors = errors.snapshot();
    report.ops.push(Op {
        name: "send (to ack)".into(),
        count: acked.len() as u64,
        errors: sent.errors.load(Ordering::Relaxed),
        seconds: send_secs,
        latency: Some(ack_latency),
    });
    report.ops.push(Op {
        name: "deliver (to receipt)".into(),
        count: latency.count(),
        errors: missing as u64,
        seconds: send_secs,
        latency: Some(latency),
    });
    report.figure("offered rate", a.rate, "msg/s");
    report.figure("achieved rate", acked.len() as f64 / send_secs, "msg/s acknowledged");
    report.check(
        "exactly-once delivery",
        missing == 0 && duplicates == 0,
        format!("{} acknowledged, {missing} not received within {DRAIN:?}, {duplicates} received twice", acked.len()),
    );
    report.finish(a.common.json.as_deref())
}
