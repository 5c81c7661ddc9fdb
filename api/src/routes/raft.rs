//! Inbound raft traffic on the HTTP listener (`/raft/*`), authenticated with an HMAC of the
//! body under the cluster secret; a request without a valid one is refused before it can touch
//! the log. `/raft/write` runs a forwarded client command on the leader; `/raft/journal` serves
//! journal pages to a node installing a snapshot. Bodies are binary ([`parley_raft::wire`]).

use std::sync::Arc;

use bytes::Bytes;
use parley_storage::Command;
use serde_json::json;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::error::ApiError;
use crate::http::{body, json as json_reply, with};
use crate::state::{now_ms, AppState, COMMIT_WAIT};

pub const AUTH_HEADER: &str = "parley-raft-auth";
const RAFT_BODY_LIMIT: u64 = 512 * 1024 * 1024;

pub fn routes(s: &Arc<AppState>) -> BoxedFilter<(Response,)> {
    warp::path!("raft" / String)
        .and(warp::post())
        .and(with(s))
        .and(warp::header::headers_cloned())
        .and(body(RAFT_BODY_LIMIT))
        .then(|rpc: String, s: Arc<AppState>, h: HeaderMap, b: Result<Bytes, ApiError>| async move {
            match handle(&s, &rpc, &h, b).await {
                Ok(r) => r,
                Err(e) => e.into_response(),
            }
        })
        .boxed()
}

#[tracing::instrument(skip_all, fields(rpc = %rpc))]
async fn handle(s: &AppState, rpc: &str, h: &HeaderMap, b: Result<Bytes, ApiError>) -> Result<Response, ApiError> {
    let body = b?;
    let sig = h.get(AUTH_HEADER).and_then(|v| v.to_str().ok());
    if s.cfg.cluster_secret.is_empty() || !s.raft.authenticate(&body, sig) {
        tracing::warn!("raft request without a valid cluster secret refused");
        return Err(ApiError::unauthorized("raft requests need the cluster secret"));
    }
    let out = match rpc {
        "append" => s.raft.handle_append(&body).await,
        "vote" => s.raft.handle_vote(&body).await,
        "snapshot" => s.raft.handle_snapshot(&body).await,
        "journal" => s.raft.handle_journal(&body).await,
        "write" => return forwarded_write(s, &body).await,
        _ => return Err(ApiError::not_found("no such raft rpc")),
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
