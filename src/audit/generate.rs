//! Deterministic journals, built by running commands through `Store::begin()`/`Tx::execute`
//! (decide + apply, exactly as the state machine does) with fixed timestamps:
//!
//! - the committed fixture (`parley audit fixture --out fixtures`): a scripted few hundred
//!   entries with every event type, written as `journal.jsonl` (the export) and
//!   `journal.expected` (`{last_cursor, head_hash, digest, types}`, the digest being the live
//!   store's). A test checks the committed files equal what this produces;
//! - bench loads (`parley audit generate --data-dir DIR --entries N`): a data dir holding N
//!   entries of a chat-like mix (direct and group messages, reads, revokes, friends, blocks).
//!
//! Both are hidden subcommands: tools for tests and benchmarks, not for operators.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use parley_storage::{Command, CommandKind, Role, Store, Tx};
use serde_json::json;

use super::progress::Progress;
use super::{db_path, open_db, AuditError};

/// The fixture's first timestamp (2023-11-14T22:13:20Z); each command is 1 s later.
pub const FIXTURE_T0: u64 = 1_700_000_000_000;

#[derive(Args, Debug)]
pub struct FixtureArgs {
    /// Directory to write `journal.jsonl` and `journal.expected` into.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Also keep the generated store as a data dir here (must not exist yet).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// The new data dir (must not hold a database yet).
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Journal entries to generate.
    #[arg(long, default_value_t = 1_000_000)]
    pub entries: u64,
    /// Users in the load.
    #[arg(long, default_value_t = 2_000)]
    pub users: u64,
    /// Seed of the pseudo-random mix.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Commands per transaction (the live node commits one per raft apply batch).
    #[arg(long, default_value_t = 1_000)]
    pub batch: usize,
}

/// Runs commands against a store, one transaction per command (as a raft batch of one).
pub struct Driver {
    pub store: Store,
    pub ts: u64,
}

impl Driver {
    /// Runs one command 1 s after the previous one; it must succeed and append an entry.
    pub fn run(&mut self, kind: CommandKind) -> Result<u64, AuditError> {
        self.ts += 1000;
        let name = kind.name();
        let mut tx = self.store.begin();
        let before = tx.head()?.cursor;
        let out = parley_storage::execute(&mut tx, &Command { ts: self.ts, kind })?;
        if let Err(r) = &out.result {
            return Err(AuditError::Other(format!("fixture command {name} was refused: {r:?}")));
        }
        if out.cursor <= before {
            return Err(AuditError::Other(format!("fixture command {name} appended nothing")));
        }
        tx.commit()?;
        Ok(out.cursor)
    }
}

fn s(x: &str) -> String {
    x.to_owned()
}

fn send(sender: &str, conv: &str, cmid: &str, body: &str, reply_to: Option<u64>) -> CommandKind {
    CommandKind::Send {
        sender: s(sender),
        conversation_id: s(conv),
        client_msg_id: s(cmid),
        body: s(body),
        reply_to,
        max_body_bytes: 16_384,
    }
}

fn read(user: &str, conv: &str, seq: u64) -> CommandKind {
    CommandKind::Read { user_id: s(user), conversation_id: s(conv), seq }
}

