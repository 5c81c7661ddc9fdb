//! `parley chat`, the terminal client, driven as a script drives it: lines in on stdin, lines
//! out on stdout. Two people chat: one in the terminal client, one over HTTP.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::*;

/// A running `parley chat`: its stdin, and its stdout lines as they come.
struct Terminal {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Terminal {
    fn start(server: &TestServer, user: &User) -> Terminal {
        let mut child = Command::new(env!("CARGO_BIN_EXE_parley"))
            .args(["chat", "--target", &server.base_url(), "--user", &user.id])
            .env("PARLEY_PASSWORD", &user.password)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start parley chat");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Terminal { child, stdin, lines, seen: Vec::new() }
    }

    fn type_line(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("write to chat");
        self.stdin.flush().expect("flush");
    }

    /// Waits (at most 10 s) for a line containing `needle`; returns it.
    #[track_caller]
    fn expect(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {needle:?} within 10 s; the client printed:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// Every line printed so far, plus whatever arrives within `wait`.
    fn drain(&mut self, wait: Duration) -> Vec<String> {
        let deadline = Instant::now() + wait;
        while let Ok(line) = self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            self.seen.push(line);
        }
        self.seen.clone()
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_person_lists_opens_reads_sends_and_sees_live_messages() {
    let server = shared();
    let api = server.api();
    let (alice, bob, conv) = api.friends("term").await;
    api.send(&alice, &conv, "before you came online").await;

    let mut term = Terminal::start(server, &bob);
    term.expect(&format!("logged in as {}", bob.id));
    // The list shows the conversation with its unread count.
    let row = term.expect(&conv);
    assert!(row.contains("unread 1") && row.contains("before you came online"), "{row}");

    // A live message, while nothing is open: printed as it arrives.
    api.send(&alice, &conv, "are you there?").await;
    term.expect(&format!("[{conv} #2] {}: are you there?", alice.id));

    // Opening shows the history and marks it read.
    term.type_line(&format!("/open {}", alice.id));
    term.expect(&format!("-- {conv} --"));
    term.expect(&format!("[{conv} #1] {}: before you came online", alice.id));
    let mut unread = u64::MAX;
    for _ in 0..100 {
        unread = api.conversation(&bob.token, &conv).await.map(|c| as_u64(&c["unread"], "unread")).unwrap_or(99);
        if unread == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(unread, 0, "opening a conversation marks it read");

    // Typing text sends it; the sender sees it once, from the live feed.
    term.type_line("hello from the terminal");
    term.expect(&format!("[{conv} #3] {}: hello from the terminal", bob.id));
    let history = api.history(&alice.token, &conv, "").await;
    let bodies: Vec<&str> =
        history["messages"].as_array().unwrap().iter().map(|m| m["body"].as_str().unwrap()).collect();
    assert_eq!(bodies.last(), Some(&"hello from the terminal"));

    // A message into the open conversation is read at once.
    api.send(&alice, &conv, "great").await;
    term.expect(&format!("[{conv} #4] {}: great", alice.id));
    let mut read_seq = 0;
    for _ in 0..100 {
        read_seq = api.conversation(&bob.token, &conv).await.map(|c| as_u64(&c["read_seq"], "read_seq")).unwrap_or(0);
        if read_seq == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(read_seq, 4);

    // Friends and requests; a bad command is an error line, not an exit.
    let carol = api.user("termc").await;
    api.friend_request(&carol, &bob.id, None).await.write(201);
    term.expect(&format!("friend request from {}", carol.id));
    term.type_line(&format!("/accept {}", carol.id));
    term.expect(&format!("you and {} are friends", carol.id));
    term.type_line("/nonsense");
    term.expect("unknown command");

    // A group: create, then it is the one messages go to once opened.
    term.type_line(&format!("/group club {} {}", alice.id, carol.id));
    let created = term.expect("* created g:");
    let gcid = created.split_whitespace().nth(2).unwrap().trim_end_matches(':').to_owned();
    term.type_line(&format!("/open {gcid}"));
    term.expect(&format!("-- {gcid} --"));
    term.type_line("/members");
    term.expect(&format!("{} (owner)", bob.id));
    term.type_line("hi club");
    term.expect(&format!("[{gcid} #1] {}: hi club", bob.id));

    term.type_line("/quit");
    let status = term.child.wait().expect("wait");
    assert!(status.success(), "chat exited with {status}");
    // Nothing was printed twice.
    let lines = term.drain(Duration::from_millis(100));
    let sent: Vec<&String> = lines.iter().filter(|l| l.contains("hello from the terminal")).collect();
    assert_eq!(sent.len(), 1, "{lines:#?}");
}

#[tokio::test]
async fn the_live_feed_resumes_after_a_server_restart_without_loss_or_repeats() {
    let mut server = TestServer::start();
    let api = server.api();
    let (alice, bob, conv) = api.friends("termr").await;
    let mut term = Terminal::start(&server, &bob);
    term.expect(&format!("logged in as {}", bob.id));
    // The list is printed once it is read: what is sent after it comes live.
    term.expect("no conversations yet");
    api.send(&alice, &conv, "one").await;
    term.expect(&format!("[{conv} #1] {}: one", alice.id));

    // The server is killed and comes back on the same address; meanwhile a message is sent.
    server.restart_same_port();
    let api = server.api();
    api.ready().await;
    api.send(&alice, &conv, "two").await;
    term.expect("interrupted");
    term.expect(&format!("[{conv} #2] {}: two", alice.id));
    api.send(&alice, &conv, "three").await;
    term.expect(&format!("[{conv} #3] {}: three", alice.id));
    let lines = term.drain(Duration::from_millis(300));
    for body in [": one", ": two", ": three"] {
        assert_eq!(lines.iter().filter(|l| l.contains(body)).count(), 1, "{body} once: {lines:#?}");
    }
}
