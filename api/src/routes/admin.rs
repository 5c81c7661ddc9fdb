//! Cluster membership administration (`/v1/admin/cluster/*`, admin token).
//!
//! | method and path                          | body                              | does |
//! |------------------------------------------|-----------------------------------|------|
//! | `POST /v1/admin/cluster/learners`        | `{node_id, addr, wait_ms?}`       | adds a learner, waits (bounded) until it has caught up |
//! | `POST /v1/admin/cluster/voters`          | `{node_ids:[..], wait_ms?}`       | promotes learners to voters once they have caught up |
//! | `PUT /v1/admin/cluster/membership`       | `{voters:[..], retain?, wait_ms?}` | makes exactly these members the voters |
//! | `DELETE /v1/admin/cluster/nodes/{id}`    |                                   | removes a voter or learner from the cluster |
//!
//! Every answer is `200 {..., cluster}` with the cluster as `GET /v1/cluster` shows it after
//! the change (`202` from `learners` when the learner is still catching up at the deadline).
//!
//! Membership changes run on the leader. Any node accepts them: a follower proxies the request
//! once, with the caller's admin token, to the leader it knows (the leader must accept the same
//! token). A proxied request that lands on a non-leader (the leader changed meanwhile) answers
//! 503 `unavailable` rather than bouncing again; retrying is safe, as every change here is
//! idempotent (adding a member twice, promoting a voter, removing a non-member is `not_found`).
//!
//! Invariant: a learner is promoted only once its log has reached the leader's commit point
//! (else the new voter set could not commit anything until it caught up).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parley_raft::{MembershipChange, WriteError};
use parley_wire::ops::{LearnerAdded, MembershipChanged};
use serde_json::Value;
use warp::filters::BoxedFilter;
use warp::http::{Method, StatusCode};
use warp::reply::Response;
use warp::Filter;

use crate::bodies::{AddLearnerBody, AddVotersBody, SetMembershipBody};
use crate::error::ApiError;
use crate::http::{gated_body, json as json_reply, parse, req, respond, with, Req};
use crate::routes::ops::cluster_json;
use crate::state::AppState;

/// Header marking a request proxied from a follower (it is never proxied twice).
pub const FORWARDED_HEADER: &str = "parley-admin-forwarded";
/// Default bound on waiting for a learner to catch up.
pub const DEFAULT_WAIT_MS: u64 = 60_000;
/// Largest `wait_ms` accepted.
pub const MAX_WAIT_MS: u64 = 600_000;
/// How long to wait for a leader to be known (or for a change in progress) before `unavailable`.
const LEADER_WAIT: Duration = Duration::from_secs(5);
const ADMIN_BODY_LIMIT: u64 = 64 * 1024;

pub fn routes(s: &Arc<AppState>) -> BoxedFilter<(Response,)> {
    let learners = warp::path!("v1" / "admin" / "cluster" / "learners")
        .and(warp::post())
        .and(with(s))
        .and(req())
        .and(gated_body(s, ADMIN_BODY_LIMIT, AppState::admin))
        .then(|s: Arc<AppState>, r: Req, b| async move {
            respond(s.clone(), admin(s, r, Method::POST, "/v1/admin/cluster/learners".into(), b, Op::Learner)).await
        });
    let voters = warp::path!("v1" / "admin" / "cluster" / "voters")
        .and(warp::post())
        .and(with(s))
        .and(req())
        .and(gated_body(s, ADMIN_BODY_LIMIT, AppState::admin))
        .then(|s: Arc<AppState>, r: Req, b| async move {
            respond(s.clone(), admin(s, r, Method::POST, "/v1/admin/cluster/voters".into(), b, Op::Voters)).await
        });
    let membership = warp::path!("v1" / "admin" / "cluster" / "membership")
        .and(warp::put())
        .and(with(s))
        .and(req())
        .and(gated_body(s, ADMIN_BODY_LIMIT, AppState::admin))
        .then(|s: Arc<AppState>, r: Req, b| async move {
            respond(s.clone(), admin(s, r, Method::PUT, "/v1/admin/cluster/membership".into(), b, Op::Membership)).await
        });
    let remove =
        warp::path!("v1" / "admin" / "cluster" / "nodes" / u64).and(warp::delete()).and(with(s)).and(req()).then(
            |id: u64, s: Arc<AppState>, r: Req| async move {
                let path = format!("/v1/admin/cluster/nodes/{id}");
                respond(s.clone(), admin(s, r, Method::DELETE, path, Ok(Bytes::new()), Op::Remove(id))).await
            },
        );
    learners.or(voters).unify().or(membership).unify().or(remove).unify().boxed()
}

