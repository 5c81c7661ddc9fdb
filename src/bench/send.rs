//! `parley bench send`: C concurrent senders into M conversations for N messages or D seconds,
//! then an exactly-once check of every conversation's history.
//!
//! Senders are spread over the targets (sender `i` uses target `i % T`). Over HTTP each sender
//! has one request outstanding; over WebSocket (`--mode ws`) each has its own socket with
//! `--in-flight K` `send` frames outstanding, matched to their `ack` by `req`.
//!
//! The check reads each conversation's whole history from the first target (after it has
//! applied the last acknowledged cursor) and requires: seqs exactly `1..=max_seq`; every
//! acknowledged `client_msg_id` stored exactly once, at the seq its ack named; nothing stored
//! twice; and no more unacknowledged messages stored than sends that failed (a failed send may
//! or may not have been applied).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use super::client::{self, befriend_all, direct_id, login_all, register_all, Http, Target, User};
use super::report::{Counters, ErrorLog, Latency, Op, Progress, Report, Servers};
use super::{Common, Mode};

/// Longest a WebSocket sender waits for any answer while it has requests outstanding.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Direct conversations between pairs of friends (2 users per conversation).
    Direct,
    /// Group conversations, every sender a member of every group.
    Group,
}

/// Flags of `parley bench send`.
#[derive(Args, Debug)]
pub struct SendArgs {
    #[command(flatten)]
    pub common: Common,
    /// Concurrent senders.
    #[arg(short = 'c', long, default_value_t = 16)]
    pub concurrency: usize,
    /// Conversations to send into [default: one per sender].
    #[arg(short = 'm', long)]
    pub conversations: Option<usize>,
    /// Stop after this many messages in all.
    #[arg(short = 'n', long)]
    pub messages: Option<u64>,
    /// Stop after this many seconds (whichever comes first).
    #[arg(short = 'd', long, default_value_t = 10.0)]
    pub duration: f64,
    /// HTTP requests or WebSocket frames.
    #[arg(long, value_enum, default_value_t = Mode::Http)]
    pub mode: Mode,
    /// WebSocket requests in flight per sender (the server allows 64).
    #[arg(long, default_value_t = 8)]
    pub in_flight: usize,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 256)]
    pub body_bytes: usize,
    /// Direct or group conversations.
    #[arg(long, value_enum, default_value_t = Kind::Direct)]
    pub kind: Kind,
}

/// A shared cap on messages issued.
#[derive(Clone)]
pub struct Budget {
    issued: Arc<AtomicU64>,
    limit: u64,
}

impl Budget {
    pub fn new(limit: Option<u64>) -> Budget {
        Budget { issued: Arc::new(AtomicU64::new(0)), limit: limit.unwrap_or(u64::MAX) }
    }

    /// Takes one message from the budget; false when it is spent.
    pub fn take(&self) -> bool {
        self.issued.fetch_add(1, Ordering::Relaxed) < self.limit
    }
}

/// One sender's work.
#[derive(Clone)]
pub struct Job {
    pub target: Target,
    pub user: User,
    /// Index of the conversation in the caller's list, echoed in [`Acked`].
    pub conv: usize,
    pub conv_id: String,
    /// `client_msg_id`s are `<cmid_prefix><n>`: unique per job.
    pub cmid_prefix: String,
    pub body: Arc<String>,
    pub in_flight: usize,
    pub budget: Budget,
    pub stop: Arc<AtomicBool>,
    pub counters: Counters,
    pub errors: ErrorLog,
}

/// An acknowledged message.
pub struct Acked {
    pub conv: usize,
    pub cmid: String,
    pub seq: u64,
    pub cursor: u64,
}

#[derive(Default)]
pub struct Sent {
    pub latency: Latency,
    pub acked: Vec<Acked>,
    pub errors: u64,
}

