//! Inbound raft traffic on the HTTP listener (`/raft/*`), authenticated with an HMAC of the
//! body under the cluster secret; a request without a valid one is refused before it can touch
//! the log. `/raft/write` runs a forwarded client command on the leader; `/raft/journal` serves
//! journal pages to a node installing a snapshot. Bodies are binary ([`parley_raft::wire`]).
//!
//! The listener is public, so everything an unauthenticated sender can make the node hold is
//! bounded before the signature can be checked (it covers the whole body):
//! - no cluster secret here, or no `Parley-Raft-Auth` header: 401 before a byte is read;
//! - each RPC has its own body cap ([`Rpc::body_limit`]): a larger declared length is 413 at
//!   once, a chunked body is cut off at the cap, and the read is time-limited;
//! - concurrent RPCs are bounded ([`RaftGates`]), journal pages apart from replication so that
//!   a node catching up never starves append and vote: past that, 503 with `Retry-After`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Buf;
use futures_util::Stream;
use parley_storage::Command;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::error::ApiError;
use crate::http::{json as json_reply, read_body, with};
use crate::state::{now_ms, AppState, COMMIT_WAIT};

pub const AUTH_HEADER: &str = "parley-raft-auth";

/// How long one raft RPC body may take to arrive. A real one is sent in one go over a fast link
/// (openraft's own RPC timeouts are far shorter); a sender dribbling bytes is holding a permit.
pub const RAFT_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Vote requests are a vote and a log id: tiny.
const VOTE_BODY_LIMIT: u64 = 4 * 1024;
/// A snapshot is a manifest (a journal head and a source address) plus openraft's meta.
const SNAPSHOT_BODY_LIMIT: u64 = 64 * 1024;
/// A journal page request is a cursor range.
const JOURNAL_BODY_LIMIT: u64 = 4 * 1024;
/// Concurrent replication RPCs (append, vote, snapshot). A leader keeps one replication stream
/// per follower and candidates send one vote each, so a healthy cluster uses a handful; the
/// rest is headroom for retries that overlap timed-out ones.
pub const RPC_PERMITS: usize = 32;
/// Concurrent journal pages served (each reads up to 4 MiB from the store): a few nodes
/// catching up at once, never at the expense of replication.
pub const JOURNAL_PERMITS: usize = 4;
/// Concurrent forwarded client writes: every write a follower takes is one, and each waits for
/// its commit, so this follows client concurrency; bounded, with a body cap of the API's own.
pub const WRITE_PERMITS: usize = 1024;
/// What a refused RPC is told to wait: openraft retries on its own schedule anyway.
const RETRY_AFTER_SECS: u64 = 1;

/// The inbound raft RPCs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rpc {
    Append,
    Vote,
    Snapshot,
    Journal,
    Write,
}

impl Rpc {
    fn parse(name: &str) -> Option<Rpc> {
        Some(match name {
            "append" => Rpc::Append,
            "vote" => Rpc::Vote,
            "snapshot" => Rpc::Snapshot,
            "journal" => Rpc::Journal,
            "write" => Rpc::Write,
            _ => return None,
        })
    }

    /// The largest body this RPC can legitimately have.
    fn body_limit(self, s: &AppState) -> u64 {
        match self {
            Rpc::Append => parley_raft::node::MAX_APPEND_BODY_BYTES,
            Rpc::Vote => VOTE_BODY_LIMIT,
            Rpc::Snapshot => SNAPSHOT_BODY_LIMIT,
            Rpc::Journal => JOURNAL_BODY_LIMIT,
            // A forwarded command came through the API's own body limit on the follower.
            Rpc::Write => s.cfg.max_request_bytes,
        }
    }
}

/// The bounds on concurrent inbound raft RPCs, one pool per kind of work.
pub struct RaftGates {
    rpc: Arc<Semaphore>,
    journal: Arc<Semaphore>,
    write: Arc<Semaphore>,
}

impl Default for RaftGates {
    fn default() -> Self {
        RaftGates {
            rpc: Arc::new(Semaphore::new(RPC_PERMITS)),
            journal: Arc::new(Semaphore::new(JOURNAL_PERMITS)),
            write: Arc::new(Semaphore::new(WRITE_PERMITS)),
        }
    }
}

