//! One running raft node: configuration, bootstrap, writes, membership and inbound RPCs.
//!
//! Owns the lifecycle of the openraft instance over the node's two `sled::Db`s ([`NodeDbs`]):
//! - **start**: build openraft's `Config`, open the log store and state machine, create the
//!   `Raft`, and bootstrap. A node initialises the cluster only if its storage is pristine (no
//!   vote, no log, nothing applied): a single node (no peers) with just itself; with peers, only
//!   the lowest node id, with every member. A restarted node reuses its state.
//! - **join**: the same without any bootstrap: a new node waits to be added (as a learner) by
//!   the cluster's leader, and catches up from its log or a snapshot.
//! - **write**: `client_write`; on a follower the caller gets the leader to forward to.
//! - **inbound RPCs**: binary bodies in, binary bodies out ([`crate::wire`]), for the api crate
//!   to mount on routes; [`RaftNode::envelope_guard`] checks the signed envelope (sender,
//!   addressee, time, nonce, method, path, body) and refuses replays. `/raft/journal` serves pages of this node's journal to nodes catching up.
//! - **shutdown**: stop raft, then flush both dbs.
//!
//! Invariant: a damaged or wiped node must be removed from the membership and re-added as a
//! learner, never re-initialised into a running cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use openraft::error::{CheckIsLeaderError, ClientWriteError, ForwardToLeader, InitializeError};
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{BasicNode, ChangeMembers, SnapshotPolicy};
use parley_storage::{Command, CommandBatch, Outcome, RequestId, Store};
use tokio::sync::{mpsc, oneshot, watch};

use crate::envelope::{self, ReplayGuard};
use crate::error::{InboundError, RaftError, WriteError};
use crate::log_store::LogStore;
use crate::network::{self, Network};
use crate::state_machine::{ApplyListener, StateMachine};
use crate::types::{AppendEntriesRequest, LogId, Node, NodeId, Raft, RaftMetrics, Snapshot, VoteRequest};
use crate::wire::{self, PageRequest, SnapshotRequest};

/// Heartbeat period by default; also the timeout of one append-entries RPC.
pub const HEARTBEAT_MS: u64 = 100;
/// Election timeouts are drawn from `[min, max)`: by default 3 and 6 heartbeats.
pub const ELECTION_TIMEOUT_MIN_MS: u64 = 3 * HEARTBEAT_MS;
pub const ELECTION_TIMEOUT_MAX_MS: u64 = 6 * HEARTBEAT_MS;

/// Raft's clock. openraft uses the heartbeat period as the timeout of every append-entries
/// RPC, so it must exceed the slowest round trip between members: with the default 100 ms, a
/// link of 50 ms ± 50 ms each way times out most appends and the cluster never keeps a leader
/// (measured by the fault suite, docs/RELIABILITY.md). [`RaftTiming::with_heartbeat`] scales
/// the election timeouts with it (3 to 6 heartbeats), as etcd advises for its own pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftTiming {
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
}

impl Default for RaftTiming {
    fn default() -> Self {
        RaftTiming::with_heartbeat(HEARTBEAT_MS)
    }
}

impl RaftTiming {
    pub fn with_heartbeat(heartbeat_ms: u64) -> Self {
        RaftTiming { heartbeat_ms, election_min_ms: 3 * heartbeat_ms, election_max_ms: 6 * heartbeat_ms }
    }
}
/// Log entries kept behind a snapshot, so slightly lagging followers catch up from the log.
/// Never more than one snapshot interval (see [`NodeConfig::snapshot_logs_since_last`]), so the
/// log stays bounded by about two intervals and a small interval really exercises snapshots.
pub const LOGS_KEPT_BEHIND_SNAPSHOT: u64 = 1000;
/// Most entries in one append-entries RPC (and so in one apply batch on a follower).
pub const MAX_PAYLOAD_ENTRIES: u64 = 512;
/// The largest `/raft/append` body a node reads: room for 64 full batches (an entry is one
/// batch, about [`MAX_BATCH_BYTES`] at most). An append of [`MAX_PAYLOAD_ENTRIES`] entries can
/// be larger (a follower far behind, large batches): the sender then sends the prefix that
/// fits and reports it as a partial success ([`crate::network`]), so the bound never stalls
/// replication, and a node never buffers more than this for a request it cannot yet verify.
pub const MAX_APPEND_BODY_BYTES: u64 = 64 * MAX_BATCH_BYTES as u64;