impl Job {
    fn next(&self, n: &mut u64) -> Option<String> {
        if self.stop.load(Ordering::Relaxed) || !self.budget.take() {
            return None;
        }
        *n += 1;
        Some(format!("{}{}", self.cmid_prefix, n))
    }

    /// One HTTP request at a time.
    pub async fn run_http(self, http: Http) -> Sent {
        let mut out = Sent::default();
        let mut n = 0;
        while let Some(cmid) = self.next(&mut n) {
            let t0 = Instant::now();
            match http.send(&self.target, &self.user, &self.conv_id, &cmid, &self.body).await {
                Ok((seq, cursor)) => {
                    out.latency.record(t0.elapsed());
                    out.acked.push(Acked { conv: self.conv, cmid, seq, cursor });
                    self.counters.op();
                }
                Err(e) => {
                    out.errors += 1;
                    self.counters.error();
                    self.errors.add(&e.code, &e.message);
                    // Do not spin on a refusing server.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
        out
    }

    /// One WebSocket with up to `in_flight` `send` frames outstanding.
    pub async fn run_ws(self) -> Sent {
        let mut out = Sent::default();
        let mut ws = match client::connect_ws(&self.target, &self.user.token, None).await {
            Ok(ws) => ws,
            Err(e) => {
                out.errors += 1;
                self.counters.error();
                self.errors.add("ws_connect", &e);
                return out;
            }
        };
        let k = self.in_flight.max(1);
        let mut pending: HashMap<u64, (Instant, String)> = HashMap::with_capacity(k);
        let (mut n, mut req, mut issuing) = (0u64, 0u64, true);
        loop {
            if issuing {
                let mut fed = false;
                while pending.len() < k {
                    let Some(cmid) = self.next(&mut n) else {
                        issuing = false;
                        break;
                    };
                    req += 1;
                    let frame = json!({"type": "send", "req": req, "conversation_id": self.conv_id,
                                       "client_msg_id": cmid, "body": self.body.as_str()});
                    pending.insert(req, (Instant::now(), cmid));
                    if ws.feed(Message::text(frame.to_string())).await.is_err() {
                        break;
                    }
                    fed = true;
                }
                if fed && ws.flush().await.is_err() {
                    self.fail_all(&mut out, &mut pending, "ws_closed", "flush failed");
                    break;
                }
            }
            if pending.is_empty() {
                if issuing {
                    continue;
                }
                break;
            }
            let frame = match tokio::time::timeout(ACK_TIMEOUT, ws.next()).await {
                Err(_) => {
                    self.fail_all(&mut out, &mut pending, "timeout", "no answer within 30 s");
                    break;
                }
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => {
                    self.fail_all(&mut out, &mut pending, "ws_closed", "socket closed with requests in flight");
                    break;
                }
                Ok(Some(Ok(Message::Text(t)))) => serde_json::from_str::<Value>(t.as_str()).unwrap_or(Value::Null),
                Ok(Some(Ok(_))) => continue,
            };
            let Some(r) = frame["req"].as_u64() else { continue };
            let Some((t0, cmid)) = pending.remove(&r) else { continue };
            match frame["type"].as_str() {
                Some("ack") => {
                    out.latency.record(t0.elapsed());
                    let seq = frame["message"]["seq"].as_u64().unwrap_or(0);
                    let cursor = frame["cursor"].as_u64().unwrap_or(0);
                    out.acked.push(Acked { conv: self.conv, cmid, seq, cursor });
                    self.counters.op();
                }
                _ => {
                    out.errors += 1;
                    self.counters.error();
                    self.errors
                        .add(frame["code"].as_str().unwrap_or("bad_frame"), frame["message"].as_str().unwrap_or(""));
                }
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
        out
    }

    fn fail_all(&self, out: &mut Sent, pending: &mut HashMap<u64, (Instant, String)>, code: &str, msg: &str) {
        for _ in pending.drain() {
            out.errors += 1;
            self.counters.error();
            self.errors.add(code, msg);
        }
    }
}

/// Conversations and who may send into them.
pub struct Conversations {
    pub ids: Vec<String>,
    /// The members of each conversation (logged in).
    pub members: Vec<Vec<User>>,
}

/// Registers users and builds `m` conversations of `kind`; `senders` bounds the users of group
/// conversations.
pub async fn setup_conversations(
    http: &Http,
    targets: &[Target],
    prefix: &str,
    kind: Kind,
    m: usize,
    senders: usize,
) -> Result<Conversations, String> {
    match kind {
        Kind::Direct => {
            let ids: Vec<String> = (0..2 * m).map(|i| format!("{prefix}{i}")).collect();
            register_all(http, targets, &ids, "setup").await?;
            let users = login_all(http, targets, &ids).await?;
            let pairs: Vec<(User, User)> = users.chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect();
            befriend_all(http, targets, &pairs).await?;
            Ok(Conversations {
                ids: pairs.iter().map(|(a, b)| direct_id(&a.user_id, &b.user_id)).collect(),
                members: pairs.into_iter().map(|(a, b)| vec![a, b]).collect(),
            })
        }
        Kind::Group => {
            let u = senders.clamp(1, 256);
            let ids: Vec<String> = (0..u).map(|i| format!("{prefix}{i}")).collect();
            register_all(http, targets, &ids, "setup").await?;
            let users = login_all(http, targets, &ids).await?;
            let mut convs = Vec::with_capacity(m);
            for g in 0..m {
                let cid = http
                    .create_group(&targets[g % targets.len()], &users[0], &format!("bench {g}"), &ids[1..])
                    .await
                    .map_err(|e| format!("create group: {e}"))?;
                convs.push(cid);
            }
            Ok(Conversations { members: vec![users; m], ids: convs })
        }
    }
}

pub async fn run(a: SendArgs) -> Result<(), String> {
    let targets = a.common.targets()?;
    let prefix = a.common.prefix()?;
    let http = Http::new()?;
    let servers = Servers::resolve(&targets, &a.common.server_pid);
    let c = a.concurrency.max(1);
    let m = a.conversations.unwrap_or(c).max(1);
    eprintln!("send: {c} senders ({}) into {m} {:?} conversations, prefix {prefix}", a.mode.as_str(), a.kind);
    let convs = setup_conversations(&http, &targets, &prefix, a.kind, m, c).await?;
    http.wait_applied(&targets, http.head(&targets).await?).await?;

    let body = Arc::new(client::body_of(a.body_bytes));
    let budget = Budget::new(a.messages);
    let stop = Arc::new(AtomicBool::new(false));
    let counters = Counters::default();
    let errors = ErrorLog::default();
    let jobs: Vec<Job> = (0..c)
        .map(|i| {
            let conv = i % m;
            let members = &convs.members[conv];
            let user = members[(i / m) % members.len()].clone();
            Job {
                target: targets[i % targets.len()].clone(),
                user,
                conv,
                conv_id: convs.ids[conv].clone(),
                cmid_prefix: format!("{prefix}s{i}-"),
                body: body.clone(),
                in_flight: a.in_flight,
                budget: budget.clone(),
                stop: stop.clone(),
                counters: counters.clone(),
                errors: errors.clone(),
            }
        })
        .collect();

    let progress = Progress::start("send", "acked", &counters, a.common.quiet);
    let started = Instant::now();
    let timer = {
        let stop = stop.clone();
        let d = Duration::from_secs_f64(a.duration.max(0.1));
        tokio::spawn(async move {
            tokio::time::sleep(d).await;
            stop.store(true, Ordering::Relaxed);
        })
    };
    let handles: Vec<_> = jobs
        .into_iter()
        .map(|j| match a.mode {
            Mode::Http => tokio::spawn(j.run_http(http.clone())),
            Mode::Ws => tokio::spawn(j.run_ws()),
        })
        .collect();
    let mut total = Sent::default();
    for h in handles {
        let s = h.await.map_err(|e| format!("sender task failed: {e}"))?;
        total.latency.merge(&s.latency);
        total.acked.extend(s.acked);
        total.errors += s.errors;
    }
    let elapsed = started.elapsed().as_secs_f64();
    timer.abort();
    drop(progress);

    let mut report = Report::new("send", &targets);
    report.param("mode", a.mode.as_str());
    report.param("concurrency", c as u64);
    report.param("conversations", m as u64);
    report.param("kind", format!("{:?}", a.kind).to_lowercase());
    report.param("in_flight", if a.mode == Mode::Ws { a.in_flight as u64 } else { 1 });
    report.param("body_bytes", a.body_bytes as u64);
    report.param("nodes", targets.len() as u64);
    report.rss = servers.rss();
    report.errors = errors.snapshot();
    let acked = total.acked.len() as u64;
    report.ops.push(Op {
        name: "send".into(),
        count: acked,
        errors: total.errors,
        seconds: elapsed,
        latency: Some(total.latency),
    });
    eprintln!("  checking every conversation's history ...");
    let (ok, detail) = check_exactly_once(&http, &targets[0], &convs, &total.acked, total.errors).await;
    report.check("exactly-once", ok, detail);
    report.finish(a.common.json.as_deref())
}

/// Reads every conversation back and checks it against the acknowledgements.
pub async fn check_exactly_once(
    http: &Http,
    target: &Target,
    convs: &Conversations,
    acked: &[Acked],
    failed_sends: u64,
) -> (bool, String) {
    let min_cursor = acked.iter().map(|a| a.cursor).max().unwrap_or(0);
    let mut by_conv: Vec<HashMap<&str, u64>> = vec![HashMap::new(); convs.ids.len()];
    for a in acked {
        if by_conv[a.conv].insert(a.cmid.as_str(), a.seq).is_some() {
            return (false, format!("client_msg_id {} acknowledged twice", a.cmid));
        }
    }
    let mut stored_unacked = 0u64;
    let mut stored = 0u64;
    for (i, cid) in convs.ids.iter().enumerate() {
        let (history, max_seq) = match http.history(target, &convs.members[i][0], cid, min_cursor).await {
            Ok(h) => h,
            Err(e) => return (false, format!("history of {cid}: {e}")),
        };
        let mut seen: HashMap<(&str, &str), u64> = HashMap::new();
        for (k, (seq, sender, cmid)) in history.iter().enumerate() {
            if *seq != k as u64 + 1 {
                return (false, format!("{cid}: seq {seq} at position {} (gap or disorder)", k + 1));
            }
            if seen.insert((sender.as_str(), cmid.as_str()), *seq).is_some() {
                return (false, format!("{cid}: ({sender}, {cmid}) stored twice"));
            }
            match by_conv[i].get(cmid.as_str()) {
                Some(acked_seq) if acked_seq != seq => {
                    return (false, format!("{cid}: {cmid} acknowledged at seq {acked_seq} but stored at {seq}"))
                }
                Some(_) => {}
                None => stored_unacked += 1,
            }
        }
        if max_seq != history.len() as u64 {
            return (false, format!("{cid}: max_seq {max_seq} but {} messages", history.len()));
        }
        let cmids: std::collections::HashSet<&str> = history.iter().map(|(_, _, c)| c.as_str()).collect();
        if let Some(missing) = by_conv[i].keys().find(|c| !cmids.contains(**c)) {
            return (false, format!("{cid}: acknowledged {missing} is missing"));
        }
        stored += history.len() as u64;
    }
    if stored_unacked > failed_sends {
        return (
            false,
            format!("{stored_unacked} stored messages were never sent successfully ({failed_sends} failed)"),
        );
    }
    (
        true,
        format!(
            "{} acknowledged messages in {} conversations each stored once at its acked seq; seqs 1..max contiguous; \
             {stored} stored, {stored_unacked} of them from failed sends",
            acked.len(),
            convs.ids.len()
        ),
    )
}