impl RaftGates {
    /// A permit for one RPC, held until it is answered; none left is 503 at once (queueing
    /// would hold the connection and its body anyway).
    fn admit(&self, rpc: Rpc) -> Result<OwnedSemaphorePermit, ApiError> {
        let pool = match rpc {
            Rpc::Append | Rpc::Vote | Rpc::Snapshot => &self.rpc,
            Rpc::Journal => &self.journal,
            Rpc::Write => &self.write,
        };
        pool.clone().try_acquire_owned().map_err(|_| {
            tracing::warn!(?rpc, "too many concurrent raft requests; refused");
            ApiError::unavailable("too many concurrent raft requests").retry_after(RETRY_AFTER_SECS)
        })
    }
}

pub fn routes(s: &Arc<AppState>) -> BoxedFilter<(Response,)> {
    warp::path!("raft" / String)
        .and(warp::post())
        .and(with(s))
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(|rpc: String, s: Arc<AppState>, h: HeaderMap, body| async move {
            match handle(&s, &rpc, &h, body).await {
                Ok(r) => r,
                Err(e) => e.into_response(),
            }
        })
        .boxed()
}

#[tracing::instrument(skip_all, fields(rpc = %rpc))]
async fn handle<S, B>(s: &AppState, rpc: &str, h: &HeaderMap, stream: S) -> Result<Response, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    // Nothing is read before this: without a secret no request can be valid, and without a
    // signature this one is not.
    let sig = h.get(AUTH_HEADER).and_then(|v| v.to_str().ok());
    let sig = match sig {
        Some(sig) if !s.cfg.cluster_secret.is_empty() => sig,
        _ => return Err(refused()),
    };
    let rpc = Rpc::parse(rpc).ok_or_else(|| ApiError::not_found("no such raft rpc"))?;
    let _permit = s.raft_gates.admit(rpc)?;
    let body = read_body(h, stream, rpc.body_limit(s), RAFT_BODY_TIMEOUT).await?;
    if !s.raft.authenticate(&body, Some(sig)) {
        return Err(refused());
    }
    let out = match rpc {
        Rpc::Append => s.raft.handle_append(&body).await,
        Rpc::Vote => s.raft.handle_vote(&body).await,
        Rpc::Snapshot => s.raft.handle_snapshot(&body).await,
        Rpc::Journal => s.raft.handle_journal(&body).await,
        Rpc::Write => return forwarded_write(s, &body).await,
    };
    match out {
        Ok(bytes) => {
            let mut resp = Response::new(bytes.into());
            resp.headers_mut().insert("content-type", warp::http::HeaderValue::from_static("application/octet-stream"));
            Ok(resp)
        }
        Err(e @ parley_raft::InboundError::BadRequest(_)) => {
            tracing::warn!(error = %e, "raft request refused");
            Err(ApiError::invalid(e.to_string()))
        }
        Err(e) => Err(ApiError::internal(e.to_string())),
    }
}

fn refused() -> ApiError {
    tracing::warn!("raft request without a valid cluster secret refused");
    ApiError::unauthorized("raft requests need the cluster secret")
}

/// A follower forwarded a client's command: run it here if this node leads.
async fn forwarded_write(s: &AppState, body: &[u8]) -> Result<Response, ApiError> {
    let mut cmd: Command = serde_json::from_slice(body).map_err(|e| ApiError::invalid(e.to_string()))?;
    // The leader stamps the time.
    cmd.ts = now_ms();
    let written = match tokio::time::timeout(COMMIT_WAIT, s.raft.write(cmd)).await {
        Ok(written) => written,
        Err(_) => return Err(ApiError::unavailable("the write was not committed in time")),
    };
    match written {
        Ok(outcome) => Ok(json_reply(
            StatusCode::OK,
            &serde_json::to_value(&outcome).map_err(|e| ApiError::internal(e.to_string()))?,
        )),
        Err(parley_raft::WriteError::ForwardToLeader { leader_id, .. }) => {
            let mut resp = json_reply(
                StatusCode::MISDIRECTED_REQUEST,
                &json!({"error": {"code": "not_leader", "message": "not the leader", "leader_id": leader_id}}),
            );
            *resp.status_mut() = StatusCode::MISDIRECTED_REQUEST;
            Ok(resp)
        }
        Err(e) => Err(ApiError::unavailable(e.to_string())),
    }
}
