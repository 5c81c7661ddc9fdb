//! The errors this crate returns to its users.
//!
//! Owns the mapping from openraft's generic error types to three small enums: starting a node
//! ([`RaftError`]), writing through it ([`WriteError`]), and handling an inbound RPC body
//! ([`InboundError`]). Storage failures inside raft are openraft's [`crate::types::StorageError`]
//! and stop the node; they reach users as [`crate::types::Fatal`].

use openraft::error::{ChangeMembershipError, QuorumNotEnough};

use crate::types::{Fatal, NodeId};

/// Why a raft node could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum RaftError {
    #[error("invalid raft configuration: {0}")]
    Config(String),
    #[error(transparent)]
    OpenRaftConfig(Box<openraft::ConfigError>),
    #[error("raft storage: {0}")]
    Sled(#[from] sled::Error),
    #[error("raft storage: {0}")]
    Storage(Box<crate::types::StorageError>),
    #[error("raft stopped: {0}")]
    Fatal(Box<Fatal>),
    #[error("raft http client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("cluster initialisation failed: {0}")]
    Initialize(String),
    #[error("raft task did not stop cleanly: {0}")]
    Shutdown(String),
}

/// Why a write (or a membership change) was not applied.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// This node is not the leader; retry on the leader if one is known.
    #[error("not the leader; leader is {leader_id:?} at {leader_addr:?}")]
    ForwardToLeader { leader_id: Option<NodeId>, leader_addr: Option<String> },
    /// The leader could not reach a quorum to confirm its leadership (reads).
    #[error(transparent)]
    QuorumNotEnough(#[from] QuorumNotEnough<NodeId>),
    /// A membership change was refused (another in progress, unknown learner, empty set).
    #[error(transparent)]
    Membership(#[from] ChangeMembershipError<NodeId>),
    /// Raft has stopped (storage error, panic, shutdown): the node must restart.
    #[error(transparent)]
    Fatal(Box<Fatal>),
}

impl WriteError {
    /// Whether a membership change was refused only because another one is still in progress
    /// (worth retrying shortly).
    pub fn membership_in_progress(&self) -> bool {
        matches!(self, WriteError::Membership(ChangeMembershipError::InProgress(_)))
    }
}

// openraft's error types are large (a `StorageError` is over 200 bytes); they are boxed here so
// every `Result` carrying ours stays small.

impl From<openraft::ConfigError> for RaftError {
    fn from(e: openraft::ConfigError) -> Self {
        RaftError::OpenRaftConfig(Box::new(e))
    }
}

impl From<crate::types::StorageError> for RaftError {
    fn from(e: crate::types::StorageError) -> Self {
        RaftError::Storage(Box::new(e))
    }
}

impl From<Fatal> for RaftError {
    fn from(e: Fatal) -> Self {
        RaftError::Fatal(Box::new(e))
    }
}

impl From<Fatal> for WriteError {
    fn from(e: Fatal) -> Self {
        WriteError::Fatal(Box::new(e))
    }
}

/// Why an inbound RPC body could not be handled.
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    /// The body is not a request of this wire version (answer 400 with the reason: a version
    /// mismatch names both versions).
    #[error("malformed raft rpc body: {0}")]
    BadRequest(crate::wire::WireError),
    /// The answer could not be produced (answer 500).
    #[error("raft rpc failed: {0}")]
    Internal(String),
}

impl From<crate::wire::WireError> for InboundError {
    fn from(e: crate::wire::WireError) -> Self {
        match e {
            crate::wire::WireError::Encode(e) => InboundError::Internal(e.to_string()),
            other => InboundError::BadRequest(other),
        }
    }
}