#[derive(Clone, Copy)]
enum Op {
    Learner,
    Voters,
    Membership,
    Remove(u64),
}

/// What running an operation on this node came to.
enum Ran {
    Done(Response),
    /// This node is not the leader; the leader is at this address.
    NotLeader(String),
}

#[tracing::instrument(skip_all, fields(path = %path))]
async fn admin(
    s: Arc<AppState>,
    r: Req,
    method: Method,
    path: String,
    b: Result<Bytes, ApiError>,
    op: Op,
) -> Result<Response, ApiError> {
    s.admin(&r)?;
    let raw = b?;
    let deadline = tokio::time::Instant::now() + LEADER_WAIT;
    loop {
        let outcome = match op {
            Op::Learner => add_learner(&s, parse(Ok(raw.clone()))?).await,
            Op::Voters => add_voters(&s, parse(Ok(raw.clone()))?).await,
            Op::Membership => set_membership(&s, parse(Ok(raw.clone()))?).await,
            Op::Remove(id) => remove_node(&s, id).await,
        };
        let err = match outcome {
            Ok(Ran::Done(resp)) => return Ok(resp),
            Ok(Ran::NotLeader(addr)) if r.header(FORWARDED_HEADER).is_none() => {
                return proxy(&s, &r, method, &path, raw, &addr).await;
            }
            Ok(Ran::NotLeader(_)) => return Err(ApiError::unavailable("the leader changed; retry")),
            Err(e) if e.status == StatusCode::SERVICE_UNAVAILABLE => e,
            Err(e) => return Err(e),
        };
        // No leader known yet, or another membership change still in flight: wait a little.
        if tokio::time::Instant::now() >= deadline {
            return Err(err);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Maps a refused change: `Ok(NotLeader)` when it belongs on another node, else the error
/// (`unavailable` ones are retried by [`admin`] until its deadline).
fn refused(s: &AppState, e: WriteError) -> Result<Ran, ApiError> {
    match e {
        WriteError::ForwardToLeader { leader_addr: Some(addr), leader_id } if leader_id != Some(s.raft.node_id()) => {
            Ok(Ran::NotLeader(addr))
        }
        WriteError::ForwardToLeader { .. } => Err(ApiError::unavailable("no leader is known")),
        e if e.membership_in_progress() => Err(ApiError::unavailable(e.to_string())),
        WriteError::Membership(e) => Err(ApiError::invalid(e.to_string())),
        e => Err(ApiError::unavailable(e.to_string())),
    }
}

fn wait_of(wait_ms: Option<u64>) -> Duration {
    Duration::from_millis(wait_ms.unwrap_or(DEFAULT_WAIT_MS).min(MAX_WAIT_MS))
}

async fn add_learner(s: &AppState, body: AddLearnerBody) -> Result<Ran, ApiError> {
    let addr = body.addr()?;
    let m = s.raft.metrics().borrow().clone();
    if m.membership_config.membership().voter_ids().any(|v| v == body.node_id) {
        return Err(ApiError::invalid(format!("node {} is already a voter", body.node_id)));
    }
    let log_id = match s.raft.add_learner_nowait(body.node_id, addr).await {
        Ok(log_id) => log_id,
        Err(e) => return refused(s, e),
    };
    let ids = BTreeSet::from([body.node_id]);
    let caught_up = wait_caught_up(s, &ids, log_id.index, wait_of(body.wait_ms)).await;
    let status = if caught_up { StatusCode::OK } else { StatusCode::ACCEPTED };
    Ok(Ran::Done(json_reply(
        status,
        &LearnerAdded { node_id: body.node_id, addr: addr.to_owned(), caught_up, cluster: cluster_json(s) },
    )))
}

async fn add_voters(s: &AppState, body: AddVotersBody) -> Result<Ran, ApiError> {
    let ids = body.ids()?;
    change(s, MembershipChange::AddVoters(ids.clone()), true, &ids, wait_of(body.wait_ms)).await
}

async fn set_membership(s: &AppState, body: SetMembershipBody) -> Result<Ran, ApiError> {
    let ids = body.ids()?;
    let retain = body.retain.unwrap_or(true);
    change(s, MembershipChange::ReplaceVoters(ids.clone()), retain, &ids, wait_of(body.wait_ms)).await
}

/// Promotes or replaces voters once every new one has caught up with the commit point.
async fn change(
    s: &AppState,
    change: MembershipChange,
    retain: bool,
    voters: &BTreeSet<u64>,
    wait: Duration,
) -> Result<Ran, ApiError> {
    let m = s.raft.metrics().borrow().clone();
    if m.current_leader != Some(m.id) {
        // Let raft say where the leader is (or that none is known).
        return match s.raft.change_members(change, retain).await {
            Ok(_) => Ok(Ran::Done(json_reply(
                StatusCode::OK,
                &MembershipChanged { voters: None, removed: None, cluster: cluster_json(s) },
            ))),
            Err(e) => refused(s, e),
        };
    }
    let current: BTreeSet<u64> = m.membership_config.membership().voter_ids().collect();
    let new: BTreeSet<u64> = voters.difference(&current).copied().collect();
    let unknown: Vec<u64> =
        new.iter().copied().filter(|id| m.membership_config.membership().get_node(id).is_none()).collect();
    if !unknown.is_empty() {
        return Err(ApiError::not_found(format!(
            "not members of the cluster (add them as learners first): {unknown:?}"
        )));
    }
    let target = s.raft.raft().with_raft_state(|st| st.committed.map(|l| l.index)).await.ok().flatten().unwrap_or(0);
    if !wait_caught_up(s, &new, target, wait).await {
        return Err(ApiError::unavailable(format!("learners {new:?} have not caught up with index {target} yet")));
    }
    match s.raft.change_members(change, retain).await {
        Ok(_) => Ok(Ran::Done(json_reply(
            StatusCode::OK,
            &MembershipChanged {
                voters: Some(voters.iter().copied().collect()),
                removed: None,
                cluster: cluster_json(s),
            },
        ))),
        Err(e) => refused(s, e),
    }
}

async fn remove_node(s: &AppState, id: u64) -> Result<Ran, ApiError> {
    let m = s.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let is_voter = membership.voter_ids().any(|v| v == id);
    let is_member = membership.get_node(&id).is_some();
    if m.current_leader == Some(m.id) && !is_member {
        return Err(ApiError::not_found(format!("node {id} is not a member of the cluster")));
    }
    // A voter leaves in one joint-consensus change; a learner is simply dropped.
    let change = if is_voter {
        MembershipChange::RemoveVoters(BTreeSet::from([id]))
    } else {
        MembershipChange::RemoveNodes(BTreeSet::from([id]))
    };
    match s.raft.change_members(change, false).await {
        Ok(_) => Ok(Ran::Done(json_reply(
            StatusCode::OK,
            &MembershipChanged { voters: None, removed: Some(id), cluster: cluster_json(s) },
        ))),
        Err(e) => refused(s, e),
    }
}

/// Waits until each of `ids` holds the log up to `index` (leader's replication progress), at
/// most `wait`. False if this node stops leading or the time runs out.
async fn wait_caught_up(s: &AppState, ids: &BTreeSet<u64>, index: u64, wait: Duration) -> bool {
    if ids.is_empty() {
        return true;
    }
    let mut rx = s.raft.metrics();
    let check = async {
        loop {
            let done = {
                let m = rx.borrow_and_update();
                match &m.replication {
                    Some(progress) => ids
                        .iter()
                        .all(|id| progress.get(id).copied().flatten().is_some_and(|matched| matched.index >= index)),
                    None => return false,
                }
            };
            if done {
                return true;
            }
            if rx.changed().await.is_err() {
                return false;
            }
        }
    };
    tokio::time::timeout(wait, check).await.unwrap_or(false)
}

/// Sends the request once to the leader at `addr`, with the caller's credentials, and relays
/// its answer.
async fn proxy(
    s: &AppState,
    r: &Req,
    method: Method,
    path: &str,
    raw: Bytes,
    addr: &str,
) -> Result<Response, ApiError> {
    let url = format!("{}{path}", s.raft.peer_base_url(addr));
    let method = reqwest::Method::from_bytes(method.as_str().as_bytes())
        .map_err(|_| ApiError::internal("unsupported method"))?;
    let mut request = s
        .http
        .request(method, url)
        .header(FORWARDED_HEADER, s.raft.node_id().to_string())
        .timeout(Duration::from_millis(MAX_WAIT_MS) + LEADER_WAIT);
    for name in ["authorization", "x-admin-token", "content-type"] {
        if let Some(v) = r.header(name) {
            request = request.header(name, v);
        }
    }
    let resp = request
        .body(raw)
        .send()
        .await
        .map_err(|e| ApiError::unavailable(format!("could not reach the leader at {addr}: {e}")))?;
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let bytes = resp.bytes().await.map_err(|e| ApiError::unavailable(format!("the leader did not answer: {e}")))?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|_| ApiError::unavailable(format!("the leader answered {status} without JSON")))?;
    Ok(json_reply(status, &value))
}
