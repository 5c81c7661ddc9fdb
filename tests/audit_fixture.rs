//! The committed journal fixture (`fixtures/journal.jsonl`, `fixtures/journal.expected`):
//! regenerated and compared, verified, replayed to its known digest, imported, exported with
//! filters, and tampered with in every way the audit must catch.
//!
//! Re-bless after an intended change of the fixture script or the journal format with
//! `cargo run -- audit fixture --out fixtures`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;
use support::offline::*;

fn fixture_text() -> String {
    std::fs::read_to_string(fixtures().join("journal.jsonl")).expect("fixtures/journal.jsonl")
}

fn fixture_lines() -> Vec<String> {
    fixture_text().lines().map(str::to_owned).collect()
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixtures().join("journal.expected")).expect("fixtures/journal.expected");
    serde_json::from_str(&text).expect("journal.expected is JSON")
}

fn write_lines(path: &Path, lines: &[String]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(path, text).expect("write");
}

fn verify_file(path: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["audit", "verify", "--from-export", path.to_str().expect("utf-8")];
    args.extend_from_slice(extra);
    parley(&args)
}

/// Imports the fixture into a fresh data dir under `tmp`.
fn imported(tmp: &Path) -> std::path::PathBuf {
    let dir = tmp.join("imported");
    let fx = fixtures().join("journal.jsonl");
    parley(&["import", "--data-dir", dir.to_str().expect("utf-8"), "--from-export", fx.to_str().expect("utf-8")])
        .expect_ok("import");
    dir
}

#[test]
fn the_committed_fixture_is_what_the_generator_produces() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("fx");
    parley(&["audit", "fixture", "--out", out.to_str().expect("utf-8")]).expect_ok("audit fixture");
    let fresh = std::fs::read_to_string(out.join("journal.jsonl")).expect("generated journal");
    let fresh: Vec<Value> = fresh.lines().map(|l| serde_json::from_str(l).expect("JSON")).collect();
    let committed: Vec<Value> = fixture_lines().iter().map(|l| serde_json::from_str(l).expect("JSON")).collect();
    assert_eq!(
        fresh.len(),
        committed.len(),
        "entry count differs: re-bless with `cargo run -- audit fixture --out fixtures`"
    );
    for (f, c) in fresh.iter().zip(&committed) {
        assert_eq!(
            f, c,
            "fixture differs from the generator: re-bless with `cargo run -- audit fixture --out fixtures`"
        );
    }
    let fresh_expected: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("journal.expected")).expect("expected")).expect("JSON");
    assert_eq!(fresh_expected, expected());
}

#[test]
fn the_fixture_covers_every_event_type() {
    let types: BTreeSet<String> = fixture_lines()
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON")["event"]["type"].as_str().expect("type").to_owned())
        .collect();
    assert_eq!(types.len(), 23, "{types:?}");
    let lines = fixture_lines();
    assert!(lines.len() >= 200, "a few hundred entries, got {}", lines.len());
    assert_eq!(lines.len() as u64, expected()["last_cursor"].as_u64().expect("last_cursor"));
}

