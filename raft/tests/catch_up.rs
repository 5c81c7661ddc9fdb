//! Catching a node up to a journal-pointer snapshot, against in-memory journal sources: only
//! what it lacks is pulled, every page is chain-checked before it is applied (a flipped byte
//! on the wire is refused), a diverged journal fail-stops, and an install interrupted by a
//! crash resumes from the node's new head and converges on the same projections.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, LogId, Membership, StoredMembership};
use parley_raft::snapshot::{catch_up, read_page, CatchUpError, JournalSource, Manifest};
use parley_raft::types::SnapshotMeta;
use parley_raft::wire::{Page, PageRequest};
use parley_raft::{NoopListener, StateMachine};
use parley_storage::{Command, CommandKind, Store};

fn cmd(ts: u64, kind: CommandKind) -> Command {
    Command { ts, kind }
}

/// The commands of a small chat history: two friends and `messages` direct messages.
fn history(messages: usize) -> Vec<Command> {
    let mut out = vec![
        cmd(1, CommandKind::Register { user_id: "alice".into(), display_name: "A".into(), password_hash: "h".into() }),
        cmd(2, CommandKind::Register { user_id: "bob".into(), display_name: "B".into(), password_hash: "h".into() }),
        cmd(3, CommandKind::FriendRequest { from: "alice".into(), to: "bob".into(), note: String::new() }),
        cmd(4, CommandKind::AcceptFriend { user_id: "bob".into(), from: "alice".into() }),
    ];
    for i in 0..messages {
        let sender = if i % 3 == 0 { "bob" } else { "alice" };
        out.push(cmd(
            10 + i as u64,
            CommandKind::Send {
                sender: sender.into(),
                conversation_id: "d:alice:bob".into(),
                client_msg_id: format!("m{i}"),
                body: format!("message number {i}, with some text to make it a realistic size"),
                reply_to: None,
                max_body_bytes: 16_384,
            },
        ));
    }
    out
}

fn temp_store() -> (tempfile::TempDir, sled::Db, Store) {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(dir.path()).open().unwrap();
    let store = Store::open(db.clone()).unwrap();
    (dir, db, store)
}

/// Runs `cmds` through decide + apply, committing every 500.
fn run(store: &Store, cmds: &[Command]) {
    for chunk in cmds.chunks(500) {
        let mut tx = store.begin();
        for c in chunk {
            let outcome = parley_storage::execute(&mut tx, c).unwrap();
            assert!(outcome.result.is_ok(), "{c:?}: {outcome:?}");
        }
        tx.commit().unwrap();
    }
}

fn manifest_of(store: &Store) -> Manifest {
    let head = store.head().unwrap();
    Manifest { head_cursor: head.cursor, head_hash: head.hash, source: None, requests: Default::default() }
}

/// Serves pages of a store, with knobs for faults; counts the pages it served.
struct Source {
    store: Store,
    served: AtomicUsize,
    /// Requests seen, as `from` cursors.
    froms: Mutex<Vec<u64>>,
    /// Flip one byte of every page's middle record.
    flip: bool,
    /// Fail the request with this (0-based) number, once.
    fail_at: Option<usize>,
}

impl Source {
    fn new(store: Store) -> Source {
        Source { store, served: AtomicUsize::new(0), froms: Mutex::new(Vec::new()), flip: false, fail_at: None }
    }
}

impl JournalSource for Source {
    fn page<'a>(
        &'a self,
        _addr: &'a str,
        req: PageRequest,
    ) -> Pin<Box<dyn Future<Output = Result<Page, String>> + Send + 'a>> {
        Box::pin(async move {
            let n = self.served.fetch_add(1, Ordering::SeqCst);
            self.froms.lock().unwrap().push(req.from);
            if self.fail_at == Some(n) {
                return Err("connection reset".into());
            }
            let mut page = read_page(&self.store, req).map_err(|e| e.to_string())?;
            if self.flip && !page.entries.is_empty() {
                let mid = page.entries.len() / 2;
                let rec = &mut page.entries[mid].record;
                let at = rec.len() / 2;
                rec[at] ^= 0x01;
            }
            Ok(page)
        })
    }
}

/// Several sources by address.
struct Sources(Vec<(String, Arc<Source>)>);

impl JournalSource for Sources {
    fn page<'a>(
        &'a self,
        addr: &'a str,
        req: PageRequest,
    ) -> Pin<Box<dyn Future<Output = Result<Page, String>> + Send + 'a>> {
        match self.0.iter().find(|(a, _)| a == addr) {
            Some((_, s)) => s.page(addr, req),
            None => Box::pin(async { Err("unknown source".to_string()) }),
        }
    }
}

