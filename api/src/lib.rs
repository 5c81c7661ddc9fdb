//! Parley's HTTP API and WebSocket hub (warp), and authentication.
//!
//! The JSON shapes are the wire crate's (`parley_wire`): routes and the WebSocket answer with its
//! types, in their canonical text ([`http::json`]). Every mutating endpoint goes through [`state::AppState::submit`] (raft); reads
//! come from the local projections.
//!
//! # Layout
//! - [`server`]: start a node (store, raft, hub) and serve it until shutdown.
//! - [`data_dir`]: owner-only permissions of the data directory.
//! - [`state`]: shared state, configuration and the write path (propose, forward, wait).
//! - [`routes`]: one module per resource (users, friends, conversations, groups, sync, ops,
//!   raft RPC), composed in [`routes::all`].
//! - [`ws`]: a WebSocket connection: catch-up, live pulls, requests, slow-consumer close.
//! - [`hub`]: which sockets are open and whom an applied entry wakes.
//! - [`auth`]: argon2id passwords, JWTs bound to replicated sessions, the admin token.
//! - [`listener`]: the accept loop: header timeout, per-IP connection cap, TLS, graceful stop.
//! - [`tls`]: TLS between nodes: the listener's acceptor and the client that dials peers.
//! - [`limits`]: per-user send and failed-login (per user id and source) rate limits.
//! - [`ip_limits`]: per-source-IP limits on logins, registrations and admin requests.
//! - [`cors`]: `--cors-origin`: preflights, CORS headers on answers, the WebSocket's origin check.
//! - [`bodies`]: the write routes' JSON bodies, decoded and checked before any state is read.
//! - [`http`]: request context, bodies, JSON parsing, responses with `Parley-Cursor`.
//! - [`openapi`]: the OpenAPI 3.1 document (`GET /v1/openapi.json`) and the WebSocket frames'
//!   JSON Schema (`GET /v1/ws.schema.json`), generated from the wire types.
//! - [`error`]: the API error type and its mapping to status and code.
//! - [`fail_stop`]: a node that finds its stored data corrupt (at start, or on a read) stops.
//! - [`metrics`]: Prometheus text.
pub mod auth;
pub mod bodies;
pub mod cors;
pub mod data_dir;
pub mod error;
pub mod fail_stop;
pub mod http;
pub mod hub;
pub mod ip_limits;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod server;
pub mod state;
pub mod tls;
pub mod ws;

pub use error::ApiError;
pub use server::{Node, ServerConfig, ServerError};
pub use state::{ApiConfig, AppState, Registration};