#[test]
fn the_fixture_verifies_imports_and_replays_to_its_known_digest() {
    let exp = expected();
    let (last, head, digest) = (
        exp["last_cursor"].as_u64().expect("last_cursor"),
        exp["head_hash"].as_str().expect("head_hash"),
        exp["digest"].as_str().expect("digest"),
    );
    let fx = fixtures().join("journal.jsonl");
    let run = verify_file(&fx, &[]);
    assert_eq!(run.expect_ok("verify fixture").trim(), format!("ok {last} {head}"));
    let run = verify_file(&fx, &["--expect-head", head]);
    run.expect_ok("verify with its own head");
    let run = verify_file(&fx, &["--expect-head", &format!("{last}:{head}")]);
    run.expect_ok("verify with cursor:head");

    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = imported(tmp.path());
    assert_eq!(verify_dir(&dir, &[]).expect_ok("verify imported").trim(), format!("ok {last} {head}"));
    assert_eq!(replay(&dir, &[]), (last, digest.to_owned()));
    // Deterministic: again, same digest.
    assert_eq!(replay(&dir, &[]), (last, digest.to_owned()));
    // Too big for memory: spilling to the scratch store part way gives the same digest.
    assert_eq!(replay(&dir, &["--spill-writes", "300", "--batch", "7"]), (last, digest.to_owned()));
    // Export of the imported dir is the fixture, byte for byte.
    let run = parley(&["export", "--data-dir", dir.to_str().expect("utf-8")]);
    assert_eq!(run.expect_ok("export"), fixture_text());
    // Import from stdin works the same.
    let dir2 = tmp.path().join("from-stdin");
    let run = parley_with_stdin(
        &["import", "--data-dir", dir2.to_str().expect("utf-8"), "--from-export", "-", "--json"],
        Some(fixture_text().as_bytes()),
    );
    let v: Value = serde_json::from_str(run.expect_ok("import from stdin").trim()).expect("JSON");
    assert_eq!(v["digest"], digest);
    assert_eq!(v["head_hash"], head);
    // An existing data dir is never overwritten.
    let run =
        parley(&["import", "--data-dir", dir.to_str().expect("utf-8"), "--from-export", fx.to_str().expect("utf-8")]);
    assert!(!run.ok());
    assert!(run.stderr.contains("already holds a database"), "{}", run.stderr);
}

#[test]
fn replay_until_is_replay_of_a_prefix() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = imported(tmp.path());
    let lines = fixture_lines();
    for cut in [1usize, 37, 120, 200] {
        // The state at `cut` is what importing only the first `cut` entries builds.
        let prefix_dir = tmp.path().join(format!("prefix-{cut}"));
        let file = tmp.path().join(format!("prefix-{cut}.jsonl"));
        write_lines(&file, &lines[..cut]);
        let run = parley(&[
            "import",
            "--data-dir",
            prefix_dir.to_str().expect("utf-8"),
            "--from-export",
            file.to_str().expect("utf-8"),
            "--json",
        ]);
        let v: Value = serde_json::from_str(run.expect_ok("import prefix").trim()).expect("JSON");
        let (c, d) = replay(&dir, &["--until", &cut.to_string()]);
        assert_eq!(c, cut as u64);
        assert_eq!(d, v["digest"].as_str().expect("digest"), "--until {cut}");
        // --until-ts: the same cut by time (fixture entries are 1 s apart, one per command).
        let ts = serde_json::from_str::<Value>(&lines[cut - 1]).expect("JSON")["ts"].as_u64().expect("ts");
        assert_eq!(replay(&dir, &["--until-ts", &ts.to_string()]), (cut as u64, d.clone()));
        assert_eq!(replay(&dir, &["--until-ts", &(ts + 999).to_string()]), (cut as u64, d));
    }
}

