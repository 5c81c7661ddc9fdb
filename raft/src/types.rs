//! The openraft type configuration and the aliases the rest of the crate (and its users) name.
//!
//! Owns one decision: what travels through raft. The log carries [`parley_storage::Command`]s,
//! the state machine answers with [`parley_storage::Outcome`]s, nodes are `u64` ids with a
//! [`openraft::BasicNode`] holding the node's HTTP address, and a snapshot's data is a
//! [`crate::snapshot::Manifest`], a pointer into the journal (openraft's
//! `generic-snapshot-data`: the application defines the snapshot and its transfer).

openraft::declare_raft_types!(
    /// Parley's raft: commands in, outcomes out.
    pub TypeConfig:
        D = parley_storage::CommandBatch,
        R = parley_storage::BatchOutcome,
        NodeId = u64,
        Node = openraft::BasicNode,
        SnapshotData = crate::snapshot::Manifest,
);

/// A node id within the cluster.
pub type NodeId = u64;
/// What the cluster knows of a node: its HTTP address.
pub type Node = openraft::BasicNode;
/// A running raft instance.
pub type Raft = openraft::Raft<TypeConfig>;
/// A raft log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// `(leader term + node, index)`: the identity of a log entry.
pub type LogId = openraft::LogId<NodeId>;
/// A vote: the term and the node voted for.
pub type Vote = openraft::Vote<NodeId>;
/// A cluster membership configuration.
pub type Membership = openraft::Membership<NodeId, Node>;
/// A membership together with the log id that introduced it.
pub type StoredMembership = openraft::StoredMembership<NodeId, Node>;
/// What describes a snapshot: last included log id, membership, snapshot id.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Node>;
/// A snapshot: its meta and its bytes.
pub type Snapshot = openraft::Snapshot<TypeConfig>;
/// The raft node's published metrics (state, leader, last applied, membership, ...).
pub type RaftMetrics = openraft::RaftMetrics<NodeId, Node>;
/// Storage failure as openraft sees it; returning one stops the node.
pub type StorageError = openraft::StorageError<NodeId>;

/// The RPC bodies exchanged between nodes (binary on the wire, see [`crate::wire`]).
pub type AppendEntriesRequest = openraft::raft::AppendEntriesRequest<TypeConfig>;
pub type AppendEntriesResponse = openraft::raft::AppendEntriesResponse<NodeId>;
pub type VoteRequest = openraft::raft::VoteRequest<NodeId>;
pub type VoteResponse = openraft::raft::VoteResponse<NodeId>;
pub type SnapshotResponse = openraft::raft::SnapshotResponse<NodeId>;

/// Errors a remote raft node answers with (carried inside a 200 response body).
pub type RemoteRaftError<E = openraft::error::Infallible> = openraft::error::RaftError<NodeId, E>;
/// An outbound RPC failure as openraft expects it from the network.
pub type RpcError<E = openraft::error::Infallible> = openraft::error::RPCError<NodeId, Node, RemoteRaftError<E>>;
/// Raft stopped (storage error, panic or shutdown).
pub type Fatal = openraft::error::Fatal<NodeId>;
/// Why a client write or membership change was not accepted.
pub type ClientWriteError = openraft::error::ClientWriteError<NodeId, Node>;
