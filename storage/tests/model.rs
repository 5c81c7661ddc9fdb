//! Model-based property test of the group domain.
//!
//! Random sequences of group commands (create, update name / mute_all, add, kick, leave, set
//! role, transfer, mute, dismiss, send, read, revoke) by random actors run against the real
//! store and against a tiny reference model made of plain maps. After every step the two must
//! agree on:
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
use parley_storage::{Command, CommandKind, Event, Reply, Role, Store};
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
    match i % 10 {
        0..=2 => "team".into(),
        3 => "weekend plans ✓".into(),
        4 => "é".repeat(128),
        5 => String::new(),
        6 => "   ".into(),
        7 => "é".repeat(129),
        8 => "x".repeat(129),
        _ => "crew".into(),
    }
}

/// Any registered user, or (rarely) the unregistered one.
fn any_user(i: u8) -> String {
    if i % 16 == 15 {
        GHOST.to_owned()
    } else {
        USERS[i as usize % USERS.len()].to_owned()
    }
}

/// One generated step; indices are resolved against the model when the step runs, so that
/// shrinking keeps sequences meaningful.
#[derive(Debug, Clone)]
enum Op {
    Create {
        actor: u8,
        name: u8,
        members: Vec<u8>,
    },
    Update {
        actor: u8,
        group: u8,
        name: Option<u8>,
        mute_all: Option<bool>,
    },
    Add {
        actor: u8,
        group: u8,
        users: Vec<u8>,
    },
    Kick {
        actor: u8,
        group: u8,
        target: u8,
    },
    Leave {
        actor: u8,
        group: u8,
    },
    SetRole {
        actor: u8,
        group: u8,
        target: u8,
        admin: bool,
    },
    Transfer {
        actor: u8,
        group: u8,
        target: u8,
    },
    Mute {
        actor: u8,
        group: u8,
        target: u8,
        until: u8,
    },
    Dismiss {
        actor: u8,
        group: u8,
    },
    Send {
        actor: u8,
        group: u8,
        resend: Option<u8>,
    },
    Read {
        actor: u8,
        group: u8,
        seq: u8,
    },
    /// `late` first lets the 120 s self-revoke window pass.
    Revoke {
        actor: u8,
        group: u8,
        seq: u8,
        late: bool,
    },
}

/// Most interesting sequences start with a group.
fn create_op() -> impl Strategy<Value = Op> {
    (any::<u8>(), 0u8..3, prop::collection::vec(any::<u8>(), 0..4)).prop_map(|(actor, name, members)| Op::Create {
        actor,
        name,
        members,
    })
}