#[tokio::test]
async fn a_lagging_node_pulls_only_what_it_lacks_and_reaches_the_same_state() {
    let cmds = history(6000);
    let (_d1, _db1, leader) = temp_store();
    run(&leader, &cmds);
    let (_d2, _db2, follower) = temp_store();
    run(&follower, &cmds[..1500]);
    let start = follower.head().unwrap().cursor;

    let source = Source::new(leader.clone());
    let target = manifest_of(&leader);
    let pulled = catch_up(&follower, &target, &["leader".into()], &source).await.unwrap();

    assert_eq!(pulled, target.head_cursor - start, "exactly the missing entries are applied");
    assert_eq!(source.froms.lock().unwrap()[0], start, "the first page starts at the follower's own head");
    assert_eq!(follower.head().unwrap(), leader.head().unwrap());
    assert_eq!(follower.projection_digest().unwrap(), leader.projection_digest().unwrap());
}

#[tokio::test]
async fn an_empty_node_starts_from_cursor_one() {
    let (_d1, _db1, leader) = temp_store();
    run(&leader, &history(3000));
    let (_d2, _db2, fresh) = temp_store();
    let source = Source::new(leader.clone());
    catch_up(&fresh, &manifest_of(&leader), &["leader".into()], &source).await.unwrap();
    assert_eq!(source.froms.lock().unwrap()[0], 1);
    assert_eq!(fresh.projection_digest().unwrap(), leader.projection_digest().unwrap());
}

#[tokio::test]
async fn a_flipped_byte_on_the_wire_is_refused_and_the_next_source_is_used() {
    let (_d1, _db1, leader) = temp_store();
    run(&leader, &history(3000));
    let target = manifest_of(&leader);

    // Only a tampering source: nothing it sends is ever applied.
    let (_d2, _db2, follower) = temp_store();
    let bad = Arc::new(Source { flip: true, ..Source::new(leader.clone()) });
    let only_bad = Sources(vec![("bad".into(), bad.clone())]);
    let bad_only: [String; 1] = ["bad".into()];
    let stuck = tokio::time::timeout(Duration::from_millis(700), catch_up(&follower, &target, &bad_only, &only_bad));
    assert!(stuck.await.is_err(), "a node fed only tampered pages must not finish");
    assert!(bad.served.load(Ordering::SeqCst) >= 2, "the pull was retried");
    assert_eq!(follower.head().unwrap().cursor, 0, "no entry of a tampered page was applied");

    // With an honest source beside it, the follower converges.
    let good = Arc::new(Source::new(leader.clone()));
    let both = Sources(vec![("bad".into(), bad), ("good".into(), good.clone())]);
    catch_up(&follower, &target, &["bad".into(), "good".into()], &both).await.unwrap();
    assert!(good.served.load(Ordering::SeqCst) > 0);
    assert_eq!(follower.head().unwrap(), leader.head().unwrap());
    assert_eq!(follower.projection_digest().unwrap(), leader.projection_digest().unwrap());
}

#[tokio::test]
async fn a_diverged_journal_fail_stops_and_is_left_untouched() {
    let cmds = history(3000);
    let (_d1, _db1, leader) = temp_store();
    run(&leader, &cmds);
    // Same history but one message with another body: same cursors, other hashes from there.
    let mut other = cmds[..1000].to_vec();
    if let CommandKind::Send { body, .. } = &mut other[900].kind {
        *body = "tampered".into();
    }
    let (_d2, _db2, follower) = temp_store();
    run(&follower, &other);
    let before = follower.head().unwrap();

    let source = Source::new(leader.clone());
    let err = catch_up(&follower, &manifest_of(&leader), &["leader".into()], &source).await.unwrap_err();
    assert!(matches!(err, CatchUpError::Diverged { cursor } if cursor == before.cursor), "{err}");
    assert!(err.to_string().contains("remove its data dir"), "the error says what to do: {err}");
    assert_eq!(follower.head().unwrap(), before, "nothing was applied on top of a diverged journal");
}

#[tokio::test]
async fn a_failed_page_resumes_from_the_new_head() {
    let (_d1, _db1, leader) = temp_store();
    run(&leader, &history(6000));
    let (_d2, _db2, follower) = temp_store();
    let source = Source { fail_at: Some(2), ..Source::new(leader.clone()) };
    catch_up(&follower, &manifest_of(&leader), &["leader".into()], &source).await.unwrap();
    let froms = source.froms.lock().unwrap().clone();
    // Pages 0 and 1 applied; request 2 (from head + 1) failed; the retry starts at the head
    // reached, re-checking the link there: nothing applied is pulled again.
    assert_eq!(froms[3] + 1, froms[2], "{froms:?}");
    assert!(froms[2] > 1);
    assert_eq!(follower.projection_digest().unwrap(), leader.projection_digest().unwrap());
}

