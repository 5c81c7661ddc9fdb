//! Writes the seed corpora of the fuzz targets (`fuzz/corpus/<target>/seed-*`) from real
//! data: the committed fixture journal (`fixtures/journal.jsonl`), read back through the
//! import path, and the requests of the README's walk-through. Run from the repository root:
//!
//! ```sh
//! cargo run --example fuzz_seeds
//! ```
//!
//! Tooling, not product: it lives beside the fuzz crate's consumers rather than in a library.
//! Seeds are deterministic (same fixture, same bytes), so re-running it changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use parley::audit::chain::ExportEntries;
use parley_raft::log_store::{StoredEntry, StoredPayload};
use parley_raft::snapshot::Manifest;
use parley_raft::types::{
    AppendEntriesRequest, AppendEntriesResponse, Membership, SnapshotMeta, SnapshotResponse, StoredMembership, Vote,
    VoteRequest, VoteResponse,
};
use parley_raft::wire::{self, Page, PageEntry, PageRequest, SnapshotRequest};
use parley_storage::codec;
use parley_storage::journal::JournalRecord;
use parley_storage::records::{
    ConversationRecord, FriendRequestRecord, GroupRecord, MemberRecord, MessageRecord, SessionRecord, UserRecord,
};
use parley_storage::requests::RequestId;
use parley_storage::{Command, CommandBatch, CommandKind, Role};

type Error = Box<dyn std::error::Error>;

struct Corpus {
    dir: PathBuf,
    n: usize,
}

impl Corpus {
    fn new(target: &str) -> Result<Corpus, Error> {
        let dir = Path::new("fuzz/corpus").join(target);
        fs::create_dir_all(&dir)?;
        Ok(Corpus { dir, n: 0 })
    }

    /// One seed: a selector byte (when the target takes one) and the bytes.
    fn add(&mut self, selector: Option<u8>, bytes: &[u8]) -> Result<(), Error> {
        let mut seed = Vec::with_capacity(bytes.len() + 1);
        seed.extend(selector);
        seed.extend_from_slice(bytes);
        fs::write(self.dir.join(format!("seed-{:03}", self.n)), seed)?;
        self.n += 1;
        Ok(())
    }
}

fn main() -> Result<(), Error> {
    let fixture = fs::read("fixtures/journal.jsonl")?;
    let mut journal = Vec::new();
    for item in ExportEntries::new(&fixture[..], false) {
        journal.push(item?);
    }
    let lines: Vec<&[u8]> = fixture.split_inclusive(|&b| b == b'\n').collect();
    // The first entry of each event type, with its position in the journal.
    let mut firsts: BTreeMap<&'static str, usize> = BTreeMap::new();
    for (i, (_, entry)) in journal.iter().enumerate() {
        firsts.entry(entry.event.type_name()).or_insert(i);
    }
    let samples: BTreeSet<usize> = firsts.values().copied().collect();

    storage_records(&journal, &samples)?;
    let batch = commands();
    raft_log_entry(&batch)?;
    raft_wire(&journal, &batch)?;
    snapshot_page(&journal)?;
    audit_import(&lines, &samples)?;
    http_bodies()?;
    ws_frames()?;
    Ok(())
}

fn storage_records(journal: &[(JournalRecord, parley_storage::Entry)], samples: &BTreeSet<usize>) -> Result<(), Error> {
    let mut c = Corpus::new("storage_records")?;
    for &i in samples {
        let (rec, entry) = &journal[i];
        c.add(Some(0), &codec::encode(rec))?;
        c.add(Some(1), &codec::encode(&entry.event))?;
    }
    let batch = commands();
    c.add(Some(2), &codec::encode(&batch))?;
    for cmd in batch.commands.iter().take(4) {
        c.add(Some(3), &codec::encode(cmd))?;
    }
    let user = UserRecord { display_name: "Alice".into(), password_hash: "$argon2id$x".into(), created_at: 17 };
    c.add(Some(4), &codec::encode(&user))?;
    let session =
        SessionRecord { user_id: "alice".into(), device: "laptop".into(), created_at: 1, expires_at: 3_600_001 };
    c.add(Some(5), &codec::encode(&session))?;
    c.add(Some(6), &codec::encode(&FriendRequestRecord { note: "hi!".into(), ts: 9 }))?;
    let conv = ConversationRecord { max_seq: 3, last_feed_cursor: 40, activity_cursor: 39 };
    c.add(Some(7), &codec::encode(&conv))?;
    let member = MemberRecord { role: Role::Admin, joined_seq: 2, read_seq: 5, muted_until: 0 };
    c.add(Some(8), &codec::encode(&member))?;
    let group = GroupRecord {
        name: "team".into(),
        owner: "alice".into(),
        mute_all: false,
        member_count: 3,
        created_at: 5,
        dismissed: false,
    };
    c.add(Some(9), &codec::encode(&group))?;
    c.add(Some(10), &MessageRecord { cursor: 258, revoked: true }.encode())?;
    Ok(())
}

