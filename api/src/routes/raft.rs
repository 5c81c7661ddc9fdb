//! Inbound raft traffic on the HTTP listener (`/raft/*`), authenticated by the signed envelope
//! of [`parley_raft::envelope`] (sender, addressee, time, nonce, method, path and body under
//! the cluster secret); a request without a valid, fresh, never-seen one is refused with 401
//! and a body saying why, before it can touch the log. `/raft/write` runs a forwarded client
//! command on the leader (under the request id the follower gave it); `/raft/journal` serves
//! journal pages to a node installing a snapshot. Bodies are binary ([`parley_raft::wire`]),
//! except `/raft/write`'s (JSON [`ForwardedWrite`]).
//!
//! The listener is public, so everything an unauthenticated sender can make the node hold is
//! bounded before the signature can be checked (it covers the whole body):
//! - no cluster secret here, no `Parley-Raft-Auth` header, malformed envelope headers, a
//!   request addressed to another node or a timestamp outside the window: 401 before a byte
//!   is read;
//! - each RPC has its own body cap ([`Rpc::body_limit`]): a larger declared length is 413 at
//!   once, a chunked body is cut off at the cap, and the read is time-limited;
//! - concurrent RPCs are bounded ([`RaftGates`]), journal pages apart from replication so that
//!   a node catching up never starves append and vote: past that, 503 with `Retry-After`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Buf;
use futures_util::Stream;
use parley_raft::envelope::{self, AuthError, Claims};
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use warp::filters::path::FullPath;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::error::ApiError;
use crate::http::{json as json_reply, read_body, with};
use crate::state::{now_ms, AppState, ForwardedWrite, COMMIT_WAIT};

/// How long one raft RPC body may take to arrive. A real one is sent in one go over a fast link
/// (openraft's own RPC timeouts are far shorter); a sender dribbling bytes is holding a permit.
pub const RAFT_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Vote requests are a vote and a log id: tiny.
const VOTE_BODY_LIMIT: u64 = 4 * 1024;
/// A snapshot is a manifest (a journal head, a source address and the state machine's request
/// table, at most `parley_storage::requests::WINDOW` records of ~100 bytes) plus openraft's
/// meta.
const SNAPSHOT_BODY_LIMIT: u64 = 16 << 20;
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
        .and(warp::method())
        .and(warp::path::full())
        .and(with(s))
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(|rpc: String, method: Method, full: FullPath, s: Arc<AppState>, h: HeaderMap, body| async move {
            match handle(&s, &rpc, (method.as_str(), full.as_str()), &h, body).await {
                Ok(r) => r,
                Err(e) => e.into_response(),
            }
        })
        .boxed()
}

#[tracing::instrument(skip_all, fields(rpc = %rpc, from = tracing::field::Empty))]
async fn handle<S, B>(
    s: &AppState,
    rpc: &str,
    (method, path): (&str, &str),
    h: &HeaderMap,
    stream: S,
) -> Result<Response, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    // Nothing is read before this: without a secret no request can be valid; without a
    // well-formed envelope addressed here and inside the time window, this one is not.
    if s.cfg.cluster_secret.is_empty() {
        return Err(refused(&AuthError::NoSecret));
    }
    let header = |name: &str| h.get(name).and_then(|v| v.to_str().ok());
    let (claims, mac) = Claims::from_headers(header).map_err(|e| refused(&e))?;
    tracing::Span::current().record("from", claims.from);
    let guard = s.raft.envelope_guard();
    guard.precheck(&claims, path, envelope::now_ms()).map_err(|e| refused(&e))?;
    let rpc = Rpc::parse(rpc).ok_or_else(|| ApiError::not_found("no such raft rpc"))?;
    let _permit = s.raft_gates.admit(rpc)?;
    let body = read_body(h, stream, rpc.body_limit(s), RAFT_BODY_TIMEOUT).await?;
    guard.check(&claims, mac, method, path, &body, envelope::now_ms()).map_err(|e| refused(&e))?;
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

fn refused(e: &AuthError) -> ApiError {
    tracing::warn!(error = %e, "raft request refused");
    ApiError::unauthorized(e.to_string())
}

/// A follower forwarded a client's command: run it here if this node leads, under the request
/// id the follower gave it (a second delivery answers the first outcome and applies nothing).
async fn forwarded_write(s: &AppState, body: &[u8]) -> Result<Response, ApiError> {
    let write: ForwardedWrite = serde_json::from_slice(body).map_err(|e| ApiError::invalid(e.to_string()))?;
    let mut cmd = write.command;
    // The leader stamps the time.
    cmd.ts = now_ms();
    let written = match tokio::time::timeout(COMMIT_WAIT, s.raft.write_request(write.request_id, cmd)).await {
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