fn snapshot_meta(index: u64) -> SnapshotMeta {
    let log_id = LogId::new(CommittedLeaderId::new(3, 1), index);
    let membership = Membership::new(vec![[1u64, 2, 3].into()], None);
    SnapshotMeta {
        last_log_id: Some(log_id),
        last_membership: StoredMembership::new(Some(log_id), membership),
        snapshot_id: format!("test-{index}"),
    }
}

/// A source that serves `pages` pages, then hangs (the node is then killed mid-install).
struct Hangs {
    inner: Source,
    pages: usize,
}

impl JournalSource for Hangs {
    fn page<'a>(
        &'a self,
        addr: &'a str,
        req: PageRequest,
    ) -> Pin<Box<dyn Future<Output = Result<Page, String>> + Send + 'a>> {
        if self.inner.served.load(Ordering::SeqCst) >= self.pages {
            return Box::pin(std::future::pending());
        }
        self.inner.page(addr, req)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_install_interrupted_by_a_crash_resumes_at_start_and_never_serves_half_a_state() {
    let (_d1, _db1, leader) = temp_store();
    run(&leader, &history(8000));
    let meta = snapshot_meta(77);
    let manifest = Manifest { source: Some("leader".into()), ..manifest_of(&leader) };

    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let store = Store::open(db.clone()).unwrap();
        let mut sm = StateMachine::open(db.clone(), store.clone(), Arc::new(NoopListener)).unwrap();
        let hangs = Arc::new(Hangs { inner: Source::new(leader.clone()), pages: 2 });
        sm.set_journal_source(9, hangs.clone());
        let probe = sm.clone();
        let (m, b) = (meta.clone(), Box::new(manifest.clone()));
        let install = tokio::spawn(async move { sm.install_snapshot(&m, b).await });
        // Wait until two pages are in, then "crash": abort the install and drop everything.
        tokio::time::timeout(Duration::from_secs(20), async {
            while store.head().unwrap().cursor < 4096 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap();
        // Let the commit's blocking task return its handle before the "crash".
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(probe.is_installing(), "mid-install the node says so (the API refuses reads)");
        install.abort();
        let _ = install.await;
        db.flush().unwrap();
    }

    // The aborted install's last blocking commit may still hold the db's file lock for a
    // moment on a loaded machine (a real crash releases it at once): retry the open briefly.
    let reopened = Instant::now();
    let db = loop {
        match sled::Config::new().path(dir.path()).open() {
            Ok(db) => break db,
            Err(_) if reopened.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("reopen after the crash: {e}"),
        }
    };
    let store = Store::open(db.clone()).unwrap();
    let mut sm = StateMachine::open(db, store.clone(), Arc::new(NoopListener)).unwrap();
    assert!(sm.is_installing(), "the marker survives the crash");
    let head = store.head().unwrap().cursor;
    assert!(head > 0 && head < manifest.head_cursor, "the crash left a partial pull: head {head}");
    // last-applied already names the snapshot, so openraft never re-applies what the pull covers.
    assert_eq!(sm.applied_state().await.unwrap().0, meta.last_log_id);

    let source = Arc::new(Source::new(leader.clone()));
    sm.set_journal_source(9, source.clone());
    sm.resume_install().await.unwrap();
    assert!(!sm.is_installing());
    assert_eq!(source.froms.lock().unwrap()[0], head, "the resumed pull starts at the head the crash left");
    assert_eq!(store.head().unwrap(), leader.head().unwrap());
    assert_eq!(store.projection_digest().unwrap(), leader.projection_digest().unwrap());
    let current = sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta.last_log_id, meta.last_log_id);
    assert_eq!(current.snapshot.head_cursor, manifest.head_cursor);
}

