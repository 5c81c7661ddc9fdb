//! Three RaftNodes talking over real HTTP on 127.0.0.1: replication, forwarding, signatures, and
//! a learner brought up to date by a snapshot.
//!
//! The raft crate has no HTTP server (the api crate mounts the routes), so this test serves the
//! three `/raft/*` routes with a minimal HTTP/1.1 loop over tokio, just enough for reqwest.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parley_raft::types::NodeId;
use parley_raft::{envelope, Claims, NodeConfig, NodeDbs, NoopListener, RaftNode, WriteError};
use parley_storage::{Command, CommandKind, Store};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const SECRET: &[u8] = b"cluster-test-secret";
const WAIT: Option<Duration> = Some(Duration::from_secs(20));
/// Snapshot manifests answered by any test server.
static SNAPSHOT_CHUNKS: AtomicUsize = AtomicUsize::new(0);

struct Member {
    node: Arc<RaftNode>,
    store: Store,
    server: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

/// N nodes with their HTTP servers; servers are stopped on drop.
struct Cluster {
    members: BTreeMap<NodeId, Member>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for member in self.members.values() {
            member.server.abort();
        }
    }
}

impl Cluster {
    fn node(&self, id: NodeId) -> &RaftNode {
        &self.members[&id].node
    }

    async fn leader(&self) -> NodeId {
        let any = self.members.values().next().unwrap();
        let metrics =
            any.node.raft().wait(WAIT).metrics(|m| m.current_leader.is_some(), "a leader is elected").await.unwrap();
        metrics.current_leader.unwrap()
    }
}

async fn start_member(id: NodeId, listener: TcpListener, addr: String, peers: BTreeMap<NodeId, String>) -> Member {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(dir.path()).open().unwrap();
    let store = Store::open(db.clone()).unwrap();
    let cfg = NodeConfig {
        node_id: id,
        addr,
        peers,
        cluster_secret: SECRET.to_vec(),
        snapshot_logs_since_last: 5,
        timing: Default::default(),
        peer_client: None,
        peer_https: false,
    };
    let node = Arc::new(
        RaftNode::start(cfg, NodeDbs { state: db.clone(), log: db }, store.clone(), Arc::new(NoopListener))
            .await
            .unwrap(),
    );
    let server = tokio::spawn(serve(listener, node.clone()));
    Member { node, store, server, _dir: dir }
}

async fn bind() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    (listener, addr)
}

async fn serve(listener: TcpListener, node: Arc<RaftNode>) {
    while let Ok((socket, _)) = listener.accept().await {
        let node = node.clone();
        tokio::spawn(async move {
            let _ = connection(socket, node).await;
        });
    }
}

/// One keep-alive HTTP/1.1 connection: POST with Content-Length bodies only.
async fn connection(socket: TcpStream, node: Arc<RaftNode>) -> std::io::Result<()> {
    let mut reader = BufReader::new(socket);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).await? == 0 {
            return Ok(());
        }
        let path = request_line.split_whitespace().nth(1).unwrap_or_default().to_string();
        let mut length = 0usize;
        let mut headers: Vec<(String, String)> = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).await?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
                headers.push((name.trim().to_string(), value.trim().to_string()));
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await?;

        let header = |name: &str| headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
        let authentic = match Claims::from_headers(header) {
            Ok((claims, mac)) => {
                node.envelope_guard().check(&claims, mac, "POST", &path, &body, envelope::now_ms()).is_ok()
            }
            Err(_) => false,
        };
        let (status, answer) = if !authentic {
            ("401 Unauthorized", Vec::new())
        } else {
            let handled = match path.as_str() {
                "/raft/append" => node.handle_append(&body).await,
                "/raft/vote" => node.handle_vote(&body).await,
                "/raft/snapshot" => {
                    SNAPSHOT_CHUNKS.fetch_add(1, Ordering::SeqCst);
                    node.handle_snapshot(&body).await
                }
                "/raft/journal" => node.handle_journal(&body).await,
                _ => Ok(Vec::new()),
            };
            match handled {
                Ok(answer) => ("200 OK", answer),
                Err(e) => ("400 Bad Request", e.to_string().into_bytes()),
            }
        };
        let head =
            format!("HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n", answer.len());
        let socket = reader.get_mut();
        socket.write_all(head.as_bytes()).await?;
        socket.write_all(&answer).await?;
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

