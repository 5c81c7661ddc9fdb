//! A single-node RaftNode over a real sled db: write, restart on the same directory, resume.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use parley_raft::{envelope, ApplyListener, AuthError, NodeConfig, NodeDbs, RaftNode};
use parley_storage::{AppliedEntry, Command, CommandKind, Rejection, Store};

/// Records what the state machine reported.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<(Vec<u64>, u64)>>,
}

impl ApplyListener for Recorder {
    fn applied(&self, entries: &[AppliedEntry], applied_cursor: u64) {
        let cursors = entries.iter().map(|e| e.cursor).collect();
        self.seen.lock().unwrap().push((cursors, applied_cursor));
    }
}

fn config() -> NodeConfig {
    NodeConfig {
        node_id: 1,
        addr: "127.0.0.1:1".into(),
        peers: BTreeMap::new(),
        cluster_secret: Vec::new(),
        snapshot_logs_since_last: 100,
        timing: Default::default(),
        peer_client: None,
        peer_https: false,
    }
}

fn register(user_id: &str) -> Command {
    Command {
        ts: 1_700_000_000_000,
        kind: CommandKind::Register {
            user_id: user_id.into(),
            display_name: "Someone".into(),
            password_hash: "$argon2id$v=19$stub".into(),
        },
    }
}

/// Opens the db, retrying while the previous instance's last handles are being dropped.
async fn open_db(path: &Path) -> sled::Db {
    let mut last_err = None;
    for _ in 0..100 {
        match sled::Config::new().path(path).open() {
            Ok(db) => return db,
            Err(e) => last_err = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("could not reopen sled db: {last_err:?}");
}

async fn start(path: &Path, listener: Arc<Recorder>) -> (RaftNode, Store) {
    let db = open_db(path).await;
    let store = Store::open(db.clone()).unwrap();
    let node =
        RaftNode::start(config(), NodeDbs { state: db.clone(), log: db }, store.clone(), listener).await.unwrap();
    node.raft().wait(Some(Duration::from_secs(10))).current_leader(1, "single node elects itself").await.unwrap();
    (node, store)
}

/// Waits until the node's metrics show everything in its log applied; returns last applied.
async fn caught_up(node: &RaftNode) -> Option<parley_raft::types::LogId> {
    let metrics = node
        .raft()
        .wait(Some(Duration::from_secs(10)))
        .metrics(|m| m.last_applied.is_some() && m.last_applied.map(|l| l.index) == m.last_log_index, "caught up")
        .await
        .unwrap();
    metrics.last_applied
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_writes_restarts_and_resumes() {
    let dir = tempfile::tempdir().unwrap();

    let before = {
        let recorder = Arc::new(Recorder::default());
        let (node, store) = start(dir.path(), recorder.clone()).await;
        assert!(node.is_initialized().await.unwrap());

        let outcome = node.write(register("alice")).await.unwrap();
        assert!(outcome.result.is_ok(), "register refused: {outcome:?}");
        assert_eq!(outcome.cursor, 1);
        assert_eq!(store.applied_cursor(), 1);
        let seen = recorder.seen.lock().unwrap().clone();
        assert!(seen.contains(&(vec![1], 1)), "listener did not hear of cursor 1: {seen:?}");

        let last_applied = caught_up(&node).await;
        node.shutdown().await.unwrap();
        last_applied
    };

    let recorder = Arc::new(Recorder::default());
    let (node, store) = start(dir.path(), recorder.clone()).await;
    assert!(node.is_initialized().await.unwrap(), "restarted node must reuse its membership");
    assert_eq!(store.applied_cursor(), 1, "journal survives the restart");
    let after = caught_up(&node).await;
    assert!(after >= before, "applied state went back: {before:?} -> {after:?}");

    // The same state: alice exists, a new user lands at the next cursor.
    let again = node.write(register("alice")).await.unwrap();
    assert_eq!(again.result, Err(Rejection::UserExists));
    let bob = node.write(register("bob")).await.unwrap();
    assert!(bob.result.is_ok());
    assert_eq!(bob.cursor, 2);
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_bodies_are_authenticated_with_the_cluster_secret() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path()).await;
    let store = Store::open(db.clone()).unwrap();
    let cfg = NodeConfig { cluster_secret: b"s3cret".to_vec(), ..config() };
    let node = RaftNode::start(cfg, NodeDbs { state: db.clone(), log: db }, store, Arc::new(Recorder::default()))
        .await
        .unwrap();
    let body = br#"{"vote":{}}"#;
    let path = "/raft/vote";
    let guard = node.envelope_guard();
    let check = |s: &envelope::Signed| guard.check(&s.claims, &s.mac, "POST", path, body, envelope::now_ms());
    let good = envelope::sign(b"s3cret", 2, Some(1), "POST", path, body);
    assert_eq!(check(&good), Ok(()));
    assert_eq!(check(&good), Err(AuthError::Replayed));
    assert_eq!(check(&envelope::sign(b"wrong", 2, Some(1), "POST", path, body)), Err(AuthError::BadSignature));
    assert!(node.handle_vote(b"not json").await.is_err());
    node.shutdown().await.unwrap();
}

/// The batcher's outcome-count mismatch (and a follower's retried forward) proposes a command
/// again that may already have committed. Through raft, under the same request id, the second
/// proposal is a second log entry but applies nothing: it answers the first outcome, and the
/// request table survives a restart (it is in the state db, committed with the entry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_proposed_twice_under_one_request_id_applies_once() {
    let dir = tempfile::tempdir().unwrap();
    let id = parley_storage::RequestId { node: 1, nonce: [42; 16] };
    let first = {
        let (node, store) = start(dir.path(), Arc::new(Recorder::default())).await;
        let first = node.write_request(id, register("alice")).await.unwrap();
        assert!(first.result.is_ok(), "{first:?}");
        let again = node.write_request(id, register("alice")).await.unwrap();
        assert_eq!(again, first, "the re-proposal answers the first outcome (not `user exists`)");
        assert_eq!(store.applied_cursor(), 1, "nothing appended");
        caught_up(&node).await;
        node.shutdown().await.unwrap();
        first
    };
    let (node, store) = start(dir.path(), Arc::new(Recorder::default())).await;
    caught_up(&node).await;
    assert_eq!(node.write_request(id, register("alice")).await.unwrap(), first, "remembered across a restart");
    assert_eq!(store.applied_cursor(), 1);
    // Another request id is another request.
    let other = node.write(register("alice")).await.unwrap();
    assert_eq!(other.result, Err(Rejection::UserExists));
    node.shutdown().await.unwrap();
}
