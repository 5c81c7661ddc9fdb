//! Model-based property test of the group domain.
//!
//! Random sequences of group commands (create, update name / mute_all, add, kick, leave, set
//! role, transfer, mute, dismiss, send, read) by random actors run against the real store and
//! against a tiny reference model made of plain maps. After every step the two must agree on:
//!
//! - accept or reject, and the rejection's contract code;
//! - the reply (group id, message seq, read marker) and the cursor it was applied at;
//! - the projections: groups (name, owner, mute_all, dismissed, member count), members (role,
//!   joined_seq, read_seq, muted_until), each user's groups and conversation list (read_seq,
//!   unread, max_seq, last message) and each user's sync (exactly the cursors the model says
//!   concern them, ascending).
//!
//! At the end of each case the journal is replayed into a fresh store (`Tx::replay` over
//! `Store::journal_raw`) and must give the same `projection_digest()`, and paged sync must
//! equal one-shot sync.
//!
//! Where several rules fail at once the model checks them in this order (the domain's):
//! group exists (`not_found`), caller is a member (`not_member`), then the command's own rules.

use std::collections::{BTreeMap, HashMap};

use parley_storage::journal::JournalRecord;
use parley_storage::{Command, CommandKind, Reply, Role, Store};
use proptest::prelude::*;

/// Registered users; actors are always one of them (the API authenticates callers).
const USERS: [&str; 5] = ["ann", "bob", "cat", "dan", "eve"];
/// A well-formed user id nobody registered: only ever a target.
const GHOST: &str = "zed";
const MAX_MEMBERS: u64 = 4;
const T0: u64 = 1_700_000_000_000;
const STEP_MS: u64 = 1_000;
const MAX_BODY: u64 = 16_384;

fn name_choice(i: u8) -> String {
    match i % 7 {
        0 => "team".into(),
        1 => "weekend plans ✓".into(),
        2 => String::new(),
        3 => "   ".into(),
        4 => "é".repeat(128),
        5 => "é".repeat(129),
        _ => "x".repeat(129),
    }
}

fn actor(i: u8) -> String {
    USERS[i as usize % USERS.len()].to_owned()
}

fn target(i: u8) -> String {
    let i = i as usize % (USERS.len() + 1);
    if i == USERS.len() {
        GHOST.to_owned()
    } else {
        USERS[i].to_owned()
    }
}

/// One generated step; indices are resolved against the model when the step runs, so that
/// shrinking keeps sequences meaningful.
#[derive(Debug, Clone)]
enum Op {
    Create { actor: u8, name: u8, members: Vec<u8> },
    Update { actor: u8, group: u8, name: Option<u8>, mute_all: Option<bool> },
    Add { actor: u8, group: u8, users: Vec<u8> },
    Kick { actor: u8, group: u8, target: u8 },
    Leave { actor: u8, group: u8 },
    SetRole { actor: u8, group: u8, target: u8, admin: bool },
    Transfer { actor: u8, group: u8, target: u8 },
    Mute { actor: u8, group: u8, target: u8, until: u8 },
    Dismiss { actor: u8, group: u8 },
    Send { actor: u8, group: u8, resend: Option<u8> },
    Read { actor: u8, group: u8, seq: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    let a = any::<u8>;
    prop_oneof![
        3 => (a(), a(), prop::collection::vec(a(), 0..5))
            .prop_map(|(actor, name, members)| Op::Create { actor, name, members }),
        2 => (a(), a(), prop::option::of(a()), prop::option::of(any::<bool>()))
            .prop_map(|(actor, group, name, mute_all)| Op::Update { actor, group, name, mute_all }),
        4 => (a(), a(), prop::collection::vec(a(), 1..4)).prop_map(|(actor, group, users)| Op::Add { actor, group, users }),
        2 => (a(), a(), a()).prop_map(|(actor, group, target)| Op::Kick { actor, group, target }),
        1 => (a(), a()).prop_map(|(actor, group)| Op::Leave { actor, group }),
        2 => (a(), a(), a(), any::<bool>())
            .prop_map(|(actor, group, target, admin)| Op::SetRole { actor, group, target, admin }),
        1 => (a(), a(), a()).prop_map(|(actor, group, target)| Op::Transfer { actor, group, target }),
        2 => (a(), a(), a(), a()).prop_map(|(actor, group, target, until)| Op::Mute { actor, group, target, until }),
        1 => (a(), a()).prop_map(|(actor, group)| Op::Dismiss { actor, group }),
        6 => (a(), a(), prop::option::of(a())).prop_map(|(actor, group, resend)| Op::Send { actor, group, resend }),
        3 => (a(), a(), a()).prop_map(|(actor, group, seq)| Op::Read { actor, group, seq }),
    ]
}

// ---------------------------------------------------------------------------------------------
// The reference model
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
struct MMember {
    role: Role,
    joined_seq: u64,
    read_seq: u64,
    muted_until: u64,
}

#[derive(Debug, Clone)]
struct MGroup {
    name: String,
    owner: String,
    mute_all: bool,
    dismissed: bool,
    max_seq: u64,
    members: BTreeMap<String, MMember>,
}

/// What the model expects a successful command to answer.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    Done,
    Group(u64),
    Message { group_id: u64, seq: u64, created: bool },
    Read { read_seq: u64, unread: u64 },
}

