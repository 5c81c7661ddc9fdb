//! Helpers for the audit tests' offline side: run the real `parley` binary's offline tools,
//! tamper with a stopped node's sled db, copy data dirs. The node itself and the calls to it
//! are the rest of the harness's (`node.rs`, `audit.rs`).

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_parley")
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// The result of one run of the binary.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// Asserts success and returns stdout.
    pub fn expect_ok(&self, what: &str) -> &str {
        assert!(self.ok(), "{what} failed ({:?}):\nstdout: {}\nstderr: {}", self.code, self.stdout, self.stderr);
        &self.stdout
    }

    /// The `bad <cursor> <why>` verdict of a failed `audit verify`.
    pub fn bad_cursor(&self) -> u64 {
        assert!(!self.ok(), "expected a failure, got: {}", self.stdout);
        let line = self
            .stdout
            .lines()
            .find(|l| l.starts_with("bad "))
            .unwrap_or_else(|| panic!("no `bad` verdict:\nstdout: {}\nstderr: {}", self.stdout, self.stderr));
        line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("bad verdict: {line}"))
    }
}

/// Runs `parley <args>` to completion (at most 5 minutes).
pub fn parley(args: &[&str]) -> Run {
    parley_with_stdin(args, None)
}

pub fn parley_with_stdin(args: &[&str], stdin: Option<&[u8]>) -> Run {
    let mut cmd = Command::new(bin());
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().expect("spawn parley");
    if let Some(input) = stdin {
        use std::io::Write;
        let mut w = child.stdin.take().expect("stdin");
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = w.write_all(&input);
        });
    }
    let out: Output = wait_output(child, Duration::from_secs(300));
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn wait_output(mut child: Child, limit: Duration) -> Output {
    let mut so = child.stdout.take().expect("stdout");
    let mut se = child.stderr.take().expect("stderr");
    let t1 = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t2 = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("parley did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output { status, stdout: t1.join().unwrap_or_default(), stderr: t2.join().unwrap_or_default() }
}

/// `parley audit verify --data-dir DIR [extra]`.
pub fn verify_dir(dir: &Path, extra: &[&str]) -> Run {
    let d = dir.to_str().expect("utf-8 path");
    let mut args = vec!["audit", "verify", "--data-dir", d];
    args.extend_from_slice(extra);
    parley(&args)
}

/// `parley replay --data-dir DIR [extra] --json` -> (cursor, digest).
pub fn replay(dir: &Path, extra: &[&str]) -> (u64, String) {
    let d = dir.to_str().expect("utf-8 path");
    let mut args = vec!["replay", "--data-dir", d, "--json"];
    args.extend_from_slice(extra);
    let run = parley(&args);
    let v: Value = serde_json::from_str(run.expect_ok("replay").trim()).expect("replay --json prints JSON");
    (v["cursor"].as_u64().expect("cursor"), v["digest"].as_str().expect("digest").to_owned())
}

/// Lines of an export, parsed.
pub fn export_lines(dir: &Path, extra: &[&str]) -> Vec<Value> {
    let d = dir.to_str().expect("utf-8 path");
    let mut args = vec!["export", "--data-dir", d];
    args.extend_from_slice(extra);
    let run = parley(&args);
    run.expect_ok("export").lines().map(|l| serde_json::from_str(l).expect("export line is JSON")).collect()
}

pub fn cursors(lines: &[Value]) -> Vec<u64> {
    lines.iter().map(|l| l["cursor"].as_u64().expect("cursor")).collect()
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("dir entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

/// Opens a stopped node's journal tree with sled directly, runs `f` on it, flushes.
pub fn with_journal_tree(data_dir: &Path, f: impl FnOnce(&sled::Tree, &sled::Tree)) {
    let db = parley_storage::store::sled_config(&data_dir.join("db"), 8 << 20, false).open().expect("open sled db");
    let journal = db.open_tree("cursor_entry").expect("journal tree");
    let meta = db.open_tree("meta").expect("meta tree");
    f(&journal, &meta);
    db.flush().expect("flush");
}

pub fn key(c: u64) -> [u8; 8] {
    c.to_be_bytes()
}