/// A batch with a command of most shapes (strings, options, lists, a role).
fn commands() -> CommandBatch {
    let s = |x: &str| x.to_owned();
    let kinds = vec![
        CommandKind::Register { user_id: s("alice"), display_name: s("Alice"), password_hash: s("$argon2id$h") },
        CommandKind::CreateSession { user_id: s("alice"), session_id: s("s1"), device: s("laptop"), expires_at: 9 },
        CommandKind::FriendRequest { from: s("alice"), to: s("bob"), note: s("hi!") },
        CommandKind::Send {
            sender: s("alice"),
            conversation_id: s("d:alice:bob"),
            client_msg_id: s("m-1"),
            body: s("hello bob"),
            reply_to: Some(1),
            max_body_bytes: 16384,
        },
        CommandKind::Read { user_id: s("bob"), conversation_id: s("d:alice:bob"), seq: 1 },
        CommandKind::CreateGroup { owner: s("alice"), name: s("team"), members: vec![s("bob")], max_members: 100 },
        CommandKind::UpdateGroup { actor: s("alice"), group_id: 1, name: None, mute_all: Some(true) },
        CommandKind::SetRole { actor: s("alice"), group_id: 1, user_id: s("bob"), role: Role::Admin },
    ];
    let commands: Vec<Command> =
        kinds.into_iter().enumerate().map(|(i, kind)| Command { ts: 1000 + i as u64, kind }).collect();
    // Every proposed command carries a request id (storage/src/requests.rs).
    let request_ids = (0..commands.len()).map(|i| RequestId { node: 1, nonce: [i as u8; 16] }).collect();
    CommandBatch { commands, request_ids }
}

fn membership() -> Membership {
    let voters = BTreeSet::from([1u64, 2, 3]);
    let nodes = voters.iter().map(|&id| (id, openraft_node(id))).collect::<BTreeMap<_, _>>();
    Membership::new(vec![voters], nodes)
}

fn openraft_node(id: u64) -> parley_raft::types::Node {
    parley_raft::types::Node { addr: format!("127.0.0.1:{}", 8080 + id) }
}

fn stored_entries(batch: &CommandBatch) -> Result<Vec<StoredEntry>, Error> {
    Ok(vec![
        StoredEntry { term: 1, leader_node_id: 1, index: 1, payload: StoredPayload::Blank },
        StoredEntry {
            term: 1,
            leader_node_id: 1,
            index: 2,
            payload: StoredPayload::Membership(serde_json::to_vec(&membership())?),
        },
        StoredEntry { term: 2, leader_node_id: 3, index: 3, payload: StoredPayload::Batch(codec::encode(batch)) },
    ])
}

fn raft_log_entry(batch: &CommandBatch) -> Result<(), Error> {
    let mut c = Corpus::new("raft_log_entry")?;
    for e in stored_entries(batch)? {
        c.add(Some(0), &codec::encode(&e))?;
        c.add(Some(1), &e.encode())?;
    }
    Ok(())
}