/// How to run this node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub node_id: NodeId,
    /// This node's HTTP address as peers reach it (`http://host:port` or `host:port`).
    pub addr: String,
    /// Every cluster member's id and address (this node may be listed); empty = single node.
    pub peers: BTreeMap<NodeId, String>,
    /// Shared by all members; signs every raft RPC. Required when `peers` is not empty.
    pub cluster_secret: Vec<u8>,
    /// Build a snapshot after this many applied entries since the last one.
    pub snapshot_logs_since_last: u64,
    pub timing: RaftTiming,
    /// The client for outbound RPCs (a TLS one when peers speak TLS); `None`: plain HTTP
    /// with [`network::peer_client`]'s settings.
    pub peer_client: Option<reqwest::Client>,
    /// Whether peers are reached over `https://` (TLS between nodes; `peer_client` then
    /// trusts the cluster's CA).
    pub peer_https: bool,
}

impl NodeConfig {
    /// Every member of the initial cluster, this node included.
    pub fn members(&self) -> BTreeMap<NodeId, BasicNode> {
        let mut members: BTreeMap<NodeId, BasicNode> =
            self.peers.iter().map(|(id, addr)| (*id, BasicNode::new(addr))).collect();
        members.insert(self.node_id, BasicNode::new(&self.addr));
        members
    }

    fn raft_config(&self) -> Result<openraft::Config, RaftError> {
        if self.snapshot_logs_since_last == 0 {
            return Err(RaftError::Config("snapshot_logs_since_last must be at least 1".into()));
        }
        if !self.peers.is_empty() && self.cluster_secret.is_empty() {
            return Err(RaftError::Config("a cluster_secret is required when peers are configured".into()));
        }
        let config = openraft::Config {
            cluster_name: "parley".into(),
            heartbeat_interval: self.timing.heartbeat_ms,
            election_timeout_min: self.timing.election_min_ms,
            election_timeout_max: self.timing.election_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_logs_since_last),
            max_in_snapshot_log_to_keep: LOGS_KEPT_BEHIND_SNAPSHOT.min(self.snapshot_logs_since_last),
            max_payload_entries: MAX_PAYLOAD_ENTRIES,
            ..Default::default()
        };
        Ok(config.validate()?)
    }
}

/// A membership change, in this crate's terms (see [`RaftNode::change_members`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipChange {
    /// Promote these learners to voters.
    AddVoters(BTreeSet<NodeId>),
    /// Demote these voters (to learners with `retain`, else out of the cluster).
    RemoveVoters(BTreeSet<NodeId>),
    /// Make exactly these nodes (each already a member) the voters.
    ReplaceVoters(BTreeSet<NodeId>),
    /// Remove these learners from the cluster.
    RemoveNodes(BTreeSet<NodeId>),
}

/// The node's storage: the state machine's db (journal and projections, [`Store`]) and the raft
/// log's own db.
///
/// Two dbs because a sled flush writes out everything dirty in its db: with one db, every
/// group-commit flush of the log also wrote the projections applied since the last one, in
/// small pieces, on the write path. Apart, the log flush writes only log entries, and the
/// projections reach disk in sled's background flushes (and before every snapshot, which is
/// what lets the log be purged). Tests may pass the same db twice.
#[derive(Clone)]
pub struct NodeDbs {
    /// Holds the [`Store`] and the state machine's raft meta and snapshots.
    pub state: sled::Db,
    /// Holds the raft log and hard state ([`LogStore`]).
    pub log: sled::Db,
}

/// A running raft node. Cheap to clone (every field is a shared handle).
#[derive(Clone)]
pub struct RaftNode {
    node_id: NodeId,
    addr: String,
    raft: Raft,
    dbs: NodeDbs,
    secret: Arc<[u8]>,
    /// Checks every inbound envelope: address, freshness, MAC, replays.
    guard: Arc<ReplayGuard>,
    batcher: mpsc::Sender<Pending>,
    /// A handle on the state machine openraft drives (for install status and journal pages).
    state_machine: StateMachine,
    /// Snapshot installs under way on this node (see [`NoElections`]).
    installs: Arc<std::sync::atomic::AtomicUsize>,
    peer_https: bool,
}

