//! Domain tests through the store's public API: commands in, projections and sync out; and
//! member lists as input (their cost in `decide`, blocks as consent to being added to a group).

use std::sync::mpsc;
use std::time::Duration;

use parley_storage::journal::JournalError;
use parley_storage::{Command, CommandKind, Event, HistoryQuery, Rejection, Reply, Store, StoreError};

struct World {
    store: Store,
    _dir: tempfile::TempDir,
    now: u64,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_path(dir.path(), 16 << 20).unwrap();
        World { store, _dir: dir, now: 1_700_000_000_000 }
    }

    fn run(&mut self, kind: CommandKind) -> parley_storage::Outcome {
        self.now += 10;
        let mut tx = self.store.begin();
        let out = parley_storage::execute(&mut tx, &Command { ts: self.now, kind }).unwrap();
        tx.commit().unwrap();
        out
    }

    fn ok(&mut self, kind: CommandKind) -> (u64, Reply) {
        let out = self.run(kind);
        (out.cursor, out.result.expect("command should be accepted"))
    }

    fn user(&mut self, id: &str) {
        self.ok(CommandKind::Register { user_id: id.into(), display_name: id.into(), password_hash: "h".into() });
    }

    fn friends(&mut self, a: &str, b: &str) {
        self.ok(CommandKind::FriendRequest { from: a.into(), to: b.into(), note: String::new() });
        self.ok(CommandKind::AcceptFriend { user_id: b.into(), from: a.into() });
    }

    /// Registers every id in one transaction (one commit, as a raft batch would).
    fn users<'a>(&mut self, ids: impl IntoIterator<Item = &'a str>) {
        let mut tx = self.store.begin();
        for id in ids {
            self.now += 1;
            let kind = CommandKind::Register { user_id: id.into(), display_name: id.into(), password_hash: "h".into() };
            let out = parley_storage::execute(&mut tx, &Command { ts: self.now, kind }).unwrap();
            out.result.expect("registration should be accepted");
        }
        tx.commit().unwrap();
    }

    fn group(&mut self, owner: &str, members: &[&str]) -> u64 {
        match self.run(create(owner, members.iter().map(|m| (*m).to_owned()).collect(), 100)).result {
            Ok(Reply::Group { group_id }) => group_id,
            other => panic!("group not created: {other:?}"),
        }
    }

    fn cursor(&self) -> u64 {
        self.store.applied_cursor()
    }

    fn send(&mut self, from: &str, conv: &str, id: &str) -> parley_storage::Outcome {
        self.run(CommandKind::Send {
            sender: from.into(),
            conversation_id: conv.into(),
            client_msg_id: id.into(),
            body: format!("hello {id}"),
            reply_to: None,
            max_body_bytes: 16384,
        })
    }
}