#[test]
fn tampered_copies_of_the_fixture_are_caught_at_the_right_cursor() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let lines = fixture_lines();
    let n = lines.len();
    let head = expected()["head_hash"].as_str().expect("head").to_owned();
    let case = |name: &str, tampered: &[String], extra: &[&str]| -> u64 {
        let path = tmp.path().join(format!("{name}.jsonl"));
        write_lines(&path, tampered);
        let run = verify_file(&path, extra);
        // Import must refuse the same file, naming the same cursor, and leave nothing behind.
        let dir = tmp.path().join(format!("{name}-import"));
        let imp = parley(&[
            "import",
            "--data-dir",
            dir.to_str().expect("utf-8"),
            "--from-export",
            path.to_str().expect("utf-8"),
        ]);
        if extra.is_empty() {
            assert!(!imp.ok(), "{name}: import accepted a tampered export");
            assert!(imp.stderr.contains(&format!("cursor {}", run.bad_cursor())), "{name}: {}", imp.stderr);
            assert!(!dir.join("db").exists() && !dir.join("db.importing").exists(), "{name}: partial import left");
        }
        run.bad_cursor()
    };

    // A changed byte in a message body.
    let k = lines.iter().position(|l| l.contains("\"body\":\"alice/bob message 4\"")).expect("message line");
    let mut flipped = lines.clone();
    flipped[k] = flipped[k].replace("alice/bob message 4", "alice/bob message 5");
    assert_eq!(case("body", &flipped, &[]), k as u64 + 1);
    // Raw byte flips at several places of one line (cursor digits, a key, the hash, the ts).
    for pos in [3usize, 12, 40, 77, lines[k].len() / 2, lines[k].len() - 30, lines[k].len() - 2] {
        let mut bytes = lines[k].clone().into_bytes();
        bytes[pos] ^= 0x01;
        let mut t = lines.clone();
        t[k] = String::from_utf8_lossy(&bytes).into_owned();
        assert_eq!(case(&format!("flip-{pos}"), &t, &[]), k as u64 + 1, "flip at byte {pos}");
    }
    // A dropped line.
    let mut dropped = lines.clone();
    dropped.remove(100);
    assert_eq!(case("drop", &dropped, &[]), 101);
    // The first line dropped.
    assert_eq!(case("drop-first", &lines[1..], &[]), 1);
    // Two lines swapped.
    let mut swapped = lines.clone();
    swapped.swap(150, 151);
    assert_eq!(case("swap", &swapped, &[]), 151);
    // A line duplicated.
    let mut dup = lines.clone();
    dup.insert(61, lines[60].clone());
    assert_eq!(case("dup", &dup, &[]), 62);
    // A truncated tail: only a recorded head tells.
    let truncated = &lines[..n - 5];
    let path = tmp.path().join("truncated.jsonl");
    write_lines(&path, truncated);
    verify_file(&path, &[]).expect_ok("a truncated export is still a valid chain");
    assert_eq!(case("truncated", truncated, &["--expect-head", &head]), (n - 5 + 1) as u64);
    assert_eq!(case("truncated-c", truncated, &["--expect-head", &format!("{n}:{head}")]), (n - 5 + 1) as u64);
}

/// Who an entry concerns, by the contract's sync rules, computed independently of the server:
/// users named by personal events, both sides of a direct conversation, a group's members
/// while they belong (from the entry that adds them to the one that removes them, inclusive),
/// and a group read marker only to the reader.
fn concerned(lines: &[Value]) -> BTreeMap<u64, BTreeSet<String>> {
    let mut members: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut out = BTreeMap::new();
    let s = |v: &Value| v.as_str().expect("string").to_owned();
    for l in lines {
        let c = l["cursor"].as_u64().expect("cursor");
        let e = &l["event"];
        let mut who: BTreeSet<String> = BTreeSet::new();
        let group = |e: &Value| format!("g:{}", e["group_id"].as_str().expect("group_id"));
        match e["type"].as_str().expect("type") {
            "user_registered" | "session_created" | "session_revoked" | "user_deactivated" | "user_reactivated"
            | "password_changed" => {
                who.insert(s(&e["user_id"]));
            }
            "friend_request" | "friend_request_rejected" => {
                who.insert(s(&e["from"]));
                who.insert(s(&e["to"]));
            }
            "friend_added" | "friend_removed" => {
                who.extend(e["users"].as_array().expect("users").iter().map(s));
            }
            "blocked" | "unblocked" => {
                who.insert(s(&e["by"]));
            }
            t @ ("message" | "message_revoked" | "read") => {
                let conv = if t == "message" { &e["message"]["conversation_id"] } else { &e["conversation_id"] };
                let conv = s(conv);
                if let Some(pair) = conv.strip_prefix("d:") {
                    who.extend(pair.split(':').map(str::to_owned));
                } else if t == "read" {
                    who.insert(s(&e["user_id"]));
                } else {
                    who.extend(members.get(&conv).cloned().unwrap_or_default());
                }
            }
            "group_created" => {
                let g = format!("g:{}", e["group"]["group_id"].as_str().expect("group_id"));
                let m: BTreeSet<String> =
                    e["group"]["members"].as_array().expect("members").iter().map(|m| s(&m["user_id"])).collect();
                members.insert(g.clone(), m.clone());
                who.extend(m);
            }
            "member_added" => {
                let g = group(e);
                let set = members.entry(g).or_default();
                set.extend(e["user_ids"].as_array().expect("user_ids").iter().map(s));
                who.extend(set.iter().cloned());
            }
            "member_removed" => {
                let g = group(e);
                who.extend(members.get(&g).cloned().unwrap_or_default());
                if let Some(set) = members.get_mut(&g) {
                    set.remove(&s(&e["user_id"]));
                }
            }
            "group_dismissed" => {
                let g = group(e);
                who.extend(members.remove(&g).unwrap_or_default());
            }
            _ => {
                who.extend(members.get(&group(e)).cloned().unwrap_or_default());
            }
        }
        out.insert(c, who);
    }
    out
}

