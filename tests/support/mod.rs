//! The one test harness of Parley's black-box tests: every integration test is `mod support;`
//! and talks to real `parley` processes through it.
//!
//! - [`node`] (re-exported here): one `parley serve` ([`TestServer`], [`shared`]), the HTTP
//!   client ([`Api`], [`Resp`]), users, WebSocket helpers. [`groups`] and [`audit`] are facades
//!   over [`Api`] for tests that name their users.
//! - [`cluster`]: N real nodes ([`cluster::Cluster`]): placements, kills, pauses, loads with
//!   idempotent retries, the exactly-once tally; [`netns`]: network namespaces and nftables
//!   faults for the fault suite.
//! - [`offline`]: the offline tools (`parley replay`, `audit verify`, `export`, `import`) and
//!   tampering with a stopped node's data dir.
//! - [`spawn`]: children that die with the test process; [`flags`]: flags every node gets.
//!
//! Nothing here links against the server's crates except where a test must read or tamper
//! with a stopped node's sled db directly (`offline`).

#![allow(dead_code, unused_imports)]

pub mod audit;
pub mod cluster;
pub mod flags;
pub mod groups;
pub mod netns;
mod node;
pub mod offline;
pub mod spawn;

pub use node::*;
