//! Parley's replication: openraft 0.9 glue over the node's sled database, and nothing else.
//!
//! Commands ([`parley_storage::Command`]) are proposed through raft, stored in a sled-backed
//! log, and applied in batches to the storage engine ([`parley_storage::Store`]); each
//! command's [`parley_storage::Outcome`] is handed back to the writer. This crate knows no
//! domain rules (those are `parley-storage`'s) and no HTTP routes (the api crate mounts the
//! inbound RPC handlers of [`RaftNode`]).
//!
//! # Layout
//! - [`types`]: the openraft type configuration and aliases.
//! - [`frame`]: checksummed framing of every value this crate writes to sled.
//! - [`log_store`]: the raft log and hard state (vote, purge point, commit point) in sled.
//! - [`state_machine`]: applies committed entries to the `Store`; builds and installs snapshots;
//!   tells an [`ApplyListener`] what was applied.
//! - [`snapshot`]: snapshots as journal pointers ([`snapshot::Manifest`]); catching a node up
//!   by pulling verified journal pages; serving them.
//! - [`wire`]: the binary encoding (version byte + postcard) of every raft RPC body.
//! - [`envelope`]: the signed envelope of every node-to-node request (sender, addressee, time,
//!   nonce, method, path, body under the cluster secret) and the replay guard that checks it.
//! - [`network`]: outbound raft RPCs over HTTP or HTTPS (reqwest).
//! - [`node`]: [`RaftNode`]: configuration, bootstrap, writes, membership, inbound RPC bodies.
//! - [`error`]: the error enums users see.
//!
//! # sled trees owned here
//! Each value is framed by [`frame`]. Key layouts are documented (and pinned by tests) in the
//! owning module.
//! - in the raft log's db (`<data-dir>/raft`): `raft_log` ([`log_store`]): log index (u64
//!   big-endian) -> rkyv `StoredEntry`; `raft_state`: `vote` / `last_purged` / `committed`.
//! - in the state db (`<data-dir>/db`, beside the store's trees): `raft_snapshot`
//!   ([`state_machine`]): `current` -> the snapshot meta and its manifest.
//!
//! Plus keys in the store's meta, committed with the state they describe: `raft_last_applied`,
//! `raft_membership` and, during an install, `raft_installing` ([`state_machine`]).
//!
//! Invariants (see each module for its own):
//! - the log is purged only behind a snapshot, and a snapshot is recorded only after the state
//!   db is flushed, so the log is bounded and never the only copy of applied state;
//! - a write is answered only after its entry is durable in a quorum's logs and applied here.

pub mod envelope;
pub mod error;
pub mod frame;
pub mod log_store;
pub mod network;
pub mod node;
pub mod snapshot;
pub mod state_machine;
pub mod types;
pub mod wire;

pub use envelope::{AuthError, Claims, AUTH_HEADER};
pub use error::{InboundError, RaftError, WriteError};
pub use log_store::{LogStore, PurgeLimit};
pub use network::Network;
pub use node::{MembershipChange, NodeConfig, NodeDbs, RaftNode, RaftTiming};
pub use state_machine::{ApplyListener, NoopListener, StateMachine};
pub use types::{NodeId, TypeConfig};
