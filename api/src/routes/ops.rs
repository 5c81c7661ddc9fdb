//! Operations: health, readiness, metrics, cluster status, and the admin journal endpoints.

use std::sync::Arc;

use parley_wire::journal::{DigestReport, JournalPage, VerifyReport};
use parley_wire::ops::{ClusterMember, ClusterStatus, Status, Vote};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::error::ApiError;
use crate::http::{json as json_reply, req, respond, with, Req};
use crate::metrics::Gauges;
use crate::state::AppState;

pub const JOURNAL_DEFAULT_LIMIT: u64 = 100;
pub const JOURNAL_MAX_LIMIT: u64 = 1000;

pub fn routes(s: &Arc<AppState>) -> BoxedFilter<(Response,)> {
    let healthz =
        warp::path!("healthz").and(warp::get()).map(|| json_reply(StatusCode::OK, &Status { status: "ok".into() }));
    let readyz =
        warp::path!("readyz").and(warp::get()).and(with(s)).then(|s: Arc<AppState>| async move { readyz(&s).await });
    let metrics =
        warp::path!("metrics").and(warp::get()).and(with(s)).then(|s: Arc<AppState>| async move { metrics(&s).await });
    let cluster = warp::path!("v1" / "cluster")
        .and(warp::get())
        .and(with(s))
        .and(req())
        .then(|s: Arc<AppState>, r| async move { respond(s.clone(), cluster(s, r)).await });
    let journal = warp::path!("v1" / "admin" / "journal")
        .and(warp::get())
        .and(with(s))
        .and(req())
        .then(|s: Arc<AppState>, r| async move { respond(s.clone(), journal(s, r)).await });
    let verify = warp::path!("v1" / "admin" / "journal" / "verify")
        .and(warp::get())
        .and(with(s))
        .and(req())
        .then(|s: Arc<AppState>, r| async move { respond(s.clone(), verify(s, r)).await });
    let digest = warp::path!("v1" / "admin" / "digest")
        .and(warp::get())
        .and(with(s))
        .and(req())
        .then(|s: Arc<AppState>, r| async move { respond(s.clone(), digest(s, r)).await });
    healthz
        .or(readyz)
        .unify()
        .or(metrics)
        .unify()
        .or(cluster)
        .unify()
        .or(journal)
        .unify()
        .or(verify)
        .unify()
        .or(digest)
        .unify()
        .boxed()
}

/// Ready when this node knows a leader and has applied everything it knows is committed.
pub async fn is_ready(s: &AppState) -> bool {
    let m = s.raft.metrics().borrow().clone();
    if m.current_leader.is_none() || m.running_state.is_err() || s.raft.is_installing() {
        return false;
    }
    let committed = s.raft.raft().with_raft_state(|st| st.committed.map(|l| l.index)).await.ok().flatten();
    let applied = m.last_applied.map(|l| l.index);
    applied >= committed
}

async fn readyz(s: &AppState) -> Response {
    if is_ready(s).await {
        json_reply(StatusCode::OK, &Status { status: "ready".into() })
    } else {
        json_reply(StatusCode::SERVICE_UNAVAILABLE, &ApiError::unavailable("no leader known or not caught up").body())
    }
}

async fn metrics(s: &AppState) -> Response {
    let m = s.raft.metrics().borrow().clone();
    let g = Gauges {
        applied_cursor: s.store.applied_cursor(),
        raft_term: m.current_term,
        raft_last_applied: m.last_applied.map(|l| l.index).unwrap_or(0),
        is_leader: m.current_leader == Some(m.id),
    };
    let mut resp = s.metrics.render(&g).into_response();
    resp.headers_mut()
        .insert("content-type", warp::http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    resp
}

pub fn cluster_json(s: &AppState) -> ClusterStatus {
    let m = s.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
    let members = membership
        .nodes()
        .map(|(id, node)| ClusterMember { node_id: *id, addr: node.addr.clone(), voter: voters.contains(id) })
        .collect();
    // On the leader: the last log index each member is known to hold.
    let replication = m
        .replication
        .as_ref()
        .map(|r| r.iter().map(|(id, matched)| (id.to_string(), matched.map(|l| l.index))).collect());
    ClusterStatus {
        node_id: m.id,
        leader_id: m.current_leader,
        term: m.current_term,
        last_applied: m.last_applied.map(|l| l.index).unwrap_or(0),
        cursor: s.store.applied_cursor(),
        state: format!("{:?}", m.state),
        members,
        // Beyond the contract, for operators and the cluster tests: the persisted vote, the
        // raft log's extent (purged prefix, last index) and the last snapshot.
        vote: Vote { term: m.vote.leader_id.term, node_id: m.vote.leader_id.voted_for(), committed: m.vote.committed },
        last_log_index: m.last_log_index.unwrap_or(0),
        purged_index: m.purged.map(|l| l.index),
        snapshot_index: m.snapshot.map(|l| l.index),
        replication,
    }
}

async fn cluster(s: Arc<AppState>, r: Req) -> Result<Response, ApiError> {
    s.read_gate(&r).await?;
    Ok(json_reply(StatusCode::OK, &cluster_json(&s)))
}

async fn journal(s: Arc<AppState>, r: Req) -> Result<Response, ApiError> {
    s.admin(&r)?;
    s.read_gate(&r).await?;
    let from = r.u64_param("from")?.unwrap_or(1);
    let limit = r.u64_param("limit")?.unwrap_or(JOURNAL_DEFAULT_LIMIT).clamp(1, JOURNAL_MAX_LIMIT);
    let entries = s.store.journal(from, limit as usize)?.iter().map(parley_wire::storage::journal_entry).collect();
    Ok(json_reply(StatusCode::OK, &JournalPage { entries }))
}

async fn verify(s: Arc<AppState>, r: Req) -> Result<Response, ApiError> {
    s.admin(&r)?;
    s.read_gate(&r).await?;
    let store = s.store.clone();
    let result = tokio::task::spawn_blocking(move || {
        let verified = store.verify_journal();
        let digest = store.projection_digest();
        (verified, digest, store.applied_cursor())
    })
    .await
    .map_err(|_| ApiError::internal("verify task failed"))?;
    let body = match result {
        (Ok((last_cursor, head)), digest, cursor) => VerifyReport {
            ok: true,
            last_cursor: Some(last_cursor),
            head_hash: Some(hex::encode(head)),
            // The digest is of the projections as they are now, which may be a little ahead of
            // `last_cursor` under concurrent writes; `digest_cursor` says where.
            digest: Some(digest.ok().map(hex::encode)),
            digest_cursor: Some(cursor),
            error: None,
            bad_cursor: None,
        },
        (Err(e), _, _) => {
            let bad = match &e {
                parley_storage::StoreError::Journal(j) => j.cursor(),
                _ => None,
            };
            VerifyReport {
                ok: false,
                last_cursor: None,
                head_hash: None,
                digest: None,
                digest_cursor: None,
                error: Some(e.to_string()),
                bad_cursor: Some(bad),
            }
        }
    };
    Ok(json_reply(StatusCode::OK, &body))
}

async fn digest(s: Arc<AppState>, r: Req) -> Result<Response, ApiError> {
    s.admin(&r)?;
    s.read_gate(&r).await?;
    let store = s.store.clone();
    let (cursor, digest) = tokio::task::spawn_blocking(move || {
        let before = store.applied_cursor();
        let d = store.projection_digest();
        (before, d)
    })
    .await
    .map_err(|_| ApiError::internal("digest task failed"))?;
    Ok(json_reply(StatusCode::OK, &DigestReport { cursor, digest: hex::encode(digest?) }))
}
