//! `parley bench send`: C concurrent senders into M conversations for N messages or D seconds,
//! then an exactly-once check of every conversation's history.
//!
//! Senders are spread over the targets (sender `i` uses target `i % T`). Over HTTP each sender
//! has one request outstanding; over WebSocket (`--mode ws`) each has its own socket with
//! `--in-flight K` `send` frames outstanding, matched to their `ack` by `req`. Only a `201` is
//! a send: every request carries a fresh `client_msg_id`, so a `200` (already stored) is an
//! error here (`repeat_200`).
//!
//! The check reads each conversation's whole history, page by page, from the first target
//! (after it has applied the last acknowledged cursor) and requires: seqs exactly
//! `1..=max_seq`; every acknowledged `client_msg_id` stored exactly once, at the seq its ack
//! named; nothing stored twice; and no more unacknowledged messages stored than sends that
//! failed (a failed send may or may not have been applied).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use super::client::{self, befriend_all, direct_id, login_all, register_all, Http, HttpError, Target, User};
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
    pub crew: Crew,
}

/// An acknowledged message.
pub struct Acked {
    pub conv: usize,
    pub cmid: String,
    pub seq: u64,
    pub cursor: u64,
}

/// What one HTTP send came to.
pub enum Outcome {
    /// `201`: stored by this request.
    Created(Acked),
    /// `200`: the server already had this `client_msg_id` (not a send).
    Repeat,
    Failed(HttpError),
}

#[derive(Default)]
pub struct Sent {
    pub latency: Latency,
    pub acked: Vec<Acked>,
    pub errors: u64,
}

impl Job {
    fn next(&self, n: &mut u64) -> Option<String> {
        if self.crew.stop.load(Ordering::Relaxed) || !self.crew.budget.take() {
            return None;
        }
        *n += 1;
        Some(format!("{}{}", self.cmid_prefix, n))
    }

