//! Parley's domain and storage: pure, deterministic, no network.
//!
//! A committed [`Command`] goes through [`execute`]: [`decide::decide`] validates it against
//! the projections (events or a [`Rejection`]); each event is appended to the hash-chained
//! [`journal`] and folded into the projections by [`apply`], all in one [`Tx`] committed
//! atomically. Replay runs the same `apply` over the journal.
//!
//! # Layout
//! - [`codec`]: rkyv encode / validated decode of every stored record.
//! - [`ids`]: user, group and conversation ids.
//! - [`command`]: what clients ask for, as replicated in the raft log.
//! - [`event`]: the facts appended to the journal.
//! - [`rejection`]: why a command was refused (maps to the contract's error codes).
//! - [`outcome`]: the reply to a command and the live audience of an entry.
//! - [`keys`]: the sled trees and their key layouts.
//! - [`records`]: projection values.
//! - [`message`]: a message as readers see it, its record joined with its journal entry.
//! - [`journal`]: journal entries, the hash chain and its verifier.
//! - [`head`]: the journal head record (the applied cursor).
//! - [`store`]: the sled store and its committed reads.
//! - [`migrate`]: the storage format version and in-place migrations at open.
//! - [`tx`]: the write transaction, an overlay the domain writes through.
//! - [`decide`], [`apply`], `engine`: the domain (`engine`: execute, journal append, replay).
//! - `digest`: the projection digest, one algorithm for the store and for in-memory replay.
//! - [`query`]: read models (lists, history, sync).
//! - [`replay`]: offline replay of verified journal entries in large batches.
//! - [`requests`]: request ids and the table that applies each at most once.
//! - `snapshot`: what journal-pointer snapshots need from storage (staging pulled pages).
pub mod apply;
pub mod codec;
pub mod command;
pub mod decide;
mod digest;
mod engine;
pub mod event;
pub mod head;
pub mod ids;
pub mod journal;
pub mod keys;
mod memstate;
pub mod message;
pub mod migrate;
pub mod outcome;
pub mod query;
pub mod records;
pub mod rejection;
pub mod replay;
pub mod requests;
mod snapshot;
pub mod store;
pub mod tx;

pub use command::{Command, CommandBatch, CommandBatchV1, CommandKind, Role};
pub use engine::execute;
pub use event::{Event, RemoveReason};
pub use head::Head;
pub use journal::Entry;
pub use message::Message;
pub use migrate::FormatError;
pub use outcome::{Audience, BatchOutcome, Outcome, Reply};
pub use query::{ConversationSummary, EntryView, HistoryQuery, SyncCursors, SyncPage};
pub use rejection::Rejection;
pub use requests::{execute_once, RequestId};
pub use store::{Store, StoreError};
pub use tx::{AppliedEntry, Tx};