fn raft_wire(journal: &[(JournalRecord, parley_storage::Entry)], batch: &CommandBatch) -> Result<(), Error> {
    let mut c = Corpus::new("raft_wire")?;
    let entries: Vec<_> =
        stored_entries(batch)?.into_iter().map(StoredEntry::into_entry).collect::<Result<Vec<_>, _>>()?;
    let log_id = |i: usize| entries[i].log_id;
    let vote = Vote::new_committed(2, 3);
    let append = AppendEntriesRequest {
        vote,
        prev_log_id: Some(log_id(0)),
        entries: entries[1..].to_vec(),
        leader_commit: Some(log_id(1)),
    };
    c.add(Some(0), &wire::encode(&append)?)?;
    c.add(
        Some(0),
        &wire::encode(&AppendEntriesRequest { vote, prev_log_id: None, entries: vec![], leader_commit: None })?,
    )?;
    c.add(Some(1), &wire::encode(&VoteRequest { vote: Vote::new(3, 2), last_log_id: Some(log_id(2)) })?)?;
    let meta = SnapshotMeta {
        last_log_id: Some(log_id(2)),
        last_membership: StoredMembership::new(Some(log_id(1)), membership()),
        snapshot_id: "2-3-3".into(),
    };
    let (head, _) = &journal[journal.len() - 1];
    let manifest = Manifest {
        head_cursor: head.cursor,
        head_hash: head.hash,
        source: Some("127.0.0.1:8081".into()),
        requests: Default::default(),
    };
    let snapshot = SnapshotRequest { vote, meta: meta.clone(), manifest: manifest.clone() };
    c.add(Some(2), &wire::encode(&snapshot)?)?;
    c.add(Some(3), &wire::encode(&PageRequest { from: 1, limit: 2048 })?)?;
    let ok: Result<AppendEntriesResponse, parley_raft::types::RemoteRaftError> = Ok(AppendEntriesResponse::Success);
    c.add(Some(4), &wire::encode(&ok)?)?;
    let higher: Result<AppendEntriesResponse, parley_raft::types::RemoteRaftError> =
        Ok(AppendEntriesResponse::HigherVote(Vote::new(4, 1)));
    c.add(Some(4), &wire::encode(&higher)?)?;
    let granted: Result<VoteResponse, parley_raft::types::RemoteRaftError> =
        Ok(VoteResponse { vote: Vote::new(3, 2), vote_granted: true, last_log_id: Some(log_id(2)) });
    c.add(Some(5), &wire::encode(&granted)?)?;
    let installed: Result<SnapshotResponse, parley_raft::types::Fatal> = Ok(SnapshotResponse { vote });
    c.add(Some(6), &wire::encode(&installed)?)?;
    let page = Page {
        entries: journal
            .iter()
            .take(3)
            .map(|(r, _)| PageEntry { cursor: r.cursor, record: codec::encode(r) })
            .collect(),
    };
    c.add(Some(7), &wire::encode(&page)?)?;
    c.add(Some(8), &wire::encode(&(meta, manifest))?)?;
    Ok(())
}

fn page_of(journal: &[(JournalRecord, parley_storage::Entry)], from: usize, to: usize) -> Result<Vec<u8>, Error> {
    let entries =
        journal[from..to].iter().map(|(r, _)| PageEntry { cursor: r.cursor, record: codec::encode(r) }).collect();
    Ok(wire::encode(&Page { entries })?)
}

fn snapshot_page(journal: &[(JournalRecord, parley_storage::Entry)]) -> Result<(), Error> {
    let mut c = Corpus::new("snapshot_page")?;
    let seed = |flags: u8, expected: u64, target: u64, body: Vec<u8>| {
        let mut s = vec![flags];
        s.extend_from_slice(&expected.to_le_bytes());
        s.extend_from_slice(&target.to_le_bytes());
        s.extend(body);
        s
    };
    // A first pull of an empty node: cursors 1..=6, reaching the target.
    c.add(None, &seed(0b110, 0, 6, page_of(journal, 0, 6)?))?;
    // A first pull from a head at 4: the page starts at the head's own entry.
    c.add(None, &seed(0b111, 4, 10, page_of(journal, 3, 10)?))?;
    // A later page that stops short of the target.
    c.add(None, &seed(0b010, 10, 40, page_of(journal, 10, 14)?))?;
    // A page that runs past the target.
    c.add(None, &seed(0b110, 0, 3, page_of(journal, 0, 5)?))?;
    // Diverged (the head's hash differs) and empty pages.
    c.add(None, &seed(0b001, 4, 10, page_of(journal, 3, 6)?))?;
    c.add(None, &seed(0b000, 0, 1, page_of(journal, 0, 0)?))?;
    Ok(())
}

