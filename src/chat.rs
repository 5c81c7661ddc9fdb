//! `parley chat`: a line-based terminal client.
//!
//! Line-based rather than a full-screen UI on purpose: it works in any terminal, over ssh, in
//! `tmux`, and from a script that writes lines to its stdin and reads lines from its stdout,
//! which is how its test drives it. Every incoming message prints as one line,
//! `[<conversation> #<seq>] <sender>: <body>`, whichever conversation it is in.
//!
//! Two tasks share the screen: the command loop (stdin lines: a command, or text to send to
//! the open conversation) and the live feed, a WebSocket that syncs from the cursor of the
//! first conversation list and reconnects with backoff, resuming from the last cursor it
//! printed, so a restarted server loses nothing and repeats nothing. Messages arriving in the
//! open conversation are marked read at once, as a chat window that is in front does.
//!
//! Built on the one client, `parley_client`; the password comes from `PARLEY_PASSWORD` or a
//! prompt (not echoed on a terminal).

use std::io::{BufRead, IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use futures_util::{SinkExt, StreamExt};
use parley_client::{connect_ws, direct_id, Http, HttpError, Target, User};
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;
use tokio_tungstenite::tungstenite::Message;

#[derive(Args, Debug)]
pub struct ChatArgs {
    /// The node to talk to, `http://host:port`.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub target: String,
    /// Your user id.
    #[arg(long)]
    pub user: String,
    /// The session's device name.
    #[arg(long, default_value = "parley-chat")]
    pub device: String,
}

/// Messages shown when a conversation is opened, and per `/more`.
const PAGE: usize = 20;
/// The longest wait between reconnection attempts of the live feed.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

const HELP: &str = "\
commands:
  /list                 conversations, newest first, with unread counts
  /open <who|cid|n>     open a conversation (a friend's id, a conversation id, or a /list number)
  <text>                send to the open conversation
  /more                 older messages of the open conversation
  /read                 mark the open conversation read
  /friends              friends and pending requests
  /add <user>           send a friend request      /accept <user>  accept one
  /group <name> <user>...  create a group          /invite <user>...  add to the open group
  /members              the open group's members
  /help                 this text                  /quit           leave";

/// What the command loop and the live feed share.
struct Shared {
    http: Http,
    target: Target,
    me: User,
    /// The open conversation, if any.
    open: Mutex<Option<Open>>,
}

/// The conversation in front, and the oldest message of it shown so far (what `/more` pages
/// back from).
#[derive(Clone)]
struct Open {
    cid: String,
    oldest: Option<u64>,
}

pub fn run(args: ChatArgs) -> Result<(), String> {
    let target = Target::parse(&args.target)?;
    let password = password()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    rt.block_on(chat(target, args.user, password, args.device))
}

/// `PARLEY_PASSWORD`, else a prompt on stderr (echo off when stdin is a terminal).
fn password() -> Result<String, String> {
    if let Ok(p) = std::env::var("PARLEY_PASSWORD") {
        return Ok(p);
    }
    eprint!("password: ");
    let _ = std::io::stderr().flush();
    let stdin = std::io::stdin();
    let echo_off = stdin.is_terminal().then(EchoOff::new).flatten();
    let mut line = String::new();
    stdin.lock().read_line(&mut line).map_err(|e| format!("cannot read the password: {e}"))?;
    drop(echo_off);
    if stdin.is_terminal() {
        eprintln!();
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Turns terminal echo off on stdin while it lives.
struct EchoOff(libc::termios);

impl EchoOff {
    fn new() -> Option<EchoOff> {
        // SAFETY: tcgetattr/tcsetattr on fd 0 with a zeroed termios they fill in.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return None;
            }
            let saved = t;
            t.c_lflag &= !libc::ECHO;
            (libc::tcsetattr(0, libc::TCSANOW, &t) == 0).then_some(EchoOff(saved))
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `new`.
        unsafe {
            libc::tcsetattr(0, libc::TCSANOW, &self.0);
        }
    }
}

async fn chat(target: Target, user: String, password: String, device: String) -> Result<(), String> {
    let http = Http::new()?;
    let me = http.login(&target, &user, &password, &device).await.map_err(|e| format!("login failed: {e}"))?;
    let s = Arc::new(Shared { http, target, me, open: Mutex::new(None) });
    println!("logged in as {} on {}; /help for commands", s.me.user_id, s.target.base);
    let (list, cursor) = conversations(&s).await.map_err(|e| e.to_string())?;
    print_list(&list);
    let feed = tokio::spawn(live_feed(s.clone(), cursor));
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut last_list = list;
    while let Ok(Some(line)) = lines.next_line().await {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match command(&s, line, &mut last_list).await {
            Ok(Flow::Continue) => {}
            Ok(Flow::Quit) => break,
            Err(e) => println!("! {e}"),
        }
    }
    feed.abort();
    Ok(())
}

enum Flow {
    Continue,
    Quit,
}

/// Runs one line typed by the user.
async fn command(s: &Shared, line: &str, last_list: &mut Vec<Value>) -> Result<Flow, String> {
    let (cmd, rest) = match line.strip_prefix('/') {
        Some(c) => c.split_once(' ').map(|(a, b)| (a, b.trim())).unwrap_or((c, "")),
        None => return send(s, line).await.map(|_| Flow::Continue),
    };
    let words: Vec<String> = rest.split_whitespace().map(str::to_owned).collect();
    let (h, t, me) = (&s.http, &s.target, &s.me);
    match cmd {
        "quit" | "q" => return Ok(Flow::Quit),
        "help" => println!("{HELP}"),
        "list" | "l" => {
            *last_list = conversations(s).await?.0;
            print_list(last_list);
        }
        "open" | "o" => {
            let cid = resolve(&me.user_id, rest, last_list)?;
            let msgs = h.messages_before(t, me, &cid, None, PAGE).await?;
            println!("-- {cid} --");
            msgs.iter().for_each(|m| print_message(&cid, m));
            *lock(&s.open) = Some(Open { cid: cid.clone(), oldest: oldest_seq(&msgs) });
            mark_read(s, &cid, u64::MAX).await?;
        }
        "more" => {
            let Open { cid, oldest } = lock(&s.open).clone().ok_or(NOTHING_OPEN)?;
            let msgs = match oldest {
                Some(seq) if seq > 1 => h.messages_before(t, me, &cid, Some(seq), PAGE).await?,
                _ => Vec::new(),
            };
            if msgs.is_empty() {
                println!("-- no older messages --");
            }
            msgs.iter().for_each(|m| print_message(&cid, m));
            if let Some(o) = lock(&s.open).as_mut().filter(|o| o.cid == cid) {
                o.oldest = oldest_seq(&msgs).or(o.oldest);
            }
        }
        "read" => {
            let cid = open(s)?;
            mark_read(s, &cid, u64::MAX).await?;
        }
        "friends" => {
            let friends = h.friends(t, me).await?;
            let (incoming, outgoing) = h.friend_requests(t, me).await?;
            println!("friends: {}", if friends.is_empty() { "(none)".into() } else { friends.join(", ") });
            if !incoming.is_empty() {
                println!("requests from: {} (/accept <user>)", incoming.join(", "));
            }
            if !outgoing.is_empty() {
                println!("waiting for: {}", outgoing.join(", "));
            }
        }
        "add" => {
            let to = one(&words, "/add <user>")?;
            h.request_friend(t, me, to).await?;
            println!("* friend request sent to {to}");
        }
        "accept" => {
            let from = one(&words, "/accept <user>")?;
            h.accept_friend(t, me, from).await?;
            println!("* you and {from} are friends: /open {from}");
        }
        "group" => {
            let (name, members) = words.split_first().ok_or("/group <name> <user>...")?;
            let cid = h.create_group(t, me, name, members).await?;
            println!("* created {cid}: /open {cid}");
        }
        "invite" => {
            let gid = open_group(s)?;
            if words.is_empty() {
                return Err("/invite <user>...".into());
            }
            h.add_members(t, me, &gid, &words).await?;
            println!("* added {}", words.join(", "));
        }
        "members" => {
            let g = h.group(t, me, &open_group(s)?).await?;
            let members: Vec<String> = g["members"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|m| {
                            format!("{} ({})", m["user_id"].as_str().unwrap_or("?"), m["role"].as_str().unwrap_or("?"))
                        })
                        .collect()
                })
                .unwrap_or_default();
            println!("{}: {}", g["name"].as_str().unwrap_or(""), members.join(", "));
        }
        other => println!("! unknown command /{other}; /help lists them"),
    }
    Ok(Flow::Continue)
}

/// The lowest `seq` of a page of messages.
fn oldest_seq(msgs: &[Value]) -> Option<u64> {
    msgs.iter().filter_map(|m| m["seq"].as_u64()).min()
}

const NOTHING_OPEN: &str = "no conversation is open: /list, then /open <n>";

async fn send(s: &Shared, text: &str) -> Result<(), String> {
    let cid = open(s)?;
    let cmid = format!("chat-{}", hex::encode(rand::random::<[u8; 8]>()));
    // The live feed prints it (once), like anyone else's message.
    s.http.send(&s.target, &s.me, &cid, &cmid, text).await?;
    Ok(())
}

async fn mark_read(s: &Shared, cid: &str, seq: u64) -> Result<(), HttpError> {
    s.http.read(&s.target, &s.me, cid, seq).await.map(|_| ())
}

/// The conversation list and the cursor it is as of (the live feed starts there).
async fn conversations(s: &Shared) -> Result<(Vec<Value>, u64), HttpError> {
    s.http.conversations(&s.target, &s.me).await
}

fn print_list(list: &[Value]) {
    if list.is_empty() {
        println!("no conversations yet: /friends, /add <user>, then /open <user>");
    }
    for (i, c) in list.iter().enumerate() {
        let cid = c["conversation_id"].as_str().unwrap_or("?");
        let who = c["peer"].as_str().or(c["group_id"].as_str()).unwrap_or("");
        let last = &c["last_message"];
        let preview = match (last["sender"].as_str(), last["body"].as_str()) {
            (Some(from), Some(body)) => format!("{from}: {}", preview(body)),
            _ => String::new(),
        };
        println!("{:>2}. {cid}  {who}  unread {}  | {preview}", i + 1, c["unread"].as_u64().unwrap_or(0));
    }
}

fn preview(body: &str) -> String {
    let one_line = body.replace(['\n', '\r'], " ");
    match one_line.char_indices().nth(60) {
        Some((i, _)) => format!("{}...", &one_line[..i]),
        None => one_line,
    }
}

fn print_message(cid: &str, m: &Value) {
    let body = if m["revoked"].as_bool() == Some(true) { "(revoked)" } else { m["body"].as_str().unwrap_or("") };
    println!(
        "[{cid} #{}] {}: {}",
        m["seq"].as_u64().unwrap_or(0),
        m["sender"].as_str().unwrap_or("?"),
        body.replace(['\n', '\r'], " ")
    );
}

/// `/open`'s argument: a conversation id, a `/list` number, or a friend's user id.
fn resolve(me: &str, arg: &str, last_list: &[Value]) -> Result<String, String> {
    if arg.is_empty() {
        return Err("/open <user|conversation id|number>".into());
    }
    if arg.starts_with("d:") || arg.starts_with("g:") {
        return Ok(arg.to_owned());
    }
    if let Ok(n) = arg.parse::<usize>() {
        return last_list
            .get(n.wrapping_sub(1))
            .and_then(|c| c["conversation_id"].as_str())
            .map(str::to_owned)
            .ok_or_else(|| format!("no conversation {n} in the last /list"));
    }
    Ok(direct_id(me, arg))
}

fn open(s: &Shared) -> Result<String, String> {
    lock(&s.open).as_ref().map(|o| o.cid.clone()).ok_or_else(|| NOTHING_OPEN.into())
}

fn open_group(s: &Shared) -> Result<String, String> {
    let cid = open(s)?;
    cid.strip_prefix("g:").map(str::to_owned).ok_or_else(|| "the open conversation is not a group".into())
}

fn one<'a>(words: &'a [String], usage: &str) -> Result<&'a str, String> {
    match words {
        [w] => Ok(w),
        _ => Err(usage.into()),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The live feed: sync from `cursor`, print what arrives, reconnect and resume on any drop.
async fn live_feed(s: Arc<Shared>, mut cursor: u64) {
    let mut backoff = Duration::from_millis(250);
    loop {
        match follow(&s, &mut cursor).await {
            Ok(()) => backoff = Duration::from_millis(250),
            Err(e) => println!("! live updates interrupted ({e}); reconnecting"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One WebSocket session of the live feed; returns when it ends. `cursor` is the last update
/// printed: anything at or below it is a repeat and skipped.
async fn follow(s: &Shared, cursor: &mut u64) -> Result<(), String> {
    let mut ws = connect_ws(&s.target, &s.me.token, None).await?;
    ws.send(Message::text(json!({"type": "sync", "since": *cursor}).to_string()))
        .await
        .map_err(|e| format!("send: {e}"))?;
    while let Some(frame) = ws.next().await {
        let text = match frame.map_err(|e| e.to_string())? {
            Message::Text(t) => t,
            Message::Close(c) => {
                let code = c.map(|c| u16::from(c.code)).unwrap_or(0);
                if code == 4001 {
                    println!("! this session was revoked; log in again");
                    std::process::exit(1);
                }
                return Err(format!("closed with {code}"));
            }
            _ => continue,
        };
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("bad frame: {e}"))?;
        if v["type"] != "updates" {
            continue;
        }
        for u in v["updates"].as_array().into_iter().flatten() {
            let c = u["cursor"].as_u64().unwrap_or(0);
            if c <= *cursor {
                continue;
            }
            *cursor = c;
            show_update(s, u).await;
        }
    }
    Err("the server closed the connection".into())
}

async fn show_update(s: &Shared, u: &Value) {
    let str_of = |k: &str| u[k].as_str().unwrap_or("?").to_owned();
    match u["type"].as_str().unwrap_or("") {
        "message" => {
            let m = &u["message"];
            let cid = m["conversation_id"].as_str().unwrap_or("?");
            print_message(cid, m);
            let open = lock(&s.open).as_ref().map(|o| o.cid.clone());
            if open.as_deref() == Some(cid) && m["sender"].as_str() != Some(s.me.user_id.as_str()) {
                if let Err(e) = mark_read(s, cid, m["seq"].as_u64().unwrap_or(0)).await {
                    println!("! could not mark read: {e}");
                }
            }
        }
        "friend_request" if u["to"].as_str() == Some(s.me.user_id.as_str()) => {
            println!("* friend request from {}: /accept {}", str_of("from"), str_of("from"));
        }
        "friend_added" => {
            let users: Vec<&str> = u["users"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            if let Some(other) = users.iter().find(|x| **x != s.me.user_id) {
                println!("* you and {other} are friends");
            }
        }
        "group_created" => println!("* you are in group {}", u["group"]["conversation_id"].as_str().unwrap_or("?")),
        "member_added" => println!("* {} added to g:{}", str_of("by"), str_of("group_id")),
        "message_revoked" => println!("* [{} #{}] revoked", str_of("conversation_id"), u["seq"]),
        _ => {}
    }
}