/// Keeps this node from campaigning while it installs a snapshot. openraft sends heartbeats on
/// the same replication stream as the snapshot, so a follower pulling a long journal hears no
/// heartbeat for the whole install and would call an election every timeout, at ever higher
/// terms; when it answered the leader afterwards, its term would depose a healthy leader. A
/// node mid-install could not lead anyway (its state is behind), so it does not stand.
struct NoElections {
    raft: Raft,
    installs: Arc<std::sync::atomic::AtomicUsize>,
}

impl NoElections {
    fn new(raft: &Raft, installs: &Arc<std::sync::atomic::AtomicUsize>) -> NoElections {
        if installs.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            raft.runtime_config().elect(false);
        }
        NoElections { raft: raft.clone(), installs: installs.clone() }
    }
}

impl Drop for NoElections {
    fn drop(&mut self) {
        if self.installs.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            self.raft.runtime_config().elect(true);
        }
    }
}

/// A command waiting for the batcher, its request id, and where its outcome goes.
type Pending = (RequestId, Command, oneshot::Sender<Result<Outcome, WriteError>>);

/// Most commands in one raft entry.
const MAX_BATCH_COMMANDS: usize = 512;
/// Most message-body bytes in one raft entry (keeps append RPCs to followers small).
const MAX_BATCH_BYTES: usize = 1 << 20;

