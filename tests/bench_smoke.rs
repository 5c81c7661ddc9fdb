//! Smoke runs of every `parley bench` scenario (seconds each, small counts) against servers this
//! test starts from the built binary: each run must succeed and report its exactly-once check
//! as passed. Full-size runs are manual (docs/BENCHMARKS.md).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod support;

const BIN: &str = env!("CARGO_BIN_EXE_parley");
/// Longest one bench run may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(180);

/// A `parley serve` child, killed on drop.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_serve(data_dir: &Path, args: &[String]) -> Child {
    let log = std::fs::File::create(data_dir.with_extension("log")).expect("server log file");
    Command::new(BIN)
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--rate-limit-per-user", "0", "--admin-token", "smoke-admin"])
        .args(support::flags::IP_LIMITS_OFF)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn parley serve")
}

/// Starts a single node on a free port and waits for its `listening on` line.
fn single_node(root: &Path) -> Server {
    single_node_with(root, &[])
}

/// [`single_node`] with extra `serve` flags.
fn single_node_with(root: &Path, extra: &[&str]) -> Server {
    let mut args: Vec<String> = vec!["--http".into(), "127.0.0.1:0".into()];
    args.extend(extra.iter().map(|a| a.to_string()));
    let mut child = spawn_serve(&root.join("single"), &args);
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("listening on ") {
                let _ = tx.send(url.trim().to_owned());
            }
        }
    });
    let url = rx.recv_timeout(Duration::from_secs(60)).expect("the server printed `listening on` within 60 s");
    Server { child, url }
}

/// `GET path` over a raw HTTP/1.0 connection; the status code.
fn http_status(addr: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut head = String::new();
    s.read_to_string(&mut head).ok()?;
    head.split_whitespace().nth(1)?.parse().ok()
}