/// The fixture script. Every command must succeed; together they produce every event type.
pub fn fixture_script(d: &mut Driver) -> Result<(), AuditError> {
    let users = ["alice", "bob", "carol", "dave", "erin", "frank", "grace"];
    for u in users {
        let display = format!("{}{}", u[..1].to_uppercase(), &u[1..]);
        d.run(CommandKind::Register {
            user_id: s(u),
            display_name: display,
            password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$fixture${u}"),
        })?;
    }
    for u in users {
        let expires_at = d.ts + 30 * 24 * 3600 * 1000;
        d.run(CommandKind::CreateSession {
            user_id: s(u),
            session_id: format!("sess-{u}-1"),
            device: s("fixture"),
            expires_at,
        })?;
    }
    let expires_at = d.ts + 3600 * 1000;
    d.run(CommandKind::CreateSession {
        user_id: s("alice"),
        session_id: s("sess-alice-2"),
        device: s("laptop"),
        expires_at,
    })?;
    d.run(CommandKind::RevokeSession { user_id: s("alice"), session_id: s("sess-alice-2") })?;

    // Friends: accepted, rejected, mutual, removed.
    let request =
        |from: &str, to: &str, note: &str| CommandKind::FriendRequest { from: s(from), to: s(to), note: s(note) };
    d.run(request("alice", "bob", "hi bob"))?;
    d.run(CommandKind::AcceptFriend { user_id: s("bob"), from: s("alice") })?;
    d.run(request("alice", "carol", ""))?;
    d.run(CommandKind::RejectFriend { user_id: s("carol"), from: s("alice") })?;
    d.run(request("carol", "alice", "sorry, let's be friends"))?;
    d.run(request("alice", "carol", "yes!"))?;
    d.run(request("dave", "alice", "dave here"))?;
    d.run(CommandKind::AcceptFriend { user_id: s("alice"), from: s("dave") })?;
    d.run(CommandKind::RemoveFriend { user_id: s("dave"), other: s("alice") })?;
    d.run(request("bob", "carol", "\"quotes\" and ünïcödé ✓"))?;
    d.run(CommandKind::AcceptFriend { user_id: s("carol"), from: s("bob") })?;
    // Blocks.
    d.run(CommandKind::Block { user_id: s("erin"), target: s("frank") })?;
    d.run(CommandKind::Unblock { user_id: s("erin"), target: s("frank") })?;
    d.run(CommandKind::Block { user_id: s("frank"), target: s("grace") })?;

    // Direct messages, reads, a reply, a revoke within the window.
    let ab = "d:alice:bob";
    for i in 1..=10u64 {
        let (from, cmid) = if i % 2 == 1 { ("alice", format!("ab-a-{i}")) } else { ("bob", format!("ab-b-{i}")) };
        d.run(send(from, ab, &cmid, &format!("alice/bob message {i}"), None))?;
    }
    d.run(read("alice", ab, 10))?;
    d.run(send("alice", ab, "ab-reply", "replying to 3\nwith a second line", Some(3)))?;
    d.run(read("bob", ab, 11))?;
    d.run(send("alice", ab, "ab-oops", "oops, wrong chat", None))?;
    d.run(CommandKind::Revoke { user_id: s("alice"), conversation_id: s(ab), seq: 12 })?;
    let ac = "d:alice:carol";
    d.run(send("carol", ac, "ac-1", "hello alice", None))?;
    d.run(send("alice", ac, "ac-2", "hello carol", None))?;
    d.run(read("carol", ac, 2))?;

    // A group through its whole life: update, add, roles, mute, kick, leave, transfer.
    d.run(CommandKind::CreateGroup {
        owner: s("alice"),
        name: s("Fixture Friends"),
        members: vec![s("bob"), s("carol")],
        max_members: 100,
    })?;
    let g1 = "g:1";
    d.run(CommandKind::UpdateGroup { actor: s("alice"), group_id: 1, name: Some(s("Fixture Club")), mute_all: None })?;
    d.run(CommandKind::AddMembers {
        actor: s("alice"),
        group_id: 1,
        user_ids: vec![s("dave"), s("erin"), s("frank")],
        max_members: 100,
    })?;
    d.run(CommandKind::SetRole { actor: s("alice"), group_id: 1, user_id: s("bob"), role: Role::Admin })?;
    let until_ms = d.ts + 60_000;
    d.run(CommandKind::Mute { actor: s("bob"), group_id: 1, user_id: s("carol"), until_ms })?;
    for (i, from) in ["alice", "bob", "dave", "erin", "frank", "alice", "bob"].iter().enumerate() {
        d.run(send(from, g1, &format!("g1-{from}-{i}"), &format!("group message {i} from {from}"), None))?;
    }
    d.run(read("carol", g1, 4))?;
    d.run(read("dave", g1, 7))?;
    d.run(CommandKind::Kick { actor: s("bob"), group_id: 1, user_id: s("frank") })?;
    d.run(CommandKind::Leave { user_id: s("dave"), group_id: 1 })?;
    d.run(CommandKind::Transfer { actor: s("alice"), group_id: 1, to: s("bob") })?;
    d.run(CommandKind::Revoke { user_id: s("bob"), conversation_id: s(g1), seq: 1 })?;
    d.run(CommandKind::SetRole { actor: s("bob"), group_id: 1, user_id: s("erin"), role: Role::Admin })?;
    d.run(CommandKind::SetRole { actor: s("bob"), group_id: 1, user_id: s("erin"), role: Role::Member })?;
    d.run(CommandKind::UpdateGroup { actor: s("bob"), group_id: 1, name: None, mute_all: Some(true) })?;
    d.run(send("alice", g1, "g1-alice-admin", "admins may speak while muted", None))?;
    d.run(CommandKind::UpdateGroup { actor: s("alice"), group_id: 1, name: None, mute_all: Some(false) })?;
    d.run(CommandKind::Mute { actor: s("alice"), group_id: 1, user_id: s("carol"), until_ms: 0 })?;

    // A group that is dismissed.
    d.run(CommandKind::CreateGroup {
        owner: s("erin"),
        name: s("Short-lived"),
        members: vec![s("grace"), s("frank")],
        max_members: 100,
    })?;
    d.run(send("grace", "g:2", "g2-1", "is anyone here?", None))?;
    d.run(CommandKind::Dismiss { actor: s("erin"), group_id: 2 })?;

    // Steady traffic to reach a few hundred entries.
    let active = ["alice", "bob", "carol", "erin"];
    for round in 0..45u64 {
        d.run(send("alice", ab, &format!("ab-loop-a-{round}"), &format!("ping {round}"), None))?;
        d.run(send("bob", ab, &format!("ab-loop-b-{round}"), &format!("pong {round}"), Some(round + 1)))?;
        let from = active[(round % 4) as usize];
        d.run(send(from, g1, &format!("g1-loop-{round}"), &format!("round {round} in the club"), None))?;
        let reader = active[((round + 1) % 4) as usize];
        d.run(read(reader, g1, u64::MAX))?;
        if round % 3 == 0 {
            d.run(read("alice", ab, u64::MAX))?;
        }
        if round % 9 == 4 {
            d.run(send("carol", "d:bob:carol", &format!("bc-{round}"), "hey bob", None))?;
        }
    }

    // An app backend's account: made without a password, given one, deactivated (its session
    // revoked in the same command), reactivated. Appended last, so the journal before it is
    // the fixture as it was.
    d.run(CommandKind::CreateUser { user_id: s("henry"), display_name: s("Henry"), password_hash: String::new() })?;
    d.run(CommandKind::CreateSession {
        user_id: s("henry"),
        session_id: s("henry-app"),
        device: s("web"),
        expires_at: FIXTURE_T0 + 86_400_000,
    })?;
    d.run(CommandKind::SetPassword {
        user_id: s("henry"),
        password_hash: s("$argon2id$v=19$m=19456,t=2,p=1$fixture"),
    })?;
    d.run(CommandKind::Deactivate { user_id: s("henry") })?;
    d.run(CommandKind::Reactivate { user_id: s("henry") })?;
    Ok(())
}

