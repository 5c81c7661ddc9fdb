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
//! - [`network`]: outbound raft RPCs over HTTP (reqwest) and the HMAC signature on each body.
//! - [`node`]: [`RaftNode`]: configuration, bootstrap, writes, membership, inbound RPC bodies.
//! - [`error`]: the error enums users see.
//!
//! # sled trees owned here
//! All three live in the node's one Db, beside the store's trees; each value is framed by
//! [`frame`]. Key layouts are documented (and pinned by tests) in the owning module.
//! - `raft_log` ([`log_store`]): log index (u64 big-endian) -> rkyv `StoredEntry`.
//! - `raft_state` ([`log_store`]): `vote` / `last_purged` / `committed` -> JSON.
//! - `raft_snapshot` ([`state_machine`]): `meta` -> JSON snapshot meta, `data` -> snapshot bytes.
//!
//! Plus two keys in the store's meta, committed with each apply batch: `raft_last_applied` and
//! `raft_membership` ([`state_machine`]).
//!
//! Invariants (see each module for its own):
//! - one `sled::Db` holds the raft log, the raft state, the snapshot and the store, so one flush
//!   makes all of them durable;
//! - a write is answered only after its entry is durable in a quorum's logs and applied here.

pub mod error;
pub mod frame;
pub mod log_store;
pub mod network;
pub mod node;
pub mod state_machine;
pub mod types;

pub use error::{InboundError, RaftError, WriteError};
pub use log_store::LogStore;
pub use network::{sign, verify, Network, AUTH_HEADER};
pub use node::{MembershipChange, NodeConfig, NodeDbs, RaftNode};
pub use state_machine::{ApplyListener, NoopListener, StateMachine};
pub use types::{NodeId, TypeConfig};