fn audit_import(lines: &[&[u8]], samples: &BTreeSet<usize>) -> Result<(), Error> {
    let mut c = Corpus::new("audit_import")?;
    // Full exports (genesis first): a short one and a longer one.
    for n in [3, 12] {
        c.add(Some(0), &lines[..n].concat())?;
    }
    // A filtered export holding one line of every event type, in journal order.
    let picked: Vec<&[u8]> = samples.iter().map(|&i| lines[i]).collect();
    c.add(Some(1), &picked.concat())?;
    // Each event type alone (a one-line filtered export).
    for &i in samples {
        c.add(Some(1), lines[i])?;
    }
    Ok(())
}

fn http_bodies() -> Result<(), Error> {
    use parley_api::bodies::WriteRoute;
    let mut c = Corpus::new("http_bodies")?;
    let index = |r: WriteRoute| WriteRoute::ALL.iter().position(|&x| x == r).map(|i| i as u8);
    let cases: &[(WriteRoute, &str, &str, &str)] = &[
        (WriteRoute::Register, "", "", r#"{"user_id":"alice","password":"correct horse"}"#),
        (WriteRoute::Register, "", "", r#"{"user_id":"bob","password":"battery staple","display_name":"Bob ✓"}"#),
        (WriteRoute::Login, "", "", r#"{"user_id":"alice","password":"correct horse","device":"laptop"}"#),
        (WriteRoute::Login, "", "", r#"{"user_id":"bob","password":"battery staple"}"#),
        (WriteRoute::FriendRequest, "", "", r#"{"to":"bob","note":"hi!"}"#),
        (WriteRoute::Send, "d:alice:bob", "", r#"{"client_msg_id":"m-1","body":"hello bob"}"#),
        (WriteRoute::Send, "d%3Aalice%3Abob", "", r#"{"client_msg_id":"m-2","body":"re","reply_to":1}"#),
        (WriteRoute::Send, "g:1", "", r#"{"client_msg_id":"m-3","body":"\u00e9\n"}"#),
        (WriteRoute::Read, "d:alice:bob", "", r#"{"seq":1}"#),
        (WriteRoute::CreateGroup, "", "", r#"{"name":"team","members":["bob","carol","alice"]}"#),
        (WriteRoute::UpdateGroup, "g:1", "", r#"{"name":"team 2","mute_all":true}"#),
        (WriteRoute::AddMembers, "1", "", r#"{"user_ids":["dave","erin","dave"]}"#),
        (WriteRoute::SetRole, "g:1", "bob", r#"{"role":"admin"}"#),
        (WriteRoute::Transfer, "g:1", "", r#"{"to":"bob"}"#),
        (WriteRoute::Mute, "g:1", "carol", r#"{"until_ms":1700000000000}"#),
        (WriteRoute::AddLearner, "", "", r#"{"node_id":2,"addr":" 127.0.0.1:8082 ","wait_ms":1000}"#),
        (WriteRoute::AddVoters, "", "", r#"{"node_ids":[2,3]}"#),
        (WriteRoute::SetMembership, "", "", r#"{"voters":[1,2],"retain":false,"wait_ms":0}"#),
    ];
    for (route, first, second, body) in cases {
        c.add(index(*route), format!("{first}\n{second}\n{body}").as_bytes())?;
    }
    Ok(())
}

fn ws_frames() -> Result<(), Error> {
    let mut c = Corpus::new("ws_frames")?;
    for frame in [
        r#"{"type":"sync","since":0}"#,
        r#"{"type":"send","req":1,"conversation_id":"d:alice:bob","client_msg_id":"m-2","body":"hi alice"}"#,
        r#"{"type":"send","req":"x","conversation_id":"g:7","client_msg_id":"m-3","body":"re","reply_to":2}"#,
        r#"{"type":"read","req":2,"conversation_id":"d:alice:bob","seq":2}"#,
        r#"{"type":"ping"}"#,
        r#"{"type":"ping","req":{"nested":[1,2.5,null,true]}}"#,
    ] {
        c.add(None, frame.as_bytes())?;
    }
    Ok(())
}