#[derive(Default)]
struct Model {
    now: u64,
    /// Journal head.
    cursor: u64,
    next_gid: u64,
    groups: BTreeMap<u64, MGroup>,
    /// `(sender, client_msg_id)` -> `(group, seq)`.
    sent: HashMap<(String, String), (u64, u64)>,
    sent_by: HashMap<String, Vec<String>>,
    next_cmid: u64,
    /// The cursors each user's sync must return, ascending.
    feeds: BTreeMap<String, Vec<u64>>,
}

type Decided = Result<(bool, Expect), &'static str>;

fn valid_name(n: &str) -> Result<(), &'static str> {
    let chars = n.chars().count();
    if n.trim().is_empty() || chars == 0 || chars > 128 {
        return Err("invalid_request");
    }
    Ok(())
}

fn registered(u: &str) -> bool {
    USERS.contains(&u)
}

fn conv(gid: u64) -> String {
    format!("g:{gid}")
}

fn gid_of(conversation_id: &str) -> u64 {
    conversation_id.strip_prefix("g:").and_then(|g| g.parse().ok()).expect("the model only sends to groups")
}

impl Model {
    fn new() -> Model {
        Model { now: T0, next_gid: 1, ..Default::default() }
    }

    /// A group id in `1..=next_gid` (the last one does not exist yet).
    fn pick_group(&self, g: u8) -> u64 {
        1 + g as u64 % self.next_gid
    }