/// Builds the fixture into `store`; returns `(journal lines, expected)`.
pub fn build_fixture(store: &Store, out: &mut impl Write) -> Result<serde_json::Value, AuditError> {
    let mut d = Driver { store: store.clone(), ts: FIXTURE_T0 };
    fixture_script(&mut d)?;
    let mut types: BTreeMap<&'static str, u64> = BTreeMap::new();
    for item in store.journal_raw(1) {
        let (cursor, bytes) = item?;
        let entry = parley_storage::journal::JournalRecord::decode(cursor, &bytes)?.verify()?;
        *types.entry(entry.event.type_name()).or_default() += 1;
        let line = parley_wire::canonical_text(&parley_wire::storage::journal_entry(&entry))
            .map_err(|e| AuditError::Other(e.to_string()))?;
        writeln!(out, "{line}")?;
    }
    if types.len() != super::wire::event_types().len() {
        return Err(AuditError::Other(format!("the fixture covers {} event types, not all 20", types.len())));
    }
    let head = store.head()?;
    Ok(json!({
        "last_cursor": head.cursor,
        "head_hash": hex::encode(head.hash),
        "digest": hex::encode(store.projection_digest()?),
        "types": types,
    }))
}

/// A store for a generator: a new data dir's db, or a scratch one.
fn new_store(data_dir: Option<&Path>, durable: bool) -> Result<(Store, Option<tempfile::TempDir>), AuditError> {
    match data_dir {
        Some(dir) => {
            if db_path(dir).exists() {
                return Err(AuditError::Other(format!("{} already holds a database", dir.display())));
            }
            std::fs::create_dir_all(dir)?;
            Ok((Store::open(open_db(&db_path(dir), 256, durable)?)?, None))
        }
        None => {
            let tmp = tempfile::Builder::new()
                .prefix("parley-fixture-")
                .tempdir()
                .map_err(|e| AuditError::Other(e.to_string()))?;
            let store = Store::open(open_db(&tmp.path().join("db"), 64, false)?)?;
            Ok((store, Some(tmp)))
        }
    }
}