/// Group commit above raft: takes every command waiting, proposes them as one entry, hands each
/// caller its own outcome. One batch is in flight at a time; commands arriving meanwhile form
/// the next one, so batches grow with load and stay at one command when idle.
///
/// Every command carries its request id into the entry, so the state machine applies each at
/// most once: re-proposing a command whose first proposal may have committed is safe.
async fn batch_loop(raft: Raft, mut rx: mpsc::Receiver<Pending>) {
    while let Some(first) = rx.recv().await {
        let mut bytes = command_bytes(&first.1);
        let mut pending = vec![first];
        while pending.len() < MAX_BATCH_COMMANDS && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += command_bytes(&p.1);
                    pending.push(p);
                }
                Err(_) => break,
            }
        }
        let count = pending.len();
        let mut batch = CommandBatch { commands: Vec::with_capacity(count), request_ids: Vec::with_capacity(count) };
        let mut replies = Vec::with_capacity(count);
        for (id, cmd, reply) in pending {
            batch.request_ids.push(id);
            batch.commands.push(cmd);
            replies.push(reply);
        }
        let result = raft.client_write(batch).await;
        match result {
            Ok(resp) if resp.data.outcomes.len() == count => {
                for (reply, outcome) in replies.into_iter().zip(resp.data.outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Ok(resp) => {
                // Cannot happen: apply answers one outcome per command. Refuse rather than
                // hand anyone a wrong outcome. The batch did commit: the callers propose again
                // (`ForwardToLeader` without a leader means "ask raft again") under the same
                // request ids, and the state machine answers them with these commands' first
                // outcomes instead of applying them twice.
                tracing::error!(expected = count, got = resp.data.outcomes.len(), "batch outcome count mismatch");
                let err = WriteError::ForwardToLeader { leader_id: None, leader_addr: None };
                for reply in replies {
                    let _ = reply.send(Err(err.clone()));
                }
            }
            Err(e) => {
                let err = client_write_error(&raft, e);
                for reply in replies {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }
}

/// Rough size of a command in an entry.
fn command_bytes(cmd: &Command) -> usize {
    match &cmd.kind {
        parley_storage::CommandKind::Send { body, .. } => body.len() + 256,
        _ => 256,
    }
}

impl RaftNode {
    /// Starts raft over `dbs` (`dbs.state` is the Db `store` was opened on) and bootstraps the
    /// cluster if this node's storage is pristine and it is the one to do it.
    #[tracing::instrument(skip_all, fields(node_id = cfg.node_id, peers = cfg.peers.len()))]
    pub async fn start(
        cfg: NodeConfig,
        dbs: NodeDbs,
        store: Store,
        listener: Arc<dyn ApplyListener>,
    ) -> Result<RaftNode, RaftError> {
        Self::open(cfg, dbs, store, listener, true).await
    }

    /// Starts raft over `dbs` like [`RaftNode::start`], but never initialises a cluster: a
    /// pristine node waits until a leader adds it (`add_learner`), then catches up. Needs the
    /// cluster secret (the leader's RPCs are signed with it).
    #[tracing::instrument(skip_all, fields(node_id = cfg.node_id, join = true))]
    pub async fn join(
        cfg: NodeConfig,
        dbs: NodeDbs,
        store: Store,
        listener: Arc<dyn ApplyListener>,
    ) -> Result<RaftNode, RaftError> {
        if cfg.cluster_secret.is_empty() {
            return Err(RaftError::Config("a cluster_secret is required to join a cluster".into()));
        }
        Self::open(cfg, dbs, store, listener, false).await
    }

    async fn open(
        cfg: NodeConfig,
        dbs: NodeDbs,
        store: Store,
        listener: Arc<dyn ApplyListener>,
        bootstrap: bool,
    ) -> Result<RaftNode, RaftError> {
        let config = cfg.raft_config()?;
        let mut log_store = LogStore::open(dbs.log.clone())?;
        let mut state_machine = StateMachine::open(dbs.state.clone(), store, listener)?;
        log_store.limit_purges(state_machine.purge_limit());

        let pristine = log_store.read_vote().await?.is_none()
            && log_store.get_log_state().await?.last_log_id.is_none()
            && state_machine.applied_state().await?.0.is_none();

        let client = match &cfg.peer_client {
            Some(client) => client.clone(),
            None => network::peer_client(reqwest::Client::builder())?,
        };
        let network = Network::new(cfg.node_id, &cfg.addr, &cfg.cluster_secret, client, cfg.peer_https);
        state_machine.set_journal_source(cfg.node_id, Arc::new(network.clone()));
        let sm = state_machine.clone();
        let raft = Raft::new(cfg.node_id, Arc::new(config), network, log_store, state_machine).await?;
        let installs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        if sm.is_installing() {
            // A snapshot install was interrupted: finish it now rather than at the next entry,
            // so the node serves again as soon as it has the journal.
            let resume = sm.clone();
            let quiet = NoElections::new(&raft, &installs);
            tokio::spawn(async move {
                if let Err(e) = resume.resume_install().await {
                    tracing::error!(error = %e, "resuming the interrupted snapshot install failed");
                }
                drop(quiet);
            });
        }
        let (batcher, batch_rx) = mpsc::channel(4 * MAX_BATCH_COMMANDS);
        tokio::spawn(batch_loop(raft.clone(), batch_rx));
        let node = RaftNode {
            node_id: cfg.node_id,
            addr: cfg.addr.clone(),
            raft,
            dbs,
            secret: Arc::from(cfg.cluster_secret.as_slice()),
            guard: Arc::new(ReplayGuard::new(cfg.node_id, &cfg.cluster_secret)),
            batcher,
            state_machine: sm,
            installs,
            peer_https: cfg.peer_https,
        };

        let members = cfg.members();
        let initialiser = members.keys().next().copied();
        if !pristine {
            tracing::info!("raft state found on disk; resuming");
        } else if !bootstrap {
            tracing::info!("pristine storage; waiting to be added to a cluster");
        } else if initialiser == Some(cfg.node_id) {
            tracing::info!(members = members.len(), "pristine storage; initialising the cluster");
            match node.raft.initialize(members).await {
                Ok(()) => {}
                Err(openraft::error::RaftError::APIError(InitializeError::NotAllowed(e))) => {
                    tracing::info!(%e, "cluster already initialised");
                }
                Err(openraft::error::RaftError::APIError(e)) => return Err(RaftError::Initialize(e.to_string())),
                Err(openraft::error::RaftError::Fatal(e)) => return Err(e.into()),
            }
        } else {
            tracing::info!(initialiser = ?initialiser, "pristine storage; waiting to be contacted by the cluster");
        }
        Ok(node)
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// This node's HTTP address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The underlying openraft handle.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Live metrics: server state, current leader, last applied, membership.
    pub fn metrics(&self) -> watch::Receiver<RaftMetrics> {
        self.raft.metrics()
    }

    /// The leader this node currently knows of.
    pub async fn current_leader(&self) -> Option<NodeId> {
        self.raft.current_leader().await
    }

    /// Whether this node has a membership (initialised itself or was contacted by a cluster).
    pub async fn is_initialized(&self) -> Result<bool, WriteError> {
        Ok(self.raft.is_initialized().await?)
    }

    /// A fresh request id of this node (128 random bits: no counter to persist).
    pub fn new_request_id(&self) -> RequestId {
        RequestId { node: self.node_id, nonce: rand::random() }
    }

    /// Proposes `cmd` under a fresh request id and waits until it is committed and applied;
    /// returns its outcome.
    pub async fn write(&self, cmd: Command) -> Result<Outcome, WriteError> {
        self.write_request(self.new_request_id(), cmd).await
    }

    /// Proposes `cmd` under request `id`: proposing the same id again (a retry of a write that
    /// may have committed) applies it at most once and answers with its first outcome.
    #[tracing::instrument(skip_all, fields(node_id = self.node_id, kind = cmd.kind.name(), request_node = id.node, cursor = tracing::field::Empty))]
    pub async fn write_request(&self, id: RequestId, cmd: Command) -> Result<Outcome, WriteError> {
        let (tx, rx) = oneshot::channel();
        let stopped = || WriteError::Fatal(Box::new(openraft::error::Fatal::Stopped));
        self.batcher.send((id, cmd, tx)).await.map_err(|_| stopped())?;
        let outcome = rx.await.map_err(|_| stopped())??;
        tracing::Span::current().record("cursor", outcome.cursor);
        Ok(outcome)
    }

    /// Confirms leadership with a quorum and waits until everything committed before now is
    /// applied locally; a read after it is linearizable.
    #[tracing::instrument(skip_all, fields(node_id = self.node_id))]
    pub async fn read_barrier(&self) -> Result<Option<LogId>, WriteError> {
        self.raft.ensure_linearizable().await.map_err(|e| match e {
            openraft::error::RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => forward(&self.raft, f),
            openraft::error::RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)) => q.into(),
            openraft::error::RaftError::Fatal(f) => f.into(),
        })
    }

    /// Adds `id` at `addr` as a learner and waits until it has caught up (leader only).
    #[tracing::instrument(skip_all, fields(node_id = self.node_id, learner = id))]
    pub async fn add_learner(&self, id: NodeId, addr: &str) -> Result<LogId, WriteError> {
        let response =
            self.raft.add_learner(id, BasicNode::new(addr), true).await.map_err(|e| self.client_write_error(e))?;
        Ok(response.log_id)
    }

    /// Makes `voters` the voting members (joint consensus, leader only). With `retain`, removed
    /// voters stay as learners.
    #[tracing::instrument(skip_all, fields(node_id = self.node_id, voters = ?voters))]
    pub async fn change_membership(&self, voters: BTreeSet<NodeId>, retain: bool) -> Result<LogId, WriteError> {
        let response = self.raft.change_membership(voters, retain).await.map_err(|e| self.client_write_error(e))?;
        Ok(response.log_id)
    }

    /// Applies a membership change (leader only) and waits until it is committed. With
    /// `retain`, voters the change removes stay as learners; without, they leave the cluster.
    #[tracing::instrument(skip_all, fields(node_id = self.node_id, change = ?change))]
    pub async fn change_members(&self, change: MembershipChange, retain: bool) -> Result<LogId, WriteError> {
        let change = match change {
            MembershipChange::AddVoters(ids) => ChangeMembers::AddVoterIds(ids),
            MembershipChange::RemoveVoters(ids) => ChangeMembers::RemoveVoters(ids),
            MembershipChange::ReplaceVoters(ids) => ChangeMembers::ReplaceAllVoters(ids),
            MembershipChange::RemoveNodes(ids) => ChangeMembers::RemoveNodes(ids),
        };
        let response = self.raft.change_membership(change, retain).await.map_err(|e| self.client_write_error(e))?;
        Ok(response.log_id)
    }

    /// Adds `id` at `addr` as a learner without waiting for it to catch up (leader only); see
    /// the replication progress in [`RaftNode::metrics`].
    #[tracing::instrument(skip_all, fields(node_id = self.node_id, learner = id))]
    pub async fn add_learner_nowait(&self, id: NodeId, addr: &str) -> Result<LogId, WriteError> {
        let response =
            self.raft.add_learner(id, BasicNode::new(addr), false).await.map_err(|e| self.client_write_error(e))?;
        Ok(response.log_id)
    }

    /// The check of inbound envelopes ([`crate::envelope`]): call
    /// [`ReplayGuard::precheck`] before reading a body, [`ReplayGuard::check`] after.
    pub fn envelope_guard(&self) -> &ReplayGuard {
        &self.guard
    }

    /// The base URL of a peer at `addr` (`https://` when nodes speak TLS).
    pub fn peer_base_url(&self, addr: &str) -> String {
        network::peer_url(addr, self.peer_https)
    }

    /// Signs a request from this node to `to` (`None`: any node) for an outbound call the api
    /// crate makes itself (a forwarded write).
    pub fn sign(&self, to: Option<NodeId>, method: &str, path: &str, body: &[u8]) -> envelope::Signed {
        envelope::sign(&self.secret, self.node_id, to, method, path, body)
    }

    /// Whether a snapshot install is under way: the store must not serve reads until it ends.
    pub fn is_installing(&self) -> bool {
        self.state_machine.is_installing()
    }

    /// Handles a `/raft/append` body; the answer is a binary `Result` (see [`crate::network`]).
    #[tracing::instrument(skip_all, fields(node_id = self.node_id, bytes = body.len()))]
    pub async fn handle_append(&self, body: &[u8]) -> Result<Vec<u8>, InboundError> {
        let req: AppendEntriesRequest = wire::decode(body)?;
        let answer = self.raft.append_entries(req).await;
        Ok(wire::encode(&answer)?)
    }

    /// Handles a `/raft/vote` body.
    #[tracing::instrument(skip_all, fields(node_id = self.node_id))]
    pub async fn handle_vote(&self, body: &[u8]) -> Result<Vec<u8>, InboundError> {
        let req: VoteRequest = wire::decode(body)?;
        let answer = self.raft.vote(req).await;
        Ok(wire::encode(&answer)?)
    }

    /// Handles a `/raft/snapshot` body: a manifest. Answers once the snapshot is installed
    /// (the state machine pulls what this node lacks of the journal first).
    #[tracing::instrument(skip_all, fields(node_id = self.node_id))]
    pub async fn handle_snapshot(&self, body: &[u8]) -> Result<Vec<u8>, InboundError> {
        let req: SnapshotRequest = wire::decode(body)?;
        let snapshot = Snapshot { meta: req.meta, snapshot: Box::new(req.manifest) };
        let _quiet = NoElections::new(&self.raft, &self.installs);
        let answer = self.raft.install_full_snapshot(req.vote, snapshot).await;
        Ok(wire::encode(&answer)?)
    }

    /// Handles a `/raft/journal` body: a page of this node's journal.
    #[tracing::instrument(skip_all, fields(node_id = self.node_id))]
    pub async fn handle_journal(&self, body: &[u8]) -> Result<Vec<u8>, InboundError> {
        let req: PageRequest = wire::decode(body)?;
        let store = self.state_machine.store().clone();
        let page = tokio::task::spawn_blocking(move || crate::snapshot::read_page(&store, req))
            .await
            .map_err(|e| InboundError::Internal(e.to_string()))?
            .map_err(|e| InboundError::Internal(e.to_string()))?;
        Ok(wire::encode(&page)?)
    }

    /// Stops raft, then flushes both dbs so everything applied is on disk.
    #[tracing::instrument(skip_all, fields(node_id = self.node_id))]
    pub async fn shutdown(&self) -> Result<(), RaftError> {
        self.raft.shutdown().await.map_err(|e| RaftError::Shutdown(e.to_string()))?;
        self.dbs.log.flush_async().await?;
        self.dbs.state.flush_async().await?;
        Ok(())
    }

    fn client_write_error(&self, e: openraft::error::RaftError<NodeId, ClientWriteError<NodeId, Node>>) -> WriteError {
        client_write_error(&self.raft, e)
    }
}

fn client_write_error(
    raft: &Raft,
    e: openraft::error::RaftError<NodeId, ClientWriteError<NodeId, Node>>,
) -> WriteError {
    match e {
        openraft::error::RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => forward(raft, f),
        openraft::error::RaftError::APIError(ClientWriteError::ChangeMembershipError(m)) => m.into(),
        openraft::error::RaftError::Fatal(f) => f.into(),
    }
}

/// Fills in the leader's address from the membership when openraft did not include it.
fn forward(raft: &Raft, f: ForwardToLeader<NodeId, Node>) -> WriteError {
    let leader_addr = match (&f.leader_node, f.leader_id) {
        (Some(node), _) => Some(node.addr.clone()),
        (None, Some(id)) => {
            raft.metrics().borrow().membership_config.membership().get_node(&id).map(|n| n.addr.clone())
        }
        (None, None) => None,
    };
    WriteError::ForwardToLeader { leader_id: f.leader_id, leader_addr }
}
