//! Operations: health, readiness, cluster status, and the cluster membership answers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `GET /healthz` (`ok`) and `GET /readyz` (`ready`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Status {
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClusterMember {
    pub node_id: u64,
    /// The member's HTTP address (its API and raft RPCs share the listener).
    pub addr: String,
    pub voter: bool,
}

/// The persisted raft vote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Vote {
    pub term: u64,
    pub node_id: Option<u64>,
    pub committed: bool,
}

/// `GET /v1/cluster`: the contract's `{node_id, leader_id, term, last_applied, cursor,
/// members}`, and for operators and the cluster tests the raft state, vote, log extent, last
/// snapshot and (on the leader) each member's replicated log index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClusterStatus {
    pub node_id: u64,
    pub leader_id: Option<u64>,
    pub term: u64,
    pub last_applied: u64,
    pub cursor: u64,
    /// `Leader`, `Follower`, `Candidate`, `Learner` or `Shutdown`.
    pub state: String,
    pub members: Vec<ClusterMember>,
    pub vote: Vote,
    pub last_log_index: u64,
    pub purged_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    /// On the leader: node id (as a string) to the last log index it is known to hold.
    pub replication: Option<BTreeMap<String, Option<u64>>>,
}

/// `POST /v1/admin/cluster/learners`: 200 when the learner caught up within `wait_ms`, else 202.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LearnerAdded {
    pub node_id: u64,
    pub addr: String,
    pub caught_up: bool,
    pub cluster: ClusterStatus,
}

/// `POST /v1/admin/cluster/voters`, `PUT /v1/admin/cluster/membership`,
/// `DELETE /v1/admin/cluster/nodes/{id}`: the cluster after the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MembershipChanged {
    /// The voters asked for (voters, membership).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voters: Option<Vec<u64>>,
    /// The node removed (nodes/{id}).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed: Option<u64>,
    pub cluster: ClusterStatus,
}