/// Starts a 3-node cluster on free ports and waits until every node is ready.
fn cluster(root: &Path) -> Vec<Server> {
    let listeners: Vec<TcpListener> = (0..3).map(|_| TcpListener::bind("127.0.0.1:0").expect("free port")).collect();
    let addrs: Vec<String> = listeners.iter().map(|l| l.local_addr().expect("addr").to_string()).collect();
    drop(listeners);
    let peers = addrs.iter().enumerate().map(|(i, a)| format!("{}={a}", i + 1)).collect::<Vec<_>>().join(",");
    let nodes: Vec<Server> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let args = vec![
                "--node-id".into(),
                (i + 1).to_string(),
                "--peers".into(),
                peers.clone(),
                "--cluster-secret".into(),
                "smoke-cluster-secret".into(),
                "--http".into(),
                a.clone(),
            ];
            let mut child = spawn_serve(&root.join(format!("node{}", i + 1)), &args);
            // Drain stdout so the child never blocks on it.
            let mut out = child.stdout.take().expect("piped stdout");
            std::thread::spawn(move || {
                let mut sink = Vec::new();
                let _ = out.read_to_end(&mut sink);
            });
            Server { child, url: format!("http://{a}") }
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    for a in &addrs {
        while http_status(a, "/readyz") != Some(200) {
            assert!(Instant::now() < deadline, "node {a} was not ready within 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    nodes
}

/// Runs `parley bench ARGS` (bounded in time) and returns its stdout; panics with both outputs
/// unless it succeeded.
fn bench(args: &[&str]) -> String {
    bench_for(args, RUN_TIMEOUT)
}

/// [`bench`] with its own time bound.
fn bench_for(args: &[&str], timeout: Duration) -> String {
    let mut child = Command::new(BIN)
        .arg("bench")
        .args(args)
        .arg("--quiet")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn parley bench");
    let deadline = Instant::now() + timeout;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("parley bench {args:?} ran longer than {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let Output { status, stdout, stderr } = child.wait_with_output().expect("output");
    let (stdout, stderr) = (String::from_utf8_lossy(&stdout).into_owned(), String::from_utf8_lossy(&stderr));
    assert!(status.success(), "parley bench {args:?} failed ({status}):\n{stdout}\n{stderr}");
    stdout
}

fn assert_check(out: &str, check: &str) {
    assert!(out.contains(&format!("{check}: ok")), "no `{check}: ok` in:\n{out}");
    assert!(!out.contains("FAILED"), "a check failed:\n{out}");
}

fn temp_root(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(name).tempdir().expect("temp dir")
}

#[test]
fn every_scenario_against_a_single_node() {
    let root = temp_root("bench-smoke-single");
    let server = single_node(root.path());
    let t = server.url.as_str();
    let json: PathBuf = root.path().join("results.jsonl");
    let json_arg = json.to_str().expect("utf-8 path");

    let out = bench(&["send", "--target", t, "-c", "4", "--duration", "1", "--json", json_arg]);
    assert_check(&out, "exactly-once");
    let out = bench(&["send", "--target", t, "-c", "3", "--mode", "ws", "--in-flight", "8", "-n", "300", "-d", "60"]);
    assert_check(&out, "exactly-once");
    assert!(out.contains("send ") && out.contains(" 300 "), "exactly 300 messages acknowledged:\n{out}");
    let out = bench(&["send", "--target", t, "-c", "4", "-m", "2", "--kind", "group", "--mode", "ws", "-d", "1"]);
    assert_check(&out, "exactly-once");
    let out = bench(&["deliver", "--target", t, "--rate", "100", "--duration", "1", "--pairs", "4"]);
    assert_check(&out, "exactly-once delivery");
    let out =
        bench(&["fanout", "--target", t, "--members", "12", "--online", "6", "--messages", "3", "--interval-ms", "10"]);
    assert_check(&out, "exactly-once fan-out");
    for mode in ["ws", "http"] {
        let out =
            bench(&["catchup", "--target", t, "--updates", "600", "--writers", "3", "--mode", mode, "--page", "200"]);
        assert_check(&out, "exactly-once catch-up");
    }
    let out = bench(&["connections", "--target", t, "--connections", "200", "--users", "4", "--hold", "0.5"]);
    assert_check(&out, "all sockets authenticated and alive");
    // The server is local: its RSS is found by its listening port.
    assert!(out.contains("server RSS per connection"), "RSS per connection reported:\n{out}");
    // The same held by two client processes (how runs past this process's file limit work).
    let out = bench(&[
        "connections",
        "--target",
        t,
        "--connections",
        "100",
        "--users",
        "2",
        "--hold",
        "0",
        "--processes",
        "2",
    ]);
    assert_check(&out, "all sockets authenticated and alive");
    assert!(out.contains("client_processes=2"), "{out}");

    let tokens = root.path().join("tokens.tsv");
    bench(&["tokens", "--target", t, "--users", "4", "--out", tokens.to_str().expect("utf-8 path")]);
    let lines = std::fs::read_to_string(&tokens).expect("tokens file");
    assert_eq!(lines.lines().count(), 4);
    assert!(lines.lines().all(|l| l.split('\t').nth(1).is_some_and(|c| c.starts_with("d:"))));

    let first = std::fs::read_to_string(&json).expect("json results");
    let v: serde_json::Value = serde_json::from_str(first.lines().next().expect("one line")).expect("json line");
    assert_eq!(v["scenario"], "send");
    assert!(v["ops"][0]["per_second"].as_f64().is_some_and(|r| r > 0.0));
    assert_eq!(v["checks"][0]["ok"], true);
}

#[test]
fn history_prints_a_row_per_tenth_of_the_fill_with_disk_per_message() {
    let root = temp_root("bench-smoke-history");
    let server = single_node(root.path());
    let data_dir = root.path().join("single");
    let json = root.path().join("history.jsonl");
    let out = bench(&[
        "history",
        "--target",
        &server.url,
        "--messages",
        "2000",
        "--concurrency",
        "8",
        "--data-dir",
        data_dir.to_str().expect("utf-8 path"),
        "--json",
        json.to_str().expect("utf-8 path"),
    ]);
    assert_check(&out, "exactly-once");
    let rows: Vec<&str> = out.lines().filter(|l| l.starts_with("row ")).collect();
    assert_eq!(rows.len(), 10, "one row per 10 % of the fill:\n{out}");
    assert!(rows[9].starts_with("row 10/10") && rows[9].split_whitespace().nth(2) == Some("2000"), "{out}");
    let send = out.lines().find(|l| l.starts_with("send (201)")).expect("a send row");
    assert_eq!(&send.split_whitespace().collect::<Vec<_>>()[2..4], ["2000", "0"], "2000 sends, no errors: {out}");

    let line = std::fs::read_to_string(&json).expect("json results");
    let v: serde_json::Value = serde_json::from_str(line.trim()).expect("one json line");
    assert_eq!(v["scenario"], "history");
    let rows = v["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 10);
    let sends: u64 = rows.iter().map(|r| r["sends"].as_u64().expect("sends")).sum();
    assert_eq!(sends, 2000, "the slices' sends add up to the fill");
    let mut stored = 0;
    for r in rows {
        stored += r["sends"].as_u64().expect("sends");
        assert_eq!(r["stored"].as_u64(), Some(stored), "stored so far is cumulative: {r}");
        assert_eq!(r["errors"], serde_json::json!({}), "no errors: {r}");
        assert_eq!(r["repeats_200"], 0, "{r}");
        assert!(r["sends_per_second"].as_f64().is_some_and(|s| s > 0.0), "{r}");
        assert!(r["rss_kb"][0].as_u64().is_some_and(|kb| kb > 0), "RSS of the local server: {r}");
    }
    let last = &rows[9];
    assert!(last["disk_bytes"]["db"].as_u64().is_some_and(|b| b > 0), "{last}");
    // 256-byte bodies: each message costs at least its body on disk (journal and message record).
    assert!(last["bytes_per_message"]["total"].as_f64().is_some_and(|b| b > 256.0), "{last}");
}

#[test]
fn send_and_deliver_across_a_three_node_cluster() {
    let root = temp_root("bench-smoke-cluster");
    let nodes = cluster(root.path());
    let targets = nodes.iter().map(|n| n.url.as_str()).collect::<Vec<_>>().join(",");
    let out = bench(&["send", "--target", &targets, "-c", "6", "--duration", "1"]);
    assert_check(&out, "exactly-once");
    let out = bench(&["send", "--target", &targets, "-c", "3", "--mode", "ws", "--in-flight", "4", "--duration", "1"]);
    assert_check(&out, "exactly-once");
    // Recipients on node 2, senders on node 1.
    let out = bench(&["deliver", "--target", &targets, "--rate", "50", "--duration", "1", "--pairs", "2"]);
    assert_check(&out, "exactly-once delivery");
    assert!(out.contains("cross_node=true"), "{out}");
}

/// Memory must not grow with history: a node with a small cache is filled with 200,000
/// messages; its RSS after the last quarter may not exceed 1.3 times its RSS after the first
/// (once the cache is full, nothing else may grow with the number of messages stored).
#[test]
fn server_memory_stays_flat_over_a_long_fill() {
    let root = temp_root("bench-memory-flat");
    let server = single_node_with(root.path(), &["--cache-mb", "16"]);
    let json = root.path().join("memory.jsonl");
    let out = bench_for(
        &[
            "history",
            "--target",
            &server.url,
            "--messages",
            "200000",
            "--concurrency",
            "32",
            "--rows",
            "4",
            "--check-conversations",
            "4",
            "--json",
            json.to_str().expect("utf-8 path"),
        ],
        Duration::from_secs(600),
    );
    assert_check(&out, "exactly-once");
    let line = std::fs::read_to_string(&json).expect("json results");
    let v: serde_json::Value = serde_json::from_str(line.trim()).expect("one json line");
    let rss: Vec<u64> =
        v["rows"].as_array().expect("rows").iter().map(|r| r["rss_kb"][0].as_u64().expect("rss")).collect();
    println!("FIGURES RSS after 50k/100k/150k/200k messages: {rss:?} KiB");
    assert_eq!(rss.len(), 4);
    assert!(
        (rss[3] as f64) < 1.3 * rss[0] as f64,
        "RSS grew with history: {} KiB after 50k messages, {} KiB after 200k",
        rss[0],
        rss[3]
    );
}