    /// One HTTP request at a time; `on` sees each request's number (`1, 2, ...` within this
    /// job), outcome and latency. A `200` is counted as an error under [`client::REPEAT`]: these
    /// jobs send fresh `client_msg_id`s only, so a `200` is not a send.
    pub async fn run_http_each(self, http: Http, mut on: impl FnMut(u64, Outcome, Duration)) {
        let mut n = 0;
        while let Some(cmid) = self.next(&mut n) {
            let t0 = Instant::now();
            let r = http
                .send(
                    &self.target,
                    &self.user,
                    &self.conv_id,
                    &cmid,
                    self.crew.body.at(n.wrapping_add((self.conv as u64) << 32)),
                )
                .await;
            let took = t0.elapsed();
            let failed = r.is_err();
            let outcome = match r {
                Ok(s) => {
                    let acked = Acked { conv: self.conv, cmid, seq: s.seq, cursor: s.cursor };
                    if s.created {
                        self.crew.counters.op();
                        Outcome::Created(acked)
                    } else {
                        self.crew.counters.error();
                        let e = client::repeat_error(&acked.cmid);
                        self.crew.errors.add(&e.code, &e.message);
                        Outcome::Repeat
                    }
                }
                Err(e) => {
                    self.crew.counters.error();
                    self.crew.errors.add(&e.code, &e.message);
                    Outcome::Failed(e)
                }
            };
            on(n, outcome, took);
            if failed {
                // Do not spin on a refusing server.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    /// One HTTP request at a time; the acknowledged (`201`) messages and their latency.
    pub async fn run_http(self, http: Http) -> Sent {
        let mut out = Sent::default();
        self.run_http_each(http, |_, outcome, took| match outcome {
            Outcome::Created(a) => {
                out.latency.record(took);
                out.acked.push(a);
            }
            Outcome::Repeat | Outcome::Failed(_) => out.errors += 1,
        })
        .await;
        out
    }

    /// One WebSocket with up to `in_flight` `send` frames outstanding.
    pub async fn run_ws(self) -> Sent {
        let mut out = Sent::default();
        let mut ws = match client::connect_ws(&self.target, &self.user.token, None).await {
            Ok(ws) => ws,
            Err(e) => {
                out.errors += 1;
                self.crew.counters.error();
                self.crew.errors.add("ws_connect", &e);
                return out;
            }
        };
        let k = self.crew.in_flight.max(1);
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
                                       "client_msg_id": cmid, "body": self.crew.body.at(n.wrapping_add((self.conv as u64) << 32))});
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
                    self.crew.counters.op();
                }
                _ => {
                    out.errors += 1;
                    self.crew.counters.error();
                    self.crew
                        .errors
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
            self.crew.counters.error();
            self.crew.errors.add(code, msg);
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

/// What every sender of a run shares.
#[derive(Clone)]
pub struct Crew {
    pub body: Arc<client::Bodies>,
    /// WebSocket requests in flight per sender.
    pub in_flight: usize,
    pub budget: Budget,
    pub stop: Arc<AtomicBool>,
    pub counters: Counters,
    pub errors: ErrorLog,
}

impl Crew {
    pub fn new(body_bytes: usize, in_flight: usize, messages: Option<u64>) -> Crew {
        Crew {
            body: Arc::new(client::Bodies::new(body_bytes)),
            in_flight,
            budget: Budget::new(messages),
            stop: Arc::new(AtomicBool::new(false)),
            counters: Counters::default(),
            errors: ErrorLog::default(),
        }
    }

    /// `c` senders over `convs`: sender `i` writes into conversation `i % m` as its member
    /// `(i / m) % members` (with more senders than conversations, both sides of a pair send),
    /// through target `i % T`, with `client_msg_id`s `<cmid_prefix><i>-<n>`.
    pub fn spread(&self, c: usize, targets: &[Target], convs: &Conversations, cmid_prefix: &str) -> Vec<Job> {
        let m = convs.ids.len().max(1);
        (0..c)
            .map(|i| {
                let conv = i % m;
                let members = &convs.members[conv];
                Job {
                    target: targets[i % targets.len()].clone(),
                    user: members[(i / m) % members.len()].clone(),
                    conv,
                    conv_id: convs.ids[conv].clone(),
                    cmid_prefix: format!("{cmid_prefix}{i}-"),
                    crew: self.clone(),
                }
            })
            .collect()
    }

    /// Stops the senders (they finish the request in hand) after `seconds`; abort the handle
    /// when they finish first.
    pub fn stop_after(&self, seconds: f64) -> tokio::task::JoinHandle<()> {
        let stop = self.stop.clone();
        let d = Duration::from_secs_f64(seconds.max(0.1));
        tokio::spawn(async move {
            tokio::time::sleep(d).await;
            stop.store(true, Ordering::Relaxed);
        })
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

    let crew = Crew::new(a.body_bytes, a.in_flight, a.messages);
    let jobs = crew.spread(c, &targets, &convs, &format!("{prefix}s"));
    let progress = Progress::start("send", "acked", &crew.counters, a.common.quiet);
    let started = Instant::now();
    let timer = crew.stop_after(a.duration);
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
    report.errors = crew.errors.snapshot();
    let acked = total.acked.len() as u64;
    report.ops.push(Op {
        name: "send".into(),
        count: acked,
        errors: total.errors,
        seconds: elapsed,
        latency: Some(total.latency),
    });
    eprintln!("  checking every conversation's history ...");
    let (ok, detail) = match AckMap::new(convs.ids.len(), &total.acked) {
        Ok(book) => {
            let every: Vec<usize> = (0..convs.ids.len()).collect();
            check_exactly_once(&http, &targets[0], &convs, &every, &book, total.errors).await
        }
        Err(e) => (false, e),
    };
    report.check("exactly-once", ok, detail);
    report.finish(a.common.json.as_deref())
}

/// What the exactly-once check knows of the acknowledgements (`201`s) of a run.
pub trait AckBook {
    /// The seq `cmid` was acknowledged at in conversation `conv`; `None`: never acknowledged.
    fn acked_seq(&self, conv: usize, cmid: &str) -> Option<u64>;
    /// How many messages of `conv` were acknowledged.
    fn acked_in(&self, conv: usize) -> u64;
    /// The highest cursor any acknowledgement named (the check reads after it).
    fn max_cursor(&self) -> u64;
}

/// An [`AckBook`] of every acknowledgement, by conversation and `client_msg_id`.
pub struct AckMap<'a> {
    by_conv: Vec<HashMap<&'a str, u64>>,
    max_cursor: u64,
}

impl<'a> AckMap<'a> {
    /// Fails when a `client_msg_id` was acknowledged twice.
    pub fn new(conversations: usize, acked: &'a [Acked]) -> Result<AckMap<'a>, String> {
        let mut by_conv: Vec<HashMap<&str, u64>> = vec![HashMap::new(); conversations];
        for a in acked {
            let conv = by_conv.get_mut(a.conv).ok_or_else(|| format!("{}: unknown conversation {}", a.cmid, a.conv))?;
            if conv.insert(a.cmid.as_str(), a.seq).is_some() {
                return Err(format!("client_msg_id {} acknowledged twice", a.cmid));
            }
        }
        Ok(AckMap { by_conv, max_cursor: acked.iter().map(|a| a.cursor).max().unwrap_or(0) })
    }
}

impl AckBook for AckMap<'_> {
    fn acked_seq(&self, conv: usize, cmid: &str) -> Option<u64> {
        self.by_conv.get(conv)?.get(cmid).copied()
    }

    fn acked_in(&self, conv: usize) -> u64 {
        self.by_conv.get(conv).map_or(0, |m| m.len() as u64)
    }

    fn max_cursor(&self) -> u64 {
        self.max_cursor
    }
}

/// Reads the conversations `which` back, page by page (memory bounded by the failed sends, not
/// the history), and checks them against the acknowledgements: seqs exactly `1..=max_seq`;
/// every acknowledged message stored exactly once, at its acknowledged seq; nothing stored
/// twice; no more unacknowledged messages stored than sends that failed.
///
/// Why no set of every stored message is needed: seqs are checked to be contiguous, so every
/// stored copy has its own seq; an acknowledged `client_msg_id` matches at one seq only, so a
/// second copy fails the seq comparison, and "all acknowledged present" is a count. Only the
/// unacknowledged ones (at most `failed_sends`) are kept to find their duplicates.
pub async fn check_exactly_once(
    http: &Http,
    target: &Target,
    convs: &Conversations,
    which: &[usize],
    book: &impl AckBook,
    failed_sends: u64,
) -> (bool, String) {
    let min_cursor = book.max_cursor();
    let (mut stored, mut stored_unacked, mut acked_total) = (0u64, 0u64, 0u64);
    for &i in which {
        let cid = &convs.ids[i];
        let reader = &convs.members[i][0];
        let mut unacked: HashSet<(String, String)> = HashSet::new();
        let (mut count, mut matched) = (0u64, 0u64);
        let max_seq = loop {
            let (page, max) = match http.history_page(target, reader, cid, count, min_cursor).await {
                Ok(p) => p,
                Err(e) => return (false, format!("history of {cid}: {e}")),
            };
            let last_page = page.len() < client::HISTORY_PAGE;
            for (seq, sender, cmid) in page {
                count += 1;
                if seq != count {
                    return (false, format!("{cid}: seq {seq} at position {count} (gap or disorder)"));
                }
                match book.acked_seq(i, &cmid) {
                    Some(acked_seq) if acked_seq != seq => {
                        return (false, format!("{cid}: {cmid} acknowledged at seq {acked_seq} but stored at {seq}"))
                    }
                    Some(_) => matched += 1,
                    None => {
                        stored_unacked += 1;
                        if stored_unacked > failed_sends {
                            return (
                                false,
                                format!(
                                    "more stored messages were never sent successfully than the {failed_sends} \
                                     sends that failed ({cid}: {cmid})"
                                ),
                            );
                        }
                        if !unacked.insert((sender, cmid)) {
                            return (false, format!("{cid}: a message stored twice at seq {seq}"));
                        }
                    }
                }
            }
            if last_page {
                break max;
            }
        };
        if max_seq != count {
            return (false, format!("{cid}: max_seq {max_seq} but {count} messages"));
        }
        let acked = book.acked_in(i);
        if matched != acked {
            return (false, format!("{cid}: {} of {acked} acknowledged messages are missing", acked - matched));
        }
        stored += count;
        acked_total += acked;
    }
    (
        true,
        format!(
            "{acked_total} acknowledged messages in {} conversations each stored once at its acked seq; seqs 1..max \
             contiguous; {stored} stored, {stored_unacked} of them from failed sends",
            which.len()
        ),
    )
}