#[test]
fn export_filters_select_exactly_the_expected_entries() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = imported(tmp.path());
    let all: Vec<Value> = fixture_lines().iter().map(|l| serde_json::from_str(l).expect("JSON")).collect();
    let n = all.len() as u64;
    assert_eq!(export_lines(&dir, &[]), all);

    // Ranges are consecutive and complete.
    assert_eq!(cursors(&export_lines(&dir, &["--from", "40", "--to", "59"])), (40..=59).collect::<Vec<_>>());
    assert_eq!(cursors(&export_lines(&dir, &["--from", &(n - 2).to_string()])), vec![n - 2, n - 1, n]);
    assert!(export_lines(&dir, &["--from", &(n + 1).to_string()]).is_empty());

    // By type.
    let want: Vec<u64> = all
        .iter()
        .filter(|l| matches!(l["event"]["type"].as_str(), Some("member_removed" | "group_dismissed")))
        .map(|l| l["cursor"].as_u64().expect("cursor"))
        .collect();
    assert_eq!(want.len(), 3);
    assert_eq!(cursors(&export_lines(&dir, &["--type", "member_removed,group_dismissed"])), want);
    assert_eq!(cursors(&export_lines(&dir, &["--type", "member_removed", "--type", "group_dismissed"])), want);
    let bad = parley(&["export", "--data-dir", dir.to_str().expect("utf-8"), "--type", "mesage"]);
    assert!(!bad.ok() && bad.stderr.contains("unknown event type"), "{}", bad.stderr);

    // By conversation: the direct one between alice and carol is 2 messages and 1 read.
    let ac = cursors(&export_lines(&dir, &["--conversation", "d:alice:carol"]));
    assert_eq!(ac.len(), 3, "{ac:?}");
    for c in &ac {
        let e = &all[*c as usize - 1]["event"];
        let conv = e["conversation_id"].as_str().or(e["message"]["conversation_id"].as_str());
        assert_eq!(conv, Some("d:alice:carol"));
    }
    // The dismissed group 2: created, one message, dismissed.
    let g2 = export_lines(&dir, &["--conversation", "g:2"]);
    let types: Vec<&str> = g2.iter().map(|l| l["event"]["type"].as_str().expect("type")).collect();
    assert_eq!(types, ["group_created", "message", "group_dismissed"]);

    // By user: an independent model of who each entry concerns.
    let model = concerned(&all);
    for user in ["alice", "bob", "carol", "dave", "erin", "frank", "grace"] {
        let want: Vec<u64> = model.iter().filter(|(_, who)| who.contains(user)).map(|(c, _)| *c).collect();
        let got = cursors(&export_lines(&dir, &["--user", user]));
        assert_eq!(got, want, "export --user {user}");
    }
    // Filters combine.
    let got = cursors(&export_lines(&dir, &["--user", "frank", "--type", "message", "--from", "100"]));
    let want: Vec<u64> = model
        .iter()
        .filter(|(c, who)| **c >= 100 && who.contains("frank") && all[**c as usize - 1]["event"]["type"] == "message")
        .map(|(c, _)| *c)
        .collect();
    assert_eq!(got, want);
    // A filtered export verifies as a partial one.
    let file = tmp.path().join("frank.jsonl");
    let text = parley(&["export", "--data-dir", dir.to_str().expect("utf-8"), "--user", "frank"]);
    std::fs::write(&file, text.expect_ok("export")).expect("write");
    verify_file(&file, &["--partial"]).expect_ok("partial verify");
    assert!(!verify_file(&file, &[]).ok(), "a filtered export is not a full chain");
}