#[tokio::test]
async fn a_whole_state_snapshot_from_an_older_parley_is_replaced_by_a_manifest() {
    let (_d, db, store) = temp_store();
    run(&store, &history(100));
    let meta = snapshot_meta(40);
    let mut tx = store.begin();
    tx.put_meta(parley_raft::state_machine::META_LAST_APPLIED, framed_json(&meta.last_log_id));
    tx.put_meta(parley_raft::state_machine::META_MEMBERSHIP, framed_json(&meta.last_membership));
    tx.commit().unwrap();
    // What a parley before journal-pointer snapshots left: JSON meta and a whole-state blob.
    let snapshots = db.open_tree(parley_raft::state_machine::SNAPSHOT_TREE).unwrap();
    snapshots.insert("meta", parley_raft::frame::seal(&serde_json::to_vec(&meta).unwrap())).unwrap();
    snapshots.insert("data", parley_raft::frame::seal(&vec![7u8; 100_000])).unwrap();

    let mut sm = StateMachine::open(db.clone(), store.clone(), Arc::new(NoopListener)).unwrap();
    let current = sm.get_current_snapshot().await.unwrap().expect("a manifest replaces the blob");
    assert_eq!(current.meta.last_log_id, meta.last_log_id);
    assert_eq!(current.snapshot.head_cursor, store.head().unwrap().cursor);
    assert_eq!(current.snapshot.head_hash, store.head().unwrap().hash);
    assert!(snapshots.get("data").unwrap().is_none() && snapshots.get("meta").unwrap().is_none());
}

/// A raft meta value as the state machine stores it: framed JSON.
fn framed_json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    parley_raft::frame::seal(&serde_json::to_vec(v).unwrap())
}

/// The request table travels with a snapshot: a node that catches up by snapshot answers a
/// repeated request id the way the nodes that applied everything do (first outcome, nothing
/// applied), so their journals never diverge on a retry.
#[tokio::test]
async fn an_installed_snapshot_carries_the_request_table() {
    let (_d1, _db1, leader) = temp_store();
    let id = parley_storage::RequestId { node: 2, nonce: [5; 16] };
    let register =
        cmd(1, CommandKind::Register { user_id: "zoe".into(), display_name: "z".into(), password_hash: "x".into() });
    let mut tx = leader.begin();
    let first = parley_storage::execute_once(&mut tx, Some(&id), &register).unwrap();
    tx.commit().unwrap();
    run(&leader, &history(50));
    let requests = parley_storage::requests::export(&leader).unwrap();
    assert_eq!(requests.records.len(), 1);
    let manifest = Manifest { source: Some("leader".into()), requests, ..manifest_of(&leader) };

    let (_d2, db, store) = temp_store();
    let mut sm = StateMachine::open(db, store.clone(), Arc::new(NoopListener)).unwrap();
    sm.set_journal_source(9, Arc::new(Source::new(leader.clone())));
    sm.install_snapshot(&snapshot_meta(60), Box::new(manifest.clone())).await.unwrap();
    assert_eq!(parley_storage::requests::export(&store).unwrap(), manifest.requests);

    // The repeat arrives in the next log entry.
    let head = store.head().unwrap();
    let entry = openraft::Entry::<parley_raft::TypeConfig> {
        log_id: LogId::new(CommittedLeaderId::new(3, 1), 61),
        payload: openraft::EntryPayload::Normal(parley_storage::CommandBatch {
            commands: vec![register],
            request_ids: vec![id],
        }),
    };
    let answers = sm.apply(vec![entry]).await.unwrap();
    assert_eq!(answers[0].outcomes, vec![first], "the first outcome, as on the leader");
    assert_eq!(store.head().unwrap(), head, "nothing applied");
}

/// A snapshot record written by a parley of wire v2 (a manifest without a request table) is
/// still read at start.
#[tokio::test]
async fn a_snapshot_record_from_wire_v2_still_reads() {
    let (_d, db, store) = temp_store();
    run(&store, &history(10));
    let head = store.head().unwrap();
    let meta = snapshot_meta(12);
    let old = parley_raft::snapshot::ManifestV2 { head_cursor: head.cursor, head_hash: head.hash, source: None };
    let mut body = vec![2u8];
    body.extend(postcard_v2(&(&meta, &old)));
    let snapshots = db.open_tree(parley_raft::state_machine::SNAPSHOT_TREE).unwrap();
    snapshots.insert("current", parley_raft::frame::seal(&body)).unwrap();
    let mut sm = StateMachine::open(db, store.clone(), Arc::new(NoopListener)).unwrap();
    let current = sm.get_current_snapshot().await.unwrap().expect("the v2 record");
    assert_eq!(current.meta.last_log_id, meta.last_log_id);
    assert_eq!(current.snapshot.head_cursor, head.cursor);
    assert!(current.snapshot.requests.records.is_empty());
}

/// postcard bytes of `v` (what wire v2 put after its version byte).
fn postcard_v2<T: serde::Serialize>(v: &T) -> Vec<u8> {
    // wire::encode writes the current version byte, then the same postcard bytes.
    parley_raft::wire::encode(v).unwrap()[1..].to_vec()
}
