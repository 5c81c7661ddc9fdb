//! Domain tests through the store's public API: commands in, projections and sync out.

use parley_storage::{Command, CommandKind, Event, Rejection, Reply, Store};

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