#[test]
fn state_at_a_cursor_shows_the_conversation_list_then() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = imported(tmp.path());
    let all: Vec<Value> = fixture_lines().iter().map(|l| serde_json::from_str(l).expect("JSON")).collect();
    // Just after bob read message 11 of d:alice:bob, alice's oops message (12) is not sent yet.
    let read_at = all
        .iter()
        .find(|l| l["event"]["type"] == "read" && l["event"]["user_id"] == "bob" && l["event"]["read_seq"] == 11)
        .expect("bob's read")["cursor"]
        .as_u64()
        .expect("cursor");
    let d = dir.to_str().expect("utf-8");
    let run = parley(&["state", "--data-dir", d, "--at", &read_at.to_string(), "conversations", "--user", "bob"]);
    let v: Value = serde_json::from_str(run.expect_ok("state")).expect("JSON");
    assert_eq!(v["cursor"], read_at);
    let convs = v["conversations"].as_array().expect("conversations");
    assert_eq!(convs.len(), 1, "{v}");
    assert_eq!(convs[0]["conversation_id"], "d:alice:bob");
    assert_eq!(convs[0]["max_seq"], 11);
    assert_eq!(convs[0]["read_seq"], 11);
    assert_eq!(convs[0]["unread"], 0);
    assert_eq!(convs[0]["peer"], "alice");
    // One entry later alice has sent message 12: bob has one unread.
    let run = parley(&["state", "--data-dir", d, "--at", &(read_at + 1).to_string(), "conversations", "--user", "bob"]);
    let v: Value = serde_json::from_str(run.expect_ok("state")).expect("JSON");
    assert_eq!(v["conversations"][0]["max_seq"], 12);
    assert_eq!(v["conversations"][0]["unread"], 1);
    // At the end frank was kicked from g:1 and g:2 was dismissed: no group conversations left.
    let run = parley(&["state", "--data-dir", d, "conversations", "--user", "frank"]);
    let v: Value = serde_json::from_str(run.expect_ok("state")).expect("JSON");
    assert_eq!(v["conversations"], Value::Array(vec![]));
    // Before he was kicked he was in g:1.
    let kicked =
        all.iter().find(|l| l["event"]["type"] == "member_removed" && l["event"]["user_id"] == "frank").expect("kick")
            ["cursor"]
            .as_u64()
            .expect("cursor");
    let run =
        parley(&["state", "--data-dir", d, "--at", &(kicked - 1).to_string(), "conversations", "--user", "frank"]);
    let v: Value = serde_json::from_str(run.expect_ok("state")).expect("JSON");
    let ids: Vec<&str> = v["conversations"]
        .as_array()
        .expect("list")
        .iter()
        .map(|c| c["conversation_id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["g:1"]);
    // A user who does not exist yet at that cursor.
    let run = parley(&["state", "--data-dir", d, "--at", "1", "conversations", "--user", "bob"]);
    assert!(!run.ok() && run.stderr.contains("no user"), "{}", run.stderr);
}