#[test]
fn direct_messages_seqs_unread_and_idempotency() {
    let mut w = World::new();
    w.user("alice");
    w.user("bob");
    assert_eq!(w.send("alice", "d:alice:bob", "m0").result, Err(Rejection::NotFriends));
    w.friends("alice", "bob");
    for i in 1..=3 {
        let out = w.send("alice", "d:alice:bob", &format!("m{i}"));
        match out.result.unwrap() {
            Reply::Message { message, created } => {
                assert!(created);
                assert_eq!(message.seq, i);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // Idempotent resend.
    let dup = w.send("alice", "d:alice:bob", "m2");
    match dup.result.unwrap() {
        Reply::Message { message, created } => {
            assert!(!created);
            assert_eq!(message.seq, 2);
        }
        other => panic!("unexpected {other:?}"),
    }
    let convs = w.store.conversations("bob").unwrap();
    assert_eq!(convs.len(), 1);
    assert_eq!(convs[0].unread(), 3);
    assert_eq!(w.store.conversations("alice").unwrap()[0].unread(), 0);
    let (_, r) = w.ok(CommandKind::Read { user_id: "bob".into(), conversation_id: "d:alice:bob".into(), seq: 99 });
    assert_eq!(r, Reply::Read { read_seq: 3, unread: 0 });
    let (_, r) = w.ok(CommandKind::Read { user_id: "bob".into(), conversation_id: "d:alice:bob".into(), seq: 1 });
    assert_eq!(r, Reply::Read { read_seq: 3, unread: 0 });
    // carol is not part of it
    w.user("carol");
    assert_eq!(w.send("carol", "d:alice:bob", "x").result, Err(Rejection::NotMember));
    w.store.verify_journal().unwrap();
}

#[test]
fn sync_pages_equal_one_shot_and_respect_group_membership() {
    let mut w = World::new();
    for u in ["alice", "bob", "carol"] {
        w.user(u);
    }
    w.friends("alice", "bob");
    let (_, g) = w.ok(CommandKind::CreateGroup {
        owner: "alice".into(),
        name: "team".into(),
        members: vec!["bob".into()],
        max_members: 100,
    });
    let Reply::Group { group_id } = g else { panic!() };
    let conv = format!("g:{group_id}");
    w.send("alice", &conv, "g1").result.unwrap();
    w.ok(CommandKind::AddMembers { actor: "alice".into(), group_id, user_ids: vec!["carol".into()], max_members: 100 });
    w.send("bob", &conv, "g2").result.unwrap();
    w.ok(CommandKind::Kick { actor: "alice".into(), group_id, user_id: "carol".into() });
    w.send("alice", &conv, "g3").result.unwrap();
    assert_eq!(w.send("carol", &conv, "c1").result, Err(Rejection::NotMember));

    let carol = w.store.sync("carol", 0, 1000).unwrap();
    let types: Vec<_> = carol.entries.iter().map(|e| e.event.type_name()).collect();
    assert_eq!(types, vec!["member_added", "message", "member_removed"]);

    let one_shot = w.store.sync("bob", 0, 1000).unwrap();
    let mut paged = Vec::new();
    let mut since = 0;
    loop {
        let p = w.store.sync("bob", since, 2).unwrap();
        paged.extend(p.entries.iter().map(|e| e.cursor));
        since = p.cursor;
        if !p.more {
            break;
        }
    }
    let all: Vec<_> = one_shot.entries.iter().map(|e| e.cursor).collect();
    assert_eq!(paged, all);
    assert!(all.windows(2).all(|w| w[0] < w[1]));
    assert!(one_shot.entries.iter().any(|e| matches!(e.event, Event::FriendAdded { .. })));
}

#[test]
fn entries_read_any_cursors_and_visits_match_them() {
    let mut w = World::new();
    w.user("alice");
    w.user("bob");
    w.user("carol");
    w.friends("alice", "bob");
    w.friends("alice", "carol");
    for i in 1..=6 {
        w.send("alice", "d:alice:bob", &format!("b{i}")).result.unwrap();
        w.send("carol", "d:alice:carol", &format!("c{i}")).result.unwrap();
    }
    // Revoke bob's seq 2 and carol's seq 5 (each by its sender).
    w.ok(CommandKind::Revoke { user_id: "alice".into(), conversation_id: "d:alice:bob".into(), seq: 2 });
    w.ok(CommandKind::Revoke { user_id: "carol".into(), conversation_id: "d:alice:carol".into(), seq: 5 });
    let head = w.store.applied_cursor();
    let one = |c: u64| w.store.entry(c).unwrap();

    // Dense ascending (one scan), sparse, descending, repeated, short: each is the entry at its
    // cursor.
    let all: Vec<u64> = (1..=head).collect();
    let sparse: Vec<u64> = (1..=head).step_by(5).collect();
    let odd = vec![head, 3, 3, 1, head - 1];
    for cursors in [&all, &sparse, &odd, &vec![head], &Vec::new()] {
        let got = w.store.entries(cursors).unwrap();
        assert_eq!(got, cursors.iter().map(|&c| one(c)).collect::<Vec<_>>(), "{cursors:?}");
    }
    // A cursor past the head is missing, on either path.
    assert!(w.store.entries(&[head + 1]).is_err());
    assert!(w.store.entries(&[head - 1, head, head + 1]).is_err());
    assert!(w.store.entries(&(head - 9..=head + 1).collect::<Vec<_>>()).is_err());
    assert!(w.store.entries(&(head - 9..=head).collect::<Vec<_>>()).is_ok());

    // Visits see the same entries, and exactly the two revoked messages as revoked, however
    // the messages are asked for (in seq order, skipping, backwards).
    for cursors in [all.clone(), sparse.clone(), all.iter().rev().copied().collect()] {
        let mut seen = Vec::new();
        w.store
            .visit_entries(&cursors, |v| {
                seen.push((v.cursor, v.ts, v.revoked));
                Ok(())
            })
            .unwrap();
        let want: Vec<(u64, u64, bool)> = cursors
            .iter()
            .map(|&c| {
                let e = one(c);
                let revoked = match &e.event {
                    Event::MessageSent { conversation_id, seq, .. } => {
                        w.store.message(conversation_id, *seq).unwrap().unwrap().revoked
                    }
                    _ => false,
                };
                (e.cursor, e.ts, revoked)
            })
            .collect();
        assert_eq!(seen, want, "{cursors:?}");
    }
    let revoked = {
        let mut n = 0;
        w.store
            .visit_entries(&all, |v| {
                n += usize::from(v.revoked);
                Ok(())
            })
            .unwrap();
        n
    };
    assert_eq!(revoked, 2);
}

// ---------------------------------------------------------------------------------------------
// Group member lists as input: what a huge list costs `decide`, and the consent rule (blocks)
// for putting someone in a group.
// ---------------------------------------------------------------------------------------------

fn create(owner: &str, members: Vec<String>, max_members: u64) -> CommandKind {
    CommandKind::CreateGroup { owner: owner.into(), name: "g".into(), members, max_members }
}

fn add(actor: &str, group_id: u64, user_ids: Vec<String>, max_members: u64) -> CommandKind {
    CommandKind::AddMembers { actor: actor.into(), group_id, user_ids, max_members }
}

/// Runs `kind` against a fresh store holding `alice` and her group 1 on another thread, and
/// waits at most `limit` for its outcome. A quadratic scan over 200,000 ids takes minutes even
/// optimised; one pass takes milliseconds, so the bound is generous for any debug build.
fn decide_within(limit: Duration, kind: impl FnOnce(u64) -> CommandKind + Send + 'static) -> Result<Reply, Rejection> {
    let (done, wait) = mpsc::channel();
    std::thread::spawn(move || {
        let mut w = World::new();
        w.users(["alice"]);
        let g = w.group("alice", &[]);
        let _ = done.send(w.run(kind(g)).result);
    });
    wait.recv_timeout(limit).expect("decide did not finish in time: super-linear in the member list?")
}

fn many_ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user_{i}")).collect()
}

#[test]
fn an_oversized_create_is_refused_as_too_many_in_one_pass() {
    let out = decide_within(Duration::from_secs(20), |_| create("alice", many_ids(200_000), 10_000));
    match out {
        Err(Rejection::InvalidRequest(m)) => assert!(m.contains("at most 10000 members"), "{m}"),
        other => panic!("expected too many members, got {other:?}"),
    }
}

#[test]
fn an_oversized_add_is_refused_as_too_many_before_any_lookup() {
    // None of these ids is registered: a refusal naming an unknown user would mean decide
    // looked ids up one by one before counting them.
    let out = decide_within(Duration::from_secs(20), |g| add("alice", g, many_ids(200_000), 10_000));
    match out {
        Err(Rejection::InvalidRequest(m)) => assert!(m.contains("at most 10000 members"), "{m}"),
        other => panic!("expected too many members, got {other:?}"),
    }
}

#[test]
fn large_member_lists_keep_each_member_once_in_first_seen_order() {
    let mut w = World::new();
    let ids = many_ids(3_000);
    w.users(std::iter::once("alice").chain(ids.iter().map(String::as_str)));
    // Every id twice, and the owner in the middle: each member once, in first-seen order.
    let mut list: Vec<String> = ids[..2_000].iter().chain(ids[..2_000].iter().rev()).cloned().collect();
    list.insert(1_000, "alice".into());
    let out = w.run(create("alice", list, 10_000));
    let Ok(Reply::Group { group_id }) = out.result else { panic!("not created: {:?}", out.result) };
    let group = w.store.group(group_id).unwrap().unwrap();
    assert_eq!(group.member_count, 2_001);
    let added = w.run(add("alice", group_id, ids.iter().rev().cloned().collect(), 10_000));
    assert!(added.result.is_ok(), "{:?}", added.result);
    assert_eq!(w.store.group(group_id).unwrap().unwrap().member_count, 3_001);
    // Past the limit, counting the members the group already has.
    let g2 = w.group("alice", &["user_0"]);
    let over = w.run(add("alice", g2, ids[..10].to_vec(), 10));
    assert!(matches!(over.result, Err(Rejection::InvalidRequest(_))), "{:?}", over.result);
}

#[test]
fn a_block_either_way_keeps_people_out_of_each_others_groups() {
    let mut w = World::new();
    w.users(["alice", "bob", "carol"]);
    let blocked = w.run(CommandKind::Block { user_id: "alice".into(), target: "bob".into() });
    assert!(blocked.result.is_ok());
    let bobs = w.group("bob", &["carol"]);
    let alices = w.group("alice", &["carol"]);
    let before = w.cursor();

    // The blocked user cannot reach the blocker through a new group...
    let out = w.run(create("bob", vec!["carol".into(), "alice".into()], 100));
    assert_eq!(out.result, Err(Rejection::Blocked));
    // ...nor by adding them to a group he runs...
    assert_eq!(w.run(add("bob", bobs, vec!["alice".into()], 100)).result, Err(Rejection::Blocked));
    // ...and the blocker cannot pull the blocked user in either.
    assert_eq!(w.run(create("alice", vec!["bob".into()], 100)).result, Err(Rejection::Blocked));
    assert_eq!(w.run(add("alice", alices, vec!["bob".into()], 100)).result, Err(Rejection::Blocked));
    assert_eq!(w.cursor(), before, "a refused command writes nothing");
    assert!(w.store.member(&format!("g:{bobs}"), "alice").unwrap().is_none());
    assert!(w.store.groups_of("alice").unwrap().iter().all(|g| *g != bobs));

    // Someone else may still put both in one group: the block is between the two of them.
    let carols = w.group("carol", &["alice", "bob"]);
    assert_eq!(w.store.group(carols).unwrap().unwrap().member_count, 3);
    // Unblocking lifts it.
    w.run(CommandKind::Unblock { user_id: "alice".into(), target: "bob".into() });
    assert!(w.run(add("bob", bobs, vec!["alice".into()], 100)).result.is_ok());
}

/// Flips one bit of a message's body inside its stored journal record, as a disk or a bug might.
fn flip_body_bit(store: &Store, cursor: u64, body: &str) {
    let journal = store.db().open_tree("cursor_entry").unwrap();
    let key = cursor.to_be_bytes();
    let mut value = journal.get(key).unwrap().expect("entry stored").to_vec();
    let at = value.windows(body.len()).position(|w| w == body.as_bytes()).expect("body in the record");
    value[at] ^= 0x01;
    journal.insert(key, value).unwrap();
}

#[test]
fn a_flipped_bit_in_a_stored_entry_is_never_served_and_the_tail_check_finds_it() {
    let mut w = World::new();
    w.user("alice");
    w.user("bob");
    w.friends("alice", "bob");
    let cursors: Vec<u64> = (0..6).map(|i| w.send("alice", "d:alice:bob", &format!("f{i}")).cursor).collect();
    let head = *cursors.last().unwrap();
    w.store.verify_tail(4).unwrap();
    let all = HistoryQuery { after_seq: None, before_seq: None, limit: 100 };
    assert_eq!(w.store.messages("d:alice:bob", all, 0).unwrap().len(), 6);

    // An old entry (outside a 2-entry tail): start-up does not see it, every read of it does.
    flip_body_bit(&w.store, cursors[1], "hello f1");
    w.store.verify_tail(2).unwrap();
    let bad = StoreError::Journal(JournalError::HashMismatch { cursor: cursors[1] });
    let err = w.store.messages("d:alice:bob", all, 0).unwrap_err();
    assert_eq!(err.to_string(), bad.to_string());
    assert!(err.is_corruption());
    let err = w.store.sync("bob", 0, 100).unwrap_err();
    assert_eq!(err.to_string(), bad.to_string());
    assert_eq!(w.store.entry(cursors[1]).unwrap_err().to_string(), bad.to_string());
    // Pages after it are still served: only the bad entry is refused.
    assert_eq!(w.store.messages("d:alice:bob", HistoryQuery { after_seq: Some(2), ..all }, 0).unwrap().len(), 4);

    // The newest entry: the tail check at start finds it.
    flip_body_bit(&w.store, head, "hello f5");
    let err = w.store.verify_tail(2).unwrap_err();
    assert_eq!(err.to_string(), StoreError::Journal(JournalError::HashMismatch { cursor: head }).to_string());
    assert!(w.store.verify_journal().is_err());
}

/// Events of the journal from `cursor` on (one page is enough for these tests).
fn events_after(store: &Store, cursor: u64) -> Vec<Event> {
    store.journal(cursor + 1, 10_000).unwrap().into_iter().map(|e| e.event).collect()
}

#[test]
fn deactivation_refuses_sessions_and_sends_and_revokes_every_session_in_bounded_commands() {
    use parley_storage::command::MAX_REVOKED_PER_COMMAND;
    let mut w = World::new();
    w.user("alice");
    w.user("bob");
    w.friends("alice", "bob");
    // More sessions than one command revokes, in one commit.
    let n = MAX_REVOKED_PER_COMMAND + 7;
    let mut tx = w.store.begin();
    for i in 0..n {
        let kind = CommandKind::CreateSession {
            user_id: "bob".into(),
            session_id: format!("s{i:05}"),
            device: "d".into(),
            expires_at: u64::MAX,
        };
        parley_storage::execute(&mut tx, &Command { ts: w.now, kind }).unwrap().result.unwrap();
    }
    tx.commit().unwrap();
    assert_eq!(w.store.sessions_of("bob").unwrap().len(), n);

    let before = w.cursor();
    w.ok(CommandKind::Deactivate { user_id: "bob".into() });
    let evs = events_after(&w.store, before);
    assert_eq!(evs[0], Event::UserDeactivated { user_id: "bob".into() });
    assert_eq!(evs.len(), 1 + MAX_REVOKED_PER_COMMAND, "one command revokes a bounded number");
    assert!(evs[1..].iter().all(|e| matches!(e, Event::SessionRevoked { user_id, .. } if user_id == "bob")));
    assert!(w.store.is_deactivated("bob").unwrap());
    assert_eq!(w.store.sessions_of("bob").unwrap().len(), 7);

    // The rest goes with the next command; then there is nothing left to do.
    w.ok(CommandKind::RevokeAllSessions { user_id: "bob".into() });
    assert!(!w.store.has_sessions("bob").unwrap());
    let head = w.cursor();
    assert_eq!(w.ok(CommandKind::RevokeAllSessions { user_id: "bob".into() }).0, head, "nothing appended");
    assert_eq!(w.ok(CommandKind::Deactivate { user_id: "bob".into() }).0, head, "deactivating twice is a no-op");

    // No new session, no message or friend request reaches the account.
    let login = CommandKind::CreateSession {
        user_id: "bob".into(),
        session_id: "late".into(),
        device: "d".into(),
        expires_at: u64::MAX,
    };
    assert_eq!(w.run(login.clone()).result, Err(Rejection::AccountDeactivated));
    let sent = w.send("alice", "d:alice:bob", "m1").result;
    assert!(matches!(sent, Err(Rejection::Forbidden(_))), "{sent:?}");
    w.user("carol");
    let asked = w.run(CommandKind::FriendRequest { from: "carol".into(), to: "bob".into(), note: String::new() });
    assert!(matches!(asked.result, Err(Rejection::Forbidden(_))), "{:?}", asked.result);

    // Reactivated, the account works again.
    w.ok(CommandKind::Reactivate { user_id: "bob".into() });
    assert!(!w.store.is_deactivated("bob").unwrap());
    w.ok(login);
    assert!(w.send("alice", "d:alice:bob", "m2").result.is_ok());
}

#[test]
fn accounts_page_in_user_id_order_and_a_password_can_be_set() {
    let mut w = World::new();
    for id in ["dave", "alice", "carol", "bob", "erin"] {
        w.ok(CommandKind::CreateUser {
            user_id: id.into(),
            display_name: id.to_uppercase(),
            password_hash: String::new(),
        });
    }
    w.ok(CommandKind::Deactivate { user_id: "carol".into() });
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let (page, more) = w.store.users_page(after.as_deref(), 2).unwrap();
        assert!(page.len() <= 2);
        seen.extend(page.iter().map(|(id, rec, off)| (id.clone(), rec.display_name.clone(), *off)));
        if !more {
            break;
        }
        after = page.last().map(|(id, _, _)| id.clone());
    }
    let ids: Vec<&str> = seen.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(ids, ["alice", "bob", "carol", "dave", "erin"]);
    assert!(seen.iter().all(|(id, name, off)| *name == id.to_uppercase() && *off == (id == "carol")));
    // No password to begin with, then one.
    assert_eq!(w.store.user("bob").unwrap().unwrap().password_hash, "");
    w.ok(CommandKind::SetPassword { user_id: "bob".into(), password_hash: "$argon2id$new".into() });
    assert_eq!(w.store.user("bob").unwrap().unwrap().password_hash, "$argon2id$new");
    // A public registration still needs a hash.
    let r =
        w.run(CommandKind::Register { user_id: "frank".into(), display_name: "f".into(), password_hash: "".into() });
    assert!(matches!(r.result, Err(Rejection::InvalidRequest(_))));
}