pub fn run_fixture(args: FixtureArgs) -> Result<(), String> {
    let run = || -> Result<(), AuditError> {
        let (store, tmp) = new_store(args.data_dir.as_deref(), true)?;
        std::fs::create_dir_all(&args.out)?;
        let mut lines = BufWriter::new(std::fs::File::create(args.out.join("journal.jsonl"))?);
        let expected = build_fixture(&store, &mut lines)?;
        lines.flush()?;
        let text = serde_json::to_string_pretty(&expected).map_err(|e| AuditError::Other(e.to_string()))?;
        std::fs::write(args.out.join("journal.expected"), format!("{text}\n"))?;
        store.db().flush()?;
        drop(store);
        drop(tmp);
        println!(
            "fixture {} entries head {} digest {}",
            expected["last_cursor"],
            expected["head_hash"].as_str().unwrap_or_default(),
            expected["digest"].as_str().unwrap_or_default()
        );
        Ok(())
    };
    run().map_err(|e| e.to_string())
}

/// splitmix64: a tiny deterministic generator (the load must be the same on every machine).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Friends of user `i` in the load: the next few users on a ring.
const FRIENDS_AHEAD: u64 = 3;
/// Members per group in the load.
const GROUP_SIZE: u64 = 20;

fn user_name(i: u64) -> String {
    format!("user{i:06}")
}

fn direct(a: u64, b: u64) -> String {
    let (x, y) = (user_name(a), user_name(b));
    if x < y {
        format!("d:{x}:{y}")
    } else {
        format!("d:{y}:{x}")
    }
}

/// The load's commands, one at a time (decided against the store as it grows).
struct Load {
    rng: Rng,
    users: u64,
    groups: u64,
    setup: std::vec::IntoIter<CommandKind>,
    sent: u64,
    /// The last message sent, for an occasional revoke: (sender, conversation, seq-less).
    last_sent: Option<(u64, String)>,
}

impl Load {
    fn new(users: u64, seed: u64) -> Load {
        let users = users.max(GROUP_SIZE + FRIENDS_AHEAD + 1);
        let groups = users / GROUP_SIZE;
        let mut setup = Vec::new();
        for i in 0..users {
            setup.push(CommandKind::Register {
                user_id: user_name(i),
                display_name: format!("User {i}"),
                password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$load${i}"),
            });
            setup.push(CommandKind::CreateSession {
                user_id: user_name(i),
                session_id: format!("load-session-{i}"),
                device: s("bench"),
                expires_at: u64::MAX / 2,
            });
        }
        for i in 0..users {
            for k in 1..=FRIENDS_AHEAD {
                let j = (i + k) % users;
                setup.push(CommandKind::FriendRequest { from: user_name(i), to: user_name(j), note: s("hi") });
                setup.push(CommandKind::AcceptFriend { user_id: user_name(j), from: user_name(i) });
            }
        }
        for g in 0..groups {
            let base = g * GROUP_SIZE;
            setup.push(CommandKind::CreateGroup {
                owner: user_name(base),
                name: format!("group {g}"),
                members: (base + 1..base + GROUP_SIZE).map(user_name).collect(),
                max_members: 10_000,
            });
        }
        Load { rng: Rng(seed), users, groups, setup: setup.into_iter(), sent: 0, last_sent: None }
    }