async fn three_nodes() -> Cluster {
    let mut listeners = BTreeMap::new();
    for id in 1..=3u64 {
        listeners.insert(id, bind().await);
    }
    let peers: BTreeMap<NodeId, String> = listeners.iter().map(|(id, (_, addr))| (*id, addr.clone())).collect();
    let mut members = BTreeMap::new();
    for (id, (listener, addr)) in listeners {
        members.insert(id, start_member(id, listener, addr, peers.clone()).await);
    }
    Cluster { members }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_forward_and_catch_up_a_learner_by_snapshot() {
    let mut cluster = three_nodes().await;
    let leader = cluster.leader().await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();

    // Writes on the leader are applied everywhere.
    let first = cluster.node(leader).write(register("user_000")).await.unwrap();
    assert!(first.result.is_ok(), "{first:?}");
    assert_eq!(first.cursor, 1);

    // A follower names the leader instead of writing.
    match cluster.node(follower).write(register("user_x")).await {
        Err(WriteError::ForwardToLeader { leader_id, leader_addr }) => {
            assert_eq!(leader_id, Some(leader));
            assert_eq!(leader_addr.as_deref(), Some(cluster.node(leader).addr()));
        }
        other => panic!("expected ForwardToLeader, got {other:?}"),
    }

    for i in 1..20 {
        let outcome = cluster.node(leader).write(register(&format!("user_{i:03}"))).await.unwrap();
        assert_eq!(outcome.cursor, i + 1);
    }
    let last_index = cluster.node(leader).metrics().borrow().last_log_index;
    for member in cluster.members.values() {
        member.node.raft().wait(WAIT).applied_index_at_least(last_index, "replicated").await.unwrap();
        assert_eq!(member.store.applied_cursor(), 20);
    }

    // Snapshot, then purge the leader's log so a new learner can only catch up by snapshot.
    let leader_raft = cluster.node(leader).raft().clone();
    leader_raft.trigger().snapshot().await.unwrap();
    leader_raft
        .wait(WAIT)
        .metrics(|m| m.snapshot.is_some() && m.snapshot == m.last_applied, "snapshot built")
        .await
        .unwrap();
    leader_raft.trigger().purge_log(last_index.unwrap()).await.unwrap();
    leader_raft.wait(WAIT).metrics(|m| m.purged.map(|p| p.index) == last_index, "log purged").await.unwrap();

    // The new node is pristine and not the lowest id among its peers: it waits to be contacted.
    let (listener, addr) = bind().await;
    let mut peers: BTreeMap<NodeId, String> =
        cluster.members.iter().map(|(id, m)| (*id, m.node.addr().to_string())).collect();
    peers.insert(5, addr.clone());
    let learner = start_member(5, listener, addr.clone(), peers).await;
    cluster.members.insert(5, learner);

    cluster.node(leader).add_learner(5, &addr).await.unwrap();
    let applied = cluster.node(leader).metrics().borrow().last_applied.map(|l| l.index);
    let learner_node = cluster.node(5).raft().clone();
    learner_node.wait(WAIT).applied_index_at_least(applied, "learner caught up").await.unwrap();
    let snapshot_meta =
        learner_node.wait(WAIT).metrics(|m| m.snapshot.is_some(), "learner installed a snapshot").await.unwrap();
    assert!(snapshot_meta.snapshot.is_some());
    assert!(SNAPSHOT_CHUNKS.load(Ordering::SeqCst) > 0, "the learner was not sent a snapshot");
    assert_eq!(cluster.members[&5].store.applied_cursor(), 20);

    // Promote the learner and keep writing through the new membership.
    let voters: BTreeSet<NodeId> = [1, 2, 3, 5].into();
    cluster.node(leader).change_membership(voters, false).await.unwrap();
    let outcome = cluster.node(leader).write(register("after_join")).await.unwrap();
    assert_eq!(outcome.cursor, 21);
    let last_index = cluster.node(leader).metrics().borrow().last_log_index;
    cluster.node(5).raft().wait(WAIT).applied_index_at_least(last_index, "learner follows").await.unwrap();
    assert_eq!(cluster.members[&5].store.applied_cursor(), 21);

    for member in cluster.members.values() {
        member.node.shutdown().await.unwrap();
    }
}