    /// Resolves a generated step into the command a client would send.
    fn command(&mut self, op: &Op) -> CommandKind {
        match op.clone() {
            Op::Create { actor: a, name, members } => CommandKind::CreateGroup {
                owner: actor(a),
                name: name_choice(name),
                members: members.into_iter().map(target).collect(),
                max_members: MAX_MEMBERS,
            },
            Op::Update { actor: a, group, name, mute_all } => CommandKind::UpdateGroup {
                actor: actor(a),
                group_id: self.pick_group(group),
                name: name.map(name_choice),
                mute_all,
            },
            Op::Add { actor: a, group, users } => CommandKind::AddMembers {
                actor: actor(a),
                group_id: self.pick_group(group),
                user_ids: users.into_iter().map(target).collect(),
                max_members: MAX_MEMBERS,
            },
            Op::Kick { actor: a, group, target: t } => {
                CommandKind::Kick { actor: actor(a), group_id: self.pick_group(group), user_id: target(t) }
            }
            Op::Leave { actor: a, group } => CommandKind::Leave { user_id: actor(a), group_id: self.pick_group(group) },
            Op::SetRole { actor: a, group, target: t, admin } => CommandKind::SetRole {
                actor: actor(a),
                group_id: self.pick_group(group),
                user_id: target(t),
                role: if admin { Role::Admin } else { Role::Member },
            },
            Op::Transfer { actor: a, group, target: t } => {
                CommandKind::Transfer { actor: actor(a), group_id: self.pick_group(group), to: target(t) }
            }
            Op::Mute { actor: a, group, target: t, until } => CommandKind::Mute {
                actor: actor(a),
                group_id: self.pick_group(group),
                user_id: target(t),
                until_ms: match until % 4 {
                    0 => 0,
                    1 => self.now - 1,
                    // Expires before the next step.
                    2 => self.now + STEP_MS / 2,
                    _ => self.now + 1_000_000_000,
                },
            },
            Op::Dismiss { actor: a, group } => CommandKind::Dismiss { actor: actor(a), group_id: self.pick_group(group) },
            Op::Send { actor: a, group, resend } => {
                let sender = actor(a);
                let previous = self.sent_by.get(&sender).filter(|v| !v.is_empty());
                let client_msg_id = match (resend, previous) {
                    (Some(i), Some(ids)) => ids[i as usize % ids.len()].clone(),
                    _ => {
                        self.next_cmid += 1;
                        format!("m{}", self.next_cmid)
                    }
                };
                CommandKind::Send {
                    sender,
                    conversation_id: conv(self.pick_group(group)),
                    client_msg_id,
                    body: "hi".into(),
                    reply_to: None,
                    max_body_bytes: MAX_BODY,
                }
            }
            Op::Read { actor: a, group, seq } => {
                CommandKind::Read { user_id: actor(a), conversation_id: conv(self.pick_group(group)), seq: seq as u64 }
            }
        }
    }