    fn next(&mut self) -> CommandKind {
        if let Some(c) = self.setup.next() {
            return c;
        }
        let roll = self.rng.below(100);
        let u = self.rng.below(self.users);
        match roll {
            0..=54 => {
                let peer = (u + 1 + self.rng.below(FRIENDS_AHEAD)) % self.users;
                self.message(u, direct(u, peer))
            }
            55..=74 => {
                let g = self.rng.below(self.groups);
                let member = g * GROUP_SIZE + self.rng.below(GROUP_SIZE);
                self.message(member, format!("g:{}", g + 1))
            }
            75..=85 => {
                let peer = (u + 1 + self.rng.below(FRIENDS_AHEAD)) % self.users;
                read(&user_name(u), &direct(u, peer), u64::MAX)
            }
            86..=95 => {
                let g = self.rng.below(self.groups);
                let member = g * GROUP_SIZE + self.rng.below(GROUP_SIZE);
                read(&user_name(member), &format!("g:{}", g + 1), u64::MAX)
            }
            96..=97 => match self.last_sent.take() {
                Some((sender, conv)) => {
                    CommandKind::Revoke { user_id: user_name(sender), conversation_id: conv, seq: u64::MAX }
                }
                None => self.message(u, direct(u, (u + 1) % self.users)),
            },
            _ => {
                // Block and unblock a non-friend: churn in the personal feeds.
                let other = (u + self.users / 2) % self.users;
                if self.rng.below(2) == 0 {
                    CommandKind::Block { user_id: user_name(u), target: user_name(other) }
                } else {
                    CommandKind::Unblock { user_id: user_name(u), target: user_name(other) }
                }
            }
        }
    }

    fn message(&mut self, sender: u64, conv: String) -> CommandKind {
        self.sent += 1;
        let n = self.sent;
        self.last_sent = Some((sender, conv.clone()));
        let words = ["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit"];
        let len = 3 + self.rng.below(10) as usize;
        let body: Vec<&str> = (0..len).map(|i| words[(n as usize + i * 7) % words.len()]).collect();
        send(&user_name(sender), &conv, &format!("m{n}"), &format!("#{n} {}", body.join(" ")), None)
    }
}

/// Fills `store` with `entries` journal entries of the load mix.
pub fn generate_load(store: &Store, entries: u64, users: u64, seed: u64, batch: usize) -> Result<(), AuditError> {
    let mut load = Load::new(users, seed);
    let mut ts = FIXTURE_T0;
    let mut progress = Progress::new("generate", entries);
    let mut head = store.head()?.cursor;
    while head < entries {
        let mut tx: Tx = store.begin();
        for _ in 0..batch.max(1) {
            let kind = load.next();
            // Revokes name the conversation's latest seq: resolve it against the projections.
            let kind = match kind {
                CommandKind::Revoke { user_id, conversation_id, .. } => {
                    let seq = store.conversation(&conversation_id)?.max_seq;
                    CommandKind::Revoke { user_id, conversation_id, seq }
                }
                k => k,
            };
            ts += 1 + load.rng.below(40);
            let out = parley_storage::execute(&mut tx, &Command { ts, kind })?;
            let now = out.cursor.max(head);
            progress.inc(now - head);
            head = now;
            if head >= entries {
                break;
            }
        }
        tx.commit()?;
    }
    progress.finish();
    Ok(())
}

pub fn run_generate(args: GenerateArgs) -> Result<(), String> {
    let run = || -> Result<(), AuditError> {
        let (store, _) = new_store(Some(&args.data_dir), false)?;
        let started = std::time::Instant::now();
        generate_load(&store, args.entries, args.users, args.seed, args.batch)?;
        store.db().flush()?;
        let head = store.head()?;
        eprintln!("generated {} entries in {:.1} s", head.cursor, started.elapsed().as_secs_f64());
        println!("generated {} {}", head.cursor, hex::encode(head.hash));
        Ok(())
    };
    run().map_err(|e| e.to_string())
}