fn op() -> impl Strategy<Value = Op> {
    let a = any::<u8>;
    prop_oneof![
        3 => (a(), a(), prop::collection::vec(a(), 0..4))
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
        2 => (a(), a(), a(), any::<bool>())
            .prop_map(|(actor, group, seq, late)| Op::Revoke { actor, group, seq, late }),
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
    /// seq -> (sender, ts, revoked)
    messages: BTreeMap<u64, (String, u64, bool)>,
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

    /// Mostly an existing group; sometimes `next_gid`, which does not exist yet.
    fn pick_group(&self, g: u8) -> u64 {
        let existing = self.next_gid - 1;
        if existing == 0 || g % 10 == 9 {
            self.next_gid
        } else {
            1 + g as u64 % existing
        }
    }

    /// Mostly a current member of the group; sometimes anyone (registered or not).
    fn pick_user(&self, gid: u64, i: u8, registered_only: bool) -> String {
        let members: Vec<&String> = self.groups.get(&gid).map(|g| g.members.keys().collect()).unwrap_or_default();
        if members.is_empty() || i % 5 == 4 {
            if registered_only {
                USERS[i as usize % USERS.len()].to_owned()
            } else {
                any_user(i)
            }
        } else {
            members[(i / 5) as usize % members.len()].clone()
        }
    }

    /// Resolves a generated step into the command a client would send.
    fn command(&mut self, op: &Op) -> CommandKind {
        match op.clone() {
            Op::Create { actor, name, members } => CommandKind::CreateGroup {
                owner: USERS[actor as usize % USERS.len()].to_owned(),
                name: name_choice(name),
                members: members.into_iter().map(any_user).collect(),
                max_members: MAX_MEMBERS,
            },
            Op::Update { actor, group, name, mute_all } => {
                let group_id = self.pick_group(group);
                CommandKind::UpdateGroup {
                    actor: self.pick_user(group_id, actor, true),
                    group_id,
                    name: name.map(name_choice),
                    mute_all,
                }
            }
            Op::Add { actor, group, users } => {
                let group_id = self.pick_group(group);
                CommandKind::AddMembers {
                    actor: self.pick_user(group_id, actor, true),
                    group_id,
                    user_ids: users.into_iter().map(any_user).collect(),
                    max_members: MAX_MEMBERS,
                }
            }
            Op::Kick { actor, group, target } => {
                let group_id = self.pick_group(group);
                CommandKind::Kick {
                    actor: self.pick_user(group_id, actor, true),
                    group_id,
                    user_id: self.pick_user(group_id, target, false),
                }
            }
            Op::Leave { actor, group } => {
                let group_id = self.pick_group(group);
                CommandKind::Leave { user_id: self.pick_user(group_id, actor, true), group_id }
            }
            Op::SetRole { actor, group, target, admin } => {
                let group_id = self.pick_group(group);
                CommandKind::SetRole {
                    actor: self.pick_user(group_id, actor, true),
                    group_id,
                    user_id: self.pick_user(group_id, target, false),
                    role: if admin { Role::Admin } else { Role::Member },
                }
            }
            Op::Transfer { actor, group, target } => {
                let group_id = self.pick_group(group);
                CommandKind::Transfer {
                    actor: self.pick_user(group_id, actor, true),
                    group_id,
                    to: self.pick_user(group_id, target, false),
                }
            }
            Op::Mute { actor, group, target, until } => {
                let group_id = self.pick_group(group);
                CommandKind::Mute {
                    actor: self.pick_user(group_id, actor, true),
                    group_id,
                    user_id: self.pick_user(group_id, target, false),
                    until_ms: match until % 4 {
                        0 => 0,
                        1 => self.now - 1,
                        // In force at this step (one step from now), over by the next.
                        2 => self.now + STEP_MS + STEP_MS / 2,
                        _ => self.now + 1_000_000_000,
                    },
                }
            }
            Op::Dismiss { actor, group } => {
                let group_id = self.pick_group(group);
                CommandKind::Dismiss { actor: self.pick_user(group_id, actor, true), group_id }
            }
            Op::Send { actor, group, resend } => {
                let group_id = self.pick_group(group);
                let sender = self.pick_user(group_id, actor, true);
                let previous = self.sent_by.get(&sender).filter(|v| !v.is_empty());
                let client_msg_id = match (resend, previous) {
                    (Some(i), Some(ids)) if i % 4 == 0 => ids[i as usize % ids.len()].clone(),
                    _ => {
                        self.next_cmid += 1;
                        format!("m{}", self.next_cmid)
                    }
                };
                CommandKind::Send {
                    sender,
                    conversation_id: conv(group_id),
                    client_msg_id,
                    body: "hi".into(),
                    reply_to: None,
                    max_body_bytes: MAX_BODY,
                }
            }
            Op::Revoke { actor, group, seq, late } => {
                if late {
                    self.now += 130_000;
                }
                let group_id = self.pick_group(group);
                CommandKind::Revoke {
                    user_id: self.pick_user(group_id, actor, true),
                    conversation_id: conv(group_id),
                    seq: seq as u64 % 8,
                }
            }
            Op::Read { actor, group, seq } => {
                let group_id = self.pick_group(group);
                CommandKind::Read {
                    user_id: self.pick_user(group_id, actor, true),
                    conversation_id: conv(group_id),
                    seq: seq as u64 % 12,
                }
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
                        messages: BTreeMap::new(),
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
                g.messages.insert(seq, (sender.clone(), now, false));
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
            CommandKind::Revoke { user_id, conversation_id, seq } => {
                let gid = gid_of(conversation_id);
                let g = self.groups.get(&gid).ok_or("not_member")?;
                let me = g.members.get(user_id).ok_or("not_member")?;
                // Messages before joining do not exist for the member.
                let (sender, ts, revoked) = g.messages.get(seq).filter(|_| *seq > me.joined_seq).ok_or("not_found")?;
                let expect = Expect::Message { group_id: gid, seq: *seq, created: false };
                if *revoked {
                    return Ok((false, expect));
                }
                let own_in_window = sender == user_id && now - ts <= 120_000;
                if !own_in_window && me.role == Role::Member {
                    return Err("forbidden");
                }
                let g = self.groups.get_mut(&gid).unwrap();
                g.messages.get_mut(seq).unwrap().2 = true;
                let to: Vec<String> = g.members.keys().cloned().collect();
                self.emit(&to);
                Ok((true, expect))
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
    let out = parley_storage::execute(&mut tx, &Command { ts, kind }).expect("no storage error");
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
                (
                    u,
                    MMember {
                        role: r.role,
                        joined_seq: r.joined_seq,
                        read_seq: r.read_seq,
                        muted_until: r.muted_until,
                    },
                )
            })
            .collect();
        prop_assert_eq!(&members, &g.members, "members of group {}", gid);
        prop_assert_eq!(store.conversation(&conv(*gid)).unwrap().max_seq, g.max_seq, "max_seq of group {}", gid);
        for (seq, (sender, ts, revoked)) in &g.messages {
            let msg = store.message(&conv(*gid), *seq).unwrap().expect("message stored");
            prop_assert_eq!((&msg.sender, msg.ts, msg.revoked), (sender, *ts, *revoked), "message {}/{}", gid, seq);
            prop_assert_eq!(msg.body.is_empty(), *revoked);
        }
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
        // Sync shows messages as they are now: which of them have been revoked since.
        let mut revoked = Vec::new();
        store
            .visit_entries(&got, |v| {
                if v.revoked {
                    revoked.push(v.cursor);
                }
                Ok(())
            })
            .unwrap();
        let want_revoked: Vec<u64> = page
            .entries
            .iter()
            .filter(|e| match &e.event {
                Event::MessageSent { conversation_id, seq, .. } => m.groups[&gid_of(conversation_id)].messages[seq].2,
                _ => false,
            })
            .map(|e| e.cursor)
            .collect();
        prop_assert_eq!(&revoked, &want_revoked, "revoked messages in the sync of {}", u);
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

/// The store under test beside its model.
struct Harness {
    store: Store,
    model: Model,
}

impl Harness {
    /// A fresh store and model with every user registered.
    fn new() -> Result<Harness, TestCaseError> {
        let mut h = Harness { store: temp_store(), model: Model::new() };
        for u in USERS {
            let kind = CommandKind::Register { user_id: u.into(), display_name: u.into(), password_hash: "h".into() };
            let out = execute(&h.store, h.model.now, kind);
            prop_assert!(out.result.is_ok());
            h.model.cursor += 1;
        }
        Ok(h)
    }

    /// Runs one command on both sides, one simulated second after the previous one.
    fn step(&mut self, i: usize, kind: CommandKind) -> Result<(), TestCaseError> {
        let m = &mut self.model;
        m.now += STEP_MS;
        let before = m.cursor;
        let want = m.run(&kind);
        let out = execute(&self.store, m.now, kind.clone());
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
        prop_assert_eq!(self.store.applied_cursor(), m.cursor);
        check_projections(&self.store, m)
    }

    fn finish(&self) -> Result<(), TestCaseError> {
        check_paging(&self.store)?;
        check_replay(&self.store)
    }
}

fn run_case(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut h = Harness::new()?;
    for (i, op) in ops.iter().enumerate() {
        let kind = h.model.command(op);
        h.step(i, kind)?;
    }
    h.finish()
}

fn config() -> ProptestConfig {
    // PROPTEST_CASES overrides; the default keeps `cargo test` quick.
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(96);
    ProptestConfig { cases, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn groups_agree_with_the_model(first in create_op(), rest in prop::collection::vec(op(), 0..60)) {
        let mut ops = vec![first];
        ops.extend(rest);
        run_case(&ops)?;
    }
}

/// A fixed scenario through the same machinery, so a regression shows without shrinking.
#[test]
fn scripted_scenario_agrees_with_the_model() {
    let s = |x: &str| x.to_owned();
    let send = |who: &str, id: &str| CommandKind::Send {
        sender: s(who),
        conversation_id: s("g:1"),
        client_msg_id: s(id),
        body: s("hi"),
        reply_to: None,
        max_body_bytes: MAX_BODY,
    };
    let read = |who: &str, seq: u64| CommandKind::Read { user_id: s(who), conversation_id: s("g:1"), seq };
    let mute = |actor: &str, user: &str, until_ms: u64| CommandKind::Mute {
        actor: s(actor),
        group_id: 1,
        user_id: s(user),
        until_ms,
    };
    let kick = |actor: &str, user: &str| CommandKind::Kick { actor: s(actor), group_id: 1, user_id: s(user) };
    let script = vec![
        CommandKind::CreateGroup {
            owner: s("ann"),
            name: s("team"),
            members: vec![s("bob"), s("cat")],
            max_members: 4,
        },
        send("ann", "a1"),
        CommandKind::AddMembers { actor: s("ann"), group_id: 1, user_ids: vec![s("dan")], max_members: 4 },
        read("dan", 9),
        send("bob", "b1"),
        read("dan", 9),
        CommandKind::AddMembers { actor: s("ann"), group_id: 1, user_ids: vec![s("eve")], max_members: 4 },
        CommandKind::SetRole { actor: s("ann"), group_id: 1, user_id: s("bob"), role: Role::Admin },
        kick("bob", "cat"),
        kick("bob", "ann"),
        kick("bob", "bob"),
        kick("dan", "bob"),
        mute("bob", "dan", T0 + 1_000_000_000),
        send("dan", "d1"),
        CommandKind::UpdateGroup { actor: s("bob"), group_id: 1, name: None, mute_all: Some(true) },
        mute("ann", "dan", 0),
        send("dan", "d2"),
        send("bob", "b2"),
        send("ann", "a1"),
        CommandKind::Transfer { actor: s("ann"), group_id: 1, to: s("dan") },
        CommandKind::Leave { user_id: s("ann"), group_id: 1 },
        CommandKind::Leave { user_id: s("dan"), group_id: 1 },
        CommandKind::Dismiss { actor: s("bob"), group_id: 1 },
        CommandKind::Dismiss { actor: s("dan"), group_id: 1 },
        send("bob", "b3"),
        CommandKind::AddMembers { actor: s("dan"), group_id: 1, user_ids: vec![s("ann")], max_members: 4 },
        read("bob", 1),
    ];
    let mut h = Harness::new().unwrap();
    for (i, kind) in script.into_iter().enumerate() {
        h.step(i, kind).unwrap();
    }
    h.finish().unwrap();
    // Spot checks of the model itself.
    let bob: Vec<_> = h.store.sync("bob", 0, 1000).unwrap().entries.iter().map(|e| e.event.type_name()).collect();
    assert_eq!(bob.last(), Some(&"group_dismissed"));
    assert!(h.store.groups_of("bob").unwrap().is_empty());
}