    /// Appends one entry the given users' sync must return.
    fn emit<'a>(&mut self, to: impl IntoIterator<Item = &'a String>) {
        self.cursor += 1;
        for u in to {
            self.feeds.entry(u.clone()).or_default().push(self.cursor);
        }
    }

    /// The group and the caller's membership, or the contract's code.
    fn group_member(&self, gid: u64, user: &str) -> Result<(&MGroup, MMember), &'static str> {
        let g = self.groups.get(&gid).ok_or("not_found")?;
        let me = g.members.get(user).ok_or("not_member")?.clone();
        Ok((g, me))
    }

    fn owner_only(me: &MMember) -> Result<(), &'static str> {
        match me.role {
            Role::Owner => Ok(()),
            Role::Admin => Err("forbidden"),
            Role::Member => Err("not_admin"),
        }
    }

    fn moderator(me: &MMember) -> Result<(), &'static str> {
        match me.role {
            Role::Owner | Role::Admin => Ok(()),
            Role::Member => Err("not_admin"),
        }
    }

    /// Decides and applies `kind`: `(appended an entry, reply)` or the rejection code.
    fn run(&mut self, kind: &CommandKind) -> Decided {
        let now = self.now;
        match kind {
            CommandKind::CreateGroup { owner, name, members, max_members } => {
                valid_name(name)?;
                let mut others: Vec<String> = Vec::new();
                for m in members {
                    if m != owner && !others.contains(m) {
                        others.push(m.clone());
                    }
                }
                if !others.iter().all(|m| registered(m)) {
                    return Err("not_found");
                }
                if 1 + others.len() as u64 > *max_members {
                    return Err("invalid_request");
                }
                let gid = self.next_gid;
                self.next_gid += 1;
                let mut ms = BTreeMap::new();
                let fresh = |role| MMember { role, joined_seq: 0, read_seq: 0, muted_until: 0 };
                ms.insert(owner.clone(), fresh(Role::Owner));
                for o in &others {
                    ms.insert(o.clone(), fresh(Role::Member));
                }
                let to: Vec<String> = ms.keys().cloned().collect();
                self.groups.insert(
                    gid,
                    MGroup {
                        name: name.clone(),
                        owner: owner.clone(),
                        mute_all: false,
                        dismissed: false,
                        max_seq: 0,
                        members: ms,
                    },
                );
                self.emit(&to);
                Ok((true, Expect::Group(gid)))
            }
            CommandKind::UpdateGroup { actor, group_id, name, mute_all } => {
                let (g, me) = self.group_member(*group_id, actor)?;
                Self::moderator(&me)?;
                if let Some(n) = name {
                    valid_name(n)?;
                }
                let new_name = name.clone().unwrap_or_else(|| g.name.clone());
                let new_mute_all = mute_all.unwrap_or(g.mute_all);
                if new_name == g.name && new_mute_all == g.mute_all {
                    return Ok((false, Expect::Group(*group_id)));
                }
                let g = self.groups.get_mut(group_id).unwrap();
                g.name = new_name;
                g.mute_all = new_mute_all;
                let to: Vec<String> = g.members.keys().cloned().collect();
                self.emit(&to);
                Ok((true, Expect::Group(*group_id)))
            }
            CommandKind::AddMembers { actor, group_id, user_ids, max_members } => {
                let (g, me) = self.group_member(*group_id, actor)?;
                Self::moderator(&me)?;
                let mut new: Vec<String> = Vec::new();
                for u in user_ids {
                    if !registered(u) {
                        return Err("not_found");
                    }
                    if !new.contains(u) && !g.members.contains_key(u) {
                        new.push(u.clone());
                    }
                }
                if new.is_empty() {
                    return Ok((false, Expect::Group(*group_id)));
                }
                if (g.members.len() + new.len()) as u64 > *max_members {
                    return Err("invalid_request");
                }
                let g = self.groups.get_mut(group_id).unwrap();
                for u in new {
                    // New members see only what follows and start with nothing unread.
                    let m = MMember { role: Role::Member, joined_seq: g.max_seq, read_seq: g.max_seq, muted_until: 0 };
                    g.members.insert(u, m);
                }
                let to: Vec<String> = g.members.keys().cloned().collect();
                self.emit(&to);
                Ok((true, Expect::Group(*group_id)))
            }
            CommandKind::Kick { actor, group_id, user_id } => {
                let (g, me) = self.group_member(*group_id, actor)?;
                if actor == user_id {
                    return Err("invalid_request");
                }
                Self::moderator(&me)?;
                let t = g.members.get(user_id).ok_or("not_found")?;
                if me.role == Role::Admin && t.role != Role::Member {
                    return Err("forbidden");
                }
                // The removed member gets their own member_removed.
                let to: Vec<String> = g.members.keys().cloned().collect();
                self.emit(&to);
                self.groups.get_mut(group_id).unwrap().members.remove(user_id);
                Ok((true, Expect::Done))
            }
            CommandKind::Leave { user_id, group_id } => {
                let (g, me) = self.group_member(*group_id, user_id)?;
                if me.role == Role::Owner {
                    return Err("owner_cannot_leave");
                }
                let to: Vec<String> = g.members.keys().cloned().collect();
                self.emit(&to);
                self.groups.get_mut(group_id).unwrap().members.remove(user_id);
                Ok((true, Expect::Done))
            }
            CommandKind::SetRole { actor, group_id, user_id, role } => {
                let (g, me) = self.group_member(*group_id, actor)?;
                Self::owner_only(&me)?;
                let t = g.members.get(user_id).ok_or("not_found")?;
                if t.role == Role::Owner {
                    return Err("invalid_request");
                }
                if t.role == *role {
                    return Ok((false, Expect::Group(*group_id)));
                }
                let g = self.groups.get_mut(group_id).unwrap();
                g.members.get_mut(user_id).unwrap().role = *role;
                let to: Vec<String> = g.members.keys().cloned().collect();
                self.emit(&to);
                Ok((true, Expect::Group(*group_id)))
            }
            CommandKind::Transfer { actor, group_id, to } => {
                let (g, me) = self.group_member(*group_id, actor)?;
                Self::owner_only(&me)?;
                if actor == to {
                    return Err("invalid_request");
                }
                if !g.members.contains_key(to) {
                    return Err("not_found");
                }
                let g = self.groups.get_mut(group_id).unwrap();
                // The previous owner stays on as an admin.
                g.members.get_mut(actor).unwrap().role = Role::Admin;
                g.members.get_mut(to).unwrap().role = Role::Owner;
                g.owner = to.clone();
                let rcpt: Vec<String> = g.members.keys().cloned().collect();
                self.emit(&rcpt);
                Ok((true, Expect::Group(*group_id)))
            }
            CommandKind::Mute { actor, group_id, user_id, until_ms } => {
                let (g, me) = self.group_member(*group_id, actor)?;
                Self::moderator(&me)?;
                let t = g.members.get(user_id).ok_or("not_found")?;
                if t.role == Role::Owner || (me.role == Role::Admin && t.role == Role::Admin && actor != user_id) {
                    return Err("forbidden");
                }
                let g = self.groups.get_mut(group_id).unwrap();
                g.members.get_mut(user_id).unwrap().muted_until = *until_ms;
                let to: Vec<String> = g.members.keys().cloned().collect();
                self.emit(&to);
                Ok((true, Expect::Done))
            }
            CommandKind::Dismiss { actor, group_id } => {
                let (g, me) = self.group_member(*group_id, actor)?;
                Self::owner_only(&me)?;
                let to: Vec<String> = g.members.keys().cloned().collect();
                self.emit(&to);
                let g = self.groups.get_mut(group_id).unwrap();
                g.members.clear();
                g.dismissed = true;
                Ok((true, Expect::Done))
            }
            CommandKind::Send { sender, conversation_id, client_msg_id, .. } => {
                if let Some((gid, seq)) = self.sent.get(&(sender.clone(), client_msg_id.clone())) {
                    return Ok((false, Expect::Message { group_id: *gid, seq: *seq, created: false }));
                }
                let gid = gid_of(conversation_id);
                let g = self.groups.get(&gid).ok_or("not_member")?;
                let me = g.members.get(sender).ok_or("not_member")?;
                if me.muted_until > now || (g.mute_all && me.role == Role::Member) {
                    return Err("muted");
                }
                let g = self.groups.get_mut(&gid).unwrap();
                g.max_seq += 1;
                let seq = g.max_seq;
                let me = g.members.get_mut(sender).unwrap();
                me.read_seq = me.read_seq.max(seq);
                let to: Vec<String> = g.members.keys().cloned().collect();
                self.sent.insert((sender.clone(), client_msg_id.clone()), (gid, seq));
                self.sent_by.entry(sender.clone()).or_default().push(client_msg_id.clone());
                self.emit(&to);
                Ok((true, Expect::Message { group_id: gid, seq, created: true }))
            }
            CommandKind::Read { user_id, conversation_id, seq } => {
                let gid = gid_of(conversation_id);
                let g = self.groups.get_mut(&gid).ok_or("not_member")?;
                let max_seq = g.max_seq;
                let me = g.members.get_mut(user_id).ok_or("not_member")?;
                let target = (*seq).min(max_seq);
                if target <= me.read_seq {
                    return Ok((false, Expect::Read { read_seq: me.read_seq, unread: max_seq - me.read_seq }));
                }
                me.read_seq = target;
                // A group read goes only to the reader.
                self.emit([user_id]);
                Ok((true, Expect::Read { read_seq: target, unread: max_seq - target }))
            }
            other => panic!("the model does not cover {}", other.name()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The system under test and the comparisons
// ---------------------------------------------------------------------------------------------

fn temp_store() -> Store {
    let db = sled::Config::new().temporary(true).open().expect("a temporary sled db opens");
    Store::open(db).expect("a fresh store opens")
}

fn execute(store: &Store, ts: u64, kind: CommandKind) -> parley_storage::Outcome {
    let mut tx = store.begin();
    let out = tx.execute(&Command { ts, kind }).expect("no storage error");
    tx.commit().expect("commit");
    out
}

fn got_expect(reply: &Reply) -> Expect {
    match reply {
        Reply::Done => Expect::Done,
        Reply::Group { group_id } => Expect::Group(*group_id),
        Reply::Message { message, created } => {
            Expect::Message { group_id: gid_of(&message.conversation_id), seq: message.seq, created: *created }
        }
        Reply::Read { read_seq, unread } => Expect::Read { read_seq: *read_seq, unread: *unread },
        other => panic!("unexpected reply {other:?}"),
    }
}

fn check_projections(store: &Store, m: &Model) -> Result<(), TestCaseError> {
    for (gid, g) in &m.groups {
        let rec = store.group(*gid).unwrap().expect("group record exists");
        prop_assert_eq!(&rec.name, &g.name, "name of group {}", gid);
        prop_assert_eq!(&rec.owner, &g.owner, "owner of group {}", gid);
        prop_assert_eq!(rec.mute_all, g.mute_all, "mute_all of group {}", gid);
        prop_assert_eq!(rec.dismissed, g.dismissed, "dismissed of group {}", gid);
        prop_assert_eq!(rec.member_count, g.members.len() as u64, "member_count of group {}", gid);
        let members: BTreeMap<String, MMember> = store
            .group_members(*gid)
            .unwrap()
            .into_iter()
            .map(|(u, r)| {
                (u, MMember { role: r.role, joined_seq: r.joined_seq, read_seq: r.read_seq, muted_until: r.muted_until })
            })
            .collect();
        prop_assert_eq!(&members, &g.members, "members of group {}", gid);
        prop_assert_eq!(store.conversation(&conv(*gid)).unwrap().max_seq, g.max_seq, "max_seq of group {}", gid);
    }
    prop_assert!(store.group(m.next_gid).unwrap().is_none());
    for u in USERS {
        let want: Vec<u64> = m.groups.iter().filter(|(_, g)| g.members.contains_key(u)).map(|(id, _)| *id).collect();
        let mut got = store.groups_of(u).unwrap();
        got.sort_unstable();
        prop_assert_eq!(&got, &want, "groups of {}", u);

        let convs = store.conversations(u).unwrap();
        prop_assert_eq!(convs.len(), want.len(), "conversation list of {}", u);
        for c in &convs {
            let gid = gid_of(&c.conversation_id);
            let g = &m.groups[&gid];
            let me = &g.members[u];
            prop_assert_eq!(c.meta.max_seq, g.max_seq);
            prop_assert_eq!(c.member.read_seq, me.read_seq, "read_seq of {} in {}", u, gid);
            prop_assert_eq!(c.unread(), g.max_seq - me.read_seq, "unread of {} in {}", u, gid);
            let last = c.last_message.as_ref().map(|msg| msg.seq);
            let want_last = (g.max_seq > me.joined_seq).then_some(g.max_seq);
            prop_assert_eq!(last, want_last, "last message of {} in {}", u, gid);
        }

        let page = store.sync(u, 0, 100_000).unwrap();
        prop_assert!(!page.more);
        prop_assert_eq!(page.cursor, m.cursor);
        let got: Vec<u64> = page.entries.iter().map(|e| e.cursor).collect();
        let want = m.feeds.get(u).cloned().unwrap_or_default();
        prop_assert_eq!(&got, &want, "sync of {}", u);
    }
    Ok(())
}

/// Replays the store's journal into a fresh store; the digests must match.
fn check_replay(store: &Store) -> Result<(), TestCaseError> {
    let fresh = temp_store();
    let mut tx = fresh.begin();
    for item in store.journal_raw(1) {
        let (cursor, bytes) = item.unwrap();
        let rec = JournalRecord::decode(cursor, &bytes).unwrap();
        let entry = rec.verify().unwrap();
        tx.replay(&rec, &entry.event).unwrap();
    }
    tx.commit().unwrap();
    prop_assert_eq!(fresh.applied_cursor(), store.applied_cursor());
    prop_assert_eq!(fresh.projection_digest().unwrap(), store.projection_digest().unwrap());
    fresh.verify_journal().unwrap();
    Ok(())
}

/// Paged sync returns exactly what one-shot sync does.
fn check_paging(store: &Store) -> Result<(), TestCaseError> {
    for u in USERS {
        let all: Vec<u64> = store.sync(u, 0, 100_000).unwrap().entries.iter().map(|e| e.cursor).collect();
        let mut paged = Vec::new();
        let mut since = 0;
        loop {
            let p = store.sync(u, since, 3).unwrap();
            prop_assert!(p.entries.len() <= 3);
            paged.extend(p.entries.iter().map(|e| e.cursor));
            since = p.cursor;
            if !p.more {
                break;
            }
        }
        prop_assert_eq!(&paged, &all, "paged sync of {}", u);
    }
    Ok(())
}

fn run_case(ops: &[Op]) -> Result<(), TestCaseError> {
    let store = temp_store();
    let mut m = Model::new();
    for u in USERS {
        let out = execute(
            &store,
            m.now,
            CommandKind::Register { user_id: u.into(), display_name: u.into(), password_hash: "h".into() },
        );
        prop_assert!(out.result.is_ok());
        m.cursor += 1;
    }
    for (i, op) in ops.iter().enumerate() {
        m.now += STEP_MS;
        let kind = m.command(op);
        let before = m.cursor;
        let want = m.run(&kind);
        let out = execute(&store, m.now, kind.clone());
        {
            use std::io::Write;
            let tag = match &out.result { Ok(_) => format!("ok {}", kind.name()), Err(r) => format!("{} {}", r.code(), kind.name()) };
            let mut f = std::fs::OpenOptions::new().append(true).create(true).open("/tmp/model_stats.txt").unwrap();
            writeln!(f, "{tag}").unwrap();
        }
        match (&want, &out.result) {
            (Err(code), Err(r)) => {
                prop_assert_eq!(*code, r.code(), "step {}: {:?}", i, kind);
                prop_assert_eq!(out.cursor, before);
            }
            (Ok((appended, expect)), Ok(reply)) => {
                prop_assert_eq!(&got_expect(reply), expect, "step {}: {:?}", i, kind);
                prop_assert_eq!(out.cursor, m.cursor, "step {}: {:?}", i, kind);
                prop_assert_eq!(*appended, m.cursor == before + 1);
            }
            _ => prop_assert!(false, "step {}: {:?}: model {:?}, store {:?}", i, kind, want, out.result),
        }
        prop_assert_eq!(store.applied_cursor(), m.cursor);
        check_projections(&store, &m)?;
    }
    check_paging(&store)?;
    check_replay(&store)?;
    Ok(())
}

fn config() -> ProptestConfig {
    // PROPTEST_CASES overrides; the default keeps `cargo test` quick.
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(96);
    ProptestConfig { cases, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn groups_agree_with_the_model(ops in prop::collection::vec(op(), 1..60)) {
        run_case(&ops)?;
    }
}

/// A fixed scenario through the same machinery, so a regression shows without shrinking.
#[test]
fn scripted_scenario_agrees_with_the_model() {
    use Op::*;
    let ops = vec![
        Create { actor: 0, name: 0, members: vec![1, 2] },
        Send { actor: 0, group: 0, resend: None },
        Add { actor: 0, group: 0, users: vec![3] },
        Read { actor: 3, group: 0, seq: 9 },
        Send { actor: 1, group: 0, resend: None },
        Read { actor: 3, group: 0, seq: 9 },
        SetRole { actor: 0, group: 0, target: 1, admin: true },
        Kick { actor: 1, group: 0, target: 2 },
        Kick { actor: 1, group: 0, target: 0 },
        Mute { actor: 1, group: 0, target: 3, until: 3 },
        Send { actor: 3, group: 0, resend: None },
        Update { actor: 1, group: 0, name: None, mute_all: Some(true) },
        Mute { actor: 0, group: 0, target: 3, until: 0 },
        Send { actor: 3, group: 0, resend: None },
        Send { actor: 1, group: 0, resend: None },
        Send { actor: 0, group: 0, resend: Some(0) },
        Transfer { actor: 0, group: 0, target: 3 },
        Leave { actor: 0, group: 0 },
        Leave { actor: 3, group: 0 },
        Dismiss { actor: 1, group: 0 },
        Dismiss { actor: 3, group: 0 },
        Send { actor: 1, group: 0, resend: None },
        Add { actor: 3, group: 0, users: vec![0] },
    ];
    run_case(&ops).unwrap();
}
