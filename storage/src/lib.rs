//! Parley's domain and storage: pure, deterministic, no network.
//!
//! A committed [`Command`] goes through [`decide::decide`] (validate against the projections:
//! events or a [`Rejection`]); each event is appended to the hash-chained [`journal`] and
//! folded into the projections by [`apply`], all in one [`store::Tx`] committed atomically.
//! Replay runs the same `apply` over the journal.
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
//! - [`journal`]: journal entries, the hash chain and its verifier.
//! - [`store`]: the sled store and the write transaction.
//! - [`decide`], [`apply`], [`engine`]: the domain.
//! - [`query`]: read models (lists, history, sync).
//! - [`replay`]: offline replay of verified journal entries in large batches.
pub mod apply;
pub mod codec;
pub mod command;
pub mod decide;
mod engine;
pub mod event;
pub mod ids;
pub mod journal;
pub mod keys;
mod memstate;
pub mod outcome;
pub mod query;
pub mod records;
pub mod rejection;
pub mod replay;
pub mod store;

pub use command::{Command, CommandBatch, CommandKind, Role};
pub use event::{Event, RemoveReason};
pub use journal::Entry;
pub use outcome::{Audience, BatchOutcome, Outcome, Reply};
pub use query::{ConversationSummary, EntryView, HistoryQuery, SyncCursors, SyncPage};
pub use rejection::Rejection;
pub use store::{AppliedEntry, Head, Store, StoreError, Tx};
